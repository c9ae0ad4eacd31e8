/* mod_chatbot_api_sessions.c - the REST API's conversation routes: the
 * session list and search, creating a session and its operations (select,
 * archive, rename, delete, stop, version, settings), history, export, and
 * the old controller's stored messages.
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "apr_strings.h"

#include "chat/compat.h"
#include "mod_chatbot.h"
#include "mod_chatbot_api.h"
#include "mod_chatbot_settings.h"

#define OFFSET_MAX 1000000

/* GET /api/sessions[?bot_id=&archived=1] */
int chatbot_api_sessions(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    const char *arch = chatbot_api_query(a, "archived");
    const char *bot_id = chatbot_api_query(a, "bot_id");

    if (a->query_bad) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "a query parameter is repeated or badly encoded", 0);
    }
    chatbot_api_begin(a);
    chat_jw_key(&a->jw, "sessions");
    chatbot_view_sessions(&a->jw, r, &a->id, bot_id,
                          arch && (!strcmp(arch, "1") || !strcmp(arch, "true")) ? 1 : 0);
    return chatbot_api_finish(a, 200);
}

/* GET /api/search?q=&bot_id=&limit=: the caller's own conversations */
int chatbot_api_search(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    apr_int64_t limit;
    const char *err, *emsg;
    const char *q = chatbot_api_query(a, "q");
    const char *bot_id = chatbot_api_query(a, "bot_id");
    chat_buf_t scratch;

    if (!chatbot_api_query_int(a, "limit", 0, 1000000, &limit) || a->query_bad) {
        return chatbot_api_error(
            a, CHAT_ERR_BAD_REQUEST,
            "a query parameter is repeated, badly encoded or not a number", 0);
    }
    chatbot_api_begin(a);
    chat_buf_init(&scratch);
    err = chatbot_view_search(&a->jw, r, &a->id, q, bot_id, limit, &scratch, &emsg);
    chat_buf_free(&scratch);
    if (err) {
        return chatbot_api_error(a, err, emsg ? emsg : "search failed", 0);
    }
    return chatbot_api_finish(a, 200);
}

/* NULL if title is a usable title, else why not: 1 to 128 bytes, not
 * blank (chat_title_is_blank), as on the WebSocket. */
static const char *title_error(const char *title)
{
    if (strlen(title) > CHAT_TITLE_MAX) {
        return "title is longer than 128 bytes";
    }
    return chat_title_is_blank(title) ? "title must not be empty or blank" : NULL;
}

int chatbot_api_session_reply(api_t *a, const chat_conv_info_t *ci, int status)
{
    chatbot_api_begin(a);
    chat_jw_key(&a->jw, "session");
    chatbot_view_session(&a->jw, a->r->server, &a->lim, ci);
    chat_jw_kstr(&a->jw, "conversation_id", ci->id);
    chat_jw_kstr(&a->jw, "session_id", ci->id);
    chat_jw_kstr(&a->jw, "bot_id", ci->bot);
    return chatbot_api_finish(a, status);
}

/* POST /api/session/create {"bot_id", "title"}: a new session of a declared
 * bot. */
int chatbot_api_session_create(api_t *a, const char *const *seg)
{
    int bad = 0;
    const char *bot_id = chatbot_api_jstr(a, "bot_id", &bad);
    const char *title = chatbot_api_jstr(a, "title", &bad);
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    chat_status_t rc = CHAT_EINTERNAL;
    const char *err;
    apr_int64_t retry;

    if (!bot_id && !bad) {
        bot_id = chatbot_api_jstr(a, "bot", &bad);
    }
    if (bad) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "bot_id and title must be strings", 0);
    }
    if (title && (err = title_error(title))) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST, err, 0);
    }
    bot = chatbot_bot_get(a->r->server, bot_id);
    if (!bot) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
    }
    /* creating takes a rate token, like a message: a loop of launches
     * must not be free (issue 14) */
    if ((err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return chatbot_api_error(a, err, chatbot_api_rate_msg(a, retry), retry);
    }
    rc = chat_store_conv_create(chatbot_store(), &a->id.owner, bot->name, title,
                                chatbot_random64(), chatbot_now_ms(), &ci);
    if (rc == CHAT_OK) {
        chat_store_user_bump(chatbot_store(), &a->id.owner);
    }
    else {
        const char *code = chatbot_store_err(rc);
        return chatbot_api_error(
            a, code, chatbot_store_err_text(code),
            rc == CHAT_ELIMIT ? chat_store_create_retry_ms(chatbot_store(), &a->id.owner,
                                                           chatbot_now_ms())
                              : 0);
    }
    return chatbot_api_session_reply(a, &ci, 201);
}

