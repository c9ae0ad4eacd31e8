/* chat_confparse.c - parsers for directive values (sizes, durations,
 * numbers, booleans, rates, backend URLs, names).
 *
 * Each parser returns NULL or a message that says what is allowed. Messages
 * that state a caller-given range are formatted into one static buffer
 * (errbuf below): they stay valid until the next call of a chat_parse_*
 * function. This is the unit's only mutable global; it is not thread safe,
 * which is fine because httpd reads its configuration in a single thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat/confparse.h"

static char errbuf[256];

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static int ieq(const char *a, const char *b)
{
    while (*a && *b && lower(*a) == lower(*b)) {
        a++;
        b++;
    }
    return *a == '\0' && *b == '\0';
}

/* Reads decimal digits at *pp into *out. Returns 0 if there are none, -1
 * if the value exceeds UINT64_MAX (all digits are still consumed), else 1. */
static int read_u64(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;
    int over = 0;

    if (!is_digit(*p)) {
        return 0;
    }
    for (; is_digit(*p); p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) {
            over = 1;
        }
        else {
            v = v * 10 + d;
        }
    }
    *pp = p;
    *out = v;
    return over ? -1 : 1;
}

/* "64k", "16M", "1G" or plain bytes: the shortest exact spelling. */
static void fmt_size(char *out, size_t cap, uint64_t v)
{
    if (v && v % GIB == 0) {
        snprintf(out, cap, "%lluG", (unsigned long long)(v / GIB));
    }
    else if (v && v % MIB == 0) {
        snprintf(out, cap, "%lluM", (unsigned long long)(v / MIB));
    }
    else if (v && v % KIB == 0) {
        snprintf(out, cap, "%lluk", (unsigned long long)(v / KIB));
    }
    else {
        snprintf(out, cap, "%llu", (unsigned long long)v);
    }
}

const char *chat_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    const char *p = s;
    uint64_t v = 0, mult = 1;
    char lo[32], hi[32];
    int r;

    fmt_size(lo, sizeof(lo), min);
    fmt_size(hi, sizeof(hi), max);
    r = s ? read_u64(&p, &v) : 0;
    if (r != 0) {
        switch (*p) {
        case 'k':
        case 'K':
            mult = KIB;
            p++;
            break;
        case 'm':
        case 'M':
            mult = MIB;
            p++;
            break;
        case 'g':
        case 'G':
            mult = GIB;
            p++;
            break;
        default:
            break;
        }
        if (*p == 'B') {
            p++;
        }
        else if (mult != 1 && p[0] == 'i' && p[1] == 'B') {
            p += 2;
        }
    }
    if (r == 0 || *p != '\0') {
        snprintf(errbuf, sizeof(errbuf),
                 "expected a size such as 65536, 64k or 16M (between %s and %s; "
                 "k, M and G are multiples of 1024)",
                 lo, hi);
        return errbuf;
    }
    if (r < 0 || v > UINT64_MAX / mult || v * mult < min || v * mult > max) {
        snprintf(errbuf, sizeof(errbuf),
                 "out of range: the size must be between %s and %s", lo, hi);
        return errbuf;
    }
    *out = v * mult;
    return NULL;
}

/* "250ms", "5s", "2m", "1h" or plain milliseconds: the shortest exact one. */
static void fmt_duration(char *out, size_t cap, int64_t ms)
{
    if (ms && ms % 3600000 == 0) {
        snprintf(out, cap, "%lldh", (long long)(ms / 3600000));
    }
    else if (ms && ms % 60000 == 0) {
        snprintf(out, cap, "%lldm", (long long)(ms / 60000));
    }
    else if (ms % 1000 == 0) {
        snprintf(out, cap, "%llds", (long long)(ms / 1000));
    }
    else {
        snprintf(out, cap, "%lldms", (long long)ms);
    }
}

const char *chat_parse_duration(const char *s, int64_t min_ms, int64_t max_ms,
                                int64_t *out_ms)
{
    const char *p = s;
    uint64_t v = 0, mult = 1000;
    char lo[32], hi[32];
    int r;

    fmt_duration(lo, sizeof(lo), min_ms);
    fmt_duration(hi, sizeof(hi), max_ms);
    r = s ? read_u64(&p, &v) : 0;
    if (r != 0) {
        if (p[0] == 'm' && p[1] == 's') {
            mult = 1;
            p += 2;
        }
        else if (*p == 's') {
            p++;
        }
        else if (*p == 'm') {
            mult = 60000;
            p++;
        }
        else if (*p == 'h') {
            mult = 3600000;
            p++;
        }
    }
    if (r == 0 || *p != '\0') {
        snprintf(errbuf, sizeof(errbuf),
                 "expected a duration such as 500ms, 30s, 5m or 1h, a bare number being "
                 "seconds (between %s and %s)",
                 lo, hi);
        return errbuf;
    }
    if (r < 0 || v > (uint64_t)INT64_MAX / mult || (int64_t)(v * mult) < min_ms ||
        (int64_t)(v * mult) > max_ms) {
        snprintf(errbuf, sizeof(errbuf),
                 "out of range: the duration must be between %s and %s", lo, hi);
        return errbuf;
    }
    *out_ms = (int64_t)(v * mult);
    return NULL;
}

