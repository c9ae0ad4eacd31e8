/* mod_chatbot.c - the module declaration, hooks and request dispatch.
 *
 * Routes, relative to wherever `SetHandler chatbot` applies:
 *   .../ws          WebSocket chat endpoint   (mod_chatbot_ws_*.c)
 *   .../api/<route> REST API                  (mod_chatbot_api.c)
 *   .../metrics     Prometheus exposition     (mod_chatbot_status.c)
 * anything else is declined, so the UI's static files can live under the
 * same <Location> and be served by httpd's default handler.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#define CHATBOT_MODULE_MAIN /* AP_DECLARE_MODULE below does APLOG_USE_MODULE */
#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

static int chatbot_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    return chatbot_store_pre_config(pconf);
}

/* Runs for `apachectl -t` too: every cross-directive check belongs here so
 * a bad configuration never gets as far as a (re)start. */
static int chatbot_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                                server_rec *s)
{
    const char *err = chatbot_config_finish(pconf, s);

    if (err) {
        ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_CRIT, 0, s,
                     APLOGNO(10960) "chatbot: %s", err);
        return !OK;
    }
    return OK;
}

static int chatbot_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                               server_rec *s)
{
    apr_status_t rv;

    if (chatbot_http_init(pconf) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     APLOGNO(10961) "chatbot: libcurl initialisation failed");
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    rv = chatbot_store_post_config(pconf, ptemp, s);
    if (rv == APR_SUCCESS) {
        rv = chatbot_ident_post_config(pconf, ptemp, s);
    }
    if (rv != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    chatbot_ws_post_config(pconf, s);
    ap_add_version_component(pconf, CHATBOT_SERVER_ID);
    return OK;
}

/* See chatbot_child_stopping() in mod_chatbot.h. */
static volatile apr_uint32_t stopping_told;
static int stopping_hook_mpm;

static void chatbot_child_stopping_hook(apr_pool_t *pchild, int graceful)
{
    apr_atomic_set32(&stopping_told, 1);
    /* parked WebSockets have no thread to notice: they are kicked */
    chatbot_ws_child_stopping(graceful);
}

int chatbot_child_stopping(void)
{
    int state = AP_MPMQ_RUNNING;

    if (apr_atomic_read32(&stopping_told)) {
        return 1;
    }
    if (stopping_hook_mpm) {
        return 0;
    }
    ap_mpm_query(AP_MPMQ_MPM_STATE, &state);
    return state == AP_MPMQ_STOPPING;
}

void chatbot_child_stopping_settle(void)
{
    int state = AP_MPMQ_RUNNING, i;

    if (!stopping_hook_mpm || apr_atomic_read32(&stopping_told) ||
        ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS ||
        state != AP_MPMQ_STOPPING) {
        return;
    }
    for (i = 0; i < 1000 && !apr_atomic_read32(&stopping_told); i++) {
        apr_sleep(apr_time_from_msec(1));
    }
}

static void chatbot_child_init(apr_pool_t *p, server_rec *s)
{
    const char *mpm = ap_show_mpm();

    apr_atomic_set32(&stopping_told, 0);
    stopping_hook_mpm = mpm && (!strcmp(mpm, "event") || !strcmp(mpm, "worker"));
    chatbot_store_child_init(p, s);
    chatbot_ws_child_init(p, s);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n >= k && !strcmp(s + n - k, suffix);
}

static int chatbot_handler(request_rec *r)
{
    const char *path = r->uri;
    const char *api;

    if (!r->handler || strcmp(r->handler, CHATBOT_HANDLER)) {
        return DECLINED;
    }
    if (ends_with(path, "/ws")) {
        return chatbot_ws_handler(r);
    }
    if ((api = strstr(path, "/api/")) != NULL) {
        return chatbot_api_handler(r, api + 5);
    }
    if (ends_with(path, "/api")) {
        return chatbot_api_handler(r, "");
    }
    if (ends_with(path, "/metrics")) {
        return chatbot_metrics_handler(r);
    }
    return DECLINED;
}

static void chatbot_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_config(chatbot_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_check_config(chatbot_check_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(chatbot_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(chatbot_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(chatbot_child_stopping_hook, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(chatbot_handler, NULL, NULL, APR_HOOK_MIDDLE);
    chatbot_ws_register(p);
    chatbot_status_register(p);
    chatbot_store_register_hooks(p);
}

AP_DECLARE_MODULE(chatbot) = {STANDARD20_MODULE_STUFF,    chatbot_create_dir_conf,
                              chatbot_merge_dir_conf,     chatbot_create_srv_conf,
                              chatbot_merge_srv_conf,     chatbot_cmds,
                              chatbot_register_hooks,
#if defined(AP_MODULE_FLAG_ALWAYS_MERGE)
                              AP_MODULE_FLAG_ALWAYS_MERGE
#endif
};
