/* chat_cookie.c - Cookie header parsing by name and the signed session
 * token's syntax (chat/cookie.h). No key is used here: the HMAC is the
 * glue's (libcrypto, which also compares MACs in constant time).
 */
#include <string.h>

#include "chat/cookie.h"

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int chat_cookie_next(const char *hdr, size_t len, size_t *pos, chat_cookie_t *c)
{
    size_t i;

    if (!hdr || !pos || !c) {
        return 0;
    }
    i = *pos;
    while (i < len) {
        size_t start = i, end, eq, ns, ne, vs, ve;

        while (i < len && hdr[i] != ';') {
            i++;
        }
        end = i;
        if (i < len) {
            i++; /* past ';' */
        }
        for (eq = start; eq < end && hdr[eq] != '='; eq++) {
        }
        if (eq == end) {
            continue; /* no '=': names no cookie */
        }
        ns = start;
        ne = eq;
        while (ns < ne && is_ows(hdr[ns])) {
            ns++;
        }
        while (ne > ns && is_ows(hdr[ne - 1])) {
            ne--;
        }
        if (ns == ne) {
            continue; /* "=value": no name */
        }
        vs = eq + 1;
        ve = end;
        while (vs < ve && is_ows(hdr[vs])) {
            vs++;
        }
        while (ve > vs && is_ows(hdr[ve - 1])) {
            ve--;
        }
        if (ve - vs >= 2 && hdr[vs] == '"' && hdr[ve - 1] == '"') {
            vs++;
            ve--;
        }
        c->name = hdr + ns;
        c->name_len = ne - ns;
        c->value = hdr + vs;
        c->value_len = ve - vs;
        *pos = i;
        return 1;
    }
    *pos = len;
    return 0;
}

int chat_cookie_find(const char *hdr, size_t len, const char *name, size_t *pos,
                     chat_cookie_t *c)
{
    size_t n = name ? strlen(name) : 0;

    if (!n) {
        return 0;
    }
    while (chat_cookie_next(hdr, len, pos, c)) {
        if (c->name_len == n && !memcmp(c->name, name, n)) {
            return 1;
        }
    }
    return 0;
}

/* ---- token ------------------------------------------------------------------- */

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_val(char ch)
{
    if (ch >= 'A' && ch <= 'Z') {
        return ch - 'A';
    }
    if (ch >= 'a' && ch <= 'z') {
        return ch - 'a' + 26;
    }
    if (ch >= '0' && ch <= '9') {
        return ch - '0' + 52;
    }
    if (ch == '-') {
        return 62;
    }
    if (ch == '_') {
        return 63;
    }
    return -1;
}

static int is_sid_hex(const char *s, size_t n)
{
    size_t i;

    if (n != CHAT_SID_HEX) {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

size_t chat_sid_mac_input(const char *sid_hex, char *out, size_t cap)
{
    size_t lab = sizeof(CHAT_SID_MAC_LABEL) - 1;

    if (!sid_hex || !out || cap < CHAT_SID_MAC_INPUT_LEN ||
        !is_sid_hex(sid_hex, strnlen(sid_hex, CHAT_SID_HEX + 1))) {
        return 0;
    }
    memcpy(out, CHAT_SID_MAC_LABEL, lab);
    memcpy(out + lab, sid_hex, CHAT_SID_HEX);
    return CHAT_SID_MAC_INPUT_LEN;
}

chat_status_t chat_sid_token_format(const char *sid_hex,
                                    const uint8_t mac[CHAT_SID_MAC_BYTES], char *out,
                                    size_t cap)
{
    size_t i, o;
    uint32_t acc = 0;
    int bits = 0;

    if (!sid_hex || !mac || !out || cap < CHAT_SID_TOKEN_LEN + 1 ||
        !is_sid_hex(sid_hex, strnlen(sid_hex, CHAT_SID_HEX + 1))) {
        return CHAT_EINVAL;
    }
    memcpy(out, sid_hex, CHAT_SID_HEX);
    out[CHAT_SID_HEX] = '.';
    o = CHAT_SID_HEX + 1;
    for (i = 0; i < CHAT_SID_MAC_BYTES; i++) {
        acc = (acc << 8) | mac[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = b64url[(acc >> bits) & 63];
        }
    }
    if (bits) {
        out[o++] = b64url[(acc << (6 - bits)) & 63];
    }
    out[o] = '\0';
    return o == CHAT_SID_TOKEN_LEN ? CHAT_OK : CHAT_EINTERNAL;
}

chat_status_t chat_sid_token_parse(const char *v, size_t n,
                                   char sid_hex[CHAT_SID_HEX + 1],
                                   uint8_t mac[CHAT_SID_MAC_BYTES])
{
    const char *m;
    size_t i, o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (!v || !sid_hex || !mac || n != CHAT_SID_TOKEN_LEN || v[CHAT_SID_HEX] != '.' ||
        !is_sid_hex(v, CHAT_SID_HEX)) {
        return CHAT_EPARSE;
    }
    m = v + CHAT_SID_HEX + 1;
    for (i = 0; i < CHAT_SID_MAC_B64; i++) {
        int d = b64url_val(m[i]);
        if (d < 0) {
            return CHAT_EPARSE;
        }
        acc = (acc << 6) | (uint32_t)d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o < CHAT_SID_MAC_BYTES) {
                mac[o] = (uint8_t)(acc >> bits);
            }
            o++;
        }
    }
    /* 43 characters carry 258 bits: the 2 left over must be zero */
    if (o != CHAT_SID_MAC_BYTES || (acc & ((1u << bits) - 1u)) != 0) {
        return CHAT_EPARSE;
    }
    memcpy(sid_hex, v, CHAT_SID_HEX);
    sid_hex[CHAT_SID_HEX] = '\0';
    return CHAT_OK;
}
