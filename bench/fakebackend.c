/* fakebackend.c - a fast fake Ollama server for the benchmarks.
 *
 * It answers POST /api/chat at once with N tokens in Ollama's exact wire
 * shape: HTTP/1.1 200, Content-Type application/x-ndjson, chunked, one
 * chunk per JSON line, then the done line with the stats, then the chunked
 * terminator. It is one epoll loop per process (optionally several
 * processes sharing the listening socket), HTTP/1.1 keep-alive and
 * pipelining, no allocation per request once a connection's buffers have
 * grown. It is not a model and parses only what it needs.
 *
 * Each token's text is "t<ns>" (the first) or " t<ns>" (the others), where
 * <ns> is CLOCK_MONOTONIC in nanoseconds taken just before the line is
 * written to the socket: a client on the same machine subtracts it from its
 * own receive time to get the relay delay of that token.
 *
 * Per request, the last "[[fake ...]]" directive in the request body (the
 * newest user message; same syntax as tests/fake_backend/fake_scripts.py)
 * may set:
 *   tokens=N      tokens in the answer (default --tokens)
 *   delay_us=N    gap between two token lines (default 0: the whole answer,
 *                 headers to terminator, goes out in one send)
 *   delay_ms=N    the same in milliseconds
 * Unknown keys are ignored (this is a load tool, not a conformance fake).
 *
 * Other routes: GET /api/version, GET /api/tags, GET|HEAD / ("Ollama is
 * running"), anything else 404. Request bodies must have Content-Length
 * (libcurl and the load generator send one); chunked request bodies get 411.
 *
 *   fakebackend [--host 127.0.0.1] [--port 0] [--port-file F] [--tokens 20]
 *               [--workers 1]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER 16384
#define MAX_BODY (8 * 1024 * 1024)
#define MAX_TOKENS 100000

typedef struct conn {
    int fd;
    char *in;
    size_t in_len, in_cap;
    char *out;
    size_t out_len, out_off, out_cap;
    int want_out;    /* EPOLLOUT registered */
    int close_after; /* Connection: close seen */
    /* a stream paced by delay_ns */
    int streaming;
    int tok_i, tok_n;
    uint64_t next_ns, delay_ns, t_req_ns, t_first_ns;
    size_t prompt_bytes;
    char model[128];
    struct conn *snext, *sprev;
} conn_t;

static int default_tokens = 20;
static volatile sig_atomic_t stopping;
static conn_t *streams; /* connections with a paced stream in progress */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* ---- buffers ------------------------------------------------------------------ */

static void out_reserve(conn_t *c, size_t more)
{
    if (c->out_len + more <= c->out_cap) {
        return;
    }
    if (c->out_off) { /* compact first */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) {
            return;
        }
    }
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + more) {
        cap *= 2;
    }
    char *p = realloc(c->out, cap);
    if (!p) {
        die("realloc");
    }
    c->out = p;
    c->out_cap = cap;
}

static void out_add(conn_t *c, const char *s, size_t n)
{
    out_reserve(c, n);
    memcpy(c->out + c->out_len, s, n);
    c->out_len += n;
}

