/* mod_chatbot_ws.c - the WebSocket endpoint: RFC 6455 handshake checks,
 * taking the connection over from HTTP, and the connection loop that
 * carries the chat protocol (docs/protocol.md).
 *
 * Taking over follows httpd's own tunnel (ap_proxy_tunnel_create in
 * modules/proxy/proxy_util.c): mod_reqtimeout's filter and the SSL
 * coalescing filter are removed, the request's filter chains are pointed at
 * the connection's, keepalive is off, and all I/O goes through connection
 * filters (so mod_ssl and mod_http2 work unchanged), with a FLUSH after
 * every frame. Over HTTP/2 (RFC 8441, "H2WebSockets on") mod_http2 turns
 * the extended CONNECT into this same GET and our 101 into a 200; there is
 * no socket, so we poll the descriptor ap_get_pollfd_from_conn() gives and
 * skip the EOS mod_http2 inserts on the first read.
 *
 * The loop waits on the client and on the backend transfers together
 * (curl_multi_poll with the client fd as an extra descriptor), so tokens
 * are relayed as they arrive and a Stop or a vanished client aborts the
 * upstream request at once. Frames are parsed by the core (chat/ws.h).
 * Memory per connection is bounded: input and frame buffers are reused, a
 * per-message subpool is cleared after each client message.
 */
#include <string.h>
#include <curl/curl.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_main.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_ssl.h"
#include "ap_mpm.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_portable.h"

#include "mod_chatbot.h"
#include "chat/ws.h"
#include "chat/utf8.h"

#define READ_CHUNK 16384
#define MAX_FOLLOW 4
#define FOLLOW_POLL_MS 25
/* Idle connections do not poll: one watcher thread per child wakes them
 * (curl_multi_wakeup) when their user's sessions change or httpd stops.
 * WATCH_MS is how often it looks; MAX_SLEEP_MS bounds any sleep anyway. */
#define WATCH_MS 100
#define MAX_SLEEP_MS 60000
#define CLOSE_LINGER_MS 2000

/* An answer followed for `resume` (written by another connection, maybe
 * in another child), read back from the shared store as it grows. */
typedef struct {
    int active;
    char conv[CHAT_CONV_ID_LEN + 1];
    uint32_t index;    /* where the answer was last seen */
    apr_uint64_t ts;   /* its creation time: with the role, its identity */
    int wait_new;      /* the answer has not started yet */
    apr_size_t offset; /* bytes already sent */
    apr_uint64_t seq;  /* the conversation's change counter last seen */
} follow_t;

typedef struct wsc_s {
    request_rec *r;
    conn_rec *c;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    apr_bucket_brigade *bb_in;
    apr_bucket_brigade *bb_out;
    apr_pool_t *msgpool;         /* cleared after each client message */
    chat_ws_t *ws;
    chatbot_engine_t *eng;
    chat_buf_t frame;            /* JSON being built */
    chat_buf_t scratch;
    chat_cmsg_t cm;
    chatbot_bot_t *cur_bot;
    char cur_conv[CHAT_CONV_ID_LEN + 1];
    follow_t follow[MAX_FOLLOW];
    int fd;                      /* descriptor to poll for input, -1 if none */
    int is_h2;
    int peer_gone;               /* EOF / reset from the client */
    int detached;                /* the client was let go, answers go on */
    int write_failed;
    int going_away;              /* we sent 1001 because httpd is stopping */
    int defer_flush;             /* frames are queued, flushed once per wake-up */
    apr_uint64_t last_msg;       /* last client message or end of a turn */
    /* the child's registry of open WebSockets (see the watcher) */
    struct wsc_s *reg_prev, *reg_next;
    apr_uint64_t watched_seq;    /* user seq the watcher last woke us for */
    char note_msgs[24];          /* the access log's chatbot-messages note */
    apr_uint64_t last_rx, last_ping, close_sent_at;
    apr_uint64_t user_seq;
    apr_uint64_t msgs_in;
    const char *close_why;
} wsc_t;

static void follow_drop(wsc_t *w, const char *conv);

/* ---- handshake --------------------------------------------------------------- */

/* Does the comma-separated header value contain token (case-insensitive)? */
static int has_token(apr_pool_t *p, const char *value, const char *token)
{
    char *v, *tok, *last;

    if (!value) {
        return 0;
    }
    v = apr_pstrdup(p, value);
    for (tok = apr_strtok(v, ", \t", &last); tok; tok = apr_strtok(NULL, ", \t", &last)) {
        if (!strcasecmp(tok, token)) {
            return 1;
        }
    }
    return 0;
}

/* host[:port] with the scheme's default port removed, lower case. */
static const char *norm_hostport(apr_pool_t *p, const char *hp, int is_https)
{
    char *s = apr_pstrdup(p, hp);
    char *colon;

    ap_str_tolower(s);
    colon = strrchr(s, ':');
    if (colon && !strchr(colon, ']')) {
        if ((is_https && !strcmp(colon, ":443")) || (!is_https && !strcmp(colon, ":80"))) {
            *colon = '\0';
        }
    }
    return s;
}

/* Returns 1 if the Origin may open a WebSocket here, or (REST API) make a
 * state-changing request: one rule and one directive for both. */
int chatbot_origin_allowed(request_rec *r, const char *origin)
{
    chatbot_dir_conf *dc = ap_get_module_config(r->per_dir_config, &chatbot_module);
    const char *host = apr_table_get(r->headers_in, "Host");
    const char *ohp;
    int o_https, i;

    if (!origin) {
        return 1; /* not a browser: browsers always send Origin */
    }
    if (dc->origins_any) {
        return 1;
    }
    if (!strncasecmp(origin, "https://", 8)) {
        o_https = 1;
        ohp = origin + 8;
    }
    else if (!strncasecmp(origin, "http://", 7)) {
        o_https = 0;
        ohp = origin + 7;
    }
    else {
        return 0; /* "null", file:, extensions... */
    }
    if (dc->origins) {
        for (i = 0; i < dc->origins->nelts; i++) {
            const char *a = APR_ARRAY_IDX(dc->origins, i, const char *);
            if (!strcmp(a, "same")) {
                goto same;
            }
            if (!strcasecmp(a, origin)) {
                return 1;
            }
        }
        return 0;
    }
same:
    if (!host && r->hostname) {
        host = r->hostname;
    }
    if (!host) {
        return 0;
    }
    /* Same host: scheme may differ behind TLS offloading, host:port must not. */
    return !strcmp(norm_hostport(r->pool, ohp, o_https),
                   norm_hostport(r->pool, host, ap_ssl_conn_is_ssl(r->connection) ? 1
                                                                                  : o_https));
}

/* Per-IP connection count in this child only would be wrong; count in the
 * scoreboard-independent way: the store has no per-IP table, so the cap is
 * enforced per child process, documented as such. */
static apr_uint32_t ip_conns_get(conn_rec *c, int delta);

