/* mod_chatbot_settings.c - per-conversation settings: the model, the
 * system prompt and the temperature a user chose for one conversation,
 * within what the administrator allows (ChatbotUserSettings,
 * ChatbotTemperatureRange, ChatbotSystemPromptMax).
 *
 * The settings live in the store with the conversation
 * (chat_store_conv_meta_get/set) as a small text blob:
 *
 *     model=<name>\n            (absent: the bot's ChatbotModel)
 *     temperature=<number>\n    (absent: the bot's ChatbotModelOption)
 *     system=<text to the end>  (absent: the bot's ChatbotSystemPrompt)
 *
 * A model must be one the bot's backends list (Ollama GET /api/tags,
 * OpenAI GET /v1/models: chatbot_models_get, which keeps them per child
 * for ten seconds), or the bot's own model. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "chat/confparse.h"
#include "chat/proto.h"
#include "chat/settings.h"
#include "chat/stream.h"
#include "chat/utf8.h"
#include "mod_chatbot.h"
#include "mod_chatbot_settings.h"

#define MODELS_MAX 1000 /* offered to a user */

/* ---- directives ---------------------------------------------------------- */

const char *chatbot_set_user_settings(cmd_parms *cmd, void *dcv, int argc,
                                      char *const argv[])
{
    chatbot_dir_conf *dc = dcv;
    const char *err = chatbot_check_dir_scope(cmd);
    int i, bits = 0;

    if (err) {
        return err;
    }
    if (argc == 0) {
        return apr_psprintf(cmd->pool,
                            "%s: expected none, or any of model system "
                            "temperature",
                            cmd->cmd->name);
    }
    for (i = 0; i < argc; i++) {
        if (!strcasecmp(argv[i], "none")) {
            if (argc != 1) {
                return apr_psprintf(cmd->pool,
                                    "%s: 'none' cannot be combined with "
                                    "other settings",
                                    cmd->cmd->name);
            }
        }
        else if (!strcasecmp(argv[i], "model")) {
            bits |= CHATBOT_SET_MODEL;
        }
        else if (!strcasecmp(argv[i], "system")) {
            bits |= CHATBOT_SET_SYSTEM;
        }
        else if (!strcasecmp(argv[i], "temperature")) {
            bits |= CHATBOT_SET_TEMPERATURE;
        }
        else {
            return apr_psprintf(cmd->pool,
                                "%s: invalid value '%s': expected none, or "
                                "any of model system temperature",
                                cmd->cmd->name, argv[i]);
        }
    }
    dc->user_settings = bits;
    return NULL;
}

const char *chatbot_set_temperature_range(cmd_parms *cmd, void *dcv, const char *lo,
                                          const char *hi)
{
    chatbot_dir_conf *dc = dcv;
    const char *err = chatbot_check_dir_scope(cmd);
    double a, b;

    if (err) {
        return err;
    }
    /* 0..2: what OpenAI accepts (Ollama takes any non-negative value) */
    if ((err = chat_parse_double(lo, 0.0, 2.0, &a))) {
        return apr_psprintf(cmd->pool, "%s: invalid minimum '%s': %s", cmd->cmd->name, lo,
                            err);
    }
    if ((err = chat_parse_double(hi, 0.0, 2.0, &b))) {
        return apr_psprintf(cmd->pool, "%s: invalid maximum '%s': %s", cmd->cmd->name, hi,
                            err);
    }
    if (a > b) {
        return apr_psprintf(cmd->pool, "%s: the minimum %s is above the maximum %s",
                            cmd->cmd->name, lo, hi);
    }
    dc->temp_min = a;
    dc->temp_max = b;
    dc->temp_set = 1;
    return NULL;
}

const char *chatbot_set_system_prompt_max(cmd_parms *cmd, void *dcv, const char *arg)
{
    chatbot_dir_conf *dc = dcv;
    const char *err = chatbot_check_dir_scope(cmd);
    uint64_t v;

    if (err) {
        return err;
    }
    if ((err = chat_parse_size(arg, 1, CHATBOT_SYSTEM_MAX_LIMIT, &v))) {
        return apr_psprintf(cmd->pool, "%s: invalid value '%s': %s (at most %d bytes)",
                            cmd->cmd->name, arg, err, CHATBOT_SYSTEM_MAX_LIMIT);
    }
    dc->system_prompt_max = (apr_int64_t)v;
    return NULL;
}

/* ---- the stored blob ----------------------------------------------------- */

