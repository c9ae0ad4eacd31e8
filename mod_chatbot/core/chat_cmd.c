/* chat_cmd.c - the portable half of command execution (chat/cmd.h):
 * declarations, "!" lines, argument checks, lexical path confinement,
 * output capping and the text stored in history.
 *
 * Everything here works on bytes and is deliberately strict: what it does
 * not understand it refuses. It never touches the filesystem and never runs
 * anything; the glue does both, with realpath() and posix_spawn (no shell).
 */
#include <stdio.h>
#include <string.h>

#include "chat/cmd.h"
#include "chat/confparse.h"
#include "chat/utf8.h"

static void seterr(char *err, size_t cap, const char *fmt, const char *a, const char *b)
{
    if (err && cap) {
        snprintf(err, cap, fmt, a ? a : "", b ? b : "");
    }
}

const char *chat_cmd_mode_name(chat_cmd_mode_t m)
{
    switch (m) {
    case CHAT_CMD_ARGS_NONE:
        return "none";
    case CHAT_CMD_ARGS_ONE:
        return "one";
    case CHAT_CMD_ARGS_MANY:
        return "many";
    }
    return "?";
}

static int has_ctl(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f) {
            return 1;
        }
    }
    return 0;
}

/* ---- declaration ------------------------------------------------------ */

enum {
    O_ARGS,
    O_TIMEOUT,
    O_MAXOUTPUT,
    O_CWD,
    O_PATHS,
    O_DASHES,
    O_MAXARGS,
    O_MAXARGLEN,
    O_OPTIONS,
    O_COUNT
};

static const char *const opt_names[O_COUNT] = {"args",    "timeout",   "maxoutput",
                                               "cwd",     "paths",     "dashes",
                                               "maxargs", "maxarglen", "options"};

#define OPT_LIST                                                                         \
    "args=none|one|many, timeout=<duration>, maxoutput=<size>, cwd=/dir, "               \
    "paths=on|off, options=-a,-b,--name,-n=, maxargs=N, maxarglen=N"

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Parses the value of options= into spec->options. Returns NULL or why. */
static const char *parse_options(chat_cmd_spec_t *spec, const char *val)
{
    const char *p = val;

    if (!*val) {
        return "expected a comma-separated list such as options=-l,-a,--color=,-n=";
    }
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p), k, j;
        int takes = 0;

        if (len > 1 && p[len - 1] == '=') {
            takes = 1;
            len--;
        }
        if (len == 2 && p[0] == '-' && p[1] == '-') {
            if (takes) {
                return "'--' (end of options) takes no value";
            }
        }
        else if (len == 2 && p[0] == '-' && is_alnum((unsigned char)p[1])) {
            /* -x */
        }
        else if (len > 2 && p[0] == '-' && p[1] == '-' && is_alnum((unsigned char)p[2])) {
            for (k = 3; k < len; k++) {
                if (!is_alnum((unsigned char)p[k]) && p[k] != '-' && p[k] != '_') {
                    return "a long option is --name: letters, digits, '-' and '_'";
                }
            }
        }
        else {
            return "each entry is -x (one letter or digit), --name or --, with a "
                   "trailing '=' for an option that takes a value (-n=, --lines=)";
        }
        for (j = 0; j < spec->noptions; j++) {
            if (spec->options[j].len == len && !memcmp(spec->options[j].name, p, len)) {
                return "an option is listed twice";
            }
        }
        if (spec->noptions == CHAT_CMD_MAX_OPTIONS) {
            return "too many options (at most 64)";
        }
        spec->options[spec->noptions].name = p;
        spec->options[spec->noptions].len = len;
        spec->options[spec->noptions].takes_value = takes;
        spec->noptions++;
        if (!e) {
            break;
        }
        p = e + 1;
        if (!*p) {
            return "an empty entry (a comma at the end)";
        }
    }
    return NULL;
}

int chat_cmd_option_risky(const chat_cmd_opt_t *opt)
{
    /* -R: recursion that follows links (grep -R) or walks into linked
     * directories with -L (ls, du, cp); -L: dereference (ls, du, find);
     * and the GNU long names */
    static const char *const risky[] = {"-R",
                                        "-L",
                                        "--recursive",
                                        "--dereference",
                                        "--dereference-recursive",
                                        "--dereference-command-line",
                                        "--dereference-command-line-symlink-to-dir"};
    size_t i;

    if (!opt || !opt->name) {
        return 0;
    }
    for (i = 0; i < sizeof(risky) / sizeof(risky[0]); i++) {
        if (strlen(risky[i]) == opt->len && !memcmp(risky[i], opt->name, opt->len)) {
            return 1;
        }
    }
    return 0;
}

