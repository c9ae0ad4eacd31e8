/* mod_chatbot_turn.c - a turn's life in the store and the logs: started
 * (the conversation claimed, the user's message, an edit or a regenerate
 * stored), ended (answer finished, metrics, log line, access-log notes).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_engine.h"

#define LOG_CONTENT_MAX 4000 /* bytes of prompt/answer logged with ChatbotLogContent */

/* ---- starting a turn ------------------------------------------------------- */

/* A new message's turn in the store: generation, message, list at once,
 * and the first backend's slot with them where the store can (one round
 * trip on redis; chatbot_turn_acquire then uses the answer). */
static chat_status_t turn_start(chatbot_turn_priv_t *t, const chatbot_turn_req_t *req,
                                apr_uint64_t now)
{
    apr_array_header_t *bes = req->bot->backends;

    t->pre.tried = 0;
    t->pre.backend = bes->nelts ? APR_ARRAY_IDX(bes, 0, chatbot_backend_t *)->index : -1;
    t->pre.ticket = t->ticket;
    t->pre.now_ms = now;
    /* the context chatbot_turn_context reads once the slot is taken
     * (mod_chatbot_context.c): a store may read it with the start */
    t->pre.ctx_msgs = t->stateless ? 0 : (uint32_t)req->bot->context_messages;
    t->pre.ctx_bytes = (size_t)req->bot->context_tokens * 4;
    if (req->known) {
        return chat_store_turn_start_bot(
            chatbot_store(), &t->e->id.owner, t->pub.conv_id, req->bot->name, t->token,
            CHAT_CONV_QUEUED, req->content, req->len,
            (req->content[0] == '!' ? CHAT_MSG_COMMAND : 0) | req->msg_flags, now,
            &t->pub.user_index, bes->nelts ? &t->pre : NULL);
    }
    return chat_store_turn_start_acquire(
        chatbot_store(), &t->e->id.owner, t->pub.conv_id, t->token, CHAT_CONV_QUEUED,
        req->content, req->len,
        (req->content[0] == '!' ? CHAT_MSG_COMMAND : 0) | req->msg_flags, now,
        &t->pub.user_index, bes->nelts ? &t->pre : NULL);
}

