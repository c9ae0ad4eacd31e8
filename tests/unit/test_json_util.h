/* test_json_util.h - helpers shared by the test_json_*.c unit tests: a
 * strict json-c parse of the output (whole input, UTF-8 validated) and a
 * small seeded pseudo-random generator. Header-only (static). */
#ifndef TEST_JSON_UTIL_H
#define TEST_JSON_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include <json-c/json.h>

#include "chat/proto.h"

/* Parses s[0..n) strictly (whole input, UTF-8 validated); NULL if invalid. */
static inline json_object *parse_strict(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(64);
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
        /* a top-level number only ends at the end of input */
        o = json_tokener_parse_ex(tok, "", 1);
        n = 0;
    }
    if (o && json_tokener_get_parse_end(tok) != n) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static uint32_t rng_state;

static inline uint32_t rnd(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) & 0xffffff;
}

#endif
