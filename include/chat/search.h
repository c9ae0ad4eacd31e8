/* chat/search.h - finding a user's words in conversation titles and
 * message text (issue 19 part 4), shared by the REST route and the
 * WebSocket op. The store is read through its provider interface
 * (chat_store_conv_list, chat_store_msg_read): search needs no provider
 * operation of its own, so every provider supports it.
 *
 * Matching is a substring match with ASCII case folding: 'A'..'Z' match
 * 'a'..'z', every other byte (so every non-ASCII code point) matches only
 * itself. Both sides are UTF-8; a match never starts or ends inside a code
 * point because the query itself is whole code points. Snippets are cut
 * on code point boundaries.
 */
#ifndef CHAT_SEARCH_H
#define CHAT_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits (docs/api.md "Search"). */
#define CHAT_SEARCH_QUERY_MAX 256        /* bytes of a query, after trimming */
#define CHAT_SEARCH_LIMIT_DEFAULT 20     /* hits returned when not asked */
#define CHAT_SEARCH_LIMIT_MAX 100        /* most hits one request may ask for */
#define CHAT_SEARCH_PER_CONV 5           /* most hits from one conversation */
#define CHAT_SEARCH_SCAN_MAX (32u << 20) /* text bytes read per request */
#define CHAT_SEARCH_SNIPPET 160          /* bytes of context around a hit, at most */

/* The offset of the first occurrence of needle[0..nlen) in hay[0..hlen)
 * at or after from, ASCII case-insensitively, or -1. nlen 0 gives -1. */
long chat_search_find(const char *hay, size_t hlen, size_t from, const char *needle,
                      size_t nlen);

/* A snippet of text around the match [pos, pos+mlen): at most width bytes
 * (width >= mlen), centred on the match, cut on code point boundaries and,
 * where possible, on white space. *start and *end receive the snippet's
 * bounds. */
void chat_search_snippet(const char *text, size_t len, size_t pos, size_t mlen,
                         size_t width, size_t *start, size_t *end);

/* Trims a query: leading and trailing ASCII white space removed. Returns
 * the trimmed length; *q is advanced past the leading white space. */
size_t chat_search_trim(const char **q, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SEARCH_H */
