/* mod_chatbot_settings.h - per-conversation settings (model, system prompt,
 * temperature) within what the administrator allows: ChatbotUserSettings,
 * ChatbotTemperatureRange, ChatbotSystemPromptMax. See docs/directives.md,
 * docs/protocol.md ("settings") and docs/api.md. */
#ifndef MOD_CHATBOT_SETTINGS_H
#define MOD_CHATBOT_SETTINGS_H

#include "mod_chatbot.h"

/* ChatbotUserSettings bits */
#define CHATBOT_SET_MODEL 0x1
#define CHATBOT_SET_SYSTEM 0x2
#define CHATBOT_SET_TEMPERATURE 0x4
#define CHATBOT_SET_DEFAULT (CHATBOT_SET_MODEL | CHATBOT_SET_TEMPERATURE)

#define CHATBOT_TEMP_MIN_DEFAULT 0.0
#define CHATBOT_TEMP_MAX_DEFAULT 2.0
#define CHATBOT_SYSTEM_MAX_DEFAULT 4096
#define CHATBOT_SYSTEM_MAX_LIMIT 7680 /* fits CHAT_CONV_META_MAX with the rest */

/* What a conversation has chosen (NULL / has_temperature 0: the bot's). */
typedef struct {
    const char *model;
    const char *system;
    apr_size_t system_len;
    double temperature;
    int has_temperature;
} chatbot_settings_t;

/* A change asked for: "" for model or system = back to the bot's own. */
typedef struct {
    const char *model;
    const char *system;
    apr_size_t system_len;
    double temperature;
    int has_temperature;
    int reset;
} chatbot_settings_req_t;

/* The scope check of per-directory directives (mod_chatbot_config.c). */
const char *chatbot_check_dir_scope(cmd_parms *cmd);

/* Directive setters (command table in mod_chatbot_config.c). */
const char *chatbot_set_user_settings(cmd_parms *cmd, void *dcv, int argc,
                                      char *const argv[]);
const char *chatbot_set_temperature_range(cmd_parms *cmd, void *dcv, const char *lo,
                                          const char *hi);
const char *chatbot_set_system_prompt_max(cmd_parms *cmd, void *dcv, const char *arg);

/* The settings of conversation conv of owner (empty if none or on error),
 * as the administrator allows them now (lim). */
void chatbot_settings_load(apr_pool_t *p, const chatbot_limits_t *lim,
                           const chat_owner_t *owner, const char *conv,
                           chatbot_settings_t *out);

/* The same from a blob already read (n 0: none), e.g. with the turn's
 * context (chat_store_msg_tail_meta). */
void chatbot_settings_of_blob(apr_pool_t *p, const chatbot_limits_t *lim, const char *d,
                              apr_size_t n, chatbot_settings_t *out);

/* Validates req against lim and the bot's model lists and stores the result.
 * NULL on success, else an error code with a sentence in msg. */
const char *chatbot_settings_change(apr_pool_t *p, const chatbot_limits_t *lim,
                                    chatbot_bot_t *bot, const chat_owner_t *owner,
                                    const char *conv, const chatbot_settings_req_t *req,
                                    char *msg, apr_size_t msgcap);

/* The model the turns of conversation c of bot use: its own (c->model) if
 * lim allows choosing one, else the bot's (NULL if bot is NULL). */
const char *chatbot_settings_model(const chatbot_limits_t *lim, const chatbot_bot_t *bot,
                                   const chat_conv_info_t *c);

/* Writes the members of a "settings" reply into an open object: the chosen
 * values, the bot's defaults, what may be changed and the models offered. */
void chatbot_settings_view(chat_jw_t *jw, apr_pool_t *p, const chatbot_limits_t *lim,
                           chatbot_bot_t *bot, const chatbot_settings_t *s);

/* "settings": {"model","temperature","system"}: what a conversation chose
 * (null: the bot's; system says only whether there is one of its own).
 * Writes key and value into an open object. */
void chatbot_settings_brief(chat_jw_t *jw, const chatbot_settings_t *s);

/* "settings": {"allowed":[...],"temperature":{"min","max"},"system_max"}:
 * what the administrator allows (hello frame). Writes key and value. */
void chatbot_settings_policy_view(chat_jw_t *jw, const chatbot_limits_t *lim);

/* Fills req from a REST body (a JSON object). NULL or a sentence. */
const char *chatbot_settings_req_from_json(void *json_object_body,
                                           chatbot_settings_req_t *req);

#endif
