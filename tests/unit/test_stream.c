/* Unit tests: chat/stream.h - the Ollama NDJSON and OpenAI SSE stream
 * parsers (every vector fed whole, byte by byte, split at every offset and
 * at pairs of offsets), whole replies, backend error texts, model lists and
 * request bodies (parsed back with json-c). VECTORS names the vectors dir
 * (default tests/vectors). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "chat/stream.h"

/* ---- helpers ------------------------------------------------------------- */

static char *load_vector(const char *name, size_t *n)
{
    const char *dir = getenv("VECTORS");
    char path[512];
    FILE *f;
    long sz;
    char *buf;

    snprintf(path, sizeof(path), "%s/ollama/%s", dir && *dir ? dir : "tests/vectors",
             name);
    f = fopen(path, "rb");
    if (!f) {
        fail_msg("cannot open vector %s", path);
    }
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)sz + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    buf[sz] = '\0';
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

/* An independent strict UTF-8 check (no NUL), for the invariants. */
static int valid_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        uint32_t cp;
        size_t k, j;
        if (c == 0) {
            return 0;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1;
            cp = c & 0x1F;
        }
        else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        }
        else if ((c & 0xF8) == 0xF0) {
            k = 3;
            cp = c & 0x07;
        }
        else {
            return 0;
        }
        for (j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += k + 1;
    }
    return 1;
}

/* Records events as "C:<text>|" "T:..|" "E:..|" "D:|" and checks the
 * invariants (ev->len is checked by text[len] == NUL and the UTF-8 check,
 * which refuses NUL). */
typedef struct {
    chat_buf_t log;
    int ndone, nerror, nev;
    int abort_at; /* abort on this event number (1-based), 0 = never */
    chat_stats_t done_stats;
} rec_t;

static void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    chat_buf_init(&r->log);
    chat_buf_append(&r->log, "", 0);
    chat_stats_init(&r->done_stats);
}

static int rec_cb(void *baton, const chat_event_t *ev)
{
    rec_t *r = baton;
    char tag = '?';

    r->nev++;
    /* nothing after DONE or ERROR */
    assert_int_equal(r->ndone + r->nerror, 0);
    assert_non_null(ev->text);
    assert_int_equal(ev->text[ev->len], '\0');
    assert_non_null(ev->stats);
    switch (ev->type) {
    case CHAT_EV_CONTENT:
        tag = 'C';
        break;
    case CHAT_EV_THINKING:
        tag = 'T';
        break;
    case CHAT_EV_ERROR:
        tag = 'E';
        r->nerror++;
        break;
    case CHAT_EV_DONE:
        tag = 'D';
        r->ndone++;
        r->done_stats = *ev->stats;
        break;
    default:
        fail_msg("bad event type %d", ev->type);
    }
    if (ev->type == CHAT_EV_CONTENT || ev->type == CHAT_EV_THINKING) {
        assert_true(ev->len > 0);
    }
    assert_true(valid_utf8((const unsigned char *)ev->text, ev->len));
    chat_buf_printf(&r->log, "%c:", tag);
    chat_buf_append(&r->log, ev->text, ev->len);
    chat_buf_append(&r->log, "|", 1);
    if (r->abort_at && r->nev == r->abort_at) {
        return 1;
    }
    return 0;
}

/* Feeds data cut at the given offsets, then finishes. Returns the first
 * failing status (or finish's); the log ends with "=<status>:<error>". */
static chat_status_t run_cuts(chat_wire_t wire, const char *data, size_t n,
                              const size_t *cuts, size_t ncuts, size_t max_line, rec_t *r)
{
    chat_stream_t *s;
    chat_status_t st = CHAT_OK;
    size_t i, at = 0;

    assert_int_equal(chat_stream_create(&s, wire, max_line, rec_cb, r), CHAT_OK);
    for (i = 0; i <= ncuts && st == CHAT_OK; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        st = chat_stream_feed(s, data + at, to - at);
        at = to;
    }
    if (st == CHAT_OK) {
        st = chat_stream_finish(s);
        assert_int_equal(chat_stream_finish(s), st); /* idempotent */
    }
    assert_int_equal(chat_stream_is_done(s), r->ndone);
    if (st == CHAT_OK) {
        assert_int_equal(r->ndone, 1);
    }
    chat_buf_printf(&r->log, "=%d:%s", (int)st, chat_stream_error(s));
    chat_stream_destroy(s);
    return st;
}

static chat_status_t run_whole(chat_wire_t wire, const char *data, size_t n,
                               size_t max_line, rec_t *r)
{
    return run_cuts(wire, data, n, NULL, 0, max_line, r);
}

/* Whole, byte by byte, every single cut and, with pairs, every pair of
 * cuts give the same log (inputs over 320 bytes: the first cut on a stride
 * of n/32, the second at every offset after it, to bound the run time). */
static void check_splits_ex(chat_wire_t wire, const char *data, size_t n, size_t max_line,
                            const char *want_log, int pairs)
{
    rec_t ref, r;
    size_t i, j, cuts[2], *all;
    size_t stride = !pairs ? n + 1 : n <= 320 ? 1 : n / 32;

    rec_init(&ref);
    run_whole(wire, data, n, max_line, &ref);
    if (want_log) {
        assert_string_equal(ref.log.data, want_log);
    }
    /* one byte at a time */
    all = malloc((n ? n : 1) * sizeof(*all));
    for (i = 0; i + 1 < n; i++) {
        all[i] = i + 1;
    }
    rec_init(&r);
    run_cuts(wire, data, n, all, n ? n - 1 : 0, max_line, &r);
    assert_string_equal(r.log.data, ref.log.data);
    chat_buf_free(&r.log);
    free(all);
    for (i = 0; i <= n; i++) {
        cuts[0] = i;
        rec_init(&r);
        run_cuts(wire, data, n, cuts, 1, max_line, &r);
        if (strcmp(r.log.data, ref.log.data) != 0) {
            fail_msg("split at %zu:\n got %s\nwant %s", i, r.log.data, ref.log.data);
        }
        chat_buf_free(&r.log);
    }
    for (i = 0; i <= n; i += stride) {
        for (j = i; j <= n; j++) {
            cuts[0] = i;
            cuts[1] = j;
            rec_init(&r);
            run_cuts(wire, data, n, cuts, 2, max_line, &r);
            if (strcmp(r.log.data, ref.log.data) != 0) {
                fail_msg("splits at %zu,%zu:\n got %s\nwant %s", i, j, r.log.data,
                         ref.log.data);
            }
            chat_buf_free(&r.log);
        }
    }
    chat_buf_free(&ref.log);
}

static void check_splits(chat_wire_t wire, const char *data, size_t n, size_t max_line,
                         const char *want_log)
{
    check_splits_ex(wire, data, n, max_line, want_log, 1);
}

/* "\n" -> "\r\n" (or "\r" when cr_only). */
static char *to_crlf(const char *in, size_t n, size_t *out_n, int cr_only)
{
    char *o = malloc(2 * n + 1);
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        if (in[i] == '\n') {
            o[k++] = '\r';
            if (!cr_only) {
                o[k++] = '\n';
            }
        }
        else {
            o[k++] = in[i];
        }
    }
    o[k] = '\0';
    *out_n = k;
    return o;
}

/* Runs a vector through every split (LF, CRLF, and for SSE CR-only line
 * ends) and returns the whole-feed run's recorder for detail checks. */
static chat_status_t check_vector(const char *name, chat_wire_t wire, const char *want,
                                  rec_t *out)
{
    size_t n, cn;
    char *data = load_vector(name, &n), *crlf;
    chat_status_t st;
    int v;

    check_splits(wire, data, n, 1 << 20, want);
    for (v = 0; v < (wire == CHAT_WIRE_OPENAI ? 2 : 1); v++) {
        crlf = to_crlf(data, n, &cn, v);
        check_splits(wire, crlf, cn, 1 << 20, want);
        free(crlf);
    }
    rec_init(out);
    st = run_whole(wire, data, n, 1 << 20, out);
    free(data);
    return st;
}

