/* Unit tests: the ChatbotStore value parser (chat/storeurl.h), table
 * driven: every accepted form with its exact fields, every refused one with
 * the characteristic part of its message. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/storeurl.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_ok(void **state)
{
    static const struct {
        const char *s;
        chat_storeurl_kind_t kind;
        const char *host;
        int port;
        const char *path;
        int db;
        const char *user, *password;
    } ok[] = {
        {"shm", CHAT_STOREURL_SHM, "", 6379, "", 0, "", ""},
        {"redis://127.0.0.1:6380/2", CHAT_STOREURL_TCP, "127.0.0.1", 6380, "", 2, "", ""},
        {"redis://localhost", CHAT_STOREURL_TCP, "localhost", 6379, "", 0, "", ""},
        {"redis://localhost/", CHAT_STOREURL_TCP, "localhost", 6379, "", 0, "", ""},
        {"redis://redis-1.example.org:7000/15", CHAT_STOREURL_TCP, "redis-1.example.org",
         7000, "", 15, "", ""},
        {"redis://:s3cret@h:1/0", CHAT_STOREURL_TCP, "h", 1, "", 0, "", "s3cret"},
        {"redis://chat:p%40ss%3Aw@h:6379/1", CHAT_STOREURL_TCP, "h", 6379, "", 1, "chat",
         "p@ss:w"},
        {"redis://u:a@b@h", CHAT_STOREURL_TCP, "h", 6379, "", 0, "u", "a@b"},
        {"redis://[::1]:6390/3", CHAT_STOREURL_TCP, "::1", 6390, "", 3, "", ""},
        {"unix:/run/redis/redis.sock", CHAT_STOREURL_UNIX, "", 6379,
         "/run/redis/redis.sock", 0, "", ""},
        {"unix:/tmp/r.sock?db=7", CHAT_STOREURL_UNIX, "", 6379, "/tmp/r.sock", 7, "", ""},
    };
    size_t i;

    for (i = 0; i < N(ok); i++) {
        chat_storeurl_t u;
        const char *err = chat_storeurl_parse(ok[i].s, &u);
        if (err) {
            fail_msg("'%s' refused: %s", ok[i].s, err);
        }
        assert_int_equal(u.kind, ok[i].kind);
        assert_string_equal(u.host, ok[i].host);
        assert_int_equal(u.port, ok[i].port);
        assert_string_equal(u.path, ok[i].path);
        assert_int_equal(u.db, ok[i].db);
        assert_string_equal(u.user, ok[i].user);
        assert_string_equal(u.password, ok[i].password);
    }
}

static void test_bad(void **state)
{
    static const struct {
        const char *s, *needle;
    } bad[] = {
        {"", "expected shm"},
        {"SHM", "expected shm"},
        {"memcache://h", "expected shm"},
        {"redis://", "no host"},
        {"redis://:6379/0", "no host"},
        {"redis://h:0", "port"},
        {"redis://h:65536", "port"},
        {"redis://h:12x", "port"},
        {"redis://h:", "port"},
        {"redis://h/x", "database"},
        {"redis://h/65536", "database"},
        {"redis://h/-1", "database"},
        {"redis://h?db=1", "query"},
        {"redis://user@h", "credentials"},
        {"redis://u:@h", "empty password"},
        {"redis://u:%zz@h", "escape"},
        {"redis://u:%00@h", "escape"},
        {"redis://u:%4@h", "escape"},
        {"redis://ho st", "bad character"},
        {"redis://[::1", "unterminated"},
        {"redis://[::1]x", "junk"},
        {"redis://[zz]:1", "IPv6"},
        {"rediss://h:6379", "TLS"},
        {"unix:", "absolute"},
        {"unix:relative.sock", "absolute"},
        {"unix:/tmp/r.sock?database=1", "only option"},
        {"unix:/tmp/r.sock?db=", "db must"},
        {"unix:/tmp/r.sock?db=70000", "db must"},
        {"unix:/"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
         "a"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
         "too long"},
    };
    size_t i;

    for (i = 0; i < N(bad); i++) {
        chat_storeurl_t u;
        const char *err = chat_storeurl_parse(bad[i].s, &u);
        if (!err) {
            fail_msg("'%s' was accepted", bad[i].s);
        }
        if (!strstr(err, bad[i].needle)) {
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].s, err, bad[i].needle);
        }
    }
    assert_non_null(chat_storeurl_parse(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok),
        cmocka_unit_test(test_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
