/* chat/ws.h - RFC 6455 server-side message layer, without I/O.
 *
 * Frames are decoded and encoded by Debian's libwslay (wslay_frame_*); this
 * unit adds everything above single frames: masking policy, control frame
 * rules, fragmentation, streaming UTF-8 validation of text, close-code
 * validation, the close handshake, and resource caps. It never reads or
 * writes a socket: the owner feeds received bytes with chat_ws_feed() and
 * gets bytes to send through the send callback. That is why it can be tested
 * byte by byte and fuzzed.
 *
 * Reactions to a misbehaving peer (a close frame with the code is sent,
 * after which the connection has failed: the state is CHAT_WS_CLOSED, so the
 * owner flushes and closes TCP, and further input is ignored):
 *   unmasked client frame, RSV bits, reserved opcode, control frame > 125
 *   bytes or fragmented, continuation without a message, new data frame
 *   inside a fragmented message, close payload of 1 byte, invalid close code
 *                                                              -> 1002
 *   invalid UTF-8 in a text message or close reason           -> 1007
 *   more than max_fragments frames in one message             -> 1008
 *   message larger than max_message (checked on the frame header,
 *   before the payload is buffered)                           -> 1009
 * Pings are answered with a pong echoing the payload at once, also between
 * the fragments of a message. Unsolicited pongs are passed to on_pong.
 * A valid peer close is echoed with the same code (or with no code if the
 * peer sent none) and the state becomes CHAT_WS_CLOSED.
 */
#ifndef CHAT_WS_H
#define CHAT_WS_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHAT_WS_OP_CONT 0x0
#define CHAT_WS_OP_TEXT 0x1
#define CHAT_WS_OP_BINARY 0x2
#define CHAT_WS_OP_CLOSE 0x8
#define CHAT_WS_OP_PING 0x9
#define CHAT_WS_OP_PONG 0xA

/* Close codes (RFC 6455 7.4.1) */
#define CHAT_WS_CLOSE_NORMAL 1000
#define CHAT_WS_CLOSE_GOING_AWAY 1001
#define CHAT_WS_CLOSE_PROTOCOL 1002
#define CHAT_WS_CLOSE_UNSUPPORTED 1003
#define CHAT_WS_CLOSE_NO_STATUS 1005 /* never sent on the wire */
#define CHAT_WS_CLOSE_INVALID_DATA 1007
#define CHAT_WS_CLOSE_POLICY 1008
#define CHAT_WS_CLOSE_TOO_BIG 1009
#define CHAT_WS_CLOSE_INTERNAL 1011

typedef enum {
    CHAT_WS_OPEN = 0,    /* normal operation */
    CHAT_WS_CLOSING = 1, /* we sent a close frame, waiting for the peer's */
    CHAT_WS_CLOSED = 2   /* close handshake done (or failed): close TCP */
} chat_ws_state_t;

typedef struct chat_ws chat_ws_t;

typedef struct {
    /* Writes bytes to the peer. Must take all of them (the owner buffers
     * or blocks); returns 0, or -1 on a fatal write error (the ws then goes
     * to CHAT_WS_CLOSED and chat_ws_* return CHAT_ECLOSED). Required. */
    int (*send)(void *baton, const uint8_t *data, size_t len);
    /* A complete text or binary message (opcode CHAT_WS_OP_TEXT/BINARY).
     * data is valid only during the call; text is valid UTF-8. Return 0 to
     * go on, non-zero to stop processing the rest of the input fed in this
     * call (chat_ws_feed then returns CHAT_EAGAIN with the rest buffered).
     * Required. */
    int (*on_message)(void *baton, int opcode, const uint8_t *data, size_t len);
    /* A pong arrived (optional). */
    void (*on_pong)(void *baton, const uint8_t *data, size_t len);
    /* The peer sent a valid close (optional); code is CHAT_WS_CLOSE_NO_STATUS
     * when it carried none. Called before the echo is sent. */
    void (*on_close)(void *baton, uint16_t code, const char *reason, size_t len);
} chat_ws_callbacks_t;