const char *chatbot_turn_start(chatbot_engine_t *e, const chatbot_turn_req_t *req,
                               char *errmsg, apr_size_t errcap)
{
    chat_store_t *st = chatbot_store();
    chatbot_turn_priv_t *t = NULL;
    chatbot_turn_t *p;
    chat_status_t rc;
    apr_uint64_t now = chatbot_now_ms();
    const char *code;
    int i, one_step;

    if (!st) {
        apr_cpystrn(errmsg, "the chat store is not available", errcap);
        return CHAT_ERR_INTERNAL;
    }
    if (!req->conv_id && (req->mode != CHATBOT_TURN_NEW || !req->content)) {
        apr_cpystrn(errmsg, "a stateless turn needs a new message", errcap);
        return CHAT_ERR_BAD_REQUEST;
    }
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != CHATBOT_PH_IDLE && req->conv_id &&
            !strcmp(e->turns[i].pub.conv_id, req->conv_id)) {
            apr_cpystrn(errmsg,
                        "this conversation is already generating an answer; stop "
                        "it first",
                        errcap);
            return CHAT_ERR_BUSY;
        }
        if (!t && e->turns[i].phase == CHATBOT_PH_IDLE) {
            t = &e->turns[i];
        }
    }
    if (!t) {
        apr_snprintf(errmsg, errcap,
                     "at most %d answers can be generated at once per "
                     "connection",
                     CHATBOT_MAX_TURNS);
        return CHAT_ERR_BUSY;
    }
    if (!t->pool && apr_pool_create(&t->pool, e->pool) != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    p = &t->pub;
    memset(&p->stats, 0, sizeof(p->stats));
    chat_stats_init(&p->stats);
    t->stateless = req->conv_id == NULL;
    t->branch_answer = 0;
    t->ctx = NULL;
    t->nctx = 0;
    apr_cpystrn(p->conv_id, req->conv_id ? req->conv_id : "", sizeof(p->conv_id));
    p->msg_id = req->msg_id ? apr_pstrdup(t->pool, req->msg_id) : NULL;
    p->bot = req->bot;
    p->model = req->bot->model;
    p->backend = NULL;
    p->has_answer = 0;
    p->outcome = CHATBOT_OUT_NONE;
    p->err_code = NULL;
    p->err_msg[0] = '\0';
    p->err_detail[0] = '\0';
    p->stop_reason = NULL;
    p->ttft_ms = p->duration_ms = p->queue_ms = 0;
    p->tokens = 0;
    t->stored = 0;
    t->t_stored = 0;
    t->store_due = 0;
    t->token = chatbot_random64();
    t->ticket = chatbot_random64();
    t->backend_i = 0;
    t->slot_held = 0;
    t->queued_pos = 0;
    t->pre.tried = 0;
    t->t_start = now;
    t->t_queued = t->t_sent = t->t_first = t->t_last = 0;
    t->t_beat = now;
    t->series = -1;
    t->log_prompt = NULL;

    if (t->stateless) {
        chatbot_turn_stateless_context(t, req);
        p->user_index = (uint32_t)req->nhistory;
        goto accepted;
    }
    /* a new message: the generation, the message and the list in one call */
    one_step = req->mode == CHATBOT_TURN_NEW;
    if (req->known && !one_step) {
        return CHATBOT_TURN_STALE; /* only a new message checks as it starts */
    }
    rc = one_step ? turn_start(t, req, now)
                  : chat_store_gen_begin(st, &e->id.owner, p->conv_id, t->token,
                                         CHAT_CONV_QUEUED, now);
    if (rc == CHAT_EBUSY) {
        /* The store takes a conversation over at once when the process
         * generating in it died. A generator of unknown process that has
         * not written for longer than any answer may take is gone too. */
        chat_conv_info_t ci;
        if (chat_store_conv_get(st, &e->id.owner, p->conv_id, &ci) == CHAT_OK &&
            now - ci.updated_ms > (apr_uint64_t)e->lim.total_timeout_ms + 60000) {
            chat_store_gen_end(st, p->conv_id, ci.gen_token, now);
            chat_store_msg_flags(st, &e->id.owner, p->conv_id, CHAT_MSG_INTERRUPTED,
                                 CHAT_MSG_STREAMING, now);
            rc = one_step ? turn_start(t, req, now)
                          : chat_store_gen_begin(st, &e->id.owner, p->conv_id, t->token,
                                                 CHAT_CONV_QUEUED, now);
        }
    }
    if (req->known &&
        (rc == CHAT_ENOTFOUND || rc == CHAT_ESTALE || rc == CHAT_EUNAVAIL)) {
        /* the caller's look-up, skipped, decides what to say (a current
         * conversation deleted in another tab is forgotten, not an error) */
        return CHATBOT_TURN_STALE;
    }
    if (rc != CHAT_OK && rc != CHAT_EBUSY && rc != CHAT_ENOTFOUND) {
        code = chatbot_store_err(rc); /* the message could not be stored */
        apr_cpystrn(errmsg, chatbot_store_err_text(code), errcap);
        return code;
    }
    if (rc != CHAT_OK) {
        if (rc == CHAT_EBUSY) {
            apr_cpystrn(errmsg,
                        "this conversation is already generating an answer "
                        "(in another tab?); stop it first",
                        errcap);
            return CHAT_ERR_BUSY;
        }
        apr_cpystrn(errmsg, "no such conversation", errcap);
        return CHAT_ERR_NOT_FOUND;
    }
    code = NULL;
    if (one_step) {
        goto accepted;
    }
    if (req->mode == CHATBOT_TURN_NEW || req->mode == CHATBOT_TURN_EDIT) {
        uint32_t parent = CHAT_MSG_NO_PARENT;
        int branch = 0;
        if (req->mode == CHATBOT_TURN_EDIT) {
            /* an edit starts a branch: the new question is a version of the
             * edited one (same parent); the old turns stay, reachable by
             * selecting the earlier version */
            chatbot_tree_t tr;
            if (chatbot_tree_load(st, &e->id.owner, p->conv_id, &e->scratch, &tr) !=
                    CHAT_OK ||
                req->edit_index >= tr.n) {
                code = CHAT_ERR_NOT_FOUND;
                apr_snprintf(errmsg, errcap, "message %u does not exist",
                             req->edit_index);
            }
            else if (tr.role[req->edit_index] != CHAT_ROLE_USER) {
                code = CHAT_ERR_BAD_REQUEST;
                apr_snprintf(errmsg, errcap, "message %u is not a user message",
                             req->edit_index);
            }
            else if (!chatbot_store_has_versions(st)) {
                /* a store without versions: the later turns are replaced */
                chat_store_msg_truncate(st, &e->id.owner, p->conv_id, req->edit_index,
                                        now);
            }
            else {
                parent = tr.parent[req->edit_index];
                branch = 1;
            }
            chatbot_tree_free(&tr);
        }
        if (!code) {
            uint32_t fl =
                (req->content[0] == '!' ? CHAT_MSG_COMMAND : 0) | req->msg_flags;
            rc = branch ? chat_store_msg_branch(st, &e->id.owner, p->conv_id, parent,
                                                CHAT_ROLE_USER, fl, req->content,
                                                req->len, now, &p->user_index)
                        : chat_store_msg_append(st, &e->id.owner, p->conv_id,
                                                CHAT_ROLE_USER, fl, req->content,
                                                req->len, now, &p->user_index);
            if (rc == CHAT_ELIMIT && branch) {
                code = CHAT_ERR_TOO_LARGE;
                apr_snprintf(errmsg, errcap, "a message keeps at most %u versions",
                             CHAT_MSG_MAX_VERSIONS);
            }
            else if (rc != CHAT_OK) {
                code = chatbot_store_err(rc);
                apr_cpystrn(errmsg, chatbot_store_err_text(code), errcap);
            }
        }
    }
    else { /* regenerate: a new version of the answer to the active path's
            * last user message (after an answer, an error, or nothing) */
        chatbot_tree_t tr;
        uint32_t u = CHAT_MSG_NO_PARENT, nsib = 0;
        if (chatbot_tree_load(st, &e->id.owner, p->conv_id, &e->scratch, &tr) ==
            CHAT_OK) {
            u = chatbot_tree_last_user(&tr);
            for (i = 0; u != CHAT_MSG_NO_PARENT && i < (int)tr.n; i++) {
                nsib += tr.parent[i] == u;
            }
            chatbot_tree_free(&tr);
        }
        if (u == CHAT_MSG_NO_PARENT) {
            code = CHAT_ERR_BAD_REQUEST;
            apr_cpystrn(errmsg, "there is no message to regenerate an answer for",
                        errcap);
        }
        else if (!chatbot_store_has_versions(st)) {
            chat_store_msg_truncate(st, &e->id.owner, p->conv_id, u + 1, now);
            p->user_index = u;
        }
        else if (nsib >= CHAT_MSG_MAX_VERSIONS) {
            code = CHAT_ERR_TOO_LARGE;
            apr_snprintf(errmsg, errcap, "an answer keeps at most %u versions",
                         CHAT_MSG_MAX_VERSIONS);
        }
        else {
            p->user_index = u;
            t->branch_answer = 1;
        }
        chat_buf_reset(&e->scratch, 64 * 1024);
    }
    if (code) {
        chat_store_gen_end(st, p->conv_id, t->token, now);
        return code;
    }
    /* a new turn revives a stopped bot session */
    chat_store_conv_flags(st, &e->id.owner, p->conv_id, 0, CHAT_CONV_STOPPED, now);
    chat_store_user_bump(st, &e->id.owner);

accepted:
    /* Copied only once the turn is sure to end in chatbot_turn_end (which clears
     * the pool). */
    if (e->lim.log_content && req->content &&
        (req->mode == CHATBOT_TURN_NEW || req->mode == CHATBOT_TURN_EDIT)) {
        t->log_prompt =
            apr_pstrmemdup(t->pool, req->content,
                           req->len > LOG_CONTENT_MAX ? LOG_CONTENT_MAX : req->len);
    }
    if (e->cb.on_accepted) {
        e->cb.on_accepted(e->baton, p);
    }
    /* Every turn starts "queued" (counted in the queued gauge) until
     * chatbot_turn_acquire gets a backend slot. */
    t->phase = CHATBOT_PH_QUEUED;
    t->t_queued = now;
    chat_metrics_gauge_add(st, CHAT_G_QUEUED, 1);
    code = chatbot_turn_acquire(t);
    if (code) {
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, code, "%s", p->err_msg);
    }
    return NULL;
}

