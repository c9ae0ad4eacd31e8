/* mod_chatbot_api_bots.c - the REST API's bot routes: the declared bots, the
 * status board, /api/execute, and the old controller's bots (its running
 * list, launch, stop and status, mod_chatbot_compat.c).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"

#include "chat/compat.h"
#include "mod_chatbot.h"
#include "mod_chatbot_api.h"

/* GET /api/bots, GET /api/bots/status: the old controller's running bots,
 * as an object keyed by bot id (board 0) and as the status board's list. */
static int compat_bots(api_t *a, int board)
{
    chatbot_api_refresh_health(a);
    chat_buf_reset(&a->out, 0);
    chat_jw_init(&a->jw, &a->out);
    chatbot_compat_bots(&a->jw, a->r, &a->id, board);
    if (chat_jw_status(&a->jw) != CHAT_OK) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
    }
    return chatbot_api_send_json(a, 200);
}

int chatbot_api_bots(api_t *a, const char *const *seg)
{
    return compat_bots(a, 0);
}

int chatbot_api_bots_status(api_t *a, const char *const *seg)
{
    return compat_bots(a, 1);
}

/* GET /api/bots/declared: the bots of the configuration */
int chatbot_api_bots_declared(api_t *a, const char *const *seg)
{
    chatbot_api_refresh_health(a);
    chatbot_api_begin(a);
    chat_jw_key(&a->jw, "bots");
    chatbot_view_bots(&a->jw, a->sc);
    chat_jw_kstr(&a->jw, "default", a->sc->default_bot_p->name);
    return chatbot_api_finish(a, 200);
}

/* GET /api/status: the status board */
int chatbot_api_status(api_t *a, const char *const *seg)
{
    chatbot_api_begin(a);
    chatbot_view_status(&a->jw, a->sc, a->lim.show_details);
    return chatbot_api_finish(a, 200);
}

/* POST /api/bot/launch {"bot_id","bot_type"}: the old controller's launch
 * (a new session under an old-style id) */
int chatbot_api_bot_launch(api_t *a, const char *const *seg)
{
    int bad = 0;
    const char *name = chatbot_api_jstr(a, "bot_id", &bad);
    const char *type = chatbot_api_jstr(a, "bot_type", &bad);
    const char *err, *emsg = NULL;
    apr_int64_t retry;

    if (bad) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "bot_id and bot_type must be strings", 0);
    }
    /* a launch takes a rate token, like create (issue 14); a request
     * refused for its id (400) does not */
    if (name && chat_compat_id_valid(name, strlen(name)) &&
        (err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return chatbot_api_error(a, err, chatbot_api_rate_msg(a, retry), retry);
    }
    chatbot_api_begin(a);
    err = chatbot_compat_launch(&a->jw, a->r, &a->id, name, type, &emsg);
    return err ? chatbot_api_error(a, err, emsg, chatbot_api_create_retry(a, err))
               : chatbot_api_finish(a, 200);
}

/* POST /api/bot/stop/{id}: the old controller's stop (an id names a
 * session) */
int chatbot_api_bot_stop(api_t *a, const char *const *seg)
{
    const char *err, *emsg = NULL;

    chatbot_api_begin(a);
    err = chatbot_compat_stop(&a->jw, a->r, &a->id, seg[2], &emsg);
    return err ? chatbot_api_error(a, err, emsg, 0) : chatbot_api_finish(a, 200);
}

/* GET /api/bot/{id}/status: the session an id (old or conversation) names */
int chatbot_api_bot_status(api_t *a, const char *const *seg)
{
    chat_conv_info_t ci;
    const char *err = chatbot_compat_find(a->r, &a->id, seg[1], &ci);

    if (err) {
        return chatbot_api_error(a, err, "no such session", 0);
    }
    return chatbot_api_session_reply(a, &ci, 200);
}

/* POST /api/execute {"command","args":[...],"bot_id","conversation_id"}:
 * runs a declared command (mod_chatbot_exec.c) */
int chatbot_api_execute(api_t *a, const char *const *seg)
{
    int status = 200;
    apr_int64_t retry;
    const char *err;

    if ((err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return chatbot_api_error(a, err, chatbot_api_rate_msg(a, retry), retry);
    }
    chat_buf_reset(&a->out, 0);
    chatbot_exec_api(a->r, &a->id, a->body, &a->lim, &a->out, &status);
    return chatbot_api_send_json(a, status);
}
