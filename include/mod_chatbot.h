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
#include "chat/storeurl.h"
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
    const char *key; /* bearer token, NULL if none */
    int max_active;  /* 0 = unlimited */
    int index;       /* slot in the shared store */
    const char *defined_at;
} chatbot_backend_t;

typedef struct chatbot_command chatbot_command_t; /* mod_chatbot_exec.h */

typedef struct chatbot_bot {
    const char *name;
    const char *model;
    const char *system_prompt;
    const char *description;
    apr_array_header_t *backend_names; /* const char *, failover order */
    apr_array_header_t *backends;      /* chatbot_backend_t *, resolved */
    apr_array_header_t *command_names; /* const char * */
    chat_options_t options;
    int context_messages;   /* last N messages sent as context */
    int context_tokens;     /* ~ budget; bytes = 4 * tokens */
    const char *defined_at; /* "file:line" for error messages */
    int implicit;           /* the default bot made from top-level directives */
    int *series;            /* metric series per backend (parallel to backends) */
} chatbot_bot_t;

typedef struct {
    chat_store_layout_t layout;
    chat_store_policy_t policy; /* ChatbotQuota */
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
    int max_workers;        /* ChatbotMaxWorkers, CHATBOT_UNSET: auto */
    int max_answers_per_ip; /* ChatbotMaxAnswersPerIP, CHATBOT_UNSET: auto */
    const char *demo_notice;
    int configured;                    /* any Chatbot* directive seen */
    const char *cookie_secret_file;    /* ChatbotCookieSecretFile, NULL if unset */
    const char *store_url;             /* ChatbotStore as written; NULL: shm */
    chat_storeurl_t *store;            /* ChatbotStore parsed; NULL: shm */
    apr_interval_time_t store_ttl;     /* ChatbotStoreTTL, -1: unset (30 days) */
    apr_interval_time_t store_timeout; /* ChatbotStoreTimeout, -1: unset (1 s) */
} chatbot_srv_conf;

#define CHATBOT_UNSET -1
#define CHATBOT_DETAILS_LOCAL 2 /* ChatbotShowDetails local */

typedef struct {
    const char *path;            /* <Location> path, for logs */
    apr_array_header_t *origins; /* NULL = unset (default: same host) */
    int origins_any;
    chat_rate_t rate;
    int rate_set;
    apr_int64_t max_message_bytes; /* CHATBOT_UNSET */
    apr_int64_t max_fragments;
    apr_int64_t connect_timeout_ms;
    apr_int64_t first_token_timeout_ms;
    apr_int64_t token_timeout_ms;
    apr_int64_t total_timeout_ms;
    apr_int64_t ping_interval_ms;
    apr_int64_t idle_timeout_ms;
    apr_int64_t send_timeout_ms;
    int log_content;             /* CHATBOT_UNSET */
    int continue_without_viewer; /* CHATBOT_UNSET */
    int cookie_secure;           /* CHATBOT_UNSET: auto (https) */
    int cookie_host_prefix;      /* CHATBOT_UNSET: on (__Host- over https) */
    int show_details;            /* CHATBOT_UNSET: off; or CHATBOT_DETAILS_LOCAL */
    chat_rate_t anon_rate;       /* ChatbotAnonymousRateLimit, per address */
    int anon_rate_set;
    int user_settings;         /* ChatbotUserSettings bits, CHATBOT_UNSET */
    double temp_min, temp_max; /* ChatbotTemperatureRange, if temp_set */
    int temp_set;
    apr_int64_t system_prompt_max; /* ChatbotSystemPromptMax, CHATBOT_UNSET */
} chatbot_dir_conf;

