/* mod_chatbot_ws_mpm.c - the event MPM's side of a WebSocket: parking.
 *
 * An idle connection goes back to the MPM in CONN_STATE_ASYNC_WAITIO (from
 * the handler: write completion with CONN_SENSE_WANT_READ or _WRITE and
 * clogging, the only state a request may end in, as mod_http2 does) and
 * holds no thread: the MPM polls its socket, with httpd's Timeout, and
 * calls our process_connection hook (registered first) when the client
 * sends or its socket has room again, the way mod_http2 returns idle
 * sessions (h2_c1.c). The suspend/resume hooks say when no thread runs it
 * (PARKED: the watcher may then write a ping to it, see
 * mod_chatbot_ws_watch.c); pre_close_connection says the last words when
 * the MPM closes it on its own (Timeout passed in silence).
 *
 * The request that upgraded stays open until the WebSocket closes: its end
 * (the EOR bucket, which logs it and frees its pool) is held back by a
 * connection filter, so the access log line carries the connection's notes
 * and r, r->pool and the connection's state live as long as the connection.
 */
#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_request.h"
#include "mpm_common.h"
#include "apr_allocator.h"
#include "util_filter.h"

#include "mod_chatbot_ws.h"

static ap_filter_rec_t *hold_out_frec, *hold_in_frec;

/* ---- the MPM driver
 * ---------------------------------------------------------------------- */

static chatbot_wsc_t *wsc_of(conn_rec *c)
{
    if (c->master) {
        return NULL;
    }
    return ap_get_module_config(c->conn_config, &chatbot_module);
}

/* The MPM hands back a parked connection: the client sent something, its
 * socket has room again, or the watcher kicked it. */
static int ws_process_connection(conn_rec *c)
{
    chatbot_wsc_t *w = wsc_of(c);
    chatbot_ws_next_t next;

    if (!w) {
        return DECLINED;
    }
    c->clogging_input_filters = 0;
    w->handing_over = 0;
    if (w->state == WS_ST_PARKED) {
        chatbot_ws_transit(w, WS_ST_IDLE, "woken");
    }
    next = chatbot_ws_drive(w, 1);
    if (next == CHATBOT_WS_DONE) {
        chatbot_ws_finish(w); /* frees w */
        c->cs->state = CONN_STATE_LINGER;
        return OK;
    }
    w->park_sense =
        next == CHATBOT_WS_WANT_WRITE ? CONN_SENSE_WANT_WRITE : CONN_SENSE_WANT_READ;
    w->park_pending = 1;
    c->cs->sense = w->park_sense;
    c->cs->state = CONN_STATE_ASYNC_WAITIO;
    return OK;
}

/* The MPM queues the connection: from now on no thread runs it. */
static void ws_suspend(conn_rec *c, request_rec *r)
{
    chatbot_wsc_t *w = wsc_of(c);

    if (w && w->park_pending) {
        w->park_pending = 0;
        w->handing_over = 0;
        w->parked_at = chatbot_now_ms();
        chatbot_ws_transit(w, WS_ST_PARKED,
                           w->park_sense == CONN_SENSE_WANT_WRITE
                               ? "waits to write"
                               : "waits for the client");
    }
}

/* A worker takes the connection back (before any process_connection or
 * lingering close): wait until the watcher is done with it. */
static void ws_resume(conn_rec *c, request_rec *r)
{
    chatbot_wsc_t *w = wsc_of(c);

    if (w && w->state == WS_ST_PARKED) {
        chatbot_ws_transit(w, WS_ST_IDLE, "woken");
    }
}

/* The MPM closes a connection we gave it: httpd's Timeout passed without
 * a byte from the client (the pings went unanswered), or the child exits.
 * Last words, as mod_http2 says its GOAWAY here (h2_c1.c). */
static int ws_pre_close(conn_rec *c)
{
    chatbot_wsc_t *w = wsc_of(c);

    if (!w) {
        return DECLINED;
    }
    if (w->state == WS_ST_PARKED) {
        chatbot_ws_transit(w, WS_ST_IDLE, "closed by httpd");
    }
    if (w->state != WS_ST_DONE && !c->aborted && !c->data_in_output_filters) {
        if (chatbot_ws_layer(w) == APR_SUCCESS) {
            if (chatbot_child_stopping()) {
                chatbot_ws_close_with(w, CHAT_WS_CLOSE_GOING_AWAY, "server restarting",
                                      "server stopping");
            }
            else {
                chatbot_ws_close_with(
                    w, CHAT_WS_CLOSE_POLICY, "idle timeout",
                    "httpd's Timeout passed without a byte from the client");
            }
        }
    }
    chatbot_ws_finish(w);
    return OK;
}

/* ---- holding the request open
 * ------------------------------------------------------------- */

/* Keeps the upgrade request's EOR bucket: httpd logs a request and frees its
 * pool when that bucket is destroyed, which chatbot_ws_finish does. */