static void blob_parse(apr_pool_t *p, const char *d, apr_size_t n, chatbot_settings_t *s)
{
    chat_settings_t cs;

    memset(s, 0, sizeof(*s));
    chat_settings_parse(d, n, &cs);
    if (cs.model) {
        s->model = apr_pstrmemdup(p, cs.model, cs.model_len);
    }
    if (cs.system) {
        s->system = apr_pstrmemdup(p, cs.system, cs.system_len);
        s->system_len = cs.system_len;
    }
    s->temperature = cs.temperature;
    s->has_temperature = cs.has_temperature;
}

static chat_status_t blob_write(chat_buf_t *b, const chatbot_settings_t *s)
{
    chat_settings_t cs;

    memset(&cs, 0, sizeof(cs));
    cs.model = s->model;
    cs.model_len = s->model ? strlen(s->model) : 0;
    cs.system = s->system;
    cs.system_len = s->system ? s->system_len : 0;
    cs.temperature = s->temperature;
    cs.has_temperature = s->has_temperature;
    return chat_settings_write(&cs, b);
}

void chatbot_settings_load(apr_pool_t *p, const chatbot_limits_t *lim,
                           const chat_owner_t *owner, const char *conv,
                           chatbot_settings_t *out)
{
    chat_buf_t b;

    chat_buf_init(&b);
    if (!conv || chat_store_conv_meta_get(chatbot_store(), owner, conv, &b) != CHAT_OK) {
        b.len = 0;
    }
    chatbot_settings_of_blob(p, lim, b.data, b.len, out);
    chat_buf_free(&b);
}

void chatbot_settings_of_blob(apr_pool_t *p, const chatbot_limits_t *lim, const char *d,
                              apr_size_t n, chatbot_settings_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n) {
        blob_parse(p, d, n, out);
    }
    /* what the administrator allows now, whatever was chosen before */
    if (!(lim->user_settings & CHATBOT_SET_MODEL)) {
        out->model = NULL;
    }
    if (!(lim->user_settings & CHATBOT_SET_SYSTEM) ||
        out->system_len > lim->system_prompt_max) {
        out->system = NULL;
        out->system_len = 0;
    }
    if (!(lim->user_settings & CHATBOT_SET_TEMPERATURE)) {
        out->has_temperature = 0;
    }
    else if (out->has_temperature) {
        out->temperature = out->temperature < lim->temp_min   ? lim->temp_min
                           : out->temperature > lim->temp_max ? lim->temp_max
                                                              : out->temperature;
    }
}

const char *chatbot_settings_model(const chatbot_limits_t *lim, const chatbot_bot_t *bot,
                                   const chat_conv_info_t *c)
{
    if ((lim->user_settings & CHATBOT_SET_MODEL) && c->model[0]) {
        return c->model;
    }
    return bot ? bot->model : NULL;
}

/* ---- the backends' model lists ------------------------------------------- */

/* The models a user may choose for bot: its own first, then those its
 * backends list (each once). *unread (may be NULL) is set if a backend's
 * list could not be read. */
static apr_array_header_t *bot_models(apr_pool_t *p, const chatbot_limits_t *lim,
                                      chatbot_bot_t *bot, int *unread)
{
    apr_array_header_t *all = apr_array_make(p, 16, sizeof(const char *));
    apr_array_header_t *out = apr_array_make(p, 16, sizeof(const char *));
    apr_hash_t *seen = apr_hash_make(p);
    apr_array_header_t *lists;
    int i, k;

    APR_ARRAY_PUSH(all, const char *) = bot->model;
    if (bot->backends && bot->backends->nelts) {
        lists =
            chatbot_models_get(p, NULL, bot->backends, (long)lim->connect_timeout_ms, 0);
        for (i = 0; i < lists->nelts; i++) {
            const chatbot_model_list_t *ml =
                &APR_ARRAY_IDX(lists, i, chatbot_model_list_t);
            for (k = 0; k < ml->n; k++) {
                APR_ARRAY_PUSH(all, const char *) = ml->names[k];
            }
            if (ml->error && unread) {
                *unread = 1;
            }
        }
    }
    for (i = 0; i < all->nelts && out->nelts < MODELS_MAX; i++) {
        const char *m = APR_ARRAY_IDX(all, i, const char *);
        if (m && !apr_hash_get(seen, m, APR_HASH_KEY_STRING)) {
            apr_hash_set(seen, m, APR_HASH_KEY_STRING, m);
            APR_ARRAY_PUSH(out, const char *) = m;
        }
    }
    return out;
}

/* ---- changing ------------------------------------------------------------ */

static const char *refuse(char *msg, apr_size_t cap, const char *fmt, const char *what)
{
    apr_snprintf(msg, cap, fmt, what);
    return CHAT_ERR_SETTING_REFUSED;
}

