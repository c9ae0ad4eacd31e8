/* Unit tests: directive value parsers (chat/confparse.h), table driven:
 * valid values with their exact results, invalid ones with the exact or
 * characteristic part of the message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/confparse.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define K 1024ull
#define MB (1024ull * 1024)
#define GB (1024ull * 1024 * 1024)

static void assert_has(const char *msg, const char *needle, const char *input)
{
    if (!msg) {
        fail_msg("'%s' was accepted", input);
    }
    if (!strstr(msg, needle)) {
        fail_msg("'%s': message '%s' lacks '%s'", input, msg, needle);
    }
}

static void test_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } ok[] = {
        {"65536", 65536}, {"64k", 64 * K},   {"64K", 64 * K},   {"16M", 16 * MB},
        {"16m", 16 * MB}, {"1G", GB},        {"1g", GB},        {"1024", 1024},
        {"64KB", 64 * K}, {"64KiB", 64 * K}, {"16MB", 16 * MB}, {"1GiB", GB},
        {"4096B", 4096},  {"0001k", K},      {"64kiB", 64 * K}, {"1048576", MB},
    };
    static const struct {
        const char *s;
        const char *msg;
    } bad[] = {
        {"", "expected a size such as 65536, 64k or 16M (between 1k and 1G; k, M and G "
             "are multiples of 1024)"},
        {"k", "expected a size"},
        {"64 k", "expected a size"},
        {" 64k", "expected a size"},
        {"64k ", "expected a size"},
        {"-64k", "expected a size"},
        {"+64k", "expected a size"},
        {"64kb", "expected a size"},
        {"64iB", "expected a size"},
        {"64KK", "expected a size"},
        {"64T", "expected a size"},
        {"1.5M", "expected a size"},
        {"0x10", "expected a size"},
        {"64k\n", "expected a size"},
        {"1023", "out of range: the size must be between 1k and 1G"},
        {"2G", "out of range: the size must be between 1k and 1G"},
        {"1025M", "out of range"},
        {"0", "out of range"},
        {"99999999999999999999G", "out of range"},
        {"99999999999999999999", "out of range"},
        {"18446744073709551615", "out of range"},
        {"17179869184G", "out of range"}, /* 2^34 G = 2^64 bytes: overflows */
    };
    size_t i;
    uint64_t v;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        v = 0;
        if (chat_parse_size(ok[i].s, K, GB, &v) != NULL) {
            fail_msg("'%s' refused: %s", ok[i].s, chat_parse_size(ok[i].s, K, GB, &v));
        }
        assert_int_equal(v, ok[i].v);
    }
    for (i = 0; i < N(bad); i++) {
        v = 77;
        assert_has(chat_parse_size(bad[i].s, K, GB, &v), bad[i].msg, bad[i].s);
        assert_int_equal(v, 77);
    }
    assert_has(chat_parse_size(NULL, K, GB, &v), "expected a size", "(null)");
    /* full range, exact bounds, odd bounds in the message */
    assert_null(chat_parse_size("18446744073709551615", 0, UINT64_MAX, &v));
    assert_true(v == UINT64_MAX);
    assert_null(chat_parse_size("16777216G", 0, UINT64_MAX, &v)); /* 2^54 */
    assert_true(v == (1ull << 54));
    assert_has(chat_parse_size("17179869184G", 0, UINT64_MAX, &v), "out of range", "");
    assert_null(chat_parse_size("1k", K, K, &v));
    assert_has(chat_parse_size("5", 100, 1500, &v), "between 100 and 1500", "5");
    assert_has(chat_parse_size("5", 3 * MB, 5 * GB, &v), "between 3M and 5G", "5");
}

