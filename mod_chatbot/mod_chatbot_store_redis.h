/* mod_chatbot_store_redis.h - internals shared by the redis store
 * provider's files: mod_chatbot_store_redis.c (connections, pool,
 * provider glue), _sub.c (the subscriber thread and its channels),
 * mod_chatbot_store_redis_ops.c (the chat_store_provider_t table,
 * conversations and users), _args.c (small helpers), _msg.c (messages),
 * _turn.c (turns and generations), _backend.c, _titled.c and _lua.c (the
 * Lua scripts).
 */
#ifndef MOD_CHATBOT_STORE_REDIS_H
#define MOD_CHATBOT_STORE_REDIS_H

#include <hiredis/hiredis.h>

#include "apr_thread_mutex.h"
#include "apr_thread_cond.h"
#include "apr_thread_proc.h"

#include "mod_chatbot.h"

#define RS_POOL_MAX 16    /* connections per child */
#define RS_SEQ_SLOTS 4096 /* local change counters (hashed) */
/* lists a turn's script read for the next tab (hashed places), and how
 * lately the owner's list must have been read for a turn to read it */
#define RS_LISTS 64
#define RS_LIST_WANT_MS 60000
#define RS_BACKOFF_MIN_MS 100 /* reconnect backoff, doubling */
#define RS_BACKOFF_MAX_MS 5000
#define RS_PREFIX "chatbot:"      /* every key and the channel */
#define RS_CHANNEL RS_PREFIX "ev" /* for every child: "b:<backend>" */
/* A change's channel is its shard's: RS_CHANNEL ":" and the first three
 * hex digits of the owner's identity ("u:") or the conversation's id ("c:",
 * "s:"), so that each child hears only the shards that a connection of its
 * own watches (chat_store_watch) or that it generates in. A shard's number
 * is its local counters' slot (RS_SEQ_SLOTS = 16^3). */
#define RS_SHARD_LINGER_MS 30000 /* unwatched this long: unsubscribed */
#define RS_GEN_WANT_MS 5000      /* a generation's stop channel, since it last asked */
#define RS_SUB_BATCH 256         /* channels per SUBSCRIBE / UNSUBSCRIBE */
#define RS_SUB_WAIT_MS 200       /* a new tab waits this long for its channel */
#define RS_STOP_RECHECK_MS 1000
#define RS_PEND_MAX 64               /* stop flags re-read even without news */
#define RS_GEN_LEASE_MS (600 * 1000) /* a generation silent this long is dead */
#define RS_OWED_MAX 8                /* replies a pooled connection may owe */

/* A pooled connection, with the replies it still owes: commands whose
 * answer nobody waits for (a slot's release, a generation's state, a
 * list's news) are sent at once and their replies read at the
 * connection's next use, in the same round trip as that use's own
 * command (rs_command_nowait). What they were is kept, to send them again
 * if redis answers NOSCRIPT (its scripts were flushed). */
typedef struct {
    redisContext *c;
    int owed;
    char *cmd[RS_OWED_MAX]; /* the owed commands, formatted (hiredis) */
    size_t len[RS_OWED_MAX];
} rs_conn_t;

typedef enum {
    RS_LUA_CREATE = 0,
    RS_LUA_GET,
    RS_LUA_LIST,
    RS_LUA_UPDATE, /* rename, flags */
    RS_LUA_DELETE,
    RS_LUA_GEN,    /* begin / state / end / stop */
    RS_LUA_APPEND, /* append and extend */
    RS_LUA_MFLAGS,
    RS_LUA_TRUNC,
    RS_LUA_READ,
    RS_LUA_BUCKET,
    RS_LUA_SWEEP,
    RS_LUA_TURN,    /* a turn's start and finish */
    RS_LUA_BACKEND, /* slots, queue, breaker, health */
    RS_LUA_TITLED,  /* conv_find_or_create */
    RS_LUA_META,    /* a conversation's settings blob: get / set */
    RS_LUA_BRANCH,  /* versions: append under a parent */
    RS_LUA_VSELECT, /* versions: choose one */
    RS_LUA_VREAD,   /* read, with each message's parent */
    RS_LUA_VTAIL,   /* a linear conversation's context, from its end */
    RS_LUA_COUNT
} rs_lua_t;