const char *chat_parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *p = s;
    uint64_t mag = 0;
    int neg = 0, r = 0;
    int64_t v;

    if (s) {
        if (*p == '-' || *p == '+') {
            neg = *p == '-';
            p++;
        }
        r = read_u64(&p, &mag);
    }
    if (r == 0 || *p != '\0') {
        snprintf(errbuf, sizeof(errbuf), "expected an integer between %lld and %lld",
                 (long long)min, (long long)max);
        return errbuf;
    }
    if (r < 0 || mag > (uint64_t)INT64_MAX + (neg ? 1u : 0u)) {
        goto range;
    }
    /* -2^63 has no positive counterpart: negate in unsigned arithmetic */
    v = neg ? (int64_t)(0 - mag) : (int64_t)mag;
    if (v < min || v > max) {
        goto range;
    }
    *out = v;
    return NULL;
range:
    snprintf(errbuf, sizeof(errbuf),
             "out of range: expected an integer between %lld and %lld", (long long)min,
             (long long)max);
    return errbuf;
}

const char *chat_parse_double(const char *s, double min, double max, double *out)
{
    const char *p = s;
    char *end;
    double v;
    int digits = 0;

    /* Only plain decimal notation: strtod alone would also take leading
     * blanks, hex floats, "nan" and "inf". */
    if (s) {
        if (*p == '-' || *p == '+') {
            p++;
        }
        for (; is_digit(*p); p++) {
            digits++;
        }
        if (*p == '.') {
            for (p++; is_digit(*p); p++) {
                digits++;
            }
        }
        if (digits && (*p == 'e' || *p == 'E')) {
            const char *q = p + 1;
            if (*q == '-' || *q == '+') {
                q++;
            }
            p = is_digit(*q) ? q : p;
            while (is_digit(*p)) {
                p++;
            }
        }
    }
    if (!s || !digits || *p != '\0') {
        snprintf(errbuf, sizeof(errbuf),
                 "expected a number such as 0.5 between %g and %g", min, max);
        return errbuf;
    }
    errno = 0;
    v = strtod(s, &end);
    if (*end != '\0' || !isfinite(v) || v < min || v > max) {
        snprintf(errbuf, sizeof(errbuf),
                 "out of range: expected a number between %g and %g", min, max);
        return errbuf;
    }
    *out = v;
    return NULL;
}

const char *chat_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"on", "yes", "true", "1"};
    static const char *const no[] = {"off", "no", "false", "0"};
    size_t i;

    for (i = 0; s && i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (ieq(s, yes[i])) {
            *out = 1;
            return NULL;
        }
        if (ieq(s, no[i])) {
            *out = 0;
            return NULL;
        }
    }
    return "expected On or Off (also yes/no, true/false, 1/0)";
}

const char *chat_parse_rate(const char *s, uint32_t *count, int64_t *period_ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"s", 1000},    {"sec", 1000},     {"second", 1000},   {"seconds", 1000},
        {"m", 60000},   {"min", 60000},    {"minute", 60000},  {"minutes", 60000},
        {"h", 3600000}, {"hour", 3600000}, {"hours", 3600000},
    };
    const char *p = s;
    uint64_t v = 0;
    size_t i;
    int r = s ? read_u64(&p, &v) : 0;

    if (r != 0 && *p == '/') {
        for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (ieq(p + 1, units[i].unit)) {
                if (r < 0 || v < 1 || v > 1000000) {
                    return "out of range: the count must be between 1 and 1000000";
                }
                *count = (uint32_t)v;
                *period_ms = units[i].ms;
                return NULL;
            }
        }
    }
    return "expected a rate such as 10/min, 5/s or 100/hour (a count between 1 and "
           "1000000 per s, sec, m, min, minute, h or hour)";
}

/* ---- URLs ------------------------------------------------------------------ */

static int is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 pchar minus pct-encoded (checked separately): unreserved,
 * sub-delims, ':' and '@'. */
static int is_pchar(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-._~!$&'()*+,;=:@", c) != NULL);
}

#define URL_EXPECTED                                                                     \
    "expected an http:// or https:// URL such as http://127.0.0.1:11434 (host, "         \
    "optional port and path)"

