/* Unit tests: the portable half of command execution (chat/cmd.h):
 * declarations and their errors, "!" line splitting, argument checks
 * (injection strings, control characters, Unicode look-alikes, paths),
 * lexical confinement, argv building, output capping, history text. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/cmd.h"
#include "chat/utf8.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static chat_status_t parse(chat_cmd_spec_t *sp, const char *line, char *err, size_t cap,
                           char *store, const char **argv, int *argc)
{
    /* splits a test declaration on spaces (no quoting needed in tests) */
    char *p;
    int n = 0;

    strcpy(store, line);
    for (p = strtok(store, " "); p; p = strtok(NULL, " ")) {
        argv[n++] = p;
    }
    *argc = n;
    return chat_cmd_spec_parse(sp, n, argv, err, cap);
}

static void must_parse(chat_cmd_spec_t *sp, const char *line, char *store,
                       const char **argv)
{
    char err[512];
    int argc;

    if (parse(sp, line, err, sizeof(err), store, argv, &argc) != CHAT_OK) {
        fail_msg("'%s' refused: %s", line, err);
    }
}

static void must_fail(const char *line, const char *needle)
{
    chat_cmd_spec_t sp;
    char err[512], store[1024];
    const char *argv[64];
    int argc;

    err[0] = '\0';
    if (parse(&sp, line, err, sizeof(err), store, argv, &argc) != CHAT_EINVAL) {
        fail_msg("'%s' was accepted", line);
    }
    if (!strstr(err, needle)) {
        fail_msg("'%s': message '%s' lacks '%s'", line, err, needle);
    }
}

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

/* ---- "!" lines ---------------------------------------------------------- */

static size_t split(const char *line, size_t len, const char **w, size_t maxw,
                    chat_status_t *st, char *err)
{
    static char buf[1024];
    size_t n = 99;

    *st = chat_cmd_split(line, len, buf, sizeof(buf), w, maxw, &n, err, 256);
    return n;
}

static void expect_words(const char *line, int nexp, ...)
{
    const char *w[16];
    char err[256];
    chat_status_t st;
    size_t n = split(line, strlen(line), w, N(w), &st, err);
    va_list ap;
    int i;

    if (st != CHAT_OK) {
        fail_msg("'%s' refused: %s", line, err);
    }
    assert_int_equal(n, nexp);
    va_start(ap, nexp);
    for (i = 0; i < nexp; i++) {
        assert_string_equal(w[i], va_arg(ap, const char *));
    }
    va_end(ap);
}

static void test_split_words(void **state)
{
    (void)state;
    expect_words("!ls", 1, "ls");
    expect_words("!ls -l /tmp", 3, "ls", "-l", "/tmp");
    expect_words("  \t!ls   -l\t\tx  \r\n", 3, "ls", "-l", "x");
    expect_words("! ls x", 2, "ls", "x");
    expect_words("!!", 1, "!");
    /* no shell: every byte is literal, nothing is interpreted */
    expect_words("!echo a;b", 2, "echo", "a;b");
    expect_words("!echo a ; touch /tmp/x", 5, "echo", "a", ";", "touch", "/tmp/x");
    expect_words("!ls && rm -rf /", 5, "ls", "&&", "rm", "-rf", "/");
    expect_words("!ls | cat", 3, "ls", "|", "cat");
    expect_words("!echo `id`", 2, "echo", "`id`");
    expect_words("!echo $(id) ${HOME} $HOME", 4, "echo", "$(id)", "${HOME}", "$HOME");
    expect_words("!echo 'a b' \"c d\"", 5, "echo", "'a", "b'", "\"c", "d\"");
    expect_words("!echo a\\ b", 3, "echo", "a\\", "b");
    expect_words("!ls *.txt ~ ?", 4, "ls", "*.txt", "~", "?");
    expect_words("!echo >/tmp/x <in 2>&1", 4, "echo", ">/tmp/x", "<in", "2>&1");
    /* non-ASCII spaces are not separators (the argument check decides) */
    expect_words("!echo a\xc2\xa0"
                 "b",
                 2, "echo",
                 "a\xc2\xa0"
                 "b");
}

