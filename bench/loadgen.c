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
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { M_WS, M_DIRECT, M_IDLE };
enum { S_CONNECTING, S_HANDSHAKE, S_UPGRADED, S_OPEN, S_DEAD };

typedef struct {
    char *p;
    size_t len, off, cap;
} buf_t;

typedef struct conn {
    int fd, idx, state, tries;
    buf_t in, out, msg;
    int want_out;
    char key[32];
    int msg_op;          /* opcode of the fragmented message in progress */
    int busy;            /* a turn is in flight */
    int pending;         /* its scheduled time came while busy */
    uint64_t sent_ns, next_ns, ping_ns, retry_ns;
    int heap_i;
    uint32_t seq;
    int tokens_seen;
    /* direct mode: response parser */
    int hstate;          /* 0 headers, 1 chunk size, 2 chunk data, 3 data CRLF, 4 trailer */
    size_t chunk_left;
    int http_status;
} conn_t;

static struct {
    int mode;
    const char *host;
    int port;
    const char *path;
    int conns;
    int parallel;
    double warmup, duration, rate, hold, ping_s;
    int tokens, delay_us, sample, sync;
    const char *prompt, *samples_out, *label, *model;
} opt = {M_WS, "127.0.0.1", 0, "/ws", 1, 256, 1, 10, 0, 60, 10, 20, 0, 100, 0,
         "hello", NULL, "-", "bench"};

static conn_t *conns;
static int epfd;
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t t_measure0, t_measure1; /* the measurement window */
static int measuring, stop_sending;

/* statistics */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} samples_t;
static samples_t lat_us, relay_ns;
static uint64_t turns_done, turns_window, errors, late, connect_fail, ws_open,
    protocol_errors, pings_sent, pongs_rcvd, server_pings, turns_inflight;
static int errors_printed;

/* ---- utilities ---------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t xrand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static void buf_reserve(buf_t *b, size_t more)
{
    size_t cap;
    char *p;

    if (b->len + more <= b->cap) {
        return;
    }
    if (b->off) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap) {
            return;
        }
    }
    cap = b->cap ? b->cap : 2048;
    while (cap < b->len + more) {
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (!p) {
        die("out of memory");
    }
    b->p = p;
    b->cap = cap;
}

static void buf_add(buf_t *b, const void *d, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

static void sample_add(samples_t *s, uint64_t v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof(uint32_t));
        if (!s->v) {
            die("out of memory");
        }
    }
    s->v[s->n++] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(const samples_t *s, double q)
{
    size_t i;

    if (!s->n) {
        return 0;
    }
    i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

/* ---- SHA-1 and base64 (for Sec-WebSocket-Accept, RFC 3174 / 4648) ---------------- */

static void sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t block[64];
    uint64_t bits = (uint64_t)len * 8;
    size_t i, total = ((len + 8) / 64 + 1) * 64;

    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80], a, b, c, d, e;
        for (i = 0; i < 64; i++) {
            size_t k = off + i;
            if (k < len) {
                block[i] = data[k];
            }
            else if (k == len) {
                block[i] = 0x80;
            }
            else if (k >= total - 8) {
                block[i] = (uint8_t)(bits >> (8 * (total - 1 - k)));
            }
            else {
                block[i] = 0;
            }
        }
        for (i = 0; i < 16; i++) {
            w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
                   (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
        }
        for (i = 16; i < 80; i++) {
            uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
            w[i] = x << 1 | x >> 31;
        }
        a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (i = 0; i < 80; i++) {
            uint32_t f, k, t;
            if (i < 20) {
                f = (b & c) | (~b & d), k = 0x5A827999;
            }
            else if (i < 40) {
                f = b ^ c ^ d, k = 0x6ED9EBA1;
            }
            else if (i < 60) {
                f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            }
            else {
                f = b ^ c ^ d, k = 0xCA62C1D6;
            }
            t = (a << 5 | a >> 27) + f + e + k + w[i];
            e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (i = 0; i < 20; i++) {
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63], *out++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63], *out++ = '=', *out++ = '=';
    }
    else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63], *out++ = '=';
    }
    *out = '\0';
}

