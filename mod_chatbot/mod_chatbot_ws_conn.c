/* mod_chatbot_ws_conn.c - a WebSocket connection's life: its states, the
 * process step, its end, and the blocking driver. Its I/O (the message
 * layer, reads and writes) is in mod_chatbot_ws_io.c.
 *
 * The step (chatbot_ws_step) does everything that can be done now without
 * waiting - goodbyes, timers, reading and handling the client's frames,
 * moving the answers forward, pushing output - and says what to wait for:
 * the client (WANT_READ), room to write (WANT_WRITE), the backends and the
 * client together (CONTINUE), or nothing (DONE). chatbot_ws_drive runs
 * steps on the calling thread, waiting in poll() in between, until the
 * connection is idle (when it may park: the event MPM then takes it, see
 * mod_chatbot_ws_mpm.c) or done. Where it cannot park (HTTP/2 streams,
 * other MPMs) that loop is the connection's whole life.
 */
#include <string.h>
#include <poll.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "mpm_common.h"
#include "util_filter.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"
#include "mod_chatbot_http.h"

#define MAX_SLEEP_MS 60000
#define CLOSE_LINGER_MS 2000
#define FOLLOW_POLL_MS 25

/* ---- states ------------------------------------------------------------------------ */

const char *chatbot_ws_state_name(chatbot_ws_state_t st)
{
    switch (st) {
    case WS_ST_HANDSHAKE:
        return "handshake";
    case WS_ST_IDLE:
        return "idle";
    case WS_ST_PARKED:
        return "parked";
    case WS_ST_ACTIVE:
        return "active";
    case WS_ST_CLOSING:
        return "closing";
    case WS_ST_DONE:
        return "done";
    }
    return "?";
}

/* The one place a connection changes state: the registry follows (under
 * its mutex: the watcher reads the state), and the change is logged at
 * trace level ("LogLevel chatbot:trace2"). */
void chatbot_ws_transit(chatbot_wsc_t *w, chatbot_ws_state_t to, const char *why)
{
    chatbot_ws_state_t from = w->state;

    if (from == to) {
        return;
    }
    chatbot_ws_reg_state(w, from, to);
    /* Writes block (with ChatbotSendTimeout) only where a thread is held
     * anyway: an answer streaming, or a connection that cannot park. */
    w->nb_out = w->can_park && to != WS_ST_ACTIVE && to != WS_ST_CLOSING;
    ap_log_rerror(APLOG_MARK, APLOG_TRACE2, 0, w->r, "chatbot: WebSocket %s -> %s (%s)",
                  chatbot_ws_state_name(from), chatbot_ws_state_name(to), why);
}

/* ---- leaving ------------------------------------------------------------------- */

/* The viewer left (close handshake done, the client's TCP FIN, HTTP/2
 * END_STREAM or reset, or writes failing) while answers are generated and
 * ChatbotContinueWithoutViewer is on: they finish into history and nothing
 * more is written. The client is not kept waiting for the end of the
 * answer (RFC 6455 7.1.1: the server closes first): over HTTP/1.1 the TCP
 * connection is shut for writing now; over HTTP/2 the stream is ended now
 * (an EOS: mod_http2 sends END_STREAM, RFC 8441 section 5) instead of when
 * the handler returns. */
static void detach_viewer(chatbot_wsc_t *w)
{
    apr_socket_t *csd = ap_get_conn_socket(w->c);

    w->detached = 1;
    w->peer_gone = 1;
    chat_buf_free(&w->out);
    apr_brigade_cleanup(w->bb_out);
    if (w->is_h2) {
        if (!w->c->aborted) {
            APR_BRIGADE_INSERT_TAIL(w->bb_out, apr_bucket_eos_create(w->c->bucket_alloc));
            APR_BRIGADE_INSERT_TAIL(w->bb_out,
                                    apr_bucket_flush_create(w->c->bucket_alloc));
            ap_pass_brigade(w->c->output_filters, w->bb_out);
            apr_brigade_cleanup(w->bb_out);
        }
        w->r->eos_sent = 1; /* the request's end sends no second one */
    }
    else if (csd) {
        apr_socket_shutdown(csd, APR_SHUTDOWN_WRITE);
        w->c->aborted = 1; /* nothing may be flushed at the end */
    }
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, w->r,
        APLOGNO(10950) "chatbot: viewer gone (%s); finishing %d answer(s) into history",
        w->close_why ? w->close_why : "closed", chatbot_ws_turns(w));
}

