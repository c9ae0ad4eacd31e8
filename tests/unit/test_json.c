/* Unit tests: chat_json_escape, the chat_jw_* writer and the hot-path frame
 * builders (chat_frame_delta, chat_frame_error). Output is checked against
 * exact strings and parsed back with json-c in strict mode. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "chat/proto.h"

/* Parses s[0..n) strictly (whole input, UTF-8 validated); NULL if invalid. */
static json_object *parse_strict(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(64);
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
        /* a top-level number only ends at the end of input */
        o = json_tokener_parse_ex(tok, "", 1);
        n = 0;
    }
    if (o && json_tokener_get_parse_end(tok) != n) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

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
    ESC("\xed\x9f\xbf", "\xed\x9f\xbf"); /* U+D7FF is fine */
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

/* ---- writer ---------------------------------------------------------------- */

static void test_writer_nested(void **state)
{
    chat_buf_t b;
    chat_jw_t w;
    json_object *o;
    (void)state;

    chat_buf_init(&b);
    chat_jw_init(&w, &b);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "type", "history");
    chat_jw_kint(&w, "total", 12);
    chat_jw_kbool(&w, "has_more", 0);
    chat_jw_key(&w, "null");
    chat_jw_null(&w);
    chat_jw_kstr(&w, "nullstr", NULL);
    chat_jw_key(&w, "messages");
    chat_jw_arr_begin(&w);
    chat_jw_obj_begin(&w);
    chat_jw_kint(&w, "index", 0);
    chat_jw_kstrn(&w, "content", "hi\"there", 8);
    chat_jw_obj_end(&w);
    chat_jw_obj_begin(&w);
    chat_jw_obj_end(&w);
    chat_jw_arr_begin(&w);
    chat_jw_arr_end(&w);
    chat_jw_int(&w, -5);
    chat_jw_bool(&w, 7);
    chat_jw_raw(&w, "{\"x\":[1,2]}", 11);
    chat_jw_str(&w, "");
    chat_jw_arr_end(&w);
    chat_jw_kdouble(&w, "ttft_ms", 41.2);
    chat_jw_key(&w, "k<&>");
    chat_jw_strn(&w, "a\0b", 3);
    chat_jw_obj_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    assert_string_equal(
        b.data, "{\"type\":\"history\",\"total\":12,\"has_more\":false,\"null\":null,"
                "\"nullstr\":null,\"messages\":[{\"index\":0,\"content\":\"hi\\\"there\"},"
                "{},[],-5,true,{\"x\":[1,2]},\"\"],\"ttft_ms\":41.2,"
                "\"k\\u003c\\u0026\\u003e\":\"a\\u0000b\"}");
    o = parse_strict(b.data, b.len);
    assert_non_null(o);
    json_object_put(o);

    /* appends after what the buffer already holds */
    chat_buf_reset(&b, 1 << 20);
    chat_buf_puts(&b, "X");
    chat_jw_init(&w, &b);
    chat_jw_arr_begin(&w);
    chat_jw_arr_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    assert_string_equal(b.data, "X[]");

    /* scalars at top level */
    chat_buf_reset(&b, 1 << 20);
    chat_jw_init(&w, &b);
    chat_jw_str(&w, "top");
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    assert_string_equal(b.data, "\"top\"");
    chat_buf_free(&b);
}

static void test_writer_ints(void **state)
{
    static const struct {
        int64_t v;
        const char *s;
    } cases[] = {{0, "0"},
                 {-1, "-1"},
                 {7, "7"},
                 {1764134400000LL, "1764134400000"},
                 {INT64_MAX, "9223372036854775807"},
                 {INT64_MIN, "-9223372036854775808"}};
    size_t i;
    chat_buf_t b;
    chat_jw_t w;
    (void)state;

    chat_buf_init(&b);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        chat_buf_reset(&b, 1 << 20);
        chat_jw_init(&w, &b);
        chat_jw_int(&w, cases[i].v);
        assert_int_equal(chat_jw_status(&w), CHAT_OK);
        assert_string_equal(b.data, cases[i].s);
    }
    chat_buf_free(&b);
}