/* ---- ending a turn -------------------------------------------------------------- */

static void turn_metrics(chatbot_turn_priv_t *t, chat_store_t *st)
{
    chatbot_turn_t *p = &t->pub;
    int s = t->series;

    if (s < 0) {
        return;
    }
    if (p->outcome == CHATBOT_OUT_COMPLETE) {
        chat_metrics_add(st, s, CHAT_CTR_ANSWERS, 1);
    }
    else if (p->has_answer) {
        chat_metrics_add(st, s, CHAT_CTR_INTERRUPTED, 1);
    }
    if (p->outcome == CHATBOT_OUT_FAILED) {
        chat_metrics_add(st, s, CHAT_CTR_ERRORS, 1);
    }
    if (p->stats.completion_tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_TOKENS, (uint64_t)p->stats.completion_tokens);
    }
    else if (p->tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_TOKENS, (uint64_t)p->tokens);
    }
    if (p->stats.prompt_tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_PROMPT_TOKENS, (uint64_t)p->stats.prompt_tokens);
    }
    if (t->t_first) {
        chat_metrics_observe(st, s, CHAT_HIST_TTFT, p->ttft_ms);
    }
    if (p->outcome == CHATBOT_OUT_COMPLETE) {
        chat_metrics_observe(st, s, CHAT_HIST_DURATION, p->duration_ms);
        if (p->stats.tokens_per_sec > 0) {
            chat_metrics_observe(st, s, CHAT_HIST_TPS, p->stats.tokens_per_sec);
        }
    }
    if (t->t_queued) {
        chat_metrics_observe(st, s, CHAT_HIST_QUEUE_WAIT, p->queue_ms);
    }
}

