/* chat_stream.c - what comes back from an LLM backend: the incremental
 * parsers for Ollama's NDJSON (/api/chat) and OpenAI-compatible SSE
 * (/v1/chat/completions) streams, non-streamed replies, error bodies and
 * model lists. Requests are built in chat_request.c.
 *
 * Each complete NDJSON line / SSE event is parsed with json-c (explicit
 * length, strict mode, depth limit, no trailing garbage). Everything the
 * parsers emit is valid UTF-8: json-c decodes \u escapes (a lone surrogate
 * becomes U+FFFD) but passes raw bytes through, so strings are checked and
 * invalid sequences (and NUL, so a text is also a safe C string) replaced by
 * U+FFFD here.
 *
 * Behaviour at the edges (the header leaves these to the implementation):
 *  - A failure (CHAT_EPARSE, CHAT_ETOOBIG, CHAT_ECLOSED) is sticky: every
 *    later feed/finish returns it until chat_stream_reset().
 *  - After DONE, only whitespace (CR, LF, SP, HT) may follow; anything else
 *    makes feed return CHAT_ECLOSED.
 *  - After an ERROR event the rest of the stream is ignored (llama.cpp sends
 *    "data: [DONE]" after its error event); no DONE follows and finish
 *    returns CHAT_EINCOMPLETE.
 *  - finish: an unterminated last line / event is processed as if it were
 *    terminated. If it is a truncated JSON object (or a truncated "[DONE]")
 *    the answer was cut: CHAT_EINCOMPLETE rather than CHAT_EPARSE.
 *  - OpenAI: a stream that ends without [DONE] but after a finish_reason is
 *    complete (some servers omit [DONE]): finish delivers DONE, CHAT_OK.
 *  - NDJSON lines end with "\n" (a "\r" before it is dropped); SSE lines end
 *    with "\r\n", "\n" or "\r" as the SSE specification says, and a leading
 *    byte order mark is skipped.
 *  - max_line caps an NDJSON line without its terminator, and the data of
 *    one SSE event; an SSE line may be max_line + SSE_LINE_SLACK bytes long
 *    (room for the field name).
 *  - The event callback must not feed, reset or destroy the stream.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/proto.h"
#include "chat/stream.h"
#include "chat/utf8.h"

#define JSON_DEPTH 64             /* nesting allowed in one reply */
#define KEEP_ON_RESET (64 * 1024) /* buffer memory kept by reset */
#define SSE_LINE_SLACK 32         /* "data: " and friends */
#define ERROR_TEXT_MAX 300        /* plain-text error bodies */

/* ---- UTF-8 ------------------------------------------------------------ */

/* chat_utf8_seq, except that NUL counts as ill-formed: emitted texts are
 * then safe C strings. */
static size_t utf8_seq(const unsigned char *p, size_t n, size_t *bad)
{
    if (p[0] == 0) {
        *bad = 1;
        return 0;
    }
    return chat_utf8_seq(p, n, bad);
}

/* 1 if p[0..n) is valid UTF-8 without NUL. */
static int utf8_clean(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k, bad;

    while (i < n) {
        if (p[i] >= 0x01 && p[i] < 0x80) {
            i++;
            continue;
        }
        k = utf8_seq(p + i, n - i, &bad);
        if (!k) {
            return 0;
        }
        i += k;
    }
    return 1;
}

/* Appends p[0..n) to out with ill-formed sequences replaced by U+FFFD. */
static chat_status_t utf8_sanitize_buf(chat_buf_t *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0, k, bad;

    while (i < n) {
        k = utf8_seq(p + i, n - i, &bad);
        if (k) {
            i += k;
            continue;
        }
        if (chat_buf_append(out, p + run, i - run) != CHAT_OK ||
            chat_buf_append(out, "\xEF\xBF\xBD", 3) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        i += bad;
        run = i;
    }
    return chat_buf_append(out, p + run, n - run);
}

/* Copies p[0..n) into dst (cap bytes, NUL terminated), sanitised, cut at a
 * code point boundary to at most limit bytes; control characters become
 * spaces when flat is set (one-line messages). Returns the length. */
static size_t copy_text(char *dst, size_t cap, const char *s, size_t n, size_t limit,
                        int flat)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, o = 0, k, bad;

    if (!cap) {
        return 0;
    }
    if (limit > cap - 1) {
        limit = cap - 1;
    }
    while (i < n) {
        k = utf8_seq(p + i, n - i, &bad);
        if (!k) {
            if (o + 3 > limit) {
                break;
            }
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += bad;
            continue;
        }
        if (o + k > limit) {
            break;
        }
        if (flat && k == 1 && (p[i] < 0x20 || p[i] == 0x7F)) {
            dst[o++] = ' ';
        }
        else {
            memcpy(dst + o, p + i, k);
            o += k;
        }
        i += k;
    }
    dst[o] = '\0';
    return o;
}

/* ---- JSON helpers ------------------------------------------------------- */

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static const char *trim(const char *p, size_t *n)
{
    while (*n && is_ws(p[0])) {
        p++;
        (*n)--;
    }
    while (*n && is_ws(p[*n - 1])) {
        (*n)--;
    }
    return p;
}

/* Parses p[0..n) (already trimmed) as one JSON object. On failure returns
 * NULL with a reason in why; *truncated is set when the text is the start
 * of an object that simply ended too early. */
static json_object *parse_object(json_tokener *tok, const char *p, size_t n, char *why,
                                 size_t whycap, int *truncated)
{
    json_object *o;
    enum json_tokener_error jerr;
    size_t end;

    *truncated = 0;
    if (n == 0 || p[0] != '{') {
        const char *got = "text that is not JSON";
        if (n == 0) {
            got = "nothing";
        }
        else if (p[0] != '\0' && strchr("[\"-0123456789tfn", p[0])) {
            got = "another JSON value";
        }
        snprintf(why, whycap, "expected a JSON object, got %s", got);
        return NULL;
    }
    if (n > INT_MAX) {
        snprintf(why, whycap, "JSON text too large");
        return NULL;
    }
    json_tokener_reset(tok);
    o = json_tokener_parse_ex(tok, p, (int)n);
    jerr = json_tokener_get_error(tok);
    if (!o) {
        if (jerr == json_tokener_continue) {
            *truncated = 1;
            snprintf(why, whycap, "truncated JSON object");
        }
        else {
            snprintf(why, whycap, "invalid JSON (%s) at byte %zu",
                     json_tokener_error_desc(jerr), json_tokener_get_parse_end(tok));
        }
        return NULL;
    }
    end = json_tokener_get_parse_end(tok);
    while (end < n && is_ws(p[end])) {
        end++;
    }
    if (end < n) {
        snprintf(why, whycap, "unexpected data after the JSON object at byte %zu", end);
        json_object_put(o);
        return NULL;
    }
    return o;
}

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v; /* NULL for JSON null too */
}

/* A string member: 1 and (*s, *n) if it is a string, 0 if it is absent or
 * null, -1 if it has another type. */