/* Effective values (defaults applied). */
typedef struct {
    apr_size_t max_message_bytes;
    apr_size_t max_fragments;
    apr_int64_t connect_timeout_ms, first_token_timeout_ms, token_timeout_ms,
        total_timeout_ms, ping_interval_ms, idle_timeout_ms, send_timeout_ms;
    int log_content, continue_without_viewer;
    chat_rate_t rate;
    chat_rate_t anon_rate;        /* shared by the anonymous identities of one address */
    int show_details;             /* ChatbotShowDetails: backend URLs, health details */
    int user_settings;            /* ChatbotUserSettings: CHATBOT_SET_* bits */
    double temp_min, temp_max;    /* ChatbotTemperatureRange */
    apr_size_t system_prompt_max; /* ChatbotSystemPromptMax */
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

/* A store provider's glue, found as mod_socache's providers are: registered
 * with ap_register_provider(p, CHATBOT_STORE_PROVIDER_GROUP, name,
 * CHATBOT_STORE_PROVIDER_VERSION, &provider) and looked up by name at
 * post_config. Its handles dispatch the chat_store_*() operations to the
 * provider's core half (chat_store_provider_t in chat/store.h). */
#define CHATBOT_STORE_PROVIDER_GROUP "chatbot_store"
#define CHATBOT_STORE_PROVIDER_VERSION "0"
#define CHATBOT_STORE_DEFAULT "shm"

typedef struct chatbot_store_provider {
    const char *name;
    /* post_config, in the parent, at every start and restart: makes, finds
     * or connects the storage the configuration of s describes and returns
     * this process's handle (children inherit it). APR_SUCCESS, or an error
     * already logged: httpd does not start. The caller then sets the quota
     * policy and registers backends and metric series through the handle. */
    apr_status_t (*init)(chat_store_t **out, server_rec *s, apr_pool_t *pconf,
                         apr_pool_t *ptemp);
    /* child_init, before the child registers with the store (NULL: nothing
     * to do): what a child needs of its own, e.g. its connections.
     * APR_SUCCESS, or an error already logged (the child then does not
     * register: its crashes are noticed by timeouts only). */
    apr_status_t (*child_init)(chat_store_t *st, apr_pool_t *pchild, server_rec *s);
} chatbot_store_provider_t;

/* The shared-memory provider (mod_chatbot_store_shm.c), for one host. */
extern const chatbot_store_provider_t chatbot_store_shm;
/* The redis provider (mod_chatbot_store_redis.c), for several hosts. */
extern const chatbot_store_provider_t chatbot_store_redis;

/* A remote store's health, latency and errors (mod_chatbot_store_redis.c),
 * for /api/health, mod_status and /metrics. */
typedef struct {
    int up;                  /* 1 reachable at the last call, 0 not */
    apr_uint64_t calls;      /* commands sent */
    apr_uint64_t errors;     /* calls that failed (no reply, timeout, refused) */
    apr_uint64_t reconnects; /* connections made */
    apr_uint64_t usec_total; /* latency of the calls that succeeded */
    apr_uint64_t usec_max;
    apr_uint64_t hist[8]; /* <= 0.25 0.5 1 2 5 10 50 ms, +Inf */
    char last_error[128];
    apr_uint64_t down_since_ms;
} chatbot_store_stats_t;
/* 1 and *out filled if st is a remote (redis) store, else 0. */
int chatbot_store_remote_stats(chat_store_t *st, chatbot_store_stats_t *out);
/* A remote store answers now: 1 yes, 0 no (within its timeout; at once
 * during a reconnection backoff), -1 the store is local (shm). With
 * writes, also whether it takes writes: 2 it answers but refuses them
 * (over its maxmemory, a read-only replica, a failed snapshot: counted as
 * a failed call of this thread), asked at most once a second per child
 * (RS_PROBE_FRESH_MS) by one thread at a time. */
int chatbot_store_ping(chat_store_t *st, int writes);
/* Store calls that failed (redis unreachable or timed out) in this thread
 * so far: a request compares it before and after its work (no ping first). */
apr_uint32_t chatbot_store_failures(void);

/* Something changed in the store outside this process (mod_chatbot_ws_watch.c):
 * the watcher looks at once instead of at its next tick. */
void chatbot_ws_watch_news(void);

/* Finds the provider and its storage (for shm: creates or re-attaches the
 * segment, kept across graceful restarts in the process pool, loaded from
 * ChatbotHistoryFile on a full start). */
apr_status_t chatbot_store_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s);
void chatbot_store_child_init(apr_pool_t *pchild, server_rec *s);
int chatbot_store_pre_config(apr_pool_t *pconf);

/* The process-local handle; NULL if the store is unavailable. The store
 * locks internally (robust mutexes in the segment): no lock around calls. */
chat_store_t *chatbot_store(void);
/* The parent's upkeep hooks (dead children's locks, generations, slots). */
void chatbot_store_register_hooks(apr_pool_t *p);
/* The stable error code for the status of a store call that creates or
 * writes (storage_full, quota_exceeded, rate_limited, too_large, not_found,
 * internal), and a sentence for users that goes with a code. */
