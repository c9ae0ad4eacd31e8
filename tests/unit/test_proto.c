/* Unit tests: chat_cmsg_parse (every client message type of docs/protocol.md,
 * every field with every wrong JSON type, missing fields, limits, malformed
 * JSON) and chat_ctype_name. Run under ASan to prove the error paths free
 * what they allocate. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/proto.h"

static chat_cmsg_t M;
static char E[256];

static int setup(void **state)
{
    (void)state;
    chat_cmsg_init(&M);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    chat_cmsg_free(&M);
    return 0;
}

static chat_status_t P(const char *json)
{
    return chat_cmsg_parse(&M, json, strlen(json), E, sizeof(E));
}

static chat_status_t PN(const char *json, size_t n)
{
    return chat_cmsg_parse(&M, json, n, E, sizeof(E));
}

static void assert_err_has(const char *needle)
{
    if (!strstr(E, needle)) {
        fail_msg("error '%s' does not mention '%s'", E, needle);
    }
}

/* The fields of docs/protocol.md, as written there. */
typedef enum { K_STR, K_COUNT, K_BOOL, K_ARGS } kind_t;

static const struct {
    const char *name;
    kind_t kind;
    const char *valid; /* JSON text */
} fields[] = {
    {"content", K_STR, "\"hi\""},     {"bot_id", K_STR, "\"coder\""},
    {"conversation_id", K_STR, "\"c1\""}, {"title", K_STR, "\"T\""},
    {"format", K_STR, "\"json\""},    {"command", K_STR, "\"ls\""},
    {"args", K_ARGS, "[\"-l\"]"},     {"index", K_COUNT, "1"},
    {"limit", K_COUNT, "2"},          {"offset", K_COUNT, "3"},
    {"archived", K_BOOL, "true"},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const struct {
    const char *type;
    chat_ctype_t ct;
    const char *fields;   /* space separated, as in the protocol table */
    const char *required;
} types[] = {
    {"message", CHAT_C_MESSAGE, "content bot_id conversation_id", "content"},
    {"stop", CHAT_C_STOP, "conversation_id", ""},
    {"regenerate", CHAT_C_REGENERATE, "conversation_id", ""},
    {"edit", CHAT_C_EDIT, "conversation_id index content", "conversation_id index content"},
    {"history", CHAT_C_HISTORY, "conversation_id bot_id limit offset", ""},
    {"resume", CHAT_C_RESUME, "conversation_id offset", "conversation_id"},
    {"launch", CHAT_C_LAUNCH, "bot_id title", "bot_id"},
    {"select", CHAT_C_SELECT, "conversation_id", "conversation_id"},
    {"stop_session", CHAT_C_STOP_SESSION, "conversation_id", "conversation_id"},
    {"sessions", CHAT_C_SESSIONS, "bot_id archived", ""},
    {"bots", CHAT_C_BOTS, "", ""},
    {"rename", CHAT_C_RENAME, "conversation_id title", "conversation_id title"},
    {"archive", CHAT_C_ARCHIVE, "conversation_id archived", "conversation_id"},
    {"delete", CHAT_C_DELETE, "conversation_id", "conversation_id"},
    {"export", CHAT_C_EXPORT, "conversation_id format", "conversation_id"},
    {"run", CHAT_C_RUN, "command args conversation_id", "command"},
    {"status", CHAT_C_STATUS, "", ""},
    {"ping", CHAT_C_PING, "", ""},
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    const char *p = list;

    while ((p = strstr(p, name)) != NULL) {
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) {
            return 1;
        }
        p += n;
    }
    return 0;
}

/* {"type":T, <every field of the type except skip, or with override>} */
static void build(char *out, size_t cap, size_t ti, const char *skip, const char *ovr_name,
                  const char *ovr_val, int all_fields)
{
    size_t i, n;

    n = (size_t)snprintf(out, cap, "{\"type\":\"%s\"", types[ti].type);
    for (i = 0; i < NFIELDS; i++) {
        const char *v = fields[i].valid;
        if (!all_fields && !in_list(types[ti].fields, fields[i].name)) {
            continue;
        }
        if (skip && strcmp(skip, fields[i].name) == 0) {
            continue;
        }
        if (ovr_name && strcmp(ovr_name, fields[i].name) == 0) {
            v = ovr_val;
        }
        n += (size_t)snprintf(out + n, cap - n, ",\"%s\":%s", fields[i].name, v);
    }
    snprintf(out + n, cap - n, "}");
}

