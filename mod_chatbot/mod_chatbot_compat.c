/* mod_chatbot_compat.c - the clients of the old port-8000 controller: its
 * REST shapes (GET /api/bots, GET /api/bots/status, POST /api/bot/launch,
 * /api/bot/stop/{id}, /api/bot/{id}/task, /api/chat/message, the extra
 * fields of /api/chat/history) and its WebSocket "command" frame, mapped
 * onto bots and sessions. The contract is docs/api.md, "Compatibility with
 * the port-8000 controller"; the REST plumbing is in mod_chatbot_api.c.
 *
 * The mapping: the old controller ran one process per bot id ("BOT-001");
 * here an old-style bot id names one of the caller's sessions - the one
 * titled so (launching BOT-001 creates a session of the default bot titled
 * BOT-001), or the one with that conversation id. Running = not stopped and
 * not archived; stopping it stops its answer and marks it stopped; launching
 * it again revives it with its history, as the old service kept a bot's
 * history across relaunches. Sessions made by the browser UI are listed
 * too, under their title when it is a usable id, else their conversation
 * id, so both kinds of client see the same sessions.
 */
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "ap_mpm.h"
#include "apr_hash.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "chat/compat.h"

/* a task being answered, as the status board shows it */
#define TASK_PREVIEW_BYTES 200

#define RUNNING(ci) (!((ci)->flags & (CHAT_CONV_STOPPED | CHAT_CONV_ARCHIVED)))

/* ---- finding the session an old-style id names --------------------------------- */

typedef struct {
    const char *name;
    int rank; /* of best: 0 running, 1 stopped, 2 archived, 3 both; 4 none */
    chat_conv_info_t best;
} find_ctx_t;

static int rank_of(const chat_conv_info_t *c)
{
    return ((c->flags & CHAT_CONV_ARCHIVED) ? 2 : 0) +
           ((c->flags & CHAT_CONV_STOPPED) ? 1 : 0);
}

/* the list comes most recently used first: the first of a rank wins */
static void find_cb(void *baton, const chat_conv_info_t *c)
{
    find_ctx_t *fc = baton;
    int rank = rank_of(c);

    if (rank < fc->rank && !strcmp(c->title, fc->name)) {
        fc->rank = rank;
        fc->best = *c;
    }
}

/* CHAT_OK or CHAT_ENOTFOUND. */
static chat_status_t find_session(chat_store_t *st, const chatbot_ident_t *id,
                                  const char *name, chat_conv_info_t *out)
{
    find_ctx_t fc;

    if (strlen(name) == CHAT_CONV_ID_LEN &&
        chat_store_conv_get(st, &id->owner, name, out) == CHAT_OK) {
        return CHAT_OK;
    }
    memset(&fc, 0, sizeof(fc));
    fc.name = name;
    fc.rank = 4;
    chat_store_conv_list(st, &id->owner, NULL, -1, find_cb, &fc);
    if (fc.rank == 4) {
        return CHAT_ENOTFOUND;
    }
    *out = fc.best;
    return CHAT_OK;
}

/* The session name names (as find_session), else a new one with flags: one
 * store step, so that a user's concurrent launches or messages for one new
 * id make one session. */
static chat_status_t find_or_make(chat_store_t *st, const chatbot_ident_t *id,
                                  const char *name, const chatbot_bot_t *bot,
                                  uint32_t flags, chat_conv_info_t *out, int *created)
{
    *created = 0;
    if (strlen(name) == CHAT_CONV_ID_LEN &&
        chat_store_conv_get(st, &id->owner, name, out) == CHAT_OK) {
        return CHAT_OK;
    }
    return chat_store_conv_find_or_create(st, &id->owner, bot->name, name, flags,
                                          chatbot_random64(), chatbot_now_ms(), out,
                                          created);
}

const char *chatbot_compat_find(request_rec *r, const chatbot_ident_t *id,
                                const char *name, chat_conv_info_t *out)
{
    chat_store_t *st = chatbot_store();
    chat_status_t rc;

    if (!name || !*name) {
        return CHAT_ERR_NOT_FOUND;
    }
    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    rc = find_session(st, id, name, out);
    return rc == CHAT_OK ? NULL : CHAT_ERR_NOT_FOUND;
}

