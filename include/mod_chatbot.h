/* mod_chatbot.h - shared declarations of the httpd glue (mod_chatbot_*.c).
 *
 * The portable core lives behind include/chat/; this header is for the
 * glue only: configuration records, the shared store wrapper, the chat turn
 * engine, and the entry points each mod_chatbot_<area>.c provides.
 */
#ifndef MOD_CHATBOT_H
#define MOD_CHATBOT_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_global_mutex.h"
#include "apr_shm.h"
#include "apr_hash.h"
#include "apr_tables.h"

#include "chat/common.h"
#include "chat/confparse.h"
#include "chat/proto.h"
#include "chat/ratelimit.h"
#include "chat/store.h"
#include "chat/stream.h"

#define CHATBOT_VERSION "0.1.0"
#define CHATBOT_SERVER_ID "mod_chatbot/" CHATBOT_VERSION
#define CHATBOT_HANDLER "chatbot"
#define CHATBOT_MUTEX_TYPE "chatbot-store"
#define CHATBOT_COOKIE "chatbot_sid"

extern module AP_MODULE_DECLARE_DATA chatbot_module;

#if defined(APLOG_USE_MODULE) && !defined(CHATBOT_MODULE_MAIN)
APLOG_USE_MODULE(chatbot);
#endif

/* ---- configuration ---------------------------------------------------------- */

typedef struct chatbot_backend {
    const char *name;
    const char *url;      /* base URL, no trailing slash */
    const char *chat_url; /* base + /api/chat or /v1/chat/completions */
    chat_wire_t wire;
    const char *key;      /* bearer token, NULL if none */
    int max_active;       /* 0 = unlimited */
    int index;            /* slot in the shared store */
    const char *defined_at;
} chatbot_backend_t;

typedef struct chatbot_command chatbot_command_t; /* mod_chatbot_exec.c */

typedef struct chatbot_bot {
    const char *name;
    const char *model;
    const char *system_prompt;
    const char *description;
    apr_array_header_t *backend_names;  /* const char *, failover order */
    apr_array_header_t *backends;       /* chatbot_backend_t *, resolved */
    apr_array_header_t *command_names;  /* const char * */
    chat_options_t options;
    int context_messages;   /* last N messages sent as context */
    int context_tokens;     /* ~ budget; bytes = 4 * tokens */
    const char *defined_at; /* "file:line" for error messages */
    int implicit;           /* the default bot made from top-level directives */
    int *series;            /* metric series per backend (parallel to backends) */
} chatbot_bot_t;

typedef struct {
    chat_store_layout_t layout;
    const char *history_file;
    apr_array_header_t *backends; /* chatbot_backend_t * */
    apr_array_header_t *bots;     /* chatbot_bot_t * */
    apr_hash_t *commands;         /* name -> chatbot_command_t * */
    chatbot_bot_t *top;           /* settings given outside <ChatbotBot> */
    const char *default_bot;
    chatbot_bot_t *default_bot_p; /* resolved in post_config */
    int breaker_threshold;
    apr_interval_time_t breaker_cooldown;
    apr_interval_time_t health_interval;
    int max_conns_per_ip;
    const char *demo_notice;
    int configured;           /* any Chatbot* directive seen */
} chatbot_srv_conf;

#define CHATBOT_UNSET -1

typedef struct {
    const char *path;                 /* <Location> path, for logs */
    apr_array_header_t *origins;      /* NULL = unset (default: same host) */
    int origins_any;
    chat_rate_t rate;
    int rate_set;
    apr_int64_t max_message_bytes;    /* CHATBOT_UNSET */
    apr_int64_t max_fragments;
    apr_int64_t connect_timeout_ms;
    apr_int64_t first_token_timeout_ms;
    apr_int64_t token_timeout_ms;
    apr_int64_t total_timeout_ms;
    apr_int64_t ping_interval_ms;
    apr_int64_t idle_timeout_ms;
    apr_int64_t send_timeout_ms;
    int log_content;                  /* CHATBOT_UNSET */
    int continue_without_viewer;      /* CHATBOT_UNSET */
    int cookie_secure;                /* CHATBOT_UNSET: auto (https) */
} chatbot_dir_conf;

