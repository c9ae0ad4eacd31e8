/* mod_chatbot_engine.c - the chat turn engine's life and pulse: an engine
 * made and destroyed with its turns, driven by the front door's loop
 * (wait, poll, run), turns stopped and timed out. How a turn goes is told
 * in mod_chatbot_engine.h.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_engine.h"

#define QUEUE_POLL_MS 50
#define ACTIVE_POLL_MS 50
#define LOADING_AFTER_MS 1500
#define BEAT_EVERY_MS 1000
#define DONE_GRACE_MS 1000 /* after DONE, the body may take this long to end */

static struct chatbot_engine_notes *engine_notes(request_rec *r)
{
    void *data = NULL;

    apr_pool_userdata_get(&data, "chatbot-engine-notes", r->pool);
    if (!data) {
        data = apr_pcalloc(r->pool, sizeof(struct chatbot_engine_notes));
        apr_pool_userdata_setn(data, "chatbot-engine-notes", apr_pool_cleanup_null,
                               r->pool);
    }
    return data;
}

void chatbot_engine_prune(apr_uint64_t idle_ms)
{
    chatbot_http_client_prune(idle_ms);
}

/* ---- engine lifetime --------------------------------------------------------------- */

static apr_status_t engine_cleanup(void *data)
{
    chatbot_engine_t *e = data;
    int i;

    /* Turns still running when the pool goes (aborted connection): end them
     * properly so the store is left consistent. */
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        chatbot_turn_priv_t *t = &e->turns[i];
        if (t->phase != CHATBOT_PH_IDLE) {
            memset(&e->cb, 0, sizeof(e->cb));
            chatbot_turn_end(t, CHATBOT_OUT_STOPPED, NULL, "connection ended");
        }
    }
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        chatbot_turn_priv_t *t = &e->turns[i];
        chatbot_turn_detach(t);
        chatbot_http_xfer_free(t->xfer);
        t->xfer = NULL;
        if (t->parser) {
            chat_stream_destroy(t->parser);
            t->parser = NULL;
        }
        chat_buf_free(&t->body);
        chat_buf_free(&t->errbody);
        chat_buf_free(&t->pub.answer);
    }
    if (e->http) {
        chatbot_http_client_put(e->http);
        e->http = NULL;
    }
    chat_buf_free(&e->scratch);
    return APR_SUCCESS;
}

/* Each thread keeps the pool of the last engine it destroyed, cleared, for
 * the next engine it creates: Debian's APR maps every block with its own
 * mmap, so a fresh allocator per busy period cost three mmap/munmap pairs
 * and their page faults per turn of a closed loop. At most one pool per
 * thread, and its allocator keeps at most ENGINE_SPARE_KEEP bytes of free
 * blocks, so what a thread holds is bounded; the thread's blocks go with
 * the child. */
#define ENGINE_SPARE_KEEP (64 * 1024)

static __thread apr_pool_t *engine_spare;

static apr_pool_t *engine_spare_take(void)
{
    apr_pool_t *p = engine_spare;

    engine_spare = NULL;
    return p;
}

static void engine_spare_give(apr_pool_t *p)
{
    if (engine_spare) {
        apr_pool_destroy(p);
        return;
    }
    apr_pool_clear(p);
    engine_spare = p;
}

static apr_status_t engine_pool_kill(void *data)
{
    apr_pool_destroy(data);
    return APR_SUCCESS;
}

