/* test_ws_util.h - helpers shared by the test_ws_*.c unit tests of chat_ws,
 * the RFC 6455 server message layer: recording callbacks, client and server
 * frame builders, and the case runner. Header-only (static).
 *
 * Cases follow Autobahn|Testsuite sections 1-7 (and 9 for sizes). Each case
 * builds masked client frames, states the exact bytes the server must send
 * and the callbacks it must make, and is run in every feeding mode: whole,
 * one byte at a time, split in two at every offset (sampled for big
 * inputs), random chunks, and each of those again with on_message pausing
 * after every message (resumed at once). All must give identical results.
 */
#ifndef TEST_WS_UTIL_H
#define TEST_WS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/common.h"
#include "chat/utf8.h"
#include "chat/ws.h"

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d}; /* RFC 6455 5.7 */

/* ---- recording callbacks ------------------------------------------------ */

typedef struct {
    chat_buf_t out; /* every byte the server sent */
    chat_buf_t ev;  /* log of callbacks, one line each */
    int pause;      /* on_message returns 1 */
    int echo;       /* on_message echoes text with chat_ws_send_text */
    int close_on;   /* on_message closes with 1000 at this message number */
    int fail_send;  /* send returns -1 */
    int nmsg;
    chat_ws_t *ws;
} rec_t;

/* Formats a payload for the log: hex if short, else its length + SHA-1. */
static inline void log_payload(chat_buf_t *ev, const uint8_t *p, size_t n)
{
    char hex[2 * 48 + 1];
    if (n <= 48) {
        chat_hex(p, n, hex);
        chat_buf_printf(ev, "%zu:%s\n", n, hex);
    }
    else {
        uint8_t d[20];
        chat_sha1(p, n, d);
        chat_hex(d, 20, hex);
        chat_buf_printf(ev, "%zu:sha1=%s\n", n, hex);
    }
}

static inline void ev_msg(chat_buf_t *ev, int op, const void *p, size_t n)
{
    chat_buf_printf(ev, "%s ", op == CHAT_WS_OP_TEXT ? "TEXT" : "BINARY");
    log_payload(ev, p, n);
}

static inline void ev_pong(chat_buf_t *ev, const void *p, size_t n)
{
    chat_buf_puts(ev, "PONG ");
    log_payload(ev, p, n);
}

static inline void ev_close(chat_buf_t *ev, uint16_t code, const void *p, size_t n)
{
    chat_buf_printf(ev, "CLOSE %u ", (unsigned)code);
    log_payload(ev, p, n);
}

static inline int r_send(void *baton, const uint8_t *data, size_t len)
{
    rec_t *r = baton;
    if (r->fail_send) {
        return -1;
    }
    assert_int_equal(chat_buf_append(&r->out, data, len), CHAT_OK);
    return 0;
}

static inline int r_message(void *baton, int opcode, const uint8_t *data, size_t len)
{
    rec_t *r = baton;
    if (opcode == CHAT_WS_OP_TEXT) {
        assert_true(chat_utf8_valid(data, len));
    }
    ev_msg(&r->ev, opcode, data, len);
    r->nmsg++;
    if (r->echo && opcode == CHAT_WS_OP_TEXT) {
        assert_int_equal(chat_ws_send_text(r->ws, (const char *)data, len), CHAT_OK);
    }
    if (r->close_on && r->nmsg == r->close_on) {
        assert_int_equal(chat_ws_close(r->ws, 1000, "bye"), CHAT_OK);
    }
    return r->pause;
}

static inline void r_pong(void *baton, const uint8_t *data, size_t len)
{
    ev_pong(&((rec_t *)baton)->ev, data, len);
}

static inline void r_close(void *baton, uint16_t code, const char *reason, size_t len)
{
    rec_t *r = baton;
    assert_non_null(reason);
    assert_int_equal(reason[len], '\0');
    ev_close(&r->ev, code, reason, len);
}

static const chat_ws_callbacks_t CB = {r_send, r_message, r_pong, r_close};

/* ---- frame builders ------------------------------------------------------- */

static inline void put_len(chat_buf_t *b, uint8_t b1, uint64_t n)
{
    uint8_t h[9];
    int i;
    if (n < 126) {
        h[0] = b1 | (uint8_t)n;
        chat_buf_append(b, h, 1);
    }
    else if (n < 65536) {
        h[0] = b1 | 126;
        h[1] = (uint8_t)(n >> 8);
        h[2] = (uint8_t)n;
        chat_buf_append(b, h, 3);
    }
    else {
        h[0] = b1 | 127;
        for (i = 0; i < 8; i++) {
            h[1 + i] = (uint8_t)(n >> (56 - 8 * i));
        }
        chat_buf_append(b, h, 9);
    }
}

