/* Unit tests: Cookie headers read by name (RFC 6265), never by substring,
 * and the signed session token's syntax (chat/cookie.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/cookie.h"

#define SID "0123456789abcdef0123456789abcdef"

/* The value of the first cookie called name, as a string ("" if empty),
 * or NULL if there is none. */
static const char *get(const char *hdr, const char *name, char *out, size_t cap)
{
    size_t pos = 0;
    chat_cookie_t c;

    if (!chat_cookie_find(hdr, strlen(hdr), name, &pos, &c)) {
        return NULL;
    }
    snprintf(out, cap, "%.*s", (int)c.value_len, c.value);
    return out;
}

static void test_cookie_by_name(void **state)
{
    char v[128];
    (void)state;

    assert_string_equal(get("chatbot_sid=abc", "chatbot_sid", v, sizeof(v)), "abc");
    assert_string_equal(get("a=1; chatbot_sid=abc; b=2", "chatbot_sid", v, sizeof(v)),
                        "abc");
    assert_string_equal(get("a=1;chatbot_sid=abc", "chatbot_sid", v, sizeof(v)), "abc");
    assert_string_equal(get("  chatbot_sid = abc  ; b=2", "chatbot_sid", v, sizeof(v)),
                        "abc");
    assert_string_equal(get("a=1;\tchatbot_sid=\tabc\t", "chatbot_sid", v, sizeof(v)),
                        "abc");
    assert_string_equal(get("chatbot_sid=\"abc\"", "chatbot_sid", v, sizeof(v)), "abc");
    assert_string_equal(get("chatbot_sid=", "chatbot_sid", v, sizeof(v)), "");
    assert_string_equal(get("chatbot_sid=a=b", "chatbot_sid", v, sizeof(v)), "a=b");
    /* the finding: a value that contains "chatbot_sid=" is another
     * cookie's value, and does not win over the real one after it */
    assert_string_equal(
        get("x=chatbot_sid=" SID "; chatbot_sid=real", "chatbot_sid", v, sizeof(v)),
        "real");
    assert_string_equal(
        get("x=\"y chatbot_sid=" SID "\"; chatbot_sid=real", "chatbot_sid", v, sizeof(v)),
        "real");
    assert_null(get("x=chatbot_sid=" SID, "chatbot_sid", v, sizeof(v)));
    assert_null(get("x_chatbot_sid=" SID, "chatbot_sid", v, sizeof(v)));
    assert_null(get("chatbot_sidx=" SID, "chatbot_sid", v, sizeof(v)));
    assert_null(get("__Host-chatbot_sid=" SID, "chatbot_sid", v, sizeof(v)));
    assert_null(get("Chatbot_Sid=" SID, "chatbot_sid", v, sizeof(v))); /* exact case */
    assert_null(get("chatbot_sid", "chatbot_sid", v, sizeof(v)));      /* no '=' */
    assert_null(get("=chatbot_sid", "chatbot_sid", v, sizeof(v)));
    assert_null(get("", "chatbot_sid", v, sizeof(v)));
    assert_null(get(";;;", "chatbot_sid", v, sizeof(v)));
    assert_string_equal(
        get("__Host-chatbot_sid=h; chatbot_sid=p", "__Host-chatbot_sid", v, sizeof(v)),
        "h");
    /* a lone quote is kept (it is not a quoted value) */
    assert_string_equal(get("chatbot_sid=\"", "chatbot_sid", v, sizeof(v)), "\"");
}

static void test_cookie_iterate(void **state)
{
    const char *h = "a=1; b; =x; c=3 ;chatbot_sid=one; d=\"q\"; chatbot_sid=two";
    const char *names[] = {"a", "c", "chatbot_sid", "d", "chatbot_sid"};
    const char *values[] = {"1", "3", "one", "q", "two"};
    size_t pos = 0, i = 0;
    chat_cookie_t c;
    (void)state;

    while (chat_cookie_next(h, strlen(h), &pos, &c)) {
        assert_true(i < 5);
        assert_int_equal(c.name_len, strlen(names[i]));
        assert_memory_equal(c.name, names[i], c.name_len);
        assert_int_equal(c.value_len, strlen(values[i]));
        assert_memory_equal(c.value, values[i], c.value_len);
        i++;
    }
    assert_int_equal(i, 5);
    assert_int_equal(pos, strlen(h));
    /* every cookie of one name, in order */
    pos = 0;
    assert_true(chat_cookie_find(h, strlen(h), "chatbot_sid", &pos, &c));
    assert_memory_equal(c.value, "one", 3);
    assert_true(chat_cookie_find(h, strlen(h), "chatbot_sid", &pos, &c));
    assert_memory_equal(c.value, "two", 3);
    assert_false(chat_cookie_find(h, strlen(h), "chatbot_sid", &pos, &c));
    /* bounded by len, not by a NUL */
    pos = 0;
    assert_true(chat_cookie_find("chatbot_sid=abcdef", 15, "chatbot_sid", &pos, &c));
    assert_int_equal(c.value_len, 3);
    /* misuse */
    pos = 0;
    assert_false(chat_cookie_next(NULL, 3, &pos, &c));
    assert_false(chat_cookie_find("a=1", 3, "", &pos, &c));
    assert_false(chat_cookie_find("a=1", 3, NULL, &pos, &c));
}

