/* mod_chatbot_store_redis.c - the "redis" store provider's glue: where the
 * store is (ChatbotStore redis://... or unix:...), a small pool of
 * connections per child with a timeout on every call and reconnection
 * with backoff, and the health/latency figures for /api/health,
 * mod_status and /metrics. The subscriber thread that turns the store's
 * change channel into the local counters the WebSocket watcher reads is in
 * mod_chatbot_store_redis_sub.c.
 *
 * Written after httpd's own mod_socache_redis (a provider that keeps no
 * state but in redis, with timeouts on every call) and hiredis's
 * synchronous API. The operations themselves (Lua scripts, so that every
 * change is atomic across hosts) are in mod_chatbot_store_redis_ops.c
 * (with _msg.c and _turn.c);
 * the key patterns are documented there and in docs/storage.md.
 *
 * What is per host stays in this host's shared memory (the "shm" provider,
 * kept as rs->local): the process table and the metric counters (each host
 * is scraped on its own); backend slots, the waiting line, health and the
 * breaker are shared on redis (mod_chatbot_store_redis_backend.c).
 *
 * Nothing blocks a worker for long: a connection is made with a timeout,
 * every command has one (SO_RCVTIMEO/SO_SNDTIMEO through redisSetTimeout),
 * a call that finds the pool busy waits at most that long, and after a
 * failure no new connection is tried before the backoff (100 ms doubling
 * to 5 s) ends: calls then fail at once with CHAT_EUNAVAIL, which the
 * module reports as `store_unavailable`.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_atomic.h"
#include "apr_general.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

static apr_uint64_t now_us(void)
{
    return (apr_uint64_t)apr_time_now();
}

apr_uint32_t rs_hash(const void *data, size_t len)
{
    const unsigned char *p = data;
    apr_uint32_t h = 2166136261u;
    size_t i;

    for (i = 0; i < len; i++) {
        h = (h ^ p[i]) * 16777619u;
    }
    return h;
}

/* ---- connections ---------------------------------------------------------- */