static void check_field_values(size_t ti)
{
    const char *fl = types[ti].fields;

#define CHK_STR(fname, member, val)                                                    \
    if (in_list(fl, fname)) {                                                          \
        assert_non_null(M.member);                                                     \
        assert_string_equal(M.member, val);                                            \
    }                                                                                  \
    else {                                                                             \
        assert_null(M.member);                                                         \
    }
    CHK_STR("content", content, "hi");
    CHK_STR("bot_id", bot_id, "coder");
    CHK_STR("conversation_id", conversation_id, "c1");
    CHK_STR("title", title, "T");
    CHK_STR("format", format, "json");
    CHK_STR("command", command, "ls");
#undef CHK_STR
    assert_int_equal(M.content_len, in_list(fl, "content") ? 2 : 0);
    assert_int_equal(M.index, in_list(fl, "index") ? 1 : -1);
    assert_int_equal(M.limit, in_list(fl, "limit") ? 2 : -1);
    assert_int_equal(M.offset, in_list(fl, "offset") ? 3 : -1);
    assert_int_equal(M.archived, in_list(fl, "archived") ? 1 : -1);
    if (in_list(fl, "args")) {
        assert_int_equal(M.nargs, 1);
        assert_string_equal(M.args[0], "-l");
    }
    else {
        assert_int_equal(M.nargs, 0);
    }
}

/* Every type with its documented fields; the id is accepted on all. */
static void test_every_type_valid(void **state)
{
    char buf[1024];
    size_t ti;
    (void)state;

    for (ti = 0; ti < NTYPES; ti++) {
        build(buf, sizeof(buf), ti, NULL, NULL, NULL, 0);
        assert_int_equal(P(buf), CHAT_OK);
        assert_int_equal(M.type, types[ti].ct);
        assert_string_equal(M.type_name, types[ti].type);
        assert_string_equal(E, "");
        assert_null(M.id);
        check_field_values(ti);

        /* the same with every field present: the others are ignored */
        build(buf, sizeof(buf), ti, NULL, NULL, NULL, 1);
        strcpy(buf + strlen(buf) - 1, ",\"id\":\"c7\",\"zzz\":{\"a\":[1,2,null]}}");
        assert_int_equal(P(buf), CHAT_OK);
        assert_int_equal(M.type, types[ti].ct);
        assert_string_equal(M.id, "c7");
        check_field_values(ti);
    }
    /* fields a type does not take are not even type-checked */
    assert_int_equal(P("{\"type\":\"ping\",\"content\":5,\"index\":\"x\","
                       "\"args\":{},\"bot_id\":[]}"),
                     CHAT_OK);
    assert_null(M.content);
    assert_int_equal(M.index, -1);
    assert_null(M.bot_id);
}

/* Only the required fields: everything optional is absent. */
static void test_every_type_minimal(void **state)
{
    char buf[1024];
    size_t ti, i;
    (void)state;

    for (ti = 0; ti < NTYPES; ti++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"%s\"", types[ti].type);
        for (i = 0; i < NFIELDS; i++) {
            if (in_list(types[ti].required, fields[i].name)) {
                n += (size_t)snprintf(buf + n, sizeof(buf) - n, ",\"%s\":%s",
                                      fields[i].name, fields[i].valid);
            }
        }
        snprintf(buf + n, sizeof(buf) - n, "}");
        assert_int_equal(P(buf), CHAT_OK);
        assert_int_equal(M.type, types[ti].ct);
        if (!in_list(types[ti].required, "bot_id")) {
            assert_null(M.bot_id);
        }
        if (!in_list(types[ti].required, "conversation_id")) {
            assert_null(M.conversation_id);
        }
        if (!in_list(types[ti].required, "title")) {
            assert_null(M.title);
        }
        assert_null(M.format);
        assert_int_equal(M.nargs, 0);
        assert_int_equal(M.limit, -1);
        assert_int_equal(M.offset, -1);
        assert_int_equal(M.archived, -1);
    }
}

static void test_missing_required(void **state)
{
    char buf[1024], want[64];
    size_t ti, i;
    (void)state;

    for (ti = 0; ti < NTYPES; ti++) {
        for (i = 0; i < NFIELDS; i++) {
            if (!in_list(types[ti].required, fields[i].name)) {
                continue;
            }
            snprintf(want, sizeof(want), "missing field '%s'", fields[i].name);
            build(buf, sizeof(buf), ti, fields[i].name, NULL, NULL, 0);
            assert_int_equal(P(buf), CHAT_EINVAL);
            assert_string_equal(E, want);
            assert_int_equal(M.type, types[ti].ct);
            /* null is the same as absent */
            build(buf, sizeof(buf), ti, NULL, fields[i].name, "null", 0);
            assert_int_equal(P(buf), CHAT_EINVAL);
            assert_string_equal(E, want);
        }
    }
    /* an optional null is just absent */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"x\",\"conversation_id\":null,"
                       "\"bot_id\":null,\"id\":null}"),
                     CHAT_OK);
    assert_null(M.conversation_id);
    assert_null(M.bot_id);
    assert_null(M.id);
}

