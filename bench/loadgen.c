/* loadgen.c - load generator for mod_chatbot's benchmarks.
 *
 * One process, one epoll loop, thousands of non-blocking connections. It
 * speaks just enough of three protocols, written here from the RFCs and
 * docs/protocol.md (nothing from the module is linked or included):
 *
 *   ws      RFC 6455 client (HTTP/1.1 upgrade, Sec-WebSocket-Accept checked,
 *           masked client frames, fragmented and control frames from the
 *           server) carrying the chat protocol: it sends
 *           {"type":"message","content":"... [[fake tokens=N delay_us=U]]"}
 *           and a turn ends at the "response" (or "error") frame.
 *   direct  the same chat request straight to the (fake) Ollama backend:
 *           POST /api/chat over HTTP/1.1 keep-alive, chunked NDJSON reply;
 *           a turn ends at the chunked terminator. Used to subtract the
 *           backend's own time from the ws turn time.
 *   idle    ws connections that only keep alive (client pings every
 *           --ping-s, pongs to the server's pings) for --hold seconds, then
 *           one chat turn on each of --sample connections.
 *
 * Timing: turn latency is send -> last frame of the turn. Relay delay is
 * receive time - the CLOCK_MONOTONIC nanoseconds the fake backend wrote
 * into each token ("t<ns>"), so only a backend on the same machine works.
 * Turns run closed-loop (--rate 0: the next message as soon as the answer
 * is complete) or open-loop at an aggregate --rate spread evenly over the
 * connections (a connection still busy when its time comes sends when its
 * turn ends; counted as "late").
 *
 * Output (stdout): "EVENT <name> ..." progress lines and one
 * "RESULT key=value ..." line; with --samples-out P, P.lat and P.relay get
 * the raw samples (native uint32 microseconds / nanoseconds). With --sync,
 * after each EVENT line it waits for a line on stdin (so a driver can
 * measure the server in a known state).
 *
 * This file: the options, the run's phases (main), the event loop and the
 * EVENT lines; loadgen.h says which file does the rest.
 */
#include "loadgen.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

struct loadgen_opt opt = {M_WS, "127.0.0.1", 0, "/ws", 1, 256,     1,    10,  0,      60,
                          10,   20,          0, 100,   0, "hello", NULL, "-", "bench"};

static uint64_t rng = 0x9E3779B97F4A7C15ull;

/* ---- utilities ----------------------------------------------------------------------
 */

uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t xrand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

_Noreturn void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- main loop ------------------------------------------------------------------------
 */

static volatile sig_atomic_t interrupted;

static void on_signal(int s)
{
    (void)s;
    interrupted = 1;
}

/* Runs the loop until deadline (or cond returns true). */
static void loop_until(uint64_t deadline, int (*cond)(void))
{
    struct epoll_event evs[512];
    static int next_connect;
    static uint64_t last_tick;

    while (!interrupted) {
        uint64_t now = now_ns(), wait = deadline > now ? deadline - now : 0;
        struct timespec ts;
        int n, i;

        if (now >= deadline || (cond && cond())) {
            return;
        }
        /* connections still to open (ramp: at most --parallel at a time) */
        while (next_connect < opt.conns && n_pending_connects < opt.parallel) {
            conn_t *c = &conns[next_connect];
            if (c->state == S_DEAD && c->fd < 0 && c->tries == 0) {
                c->tries = 1;
                conn_start(c);
            }
            next_connect++;
        }
        if (heap_n && !stop_sending) {
            while (heap_n && heap[0]->next_ns <= now) {
                conn_t *c = heap_pop();
                if (c->state != S_OPEN) {
                    continue;
                }
                if (c->busy) {
                    c->pending = 1; /* sent when the current turn ends */
                    continue;
                }
                turn_send(c, now);
                if (opt.mode != M_IDLE) {
                    schedule_next(c, now);
                }
            }
            if (heap_n && heap[0]->next_ns - now < wait) {
                wait = heap[0]->next_ns > now ? heap[0]->next_ns - now : 0;
            }
        }
        if (opt.mode == M_IDLE && wait > 50000000u) {
            wait = 50000000u; /* ping ticks */
        }
        if (n_pending_connects && wait > 10000000u) {
            wait = 10000000u;
        }
        ts.tv_sec = (time_t)(wait / 1000000000u);
        ts.tv_nsec = (long)(wait % 1000000000u);
        n = epoll_pwait2(epfd, evs, 512, &ts, NULL);
        if (n < 0 && errno != EINTR) {
            die("epoll_pwait2: %s", strerror(errno));
        }
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->state == S_DEAD) {
                continue;
            }
            if (c->state == S_CONNECTING &&
                (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                on_connected(c);
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                conn_flush(c);
            }
            if (c->state != S_DEAD && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) {
                on_readable(c);
            }
        }
        if (opt.mode == M_IDLE && opt.ping_s > 0 && now_ns() - last_tick > 50000000u) {
            now = last_tick = now_ns();
            for (i = 0; i < opt.conns; i++) {
                conn_t *c = &conns[i];
                if (c->state == S_OPEN && now >= c->ping_ns) {
                    if (c->ping_ns) {
                        ws_frame(c, 0x9, "loadgen", 7);
                        conn_flush(c);
                        pings_sent++;
                    }
                    c->ping_ns =
                        now + (uint64_t)(opt.ping_s * 1e9 *
                                         (0.5 + (double)(xrand() % 1000) / 1000.0));
                }
            }
        }
    }
}

