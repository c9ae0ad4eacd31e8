/* chat_ws.c - the RFC 6455 server-side message layer (see chat/ws.h).
 *
 * libwslay's frame codec (wslay_frame_recv/send) splits the byte stream into
 * frames, checks the length encodings and unmasks payloads. Everything above
 * single frames lives here: masking policy, RSV/opcode checks, control frame
 * rules, fragmentation and reassembly, streaming UTF-8 validation, close code
 * validation, the close handshake, size and fragment caps, and pausing.
 *
 * Input path: chat_ws_feed() points the ws at the caller's bytes; wslay pulls
 * them through recv_cb() into its own 4 KiB buffer and hands back frame
 * pieces (header + a chunk of payload). Only when on_message pauses do the
 * unconsumed bytes get copied into ws->pend, to be pulled on resume.
 * A message that arrives as one unfragmented frame in one piece is delivered
 * straight from wslay's buffer; others are reassembled in ws->msg, which is
 * reused and released after a message that made it grow beyond
 * CHAT_WS_KEEP bytes.
 *
 * Failure handling ("fail the WebSocket connection", RFC 6455 7.1.7): the
 * close frame with the error code is sent, the state becomes CHAT_WS_CLOSED
 * at once (the owner flushes and closes TCP) and nothing after the bad frame
 * is looked at. A close started by chat_ws_close() instead goes to
 * CHAT_WS_CLOSING and input is still parsed, but only a close frame from the
 * peer is acted upon (it moves the state to CHAT_WS_CLOSED).
 *
 * A close frame we send without a status code (the echo of a peer close
 * that had none) is reported by chat_ws_sent_close_code() as 1005.
 *
 * Callbacks may call chat_ws_send_text/ping/close on the same ws, but not
 * chat_ws_feed/resume (CHAT_EINVAL) nor chat_ws_destroy.
 *
 * What the server sends (frames, the handshake's accept key) is in
 * chat_ws_send.c; the state both share is in chat_ws_int.h.
 */
#include <stdlib.h>
#include <string.h>

#include <wslay/wslay.h>

#include "chat/common.h"
#include "chat/utf8.h"
#include "chat/ws.h"
#include "chat_ws_int.h"

/* ---- wslay callbacks --------------------------------------------------- */

/* Follows the frame boundaries in the bytes handed to wslay (see sh_*). */
static void shadow_scan(chat_ws_t *ws, const uint8_t *p, size_t n)
{
    while (n) {
        if (ws->sh_in_payload) {
            uint64_t k = ws->sh_plen - ws->sh_seen;
            if (k > n) {
                k = n;
            }
            ws->sh_seen += k;
            p += k;
            n -= (size_t)k;
            if (ws->sh_seen == ws->sh_plen) {
                ws->sh_in_payload = 0;
                ws->sh_hlen = ws->sh_need = 0;
            }
            continue;
        }
        ws->sh_hdr[ws->sh_hlen++] = *p++;
        n--;
        if (ws->sh_hlen == 2) {
            uint8_t l7 = ws->sh_hdr[1] & 0x7f;
            ws->sh_need = 2 +
                          (l7 == 126   ? 2
                           : l7 == 127 ? 8
                                       : 0) +
                          ((ws->sh_hdr[1] & 0x80) ? 4 : 0);
        }
        if (ws->sh_need && ws->sh_hlen == ws->sh_need) {
            uint8_t l7 = ws->sh_hdr[1] & 0x7f;
            uint64_t len = l7;
            int i;
            if (l7 == 126) {
                len = ((uint64_t)ws->sh_hdr[2] << 8) | ws->sh_hdr[3];
            }
            else if (l7 == 127) {
                for (len = 0, i = 2; i < 10; i++) {
                    len = (len << 8) | ws->sh_hdr[i];
                }
            }
            ws->sh_plen = len;
            ws->sh_seen = 0;
            ws->sh_in_payload = len > 0;
            if (!len) {
                ws->sh_hlen = ws->sh_need = 0;
            }
        }
    }
}