static void out_printf(conn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(conn_t *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    out_reserve(c, 256);
    va_start(ap, fmt);
    n = vsnprintf(c->out + c->out_len, c->out_cap - c->out_len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= c->out_cap - c->out_len) {
        out_reserve(c, (size_t)n + 1);
        va_start(ap, fmt);
        vsnprintf(c->out + c->out_len, c->out_cap - c->out_len, fmt, ap);
        va_end(ap);
    }
    c->out_len += (size_t)n;
}

/* One NDJSON line as one HTTP chunk: size, CRLF, line + LF, CRLF. */
static void out_chunk_line(conn_t *c, const char *line, size_t n)
{
    char hdr[24];
    int h = snprintf(hdr, sizeof(hdr), "%zx\r\n", n + 1);

    out_reserve(c, (size_t)h + n + 3);
    memcpy(c->out + c->out_len, hdr, (size_t)h);
    c->out_len += (size_t)h;
    memcpy(c->out + c->out_len, line, n);
    c->out_len += n;
    memcpy(c->out + c->out_len, "\n\r\n", 3);
    c->out_len += 3;
}

/* ---- time formats ---------------------------------------------------------------- */

/* RFC 3339 with nanoseconds, trailing zeros trimmed (Go's RFC3339Nano). */
static void created_at(char *buf, size_t cap)
{
    static time_t cached_sec = -1;
    static char cached[32];
    struct timespec ts;
    struct tm tm;
    char frac[16];
    int i;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        gmtime_r(&ts.tv_sec, &tm);
        strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    snprintf(frac, sizeof(frac), "%09ld", ts.tv_nsec);
    for (i = 8; i > 0 && frac[i] == '0'; i--) {
        frac[i] = '\0';
    }
    if (ts.tv_nsec == 0) {
        snprintf(buf, cap, "%sZ", cached);
    }
    else {
        snprintf(buf, cap, "%s.%sZ", cached, frac);
    }
}

static void http_date(char *buf, size_t cap)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- responses ----------------------------------------------------------------- */

static void simple_response(conn_t *c, int status, const char *reason, const char *ctype,
                            const char *body, int head_only)
{
    char date[64];
    size_t n = strlen(body);

    http_date(date, sizeof(date));
    out_printf(c,
               "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nDate: %s\r\nContent-Length: %zu\r\n"
               "%s\r\n",
               status, reason, ctype, date, n,
               c->close_after ? "Connection: close\r\n" : "");
    if (!head_only) {
        out_add(c, body, n);
    }
}

static void token_line(conn_t *c, int i)
{
    char line[512], ca[64];
    uint64_t t;
    int n;

    created_at(ca, sizeof(ca));
    t = now_ns();
    if (!c->t_first_ns) {
        c->t_first_ns = t;
    }
    n = snprintf(
        line, sizeof(line),
        "{\"model\":\"%s\",\"created_at\":\"%s\",\"message\":{\"role\":\"assistant\","
        "\"content\":\"%st%llu\"},\"done\":false}",
        c->model, ca, i ? " " : "", (unsigned long long)t);
    out_chunk_line(c, line, (size_t)n);
}

static void done_line(conn_t *c)
{
    char line[768], ca[64];
    uint64_t t = now_ns();
    uint64_t total = t - c->t_req_ns;
    uint64_t eval = c->t_first_ns ? t - c->t_first_ns : 0;
    int n;

    created_at(ca, sizeof(ca));
    n = snprintf(
        line, sizeof(line),
        "{\"model\":\"%s\",\"created_at\":\"%s\",\"message\":{\"role\":\"assistant\","
        "\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\","
        "\"total_duration\":%llu,\"load_duration\":%llu,\"prompt_eval_count\":%zu,"
        "\"prompt_eval_duration\":%llu,\"eval_count\":%d,\"eval_duration\":%llu}",
        c->model, ca, (unsigned long long)total, (unsigned long long)(total - eval) / 4,
        c->prompt_bytes / 4 + 1, (unsigned long long)(total - eval) / 2, c->tok_n,
        (unsigned long long)(eval ? eval : 1));
    out_chunk_line(c, line, (size_t)n);
    out_add(c, "0\r\n\r\n", 5);
}

static void stream_unlink(conn_t *c)
{
    if (!c->streaming) {
        return;
    }
    c->streaming = 0;
    if (c->sprev) {
        c->sprev->snext = c->snext;
    }
    else {
        streams = c->snext;
    }
    if (c->snext) {
        c->snext->sprev = c->sprev;
    }
    c->snext = c->sprev = NULL;
}

/* Finds the value of key in the last [[fake ...]] directive of body. */
static long directive_value(const char *body, size_t len, const char *key, long dflt)
{
    const char *d = NULL, *p, *end;
    size_t klen = strlen(key);

    for (p = body; (p = memmem(p, len - (size_t)(p - body), "[[fake", 6)) != NULL;
         p += 6) {
        d = p;
    }
    if (!d) {
        return dflt;
    }
    end = memmem(d, len - (size_t)(d - body), "]]", 2);
    if (!end) {
        return dflt;
    }
    for (p = d + 6; p < end; p++) {
        if ((p[-1] == ' ') && (size_t)(end - p) > klen && !memcmp(p, key, klen) &&
            p[klen] == '=') {
            return strtol(p + klen + 1, NULL, 10);
        }
    }
    return dflt;
}

static void chat_response(conn_t *c, const char *body, size_t len)
{
    const char *m = memmem(body, len, "\"model\":\"", 9);
    char date[64];
    long ntok = directive_value(body, len, "tokens", default_tokens);
    long dus = directive_value(body, len, "delay_us", -1);
    size_t i;

    if (dus < 0) {
        dus = directive_value(body, len, "delay_ms", 0) * 1000;
    }
    if (ntok < 0) {
        ntok = 0;
    }
    if (ntok > MAX_TOKENS) {
        ntok = MAX_TOKENS;
    }
    strcpy(c->model, "fake");
    if (m) {
        m += 9;
        for (i = 0; i + 1 < sizeof(c->model) && m + i < body + len && m[i] != '"' &&
                    m[i] != '\\';
             i++) {
            c->model[i] = m[i];
        }
        c->model[i] = '\0';
    }
    c->t_req_ns = now_ns();
    c->t_first_ns = 0;
    c->tok_n = (int)ntok;
    c->tok_i = 0;
    c->prompt_bytes = len;
    http_date(date, sizeof(date));
    out_printf(c,
               "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: %s\r\n"
               "%sTransfer-Encoding: chunked\r\n\r\n",
               date, c->close_after ? "Connection: close\r\n" : "");
    if (dus <= 0 || ntok <= 1) {
        for (c->tok_i = 0; c->tok_i < c->tok_n; c->tok_i++) {
            token_line(c, c->tok_i);
        }
        done_line(c);
        return;
    }
    token_line(c, 0);
    c->tok_i = 1;
    c->delay_ns = (uint64_t)dus * 1000u;
    c->next_ns = now_ns() + c->delay_ns;
    c->streaming = 1;
    c->sprev = NULL;
    c->snext = streams;
    if (streams) {
        streams->sprev = c;
    }
    streams = c;
}

/* ---- connections ----------------------------------------------------------------------
 */

static void conn_close(int ep, conn_t *c)
{
    stream_unlink(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
}

/* Writes what is queued; returns -1 if the connection is to be closed. */
static int conn_flush(int ep, conn_t *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = 1;
                }
                return 0;
            }
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
    if (c->close_after && !c->streaming) {
        return -1;
    }
    return 0;
}

