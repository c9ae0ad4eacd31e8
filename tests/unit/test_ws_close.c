/* Unit tests: chat_ws closing handshake: close frames from the peer
 * (Autobahn 7.x: codes, reasons, what is ignored after), and closes the
 * server starts, including from on_message. */
#include "test_ws_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_server_initiated_close),
    };
    return cmocka_run_group_tests_name("ws_close", tests, NULL, NULL);
}