static void test_token_roundtrip(void **state)
{
    uint8_t mac[CHAT_SID_MAC_BYTES], back[CHAT_SID_MAC_BYTES];
    char tok[CHAT_SID_TOKEN_LEN + 1], sid[CHAT_SID_HEX + 1];
    int i, k;
    (void)state;

    for (k = 0; k < 256; k++) {
        for (i = 0; i < CHAT_SID_MAC_BYTES; i++) {
            mac[i] = (uint8_t)(k * 31 + i * 7);
        }
        assert_int_equal(chat_sid_token_format(SID, mac, tok, sizeof(tok)), CHAT_OK);
        assert_int_equal(strlen(tok), CHAT_SID_TOKEN_LEN);
        assert_memory_equal(tok, SID ".", CHAT_SID_HEX + 1);
        assert_null(strpbrk(tok + CHAT_SID_HEX + 1, "+/=.;, \""));
        assert_int_equal(chat_sid_token_parse(tok, strlen(tok), sid, back), CHAT_OK);
        assert_string_equal(sid, SID);
        assert_memory_equal(mac, back, sizeof(mac));
    }
    /* a known vector: 32 zero bytes */
    memset(mac, 0, sizeof(mac));
    chat_sid_token_format(SID, mac, tok, sizeof(tok));
    assert_string_equal(tok, SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    memset(mac, 0xff, sizeof(mac));
    chat_sid_token_format(SID, mac, tok, sizeof(tok));
    assert_string_equal(tok, SID ".__________________________________________8");
}

static void bad_token(const char *v)
{
    uint8_t mac[CHAT_SID_MAC_BYTES];
    char sid[CHAT_SID_HEX + 1];

    if (chat_sid_token_parse(v, strlen(v), sid, mac) != CHAT_EPARSE) {
        fail_msg("token '%s' accepted", v);
    }
}

static void test_token_refused(void **state)
{
    char tok[CHAT_SID_TOKEN_LEN + 2];
    uint8_t mac[CHAT_SID_MAC_BYTES] = {0};
    (void)state;

    /* the finding: a bare id of the right form is not a token */
    bad_token("00000000000000000000000000000000");
    bad_token(SID);
    bad_token("");
    bad_token(SID ".");
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");   /* 42 */
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); /* 44 */
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");  /* padding */
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+A");  /* not url-safe */
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/A");
    bad_token(SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"); /* low bits set */
    bad_token(SID ".__________________________________________9");
    bad_token(SID "-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); /* separator */
    bad_token(
        "0123456789ABCDEF0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    bad_token(
        "0123456789abcdef0123456789abcdeg.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    bad_token(
        "0123456789abcdef0123456789abcde.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    /* a NUL inside */
    chat_sid_token_format(SID, mac, tok, sizeof(tok));
    tok[40] = '\0';
    {
        uint8_t m[CHAT_SID_MAC_BYTES];
        char sid[CHAT_SID_HEX + 1];
        assert_int_equal(chat_sid_token_parse(tok, CHAT_SID_TOKEN_LEN, sid, m),
                         CHAT_EPARSE);
        assert_int_equal(chat_sid_token_parse(NULL, 0, sid, m), CHAT_EPARSE);
    }
    /* format refuses what is not an id, and a short buffer */
    assert_int_equal(chat_sid_token_format("xyz", mac, tok, sizeof(tok)), CHAT_EINVAL);
    assert_int_equal(chat_sid_token_format(SID "0", mac, tok, sizeof(tok)), CHAT_EINVAL);
    assert_int_equal(chat_sid_token_format(SID, mac, tok, CHAT_SID_TOKEN_LEN),
                     CHAT_EINVAL);
}

static void test_mac_input(void **state)
{
    char in[CHAT_SID_MAC_INPUT_LEN];
    (void)state;

    assert_int_equal(chat_sid_mac_input(SID, in, sizeof(in)), CHAT_SID_MAC_INPUT_LEN);
    assert_memory_equal(in, "chatbot-sid/1:" SID, CHAT_SID_MAC_INPUT_LEN);
    assert_int_equal(
        chat_sid_mac_input("ABCDEF0123456789ABCDEF0123456789", in, sizeof(in)), 0);
    assert_int_equal(chat_sid_mac_input(SID "ff", in, sizeof(in)), 0);
    assert_int_equal(chat_sid_mac_input(SID, in, sizeof(in) - 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie_by_name),  cmocka_unit_test(test_cookie_iterate),
        cmocka_unit_test(test_token_roundtrip), cmocka_unit_test(test_token_refused),
        cmocka_unit_test(test_mac_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