static const char *hdr_find(const char *h, size_t hlen, const char *name)
{
    size_t nl = strlen(name);
    const char *p = h, *end = h + hlen;

    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) {
            break;
        }
        if ((size_t)(eol - p) > nl && p[nl] == ':' && !strncasecmp(p, name, nl)) {
            p += nl + 1;
            while (*p == ' ' || *p == '\t') {
                p++;
            }
            return p;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Handles every complete request in the input buffer (stops while a paced
 * stream is in progress: responses must stay in order). */
static int conn_process(int ep, conn_t *c)
{
    size_t used = 0;

    while (!c->streaming && !c->close_after) {
        char *req = c->in + used;
        size_t avail = c->in_len - used;
        char *hend = memmem(req, avail, "\r\n\r\n", 4);
        const char *v, *sp1, *sp2;
        size_t hlen, blen = 0;
        char method[8], path[256];

        if (!hend) {
            if (avail > MAX_HEADER) {
                return -1;
            }
            break;
        }
        hlen = (size_t)(hend - req) + 4;
        sp1 = memchr(req, ' ', hlen);
        sp2 = sp1 ? memchr(sp1 + 1, ' ', hlen - (size_t)(sp1 + 1 - req)) : NULL;
        if (!sp1 || !sp2 || sp1 - req >= (long)sizeof(method) ||
            sp2 - sp1 - 1 >= (long)sizeof(path)) {
            return -1;
        }
        memcpy(method, req, (size_t)(sp1 - req));
        method[sp1 - req] = '\0';
        memcpy(path, sp1 + 1, (size_t)(sp2 - sp1 - 1));
        path[sp2 - sp1 - 1] = '\0';
        if ((v = hdr_find(req, hlen, "Content-Length"))) {
            blen = strtoul(v, NULL, 10);
            if (blen > MAX_BODY) {
                return -1;
            }
        }
        else if (hdr_find(req, hlen, "Transfer-Encoding")) {
            c->close_after = 1;
            simple_response(c, 411, "Length Required", "text/plain; charset=utf-8",
                            "Length Required", 0);
            used += hlen;
            break;
        }
        if (avail < hlen + blen) {
            break; /* the body is still coming */
        }
        if ((v = hdr_find(req, hlen, "Connection")) && !strncasecmp(v, "close", 5)) {
            c->close_after = 1;
        }
        if (!strcmp(method, "POST") && !strcmp(path, "/api/chat")) {
            chat_response(c, req + hlen, blen);
        }
        else if (!strcmp(method, "GET") && !strcmp(path, "/api/version")) {
            simple_response(c, 200, "OK", "application/json; charset=utf-8",
                            "{\"version\":\"0.12.6\"}", 0);
        }
        else if (!strcmp(method, "GET") && !strcmp(path, "/api/tags")) {
            simple_response(c, 200, "OK", "application/json; charset=utf-8",
                            "{\"models\":[{\"name\":\"bench\",\"model\":\"bench\","
                            "\"size\":1,\"digest\":\"0\",\"details\":{}}]}",
                            0);
        }
        else if ((!strcmp(method, "GET") || !strcmp(method, "HEAD")) &&
                 !strcmp(path, "/")) {
            simple_response(c, 200, "OK", "text/plain; charset=utf-8",
                            "Ollama is running", method[0] == 'H');
        }
        else {
            simple_response(c, 404, "Not Found", "text/plain", "404 page not found", 0);
        }
        used += hlen + blen;
    }
    if (used) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
    }
    return conn_flush(ep, c);
}