static struct timeval tv_ms(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* One command on a fresh connection; 0 if it replied without error. */
int rs_setup_cmd(redisContext *c, char *err, size_t errlen, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    int ok = r && r->type != REDIS_REPLY_ERROR;

    if (!ok) {
        apr_snprintf(err, errlen, "%s: %s", argv[0],
                     r ? r->str : (c->errstr[0] ? c->errstr : "no reply"));
    }
    if (r) {
        freeReplyObject(r);
    }
    return ok ? 0 : -1;
}

/* A new connection, authenticated and on the right database, with the
 * scripts loaded if scripts and none of this child's connections has
 * since redis was last down; NULL with err set if redis cannot be
 * reached within the timeout. */
redisContext *rs_connect(rs_store_t *rs, char *err, size_t errlen, int scripts)
{
    struct timeval tv = tv_ms(rs->timeout_ms);
    redisContext *c;

    if (rs->url.kind == CHAT_STOREURL_UNIX) {
        c = redisConnectUnixWithTimeout(rs->url.path, tv);
    }
    else {
        c = redisConnectWithTimeout(rs->url.host, rs->url.port, tv);
    }
    if (!c || c->err) {
        apr_snprintf(err, errlen, "connect: %s", c ? c->errstr : "out of memory");
        if (c) {
            redisFree(c);
        }
        return NULL;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        apr_snprintf(err, errlen, "cannot set the command timeout");
        redisFree(c);
        return NULL;
    }
    if (rs->url.kind == CHAT_STOREURL_TCP) {
        redisEnableKeepAlive(c);
    }
    if (rs->url.password[0]) {
        const char *a3[3] = {"AUTH", rs->url.user, rs->url.password};
        const char *a2[2] = {"AUTH", rs->url.password};
        if (rs->url.user[0] ? rs_setup_cmd(c, err, errlen, 3, a3)
                            : rs_setup_cmd(c, err, errlen, 2, a2)) {
            redisFree(c);
            return NULL;
        }
    }
    if (rs->url.db) {
        char db[16];
        const char *a[2] = {"SELECT", db};
        apr_snprintf(db, sizeof(db), "%d", rs->url.db);
        if (rs_setup_cmd(c, err, errlen, 2, a)) {
            redisFree(c);
            return NULL;
        }
    }
    if (scripts && !apr_atomic_read32(&rs->scripts_loaded)) {
        if (rs_load_scripts(rs, c, err, errlen)) {
            redisFree(c);
            return NULL;
        }
        apr_atomic_set32(&rs->scripts_loaded, 1);
    }
    return c;
}

static void conn_free(rs_conn_t *x)
{
    int k;

    for (k = 0; k < x->owed; k++) {
        redisFreeCommand(x->cmd[k]);
    }
    redisFree(x->c);
    free(x);
}

/* An outage starts (logged once) or goes on; backoff doubles. The idle
 * connections go too (under rs->mu): they lead to the redis that just
 * failed, and a redis that hangs (stopped, overloaded, a dead network
 * path) would cost one full timeout per pooled connection before the
 * backoff could answer at once - a turn makes a dozen calls. */
static void note_down(rs_store_t *rs, const char *why)
{
    apr_uint64_t now = chatbot_now_ms();
    int was_up = rs->stats.up;

    while (rs->nidle) {
        conn_free(rs->idle[--rs->nidle]);
        rs->nconns--;
    }

    apr_atomic_set32(&rs->scripts_loaded, 0);
    rs->stats.up = 0;
    rs->stats.errors++;
    apr_cpystrn(rs->stats.last_error, why, sizeof(rs->stats.last_error));
    rs->backoff_ms = rs->backoff_ms ? rs->backoff_ms * 2 : RS_BACKOFF_MIN_MS;
    if (rs->backoff_ms > RS_BACKOFF_MAX_MS) {
        rs->backoff_ms = RS_BACKOFF_MAX_MS;
    }
    rs->retry_at_ms = now + (apr_uint64_t)rs->backoff_ms;
    if (was_up) {
        rs->stats.down_since_ms = now;
        ap_log_error(
            APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
            APLOGNO(10960) "chatbot: the redis store is unavailable (%s); retrying with "
                           "backoff",
            why);
    }
}

static void note_up(rs_store_t *rs)
{
    if (!rs->stats.up) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                     APLOGNO(10961) "chatbot: the redis store is reachable again");
    }
    rs->stats.up = 1;
    rs->backoff_ms = 0;
    rs->retry_at_ms = 0;
}

/* A connection from the pool, or a new one; NULL if none within the
 * timeout, or while the backoff runs. */
static rs_conn_t *pool_get(rs_store_t *rs)
{
    rs_conn_t *x = NULL;
    redisContext *c;
    char err[128];
    apr_time_t until = apr_time_now() + apr_time_from_msec(rs->timeout_ms);

    if (!rs->mu) {
        return NULL;
    }
    apr_thread_mutex_lock(rs->mu);
    while (!rs->nidle && rs->nconns >= RS_POOL_MAX) {
        apr_time_t left = until - apr_time_now();
        if (left <= 0) {
            rs->stats.errors++;
            apr_cpystrn(rs->stats.last_error, "all pooled connections busy",
                        sizeof(rs->stats.last_error));
            apr_thread_mutex_unlock(rs->mu);
            return NULL;
        }
        apr_thread_cond_timedwait(rs->cv, rs->mu, left);
    }
    if (rs->nidle) {
        x = rs->idle[--rs->nidle];
        apr_thread_mutex_unlock(rs->mu);
        return x;
    }
    if (rs->retry_at_ms && chatbot_now_ms() < rs->retry_at_ms) {
        rs->stats.errors++;
        apr_thread_mutex_unlock(rs->mu);
        return NULL;
    }
    rs->nconns++;
    apr_thread_mutex_unlock(rs->mu);
    c = rs_connect(rs, err, sizeof(err), 1);
    if (c && !(x = calloc(1, sizeof(*x)))) {
        redisFree(c);
        c = NULL;
        apr_cpystrn(err, "out of memory", sizeof(err));
    }
    apr_thread_mutex_lock(rs->mu);
    if (!c) {
        rs->nconns--;
        note_down(rs, err);
        apr_thread_cond_signal(rs->cv);
    }
    else {
        x->c = c;
        rs->stats.reconnects++;
    }
    apr_thread_mutex_unlock(rs->mu);
    return x;
}