const char *chatbot_settings_change(apr_pool_t *p, const chatbot_limits_t *lim,
                                    chatbot_bot_t *bot, const chat_owner_t *owner,
                                    const char *conv, const chatbot_settings_req_t *req,
                                    char *msg, apr_size_t msgcap)
{
    chat_store_t *st = chatbot_store();
    chatbot_settings_t s;
    chat_buf_t b;
    chat_status_t rc;
    const char *code;

    msg[0] = '\0';
    /* what may be changed, before anything is read */
    if (req->model && !(lim->user_settings & CHATBOT_SET_MODEL)) {
        return refuse(msg, msgcap, "%s may not be changed here", "the model");
    }
    if (req->system && !(lim->user_settings & CHATBOT_SET_SYSTEM)) {
        return refuse(msg, msgcap, "%s may not be changed here", "the system prompt");
    }
    if (req->has_temperature && !(lim->user_settings & CHATBOT_SET_TEMPERATURE)) {
        return refuse(msg, msgcap, "%s may not be changed here", "the temperature");
    }
    if (req->has_temperature &&
        (!isfinite(req->temperature) || req->temperature < lim->temp_min ||
         req->temperature > lim->temp_max)) {
        /* libc's %g: apr_snprintf writes 0.1 as .1 */
        snprintf(msg, msgcap, "the temperature must be between %g and %g", lim->temp_min,
                 lim->temp_max);
        return CHAT_ERR_SETTING_REFUSED;
    }
    if (req->system && req->system_len > lim->system_prompt_max) {
        apr_snprintf(msg, msgcap,
                     "the system prompt is too long (at most %" APR_SIZE_T_FMT " bytes)",
                     lim->system_prompt_max);
        return CHAT_ERR_SETTING_REFUSED;
    }
    if (req->system && memchr(req->system, '\0', req->system_len)) {
        return refuse(msg, msgcap, "%s contains a NUL character", "the system prompt");
    }
    if (req->model && *req->model &&
        !chat_settings_model_ok(req->model, strlen(req->model))) {
        return refuse(msg, msgcap, "%s is not a valid model name", "the model");
    }
    /* the conversation must be the caller's (the answer is the same as for
     * an id that does not exist) */
    if ((rc = chat_store_conv_get(st, owner, conv, NULL)) != CHAT_OK) {
        code = chatbot_store_err(rc);
        apr_snprintf(msg, msgcap, "%s", chatbot_store_err_text(code));
        return code;
    }
    if (req->model && *req->model && strcmp(req->model, bot->model) != 0) {
        int i, found = 0, unread = 0;
        apr_array_header_t *ms = bot_models(p, lim, bot, &unread);
        for (i = 0; i < ms->nelts && !found; i++) {
            found = !strcmp(APR_ARRAY_IDX(ms, i, const char *), req->model);
        }
        if (!found) {
            apr_snprintf(msg, msgcap,
                         "the model '%s' is not offered by the servers of bot '%s'%s",
                         req->model, bot->name,
                         unread ? " (a server's model list cannot be read now; try again "
                                  "later)"
                                : "");
            return CHAT_ERR_SETTING_REFUSED;
        }
    }
    if (req->reset) {
        memset(&s, 0, sizeof(s));
    }
    else {
        /* keep what was chosen before (even what is not allowed now: it
         * stays unused until it is allowed again) */
        chatbot_limits_t all = *lim;
        all.user_settings =
            CHATBOT_SET_MODEL | CHATBOT_SET_SYSTEM | CHATBOT_SET_TEMPERATURE;
        all.system_prompt_max = CHATBOT_SYSTEM_MAX_LIMIT;
        all.temp_min = -INFINITY;
        all.temp_max = INFINITY;
        chatbot_settings_load(p, &all, owner, conv, &s);
    }
    if (req->model) {
        /* the bot's own model is not stored: it follows ChatbotModel */
        s.model = *req->model && strcmp(req->model, bot->model) ? req->model : NULL;
    }
    if (req->system) {
        s.system = req->system_len ? req->system : NULL;
        s.system_len = req->system_len;
    }
    if (req->has_temperature) {
        s.temperature = req->temperature;
        s.has_temperature = 1;
    }
    chat_buf_init(&b);
    rc = blob_write(&b, &s);
    if (rc == CHAT_OK) {
        rc = chat_store_conv_meta_set(st, owner, conv, b.data, b.len, chatbot_now_ms());
    }
    chat_buf_free(&b);
    if (rc != CHAT_OK) {
        code = chatbot_store_err(rc);
        apr_snprintf(msg, msgcap, "%s", chatbot_store_err_text(code));
        return code;
    }
    chat_store_user_bump(st, owner);
    return NULL;
}

/* ---- views --------------------------------------------------------------- */

