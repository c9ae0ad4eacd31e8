/* mod_chatbot_config_cmd.c - the commands bots may run: ChatbotCommand
 * (declaration checks: program, cwd=, options), ChatbotBotCommands, and
 * their resolution per bot after parsing. Running them: mod_chatbot_exec.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "unixd.h"

#include "mod_chatbot_config.h"
#include "mod_chatbot_exec.h"

const char *chatbot_set_bot_commands(cmd_parms *cmd, void *dummy, int argc,
                                     char *const argv[])
{
    const char *err = chatbot_config_check_server(cmd);

    if (err) {
        return err;
    }
    return chatbot_config_add_names(cmd, chatbot_config_bot_of(cmd)->command_names, argc,
                                    argv);
}

const char *chatbot_set_command(cmd_parms *cmd, void *dummy, int argc, char *const argv[])
{
    chatbot_srv_conf *sc = chatbot_srv(cmd->server);
    chatbot_command_t *c, *prev;
    const ap_directive_t *d;
    const char **copy;
    const char *err;
    char why[512];
    struct stat st;
    int i;

    if ((err = ap_check_cmd_context(cmd, GLOBAL_ONLY))) {
        return err;
    }
    for (d = cmd->directive ? cmd->directive->parent : NULL; d; d = d->parent) {
        if (!strcasecmp(d->directive, "<ChatbotBot")) {
            return "ChatbotCommand: declare commands at server level (outside "
                   "<ChatbotBot>) and allow them per bot with ChatbotBotCommands";
        }
    }
    copy = apr_pcalloc(cmd->pool, sizeof(*copy) * (argc + 1));
    for (i = 0; i < argc; i++) {
        copy[i] = apr_pstrdup(cmd->pool, argv[i]);
    }
    c = apr_pcalloc(cmd->pool, sizeof(*c));
    if (chat_cmd_spec_parse(&c->spec, argc, copy, why, sizeof(why)) != CHAT_OK) {
        int named = argc && !chat_parse_name(copy[0]);
        return apr_psprintf(cmd->pool, "ChatbotCommand%s%s: %s", named ? " " : "",
                            named ? copy[0] : "", why);
    }
    if ((prev = apr_hash_get(sc->commands, c->spec.name, APR_HASH_KEY_STRING))) {
        return apr_psprintf(cmd->pool, "ChatbotCommand %s: already declared at %s",
                            c->spec.name, prev->defined_at);
    }
    /* The program: it must exist, be a regular file and be executable. */
    if (stat(c->spec.path, &st) != 0) {
        return apr_psprintf(cmd->pool, "ChatbotCommand %s: program %s: %s", c->spec.name,
                            c->spec.path,
                            errno == ENOENT ? "no such file (it must exist when httpd "
                                              "starts)"
                                            : strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return apr_psprintf(cmd->pool,
                            "ChatbotCommand %s: program %s is not a regular "
                            "file",
                            c->spec.name, c->spec.path);
    }
    if (access(c->spec.path, X_OK) != 0 ||
        !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) {
        return apr_psprintf(cmd->pool, "ChatbotCommand %s: program %s is not executable",
                            c->spec.name, c->spec.path);
    }
    /* The working directory: resolved once, so confinement compares real
     * paths (a symlinked cwd= is followed here, at configuration time). */
    if (c->spec.cwd) {
        char *real = realpath(c->spec.cwd, NULL);
        if (!real) {
            return apr_psprintf(cmd->pool, "ChatbotCommand %s: cwd=%s: %s", c->spec.name,
                                c->spec.cwd,
                                errno == ENOENT ? "no such directory" : strerror(errno));
        }
        c->cwd_real = apr_pstrdup(cmd->pool, real);
        free(real);
        if (stat(c->cwd_real, &st) != 0 || !S_ISDIR(st.st_mode)) {
            return apr_psprintf(cmd->pool, "ChatbotCommand %s: cwd=%s is not a directory",
                                c->spec.name, c->spec.cwd);
        }
        c->spec.cwd = c->cwd_real;
    }
    else {
        c->cwd_real = "/";
    }
    c->defined_at = chatbot_config_where(cmd);
    /* Allowed, since the sysadmin listed it, but worth a word: the program
     * follows links that the path check refused to let users name. */
    for (i = 0; i < (int)c->spec.noptions; i++) {
        if ((c->spec.flags & CHAT_CMD_F_PATHS) &&
            chat_cmd_option_risky(&c->spec.options[i])) {
            ap_log_error(
                APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, NULL,
                APLOGNO(
                    10990) "chatbot: ChatbotCommand %s (%s): options= allows %.*s, which "
                           "may recurse or follow symbolic links out of cwd=%s in some "
                           "programs; path confinement cannot stop that (see "
                           "docs/commands.md)",
                c->spec.name, c->defined_at, (int)c->spec.options[i].len,
                c->spec.options[i].name, c->cwd_real);
        }
    }
    apr_hash_set(sc->commands, c->spec.name, APR_HASH_KEY_STRING, c);
    sc->configured = 1;
    return NULL;
}

