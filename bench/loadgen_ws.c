/* loadgen_ws.c - the load generator's WebSocket client (RFC 6455): the
 * opening handshake (its own SHA-1 and base64 for Sec-WebSocket-Accept),
 * masked client frames, and the server's frames parsed (fragments, close,
 * ping answered with pong); text messages go to on_text (loadgen_answer.c).
 */
#include "loadgen.h"

#include <stdio.h>
#include <string.h>

/* ---- SHA-1 and base64 (for Sec-WebSocket-Accept, RFC 3174 / 4648) ---------------- */

static void sha1(const uint8_t *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    uint8_t block[64];
    uint64_t bits = (uint64_t)len * 8;
    size_t i, total = ((len + 8) / 64 + 1) * 64;

    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80], a, b, c, d, e;
        for (i = 0; i < 64; i++) {
            size_t k = off + i;
            if (k < len) {
                block[i] = data[k];
            }
            else if (k == len) {
                block[i] = 0x80;
            }
            else if (k >= total - 8) {
                block[i] = (uint8_t)(bits >> (8 * (total - 1 - k)));
            }
            else {
                block[i] = 0;
            }
        }
        for (i = 0; i < 16; i++) {
            w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
                   (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
        }
        for (i = 16; i < 80; i++) {
            uint32_t x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
            w[i] = x << 1 | x >> 31;
        }
        a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (i = 0; i < 80; i++) {
            uint32_t f, k, t;
            if (i < 20) {
                f = (b & c) | (~b & d), k = 0x5A827999;
            }
            else if (i < 40) {
                f = b ^ c ^ d, k = 0x6ED9EBA1;
            }
            else if (i < 60) {
                f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
            }
            else {
                f = b ^ c ^ d, k = 0xCA62C1D6;
            }
            t = (a << 5 | a >> 27) + f + e + k + w[i];
            e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
        }
        h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
    }
    for (i = 0; i < 20; i++) {
        out[i] = (uint8_t)(h[i / 4] >> (24 - 8 * (i % 4)));
    }
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63], *out++ = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63], *out++ = '=', *out++ = '=';
    }
    else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *out++ = tab[v >> 18], *out++ = tab[(v >> 12) & 63];
        *out++ = tab[(v >> 6) & 63], *out++ = '=';
    }
    *out = '\0';
}

/* ---- frames and handshake ---------------------------------------------------------- */

/* Queues one masked client frame (RFC 6455 5.2, 5.3). */
void ws_frame(conn_t *c, int opcode, const char *data, size_t n)
{
    uint8_t h[14];
    size_t hl = 2, i;
    uint32_t mk = (uint32_t)xrand();
    uint8_t *mask, *dst;

    h[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        h[1] = (uint8_t)(0x80 | n);
    }
    else if (n < 65536) {
        h[1] = 0x80 | 126;
        h[2] = (uint8_t)(n >> 8);
        h[3] = (uint8_t)n;
        hl = 4;
    }
    else {
        h[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        }
        hl = 10;
    }
    memcpy(h + hl, &mk, 4);
    mask = h + hl;
    hl += 4;
    buf_reserve(&c->out, hl + n);
    memcpy(c->out.p + c->out.len, h, hl);
    dst = (uint8_t *)c->out.p + c->out.len + hl;
    for (i = 0; i < n; i++) {
        dst[i] = (uint8_t)data[i] ^ mask[i & 3];
    }
    c->out.len += hl + n;
}

/* Sends the upgrade request (RFC 6455 4.1) on a connected socket. */
void ws_handshake_start(conn_t *c)
{
    uint8_t k[16];
    char req[512];
    int n;

    for (int i = 0; i < 16; i++) {
        k[i] = (uint8_t)xrand();
    }
    base64(k, 16, c->key);
    n = snprintf(
        req, sizeof(req),
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        "User-Agent: loadgen\r\n\r\n",
        opt.path, opt.host, opt.port, c->key);
    c->state = S_HANDSHAKE;
    buf_add(&c->out, req, (size_t)n);
    conn_flush(c);
}

