/* fuzz_json - the JSON writer driven by a byte program.
 *
 * Each input byte selects a writer call (begin/end, key, string from the
 * input, int, double, bool, null, raw). Whatever the sequence, the writer
 * must not crash, and whenever chat_jw_status() reports CHAT_OK the output
 * must be strict JSON that json-c parses completely and that passes
 * chat_json_check.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/jsoncheck.h"
#include "chat/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat_buf_t b;
    chat_jw_t w;
    size_t i = 0;

    chat_buf_init(&b);
    chat_jw_init(&w, &b);
    while (i < size) {
        uint8_t op = data[i++];
        size_t n = (op >> 4) < size - i ? (op >> 4) : size - i;
        const char *s = (const char *)data + i;
        int64_t v = 0;
        double d;
        size_t k;

        switch (op & 15) {
        case 0:
            chat_jw_obj_begin(&w);
            break;
        case 1:
            chat_jw_obj_end(&w);
            break;
        case 2:
            chat_jw_arr_begin(&w);
            break;
        case 3:
            chat_jw_arr_end(&w);
            break;
        case 4: {
            char key[16];
            memcpy(key, s, n);
            key[n] = '\0';
            chat_jw_key(&w, key);
            i += n;
            break;
        }
        case 5:
            chat_jw_strn(&w, s, n);
            i += n;
            break;
        case 6:
            for (k = 0; k < n && k < 8; k++) {
                v = (int64_t)(((uint64_t)v << 8) | (uint8_t)s[k]);
            }
            chat_jw_int(&w, v);
            i += n;
            break;
        case 7:
            if (n >= sizeof(d)) {
                memcpy(&d, s, sizeof(d));
                chat_jw_double(&w, d);
            }
            else {
                chat_jw_double(&w, (double)op / 7.0);
            }
            i += n;
            break;
        case 8:
            chat_jw_bool(&w, op & 16);
            break;
        case 9:
            chat_jw_null(&w);
            break;
        case 10:
            chat_jw_raw(&w, "[1,{\"a\":null}]", 14);
            break;
        case 11: {
            char key[16];
            memcpy(key, s, n);
            key[n] = '\0';
            chat_jw_kstrn(&w, key, s, n);
            i += n;
            break;
        }
        case 12:
            chat_jw_kint(&w, "i", (int64_t)op * -1000003);
            break;
        case 13:
            chat_jw_kdouble(&w, "d", (double)op * 0.37);
            break;
        case 14:
            chat_jw_kbool(&w, "b", op & 16);
            break;
        default:
            chat_jw_str(&w, NULL);
            break;
        }
    }
    if (chat_jw_status(&w) == CHAT_OK) {
        struct json_tokener *tok = json_tokener_new_ex(64);
        json_object *o;

        /* what the writer makes passes the strict check clients' JSON gets */
        if (chat_json_check(b.data, b.len, 64, NULL, 0) != CHAT_OK) {
            abort();
        }

        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        /* +1: the terminating NUL ends a top-level number */
        o = json_tokener_parse_ex(tok, b.data, (int)b.len + 1);
        if (!o && json_tokener_get_error(tok) != json_tokener_success) {
            /* a top-level "null" parses to NULL with success */
            abort();
        }
        if (json_tokener_get_parse_end(tok) != b.len) {
            abort();
        }
        json_object_put(o);
        json_tokener_free(tok);
    }
    chat_buf_free(&b);
    return 0;
}
