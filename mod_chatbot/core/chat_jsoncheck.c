/* chat_jsoncheck.c - strict RFC 8259 validation of client JSON before
 * json-c parses it (chat/jsoncheck.h). One pass, no allocation: the open
 * arrays/objects are a bit per level in a fixed stack.
 */
#include <stdio.h>
#include <string.h>

#include "chat/jsoncheck.h"
#include "chat/utf8.h"

typedef enum {
    S_VALUE,     /* a value must come */
    S_ARR_FIRST, /* after '[': a value or ']' */
    S_OBJ_FIRST, /* after '{': a key or '}' */
    S_OBJ_KEY,   /* after ',' in an object: a key */
    S_COLON,     /* after a key */
    S_AFTER      /* after a value: ',' or a closing bracket, or the end */
} state_t;

typedef struct {
    const unsigned char *s;
    size_t n, i;
    char *err;
    size_t errcap;
} jc_t;

static chat_status_t fail(jc_t *j, chat_status_t st, const char *what)
{
    if (j->err && j->errcap) {
        snprintf(j->err, j->errcap, "invalid JSON: %s at byte %zu", what, j->i);
    }
    return st;
}

static int is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A byte that is not JSON syntax here: invalid UTF-8 is reported as such
 * (REST answers bad_json either way, but the reason should be right). */
static chat_status_t unexpected(jc_t *j)
{
    if (j->s[j->i] >= 0x80 && chat_utf8_seq(j->s + j->i, j->n - j->i, NULL) == 0) {
        return fail(j, CHAT_EUTF8, "invalid UTF-8");
    }
    return fail(j, CHAT_EPARSE, "unexpected character");
}

/* j->i is on the opening quote; leaves it after the closing one. */
static chat_status_t scan_string(jc_t *j)
{
    j->i++;
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return CHAT_OK;
        }
        if (c < 0x20) {
            return fail(j, CHAT_EPARSE,
                        "a control character in a string must be escaped (\\t, \\n, "
                        "\\u00XX)");
        }
        if (c == '\\') {
            unsigned char e;
            if (j->i + 1 >= j->n) {
                break;
            }
            e = j->s[j->i + 1];
            if (e == 'u') {
                size_t k;
                if (j->i + 6 > j->n) {
                    break;
                }
                for (k = 2; k < 6; k++) {
                    if (!is_hex(j->s[j->i + k])) {
                        return fail(j, CHAT_EPARSE, "bad \\u escape in a string");
                    }
                }
                j->i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                return fail(j, CHAT_EPARSE, "unknown escape in a string");
            }
            j->i += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t k = chat_utf8_seq(j->s + j->i, j->n - j->i, NULL);
            if (k == 0) {
                return fail(j, CHAT_EUTF8, "invalid UTF-8 in a string");
            }
            j->i += k;
            continue;
        }
        j->i++;
    }
    return fail(j, CHAT_EPARSE, "the text ends inside a string");
}

static chat_status_t scan_number(jc_t *j)
{
    const unsigned char *s = j->s;

    if (s[j->i] == '-') {
        j->i++;
    }
    if (j->i >= j->n || !is_digit(s[j->i])) {
        return fail(j, CHAT_EPARSE, "bad number");
    }
    if (s[j->i] == '0') {
        j->i++;
        if (j->i < j->n && is_digit(s[j->i])) {
            return fail(j, CHAT_EPARSE, "a number with a leading zero");
        }
    }
    else {
        while (j->i < j->n && is_digit(s[j->i])) {
            j->i++;
        }
    }
    if (j->i < j->n && s[j->i] == '.') {
        j->i++;
        if (j->i >= j->n || !is_digit(s[j->i])) {
            return fail(j, CHAT_EPARSE, "bad number: digits must follow '.'");
        }
        while (j->i < j->n && is_digit(s[j->i])) {
            j->i++;
        }
    }
    if (j->i < j->n && (s[j->i] == 'e' || s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (s[j->i] == '+' || s[j->i] == '-')) {
            j->i++;
        }
        if (j->i >= j->n || !is_digit(s[j->i])) {
            return fail(j, CHAT_EPARSE, "bad number: digits must follow the exponent");
        }
        while (j->i < j->n && is_digit(s[j->i])) {
            j->i++;
        }
    }
    return CHAT_OK;
}

