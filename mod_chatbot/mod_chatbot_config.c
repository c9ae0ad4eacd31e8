/* mod_chatbot_config.c - directives, create/merge of the server and per-dir
 * records, and the post-parse consistency check.
 *
 * Server scope (sizes shared memory, declares shared resources): backends,
 * bots, commands, history sizing, breaker, health interval, per-IP cap.
 * Per-dir scope (merged with UNSET sentinels): origins, rate limit, message
 * size, timeouts, ping/idle, logging of content.
 * Value parsing is done by the core (chat/confparse.h); setters only add the
 * directive name and the bad value to the message.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
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
#define DEF_MODEL "qwen2.5-coder:7b"
#define DEF_BACKEND_URL "http://127.0.0.1:11434"
#define DEF_SYSTEM_PROMPT "You are a helpful assistant."

static const char *where(cmd_parms *cmd)
{
    if (cmd->directive && cmd->directive->filename) {
        return apr_psprintf(cmd->pool, "%s:%d", cmd->directive->filename,
                            cmd->directive->line_num);
    }
    return "(command line)";
}

static const char *bad_value(cmd_parms *cmd, const char *val, const char *why)
{
    return apr_psprintf(cmd->pool, "%s: invalid value '%s': %s", cmd->cmd->name,
                         val ? val : "", why);
}

chatbot_srv_conf *chatbot_srv(server_rec *s)
{
    return ap_get_module_config(s->module_config, &chatbot_module);
}

static chatbot_bot_t *bot_new(apr_pool_t *p, const char *name)
{
    chatbot_bot_t *b = apr_pcalloc(p, sizeof(*b));

    b->name = name;
    b->backend_names = apr_array_make(p, 2, sizeof(const char *));
    b->backends = apr_array_make(p, 2, sizeof(chatbot_backend_t *));
    b->command_names = apr_array_make(p, 2, sizeof(const char *));
    chat_options_init(&b->options);
    b->context_messages = CHATBOT_UNSET;
    b->context_tokens = CHATBOT_UNSET;
    return b;
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
    sc->top = bot_new(p, "default");
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
    lim->user_settings = PICK(dc->user_settings, CHATBOT_SET_DEFAULT);
    lim->temp_min = dc->temp_set ? dc->temp_min : CHATBOT_TEMP_MIN_DEFAULT;
    lim->temp_max = dc->temp_set ? dc->temp_max : CHATBOT_TEMP_MAX_DEFAULT;
    lim->system_prompt_max =
        (apr_size_t)PICK(dc->system_prompt_max, CHATBOT_SYSTEM_MAX_DEFAULT);
}

#undef PICK

/* ---- helpers ----------------------------------------------------------------- */

/* The bot a directive applies to: the enclosing <ChatbotBot>, or the
 * implicit default bot for top-level directives. */
static chatbot_bot_t *bot_of(cmd_parms *cmd)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const ap_directive_t *d;

    for (d = cmd->directive ? cmd->directive->parent : NULL; d; d = d->parent) {
        if (!strcasecmp(d->directive, "<ChatbotBot")) {
            chatbot_bot_t *b = chatbot_bot_find(sc, ap_getword_conf(cmd->temp_pool,
                                                                     &(const char *){
                                                                         d->args}));
            if (b) {
                return b;
            }
        }
    }
    sc->configured = 1;
    return sc->top;
}

chatbot_bot_t *chatbot_bot_find(chatbot_srv_conf *sc, const char *name)
{
    int i;
    size_t n;

    if (!name) {
        return NULL;
    }
    n = strlen(name);
    if (n && name[n - 1] == '>') {
        n--;
    }
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_bot_t *b = APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *);
        if (strlen(b->name) == n && !strncmp(b->name, name, n)) {
            return b;
        }
    }
    return NULL;
}

static chatbot_backend_t *backend_find(chatbot_srv_conf *sc, const char *name)
{
    int i;

    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *b = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        if (!strcmp(b->name, name)) {
            return b;
        }
    }
    return NULL;
}

/* The innermost section around the directive, as written ("<Location /x>"),
 * or NULL at top level. Conditional sections (<IfModule>, <IfDefine>...)
 * do not change where a directive applies and are skipped. */
static const char *enclosing_section(cmd_parms *cmd, const ap_directive_t **out)
{
    const ap_directive_t *d;

    for (d = cmd->directive ? cmd->directive->parent : NULL; d; d = d->parent) {
        if (!strncasecmp(d->directive, "<If", 3) && d->directive[3]) {
            continue; /* <IfModule>, <IfDefine>, <IfFile>, <IfVersion>... */
        }
        if (out) {
            *out = d;
        }
        return apr_pstrcat(cmd->pool, d->directive, " ", d->args, NULL);
    }
    return NULL;
}