const char *chatbot_store_err(chat_status_t rc);
const char *chatbot_store_err_text(const char *code);

/* 1 once this child is stopping (graceful or not): connections then end
 * their turns and say goodbye. With a threaded MPM that announces it
 * through the child_stopping hook (event, worker) that hook is the signal,
 * not the MPM state: the state turns STOPPING *before* an ungraceful stop
 * closes every worker's socket, and a handler that returned in between
 * would free the socket under the MPM's loop (it reads freed memory and
 * the child dies with SIGSEGV). Other MPMs: the MPM state. */
int chatbot_child_stopping(void);
/* Called before a worker ends a connection: if an ungraceful stop is
 * closing the workers' sockets right now (MPM state STOPPING, the hook not
 * run yet), waits until it is done (the hook follows at once; 1 s at most),
 * so that no connection of the module ends inside that loop - whatever
 * ended it (a socket the loop closed reads as a vanished client). */
void chatbot_child_stopping_settle(void);

/* ---- clock, random, client descriptor (mod_chatbot_util.c) -------------- */

apr_uint64_t chatbot_now_ms(void);
/* 64 random bits from the CSPRNG (never 0). */
apr_uint64_t chatbot_random64(void);
/* The descriptor to poll for a client connection's input, or -1: its
 * socket over HTTP/1.x (TLS or not); over HTTP/2 the pipe mod_http2
 * signals the stream's input on, which only says "input", so there
 * c->aborted (set when the stream is reset or the connection goes) is what
 * tells a client has gone. The WebSocket and the blocking REST turn both
 * poll it with the backends' sockets (chatbot_engine_poll). */
int chatbot_conn_pollfd(conn_rec *c, apr_pool_t *p);

/* ---- identity (mod_chatbot_ident.c) -------------------------------------- */

typedef struct {
    chat_owner_t owner;
    const char *user;  /* r->user, or NULL for anonymous cookie sessions */
    const char *label; /* for logs: user name or "anon:<8 hex>" */
    int new_cookie;    /* a Set-Cookie was added */
    int anonymous;     /* no r->user: addr's budget applies too */
    chat_owner_t addr; /* the client address's rate key (anonymous only) */
    int none;          /* chatbot_ident_find found no valid cookie: owns nothing */
} chatbot_ident_t;

/* Identity of the request: r->user if set, else the signed session cookie;
 * a request without one that verifies (absent, forged, unsigned) gets a new
 * identity and a Set-Cookie (in r->err_headers_out). Returns APR_SUCCESS,
 * or an error when no random bytes were available for a new cookie (the
 * request must then be refused: no shared identity). */
apr_status_t chatbot_ident_get(request_rec *r, chatbot_ident_t *id);
/* The same for read-only routes: without a valid cookie, an identity that
 * owns nothing (id->none) and no Set-Cookie. */
apr_status_t chatbot_ident_find(request_rec *r, chatbot_ident_t *id);
/* Loads or makes the cookie secret (see mod_chatbot_ident.c). */
apr_status_t chatbot_ident_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s);
const char *chatbot_ident_set_secret_file(cmd_parms *cmd, void *dummy, const char *arg);

/* ---- chat turn engine (mod_chatbot_engine.c, mod_chatbot_turn.c) -------- */

/* An engine runs up to CHATBOT_MAX_TURNS answers at once, each in its own
 * conversation, for a WebSocket connection while it has turns (it is
 * destroyed when they end: an idle connection holds no libcurl handle) or
 * for a REST request. It owns an HTTP client (mod_chatbot_http.h), taken
 * from a small per-child cache (which keeps the backend connections alive
 * between engines); the driver waits with chatbot_engine_poll() on the backend
 * sockets and its own fds together and calls chatbot_engine_run() after
 * every wake-up. */
#define CHATBOT_MAX_TURNS 4

typedef enum {
    CHATBOT_TURN_NEW = 0,        /* append the user's message, answer it */
    CHATBOT_TURN_REGENERATE = 1, /* drop the last answer, answer again */
    CHATBOT_TURN_EDIT = 2        /* replace message `index` and what follows */
} chatbot_turn_mode_t;