static int handshake(request_rec *r, const char **accept)
{
    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");
    const char *connection = apr_table_get(r->headers_in, "Connection");
    const char *version = apr_table_get(r->headers_in, "Sec-WebSocket-Version");
    const char *key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");
    const char *origin = apr_table_get(r->headers_in, "Origin");
    char acc[29];

    /* RFC 6455 4.1: the handshake is a GET. httpd gives HEAD the method
     * number of GET (r->header_only): a HEAD may be answered like the GET
     * when it is not an upgrade, but it never switches protocols. The
     * Allow header of a 405 is made by httpd from the allowed methods. */
    ap_allow_standard_methods(r, MERGE_ALLOW, M_GET, -1);
    if (r->method_number != M_GET ||
        (r->header_only && has_token(r->pool, upgrade, "websocket"))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10940)
                      "chatbot: WebSocket handshake with method %s refused", r->method);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!has_token(r->pool, upgrade, "websocket")) {
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10941)
                      "chatbot: request to the WebSocket endpoint without "
                      "'Upgrade: websocket'");
        return HTTP_UPGRADE_REQUIRED;
    }
    if (r->proto_num < HTTP_VERSION(1, 1) || !has_token(r->pool, connection, "upgrade")) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10942)
                      "chatbot: bad WebSocket handshake (%s, Connection: %s)", r->protocol,
                      connection ? connection : "-");
        return HTTP_BAD_REQUEST;
    }
    if (!version || strcmp(version, "13")) {
        apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version", "13");
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10943)
                      "chatbot: unsupported Sec-WebSocket-Version %s",
                      version ? version : "(none)");
        return version ? HTTP_UPGRADE_REQUIRED : HTTP_BAD_REQUEST;
    }
    if (!key || chat_ws_accept_key(key, acc) != CHAT_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10944)
                      "chatbot: missing or malformed Sec-WebSocket-Key");
        return HTTP_BAD_REQUEST;
    }
    if (!chatbot_origin_allowed(r, origin)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, APLOGNO(10945)
                      "chatbot: WebSocket from origin %s refused (host %s); see "
                      "ChatbotAllowedOrigins", origin,
                      apr_table_get(r->headers_in, "Host"));
        return HTTP_FORBIDDEN;
    }
    *accept = apr_pstrdup(r->pool, acc);
    return OK;
}

/* ---- output -------------------------------------------------------------------- */

static int ws_send_cb(void *baton, const uint8_t *data, size_t len)
{
    wsc_t *w = baton;

    if (w->write_failed) {
        return -1;
    }
    if (apr_brigade_write(w->bb_out, NULL, NULL, (const char *)data, len) != APR_SUCCESS) {
        w->write_failed = 1;
        return -1;
    }
    return 0;
}

/* Pushes what the ws layer queued to the client, with a FLUSH. */
static void ws_flush(wsc_t *w)
{
    apr_status_t rv;

    if (APR_BRIGADE_EMPTY(w->bb_out) || w->write_failed) {
        apr_brigade_cleanup(w->bb_out);
        return;
    }
    APR_BRIGADE_INSERT_TAIL(w->bb_out, apr_bucket_flush_create(w->c->bucket_alloc));
    rv = ap_pass_brigade(w->c->output_filters, w->bb_out);
    apr_brigade_cleanup(w->bb_out);
    if (rv != APR_SUCCESS) {
        w->write_failed = 1;
        w->close_why = "write failed (slow or vanished client)";
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, w->r, APLOGNO(10946)
                      "chatbot: write to client failed");
    }
}

static void send_json(wsc_t *w)
{
    if (w->peer_gone || w->write_failed || chat_ws_state(w->ws) != CHAT_WS_OPEN) {
        return;
    }
    if (chat_ws_send_text(w->ws, w->frame.data, w->frame.len) == CHAT_OK &&
        !w->defer_flush) {
        ws_flush(w);
    }
}

static void send_error(wsc_t *w, const char *code, const char *msg, const char *conv,
                       const char *id, apr_int64_t retry_ms)
{
    chat_frame_error(&w->frame, code, msg, conv, id, retry_ms);
    send_json(w);
    chat_metrics_error(chatbot_store(), code);
}

/* Starts a frame {"type":type, ... : the caller adds members and closes. */
static void frame_begin(wsc_t *w, chat_jw_t *jw, const char *type)
{
    chat_buf_reset(&w->frame, 64 * 1024);
    chat_jw_init(jw, &w->frame);
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "type", type);
}

static void frame_end(wsc_t *w, chat_jw_t *jw)
{
    chat_jw_obj_end(jw);
    if (chat_jw_status(jw) == CHAT_OK) {
        send_json(w);
    }
}

/* ---- engine callbacks ------------------------------------------------------------ */

/* The user message is stored: acknowledge it before anything else. */
static void on_accepted(void *baton, chatbot_turn_t *t)
{
    wsc_t *w = baton;
    chat_jw_t jw;

    frame_begin(w, &jw, "ack");
    if (t->msg_id) {
        chat_jw_kstr(&jw, "id", t->msg_id);
    }
    chat_jw_kstr(&jw, "conversation_id", t->conv_id);
    chat_jw_kstr(&jw, "bot_id", t->bot->name);
    chat_jw_kint(&jw, "index", t->user_index);
    frame_end(w, &jw);
}

static void on_status(void *baton, chatbot_turn_t *t, const char *state, int position)
{
    wsc_t *w = baton;
    chat_jw_t jw;

    frame_begin(w, &jw, "status");
    chat_jw_kstr(&jw, "conversation_id", t->conv_id);
    chat_jw_kstr(&jw, "state", state);
    if (position > 0) {
        chat_jw_kint(&jw, "position", position);
    }
    if (t->msg_id) {
        chat_jw_kstr(&jw, "id", t->msg_id);
    }
    frame_end(w, &jw);
}

static void on_delta(void *baton, chatbot_turn_t *t, int thinking, const char *text,
                     size_t len)
{
    wsc_t *w = baton;

    if (chat_frame_delta(&w->frame, thinking, t->conv_id, t->msg_id, text, len) == CHAT_OK) {
        send_json(w);
    }
}

static void write_stats(chat_jw_t *jw, const chatbot_turn_t *t)
{
    const chat_stats_t *s = &t->stats;

    chat_jw_key(jw, "stats");
    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "model", s->model[0] ? s->model : t->bot->model);
    chat_jw_kstr(jw, "backend", t->backend ? t->backend->name : NULL);
    chat_jw_kstr(jw, "done_reason", s->done_reason[0] ? s->done_reason : NULL);
    chat_jw_kint(jw, "tokens", s->completion_tokens >= 0 ? s->completion_tokens : t->tokens);
    if (s->prompt_tokens >= 0) {
        chat_jw_kint(jw, "prompt_tokens", s->prompt_tokens);
    }
    chat_jw_kdouble(jw, "ttft_ms", t->ttft_ms);
    chat_jw_kdouble(jw, "duration_ms", t->duration_ms);
    if (t->queue_ms > 0) {
        chat_jw_kdouble(jw, "queue_ms", t->queue_ms);
    }
    if (s->tokens_per_sec > 0) {
        chat_jw_kdouble(jw, "tokens_per_sec", s->tokens_per_sec);
    }
    if (s->eval_ms >= 0) {
        chat_jw_kdouble(jw, "eval_ms", s->eval_ms);
    }
    if (s->load_ms >= 0) {
        chat_jw_kdouble(jw, "load_ms", s->load_ms);
    }
    chat_jw_obj_end(jw);
}

static void on_done(void *baton, chatbot_turn_t *t)
{
    wsc_t *w = baton;
    chat_jw_t jw;

    if (t->outcome == CHATBOT_OUT_COMPLETE || t->outcome == CHATBOT_OUT_STOPPED) {
        frame_begin(w, &jw, "response");
        chat_jw_kstrn(&jw, "content", t->answer.data ? t->answer.data : "", t->answer.len);
        chat_jw_kstr(&jw, "conversation_id", t->conv_id);
        if (t->msg_id) {
            chat_jw_kstr(&jw, "id", t->msg_id);
        }
        if (t->has_answer) {
            chat_jw_kint(&jw, "index", t->answer_index);
        }
        chat_jw_kbool(&jw, "interrupted", t->outcome != CHATBOT_OUT_COMPLETE);
        write_stats(&jw, t);
        frame_end(w, &jw);
    }
    else {
        chat_buf_reset(&w->frame, 64 * 1024);
        chat_jw_init(&jw, &w->frame);
        chat_jw_obj_begin(&jw);
        chat_jw_kstr(&jw, "type", "error");
        chat_jw_kstr(&jw, "code", t->err_code ? t->err_code : CHAT_ERR_INTERNAL);
        chat_jw_kstr(&jw, "message", t->err_msg);
        chat_jw_kstr(&jw, "conversation_id", t->conv_id);
        if (t->msg_id) {
            chat_jw_kstr(&jw, "id", t->msg_id);
        }
        if (t->has_answer) {
            chat_jw_kbool(&jw, "partial", 1);
            chat_jw_kint(&jw, "index", t->answer_index);
        }
        chat_jw_obj_end(&jw);
        send_json(w);
    }
    frame_begin(w, &jw, "status");
    chat_jw_kstr(&jw, "conversation_id", t->conv_id);
    chat_jw_kstr(&jw, "state", "idle");
    frame_end(w, &jw);
    w->msgs_in++;
    w->last_msg = chatbot_now_ms();
    /* own buffer: nothing allocated from r->pool per turn */
    apr_snprintf(w->note_msgs, sizeof(w->note_msgs), "%" APR_UINT64_T_FMT, w->msgs_in);
    apr_table_setn(w->r->notes, "chatbot-messages", w->note_msgs);
}

