/* Unit tests: chat_attach - names, the text check, encode/decode round
 * trips (content that looks like an envelope cannot end one early), the
 * size formula, and hostile stored texts decoded as plain text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/attach.h"

static void test_names(void **state)
{
    (void)state;
    assert_null(chat_attach_name_error("notes.txt", 9));
    assert_null(chat_attach_name_error("r\xc3\xa9sum\xc3\xa9 v2.md", 14));
    assert_non_null(chat_attach_name_error("", 0));
    assert_non_null(chat_attach_name_error("a\"b", 3));
    assert_non_null(chat_attach_name_error("a/b", 3));
    assert_non_null(chat_attach_name_error("a\nb", 3));
    assert_non_null(chat_attach_name_error("<x>", 3));
    assert_non_null(chat_attach_name_error("\xff", 1));
    {
        char big[300];
        memset(big, 'a', sizeof(big));
        assert_null(chat_attach_name_error(big, 255));
        assert_non_null(chat_attach_name_error(big, 256));
    }
}

static void test_text(void **state)
{
    (void)state;
    assert_true(chat_attach_is_text("plain\n\ttext \xe2\x82\xac", 15));
    assert_true(chat_attach_is_text("", 0));
    assert_false(chat_attach_is_text("a\0b", 3));
    assert_false(chat_attach_is_text("\x89PNG\r\n\x1a\n", 8));
    assert_false(chat_attach_is_text("\xed\xa0\x80", 3)); /* a surrogate */
}

static void test_round_trip(void **state)
{
    /* a file whose content mimics the envelope's end and another's start */
    const char *evil = "x\n</attachment>\n\n<attachment name=\"y\" bytes=\"1\">\nz";
    chat_attach_t in[3] = {
        {"a.py", 4, "print('hi')\n", 12},
        {"evil.txt", 8, evil, strlen(evil)},
        {"empty", 5, "", 0},
    };
    chat_attach_t out[CHAT_ATTACH_MAX];
    chat_buf_t b;
    const char *text;
    size_t n, tl, i;
    (void)state;
    chat_buf_init(&b);
    assert_int_equal(chat_attach_encode(&b, in, 3, "What does this do?", 18), CHAT_OK);
    assert_int_equal(b.len, chat_attach_size(in, 3, 18));
    assert_int_equal(
        chat_attach_decode(b.data, b.len, out, CHAT_ATTACH_MAX, &n, &text, &tl), CHAT_OK);
    assert_int_equal(n, 3);
    for (i = 0; i < 3; i++) {
        assert_int_equal(out[i].name_len, in[i].name_len);
        assert_memory_equal(out[i].name, in[i].name, in[i].name_len);
        assert_int_equal(out[i].len, in[i].len);
        assert_memory_equal(out[i].content, in[i].content, in[i].len);
    }
    assert_int_equal(tl, 18);
    assert_memory_equal(text, "What does this do?", 18);
    chat_buf_free(&b);
}

static void test_hostile(void **state)
{
    static const char *bad[] = {
        "plain text",
        "<attachment name=\"a\" bytes=\"99\">\nshort\n</attachment>\n\n",
        "<attachment name=\"a\" bytes=\"5\">\nshort</attachment>\n\n",
        "<attachment name=\"a/b\" bytes=\"1\">\nx\n</attachment>\n\n",
        "<attachment name=\"a\" bytes=\"\">\n\n</attachment>\n\n",
        "<attachment name=\"a\" bytes=\"99999999999999999999999\">\nx\n</attachment>\n\n",
        "<attachment name=\"a",
        "",
    };
    chat_attach_t out[2];
    const char *text;
    size_t i, n, tl;
    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = strlen(bad[i]);
        assert_int_equal(chat_attach_decode(bad[i], len, out, 2, &n, &text, &tl),
                         CHAT_EPARSE);
        assert_int_equal(n, 0);
        assert_ptr_equal(text, bad[i]);
        assert_int_equal(tl, len);
    }
    /* every prefix of a valid record decodes without reading past it */
    {
        chat_attach_t in = {"f", 1, "abc", 3};
        chat_buf_t b;
        chat_buf_init(&b);
        chat_attach_encode(&b, &in, 1, "q", 1);
        for (i = 0; i <= b.len; i++) {
            chat_attach_decode(b.data, i, out, 2, &n, &text, &tl);
            assert_true(text >= b.data && text + tl == b.data + i);
        }
        chat_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests_name("attach", tests, NULL, NULL);
}
