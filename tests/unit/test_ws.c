/* Unit tests: chat_ws - the RFC 6455 server message layer.
 *
 * Cases follow Autobahn|Testsuite sections 1-7 (and 9 for sizes). Each case
 * builds masked client frames, states the exact bytes the server must send
 * and the callbacks it must make, and is run in every feeding mode: whole,
 * one byte at a time, split in two at every offset (sampled for big
 * inputs), random chunks, and each of those again with on_message pausing
 * after every message (resumed at once). All must give identical results.
 */
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
static void log_payload(chat_buf_t *ev, const uint8_t *p, size_t n)
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

static void ev_msg(chat_buf_t *ev, int op, const void *p, size_t n)
{
    chat_buf_printf(ev, "%s ", op == CHAT_WS_OP_TEXT ? "TEXT" : "BINARY");
    log_payload(ev, p, n);
}

static void ev_pong(chat_buf_t *ev, const void *p, size_t n)
{
    chat_buf_puts(ev, "PONG ");
    log_payload(ev, p, n);
}

static void ev_close(chat_buf_t *ev, uint16_t code, const void *p, size_t n)
{
    chat_buf_printf(ev, "CLOSE %u ", (unsigned)code);
    log_payload(ev, p, n);
}

static int r_send(void *baton, const uint8_t *data, size_t len)
{
    rec_t *r = baton;
    if (r->fail_send) {
        return -1;
    }
    assert_int_equal(chat_buf_append(&r->out, data, len), CHAT_OK);
    return 0;
}

static int r_message(void *baton, int opcode, const uint8_t *data, size_t len)
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

static void r_pong(void *baton, const uint8_t *data, size_t len)
{
    ev_pong(&((rec_t *)baton)->ev, data, len);
}

static void r_close(void *baton, uint16_t code, const char *reason, size_t len)
{
    rec_t *r = baton;
    assert_non_null(reason);
    assert_int_equal(reason[len], '\0');
    ev_close(&r->ev, code, reason, len);
}

static const chat_ws_callbacks_t CB = {r_send, r_message, r_pong, r_close};

/* ---- frame builders ------------------------------------------------------- */

static void put_len(chat_buf_t *b, uint8_t b1, uint64_t n)
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
static void raw_frame(chat_buf_t *b, uint8_t b0, int masked, const void *p, size_t n)
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
static void cf(chat_buf_t *b, int fin, int rsv, int op, const void *p, size_t n)
{
    raw_frame(b, (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | op), 1, p, n);
}

static void cf_close(chat_buf_t *b, uint16_t code, const char *reason)
{
    uint8_t p[200];
    size_t rl = strlen(reason);
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    memcpy(p + 2, reason, rl);
    cf(b, 1, 0, CHAT_WS_OP_CLOSE, p, 2 + rl);
}

/* A server frame (unmasked, FIN). */
static void sf(chat_buf_t *b, int op, const void *p, size_t n)
{
    raw_frame(b, (uint8_t)(0x80 | op), 0, p, n);
}

static void sf_close(chat_buf_t *b, uint16_t code)
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

static void tc_init(tc_t *t, const char *name)
{
    memset(t, 0, sizeof(*t));
    t->name = name;
    t->lim.max_message = 65536;
    t->lim.max_fragments = 1024;
    t->want_state = CHAT_WS_OPEN;
}

static void tc_free(tc_t *t)
{
    chat_buf_free(&t->in);
    chat_buf_free(&t->want_out);
    chat_buf_free(&t->want_ev);
}

/* Expect a failure with code (sent close frame, CLOSED). */
static void tc_fail(tc_t *t, uint16_t code)
{
    sf_close(&t->want_out, code);
    t->want_state = CHAT_WS_CLOSED;
    t->want_sent = code;
}

enum { M_WHOLE, M_BYTES, M_SPLIT, M_RANDOM };

static uint32_t rng = 2463534242u;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* pause 1: resume at once; pause 2: keep feeding while paused (feed goes
 * on processing, behind what was buffered) and resume only at the end. */
static chat_status_t feed(rec_t *r, const uint8_t *p, size_t n)
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

static void show_diff(const char *what, const tc_t *t, const char *mode, size_t arg,
                      const chat_buf_t *got, const chat_buf_t *want)
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

static void run_one(const tc_t *t, int mode, size_t arg, int pause)
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

static void tc_run(tc_t *t)
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

/* ---- Autobahn 1.x / 9.x: payload sizes ------------------------------------- */

static void fill(uint8_t *p, size_t n, int text)
{
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = text ? (uint8_t)('a' + i % 26) : (uint8_t)(i * 7 + 3);
    }
}

static void test_sizes(void **state)
{
    static const size_t sizes[] = {0, 1, 125, 126, 127, 128, 4000, 65535, 65536};
    uint8_t *p = malloc(65537);
    size_t i;
    int op;
    (void)state;
    for (op = 1; op <= 2; op++) {
        for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            tc_t t;
            tc_init(&t, "1.x size");
            fill(p, sizes[i], op == 1);
            cf(&t.in, 1, 0, op, p, sizes[i]);
            ev_msg(&t.want_ev, op, p, sizes[i]);
            tc_run(&t);
        }
        {
            /* 9.x: one byte over max_message -> 1009 */
            tc_t t;
            tc_init(&t, "65537 > max_message");
            fill(p, 65537, op == 1);
            cf(&t.in, 1, 0, op, p, 65537);
            tc_fail(&t, 1009);
            tc_run(&t);
        }
    }
    free(p);
}

