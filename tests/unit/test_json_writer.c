/* Unit tests: the chat_jw_* writer - nested documents, integers, doubles,
 * every misuse (sticky CHAT_EINVAL, nothing written after it) and random
 * structures written and parsed back with json-c in strict mode. */
#include "test_json_util.h"

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
        b.data,
        "{\"type\":\"history\",\"total\":12,\"has_more\":false,\"null\":null,"
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

#define FRESH()                                                                          \
    do {                                                                                 \
        chat_buf_reset(&b, 1 << 20);                                                     \
        chat_jw_init(&w, &b);                                                            \
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

/* A random valid UTF-8 string that favours the characters that need care. */
static size_t rand_utf8(char *out, size_t cap)
{
    size_t n = 0, want = rnd() % 24;
    while (want-- && n + 4 < cap) {
        uint32_t cp;
        switch (rnd() % 8) {
        case 0:
            cp = rnd() % 0x20;
            break;
        case 1:
            cp = (uint32_t) "\"\\<>&/'"[rnd() % 7];
            break;
        case 2:
            cp = 0x2028 + rnd() % 2;
            break;
        case 3:
            cp = 0x80 + rnd() % 0x780;
            break;
        case 4:
            cp = 0x800 + rnd() % 0xF800;
            if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            break;
        case 5:
            cp = 0x10000 + rnd() % 0x100000;
            break;
        default:
            cp = 0x20 + rnd() % 0x5f;
            break;
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
        int64_t v =
            (int64_t)((((uint64_t)rnd() << 40) ^ ((uint64_t)rnd() << 16) ^ rnd()) >> 1);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_nested),
        cmocka_unit_test(test_writer_ints),
        cmocka_unit_test(test_writer_doubles),
        cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_writer_random_roundtrip),
    };
    return cmocka_run_group_tests_name("json_writer", tests, NULL, NULL);
}