const char *chatbot_compat_running(request_rec *r, const chatbot_ident_t *id,
                                   const char *name, chat_conv_info_t *out,
                                   const char **msg)
{
    const char *err = chatbot_compat_find(r, id, name, out);

    if (!err && !RUNNING(out)) {
        err = CHAT_ERR_NOT_FOUND;
    }
    if (err) {
        *msg = !strcmp(err, CHAT_ERR_INTERNAL)
                   ? "the chat store is not available"
                   : apr_psprintf(r->pool, "Bot %s is not running", name ? name : "");
    }
    return err;
}

/* The old controller answered what happened (not found, already running,
 * the bot failed) with 200 and "success": false; only requests it could
 * not read were refused at the HTTP level. */
int chatbot_compat_outcome(const char *code)
{
    return strcmp(code, CHAT_ERR_BAD_JSON) && strcmp(code, CHAT_ERR_BAD_REQUEST) &&
           strcmp(code, CHAT_ERR_TOO_LARGE) && strcmp(code, CHAT_ERR_RATE_LIMITED) &&
           strcmp(code, CHAT_ERR_FORBIDDEN) && strcmp(code, CHAT_ERR_INTERNAL);
}

/* ---- where the bots run --------------------------------------------------------- */

/* The old service gave each bot its own process and port; here every bot
 * is served by this httpd: its main process, and the port asked. */
static apr_int64_t server_pid(void)
{
    int forked = 0;

    ap_mpm_query(AP_MPMQ_IS_FORKED, &forked);
    return forked ? (apr_int64_t)getppid() : (apr_int64_t)getpid();
}

static apr_int64_t server_port(request_rec *r)
{
    return r->connection->local_addr ? r->connection->local_addr->port
                                     : ap_get_server_port(r);
}

/* ---- GET /api/bots, GET /api/bots/status ------------------------------------------- */

typedef struct {
    chat_conv_info_t ci;
    const char *key;
    const char *task; /* the message being answered, NULL if idle */
    int health;       /* of the session's bot: -1 unknown, 0 down, 1 up */
} listed_t;

typedef struct {
    apr_array_header_t *list;
} list_ctx_t;

static void list_cb(void *baton, const chat_conv_info_t *c)
{
    list_ctx_t *lc = baton;

    if (RUNNING(c)) {
        ((listed_t *)apr_array_push(lc->list))->ci = *c;
    }
}

typedef struct {
    apr_pool_t *p;
    const char *text;
} task_ctx_t;

static void task_cb(void *baton, const chat_msg_info_t *info, const char *text,
                    size_t len)
{
    task_ctx_t *tc = baton;

    if (info->role == CHAT_ROLE_USER) {
        tc->text =
            apr_pstrmemdup(tc->p, text, chat_compat_cut(text, len, TASK_PREVIEW_BYTES));
    }
}

/* The caller's running sessions, most recently used first, each with the
 * id an old client knows it by: its title when that is a usable id not
 * taken by a more recent session, else its conversation id. */
static apr_array_header_t *running_sessions(request_rec *r, const chatbot_ident_t *id)
{
    chat_store_t *st = chatbot_store();
    list_ctx_t lc;
    apr_hash_t *used = apr_hash_make(r->pool);
    chat_buf_t scratch;
    int i;

    lc.list = apr_array_make(r->pool, 8, sizeof(listed_t));
    if (!st) {
        return lc.list;
    }
    chat_store_conv_list(st, &id->owner, NULL, 0, list_cb, &lc);
    chat_buf_init(&scratch);
    for (i = 0; i < lc.list->nelts; i++) {
        listed_t *l = &APR_ARRAY_IDX(lc.list, i, listed_t);
        task_ctx_t tc = {r->pool, NULL};
        if (l->ci.state != CHAT_CONV_IDLE && l->ci.nmsgs > 0) {
            /* the user message is the last one, or the one before the
             * answer being written */
            uint32_t from = l->ci.nmsgs >= 2 ? l->ci.nmsgs - 2 : 0;
            chat_store_msg_read(st, &id->owner, l->ci.id, from, 2, &scratch, task_cb,
                                &tc);
        }
        l->task = tc.text;
    }
    chat_buf_free(&scratch);
    for (i = 0; i < lc.list->nelts; i++) {
        listed_t *l = &APR_ARRAY_IDX(lc.list, i, listed_t);
        chatbot_bot_t *b = chatbot_bot_find(chatbot_srv(r->server), l->ci.bot);
        if (chat_compat_id_valid(l->ci.title, strlen(l->ci.title)) &&
            !apr_hash_get(used, l->ci.title, APR_HASH_KEY_STRING)) {
            l->key = l->ci.title;
        }
        else {
            l->key = l->ci.id;
        }
        apr_hash_set(used, l->key, APR_HASH_KEY_STRING, l);
        l->health = b ? chatbot_view_bot_health(b) : -1;
    }
    return lc.list;
}