typedef enum {
    CHATBOT_OUT_NONE = 0,
    CHATBOT_OUT_COMPLETE = 1, /* backend said done */
    CHATBOT_OUT_STOPPED = 2,  /* stopped by a user (partial answer kept) */
    CHATBOT_OUT_FAILED = 3    /* error (err_code/err_msg), partial kept */
} chatbot_outcome_t;

typedef struct chatbot_engine chatbot_engine_t;

/* What a driver may read of a turn in its callbacks. */
typedef struct chatbot_turn {
    char conv_id[CHAT_CONV_ID_LEN + 1];
    const char *msg_id; /* the client's id, or NULL */
    chatbot_bot_t *bot;
    const char *model;          /* the model asked: the conversation's or the bot's */
    chatbot_backend_t *backend; /* the one answering (after failover) */
    uint32_t user_index;        /* index of the user message in history */
    uint32_t answer_index;      /* index of the answer (valid if has_answer) */
    int has_answer;
    chat_buf_t answer; /* the full answer so far */
    chatbot_outcome_t outcome;
    const char *err_code;    /* CHAT_ERR_* when FAILED */
    char err_msg[512];       /* for the user: no URL, path or backend reply */
    char err_detail[512];    /* for the operator (logs, health): the details */
    const char *stop_reason; /* "stopped", "client_gone", "shutdown" */
    chat_stats_t stats;
    double ttft_ms, duration_ms, queue_ms;
    int tokens; /* content deltas received */
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
    const char *conv_id; /* an existing conversation of the identity, or NULL
                          * for a stateless turn (below) */
    const char *msg_id;  /* may be NULL */
    const char *content; /* NEW / EDIT */
    apr_size_t len;
    chatbot_turn_mode_t mode;
    apr_uint32_t edit_index;
    apr_uint32_t msg_flags; /* NEW / EDIT: more CHAT_MSG_* of the user message
                             * (CHAT_MSG_ATTACH: content is in the stored form
                             * of chat/attach.h) */
    /* NEW: conv_id was not looked up for this turn; it is believed to be
     * the identity's and bot's (known from an earlier turn). The store
     * checks that as it starts the turn (chat_store_turn_start_bot); if it
     * is gone or changed, chatbot_turn_start returns CHATBOT_TURN_STALE
     * and nothing was stored. */
    int known;
    /* Stateless turn (POST /api/chat; conv_id NULL, mode NEW): the context
     * is these messages then content, bounded like a stored conversation
     * (ChatbotContext); nothing is stored and no conversation exists. */
    const chat_msg_t *history;
    apr_size_t nhistory;
} chatbot_turn_req_t;

/* The engine lives in a pool of its own: it goes with the request at the
 * latest, or earlier with chatbot_engine_destroy (turns still running are
 * ended, without callbacks). */
chatbot_engine_t *chatbot_engine_create(request_rec *r, const chatbot_limits_t *lim,
                                        const chatbot_ident_t *id,
                                        const chatbot_turn_cb_t *cb, void *baton);
void chatbot_engine_destroy(chatbot_engine_t *e);
/* Closes the cached multi handles (and their backend connections) that
 * were not used for idle_ms. Safe from any thread. */
void chatbot_engine_prune(apr_uint64_t idle_ms);
/* Starts a turn. Returns NULL, or a CHAT_ERR_* code with errmsg filled
 * (busy, not_found, bad_request, storage_full, too_large...), or, for a
 * req->known conversation that is gone, has another bot or could not be
 * checked (the store unreachable), CHATBOT_TURN_STALE: nothing was
 * stored, the caller looks the conversation up and starts again. */
#define CHATBOT_TURN_STALE "stale" /* never sent to a client */
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
/* Waits for backend activity or one of the extra fds. extra is an array of
 * chatbot_http_waitfd_t (mod_chatbot_http.h; the layout of libcurl's struct
 * curl_waitfd). Returns APR_SUCCESS or an error. */
apr_status_t chatbot_engine_poll(chatbot_engine_t *e, void *extra, unsigned nextra,
                                 int timeout_ms);
/* Makes a chatbot_engine_poll in progress (or the next one) return at once.
 * Safe from any thread. */
void chatbot_engine_wakeup(chatbot_engine_t *e);
/* Moves every turn forward: transfers, parsing, timeouts, queue, stops. */
void chatbot_engine_run(chatbot_engine_t *e);

/* Conversation helpers shared by the WebSocket and REST front ends
 * (mod_chatbot_bots.c). */
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