void chatbot_ws_close_with(chatbot_wsc_t *w, uint16_t code, const char *reason,
                           const char *why)
{
    if (!w->close_why) {
        w->close_why = why;
    }
    if (w->ws && !w->peer_gone && !w->write_failed &&
        chat_ws_state(w->ws) == CHAT_WS_OPEN) {
        chat_ws_close(w->ws, code, reason);
        w->close_sent_at = chatbot_now_ms();
    }
}

void chatbot_ws_finish(chatbot_wsc_t *w)
{
    request_rec *r = w->r;
    conn_rec *c = w->c;
    apr_bucket *eor;

    if (w->state == WS_ST_DONE) {
        return;
    }
    chatbot_child_stopping_settle();
    if (chatbot_ws_turns(w)) {
        chatbot_ws_stop_all(w, w->going_away ? "shutdown" : "client_gone");
    }
    chatbot_ws_engine_settle(w);
    if (w->ws && !w->peer_gone && !w->write_failed && !c->aborted &&
        chat_ws_state(w->ws) == CHAT_WS_OPEN) {
        chat_ws_close(w->ws, CHAT_WS_CLOSE_NORMAL, NULL);
    }
    if (!c->aborted) {
        /* the last frames: a client that does not read gets 2 s at most
         * (as httpd's lingering close would give it), not the send timeout */
        apr_socket_t *csd = w->is_h2 ? NULL : ap_get_conn_socket(c);
        if (csd && w->nb_out) {
            apr_socket_timeout_set(csd, apr_time_from_msec(CLOSE_LINGER_MS));
        }
        w->nb_out = 0;
        chatbot_ws_flush(w);
    }
    apr_snprintf(w->note_close, sizeof(w->note_close), "%u/%u",
                 w->ws ? chat_ws_sent_close_code(w->ws) : 0,
                 w->ws ? chat_ws_recv_close_code(w->ws) : 0);
    apr_table_setn(r->notes, "chatbot-close", w->note_close);
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, r,
        APLOGNO(10949) "chatbot: WebSocket closed for %s: %s (sent %u, received %u)",
        w->id.label, w->close_why ? w->close_why : "done",
        w->ws ? chat_ws_sent_close_code(w->ws) : 0,
        w->ws ? chat_ws_recv_close_code(w->ws) : 0);
    chatbot_ws_transit(w, WS_ST_DONE, w->close_why ? w->close_why : "done");
    r->status = HTTP_SWITCHING_PROTOCOLS;
    eor = w->eor;
    if (eor) {
        /* The request ends now: its log line is written and its pool,
         * which holds w, is freed. */
        if (w->hold_out) {
            ap_remove_output_filter(w->hold_out);
        }
        if (w->hold_in) {
            ap_remove_input_filter(w->hold_in);
        }
        ap_set_module_config(c->conn_config, &chatbot_module, NULL);
        w->eor = NULL;
        apr_bucket_destroy(eor);
    }
}

/* ---- the step ------------------------------------------------------------------ */

/* The session list, if it changed since the client was last told (one
 * atomic read when it did not). */
static void sessions_news(chatbot_wsc_t *w)
{
    if (!w->peer_gone && chat_ws_state(w->ws) == CHAT_WS_OPEN) {
        apr_uint64_t seq = chat_store_user_seq(chatbot_store(), &w->id.owner);
        if (seq != w->user_seq) {
            w->user_seq = seq;
            chatbot_ws_send_sessions(w, NULL, 0, NULL);
        }
    }
}

/* What to do when the client is gone: 1 if the connection is over. */
static int client_gone(chatbot_wsc_t *w)
{
    int stopping;

    if (!chatbot_ws_turns(w)) {
        return 1;
    }
    /* (a stopping child must not outlive its pools: never keep generating
     * then; whether it stops is checked right here, because a stop closes
     * sockets first) */
    stopping = w->going_away || chatbot_child_stopping();
    if (!w->lim.continue_without_viewer || stopping) {
        chatbot_ws_stop_all(w, stopping ? "shutdown" : "client_gone");
        return 1;
    }
    if (!w->detached) {
        detach_viewer(w);
    }
    return 0;
}

