/* Unit tests: chat/stream.h - the stream calls on both wire formats:
 * pseudo-random streams of protocol fragments and junk bytes (no crash,
 * the recorder's invariants hold, every split agrees), an event callback
 * that aborts, reset, feed after finish and bad arguments. */
#include "test_stream_util.h"

/* Pseudo-random streams built from protocol fragments and junk bytes: no
 * crash, the recorder's invariants hold, and every split agrees. */
static void test_random_garbage(void **state)
{
    static const char *frag[] = {
        "{\"message\":{\"content\":\"",
        "{\"message\":{\"thinking\":\"",
        "\"}}",
        "\"},\"done\":true}",
        "{\"done\":true}",
        "{\"error\":\"e\"}",
        "\n",
        "\r\n",
        "\r",
        "data: ",
        "data:",
        "[DONE]",
        ": ping",
        "event: error",
        "error: ",
        "{\"choices\":[{\"delta\":{\"content\":\"",
        "\"}}]}",
        "{\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}",
        "\\ud83d",
        "\\ude00",
        "\\u0000",
        "\xF0\x9F",
        "\x98\x80",
        "\xFF",
        "\xEF\xBB\xBF",
        "x",
        " ",
        "{",
        "}",
        "\"",
        "[",
        "]",
        ",",
        ":",
        "\\"};
    char buf[600];
    uint32_t x = 12345;
    int round, w;
    (void)state;

    for (round = 0; round < 300; round++) {
        size_t n = 0, k;
        int parts;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        parts = 1 + (int)(x % 40);
        while (parts-- > 0) {
            const char *f;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            f = frag[x % (sizeof(frag) / sizeof(frag[0]))];
            k = strlen(f);
            if (n + k >= sizeof(buf)) {
                break;
            }
            memcpy(buf + n, f, k);
            n += k;
        }
        for (w = 0; w < 2; w++) {
            check_splits_ex(w ? CHAT_WIRE_OPENAI : CHAT_WIRE_OLLAMA, buf, n,
                            round % 3 ? 4096 : 40, NULL, round % 10 == 0);
        }
    }
}

static void test_callback_abort_and_misuse(void **state)
{
    rec_t r;
    chat_stream_t *s;
    const char *two =
        "{\"message\":{\"content\":\"a\"}}\n{\"message\":{\"content\":\"b\"}}\n";
    (void)state;
    rec_init(&r);
    r.abort_at = 1;
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_ECLOSED);
    assert_int_equal(r.nev, 1);
    assert_string_equal(chat_stream_error(s), "aborted by the event callback");
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_ECLOSED);
    assert_int_equal(chat_stream_finish(s), CHAT_ECLOSED);
    assert_int_equal(r.nev, 1);
    /* reset: the same stream parses the next answer */
    chat_stream_reset(s);
    r.abort_at = 0;
    assert_int_equal(chat_stream_feed(s, two, strlen(two)), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, "{\"done\":true,\"eval_count\":3}", 28),
                     CHAT_OK);
    assert_int_equal(chat_stream_finish(s), CHAT_OK);
    assert_int_equal(chat_stream_stats(s)->completion_tokens, 3);
    assert_string_equal(r.log.data, "C:a|C:a|C:b|D:|");
    /* feed after finish */
    assert_int_equal(chat_stream_feed(s, "\n", 1), CHAT_ECLOSED);
    chat_stream_destroy(s);
    chat_buf_free(&r.log);

    /* bad arguments */
    assert_int_equal(chat_stream_create(NULL, CHAT_WIRE_OLLAMA, 10, rec_cb, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 10, NULL, NULL),
                     CHAT_EINVAL);
    assert_null(s);
    assert_int_equal(chat_stream_create(&s, (chat_wire_t)7, 10, rec_cb, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OPENAI, 0, rec_cb, NULL),
                     CHAT_EINVAL);
    chat_stream_destroy(NULL);
    chat_stream_reset(NULL);
    assert_int_equal(chat_stream_feed(NULL, "x", 1), CHAT_EINVAL);
    assert_int_equal(chat_stream_finish(NULL), CHAT_EINVAL);
    assert_int_equal(chat_stream_is_done(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_callback_abort_and_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
