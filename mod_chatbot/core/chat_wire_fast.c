/* chat_wire_fast.c - Ollama's ordinary NDJSON token lines read in place,
 * without json-c (the hot path of a streamed answer); json-c takes the rest.
 *
 * Nearly every line of an answer is {"model":..,"created_at":..,"message":
 * {"role":"assistant","content":"<token>"},"done":false}. json-c builds a
 * tree of allocations for each (and sets up a "C" locale per parse): with
 * the frees that follow, a third of httpd's userspace instructions per
 * turn. chat_wire_fast_line() reads such a line in place instead: it checks the whole
 * line against RFC 8259's grammar and picks out message.content,
 * message.thinking, done and model, and on the last line (done:true) the
 * statistics: done_reason and the counts and durations when they are plain
 * integers. Whatever it does not expect - an error, an escape or control
 * character in a string it keeps, a repeated or escaped key, a member of
 * another type, a statistic with a sign, fraction or exponent, deep
 * nesting, anything json-c might read differently - it declines, and the
 * line goes to json-c: both paths give the same events and statistics (the
 * fuzzer and the unit tests compare them).
 */
#include <stddef.h>
#include <string.h>

#include "chat/proto.h"
#include "chat_stream_int.h"

#define FAST_DEPTH 16 /* below JSON_DEPTH: deeper lines go to json-c */

static int fast_enabled = 1;

void chat_stream_set_fast_path(int on)
{
    fast_enabled = on;
}

typedef struct {
    const char *p, *end;
} fscan_t;

static void f_ws(fscan_t *f)
{
    while (f->p < f->end && chat_wire_is_ws(*f->p)) {
        f->p++;
    }
}

