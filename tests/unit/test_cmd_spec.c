/* Unit tests: command declarations (chat_cmd_spec_parse): defaults, every
 * option, their errors and messages, options= lists, and which listed
 * options are risky. */
#include "test_cmd_util.h"

/* ---- declarations ---------------------------------------------------- */

static void test_spec_defaults(void **state)
{
    chat_cmd_spec_t sp;
    char store[256];
    const char *argv[8];
    (void)state;

    must_parse(&sp, "date /bin/date", store, argv);
    assert_string_equal(sp.name, "date");
    assert_string_equal(sp.path, "/bin/date");
    assert_int_equal(sp.nfixed, 0);
    assert_int_equal(sp.mode, CHAT_CMD_ARGS_NONE);
    assert_int_equal(sp.timeout_ms, 10000);
    assert_int_equal(sp.max_output, 65536);
    assert_null(sp.cwd);
    assert_int_equal(sp.flags, 0);
    assert_int_equal(sp.max_args, 0);
    assert_int_equal(sp.max_arg_len, 256);
    assert_string_equal(chat_cmd_mode_name(sp.mode), "none");
}

static void test_spec_full(void **state)
{
    chat_cmd_spec_t sp;
    char store[512];
    const char *argv[32];
    (void)state;

    must_parse(&sp,
               "files /usr/bin/ls -l --color=never args=many timeout=2500ms "
               "maxoutput=1M cwd=/srv/files paths=on dashes=on maxargs=5 "
               "maxarglen=100 options=-a,-n=,--sort=,--reverse,-- -- ",
               store, argv);
    assert_string_equal(sp.name, "files");
    assert_string_equal(sp.path, "/usr/bin/ls");
    assert_int_equal(sp.nfixed, 3);
    assert_string_equal(sp.fixed[0], "-l");
    assert_string_equal(sp.fixed[1], "--color=never");
    assert_string_equal(sp.fixed[2], "--");
    assert_int_equal(sp.mode, CHAT_CMD_ARGS_MANY);
    assert_int_equal(sp.timeout_ms, 2500);
    assert_int_equal(sp.max_output, 1024 * 1024);
    assert_string_equal(sp.cwd, "/srv/files");
    assert_int_equal(sp.flags, CHAT_CMD_F_PATHS | CHAT_CMD_F_DASHES);
    assert_int_equal(sp.max_args, 5);
    assert_int_equal(sp.max_arg_len, 100);
    assert_int_equal(sp.noptions, 5);
    assert_string_equal(sp.options_text, "-a,-n=,--sort=,--reverse,--");
    assert_int_equal(sp.options[1].len, 2);
    assert_memory_equal(sp.options[1].name, "-n", 2);
    assert_true(sp.options[1].takes_value);
    assert_int_equal(sp.options[2].len, 6);
    assert_memory_equal(sp.options[2].name, "--sort", 6);
    assert_true(sp.options[2].takes_value);
    assert_false(sp.options[3].takes_value);
    assert_int_equal(sp.options[4].len, 2);
    assert_false(sp.options[4].takes_value);

    /* options and fixed arguments may be mixed in any order */
    must_parse(&sp, "echo /bin/echo args=one hello paths=off world", store, argv);
    assert_int_equal(sp.nfixed, 2);
    assert_string_equal(sp.fixed[0], "hello");
    assert_string_equal(sp.fixed[1], "world");
    assert_int_equal(sp.mode, CHAT_CMD_ARGS_ONE);
    assert_int_equal(sp.max_args, 1);
    assert_int_equal(sp.flags, 0);

    /* args=many, paths=off: no cwd needed; default maxargs */
    must_parse(&sp, "echo /bin/echo args=many paths=off timeout=1m", store, argv);
    assert_int_equal(sp.max_args, CHAT_CMD_DEF_MAX_ARGS);
    assert_int_equal(sp.timeout_ms, 60000);
    /* a bare number is seconds; cwd with args=none is just the directory */
    must_parse(&sp, "pwd /bin/pwd timeout=3 cwd=/tmp", store, argv);
    assert_int_equal(sp.timeout_ms, 3000);
    assert_string_equal(sp.cwd, "/tmp");
    assert_int_equal(sp.flags, 0);
    /* boolean spellings */
    must_parse(&sp, "cat /bin/cat args=one cwd=/srv paths=yes dashes=No", store, argv);
    assert_int_equal(sp.flags, CHAT_CMD_F_PATHS);
    /* limits at their bounds */
    must_parse(&sp,
               "x /x args=many paths=off maxargs=64 maxarglen=4096 timeout=60s "
               "maxoutput=16M",
               store, argv);
    assert_int_equal(sp.max_args, 64);
    assert_int_equal(sp.max_arg_len, 4096);
    assert_int_equal(sp.timeout_ms, 60000);
    assert_int_equal(sp.max_output, 16u * 1024 * 1024);
    must_parse(&sp, "x /x timeout=100ms maxoutput=256", store, argv);
    assert_int_equal(sp.timeout_ms, 100);
    assert_int_equal(sp.max_output, 256);
}