/* ---- timer heap (open-loop schedule) ------------------------------------------------ */

static conn_t **heap;
static int heap_n;

static void heap_swap(int a, int b)
{
    conn_t *t = heap[a];

    heap[a] = heap[b];
    heap[b] = t;
    heap[a]->heap_i = a;
    heap[b]->heap_i = b;
}

static void heap_up(int i)
{
    while (i > 0 && heap[(i - 1) / 2]->next_ns > heap[i]->next_ns) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap[l]->next_ns < heap[m]->next_ns) {
            m = l;
        }
        if (r < heap_n && heap[r]->next_ns < heap[m]->next_ns) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(i, m);
        i = m;
    }
}

static void heap_push(conn_t *c)
{
    heap[heap_n] = c;
    c->heap_i = heap_n++;
    heap_up(c->heap_i);
}

static conn_t *heap_pop(void)
{
    conn_t *c = heap[0];

    heap_swap(0, --heap_n);
    heap_down(0);
    c->heap_i = -1;
    return c;
}

/* ---- sending --------------------------------------------------------------------- */

static void conn_kill(conn_t *c, const char *why);

static void conn_flush(conn_t *c)
{
    while (c->out.off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
                    c->want_out = 1;
                }
                return;
            }
            conn_kill(c, strerror(errno));
            return;
        }
        c->out.off += (size_t)n;
    }
    c->out.off = c->out.len = 0;
    if (c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = 0;
    }
}

/* Queues one masked client frame (RFC 6455 5.2, 5.3). */
static void ws_frame(conn_t *c, int opcode, const char *data, size_t n)
{
    uint8_t h[14];
    size_t hl = 2, i;
    uint32_t mk = (uint32_t)xrand();
    uint8_t *mask, *dst;

    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    }
    else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    }
    else {
        h[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        }
        hl = 10;
    }
    memcpy(h + hl, &mk, 4);
    mask = h + hl;
    hl += 4;
    buf_reserve(&c->out, hl + n);
    memcpy(c->out.p + c->out.len, h, hl);
    dst = (uint8_t *)c->out.p + c->out.len + hl;
    for (i = 0; i < n; i++) {
        dst[i] = (uint8_t)data[i] ^ mask[i & 3];
    }
    c->out.len += hl + n;
}

static int user_content(char *out, size_t cap, uint32_t seq)
{
    if (opt.delay_us > 0) {
        return snprintf(out, cap, "%s %u [[fake tokens=%d delay_us=%d]]", opt.prompt, seq,
                        opt.tokens, opt.delay_us);
    }
    return snprintf(out, cap, "%s %u [[fake tokens=%d]]", opt.prompt, seq, opt.tokens);
}

static void turn_send(conn_t *c, uint64_t now)
{
    char content[512], msg[768], hdr[512];
    int n;

    c->seq++;
    user_content(content, sizeof(content), c->seq);
    if (opt.mode == M_DIRECT) {
        n = snprintf(msg, sizeof(msg),
                     "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
                     "a helpful assistant.\"},{\"role\":\"user\",\"content\":\"%s\"}],"
                     "\"stream\":true,\"options\":{\"num_ctx\":8192},\"keep_alive\":\"30m\"}",
                     opt.model, content);
        int hn = snprintf(hdr, sizeof(hdr),
                          "POST /api/chat HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: loadgen\r\n"
                          "Content-Type: application/json\r\nAccept: application/x-ndjson\r\n"
                          "Content-Length: %d\r\n\r\n",
                          opt.host, opt.port, n);
        buf_add(&c->out, hdr, (size_t)hn);
        buf_add(&c->out, msg, (size_t)n);
        c->hstate = 0;
        c->in.off = 0;
    }
    else {
        n = snprintf(msg, sizeof(msg), "{\"type\":\"message\",\"content\":\"%s\",\"id\":%u}",
                     content, c->seq);
        ws_frame(c, 1, msg, (size_t)n);
    }
    c->busy = 1;
    c->pending = 0;
    c->tokens_seen = 0;
    c->sent_ns = now;
    turns_inflight++;
    conn_flush(c);
}

static void schedule_next(conn_t *c, uint64_t now);