/* ---- backend probes and model lists (mod_chatbot_probe.c) --------------- */

/* Probes the backends whose last check is older than ChatbotHealthInterval
 * (a failed one after 2 s; every one with force), all at once, and records
 * the results in the store: the wait is one probe's timeout. */
void chatbot_probe_health(apr_pool_t *p, chatbot_srv_conf *sc, long connect_timeout_ms,
                          int force);

/* ---- the backends' model lists (mod_chatbot_models.c) ------------------- */

/* One backend's model list (pool copies). */
typedef struct {
    chatbot_backend_t *be;
    const char **names;
    int n;
    const char *error; /* NULL if it was read, else why not (operators, log) */
} chatbot_model_list_t;
/* The lists of backends bes (chatbot_backend_t *), in their order: each
 * from the child's cache if it was asked less than 10 s ago (read or not;
 * fresh: never), the others asked now, all at once (5 s limit, connect
 * within connect_timeout_ms), and kept. A list that cannot be read is
 * logged at info with the reason (AH10998; s NULL: the main server).
 * Returns an array of chatbot_model_list_t. */
apr_array_header_t *chatbot_models_get(apr_pool_t *p, server_rec *s,
                                       apr_array_header_t *bes, long connect_timeout_ms,
                                       int fresh);
/* GET /api/models' array of {name, type, models[, error]}: for an operator
 * (details) lists asked now, with each failure's reason; for anyone else
 * the cache (chatbot_models_get) and one sentence per failure, so that no
 * client can make the module call every backend at will. */
void chatbot_models_write(chat_jw_t *jw, apr_pool_t *p, server_rec *s,
                          apr_array_header_t *bes, long connect_timeout_ms, int details);

/* ---- answer versions and branches (mod_chatbot_versions.c) -------------- */

/* A conversation's messages as a tree (chat/versions.h): per stored index
 * its parent, flags and role; the active path (indexes, oldest first) and
 * each index's place on it (CHAT_MSG_NO_PARENT: off the path). */
typedef struct {
    uint32_t n, npath;
    uint32_t *parent, *flags, *role, *path, *pos_of;
} chatbot_tree_t;
/* Reads the tree of a conversation of owner (malloc'ed: chatbot_tree_free).
 * CHAT_OK, CHAT_ENOTFOUND, CHAT_ENOMEM or the store's error. */
chat_status_t chatbot_tree_load(chat_store_t *st, const chat_owner_t *owner,
                                const char *conv_id, chat_buf_t *scratch,
                                chatbot_tree_t *t);
/* The same for a conversation already read (nmsgs: its count then; the
 * messages stored after it are not part of the tree). One store read. */
chat_status_t chatbot_tree_load_n(chat_store_t *st, const chat_owner_t *owner,
                                  const char *conv_id, uint32_t nmsgs,
                                  chat_buf_t *scratch, chatbot_tree_t *t);
void chatbot_tree_free(chatbot_tree_t *t);
/* The last user message on the active path, or CHAT_MSG_NO_PARENT. */
uint32_t chatbot_tree_last_user(const chatbot_tree_t *t);
/* 1 if the store keeps versions (every provider does; a provider without
 * them would make regenerate and edit replace, as before versions). */
int chatbot_store_has_versions(chat_store_t *st);
/* Writes "versions", "version" (1-based) and, with more than one,
 * "siblings" (their indexes, in order) of message index into an open
 * object; with tree also "parent" (index or null) and "active". */
void chatbot_ver_members(chat_jw_t *jw, const chatbot_tree_t *t, uint32_t index,
                         int tree);
/* Makes message index the chosen version (WebSocket select_version, REST
 * POST .../versions): NULL, or a CHAT_ERR_* code with *emsg. */
const char *chatbot_ver_select(chat_store_t *st, const chatbot_ident_t *id,
                               const char *conv_id, apr_int64_t index, const char **emsg);

/* ---- views shared by WebSocket and REST (mod_chatbot_views.c) ------------ */

/* One session as an object; its "model" is the one its turns use (the
 * conversation's own if lim allows choosing one, else its bot's). */
void chatbot_view_session(chat_jw_t *jw, server_rec *s, const chatbot_limits_t *lim,
                          const chat_conv_info_t *c);
/* Writes a JSON array of the identity's sessions; returns how many. */
int chatbot_view_sessions(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                          const char *bot, int archived);
/* A failed turn's message is stored as "<code>: <message>": the length of
 * the code (lowercase letters and '_'), or 0 if text has no such prefix. */
