/* chat_wire.c - decoding what one unit of a backend reply says: an Ollama
 * NDJSON line, an OpenAI SSE chunk or a whole chat.completion object, into
 * the stream's events and statistics; and the JSON helpers behind them.
 *
 * Each unit is parsed with json-c (explicit length, strict mode, depth
 * limit, no trailing garbage); Ollama's ordinary token lines are read in
 * place by chat_wire_fast.c. Texts are emitted through chat_stream.c,
 * which makes them valid UTF-8.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/utf8.h"
#include "chat_stream_int.h"

/* ---- JSON helpers ------------------------------------------------------- */

int chat_wire_is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

const char *chat_wire_trim(const char *p, size_t *n)
{
    while (*n && chat_wire_is_ws(p[0])) {
        p++;
        (*n)--;
    }
    while (*n && chat_wire_is_ws(p[*n - 1])) {
        (*n)--;
    }
    return p;
}

/* Parses p[0..n) (already trimmed) as one JSON object. On failure returns
 * NULL with a reason in why; *truncated is set when the text is the start
 * of an object that simply ended too early. */
json_object *chat_wire_parse_object(json_tokener *tok, const char *p, size_t n, char *why,
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
    while (end < n && chat_wire_is_ws(p[end])) {
        end++;
    }
    if (end < n) {
        snprintf(why, whycap, "unexpected data after the JSON object at byte %zu", end);
        json_object_put(o);
        return NULL;
    }
    return o;
}

json_object *chat_wire_jget(json_object *o, const char *key)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(o, key, &v)) {
        return NULL;
    }
    return v; /* NULL for JSON null too */
}

/* A string member: 1 and (*s, *n) if it is a string, 0 if it is absent or
 * null, -1 if it has another type. */
