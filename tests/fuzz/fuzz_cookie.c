/* fuzz_cookie - Cookie header parsing and the session token (chat/cookie.h).
 *
 * The input is a Cookie header value. Invariants on every input:
 *  - iteration ends, *pos only moves forward and stays within the header;
 *  - every cookie's name is non-empty and neither starts nor ends with a
 *    blank, and neither name nor value holds a ';': no cookie can be found
 *    inside another one's value;
 *  - chat_cookie_find returns exactly the cookies chat_cookie_next returns
 *    with that name, in the same order;
 *  - a value chat_sid_token_parse accepts formats back to the very same
 *    bytes (one spelling per token, so no two values share a MAC).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/cookie.h"

#define NAME "chatbot_sid"

static void check_value(const chat_cookie_t *c)
{
    char sid[CHAT_SID_HEX + 1], back[CHAT_SID_TOKEN_LEN + 1];
    uint8_t mac[CHAT_SID_MAC_BYTES];

    if (chat_sid_token_parse(c->value, c->value_len, sid, mac) != CHAT_OK) {
        return;
    }
    if (chat_sid_token_format(sid, mac, back, sizeof(back)) != CHAT_OK ||
        c->value_len != CHAT_SID_TOKEN_LEN || memcmp(back, c->value, c->value_len)) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *h = (const char *)data;
    size_t pos = 0, fpos = 0, last = 0;
    chat_cookie_t c, f;

    while (chat_cookie_next(h, size, &pos, &c)) {
        if (pos < last || pos > size || c.name_len == 0 || c.name < h ||
            c.name + c.name_len > h + size || c.value < h ||
            c.value + c.value_len > h + size) {
            abort();
        }
        if (memchr(c.name, ';', c.name_len) || memchr(c.value, ';', c.value_len) ||
            c.name[0] == ' ' || c.name[0] == '\t' || c.name[c.name_len - 1] == ' ' ||
            c.name[c.name_len - 1] == '\t') {
            abort();
        }
        last = pos;
        check_value(&c);
        if (c.name_len == sizeof(NAME) - 1 && !memcmp(c.name, NAME, c.name_len)) {
            if (!chat_cookie_find(h, size, NAME, &fpos, &f) || f.value != c.value ||
                f.value_len != c.value_len) {
                abort();
            }
        }
    }
    if (pos != size || chat_cookie_find(h, size, NAME, &fpos, &f)) {
        abort();
    }
    return 0;
}
