/* mod_chatbot_config_bots.c - directives of backends and bots
 * (ChatbotBackend*, <ChatbotBot>, ChatbotModel, ChatbotOption...) and the
 * lookups of both while the configuration is read.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
#include "mod_chatbot_config.h"

chatbot_bot_t *chatbot_config_bot_new(apr_pool_t *p, const char *name)
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

/* The bot a directive applies to: the enclosing <ChatbotBot>, or the
 * implicit default bot for top-level directives. */
chatbot_bot_t *chatbot_config_bot_of(cmd_parms *cmd)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const ap_directive_t *d;

    for (d = cmd->directive ? cmd->directive->parent : NULL; d; d = d->parent) {
        if (!strcasecmp(d->directive, "<ChatbotBot")) {
            chatbot_bot_t *b = chatbot_bot_find(
                sc, ap_getword_conf(cmd->temp_pool, &(const char *){d->args}));
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

chatbot_backend_t *chatbot_config_backend_find(chatbot_srv_conf *sc, const char *name)
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

static const char *make_backend(cmd_parms *cmd, const char *name, const char *url,
                                int argc, char *const argv[], chatbot_backend_t **out)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    chatbot_backend_t *be;
    chat_url_t u;
    const char *err;
    int i;

    if ((err = chat_parse_name(name))) {
        return chatbot_config_bad_value(
            cmd, name, apr_pstrcat(cmd->pool, "backend name: ", err, NULL));
    }
    if ((be = chatbot_config_backend_find(sc, name)) != NULL) {
        return apr_psprintf(cmd->pool,
                            "%s: backend '%s' is already defined (at %s); "
                            "backend names must be unique",
                            cmd->cmd->name, name, be->defined_at);
    }
    if ((err = chat_parse_url(url, &u))) {
        return chatbot_config_bad_value(cmd, url, err);
    }
    be = apr_pcalloc(cmd->pool, sizeof(*be));
    be->name = apr_pstrdup(cmd->pool, name);
    be->url = apr_psprintf(cmd->pool, "%s://%s%s:%d%s", u.scheme,
                           strchr(u.host, ':') ? "[" : "", u.host, u.port, u.path);
    if (strchr(u.host, ':')) {
        be->url =
            apr_psprintf(cmd->pool, "%s://[%s]:%d%s", u.scheme, u.host, u.port, u.path);
    }
    be->wire = CHAT_WIRE_OLLAMA;
    be->index = -1;
    be->defined_at = chatbot_config_where(cmd);
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return chatbot_config_bad_value(
                cmd, argv[i],
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
                return chatbot_config_bad_value(cmd, argv[i],
                                                "type must be 'ollama' or 'openai'");
            }
        }
        else if (!strcmp(key, "key")) {
            if (!*val || strpbrk(val, "\r\n")) {
                return chatbot_config_bad_value(
                    cmd, argv[i], "key must be a non-empty single-line token");
            }
            be->key = apr_pstrdup(cmd->pool, val);
        }
        else if (!strcmp(key, "max")) {
            int64_t v;
            if ((err = chat_parse_int(val, 0, 65536, &v))) { /* the store's bound */
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            be->max_active = (int)v;
        }
        else {
            return chatbot_config_bad_value(cmd, argv[i],
                                            "unknown option; allowed: type=, key=, max=");
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
    be->chat_url = apr_pstrcat(
        cmd->pool, be->url,
        be->wire == CHAT_WIRE_OLLAMA ? "/api/chat" : "/v1/chat/completions", NULL);
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

const char *chatbot_set_backend(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    const char *err = chatbot_config_check_server(cmd);

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
const char *chatbot_set_backend_url(cmd_parms *cmd, void *dummy, int argc,
                                    char *const argv[])
{
    chatbot_bot_t *bot;
    chatbot_backend_t *be;
    const char *err = chatbot_config_check_server(cmd);
    const char *name;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotBackendURL: expected a URL such as http://127.0.0.1:11434";
    }
    bot = chatbot_config_bot_of(cmd);
    name =
        bot->implicit ? "default" : apr_pstrcat(cmd->pool, bot->name, "-backend", NULL);
    if ((err = make_backend(cmd, name, argv[0], argc - 1, argv + 1, &be))) {
        return err;
    }
    APR_ARRAY_PUSH(bot->backend_names, const char *) = be->name;
    return NULL;
}

const char *chatbot_set_model(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = chatbot_config_check_server(cmd);

    if (err) {
        return err;
    }
    if (!*arg || strlen(arg) > 200 || strpbrk(arg, " \t\r\n\"")) {
        return chatbot_config_bad_value(cmd, arg,
                                        "expected a model name such as qwen2.5-coder:7b");
    }
    chatbot_config_bot_of(cmd)->model = arg;
    return NULL;
}

/* The checks of a bot's free text (a system prompt, a description): where
 * it is written, at most max bytes. NULL or the error. */
static const char *check_bot_text(cmd_parms *cmd, const char *arg, size_t max,
                                  const char *too_long)
{
    const char *err = chatbot_config_check_server(cmd);

    if (err) {
        return err;
    }
    if (strlen(arg) > max) {
        return chatbot_config_bad_value(cmd, "...", too_long);
    }
    return NULL;
}

const char *chatbot_set_system_prompt(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err =
        check_bot_text(cmd, arg, 32768, "the system prompt is limited to 32 KiB");

    if (!err) {
        chatbot_config_bot_of(cmd)->system_prompt = arg;
    }
    return err;
}

const char *chatbot_set_description(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err =
        check_bot_text(cmd, arg, 1024, "the description is limited to 1024 bytes");

    if (!err) {
        chatbot_config_bot_of(cmd)->description = arg;
    }
    return err;
}

const char *chatbot_set_bot_backend(cmd_parms *cmd, void *dummy, int argc,
                                    char *const argv[])
{
    const char *err = chatbot_config_check_server(cmd);

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotBotBackend: expected one or more backend names (failover "
               "order)";
    }
    return chatbot_config_add_names(cmd, chatbot_config_bot_of(cmd)->backend_names, argc,
                                    argv);
}

const char *chatbot_config_add_names(cmd_parms *cmd, apr_array_header_t *names, int argc,
                                     char *const argv[])
{
    const char *err;
    int i;

    for (i = 0; i < argc; i++) {
        if ((err = chat_parse_name(argv[i]))) {
            return chatbot_config_bad_value(cmd, argv[i], err);
        }
        APR_ARRAY_PUSH(names, const char *) = argv[i];
    }
    return NULL;
}

const char *chatbot_set_option(cmd_parms *cmd, void *dummy, const char *key,
                               const char *val)
{
    chatbot_bot_t *bot;
    const char *err = chatbot_config_check_server(cmd);
    double d;
    int64_t i;

    if (err) {
        return err;
    }
    bot = chatbot_config_bot_of(cmd);
    if (!strcasecmp(key, "temperature")) {
        if ((err = chat_parse_double(val, 0.0, 2.0, &d))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.temperature = d;
    }
    else if (!strcasecmp(key, "top_p")) {
        if ((err = chat_parse_double(val, 0.0, 1.0, &d))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.top_p = d;
    }
    else if (!strcasecmp(key, "top_k")) {
        if ((err = chat_parse_int(val, 1, 1000000, &i))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.top_k = i;
    }
    else if (!strcasecmp(key, "num_ctx")) {
        if ((err = chat_parse_int(val, 256, 10485760, &i))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.num_ctx = i;
    }
    else if (!strcasecmp(key, "num_predict") || !strcasecmp(key, "max_tokens")) {
        if ((err = chat_parse_int(val, 1, 10485760, &i))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.num_predict = i;
    }
    else if (!strcasecmp(key, "seed")) {
        if ((err = chat_parse_int(val, 0, INT64_MAX, &i))) {
            return chatbot_config_bad_value(cmd, val, err);
        }
        bot->options.seed = i;
    }
    else if (!strcasecmp(key, "keep_alive")) {
        int64_t ms;
        if (strcmp(val, "-1") &&
            (err = chat_parse_duration(val, 0, INT64_MAX / 2, &ms))) {
            return chatbot_config_bad_value(cmd, val, err);
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

const char *chatbot_set_context(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_bot_t *bot;
    const char *err = chatbot_config_check_server(cmd);
    int i;

    if (err) {
        return err;
    }
    if (argc < 1) {
        return "ChatbotContext: expected messages=N and/or tokens=N";
    }
    bot = chatbot_config_bot_of(cmd);
    for (i = 0; i < argc; i++) {
        char key[32];
        const char *val;
        int64_t v;
        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            return chatbot_config_bad_value(cmd, argv[i],
                                            "expected messages=N or tokens=N");
        }
        if (!strcmp(key, "messages")) {
            if ((err = chat_parse_int(val, 1, 10000, &v))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            bot->context_messages = (int)v;
        }
        else if (!strcmp(key, "tokens")) {
            if ((err = chat_parse_int(val, 16, 10000000, &v))) {
                return chatbot_config_bad_value(cmd, argv[i], err);
            }
            bot->context_tokens = (int)v;
        }
        else {
            return chatbot_config_bad_value(cmd, argv[i],
                                            "expected messages=N or tokens=N");
        }
    }
    return NULL;
}

const char *chatbot_bot_section(cmd_parms *cmd, void *mconfig, const char *arg)
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    const char *endp = ap_strrchr_c(arg, '>');
    const char *err;
    char *name;
    chatbot_bot_t *bot;

    if (chatbot_config_in_bot_section(cmd)) {
        return "<ChatbotBot> sections cannot be nested";
    }
    if ((err = chatbot_config_check_global(cmd))) {
        return err;
    }
    if (!endp) {
        return "<ChatbotBot: missing closing '>'";
    }
    name = apr_pstrndup(cmd->temp_pool, arg, endp - arg);
    name = ap_getword_conf(cmd->pool, (const char **)&name);
    if ((err = chat_parse_name(name))) {
        return chatbot_config_bad_value(cmd, name, err);
    }
    if ((bot = chatbot_bot_find(sc, name)) != NULL) {
        return apr_psprintf(cmd->pool,
                            "<ChatbotBot %s>: a bot of that name is already "
                            "defined (at %s); bot names must be unique",
                            name, bot->defined_at);
    }
    bot = chatbot_config_bot_new(cmd->pool, name);
    bot->defined_at = chatbot_config_where(cmd);
    APR_ARRAY_PUSH(sc->bots, chatbot_bot_t *) = bot;
    sc->configured = 1;
    return ap_walk_config(cmd->directive->first_child, cmd, cmd->context);
}

const char *chatbot_set_default_bot(cmd_parms *cmd, void *dummy, const char *arg)
{
    const char *err = chatbot_config_check_server(cmd);

    if (err) {
        return err;
    }
    if ((err = chat_parse_name(arg))) {
        return chatbot_config_bad_value(cmd, arg, err);
    }
    chatbot_srv(cmd->server)->default_bot = arg;
    return NULL;
}