/* Back to the pool (ok) or closed (its state is unknown after an error).
 * bad: error replies read for commands sent without waiting (counted). */
static void pool_put(rs_store_t *rs, rs_conn_t *x, int ok, apr_uint64_t usec, int bad)
{
    static const apr_uint64_t bounds[7] = {250, 500, 1000, 2000, 5000, 10000, 50000};
    int i;

    apr_thread_mutex_lock(rs->mu);
    rs->stats.calls++;
    rs->stats.errors += (apr_uint64_t)bad;
    if (ok) {
        rs->idle[rs->nidle++] = x;
        note_up(rs);
        rs->stats.usec_total += usec;
        if (usec > rs->stats.usec_max) {
            rs->stats.usec_max = usec;
        }
        for (i = 0; i < 7 && usec > bounds[i]; i++) {
        }
        rs->stats.hist[i]++;
    }
    else {
        rs->nconns--;
        note_down(rs, x->c->errstr[0] ? x->c->errstr : "no reply");
    }
    apr_thread_cond_signal(rs->cv);
    apr_thread_mutex_unlock(rs->mu);
    if (!ok) {
        conn_free(x);
    }
}

/* Owed commands that redis answered with NOSCRIPT or "Function not
 * found" (its scripts or functions were flushed under a connection that
 * had loaded them): sent again once the replies in flight are read and
 * the scripts loaded again (resend). */
typedef struct {
    char *cmd[RS_OWED_MAX];
    size_t len[RS_OWED_MAX];
    int n;
} rs_redo_t;

/* An error reply to a command whose reply nobody waited for: logged and
 * counted. */
static void owed_failed(const redisReply *r, int *bad)
{
    (*bad)++;
    ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                 APLOGNO(10962) "chatbot: redis store command failed: %s", r->str);
}

/* Reads the replies x owes (rs_command_nowait), in order. An error reply
 * is logged and counted in *bad. -1 if the connection failed. */
static int settle(rs_conn_t *x, rs_redo_t *redo, int *bad)
{
    int k, rc = 0;

    for (k = 0; k < x->owed; k++) {
        redisReply *r = NULL;
        if (rc || redisGetReply(x->c, (void **)&r) != REDIS_OK || !r) {
            rc = -1;
        }
        else if (r->type == REDIS_REPLY_ERROR && rs_lost(r->str)) {
            redo->cmd[redo->n] = x->cmd[k];
            redo->len[redo->n++] = x->len[k];
            x->cmd[k] = NULL;
        }
        else if (r->type == REDIS_REPLY_ERROR) {
            owed_failed(r, bad);
        }
        if (r) {
            freeReplyObject(r);
        }
        if (x->cmd[k]) {
            redisFreeCommand(x->cmd[k]);
        }
    }
    x->owed = 0;
    return rc;
}

/* The scripts loaded again and redo's commands sent again (nothing else
 * in flight on x); -1 if the connection failed. */
static int resend(rs_store_t *rs, rs_conn_t *x, rs_redo_t *redo, int *bad)
{
    char err[128];
    int k, rc = 0;

    if (redo->n && rs_load_scripts(rs, x->c, err, sizeof(err))) {
        rc = -1;
    }
    for (k = 0; k < redo->n; k++) {
        redisReply *r = NULL;
        if (rc ||
            redisAppendFormattedCommand(x->c, redo->cmd[k], redo->len[k]) != REDIS_OK ||
            redisGetReply(x->c, (void **)&r) != REDIS_OK || !r) {
            rc = -1;
        }
        else if (r->type == REDIS_REPLY_ERROR) {
            owed_failed(r, bad);
        }
        if (r) {
            freeReplyObject(r);
        }
        redisFreeCommand(redo->cmd[k]);
    }
    redo->n = 0;
    return rc;
}

