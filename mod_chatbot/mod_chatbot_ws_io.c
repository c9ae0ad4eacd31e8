/* mod_chatbot_ws_io.c - a WebSocket connection's I/O: its message layer
 * (chat/ws.h), output pushed to the filters, input read and fed to it.
 *
 * The layer's callbacks queue frames and hand complete messages on; the
 * watcher's ping of a parked connection is written here too.
 *
 * Writes block (up to ChatbotSendTimeout) only where a thread is held
 * anyway - an answer streaming, or a connection that cannot park; an idle
 * connection under the MPM never waits on a slow reader.
 */
#include <stdlib.h>
#include <string.h>
#include <poll.h>

#include "httpd.h"
#include "http_log.h"
#include "util_filter.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"

#define READ_CHUNK 16384
#define NB_CHUNK 32768   /* passed to the filters at a time, non-blocking */
#define OUT_HIGH 65536   /* output queued before the client's input pauses */
#define SMALL_WRITE 4096 /* the network filter's THRESHOLD_MIN_WRITE */

/* ---- the message layer --------------------------------------------------------- */

/* Frames are queued in malloc'd memory that a heap bucket then owns (and
 * frees): a brigade write would take 8 KB blocks from the connection's own
 * allocator, which keeps them for the connection's whole life - the largest
 * part of what a parked connection would cost. */
static int ws_send_cb(void *baton, const uint8_t *data, size_t len)
{
    chatbot_wsc_t *w = baton;

    if (w->write_failed) {
        return -1;
    }
    if (chat_buf_append(&w->out, data, len) != CHAT_OK) {
        w->write_failed = 1;
        return -1;
    }
    return 0;
}

static void out_to_brigade(chatbot_wsc_t *w)
{
    if (w->out.len) {
        apr_bucket *b =
            apr_bucket_heap_create(w->out.data, w->out.len, free, w->c->bucket_alloc);
        APR_BRIGADE_INSERT_TAIL(w->bb_out, b);
        chat_buf_init(&w->out); /* the bucket owns the memory now */
    }
}

int chatbot_ws_out_empty(chatbot_wsc_t *w)
{
    return !w->out.len && APR_BRIGADE_EMPTY(w->bb_out);
}

static apr_off_t backlog(chatbot_wsc_t *w)
{
    apr_off_t n = 0;

    apr_brigade_length(w->bb_out, 0, &n);
    return n + (apr_off_t)w->out.len;
}

static int on_ws_message(void *baton, int opcode, const uint8_t *data, size_t len)
{
    chatbot_wsc_t *w = baton;

    w->last_msg = chatbot_now_ms();
    if (opcode != CHAT_WS_OP_TEXT) {
        chat_ws_close(w->ws, CHAT_WS_CLOSE_UNSUPPORTED,
                      "binary frames are not supported");
        w->close_why = "binary frame";
        return 1;
    }
    chatbot_ws_handle_message(w, data, len);
    chat_cmsg_free(&w->cm);
    /* The replies wait for the client: read no more until they are out
     * (what one client makes us queue stays bounded). */
    if (backlog(w) > OUT_HIGH || (w->nb_out && w->c->data_in_output_filters)) {
        w->input_paused = 1;
        return 1;
    }
    return 0;
}

static void on_ws_close(void *baton, uint16_t code, const char *reason, size_t len)
{
    chatbot_wsc_t *w = baton;

    w->close_why = apr_psprintf(w->r->pool, "client closed (%u)", code);
}

apr_status_t chatbot_ws_layer(chatbot_wsc_t *w)
{
    chat_ws_callbacks_t cbs;
    chat_ws_limits_t wl;

    if (w->ws) {
        return APR_SUCCESS;
    }
    memset(&cbs, 0, sizeof(cbs));
    cbs.send = ws_send_cb;
    cbs.on_message = on_ws_message;
    cbs.on_close = on_ws_close;
    wl.max_message = w->lim.max_message_bytes;
    wl.max_fragments = w->lim.max_fragments;
    return chat_ws_create(&w->ws, &cbs, w, &wl) == CHAT_OK ? APR_SUCCESS : APR_ENOMEM;
}

/* A parked connection with nothing half-received keeps no message layer
 * (its frame decoder alone is over 4 KB); the next wake builds a new one. */
