/* Unit tests: chat_ws calls made by the owner: the exact frames of
 * send_text, send_ping and close (reason truncation, codes never sent),
 * a failing send callback, create arguments and stats, and the handshake's
 * Sec-WebSocket-Accept key. */
#include "test_ws_util.h"

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
        cmocka_unit_test(test_send_formats),
        cmocka_unit_test(test_send_failure),
        cmocka_unit_test(test_stats_and_args),
        cmocka_unit_test(test_accept_key),
    };
    return cmocka_run_group_tests_name("ws_api", tests, NULL, NULL);
}