#define LIT(s) (s), strlen(s)
#define MS_EQ(a, b) assert_true(fabs((a) - (b)) < 1e-9 * (fabs(b) + 1))

/* ---- vectors ------------------------------------------------------------------ */

static void test_ollama_stream(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("chat_stream.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:The|C: sky|C: is|C: blue.|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "qwen2.5-coder:7b");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 26);
    assert_int_equal(r.done_stats.completion_tokens, 4);
    MS_EQ(r.done_stats.total_ms, 4883.583458);
    MS_EQ(r.done_stats.load_ms, 1.334875);
    MS_EQ(r.done_stats.prompt_ms, 342.546);
    MS_EQ(r.done_stats.eval_ms, 44.535599);
    MS_EQ(r.done_stats.tokens_per_sec, 4.0 / 0.044535599);
    chat_buf_free(&r.log);
}

static void test_ollama_last_has_content(void **state)
{
    rec_t r;
    (void)state;
    /* the CONTENT of the done line comes before DONE */
    assert_int_equal(check_vector("chat_stream_last_has_content.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:Hello|C: there!|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "llama3.2");
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_int_equal(r.done_stats.prompt_tokens, 3);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    MS_EQ(r.done_stats.total_ms, 1.0);
    MS_EQ(r.done_stats.load_ms, 0.001);
    MS_EQ(r.done_stats.prompt_ms, 0.002);
    MS_EQ(r.done_stats.eval_ms, 0.003);
    MS_EQ(r.done_stats.tokens_per_sec, 2.0 / 3e-6);
    chat_buf_free(&r.log);
}

static void test_ollama_thinking(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_thinking.ndjson", CHAT_WIRE_OLLAMA,
                     "T:Okay, the user|T: wants a greeting.|C:Hi!|D:|=0:", &r),
        CHAT_OK);
    assert_string_equal(r.done_stats.model, "qwen3");
    assert_int_equal(r.done_stats.completion_tokens, 7);
    MS_EQ(r.done_stats.tokens_per_sec, 7.0 / 0.004);
    chat_buf_free(&r.log);
}

static void test_ollama_unicode(void **state)
{
    rec_t r;
    /* exact bytes: raw multibyte text, and escapes decoded (the surrogate
     * pair to F0 9F 98 80, U+2028 to E2 80 A8, \u003c to '<') */
    const char *want = "C:Gr\xC3\xBC\xC3\x9F"
                       "e, |"
                       "C:\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
                       "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88 |"
                       "C:emoji \xF0\x9F\x98\x80 |"
                       "C:escaped \xF0\x9F\x98\x80 and \xE2\x80\xA8 and <b>|"
                       "C:<script>alert(1)</script>|D:|=0:";
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_unicode.ndjson", CHAT_WIRE_OLLAMA, want, &r), CHAT_OK);
    assert_int_equal(r.done_stats.completion_tokens, 5);
    chat_buf_free(&r.log);
}

static void test_ollama_midstream_error(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_midstream_error.ndjson", CHAT_WIRE_OLLAMA,
                     "C:Partial|C: answer|"
                     "E:an error was encountered while running the model: unexpected EOF|"
                     "=-23:backend error: an error was encountered while running the "
                     "model: unexpected EOF",
                     &r),
        CHAT_EINCOMPLETE);
    assert_int_equal(r.ndone, 0);
    chat_buf_free(&r.log);
}

static void test_ollama_truncated(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("chat_stream_truncated.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:Cut|=-23:the stream ended inside NDJSON line 2 "
                                  "(truncated JSON object)",
                                  &r),
                     CHAT_EINCOMPLETE);
    chat_buf_free(&r.log);
}

static void test_openai_stream(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("openai_stream.sse", CHAT_WIRE_OPENAI,
                                  "C:The|C: sky|C: is blue.|D:|=0:", &r),
                     CHAT_OK);
    /* usage came in a chunk after the finish chunk: merged by [DONE] */
    assert_string_equal(r.done_stats.model, "llama3.2");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 26);
    assert_int_equal(r.done_stats.completion_tokens, 3);
    MS_EQ(r.done_stats.total_ms, -1.0);
    MS_EQ(r.done_stats.tokens_per_sec, -1.0);
    chat_buf_free(&r.log);
}

static void test_openai_llamacpp(void **state)
{
    rec_t r;
    (void)state;
    /* null first content: no event; ": ping" ignored; reasoning_content */
    assert_int_equal(check_vector("openai_stream_llamacpp.sse", CHAT_WIRE_OPENAI,
                                  "T:Thinking...|C:Hello|C: world|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "gpt-3.5-turbo");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 5);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    MS_EQ(r.done_stats.prompt_ms, 12.5);
    MS_EQ(r.done_stats.eval_ms, 20.1);
    MS_EQ(r.done_stats.tokens_per_sec, 99.5);
    chat_buf_free(&r.log);
}

static void test_openai_error(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("openai_stream_error.sse", CHAT_WIRE_OPENAI,
                     "C:Part|E:the request exceeds the available context size|"
                     "=-23:backend error: the request exceeds the available context size",
                     &r),
        CHAT_EINCOMPLETE);
    chat_buf_free(&r.log);
}

/* ---- NDJSON details ---------------------------------------------------------- */

static void check_case(chat_wire_t wire, const char *data, size_t max_line,
                       const char *want)
{
    check_splits(wire, data, strlen(data), max_line, want);
}

static void test_ndjson_blank_lines_and_crlf(void **state)
{
    (void)state;
    check_case(CHAT_WIRE_OLLAMA,
               "\n\r\n  \t\r\n{\"message\":{\"content\":\"a\"}}\r\n\n"
               "{\"message\":{\"content\":\"b\"},\"done\":false}\n \n"
               "{\"done\":true}\r\n\r\n \n",
               1024, "C:a|C:b|D:|=0:");
    /* the done line may end the stream without a newline */
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"x\"},\"done\":true}", 1024,
               "C:x|D:|=0:");
    /* done line with thinking and content: THINKING, CONTENT, DONE */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"thinking\":\"hm\",\"content\":\"ok\"},\"done\":true,"
               "\"done_reason\":\"stop\"}\n",
               1024, "T:hm|C:ok|D:|=0:");
    /* null content / missing message: no events; unknown members ignored */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":{}}]}}\n"
               "{\"status\":\"x\"}\n{\"message\":null}\n{\"done\":true}\n",
               1024, "D:|=0:");
    /* an empty stream is incomplete */
    check_case(CHAT_WIRE_OLLAMA, "", 1024, "=-23:the stream ended before done:true");
    check_case(CHAT_WIRE_OLLAMA, "\n\n", 1024, "=-23:the stream ended before done:true");
}

static void test_ndjson_garbage(void **state)
{
    char deep[400];
    size_t i;
    (void)state;
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\"}}\nhello\n", 1024,
               "C:a|=-20:NDJSON line 2: expected a JSON object, got text that is not "
               "JSON");
    check_case(CHAT_WIRE_OLLAMA, "[1,2]\n", 1024,
               "=-20:NDJSON line 1: expected a JSON object, got another JSON value");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":\"hi\"}\n", 1024,
               "=-20:NDJSON line 1: \"message\" is not an object");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":5}}\n", 1024,
               "=-20:NDJSON line 1: \"message.content\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"thinking\":[]}}\n", 1024,
               "=-20:NDJSON line 1: \"message.thinking\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":\"yes\"}\n", 1024,
               "=-20:NDJSON line 1: \"done\" is not a boolean");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":false} x\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (unexpected character) at byte 15");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":false}{\"done\":true}\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (unexpected character) at byte 14");
    /* a truncated object followed by a newline is garbage, not a cut */
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\n", 1024,
               "=-20:NDJSON line 1: truncated JSON object");
    check_case(CHAT_WIRE_OLLAMA, "{done:true}\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (quoted object property name expected) "
               "at byte 1");
    /* too deep */
    for (i = 0; i < 100; i++) {
        deep[i] = '[';
    }
    memcpy(deep, "{\"a\":", 5);
    deep[100] = '\n';
    deep[101] = '\0';
    check_case(CHAT_WIRE_OLLAMA, deep, 1024,
               "=-20:NDJSON line 1: invalid JSON (nesting too deep) at byte 68");
    /* the failure is sticky */
    {
        rec_t r;
        chat_stream_t *s;
        rec_init(&r);
        assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r),
                         CHAT_OK);
        assert_int_equal(chat_stream_feed(s, "nope\n", 5), CHAT_EPARSE);
        assert_int_equal(chat_stream_feed(s, "{\"done\":true}\n", 14), CHAT_EPARSE);
        assert_int_equal(chat_stream_finish(s), CHAT_EPARSE);
        assert_int_equal(r.nev, 0);
        /* reset makes it usable again */
        chat_stream_reset(s);
        assert_string_equal(chat_stream_error(s), "");
        assert_int_equal(chat_stream_feed(s, "{\"done\":true}\n", 14), CHAT_OK);
        assert_int_equal(chat_stream_finish(s), CHAT_OK);
        assert_int_equal(r.ndone, 1);
        chat_stream_destroy(s);
        chat_buf_free(&r.log);
    }
}