/* A client frame: b0 is the first header byte (FIN|RSV|opcode). */
static inline void raw_frame(chat_buf_t *b, uint8_t b0, int masked, const void *p,
                             size_t n)
{
    const uint8_t *s = p;
    size_t i;
    chat_buf_append(b, &b0, 1);
    put_len(b, masked ? 0x80 : 0, n);
    if (masked) {
        chat_buf_append(b, MASK, 4);
    }
    assert_int_equal(chat_buf_reserve(b, n), CHAT_OK);
    for (i = 0; i < n; i++) {
        b->data[b->len + i] = (char)(masked ? s[i] ^ MASK[i % 4] : s[i]);
    }
    b->len += n;
}

/* A masked client frame. */
static inline void cf(chat_buf_t *b, int fin, int rsv, int op, const void *p, size_t n)
{
    raw_frame(b, (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op), 1, p, n);
}

static inline void cf_close(chat_buf_t *b, uint16_t code, const char *reason)
{
    uint8_t p[200];
    size_t rl = strlen(reason);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rl);
    cf(b, 1, 0, CHAT_WS_OP_CLOSE, p, 2 + rl);
}

/* A server frame (unmasked, FIN). */
static inline void sf(chat_buf_t *b, int op, const void *p, size_t n)
{
    raw_frame(b, (uint8_t)(0x80 | op), 0, p, n);
}

static inline void sf_close(chat_buf_t *b, uint16_t code)
{
    uint8_t p[2] = {(uint8_t)(code >> 8), (uint8_t)code};
    sf(b, CHAT_WS_OP_CLOSE, p, 2);
}

/* ---- the case runner --------------------------------------------------------- */

typedef struct {
    const char *name;
    chat_buf_t in; /* client bytes */
    chat_ws_limits_t lim;
    chat_buf_t want_out; /* exact server bytes */
    chat_buf_t want_ev;  /* exact callback log */
    chat_ws_state_t want_state;
    uint16_t want_sent, want_recv;
    int echo;
} tc_t;

static inline void tc_init(tc_t *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->lim.max_message = 65536;
    t->lim.max_fragments = 1024;
    t->want_state = CHAT_WS_OPEN;
}

static inline void tc_free(tc_t *t)
{
    chat_buf_free(&t->in);
    chat_buf_free(&t->want_out);
    chat_buf_free(&t->want_ev);
}

/* Expect a failure with code (sent close frame, CLOSED). */
static inline void tc_fail(tc_t *t, uint16_t code)
{
    sf_close(&t->want_out, code);
    t->want_state = CHAT_WS_CLOSED;
    t->want_sent = code;
}

enum { M_WHOLE, M_BYTES, M_SPLIT, M_RANDOM };

static uint32_t rng = 2463534242u;
static inline uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* pause 1: resume at once; pause 2: keep feeding while paused (feed goes
 * on processing, behind what was buffered) and resume only at the end. */
static inline chat_status_t feed(rec_t *r, const uint8_t *p, size_t n)
{
    chat_status_t st = chat_ws_feed(r->ws, p, n);
    while (st == CHAT_EAGAIN && r->pause == 1) {
        st = chat_ws_resume(r->ws);
    }
    if (st == CHAT_EAGAIN) {
        assert_int_equal(r->pause, 2);
    }
    return st;
}

static inline void show_diff(const char *what, const tc_t *t, const char *mode,
                             size_t arg, const chat_buf_t *got, const chat_buf_t *want)
{
    print_message("case '%s' mode %s(%zu): %s differ (got %zu bytes, want %zu)\n",
                  t->name, mode, arg, what, got->len, want->len);
    if (got->len < 400 && want->len < 400) {
        char g[801], w[801];
        chat_hex((const uint8_t *)got->data, got->len, g);
        chat_hex((const uint8_t *)want->data, want->len, w);
        print_message("  got:  %s\n  want: %s\n", got->len ? g : "", want->len ? w : "");
        print_message("  got text:\n%s  want text:\n%s", got->len ? got->data : "",
                      want->len ? want->data : "");
    }
}

