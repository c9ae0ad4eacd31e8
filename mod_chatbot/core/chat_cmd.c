/* chat_cmd.c - the portable half of command execution (chat/cmd.h):
 * parsing a ChatbotCommand declaration and splitting a "!name args" line.
 * Argument checks and lexical path confinement are in chat_cmd_args.c,
 * output capping and the text stored in history in chat_cmd_output.c.
 *
 * Everything here works on bytes and is deliberately strict: what it does
 * not understand it refuses. It never touches the filesystem and never runs
 * anything; the glue does both, with realpath() and posix_spawn (no shell).
 */
#include <stdio.h>
#include <string.h>

#include "chat/cmd.h"
#include "chat/confparse.h"
#include "chat_cmd_int.h"

void chat_cmd_seterr(char *err, size_t cap, const char *fmt, const char *a, const char *b)
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

int chat_cmd_is_alnum(unsigned char c)
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
        else if (len == 2 && p[0] == '-' && chat_cmd_is_alnum((unsigned char)p[1])) {
            /* -x */
        }
        else if (len > 2 && p[0] == '-' && p[1] == '-' &&
                 chat_cmd_is_alnum((unsigned char)p[2])) {
            for (k = 3; k < len; k++) {
                if (!chat_cmd_is_alnum((unsigned char)p[k]) && p[k] != '-' &&
                    p[k] != '_') {
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
        chat_cmd_seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    memset(spec, 0, sizeof(*spec));
    spec->mode = CHAT_CMD_ARGS_NONE;
    spec->timeout_ms = CHAT_CMD_DEF_TIMEOUT_MS;
    spec->max_output = CHAT_CMD_DEF_MAX_OUTPUT;
    if (argc < 2) {
        chat_cmd_seterr(err, errcap,
                        "expected a name and the absolute path of a program, e.g. "
                        "ChatbotCommand files /bin/ls -l args=many cwd=/srv/files%s%s",
                        NULL, NULL);
        return CHAT_EINVAL;
    }
    if ((why = chat_parse_name(argv[0])) != NULL) {
        chat_cmd_seterr(err, errcap, "command name '%s': %s", argv[0], why);
        return CHAT_EINVAL;
    }
    spec->name = argv[0];
    if (argv[1][0] != '/' || has_ctl(argv[1]) || strlen(argv[1]) >= CHAT_CMD_PATH_MAX) {
        chat_cmd_seterr(err, errcap,
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
                chat_cmd_seterr(err, errcap, "too many fixed arguments (at most %s)%s",
                                buf, NULL);
                return CHAT_EINVAL;
            }
            spec->fixed[spec->nfixed++] = argv[i];
            continue;
        }
        for (o = 0; o < O_COUNT && strcmp(key, opt_names[o]); o++) {
        }
        if (o == O_COUNT) {
            chat_cmd_seterr(
                err, errcap,
                "unknown option '%s='; allowed: " OPT_LIST
                " (a fixed argument that looks like key=value needs a wrapper "
                "script)%s",
                key, NULL);
            return CHAT_EINVAL;
        }
        if (seen[o]++) {
            chat_cmd_seterr(err, errcap, "option '%s=' is given twice%s", key, NULL);
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
            chat_cmd_seterr(err, errcap, "%s: %s", argv[i], why);
            return CHAT_EINVAL;
        }
    }

    if (spec->mode == CHAT_CMD_ARGS_NONE) {
        for (i = O_PATHS; i <= O_OPTIONS; i++) {
            if (seen[i]) {
                chat_cmd_seterr(
                    err, errcap,
                    "%s= only applies to user arguments, and args=none (the default) "
                    "allows none; add args=one or args=many%s",
                    opt_names[i], NULL);
                return CHAT_EINVAL;
            }
        }
    }
    if (seen[O_MAXARGS] && spec->mode != CHAT_CMD_ARGS_MANY) {
        chat_cmd_seterr(err, errcap, "maxargs= only applies to args=many%s%s", NULL,
                        NULL);
        return CHAT_EINVAL;
    }
    if (paths && spec->mode != CHAT_CMD_ARGS_NONE && !spec->cwd) {
        chat_cmd_seterr(
            err, errcap,
            "args=%s with paths=on (the default) needs cwd=/dir: user arguments are "
            "file names confined to that directory; set cwd=, or paths=off if the "
            "arguments are not file names%s",
            chat_cmd_mode_name(spec->mode), NULL);
        return CHAT_EINVAL;
    }
    if (seen[O_DASHES] && dashes && !spec->noptions) {
        chat_cmd_seterr(
            err, errcap,
            "dashes=on needs options=: list the options users may pass, e.g. "
            "options=-l,-a,-h (any option was dangerous: -lRL or --dereference read "
            "through symbolic links out of cwd=)%s%s",
            NULL, NULL);
        return CHAT_EINVAL;
    }
    if (seen[O_DASHES] && !dashes && spec->noptions) {
        chat_cmd_seterr(
            err, errcap,
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
        chat_cmd_seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    while (b < e && is_ascii_space((unsigned char)line[b])) {
        b++;
    }
    while (e > b && is_ascii_space((unsigned char)line[e - 1])) {
        e--;
    }
    if (b == e || line[b] != '!') {
        chat_cmd_seterr(err, errcap, "a command line starts with '!'%s%s", NULL, NULL);
        return CHAT_EINVAL;
    }
    for (i = b; i < e; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            chat_cmd_seterr(
                err, errcap,
                "the command line contains a control character (a newline, NUL, "
                "escape...): one line only, and no shell syntax is interpreted%s%s",
                NULL, NULL);
            return CHAT_EDENIED;
        }
    }
    if (bufcap < e - b + 1) {
        chat_cmd_seterr(err, errcap, "the command line is too long%s%s", NULL, NULL);
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
            chat_cmd_seterr(err, errcap, "too many arguments (at most %s)%s", m, NULL);
            return CHAT_ETOOBIG;
        }
        words[n++] = p;
        while (p < end && *p != ' ' && *p != '\t') {
            p++;
        }
    }
    if (n == 0) {
        chat_cmd_seterr(err, errcap, "nothing after '!': type !<command> [arguments]%s%s",
                        NULL, NULL);
        return CHAT_EINVAL;
    }
    *nwords = n;
    return CHAT_OK;
}