/* Effective values (defaults applied). */
typedef struct {
    apr_size_t max_message_bytes;
    apr_size_t max_fragments;
    apr_int64_t connect_timeout_ms, first_token_timeout_ms, token_timeout_ms,
        total_timeout_ms, ping_interval_ms, idle_timeout_ms, send_timeout_ms;
    int log_content, continue_without_viewer;
    chat_rate_t rate;
} chatbot_limits_t;

extern const command_rec chatbot_cmds[];
void *chatbot_create_srv_conf(apr_pool_t *p, server_rec *s);
void *chatbot_merge_srv_conf(apr_pool_t *p, void *base, void *add);
void *chatbot_create_dir_conf(apr_pool_t *p, char *dir);
void *chatbot_merge_dir_conf(apr_pool_t *p, void *base, void *add);
/* Checks the whole configuration after parsing (bots resolve to backends,
 * commands exist...). Returns NULL or an error message. */
const char *chatbot_config_finish(apr_pool_t *p, server_rec *s);
void chatbot_limits_get(request_rec *r, chatbot_limits_t *lim);
chatbot_srv_conf *chatbot_srv(server_rec *s);
chatbot_bot_t *chatbot_bot_find(chatbot_srv_conf *sc, const char *name);

/* ---- shared store (mod_chatbot_store.c) ---------------------------------- */

/* Creates or re-attaches the segment (kept across graceful restarts in the
 * process pool; loaded from ChatbotHistoryFile on a full start). */
apr_status_t chatbot_store_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s);
void chatbot_store_child_init(apr_pool_t *pchild, server_rec *s);
int chatbot_store_pre_config(apr_pool_t *pconf);

/* The process-local handle; NULL if the store is unavailable. */
chat_store_t *chatbot_store(void);
/* Global mutex around store calls. lock returns APR_SUCCESS or an error
 * (logged); every lock must be paired with unlock. */
apr_status_t chatbot_lock(void);
void chatbot_unlock(void);

/* 1 once this child is stopping (graceful or not): connections then end
 * their turns and say goodbye. With a threaded MPM that announces it
 * through the child_stopping hook (event, worker) that hook is the signal,
 * not the MPM state: the state turns STOPPING *before* an ungraceful stop
 * closes every worker's socket, and a handler that returned in between
 * would free the socket under the MPM's loop (it reads freed memory and
 * the child dies with SIGSEGV). Other MPMs: the MPM state. */
int chatbot_child_stopping(void);

apr_uint64_t chatbot_now_ms(void);
/* 64 random bits from the CSPRNG (never 0). */
apr_uint64_t chatbot_random64(void);

/* ---- identity (mod_chatbot_ident.c) -------------------------------------- */

typedef struct {
    chat_owner_t owner;
    const char *user;   /* r->user, or NULL for anonymous cookie sessions */
    const char *label;  /* for logs: user name or "anon:<8 hex>" */
    int new_cookie;     /* a Set-Cookie was added */
} chatbot_ident_t;

/* Identity of the request: r->user if set, else the session cookie, created
 * (and Set-Cookie added to r->headers_out / err_headers_out) if absent.
 * Returns APR_SUCCESS, or an error when no random bytes were available for
 * a new cookie (the request must then be refused: no shared identity). */
apr_status_t chatbot_ident_get(request_rec *r, chatbot_ident_t *id);

/* ---- chat turn engine (mod_chatbot_engine.c) ----------------------------- */

/* One engine per WebSocket connection (or REST request). It owns a libcurl
 * multi handle and runs up to CHATBOT_MAX_TURNS answers at once, each in its
 * own conversation; the driver (the connection loop) waits with
 * chatbot_engine_poll() on the backend sockets and its own fds together and
 * calls chatbot_engine_run() after every wake-up. */
#define CHATBOT_MAX_TURNS 4

