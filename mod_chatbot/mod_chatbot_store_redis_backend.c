/* mod_chatbot_store_redis_backend.c - backend slots, the waiting queue,
 * the circuit breaker and health with the store on redis: shared by every
 * host, as the shm provider (mod_chatbot/core/chat_store_backend.c) shares
 * them between the children of one host. Same interface, same rules:
 *  - `max=` is a total over all hosts; a request takes a slot only if its
 *    place in line is within the free slots (FIFO across hosts, positions
 *    reported);
 *  - a holder refreshes its slot's expiry every second (backend_beat); a
 *    holder silent for RS_HOLDER_TTL_MS (its child or host died) is
 *    dropped by the next acquire, a waiter that stops asking for
 *    RS_WAITER_STALE_MS too;
 *  - the breaker (closed / open / half-open, consecutive failures) and the
 *    last health report are one hash per backend.
 * Every step is one Lua script (redis's clock, so hosts whose clocks differ
 * agree on expiries). A release, a cancel or a reaped slot publishes
 * "b:<backend>" on the store's channel when someone waits in line:
 * waiters in every child hear it (subscriber thread -> rs->bk_wake) and
 * ask again at once; otherwise a
 * waiter asks redis once a second (RS_QUEUE_POLL_MS), not at the engine's
 * 50 ms tick. The breaker's closed state and the health report are cached
 * for a second so that a turn costs no extra round trip for them.
 *
 * Keys (P = "chatbot:", <b> = the backend's name from ChatbotBackend):
 *   P bk:<b>  hash  br breaker (0 closed, 1 open, 2 half-open), fl
 *                   consecutive failures, ou open until (ms, redis clock),
 *                   hl healthy (-1/0/1), ck checked (ms), v version, d detail
 *   P bh:<b>  zset  holders: ticket, score = expiry (ms)
 *   P bq:<b>  zset  waiters in line: ticket, score = arrival number
 *   P bw:<b>  zset  waiters: ticket, score = last asked (ms)
 *   P bs:<b>  string arrival counter
 * If redis cannot be reached, the call falls back to this host's shared
 * memory (per-host limits, as before this file), and the turn goes on.
 */
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))

/* ARGV: P op backend ... (see the ops below) */
const char rs_lua_backend[] =
    "local P\n" RS_LUA_BK_ACQUIRE RS_LUA_BK_LEAVE RS_LUA_MAIN_MARK "P = ARGV[1]\n"
    "local op, name = ARGV[2], ARGV[3]\n"
    "local K, H, Q = P..'bk:'..name, P..'bh:'..name, P..'bq:'..name\n"
    /* c ticket: leave the line; r ticket: free the slot (and the line) */
    "if op == 'c' or op == 'r' then\n"
    "  bk_leave(name, ARGV[4], op == 'r')\n"
    "  return 0\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    /* a ticket limit queue_cap holder_ttl waiter_stale
     * -> {status, position, breaker, failures, reaped} */
    "if op == 'a' then\n"
    "  return bk_acquire(name, now, ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]),\n"
    "                    tonumber(ARGV[7]), tonumber(ARGV[8]))\n"
    /* h ticket ttl: the holder is alive */
    "elseif op == 'h' then\n"
    "  if redis.call('ZSCORE', H, ARGV[4]) then\n"
    "    redis.call('ZADD', H, now + tonumber(ARGV[5]), ARGV[4])\n"
    "  end\n"
    "  return 0\n"
    /* A cooldown_ms -> {allow, breaker} */
    "elseif op == 'A' then\n"
    "  local v = redis.call('HMGET', K, 'br', 'ou')\n"
    "  local b, ou = tonumber(v[1] or '0'), tonumber(v[2] or '0')\n"
    "  if b == 0 then return {1, 0} end\n"
    "  if now < ou then return {0, b} end\n"
    "  redis.call('HMSET', K, 'br', 2, 'ou', now + tonumber(ARGV[4]))\n"
    "  return {1, 2}\n"
    /* R ok threshold cooldown_ms -> {breaker, failures} */
    "elseif op == 'R' then\n"
    "  if ARGV[4] == '1' then\n"
    "    redis.call('HMSET', K, 'br', 0, 'fl', 0, 'ou', 0)\n"
    "    return {0, 0}\n"
    "  end\n"
    "  local f = redis.call('HINCRBY', K, 'fl', 1)\n"
    "  local b = tonumber(redis.call('HGET', K, 'br') or '0')\n"
    "  local th = tonumber(ARGV[5])\n"
    "  if b == 2 or (b == 0 and th > 0 and f >= th) then\n"
    "    redis.call('HMSET', K, 'br', 1, 'ou', now + tonumber(ARGV[6]))\n"
    "    b = 1\n"
    "  end\n"
    "  return {b, f}\n"
    /* H healthy version has_version detail */
    "elseif op == 'H' then\n"
    /* a change every child (of every host) must hear: its own "still
     * fine" reports are skipped for a second (rs_backend_health) */
    "  if redis.call('HGET', K, 'hl') ~= ARGV[4] then\n"
    "    redis.call('PUBLISH', P..'ev', 'h:'..name)\n"
    "  end\n"
    "  redis.call('HMSET', K, 'hl', ARGV[4], 'd', ARGV[7], 'ck', now)\n"
    "  if ARGV[6] == '1' then redis.call('HSET', K, 'v', ARGV[5]) end\n"
    "  return 0\n"
    /* g -> {active, queued, br, fl, ou, hl, ck, v, d} */
    "elseif op == 'g' then\n"
    "  local v = redis.call('HMGET', K, 'br', 'fl', 'ou', 'hl', 'ck', 'v', 'd')\n"
    "  return {redis.call('ZCOUNT', H, now, '+inf'), redis.call('ZCARD', Q),\n"
    "          v[1] or '0', v[2] or '0', v[3] or '0', v[4] or '-1', v[5] or '0',\n"
    "          v[6] or '', v[7] or ''}\n"
    "end\n"
    "return -2\n";