/* POST /api/session/{id}/select|archive|unarchive|rename|delete|stop */
int chatbot_api_session_op(api_t *a, const char *const *seg)
{
    const char *conv = seg[1], *op = seg[2];
    chat_store_t *st = chatbot_store();
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc = CHAT_EINTERNAL;
    chat_conv_info_t ci;

    if (!st) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "store unavailable", 0);
    }
    if (!strcmp(op, "archive")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, CHAT_CONV_ARCHIVED, 0, now);
    }
    else if (!strcmp(op, "unarchive")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, 0, CHAT_CONV_ARCHIVED, now);
    }
    else if (!strcmp(op, "stop")) {
        chat_store_gen_request_stop(st, &a->id.owner, conv);
        rc = chat_store_conv_flags(st, &a->id.owner, conv, CHAT_CONV_STOPPED, 0, now);
    }
    else if (!strcmp(op, "select")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, 0, 0, now);
    }
    else if (!strcmp(op, "delete")) {
        chat_store_gen_request_stop(st, &a->id.owner, conv);
        rc = chat_store_conv_delete(st, &a->id.owner, conv);
    }
    else if (!strcmp(op, "rename")) {
        int bad = 0;
        const char *title = chatbot_api_jstr(a, "title", &bad);
        if (!title || bad || title_error(title)) {
            return chatbot_api_error(
                a, CHAT_ERR_BAD_REQUEST,
                title && !bad ? title_error(title)
                              : "title (a string of 1 to 128 bytes) is required",
                0);
        }
        rc = chat_store_conv_rename(st, &a->id.owner, conv, title, now);
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &a->id.owner);
        if (strcmp(op, "delete")) {
            rc = chat_store_conv_get(st, &a->id.owner, conv, &ci);
        }
    }
    if (rc == CHAT_EBUSY) {
        /* delete while another request generates: that answer has been
         * asked to stop */
        return chatbot_api_error(a, CHAT_ERR_BUSY,
                                 "the session was generating an answer; it is "
                                 "being stopped, delete again in a moment",
                                 0);
    }
    if (rc != CHAT_OK) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND, "no such session", 0);
    }
    if (!strcmp(op, "delete")) {
        chatbot_api_begin(a);
        chat_jw_kstr(&a->jw, "status", "deleted");
        chat_jw_kstr(&a->jw, "conversation_id", conv);
        return chatbot_api_finish(a, 200);
    }
    return chatbot_api_session_reply(a, &ci, 200);
}

/* POST /api/session/{id}/version {"index": N}: makes message N the chosen
 * version of its siblings; answers the new active path as chat/history
 * does (its first page). */
int chatbot_api_session_version(api_t *a, const char *const *seg)
{
    const char *conv = seg[1];
    json_object *v;
    chat_buf_t scratch;
    const char *err, *emsg = NULL;

    if (!a->body || !json_object_object_get_ex(a->body, "index", &v) ||
        !json_object_is_type(v, json_type_int)) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "\"index\" (the index of a stored message) is required",
                                 0);
    }
    err = chatbot_ver_select(chatbot_store(), &a->id, conv, json_object_get_int64(v),
                             &emsg);
    if (err) {
        return chatbot_api_error(a, err, emsg, 0);
    }
    chatbot_api_begin(a);
    chat_buf_init(&scratch);
    err = chatbot_view_history(&a->jw, &a->id, conv, CHAT_HISTORY_LIMIT_MAX, 0, &scratch);
    chat_buf_free(&scratch);
    if (err) {
        return chatbot_api_error(a, err, "no such conversation", 0);
    }
    return chatbot_api_finish(a, 200);
}