static __thread apr_uint32_t tls_failures; /* this thread's failed calls */

apr_uint32_t chatbot_store_failures(void)
{
    return tls_failures;
}

void rs_failed(void)
{
    tls_failures++;
}

redisReply *rs_command(rs_store_t *rs, int argc, const char **argv, const size_t *lens)
{
    rs_conn_t *x;
    redisReply *r = NULL;
    apr_uint64_t t0;
    int bad = 0, ok = 0;

    rs_ctx_drop(); /* a context kept from a start is for the very next call */
    x = pool_get(rs);

    if (!x) {
        tls_failures++;
        return NULL;
    }
    t0 = now_us();
    if (!x->owed) {
        r = redisCommandArgv(x->c, argc, argv, lens);
        ok = r != NULL;
    }
    else {
        rs_redo_t redo;
        redo.n = 0;
        /* one round trip for the owed replies and this one */
        if (redisAppendCommandArgv(x->c, argc, argv, lens) == REDIS_OK &&
            settle(x, &redo, &bad) == 0 && redisGetReply(x->c, (void **)&r) == REDIS_OK) {
            ok = r != NULL;
        }
        if (resend(rs, x, &redo, &bad)) {
            ok = 0;
        }
    }
    pool_put(rs, x, ok, now_us() - t0, bad);
    if (!r) {
        tls_failures++;
    }
    return r;
}

int rs_command_nowait(rs_store_t *rs, int argc, const char **argv, const size_t *lens)
{
    rs_conn_t *x;
    apr_uint64_t t0;
    char *cmd = NULL;
    int len, done = 0, bad = 0, ok;

    rs_ctx_drop();
    x = pool_get(rs);

    if (!x) {
        tls_failures++;
        return -1;
    }
    t0 = now_us();
    /* a bounded debt: past it, the replies are read first */
    if (x->owed >= RS_OWED_MAX) {
        rs_redo_t redo;
        redo.n = 0;
        ok = settle(x, &redo, &bad) == 0;
        ok = resend(rs, x, &redo, &bad) == 0 && ok;
    }
    else {
        ok = 1;
    }
    len = ok ? redisFormatCommandArgv(&cmd, argc, argv, lens) : -1;
    ok = len > 0 && redisAppendFormattedCommand(x->c, cmd, (size_t)len) == REDIS_OK;
    /* written now (blocking, within the send timeout): it takes effect at
     * once, not at the connection's next use */
    while (ok && !done) {
        ok = redisBufferWrite(x->c, &done) == REDIS_OK;
    }
    if (ok) {
        x->cmd[x->owed] = cmd;
        x->len[x->owed++] = (size_t)len;
    }
    else if (cmd) {
        redisFreeCommand(cmd);
    }
    pool_put(rs, x, ok, now_us() - t0, bad);
    if (!ok) {
        tls_failures++;
    }
    return ok ? 0 : -1;
}

/* ---- the provider's glue ------------------------------------------------------- */

static void pool_close(rs_store_t *rs)
{
    while (rs->nidle) {
        conn_free(rs->idle[--rs->nidle]);
    }
    rs->nconns = 0;
}

/* chat_store_detach: the handle only (and this process's connections). */
void rs_detach(chat_store_t *st)
{
    rs_store_t *rs = (rs_store_t *)st;

    if (!rs) {
        return;
    }
    pool_close(rs);
    if (rs->local) {
        chat_store_detach(rs->local);
    }
    free(rs->bk);
    free(rs);
}

static apr_status_t child_stop(void *data)
{
    rs_store_t *rs = data;
    apr_status_t rv;

    rs->sub_exit = 1;
    if (rs->sub) {
        apr_thread_join(&rv, rs->sub);
        rs->sub = NULL;
    }
    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        pool_close(rs);
        rs_list_clear(rs);
        apr_thread_mutex_unlock(rs->mu);
    }
    rs->mu = NULL;
    return APR_SUCCESS;
}

