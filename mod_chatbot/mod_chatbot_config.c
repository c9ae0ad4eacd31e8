/* mod_chatbot_config.c - the directive table (chatbot_cmds[]), create and
 * merge of the server and per-dir records, the effective per-request
 * limits, and the per-dir directives.
 *
 * Server scope (sizes shared memory, declares shared resources) is set in
 * mod_chatbot_config_bots.c (backends, bots), mod_chatbot_config_server.c
 * (store, quotas, breaker, bounds) and mod_chatbot_config_cmd.c (commands);
 * checked after parsing in mod_chatbot_config_check.c.
 * Per-dir scope (merged with UNSET sentinels): origins, rate limit, message
 * size, timeouts, ping/idle, logging of content.
 * Value parsing is done by the core (chat/confparse.h); setters only add the
 * directive name and the bad value to the message.
 */
#include <string.h>
#include <netinet/in.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
#include "mod_chatbot_config.h"
#include "mod_chatbot_settings.h"

/* Defaults */
#define DEF_HISTORY_BYTES (16u * 1024 * 1024)
#define DEF_MAX_CONVS 1024
#define DEF_MAX_USERS 4096
#define DEF_MAX_MSGS 200
#define DEF_MAX_ANSWER (256u * 1024)
#define DEF_MAX_BACKENDS 16
#define DEF_QUEUE 64
#define DEF_MAX_ACTIVE 256
#define DEF_SERIES 64
/* Per-identity quotas (ChatbotQuota) and the anonymous share */
#define DEF_ANON_CONVS 32
#define DEF_ANON_HISTORY (1024u * 1024)
#define DEF_ANON_SESSIONS 20
#define DEF_AUTH_CONVS 200
#define DEF_AUTH_HISTORY (4u * 1024 * 1024)
#define DEF_AUTH_SESSIONS 60
#define DEF_ANON_SHARE 50

chatbot_srv_conf *chatbot_srv(server_rec *s)
{
    return ap_get_module_config(s->module_config, &chatbot_module);
}
void *chatbot_create_srv_conf(apr_pool_t *p, server_rec *s)
{
    chatbot_srv_conf *sc = apr_pcalloc(p, sizeof(*sc));

    sc->layout.max_users = DEF_MAX_USERS;
    sc->layout.max_conversations = DEF_MAX_CONVS;
    sc->layout.max_messages = DEF_MAX_MSGS;
    sc->layout.max_message_bytes = DEF_MAX_ANSWER;
    sc->layout.history_bytes = DEF_HISTORY_BYTES;
    sc->layout.max_backends = DEF_MAX_BACKENDS;
    sc->layout.queue_cap = DEF_QUEUE;
    sc->layout.max_active = DEF_MAX_ACTIVE;
    sc->layout.metric_series = DEF_SERIES;
    sc->policy.anon.conversations = DEF_ANON_CONVS;
    sc->policy.anon.history_bytes = DEF_ANON_HISTORY;
    sc->policy.anon.create.count = DEF_ANON_SESSIONS;
    sc->policy.anon.create.period_ms = 60000;
    sc->policy.anon.create.burst = DEF_ANON_SESSIONS;
    sc->policy.auth.conversations = DEF_AUTH_CONVS;
    sc->policy.auth.history_bytes = DEF_AUTH_HISTORY;
    sc->policy.auth.create.count = DEF_AUTH_SESSIONS;
    sc->policy.auth.create.period_ms = 60000;
    sc->policy.auth.create.burst = DEF_AUTH_SESSIONS;
    sc->policy.anon_share_pct = DEF_ANON_SHARE;
    sc->backends = apr_array_make(p, 4, sizeof(chatbot_backend_t *));
    sc->bots = apr_array_make(p, 4, sizeof(chatbot_bot_t *));
    sc->commands = apr_hash_make(p);
    sc->top = chatbot_config_bot_new(p, "default");
    sc->top->implicit = 1;
    sc->breaker_threshold = 5;
    sc->breaker_cooldown = apr_time_from_sec(60);
    sc->health_interval = apr_time_from_sec(30);
    sc->store_ttl = -1;
    sc->store_timeout = -1;
    sc->max_conns_per_ip = 0;
    sc->max_workers = CHATBOT_UNSET;
    sc->max_answers_per_ip = CHATBOT_UNSET;
    return sc;
}

