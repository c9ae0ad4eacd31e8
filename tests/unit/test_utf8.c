/* Unit tests: chat_utf8 - the incremental validator (Markus Kuhn style
 * cases, fed whole, byte by byte and split at every offset), the reject
 * position (fail fast), complete_prefix and sanitize. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "chat/utf8.h"

#define INSIDE 2u
#define MAXB 16

typedef struct {
    const char *name;
    uint8_t b[MAXB];
    size_t n;
    uint32_t result; /* fed whole */
    int reject_at;   /* index of the byte that is rejected, -1 if none */
} u8case_t;

#define V(name, ...)                                                                     \
    {                                                                                    \
        name, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__}), CHAT_UTF8_ACCEPT, -1      \
    }
#define P(name, ...)                                                                     \
    {                                                                                    \
        name, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__}), INSIDE, -1                \
    }
#define R(name, at, ...)                                                                 \
    {                                                                                    \
        name, {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__}), CHAT_UTF8_REJECT, at      \
    }

static const u8case_t cases[] = {
    /* 1, 2: correct text and first possible sequences */
    V("kosme", 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5),
    V("U+0000", 0x00),
    V("U+0080", 0xC2, 0x80),
    V("U+0800", 0xE0, 0xA0, 0x80),
    V("U+10000", 0xF0, 0x90, 0x80, 0x80),
    /* 2.2: last possible sequences of each length */
    V("U+007F", 0x7F),
    V("U+07FF", 0xDF, 0xBF),
    V("U+FFFF", 0xEF, 0xBF, 0xBF),
    V("U+10FFFF", 0xF4, 0x8F, 0xBF, 0xBF),
    /* 2.3: other boundaries */
    V("U+D7FF", 0xED, 0x9F, 0xBF),
    V("U+E000", 0xEE, 0x80, 0x80),
    V("U+FFFD", 0xEF, 0xBF, 0xBD),
    V("U+FFFE noncharacter is valid", 0xEF, 0xBF, 0xBE),
    V("mixed", 'a', 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 'z'),
    V("ascii run", 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm'),
    /* 2.2/4: beyond U+10FFFF and 5/6-byte forms */
    R("U+110000", 1, 0xF4, 0x90, 0x80, 0x80),
    R("U+13FFFF", 1, 0xF4, 0xBF, 0xBF, 0xBF),
    R("F5 lead", 0, 0xF5, 0x80, 0x80, 0x80),
    R("5-byte U+200000", 0, 0xF8, 0x88, 0x80, 0x80, 0x80),
    R("6-byte U+4000000", 0, 0xFC, 0x84, 0x80, 0x80, 0x80, 0x80),
    /* 3.1: unexpected continuation bytes */
    R("lone 80", 0, 0x80),
    R("lone BF", 0, 0xBF),
    R("2 continuations after ascii", 1, 'a', 0x80, 0xBF),
    R("continuation after complete char", 2, 0xC2, 0x80, 0x80),
    /* 3.2: lonely start characters */
    R("C2 then space", 1, 0xC2, 0x20),
    R("E1 then space", 1, 0xE1, 0x20),
    R("F1 then space", 1, 0xF1, 0x20),
    R("E1 80 then space", 2, 0xE1, 0x80, 0x20),
    /* 3.3: sequences with the last byte missing (at the end: inside) */
    P("C2 at end", 0xC2),
    P("E2 82 at end", 'x', 0xE2, 0x82),
    P("F0 9F 98 at end", 0xF0, 0x9F, 0x98),
    P("F4 8F BF at end", 0xF4, 0x8F, 0xBF),
    R("C0 (overlong lead) at end", 0, 0xC0),
    R("E0 80 (overlong prefix)", 1, 0xE0, 0x80),
    R("F0 80 (overlong prefix)", 1, 0xF0, 0x80),
    /* 3.5: impossible bytes */
    R("FE", 0, 0xFE),
    R("FF", 0, 0xFF),
    R("FE FE FF FF", 0, 0xFE, 0xFE, 0xFF, 0xFF),
    /* 4.1: overlong ASCII "/" */
    R("overlong / 2", 0, 0xC0, 0xAF),
    R("overlong / 3", 1, 0xE0, 0x80, 0xAF),
    R("overlong / 4", 1, 0xF0, 0x80, 0x80, 0xAF),
    /* 4.2: maximum overlongs */
    R("overlong U+007F", 0, 0xC1, 0xBF),
    R("overlong U+07FF", 1, 0xE0, 0x9F, 0xBF),
    R("overlong U+FFFF", 1, 0xF0, 0x8F, 0xBF, 0xBF),
    /* 4.3: overlong NUL */
    R("overlong NUL 2", 0, 0xC0, 0x80),
    R("overlong NUL 3", 1, 0xE0, 0x80, 0x80),
    /* 5.1, 5.2: single and paired UTF-16 surrogates */
    R("U+D800", 1, 0xED, 0xA0, 0x80),
    R("U+DB7F", 1, 0xED, 0xAD, 0xBF),
    R("U+DB80", 1, 0xED, 0xAE, 0x80),
    R("U+DBFF", 1, 0xED, 0xAF, 0xBF),
    R("U+DC00", 1, 0xED, 0xB0, 0x80),
    R("U+DF80", 1, 0xED, 0xBE, 0x80),
    R("U+DFFF", 1, 0xED, 0xBF, 0xBF),
    R("U+D800 U+DC00", 1, 0xED, 0xA0, 0x80, 0xED, 0xB0, 0x80),
    /* Autobahn 6.3.1: valid text followed by a surrogate */
    R("kosme + surrogate", 12, 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE,
      0xB5, 0xED, 0xA0, 0x80, 0x65, 0x64),
    R("invalid after 9 ascii", 9, '1', '2', '3', '4', '5', '6', '7', '8', '9', 0xFF),
};

static void test_cases_whole(void **state)
{
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const u8case_t *c = &cases[i];
        chat_utf8_t u;
        chat_utf8_init(&u);
        if (chat_utf8_feed(&u, c->b, c->n) != c->result) {
            fail_msg("case %s: got %u want %u", c->name, u.state, c->result);
        }
        assert_int_equal(u.state, c->result);
        assert_int_equal(chat_utf8_valid(c->b, c->n), c->result == CHAT_UTF8_ACCEPT);
    }
}