/* The backend's name and slot limit (registered in this host's table). */
static int bk_of(rs_store_t *rs, int idx, chat_backend_info_t *bi, uint32_t *lim)
{
    if (idx < 0 || idx >= RS_BK_MAX ||
        chat_store_backend_get(rs->local, idx, bi) != CHAT_OK || !bi->name[0]) {
        return -1;
    }
    *lim = bi->max_active == 0 || bi->max_active > rs->layout.max_active
               ? rs->layout.max_active
               : bi->max_active;
    return 0;
}

/* The backend script's arguments: the step, the backend, then argv. */
static void bk_args(rs_args_t *a, const char *op, const char *name, int argc,
                    const char **argv)
{
    int k;

    arg_str(a, op);
    arg_str(a, name);
    for (k = 0; k < argc; k++) {
        arg_str(a, argv[k]);
    }
}

static redisReply *bk_run(rs_store_t *rs, const char *op, const char *name, int argc,
                          const char **argv)
{
    rs_args_t a = {0};

    bk_args(&a, op, name, argc, argv);
    return rs_eval(rs, RS_LUA_BACKEND, a.n, a.v, a.l);
}

/* bk_run for a step whose reply nobody reads (a release, a heartbeat):
 * sent at once, its reply read at the connection's next use. */
static void bk_send(rs_store_t *rs, const char *op, const char *name, int argc,
                    const char **argv)
{
    rs_args_t a = {0};

    bk_args(&a, op, name, argc, argv);
    rs_eval_nowait(rs, RS_LUA_BACKEND, a.n, a.v, a.l);
}

static int is_array(const redisReply *r, size_t n)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= n;
}

/* ---- the waiters of this child: no round trip while nothing moved --------- */

static rs_wait_t *wait_find(rs_store_t *rs, apr_uint64_t ticket, int make)
{
    rs_wait_t *free_entry = NULL;
    int k;

    for (k = 0; k < RS_WAITS; k++) {
        rs_wait_t *waiter = &rs->bk->wait[(ticket + (apr_uint64_t)k) % RS_WAITS];
        if (waiter->ticket == ticket) {
            return waiter;
        }
        if (!waiter->ticket && !free_entry) {
            free_entry = waiter;
            if (!make) {
                return NULL;
            }
        }
    }
    if (free_entry) {
        memset(free_entry, 0, sizeof(*free_entry));
        free_entry->ticket = ticket;
    }
    return free_entry;
}

static void wait_forget(rs_store_t *rs, apr_uint64_t ticket)
{
    rs_wait_t *waiter;

    if (!rs->mu) {
        return;
    }
    apr_thread_mutex_lock(rs->mu);
    if ((waiter = wait_find(rs, ticket, 0))) {
        waiter->ticket = 0;
    }
    apr_thread_mutex_unlock(rs->mu);
}

