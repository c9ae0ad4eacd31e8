/* mod_chatbot_ws_messages.c - a client's WebSocket message dispatched to its
 * operation, the operations that are not turns, and the frame helpers.
 *
 * The operations here (docs/protocol.md): sessions, history, search,
 * export, launch, select, rename, archive, delete, bots, status, ping. The
 * turns (message, regenerate, edit, run, stop) are in mod_chatbot_ws_chat.c.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"
#include "mod_chatbot_settings.h"

/* ---- frames ------------------------------------------------------------------------ */

void chatbot_ws_send_error(chatbot_wsc_t *w, const char *code, const char *msg,
                           const char *conv, const char *id, apr_int64_t retry_ms)
{
    chat_frame_error(&w->frame, code, msg, conv, id, retry_ms);
    if (w->legacy) {
        chatbot_compat_error_frame(&w->frame, msg);
    }
    chatbot_ws_send_json(w);
    chat_metrics_error(chatbot_store(), code);
}

/* Starts a frame {"type":type, ... : the caller adds members and closes. */
void chatbot_ws_frame_begin(chatbot_wsc_t *w, chat_jw_t *jw, const char *type)
{
    chat_buf_reset(&w->frame, 64 * 1024);
    chat_jw_init(jw, &w->frame);
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "type", type);
}

void chatbot_ws_frame_end(chatbot_wsc_t *w, chat_jw_t *jw)
{
    chat_jw_obj_end(jw);
    if (chat_jw_status(jw) == CHAT_OK) {
        chatbot_ws_send_json(w);
    }
}

/* ---- operations that are not turns ---------------------------------------------- */

static void send_session(chatbot_wsc_t *w, const chat_conv_info_t *ci)
{
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "session");
    chat_jw_key(&jw, "session");
    chatbot_view_session(&jw, w->r->server, &w->lim, ci);
    chatbot_ws_frame_end(w, &jw);
}

/* The session list: a reply (id: the request's, or NULL) or a push (no
 * id, never archived), told apart by the id. */
void chatbot_ws_send_sessions(chatbot_wsc_t *w, const char *bot, int archived,
                              const char *id)
{
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "sessions");
    if (id) {
        chat_jw_kstr(&jw, "id", id);
    }
    chat_jw_kbool(&jw, "archived", archived);
    chat_jw_key(&jw, "sessions");
    chatbot_view_sessions(&jw, w->r, &w->id, bot, archived);
    chatbot_ws_frame_end(w, &jw);
}

static void send_history(chatbot_wsc_t *w, const char *conv, apr_int64_t limit,
                         apr_int64_t offset)
{
    chat_jw_t jw;
    const char *err;

    chatbot_ws_frame_begin(w, &jw, "history");
    err = chatbot_view_history(&jw, &w->id, conv, limit, offset, &w->scratch);
    if (err) {
        chatbot_ws_send_error(w, err, "no such conversation", conv, NULL, -1);
        return;
    }
    chatbot_ws_settings_brief(w, &jw, conv);
    chatbot_ws_frame_end(w, &jw);
}

/* The history of a conversation that does not exist yet: empty. */
static void send_no_history(chatbot_wsc_t *w, chatbot_bot_t *bot)
{
    chat_jw_t jw;
    apr_int64_t limit = w->cm.limit <= 0 ? 50 : w->cm.limit > 1000 ? 1000 : w->cm.limit;

    chatbot_ws_frame_begin(w, &jw, "history");
    chat_jw_kstr(&jw, "conversation_id", NULL);
    chat_jw_kstr(&jw, "bot_id", bot->name);
    chat_jw_kstr(&jw, "title", NULL);
    chat_jw_kstr(&jw, "state", "idle");
    chat_jw_kint(&jw, "total", 0);
    chat_jw_kint(&jw, "offset", 0);
    chat_jw_kint(&jw, "limit", limit);
    chat_jw_kbool(&jw, "has_more", 0);
    chat_jw_key(&jw, "messages");
    chat_jw_arr_begin(&jw);
    chat_jw_arr_end(&jw);
    chatbot_ws_frame_end(w, &jw);
}

/* {"type":"search","query":...} -> {"type":"search_results", ...} (the
 * members of GET /api/search; the request's id echoed by the frame). */
static void send_search(chatbot_wsc_t *w)
{
    chat_jw_t jw;
    const char *err, *emsg;

    chatbot_ws_frame_begin(w, &jw, "search_results");
    if (w->cm.id) {
        chat_jw_kstr(&jw, "id", w->cm.id);
    }
    err = chatbot_view_search(&jw, w->r, &w->id, w->cm.query, w->cm.bot_id, w->cm.limit,
                              &w->scratch, &emsg);
    if (err) {
        chatbot_ws_send_error(w, err, emsg ? emsg : "search failed", NULL, w->cm.id, -1);
        return;
    }
    chatbot_ws_frame_end(w, &jw);
}