static void test_size_limits(void **state)
{
    uint8_t p[4096];
    tc_t t;
    (void)state;
    fill(p, sizeof(p), 1);

    /* Decided on the header: only 1 of 65537 payload bytes has arrived. */
    tc_init(&t, "1009 before payload");
    cf(&t.in, 1, 0, 1, p, 0);
    t.in.len = 0;
    {
        uint8_t h[14] = {0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4};
        chat_buf_append(&t.in, h, 14);
        chat_buf_append(&t.in, "x", 1);
    }
    tc_fail(&t, 1009);
    tc_run(&t);

    /* ... and also when the header arrives alone: a client announcing a
     * big frame and then waiting must not be left hanging. */
    tc_init(&t, "1009 on the header alone");
    {
        uint8_t h[14] = {0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 1, 1, 2, 3, 4};
        chat_buf_append(&t.in, h, 14);
    }
    tc_fail(&t, 1009);
    tc_run(&t);

    tc_init(&t, "1009 on a continuation header alone");
    t.lim.max_message = 5000;
    cf(&t.in, 0, 0, 1, p, 3000);
    {
        uint8_t h[8] = {0x80, 0xFE, 0x07, 0xD1, 1, 2, 3, 4}; /* 2001 bytes */
        chat_buf_append(&t.in, h, 8);
    }
    tc_fail(&t, 1009);
    tc_run(&t);

    tc_init(&t, "1002 on an unmasked header alone");
    {
        uint8_t h[2] = {0x81, 0x05};
        chat_buf_append(&t.in, h, 2);
    }
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "1002 on a reserved opcode header alone");
    {
        uint8_t h[6] = {0x83, 0x85, 1, 2, 3, 4};
        chat_buf_append(&t.in, h, 6);
    }
    tc_fail(&t, 1002);
    tc_run(&t);

    /* A header within the limits waits for its payload. */
    tc_init(&t, "header alone within limits waits");
    {
        uint8_t h[6] = {0x81, 0x85, 1, 2, 3, 4};
        chat_buf_append(&t.in, h, 6);
    }
    tc_run(&t);

    /* A 2^62 byte frame is refused without trying to buffer it. */
    tc_init(&t, "1009 huge frame");
    {
        uint8_t h[15] = {0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5};
        chat_buf_append(&t.in, h, 15);
    }
    tc_fail(&t, 1009);
    tc_run(&t);

    /* The limit applies to the reassembled message. */
    tc_init(&t, "fragmented message over max_message");
    t.lim.max_message = 5000;
    cf(&t.in, 0, 0, 1, p, 3000);
    cf(&t.in, 1, 0, 0, p, 2001);
    tc_fail(&t, 1009);
    tc_run(&t);

    tc_init(&t, "fragmented message at max_message");
    t.lim.max_message = 5000;
    cf(&t.in, 0, 0, 1, p, 3000);
    cf(&t.in, 1, 0, 0, p, 2000);
    {
        uint8_t *m = malloc(5000);
        memcpy(m, p, 3000);
        memcpy(m + 3000, p, 2000);
        ev_msg(&t.want_ev, 1, m, 5000);
        free(m);
    }
    tc_run(&t);

    /* Messages after a big one are fine (the buffer is reused/released). */
    tc_init(&t, "big then small");
    t.lim.max_message = 8192;
    cf(&t.in, 0, 0, 2, p, 4096);
    cf(&t.in, 1, 0, 0, p, 4096);
    cf(&t.in, 1, 0, 1, "ok", 2);
    cf(&t.in, 0, 0, 1, "o", 1);
    cf(&t.in, 1, 0, 0, "k", 1);
    {
        uint8_t *m = malloc(8192);
        memcpy(m, p, 4096);
        memcpy(m + 4096, p, 4096);
        ev_msg(&t.want_ev, 2, m, 8192);
        free(m);
    }
    ev_msg(&t.want_ev, 1, "ok", 2);
    ev_msg(&t.want_ev, 1, "ok", 2);
    tc_run(&t);

    /* Many messages in one feed: with pauses most of it waits in the
     * pending buffer, more than wslay pulls at once. */
    tc_init(&t, "many messages");
    {
        int i;
        for (i = 0; i < 40; i++) {
            cf(&t.in, 1, 0, 1, p + i, 1000);
            ev_msg(&t.want_ev, 1, p + i, 1000);
            if (i % 7 == 0) {
                cf(&t.in, 1, 0, 9, p, (size_t)i);
                sf(&t.want_out, 10, p, (size_t)i);
            }
        }
        cf_close(&t.in, 1000, "");
        sf_close(&t.want_out, 1000);
        ev_close(&t.want_ev, 1000, "", 0);
        t.want_state = CHAT_WS_CLOSED;
        t.want_sent = t.want_recv = 1000;
    }
    tc_run(&t);
}

/* ---- framing: masking, length encodings ------------------------------------- */

static void test_framing(void **state)
{
    static const uint8_t rfc_hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                        0x7f, 0x9f, 0x4d, 0x51, 0x58};
    tc_t t;
    (void)state;

    tc_init(&t, "RFC 5.7 masked Hello");
    chat_buf_append(&t.in, rfc_hello, sizeof(rfc_hello));
    ev_msg(&t.want_ev, 1, "Hello", 5);
    tc_run(&t);

    tc_init(&t, "RFC 5.7 fragmented unmasked Hello");
    {
        static const uint8_t f[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
        chat_buf_append(&t.in, f, sizeof(f));
    }
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "unmasked text");
    raw_frame(&t.in, 0x81, 0, "Hello", 5);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "unmasked ping");
    cf(&t.in, 1, 0, 1, "a", 1);
    raw_frame(&t.in, 0x89, 0, "Hello", 5);
    ev_msg(&t.want_ev, 1, "a", 1);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "unmasked close");
    raw_frame(&t.in, 0x88, 0, "\x03\xe8", 2);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "zero mask key is still masked");
    {
        static const uint8_t f[] = {0x81, 0x82, 0, 0, 0, 0, 'h', 'i'};
        chat_buf_append(&t.in, f, sizeof(f));
    }
    ev_msg(&t.want_ev, 1, "hi", 2);
    tc_run(&t);

    tc_init(&t, "non-minimal 16-bit length");
    {
        static const uint8_t f[] = {0x81, 0xFE, 0,   5,   1,   2,  3,
                                    4,    'a',  'b', 'c', 'd', 'e'};
        chat_buf_append(&t.in, f, sizeof(f));
    }
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "non-minimal 64-bit length");
    {
        static const uint8_t f[] = {0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4};
        chat_buf_append(&t.in, f, sizeof(f));
    }
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "64-bit length with the MSB set");
    {
        static const uint8_t f[] = {0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 0};
        chat_buf_append(&t.in, f, sizeof(f));
    }
    tc_fail(&t, 1002);
    tc_run(&t);
}

/* ---- Autobahn 2.x: pings and pongs ------------------------------------------ */