/* ---- client messages ------------------------------------------------------------- */

static void send_session(wsc_t *w, const chat_conv_info_t *ci)
{
    chat_jw_t jw;

    frame_begin(w, &jw, "session");
    chat_jw_key(&jw, "session");
    chatbot_view_session(&jw, w->r->server, ci);
    frame_end(w, &jw);
}

/* The session list: a reply (id: the request's, or NULL) or a push (no
 * id, never archived), told apart by the id. */
static void send_sessions(wsc_t *w, const char *bot, int archived, const char *id)
{
    chat_jw_t jw;

    frame_begin(w, &jw, "sessions");
    if (id) {
        chat_jw_kstr(&jw, "id", id);
    }
    chat_jw_kbool(&jw, "archived", archived);
    chat_jw_key(&jw, "sessions");
    chatbot_view_sessions(&jw, w->r, &w->id, bot, archived);
    frame_end(w, &jw);
}

static void send_history(wsc_t *w, const char *conv, apr_int64_t limit, apr_int64_t offset)
{
    chat_jw_t jw;
    const char *err;

    frame_begin(w, &jw, "history");
    err = chatbot_view_history(&jw, &w->id, conv, limit, offset, &w->scratch);
    if (err) {
        send_error(w, err, "no such conversation", conv, NULL, -1);
        return;
    }
    frame_end(w, &jw);
}

static void send_ok(wsc_t *w, const char *op, const char *conv)
{
    chat_jw_t jw;

    frame_begin(w, &jw, "ok");
    chat_jw_kstr(&jw, "op", op);
    chat_jw_kstr(&jw, "conversation_id", conv);
    frame_end(w, &jw);
}

static void send_hello(wsc_t *w)
{
    chat_jw_t jw;
    char rate[64];

    frame_begin(w, &jw, "hello");
    chat_jw_kint(&jw, "protocol", 1);
    chat_jw_kstr(&jw, "server", CHATBOT_SERVER_ID);
    chat_jw_kstr(&jw, "user", w->id.user);
    chat_jw_key(&jw, "bots");
    chatbot_view_bots(&jw, w->sc);
    chat_jw_kstr(&jw, "conversation_id", w->cur_conv[0] ? w->cur_conv : NULL);
    chat_jw_kstr(&jw, "bot_id", w->cur_bot ? w->cur_bot->name : NULL);
    chat_jw_kbool(&jw, "demo", w->sc->demo_notice != NULL);
    chat_jw_kstr(&jw, "notice", w->sc->demo_notice);
    chat_jw_key(&jw, "limits");
    chat_jw_obj_begin(&jw);
    chat_jw_kint(&jw, "max_message_bytes", (int64_t)w->lim.max_message_bytes);
    if (w->lim.rate.count) {
        apr_snprintf(rate, sizeof(rate), "%u/%s", w->lim.rate.count,
                     w->lim.rate.period_ms == 1000    ? "s"
                     : w->lim.rate.period_ms == 60000 ? "min"
                     : w->lim.rate.period_ms == 3600000
                         ? "hour"
                         : apr_psprintf(w->r->pool, "%" APR_INT64_T_FMT "ms",
                                        w->lim.rate.period_ms));
        chat_jw_kstr(&jw, "rate", rate);
        chat_jw_kint(&jw, "burst", w->lim.rate.burst);
    }
    else {
        chat_jw_kstr(&jw, "rate", NULL);
    }
    chat_jw_obj_end(&jw);
    frame_end(w, &jw);
}

/* Picks bot + conversation for a message: explicit ids, else the
 * connection's current ones, else the bot's latest session (created if
 * none). A current conversation deleted meanwhile (another tab) is
 * forgotten, not an error. */
static const char *resolve(wsc_t *w, const char *bot_id, const char *conv_id,
                           chatbot_bot_t **bot, chat_conv_info_t *ci)
{
    const char *err;
    int implicit = 0;

    *bot = NULL;
    if (bot_id) {
        *bot = chatbot_bot_get(w->r->server, bot_id);
        if (!*bot) {
            return CHAT_ERR_NOT_FOUND;
        }
    }
    if (!conv_id && (!*bot || *bot == w->cur_bot) && w->cur_conv[0]) {
        conv_id = w->cur_conv;
        implicit = 1;
    }
    if (!*bot) {
        *bot = w->cur_bot ? w->cur_bot : w->sc->default_bot_p;
    }
    err = chatbot_conv_resolve(w->r, &w->id, *bot, conv_id, 1, ci);
    if (err && implicit) {
        w->cur_conv[0] = '\0';
        conv_id = NULL;
        err = chatbot_conv_resolve(w->r, &w->id, *bot, NULL, 1, ci);
    }
    if (err) {
        return err;
    }
    if (conv_id) {
        /* the conversation decides the bot */
        chatbot_bot_t *cb = chatbot_bot_get(w->r->server, ci->bot);
        if (!cb) {
            return CHAT_ERR_NOT_FOUND;
        }
        *bot = cb;
    }
    w->cur_bot = *bot;
    apr_cpystrn(w->cur_conv, ci->id, sizeof(w->cur_conv));
    return NULL;
}

static void start_turn(wsc_t *w, chatbot_turn_mode_t mode)
{
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    chatbot_turn_req_t req;
    const char *err;
    apr_int64_t retry;
    char msg[512];

    err = chatbot_rate_check(&w->id, &w->lim, &retry);
    if (err) {
        apr_snprintf(msg, sizeof(msg), "rate limit exceeded (%u messages per %s); retry "
                     "in %.1f s", w->lim.rate.count,
                     w->lim.rate.period_ms == 60000 ? "minute"
                     : w->lim.rate.period_ms == 1000 ? "second"
                                                     : "period",
                     retry / 1000.0);
        send_error(w, err, msg, w->cm.conversation_id, w->cm.id, retry);
        return;
    }
    err = resolve(w, w->cm.bot_id, w->cm.conversation_id, &bot, &ci);
    if (err) {
        send_error(w, err, w->cm.bot_id && !chatbot_bot_get(w->r->server, w->cm.bot_id)
                               ? "unknown bot"
                               : "no such conversation",
                   w->cm.conversation_id, w->cm.id, -1);
        return;
    }
    if (mode != CHATBOT_TURN_REGENERATE && w->cm.content_len == 0) {
        send_error(w, CHAT_ERR_BAD_REQUEST, "the message is empty", ci.id, w->cm.id, -1);
        return;
    }
    memset(&req, 0, sizeof(req));
    req.bot = bot;
    req.conv_id = ci.id;
    req.msg_id = w->cm.id;
    req.content = w->cm.content;
    req.len = w->cm.content_len;
    req.mode = mode;
    req.edit_index = (apr_uint32_t)(w->cm.index < 0 ? 0 : w->cm.index);
    err = chatbot_turn_start(w->eng, &req, msg, sizeof(msg));
    if (err) {
        send_error(w, err, msg, ci.id, w->cm.id, -1);
        return;
    }
    /* this connection now streams the answer itself */
    follow_drop(w, ci.id);
}

/* ---- resume: following an answer written by another connection --------------- */

/* An answer is identified by its role (assistant) and creation time; its
 * index may move while it streams (a conversation at its message limit, or
 * short of arena, drops its oldest messages), so it is looked up again
 * among the last messages when the remembered index no longer holds it. */
