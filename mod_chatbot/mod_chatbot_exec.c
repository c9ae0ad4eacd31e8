/* mod_chatbot_exec.c - commands a bot may run (ChatbotCommand,
 * ChatbotBotCommands): declaration checks, the filesystem half of path
 * confinement, running a program without a shell, and the chat/REST entry
 * points that store the request and its result in the conversation.
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
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "unixd.h"

#include "mod_chatbot.h"
#include "chat/cmd.h"

#define READ_CHUNK 16384
#define POLL_SLICE_MS 100  /* how often a run checks for a stop request */
#define REAP_WAIT_MS 5000  /* longest wait for a killed child to be reaped */
#define MAX_WORDS (1 + CHAT_CMD_MAX_USER_ARGS)
#define HOLDER_ROUNDS 5    /* scans for processes still holding the pipe */
#define HOLDER_WAIT_MS 50  /* how long the group kill gets to close the pipe */

/* A declared command. */
struct chatbot_command {
    chat_cmd_spec_t spec;    /* spec.cwd is the realpath of cwd= */
    const char *cwd_real;    /* the child's working directory ("/" if none) */
    const char *defined_at;
    int user_checked;        /* runtime-user warnings given */
};

/* ---- configuration ---------------------------------------------------------- */

static const char *where(cmd_parms *cmd)
{
    if (cmd->directive && cmd->directive->filename) {
        return apr_psprintf(cmd->pool, "%s:%d", cmd->directive->filename,
                            cmd->directive->line_num);
    }
    return "(command line)";
}

const char *chatbot_exec_set_command(cmd_parms *cmd, void *dummy, int argc,
                                     char *const argv[])
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
        return apr_psprintf(cmd->pool, "ChatbotCommand %s: program %s is not a regular "
                            "file", c->spec.name, c->spec.path);
    }
    if (access(c->spec.path, X_OK) != 0 || !(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) {
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
    c->defined_at = where(cmd);
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
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, NULL, APLOGNO(10970)
                         "chatbot: ChatbotCommand %s (%s): program %s may not be "
                         "executable by User %s; the command will fail at run time",
                         c->spec.name, c->defined_at, c->spec.path,
                         ap_unixd_config.user_name ? ap_unixd_config.user_name : "?");
        }
    }
    if (stat(c->cwd_real, &st) == 0) {
        mode_t need = st.st_uid == uid ? S_IXUSR : st.st_gid == gid ? S_IXGRP : S_IXOTH;
        if (!(st.st_mode & need)) {
            ap_log_error(APLOG_MARK, APLOG_STARTUP | APLOG_WARNING, 0, NULL, APLOGNO(10971)
                         "chatbot: ChatbotCommand %s (%s): cwd=%s may not be accessible "
                         "to User %s; the command will fail at run time",
                         c->spec.name, c->defined_at, c->cwd_real,
                         ap_unixd_config.user_name ? ap_unixd_config.user_name : "?");
        }
    }
}

const char *chatbot_exec_resolve(apr_pool_t *p, chatbot_srv_conf *sc, chatbot_bot_t *bot)
{
    int i;

    /* Commands are never inherited: a top-level ChatbotBotCommands only
     * applies to the implicit default bot, i.e. when no <ChatbotBot> exists. */
    if (bot != sc->top && sc->top->command_names->nelts) {
        return apr_psprintf(p, "ChatbotBotCommands outside <ChatbotBot> has no effect when "
                            "bots are declared with <ChatbotBot>; allow commands inside "
                            "each <ChatbotBot> that may run them (first of them: '%s')",
                            APR_ARRAY_IDX(sc->top->command_names, 0, const char *));
    }
    for (i = 0; i < bot->command_names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(bot->command_names, i, const char *);
        chatbot_command_t *c = apr_hash_get(sc->commands, n, APR_HASH_KEY_STRING);
        if (!c) {
            return apr_psprintf(p, "bot '%s' (%s): ChatbotBotCommands names '%s', which is "
                                "not declared; declare it with ChatbotCommand %s "
                                "/absolute/path/of/program [options]",
                                bot->name, bot->defined_at ? bot->defined_at : "-", n, n);
        }
        check_runtime_user(c);
    }
    return NULL;
}

/* ---- running ------------------------------------------------------------------ */