static void test_ndjson_after_done(void **state)
{
    (void)state;
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}\n{\"message\":{\"content\":\"x\"}}\n",
               1024, "D:|=-61:data after the end of the answer");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}\n \r\n\t\n", 1024, "D:|=0:");
    /* after an ERROR the rest is ignored; the answer is incomplete */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"error\":\"boom\"}\n{\"message\":{\"content\":\"x\"}}\ngarbage\n"
               "{\"done\":true}\n",
               1024, "E:boom|=-23:backend error: boom");
    /* OpenAI-shaped error objects and odd error values */
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":{\"message\":\"bad\",\"code\":1}}\n", 1024,
               "E:bad|=-23:backend error: bad");
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":{\"code\":500}}\n", 1024,
               "E:{\"code\":500}|=-23:backend error: {\"code\":500}");
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":\"\"}\n", 1024,
               "E:unknown backend error|=-23:backend error: unknown backend error");
}

static void test_ndjson_too_big(void **state)
{
    char line[200];
    chat_stream_t *s;
    rec_t r;
    size_t i;
    (void)state;

    /* a line of exactly max_line bytes passes, with "\n" or "\r\n" */
    snprintf(line, sizeof(line),
             "{\"message\":{\"content\":\"%s\"}}\r\n{\"done\":true}\n", "0123456789");
    /* the first line is 36 bytes */
    check_case(CHAT_WIRE_OLLAMA, line, 36, "C:0123456789|D:|=0:");
    check_case(CHAT_WIRE_OLLAMA, line, 35, "=-40:NDJSON line 1 is longer than 35 bytes");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}", 12,
               "=-40:NDJSON line 1 is longer than 12 bytes");
    /* nothing beyond the cap is buffered: fed in small pieces, feed fails as
     * soon as the pending line passes max_line (+1 for a possible "\r") */
    rec_init(&r);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 100, rec_cb, &r), CHAT_OK);
    for (i = 0; i < 101; i++) {
        assert_int_equal(chat_stream_feed(s, "a", 1), CHAT_OK);
    }
    assert_int_equal(chat_stream_feed(s, "a", 1), CHAT_ETOOBIG);
    assert_int_equal(chat_stream_feed(s, "\n", 1), CHAT_ETOOBIG);
    assert_int_equal(chat_stream_finish(s), CHAT_ETOOBIG);
    chat_stream_destroy(s);
    chat_buf_free(&r.log);
}

static void test_utf8_sanitising(void **state)
{
    (void)state;
    /* raw invalid bytes, a cut sequence, overlong, encoded surrogate, > U+10FFFF */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"a\xFF"
               "b\"}}\n"
               "{\"message\":{\"content\":\"c\xE6\x97\"}}\n"
               "{\"message\":{\"content\":\"\xC0\xAF\"}}\n"
               "{\"message\":{\"content\":\"\xED\xA0\x80!\"}}\n"
               "{\"message\":{\"content\":\"\xF4\x90\x80\x80\"}}\n"
               "{\"done\":true}\n",
               1024,
               "C:a\xEF\xBF\xBD"
               "b|C:c\xEF\xBF\xBD|C:\xEF\xBF\xBD\xEF\xBF\xBD|"
               "C:\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!|"
               "C:\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|D:|=0:");
    /* lone surrogates in escapes and \u0000 become U+FFFD too */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"x\\ud83dy\"}}\n"
               "{\"message\":{\"content\":\"\\ude00\"}}\n"
               "{\"message\":{\"content\":\"n\\u0000n\"}}\n"
               "{\"message\":{\"content\":\"\\u00e9\\ud83d\\ude00\"}}\n"
               "{\"done\":true}\n",
               1024,
               "C:x\xEF\xBF\xBDy|C:\xEF\xBF\xBD|C:n\xEF\xBF\xBDn|"
               "C:\xC3\xA9\xF0\x9F\x98\x80|D:|=0:");
    /* invalid UTF-8 in an error message, too */
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":\"bad \xFE\"}\n", 1024,
               "E:bad \xEF\xBF\xBD|=-23:backend error: bad \xEF\xBF\xBD");
}

/* Found by fuzzing: json-c's tokener reset keeps a pending high surrogate,
 * which turned the next answer's first escaped pair into U+FFFD + emoji. */
static void test_reset_after_surrogate_error(void **state)
{
    rec_t r;
    chat_stream_t *s;
    const char *bad = "{\"message\":{\"content\":\"\\ud83d\n";
    const char *good = "{\"message\":{\"content\":\"\\ud83d\\ude00\"},\"done\":true}\n";
    (void)state;
    rec_init(&r);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, bad, strlen(bad)), CHAT_EPARSE);
    chat_stream_reset(s);
    assert_int_equal(chat_stream_feed(s, good, strlen(good)), CHAT_OK);
    assert_int_equal(chat_stream_finish(s), CHAT_OK);
    assert_string_equal(r.log.data, "C:\xF0\x9F\x98\x80|D:|");
    chat_stream_destroy(s);
    chat_buf_free(&r.log);
}

/* Pseudo-random streams built from protocol fragments and junk bytes: no
 * crash, the recorder's invariants hold, and every split agrees. */
static void test_random_garbage(void **state)
{
    static const char *frag[] = {
        "{\"message\":{\"content\":\"",
        "{\"message\":{\"thinking\":\"",
        "\"}}",
        "\"},\"done\":true}",
        "{\"done\":true}",
        "{\"error\":\"e\"}",
        "\n",
        "\r\n",
        "\r",
        "data: ",
        "data:",
        "[DONE]",
        ": ping",
        "event: error",
        "error: ",
        "{\"choices\":[{\"delta\":{\"content\":\"",
        "\"}}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}",
        "\\ud83d",
        "\\ude00",
        "\\u0000",
        "\xF0\x9F",
        "\x98\x80",
        "\xFF",
        "\xEF\xBB\xBF",
        "x",
        " ",
        "{",
        "}",
        "\"",
        "[",
        "]",
        ",",
        ":",
        "\\"};
    char buf[600];
    uint32_t x = 12345;
    int round, w;
    (void)state;

    for (round = 0; round < 300; round++) {
        size_t n = 0, k;
        int parts;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        parts = 1 + (int)(x % 40);
        while (parts-- > 0) {
            const char *f;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f = frag[x % (sizeof(frag) / sizeof(frag[0]))];
            k = strlen(f);
            if (n + k >= sizeof(buf)) {
                break;
            }
            memcpy(buf + n, f, k);
            n += k;
        }
        for (w = 0; w < 2; w++) {
            check_splits_ex(w ? CHAT_WIRE_OPENAI : CHAT_WIRE_OLLAMA, buf, n,
                            round % 3 ? 4096 : 40, NULL, round % 10 == 0);
        }
    }
}

