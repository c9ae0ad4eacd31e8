/* chat_reply.c - backend replies that are not streamed: a whole answer
 * (Ollama stream:false, OpenAI chat.completion), the human message of an
 * error body, and model lists.
 */
#include <limits.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/utf8.h"
#include "chat_stream_int.h"

#define ERROR_TEXT_MAX 300 /* plain-text error bodies */

static json_object *parse_body(const char *body, size_t len)
{
    json_tokener *tok;
    json_object *o;
    char why[8];
    int truncated;

    if (!body) {
        return NULL;
    }
    body = chat_wire_trim(body, &len);
    if (!(tok = json_tokener_new_ex(JSON_DEPTH))) {
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = chat_wire_parse_object(tok, body, len, why, sizeof(why), &truncated);
    json_tokener_free(tok);
    return o;
}

chat_status_t chat_stream_parse_whole(chat_wire_t wire, const char *body, size_t len,
                                      chat_buf_t *content, chat_buf_t *thinking,
                                      chat_stats_t *stats)
{
    json_object *o;
    chat_reply_t r;
    const char *why, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    if (!content || (wire != CHAT_WIRE_OLLAMA && wire != CHAT_WIRE_OPENAI)) {
        return CHAT_EINVAL;
    }
    if (!(o = parse_body(body, len))) {
        return CHAT_EPARSE;
    }
    if (chat_wire_error_message(o, 0, &msg, &mlen)) {
        st = chat_utf8_sanitize_append(content, msg, mlen, CHAT_UTF8_NO_NUL) == CHAT_OK
                 ? CHAT_EPROTO
                 : CHAT_ENOMEM;
        json_object_put(o);
        return st;
    }
    if (wire == CHAT_WIRE_OLLAMA) {
        if (chat_wire_ollama_reply(o, &r, &why) < 0) {
            st = CHAT_EPARSE;
        }
        else if (stats) {
            chat_wire_ollama_stats(o, stats);
        }
    }
    else {
        if (chat_wire_openai_reply(o, "message", &r, &why) < 0) {
            st = CHAT_EPARSE;
        }
        else if (stats) {
            chat_wire_openai_stats(o, &r, stats);
        }
    }
    if (st == CHAT_OK && r.content_len &&
        chat_utf8_sanitize_append(content, r.content, r.content_len, CHAT_UTF8_NO_NUL) !=
            CHAT_OK) {
        st = CHAT_ENOMEM;
    }
    if (st == CHAT_OK && thinking && r.thinking_len &&
        chat_utf8_sanitize_append(thinking, r.thinking, r.thinking_len,
                                  CHAT_UTF8_NO_NUL) != CHAT_OK) {
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
    body = chat_wire_trim(body, &len);
    if (len && (ci_prefix(body, len, "data:") || ci_prefix(body, len, "event:") ||
                ci_prefix(body, len, "error:"))) {
        /* an error sent as SSE: the JSON of its first data/error line */
        const char *l = body, *e = body + len, *v;
        while (l < e) {
            const char *nl = memchr(l, '\n', (size_t)(e - l));
            size_t ll = nl ? (size_t)(nl - l) : (size_t)(e - l);
            if (ci_prefix(l, ll, "data:") || ci_prefix(l, ll, "error:")) {
                size_t vn = ll - (l[0] == 'd' || l[0] == 'D' ? 5 : 6);
                v = chat_wire_trim(l + (ll - vn), &vn);
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
        if (chat_wire_error_message(o, 1, &msg, &mlen) ||
            chat_wire_jstr(o, "detail", &msg, &mlen) == 1) { /* FastAPI-style */
            msg = chat_wire_trim(msg, &mlen);
            n = chat_wire_text(out, outcap, msg, mlen, outcap - 1);
        }
        json_object_put(o);
        if (n) {
            return n;
        }
    }
    if (len && body[0] == '<' && (t = html_title(body, len, &tn)) != NULL) {
        t = chat_wire_trim(t, &tn);
        if (tn) {
            body = t;
            len = tn;
        }
    }
    for (i = 0; i < len && body[i] != '\n' && body[i] != '\r'; i++) {
    }
    n = i;
    body = chat_wire_trim(body, &n);
    n = chat_wire_text(out, outcap, body, n, ERROR_TEXT_MAX);
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
    list = chat_wire_jget(o, lkey);
    if (!list) {
        list = chat_wire_jget(o, other); /* llama.cpp answers both shapes */
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
            if (chat_wire_jstr(m, "name", &name, &sl) != 1 || !sl) {
                chat_wire_jstr(m, "model", &name, &sl);
            }
        }
        else {
            chat_wire_jstr(m, "id", &name, &sl);
        }
        /* a name we could not send back verbatim is useless */
        if (!name || !sl || memchr(name, '\0', sl) ||
            !chat_utf8_valid((const uint8_t *)name, sl)) {
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