/* Frame API contract (wslay.h): fill at most len bytes and return the
 * count; -1 (or 0) means "nothing now", which wslay_frame_recv turns into
 * WSLAY_ERR_WANT_READ. (WSLAY_ERR_WOULDBLOCK and wslay_event_set_error
 * belong to the event API, which is not used.) */
static ssize_t recv_cb(uint8_t *buf, size_t len, int flags, void *user)
{
    chat_ws_t *ws = user;
    size_t n = 0, k;

    if (ws->pend_off < ws->pend.len) {
        k = ws->pend.len - ws->pend_off;
        if (k > len) {
            k = len;
        }
        memcpy(buf, ws->pend.data + ws->pend_off, k);
        ws->pend_off += k;
        n += k;
    }
    if (n < len && ws->srclen) {
        k = ws->srclen;
        if (k > len - n) {
            k = len - n;
        }
        memcpy(buf + n, ws->src, k);
        ws->src += k;
        ws->srclen -= k;
        n += k;
    }
    if (n) {
        shadow_scan(ws, buf, n);
    }
    return n ? (ssize_t)n : -1;
}

/* wslay counts a short write as "want write"; the owner's send takes all. */
static ssize_t send_cb(const uint8_t *data, size_t len, int flags, void *user)
{
    chat_ws_t *ws = user;

    if (ws->send_err || ws->cb.send(ws->baton, data, len) != 0) {
        ws->send_err = 1;
        return -1;
    }
    ws->st.bytes_out += len;
    return (ssize_t)len;
}

/* Server frames are never masked, so wslay must never ask for a key. */
static int genmask_cb(uint8_t *buf, size_t len, void *user)
{
    return -1;
}

/* ---- input -------------------------------------------------------------- */

static size_t input_avail(const chat_ws_t *ws)
{
    return (ws->pend.len - ws->pend_off) + ws->srclen;
}

/* Fails the connection: close frame with code, then CLOSED, input ignored. */
static void ws_fail(chat_ws_t *ws, uint16_t code)
{
    if (ws->state == CHAT_WS_OPEN) {
        chat_log(CHAT_LOG_DEBUG, "websocket: failing the connection with %u",
                 (unsigned)code);
        chat_ws_send_close(ws, code, NULL, 0);
    }
    ws->state = CHAT_WS_CLOSED;
}

/* Close codes a peer may put on the wire (RFC 6455 7.4, IANA registry as
 * Autobahn checks it): 1004-1006 and 1015 are reserved, 1012-2999 are
 * unassigned or reserved for extensions, 3000-4999 are for applications. */
/* Codes allowed on the wire: RFC 6455 7.4.1 plus the IANA-registered
 * 1012 (service restart), 1013 (try again later), 1014 (bad gateway). */
static int close_code_valid(uint16_t code)
{
    if (code >= 1000 && code <= 1014) {
        return code != 1004 && code != 1005 && code != 1006;
    }
    return code >= 3000 && code <= 4999;
}

static void reset_message(chat_ws_t *ws)
{
    ws->msg_active = 0;
    ws->msg_len = 0;
    ws->msg_frames = 0;
    chat_buf_reset(&ws->msg, CHAT_WS_KEEP);
}

/* The verdict on a data or control frame header while OPEN: 0 to accept
 * it, else the close code to fail the connection with. Used when wslay
 * reports the frame, and earlier on a header whose payload has not come
 * yet (run()), so that nothing is waited for that would be refused. */