static int jstr(json_object *o, const char *key, const char **s, size_t *n)
{
    json_object *v = jget(o, key);

    *s = NULL;
    *n = 0;
    if (!v) {
        return 0;
    }
    if (!json_object_is_type(v, json_type_string)) {
        return -1;
    }
    *s = json_object_get_string(v);
    *n = (size_t)json_object_get_string_len(v);
    return 1;
}

/* A non-negative number member as double, or -1 when absent or invalid. */
static double jnum(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    double d;

    if (!v) {
        return -1;
    }
    if (json_object_is_type(v, json_type_int)) {
        int64_t i = json_object_get_int64(v);
        return i < 0 ? -1 : (double)i;
    }
    if (json_object_is_type(v, json_type_double)) {
        d = json_object_get_double(v);
        return (isfinite(d) && d >= 0) ? d : -1;
    }
    return -1;
}

static int64_t jcount(json_object *o, const char *key)
{
    double d = jnum(o, key);

    if (d < 0 || d >= 9.2e18) {
        return -1;
    }
    return (int64_t)d;
}

static void stat_str(char *dst, size_t cap, json_object *o, const char *key)
{
    const char *s;
    size_t n;

    if (jstr(o, key, &s, &n) == 1 && n) {
        copy_text(dst, cap, s, n, cap - 1, 1);
    }
}

/* If o is an error reply, sets (*msg, *len) to its message and returns 1.
 * Shapes: Ollama {"error":"..."}, OpenAI {"error":{"message":...}},
 * llama.cpp's SSE "error:" payload {"code","message","type"} (with bare),
 * vLLM {"object":"error","message":...}. An error value without a usable
 * message is described by its JSON text. */
static int error_message(json_object *o, int bare, const char **msg, size_t *len)
{
    json_object *e = jget(o, "error");
    const char *s;
    size_t n;

    if (e) {
        if (json_object_is_type(e, json_type_string)) {
            *msg = json_object_get_string(e);
            *len = (size_t)json_object_get_string_len(e);
        }
        else if (json_object_is_type(e, json_type_object) &&
                 jstr(e, "message", &s, &n) == 1) {
            *msg = s;
            *len = n;
        }
        else {
            *msg = json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN);
            *len = strlen(*msg);
        }
        if (*len == 0) {
            *msg = "unknown backend error";
            *len = strlen(*msg);
        }
        return 1;
    }
    if (jstr(o, "object", &s, &n) == 1 && n == 5 && memcmp(s, "error", 5) == 0) {
        bare = 1;
    }
    if (bare && jstr(o, "message", &s, &n) == 1 && n) {
        *msg = s;
        *len = n;
        return 1;
    }
    return 0;
}

/* ---- Ollama's token lines without json-c ------------------------------------ */

/* Nearly every line of an answer is {"model":..,"created_at":..,"message":
 * {"role":"assistant","content":"<token>"},"done":false}. json-c builds a
 * tree of allocations for each (and sets up a "C" locale per parse): with
 * the frees that follow, a third of httpd's userspace instructions per
 * turn. fast_line() reads such a line in place instead: it checks the whole
 * line against RFC 8259's grammar and picks out message.content,
 * message.thinking, done and model. Whatever it does not expect - an error,
 * done:true (the statistics), an escape or control character in a string it
 * keeps, a repeated or escaped key, a member of another type, deep nesting,
 * anything json-c might read differently - it declines, and the line goes
 * to json-c: both paths give the same events (the fuzzer compares them). */

#define FAST_DEPTH 16 /* below JSON_DEPTH: deeper lines go to json-c */

static int fast_enabled = 1;

void chat_stream_set_fast_path(int on)
{
    fast_enabled = on;
}

typedef struct {
    const char *p, *end;
} fscan_t;

typedef struct {
    const char *s;
    size_t n;
    int plain; /* no escape: the bytes are the value */
} fstr_t;

static void f_ws(fscan_t *f)
{
    while (f->p < f->end && is_ws(*f->p)) {
        f->p++;
    }
}

static int f_hex4(const char *q)
{
    int i;

    for (i = 0; i < 4; i++) {
        char c = q[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* A string at f->p ('"'). 0 if it is not a valid JSON string. */
static int f_string(fscan_t *f, fstr_t *out)
{
    const char *q = f->p + 1, *start = q;
    int plain = 1;

    while (q < f->end) {
        unsigned char c;
        q += chat_json_plain(q, (size_t)(f->end - q));
        if (q >= f->end) {
            break;
        }
        c = (unsigned char)*q;
        if (c == '"') {
            out->s = start;
            out->n = (size_t)(q - start);
            out->plain = plain;
            f->p = q + 1;
            return 1;
        }
        if (c < 0x20) {
            return 0;
        }
        if (c == '\\') {
            plain = 0;
            if (++q >= f->end) {
                return 0;
            }
            if (*q == 'u') {
                if (f->end - q < 5 || !f_hex4(q + 1)) {
                    return 0;
                }
                q += 5;
                continue;
            }
            if (!strchr("\"\\/bfnrt", *q) || *q == '\0') {
                return 0;
            }
        }
        q++;
    }
    return 0;
}

static int f_digits(fscan_t *f)
{
    const char *q = f->p;

    while (f->p < f->end && *f->p >= '0' && *f->p <= '9') {
        f->p++;
    }
    return f->p > q;
}

static int f_number(fscan_t *f)
{
    if (f->p < f->end && *f->p == '-') {
        f->p++;
    }
    if (f->p < f->end && *f->p == '0') {
        f->p++;
    }
    else if (!f_digits(f)) {
        return 0;
    }
    if (f->p < f->end && *f->p == '.') {
        f->p++;
        if (!f_digits(f)) {
            return 0;
        }
    }
    if (f->p < f->end && (*f->p == 'e' || *f->p == 'E')) {
        f->p++;
        if (f->p < f->end && (*f->p == '+' || *f->p == '-')) {
            f->p++;
        }
        if (!f_digits(f)) {
            return 0;
        }
    }
    return 1;
}

static int f_word(fscan_t *f, const char *w, size_t n)
{
    if ((size_t)(f->end - f->p) < n || memcmp(f->p, w, n) != 0) {
        return 0;
    }
    f->p += n;
    return 1;
}

static int f_value(fscan_t *f, int depth);

/* An object or array at f->p, whose members are only checked. */
static int f_container(fscan_t *f, int depth)
{
    char close = *f->p == '{' ? '}' : ']';
    fstr_t k;

    if (depth >= FAST_DEPTH) {
        return 0;
    }
    f->p++;
    f_ws(f);
    if (f->p < f->end && *f->p == close) {
        f->p++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (f->p >= f->end || *f->p != '"' || !f_string(f, &k)) {
                return 0;
            }
            f_ws(f);
            if (f->p >= f->end || *f->p++ != ':') {
                return 0;
            }
            f_ws(f);
        }
        if (!f_value(f, depth + 1)) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end) {
            return 0;
        }
        if (*f->p == close) {
            f->p++;
            return 1;
        }
        if (*f->p++ != ',') {
            return 0;
        }
        f_ws(f);
    }
}

static int f_value(fscan_t *f, int depth)
{
    fstr_t v;

    if (f->p >= f->end) {
        return 0;
    }
    switch (*f->p) {
    case '"':
        return f_string(f, &v);
    case '{':
    case '[':
        return f_container(f, depth);
    case 't':
        return f_word(f, "true", 4);
    case 'f':
        return f_word(f, "false", 5);
    case 'n':
        return f_word(f, "null", 4);
    default:
        return f_number(f);
    }
}

static int f_key_is(const fstr_t *k, const char *name)
{
    size_t n = strlen(name);

    return k->n == n && memcmp(k->s, name, n) == 0;
}

/* The members of an object at f->p, one callback per member with f->p at
 * its value; the callback consumes the value (1) or declines (0). */
static int f_members(fscan_t *f, int (*member)(fscan_t *f, const fstr_t *key, void *baton),
                     void *baton)
{
    fstr_t k;

    f->p++;
    f_ws(f);
    if (f->p < f->end && *f->p == '}') {
        f->p++;
        return 1;
    }
    for (;;) {
        if (f->p >= f->end || *f->p != '"' || !f_string(f, &k) || !k.plain) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end || *f->p++ != ':') {
            return 0;
        }
        f_ws(f);
        if (!member(f, &k, baton)) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end) {
            return 0;
        }
        if (*f->p == '}') {
            f->p++;
            return 1;
        }
        if (*f->p++ != ',') {
            return 0;
        }
        f_ws(f);
    }
}