static void test_callback_abort_and_misuse(void **state)
{
    rec_t r;
    chat_stream_t *s;
    const char *two =
        "{\"message\":{\"content\":\"a\"}}\n{\"message\":{\"content\":\"b\"}}\n";
    (void)state;
    rec_init(&r);
    r.abort_at = 1;
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_ECLOSED);
    assert_int_equal(r.nev, 1);
    assert_string_equal(chat_stream_error(s), "aborted by the event callback");
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_ECLOSED);
    assert_int_equal(chat_stream_finish(s), CHAT_ECLOSED);
    assert_int_equal(r.nev, 1);
    /* reset: the same stream parses the next answer */
    chat_stream_reset(s);
    r.abort_at = 0;
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, "{\"done\":true,\"eval_count\":3}", 28),
                     CHAT_OK);
    assert_int_equal(chat_stream_finish(s), CHAT_OK);
    assert_int_equal(chat_stream_stats(s)->completion_tokens, 3);
    assert_string_equal(r.log.data, "C:a|C:a|C:b|D:|");
    /* feed after finish */
    assert_int_equal(chat_stream_feed(s, "\n", 1), CHAT_ECLOSED);
    chat_stream_destroy(s);
    chat_buf_free(&r.log);

    /* bad arguments */
    assert_int_equal(chat_stream_create(NULL, CHAT_WIRE_OLLAMA, 10, rec_cb, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 10, NULL, NULL),
                     CHAT_EINVAL);
    assert_null(s);
    assert_int_equal(chat_stream_create(&s, (chat_wire_t)7, 10, rec_cb, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OPENAI, 0, rec_cb, NULL),
                     CHAT_EINVAL);
    chat_stream_destroy(NULL);
    chat_stream_reset(NULL);
    assert_int_equal(chat_stream_feed(NULL, "x", 1), CHAT_EINVAL);
    assert_int_equal(chat_stream_finish(NULL), CHAT_EINVAL);
    assert_int_equal(chat_stream_is_done(NULL), 0);
}

/* ---- SSE details -------------------------------------------------------------- */

#define CHUNK(c) "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" c "\"}}]}"

static void test_sse_fields(void **state)
{
    (void)state;
    /* "data:" without a space; comments; event/id/retry and unknown fields */
    check_case(CHAT_WIRE_OPENAI,
               ": hello\n"
               "retry: 1000\nid: 7\nevent: message\nfoo: bar\nnocolon\n"
               "data:" CHUNK("a") "\n\n"
                                  "data:  " CHUNK("b") "\n\n"
                                                       ":\n\n\n"
                                                       "data: [DONE]\n\n",
               4096, "C:a|C:b|D:|=0:");
    /* one event spread over several data lines (joined with "\n") */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"delta\":\n"
               "data: {\"content\":\"multi\"}}]}\n"
               "\n"
               "data: [DONE]\n\n",
               4096, "C:multi|D:|=0:");
    /* the "\n" between data lines is real (json-c lets it into a string) */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"delta\":{\"content\":\"x\n"
               "data: y\"}}]}\n\n",
               4096, "C:x\ny|=-23:the stream ended before [DONE]");
    /* a byte order mark at the start is skipped; a lone EF is data */
    check_case(CHAT_WIRE_OPENAI,
               "\xEF\xBB\xBF"
               "data: [DONE]\n\n",
               4096, "D:|=0:");
    check_case(CHAT_WIRE_OPENAI,
               "\xEF\xBB"
               "data: [DONE]\n\n",
               4096, "=-20:the reply is not an SSE stream (no \"data:\" line)");
    /* empty events and data-less events dispatch nothing */
    check_case(CHAT_WIRE_OPENAI, "data:\n\ndata\n\nevent: x\n\ndata: [DONE]\n\n", 4096,
               "D:|=0:");
    /* reasoning (vLLM); reasoning_content wins when both are sent */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"reasoning\":\"r1\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"reasoning\":\"x\",\"reasoning_content\":"
        "\"r2\",\"content\":\"c\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"reasoning\":null}}]}\n\n"
        "data: [DONE]\n\n",
        4096, "T:r1|T:r2|C:c|D:|=0:");
    /* only choice index 0 is used */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"no\"}},"
               "{\"index\":0,\"delta\":{\"content\":\"yes\"}}]}\n\n"
               "data: [DONE]\n\n",
               4096, "C:yes|D:|=0:");
}

static void test_sse_end(void **state)
{
    (void)state;
    /* [DONE] without its blank line at EOF still ends the answer */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DONE]", 4096,
               "C:a|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DONE]\n", 4096,
               "C:a|D:|=0:");
    /* cut inside [DONE] or inside the JSON: incomplete */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DON", 4096,
               "C:a|=-23:the stream ended inside [DONE]");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":\"ab", 4096,
               "=-23:the stream ended inside SSE event 1 (truncated JSON object)");
    /* a finish_reason without [DONE]: complete; without either: incomplete */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: " CHUNK(
            "a") "\n\n"
                 "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        4096, "C:a|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\n", 4096,
               "C:a|=-23:the stream ended before [DONE]");
    /* after [DONE] only whitespace */
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\n\r\n \n", 4096, "D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\ndata: [DONE]\n\n", 4096,
               "D:|=-61:data after the end of the answer");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\n: ping\n\n", 4096,
               "D:|=-61:data after the end of the answer");
}

static void test_sse_errors(void **state)
{
    (void)state;
    /* llama.cpp's "error:" field, followed by its [DONE] (ignored) */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: " CHUNK(
            "a") "\n\n"
                 "error: {\"code\":400,\"message\":\"the request exceeds the available "
                 "context size, try increasing "
                 "it\",\"type\":\"exceed_context_size_error\"}\n\n"
                 "data: [DONE]\n\n",
        4096,
        "C:a|E:the request exceeds the available context size, try increasing it|"
        "=-23:backend error: the request exceeds the available context size, try "
        "increasing it");
    /* "event: error" with a plain text or JSON payload */
    check_case(CHAT_WIRE_OPENAI, "event: error\ndata: upstream went away\n\n", 4096,
               "E:upstream went away|=-23:backend error: upstream went away");
    check_case(CHAT_WIRE_OPENAI,
               "event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n", 4096,
               "E:overloaded|=-23:backend error: overloaded");
    /* vLLM's ErrorResponse */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: {\"object\":\"error\",\"message\":\"bad request\",\"code\":400}\n\n", 4096,
        "E:bad request|=-23:backend error: bad request");
    /* wrong shapes */
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":{}}\n\n", 4096,
               "=-20:SSE event 1: \"choices\" is not an array");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[5]}\n\n", 4096,
               "=-20:SSE event 1: an element of \"choices\" is not an object");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":\"x\"}]}\n\n", 4096,
               "=-20:SSE event 1: \"delta\" is not an object");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":1}}]}\n\n",
               4096, "=-20:SSE event 1: \"content\" is not a string");
    check_case(CHAT_WIRE_OPENAI, "data: hello\n\n", 4096,
               "=-20:SSE event 1: expected a JSON object, got text that is not JSON");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE] x\n\n", 4096,
               "=-20:SSE event 1: expected a JSON object, got another JSON value");
}

static void test_sse_too_big(void **state)
{
    char big[300];
    (void)state;
    /* one data line of 52 bytes: max_line 52 passes, 51 fails */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("0123") "\n\ndata: [DONE]\n\n", 52,
               "C:0123|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("0123") "\n\ndata: [DONE]\n\n", 51,
               "=-40:SSE event 1 is longer than 51 bytes");
    /* several lines add up (with their "\n") */
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":\ndata: []}\n\ndata: [DONE]\n\n", 15,
               "D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":\ndata: []}\n\ndata: [DONE]\n\n", 14,
               "=-40:SSE event 1 is longer than 14 bytes");
    /* a huge comment or unknown field line is capped too */
    memset(big, 'x', sizeof(big));
    memcpy(big, ": ", 2);
    big[sizeof(big) - 1] = '\0';
    check_case(CHAT_WIRE_OPENAI, big, 100, "=-40:an SSE line is longer than 132 bytes");
    big[0] = 'z';
    check_case(CHAT_WIRE_OPENAI, big, 100, "=-40:an SSE line is longer than 132 bytes");
}

