/* chat/utf8.h - UTF-8 validation (incremental) and code point boundaries.
 *
 * Used by the WebSocket layer (RFC 6455 requires text messages to be valid
 * UTF-8, checked as fragments arrive), by the stream relay (a frame sent
 * to the browser never ends inside a code point), by the client message
 * parser and by the backend reply parsers (which sanitise what they emit).
 */
#ifndef CHAT_UTF8_H
#define CHAT_UTF8_H

#include <stddef.h>
#include <stdint.h>

#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_UTF8_ACCEPT 0u
#define CHAT_UTF8_REJECT 1u

/* Incremental validator state; start at CHAT_UTF8_ACCEPT (zero). */
typedef struct {
    uint32_t state;  /* CHAT_UTF8_ACCEPT, CHAT_UTF8_REJECT or "inside" */
    uint32_t need;   /* continuation bytes still expected */
    uint32_t lo, hi; /* allowed range of the next continuation byte */
} chat_utf8_t;

void chat_utf8_init(chat_utf8_t *u);
/* Feeds bytes. Returns CHAT_UTF8_REJECT as soon as the input can no longer
 * be valid UTF-8 (overlongs, surrogates, > U+10FFFF, bad continuation),
 * else CHAT_UTF8_ACCEPT if it ends on a code point boundary, else 2
 * ("inside a sequence, so far valid"). Once rejected, stays rejected. */
uint32_t chat_utf8_feed(chat_utf8_t *u, const uint8_t *p, size_t n);

/* The length (1..4) of the well-formed UTF-8 sequence that starts p[0..n)
 * (n >= 1), or 0 if there is none: then *bad (if not NULL) is the length
 * (1..3) of the maximal ill-formed subpart, which Unicode recommends to
 * replace by one U+FFFD. The one decoding rule every unit of the core uses
 * (RFC 3629: no overlongs, surrogates or code points above U+10FFFF). */
size_t chat_utf8_seq(const uint8_t *p, size_t n, size_t *bad);

/* 1 if p[0..n) is entirely valid UTF-8, else 0. */
int chat_utf8_valid(const uint8_t *p, size_t n);

/* Length of the longest prefix of p[0..n) that ends on a code point
 * boundary, assuming the input is valid UTF-8 so far: the bytes after it
 * (at most 3) are an incomplete trailing sequence to carry over. */
size_t chat_utf8_complete_prefix(const uint8_t *p, size_t n);

/* chat_utf8_sanitize flags */
#define CHAT_UTF8_NO_NUL 1u /* NUL is ill-formed too: the result is a safe C string */
#define CHAT_UTF8_FLAT 2u   /* C0 controls and DEL become spaces (one-line text) */

/* The one sanitiser of the core. Writes to out (capacity outcap) a copy of
 * p[0..n) where every ill-formed sequence (its maximal subpart, as Unicode
 * recommends) is replaced by U+FFFD (EF BF BD). Stops before a sequence
 * that does not fit, so the output never ends inside a code point; *used
 * (if not NULL) gets the input bytes consumed. Returns the bytes written;
 * needs at most 3*n bytes. */
size_t chat_utf8_sanitize(const uint8_t *p, size_t n, uint8_t *out, size_t outcap,
                          unsigned flags, size_t *used);

/* chat_utf8_sanitize appending to a growable buffer. CHAT_OK or
 * CHAT_ENOMEM (out then holds a sanitised prefix). */
chat_status_t chat_utf8_sanitize_append(chat_buf_t *out, const char *s, size_t n,
                                        unsigned flags);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_UTF8_H */