typedef struct {
    fstr_t content, thinking, model;
    int has_message, has_done, has_model;
} fast_t;

/* A kept string: present once, a string, no escape. */
static int f_keep(fscan_t *f, fstr_t *out)
{
    if (out->s || f->p >= f->end || *f->p != '"' || !f_string(f, out) || !out->plain) {
        return 0;
    }
    return 1;
}

static int f_message_member(fscan_t *f, const fstr_t *k, void *baton)
{
    fast_t *r = baton;

    if (f_key_is(k, "content")) {
        return f_keep(f, &r->content);
    }
    if (f_key_is(k, "thinking")) {
        return f_keep(f, &r->thinking);
    }
    return f_value(f, 2);
}

static int f_line_member(fscan_t *f, const fstr_t *k, void *baton)
{
    fast_t *r = baton;

    if (f_key_is(k, "message")) {
        if (r->has_message || f->p >= f->end || *f->p != '{') {
            return 0;
        }
        r->has_message = 1;
        return f_members(f, f_message_member, r);
    }
    if (f_key_is(k, "done")) {
        /* done:true carries the statistics: json-c reads those */
        if (r->has_done) {
            return 0;
        }
        r->has_done = 1;
        return f_word(f, "false", 5);
    }
    if (f_key_is(k, "model")) {
        if (r->has_model) {
            return 0;
        }
        r->has_model = 1;
        return f_keep(f, &r->model);
    }
    if (f_key_is(k, "error") || f_key_is(k, "object")) {
        return 0; /* error replies: json-c */
    }
    return f_value(f, 1);
}

/* 1 if p[0..n) (trimmed, non-empty) is a token line read into r. */
static int fast_line(const char *p, size_t n, fast_t *r)
{
    fscan_t f;

    memset(r, 0, sizeof(*r));
    if (!fast_enabled || p[0] != '{') {
        return 0;
    }
    f.p = p;
    f.end = p + n;
    return f_members(&f, f_line_member, r) && f.p == f.end;
}

/* The fields of one reply object that matter to us. */
typedef struct {
    const char *content, *thinking, *finish;
    size_t content_len, thinking_len, finish_len;
    int done; /* Ollama done:true */
} reply_t;

/* Ollama: {"model","message":{"content","thinking"},"done",...stats}. */
static int ollama_reply(json_object *o, reply_t *r, const char **why)
{
    json_object *m = jget(o, "message"), *d = jget(o, "done");

    memset(r, 0, sizeof(*r));
    if (m) {
        if (!json_object_is_type(m, json_type_object)) {
            *why = "\"message\" is not an object";
            return -1;
        }
        if (jstr(m, "content", &r->content, &r->content_len) < 0) {
            *why = "\"message.content\" is not a string";
            return -1;
        }
        if (jstr(m, "thinking", &r->thinking, &r->thinking_len) < 0) {
            *why = "\"message.thinking\" is not a string";
            return -1;
        }
    }
    if (d) {
        if (!json_object_is_type(d, json_type_boolean)) {
            *why = "\"done\" is not a boolean";
            return -1;
        }
        r->done = json_object_get_boolean(d);
    }
    return 0;
}

static void ollama_stats(json_object *o, chat_stats_t *st)
{
    double v;
    int64_t c;

    stat_str(st->model, sizeof(st->model), o, "model");
    stat_str(st->done_reason, sizeof(st->done_reason), o, "done_reason");
    if ((c = jcount(o, "prompt_eval_count")) >= 0) {
        st->prompt_tokens = c;
    }
    if ((c = jcount(o, "eval_count")) >= 0) {
        st->completion_tokens = c;
    }
    /* durations are nanoseconds */
    if ((v = jnum(o, "total_duration")) >= 0) {
        st->total_ms = v / 1e6;
    }
    if ((v = jnum(o, "load_duration")) >= 0) {
        st->load_ms = v / 1e6;
    }
    if ((v = jnum(o, "prompt_eval_duration")) >= 0) {
        st->prompt_ms = v / 1e6;
    }
    if ((v = jnum(o, "eval_duration")) >= 0) {
        st->eval_ms = v / 1e6;
        if (v > 0 && st->completion_tokens >= 0) {
            st->tokens_per_sec = (double)st->completion_tokens / (v / 1e9);
        }
    }
}

/* OpenAI: choices[i] with index 0 (or the first without an index); key is
 * "delta" (stream chunk) or "message" (whole reply). */
