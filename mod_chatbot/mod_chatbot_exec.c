/* mod_chatbot_exec.c - running a declared command for a user: lookup and
 * checks (with the filesystem half of path confinement), the request and
 * its result kept in the conversation, logs. The directives are in
 * mod_chatbot_config_cmd.c, the spawner in mod_chatbot_spawn.c, the
 * WebSocket and REST entry points in mod_chatbot_exec_entry.c.
 *
 * Safe by construction rather than by filtering:
 *  - nothing runs unless the sysadmin declared it (absolute path, checked
 *    at configuration time) and allowed it for the bot;
 *  - the program is started with posix_spawn (execve semantics): user text
 *    only ever becomes separate argv entries, where the declaration allows
 *    arguments, each checked by the core (chat/cmd.h) and, for paths, with
 *    realpath() here;
 *  - the child gets an empty environment (PATH, LANG), /dev/null as stdin,
 *    a pipe for stdout+stderr, its own process group (killed as a whole),
 *    the declared working directory and no other file descriptor;
 *  - the output is capped, the run is bounded by a timeout, and every run
 *    and refusal is logged at notice level.
 * The rules are explained for sysadmins in docs/commands.md.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_exec.h"

#define MAX_WORDS (1 + CHAT_CMD_MAX_USER_ARGS)

/* strerror() for worker threads (apr_strerror is reentrant). */
static const char *errtext(apr_pool_t *p, int err)
{
    char buf[128];

    return apr_pstrdup(p, apr_strerror(APR_FROM_OS_ERROR(err), buf, sizeof(buf)));
}

/* The filesystem half of path confinement: the real path of the longest
 * existing prefix must lie under the command's (real) cwd; what follows it
 * must not exist yet (so it cannot be a symlink) and may not contain "..".
 * Returns NULL or the reason for refusing. */
static const char *path_fs_check(apr_pool_t *p, const chatbot_command_t *c,
                                 const char *arg)
{
    char joined[CHAT_CMD_PATH_MAX], err[256];
    char *prefix, *real;
    size_t k;

    if (chat_cmd_path_lexical(c->cwd_real, arg, joined, sizeof(joined), err,
                              sizeof(err)) != CHAT_OK) {
        return apr_pstrdup(p, err);
    }
    real = realpath(joined, NULL);
    if (real) {
        int in = chat_cmd_path_within(c->cwd_real, real);
        free(real);
        return in ? NULL
                  : "the path leads outside the command's directory (through a "
                    "symbolic link)";
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        return apr_psprintf(p, "the path cannot be checked (%s)", errtext(p, errno));
    }
    prefix = apr_pstrdup(p, joined);
    k = strlen(prefix);
    for (;;) {
        const char *rest, *comp_end;
        struct stat st;
        char *first;

        while (k > 1 && prefix[k - 1] == '/') {
            k--;
        }
        while (k > 0 && prefix[k - 1] != '/') {
            k--;
        }
        if (k == 0) {
            return "the path cannot be checked";
        }
        rest = joined + k;
        prefix[k > 1 ? k - 1 : 1] = '\0';
        real = realpath(prefix, NULL);
        if (!real) {
            if (errno != ENOENT && errno != ENOTDIR) {
                return apr_psprintf(p, "the path cannot be checked (%s)",
                                    errtext(p, errno));
            }
            k = strlen(prefix);
            continue;
        }
        if (!chat_cmd_path_within(c->cwd_real, real)) {
            free(real);
            return "the path leads outside the command's directory (through a symbolic "
                   "link)";
        }
        if (chat_cmd_path_has_dotdot(rest)) {
            free(real);
            return "'..' after a directory that does not exist";
        }
        comp_end = strchr(rest, '/');
        first = apr_pstrcat(
            p, real, strcmp(real, "/") ? "/" : "",
            comp_end ? apr_pstrndup(p, rest, (apr_size_t)(comp_end - rest)) : rest, NULL);
        free(real);
        if (lstat(first, &st) == 0 || errno != ENOENT) {
            /* it exists but does not resolve: a dangling symlink (whose
             * target could be created outside), a loop, a file used as a
             * directory... */
            return "the path goes through a symbolic link that leads nowhere, or "
                   "through something that is not a directory";
        }
        return NULL;
    }
}

static int stop_requested(void *baton)
{
    chatbot_exec_t *x = baton;

    return chat_store_gen_stop_requested(chatbot_store(), x->conv, x->token);
}

