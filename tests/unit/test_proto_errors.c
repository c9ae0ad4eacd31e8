/* Unit tests: chat_cmsg_parse on malformed frames - not JSON, not strict
 * RFC 8259 JSON, nested too deep, cut at every byte - and after them: a
 * reused message object, error buffers of any size; and the public error
 * texts (chat_error_public_text). */
#include "test_proto_util.h"

static chat_status_t PN(const char *json, size_t n)
{
    return chat_cmsg_parse(&M, json, n, E, sizeof(E));
}

static void test_bad_json(void **state)
{
    static const char *const bad[] = {"",
                                      " ",
                                      "[]",
                                      "[{\"type\":\"ping\"}]",
                                      "\"ping\"",
                                      "123",
                                      "true",
                                      "null",
                                      "{",
                                      "{\"type\":\"ping\"",
                                      "{\"type\":\"ping\",}",
                                      "{\"type\":'ping'}",
                                      "{type:\"ping\"}",
                                      "{\"type\":\"ping\"} x",
                                      "{\"type\":\"ping\"}{}",
                                      "{\"type\":\"ping\"}]",
                                      "/*c*/{\"type\":\"ping\"}",
                                      "{\"type\":\"ping\"}//",
                                      "{}",
                                      "{\"type\":1}",
                                      "{\"type\":null}",
                                      "{\"type\":[\"ping\"]}",
                                      "{\"type\":{}}",
                                      "{\"Type\":\"ping\"}",
                                      "{\"type\":\"p\\x\"}",
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
    assert_int_equal(P("{\"type\":\"launch\",\"bot_id\":\"b\",\"title\":\"t\"}"),
                     CHAT_OK);
    assert_int_equal(P("not json"), CHAT_EPARSE);
    assert_null(M.bot_id);
    assert_null(M.title);
    assert_null(M.type_name);

    assert_int_equal(chat_cmsg_parse(&M, "{\"type\":\"zzz\"}", 14, NULL, 0),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_cmsg_parse(&M, "{\"type\":\"zzz\"}", 14, small, 0),
                     CHAT_ENOTFOUND);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nesting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_public_error_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_prefixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_and_err, setup, teardown),
    };
    return cmocka_run_group_tests_name("proto_errors", tests, NULL, NULL);
}
