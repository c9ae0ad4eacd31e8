/* mod_chatbot_spawn.c - runs one program without a shell (posix_spawn):
 * empty environment, /dev/null as stdin, one pipe for stdout+stderr, its
 * own process group killed as a whole, a timeout, an output cap, a stop
 * request, and the processes that escaped the group holding the pipe.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <dirent.h>
#include <errno.h>
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

#include "mod_chatbot_spawn.h"

#define READ_CHUNK 16384
#define POLL_SLICE_MS 100 /* how often a run checks for a stop request */
#define REAP_WAIT_MS 5000 /* longest wait for a killed child to be reaped */
#define HOLDER_ROUNDS 5   /* scans for processes still holding the pipe */
#define HOLDER_WAIT_MS 50 /* how long the group kill gets to close the pipe */

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
        pid_t reaped = waitpid(pid, status, WNOHANG);
        if (reaped == pid) {
            return 1;
        }
        if (reaped < 0 && errno != EINTR) {
            return 0;
        }
        if (mono_ms() >= until) {
            return 0;
        }
        if (reaped == 0) {
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

int chatbot_spawn_run(const char *path, const char *cwd, apr_int64_t timeout_ms,
                      const char *const *argv, chat_cmd_output_t *out,
                      chatbot_stop_fn *should_stop, void *baton,
                      chatbot_run_result_t *res)
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
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    if (!rc)
        rc = posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    if (!rc)
        rc = posix_spawn_file_actions_addchdir_np(&fa, cwd);
    if (!rc)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (!rc)
        rc = posix_spawnattr_setsigmask(&at, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(&at, &all);
    if (!rc)
        rc = posix_spawnattr_setpgroup(&at, 0);
    if (!rc)
        rc = posix_spawnattr_setflags(
            &at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    start = mono_ms();
    if (!rc) {
        rc = posix_spawn(&pid, path, &fa, &at, (char *const *)argv, envp);
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
    deadline = start + timeout_ms;
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