chatbot_ws_next_t chatbot_ws_step(chatbot_wsc_t *w)
{
    conn_rec *c = w->c;
    apr_uint64_t now;
    int busy, pending;

    if (w->state == WS_ST_DONE) {
        return CHATBOT_WS_DONE;
    }
    if (!w->ws && chatbot_ws_layer(w) != APR_SUCCESS) {
        w->close_why = "out of memory";
        return CHATBOT_WS_DONE;
    }
    /* 1. Goodbyes that come from outside. httpd stops or restarts
     * gracefully: 1001, then close (the MPM's lingering close takes the
     * client's reply, without a thread). */
    if (!w->going_away && (w->kick == WS_KICK_STOP || chatbot_child_stopping())) {
        w->going_away = 1;
        chatbot_ws_stop_all(w, "shutdown");
        chatbot_ws_close_with(w, CHAT_WS_CLOSE_GOING_AWAY, "server restarting",
                              "server stopping");
        chatbot_ws_flush(w);
        return CHATBOT_WS_DONE;
    }
    if (w->kick == WS_KICK_IDLE) {
        chatbot_ws_close_with(w, CHAT_WS_CLOSE_POLICY, "idle timeout",
                              "idle timeout (no pong)");
        chatbot_ws_flush(w);
        return CHATBOT_WS_DONE;
    }

    /* 2. The client is gone (closed, vanished or unwritable). Answers in
     * progress either finish into history, for the reloaded page to
     * resume (ChatbotContinueWithoutViewer on), or stop now. */
    if (c->aborted && !w->peer_gone) {
        w->peer_gone = 1;
    }
    if ((chat_ws_state(w->ws) == CHAT_WS_CLOSED || w->write_failed || w->peer_gone) &&
        client_gone(w)) {
        return CHATBOT_WS_DONE;
    }

    /* 3. Timers. */
    now = chatbot_now_ms();
    if (chat_ws_state(w->ws) == CHAT_WS_CLOSING) {
        if (!w->close_sent_at) {
            w->close_sent_at = now;
        }
        if (now - w->close_sent_at > CLOSE_LINGER_MS) {
            return CHATBOT_WS_DONE; /* the peer never answered our close */
        }
    }
    else if (!w->peer_gone) {
        /* keep-alive pings and dead-peer detection */
        if (w->lim.idle_timeout_ms > 0 &&
            (apr_int64_t)(now - w->last_rx) > w->lim.idle_timeout_ms) {
            chatbot_ws_close_with(w, CHAT_WS_CLOSE_POLICY, "idle timeout",
                                  "idle timeout (no pong)");
            chatbot_ws_flush(w);
            return CHATBOT_WS_DONE;
        }
        if (w->lim.ping_interval_ms > 0 &&
            (apr_int64_t)(now - w->last_ping) >= w->lim.ping_interval_ms) {
            w->last_ping = now;
            chat_ws_send_ping(w->ws, (const uint8_t *)"chatbot", 7);
        }
    }

    /* 4. The client's frames, unless a reply still waits for it to read.
     * Everything one step produces (all the tokens one read from the
     * backend brought, the response, the idle status) leaves in one write:
     * a FLUSH per frame cost a syscall and a TCP segment per token. */
    w->defer_flush = 1;
    pending = w->nb_out && (w->c->data_in_output_filters || !chatbot_ws_out_empty(w));
    if (pending) {
        pending = chatbot_ws_flush(w);
    }
    if (!w->peer_gone && !pending) {
        chatbot_ws_read(w);
    }

    /* 5. News: the session list changed (one atomic read), a turn that
     * waits for a worker, answers followed, answers generated. */
    sessions_news(w);
    if (w->held.len) {
        chatbot_ws_held_run(w);
    }
    if (chatbot_ws_following(w)) {
        chatbot_ws_follow_run(w);
    }
    if (w->eng) {
        chatbot_engine_run(w->eng);
    }
    chatbot_ws_engine_settle(w);
    /* a turn that ended in this step changed the list itself: said now, in
     * the same write as its response, not after the connection is parked
     * (the watcher would then wake it with a ping, and the pong would bring
     * it back to a worker, once per turn) */
    sessions_news(w);
    w->defer_flush = 0;
    pending = chatbot_ws_flush(w);

    /* 6. What next. */
    busy = chatbot_ws_turns(w) || chatbot_ws_following(w);
    if (busy) {
        chatbot_ws_transit(w, WS_ST_ACTIVE, "answer");
        return CHATBOT_WS_CONTINUE;
    }
    if (w->slot && !w->life_slot) {
        chatbot_ws_slot_release(w);
    }
    if (chat_ws_state(w->ws) == CHAT_WS_CLOSING) {
        chatbot_ws_transit(w, WS_ST_CLOSING, w->close_why ? w->close_why : "closing");
        return CHATBOT_WS_CONTINUE;
    }
    if (chat_ws_state(w->ws) == CHAT_WS_CLOSED || w->write_failed || w->peer_gone) {
        return CHATBOT_WS_DONE;
    }
    chatbot_ws_transit(w, WS_ST_IDLE, "no answer running");
    if (pending) {
        return CHATBOT_WS_WANT_WRITE;
    }
    if (w->input_paused || !APR_BRIGADE_EMPTY(w->bb_in)) {
        return CHATBOT_WS_CONTINUE; /* frames already here: no wait */
    }
    return CHATBOT_WS_WANT_READ;
}