/* ---- whole replies ------------------------------------------------------------- */

static void test_parse_whole(void **state)
{
    chat_buf_t c, t;
    chat_stats_t st;
    size_t n;
    char *body;
    const char *oa =
        "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m1\",\"choices\":[{"
        "\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"Hi "
        "\\u00e9\",\"reasoning_content\":"
        "\"hmm\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,"
        "\"completion_tokens\":2,\"total_tokens\":6}}\n";
    (void)state;

    chat_buf_init(&c);
    chat_buf_init(&t);
    body = load_vector("chat_nostream.json", &n);
    chat_stats_init(&st);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OLLAMA, body, n, &c, &t, &st),
                     CHAT_OK);
    assert_string_equal(c.data, "The sky is blue because of Rayleigh scattering.");
    assert_int_equal(t.len, 0);
    assert_string_equal(st.model, "llama3.2");
    assert_string_equal(st.done_reason, "stop");
    assert_int_equal(st.prompt_tokens, 26);
    assert_int_equal(st.completion_tokens, 11);
    MS_EQ(st.eval_ms, 4535.599);
    MS_EQ(st.tokens_per_sec, 11 / 4.535599);
    free(body);

    chat_buf_reset(&c, 0);
    chat_stats_init(&st);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), &c, &t, &st), CHAT_OK);
    assert_string_equal(c.data, "Hi \xC3\xA9");
    assert_string_equal(t.data, "hmm");
    assert_string_equal(st.model, "m1");
    assert_string_equal(st.done_reason, "stop");
    assert_int_equal(st.prompt_tokens, 4);
    assert_int_equal(st.completion_tokens, 2);
    /* thinking may be NULL; stats too */
    chat_buf_reset(&c, 0);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), &c, NULL, NULL),
        CHAT_OK);
    assert_string_equal(c.data, "Hi \xC3\xA9");

    /* error bodies: EPROTO, message in content */
    body = load_vector("error_model_not_found.json", &n);
    chat_buf_reset(&c, 0);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OLLAMA, body, n, &c, NULL, NULL),
                     CHAT_EPROTO);
    assert_string_equal(c.data, "model 'nosuchmodel' not found");
    free(body);
    chat_buf_reset(&c, 0);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI,
                                             LIT("{\"error\":{\"message\":\"nope\"}}"),
                                             &c, NULL, NULL),
                     CHAT_EPROTO);
    assert_string_equal(c.data, "nope");

    /* garbage and wrong shapes */
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("nope"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("{\"a\":"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("{\"message\":1}"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI,
                                             LIT("{\"choices\":[{\"message\":[]}]}"), &c,
                                             NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI, NULL, 0, &c, NULL, NULL),
                     CHAT_EPARSE);
    chat_buf_free(&c);
    chat_buf_free(&t);
}

static void check_error_text(const char *body, size_t n, size_t cap, const char *want)
{
    char out[1024];
    size_t len;

    memset(out, 'Z', sizeof(out));
    len = chat_backend_error_text(body, n, out, cap);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void test_error_text(void **state)
{
    char *body, big[1000];
    char out[400];
    size_t n, len;
    (void)state;

    body = load_vector("error_model_not_found.json", &n);
    check_error_text(body, n, 400, "model 'nosuchmodel' not found");
    free(body);
    body = load_vector("error_busy.json", &n);
    check_error_text(body, n, 400,
                     "server busy, please try again.  maximum pending requests exceeded");
    free(body);
    check_error_text(
        LIT("{\"error\":{\"message\":\"Incorrect API key\",\"type\":\"invalid\"}}"), 400,
        "Incorrect API key");
    check_error_text(LIT("{\"object\":\"error\",\"message\":\"vllm says no\"}"), 400,
                     "vllm says no");
    check_error_text(LIT("{\"detail\":\"Not Found\"}"), 400, "Not Found");
    check_error_text(LIT("{\"message\":\"bare\"}"), 400, "bare");
    /* JSON without a message: its first line as text */
    check_error_text(LIT("{\"foo\":1}"), 400, "{\"foo\":1}");
    /* plain text: first line, trimmed */
    check_error_text(LIT("  Bad Gateway  \r\nmore"), 400, "Bad Gateway");
    check_error_text(LIT("\n\n upstream timed out\n"), 400, "upstream timed out");
    check_error_text(LIT("tab\there\x01"), 400, "tab here");
    check_error_text(LIT("bad \xFF byte"), 400, "bad \xEF\xBF\xBD byte");
    check_error_text(
        LIT("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>"), 400,
        "502 Bad Gateway");
    check_error_text(LIT(""), 400, "");
    check_error_text(NULL, 5, 400, "");
    check_error_text(LIT("   \n"), 400, "");
    /* at most 300 bytes, cut on a code point boundary */
    memset(big, 'x', sizeof(big));
    len = chat_backend_error_text(big, sizeof(big), out, sizeof(out));
    assert_int_equal(len, 300);
    assert_int_equal(strlen(out), 300);
    /* "a" then e-acute (2 bytes) pairs: byte 300 would split a sequence */
    big[0] = 'a';
    for (n = 1; n + 1 < sizeof(big); n += 2) {
        memcpy(big + n, "\xC3\xA9", 2);
    }
    len = chat_backend_error_text(big, sizeof(big) - 1, out, sizeof(out));
    assert_int_equal(len, 299);
    assert_true(valid_utf8((const unsigned char *)out, len));
    /* outcap is respected */
    len = chat_backend_error_text("abcdefghij", 10, out, 5);
    assert_int_equal(len, 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(chat_backend_error_text("abc", 3, out, 0), 0);
    check_error_text(LIT("{\"error\":\"abcdefghij\"}"), 6, "abcde");
}

static void name_cb(void *baton, const char *name)
{
    chat_buf_t *b = baton;
    chat_buf_puts(b, name);
    chat_buf_puts(b, ";");
}

static void test_models_parse(void **state)
{
    chat_buf_t b;
    char *body;
    size_t n;
    const char *oa =
        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-x\",\"object\":\"model\"},"
        "{\"id\":5},{\"id\":\"\"},7,{\"id\":\"m2\"}]}";
    (void)state;

    chat_buf_init(&b);
    body = load_vector("tags.json", &n);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OLLAMA, body, n, name_cb, &b), 2);
    assert_string_equal(b.data, "qwen2.5-coder:7b;llama3.2:latest;");
    free(body);
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, oa, strlen(oa), name_cb, &b), 2);
    assert_string_equal(b.data, "gpt-x;m2;");
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, oa, strlen(oa), NULL, NULL), 2);
    /* llama.cpp's /models has both lists; "model" when "name" is missing */
    chat_buf_reset(&b, 0);
    assert_int_equal(
        chat_models_parse(
            CHAT_WIRE_OLLAMA,
            LIT("{\"data\":[{\"id\":\"a\"}],\"models\":[{\"model\":\"b\"}]}"), name_cb,
            &b),
        1);
    assert_string_equal(b.data, "b;");
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OLLAMA, LIT("{\"models\":[]}"), NULL, NULL), 0);
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OLLAMA, LIT("{\"models\":5}"), NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("{}"), NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("[]"), NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("{\"data\":["), NULL, NULL),
                     CHAT_EPARSE);
    /* names that are not clean UTF-8 are skipped */
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OPENAI,
                          LIT("{\"data\":[{\"id\":\"a\\u0000b\"},{\"id\":\"\xFF\"}]}"),
                          NULL, NULL),
        0);
    chat_buf_free(&b);
}

/* ---- requests ------------------------------------------------------------------ */

static json_object *parse_json(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new();
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), n);
    json_tokener_free(tok);
    assert_non_null(o);
    return o;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        fail_msg("no member %s", key);
    }
    return v;
}

