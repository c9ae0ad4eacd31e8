/* Unit tests: chat_ws message assembly: fragmentation (Autobahn 5.x) and
 * UTF-8 validation of text messages (6.x), failing fast. */
#include "test_ws_util.h"

/* ---- Autobahn 5.x: fragmentation --------------------------------------------- */

static void test_fragmentation(void **state)
{
    tc_t t;
    int i;
    (void)state;

    tc_init(&t, "5.1 fragmented ping");
    cf(&t.in, 0, 0, 9, "frag", 4);
    cf(&t.in, 1, 0, 0, "ment", 4);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.2 fragmented pong");
    cf(&t.in, 0, 0, 10, "frag", 4);
    cf(&t.in, 1, 0, 0, "ment", 4);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "fragmented close");
    cf(&t.in, 0, 0, 8, "\x03", 1);
    cf(&t.in, 1, 0, 0, "\xe8", 1);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.3 text in two fragments");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_run(&t);

    tc_init(&t, "5.6 ping between fragments");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 9, "pongme!", 7);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    sf(&t.want_out, 10, "pongme!", 7);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_run(&t);

    tc_init(&t, "pong between fragments");
    cf(&t.in, 0, 0, 2, "\x01", 1);
    cf(&t.in, 1, 0, 10, "p", 1);
    cf(&t.in, 1, 0, 0, "\x02", 1);
    ev_pong(&t.want_ev, "p", 1);
    ev_msg(&t.want_ev, 2, "\x01\x02", 2);
    tc_run(&t);

    tc_init(&t, "5.9 continuation without a message (FIN)");
    cf(&t.in, 1, 0, 0, "non-continuation payload", 24);
    cf(&t.in, 1, 0, 1, "Hello, world!", 13);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.10 continuation without a message (not FIN)");
    cf(&t.in, 0, 0, 0, "non-continuation payload", 24);
    cf(&t.in, 1, 0, 1, "Hello, world!", 13);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.15 continuation after a finished message");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 0, "fragment2", 9);
    cf(&t.in, 0, 0, 0, "fragment3", 9);
    cf(&t.in, 1, 0, 1, "fragment4", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2", 18);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.18 new text inside a fragmented message");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 1, "fragment2", 9);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "binary inside a fragmented text");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 1, 0, 2, "fragment2", 9);
    tc_fail(&t, 1002);
    tc_run(&t);

    tc_init(&t, "5.19 fragments with pings in between");
    cf(&t.in, 0, 0, 1, "fragment1", 9);
    cf(&t.in, 0, 0, 0, "fragment2", 9);
    cf(&t.in, 1, 0, 9, "pongme 1!", 9);
    cf(&t.in, 0, 0, 0, "fragment3", 9);
    cf(&t.in, 0, 0, 0, "fragment4", 9);
    cf(&t.in, 1, 0, 9, "pongme 2!", 9);
    cf(&t.in, 1, 0, 0, "fragment5", 9);
    sf(&t.want_out, 10, "pongme 1!", 9);
    sf(&t.want_out, 10, "pongme 2!", 9);
    ev_msg(&t.want_ev, 1, "fragment1fragment2fragment3fragment4fragment5", 45);
    tc_run(&t);

    tc_init(&t, "empty fragments");
    cf(&t.in, 0, 0, 1, "", 0);
    cf(&t.in, 0, 0, 0, "", 0);
    cf(&t.in, 0, 0, 0, "abc", 3);
    cf(&t.in, 1, 0, 0, "", 0);
    cf(&t.in, 1, 0, 1, "", 0);
    ev_msg(&t.want_ev, 1, "abc", 3);
    ev_msg(&t.want_ev, 1, "", 0);
    tc_run(&t);

    tc_init(&t, "max_fragments frames are fine");
    t.lim.max_fragments = 4;
    cf(&t.in, 0, 0, 1, "a", 1);
    for (i = 0; i < 2; i++) {
        cf(&t.in, 0, 0, 0, "b", 1);
    }
    cf(&t.in, 1, 0, 0, "c", 1);
    cf(&t.in, 1, 0, 1, "single", 6);
    ev_msg(&t.want_ev, 1, "abbc", 4);
    ev_msg(&t.want_ev, 1, "single", 6);
    tc_run(&t);

    tc_init(&t, "fragment flood -> 1008");
    t.lim.max_fragments = 4;
    cf(&t.in, 1, 0, 1, "ok", 2);
    cf(&t.in, 0, 0, 1, "a", 1);
    for (i = 0; i < 3; i++) {
        cf(&t.in, 0, 0, 0, "b", 1);
    }
    cf(&t.in, 1, 0, 0, "c", 1);
    ev_msg(&t.want_ev, 1, "ok", 2);
    tc_fail(&t, 1008);
    tc_run(&t);

    tc_init(&t, "empty fragment flood -> 1008");
    t.lim.max_fragments = 1024;
    cf(&t.in, 0, 0, 2, "", 0);
    for (i = 0; i < 1100; i++) {
        cf(&t.in, 0, 0, 0, "", 0);
    }
    tc_fail(&t, 1008);
    tc_run(&t);
}

