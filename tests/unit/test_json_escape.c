/* Unit tests: chat_json_plain and chat_json_escape (every ASCII byte,
 * Unicode, invalid UTF-8, NUL, long and random inputs) and the hot-path
 * frame builders written with it (chat_frame_delta, chat_frame_error).
 * Output is checked against exact strings and parsed back with json-c in
 * strict mode. */
#include "test_json_util.h"

static void escape_eq(const char *in, size_t n, const char *expect)
{
    chat_buf_t b;

    chat_buf_init(&b);
    assert_int_equal(chat_json_escape(&b, in, n), CHAT_OK);
    assert_int_equal(b.len, strlen(expect));
    if (b.len) {
        assert_memory_equal(b.data, expect, b.len);
        assert_int_equal(b.data[b.len], '\0');
    }
    chat_buf_free(&b);
}

#define ESC(lit, expect) escape_eq((lit), sizeof(lit) - 1, (expect))

/* Every ASCII byte, checked against the rules written out by hand. */
static void test_escape_ascii_table(void **state)
{
    static const char *const ctl[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006",
        "\\u0007", "\\b",     "\\t",     "\\n",     "\\u000b", "\\f",     "\\r",
        "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012", "\\u0013", "\\u0014",
        "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a", "\\u001b",
        "\\u001c", "\\u001d", "\\u001e", "\\u001f"};
    int c;
    (void)state;

    for (c = 0; c < 0x80; c++) {
        char in[3] = {'a', (char)c, 'z'};
        char expect[16];
        const char *mid;
        char one[2] = {(char)c, 0};
        chat_buf_t b;
        json_object *o;

        if (c < 0x20) {
            mid = ctl[c];
        }
        else if (c == '"') {
            mid = "\\\"";
        }
        else if (c == '\\') {
            mid = "\\\\";
        }
        else if (c == '<') {
            mid = "\\u003c";
        }
        else if (c == '>') {
            mid = "\\u003e";
        }
        else if (c == '&') {
            mid = "\\u0026";
        }
        else if (c == 0x7f) {
            mid = "\\u007f";
        }
        else {
            mid = one;
        }
        snprintf(expect, sizeof(expect), "a%sz", mid);
        escape_eq(in, 3, expect);

        /* and it reads back as the same byte */
        chat_buf_init(&b);
        chat_buf_puts(&b, "\"");
        assert_int_equal(chat_json_escape(&b, in, 3), CHAT_OK);
        chat_buf_puts(&b, "\"");
        o = parse_strict(b.data, b.len);
        assert_non_null(o);
        assert_int_equal(json_object_get_string_len(o), 3);
        assert_memory_equal(json_object_get_string(o), in, 3);
        json_object_put(o);
        chat_buf_free(&b);
    }
    ESC("</script>", "\\u003c/script\\u003e");
    ESC("a&b", "a\\u0026b");
    ESC("", "");
}

