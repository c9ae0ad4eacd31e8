/* Unit tests: chat_search - ASCII case-insensitive find (against a naive
 * reference on random inputs), UTF-8 left alone, snippets that never cut a
 * code point and always contain the hit, trimming. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/attach.h"
#include "chat/common.h"
#include "chat/search.h"
#include "chat/utf8.h"

static void test_find_basic(void **state)
{
    const char *t = "Hello World, hello again";
    (void)state;
    assert_int_equal(chat_search_find(t, strlen(t), 0, "hello", 5), 0);
    assert_int_equal(chat_search_find(t, strlen(t), 1, "hello", 5), 13);
    assert_int_equal(chat_search_find(t, strlen(t), 14, "HELLO", 5), -1);
    assert_int_equal(chat_search_find(t, strlen(t), 0, "WORLD", 5), 6);
    assert_int_equal(chat_search_find(t, strlen(t), 0, "again!", 6), -1);
    assert_int_equal(chat_search_find(t, strlen(t), 0, "", 0), -1);
    assert_int_equal(chat_search_find(t, 3, 0, "hello", 5), -1);
    assert_int_equal(chat_search_find(t, strlen(t), 99, "h", 1), -1);
    /* a needle with a non-letter first byte */
    assert_int_equal(chat_search_find(t, strlen(t), 0, ", HeL", 5), 11);
}

static void test_find_utf8(void **state)
{
    /* "Ünïcode straße" : only ASCII letters fold; é matches é only */
    const char *t = "caf\xc3\xa9 CAF\xc3\xa9 \xc3\x9cnicode stra\xc3\x9f"
                    "e";
    (void)state;
    assert_int_equal(chat_search_find(t, strlen(t), 0, "caf\xc3\xa9", 5), 0);
    assert_int_equal(chat_search_find(t, strlen(t), 1, "caf\xc3\xa9", 5), 6);
    assert_int_equal(chat_search_find(t, strlen(t), 0, "\xc3\x9cNICODE", 8), 12);
    /* É (C3 89) is not folded to é (C3 A9): documented ASCII-only folding */
    assert_int_equal(chat_search_find(t, strlen(t), 0, "caf\xc3\x89", 5), -1);
    assert_int_equal(chat_search_find(t, strlen(t), 0,
                                      "STRA\xc3\x9f"
                                      "E",
                                      7),
                     21);
}

static long naive(const char *h, size_t hl, const char *n, size_t nl)
{
    size_t i, j;
    for (i = 0; nl && i + nl <= hl; i++) {
        for (j = 0; j < nl; j++) {
            unsigned char a = (unsigned char)h[i + j], b = (unsigned char)n[j];
            if (a >= 'A' && a <= 'Z')
                a = (unsigned char)(a + 32);
            if (b >= 'A' && b <= 'Z')
                b = (unsigned char)(b + 32);
            if (a != b)
                break;
        }
        if (j == nl)
            return (long)i;
    }
    return -1;
}

static void test_find_random(void **state)
{
    static const char alpha[] = "aAbB[`@{zZ \xc3\xa9";
    char h[64], n[4];
    int round;
    (void)state;
    srand(19);
    for (round = 0; round < 20000; round++) {
        size_t hl = (size_t)(rand() % 64), nl = 1 + (size_t)(rand() % 3), i;
        for (i = 0; i < hl; i++)
            h[i] = alpha[rand() % (sizeof(alpha) - 1)];
        for (i = 0; i < nl; i++)
            n[i] = alpha[rand() % (sizeof(alpha) - 1)];
        assert_int_equal(chat_search_find(h, hl, 0, n, nl), naive(h, hl, n, nl));
    }
}