static void test_writer_doubles(void **state)
{
    static const struct {
        double v;
        const char *s;
    } cases[] = {
        {41.2, "41.2"},
        {80.5, "80.5"},
        {89.68609865470852, "89.6861"},
        {41.0, "41"},
        {0.0, "0"},
        {-0.5, "-0.5"},
        {0.1, "0.1"},
        {123456.0, "123456"},
        {1234567.891, "1234568"},
        {999999.7, "999999.7"},
        {999999.99999, "1000000"},
        {1764134400000.0, "1764134400000"},
        {0.0001234, "0.0001234"},
        {0.00001, "1e-05"},
        {1e20, "1e+20"},
        {-1e20, "-1e+20"},
        {1e16, "10000000000000000"},
        {1.7976931348623157e308, "1.7976931348623157e+308"},
    };
    size_t i;
    chat_buf_t b;
    chat_jw_t w;
    (void)state;

    chat_buf_init(&b);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_object *o;
        chat_buf_reset(&b, 1 << 20);
        chat_jw_init(&w, &b);
        chat_jw_double(&w, cases[i].v);
        assert_int_equal(chat_jw_status(&w), CHAT_OK);
        assert_string_equal(b.data, cases[i].s);
        /* and it is a JSON number */
        chat_buf_puts(&b, " ");
        o = parse_strict(b.data, b.len);
        assert_non_null(o);
        json_object_put(o);
    }
    chat_buf_reset(&b, 1 << 20);
    chat_jw_init(&w, &b);
    chat_jw_arr_begin(&w);
    chat_jw_double(&w, NAN);
    chat_jw_double(&w, INFINITY);
    chat_jw_double(&w, -INFINITY);
    chat_jw_arr_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    assert_string_equal(b.data, "[null,null,null]");
    chat_buf_free(&b);
}

/* Each misuse sets CHAT_EINVAL, and nothing more is written after it. */
static void test_writer_misuse(void **state)
{
    chat_buf_t b;
    chat_jw_t w;
    size_t len;
    int i;
    (void)state;

    chat_buf_init(&b);

#define FRESH()                                                                        \
    do {                                                                               \
        chat_buf_reset(&b, 1 << 20);                                                   \
        chat_jw_init(&w, &b);                                                          \
    } while (0)

    /* value without a key inside an object */
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_int(&w, 1);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    len = b.len;
    chat_jw_obj_end(&w);
    chat_jw_kint(&w, "a", 1);
    assert_int_equal(b.len, len); /* sticky */
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);

    /* key inside an array, key at top level, two keys in a row */
    FRESH();
    chat_jw_arr_begin(&w);
    chat_jw_key(&w, "a");
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_key(&w, "a");
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_key(&w, "a");
    chat_jw_key(&w, "b");
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_key(&w, NULL);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);

    /* mismatched or extra ends; end right after a key */
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_arr_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_arr_begin(&w);
    chat_jw_obj_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_arr_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_key(&w, "a");
    chat_jw_obj_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);

    /* a second top-level value */
    FRESH();
    chat_jw_obj_begin(&w);
    chat_jw_obj_end(&w);
    chat_jw_obj_begin(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    assert_string_equal(b.data, "{}");

    /* unfinished documents are reported */
    FRESH();
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL); /* nothing written */
    chat_jw_obj_begin(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    chat_jw_key(&w, "a");
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    chat_jw_int(&w, 1);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    chat_jw_obj_end(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_OK);

    /* raw and strn misuse */
    FRESH();
    chat_jw_raw(&w, "", 0);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_strn(&w, NULL, 3);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    FRESH();
    chat_jw_strn(&w, NULL, 0);
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    assert_string_equal(b.data, "\"\"");

    /* depth: CHAT_JW_DEPTH-1 levels fit, one more does not */
    FRESH();
    for (i = 0; i < CHAT_JW_DEPTH - 1; i++) {
        chat_jw_arr_begin(&w);
    }
    assert_int_equal(w.status, CHAT_OK);
    for (i = 0; i < CHAT_JW_DEPTH - 1; i++) {
        chat_jw_arr_end(&w);
    }
    assert_int_equal(chat_jw_status(&w), CHAT_OK);
    FRESH();
    for (i = 0; i < CHAT_JW_DEPTH - 1; i++) {
        chat_jw_obj_begin(&w);
        chat_jw_key(&w, "k");
    }
    len = b.len;
    chat_jw_arr_begin(&w);
    assert_int_equal(chat_jw_status(&w), CHAT_EINVAL);
    assert_int_equal(b.len, len);
#undef FRESH
    chat_buf_free(&b);
}

