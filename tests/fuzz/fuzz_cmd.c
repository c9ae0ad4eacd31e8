/* fuzz_cmd.c - libFuzzer target for the command core (chat/cmd.h).
 *
 * Input: byte 0 picks the spec flags (paths, options) and the output cap;
 * the rest is a chat line. Invariants checked on every input:
 *  - split words never contain a blank or a control byte;
 *  - an accepted argument has no control byte, no leading '-' unless
 *    options are declared, and with paths on, once normalised
 *    independently here, it lies inside cwd (and an accepted option
 *    carries no '/' or "..");
 *  - an accepted option is made of declared ones only (-l -a -n= --color=
 *    --): never -R, -L or --dereference, alone or grouped;
 *  - the declaration parser never crashes on the same words;
 *  - the output cap holds whatever the chunking.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/cmd.h"

#define CWD "/srv/files"

static const chat_cmd_opt_t OPTS[] = {
    {"-l", 2, 0}, {"-a", 2, 0}, {"-n", 2, 1}, {"--color", 7, 1}, {"--", 2, 0}};

/* 1 if an accepted option word is made of the declared options only. */
static int declared_only(const char *w)
{
    size_t k;

    if (w[1] == '-') {
        return !strcmp(w, "--") || !strncmp(w, "--color=", 8) || !strcmp(w, "--color");
    }
    for (k = 1; w[k]; k++) {
        if (w[k] == 'n') {
            return 1; /* the rest is its value */
        }
        if (w[k] != 'l' && w[k] != 'a') {
            return 0;
        }
    }
    return 1;
}

/* Walks an accepted, joined path lexically: 1 if, once its first two
 * components are "srv" and "files", it never goes above them. */
static int inside(const char *joined)
{
    size_t depth = 0, seen = 0;
    const char *p = joined;

    while (*p) {
        const char *c;
        size_t n;
        while (*p == '/') {
            p++;
        }
        c = p;
        while (*p && *p != '/') {
            p++;
        }
        n = (size_t)(p - c);
        if (n == 0 || (n == 1 && c[0] == '.')) {
            continue;
        }
        if (n == 2 && c[0] == '.' && c[1] == '.') {
            if (depth <= 2) {
                return 0; /* would leave CWD */
            }
            depth--;
            continue;
        }
        if (seen == 0 && (n != 3 || memcmp(c, "srv", 3))) {
            return 0;
        }
        if (seen == 1 && (n != 5 || memcmp(c, "files", 5))) {
            return 0;
        }
        seen++;
        depth++;
    }
    return depth >= 2;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat_cmd_spec_t spec;
    chat_cmd_output_t out;
    const char *words[CHAT_CMD_MAX_USER_ARGS + 1];
    char err[256], *buf, joined[CHAT_CMD_PATH_MAX];
    size_t n = 0, i, k;
    unsigned sel;

    if (size < 1) {
        return 0;
    }
    sel = data[0];
    data++;
    size--;
    memset(&spec, 0, sizeof(spec));
    spec.name = "f";
    spec.path = "/bin/f";
    spec.mode = CHAT_CMD_ARGS_MANY;
    spec.max_args = CHAT_CMD_MAX_USER_ARGS;
    spec.max_arg_len = CHAT_CMD_DEF_MAX_ARG_LEN;
    spec.cwd = CWD;
    spec.flags = ((sel & 1) ? CHAT_CMD_F_PATHS : 0) | ((sel & 2) ? CHAT_CMD_F_DASHES : 0);
    if (sel & 2) {
        memcpy(spec.options, OPTS, sizeof(OPTS));
        spec.noptions = sizeof(OPTS) / sizeof(OPTS[0]);
        spec.options_text = "-l,-a,-n=,--color=,--";
    }

    buf = malloc(size + 1);
    if (!buf) {
        return 0;
    }
    if (chat_cmd_split((const char *)data, size, buf, size + 1, words,
                       sizeof(words) / sizeof(words[0]), &n, err,
                       sizeof(err)) == CHAT_OK) {
        for (i = 0; i < n; i++) {
            size_t len = strlen(words[i]);
            if (len == 0) {
                abort();
            }
            for (k = 0; k < len; k++) {
                unsigned char c = (unsigned char)words[i][k];
                if (c == ' ' || c == '\t' || c < 0x20 || c == 0x7f) {
                    abort();
                }
            }
            if (chat_cmd_check_arg(&spec, words[i], len, err, sizeof(err)) != CHAT_OK) {
                continue;
            }
            if (words[i][0] == '-' && !(spec.flags & CHAT_CMD_F_DASHES)) {
                abort();
            }
            if (words[i][0] == '-' && words[i][1] && !declared_only(words[i])) {
                abort();
            }
            if (!(spec.flags & CHAT_CMD_F_PATHS)) {
                continue;
            }
            if (words[i][0] == '-') {
                if (strchr(words[i], '/') || strstr(words[i], "..")) {
                    abort();
                }
                continue;
            }
            if (chat_cmd_path_lexical(CWD, words[i], joined, sizeof(joined), err,
                                      sizeof(err)) != CHAT_OK) {
                abort(); /* check_arg accepted it, so the lexical part must too */
            }
            if (!inside(joined)) {
                abort();
            }
        }
        /* the whole list (values after -n, file names after --) */
        chat_cmd_check_args(&spec, words, n, err, sizeof(err));
        /* the same words as a declaration: must never crash */
        {
            chat_cmd_spec_t d;
            chat_cmd_spec_parse(&d, (int)n, words, err, sizeof(err));
        }
    }
    free(buf);

    /* output capping, in chunks of a size picked by the selector */
    chat_cmd_output_init(&out, 1 + ((sel >> 2) & 63));
    for (i = 0; i < size; i += 1 + (sel >> 4)) {
        size_t len =
            size - i < 1 + (size_t)(sel >> 4) ? size - i : 1 + (size_t)(sel >> 4);
        chat_cmd_output_add(&out, data + i, len);
    }
    chat_cmd_output_finish(&out);
    if (out.buf.len > out.max + 64 || out.seen != size) {
        abort();
    }
    chat_cmd_output_free(&out);
    return 0;
}