static int in_bot_section(cmd_parms *cmd)
{
    const ap_directive_t *d;

    for (d = cmd->directive ? cmd->directive->parent : NULL; d; d = d->parent) {
        if (!strcasecmp(d->directive, "<ChatbotBot")) {
            return 1;
        }
    }
    return 0;
}

/* Bots, backends and store sizing are one per httpd (they live in shared
 * memory): main server config only; bot settings also inside <ChatbotBot>.
 * The command table allows these directives in directory context too, so
 * that a misplaced one gets this explanation rather than httpd's terse
 * "not allowed here". */
static const char *check_scope(cmd_parms *cmd, int bot_ok)
{
    const ap_directive_t *d = NULL;
    const char *sect = enclosing_section(cmd, &d);
    const char *name = cmd->cmd->name;

    if (name[0] == '<') {
        name = apr_pstrcat(cmd->pool, name, ">", NULL);
    }
    if (!cmd->server->is_virtual && !cmd->path && cmd->limited == -1) {
        if (sect && !bot_ok && in_bot_section(cmd)) {
            return apr_psprintf(cmd->pool,
                                "%s cannot occur within %s: it is global, not "
                                "per bot; put it in the main server configuration",
                                name, sect);
        }
        return NULL;
    }
    return apr_psprintf(cmd->pool,
                        "%s cannot occur within %s: bots, backends and the "
                        "shared store are global to the server (shared by every virtual "
                        "host); put it in the main server configuration%s",
                        name, sect ? sect : "an .htaccess file",
                        bot_ok ? " or in a <ChatbotBot> section" : "");
}

static const char *check_server_scope(cmd_parms *cmd)
{
    return check_scope(cmd, 1);
}

static const char *check_global_only(cmd_parms *cmd)
{
    return check_scope(cmd, 0);
}

/* Per-directory settings apply to a whole <Location> or server: not per
 * bot, not per method. */
static const char *check_dir_scope(cmd_parms *cmd)
{
    const ap_directive_t *d = NULL;
    const char *sect = enclosing_section(cmd, &d);

    if (!sect) {
        return NULL;
    }
    if (in_bot_section(cmd)) {
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

/* ---- server-scope directives ---------------------------------------------- */

static const char *make_backend(cmd_parms *cmd, const char *name, const char *url,
                                int argc, char *const argv[], chatbot_backend_t **out)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    chatbot_backend_t *be;
    chat_url_t u;
    const char *err;
    int i;

    if ((err = chat_parse_name(name))) {
        return bad_value(cmd, name, apr_pstrcat(cmd->pool, "backend name: ", err, NULL));
    }
    if ((be = backend_find(sc, name)) != NULL) {
        return apr_psprintf(cmd->pool,
                            "%s: backend '%s' is already defined (at %s); "
                            "backend names must be unique",
                            cmd->cmd->name, name, be->defined_at);
    }
    if ((err = chat_parse_url(url, &u))) {
        return bad_value(cmd, url, err);
    }
    be = apr_pcalloc(cmd->pool, sizeof(*be));
    be->name = apr_pstrdup(cmd->pool, name);
    be->url = apr_psprintf(cmd->pool, "%s://%s%s:%d%s", u.scheme,
                           strchr(u.host, ':') ? "[" : "", u.host, u.port, u.path);
    if (strchr(u.host, ':')) {
        be->url = apr_psprintf(cmd->pool, "%s://[%s]:%d%s", u.scheme, u.host, u.port,
                               u.path);
    }
    be->wire = CHAT_WIRE_OLLAMA;
    be->index = -1;
    be->defined_at = where(cmd);
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return bad_value(cmd, argv[i],
                             "expected key=value options: type=ollama|openai, "
                             "key=<api key>, max=<concurrent requests>");
        }
        if (!strcmp(key, "type")) {
            if (!strcasecmp(val, "ollama")) {
                be->wire = CHAT_WIRE_OLLAMA;
            }
            else if (!strcasecmp(val, "openai")) {
                be->wire = CHAT_WIRE_OPENAI;
            }
            else {
                return bad_value(cmd, argv[i], "type must be 'ollama' or 'openai'");
            }
        }
        else if (!strcmp(key, "key")) {
            if (!*val || strpbrk(val, "\r\n")) {
                return bad_value(cmd, argv[i], "key must be a non-empty single-line token");
            }
            be->key = apr_pstrdup(cmd->pool, val);
        }
        else if (!strcmp(key, "max")) {
            int64_t v;
            if ((err = chat_parse_int(val, 0, 65536, &v))) { /* the store's bound */
                return bad_value(cmd, argv[i], err);
            }
            be->max_active = (int)v;
        }
        else {
            return bad_value(cmd, argv[i], "unknown option; allowed: type=, key=, max=");
        }
    }
    if (be->wire == CHAT_WIRE_OPENAI) {
        /* OpenAI clients take a base URL that ends in /v1
         * (https://api.openai.com/v1, http://vllm:8000/v1): accept it as well
         * as the bare server URL rather than asking for /v1/v1/... */
        size_t ul = strlen(be->url);
        if (ul >= 3 && !strcasecmp(be->url + ul - 3, "/v1")) {
            be->url = apr_pstrmemdup(cmd->pool, be->url, ul - 3);
        }
    }
    be->chat_url = apr_pstrcat(cmd->pool, be->url,
                               be->wire == CHAT_WIRE_OLLAMA ? "/api/chat"
                                                            : "/v1/chat/completions",
                               NULL);
    if ((int)sc->backends->nelts >= (int)sc->layout.max_backends) {
        return apr_psprintf(cmd->pool, "%s: too many backends (at most %u)",
                            cmd->cmd->name, sc->layout.max_backends);
    }
    APR_ARRAY_PUSH(sc->backends, chatbot_backend_t *) = be;
    sc->configured = 1;
    if (out) {
        *out = be;
    }
    return NULL;
}

