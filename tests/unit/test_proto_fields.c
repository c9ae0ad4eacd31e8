/* Unit tests: chat_cmsg_parse field by field - ids, length caps in bytes,
 * the export format, counts, command arguments, message content, the
 * port-8000 client's command line, blank titles and the per-chat settings
 * fields. */
#include "test_proto_util.h"

static void test_ids(void **state)
{
    char buf[512], big[200];
    (void)state;

    assert_int_equal(P("{\"type\":\"ping\",\"id\":42}"), CHAT_OK);
    assert_string_equal(M.id, "42");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":-7}"), CHAT_OK);
    assert_string_equal(M.id, "-7");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":0}"), CHAT_OK);
    assert_string_equal(M.id, "0");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":9223372036854775807}"), CHAT_OK);
    assert_string_equal(M.id, "9223372036854775807");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":-9223372036854775807}"), CHAT_OK);
    assert_string_equal(M.id, "-9223372036854775807");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":\"abc\"}"), CHAT_OK);
    assert_string_equal(M.id, "abc");
    /* a string id that looks like a number stays a string */
    assert_int_equal(P("{\"type\":\"ping\",\"id\":\"0042\"}"), CHAT_OK);
    assert_string_equal(M.id, "0042");

    assert_int_equal(P("{\"type\":\"ping\",\"id\":9223372036854775808}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'id' must be a string or an integer");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":-9223372036854775809}"), CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"ping\",\"id\":1.5}"), CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"ping\",\"id\":true}"), CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"ping\",\"id\":[]}"), CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"ping\",\"id\":{}}"), CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"ping\",\"id\":\"\"}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'id' must not be empty");
    assert_int_equal(P("{\"type\":\"ping\",\"id\":\"a\\u0000\"}"), CHAT_EINVAL);

    memset(big, 'x', 128);
    big[128] = '\0';
    snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"id\":\"%s\"}", big);
    assert_int_equal(P(buf), CHAT_OK);
    assert_int_equal(strlen(M.id), 128);
    snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"id\":\"%sx\"}", big);
    assert_int_equal(P(buf), CHAT_EINVAL);
    assert_string_equal(E, "field 'id' is too long (at most 128 bytes)");
}

/* Length caps are in bytes: check them with ASCII and multi-byte text. */
static void cap_case(const char *type, const char *pre, const char *field, size_t max,
                     const char *unit)
{
    char buf[2048], val[1024], want[96];
    size_t ulen = strlen(unit), n = 0;

    while (n + ulen <= max) {
        memcpy(val + n, unit, ulen);
        n += ulen;
    }
    val[n] = '\0';
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",%s\"%s\":\"%s\"}", type, pre, field,
             val);
    assert_int_equal(P(buf), CHAT_OK);
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",%s\"%s\":\"%s%s\"}", type, pre, field,
             val, unit);
    assert_int_equal(P(buf), CHAT_EINVAL);
    snprintf(want, sizeof(want), "field '%s' is too long (at most %zu bytes)", field,
             max);
    assert_string_equal(E, want);
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",%s\"%s\":\"\"}", type, pre, field);
    assert_int_equal(P(buf), CHAT_EINVAL);
    snprintf(want, sizeof(want), "field '%s' must not be empty", field);
    assert_string_equal(E, want);
}

static void test_length_caps(void **state)
{
    (void)state;
    cap_case("launch", "", "bot_id", 64, "b");
    cap_case("select", "", "conversation_id", 64, "c");
    cap_case("rename", "\"conversation_id\":\"c\",", "title", 128, "t");
    cap_case("rename", "\"conversation_id\":\"c\",", "title", 128, "\xc3\xa9");
    cap_case("rename", "\"conversation_id\":\"c\",", "title", 128, "\xf0\x9f\x98\x80");
    cap_case("run", "", "command", 64, "r");
    /* content has no cap of its own (the frame limit applies) but not empty */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\"}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'content' must not be empty");
}