/* Byte by byte: the reject comes exactly at the offending byte. */
static void test_cases_bytewise(void **state)
{
    size_t i, j;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const u8case_t *c = &cases[i];
        chat_utf8_t u;
        int rejected_at = -1;
        uint32_t r = CHAT_UTF8_ACCEPT;
        chat_utf8_init(&u);
        for (j = 0; j < c->n; j++) {
            r = chat_utf8_feed(&u, c->b + j, 1);
            if (r == CHAT_UTF8_REJECT && rejected_at < 0) {
                rejected_at = (int)j;
            }
        }
        if (rejected_at != c->reject_at || r != c->result) {
            fail_msg("case %s: reject at %d want %d, result %u want %u", c->name,
                     rejected_at, c->reject_at, r, c->result);
        }
    }
}

/* Split at every offset (and into three parts): same verdict as whole. */
static void test_cases_split(void **state)
{
    size_t i, a, b;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const u8case_t *c = &cases[i];
        for (a = 0; a <= c->n; a++) {
            for (b = a; b <= c->n; b++) {
                chat_utf8_t u;
                chat_utf8_init(&u);
                chat_utf8_feed(&u, c->b, a);
                chat_utf8_feed(&u, c->b + a, b - a);
                if (chat_utf8_feed(&u, c->b + b, c->n - b) != c->result) {
                    fail_msg("case %s split %zu/%zu", c->name, a, b);
                }
            }
        }
    }
}

static void test_reject_is_sticky(void **state)
{
    chat_utf8_t u;
    (void)state;
    chat_utf8_init(&u);
    assert_int_equal(chat_utf8_feed(&u, (const uint8_t *)"\xC0", 1), CHAT_UTF8_REJECT);
    assert_int_equal(chat_utf8_feed(&u, (const uint8_t *)"abc", 3), CHAT_UTF8_REJECT);
    assert_int_equal(chat_utf8_feed(&u, NULL, 0), CHAT_UTF8_REJECT);
    chat_utf8_init(&u);
    assert_int_equal(chat_utf8_feed(&u, NULL, 0), CHAT_UTF8_ACCEPT);
    assert_int_equal(chat_utf8_feed(&u, (const uint8_t *)"\xE2", 1), INSIDE);
    assert_int_equal(chat_utf8_feed(&u, NULL, 0), INSIDE);
    assert_int_equal(chat_utf8_feed(&u, (const uint8_t *)"\x82\xAC", 2),
                     CHAT_UTF8_ACCEPT);
    assert_true(chat_utf8_valid(NULL, 0));
}

/* Reference decoder for the property test: decodes a code point, checks
 * range, minimal length and surrogates. */
static int ref_valid(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp, min;
        size_t len, k;
        uint8_t b = p[i];
        if (b < 0x80) {
            i++;
            continue;
        }
        if ((b & 0xE0) == 0xC0) {
            len = 2, cp = b & 0x1F, min = 0x80;
        }
        else if ((b & 0xF0) == 0xE0) {
            len = 3, cp = b & 0x0F, min = 0x800;
        }
        else if ((b & 0xF8) == 0xF0) {
            len = 4, cp = b & 0x07, min = 0x10000;
        }
        else {
            return 0;
        }
        if (i + len > n) {
            return 0;
        }
        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += len;
    }
    return 1;
}

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static void random_utf8ish(uint8_t *b, size_t n)
{
    static const uint8_t pool[] = {'a',  0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF,
                                   0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEE,
                                   0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF, 0x00};
    size_t i;
    for (i = 0; i < n; i++) {
        b[i] = (rnd() & 3) ? pool[rnd() % sizeof(pool)] : (uint8_t)rnd();
    }
}