void chatbot_ws_layer_release(chatbot_wsc_t *w)
{
    chat_ws_stats_t st;

    if (!w->ws || !chat_ws_at_rest(w->ws) || chat_ws_state(w->ws) != CHAT_WS_OPEN ||
        !APR_BRIGADE_EMPTY(w->bb_in) || w->input_paused) {
        return;
    }
    chat_ws_get_stats(w->ws, &st);
    w->ws_stats.frames_in += st.frames_in;
    w->ws_stats.frames_out += st.frames_out;
    w->ws_stats.messages_in += st.messages_in;
    w->ws_stats.messages_out += st.messages_out;
    w->ws_stats.bytes_in += st.bytes_in;
    w->ws_stats.bytes_out += st.bytes_out;
    chat_ws_destroy(w->ws);
    w->ws = NULL;
}

/* ---- output -------------------------------------------------------------------- */

/* Non-blocking push of what the network filter holds (as the MPM does in
 * its write completion); returns 1 if some of it is still waiting. */
static int core_pending(chatbot_wsc_t *w)
{
    ap_filter_t *f = w->core_out;
    apr_status_t rv;

    if (!f || w->c->aborted) {
        return 0;
    }
    rv = f->frec->filter_func.out_func(f, NULL);
    if (rv == APR_SUCCESS && w->c->data_in_output_filters) {
        /* the first call may have sent all and left the flag set */
        rv = f->frec->filter_func.out_func(f, NULL);
    }
    if (rv != APR_SUCCESS) {
        w->write_failed = 1;
        w->close_why = "write failed (vanished client)";
        return 0;
    }
    return w->c->data_in_output_filters;
}

static int writable(chatbot_wsc_t *w)
{
    struct pollfd pfd;

    if (w->fd < 0) {
        return 0;
    }
    pfd.fd = w->fd;
    pfd.events = POLLOUT;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT) &&
           !(pfd.revents & (POLLERR | POLLHUP | POLLNVAL));
}

int chatbot_ws_flush(chatbot_wsc_t *w)
{
    conn_rec *c = w->c;
    apr_status_t rv;

    out_to_brigade(w);
    if (w->write_failed || c->aborted) {
        apr_brigade_cleanup(w->bb_out);
        return 0;
    }
    if (!w->nb_out || !w->core_out) {
        if (APR_BRIGADE_EMPTY(w->bb_out)) {
            return 0;
        }
        APR_BRIGADE_INSERT_TAIL(w->bb_out, apr_bucket_flush_create(c->bucket_alloc));
        rv = ap_pass_brigade(c->output_filters, w->bb_out);
        apr_brigade_cleanup(w->bb_out);
        if (rv != APR_SUCCESS) {
            w->write_failed = 1;
            w->close_why = "write failed (slow or vanished client)";
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, w->r,
                          APLOGNO(10946) "chatbot: write to client failed");
        }
        return 0;
    }
    /* Non-blocking: a slice at a time, only while the network filter has
     * nothing waiting, so that it never holds enough to block. The network
     * filter writes a slice of 4 KB or more at once; a smaller one it would
     * set aside in a pool it creates for that and keeps for the
     * connection's life (5 KB more per parked connection, measured), so a
     * small slice goes with a FLUSH - only when the socket is writable:
     * POLLOUT on a TCP socket means a third of its send buffer is free,
     * which such a slice never exceeds. */
    for (;;) {
        apr_bucket *after;
        apr_off_t len = 0;

        if (core_pending(w)) {
            return 1;
        }
        if (w->write_failed || APR_BRIGADE_EMPTY(w->bb_out)) {
            apr_brigade_cleanup(w->bb_out);
            return 0;
        }
        rv = apr_brigade_partition(w->bb_out, NB_CHUNK, &after);
        if (rv != APR_SUCCESS && rv != APR_INCOMPLETE) {
            after = APR_BRIGADE_SENTINEL(w->bb_out);
        }
        /* bb_tmp keeps what comes after the slice */
        apr_brigade_split_ex(w->bb_out, after, w->bb_tmp);
        apr_brigade_length(w->bb_out, 0, &len);
        if (len < SMALL_WRITE && writable(w)) {
            APR_BRIGADE_INSERT_TAIL(w->bb_out, apr_bucket_flush_create(c->bucket_alloc));
        }
        rv = ap_pass_brigade(c->output_filters, w->bb_out);
        apr_brigade_cleanup(w->bb_out);
        APR_BRIGADE_CONCAT(w->bb_out, w->bb_tmp);
        if (rv != APR_SUCCESS) {
            w->write_failed = 1;
            w->close_why = "write failed (vanished client)";
            apr_brigade_cleanup(w->bb_out);
            return 0;
        }
    }
}