chat_status_t chat_cmd_spec_parse(chat_cmd_spec_t *spec, int argc,
                                  const char *const *argv, char *err, size_t errcap)
{
    int seen[O_COUNT] = {0};
    int paths = 1, dashes = 0, i;
    int64_t maxargs = CHAT_CMD_DEF_MAX_ARGS, maxarglen = CHAT_CMD_DEF_MAX_ARG_LEN;
    const char *why;
    char buf[160];

    if (!spec || argc < 0 || (argc > 0 && !argv)) {
        seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    memset(spec, 0, sizeof(*spec));
    spec->mode = CHAT_CMD_ARGS_NONE;
    spec->timeout_ms = CHAT_CMD_DEF_TIMEOUT_MS;
    spec->max_output = CHAT_CMD_DEF_MAX_OUTPUT;
    if (argc < 2) {
        seterr(err, errcap,
               "expected a name and the absolute path of a program, e.g. "
               "ChatbotCommand files /bin/ls -l args=many cwd=/srv/files%s%s",
               NULL, NULL);
        return CHAT_EINVAL;
    }
    if ((why = chat_parse_name(argv[0])) != NULL) {
        seterr(err, errcap, "command name '%s': %s", argv[0], why);
        return CHAT_EINVAL;
    }
    spec->name = argv[0];
    if (argv[1][0] != '/' || has_ctl(argv[1]) || strlen(argv[1]) >= CHAT_CMD_PATH_MAX) {
        seterr(err, errcap,
               "program '%s': expected an absolute path such as /usr/bin/ls (no "
               "search in PATH, no shell)%s",
               argv[1], NULL);
        return CHAT_EINVAL;
    }
    spec->path = argv[1];

    for (i = 2; i < argc; i++) {
        char key[32];
        const char *val;
        int o;

        if (!chat_parse_kv(argv[i], key, sizeof(key), &val)) {
            if (spec->nfixed >= CHAT_CMD_MAX_FIXED) {
                snprintf(buf, sizeof(buf), "%d", CHAT_CMD_MAX_FIXED);
                seterr(err, errcap, "too many fixed arguments (at most %s)%s", buf, NULL);
                return CHAT_EINVAL;
            }
            spec->fixed[spec->nfixed++] = argv[i];
            continue;
        }
        for (o = 0; o < O_COUNT && strcmp(key, opt_names[o]); o++) {
        }
        if (o == O_COUNT) {
            seterr(err, errcap,
                   "unknown option '%s='; allowed: " OPT_LIST
                   " (a fixed argument that looks like key=value needs a wrapper "
                   "script)%s",
                   key, NULL);
            return CHAT_EINVAL;
        }
        if (seen[o]++) {
            seterr(err, errcap, "option '%s=' is given twice%s", key, NULL);
            return CHAT_EINVAL;
        }
        why = NULL;
        switch (o) {
        case O_ARGS:
            if (!strcmp(val, "none")) {
                spec->mode = CHAT_CMD_ARGS_NONE;
            }
            else if (!strcmp(val, "one")) {
                spec->mode = CHAT_CMD_ARGS_ONE;
            }
            else if (!strcmp(val, "many")) {
                spec->mode = CHAT_CMD_ARGS_MANY;
            }
            else {
                why = "expected args=none, args=one or args=many";
            }
            break;
        case O_TIMEOUT:
            why = chat_parse_duration(val, CHAT_CMD_MIN_TIMEOUT_MS,
                                      CHAT_CMD_MAX_TIMEOUT_MS, &spec->timeout_ms);
            break;
        case O_MAXOUTPUT:
            why = chat_parse_size(val, CHAT_CMD_MIN_MAX_OUTPUT, CHAT_CMD_MAX_MAX_OUTPUT,
                                  &spec->max_output);
            break;
        case O_CWD:
            if (val[0] != '/' || has_ctl(val) || strlen(val) >= CHAT_CMD_PATH_MAX) {
                why = "expected an absolute directory such as cwd=/srv/files";
            }
            spec->cwd = val;
            break;
        case O_PATHS:
            why = chat_parse_bool(val, &paths);
            break;
        case O_DASHES:
            why = chat_parse_bool(val, &dashes);
            break;
        case O_MAXARGS:
            why = chat_parse_int(val, 1, CHAT_CMD_MAX_USER_ARGS, &maxargs);
            break;
        case O_MAXARGLEN:
            why = chat_parse_int(val, 1, CHAT_CMD_MAX_ARG_LEN, &maxarglen);
            break;
        case O_OPTIONS:
            why = parse_options(spec, val);
            spec->options_text = val;
            break;
        }
        if (why) {
            seterr(err, errcap, "%s: %s", argv[i], why);
            return CHAT_EINVAL;
        }
    }

    if (spec->mode == CHAT_CMD_ARGS_NONE) {
        for (i = O_PATHS; i <= O_OPTIONS; i++) {
            if (seen[i]) {
                seterr(err, errcap,
                       "%s= only applies to user arguments, and args=none (the default) "
                       "allows none; add args=one or args=many%s",
                       opt_names[i], NULL);
                return CHAT_EINVAL;
            }
        }
    }
    if (seen[O_MAXARGS] && spec->mode != CHAT_CMD_ARGS_MANY) {
        seterr(err, errcap, "maxargs= only applies to args=many%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    if (paths && spec->mode != CHAT_CMD_ARGS_NONE && !spec->cwd) {
        seterr(err, errcap,
               "args=%s with paths=on (the default) needs cwd=/dir: user arguments are "
               "file names confined to that directory; set cwd=, or paths=off if the "
               "arguments are not file names%s",
               chat_cmd_mode_name(spec->mode), NULL);
        return CHAT_EINVAL;
    }
    if (seen[O_DASHES] && dashes && !spec->noptions) {
        seterr(err, errcap,
               "dashes=on needs options=: list the options users may pass, e.g. "
               "options=-l,-a,-h (any option was dangerous: -lRL or --dereference read "
               "through symbolic links out of cwd=)%s%s",
               NULL, NULL);
        return CHAT_EINVAL;
    }
    if (seen[O_DASHES] && !dashes && spec->noptions) {
        seterr(err, errcap,
               "dashes=off contradicts options=: options= alone allows the listed "
               "options%s%s",
               NULL, NULL);
        return CHAT_EINVAL;
    }
    dashes = spec->noptions > 0;
    spec->flags = (paths ? CHAT_CMD_F_PATHS : 0) | (dashes ? CHAT_CMD_F_DASHES : 0);
    if (spec->mode == CHAT_CMD_ARGS_NONE) {
        spec->flags = 0;
        spec->max_args = 0;
    }
    else {
        spec->max_args = spec->mode == CHAT_CMD_ARGS_ONE ? 1u : (uint32_t)maxargs;
    }
    spec->max_arg_len = (uint32_t)maxarglen;
    return CHAT_OK;
}

/* ---- "!" lines --------------------------------------------------------- */

static int is_ascii_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

chat_status_t chat_cmd_split(const char *line, size_t len, char *buf, size_t bufcap,
                             const char **words, size_t maxwords, size_t *nwords,
                             char *err, size_t errcap)
{
    size_t b = 0, e = len, i, n = 0;
    char *p, *end;

    if (nwords) {
        *nwords = 0;
    }
    if (!line || !buf || !words || !nwords) {
        seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    while (b < e && is_ascii_space((unsigned char)line[b])) {
        b++;
    }
    while (e > b && is_ascii_space((unsigned char)line[e - 1])) {
        e--;
    }
    if (b == e || line[b] != '!') {
        seterr(err, errcap, "a command line starts with '!'%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    for (i = b; i < e; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            seterr(err, errcap,
                   "the command line contains a control character (a newline, NUL, "
                   "escape...): one line only, and no shell syntax is interpreted%s%s",
                   NULL, NULL);
            return CHAT_EDENIED;
        }
    }
    if (bufcap < e - b + 1) {
        seterr(err, errcap, "the command line is too long%s%s", NULL, NULL);
        return CHAT_ETOOBIG;
    }
    memcpy(buf, line + b + 1, e - b - 1);
    buf[e - b - 1] = '\0';
    p = buf;
    end = buf + (e - b - 1);
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t')) {
            *p++ = '\0';
        }
        if (p == end) {
            break;
        }
        if (n == maxwords) {
            char m[24];
            snprintf(m, sizeof(m), "%zu", maxwords ? maxwords - 1 : 0);
            seterr(err, errcap, "too many arguments (at most %s)%s", m, NULL);
            return CHAT_ETOOBIG;
        }
        words[n++] = p;
        while (p < end && *p != ' ' && *p != '\t') {
            p++;
        }
    }
    if (n == 0) {
        seterr(err, errcap, "nothing after '!': type !<command> [arguments]%s%s", NULL,
               NULL);
        return CHAT_EINVAL;
    }
    *nwords = n;
    return CHAT_OK;
}