typedef struct {
    apr_uint64_t ts;
    int found;
    uint32_t index;
} find_answer_t;

static void find_answer_cb(void *baton, const chat_msg_info_t *info, const char *text,
                           size_t len)
{
    find_answer_t *fa = baton;

    if (info->role == CHAT_ROLE_ASSISTANT && info->ts_ms == fa->ts) {
        fa->found = 1;
        fa->index = info->index;
    }
}

/* Under the lock: bytes [f->offset, len) of the followed answer into
 * w->scratch. CHAT_OK or CHAT_ENOTFOUND (the answer is gone). */
static chat_status_t follow_read(wsc_t *w, follow_t *f, const chat_conv_info_t *ci,
                                 chat_msg_info_t *mi)
{
    chat_store_t *st = chatbot_store();
    find_answer_t fa;
    uint32_t start;
    chat_status_t rc;

    rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, f->offset, &w->scratch, mi);
    if (rc == CHAT_OK && mi->role == CHAT_ROLE_ASSISTANT && mi->ts_ms == f->ts) {
        return CHAT_OK;
    }
    fa.ts = f->ts;
    fa.found = 0;
    fa.index = 0;
    start = ci->nmsgs > 8 ? ci->nmsgs - 8 : 0;
    chat_store_msg_read(st, &w->id.owner, f->conv, start, 0, &w->scratch, find_answer_cb,
                        &fa);
    if (!fa.found) {
        return CHAT_ENOTFOUND;
    }
    f->index = fa.index;
    rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, f->offset, &w->scratch, mi);
    return rc == CHAT_OK ? CHAT_OK : CHAT_ENOTFOUND;
}

static void follow_drop(wsc_t *w, const char *conv)
{
    int i;

    for (i = 0; i < MAX_FOLLOW; i++) {
        if (w->follow[i].active && !strcmp(w->follow[i].conv, conv)) {
            w->follow[i].active = 0;
        }
    }
}

static void handle_resume(wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    chat_msg_info_t mi;
    follow_t *f = NULL;
    apr_size_t offset = w->cm.offset > 0 ? (apr_size_t)w->cm.offset : 0;
    chat_status_t rc;
    int i, found = 0;

    if (chatbot_lock() != APR_SUCCESS) {
        send_error(w, CHAT_ERR_INTERNAL, "the chat store is not available",
                   w->cm.conversation_id, w->cm.id, -1);
        return;
    }
    rc = chat_store_conv_get(st, &w->id.owner, w->cm.conversation_id, &ci);
    if (rc == CHAT_OK && ci.nmsgs > 0) {
        found = chat_store_msg_get(st, &w->id.owner, ci.id, ci.nmsgs - 1, 0, &w->scratch,
                                   &mi) == CHAT_OK;
    }
    chatbot_unlock();
    chat_buf_reset(&w->scratch, 64 * 1024);
    if (rc != CHAT_OK) {
        send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation", w->cm.conversation_id,
                   w->cm.id, -1);
        return;
    }
    apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
    w->cur_bot = chatbot_bot_get(w->r->server, ci.bot);
    follow_drop(w, ci.id);
    if (chatbot_engine_has(w->eng, ci.id)) {
        /* our own turn: it is already streaming to this connection */
        return;
    }
    for (i = 0; i < MAX_FOLLOW && !f; i++) {
        if (!w->follow[i].active) {
            f = &w->follow[i];
        }
    }
    if (!f) {
        send_error(w, CHAT_ERR_BUSY, "too many answers followed at once", ci.id, w->cm.id,
                   -1);
        return;
    }
    memset(f, 0, sizeof(*f));
    apr_cpystrn(f->conv, ci.id, sizeof(f->conv));
    if (found && mi.role == CHAT_ROLE_ASSISTANT && !(mi.flags & CHAT_MSG_ERROR)) {
        /* the answer being written, or the last one */
        f->index = mi.index;
        f->ts = mi.ts_ms;
        f->offset = offset > mi.len ? mi.len : offset;
    }
    else if (ci.state != CHAT_CONV_IDLE) {
        /* queued, or no token yet: the answer will be the next message */
        f->wait_new = 1;
    }
    else {
        send_error(w, CHAT_ERR_NOT_FOUND, "there is no answer to resume", ci.id, w->cm.id,
                   -1);
        return;
    }
    f->seq = 0; /* read at once */
    f->active = 1;
}

/* Sends what is new in the followed answers; a finished one ends with a
 * response (or an error when the turn produced nothing). */
static void follow_run(wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    int i;

    for (i = 0; i < MAX_FOLLOW; i++) {
        follow_t *f = &w->follow[i];
        chat_msg_info_t mi;
        chat_conv_info_t ci;
        chat_status_t rc;
        apr_uint64_t seq;
        const char *end_code = NULL, *end_msg = NULL;
        size_t n;

        if (!f->active) {
            continue;
        }
        seq = chat_store_conv_seq(st, f->conv);
        if (seq == f->seq && f->seq) {
            continue;
        }
        f->seq = seq;
        if (chatbot_lock() != APR_SUCCESS) {
            continue;
        }
        rc = chat_store_conv_get(st, &w->id.owner, f->conv, &ci);
        if (rc == CHAT_OK && f->wait_new) {
            rc = CHAT_ENOTFOUND;
            if (ci.nmsgs > 0) {
                rc = chat_store_msg_get(st, &w->id.owner, f->conv, ci.nmsgs - 1, 0,
                                        &w->scratch, &mi);
            }
            if (rc == CHAT_OK && mi.role == CHAT_ROLE_ASSISTANT) {
                f->wait_new = 0;
                f->index = mi.index;
                f->ts = mi.ts_ms;
                if (mi.flags & CHAT_MSG_ERROR) {
                    /* the turn failed: its stored "<code>: <message>" */
                    apr_size_t k = chatbot_error_code_len(w->scratch.data, w->scratch.len);
                    end_code = k ? apr_pstrndup(w->msgpool, w->scratch.data, k)
                                 : CHAT_ERR_BACKEND_ERROR;
                    end_msg = apr_pstrndup(w->msgpool, w->scratch.data + (k ? k + 2 : 0),
                                           w->scratch.len - (k ? k + 2 : 0));
                }
            }
            else if (ci.state == CHAT_CONV_IDLE) {
                end_code = CHAT_ERR_INTERRUPTED;
                end_msg = "the answer ended without content";
            }
            else {
                chatbot_unlock();
                chat_buf_reset(&w->scratch, 64 * 1024);
                continue; /* still waiting for the first token */
            }
        }
        else if (rc == CHAT_OK) {
            rc = follow_read(w, f, &ci, &mi);
            if (rc != CHAT_OK) {
                end_code = CHAT_ERR_NOT_FOUND;
                end_msg = "the answer is no longer in history";
            }
        }
        else {
            end_code = CHAT_ERR_NOT_FOUND;
            end_msg = "the conversation was deleted";
        }
        chatbot_unlock();
        if (end_code) {
            f->active = 0;
            send_error(w, end_code, end_msg, f->conv, NULL, -1);
            chat_buf_reset(&w->scratch, 64 * 1024);
            continue;
        }
        n = chat_utf8_complete_prefix((const uint8_t *)w->scratch.data, w->scratch.len);
        if (n) {
            if (chat_frame_delta(&w->frame, 0, f->conv, NULL, w->scratch.data, n) == CHAT_OK) {
                send_json(w);
            }
            f->offset += n;
        }
        if (!(mi.flags & CHAT_MSG_STREAMING)) {
            chat_jw_t jw;
            f->active = 0;
            rc = CHAT_ENOTFOUND;
            if (chatbot_lock() == APR_SUCCESS) {
                rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, 0, &w->scratch,
                                        &mi);
                chatbot_unlock();
            }
            if (rc == CHAT_OK) {
                frame_begin(w, &jw, "response");
                chat_jw_kstrn(&jw, "content", w->scratch.data, w->scratch.len);
                chat_jw_kstr(&jw, "conversation_id", f->conv);
                chat_jw_kint(&jw, "index", mi.index);
                chat_jw_kbool(&jw, "interrupted", (mi.flags & CHAT_MSG_COMPLETE) == 0);
                chat_jw_kbool(&jw, "resumed", 1);
                frame_end(w, &jw);
            }
            else {
                send_error(w, CHAT_ERR_NOT_FOUND, "the answer is no longer in history",
                           f->conv, NULL, -1);
            }
        }
        chat_buf_reset(&w->scratch, 64 * 1024);
    }
}

