/* chat/confparse.h - parsers for directive values.
 *
 * Directive setters in the glue hand their arguments to these functions;
 * each returns NULL on success or a static English description of what is
 * allowed (e.g. "expected a size such as 65536, 64k or 16M"). The glue
 * prefixes the directive name and the bad value, so `apachectl -t` tells
 * the sysadmin exactly what is wrong. Messages that state the caller's range
 * live in one static buffer, valid until the next chat_parse_* call (not
 * thread safe: configuration is read by one thread). No parser accepts
 * surrounding whitespace or a sign where none is meaningful; on error *out
 * is left untouched.
 */
#ifndef CHAT_CONFPARSE_H
#define CHAT_CONFPARSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "65536", "64k", "64K", "16M", "1G" (binary multiples); a unit may be
 * followed by "B" or "iB" ("64KB", "16MiB" are 1024-based too), a bare
 * number by "B". Overflow-checked, range-checked against [min, max]. */
const char *chat_parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Durations: "250ms", "5s", "2m", "1h"; a bare number is seconds; whole
 * numbers only. Result in milliseconds, overflow-checked, range-checked
 * against [min_ms, max_ms]. */
const char *chat_parse_duration(const char *s, int64_t min_ms, int64_t max_ms,
                                int64_t *out_ms);

/* Decimal integers with an optional sign, in [min, max]. */
const char *chat_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Plain decimal floating point ("0.5", "-2", "1e3"; no hex, nan or inf)
 * in [min, max]. */
const char *chat_parse_double(const char *s, double min, double max, double *out);

/* "on"/"off" (also yes/no, true/false, 1/0), case-insensitive. */
const char *chat_parse_bool(const char *s, int *out);

/* A rate: "10/min", "10/m", "5/s", "5/sec", "100/hour", "100/h" (also
 * second(s), minute(s), hours; units case-insensitive).
 * *count in [1, 1000000] events per *period_ms milliseconds. */
const char *chat_parse_rate(const char *s, uint32_t *count, int64_t *period_ms);

/* An absolute http:// or https:// URL with a host (IPv6 in brackets
 * allowed), optional port (1..65535) and path; no user info, query or
 * fragment; no whitespace or control characters. The scheme is returned
 * in lower case, an IPv6 host with its brackets ("[::1]"), so that
 * scheme "://" host ":" port path is a valid base URL. The path is returned
 * without a trailing '/' ("http://h:11434/" -> path ""). */
typedef struct {
    char scheme[8];
    char host[256];
    int port;       /* explicit or the scheme's default */
    char path[512]; /* "" or "/prefix" */
} chat_url_t;
const char *chat_parse_url(const char *s, chat_url_t *out);

/* Splits "key=value". Returns 1 and sets key (copied into keybuf) and
 * *value (pointing into s) if s has the form [a-z_]+=..., else 0. */
int chat_parse_kv(const char *s, char *keybuf, size_t keycap, const char **value);

/* A name for bots, backends and commands: 1..64 chars of [A-Za-z0-9_.-],
 * starting with a letter or digit. */
const char *chat_parse_name(const char *s);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_CONFPARSE_H */