static const char *log_args(apr_pool_t *p, const char *const *args, size_t n)
{
    const char *s = "";
    size_t i;

    for (i = 0; i < n; i++) {
        s = apr_pstrcat(p, s, i ? " " : "", "\"", ap_escape_logitem(p, args[i]), "\"",
                        NULL);
    }
    return s;
}
void chatbot_exec_refuse(chatbot_exec_t *x, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
    va_end(ap);
    x->code = code;
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, x->r,
                  APLOGNO(10972) "chatbot: command refused user=%s bot=%s "
                                 "conversation=%s command=\"%s\" "
                                 "args=[%s] code=%s reason=\"%s\"",
                  x->id->label, x->bot->name, x->conv ? x->conv : "-",
                  ap_escape_logitem(x->p, x->name ? x->name : ""),
                  log_args(x->p, x->args, x->nargs), code,
                  ap_escape_logitem(x->p, x->msg));
}

/* Which declared command may this bot run under that name? */
static chatbot_command_t *lookup(chatbot_exec_t *x)
{
    chatbot_srv_conf *sc = chatbot_srv(x->r->server);
    const char *list = NULL;
    int i;

    for (i = 0; i < x->bot->command_names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(x->bot->command_names, i, const char *);
        if (!strcmp(n, x->name)) {
            return apr_hash_get(sc->commands, n, APR_HASH_KEY_STRING);
        }
        list = list ? apr_pstrcat(x->p, list, ", ", n, NULL) : n;
    }
    if (!list) {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED,
                            "bot '%s' may not run any command", x->bot->name);
    }
    else if (chat_parse_name(x->name)) {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED,
                            "that is not a command name; bot '%s' may run: "
                            "%s",
                            x->bot->name, list);
    }
    else {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED,
                            "'%s' is not a command bot '%s' may run "
                            "(allowed: %s)",
                            x->name, x->bot->name, list);
    }
    return NULL;
}

/* Stores text as a message, cut to what one stored message may hold. */
static chat_status_t store_msg(chatbot_exec_t *x, chat_role_t role, uint32_t flags,
                               const char *text, size_t len, uint32_t *index)
{
    chatbot_srv_conf *sc = chatbot_srv(x->r->server);
    size_t max = sc->layout.max_message_bytes;
    static const char cut[] = "\n[cut to fit the history]";
    chat_status_t rc;

    if (len > max) {
        char *t = apr_palloc(x->p, max);
        size_t keep = max > sizeof(cut) ? max - (sizeof(cut) - 1) : 0;
        while (keep > 0 && ((unsigned char)text[keep] & 0xc0) == 0x80) {
            keep--; /* not inside a UTF-8 sequence */
        }
        memcpy(t, text, keep);
        memcpy(t + keep, cut, keep ? sizeof(cut) - 1 : 0);
        text = t;
        len = keep ? keep + sizeof(cut) - 1 : 0;
    }
    rc = chat_store_msg_append(chatbot_store(), &x->id->owner, x->conv, role, flags, text,
                               len, chatbot_now_ms(), index);
    return rc;
}

/* Under the lock, right after the request was stored at index: a
 * conversation that starts with a command gets its title from the command
 * line (as the UI titles one from a first chat message), unless it has one.
 * The caller bumps the user, which pushes the new title to every tab. */
static void auto_title(chatbot_exec_t *x, uint32_t index, const char *text, size_t len)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    char title[CHAT_TITLE_MAX + 1];

    if (index != 0 || chat_store_conv_get(st, &x->id->owner, x->conv, &ci) != CHAT_OK ||
        ci.title[0] || chat_cmd_title(title, sizeof(title), text, len) == 0) {
        return;
    }
    chat_store_conv_rename(st, &x->id->owner, x->conv, title, chatbot_now_ms());
}

/* A command refused for what it is (command_denied: not declared, not
 * allowed for the bot, an argument refused) is kept in the conversation
 * like a command that ran: the request as a user message and the refusal
 * as an assistant message "command_denied: <reason>", both flagged
 * command + refused (the refusal also error), so history, resume, export
 * and the UI still show them later; neither is sent to the model. Not
 * stored when the conversation is busy (an answer or a command is being
 * written into it): the refusal is still answered. */
