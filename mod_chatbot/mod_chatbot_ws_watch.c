/* mod_chatbot_ws_watch.c - the child's view of its WebSockets: the registry
 * of open connections, the worker budget (ChatbotMaxWorkers, which REST
 * turns share) and the queue of turns waiting for it, and the watcher
 * thread. The counters mod_status and /metrics show are in
 * mod_chatbot_ws_counts.c.
 *
 * The watcher wakes every WATCH_MS. A connection a thread runs is woken
 * (its poll returns) when its user's sessions change or the child stops.
 * A parked connection has no thread to wake, and the event MPM watches only
 * its socket, with httpd's Timeout; for it the watcher
 *   - writes a ping when one is due (at least twice per Timeout): this
 *     keeps NAT paths open, and the client's pong - which RFC 6455 clients
 *     send at once - makes the socket readable, so the MPM hands the
 *     connection back to the module and it re-parks with a fresh Timeout;
 *   - writes a ping to wake it when it has news: its user's sessions
 *     changed, or a worker came free for the turn it holds back;
 *   - shuts its socket for reading when it must end (the child stops, or
 *     ChatbotIdleTimeout passed in silence): the MPM sees the socket
 *     readable at once, and the connection says its goodbye (1001 / 1008)
 *     on the worker that takes it;
 *   - gives back the spare memory of a connection parked for LEAN_AFTER_MS
 *     (chatbot_ws_lean, mod_chatbot_ws_mpm.c), once per park.
 * A ping is written, or memory given back, while the watcher has borrowed
 * the connection (under the registry mutex): the MPM's resume, pre-close
 * and the pool cleanup wait until it gives the connection back, so it is
 * never written from two threads at once.
 */
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "apr_atomic.h"
#include "apr_portable.h"
#include "apr_shm.h"
#include "apr_thread_cond.h"

#include "mod_chatbot_ws.h"

#define WATCH_MS 100
#define PING_BATCH 256     /* pings written per watcher pass at most */
#define KICK_RETRY_MS 1000 /* a kicked connection that did not come is pinged again */
#define MULTI_IDLE_MS 1000 /* unused cached libcurl handles are closed after this */
#define LEAN_AFTER_MS 2000 /* parked this long: its spare memory goes back */

static apr_thread_mutex_t *reg_mutex;
static apr_thread_cond_t *reg_cond;   /* a borrowed connection was given back */
static apr_thread_cond_t *watch_cond; /* a worker came free: look now */
static int watch_now;
static chatbot_wsc_t *reg_head;
static chatbot_wsc_t *wait_head, *wait_tail;
static int nwaiting;
static int slots_used;
static int max_workers = 1;
static int max_per_ip = 2;
static int one_thread; /* prefork: max_workers counts children server-wide */
static apr_thread_t *watcher;
static volatile int watcher_exit;

/* ---- registry ------------------------------------------------------------------------
 */

static void wait_unlink(chatbot_wsc_t *w)
{
    chatbot_ws_count_t *m;

    if (!w->waiting) {
        return;
    }
    if (w->wait_prev) {
        w->wait_prev->wait_next = w->wait_next;
    }
    else {
        wait_head = w->wait_next;
    }
    if (w->wait_next) {
        w->wait_next->wait_prev = w->wait_prev;
    }
    else {
        wait_tail = w->wait_prev;
    }
    w->wait_prev = w->wait_next = NULL;
    w->waiting = 0;
    nwaiting--;
    if ((m = chatbot_ws_my_count())) {
        apr_atomic_dec32(&m->waiting);
    }
}

static void slot_release_locked(chatbot_wsc_t *w)
{
    chatbot_ws_count_t *m;

    if (!w->slot) {
        return;
    }
    slots_used--;
    w->slot = 0;
    if (wait_head && watch_cond) {
        /* a turn waits for this worker: the watcher pings it now */
        watch_now = 1;
        apr_thread_cond_signal(watch_cond);
    }
    if (w->life_slot) {
        w->life_slot = 0;
        if ((m = chatbot_ws_my_count())) {
            apr_atomic_dec32(&m->blocking);
        }
    }
}