static int following(wsc_t *w)
{
    int i;

    for (i = 0; i < MAX_FOLLOW; i++) {
        if (w->follow[i].active) {
            return 1;
        }
    }
    return 0;
}

/* Conversation-level operations (rename, archive, delete, stop_session). */
static void conv_op(wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    const char *conv = w->cm.conversation_id;
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc = CHAT_EINTERNAL;
    const char *op = chat_ctype_name(w->cm.type);

    if (w->cm.type == CHAT_C_STOP_SESSION || w->cm.type == CHAT_C_DELETE) {
        chatbot_engine_stop(w->eng, conv, "stopped");
    }
    if (chatbot_lock() != APR_SUCCESS) {
        return;
    }
    switch (w->cm.type) {
    case CHAT_C_RENAME:
        rc = chat_store_conv_rename(st, &w->id.owner, conv, w->cm.title, now);
        break;
    case CHAT_C_ARCHIVE:
        rc = w->cm.archived == 0
                 ? chat_store_conv_flags(st, &w->id.owner, conv, 0, CHAT_CONV_ARCHIVED, now)
                 : chat_store_conv_flags(st, &w->id.owner, conv, CHAT_CONV_ARCHIVED, 0, now);
        break;
    case CHAT_C_DELETE:
        chat_store_gen_request_stop(st, &w->id.owner, conv);
        rc = chat_store_conv_delete(st, &w->id.owner, conv);
        break;
    case CHAT_C_STOP_SESSION:
        chat_store_gen_request_stop(st, &w->id.owner, conv);
        rc = chat_store_conv_flags(st, &w->id.owner, conv, CHAT_CONV_STOPPED, 0, now);
        break;
    default:
        break;
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &w->id.owner);
    }
    chatbot_unlock();
    if (rc == CHAT_EBUSY) {
        /* only delete gets here: the answer (generated by another
         * connection) has been asked to stop */
        send_error(w, CHAT_ERR_BUSY, "the conversation was generating an answer; it is "
                   "being stopped, delete again in a moment", conv, w->cm.id, -1);
        return;
    }
    if (rc != CHAT_OK) {
        send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation", conv, w->cm.id, -1);
        return;
    }
    if (w->cm.type == CHAT_C_DELETE && !strcmp(w->cur_conv, conv)) {
        w->cur_conv[0] = '\0';
    }
    send_ok(w, op, conv);
}

int chatbot_exec_ws(request_rec *r, const chatbot_ident_t *id, chatbot_bot_t *bot,
                    const char *conv_id, const char *command, const char *const *args,
                    apr_size_t nargs, chat_buf_t *frame);

static void handle_message(wsc_t *w, const uint8_t *data, size_t len)
{
    char err[256];
    chat_status_t rc;
    chat_jw_t jw;

    rc = chat_cmsg_parse(&w->cm, (const char *)data, len, err, sizeof(err));
    if (rc != CHAT_OK) {
        send_error(w, rc == CHAT_EPARSE      ? CHAT_ERR_BAD_JSON
                      : rc == CHAT_ENOTFOUND ? CHAT_ERR_UNKNOWN_TYPE
                                             : CHAT_ERR_BAD_REQUEST,
                   err, rc == CHAT_EPARSE ? NULL : w->cm.conversation_id,
                   rc == CHAT_EPARSE ? NULL : w->cm.id, -1);
        return;
    }
    chat_metrics_gauge_add(chatbot_store(), CHAT_G_MESSAGES_IN, 1);
    switch (w->cm.type) {
    case CHAT_C_MESSAGE:
        if (w->cm.content_len > 1 && w->cm.content[0] == '!') {
            chatbot_bot_t *bot;
            chat_conv_info_t ci;
            apr_int64_t retry;
            const char *e = chatbot_rate_check(&w->id, &w->lim, &retry);
            if (e) {
                send_error(w, e, "rate limit exceeded", w->cm.conversation_id, w->cm.id,
                           retry);
                break;
            }
            if ((e = resolve(w, w->cm.bot_id, w->cm.conversation_id, &bot, &ci))) {
                send_error(w, e, "no such conversation", w->cm.conversation_id, w->cm.id,
                           -1);
                break;
            }
            chatbot_exec_ws(w->r, &w->id, bot, ci.id, w->cm.content, NULL,
                            w->cm.content_len, &w->frame);
            send_json(w);
            break;
        }
        start_turn(w, CHATBOT_TURN_NEW);
        break;
    case CHAT_C_REGENERATE:
        start_turn(w, CHATBOT_TURN_REGENERATE);
        break;
    case CHAT_C_EDIT:
        start_turn(w, CHATBOT_TURN_EDIT);
        break;
    case CHAT_C_STOP: {
        const char *conv = w->cm.conversation_id ? w->cm.conversation_id : w->cur_conv;
        chat_status_t src = CHAT_EINTERNAL;
        if (!*conv) {
            break;
        }
        if (chatbot_engine_has(w->eng, conv)) {
            chatbot_engine_stop(w->eng, conv, "stopped");
            break;
        }
        if (chatbot_lock() == APR_SUCCESS) {
            /* generated by another connection (another tab or child), or
             * idle: nothing to do */
            src = chat_store_gen_request_stop(chatbot_store(), &w->id.owner, conv);
            chatbot_unlock();
        }
        if (src == CHAT_ENOTFOUND) {
            send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation", conv, w->cm.id, -1);
        }
        break;
    }
    case CHAT_C_HISTORY: {
        chatbot_bot_t *bot;
        chat_conv_info_t ci;
        const char *e = resolve(w, w->cm.bot_id, w->cm.conversation_id, &bot, &ci);
        if (e) {
            send_error(w, e, "no such conversation", w->cm.conversation_id, NULL, -1);
            break;
        }
        send_history(w, ci.id, w->cm.limit, w->cm.offset);
        break;
    }
    case CHAT_C_RESUME:
        handle_resume(w);
        break;
    case CHAT_C_LAUNCH: {
        chatbot_bot_t *bot = chatbot_bot_get(w->r->server, w->cm.bot_id);
        chat_conv_info_t ci;
        chat_status_t crc = CHAT_EINTERNAL;
        if (!bot) {
            send_error(w, CHAT_ERR_NOT_FOUND, "unknown bot", NULL, NULL, -1);
            break;
        }
        if (chatbot_lock() == APR_SUCCESS) {
            crc = chat_store_conv_create(chatbot_store(), &w->id.owner, bot->name,
                                         w->cm.title, chatbot_random64(), chatbot_now_ms(),
                                         &ci);
            if (crc == CHAT_OK) {
                chat_store_user_bump(chatbot_store(), &w->id.owner);
            }
            chatbot_unlock();
        }
        if (crc != CHAT_OK) {
            send_error(w, CHAT_ERR_STORAGE_FULL, "cannot create a new session now", NULL,
                       NULL, -1);
            break;
        }
        w->cur_bot = bot;
        apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
        send_session(w, &ci);
        break;
    }
    case CHAT_C_SELECT: {
        chat_conv_info_t ci;
        const char *e = chatbot_conv_resolve(w->r, &w->id, NULL, w->cm.conversation_id, 0,
                                             &ci);
        if (e) {
            send_error(w, e, "no such conversation", w->cm.conversation_id, NULL, -1);
            break;
        }
        w->cur_bot = chatbot_bot_get(w->r->server, ci.bot);
        apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
        send_session(w, &ci);
        send_history(w, ci.id, w->cm.limit, w->cm.offset);
        break;
    }
    case CHAT_C_STOP_SESSION:
    case CHAT_C_RENAME:
    case CHAT_C_ARCHIVE:
    case CHAT_C_DELETE:
        conv_op(w);
        break;
    case CHAT_C_SESSIONS:
        send_sessions(w, w->cm.bot_id, w->cm.archived < 0 ? 0 : w->cm.archived, w->cm.id);
        break;
    case CHAT_C_BOTS:
        frame_begin(w, &jw, "bots");
        chat_jw_key(&jw, "bots");
        chatbot_view_bots(&jw, w->sc);
        frame_end(w, &jw);
        break;
    case CHAT_C_EXPORT: {
        int json = w->cm.format && !strcmp(w->cm.format, "json");
        chat_buf_t out;
        const char *fname = NULL;
        const char *e;
        chat_buf_init(&out);
        e = chatbot_view_export(w->r, &w->id, w->cm.conversation_id, json, &out, &fname);
        if (e) {
            chat_buf_free(&out);
            send_error(w, e, "no such conversation", w->cm.conversation_id, NULL, -1);
            break;
        }
        frame_begin(w, &jw, "export");
        chat_jw_kstr(&jw, "conversation_id", w->cm.conversation_id);
        chat_jw_kstr(&jw, "format", json ? "json" : "markdown");
        chat_jw_kstr(&jw, "filename", fname);
        chat_jw_kstrn(&jw, "content", out.data ? out.data : "", out.len);
        frame_end(w, &jw);
        chat_buf_free(&out);
        break;
    }
    case CHAT_C_RUN: {
        chatbot_bot_t *bot;
        chat_conv_info_t ci;
        apr_int64_t retry;
        const char *e = chatbot_rate_check(&w->id, &w->lim, &retry);
        if (e) {
            send_error(w, e, "rate limit exceeded", w->cm.conversation_id, NULL, retry);
            break;
        }
        if ((e = resolve(w, w->cm.bot_id, w->cm.conversation_id, &bot, &ci))) {
            send_error(w, e, "no such conversation", w->cm.conversation_id, NULL, -1);
            break;
        }
        chatbot_exec_ws(w->r, &w->id, bot, ci.id, w->cm.command, w->cm.args, w->cm.nargs,
                        &w->frame);
        send_json(w);
        break;
    }
    case CHAT_C_STATUS:
        frame_begin(w, &jw, "status_board");
        chatbot_view_status(&jw, w->sc);
        frame_end(w, &jw);
        break;
    case CHAT_C_PING:
        frame_begin(w, &jw, "pong");
        frame_end(w, &jw);
        break;
    default:
        send_error(w, CHAT_ERR_UNKNOWN_TYPE, "unknown message type", NULL, NULL, -1);
        break;
    }
}