static void test_split_refusals(void **state)
{
    const char *w[4];
    char err[256];
    chat_status_t st;
    static const struct {
        const char *s;
        size_t len;
        chat_status_t st;
        const char *msg;
    } bad[] = {
        {"", 0, CHAT_EINVAL, "starts with '!'"},
        {"ls", 2, CHAT_EINVAL, "starts with '!'"},
        {"   ", 3, CHAT_EINVAL, "starts with '!'"},
        {"x!ls", 4, CHAT_EINVAL, "starts with '!'"},
        {"!", 1, CHAT_EINVAL, "nothing after '!'"},
        {"!  \t ", 5, CHAT_EINVAL, "nothing after '!'"},
        {"!ls\n; touch /tmp/x", 18, CHAT_EDENIED, "control character"},
        {"!ls\rx", 5, CHAT_EDENIED, "control character"},
        {"!ls\nrm", 6, CHAT_EDENIED, "control character"},
        {"!ls\0; id", 8, CHAT_EDENIED, "control character"},
        {"!ls \x1b[31m", 9, CHAT_EDENIED, "control character"},
        {"!ls \x7f", 5, CHAT_EDENIED, "control character"},
        {"!ls \v x", 7, CHAT_EDENIED, "control character"},
        {"!a b c d e", 10, CHAT_ETOOBIG, "too many arguments (at most 3)"},
    };
    size_t i, n;
    (void)state;

    for (i = 0; i < N(bad); i++) {
        err[0] = '\0';
        n = split(bad[i].s, bad[i].len, w, N(w), &st, err);
        if (st != bad[i].st) {
            fail_msg("case %zu: status %d, expected %d", i, st, bad[i].st);
        }
        assert_int_equal(n, 0);
        if (!strstr(err, bad[i].msg)) {
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
        }
    }
    /* the output buffer must hold the line */
    {
        char small[4];
        size_t nw;
        st = chat_cmd_split("!ls -l", 6, small, sizeof(small), w, N(w), &nw, err,
                            sizeof(err));
        assert_int_equal(st, CHAT_ETOOBIG);
        st = chat_cmd_split("!ls", 3, small, sizeof(small), w, N(w), &nw, err,
                            sizeof(err));
        assert_int_equal(st, CHAT_OK);
        assert_string_equal(w[0], "ls");
    }
}

/* Every prefix of a hostile line splits or is refused; never more. */
static void test_split_every_prefix(void **state)
{
    static const char line[] = "!cat a\tb  ../../etc/passwd $(id)\n`x`";
    const char *w[16];
    char err[256];
    chat_status_t st;
    size_t len, n, i;
    (void)state;

    size_t nl = (size_t)(strchr(line, '\n') - line);

    for (len = 0; len <= sizeof(line) - 1; len++) {
        char *copy = malloc(len ? len : 1);
        memcpy(copy, line, len);
        n = split(copy, len, w, N(w), &st, err);
        if (len <= 1) {
            assert_int_equal(st, CHAT_EINVAL); /* "" and "!" */
        }
        else if (len > nl + 1) {
            assert_int_equal(st, CHAT_EDENIED); /* a newline inside the line */
        }
        else {
            assert_int_equal(st, CHAT_OK); /* a trailing newline is trimmed */
            assert_int_equal(strncmp(w[0], "cat", strlen(w[0])), 0);
        }
        if (st == CHAT_OK) {
            for (i = 0; i < n; i++) {
                assert_non_null(w[i]);
                assert_true(strlen(w[i]) > 0);
                assert_null(strchr(w[i], ' '));
                assert_null(strchr(w[i], '\t'));
            }
        }
        free(copy);
    }
}

/* ---- arguments ---------------------------------------------------------- */

static chat_cmd_spec_t mkspec(unsigned flags, const char *cwd)
{
    chat_cmd_spec_t sp;

    memset(&sp, 0, sizeof(sp));
    sp.name = "t";
    sp.path = "/bin/t";
    sp.mode = CHAT_CMD_ARGS_MANY;
    sp.timeout_ms = 1000;
    sp.max_output = 1024;
    sp.cwd = cwd;
    sp.flags = flags;
    sp.max_args = 4;
    sp.max_arg_len = 256;
    return sp;
}

static void ok_arg(const chat_cmd_spec_t *sp, const char *a, size_t len)
{
    char err[256];

    if (chat_cmd_check_arg(sp, a, len, err, sizeof(err)) != CHAT_OK) {
        fail_msg("argument '%.*s' refused: %s", (int)(len > 40 ? 40 : len), a, err);
    }
}

static void bad_arg(const chat_cmd_spec_t *sp, const char *a, size_t len,
                    const char *needle)
{
    char err[256];

    err[0] = '\0';
    if (chat_cmd_check_arg(sp, a, len, err, sizeof(err)) != CHAT_EDENIED) {
        fail_msg("argument '%.*s' (len %zu) accepted", (int)(len > 40 ? 40 : len), a,
                 len);
    }
    if (!strstr(err, needle)) {
        fail_msg("argument '%.*s': '%s' lacks '%s'", (int)(len > 40 ? 40 : len), a, err,
                 needle);
    }
}

#define OK(sp, s) ok_arg(sp, s, sizeof(s) - 1)
#define BAD(sp, s, m) bad_arg(sp, s, sizeof(s) - 1, m)

static void test_arg_injection_is_literal(void **state)
{
    chat_cmd_spec_t paths = mkspec(CHAT_CMD_F_PATHS, "/srv/files");
    chat_cmd_spec_t plain = mkspec(0, NULL);
    static const char *const literal[] = {";",
                                          "a;b",
                                          "&&",
                                          "||",
                                          "|",
                                          "&",
                                          "`id`",
                                          "$(id)",
                                          "${IFS}",
                                          "$HOME",
                                          "'",
                                          "\"",
                                          "*",
                                          "?",
                                          "[a-z]",
                                          "~",
                                          "<in",
                                          ">out",
                                          "2>&1",
                                          "a b",
                                          "!",
                                          "#",
                                          "%s%n",
                                          "$(touch marker)",
                                          "x;touch marker",
                                          "\\",
                                          "{a,b}"};
    size_t i;
    (void)state;

    /* Shell syntax is harmless without a shell: these are file names (or
     * words) passed verbatim as one argv entry each, so they are allowed. */
    for (i = 0; i < N(literal); i++) {
        ok_arg(&paths, literal[i], strlen(literal[i]));
        ok_arg(&plain, literal[i], strlen(literal[i]));
    }
}