static void test_format(void **state)
{
    static const char *const bad[] = {"\"html\"", "\"\"", "\"JSON\"", "\"markdown \"",
                                      "\"json\\u0000\""};
    char buf[256];
    size_t i;
    (void)state;

    assert_int_equal(P("{\"type\":\"export\",\"conversation_id\":\"c\",\"format\":"
                       "\"markdown\"}"),
                     CHAT_OK);
    assert_string_equal(M.format, "markdown");
    assert_int_equal(
        P("{\"type\":\"export\",\"conversation_id\":\"c\",\"format\":\"json\"}"),
        CHAT_OK);
    assert_string_equal(M.format, "json");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "{\"type\":\"export\",\"conversation_id\":\"c\","
                 "\"format\":%s}",
                 bad[i]);
        assert_int_equal(P(buf), CHAT_EINVAL);
        assert_err_has("'format'");
        assert_null(M.format);
    }
}

static void test_numbers(void **state)
{
    (void)state;
    assert_int_equal(
        P("{\"type\":\"history\",\"limit\":0,\"offset\":9223372036854775807}"), CHAT_OK);
    assert_int_equal(M.limit, 0);
    assert_true(M.offset == INT64_MAX);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":-0}"), CHAT_OK);
    assert_int_equal(M.limit, 0);
    assert_int_equal(
        P("{\"type\":\"resume\",\"conversation_id\":\"c\",\"offset\":12345}"), CHAT_OK);
    assert_int_equal(M.offset, 12345);
    assert_int_equal(P("{\"type\":\"history\",\"offset\":-1}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'offset' must be a non-negative integer");
    /* not JSON at all (json-c would read them as doubles) */
    assert_int_equal(P("{\"type\":\"history\",\"limit\":NaN}"), CHAT_EPARSE);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":Infinity}"), CHAT_EPARSE);
    /* documented range: at most 1000 messages per history request */
    assert_int_equal(P("{\"type\":\"history\",\"limit\":1000}"), CHAT_OK);
    assert_int_equal(M.limit, 1000);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":1001}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'limit' must be at most 1000");
    assert_int_equal(M.limit, -1);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":01}"), CHAT_EPARSE);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":+1}"), CHAT_EPARSE);
    assert_int_equal(
        P("{\"type\":\"archive\",\"conversation_id\":\"c\",\"archived\":false}"),
        CHAT_OK);
    assert_int_equal(M.archived, 0);
}

static void test_args(void **state)
{
    char buf[2048];
    size_t n, i;
    (void)state;

    assert_int_equal(P("{\"type\":\"run\",\"command\":\"ls\",\"args\":[]}"), CHAT_OK);
    assert_int_equal(M.nargs, 0);
    assert_int_equal(P("{\"type\":\"run\",\"command\":\"ls\",\"args\":[\"\",\"-l\","
                       "\"a b\",\"\\u00e9\"]}"),
                     CHAT_OK);
    assert_int_equal(M.nargs, 4);
    assert_string_equal(M.args[0], "");
    assert_string_equal(M.args[1], "-l");
    assert_string_equal(M.args[2], "a b");
    assert_string_equal(M.args[3], "\xc3\xa9");

    n = (size_t)snprintf(buf, sizeof(buf),
                         "{\"type\":\"run\",\"command\":\"x\",\"args\":[");
    for (i = 0; i < CHAT_MAX_ARGS; i++) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s\"a%zu\"", i ? "," : "", i);
    }
    snprintf(buf + n, sizeof(buf) - n, "]}");
    assert_int_equal(P(buf), CHAT_OK);
    assert_int_equal(M.nargs, CHAT_MAX_ARGS);
    assert_string_equal(M.args[CHAT_MAX_ARGS - 1], "a31");
    snprintf(buf + n, sizeof(buf) - n, ",\"more\"]}");
    assert_int_equal(P(buf), CHAT_EINVAL);
    assert_string_equal(E, "field 'args' has too many elements (at most 32)");
    assert_int_equal(M.nargs, 0);

    assert_int_equal(P("{\"type\":\"run\",\"command\":\"ls\",\"args\":[\"a\\u0000b\"]}"),
                     CHAT_EINVAL);
    assert_string_equal(E, "field 'args' contains a NUL character");
    assert_int_equal(P("{\"type\":\"run\",\"command\":\"ls\",\"args\":null}"), CHAT_OK);
    assert_int_equal(M.nargs, 0);
}