static int has_member(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

static void test_request_ollama(void **state)
{
    chat_buf_t b;
    chat_options_t o;
    json_object *j, *m, *opt;
    chat_msg_t msgs[3] = {{CHAT_ROLE_SYSTEM, "Be brief.", 9},
                          {CHAT_ROLE_USER, "Hi \"you\"", 8},
                          {CHAT_ROLE_ASSISTANT, "Hello", 5}};
    (void)state;

    chat_buf_init(&b);
    chat_options_init(&o);
    o.temperature = 0.7;
    o.top_p = 0.9;
    o.top_k = 40;
    o.num_ctx = 8192;
    o.num_predict = 256;
    o.seed = 42;
    o.keep_alive = "5m";
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "llama3.2", msgs, 3, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(
        b.data,
        "{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
        "brief.\"},"
        "{\"role\":\"user\",\"content\":\"Hi \\\"you\\\"\"},{\"role\":\"assistant\","
        "\"content\":\"Hello\"}],\"stream\":true,\"keep_alive\":\"5m\",\"options\":{"
        "\"temperature\":0.7,\"top_p\":0.9,\"top_k\":40,\"num_ctx\":8192,\"num_predict\":"
        "256,"
        "\"seed\":42}}");
    j = parse_json(b.data, b.len);
    assert_string_equal(json_object_get_string(member(j, "model")), "llama3.2");
    m = member(j, "messages");
    assert_int_equal(json_object_array_length(m), 3);
    assert_string_equal(
        json_object_get_string(member(json_object_array_get_idx(m, 1), "role")), "user");
    assert_string_equal(
        json_object_get_string(member(json_object_array_get_idx(m, 1), "content")),
        "Hi \"you\"");
    assert_true(json_object_get_boolean(member(j, "stream")));
    assert_string_equal(json_object_get_string(member(j, "keep_alive")), "5m");
    opt = member(j, "options");
    assert_true(json_object_get_double(member(opt, "temperature")) == 0.7);
    assert_true(json_object_get_double(member(opt, "top_p")) == 0.9);
    assert_int_equal(json_object_get_int64(member(opt, "top_k")), 40);
    assert_int_equal(json_object_get_int64(member(opt, "num_ctx")), 8192);
    assert_int_equal(json_object_get_int64(member(opt, "num_predict")), 256);
    assert_int_equal(json_object_get_int64(member(opt, "seed")), 42);
    assert_int_equal(json_object_object_length(opt), 6);
    assert_int_equal(json_object_object_length(j), 5);
    json_object_put(j);

    /* nothing set: no options, no keep_alive; "-1" keep_alive is a number */
    chat_options_init(&o);
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", msgs + 1, 1, &o, 0, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"Hi \\\"you\\\"\"}],\"stream\":false}");
    chat_buf_reset(&b, 0);
    o.keep_alive = "-1";
    o.temperature = 0;
    o.num_ctx = 2048;
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true,"
                                "\"keep_alive\":-1,\"options\":{\"temperature\":0,"
                                "\"num_ctx\":2048}}");
    /* NULL options == all unset; non-finite doubles are unset */
    chat_buf_reset(&b, 0);
    o.keep_alive = NULL;
    o.num_ctx = -1;
    o.temperature = NAN;
    o.top_p = INFINITY;
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true}");
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, NULL, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true}");
    chat_buf_free(&b);
}

static void test_request_openai(void **state)
{
    chat_buf_t b;
    chat_options_t o;
    json_object *j;
    chat_msg_t msgs[2] = {{CHAT_ROLE_USER, "q", 1}, {CHAT_ROLE_TOOL, "r", 1}};
    (void)state;

    chat_buf_init(&b);
    chat_options_init(&o);
    o.temperature = 0.2;
    o.top_p = 1;
    o.num_ctx = 4096;    /* not sent */
    o.num_predict = 100; /* max_tokens */
    o.seed = 7;
    o.keep_alive = "10m"; /* not sent */
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "gpt", msgs, 2, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(
        b.data, "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                "{\"role\":\"tool\",\"content\":\"r\"}],\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true},\"temperature\":0.2,"
                "\"top_p\":1,\"max_tokens\":100,\"seed\":7}");
    j = parse_json(b.data, b.len);
    assert_true(
        json_object_get_boolean(member(member(j, "stream_options"), "include_usage")));
    assert_true(json_object_get_double(member(j, "temperature")) == 0.2);
    assert_int_equal(json_object_get_int64(member(j, "max_tokens")), 100);
    assert_false(has_member(j, "num_ctx"));
    assert_false(has_member(j, "keep_alive"));
    assert_false(has_member(j, "options"));
    assert_false(has_member(j, "top_k"));
    json_object_put(j);
    /* top_k when set (llama-server / vLLM extension); no stream_options
     * without streaming */
    chat_options_init(&o);
    o.top_k = 20;
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "gpt", msgs, 1, &o, 0, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"q\"}],\"stream\":false,\"top_k\":20}");
    chat_buf_free(&b);
}

static void test_request_escaping(void **state)
{
    chat_buf_t b;
    json_object *j, *c;
    const char text[] =
        "q\" b\\ n\n r\r t\t \x01\x1f\x7f \xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x98\x80"
        " bad\xFF end\xE6\x97 </script>\0nul";
    const char want[] =
        "q\" b\\ n\n r\r t\t \x01\x1f\x7f \xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x98\x80"
        " bad\xEF\xBF\xBD end\xEF\xBF\xBD </script>\0nul";
    chat_msg_t m = {CHAT_ROLE_USER, text, sizeof(text) - 1};
    (void)state;

    chat_buf_init(&b);
    chat_buf_puts(&b, "prefix:");
    assert_int_equal(
        chat_request_build(CHAT_WIRE_OPENAI, "m\"odel\n", &m, 1, NULL, 1, &b), CHAT_OK);
    assert_memory_equal(b.data, "prefix:", 7);
    assert_non_null(strstr(b.data, "\\u0001\\u001f\x7f"));
    assert_non_null(strstr(b.data, "\\u0000nul"));
    j = parse_json(b.data + 7, b.len - 7);
    assert_string_equal(json_object_get_string(member(j, "model")), "m\"odel\n");
    c = member(json_object_array_get_idx(member(j, "messages"), 0), "content");
    assert_int_equal(json_object_get_string_len(c), sizeof(want) - 1);
    assert_memory_equal(json_object_get_string(c), want, sizeof(want) - 1);
    json_object_put(j);

    /* bad arguments leave out unchanged */
    m.role = (chat_role_t)9;
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "m", &m, 1, NULL, 1, &b),
                     CHAT_EINVAL);
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, NULL, NULL, 0, NULL, 1, &b),
                     CHAT_EINVAL);
    m.role = CHAT_ROLE_USER;
    m.content = NULL;
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "m", &m, 1, NULL, 1, &b),
                     CHAT_EINVAL);
    m.len = 0; /* NULL with 0 is the empty string */
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", &m, 1, NULL, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"\"}],\"stream\":true}");
    assert_string_equal(chat_role_name(CHAT_ROLE_SYSTEM), "system");
    assert_string_equal(chat_role_name(CHAT_ROLE_TOOL), "tool");
    assert_null(chat_role_name((chat_role_t)-1));
    chat_buf_free(&b);
}

/* ---- review of real-world shapes (OpenAI / vLLM / llama.cpp / Ollama) ---------- */

/* Every SSE vector also with "\r\n" and lone "\r" line ends. */
static void check_sse_all_eols(const char *data, size_t max_line, const char *want)
{
    size_t cn;
    char *v;
    int cr_only;

    check_splits(CHAT_WIRE_OPENAI, data, strlen(data), max_line, want);
    for (cr_only = 0; cr_only < 2; cr_only++) {
        v = to_crlf(data, strlen(data), &cn, cr_only);
        check_splits(CHAT_WIRE_OPENAI, v, cn, max_line, want);
        free(v);
    }
}