static const char *outcome_name(chatbot_outcome_t o)
{
    switch (o) {
    case CHATBOT_OUT_COMPLETE:
        return "complete";
    case CHATBOT_OUT_STOPPED:
        return "stopped";
    case CHATBOT_OUT_FAILED:
        return "failed";
    default:
        return "none";
    }
}

/* Text for a key="value" field of the turn log line: only '"' and '\\' are
 * escaped here, because the error log itself escapes control characters,
 * non-ASCII bytes and (again) backslashes. */
static const char *log_quote(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, 2 * len + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            *o++ = '\\';
        }
        *o++ = s[i] ? s[i] : ' ';
    }
    *o = '\0';
    return out;
}

/* 1 for the codes of a failing backend (not of the user's request). */
static int backend_failure(const char *code)
{
    return code && (!strcmp(code, CHAT_ERR_BACKEND_UNREACHABLE) ||
                    !strcmp(code, CHAT_ERR_BACKEND_TIMEOUT) ||
                    !strcmp(code, CHAT_ERR_MODEL_NOT_FOUND) ||
                    !strcmp(code, CHAT_ERR_BACKEND_BUSY) ||
                    !strcmp(code, CHAT_ERR_BACKEND_ERROR) ||
                    !strcmp(code, CHAT_ERR_BACKEND_PROTOCOL) ||
                    !strcmp(code, CHAT_ERR_BACKEND_BAD_REQUEST) ||
                    !strcmp(code, CHAT_ERR_INTERRUPTED));
}

/* What the user is told about a failed turn (p->err_msg): for backend
 * failures and internal errors a fixed sentence, never the URL, the
 * backend's reply or a path (those stay in p->err_detail for the log and
 * the health status). Other codes' messages are the module's own words. */
static void user_error_text(chatbot_turn_t *p, const char *code)
{
    const char *text = chat_error_public_text(code ? code : CHAT_ERR_INTERNAL);

    if (!text) {
        return;
    }
    if (code && !strcmp(code, CHAT_ERR_MODEL_NOT_FOUND)) {
        /* the model's name is public (hello, bots): say which */
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "The model '%s' of bot '%s' is not available on its server. Please "
                     "tell the administrator.",
                     p->model, p->bot->name);
    }
    else {
        apr_cpystrn(p->err_msg, text, sizeof(p->err_msg));
    }
    if (p->has_answer || p->tokens > 0) {
        apr_cpystrn(p->err_msg + strlen(p->err_msg), " The partial answer is kept.",
                    sizeof(p->err_msg) - strlen(p->err_msg));
    }
}

/* Keep a failure and its reason in the conversation (it is skipped when
 * building the model's context). After a partial answer it is that
 * answer's reason: history shows the answer as failed with this code and
 * sentence, not as a Stop. Stored as "<code>: <message>"; views split the
 * code out. */
static const char *stored_error(chatbot_turn_priv_t *t, chatbot_outcome_t outcome,
                                const char *code)
{
    if (outcome != CHATBOT_OUT_FAILED) {
        return NULL;
    }
    return apr_pstrcat(t->pool, code ? code : CHAT_ERR_INTERNAL, ": ", t->pub.err_msg,
                       NULL);
}

