/* chat_json.c - the streaming JSON writer (chat_jw_*) and chat_json_escape.
 *
 * Output is strict RFC 8259 JSON that is also safe to embed in HTML/JS:
 * '<', '>', '&', U+2028 and U+2029 are escaped, invalid UTF-8 becomes
 * U+FFFD. Nothing is allocated except by growing the caller's chat_buf_t.
 */
#include <math.h> /* isfinite (a macro: no libm needed) */
#include <stdio.h>
#include <string.h>

#include "chat/proto.h"
#include "chat/utf8.h"

/* Bits of chat_jw_t.first[level]. */
#define LV_FIRST 1u  /* no element written yet at this level */
#define LV_OBJECT 2u /* the level is an object (else array or top level) */

/* Byte classes for the escaper: 0 copy as is, 1 ASCII that needs an
 * escape, 2 start of a multi-byte (or invalid) sequence. */
static const uint8_t esc_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x00 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x10 */
    0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x20: " & */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, /* 0x30: < > */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x40 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, /* 0x50: \ */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x60 */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, /* 0x70: DEL */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x80 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0x90 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xA0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xB0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xC0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xD0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, /* 0xE0 */
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2  /* 0xF0 */
};

static const char hexd[] = "0123456789abcdef";

/* Length of the well-formed UTF-8 sequence at p, or minus the length of
 * its maximal ill-formed prefix (replaced by one U+FFFD). */
static int utf8_seq(const uint8_t *p, size_t avail)
{
    size_t bad = 1, k = chat_utf8_seq(p, avail, &bad);

    return k ? (int)k : -(int)bad;
}

