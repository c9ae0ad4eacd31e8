/* chat/attach.h - text attachments of a user message (issue 19 part 7).
 *
 * A message with attachments is stored as ONE message text, flagged
 * CHAT_MSG_ATTACH (chat/store.h), so that every store provider keeps it
 * without a new operation and the text that reaches the model, the size
 * counted against ChatbotMaxMessageBytes and the context budget are all
 * the same bytes. The attachments come first, each quoted in an envelope
 * whose length is explicit (nothing in a file can end it early), then the
 * user's own text:
 *
 *   <attachment name="notes.txt" bytes="12">\n
 *   ...12 bytes...\n
 *   </attachment>\n\n
 *   (more attachments)
 *   the user's text
 *
 * A name is 1..CHAT_ATTACH_NAME_MAX bytes of UTF-8 without control
 * characters, quotes, '<', '>', '/' or '\\'. Content must be text: valid
 * UTF-8 without U+0000 (binary files are refused).
 */
#ifndef CHAT_ATTACH_H
#define CHAT_ATTACH_H

#include <stddef.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_ATTACH_MAX 8        /* attachments per message */
#define CHAT_ATTACH_NAME_MAX 255 /* bytes of a name */

typedef struct {
    const char *name;
    size_t name_len;
    const char *content;
    size_t len;
} chat_attach_t;

/* NULL if name[0..len) may name an attachment, else why not (a sentence). */
const char *chat_attach_name_error(const char *name, size_t len);

/* 1 if p[0..n) is text: valid UTF-8 without NUL bytes. */
int chat_attach_is_text(const char *p, size_t n);

/* The bytes chat_attach_encode writes for these attachments and text. */
size_t chat_attach_size(const chat_attach_t *a, size_t n, size_t text_len);

/* Appends the stored form (attachments then text) to out. The attachments
 * must have been checked (names, text). CHAT_OK or CHAT_ENOMEM. */
chat_status_t chat_attach_encode(chat_buf_t *out, const chat_attach_t *a, size_t n,
                                 const char *text, size_t text_len);

/* Splits a stored text: fills a[0..cap) with the attachments (pointing into
 * s), *n with their number and *text / *text_len with the user's text.
 * Returns CHAT_OK, or CHAT_EPARSE when s is not in the stored form (then
 * *n is 0 and the text is all of s: a damaged or foreign record is shown
 * as it is, never trusted). */
chat_status_t chat_attach_decode(const char *s, size_t len, chat_attach_t *a, size_t cap,
                                 size_t *n, const char **text, size_t *text_len);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_ATTACH_H */