static uint16_t header_verdict(const chat_ws_t *ws, int fin, int rsv, int mask,
                               uint8_t op, uint64_t len)
{
    if (!mask) {
        return CHAT_WS_CLOSE_PROTOCOL; /* 5.1: clients must mask */
    }
    if (rsv) {
        return CHAT_WS_CLOSE_PROTOCOL; /* no extension negotiated */
    }
    switch (op) {
    case CHAT_WS_OP_CLOSE:
    case CHAT_WS_OP_PING:
    case CHAT_WS_OP_PONG:
        if (!fin || len > 125) {
            return CHAT_WS_CLOSE_PROTOCOL;
        }
        return 0;
    case CHAT_WS_OP_TEXT:
    case CHAT_WS_OP_BINARY:
        if (ws->msg_active) {
            return CHAT_WS_CLOSE_PROTOCOL; /* previous one unfinished */
        }
        break;
    case CHAT_WS_OP_CONT:
        if (!ws->msg_active) {
            return CHAT_WS_CLOSE_PROTOCOL; /* nothing to continue */
        }
        break;
    default:
        return CHAT_WS_CLOSE_PROTOCOL; /* reserved opcode */
    }
    if (ws->msg_frames >= ws->lim.max_fragments) {
        return CHAT_WS_CLOSE_POLICY;
    }
    /* Decided on the header, before any of the payload is buffered. */
    if (len > (uint64_t)(ws->lim.max_message - ws->msg_len)) {
        return CHAT_WS_CLOSE_TOO_BIG;
    }
    return 0;
}

/* A frame header arrived (with the first payload chunk, if any). Returns 0
 * to go on, -1 if the connection was failed. */
static int frame_start(chat_ws_t *ws, const struct wslay_frame_iocb *io)
{
    uint8_t op = io->opcode;
    uint16_t code;

    ws->st.frames_in++;
    ws->in_frame = 1;
    ws->fr_op = op;
    ws->fr_fin = io->fin;
    ws->fr_len = io->payload_length;
    ws->fr_off = 0;
    ws->fr_direct = 0;
    ws->ctrl_len = 0;

    if (ws->state != CHAT_WS_OPEN) {
        /* Closing: only the peer's close matters. wslay already refused
         * control frames that are long or fragmented. */
        ws->fr_act = (op == CHAT_WS_OP_CLOSE) ? ACT_CTRL : ACT_SKIP;
        return 0;
    }
    code = header_verdict(ws, io->fin, io->rsv, io->mask, op, io->payload_length);
    if (code) {
        ws_fail(ws, code);
        return -1;
    }
    if (op & 0x8) {
        ws->fr_act = ACT_CTRL;
        return 0;
    }
    if (op != CHAT_WS_OP_CONT) {
        ws->msg_active = 1;
        ws->msg_op = op;
        chat_utf8_init(&ws->u8);
        /* A whole single-frame message in one piece needs no copy. */
        ws->fr_direct = io->fin && io->data_length == io->payload_length;
    }
    ws->msg_frames++;
    ws->fr_act = ACT_DATA;
    return 0;
}

/* wslay ran dry: if it holds a complete header whose payload has not
 * started (so it has not reported the frame), judge the header now. */
static int pending_header_check(chat_ws_t *ws)
{
    const uint8_t *h = ws->sh_hdr;
    uint16_t code;

    if (ws->state != CHAT_WS_OPEN || !ws->sh_in_payload || ws->sh_seen || ws->in_frame) {
        return 0;
    }
    code = header_verdict(ws, h[0] & 0x80, h[0] & 0x70, h[1] & 0x80, h[0] & 0x0f,
                          ws->sh_plen);
    if (!code) {
        return 0;
    }
    ws->st.frames_in++;
    ws_fail(ws, code);
    return -1;
}

/* Delivers the complete message. Returns 0, or -1 if the ws stopped. */
static int deliver(chat_ws_t *ws, const uint8_t *data, size_t len)
{
    int rc;

    if (ws->msg_op == CHAT_WS_OP_TEXT && ws->u8.state != CHAT_UTF8_ACCEPT) {
        ws_fail(ws, CHAT_WS_CLOSE_INVALID_DATA); /* ends inside a sequence */
        return -1;
    }
    ws->st.messages_in++;
    rc = ws->cb.on_message(ws->baton, ws->msg_op, data ? data : (const uint8_t *)"", len);
    reset_message(ws);
    if (rc) {
        ws->paused = 1;
    }
    return 0;
}