static apr_status_t hold_out_filter(ap_filter_t *f, apr_bucket_brigade *bb)
{
    chatbot_wsc_t *w = f->ctx;
    apr_bucket *b;

    if (!w->eor) {
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            if (AP_BUCKET_IS_EOR(b)) {
                APR_BUCKET_REMOVE(b);
                w->eor = b;
                break;
            }
        }
    }
    return ap_pass_brigade(f->next, bb);
}

/* After the handler, httpd peeks at the connection for a pipelined request
 * (ap_check_pipeline). A peek that pulled the client's first frame off the
 * socket would leave it in a filter while the MPM waits for the socket, so
 * until the MPM has the connection, a peek finds nothing - unless the
 * connection waits to write. Then it finds a byte of its own: the MPM flushes
 * what the network filter holds, and when that empties it, a connection with
 * nothing "pipelined" would fall into keep-alive (waiting to read, within
 * KeepAliveTimeout) with the rest of our reply unsent; with the byte, the MPM
 * comes back to our process_connection hook at once. */
static apr_status_t hold_in_filter(ap_filter_t *f, apr_bucket_brigade *bb,
                                   ap_input_mode_t mode, apr_read_type_e block,
                                   apr_off_t readbytes)
{
    chatbot_wsc_t *w = f->ctx;

    if (w->handing_over && mode == AP_MODE_SPECULATIVE) {
        if (w->park_sense != CONN_SENSE_WANT_WRITE) {
            return APR_EAGAIN;
        }
        APR_BRIGADE_INSERT_TAIL(bb,
                                apr_bucket_immortal_create("W", 1, f->c->bucket_alloc));
        return APR_SUCCESS;
    }
    return ap_get_brigade(f->next, bb, mode, block, readbytes);
}

void chatbot_ws_hold(chatbot_wsc_t *w)
{
    if (!w->hold_out) {
        w->hold_out = ap_add_output_filter_handle(hold_out_frec, w, NULL, w->c);
        w->hold_in = ap_add_input_filter_handle(hold_in_frec, w, NULL, w->c);
    }
    ap_set_module_config(w->c->conn_config, &chatbot_module, w);
}

/* ---- no spare memory while parked
 * ------------------------------------------------------- */

/* The event MPM gives each connection its own allocator, which keeps the
 * nodes its pools and buckets give back (up to MaxMemFree, 2 MB by default)
 * for their next use. A parked WebSocket may wait for hours, and what its
 * allocator keeps meanwhile is memory nobody else can use: the buffer that
 * read the handshake, the one that wrote the 101, the last turn's nodes,
 * whatever the MPM's recycled pool kept from an earlier connection. So once
 * a connection has been parked for a while (the watcher calls this, with
 * the connection borrowed as for a ping: no other thread runs it), up to
 * LEAN_TAKE kept nodes are taken out and freed (Debian's APR maps each node
 * on its own, so they go back to the kernel: 6 KB of each parked
 * connection's 32, docs/performance.md). LEAN_TAKE is what a connection
 * keeps after the handshake, a turn or a ping; APR cannot say how many it
 * keeps, and each node asked for beyond that would be a fresh mapping. What
 * is left is bounded by MaxMemFree, which applies again at once. Not done
 * at every park: a connection in a conversation reuses those nodes for its
 * next turn, and mapping them again costs more than keeping them. */
#define LEAN_TAKE 2

void chatbot_ws_lean(conn_rec *c)
{
    apr_allocator_t *al = apr_pool_allocator_get(c->pool);
    apr_memnode_t *kept[LEAN_TAKE];
    int i;

    if (!al || apr_allocator_mutex_get(al)) {
        return; /* shared with other threads: not the MPM's own per connection */
    }
    apr_allocator_max_free_set(al, 1);
    for (i = 0; i < LEAN_TAKE; i++) {
        kept[i] = apr_allocator_alloc(al, 1);
    }
    for (i = 0; i < LEAN_TAKE; i++) {
        if (kept[i]) {
            apr_allocator_free(al, kept[i]); /* max free 1 page: not kept */
        }
    }
    apr_allocator_max_free_set(al, ap_max_mem_free);
}

void chatbot_ws_mpm_register(apr_pool_t *p)
{
    hold_out_frec = ap_register_output_filter("CHATBOT_WS_HOLD", hold_out_filter, NULL,
                                              AP_FTYPE_CONNECTION);
    hold_in_frec = ap_register_input_filter("CHATBOT_WS_HOLD", hold_in_filter, NULL,
                                            AP_FTYPE_CONNECTION);
    /* before every other module (mod_http2, mod_ssl, the HTTP protocol):
     * a connection that is ours is never theirs again */
    ap_hook_process_connection(ws_process_connection, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_suspend_connection(ws_suspend, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_resume_connection(ws_resume, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_close_connection(ws_pre_close, NULL, NULL, APR_HOOK_MIDDLE);
}
