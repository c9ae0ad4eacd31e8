/* mod_chatbot_config_check.c - the post-parse check: defaults of each bot,
 * bots resolved to backends and commands, the default bot, the store's
 * layout (chatbot_config_finish, called at post_config).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
#include "mod_chatbot_config.h"

#define DEF_MODEL "qwen2.5-coder:7b"
#define DEF_BACKEND_URL "http://127.0.0.1:11434"
#define DEF_SYSTEM_PROMPT "You are a helpful assistant."

static void bot_defaults(chatbot_srv_conf *sc, chatbot_bot_t *b)
{
    if (!b->model) {
        b->model = sc->top->model ? sc->top->model : DEF_MODEL;
    }
    if (!b->system_prompt) {
        b->system_prompt =
            sc->top->system_prompt ? sc->top->system_prompt : DEF_SYSTEM_PROMPT;
    }
    if (b->context_messages == CHATBOT_UNSET) {
        b->context_messages =
            sc->top->context_messages != CHATBOT_UNSET ? sc->top->context_messages : 20;
    }
    if (b->context_tokens == CHATBOT_UNSET) {
        b->context_tokens =
            sc->top->context_tokens != CHATBOT_UNSET ? sc->top->context_tokens : 4000;
    }
#define OPT_INHERIT(f)                                                                   \
    do {                                                                                 \
        if (b->options.f < 0) {                                                          \
            b->options.f = sc->top->options.f;                                           \
        }                                                                                \
    } while (0)
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
            chatbot_backend_t *be = chatbot_config_backend_find(sc, n);
            if (!be) {
                return apr_psprintf(p,
                                    "ChatbotBotBackend: bot '%s' (%s) uses backend "
                                    "'%s', which is not declared; declare it with "
                                    "ChatbotBackend %s <URL> (declared: %s)",
                                    b->name, b->defined_at, n, n, backend_list(p, sc));
            }
            APR_ARRAY_PUSH(b->backends, chatbot_backend_t *) = be;
        }
        if ((err = chatbot_config_resolve_commands(p, sc, b))) {
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
        return apr_psprintf(p,
                            "ChatbotMaxAnswerBytes (%u) must be at most half of "
                            "ChatbotHistorySize (%" APR_UINT64_T_FMT ")",
                            sc->layout.max_message_bytes, sc->layout.history_bytes);
    }
    if (chat_store_size(&sc->layout) == 0) {
        return "the Chatbot* sizing directives give an invalid shared memory layout";
    }
    return NULL;
}