static void test_sse_openai_shapes(void **state)
{
    rec_t r;
    (void)state;
    /* OpenAI with stream_options.include_usage: a role-only first chunk with
     * "content":"" and refusal null, "usage":null on every chunk, a finish
     * chunk with an empty delta, then the usage chunk with "choices":[],
     * [DONE]; preceded by a BOM, "event:"/"id:"/"retry:" fields and
     * comments, with and without the space after the colon */
    const char *oa =
        "\xEF\xBB\xBF: OPENROUTER PROCESSING\n\n"
        "retry: 3000\n"
        "id: 1\n"
        "event: message\n"
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data:{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{"
        "\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],"
        "\"usage\":null}\n\n"
        ":\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
        "null,\"reasoning_content\":null},\"finish_reason\":null}],\"usage\":null}\n\n"
        "id: 2\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
        "\"lo \\ud83d\\ude00\"},\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},"
        "\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":"
        "\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
        "\"completion_tokens\":3,\"total_tokens\":12,\"completion_tokens_details\":"
        "{\"reasoning_tokens\":0}}}\n\n"
        "data: [DONE]\n\n";

    check_sse_all_eols(oa, 4096, "C:Hel|C:lo \xF0\x9F\x98\x80|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), 4096, &r), CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_string_equal(r.done_stats.model, "gpt-4o-mini");
    assert_int_equal(r.done_stats.prompt_tokens, 9);
    assert_int_equal(r.done_stats.completion_tokens, 3);
    chat_buf_free(&r.log);

    /* every finish_reason is relayed as done_reason */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
               "\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n",
               4096, "C:x|D:|=0:");
    /* a tool-call answer: no text, complete */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
               "\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
               "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},"
               "\"finish_reason\":null}]}\n\n"
               "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
               "\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
               4096, "D:|=0:");
    /* an error object as a data event (OpenAI, LiteLLM) mid-stream */
    check_sse_all_eols(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":"
        "\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n",
        4096, "C:a|E:Rate limit reached|=-23:backend error: Rate limit reached");
}

static void test_sse_json_body(void **state)
{
    rec_t r;
    const char *whole =
        "{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion\",\"created\":1,"
        "\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"message\":{"
        "\"role\":\"assistant\",\"reasoning_content\":\"think\",\"content\":\"Hi "
        "\\u00e9\",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n";
    (void)state;
    /* a server that ignored "stream":true answers one chat.completion
     * (pretty-printed by some proxies): the whole answer, complete */
    check_case(CHAT_WIRE_OPENAI, whole, 4096, "T:think|C:Hi \xC3\xA9|D:|=0:");
    check_case(CHAT_WIRE_OPENAI,
               "\r\n{\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": "
               "{\"role\": \"assistant\", \"content\": \"a\\nb\"},\n      "
               "\"finish_reason\": \"stop\"\n    }\n  ]\n}\n",
               4096, "C:a\nb|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OPENAI, whole, strlen(whole), 4096, &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_string_equal(r.done_stats.model, "Qwen/Qwen2.5-7B-Instruct");
    assert_int_equal(r.done_stats.prompt_tokens, 5);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    chat_buf_free(&r.log);
    /* an error object with a 2xx status: the backend's error, not a cut
     * answer (OpenAI, vLLM, llama.cpp shapes) */
    check_case(CHAT_WIRE_OPENAI,
               "{\"error\":{\"message\":\"This model's maximum context length is 8192 "
               "tokens\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
               "\"code\":\"context_length_exceeded\"}}",
               4096,
               "E:This model's maximum context length is 8192 tokens|=-23:backend error: "
               "This model's maximum context length is 8192 tokens");
    check_case(
        CHAT_WIRE_OPENAI,
        "{\"object\":\"error\",\"message\":\"The model `x` does not exist.\","
        "\"type\":\"NotFoundError\",\"param\":null,\"code\":404}",
        4096,
        "E:The model `x` does not exist.|=-23:backend error: The model `x` does not "
        "exist.");
    /* cut inside the object: interrupted; other JSON: protocol error */
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[{\"message\":{\"content\":\"ab", 4096,
               "=-23:the stream ended inside the JSON reply");
    check_case(
        CHAT_WIRE_OPENAI, "{\"status\":\"ok\"}", 4096,
        "=-20:the reply is neither SSE nor a JSON chat completion (no \"choices\")");
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[]} x", 4096,
               "=-20:the reply is neither SSE nor a JSON chat completion: invalid JSON "
               "(unexpected character) at byte 15");
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[{\"message\":{\"content\":7}}]}", 4096,
               "=-20:JSON reply: \"content\" is not a string");
    /* the whole body is capped by max_line */
    check_case(CHAT_WIRE_OPENAI, whole, 64,
               "=-40:the JSON reply is longer than 64 bytes");
}

static void test_sse_not_sse(void **state)
{
    (void)state;
    /* a 2xx body that is not SSE at all is a protocol error, not an
     * interrupted answer */
    check_case(CHAT_WIRE_OPENAI, "Hello, this is not an event stream\n", 4096,
               "=-20:the reply is not an SSE stream (no \"data:\" line)");
    check_case(CHAT_WIRE_OPENAI, "OK", 4096,
               "=-20:the reply is not an SSE stream (no \"data:\" line)");
    check_case(CHAT_WIRE_OPENAI, "\n<!DOCTYPE html><html><body>login</body></html>", 4096,
               "=-20:the reply is HTML or XML, not an SSE stream");
    /* but only comments, or nothing, is a cut answer */
    check_case(CHAT_WIRE_OPENAI, ": ping\n\n: ping\n\n", 4096,
               "=-23:the stream ended before [DONE]");
    check_case(CHAT_WIRE_OPENAI, "\r\n\r\n", 4096, "=-23:the stream ended before [DONE]");
    /* and an unknown field next to real events is ignored (the spec) */
    check_case(CHAT_WIRE_OPENAI,
               "x-vendor: 1\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
               "data: [DONE]\n\n",
               4096, "C:a|D:|=0:");
}

/* The in-place reader of ordinary token lines gives exactly what json-c
 * gives, line shape by line shape (and declines whatever it does not
 * expect, which then fails or succeeds as json-c says). */
static void fast_vs_json_c(const char *line)
{
    static const char done[] = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\","
                               "\"content\":\"\"},\"done\":true,\"eval_count\":2}\n";
    chat_buf_t in;
    rec_t fast, slow;

    chat_buf_init(&in);
    chat_buf_puts(&in, line);
    chat_buf_puts(&in, "\n");
    chat_buf_puts(&in, done);
    rec_init(&fast);
    rec_init(&slow);
    chat_stream_set_fast_path(1);
    run_whole(CHAT_WIRE_OLLAMA, in.data, in.len, 4096, &fast);
    chat_stream_set_fast_path(0);
    run_whole(CHAT_WIRE_OLLAMA, in.data, in.len, 4096, &slow);
    chat_stream_set_fast_path(1);
    if (strcmp(fast.log.data, slow.log.data) != 0) {
        fail_msg("line %s:\n fast   %s\n json-c %s", line, fast.log.data, slow.log.data);
    }
    assert_string_equal(fast.done_stats.model, slow.done_stats.model);
    chat_buf_free(&fast.log);
    chat_buf_free(&slow.log);
    chat_buf_free(&in);
}

static void test_ndjson_fast_path_same_as_json_c(void **state)
{
    static const char *const lines[] = {
        /* ordinary token lines (read in place) */
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-10-20T10:00:00.1Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"Hello\"},\"done\":false}",
        "{ \"message\" : { \"content\" : \"a b\" , \"role\" : \"assistant\" } , "
        "\"done\" : false }",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\"},"
        "\"done\":false}",
        "{\"message\":{\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}",
        "{\"message\":{\"content\":\"bad \xff\xfe utf8 \xc3\"},\"done\":false}",
        "{\"message\":{\"content\":\"x\",\"images\":null,\"tool_calls\":[{\"a\":[1,2.5e3,"
        "-0.1E-2,true,false,null,{}]},[]]},\"n\":-12,\"done\":false}",
        "{\"model\":\"\",\"message\":{\"content\":\"no model\"}}",
        "{\"other\":\"with \\\"escapes\\\" \\u00e9 \\ud83d\\ude00\",\"message\":"
        "{\"content\":\"ok\"}}",
        /* declined: json-c decides */
        "{\"message\":{\"content\":\"line\\nbreak \\\"q\\\" \\u00e9 \\ud83d\\ude00\"}}",
        "{\"message\":{\"content\":\"lone \\ud800 surrogate\"}}",
        "{\"message\":{\"content\":\"nul \\u0000 byte\"}}",
        "{\"message\":{\"content\":\"raw\ttab\"}}",
        "{\"message\":{\"content\":\"one\",\"content\":\"two\"}}",
        "{\"message\":{\"content\":\"a\"},\"message\":{\"content\":\"b\"}}",
        "{\"message\":{\"content\":\"a\"},\"done\":false,\"done\":true}",
        "{\"mess\\u0061ge\":{\"content\":\"escaped key\"}}",
        "{\"message\":{\"cont\\u0065nt\":\"escaped inner key\"}}",
        "{\"message\":{\"content\":null}}",
        "{\"message\":{\"content\":42}}",
        "{\"message\":\"not an object\"}",
        "{\"message\":{\"content\":\"x\"},\"done\":\"false\"}",
        "{\"message\":{\"content\":\"x\"},\"done\":0}",
        "{\"error\":\"model 'x' not found\"}",
        "{\"error\":{\"message\":\"nested\"},\"message\":{\"content\":\"x\"}}",
        "{\"object\":\"error\",\"message\":\"vllm style\"}",
        "{\"model\":\"m\\u00e9\",\"message\":{\"content\":\"escaped model\"}}",
        "{\"model\":7,\"message\":{\"content\":\"numeric model\"}}",
        "{\"message\":{\"content\":\"x\"},\"n\":01}",
        "{\"message\":{\"content\":\"x\"},\"n\":1.}",
        "{\"message\":{\"content\":\"x\"},\"n\":NaN}",
        "{\"message\":{\"content\":\"x\"},\"n\":[1,]}",
        "{\"message\":{\"content\":\"x\"},}",
        "{\"message\":{\"content\":\"x\"}} trailing",
        "{\"message\":{\"content\":\"x\"}\f}",
        "{\"message\":{\"content\":\"x\"},\"deep\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
        "{\"message\":{\"content\":\"x\"},\"s\":\"bad \\q escape\"}",
        "{\"message\":{\"content\":\"x\"},\"s\":\"short \\u12\"}",
        "{\"message\":{\"content\":\"unterminated}}",
        "{\"message\":{\"content\":\"x\"}",
        "{'message':{'content':'single quotes'}}",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        fast_vs_json_c(lines[i]);
    }
    /* and every Ollama vector */
    {
        static const char *const vec[] = {
            "chat_stream.ndjson", "chat_stream_last_has_content.ndjson",
            "chat_stream_midstream_error.ndjson", "chat_stream_thinking.ndjson",
            "chat_stream_truncated.ndjson", "chat_stream_unicode.ndjson"};
        for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
            size_t n;
            char *data = load_vector(vec[i], &n);
            rec_t fast, slow;
            rec_init(&fast);
            rec_init(&slow);
            run_whole(CHAT_WIRE_OLLAMA, data, n, 4096, &fast);
            chat_stream_set_fast_path(0);
            run_whole(CHAT_WIRE_OLLAMA, data, n, 4096, &slow);
            chat_stream_set_fast_path(1);
            assert_string_equal(fast.log.data, slow.log.data);
            assert_string_equal(fast.done_stats.model, slow.done_stats.model);
            chat_buf_free(&fast.log);
            chat_buf_free(&slow.log);
            free(data);
        }
    }
}

static void test_ndjson_ollama_shapes(void **state)
{
    rec_t r;
    const char *tools =
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.1Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"need the weather\"},"
        "\"done\":false}\r\n"
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.2Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{"
        "\"name\":"
        "\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},\"done\":false}\r\n"
        "\r\n"
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.3Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"length\",\"done\":"
        "true,"
        "\"total_duration\":3000000000,\"load_duration\":1500000000,"
        "\"prompt_eval_count\":12,\"prompt_eval_duration\":250000000,\"eval_count\":40,"
        "\"eval_duration\":1000000000}\r\n";
    (void)state;
    check_splits(CHAT_WIRE_OLLAMA, tools, strlen(tools), 4096,
                 "T:need the weather|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OLLAMA, tools, strlen(tools), 4096, &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_string_equal(r.done_stats.model, "qwen3:8b");
    assert_int_equal(r.done_stats.prompt_tokens, 12);
    assert_int_equal(r.done_stats.completion_tokens, 40);
    MS_EQ(r.done_stats.total_ms, 3000.0);
    MS_EQ(r.done_stats.load_ms, 1500.0);
    MS_EQ(r.done_stats.prompt_ms, 250.0);
    MS_EQ(r.done_stats.eval_ms, 1000.0);
    MS_EQ(r.done_stats.tokens_per_sec, 40.0);
    chat_buf_free(&r.log);
    /* the "load" reply to an empty conversation is a (content-less) done */
    check_case(
        CHAT_WIRE_OLLAMA,
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-10-20T10:00:00Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"load\","
        "\"done\":true}\n",
        4096, "D:|=0:");
    /* the 404 body of a missing model, as a 200 line: an error */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}\n", 4096,
               "E:model \"x\" not found, try pulling it first|=-23:backend error: model "
               "\"x\" not found, try pulling it first");
    /* a number where a string belongs: a clear protocol error */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"role\":\"assistant\",\"content\":42}}\n", 4096,
               "=-20:NDJSON line 1: \"message.content\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\"},\"done\":\"true\"}\n",
               4096, "=-20:NDJSON line 1: \"done\" is not a boolean");
    /* raw invalid UTF-8 in content never reaches the caller */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"a\xC3\"}}\n{\"message\":{\"content\":\"\xA9"
               "b\xED\xA0\x80\"},\"done\":true}\n",
               4096,
               "C:a\xEF\xBF\xBD|C:\xEF\xBF\xBD"
               "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|D:|=0:");
}

