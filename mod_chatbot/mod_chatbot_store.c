/* mod_chatbot_store.c - the chat store as the rest of the module sees it:
 * the store provider in use and this process's handle on it, which every
 * chat_store_*() call goes through (include/chat/store.h), the hooks that
 * drive it (post_config, child_init, the parent's upkeep when a child
 * exits), and the store's error codes and texts. (The clock and the CSPRNG
 * are in mod_chatbot_util.c.)
 *
 * Providers are found the way mod_socache's are (ap_socache_provider_t):
 * registered with ap_register_provider() in the group
 * CHATBOT_STORE_PROVIDER_GROUP and looked up by name. A provider is two
 * halves: its glue (chatbot_store_provider_t: make or find the storage at
 * post_config, set up a child) and its core operations
 * (chat_store_provider_t, dispatched through the handle). Shared memory
 * ("shm", mod_chatbot_store_shm.c) is the provider for one host and the
 * default; a second one (redis, for several hosts) registers next to it.
 *
 * The store locks itself: callers never hold a lock around chat_store_*()
 * calls. Each child registers with the store (child_init) so that the
 * others can tell when it is gone; the parent runs the store's upkeep when
 * a child exits and from the monitor hook.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_main.h"
#include "ap_provider.h"
#include "mpm_common.h"
#include "util_mutex.h"
#include "apr_strings.h"
#include "apr_time.h"

#include "mod_chatbot.h"

static const chatbot_store_provider_t *g_provider; /* in use since post_config */
static pid_t g_parent;                             /* the process that ran it */
static chat_store_t *g_store;                      /* handle for this process */

chat_store_t *chatbot_store(void)
{
    return g_store;
}

const char *chatbot_store_err(chat_status_t rc)
{
    switch (rc) {
    case CHAT_OK:
        return NULL;
    case CHAT_EFULL:
        return CHAT_ERR_STORAGE_FULL;
    case CHAT_EQUOTA:
        return CHAT_ERR_QUOTA_EXCEEDED;
    case CHAT_ELIMIT:
        return CHAT_ERR_RATE_LIMITED;
    case CHAT_ETOOBIG:
        return CHAT_ERR_TOO_LARGE;
    case CHAT_ENOTFOUND:
        return CHAT_ERR_NOT_FOUND;
    case CHAT_EUNAVAIL:
        return CHAT_ERR_STORE_UNAVAILABLE;
    default:
        return CHAT_ERR_INTERNAL;
    }
}

const char *chatbot_store_err_text(const char *code)
{
    if (!code || !strcmp(code, CHAT_ERR_NOT_FOUND)) {
        return "no such conversation";
    }
    if (!strcmp(code, CHAT_ERR_STORAGE_FULL)) {
        return "the history storage is full; try again later";
    }
    if (!strcmp(code, CHAT_ERR_QUOTA_EXCEEDED)) {
        return "you have reached your share of the history storage; delete or finish "
               "some conversations";
    }
    if (!strcmp(code, CHAT_ERR_RATE_LIMITED)) {
        return "too many new conversations; try again shortly";
    }
    if (!strcmp(code, CHAT_ERR_TOO_LARGE)) {
        return "the message is too large to store";
    }
    return "the chat store is not available";
}

static void core_log(void *baton, chat_log_level_t level, const char *msg)
{
    int l = level == CHAT_LOG_ERROR    ? APLOG_ERR
            : level == CHAT_LOG_WARN   ? APLOG_WARNING
            : level == CHAT_LOG_NOTICE ? APLOG_NOTICE
            : level == CHAT_LOG_INFO   ? APLOG_INFO
                                       : APLOG_DEBUG;
    ap_log_error(APLOG_MARK, l, 0, ap_server_conf, "chatbot: %s", msg);
}

int chatbot_store_pre_config(apr_pool_t *pconf)
{
    /* The store needs no APR mutex any more; the type stays registered so
     * that configurations written for older versions (`Mutex posixsem
     * chatbot-store`) still parse. */
    apr_status_t rv =
        ap_mutex_register(pconf, CHATBOT_MUTEX_TYPE, NULL, APR_LOCK_DEFAULT, 0);
    chat_log_set(core_log, NULL);
    return rv == APR_SUCCESS ? OK : 500;
}

/* The provider ChatbotStore names (both redis:// and unix: are redis). */
static const char *provider_name(chatbot_srv_conf *sc)
{
    return sc->store ? chatbot_store_redis.name : CHATBOT_STORE_DEFAULT;
}