static void test_content(void **state)
{
    (void)state;
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"a\\u0000b\"}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'content' contains a NUL character");
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"line\\nnext \\u00e9 "
                       "\\ud83d\\ude00 \\\"q\\\" \\\\ <&>\"}"),
                     CHAT_OK);
    assert_string_equal(M.content, "line\nnext \xc3\xa9 \xf0\x9f\x98\x80 \"q\" \\ <&>");
    assert_int_equal(M.content_len, strlen(M.content));
    /* lone surrogate escapes: json-c substitutes U+FFFD */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"a\\ud800b\"}"), CHAT_OK);
    assert_string_equal(M.content, "a\xef\xbf\xbd"
                                   "b");
    assert_int_equal(M.content_len, 5);
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\\udc00\"}"), CHAT_OK);
    assert_string_equal(M.content, "\xef\xbf\xbd");
    /* raw invalid UTF-8 */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\xff\"}"), CHAT_EPARSE);
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\xc3\"}"), CHAT_EPARSE);
    /* an encoded surrogate gets past json-c's check, not ours: the text
     * is not UTF-8, so not JSON */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\xed\xa0\x80\"}"),
                     CHAT_EPARSE);
    assert_err_has("invalid UTF-8");
    assert_int_equal(P("{\"type\":\"launch\",\"bot_id\":\"\xed\xbf\xbf\"}"), CHAT_EPARSE);
    assert_err_has("invalid UTF-8");
    /* the last of duplicate keys wins (json-c) */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"a\",\"content\":\"b\"}"),
                     CHAT_OK);
    assert_string_equal(M.content, "b");
}

/* The port-8000 client's chat line: {"type":"command","bot_id","command"}.
 * Its text is free (no length cap but the message limit, unlike run's
 * command name) and lands in content; bot_id and conversation_id are
 * optional. */
static void test_command_line(void **state)
{
    char big[600];
    (void)state;
    assert_int_equal(P("{\"type\":\"command\",\"bot_id\":\"BOT-001\","
                       "\"command\":\"what is 2+2?\"}"),
                     CHAT_OK);
    assert_int_equal(M.type, CHAT_C_COMMAND);
    assert_string_equal(chat_ctype_name(M.type), "command");
    assert_string_equal(M.content, "what is 2+2?");
    assert_int_equal(M.content_len, 12);
    assert_string_equal(M.bot_id, "BOT-001");
    assert_null(M.command);
    assert_null(M.conversation_id);
    assert_int_equal(P("{\"type\":\"command\",\"command\":\"x\",\"conversation_id\":"
                       "\"c1\",\"id\":7,\"args\":[\"ignored\"]}"),
                     CHAT_OK);
    assert_string_equal(M.conversation_id, "c1");
    assert_string_equal(M.id, "7");
    assert_null(M.bot_id);
    assert_int_equal(M.nargs, 0);
    /* longer than any id: a chat line, not a command name */
    snprintf(big, sizeof(big), "{\"type\":\"command\",\"command\":\"%0500d\"}", 1);
    assert_int_equal(P(big), CHAT_OK);
    assert_int_equal(M.content_len, 500);
    /* required, a non-empty string */
    assert_int_equal(P("{\"type\":\"command\",\"bot_id\":\"B\"}"), CHAT_EINVAL);
    assert_string_equal(E, "missing field 'command'");
    assert_string_equal(M.bot_id, "B"); /* kept for the error frame */
    assert_int_equal(P("{\"type\":\"command\",\"command\":\"\"}"), CHAT_EINVAL);
    assert_err_has("'command' must not be empty");
    assert_int_equal(P("{\"type\":\"command\",\"command\":[\"ls\"]}"), CHAT_EINVAL);
    assert_err_has("'command' must be a string");
    assert_int_equal(P("{\"type\":\"command\",\"command\":\"a\\u0000b\"}"), CHAT_EINVAL);
    assert_err_has("NUL");
    assert_int_equal(P("{\"type\":\"command\",\"command\":\"x\",\"bot_id\":5}"),
                     CHAT_EINVAL);
    assert_err_has("'bot_id' must be a string");
    /* "content" is not read for this type */
    assert_int_equal(P("{\"type\":\"command\",\"content\":\"x\"}"), CHAT_EINVAL);
    assert_string_equal(E, "missing field 'command'");
}

