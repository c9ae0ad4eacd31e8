/* chat_settings.c - the per-conversation settings blob (chat/settings.h). */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/settings.h"

#define MODEL_MAX CHAT_SETTINGS_MODEL_MAX

int chat_settings_model_ok(const char *name, size_t len)
{
    size_t i;

    if (!name || len == 0 || len > MODEL_MAX) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7F) {
            return 0;
        }
    }
    return 1;
}

static int starts(const char *p, size_t n, const char *key)
{
    size_t k = strlen(key);
    return n >= k && !memcmp(p, key, k);
}

void chat_settings_parse(const char *blob, size_t len, chat_settings_t *out)
{
    const char *p = blob, *end = blob ? blob + len : NULL;

    memset(out, 0, sizeof(*out));
    while (p && p < end) {
        size_t n = (size_t)(end - p);
        const char *nl = memchr(p, '\n', n);
        size_t ln = nl ? (size_t)(nl - p) : n;
        if (starts(p, n, "system=")) {
            /* the rest of the blob, newlines included */
            out->system = p + 7;
            out->system_len = n - 7;
            if (memchr(out->system, '\0', out->system_len)) {
                out->system = NULL;
                out->system_len = 0;
            }
            return;
        }
        if (starts(p, ln, "model=") && chat_settings_model_ok(p + 6, ln - 6)) {
            out->model = p + 6;
            out->model_len = ln - 6;
        }
        else if (starts(p, ln, "temperature=") && ln - 12 > 0 && ln - 12 < 32) {
            char num[32], *e;
            double v;
            memcpy(num, p + 12, ln - 12);
            num[ln - 12] = '\0';
            v = strtod(num, &e);
            if (e != num && !*e && isfinite(v)) {
                out->temperature = v;
                out->has_temperature = 1;
            }
        }
        if (!nl) {
            return;
        }
        p = nl + 1;
    }
}

size_t chat_settings_model_of(const char *blob, size_t len, int whole,
                              char out[CHAT_SETTINGS_MODEL_MAX + 1])
{
    chat_settings_t cs;

    out[0] = '\0';
    if (!blob) {
        return 0;
    }
    if (!whole) {
        /* a cut line could read as a shorter name: up to the last newline */
        while (len > 0 && blob[len - 1] != '\n') {
            len--;
        }
    }
    chat_settings_parse(blob, len, &cs);
    if (!cs.model || cs.model_len > CHAT_SETTINGS_MODEL_MAX) {
        return 0;
    }
    memcpy(out, cs.model, cs.model_len);
    out[cs.model_len] = '\0';
    return cs.model_len;
}

chat_status_t chat_settings_write(const chat_settings_t *s, chat_buf_t *out)
{
    size_t before = out->len;
    chat_status_t rc = CHAT_OK;

    if ((s->model && !chat_settings_model_ok(s->model, s->model_len)) ||
        (s->system && memchr(s->system, '\0', s->system_len)) ||
        (s->has_temperature && !isfinite(s->temperature))) {
        return CHAT_EINVAL;
    }
    if (s->model) {
        if ((rc = chat_buf_puts(out, "model=")) == CHAT_OK &&
            (rc = chat_buf_append(out, s->model, s->model_len)) == CHAT_OK) {
            rc = chat_buf_puts(out, "\n");
        }
    }
    if (rc == CHAT_OK && s->has_temperature) {
        /* %.17g: reads back as the same double */
        rc = chat_buf_printf(out, "temperature=%.17g\n", s->temperature);
    }
    if (rc == CHAT_OK && s->system) {
        if ((rc = chat_buf_puts(out, "system=")) == CHAT_OK) {
            rc = chat_buf_append(out, s->system, s->system_len);
        }
    }
    if (rc != CHAT_OK && out->data) {
        out->len = before; /* nothing half-written */
        out->data[before] = '\0';
    }
    return rc;
}