apr_status_t chatbot_store_post_config(apr_pool_t *pconf, apr_pool_t *ptemp,
                                       server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    const char *name = provider_name(sc);
    const chatbot_store_provider_t *pv;
    apr_status_t rv;
    int i;

    if (g_store) {
        chat_store_detach(g_store);
        g_store = NULL;
    }
    g_provider = NULL;
    pv = ap_lookup_provider(CHATBOT_STORE_PROVIDER_GROUP, name,
                            CHATBOT_STORE_PROVIDER_VERSION);
    if (!pv) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     APLOGNO(10922) "chatbot: no store provider named '%s' is available",
                     name);
        return APR_EGENERAL;
    }
    if ((rv = pv->init(&g_store, s, pconf, ptemp)) != APR_SUCCESS) {
        return rv;
    }
    g_provider = pv;
    g_parent = getpid();
    chat_store_set_policy(g_store, &sc->policy);
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        be->index =
            chat_store_backend_register(g_store, be->name, (uint32_t)be->max_active);
        if (be->index < 0) {
            ap_log_error(
                APLOG_MARK, APLOG_CRIT, 0, s,
                APLOGNO(10914) "chatbot: no room for backend %s in the shared store",
                be->name);
            return APR_EGENERAL;
        }
    }
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_bot_t *b = APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *);
        int j;
        b->series =
            apr_pcalloc(pconf, sizeof(int) * (apr_size_t)(b->backends->nelts + 1));
        for (j = 0; j < b->backends->nelts; j++) {
            chatbot_backend_t *be = APR_ARRAY_IDX(b->backends, j, chatbot_backend_t *);
            b->series[j] = chat_store_series(g_store, b->name, be->name);
        }
    }
    return APR_SUCCESS;
}

/* Testing aid (docs/testing.md): with CHATBOT_TEST_STORE_PAUSE_US=N in
 * httpd's environment a child pauses N microseconds at one store crash
 * point in 16, so that the crash-safety test's kill -9 lands inside store
 * updates often. Never set in production. */
static apr_interval_time_t test_pause_us;

static void test_pause(void)
{
    static __thread unsigned n;

    if (++n % 16 == 0) {
        apr_sleep(test_pause_us);
    }
}

static apr_status_t child_detach(void *data)
{
    chat_store_proc_detach(data);
    return APR_SUCCESS;
}

void chatbot_store_child_init(apr_pool_t *pchild, server_rec *s)
{
    const char *pause = getenv("CHATBOT_TEST_STORE_PAUSE_US");

    if (!g_store) {
        return;
    }
    if (g_provider->child_init &&
        g_provider->child_init(g_store, pchild, s) != APR_SUCCESS) {
        return; /* logged by the provider */
    }
    if (pause && atoi(pause) > 0) {
        test_pause_us = atoi(pause);
        chat_store_set_crash_hook(test_pause);
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            APLOGNO(
                10921) "chatbot: CHATBOT_TEST_STORE_PAUSE_US is set: store updates pause "
                       "for testing (never use this in production)");
    }
    /* from the child's main thread, which lives as long as the child: its
     * entry in the process table tells the others when it is gone */
    if (chat_store_proc_attach(g_store, (int)getpid(), chatbot_now_ms()) == CHAT_OK) {
        apr_pool_cleanup_register(pchild, g_store, child_detach, apr_pool_cleanup_null);
    }
    else {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            APLOGNO(10916) "chatbot: the store's process table is full; if this child "
                           "crashes, its answers are released by timeouts only");
    }
}

/* In the parent: a child is gone (exit, crash, kill -9). Whatever it held
 * in the store is released now rather than when someone trips over it. */
static void store_child_status(server_rec *s, pid_t pid, ap_generation_t gen, int slot,
                               mpm_child_status state)
{
    int n;

    if (state != MPM_CHILD_EXITED || !g_store || g_parent != getpid()) {
        return;
    }
    n = chat_store_maintain(g_store, chatbot_now_ms());
    if (n > 0) {
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                     APLOGNO(10919) "chatbot: cleaned up after %d process(es) that ended "
                                    "(last: pid %" APR_PID_T_FMT ")",
                     n, pid);
    }
}

/* In the parent, about every ten seconds. */
static int store_monitor(apr_pool_t *p, server_rec *s)
{
    if (g_store && g_parent == getpid()) {
        chat_store_maintain(g_store, chatbot_now_ms());
    }
    return DECLINED;
}

void chatbot_store_register_hooks(apr_pool_t *p)
{
    ap_register_provider(p, CHATBOT_STORE_PROVIDER_GROUP, chatbot_store_shm.name,
                         CHATBOT_STORE_PROVIDER_VERSION, &chatbot_store_shm);
    ap_register_provider(p, CHATBOT_STORE_PROVIDER_GROUP, chatbot_store_redis.name,
                         CHATBOT_STORE_PROVIDER_VERSION, &chatbot_store_redis);
    ap_hook_child_status(store_child_status, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_monitor(store_monitor, NULL, NULL, APR_HOOK_MIDDLE);
}