/* ---- arguments --------------------------------------------------------- */

/* Decodes one UTF-8 code point; returns its length or 0 if invalid
 * (truncated, overlong, surrogate, > U+10FFFF, stray continuation). */
static size_t utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0], min;
    size_t len, i;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        c &= 0x1f;
        min = 0x80;
    }
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        c &= 0x0f;
        min = 0x800;
    }
    else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        c &= 0x07;
        min = 0x10000;
    }
    else {
        return 0;
    }
    if (n < len) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) {
        return 0;
    }
    *cp = c;
    return len;
}

/* Characters that are invisible or reorder text: they could make an
 * argument read differently in a log or in the UI than it is. */
static int is_format_char(uint32_t c)
{
    return c == 0x00ad || c == 0x061c || c == 0x180e || (c >= 0x200b && c <= 0x200f) ||
           (c >= 0x202a && c <= 0x202e) || (c >= 0x2060 && c <= 0x2064) ||
           (c >= 0x2066 && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb) ||
           (c >= 0xe0000 && c <= 0xe007f);
}

/* Dash and minus look-alikes (a leading one reads as an option). */
static int is_dash_like(uint32_t c)
{
    return c == '-' || (c >= 0x2010 && c <= 0x2015) || c == 0x2043 || c == 0x2212 ||
           c == 0xfe58 || c == 0xfe63 || c == 0xff0d;
}