typedef chatbot_store_stats_t rs_stats_t;

/* Backends with the store on redis (mod_chatbot_store_redis_backend.c). */
#define RS_BK_MAX 64             /* backends (the local table's index) */
#define RS_WAITS 256             /* tickets of this child in a line */
#define RS_HOLDER_TTL_MS 5000    /* a holder silent this long loses its slot */
#define RS_WAITER_STALE_MS 10000 /* a waiter silent this long leaves the line */
#define RS_QUEUE_POLL_MS 1000    /* a waiter asks redis at least this often */
#define RS_BREAKER_FRESH_MS 1000 /* cached breaker / health state */
#define RS_INFO_FRESH_MS 250     /* cached backend_get (session lists ask per row) */
#define RS_PROBE_FRESH_MS 1000   /* whether redis takes writes (chatbot_store_ping) */
typedef struct {
    apr_uint64_t ticket; /* 0: free */
    apr_uint64_t asked_ms;
    apr_uint32_t wake; /* rs->bk_wake when asked */
    apr_int32_t pos;
} rs_wait_t;
typedef struct {
    struct {
        int breaker;
        apr_uint32_t failures;
        apr_uint64_t seen_ms; /* when breaker/failures were read */
        int healthy;
        apr_uint64_t health_ms;   /* last report written */
        apr_uint32_t health_news; /* rs->health_news when it was written */
        chat_backend_info_t info; /* backend_get's last answer (under mu) */
        apr_uint64_t info_ms;
        apr_uint32_t info_news; /* rs->health_news when it was asked */
        int info_busy;          /* a thread is asking redis for it (under mu) */
    } b[RS_BK_MAX];
    rs_wait_t wait[RS_WAITS]; /* under rs->mu */
} rs_bk_t;

typedef struct rs_store {
    chat_store_head_t head; /* first: the handle is a chat_store_t */
    chat_store_t *local;    /* this host's shm store: processes, backends, metrics */
    chat_storeurl_t url;
    chat_store_layout_t layout;
    chat_store_policy_t policy;
    apr_uint64_t ttl_ms; /* idle conversations older than this go (0: never) */
    int timeout_ms;      /* connect and command */
    char sha[RS_LUA_COUNT][41];
    /* each script as a redis function (redis 7): its library's code
     * (rs_lua_split) and the name of both, chatbot_<sha> */
    const char *lib[RS_LUA_COUNT];
    char fn[RS_LUA_COUNT][49];
    apr_uint32_t fcall; /* 1: this child's last load made them functions (FCALL);
                         * 0: scripts (EVALSHA: redis before 7, or an ACL
                         * without FUNCTION) */
    /* the pool (per process: reset in each child) */
    apr_thread_mutex_t *mu;
    apr_thread_cond_t *cv;
    rs_conn_t *idle[RS_POOL_MAX];
    int nidle, nconns;
    apr_uint64_t retry_at_ms;    /* no new connection before (backoff) */
    apr_uint32_t scripts_loaded; /* a connection loaded the scripts since redis
                                  * was last seen down (note_down clears it) */
    int backoff_ms;
    rs_stats_t stats;
    /* news from the channel (subscriber thread), read lock-free */
    apr_uint32_t epoch; /* bumped when the subscription (re)starts */
    apr_uint32_t events;
    apr_uint32_t user_seq[RS_SEQ_SLOTS];
    apr_uint32_t conv_seq[RS_SEQ_SLOTS];
    apr_uint32_t stop_hint[RS_SEQ_SLOTS];
    apr_uint64_t stop_checked[RS_SEQ_SLOTS];
    /* which shards this child listens to (rs_watch, mod_chatbot_store_redis_sub.c):
     * want counts the tabs and followers watching (atomic), gen_ms is when a
     * generation here last asked (ms, low 32 bits), subd is the subscriber's
     * state (0 none, 2 asked, 1 confirmed: only then are the shard's
     * counters exact), idle_ms when it saw the shard unwanted (its own) */
    apr_uint32_t want[RS_SEQ_SLOTS];
    apr_uint32_t gen_ms[RS_SEQ_SLOTS];
    apr_uint32_t subd[RS_SEQ_SLOTS];
    apr_uint32_t idle_ms[RS_SEQ_SLOTS];
    int wake_fd[2];             /* a pipe: a shard is wanted that is not subscribed */
    apr_uint32_t sub_up;        /* the subscriber is connected */
    int sub_refused;            /* a SUBSCRIBE was refused (logged once) */
    apr_thread_mutex_t *sub_mu; /* with sub_cv: a tab waiting for its channel */
    apr_thread_cond_t *sub_cv;
    /* generations this child could not end while redis was away: ended
     * (answer marked interrupted) when the subscriber is back (under mu) */
    struct {
        char id[CHAT_CONV_ID_LEN + 1];
        apr_uint64_t token;
    } pend[RS_PEND_MAX];
    int npend;
    /* this child's tag in the "u:<o>@<tag>" messages it publishes after
     * counting the change itself: its subscriber skips them */
    char origin[17];
    apr_thread_t *sub;
    volatile int sub_exit;
    apr_uint32_t bk_wake;     /* "b:" messages heard (a slot or a place freed) */
    apr_uint32_t health_news; /* "h:" messages heard (a backend's health changed) */
    rs_bk_t *bk;
    /* an owner's list as a turn's script read it right after its change,
     * taken by the next list read while the owner's counter has not moved
     * since (no other change: the same answer redis would give; under mu) */
    struct {
        char hex[41];
        apr_uint32_t seq;
        redisReply *r;
    } list[RS_LISTS];
    apr_uint64_t listed_ms[RS_LISTS]; /* an owner's list last read (hashed) */
    /* whether redis takes writes, as the last probe found (chatbot_store_ping;
     * under mu): when, its verdict, and a thread asking now */
    apr_uint64_t probe_ms;
    int probe_refused;
    int probe_busy;
} rs_store_t;