static const char *parse_host(const char *h, size_t n, chat_url_t *u)
{
    char tmp[256];
    size_t i;
    int alldigits = 1;

    if (n == 0) {
        return "the URL has no host; " URL_EXPECTED;
    }
    if (n >= sizeof(u->host)) {
        return "the URL host is too long (at most 255 characters)";
    }
    if (h[0] == '[') {
        struct in6_addr a6;
        if (n < 3 || h[n - 1] != ']') {
            return "invalid IPv6 address in the URL: expected one in brackets such as "
                   "http://[::1]:11434";
        }
        memcpy(tmp, h + 1, n - 2);
        tmp[n - 2] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1) {
            return "invalid IPv6 address in the URL: expected one in brackets such as "
                   "http://[::1]:11434 (zone ids are not supported)";
        }
    }
    else {
        for (i = 0; i < n; i++) {
            char c = h[i];
            if (!(is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_')) {
                return "invalid URL host: expected a host name (letters, digits, '-', "
                       "'.', '_'), an IPv4 address or an IPv6 address in brackets";
            }
            if (c == '.' && (i == 0 || h[i - 1] == '.')) {
                return "invalid URL host: a host name has an empty label ('..' or a "
                       "leading '.')";
            }
            alldigits &= is_digit(c) || c == '.';
        }
        if (alldigits) {
            struct in_addr a4;
            memcpy(tmp, h, n);
            tmp[n] = '\0';
            if (inet_pton(AF_INET, tmp, &a4) != 1) {
                return "invalid IPv4 address in the URL: expected four numbers 0-255 "
                       "such as 127.0.0.1";
            }
        }
    }
    memcpy(u->host, h, n);
    u->host[n] = '\0';
    return NULL;
}

const char *chat_parse_url(const char *s, chat_url_t *out)
{
    chat_url_t u;
    const char *p, *auth, *aend, *hend, *c;
    size_t plen;

    if (!s) {
        return URL_EXPECTED;
    }
    for (c = s; *c; c++) {
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c == 0x7F) {
            return "the URL must not contain whitespace or control characters";
        }
    }
    memset(&u, 0, sizeof(u));
    if (strncasecmp(s, "http://", 7) == 0) {
        strcpy(u.scheme, "http");
        u.port = 80;
        auth = s + 7;
    }
    else if (strncasecmp(s, "https://", 8) == 0) {
        strcpy(u.scheme, "https");
        u.port = 443;
        auth = s + 8;
    }
    else {
        return URL_EXPECTED;
    }
    /* the authority ends at the first '/', '?' or '#' */
    aend = auth + strcspn(auth, "/?#");
    if (memchr(auth, '@', (size_t)(aend - auth))) {
        return "the URL must not contain user info (user:password@); use the "
               "backend's key directive for credentials";
    }
    /* host, then an optional :port (an IPv6 literal has colons inside []) */
    if (*auth == '[') {
        const char *rb = memchr(auth, ']', (size_t)(aend - auth));
        hend = rb ? rb + 1 : aend;
    }
    else {
        hend = memchr(auth, ':', (size_t)(aend - auth));
        if (!hend) {
            hend = aend;
        }
    }
    {
        const char *err = parse_host(auth, (size_t)(hend - auth), &u);
        if (err) {
            return err;
        }
    }
    if (hend < aend) {
        uint64_t port = 0;
        const char *q = hend + 1;
        if (*hend != ':' || read_u64(&q, &port) != 1 || q != aend || aend - hend > 6 ||
            port < 1 || port > 65535) {
            return "invalid URL port: expected a number between 1 and 65535 after "
                   "the host";
        }
        u.port = (int)port;
    }
    p = aend;
    if (*p == '?' || *p == '#') {
        return "the URL must not have a query string (?) or fragment (#): give only "
               "scheme, host, port and path";
    }
    for (c = p; *c; c++) {
        if (*c == '?' || *c == '#') {
            return "the URL must not have a query string (?) or fragment (#): give "
                   "only scheme, host, port and path";
        }
        if (*c == '%') {
            if (!is_hex(c[1]) || !is_hex(c[2])) {
                return "invalid URL path: '%' must start an escape such as %20";
            }
            c += 2;
        }
        else if (*c != '/' && !is_pchar(*c)) {
            return "invalid URL path: characters outside letters, digits and "
                   "-._~!$&'()*+,;=:@/ must be percent-encoded";
        }
    }
    plen = strlen(p);
    while (plen > 0 && p[plen - 1] == '/') {
        plen--;
    }
    if (plen >= sizeof(u.path)) {
        return "the URL path is too long (at most 511 characters)";
    }
    memcpy(u.path, p, plen);
    u.path[plen] = '\0';
    *out = u;
    return NULL;
}

int chat_parse_kv(const char *s, char *keybuf, size_t keycap, const char **value)
{
    size_t n = 0;

    if (!s) {
        return 0;
    }
    while ((s[n] >= 'a' && s[n] <= 'z') || s[n] == '_') {
        n++;
    }
    if (n == 0 || s[n] != '=' || n >= keycap) {
        return 0;
    }
    memcpy(keybuf, s, n);
    keybuf[n] = '\0';
    *value = s + n + 1;
    return 1;
}

const char *chat_parse_name(const char *s)
{
    static const char msg[] = "expected a name of 1 to 64 characters from A-Z, a-z, "
                              "0-9, '_', '.' and '-', starting with a letter or digit";
    size_t i;

    if (!s || !(is_alpha(s[0]) || is_digit(s[0]))) {
        return msg;
    }
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (i >= 64 ||
            !(is_alpha(c) || is_digit(c) || c == '_' || c == '.' || c == '-')) {
            return msg;
        }
    }
    return NULL;
}