static const char *set_backend(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    const char *err = check_server_scope(cmd);

    if (err) {
        return err;
    }
    if (argc < 2) {
        return "ChatbotBackend: expected a name and a URL, e.g. "
               "ChatbotBackend local http://127.0.0.1:11434 type=ollama";
    }
    return make_backend(cmd, argv[0], argv[1], argc - 2, argv + 2, NULL);
}

/* ChatbotBackendURL url: the simple form, a backend named "default" used by
 * the default bot. */
static const char *set_backend_url(cmd_parms *cmd, void *dummy, int argc,
                                   char *const argv[])
{
    chatbot_bot_t *bot;
    chatbot_backend_t *be;
    const char *err = check_server_scope(cmd);
    const char *name;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotBackendURL: expected a URL such as http://127.0.0.1:11434";
    }
    bot = bot_of(cmd);
    name = bot->implicit ? "default" : apr_pstrcat(cmd->pool, bot->name, "-backend", NULL);
    if ((err = make_backend(cmd, name, argv[0], argc - 1, argv + 1, &be))) {
        return err;
    }
    APR_ARRAY_PUSH(bot->backend_names, const char *) = be->name;
    return NULL;
}

static const char *set_model(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_server_scope(cmd);

    if (err) {
        return err;
    }
    if (!*arg || strlen(arg) > 200 || strpbrk(arg, " \t\r\n\"")) {
        return bad_value(cmd, arg, "expected a model name such as qwen2.5-coder:7b");
    }
    bot_of(cmd)->model = arg;
    return NULL;
}

static const char *set_system_prompt(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_server_scope(cmd);

    if (err) {
        return err;
    }
    if (strlen(arg) > 32768) {
        return bad_value(cmd, "...", "the system prompt is limited to 32 KiB");
    }
    bot_of(cmd)->system_prompt = arg;
    return NULL;
}

static const char *set_description(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_server_scope(cmd);

    if (err) {
        return err;
    }
    if (strlen(arg) > 1024) {
        return bad_value(cmd, "...", "the description is limited to 1024 bytes");
    }
    bot_of(cmd)->description = arg;
    return NULL;
}

static const char *set_bot_backend(cmd_parms *cmd, void *dummy, int argc,
                                   char *const argv[])
{
    chatbot_bot_t *bot;
    const char *err = check_server_scope(cmd);
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotBotBackend: expected one or more backend names (failover order)";
    }
    bot = bot_of(cmd);
    for (i = 0; i < argc; i++) {
        if ((err = chat_parse_name(argv[i]))) {
            return bad_value(cmd, argv[i], err);
        }
        APR_ARRAY_PUSH(bot->backend_names, const char *) = argv[i];
    }
    return NULL;
}

