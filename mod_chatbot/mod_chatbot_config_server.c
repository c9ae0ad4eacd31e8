/* mod_chatbot_config_server.c - server-wide directives: the shared store
 * (sizes, quotas, ChatbotStore, its file), the circuit breaker, health
 * checks, per-address and worker bounds, the demo notice.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
#include "mod_chatbot_config.h"

/* Sizes of the shared store. */
const char *chatbot_set_store_size(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    const char *which = cmd->info;
    uint64_t v;

    if (err) {
        return err;
    }
    if (!strcmp(which, "history")) {
        if ((err = chat_parse_size(arg, 64 * 1024, (uint64_t)4 << 30, &v))) {
            return chatbot_config_bad_value(cmd, arg, err);
        }
        sc->layout.history_bytes = v;
    }
    else if (!strcmp(which, "answer")) {
        if ((err = chat_parse_size(arg, 1024, 16u << 20, &v))) {
            return chatbot_config_bad_value(cmd, arg, err);
        }
        sc->layout.max_message_bytes = (uint32_t)v;
    }
    else {
        int64_t n;
        int64_t lo = 1, hi = 1000000;
        if (!strcmp(which, "convs")) {
            lo = 8;
            hi = 1000000;
        }
        else if (!strcmp(which, "users")) {
            lo = 8;
            hi = 10000000;
        }
        else if (!strcmp(which, "msgs")) {
            lo = 2;
            hi = 100000;
        }
        else if (!strcmp(which, "queue")) {
            lo = 1;
            hi = 100000;
        }
        if ((err = chat_parse_int(arg, lo, hi, &n))) {
            return chatbot_config_bad_value(cmd, arg, err);
        }
        if (!strcmp(which, "convs")) {
            sc->layout.max_conversations = (uint32_t)n;
        }
        else if (!strcmp(which, "users")) {
            sc->layout.max_users = (uint32_t)n;
        }
        else if (!strcmp(which, "msgs")) {
            sc->layout.max_messages = (uint32_t)n;
        }
        else if (!strcmp(which, "queue")) {
            sc->layout.queue_cap = (uint32_t)n;
        }
    }
    sc->configured = 1;
    return NULL;
}

/* ChatbotQuota anonymous|authenticated [conversations=N] [history=SIZE]
 *              [sessions=N/min|off] [share=P%] (share: anonymous only) */
