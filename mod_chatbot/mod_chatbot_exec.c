/* mod_chatbot_exec.c - commands a bot may run (ChatbotCommand).
 *
 * Not implemented yet: no command can be declared, so nothing can ever run.
 * Any command request is refused with "command_denied".
 */
#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"

#include "mod_chatbot.h"

const char *chatbot_exec_set_command(cmd_parms *cmd, void *dummy, int argc,
                                     char *const argv[])
{
    return "ChatbotCommand: command execution is not available in this build";
}

const char *chatbot_exec_resolve(apr_pool_t *p, chatbot_srv_conf *sc, chatbot_bot_t *bot)
{
    if (bot->command_names->nelts) {
        return apr_psprintf(p, "bot '%s': ChatbotBotCommands names commands, but no "
                            "ChatbotCommand is declared", bot->name);
    }
    return NULL;
}

int chatbot_exec_ws(request_rec *r, const chatbot_ident_t *id, chatbot_bot_t *bot,
                    const char *conv_id, const char *command, const char *const *args,
                    apr_size_t nargs, chat_buf_t *frame)
{
    chat_frame_error(frame, CHAT_ERR_COMMAND_DENIED,
                     "no commands are declared for this bot (see ChatbotCommand)",
                     conv_id, NULL, -1);
    return 0;
}

int chatbot_exec_api(request_rec *r, const chatbot_ident_t *id, void *body,
                     const chatbot_limits_t *lim, chat_buf_t *out, int *status)
{
    chat_jw_t w;

    chat_jw_init(&w, out);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "error", CHAT_ERR_COMMAND_DENIED);
    chat_jw_kstr(&w, "message", "no commands are declared (see ChatbotCommand)");
    chat_jw_obj_end(&w);
    *status = 403;
    return 0;
}