static void test_blank_title(void **state)
{
    static const char *const blank[] = {"\" \"",       "\"   \"",     "\"\\t\"",
                                        "\"\\n \\r\"", "\"\\u00a0\"", "\"\\u0085 \"",
                                        "\"\\u007f\""};
    char buf[256];
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(blank) / sizeof(blank[0]); i++) {
        snprintf(buf, sizeof(buf),
                 "{\"type\":\"rename\",\"conversation_id\":\"c\","
                 "\"title\":%s}",
                 blank[i]);
        assert_int_equal(P(buf), CHAT_EINVAL);
        assert_string_equal(E, "field 'title' must not be blank");
        assert_null(M.title);
        snprintf(buf, sizeof(buf), "{\"type\":\"launch\",\"bot_id\":\"b\",\"title\":%s}",
                 blank[i]);
        assert_int_equal(P(buf), CHAT_EINVAL);
    }
    assert_int_equal(
        P("{\"type\":\"rename\",\"conversation_id\":\"c\",\"title\":\" x \"}"), CHAT_OK);
    assert_int_equal(
        P("{\"type\":\"rename\",\"conversation_id\":\"c\",\"title\":\"\\u00e9\"}"),
        CHAT_OK);
    assert_true(chat_title_is_blank(""));
    assert_false(chat_title_is_blank("\xe2\x80\x83x"));
}

/* "settings": conversation_id required; model, system, temperature, reset
 * optional with their types; "" allowed for model and system. */
static void test_settings(void **state)
{
    (void)state;
    assert_int_equal(P("{\"type\":\"settings\",\"conversation_id\":\"c1\"}"), CHAT_OK);
    assert_int_equal(M.type, CHAT_C_SETTINGS);
    assert_string_equal(chat_ctype_name(CHAT_C_SETTINGS), "settings");
    assert_null(M.model);
    assert_null(M.system);
    assert_int_equal(M.has_temperature, 0);
    assert_int_equal(M.reset, 0);

    assert_int_equal(
        P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"model\":\"m:7b\","
          "\"system\":\"a\\nb\",\"temperature\":0.25,\"reset\":true}"),
        CHAT_OK);
    assert_string_equal(M.model, "m:7b");
    assert_int_equal(M.system_len, 3);
    assert_memory_equal(M.system, "a\nb", 3);
    assert_int_equal(M.has_temperature, 1);
    assert_true(M.temperature > 0.2499 && M.temperature < 0.2501);
    assert_int_equal(M.reset, 1);

    /* integers are numbers too; "" and null */
    assert_int_equal(
        P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"temperature\":1,"
          "\"model\":\"\",\"system\":\"\",\"reset\":null}"),
        CHAT_OK);
    assert_int_equal(M.has_temperature, 1);
    assert_true(M.temperature == 1.0);
    assert_string_equal(M.model, "");
    assert_int_equal(M.system_len, 0);
    assert_int_equal(M.reset, 0);

    /* wrong types, missing id, too long a model, a huge exponent */
    assert_int_equal(P("{\"type\":\"settings\"}"), CHAT_EINVAL);
    assert_string_equal(E, "missing field 'conversation_id'");
    assert_int_equal(
        P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"temperature\":\"1\"}"),
        CHAT_EINVAL);
    assert_string_equal(E, "field 'temperature' must be a number");
    assert_int_equal(
        P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"temperature\":1e400}"),
        CHAT_EINVAL);
    assert_int_equal(P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"model\":5}"),
                     CHAT_EINVAL);
    assert_string_equal(E, "field 'model' must be a string");
    assert_int_equal(P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"reset\":1}"),
                     CHAT_EINVAL);
    assert_string_equal(E, "field 'reset' must be a boolean");
    assert_int_equal(
        P("{\"type\":\"settings\",\"conversation_id\":\"c1\",\"system\":\"a\\u0000\"}"),
        CHAT_EINVAL);
    {
        char buf[400];
        memset(buf, 0, sizeof(buf));
        strcpy(buf, "{\"type\":\"settings\",\"conversation_id\":\"c1\",\"model\":\"");
        memset(buf + strlen(buf), 'm', CHAT_MODEL_NAME_MAX + 1);
        strcat(buf, "\"}");
        assert_int_equal(P(buf), CHAT_EINVAL);
    }
    /* other types do not read these fields */
    assert_int_equal(P("{\"type\":\"ping\",\"temperature\":\"x\",\"model\":1}"), CHAT_OK);
    assert_null(M.model);
    assert_int_equal(M.has_temperature, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blank_title, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
    };
    return cmocka_run_group_tests_name("proto_fields", tests, NULL, NULL);
}
