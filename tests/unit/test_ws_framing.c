/* Unit tests: chat_ws framing: masking and length encodings, pings and
 * pongs (Autobahn 2.x), reserved bits (3.x) and reserved opcodes (4.x). */
#include "test_ws_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_rsv),
        cmocka_unit_test(test_reserved_opcodes),
    };
    return cmocka_run_group_tests_name("ws_framing", tests, NULL, NULL);
}