static int on_ws_message(void *baton, int opcode, const uint8_t *data, size_t len)
{
    wsc_t *w = baton;

    w->last_msg = chatbot_now_ms();
    if (opcode != CHAT_WS_OP_TEXT) {
        chat_ws_close(w->ws, CHAT_WS_CLOSE_UNSUPPORTED, "binary frames are not supported");
        w->close_why = "binary frame";
        return 1;
    }
    handle_message(w, data, len);
    chat_cmsg_free(&w->cm);
    apr_pool_clear(w->msgpool);
    return 0;
}

static void on_ws_close(void *baton, uint16_t code, const char *reason, size_t len)
{
    wsc_t *w = baton;

    w->close_why = apr_psprintf(w->r->pool, "client closed (%u)", code);
}

/* ---- input ------------------------------------------------------------------------- */

/* Reads what the client sent, without blocking, until the filters say
 * EAGAIN: data already pulled off the socket by a filter (core, mod_ssl)
 * would not wake the next poll, so nothing may be left behind. */
static void read_client(wsc_t *w)
{
    while (!w->peer_gone) {
        apr_status_t rv;
        apr_bucket *b;
        int got = 0;

        apr_brigade_cleanup(w->bb_in);
        rv = ap_get_brigade(w->c->input_filters, w->bb_in, AP_MODE_READBYTES,
                            APR_NONBLOCK_READ, READ_CHUNK);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            break;
        }
        if (rv != APR_SUCCESS) {
            w->peer_gone = 1;
            if (!w->close_why) {
                w->close_why = APR_STATUS_IS_EOF(rv) ? "client closed the connection"
                                                     : "read error";
            }
            break;
        }
        for (b = APR_BRIGADE_FIRST(w->bb_in); b != APR_BRIGADE_SENTINEL(w->bb_in);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;
            if (APR_BUCKET_IS_EOS(b)) {
                if (!w->is_h2) {
                    w->peer_gone = 1;
                }
                continue; /* mod_http2 inserts one EOS on the first read */
            }
            if (APR_BUCKET_IS_METADATA(b)) {
                continue;
            }
            if (apr_bucket_read(b, &data, &n, APR_BLOCK_READ) != APR_SUCCESS) {
                w->peer_gone = 1;
                break;
            }
            if (!n) {
                continue;
            }
            got = 1;
            w->last_rx = chatbot_now_ms();
            chat_ws_feed(w->ws, (const uint8_t *)data, n);
            ws_flush(w);
            if (chat_ws_state(w->ws) != CHAT_WS_OPEN) {
                break;
            }
        }
        if (!got || chat_ws_state(w->ws) != CHAT_WS_OPEN) {
            break;
        }
    }
    apr_brigade_cleanup(w->bb_in);
}

/* ---- per-IP cap ---------------------------------------------------------------------- */

/* Counts WebSocket connections per client address in this child process
 * (a small table; httpd's own per-IP limits work per child too). */
#define IPTAB 2048
static struct {
    char ip[48];
    apr_uint32_t n;
} iptab[IPTAB];
static apr_thread_mutex_t *ipmutex;

/* ---- the watcher: wakes idle connections only when there is news ----------------- */

/* Every open WebSocket of this child is in a list; one thread looks at the
 * store's global event counter and whether the child is stopping every
 * WATCH_MS and, when something changed, wakes exactly the connections
 * concerned (their user's sessions changed, or httpd is stopping). Idle
 * connections thus sleep until a ping is due instead of polling. */
static apr_thread_mutex_t *reg_mutex;
static wsc_t *reg_head;
static apr_thread_t *watcher;
static volatile int watcher_exit;

static void * APR_THREAD_FUNC watch(apr_thread_t *thd, void *data)
{
    apr_uint64_t seen = 0;
    int stop_told = 0;

    while (!watcher_exit) {
        chat_store_t *st = chatbot_store();
        apr_uint64_t ev;
        int stopping;
        wsc_t *w;

        apr_sleep(apr_time_from_msec(WATCH_MS));
        if (!st) {
            continue;
        }
        ev = chat_store_events(st);
        stopping = !stop_told && chatbot_child_stopping();
        if (ev == seen && !stopping) {
            continue;
        }
        seen = ev;
        apr_thread_mutex_lock(reg_mutex);
        for (w = reg_head; w; w = w->reg_next) {
            apr_uint64_t seq = chat_store_user_seq(st, &w->id.owner);
            if (stopping || seq != w->watched_seq) {
                w->watched_seq = seq;
                chatbot_engine_wakeup(w->eng);
            }
        }
        apr_thread_mutex_unlock(reg_mutex);
        stop_told |= stopping;
    }
    return NULL;
}

static apr_status_t watcher_stop(void *data)
{
    apr_status_t rv;

    watcher_exit = 1;
    if (watcher) {
        apr_thread_join(&rv, watcher);
        watcher = NULL;
    }
    return APR_SUCCESS;
}

static apr_status_t reg_remove(void *data)
{
    wsc_t *w = data;

    apr_thread_mutex_lock(reg_mutex);
    if (w->reg_prev) {
        w->reg_prev->reg_next = w->reg_next;
    }
    else if (reg_head == w) {
        reg_head = w->reg_next;
    }
    if (w->reg_next) {
        w->reg_next->reg_prev = w->reg_prev;
    }
    w->reg_prev = w->reg_next = NULL;
    apr_thread_mutex_unlock(reg_mutex);
    return APR_SUCCESS;
}

