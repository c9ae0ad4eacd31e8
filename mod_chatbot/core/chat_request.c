/* chat_request.c - the JSON bodies of chat requests to a backend (Ollama
 * /api/chat, OpenAI-compatible /v1/chat/completions), role names and model
 * option defaults. Replies are parsed in chat_stream.c.
 *
 * Wire decisions:
 *  - Ollama: "keep_alive" is a Go duration string ("5m", "1h"); a bare
 *    integer ("-1", "3600") is sent as a JSON number (seconds, negative =
 *    forever), since Ollama rejects "-1" as a string (no unit).
 *  - OpenAI: "top_k" is not an OpenAI parameter but llama-server and vLLM
 *    accept it (Ollama's compatibility layer ignores it). It is sent only
 *    when set, so leave it unset (< 0) for api.openai.com, which rejects
 *    unknown parameters. num_ctx and keep_alive have no OpenAI equivalent
 *    and are never sent; num_predict becomes max_tokens.
 *  - stream_options.include_usage is sent only with stream:true (OpenAI
 *    refuses stream_options otherwise).
 *  - Strings are escaped for JSON (quote, backslash, control characters);
 *    non-ASCII passes as UTF-8, and invalid UTF-8 becomes U+FFFD so the
 *    body is always valid JSON (llama.cpp rejects invalid UTF-8).
 *  - Numbers are printed in the C locale's shortest round-tripping form;
 *    a non-finite double is treated as unset.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/proto.h"
#include "chat/stream.h"
#include "chat/utf8.h"

const char *chat_role_name(chat_role_t r)
{
    switch (r) {
    case CHAT_ROLE_SYSTEM:
        return "system";
    case CHAT_ROLE_USER:
        return "user";
    case CHAT_ROLE_ASSISTANT:
        return "assistant";
    case CHAT_ROLE_TOOL:
        return "tool";
    }
    return NULL;
}

void chat_options_init(chat_options_t *o)
{
    if (!o) {
        return;
    }
    o->temperature = -1;
    o->top_p = -1;
    o->top_k = -1;
    o->num_ctx = -1;
    o->num_predict = -1;
    o->seed = -1;
    o->keep_alive = NULL;
}

/* Appends s[0..n) as a JSON string literal. */
static chat_status_t put_str(chat_buf_t *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0, k, bad;
    char esc[8];
    size_t elen;

    if (chat_buf_reserve(out, n + 2) != CHAT_OK ||
        chat_buf_append(out, "\"", 1) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    while (i < n) {
        unsigned char c;
        i += chat_json_plain(s + i, n - i);
        if (i >= n) {
            break;
        }
        c = p[i];
        if (c >= 0x80) {
            k = chat_utf8_seq(p + i, n - i, &bad);
            if (k) {
                i += k;
                continue;
            }
            memcpy(esc, "\xEF\xBF\xBD", 3);
            elen = 3;
        }
        else {
            bad = 1;
            esc[0] = '\\';
            elen = 2;
            switch (c) {
            case '"':
                esc[1] = '"';
                break;
            case '\\':
                esc[1] = '\\';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            case '\b':
                esc[1] = 'b';
                break;
            case '\f':
                esc[1] = 'f';
                break;
            default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
                elen = 6;
                break;
            }
        }
        if (chat_buf_append(out, p + run, i - run) != CHAT_OK ||
            chat_buf_append(out, esc, elen) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        i += bad;
        run = i;
    }
    if (chat_buf_append(out, p + run, n - run) != CHAT_OK ||
        chat_buf_append(out, "\"", 1) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return CHAT_OK;
}

/* The shortest %g form that reads back as v, with '.' whatever the locale. */
static void fmt_double(char *buf, size_t cap, double v)
{
    char *c;

    snprintf(buf, cap, "%.15g", v);
    if (strtod(buf, NULL) != v) {
        snprintf(buf, cap, "%.17g", v);
    }
    for (c = buf; *c; c++) {
        if (*c == ',') {
            *c = '.';
        }
    }
}

/* ,"key":value for a set double (>= 0, finite). */
static chat_status_t put_dbl(chat_buf_t *out, const char *key, double v, int *first)
{
    char num[40];

    if (!(v >= 0) || !isfinite(v)) {
        return CHAT_OK;
    }
    fmt_double(num, sizeof(num), v);
    if (chat_buf_printf(out, "%s\"%s\":%s", *first ? "" : ",", key, num) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    *first = 0;
    return CHAT_OK;
}

static chat_status_t put_int(chat_buf_t *out, const char *key, int64_t v, int *first)
{
    if (v < 0) {
        return CHAT_OK;
    }
    if (chat_buf_printf(out, "%s\"%s\":%lld", *first ? "" : ",", key, (long long)v) !=
        CHAT_OK) {
        return CHAT_ENOMEM;
    }
    *first = 0;
    return CHAT_OK;
}

/* 1 if s is an integer: optional '-', 1..18 digits. */
static int is_integer(const char *s)
{
    size_t i = 0, d = 0;

    if (s[0] == '-') {
        i++;
    }
    for (; s[i]; i++, d++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }
    return d >= 1 && d <= 18;
}

static chat_status_t build(chat_wire_t wire, const char *model, const chat_msg_t *msgs,
                           size_t nmsgs, const chat_options_t *o, int stream,
                           chat_buf_t *out)
{
    size_t i;
    int first;

    if (chat_buf_puts(out, "{\"model\":") != CHAT_OK ||
        put_str(out, model, strlen(model)) != CHAT_OK ||
        chat_buf_puts(out, ",\"messages\":[") != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    for (i = 0; i < nmsgs; i++) {
        /* no printf per message: this runs for every message of the
         * context on every turn */
        if ((i && chat_buf_append(out, ",", 1) != CHAT_OK) ||
            chat_buf_puts(out, "{\"role\":\"") != CHAT_OK ||
            chat_buf_puts(out, chat_role_name(msgs[i].role)) != CHAT_OK ||
            chat_buf_puts(out, "\",\"content\":") != CHAT_OK ||
            put_str(out, msgs[i].content ? msgs[i].content : "", msgs[i].len) !=
                CHAT_OK ||
            chat_buf_puts(out, "}") != CHAT_OK) {
            return CHAT_ENOMEM;
        }
    }
    if (chat_buf_printf(out, "],\"stream\":%s", stream ? "true" : "false") != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (wire == CHAT_WIRE_OLLAMA) {
        if (o && o->keep_alive) {
            if (chat_buf_puts(out, ",\"keep_alive\":") != CHAT_OK ||
                (is_integer(o->keep_alive)
                     ? chat_buf_puts(out, o->keep_alive)
                     : put_str(out, o->keep_alive, strlen(o->keep_alive))) != CHAT_OK) {
                return CHAT_ENOMEM;
            }
        }
        if (o && ((o->temperature >= 0 && isfinite(o->temperature)) ||
                  (o->top_p >= 0 && isfinite(o->top_p)) || o->top_k >= 0 ||
                  o->num_ctx >= 0 || o->num_predict >= 0 || o->seed >= 0)) {
            first = 1;
            if (chat_buf_puts(out, ",\"options\":{") != CHAT_OK ||
                put_dbl(out, "temperature", o->temperature, &first) != CHAT_OK ||
                put_dbl(out, "top_p", o->top_p, &first) != CHAT_OK ||
                put_int(out, "top_k", o->top_k, &first) != CHAT_OK ||
                put_int(out, "num_ctx", o->num_ctx, &first) != CHAT_OK ||
                put_int(out, "num_predict", o->num_predict, &first) != CHAT_OK ||
                put_int(out, "seed", o->seed, &first) != CHAT_OK ||
                chat_buf_puts(out, "}") != CHAT_OK) {
                return CHAT_ENOMEM;
            }
        }
    }
    else {
        if (stream &&
            chat_buf_puts(out, ",\"stream_options\":{\"include_usage\":true}") !=
                CHAT_OK) {
            return CHAT_ENOMEM;
        }
        if (o) {
            first = 0; /* members follow "stream" */
            if (put_dbl(out, "temperature", o->temperature, &first) != CHAT_OK ||
                put_dbl(out, "top_p", o->top_p, &first) != CHAT_OK ||
                put_int(out, "top_k", o->top_k, &first) != CHAT_OK ||
                put_int(out, "max_tokens", o->num_predict, &first) != CHAT_OK ||
                put_int(out, "seed", o->seed, &first) != CHAT_OK) {
                return CHAT_ENOMEM;
            }
        }
    }
    return chat_buf_puts(out, "}");
}

chat_status_t chat_request_build(chat_wire_t wire, const char *model,
                                 const chat_msg_t *msgs, size_t nmsgs,
                                 const chat_options_t *opts, int stream, chat_buf_t *out)
{
    size_t i, start;
    chat_status_t st;

    if (!out || !model || (nmsgs && !msgs) ||
        (wire != CHAT_WIRE_OLLAMA && wire != CHAT_WIRE_OPENAI)) {
        return CHAT_EINVAL;
    }
    for (i = 0; i < nmsgs; i++) {
        if (!chat_role_name(msgs[i].role) || (!msgs[i].content && msgs[i].len)) {
            return CHAT_EINVAL;
        }
    }
    start = out->len;
    st = build(wire, model, msgs, nmsgs, opts, stream, out);
    if (st != CHAT_OK) {
        /* leave out as it was rather than half a body */
        out->len = start;
        if (out->data) {
            out->data[start] = '\0';
        }
        return CHAT_ENOMEM;
    }
    return CHAT_OK;
}