/* A turn ended (ok = answer complete). */
static void turn_done(conn_t *c, uint64_t now, int ok)
{
    if (!c->busy) {
        return;
    }
    c->busy = 0;
    turns_inflight--;
    turns_done++;
    if (!ok) {
        errors++;
    }
    if (measuring && c->sent_ns >= t_measure0 && c->sent_ns < t_measure1) {
        if (ok) {
            sample_add(&lat_us, (now - c->sent_ns + 500) / 1000);
        }
    }
    if (now >= t_measure0 && now < t_measure1 && measuring && ok) {
        turns_window++;
    }
    if (stop_sending || opt.mode == M_IDLE) {
        return;
    }
    if (opt.rate <= 0) {
        turn_send(c, now);
    }
    else if (c->pending) {
        late++;
        turn_send(c, now);
        schedule_next(c, now);
    }
}

static void schedule_next(conn_t *c, uint64_t now)
{
    uint64_t period = (uint64_t)(1e9 * opt.conns / opt.rate);

    if (c->heap_i >= 0) {
        return;
    }
    c->next_ns += period;
    if (c->next_ns + period < now) {
        c->next_ns = now; /* far behind: do not burst */
    }
    heap_push(c);
}

/* ---- receiving: WebSocket --------------------------------------------------------------- */

/* Value of a "t<ns>" token at the start of a JSON string value after key. */
static int token_stamp(const char *p, size_t n, const char *key, uint64_t *ns)
{
    const char *k = memmem(p, n, key, strlen(key)), *end = p + n;
    uint64_t v = 0;

    if (!k) {
        return 0;
    }
    k += strlen(key);
    if (k < end && *k == ' ') {
        k++;
    }
    if (k >= end || *k != 't') {
        return 0;
    }
    for (k++; k < end && *k >= '0' && *k <= '9'; k++) {
        v = v * 10 + (uint64_t)(*k - '0');
    }
    *ns = v;
    return 1;
}

static void relay_sample(conn_t *c, const char *p, size_t n, const char *key, uint64_t now)
{
    uint64_t ts;

    c->tokens_seen++;
    if (measuring && c->sent_ns >= t_measure0 && c->sent_ns < t_measure1 &&
        token_stamp(p, n, key, &ts) && now >= ts) {
        sample_add(&relay_ns, now - ts);
    }
}

static void on_text(conn_t *c, const char *p, size_t n, uint64_t now)
{
    static const char pre[] = "{\"type\":\"";
    const char *t;

    if (n < sizeof(pre) - 1 || memcmp(p, pre, sizeof(pre) - 1)) {
        protocol_errors++;
        return;
    }
    t = p + sizeof(pre) - 1;
    if (!strncmp(t, "stream\"", 7)) {
        relay_sample(c, p, n, "\"content\":\"", now);
    }
    else if (!strncmp(t, "response\"", 9)) {
        int ok = memmem(p, n, "\"interrupted\":false", 19) != NULL;
        if (!ok && errors_printed < 5) {
            errors_printed++;
            fprintf(stderr, "loadgen: conn %d: unexpected response: %.*s\n", c->idx,
                    (int)(n > 300 ? 300 : n), p);
        }
        turn_done(c, now, ok);
    }
    else if (!strncmp(t, "error\"", 6)) {
        if (errors_printed < 5) {
            errors_printed++;
            fprintf(stderr, "loadgen: conn %d: %.*s\n", c->idx, (int)(n > 300 ? 300 : n), p);
        }
        turn_done(c, now, 0);
    }
    else if (!strncmp(t, "hello\"", 6)) {
        if (c->state != S_OPEN) {
            c->state = S_OPEN;
            ws_open++;
        }
    }
    else if (!strncmp(t, "pong\"", 5)) {
        pongs_rcvd++;
    }
}

