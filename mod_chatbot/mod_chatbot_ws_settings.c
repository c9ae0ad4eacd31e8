/* mod_chatbot_ws_settings.c - the WebSocket "settings" message: read or
 * change a conversation's model, system prompt and temperature
 * (docs/protocol.md). The rules live in mod_chatbot_settings.c. */

#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_settings.h"
#include "mod_chatbot_ws.h"

/* Everything is allocated in a pool of this request only: a connection
 * lives long and may ask many times (the model lists are up to 1000 names). */
static void ws_settings(chatbot_wsc_t *w, apr_pool_t *p)
{
    const char *conv = w->cm.conversation_id;
    chat_conv_info_t ci;
    chatbot_bot_t *bot;
    chatbot_settings_t s;
    chat_status_t rc;
    chat_jw_t jw;
    char msg[256];
    int change = w->cm.model || w->cm.system || w->cm.has_temperature || w->cm.reset;

    rc = chat_store_conv_get(chatbot_store(), &w->id.owner, conv, &ci);
    if (rc != CHAT_OK) {
        const char *code = chatbot_store_err(rc);
        chatbot_ws_send_error(w, code, chatbot_store_err_text(code), conv, w->cm.id, -1);
        return;
    }
    bot = chatbot_bot_get(w->r->server, ci.bot);
    if (!bot) {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND,
                              "the bot of this conversation is no longer configured",
                              conv, w->cm.id, -1);
        return;
    }
    if (change) {
        chatbot_settings_req_t req;
        const char *err;
        memset(&req, 0, sizeof(req));
        req.model = w->cm.model;
        req.system = w->cm.system;
        req.system_len = w->cm.system_len;
        req.temperature = w->cm.temperature;
        req.has_temperature = w->cm.has_temperature;
        req.reset = w->cm.reset;
        err = chatbot_settings_change(p, &w->lim, bot, &w->id.owner, conv, &req, msg,
                                      sizeof(msg));
        if (err) {
            chatbot_ws_send_error(w, err, msg, conv, w->cm.id, -1);
            return;
        }
    }
    chatbot_settings_load(p, &w->lim, &w->id.owner, conv, &s);
    chatbot_ws_frame_begin(w, &jw, "settings");
    if (w->cm.id) {
        chat_jw_kstr(&jw, "id", w->cm.id);
    }
    chat_jw_kstr(&jw, "conversation_id", conv);
    chatbot_settings_view(&jw, p, &w->lim, bot, &s);
    chatbot_ws_frame_end(w, &jw);
}

void chatbot_ws_settings(chatbot_wsc_t *w)
{
    apr_pool_t *p;

    if (apr_pool_create(&p, w->r->pool) != APR_SUCCESS) {
        chatbot_ws_send_error(w, CHAT_ERR_INTERNAL, "out of memory",
                              w->cm.conversation_id, w->cm.id, -1);
        return;
    }
    ws_settings(w, p);
    apr_pool_destroy(p);
}

void chatbot_ws_settings_brief(chatbot_wsc_t *w, chat_jw_t *jw, const char *conv)
{
    chatbot_settings_t s;
    apr_pool_t *p;

    if (apr_pool_create(&p, w->r->pool) != APR_SUCCESS) {
        return;
    }
    chatbot_settings_load(p, &w->lim, &w->id.owner, conv, &s);
    chatbot_settings_brief(jw, &s);
    apr_pool_destroy(p);
}