/* GET /api/session/{id}/settings: the conversation's settings; POST with
 * {"model","system","temperature","reset"} changes them first. */
int chatbot_api_session_settings(api_t *a, const char *const *seg)
{
    const char *conv = seg[1];
    chat_conv_info_t ci;
    chatbot_bot_t *bot;
    chatbot_settings_t s;
    chat_status_t rc = chat_store_conv_get(chatbot_store(), &a->id.owner, conv, &ci);
    char msg[256];

    if (rc != CHAT_OK) {
        const char *code = chatbot_store_err(rc);
        return chatbot_api_error(a, code, chatbot_store_err_text(code), 0);
    }
    bot = chatbot_bot_get(a->r->server, ci.bot);
    if (!bot) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND,
                                 "the session's bot no longer exists", 0);
    }
    if (a->r->method_number == M_POST) {
        chatbot_settings_req_t req;
        const char *err = chatbot_settings_req_from_json(a->body, &req);
        if (err) {
            return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST, err, 0);
        }
        err = chatbot_settings_change(a->r->pool, &a->lim, bot, &a->id.owner, conv, &req,
                                      msg, sizeof(msg));
        if (err) {
            return chatbot_api_error(a, err, msg, 0);
        }
    }
    chatbot_settings_load(a->r->pool, &a->lim, &a->id.owner, conv, &s);
    chatbot_api_begin(a);
    chat_jw_kstr(&a->jw, "conversation_id", conv);
    chatbot_settings_view(&a->jw, a->r->pool, &a->lim, bot, &s);
    return chatbot_api_finish(a, 200);
}

/* GET /api/chat/history?bot_id=&conversation_id=&limit=&offset= */
int chatbot_api_history(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    apr_int64_t limit, offset;
    chat_conv_info_t ci, fi;
    chat_buf_t scratch;
    chatbot_bot_t *bot = NULL;
    const char *bot_id = chatbot_api_query(a, "bot_id");
    const char *conv = chatbot_api_query(a, "conversation_id");
    const char *sid = chatbot_api_query(a, "session_id");
    const char *err, *compat_id = "";

    if (a->query_bad) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "a query parameter is repeated or badly encoded", 0);
    }
    if (!conv) {
        conv = sid;
    }
    if (!chatbot_api_query_int(a, "limit", 50, CHAT_HISTORY_LIMIT_MAX, &limit) ||
        !chatbot_api_query_int(a, "offset", 0, OFFSET_MAX, &offset)) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 a->query_bad
                                     ? "a query parameter is repeated or badly encoded"
                                     : "limit must be an integer from 0 to 1000 and "
                                       "offset one from 0 to 1000000",
                                 0);
    }
    /* bot_id: an old-style bot id (a session, see mod_chatbot_compat.c),
     * else a declared bot (its latest session) */
    if (!conv && bot_id && !chatbot_compat_find(r, &a->id, bot_id, &fi)) {
        conv = apr_pstrdup(r->pool, fi.id);
        compat_id = bot_id;
    }
    else if (!conv && bot_id && !(bot = chatbot_bot_get(r->server, bot_id))) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
    }
    /* without conversation_id: the bot's latest session */
    if (!bot) {
        bot = a->sc->default_bot_p;
    }
    err = chatbot_conv_resolve(r, &a->id, bot, conv, 0, &ci);
    if (err) {
        if (!conv && !strcmp(err, CHAT_ERR_NOT_FOUND)) {
            /* no conversation yet: an empty history */
            chatbot_api_begin(a);
            chat_jw_kstr(&a->jw, "conversation_id", NULL);
            chat_jw_kstr(&a->jw, "bot_id", bot->name);
            chat_jw_kint(&a->jw, "total", 0);
            chat_jw_kint(&a->jw, "offset", offset);
            chat_jw_kint(&a->jw, "limit", limit);
            chat_jw_kbool(&a->jw, "has_more", 0);
            chat_jw_key(&a->jw, "messages");
            chat_jw_arr_begin(&a->jw);
            chat_jw_arr_end(&a->jw);
            return chatbot_api_finish(a, 200);
        }
        return chatbot_api_error(a, err, "no such conversation", 0);
    }
    chatbot_api_begin(a);
    chat_buf_init(&scratch);
    err = chatbot_view_history_compat(&a->jw, &a->id, ci.id, limit, offset, &scratch,
                                      compat_id, &ci);
    chat_buf_free(&scratch);
    if (err) {
        return chatbot_api_error(a, err, "no such conversation", 0);
    }
    return chatbot_api_finish(a, 200);
}

