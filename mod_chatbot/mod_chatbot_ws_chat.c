/* mod_chatbot_ws_chat.c - the turns a WebSocket carries (docs/protocol.md):
 * a message, regenerate, edit or command starts one, a stop ends one. They
 * run in a chat engine that exists only while they do (an idle connection
 * holds no libcurl handle); its callbacks write the turn's frames.
 *
 * A turn (a message, regenerate or edit), a resume and a command need a
 * worker thread for as long as they run: one of the child's budget
 * (ChatbotMaxWorkers), and room in the client address's cap of answers
 * generating at once. Without them the client's frame is held back - the
 * client gets a "queued" status - and replayed once they are there; the
 * connection meanwhile parks (mod_chatbot_ws_watch.c pings it to come
 * back when a worker is free).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"

/* ---- engine callbacks ------------------------------------------------------------ */

/* The user message is stored: acknowledge it before anything else. */
static void on_accepted(void *baton, chatbot_turn_t *t)
{
    chatbot_wsc_t *w = baton;
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "ack");
    if (t->msg_id) {
        chat_jw_kstr(&jw, "id", t->msg_id);
    }
    chat_jw_kstr(&jw, "conversation_id", t->conv_id);
    chat_jw_kstr(&jw, "bot_id", t->bot->name);
    chat_jw_kint(&jw, "index", t->user_index);
    chatbot_ws_frame_end(w, &jw);
}

static void on_status(void *baton, chatbot_turn_t *t, const char *state, int position)
{
    chatbot_wsc_t *w = baton;
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "status");
    chat_jw_kstr(&jw, "conversation_id", t->conv_id);
    chat_jw_kstr(&jw, "state", state);
    if (position > 0) {
        chat_jw_kint(&jw, "position", position);
    }
    if (t->msg_id) {
        chat_jw_kstr(&jw, "id", t->msg_id);
    }
    chatbot_ws_frame_end(w, &jw);
}

static void on_delta(void *baton, chatbot_turn_t *t, int thinking, const char *text,
                     size_t len)
{
    chatbot_wsc_t *w = baton;

    if (chat_frame_delta(&w->frame, thinking, t->conv_id, t->msg_id, text, len) ==
        CHAT_OK) {
        chatbot_ws_send_json(w);
    }
}

static void write_stats(chat_jw_t *jw, const chatbot_turn_t *t)
{
    const chat_stats_t *s = &t->stats;

    chat_jw_key(jw, "stats");
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "model",
                 s->model[0] ? s->model
                 : t->model  ? t->model
                             : t->bot->model);
    chat_jw_kstr(jw, "backend", t->backend ? t->backend->name : NULL);
    chat_jw_kstr(jw, "done_reason", s->done_reason[0] ? s->done_reason : NULL);
    chat_jw_kint(jw, "tokens",
                 s->completion_tokens >= 0 ? s->completion_tokens : t->tokens);
    if (s->prompt_tokens >= 0) {
        chat_jw_kint(jw, "prompt_tokens", s->prompt_tokens);
    }
    chat_jw_kdouble(jw, "ttft_ms", t->ttft_ms);
    chat_jw_kdouble(jw, "duration_ms", t->duration_ms);
    if (t->queue_ms > 0) {
        chat_jw_kdouble(jw, "queue_ms", t->queue_ms);
    }
    if (s->tokens_per_sec > 0) {
        chat_jw_kdouble(jw, "tokens_per_sec", s->tokens_per_sec);
    }
    if (s->eval_ms >= 0) {
        chat_jw_kdouble(jw, "eval_ms", s->eval_ms);
    }
    if (s->load_ms >= 0) {
        chat_jw_kdouble(jw, "load_ms", s->load_ms);
    }
    chat_jw_obj_end(jw);
}

static void send_idle(chatbot_wsc_t *w, const char *conv)
{
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "status");
    chat_jw_kstr(&jw, "conversation_id", conv);
    chat_jw_kstr(&jw, "state", "idle");
    chatbot_ws_frame_end(w, &jw);
}