size_t chat_json_plain(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;

    /* a word with a byte < 0x20, '"', '\\' or >= 0x80 ends the fast part
     * (the classic "has a byte less than / equal to" bit tricks) */
    for (; i + 8 <= n; i += 8) {
        uint64_t w, q, b;
        memcpy(&w, p + i, 8);
        q = w ^ (ones * '"');
        b = w ^ (ones * '\\');
        if ((((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w) &
            high) {
            break;
        }
    }
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\') {
        i++;
    }
    return i;
}

/* Length of a prefix of whole 8-byte words in which no byte needs the
 * escaper's attention (esc_class 0: no control, '"', '\\', '&', '<', '>',
 * DEL or byte >= 0x80). The zero-byte test can report a byte that is not
 * there, never miss one: such a word is left to the byte loop. */
static inline size_t esc_plain(const uint8_t *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    size_t i = 0;

#define ESC_ZERO(x) (((x)-ones) & ~(x))
    for (; i + 8 <= n; i += 8) {
        uint64_t w, t;
        memcpy(&w, p + i, 8);
        t = ((w - ones * 0x20) & ~w) | w | ESC_ZERO(w ^ (ones * '"')) |
            ESC_ZERO(w ^ (ones * '\\')) | ESC_ZERO(w ^ (ones * '&')) |
            ESC_ZERO(w ^ (ones * '<')) | ESC_ZERO(w ^ (ones * '>')) |
            ESC_ZERO(w ^ (ones * 0x7f));
        if (t & high) {
            break;
        }
    }
#undef ESC_ZERO
    return i;
}

chat_status_t chat_json_escape(chat_buf_t *out, const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s, *end, *run;
    char e[6];
    size_t elen;

    if (n == 0) {
        return CHAT_OK;
    }
    if (!s) {
        return CHAT_EINVAL;
    }
    /* The common case (nothing to escape) then needs no further growth. */
    if (chat_buf_reserve(out, n) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    end = p + n;
    run = p;
    while (p < end) {
        uint8_t c;
        int sl;

        /* what needs no escape goes eight bytes at a time */
        p += esc_plain(p, (size_t)(end - p));
        if (p == end) {
            break;
        }
        c = *p;
        if (esc_class[c] == 0) {
            p++;
            continue;
        }
        if (esc_class[c] == 1) {
            e[0] = '\\';
            switch (c) {
            case '"':
                e[1] = '"';
                elen = 2;
                break;
            case '\\':
                e[1] = '\\';
                elen = 2;
                break;
            case '\b':
                e[1] = 'b';
                elen = 2;
                break;
            case '\f':
                e[1] = 'f';
                elen = 2;
                break;
            case '\n':
                e[1] = 'n';
                elen = 2;
                break;
            case '\r':
                e[1] = 'r';
                elen = 2;
                break;
            case '\t':
                e[1] = 't';
                elen = 2;
                break;
            default:
                e[1] = 'u';
                e[2] = '0';
                e[3] = '0';
                e[4] = hexd[c >> 4];
                e[5] = hexd[c & 15];
                elen = 6;
                break;
            }
            sl = 1;
        }
        else {
            sl = utf8_seq(p, (size_t)(end - p));
            if (sl == 3 && p[0] == 0xE2 && p[1] == 0x80 &&
                (p[2] == 0xA8 || p[2] == 0xA9)) {
                /* U+2028/U+2029 end a line in JavaScript source */
                memcpy(e, p[2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
                elen = 6;
            }
            else if (sl > 0) {
                p += sl; /* valid: stays part of the run */
                continue;
            }
            else {
                memcpy(e, "\xEF\xBF\xBD", 3);
                elen = 3;
                sl = -sl;
            }
        }
        if ((p > run && chat_buf_append(out, run, (size_t)(p - run)) != CHAT_OK) ||
            chat_buf_append(out, e, elen) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        p += sl;
        run = p;
    }
    if (p > run && chat_buf_append(out, run, (size_t)(p - run)) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return CHAT_OK;
}

/* ---- writer ---------------------------------------------------------------- */

/* chat_buf_append is inline: a write that fits is a copy here */
static inline void jw_put(chat_jw_t *w, const char *s, size_t n)
{
    if (w->status == CHAT_OK && chat_buf_append(w->buf, s, n) != CHAT_OK) {
        w->status = CHAT_ENOMEM;
    }
}

/* 1 if no byte of s needs an escape */
static int json_safe(const char *s, size_t n)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = esc_plain(p, n);

    while (i < n && esc_class[p[i]] == 0) {
        i++;
    }
    return i == n;
}

/* A quoted string; with tail (":" after a key) right behind it. A string
 * with nothing to escape that fits is copied in one go. */
static void jw_qstr_tail(chat_jw_t *w, const char *s, size_t n, const char *tail,
                         size_t tn)
{
    chat_buf_t *b = w->buf;

    if (w->status != CHAT_OK) {
        return;
    }
    if (b->data && n + tn + 2 < b->cap - b->len && json_safe(s, n)) {
        char *d = b->data + b->len;
        *d++ = '"';
        if (n) {
            memcpy(d, s, n);
            d += n;
        }
        *d++ = '"';
        if (tn) {
            memcpy(d, tail, tn);
        }
        b->len += n + tn + 2;
        b->data[b->len] = '\0';
        return;
    }
    jw_put(w, "\"", 1);
    if (w->status == CHAT_OK && chat_json_escape(b, s, n) != CHAT_OK) {
        w->status = CHAT_ENOMEM;
    }
    jw_put(w, "\"", 1);
    jw_put(w, tail, tn);
}

static void jw_qstr(chat_jw_t *w, const char *s, size_t n)
{
    jw_qstr_tail(w, s, n, "", 0);
}

/* Checks that a value may be written here and writes the separating comma.
 * Returns 0 if the caller may write the value. */
static int jw_value_begin(chat_jw_t *w)
{
    uint8_t *lv;

    if (w->status != CHAT_OK) {
        return -1;
    }
    lv = &w->first[w->depth];
    if (*lv & LV_OBJECT) {
        if (!w->after_key) {
            w->status = CHAT_EINVAL; /* a value in an object needs a key */
            return -1;
        }
        w->after_key = 0;
    }
    else if (!(*lv & LV_FIRST)) {
        if (w->depth == 0) {
            w->status = CHAT_EINVAL; /* a second top-level value */
            return -1;
        }
        jw_put(w, ",", 1);
    }
    *lv &= (uint8_t)~LV_FIRST;
    return w->status == CHAT_OK ? 0 : -1;
}

void chat_jw_init(chat_jw_t *w, chat_buf_t *buf)
{
    memset(w, 0, sizeof(*w));
    w->buf = buf;
    w->first[0] = LV_FIRST;
    w->status = CHAT_OK;
}

static void jw_open(chat_jw_t *w, char ch, uint8_t kind)
{
    if (w->status == CHAT_OK && w->depth + 1 >= CHAT_JW_DEPTH) {
        w->status = CHAT_EINVAL;
    }
    if (jw_value_begin(w) != 0) {
        return;
    }
    jw_put(w, &ch, 1);
    w->depth++;
    w->first[w->depth] = (uint8_t)(LV_FIRST | kind);
}

static void jw_close(chat_jw_t *w, char ch, uint8_t kind)
{
    if (w->status != CHAT_OK) {
        return;
    }
    if (w->depth == 0 || (w->first[w->depth] & LV_OBJECT) != kind || w->after_key) {
        w->status = CHAT_EINVAL;
        return;
    }
    jw_put(w, &ch, 1);
    w->depth--;
}

void chat_jw_obj_begin(chat_jw_t *w)
{
    jw_open(w, '{', LV_OBJECT);
}

void chat_jw_obj_end(chat_jw_t *w)
{
    jw_close(w, '}', LV_OBJECT);
}

void chat_jw_arr_begin(chat_jw_t *w)
{
    jw_open(w, '[', 0);
}

void chat_jw_arr_end(chat_jw_t *w)
{
    jw_close(w, ']', 0);
}

void chat_jw_key(chat_jw_t *w, const char *key)
{
    uint8_t *lv;

    if (w->status != CHAT_OK) {
        return;
    }
    lv = &w->first[w->depth];
    if (!key || w->depth == 0 || !(*lv & LV_OBJECT) || w->after_key) {
        w->status = CHAT_EINVAL;
        return;
    }
    if (!(*lv & LV_FIRST)) {
        jw_put(w, ",", 1);
    }
    *lv &= (uint8_t)~LV_FIRST;
    jw_qstr_tail(w, key, strlen(key), ":", 1);
    w->after_key = 1;
}

void chat_jw_str(chat_jw_t *w, const char *s)
{
    if (!s) {
        chat_jw_null(w);
        return;
    }
    chat_jw_strn(w, s, strlen(s));
}

void chat_jw_strn(chat_jw_t *w, const char *s, size_t n)
{
    if (!s && n) {
        w->status = w->status == CHAT_OK ? CHAT_EINVAL : w->status;
        return;
    }
    if (jw_value_begin(w) == 0) {
        jw_qstr(w, s, n);
    }
}

void chat_jw_int(chat_jw_t *w, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    /* negate in unsigned arithmetic so INT64_MIN works */
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--p = '-';
    }
    if (jw_value_begin(w) == 0) {
        jw_put(w, p, (size_t)(tmp + sizeof(tmp) - p));
    }
}

/* Doubles (metrics such as ttft_ms, tokens_per_sec) are written with 6
 * significant digits, or more when needed to print every integer digit (up
 * to 17), so 41.2 -> 41.2, 89.68609 -> 89.6861, 1764134400000.0 ->
 * 1764134400000 and 41.0 -> 41; magnitudes below 1e-4 or of 1e17 and above
 * use an exponent (1e-05, 1e+20), which is valid JSON. Non-finite -> null. */
void chat_jw_double(chat_jw_t *w, double v)
{
    char tmp[40];
    double a = v < 0 ? -v : v, lim = 1e6;
    int prec = 6, n, i;

    if (!isfinite(v)) {
        chat_jw_null(w);
        return;
    }
    while (prec < 17 && a >= lim) {
        prec++;
        lim *= 10.0;
    }
    n = snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
    if (n > 0 && a >= 1.0 && prec < 17 && memchr(tmp, 'e', (size_t)n)) {
        /* rounding carried into a new digit (999999.7 -> 1e+06) */
        n = snprintf(tmp, sizeof(tmp), "%.*g", prec + 1, v);
    }
    if (n <= 0 || (size_t)n >= sizeof(tmp)) {
        w->status = w->status == CHAT_OK ? CHAT_EINTERNAL : w->status;
        return;
    }
    /* a locale with a decimal comma must not leak into JSON */
    for (i = 0; i < n; i++) {
        char c = tmp[i];
        if (!((c >= '0' && c <= '9') || c == '-' || c == '+' || c == 'e')) {
            tmp[i] = '.';
        }
    }
    if (jw_value_begin(w) == 0) {
        jw_put(w, tmp, (size_t)n);
    }
}

void chat_jw_bool(chat_jw_t *w, int v)
{
    if (jw_value_begin(w) == 0) {
        if (v) {
            jw_put(w, "true", 4);
        }
        else {
            jw_put(w, "false", 5);
        }
    }
}

void chat_jw_null(chat_jw_t *w)
{
    if (jw_value_begin(w) == 0) {
        jw_put(w, "null", 4);
    }
}

void chat_jw_raw(chat_jw_t *w, const char *json, size_t n)
{
    if (!json || n == 0) {
        w->status = w->status == CHAT_OK ? CHAT_EINVAL : w->status;
        return;
    }
    if (jw_value_begin(w) == 0) {
        jw_put(w, json, n);
    }
}

void chat_jw_kstr(chat_jw_t *w, const char *key, const char *s)
{
    chat_jw_key(w, key);
    chat_jw_str(w, s);
}

void chat_jw_kstrn(chat_jw_t *w, const char *key, const char *s, size_t n)
{
    chat_jw_key(w, key);
    chat_jw_strn(w, s, n);
}

void chat_jw_kint(chat_jw_t *w, const char *key, int64_t v)
{
    chat_jw_key(w, key);
    chat_jw_int(w, v);
}

void chat_jw_kdouble(chat_jw_t *w, const char *key, double v)
{
    chat_jw_key(w, key);
    chat_jw_double(w, v);
}

void chat_jw_kbool(chat_jw_t *w, const char *key, int v)
{
    chat_jw_key(w, key);
    chat_jw_bool(w, v);
}

chat_status_t chat_jw_status(const chat_jw_t *w)
{
    if (w->status != CHAT_OK) {
        return w->status;
    }
    /* an unfinished document is not JSON: report the writer's misuse */
    if (w->depth != 0 || w->after_key || (w->first[0] & LV_FIRST)) {
        return CHAT_EINVAL;
    }
    return CHAT_OK;
}