/* A tag for this process's own messages on the channel (see on_message). */
static void make_origin(rs_store_t *rs)
{
    unsigned char b[4] = {0};

    apr_generate_random_bytes(b, sizeof(b));
    apr_snprintf(rs->origin, sizeof(rs->origin), "%x%02x%02x%02x%02x", (unsigned)getpid(),
                 b[0], b[1], b[2], b[3]);
}

static apr_status_t rs_child_init(chat_store_t *st, apr_pool_t *pchild, server_rec *s)
{
    rs_store_t *rs = (rs_store_t *)st;
    apr_status_t rv;

    /* the parent's connections (its upkeep) stay the parent's: the child
     * closes its copies of the sockets (redisFree sends nothing) */
    pool_close(rs);
    rs->mu = NULL;
    rs->sub_exit = 0;
    memset(rs->list, 0, sizeof(rs->list)); /* none is the parent's */
    memset(rs->listed_ms, 0, sizeof(rs->listed_ms));
    make_origin(rs);
    if ((rv = apr_thread_mutex_create(&rs->mu, APR_THREAD_MUTEX_DEFAULT, pchild)) ||
        (rv = apr_thread_cond_create(&rs->cv, pchild))) {
        rs->mu = NULL;
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     APLOGNO(10963) "chatbot: cannot create the redis store's pool lock");
        return rv;
    }
    /* before child_stop: its cleanup (the pipe) runs after the join */
    if ((rv = rs_sub_open(rs, pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     APLOGNO(10969) "chatbot: cannot set up the redis store's "
                                    "subscriber; answers generated on other hosts "
                                    "are seen late");
    }
    apr_pool_cleanup_register(pchild, rs, child_stop, apr_pool_cleanup_null);
    if (rv != APR_SUCCESS) {
        rs->sub = NULL;
    }
    else if ((rv = apr_thread_create(&rs->sub, NULL, rs_sub_main, rs, pchild)) !=
             APR_SUCCESS) {
        rs->sub = NULL;
        ap_log_error(
            APLOG_MARK, APLOG_CRIT, rv, s,
            APLOGNO(10964) "chatbot: cannot start the redis store's subscriber thread; "
                           "answers generated on other hosts are seen late");
    }
    return APR_SUCCESS; /* the local store still registers the child */
}

static apr_status_t rs_init(chat_store_t **out, server_rec *s, apr_pool_t *pconf,
                            apr_pool_t *ptemp)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    rs_store_t *rs;
    chat_store_t *local = NULL;
    apr_status_t rv;
    redisReply *r;
    const char *ping[1] = {"PING"};

    *out = NULL;
    /* what stays per host lives in this host's shared memory */
    if ((rv = chatbot_store_shm.init(&local, s, pconf, ptemp)) != APR_SUCCESS) {
        return rv;
    }
    if (!(rs = calloc(1, sizeof(*rs)))) {
        chat_store_detach(local);
        return APR_ENOMEM;
    }
    rs->head.provider = &rs_provider;
    rs->local = local;
    if (!(rs->bk = calloc(1, sizeof(*rs->bk)))) {
        chat_store_detach(local);
        free(rs);
        return APR_ENOMEM;
    }
    rs->url = *sc->store;
    rs->layout = sc->layout;
    chat_store_policy_default(&rs->policy);
    rs->ttl_ms = sc->store_ttl >= 0 ? (apr_uint64_t)apr_time_as_msec(sc->store_ttl)
                                    : (apr_uint64_t)30 * 24 * 3600 * 1000;
    rs->timeout_ms =
        sc->store_timeout > 0 ? (int)apr_time_as_msec(sc->store_timeout) : 1000;
    rs->stats.up = 1;
    make_origin(rs);
    rs_lua_prepare(rs, pconf);
    /* the parent's own pool, for its upkeep (children make theirs) */
    if ((rv = apr_thread_mutex_create(&rs->mu, APR_THREAD_MUTEX_DEFAULT, pconf)) ||
        (rv = apr_thread_cond_create(&rs->cv, pconf))) {
        rs_detach((chat_store_t *)rs);
        return rv;
    }
    r = rs_command(rs, 1, ping, NULL);
    if (!r) {
        /* not fatal: redis may come up after httpd; calls fail until then */
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            APLOGNO(10965) "chatbot: ChatbotStore %s: redis is not reachable now (%s); "
                           "chats fail with store_unavailable until it is",
            rs->url.kind == CHAT_STOREURL_UNIX ? rs->url.path : rs->url.host,
            rs->stats.last_error);
    }
    else {
        if (r->type == REDIS_REPLY_ERROR) {
            ap_log_error(
                APLOG_MARK, APLOG_WARNING, 0, s,
                APLOGNO(10965) "chatbot: ChatbotStore: redis answered PING with %s",
                r->str);
        }
        freeReplyObject(r);
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     APLOGNO(10966) "chatbot: chat store on redis %s%s%s db %d",
                     rs->url.kind == CHAT_STOREURL_UNIX ? rs->url.path : rs->url.host,
                     rs->url.kind == CHAT_STOREURL_UNIX ? "" : ":",
                     rs->url.kind == CHAT_STOREURL_UNIX ? ""
                                                        : apr_itoa(ptemp, rs->url.port),
                     rs->url.db);
    }
    /* the parent keeps no connection across the fork (its upkeep makes
     * new ones later; children close what they inherit) */
    pool_close(rs);
    *out = (chat_store_t *)rs;
    return APR_SUCCESS;
}