static void test_arg_controls(void **state)
{
    chat_cmd_spec_t sp = mkspec(0, NULL);
    chat_cmd_spec_t dp = mkspec(CHAT_CMD_F_PATHS | CHAT_CMD_F_DASHES, "/srv");
    const chat_cmd_spec_t *both[2];
    char c[4];
    int i, k;
    (void)state;

    both[0] = &sp;
    both[1] = &dp;
    for (k = 0; k < 2; k++) {
        for (i = 0; i < 0x20; i++) {
            c[0] = 'a';
            c[1] = (char)i;
            c[2] = 'b';
            bad_arg(both[k], c, 3, "control character");
        }
        BAD(both[k], "a\x7f", "control character");
        BAD(both[k], "a\nrm -rf /", "control character");
        BAD(both[k], "x\r\n", "control character");
        BAD(both[k], "a\0b", "control character");
        BAD(both[k], "\0", "control character");
        BAD(both[k], "a\tb", "control character");
        BAD(both[k], "\x1b]0;title\x07", "control character");
        BAD(both[k],
            "a\xc2\x85"
            "b",
            "control character"); /* U+0085 NEL */
        BAD(both[k],
            "a\xc2\x9b"
            "b",
            "control character"); /* U+009B CSI */
        BAD(both[k],
            "a\xe2\x80\xa8"
            "b",
            "control character"); /* U+2028 */
        BAD(both[k],
            "a\xe2\x80\xa9"
            "b",
            "control character"); /* U+2029 */
        BAD(both[k],
            "a\xe2\x80\xae"
            "b",
            "formatting"); /* U+202E RLO */
        BAD(both[k],
            "a\xe2\x81\xa6"
            "b",
            "formatting"); /* U+2066 LRI */
        BAD(both[k],
            "a\xe2\x80\x8b"
            "b",
            "formatting"); /* U+200B ZWSP */
        BAD(both[k],
            "\xef\xbb\xbf"
            "a",
            "formatting"); /* U+FEFF BOM */
        BAD(both[k],
            "a\xc2\xad"
            "b",
            "formatting");                               /* U+00AD SHY */
        BAD(both[k], "a\xf3\xa0\x80\x81", "formatting"); /* U+E0001 TAG */
        /* invalid UTF-8, including overlong encodings of '/' and '.' */
        BAD(both[k], "\xff", "not valid UTF-8");
        BAD(both[k], "a\x80", "not valid UTF-8");
        BAD(both[k],
            "..\xc0\xaf"
            "etc",
            "not valid UTF-8"); /* overlong '/' */
        BAD(both[k],
            "\xe0\x80\xaf"
            "etc",
            "not valid UTF-8");                                /* overlong '/' */
        BAD(both[k], "\xf0\x80\x80\xaf", "not valid UTF-8");   /* overlong '/' */
        BAD(both[k], "\xc0\xae\xc0\xae/x", "not valid UTF-8"); /* overlong '.' */
        BAD(both[k], "\xed\xa0\x80", "not valid UTF-8");       /* surrogate */
        BAD(both[k], "\xf4\x90\x80\x80", "not valid UTF-8");   /* > U+10FFFF */
        BAD(both[k], "ab\xe2\x88", "not valid UTF-8");         /* truncated */
        BAD(both[k], "", "empty");
        /* ordinary non-ASCII text is fine */
        OK(both[k], "r\xc3\xa9sum\xc3\xa9.txt");
        OK(both[k], "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e");
        OK(both[k], "\xf0\x9f\x98\x80");
    }
}

static void test_arg_length(void **state)
{
    chat_cmd_spec_t sp = mkspec(CHAT_CMD_F_PATHS, "/srv/files");
    char big[5000];
    (void)state;

    memset(big, 'a', sizeof(big));
    ok_arg(&sp, big, 256);
    bad_arg(&sp, big, 257, "longer than 256 bytes");
    bad_arg(&sp, big, sizeof(big), "longer than 256 bytes");
    sp.max_arg_len = 4096;
    /* a path also has to fit, joined to cwd, in CHAT_CMD_PATH_MAX */
    bad_arg(&sp, big, 4096, "a path is too long");
    ok_arg(&sp, big, 4096 - strlen("/srv/files/") - 1);
    sp.flags = 0;
    ok_arg(&sp, big, 4096);
    bad_arg(&sp, big, 4097, "longer than 4096 bytes");
    /* a hand-made spec beyond the parser's bound is still safe */
    sp.max_arg_len = 100000;
    sp.flags = CHAT_CMD_F_PATHS;
    bad_arg(&sp, big, 4097, "too long");
    sp.max_arg_len = 3;
    OK(&sp, "abc");
    /* the limit counts bytes, not characters */
    BAD(&sp, "\xc3\xa9\xc3\xa9", "longer than 3 bytes");
}

