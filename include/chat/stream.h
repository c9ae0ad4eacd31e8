/* chat/stream.h - incremental parsers for LLM backend replies, and the
 * request/response helpers around them.
 *
 * Two wire formats:
 *   CHAT_WIRE_OLLAMA  POST /api/chat, stream:true -> NDJSON, one JSON object
 *                     per line: {"message":{"content","thinking"},"done":..}
 *                     the done:true line carries stats (and maybe content);
 *                     {"error":"..."} lines report failures mid-stream.
 *   CHAT_WIRE_OPENAI  POST /v1/chat/completions, stream:true -> SSE:
 *                     "data: {json}" events, ":" comment lines, blank line
 *                     separators, "data: [DONE]" at the end. Deltas in
 *                     choices[0].delta.{content,reasoning_content,reasoning};
 *                     finish_reason; usage and (llama.cpp) timings in the
 *                     finish chunk or a separate chunk; {"error":{...}}.
 *
 * The parsers are fed whatever the HTTP client delivers (chunks split
 * anywhere: inside a line, inside a UTF-8 sequence, inside "\r\n") and
 * produce exactly the same events whatever the split. Every text they emit
 * is complete, valid UTF-8 (an invalid byte sequence becomes U+FFFD).
 * Memory: one line buffer, capped by max_line; no allocation per event
 * once the buffers have grown.
 */
#ifndef CHAT_STREAM_H
#define CHAT_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CHAT_WIRE_OLLAMA = 0, CHAT_WIRE_OPENAI = 1 } chat_wire_t;

typedef enum {
    CHAT_EV_CONTENT = 1,  /* text: a delta of the answer (non-empty) */
    CHAT_EV_THINKING = 2, /* text: a delta of reasoning ("thinking") */
    CHAT_EV_DONE = 3,     /* the backend said the answer is complete */
    CHAT_EV_ERROR = 4     /* text: the backend's error message */
} chat_event_type_t;

/* Statistics of one answer. Unknown values are -1 (or "" for strings). */
typedef struct {
    char model[128];
    char done_reason[32];      /* "stop", "length", ... */
    int64_t prompt_tokens;     /* prompt_eval_count / usage.prompt_tokens */
    int64_t completion_tokens; /* eval_count / usage.completion_tokens */
    double total_ms;           /* total_duration */
    double load_ms;            /* load_duration */
    double prompt_ms;          /* prompt_eval_duration / timings.prompt_ms */
    double eval_ms;            /* eval_duration / timings.predicted_ms */
    double tokens_per_sec; /* eval_count/eval_duration, or timings.predicted_per_second */
} chat_stats_t;

void chat_stats_init(chat_stats_t *st);

typedef struct {
    chat_event_type_t type;
    const char *text; /* CONTENT/THINKING delta or ERROR message; NUL terminated */
    size_t len;
    const chat_stats_t *stats; /* DONE: the final stats (also the accumulated
                                  ones so far, as usage may come in a chunk
                                  after finish_reason) */
} chat_event_t;

/* Return 0 to go on, non-zero to abort parsing (feed returns CHAT_ECLOSED). */
typedef int chat_event_cb(void *baton, const chat_event_t *ev);

typedef struct chat_stream chat_stream_t;

/* max_line caps one NDJSON line / SSE event (e.g. 1 MiB). CHAT_OK,
 * CHAT_EINVAL (no cb, unknown wire, max_line 0 or > INT_MAX/2), CHAT_ENOMEM. */
chat_status_t chat_stream_create(chat_stream_t **ps, chat_wire_t wire, size_t max_line,
                                 chat_event_cb *cb, void *baton);
void chat_stream_destroy(chat_stream_t *s);
/* Back to the initial state, keeping buffers (for the next answer). */
void chat_stream_reset(chat_stream_t *s);

/* Feeds bytes. Returns:
 *   CHAT_OK       consumed; events were delivered for complete lines
 *   CHAT_ETOOBIG  a line exceeded max_line (the stream is unusable)
 *   CHAT_EPARSE   a line was not valid JSON / not the expected shape
 *                 (the message is in chat_stream_error())
 *   CHAT_ECLOSED  the callback aborted, or data came after the end
 *   CHAT_ENOMEM   out of memory */