static void count_message(chatbot_wsc_t *w)
{
    w->msgs_in++;
    w->last_msg = chatbot_now_ms();
    /* own buffer: nothing allocated from r->pool per turn */
    apr_snprintf(w->note_msgs, sizeof(w->note_msgs), "%" APR_UINT64_T_FMT, w->msgs_in);
    apr_table_setn(w->r->notes, "chatbot-messages", w->note_msgs);
}

static void on_done(void *baton, chatbot_turn_t *t)
{
    chatbot_wsc_t *w = baton;
    chat_jw_t jw;

    if (t->outcome == CHATBOT_OUT_COMPLETE || t->outcome == CHATBOT_OUT_STOPPED) {
        chatbot_ws_frame_begin(w, &jw, "response");
        chat_jw_kstrn(&jw, "content", t->answer.data ? t->answer.data : "",
                      t->answer.len);
        chat_jw_kstr(&jw, "conversation_id", t->conv_id);
        if (t->msg_id) {
            chat_jw_kstr(&jw, "id", t->msg_id);
        }
        if (t->has_answer) {
            chat_jw_kint(&jw, "index", t->answer_index);
        }
        chat_jw_kbool(&jw, "interrupted", t->outcome != CHATBOT_OUT_COMPLETE);
        write_stats(&jw, t);
        chatbot_ws_frame_end(w, &jw);
    }
    else {
        chat_buf_reset(&w->frame, 64 * 1024);
        chat_jw_init(&jw, &w->frame);
        chat_jw_obj_begin(&jw);
        chat_jw_kstr(&jw, "type", "error");
        chat_jw_kstr(&jw, "code", t->err_code ? t->err_code : CHAT_ERR_INTERNAL);
        chat_jw_kstr(&jw, "message", t->err_msg);
        chat_jw_kstr(&jw, "conversation_id", t->conv_id);
        if (t->msg_id) {
            chat_jw_kstr(&jw, "id", t->msg_id);
        }
        if (t->has_answer) {
            chat_jw_kbool(&jw, "partial", 1);
            chat_jw_kint(&jw, "index", t->answer_index);
        }
        chat_jw_obj_end(&jw);
        if (w->legacy) {
            chatbot_compat_error_frame(&w->frame, t->err_msg);
        }
        chatbot_ws_send_json(w);
    }
    send_idle(w, t->conv_id);
    count_message(w);
}

/* ---- the engine: one per busy period --------------------------------------------- */

int chatbot_ws_turns(chatbot_wsc_t *w)
{
    return w->eng ? chatbot_engine_active(w->eng) : 0;
}

static chatbot_engine_t *engine(chatbot_wsc_t *w)
{
    chatbot_turn_cb_t tcb;
    chatbot_engine_t *e;

    if (w->eng) {
        return w->eng;
    }
    memset(&tcb, 0, sizeof(tcb));
    tcb.on_accepted = on_accepted;
    tcb.on_status = on_status;
    tcb.on_delta = on_delta;
    tcb.on_done = on_done;
    e = chatbot_engine_create(w->r, &w->lim, &w->id, &tcb, w);
    if (e) {
        chatbot_ws_reg_engine(w, e); /* the watcher may wake it now */
    }
    return e;
}

void chatbot_ws_engine_settle(chatbot_wsc_t *w)
{
    int n = chatbot_ws_turns(w);

    if (n != w->answers_counted) {
        chatbot_ws_ip_answers(w->c, n - w->answers_counted);
        if (n < w->answers_counted) {
            chatbot_ws_poke();
        }
        w->answers_counted = n;
    }
    if (w->eng && !n) {
        chatbot_engine_t *e = w->eng;
        chatbot_ws_reg_engine(w, NULL);
        chatbot_engine_destroy(e);
    }
}

void chatbot_ws_stop_all(chatbot_wsc_t *w, const char *reason)
{
    int i;

    if (w->eng) {
        chatbot_engine_stop(w->eng, NULL, reason);
    }
    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW; i++) {
        chatbot_ws_follow_end(&w->follow[i]);
    }
    if (w->held.len) {
        chatbot_ws_wait_remove(w);
        chat_buf_free(&w->held);
    }
    chatbot_ws_engine_settle(w);
}

