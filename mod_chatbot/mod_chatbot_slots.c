/* mod_chatbot_slots.c - a turn's place at a backend: the slot or the fair
 * queue shared by all children, the circuit breaker, failover to the next
 * backend, and the backend's health as turns find it.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_engine.h"

/* Records a turn's outcome as the backend's health, keeping the version
 * the last probe found. */
void chatbot_backend_health_note(chat_store_t *st, chatbot_backend_t *be, int ok,
                                 const char *detail)
{
    chat_store_backend_health(st, be->index, ok, NULL, detail, chatbot_now_ms());
}

const char *chatbot_turn_acquire(chatbot_turn_priv_t *t)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();
    apr_array_header_t *bes = p->bot->backends;
    const char *why = NULL;
    int open_seen = 0, full_seen = 0;

    for (; t->backend_i < bes->nelts; t->backend_i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(bes, t->backend_i, chatbot_backend_t *);
        int32_t pos = 0;
        chat_status_t rc;
        int allow, generating = 0;
        apr_uint64_t now = chatbot_now_ms();

        if (t->pre.tried && t->pre.backend == be->index) {
            /* asked with the turn's start (chat_store_turn_start_acquire),
             * which may have made the state generating too */
            rc = t->pre.rc;
            pos = t->pre.position;
            generating = t->pre.generating;
        }
        else {
            rc = chat_store_backend_acquire(st, be->index, t->ticket, now, &pos);
        }
        t->pre.tried = 0;
        if (rc == CHAT_OK) {
            /* The breaker is asked only when a request would go out: a
             * half-open backend's single probe must be a real request, not
             * a turn that then waits in the queue. */
            allow = chat_store_breaker_allow(
                st, be->index, now, (uint64_t)apr_time_as_msec(e->sc->breaker_cooldown));
            if (!allow) {
                chat_store_backend_release(st, be->index, t->ticket);
                if (generating) { /* back to what it was: no request went out */
                    chat_store_gen_state(st, p->conv_id, t->token, CHAT_CONV_QUEUED, 0);
                }
                open_seen = 1;
                continue;
            }
        }
        else if (rc == CHAT_EAGAIN && !t->stateless && pos != t->queued_pos) {
            chat_store_gen_state(st, p->conv_id, t->token, CHAT_CONV_QUEUED, pos);
        }
        p->backend = be;
        t->series = p->bot->series ? p->bot->series[t->backend_i] : -1;
        if (rc == CHAT_OK) {
            t->slot_held = 1;
            p->queue_ms = (double)(now - t->t_queued);
            chat_metrics_gauge_add(st, CHAT_G_QUEUED, -1);
            chat_metrics_gauge_add(st, CHAT_G_GENERATING, 1);
            t->phase = CHATBOT_PH_RUNNING;
            if (!t->stateless && !generating) {
                chat_store_gen_state(st, p->conv_id, t->token, CHAT_CONV_GENERATING, 0);
                chat_store_user_bump(st, &e->id.owner);
            }
            if (e->cb.on_status) {
                e->cb.on_status(e->baton, p, "generating", 0);
            }
            if ((why = chatbot_turn_send(t)) != NULL) {
                return why;
            }
            return NULL;
        }
        if (rc == CHAT_EAGAIN) {
            t->t_queue_poll = now;
            if (pos != t->queued_pos) {
                if (!t->stateless) {
                    chat_store_user_bump(st, &e->id.owner);
                }
                t->queued_pos = pos;
                if (e->cb.on_status) {
                    e->cb.on_status(e->baton, p, "queued", pos);
                }
            }
            return NULL;
        }
        full_seen = 1; /* CHAT_EFULL: try the next backend */
    }
    if (full_seen) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "every backend of bot '%s' is busy and its waiting queue is full; "
                     "please retry in a moment",
                     p->bot->name);
        return CHAT_ERR_QUEUE_FULL;
    }
    if (open_seen) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "the backend of bot '%s' is failing (circuit breaker open after %d "
                     "consecutive failures); retrying automatically in up to %d s",
                     p->bot->name, e->sc->breaker_threshold,
                     (int)apr_time_sec(e->sc->breaker_cooldown));
        return CHAT_ERR_BACKEND_UNREACHABLE;
    }
    apr_snprintf(p->err_msg, sizeof(p->err_msg), "bot '%s' has no backend", p->bot->name);
    return CHAT_ERR_BACKEND_UNREACHABLE;
}

int chatbot_turn_failover(chatbot_turn_priv_t *t)
{
    chat_store_t *st = chatbot_store();

    if (t->pub.tokens > 0 || t->backend_i + 1 >= t->pub.bot->backends->nelts) {
        return 0;
    }
    if (t->slot_held) {
        chat_store_backend_release(st, t->pub.backend->index, t->ticket);
    }
    if (t->health_down) {
        chatbot_backend_health_note(st, t->pub.backend, 0, t->pub.err_msg);
    }
    t->slot_held = 0;
    t->health_down = 0;
    chatbot_turn_detach(t);
    ap_log_rerror(
        APLOG_MARK, APLOG_NOTICE, 0, t->e->r,
        APLOGNO(
            10932) "chatbot: backend %s failed (%s); failing over to the next backend of "
                   "bot %s",
        t->pub.backend->name, t->pub.err_msg, t->pub.bot->name);
    chat_metrics_gauge_add(st, CHAT_G_GENERATING, -1);
    chat_metrics_gauge_add(st, CHAT_G_QUEUED, 1);
    t->phase = CHATBOT_PH_QUEUED;
    t->queued_pos = 0;
    t->backend_i++;
    {
        const char *code = chatbot_turn_acquire(t);
        if (code) {
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, code, "%s", t->pub.err_msg);
        }
    }
    return 1;
}

/* Reports a success or failure of the current backend to its circuit
 * breaker. A failure's health detail is written once the error message is
 * known (chatbot_turn_end, chatbot_turn_failover). */
void chatbot_turn_breaker(chatbot_turn_priv_t *t, int ok)
{
    chat_store_t *st = chatbot_store();

    if (!t->pub.backend) {
        return;
    }
    chat_store_breaker_result(st, t->pub.backend->index, ok, chatbot_now_ms(),
                              (uint32_t)t->e->sc->breaker_threshold,
                              (uint64_t)apr_time_as_msec(t->e->sc->breaker_cooldown));
    if (ok) {
        chatbot_backend_health_note(st, t->pub.backend, 1, "");
    }
    t->health_down = !ok;
}
