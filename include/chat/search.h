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
 *
 * A message stored with attachments (CHAT_MSG_ATTACH, chat/attach.h) is
 * searched as what the user wrote and sent: the user's own text first,
 * then each attachment's content; the envelope around an attachment
 * ("<attachment name=... bytes=...>") is never matched.
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

/* Where a match was found in a stored message (chat_search_message). */
typedef struct {
    const char *seg;  /* the text the match is in: the user's text or an */
    size_t seg_len;   /* attachment's content (the snippet is cut from it) */
    size_t pos;       /* the match's offset in seg */
    const char *name; /* the attachment's name, or NULL (the user's text) */
    size_t name_len;
} chat_search_hit_t;

/* The first match of needle[0..nlen) in a stored message text[0..len).
 * With attach (the message is flagged CHAT_MSG_ATTACH) the text is split
 * as chat_attach_decode does: the user's text is searched first, then each
 * attachment's content in order; the envelopes are not searched (a text
 * that is not in the stored form is searched whole). 1 and *hit filled, or
 * 0 when there is no match. */
int chat_search_message(const char *text, size_t len, int attach, const char *needle,
                        size_t nlen, chat_search_hit_t *hit);

/* Trims a query: leading and trailing ASCII white space removed. Returns
 * the trimmed length; *q is advanced past the leading white space. */
size_t chat_search_trim(const char **q, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SEARCH_H */
