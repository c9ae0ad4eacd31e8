/* mod_chatbot_engine.h - the turn engine's own types and the functions its
 * files share (engine, turn, context, request, slots); drivers use
 * include/mod_chatbot.h.
 *
 * A turn: claim the conversation (one generator at a time, across all
 * children), store the user message (mod_chatbot_turn.c), get a backend
 * slot (fair FIFO queue shared by all children; circuit breaker; failover
 * to the next backend on connect failure or 503: mod_chatbot_slots.c), send
 * the context (mod_chatbot_context.c) over mod_chatbot_http.h, parse the
 * reply incrementally (chat/stream.h), write every delta into history as it
 * arrives (so another connection can resume it) and hand it to the driver
 * (mod_chatbot_request.c), then record the outcome, stats and metrics
 * (mod_chatbot_turn.c).
 *
 * Everything runs on the driver's thread: the WebSocket connection loop
 * polls the backend sockets and the client socket together, so a Stop, a
 * vanished client or a timeout closes the upstream request at once (closing
 * the HTTP request is the only way to make Ollama stop generating).
 */
#ifndef MOD_CHATBOT_ENGINE_H
#define MOD_CHATBOT_ENGINE_H

#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

typedef enum {
    CHATBOT_PH_IDLE = 0,
    CHATBOT_PH_QUEUED,
    CHATBOT_PH_RUNNING,
} chatbot_phase_t;

typedef struct chatbot_turn_priv {
    chatbot_turn_t pub; /* first: drivers see this part */
    chatbot_engine_t *e;
    chatbot_phase_t phase;
    apr_pool_t *pool;    /* cleared after every turn */
    apr_uint64_t token;  /* generation token in the store */
    apr_uint64_t ticket; /* backend queue ticket */
    int backend_i;       /* index in bot->backends */
    int slot_held;
    int queued_pos;
    chat_turn_acquire_t pre;   /* the first backend's slot, asked with the start */
    chatbot_http_xfer_t *xfer; /* kept between turns */
    chat_stream_t *parser;
    chat_wire_t parser_wire;
    chat_buf_t body;    /* request JSON */
    chat_buf_t errbody; /* non-2xx reply body */
    long http_status;
    int hdr_checked;
    int backend_error; /* an error line/event arrived */
    char backend_msg[300];
    const char *abort_code; /* set when we abort from the write callback */
    char abort_msg[300];
    apr_uint64_t t_start, t_queued, t_sent, t_first, t_last, t_beat, t_queue_poll;
    int loading_sent;
    int series;
    int health_down;        /* the backend failed; detail not yet written */
    apr_size_t stored;      /* bytes of pub.answer already in the store */
    apr_uint64_t t_stored;  /* when they were last written */
    int store_due;          /* text came in this run: chatbot_engine_run stores it */
    const char *log_prompt; /* the user's text, kept only with ChatbotLogContent */
    int stateless;          /* no conversation: context in ctx, nothing stored */
    int branch_answer;      /* regenerate: the answer is a new version under
                             * pub.user_index (chat_store_msg_branch) */
    chat_msg_t *ctx;        /* stateless context, oldest first (in pool) */
    int nctx;
} chatbot_turn_priv_t;

/* The access-log notes of the last turn, in buffers of the request (one
 * set per request, whatever the number of engines and turns: r->pool
 * lives as long as a WebSocket, an allocation per turn there would grow
 * without bound; the engine itself may be gone when the line is logged). */
struct chatbot_engine_notes {
    char tokens[16], ttft[32];
    char model[CHAT_MODEL_NAME_MAX + 1]; /* a conversation's own model */
};

struct chatbot_engine {
    request_rec *r;
    apr_pool_t *pool;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    chatbot_turn_cb_t cb;
    void *baton;
    chatbot_http_client_t *http;
    chatbot_turn_priv_t turns[CHATBOT_MAX_TURNS];
    chat_buf_t scratch;
    struct chatbot_engine_notes *notes; /* the request's, outlives the engine */
};

/* ---- mod_chatbot_turn.c ------------------------------------------------------------ */

/* Ends the turn (no-op when idle): frees its backend request and slot,
 * finishes the answer in the store, counts and logs it, calls on_done and
 * makes the turn idle. fmt (may be NULL) gives the detail. */
void chatbot_turn_end(chatbot_turn_priv_t *t, chatbot_outcome_t outcome, const char *code,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- mod_chatbot_context.c --------------------------------------------------------- */

/* The context of a stateless turn (t->ctx) from req, cut like a stored
 * conversation's. */
void chatbot_turn_stateless_context(chatbot_turn_priv_t *t,
                                    const chatbot_turn_req_t *req);
/* The messages to send for t (chat_msg_t, in t->pool): the system prompt
 * (left out when empty), then the context. Sets t->pub.model and *opts
 * from the bot and the conversation's settings. NULL if the conversation
 * is gone. */
apr_array_header_t *chatbot_turn_context(chatbot_turn_priv_t *t, chat_options_t *opts);

/* ---- mod_chatbot_request.c --------------------------------------------------------- */

/* Builds the request and starts it. Returns NULL or an error code. */
const char *chatbot_turn_send(chatbot_turn_priv_t *t);
/* Stops the turn's backend request, if any. */
void chatbot_turn_detach(chatbot_turn_priv_t *t);
/* Writes the part of the answer not yet in the store; all: everything now
 * (the turn ends). Returns 0, or -1 with abort_code set. */
int chatbot_turn_flush(chatbot_turn_priv_t *t, int all);
/* Sets abort_code and abort_msg (unless set) for a store that refused the
 * answer's text with rc. */
void chatbot_turn_store_refused(chatbot_turn_priv_t *t, chat_status_t rc);
/* The part of the answer not yet stored, for the turn's finish to carry
 * (chat_store_turn_finish_text): 1 with *tt filled, 0 if there is none or
 * it cannot go with the finish (a regenerate's first piece: flush it). */
int chatbot_turn_final_text(chatbot_turn_priv_t *t, chat_turn_text_t *tt);
/* After the finish carried tt: what was stored (or the refusal's reason). */
void chatbot_turn_final_stored(chatbot_turn_priv_t *t, const chat_turn_text_t *tt);
/* The running turn's request ended with res: ends the turn, or fails over. */
void chatbot_turn_transfer_done(chatbot_turn_priv_t *t, chatbot_http_result_t res,
                                const char *errtext);

/* ---- mod_chatbot_slots.c ----------------------------------------------------------- */

/* Tries backends from t->backend_i on: the breaker must allow it, then a
 * slot (the request is sent) or a place in the queue. Returns NULL (running
 * or queued) or an error code with err_msg set. */
const char *chatbot_turn_acquire(chatbot_turn_priv_t *t);
/* Failed before any token with a failure worth another backend: moves to
 * the next one (or ends the turn) and returns 1; 0 if there is none. */
int chatbot_turn_failover(chatbot_turn_priv_t *t);
/* Reports a success or failure of the turn's backend to its breaker. */
void chatbot_turn_breaker(chatbot_turn_priv_t *t, int ok);
/* Records a turn's outcome as the backend's health. */
void chatbot_backend_health_note(chat_store_t *st, chatbot_backend_t *be, int ok,
                                 const char *detail);

#endif
