/* Unit tests: lexical confinement (the path join, '..' and within checks)
 * and building the argv a command is run with. */
#include "test_cmd_util.h"

/* ---- paths ---------------------------------------------------------------- */

static void test_path_lexical(void **state)
{
    char out[64], err[256];
    (void)state;

    assert_int_equal(
        chat_cmd_path_lexical("/srv/files", "a/b", out, sizeof(out), err, sizeof(err)),
        CHAT_OK);
    assert_string_equal(out, "/srv/files/a/b");
    /* the joined path is not normalised: the glue's realpath sees the
     * components (and symlinks) in the kernel's order */
    assert_int_equal(chat_cmd_path_lexical("/srv/files", "link/../x", out, sizeof(out),
                                           err, sizeof(err)),
                     CHAT_OK);
    assert_string_equal(out, "/srv/files/link/../x");
    assert_int_equal(
        chat_cmd_path_lexical("/srv/files/", "x", out, sizeof(out), err, sizeof(err)),
        CHAT_OK);
    assert_string_equal(out, "/srv/files/x");
    assert_int_equal(
        chat_cmd_path_lexical("/", "etc", out, sizeof(out), err, sizeof(err)), CHAT_OK);
    assert_string_equal(out, "/etc");
    assert_int_equal(chat_cmd_path_lexical("/srv/files", "/srv/files/x", out, sizeof(out),
                                           err, sizeof(err)),
                     CHAT_OK);
    assert_string_equal(out, "/srv/files/x");
    assert_int_equal(
        chat_cmd_path_lexical("/srv/files", "", out, sizeof(out), err, sizeof(err)),
        CHAT_EDENIED);
    assert_string_equal(err, "a file name is empty");
    assert_int_equal(chat_cmd_path_lexical("/srv/files", "../files", out, sizeof(out),
                                           err, sizeof(err)),
                     CHAT_EDENIED);
    assert_int_equal(
        chat_cmd_path_lexical("/srv/files",
                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                              out, sizeof(out), err, sizeof(err)),
        CHAT_ETOOBIG);
    assert_string_equal(err, "a path is too long");
    /* exactly fitting */
    assert_int_equal(chat_cmd_path_lexical("/a", "bc", out, 6, err, sizeof(err)),
                     CHAT_OK);
    assert_string_equal(out, "/a/bc");
    assert_int_equal(chat_cmd_path_lexical("/a", "bcd", out, 6, err, sizeof(err)),
                     CHAT_ETOOBIG);
    assert_int_equal(chat_cmd_path_lexical("rel", "x", out, 6, err, sizeof(err)),
                     CHAT_EDENIED);
}

static void test_path_helpers(void **state)
{
    (void)state;
    assert_int_equal(chat_cmd_path_has_dotdot("a/b"), 0);
    assert_int_equal(chat_cmd_path_has_dotdot("a/../b"), 1);
    assert_int_equal(chat_cmd_path_has_dotdot(".."), 1);
    assert_int_equal(chat_cmd_path_has_dotdot("x/.."), 1);
    assert_int_equal(chat_cmd_path_has_dotdot("..."), 0);
    assert_int_equal(chat_cmd_path_has_dotdot("a..b/.x/x."), 0);
    assert_int_equal(chat_cmd_path_has_dotdot(""), 0);

    assert_int_equal(chat_cmd_path_within("/srv/files", "/srv/files"), 1);
    assert_int_equal(chat_cmd_path_within("/srv/files", "/srv/files/a"), 1);
    assert_int_equal(chat_cmd_path_within("/srv/files", "/srv/files2"), 0);
    assert_int_equal(chat_cmd_path_within("/srv/files", "/srv"), 0);
    assert_int_equal(chat_cmd_path_within("/srv/files", "/etc/passwd"), 0);
    assert_int_equal(chat_cmd_path_within("/srv/files/", "/srv/files/a"), 1);
    assert_int_equal(chat_cmd_path_within("/", "/etc"), 1);
    assert_int_equal(chat_cmd_path_within("/", "etc"), 0);
    assert_int_equal(chat_cmd_path_within("srv", "/srv"), 0);
}

/* ---- argv ---------------------------------------------------------------- */

static void test_build_argv(void **state)
{
    chat_cmd_spec_t sp;
    char store[256];
    const char *decl[16];
    const char *user[] = {"a; rm -rf /", "$(id)", "`x`"};
    const char *argv[8];
    (void)state;

    must_parse(&sp, "grep /bin/grep -n -- args=many paths=off", store, decl);
    assert_int_equal(chat_cmd_build_argv(&sp, user, 3, argv, N(argv)), 6);
    assert_string_equal(argv[0], "/bin/grep");
    assert_string_equal(argv[1], "-n");
    assert_string_equal(argv[2], "--");
    assert_string_equal(argv[3], "a; rm -rf /");
    assert_string_equal(argv[4], "$(id)");
    assert_string_equal(argv[5], "`x`");
    assert_null(argv[6]);
    assert_int_equal(chat_cmd_build_argv(&sp, user, 3, argv, 7), 6);
    assert_int_equal(chat_cmd_build_argv(&sp, user, 3, argv, 6), CHAT_ETOOBIG);
    assert_int_equal(chat_cmd_build_argv(&sp, NULL, 0, argv, 4), 3);
    assert_null(argv[3]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_lexical),
        cmocka_unit_test(test_path_helpers),
        cmocka_unit_test(test_build_argv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
