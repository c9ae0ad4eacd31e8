/* chat_cmd_output.c - what a command leaves (chat/cmd.h): its output,
 * capped at maxoutput= and cut on a UTF-8 boundary, and the text stored in
 * history for the request, the result and a conversation's title.
 */
#include <stdio.h>
#include <string.h>

#include "chat/cmd.h"
#include "chat/utf8.h"
#include "chat_cmd_int.h"

/* ---- output ------------------------------------------------------------ */

void chat_cmd_output_init(chat_cmd_output_t *o, uint64_t max)
{
    memset(o, 0, sizeof(*o));
    chat_buf_init(&o->buf);
    o->max = max;
}

void chat_cmd_output_free(chat_cmd_output_t *o)
{
    chat_buf_free(&o->buf);
}

int chat_cmd_output_add(chat_cmd_output_t *o, const void *data, size_t n)
{
    size_t room;

    o->seen += n;
    room = o->buf.len < o->max ? (size_t)(o->max - o->buf.len) : 0;
    if (n > room) {
        if (room && chat_buf_append(&o->buf, data, room) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        o->truncated = 1;
        return 1;
    }
    if (n && chat_buf_append(&o->buf, data, n) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return o->truncated;
}

/* Bytes to drop at the end of p[0..n) so it does not end inside a UTF-8
 * sequence (only a lead byte followed by too few continuation bytes). */
static size_t incomplete_tail(const unsigned char *p, size_t n)
{
    size_t k;

    for (k = 1; k <= 3 && k <= n; k++) {
        unsigned char c = p[n - k];
        size_t need;
        if ((c & 0xc0) == 0x80) {
            continue;
        }
        need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
        return need > k ? k : 0;
    }
    return 0;
}

chat_status_t chat_cmd_output_finish(chat_cmd_output_t *o)
{
    if (o->finished) {
        return CHAT_OK;
    }
    o->finished = 1;
    if (!o->truncated) {
        return CHAT_OK;
    }
    o->buf.len -= incomplete_tail((const unsigned char *)o->buf.data, o->buf.len);
    if (o->buf.data) {
        o->buf.data[o->buf.len] = '\0';
    }
    return chat_buf_printf(&o->buf, CHAT_CMD_TRUNC_FMT, (unsigned long long)o->max);
}

/* ---- history text ------------------------------------------------------ */

#define TITLE_LONG 60 /* longer lines are cut (conversations.js autoTitle) */
#define TITLE_CUT 57

size_t chat_cmd_title(char *out, size_t outsz, const char *text, size_t len)
{
    /* the first TITLE_LONG + 1 characters, white space collapsed */
    char buf[(TITLE_LONG + 1) * 4];
    size_t off[TITLE_LONG + 2];
    size_t i = 0, n = 0, cps = 0, cut, k, bad;
    int space = 0;

    if (!out || outsz == 0) {
        return 0;
    }
    out[0] = '\0';
    while (i < len && cps <= TITLE_LONG) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            space = cps > 0;
            i++;
            continue;
        }
        k = chat_utf8_seq((const uint8_t *)text + i, len - i, &bad);
        if (k == 0) {
            i += bad ? bad : 1; /* not text: left out */
            continue;
        }
        if (space) {
            off[cps++] = n;
            buf[n++] = ' ';
            space = 0;
            if (cps > TITLE_LONG) {
                break;
            }
        }
        off[cps++] = n;
        memcpy(buf + n, text + i, k);
        n += k;
        i += k;
    }
    off[cps] = n;
    if (cps <= TITLE_LONG && n < outsz) {
        memcpy(out, buf, n);
        out[n] = '\0';
        return n;
    }
    /* too long: TITLE_CUT characters (fewer if they do not fit), the last
     * partial word dropped, then an ellipsis */
    cut = cps < TITLE_CUT ? cps : TITLE_CUT;
    while (cut > 0 && (outsz < 4 || off[cut] > outsz - 4)) {
        cut--;
    }
    n = off[cut];
    for (k = n; k > 0; k--) {
        if (buf[k - 1] == ' ') {
            n = k - 1;
            break;
        }
    }
    if (outsz < 4) {
        return 0;
    }
    memcpy(out, buf, n);
    memcpy(out + n, "\xe2\x80\xa6", 3);
    out[n + 3] = '\0';
    return n + 3;
}

chat_status_t chat_cmd_format_request(chat_buf_t *out, const char *name,
                                      const char *const *args, size_t nargs)
{
    chat_status_t st;
    size_t i;

    chat_buf_reset(out, 64 * 1024);
    st = chat_buf_puts(out, "!");
    if (st == CHAT_OK) {
        st = chat_buf_puts(out, name ? name : "");
    }
    for (i = 0; i < nargs && st == CHAT_OK; i++) {
        st = chat_buf_puts(out, " ");
        if (st == CHAT_OK) {
            st = chat_buf_puts(out, args[i] ? args[i] : "");
        }
    }
    return st;
}

chat_status_t chat_cmd_format_result(chat_buf_t *out, const char *output, size_t len,
                                     const chat_cmd_result_t *res)
{
    size_t i, run = 0, longest = 0, fence;
    chat_status_t st = CHAT_OK;
    char fb[64];

    chat_buf_reset(out, 64 * 1024);
    for (i = 0; i < len; i++) {
        run = output[i] == '`' ? run + 1 : 0;
        if (run > longest) {
            longest = run;
        }
    }
    fence = longest >= 3 ? longest + 1 : 3;
    if (fence >= sizeof(fb)) {
        fence = sizeof(fb) - 1; /* a 63-backtick run is not output anyone needs */
    }
    memset(fb, '`', fence);
    fb[fence] = '\0';
    if (len == 0) {
        st = chat_buf_puts(out, "(no output)\n");
    }
    else {
        st = chat_buf_printf(out, "%s\n", fb);
        if (st == CHAT_OK) {
            st = chat_buf_append(out, output, len);
        }
        if (st == CHAT_OK && output[len - 1] != '\n') {
            st = chat_buf_puts(out, "\n");
        }
        if (st == CHAT_OK) {
            st = chat_buf_printf(out, "%s\n", fb);
        }
    }
    if (st != CHAT_OK) {
        return st;
    }
    if (res->signal > 0) {
        st = chat_buf_printf(out, "killed by signal %d", res->signal);
    }
    else {
        st = chat_buf_printf(out, "exit code %d", res->exit_code);
    }
    if (st == CHAT_OK && res->stopped) {
        st = chat_buf_puts(out, ", stopped by the user");
    }
    if (st == CHAT_OK && res->timed_out) {
        st =
            chat_buf_printf(out, ", timed out after %lld ms", (long long)res->timeout_ms);
    }
    if (st == CHAT_OK && res->truncated) {
        st = chat_buf_puts(out, ", output truncated");
    }
    if (st == CHAT_OK) {
        st = chat_buf_printf(out, ", %lld ms", (long long)res->duration_ms);
    }
    return st;
}