/* Characters that look like, or normalise (NFKC) to, '/', '\\' or '.':
 * fullwidth ASCII (U+FF01..FF5E fold to ASCII), small and vertical form
 * variants, dot leaders, and the slash-like symbols. */
static int is_path_lookalike(uint32_t c)
{
    return (c >= 0xff01 && c <= 0xff5e) || (c >= 0xfe50 && c <= 0xfe6f) ||
           (c >= 0xfe10 && c <= 0xfe19) || (c >= 0x2024 && c <= 0x2026) || c == 0x2044 ||
           c == 0x2215 || c == 0x2216 || c == 0x2571 || c == 0x2572 || c == 0x29f5 ||
           c == 0x29f8 || c == 0x29f9 || c == 0x27cb || c == 0x27cd || c == 0x0337 ||
           c == 0x0338 || c == 0x1735 || c == 0x3033 || c == 0xff61 || c == 0x2e31 ||
           c == 0x00b7 || c == 0x2027;
}

/* How an argument is read: AUTO (an option if it starts with '-', else a
 * file name), VALUE (the value of the option before it), OPERAND (a file
 * name even if it starts with '-': after "--"). */
typedef enum { ROLE_AUTO, ROLE_VALUE, ROLE_OPERAND } role_t;

/* What an option argument asks of the next one. */
typedef enum { OPT_DONE, OPT_WANTS_VALUE, OPT_END } optres_t;

static chat_status_t deny_option(const chat_cmd_spec_t *spec, char *err, size_t errcap)
{
    seterr(err, errcap, "an option is not one this command allows (allowed: %s)",
           spec->options_text && *spec->options_text ? spec->options_text : "none", NULL);
    return CHAT_EDENIED;
}

static const chat_cmd_opt_t *find_option(const chat_cmd_spec_t *spec, const char *name,
                                         size_t len)
{
    size_t i;

    for (i = 0; i < spec->noptions; i++) {
        if (spec->options[i].len == len && !memcmp(spec->options[i].name, name, len)) {
            return &spec->options[i];
        }
    }
    return NULL;
}

/* An option's value ("-n5", "--lines=5", or the argument after "-n"): with
 * paths=on it may not carry a path past the confinement
 * ("--output=/etc/x", "-o/etc/x", "-d.."). */
static chat_status_t check_value(const chat_cmd_spec_t *spec, const char *v, size_t len,
                                 char *err, size_t errcap)
{
    size_t k;

    if (!(spec->flags & CHAT_CMD_F_PATHS)) {
        return CHAT_OK;
    }
    for (k = 0; k < len; k++) {
        if (v[k] == '/' || (v[k] == '.' && k + 1 < len && v[k + 1] == '.')) {
            seterr(err, errcap,
                   "an option's value may not carry a path ('/' or '..'); give the file "
                   "as a separate argument%s%s",
                   NULL, NULL);
            return CHAT_EDENIED;
        }
    }
    return CHAT_OK;
}