static chat_status_t scan_literal(jc_t *j)
{
    static const char *const lits[] = {"true", "false", "null"};
    size_t k;

    for (k = 0; k < 3; k++) {
        size_t l = strlen(lits[k]);
        if (j->n - j->i >= l && !memcmp(j->s + j->i, lits[k], l)) {
            j->i += l;
            return CHAT_OK;
        }
    }
    return unexpected(j);
}

chat_status_t chat_json_check(const char *text, size_t n, unsigned max_depth, char *err,
                              size_t errcap)
{
    unsigned char stack[CHAT_JSON_CHECK_MAX_DEPTH / 8]; /* bit set: object */
    unsigned depth = 0;
    state_t state = S_VALUE;
    chat_status_t st;
    jc_t j;

    j.s = (const unsigned char *)text;
    j.n = text ? n : 0;
    j.i = 0;
    j.err = err;
    j.errcap = errcap;
    if (err && errcap) {
        err[0] = '\0';
    }
    if (max_depth > CHAT_JSON_CHECK_MAX_DEPTH) {
        max_depth = CHAT_JSON_CHECK_MAX_DEPTH;
    }
    memset(stack, 0, sizeof(stack));
    for (;;) {
        unsigned char c;
        int top_obj;

        while (j.i < j.n && is_ws(j.s[j.i])) {
            j.i++;
        }
        if (j.i == j.n) {
            if (state == S_AFTER && depth == 0) {
                return CHAT_OK;
            }
            return fail(&j, CHAT_EPARSE,
                        j.n ? "the text ends before the value does" : "empty text");
        }
        c = j.s[j.i];
        top_obj = depth ? (stack[(depth - 1) / 8] >> ((depth - 1) % 8)) & 1 : 0;
        switch (state) {
        case S_ARR_FIRST: /* a value or ']' */
            if (c == ']') {
                depth--;
                j.i++;
                state = S_AFTER;
                break;
            }
            /* FALLTHROUGH */
        case S_VALUE:
            if (c == '{' || c == '[') {
                if (depth >= max_depth) {
                    return fail(&j, CHAT_ETOOBIG, "arrays and objects nested too deep");
                }
                if (c == '{') {
                    stack[depth / 8] |= (unsigned char)(1u << (depth % 8));
                }
                else {
                    stack[depth / 8] &= (unsigned char)~(1u << (depth % 8));
                }
                depth++;
                j.i++;
                state = c == '{' ? S_OBJ_FIRST : S_ARR_FIRST;
                break;
            }
            if (c == '"') {
                st = scan_string(&j);
            }
            else if (c == '-' || is_digit(c)) {
                st = scan_number(&j);
            }
            else {
                st = scan_literal(&j);
            }
            if (st != CHAT_OK) {
                return st;
            }
            state = S_AFTER;
            break;
        case S_OBJ_FIRST:
        case S_OBJ_KEY:
            if (c == '}' && state == S_OBJ_FIRST) {
                depth--;
                j.i++;
                state = S_AFTER;
                break;
            }
            if (c != '"') {
                return c >= 0x80 ? unexpected(&j)
                                 : fail(&j, CHAT_EPARSE, "expected a string key");
            }
            if ((st = scan_string(&j)) != CHAT_OK) {
                return st;
            }
            state = S_COLON;
            break;
        case S_COLON:
            if (c != ':') {
                return c >= 0x80 ? unexpected(&j) : fail(&j, CHAT_EPARSE, "expected ':'");
            }
            j.i++;
            state = S_VALUE;
            break;
        case S_AFTER:
            if (depth == 0) {
                return c >= 0x80
                           ? unexpected(&j)
                           : fail(&j, CHAT_EPARSE, "unexpected data after the value");
            }
            if (c == ',') {
                j.i++;
                state = top_obj ? S_OBJ_KEY : S_VALUE;
            }
            else if ((c == '}' && top_obj) || (c == ']' && !top_obj)) {
                depth--;
                j.i++;
            }
            else {
                return c >= 0x80 ? unexpected(&j)
                                 : fail(&j, CHAT_EPARSE,
                                        top_obj ? "expected ',' or '}'"
                                                : "expected ',' or ']'");
            }
            break;
        }
    }
}