static apr_status_t reg_remove(void *data)
{
    chatbot_wsc_t *w = data;

    if (!reg_mutex) {
        return APR_SUCCESS;
    }
    apr_thread_mutex_lock(reg_mutex);
    while (w->borrowed) {
        apr_thread_cond_wait(reg_cond, reg_mutex);
    }
    if (w->reg_prev) {
        w->reg_prev->reg_next = w->reg_next;
    }
    else if (reg_head == w) {
        reg_head = w->reg_next;
    }
    if (w->reg_next) {
        w->reg_next->reg_prev = w->reg_prev;
    }
    w->reg_prev = w->reg_next = NULL;
    wait_unlink(w);
    slot_release_locked(w);
    chatbot_ws_count_state(w->state, -1);
    w->state = WS_ST_DONE;
    w->eng = NULL;
    apr_thread_mutex_unlock(reg_mutex);
    /* the connection may outlive w on a path that skipped finish (httpd
     * closing it on an error): its hooks must not find w any more */
    if (ap_get_module_config(w->c->conn_config, &chatbot_module) == w) {
        ap_set_module_config(w->c->conn_config, &chatbot_module, NULL);
    }
    return APR_SUCCESS;
}

void chatbot_ws_reg_add(chatbot_wsc_t *w)
{
    if (!reg_mutex) {
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    w->reg_prev = NULL;
    w->reg_next = reg_head;
    if (reg_head) {
        reg_head->reg_prev = w;
    }
    reg_head = w;
    apr_thread_mutex_unlock(reg_mutex);
    apr_pool_cleanup_register(w->r->pool, w, reg_remove, apr_pool_cleanup_null);
}

void chatbot_ws_reg_state(chatbot_wsc_t *w, chatbot_ws_state_t from,
                          chatbot_ws_state_t to)
{
    if (!reg_mutex) {
        w->state = to;
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    /* leaving PARKED: the watcher may be writing a ping on it */
    while (w->borrowed) {
        apr_thread_cond_wait(reg_cond, reg_mutex);
    }
    chatbot_ws_count_state(from, -1);
    chatbot_ws_count_state(to, 1);
    w->state = to;
    if (from == WS_ST_PARKED) {
        w->news = 0; /* awake, it looks for itself */
    }
    if (to == WS_ST_PARKED) {
        /* parked again: it came back from any kick (parked_at > kicked_at
         * says the same, but both are in ms and a loopback pong re-parks it
         * within the kick's millisecond: then the next news waited for
         * KICK_RETRY_MS) */
        w->kicked_at = 0;
        w->leaned = 0;
    }
    if (to == WS_ST_PARKED && chatbot_store() &&
        chat_store_user_seq(chatbot_store(), &w->id.owner) != w->user_seq) {
        /* news came after it last looked and before it was parked: the
         * watcher took it for a running connection then (and woke no one),
         * and sees no new event now; kick it at once */
        w->news = 1;
        if (watch_cond) {
            watch_now = 1;
            apr_thread_cond_signal(watch_cond);
        }
    }
    apr_thread_mutex_unlock(reg_mutex);
}

void chatbot_ws_reg_engine(chatbot_wsc_t *w, chatbot_engine_t *e)
{
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
    }
    w->eng = e;
    if (reg_mutex) {
        apr_thread_mutex_unlock(reg_mutex);
    }
}

/* ---- the worker budget ----------------------------------------------------------------
 */

int chatbot_ws_slot_take(chatbot_wsc_t *w)
{
    int ok = 0;
    chatbot_ws_count_t *m;

    if (w->slot) {
        return 1;
    }
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
    }
    if (slots_used < max_workers) {
        slots_used++;
        w->slot = 1;
        ok = 1;
        if (!w->can_park && (m = chatbot_ws_my_count())) {
            apr_atomic_inc32(&m->blocking);
            /* prefork: count first, then look, so that two children racing
             * for the last place both see each other (both may refuse;
             * neither goes over) */
            if (one_thread &&
                chatbot_ws_blocking_children() > (apr_uint32_t)max_workers) {
                apr_atomic_dec32(&m->blocking);
                slots_used--;
                w->slot = 0;
                ok = 0;
            }
        }
    }
    if (reg_mutex) {
        apr_thread_mutex_unlock(reg_mutex);
    }
    return ok;
}