static void test_ping_pong(void **state)
{
    static const uint8_t bin[] = {0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff};
    uint8_t p[126];
    tc_t t;
    int i;
    (void)state;
    memset(p, 0xFE, sizeof(p));

    tc_init(&t, "2.1 ping without payload");
    cf(&t.in, 1, 0, 9, "", 0);
    sf(&t.want_out, 10, "", 0);
    tc_run(&t);

    tc_init(&t, "2.2 ping with text payload");
    cf(&t.in, 1, 0, 9, "Hello, world!", 13);
    sf(&t.want_out, 10, "Hello, world!", 13);
    tc_run(&t);

    tc_init(&t, "2.3 ping with binary payload");
    cf(&t.in, 1, 0, 9, bin, sizeof(bin));
    sf(&t.want_out, 10, bin, sizeof(bin));
    tc_run(&t);

    tc_init(&t, "2.4 ping with 125 bytes");
    cf(&t.in, 1, 0, 9, p, 125);
    sf(&t.want_out, 10, p, 125);
    tc_run(&t);

    tc_init(&t, "2.5 ping with 126 bytes");
    cf(&t.in, 1, 0, 9, p, 126);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "2.7 unsolicited pong without payload");
    cf(&t.in, 1, 0, 10, "", 0);
    ev_pong(&t.want_ev, "", 0);
    tc_run(&t);

    tc_init(&t, "2.8 unsolicited pong with payload");
    cf(&t.in, 1, 0, 10, "unsolicited pong payload", 24);
    ev_pong(&t.want_ev, "unsolicited pong payload", 24);
    tc_run(&t);

    tc_init(&t, "2.9 pong then ping");
    cf(&t.in, 1, 0, 10, "unsolicited", 11);
    cf(&t.in, 1, 0, 9, "ping payload", 12);
    ev_pong(&t.want_ev, "unsolicited", 11);
    sf(&t.want_out, 10, "ping payload", 12);
    tc_run(&t);

    tc_init(&t, "2.10 ten pings");
    for (i = 0; i < 10; i++) {
        char s[16];
        int n = snprintf(s, sizeof(s), "payload-%d", i);
        cf(&t.in, 1, 0, 9, s, (size_t)n);
        sf(&t.want_out, 10, s, (size_t)n);
    }
    tc_run(&t);

    tc_init(&t, "pong with 126 bytes");
    cf(&t.in, 1, 0, 10, p, 126);
    tc_fail(&t, 1002);
    tc_run(&t);
}

/* ---- Autobahn 3.x: reserved bits --------------------------------------------- */

static void test_rsv(void **state)
{
    tc_t t;
    int rsv;
    (void)state;
    for (rsv = 1; rsv <= 7; rsv++) {
        static const int ops[] = {1, 2, 9, 10, 8};
        int op = ops[rsv % 5];
        tc_init(&t, "3.x RSV bits");
        cf(&t.in, 1, 0, 1, "Hello", 5);
        if (op == 8) {
            cf(&t.in, 1, rsv, op, "\x03\xe8", 2);
        }
        else {
            cf(&t.in, 1, rsv, op, "x", 1);
        }
        cf(&t.in, 1, 0, 9, "", 0); /* must not be answered */
        ev_msg(&t.want_ev, 1, "Hello", 5);
        tc_fail(&t, 1002);
        tc_run(&t);
    }
    tc_init(&t, "RSV on a continuation");
    cf(&t.in, 0, 0, 1, "He", 2);
    cf(&t.in, 1, 4, 0, "llo", 3);
    tc_fail(&t, 1002);
    tc_run(&t);
}

/* ---- Autobahn 4.x: reserved opcodes ------------------------------------------ */

static void test_reserved_opcodes(void **state)
{
    static const int ops[] = {3, 4, 5, 6, 7, 11, 12, 13, 14, 15};
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        tc_t t;
        tc_init(&t, "4.x reserved opcode alone");
        cf(&t.in, 1, 0, ops[i], "", 0);
        tc_fail(&t, 1002);
        tc_run(&t);

        tc_init(&t, "4.x reserved opcode between messages");
        cf(&t.in, 1, 0, 1, "Hello", 5);
        cf(&t.in, 1, 0, ops[i], "reserved", 8);
        cf(&t.in, 1, 0, 9, "", 0);
        cf(&t.in, 1, 0, 1, "after", 5);
        ev_msg(&t.want_ev, 1, "Hello", 5);
        tc_fail(&t, 1002);
        tc_run(&t);

        tc_init(&t, "4.x reserved opcode, not FIN");
        cf(&t.in, 0, 0, ops[i], "x", 1);
        tc_fail(&t, 1002);
        tc_run(&t);
    }
}

/* ---- Autobahn 5.x: fragmentation --------------------------------------------- */

static void test_fragmentation(void **state)
{
    tc_t t;
    int i;
    (void)state;

    tc_init(&t, "5.1 fragmented ping");
    cf(&t.in, 0, 0, 9, "frag", 4);
    cf(&t.in, 1, 0, 0, "ment", 4);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.2 fragmented pong");
    cf(&t.in, 0, 0, 10, "frag", 4);
    cf(&t.in, 1, 0, 0, "ment", 4);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "fragmented close");
    cf(&t.in, 0, 0, 8, "\x03", 1);
    cf(&t.in, 1, 0, 0, "\xe8", 1);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.3 text in two fragments");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_run(&t);

    tc_init(&t, "5.6 ping between fragments");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 9, "pongme!", 7);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    sf(&t.want_out, 10, "pongme!", 7);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_run(&t);

    tc_init(&t, "pong between fragments");
    cf(&t.in, 0, 0, 2, "\x01", 1);
    cf(&t.in, 1, 0, 10, "p", 1);
    cf(&t.in, 1, 0, 0, "\x02", 1);
    ev_pong(&t.want_ev, "p", 1);
    ev_msg(&t.want_ev, 2, "\x01\x02", 2);
    tc_run(&t);

    tc_init(&t, "5.9 continuation without a message (FIN)");
    cf(&t.in, 1, 0, 0, "non-continuation payload", 24);
    cf(&t.in, 1, 0, 1, "Hello, world!", 13);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.10 continuation without a message (not FIN)");
    cf(&t.in, 0, 0, 0, "non-continuation payload", 24);
    cf(&t.in, 1, 0, 1, "Hello, world!", 13);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.15 continuation after a finished message");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    cf(&t.in, 0, 0, 0, "fragment3", 9);
    cf(&t.in, 1, 0, 1, "fragment4", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.18 new text inside a fragmented message");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 1, "fragment2", 9);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "binary inside a fragmented text");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 2, "fragment2", 9);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.19 fragments with pings in between");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 0, 0, 0, "fragment2", 9);
    cf(&t.in, 1, 0, 9, "pongme 1!", 9);
    cf(&t.in, 0, 0, 0, "fragment3", 9);
    cf(&t.in, 0, 0, 0, "fragment4", 9);
    cf(&t.in, 1, 0, 9, "pongme 2!", 9);
    cf(&t.in, 1, 0, 0, "fragment5", 9);
    sf(&t.want_out, 10, "pongme 1!", 9);
    sf(&t.want_out, 10, "pongme 2!", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2fragment3fragment4fragment5", 45);
    tc_run(&t);

    tc_init(&t, "empty fragments");
    cf(&t.in, 0, 0, 1, "", 0);
    cf(&t.in, 0, 0, 0, "", 0);
    cf(&t.in, 0, 0, 0, "abc", 3);
    cf(&t.in, 1, 0, 0, "", 0);
    cf(&t.in, 1, 0, 1, "", 0);
    ev_msg(&t.want_ev, 1, "abc", 3);
    ev_msg(&t.want_ev, 1, "", 0);
    tc_run(&t);

    tc_init(&t, "max_fragments frames are fine");
    t.lim.max_fragments = 4;
    cf(&t.in, 0, 0, 1, "a", 1);
    for (i = 0; i < 2; i++) {
        cf(&t.in, 0, 0, 0, "b", 1);
    }
    cf(&t.in, 1, 0, 0, "c", 1);
    cf(&t.in, 1, 0, 1, "single", 6);
    ev_msg(&t.want_ev, 1, "abbc", 4);
    ev_msg(&t.want_ev, 1, "single", 6);
    tc_run(&t);

    tc_init(&t, "fragment flood -> 1008");
    t.lim.max_fragments = 4;
    cf(&t.in, 1, 0, 1, "ok", 2);
    cf(&t.in, 0, 0, 1, "a", 1);
    for (i = 0; i < 3; i++) {
        cf(&t.in, 0, 0, 0, "b", 1);
    }
    cf(&t.in, 1, 0, 0, "c", 1);
    ev_msg(&t.want_ev, 1, "ok", 2);
    tc_fail(&t, 1008);
    tc_run(&t);

    tc_init(&t, "empty fragment flood -> 1008");
    t.lim.max_fragments = 1024;
    cf(&t.in, 0, 0, 2, "", 0);
    for (i = 0; i < 1100; i++) {
        cf(&t.in, 0, 0, 0, "", 0);
    }
    tc_fail(&t, 1008);
    tc_run(&t);
}

