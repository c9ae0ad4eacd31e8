/* chat/compat.h - the vocabulary of the port-8000 controller's clients:
 * old-style bot ids and the timestamps of its history.
 *
 * Its clients name a bot by a free-form id ("BOT-001") that they put into
 * URL paths, query strings and, in its browser client, straight into HTML.
 * mod_chatbot maps such an id onto a session (docs/api.md, "Compatibility
 * with the port-8000 controller"); these rules say which ids round-trip.
 */
#ifndef CHAT_COMPAT_H
#define CHAT_COMPAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest old-style bot id, in bytes (the old service allowed 50 chars). */
#define CHAT_COMPAT_ID_MAX 64

/* 1 if s[0..n) can be an old-style bot id: 1..CHAT_COMPAT_ID_MAX bytes of
 * valid UTF-8 without control characters (C0, DEL, C1), without spaces or
 * no-break spaces at either end (so never blank), and without the characters
 * that would not survive a URL path or query unencoded (/ \ ? # %) or an HTML
 * page (< > & " ' `). Else 0. */
int chat_compat_id_valid(const char *s, size_t n);

/* Size of a timestamp "YYYY-MM-DDTHH:MM:SS.mmmZ" with its NUL. */
#define CHAT_COMPAT_TS_SIZE 25

/* Writes ms (milliseconds since the epoch) as an ISO 8601 / RFC 3339 UTC
 * timestamp with milliseconds ("2025-11-26T06:00:00.123Z", what JavaScript's
 * Date parses) into out[CHAT_COMPAT_TS_SIZE]. Years past 9999 are clamped to
 * 9999-12-31T23:59:59.999Z. */
void chat_compat_timestamp(uint64_t ms, char *out);

/* The length of the longest prefix of s[0..n) that is at most max bytes and
 * ends on a code point boundary (s valid UTF-8): for short previews. */
size_t chat_compat_cut(const char *s, size_t n, size_t max);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_COMPAT_H */
