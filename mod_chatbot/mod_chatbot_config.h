/* mod_chatbot_config.h - what the files of the configuration share: scope
 * checks and error helpers, lookups while parsing, and the setters the
 * command table (chatbot_cmds[], mod_chatbot_config.c) points to. */
#ifndef MOD_CHATBOT_CONFIG_H
#define MOD_CHATBOT_CONFIG_H

#include "mod_chatbot.h"

/* ---- scope and messages (mod_chatbot_config_scope.c) ------------------------ */

/* "file:line" of the directive, for messages naming where a thing was
 * declared. */
const char *chatbot_config_where(cmd_parms *cmd);
/* "<Directive>: invalid value '<val>': <why>" */
const char *chatbot_config_bad_value(cmd_parms *cmd, const char *val, const char *why);
/* The innermost section around the directive, as written ("<Location /x>"),
 * or NULL at top level (<If*> sections skipped); *out: its node. */
const char *chatbot_config_enclosing_section(cmd_parms *cmd, const ap_directive_t **out);
int chatbot_config_in_bot_section(cmd_parms *cmd);
/* NULL or why the directive may not be here: main server config (or a
 * <ChatbotBot>) only, resp. main server config only. */
const char *chatbot_config_check_server(cmd_parms *cmd);
const char *chatbot_config_check_global(cmd_parms *cmd);

/* ---- backends and bots (mod_chatbot_config_bots.c) --------------------------- */

chatbot_bot_t *chatbot_config_bot_new(apr_pool_t *p, const char *name);
/* The bot a directive applies to: the enclosing <ChatbotBot>, or the
 * implicit default bot for top-level directives. */
chatbot_bot_t *chatbot_config_bot_of(cmd_parms *cmd);
chatbot_backend_t *chatbot_config_backend_find(chatbot_srv_conf *sc, const char *name);
/* Appends argv's names (each checked by chat_parse_name) to names. NULL or
 * the error. */
const char *chatbot_config_add_names(cmd_parms *cmd, apr_array_header_t *names, int argc,
                                     char *const argv[]);

const char *chatbot_set_backend(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[]);
const char *chatbot_set_backend_url(cmd_parms *cmd, void *dummy, int argc,
                                    char *const argv[]);
const char *chatbot_set_model(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_system_prompt(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_description(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_bot_backend(cmd_parms *cmd, void *dummy, int argc,
                                    char *const argv[]);
const char *chatbot_set_option(cmd_parms *cmd, void *dummy, const char *key,
                               const char *val);
const char *chatbot_set_context(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[]);
const char *chatbot_bot_section(cmd_parms *cmd, void *mconfig, const char *arg);
const char *chatbot_set_default_bot(cmd_parms *cmd, void *dummy, const char *arg);

/* ---- server-wide settings (mod_chatbot_config_server.c) ---------------------- */

const char *chatbot_set_store_size(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_quota(cmd_parms *cmd, void *dummy, int argc, char *const argv[]);
const char *chatbot_set_history_file(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_store(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_store_time(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_breaker(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[]);
const char *chatbot_set_health_interval(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_max_conns_ip(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_ws_bound(cmd_parms *cmd, void *dummy, const char *arg);
const char *chatbot_set_demo_notice(cmd_parms *cmd, void *dummy, const char *arg);

/* ---- commands (mod_chatbot_config_cmd.c) -------------------------------------- */

/* ChatbotCommand name /abs/path [fixed args] [options]: declares a command. */
const char *chatbot_set_command(cmd_parms *cmd, void *dummy, int argc,
                                char *const argv[]);
/* ChatbotBotCommands name...: the declared commands a bot may run. */
const char *chatbot_set_bot_commands(cmd_parms *cmd, void *dummy, int argc,
                                     char *const argv[]);
/* After parsing: every command bot names is declared (and usable by User,
 * else a warning). NULL or the error. */
const char *chatbot_config_resolve_commands(apr_pool_t *p, chatbot_srv_conf *sc,
                                            chatbot_bot_t *bot);

#endif