const char *chatbot_set_quota(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    chat_quota_t q, *dst;
    uint32_t share;
    int i, anon;

    if (err) {
        return err;
    }
    if (argc < 2) {
        return "ChatbotQuota: expected 'anonymous' or 'authenticated' and at least one "
               "of "
               "conversations=N, history=SIZE, sessions=N/min, share=P% (0 or off: no "
               "limit)";
    }
    if (!strcasecmp(argv[0], "anonymous")) {
        anon = 1;
    }
    else if (!strcasecmp(argv[0], "authenticated")) {
        anon = 0;
    }
    else {
        return chatbot_config_bad_value(cmd, argv[0],
                                        "expected 'anonymous' or 'authenticated'");
    }
    dst = anon ? &sc->policy.anon : &sc->policy.auth;
    q = *dst;
    share = sc->policy.anon_share_pct;
    for (i = 1; i < argc; i++) {
        char key[32];
        const char *val;
        int off;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return chatbot_config_bad_value(
                cmd, argv[i],
                "expected conversations=N, history=SIZE, sessions=N/min or "
                "share=P%");
        }
        off = !strcasecmp(val, "off") || !strcmp(val, "0");
        if (!strcmp(key, "conversations")) {
            int64_t n = 0;
            if (!off && (err = chat_parse_int(val, 1, 1000000, &n))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            q.conversations = (uint32_t)n;
        }
        else if (!strcmp(key, "history")) {
            uint64_t v = 0;
            if (!off && (err = chat_parse_size(val, 4096, (uint64_t)4 << 30, &v))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            q.history_bytes = v;
        }
        else if (!strcmp(key, "sessions")) {
            memset(&q.create, 0, sizeof(q.create));
            q.create.period_ms = 60000;
            if (!off) {
                if ((err = chat_parse_rate(val, &q.create.count, &q.create.period_ms))) {
                    return chatbot_config_bad_value(cmd, argv[i], err);
                }
                q.create.burst = q.create.count;
            }
        }
        else if (!strcmp(key, "share") && anon) {
            int64_t n;
            size_t len = strlen(val);
            const char *num = len && val[len - 1] == '%'
                                  ? apr_pstrndup(cmd->temp_pool, val, len - 1)
                                  : val;
            if ((err = chat_parse_int(num, 1, 100, &n))) {
                return chatbot_config_bad_value(cmd, argv[i],
                                                "expected a percentage from 1% to 100%");
            }
            share = (uint32_t)n;
        }
        else {
            return chatbot_config_bad_value(
                cmd, argv[i],
                anon ? "unknown key (conversations, history, sessions, share)"
                     : "unknown key (conversations, history, sessions; share "
                       "is set on the anonymous line)");
        }
    }
    *dst = q;
    sc->policy.anon_share_pct = share;
    return NULL;
}

const char *chatbot_set_history_file(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = chatbot_config_check_global(cmd);

    if (err) {
        return err;
    }
    chatbot_srv(cmd->server)->history_file = ap_server_root_relative(cmd->pool, arg);
    if (!chatbot_srv(cmd->server)->history_file) {
        return chatbot_config_bad_value(cmd, arg, "not a valid path");
    }
    return NULL;
}

/* ChatbotStore shm | redis://... | unix:/path[?db=N] (chat/storeurl.h) */
const char *chatbot_set_store(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    chat_storeurl_t *u;

    if (err) {
        return err;
    }
    u = apr_pcalloc(cmd->pool, sizeof(*u));
    if ((err = chat_storeurl_parse(arg, u))) {
        /* the value may hold a password: never echo it back */
        return apr_psprintf(cmd->pool, "ChatbotStore: %s", err);
    }
    sc->store_url = apr_pstrdup(cmd->pool, arg);
    sc->store = u->kind == CHAT_STOREURL_SHM ? NULL : u;
    return NULL;
}

/* ChatbotStoreTTL <duration>|off, ChatbotStoreTimeout <duration> */
const char *chatbot_set_store_time(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    int ttl = cmd->info != NULL;
    int64_t ms;

    if (err) {
        return err;
    }
    if (ttl && !strcasecmp(arg, "off")) {
        sc->store_ttl = 0;
        return NULL;
    }
    if ((err = ttl ? chat_parse_duration(arg, 60000, INT64_C(3650) * 86400000, &ms)
                   : chat_parse_duration(arg, 10, 60000, &ms))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    *(ttl ? &sc->store_ttl : &sc->store_timeout) = (apr_interval_time_t)ms * 1000;
    return NULL;
}

const char *chatbot_set_breaker(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    int i;

    if (err) {
        return err;
    }
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return chatbot_config_bad_value(
                cmd, argv[i], "expected failures=N and/or cooldown=<duration>");
        }
        if (!strcmp(key, "failures")) {
            int64_t n;
            if ((err = chat_parse_int(val, 1, 1000, &n))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            sc->breaker_threshold = (int)n;
        }
        else if (!strcmp(key, "cooldown")) {
            int64_t ms;
            if ((err = chat_parse_duration(val, 100, 86400000, &ms))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            sc->breaker_cooldown = ms * 1000;
        }
        else {
            return chatbot_config_bad_value(
                cmd, argv[i], "expected failures=N and/or cooldown=<duration>");
        }
    }
    return NULL;
}

const char *chatbot_set_health_interval(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = chatbot_config_check_global(cmd);
    int64_t ms;

    if (err) {
        return err;
    }
    if ((err = chat_parse_duration(arg, 1000, 86400000, &ms))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    sc->health_interval = ms * 1000;
    return NULL;
}

const char *chatbot_set_max_conns_ip(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = chatbot_config_check_global(cmd);
    int64_t n;

    if (err) {
        return err;
    }
    if ((err = chat_parse_int(arg, 0, 1000000, &n))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    chatbot_srv(cmd->server)->max_conns_per_ip = (int)n;
    return NULL;
}

/* ChatbotMaxWorkers auto|N, ChatbotMaxAnswersPerIP auto|off|N */
const char *chatbot_set_ws_bound(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    int workers = !strcmp((const char *)cmd->info, "workers");
    const char *err = chatbot_config_check_global(cmd);
    int64_t n;

    if (err) {
        return err;
    }
    if (!strcasecmp(arg, "auto")) {
        n = CHATBOT_UNSET;
    }
    else if (!workers && !strcasecmp(arg, "off")) {
        n = 0;
    }
    else if ((err = chat_parse_int(arg, 1, 100000, &n))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    if (workers) {
        sc->max_workers = (int)n;
    }
    else {
        sc->max_answers_per_ip = (int)n;
    }
    return NULL;
}

const char *chatbot_set_demo_notice(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = chatbot_config_check_global(cmd);

    if (err) {
        return err;
    }
    chatbot_srv(cmd->server)->demo_notice = arg;
    return NULL;
}