static void test_duration(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"250ms", 250}, {"5s", 5000}, {"2m", 120000},   {"1h", 3600000},   {"30", 30000},
        {"0", 0},       {"0ms", 0},   {"1000ms", 1000}, {"24h", 86400000}, {"007s", 7000},
    };
    static const char *const syntax[] = {"",    "s",    "ms",   "5 s", " 5s",  "5s ",
                                         "-5s", "+5s",  "1.5s", "5S",  "5sec", "5min",
                                         "5d",  "5mss", "5hm",  "0x5", "5µs"};
    static const char *const range[] = {"25h",
                                        "86400001ms",
                                        "90000",
                                        "99999999999999999999",
                                        "9999999999999999h",
                                        "2562047788016h"};
    size_t i;
    int64_t v;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        v = -1;
        assert_null(chat_parse_duration(ok[i].s, 0, 86400000, &v));
        assert_int_equal(v, ok[i].ms);
    }
    for (i = 0; i < N(syntax); i++) {
        v = -1;
        assert_has(
            chat_parse_duration(syntax[i], 0, 86400000, &v),
            "expected a duration such as 500ms, 30s, 5m or 1h, a bare number being "
            "seconds (between 0s and 24h)",
            syntax[i]);
        assert_int_equal(v, -1);
    }
    for (i = 0; i < N(range); i++) {
        v = -1;
        assert_has(chat_parse_duration(range[i], 0, 86400000, &v),
                   "out of range: the duration must be between 0s and 24h", range[i]);
        assert_int_equal(v, -1);
    }
    assert_has(chat_parse_duration("50ms", 100, 90000, &v), "between 100ms and 90s", "");
    assert_has(chat_parse_duration("1h", 1000, 120000, &v), "between 1s and 2m", "");
    assert_has(chat_parse_duration(NULL, 0, 1, &v), "expected a duration", "(null)");
    /* the largest representable value, and one past it */
    assert_null(chat_parse_duration("9223372036854775807ms", 0, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    assert_has(chat_parse_duration("9223372036854775808ms", 0, INT64_MAX, &v),
               "out of range", "");
    assert_has(chat_parse_duration("9223372036854776s", 0, INT64_MAX, &v), "out of range",
               "");
    assert_null(chat_parse_duration("9223372036854775s", 0, INT64_MAX, &v));
    assert_true(v == 9223372036854775000LL);
}

static void test_int(void **state)
{
    static const struct {
        const char *s;
        int64_t v;
    } ok[] = {{"0", 0},  {"42", 42}, {"-42", -42},   {"+7", 7},
              {"-0", 0}, {"007", 7}, {"1000", 1000}, {"-1000", -1000}};
    static const char *const syntax[] = {"",     "-",   "+",  " 1",  "1 ", "1.0", "1e3",
                                         "0x10", "--1", "1-", "one", "1k", "١"};
    size_t i;
    int64_t v;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        assert_null(chat_parse_int(ok[i].s, -1000, 1000, &v));
        assert_int_equal(v, ok[i].v);
    }
    for (i = 0; i < N(syntax); i++) {
        v = 5;
        assert_has(chat_parse_int(syntax[i], -1000, 1000, &v),
                   "expected an integer between -1000 and 1000", syntax[i]);
        assert_int_equal(v, 5);
    }
    assert_has(chat_parse_int("1001", -1000, 1000, &v),
               "out of range: expected an integer between -1000 and 1000", "1001");
    assert_has(chat_parse_int("-1001", -1000, 1000, &v), "out of range", "-1001");
    assert_has(chat_parse_int("99999999999999999999", INT64_MIN, INT64_MAX, &v),
               "out of range", "");
    assert_has(chat_parse_int("9223372036854775808", INT64_MIN, INT64_MAX, &v),
               "out of range", "");
    assert_has(chat_parse_int("-9223372036854775809", INT64_MIN, INT64_MAX, &v),
               "out of range", "");
    assert_null(chat_parse_int("9223372036854775807", INT64_MIN, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    assert_null(chat_parse_int("-9223372036854775808", INT64_MIN, INT64_MAX, &v));
    assert_true(v == INT64_MIN);
    assert_has(chat_parse_int(NULL, 0, 1, &v), "expected an integer", "(null)");
}

static void test_double(void **state)
{
    static const struct {
        const char *s;
        double v;
    } ok[] = {{"0.5", 0.5},     {"1", 1.0},  {"-2", -2.0},  {"+2.5", 2.5},
              {".5", 0.5},      {"5.", 5.0}, {"1e1", 10.0}, {"1E-1", 0.1},
              {"2.5e+1", 25.0}, {"0", 0.0},  {"-0", 0.0},   {"100", 100.0}};
    static const char *const syntax[] = {
        "",    ".",   "-",    "e5",       "1e",    "1e+", " 1",    "1 ",   "nan",
        "NaN", "inf", "-inf", "infinity", "0x1p3", "1,5", "1.2.3", "1e5x", "--1"};
    size_t i;
    double v;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        assert_null(chat_parse_double(ok[i].s, -100, 100, &v));
        assert_true(v == ok[i].v);
    }
    for (i = 0; i < N(syntax); i++) {
        v = 9;
        assert_has(chat_parse_double(syntax[i], -100, 100, &v),
                   "expected a number such as 0.5 between -100 and 100", syntax[i]);
        assert_true(v == 9);
    }
    assert_has(chat_parse_double("100.5", -100, 100, &v),
               "out of range: expected a number between -100 and 100", "100.5");
    assert_has(chat_parse_double("1e999", -100, 100, &v), "out of range", "1e999");
    assert_has(chat_parse_double("-1e999", -1e308, 1e308, &v), "out of range", "-1e999");
    assert_has(chat_parse_double("0.01", 0.1, 2, &v), "between 0.1 and 2", "");
    assert_null(chat_parse_double("1e-400", -1, 1, &v)); /* underflow to 0 is fine */
    assert_true(v == 0.0);
    assert_has(chat_parse_double(NULL, 0, 1, &v), "expected a number", "(null)");
}

static void test_bool(void **state)
{
    static const struct {
        const char *s;
        int v;
    } ok[] = {{"on", 1},   {"On", 1},    {"ON", 1},  {"off", 0},  {"Off", 0},
              {"yes", 1},  {"no", 0},    {"YES", 1}, {"true", 1}, {"false", 0},
              {"True", 1}, {"FALSE", 0}, {"1", 1},   {"0", 0}};
    static const char *const bad[] = {"",    "o",   "of",     "onn",  "offf",
                                      " on", "on ", "2",      "-1",   "y",
                                      "n",   "t",   "enable", "yess", "01"};
    size_t i;
    int v;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        v = -1;
        assert_null(chat_parse_bool(ok[i].s, &v));
        assert_int_equal(v, ok[i].v);
    }
    for (i = 0; i < N(bad); i++) {
        v = -1;
        assert_has(chat_parse_bool(bad[i], &v),
                   "expected On or Off (also yes/no, true/false, 1/0)", bad[i]);
        assert_int_equal(v, -1);
    }
    assert_non_null(chat_parse_bool(NULL, &v));
}