static void test_escape_unicode(void **state)
{
    chat_buf_t b;
    (void)state;

    /* valid non-ASCII passes through untouched */
    ESC("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc2\x80",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xc2\x80");
    /* line and paragraph separators */
    ESC("a\xe2\x80\xa8z\xe2\x80\xa9", "a\\u2028z\\u2029");
    ESC("\xe2\x80\xa7\xe2\x80\xaa", "\xe2\x80\xa7\xe2\x80\xaa");

    chat_buf_init(&b);
    assert_int_equal(chat_json_escape(&b, NULL, 0), CHAT_OK);
    assert_int_equal(chat_json_escape(&b, NULL, 1), CHAT_EINVAL);
    assert_int_equal(b.len, 0);
    chat_buf_free(&b);
}

#define FFFD "\xef\xbf\xbd"

static void test_escape_invalid_utf8(void **state)
{
    (void)state;
    ESC("\x80", FFFD);
    ESC("a\xbfz", "a" FFFD "z");
    ESC("\xff\xfe", FFFD FFFD);
    ESC("\xc0\xaf", FFFD FFFD);          /* overlong '/' */
    ESC("\xc1\xbf", FFFD FFFD);          /* overlong */
    ESC("\xe0\x80\xaf", FFFD FFFD FFFD); /* overlong, 3 bytes */
    ESC("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD);
    ESC("\xed\xa0\x80", FFFD FFFD FFFD); /* encoded surrogate U+D800 */
    ESC("\xed\xbf\xbf", FFFD FFFD FFFD);
    ESC("\xed\x9f\xbf", "\xed\x9f\xbf");          /* U+D7FF is fine */
    ESC("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* above U+10FFFF */
    ESC("\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD);
    ESC("\xf8\x88\x80\x80\x80", FFFD FFFD FFFD FFFD FFFD);
    /* truncated sequences: one U+FFFD per maximal prefix */
    ESC("\xe2\x82", FFFD);
    ESC("\xe2\x82z", FFFD "z");
    ESC("\xf0\x9f\x98", FFFD);
    ESC("\xf0\x9f\x98<", FFFD "\\u003c");
    ESC("\xf0\x9f", FFFD);
    ESC("\xc3", FFFD);
    ESC("\xc3\xc3\xa9", FFFD "\xc3\xa9");
    ESC("\xe2\x80\xe2\x80\xa8", FFFD "\\u2028");
    ESC("x\xe2\x80", "x" FFFD);
}

static void test_escape_embedded_nul_and_long(void **state)
{
    chat_buf_t b;
    size_t i;
    (void)state;

    ESC("a\0b", "a\\u0000b");
    /* a long run with sparse escapes: exact length and content */
    chat_buf_init(&b);
    {
        char *in = malloc(100000), *expect;
        size_t el = 0;
        expect = malloc(200000);
        for (i = 0; i < 100000; i++) {
            in[i] = (i % 1000 == 999) ? '\n' : (char)('a' + i % 26);
            if (in[i] == '\n') {
                expect[el++] = '\\';
                expect[el++] = 'n';
            }
            else {
                expect[el++] = in[i];
            }
        }
        assert_int_equal(chat_json_escape(&b, in, 100000), CHAT_OK);
        assert_int_equal(b.len, el);
        assert_memory_equal(b.data, expect, el);
        free(in);
        free(expect);
    }
    chat_buf_free(&b);
}

/* Every byte at every place of a 24-byte string, which the escaper reads
 * eight bytes at a time: the same as the byte escaped on its own between
 * plain letters. The JSON writer's strings and keys (copied in one go when
 * nothing needs an escape) give the same text. */
static void test_escape_in_words(void **state)
{
    chat_buf_t one, b, w;
    int c, at;
    (void)state;

    chat_buf_init(&one);
    chat_buf_init(&b);
    chat_buf_init(&w);
    for (c = 0; c < 0x100; c++) {
        char ch = (char)c;
        chat_buf_reset(&one, 1 << 20);
        assert_int_equal(chat_json_escape(&one, &ch, 1), CHAT_OK);
        for (at = 0; at < 24; at++) {
            char in[24], expect[64], doc[160];
            chat_jw_t jw;
            memset(in, 'q', sizeof(in));
            in[at] = ch;
            memset(expect, 'q', (size_t)at);
            memcpy(expect + at, one.data, one.len);
            memset(expect + at + one.len, 'q', (size_t)(23 - at));
            chat_buf_reset(&b, 1 << 20);
            assert_int_equal(chat_json_escape(&b, in, sizeof(in)), CHAT_OK);
            assert_int_equal(b.len, (size_t)at + one.len + (size_t)(23 - at));
            assert_memory_equal(b.data, expect, b.len);

            chat_buf_reset(&w, 1 << 20);
            chat_buf_reserve(&w, 256); /* room: the writer's one-copy path */
            chat_jw_init(&jw, &w);
            chat_jw_obj_begin(&jw);
            chat_jw_kstrn(&jw, "k", in, sizeof(in));
            chat_jw_obj_end(&jw);
            assert_int_equal(chat_jw_status(&jw), CHAT_OK);
            snprintf(doc, sizeof(doc), "{\"k\":\"%.*s\"}", (int)b.len, b.data);
            assert_string_equal(w.data, doc);
        }
    }
    chat_buf_free(&one);
    chat_buf_free(&b);
    chat_buf_free(&w);
}

/* Random bytes (mostly invalid UTF-8) always give a valid JSON string whose
 * value is the input with bad sequences replaced. */
static void test_escape_random_bytes(void **state)
{
    chat_buf_t b;
    int iter;
    (void)state;

    rng_state = 777;
    chat_buf_init(&b);
    for (iter = 0; iter < 5000; iter++) {
        unsigned char in[64];
        size_t n = rnd() % sizeof(in), i;
        json_object *o;

        for (i = 0; i < n; i++) {
            uint32_t r = rnd();
            in[i] =
                (unsigned char)(r % 4 == 0 ? 0x80 + (r >> 4) % 0x80 : (r >> 4) & 0xff);
        }
        chat_buf_reset(&b, 1 << 20);
        chat_buf_puts(&b, "\"");
        assert_int_equal(chat_json_escape(&b, (const char *)in, n), CHAT_OK);
        chat_buf_puts(&b, "\"");
        o = parse_strict(b.data, b.len);
        assert_non_null(o);
        json_object_put(o);
    }
    chat_buf_free(&b);
}

/* ---- frames ------------------------------------------------------------------ */

static void test_frame_delta(void **state)
{
    chat_buf_t b;
    json_object *o;
    char *oldp;
    size_t cap;
    (void)state;

    chat_buf_init(&b);
    chat_buf_puts(&b, "stale contents");
    assert_int_equal(chat_frame_delta(&b, 0, "c0ffee", "c1", "Hel", 3), CHAT_OK);
    assert_string_equal(
        b.data, "{\"type\":\"stream\",\"content\":\"Hel\",\"conversation_id\":\"c0ffee\","
                "\"id\":\"c1\"}");
    assert_int_equal(chat_frame_delta(&b, 1, "c0ffee", "c1", "Let me", 6), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"thinking\",\"content\":\"Let me\","
                                "\"conversation_id\":\"c0ffee\",\"id\":\"c1\"}");
    assert_int_equal(chat_frame_delta(&b, 0, NULL, NULL, "x\n\"<", 4), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"stream\",\"content\":\"x\\n\\\"\\u003c\"}");
    assert_int_equal(chat_frame_delta(&b, 0, NULL, "7", "", 0), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"stream\",\"content\":\"\",\"id\":\"7\"}");
    assert_int_equal(chat_frame_delta(&b, 0, "a\"b", NULL, NULL, 0), CHAT_OK);
    assert_string_equal(
        b.data, "{\"type\":\"stream\",\"content\":\"\",\"conversation_id\":\"a\\\"b\"}");
    /* content is taken by length; a split code point becomes U+FFFD */
    assert_int_equal(chat_frame_delta(&b, 0, NULL, NULL, "ab\xe2\x82\xac", 4), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"stream\",\"content\":\"ab" FFFD "\"}");
    assert_int_equal(chat_frame_delta(&b, 0, NULL, NULL, "a\0b", 3), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"stream\",\"content\":\"a\\u0000b\"}");

    /* steady state: the buffer is reused, not reallocated */
    oldp = b.data;
    cap = b.cap;
    assert_int_equal(chat_frame_delta(&b, 0, "c", "i", "tok", 3), CHAT_OK);
    assert_ptr_equal(b.data, oldp);
    assert_int_equal(b.cap, cap);

    assert_int_equal(chat_frame_delta(&b, 0, "conv", "m1", "caf\xc3\xa9 \xe2\x80\xa8", 9),
                     CHAT_OK);
    o = parse_strict(b.data, b.len);
    assert_non_null(o);
    {
        json_object *v;
        assert_true(json_object_object_get_ex(o, "content", &v));
        assert_string_equal(json_object_get_string(v), "caf\xc3\xa9 \xe2\x80\xa8");
        assert_true(json_object_object_get_ex(o, "type", &v));
        assert_string_equal(json_object_get_string(v), "stream");
    }
    json_object_put(o);
    chat_buf_free(&b);
}

static void test_frame_error(void **state)
{
    chat_buf_t b;
    json_object *o;
    (void)state;

    chat_buf_init(&b);
    chat_buf_puts(&b, "junk");
    assert_int_equal(
        chat_frame_error(&b, CHAT_ERR_RATE_LIMITED, "slow down", "c9", "m1", 1500),
        CHAT_OK);
    assert_string_equal(
        b.data, "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow "
                "down\",\"conversation_id\":\"c9\",\"id\":\"m1\","
                "\"retry_after_ms\":1500}");
    assert_int_equal(
        chat_frame_error(&b, CHAT_ERR_BAD_JSON, "bad <json>", NULL, NULL, -1), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"error\",\"code\":\"bad_json\",\"message\":"
                                "\"bad \\u003cjson\\u003e\"}");
    assert_int_equal(chat_frame_error(&b, CHAT_ERR_BUSY, "x", NULL, "5", 0), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"error\",\"code\":\"busy\",\"message\":\"x\","
                                "\"id\":\"5\",\"retry_after_ms\":0}");
    assert_int_equal(chat_frame_error(&b, NULL, NULL, NULL, NULL, -7), CHAT_OK);
    assert_string_equal(b.data,
                        "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"\"}");
    assert_int_equal(
        chat_frame_error(&b, CHAT_ERR_INTERNAL, "m\xff", "c", "i", INT64_MAX), CHAT_OK);
    o = parse_strict(b.data, b.len);
    assert_non_null(o);
    {
        json_object *v;
        assert_true(json_object_object_get_ex(o, "message", &v));
        assert_string_equal(json_object_get_string(v), "m" FFFD);
        assert_true(json_object_object_get_ex(o, "retry_after_ms", &v));
        assert_true(json_object_get_int64(v) == INT64_MAX);
    }
    json_object_put(o);
    chat_buf_free(&b);
}

/* chat_json_plain against a byte-by-byte definition: every special byte
 * (control, '"', '\\', DEL is not special, >= 0x80) at every position of
 * buffers around the 8-byte word size, alone and after other specials. */
static size_t plain_ref(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
        i++;
    }
    return i;
}

static void test_json_plain(void **state)
{
    static const unsigned char special[] = {0x00, 0x01, 0x1f, '"',
                                            '\\', 0x80, 0xc3, 0xff};
    static const unsigned char ordinary[] = {0x20, '!', '#', '[', ']', '~', 0x7f, 'a'};
    unsigned char buf[40];
    size_t n, at, k, j;
    (void)state;

    assert_int_equal(chat_json_plain("", 0), 0);
    for (n = 1; n <= sizeof(buf); n++) {
        for (j = 0; j < sizeof(ordinary); j++) {
            memset(buf, ordinary[j], n);
            assert_int_equal(chat_json_plain((const char *)buf, n), n);
        }
        for (at = 0; at < n; at++) {
            for (k = 0; k < sizeof(special); k++) {
                memset(buf, 'x', n);
                buf[at] = special[k];
                if (at + 3 < n) {
                    buf[at + 3] = special[(k + 1) % sizeof(special)];
                }
                assert_int_equal(chat_json_plain((const char *)buf, n),
                                 plain_ref(buf, n));
                assert_int_equal(chat_json_plain((const char *)buf, n), at);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_plain),
        cmocka_unit_test(test_escape_ascii_table),
        cmocka_unit_test(test_escape_unicode),
        cmocka_unit_test(test_escape_invalid_utf8),
        cmocka_unit_test(test_escape_embedded_nul_and_long),
        cmocka_unit_test(test_escape_random_bytes),
        cmocka_unit_test(test_escape_in_words),
        cmocka_unit_test(test_frame_delta),
        cmocka_unit_test(test_frame_error),
    };
    return cmocka_run_group_tests_name("json_escape", tests, NULL, NULL);
}
