/* chat_encode.c - SHA-1, base64 and hex: the few encodings the core needs,
 * written here so that the core does not depend on APR. */
#include <string.h>

#include "chat/common.h"

#define ROL(v, n) (((v) << (n)) | ((v) >> (32 - (n))))

static void sha1_block(chat_sha1_t *c, const uint8_t *p)
{
    uint32_t w[80], a, b, d, e, f, k, t, cc;
    int i;

    for (i = 0; i < 16; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (i = 16; i < 80; i++) {
        w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }
    a = c->h[0];
    b = c->h[1];
    cc = c->h[2];
    d = c->h[3];
    e = c->h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & cc) | (~b & d);
            k = 0x5A827999u;
        }
        else if (i < 40) {
            f = b ^ cc ^ d;
            k = 0x6ED9EBA1u;
        }
        else if (i < 60) {
            f = (b & cc) | (b & d) | (cc & d);
            k = 0x8F1BBCDCu;
        }
        else {
            f = b ^ cc ^ d;
            k = 0xCA62C1D6u;
        }
        t = ROL(a, 5) + f + e + k + w[i];
        e = d;
        d = cc;
        cc = ROL(b, 30);
        b = a;
        a = t;
    }
    c->h[0] += a;
    c->h[1] += b;
    c->h[2] += cc;
    c->h[3] += d;
    c->h[4] += e;
}

void chat_sha1_init(chat_sha1_t *c)
{
    c->h[0] = 0x67452301u;
    c->h[1] = 0xEFCDAB89u;
    c->h[2] = 0x98BADCFEu;
    c->h[3] = 0x10325476u;
    c->h[4] = 0xC3D2E1F0u;
    c->nbytes = 0;
    c->used = 0;
}

void chat_sha1_update(chat_sha1_t *c, const void *data, size_t len)
{
    const uint8_t *p = data;

    c->nbytes += len;
    while (len) {
        size_t n = 64 - c->used;
        if (n > len) {
            n = len;
        }
        memcpy(c->block + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == 64) {
            sha1_block(c, c->block);
            c->used = 0;
        }
    }
}

void chat_sha1_final(chat_sha1_t *c, uint8_t out[20])
{
    uint64_t bits = c->nbytes * 8;
    uint8_t pad = 0x80;
    uint8_t lenb[8];
    int i;

    chat_sha1_update(c, &pad, 1);
    pad = 0;
    while (c->used != 56) {
        chat_sha1_update(c, &pad, 1);
    }
    for (i = 0; i < 8; i++) {
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    chat_sha1_update(c, lenb, 8);
    for (i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(c->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(c->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(c->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)c->h[i];
    }
}

void chat_sha1(const void *data, size_t len, uint8_t out[20])
{
    chat_sha1_t c;

    chat_sha1_init(&c);
    chat_sha1_update(&c, data, len);
    chat_sha1_final(&c, out);
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t chat_base64_encode(const uint8_t *in, size_t n, char *out, size_t outcap)
{
    size_t i, o = 0, need = 4 * ((n + 2) / 3) + 1;

    if (outcap < need) {
        return 0;
    }
    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)in[i + 1] << 8;
        }
        out[o++] = b64[v >> 18];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = (i + 1 < n) ? b64[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

static int b64val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

long chat_base64_decode(const char *in, size_t n, uint8_t *out, size_t outcap)
{
    size_t i, o = 0;

    if (n % 4) {
        return -1;
    }
    for (i = 0; i < n; i += 4) {
        int v[4], j, pads = 0;
        for (j = 0; j < 4; j++) {
            if (in[i + j] == '=' && i + 4 == n && j >= 2) {
                v[j] = 0;
                pads++;
            }
            else if (pads || (v[j] = b64val(in[i + j])) < 0) {
                return -1;
            }
        }
        if (o + 3 - pads > outcap) {
            return -1;
        }
        out[o++] = (uint8_t)((v[0] << 2) | (v[1] >> 4));
        if (pads < 2)
            out[o++] = (uint8_t)(((v[1] & 15) << 4) | (v[2] >> 2));
        if (pads < 1)
            out[o++] = (uint8_t)(((v[2] & 3) << 6) | v[3]);
    }
    return (long)o;
}

void chat_hex(const uint8_t *in, size_t n, char *out)
{
    static const char hx[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = hx[in[i] >> 4];
        out[2 * i + 1] = hx[in[i] & 15];
    }
    out[2 * n] = '\0';
}