apr_size_t chatbot_error_code_len(const char *text, apr_size_t len);
void chatbot_view_bot(chat_jw_t *jw, chatbot_srv_conf *sc, chatbot_bot_t *b);
void chatbot_view_bots(chat_jw_t *jw, chatbot_srv_conf *sc);
/* Writes the history members (conversation_id ... messages) into an open
 * object. Returns NULL or a CHAT_ERR_* code (nothing written on not_found). */
const char *chatbot_view_history(chat_jw_t *jw, const chatbot_ident_t *id,
                                 const char *conv_id, apr_int64_t limit,
                                 apr_int64_t offset, chat_buf_t *scratch);
/* The same with the port-8000 client's fields in every message: timestamp
 * (ISO 8601 UTC), bot_id (compat_id; "" = the session's own: its title if
 * that can be an old-style id, else its conversation id) and session_id.
 * compat_id NULL: none of them (chatbot_view_history). known: the
 * conversation as the caller has just read it (its owner's), or NULL to
 * read it here; each read is a round trip on a shared store. */
const char *chatbot_view_history_compat(chat_jw_t *jw, const chatbot_ident_t *id,
                                        const char *conv_id, apr_int64_t limit,
                                        apr_int64_t offset, chat_buf_t *scratch,
                                        const char *compat_id,
                                        const chat_conv_info_t *known);
/* Search of the identity's own conversations (mod_chatbot_search.c): writes
 * the members query, limit, searched, conversations, truncated and results
 * into an open object. limit <= 0: the default. Returns NULL, or a CHAT_ERR_*
 * code with *emsg the sentence for the user (nothing written then). */
const char *chatbot_view_search(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                                const char *query, const char *bot, apr_int64_t limit,
                                chat_buf_t *scratch, const char **emsg);
/* The health of a bot's backends: 1 one is up, 0 all are down, -1 unknown. */
int chatbot_view_bot_health(chatbot_bot_t *b);
/* Markdown (json=0) or JSON export of a conversation into out. */
const char *chatbot_view_export(request_rec *r, const chatbot_ident_t *id,
                                const char *conv_id, int json, chat_buf_t *out,
                                const char **filename);
/* The status board (mod_chatbot_status.c). details (ChatbotShowDetails):
 * also each backend's URL, server version and last health error, which are
 * for operators only. */
void chatbot_view_backends(chat_jw_t *jw, chatbot_srv_conf *sc, int details);
/* Members of the status board (backends, connections...) into an open object. */
void chatbot_view_status(chat_jw_t *jw, chatbot_srv_conf *sc, int details);
/* A backend's health (1, 0, -1) as "up", "down" or "unknown", and its
 * circuit breaker (CHAT_BREAKER_*) as "closed", "open" or "half-open". */
const char *chatbot_view_health_name(int healthy);
const char *chatbot_view_breaker_name(int breaker);

/* ---- the port-8000 controller's clients (mod_chatbot_compat.c) ------------ */

/* The caller's session an old-style bot id names: the one with that
 * conversation id, else the most recently used one titled so (running
 * before stopped, unarchived before archived). NULL or a CHAT_ERR_* code. */
const char *chatbot_compat_find(request_rec *r, const chatbot_ident_t *id,
                                const char *name, chat_conv_info_t *out);
/* The same, but only a running (not stopped, not archived) session; else
 * not_found with *msg "Bot <id> is not running". */
const char *chatbot_compat_running(request_rec *r, const chatbot_ident_t *id,
                                   const char *name, chat_conv_info_t *out,
                                   const char **msg);
/* 1 if an old-style route answers this error code with 200 and "success":
 * false (what happened), 0 if with its HTTP status (a request it cannot read). */
int chatbot_compat_outcome(const char *code);
/* GET /api/bots ({"bots":{<id>:{status,current_task,pid,port,...}}}) or, with
 * as_list, GET /api/bots/status ([{id,port,running,status,pid,...}]). */
void chatbot_compat_bots(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                         int as_list);
/* POST /api/bot/launch, POST /api/bot/stop/{id}, POST /api/chat/message
 * (role "user" or "assistant"; bot_id or session_id): NULL with the reply's
 * members written into jw's open object, or a CHAT_ERR_* code and *msg. */