void chatbot_compat_bots(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                         int as_list)
{
    apr_array_header_t *list = running_sessions(r, id);
    apr_int64_t pid = server_pid(), port = server_port(r);
    int i;

    if (as_list) {
        chat_jw_arr_begin(jw);
    }
    else {
        chat_jw_obj_begin(jw);
        chat_jw_key(jw, "bots");
        chat_jw_obj_begin(jw);
    }
    for (i = 0; i < list->nelts; i++) {
        listed_t *l = &APR_ARRAY_IDX(list, i, listed_t);
        if (as_list) {
            chat_jw_obj_begin(jw);
            chat_jw_kstr(jw, "id", l->key);
            chat_jw_kint(jw, "port", port);
            chat_jw_kbool(jw, "running", l->health != 0);
            chat_jw_kstr(jw, "status", l->health != 0 ? "online" : "offline");
            chat_jw_kint(jw, "pid", pid);
        }
        else {
            chat_jw_key(jw, l->key);
            chat_jw_obj_begin(jw);
            chat_jw_kstr(jw, "status",
                         l->ci.state != CHAT_CONV_IDLE ? "busy"
                         : l->health == 0              ? "error"
                                                       : "running");
            chat_jw_kstr(jw, "current_task", l->task);
            chat_jw_kint(jw, "pid", pid);
            chat_jw_kint(jw, "port", port);
            chat_jw_kstr(jw, "bot", l->ci.bot);
        }
        chat_jw_kstr(jw, "conversation_id", l->ci.id);
        chat_jw_obj_end(jw);
    }
    if (as_list) {
        chat_jw_arr_end(jw);
    }
    else {
        chat_jw_obj_end(jw);
        chat_jw_obj_end(jw);
    }
}

/* ---- launch, stop -------------------------------------------------------------------
 */

static const char *bad_id_msg(request_rec *r, const char *name)
{
    return apr_psprintf(r->pool,
                        "invalid bot id%s: 1 to %d characters, no space at either "
                        "end, no control character and none of / \\ ? # %% < > & \" ' `",
                        name ? "" : " (bot_id is required)", CHAT_COMPAT_ID_MAX);
}

static void where(chat_jw_t *jw, request_rec *r, const char *name,
                  const chat_conv_info_t *ci)
{
    chat_jw_kstr(jw, "bot_id", name);
    chat_jw_kstr(jw, "conversation_id", ci->id);
    chat_jw_kstr(jw, "bot", ci->bot);
    chat_jw_kint(jw, "port", server_port(r));
    chat_jw_kint(jw, "pid", server_pid());
}

