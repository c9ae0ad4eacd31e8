/* fuzz_settings.c - libFuzzer target for the settings blob (chat/settings.h).
 *
 * Input: a blob as the store would return it (any bytes). Invariants:
 *  - parsing never reads outside the blob, and what it returns points
 *    inside it;
 *  - a parsed model passes chat_settings_model_ok (no newline, no control
 *    byte), a parsed temperature is finite, a parsed prompt has no NUL;
 *  - what was parsed writes back, and that blob parses to the same values.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/settings.h"

static int inside(const char *p, size_t n, const uint8_t *d, size_t len)
{
    return p >= (const char *)d && p + n <= (const char *)d + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat_settings_t a, b;
    chat_buf_t buf;

    chat_settings_parse((const char *)data, size, &a);
    if (a.model && (!inside(a.model, a.model_len, data, size) ||
                    !chat_settings_model_ok(a.model, a.model_len))) {
        abort();
    }
    if (a.system && (!inside(a.system, a.system_len, data, size) ||
                     memchr(a.system, '\0', a.system_len))) {
        abort();
    }
    if (a.has_temperature && !isfinite(a.temperature)) {
        abort();
    }
    chat_buf_init(&buf);
    if (chat_settings_write(&a, &buf) != CHAT_OK) {
        abort();
    }
    chat_settings_parse(buf.data, buf.len, &b);
    if ((a.model != NULL) != (b.model != NULL) || a.model_len != b.model_len ||
        (a.model && memcmp(a.model, b.model, a.model_len)) ||
        (a.system != NULL) != (b.system != NULL) || a.system_len != b.system_len ||
        (a.system && memcmp(a.system, b.system, a.system_len)) ||
        a.has_temperature != b.has_temperature ||
        (a.has_temperature && a.temperature != b.temperature)) {
        abort();
    }
    chat_buf_free(&buf);
    return 0;
}