/* Everything at server scope is global: virtual hosts share the main
 * server's record (the shared memory and the bots are one per httpd). */
void *chatbot_merge_srv_conf(apr_pool_t *p, void *base, void *add)
{
    return base;
}

void *chatbot_create_dir_conf(apr_pool_t *p, char *dir)
{
    chatbot_dir_conf *dc = apr_pcalloc(p, sizeof(*dc));

    dc->path = dir;
    dc->max_message_bytes = CHATBOT_UNSET;
    dc->max_fragments = CHATBOT_UNSET;
    dc->connect_timeout_ms = CHATBOT_UNSET;
    dc->first_token_timeout_ms = CHATBOT_UNSET;
    dc->token_timeout_ms = CHATBOT_UNSET;
    dc->total_timeout_ms = CHATBOT_UNSET;
    dc->ping_interval_ms = CHATBOT_UNSET;
    dc->idle_timeout_ms = CHATBOT_UNSET;
    dc->send_timeout_ms = CHATBOT_UNSET;
    dc->log_content = CHATBOT_UNSET;
    dc->continue_without_viewer = CHATBOT_UNSET;
    dc->cookie_secure = CHATBOT_UNSET;
    dc->cookie_host_prefix = CHATBOT_UNSET;
    dc->show_details = CHATBOT_UNSET;
    dc->user_settings = CHATBOT_UNSET;
    dc->system_prompt_max = CHATBOT_UNSET;
    return dc;
}

#define MERGE(f) n->f = (a->f != CHATBOT_UNSET) ? a->f : b->f

void *chatbot_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    chatbot_dir_conf *b = basev, *a = addv;
    chatbot_dir_conf *n = apr_pcalloc(p, sizeof(*n));

    n->path = a->path ? a->path : b->path;
    n->origins = a->origins ? a->origins : b->origins;
    n->origins_any = a->origins ? a->origins_any : b->origins_any;
    n->rate = a->rate_set ? a->rate : b->rate;
    n->rate_set = a->rate_set || b->rate_set;
    MERGE(max_message_bytes);
    MERGE(max_fragments);
    MERGE(connect_timeout_ms);
    MERGE(first_token_timeout_ms);
    MERGE(token_timeout_ms);
    MERGE(total_timeout_ms);
    MERGE(ping_interval_ms);
    MERGE(idle_timeout_ms);
    MERGE(send_timeout_ms);
    MERGE(log_content);
    MERGE(continue_without_viewer);
    MERGE(cookie_secure);
    MERGE(cookie_host_prefix);
    MERGE(show_details);
    MERGE(user_settings);
    MERGE(system_prompt_max);
    n->temp_set = a->temp_set || b->temp_set;
    n->temp_min = a->temp_set ? a->temp_min : b->temp_min;
    n->temp_max = a->temp_set ? a->temp_max : b->temp_max;
    n->anon_rate = a->anon_rate_set ? a->anon_rate : b->anon_rate;
    n->anon_rate_set = a->anon_rate_set || b->anon_rate_set;
    return n;
}

#undef MERGE

#define PICK(v, d) ((v) != CHATBOT_UNSET ? (v) : (d))

/* What `Require local` lets in (mod_authz_host): a loopback client, or one
 * that connects from the server's own address. The client is
 * r->useragent_addr, so mod_remoteip's view counts behind a proxy. */