typedef struct {
    size_t max_message;   /* bytes per (reassembled) message, e.g. 65536 */
    size_t max_fragments; /* frames per message, e.g. 1024 */
} chat_ws_limits_t;

/* Creates a server-side message layer. CHAT_OK, CHAT_EINVAL (missing
 * callbacks or zero limits) or CHAT_ENOMEM. */
chat_status_t chat_ws_create(chat_ws_t **pws, const chat_ws_callbacks_t *cb, void *baton,
                             const chat_ws_limits_t *limits);
void chat_ws_destroy(chat_ws_t *ws);

/* Feeds bytes received from the peer, in chunks of any size.
 * Returns:
 *   CHAT_OK       all bytes consumed (complete messages were delivered)
 *   CHAT_EAGAIN   on_message asked to pause; call chat_ws_resume() later
 *   CHAT_ECLOSED  the connection is closing or closed; input was ignored
 *                 from the offending frame on (check chat_ws_state()) */
chat_status_t chat_ws_feed(chat_ws_t *ws, const uint8_t *data, size_t len);
/* Continues processing input left buffered by a paused feed. Same returns. */
chat_status_t chat_ws_resume(chat_ws_t *ws);

/* Sends one unfragmented text frame. The caller guarantees valid UTF-8.
 * CHAT_OK, CHAT_ECLOSED (closing/closed, or the send callback failed),
 * CHAT_ETOOBIG (len over 2^63). */
chat_status_t chat_ws_send_text(chat_ws_t *ws, const char *data, size_t len);
/* Sends a ping (len <= 125). CHAT_OK, CHAT_EINVAL, CHAT_ECLOSED. */
chat_status_t chat_ws_send_ping(chat_ws_t *ws, const uint8_t *data, size_t len);
/* Starts the close handshake with code (and an optional UTF-8 reason, at
 * most 123 bytes, truncated on a code point boundary). The state becomes
 * CHAT_WS_CLOSING. CHAT_OK, CHAT_ECLOSED if already closing/closed (or the
 * send callback failed), CHAT_EINVAL if code may not be sent on the wire
 * (valid: 1000-1003, 1007-1011, 3000-4999; never 1005/1006/1015). */
chat_status_t chat_ws_close(chat_ws_t *ws, uint16_t code, const char *reason);

chat_ws_state_t chat_ws_state(const chat_ws_t *ws);
/* 1 if the layer is open and holds nothing half received (no partial
 * frame, no fragmented message, no input left by a pause): destroying it
 * now and creating a new one later loses only its counters. An owner that
 * keeps many idle connections uses this to hold no decoder for them. */
int chat_ws_at_rest(const chat_ws_t *ws);
/* The code of the close frame we sent (0 if none yet). */
uint16_t chat_ws_sent_close_code(const chat_ws_t *ws);
/* The code the peer sent (0 if none yet, 1005 if its close had no code). */
uint16_t chat_ws_recv_close_code(const chat_ws_t *ws);

/* Counters for metrics and tests. */
typedef struct {
    uint64_t frames_in, frames_out, messages_in, messages_out;
    uint64_t bytes_in, bytes_out, pings_in, pongs_in;
} chat_ws_stats_t;
void chat_ws_get_stats(const chat_ws_t *ws, chat_ws_stats_t *st);

/* Handshake helper: writes the Sec-WebSocket-Accept value for key into out
 * (at least 29 bytes). Returns CHAT_OK, or CHAT_EINVAL if key is not the
 * base64 encoding of exactly 16 bytes (RFC 6455 4.2.1 item 5). Contains its
 * own SHA-1 so the core stays free of APR. */
chat_status_t chat_ws_accept_key(const char *key, char out[29]);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_WS_H */
