/* Unit tests: chat/stream.h - the request bodies of both wire formats:
 * exact text, parsed back with json-c (strict), options sent or left out
 * per format, hostile text escaped, bad arguments refused. */
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

#include "chat/stream.h"

/* ---- requests ------------------------------------------------------------------ */

static json_object *parse_json(const char *s, size_t n)
{
    json_tokener *tok = json_tokener_new();
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    assert_int_equal(json_tokener_get_error(tok), json_tokener_success);
    assert_int_equal(json_tokener_get_parse_end(tok), n);
    json_tokener_free(tok);
    assert_non_null(o);
    return o;
}

static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v)) {
        fail_msg("no member %s", key);
    }
    return v;
}

static int has_member(json_object *o, const char *key)
{
    return json_object_object_get_ex(o, key, NULL);
}

static void test_request_ollama(void **state)
{
    chat_buf_t b;
    chat_options_t o;
    json_object *j, *m, *opt;
    chat_msg_t msgs[3] = {{CHAT_ROLE_SYSTEM, "Be brief.", 9},
                          {CHAT_ROLE_USER, "Hi \"you\"", 8},
                          {CHAT_ROLE_ASSISTANT, "Hello", 5}};
    (void)state;

    chat_buf_init(&b);
    chat_options_init(&o);
    o.temperature = 0.7;
    o.top_p = 0.9;
    o.top_k = 40;
    o.num_ctx = 8192;
    o.num_predict = 256;
    o.seed = 42;
    o.keep_alive = "5m";
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "llama3.2", msgs, 3, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(
        b.data,
        "{\"model\":\"llama3.2\",\"messages\":[{\"role\":\"system\",\"content\":\"Be "
        "brief.\"},"
        "{\"role\":\"user\",\"content\":\"Hi \\\"you\\\"\"},{\"role\":\"assistant\","
        "\"content\":\"Hello\"}],\"stream\":true,\"keep_alive\":\"5m\",\"options\":{"
        "\"temperature\":0.7,\"top_p\":0.9,\"top_k\":40,\"num_ctx\":8192,\"num_predict\":"
        "256,"
        "\"seed\":42}}");
    j = parse_json(b.data, b.len);
    assert_string_equal(json_object_get_string(member(j, "model")), "llama3.2");
    m = member(j, "messages");
    assert_int_equal(json_object_array_length(m), 3);
    assert_string_equal(
        json_object_get_string(member(json_object_array_get_idx(m, 1), "role")), "user");
    assert_string_equal(
        json_object_get_string(member(json_object_array_get_idx(m, 1), "content")),
        "Hi \"you\"");
    assert_true(json_object_get_boolean(member(j, "stream")));
    assert_string_equal(json_object_get_string(member(j, "keep_alive")), "5m");
    opt = member(j, "options");
    assert_true(json_object_get_double(member(opt, "temperature")) == 0.7);
    assert_true(json_object_get_double(member(opt, "top_p")) == 0.9);
    assert_int_equal(json_object_get_int64(member(opt, "top_k")), 40);
    assert_int_equal(json_object_get_int64(member(opt, "num_ctx")), 8192);
    assert_int_equal(json_object_get_int64(member(opt, "num_predict")), 256);
    assert_int_equal(json_object_get_int64(member(opt, "seed")), 42);
    assert_int_equal(json_object_object_length(opt), 6);
    assert_int_equal(json_object_object_length(j), 5);
    json_object_put(j);

    /* nothing set: no options, no keep_alive; "-1" keep_alive is a number */
    chat_options_init(&o);
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", msgs + 1, 1, &o, 0, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"Hi \\\"you\\\"\"}],\"stream\":false}");
    chat_buf_reset(&b, 0);
    o.keep_alive = "-1";
    o.temperature = 0;
    o.num_ctx = 2048;
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true,"
                                "\"keep_alive\":-1,\"options\":{\"temperature\":0,"
                                "\"num_ctx\":2048}}");
    /* NULL options == all unset; non-finite doubles are unset */
    chat_buf_reset(&b, 0);
    o.keep_alive = NULL;
    o.num_ctx = -1;
    o.temperature = NAN;
    o.top_p = INFINITY;
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true}");
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", NULL, 0, NULL, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data, "{\"model\":\"m\",\"messages\":[],\"stream\":true}");
    chat_buf_free(&b);
}

