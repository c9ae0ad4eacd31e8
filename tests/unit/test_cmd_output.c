/* Unit tests: command output capping (any read sizes, UTF-8 cuts, floods)
 * and the history text: request and result formatting, automatic titles. */
#include "test_cmd_util.h"

/* ---- output --------------------------------------------------------------- */

static void feed_chunks(chat_cmd_output_t *o, const char *data, size_t n, size_t chunk)
{
    size_t off;
    int capped = 0;

    for (off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        int r = chat_cmd_output_add(o, data + off, k);
        assert_true(r == 0 || r == 1);
        if (capped) {
            assert_int_equal(r, 1); /* stays capped */
        }
        capped = r;
    }
}

static void test_output_cap(void **state)
{
    chat_cmd_output_t o;
    (void)state;

    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_add(&o, "hello", 5), 0);
    assert_int_equal(chat_cmd_output_add(&o, "world", 5), 0);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_string_equal(o.buf.data, "helloworld");
    assert_int_equal(o.truncated, 0);
    chat_cmd_output_free(&o);

    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_add(&o, "helloworld!", 11), 1);
    assert_int_equal(chat_cmd_output_add(&o, "more", 4), 1);
    assert_int_equal(o.seen, 15);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK); /* once only */
    assert_string_equal(o.buf.data, "helloworld\n[output truncated at 10 bytes]");
    assert_int_equal(o.truncated, 1);
    chat_cmd_output_free(&o);

    /* empty output */
    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_int_equal(o.buf.len, 0);
    chat_cmd_output_free(&o);
}

/* Same result whatever the read sizes: one byte at a time, every split. */
static void test_output_chunking(void **state)
{
    static const char data[] = "0123456789abcdefghij\xe2\x82\xac-tail";
    const size_t n = sizeof(data) - 1;
    uint64_t max;
    (void)state;

    for (max = 1; max <= n + 2; max++) {
        chat_cmd_output_t whole, bytes;
        size_t split;

        chat_cmd_output_init(&whole, max);
        chat_cmd_output_add(&whole, data, n);
        chat_cmd_output_finish(&whole);
        chat_cmd_output_init(&bytes, max);
        feed_chunks(&bytes, data, n, 1);
        chat_cmd_output_finish(&bytes);
        assert_int_equal(whole.buf.len, bytes.buf.len);
        assert_memory_equal(whole.buf.data ? whole.buf.data : "",
                            bytes.buf.data ? bytes.buf.data : "", whole.buf.len);
        for (split = 0; split <= n; split++) {
            chat_cmd_output_t two;
            chat_cmd_output_init(&two, max);
            chat_cmd_output_add(&two, data, split);
            chat_cmd_output_add(&two, data + split, n - split);
            chat_cmd_output_finish(&two);
            assert_int_equal(two.buf.len, whole.buf.len);
            assert_memory_equal(two.buf.data ? two.buf.data : "",
                                whole.buf.data ? whole.buf.data : "", two.buf.len);
            assert_int_equal(two.seen, n);
            chat_cmd_output_free(&two);
        }
        assert_int_equal(whole.truncated, max < n);
        chat_cmd_output_free(&whole);
        chat_cmd_output_free(&bytes);
    }
}

static void test_output_utf8_cut(void **state)
{
    chat_cmd_output_t o;
    char expect[64];
    int k;
    (void)state;

    /* "abcd" + EURO SIGN (3 bytes): a cut inside the euro drops its start */
    for (k = 5; k <= 6; k++) {
        chat_cmd_output_init(&o, (uint64_t)k);
        assert_int_equal(chat_cmd_output_add(&o,
                                             "abcd\xe2\x82\xac"
                                             "z",
                                             8),
                         1);
        chat_cmd_output_finish(&o);
        snprintf(expect, sizeof(expect), "abcd\n[output truncated at %d bytes]", k);
        assert_string_equal(o.buf.data, expect);
        chat_cmd_output_free(&o);
    }
    chat_cmd_output_init(&o, 7);
    chat_cmd_output_add(&o,
                        "abcd\xe2\x82\xac"
                        "z",
                        8);
    chat_cmd_output_finish(&o);
    assert_string_equal(o.buf.data, "abcd\xe2\x82\xac\n[output truncated at 7 bytes]");
    chat_cmd_output_free(&o);
    /* a 4-byte character cut after 1, 2 and 3 bytes */
    for (k = 1; k <= 3; k++) {
        chat_cmd_output_init(&o, (uint64_t)(1 + k));
        chat_cmd_output_add(&o, "x\xf0\x9f\x98\x80yy", 7);
        chat_cmd_output_finish(&o);
        snprintf(expect, sizeof(expect), "x\n[output truncated at %d bytes]", 1 + k);
        assert_string_equal(o.buf.data, expect);
        chat_cmd_output_free(&o);
    }
    /* invalid bytes are kept as they are (the JSON writer replaces them) */
    chat_cmd_output_init(&o, 4);
    chat_cmd_output_add(&o,
                        "\xff\xfe\x80"
                        "abc",
                        6);
    chat_cmd_output_finish(&o);
    assert_memory_equal(o.buf.data,
                        "\xff\xfe\x80"
                        "a\n[output",
                        10);
    chat_cmd_output_free(&o);
}