/* A spec parsed from a declaration (options= needs the parser). */
static chat_cmd_spec_t optspec(const char *decl, char *store, const char **argv)
{
    chat_cmd_spec_t sp;

    must_parse(&sp, decl, store, argv);
    return sp;
}

static void test_arg_dashes(void **state)
{
    char st1[256], st2[256];
    const char *av1[16], *av2[16];
    chat_cmd_spec_t off = mkspec(CHAT_CMD_F_PATHS, "/srv/files");
    chat_cmd_spec_t on =
        optspec("t /bin/t args=many cwd=/srv/files options=-l,-n=,-o=,-d=,--color=,"
                "--output=,--file=",
                st1, av1);
    chat_cmd_spec_t onplain =
        optspec("t /bin/t args=many paths=off options=-o=,--output=", st2, av2);
    chat_cmd_spec_t offplain = mkspec(0, NULL);
    (void)state;

    BAD(&off, "-rf", "starts with '-'");
    BAD(&off, "--output=/etc/x", "starts with '-'");
    BAD(&off, "-", "starts with '-'");
    BAD(&offplain, "--help", "starts with '-'");
    BAD(&offplain, "\xe2\x88\x92rf", "dash look-alike"); /* U+2212 MINUS */
    BAD(&offplain,
        "\xe2\x80\x90"
        "x",
        "dash look-alike"); /* U+2010 HYPHEN */
    BAD(&offplain,
        "\xe2\x80\x94"
        "x",
        "dash look-alike"); /* U+2014 EM DASH */
    BAD(&offplain,
        "\xef\xbc\x8d"
        "x",
        "dash look-alike"); /* U+FF0D */
    BAD(&offplain,
        "\xef\xb9\xa3"
        "x",
        "dash look-alike"); /* U+FE63 */
    OK(&off, "a-b");
    OK(&off, "x--y");
    OK(&offplain, "a-");

    /* listed options pass, but with paths=on their values carry no path */
    OK(&on, "-l");
    OK(&on, "--color=never");
    OK(&on, "-n5");
    BAD(&on, "--output=/etc/x", "an option's value may not carry a path");
    BAD(&on, "-o/etc/x", "an option's value may not carry a path");
    BAD(&on, "--file=../x", "an option's value may not carry a path");
    BAD(&on, "-d..", "an option's value may not carry a path");
    BAD(&on,
        "-\xe2\x88\x95"
        "etc",
        "looks like path syntax");
    /* paths=off: the admin declared the arguments are not file names */
    OK(&onplain, "--output=/etc/x");
    OK(&onplain, "-o/etc/x");
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

static chat_status_t args_check(const chat_cmd_spec_t *sp, char *err, size_t cap, ...)
{
    const char *a[16];
    size_t n = 0;
    va_list ap;

    va_start(ap, cap);
    while (n < 16 && (a[n] = va_arg(ap, const char *)) != NULL) {
        n++;
    }
    va_end(ap);
    err[0] = '\0';
    return chat_cmd_check_args(sp, a, n, err, cap);
}

#define ARGS_OK(sp, ...)                                                                 \
    do {                                                                                 \
        char e_[256];                                                                    \
        if (args_check(sp, e_, sizeof(e_), __VA_ARGS__, (const char *)NULL) != CHAT_OK)  \
            fail_msg("refused: %s", e_);                                                 \
    } while (0)
#define ARGS_BAD(sp, needle, ...)                                                        \
    do {                                                                                 \
        char e_[256];                                                                    \
        if (args_check(sp, e_, sizeof(e_), __VA_ARGS__, (const char *)NULL) !=           \
            CHAT_EDENIED)                                                                \
            fail_msg("accepted (expected '%s')", needle);                                \
        if (!strstr(e_, needle))                                                         \
            fail_msg("'%s' lacks '%s'", e_, needle);                                     \
    } while (0)

/* Options from the list only: recursion and link-following (-R, -L,
 * --dereference) are refused unless listed, alone or combined (-lRL). */
static void test_arg_options(void **state)
{
    char store[512], store2[512];
    const char *argv[16], *argv2[16];
    chat_cmd_spec_t ls = optspec(
        "ls /bin/ls args=many maxargs=16 cwd=/srv/files options=-l,-a,-h,-1,--all,"
        "--color=,-w=,--",
        store, argv);
    chat_cmd_spec_t grep = optspec(
        "grep /bin/grep args=many maxargs=16 paths=off options=-i,-n,-e=,-m=", store2,
        argv2);
    (void)state;

    ARGS_OK(&ls, "-l");
    ARGS_OK(&ls, "-la", "-h");
    ARGS_OK(&ls, "-lah1", "notes.txt");
    ARGS_OK(&ls, "notes.txt", "-l"); /* GNU: options after file names */
    ARGS_OK(&ls, "--all", "--color=never");
    ARGS_OK(&ls, "--color=");         /* an empty value */
    ARGS_OK(&ls, "-w", "80", "x");    /* value in the next argument */
    ARGS_OK(&ls, "-w80");             /* attached */
    ARGS_OK(&ls, "-lw80");            /* at the end of a group */
    ARGS_OK(&ls, "--color", "auto");  /* --name value */
    ARGS_OK(&ls, "-w", "-5");         /* a value may start with '-' */
    ARGS_OK(&ls, "-");                /* a file name */
    ARGS_OK(&ls, "--", "-R", "-lRL"); /* after "--": file names */

    ARGS_BAD(&ls,
             "not one this command allows (allowed: -l,-a,-h,-1,--all,--color=,-w=,--)",
             "-R");
    ARGS_BAD(&ls, "argument 1 refused: an option is not one", "-L");
    ARGS_BAD(&ls, "argument 2 refused: an option is not one", "x", "-lRL");
    ARGS_BAD(&ls, "an option is not one", "-lR");
    ARGS_BAD(&ls, "an option is not one", "-Rl");
    ARGS_BAD(&ls, "an option is not one", "--dereference");
    ARGS_BAD(&ls, "an option is not one", "--deref"); /* GNU abbreviations too */
    ARGS_BAD(&ls, "an option is not one", "--dereference-command-line");
    ARGS_BAD(&ls, "an option is not one", "--recursive");
    ARGS_BAD(&ls, "an option is not one", "--all=yes"); /* takes no value */
    ARGS_BAD(&ls, "an option is not one", "--al");
    ARGS_BAD(&ls, "an option is not one", "-l-");
    ARGS_BAD(&ls, "an option is not one", "-l\xc3\xa9");
    ARGS_BAD(&ls, "an option is not one", "--ALL"); /* names are exact */
    ARGS_BAD(&ls, "the last option needs a value", "-w");
    ARGS_BAD(&ls, "the last option needs a value", "-l", "--color");
    ARGS_BAD(&ls, "may not carry a path", "-w", "../x");
    ARGS_BAD(&ls, "may not carry a path", "-w/etc");
    ARGS_BAD(&ls, "may not carry a path", "--color=a/b");
    /* after "--" the arguments are file names, still confined */
    ARGS_BAD(&ls, "'..' leads outside", "--", "../x");
    ARGS_BAD(&ls, "absolute path outside", "--", "/etc/passwd");
    /* the error never quotes the argument */
    {
        char e[256];
        args_check(&ls, e, sizeof(e), "-lQZ", (const char *)NULL);
        assert_null(strstr(e, "QZ"));
    }

    /* paths=off: values are words (patterns), but options still come from
     * the list only */
    ARGS_OK(&grep, "-i", "-e", "a/b", "-m", "3", "notes");
    ARGS_OK(&grep, "-in", "-e../x");
    ARGS_BAD(&grep, "an option is not one", "-R", "x");
    ARGS_BAD(&grep, "an option is not one", "-ri", "x");
    ARGS_BAD(&grep, "an option is not one", "--dereference-recursive");
    ARGS_BAD(&grep, "an option is not one", "--", "x"); /* "--" is not listed */
}

static void test_arg_paths(void **state)
{
    chat_cmd_spec_t sp = mkspec(CHAT_CMD_F_PATHS, "/srv/files");
    chat_cmd_spec_t root = mkspec(CHAT_CMD_F_PATHS, "/");
    chat_cmd_spec_t plain = mkspec(0, NULL);
    (void)state;

    OK(&sp, "notes.txt");
    OK(&sp, "sub/a.txt");
    OK(&sp, "./x");
    OK(&sp, ".");
    OK(&sp, "sub/");
    OK(&sp, "a/../b");
    OK(&sp, "a//b");
    OK(&sp, "...");
    OK(&sp, "..a");
    OK(&sp, "a..");
    OK(&sp, "/srv/files");
    OK(&sp, "/srv/files/");
    OK(&sp, "/srv/files/x");
    OK(&sp, "/srv//files/./x");
    BAD(&sp, "..", "'..' leads outside");
    BAD(&sp, "../x", "'..' leads outside");
    BAD(&sp, "./..", "'..' leads outside");
    BAD(&sp, "a/../../x", "'..' leads outside");
    BAD(&sp, "a/../../files/x", "'..' leads outside");
    BAD(&sp, "sub/../..", "'..' leads outside");
    BAD(&sp, "../../../../../../etc/passwd", "'..' leads outside");
    BAD(&sp, "/etc/passwd", "absolute path outside");
    BAD(&sp, "/", "absolute path outside");
    BAD(&sp, "/srv", "absolute path outside");
    BAD(&sp, "/srv/filesX/y", "absolute path outside");
    BAD(&sp, "/srv/files2", "absolute path outside");
    BAD(&sp, "/srv/../srv/files/x", "absolute path outside");
    BAD(&sp, "/srv/files/../x", "'..' leads outside");
    BAD(&sp, "/srv/files/../files/x", "'..' leads outside");
    BAD(&sp, "//etc/passwd", "absolute path outside");
    /* Unicode look-alikes of '/', '\\' and '.' are refused with paths=on */
    BAD(&sp,
        "..\xe2\x88\x95..\xe2\x88\x95"
        "etc",
        "looks like path syntax"); /* U+2215 */
    BAD(&sp,
        "\xef\xbc\x8f"
        "etc\xef\xbc\x8f"
        "passwd",
        "looks like path syntax");                                    /* U+FF0F */
    BAD(&sp, "\xe2\x80\xa4\xe2\x80\xa4/x", "looks like path syntax"); /* U+2024 */
    BAD(&sp, "\xe2\x80\xa5", "looks like path syntax");               /* U+2025 */
    BAD(&sp, "\xef\xbc\x8e\xef\xbc\x8e", "looks like path syntax");   /* U+FF0E */
    BAD(&sp,
        "a\xe2\x81\x84"
        "b",
        "looks like path syntax"); /* U+2044 */
    BAD(&sp,
        "a\xef\xb9\xa8"
        "b",
        "looks like path syntax"); /* U+FE68 */
    BAD(&sp,
        "a\xef\xbc\xbc"
        "b",
        "looks like path syntax"); /* U+FF3C */
    BAD(&sp,
        "a\xe2\xa7\xb8"
        "b",
        "looks like path syntax");                                  /* U+29F8 */
    BAD(&sp, ".\xcc\xb8", "looks like path syntax");                /* U+0338 */
    BAD(&sp, "\xef\xb9\x92\xef\xb9\x92", "looks like path syntax"); /* U+FE52 */
    /* With paths=off they are just characters: the kernel only splits on
     * the byte 0x2F, so they could never be a separator anyway. */
    OK(&plain, "..\xe2\x88\x95..\xe2\x88\x95"
               "etc");
    OK(&plain, "\xef\xbc\x8f"
               "etc");
    OK(&plain, "/etc/passwd");
    OK(&plain, "../x");
    /* cwd "/" confines to the whole tree (documented: pointless but legal) */
    OK(&root, "/etc/passwd");
    OK(&root, "etc");
    BAD(&root, "..", "'..' leads outside");
}

static void test_arg_counts(void **state)
{
    chat_cmd_spec_t sp = mkspec(CHAT_CMD_F_PATHS, "/srv/files");
    const char *args[6] = {"a", "b", "c", "d", "e", "f"};
    const char *bad[3] = {"a", "../x", "c"};
    const char *nl[2] = {"a", "b\nc"};
    char err[256];
    (void)state;

    assert_int_equal(chat_cmd_check_args(&sp, args, 0, err, sizeof(err)), CHAT_OK);
    assert_int_equal(chat_cmd_check_args(&sp, args, 4, err, sizeof(err)), CHAT_OK);
    assert_int_equal(chat_cmd_check_args(&sp, args, 5, err, sizeof(err)), CHAT_EDENIED);
    assert_string_equal(err, "'t' takes at most 4 arguments");
    assert_int_equal(chat_cmd_check_args(&sp, bad, 3, err, sizeof(err)), CHAT_EDENIED);
    assert_string_equal(err,
                        "argument 2 refused: '..' leads outside the command's directory");
    assert_int_equal(chat_cmd_check_args(&sp, nl, 2, err, sizeof(err)), CHAT_EDENIED);
    assert_non_null(strstr(err, "argument 2 refused: an argument contains a control"));

    sp.mode = CHAT_CMD_ARGS_ONE;
    sp.max_args = 1;
    assert_int_equal(chat_cmd_check_args(&sp, args, 1, err, sizeof(err)), CHAT_OK);
    assert_int_equal(chat_cmd_check_args(&sp, args, 0, err, sizeof(err)), CHAT_EDENIED);
    assert_string_equal(err, "'t' takes exactly one argument");
    assert_int_equal(chat_cmd_check_args(&sp, args, 2, err, sizeof(err)), CHAT_EDENIED);
    assert_string_equal(err, "'t' takes exactly one argument");

    sp.mode = CHAT_CMD_ARGS_NONE;
    sp.max_args = 0;
    assert_int_equal(chat_cmd_check_args(&sp, args, 0, err, sizeof(err)), CHAT_OK);
    assert_int_equal(chat_cmd_check_args(&sp, args, 1, err, sizeof(err)), CHAT_EDENIED);
    assert_string_equal(err, "'t' takes no arguments");
}

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

/* ---- output --------------------------------------------------------------- */

static void feed_chunks(chat_cmd_output_t *o, const char *data, size_t n, size_t chunk)
{
    size_t off;
    int capped = 0;

    for (off = 0; off < n; off += chunk) {
        size_t k = n - off < chunk ? n - off : chunk;
        int r = chat_cmd_output_add(o, data + off, k);
        assert_true(r == 0 || r == 1);
        if (capped) {
            assert_int_equal(r, 1); /* stays capped */
        }
        capped = r;
    }
}

static void test_output_cap(void **state)
{
    chat_cmd_output_t o;
    (void)state;

    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_add(&o, "hello", 5), 0);
    assert_int_equal(chat_cmd_output_add(&o, "world", 5), 0);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_string_equal(o.buf.data, "helloworld");
    assert_int_equal(o.truncated, 0);
    chat_cmd_output_free(&o);

    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_add(&o, "helloworld!", 11), 1);
    assert_int_equal(chat_cmd_output_add(&o, "more", 4), 1);
    assert_int_equal(o.seen, 15);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK); /* once only */
    assert_string_equal(o.buf.data, "helloworld\n[output truncated at 10 bytes]");
    assert_int_equal(o.truncated, 1);
    chat_cmd_output_free(&o);

    /* empty output */
    chat_cmd_output_init(&o, 10);
    assert_int_equal(chat_cmd_output_finish(&o), CHAT_OK);
    assert_int_equal(o.buf.len, 0);
    chat_cmd_output_free(&o);
}