chat_status_t chat_stream_feed(chat_stream_t *s, const char *data, size_t len);
/* The peer closed the stream. Processes a final unterminated line, then:
 *   CHAT_OK          a DONE event has been delivered (complete answer)
 *   CHAT_EINCOMPLETE EOF before done:true / [DONE] (interrupted answer)
 *   CHAT_EPARSE / CHAT_ETOOBIG as for feed */
chat_status_t chat_stream_finish(chat_stream_t *s);
/* 1 once a DONE event was delivered. */
int chat_stream_is_done(const chat_stream_t *s);
/* Human readable description of the last parse error ("" if none). */
const char *chat_stream_error(const chat_stream_t *s);
/* Stats accumulated so far. */
const chat_stats_t *chat_stream_stats(const chat_stream_t *s);
/* Test seam: on (the default) Ollama's ordinary token lines are read in
 * place, without json-c; off, every line goes through json-c. Both give the
 * same events (the unit tests and the NDJSON fuzzer compare them).
 * Process-wide, not thread safe: tests only. */
void chat_stream_set_fast_path(int on);

/* Parses a complete non-streamed reply (Ollama stream:false object, or an
 * OpenAI chat.completion object): appends the answer to content (and the
 * reasoning to thinking if not NULL), fills stats. CHAT_OK, CHAT_EPARSE,
 * or CHAT_EPROTO when the body is an error object (message in content). */
chat_status_t chat_stream_parse_whole(chat_wire_t wire, const char *body, size_t len,
                                      chat_buf_t *content, chat_buf_t *thinking,
                                      chat_stats_t *stats);

/* Extracts the human message from an error reply body: Ollama
 * {"error":"..."}, OpenAI {"error":{"message":...}}, or plain text (first
 * line, trimmed, made valid UTF-8, at most 300 bytes). Writes a NUL
 * terminated string into out. Returns the length. */
size_t chat_backend_error_text(const char *body, size_t len, char *out, size_t outcap);

/* ---- requests -------------------------------------------------------- */

typedef enum {
    CHAT_ROLE_SYSTEM = 0,
    CHAT_ROLE_USER = 1,
    CHAT_ROLE_ASSISTANT = 2,
    CHAT_ROLE_TOOL = 3
} chat_role_t;
const char *chat_role_name(chat_role_t r);

typedef struct {
    chat_role_t role;
    const char *content;
    size_t len;
} chat_msg_t;

/* Model options sent with every request. Unset numbers are < 0. */
typedef struct {
    double temperature;
    double top_p;
    int64_t top_k;
    int64_t num_ctx; /* Ollama options.num_ctx (fixed: changing it reloads the model) */
    int64_t num_predict; /* Ollama options.num_predict / OpenAI max_tokens */
    int64_t seed;
    const char *keep_alive; /* Ollama keep_alive ("5m", "-1"); NULL = omit */
} chat_options_t;

void chat_options_init(chat_options_t *o);

/* Builds the JSON body of a chat request into out (appended).
 * Ollama: {"model","messages":[{"role","content"}...],"stream",
 *          "keep_alive","options":{...}}
 * OpenAI: {"model","messages",...,"stream","stream_options":
 *          {"include_usage":true},"temperature",...,"max_tokens"}
 * CHAT_OK, CHAT_ENOMEM, or CHAT_EINVAL (NULL model/out, unknown role,
 * NULL content with len > 0); on error out is left unchanged. */
chat_status_t chat_request_build(chat_wire_t wire, const char *model,
                                 const chat_msg_t *msgs, size_t nmsgs,
                                 const chat_options_t *opts, int stream, chat_buf_t *out);

/* Parses a model list (Ollama GET /api/tags {"models":[{"name"}..]} or
 * OpenAI GET /v1/models {"data":[{"id"}..]}) calling cb for each name.
 * Returns the number of models, or CHAT_EPARSE. */
int chat_models_parse(chat_wire_t wire, const char *body, size_t len,
                      void (*cb)(void *baton, const char *name), void *baton);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_STREAM_H */