/* The turn's end in the store: the answer's flags, the failure's reason,
 * the generation's end, with fin (NULL: none) the answer's last piece
 * first, and rel (NULL: none) the backend slot given back with it. A
 * store that refuses that piece fails the turn as a refusal while the
 * answer streams does (chatbot_turn_flush, store_due), unless it failed
 * already: the finish then goes without it. */
static void finish(chatbot_turn_priv_t *t, chat_store_t *st, chat_turn_text_t *fin,
                   chatbot_outcome_t *outcome, const char **code, apr_uint64_t now,
                   const chat_turn_release_t *rel)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    int will_have = p->has_answer || fin;
    const char *txt = stored_error(t, *outcome, *code);
    uint32_t set = !will_have                         ? 0
                   : *outcome == CHATBOT_OUT_COMPLETE ? CHAT_MSG_COMPLETE
                                                      : CHAT_MSG_INTERRUPTED;

    if (txt && t->branch_answer && !will_have) {
        /* a regenerate that failed at once: a version of its own */
        chat_store_msg_branch(st, &e->id.owner, p->conv_id, p->user_index,
                              CHAT_ROLE_ASSISTANT, CHAT_MSG_ERROR, txt, strlen(txt), now,
                              NULL);
        txt = NULL;
    }
    chat_store_turn_finish_release(st, &e->id.owner, p->conv_id, t->token, fin, set, txt,
                                   txt ? strlen(txt) : 0, now, rel);
    if (!fin) {
        return;
    }
    chatbot_turn_final_stored(t, fin);
    if (fin->rc == CHAT_OK || fin->rc == CHAT_EUNAVAIL) {
        return; /* finished (or asked to be, by a store that did not answer) */
    }
    if (*outcome != CHATBOT_OUT_FAILED) {
        *outcome = p->outcome = CHATBOT_OUT_FAILED;
        *code = p->err_code = t->abort_code;
        apr_cpystrn(p->err_detail, t->abort_msg, sizeof(p->err_detail));
        apr_cpystrn(p->err_msg, t->abort_msg, sizeof(p->err_msg));
        user_error_text(p, *code);
    }
    txt = stored_error(t, *outcome, *code);
    chat_store_turn_finish(st, &e->id.owner, p->conv_id, t->token,
                           p->has_answer ? CHAT_MSG_INTERRUPTED : 0, txt, strlen(txt),
                           now);
}