/* ---- waiting for a worker --------------------------------------------------------- */

/* 1 if the frame being handled may hold a worker now (it then holds one:
 * chatbot_ws_need_worker says yes at once too), 0 if not (nothing said). */
int chatbot_ws_worker_free(chatbot_wsc_t *w)
{
    int cap = chatbot_ws_max_answers_per_ip(w->sc);

    if ((cap <= 0 || chatbot_ws_ip_answers(w->c, 0) < (apr_uint32_t)cap) &&
        chatbot_ws_wait_may_take(w) && chatbot_ws_slot_take(w)) {
        chatbot_ws_wait_remove(w);
        return 1;
    }
    return 0;
}

/* 1 if the frame being handled may hold a worker now; otherwise it is held
 * back (or refused when another one is held already) and 0 returned. */
int chatbot_ws_need_worker(chatbot_wsc_t *w, const char *conv)
{
    int pos;
    chat_jw_t jw;

    if (chatbot_ws_worker_free(w)) {
        return 1;
    }
    w->held_again = w->replaying;
    if (w->held.len && !w->replaying) {
        chatbot_ws_send_error(w, CHAT_ERR_BUSY,
                              "the server is busy and another message of "
                              "this connection is waiting already; retry in a moment",
                              conv, w->cm.id, 5000);
        return 0;
    }
    if (!w->replaying) {
        chat_buf_reset(&w->held, 0);
        if (!w->cur_raw ||
            chat_buf_append(&w->held, w->cur_raw, w->cur_raw_len) != CHAT_OK) {
            chat_buf_free(&w->held);
            chatbot_ws_send_error(w, CHAT_ERR_BUSY,
                                  "the server is busy; retry in a moment", conv, w->cm.id,
                                  5000);
            return 0;
        }
        apr_cpystrn(w->held_conv, conv ? conv : "", sizeof(w->held_conv));
        w->held_since = chatbot_now_ms();
    }
    pos = chatbot_ws_wait_add(w);
    if (!w->replaying) {
        ap_log_rerror(
            APLOG_MARK, APLOG_DEBUG, 0, w->r,
            APLOGNO(
                10956) "chatbot: %s waits for a worker (position %d; ChatbotMaxWorkers, "
                       "ChatbotMaxAnswersPerIP)",
            w->id.label, pos);
        chatbot_ws_frame_begin(w, &jw, "status");
        if (conv) {
            chat_jw_kstr(&jw, "conversation_id", conv);
        }
        chat_jw_kstr(&jw, "state", "queued");
        chat_jw_kint(&jw, "position", pos);
        if (w->cm.id) {
            chat_jw_kstr(&jw, "id", w->cm.id);
        }
        chatbot_ws_frame_end(w, &jw);
    }
    return 0;
}

void chatbot_ws_held_run(chatbot_wsc_t *w)
{
    chat_buf_t frame;
    char msg[128];

    if (w->going_away) {
        return;
    }
    if (chatbot_now_ms() - w->held_since > (apr_uint64_t)w->lim.total_timeout_ms) {
        chatbot_ws_wait_remove(w);
        chat_buf_free(&w->held);
        apr_snprintf(msg, sizeof(msg),
                     "no worker came free within %d s; retry in a moment",
                     (int)(w->lim.total_timeout_ms / 1000));
        chatbot_ws_send_error(w, CHAT_ERR_BUSY, msg,
                              w->held_conv[0] ? w->held_conv : NULL, NULL, 5000);
        return;
    }
    if (!chatbot_ws_wait_may_take(w)) {
        return;
    }
    /* replayed as the client sent it; it holds its place if it must wait
     * again (the address's cap) */
    frame = w->held;
    chat_buf_init(&w->held);
    w->replaying = 1;
    w->held_again = 0;
    chatbot_ws_handle_message(w, (const uint8_t *)frame.data, frame.len);
    w->replaying = 0;
    if (w->held_again) {
        w->held = frame; /* still waiting */
    }
    else {
        chatbot_ws_wait_remove(w);
        chat_buf_free(&frame);
    }
    chat_cmsg_free(&w->cm);
}