/* The peer's close frame is complete in ws->ctrl. */
static void handle_close(chat_ws_t *ws)
{
    uint16_t code = CHAT_WS_CLOSE_NO_STATUS;
    const char *reason = (const char *)ws->ctrl + 2;
    size_t rlen = 0;
    int valid = 1;

    ws->ctrl[ws->ctrl_len] = '\0';
    if (ws->ctrl_len == 1) {
        valid = 0;
        reason = "";
        if (ws->state == CHAT_WS_OPEN) {
            ws_fail(ws, CHAT_WS_CLOSE_PROTOCOL);
            return;
        }
    }
    else if (ws->ctrl_len >= 2) {
        code = (uint16_t)((ws->ctrl[0] << 8) | ws->ctrl[1]);
        rlen = ws->ctrl_len - 2;
        if (!close_code_valid(code)) {
            valid = 0;
            if (ws->state == CHAT_WS_OPEN) {
                ws_fail(ws, CHAT_WS_CLOSE_PROTOCOL);
                return;
            }
        }
        else if (!chat_utf8_valid(ws->ctrl + 2, rlen)) {
            valid = 0;
            if (ws->state == CHAT_WS_OPEN) {
                ws_fail(ws, CHAT_WS_CLOSE_INVALID_DATA);
                return;
            }
        }
    }
    else {
        reason = "";
    }
    ws->recv_code = code;
    if (valid && ws->cb.on_close) {
        ws->cb.on_close(ws->baton, code, reason, rlen);
    }
    if (ws->state == CHAT_WS_OPEN) {
        /* Echo the code (none if the peer sent none). */
        chat_ws_send_close(ws, code == CHAT_WS_CLOSE_NO_STATUS ? 0 : code, NULL, 0);
    }
    ws->state = CHAT_WS_CLOSED;
}

/* One piece of a frame from wslay. Returns 0 to go on, -1 to stop. */
static int frame_chunk(chat_ws_t *ws, const struct wslay_frame_iocb *io)
{
    const uint8_t *d = io->data;
    size_t n = io->data_length;

    if (!ws->in_frame && frame_start(ws, io) < 0) {
        return -1;
    }
    ws->fr_off += n;
    switch (ws->fr_act) {
    case ACT_DATA:
        if (ws->msg_op == CHAT_WS_OP_TEXT &&
            chat_utf8_feed(&ws->u8, d, n) == CHAT_UTF8_REJECT) {
            ws_fail(ws, CHAT_WS_CLOSE_INVALID_DATA); /* fail fast */
            return -1;
        }
        if (!ws->fr_direct && n && chat_buf_append(&ws->msg, d, n) != CHAT_OK) {
            ws_fail(ws, CHAT_WS_CLOSE_INTERNAL);
            return -1;
        }
        ws->msg_len += n;
        break;
    case ACT_CTRL:
        /* fr_len <= 125 was checked, so this fits. */
        memcpy(ws->ctrl + ws->ctrl_len, d, n);
        ws->ctrl_len += n;
        break;
    default:
        break;
    }
    if (ws->fr_off < ws->fr_len) {
        return 0;
    }
    /* The frame is complete. */
    ws->in_frame = 0;
    if (ws->fr_act == ACT_DATA) {
        if (ws->fr_fin) {
            return deliver(ws, ws->fr_direct ? d : (const uint8_t *)ws->msg.data,
                           ws->msg_len);
        }
        return 0;
    }
    if (ws->fr_act != ACT_CTRL) {
        return 0;
    }
    switch (ws->fr_op) {
    case CHAT_WS_OP_PING:
        ws->st.pings_in++;
        if (ws->state == CHAT_WS_OPEN &&
            chat_ws_send_frame(ws, CHAT_WS_OP_PONG, ws->ctrl, ws->ctrl_len) != CHAT_OK) {
            return -1;
        }
        break;
    case CHAT_WS_OP_PONG:
        ws->st.pongs_in++;
        if (ws->state == CHAT_WS_OPEN && ws->cb.on_pong) {
            ws->cb.on_pong(ws->baton, ws->ctrl, ws->ctrl_len);
        }
        break;
    case CHAT_WS_OP_CLOSE:
        handle_close(ws);
        break;
    }
    return 0;
}