/* The Lua scripts' bodies (mod_chatbot_store_redis_lua.c). */
extern const char *const rs_lua_body[RS_LUA_COUNT];
extern const chat_store_provider_t rs_provider;

/* Runs a command (argv, lens) on a pooled connection within the timeout;
 * NULL if redis is unreachable, timed out or the pool stayed busy (the
 * error is counted and logged once per outage). */
redisReply *rs_command(rs_store_t *rs, int argc, const char **argv, const size_t *lens);
/* Script i called (FCALL, or EVALSHA) with no keys and the given
 * arguments (the prefix is added as ARGV[1]), loading it again if redis
 * lost it (mod_chatbot_store_redis_call.c). */
redisReply *rs_eval(rs_store_t *rs, rs_lua_t i, int argc, const char **argv,
                    const size_t *lens);
/* As rs_command and rs_eval for a command whose reply nobody reads: it is
 * sent (written to redis) before the call returns, on a pooled connection
 * that reads the reply at its next use (an error reply is then logged and
 * counted). 0 if sent, -1 if redis is unreachable (counted as a failure).
 * Two commands sent this way from one thread may run in either order if
 * the pool hands out two connections; a command whose reply is read waits
 * for every earlier one of its connection. */
int rs_command_nowait(rs_store_t *rs, int argc, const char **argv, const size_t *lens);
int rs_eval_nowait(rs_store_t *rs, rs_lua_t i, int argc, const char **argv,
                   const size_t *lens);

apr_uint32_t rs_hash(const void *data, size_t len);
/* A new connection to the store's redis (timeouts set, authenticated, db
 * selected), or NULL with err set; and a command on it whose reply must
 * not be an error (0, or -1 with err set). */
redisContext *rs_connect(rs_store_t *rs, char *err, size_t errlen, int scripts);
int rs_setup_cmd(redisContext *c, char *err, size_t errlen, int argc, const char **argv);
/* The scripts' names and libraries, made once (rs_init); all of them
 * loaded on connection c, as functions if redis takes them, else as
 * scripts (rs->fcall says which): 0, or -1 with err set; and whether an
 * error reply says that redis lost the script called (1 its script cache,
 * 2 its functions, 0 another error). */