/* Registers w; unregistered by a cleanup that runs before the engine's
 * (so the watcher never wakes a destroyed curl handle). */
static void reg_add(wsc_t *w)
{
    if (!reg_mutex) {
        return;
    }
    w->watched_seq = w->user_seq;
    apr_thread_mutex_lock(reg_mutex);
    w->reg_prev = NULL;
    w->reg_next = reg_head;
    if (reg_head) {
        reg_head->reg_prev = w;
    }
    reg_head = w;
    apr_thread_mutex_unlock(reg_mutex);
    apr_pool_cleanup_register(w->r->pool, w, reg_remove, apr_pool_cleanup_null);
}

void chatbot_ws_child_init(apr_pool_t *p)
{
    apr_thread_mutex_create(&ipmutex, APR_THREAD_MUTEX_DEFAULT, p);
    apr_thread_mutex_create(&reg_mutex, APR_THREAD_MUTEX_DEFAULT, p);
    watcher_exit = 0;
    if (apr_thread_create(&watcher, NULL, watch, NULL, p) == APR_SUCCESS) {
        apr_pool_cleanup_register(p, NULL, watcher_stop, apr_pool_cleanup_null);
    }
    else {
        watcher = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, ap_server_conf, APLOGNO(10951)
                     "chatbot: cannot start the watcher thread; idle WebSockets will "
                     "notice session changes only when they wake for a ping");
    }
}

static apr_uint32_t ip_conns_get(conn_rec *c, int delta)
{
    const char *ip = c->client_ip ? c->client_ip : "";
    apr_uint32_t n = 0;
    int i, freei = -1;

    if (!ipmutex) {
        return 0;
    }
    apr_thread_mutex_lock(ipmutex);
    for (i = 0; i < IPTAB; i++) {
        if (iptab[i].n && !strcmp(iptab[i].ip, ip)) {
            break;
        }
        if (!iptab[i].n && freei < 0) {
            freei = i;
        }
    }
    if (i == IPTAB && delta > 0 && freei >= 0) {
        i = freei;
        apr_cpystrn(iptab[i].ip, ip, sizeof(iptab[i].ip));
    }
    if (i < IPTAB) {
        if (delta > 0 || iptab[i].n > 0) {
            iptab[i].n += delta;
        }
        n = iptab[i].n;
    }
    apr_thread_mutex_unlock(ipmutex);
    return n;
}

/* ---- the handler ------------------------------------------------------------------- */

static apr_status_t conn_gone(void *data)
{
    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS, -1);
    return APR_SUCCESS;
}

static apr_status_t ip_slot_release(void *data)
{
    ip_conns_get(data, -1);
    return APR_SUCCESS;
}

static apr_status_t ws_cleanup(void *data)
{
    wsc_t *w = data;

    if (w->ws) {
        chat_ws_destroy(w->ws);
        w->ws = NULL;
    }
    chat_buf_free(&w->frame);
    chat_buf_free(&w->scratch);
    chat_cmsg_free(&w->cm);
    return APR_SUCCESS;
}

/* The viewer left (close handshake done, the client's TCP FIN, HTTP/2
 * END_STREAM or reset, or writes failing) while answers are generated and
 * ChatbotContinueWithoutViewer is on: they finish into history and nothing
 * more is written. The client is not kept waiting for the end of the
 * answer (RFC 6455 7.1.1: the server closes first): over HTTP/1.1 the TCP
 * connection is shut for writing now; over HTTP/2 the stream is ended now
 * (an EOS: mod_http2 sends END_STREAM, RFC 8441 section 5) instead of when
 * the handler returns. */
static void detach_viewer(wsc_t *w)
{
    apr_socket_t *csd = ap_get_conn_socket(w->c);

    w->detached = 1;
    w->peer_gone = 1;
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
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, w->r, APLOGNO(10950)
                  "chatbot: viewer gone (%s); finishing %d answer(s) into history",
                  w->close_why ? w->close_why : "closed", chatbot_engine_active(w->eng));
}