typedef enum {
    CHATBOT_TURN_NEW = 0,        /* append the user's message, answer it */
    CHATBOT_TURN_REGENERATE = 1, /* drop the last answer, answer again */
    CHATBOT_TURN_EDIT = 2        /* replace message `index` and what follows */
} chatbot_turn_mode_t;

typedef enum {
    CHATBOT_OUT_NONE = 0,
    CHATBOT_OUT_COMPLETE = 1,  /* backend said done */
    CHATBOT_OUT_STOPPED = 2,   /* stopped by a user (partial answer kept) */
    CHATBOT_OUT_FAILED = 3     /* error (err_code/err_msg), partial kept */
} chatbot_outcome_t;

typedef struct chatbot_engine chatbot_engine_t;

/* What a driver may read of a turn in its callbacks. */
typedef struct chatbot_turn {
    char conv_id[CHAT_CONV_ID_LEN + 1];
    const char *msg_id;         /* the client's id, or NULL */
    chatbot_bot_t *bot;
    chatbot_backend_t *backend; /* the one answering (after failover) */
    uint32_t user_index;        /* index of the user message in history */
    uint32_t answer_index;      /* index of the answer (valid if has_answer) */
    int has_answer;
    chat_buf_t answer;          /* the full answer so far */
    chatbot_outcome_t outcome;
    const char *err_code;       /* CHAT_ERR_* when FAILED */
    char err_msg[512];
    const char *stop_reason;    /* "stopped", "client_gone", "shutdown" */
    chat_stats_t stats;
    double ttft_ms, duration_ms, queue_ms;
    int tokens;                 /* content deltas received */
} chatbot_turn_t;

typedef struct {
    /* The user's message is stored (t->user_index); the turn goes on. */
    void (*on_accepted)(void *baton, chatbot_turn_t *t);
    /* state: "queued" (position), "loading", "generating" */
    void (*on_status)(void *baton, chatbot_turn_t *t, const char *state, int position);
    void (*on_delta)(void *baton, chatbot_turn_t *t, int thinking, const char *text,
                     size_t len);
    /* The turn ended (t->outcome); t is recycled after the call. */
    void (*on_done)(void *baton, chatbot_turn_t *t);
} chatbot_turn_cb_t;

typedef struct {
    chatbot_bot_t *bot;
    const char *conv_id;  /* an existing conversation of the identity, or NULL
                           * for a stateless turn (below) */
    const char *msg_id;   /* may be NULL */
    const char *content;  /* NEW / EDIT */
    apr_size_t len;
    chatbot_turn_mode_t mode;
    apr_uint32_t edit_index;
    /* Stateless turn (POST /api/chat; conv_id NULL, mode NEW): the context
     * is these messages then content, bounded like a stored conversation
     * (ChatbotContext); nothing is stored and no conversation exists. */
    const chat_msg_t *history;
    apr_size_t nhistory;
} chatbot_turn_req_t;

chatbot_engine_t *chatbot_engine_create(request_rec *r, const chatbot_limits_t *lim,
                                        const chatbot_ident_t *id,
                                        const chatbot_turn_cb_t *cb, void *baton);
/* Starts a turn. Returns NULL, or a CHAT_ERR_* code with errmsg filled
 * (busy, not_found, bad_request, storage_full, too_large...). */
const char *chatbot_turn_start(chatbot_engine_t *e, const chatbot_turn_req_t *req,
                               char *errmsg, apr_size_t errcap);
/* Stops the turn of conv_id (NULL: all turns); on_done is called for each. */
void chatbot_engine_stop(chatbot_engine_t *e, const char *conv_id, const char *reason);
int chatbot_engine_active(chatbot_engine_t *e);
/* 1 if conv_id is being answered by this engine. */
int chatbot_engine_has(chatbot_engine_t *e, const char *conv_id);
/* Longest the driver may sleep before calling chatbot_engine_run (ms; -1 =
 * no turn needs it). */
int chatbot_engine_wait_ms(chatbot_engine_t *e);
/* Waits for backend activity or one of the extra fds (curl_multi_poll).
 * extra is an array of struct curl_waitfd (void * to keep curl out of this
 * header). Returns APR_SUCCESS or an error. */
