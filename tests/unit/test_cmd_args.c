/* Unit tests: user argument checks (chat_cmd_check_arg, chat_cmd_check_args):
 * injection strings, control characters, Unicode look-alikes, lengths,
 * dashes and listed options, path confinement, argument counts. */
#include "test_cmd_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arg_injection_is_literal),
        cmocka_unit_test(test_arg_controls),
        cmocka_unit_test(test_arg_length),
        cmocka_unit_test(test_arg_dashes),
        cmocka_unit_test(test_arg_options),
        cmocka_unit_test(test_arg_paths),
        cmocka_unit_test(test_arg_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