/* Warns (once per command) when the program or cwd is not usable by the
 * user httpd's children run as: the configuration is checked as the user
 * that starts httpd (usually root), the commands run as User. Only the mode
 * bits are looked at (supplementary groups are not), so this is a warning. */
static void check_runtime_user(chatbot_command_t *c)
{
    uid_t uid = ap_unixd_config.user_id;
    gid_t gid = ap_unixd_config.group_id;
    struct stat st;

    if (c->user_checked || geteuid() != 0 || uid == 0) {
        return;
    }
    c->user_checked = 1;
    if (stat(c->spec.path, &st) == 0) {
        mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
        if (!(st.st_mode & need)) {
            ap_log_error(
                APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, NULL,
                APLOGNO(10970) "chatbot: ChatbotCommand %s (%s): program %s may not be "
                               "executable by User %s; the command will fail at run time",
                c->spec.name, c->defined_at, c->spec.path,
                ap_unixd_config.user_name ? ap_unixd_config.user_name : "?");
        }
    }
    if (stat(c->cwd_real, &st) == 0) {
        mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
        if (!(st.st_mode & need)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, NULL,
                         APLOGNO(10971) "chatbot: ChatbotCommand %s (%s): cwd=%s may not "
                                        "be accessible "
                                        "to User %s; the command will fail at run time",
                         c->spec.name, c->defined_at, c->cwd_real,
                         ap_unixd_config.user_name ? ap_unixd_config.user_name : "?");
        }
    }
}

const char *chatbot_config_resolve_commands(apr_pool_t *p, chatbot_srv_conf *sc,
                                            chatbot_bot_t *bot)
{
    int i;

    /* Commands are never inherited: a top-level ChatbotBotCommands only
     * applies to the implicit default bot, i.e. when no <ChatbotBot> exists. */
    if (bot != sc->top && sc->top->command_names->nelts) {
        return apr_psprintf(p,
                            "ChatbotBotCommands outside <ChatbotBot> has no effect when "
                            "bots are declared with <ChatbotBot>; allow commands inside "
                            "each <ChatbotBot> that may run them (first of them: '%s')",
                            APR_ARRAY_IDX(sc->top->command_names, 0, const char *));
    }
    for (i = 0; i < bot->command_names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(bot->command_names, i, const char *);
        chatbot_command_t *c = apr_hash_get(sc->commands, n, APR_HASH_KEY_STRING);
        if (!c) {
            return apr_psprintf(p,
                                "bot '%s' (%s): ChatbotBotCommands names '%s', which is "
                                "not declared; declare it with ChatbotCommand %s "
                                "/absolute/path/of/program [options]",
                                bot->name, bot->defined_at ? bot->defined_at : "-", n, n);
        }
        check_runtime_user(c);
    }
    return NULL;
}