/* Parses every complete server frame in c->in. */
static void ws_parse(conn_t *c, uint64_t now)
{
    for (;;) {
        const uint8_t *h = (const uint8_t *)c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off, hl = 2;
        uint64_t plen;
        int fin, op;

        if (avail < 2) {
            break;
        }
        fin = h[0] & 0x80;
        op = h[0] & 0x0F;
        if (h[1] & 0x80) {
            conn_kill(c, "masked server frame");
            return;
        }
        plen = h[1] & 0x7F;
        if (plen == 126) {
            if (avail < 4) {
                break;
            }
            plen = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        }
        else if (plen == 127) {
            if (avail < 10) {
                break;
            }
            plen = 0;
            for (int i = 0; i < 8; i++) {
                plen = plen << 8 | h[2 + i];
            }
            hl = 10;
        }
        if (plen > (64u << 20)) {
            conn_kill(c, "frame too large");
            return;
        }
        if (avail < hl + plen) {
            break;
        }
        const char *pl = (const char *)h + hl;
        c->in.off += hl + (size_t)plen;
        switch (op) {
        case 0x0: /* continuation */
            buf_add(&c->msg, pl, (size_t)plen);
            if (fin) {
                if (c->msg_op == 1) {
                    on_text(c, c->msg.p, c->msg.len, now);
                }
                c->msg.len = 0;
            }
            break;
        case 0x1:
        case 0x2:
            if (fin) {
                if (op == 1) {
                    on_text(c, pl, (size_t)plen, now);
                }
            }
            else {
                c->msg.len = 0;
                c->msg_op = op;
                buf_add(&c->msg, pl, (size_t)plen);
            }
            break;
        case 0x8:
            conn_kill(c, "server closed the WebSocket");
            return;
        case 0x9:
            server_pings++;
            ws_frame(c, 0xA, pl, (size_t)plen);
            conn_flush(c);
            break;
        case 0xA:
            pongs_rcvd++;
            break;
        default:
            conn_kill(c, "bad opcode");
            return;
        }
        if (c->state == S_DEAD) {
            return;
        }
    }
    if (c->in.off == c->in.len) {
        c->in.off = c->in.len = 0;
    }
}

static void ws_handshake_reply(conn_t *c, uint64_t now)
{
    char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4), want[64], *acc;
    uint8_t dig[20];
    char cat[128];

    if (!end) {
        if (c->in.len > 16384) {
            conn_kill(c, "handshake reply too large");
        }
        return;
    }
    *end = '\0';
    if (strncmp(c->in.p, "HTTP/1.1 101", 12)) {
        char *eol = strstr(c->in.p, "\r\n");
        if (eol) {
            *eol = '\0';
        }
        connect_fail++;
        fprintf(stderr, "loadgen: conn %d: handshake refused: %s\n", c->idx, c->in.p);
        conn_kill(c, NULL);
        return;
    }
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1((const uint8_t *)cat, strlen(cat), dig);
    base64(dig, 20, want);
    acc = strcasestr(c->in.p, "\r\nSec-WebSocket-Accept:");
    if (!acc) {
        conn_kill(c, "no Sec-WebSocket-Accept");
        return;
    }
    acc += 23;
    while (*acc == ' ') {
        acc++;
    }
    if (strncmp(acc, want, strlen(want))) {
        conn_kill(c, "wrong Sec-WebSocket-Accept");
        return;
    }
    c->in.off = (size_t)(end + 4 - c->in.p);
    c->state = S_UPGRADED; /* waiting for the hello frame */
    ws_parse(c, now);
}

/* ---- receiving: direct HTTP ------------------------------------------------------------ */

static void http_parse(conn_t *c, uint64_t now)
{
    for (;;) {
        char *p = c->in.p + c->in.off, *eol;
        size_t avail = c->in.len - c->in.off;

        if (!c->busy) {
            if (avail) {
                conn_kill(c, "data without a request");
            }
            return;
        }
        switch (c->hstate) {
        case 0:
            eol = memmem(p, avail, "\r\n\r\n", 4);
            if (!eol) {
                return;
            }
            c->http_status = atoi(p + 9);
            if (strncmp(p, "HTTP/1.1 ", 9) || !memmem(p, (size_t)(eol - p), "chunked", 7)) {
                conn_kill(c, "not a chunked HTTP/1.1 reply");
                return;
            }
            c->in.off += (size_t)(eol + 4 - p);
            c->hstate = 1;
            break;
        case 1:
            eol = memmem(p, avail, "\r\n", 2);
            if (!eol) {
                return;
            }
            c->chunk_left = strtoul(p, NULL, 16);
            c->in.off += (size_t)(eol + 2 - p);
            c->hstate = c->chunk_left ? 2 : 4;
            break;
        case 2:
            if (avail < c->chunk_left) {
                return; /* the fake sends one line per chunk: wait for it whole */
            }
            if (memmem(p, c->chunk_left, "\"done\":false", 12)) {
                relay_sample(c, p, c->chunk_left, "\"content\":\"", now);
            }
            c->in.off += c->chunk_left;
            c->hstate = 3;
            break;
        case 3:
            if (avail < 2) {
                return;
            }
            c->in.off += 2;
            c->hstate = 1;
            break;
        case 4:
            if (avail < 2) {
                return;
            }
            c->in.off += 2;
            c->hstate = 0;
            c->in.off = c->in.len = 0;
            turn_done(c, now, c->http_status == 200 && c->tokens_seen == opt.tokens);
            return;
        }
    }
}