chatbot_engine_t *chatbot_engine_create(request_rec *r, const chatbot_limits_t *lim,
                                        const chatbot_ident_t *id,
                                        const chatbot_turn_cb_t *cb, void *baton)
{
    apr_allocator_t *al = NULL;
    apr_pool_t *pool = NULL;
    chatbot_engine_t *e;
    int i;

    /* Its own allocator: what the turns allocated is freed with the engine,
     * instead of staying with the connection (a request's allocator keeps
     * every block it ever gave out for as long as the connection lives).
     * The thread's spare, if it has one, saves mapping fresh blocks. */
    pool = engine_spare_take();
    if (!pool) {
        if (apr_allocator_create(&al) != APR_SUCCESS ||
            apr_pool_create_unmanaged_ex(&pool, NULL, al) != APR_SUCCESS) {
            if (al) {
                apr_allocator_destroy(al);
            }
            return NULL;
        }
        apr_allocator_owner_set(al, pool);
        apr_allocator_max_free_set(al, ENGINE_SPARE_KEEP);
    }
    apr_pool_cleanup_register(r->pool, pool, engine_pool_kill, apr_pool_cleanup_null);
    e = apr_pcalloc(pool, sizeof(*e));
    e->r = r;
    e->pool = pool;
    e->notes = engine_notes(r);
    e->sc = chatbot_srv(r->server);
    e->lim = *lim;
    e->id = *id;
    e->cb = *cb;
    e->baton = baton;
    e->http = chatbot_http_client_get();
    if (!e->http) {
        chatbot_engine_destroy(e);
        return NULL;
    }
    chat_buf_init(&e->scratch);
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        e->turns[i].e = e;
        chat_buf_init(&e->turns[i].body);
        chat_buf_init(&e->turns[i].errbody);
        chat_buf_init(&e->turns[i].pub.answer);
    }
    apr_pool_cleanup_register(pool, e, engine_cleanup, apr_pool_cleanup_null);
    return e;
}

void chatbot_engine_destroy(chatbot_engine_t *e)
{
    if (e) {
        apr_pool_cleanup_kill(e->r->pool, e->pool, engine_pool_kill);
        engine_spare_give(e->pool);
    }
}

int chatbot_engine_active(chatbot_engine_t *e)
{
    int i, n = 0;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        n += e->turns[i].phase != CHATBOT_PH_IDLE;
    }
    return n;
}

int chatbot_engine_has(chatbot_engine_t *e, const char *conv_id)
{
    int i;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != CHATBOT_PH_IDLE &&
            !strcmp(e->turns[i].pub.conv_id, conv_id)) {
            return 1;
        }
    }
    return 0;
}
void chatbot_engine_stop(chatbot_engine_t *e, const char *conv_id, const char *reason)
{
    int i;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        chatbot_turn_priv_t *t = &e->turns[i];
        if (t->phase == CHATBOT_PH_IDLE || (conv_id && strcmp(t->pub.conv_id, conv_id))) {
            continue;
        }
        t->pub.stop_reason = reason;
        chatbot_turn_end(t, CHATBOT_OUT_STOPPED, NULL, NULL);
    }
}

/* ---- driving --------------------------------------------------------------- */

int chatbot_engine_wait_ms(chatbot_engine_t *e)
{
    int i, w = -1;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        int tw;
        if (e->turns[i].phase == CHATBOT_PH_QUEUED) {
            tw = QUEUE_POLL_MS;
        }
        else if (e->turns[i].phase == CHATBOT_PH_RUNNING) {
            tw = ACTIVE_POLL_MS;
        }
        else {
            continue;
        }
        if (w < 0 || tw < w) {
            w = tw;
        }
    }
    return w;
}

apr_status_t chatbot_engine_poll(chatbot_engine_t *e, void *extra, unsigned nextra,
                                 int timeout_ms)
{
    return chatbot_http_poll(e->http, extra, nextra, timeout_ms);
}

void chatbot_engine_wakeup(chatbot_engine_t *e)
{
    if (e && e->http) {
        chatbot_http_wakeup(e->http);
    }
}

