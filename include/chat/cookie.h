/* chat/cookie.h - the Cookie request header read by name (RFC 6265), and
 * the signed session token the anonymous identity cookie carries.
 *
 * A browser sends "Cookie: a=1; chatbot_sid=...; b=2": pairs separated by
 * ";", each "name=value". Cookies are found by splitting on ";" and
 * comparing whole names, never by searching for "chatbot_sid=" in the
 * text: that would find it inside another cookie's value
 * ("x=chatbot_sid=..."), which anyone who can set a cookie for the site
 * could use to choose someone else's identity.
 *
 * The token is "<32 lowercase hex>.<43 base64url>": a 128-bit random id
 * and an HMAC-SHA256 over it under the server's secret. The MAC itself is
 * computed and compared (in constant time) by the glue with libcrypto; this
 * unit only formats and parses the token, so that a malformed value is
 * refused before any key is used.
 */
#ifndef CHAT_COOKIE_H
#define CHAT_COOKIE_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One cookie-pair of a Cookie header. Points into the header text. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* without surrounding double quotes */
    size_t value_len;
} chat_cookie_t;

/* Reads the next cookie-pair of the Cookie header value hdr[0..len),
 * starting at *pos (0 for the first) and moving *pos past it. Pairs are
 * separated by ';'; spaces and tabs around names and values are ignored
 * (RFC 6265 section 5.2 parsing, as browsers send it); a value wrapped in
 * double quotes loses them. A piece without '=' or with an empty name is
 * skipped (it names no cookie). Returns 1 with c filled, or 0 at the end. */
int chat_cookie_next(const char *hdr, size_t len, size_t *pos, chat_cookie_t *c);

/* Like chat_cookie_next, but only returns cookies whose name is exactly
 * name (case-sensitive, as cookie names are). Call again with the same
 * *pos for the next cookie of that name (a browser sends several when
 * cookies of one name were set for different paths or domains). */
int chat_cookie_find(const char *hdr, size_t len, const char *name, size_t *pos,
                     chat_cookie_t *c);

/* ---- the signed session token -------------------------------------------- */

#define CHAT_SID_BYTES 16 /* random id */
#define CHAT_SID_HEX 32
#define CHAT_SID_MAC_BYTES 32 /* HMAC-SHA256 */
#define CHAT_SID_MAC_B64 43   /* unpadded base64url of 32 bytes */
#define CHAT_SID_TOKEN_LEN (CHAT_SID_HEX + 1 + CHAT_SID_MAC_B64)
/* What the MAC covers: this label, then the 32 hex digits. The label
 * versions the format and keeps the key from signing anything else. */
#define CHAT_SID_MAC_LABEL "chatbot-sid/1:"
#define CHAT_SID_MAC_INPUT_LEN (sizeof(CHAT_SID_MAC_LABEL) - 1 + CHAT_SID_HEX)

/* Writes the bytes the MAC is computed over for sid_hex (32 lowercase hex
 * digits) into out (cap >= CHAT_SID_MAC_INPUT_LEN). Returns the length, or
 * 0 if sid_hex is not 32 lowercase hex digits or out is too small. */
size_t chat_sid_mac_input(const char *sid_hex, char *out, size_t cap);

/* Formats "<sid_hex>.<base64url(mac)>" plus a NUL into out (cap >=
 * CHAT_SID_TOKEN_LEN + 1). CHAT_OK, or CHAT_EINVAL (bad sid, small out). */
chat_status_t chat_sid_token_format(const char *sid_hex,
                                    const uint8_t mac[CHAT_SID_MAC_BYTES], char *out,
                                    size_t cap);

/* Splits a cookie value into the id (sid_hex: 32 digits and a NUL) and the
 * MAC bytes. The value must have exactly the form chat_sid_token_format
 * writes: 32 lowercase hex digits, '.', 43 base64url characters whose
 * unused low bits are zero (one spelling per token). CHAT_OK or
 * CHAT_EPARSE. Says nothing about whether the MAC is right. */
chat_status_t chat_sid_token_parse(const char *v, size_t n,
                                   char sid_hex[CHAT_SID_HEX + 1],
                                   uint8_t mac[CHAT_SID_MAC_BYTES]);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_COOKIE_H */