/* ---- connections ---------------------------------------------------------------------- */

static int n_pending_connects;

static void conn_start(conn_t *c)
{
    struct sockaddr_in sa;
    struct epoll_event ev;
    int one = 1;

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        die("socket: %s (raise ulimit -n)", strerror(errno));
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)opt.port);
    inet_pton(AF_INET, opt.host, &sa.sin_addr);
    c->state = S_CONNECTING;
    c->heap_i = -1;
    n_pending_connects++;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
        c->state = S_DEAD;
        n_pending_connects--;
        connect_fail++;
        close(c->fd);
        c->fd = -1;
        return;
    }
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = c;
    c->want_out = 1;
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void conn_kill(conn_t *c, const char *why)
{
    if (c->state == S_DEAD) {
        return;
    }
    if (why && errors_printed < 5) {
        errors_printed++;
        fprintf(stderr, "loadgen: conn %d closed: %s\n", c->idx, why);
    }
    if (c->state != S_OPEN) {
        n_pending_connects--;
        if (why) {
            connect_fail++;
        }
    }
    else {
        ws_open--;
    }
    if (c->busy) {
        c->busy = 0;
        turns_inflight--;
        errors++;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = S_DEAD;
}

static void on_connected(conn_t *c)
{
    int err = 0;
    socklen_t el = sizeof(err);
    uint8_t k[16];
    char req[512];
    int n;

    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        conn_kill(c, strerror(err));
        return;
    }
    if (opt.mode == M_DIRECT) {
        c->state = S_OPEN;
        n_pending_connects--;
        ws_open++;
        conn_flush(c); /* drops EPOLLOUT */
        return;
    }
    for (int i = 0; i < 16; i++) {
        k[i] = (uint8_t)xrand();
    }
    base64(k, 16, c->key);
    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                 "User-Agent: loadgen\r\n\r\n",
                 opt.path, opt.host, opt.port, c->key);
    c->state = S_HANDSHAKE;
    buf_add(&c->out, req, (size_t)n);
    conn_flush(c);
}

static void on_readable(conn_t *c)
{
    uint64_t now;
    int got = 0;

    for (;;) {
        ssize_t n;
        buf_reserve(&c->in, 16384);
        n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
        if (n > 0) {
            c->in.len += (size_t)n;
            got = 1;
            if ((size_t)n < 16384) {
                break;
            }
            continue;
        }
        if (n == 0) {
            conn_kill(c, c->busy || c->state != S_OPEN ? "server closed the connection" : NULL);
            return;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            break;
        }
        conn_kill(c, strerror(errno));
        return;
    }
    if (!got) {
        return;
    }
    now = now_ns(); /* one receive time for everything this read brought */
    if (opt.mode == M_DIRECT) {
        http_parse(c, now);
    }
    else if (c->state == S_HANDSHAKE) {
        ws_handshake_reply(c, now);
        if (c->state == S_OPEN) {
            n_pending_connects--;
        }
    }
    else {
        int was_open = c->state == S_OPEN;
        ws_parse(c, now);
        if (!was_open && c->state == S_OPEN) {
            n_pending_connects--;
        }
    }
}