/* Same result whatever the read sizes: one byte at a time, every split. */
static void test_output_chunking(void **state)
{
    static const char data[] = "0123456789abcdefghij\xe2\x82\xac-tail";
    const size_t n = sizeof(data) - 1;
    uint64_t max;
    (void)state;

    for (max = 1; max <= n + 2; max++) {
        chat_cmd_output_t whole, bytes;
        size_t split;

        chat_cmd_output_init(&whole, max);
        chat_cmd_output_add(&whole, data, n);
        chat_cmd_output_finish(&whole);
        chat_cmd_output_init(&bytes, max);
        feed_chunks(&bytes, data, n, 1);
        chat_cmd_output_finish(&bytes);
        assert_int_equal(whole.buf.len, bytes.buf.len);
        assert_memory_equal(whole.buf.data ? whole.buf.data : "",
                            bytes.buf.data ? bytes.buf.data : "", whole.buf.len);
        for (split = 0; split <= n; split++) {
            chat_cmd_output_t two;
            chat_cmd_output_init(&two, max);
            chat_cmd_output_add(&two, data, split);
            chat_cmd_output_add(&two, data + split, n - split);
            chat_cmd_output_finish(&two);
            assert_int_equal(two.buf.len, whole.buf.len);
            assert_memory_equal(two.buf.data ? two.buf.data : "",
                                whole.buf.data ? whole.buf.data : "", two.buf.len);
            assert_int_equal(two.seen, n);
            chat_cmd_output_free(&two);
        }
        assert_int_equal(whole.truncated, max < n);
        chat_cmd_output_free(&whole);
        chat_cmd_output_free(&bytes);
    }
}

