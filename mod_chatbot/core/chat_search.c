/* chat_search.c - ASCII case-insensitive substring search, in a stored
 * message's own text and attachments (not their envelopes), and snippets
 * (chat/search.h). No allocation; linear in the text for the queries the
 * limits allow (CHAT_SEARCH_QUERY_MAX bytes). */
#include <string.h>

#include "chat/attach.h"
#include "chat/search.h"

static unsigned char fold(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

long chat_search_find(const char *hay, size_t hlen, size_t from, const char *needle,
                      size_t nlen)
{
    const unsigned char *h = (const unsigned char *)hay;
    const unsigned char *n = (const unsigned char *)needle;
    unsigned char first, other;
    size_t i, j;

    if (nlen == 0 || from > hlen || hlen - from < nlen) {
        return -1;
    }
    first = fold(n[0]);
    /* the other case of the first byte, to let memchr-like scanning skip */
    other = (first >= 'a' && first <= 'z') ? (unsigned char)(first - ('a' - 'A')) : first;
    for (i = from; i + nlen <= hlen; i++) {
        if (h[i] != first && h[i] != other) {
            continue;
        }
        for (j = 1; j < nlen && fold(h[i + j]) == fold(n[j]); j++) {
        }
        if (j == nlen) {
            return (long)i;
        }
    }
    return -1;
}

int chat_search_message(const char *text, size_t len, int attach, const char *needle,
                        size_t nlen, chat_search_hit_t *hit)
{
    chat_attach_t a[CHAT_ATTACH_MAX];
    size_t n = 0, k;
    long pos;

    memset(hit, 0, sizeof(*hit));
    hit->seg = text;
    hit->seg_len = len;
    if (attach) {
        /* not in the stored form: n stays 0 and the text is searched whole */
        chat_attach_decode(text, len, a, CHAT_ATTACH_MAX, &n, &hit->seg, &hit->seg_len);
    }
    pos = chat_search_find(hit->seg, hit->seg_len, 0, needle, nlen);
    for (k = 0; pos < 0 && k < n; k++) {
        pos = chat_search_find(a[k].content, a[k].len, 0, needle, nlen);
        if (pos >= 0) {
            hit->seg = a[k].content;
            hit->seg_len = a[k].len;
            hit->name = a[k].name;
            hit->name_len = a[k].name_len;
        }
    }
    if (pos < 0) {
        return 0;
    }
    hit->pos = (size_t)pos;
    return 1;
}

/* 1 if p is a UTF-8 continuation byte */
static int cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

static int space(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

void chat_search_snippet(const char *text, size_t len, size_t pos, size_t mlen,
                         size_t width, size_t *start, size_t *end)
{
    const unsigned char *t = (const unsigned char *)text;
    size_t before, s, e, k;

    if (pos > len) {
        pos = len;
    }
    if (mlen > len - pos) {
        mlen = len - pos;
    }
    if (width < mlen) {
        width = mlen;
    }
    before = (width - mlen) / 3; /* a third of the context before the hit */
    s = pos > before ? pos - before : 0;
    e = s + width < len ? s + width : len;
    if (e - s < width && s > 0) { /* the text ends soon: more context before */
        size_t more = width - (e - s);
        s = s > more ? s - more : 0;
    }
    /* code point boundaries: move inwards off continuation bytes */
    while (s < pos && cont(t[s])) {
        s++;
    }
    while (e > pos + mlen && e < len && cont(t[e])) {
        e--;
    }
    /* word boundaries where one is near (within a fifth of the width) */
    if (s > 0) {
        for (k = s; k < pos && k - s < width / 5; k++) {
            if (space(t[k])) {
                s = k + 1;
                break;
            }
        }
    }
    if (e < len) {
        for (k = e; k > pos + mlen && e - k < width / 5; k--) {
            if (space(t[k - 1])) {
                e = k - 1;
                break;
            }
        }
    }
    *start = s;
    *end = e;
}

size_t chat_search_trim(const char **q, size_t len)
{
    const char *p = *q;

    while (len && space((unsigned char)p[0])) {
        p++;
        len--;
    }
    while (len && space((unsigned char)p[len - 1])) {
        len--;
    }
    *q = p;
    return len;
}
