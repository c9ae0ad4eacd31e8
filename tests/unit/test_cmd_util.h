/* test_cmd_util.h - helpers shared by the test_cmd_*.c unit tests of the
 * portable half of command execution (chat/cmd.h): parsing a test
 * declaration, and expecting it accepted or refused. Header-only (static). */
#ifndef TEST_CMD_UTIL_H
#define TEST_CMD_UTIL_H

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

static inline chat_status_t parse(chat_cmd_spec_t *sp, const char *line, char *err,
                                  size_t cap, char *store, const char **argv, int *argc)
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

static inline void must_parse(chat_cmd_spec_t *sp, const char *line, char *store,
                              const char **argv)
{
    char err[512];
    int argc;

    if (parse(sp, line, err, sizeof(err), store, argv, &argc) != CHAT_OK) {
        fail_msg("'%s' refused: %s", line, err);
    }
}

static inline void must_fail(const char *line, const char *needle)
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

#endif