static void test_output_utf8_cut(void **state)
{
    chat_cmd_output_t o;
    char expect[64];
    int k;
    (void)state;

    /* "abcd" + EURO SIGN (3 bytes): a cut inside the euro drops its start */
    for (k = 5; k <= 6; k++) {
        chat_cmd_output_init(&o, (uint64_t)k);
        assert_int_equal(chat_cmd_output_add(&o,
                                             "abcd\xe2\x82\xac"
                                             "z",
                                             8),
                         1);
        chat_cmd_output_finish(&o);
        snprintf(expect, sizeof(expect), "abcd\n[output truncated at %d bytes]", k);
        assert_string_equal(o.buf.data, expect);
        chat_cmd_output_free(&o);
    }
    chat_cmd_output_init(&o, 7);
    chat_cmd_output_add(&o,
                        "abcd\xe2\x82\xac"
                        "z",
                        8);
    chat_cmd_output_finish(&o);
    assert_string_equal(o.buf.data, "abcd\xe2\x82\xac\n[output truncated at 7 bytes]");
    chat_cmd_output_free(&o);
    /* a 4-byte character cut after 1, 2 and 3 bytes */
    for (k = 1; k <= 3; k++) {
        chat_cmd_output_init(&o, (uint64_t)(1 + k));
        chat_cmd_output_add(&o, "x\xf0\x9f\x98\x80yy", 7);
        chat_cmd_output_finish(&o);
        snprintf(expect, sizeof(expect), "x\n[output truncated at %d bytes]", 1 + k);
        assert_string_equal(o.buf.data, expect);
        chat_cmd_output_free(&o);
    }
    /* invalid bytes are kept as they are (the JSON writer replaces them) */
    chat_cmd_output_init(&o, 4);
    chat_cmd_output_add(&o,
                        "\xff\xfe\x80"
                        "abc",
                        6);
    chat_cmd_output_finish(&o);
    assert_memory_equal(o.buf.data,
                        "\xff\xfe\x80"
                        "a\n[output",
                        10);
    chat_cmd_output_free(&o);
}