/* POST /api/chat/message {"role","content","bot_id"|"session_id"}: stores
 * a message (the old controller's history API) */
int chatbot_api_message(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    const char *role, *content, *bid, *sid, *err, *emsg = NULL;
    apr_int64_t retry;
    int bad = 0;

    role = chatbot_api_jstr(a, "role", &bad);
    content = chatbot_api_jstr(a, "content", &bad);
    bid = chatbot_api_jstr(a, "bot_id", &bad);
    sid = chatbot_api_jstr(a, "session_id", &bad);
    if (!sid && !bad) {
        sid = chatbot_api_jstr(a, "conversation_id", &bad);
    }
    if (bad || !role || !content || !*content || (!bid && !sid)) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "role, a non-empty content and "
                                 "bot_id or session_id are required, as strings",
                                 0);
    }
    if (strcmp(role, "user") && strcmp(role, "assistant")) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "role must be \"user\" or \"assistant\"", 0);
    }
    if (strlen(content) > a->lim.max_message_bytes) {
        return chatbot_api_error(a, CHAT_ERR_TOO_LARGE,
                                 "the message is larger than ChatbotMaxMessageBytes", 0);
    }
    /* a token, as a message takes (an invalid bot_id is a 400 first) */
    if ((sid || chat_compat_id_valid(bid, strlen(bid))) &&
        (err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return chatbot_api_error(a, err, chatbot_api_rate_msg(a, retry), retry);
    }
    chatbot_api_begin(a);
    err = chatbot_compat_store_message(&a->jw, r, &a->id, role, content, strlen(content),
                                       bid, sid, &emsg);
    return err ? chatbot_api_error(a, err, emsg, chatbot_api_create_retry(a, err))
               : chatbot_api_finish(a, 200);
}

/* POST /api/export/session {"conversation_id","format":"markdown"|"json"} */
int chatbot_api_export(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    const char *conv, *format, *fname = NULL, *err;
    chat_buf_t out;
    int json, bad = 0;

    conv = chatbot_api_jstr(a, "conversation_id", &bad);
    if (!conv && !bad) {
        conv = chatbot_api_jstr(a, "session_id", &bad);
    }
    format = chatbot_api_jstr(a, "format", &bad);
    if (bad || !conv) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "conversation_id (string) is required", 0);
    }
    if (format && strcmp(format, "markdown") && strcmp(format, "json") &&
        strcmp(format, "md")) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "format must be \"markdown\" or \"json\"", 0);
    }
    json = format && !strcmp(format, "json");
    chat_buf_init(&out);
    err = chatbot_view_export(r, &a->id, conv, json, &out, &fname);
    if (err) {
        chat_buf_free(&out);
        return chatbot_api_error(a, err, "no such conversation", 0);
    }
    ap_set_content_type(r, json ? "application/json; charset=utf-8"
                                : "text/markdown; charset=utf-8");
    apr_table_setn(r->headers_out, "Content-Disposition",
                   apr_psprintf(r->pool, "attachment; filename=\"%s\"", fname));
    chatbot_api_nosniff(r);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)out.len);
    if (!r->header_only) {
        ap_rwrite(out.data ? out.data : "", (int)out.len, r);
    }
    chat_buf_free(&out);
    return OK;
}
