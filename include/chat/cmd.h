/* chat/cmd.h - the portable half of command execution (ChatbotCommand):
 * parsing a declaration, splitting a chat "!name args" line, checking user
 * arguments, the lexical part of path confinement, capping the output and
 * building the final argv.
 *
 * Implemented in chat_cmd.c (declarations, "!" lines), chat_cmd_args.c
 * (arguments, lexical paths, argv) and chat_cmd_output.c (output, history
 * text). Nothing here runs a program or touches the filesystem: the glue
 * resolves paths with realpath() (mod_chatbot_exec.c) and spawns the
 * program with posix_spawn (mod_chatbot_spawn.c), never through a shell.
 * The rules are documented for sysadmins in docs/commands.md.
 */
#ifndef CHAT_CMD_H
#define CHAT_CMD_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How many arguments a user may add after the declared (fixed) ones. */
typedef enum {
    CHAT_CMD_ARGS_NONE = 0,
    CHAT_CMD_ARGS_ONE = 1,
    CHAT_CMD_ARGS_MANY = 2
} chat_cmd_mode_t;

#define CHAT_CMD_MAX_FIXED 32        /* fixed arguments in a declaration */
#define CHAT_CMD_MAX_USER_ARGS 64    /* upper bound of maxargs= */
#define CHAT_CMD_DEF_MAX_ARGS 16     /* default maxargs= for args=many */
#define CHAT_CMD_DEF_MAX_ARG_LEN 256 /* default maxarglen= (bytes) */
#define CHAT_CMD_MAX_ARG_LEN 4096    /* upper bound of maxarglen= */
#define CHAT_CMD_DEF_TIMEOUT_MS 10000
#define CHAT_CMD_MIN_TIMEOUT_MS 100
#define CHAT_CMD_MAX_TIMEOUT_MS 60000 /* below ChatbotIdleTimeout: see docs */
#define CHAT_CMD_DEF_MAX_OUTPUT 65536
#define CHAT_CMD_MIN_MAX_OUTPUT 256
#define CHAT_CMD_MAX_MAX_OUTPUT (16u * 1024 * 1024)
#define CHAT_CMD_PATH_MAX 4096 /* longest cwd / joined path */

/* spec flags */
#define CHAT_CMD_F_PATHS 0x1u  /* arguments are paths confined under cwd */
#define CHAT_CMD_F_DASHES 0x2u /* arguments may be options (from spec->options) */

#define CHAT_CMD_MAX_OPTIONS 64 /* entries in options= */

/* One option users may pass, from options=: "-l", "--all", "--" (end of
 * options), or with a trailing '=' in the declaration ("-n=", "--lines=")
 * an option that takes a value. Points into the declaration's text. */
typedef struct {
    const char *name; /* "-n", "--lines" (not NUL-terminated) */
    size_t len;
    int takes_value;
} chat_cmd_opt_t;

/* A parsed declaration. The strings point into the argv given to
 * chat_cmd_spec_parse (the caller keeps it alive). */
typedef struct {
    const char *name;
    const char *path; /* absolute */
    const char *fixed[CHAT_CMD_MAX_FIXED];
    size_t nfixed;
    chat_cmd_mode_t mode;
    int64_t timeout_ms;
    uint64_t max_output;                          /* bytes of output kept */
    const char *cwd;                              /* absolute, or NULL (not given: "/") */
    unsigned flags;                               /* CHAT_CMD_F_* */
    uint32_t max_args;                            /* 0 (none), 1 (one), maxargs= (many) */
    uint32_t max_arg_len;                         /* bytes per user argument */
    chat_cmd_opt_t options[CHAT_CMD_MAX_OPTIONS]; /* options= (allowed options) */
    size_t noptions;
    const char *options_text; /* options= as declared, for messages */
} chat_cmd_spec_t;

/* Parses the arguments of
 *   ChatbotCommand name /abs/path [fixed args...] [args=none|one|many]
 *       [timeout=10s] [maxoutput=64k] [cwd=/dir] [paths=on|off]
 *       [options=-l,-a,-n=,--color=] [maxargs=N] [maxarglen=N]
 * argv[0] is the name. Every token of the form lowercase_key=value is an
 * option (an unknown key is an error); every other token after the path is
 * a fixed argument, passed to the program before the user's arguments.
 * Defaults: args=none, timeout=10s, maxoutput=64k, no cwd ("/"),
 * paths=on, no options, maxargs=16, maxarglen=256. paths=on with
 * args=one|many requires cwd= (the directory path arguments are confined
 * to). options= lists every option a user may pass (comma-separated, each
 * "-x" with x a letter or digit, or "--name", or "--"; a trailing '='
 * declares an option that takes a value); dashes=on is accepted only
 * together with options= (an option allowed just because it starts with
 * '-' let "-lRL" read through symbolic links), dashes=off only without.
 * Only the syntax is checked here: that the program and cwd exist is the
 * glue's job.
 * Returns CHAT_OK, or CHAT_EINVAL with err (an English sentence naming the
 * bad token and what is allowed; the caller prefixes the directive name). */