apr_status_t chatbot_engine_poll(chatbot_engine_t *e, void *extra, unsigned nextra,
                                 int timeout_ms);
/* Makes a chatbot_engine_poll in progress (or the next one) return at once.
 * Safe from any thread. */
void chatbot_engine_wakeup(chatbot_engine_t *e);
/* Moves every turn forward: transfers, parsing, timeouts, queue, stops. */
void chatbot_engine_run(chatbot_engine_t *e);
/* Runs until no turn is active (REST). */
void chatbot_engine_run_all(chatbot_engine_t *e);

/* Conversation helpers shared by the WebSocket and REST front ends. */
/* Finds the bot by name (NULL name: the default bot). */
chatbot_bot_t *chatbot_bot_get(server_rec *s, const char *name);
/* Resolves conv_id (must be the identity's) or, if NULL, the identity's
 * current conversation: its most recently used non-archived one with bot
 * (any bot if bot is NULL), creating one (with bot, or the default bot) if
 * none and create is set. out gets the id. Returns NULL or a CHAT_ERR_*
 * code. */
const char *chatbot_conv_resolve(request_rec *r, const chatbot_ident_t *id,
                                 chatbot_bot_t *bot, const char *conv_id, int create,
                                 chat_conv_info_t *out);
/* Rate limit: NULL if allowed, else CHAT_ERR_RATE_LIMITED and *retry_ms. */
const char *chatbot_rate_check(const chatbot_ident_t *id, const chatbot_limits_t *lim,
                               apr_int64_t *retry_ms);

/* ---- views shared by WebSocket and REST (mod_chatbot_views.c) ------------ */

void chatbot_view_session(chat_jw_t *w, server_rec *s, const chat_conv_info_t *c);
/* Writes a JSON array of the identity's sessions; returns how many. */
int chatbot_view_sessions(chat_jw_t *w, request_rec *r, const chatbot_ident_t *id,
                          const char *bot, int archived);
/* A failed turn's message is stored as "<code>: <message>": the length of
 * the code (lowercase letters and '_'), or 0 if text has no such prefix. */
apr_size_t chatbot_error_code_len(const char *text, apr_size_t len);
void chatbot_view_bot(chat_jw_t *w, chatbot_srv_conf *sc, chatbot_bot_t *b);
void chatbot_view_bots(chat_jw_t *w, chatbot_srv_conf *sc);
/* Writes the history members (conversation_id ... messages) into an open
 * object. Returns NULL or a CHAT_ERR_* code (nothing written on not_found). */
const char *chatbot_view_history(chat_jw_t *w, const chatbot_ident_t *id,
                                 const char *conv_id, apr_int64_t limit,
                                 apr_int64_t offset, chat_buf_t *scratch);
/* Markdown (json=0) or JSON export of a conversation into out. */
const char *chatbot_view_export(request_rec *r, const chatbot_ident_t *id,
                                const char *conv_id, int json, chat_buf_t *out,
                                const char **filename);
void chatbot_view_backends(chat_jw_t *w, chatbot_srv_conf *sc);
/* Members of the status board (backends, connections...) into an open object. */
void chatbot_view_status(chat_jw_t *w, chatbot_srv_conf *sc);

/* ---- handlers -------------------------------------------------------------------- */

int chatbot_ws_handler(request_rec *r);      /* mod_chatbot_ws.c */
/* 1 if a request with this Origin header (NULL: none) may open a WebSocket
 * or change state over REST (ChatbotAllowedOrigins). mod_chatbot_ws.c */
int chatbot_origin_allowed(request_rec *r, const char *origin);
int chatbot_api_handler(request_rec *r, const char *route); /* mod_chatbot_api.c */
int chatbot_metrics_handler(request_rec *r); /* mod_chatbot_status.c */
void chatbot_status_register(apr_pool_t *p); /* mod_status hook */

#endif /* MOD_CHATBOT_H */