static void allowed_view(chat_jw_t *jw, const chatbot_limits_t *lim)
{
    chat_jw_key(jw, "allowed");
    chat_jw_arr_begin(jw);
    if (lim->user_settings & CHATBOT_SET_MODEL) {
        chat_jw_str(jw, "model");
    }
    if (lim->user_settings & CHATBOT_SET_SYSTEM) {
        chat_jw_str(jw, "system");
    }
    if (lim->user_settings & CHATBOT_SET_TEMPERATURE) {
        chat_jw_str(jw, "temperature");
    }
    chat_jw_arr_end(jw);
    chat_jw_key(jw, "temperature_range");
    chat_jw_obj_begin(jw);
    chat_jw_key(jw, "min");
    chat_jw_double(jw, lim->temp_min);
    chat_jw_key(jw, "max");
    chat_jw_double(jw, lim->temp_max);
    chat_jw_obj_end(jw);
    chat_jw_kint(jw, "system_max", (int64_t)lim->system_prompt_max);
}

void chatbot_settings_brief(chat_jw_t *jw, const chatbot_settings_t *s)
{
    chat_jw_key(jw, "settings");
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "model", s->model);
    chat_jw_key(jw, "temperature");
    if (s->has_temperature) {
        chat_jw_double(jw, s->temperature);
    }
    else {
        chat_jw_null(jw);
    }
    chat_jw_kbool(jw, "system", s->system != NULL);
    chat_jw_obj_end(jw);
}

void chatbot_settings_policy_view(chat_jw_t *jw, const chatbot_limits_t *lim)
{
    chat_jw_key(jw, "settings");
    chat_jw_obj_begin(jw);
    allowed_view(jw, lim);
    chat_jw_obj_end(jw);
}

void chatbot_settings_view(chat_jw_t *jw, apr_pool_t *p, const chatbot_limits_t *lim,
                           chatbot_bot_t *bot, const chatbot_settings_t *s)
{
    int i;

    chat_jw_kstr(jw, "bot_id", bot->name);
    chat_jw_kstr(jw, "model", s->model);
    chat_jw_key(jw, "system");
    if (s->system) {
        chat_jw_strn(jw, s->system, s->system_len);
    }
    else {
        chat_jw_null(jw);
    }
    chat_jw_key(jw, "temperature");
    if (s->has_temperature) {
        chat_jw_double(jw, s->temperature);
    }
    else {
        chat_jw_null(jw);
    }
    /* what a turn uses when nothing is chosen (the administrator's system
     * prompt is not shown) */
    chat_jw_key(jw, "defaults");
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "model", bot->model);
    chat_jw_key(jw, "temperature");
    if (bot->options.temperature >= 0) {
        chat_jw_double(jw, bot->options.temperature);
    }
    else {
        chat_jw_null(jw);
    }
    chat_jw_kbool(jw, "system", bot->system_prompt && *bot->system_prompt);
    chat_jw_obj_end(jw);
    allowed_view(jw, lim);
    chat_jw_key(jw, "models");
    chat_jw_arr_begin(jw);
    if (lim->user_settings & CHATBOT_SET_MODEL) {
        apr_array_header_t *ms = bot_models(p, lim, bot, NULL);
        for (i = 0; i < ms->nelts; i++) {
            chat_jw_str(jw, APR_ARRAY_IDX(ms, i, const char *));
        }
    }
    else {
        chat_jw_str(jw, bot->model);
    }
    chat_jw_arr_end(jw);
}

/* ---- REST bodies --------------------------------------------------------- */

const char *chatbot_settings_req_from_json(void *body, chatbot_settings_req_t *req)
{
    json_object *o = body, *v;

    memset(req, 0, sizeof(*req));
    if (!o || !json_object_is_type(o, json_type_object)) {
        return "the body must be a JSON object";
    }
    if (json_object_object_get_ex(o, "model", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return "field 'model' must be a string";
        }
        req->model = json_object_get_string(v);
        if ((size_t)json_object_get_string_len(v) != strlen(req->model)) {
            return "field 'model' contains a NUL character";
        }
    }
    if (json_object_object_get_ex(o, "system", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return "field 'system' must be a string";
        }
        req->system = json_object_get_string(v);
        req->system_len = (apr_size_t)json_object_get_string_len(v);
    }
    if (json_object_object_get_ex(o, "temperature", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_double) &&
            !json_object_is_type(v, json_type_int)) {
            return "field 'temperature' must be a number";
        }
        req->temperature = json_object_get_double(v);
        if (!isfinite(req->temperature)) {
            return "field 'temperature' must be a finite number";
        }
        req->has_temperature = 1;
    }
    if (json_object_object_get_ex(o, "reset", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_boolean)) {
            return "field 'reset' must be a boolean";
        }
        req->reset = json_object_get_boolean(v);
    }
    return NULL;
}