void rs_lua_prepare(rs_store_t *rs, apr_pool_t *p);
int rs_load_scripts(rs_store_t *rs, redisContext *c, char *err, size_t errlen);
int rs_lost(const char *e);
/* Whether an error reply is redis refusing to serve now rather than a
 * fault of the call: over its maxmemory (OOM), a failed snapshot
 * (MISCONF), a read-only replica (READONLY), loading its data (LOADING),
 * busy with a script (BUSY), a missing permission (NOPERM, NOAUTH), no
 * primary or too few replicas (MASTERDOWN, NOREPLICAS). rs_eval counts such
 * a reply as a failed call (chatbot_store_failures: a REST answer is then
 * 503 store_unavailable) and status_of reads it as CHAT_EUNAVAIL. */
int rs_refused(const char *e);
/* A failed call of this thread (chatbot_store_failures). */
void rs_failed(void);
/* The subscriber thread of a child (mod_chatbot_store_redis_sub.c), and
 * what it listens to: rs_watch counts a tab's (owner hex) or a follower's
 * (conversation id) interest in key's shard; rs_watch_gen marks a
 * generation's conversation (for its stop) until RS_GEN_WANT_MS after its
 * last call; rs_heard says whether the shard's counters are exact (its
 * channel confirmed). rs_sub_open / rs_sub_close: the pipe and lock that
 * rs_watch and the thread share (per child). */
void *APR_THREAD_FUNC rs_sub_main(apr_thread_t *thd, void *data);
void rs_watch(rs_store_t *rs, const char *key, size_t n, int on, int wait);
void rs_watch_gen(rs_store_t *rs, const char *id);
int rs_heard(rs_store_t *rs, apr_uint32_t slot);
apr_status_t rs_sub_open(rs_store_t *rs, apr_pool_t *p);
void rs_sub_close(rs_store_t *rs);
/* The list cache (mod_chatbot_store_redis_ops.c): whether a turn of owner
 * hex should read its list for the next tab (listed in this child
 * lately); keep: list r (taken; NULL or invalid: dropped) read by the
 * script that made the change counted at seq, kept only if the counter
 * was s0 before that change (nothing else moved it); take: the list if the
 * counter is still there (the caller frees it), else NULL; clear: all. */
int rs_list_wanted(rs_store_t *rs, const char *hex);
void rs_list_keep(rs_store_t *rs, const char *hex, apr_uint32_t s0, apr_uint32_t seq,
                  redisReply *r);
void rs_list_clear(rs_store_t *rs);

/* Ends the generations left pending by an outage (subscriber thread). */
void rs_flush_pending(rs_store_t *rs);
/* Remembers a generation this child could not end (redis away) and forgets
 * its stop hint (mod_chatbot_store_redis_ops.c). */
void rs_gen_ended(rs_store_t *rs, const char *id, apr_uint64_t token, int unreachable);

/* A turn's context read by its start's script (lua_turn op s with
 * chat_turn_acquire_t ctx_msgs), kept for this thread's next
 * chat_store_msg_tail_meta of the same conversation, owner and limits
 * (mod_chatbot_store_redis_msg.c): keep takes r (lua_vtail's reply with
 * the settings blob last, or {1}); any other command this thread sends
 * first drops it (rs_command), so it is only ever the answer redis would
 * have given to that call in the start's place. */
#define RS_TAIL_SKIP (CHAT_MSG_ERROR | CHAT_MSG_REFUSED) /* not in a context */
void rs_ctx_keep(const char *hex, const char *id, uint32_t max_msgs, size_t max_bytes,
                 redisReply *r);
void rs_ctx_drop(void);

/* Script arguments and replies (mod_chatbot_store_redis_ops.c). */
typedef struct {
    const char *v[32];
    size_t l[32];
    char num[32][24];
    int n;
} rs_args_t;
void arg_mem(rs_args_t *a, const char *s, size_t len);
void arg_str(rs_args_t *a, const char *s);
void arg_u64(rs_args_t *a, unsigned long long v);
void owner_hex(const chat_owner_t *o, char out[41]);
int valid_id(const char *id);
long long rint_(const redisReply *r);
/* A string reply copied into dst (cap bytes, cut, always terminated; '' if
 * not a string). */