static void test_property_vs_reference(void **state)
{
    uint8_t b[12], out[36];
    int iter;
    (void)state;
    for (iter = 0; iter < 200000; iter++) {
        size_t n = rnd() % sizeof(b), o, cut;
        random_utf8ish(b, n);
        if (chat_utf8_valid(b, n) != ref_valid(b, n)) {
            fail_msg("valid() disagrees with reference at iteration %d", iter);
        }
        /* sanitize output is always valid, at most 3n, identity on valid */
        o = chat_utf8_sanitize(b, n, out, sizeof(out), 0, NULL);
        assert_true(o <= 3 * n);
        assert_true(chat_utf8_valid(out, o));
        if (ref_valid(b, n)) {
            assert_int_equal(o, n);
            assert_memory_equal(out, b, n);
            /* every truncation of valid text: the held back tail is what
             * completes it */
            for (cut = 0; cut <= n; cut++) {
                size_t pre = chat_utf8_complete_prefix(b, cut);
                assert_true(pre <= cut && cut - pre <= 3);
                assert_true(ref_valid(b, pre));
            }
        }
    }
}

static void test_complete_prefix(void **state)
{
    /* "a" U+00E9 U+20AC U+1F600 "b": boundaries at 0,1,3,6,10,11 */
    static const uint8_t s[] = {'a',  0xC3, 0xA9, 0xE2, 0x82, 0xAC,
                                0xF0, 0x9F, 0x98, 0x80, 'b'};
    static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10, 11};
    size_t n;
    (void)state;
    for (n = 0; n <= sizeof(s); n++) {
        if (chat_utf8_complete_prefix(s, n) != want[n]) {
            fail_msg("prefix of %zu: got %zu want %zu", n,
                     chat_utf8_complete_prefix(s, n), want[n]);
        }
    }
    assert_int_equal(chat_utf8_complete_prefix(NULL, 0), 0);
    /* Not a valid prefix: not held back (more bytes cannot fix it). */
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"a\xE0\x80", 3), 3);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"a\xFF", 2), 2);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"a\xC0", 2), 2);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"\x80\x80\x80\x80", 4),
                     4);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"ab\xED\xA0", 4), 4);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"ab\xED\x9F", 4), 2);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"ab\xF4\x8F\xBF", 5), 2);
    assert_int_equal(chat_utf8_complete_prefix((const uint8_t *)"ab\xF4\x90\xBF", 5), 5);
}

static void check_sanitize(const char *in, size_t n, const char *want, size_t wn)
{
    uint8_t out[128];
    size_t used;
    size_t o = chat_utf8_sanitize((const uint8_t *)in, n, out, sizeof(out), 0, &used);
    assert_int_equal(o, wn);
    assert_int_equal(used, n);
    assert_memory_equal(out, want, wn);
}

#define RC "\xEF\xBF\xBD"
#define SAN(in, want) check_sanitize(in, sizeof(in) - 1, want, sizeof(want) - 1)

static void test_sanitize(void **state)
{
    uint8_t out[8];
    (void)state;
    SAN("", "");
    SAN("hello", "hello");
    SAN("\xE2\x82\xAC \xF0\x9F\x98\x80", "\xE2\x82\xAC \xF0\x9F\x98\x80");
    SAN("\xC0\xAF", RC RC);
    SAN("\xE0\x80\xAF", RC RC RC);
    SAN("\xED\xA0\x80", RC RC RC);
    SAN("\xF4\x90\x80\x80", RC RC RC RC);
    SAN("\xE2\x82", RC); /* truncated at the end: one U+FFFD */
    SAN("\xE2\x82"
        "A",
        RC "A"); /* maximal subpart, then A again */
    SAN("\xF0\x9F\x98"
        "A",
        RC "A");
    SAN("a\xFF"
        "b",
        "a" RC "b");
    SAN("\x80\xBF", RC RC);
    /* Unicode 15 section 3.9, table 3-8 style example */
    SAN("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64",
        "a" RC RC RC "b" RC "c" RC RC "d");
    /* Output never ends inside a sequence when space runs out. */
    assert_int_equal(
        chat_utf8_sanitize((const uint8_t *)"abc\xE2\x82\xAC", 6, out, 5, 0, NULL), 3);
    assert_int_equal(chat_utf8_sanitize((const uint8_t *)"ab\xFF", 3, out, 4, 0, NULL),
                     2);
    assert_int_equal(chat_utf8_sanitize((const uint8_t *)"ab\xFF", 3, out, 5, 0, NULL),
                     5);
    assert_memory_equal(out, "ab" RC, 5);
    assert_int_equal(chat_utf8_sanitize((const uint8_t *)"ab", 2, out, 0, 0, NULL), 0);
}