static const char *const wrong_str[] = {"1", "1.5", "true", "false", "[]", "{}", "[\"x\"]",
                                        "{\"a\":\"b\"}", "-3"};
static const char *const wrong_count[] = {
    "\"1\"", "1.5", "1.0", "1e3", "-1", "-9223372036854775807", "true", "false", "[]",
    "{}", "[1]", "9223372036854775808", "18446744073709551616", "99999999999999999999999",
    "1e400", "-0.0"};
static const char *const wrong_bool[] = {"\"true\"", "1", "0", "[]", "{}", "\"yes\"",
                                         "[true]"};
static const char *const wrong_args[] = {"\"x\"", "1", "{}", "[1]", "[null]", "[[\"x\"]]",
                                         "[true]", "[{}]", "[\"a\",2]", "true"};

static void wrong_one(size_t ti, size_t fi, const char *val)
{
    char buf[1024], want[64];
    chat_status_t st;

    build(buf, sizeof(buf), ti, NULL, fields[fi].name, val, 0);
    st = P(buf);
    if (st != CHAT_EINVAL) {
        fail_msg("%s: expected CHAT_EINVAL, got %d (%s)", buf, st, E);
    }
    snprintf(want, sizeof(want), "'%s'", fields[fi].name);
    assert_err_has(want);
    assert_int_equal(M.type, types[ti].ct);
}

/* Every documented field of every type, with every wrong JSON type. */
static void test_wrong_types(void **state)
{
    size_t ti, fi, k;
    (void)state;

#define EACH(arr)                                                                      \
    for (k = 0; k < sizeof(arr) / sizeof(arr[0]); k++) {                               \
        wrong_one(ti, fi, arr[k]);                                                     \
    }
    for (ti = 0; ti < NTYPES; ti++) {
        for (fi = 0; fi < NFIELDS; fi++) {
            if (!in_list(types[ti].fields, fields[fi].name)) {
                continue;
            }
            switch (fields[fi].kind) {
            case K_STR: EACH(wrong_str); break;
            case K_COUNT: EACH(wrong_count); break;
            case K_BOOL: EACH(wrong_bool); break;
            case K_ARGS: EACH(wrong_args); break;
            }
        }
    }
#undef EACH
    assert_int_equal(P("{\"type\":\"message\",\"content\":5}"), CHAT_EINVAL);
    assert_string_equal(E, "field 'content' must be a string");
    assert_int_equal(P("{\"type\":\"edit\",\"conversation_id\":\"c\",\"content\":\"x\","
                       "\"index\":1.5}"),
                     CHAT_EINVAL);
    assert_string_equal(E, "field 'index' must be a non-negative integer");
    assert_int_equal(P("{\"type\":\"archive\",\"conversation_id\":\"c\",\"archived\":1}"),
                     CHAT_EINVAL);
    assert_string_equal(E, "field 'archived' must be a boolean");
}

/* The earlier valid fields stay set, so the error can echo them. */
static void test_error_keeps_ids(void **state)
{
    (void)state;
    assert_int_equal(P("{\"type\":\"message\",\"id\":\"m9\",\"conversation_id\":\"c\","
                       "\"content\":[]}"),
                     CHAT_EINVAL);
    assert_string_equal(M.id, "m9");
    assert_string_equal(M.conversation_id, "c");
    assert_null(M.content);
    assert_int_equal(P("{\"type\":\"nope\",\"id\":17}"), CHAT_ENOTFOUND);
    assert_string_equal(M.id, "17");
    assert_string_equal(M.type_name, "nope");
    assert_int_equal(M.type, CHAT_C_UNKNOWN);
    assert_string_equal(E, "unknown message type 'nope'");
}

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
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",%s\"%s\":\"%s\"}", type, pre, field, val);
    assert_int_equal(P(buf), CHAT_OK);
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\",%s\"%s\":\"%s%s\"}", type, pre, field, val,
             unit);
    assert_int_equal(P(buf), CHAT_EINVAL);
    snprintf(want, sizeof(want), "field '%s' is too long (at most %zu bytes)", field, max);
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
    assert_int_equal(P("{\"type\":\"export\",\"conversation_id\":\"c\",\"format\":\"json\"}"),
                     CHAT_OK);
    assert_string_equal(M.format, "json");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"type\":\"export\",\"conversation_id\":\"c\","
                 "\"format\":%s}", bad[i]);
        assert_int_equal(P(buf), CHAT_EINVAL);
        assert_err_has("'format'");
        assert_null(M.format);
    }
}

