/* chat/jsoncheck.h - the strict RFC 8259 check every JSON text from a
 * client passes before it is parsed (WebSocket frames, REST bodies).
 *
 * json-c, even with JSON_TOKENER_STRICT and JSON_TOKENER_VALIDATE_UTF8
 * (0.16), accepts raw control characters (TAB, LF, 0x01) inside strings,
 * single-quoted strings, NaN and Infinity, and overlong, surrogate and
 * out-of-range UTF-8. docs/protocol.md and docs/api.md promise RFC 8259
 * and UTF-8, so the grammar is checked here first, byte by byte, and json-c
 * only ever sees text that is valid.
 */
#ifndef CHAT_JSONCHECK_H
#define CHAT_JSONCHECK_H

#include <stddef.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most nesting chat_json_check can count (larger max_depth is clamped). */
#define CHAT_JSON_CHECK_MAX_DEPTH 256

/* Checks that text[0..n) is exactly one JSON value (RFC 8259), with only
 * white space (SP, HT, LF, CR) around it:
 *  - strings hold no raw control character (U+0000..U+001F) and only the
 *    escapes \" \\ \/ \b \f \n \r \t \uXXXX (a lone surrogate escape such as
 *    "\ud800" is grammatical and allowed);
 *  - numbers follow the grammar -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 *    (no NaN, Infinity, leading '+', leading zeros, hex);
 *  - the literals are true, false and null, in lower case;
 *  - the whole text is valid UTF-8 (RFC 3629: no overlongs, surrogates or
 *    code points above U+10FFFF), inside strings and out;
 *  - arrays and objects nest at most max_depth deep.
 * Returns CHAT_OK, CHAT_EUTF8 (invalid UTF-8), CHAT_ETOOBIG (nested too
 * deep) or CHAT_EPARSE (anything else). err (may be NULL) gets an English
 * reason with the byte offset; it never quotes the input. */
chat_status_t chat_json_check(const char *text, size_t n, unsigned max_depth, char *err,
                              size_t errcap);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_JSONCHECK_H */