int chatbot_store_remote_stats(chat_store_t *st, chatbot_store_stats_t *out)
{
    rs_store_t *rs = (rs_store_t *)st;

    if (!st || chat_store_provider_name(st) != rs_provider.name) {
        return 0;
    }
    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        *out = rs->stats;
        apr_thread_mutex_unlock(rs->mu);
    }
    else {
        *out = rs->stats;
    }
    return 1;
}

/* Whether redis takes a write now: 1 it refuses (rs_refused: over its
 * maxmemory, a read-only replica, a failed snapshot...), 0 it takes it or
 * cannot tell. A read-only call cannot tell: a script (EVALSHA) that
 * reads runs over maxmemory, and so does a function declared no-writes;
 * a function that may write is refused before it runs, a script only at
 * its first write. So the probe is a write: one small key, at most once
 * per RS_PROBE_FRESH_MS per child and by one thread at a time (the others
 * take the last verdict), since /api/health is open to anyone. */
static int refuses_writes(rs_store_t *rs)
{
    static const char *const set[5] = {"SET", RS_PREFIX "probe", "1", "PX", "60000"};
    apr_uint64_t now = chatbot_now_ms();
    redisReply *r;
    int refused;

    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        if (rs->probe_ms &&
            ((now >= rs->probe_ms && now - rs->probe_ms < RS_PROBE_FRESH_MS) ||
             rs->probe_busy)) {
            refused = rs->probe_refused;
            apr_thread_mutex_unlock(rs->mu);
            return refused;
        }
        rs->probe_busy = 1;
        apr_thread_mutex_unlock(rs->mu);
    }
    r = rs_command(rs, 5, (const char **)set, NULL);
    refused = r && r->type == REDIS_REPLY_ERROR && rs_refused(r->str);
    if (refused) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf,
                     APLOGNO(10962) "chatbot: redis store refuses writes: %s", r->str);
    }
    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        if (r) {
            rs->probe_ms = now;
            rs->probe_refused = refused;
        }
        rs->probe_busy = 0;
        apr_thread_mutex_unlock(rs->mu);
    }
    if (r) {
        freeReplyObject(r);
    }
    return refused;
}

int chatbot_store_ping(chat_store_t *st, int writes)
{
    rs_store_t *rs = (rs_store_t *)st;
    const char *ping[1] = {"PING"};
    redisReply *r;
    int ok;

    if (!st || chat_store_provider_name(st) != rs_provider.name) {
        return -1;
    }
    if (!(r = rs_command(rs, 1, ping, NULL))) {
        return 0;
    }
    ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (ok && writes && refuses_writes(rs)) {
        rs_failed(); /* a REST answer is then 503 store_unavailable */
        return 2;
    }
    return ok;
}

const chatbot_store_provider_t chatbot_store_redis = {
    "redis",
    rs_init,
    rs_child_init,
};