void chatbot_turn_end(chatbot_turn_priv_t *t, chatbot_outcome_t outcome, const char *code,
                      const char *fmt, ...)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();
    apr_uint64_t now = chatbot_now_ms();
    va_list ap;
    int was_running = t->phase == CHATBOT_PH_RUNNING;
    chat_turn_text_t fin;
    int carry;

    if (t->phase == CHATBOT_PH_IDLE) {
        return;
    }
    chatbot_turn_detach(t);
    /* What chat_stream_finish or a stop left unstored goes with the finish
     * below (one request to a store on redis), else now. */
    carry = chatbot_turn_final_text(t, &fin);
    if (!carry) {
        chatbot_turn_flush(t, 1);
    }
    p->outcome = outcome;
    p->err_code = code;
    if (fmt) {
        /* via a copy: callers often pass p->err_msg itself as an argument */
        char msg[sizeof(p->err_msg)];
        va_start(ap, fmt);
        apr_vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        apr_cpystrn(p->err_detail, msg, sizeof(p->err_detail));
        apr_cpystrn(p->err_msg, msg, sizeof(p->err_msg));
    }
    if (outcome == CHATBOT_OUT_FAILED) {
        user_error_text(p, code);
    }
    p->duration_ms = (double)(now - t->t_start);
    if (outcome == CHATBOT_OUT_STOPPED) {
        apr_cpystrn(p->stats.done_reason, p->stop_reason ? p->stop_reason : "stopped",
                    sizeof(p->stats.done_reason));
    }
    if (p->stats.tokens_per_sec <= 0 && p->tokens > 1 && t->t_first && now > t->t_first) {
        p->stats.tokens_per_sec = (p->tokens - 1) * 1000.0 / (double)(now - t->t_first);
    }
    if (st) {
        chat_turn_release_t rel = {t->slot_held ? p->backend->index : -1, t->ticket};
        if (t->slot_held && t->stateless) {
            chat_store_backend_release(st, rel.backend, rel.ticket);
        }
        else if (!t->slot_held && t->phase == CHATBOT_PH_QUEUED && p->backend) {
            chat_store_backend_cancel(st, p->backend->index, t->ticket);
        }
        if (t->health_down && p->backend) {
            chatbot_backend_health_note(st, p->backend, 0, p->err_detail);
        }
        if (!t->stateless) { /* a stateless turn stores nothing */
            /* the slot goes back with the finish (one request with redis) */
            finish(t, st, carry ? &fin : NULL, &outcome, &code, now,
                   t->slot_held ? &rel : NULL);
        }
    }
    t->slot_held = 0;
    t->health_down = 0;
    if (st) {
        if (was_running) {
            chat_metrics_gauge_add(st, CHAT_G_GENERATING, -1);
        }
        else {
            chat_metrics_gauge_add(st, CHAT_G_QUEUED, -1);
        }
        if (code) {
            chat_metrics_error(st, code);
        }
        turn_metrics(t, st);
    }
    /* One line per turn. Free text (backend errors, and the conversation
     * itself only with ChatbotLogContent) is quoted so that it cannot pass
     * for another field; httpd escapes newlines, so it cannot forge a line.
     * A turn the backend failed is a warning: its details (URL, status,
     * the backend's own words) are in this line and nowhere users see. */
    if (APLOG_R_IS_LEVEL(e->r, APLOG_INFO) ||
        (outcome == CHATBOT_OUT_FAILED && APLOG_R_IS_LEVEL(e->r, APLOG_WARNING) &&
         backend_failure(code))) {
        const char *content = "";
        if (e->lim.log_content) {
            content = apr_psprintf(
                t->pool, " prompt=\"%s\" answer=\"%s\"",
                t->log_prompt ? log_quote(t->pool, t->log_prompt, strlen(t->log_prompt))
                              : "",
                log_quote(t->pool, p->answer.data ? p->answer.data : "",
                          p->answer.len > LOG_CONTENT_MAX ? LOG_CONTENT_MAX
                                                          : p->answer.len));
        }
        ap_log_rerror(
            APLOG_MARK,
            outcome == CHATBOT_OUT_FAILED && backend_failure(code) ? APLOG_WARNING
                                                                   : APLOG_INFO,
            0, e->r,
            APLOGNO(
                10930) "chatbot: turn user=%s bot=%s model=%s backend=%s conversation=%s "
                       "outcome=%s%s%s%s tokens=%d ttft_ms=%.1f duration_ms=%.1f "
                       "queue_ms=%.1f%s%s%s%s",
            e->id.label, p->bot->name, p->model, p->backend ? p->backend->name : "-",
            t->stateless ? "-" : p->conv_id, outcome_name(outcome), code ? " code=" : "",
            code ? code : "",
            (outcome == CHATBOT_OUT_STOPPED && p->stop_reason)
                ? apr_pstrcat(t->pool, " reason=", p->stop_reason, NULL)
                : "",
            p->tokens, p->ttft_ms, p->duration_ms, p->queue_ms,
            (code && *p->err_detail) ? " error=\"" : "",
            (code && *p->err_detail)
                ? log_quote(t->pool, p->err_detail, strlen(p->err_detail))
                : "",
            (code && *p->err_detail) ? "\"" : "", content);
    }
    /* Request notes for the access log (last turn wins). */
    apr_table_setn(e->r->notes, "chatbot-bot", p->bot->name);
    if (p->model == p->bot->model) {
        apr_table_setn(e->r->notes, "chatbot-model", p->model);
    }
    else {
        apr_cpystrn(e->notes->model, p->model, sizeof(e->notes->model));
        apr_table_setn(e->r->notes, "chatbot-model", e->notes->model);
    }
    /* Formatted into the request's note buffers (engine_notes). */
    apr_snprintf(e->notes->tokens, sizeof(e->notes->tokens), "%d", p->tokens);
    apr_snprintf(e->notes->ttft, sizeof(e->notes->ttft), "%.0f", p->ttft_ms);
    apr_table_setn(e->r->notes, "chatbot-tokens", e->notes->tokens);
    apr_table_setn(e->r->notes, "chatbot-ttft-ms", e->notes->ttft);
    t->phase = CHATBOT_PH_IDLE;
    if (e->cb.on_done) {
        e->cb.on_done(e->baton, p);
    }
    if (t->parser) {
        chat_stream_reset(t->parser);
    }
    chat_buf_reset(&t->body, 64 * 1024);
    chat_buf_reset(&t->errbody, 16 * 1024);
    chat_buf_reset(&p->answer, 64 * 1024);
    if (t->pool) {
        apr_pool_clear(t->pool);
    }
    p->model = p->bot ? p->bot->model : NULL; /* a conversation's was in t->pool */
}