static void check_timeouts(chatbot_turn_priv_t *t, apr_uint64_t now)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();

    /* Stop from another connection (tab, child), queued or running, or a
     * lost claim on the conversation */
    if (!t->stateless && chat_store_gen_stop_requested(st, p->conv_id, t->token)) {
        p->stop_reason = "stopped";
        chatbot_turn_end(t, CHATBOT_OUT_STOPPED, NULL, NULL);
        return;
    }
    if (t->phase == CHATBOT_PH_QUEUED) {
        if ((apr_int64_t)(now - t->t_start) > e->lim.total_timeout_ms) {
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                             "waited %d s in the queue for backend '%s'; giving up",
                             (int)(e->lim.total_timeout_ms / 1000),
                             p->backend ? p->backend->name : "-");
            return;
        }
        if (now - t->t_queue_poll >= QUEUE_POLL_MS) {
            const char *c = chatbot_turn_acquire(t);
            if (c) {
                chatbot_turn_end(t, CHATBOT_OUT_FAILED, c, "%s", p->err_msg);
            }
        }
        return;
    }
    if (t->phase != CHATBOT_PH_RUNNING) {
        return;
    }
    if (t->parser && chat_stream_is_done(t->parser) && !t->backend_error &&
        !t->abort_code && now - t->t_sent >= DONE_GRACE_MS &&
        (!t->t_last || now - t->t_last >= DONE_GRACE_MS)) {
        /* The server said the answer is done but keeps the response open
         * (pings after [DONE], a proxy holding the body): the answer is
         * complete; closing the request is all that is left. */
        chatbot_turn_breaker(t, 1);
        chatbot_turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
        return;
    }
    if (!t->t_first) {
        if ((apr_int64_t)(now - t->t_sent) > e->lim.first_token_timeout_ms) {
            chatbot_turn_breaker(t, 0);
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                "backend '%s' produced no answer within %d s (model '%s' still "
                "loading? see ChatbotFirstTokenTimeout)",
                p->backend->name, (int)(e->lim.first_token_timeout_ms / 1000), p->model);
            return;
        }
        if (!t->loading_sent && now - t->t_sent >= LOADING_AFTER_MS) {
            t->loading_sent = 1;
            if (e->cb.on_status) {
                e->cb.on_status(e->baton, p, "loading", 0);
            }
        }
    }
    else if ((apr_int64_t)(now - t->t_last) > e->lim.token_timeout_ms) {
        chatbot_turn_breaker(t, 0);
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                         "backend '%s' stalled: no token for %d s (partial answer kept)",
                         p->backend->name, (int)(e->lim.token_timeout_ms / 1000));
        return;
    }
    if ((apr_int64_t)(now - t->t_start) > e->lim.total_timeout_ms) {
        chatbot_turn_end(
            t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
            "the answer took longer than %d s (ChatbotTotalTimeout); partial answer "
            "kept",
            (int)(e->lim.total_timeout_ms / 1000));
        return;
    }
    if (now - t->t_beat >= BEAT_EVERY_MS && t->slot_held) {
        t->t_beat = now;
        chat_store_backend_beat(st, p->backend->index, t->ticket, now);
    }
}

/* A transfer ended (chatbot_http_run). */
static void transfer_done(void *baton, chatbot_http_result_t res, const char *errtext)
{
    chatbot_turn_priv_t *t = baton;

    if (t && t->phase == CHATBOT_PH_RUNNING) {
        chatbot_turn_transfer_done(t, res, errtext);
    }
}

/* Stores what the transfers' run brought to a turn that goes on (one that
 * ended has stored all of it). A store that refuses it ends the turn, as
 * the write callback's abort did. */
static void store_due(chatbot_turn_priv_t *t)
{
    if (!t->store_due) {
        return;
    }
    t->store_due = 0;
    if (t->phase == CHATBOT_PH_RUNNING && chatbot_turn_flush(t, 0) < 0) {
        apr_cpystrn(t->pub.err_msg, t->abort_msg, sizeof(t->pub.err_msg));
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, t->abort_code, "%s", t->abort_msg);
    }
}

void chatbot_engine_run(chatbot_engine_t *e)
{
    apr_uint64_t now;
    int i;

    chatbot_http_run(e->http, transfer_done);
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        store_due(&e->turns[i]);
    }
    now = chatbot_now_ms();
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != CHATBOT_PH_IDLE) {
            check_timeouts(&e->turns[i], now);
        }
    }
}
