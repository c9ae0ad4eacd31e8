/* loadgen.h - what the load generator's files share (bench/loadgen*.c).
 *
 * The load generator is one program built from five files, each with one
 * job (what it does as a whole is described at the top of loadgen.c):
 *
 *   loadgen.c         options, the run's phases (main), the event loop, EVENT lines
 *   loadgen_conn.c    connections and turns: sockets, buffers, sending, the
 *                     open-loop schedule, reading and handing bytes on
 *   loadgen_ws.c      the WebSocket client: handshake (SHA-1, base64), frames
 *   loadgen_answer.c  answers read: chat frames (ws), chunked NDJSON (direct),
 *                     relay stamps of the tokens
 *   loadgen_stats.c   what is measured: the window, counters, samples, the
 *                     RESULT line and the raw sample files
 *
 * Standalone C (no project header, no library): `make bench-bin` builds it.
 */
#ifndef LOADGEN_H
#define LOADGEN_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>

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
    int msg_op;  /* opcode of the fragmented message in progress */
    int busy;    /* a turn is in flight */
    int pending; /* its scheduled time came while busy */
    uint64_t sent_ns, next_ns, ping_ns;
    int heap_i;
    uint32_t seq;
    int tokens_seen;
    /* direct mode: response parser */
    int hstate; /* 0 headers, 1 chunk size, 2 chunk data, 3 data CRLF, 4 trailer */
    size_t chunk_left;
    int http_status;
} conn_t;

/* the command line (loadgen.c) */
struct loadgen_opt {
    int mode;
    const char *host;
    int port;
    const char *path;
    int conns;
    int parallel;
    double warmup, duration, rate, hold, ping_s;
    int tokens, delay_us, sample, sync;
    const char *prompt, *samples_out, *label, *model;
};
extern struct loadgen_opt opt;

/* ---- loadgen.c: utilities ---- */
uint64_t now_ns(void);
uint64_t xrand(void);
_Noreturn void die(const char *fmt, ...);

/* ---- loadgen_conn.c: connections and turns ---- */
extern conn_t *conns;
extern int epfd;
extern conn_t **heap; /* the open-loop schedule: a min-heap on next_ns */
extern int heap_n;
extern int n_pending_connects;

void buf_reserve(buf_t *b, size_t more);
void buf_add(buf_t *b, const void *d, size_t n);
void buf_free(buf_t *b);
void heap_push(conn_t *c);
conn_t *heap_pop(void);
void conn_start(conn_t *c);
void conn_kill(conn_t *c, const char *why);
void conn_flush(conn_t *c);
void on_connected(conn_t *c);
void on_readable(conn_t *c);
void turn_send(conn_t *c, uint64_t now);
void turn_done(conn_t *c, uint64_t now, int ok);
void schedule_next(conn_t *c, uint64_t now);

/* ---- loadgen_ws.c: the WebSocket client ---- */
void ws_frame(conn_t *c, int opcode, const char *data, size_t n);
void ws_handshake_start(conn_t *c);
void ws_handshake_reply(conn_t *c, uint64_t now);
void ws_parse(conn_t *c, uint64_t now);

/* ---- loadgen_answer.c: answers read ---- */
void on_text(conn_t *c, const char *p, size_t n, uint64_t now);
void http_parse(conn_t *c, uint64_t now);

/* ---- loadgen_stats.c: what is measured ---- */
typedef struct {
    uint32_t *v;
    size_t n, cap;
} samples_t;

extern uint64_t t_measure0, t_measure1; /* the measurement window */
extern int measuring, stop_sending;
extern samples_t lat_us, relay_ns;
extern uint64_t turns_done, turns_window, errors, late, connect_fail, ws_open,
    protocol_errors, pings_sent, pongs_rcvd, server_pings, turns_inflight;
extern int errors_printed;

void sample_add(samples_t *s, uint64_t v);
double cpu_s(void);
void result_print(double cpu);
void write_samples(const char *suffix, samples_t *s);

#endif