/* ---- Autobahn 6.x: UTF-8 handling ---------------------------------------------- */

#define KOSME "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"

static void test_utf8_text(void **state)
{
    static const char *valid[] = {
        "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
        KOSME,
        "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf\xed\x9f\xbf\xee\x80\x80",
    };
    static const char *invalid[] = {
        "\xc0\xaf",         /* overlong / */
        "\xe0\x80\xaf",     /* overlong / */
        "\xf0\x80\x80\xaf", /* overlong / */
        "ab\xed\xa0\x80",   /* surrogate D800 */
        "\xed\xbf\xbf",     /* surrogate DFFF */
        "\xf4\x90\x80\x80", /* > U+10FFFF */
        "\xf5\x80\x80\x80", /* > U+10FFFF */
        "\xff",             /* impossible byte */
        "\x80",             /* lone continuation */
        KOSME "\xed\xa0\x80"
              "ed",         /* 6.3.1 */
        "\xce\xba\xe2\x82", /* truncated at message end */
        "\xf0\x9f\x98",     /* truncated at message end */
    };
    size_t i, k, n;
    tc_t t;
    (void)state;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        n = strlen(valid[i]);
        tc_init(&t, "6.x valid text in one frame");
        cf(&t.in, 1, 0, 1, valid[i], n);
        ev_msg(&t.want_ev, 1, valid[i], n);
        tc_run(&t);

        /* Fragmented at every byte (code points split across frames). */
        tc_init(&t, "6.x valid text, one frame per byte");
        for (k = 0; k < n; k++) {
            cf(&t.in, k + 1 == n, 0, k ? 0 : 1, valid[i] + k, 1);
        }
        ev_msg(&t.want_ev, 1, valid[i], n);
        tc_run(&t);

        for (k = 0; k <= n; k++) {
            tc_init(&t, "6.x valid text in two fragments");
            cf(&t.in, 0, 0, 1, valid[i], k);
            cf(&t.in, 1, 0, 9, "p", 1);
            cf(&t.in, 1, 0, 0, valid[i] + k, n - k);
            sf(&t.want_out, 10, "p", 1);
            ev_msg(&t.want_ev, 1, valid[i], n);
            tc_run(&t);
        }
    }
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        n = strlen(invalid[i]);
        tc_init(&t, "6.x invalid text");
        cf(&t.in, 1, 0, 1, "before", 6);
        cf(&t.in, 1, 0, 1, invalid[i], n);
        cf(&t.in, 1, 0, 9, "", 0);
        ev_msg(&t.want_ev, 1, "before", 6);
        tc_fail(&t, 1007);
        tc_run(&t);

        tc_init(&t, "6.x invalid text, one frame per byte");
        for (k = 0; k < n; k++) {
            cf(&t.in, k + 1 == n, 0, k ? 0 : 1, invalid[i] + k, 1);
        }
        tc_fail(&t, 1007);
        tc_run(&t);

        /* Binary messages are not UTF-8. */
        tc_init(&t, "invalid UTF-8 in binary is fine");
        cf(&t.in, 1, 0, 2, invalid[i], n);
        ev_msg(&t.want_ev, 2, invalid[i], n);
        tc_run(&t);
    }

    /* Fail fast: the message is not finished, the frame is not even
     * complete, yet the invalid byte is enough. */
    tc_init(&t, "6.x fail fast in an unfinished message");
    cf(&t.in, 0, 0, 1, "ab\xc0", 3);
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x fail fast inside a partial frame");
    {
        static const char s[] = "Hello\xf4\x90 and much more text after it";
        cf(&t.in, 1, 0, 1, s, sizeof(s) - 1);
        t.in.len = 6 + 7; /* header + "Hello" F4 90: the rest never comes */
    }
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x invalid sequence split across fragments");
    cf(&t.in, 0, 0, 1, "ab\xed", 3);
    cf(&t.in, 1, 0, 0, "\xa0\x80", 2);
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x fragment ends inside a code point, message not ended");
    cf(&t.in, 0, 0, 1, "\xe2\x82", 2);
    tc_run(&t);
}

/* ---- Autobahn 7.x: close handling ----------------------------------------------- */