int chatbot_ws_handler(request_rec *r)
{
    conn_rec *c = r->connection;
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    const char *accept = NULL;
    apr_pollfd_t pfd;
    apr_interval_time_t ptimeout;
    chat_ws_callbacks_t cbs;
    chat_ws_limits_t wl;
    chatbot_turn_cb_t tcb;
    wsc_t *w;
    int rc;
    apr_socket_t *csd;

    rc = handshake(r, &accept);
    if (rc != OK) {
        return rc;
    }
    if (!chatbot_store()) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* Reserve this address's slot before the 101, so that a client
     * opening sockets back to back can never get past the cap. */
    if (ip_conns_get(c, 1) > (apr_uint32_t)sc->max_conns_per_ip &&
        sc->max_conns_per_ip > 0) {
        ip_conns_get(c, -1);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, APLOGNO(10947)
                      "chatbot: %s has %d WebSocket connections already "
                      "(ChatbotMaxConnectionsPerIP)",
                      c->client_ip, sc->max_conns_per_ip);
        apr_table_setn(r->err_headers_out, "Retry-After", "10");
        return HTTP_TOO_MANY_REQUESTS;
    }
    apr_pool_cleanup_register(r->pool, c, ip_slot_release, apr_pool_cleanup_null);

    w = apr_pcalloc(r->pool, sizeof(*w));
    w->r = r;
    w->c = c;
    w->sc = sc;
    w->fd = -1;
    w->is_h2 = c->master != NULL;
    chatbot_limits_get(r, &w->lim);
    if (chatbot_ident_get(r, &w->id) != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    chat_buf_init(&w->frame);
    chat_buf_init(&w->scratch);
    chat_cmsg_init(&w->cm);
    apr_pool_cleanup_register(r->pool, w, ws_cleanup, apr_pool_cleanup_null);
    apr_pool_create(&w->msgpool, r->pool);

    memset(&cbs, 0, sizeof(cbs));
    cbs.send = ws_send_cb;
    cbs.on_message = on_ws_message;
    cbs.on_close = on_ws_close;
    wl.max_message = w->lim.max_message_bytes;
    wl.max_fragments = w->lim.max_fragments;
    if (chat_ws_create(&w->ws, &cbs, w, &wl) != CHAT_OK) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    memset(&tcb, 0, sizeof(tcb));
    tcb.on_accepted = on_accepted;
    tcb.on_status = on_status;
    tcb.on_delta = on_delta;
    tcb.on_done = on_done;
    w->eng = chatbot_engine_create(r, &w->lim, &w->id, &tcb, w);
    if (!w->eng) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }

    /* The 101. Set-Cookie for a new anonymous identity must go with it. */
    if (w->id.new_cookie) {
        apr_table_setn(r->headers_out, "Set-Cookie",
                       apr_table_get(r->err_headers_out, "Set-Cookie"));
    }
    apr_table_setn(r->headers_out, "Upgrade", "websocket");
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_setn(r->headers_out, "Sec-WebSocket-Accept", accept);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = ap_get_status_line(HTTP_SWITCHING_PROTOCOLS);
    ap_send_interim_response(r, 1);

    /* Take the connection over (see ap_proxy_tunnel_create). */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    ap_remove_output_filter_byhandle(c->output_filters, "SSL/TLS Coalescing Filter");
    r->input_filters = r->proto_input_filters = c->input_filters;
    r->output_filters = r->proto_output_filters = c->output_filters;
    c->keepalive = AP_CONN_CLOSE;
    w->bb_in = apr_brigade_create(r->pool, c->bucket_alloc);
    w->bb_out = apr_brigade_create(r->pool, c->bucket_alloc);

    memset(&pfd, 0, sizeof(pfd));
    pfd.p = r->pool;
    if (ap_get_pollfd_from_conn(c, &pfd, &ptimeout) == APR_SUCCESS) {
        if (pfd.desc_type == APR_POLL_SOCKET) {
            apr_os_sock_t fd;
            apr_os_sock_get(&fd, pfd.desc.s);
            w->fd = fd;
        }
        else if (pfd.desc_type == APR_POLL_FILE) {
            apr_os_file_t fd;
            apr_os_file_get(&fd, pfd.desc.f);
            w->fd = fd;
        }
    }
    csd = ap_get_conn_socket(c);
    if (csd && !w->is_h2) {
        /* Writes block at most this long on a client that does not read. */
        apr_socket_timeout_set(csd, (apr_interval_time_t)w->lim.send_timeout_ms * 1000);
    }

    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS, 1);
    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS_TOTAL, 1);
    apr_pool_cleanup_register(r->pool, c, conn_gone, apr_pool_cleanup_null);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, APLOGNO(10948)
                  "chatbot: WebSocket open for %s (%s)", w->id.label,
                  w->is_h2 ? "HTTP/2" : (ap_ssl_conn_is_ssl(c) ? "TLS" : "plain"));

    w->last_rx = w->last_ping = chatbot_now_ms();
    w->last_msg = w->last_rx;
    w->user_seq = chat_store_user_seq(chatbot_store(), &w->id.owner);
    reg_add(w);
    {
        /* the current session: the default bot's latest, if any (what a
         * client that knows no ids, such as the old one, talks to) */
        chat_conv_info_t ci;
        w->cur_bot = sc->default_bot_p;
        if (chatbot_conv_resolve(r, &w->id, w->cur_bot, NULL, 0, &ci) == NULL) {
            apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
        }
    }
    send_hello(w);
    /* Bytes that came with the handshake (a client that did not wait for
     * the 101, or frames in the same TCP segment / TLS record) were read
     * off the socket by httpd already and wait in the connection's
     * filters: the poll below would never report them. */
    read_client(w);
    ws_flush(w);

    for (;;) {
        struct curl_waitfd wfd;
        apr_uint64_t now;
        int timeout, ew;
        chat_ws_state_t wst = chat_ws_state(w->ws);
        int turns = chatbot_engine_active(w->eng);

        if (wst == CHAT_WS_CLOSED || w->write_failed || w->peer_gone) {
            int stopping;
            /* The client is gone (closed, vanished or unwritable). Answers
             * in progress either finish into history, for the reloaded page
             * to resume (ChatbotContinueWithoutViewer on), or stop now. */
            if (!turns) {
                break;
            }
            /* (a stopping child must not outlive its pools: never keep
             * generating then; whether it stops is checked right here, not
             * on the periodic poll, because a stop closes sockets first) */
            stopping = w->going_away || chatbot_child_stopping();
            if (!w->lim.continue_without_viewer || stopping) {
                chatbot_engine_stop(w->eng, NULL, stopping ? "shutdown" : "client_gone");
                break;
            }
            if (!w->detached) {
                detach_viewer(w);
            }
        }
        if (c->aborted && !w->peer_gone) {
            w->peer_gone = 1;
            continue;
        }
        now = chatbot_now_ms();
        /* httpd is stopping or restarting gracefully: tell the client. */
        if (!w->going_away && chatbot_child_stopping()) {
            w->going_away = 1;
            chatbot_engine_stop(w->eng, NULL, "shutdown");
            if (wst == CHAT_WS_OPEN) {
                chat_ws_close(w->ws, CHAT_WS_CLOSE_GOING_AWAY, "server restarting");
                ws_flush(w);
                w->close_sent_at = now;
            }
            w->close_why = "server stopping";
        }
        if (wst == CHAT_WS_CLOSING) {
            if (!w->close_sent_at) {
                w->close_sent_at = now;
            }
            if (now - w->close_sent_at > CLOSE_LINGER_MS) {
                break; /* the peer never answered our close */
            }
        }
        else if (!w->peer_gone) {
            /* keep-alive pings and dead-peer detection */
            if ((apr_int64_t)(now - w->last_rx) > w->lim.idle_timeout_ms) {
                w->close_why = "idle timeout (no pong)";
                chat_ws_close(w->ws, CHAT_WS_CLOSE_POLICY, "idle timeout");
                ws_flush(w);
                break;
            }
            if (w->lim.ping_interval_ms > 0 &&
                (apr_int64_t)(now - w->last_ping) >= w->lim.ping_interval_ms) {
                w->last_ping = now;
                chat_ws_send_ping(w->ws, (const uint8_t *)"chatbot", 7);
                ws_flush(w);
            }
        }
        if (!w->peer_gone) {
            /* one atomic read: push the session list when it changed */
            apr_uint64_t seq = chat_store_user_seq(chatbot_store(), &w->id.owner);
            if (seq != w->user_seq) {
                w->user_seq = seq;
                send_sessions(w, NULL, 0, NULL);
            }
        }
        if (following(w)) {
            follow_run(w);
        }

        /* Sleep until the client or a backend speaks, a timer is due, or
         * the watcher wakes us. */
        timeout = MAX_SLEEP_MS;
        if (wst == CHAT_WS_CLOSING) {
            timeout = CLOSE_LINGER_MS / 4;
        }
        else if (!w->peer_gone) {
            apr_int64_t left = w->lim.idle_timeout_ms - (apr_int64_t)(now - w->last_rx) + 1;
            if (left < timeout) {
                timeout = left < 1 ? 1 : (int)left;
            }
            if (w->lim.ping_interval_ms > 0) {
                left = w->lim.ping_interval_ms - (apr_int64_t)(now - w->last_ping);
                if (left < timeout) {
                    timeout = left < 1 ? 1 : (int)left;
                }
            }
        }
        ew = chatbot_engine_wait_ms(w->eng);
        if (ew >= 0 && ew < timeout) {
            timeout = ew;
        }
        if (following(w) && FOLLOW_POLL_MS < timeout) {
            timeout = FOLLOW_POLL_MS;
        }
        memset(&wfd, 0, sizeof(wfd));
        if (w->fd >= 0 && !w->peer_gone) {
            wfd.fd = w->fd;
            wfd.events = CURL_WAIT_POLLIN;
        }
        if (chatbot_engine_poll(w->eng, (w->fd >= 0 && !w->peer_gone) ? &wfd : NULL,
                                (w->fd >= 0 && !w->peer_gone) ? 1 : 0,
                                timeout) != APR_SUCCESS) {
            w->close_why = "poll failed";
            break;
        }
        /* Everything one wake-up produces (all the tokens one read from
         * the backend brought, the response, the idle status) leaves in
         * one write: a FLUSH per frame cost a syscall and a TCP segment
         * per token. */
        w->defer_flush = 1;
        if (!w->peer_gone && (w->fd < 0 || wfd.revents)) {
            read_client(w);
        }
        chatbot_engine_run(w->eng);
        w->defer_flush = 0;
        ws_flush(w);
    }

    /* Leaving: stop what must stop, say goodbye, let httpd close TCP. */
    if (chatbot_engine_active(w->eng)) {
        chatbot_engine_stop(w->eng, NULL, w->going_away ? "shutdown" : "client_gone");
    }
    if (!w->peer_gone && !w->write_failed && chat_ws_state(w->ws) == CHAT_WS_OPEN) {
        chat_ws_close(w->ws, CHAT_WS_CLOSE_NORMAL, NULL);
        ws_flush(w);
    }
    apr_table_setn(r->notes, "chatbot-close",
                   apr_psprintf(r->pool, "%u/%u", chat_ws_sent_close_code(w->ws),
                                chat_ws_recv_close_code(w->ws)));
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, APLOGNO(10949)
                  "chatbot: WebSocket closed for %s: %s (sent %u, received %u)",
                  w->id.label, w->close_why ? w->close_why : "done",
                  chat_ws_sent_close_code(w->ws), chat_ws_recv_close_code(w->ws));
    /* Nothing more may be written as HTTP on this connection. */
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->bytes_sent = 1;
    c->keepalive = AP_CONN_CLOSE;
    return OK;
}