int rs_backend_acq_args(rs_store_t *rs, int idx, uint64_t ticket, rs_args_t *a,
                        chat_backend_info_t *bi)
{
    uint32_t lim;

    if (ticket == 0 || bk_of(rs, idx, bi, &lim)) {
        return -1;
    }
    arg_str(a, bi->name);
    arg_u64(a, ticket);
    arg_u64(a, lim);
    arg_u64(a, rs->layout.queue_cap);
    arg_u64(a, RS_HOLDER_TTL_MS);
    arg_u64(a, RS_WAITER_STALE_MS);
    return 0;
}

chat_status_t rs_backend_acq_reply(rs_store_t *rs, int idx, const char *name,
                                   uint64_t ticket, uint64_t now_ms, apr_uint32_t wake,
                                   redisReply *const *el, int32_t *position)
{
    chat_status_t rc = (chat_status_t)rint_(el[0]);
    rs_wait_t *waiter;

    rs->bk->b[idx].breaker = (int)rint_(el[2]);
    rs->bk->b[idx].failures = (apr_uint32_t)rint_(el[3]);
    rs->bk->b[idx].seen_ms = now_ms;
    if (rint_(el[4]) > 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, ap_server_conf,
                     "chatbot: backend %s: reclaimed %lld request slot(s) whose holder "
                     "stopped beating (a child or host died)",
                     name, rint_(el[4]));
    }
    if (position && rc == CHAT_EAGAIN) {
        *position = (int32_t)rint_(el[1]);
    }
    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        waiter = wait_find(rs, ticket, rc == CHAT_EAGAIN);
        if (waiter && rc == CHAT_EAGAIN) {
            waiter->wake = wake;
            waiter->asked_ms = now_ms;
            waiter->pos = position ? *position : 0;
        }
        else if (waiter) {
            waiter->ticket = 0;
        }
        apr_thread_mutex_unlock(rs->mu);
    }
    return rc;
}

chat_status_t rs_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                 uint64_t now_ms, int32_t *position)
{
    rs_store_t *rs = RS(st);
    rs_args_t a = {0};
    chat_backend_info_t bi;
    apr_uint32_t wake = apr_atomic_read32(&rs->bk_wake);
    redisReply *r;
    chat_status_t rc;
    rs_wait_t *waiter;

    if (position) {
        *position = 0;
    }
    arg_str(&a, "a");
    if (rs_backend_acq_args(rs, idx, ticket, &a, &bi)) {
        return CHAT_EINVAL;
    }
    if (rs->mu) {
        /* in line already, nothing released since, asked less than a
         * second ago: still the same place */
        apr_thread_mutex_lock(rs->mu);
        waiter = wait_find(rs, ticket, 0);
        if (waiter && waiter->wake == wake && now_ms >= waiter->asked_ms &&
            now_ms - waiter->asked_ms < RS_QUEUE_POLL_MS) {
            if (position) {
                *position = waiter->pos;
            }
            apr_thread_mutex_unlock(rs->mu);
            return CHAT_EAGAIN;
        }
        apr_thread_mutex_unlock(rs->mu);
    }
    r = rs_eval(rs, RS_LUA_BACKEND, a.n, a.v, a.l);
    if (!is_array(r, 5)) {
        if (r) {
            freeReplyObject(r);
        }
        /* redis away: this host's own slots, as without redis */
        return chat_store_backend_acquire(rs->local, idx, ticket, now_ms, position);
    }
    rc = rs_backend_acq_reply(rs, idx, bi.name, ticket, now_ms, wake, r->element,
                              position);
    freeReplyObject(r);
    return rc;
}

/* leave()'s part in this child: -1 if redis has nothing to give back */
static int leave_local(rs_store_t *rs, const char *op, int idx, uint64_t ticket,
                       chat_backend_info_t *bi)
{
    uint32_t lim;

    wait_forget(rs, ticket);
    /* a slot taken while redis was away is in the local table */
    if (*op == 'r') {
        chat_store_backend_release(rs->local, idx, ticket);
    }
    else {
        chat_store_backend_cancel(rs->local, idx, ticket);
    }
    return ticket == 0 || bk_of(rs, idx, bi, &lim) ? -1 : 0;
}

static void leave_send(rs_store_t *rs, const char *op, const char *name, uint64_t ticket)
{
    char tk[24];
    const char *av[1] = {tk};

    apr_snprintf(tk, sizeof(tk), "%" APR_UINT64_T_FMT, (apr_uint64_t)ticket);
    /* nobody waits for it: its reply is read at the connection's next use */
    bk_send(rs, op, name, 1, av);
}