typedef struct {
    int exit_code;        /* -1 unless it exited */
    int signal;           /* the signal that ended it, 0 if none */
    int timed_out;
    int truncated;
    int stopped;
    int reaped;
    int escaped;          /* processes outside the group killed for holding the pipe */
    apr_int64_t duration_ms;
} run_result_t;

typedef int stop_fn(void *baton);

static apr_int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (apr_int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define DRAIN_MORE 0 /* nothing more to read now */
#define DRAIN_EOF 1  /* every writer closed the pipe (or a read error) */
#define DRAIN_CAP 2  /* output beyond maxoutput: stop the command */

/* Reads what is in the pipe now, without waiting. */
static int drain(int fd, chat_cmd_output_t *out, char *buf)
{
    for (;;) {
        ssize_t k = read(fd, buf, READ_CHUNK);
        if (k > 0) {
            if (chat_cmd_output_add(out, buf, (size_t)k) != 0) {
                return DRAIN_CAP;
            }
            continue;
        }
        if (k < 0 && errno == EINTR) {
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return DRAIN_MORE;
        }
        return DRAIN_EOF;
    }
}

/* Waits for pid to end (it was just sent SIGKILL, or exited). */
static int reap(pid_t pid, int *status)
{
    apr_int64_t until = mono_ms() + REAP_WAIT_MS;

    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);
        if (w == pid) {
            return 1;
        }
        if (w < 0 && errno != EINTR) {
            return 0;
        }
        if (mono_ms() >= until) {
            return 0;
        }
        if (w == 0) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* pidfd_open(2) and pidfd_send_signal(2) (Linux 5.3+) through syscall():
 * the wrappers are recent in glibc. -1 with ENOSYS elsewhere. */
static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

static int pidfd_kill(int pidfd)
{
#ifdef SYS_pidfd_send_signal
    return (int)syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
#else
    (void)pidfd;
    errno = ENOSYS;
    return -1;
#endif
}

/* Does process pid have a descriptor open on the pipe named link
 * ("pipe:[inode]")? Only processes of our own user can be looked at, which
 * is every process the command can have started. */
static int holds_pipe(pid_t pid, const char *link)
{
    char dir[64], got[64];
    struct dirent *e;
    DIR *d;
    int found = 0;

    snprintf(dir, sizeof(dir), "/proc/%ld/fd", (long)pid);
    if (!(d = opendir(dir))) {
        return 0;
    }
    while (!found && (e = readdir(d)) != NULL) {
        ssize_t n;
        if (e->d_name[0] < '0' || e->d_name[0] > '9') {
            continue;
        }
        n = readlinkat(dirfd(d), e->d_name, got, sizeof(got) - 1);
        if (n > 0) {
            got[n] = '\0';
            found = !strcmp(got, link);
        }
    }
    closedir(d);
    return found;
}

/* Is the write end of the pipe closed everywhere? Waits up to ms for it,
 * discarding what is still written (the output is complete by now). */
static int pipe_hung_up(int rfd, char *buf, int ms)
{
    apr_int64_t until = mono_ms() + ms;

    for (;;) {
        struct pollfd p = {rfd, POLLIN, 0};
        apr_int64_t left = until - mono_ms();
        if (poll(&p, 1, left > 0 ? (int)left : 0) < 0 && errno != EINTR) {
            return 1;
        }
        if (p.revents & (POLLHUP | POLLERR | POLLNVAL)) {
            return 1;
        }
        if (p.revents & POLLIN) {
            while (read(rfd, buf, READ_CHUNK) > 0) {
            }
        }
        if (left <= 0) {
            return 0;
        }
    }
}

/* The command's process group is gone, but something still holds the
 * pipe: a process that left the group (setsid, a daemonising double
 * fork) while keeping stdout or stderr. Finds every such process through
 * /proc and kills it (a pidfd makes sure the process checked is the one
 * signalled). Returns how many were killed. A process that left the group
 * *and* closed the pipe cannot be found this way (docs/commands.md). */
static int kill_pipe_holders(int rfd, char *buf)
{
    char link[64];
    struct stat st;
    pid_t self = getpid();
    int round, killed = 0;

    if (fstat(rfd, &st) != 0) {
        return 0;
    }
    snprintf(link, sizeof(link), "pipe:[%lu]", (unsigned long)st.st_ino);
    for (round = 0; round < HOLDER_ROUNDS; round++) {
        struct dirent *e;
        DIR *d;

        if (pipe_hung_up(rfd, buf, HOLDER_WAIT_MS)) {
            break;
        }
        if (!(d = opendir("/proc"))) {
            break;
        }
        while ((e = readdir(d)) != NULL) {
            char *end;
            long pid = strtol(e->d_name, &end, 10);
            int pidfd;
            if (*end || pid <= 1 || pid == (long)self || !holds_pipe((pid_t)pid, link)) {
                continue;
            }
            pidfd = pidfd_open_((pid_t)pid);
            if (pidfd >= 0) {
                /* the pidfd pins this process: check it, then signal it */
                if (holds_pipe((pid_t)pid, link) && pidfd_kill(pidfd) == 0) {
                    killed++;
                }
                close(pidfd);
            }
            else if (errno == ENOSYS && kill((pid_t)pid, SIGKILL) == 0) {
                killed++;
            }
        }
        closedir(d);
    }
    return killed;
}

/* Runs argv without a shell. Returns 0 when the program ran (res filled),
 * else an errno value (it could not be started). */
static int run_program(const chatbot_command_t *c, const char *const *argv,
                       chat_cmd_output_t *out, stop_fn *should_stop, void *baton,
                       run_result_t *res)
{
    static char *const envp[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    int pfd[2], rc, status = 0, eof = 0, flags, pidfd;
    char *buf;
    pid_t pid;
    apr_int64_t start, deadline;

    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    if (pipe2(pfd, O_CLOEXEC) != 0) {
        return errno;
    }
    /* Child: stdin /dev/null, stdout+stderr the pipe, cwd, nothing else
     * open (httpd's listeners and client sockets must not leak into it),
     * default signal dispositions, empty mask, its own process group. */
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigfillset(&all);
    rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    if (!rc) rc = posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    if (!rc) rc = posix_spawn_file_actions_addchdir_np(&fa, c->cwd_real);
    if (!rc) rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!rc) rc = posix_spawnattr_setsigmask(&at, &none);
    if (!rc) rc = posix_spawnattr_setsigdefault(&at, &all);
    if (!rc) rc = posix_spawnattr_setpgroup(&at, 0);
    if (!rc) rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                    POSIX_SPAWN_SETSIGDEF);
    start = mono_ms();
    if (!rc) {
        rc = posix_spawn(&pid, c->spec.path, &fa, &at, (char *const *)argv, envp);
    }
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pfd[1]);
    if (rc) {
        close(pfd[0]);
        return rc;
    }
    flags = fcntl(pfd[0], F_GETFL);
    fcntl(pfd[0], F_SETFL, flags | O_NONBLOCK);
    buf = malloc(READ_CHUNK);
    deadline = start + c->spec.timeout_ms;
    /* Readable when the program ends: its exit is seen at once, even when
     * the output ended earlier or a background process keeps the pipe
     * open (without it, -1: the exit is polled for). */
    pidfd = pidfd_open_(pid);
    if (pidfd >= 0) {
        fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    }

    /* Read until the program ends (its output may end earlier: programs
     * close stdout/stderr before exiting; and background children may keep
     * the pipe open after), the cap, the deadline, or a stop request. */
    while (buf) {
        struct pollfd p[2];
        siginfo_t si;
        apr_int64_t now = mono_ms(), wait;
        int n;

        if (now >= deadline) {
            res->timed_out = 1;
            break;
        }
        wait = deadline - now < POLL_SLICE_MS ? deadline - now : POLL_SLICE_MS;
        if (eof && pidfd < 0 && wait > 2) {
            wait = 2; /* output ended: the exit should follow at once */
        }
        p[0].fd = eof ? -1 : pfd[0]; /* poll ignores a negative fd */
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = pidfd;
        p[1].events = POLLIN;
        p[1].revents = 0;
        n = poll(p, 2, (int)wait);
        if (n < 0 && errno != EINTR) {
            break;
        }
        if (n > 0 && p[0].revents) {
            int d = drain(pfd[0], out, buf);
            if (d == DRAIN_CAP) {
                break;
            }
            eof = d == DRAIN_EOF;
        }
        if (should_stop && should_stop(baton)) {
            res->stopped = 1;
            break;
        }
        /* Has the program itself ended? WNOWAIT keeps it a zombie, so its
         * pid (= the group id) cannot be reused before the kill below. */
        memset(&si, 0, sizeof(si));
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid == pid) {
            if (!eof) {
                drain(pfd[0], out, buf);
            }
            break;
        }
    }
    res->truncated = out->truncated;
    /* The whole group goes, whatever happened: grandchildren included. */
    kill(-pid, SIGKILL);
    res->reaped = reap(pid, &status);
    res->duration_ms = mono_ms() - start;
    if (pidfd >= 0) {
        close(pidfd);
    }
    /* Anything that left the group but still holds the pipe goes too. */
    if (!eof && buf) {
        res->escaped = kill_pipe_holders(pfd[0], buf);
    }
    close(pfd[0]);
    free(buf);
    if (res->reaped) {
        if (WIFEXITED(status)) {
            res->exit_code = WEXITSTATUS(status);
        }
        else if (WIFSIGNALED(status)) {
            res->signal = WTERMSIG(status);
        }
    }
    return 0;
}

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
        return in ? NULL : "the path leads outside the command's directory (through a "
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
                return apr_psprintf(p, "the path cannot be checked (%s)", errtext(p, errno));
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
        first = apr_pstrcat(p, real, strcmp(real, "/") ? "/" : "",
                            comp_end ? apr_pstrndup(p, rest, (apr_size_t)(comp_end - rest))
                                     : rest,
                            NULL);
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