static const char *set_option(cmd_parms *cmd, void *dummy, const char *key,
                              const char *val)
{
    chatbot_bot_t *bot;
    const char *err = check_server_scope(cmd);
    double d;
    int64_t i;

    if (err) {
        return err;
    }
    bot = bot_of(cmd);
    if (!strcasecmp(key, "temperature")) {
        if ((err = chat_parse_double(val, 0.0, 2.0, &d))) {
            return bad_value(cmd, val, err);
        }
        bot->options.temperature = d;
    }
    else if (!strcasecmp(key, "top_p")) {
        if ((err = chat_parse_double(val, 0.0, 1.0, &d))) {
            return bad_value(cmd, val, err);
        }
        bot->options.top_p = d;
    }
    else if (!strcasecmp(key, "top_k")) {
        if ((err = chat_parse_int(val, 1, 1000000, &i))) {
            return bad_value(cmd, val, err);
        }
        bot->options.top_k = i;
    }
    else if (!strcasecmp(key, "num_ctx")) {
        if ((err = chat_parse_int(val, 256, 10485760, &i))) {
            return bad_value(cmd, val, err);
        }
        bot->options.num_ctx = i;
    }
    else if (!strcasecmp(key, "num_predict") || !strcasecmp(key, "max_tokens")) {
        if ((err = chat_parse_int(val, 1, 10485760, &i))) {
            return bad_value(cmd, val, err);
        }
        bot->options.num_predict = i;
    }
    else if (!strcasecmp(key, "seed")) {
        if ((err = chat_parse_int(val, 0, INT64_MAX, &i))) {
            return bad_value(cmd, val, err);
        }
        bot->options.seed = i;
    }
    else if (!strcasecmp(key, "keep_alive")) {
        int64_t ms;
        if (strcmp(val, "-1") && (err = chat_parse_duration(val, 0, INT64_MAX / 2, &ms))) {
            return bad_value(cmd, val, err);
        }
        bot->options.keep_alive = val;
    }
    else {
        return apr_psprintf(cmd->pool,
                            "ChatbotOption: unknown option '%s'; allowed: temperature, "
                            "top_p, top_k, num_ctx, num_predict, seed, keep_alive",
                            key);
    }
    return NULL;
}

static const char *set_context(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_bot_t *bot;
    const char *err = check_server_scope(cmd);
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotContext: expected messages=N and/or tokens=N";
    }
    bot = bot_of(cmd);
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        int64_t v;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return bad_value(cmd, argv[i], "expected messages=N or tokens=N");
        }
        if (!strcmp(key, "messages")) {
            if ((err = chat_parse_int(val, 1, 10000, &v))) {
                return bad_value(cmd, argv[i], err);
            }
            bot->context_messages = (int)v;
        }
        else if (!strcmp(key, "tokens")) {
            if ((err = chat_parse_int(val, 16, 10000000, &v))) {
                return bad_value(cmd, argv[i], err);
            }
            bot->context_tokens = (int)v;
        }
        else {
            return bad_value(cmd, argv[i], "expected messages=N or tokens=N");
        }
    }
    return NULL;
}

static const char *set_bot_commands(cmd_parms *cmd, void *dummy, int argc,
                                    char *const argv[])
{
    chatbot_bot_t *bot;
    const char *err = check_server_scope(cmd);
    int i;

    if (err) {
        return err;
    }
    bot = bot_of(cmd);
    for (i = 0; i < argc; i++) {
        if ((err = chat_parse_name(argv[i]))) {
            return bad_value(cmd, argv[i], err);
        }
        APR_ARRAY_PUSH(bot->command_names, const char *) = argv[i];
    }
    return NULL;
}

static const char *bot_section(cmd_parms *cmd, void *mconfig, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *endp = ap_strrchr_c(arg, '>');
    const char *err;
    char *name;
    chatbot_bot_t *bot;

    if (in_bot_section(cmd)) {
        return "<ChatbotBot> sections cannot be nested";
    }
    if ((err = check_global_only(cmd))) {
        return err;
    }
    if (!endp) {
        return "<ChatbotBot: missing closing '>'";
    }
    name = apr_pstrndup(cmd->temp_pool, arg, endp - arg);
    name = ap_getword_conf(cmd->pool, (const char **)&name);
    if ((err = chat_parse_name(name))) {
        return bad_value(cmd, name, err);
    }
    if ((bot = chatbot_bot_find(sc, name)) != NULL) {
        return apr_psprintf(cmd->pool,
                            "<ChatbotBot %s>: a bot of that name is already "
                            "defined (at %s); bot names must be unique",
                            name, bot->defined_at);
    }
    bot = bot_new(cmd->pool, name);
    bot->defined_at = where(cmd);
    APR_ARRAY_PUSH(sc->bots, chatbot_bot_t *) = bot;
    sc->configured = 1;
    return ap_walk_config(cmd->directive->first_child, cmd, cmd->context);
}

static const char *set_default_bot(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_server_scope(cmd);

    if (err) {
        return err;
    }
    if ((err = chat_parse_name(arg))) {
        return bad_value(cmd, arg, err);
    }
    chatbot_srv(cmd->server)->default_bot = arg;
    return NULL;
}

