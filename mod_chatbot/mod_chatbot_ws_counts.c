/* mod_chatbot_ws_counts.c - what this httpd's MPM lets WebSockets do
 * (park, or hold a thread; prefork's one thread per child) and the counters
 * of parked, active, waiting and thread-holding connections that every
 * child keeps in shared memory for mod_status and /metrics (and, under
 * prefork, for the server-wide ChatbotMaxWorkers).
 */
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_mpm.h"
#include "scoreboard.h"
#include "apr_atomic.h"
#include "apr_shm.h"

#include "mod_chatbot_ws.h"

/* ---- counters shared with the other children ----------------------------------- */

static chatbot_ws_count_t *counts;
static int counts_n;
static chatbot_ws_count_t *mine;
static int can_park;    /* this child's MPM parks connections */
static int workers_max; /* ChatbotMaxWorkers in effect, for the counters */

chatbot_ws_count_t *chatbot_ws_my_count(void)
{
    pid_t pid;
    int i;

    if (mine || !counts || !ap_scoreboard_image) {
        return mine;
    }
    pid = getpid();
    for (i = 0; i < counts_n; i++) {
        if (ap_scoreboard_image->parent[i].pid == pid) {
            mine = &counts[i];
            if (mine->pid != (apr_uint32_t)pid) {
                memset((void *)mine, 0, sizeof(*mine));
                mine->pid = (apr_uint32_t)pid;
            }
            break;
        }
    }
    return mine;
}

void chatbot_ws_count_state(chatbot_ws_state_t st, int delta)
{
    chatbot_ws_count_t *m = chatbot_ws_my_count();

    if (!m) {
        return;
    }
    if (st == WS_ST_PARKED) {
        apr_atomic_add32(&m->parked, (apr_uint32_t)delta);
    }
    else if (st == WS_ST_ACTIVE) {
        apr_atomic_add32(&m->active, (apr_uint32_t)delta);
    }
}

void chatbot_ws_counts(chatbot_ws_counts_t *out)
{
    int i;

    memset(out, 0, sizeof(*out));
    out->workers_max = workers_max;
    out->can_park = can_park;
    if (!counts || !ap_scoreboard_image) {
        return;
    }
    for (i = 0; i < counts_n; i++) {
        apr_uint32_t pid = counts[i].pid;
        if (!pid || (apr_uint32_t)ap_scoreboard_image->parent[i].pid != pid) {
            continue;
        }
        out->parked += counts[i].parked;
        out->active += counts[i].active;
        out->waiting += counts[i].waiting;
        out->blocking += counts[i].blocking;
    }
}

/* ---- what this httpd can do ------------------------------------------------------- */

int chatbot_ws_mpm_can_park(void)
{
    return can_park;
}

int chatbot_ws_mpm_parks(void)
{
    int async = 0, waitio = 0;

    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) != APR_SUCCESS) {
        async = 0;
    }
#ifdef AP_MPMQ_CAN_WAITIO
    if (!async || ap_mpm_query(AP_MPMQ_CAN_WAITIO, &waitio) != APR_SUCCESS) {
        waitio = 0;
    }
#endif
    return async && waitio;
}

/* A process-per-connection MPM (prefork): one thread per child, so a bound
 * per child means nothing; the bound counts children across the server. */
int chatbot_ws_mpm_one_thread(void)
{
    int threaded = 0;

    if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) != APR_SUCCESS) {
        return 0;
    }
    return threaded == AP_MPMQ_NOT_SUPPORTED;
}

int chatbot_ws_max_workers(chatbot_srv_conf *sc)
{
    int tpc = 0, daemons = 0;

    if (sc->max_workers > 0) {
        return sc->max_workers;
    }
    if (chatbot_ws_mpm_one_thread()) {
        /* half of MaxRequestWorkers: the other processes stay for plain HTTP */
        if (ap_mpm_query(AP_MPMQ_MAX_DAEMONS, &daemons) != APR_SUCCESS) {
            daemons = 0;
        }
        return daemons / 2 > 1 ? daemons / 2 : 1;
    }
    /* half of a child's threads: the other half stays for plain HTTP */
    if (ap_mpm_query(AP_MPMQ_MAX_THREADS, &tpc) != APR_SUCCESS) {
        tpc = 0;
    }
    return tpc / 2 > 1 ? tpc / 2 : 1;
}

/* Under prefork: children holding a WebSocket, across the server. */
apr_uint32_t chatbot_ws_blocking_children(void)
{
    apr_uint32_t n = 0;
    int i;

    if (!counts || !ap_scoreboard_image) {
        return 0;
    }
    for (i = 0; i < counts_n; i++) {
        apr_uint32_t pid = counts[i].pid;
        if (pid && (apr_uint32_t)ap_scoreboard_image->parent[i].pid == pid) {
            n += counts[i].blocking;
        }
    }
    return n;
}

apr_status_t chatbot_ws_post_config(apr_pool_t *pconf, server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    apr_pool_t *pp = s->process->pool;
    apr_shm_t *shm = NULL;
    const char *mpm = ap_show_mpm();
    void *data = NULL;
    int n = 0;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return APR_SUCCESS;
    }
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &n) != APR_SUCCESS || n < 1) {
        n = 1;
    }
    apr_pool_userdata_get(&data, "chatbot-ws-counts", pp);
    if (data) {
        shm = data;
    }
    else if (apr_shm_create(&shm, (apr_size_t)n * sizeof(chatbot_ws_count_t), NULL, pp) ==
             APR_SUCCESS) {
        memset(apr_shm_baseaddr_get(shm), 0, apr_shm_size_get(shm));
        apr_pool_userdata_set(shm, "chatbot-ws-counts", apr_pool_cleanup_null, pp);
    }
    else {
        shm = NULL;
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            APLOGNO(10953) "chatbot: no shared memory for the connection counters; "
                           "mod_status and /metrics will not show parked connections");
    }
    if (shm) {
        counts = apr_shm_baseaddr_get(shm);
        counts_n = (int)(apr_shm_size_get(shm) / sizeof(chatbot_ws_count_t));
    }
    /* One line per httpd start: how WebSockets use threads here. */
    apr_pool_userdata_get(&data, "chatbot-ws-told", pp);
    if (!data) {
        apr_pool_userdata_set((void *)1, "chatbot-ws-told", apr_pool_cleanup_null, pp);
        if (chatbot_ws_mpm_parks()) {
            ap_log_error(
                APLOG_MARK, APLOG_NOTICE, 0, s,
                APLOGNO(10954) "chatbot: idle WebSockets are parked in the %s MPM and "
                               "hold no "
                               "thread; answers being streamed hold at most %d worker "
                               "thread(s) per child (ChatbotMaxWorkers)",
                mpm ? mpm : "?", chatbot_ws_max_workers(sc));
        }
        else {
            ap_log_error(
                APLOG_MARK, APLOG_NOTICE, 0, s,
                APLOGNO(
                    10955) "chatbot: the %s MPM of this httpd cannot park connections "
                           "(that needs the event MPM of httpd 2.4.63 or later): every "
                           "open WebSocket holds a worker thread for its whole life, at "
                           "most %d %s (ChatbotMaxWorkers); see docs/websocket.md",
                mpm ? mpm : "?", chatbot_ws_max_workers(sc),
                chatbot_ws_mpm_one_thread() ? "child processes at once, server-wide"
                                            : "per child");
        }
    }
    return APR_SUCCESS;
}

void chatbot_ws_counts_child_init(int max_workers)
{
    mine = NULL;
    can_park = chatbot_ws_mpm_parks();
    workers_max = max_workers;
}