static void leave(chat_store_t *st, const char *op, int idx, uint64_t ticket)
{
    rs_store_t *rs = RS(st);
    chat_backend_info_t bi;

    if (leave_local(rs, op, idx, ticket, &bi) == 0) {
        leave_send(rs, op, bi.name, ticket);
    }
}

int rs_backend_release_local(chat_store_t *st, int idx, uint64_t ticket,
                             chat_backend_info_t *bi)
{
    return leave_local(RS(st), "r", idx, ticket, bi);
}

void rs_backend_release_send(rs_store_t *rs, const char *name, uint64_t ticket)
{
    leave_send(rs, "r", name, ticket);
}

void rs_backend_cancel(chat_store_t *st, int idx, uint64_t ticket)
{
    leave(st, "c", idx, ticket);
}

void rs_backend_release(chat_store_t *st, int idx, uint64_t ticket)
{
    leave(st, "r", idx, ticket);
}

void rs_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    chat_backend_info_t bi;
    uint32_t lim;
    char tk[24], ttl[16];
    const char *av[2] = {tk, ttl};

    chat_store_backend_beat(rs->local, idx, ticket, now_ms);
    if (ticket == 0 || bk_of(rs, idx, &bi, &lim)) {
        return;
    }
    apr_snprintf(tk, sizeof(tk), "%" APR_UINT64_T_FMT, (apr_uint64_t)ticket);
    apr_snprintf(ttl, sizeof(ttl), "%d", RS_HOLDER_TTL_MS);
    bk_send(rs, "h", bi.name, 2, av);
}

/* ---- the breaker and health, shared ------------------------------------------ */

int rs_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms, uint64_t cooldown_ms)
{
    rs_store_t *rs = RS(st);
    chat_backend_info_t bi;
    uint32_t lim;
    char cd[24];
    const char *av[1] = {cd};
    redisReply *r;
    int allow;

    if (bk_of(rs, idx, &bi, &lim)) {
        return 1; /* no such backend, no breaker */
    }
    if (rs->bk->b[idx].breaker == CHAT_BREAKER_CLOSED &&
        now_ms >= rs->bk->b[idx].seen_ms &&
        now_ms - rs->bk->b[idx].seen_ms < RS_BREAKER_FRESH_MS) {
        return 1; /* closed a moment ago (the acquire said so) */
    }
    apr_snprintf(cd, sizeof(cd), "%" APR_UINT64_T_FMT, (apr_uint64_t)cooldown_ms);
    r = bk_run(rs, "A", bi.name, 1, av);
    if (!is_array(r, 2)) {
        if (r) {
            freeReplyObject(r);
        }
        return chat_store_breaker_allow(rs->local, idx, now_ms, cooldown_ms);
    }
    allow = rint_(r->element[0]) != 0;
    rs->bk->b[idx].breaker = (int)rint_(r->element[1]);
    rs->bk->b[idx].seen_ms = now_ms;
    freeReplyObject(r);
    return allow;
}

void rs_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                       uint32_t threshold, uint64_t cooldown_ms)
{
    rs_store_t *rs = RS(st);
    chat_backend_info_t bi;
    uint32_t lim;
    char th[16], cd[24];
    const char *av[3] = {ok ? "1" : "0", th, cd};
    redisReply *r;

    if (bk_of(rs, idx, &bi, &lim)) {
        return;
    }
    if (ok && rs->bk->b[idx].breaker == CHAT_BREAKER_CLOSED &&
        rs->bk->b[idx].failures == 0 && now_ms >= rs->bk->b[idx].seen_ms &&
        now_ms - rs->bk->b[idx].seen_ms < RS_BREAKER_FRESH_MS) {
        return; /* nothing to change */
    }
    apr_snprintf(th, sizeof(th), "%u", threshold);
    apr_snprintf(cd, sizeof(cd), "%" APR_UINT64_T_FMT, (apr_uint64_t)cooldown_ms);
    r = bk_run(rs, "R", bi.name, 3, av);
    if (!is_array(r, 2)) {
        if (r) {
            freeReplyObject(r);
        }
        chat_store_breaker_result(rs->local, idx, ok, now_ms, threshold, cooldown_ms);
        return;
    }
    rs->bk->b[idx].breaker = (int)rint_(r->element[0]);
    rs->bk->b[idx].failures = (apr_uint32_t)rint_(r->element[1]);
    rs->bk->b[idx].seen_ms = now_ms;
    freeReplyObject(r);
}