/* A stop (or delete) of the conversation a held turn is for drops it. */
int chatbot_ws_drop_held(chatbot_wsc_t *w, const char *conv)
{
    if (!w->held.len || !conv || strcmp(conv, w->held_conv)) {
        return 0;
    }
    chatbot_ws_wait_remove(w);
    chat_buf_free(&w->held);
    chatbot_ws_send_error(w, CHAT_ERR_INTERRUPTED,
                          "stopped while waiting for a worker; nothing was sent", conv,
                          w->cm.id, -1);
    return 1;
}

/* ---- turns, commands, stops --------------------------------------------------- */

/* Picks bot + conversation for a message: explicit ids, else the
 * connection's current ones, else the bot's latest session (created if
 * none and create is set). A current conversation deleted meanwhile
 * (another tab) is forgotten, not an error. */
const char *chatbot_ws_resolve(chatbot_wsc_t *w, const char *bot_id, const char *conv_id,
                               int create, chatbot_bot_t **bot, chat_conv_info_t *ci)
{
    const char *err;
    int implicit = 0;

    *bot = NULL;
    if (bot_id) {
        *bot = chatbot_bot_get(w->r->server, bot_id);
        if (!*bot) {
            return CHAT_ERR_NOT_FOUND;
        }
    }
    if (!conv_id && (!*bot || *bot == w->cur_bot) && w->cur_conv[0]) {
        conv_id = w->cur_conv;
        implicit = 1;
    }
    if (!*bot) {
        *bot = w->cur_bot ? w->cur_bot : w->sc->default_bot_p;
    }
    err = chatbot_conv_resolve(w->r, &w->id, *bot, conv_id, create, ci);
    if (err && implicit) {
        w->cur_conv[0] = '\0';
        conv_id = NULL;
        err = chatbot_conv_resolve(w->r, &w->id, *bot, NULL, create, ci);
    }
    if (err) {
        return err;
    }
    if (conv_id) {
        /* the conversation decides the bot */
        chatbot_bot_t *cb = chatbot_bot_get(w->r->server, ci->bot);
        if (!cb) {
            return CHAT_ERR_NOT_FOUND;
        }
        *bot = cb;
    }
    w->cur_bot = *bot;
    apr_cpystrn(w->cur_conv, ci->id, sizeof(w->cur_conv));
    return NULL;
}

const char *chatbot_ws_rate_check(chatbot_wsc_t *w, apr_int64_t *retry)
{
    *retry = 0;
    /* a held turn was counted when it came */
    return w->replaying ? NULL : chatbot_rate_check(&w->id, &w->lim, retry);
}

/* The text of a rate_limited error: one wording for every op (a message, a
 * command, a new conversation) and the REST API's (issue 19). */
const char *chatbot_ws_rate_msg(chatbot_wsc_t *w, apr_int64_t retry_ms, char *buf,
                                apr_size_t len)
{
    apr_snprintf(buf, len, "rate limit exceeded (%u messages per %s); retry in %.1f s",
                 w->lim.rate.count,
                 w->lim.rate.period_ms == 60000     ? "minute"
                 : w->lim.rate.period_ms == 1000    ? "second"
                 : w->lim.rate.period_ms == 3600000 ? "hour"
                                                    : "period",
                 retry_ms / 1000.0);
    return buf;
}

/* The connection's current conversation, if the message is for it:
 * explicit ids or none, as chatbot_ws_resolve would pick it, without a
 * look-up. NULL otherwise (the message names another one, or a bot that
 * is not the current one's, or an unknown bot: the look-up decides). */
static chatbot_bot_t *current(chatbot_wsc_t *w)
{
    const char *bot_id = w->cm.bot_id, *conv_id = w->cm.conversation_id;
    chatbot_bot_t *b = NULL;

    if (!w->cur_conv[0] || !w->cur_bot) {
        return NULL;
    }
    if (bot_id && !(b = chatbot_bot_get(w->r->server, bot_id))) {
        return NULL;
    }
    if (conv_id ? strcmp(conv_id, w->cur_conv) : b && b != w->cur_bot) {
        return NULL;
    }
    return w->cur_bot; /* the conversation decides the bot */
}