void rs_rcopy(char *dst, size_t cap, const redisReply *r);
chat_status_t status_of(const redisReply *r);
/* A reply not of the shape asked for: an error reply's status (a refusal
 * is CHAT_EUNAVAIL, status_of), any other CHAT_EINTERNAL. */
chat_status_t rs_unexpected(const redisReply *r);
const chat_quota_t *quota_of(chat_store_t *st, const chat_owner_t *owner);
long long rs_evictions(rs_store_t *rs, const redisReply *e);
chat_status_t bucket(chat_store_t *st, const char *kind, const chat_owner_t *owner,
                     const chat_rate_t *rate, int take, int64_t *wait);
#define RS_NFIELDS 13 /* a conversation's fields in a script's reply */
void conv_of(chat_conv_info_t *c, const char *id, redisReply **e);
chat_status_t rs_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title, uint32_t flags,
                                     uint64_t tag, uint64_t now_ms, chat_conv_info_t *out,
                                     int *created);

/* Where a script's helpers end and what one call does begins: a redis
 * function runs only what follows it per call (rs_lua_split). */
#define RS_LUA_MAIN_MARK "--[[main]]\n"
#define RS_LUA_MAIN_RO_MARK "--[[main ro]]\n" /* a script that only reads */

extern const char rs_lua_backend[];
/* bk_acquire(name, now, ticket, limit, queue_cap, holder_ttl, waiter_stale)
 * -> {status, position, breaker, failures, reaped}: a backend slot, or a
 * place in its line (now: redis's clock, ms). Defined after P; used by
 * rs_lua_backend (op a) and by lua_turn (a turn's start takes its slot in
 * the same script). */
#define RS_LUA_BK_ACQUIRE                                                                \
    "local function bk_acquire(name, now, tk, lim, cap, ttl, wst)\n"                     \
    "  local K, H, Q = P..'bk:'..name, P..'bh:'..name, P..'bq:'..name\n"                 \
    "  local W, S = P..'bw:'..name, P..'bs:'..name\n"                                    \
    "  local n = redis.call('ZREMRANGEBYSCORE', H, '-inf', now)\n"                       \
    "  for _, w in ipairs(redis.call('ZRANGEBYSCORE', W, '-inf', now - wst)) do\n"       \
    "    redis.call('ZREM', Q, w)\n"                                                     \
    "    redis.call('ZREM', W, w)\n"                                                     \
    "  end\n"                                                                            \
    "  local v = redis.call('HMGET', K, 'br', 'fl')\n"                                   \
    "  local b, f = tonumber(v[1] or '0'), tonumber(v[2] or '0')\n"                      \
    "  if redis.call('ZSCORE', H, tk) then\n"                                            \
    "    redis.call('ZADD', H, now + ttl, tk)\n"                                         \
    "    return {0, 0, b, f, n}\n"                                                       \
    "  end\n"                                                                            \
    "  local nfree = math.max(0, lim - redis.call('ZCARD', H))\n"                        \
    "  local rank = redis.call('ZRANK', Q, tk)\n"                                        \
    "  local qn = redis.call('ZCARD', Q)\n"                                              \
    "  if rank then\n"                                                                   \
    "    if rank >= nfree then\n"                                                        \
    "      redis.call('ZADD', W, now, tk)\n"                                             \
    "      return {-1, rank + 1, b, f, n}\n"                                             \
    "    end\n"                                                                          \
    "    redis.call('ZREM', Q, tk)\n"                                                    \
    "    redis.call('ZREM', W, tk)\n" /* the others move up */                           \
    "    if redis.call('ZCARD', Q) > 0 then redis.call('PUBLISH', P..'ev', "             \
    "'b:'..name) end\n"                                                                  \
    "  elseif qn >= nfree then\n"                                                        \
    "    if qn >= cap then return {-41, 0, b, f, n} end\n"                               \
    "    redis.call('ZADD', Q, redis.call('INCR', S), tk)\n"                             \
    "    redis.call('ZADD', W, now, tk)\n"                                               \
    "    return {-1, qn + 1, b, f, n}\n"                                                 \
    "  end\n"                                                                            \
    "  redis.call('ZADD', H, now + ttl, tk)\n"                                           \
    "  return {0, 0, b, f, n}\n"                                                         \
    "end\n"
