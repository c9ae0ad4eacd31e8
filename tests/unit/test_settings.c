/* Unit tests: the per-conversation settings blob (chat/settings.h): round
 * trips, the bot's defaults (nothing set), a system prompt with newlines
 * and "key=" text in it, malformed and unknown lines, and what may not be
 * written. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/settings.h"

static void roundtrip(const chat_settings_t *in, chat_settings_t *out, chat_buf_t *b)
{
    chat_buf_reset(b, 0);
    assert_int_equal(chat_settings_write(in, b), CHAT_OK);
    chat_settings_parse(b->data, b->len, out);
}

static void test_roundtrip(void **state)
{
    const char *sys = "Answer in French.\nmodel=evil\ntemperature=9\n\n";
    chat_settings_t in, out;
    chat_buf_t b;
    (void)state;

    chat_buf_init(&b);
    memset(&in, 0, sizeof(in));
    roundtrip(&in, &out, &b);
    assert_int_equal(b.len, 0);
    assert_null(out.model);
    assert_null(out.system);
    assert_int_equal(out.has_temperature, 0);

    in.model = "llama3.2:latest";
    in.model_len = strlen(in.model);
    in.system = sys;
    in.system_len = strlen(sys);
    in.temperature = 0.1;
    in.has_temperature = 1;
    roundtrip(&in, &out, &b);
    assert_int_equal(out.model_len, in.model_len);
    assert_memory_equal(out.model, in.model, in.model_len);
    /* the prompt is kept whole, its "model=" line is text */
    assert_int_equal(out.system_len, in.system_len);
    assert_memory_equal(out.system, sys, in.system_len);
    assert_int_equal(out.has_temperature, 1);
    assert_true(out.temperature == 0.1); /* %.17g reads back exactly */

    /* an empty system prompt is a prompt of its own (no prompt) */
    in.model = NULL;
    in.system = "";
    in.system_len = 0;
    in.has_temperature = 0;
    roundtrip(&in, &out, &b);
    assert_non_null(out.system);
    assert_int_equal(out.system_len, 0);
    assert_null(out.model);
    chat_buf_free(&b);
}

static void test_malformed(void **state)
{
    chat_settings_t out;
    static const char *const bad[] = {
        "temperature=hot\n",
        "temperature=\n",
        "temperature=1e999\n",
        "temperature=nan\n",
        "temperature=0.5x\n",
        "model=\n",
        "model=a\tb\n",
        "colour=blue\n",
        "\n\n\n",
        "garbage",
        "temperature=0.12345678901234567890123456789012345\n",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        chat_settings_parse(bad[i], strlen(bad[i]), &out);
        assert_null(out.model);
        assert_null(out.system);
        assert_int_equal(out.has_temperature, 0);
    }
    /* unknown lines are skipped, known ones still read; no final newline */
    chat_settings_parse("colour=blue\nmodel=m\ntemperature=1.5",
                        strlen("colour=blue\nmodel=m\ntemperature=1.5"), &out);
    assert_int_equal(out.model_len, 1);
    assert_int_equal(out.has_temperature, 1);
    assert_true(out.temperature == 1.5);
    /* a NUL in the prompt: no prompt */
    chat_settings_parse("system=a\0b", 10, &out);
    assert_null(out.system);
    chat_settings_parse(NULL, 0, &out);
    assert_null(out.model);
}

static void test_write_refuses(void **state)
{
    chat_settings_t s;
    chat_buf_t b;
    char longname[202];
    (void)state;

    chat_buf_init(&b);
    chat_buf_puts(&b, "keep");
    memset(&s, 0, sizeof(s));
    s.model = "a\nb";
    s.model_len = 3;
    assert_int_equal(chat_settings_write(&s, &b), CHAT_EINVAL);
    memset(longname, 'm', sizeof(longname));
    s.model = longname;
    s.model_len = 201;
    assert_int_equal(chat_settings_write(&s, &b), CHAT_EINVAL);
    s.model_len = 200;
    s.system = "x\0y";
    s.system_len = 3;
    assert_int_equal(chat_settings_write(&s, &b), CHAT_EINVAL);
    s.system = NULL;
    s.has_temperature = 1;
    s.temperature = INFINITY;
    assert_int_equal(chat_settings_write(&s, &b), CHAT_EINVAL);
    /* nothing was written by the refused calls */
    assert_int_equal(b.len, 4);
    assert_true(chat_settings_model_ok("qwen2.5-coder:7b", 16));
    assert_false(chat_settings_model_ok("", 0));
    assert_false(chat_settings_model_ok("a\x7f", 2));
    chat_buf_free(&b);
}

/* The model of a blob, or of the first bytes of one. */
static void test_model_of(void **state)
{
    char out[CHAT_SETTINGS_MODEL_MAX + 1];
    const char *b = "temperature=0.5\nmodel=llama3.2:latest\nsystem=model=x\n";
    (void)state;

    assert_int_equal(chat_settings_model_of(b, strlen(b), 1, out), 15);
    assert_string_equal(out, "llama3.2:latest");
    /* a prefix cut inside the model line: not a shorter name */
    assert_int_equal(chat_settings_model_of(b, 26, 0, out), 0);
    assert_string_equal(out, "");
    /* the same bytes as a whole blob: the last line needs no newline */
    assert_int_equal(chat_settings_model_of("model=ab", 8, 1, out), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(chat_settings_model_of("model=ab", 8, 0, out), 0);
    /* only in the system prompt, or invalid, or nothing */
    assert_int_equal(chat_settings_model_of("system=a\nmodel=b\n", 17, 1, out), 0);
    assert_int_equal(chat_settings_model_of("model=a\tb\n", 10, 1, out), 0);
    assert_int_equal(chat_settings_model_of(NULL, 0, 1, out), 0);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_write_refuses),
        cmocka_unit_test(test_model_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