void chatbot_exec_store_refusal(chatbot_exec_t *x)
{
    chat_store_t *st = chatbot_store();
    chat_buf_t text;
    uint32_t index;
    chat_status_t rc;

    if (!st || !x->conv || !x->code || strcmp(x->code, CHAT_ERR_COMMAND_DENIED)) {
        return;
    }
    chat_buf_init(&text);
    if (x->split || !x->line) {
        rc = chat_cmd_format_request(&text, x->name, x->args, x->nargs);
    }
    else {
        chat_buf_reset(&text, 0);
        rc = chat_buf_append(&text, x->line, x->line_len);
    }
    if (rc != CHAT_OK) {
        chat_buf_free(&text);
        return;
    }
    x->token = chatbot_random64();
    rc = chat_store_gen_begin(st, &x->id->owner, x->conv, x->token, CHAT_CONV_GENERATING,
                              chatbot_now_ms());
    if (rc == CHAT_OK) {
        rc = store_msg(x, CHAT_ROLE_USER, CHAT_MSG_COMMAND | CHAT_MSG_REFUSED,
                       text.data ? text.data : "", text.len, &index);
        if (rc == CHAT_OK) {
            const char *t = apr_pstrcat(x->p, x->code, ": ", x->msg, NULL);
            auto_title(x, index, text.data ? text.data : "", text.len);
            rc = store_msg(x, CHAT_ROLE_ASSISTANT,
                           CHAT_MSG_COMMAND | CHAT_MSG_ERROR | CHAT_MSG_REFUSED, t,
                           strlen(t), &x->result_index);
            x->has_index = rc == CHAT_OK;
        }
        chat_store_gen_end(st, x->conv, x->token, chatbot_now_ms());
        chat_store_user_bump(st, &x->id->owner);
    }
    if (rc != CHAT_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, x->r,
                      "chatbot: refused command not stored in conversation %s (%s)",
                      x->conv, chat_status_str(rc));
    }
    chat_buf_free(&text);
}