static void test_spec_errors(void **state)
{
    chat_cmd_spec_t sp;
    char err[512];
    const char *one[] = {"ls"};
    char fixed[40 * 4 + 64];
    int i;
    (void)state;

    assert_int_equal(chat_cmd_spec_parse(&sp, 0, NULL, err, sizeof(err)), CHAT_EINVAL);
    assert_non_null(strstr(err, "expected a name and the absolute path"));
    assert_int_equal(chat_cmd_spec_parse(&sp, 1, one, err, sizeof(err)), CHAT_EINVAL);
    assert_non_null(strstr(err, "expected a name and the absolute path"));

    must_fail("-ls /bin/ls", "command name '-ls'");
    must_fail("l;s /bin/ls", "command name 'l;s'");
    must_fail("ls bin/ls", "program 'bin/ls': expected an absolute path");
    must_fail("ls ls", "program 'ls': expected an absolute path");
    must_fail("ls ./ls", "program './ls': expected an absolute path");
    must_fail("ls /bin/ls timout=5s",
              "unknown option 'timout='; allowed: args=none|one|many, "
              "timeout=<duration>, maxoutput=<size>, cwd=/dir, "
              "paths=on|off, options=-a,-b,--name,-n=, maxargs=N, maxarglen=N");
    must_fail("dd /bin/dd if=/dev/zero", "unknown option 'if='");
    must_fail("ls /bin/ls timeout=5s timeout=6s", "option 'timeout=' is given twice");
    must_fail("ls /bin/ls args=all",
              "args=all: expected args=none, args=one or args=many");
    must_fail("ls /bin/ls args=", "args=: expected args=none");
    must_fail("ls /bin/ls args=MANY", "args=MANY: expected");
    must_fail("ls /bin/ls timeout=abc", "timeout=abc: expected a duration");
    must_fail("ls /bin/ls timeout=0", "timeout=0:");
    must_fail("ls /bin/ls timeout=50ms", "timeout=50ms:");
    must_fail("ls /bin/ls timeout=2h", "timeout=2h:");
    must_fail("ls /bin/ls timeout=61s", "timeout=61s:");
    must_fail("ls /bin/ls timeout=-1", "timeout=-1:");
    must_fail("ls /bin/ls maxoutput=xyz", "maxoutput=xyz: expected a size");
    must_fail("ls /bin/ls maxoutput=1", "maxoutput=1:");
    must_fail("ls /bin/ls maxoutput=1G", "maxoutput=1G:");
    must_fail("ls /bin/ls cwd=srv", "cwd=srv: expected an absolute directory");
    must_fail("ls /bin/ls cwd=", "cwd=: expected an absolute directory");
    must_fail("ls /bin/ls args=one cwd=/srv paths=maybe",
              "paths=maybe: expected On or Off");
    must_fail("ls /bin/ls args=one cwd=/srv dashes=2", "dashes=2: expected On or Off");
    must_fail("ls /bin/ls args=many cwd=/srv maxargs=0",
              "maxargs=0: out of range: expected an integer between 1 and 64");
    must_fail("ls /bin/ls args=many cwd=/srv maxargs=65", "maxargs=65:");
    must_fail("ls /bin/ls args=many cwd=/srv maxargs=x", "maxargs=x:");
    must_fail("ls /bin/ls args=one cwd=/srv maxarglen=4097", "maxarglen=4097:");
    must_fail("ls /bin/ls args=one cwd=/srv maxarglen=0", "maxarglen=0:");
    must_fail("ls /bin/ls args=one cwd=/srv maxargs=3",
              "maxargs= only applies to args=many");
    must_fail("ls /bin/ls maxarglen=3", "maxarglen= only applies to user arguments");
    must_fail("ls /bin/ls paths=off", "paths= only applies to user arguments");
    must_fail("ls /bin/ls dashes=on", "dashes= only applies to user arguments");
    must_fail("ls /bin/ls options=-l", "options= only applies to user arguments");
    must_fail("ls /bin/ls args=many",
              "args=many with paths=on (the default) needs cwd=/dir");
    must_fail("ls /bin/ls args=one paths=on",
              "args=one with paths=on (the default) needs cwd");

    /* at most CHAT_CMD_MAX_FIXED fixed arguments */
    strcpy(fixed, "x /x");
    for (i = 0; i < CHAT_CMD_MAX_FIXED; i++) {
        strcat(fixed, " f");
    }
    {
        chat_cmd_spec_t s2;
        char store[512];
        const char *argv[64];
        must_parse(&s2, fixed, store, argv);
        assert_int_equal(s2.nfixed, CHAT_CMD_MAX_FIXED);
    }
    strcat(fixed, " f");
    must_fail(fixed, "too many fixed arguments (at most 32)");
}

