/* Unit tests: chat_ws payload sizes (Autobahn 1.x and 9.x): every length
 * encoding, max_message on single frames and reassembled messages, and
 * limits decided on a frame header alone. */
#include "test_ws_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_size_limits),
    };
    return cmocka_run_group_tests_name("ws_sizes", tests, NULL, NULL);
}