/* ---- Autobahn 6.x: UTF-8 handling ---------------------------------------------- */

static void test_utf8_text(void **state)
{
    static const char *valid[] = {
        "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
        KOSME,
        "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\xef\xbf\xbf\xed\x9f\xbf\xee\x80\x80",
    };
    static const char *invalid[] = {
        "\xc0\xaf",         /* overlong / */
        "\xe0\x80\xaf",     /* overlong / */
        "\xf0\x80\x80\xaf", /* overlong / */
        "ab\xed\xa0\x80",   /* surrogate D800 */
        "\xed\xbf\xbf",     /* surrogate DFFF */
        "\xf4\x90\x80\x80", /* > U+10FFFF */
        "\xf5\x80\x80\x80", /* > U+10FFFF */
        "\xff",             /* impossible byte */
        "\x80",             /* lone continuation */
        KOSME "\xed\xa0\x80"
              "ed",         /* 6.3.1 */
        "\xce\xba\xe2\x82", /* truncated at message end */
        "\xf0\x9f\x98",     /* truncated at message end */
    };
    size_t i, k, n;
    tc_t t;
    (void)state;

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        n = strlen(valid[i]);
        tc_init(&t, "6.x valid text in one frame");
        cf(&t.in, 1, 0, 1, valid[i], n);
        ev_msg(&t.want_ev, 1, valid[i], n);
        tc_run(&t);

        /* Fragmented at every byte (code points split across frames). */
        tc_init(&t, "6.x valid text, one frame per byte");
        for (k = 0; k < n; k++) {
            cf(&t.in, k + 1 == n, 0, k ? 0 : 1, valid[i] + k, 1);
        }
        ev_msg(&t.want_ev, 1, valid[i], n);
        tc_run(&t);

        for (k = 0; k <= n; k++) {
            tc_init(&t, "6.x valid text in two fragments");
            cf(&t.in, 0, 0, 1, valid[i], k);
            cf(&t.in, 1, 0, 9, "p", 1);
            cf(&t.in, 1, 0, 0, valid[i] + k, n - k);
            sf(&t.want_out, 10, "p", 1);
            ev_msg(&t.want_ev, 1, valid[i], n);
            tc_run(&t);
        }
    }
    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        n = strlen(invalid[i]);
        tc_init(&t, "6.x invalid text");
        cf(&t.in, 1, 0, 1, "before", 6);
        cf(&t.in, 1, 0, 1, invalid[i], n);
        cf(&t.in, 1, 0, 9, "", 0);
        ev_msg(&t.want_ev, 1, "before", 6);
        tc_fail(&t, 1007);
        tc_run(&t);

        tc_init(&t, "6.x invalid text, one frame per byte");
        for (k = 0; k < n; k++) {
            cf(&t.in, k + 1 == n, 0, k ? 0 : 1, invalid[i] + k, 1);
        }
        tc_fail(&t, 1007);
        tc_run(&t);

        /* Binary messages are not UTF-8. */
        tc_init(&t, "invalid UTF-8 in binary is fine");
        cf(&t.in, 1, 0, 2, invalid[i], n);
        ev_msg(&t.want_ev, 2, invalid[i], n);
        tc_run(&t);
    }

    /* Fail fast: the message is not finished, the frame is not even
     * complete, yet the invalid byte is enough. */
    tc_init(&t, "6.x fail fast in an unfinished message");
    cf(&t.in, 0, 0, 1, "ab\xc0", 3);
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x fail fast inside a partial frame");
    {
        static const char s[] = "Hello\xf4\x90 and much more text after it";
        cf(&t.in, 1, 0, 1, s, sizeof(s) - 1);
        t.in.len = 6 + 7; /* header + "Hello" F4 90: the rest never comes */
    }
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x invalid sequence split across fragments");
    cf(&t.in, 0, 0, 1, "ab\xed", 3);
    cf(&t.in, 1, 0, 0, "\xa0\x80", 2);
    tc_fail(&t, 1007);
    tc_run(&t);

    tc_init(&t, "6.x fragment ends inside a code point, message not ended");
    cf(&t.in, 0, 0, 1, "\xe2\x82", 2);
    tc_run(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_utf8_text),
    };
    return cmocka_run_group_tests_name("ws_messages", tests, NULL, NULL);
}