/* Sizes of the shared store. */
static const char *set_store_size(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
    const char *which = cmd->info;
    uint64_t v;

    if (err) {
        return err;
    }
    if (!strcmp(which, "history")) {
        if ((err = chat_parse_size(arg, 64 * 1024, (uint64_t)4 << 30, &v))) {
            return bad_value(cmd, arg, err);
        }
        sc->layout.history_bytes = v;
    }
    else if (!strcmp(which, "answer")) {
        if ((err = chat_parse_size(arg, 1024, 16u << 20, &v))) {
            return bad_value(cmd, arg, err);
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
            return bad_value(cmd, arg, err);
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
static const char *set_quota(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
    chat_quota_t q, *dst;
    uint32_t share;
    int i, anon;

    if (err) {
        return err;
    }
    if (argc < 2) {
        return "ChatbotQuota: expected 'anonymous' or 'authenticated' and at least one of "
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
        return bad_value(cmd, argv[0], "expected 'anonymous' or 'authenticated'");
    }
    dst = anon ? &sc->policy.anon : &sc->policy.auth;
    q = *dst;
    share = sc->policy.anon_share_pct;
    for (i = 1; i < argc; i++) {
        char key[32];
        const char *val;
        int off;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return bad_value(cmd, argv[i],
                             "expected conversations=N, history=SIZE, sessions=N/min or "
                             "share=P%");
        }
        off = !strcasecmp(val, "off") || !strcmp(val, "0");
        if (!strcmp(key, "conversations")) {
            int64_t n = 0;
            if (!off && (err = chat_parse_int(val, 1, 1000000, &n))) {
                return bad_value(cmd, argv[i], err);
            }
            q.conversations = (uint32_t)n;
        }
        else if (!strcmp(key, "history")) {
            uint64_t v = 0;
            if (!off && (err = chat_parse_size(val, 4096, (uint64_t)4 << 30, &v))) {
                return bad_value(cmd, argv[i], err);
            }
            q.history_bytes = v;
        }
        else if (!strcmp(key, "sessions")) {
            memset(&q.create, 0, sizeof(q.create));
            q.create.period_ms = 60000;
            if (!off) {
                if ((err = chat_parse_rate(val, &q.create.count, &q.create.period_ms))) {
                    return bad_value(cmd, argv[i], err);
                }
                q.create.burst = q.create.count;
            }
        }
        else if (!strcmp(key, "share") && anon) {
            int64_t n;
            size_t len = strlen(val);
            const char *num = len && val[len - 1] == '%' ? apr_pstrndup(cmd->temp_pool, val,
                                                                        len - 1)
                                                         : val;
            if ((err = chat_parse_int(num, 1, 100, &n))) {
                return bad_value(cmd, argv[i], "expected a percentage from 1% to 100%");
            }
            share = (uint32_t)n;
        }
        else {
            return bad_value(cmd, argv[i],
                             anon ? "unknown key (conversations, history, sessions, share)"
                                  : "unknown key (conversations, history, sessions; share "
                                    "is set on the anonymous line)");
        }
    }
    *dst = q;
    sc->policy.anon_share_pct = share;
    return NULL;
}

static const char *set_history_file(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_global_only(cmd);

    if (err) {
        return err;
    }
    chatbot_srv(cmd->server)->history_file = ap_server_root_relative(cmd->pool, arg);
    if (!chatbot_srv(cmd->server)->history_file) {
        return bad_value(cmd, arg, "not a valid path");
    }
    return NULL;
}

/* ChatbotStore shm | redis://... | unix:/path[?db=N] (chat/storeurl.h) */
static const char *set_store(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
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
static const char *set_store_time(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
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
        return bad_value(cmd, arg, err);
    }
    *(ttl ? &sc->store_ttl : &sc->store_timeout) = (apr_interval_time_t)ms * 1000;
    return NULL;
}

static const char *set_breaker(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
    int i;

    if (err) {
        return err;
    }
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return bad_value(cmd, argv[i], "expected failures=N and/or cooldown=<duration>");
        }
        if (!strcmp(key, "failures")) {
            int64_t n;
            if ((err = chat_parse_int(val, 1, 1000, &n))) {
                return bad_value(cmd, argv[i], err);
            }
            sc->breaker_threshold = (int)n;
        }
        else if (!strcmp(key, "cooldown")) {
            int64_t ms;
            if ((err = chat_parse_duration(val, 100, 86400000, &ms))) {
                return bad_value(cmd, argv[i], err);
            }
            sc->breaker_cooldown = ms * 1000;
        }
        else {
            return bad_value(cmd, argv[i], "expected failures=N and/or cooldown=<duration>");
        }
    }
    return NULL;
}

static const char *set_srv_duration(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *err = check_global_only(cmd);
    int64_t ms;

    if (err) {
        return err;
    }
    if ((err = chat_parse_duration(arg, 1000, 86400000, &ms))) {
        return bad_value(cmd, arg, err);
    }
    sc->health_interval = ms * 1000;
    return NULL;
}

static const char *set_max_conns_ip(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_global_only(cmd);
    int64_t n;

    if (err) {
        return err;
    }
    if ((err = chat_parse_int(arg, 0, 1000000, &n))) {
        return bad_value(cmd, arg, err);
    }
    chatbot_srv(cmd->server)->max_conns_per_ip = (int)n;
    return NULL;
}