const char *chatbot_compat_launch(chat_jw_t *jw, request_rec *r,
                                  const chatbot_ident_t *id, const char *name,
                                  const char *bot_type, const char **msg)
{
    chat_store_t *st = chatbot_store();
    chatbot_bot_t *bot = NULL;
    chat_conv_info_t ci;
    chat_status_t rc;
    int revived = 0, created;

    if (!name || !chat_compat_id_valid(name, strlen(name))) {
        *msg = bad_id_msg(r, name);
        return CHAT_ERR_BAD_REQUEST;
    }
    /* the bot: the one bot_type (the old client's "type" picker) or the id
     * itself names, else the default one */
    if (bot_type) {
        bot = chatbot_bot_find(chatbot_srv(r->server), bot_type);
    }
    if (!bot) {
        bot = chatbot_bot_find(chatbot_srv(r->server), name);
    }
    if (!bot) {
        bot = chatbot_srv(r->server)->default_bot_p;
    }
    if (!st) {
        *msg = "the chat store is not available";
        return CHAT_ERR_INTERNAL;
    }
    rc = find_or_make(st, id, name, bot, 0, &ci, &created);
    if (rc == CHAT_OK && !created && RUNNING(&ci)) {
        *msg = apr_psprintf(r->pool, "Bot %s is already running", name);
        return CHAT_ERR_BUSY;
    }
    if (rc == CHAT_OK && !created) {
        /* relaunched: the same session, with its history */
        rc = chat_store_conv_flags(st, &id->owner, ci.id, 0,
                                   CHAT_CONV_STOPPED | CHAT_CONV_ARCHIVED,
                                   chatbot_now_ms());
        if (rc == CHAT_OK) {
            rc = chat_store_conv_get(st, &id->owner, ci.id, &ci);
        }
        revived = 1;
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &id->owner);
    }
    if (rc != CHAT_OK) {
        /* the creation rate and the quotas as the new routes report them */
        const char *code = chatbot_store_err(rc);
        *msg = rc == CHAT_EFULL ? "cannot launch a bot now: the history storage is full"
                                : chatbot_store_err_text(code);
        return code;
    }
    chat_jw_kbool(jw, "success", 1);
    chat_jw_kstr(jw, "message",
                 apr_psprintf(r->pool, "Bot %s launched%s", name,
                              revived ? " again, with its history" : ""));
    where(jw, r, name, &ci);
    return NULL;
}

const char *chatbot_compat_stop(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                                const char *name, const char **msg)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    chat_status_t rc;

    if (!st) {
        *msg = "the chat store is not available";
        return CHAT_ERR_INTERNAL;
    }
    rc = find_session(st, id, name, &ci);
    if (rc == CHAT_OK && RUNNING(&ci)) {
        /* its answer ends wherever it is generated, the partial answer kept */
        chat_store_gen_request_stop(st, &id->owner, ci.id);
        rc = chat_store_conv_flags(st, &id->owner, ci.id, CHAT_CONV_STOPPED, 0,
                                   chatbot_now_ms());
        if (rc == CHAT_OK) {
            chat_store_user_bump(st, &id->owner);
        }
    }
    else if (rc == CHAT_OK) {
        rc = CHAT_ENOTFOUND;
        *msg = apr_psprintf(r->pool, "Bot %s is not running", name);
    }
    else {
        *msg = apr_psprintf(r->pool, "Bot %s not found", name);
    }
    if (rc != CHAT_OK) {
        return CHAT_ERR_NOT_FOUND;
    }
    chat_jw_kbool(jw, "success", 1);
    chat_jw_kstr(jw, "message", apr_psprintf(r->pool, "Bot %s stopped", name));
    where(jw, r, name, &ci);
    return NULL;
}

/* ---- POST /api/chat/message
 * ------------------------------------------------------------ */

