/* Unit tests: "!" line splitting (chat_cmd_split): words taken literally
 * with no shell, refusals, and every prefix of a hostile line. */
#include "test_cmd_util.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_words),
        cmocka_unit_test(test_split_refusals),
        cmocka_unit_test(test_split_every_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