static void test_close(void **state)
{
    static const uint16_t good[] = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                                    1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999};
    static const uint16_t bad[] = {0,    999,  1004, 1005, 1006, 1015,
                                   1016, 1100, 2000, 2999, 5000, 65535};
    char reason[130];
    size_t i;
    tc_t t;
    (void)state;

    tc_init(&t, "7.1.1 text then close");
    cf(&t.in, 1, 0, 1, "Hello World!", 12);
    cf_close(&t.in, 1000, "");
    ev_msg(&t.want_ev, 1, "Hello World!", 12);
    ev_close(&t.want_ev, 1000, "", 0);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);

    tc_init(&t, "7.1.2-4 close, then close/ping/text are ignored");
    cf_close(&t.in, 1000, "");
    cf_close(&t.in, 1001, "");
    cf(&t.in, 1, 0, 9, "", 0);
    cf(&t.in, 1, 0, 1, "Hello", 5);
    ev_close(&t.want_ev, 1000, "", 0);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);

    tc_init(&t, "7.1.5 close inside a fragmented message");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf_close(&t.in, 1000, "");
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    ev_close(&t.want_ev, 1000, "", 0);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);

    tc_init(&t, "7.3.1 close without payload");
    cf(&t.in, 1, 0, 8, "", 0);
    ev_close(&t.want_ev, 1005, "", 0);
    sf(&t.want_out, 8, "", 0); /* 88 00 */
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1005;
    tc_run(&t);

    tc_init(&t, "7.3.2 close with 1 byte payload");
    cf(&t.in, 1, 0, 8, "\x03", 1);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "7.3.4 close with reason");
    cf_close(&t.in, 1000, "Hello World!");
    ev_close(&t.want_ev, 1000, "Hello World!", 12);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);

    memset(reason, '*', sizeof(reason));
    reason[123] = '\0';
    tc_init(&t, "7.3.5 close with 123 byte reason");
    cf_close(&t.in, 1000, reason);
    ev_close(&t.want_ev, 1000, reason, 123);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);

    reason[123] = '*';
    reason[124] = '\0';
    tc_init(&t, "7.3.6 close with 124 byte reason");
    cf_close(&t.in, 1000, reason);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "7.5.1 close with invalid UTF-8 reason");
    cf_close(&t.in, 1000,
             KOSME "\xed\xa0\x80"
                   "edited");
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "close reason ending inside a code point");
    cf_close(&t.in, 1000, "ab\xe2\x82");
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "close with UTF-8 reason");
    cf_close(&t.in, 4000, KOSME);
    ev_close(&t.want_ev, 4000, KOSME, strlen(KOSME));
    sf_close(&t.want_out, 4000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 4000;
    tc_run(&t);

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        tc_init(&t, "7.7.x valid close code");
        cf_close(&t.in, good[i], "");
        ev_close(&t.want_ev, good[i], "", 0);
        sf_close(&t.want_out, good[i]);
        t.want_state = CHAT_WS_CLOSED;
        t.want_sent = t.want_recv = good[i];
        tc_run(&t);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tc_init(&t, "7.9.x invalid close code");
        cf(&t.in, 1, 0, 1, "before", 6);
        cf_close(&t.in, bad[i], "");
        ev_msg(&t.want_ev, 1, "before", 6);
        tc_fail(&t, 1002);
        tc_run(&t);
    }
}

/* ---- one feed holding good frames, a bad one, and more ----------------------- */

static void test_stop_at_bad_frame(void **state)
{
    tc_t t;
    (void)state;
    tc_init(&t, "messages before a bad frame are delivered, nothing after");
    cf(&t.in, 1, 0, 1, "one", 3);
    cf(&t.in, 1, 0, 9, "ping1", 5);
    cf(&t.in, 0, 0, 2, "tw", 2);
    cf(&t.in, 1, 0, 0, "o", 1);
    raw_frame(&t.in, 0x81, 0, "unmasked", 8);
    cf(&t.in, 1, 0, 1, "three", 5);
    cf(&t.in, 1, 0, 9, "ping2", 5);
    cf_close(&t.in, 1000, "");
    ev_msg(&t.want_ev, 1, "one", 3);
    sf(&t.want_out, 10, "ping1", 5);
    ev_msg(&t.want_ev, 2, "two", 3);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "echo server: on_message sends while feeding");
    t.echo = 1;
    cf(&t.in, 1, 0, 1, "one", 3);
    cf(&t.in, 1, 0, 9, "p", 1);
    cf(&t.in, 0, 0, 1, "t", 1);
    cf(&t.in, 1, 0, 0, "wo", 2);
    cf_close(&t.in, 1000, "");
    ev_msg(&t.want_ev, 1, "one", 3);
    sf(&t.want_out, 1, "one", 3);
    sf(&t.want_out, 10, "p", 1);
    ev_msg(&t.want_ev, 1, "two", 3);
    sf(&t.want_out, 1, "two", 3);
    ev_close(&t.want_ev, 1000, "", 0);
    sf_close(&t.want_out, 1000);
    t.want_state = CHAT_WS_CLOSED;
    t.want_sent = t.want_recv = 1000;
    tc_run(&t);
}

/* ---- pause / resume ------------------------------------------------------------ */

static void test_pause_resume(void **state)
{
    chat_ws_limits_t lim = {65536, 16};
    chat_buf_t in, want;
    rec_t r;
    (void)state;

    memset(&r, 0, sizeof(r));
    chat_buf_init(&in);
    chat_buf_init(&want);
    r.pause = 1;
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    cf(&in, 1, 0, 1, "first", 5);
    cf(&in, 1, 0, 1, "second", 6);
    cf(&in, 1, 0, 9, "ping", 4);
    cf(&in, 0, 0, 1, "thi", 3);

    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_EAGAIN);
    assert_string_equal(r.ev.data, "TEXT 5:6669727374\n");
    assert_int_equal(r.out.len, 0); /* the ping is still buffered */

    /* More input while paused is queued behind the rest and processing
     * goes on (it stops again at the next message). */
    in.len = 0;
    cf(&in, 1, 0, 0, "rd", 2);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_EAGAIN);
    assert_string_equal(r.ev.data, "TEXT 5:6669727374\nTEXT 6:7365636f6e64\n");
    assert_int_equal(r.out.len, 0);

    r.pause = 0;
    assert_int_equal(chat_ws_resume(r.ws), CHAT_OK);
    sf(&want, 10, "ping", 4);
    assert_int_equal(r.out.len, want.len);
    assert_memory_equal(r.out.data, want.data, want.len);
    assert_string_equal(r.ev.data,
                        "TEXT 5:6669727374\nTEXT 6:7365636f6e64\nTEXT 5:7468697264\n");
    assert_int_equal(chat_ws_resume(r.ws), CHAT_OK); /* nothing left */

    /* Paused with nothing after the message: resume simply returns OK. */
    r.pause = 1;
    in.len = 0;
    cf(&in, 1, 0, 1, "x", 1);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_EAGAIN);
    assert_int_equal(chat_ws_resume(r.ws), CHAT_OK);

    /* Pause, then the owner closes, then resumes: the peer's close that was
     * buffered completes the handshake. */
    in.len = 0;
    cf(&in, 1, 0, 1, "y", 1);
    cf(&in, 1, 0, 1, "ignored", 7);
    cf_close(&in, 1001, "");
    r.ev.len = 0;
    r.out.len = 0;
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_EAGAIN);
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_OK);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSING);
    assert_int_equal(chat_ws_resume(r.ws), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    r.ev.data[r.ev.len] = '\0';
    assert_string_equal(r.ev.data, "TEXT 1:79\nCLOSE 1001 0:\n");
    want.len = 0;
    sf_close(&want, 1000);
    assert_int_equal(r.out.len, want.len);
    assert_memory_equal(r.out.data, want.data, want.len);
    assert_int_equal(chat_ws_recv_close_code(r.ws), 1001);
    assert_int_equal(chat_ws_sent_close_code(r.ws), 1000);

    chat_ws_destroy(r.ws);
    chat_buf_free(&in);
    chat_buf_free(&want);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);
}

