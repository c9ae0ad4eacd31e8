/* chat_stream_int.h - private to the backend reply parsers: the stream's
 * state and the helpers shared by chat_stream.c (the stream object, NDJSON
 * lines), chat_sse.c (SSE framing), chat_wire.c (decoding one NDJSON line /
 * SSE event / reply object), chat_wire_fast.c (Ollama token lines without
 * json-c) and chat_reply.c (whole replies, error bodies, model lists).
 *
 * Not part of the public API (that is chat/stream.h).
 */
#ifndef CHAT_STREAM_INT_H
#define CHAT_STREAM_INT_H

#include <stddef.h>

#include <json-c/json.h>

#include "chat/stream.h"

#define JSON_DEPTH 64 /* nesting allowed in one reply */

/* ---- the stream (chat_stream.c) ------------------------------------------- */

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
    int json_body;    /* SSE: the reply is one JSON object, not SSE */
    int known_line;   /* SSE: a data/event/error/id/retry or comment line came */
    int unknown_line; /* SSE: a line with an unknown field name came */
    char err[256];
};

/* Records the failure (sticky) and its message; returns st. */
chat_status_t chat_stream_fail(chat_stream_t *s, chat_status_t st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* "NDJSON line" or "SSE event", for messages. */
const char *chat_stream_unit_name(const chat_stream_t *s);
/* Emits a text event (nothing if n is 0), sanitised when needed. */
chat_status_t chat_stream_emit_text(chat_stream_t *s, chat_event_type_t type,
                                    const char *p, size_t n);
/* Emits the backend's error message; the stream has then ended. */
chat_status_t chat_stream_emit_error(chat_stream_t *s, const char *msg, size_t n);
/* Emits DONE; the stream has then ended. */
chat_status_t chat_stream_done(chat_stream_t *s);
/* Bytes after the end: only whitespace after DONE, anything after ERROR. */
chat_status_t chat_stream_after_end(chat_stream_t *s, const char *p, size_t n);
/* The stream's line (or event data) buffer. */
void chat_stream_line_clear(chat_stream_t *s);
chat_status_t chat_stream_line_append(chat_stream_t *s, const char *p, size_t n,
                                      size_t cap);

/* ---- SSE framing (chat_sse.c) ---------------------------------------------- */

chat_status_t chat_sse_feed(chat_stream_t *s, const char *p, size_t n);
/* At EOF: the held back BOM bytes, an unterminated line and a pending
 * event are processed as if they had been terminated. */
chat_status_t chat_sse_finish(chat_stream_t *s);

/* ---- decoding (chat_wire.c) ------------------------------------------------------ */

/* The fields of one reply object that matter to us. */
typedef struct {
    const char *content, *thinking, *finish;
    size_t content_len, thinking_len, finish_len;
    int done; /* Ollama done:true */
} chat_reply_t;

int chat_wire_is_ws(char c);
/* Strips JSON whitespace at both ends of p[0..*n). */
const char *chat_wire_trim(const char *p, size_t *n);
/* Parses p[0..n) (already trimmed) as one JSON object. On failure returns
 * NULL with a reason in why; *truncated is set when the text is the start
 * of an object that simply ended too early. */
json_object *chat_wire_parse_object(json_tokener *tok, const char *p, size_t n, char *why,
                                    size_t whycap, int *truncated);
json_object *chat_wire_jget(json_object *o, const char *key);
/* A string member: 1 and (*s, *n) if it is a string, 0 if it is absent or
 * null, -1 if it has another type. */
int chat_wire_jstr(json_object *o, const char *key, const char **s, size_t *n);
/* Copies s[0..n) into dst (cap bytes, NUL terminated) as valid one-line
 * UTF-8 (chat_utf8_sanitize, NUL-free, controls as spaces), at most limit
 * bytes. Returns the length. */
size_t chat_wire_text(char *dst, size_t cap, const char *s, size_t n, size_t limit);
/* If o is an error reply, sets (*msg, *len) to its message and returns 1. */
int chat_wire_error_message(json_object *o, int bare, const char **msg, size_t *len);
/* The answer fields of an Ollama object / of an OpenAI one's choices[0]
 * (key "delta" or "message"). 0, or -1 with a reason in *why. */
int chat_wire_ollama_reply(json_object *o, chat_reply_t *r, const char **why);
void chat_wire_ollama_stats(json_object *o, chat_stats_t *st);
int chat_wire_openai_reply(json_object *o, const char *key, chat_reply_t *r,
                           const char **why);
void chat_wire_openai_stats(json_object *o, const chat_reply_t *r, chat_stats_t *st);
/* One complete NDJSON line (terminator excluded); final: at EOF. */
chat_status_t chat_wire_ndjson_line(chat_stream_t *s, const char *p, size_t n, int final);
/* One complete SSE event's data (lines joined with "\n"). */
chat_status_t chat_wire_sse_event(chat_stream_t *s, const char *p, size_t n, int is_error,
                                  int final);
/* finish for a reply that was one JSON object (in s->line) instead of SSE. */
chat_status_t chat_wire_json_body(chat_stream_t *s);

/* ---- Ollama token lines without json-c (chat_wire_fast.c) ------------------ */

typedef struct {
    const char *s;
    size_t n;
    int plain; /* no escape: the bytes are the value */
} chat_fstr_t;

/* The statistics of Ollama's last line (done:true), in the order of
 * chat_wire_stat_keys; a number is -1 when absent. */
enum {
    CHAT_OST_PROMPT_EVAL_COUNT,
    CHAT_OST_EVAL_COUNT,
    CHAT_OST_TOTAL_DURATION,
    CHAT_OST_LOAD_DURATION,
    CHAT_OST_PROMPT_EVAL_DURATION,
    CHAT_OST_EVAL_DURATION,
    CHAT_OST_N
};
extern const char *const chat_wire_stat_keys[CHAT_OST_N];

/* Applies a done line's statistics: model and done_reason when non-empty
 * (NULL: absent), the numbers when >= 0. Both readers of Ollama lines use
 * it, so they agree. */
void chat_wire_ollama_stats_set(chat_stats_t *st, const char *model, size_t model_n,
                                const char *reason, size_t reason_n,
                                const double num[CHAT_OST_N]);

typedef struct {
    chat_fstr_t content, thinking, model, done_reason;
    int has_message, has_done, has_model;
    int done; /* done:true (then num[] holds the statistics) */
    double num[CHAT_OST_N];
} chat_fast_t;

/* 1 if p[0..n) (trimmed, non-empty) is a token line read into r. */
int chat_wire_fast_line(const char *p, size_t n, chat_fast_t *r);

#endif /* CHAT_STREAM_INT_H */