static int openai_reply(json_object *o, const char *key, reply_t *r, const char **why)
{
    json_object *ch = jget(o, "choices"), *pick = NULL, *d, *idx;
    size_t i, n;

    memset(r, 0, sizeof(*r));
    if (!ch) {
        return 0;
    }
    if (!json_object_is_type(ch, json_type_array)) {
        *why = "\"choices\" is not an array";
        return -1;
    }
    n = json_object_array_length(ch);
    for (i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(ch, i);
        if (!json_object_is_type(c, json_type_object)) {
            *why = "an element of \"choices\" is not an object";
            return -1;
        }
        idx = jget(c, "index");
        if (!pick && (!idx || (json_object_is_type(idx, json_type_int) &&
                               json_object_get_int64(idx) == 0))) {
            pick = c;
        }
    }
    if (!pick) {
        return 0;
    }
    if (jstr(pick, "finish_reason", &r->finish, &r->finish_len) < 0) {
        *why = "\"finish_reason\" is not a string";
        return -1;
    }
    d = jget(pick, key);
    if (!d) {
        return 0;
    }
    if (!json_object_is_type(d, json_type_object)) {
        *why = strcmp(key, "delta") == 0 ? "\"delta\" is not an object"
                                         : "\"message\" is not an object";
        return -1;
    }
    if (jstr(d, "content", &r->content, &r->content_len) < 0) {
        *why = "\"content\" is not a string";
        return -1;
    }
    /* llama.cpp/DeepSeek say reasoning_content, vLLM/OpenRouter reasoning;
     * some servers send both with the same text: take one */
    if (jstr(d, "reasoning_content", &r->thinking, &r->thinking_len) < 0) {
        *why = "\"reasoning_content\" is not a string";
        return -1;
    }
    if (!r->thinking_len) {
        if (jstr(d, "reasoning", &r->thinking, &r->thinking_len) < 0) {
            *why = "\"reasoning\" is not a string";
            return -1;
        }
    }
    return 0;
}

static void openai_stats(json_object *o, const reply_t *r, chat_stats_t *st)
{
    json_object *u = jget(o, "usage"), *t = jget(o, "timings");
    int64_t c;
    double v;

    stat_str(st->model, sizeof(st->model), o, "model");
    if (r->finish_len) {
        copy_text(st->done_reason, sizeof(st->done_reason), r->finish, r->finish_len,
                  sizeof(st->done_reason) - 1, 1);
    }
    if (u && json_object_is_type(u, json_type_object)) {
        if ((c = jcount(u, "prompt_tokens")) >= 0) {
            st->prompt_tokens = c;
        }
        if ((c = jcount(u, "completion_tokens")) >= 0) {
            st->completion_tokens = c;
        }
    }
    if (t && json_object_is_type(t, json_type_object)) {
        /* llama.cpp: milliseconds already */
        if ((v = jnum(t, "prompt_ms")) >= 0) {
            st->prompt_ms = v;
        }
        if ((v = jnum(t, "predicted_ms")) >= 0) {
            st->eval_ms = v;
        }
        if ((v = jnum(t, "predicted_per_second")) >= 0) {
            st->tokens_per_sec = v;
        }
        if (st->prompt_tokens < 0 && (c = jcount(t, "prompt_n")) >= 0) {
            st->prompt_tokens = c;
        }
        if (st->completion_tokens < 0 && (c = jcount(t, "predicted_n")) >= 0) {
            st->completion_tokens = c;
        }
    }
}

/* ---- the stream ----------------------------------------------------------- */

enum { END_NONE = 0, END_DONE = 1, END_ERROR = 2 };
enum { SSE_FIELD = 0, SSE_VALUE_START = 1, SSE_VALUE = 2 };
enum { F_IGNORE = 0, F_DATA = 1, F_EVENT = 2, F_ERROR = 3 };

struct chat_stream {
    chat_wire_t wire;
    size_t max_line;
    chat_event_cb *cb;
    void *baton;
    json_tokener *tok;
    int tok_dirty;   /* a parse failed: replace tok before the next */
    chat_buf_t line; /* NDJSON: the partial line; SSE: the event's data */
    chat_buf_t text; /* sanitised copy of a text, only when needed */
    chat_stats_t stats;
    chat_status_t status;        /* sticky failure, CHAT_OK if none */
    chat_status_t finish_status; /* what finish returned */
    int finished;
    int ended;           /* END_* */
    int finish_seen;     /* OpenAI: a finish_reason arrived */
    unsigned long count; /* NDJSON lines / SSE events, for messages */
    /* SSE line state */
    int cr;         /* the last byte was CR: a following LF is part of it */
    int bom;        /* byte order mark bytes matched; 3 = settled */
    int sse;        /* SSE_* */
    int kind;       /* F_* of the current line */
    size_t linelen; /* bytes of the current line so far */
    char field[8];
    size_t fieldlen; /* may exceed sizeof(field): then no known name */
    int has_data;    /* the event has a data (or error) line */
    int ev_error;    /* the event carried an "error:" field (llama.cpp) */
    char evtype[16];
    size_t evlen;
    int started;      /* SSE: a byte other than BOM / whitespace was seen */
    int json_body;    /* SSE: the reply is one JSON object, not SSE (below) */
    int known_line;   /* SSE: a data/event/error/id/retry or comment line came */
    int unknown_line; /* SSE: a line with an unknown field name came */
    char err[256];
};