static void send_ok(chatbot_wsc_t *w, const char *op, const char *conv)
{
    chat_jw_t jw;

    chatbot_ws_frame_begin(w, &jw, "ok");
    chat_jw_kstr(&jw, "op", op);
    chat_jw_kstr(&jw, "conversation_id", conv);
    chatbot_ws_frame_end(w, &jw);
}

void chatbot_ws_send_hello(chatbot_wsc_t *w)
{
    chat_jw_t jw;
    char rate[64];

    chatbot_ws_frame_begin(w, &jw, "hello");
    chat_jw_kint(&jw, "protocol", 1);
    chat_jw_kstr(&jw, "server", CHATBOT_SERVER_ID);
    chat_jw_kstr(&jw, "user", w->id.user);
    chat_jw_key(&jw, "bots");
    chatbot_view_bots(&jw, w->sc);
    chat_jw_kstr(&jw, "conversation_id", w->cur_conv[0] ? w->cur_conv : NULL);
    chat_jw_kstr(&jw, "bot_id", w->cur_bot ? w->cur_bot->name : NULL);
    chat_jw_kbool(&jw, "demo", w->sc->demo_notice != NULL);
    chat_jw_kstr(&jw, "notice", w->sc->demo_notice);
    /* regenerate and edit keep the earlier versions (select_version) */
    chat_jw_kbool(&jw, "versions", chatbot_store_has_versions(chatbot_store()));
    chat_jw_key(&jw, "limits");
    chat_jw_obj_begin(&jw);
    chat_jw_kint(&jw, "max_message_bytes", (int64_t)w->lim.max_message_bytes);
    if (w->lim.rate.count) {
        apr_snprintf(rate, sizeof(rate), "%u/%s", w->lim.rate.count,
                     w->lim.rate.period_ms == 1000    ? "s"
                     : w->lim.rate.period_ms == 60000 ? "min"
                     : w->lim.rate.period_ms == 3600000
                         ? "hour"
                         : apr_psprintf(w->r->pool, "%" APR_INT64_T_FMT "ms",
                                        w->lim.rate.period_ms));
        chat_jw_kstr(&jw, "rate", rate);
        chat_jw_kint(&jw, "burst", w->lim.rate.burst);
    }
    else {
        chat_jw_kstr(&jw, "rate", NULL);
    }
    chat_jw_obj_end(&jw);
    chatbot_settings_policy_view(&jw, &w->lim);
    chatbot_ws_frame_end(w, &jw);
}

/* Conversation-level operations (rename, archive, delete, stop_session). */
static void conv_op(chatbot_wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    const char *conv = w->cm.conversation_id;
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc = CHAT_EINTERNAL;
    const char *op = chat_ctype_name(w->cm.type);

    if (w->cm.type == CHAT_C_STOP_SESSION || w->cm.type == CHAT_C_DELETE) {
        if (w->eng) {
            chatbot_engine_stop(w->eng, conv, "stopped");
        }
        chatbot_ws_drop_held(w, conv);
    }
    switch (w->cm.type) {
    case CHAT_C_RENAME:
        rc = chat_store_conv_rename(st, &w->id.owner, conv, w->cm.title, now);
        break;
    case CHAT_C_ARCHIVE:
        rc = w->cm.archived == 0 ? chat_store_conv_flags(st, &w->id.owner, conv, 0,
                                                         CHAT_CONV_ARCHIVED, now)
                                 : chat_store_conv_flags(st, &w->id.owner, conv,
                                                         CHAT_CONV_ARCHIVED, 0, now);
        break;
    case CHAT_C_DELETE:
        chat_store_gen_request_stop(st, &w->id.owner, conv);
        rc = chat_store_conv_delete(st, &w->id.owner, conv);
        break;
    case CHAT_C_STOP_SESSION:
        chat_store_gen_request_stop(st, &w->id.owner, conv);
        rc = chat_store_conv_flags(st, &w->id.owner, conv, CHAT_CONV_STOPPED, 0, now);
        break;
    default:
        break;
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &w->id.owner);
    }
    if (rc == CHAT_EBUSY) {
        /* only delete gets here: the answer (generated by another
         * connection) has been asked to stop */
        chatbot_ws_send_error(w, CHAT_ERR_BUSY,
                              "the conversation was generating an "
                              "answer; it is being stopped, delete again in a moment",
                              conv, w->cm.id, -1);
        return;
    }
    if (rc != CHAT_OK) {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation", conv,
                              w->cm.id, -1);
        return;
    }
    if (w->cm.type == CHAT_C_DELETE && !strcmp(w->cur_conv, conv)) {
        w->cur_conv[0] = '\0';
    }
    send_ok(w, op, conv);
}