static void test_error_text_sse_body(void **state)
{
    (void)state;
    /* some servers answer a 4xx/5xx with their error as an SSE event */
    check_error_text(LIT("data: {\"error\":{\"message\":\"Invalid API key\"}}\n\n"), 400,
                     "Invalid API key");
    check_error_text(LIT("event: error\ndata: {\"error\":\"model not loaded\"}\n\n"), 400,
                     "model not loaded");
    check_error_text(LIT("error: {\"code\":503,\"message\":\"Loading model\",\"type\":"
                         "\"unavailable_error\"}\n\n"),
                     400, "Loading model");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_ollama_last_has_content),
        cmocka_unit_test(test_ollama_thinking),
        cmocka_unit_test(test_ollama_unicode),
        cmocka_unit_test(test_ollama_midstream_error),
        cmocka_unit_test(test_ollama_truncated),
        cmocka_unit_test(test_openai_stream),
        cmocka_unit_test(test_openai_llamacpp),
        cmocka_unit_test(test_openai_error),
        cmocka_unit_test(test_ndjson_blank_lines_and_crlf),
        cmocka_unit_test(test_ndjson_garbage),
        cmocka_unit_test(test_ndjson_after_done),
        cmocka_unit_test(test_ndjson_too_big),
        cmocka_unit_test(test_utf8_sanitising),
        cmocka_unit_test(test_reset_after_surrogate_error),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_callback_abort_and_misuse),
        cmocka_unit_test(test_sse_fields),
        cmocka_unit_test(test_sse_end),
        cmocka_unit_test(test_sse_errors),
        cmocka_unit_test(test_sse_too_big),
        cmocka_unit_test(test_parse_whole),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_models_parse),
        cmocka_unit_test(test_request_ollama),
        cmocka_unit_test(test_request_openai),
        cmocka_unit_test(test_request_escaping),
        cmocka_unit_test(test_sse_openai_shapes),
        cmocka_unit_test(test_sse_json_body),
        cmocka_unit_test(test_sse_not_sse),
        cmocka_unit_test(test_ndjson_ollama_shapes),
        cmocka_unit_test(test_ndjson_fast_path_same_as_json_c),
        cmocka_unit_test(test_error_text_sse_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