static chat_status_t fail(chat_stream_t *s, chat_status_t st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static chat_status_t fail(chat_stream_t *s, chat_status_t st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->status = st;
    return st;
}

static const char *unit_name(const chat_stream_t *s)
{
    return s->wire == CHAT_WIRE_OLLAMA ? "NDJSON line" : "SSE event";
}

static chat_status_t emit(chat_stream_t *s, chat_event_type_t type, const char *text,
                          size_t len)
{
    chat_event_t ev;

    ev.type = type;
    ev.text = text;
    ev.len = len;
    ev.stats = &s->stats;
    if (s->cb(s->baton, &ev) != 0) {
        return fail(s, CHAT_ECLOSED, "aborted by the event callback");
    }
    return CHAT_OK;
}

/* Emits a text event: straight from p when it is clean and NUL terminated
 * (json-c strings are), else from a sanitised copy. */
static chat_status_t emit_text(chat_stream_t *s, chat_event_type_t type, const char *p,
                               size_t n)
{
    if (n == 0) {
        return CHAT_OK;
    }
    if (p[n] == '\0' && utf8_clean(p, n)) {
        return emit(s, type, p, n);
    }
    s->text.len = 0;
    if (utf8_sanitize_buf(&s->text, p, n) != CHAT_OK) {
        return fail(s, CHAT_ENOMEM, "out of memory");
    }
    return emit(s, type, s->text.data, s->text.len);
}

static chat_status_t emit_error(chat_stream_t *s, const char *msg, size_t n)
{
    char shown[160];

    s->ended = END_ERROR;
    copy_text(shown, sizeof(shown), msg, n, sizeof(shown) - 1, 1);
    snprintf(s->err, sizeof(s->err), "backend error: %s", shown);
    return emit_text(s, CHAT_EV_ERROR, msg, n);
}

static chat_status_t deliver_done(chat_stream_t *s)
{
    s->ended = END_DONE;
    return emit(s, CHAT_EV_DONE, "", 0);
}

/* parse_object with the stream's tokener. json_tokener_reset() does not
 * clear a pending UTF-16 high surrogate (json-c 0.16 .. 0.18), so a failed
 * parse would leak U+FFFD into the next one: after a failure the tokener is
 * replaced (failures are terminal until chat_stream_reset, so this never
 * happens in steady state). NULL with *nomem set if that fails. */
static json_object *stream_parse(chat_stream_t *s, const char *p, size_t n, char *why,
                                 size_t whycap, int *truncated, int *nomem)
{
    json_object *o;

    *nomem = 0;
    if (s->tok_dirty) {
        json_tokener *t = json_tokener_new_ex(JSON_DEPTH);
        if (!t) {
            *nomem = 1;
            *truncated = 0;
            snprintf(why, whycap, "out of memory");
            return NULL;
        }
        json_tokener_set_flags(t, JSON_TOKENER_STRICT);
        json_tokener_free(s->tok);
        s->tok = t;
        s->tok_dirty = 0;
    }
    o = parse_object(s->tok, p, n, why, whycap, truncated);
    if (!o) {
        s->tok_dirty = 1;
    }
    return o;
}

/* Parses one complete object; NULL and a status in *st on failure. */
static json_object *parse_unit(chat_stream_t *s, const char *p, size_t n, int final,
                               chat_status_t *st)
{
    char why[160];
    int truncated, nomem;
    json_object *o = stream_parse(s, p, n, why, sizeof(why), &truncated, &nomem);

    if (!o) {
        if (nomem) {
            *st = fail(s, CHAT_ENOMEM, "out of memory");
        }
        else if (truncated && final) {
            *st = fail(s, CHAT_EINCOMPLETE, "the stream ended inside %s %lu (%s)",
                       unit_name(s), s->count, why);
        }
        else {
            *st = fail(s, CHAT_EPARSE, "%s %lu: %s", unit_name(s), s->count, why);
        }
    }
    return o;
}

/* One complete NDJSON line (terminator excluded). */
static chat_status_t ndjson_line(chat_stream_t *s, const char *p, size_t n, int final)
{
    json_object *o;
    fast_t fr;
    reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    s->count++;
    if (n && p[n - 1] == '\r') {
        n--;
    }
    if (n > s->max_line) {
        return fail(s, CHAT_ETOOBIG, "NDJSON line %lu is longer than %zu bytes", s->count,
                    s->max_line);
    }
    p = trim(p, &n);
    if (!n) {
        return CHAT_OK; /* blank lines are allowed */
    }
    if (fast_line(p, n, &fr)) {
        if (s->stats.model[0] == '\0' && fr.model.n) {
            copy_text(s->stats.model, sizeof(s->stats.model), fr.model.s, fr.model.n,
                      sizeof(s->stats.model) - 1, 1);
        }
        st = emit_text(s, CHAT_EV_THINKING, fr.thinking.s, fr.thinking.n);
        if (st == CHAT_OK) {
            st = emit_text(s, CHAT_EV_CONTENT, fr.content.s, fr.content.n);
        }
        return st;
    }
    if (!(o = parse_unit(s, p, n, final, &st))) {
        return st;
    }
    if (error_message(o, 0, &msg, &mlen)) {
        st = emit_error(s, msg, mlen);
    }
    else if (ollama_reply(o, &r, &why) < 0) {
        st = fail(s, CHAT_EPARSE, "NDJSON line %lu: %s", s->count, why);
    }
    else {
        if (s->stats.model[0] == '\0') {
            stat_str(s->stats.model, sizeof(s->stats.model), o, "model");
        }
        if (r.done) {
            ollama_stats(o, &s->stats);
        }
        st = emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
        if (st == CHAT_OK && r.done) {
            st = deliver_done(s);
        }
    }
    json_object_put(o);
    return st;
}

/* After DONE only whitespace may come; after ERROR everything is ignored. */
static chat_status_t after_end(chat_stream_t *s, const char *p, size_t n)
{
    size_t i;

    if (s->ended == END_ERROR) {
        return CHAT_OK;
    }
    for (i = 0; i < n; i++) {
        if (!is_ws(p[i])) {
            return fail(s, CHAT_ECLOSED, "data after the end of the answer");
        }
    }
    return CHAT_OK;
}

static void line_clear(chat_stream_t *s)
{
    s->line.len = 0;
    if (s->line.data) {
        s->line.data[0] = '\0';
    }
}

static chat_status_t line_append(chat_stream_t *s, const char *p, size_t n, size_t cap)
{
    if (n > cap || s->line.len > cap - n) {
        return fail(s, CHAT_ETOOBIG, "%s %lu is longer than %zu bytes", unit_name(s),
                    s->count + 1, s->max_line);
    }
    if (chat_buf_append(&s->line, p, n) != CHAT_OK) {
        return fail(s, CHAT_ENOMEM, "out of memory");
    }
    return CHAT_OK;
}

static chat_status_t ndjson_feed(chat_stream_t *s, const char *p, size_t n)
{
    const char *end = p + n, *nl;
    chat_status_t st;

    while (p < end) {
        if (s->ended) {
            return after_end(s, p, (size_t)(end - p));
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            /* + 1: the line may still end with the "\r" of "\r\n" */
            return line_append(s, p, (size_t)(end - p), s->max_line + 1);
        }
        if (s->line.len == 0) {
            st = ndjson_line(s, p, (size_t)(nl - p), 0); /* no copy */
        }
        else {
            if ((st = line_append(s, p, (size_t)(nl - p), s->max_line + 1)) != CHAT_OK) {
                return st;
            }
            st = ndjson_line(s, s->line.data, s->line.len, 0);
            line_clear(s);
        }
        if (st != CHAT_OK) {
            return st;
        }
        p = nl + 1;
    }
    return CHAT_OK;
}

/* ---- SSE ------------------------------------------------------------------ */

/* One complete event's data (lines joined with "\n"). */
static chat_status_t sse_event(chat_stream_t *s, const char *p, size_t n, int is_error,
                               int final)
{
    json_object *o;
    reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    s->count++;
    p = trim(p, &n);
    if (!n) {
        return CHAT_OK; /* an empty event is nothing */
    }
    if (is_error) {
        /* "event: error" or llama.cpp's "error: {...}" */
        o = NULL;
        if (p[0] == '{') {
            int truncated, nomem;
            char whybuf[8];
            o = stream_parse(s, p, n, whybuf, sizeof(whybuf), &truncated, &nomem);
        }
        if (o && error_message(o, 1, &msg, &mlen)) {
            st = emit_error(s, msg, mlen);
        }
        else {
            st = emit_error(s, p, n); /* plain text: it is the message */
        }
        json_object_put(o);
        return st;
    }
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        return deliver_done(s);
    }
    if (final && n < 6 && memcmp(p, "[DONE]", n) == 0) {
        return fail(s, CHAT_EINCOMPLETE, "the stream ended inside [DONE]");
    }
    if (!(o = parse_unit(s, p, n, final, &st))) {
        return st;
    }
    if (error_message(o, 0, &msg, &mlen)) {
        st = emit_error(s, msg, mlen);
    }
    else if (openai_reply(o, "delta", &r, &why) < 0) {
        st = fail(s, CHAT_EPARSE, "SSE event %lu: %s", s->count, why);
    }
    else {
        openai_stats(o, &r, &s->stats);
        if (r.finish_len) {
            s->finish_seen = 1;
        }
        st = emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
    }
    json_object_put(o);
    return st;
}

