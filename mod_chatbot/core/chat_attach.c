/* chat_attach.c - the stored form of text attachments (chat/attach.h). */
#include <stdio.h>
#include <string.h>

#include "chat/attach.h"
#include "chat/utf8.h"

#define OPEN1 "<attachment name=\""
#define OPEN2 "\" bytes=\""
#define OPEN3 "\">\n"
#define CLOSE "\n</attachment>\n\n"
#define LIT(s) (sizeof(s) - 1)

const char *chat_attach_name_error(const char *name, size_t len)
{
    size_t i;

    if (len == 0) {
        return "an attachment needs a name";
    }
    if (len > CHAT_ATTACH_NAME_MAX) {
        return "an attachment's name is longer than 255 bytes";
    }
    if (!chat_utf8_valid((const unsigned char *)name, len)) {
        return "an attachment's name is not valid UTF-8";
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '<' || c == '>' || c == '/' ||
            c == '\\') {
            return "an attachment's name may not contain control characters, quotes, "
                   "'<', '>', '/' or '\\'";
        }
    }
    return NULL;
}

int chat_attach_is_text(const char *p, size_t n)
{
    return !memchr(p, 0, n) && chat_utf8_valid((const unsigned char *)p, n);
}

static size_t digits(size_t v)
{
    size_t d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

size_t chat_attach_size(const chat_attach_t *a, size_t n, size_t text_len)
{
    size_t i, total = text_len;

    for (i = 0; i < n; i++) {
        total += LIT(OPEN1) + a[i].name_len + LIT(OPEN2) + digits(a[i].len) + LIT(OPEN3) +
                 a[i].len + LIT(CLOSE);
    }
    return total;
}

chat_status_t chat_attach_encode(chat_buf_t *out, const chat_attach_t *a, size_t n,
                                 const char *text, size_t text_len)
{
    size_t i;
    char num[24];

    if (chat_buf_reserve(out, chat_attach_size(a, n, text_len)) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    for (i = 0; i < n; i++) {
        snprintf(num, sizeof(num), "%zu", a[i].len);
        if (chat_buf_append(out, OPEN1, LIT(OPEN1)) != CHAT_OK ||
            chat_buf_append(out, a[i].name, a[i].name_len) != CHAT_OK ||
            chat_buf_append(out, OPEN2, LIT(OPEN2)) != CHAT_OK ||
            chat_buf_puts(out, num) != CHAT_OK ||
            chat_buf_append(out, OPEN3, LIT(OPEN3)) != CHAT_OK ||
            chat_buf_append(out, a[i].content, a[i].len) != CHAT_OK ||
            chat_buf_append(out, CLOSE, LIT(CLOSE)) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
    }
    return chat_buf_append(out, text, text_len);
}

/* Reads one envelope at s[0..len); returns its total length, 0 if none. */
static size_t decode_one(const char *s, size_t len, chat_attach_t *at)
{
    const char *name, *q;
    size_t pos, v = 0, nd = 0;

    if (len < LIT(OPEN1) || memcmp(s, OPEN1, LIT(OPEN1)) != 0) {
        return 0;
    }
    name = s + LIT(OPEN1);
    q = memchr(name, '"', len - LIT(OPEN1));
    if (!q || chat_attach_name_error(name, (size_t)(q - name))) {
        return 0;
    }
    pos = (size_t)(q - s);
    if (len - pos < LIT(OPEN2) || memcmp(s + pos, OPEN2, LIT(OPEN2)) != 0) {
        return 0;
    }
    pos += LIT(OPEN2);
    while (pos < len && s[pos] >= '0' && s[pos] <= '9' && nd < 19) {
        v = v * 10 + (size_t)(s[pos] - '0');
        pos++;
        nd++;
    }
    if (nd == 0 || len - pos < LIT(OPEN3) || memcmp(s + pos, OPEN3, LIT(OPEN3)) != 0) {
        return 0;
    }
    pos += LIT(OPEN3);
    if (v > len - pos || len - pos - v < LIT(CLOSE) ||
        memcmp(s + pos + v, CLOSE, LIT(CLOSE)) != 0) {
        return 0;
    }
    at->name = name;
    at->name_len = (size_t)(q - name);
    at->content = s + pos;
    at->len = v;
    return pos + v + LIT(CLOSE);
}

chat_status_t chat_attach_decode(const char *s, size_t len, chat_attach_t *a, size_t cap,
                                 size_t *n, const char **text, size_t *text_len)
{
    size_t pos = 0, k = 0;

    while (k < cap) {
        size_t used = decode_one(s + pos, len - pos, &a[k]);
        if (!used) {
            break;
        }
        pos += used;
        k++;
    }
    if (k == 0) {
        *n = 0;
        *text = s;
        *text_len = len;
        return CHAT_EPARSE;
    }
    *n = k;
    *text = s + pos;
    *text_len = len - pos;
    return CHAT_OK;
}