/* ---- the dispatch ------------------------------------------------------------ */

static void handle_launch(chatbot_wsc_t *w)
{
    chatbot_bot_t *bot = chatbot_bot_get(w->r->server, w->cm.bot_id);
    chat_conv_info_t ci;
    chat_status_t crc;
    apr_int64_t retry;
    const char *err;

    if (!bot) {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND, "unknown bot", NULL, NULL, -1);
        return;
    }
    /* creating takes a rate token, like a message (issue 14) */
    if ((err = chatbot_ws_rate_check(w, &retry))) {
        char msg[128];

        chatbot_ws_send_error(w, err, chatbot_ws_rate_msg(w, retry, msg, sizeof(msg)),
                              NULL, w->cm.id, retry);
        return;
    }
    crc = chat_store_conv_create(chatbot_store(), &w->id.owner, bot->name, w->cm.title,
                                 chatbot_random64(), chatbot_now_ms(), &ci);
    if (crc != CHAT_OK) {
        const char *code = chatbot_store_err(crc);
        chatbot_ws_send_error(w, code, chatbot_store_err_text(code), NULL, NULL,
                              crc == CHAT_ELIMIT
                                  ? chat_store_create_retry_ms(
                                        chatbot_store(), &w->id.owner, chatbot_now_ms())
                                  : -1);
        return;
    }
    chat_store_user_bump(chatbot_store(), &w->id.owner);
    w->cur_bot = bot;
    apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
    send_session(w, &ci);
}

static void handle_export(chatbot_wsc_t *w)
{
    int json = w->cm.format && !strcmp(w->cm.format, "json");
    chat_buf_t out;
    const char *fname = NULL;
    const char *err;
    chat_jw_t jw;

    chat_buf_init(&out);
    err = chatbot_view_export(w->r, &w->id, w->cm.conversation_id, json, &out, &fname);
    if (err) {
        chat_buf_free(&out);
        chatbot_ws_send_error(w, err, "no such conversation", w->cm.conversation_id, NULL,
                              -1);
        return;
    }
    chatbot_ws_frame_begin(w, &jw, "export");
    chat_jw_kstr(&jw, "conversation_id", w->cm.conversation_id);
    chat_jw_kstr(&jw, "format", json ? "json" : "markdown");
    chat_jw_kstr(&jw, "filename", fname);
    chat_jw_kstrn(&jw, "content", out.data ? out.data : "", out.len);
    chatbot_ws_frame_end(w, &jw);
    chat_buf_free(&out);
}