static chat_status_t sse_dispatch(chat_stream_t *s, int final)
{
    int is_error = s->ev_error || (s->evlen == 5 && memcmp(s->evtype, "error", 5) == 0);
    int has = s->has_data;
    chat_status_t st = CHAT_OK;

    s->has_data = 0;
    s->ev_error = 0;
    s->evlen = 0;
    if (has) {
        st = sse_event(s, s->line.data ? s->line.data : "", s->line.len, is_error, final);
    }
    line_clear(s);
    return st;
}

/* The field name is complete (at its ':' or at the end of the line). */
static chat_status_t sse_field(chat_stream_t *s)
{
    s->kind = F_IGNORE; /* "id", "retry" (we do not reconnect), unknown */
    if ((s->fieldlen == 2 && memcmp(s->field, "id", 2) == 0) ||
        (s->fieldlen == 5 && memcmp(s->field, "retry", 5) == 0)) {
        s->known_line = 1;
    }
    else if (s->fieldlen == 4 && memcmp(s->field, "data", 4) == 0) {
        s->kind = F_DATA;
    }
    else if (s->fieldlen == 5 && memcmp(s->field, "event", 5) == 0) {
        s->kind = F_EVENT;
        s->evlen = 0;
    }
    else if (s->fieldlen == 5 && memcmp(s->field, "error", 5) == 0) {
        s->kind = F_ERROR;
        s->ev_error = 1;
    }
    if (s->kind != F_IGNORE) {
        s->known_line = 1;
    }
    else if (!s->known_line) {
        s->unknown_line = 1;
    }
    if (s->kind == F_DATA || s->kind == F_ERROR) {
        /* lines of one event are joined with "\n" */
        if (s->has_data) {
            chat_status_t st = line_append(s, "\n", 1, s->max_line);
            if (st != CHAT_OK) {
                return st;
            }
        }
        s->has_data = 1;
    }
    return CHAT_OK;
}

static chat_status_t sse_end_line(chat_stream_t *s, int final)
{
    chat_status_t st = CHAT_OK;

    if (s->sse == SSE_FIELD) {
        if (s->fieldlen == 0) {
            return sse_dispatch(s, final); /* blank line: end of event */
        }
        st = sse_field(s); /* a field without ':' has an empty value */
    }
    s->sse = SSE_FIELD;
    s->fieldlen = 0;
    s->linelen = 0;
    s->kind = F_IGNORE;
    return st;
}

static chat_status_t sse_value(chat_stream_t *s, const char *p, size_t n)
{
    size_t room;

    if (s->kind == F_DATA || s->kind == F_ERROR) {
        return line_append(s, p, n, s->max_line);
    }
    if (s->kind == F_EVENT) {
        room = sizeof(s->evtype) - 1;
        if (s->evlen < room) {
            memcpy(s->evtype + s->evlen, p, n < room - s->evlen ? n : room - s->evlen);
        }
        s->evlen += n; /* keeps counting: a long name matches nothing */
    }
    return CHAT_OK;
}