static void test_rate(void **state)
{
    static const struct {
        const char *s;
        uint32_t count;
        int64_t ms;
    } ok[] = {
        {"10/min", 10, 60000},        {"10/m", 10, 60000},        {"5/s", 5, 1000},
        {"5/sec", 5, 1000},           {"100/hour", 100, 3600000}, {"100/h", 100, 3600000},
        {"10/minute", 10, 60000},     {"1/second", 1, 1000},      {"3/seconds", 3, 1000},
        {"2/minutes", 2, 60000},      {"7/hours", 7, 3600000},    {"10/MIN", 10, 60000},
        {"1000000/s", 1000000, 1000}, {"1/h", 1, 3600000},
    };
    static const char *const syntax[] = {
        "",        "10",      "/min",    "10/",     "10 /min",  "10/ min",
        "10/min ", " 10/min", "10/day",  "10/ms",   "-1/min",   "1.5/min",
        "10//min", "10/mi",   "ten/min", "10/minx", "10per/min"};
    static const char *const range[] = {"0/min", "1000001/s", "99999999999999999999/s",
                                        "4294967297/s"};
    size_t i;
    uint32_t c;
    int64_t ms;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        c = 0;
        ms = 0;
        assert_null(chat_parse_rate(ok[i].s, &c, &ms));
        assert_int_equal(c, ok[i].count);
        assert_int_equal(ms, ok[i].ms);
    }
    for (i = 0; i < N(syntax); i++) {
        c = 9;
        ms = 9;
        assert_has(chat_parse_rate(syntax[i], &c, &ms),
                   "expected a rate such as 10/min, 5/s or 100/hour (a count between 1 "
                   "and 1000000 per s, sec, m, min, minute, h or hour)",
                   syntax[i]);
        assert_int_equal(c, 9);
        assert_int_equal(ms, 9);
    }
    for (i = 0; i < N(range); i++) {
        assert_has(chat_parse_rate(range[i], &c, &ms),
                   "out of range: the count must be between 1 and 1000000", range[i]);
    }
    assert_non_null(chat_parse_rate(NULL, &c, &ms));
}