void chatbot_exec_run(chatbot_exec_t *x)
{
    chat_store_t *st = chatbot_store();
    const char *argv[1 + CHAT_CMD_MAX_FIXED + CHAT_CMD_MAX_USER_ARGS + 1];
    chat_buf_t text;
    char why[256];
    chat_status_t rc;
    size_t i;
    int err;

    if (!st) {
        chatbot_exec_refuse(x, CHAT_ERR_INTERNAL, "the chat store is not available");
        return;
    }
    if (!(x->cmd = lookup(x))) {
        return;
    }
    if (chat_cmd_check_args(&x->cmd->spec, x->args, x->nargs, why, sizeof(why)) !=
        CHAT_OK) {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED, "%s", why);
        return;
    }
    if (x->cmd->spec.flags & CHAT_CMD_F_PATHS) {
        for (i = 0; i < x->nargs; i++) {
            const char *bad;
            /* Options (dashes=on) are checked too: the core made sure they
             * carry no '/' or '..', but after a "--" the program takes
             * "-name" as a file in cwd, which may be a symbolic link that
             * leads out. Checking an option as a name in cwd costs nothing
             * ("-l" does not exist there, so it passes). */
            if ((bad = path_fs_check(x->p, x->cmd, x->args[i]))) {
                chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED,
                                    "argument %" APR_SIZE_T_FMT " refused: %s",
                                    (apr_size_t)(i + 1), bad);
                return;
            }
        }
    }
    if (chat_cmd_build_argv(&x->cmd->spec, x->args, x->nargs, argv,
                            sizeof(argv) / sizeof(argv[0])) < 0) {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED, "too many arguments");
        return;
    }

    /* Claim the conversation like an answer does, so nothing streams into
     * it meanwhile and a Stop from another tab reaches this run. */
    chat_buf_init(&text);
    x->token = chatbot_random64();
    rc = chat_store_gen_begin(st, &x->id->owner, x->conv, x->token, CHAT_CONV_GENERATING,
                              chatbot_now_ms());
    if (rc == CHAT_OK) {
        uint32_t index;
        if (chat_cmd_format_request(&text, x->name, x->args, x->nargs) == CHAT_OK) {
            rc = store_msg(x, CHAT_ROLE_USER, CHAT_MSG_COMMAND, text.data, text.len,
                           &index);
            if (rc == CHAT_OK) {
                auto_title(x, index, text.data, text.len);
            }
        }
        else {
            rc = CHAT_ENOMEM;
        }
        if (rc != CHAT_OK) {
            chat_store_gen_end(st, x->conv, x->token, chatbot_now_ms());
        }
        else {
            chat_store_user_bump(st, &x->id->owner);
        }
    }
    if (rc != CHAT_OK) {
        chat_buf_free(&text);
        if (rc == CHAT_EBUSY) {
            chatbot_exec_refuse(x, CHAT_ERR_BUSY,
                                "this conversation is busy generating an answer; "
                                "wait for it or stop it first");
        }
        else if (rc == CHAT_ENOTFOUND) {
            chatbot_exec_refuse(x, CHAT_ERR_NOT_FOUND, "no such conversation");
        }
        else {
            const char *code = chatbot_store_err(rc);
            chatbot_exec_refuse(x, code, "cannot store the command: %s",
                                chatbot_store_err_text(code));
        }
        return;
    }

    chat_cmd_output_init(&x->out, x->cmd->spec.max_output);
    err = chatbot_spawn_run(x->cmd->spec.path, x->cmd->cwd_real, x->cmd->spec.timeout_ms,
                            argv, &x->out, stop_requested, x, &x->res);
    if (err) {
        x->code = CHAT_ERR_COMMAND_FAILED;
        apr_snprintf(x->msg, sizeof(x->msg), "command '%s' could not be started: %s",
                     x->name, errtext(x->p, err));
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, err, x->r,
                      APLOGNO(10973) "chatbot: command failed user=%s bot=%s "
                                     "conversation=%s command=%s "
                                     "program=%s cwd=%s args=[%s]: cannot start it",
                      x->id->label, x->bot->name, x->conv, x->name, x->cmd->spec.path,
                      x->cmd->cwd_real, log_args(x->p, x->args, x->nargs));
        chat_buf_reset(&text, 0);
        chat_buf_puts(&text, x->msg);
    }
    else {
        chat_cmd_result_t cr;
        chat_cmd_output_finish(&x->out);
        memset(&cr, 0, sizeof(cr));
        cr.exit_code = x->res.exit_code;
        cr.signal = x->res.signal;
        cr.timed_out = x->res.timed_out;
        cr.truncated = x->res.truncated;
        cr.stopped = x->res.stopped;
        cr.timeout_ms = x->cmd->spec.timeout_ms;
        cr.duration_ms = x->res.duration_ms;
        chat_cmd_format_result(&text, x->out.buf.data ? x->out.buf.data : "",
                               x->out.buf.len, &cr);
        chat_metrics_gauge_add(st, CHAT_G_COMMANDS, 1);
        ap_log_rerror(
            APLOG_MARK, APLOG_NOTICE, 0, x->r,
            APLOGNO(10974) "chatbot: command user=%s bot=%s conversation=%s command=%s "
                           "args=[%s] exit=%d signal=%d duration_ms=%" APR_INT64_T_FMT
                           " output_bytes=%" APR_UINT64_T_FMT " truncated=%d timed_out=%d"
                           "%s%s%s",
            x->id->label, x->bot->name, x->conv, x->name,
            log_args(x->p, x->args, x->nargs), x->res.exit_code, x->res.signal,
            x->res.duration_ms, (apr_uint64_t)x->out.seen, x->res.truncated,
            x->res.timed_out, x->res.stopped ? " stopped=1" : "",
            x->res.reaped ? "" : " unreaped=1",
            x->res.escaped ? apr_psprintf(x->p, " escaped_killed=%d", x->res.escaped)
                           : "");
    }
    /* The result (or the failure) goes into the conversation. */
    rc = store_msg(x, CHAT_ROLE_ASSISTANT,
                   CHAT_MSG_COMMAND | (err ? CHAT_MSG_ERROR : CHAT_MSG_COMPLETE),
                   text.data ? text.data : "", text.len, &x->result_index);
    x->has_index = rc == CHAT_OK;
    chat_store_gen_end(st, x->conv, x->token, chatbot_now_ms());
    chat_store_user_bump(st, &x->id->owner);
    chat_buf_free(&text);
}

void chatbot_exec_init(chatbot_exec_t *x, request_rec *r, const chatbot_ident_t *id,
                       chatbot_bot_t *bot, const char *conv)
{
    memset(x, 0, sizeof(*x));
    x->r = r;
    x->id = id;
    x->bot = bot;
    x->conv = conv;
    x->name = "";
    apr_pool_create(&x->p, r->pool);
    chat_cmd_output_init(&x->out, 0);
}

void chatbot_exec_done(chatbot_exec_t *x)
{
    chat_cmd_output_free(&x->out);
    apr_pool_destroy(x->p);
}

int chatbot_exec_split(chatbot_exec_t *x, const char *line, size_t len)
{
    const char **words = apr_palloc(x->p, sizeof(*words) * MAX_WORDS);
    char *buf = apr_palloc(x->p, len + 1);
    size_t n = 0;
    char why[256];
    chat_status_t rc;

    x->line = line;
    x->line_len = len;
    rc = chat_cmd_split(line, len, buf, len + 1, words, MAX_WORDS, &n, why, sizeof(why));
    if (rc != CHAT_OK) {
        chatbot_exec_refuse(x, CHAT_ERR_COMMAND_DENIED, "%s", why);
        return -1;
    }
    x->name = words[0];
    x->args = words + 1;
    x->nargs = n - 1;
    x->split = 1;
    return 0;
}
