/* fuzz_ws.c - libFuzzer target for chat_ws (the RFC 6455 message layer).
 *
 * Input: byte 0 = options, byte 1 = seed of the chunking, the rest = bytes
 * from the "client". The stream is fed twice: whole, and in pseudo-random
 * chunks (1 byte up to a few KiB); both runs must make the same callbacks
 * and send the same bytes. Invariants checked:
 *   - the state never goes back (OPEN -> CLOSING -> CLOSED);
 *   - delivered text is valid UTF-8 and no message exceeds max_message;
 *   - everything sent is a sequence of well-formed server frames (FIN,
 *     no RSV, unmasked, minimal length, control <= 125 bytes, a close
 *     carries nothing or a valid code + UTF-8 reason, nothing after it);
 *   - once closed, input is refused and nothing more is sent.
 * Options: bit 0 pause after each message (resumed at once), bit 1 echo
 * text back from on_message, bit 2 small limits, bit 3 close from
 * on_message at the third message, bit 4 send a ping first.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "chat/common.h"
#include "chat/utf8.h"
#include "chat/ws.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            abort();                                                                     \
        }                                                                                \
    } while (0)

typedef struct {
    chat_ws_t *ws;
    chat_buf_t out, ev;
    unsigned opts;
    size_t max_message;
    int nmsg;
} fz_t;

static int f_send(void *baton, const uint8_t *data, size_t len)
{
    fz_t *f = baton;
    CHECK(len > 0);
    CHECK(chat_buf_append(&f->out, data, len) == CHAT_OK);
    return 0;
}

static int f_message(void *baton, int opcode, const uint8_t *data, size_t len)
{
    fz_t *f = baton;
    CHECK(opcode == CHAT_WS_OP_TEXT || opcode == CHAT_WS_OP_BINARY);
    CHECK(len <= f->max_message);
    CHECK(chat_ws_state(f->ws) == CHAT_WS_OPEN);
    if (opcode == CHAT_WS_OP_TEXT) {
        CHECK(chat_utf8_valid(data, len));
    }
    chat_buf_printf(&f->ev, "M%d:%zu:", opcode, len);
    chat_buf_append(&f->ev, data, len);
    f->nmsg++;
    if ((f->opts & 2) && opcode == CHAT_WS_OP_TEXT) {
        CHECK(chat_ws_send_text(f->ws, (const char *)data, len) == CHAT_OK);
    }
    if ((f->opts & 8) && f->nmsg == 3) {
        CHECK(chat_ws_close(f->ws, 1001, "enough") == CHAT_OK);
    }
    return f->opts & 1;
}

static void f_pong(void *baton, const uint8_t *data, size_t len)
{
    fz_t *f = baton;
    CHECK(len <= 125);
    chat_buf_printf(&f->ev, "P:%zu:", len);
    chat_buf_append(&f->ev, data, len);
}

static void f_close(void *baton, uint16_t code, const char *reason, size_t len)
{
    fz_t *f = baton;
    CHECK(len <= 123);
    CHECK(reason[len] == '\0');
    CHECK(chat_utf8_valid((const uint8_t *)reason, len));
    CHECK(code == 1005 || (code >= 1000 && code <= 4999));
    chat_buf_printf(&f->ev, "C%u:%zu:", (unsigned)code, len);
    chat_buf_append(&f->ev, reason, len);
}

static const chat_ws_callbacks_t CB = {f_send, f_message, f_pong, f_close};

/* RFC 6455 7.4.1 plus the IANA-registered 1012-1014, which the layer
 * accepts (and so echoes) since d6515c2. */
static int code_ok(unsigned c)
{
    return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
           (c >= 3000 && c <= 4999);
}

