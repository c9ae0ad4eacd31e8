/* chat_ws_send.c - what the WebSocket server sends: unmasked FIN frames
 * (text, ping, pong, close), and the Sec-WebSocket-Accept key of the
 * opening handshake. Server frames are never masked nor fragmented.
 */
#include <string.h>

#include <wslay/wslay.h>

#include "chat/common.h"
#include "chat/ws.h"
#include "chat_ws_int.h"

/* ---- frames --------------------------------------------------------------- */

chat_status_t chat_ws_send_frame(chat_ws_t *ws, uint8_t op, const uint8_t *data,
                                 size_t len)
{
    struct wslay_frame_iocb io;
    ssize_t r;

    memset(&io, 0, sizeof(io));
    io.fin = 1;
    io.opcode = op;
    io.payload_length = len;
    io.data = data;
    io.data_length = len;
    r = wslay_frame_send(ws->fr, &io);
    if (r < 0 || (size_t)r != len || ws->send_err) {
        ws->send_err = 1;
        ws->state = CHAT_WS_CLOSED;
        return CHAT_ECLOSED;
    }
    ws->st.frames_out++;
    return CHAT_OK;
}

chat_status_t chat_ws_send_close(chat_ws_t *ws, uint16_t code, const uint8_t *reason,
                                 size_t rlen)
{
    uint8_t p[2 + CHAT_WS_MAX_REASON];

    ws->sent_code = code ? code : CHAT_WS_CLOSE_NO_STATUS;
    if (!code) {
        return chat_ws_send_frame(ws, CHAT_WS_OP_CLOSE, NULL, 0);
    }
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    if (rlen) {
        memcpy(p + 2, reason, rlen);
    }
    return chat_ws_send_frame(ws, CHAT_WS_OP_CLOSE, p, 2 + rlen);
}

chat_status_t chat_ws_send_text(chat_ws_t *ws, const char *data, size_t len)
{
    chat_status_t st;

    if (!ws || (!data && len)) {
        return CHAT_EINVAL;
    }
    if (ws->state != CHAT_WS_OPEN) {
        return CHAT_ECLOSED;
    }
    if ((uint64_t)len >= (1ull << 63)) {
        return CHAT_ETOOBIG;
    }
    st = chat_ws_send_frame(ws, CHAT_WS_OP_TEXT, (const uint8_t *)data, len);
    if (st == CHAT_OK) {
        ws->st.messages_out++;
    }
    return st;
}

chat_status_t chat_ws_send_ping(chat_ws_t *ws, const uint8_t *data, size_t len)
{
    if (!ws || (!data && len) || len > 125) {
        return CHAT_EINVAL;
    }
    if (ws->state != CHAT_WS_OPEN) {
        return CHAT_ECLOSED;
    }
    return chat_ws_send_frame(ws, CHAT_WS_OP_PING, data, len);
}

/* ---- the opening handshake --------------------------------------------------- */

chat_status_t chat_ws_accept_key(const char *key, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    uint8_t raw[18], digest[20];
    char canon[25];
    chat_sha1_t sha;
    size_t n;

    if (!key || !out) {
        return CHAT_EINVAL;
    }
    /* Tolerate optional whitespace around the header value. */
    while (*key == ' ' || *key == '\t') {
        key++;
    }
    n = strlen(key);
    while (n && (key[n - 1] == ' ' || key[n - 1] == '\t')) {
        n--;
    }
    /* 16 bytes encode to exactly 24 characters ending in "==". Reject
     * non-canonical forms (stray bits in the last character) too. */
    if (n != 24 || chat_base64_decode(key, n, raw, sizeof(raw)) != 16 ||
        chat_base64_encode(raw, 16, canon, sizeof(canon)) != 24 ||
        memcmp(canon, key, 24) != 0) {
        return CHAT_EINVAL;
    }
    chat_sha1_init(&sha);
    chat_sha1_update(&sha, key, 24);
    chat_sha1_update(&sha, guid, sizeof(guid) - 1);
    chat_sha1_final(&sha, digest);
    if (chat_base64_encode(digest, 20, out, 29) != 28) {
        return CHAT_EINTERNAL;
    }
    return CHAT_OK;
}
