/* chat_ws_int.h - private to the WebSocket message layer: the state of a
 * connection (struct chat_ws) shared by chat_ws.c (input, close handshake,
 * life cycle) and chat_ws_send.c (the frames the server sends).
 */
#ifndef CHAT_WS_INT_H
#define CHAT_WS_INT_H

#include <stddef.h>
#include <stdint.h>

#include <wslay/wslay.h>

#include "chat/common.h"
#include "chat/utf8.h"
#include "chat/ws.h"

/* Reassembly / pending buffers bigger than this are released when idle. */
#define CHAT_WS_KEEP 16384
/* Longest close reason: 125 - 2 bytes of status code. */
#define CHAT_WS_MAX_REASON 123

enum {
    ACT_SKIP = 0, /* payload ignored (closing: anything but a close) */
    ACT_DATA,     /* text / binary / continuation payload */
    ACT_CTRL      /* ping / pong / close payload, collected in ws->ctrl */
};

struct chat_ws {
    chat_ws_callbacks_t cb;
    void *baton;
    chat_ws_limits_t lim;
    wslay_frame_context_ptr fr;
    chat_ws_state_t state;
    uint16_t sent_code, recv_code;
    unsigned paused : 1;   /* on_message asked to stop */
    unsigned in_feed : 1;  /* guards against re-entrant feed/resume */
    unsigned send_err : 1; /* the send callback failed */

    /* Input not yet pulled by wslay: first pend[pend_off..], then src. */
    const uint8_t *src;
    size_t srclen;
    chat_buf_t pend;
    size_t pend_off;

    /* The frame being received. */
    int in_frame;
    uint8_t fr_op, fr_fin, fr_act, fr_direct;
    uint64_t fr_len, fr_off;

    /* The data message being received. */
    int msg_active;
    uint8_t msg_op;
    size_t msg_len, msg_frames;
    chat_utf8_t u8;
    chat_buf_t msg;

    /* Control frame payload, NUL terminated for on_close's reason. */
    uint8_t ctrl[126];
    size_t ctrl_len;

    /* A shadow of wslay's position in the input, kept from the bytes
     * recv_cb hands it: wslay reports a frame only together with its first
     * payload byte, so a header that arrives alone (a client announcing a
     * huge frame, then waiting) is judged from here. */
    uint8_t sh_hdr[14];
    uint8_t sh_hlen, sh_need;  /* header bytes seen / needed (0: not known) */
    int sh_in_payload;         /* the header is complete, payload follows */
    uint64_t sh_plen, sh_seen; /* its payload length / bytes handed so far */

    chat_ws_stats_t st;
};

/* Sends one unmasked FIN frame. CHAT_OK, or CHAT_ECLOSED after a write
 * error (the state is then CLOSED). */
chat_status_t chat_ws_send_frame(chat_ws_t *ws, uint8_t op, const uint8_t *data,
                                 size_t len);
/* Sends a close frame: code 0 means no status code (empty payload). */
chat_status_t chat_ws_send_close(chat_ws_t *ws, uint16_t code, const uint8_t *reason,
                                 size_t rlen);

#endif /* CHAT_WS_INT_H */