static void test_output_flood(void **state)
{
    chat_cmd_output_t o;
    char *chunk = malloc(4096);
    size_t i;
    (void)state;

    memset(chunk, 'y', 4096);
    chat_cmd_output_init(&o, 65536);
    for (i = 0; i < (10u << 20) / 4096; i++) {
        chat_cmd_output_add(&o, chunk, 4096);
    }
    chat_cmd_output_finish(&o);
    assert_int_equal(o.seen, 10u << 20);
    assert_int_equal(o.buf.len, 65536 + strlen("\n[output truncated at 65536 bytes]"));
    assert_string_equal(o.buf.data + 65536, "\n[output truncated at 65536 bytes]");
    assert_true(o.buf.cap < 2 * 65536 + 4096); /* memory stays bounded */
    chat_cmd_output_free(&o);
    free(chunk);
}

/* ---- history text ----------------------------------------------------------- */

static void test_format(void **state)
{
    chat_buf_t b;
    chat_cmd_result_t r;
    const char *args[] = {"-l", "a b"};
    (void)state;

    chat_buf_init(&b);
    assert_int_equal(chat_cmd_format_request(&b, "ls", args, 2), CHAT_OK);
    assert_string_equal(b.data, "!ls -l a b");
    assert_int_equal(chat_cmd_format_request(&b, "date", NULL, 0), CHAT_OK);
    assert_string_equal(b.data, "!date");

    memset(&r, 0, sizeof(r));
    r.duration_ms = 12;
    assert_int_equal(chat_cmd_format_result(&b, "a\nb\n", 4, &r), CHAT_OK);
    assert_string_equal(b.data, "```\na\nb\n```\nexit code 0, 12 ms");
    r.exit_code = 2;
    assert_int_equal(chat_cmd_format_result(&b, "no newline", 10, &r), CHAT_OK);
    assert_string_equal(b.data, "```\nno newline\n```\nexit code 2, 12 ms");
    assert_int_equal(chat_cmd_format_result(&b, "", 0, &r), CHAT_OK);
    assert_string_equal(b.data, "(no output)\nexit code 2, 12 ms");
    /* a fence in the output cannot close ours */
    assert_int_equal(chat_cmd_format_result(&b, "x\n```\n````y", 11, &r), CHAT_OK);
    assert_string_equal(b.data, "`````\nx\n```\n````y\n`````\nexit code 2, 12 ms");
    r.exit_code = -1;
    r.signal = 9;
    r.timed_out = 1;
    r.timeout_ms = 1000;
    r.truncated = 1;
    r.duration_ms = 1003;
    assert_int_equal(chat_cmd_format_result(&b, "x", 1, &r), CHAT_OK);
    assert_string_equal(b.data,
                        "```\nx\n```\nkilled by signal 9, timed out after 1000 ms, "
                        "output truncated, 1003 ms");
    r.timed_out = 0;
    r.truncated = 0;
    r.stopped = 1;
    assert_int_equal(chat_cmd_format_result(&b, "x", 1, &r), CHAT_OK);
    assert_string_equal(b.data, "```\nx\n```\nkilled by signal 9, stopped by the user, "
                                "1003 ms");
    chat_buf_free(&b);
}

/* Automatic titles from a first command line, made like conversations.js autoTitle. */
static void test_title(void **state)
{
    char t[129];
    char longl[400];
    size_t n;
    int i;

    (void)state;
    assert_int_equal(chat_cmd_title(t, sizeof(t), "!date", 5), 5);
    assert_string_equal(t, "!date");
    n = chat_cmd_title(t, sizeof(t), "  !ls \t -l\n  a  ", 16);
    assert_string_equal(t, "!ls -l a");
    assert_int_equal(n, 8);
    assert_int_equal(chat_cmd_title(t, sizeof(t), " \t ", 3), 0);
    assert_string_equal(t, "");
    /* 60 characters: kept whole */
    memset(longl, 'a', 60);
    longl[0] = '!';
    assert_int_equal(chat_cmd_title(t, sizeof(t), longl, 60), 60);
    /* longer: cut at 57 at a word boundary, then an ellipsis */
    strcpy(longl, "!show ");
    for (i = 0; i < 10; i++) {
        strcat(longl, "word12345 ");
    }
    n = chat_cmd_title(t, sizeof(t), longl, strlen(longl));
    assert_string_equal(
        t, "!show word12345 word12345 word12345 word12345 word12345\xe2\x80\xa6");
    assert_int_equal(n, strlen(t));
    /* one long word: cut at 57 characters */
    memset(longl, 'x', 100);
    n = chat_cmd_title(t, sizeof(t), longl, 100);
    assert_int_equal(n, 57 + 3);
    /* multibyte characters: never cut inside one, never over the buffer */
    longl[0] = '!';
    for (i = 0; i < 90; i++) {
        memcpy(longl + 1 + 4 * i, "\xf0\x9f\x98\x80", 4);
    }
    n = chat_cmd_title(t, sizeof(t), longl, 1 + 4 * 90);
    assert_true(n < sizeof(t));
    assert_true(chat_utf8_valid((const uint8_t *)t, n));
    assert_int_equal(memcmp(t + n - 3, "\xe2\x80\xa6", 3), 0);
    /* invalid bytes are left out */
    assert_int_equal(chat_cmd_title(t, sizeof(t),
                                    "!a\xff"
                                    "b",
                                    4),
                     3);
    assert_string_equal(t, "!ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_output_cap),      cmocka_unit_test(test_output_chunking),
        cmocka_unit_test(test_output_utf8_cut), cmocka_unit_test(test_output_flood),
        cmocka_unit_test(test_format),          cmocka_unit_test(test_title),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