static int chatbot_client_is_local(request_rec *r)
{
    const apr_sockaddr_t *a = r->useragent_addr;

    if (!a) {
        return 0;
    }
    if (apr_sockaddr_equal(a, r->connection->local_addr)) {
        return 1;
    }
    if (a->family == APR_INET) {
        const unsigned char *b = (const unsigned char *)a->ipaddr_ptr;
        return b[0] == 127;
    }
#if APR_HAVE_IPV6
    if (a->family == APR_INET6) {
        const struct in6_addr *v6 = (const struct in6_addr *)a->ipaddr_ptr;
        return IN6_IS_ADDR_LOOPBACK(v6) ||
               (IN6_IS_ADDR_V4MAPPED(v6) && v6->s6_addr[12] == 127);
    }
#endif
    return 0;
}

void chatbot_limits_get(request_rec *r, chatbot_limits_t *lim)
{
    chatbot_dir_conf *dc = ap_get_module_config(r->per_dir_config, &chatbot_module);

    lim->max_message_bytes = (apr_size_t)PICK(dc->max_message_bytes, 65536);
    lim->max_fragments = (apr_size_t)PICK(dc->max_fragments, 1024);
    lim->connect_timeout_ms = PICK(dc->connect_timeout_ms, 5000);
    lim->first_token_timeout_ms = PICK(dc->first_token_timeout_ms, 120000);
    lim->token_timeout_ms = PICK(dc->token_timeout_ms, 60000);
    lim->total_timeout_ms = PICK(dc->total_timeout_ms, 600000);
    lim->ping_interval_ms = PICK(dc->ping_interval_ms, 30000);
    lim->idle_timeout_ms = PICK(dc->idle_timeout_ms, 75000);
    lim->send_timeout_ms = PICK(dc->send_timeout_ms, 30000);
    lim->log_content = PICK(dc->log_content, 0);
    lim->continue_without_viewer = PICK(dc->continue_without_viewer, 1);
    if (dc->rate_set) {
        lim->rate = dc->rate;
    }
    else {
        lim->rate.count = 10;
        lim->rate.period_ms = 60000;
        lim->rate.burst = 10;
    }
    /* by default all anonymous identities of one address share what one
     * identity may do: a new cookie is not a new budget */
    lim->anon_rate = dc->anon_rate_set ? dc->anon_rate : lim->rate;
    lim->show_details = PICK(dc->show_details, 0);
    if (lim->show_details == CHATBOT_DETAILS_LOCAL) {
        lim->show_details = chatbot_client_is_local(r);
    }
    lim->user_settings = PICK(dc->user_settings, CHATBOT_SET_DEFAULT);
    lim->temp_min = dc->temp_set ? dc->temp_min : CHATBOT_TEMP_MIN_DEFAULT;
    lim->temp_max = dc->temp_set ? dc->temp_max : CHATBOT_TEMP_MAX_DEFAULT;
    lim->system_prompt_max =
        (apr_size_t)PICK(dc->system_prompt_max, CHATBOT_SYSTEM_MAX_DEFAULT);
}

#undef PICK

/* Per-directory settings apply to a whole <Location> or server: not per
 * bot, not per method. */
static const char *check_dir_scope(cmd_parms *cmd)
{
    const ap_directive_t *d = NULL;
    const char *sect = chatbot_config_enclosing_section(cmd, &d);

    if (!sect) {
        return NULL;
    }
    if (chatbot_config_in_bot_section(cmd)) {
        return apr_psprintf(
            cmd->pool,
            "%s cannot occur within %s: it is set per "
            "<Location>, <Directory>, <VirtualHost> or server, not per bot",
            cmd->cmd->name, sect);
    }
    if (cmd->limited != -1) {
        return apr_psprintf(cmd->pool,
                            "%s cannot occur within %s: it applies to every "
                            "request method; put it directly in the enclosing section",
                            cmd->cmd->name, sect);
    }
    return NULL;
}

const char *chatbot_check_dir_scope(cmd_parms *cmd)
{
    return check_dir_scope(cmd);
}
/* ---- per-dir directives -------------------------------------------------------- */

