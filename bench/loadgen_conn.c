/* loadgen_conn.c - the load generator's connections and turns: sockets
 * opened (at most --parallel connecting at a time, see loadgen.c's loop),
 * output buffered and flushed with EPOLLOUT while the socket is full,
 * input read and handed to the protocol (loadgen_ws.c, loadgen_answer.c),
 * a turn sent and ended, the next one sent at once (closed loop) or at its
 * time on the open-loop schedule (a min-heap of the connections).
 */
#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

conn_t *conns;
int epfd;

/* ---- buffers ------------------------------------------------------------------------
 */

void buf_reserve(buf_t *b, size_t more)
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

void buf_add(buf_t *b, const void *d, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

void buf_free(buf_t *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

/* ---- timer heap (open-loop schedule) ------------------------------------------------
 */

conn_t **heap;
int heap_n;

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

void heap_push(conn_t *c)
{
    heap[heap_n] = c;
    c->heap_i = heap_n++;
    heap_up(c->heap_i);
}

conn_t *heap_pop(void)
{
    conn_t *c = heap[0];

    heap_swap(0, --heap_n);
    heap_down(0);
    c->heap_i = -1;
    return c;
}

/* ---- sending --------------------------------------------------------------------- */

void conn_flush(conn_t *c)
{
    while (c->out.off < c->out.len) {
        ssize_t n =
            send(c->fd, c->out.p + c->out.off, c->out.len - c->out.off, MSG_NOSIGNAL);
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

/* ---- turns ------------------------------------------------------------------------ */

static int user_content(char *out, size_t cap, uint32_t seq)
{
    if (opt.delay_us > 0) {
        return snprintf(out, cap, "%s %u [[fake tokens=%d delay_us=%d]]", opt.prompt, seq,
                        opt.tokens, opt.delay_us);
    }
    return snprintf(out, cap, "%s %u [[fake tokens=%d]]", opt.prompt, seq, opt.tokens);
}

void turn_send(conn_t *c, uint64_t now)
{
    char content[512], msg[768], hdr[512];
    int n;

    c->seq++;
    user_content(content, sizeof(content), c->seq);
    if (opt.mode == M_DIRECT) {
        n = snprintf(
            msg, sizeof(msg),
            "{\"model\":\"%s\",\"messages\":[{\"role\":\"system\",\"content\":\"You are "
            "a helpful assistant.\"},{\"role\":\"user\",\"content\":\"%s\"}],"
            "\"stream\":true,\"options\":{\"num_ctx\":8192},\"keep_alive\":\"30m\"}",
            opt.model, content);
        int hn =
            snprintf(hdr, sizeof(hdr),
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
        n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"message\",\"content\":\"%s\",\"id\":%u}", content,
                     c->seq);
        ws_frame(c, 1, msg, (size_t)n);
    }
    c->busy = 1;
    c->pending = 0;
    c->tokens_seen = 0;
    c->sent_ns = now;
    turns_inflight++;
    conn_flush(c);
}

/* A turn ended (ok = answer complete). */
void turn_done(conn_t *c, uint64_t now, int ok)
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

void schedule_next(conn_t *c, uint64_t now)
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

/* ---- connections ----------------------------------------------------------------------
 */

int n_pending_connects;

void conn_start(conn_t *c)
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

void conn_kill(conn_t *c, const char *why)
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

void on_connected(conn_t *c)
{
    int err = 0;
    socklen_t el = sizeof(err);

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
    ws_handshake_start(c);
}

void on_readable(conn_t *c)
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
            conn_kill(c, c->busy || c->state != S_OPEN ? "server closed the connection"
                                                       : NULL);
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