/* ---- the shared run: lookup, checks, history, spawn, log -------------------- */

typedef struct {
    request_rec *r;
    apr_pool_t *p;               /* per run, destroyed at the end */
    const chatbot_ident_t *id;
    chatbot_bot_t *bot;
    const char *conv;
    const char *name;
    const char *const *args;
    size_t nargs;
    const char *line;            /* the chat line "!name args" as sent, if any */
    size_t line_len;
    int split;                   /* name/args come from the request (not refused
                                  * while splitting the line) */
    chatbot_command_t *cmd;
    /* out */
    const char *code;            /* CHAT_ERR_* or NULL */
    char msg[512];
    chat_cmd_output_t out;
    run_result_t res;
    uint32_t result_index;
    int has_index;
    apr_uint64_t token;
} exec_t;

static int stop_requested(void *baton)
{
    exec_t *x = baton;

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

static void refuse(exec_t *x, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void refuse(exec_t *x, const char *code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    apr_vsnprintf(x->msg, sizeof(x->msg), fmt, ap);
    va_end(ap);
    x->code = code;
    ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, x->r, APLOGNO(10972)
                  "chatbot: command refused user=%s bot=%s conversation=%s command=\"%s\" "
                  "args=[%s] code=%s reason=\"%s\"",
                  x->id->label, x->bot->name, x->conv ? x->conv : "-",
                  ap_escape_logitem(x->p, x->name ? x->name : ""),
                  log_args(x->p, x->args, x->nargs), code,
                  ap_escape_logitem(x->p, x->msg));
}

/* Which declared command may this bot run under that name? */
static chatbot_command_t *lookup(exec_t *x)
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
        refuse(x, CHAT_ERR_COMMAND_DENIED, "bot '%s' may not run any command",
               x->bot->name);
    }
    else if (chat_parse_name(x->name)) {
        refuse(x, CHAT_ERR_COMMAND_DENIED, "that is not a command name; bot '%s' may run: "
               "%s", x->bot->name, list);
    }
    else {
        refuse(x, CHAT_ERR_COMMAND_DENIED, "'%s' is not a command bot '%s' may run "
               "(allowed: %s)", x->name, x->bot->name, list);
    }
    return NULL;
}

