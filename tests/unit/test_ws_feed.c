/* Unit tests: chat_ws feeding: a bad frame stops a feed after the good
 * ones, sends from on_message while feeding, pause and resume, and when
 * the layer is at rest. */
#include "test_ws_util.h"

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
    assert_int_equal(chat_ws_feed(r.ws, (const uint8_t *)in.data + 6, in.len - 6),
                     CHAT_OK);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_rest),
        cmocka_unit_test(test_stop_at_bad_frame),
        cmocka_unit_test(test_pause_resume),
    };
    return cmocka_run_group_tests_name("ws_feed", tests, NULL, NULL);
}