void rs_backend_health(chat_store_t *st, int idx, int healthy, const char *version,
                       const char *detail, uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    chat_backend_info_t bi;
    uint32_t lim;
    apr_uint32_t news;
    int h = healthy < 0 ? -1 : healthy > 0 ? 1 : 0;
    char hs[4];
    const char *av[4] = {hs, version ? version : "", version ? "1" : "0",
                         detail ? detail : ""};
    redisReply *r;

    chat_store_backend_health(rs->local, idx, healthy, version, detail, now_ms);
    if (bk_of(rs, idx, &bi, &lim)) {
        return;
    }
    /* every turn reports: "still fine" is written at most once a second,
     * unless a change was heard since (another child or host wrote
     * another health: "h:" on the channel) */
    news = apr_atomic_read32(&rs->health_news);
    if (rs->bk->b[idx].healthy == h && !version && (!detail || !detail[0]) &&
        rs->bk->b[idx].health_ms && now_ms >= rs->bk->b[idx].health_ms &&
        now_ms - rs->bk->b[idx].health_ms < RS_BREAKER_FRESH_MS &&
        rs->bk->b[idx].health_news == news && apr_atomic_read32(&rs->sub_up)) {
        return;
    }
    apr_snprintf(hs, sizeof(hs), "%d", h);
    if ((r = bk_run(rs, "H", bi.name, 4, av))) {
        if (r->type != REDIS_REPLY_ERROR) {
            rs->bk->b[idx].healthy = h;
            rs->bk->b[idx].health_ms = now_ms;
            rs->bk->b[idx].health_news = news;
            if (rs->mu) {
                /* the figures kept for rs_backend_get (read by the probe
                 * just before) are older than this report: the next read
                 * asks (the first /api/health after a start said 503) */
                apr_thread_mutex_lock(rs->mu);
                rs->bk->b[idx].info_ms = 0;
                apr_thread_mutex_unlock(rs->mu);
            }
        }
        freeReplyObject(r);
    }
}

chat_status_t rs_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out)
{
    rs_store_t *rs = RS(st);
    uint32_t lim;
    redisReply *r;
    chat_status_t rc;
    apr_uint32_t info_news = 0;

    apr_uint64_t now = chatbot_now_ms();

    if (!out || bk_of(rs, idx, out, &lim)) {
        return CHAT_ENOTFOUND;
    }
    if (rs->mu) {
        /* a session list asks once per row: one round trip per moment,
         * and one at a time (the others take the last answer meanwhile:
         * each turn's session list asks, and the threads whose turns end
         * as the answer gets old would all ask at once) */
        apr_thread_mutex_lock(rs->mu);
        if (rs->bk->b[idx].info_ms &&
            ((now >= rs->bk->b[idx].info_ms &&
              now - rs->bk->b[idx].info_ms < RS_INFO_FRESH_MS &&
              rs->bk->b[idx].info_news == apr_atomic_read32(&rs->health_news)) ||
             rs->bk->b[idx].info_busy)) {
            *out = rs->bk->b[idx].info;
            apr_thread_mutex_unlock(rs->mu);
            return CHAT_OK;
        }
        rs->bk->b[idx].info_busy = 1;
        info_news = apr_atomic_read32(&rs->health_news);
        apr_thread_mutex_unlock(rs->mu);
    }
    /* the local figures stand if redis cannot tell */
    rc = CHAT_OK;
    r = bk_run(rs, "g", out->name, 0, NULL);
    if (is_array(r, 9)) {
        out->active = (uint32_t)rint_(r->element[0]);
        out->queued = (uint32_t)rint_(r->element[1]);
        out->breaker = (int)rint_(r->element[2]);
        out->failures = (uint32_t)rint_(r->element[3]);
        out->open_until_ms = (uint64_t)rint_(r->element[4]);
        if (rint_(r->element[6]) > 0) {
            out->healthy = (int)rint_(r->element[5]);
            out->checked_ms = (uint64_t)rint_(r->element[6]);
            rs_rcopy(out->detail, sizeof(out->detail), r->element[8]);
        }
        if (r->element[7]->type == REDIS_REPLY_STRING && r->element[7]->len) {
            rs_rcopy(out->version, sizeof(out->version), r->element[7]);
        }
    }
    if (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        if (is_array(r, 9)) {
            rs->bk->b[idx].info = *out;
            rs->bk->b[idx].info_ms = now;
            rs->bk->b[idx].info_news = info_news;
        }
        rs->bk->b[idx].info_busy = 0;
        apr_thread_mutex_unlock(rs->mu);
    }
    if (r) {
        freeReplyObject(r);
    }
    return rc;
}