static inline void run_one(const tc_t *t, int mode, size_t arg, int pause)
{
    static const char *names[] = {"whole", "bytes", "split", "random"};
    const uint8_t *in = (const uint8_t *)t->in.data;
    size_t n = t->in.len, i;
    chat_status_t st = CHAT_OK;
    rec_t r;
    char mname[32];

    memset(&r, 0, sizeof(r));
    r.pause = pause;
    r.echo = t->echo;
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &t->lim), CHAT_OK);
    snprintf(mname, sizeof(mname), "%s%s", names[mode],
             pause == 1   ? "+pause"
             : pause == 2 ? "+lazy-pause"
                          : "");

    switch (mode) {
    case M_WHOLE:
        st = feed(&r, in, n);
        break;
    case M_BYTES:
        st = feed(&r, in, 0);
        for (i = 0; i < n; i++) {
            st = feed(&r, in + i, 1);
        }
        break;
    case M_SPLIT:
        st = feed(&r, in, arg);
        st = feed(&r, in + arg, n - arg);
        break;
    case M_RANDOM:
        rng = (uint32_t)arg * 2654435761u + 1;
        for (i = 0; i < n;) {
            size_t k = (rnd() % 3 == 0) ? rnd() % 4096 : rnd() % 20;
            if (k > n - i) {
                k = n - i;
            }
            st = feed(&r, in + i, k);
            i += k;
        }
        break;
    }
    while (st == CHAT_EAGAIN) {
        st = chat_ws_resume(r.ws);
    }
    if (r.out.len != t->want_out.len ||
        (r.out.len && memcmp(r.out.data, t->want_out.data, r.out.len))) {
        show_diff("output bytes", t, mname, arg, &r.out, &t->want_out);
        fail();
    }
    if (r.ev.len != t->want_ev.len ||
        (r.ev.len && memcmp(r.ev.data, t->want_ev.data, r.ev.len))) {
        show_diff("callbacks", t, mname, arg, &r.ev, &t->want_ev);
        fail();
    }
    if (chat_ws_state(r.ws) != t->want_state ||
        chat_ws_sent_close_code(r.ws) != t->want_sent ||
        chat_ws_recv_close_code(r.ws) != t->want_recv) {
        fail_msg("case '%s' mode %s(%zu): state %d sent %u recv %u, want %d %u %u",
                 t->name, mname, arg, chat_ws_state(r.ws), chat_ws_sent_close_code(r.ws),
                 chat_ws_recv_close_code(r.ws), t->want_state, t->want_sent,
                 t->want_recv);
    }
    if (st != (t->want_state == CHAT_WS_OPEN ? CHAT_OK : CHAT_ECLOSED)) {
        fail_msg("case '%s' mode %s(%zu): last feed returned %d", t->name, mname, arg,
                 st);
    }
    /* Whatever happened, more input changes nothing once closed. */
    if (t->want_state == CHAT_WS_CLOSED) {
        size_t before = r.out.len;
        assert_int_equal(chat_ws_feed(r.ws, in, n), CHAT_ECLOSED);
        assert_int_equal(chat_ws_resume(r.ws), CHAT_ECLOSED);
        assert_int_equal(r.out.len, before);
    }
    chat_ws_destroy(r.ws);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);
}

static inline void tc_run(tc_t *t)
{
    size_t n = t->in.len, k;
    int pause;

    for (pause = 0; pause <= 2; pause++) {
        run_one(t, M_WHOLE, 0, pause);
        run_one(t, M_BYTES, 0, pause);
        for (k = 0; k <= n; k++) {
            /* big inputs: every offset near the ends, sampled in between */
            if (n > 2048 && k > 300 && k + 300 < n && k % 997) {
                continue;
            }
            run_one(t, M_SPLIT, k, pause);
        }
        for (k = 0; k < 8; k++) {
            run_one(t, M_RANDOM, k, pause);
        }
    }
    tc_free(t);
}

/* A valid UTF-8 text (Greek "kosme"), used by the 6.x and 7.x cases. */
#define KOSME "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

/* ---- what the server sends ----------------------------------------------------- */

static inline void expect_out(rec_t *r, const void *bytes, size_t n)
{
    assert_int_equal(r->out.len, n);
    assert_memory_equal(r->out.data, bytes, n);
    r->out.len = 0;
}

static inline void expect_head(rec_t *r, const void *head, size_t hn, size_t total)
{
    assert_int_equal(r->out.len, total);
    assert_memory_equal(r->out.data, head, hn);
    r->out.len = 0;
}

#endif