static void test_snippet(void **state)
{
    char text[600];
    size_t i, s, e, pos, width;
    (void)state;
    /* "é" repeated with words: every cut must fall on a code point */
    for (i = 0; i + 3 <= sizeof(text) - 1; i += 3) {
        memcpy(text + i, i % 30 == 0 ? " ab" : "\xc3\xa9x", 3);
    }
    text[i] = 0;
    for (pos = 0; pos + 3 < i; pos += 3) {
        for (width = 3; width < 200; width += 17) {
            chat_search_snippet(text, i, pos, 3, width, &s, &e);
            assert_true(s <= pos && e >= pos + 3);
            assert_true(e - s <= width);
            assert_true(chat_utf8_valid((const uint8_t *)text + s, e - s));
        }
    }
    /* short text: all of it */
    chat_search_snippet("find me", 7, 5, 2, 160, &s, &e);
    assert_int_equal(s, 0);
    assert_int_equal(e, 7);
    /* a word cut at the left edge is dropped when a space is near */
    {
        const char *t = "aaaaaaaaaaaaaaaaaaaa bbbb needle cccc dddddddddddddddddddd";
        chat_search_snippet(t, strlen(t), 26, 6, 30, &s, &e);
        assert_true(s <= 26 && e >= 32 && e - s <= 30);
        assert_true(s == 0 || t[s - 1] == ' ');
    }
}

static void test_trim(void **state)
{
    const char *q = "  \t hello world \n";
    size_t n = chat_search_trim(&q, strlen(q));
    (void)state;
    assert_int_equal(n, 11);
    assert_memory_equal(q, "hello world", 11);
    q = "   ";
    assert_int_equal(chat_search_trim(&q, 3), 0);
}

/* A message with attachments: the user's text, then the contents; never
 * the envelope ("attachment", "name", "bytes", the file's name). */
static void test_message_with_attachments(void **state)
{
    chat_attach_t a[2] = {{"notes.txt", 9, "alpha beta", 10},
                          {"more.md", 7, "gamma needle", 12}};
    const char *user = "my needle question";
    chat_buf_t b;
    chat_search_hit_t h;
    (void)state;

    chat_buf_init(&b);
    assert_int_equal(chat_attach_encode(&b, a, 2, user, strlen(user)), CHAT_OK);
    /* the user's text first */
    assert_int_equal(chat_search_message(b.data, b.len, 1, "NEEDLE", 6, &h), 1);
    assert_null(h.name);
    assert_memory_equal(h.seg, user, strlen(user));
    assert_int_equal(h.seg_len, strlen(user));
    assert_int_equal(h.pos, 3);
    /* then the contents, with the attachment's name */
    assert_int_equal(chat_search_message(b.data, b.len, 1, "beta", 4, &h), 1);
    assert_int_equal(h.name_len, 9);
    assert_memory_equal(h.name, "notes.txt", 9);
    assert_int_equal(h.pos, 6);
    assert_int_equal(h.seg_len, 10);
    assert_int_equal(chat_search_message(b.data, b.len, 1, "gamma", 5, &h), 1);
    assert_memory_equal(h.name, "more.md", 7);
    /* the envelope is not text of the message */
    const char *env[] = {"attachment", "bytes=", "name=", "notes.txt",
                         "more.md",    "<",      "\"10\""};
    for (size_t k = 0; k < sizeof(env) / sizeof(env[0]); k++) {
        assert_int_equal(
            chat_search_message(b.data, b.len, 1, env[k], strlen(env[k]), &h), 0);
    }
    /* without the flag the stored text is searched whole */
    assert_int_equal(chat_search_message(b.data, b.len, 0, "attachment", 10, &h), 1);
    assert_int_equal(h.pos, 1);
    /* flagged but not in the stored form: searched whole */
    assert_int_equal(chat_search_message("<attachment x", 13, 1, "attach", 6, &h), 1);
    assert_int_equal(h.pos, 1);
    assert_null(h.name);
    chat_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_basic),
        cmocka_unit_test(test_find_utf8),
        cmocka_unit_test(test_find_random),
        cmocka_unit_test(test_snippet),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_message_with_attachments),
    };
    return cmocka_run_group_tests_name("search", tests, NULL, NULL);
}