static void test_numbers(void **state)
{
    (void)state;
    assert_int_equal(P("{\"type\":\"history\",\"limit\":0,\"offset\":9223372036854775807}"),
                     CHAT_OK);
    assert_int_equal(M.limit, 0);
    assert_true(M.offset == INT64_MAX);
    assert_int_equal(P("{\"type\":\"history\",\"limit\":-0}"), CHAT_OK);
    assert_int_equal(M.limit, 0);
    assert_int_equal(P("{\"type\":\"resume\",\"conversation_id\":\"c\",\"offset\":12345}"),
                     CHAT_OK);
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
    assert_int_equal(P("{\"type\":\"archive\",\"conversation_id\":\"c\",\"archived\":false}"),
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

    n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"run\",\"command\":\"x\",\"args\":[");
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
    assert_string_equal(M.content, "a\xef\xbf\xbd" "b");
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

static void test_bad_json(void **state)
{
    static const char *const bad[] = {
        "", " ", "[]", "[{\"type\":\"ping\"}]", "\"ping\"", "123", "true", "null",
        "{", "{\"type\":\"ping\"", "{\"type\":\"ping\",}", "{\"type\":'ping'}",
        "{type:\"ping\"}", "{\"type\":\"ping\"} x", "{\"type\":\"ping\"}{}",
        "{\"type\":\"ping\"}]", "/*c*/{\"type\":\"ping\"}", "{\"type\":\"ping\"}//",
        "{}", "{\"type\":1}", "{\"type\":null}", "{\"type\":[\"ping\"]}",
        "{\"type\":{}}", "{\"Type\":\"ping\"}", "{\"type\":\"p\\x\"}",
        "\xef\xbb\xbf{\"type\":\"ping\"}"};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        chat_status_t st = P(bad[i]);
        if (st != CHAT_EPARSE) {
            fail_msg("'%s': expected CHAT_EPARSE, got %d", bad[i], st);
        }
        assert_true(E[0] != '\0');
        assert_int_equal(M.type, CHAT_C_UNKNOWN);
    }
    assert_int_equal(P("[]"), CHAT_EPARSE);
    assert_string_equal(E, "the message must be a JSON object");
    assert_int_equal(P("{\"type\":5}"), CHAT_EPARSE);
    assert_string_equal(E, "the message has no string field 'type'");
    assert_int_equal(P("{\"type\":\"ping\"} x"), CHAT_EPARSE);
    assert_err_has("invalid JSON");

    /* surrounding whitespace is fine */
    assert_int_equal(P(" \t\r\n{\"type\":\"ping\"} \n"), CHAT_OK);
    assert_int_equal(M.type, CHAT_C_PING);
    /* NUL bytes after or inside the object are not */
    assert_int_equal(PN("{\"type\":\"ping\"}\0", 16), CHAT_EPARSE);
    assert_int_equal(PN("{\"type\":\"ping\"}\0 ", 17), CHAT_EPARSE);
    assert_int_equal(PN("{\"type\":\"pi\0ng\"}", 16), CHAT_EPARSE);
    assert_int_equal(chat_cmsg_parse(&M, NULL, 0, E, sizeof(E)), CHAT_EPARSE);
    assert_int_equal(chat_cmsg_parse(&M, NULL, 5, E, sizeof(E)), CHAT_EPARSE);
}

