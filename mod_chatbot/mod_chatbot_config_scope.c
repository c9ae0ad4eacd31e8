/* mod_chatbot_config_scope.c - where a directive may be written (global,
 * per bot, per directory) and how its errors name it (file:line, the bad
 * value), for every directive setter.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_lib.h"

#include "mod_chatbot.h"
#include "mod_chatbot_config.h"

const char *chatbot_config_where(cmd_parms *cmd)
{
    if (cmd->directive && cmd->directive->filename) {
        return apr_psprintf(cmd->pool, "%s:%d", cmd->directive->filename,
                            cmd->directive->line_num);
    }
    return "(command line)";
}

const char *chatbot_config_bad_value(cmd_parms *cmd, const char *val, const char *why)
{
    return apr_psprintf(cmd->pool, "%s: invalid value '%s': %s", cmd->cmd->name,
                        val ? val : "", why);
}

/* The innermost section around the directive, as written ("<Location /x>"),
 * or NULL at top level. Conditional sections (<IfModule>, <IfDefine>...)
 * do not change where a directive applies and are skipped. */
const char *chatbot_config_enclosing_section(cmd_parms *cmd, const ap_directive_t **out)
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

int chatbot_config_in_bot_section(cmd_parms *cmd)
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
    const char *sect = chatbot_config_enclosing_section(cmd, &d);
    const char *name = cmd->cmd->name;

    if (name[0] == '<') {
        name = apr_pstrcat(cmd->pool, name, ">", NULL);
    }
    if (!cmd->server->is_virtual && !cmd->path && cmd->limited == -1) {
        if (sect && !bot_ok && chatbot_config_in_bot_section(cmd)) {
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

const char *chatbot_config_check_server(cmd_parms *cmd)
{
    return check_scope(cmd, 1);
}

const char *chatbot_config_check_global(cmd_parms *cmd)
{
    return check_scope(cmd, 0);
}