static void test_output_flood(void **state)
{
    chat_cmd_output_t o;
    char *chunk = malloc(4096);
    size_t i;
    (void)state;

    memset(chunk, 'y', 4096);
    chat_cmd_output_init(&o, 65536);
    for (i = 0; i < (10u << 20) / 4096; i++) {
        chat_cmd_output_add(&o, chunk, 4096);
    }
    chat_cmd_output_finish(&o);
    assert_int_equal(o.seen, 10u << 20);
    assert_int_equal(o.buf.len, 65536 + strlen("\n[output truncated at 65536 bytes]"));
    assert_string_equal(o.buf.data + 65536, "\n[output truncated at 65536 bytes]");
    assert_true(o.buf.cap < 2 * 65536 + 4096); /* memory stays bounded */
    chat_cmd_output_free(&o);
    free(chunk);
}

/* ---- history text ----------------------------------------------------------- */

static void test_format(void **state)
{
    chat_buf_t b;
    chat_cmd_result_t r;
    const char *args[] = {"-l", "a b"};
    (void)state;

    chat_buf_init(&b);
    assert_int_equal(chat_cmd_format_request(&b, "ls", args, 2), CHAT_OK);
    assert_string_equal(b.data, "!ls -l a b");
    assert_int_equal(chat_cmd_format_request(&b, "date", NULL, 0), CHAT_OK);
    assert_string_equal(b.data, "!date");

    memset(&r, 0, sizeof(r));
    r.duration_ms = 12;
    assert_int_equal(chat_cmd_format_result(&b, "a\nb\n", 4, &r), CHAT_OK);
    assert_string_equal(b.data, "```\na\nb\n```\nexit code 0, 12 ms");
    r.exit_code = 2;
    assert_int_equal(chat_cmd_format_result(&b, "no newline", 10, &r), CHAT_OK);
    assert_string_equal(b.data, "```\nno newline\n```\nexit code 2, 12 ms");
    assert_int_equal(chat_cmd_format_result(&b, "", 0, &r), CHAT_OK);
    assert_string_equal(b.data, "(no output)\nexit code 2, 12 ms");
    /* a fence in the output cannot close ours */
    assert_int_equal(chat_cmd_format_result(&b, "x\n```\n````y", 11, &r), CHAT_OK);
    assert_string_equal(b.data, "`````\nx\n```\n````y\n`````\nexit code 2, 12 ms");
    r.exit_code = -1;
    r.signal = 9;
    r.timed_out = 1;
    r.timeout_ms = 1000;
    r.truncated = 1;
    r.duration_ms = 1003;
    assert_int_equal(chat_cmd_format_result(&b, "x", 1, &r), CHAT_OK);
    assert_string_equal(b.data,
                        "```\nx\n```\nkilled by signal 9, timed out after 1000 ms, "
                        "output truncated, 1003 ms");
    r.timed_out = 0;
    r.truncated = 0;
    r.stopped = 1;
    assert_int_equal(chat_cmd_format_result(&b, "x", 1, &r), CHAT_OK);
    assert_string_equal(b.data, "```\nx\n```\nkilled by signal 9, stopped by the user, "
                                "1003 ms");
    chat_buf_free(&b);
}