/* What json-c accepts in strict mode and RFC 8259 does not (issue 14). */
static void test_strict_json(void **state)
{
    static const char *const bad[] = {
        "{\"type\":\"message\",\"content\":\"a\tb\"}",         /* raw TAB */
        "{\"type\":\"message\",\"content\":\"a\nb\"}",         /* raw LF */
        "{\"type\":\"message\",\"content\":\"a\x01b\"}",       /* raw 0x01 */
        "{\"type\":\"message\",\"con\ttent\":\"x\"}",          /* in a key */
        "{\"type\":\"message\",\"content\":\"\xc0\xaf\"}",     /* overlong */
        "{\"type\":\"message\",\"content\":\"\xed\xa0\x80\"}", /* surrogate */
        "{\"type\":\"message\",\"content\":\"\xf4\x90\x80\x80\"}",
        "{\"type\":\"message\",\"\xc0\xaf\":1,\"content\":\"x\"}",
        "{'type':'ping'}",
        "{\"type\":\"ping\",\"x\":-Infinity}",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        chat_status_t st = P(bad[i]);
        if (st != CHAT_EPARSE) {
            fail_msg("'%s': expected CHAT_EPARSE (bad_json), got %d", bad[i], st);
        }
        assert_err_has("invalid JSON");
    }
    /* the same characters escaped are fine */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"a\\tb\\nc\\u0001\"}"),
                     CHAT_OK);
    assert_string_equal(M.content, "a\tb\nc\x01");
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

static void test_public_error_text(void **state)
{
    static const char *const quiet[] = {
        CHAT_ERR_BACKEND_UNREACHABLE, CHAT_ERR_BACKEND_TIMEOUT, CHAT_ERR_MODEL_NOT_FOUND,
        CHAT_ERR_BACKEND_BUSY,        CHAT_ERR_BACKEND_ERROR,   CHAT_ERR_BACKEND_PROTOCOL,
        CHAT_ERR_BACKEND_BAD_REQUEST, CHAT_ERR_INTERRUPTED,     CHAT_ERR_INTERNAL};
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(quiet) / sizeof(quiet[0]); i++) {
        const char *t = chat_error_public_text(quiet[i]);
        assert_non_null(t);
        /* a sentence for people: no URL, path, status line or code */
        assert_null(strstr(t, "://"));
        assert_null(strchr(t, '/'));
        assert_null(strstr(t, "HTTP"));
        assert_null(strchr(t, '_'));
        assert_true(t[strlen(t) - 1] == '.');
    }
    assert_null(chat_error_public_text(CHAT_ERR_RATE_LIMITED));
    assert_null(chat_error_public_text(CHAT_ERR_NOT_FOUND));
    assert_null(chat_error_public_text(NULL));
}

static void test_nesting(void **state)
{
    char buf[256];
    int depth;
    (void)state;

    /* the object itself plus up to 15 nested levels in an ignored field */
    for (depth = 1; depth <= 20; depth++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"x\":");
        int i;
        for (i = 1; i < depth; i++) {
            buf[n++] = '[';
        }
        buf[n++] = '1';
        for (i = 1; i < depth; i++) {
            buf[n++] = ']';
        }
        buf[n++] = '}';
        buf[n] = '\0';
        if (P(buf) != (depth <= 16 ? CHAT_OK : CHAT_EPARSE)) {
            fail_msg("depth %d: %s", depth, E);
        }
    }
    assert_err_has("nested too deep");

    /* containers are counted, whatever is innermost (json-c alone counted
     * values, and let 17 containers through when the innermost was empty) */
    for (depth = 15; depth <= 18; depth++) {
        size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"type\":\"ping\",\"x\":");
        int i;
        for (i = 1; i < depth - 1; i++) {
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, i % 2 ? "[" : "{\"k\":");
        }
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, i % 2 ? "[]" : "{}");
        for (i = depth - 2; i >= 1; i--) {
            buf[n++] = i % 2 ? ']' : '}';
        }
        buf[n++] = '}';
        buf[n] = '\0';
        if (P(buf) != (depth <= 16 ? CHAT_OK : CHAT_EPARSE)) {
            fail_msg("depth %d: %s (%s)", depth, E, buf);
        }
    }
}