/* A turn in conversation ci->id with bot: known, the conversation was not
 * looked up for it (its id and bot are the connection's current ones), and
 * the store checks them as it starts the turn. Returns 1 if a known turn
 * must be looked up after all: anything that would be said before the
 * store is reached, or a conversation gone or changed (CHATBOT_TURN_STALE)
 * - nothing was sent or stored then, and the caller starts again with the
 * look-up, so that every answer is the one the look-up first would give. */
static int turn_begin(chatbot_wsc_t *w, chatbot_turn_mode_t mode, chatbot_bot_t *bot,
                      const chat_conv_info_t *ci, int known)
{
    chatbot_turn_req_t req;
    chatbot_engine_t *e;
    const char *err;
    char msg[512];
    chat_buf_t attached = {0};

    if (mode != CHATBOT_TURN_REGENERATE && w->cm.content_len == 0 && !w->cm.nattach) {
        if (!known) {
            chatbot_ws_send_error(w, CHAT_ERR_BAD_REQUEST, "the message is empty", ci->id,
                                  w->cm.id, -1);
        }
        return known;
    }
    /* Text attachments travel in the message and are stored with it, quoted
     * ahead of its text (chat/attach.h): the whole is one message, counted
     * against ChatbotMaxMessageBytes and the context budget, and is what
     * the model reads. */
    if (mode != CHATBOT_TURN_REGENERATE && w->cm.nattach) {
        apr_size_t total =
            chat_attach_size(w->cm.attach, w->cm.nattach, w->cm.content_len);
        if (total > w->lim.max_message_bytes ||
            total > chatbot_srv(w->r->server)->layout.max_message_bytes) {
            if (known) {
                return 1;
            }
            apr_snprintf(msg, sizeof(msg),
                         "the message with its attachments is %" APR_SIZE_T_FMT
                         " bytes; at most %" APR_SIZE_T_FMT " bytes are accepted",
                         total, w->lim.max_message_bytes);
            chatbot_ws_send_error(w, CHAT_ERR_TOO_LARGE, msg, ci->id, w->cm.id, -1);
            return 0;
        }
    }
    if (w->eng && chatbot_engine_has(w->eng, ci->id)) {
        if (!known) {
            chatbot_ws_send_error(w, CHAT_ERR_BUSY,
                                  "this conversation is already generating "
                                  "an answer; stop it first",
                                  ci->id, w->cm.id, -1);
        }
        return known;
    }
    if (known &&
        (chatbot_ws_turns(w) >= CHATBOT_MAX_TURNS || !chatbot_ws_worker_free(w))) {
        return 1; /* refused or held back: said after the look-up */
    }
    if (!chatbot_ws_need_worker(w, ci->id)) {
        return 0;
    }
    memset(&req, 0, sizeof(req));
    req.bot = bot;
    req.conv_id = ci->id;
    req.msg_id = w->cm.id;
    req.content = w->cm.content;
    req.len = w->cm.content_len;
    req.known = known;
    if (mode != CHATBOT_TURN_REGENERATE && w->cm.nattach &&
        chat_attach_encode(&attached, w->cm.attach, w->cm.nattach,
                           w->cm.content ? w->cm.content : "",
                           w->cm.content_len) != CHAT_OK) {
        chat_buf_free(&attached);
        if (!known) {
            chatbot_ws_send_error(w, CHAT_ERR_INTERNAL, "out of memory", ci->id, w->cm.id,
                                  -1);
        }
        return known;
    }
    if (attached.data) {
        req.content = attached.data;
        req.len = attached.len;
        req.msg_flags = CHAT_MSG_ATTACH;
    }
    req.mode = mode;
    req.edit_index = (apr_uint32_t)(w->cm.index < 0 ? 0 : w->cm.index);
    if (!(e = engine(w))) {
        chat_buf_free(&attached);
        if (!known) {
            chatbot_ws_send_error(w, CHAT_ERR_INTERNAL, "cannot start an answer now",
                                  ci->id, w->cm.id, -1);
        }
        return known;
    }
    err = chatbot_turn_start(e, &req, msg, sizeof(msg));
    chat_buf_free(&attached); /* stored by now: the turn reads the store */
    chatbot_ws_engine_settle(w);
    if (err && known && !strcmp(err, CHATBOT_TURN_STALE)) {
        return 1;
    }
    if (err) {
        chatbot_ws_send_error(w, err, msg, ci->id, w->cm.id, -1);
        return 0;
    }
    /* this connection now streams the answer itself */
    chatbot_ws_follow_drop(w, ci->id);
    return 0;
}

