/* chat_compat.c - old-style bot ids and timestamps for the port-8000
 * controller's clients (chat/compat.h). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat/compat.h"
#include "chat/utf8.h"

/* 1 if s[0..n) starts (at_end 0) or ends (at_end 1) with a space or a
 * NO-BREAK SPACE (C2 A0), which shows as one */
static int blank_edge(const unsigned char *s, size_t n, int at_end)
{
    if (at_end) {
        return s[n - 1] == ' ' || (n >= 2 && s[n - 2] == 0xc2 && s[n - 1] == 0xa0);
    }
    return s[0] == ' ' || (n >= 2 && s[0] == 0xc2 && s[1] == 0xa0);
}

int chat_compat_id_valid(const char *s, size_t n)
{
    size_t i;

    /* no blank at either end: an id is never blank (it becomes a title,
     * and blank titles are refused) nor looks like another one */
    if (!s || n == 0 || n > CHAT_COMPAT_ID_MAX ||
        blank_edge((const unsigned char *)s, n, 0) ||
        blank_edge((const unsigned char *)s, n, 1) ||
        !chat_utf8_valid((const uint8_t *)s, n)) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || strchr("/\\?#%<>&\"'`", c)) {
            return 0;
        }
        /* C1 controls U+0080..U+009F are C2 80..C2 9F */
        if (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] < 0xa0) {
            return 0;
        }
    }
    return 1;
}

void chat_compat_timestamp(uint64_t ms, char *out)
{
    /* 253402300799999 ms is 9999-12-31T23:59:59.999Z */
    time_t t;
    struct tm tm;
    char buf[64]; /* room for any int the compiler imagines in the fields */

    if (ms > 253402300799999ULL) {
        ms = 253402300799999ULL;
    }
    t = (time_t)(ms / 1000);
    if (!gmtime_r(&t, &tm)) {
        memcpy(out, "1970-01-01T00:00:00.000Z", CHAT_COMPAT_TS_SIZE);
        return;
    }
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (unsigned)(ms % 1000));
    memcpy(out, buf, CHAT_COMPAT_TS_SIZE - 1);
    out[CHAT_COMPAT_TS_SIZE - 1] = '\0';
}

size_t chat_compat_cut(const char *s, size_t n, size_t max)
{
    if (n <= max) {
        return n;
    }
    return chat_utf8_complete_prefix((const uint8_t *)s, max);
}