/* s[0..len) starts with '-' and is longer than that: an option, or a
 * group of short options, checked against spec->options. */
static chat_status_t check_option(const chat_cmd_spec_t *spec, const char *s, size_t len,
                                  optres_t *res, char *err, size_t errcap)
{
    const chat_cmd_opt_t *o;
    size_t k;

    *res = OPT_DONE;
    if (s[1] == '-') {
        const char *eq = memchr(s, '=', len);
        size_t nlen = eq ? (size_t)(eq - s) : len;
        if (len == 2) {
            if (!find_option(spec, s, 2)) {
                return deny_option(spec, err, errcap);
            }
            *res = OPT_END;
            return CHAT_OK;
        }
        o = find_option(spec, s, nlen);
        if (!o || (eq && !o->takes_value)) {
            return deny_option(spec, err, errcap);
        }
        if (eq) {
            return check_value(spec, eq + 1, len - nlen - 1, err, errcap);
        }
        *res = o->takes_value ? OPT_WANTS_VALUE : OPT_DONE;
        return CHAT_OK;
    }
    for (k = 1; k < len; k++) {
        char name[2];
        name[0] = '-';
        name[1] = s[k];
        if (!is_alnum((unsigned char)s[k]) || !(o = find_option(spec, name, 2))) {
            return deny_option(spec, err, errcap);
        }
        if (o->takes_value) {
            if (k + 1 < len) {
                return check_value(spec, s + k + 1, len - k - 1, err, errcap);
            }
            *res = OPT_WANTS_VALUE;
            return CHAT_OK;
        }
    }
    return CHAT_OK;
}