static void test_request_openai(void **state)
{
    chat_buf_t b;
    chat_options_t o;
    json_object *j;
    chat_msg_t msgs[2] = {{CHAT_ROLE_USER, "q", 1}, {CHAT_ROLE_TOOL, "r", 1}};
    (void)state;

    chat_buf_init(&b);
    chat_options_init(&o);
    o.temperature = 0.2;
    o.top_p = 1;
    o.num_ctx = 4096;    /* not sent */
    o.num_predict = 100; /* max_tokens */
    o.seed = 7;
    o.keep_alive = "10m"; /* not sent */
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "gpt", msgs, 2, &o, 1, &b),
                     CHAT_OK);
    assert_string_equal(
        b.data, "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                "{\"role\":\"tool\",\"content\":\"r\"}],\"stream\":true,"
                "\"stream_options\":{\"include_usage\":true},\"temperature\":0.2,"
                "\"top_p\":1,\"max_tokens\":100,\"seed\":7}");
    j = parse_json(b.data, b.len);
    assert_true(
        json_object_get_boolean(member(member(j, "stream_options"), "include_usage")));
    assert_true(json_object_get_double(member(j, "temperature")) == 0.2);
    assert_int_equal(json_object_get_int64(member(j, "max_tokens")), 100);
    assert_false(has_member(j, "num_ctx"));
    assert_false(has_member(j, "keep_alive"));
    assert_false(has_member(j, "options"));
    assert_false(has_member(j, "top_k"));
    json_object_put(j);
    /* top_k when set (llama-server / vLLM extension); no stream_options
     * without streaming */
    chat_options_init(&o);
    o.top_k = 20;
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "gpt", msgs, 1, &o, 0, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"q\"}],\"stream\":false,\"top_k\":20}");
    chat_buf_free(&b);
}

static void test_request_escaping(void **state)
{
    chat_buf_t b;
    json_object *j, *c;
    const char text[] =
        "q\" b\\ n\n r\r t\t \x01\x1f\x7f \xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x98\x80"
        " bad\xFF end\xE6\x97 </script>\0nul";
    const char want[] =
        "q\" b\\ n\n r\r t\t \x01\x1f\x7f \xC3\xA9 \xE2\x80\xA8 \xF0\x9F\x98\x80"
        " bad\xEF\xBF\xBD end\xEF\xBF\xBD </script>\0nul";
    chat_msg_t m = {CHAT_ROLE_USER, text, sizeof(text) - 1};
    (void)state;

    chat_buf_init(&b);
    chat_buf_puts(&b, "prefix:");
    assert_int_equal(
        chat_request_build(CHAT_WIRE_OPENAI, "m\"odel\n", &m, 1, NULL, 1, &b), CHAT_OK);
    assert_memory_equal(b.data, "prefix:", 7);
    assert_non_null(strstr(b.data, "\\u0001\\u001f\x7f"));
    assert_non_null(strstr(b.data, "\\u0000nul"));
    j = parse_json(b.data + 7, b.len - 7);
    assert_string_equal(json_object_get_string(member(j, "model")), "m\"odel\n");
    c = member(json_object_array_get_idx(member(j, "messages"), 0), "content");
    assert_int_equal(json_object_get_string_len(c), sizeof(want) - 1);
    assert_memory_equal(json_object_get_string(c), want, sizeof(want) - 1);
    json_object_put(j);

    /* bad arguments leave out unchanged */
    m.role = (chat_role_t)9;
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "m", &m, 1, NULL, 1, &b),
                     CHAT_EINVAL);
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, NULL, NULL, 0, NULL, 1, &b),
                     CHAT_EINVAL);
    m.role = CHAT_ROLE_USER;
    m.content = NULL;
    assert_int_equal(chat_request_build(CHAT_WIRE_OPENAI, "m", &m, 1, NULL, 1, &b),
                     CHAT_EINVAL);
    m.len = 0; /* NULL with 0 is the empty string */
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_request_build(CHAT_WIRE_OLLAMA, "m", &m, 1, NULL, 1, &b),
                     CHAT_OK);
    assert_string_equal(b.data,
                        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
                        "\"\"}],\"stream\":true}");
    assert_string_equal(chat_role_name(CHAT_ROLE_SYSTEM), "system");
    assert_string_equal(chat_role_name(CHAT_ROLE_TOOL), "tool");
    assert_null(chat_role_name((chat_role_t)-1));
    chat_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_ollama),
        cmocka_unit_test(test_request_openai),
        cmocka_unit_test(test_request_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