const char *chatbot_compat_store_message(chat_jw_t *jw, request_rec *r,
                                         const chatbot_ident_t *id, const char *role,
                                         const char *content, apr_size_t len,
                                         const char *bot_id, const char *session_id,
                                         const char **msg)
{
    chat_store_t *st = chatbot_store();
    chat_role_t rl = strcmp(role, "user") ? CHAT_ROLE_ASSISTANT : CHAT_ROLE_USER;
    chat_conv_info_t ci;
    chat_status_t rc;
    uint32_t index = 0;
    apr_uint64_t now = chatbot_now_ms();

    if (!session_id && !chat_compat_id_valid(bot_id, strlen(bot_id))) {
        *msg = bad_id_msg(r, bot_id);
        return CHAT_ERR_BAD_REQUEST;
    }
    if (!st) {
        *msg = "the chat store is not available";
        return CHAT_ERR_INTERNAL;
    }
    if (session_id) {
        rc = chat_store_conv_get(st, &id->owner, session_id, &ci);
        *msg = "no such session";
    }
    else {
        /* The old service kept history per bot id, launched or not: a
         * session that holds it, stopped until the id is launched. */
        chatbot_bot_t *bot = chatbot_bot_find(chatbot_srv(r->server), bot_id);
        int created;
        rc = find_or_make(st, id, bot_id,
                          bot ? bot : chatbot_srv(r->server)->default_bot_p,
                          CHAT_CONV_STOPPED, &ci, &created);
        *msg = "cannot store the message now: the history storage is full";
    }
    if (rc == CHAT_OK && ci.state != CHAT_CONV_IDLE) {
        /* an answer is being written into this session: it must stay last */
        rc = CHAT_EBUSY;
        *msg = "the session is answering a message; store yours when it is done";
    }
    if (rc == CHAT_OK) {
        rc = chat_store_msg_append(st, &id->owner, ci.id, rl,
                                   rl == CHAT_ROLE_ASSISTANT ? CHAT_MSG_COMPLETE : 0,
                                   content, len, now, &index);
        *msg = rc == CHAT_ETOOBIG
                   ? "the message is larger than the history keeps"
                   : "cannot store the message now: the history storage is full";
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &id->owner);
    }
    if (rc != CHAT_OK) {
        if (rc == CHAT_ELIMIT || rc == CHAT_EQUOTA) {
            *msg = chatbot_store_err_text(chatbot_store_err(rc));
            return chatbot_store_err(rc);
        }
        return rc == CHAT_ENOTFOUND  ? CHAT_ERR_NOT_FOUND
               : rc == CHAT_EBUSY    ? CHAT_ERR_BUSY
               : rc == CHAT_ETOOBIG  ? CHAT_ERR_TOO_LARGE
               : rc == CHAT_EUNAVAIL ? CHAT_ERR_STORE_UNAVAILABLE
                                     : CHAT_ERR_STORAGE_FULL;
    }
    chat_jw_kbool(jw, "success", 1);
    chat_jw_kstr(jw, "bot_id", bot_id);
    chat_jw_kstr(jw, "session_id", ci.id);
    chat_jw_kstr(jw, "conversation_id", ci.id);
    chat_jw_kint(jw, "index", index);
    return NULL;
}

/* ---- the WebSocket "command" frame ---------------------------------------------------
 */

const char *chatbot_compat_ws_command(request_rec *r, const chatbot_ident_t *id,
                                      chat_cmsg_t *cm, apr_pool_t *p, chat_buf_t *frame,
                                      const char **msg)
{
    const char *name = cm->bot_id;
    chat_conv_info_t ci;
    chat_jw_t jw;

    if (cm->conversation_id) {
        cm->bot_id = NULL; /* the conversation decides the bot */
    }
    else if (name) {
        const char *err = chatbot_compat_find(r, id, name, &ci);
        if (!err && RUNNING(&ci)) {
            cm->conversation_id = apr_pstrdup(p, ci.id);
            cm->bot_id = NULL;
        }
        else if (err && !strcmp(err, CHAT_ERR_INTERNAL)) {
            *msg = "the chat store is not available";
            return err;
        }
        else if (err && chatbot_bot_find(chatbot_srv(r->server), name)) {
            /* a declared bot's name: a message to that bot, as "message" */
        }
        else {
            *msg = apr_psprintf(p, "Bot %s is not running", name);
            return CHAT_ERR_NOT_FOUND;
        }
    }
    /* {"type":"typing"}: the old client shows its indicator on it */
    chat_buf_reset(frame, 64 * 1024);
    chat_jw_init(&jw, frame);
    chat_jw_obj_begin(&jw);
    chat_jw_kstr(&jw, "type", "typing");
    chat_jw_kstr(&jw, "bot_id", name);
    if (cm->id) {
        chat_jw_kstr(&jw, "id", cm->id);
    }
    chat_jw_obj_end(&jw);
    return NULL;
}

void chatbot_compat_error_frame(chat_buf_t *frame, const char *msg)
{
    /* the old client tells a failure by these two members, whatever the type */
    if (!frame->len || frame->data[frame->len - 1] != '}') {
        return;
    }
    frame->len--;
    chat_buf_puts(frame, ",\"success\":false,\"error\":\"");
    chat_json_escape(frame, msg ? msg : "", msg ? strlen(msg) : 0);
    chat_buf_puts(frame, "\"}");
}