static chat_status_t check_one(const chat_cmd_spec_t *spec, const char *arg, size_t len,
                               role_t role, optres_t *res, char *err, size_t errcap)
{
    const unsigned char *s = (const unsigned char *)arg;
    size_t i = 0;
    char num[24];
    int first = 1, option = 0;

    *res = OPT_DONE;
    if (!spec || !arg) {
        seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (len == 0) {
        seterr(err, errcap, "an argument is empty%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (len > spec->max_arg_len) {
        snprintf(num, sizeof(num), "%u", (unsigned)spec->max_arg_len);
        seterr(err, errcap, "an argument is longer than %s bytes (maxarglen=)%s", num,
               NULL);
        return CHAT_EDENIED;
    }
    while (i < len) {
        uint32_t c;
        size_t n = utf8_next(s + i, len - i, &c);
        if (n == 0) {
            seterr(err, errcap, "an argument is not valid UTF-8%s%s", NULL, NULL);
            return CHAT_EDENIED;
        }
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x2028 ||
            c == 0x2029) {
            seterr(err, errcap,
                   "an argument contains a control character (newline, NUL, escape...)"
                   "%s%s",
                   NULL, NULL);
            return CHAT_EDENIED;
        }
        if (is_format_char(c)) {
            seterr(err, errcap,
                   "an argument contains an invisible or bidirectional formatting "
                   "character%s%s",
                   NULL, NULL);
            return CHAT_EDENIED;
        }
        if (first && is_dash_like(c) && role != ROLE_VALUE) {
            if (!(spec->flags & CHAT_CMD_F_DASHES)) {
                seterr(err, errcap,
                       "an argument starts with '-' (or a dash look-alike): options are "
                       "not allowed for this command (no options=)%s%s",
                       NULL, NULL);
                return CHAT_EDENIED;
            }
            /* ASCII '-' starts an option (a lone "-" is a file name); a
             * Unicode dash is no option to any program: a file name */
            option = c == '-' && len > 1 && role == ROLE_AUTO;
        }
        if ((spec->flags & CHAT_CMD_F_PATHS) && is_path_lookalike(c)) {
            seterr(err, errcap,
                   "an argument contains a character that looks like path syntax (a "
                   "Unicode slash, backslash or dot look-alike)%s%s",
                   NULL, NULL);
            return CHAT_EDENIED;
        }
        first = 0;
        i += n;
    }
    if (option) {
        return check_option(spec, arg, len, res, err, errcap);
    }
    if (role == ROLE_VALUE) {
        return check_value(spec, arg, len, err, errcap);
    }
    if (!(spec->flags & CHAT_CMD_F_PATHS)) {
        return CHAT_OK;
    }
    if (len > CHAT_CMD_MAX_ARG_LEN) {
        seterr(err, errcap, "a path is too long%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    {
        char joined[CHAT_CMD_PATH_MAX];
        char tmp[CHAT_CMD_MAX_ARG_LEN + 1];
        memcpy(tmp, arg, len);
        tmp[len] = '\0';
        return chat_cmd_path_lexical(spec->cwd ? spec->cwd : "/", tmp, joined,
                                     sizeof(joined), err, errcap) == CHAT_OK
                   ? CHAT_OK
                   : CHAT_EDENIED;
    }
}

chat_status_t chat_cmd_check_arg(const chat_cmd_spec_t *spec, const char *arg, size_t len,
                                 char *err, size_t errcap)
{
    optres_t res;

    return check_one(spec, arg, len, ROLE_AUTO, &res, err, errcap);
}

chat_status_t chat_cmd_check_args(const chat_cmd_spec_t *spec, const char *const *args,
                                  size_t nargs, char *err, size_t errcap)
{
    char num[24], sub[256];
    role_t role = ROLE_AUTO;
    int operands = 0;
    size_t i;

    if (!spec || (nargs && !args)) {
        seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    switch (spec->mode) {
    case CHAT_CMD_ARGS_NONE:
        if (nargs) {
            seterr(err, errcap, "'%s' takes no arguments%s", spec->name, NULL);
            return CHAT_EDENIED;
        }
        return CHAT_OK;
    case CHAT_CMD_ARGS_ONE:
        if (nargs != 1) {
            seterr(err, errcap, "'%s' takes exactly one argument%s", spec->name, NULL);
            return CHAT_EDENIED;
        }
        break;
    case CHAT_CMD_ARGS_MANY:
        if (nargs > spec->max_args) {
            snprintf(num, sizeof(num), "%u", (unsigned)spec->max_args);
            seterr(err, errcap, "'%s' takes at most %s arguments", spec->name, num);
            return CHAT_EDENIED;
        }
        break;
    }
    for (i = 0; i < nargs; i++) {
        optres_t res = OPT_DONE;
        if (!args[i] || check_one(spec, args[i], strlen(args[i]), role, &res, sub,
                                  sizeof(sub)) != CHAT_OK) {
            snprintf(num, sizeof(num), "%zu", i + 1);
            seterr(err, errcap, "argument %s refused: %s", num,
                   args[i] ? sub : "missing");
            return CHAT_EDENIED;
        }
        if (res == OPT_END) {
            operands = 1;
        }
        role = res == OPT_WANTS_VALUE ? ROLE_VALUE : operands ? ROLE_OPERAND : ROLE_AUTO;
    }
    if (role == ROLE_VALUE) {
        seterr(err, errcap, "the last option needs a value%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    return CHAT_OK;
}

/* ---- paths ------------------------------------------------------------- */

/* Next component of a '/'-separated path: sets *c and *n, returns the
 * position after it. Empty components ("//") are skipped. */
static const char *next_comp(const char *p, const char **c, size_t *n)
{
    while (*p == '/') {
        p++;
    }
    *c = p;
    while (*p && *p != '/') {
        p++;
    }
    *n = (size_t)(p - *c);
    return p;
}

static int is_dot(const char *c, size_t n)
{
    return n == 1 && c[0] == '.';
}

static int is_dotdot(const char *c, size_t n)
{
    return n == 2 && c[0] == '.' && c[1] == '.';
}

int chat_cmd_path_has_dotdot(const char *p)
{
    const char *c;
    size_t n;

    while (p && *p) {
        p = next_comp(p, &c, &n);
        if (is_dotdot(c, n)) {
            return 1;
        }
    }
    return 0;
}

int chat_cmd_path_within(const char *dir, const char *path)
{
    size_t n;

    if (!dir || !path || dir[0] != '/' || path[0] != '/') {
        return 0;
    }
    n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') {
        n--;
    }
    if (n == 1) {
        return 1;
    }
    return !strncmp(dir, path, n) && (path[n] == '\0' || path[n] == '/');
}

chat_status_t chat_cmd_path_lexical(const char *base, const char *arg, char *out,
                                    size_t outcap, char *err, size_t errcap)
{
    const char *p, *c;
    size_t n, blen, alen;
    long depth = 0;

    if (!base || base[0] != '/' || !arg || !out) {
        seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (!*arg) {
        seterr(err, errcap, "a file name is empty%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    p = arg;
    if (arg[0] == '/') {
        /* Absolute: its leading components must be exactly base's. */
        const char *b = base, *bc;
        size_t bn;
        for (;;) {
            b = next_comp(b, &bc, &bn);
            if (bn == 0) {
                break;
            }
            do {
                p = next_comp(p, &c, &n);
            } while (is_dot(c, n));
            if (n != bn || memcmp(c, bc, n)) {
                seterr(err, errcap,
                       "an absolute path outside the command's directory is not "
                       "allowed%s%s",
                       NULL, NULL);
                return CHAT_EDENIED;
            }
        }
    }
    while (*p) {
        p = next_comp(p, &c, &n);
        if (n == 0 || is_dot(c, n)) {
            continue;
        }
        if (is_dotdot(c, n)) {
            if (depth == 0) {
                seterr(err, errcap, "'..' leads outside the command's directory%s%s",
                       NULL, NULL);
                return CHAT_EDENIED;
            }
            depth--;
        }
        else {
            depth++;
        }
    }
    blen = strlen(base);
    while (blen > 1 && base[blen - 1] == '/') {
        blen--;
    }
    alen = strlen(arg);
    if (arg[0] == '/') {
        if (alen + 1 > outcap) {
            goto toolong;
        }
        memcpy(out, arg, alen + 1);
        return CHAT_OK;
    }
    if (blen == 1) {
        blen = 0; /* base "/": "/" + arg */
    }
    if (blen + 1 + alen + 1 > outcap) {
        goto toolong;
    }
    memcpy(out, base, blen);
    out[blen] = '/';
    memcpy(out + blen + 1, arg, alen + 1);
    return CHAT_OK;
toolong:
    seterr(err, errcap, "a path is too long%s%s", NULL, NULL);
    return CHAT_ETOOBIG;
}

int chat_cmd_build_argv(const chat_cmd_spec_t *spec, const char *const *args,
                        size_t nargs, const char **argv, size_t cap)
{
    size_t i, n = 0;

    if (!spec || !argv || (nargs && !args)) {
        return CHAT_EINVAL;
    }
    if (1 + spec->nfixed + nargs + 1 > cap) {
        return CHAT_ETOOBIG;
    }
    argv[n++] = spec->path;
    for (i = 0; i < spec->nfixed; i++) {
        argv[n++] = spec->fixed[i];
    }
    for (i = 0; i < nargs; i++) {
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    return (int)n;
}

/* ---- output ------------------------------------------------------------ */

void chat_cmd_output_init(chat_cmd_output_t *o, uint64_t max)
{
    memset(o, 0, sizeof(*o));
    chat_buf_init(&o->buf);
    o->max = max;
}

void chat_cmd_output_free(chat_cmd_output_t *o)
{
    chat_buf_free(&o->buf);
}

int chat_cmd_output_add(chat_cmd_output_t *o, const void *data, size_t n)
{
    size_t room;

    o->seen += n;
    room = o->buf.len < o->max ? (size_t)(o->max - o->buf.len) : 0;
    if (n > room) {
        if (room && chat_buf_append(&o->buf, data, room) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        o->truncated = 1;
        return 1;
    }
    if (n && chat_buf_append(&o->buf, data, n) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return o->truncated;
}

/* Bytes to drop at the end of p[0..n) so it does not end inside a UTF-8
 * sequence (only a lead byte followed by too few continuation bytes). */
static size_t incomplete_tail(const unsigned char *p, size_t n)
{
    size_t k;

    for (k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = p[n - k];
        size_t need;
        if ((c & 0xc0) == 0x80) {
            continue;
        }
        need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

chat_status_t chat_cmd_output_finish(chat_cmd_output_t *o)
{
    if (o->finished) {
        return CHAT_OK;
    }
    o->finished = 1;
    if (!o->truncated) {
        return CHAT_OK;
    }
    o->buf.len -= incomplete_tail((const unsigned char *)o->buf.data, o->buf.len);
    if (o->buf.data) {
        o->buf.data[o->buf.len] = '\0';
    }
    return chat_buf_printf(&o->buf, CHAT_CMD_TRUNC_FMT, (unsigned long long)o->max);
}

/* ---- history text ------------------------------------------------------ */

#define TITLE_LONG 60 /* longer lines are cut (app.js autoTitle) */
#define TITLE_CUT 57

size_t chat_cmd_title(char *out, size_t outsz, const char *text, size_t len)
{
    /* the first TITLE_LONG + 1 characters, white space collapsed */
    char buf[(TITLE_LONG + 1) * 4];
    size_t off[TITLE_LONG + 2];
    size_t i = 0, n = 0, cps = 0, cut, k, bad;
    int space = 0;

    if (!out || outsz == 0) {
        return 0;
    }
    out[0] = '\0';
    while (i < len && cps <= TITLE_LONG) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            space = cps > 0;
            i++;
            continue;
        }
        k = chat_utf8_seq((const uint8_t *)text + i, len - i, &bad);
        if (k == 0) {
            i += bad ? bad : 1; /* not text: left out */
            continue;
        }
        if (space) {
            off[cps++] = n;
            buf[n++] = ' ';
            space = 0;
            if (cps > TITLE_LONG) {
                break;
            }
        }
        off[cps++] = n;
        memcpy(buf + n, text + i, k);
        n += k;
        i += k;
    }
    off[cps] = n;
    if (cps <= TITLE_LONG && n < outsz) {
        memcpy(out, buf, n);
        out[n] = '\0';
        return n;
    }
    /* too long: TITLE_CUT characters (fewer if they do not fit), the last
     * partial word dropped, then an ellipsis */
    cut = cps < TITLE_CUT ? cps : TITLE_CUT;
    while (cut > 0 && (outsz < 4 || off[cut] > outsz - 4)) {
        cut--;
    }
    n = off[cut];
    for (k = n; k > 0; k--) {
        if (buf[k - 1] == ' ') {
            n = k - 1;
            break;
        }
    }
    if (outsz < 4) {
        return 0;
    }
    memcpy(out, buf, n);
    memcpy(out + n, "\xe2\x80\xa6", 3);
    out[n + 3] = '\0';
    return n + 3;
}

chat_status_t chat_cmd_format_request(chat_buf_t *out, const char *name,
                                      const char *const *args, size_t nargs)
{
    chat_status_t st;
    size_t i;

    chat_buf_reset(out, 64 * 1024);
    st = chat_buf_puts(out, "!");
    if (st == CHAT_OK) {
        st = chat_buf_puts(out, name ? name : "");
    }
    for (i = 0; i < nargs && st == CHAT_OK; i++) {
        st = chat_buf_puts(out, " ");
        if (st == CHAT_OK) {
            st = chat_buf_puts(out, args[i] ? args[i] : "");
        }
    }
    return st;
}

chat_status_t chat_cmd_format_result(chat_buf_t *out, const char *output, size_t len,
                                     const chat_cmd_result_t *res)
{
    size_t i, run = 0, longest = 0, fence;
    chat_status_t st = CHAT_OK;
    char fb[64];

    chat_buf_reset(out, 64 * 1024);
    for (i = 0; i < len; i++) {
        run = output[i] == '`' ? run + 1 : 0;
        if (run > longest) {
            longest = run;
        }
    }
    fence = longest >= 3 ? longest + 1 : 3;
    if (fence >= sizeof(fb)) {
        fence = sizeof(fb) - 1; /* a 63-backtick run is not output anyone needs */
    }
    memset(fb, '`', fence);
    fb[fence] = '\0';
    if (len == 0) {
        st = chat_buf_puts(out, "(no output)\n");
    }
    else {
        st = chat_buf_printf(out, "%s\n", fb);
        if (st == CHAT_OK) {
            st = chat_buf_append(out, output, len);
        }
        if (st == CHAT_OK && output[len - 1] != '\n') {
            st = chat_buf_puts(out, "\n");
        }
        if (st == CHAT_OK) {
            st = chat_buf_printf(out, "%s\n", fb);
        }
    }
    if (st != CHAT_OK) {
        return st;
    }
    if (res->signal > 0) {
        st = chat_buf_printf(out, "killed by signal %d", res->signal);
    }
    else {
        st = chat_buf_printf(out, "exit code %d", res->exit_code);
    }
    if (st == CHAT_OK && res->stopped) {
        st = chat_buf_puts(out, ", stopped by the user");
    }
    if (st == CHAT_OK && res->timed_out) {
        st =
            chat_buf_printf(out, ", timed out after %lld ms", (long long)res->timeout_ms);
    }
    if (st == CHAT_OK && res->truncated) {
        st = chat_buf_puts(out, ", output truncated");
    }
    if (st == CHAT_OK) {
        st = chat_buf_printf(out, ", %lld ms", (long long)res->duration_ms);
    }
    return st;
}