chat_status_t chat_cmd_spec_parse(chat_cmd_spec_t *spec, int argc,
                                  const char *const *argv, char *err, size_t errcap);

const char *chat_cmd_mode_name(chat_cmd_mode_t m);

/* Splits a chat line "!name arg1 arg2" into words: leading and trailing
 * ASCII whitespace is dropped, the '!' (and blanks after it) skipped, and
 * the rest split on runs of spaces and tabs. There is no quoting, escaping,
 * globbing or variable expansion: every other byte is literal. A line that
 * still contains a control character (a newline inside the line, NUL, ESC,
 * DEL...) is refused as a whole.
 * buf (bufcap >= len + 1) receives the words, NUL-terminated; words[] point
 * into it; words[0] is the command name.
 * Returns CHAT_OK, CHAT_EINVAL (not a '!' line, or nothing after '!'),
 * CHAT_EDENIED (a control character), CHAT_ETOOBIG (more than maxwords
 * words, or bufcap too small); err says which. */
chat_status_t chat_cmd_split(const char *line, size_t len, char *buf, size_t bufcap,
                             const char **words, size_t maxwords, size_t *nwords,
                             char *err, size_t errcap);

/* Checks one user argument of len bytes against spec:
 *  - 1..max_arg_len bytes, valid UTF-8 (no overlongs or surrogates);
 *  - no control characters: C0 (NUL, newline, ESC...), DEL, C1, and the
 *    Unicode line/paragraph separators, bidirectional and zero-width
 *    format characters (which could disguise an argument in logs or UI);
 *  - no leading '-' (nor a Unicode dash or minus look-alike) unless
 *    CHAT_CMD_F_DASHES (then an argument starting with ASCII '-' is an
 *    option and is checked by chat_cmd_check_args against spec->options);
 *  - with CHAT_CMD_F_PATHS: no character that looks like or normalises
 *    (NFKC) to path syntax ('/', '\\', '.'): fullwidth and small forms,
 *    U+2215 DIVISION SLASH, U+2044 FRACTION SLASH, U+2024 ONE DOT LEADER...
 *    The kernel only knows the byte 0x2F, so these are harmless to it, but a
 *    program that normalises Unicode would turn them into "../"; and the
 *    path must stay under spec->cwd lexically (chat_cmd_path_lexical). An
 *    option (leading '-', with dashes=on) may not carry a path: no '/' and
 *    no "..".
 * Returns CHAT_OK or CHAT_EDENIED with err (an English reason that quotes
 * nothing of the argument, so it is safe to show and log). */
chat_status_t chat_cmd_check_arg(const chat_cmd_spec_t *spec, const char *arg, size_t len,
                                 char *err, size_t errcap);

/* Checks the number of user arguments against the mode (none: 0, one:
 * exactly 1, many: 0..max_args), then each with chat_cmd_check_arg; err
 * names the argument's position (1-based). An argument starting with '-'
 * is an option wherever it stands (GNU programs take options after file
 * names too), until a "--" that options= allows:
 *  - "--name" must be listed; "--name=value" needs "--name=" listed;
 *  - "-abc" is the short options -a, -b and -c, each of which must be
 *    listed; one that takes a value ends the group and the rest of the
 *    argument is its value ("-n5");
 *  - a listed option that takes a value and has none attached takes the
 *    next argument as its value (which may not be missing);
 *  - a value may not carry a path ('/' or "..") when paths=on.
 * A lone "-" and the arguments after an allowed "--" are file names.
 * Returns CHAT_OK or CHAT_EDENIED. The reason never quotes the argument;
 * it lists the declared options instead. */
chat_status_t chat_cmd_check_args(const chat_cmd_spec_t *spec, const char *const *args,
                                  size_t nargs, char *err, size_t errcap);

/* 1 if a listed option is known, for some common program, to follow
 * symbolic links or to recurse into directories ("-R", "-L",
 * "--dereference"...): with paths=on such an option reads what the path
 * check refused (a link inside cwd that leads out), so the glue warns at
 * start-up when options= lists one. The letters mean different things in
 * different programs; this errs on the side of warning. */