void chatbot_ws_send_json(chatbot_wsc_t *w)
{
    if (w->peer_gone || w->write_failed || !w->ws ||
        chat_ws_state(w->ws) != CHAT_WS_OPEN) {
        return;
    }
    if (chat_ws_send_text(w->ws, w->frame.data, w->frame.len) == CHAT_OK &&
        !w->defer_flush) {
        chatbot_ws_flush(w);
    }
}

/* Called by the watcher on a parked connection it borrowed: a ping, which
 * keeps NAT paths open and makes the client answer (its pong wakes the
 * connection in the MPM). Never blocks. */
void chatbot_ws_ping_parked(chatbot_wsc_t *w)
{
    static const char ping[] = "\x89\x07"
                               "chatbot";
    int nb = w->nb_out;

    w->last_ping = chatbot_now_ms();
    if (w->c->aborted || w->write_failed || w->c->data_in_output_filters ||
        !chatbot_ws_out_empty(w) || (w->ws && chat_ws_state(w->ws) != CHAT_WS_OPEN)) {
        return;
    }
    if (chat_buf_append(&w->out, ping, sizeof(ping) - 1) == CHAT_OK) {
        w->nb_out = 1;
        chatbot_ws_flush(w);
        w->nb_out = nb;
    }
}

/* ---- input --------------------------------------------------------------------- */

/* Feeds what bb_in holds to the message layer; stops (keeping the rest)
 * when it pauses. */
static void feed(chatbot_wsc_t *w)
{
    while (!APR_BRIGADE_EMPTY(w->bb_in) && !w->input_paused && !w->peer_gone) {
        apr_bucket *b = APR_BRIGADE_FIRST(w->bb_in);
        const char *data;
        apr_size_t n;
        chat_status_t rc;

        if (APR_BUCKET_IS_EOS(b)) {
            if (!w->is_h2) {
                w->peer_gone = 1; /* mod_http2 inserts one EOS on the first read */
            }
            apr_bucket_delete(b);
            continue;
        }
        if (APR_BUCKET_IS_METADATA(b)) {
            apr_bucket_delete(b);
            continue;
        }
        if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
            w->peer_gone = 1;
            break;
        }
        if (n) {
            w->last_rx = chatbot_now_ms();
            rc = chat_ws_feed(w->ws, (const uint8_t *)data, n);
            if (rc == CHAT_EAGAIN) {
                w->input_paused = 1;
            }
        }
        apr_bucket_delete(b);
        if (chat_ws_state(w->ws) == CHAT_WS_CLOSED) {
            apr_brigade_cleanup(w->bb_in);
            break;
        }
    }
}

/* Reads what the client sent, without blocking, until the filters say
 * EAGAIN: data already pulled off the socket by a filter (core, mod_ssl)
 * would not wake the next poll, so nothing may be left behind - except
 * while the input is paused, when the rest waits in bb_in. */
void chatbot_ws_read(chatbot_wsc_t *w)
{
    if (w->input_paused) {
        if (backlog(w) > OUT_HIGH || (w->nb_out && w->c->data_in_output_filters)) {
            return;
        }
        w->input_paused = 0;
        if (chat_ws_resume(w->ws) == CHAT_EAGAIN) {
            w->input_paused = 1;
            return;
        }
    }
    feed(w);
    /* (while closing too: the peer's close frame completes the handshake) */
    while (!w->peer_gone && !w->input_paused && APR_BRIGADE_EMPTY(w->bb_in) &&
           chat_ws_state(w->ws) != CHAT_WS_CLOSED) {
        apr_status_t rv = ap_get_brigade(w->c->input_filters, w->bb_in, AP_MODE_READBYTES,
                                         APR_NONBLOCK_READ, READ_CHUNK);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            break;
        }
        if (rv != APR_SUCCESS) {
            w->peer_gone = 1;
            if (!w->close_why) {
                w->close_why =
                    APR_STATUS_IS_EOF(rv) ? "client closed the connection" : "read error";
            }
            break;
        }
        if (APR_BRIGADE_EMPTY(w->bb_in)) {
            break;
        }
        feed(w);
        if (w->input_paused && !APR_BRIGADE_EMPTY(w->bb_in)) {
            /* kept across returns to the MPM: no transient buckets */
            apr_bucket *b;
            for (b = APR_BRIGADE_FIRST(w->bb_in); b != APR_BRIGADE_SENTINEL(w->bb_in);
                 b = APR_BUCKET_NEXT(b)) {
                apr_bucket_setaside(b, w->r->pool);
            }
        }
    }
}
