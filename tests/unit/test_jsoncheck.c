/* Unit tests: the strict RFC 8259 check of client JSON (chat/jsoncheck.h):
 * what json-c 0.16 lets through in strict mode (raw control characters in
 * strings, single quotes, NaN, bad UTF-8) is refused; every valid text is
 * accepted, whole and at every cut (a prefix of a valid text is refused as
 * unfinished). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/jsoncheck.h"

static chat_status_t chk(const char *s, size_t n, unsigned depth, char *err)
{
    return chat_json_check(s, n, depth, err, 160);
}

static void good(const char *s, size_t n)
{
    char err[160];

    if (chk(s, n, 32, err) != CHAT_OK) {
        fail_msg("refused '%.*s': %s", (int)n, s, err);
    }
}

static void bad(const char *s, size_t n, chat_status_t want, const char *needle)
{
    char err[160];
    chat_status_t st = chk(s, n, 32, err);

    if (st != want) {
        fail_msg("'%.*s': got %d (%s), want %d", (int)n, s, st, err, want);
    }
    if (needle && !strstr(err, needle)) {
        fail_msg("'%.*s': '%s' lacks '%s'", (int)n, s, err, needle);
    }
}

#define GOOD(lit) good(lit, sizeof(lit) - 1)
#define BAD(lit, st, m) bad(lit, sizeof(lit) - 1, st, m)

static void test_valid(void **state)
{
    static const char *const texts[] = {
        "{}",
        "[]",
        "0",
        "-0",
        "1.5",
        "-1.5e10",
        "1E+2",
        "0.0e-0",
        "\"\"",
        "true",
        "false",
        "null",
        " {\"a\" : [1, 2.5, -3e-2, true, false, null, {\"b\":{}}]} \r\n\t",
        "{\"type\":\"message\",\"content\":\"a\\tb\\nc\\u0001\\\"\\\\\\/\\b\\f\\r\"}",
        "{\"k\":\"\\ud83d\\ude00 and \\ud800 alone\"}", /* escapes, even lone ones */
        "{\"\xc3\xa9\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf\"}",
        "{\"del\":\"\x7f\"}", /* DEL is not a control character in RFC 8259 */
        "{\"a\":{\"a\":{\"a\":[[[]]]}}}",
        "[1,[2,[3]],{\"x\":[{}]}]",
        "123456789012345678901234567890",
        "{\"a\":1,\"a\":2}"};
    size_t i, cut;
    char err[160];
    (void)state;

    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        size_t n = strlen(texts[i]);
        good(texts[i], n);
        /* a strict prefix is never a whole value, except where a number
         * or the white space after the value is cut */
        for (cut = 0; cut < n; cut++) {
            chat_status_t st = chk(texts[i], cut, 32, err);
            if (st == CHAT_OK) {
                size_t k;
                for (k = cut; k < n; k++) {
                    const char c = texts[i][k];
                    if (!(c >= '0' && c <= '9') && c != ' ' && c != '\r' && c != '\n' &&
                        c != '\t' && c != '.' && c != 'e' && c != 'E' && c != '-' &&
                        c != '+') {
                        fail_msg("prefix %zu of '%s' accepted", cut, texts[i]);
                    }
                }
            }
        }
    }
}

static void test_control_characters(void **state)
{
    char s[16];
    int c;
    (void)state;

    /* the finding: raw TAB, LF and 0x01 inside strings */
    BAD("{\"content\":\"a\tb\"}", CHAT_EPARSE, "control character in a string");
    BAD("{\"content\":\"a\nb\"}", CHAT_EPARSE, "control character");
    BAD("{\"content\":\"a\x01"
        "b\"}",
        CHAT_EPARSE, "control character");
    BAD("{\"a\tb\":1}", CHAT_EPARSE, "control character"); /* in a key too */
    for (c = 0; c < 0x20; c++) {
        int n = snprintf(s, sizeof(s), "[\"x%cy\"]", c ? c : '?');
        if (!c) {
            s[3] = '\0';
        }
        bad(s, (size_t)n, CHAT_EPARSE, "control character");
    }
    /* outside strings only SP, HT, LF and CR are white space */
    BAD("{\"a\":1}\x0b", CHAT_EPARSE, "unexpected data after the value");
    BAD("\x0c{}", CHAT_EPARSE, NULL);
    BAD("{}\x00", CHAT_EPARSE, NULL);
    BAD("{\"a\":\xc2\xa0"
        "1}",
        CHAT_EPARSE, "unexpected character"); /* NBSP is not white space */
}