/* Stores text as a message, cut to what one stored message may hold. */
static chat_status_t store_msg(exec_t *x, chat_role_t role, uint32_t flags,
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
static void auto_title(exec_t *x, uint32_t index, const char *text, size_t len)
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
static void store_refusal(exec_t *x)
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

/* Checks, claims the conversation, stores the request, runs, stores the
 * result, logs. On return either x->code is set (refused / failed) or the
 * command ran (x->res, x->out). */
static void exec_run(exec_t *x)
{
    chat_store_t *st = chatbot_store();
    const char *argv[1 + CHAT_CMD_MAX_FIXED + CHAT_CMD_MAX_USER_ARGS + 1];
    chat_buf_t text;
    char why[256];
    chat_status_t rc;
    size_t i;
    int err;

    if (!st) {
        refuse(x, CHAT_ERR_INTERNAL, "the chat store is not available");
        return;
    }
    if (!(x->cmd = lookup(x))) {
        return;
    }
    if (chat_cmd_check_args(&x->cmd->spec, x->args, x->nargs, why, sizeof(why)) != CHAT_OK) {
        refuse(x, CHAT_ERR_COMMAND_DENIED, "%s", why);
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
                refuse(x, CHAT_ERR_COMMAND_DENIED, "argument %" APR_SIZE_T_FMT " refused: %s",
                       (apr_size_t)(i + 1), bad);
                return;
            }
        }
    }
    if (chat_cmd_build_argv(&x->cmd->spec, x->args, x->nargs, argv,
                            sizeof(argv) / sizeof(argv[0])) < 0) {
        refuse(x, CHAT_ERR_COMMAND_DENIED, "too many arguments");
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
            rc = store_msg(x, CHAT_ROLE_USER, CHAT_MSG_COMMAND, text.data, text.len, &index);
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
            refuse(x, CHAT_ERR_BUSY, "this conversation is busy generating an answer; "
                   "wait for it or stop it first");
        }
        else if (rc == CHAT_ENOTFOUND) {
            refuse(x, CHAT_ERR_NOT_FOUND, "no such conversation");
        }
        else {
            const char *code = chatbot_store_err(rc);
            refuse(x, code, "cannot store the command: %s", chatbot_store_err_text(code));
        }
        return;
    }

    chat_cmd_output_init(&x->out, x->cmd->spec.max_output);
    err = run_program(x->cmd, argv, &x->out, stop_requested, x, &x->res);
    if (err) {
        x->code = CHAT_ERR_COMMAND_FAILED;
        apr_snprintf(x->msg, sizeof(x->msg), "command '%s' could not be started: %s",
                     x->name, errtext(x->p, err));
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, err, x->r, APLOGNO(10973)
                      "chatbot: command failed user=%s bot=%s conversation=%s command=%s "
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
        chat_cmd_format_result(&text, x->out.buf.data ? x->out.buf.data : "", x->out.buf.len,
                               &cr);
        chat_metrics_gauge_add(st, CHAT_G_COMMANDS, 1);
        ap_log_rerror(APLOG_MARK, APLOG_NOTICE, 0, x->r, APLOGNO(10974)
                      "chatbot: command user=%s bot=%s conversation=%s command=%s "
                      "args=[%s] exit=%d signal=%d duration_ms=%" APR_INT64_T_FMT
                      " output_bytes=%" APR_UINT64_T_FMT " truncated=%d timed_out=%d"
                      "%s%s%s",
                      x->id->label, x->bot->name, x->conv, x->name,
                      log_args(x->p, x->args, x->nargs), x->res.exit_code, x->res.signal,
                      x->res.duration_ms, (apr_uint64_t)x->out.seen, x->res.truncated,
                      x->res.timed_out, x->res.stopped ? " stopped=1" : "",
                      x->res.reaped ? "" : " unreaped=1",
                      x->res.escaped ? apr_psprintf(x->p, " escaped_killed=%d",
                                                    x->res.escaped)
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

/* Writes the command_result members into an open object. */
static void write_result(chat_jw_t *w, const exec_t *x)
{
    size_t i;

    chat_jw_kstr(w, "command", x->name);
    chat_jw_key(w, "args");
    chat_jw_arr_begin(w);
    for (i = 0; i < x->nargs; i++) {
        chat_jw_str(w, x->args[i]);
    }
    chat_jw_arr_end(w);
    chat_jw_key(w, "exit_code");
    if (x->res.reaped && !x->res.signal) {
        chat_jw_int(w, x->res.exit_code);
    }
    else {
        chat_jw_null(w);
    }
    chat_jw_key(w, "signal");
    if (x->res.signal) {
        chat_jw_int(w, x->res.signal);
    }
    else {
        chat_jw_null(w);
    }
    chat_jw_kstrn(w, "output", x->out.buf.data ? x->out.buf.data : "", x->out.buf.len);
    chat_jw_kbool(w, "truncated", x->res.truncated);
    chat_jw_kbool(w, "timed_out", x->res.timed_out);
    if (x->res.stopped) {
        chat_jw_kbool(w, "stopped", 1);
    }
    chat_jw_kint(w, "duration_ms", x->res.duration_ms);
    chat_jw_kstr(w, "conversation_id", x->conv);
    chat_jw_kstr(w, "bot_id", x->bot->name);
    if (x->has_index) {
        chat_jw_kint(w, "index", x->result_index);
    }
}

static void exec_init(exec_t *x, request_rec *r, const chatbot_ident_t *id,
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

static void exec_done(exec_t *x)
{
    chat_cmd_output_free(&x->out);
    apr_pool_destroy(x->p);
}

/* Splits a "!name args" line into x->name / x->args. Returns 0 or refuses. */
static int exec_split(exec_t *x, const char *line, size_t len)
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
        refuse(x, CHAT_ERR_COMMAND_DENIED, "%s", why);
        return -1;
    }
    x->name = words[0];
    x->args = words + 1;
    x->nargs = n - 1;
    x->split = 1;
    return 0;
}

/* args == NULL: command is a chat line "!name args" of nargs bytes.
 * Otherwise command is the name and args[0..nargs) the arguments. */
int chatbot_exec_ws(request_rec *r, const chatbot_ident_t *id, chatbot_bot_t *bot,
                    const char *conv_id, const char *command, const char *const *args,
                    apr_size_t nargs, chat_buf_t *frame)
{
    exec_t x;
    chat_jw_t w;

    exec_init(&x, r, id, bot, conv_id);
    if (!args) {
        if (exec_split(&x, command ? command : "", command ? nargs : 0) == 0) {
            exec_run(&x);
        }
    }
    else {
        x.name = command ? command : "";
        x.args = args;
        x.nargs = nargs;
        x.split = 1;
        exec_run(&x);
    }
    if (x.code) {
        store_refusal(&x);
        chat_frame_error(frame, x.code, x.msg, conv_id, NULL, -1);
        /* an error frame like any other: counted by code (chatbot_errors_total,
         * ChatbotErrors[code]), so storage_full or internal alerts see it */
        chat_metrics_error(chatbot_store(), x.code);
        exec_done(&x);
        return 0;
    }
    chat_buf_reset(frame, 64 * 1024);
    chat_jw_init(&w, frame);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "type", "command_result");
    write_result(&w, &x);
    chat_jw_obj_end(&w);
    exec_done(&x);
    return chat_jw_status(&w) == CHAT_OK ? 0 : -1;
}