void chatbot_ws_turn_start(chatbot_wsc_t *w, chatbot_turn_mode_t mode)
{
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    const char *err;
    apr_int64_t retry;
    char msg[512];

    err = chatbot_ws_rate_check(w, &retry);
    if (err) {
        chatbot_ws_send_error(w, err, chatbot_ws_rate_msg(w, retry, msg, sizeof(msg)),
                              w->cm.conversation_id, w->cm.id, retry);
        return;
    }
    /* A new message in the current conversation (the common turn): no
     * look-up first, the store's start checks owner, existence and bot
     * (one round trip fewer on redis; docs/storage.md). */
    if (mode == CHATBOT_TURN_NEW && (bot = current(w))) {
        apr_cpystrn(ci.id, w->cur_conv, sizeof(ci.id));
        if (!turn_begin(w, mode, bot, &ci, 1)) {
            return;
        }
    }
    err = chatbot_ws_resolve(w, w->cm.bot_id, w->cm.conversation_id, 1, &bot, &ci);
    if (err) {
        /* creating the conversation may have failed too (quota, rate) */
        chatbot_ws_send_error(w, err,
                              w->cm.bot_id && !chatbot_bot_get(w->r->server, w->cm.bot_id)
                                  ? "unknown bot"
                                  : chatbot_store_err_text(err),
                              w->cm.conversation_id, w->cm.id,
                              !strcmp(err, CHAT_ERR_RATE_LIMITED)
                                  ? chat_store_create_retry_ms(
                                        chatbot_store(), &w->id.owner, chatbot_now_ms())
                                  : -1);
        return;
    }
    turn_begin(w, mode, bot, &ci, 0);
}

/* A command (`run`, or a message starting with '!'): it runs here, on this
 * thread, for as long as it takes (its ChatbotCommand timeout). */
void chatbot_ws_run_command(chatbot_wsc_t *w, const char *command,
                            const char *const *args, apr_size_t nargs)
{
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    apr_int64_t retry;
    const char *err = chatbot_ws_rate_check(w, &retry);

    if (err) {
        char msg[128];

        chatbot_ws_send_error(w, err, chatbot_ws_rate_msg(w, retry, msg, sizeof(msg)),
                              w->cm.conversation_id, w->cm.id, retry);
        return;
    }
    if ((err =
             chatbot_ws_resolve(w, w->cm.bot_id, w->cm.conversation_id, 1, &bot, &ci))) {
        chatbot_ws_send_error(w, err, "no such conversation", w->cm.conversation_id,
                              w->cm.id, -1);
        return;
    }
    if (!chatbot_ws_need_worker(w, ci.id)) {
        return;
    }
    chatbot_exec_ws(w->r, &w->id, bot, ci.id, command, args, nargs, &w->frame);
    chatbot_ws_send_json(w);
}

void chatbot_ws_turn_stop(chatbot_wsc_t *w)
{
    const char *conv = w->cm.conversation_id ? w->cm.conversation_id : w->cur_conv;
    chat_status_t src = CHAT_EINTERNAL;

    if (!*conv || chatbot_ws_drop_held(w, conv)) {
        return;
    }
    if (w->eng && chatbot_engine_has(w->eng, conv)) {
        chatbot_engine_stop(w->eng, conv, "stopped");
        return;
    }
    /* generated by another connection (another tab or child), or idle:
     * nothing to do */
    src = chat_store_gen_request_stop(chatbot_store(), &w->id.owner, conv);
    if (src == CHAT_ENOTFOUND) {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation", conv,
                              w->cm.id, -1);
    }
}
