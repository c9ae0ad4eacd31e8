/* chat_sse.c - SSE framing of an OpenAI-compatible stream: lines ("\r\n",
 * "\n" or "\r"), fields, comments and events, a leading byte order mark,
 * and a reply that is one JSON object instead of SSE. Each complete event's
 * data goes to chat_wire.c.
 */
#include <stddef.h>
#include <string.h>

#include "chat_stream_int.h"

#define SSE_LINE_SLACK 32 /* "data: " and friends */

static chat_status_t sse_dispatch(chat_stream_t *s, int final)
{
    int is_error = s->ev_error || (s->evlen == 5 && memcmp(s->evtype, "error", 5) == 0);
    int has = s->has_data;
    chat_status_t st = CHAT_OK;

    s->has_data = 0;
    s->ev_error = 0;
    s->evlen = 0;
    if (has) {
        st = chat_wire_sse_event(s, s->line.data ? s->line.data : "", s->line.len,
                                 is_error, final);
    }
    chat_stream_line_clear(s);
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
            chat_status_t st = chat_stream_line_append(s, "\n", 1, s->max_line);
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
        return chat_stream_line_append(s, p, n, s->max_line);
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

chat_status_t chat_sse_feed(chat_stream_t *s, const char *p, size_t n)
{
    static const char bom[3] = {'\xEF', '\xBB', '\xBF'};
    const char *end = p + n, *q;
    chat_status_t st;
    size_t held;
    char c;

    while (p < end) {
        if (s->ended) {
            return chat_stream_after_end(s, p, (size_t)(end - p));
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
            if (held && (st = chat_sse_feed(s, bom, held)) != CHAT_OK) {
                return st;
            }
            continue;
        }
        if (!s->started && !chat_wire_is_ws(c)) {
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
                chat_stream_line_clear(s);
            }
            else if (c == '<') {
                return chat_stream_fail(s, CHAT_EPARSE,
                                        "the reply is HTML or XML, not an SSE stream");
            }
        }
        if (s->json_body) {
            n = (size_t)(end - p);
            if (n > s->max_line || s->line.len > s->max_line - n) {
                return chat_stream_fail(s, CHAT_ETOOBIG,
                                        "the JSON reply is longer than %zu bytes",
                                        s->max_line);
            }
            if (chat_buf_append(&s->line, p, n) != CHAT_OK) {
                return chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
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
            return chat_stream_fail(s, CHAT_ETOOBIG,
                                    "an SSE line is longer than %zu bytes",
                                    s->max_line + SSE_LINE_SLACK);
        }
    }
    return CHAT_OK;
}

chat_status_t chat_sse_finish(chat_stream_t *s)
{
    chat_status_t st = CHAT_OK;

    if (s->bom > 0 && s->bom < 3) {
        size_t held = (size_t)s->bom;
        s->bom = 3;
        st = chat_sse_feed(s, "\xEF\xBB\xBF", held);
    }
    if (st == CHAT_OK && s->ended == END_NONE && (s->sse != SSE_FIELD || s->fieldlen)) {
        st = sse_end_line(s, 1);
    }
    if (st == CHAT_OK && s->ended == END_NONE && s->has_data) {
        st = sse_dispatch(s, 1);
    }
    return st;
}