/* At rest only between whole frames and messages: a header or part of a
 * payload, the first fragment of a message, or input left by a pause all
 * keep the layer busy. */
static void test_at_rest(void **state)
{
    chat_ws_limits_t lim = {65536, 16};
    chat_buf_t in;
    rec_t r;
    size_t i;
    (void)state;

    memset(&r, 0, sizeof(r));
    chat_buf_init(&in);
    assert_false(chat_ws_at_rest(NULL));
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_true(chat_ws_at_rest(r.ws));

    /* one text frame byte by byte: busy until its last byte */
    cf(&in, 1, 0, 1, "hello", 5);
    for (i = 0; i + 1 < in.len; i++) {
        assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data + i, 1), CHAT_OK);
        assert_false(chat_ws_at_rest(r.ws));
    }
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data + i, 1), CHAT_OK);
    assert_true(chat_ws_at_rest(r.ws));
    assert_int_equal(r.nmsg, 1);

    /* a fragmented message: busy between its frames */
    in.len = 0;
    cf(&in, 0, 0, 1, "ab", 2);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_OK);
    assert_false(chat_ws_at_rest(r.ws));
    in.len = 0;
    cf(&in, 1, 0, 0, "c", 1);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_OK);
    assert_true(chat_ws_at_rest(r.ws));

    /* a header alone (its payload not sent yet) */
    in.len = 0;
    cf(&in, 1, 0, 1, "xyz", 3);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, 6), CHAT_OK);
    assert_false(chat_ws_at_rest(r.ws));
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data + 6, in.len - 6), CHAT_OK);
    assert_true(chat_ws_at_rest(r.ws));

    /* paused with a message still buffered */
    r.pause = 1;
    in.len = 0;
    cf(&in, 1, 0, 1, "one", 3);
    cf(&in, 1, 0, 1, "two", 3);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_EAGAIN);
    assert_false(chat_ws_at_rest(r.ws));
    r.pause = 0;
    assert_int_equal(chat_ws_resume(r.ws), CHAT_OK);
    assert_true(chat_ws_at_rest(r.ws));
    assert_int_equal(r.nmsg, 5);

    /* closing is not rest */
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_OK);
    assert_false(chat_ws_at_rest(r.ws));

    chat_ws_destroy(r.ws);
    chat_buf_free(&in);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);
}

/* ---- what the server sends ----------------------------------------------------- */

static void expect_out(rec_t *r, const void *bytes, size_t n)
{
    assert_int_equal(r->out.len, n);
    assert_memory_equal(r->out.data, bytes, n);
    r->out.len = 0;
}

static void expect_head(rec_t *r, const void *head, size_t hn, size_t total)
{
    assert_int_equal(r->out.len, total);
    assert_memory_equal(r->out.data, head, hn);
    r->out.len = 0;
}

static void test_send_formats(void **state)
{
    chat_ws_limits_t lim = {65536, 16};
    char *big = malloc(65536);
    char reason[200];
    rec_t r;
    (void)state;

    memset(big, 'A', 65536);
    memset(&r, 0, sizeof(r));
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);

    assert_int_equal(chat_ws_send_text(r.ws, "", 0), CHAT_OK);
    expect_out(&r, "\x81\x00", 2);
    assert_int_equal(chat_ws_send_text(r.ws, NULL, 0), CHAT_OK);
    expect_out(&r, "\x81\x00", 2);
    assert_int_equal(chat_ws_send_text(r.ws, "Hello", 5), CHAT_OK);
    expect_out(&r, "\x81\x05Hello", 7); /* RFC 6455 5.7 */
    assert_int_equal(chat_ws_send_text(r.ws, big, 125), CHAT_OK);
    expect_head(&r,
                "\x81\x7d"
                "AA",
                4, 127);
    assert_int_equal(chat_ws_send_text(r.ws, big, 126), CHAT_OK);
    expect_head(&r,
                "\x81\x7e\x00\x7e"
                "AA",
                6, 130);
    assert_int_equal(chat_ws_send_text(r.ws, big, 256), CHAT_OK);
    expect_head(&r, "\x81\x7e\x01\x00", 4, 260);
    assert_int_equal(chat_ws_send_text(r.ws, big, 65535), CHAT_OK);
    expect_head(&r,
                "\x81\x7e\xff\xff"
                "AA",
                6, 65539);
    assert_int_equal(chat_ws_send_text(r.ws, big, 65536), CHAT_OK);
    expect_head(&r,
                "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
                "AA",
                12, 65546);
    assert_int_equal(chat_ws_send_text(r.ws, NULL, 1), CHAT_EINVAL);

    assert_int_equal(chat_ws_send_ping(r.ws, (const uint8_t *)"Hello", 5), CHAT_OK);
    expect_out(&r, "\x89\x05Hello", 7);
    assert_int_equal(chat_ws_send_ping(r.ws, NULL, 0), CHAT_OK);
    expect_out(&r, "\x89\x00", 2);
    assert_int_equal(chat_ws_send_ping(r.ws, (const uint8_t *)big, 125), CHAT_OK);
    expect_head(&r,
                "\x89\x7d"
                "AA",
                4, 127);
    assert_int_equal(chat_ws_send_ping(r.ws, (const uint8_t *)big, 126), CHAT_EINVAL);
    assert_int_equal(r.out.len, 0);

    /* Codes that must never go on the wire. */
    assert_int_equal(chat_ws_close(r.ws, 1005, NULL), CHAT_EINVAL);
    assert_int_equal(chat_ws_close(r.ws, 1006, NULL), CHAT_EINVAL);
    assert_int_equal(chat_ws_close(r.ws, 1015, NULL), CHAT_EINVAL);
    assert_int_equal(chat_ws_close(r.ws, 0, NULL), CHAT_EINVAL);
    assert_int_equal(chat_ws_close(r.ws, 5000, NULL), CHAT_EINVAL);
    assert_int_equal(r.out.len, 0);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_OPEN);

    assert_int_equal(chat_ws_close(r.ws, 1000, "bye"), CHAT_OK);
    expect_out(&r,
               "\x88\x05\x03\xe8"
               "bye",
               7);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSING);
    assert_int_equal(chat_ws_sent_close_code(r.ws), 1000);
    assert_int_equal(chat_ws_recv_close_code(r.ws), 0);
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_ECLOSED);
    assert_int_equal(chat_ws_send_text(r.ws, "x", 1), CHAT_ECLOSED);
    assert_int_equal(chat_ws_send_ping(r.ws, NULL, 0), CHAT_ECLOSED);
    assert_int_equal(r.out.len, 0);
    chat_ws_destroy(r.ws);

    /* Reason truncation: 123 bytes max, on a code point boundary, and only
     * the valid prefix. */
    memset(reason, 'r', sizeof(reason));
    reason[199] = '\0';
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 3000, reason), CHAT_OK);
    expect_head(&r, "\x88\x7d\x0b\xb8rr", 6, 127);
    chat_ws_destroy(r.ws);

    strcpy(reason + 122, "\xc3\xa9"); /* 124 bytes: e-acute would cross 123 */
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1001, reason), CHAT_OK);
    expect_head(&r, "\x88\x7c\x03\xe9", 4, 126);
    chat_ws_destroy(r.ws);

    strcpy(reason + 121, "\xc3\xa9"); /* 123 bytes: fits exactly */
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1001, reason), CHAT_OK);
    assert_int_equal(r.out.len, 127);
    assert_memory_equal(r.out.data + 125, "\xc3\xa9", 2);
    r.out.len = 0;
    chat_ws_destroy(r.ws);

    strcpy(reason + 120, "\xf0\x9f\x98\x80"); /* 124 bytes */
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1001, reason), CHAT_OK);
    expect_head(&r, "\x88\x7a\x03\xe9", 4, 124);
    chat_ws_destroy(r.ws);

    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1011,
                                   "ab\xff"
                                   "cd"),
                     CHAT_OK);
    expect_out(&r,
               "\x88\x04\x03\xf3"
               "ab",
               6);
    chat_ws_destroy(r.ws);

    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 4999, ""), CHAT_OK);
    expect_out(&r, "\x88\x02\x13\x87", 4);
    chat_ws_destroy(r.ws);

    free(big);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);
}