static int status_of(const char *code)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {{CHAT_ERR_COMMAND_DENIED, 403}, {CHAT_ERR_BAD_REQUEST, 400},
               {CHAT_ERR_NOT_FOUND, 404},      {CHAT_ERR_BUSY, 409},
               {CHAT_ERR_STORAGE_FULL, 507},   {CHAT_ERR_QUOTA_EXCEEDED, 507},
               {NULL, 0}};
    int i;

    for (i = 0; map[i].code; i++) {
        if (!strcmp(map[i].code, code)) {
            return map[i].status;
        }
    }
    return 500; /* command_failed, internal */
}

/* An error reply, counted by code like every error the API returns
 * (chatbot_errors_total, ChatbotErrors[code]). x: the refusal stored in a
 * conversation, whose id and index are added (else NULL). */
static int api_error_x(chat_buf_t *out, int *status, const char *code, const char *msg,
                       const exec_t *x)
{
    chat_jw_t w;

    chat_buf_reset(out, 0);
    chat_jw_init(&w, out);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "error", code);
    chat_jw_kstr(&w, "message", msg);
    chat_jw_kstr(&w, "detail", msg);
    if (x && x->conv) {
        chat_jw_kstr(&w, "conversation_id", x->conv);
        if (x->has_index) {
            chat_jw_kint(&w, "index", x->result_index);
        }
    }
    chat_jw_obj_end(&w);
    *status = status_of(code);
    chat_metrics_error(chatbot_store(), code);
    return 0;
}