/* Automatic titles from a first command line, made like conversations.js autoTitle. */
static void test_title(void **state)
{
    char t[129];
    char longl[400];
    size_t n;
    int i;

    (void)state;
    assert_int_equal(chat_cmd_title(t, sizeof(t), "!date", 5), 5);
    assert_string_equal(t, "!date");
    n = chat_cmd_title(t, sizeof(t), "  !ls \t -l\n  a  ", 16);
    assert_string_equal(t, "!ls -l a");
    assert_int_equal(n, 8);
    assert_int_equal(chat_cmd_title(t, sizeof(t), " \t ", 3), 0);
    assert_string_equal(t, "");
    /* 60 characters: kept whole */
    memset(longl, 'a', 60);
    longl[0] = '!';
    assert_int_equal(chat_cmd_title(t, sizeof(t), longl, 60), 60);
    /* longer: cut at 57 at a word boundary, then an ellipsis */
    strcpy(longl, "!show ");
    for (i = 0; i < 10; i++) {
        strcat(longl, "word12345 ");
    }
    n = chat_cmd_title(t, sizeof(t), longl, strlen(longl));
    assert_string_equal(t, "!show word12345 word12345 word12345 word12345 word12345\xe2\x80\xa6");
    assert_int_equal(n, strlen(t));
    /* one long word: cut at 57 characters */
    memset(longl, 'x', 100);
    n = chat_cmd_title(t, sizeof(t), longl, 100);
    assert_int_equal(n, 57 + 3);
    /* multibyte characters: never cut inside one, never over the buffer */
    longl[0] = '!';
    for (i = 0; i < 90; i++) {
        memcpy(longl + 1 + 4 * i, "\xf0\x9f\x98\x80", 4);
    }
    n = chat_cmd_title(t, sizeof(t), longl, 1 + 4 * 90);
    assert_true(n < sizeof(t));
    assert_true(chat_utf8_valid((const uint8_t *)t, n));
    assert_int_equal(memcmp(t + n - 3, "\xe2\x80\xa6", 3), 0);
    /* invalid bytes are left out */
    assert_int_equal(chat_cmd_title(t, sizeof(t), "!a\xff" "b", 4), 3);
    assert_string_equal(t, "!ab");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_defaults),
        cmocka_unit_test(test_spec_full),
        cmocka_unit_test(test_spec_errors),
        cmocka_unit_test(test_split_words),
        cmocka_unit_test(test_split_refusals),
        cmocka_unit_test(test_split_every_prefix),
        cmocka_unit_test(test_arg_injection_is_literal),
        cmocka_unit_test(test_arg_controls),
        cmocka_unit_test(test_arg_length),
        cmocka_unit_test(test_arg_dashes),
        cmocka_unit_test(test_spec_options),
        cmocka_unit_test(test_option_risky),
        cmocka_unit_test(test_arg_options),
        cmocka_unit_test(test_arg_paths),
        cmocka_unit_test(test_arg_counts),
        cmocka_unit_test(test_path_lexical),
        cmocka_unit_test(test_path_helpers),
        cmocka_unit_test(test_build_argv),
        cmocka_unit_test(test_output_cap),
        cmocka_unit_test(test_output_chunking),
        cmocka_unit_test(test_output_utf8_cut),
        cmocka_unit_test(test_output_flood),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_title),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