/* Every sent byte must belong to a well-formed server frame. */
static void check_output(const fz_t *f)
{
    const uint8_t *p = (const uint8_t *)f->out.data;
    size_t n = f->out.len, i = 0;
    int closed = 0;

    while (i < n) {
        uint8_t b0, b1, op;
        uint64_t len;
        size_t h = 2;

        CHECK(!closed); /* nothing after our close frame */
        CHECK(n - i >= 2);
        b0 = p[i];
        b1 = p[i + 1];
        op = b0 & 0x0F;
        CHECK((b0 & 0xF0) == 0x80); /* FIN, no RSV */
        CHECK((b1 & 0x80) == 0);    /* unmasked */
        CHECK(op == 1 || op == 8 || op == 9 || op == 10);
        len = b1 & 0x7F;
        if (len == 126) {
            CHECK(n - i >= 4);
            len = ((uint64_t)p[i + 2] << 8) | p[i + 3];
            CHECK(len >= 126);
            h = 4;
        }
        else if (len == 127) {
            int k;
            CHECK(n - i >= 10);
            len = 0;
            for (k = 0; k < 8; k++) {
                len = (len << 8) | p[i + 2 + k];
            }
            CHECK(len >= 65536 && len < (1ull << 63));
            h = 10;
        }
        CHECK(len <= n - i - h);
        if (op >= 8) {
            CHECK(len <= 125);
        }
        if (op == 1) {
            CHECK(chat_utf8_valid(p + i + h, (size_t)len));
        }
        if (op == 8) {
            CHECK(len != 1);
            if (len >= 2) {
                CHECK(code_ok(((unsigned)p[i + h] << 8) | p[i + h + 1]));
                CHECK(chat_utf8_valid(p + i + h + 2, (size_t)len - 2));
            }
            closed = 1;
        }
        i += h + (size_t)len;
    }
    if (chat_ws_state(f->ws) != CHAT_WS_OPEN) {
        CHECK(closed); /* a close went out before the state left OPEN */
    }
}

static chat_status_t feed(fz_t *f, const uint8_t *p, size_t n)
{
    chat_ws_state_t before = chat_ws_state(f->ws);
    chat_status_t st = chat_ws_feed(f->ws, p, n);
    int guard = 0;

    while (st == CHAT_EAGAIN) {
        CHECK(f->opts & 1);
        CHECK(++guard < 1000000);
        st = chat_ws_resume(f->ws);
    }
    CHECK(st == CHAT_OK || st == CHAT_ECLOSED);
    CHECK(chat_ws_state(f->ws) >= before);
    CHECK((st == CHAT_OK) == (chat_ws_state(f->ws) == CHAT_WS_OPEN));
    return st;
}

static void run(fz_t *f, unsigned opts, uint32_t seed, const uint8_t *p, size_t n)
{
    chat_ws_limits_t lim;
    size_t i = 0;

    memset(f, 0, sizeof(*f));
    f->opts = opts;
    lim.max_message = (opts & 4) ? 1000 : 65536;
    lim.max_fragments = (opts & 4) ? 8 : 1024;
    f->max_message = lim.max_message;
    CHECK(chat_ws_create(&f->ws, &CB, f, &lim) == CHAT_OK);
    if (opts & 16) {
        CHECK(chat_ws_send_ping(f->ws, (const uint8_t *)"hb", 2) == CHAT_OK);
    }
    if (seed == 0) {
        feed(f, p, n);
    }
    else {
        uint32_t x = seed * 2654435761u | 1;
        while (i < n) {
            size_t k;
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            k = (x & 0x300) ? (x >> 16) % 16 : (x >> 16) % 5000;
            if (k > n - i) {
                k = n - i;
            }
            feed(f, p + i, k);
            i += k;
        }
    }
    check_output(f);
    if (chat_ws_state(f->ws) == CHAT_WS_CLOSED) {
        size_t before = f->out.len;
        CHECK(chat_ws_feed(f->ws, p, n) == CHAT_ECLOSED);
        CHECK(chat_ws_send_text(f->ws, "x", 1) == CHAT_ECLOSED);
        CHECK(f->out.len == before);
    }
}

static void done(fz_t *f)
{
    chat_ws_destroy(f->ws);
    chat_buf_free(&f->out);
    chat_buf_free(&f->ev);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_t a, b;
    unsigned opts;
    uint32_t seed;

    if (size < 2) {
        return 0;
    }
    opts = data[0];
    seed = (uint32_t)data[1] + 1;
    data += 2;
    size -= 2;

    run(&a, opts, 0, data, size);
    run(&b, opts, seed, data, size);
    CHECK(a.out.len == b.out.len);
    CHECK(a.out.len == 0 || memcmp(a.out.data, b.out.data, a.out.len) == 0);
    CHECK(a.ev.len == b.ev.len);
    CHECK(a.ev.len == 0 || memcmp(a.ev.data, b.ev.data, a.ev.len) == 0);
    CHECK(chat_ws_state(a.ws) == chat_ws_state(b.ws));
    CHECK(chat_ws_sent_close_code(a.ws) == chat_ws_sent_close_code(b.ws));
    CHECK(chat_ws_recv_close_code(a.ws) == chat_ws_recv_close_code(b.ws));
    done(&a);
    done(&b);
    return 0;
}