static int f_hex4(const char *q)
{
    int i;

    for (i = 0; i < 4; i++) {
        char c = q[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
              (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}

/* A string at f->p ('"'). 0 if it is not a valid JSON string. */
static int f_string(fscan_t *f, chat_fstr_t *out)
{
    const char *q = f->p + 1, *start = q;
    int plain = 1;

    while (q < f->end) {
        unsigned char c;
        q += chat_json_plain(q, (size_t)(f->end - q));
        if (q >= f->end) {
            break;
        }
        c = (unsigned char)*q;
        if (c == '"') {
            out->s = start;
            out->n = (size_t)(q - start);
            out->plain = plain;
            f->p = q + 1;
            return 1;
        }
        if (c < 0x20) {
            return 0;
        }
        if (c == '\\') {
            plain = 0;
            if (++q >= f->end) {
                return 0;
            }
            if (*q == 'u') {
                if (f->end - q < 5 || !f_hex4(q + 1)) {
                    return 0;
                }
                q += 5;
                continue;
            }
            if (!strchr("\"\\/bfnrt", *q) || *q == '\0') {
                return 0;
            }
        }
        q++;
    }
    return 0;
}

static int f_digits(fscan_t *f)
{
    const char *q = f->p;

    while (f->p < f->end && *f->p >= '0' && *f->p <= '9') {
        f->p++;
    }
    return f->p > q;
}

static int f_number(fscan_t *f)
{
    if (f->p < f->end && *f->p == '-') {
        f->p++;
    }
    if (f->p < f->end && *f->p == '0') {
        f->p++;
    }
    else if (!f_digits(f)) {
        return 0;
    }
    if (f->p < f->end && *f->p == '.') {
        f->p++;
        if (!f_digits(f)) {
            return 0;
        }
    }
    if (f->p < f->end && (*f->p == 'e' || *f->p == 'E')) {
        f->p++;
        if (f->p < f->end && (*f->p == '+' || *f->p == '-')) {
            f->p++;
        }
        if (!f_digits(f)) {
            return 0;
        }
    }
    return 1;
}

static int f_word(fscan_t *f, const char *w, size_t n)
{
    if ((size_t)(f->end - f->p) < n || memcmp(f->p, w, n) != 0) {
        return 0;
    }
    f->p += n;
    return 1;
}

static int f_value(fscan_t *f, int depth);

/* An object or array at f->p, whose members are only checked. */
static int f_container(fscan_t *f, int depth)
{
    char close = *f->p == '{' ? '}' : ']';
    chat_fstr_t k;

    if (depth >= FAST_DEPTH) {
        return 0;
    }
    f->p++;
    f_ws(f);
    if (f->p < f->end && *f->p == close) {
        f->p++;
        return 1;
    }
    for (;;) {
        if (close == '}') {
            if (f->p >= f->end || *f->p != '"' || !f_string(f, &k)) {
                return 0;
            }
            f_ws(f);
            if (f->p >= f->end || *f->p++ != ':') {
                return 0;
            }
            f_ws(f);
        }
        if (!f_value(f, depth + 1)) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end) {
            return 0;
        }
        if (*f->p == close) {
            f->p++;
            return 1;
        }
        if (*f->p++ != ',') {
            return 0;
        }
        f_ws(f);
    }
}

static int f_value(fscan_t *f, int depth)
{
    chat_fstr_t v;

    if (f->p >= f->end) {
        return 0;
    }
    switch (*f->p) {
    case '"':
        return f_string(f, &v);
    case '{':
    case '[':
        return f_container(f, depth);
    case 't':
        return f_word(f, "true", 4);
    case 'f':
        return f_word(f, "false", 5);
    case 'n':
        return f_word(f, "null", 4);
    default:
        return f_number(f);
    }
}

/* k is the key lit (a string literal: its length is known when compiled) */
#define F_KEY_IS(k, lit)                                                                 \
    ((k)->n == sizeof(lit) - 1 && memcmp((k)->s, lit, sizeof(lit) - 1) == 0)

/* The members of an object at f->p, one callback per member with f->p at
 * its value; the callback consumes the value (1) or declines (0). */
static int f_members(fscan_t *f,
                     int (*member)(fscan_t *f, const chat_fstr_t *key, void *baton),
                     void *baton)
{
    chat_fstr_t k;

    f->p++;
    f_ws(f);
    if (f->p < f->end && *f->p == '}') {
        f->p++;
        return 1;
    }
    for (;;) {
        if (f->p >= f->end || *f->p != '"' || !f_string(f, &k) || !k.plain) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end || *f->p++ != ':') {
            return 0;
        }
        f_ws(f);
        if (!member(f, &k, baton)) {
            return 0;
        }
        f_ws(f);
        if (f->p >= f->end) {
            return 0;
        }
        if (*f->p == '}') {
            f->p++;
            return 1;
        }
        if (*f->p++ != ',') {
            return 0;
        }
        f_ws(f);
    }
}

/* A kept string: present once, a string, no escape. */
static int f_keep(fscan_t *f, chat_fstr_t *out)
{
    if (out->s || f->p >= f->end || *f->p != '"' || !f_string(f, out) || !out->plain) {
        return 0;
    }
    return 1;
}

static int f_message_member(fscan_t *f, const chat_fstr_t *k, void *baton)
{
    chat_fast_t *r = baton;

    if (F_KEY_IS(k, "content")) {
        return f_keep(f, &r->content);
    }
    if (F_KEY_IS(k, "thinking")) {
        return f_keep(f, &r->thinking);
    }
    return f_value(f, 2);
}

/* A statistic: present once, digits only (no sign, fraction or exponent)
 * and at most 15 of them, so that the value is exact as a double and the
 * same as json-c's int64; anything else is left to json-c. */
static int f_count(fscan_t *f, double *out)
{
    const char *q = f->p;
    double v = 0;

    if (*out >= 0) {
        return 0;
    }
    while (f->p < f->end && *f->p >= '0' && *f->p <= '9') {
        v = v * 10 + (*f->p - '0');
        f->p++;
    }
    if (f->p == q || f->p - q > 15 || (*q == '0' && f->p - q > 1) ||
        (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E'))) {
        return 0;
    }
    *out = v;
    return 1;
}

static int f_line_member(fscan_t *f, const chat_fstr_t *k, void *baton)
{
    chat_fast_t *r = baton;
    int i;

    if (F_KEY_IS(k, "message")) {
        if (r->has_message || f->p >= f->end || *f->p != '{') {
            return 0;
        }
        r->has_message = 1;
        return f_members(f, f_message_member, r);
    }
    if (F_KEY_IS(k, "done")) {
        if (r->has_done) {
            return 0;
        }
        r->has_done = 1;
        if (f_word(f, "false", 5)) {
            return 1;
        }
        r->done = 1;
        return f_word(f, "true", 4);
    }
    if (F_KEY_IS(k, "done_reason")) {
        return f_keep(f, &r->done_reason);
    }
    /* the statistics all end in "count" or "duration" */
    if (k->n >= 10 && (k->s[k->n - 1] == 't' || k->s[k->n - 1] == 'n')) {
        for (i = 0; i < CHAT_OST_N; i++) {
            const char *name = chat_wire_stat_keys[i];
            if (strlen(name) == k->n && memcmp(k->s, name, k->n) == 0) {
                return f_count(f, &r->num[i]);
            }
        }
    }
    if (F_KEY_IS(k, "model")) {
        if (r->has_model) {
            return 0;
        }
        r->has_model = 1;
        return f_keep(f, &r->model);
    }
    if (F_KEY_IS(k, "error") || F_KEY_IS(k, "object")) {
        return 0; /* error replies: json-c */
    }
    return f_value(f, 1);
}

/* 1 if p[0..n) (trimmed, non-empty) is a token line read into r. */
int chat_wire_fast_line(const char *p, size_t n, chat_fast_t *r)
{
    fscan_t f;
    int i;

    memset(r, 0, sizeof(*r));
    if (!fast_enabled || p[0] != '{') {
        return 0;
    }
    for (i = 0; i < CHAT_OST_N; i++) {
        r->num[i] = -1;
    }
    f.p = p;
    f.end = p + n;
    return f_members(&f, f_line_member, r) && f.p == f.end;
}
