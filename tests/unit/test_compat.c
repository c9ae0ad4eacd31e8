/* Unit tests: chat_compat - which old-style bot ids (port-8000 clients)
 * are accepted, the ISO 8601 timestamps of the old history shape, and
 * previews cut on code point boundaries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/compat.h"

static int ok(const char *s)
{
    return chat_compat_id_valid(s, strlen(s));
}

static void test_ids_accepted(void **state)
{
    static const char *const good[] = {"BOT-001",
                                       "bot",
                                       "x",
                                       "BOT_9.2",
                                       "my bot",
                                       "BOT-001:a+b@c~d",
                                       "coder",
                                       "\xd0\x91\xd0\xbe\xd1\x82-1" /* Cyrillic */,
                                       "\xf0\x9f\xa4\x96" /* U+1F916 */,
                                       "0000000b5f3a9c0e1d2b4a77",
                                       "BOT\xc2\xa0"
                                       "1" /* inside: fine */,
                                       NULL};
    char max[CHAT_COMPAT_ID_MAX + 1];
    int i;

    for (i = 0; good[i]; i++) {
        assert_true(ok(good[i]));
    }
    memset(max, 'a', CHAT_COMPAT_ID_MAX);
    max[CHAT_COMPAT_ID_MAX] = '\0';
    assert_true(ok(max));
}

static void test_ids_refused(void **state)
{
    static const char *const bad[] = {
        "", " BOT", "BOT ", " ", "a/b", "a\\b", "a?b", "a#b", "100%", "<b>", "a&b",
        "say \"hi\"", "it's", "a`b", "tab\there", "nl\n", "del\x7f", "c1\xc2\x85", "\xff",
        "\xc3", "\xed\xa0\x80" /* surrogate */, "\xc0\xaf" /* overlong / */,
        /* blank, or blank at an end: NO-BREAK SPACE counts as a space */
        "\xc2\xa0", "\xc2\xa0 \xc2\xa0",
        "\xc2\xa0"
        "BOT",
        "BOT\xc2\xa0", NULL};
    char big[CHAT_COMPAT_ID_MAX + 2];
    int i;

    for (i = 0; bad[i]; i++) {
        assert_false(ok(bad[i]));
    }
    memset(big, 'a', CHAT_COMPAT_ID_MAX + 1);
    big[CHAT_COMPAT_ID_MAX + 1] = '\0';
    assert_false(ok(big));
    assert_false(chat_compat_id_valid(NULL, 0));
    /* an embedded NUL is not part of any id */
    assert_false(chat_compat_id_valid("a\0b", 3));
    /* a valid prefix of a longer buffer is judged by its length only */
    assert_true(chat_compat_id_valid("BOT-001/x", 7));
}

static void test_timestamps(void **state)
{
    char ts[CHAT_COMPAT_TS_SIZE];

    chat_compat_timestamp(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000Z");
    chat_compat_timestamp(1764136800123ULL, ts);
    assert_string_equal(ts, "2025-11-26T06:00:00.123Z");
    chat_compat_timestamp(951782400999ULL, ts); /* a leap day */
    assert_string_equal(ts, "2000-02-29T00:00:00.999Z");
    chat_compat_timestamp(253402300799999ULL, ts);
    assert_string_equal(ts, "9999-12-31T23:59:59.999Z");
    chat_compat_timestamp(UINT64_MAX, ts);
    assert_string_equal(ts, "9999-12-31T23:59:59.999Z");
    assert_int_equal(strlen(ts), CHAT_COMPAT_TS_SIZE - 1);
}

static void test_cut(void **state)
{
    const char *s = "ab\xc3\xa9"
                    "cd"; /* a b é c d: 6 bytes */

    assert_int_equal(chat_compat_cut(s, 6, 10), 6);
    assert_int_equal(chat_compat_cut(s, 6, 6), 6);
    assert_int_equal(chat_compat_cut(s, 6, 4), 4);
    assert_int_equal(chat_compat_cut(s, 6, 3), 2); /* not inside é */
    assert_int_equal(chat_compat_cut(s, 6, 0), 0);
    assert_int_equal(chat_compat_cut("\xf0\x9f\xa4\x96", 4, 3), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_accepted),
        cmocka_unit_test(test_ids_refused),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