static void test_utf8(void **state)
{
    (void)state;

    /* the finding: overlong, surrogate and out-of-range UTF-8 */
    BAD("{\"a\":\"\xc0\xaf\"}", CHAT_EUTF8, "invalid UTF-8"); /* overlong '/' */
    BAD("{\"a\":\"\xe0\x80\xaf\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\xf0\x80\x80\xaf\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\xed\xa0\x80\"}", CHAT_EUTF8, "invalid UTF-8"); /* U+D800 */
    BAD("{\"a\":\"\xed\xbf\xbf\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\xf4\x90\x80\x80\"}", CHAT_EUTF8, "invalid UTF-8"); /* > U+10FFFF */
    BAD("{\"a\":\"\xf5\x80\x80\x80\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\xff\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\x80\"}", CHAT_EUTF8, "invalid UTF-8");
    BAD("{\"a\":\"\xc3\"}", CHAT_EUTF8, "invalid UTF-8");          /* cut sequence */
    BAD("{\"\xc3\x28\":1}", CHAT_EUTF8, "invalid UTF-8");          /* in a key */
    BAD("{\"a\":1}\xc3\xa9", CHAT_EPARSE, "unexpected character"); /* UTF-8, not JSON */
    BAD("{\"a\":1}\xc0\xaf", CHAT_EUTF8, "invalid UTF-8");
    BAD("\xef\xbb\xbf{}", CHAT_EPARSE, "unexpected character"); /* a BOM */
}

static void test_grammar(void **state)
{
    (void)state;

    BAD("", CHAT_EPARSE, "empty text");
    BAD("   ", CHAT_EPARSE, "ends before");
    BAD("{'a':1}", CHAT_EPARSE, "expected a string key");
    BAD("{\"a\":'b'}", CHAT_EPARSE, "unexpected character");
    BAD("{\"a\":NaN}", CHAT_EPARSE, "unexpected character");
    BAD("{\"a\":Infinity}", CHAT_EPARSE, NULL);
    BAD("{\"a\":-Infinity}", CHAT_EPARSE, "bad number");
    BAD("{\"a\":+1}", CHAT_EPARSE, NULL);
    BAD("{\"a\":01}", CHAT_EPARSE, "leading zero");
    BAD("{\"a\":-01}", CHAT_EPARSE, "leading zero");
    BAD("{\"a\":0x1}", CHAT_EPARSE, NULL);
    BAD("{\"a\":1.}", CHAT_EPARSE, "digits must follow '.'");
    BAD("{\"a\":.5}", CHAT_EPARSE, NULL);
    BAD("{\"a\":1e}", CHAT_EPARSE, "exponent");
    BAD("{\"a\":1e+}", CHAT_EPARSE, "exponent");
    BAD("{\"a\":True}", CHAT_EPARSE, NULL);
    BAD("{\"a\":nul}", CHAT_EPARSE, NULL);
    BAD("{\"a\":1,}", CHAT_EPARSE, "expected a string key");
    BAD("[1,]", CHAT_EPARSE, NULL);
    BAD("[1 2]", CHAT_EPARSE, "expected ',' or ']'");
    BAD("{\"a\" 1}", CHAT_EPARSE, "expected ':'");
    BAD("{\"a\":1]", CHAT_EPARSE, "expected ',' or '}'");
    BAD("[1}", CHAT_EPARSE, "expected ',' or ']'");
    BAD("{\"a\":1}}", CHAT_EPARSE, "unexpected data after the value");
    BAD("{} {}", CHAT_EPARSE, "unexpected data after the value");
    BAD("{\"a\":1/*c*/}", CHAT_EPARSE, NULL);
    BAD("{\"a\":\"\\x41\"}", CHAT_EPARSE, "unknown escape");
    BAD("{\"a\":\"\\u12\"}", CHAT_EPARSE, "bad \\u escape");
    BAD("{\"a\":\"\\u12g4\"}", CHAT_EPARSE, "bad \\u escape");
    BAD("{\"a\":\"\\", CHAT_EPARSE, "ends inside a string");
    BAD("{\"a\":\"abc", CHAT_EPARSE, "ends inside a string");
    BAD("{\"a\":", CHAT_EPARSE, "ends before");
    BAD("{", CHAT_EPARSE, "ends before");
    assert_int_equal(chat_json_check(NULL, 5, 8, NULL, 0), CHAT_EPARSE);
}

static void test_depth(void **state)
{
    char s[600];
    char err[160];
    unsigned d;
    (void)state;

    for (d = 1; d <= 260; d++) {
        memset(s, '[', d);
        memset(s + d, ']', d);
        assert_int_equal(chk(s, 2 * d, 16, err), d <= 16 ? CHAT_OK : CHAT_ETOOBIG);
        /* the limit is clamped, never exceeded */
        assert_int_equal(chk(s, 2 * d, 100000, err),
                         d <= CHAT_JSON_CHECK_MAX_DEPTH ? CHAT_OK : CHAT_ETOOBIG);
    }
    assert_non_null(strstr(err, "nested too deep"));
    /* objects and arrays mixed, and the position is reported */
    assert_int_equal(chk("{\"a\":[{\"b\":[1]}]}", 15, 3, err), CHAT_ETOOBIG);
    assert_non_null(strstr(err, "at byte 11"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid), cmocka_unit_test(test_control_characters),
        cmocka_unit_test(test_utf8),  cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