/* Moves unconsumed caller bytes into ws->pend before feed returns. */
static chat_status_t keep_rest(chat_ws_t *ws)
{
    if (ws->pend_off == ws->pend.len) {
        chat_buf_reset(&ws->pend, CHAT_WS_KEEP);
        ws->pend_off = 0;
    }
    if (ws->srclen) {
        if (ws->pend_off) {
            memmove(ws->pend.data, ws->pend.data + ws->pend_off,
                    ws->pend.len - ws->pend_off);
            ws->pend.len -= ws->pend_off;
            ws->pend_off = 0;
        }
        if (chat_buf_append(&ws->pend, ws->src, ws->srclen) != CHAT_OK) {
            ws->src = NULL;
            ws->srclen = 0;
            return CHAT_ENOMEM;
        }
    }
    ws->src = NULL;
    ws->srclen = 0;
    return CHAT_OK;
}

/* Runs wslay over the available input until it runs dry, the ws pauses or
 * the connection ends. */
static chat_status_t run(chat_ws_t *ws)
{
    struct wslay_frame_iocb io;

    ws->in_feed = 1;
    ws->paused = 0;
    while (ws->state != CHAT_WS_CLOSED && !ws->paused) {
        ssize_t r = wslay_frame_recv(ws->fr, &io);
        if (r == WSLAY_ERR_WANT_READ) {
            if (input_avail(ws)) {
                continue; /* wslay only stops when recv_cb had nothing */
            }
            pending_header_check(ws);
            break;
        }
        if (r < 0) {
            /* WSLAY_ERR_PROTO: bad length encoding, or a control frame that
             * is long or fragmented. Frame sync is lost either way. */
            ws_fail(ws, CHAT_WS_CLOSE_PROTOCOL);
            break;
        }
        if (frame_chunk(ws, &io) < 0) {
            break;
        }
    }
    if (ws->state == CHAT_WS_CLOSED) {
        ws->src = NULL;
        ws->srclen = 0;
        chat_buf_free(&ws->pend);
        ws->pend_off = 0;
        reset_message(ws);
        chat_buf_free(&ws->msg);
    }
    else if (keep_rest(ws) != CHAT_OK) {
        ws_fail(ws, CHAT_WS_CLOSE_INTERNAL);
        chat_buf_free(&ws->pend);
        ws->pend_off = 0;
    }
    ws->in_feed = 0;
    if (ws->state == CHAT_WS_CLOSED) {
        return CHAT_ECLOSED;
    }
    if (ws->paused) {
        return CHAT_EAGAIN;
    }
    return ws->state == CHAT_WS_OPEN ? CHAT_OK : CHAT_ECLOSED;
}

/* ---- public API --------------------------------------------------------- */

chat_status_t chat_ws_create(chat_ws_t **pws, const chat_ws_callbacks_t *cb, void *baton,
                             const chat_ws_limits_t *limits)
{
    struct wslay_frame_callbacks fcb;
    chat_ws_t *ws;

    if (!pws) {
        return CHAT_EINVAL;
    }
    *pws = NULL;
    if (!cb || !cb->send || !cb->on_message || !limits || !limits->max_message ||
        !limits->max_fragments) {
        return CHAT_EINVAL;
    }
    ws = calloc(1, sizeof(*ws));
    if (!ws) {
        return CHAT_ENOMEM;
    }
    fcb.send_callback = send_cb;
    fcb.recv_callback = recv_cb;
    fcb.genmask_callback = genmask_cb;
    if (wslay_frame_context_init(&ws->fr, &fcb, ws) != 0) {
        free(ws);
        return CHAT_ENOMEM;
    }
    ws->cb = *cb;
    ws->baton = baton;
    ws->lim = *limits;
    ws->state = CHAT_WS_OPEN;
    chat_buf_init(&ws->pend);
    chat_buf_init(&ws->msg);
    chat_utf8_init(&ws->u8);
    *pws = ws;
    return CHAT_OK;
}