/* bk_leave(name, ticket, release): the ticket leaves the line (and with
 * release its slot); a waiter left in line is woken ("b:<name>" on the
 * channel every child hears; only waiters listen to it, so with none in
 * line nothing is published). Defined after P; used by rs_lua_backend
 * (ops c and r) and by lua_turn (a turn's finish gives its slot back in
 * the same script). */
#define RS_LUA_BK_LEAVE                                                                  \
    "local function bk_leave(name, tk, release)\n"                                       \
    "  local Q = P..'bq:'..name\n"                                                       \
    "  local x = redis.call('ZREM', Q, tk)\n"                                            \
    "  redis.call('ZREM', P..'bw:'..name, tk)\n"                                         \
    "  if release then x = x + redis.call('ZREM', P..'bh:'..name, tk) end\n"             \
    "  if x > 0 and redis.call('ZCARD', Q) > 0 then\n"                                   \
    "    redis.call('PUBLISH', P..'ev', 'b:'..name)\n"                                   \
    "  end\n"                                                                            \
    "end\n"
/* The acquire's arguments (name ticket limit queue_cap holder_ttl
 * waiter_stale) for backend idx into a (-1 if idx is not a backend); the
 * name is bi's, which must outlive the call. */
int rs_backend_acq_args(rs_store_t *rs, int idx, uint64_t ticket, rs_args_t *a,
                        chat_backend_info_t *bi);
/* What an acquire's reply (r: the 5 elements from el) tells: the breaker
 * and failures this child caches, slots reclaimed (logged), the waiter's
 * place; -> the acquire's status. */
chat_status_t rs_backend_acq_reply(rs_store_t *rs, int idx, const char *name,
                                   uint64_t ticket, uint64_t now_ms, apr_uint32_t wake,
                                   redisReply *const *el, int32_t *position);
chat_status_t rs_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                 uint64_t now_ms, int32_t *position);
void rs_backend_cancel(chat_store_t *st, int idx, uint64_t ticket);
void rs_backend_release(chat_store_t *st, int idx, uint64_t ticket);
/* A release that goes with a turn's finish (lua_turn op f): this child's
 * own part of it done here; 0 with bi filled (its name for the script),
 * -1 if redis has nothing to give back. */
int rs_backend_release_local(chat_store_t *st, int idx, uint64_t ticket,
                             chat_backend_info_t *bi);
/* The release of a slot in redis alone, sent without waiting (a finish
 * whose script may not have run). */
void rs_backend_release_send(rs_store_t *rs, const char *name, uint64_t ticket);
void rs_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms);
int rs_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms, uint64_t cooldown_ms);
void rs_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                       uint32_t threshold, uint64_t cooldown_ms);
void rs_backend_health(chat_store_t *st, int idx, int healthy, const char *version,
                       const char *detail, uint64_t now_ms);
chat_status_t rs_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out);

/* Helpers of the operations (mod_chatbot_store_redis_ops.c). */
void arg_i64(rs_args_t *a, long long v);
int arg_owner_id(rs_args_t *a, char hex[41], const chat_owner_t *owner, const char *id);
/* The limits the appending scripts take: max messages, max message bytes,
 * history bytes, the owner's quota of bytes, auth "1"/"0". */
void arg_limits(chat_store_t *st, rs_args_t *a, const chat_owner_t *owner);
/* EVALSHA of script i with a's arguments; the status of a reply, freed. */
redisReply *rs_run(chat_store_t *st, rs_lua_t i, rs_args_t *a);
chat_status_t rs_done(redisReply *r);
/* The change counter slot of an id or owner's hex: the value of its
 * first three hex digits, its channel's shard (rs_hash for anything else). */
