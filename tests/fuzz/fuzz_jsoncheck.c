/* fuzz_jsoncheck - the strict RFC 8259 check (chat/jsoncheck.h) against
 * json-c.
 *
 * Whatever chat_json_check accepts, json-c in strict mode must parse
 * completely, as one value (the check is stricter, never looser); and an
 * accepted text is valid UTF-8 with no raw control character anywhere
 * except the four JSON white-space bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/jsoncheck.h"
#include "chat/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[160];
    json_tokener *tok;
    json_object *o;
    size_t i;

    if (size > 65536 ||
        chat_json_check((const char *)data, size, 32, err, sizeof(err)) != CHAT_OK) {
        return 0;
    }
    if (!chat_utf8_valid(data, size)) {
        abort();
    }
    for (i = 0; i < size; i++) {
        if (data[i] < 0x20 && data[i] != ' ' && data[i] != '\t' && data[i] != '\n' &&
            data[i] != '\r') {
            abort();
        }
    }
    tok = json_tokener_new_ex(33);
    if (!tok) {
        return 0;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, (const char *)data, (int)size);
    if (!o && json_tokener_get_error(tok) == json_tokener_continue) {
        /* a lone top-level number is complete only at the end of input for
         * json-c: give it that end (then all of the input was read) */
        o = json_tokener_parse_ex(tok, "", 1);
        if (json_tokener_get_error(tok) != json_tokener_success) {
            abort();
        }
    }
    else if (json_tokener_get_error(tok) != json_tokener_success) {
        abort();
    }
    else {
        size_t end = json_tokener_get_parse_end(tok);
        /* only white space may follow what json-c read */
        for (; end < size; end++) {
            if (!strchr(" \t\r\n", data[end])) {
                abort();
            }
        }
    }
    if (o) {
        json_object_put(o);
    }
    json_tokener_free(tok);
    return 0;
}
