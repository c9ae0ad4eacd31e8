/* chat/settings.h - the per-conversation settings blob (model, system
 * prompt, temperature) as the store keeps it (chat_store_conv_meta_*):
 *
 *     model=<name>\n            (absent: the bot's model)
 *     temperature=<number>\n    (absent: the bot's)
 *     system=<text to the end>  (absent: the bot's system prompt)
 *
 * A model name has no control characters (so no newline); the system
 * prompt is last and may hold anything but NUL. Unknown lines are skipped,
 * so a newer writer's blob reads in an older reader. */
#ifndef CHAT_SETTINGS_H
#define CHAT_SETTINGS_H

#include <stddef.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_SETTINGS_MODEL_MAX 200 /* bytes of a model name */

typedef struct {
    const char *model; /* NULL: none; points into the parsed blob */
    size_t model_len;
    const char *system; /* NULL: none; points into the parsed blob */
    size_t system_len;
    double temperature; /* valid if has_temperature */
    int has_temperature;
} chat_settings_t;

/* Reads a blob; out's strings point into blob (not NUL-terminated). A
 * malformed line (a temperature that is not a finite number, a model with
 * a control character) is skipped. Never fails. */
void chat_settings_parse(const char *blob, size_t len, chat_settings_t *out);

/* Appends the blob of s to out. CHAT_OK, CHAT_ENOMEM, or CHAT_EINVAL (a
 * model with a control character or a NUL, a system prompt with a NUL, a
 * temperature that is not finite). */
chat_status_t chat_settings_write(const chat_settings_t *s, chat_buf_t *out);

/* The model a blob names, copied to out (NUL-terminated, at most
 * CHAT_SETTINGS_MODEL_MAX bytes), or "" if none. blob may be the first len
 * bytes of a longer blob (whole 0): only lines ended within it count.
 * Returns the name's length. */
size_t chat_settings_model_of(const char *blob, size_t len, int whole,
                              char out[CHAT_SETTINGS_MODEL_MAX + 1]);

/* 1 if name (len bytes) may be a model name: 1..200 bytes, no control
 * characters (C0, DEL). UTF-8 validity is the caller's. */
int chat_settings_model_ok(const char *name, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_SETTINGS_H */