/* ---- random structures round trip through json-c ------------------------------- */

static uint32_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) & 0xffffff;
}

/* A random valid UTF-8 string that favours the characters that need care. */
static size_t rand_utf8(char *out, size_t cap)
{
    size_t n = 0, want = rnd() % 24;
    while (want-- && n + 4 < cap) {
        uint32_t cp;
        switch (rnd() % 8) {
        case 0: cp = rnd() % 0x20; break;
        case 1: cp = (uint32_t)"\"\\<>&/'"[rnd() % 7]; break;
        case 2: cp = 0x2028 + rnd() % 2; break;
        case 3: cp = 0x80 + rnd() % 0x780; break;
        case 4:
            cp = 0x800 + rnd() % 0xF800;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            break;
        case 5: cp = 0x10000 + rnd() % 0x100000; break;
        default: cp = 0x20 + rnd() % 0x5f; break;
        }
        if (cp == 0) {
            cp = 1; /* json-c object keys cannot hold NUL; values are tested elsewhere */
        }
        if (cp < 0x80) {
            out[n++] = (char)cp;
        }
        else if (cp < 0x800) {
            out[n++] = (char)(0xC0 | (cp >> 6));
            out[n++] = (char)(0x80 | (cp & 63));
        }
        else if (cp < 0x10000) {
            out[n++] = (char)(0xE0 | (cp >> 12));
            out[n++] = (char)(0x80 | ((cp >> 6) & 63));
            out[n++] = (char)(0x80 | (cp & 63));
        }
        else {
            out[n++] = (char)(0xF0 | (cp >> 18));
            out[n++] = (char)(0x80 | ((cp >> 12) & 63));
            out[n++] = (char)(0x80 | ((cp >> 6) & 63));
            out[n++] = (char)(0x80 | (cp & 63));
        }
    }
    out[n] = '\0';
    return n;
}

/* Writes a random value with the writer and builds the same value as a
 * json-c object to compare with. */
static json_object *gen(chat_jw_t *w, int depth)
{
    char s[128];
    size_t n;
    int i, k;
    json_object *o;

    switch (depth >= 6 ? 2 + rnd() % 5 : rnd() % 7) {
    case 0:
        o = json_object_new_object();
        chat_jw_obj_begin(w);
        k = (int)(rnd() % 5);
        for (i = 0; i < k; i++) {
            char key[128];
            rand_utf8(key, sizeof(key));
            snprintf(key + strlen(key), 8, "#%d", i); /* unique keys */
            chat_jw_key(w, key);
            json_object_object_add(o, key, gen(w, depth + 1));
        }
        chat_jw_obj_end(w);
        return o;
    case 1:
        o = json_object_new_array();
        chat_jw_arr_begin(w);
        k = (int)(rnd() % 5);
        for (i = 0; i < k; i++) {
            json_object_array_add(o, gen(w, depth + 1));
        }
        chat_jw_arr_end(w);
        return o;
    case 2:
        n = rand_utf8(s, sizeof(s));
        chat_jw_strn(w, s, n);
        return json_object_new_string_len(s, (int)n);
    case 3: {
        int64_t v = (int64_t)((((uint64_t)rnd() << 40) ^ ((uint64_t)rnd() << 16) ^ rnd()) >> 1);
        if (rnd() % 2) {
            v = -v;
        }
        chat_jw_int(w, v);
        return json_object_new_int64(v);
    }
    case 4:
        k = (int)(rnd() % 2);
        chat_jw_bool(w, k);
        return json_object_new_boolean(k);
    case 5:
        chat_jw_null(w);
        return NULL;
    default: {
        double d = (double)rnd() / 997.0;
        chat_jw_double(w, d);
        return json_object_new_double(d);
    }
    }
}

