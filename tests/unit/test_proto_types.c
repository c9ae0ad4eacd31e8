/* Unit tests: chat_cmsg_parse by message type - every client message type
 * of docs/protocol.md with its documented fields, with only the required
 * ones, with each required one missing, and every field with every wrong
 * JSON type; the fields kept for the error frame, unknown types, and
 * chat_ctype_name. Run under ASan to prove the error paths free what they
 * allocate. */
#include "test_proto_util.h"

/* The fields of docs/protocol.md, as written there. */
typedef enum { K_STR, K_COUNT, K_BOOL, K_ARGS } kind_t;

static const struct {
    const char *name;
    kind_t kind;
    const char *valid; /* JSON text */
} fields[] = {
    {"content", K_STR, "\"hi\""},
    {"bot_id", K_STR, "\"coder\""},
    {"conversation_id", K_STR, "\"c1\""},
    {"title", K_STR, "\"T\""},
    {"format", K_STR, "\"json\""},
    {"command", K_STR, "\"ls\""},
    {"args", K_ARGS, "[\"-l\"]"},
    {"index", K_COUNT, "1"},
    {"limit", K_COUNT, "2"},
    {"offset", K_COUNT, "3"},
    {"archived", K_BOOL, "true"},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const struct {
    const char *type;
    chat_ctype_t ct;
    const char *fields; /* space separated, as in the protocol table */
    const char *required;
} types[] = {
    {"message", CHAT_C_MESSAGE, "content bot_id conversation_id", "content"},
    {"stop", CHAT_C_STOP, "conversation_id", ""},
    {"regenerate", CHAT_C_REGENERATE, "conversation_id", ""},
    {"edit", CHAT_C_EDIT, "conversation_id index content",
     "conversation_id index content"},
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
static void build(char *out, size_t cap, size_t ti, const char *skip,
                  const char *ovr_name, const char *ovr_val, int all_fields)
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

#define CHK_STR(fname, member, val)                                                      \
    if (in_list(fl, fname)) {                                                            \
        assert_non_null(M.member);                                                       \
        assert_string_equal(M.member, val);                                              \
    }                                                                                    \
    else {                                                                               \
        assert_null(M.member);                                                           \
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

static const char *const wrong_str[] = {"1",  "1.5",     "true",          "false", "[]",
                                        "{}", "[\"x\"]", "{\"a\":\"b\"}", "-3"};
static const char *const wrong_count[] = {"\"1\"",
                                          "1.5",
                                          "1.0",
                                          "1e3",
                                          "-1",
                                          "-9223372036854775807",
                                          "true",
                                          "false",
                                          "[]",
                                          "{}",
                                          "[1]",
                                          "9223372036854775808",
                                          "18446744073709551616",
                                          "99999999999999999999999",
                                          "1e400",
                                          "-0.0"};
static const char *const wrong_bool[] = {"\"true\"", "1",       "0",     "[]",
                                         "{}",       "\"yes\"", "[true]"};
static const char *const wrong_args[] = {"\"x\"",     "1",         "{}",     "[1]",
                                         "[null]",    "[[\"x\"]]", "[true]", "[{}]",
                                         "[\"a\",2]", "true"};

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

#define EACH(arr)                                                                        \
    for (k = 0; k < sizeof(arr) / sizeof(arr[0]); k++) {                                 \
        wrong_one(ti, fi, arr[k]);                                                       \
    }
    for (ti = 0; ti < NTYPES; ti++) {
        for (fi = 0; fi < NFIELDS; fi++) {
            if (!in_list(types[ti].fields, fields[fi].name)) {
                continue;
            }
            switch (fields[fi].kind) {
            case K_STR:
                EACH(wrong_str);
                break;
            case K_COUNT:
                EACH(wrong_count);
                break;
            case K_BOOL:
                EACH(wrong_bool);
                break;
            case K_ARGS:
                EACH(wrong_args);
                break;
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
    snprintf(
        buf, sizeof(buf), "{\"type\":\"%s\"}",
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
        "\xc3\xa9\xc3\xa9\xc3\xa9");
    assert_int_equal(P(buf), CHAT_ENOTFOUND);
    assert_string_equal(E,
                        "unknown message type '\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                        "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9'");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_every_type_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_type_minimal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_keeps_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ctype_names, setup, teardown),
    };
    return cmocka_run_group_tests_name("proto_types", tests, NULL, NULL);
}