static const char *set_origins(cmd_parms *cmd, void *dcv, int argc, char *const argv[])
{
    chatbot_dir_conf *dc = dcv;
    const char *err = check_dir_scope(cmd);
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotAllowedOrigins: expected one or more origins "
               "(https://example.org), 'same' or '*'";
    }
    dc->origins = apr_array_make(cmd->pool, argc, sizeof(const char *));
    for (i = 0; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "*")) {
            dc->origins_any = 1;
            continue;
        }
        if (!strcasecmp(o, "same")) {
            APR_ARRAY_PUSH(dc->origins, const char *) = "same";
            continue;
        }
        {
            chat_url_t u;
            if (chat_parse_url(o, &u) || u.path[0]) {
                return chatbot_config_bad_value(
                    cmd, o,
                    "expected an origin such as https://chat.example.org "
                    "or http://localhost:8000 (scheme://host[:port], "
                    "no path), 'same' or '*'");
            }
        }
        APR_ARRAY_PUSH(dc->origins, const char *) = apr_pstrdup(cmd->pool, o);
    }
    return NULL;
}

/* ChatbotRateLimit (per identity) and ChatbotAnonymousRateLimit (per
 * address, cmd->info "anon"): the same syntax. */
static const char *set_rate(cmd_parms *cmd, void *dcv, int argc, char *const argv[])
{
    chatbot_dir_conf *dc = dcv;
    const char *err = check_dir_scope(cmd);
    int anon = cmd->info && !strcmp(cmd->info, "anon");
    chat_rate_t *rate = anon ? &dc->anon_rate : &dc->rate;
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return apr_pstrcat(cmd->pool, cmd->cmd->name,
                           ": expected a rate such as 10/min, "
                           "optionally burst=N, or 'off'",
                           NULL);
    }
    if (anon) {
        dc->anon_rate_set = 1;
    }
    else {
        dc->rate_set = 1;
    }
    if (!strcasecmp(argv[0], "off") || !strcmp(argv[0], "0")) {
        rate->count = 0;
        rate->period_ms = 60000;
        rate->burst = 0;
        return argc > 1
                   ? chatbot_config_bad_value(cmd, argv[1], "nothing may follow 'off'")
                   : NULL;
    }
    if ((err = chat_parse_rate(argv[0], &rate->count, &rate->period_ms))) {
        return chatbot_config_bad_value(cmd, argv[0], err);
    }
    rate->burst = rate->count;
    for (i = 1; i < argc; i++) {
        char key[32];
        const char *val;
        int64_t n;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val) || strcmp(key, "burst")) {
            return chatbot_config_bad_value(cmd, argv[i], "expected burst=N");
        }
        if ((err = chat_parse_int(val, 1, 1000000, &n))) {
            return chatbot_config_bad_value(cmd, argv[i], err);
        }
        rate->burst = (uint32_t)n;
    }
    return NULL;
}

static const char *set_dir_size(cmd_parms *cmd, void *dcv, const char *arg)
{
    chatbot_dir_conf *dc = dcv;
    const char *err = check_dir_scope(cmd);
    uint64_t v;

    if (err) {
        return err;
    }
    if (!strcmp(cmd->info, "msg")) {
        if ((err = chat_parse_size(arg, 128, 16u << 20, &v))) {
            return chatbot_config_bad_value(cmd, arg, err);
        }
        dc->max_message_bytes = (apr_int64_t)v;
    }
    else {
        int64_t n;
        if ((err = chat_parse_int(arg, 1, 1000000, &n))) {
            return chatbot_config_bad_value(cmd, arg, err);
        }
        dc->max_fragments = n;
    }
    return NULL;
}