static chat_status_t sse_feed(chat_stream_t *s, const char *p, size_t n)
{
    static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
    const char *end = p + n, *q;
    chat_status_t st;
    size_t held;
    char c;

    while (p < end) {
        if (s->ended) {
            return after_end(s, p, (size_t)(end - p));
        }
        c = *p;
        if (s->bom < 3) {
            if (c == bom[s->bom]) {
                s->bom++;
                p++;
                continue;
            }
            /* not a BOM after all: the bytes held back are data */
            held = (size_t)s->bom;
            s->bom = 3;
            if (held && (st = sse_feed(s, bom, held)) != CHAT_OK) {
                return st;
            }
            continue;
        }
        if (!s->started && !is_ws(c)) {
            s->started = 1;
            if (c == '{') {
                /* Not SSE but one JSON object: a server that ignored
                 * "stream":true (a chat.completion) or answered an error
                 * object with a 2xx status. Kept whole, parsed by finish. */
                s->json_body = 1;
                s->sse = SSE_FIELD;
                s->fieldlen = 0;
                s->linelen = 0;
                s->kind = F_IGNORE;
                s->has_data = 0;
                line_clear(s);
            }
            else if (c == '<') {
                return fail(s, CHAT_EPARSE,
                            "the reply is HTML or XML, not an SSE stream");
            }
        }
        if (s->json_body) {
            n = (size_t)(end - p);
            if (n > s->max_line || s->line.len > s->max_line - n) {
                return fail(s, CHAT_ETOOBIG, "the JSON reply is longer than %zu bytes",
                            s->max_line);
            }
            if (chat_buf_append(&s->line, p, n) != CHAT_OK) {
                return fail(s, CHAT_ENOMEM, "out of memory");
            }
            return CHAT_OK;
        }
        if (s->cr) {
            s->cr = 0;
            if (c == '\n') {
                p++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            s->cr = (c == '\r');
            p++;
            if ((st = sse_end_line(s, 0)) != CHAT_OK) {
                return st;
            }
            continue;
        }
        switch (s->sse) {
        case SSE_FIELD:
            p++;
            s->linelen++;
            if (c == ':') {
                if (s->fieldlen == 0) {
                    s->kind = F_IGNORE; /* a comment (keep-alive ping) */
                    s->known_line = 1;
                    s->sse = SSE_VALUE;
                }
                else {
                    if ((st = sse_field(s)) != CHAT_OK) {
                        return st;
                    }
                    s->sse = SSE_VALUE_START;
                }
            }
            else {
                if (s->fieldlen < sizeof(s->field)) {
                    s->field[s->fieldlen] = c;
                }
                s->fieldlen++;
            }
            break;
        case SSE_VALUE_START:
            s->sse = SSE_VALUE;
            if (c == ' ') { /* one space after the colon is not data */
                p++;
                s->linelen++;
            }
            break;
        default:
            for (q = p; q < end && *q != '\r' && *q != '\n'; q++) {
            }
            /* the data cap is checked first whatever the split, so the
             * same limit is reported for the same input */
            if ((st = sse_value(s, p, (size_t)(q - p))) != CHAT_OK) {
                return st;
            }
            s->linelen += (size_t)(q - p);
            p = q;
            break;
        }
        if (s->linelen > s->max_line + SSE_LINE_SLACK) {
            return fail(s, CHAT_ETOOBIG, "an SSE line is longer than %zu bytes",
                        s->max_line + SSE_LINE_SLACK);
        }
    }
    return CHAT_OK;
}

/* finish for a reply that was one JSON object instead of SSE: an error
 * object is the backend's error; a chat.completion is the whole answer
 * (THINKING, CONTENT, DONE); anything else is a protocol error. */
static chat_status_t sse_json_body(chat_stream_t *s)
{
    json_object *o, *ch;
    reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;
    const char *p = s->line.data ? s->line.data : "";
    size_t n = s->line.len;

    char whybuf[160];
    int truncated, nomem;

    s->count++;
    p = trim(p, &n);
    if (!(o = stream_parse(s, p, n, whybuf, sizeof(whybuf), &truncated, &nomem))) {
        if (nomem) {
            return fail(s, CHAT_ENOMEM, "out of memory");
        }
        if (truncated) {
            return fail(s, CHAT_EINCOMPLETE, "the stream ended inside the JSON reply");
        }
        return fail(s, CHAT_EPARSE,
                    "the reply is neither SSE nor a JSON chat completion: %s", whybuf);
    }
    if (error_message(o, 0, &msg, &mlen)) {
        st = emit_error(s, msg, mlen);
    }
    else if (!(ch = jget(o, "choices")) || !json_object_is_type(ch, json_type_array) ||
             json_object_array_length(ch) == 0) {
        st = fail(s, CHAT_EPARSE,
                  "the reply is neither SSE nor a JSON chat completion (no \"choices\")");
    }
    else if (openai_reply(o, "message", &r, &why) < 0) {
        st = fail(s, CHAT_EPARSE, "JSON reply: %s", why);
    }
    else {
        openai_stats(o, &r, &s->stats);
        st = emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
        if (st == CHAT_OK) {
            st = deliver_done(s); /* a whole reply is complete by nature */
        }
    }
    json_object_put(o);
    return st;
}

/* ---- public: stream ------------------------------------------------------------ */

void chat_stats_init(chat_stats_t *st)
{
    if (!st) {
        return;
    }
    st->model[0] = '\0';
    st->done_reason[0] = '\0';
    st->prompt_tokens = -1;
    st->completion_tokens = -1;
    st->total_ms = -1;
    st->load_ms = -1;
    st->prompt_ms = -1;
    st->eval_ms = -1;
    st->tokens_per_sec = -1;
}

/* CHAT_EINVAL: bad wire, no callback, max_line 0 or above INT_MAX / 2;
 * CHAT_ENOMEM. */
chat_status_t chat_stream_create(chat_stream_t **ps, chat_wire_t wire, size_t max_line,
                                 chat_event_cb *cb, void *baton)
{
    chat_stream_t *s;

    if (!ps) {
        return CHAT_EINVAL;
    }
    *ps = NULL;
    if ((wire != CHAT_WIRE_OLLAMA && wire != CHAT_WIRE_OPENAI) || !cb || max_line == 0 ||
        max_line > INT_MAX / 2) {
        return CHAT_EINVAL;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        return CHAT_ENOMEM;
    }
    if (!(s->tok = json_tokener_new_ex(JSON_DEPTH))) {
        free(s);
        return CHAT_ENOMEM;
    }
    json_tokener_set_flags(s->tok, JSON_TOKENER_STRICT);
    s->wire = wire;
    s->max_line = max_line;
    s->cb = cb;
    s->baton = baton;
    chat_buf_init(&s->line);
    chat_buf_init(&s->text);
    chat_stream_reset(s);
    *ps = s;
    return CHAT_OK;
}

void chat_stream_destroy(chat_stream_t *s)
{
    if (!s) {
        return;
    }
    json_tokener_free(s->tok);
    chat_buf_free(&s->line);
    chat_buf_free(&s->text);
    free(s);
}

void chat_stream_reset(chat_stream_t *s)
{
    if (!s) {
        return;
    }
    json_tokener_reset(s->tok);
    chat_buf_reset(&s->line, KEEP_ON_RESET);
    chat_buf_reset(&s->text, KEEP_ON_RESET);
    chat_stats_init(&s->stats);
    s->status = CHAT_OK;
    s->finish_status = CHAT_OK;
    s->finished = 0;
    s->ended = END_NONE;
    s->finish_seen = 0;
    s->count = 0;
    s->cr = 0;
    /* only SSE has a byte order mark to skip */
    s->bom = s->wire == CHAT_WIRE_OPENAI ? 0 : 3;
    s->sse = SSE_FIELD;
    s->kind = F_IGNORE;
    s->linelen = 0;
    s->fieldlen = 0;
    s->has_data = 0;
    s->ev_error = 0;
    s->evlen = 0;
    s->started = 0;
    s->json_body = 0;
    s->known_line = 0;
    s->unknown_line = 0;
    s->err[0] = '\0';
}

chat_status_t chat_stream_feed(chat_stream_t *s, const char *data, size_t len)
{
    if (!s || (!data && len)) {
        return CHAT_EINVAL;
    }
    if (s->status != CHAT_OK) {
        return s->status;
    }
    if (s->finished) {
        return fail(s, CHAT_ECLOSED, "data after the end of the stream");
    }
    if (!len) {
        return CHAT_OK;
    }
    return s->wire == CHAT_WIRE_OLLAMA ? ndjson_feed(s, data, len)
                                       : sse_feed(s, data, len);
}

chat_status_t chat_stream_finish(chat_stream_t *s)
{
    chat_status_t st;

    if (!s) {
        return CHAT_EINVAL;
    }
    if (s->finished) {
        return s->finish_status;
    }
    s->finished = 1;
    st = s->status;
    if (st == CHAT_OK && s->ended == END_NONE) {
        /* what is pending counts as if it had been terminated */
        if (s->wire == CHAT_WIRE_OLLAMA) {
            if (s->line.len) {
                st = ndjson_line(s, s->line.data, s->line.len, 1);
                line_clear(s);
            }
        }
        else if (s->json_body) {
            st = sse_json_body(s);
            line_clear(s);
        }
        else {
            if (s->bom > 0 && s->bom < 3) {
                size_t held = (size_t)s->bom;
                s->bom = 3;
                st = sse_feed(s, "\xEF\xBB\xBF", held);
            }
            if (st == CHAT_OK && s->ended == END_NONE &&
                (s->sse != SSE_FIELD || s->fieldlen)) {
                st = sse_end_line(s, 1);
            }
            if (st == CHAT_OK && s->ended == END_NONE && s->has_data) {
                st = sse_dispatch(s, 1);
            }
        }
    }
    if (st == CHAT_OK && s->ended != END_DONE) {
        if (s->ended == END_NONE && s->wire == CHAT_WIRE_OPENAI && s->finish_seen) {
            st = deliver_done(s); /* finish_reason said it was complete */
        }
        else if (s->ended == END_ERROR) {
            st = CHAT_EINCOMPLETE; /* s->err already holds the message */
        }
        else if (s->wire == CHAT_WIRE_OPENAI && !s->known_line && s->unknown_line) {
            /* bytes came, but not one SSE field we know: not an SSE stream
             * (a plain-text or otherwise foreign body), not a cut answer */
            st = fail(s, CHAT_EPARSE,
                      "the reply is not an SSE stream (no \"data:\" line)");
        }
        else {
            st = fail(s, CHAT_EINCOMPLETE, "the stream ended before %s",
                      s->wire == CHAT_WIRE_OLLAMA ? "done:true" : "[DONE]");
        }
    }
    s->finish_status = st;
    return st;
}

int chat_stream_is_done(const chat_stream_t *s)
{
    return s && s->ended == END_DONE;
}

const char *chat_stream_error(const chat_stream_t *s)
{
    return s ? s->err : "";
}

const chat_stats_t *chat_stream_stats(const chat_stream_t *s)
{
    return s ? &s->stats : NULL;
}

/* ---- public: whole replies ----------------------------------------------- */

static json_object *parse_body(const char *body, size_t len)
{
    json_tokener *tok;
    json_object *o;
    char why[8];
    int truncated;

    if (!body) {
        return NULL;
    }
    body = trim(body, &len);
    if (!(tok = json_tokener_new_ex(JSON_DEPTH))) {
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = parse_object(tok, body, len, why, sizeof(why), &truncated);
    json_tokener_free(tok);
    return o;
}

chat_status_t chat_stream_parse_whole(chat_wire_t wire, const char *body, size_t len,
                                      chat_buf_t *content, chat_buf_t *thinking,
                                      chat_stats_t *stats)
{
    json_object *o;
    reply_t r;
    const char *why, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    if (!content || (wire != CHAT_WIRE_OLLAMA && wire != CHAT_WIRE_OPENAI)) {
        return CHAT_EINVAL;
    }
    if (!(o = parse_body(body, len))) {
        return CHAT_EPARSE;
    }
    if (error_message(o, 0, &msg, &mlen)) {
        st = utf8_sanitize_buf(content, msg, mlen) == CHAT_OK ? CHAT_EPROTO : CHAT_ENOMEM;
        json_object_put(o);
        return st;
    }
    if (wire == CHAT_WIRE_OLLAMA) {
        if (ollama_reply(o, &r, &why) < 0) {
            st = CHAT_EPARSE;
        }
        else if (stats) {
            ollama_stats(o, stats);
        }
    }
    else {
        if (openai_reply(o, "message", &r, &why) < 0) {
            st = CHAT_EPARSE;
        }
        else if (stats) {
            openai_stats(o, &r, stats);
        }
    }
    if (st == CHAT_OK && r.content_len &&
        utf8_sanitize_buf(content, r.content, r.content_len) != CHAT_OK) {
        st = CHAT_ENOMEM;
    }
    if (st == CHAT_OK && thinking && r.thinking_len &&
        utf8_sanitize_buf(thinking, r.thinking, r.thinking_len) != CHAT_OK) {
        st = CHAT_ENOMEM;
    }
    json_object_put(o);
    return st;
}

static int ci_prefix(const char *p, size_t n, const char *lit)
{
    size_t i, l = strlen(lit);

    if (n < l) {
        return 0;
    }
    for (i = 0; i < l; i++) {
        char c = p[i];
        if (c >= 'A' && c <= 'Z') {
            c = (char)(c - 'A' + 'a');
        }
        if (c != lit[i]) {
            return 0;
        }
    }
    return 1;
}

/* An HTML error page (proxies): its <title>, else NULL. */
static const char *html_title(const char *p, size_t n, size_t *tn)
{
    size_t i, j;

    for (i = 0; i + 7 <= n; i++) {
        if (ci_prefix(p + i, n - i, "<title>")) {
            for (j = i + 7; j < n; j++) {
                if (ci_prefix(p + j, n - j, "</title")) {
                    *tn = j - (i + 7);
                    return p + i + 7;
                }
            }
            return NULL;
        }
    }
    return NULL;
}

size_t chat_backend_error_text(const char *body, size_t len, char *out, size_t outcap)
{
    json_object *o;
    const char *msg, *t;
    size_t mlen, tn, i, n;

    if (!out || !outcap) {
        return 0;
    }
    out[0] = '\0';
    if (!body || !len) {
        return 0;
    }
    body = trim(body, &len);
    if (len && (ci_prefix(body, len, "data:") || ci_prefix(body, len, "event:") ||
                ci_prefix(body, len, "error:"))) {
        /* an error sent as SSE: the JSON of its first data/error line */
        const char *l = body, *e = body + len, *v;
        while (l < e) {
            const char *nl = memchr(l, '\n', (size_t)(e - l));
            size_t ll = nl ? (size_t)(nl - l) : (size_t)(e - l);
            if (ci_prefix(l, ll, "data:") || ci_prefix(l, ll, "error:")) {
                size_t vn = ll - (l[0] == 'd' || l[0] == 'D' ? 5 : 6);
                v = trim(l + (ll - vn), &vn);
                if (vn && v[0] == '{') {
                    body = v;
                    len = vn;
                    break;
                }
            }
            l = nl ? nl + 1 : e;
        }
    }
    if (len && body[0] == '{' && (o = parse_body(body, len)) != NULL) {
        n = 0;
        if (error_message(o, 1, &msg, &mlen) ||
            jstr(o, "detail", &msg, &mlen) == 1) { /* FastAPI-style */
            msg = trim(msg, &mlen);
            n = copy_text(out, outcap, msg, mlen, outcap - 1, 1);
        }
        json_object_put(o);
        if (n) {
            return n;
        }
    }
    if (len && body[0] == '<' && (t = html_title(body, len, &tn)) != NULL) {
        t = trim(t, &tn);
        if (tn) {
            body = t;
            len = tn;
        }
    }
    for (i = 0; i < len && body[i] != '\n' && body[i] != '\r'; i++) {
    }
    n = i;
    body = trim(body, &n);
    n = copy_text(out, outcap, body, n, ERROR_TEXT_MAX, 1);
    while (n && out[n - 1] == ' ') { /* a cut may leave a space */
        out[--n] = '\0';
    }
    return n;
}

int chat_models_parse(chat_wire_t wire, const char *body, size_t len,
                      void (*cb)(void *baton, const char *name), void *baton)
{
    json_object *o, *list;
    const char *lkey = wire == CHAT_WIRE_OLLAMA ? "models" : "data";
    const char *other = wire == CHAT_WIRE_OLLAMA ? "data" : "models";
    size_t i, n, sl;
    int count = 0;

    if (!(o = parse_body(body, len))) {
        return CHAT_EPARSE;
    }
    list = jget(o, lkey);
    if (!list) {
        list = jget(o, other); /* llama.cpp answers both shapes */
        lkey = other;
    }
    if (!list || !json_object_is_type(list, json_type_array)) {
        json_object_put(o);
        return CHAT_EPARSE;
    }
    n = json_object_array_length(list);
    for (i = 0; i < n && count < INT_MAX; i++) {
        json_object *m = json_object_array_get_idx(list, i);
        const char *name = NULL;
        if (!json_object_is_type(m, json_type_object)) {
            continue;
        }
        if (strcmp(lkey, "models") == 0) {
            if (jstr(m, "name", &name, &sl) != 1 || !sl) {
                jstr(m, "model", &name, &sl);
            }
        }
        else {
            jstr(m, "id", &name, &sl);
        }
        /* a name we could not send back verbatim is useless */
        if (!name || !sl || !utf8_clean(name, sl)) {
            continue;
        }
        if (cb) {
            cb(baton, name);
        }
        count++;
    }
    json_object_put(o);
    return count;
}
