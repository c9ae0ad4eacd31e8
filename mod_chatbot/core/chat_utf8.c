/* chat_utf8.c - UTF-8 validation (incremental, fail fast), code point
 * boundaries and sanitising, as specified by RFC 3629: no overlongs, no
 * surrogates (U+D800..U+DFFF), nothing above U+10FFFF.
 *
 * The validator keeps the number of continuation bytes still expected and
 * the range the next one must fall in; the lead byte picks that range so
 * overlongs, surrogates and out-of-range values are rejected at the first
 * byte that proves them wrong (RFC 6455 "fail fast").
 */
#include <string.h>

#include "chat/utf8.h"

#define UTF8_INSIDE 2u

/* Sets *need / *lo / *hi for lead byte b. Returns 0 if b cannot start a
 * sequence (continuation byte, C0/C1, F5..FF). ASCII gives need 0. */
static int utf8_lead(uint8_t b, uint32_t *need, uint32_t *lo, uint32_t *hi)
{
    *lo = 0x80;
    *hi = 0xBF;
    if (b < 0x80) {
        *need = 0;
        return 1;
    }
    if (b < 0xC2) {
        return 0; /* continuation byte, or overlong 2-byte lead C0/C1 */
    }
    if (b < 0xE0) {
        *need = 1;
        return 1;
    }
    if (b < 0xF0) {
        *need = 2;
        if (b == 0xE0) {
            *lo = 0xA0; /* below is an overlong 3-byte form */
        }
        else if (b == 0xED) {
            *hi = 0x9F; /* above is a surrogate */
        }
        return 1;
    }
    if (b < 0xF5) {
        *need = 3;
        if (b == 0xF0) {
            *lo = 0x90; /* below is an overlong 4-byte form */
        }
        else if (b == 0xF4) {
            *hi = 0x8F; /* above is > U+10FFFF */
        }
        return 1;
    }
    return 0;
}

size_t chat_utf8_seq(const uint8_t *p, size_t n, size_t *bad)
{
    uint32_t need, lo, hi, i;

    if (!utf8_lead(p[0], &need, &lo, &hi)) {
        if (bad) {
            *bad = 1;
        }
        return 0;
    }
    for (i = 1; i <= need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            if (bad) {
                *bad = i;
            }
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

void chat_utf8_init(chat_utf8_t *u)
{
    u->state = CHAT_UTF8_ACCEPT;
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xBF;
}

uint32_t chat_utf8_feed(chat_utf8_t *u, const uint8_t *p, size_t n)
{
    size_t i = 0;

    if (u->state == CHAT_UTF8_REJECT) {
        return CHAT_UTF8_REJECT;
    }
    while (i < n) {
        uint8_t b = p[i];

        if (u->need == 0) {
            /* Fast path: skip ASCII eight bytes at a time. */
            while (n - i >= 8) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) {
                    break;
                }
                i += 8;
            }
            if (i == n) {
                break;
            }
            b = p[i];
            if (!utf8_lead(b, &u->need, &u->lo, &u->hi)) {
                u->state = CHAT_UTF8_REJECT;
                return CHAT_UTF8_REJECT;
            }
        }
        else {
            if (b < u->lo || b > u->hi) {
                u->state = CHAT_UTF8_REJECT;
                return CHAT_UTF8_REJECT;
            }
            u->need--;
            u->lo = 0x80;
            u->hi = 0xBF;
        }
        i++;
    }
    u->state = u->need ? UTF8_INSIDE : CHAT_UTF8_ACCEPT;
    return u->state;
}

int chat_utf8_valid(const uint8_t *p, size_t n)
{
    chat_utf8_t u;

    chat_utf8_init(&u);
    return chat_utf8_feed(&u, p, n) == CHAT_UTF8_ACCEPT;
}

size_t chat_utf8_complete_prefix(const uint8_t *p, size_t n)
{
    size_t i, stop = n > 4 ? n - 4 : 0;

    /* Find the last non-continuation byte within the last 4 bytes. */
    for (i = n; i > stop; i--) {
        if ((p[i - 1] & 0xC0) != 0x80) {
            chat_utf8_t u;
            chat_utf8_init(&u);
            /* Hold back only a genuine, valid but unfinished sequence;
             * anything else cannot be completed by more bytes. */
            if (chat_utf8_feed(&u, p + i - 1, n - (i - 1)) == UTF8_INSIDE) {
                return i - 1;
            }
            return n;
        }
    }
    return n;
}

size_t chat_utf8_sanitize(const uint8_t *p, size_t n, uint8_t *out, size_t outcap,
                          unsigned flags, size_t *used)
{
    static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
    size_t i = 0, o = 0;

    while (i < n) {
        const uint8_t *rep = p + i;
        size_t k, bad = 1, rlen;

        if (p[i] == 0 && (flags & CHAT_UTF8_NO_NUL)) {
            k = 0; /* NUL counts as ill-formed: the result is a C string */
        }
        else if (p[i] < 0x80) {
            k = 1;
        }
        else {
            k = chat_utf8_seq(p + i, n - i, &bad);
        }
        if (!k) {
            /* One U+FFFD per maximal ill-formed subpart (Unicode 3.9,
             * "U+FFFD substitution of maximal subparts"): the byte that
             * ended it is looked at again as a possible lead. */
            rep = fffd;
            rlen = 3;
            k = bad;
        }
        else {
            rlen = k;
            if ((flags & CHAT_UTF8_FLAT) && k == 1 && (p[i] < 0x20 || p[i] == 0x7F)) {
                rep = (const uint8_t *)" ";
            }
        }
        if (outcap - o < rlen) {
            break; /* never a partial sequence */
        }
        memcpy(out + o, rep, rlen);
        o += rlen;
        i += k;
    }
    if (used) {
        *used = i;
    }
    return o;
}

chat_status_t chat_utf8_sanitize_append(chat_buf_t *out, const char *s, size_t n,
                                        unsigned flags)
{
    const uint8_t *p = (const uint8_t *)s;

    while (n > 0) {
        size_t o, used;

        /* room for all of it if it is clean; a U+FFFD grows the output, so
         * a dirty text may take a few rounds (the buffer grows by doubling) */
        if (chat_buf_reserve(out, n + 3) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        o = chat_utf8_sanitize(p, n, (uint8_t *)out->data + out->len,
                               out->cap - out->len - 1, flags, &used);
        out->len += o;
        out->data[out->len] = '\0';
        p += used;
        n -= used;
    }
    return CHAT_OK;
}