int chat_wire_jstr(json_object *o, const char *key, const char **s, size_t *n)
{
    json_object *v = chat_wire_jget(o, key);

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
    json_object *v = chat_wire_jget(o, key);
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

size_t chat_wire_text(char *dst, size_t cap, const char *s, size_t n, size_t limit)
{
    size_t o;

    if (!cap) {
        return 0;
    }
    if (limit > cap - 1) {
        limit = cap - 1;
    }
    o = chat_utf8_sanitize((const uint8_t *)s, n, (uint8_t *)dst, limit,
                           CHAT_UTF8_NO_NUL | CHAT_UTF8_FLAT, NULL);
    dst[o] = '\0';
    return o;
}

static void stat_str(char *dst, size_t cap, json_object *o, const char *key)
{
    const char *s;
    size_t n;

    if (chat_wire_jstr(o, key, &s, &n) == 1 && n) {
        chat_wire_text(dst, cap, s, n, cap - 1);
    }
}

/* If o is an error reply, sets (*msg, *len) to its message and returns 1.
 * Shapes: Ollama {"error":"..."}, OpenAI {"error":{"message":...}},
 * llama.cpp's SSE "error:" payload {"code","message","type"} (with bare),
 * vLLM {"object":"error","message":...}. An error value without a usable
 * message is described by its JSON text. */
int chat_wire_error_message(json_object *o, int bare, const char **msg, size_t *len)
{
    json_object *e = chat_wire_jget(o, "error");
    const char *s;
    size_t n;

    if (e) {
        if (json_object_is_type(e, json_type_string)) {
            *msg = json_object_get_string(e);
            *len = (size_t)json_object_get_string_len(e);
        }
        else if (json_object_is_type(e, json_type_object) &&
                 chat_wire_jstr(e, "message", &s, &n) == 1) {
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
    if (chat_wire_jstr(o, "object", &s, &n) == 1 && n == 5 &&
        memcmp(s, "error", 5) == 0) {
        bare = 1;
    }
    if (bare && chat_wire_jstr(o, "message", &s, &n) == 1 && n) {
        *msg = s;
        *len = n;
        return 1;
    }
    return 0;
}

/* ---- reply objects ------------------------------------------------------- */

/* Ollama: {"model","message":{"content","thinking"},"done",...stats}. */
int chat_wire_ollama_reply(json_object *o, chat_reply_t *r, const char **why)
{
    json_object *m = chat_wire_jget(o, "message"), *d = chat_wire_jget(o, "done");

    memset(r, 0, sizeof(*r));
    if (m) {
        if (!json_object_is_type(m, json_type_object)) {
            *why = "\"message\" is not an object";
            return -1;
        }
        if (chat_wire_jstr(m, "content", &r->content, &r->content_len) < 0) {
            *why = "\"message.content\" is not a string";
            return -1;
        }
        if (chat_wire_jstr(m, "thinking", &r->thinking, &r->thinking_len) < 0) {
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

const char *const chat_wire_stat_keys[CHAT_OST_N] = {
    "prompt_eval_count", "eval_count",           "total_duration",
    "load_duration",     "prompt_eval_duration", "eval_duration"};

void chat_wire_ollama_stats_set(chat_stats_t *st, const char *model, size_t model_n,
                                const char *reason, size_t reason_n,
                                const double num[CHAT_OST_N])
{
    double v;

    if (model && model_n) {
        chat_wire_text(st->model, sizeof(st->model), model, model_n,
                       sizeof(st->model) - 1);
    }
    if (reason && reason_n) {
        chat_wire_text(st->done_reason, sizeof(st->done_reason), reason, reason_n,
                       sizeof(st->done_reason) - 1);
    }
    if ((v = num[CHAT_OST_PROMPT_EVAL_COUNT]) >= 0 && v < 9.2e18) {
        st->prompt_tokens = (int64_t)v;
    }
    if ((v = num[CHAT_OST_EVAL_COUNT]) >= 0 && v < 9.2e18) {
        st->completion_tokens = (int64_t)v;
    }
    /* durations are nanoseconds */
    if ((v = num[CHAT_OST_TOTAL_DURATION]) >= 0) {
        st->total_ms = v / 1e6;
    }
    if ((v = num[CHAT_OST_LOAD_DURATION]) >= 0) {
        st->load_ms = v / 1e6;
    }
    if ((v = num[CHAT_OST_PROMPT_EVAL_DURATION]) >= 0) {
        st->prompt_ms = v / 1e6;
    }
    if ((v = num[CHAT_OST_EVAL_DURATION]) >= 0) {
        st->eval_ms = v / 1e6;
        if (v > 0 && st->completion_tokens >= 0) {
            st->tokens_per_sec = (double)st->completion_tokens / (v / 1e9);
        }
    }
}

void chat_wire_ollama_stats(json_object *o, chat_stats_t *st)
{
    const char *model = NULL, *reason = NULL;
    size_t mn = 0, rn = 0;
    double num[CHAT_OST_N];
    int i;

    if (chat_wire_jstr(o, "model", &model, &mn) != 1) {
        model = NULL;
    }
    if (chat_wire_jstr(o, "done_reason", &reason, &rn) != 1) {
        reason = NULL;
    }
    for (i = 0; i < CHAT_OST_N; i++) {
        num[i] = jnum(o, chat_wire_stat_keys[i]);
    }
    chat_wire_ollama_stats_set(st, model, mn, reason, rn, num);
}

/* OpenAI: choices[i] with index 0 (or the first without an index); key is
 * "delta" (stream chunk) or "message" (whole reply). */
int chat_wire_openai_reply(json_object *o, const char *key, chat_reply_t *r,
                           const char **why)
{
    json_object *ch = chat_wire_jget(o, "choices"), *pick = NULL, *d, *idx;
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
        idx = chat_wire_jget(c, "index");
        if (!pick && (!idx || (json_object_is_type(idx, json_type_int) &&
                               json_object_get_int64(idx) == 0))) {
            pick = c;
        }
    }
    if (!pick) {
        return 0;
    }
    if (chat_wire_jstr(pick, "finish_reason", &r->finish, &r->finish_len) < 0) {
        *why = "\"finish_reason\" is not a string";
        return -1;
    }
    d = chat_wire_jget(pick, key);
    if (!d) {
        return 0;
    }
    if (!json_object_is_type(d, json_type_object)) {
        *why = strcmp(key, "delta") == 0 ? "\"delta\" is not an object"
                                         : "\"message\" is not an object";
        return -1;
    }
    if (chat_wire_jstr(d, "content", &r->content, &r->content_len) < 0) {
        *why = "\"content\" is not a string";
        return -1;
    }
    /* llama.cpp/DeepSeek say reasoning_content, vLLM/OpenRouter reasoning;
     * some servers send both with the same text: take one */
    if (chat_wire_jstr(d, "reasoning_content", &r->thinking, &r->thinking_len) < 0) {
        *why = "\"reasoning_content\" is not a string";
        return -1;
    }
    if (!r->thinking_len) {
        if (chat_wire_jstr(d, "reasoning", &r->thinking, &r->thinking_len) < 0) {
            *why = "\"reasoning\" is not a string";
            return -1;
        }
    }
    return 0;
}

void chat_wire_openai_stats(json_object *o, const chat_reply_t *r, chat_stats_t *st)
{
    json_object *u = chat_wire_jget(o, "usage"), *t = chat_wire_jget(o, "timings");
    int64_t c;
    double v;

    stat_str(st->model, sizeof(st->model), o, "model");
    if (r->finish_len) {
        chat_wire_text(st->done_reason, sizeof(st->done_reason), r->finish, r->finish_len,
                       sizeof(st->done_reason) - 1);
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

/* ---- one unit of a stream ----------------------------------------------- */

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
    o = chat_wire_parse_object(s->tok, p, n, why, whycap, truncated);
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
            *st = chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
        }
        else if (truncated && final) {
            *st = chat_stream_fail(s, CHAT_EINCOMPLETE,
                                   "the stream ended inside %s %lu (%s)",
                                   chat_stream_unit_name(s), s->count, why);
        }
        else {
            *st = chat_stream_fail(s, CHAT_EPARSE, "%s %lu: %s", chat_stream_unit_name(s),
                                   s->count, why);
        }
    }
    return o;
}

/* One complete NDJSON line (terminator excluded). */
chat_status_t chat_wire_ndjson_line(chat_stream_t *s, const char *p, size_t n, int final)
{
    json_object *o;
    chat_fast_t fr;
    chat_reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    s->count++;
    if (n && p[n - 1] == '\r') {
        n--;
    }
    if (n > s->max_line) {
        return chat_stream_fail(s, CHAT_ETOOBIG,
                                "NDJSON line %lu is longer than %zu bytes", s->count,
                                s->max_line);
    }
    p = chat_wire_trim(p, &n);
    if (!n) {
        return CHAT_OK; /* blank lines are allowed */
    }
    if (chat_wire_fast_line(p, n, &fr)) {
        if (s->stats.model[0] == '\0' && fr.model.n) {
            chat_wire_text(s->stats.model, sizeof(s->stats.model), fr.model.s, fr.model.n,
                           sizeof(s->stats.model) - 1);
        }
        if (fr.done) {
            chat_wire_ollama_stats_set(&s->stats, fr.model.s, fr.model.n,
                                       fr.done_reason.s, fr.done_reason.n, fr.num);
        }
        st = chat_stream_emit_text(s, CHAT_EV_THINKING, fr.thinking.s, fr.thinking.n);
        if (st == CHAT_OK) {
            st = chat_stream_emit_text(s, CHAT_EV_CONTENT, fr.content.s, fr.content.n);
        }
        if (st == CHAT_OK && fr.done) {
            st = chat_stream_done(s);
        }
        return st;
    }
    if (!(o = parse_unit(s, p, n, final, &st))) {
        return st;
    }
    if (chat_wire_error_message(o, 0, &msg, &mlen)) {
        st = chat_stream_emit_error(s, msg, mlen);
    }
    else if (chat_wire_ollama_reply(o, &r, &why) < 0) {
        st = chat_stream_fail(s, CHAT_EPARSE, "NDJSON line %lu: %s", s->count, why);
    }
    else {
        if (s->stats.model[0] == '\0') {
            stat_str(s->stats.model, sizeof(s->stats.model), o, "model");
        }
        if (r.done) {
            chat_wire_ollama_stats(o, &s->stats);
        }
        st = chat_stream_emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = chat_stream_emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
        if (st == CHAT_OK && r.done) {
            st = chat_stream_done(s);
        }
    }
    json_object_put(o);
    return st;
}

/* One complete event's data (lines joined with "\n"). */
chat_status_t chat_wire_sse_event(chat_stream_t *s, const char *p, size_t n, int is_error,
                                  int final)
{
    json_object *o;
    chat_reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;

    s->count++;
    p = chat_wire_trim(p, &n);
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
        if (o && chat_wire_error_message(o, 1, &msg, &mlen)) {
            st = chat_stream_emit_error(s, msg, mlen);
        }
        else {
            st = chat_stream_emit_error(s, p, n); /* plain text: it is the message */
        }
        json_object_put(o);
        return st;
    }
    if (n == 6 && memcmp(p, "[DONE]", 6) == 0) {
        return chat_stream_done(s);
    }
    if (final && n < 6 && memcmp(p, "[DONE]", n) == 0) {
        return chat_stream_fail(s, CHAT_EINCOMPLETE, "the stream ended inside [DONE]");
    }
    if (!(o = parse_unit(s, p, n, final, &st))) {
        return st;
    }
    if (chat_wire_error_message(o, 0, &msg, &mlen)) {
        st = chat_stream_emit_error(s, msg, mlen);
    }
    else if (chat_wire_openai_reply(o, "delta", &r, &why) < 0) {
        st = chat_stream_fail(s, CHAT_EPARSE, "SSE event %lu: %s", s->count, why);
    }
    else {
        chat_wire_openai_stats(o, &r, &s->stats);
        if (r.finish_len) {
            s->finish_seen = 1;
        }
        st = chat_stream_emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = chat_stream_emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
    }
    json_object_put(o);
    return st;
}

/* finish for a reply that was one JSON object instead of SSE: an error
 * object is the backend's error; a chat.completion is the whole answer
 * (THINKING, CONTENT, DONE); anything else is a protocol error. */
chat_status_t chat_wire_json_body(chat_stream_t *s)
{
    json_object *o, *ch;
    chat_reply_t r;
    const char *why = NULL, *msg;
    size_t mlen;
    chat_status_t st = CHAT_OK;
    const char *p = s->line.data ? s->line.data : "";
    size_t n = s->line.len;

    char whybuf[160];
    int truncated, nomem;

    s->count++;
    p = chat_wire_trim(p, &n);
    if (!(o = stream_parse(s, p, n, whybuf, sizeof(whybuf), &truncated, &nomem))) {
        if (nomem) {
            return chat_stream_fail(s, CHAT_ENOMEM, "out of memory");
        }
        if (truncated) {
            return chat_stream_fail(s, CHAT_EINCOMPLETE,
                                    "the stream ended inside the JSON reply");
        }
        return chat_stream_fail(s, CHAT_EPARSE,
                                "the reply is neither SSE nor a JSON chat completion: %s",
                                whybuf);
    }
    if (chat_wire_error_message(o, 0, &msg, &mlen)) {
        st = chat_stream_emit_error(s, msg, mlen);
    }
    else if (!(ch = chat_wire_jget(o, "choices")) ||
             !json_object_is_type(ch, json_type_array) ||
             json_object_array_length(ch) == 0) {
        st = chat_stream_fail(
            s, CHAT_EPARSE,
            "the reply is neither SSE nor a JSON chat completion (no \"choices\")");
    }
    else if (chat_wire_openai_reply(o, "message", &r, &why) < 0) {
        st = chat_stream_fail(s, CHAT_EPARSE, "JSON reply: %s", why);
    }
    else {
        chat_wire_openai_stats(o, &r, &s->stats);
        st = chat_stream_emit_text(s, CHAT_EV_THINKING, r.thinking, r.thinking_len);
        if (st == CHAT_OK) {
            st = chat_stream_emit_text(s, CHAT_EV_CONTENT, r.content, r.content_len);
        }
        if (st == CHAT_OK) {
            st = chat_stream_done(s); /* a whole reply is complete by nature */
        }
    }
    json_object_put(o);
    return st;
}