static void test_unknown_type(void **state)
{
    char buf[256];
    (void)state;

    assert_int_equal(P("{\"type\":\"launch_missiles\"}"), CHAT_ENOTFOUND);
    assert_string_equal(M.type_name, "launch_missiles");
    assert_int_equal(P("{\"type\":\"\"}"), CHAT_ENOTFOUND);
    assert_string_equal(M.type_name, "");
    assert_int_equal(P("{\"type\":\"PING\"}"), CHAT_ENOTFOUND);
    assert_int_equal(P("{\"type\":\"ping \"}"), CHAT_ENOTFOUND);
    assert_int_equal(P("{\"type\":\"unknown\"}"), CHAT_ENOTFOUND);
    /* a NUL inside the name does not make it "ping" */
    assert_int_equal(P("{\"type\":\"ping\\u0000x\"}"), CHAT_ENOTFOUND);
    assert_int_equal(M.type, CHAT_C_UNKNOWN);
    /* an unknown type's bad id is still reported as a bad id */
    assert_int_equal(P("{\"type\":\"zz\",\"id\":[]}"), CHAT_EINVAL);
    /* long names are clipped in the message, at a code point boundary */
    snprintf(buf, sizeof(buf), "{\"type\":\"%s\"}",
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(P(buf), CHAT_ENOTFOUND);
    assert_string_equal(E, "unknown message type '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                           "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9'");
}

/* Every proper prefix of a valid frame is rejected, the whole one parses. */
static void test_truncated_prefixes(void **state)
{
    static const char *const msgs[] = {
        "{\"type\":\"message\",\"content\":\"h\\u00e9llo \\ud83d\\ude00\",\"bot_id\":"
        "\"coder\",\"conversation_id\":\"0000000b5f3a9c0e1d2b4a77\",\"id\":\"c1\"}",
        "{\"type\":\"run\",\"command\":\"ls\",\"args\":[\"-l\",\"/tmp\"],\"id\":12345}",
        "{\"type\":\"history\",\"limit\":50,\"offset\":0,\"extra\":{\"a\":[true,null,"
        "1.5e3]}}"};
    size_t k, cut;
    (void)state;

    for (k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++) {
        size_t n = strlen(msgs[k]);
        for (cut = 0; cut < n; cut++) {
            assert_int_equal(PN(msgs[k], cut), CHAT_EPARSE);
        }
        assert_int_equal(PN(msgs[k], n), CHAT_OK);
    }
}

/* Reusing one message object: results never leak from one parse into the
 * next, and no buffer or error size is too small. */
static void test_reuse_and_err(void **state)
{
    char small[8];
    (void)state;

    assert_int_equal(P("{\"type\":\"run\",\"command\":\"ls\",\"args\":[\"a\"],\"id\":3}"),
                     CHAT_OK);
    assert_int_equal(M.nargs, 1);
    assert_int_equal(P("{\"type\":\"ping\"}"), CHAT_OK);
    assert_int_equal(M.nargs, 0);
    assert_null(M.command);
    assert_null(M.id);
    assert_int_equal(P("{\"type\":\"launch\",\"bot_id\":\"b\",\"title\":\"t\"}"), CHAT_OK);
    assert_int_equal(P("not json"), CHAT_EPARSE);
    assert_null(M.bot_id);
    assert_null(M.title);
    assert_null(M.type_name);

    assert_int_equal(chat_cmsg_parse(&M, "{\"type\":\"zzz\"}", 14, NULL, 0), CHAT_ENOTFOUND);
    assert_int_equal(chat_cmsg_parse(&M, "{\"type\":\"zzz\"}", 14, small, 0), CHAT_ENOTFOUND);
    assert_int_equal(chat_cmsg_parse(&M, "{\"type\":\"zzz\"}", 14, small, sizeof(small)),
                     CHAT_ENOTFOUND);
    assert_string_equal(small, "unknown");

    /* a frame cut after a high surrogate escape must not leak into the next
     * parse (json-c's tokener reset keeps it) */
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\\ud83d"), CHAT_EPARSE);
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\\u00e9x\"}"), CHAT_OK);
    assert_string_equal(M.content, "\xc3\xa9x");
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\\ud83d\\"), CHAT_EPARSE);
    assert_int_equal(P("{\"type\":\"message\",\"content\":\"\\u00e9x\"}"), CHAT_OK);
    assert_string_equal(M.content, "\xc3\xa9x");

    /* free and re-init, then use again */
    chat_cmsg_free(&M);
    assert_null(M.priv_);
    chat_cmsg_free(&M); /* twice is harmless */
    assert_int_equal(P("{\"type\":\"bots\"}"), CHAT_OK);
    assert_int_equal(M.type, CHAT_C_BOTS);
}

static void test_ctype_names(void **state)
{
    size_t ti;
    (void)state;

    for (ti = 0; ti < NTYPES; ti++) {
        assert_string_equal(chat_ctype_name(types[ti].ct), types[ti].type);
    }
    assert_string_equal(chat_ctype_name(CHAT_C_UNKNOWN), "unknown");
    assert_string_equal(chat_ctype_name((chat_ctype_t)999), "unknown");
    assert_string_equal(chat_ctype_name((chat_ctype_t)-1), "unknown");
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
        cmocka_unit_test_setup_teardown(test_every_type_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_keeps_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_length_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_args, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blank_title, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_error_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_and_err, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctype_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