apr_uint32_t rs_slot(const char *s, size_t n);

/* Messages (mod_chatbot_store_redis_msg.c): chat_store_provider_t msg_*. */
chat_status_t rs_msg_append(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            chat_role_t role, uint32_t flags, const char *text,
                            size_t len, uint64_t now_ms, uint32_t *index_out);
chat_status_t rs_msg_extend(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            const char *text, size_t len, uint64_t now_ms);
chat_status_t rs_msg_flags(chat_store_t *st, const chat_owner_t *owner, const char *id,
                           uint32_t set, uint32_t clear, uint64_t now_ms);
chat_status_t rs_msg_truncate(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              uint32_t keep, uint64_t now_ms);
int rs_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                void *baton);
int rs_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                uint32_t max_msgs, size_t max_bytes, chat_buf_t *text, chat_msg_cb *cb,
                void *baton);
/* rs_msg_tail with the settings blob appended to meta (lua_vtail reads it
 * too): chat_store_msg_tail_meta. */
int rs_msg_tail_meta(chat_store_t *st, const chat_owner_t *owner, const char *id,
                     uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                     chat_msg_cb *cb, void *baton, chat_buf_t *meta);
/* The settings blob appended to meta, nothing if none or on error. */
void rs_meta_into(chat_store_t *st, const chat_owner_t *owner, const char *id,
                  chat_buf_t *meta);
chat_status_t rs_msg_branch(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint32_t parent, chat_role_t role, uint32_t flags,
                            const char *text, size_t len, uint64_t now_ms,
                            uint32_t *index_out);
chat_status_t rs_msg_select(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint32_t index, uint64_t now_ms);
chat_status_t rs_msg_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                         uint32_t index, size_t offset, chat_buf_t *text,
                         chat_msg_info_t *info);

/* A turn's start and finish in one round trip, and the generations' steps
 * (mod_chatbot_store_redis_turn.c). Status, evictions counted and the
 * message's index of a reply {status, evicted, index} (freed). */
chat_status_t rs_index_reply(rs_store_t *rs, redisReply *r, uint32_t *index_out);
chat_status_t rs_gen_begin(chat_store_t *st, const chat_owner_t *owner, const char *id,
                           uint64_t token, uint32_t state, uint64_t now_ms);
chat_status_t rs_gen_state(chat_store_t *st, const char *id, uint64_t token,
                           uint32_t state, int32_t queue_position);
chat_status_t rs_gen_end(chat_store_t *st, const char *id, uint64_t token,
                         uint64_t now_ms);
chat_status_t rs_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id);
int rs_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token);
uint64_t rs_conv_seq(chat_store_t *st, const char *id);
chat_status_t rs_turn_start_acquire(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint64_t token, uint32_t state,
                                    const char *text, size_t len, uint32_t flags,
                                    uint64_t now_ms, uint32_t *index_out,
                                    chat_turn_acquire_t *acq);
chat_status_t rs_turn_start_bot(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *bot, uint64_t token,
                                uint32_t state, const char *text, size_t len,
                                uint32_t flags, uint64_t now_ms, uint32_t *index_out,
                                chat_turn_acquire_t *acq);
chat_status_t rs_turn_start(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint64_t token, uint32_t state, const char *text, size_t len,
                            uint32_t flags, uint64_t now_ms, uint32_t *index_out);
chat_status_t rs_turn_finish(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint64_t token, uint32_t answer_set, const char *err,
                             size_t err_len, uint64_t now_ms);
chat_status_t rs_turn_finish_release(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, uint64_t token,
                                     chat_turn_text_t *ans, uint32_t answer_set,
                                     const char *err, size_t err_len, uint64_t now_ms,
                                     const chat_turn_release_t *rel);
chat_status_t rs_turn_finish_text(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint64_t token, chat_turn_text_t *ans,
                                  uint32_t answer_set, const char *err, size_t err_len,
                                  uint64_t now_ms);

/* Leaves the store in this process: the pool and the subscriber go
 * (mod_chatbot_store_redis.c; the provider's detach). */
void rs_detach(chat_store_t *st);

#endif