static void test_url_valid(void **state)
{
    static const struct {
        const char *s, *scheme, *host;
        int port;
        const char *path;
    } ok[] = {
        {"http://127.0.0.1:11434", "http", "127.0.0.1", 11434, ""},
        {"http://127.0.0.1:11434/", "http", "127.0.0.1", 11434, ""},
        {"http://localhost", "http", "localhost", 80, ""},
        {"https://api.example.com", "https", "api.example.com", 443, ""},
        {"https://api.example.com/v1/", "https", "api.example.com", 443, "/v1"},
        {"https://api.example.com/v1//", "https", "api.example.com", 443, "/v1"},
        {"HTTP://Host.Example:8080/a/b", "http", "Host.Example", 8080, "/a/b"},
        {"HtTpS://h", "https", "h", 443, ""},
        {"http://[::1]:11434", "http", "[::1]", 11434, ""},
        {"http://[::1]", "http", "[::1]", 80, ""},
        {"http://[2001:db8::42]/ollama", "http", "[2001:db8::42]", 80, "/ollama"},
        {"http://[::ffff:10.0.0.1]:1", "http", "[::ffff:10.0.0.1]", 1, ""},
        {"http://h:65535", "http", "h", 65535, ""},
        {"http://h:080", "http", "h", 80, ""},
        {"http://my_host-1.internal:8000/p%20q/~x", "http", "my_host-1.internal", 8000,
         "/p%20q/~x"},
        {"http://h/a:b@c;d=e,f!$&'()*+", "http", "h", 80, "/a:b@c;d=e,f!$&'()*+"},
        {"http://10.1.2.3//", "http", "10.1.2.3", 80, ""},
        {"http://h.example.", "http", "h.example.", 80, ""},
    };
    size_t i;
    chat_url_t u;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        const char *e = chat_parse_url(ok[i].s, &u);
        if (e) {
            fail_msg("'%s' refused: %s", ok[i].s, e);
        }
        assert_string_equal(u.scheme, ok[i].scheme);
        assert_string_equal(u.host, ok[i].host);
        assert_int_equal(u.port, ok[i].port);
        assert_string_equal(u.path, ok[i].path);
    }
}

static void test_url_invalid(void **state)
{
    static const struct {
        const char *s, *msg;
    } bad[] = {
        {"", "expected an http:// or https:// URL such as http://127.0.0.1:11434 (host, "
             "optional port and path)"},
        {"ftp://h", "expected an http:// or https:// URL"},
        {"ws://h", "expected an http:// or https:// URL"},
        {"h:11434", "expected an http:// or https:// URL"},
        {"http:/h", "expected an http:// or https:// URL"},
        {"//h", "expected an http:// or https:// URL"},
        {"http://", "the URL has no host"},
        {"http:///x", "the URL has no host"},
        {"http://:80", "the URL has no host"},
        {"http://h:0", "invalid URL port: expected a number between 1 and 65535"},
        {"http://h:65536", "invalid URL port"},
        {"http://h:80a", "invalid URL port"},
        {"http://h:", "invalid URL port"},
        {"http://h:-1", "invalid URL port"},
        {"http://h:+80", "invalid URL port"},
        {"http://h:0000080", "invalid URL port"},
        {"http://h:99999999999999999999", "invalid URL port"},
        {"http://h:80:81", "invalid URL port"},
        {"http://user@h", "the URL must not contain user info"},
        {"http://user:pw@h:80/x", "the URL must not contain user info"},
        {"http://@h", "the URL must not contain user info"},
        {"http://h?x=1", "must not have a query string (?) or fragment (#)"},
        {"http://h/p?x=1", "must not have a query string"},
        {"http://h/?", "must not have a query string"},
        {"http://h#f", "must not have a query string"},
        {"http://h/p#f", "must not have a query string"},
        {"http://h /p", "whitespace or control characters"},
        {" http://h", "whitespace or control characters"},
        {"http://h\t", "whitespace or control characters"},
        {"http://h/p\n", "whitespace or control characters"},
        {"http://h/\x7f", "whitespace or control characters"},
        {"http://[::1", "invalid IPv6 address"},
        {"http://[]", "invalid IPv6 address"},
        {"http://[::g]", "invalid IPv6 address"},
        {"http://[1:2:3:4:5:6:7:8:9]", "invalid IPv6 address"},
        {"http://[fe80::1%25eth0]", "invalid IPv6 address"},
        {"http://[::1]x", "invalid URL port"},
        {"http://::1", "the URL has no host"},
        {"http://999.1.1.1", "invalid IPv4 address"},
        {"http://1.2.3", "invalid IPv4 address"},
        {"http://1.2.3.4.5", "invalid IPv4 address"},
        {"http://h..x", "empty label"},
        {"http://.h", "empty label"},
        {"http://h%41", "invalid URL host"},
        {"http://h\xc3\xa9", "invalid URL host"},
        {"http://h!x", "invalid URL host"},
        {"http://h/a b", "whitespace or control characters"},
        {"http://h/%zz", "'%' must start an escape"},
        {"http://h/%4", "'%' must start an escape"},
        {"http://h/a\"b", "must be percent-encoded"},
        {"http://h/a<b", "must be percent-encoded"},
        {"http://h/a\\b", "must be percent-encoded"},
        {"http://h/\xc3\xa9", "must be percent-encoded"},
    };
    size_t i;
    chat_url_t u;
    char longhost[300], longpath[600];
    (void)state;

    for (i = 0; i < N(bad); i++) {
        memset(&u, 0x5a, sizeof(u));
        assert_has(chat_parse_url(bad[i].s, &u), bad[i].msg, bad[i].s);
        assert_int_equal(u.port, 0x5a5a5a5a); /* untouched */
    }
    assert_has(chat_parse_url(NULL, &u), "expected an http:// or https:// URL", "(null)");

    memcpy(longhost, "http://", 7);
    memset(longhost + 7, 'a', 255);
    longhost[262] = '\0';
    assert_null(chat_parse_url(longhost, &u));
    assert_int_equal(strlen(u.host), 255);
    longhost[262] = 'a';
    longhost[263] = '\0';
    assert_has(chat_parse_url(longhost, &u), "host is too long", "long host");

    memcpy(longpath, "http://h/", 9);
    memset(longpath + 9, 'p', 510);
    longpath[519] = '\0';
    assert_null(chat_parse_url(longpath, &u));
    assert_int_equal(strlen(u.path), 511);
    memcpy(longpath + 519, "//", 3); /* trailing slashes do not count */
    assert_null(chat_parse_url(longpath, &u));
    longpath[519] = 'p';
    longpath[520] = '\0';
    assert_has(chat_parse_url(longpath, &u), "path is too long", "long path");
}

