/* test_proto_util.h - helpers shared by the test_proto_*.c unit tests:
 * one client message M and its error text E (set up and freed around each
 * test), P() to parse a string into them, and a check on the error text.
 * Header-only (static). */
#ifndef TEST_PROTO_UTIL_H
#define TEST_PROTO_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "chat/proto.h"

static chat_cmsg_t M;
static char E[256];

static inline int setup(void **state)
{
    (void)state;
    chat_cmsg_init(&M);
    return 0;
}

static inline int teardown(void **state)
{
    (void)state;
    chat_cmsg_free(&M);
    return 0;
}

static inline chat_status_t P(const char *json)
{
    return chat_cmsg_parse(&M, json, strlen(json), E, sizeof(E));
}

static inline void assert_err_has(const char *needle)
{
    if (!strstr(E, needle)) {
        fail_msg("error '%s' does not mention '%s'", E, needle);
    }
}

#endif
