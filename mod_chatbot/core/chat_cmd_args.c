/* chat_cmd_args.c - checks of the arguments users add to a command
 * (chat/cmd.h): options against options=, look-alike and invisible
 * characters, the lexical half of path confinement, and the final argv.
 * Bytes only: the glue resolves paths with realpath() (mod_chatbot_exec.c).
 */
#include <stdio.h>
#include <string.h>

#include "chat/cmd.h"
#include "chat_cmd_int.h"

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
    chat_cmd_seterr(
        err, errcap, "an option is not one this command allows (allowed: %s)",
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
            chat_cmd_seterr(
                err, errcap,
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
        if (!chat_cmd_is_alnum((unsigned char)s[k]) ||
            !(o = find_option(spec, name, 2))) {
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
        chat_cmd_seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (len == 0) {
        chat_cmd_seterr(err, errcap, "an argument is empty%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (len > spec->max_arg_len) {
        snprintf(num, sizeof(num), "%u", (unsigned)spec->max_arg_len);
        chat_cmd_seterr(err, errcap, "an argument is longer than %s bytes (maxarglen=)%s",
                        num, NULL);
        return CHAT_EDENIED;
    }
    while (i < len) {
        uint32_t c;
        size_t n = utf8_next(s + i, len - i, &c);
        if (n == 0) {
            chat_cmd_seterr(err, errcap, "an argument is not valid UTF-8%s%s", NULL,
                            NULL);
            return CHAT_EDENIED;
        }
        if (c < 0x20 || c == 0x7f || (c >= 0x80 && c <= 0x9f) || c == 0x2028 ||
            c == 0x2029) {
            chat_cmd_seterr(
                err, errcap,
                "an argument contains a control character (newline, NUL, escape...)"
                "%s%s",
                NULL, NULL);
            return CHAT_EDENIED;
        }
        if (is_format_char(c)) {
            chat_cmd_seterr(
                err, errcap,
                "an argument contains an invisible or bidirectional formatting "
                "character%s%s",
                NULL, NULL);
            return CHAT_EDENIED;
        }
        if (first && is_dash_like(c) && role != ROLE_VALUE) {
            if (!(spec->flags & CHAT_CMD_F_DASHES)) {
                chat_cmd_seterr(
                    err, errcap,
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
            chat_cmd_seterr(
                err, errcap,
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
        chat_cmd_seterr(err, errcap, "a path is too long%s%s", NULL, NULL);
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
        chat_cmd_seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    switch (spec->mode) {
    case CHAT_CMD_ARGS_NONE:
        if (nargs) {
            chat_cmd_seterr(err, errcap, "'%s' takes no arguments%s", spec->name, NULL);
            return CHAT_EDENIED;
        }
        return CHAT_OK;
    case CHAT_CMD_ARGS_ONE:
        if (nargs != 1) {
            chat_cmd_seterr(err, errcap, "'%s' takes exactly one argument%s", spec->name,
                            NULL);
            return CHAT_EDENIED;
        }
        break;
    case CHAT_CMD_ARGS_MANY:
        if (nargs > spec->max_args) {
            snprintf(num, sizeof(num), "%u", (unsigned)spec->max_args);
            chat_cmd_seterr(err, errcap, "'%s' takes at most %s arguments", spec->name,
                            num);
            return CHAT_EDENIED;
        }
        break;
    }
    for (i = 0; i < nargs; i++) {
        optres_t res = OPT_DONE;
        if (!args[i] || check_one(spec, args[i], strlen(args[i]), role, &res, sub,
                                  sizeof(sub)) != CHAT_OK) {
            snprintf(num, sizeof(num), "%zu", i + 1);
            chat_cmd_seterr(err, errcap, "argument %s refused: %s", num,
                            args[i] ? sub : "missing");
            return CHAT_EDENIED;
        }
        if (res == OPT_END) {
            operands = 1;
        }
        role = res == OPT_WANTS_VALUE ? ROLE_VALUE : operands ? ROLE_OPERAND : ROLE_AUTO;
    }
    if (role == ROLE_VALUE) {
        chat_cmd_seterr(err, errcap, "the last option needs a value%s%s", NULL, NULL);
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
        chat_cmd_seterr(err, errcap, "internal: bad arguments%s%s", NULL, NULL);
        return CHAT_EDENIED;
    }
    if (!*arg) {
        chat_cmd_seterr(err, errcap, "a file name is empty%s%s", NULL, NULL);
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
                chat_cmd_seterr(err, errcap,
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
                chat_cmd_seterr(err, errcap,
                                "'..' leads outside the command's directory%s%s", NULL,
                                NULL);
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
    chat_cmd_seterr(err, errcap, "a path is too long%s%s", NULL, NULL);
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