/* ---- waiting (a thread holds the connection) ----------------------------------- */

static int min_ms(int a, apr_int64_t b)
{
    if (b < 0) {
        b = 0;
    }
    return b < a ? (int)b : a;
}

/* Sleeps until the client (or its socket's room, for WANT_WRITE) or a
 * backend is ready, a timer is due, or the watcher wakes us. */
static void wait_for(chatbot_wsc_t *w, chatbot_ws_next_t next)
{
    apr_uint64_t now = chatbot_now_ms();
    int timeout = MAX_SLEEP_MS, ew;
    int watch_client = w->fd >= 0 && !w->peer_gone;
    short ev = next == CHATBOT_WS_WANT_WRITE ? POLLOUT : POLLIN;

    if (next == CHATBOT_WS_CONTINUE && !w->peer_gone &&
        (w->input_paused || !APR_BRIGADE_EMPTY(w->bb_in)) &&
        !(w->nb_out && w->c->data_in_output_filters)) {
        return; /* frames to handle already */
    }
    if (w->ws && chat_ws_state(w->ws) == CHAT_WS_CLOSING) {
        timeout = CLOSE_LINGER_MS / 4;
    }
    else if (!w->peer_gone) {
        if (w->lim.idle_timeout_ms > 0) {
            timeout = min_ms(timeout, w->lim.idle_timeout_ms -
                                          (apr_int64_t)(now - w->last_rx) + 1);
        }
        if (w->lim.ping_interval_ms > 0) {
            timeout = min_ms(timeout,
                             w->lim.ping_interval_ms - (apr_int64_t)(now - w->last_ping));
        }
    }
    if (w->eng && (ew = chatbot_engine_wait_ms(w->eng)) >= 0 && ew < timeout) {
        timeout = ew;
    }
    if (chatbot_ws_following(w) && FOLLOW_POLL_MS < timeout) {
        timeout = FOLLOW_POLL_MS;
    }
    if (w->held.len && 250 < timeout) {
        timeout = 250; /* a worker may have come free */
    }
    if (timeout < 1) {
        timeout = 1;
    }
    if (w->eng) {
        chatbot_http_waitfd_t wfd;
        memset(&wfd, 0, sizeof(wfd));
        wfd.fd = w->fd;
        wfd.events = ev == POLLOUT ? CHATBOT_HTTP_POLLOUT : CHATBOT_HTTP_POLLIN;
        if (chatbot_engine_poll(w->eng, watch_client ? &wfd : NULL, watch_client ? 1 : 0,
                                timeout) != APR_SUCCESS) {
            apr_sleep(apr_time_from_msec(5)); /* never spin */
        }
    }
    else {
        struct pollfd pfd[2];
        int n = 0;
        if (watch_client) {
            pfd[n].fd = w->fd;
            pfd[n].events = ev;
            pfd[n++].revents = 0;
        }
        if (w->wakefd >= 0) {
            pfd[n].fd = w->wakefd;
            pfd[n].events = POLLIN;
            pfd[n++].revents = 0;
        }
        if (poll(pfd, n, timeout) > 0 && w->wakefd >= 0 && pfd[n - 1].revents) {
            uint64_t v;
            if (read(w->wakefd, &v, sizeof(v)) < 0) {
                /* nothing to do: the wake-up was consumed already */
            }
        }
    }
}

static apr_status_t wakefd_close(void *data)
{
    chatbot_wsc_t *w = data;

    if (w->wakefd >= 0) {
        close(w->wakefd);
        w->wakefd = -1;
    }
    return APR_SUCCESS;
}

/* Gets ready to wait without a thread: big buffers go back, and the
 * message layer too when nothing is half received. */
static void park_prepare(chatbot_wsc_t *w)
{
    chat_buf_free(&w->frame);
    chat_buf_free(&w->scratch);
    chatbot_ws_layer_release(w);
}

chatbot_ws_next_t chatbot_ws_drive(chatbot_wsc_t *w, int may_park)
{
    if (!may_park && w->wakefd < 0) {
        /* the blocking driver sleeps in poll(): the watcher wakes it */
        w->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->wakefd >= 0) {
            apr_pool_cleanup_register(w->r->pool, w, wakefd_close, apr_pool_cleanup_null);
        }
    }
    for (;;) {
        chatbot_ws_next_t next = chatbot_ws_step(w);

        if (next == CHATBOT_WS_DONE) {
            return next;
        }
        if (may_park && (next == CHATBOT_WS_WANT_READ || next == CHATBOT_WS_WANT_WRITE)) {
            park_prepare(w);
            return next;
        }
        wait_for(w, next);
    }
}
