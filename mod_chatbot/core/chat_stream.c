/* chat_stream.c - the incremental parser of a streamed backend reply (the
 * chat_stream_t object of chat/stream.h): its life cycle, NDJSON line
 * framing, the events it emits, and what finish decides.
 *
 * The parts: SSE framing is in chat_sse.c; decoding one NDJSON line / SSE
 * event with json-c in chat_wire.c (Ollama's token lines in place in
 * chat_wire_fast.c); whole replies, error bodies and model lists in
 * chat_reply.c. Requests are built in chat_request.c.
 *
 * Everything the parsers emit is valid UTF-8: json-c decodes \u escapes (a
 * lone surrogate becomes U+FFFD) but passes raw bytes through, so strings
 * are checked and invalid sequences (and NUL, so a text is also a safe C
 * string) replaced by U+FFFD here (chat_utf8_sanitize).
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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/utf8.h"
#include "chat_stream_int.h"

#define KEEP_ON_RESET (64 * 1024) /* buffer memory kept by reset */

/* ---- events ------------------------------------------------------------------ */

chat_status_t chat_stream_fail(chat_stream_t *s, chat_status_t st, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
    s->status = st;
    return st;
}

const char *chat_stream_unit_name(const chat_stream_t *s)
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
        return chat_stream_fail(s, CHAT_ECLOSED, "aborted by the event callback");
    }
    return CHAT_OK;
}

/* Emits a text event: straight from p when it is clean and NUL terminated
 * (json-c strings are), else from a sanitised copy. */
chat_status_t chat_stream_emit_text(chat_stream_t *s, chat_event_type_t type,
                                    const char *p, size_t n)
{
    if (n == 0) {
        return CHAT_OK;
    }
    if (!memchr(p, '\0', n) && chat_utf8_valid((const uint8_t *)p, n)) {
        if (p[n] == '\0') {
            return emit(s, type, p, n);
        }
        /* valid text read in place (a token): a copy gives it its NUL */
        s->text.len = 0;
        if (chat_buf_append(&s->text, p, n) != CHAT_OK) {
            return chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
        }
        return emit(s, type, s->text.data, s->text.len);
    }
    s->text.len = 0;
    if (chat_utf8_sanitize_append(&s->text, p, n, CHAT_UTF8_NO_NUL) != CHAT_OK) {
        return chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
    }
    return emit(s, type, s->text.data, s->text.len);
}

chat_status_t chat_stream_emit_error(chat_stream_t *s, const char *msg, size_t n)
{
    char shown[160];

    s->ended = END_ERROR;
    chat_wire_text(shown, sizeof(shown), msg, n, sizeof(shown) - 1);
    snprintf(s->err, sizeof(s->err), "backend error: %s", shown);
    return chat_stream_emit_text(s, CHAT_EV_ERROR, msg, n);
}

chat_status_t chat_stream_done(chat_stream_t *s)
{
    s->ended = END_DONE;
    return emit(s, CHAT_EV_DONE, "", 0);
}

/* ---- NDJSON lines ----------------------------------------------------------- */

/* After DONE only whitespace may come; after ERROR everything is ignored. */
chat_status_t chat_stream_after_end(chat_stream_t *s, const char *p, size_t n)
{
    size_t i;

    if (s->ended == END_ERROR) {
        return CHAT_OK;
    }
    for (i = 0; i < n; i++) {
        if (!chat_wire_is_ws(p[i])) {
            return chat_stream_fail(s, CHAT_ECLOSED, "data after the end of the answer");
        }
    }
    return CHAT_OK;
}

void chat_stream_line_clear(chat_stream_t *s)
{
    s->line.len = 0;
    if (s->line.data) {
        s->line.data[0] = '\0';
    }
}

chat_status_t chat_stream_line_append(chat_stream_t *s, const char *p, size_t n,
                                      size_t cap)
{
    if (n > cap || s->line.len > cap - n) {
        return chat_stream_fail(s, CHAT_ETOOBIG, "%s %lu is longer than %zu bytes",
                                chat_stream_unit_name(s), s->count + 1, s->max_line);
    }
    if (chat_buf_append(&s->line, p, n) != CHAT_OK) {
        return chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
    }
    return CHAT_OK;
}

static chat_status_t ndjson_feed(chat_stream_t *s, const char *p, size_t n)
{
    const char *end = p + n, *nl;
    chat_status_t st;

    while (p < end) {
        if (s->ended) {
            return chat_stream_after_end(s, p, (size_t)(end - p));
        }
        nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) {
            /* + 1: the line may still end with the "\r" of "\r\n" */
            return chat_stream_line_append(s, p, (size_t)(end - p), s->max_line + 1);
        }
        if (s->line.len == 0) {
            st = chat_wire_ndjson_line(s, p, (size_t)(nl - p), 0); /* no copy */
        }
        else {
            if ((st = chat_stream_line_append(s, p, (size_t)(nl - p), s->max_line + 1)) !=
                CHAT_OK) {
                return st;
            }
            st = chat_wire_ndjson_line(s, s->line.data, s->line.len, 0);
            chat_stream_line_clear(s);
        }
        if (st != CHAT_OK) {
            return st;
        }
        p = nl + 1;
    }
    return CHAT_OK;
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
        return chat_stream_fail(s, CHAT_ECLOSED, "data after the end of the stream");
    }
    if (!len) {
        return CHAT_OK;
    }
    return s->wire == CHAT_WIRE_OLLAMA ? ndjson_feed(s, data, len)
                                       : chat_sse_feed(s, data, len);
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
                st = chat_wire_ndjson_line(s, s->line.data, s->line.len, 1);
                chat_stream_line_clear(s);
            }
        }
        else if (s->json_body) {
            st = chat_wire_json_body(s);
            chat_stream_line_clear(s);
        }
        else {
            st = chat_sse_finish(s);
        }
    }
    if (st == CHAT_OK && s->ended != END_DONE) {
        if (s->ended == END_NONE && s->wire == CHAT_WIRE_OPENAI && s->finish_seen) {
            st = chat_stream_done(s); /* finish_reason said it was complete */
        }
        else if (s->ended == END_ERROR) {
            st = CHAT_EINCOMPLETE; /* s->err already holds the message */
        }
        else if (s->wire == CHAT_WIRE_OPENAI && !s->known_line && s->unknown_line) {
            /* bytes came, but not one SSE field we know: not an SSE stream
             * (a plain-text or otherwise foreign body), not a cut answer */
            st = chat_stream_fail(s, CHAT_EPARSE,
                                  "the reply is not an SSE stream (no \"data:\" line)");
        }
        else {
            st = chat_stream_fail(s, CHAT_EINCOMPLETE, "the stream ended before %s",
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