/* Parses every complete server frame in c->in. */
void ws_parse(conn_t *c, uint64_t now)
{
    for (;;) {
        const uint8_t *h = (const uint8_t *)c->in.p + c->in.off;
        size_t avail = c->in.len - c->in.off, hl = 2;
        uint64_t plen;
        int fin, op;

        if (avail < 2) {
            break;
        }
        fin = h[0] & 0x80;
        op = h[0] & 0x0F;
        if (h[1] & 0x80) {
            conn_kill(c, "masked server frame");
            return;
        }
        plen = h[1] & 0x7F;
        if (plen == 126) {
            if (avail < 4) {
                break;
            }
            plen = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        }
        else if (plen == 127) {
            if (avail < 10) {
                break;
            }
            plen = 0;
            for (int i = 0; i < 8; i++) {
                plen = plen << 8 | h[2 + i];
            }
            hl = 10;
        }
        if (plen > (64u << 20)) {
            conn_kill(c, "frame too large");
            return;
        }
        if (avail < hl + plen) {
            break;
        }
        const char *pl = (const char *)h + hl;
        c->in.off += hl + (size_t)plen;
        switch (op) {
        case 0x0: /* continuation */
            buf_add(&c->msg, pl, (size_t)plen);
            if (fin) {
                if (c->msg_op == 1) {
                    on_text(c, c->msg.p, c->msg.len, now);
                }
                c->msg.len = 0;
            }
            break;
        case 0x1:
        case 0x2:
            if (fin) {
                if (op == 1) {
                    on_text(c, pl, (size_t)plen, now);
                }
            }
            else {
                c->msg.len = 0;
                c->msg_op = op;
                buf_add(&c->msg, pl, (size_t)plen);
            }
            break;
        case 0x8:
            conn_kill(c, "server closed the WebSocket");
            return;
        case 0x9:
            server_pings++;
            ws_frame(c, 0xA, pl, (size_t)plen);
            conn_flush(c);
            break;
        case 0xA:
            pongs_rcvd++;
            break;
        default:
            conn_kill(c, "bad opcode");
            return;
        }
        if (c->state == S_DEAD) {
            return;
        }
    }
    if (c->in.off == c->in.len) {
        c->in.off = c->in.len = 0;
    }
}

/* Checks the server's 101 reply (Sec-WebSocket-Accept), then parses what follows. */
void ws_handshake_reply(conn_t *c, uint64_t now)
{
    char *end = memmem(c->in.p, c->in.len, "\r\n\r\n", 4), want[64], *acc;
    uint8_t dig[20];
    char cat[128];

    if (!end) {
        if (c->in.len > 16384) {
            conn_kill(c, "handshake reply too large");
        }
        return;
    }
    *end = '\0';
    if (strncmp(c->in.p, "HTTP/1.1 101", 12)) {
        char *eol = strstr(c->in.p, "\r\n");
        if (eol) {
            *eol = '\0';
        }
        connect_fail++;
        fprintf(stderr, "loadgen: conn %d: handshake refused: %s\n", c->idx, c->in.p);
        conn_kill(c, NULL);
        return;
    }
    snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->key);
    sha1((const uint8_t *)cat, strlen(cat), dig);
    base64(dig, 20, want);
    acc = strcasestr(c->in.p, "\r\nSec-WebSocket-Accept:");
    if (!acc) {
        conn_kill(c, "no Sec-WebSocket-Accept");
        return;
    }
    acc += 23;
    while (*acc == ' ') {
        acc++;
    }
    if (strncmp(acc, want, strlen(want))) {
        conn_kill(c, "wrong Sec-WebSocket-Accept");
        return;
    }
    c->in.off = (size_t)(end + 4 - c->in.p);
    c->state = S_UPGRADED; /* waiting for the hello frame */
    ws_parse(c, now);
}