static int api_error(chat_buf_t *out, int *status, const char *code, const char *msg)
{
    return api_error_x(out, status, code, msg, NULL);
}

/* POST /api/execute {"command": name, "args": [strings], "bot_id"?,
 * "conversation_id"?}. For old clients, {"command": "ls -l"} without
 * "args" is split like a chat line (still no shell). */
int chatbot_exec_api(request_rec *r, const chatbot_ident_t *id, void *body,
                     const chatbot_limits_t *lim, chat_buf_t *out, int *status)
{
    json_object *b = body, *v, *jargs = NULL;
    const char *command, *bot_id = NULL, *conv = NULL, *e;
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    const char **args = NULL;
    size_t nargs = 0, i, clen;
    exec_t x;
    chat_jw_t w;
    int line;

    if (!b || !json_object_is_type(b, json_type_object)) {
        return api_error(out, status, CHAT_ERR_BAD_REQUEST, "a JSON object body is required");
    }
    if (!json_object_object_get_ex(b, "command", &v) ||
        !json_object_is_type(v, json_type_string)) {
        return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                         "\"command\" (a string: the name of a declared command) is "
                         "required");
    }
    command = json_object_get_string(v);
    clen = (size_t)json_object_get_string_len(v);
    if (json_object_object_get_ex(b, "bot_id", &v) && !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST, "bot_id must be a string");
        }
        bot_id = json_object_get_string(v);
    }
    if (json_object_object_get_ex(b, "conversation_id", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                             "conversation_id must be a string");
        }
        conv = json_object_get_string(v);
    }
    if (json_object_object_get_ex(b, "args", &jargs) &&
        !json_object_is_type(jargs, json_type_null)) {
        if (!json_object_is_type(jargs, json_type_array)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                             "args must be an array of strings");
        }
        nargs = json_object_array_length(jargs);
    }
    else {
        jargs = NULL;
    }

    bot = chatbot_bot_get(r->server, bot_id);
    if (!bot) {
        return api_error(out, status, CHAT_ERR_NOT_FOUND, "unknown bot");
    }
    if ((e = chatbot_conv_resolve(r, id, bot, conv, 1, &ci))) {
        return api_error(out, status, e, "no such conversation");
    }
    if (conv && !(bot = chatbot_bot_get(r->server, ci.bot))) {
        return api_error(out, status, CHAT_ERR_NOT_FOUND, "the conversation's bot no "
                         "longer exists");
    }

    exec_init(&x, r, id, bot, apr_pstrdup(r->pool, ci.id));
    line = !jargs && (command[0] == '!' || strpbrk(command, " \t"));
    if (line) {
        const char *l = command[0] == '!' ? command
                                          : apr_pstrcat(x.p, "!", command, NULL);
        if (exec_split(&x, l, clen + (command[0] == '!' ? 0 : 1)) == 0) {
            exec_run(&x);
        }
    }
    else {
        x.name = command;
        x.split = 1;
        if (strlen(command) != clen) {
            refuse(&x, CHAT_ERR_COMMAND_DENIED, "the command name contains a NUL character");
        }
        else if (nargs > CHAT_CMD_MAX_USER_ARGS) {
            /* refused before the arguments are looked at; stored as the
             * name alone */
            refuse(&x, CHAT_ERR_COMMAND_DENIED, "too many arguments");
            nargs = 0;
        }
        if (nargs) {
            args = apr_pcalloc(x.p, sizeof(*args) * nargs);
        }
        for (i = 0; i < nargs && !x.code; i++) {
            json_object *a = json_object_array_get_idx(jargs, i);
            if (!json_object_is_type(a, json_type_string)) {
                refuse(&x, CHAT_ERR_BAD_REQUEST, "args must be an array of strings");
                break;
            }
            args[i] = json_object_get_string(a);
            if (strlen(args[i]) != (size_t)json_object_get_string_len(a)) {
                x.args = args;
                x.nargs = i;
                refuse(&x, CHAT_ERR_COMMAND_DENIED,
                       "argument %" APR_SIZE_T_FMT " refused: an argument contains a "
                       "control character (newline, NUL, escape...)",
                       (apr_size_t)(i + 1));
            }
        }
        x.args = args;
        x.nargs = x.code ? i : nargs; /* a refusal is stored with the arguments read */
        if (!x.code) {
            exec_run(&x);
        }
    }
    if (x.code) {
        store_refusal(&x);
        api_error_x(out, status, x.code, x.msg, &x);
        exec_done(&x);
        return 0;
    }
    chat_buf_reset(out, 0);
    chat_jw_init(&w, out);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "type", "command_result");
    write_result(&w, &x);
    chat_jw_obj_end(&w);
    exec_done(&x);
    *status = 200;
    return 0;
}