static const char *set_dir_duration(cmd_parms *cmd, void *dcv, const char *arg)
{
    chatbot_dir_conf *dc = dcv;
    const char *which = cmd->info;
    const char *err = check_dir_scope(cmd);
    int64_t ms;
    int64_t lo = 100, hi = 86400000;

    if (err) {
        return err;
    }
    if (!strcmp(which, "ping") && (!strcasecmp(arg, "off") || !strcmp(arg, "0"))) {
        dc->ping_interval_ms = 0;
        return NULL;
    }
    if ((err = chat_parse_duration(arg, lo, hi, &ms))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    if (!strcmp(which, "connect")) {
        dc->connect_timeout_ms = ms;
    }
    else if (!strcmp(which, "first")) {
        dc->first_token_timeout_ms = ms;
    }
    else if (!strcmp(which, "token")) {
        dc->token_timeout_ms = ms;
    }
    else if (!strcmp(which, "total")) {
        dc->total_timeout_ms = ms;
    }
    else if (!strcmp(which, "ping")) {
        dc->ping_interval_ms = ms;
    }
    else if (!strcmp(which, "idle")) {
        dc->idle_timeout_ms = ms;
    }
    else if (!strcmp(which, "send")) {
        dc->send_timeout_ms = ms;
    }
    return NULL;
}

/* on/off values are parsed here (not AP_INIT_FLAG) so that a bad value is
 * quoted in the error message. */
static const char *set_dir_flag(cmd_parms *cmd, void *dcv, const char *arg)
{
    chatbot_dir_conf *dc = dcv;
    const char *err = check_dir_scope(cmd);
    int flag;

    if (err) {
        return err;
    }
    if (!strcmp(cmd->info, "details") && !strcasecmp(arg, "local")) {
        dc->show_details = CHATBOT_DETAILS_LOCAL;
        return NULL;
    }
    if ((err = chat_parse_bool(arg, &flag))) {
        return chatbot_config_bad_value(
            cmd, arg,
            strcmp(cmd->info, "details")
                ? err
                : "expected On, Off or local (as Require local)");
    }
    if (!strcmp(cmd->info, "logcontent")) {
        dc->log_content = flag;
    }
    else if (!strcmp(cmd->info, "continue")) {
        dc->continue_without_viewer = flag;
    }
    else if (!strcmp(cmd->info, "secure")) {
        dc->cookie_secure = flag;
    }
    else if (!strcmp(cmd->info, "hostprefix")) {
        dc->cookie_host_prefix = flag;
    }
    else if (!strcmp(cmd->info, "details")) {
        dc->show_details = flag;
    }
    return NULL;
}

#define SRV (RSRC_CONF | ACCESS_CONF) /* scope checked by the setters */
#define ANYDIR (RSRC_CONF | ACCESS_CONF)

const command_rec chatbot_cmds[] = {
    /* backends and bots */
    AP_INIT_TAKE_ARGV("ChatbotBackend", chatbot_set_backend, NULL, SRV,
                      "name URL [type=ollama|openai] [key=...] [max=N]: an LLM server"),
    AP_INIT_TAKE_ARGV("ChatbotBackendURL", chatbot_set_backend_url, NULL, SRV,
                      "URL [type=...] [key=...] [max=N]: the backend of the default bot "
                      "(or of the enclosing <ChatbotBot>)"),
    AP_INIT_TAKE1("ChatbotModel", chatbot_set_model, NULL, SRV,
                  "model name, e.g. qwen2.5-coder:7b"),
    AP_INIT_TAKE1("ChatbotSystemPrompt", chatbot_set_system_prompt, NULL, SRV,
                  "system prompt sent first in every conversation"),
    AP_INIT_TAKE1("ChatbotDescription", chatbot_set_description, NULL, SRV,
                  "a one-line description of the bot shown to users"),
    AP_INIT_TAKE_ARGV("ChatbotBotBackend", chatbot_set_bot_backend, NULL, SRV,
                      "backend names the bot uses, in failover order"),
    AP_INIT_TAKE2("ChatbotOption", chatbot_set_option, NULL, SRV,
                  "model option: temperature|top_p|top_k|num_ctx|num_predict|seed|"
                  "keep_alive value"),
    AP_INIT_TAKE_ARGV("ChatbotContext", chatbot_set_context, NULL, SRV,
                      "messages=N tokens=N: how much history is sent to the model"),
    AP_INIT_TAKE_ARGV("ChatbotBotCommands", chatbot_set_bot_commands, NULL, SRV,
                      "names of declared commands this bot may run"),
    AP_INIT_RAW_ARGS("<ChatbotBot", chatbot_bot_section, NULL, SRV,
                     "<ChatbotBot name> ... </ChatbotBot>: declares a bot"),
    AP_INIT_TAKE1("ChatbotDefaultBot", chatbot_set_default_bot, NULL, SRV,
                  "name of the bot used when a client names none"),
    AP_INIT_TAKE_ARGV("ChatbotCommand", chatbot_set_command, NULL, RSRC_CONF,
                      "name /abs/path [fixed args] [args=none|one|many] [timeout=10s] "
                      "[maxoutput=64k] [cwd=/dir] [paths=on] [dashes=on]"),
    /* shared store sizing */
    AP_INIT_TAKE1("ChatbotHistorySize", chatbot_set_store_size, "history", SRV,
                  "bytes of shared memory for message text, e.g. 16M"),
    AP_INIT_TAKE1("ChatbotMaxConversations", chatbot_set_store_size, "convs", SRV,
                  "conversations kept in shared memory"),
    AP_INIT_TAKE1("ChatbotMaxUsers", chatbot_set_store_size, "users", SRV,
                  "identities tracked for rate limits and notifications"),
    AP_INIT_TAKE1("ChatbotMaxMessagesPerConversation", chatbot_set_store_size, "msgs",
                  SRV, "messages kept per conversation (oldest dropped)"),
    AP_INIT_TAKE1("ChatbotMaxAnswerBytes", chatbot_set_store_size, "answer", SRV,
                  "largest stored message (an answer is cut there)"),
    AP_INIT_TAKE1("ChatbotQueueSize", chatbot_set_store_size, "queue", SRV,
                  "turns that may wait for a busy backend"),
    AP_INIT_TAKE_ARGV("ChatbotQuota", chatbot_set_quota, NULL, SRV,
                      "anonymous|authenticated conversations=N history=SIZE "
                      "sessions=N/min [share=P%]: what one identity may hold"),
    AP_INIT_TAKE1("ChatbotStore", chatbot_set_store, NULL, SRV,
                  "shm | redis://[user:password@]host:port/db | "
                  "unix:/path/to/redis.sock[?db=N]: where the chat store lives"),
    AP_INIT_TAKE1("ChatbotStoreTTL", chatbot_set_store_time, "ttl", SRV,
                  "<duration>|off: idle conversations on redis older than this go "
                  "(default 720h)"),
    AP_INIT_TAKE1("ChatbotStoreTimeout", chatbot_set_store_time, NULL, SRV,
                  "<duration>: connect and command timeout for redis (default 1s)"),
    AP_INIT_TAKE1("ChatbotHistoryFile", chatbot_set_history_file, NULL, SRV,
                  "file the history is saved to at stop and loaded from at start"),
    AP_INIT_TAKE_ARGV("ChatbotCircuitBreaker", chatbot_set_breaker, NULL, SRV,
                      "failures=N cooldown=<duration>"),
    AP_INIT_TAKE1("ChatbotHealthCheckInterval", chatbot_set_health_interval, NULL, SRV,
                  "how often backends are probed (GET /api/version)"),
    AP_INIT_TAKE1("ChatbotMaxConnectionsPerIP", chatbot_set_max_conns_ip, NULL, SRV,
                  "WebSocket connections allowed per client address (0 = no limit)"),
    AP_INIT_TAKE1("ChatbotMaxWorkers", chatbot_set_ws_bound, "workers", SRV,
                  "worker threads of a child that WebSockets may hold at once: auto "
                  "(half of ThreadsPerChild) or a number"),
    AP_INIT_TAKE1("ChatbotMaxAnswersPerIP", chatbot_set_ws_bound, "answers", SRV,
                  "answers generating at once per client address and child: auto "
                  "(half of ChatbotMaxWorkers, at least 2), off or a number"),
    AP_INIT_TAKE1("ChatbotDemoNotice", chatbot_set_demo_notice, NULL, SRV,
                  "a notice shown to users (e.g. that the backend is a demo)"),
    /* per directory */
    AP_INIT_TAKE_ARGV("ChatbotAllowedOrigins", set_origins, NULL, ANYDIR,
                      "origins allowed to open the WebSocket: 'same', '*' or URLs"),
    AP_INIT_TAKE_ARGV("ChatbotRateLimit", set_rate, NULL, ANYDIR,
                      "messages per identity, e.g. 10/min [burst=N], or off"),
    AP_INIT_TAKE1("ChatbotMaxMessageBytes", set_dir_size, "msg", ANYDIR,
                  "largest client message, e.g. 64k"),
    AP_INIT_TAKE1("ChatbotMaxFragments", set_dir_size, "frag", ANYDIR,
                  "most WebSocket frames in one message"),
    AP_INIT_TAKE1("ChatbotConnectTimeout", set_dir_duration, "connect", ANYDIR,
                  "backend connect timeout, e.g. 5s"),
    AP_INIT_TAKE1("ChatbotFirstTokenTimeout", set_dir_duration, "first", ANYDIR,
                  "longest wait for the first token (model loading), e.g. 120s"),
    AP_INIT_TAKE1("ChatbotTokenTimeout", set_dir_duration, "token", ANYDIR,
                  "longest gap between two tokens, e.g. 60s"),
    AP_INIT_TAKE1("ChatbotTotalTimeout", set_dir_duration, "total", ANYDIR,
                  "longest answer, e.g. 10m"),
    AP_INIT_TAKE1("ChatbotPingInterval", set_dir_duration, "ping", ANYDIR,
                  "WebSocket ping interval, e.g. 30s, or off"),
    AP_INIT_TAKE1("ChatbotIdleTimeout", set_dir_duration, "idle", ANYDIR,
                  "close a WebSocket silent (no frame, no pong) for this long"),
    AP_INIT_TAKE1("ChatbotSendTimeout", set_dir_duration, "send", ANYDIR,
                  "close a client that does not read its socket for this long"),
    AP_INIT_TAKE1("ChatbotLogContent", set_dir_flag, "logcontent", ANYDIR,
                  "on|off: log message text (default off)"),
    AP_INIT_TAKE1("ChatbotContinueWithoutViewer", set_dir_flag, "continue", ANYDIR,
                  "on|off: finish an answer when its client disconnects (default on)"),
    AP_INIT_TAKE1(
        "ChatbotCookieSecure", set_dir_flag, "secure", ANYDIR,
        "on|off: force the Secure flag on the session cookie (default: on https)"),
    /* security (mod_chatbot_ident.c, docs/security.md) */
    AP_INIT_TAKE1("ChatbotCookieSecretFile", chatbot_ident_set_secret_file, NULL,
                  RSRC_CONF, "file with the key(s) that sign session cookies"),
    AP_INIT_TAKE1("ChatbotCookieHostPrefix", set_dir_flag, "hostprefix", ANYDIR,
                  "on|off: name the cookie __Host-chatbot_sid over https (default on)"),
    AP_INIT_TAKE_ARGV("ChatbotAnonymousRateLimit", set_rate, "anon", ANYDIR,
                      "messages per client address shared by anonymous identities"),
    AP_INIT_TAKE1("ChatbotShowDetails", set_dir_flag, "details", ANYDIR,
                  "on|off|local: show backend URLs and health details here; local: "
                  "to clients on this machine, as Require local (default off)"),
    AP_INIT_TAKE_ARGV("ChatbotUserSettings", chatbot_set_user_settings, NULL, ANYDIR,
                      "none | any of model system temperature: what users may set "
                      "per conversation (default model temperature)"),
    AP_INIT_TAKE2(
        "ChatbotTemperatureRange", chatbot_set_temperature_range, NULL, ANYDIR,
        "min max: the temperatures users may choose, within 0..2 (default 0 2)"),
    AP_INIT_TAKE1("ChatbotSystemPromptMax", chatbot_set_system_prompt_max, NULL, ANYDIR,
                  "longest system prompt a user may set, e.g. 4096 or 4K (default 4096)"),
    {NULL}};