static int conn_read(int ep, conn_t *c)
{
    for (;;) {
        ssize_t n;
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 8192;
            char *p;
            if (cap > MAX_BODY + MAX_HEADER * 2) {
                return -1;
            }
            p = realloc(c->in, cap);
            if (!p) {
                die("realloc");
            }
            c->in = p;
            c->in_cap = cap;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n == 0) {
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            return -1;
        }
        c->in_len += (size_t)n;
        if ((size_t)n < 4096) {
            break;
        }
    }
    return conn_process(ep, c);
}

/* Sends the next line of every paced stream that is due. */
static void streams_run(int ep)
{
    conn_t *c = streams, *next;
    uint64_t now = now_ns();

    for (; c; c = next) {
        next = c->snext;
        if (now < c->next_ns) {
            continue;
        }
        token_line(c, c->tok_i++);
        if (c->tok_i >= c->tok_n) {
            done_line(c);
            stream_unlink(c);
        }
        else {
            c->next_ns += c->delay_ns;
            if (c->next_ns < now) {
                c->next_ns = now; /* late: do not burst */
            }
        }
        if (conn_flush(ep, c) < 0 || (!c->streaming && conn_process(ep, c) < 0)) {
            conn_close(ep, c);
        }
    }
}

static void serve(int lfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    struct epoll_event evs[256];

    if (ep < 0) {
        die("epoll_create1");
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        die("epoll_ctl listen");
    }
    while (!stopping) {
        struct timespec ts, *tp = NULL;
        int n, i;

        if (streams) {
            uint64_t now = now_ns(), next = UINT64_MAX;
            conn_t *c;
            for (c = streams; c; c = c->snext) {
                if (c->next_ns < next) {
                    next = c->next_ns;
                }
            }
            next = next > now ? next - now : 0;
            ts.tv_sec = (time_t)(next / 1000000000u);
            ts.tv_nsec = (long)(next % 1000000000u);
            tp = &ts;
        }
        n = epoll_pwait2(ep, evs, 256, tp, NULL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("epoll_pwait2");
        }
        for (i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC),
                        one = 1;
                    struct epoll_event cev;
                    if (fd < 0) {
                        break;
                    }
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    c = calloc(1, sizeof(*c));
                    if (!c) {
                        die("calloc");
                    }
                    c->fd = fd;
                    cev.events = EPOLLIN;
                    cev.data.ptr = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) {
                        close(fd);
                        free(c);
                    }
                }
                continue;
            }
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                conn_close(ep, c);
                continue;
            }
            if ((evs[i].events & EPOLLOUT) && conn_flush(ep, c) < 0) {
                conn_close(ep, c);
                continue;
            }
            if ((evs[i].events & EPOLLIN) && conn_read(ep, c) < 0) {
                conn_close(ep, c);
                continue;
            }
        }
        if (streams) {
            streams_run(ep);
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: fakebackend [--host 127.0.0.1] [--port 0] [--port-file F] "
                    "[--tokens 20] [--workers 1]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port_file = NULL;
    int port = 0, workers = 1, i, lfd, one = 1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    struct sigaction sact;

    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (!strcmp(argv[i], "--host")) {
            host = argv[++i];
        }
        else if (!strcmp(argv[i], "--port")) {
            port = atoi(argv[++i]);
        }
        else if (!strcmp(argv[i], "--port-file")) {
            port_file = argv[++i];
        }
        else if (!strcmp(argv[i], "--tokens")) {
            default_tokens = atoi(argv[++i]);
        }
        else if (!strcmp(argv[i], "--workers")) {
            workers = atoi(argv[++i]);
        }
        else {
            usage();
        }
    }
    memset(&sact, 0, sizeof(sact));
    sact.sa_handler = on_signal;
    sigaction(SIGTERM, &sact, NULL);
    sigaction(SIGINT, &sact, NULL);
    signal(SIGPIPE, SIG_IGN);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0) {
        die("socket");
    }
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "fakebackend: bad --host %s (IPv4 address)\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        die("bind");
    }
    if (listen(lfd, 4096) < 0) {
        die("listen");
    }
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    if (port_file) {
        char tmp[4096];
        FILE *f;
        snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
        f = fopen(tmp, "w");
        if (!f) {
            die(tmp);
        }
        fprintf(f, "%d\n", ntohs(sa.sin_port));
        fclose(f);
        if (rename(tmp, port_file) < 0) {
            die("rename");
        }
    }
    else {
        printf("%d\n", ntohs(sa.sin_port));
        fflush(stdout);
    }
    if (workers <= 1) {
        serve(lfd);
    }
    else {
        pid_t *kids = calloc((size_t)workers, sizeof(pid_t));
        for (i = 0; i < workers; i++) {
            kids[i] = fork();
            if (kids[i] == 0) {
                serve(lfd);
                _exit(0);
            }
        }
        while (!stopping) {
            pause();
        }
        for (i = 0; i < workers; i++) {
            kill(kids[i], SIGTERM);
        }
        while (wait(NULL) > 0) {
        }
        free(kids);
    }
    if (port_file) {
        unlink(port_file);
    }
    return 0;
}