/* ChatbotMaxWorkers auto|N, ChatbotMaxAnswersPerIP auto|off|N */
static const char *set_ws_bound(cmd_parms *cmd, void *dummy, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    int workers = !strcmp((const char *)cmd->info, "workers");
    const char *err = check_global_only(cmd);
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
        return bad_value(cmd, arg, err);
    }
    if (workers) {
        sc->max_workers = (int)n;
    }
    else {
        sc->max_answers_per_ip = (int)n;
    }
    return NULL;
}

static const char *set_demo_notice(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = check_global_only(cmd);

    if (err) {
        return err;
    }
    chatbot_srv(cmd->server)->demo_notice = arg;
    return NULL;
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
            const char *err = chat_parse_url(o, &u);
            if (err || u.path[0]) {
                return bad_value(cmd, o, "expected an origin such as https://chat.example.org "
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
        return argc > 1 ? bad_value(cmd, argv[1], "nothing may follow 'off'") : NULL;
    }
    if ((err = chat_parse_rate(argv[0], &rate->count, &rate->period_ms))) {
        return bad_value(cmd, argv[0], err);
    }
    rate->burst = rate->count;
    for (i = 1; i < argc; i++) {
        char key[32];
        const char *val;
        int64_t n;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val) || strcmp(key, "burst")) {
            return bad_value(cmd, argv[i], "expected burst=N");
        }
        if ((err = chat_parse_int(val, 1, 1000000, &n))) {
            return bad_value(cmd, argv[i], err);
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
            return bad_value(cmd, arg, err);
        }
        dc->max_message_bytes = (apr_int64_t)v;
    }
    else {
        int64_t n;
        if ((err = chat_parse_int(arg, 1, 1000000, &n))) {
            return bad_value(cmd, arg, err);
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
        return bad_value(cmd, arg, err);
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
    if ((err = chat_parse_bool(arg, &flag))) {
        return bad_value(cmd, arg, err);
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

/* Defined in mod_chatbot_exec.c */
const char *chatbot_exec_set_command(cmd_parms *cmd, void *dummy, int argc,
                                     char *const argv[]);

#define SRV (RSRC_CONF | ACCESS_CONF) /* scope checked by the setters */
#define ANYDIR (RSRC_CONF | ACCESS_CONF)

const command_rec chatbot_cmds[] = {
    /* backends and bots */
    AP_INIT_TAKE_ARGV("ChatbotBackend", set_backend, NULL, SRV,
                      "name URL [type=ollama|openai] [key=...] [max=N]: an LLM server"),
    AP_INIT_TAKE_ARGV("ChatbotBackendURL", set_backend_url, NULL, SRV,
                      "URL [type=...] [key=...] [max=N]: the backend of the default bot "
                      "(or of the enclosing <ChatbotBot>)"),
    AP_INIT_TAKE1("ChatbotModel", set_model, NULL, SRV,
                  "model name, e.g. qwen2.5-coder:7b"),
    AP_INIT_TAKE1("ChatbotSystemPrompt", set_system_prompt, NULL, SRV,
                  "system prompt sent first in every conversation"),
    AP_INIT_TAKE1("ChatbotDescription", set_description, NULL, SRV,
                  "a one-line description of the bot shown to users"),
    AP_INIT_TAKE_ARGV("ChatbotBotBackend", set_bot_backend, NULL, SRV,
                      "backend names the bot uses, in failover order"),
    AP_INIT_TAKE2("ChatbotOption", set_option, NULL, SRV,
                  "model option: temperature|top_p|top_k|num_ctx|num_predict|seed|"
                  "keep_alive value"),
    AP_INIT_TAKE_ARGV("ChatbotContext", set_context, NULL, SRV,
                      "messages=N tokens=N: how much history is sent to the model"),
    AP_INIT_TAKE_ARGV("ChatbotBotCommands", set_bot_commands, NULL, SRV,
                      "names of declared commands this bot may run"),
    AP_INIT_RAW_ARGS("<ChatbotBot", bot_section, NULL, SRV,
                     "<ChatbotBot name> ... </ChatbotBot>: declares a bot"),
    AP_INIT_TAKE1("ChatbotDefaultBot", set_default_bot, NULL, SRV,
                  "name of the bot used when a client names none"),
    AP_INIT_TAKE_ARGV("ChatbotCommand", chatbot_exec_set_command, NULL, RSRC_CONF,
                      "name /abs/path [fixed args] [args=none|one|many] [timeout=10s] "
                      "[maxoutput=64k] [cwd=/dir] [paths=on] [dashes=on]"),
    /* shared store sizing */
    AP_INIT_TAKE1("ChatbotHistorySize", set_store_size, "history", SRV,
                  "bytes of shared memory for message text, e.g. 16M"),
    AP_INIT_TAKE1("ChatbotMaxConversations", set_store_size, "convs", SRV,
                  "conversations kept in shared memory"),
    AP_INIT_TAKE1("ChatbotMaxUsers", set_store_size, "users", SRV,
                  "identities tracked for rate limits and notifications"),
    AP_INIT_TAKE1("ChatbotMaxMessagesPerConversation", set_store_size, "msgs", SRV,
                  "messages kept per conversation (oldest dropped)"),
    AP_INIT_TAKE1("ChatbotMaxAnswerBytes", set_store_size, "answer", SRV,
                  "largest stored message (an answer is cut there)"),
    AP_INIT_TAKE1("ChatbotQueueSize", set_store_size, "queue", SRV,
                  "turns that may wait for a busy backend"),
    AP_INIT_TAKE_ARGV("ChatbotQuota", set_quota, NULL, SRV,
                      "anonymous|authenticated conversations=N history=SIZE "
                      "sessions=N/min [share=P%]: what one identity may hold"),
    AP_INIT_TAKE1("ChatbotStore", set_store, NULL, SRV,
                  "shm | redis://[user:password@]host:port/db | "
                  "unix:/path/to/redis.sock[?db=N]: where the chat store lives"),
    AP_INIT_TAKE1("ChatbotStoreTTL", set_store_time, "ttl", SRV,
                  "<duration>|off: idle conversations on redis older than this go "
                  "(default 720h)"),
    AP_INIT_TAKE1("ChatbotStoreTimeout", set_store_time, NULL, SRV,
                  "<duration>: connect and command timeout for redis (default 1s)"),
    AP_INIT_TAKE1("ChatbotHistoryFile", set_history_file, NULL, SRV,
                  "file the history is saved to at stop and loaded from at start"),
    AP_INIT_TAKE_ARGV("ChatbotCircuitBreaker", set_breaker, NULL, SRV,
                      "failures=N cooldown=<duration>"),
    AP_INIT_TAKE1("ChatbotHealthCheckInterval", set_srv_duration, NULL, SRV,
                  "how often backends are probed (GET /api/version)"),
    AP_INIT_TAKE1("ChatbotMaxConnectionsPerIP", set_max_conns_ip, NULL, SRV,
                  "WebSocket connections allowed per client address (0 = no limit)"),
    AP_INIT_TAKE1("ChatbotMaxWorkers", set_ws_bound, "workers", SRV,
                  "worker threads of a child that WebSockets may hold at once: auto "
                  "(half of ThreadsPerChild) or a number"),
    AP_INIT_TAKE1("ChatbotMaxAnswersPerIP", set_ws_bound, "answers", SRV,
                  "answers generating at once per client address and child: auto "
                  "(half of ChatbotMaxWorkers, at least 2), off or a number"),
    AP_INIT_TAKE1("ChatbotDemoNotice", set_demo_notice, NULL, SRV,
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
                  "on|off: show backend URLs and health details here (default off)"),
    AP_INIT_TAKE_ARGV("ChatbotUserSettings", chatbot_set_user_settings, NULL, ANYDIR,
                      "none | any of model system temperature: what users may set "
                      "per conversation (default model temperature)"),
    AP_INIT_TAKE2("ChatbotTemperatureRange", chatbot_set_temperature_range, NULL, ANYDIR,
                  "min max: the temperatures users may choose, within 0..2 (default 0 2)"),
    AP_INIT_TAKE1("ChatbotSystemPromptMax", chatbot_set_system_prompt_max, NULL, ANYDIR,
                  "longest system prompt a user may set, e.g. 4096 or 4K (default 4096)"),
    {NULL}};

/* ---- post-parse check ------------------------------------------------------------ */

const char *chatbot_exec_resolve(apr_pool_t *p, chatbot_srv_conf *sc, chatbot_bot_t *bot);

static void bot_defaults(chatbot_srv_conf *sc, chatbot_bot_t *b)
{
    if (!b->model) {
        b->model = sc->top->model ? sc->top->model : DEF_MODEL;
    }
    if (!b->system_prompt) {
        b->system_prompt = sc->top->system_prompt ? sc->top->system_prompt
                                                  : DEF_SYSTEM_PROMPT;
    }
    if (b->context_messages == CHATBOT_UNSET) {
        b->context_messages = sc->top->context_messages != CHATBOT_UNSET
                                  ? sc->top->context_messages : 20;
    }
    if (b->context_tokens == CHATBOT_UNSET) {
        b->context_tokens = sc->top->context_tokens != CHATBOT_UNSET
                                ? sc->top->context_tokens : 4000;
    }
#define OPT_INHERIT(f) if (b->options.f < 0) b->options.f = sc->top->options.f
    OPT_INHERIT(temperature);
    OPT_INHERIT(top_p);
    OPT_INHERIT(top_k);
    OPT_INHERIT(num_ctx);
    OPT_INHERIT(num_predict);
    OPT_INHERIT(seed);
#undef OPT_INHERIT
    if (!b->options.keep_alive) {
        b->options.keep_alive = sc->top->options.keep_alive;
    }
    if (b->options.num_ctx < 0) {
        b->options.num_ctx = 8192;
    }
    if (!b->options.keep_alive) {
        b->options.keep_alive = "30m";
    }
}

static const char *backend_list(apr_pool_t *p, chatbot_srv_conf *sc)
{
    const char *out = "";
    int i;

    for (i = 0; i < sc->backends->nelts; i++) {
        out =
            apr_pstrcat(p, out, i ? ", " : "",
                        APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *)->name, NULL);
    }
    return out;
}

static const char *bot_list(apr_pool_t *p, chatbot_srv_conf *sc)
{
    const char *out = "";
    int i;

    for (i = 0; i < sc->bots->nelts; i++) {
        out = apr_pstrcat(p, out, i ? ", " : "",
                          APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *)->name, NULL);
    }
    return out;
}

const char *chatbot_config_finish(apr_pool_t *p, server_rec *s)
{
    chatbot_srv_conf *sc = chatbot_srv(s);
    int i, j;

    /* No backend at all: the documented default. */
    if (sc->backends->nelts == 0) {
        chatbot_backend_t *be = apr_pcalloc(p, sizeof(*be));
        be->name = "default";
        be->url = DEF_BACKEND_URL;
        be->wire = CHAT_WIRE_OLLAMA;
        be->chat_url = DEF_BACKEND_URL "/api/chat";
        be->index = -1;
        be->defined_at = "built-in default";
        APR_ARRAY_PUSH(sc->backends, chatbot_backend_t *) = be;
    }
    /* The store's slot table (256 per backend by default) must hold the
     * largest max=, or max=200 would silently mean 64. */
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        if (be->max_active > 0 && (uint32_t)be->max_active > sc->layout.max_active) {
            sc->layout.max_active = (uint32_t)be->max_active;
        }
    }
    if (sc->layout.max_active > 65536) {
        sc->layout.max_active = 65536; /* the store's own bound */
    }
    /* No bot declared: the implicit default bot from top-level directives. */
    if (sc->bots->nelts == 0) {
        APR_ARRAY_PUSH(sc->bots, chatbot_bot_t *) = sc->top;
        sc->top->defined_at = "top-level directives";
    }
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_bot_t *b = APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *);
        const char *err;
        bot_defaults(sc, b);
        if (b->backend_names->nelts == 0) {
            if (sc->top->backend_names->nelts) {
                apr_array_cat(b->backend_names, sc->top->backend_names);
            }
            else {
                APR_ARRAY_PUSH(b->backend_names, const char *) =
                    APR_ARRAY_IDX(sc->backends, 0, chatbot_backend_t *)->name;
            }
        }
        apr_array_clear(b->backends);
        for (j = 0; j < b->backend_names->nelts; j++) {
            const char *n = APR_ARRAY_IDX(b->backend_names, j, const char *);
            chatbot_backend_t *be = backend_find(sc, n);
            if (!be) {
                return apr_psprintf(p,
                                    "ChatbotBotBackend: bot '%s' (%s) uses backend "
                                    "'%s', which is not declared; declare it with "
                                    "ChatbotBackend %s <URL> (declared: %s)",
                                    b->name, b->defined_at, n, n, backend_list(p, sc));
            }
            APR_ARRAY_PUSH(b->backends, chatbot_backend_t *) = be;
        }
        if ((err = chatbot_exec_resolve(p, sc, b))) {
            return err;
        }
    }
    if (sc->default_bot) {
        sc->default_bot_p = chatbot_bot_find(sc, sc->default_bot);
        if (!sc->default_bot_p) {
            return apr_psprintf(p,
                                "ChatbotDefaultBot: no bot named '%s' is declared "
                                "(declared: %s)",
                                sc->default_bot, bot_list(p, sc));
        }
    }
    else {
        sc->default_bot_p = APR_ARRAY_IDX(sc->bots, 0, chatbot_bot_t *);
    }
    if ((uint64_t)sc->layout.max_message_bytes > sc->layout.history_bytes / 2) {
        return apr_psprintf(p, "ChatbotMaxAnswerBytes (%u) must be at most half of "
                            "ChatbotHistorySize (%" APR_UINT64_T_FMT ")",
                            sc->layout.max_message_bytes, sc->layout.history_bytes);
    }
    if (chat_store_size(&sc->layout) == 0) {
        return "the Chatbot* sizing directives give an invalid shared memory layout";
    }
    return NULL;
}