static int all_open(void)
{
    int i, settled = 1;

    for (i = 0; i < opt.conns; i++) {
        if (conns[i].state != S_OPEN && conns[i].state != S_DEAD) {
            settled = 0;
            break;
        }
        if (conns[i].state == S_DEAD && conns[i].tries == 0) {
            settled = 0;
            break;
        }
    }
    return settled;
}

static int none_inflight(void)
{
    return turns_inflight == 0;
}

static void event(const char *name)
{
    printf("EVENT %s open=%llu failed=%llu\n", name, (unsigned long long)ws_open,
           (unsigned long long)connect_fail);
    fflush(stdout);
    if (opt.sync) {
        char line[64];
        if (!fgets(line, sizeof(line), stdin)) {
            interrupted = 1;
        }
    }
}

static void usage(void)
{
    fprintf(
        stderr,
        "usage: loadgen --mode ws|direct|idle --port P [--host 127.0.0.1] [--path /ws]\n"
        "  [--conns N] [--parallel 256] [--warmup 1] [--duration 10] [--rate 0]\n"
        "  [--tokens 20] [--delay-us 0] [--prompt hello] [--model bench]\n"
        "  [--hold 60] [--ping-s 10] [--sample 100] [--sync]\n"
        "  [--samples-out PREFIX] [--label L]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int i;
    double cpu0 = 0, cpu1 = 0;
    uint64_t t0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--sync")) {
            opt.sync = 1;
            continue;
        }
        if (!v) {
            usage();
        }
        i++;
        if (!strcmp(a, "--mode")) {
            opt.mode = !strcmp(v, "ws")       ? M_WS
                       : !strcmp(v, "direct") ? M_DIRECT
                       : !strcmp(v, "idle")   ? M_IDLE
                                              : -1;
            if (opt.mode < 0) {
                usage();
            }
        }
        else if (!strcmp(a, "--host"))
            opt.host = v;
        else if (!strcmp(a, "--port"))
            opt.port = atoi(v);
        else if (!strcmp(a, "--path"))
            opt.path = v;
        else if (!strcmp(a, "--conns"))
            opt.conns = atoi(v);
        else if (!strcmp(a, "--parallel"))
            opt.parallel = atoi(v);
        else if (!strcmp(a, "--warmup"))
            opt.warmup = atof(v);
        else if (!strcmp(a, "--duration"))
            opt.duration = atof(v);
        else if (!strcmp(a, "--rate"))
            opt.rate = atof(v);
        else if (!strcmp(a, "--tokens"))
            opt.tokens = atoi(v);
        else if (!strcmp(a, "--delay-us"))
            opt.delay_us = atoi(v);
        else if (!strcmp(a, "--prompt"))
            opt.prompt = v;
        else if (!strcmp(a, "--model"))
            opt.model = v;
        else if (!strcmp(a, "--hold"))
            opt.hold = atof(v);
        else if (!strcmp(a, "--ping-s"))
            opt.ping_s = atof(v);
        else if (!strcmp(a, "--sample"))
            opt.sample = atoi(v);
        else if (!strcmp(a, "--samples-out"))
            opt.samples_out = v;
        else if (!strcmp(a, "--label"))
            opt.label = v;
        else
            usage();
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.parallel <= 0) {
        usage();
    }
    if (strpbrk(opt.prompt, "\"\\") || strpbrk(opt.model, "\"\\")) {
        die("--prompt and --model must not contain quotes or backslashes");
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    rng ^= now_ns() ^ ((uint64_t)getpid() << 32);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conns = calloc((size_t)opt.conns, sizeof(conn_t));
    heap = calloc((size_t)opt.conns, sizeof(conn_t *));
    if (!conns || !heap || epfd < 0) {
        die("out of memory");
    }
    for (i = 0; i < opt.conns; i++) {
        conns[i].idx = i;
        conns[i].fd = -1;
        conns[i].state = S_DEAD;
        conns[i].heap_i = -1;
    }

    /* 1. open every connection (ws: until its hello frame) */
    t0 = now_ns();
    loop_until(t0 + 120 * 1000000000ull, all_open);
    event("opened");
    if (!ws_open) {
        die("no connection could be opened");
    }

    if (opt.mode == M_IDLE) {
        loop_until(now_ns() + (uint64_t)(opt.hold * 1e9), NULL);
        event("held");
        /* one turn on each of the sample connections, 1 ms apart */
        int step = opt.sample > 0 && opt.sample < opt.conns ? opt.conns / opt.sample : 1,
            sent = 0;
        t_measure0 = now_ns();
        t_measure1 = UINT64_MAX;
        measuring = 1;
        cpu0 = cpu_s();
        for (i = 0; i < opt.conns && sent < opt.sample; i += step) {
            if (conns[i].state == S_OPEN) {
                conns[i].next_ns = t_measure0 + (uint64_t)sent * 1000000u;
                heap_push(&conns[i]);
                sent++;
            }
        }
        loop_until(t_measure0 + (uint64_t)sent * 1000000u + 30 * 1000000000ull, NULL);
        stop_sending = 1;
        loop_until(now_ns() + 30 * 1000000000ull, none_inflight);
        t_measure1 = now_ns();
    }
    else {
        uint64_t start = now_ns();
        if (opt.rate > 0) {
            uint64_t period = (uint64_t)(1e9 * opt.conns / opt.rate);
            for (i = 0; i < opt.conns; i++) {
                if (conns[i].state == S_OPEN) {
                    conns[i].next_ns = start + xrand() % (period ? period : 1);
                    heap_push(&conns[i]);
                }
            }
        }
        else {
            for (i = 0; i < opt.conns; i++) {
                if (conns[i].state == S_OPEN) {
                    turn_send(&conns[i], start);
                }
            }
        }
        t_measure0 = start + (uint64_t)(opt.warmup * 1e9);
        t_measure1 = t_measure0 + (uint64_t)(opt.duration * 1e9);
        measuring = 1;
        loop_until(t_measure0, NULL);
        cpu0 = cpu_s();
        event("window");
        loop_until(t_measure1, NULL);
        cpu1 = cpu_s();
        event("window_end");
        stop_sending = 1;
        loop_until(now_ns() + 30 * 1000000000ull, none_inflight);
    }
    if (opt.mode == M_IDLE) {
        cpu1 = cpu_s();
    }
    result_print(cpu1 - cpu0);
    if (opt.samples_out) {
        write_samples("lat", &lat_us);
        write_samples("relay", &relay_ns);
    }
    event("done");
    for (i = 0; i < opt.conns; i++) {
        if (conns[i].state == S_OPEN && opt.mode != M_DIRECT) {
            static const char bye[] = "\x03\xe8"; /* 1000 */
            ws_frame(&conns[i], 0x8, bye, 2);
            conn_flush(&conns[i]);
        }
        if (conns[i].fd >= 0) {
            close(conns[i].fd);
        }
        buf_free(&conns[i].in);
        buf_free(&conns[i].out);
        buf_free(&conns[i].msg);
    }
    free(conns);
    free(heap);
    free(lat_us.v);
    free(relay_ns.v);
    return 0;
}