/* Compares a parsed value with the expected one (doubles approximately). */
static void same(json_object *exp, json_object *got)
{
    enum json_type t = json_object_get_type(exp);

    if (t == json_type_double) {
        double a = json_object_get_double(exp), b = json_object_get_double(got);
        assert_true(json_object_is_type(got, json_type_double) ||
                    json_object_is_type(got, json_type_int));
        double d = a > b ? a - b : b - a;
        assert_true(d <= (a < 0 ? -a : a) * 1e-5 + 1e-9);
        return;
    }
    assert_int_equal(json_object_get_type(got), t);
    if (t == json_type_object) {
        assert_int_equal(json_object_object_length(exp), json_object_object_length(got));
        json_object_object_foreach(exp, key, val)
        {
            json_object *g = NULL;
            assert_true(json_object_object_get_ex(got, key, &g));
            same(val, g);
        }
    }
    else if (t == json_type_array) {
        size_t i, n = json_object_array_length(exp);
        assert_int_equal(n, json_object_array_length(got));
        for (i = 0; i < n; i++) {
            same(json_object_array_get_idx(exp, i), json_object_array_get_idx(got, i));
        }
    }
    else if (t != json_type_null) {
        assert_true(json_object_equal(exp, got));
    }
}

static void test_writer_random_roundtrip(void **state)
{
    chat_buf_t b;
    int iter;
    (void)state;

    rng_state = 12345;
    chat_buf_init(&b);
    for (iter = 0; iter < 2000; iter++) {
        chat_jw_t w;
        json_object *exp, *got;
        size_t i;

        chat_buf_reset(&b, 1 << 20);
        chat_jw_init(&w, &b);
        exp = gen(&w, 0);
        assert_int_equal(chat_jw_status(&w), CHAT_OK);
        /* output never contains raw control chars or raw '<' '>' '&' */
        for (i = 0; i < b.len; i++) {
            unsigned char c = (unsigned char)b.data[i];
            assert_true(c >= 0x20 && c != '<' && c != '>' && c != '&' && c != 0x7f);
        }
        assert_null(strstr(b.data, "\xe2\x80\xa8"));
        assert_null(strstr(b.data, "\xe2\x80\xa9"));
        got = parse_strict(b.data, b.len);
        if (exp) {
            assert_non_null(got);
            same(exp, got);
        }
        else {
            assert_string_equal(b.data, "null");
        }
        json_object_put(exp);
        json_object_put(got);
    }
    chat_buf_free(&b);
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
            in[i] = (unsigned char)(r % 4 == 0 ? 0x80 + (r >> 4) % 0x80 : (r >> 4) & 0xff);
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
    assert_int_equal(chat_frame_error(&b, CHAT_ERR_RATE_LIMITED, "slow down", "c9", "m1",
                                      1500),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"type\":\"error\",\"code\":\"rate_limited\",\"message\":\"slow "
                        "down\",\"conversation_id\":\"c9\",\"id\":\"m1\","
                        "\"retry_after_ms\":1500}");
    assert_int_equal(chat_frame_error(&b, CHAT_ERR_BAD_JSON, "bad <json>", NULL, NULL, -1),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"error\",\"code\":\"bad_json\",\"message\":"
                                "\"bad \\u003cjson\\u003e\"}");
    assert_int_equal(chat_frame_error(&b, CHAT_ERR_BUSY, "x", NULL, "5", 0), CHAT_OK);
    assert_string_equal(b.data, "{\"type\":\"error\",\"code\":\"busy\",\"message\":\"x\","
                                "\"id\":\"5\",\"retry_after_ms\":0}");
    assert_int_equal(chat_frame_error(&b, NULL, NULL, NULL, NULL, -7), CHAT_OK);
    assert_string_equal(b.data,
                        "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"\"}");
    assert_int_equal(chat_frame_error(&b, CHAT_ERR_INTERNAL, "m\xff", "c", "i", INT64_MAX),
                     CHAT_OK);
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
    static const unsigned char special[] = {0x00, 0x01, 0x1f, '"', '\\', 0x80, 0xc3, 0xff};
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
                assert_int_equal(chat_json_plain((const char *)buf, n), plain_ref(buf, n));
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
        cmocka_unit_test(test_writer_nested),
        cmocka_unit_test(test_writer_ints),
        cmocka_unit_test(test_writer_doubles),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_writer_random_roundtrip),
        cmocka_unit_test(test_escape_random_bytes),
        cmocka_unit_test(test_frame_delta),
        cmocka_unit_test(test_frame_error),
    };
    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