static apr_status_t request_slot_release(void *data)
{
    conn_rec *c = data;
    chatbot_ws_count_t *m;

    chatbot_ws_ip_answers(c, -1);
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
    }
    slots_used--;
    if (one_thread && (m = chatbot_ws_my_count())) {
        apr_atomic_dec32(&m->blocking);
    }
    if (wait_head && watch_cond) {
        /* a turn waits for this worker, or for its address's cap */
        watch_now = 1;
        apr_thread_cond_signal(watch_cond);
    }
    if (reg_mutex) {
        apr_thread_mutex_unlock(reg_mutex);
    }
    return APR_SUCCESS;
}

int chatbot_workers_take_request(request_rec *r)
{
    conn_rec *c = r->connection;
    chatbot_ws_count_t *m;
    int ok = 0;

    /* count first, then look: two requests racing for the last place
     * both see each other */
    if (max_per_ip > 0 && chatbot_ws_ip_answers(c, 1) > (apr_uint32_t)max_per_ip) {
        chatbot_ws_ip_answers(c, -1);
        return 0;
    }
    if (max_per_ip <= 0) {
        chatbot_ws_ip_answers(c, 1);
    }
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
    }
    /* first come, first served: the queued WebSocket turns go first */
    if (max_workers - slots_used > nwaiting) {
        slots_used++;
        ok = 1;
        if (one_thread && (m = chatbot_ws_my_count())) {
            apr_atomic_inc32(&m->blocking);
            if (chatbot_ws_blocking_children() > (apr_uint32_t)max_workers) {
                apr_atomic_dec32(&m->blocking);
                slots_used--;
                ok = 0;
            }
        }
    }
    if (reg_mutex) {
        apr_thread_mutex_unlock(reg_mutex);
    }
    if (!ok) {
        chatbot_ws_ip_answers(c, -1);
        return 0;
    }
    apr_pool_cleanup_register(r->pool, c, request_slot_release, apr_pool_cleanup_null);
    return 1;
}

void chatbot_ws_slot_release(chatbot_wsc_t *w)
{
    if (!w->slot) {
        return;
    }
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
    }
    slot_release_locked(w);
    if (reg_mutex) {
        apr_thread_mutex_unlock(reg_mutex);
    }
}