void chatbot_ws_handle_message(chatbot_wsc_t *w, const uint8_t *data, size_t len)
{
    char parse_err[256];
    chat_status_t rc;
    chat_jw_t jw;

    rc = chat_cmsg_parse(&w->cm, (const char *)data, len, parse_err, sizeof(parse_err));
    if (w->cm.type == CHAT_C_COMMAND) {
        w->legacy = 1;
    }
    if (rc != CHAT_OK) {
        chatbot_ws_send_error(w,
                              rc == CHAT_EPARSE      ? CHAT_ERR_BAD_JSON
                              : rc == CHAT_ENOTFOUND ? CHAT_ERR_UNKNOWN_TYPE
                                                     : CHAT_ERR_BAD_REQUEST,
                              parse_err, rc == CHAT_EPARSE ? NULL : w->cm.conversation_id,
                              rc == CHAT_EPARSE ? NULL : w->cm.id, -1);
        return;
    }
    if (!w->replaying) {
        chat_metrics_gauge_add(chatbot_store(), CHAT_G_MESSAGES_IN, 1);
    }
    w->cur_raw = data;
    w->cur_raw_len = len;
    switch (w->cm.type) {
    case CHAT_C_MESSAGE:
        if (w->cm.content_len > 1 && w->cm.content[0] == '!' && !w->cm.nattach) {
            chatbot_ws_run_command(w, w->cm.content, NULL, w->cm.content_len);
            break;
        }
        chatbot_ws_turn_start(w, CHATBOT_TURN_NEW);
        break;
    case CHAT_C_COMMAND: {
        /* the port-8000 client's chat line for the bot id it names
         * (mod_chatbot_compat.c): typing, then a turn as for "message" */
        const char *emsg = NULL, *err;
        apr_pool_t *p;
        apr_pool_create(&p, w->r->pool);
        err = chatbot_compat_ws_command(w->r, &w->id, &w->cm, p, &w->frame, &emsg);
        if (err) {
            chatbot_ws_send_error(w, err, emsg, NULL, w->cm.id, -1);
        }
        else {
            chatbot_ws_send_json(w);
            chatbot_ws_turn_start(w, CHATBOT_TURN_NEW);
        }
        apr_pool_destroy(p);
        break;
    }
    case CHAT_C_REGENERATE:
        chatbot_ws_turn_start(w, CHATBOT_TURN_REGENERATE);
        break;
    case CHAT_C_EDIT:
        chatbot_ws_turn_start(w, CHATBOT_TURN_EDIT);
        break;
    case CHAT_C_STOP:
        chatbot_ws_turn_stop(w);
        break;
    case CHAT_C_HISTORY: {
        chatbot_bot_t *bot;
        chat_conv_info_t ci;
        /* a read never creates a conversation: without an id (and no
         * current one) it is the bot's latest, if there is one */
        const char *err =
            chatbot_ws_resolve(w, w->cm.bot_id, w->cm.conversation_id, 0, &bot, &ci);
        if (err && !strcmp(err, CHAT_ERR_NOT_FOUND) && !w->cm.conversation_id && bot) {
            send_no_history(w, bot);
            break;
        }
        if (err) {
            chatbot_ws_send_error(w, err, "no such conversation", w->cm.conversation_id,
                                  NULL, -1);
            break;
        }
        send_history(w, ci.id, w->cm.limit, w->cm.offset);
        break;
    }
    case CHAT_C_RESUME:
        if (w->cm.conversation_id &&
            (!w->eng || !chatbot_engine_has(w->eng, w->cm.conversation_id)) &&
            !chatbot_ws_need_worker(w, w->cm.conversation_id)) {
            break; /* following an answer holds a worker too */
        }
        chatbot_ws_resume(w);
        break;
    case CHAT_C_LAUNCH:
        handle_launch(w);
        break;
    case CHAT_C_SELECT: {
        chat_conv_info_t ci;
        const char *err =
            chatbot_conv_resolve(w->r, &w->id, NULL, w->cm.conversation_id, 0, &ci);
        if (err) {
            chatbot_ws_send_error(w, err, "no such conversation", w->cm.conversation_id,
                                  NULL, -1);
            break;
        }
        w->cur_bot = chatbot_bot_get(w->r->server, ci.bot);
        apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
        send_session(w, &ci);
        send_history(w, ci.id, w->cm.limit, w->cm.offset);
        break;
    }
    case CHAT_C_STOP_SESSION:
    case CHAT_C_RENAME:
    case CHAT_C_ARCHIVE:
    case CHAT_C_DELETE:
        conv_op(w);
        break;
    case CHAT_C_SESSIONS:
        chatbot_ws_send_sessions(w, w->cm.bot_id, w->cm.archived < 0 ? 0 : w->cm.archived,
                                 w->cm.id);
        break;
    case CHAT_C_BOTS:
        chatbot_ws_frame_begin(w, &jw, "bots");
        chat_jw_key(&jw, "bots");
        chatbot_view_bots(&jw, w->sc);
        chatbot_ws_frame_end(w, &jw);
        break;
    case CHAT_C_EXPORT:
        handle_export(w);
        break;
    case CHAT_C_RUN:
        chatbot_ws_run_command(w, w->cm.command, w->cm.args, w->cm.nargs);
        break;
    case CHAT_C_STATUS:
        chatbot_ws_frame_begin(w, &jw, "status_board");
        chatbot_view_status(&jw, w->sc, w->lim.show_details);
        chatbot_ws_frame_end(w, &jw);
        break;
    case CHAT_C_SEARCH:
        send_search(w);
        break;
    case CHAT_C_SETTINGS:
        chatbot_ws_settings(w);
        break;
    case CHAT_C_SELECT_VERSION: {
        /* the answer is the conversation's new active path; other tabs
         * hear of it as of any change (their sessions list) */
        const char *emsg = NULL;
        const char *err = chatbot_ver_select(chatbot_store(), &w->id,
                                             w->cm.conversation_id, w->cm.index, &emsg);
        if (err) {
            chatbot_ws_send_error(w, err, emsg, w->cm.conversation_id, w->cm.id, -1);
            break;
        }
        send_history(w, w->cm.conversation_id, w->cm.limit, 0);
        break;
    }
    case CHAT_C_PING:
        chatbot_ws_frame_begin(w, &jw, "pong");
        chatbot_ws_frame_end(w, &jw);
        break;
    default:
        chatbot_ws_send_error(w, CHAT_ERR_UNKNOWN_TYPE, "unknown message type", NULL,
                              NULL, -1);
        break;
    }
    w->cur_raw = NULL;
}