/* ---- main loop ------------------------------------------------------------------------ */

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
            if (c->state == S_CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
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
                    c->ping_ns = now + (uint64_t)(opt.ping_s * 1e9 * (0.5 + (double)(xrand() % 1000) / 1000.0));
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

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void write_samples(const char *suffix, samples_t *s)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s.%s", opt.samples_out, suffix);
    f = fopen(path, "wb");
    if (!f) {
        die("%s: %s", path, strerror(errno));
    }
    if (s->n && fwrite(s->v, sizeof(uint32_t), s->n, f) != s->n) {
        die("%s: short write", path);
    }
    fclose(f);
}

static void usage(void)
{
    fprintf(stderr,
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
            opt.mode = !strcmp(v, "ws") ? M_WS : !strcmp(v, "direct") ? M_DIRECT
                                              : !strcmp(v, "idle")  ? M_IDLE
                                                                     : -1;
            if (opt.mode < 0) {
                usage();
            }
        }
        else if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--conns")) opt.conns = atoi(v);
        else if (!strcmp(a, "--parallel")) opt.parallel = atoi(v);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--rate")) opt.rate = atof(v);
        else if (!strcmp(a, "--tokens")) opt.tokens = atoi(v);
        else if (!strcmp(a, "--delay-us")) opt.delay_us = atoi(v);
        else if (!strcmp(a, "--prompt")) opt.prompt = v;
        else if (!strcmp(a, "--model")) opt.model = v;
        else if (!strcmp(a, "--hold")) opt.hold = atof(v);
        else if (!strcmp(a, "--ping-s")) opt.ping_s = atof(v);
        else if (!strcmp(a, "--sample")) opt.sample = atoi(v);
        else if (!strcmp(a, "--samples-out")) opt.samples_out = v;
        else if (!strcmp(a, "--label")) opt.label = v;
        else usage();
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
        int step = opt.sample > 0 && opt.sample < opt.conns ? opt.conns / opt.sample : 1, sent = 0;
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
    qsort(lat_us.v, lat_us.n, sizeof(uint32_t), cmp_u32);
    qsort(relay_ns.v, relay_ns.n, sizeof(uint32_t), cmp_u32);
    {
        double secs = opt.mode == M_IDLE ? (t_measure1 - t_measure0) / 1e9 : opt.duration;
        printf("RESULT label=%s mode=%s conns=%d open=%llu connect_failed=%llu rate=%g "
               "tokens=%d delay_us=%d secs=%.3f turns=%llu turns_per_s=%.1f errors=%llu "
               "late=%llu lat_n=%zu lat_min_us=%.0f lat_p50_us=%.0f lat_p90_us=%.0f "
               "lat_p99_us=%.0f lat_max_us=%.0f relay_n=%zu relay_p50_us=%.1f "
               "relay_p99_us=%.1f relay_max_us=%.1f cpu_s=%.3f pings=%llu pongs=%llu "
               "server_pings=%llu protocol_errors=%llu\n",
               opt.label, opt.mode == M_WS ? "ws" : opt.mode == M_DIRECT ? "direct" : "idle",
               opt.conns, (unsigned long long)ws_open, (unsigned long long)connect_fail,
               opt.mode == M_IDLE ? 0 : opt.rate, opt.tokens, opt.delay_us, secs,
               (unsigned long long)(opt.mode == M_IDLE ? lat_us.n : turns_window),
               (opt.mode == M_IDLE ? lat_us.n : turns_window) / secs,
               (unsigned long long)errors, (unsigned long long)late, lat_us.n,
               lat_us.n ? (double)lat_us.v[0] : 0, pct(&lat_us, 0.5), pct(&lat_us, 0.9),
               pct(&lat_us, 0.99), lat_us.n ? (double)lat_us.v[lat_us.n - 1] : 0, relay_ns.n,
               pct(&relay_ns, 0.5) / 1000, pct(&relay_ns, 0.99) / 1000,
               relay_ns.n ? relay_ns.v[relay_ns.n - 1] / 1000.0 : 0, cpu1 - cpu0,
               (unsigned long long)pings_sent, (unsigned long long)pongs_rcvd,
               (unsigned long long)server_pings, (unsigned long long)protocol_errors);
        fflush(stdout);
    }
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