void chatbot_ws_watch_news(void)
{
    if (!reg_mutex) {
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    watch_now = 1;
    apr_thread_cond_signal(watch_cond);
    apr_thread_mutex_unlock(reg_mutex);
}

void chatbot_ws_poke(void)
{
    if (!reg_mutex) {
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    if (wait_head) {
        watch_now = 1;
        apr_thread_cond_signal(watch_cond);
    }
    apr_thread_mutex_unlock(reg_mutex);
}

int chatbot_ws_wait_add(chatbot_wsc_t *w)
{
    chatbot_wsc_t *ahead;
    chatbot_ws_count_t *m;
    int pos = 1;

    if (!reg_mutex) {
        return 1;
    }
    apr_thread_mutex_lock(reg_mutex);
    if (!w->waiting) {
        w->wait_next = NULL;
        w->wait_prev = wait_tail;
        if (wait_tail) {
            wait_tail->wait_next = w;
        }
        else {
            wait_head = w;
        }
        wait_tail = w;
        w->waiting = 1;
        w->kicked_at = 0;
        nwaiting++;
        if ((m = chatbot_ws_my_count())) {
            apr_atomic_inc32(&m->waiting);
        }
    }
    for (ahead = wait_head; ahead && ahead != w; ahead = ahead->wait_next) {
        pos++;
    }
    apr_thread_mutex_unlock(reg_mutex);
    return pos;
}

void chatbot_ws_wait_remove(chatbot_wsc_t *w)
{
    if (!w->waiting || !reg_mutex) {
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    wait_unlink(w);
    apr_thread_mutex_unlock(reg_mutex);
}

int chatbot_ws_wait_may_take(chatbot_wsc_t *w)
{
    int ok, free_;

    if (w->slot || !reg_mutex) {
        return 1;
    }
    apr_thread_mutex_lock(reg_mutex);
    free_ = max_workers - slots_used;
    /* first come, first served: a newcomer does not pass the queue */
    ok = free_ > 0 && (!wait_head || w->waiting || free_ > nwaiting);
    apr_thread_mutex_unlock(reg_mutex);
    return ok;
}

/* ---- the watcher ----------------------------------------------------------------------
 */

/* Ends a parked connection: its socket's reading side is shut, which the
 * MPM sees as readable at once (or, waiting to write, both sides: the
 * client reads nothing anyway). The worker that gets it says goodbye. */
static void kick_shut(chatbot_wsc_t *w, chatbot_ws_kick_t why)
{
    apr_socket_t *s;
    apr_os_sock_t fd = -1;

    if (w->kick != WS_KICK_NONE) {
        return;
    }
    w->kick = why;
    s = ap_get_conn_socket(w->c);
    /* a socket httpd closed reads -1 here (APR sets it before closing) */
    if (s && apr_os_sock_get(&fd, s) == APR_SUCCESS && fd >= 0) {
        shutdown(fd, w->park_sense == CONN_SENSE_WANT_WRITE ? SHUT_RDWR : SHUT_RD);
    }
}

/* Wakes a connection a thread runs (its poll returns). */
static void wake(chatbot_wsc_t *w)
{
    if (w->eng) {
        chatbot_engine_wakeup(w->eng);
    }
    else if (w->wakefd >= 0) {
        uint64_t one = 1;
        if (write(w->wakefd, &one, sizeof(one)) < 0) {
            /* a full counter wakes it just as well */
        }
    }
}

static int ping_due(chatbot_wsc_t *w, apr_uint64_t now)
{
    apr_uint64_t last = w->last_ping > w->parked_at ? w->last_ping : w->parked_at;

    return w->park_ping_ms && now - last >= w->park_ping_ms;
}

/* A kicked connection answers with a pong, which wakes it: it is pinged
 * again only once it came back and parked again, or when the pong seems
 * lost. */
static int may_kick(chatbot_wsc_t *w, apr_uint64_t now)
{
    return w->parked_at > w->kicked_at || now - w->kicked_at >= KICK_RETRY_MS;
}

static int held_expired(chatbot_wsc_t *w, apr_uint64_t now)
{
    return w->waiting && now - w->held_since > (apr_uint64_t)w->lim.total_timeout_ms;
}

static void *APR_THREAD_FUNC watch(apr_thread_t *thd, void *data)
{
    apr_uint64_t seen = 0;
    int stop_told = 0;

    while (!watcher_exit) {
        chatbot_wsc_t *batch[PING_BATCH], *w;
        char ping[PING_BATCH], lean[PING_BATCH];
        chat_store_t *st = chatbot_store();
        apr_uint64_t ev, now;
        int stopping, news, n = 0, i, free_;

        if (!reg_mutex) {
            apr_sleep(apr_time_from_msec(WATCH_MS));
            continue;
        }
        apr_thread_mutex_lock(reg_mutex);
        if (!watch_now) {
            apr_thread_cond_timedwait(watch_cond, reg_mutex,
                                      apr_time_from_msec(WATCH_MS));
        }
        watch_now = 0;
        apr_thread_mutex_unlock(reg_mutex);
        if (!st || watcher_exit) {
            continue;
        }
        ev = chat_store_events(st);
        news = ev != seen;
        seen = ev;
        stopping = chatbot_child_stopping();
        now = chatbot_now_ms();
        apr_thread_mutex_lock(reg_mutex);
        for (w = reg_head; w; w = w->reg_next) {
            if (w->state == WS_ST_HANDSHAKE || w->state == WS_ST_DONE) {
                continue;
            }
            if (w->state != WS_ST_PARKED) {
                apr_uint64_t seq = news ? chat_store_user_seq(st, &w->id.owner) : 0;
                if ((stopping && !stop_told) || (news && seq != w->watched_seq)) {
                    w->watched_seq = seq ? seq : w->watched_seq;
                    wake(w);
                }
                continue;
            }
            if (w->borrowed) {
                continue;
            }
            if (stopping) {
                kick_shut(w, WS_KICK_STOP);
                continue;
            }
            if (w->lim.idle_timeout_ms > 0 &&
                (apr_int64_t)(now - w->last_rx) > w->lim.idle_timeout_ms) {
                kick_shut(w, WS_KICK_IDLE);
                continue;
            }
            if (news && chat_store_user_seq(st, &w->id.owner) != w->user_seq) {
                w->news = 1; /* told at the next kick it may get */
            }
            if (n < PING_BATCH) {
                ping[n] = ping_due(w, now) ||
                          ((w->news || held_expired(w, now)) && may_kick(w, now));
                lean[n] = !w->leaned && now - w->parked_at >= LEAN_AFTER_MS;
                if (ping[n]) {
                    w->news = 0;
                    w->kicked_at = now;
                }
                if (ping[n] || lean[n]) {
                    w->leaned |= lean[n];
                    w->borrowed = 1;
                    batch[n++] = w;
                }
            }
        }
        /* turns waiting for a worker: as many as there are free workers
         * (and room in their address's cap) are pinged to come */
        free_ = max_workers - slots_used;
        for (w = wait_head; w && free_ > 0 && !stopping; w = w->wait_next) {
            if (max_per_ip > 0 &&
                chatbot_ws_ip_answers(w->c, 0) >= (apr_uint32_t)max_per_ip) {
                continue;
            }
            free_--;
            if (w->state == WS_ST_PARKED && !w->borrowed && n < PING_BATCH &&
                may_kick(w, now)) {
                w->kicked_at = now;
                w->borrowed = 1;
                ping[n] = 1;
                lean[n] = 0;
                batch[n++] = w;
            }
        }
        apr_thread_mutex_unlock(reg_mutex);
        /* each connection is given back as soon as it is done: a worker
         * that wants one (its client sent something) waits for that one
         * only, not for the whole batch */
        for (i = 0; i < n; i++) {
            if (lean[i]) {
                chatbot_ws_lean(batch[i]->c);
            }
            if (ping[i]) {
                chatbot_ws_ping_parked(batch[i]);
            }
            apr_thread_mutex_lock(reg_mutex);
            batch[i]->borrowed = 0;
            apr_thread_cond_broadcast(reg_cond);
            apr_thread_mutex_unlock(reg_mutex);
        }
        stop_told |= stopping;
        chatbot_engine_prune(MULTI_IDLE_MS);
    }
    return NULL;
}

static apr_status_t watcher_stop(void *data)
{
    apr_status_t rv;

    watcher_exit = 1;
    if (reg_mutex) {
        apr_thread_mutex_lock(reg_mutex);
        watch_now = 1;
        apr_thread_cond_signal(watch_cond);
        apr_thread_mutex_unlock(reg_mutex);
    }
    if (watcher) {
        apr_thread_join(&rv, watcher);
        watcher = NULL;
    }
    return APR_SUCCESS;
}

/* The child_stopping hook: on a graceful stop every parked connection is
 * kicked at once (1001 within moments, as a running one says it); running
 * ones are woken. On an immediate stop the MPM closes what it holds. */
void chatbot_ws_child_stopping(int graceful)
{
    chatbot_wsc_t *w;

    if (!reg_mutex) {
        return;
    }
    apr_thread_mutex_lock(reg_mutex);
    for (w = reg_head; w; w = w->reg_next) {
        if (w->state == WS_ST_PARKED) {
            if (graceful && !w->borrowed) {
                kick_shut(w, WS_KICK_STOP);
            }
        }
        else if (w->state != WS_ST_HANDSHAKE && w->state != WS_ST_DONE) {
            wake(w);
        }
    }
    apr_thread_mutex_unlock(reg_mutex);
}

void chatbot_ws_child_init(apr_pool_t *p, server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);

    one_thread = chatbot_ws_mpm_one_thread();
    max_workers = chatbot_ws_max_workers(sc);
    chatbot_ws_counts_child_init(max_workers);
    max_per_ip = chatbot_ws_max_answers_per_ip(sc);
    chatbot_ws_handshake_child_init(p);
    if (apr_thread_mutex_create(&reg_mutex, APR_THREAD_MUTEX_DEFAULT, p) != APR_SUCCESS ||
        apr_thread_cond_create(&reg_cond, p) != APR_SUCCESS ||
        apr_thread_cond_create(&watch_cond, p) != APR_SUCCESS) {
        reg_mutex = NULL;
        return;
    }
    watcher_exit = 0;
    if (apr_thread_create(&watcher, NULL, watch, NULL, p) == APR_SUCCESS) {
        apr_pool_cleanup_register(p, NULL, watcher_stop, apr_pool_cleanup_null);
    }
    else {
        watcher = NULL;
        ap_log_error(
            APLOG_MARK, APLOG_ERR, 0, s,
            APLOGNO(
                10951) "chatbot: cannot start the watcher thread; idle WebSockets get no "
                       "pings and notice session changes only when the client sends");
    }
}

void chatbot_ws_register(apr_pool_t *p)
{
    chatbot_ws_mpm_register(p);
}