/* After our close: only the peer's close matters; it ends the handshake. */
static void test_server_initiated_close(void **state)
{
    chat_ws_limits_t lim = {65536, 16};
    chat_buf_t in;
    rec_t r;
    size_t i;
    int bytewise;
    (void)state;

    chat_buf_init(&in);
    /* the first half of a text frame arrives before we close */
    cf(&in, 1, 0, 1, "0123456789", 10);
    cf(&in, 1, 0, 1, "ignored", 7);
    cf(&in, 1, 0, 9, "no pong", 7);
    cf(&in, 1, 0, 10, "no on_pong", 10);
    raw_frame(&in, 0x81, 0, "unmasked: skipped too", 21);
    cf(&in, 0, 0, 1, "frag", 4);
    cf_close(&in, 1000, "ok");
    cf(&in, 1, 0, 1, "after", 5);

    for (bytewise = 0; bytewise <= 1; bytewise++) {
        memset(&r, 0, sizeof(r));
        assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
        assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, 10), CHAT_OK);
        assert_int_equal(chat_ws_close(r.ws, 1001, "going"), CHAT_OK);
        expect_out(&r, "\x88\x07\x03\xe9going", 9);
        if (bytewise) {
            chat_status_t st = CHAT_ECLOSED;
            for (i = 10; i < in.len; i++) {
                st = chat_ws_feed(r.ws, (const uint8_t *)in.data + i, 1);
                if (chat_ws_state(r.ws) == CHAT_WS_CLOSING) {
                    assert_int_equal(st, CHAT_ECLOSED);
                }
            }
            assert_int_equal(st, CHAT_ECLOSED);
        }
        else {
            assert_int_equal(
                chat_ws_feed(r.ws, (const uint8_t *)in.data + 10, in.len - 10),
                CHAT_ECLOSED);
        }
        assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
        assert_int_equal(r.out.len, 0); /* no echo, no pong */
        assert_string_equal(r.ev.data, "CLOSE 1000 2:6f6b\n");
        assert_int_equal(chat_ws_recv_close_code(r.ws), 1000);
        assert_int_equal(chat_ws_sent_close_code(r.ws), 1001);
        chat_ws_destroy(r.ws);
        chat_buf_free(&r.out);
        chat_buf_free(&r.ev);
    }

    /* Closing from on_message: later messages are not delivered. */
    in.len = 0;
    cf(&in, 1, 0, 1, "one", 3);
    cf(&in, 1, 0, 1, "two", 3);
    cf(&in, 1, 0, 8, "", 0);
    memset(&r, 0, sizeof(r));
    r.close_on = 1;
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_ECLOSED);
    assert_string_equal(r.ev.data, "TEXT 3:6f6e65\nCLOSE 1005 0:\n");
    expect_out(&r,
               "\x88\x05\x03\xe8"
               "bye",
               7);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    assert_int_equal(chat_ws_recv_close_code(r.ws), 1005);
    chat_ws_destroy(r.ws);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);

    /* A malformed close from the peer while closing still ends it. */
    in.len = 0;
    cf(&in, 1, 0, 8, "\x03", 1);
    memset(&r, 0, sizeof(r));
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_OK);
    r.out.len = 0;
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    assert_int_equal(r.out.len, 0);
    assert_null(r.ev.data);
    chat_ws_destroy(r.ws);
    chat_buf_free(&r.out);

    /* A framing error while closing: nothing can be parsed any more. */
    in.len = 0;
    cf(&in, 1, 0, 9, "x", 1);
    in.data[1] = (char)0xFE; /* masked ping with a 16-bit length */
    memset(&r, 0, sizeof(r));
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_OK);
    r.out.len = 0;
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    assert_int_equal(r.out.len, 0);
    chat_ws_destroy(r.ws);
    chat_buf_free(&r.out);
    chat_buf_free(&in);
}