/* chat_utf8_seq: the shared decoding rule (length, or the ill-formed part). */
static void test_seq(void **state)
{
    static const struct {
        const char *in;
        size_t n, len, bad;
    } seqs[] = {
        {"a", 1, 1, 0},
        {"\0", 1, 1, 0},
        {"\xc3\xa9", 2, 2, 0},         /* U+00E9 */
        {"\xe2\x82\xac", 3, 3, 0},     /* U+20AC */
        {"\xf0\x9f\x98\x80", 4, 4, 0}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 4, 0}, /* U+10FFFF */
        {"\x80", 1, 0, 1},             /* lone continuation */
        {"\xc0\xaf", 2, 0, 1},         /* overlong lead */
        {"\xe0\x80\xaf", 3, 0, 1},     /* overlong 3-byte */
        {"\xed\xa0\x80", 3, 0, 1},     /* surrogate */
        {"\xf4\x90\x80\x80", 4, 0, 1}, /* > U+10FFFF */
        {"\xe2\x82", 2, 0, 2},         /* truncated: maximal subpart of 2 */
        {"\xf0\x9f\x98", 3, 0, 3},     /* truncated 4-byte */
        {"\xe2\x28\xa1", 3, 0, 1},     /* bad second byte */
        {"\xf5\x80\x80\x80", 4, 0, 1}, /* F5 never starts a sequence */
    };
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        size_t bad = 99;
        size_t len = chat_utf8_seq((const uint8_t *)seqs[i].in, seqs[i].n, &bad);
        assert_int_equal(len, seqs[i].len);
        if (!len) {
            assert_int_equal(bad, seqs[i].bad);
        }
    }
}

/* The flags: NUL as ill-formed, controls as spaces; where a cut stops. */
static void test_sanitize_flags(void **state)
{
    uint8_t out[32];
    size_t o, used;
    chat_buf_t b;
    (void)state;

    o = chat_utf8_sanitize((const uint8_t *)"a\0b\n", 4, out, sizeof(out), 0, &used);
    assert_int_equal(o, 4);
    assert_memory_equal(out, "a\0b\n", 4);
    o = chat_utf8_sanitize((const uint8_t *)"a\0b\n", 4, out, sizeof(out),
                           CHAT_UTF8_NO_NUL, &used);
    assert_int_equal(o, 6);
    assert_memory_equal(out, "a" RC "b\n", 6);
    o = chat_utf8_sanitize((const uint8_t *)"a\0\tb\x7F\xFF", 6, out, sizeof(out),
                           CHAT_UTF8_NO_NUL | CHAT_UTF8_FLAT, &used);
    assert_int_equal(o, 10);
    assert_memory_equal(out, "a" RC " b " RC, 10);
    /* a cut: used tells where the input stopped */
    o = chat_utf8_sanitize((const uint8_t *)"ab\xE2\x82\xAC", 5, out, 4, 0, &used);
    assert_int_equal(o, 2);
    assert_int_equal(used, 2);
    o = chat_utf8_sanitize((const uint8_t *)"ab\xFF"
                                            "c",
                           4, out, 5, 0, &used);
    assert_int_equal(o, 5);
    assert_int_equal(used, 3);

    /* the growable buffer variant appends, and grows as U+FFFD needs */
    chat_buf_init(&b);
    assert_int_equal(chat_buf_puts(&b, "x"), CHAT_OK);
    assert_int_equal(
        chat_utf8_sanitize_append(&b, "\xFF\xFF\xFF\0y", 5, CHAT_UTF8_NO_NUL), CHAT_OK);
    assert_int_equal(b.len, 1 + 4 * 3 + 1);
    assert_memory_equal(b.data, "x" RC RC RC RC "y", b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(chat_utf8_sanitize_append(&b, "", 0, 0), CHAT_OK);
    assert_int_equal(b.len, 1 + 4 * 3 + 1);
    chat_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq),
        cmocka_unit_test(test_cases_whole),
        cmocka_unit_test(test_cases_bytewise),
        cmocka_unit_test(test_cases_split),
        cmocka_unit_test(test_reject_is_sticky),
        cmocka_unit_test(test_property_vs_reference),
        cmocka_unit_test(test_complete_prefix),
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_sanitize_flags),
    };
    return cmocka_run_group_tests_name("utf8", tests, NULL, NULL);
}
