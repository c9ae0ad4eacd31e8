/* tests/unit/common/strict_utf8.h - an independent strict UTF-8 check (no
 * NUL, no surrogates, no overlongs, nothing above U+10FFFF), for the
 * invariants of the unit tests and the fuzzers: it does not use the core's
 * own checker, which is what they test. */
#ifndef TEST_STRICT_UTF8_H
#define TEST_STRICT_UTF8_H

#include <stddef.h>
#include <stdint.h>

static inline int strict_utf8(const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        uint32_t cp;
        size_t k, j;
        if (c == 0) {
            return 0;
        }
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1;
            cp = c & 0x1F;
        }
        else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        }
        else if ((c & 0xF8) == 0xF0) {
            k = 3;
            cp = c & 0x07;
        }
        else {
            return 0;
        }
        for (j = 1; j <= k; j++) {
            if (i + j >= n || (p[i + j] & 0xC0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            return 0;
        }
        i += k + 1;
    }
    return 1;
}

#endif /* TEST_STRICT_UTF8_H */