const char *chatbot_compat_launch(chat_jw_t *jw, request_rec *r,
                                  const chatbot_ident_t *id, const char *name,
                                  const char *bot_type, const char **msg);
const char *chatbot_compat_stop(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                                const char *name, const char **msg);
const char *chatbot_compat_store_message(chat_jw_t *jw, request_rec *r,
                                         const chatbot_ident_t *id, const char *role,
                                         const char *content, apr_size_t len,
                                         const char *bot_id, const char *session_id,
                                         const char **msg);
/* The WebSocket "command" frame {"type":"command","bot_id","command"}: points
 * cm at the running session bot_id names (or leaves a declared bot's name
 * for the message path) and writes {"type":"typing"} into frame; or returns
 * a CHAT_ERR_* code and *msg (allocated from p). */
const char *chatbot_compat_ws_command(request_rec *r, const chatbot_ident_t *id,
                                      chat_cmsg_t *cm, apr_pool_t *p, chat_buf_t *frame,
                                      const char **msg);
/* Adds "success":false and "error":<msg> to the error frame in frame, as the
 * old client tells failures (on connections that sent a "command" frame). */
void chatbot_compat_error_frame(chat_buf_t *frame, const char *msg);

/* ---- commands (mod_chatbot_exec_entry.c) ------------------------------------ */

/* Runs a command for the WebSocket and writes the command_result or error
 * frame into frame. args == NULL: command is a chat line "!name args" of
 * nargs bytes; otherwise command is the name and args[0..nargs) the
 * arguments. */
int chatbot_exec_ws(request_rec *r, const chatbot_ident_t *id, chatbot_bot_t *bot,
                    const char *conv_id, const char *command, const char *const *args,
                    apr_size_t nargs, chat_buf_t *frame);
/* POST /api/execute: body is the parsed JSON body (a json_object, or NULL);
 * writes the reply into out and its HTTP status into *status. */
int chatbot_exec_api(request_rec *r, const chatbot_ident_t *id, void *body,
                     const chatbot_limits_t *lim, chat_buf_t *out, int *status);

/* The HTTP status of an error code (CHAT_ERR_*) in REST replies
 * (mod_chatbot_error_status.c). */
int chatbot_error_status(const char *code);

/* ---- handlers -------------------------------------------------------------------- */

int chatbot_ws_handler(request_rec *r); /* mod_chatbot_ws_handshake.c */
/* 1 if a request with this Origin header (NULL: none) may open a WebSocket
 * or change state over REST (ChatbotAllowedOrigins).
 * mod_chatbot_ws_handshake.c */
int chatbot_origin_allowed(request_rec *r, const char *origin);
int chatbot_api_handler(request_rec *r, const char *route); /* mod_chatbot_api.c */
int chatbot_metrics_handler(request_rec *r);                /* mod_chatbot_status.c */
void chatbot_status_register(apr_pool_t *p);                /* mod_status hook */

/* ---- the WebSocket connection model (mod_chatbot_ws_watch.c) ------------- */

void chatbot_ws_register(apr_pool_t *p);
apr_status_t chatbot_ws_post_config(apr_pool_t *pconf, server_rec *s);
void chatbot_ws_child_init(apr_pool_t *p, server_rec *s);
void chatbot_ws_child_stopping(int graceful);
/* Summed over the live children. */
typedef struct {
    apr_int64_t parked;   /* idle, in the event MPM: no thread */
    apr_int64_t active;   /* streaming or following an answer: a worker held */
    apr_int64_t waiting;  /* a turn waits for a worker (ChatbotMaxWorkers) */
    apr_int64_t blocking; /* hold a thread for their whole life (HTTP/2, MPMs
                           * that cannot park) */
    int workers_max;      /* ChatbotMaxWorkers in effect (per child) */
    int can_park;
} chatbot_ws_counts_t;
void chatbot_ws_counts(chatbot_ws_counts_t *out);
/* A REST turn holds its request's thread for the whole answer: it takes a
 * place in the same worker budget as the WebSockets (ChatbotMaxWorkers) and
 * in its address's ChatbotMaxAnswersPerIP, never ahead of the turns queued
 * for a worker. It does not wait: 0 means no place (the caller answers 503
 * server_busy); 1 means held until r->pool is cleared. */
int chatbot_workers_take_request(request_rec *r);

#endif /* MOD_CHATBOT_H */