int chat_cmd_option_risky(const chat_cmd_opt_t *opt);

/* The lexical part of path confinement. base is an absolute, normalised
 * directory (no "." or ".." components, no trailing '/' except "/" itself:
 * the realpath of cwd). arg is relative to base, or absolute. Walking the
 * components of arg from base ("." ignored, ".." goes up), the walk must
 * never leave base: "../x", "a/../../x" and an absolute path that does not
 * start with base are refused. On success the joined, unnormalised path
 * (base "/" arg, or arg if absolute) is written to out for the glue's
 * filesystem check (realpath of the existing prefix: symlinks).
 * Returns CHAT_OK, CHAT_EDENIED (escapes, empty) or CHAT_ETOOBIG (longer
 * than outcap - 1); err says which. */
chat_status_t chat_cmd_path_lexical(const char *base, const char *arg, char *out,
                                    size_t outcap, char *err, size_t errcap);

/* 1 if the '/'-separated path p has a ".." component, else 0. */
int chat_cmd_path_has_dotdot(const char *p);

/* 1 if path equals dir or lies below it (dir + "/" ...), comparing bytes;
 * both are expected to be realpath() results. dir "/" contains every
 * absolute path. */
int chat_cmd_path_within(const char *dir, const char *path);

/* Builds the argv for execve: argv[0] = spec->path, the fixed arguments,
 * the user arguments, then NULL. cap counts the slots of argv, including
 * the NULL. Returns the number of arguments (without the NULL), or
 * CHAT_ETOOBIG if they do not fit. */
int chat_cmd_build_argv(const chat_cmd_spec_t *spec, const char *const *args,
                        size_t nargs, const char **argv, size_t cap);

/* ---- output ---------------------------------------------------------- */

/* Collects a command's output up to max bytes. */
typedef struct {
    chat_buf_t buf;
    uint64_t max;
    uint64_t seen; /* bytes the command wrote in total (as read) */
    int truncated;
    int finished;
} chat_cmd_output_t;

#define CHAT_CMD_TRUNC_FMT "\n[output truncated at %llu bytes]"

void chat_cmd_output_init(chat_cmd_output_t *o, uint64_t max);
void chat_cmd_output_free(chat_cmd_output_t *o);
/* Appends what fits under max. Returns 0 while under the cap, 1 once
 * output beyond the cap was seen (truncated: the caller stops the
 * command), or CHAT_ENOMEM. */
int chat_cmd_output_add(chat_cmd_output_t *o, const void *data, size_t n);
/* Once, at the end: if truncated, drops an incomplete UTF-8 sequence at the
 * cut and appends "\n[output truncated at <max> bytes]". CHAT_OK or
 * CHAT_ENOMEM. */
chat_status_t chat_cmd_output_finish(chat_cmd_output_t *o);

/* ---- history text ---------------------------------------------------- */

/* The automatic title of a conversation whose first message is the
 * command line (text, len): made like the UI makes one from a first chat
 * message: white space runs become one space, ends trimmed, and a line
 * longer than 60 characters is cut to at most 57 at a word boundary and
 * ends with U+2026. Always valid UTF-8 of at most outsz - 1 bytes (outsz
 * should be CHAT_TITLE_MAX + 1). Returns its length (0 if blank). */
size_t chat_cmd_title(char *out, size_t outsz, const char *text, size_t len);

/* The request as stored in the conversation: "!name arg1 arg2" (reset
 * first). CHAT_OK or CHAT_ENOMEM. */
chat_status_t chat_cmd_format_request(chat_buf_t *out, const char *name,
                                      const char *const *args, size_t nargs);

/* The result as stored in the conversation (Markdown): the output in a
 * fenced code block (the fence is longer than any run of backticks in the
 * output), then one status line, e.g. "exit code 0 · 12 ms" or "killed by
 * signal 9 · timed out after 10000 ms · 10001 ms". exit_code < 0 with
 * signal > 0 means killed. Reset first. CHAT_OK or CHAT_ENOMEM. */
typedef struct {
    int exit_code; /* -1 if killed by a signal */
    int signal;    /* 0 if it exited */
    int timed_out;
    int truncated;
    int stopped; /* stopped by the user */
    int64_t timeout_ms;
    int64_t duration_ms;
} chat_cmd_result_t;

chat_status_t chat_cmd_format_result(chat_buf_t *out, const char *output, size_t len,
                                     const chat_cmd_result_t *res);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CMD_H */