void chat_ws_destroy(chat_ws_t *ws)
{
    if (!ws) {
        return;
    }
    wslay_frame_context_free(ws->fr);
    chat_buf_free(&ws->pend);
    chat_buf_free(&ws->msg);
    free(ws);
}

chat_status_t chat_ws_feed(chat_ws_t *ws, const uint8_t *data, size_t len)
{
    if (!ws || (!data && len) || ws->in_feed) {
        return CHAT_EINVAL;
    }
    ws->st.bytes_in += len;
    if (ws->state == CHAT_WS_CLOSED) {
        return CHAT_ECLOSED;
    }
    /* Bytes left by a pause come first; then the new ones. Feeding while
     * paused continues processing, like chat_ws_resume(). */
    ws->src = data;
    ws->srclen = len;
    return run(ws);
}

chat_status_t chat_ws_resume(chat_ws_t *ws)
{
    if (!ws || ws->in_feed) {
        return CHAT_EINVAL;
    }
    if (ws->state == CHAT_WS_CLOSED) {
        return CHAT_ECLOSED;
    }
    ws->src = NULL;
    ws->srclen = 0;
    return run(ws);
}

chat_status_t chat_ws_close(chat_ws_t *ws, uint16_t code, const char *reason)
{
    size_t rlen = 0, good = 0;

    if (!ws) {
        return CHAT_EINVAL;
    }
    if (ws->state != CHAT_WS_OPEN) {
        return CHAT_ECLOSED;
    }
    if (!close_code_valid(code)) {
        return CHAT_EINVAL; /* e.g. 1005/1006/1015 must never be sent */
    }
    if (reason) {
        chat_utf8_t u;
        size_t i;

        /* Keep the longest prefix of at most 123 bytes that is valid and
         * ends on a code point boundary. */
        rlen = strnlen(reason, CHAT_WS_MAX_REASON + 1);
        if (rlen > CHAT_WS_MAX_REASON) {
            rlen = CHAT_WS_MAX_REASON;
        }
        chat_utf8_init(&u);
        for (i = 0; i < rlen; i++) {
            uint32_t s = chat_utf8_feed(&u, (const uint8_t *)reason + i, 1);
            if (s == CHAT_UTF8_REJECT) {
                break;
            }
            if (s == CHAT_UTF8_ACCEPT) {
                good = i + 1;
            }
        }
    }
    /* A half-received message is dropped and the rest of a frame under way
     * skipped (frame sync with wslay is kept): only the peer's close counts
     * from now on. */
    if (ws->in_frame && !(ws->fr_act == ACT_CTRL && ws->fr_op == CHAT_WS_OP_CLOSE)) {
        ws->fr_act = ACT_SKIP;
    }
    reset_message(ws);
    ws->state = CHAT_WS_CLOSING;
    if (chat_ws_send_close(ws, code, (const uint8_t *)reason, good) != CHAT_OK) {
        return CHAT_ECLOSED;
    }
    return CHAT_OK;
}

chat_ws_state_t chat_ws_state(const chat_ws_t *ws)
{
    return ws ? ws->state : CHAT_WS_CLOSED;
}

int chat_ws_at_rest(const chat_ws_t *ws)
{
    /* The shadow is at a frame boundary only when every byte handed to
     * wslay belongs to frames it has delivered whole. */
    return ws && ws->state == CHAT_WS_OPEN && !ws->in_feed && !ws->paused &&
           !ws->in_frame && !ws->msg_active && !ws->sh_hlen && !ws->sh_in_payload &&
           ws->pend_off >= ws->pend.len && !ws->srclen;
}

uint16_t chat_ws_sent_close_code(const chat_ws_t *ws)
{
    return ws ? ws->sent_code : 0;
}

uint16_t chat_ws_recv_close_code(const chat_ws_t *ws)
{
    return ws ? ws->recv_code : 0;
}

void chat_ws_get_stats(const chat_ws_t *ws, chat_ws_stats_t *st)
{
    if (!st) {
        return;
    }
    if (!ws) {
        memset(st, 0, sizeof(*st));
        return;
    }
    *st = ws->st;
}