static void test_kv(void **state)
{
    char key[8];
    const char *v;
    (void)state;

    assert_int_equal(chat_parse_kv("model=llama3", key, sizeof(key), &v), 1);
    assert_string_equal(key, "model");
    assert_string_equal(v, "llama3");
    assert_int_equal(chat_parse_kv("a_b=", key, sizeof(key), &v), 1);
    assert_string_equal(key, "a_b");
    assert_string_equal(v, "");
    assert_int_equal(chat_parse_kv("k==x", key, sizeof(key), &v), 1);
    assert_string_equal(v, "=x");
    assert_int_equal(chat_parse_kv("url=http://h/?a=b", key, sizeof(key), &v), 1);
    assert_string_equal(v, "http://h/?a=b");
    assert_int_equal(chat_parse_kv("abcdefg=1", key, sizeof(key), &v), 1); /* 7 + NUL */
    assert_string_equal(key, "abcdefg");

    v = "untouched";
    assert_int_equal(chat_parse_kv("abcdefgh=1", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("=x", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("Model=x", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("mo-del=x", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("k1=x", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("k =x", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("model", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("http://h", key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv(NULL, key, sizeof(key), &v), 0);
    assert_int_equal(chat_parse_kv("k=x", key, 0, &v), 0);
    assert_string_equal(v, "untouched");
}

static void test_name(void **state)
{
    static const char *const ok[] = {"coder",   "a",      "0", "Qwen2.5-coder_7b",
                                     "a.b-c_d", "9lives", "A"};
    static const char *const bad[] = {"",    "-a", ".a",  "_a", "a b",      "a/b",
                                      "a:b", "é",  "a\n", " a", "a\xc3\xa9"};
    char n64[66];
    size_t i;
    (void)state;

    for (i = 0; i < N(ok); i++) {
        assert_null(chat_parse_name(ok[i]));
    }
    for (i = 0; i < N(bad); i++) {
        assert_has(
            chat_parse_name(bad[i]),
            "expected a name of 1 to 64 characters from A-Z, a-z, 0-9, '_', '.' and "
            "'-', starting with a letter or digit",
            bad[i]);
    }
    assert_non_null(chat_parse_name(NULL));
    memset(n64, 'n', 64);
    n64[64] = '\0';
    assert_null(chat_parse_name(n64));
    n64[64] = 'n';
    n64[65] = '\0';
    assert_non_null(chat_parse_name(n64));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size),      cmocka_unit_test(test_duration),
        cmocka_unit_test(test_int),       cmocka_unit_test(test_double),
        cmocka_unit_test(test_bool),      cmocka_unit_test(test_rate),
        cmocka_unit_test(test_url_valid), cmocka_unit_test(test_url_invalid),
        cmocka_unit_test(test_kv),        cmocka_unit_test(test_name),
    };
    return cmocka_run_group_tests_name("confparse", tests, NULL, NULL);
}