static void test_send_failure(void **state)
{
    chat_ws_limits_t lim = {65536, 16};
    chat_buf_t in;
    rec_t r;
    (void)state;

    chat_buf_init(&in);
    cf(&in, 1, 0, 9, "x", 1);
    cf(&in, 1, 0, 1, "not delivered", 13);
    memset(&r, 0, sizeof(r));
    r.fail_send = 1;
    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    assert_null(r.ev.data);
    assert_int_equal(chat_ws_send_text(r.ws, "x", 1), CHAT_ECLOSED);
    chat_ws_destroy(r.ws);

    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_send_text(r.ws, "x", 1), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    chat_ws_destroy(r.ws);

    assert_int_equal(chat_ws_create(&r.ws, &CB, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_close(r.ws, 1000, NULL), CHAT_ECLOSED);
    assert_int_equal(chat_ws_state(r.ws), CHAT_WS_CLOSED);
    chat_ws_destroy(r.ws);
    chat_buf_free(&in);
}

static void test_stats_and_args(void **state)
{
    chat_ws_limits_t lim = {65536, 16}, zero = {0, 16};
    chat_ws_callbacks_t nosend = {NULL, r_message, NULL, NULL};
    chat_ws_callbacks_t minimal = {r_send, r_message, NULL, NULL};
    chat_ws_stats_t st;
    chat_buf_t in;
    chat_ws_t *ws = (chat_ws_t *)&in;
    rec_t r;
    (void)state;

    assert_int_equal(chat_ws_create(&ws, NULL, NULL, &lim), CHAT_EINVAL);
    assert_null(ws);
    assert_int_equal(chat_ws_create(&ws, &nosend, NULL, &lim), CHAT_EINVAL);
    assert_int_equal(chat_ws_create(&ws, &CB, NULL, &zero), CHAT_EINVAL);
    zero.max_message = 1;
    zero.max_fragments = 0;
    assert_int_equal(chat_ws_create(&ws, &CB, NULL, &zero), CHAT_EINVAL);
    assert_int_equal(chat_ws_create(&ws, &CB, NULL, NULL), CHAT_EINVAL);
    assert_int_equal(chat_ws_create(NULL, &CB, NULL, &lim), CHAT_EINVAL);
    chat_ws_destroy(NULL);
    assert_int_equal(chat_ws_state(NULL), CHAT_WS_CLOSED);

    /* Optional callbacks may be NULL. */
    chat_buf_init(&in);
    memset(&r, 0, sizeof(r));
    assert_int_equal(chat_ws_create(&r.ws, &minimal, &r, &lim), CHAT_OK);
    cf(&in, 1, 0, 1, "hi", 2);
    cf(&in, 1, 0, 9, "p", 1);
    cf(&in, 1, 0, 10, "q", 1);
    cf(&in, 0, 0, 2, "a", 1);
    cf(&in, 1, 0, 0, "b", 1);
    cf_close(&in, 1000, "x");
    assert_int_equal(chat_ws_feed(r.ws, NULL, 1), CHAT_EINVAL);
    assert_int_equal(chat_ws_feed(r.ws, NULL, 0), CHAT_OK);
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data, in.len), CHAT_ECLOSED);
    assert_int_equal(chat_ws_send_text(r.ws, "bye", 3), CHAT_ECLOSED);
    chat_ws_get_stats(r.ws, &st);
    assert_int_equal(st.frames_in, 6);
    assert_int_equal(st.messages_in, 2);
    assert_int_equal(st.pings_in, 1);
    assert_int_equal(st.pongs_in, 1);
    assert_int_equal(st.bytes_in, in.len);
    assert_int_equal(st.frames_out, 2); /* pong + close */
    assert_int_equal(st.messages_out, 0);
    assert_int_equal(st.bytes_out, r.out.len);
    assert_int_equal(r.out.len, 3 + 4);
    chat_ws_destroy(r.ws);
    chat_buf_free(&in);
    chat_buf_free(&r.out);
    chat_buf_free(&r.ev);

    assert_int_equal(chat_ws_create(&r.ws, &minimal, &r, &lim), CHAT_OK);
    assert_int_equal(chat_ws_send_text(r.ws, "abc", 3), CHAT_OK);
    chat_ws_get_stats(r.ws, &st);
    assert_int_equal(st.frames_out, 1);
    assert_int_equal(st.messages_out, 1);
    assert_int_equal(st.bytes_out, 5);
    chat_ws_destroy(r.ws);
    chat_buf_free(&r.out);
}

static void test_accept_key(void **state)
{
    static const char *bad[] = {
        "",
        "dGhlIHNhbXBsZSBub25jZQ=",   /* 23 chars */
        "dGhlIHNhbXBsZSBub25jZQ",    /* no padding */
        "dGhlIHNhbXBsZSBub25jZR==",  /* stray bits: not canonical */
        "dGhlIHNhbXBsZSBub25jZQA=",  /* 17 bytes */
        "dGhlIHNhbXBsZSBub25jZQAA",  /* 18 bytes */
        "!GhlIHNhbXBsZSBub25jZQ==",  /* bad character */
        "dGhlIHNhbXBsZSBub25j ZQ==", /* inner space */
        "dGhlIHNhbXBsZSBub25jZQ==dGhl",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };
    char out[29];
    size_t i;
    (void)state;
    /* RFC 6455 1.3 */
    assert_int_equal(chat_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), CHAT_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_int_equal(chat_ws_accept_key(" dGhlIHNhbXBsZSBub25jZQ==\t", out), CHAT_OK);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* second vector: base64(SHA1("AAAAAAAAAAAAAAAAAAAAAA==" GUID)) */
    assert_int_equal(chat_ws_accept_key("AAAAAAAAAAAAAAAAAAAAAA==", out), CHAT_OK);
    assert_string_equal(out, "ICX+Yqv66kxgM0FcWaLWlFLwTAI=");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (chat_ws_accept_key(bad[i], out) != CHAT_EINVAL) {
            fail_msg("key '%s' accepted", bad[i]);
        }
    }
    assert_int_equal(chat_ws_accept_key(NULL, out), CHAT_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_at_rest),
        cmocka_unit_test(test_size_limits),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_rsv),
        cmocka_unit_test(test_reserved_opcodes),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_utf8_text),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_stop_at_bad_frame),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_send_formats),
        cmocka_unit_test(test_server_initiated_close),
        cmocka_unit_test(test_send_failure),
        cmocka_unit_test(test_stats_and_args),
        cmocka_unit_test(test_accept_key),
    };
    return cmocka_run_group_tests_name("ws", tests, NULL, NULL);
}
