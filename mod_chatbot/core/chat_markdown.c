/* chat_markdown.c - keeping exported Markdown well formed: fences left open
 * by a message, titles kept to one line (chat/markdown.h). */
#include <string.h>

#include "chat/markdown.h"

/* If the line [p, end) is a fence line, returns its run length and sets
 * *ch to its character and *rest to what follows the run; else 0. */
static size_t fence_of(const char *p, const char *end, char *ch, const char **rest)
{
    size_t ind = 0, run = 0;

    while (p < end && *p == ' ' && ind < 4) {
        p++;
        ind++;
    }
    if (ind > 3 || p >= end || (*p != '`' && *p != '~')) {
        return 0;
    }
    *ch = *p;
    while (p < end && *p == *ch) {
        p++;
        run++;
    }
    if (run < 3) {
        return 0;
    }
    *rest = p;
    return run;
}

size_t chat_md_open_fence(const char *text, size_t len, char *fence_ch)
{
    const char *p, *end;
    size_t open = 0; /* length of the open fence, 0 if none */
    char open_ch = 0;

    if (!text) {
        len = 0;
        text = "";
    }
    p = text;
    end = text + len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end, *rest = NULL;
        char ch = 0;
        size_t run = fence_of(p, eol, &ch, &rest);

        if (run && !open) {
            /* an opening backtick fence's info string has no backtick */
            if (ch != '`' || !memchr(rest, '`', (size_t)(eol - rest))) {
                open = run;
                open_ch = ch;
            }
        }
        else if (run && ch == open_ch && run >= open) {
            const char *q = rest;
            while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r')) {
                q++;
            }
            if (q == eol) {
                open = 0;
            }
        }
        p = nl ? nl + 1 : end;
    }
    if (fence_ch) {
        *fence_ch = open ? open_ch : 0;
    }
    return open;
}

void chat_one_line(char *s)
{
    unsigned char *p = (unsigned char *)s;

    for (; p && *p; p++) {
        if (*p < 0x20 || *p == 0x7F) {
            *p = ' ';
        }
        else if (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F) {
            p[0] = p[1] = ' '; /* a C1 control, U+0080-U+009F */
            p++;
        }
    }
}