/* options=: declarations and their errors */
static void test_spec_options(void **state)
{
    chat_cmd_spec_t sp;
    char store[2048];
    const char *argv[16];
    char big[1024];
    size_t i, o;
    (void)state;

    must_parse(&sp,
               "ls /bin/ls args=many cwd=/srv options=-l,-a,-h,-1,--all,--width=", store,
               argv);
    assert_int_equal(sp.noptions, 6);
    assert_int_equal(sp.flags, CHAT_CMD_F_PATHS | CHAT_CMD_F_DASHES);
    assert_true(sp.options[5].takes_value);
    /* dashes=on is redundant with options=, and harmless */
    must_parse(&sp, "ls /bin/ls args=one cwd=/srv options=-l dashes=on", store, argv);
    assert_int_equal(sp.flags, CHAT_CMD_F_PATHS | CHAT_CMD_F_DASHES);
    /* without options= no option is allowed, whatever else is said */
    must_parse(&sp, "ls /bin/ls args=one cwd=/srv dashes=off", store, argv);
    assert_int_equal(sp.flags, CHAT_CMD_F_PATHS);

    /* the finding: dashes=on alone let -lRL through */
    must_fail("ls /bin/ls args=many cwd=/srv dashes=on", "dashes=on needs options=");
    must_fail("ls /bin/ls args=many cwd=/srv options=-l dashes=off",
              "dashes=off contradicts options=");
    must_fail("ls /bin/ls args=many cwd=/srv options=",
              "expected a comma-separated list");
    must_fail("ls /bin/ls args=many cwd=/srv options=-lR", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=l", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=-", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=---x", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=-=", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=-\xc3\xa9", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=--a/b", "a long option is --name");
    must_fail("ls /bin/ls args=many cwd=/srv options=--a.b", "a long option is --name");
    must_fail("ls /bin/ls args=many cwd=/srv options=--=", "takes no value");
    must_fail("ls /bin/ls args=many cwd=/srv options=-l,,-a", "each entry is -x");
    must_fail("ls /bin/ls args=many cwd=/srv options=-l,", "a comma at the end");
    must_fail("ls /bin/ls args=many cwd=/srv options=-l,-a,-l", "listed twice");
    must_fail("ls /bin/ls args=many cwd=/srv options=-n,-n=", "listed twice");
    must_fail("ls /bin/ls args=many cwd=/srv options=-l options=-a",
              "option 'options=' is given twice");
    /* at most 64 entries */
    o = (size_t)snprintf(big, sizeof(big), "ls /bin/ls args=many cwd=/srv options=");
    for (i = 0; i < 65; i++) {
        o += (size_t)snprintf(big + o, sizeof(big) - o, "%s--o%zu", i ? "," : "", i);
    }
    must_fail(big, "too many options");
}

static void test_option_risky(void **state)
{
    chat_cmd_spec_t sp;
    char store[512];
    const char *argv[16];
    size_t i;
    int risky = 0;
    (void)state;

    must_parse(&sp,
               "ls /bin/ls args=many cwd=/srv options=-l,-R,-L,-a,--dereference,--all,"
               "--recursive,--dereference-recursive,-r",
               store, argv);
    for (i = 0; i < sp.noptions; i++) {
        risky |= chat_cmd_option_risky(&sp.options[i]) << i;
    }
    /* -R, -L, --dereference, --recursive, --dereference-recursive; not -l,
     * -a, --all, or -r (reverse order for ls) */
    assert_int_equal(risky, (1 << 1) | (1 << 2) | (1 << 4) | (1 << 6) | (1 << 7));
    assert_false(chat_cmd_option_risky(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_defaults), cmocka_unit_test(test_spec_full),
        cmocka_unit_test(test_spec_errors),   cmocka_unit_test(test_spec_options),
        cmocka_unit_test(test_option_risky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
