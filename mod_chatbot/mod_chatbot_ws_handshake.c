/* mod_chatbot_ws_handshake.c - the WebSocket endpoint's front door: the
 * RFC 6455 handshake checks, the Origin rule (shared with the REST API),
 * the per-address caps, the 101 and taking the connection over from HTTP.
 *
 * Taking over follows httpd's own tunnel (ap_proxy_tunnel_create in
 * modules/proxy/proxy_util.c): mod_reqtimeout's filter and the SSL
 * coalescing filter are removed, the request's output filters are pointed
 * at the connection's and all I/O goes through connection filters (so
 * mod_ssl and mod_http2 work unchanged). Over HTTP/2 (RFC 8441,
 * "H2WebSockets on") mod_http2 turns the extended CONNECT into this same
 * GET and our 101 into a 200.
 *
 * Then the handler runs the connection (mod_chatbot_ws_conn.c) until it is
 * idle. Under the event MPM it returns there: the request stays open (its
 * end is held back, so the access log line is written when the WebSocket
 * closes) and the MPM waits for the client without a thread. Elsewhere the
 * handler keeps the connection to the end.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "http_ssl.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"

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
        if ((is_https && !strcmp(colon, ":443")) ||
            (!is_https && !strcmp(colon, ":80"))) {
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
    return !strcmp(
        norm_hostport(r->pool, ohp, o_https),
        norm_hostport(r->pool, host, ap_ssl_conn_is_ssl(r->connection) ? 1 : o_https));
}

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
        ap_log_rerror(
            APLOG_MARK, APLOG_INFO, 0, r,
            APLOGNO(10940) "chatbot: WebSocket handshake with method %s refused",
            r->method);
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!has_token(r->pool, upgrade, "websocket")) {
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      APLOGNO(10941) "chatbot: request to the WebSocket endpoint without "
                                     "'Upgrade: websocket'");
        return HTTP_UPGRADE_REQUIRED;
    }
    if (r->proto_num < HTTP_VERSION(1, 1) || !has_token(r->pool, connection, "upgrade")) {
        ap_log_rerror(
            APLOG_MARK, APLOG_INFO, 0, r,
            APLOGNO(10942) "chatbot: bad WebSocket handshake (%s, Connection: %s)",
            r->protocol, connection ? connection : "-");
        return HTTP_BAD_REQUEST;
    }
    if (!version || strcmp(version, "13")) {
        apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version", "13");
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      APLOGNO(10943) "chatbot: unsupported Sec-WebSocket-Version %s",
                      version ? version : "(none)");
        return version ? HTTP_UPGRADE_REQUIRED : HTTP_BAD_REQUEST;
    }
    if (!key || chat_ws_accept_key(key, acc) != CHAT_OK) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      APLOGNO(10944) "chatbot: missing or malformed Sec-WebSocket-Key");
        return HTTP_BAD_REQUEST;
    }
    if (!chatbot_origin_allowed(r, origin)) {
        ap_log_rerror(
            APLOG_MARK, APLOG_WARNING, 0, r,
            APLOGNO(10945) "chatbot: WebSocket from origin %s refused (host %s); see "
                           "ChatbotAllowedOrigins",
            origin, apr_table_get(r->headers_in, "Host"));
        return HTTP_FORBIDDEN;
    }
    *accept = apr_pstrdup(r->pool, acc);
    return OK;
}

/* ---- per-address counts ------------------------------------------------------- */

/* WebSocket connections and answers being generated, per client address, in
 * this child process (httpd's own per-IP limits work per child too, and so
 * does the worker budget these caps protect): a hash table of IPTAB
 * addresses, an entry freed when both counts are 0. Parked connections let
 * a child hold thousands of clients; should more addresses than IPTAB hold
 * connections at once, a new one counts as over every cap (refused) rather
 * than as uncounted, so that no address escapes the limits. */
#define IPTAB 16384
#define IPBUCKETS 4096
typedef struct {
    char ip[48];
    apr_uint32_t conns, answers;
    int next; /* in its bucket's chain, or in the free list */
} ipent_t;
static ipent_t iptab[IPTAB];
static int ipbucket[IPBUCKETS];
static int ipfree = -1; /* entries given back */
static int ipused;      /* entries ever taken (iptab[ipused..] untouched) */
static apr_thread_mutex_t *ipmutex;

static unsigned ip_hash(const char *ip)
{
    unsigned h = 2166136261u; /* FNV-1a */

    while (*ip) {
        h = (h ^ (unsigned char)*ip++) * 16777619u;
    }
    return h % IPBUCKETS;
}

static apr_uint32_t ip_count(conn_rec *c, int answers, int delta)
{
    const char *ip = c->client_ip ? c->client_ip : "";
    unsigned h = ip_hash(ip);
    apr_uint32_t n, *v;
    int i, prev = -1;

    if (!ipmutex) {
        return 0;
    }
    apr_thread_mutex_lock(ipmutex);
    for (i = ipbucket[h]; i >= 0; prev = i, i = iptab[i].next) {
        if (!strcmp(iptab[i].ip, ip)) {
            break;
        }
    }
    if (i < 0) {
        int room = ipfree >= 0 || ipused < IPTAB;
        if (delta < 0 || (delta == 0 && room)) {
            apr_thread_mutex_unlock(ipmutex);
            return 0; /* not counted: nothing held */
        }
        if (!room) {
            apr_thread_mutex_unlock(ipmutex);
            return (apr_uint32_t)-1; /* full: over every cap */
        }
        if (ipfree >= 0) {
            i = ipfree;
            ipfree = iptab[i].next;
        }
        else {
            i = ipused++;
        }
        apr_cpystrn(iptab[i].ip, ip, sizeof(iptab[i].ip));
        iptab[i].conns = iptab[i].answers = 0;
        iptab[i].next = ipbucket[h];
        ipbucket[h] = i;
        prev = -1;
    }
    v = answers ? &iptab[i].answers : &iptab[i].conns;
    if (delta > 0 || *v >= (apr_uint32_t)-delta) {
        *v += delta;
    }
    else {
        *v = 0;
    }
    n = *v;
    if (!iptab[i].conns && !iptab[i].answers) {
        if (prev < 0) {
            ipbucket[h] = iptab[i].next;
        }
        else {
            iptab[prev].next = iptab[i].next;
        }
        iptab[i].next = ipfree;
        ipfree = i;
    }
    apr_thread_mutex_unlock(ipmutex);
    return n;
}

apr_uint32_t chatbot_ws_ip_conns(conn_rec *c, int delta)
{
    return ip_count(c, 0, delta);
}

apr_uint32_t chatbot_ws_ip_answers(conn_rec *c, int delta)
{
    return ip_count(c, 1, delta);
}

int chatbot_ws_max_answers_per_ip(chatbot_srv_conf *sc)
{
    int n;

    if (sc->max_answers_per_ip != CHATBOT_UNSET) {
        return sc->max_answers_per_ip; /* 0: no cap */
    }
    n = chatbot_ws_max_workers(sc) / 2;
    return n < 2 ? 2 : n;
}

void chatbot_ws_handshake_child_init(apr_pool_t *p)
{
    int i;

    for (i = 0; i < IPBUCKETS; i++) {
        ipbucket[i] = -1;
    }
    ipfree = -1;
    ipused = 0;
    apr_thread_mutex_create(&ipmutex, APR_THREAD_MUTEX_DEFAULT, p);
}

static apr_status_t ip_slot_release(void *data)
{
    chatbot_ws_ip_conns(data, -1);
    return APR_SUCCESS;
}

static apr_status_t conn_gone(void *data)
{
    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS, -1);
    return APR_SUCCESS;
}

/* ---- the handler ------------------------------------------------------------------ */

static apr_status_t wsc_cleanup(void *data)
{
    chatbot_wsc_t *w = data;
    int i;

    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW; i++) {
        chatbot_ws_follow_end(&w->follow[i]);
    }
    if (w->watching) {
        chat_store_watch(chatbot_store(), &w->id.owner, NULL, 0);
        w->watching = 0;
    }
    if (w->ws) {
        chat_ws_destroy(w->ws);
        w->ws = NULL;
    }
    chat_buf_free(&w->frame);
    chat_buf_free(&w->scratch);
    chat_buf_free(&w->held);
    chat_buf_free(&w->out);
    chat_cmsg_free(&w->cm);
    return APR_SUCCESS;
}

/* How often a parked connection is pinged: ChatbotPingInterval, and at
 * least twice per httpd Timeout, which the event MPM applies to a parked
 * connection (it closes one that stays silent that long). The MPM takes
 * the Timeout of the request's virtual host if that one sets its own
 * KeepAliveTimeout, else of the address's first one (event.c). */
static apr_uint64_t park_ping_ms(chatbot_wsc_t *w)
{
    server_rec *ts =
        w->r->server->keep_alive_timeout_set ? w->r->server : w->c->base_server;
    apr_uint64_t half = (apr_uint64_t)apr_time_as_msec(ts->timeout) / 2;
    apr_uint64_t ping =
        w->lim.ping_interval_ms > 0 ? (apr_uint64_t)w->lim.ping_interval_ms : half;

    if (half < 500) {
        half = 500;
    }
    return ping < half ? ping : half;
}

int chatbot_ws_handler(request_rec *r)
{
    conn_rec *c = r->connection;
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    const char *accept = NULL;
    chatbot_wsc_t *w;
    chatbot_ws_next_t next;
    apr_socket_t *csd;
    int rc;

    rc = handshake(r, &accept);
    if (rc != OK) {
        return rc;
    }
    if (!chatbot_store()) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    /* Reserve this address's slot before the 101, so that a client
     * opening sockets back to back can never get past the cap. */
    if (chatbot_ws_ip_conns(c, 1) > (apr_uint32_t)sc->max_conns_per_ip &&
        sc->max_conns_per_ip > 0) {
        chatbot_ws_ip_conns(c, -1);
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      APLOGNO(10947) "chatbot: %s has %d WebSocket connections already "
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
    w->wakefd = -1;
    w->is_h2 = c->master != NULL;
    w->can_park = !w->is_h2 && c->cs && chatbot_ws_mpm_can_park();
    w->state = WS_ST_HANDSHAKE;
    chatbot_limits_get(r, &w->lim);
    chat_buf_init(&w->frame);
    chat_buf_init(&w->scratch);
    chat_buf_init(&w->held);
    chat_buf_init(&w->out);
    chat_cmsg_init(&w->cm);
    apr_pool_cleanup_register(r->pool, w, wsc_cleanup, apr_pool_cleanup_null);
    /* registered after wsc_cleanup: runs before it (the watcher lets go of
     * w before its buffers go) */
    chatbot_ws_reg_add(w);
    if (!w->can_park) {
        /* this connection will hold its thread for its whole life */
        if (!chatbot_ws_slot_take(w)) {
            chat_metrics_error(chatbot_store(), CHAT_ERR_BUSY);
            ap_log_rerror(
                APLOG_MARK, APLOG_WARNING, 0, r,
                APLOGNO(10952) "chatbot: WebSocket refused: %d connections hold a thread "
                               "already in this child, or under prefork a process "
                               "server-wide (ChatbotMaxWorkers%s)",
                chatbot_ws_max_workers(sc),
                w->is_h2 ? "; over HTTP/2 every WebSocket holds one of "
                           "mod_http2's workers, and its session an httpd "
                           "worker"
                         : "");
            apr_table_setn(r->err_headers_out, "Retry-After", "10");
            return HTTP_SERVICE_UNAVAILABLE;
        }
        w->life_slot = 1;
    }
    if (chatbot_ident_get(r, &w->id) != APR_SUCCESS) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    if (chatbot_ws_layer(w) != APR_SUCCESS) {
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

    /* Take the connection over (see ap_proxy_tunnel_create). The request's
     * input filters stay as they are when the connection may park: the
     * request ends in httpd's hands, and its body check (a GET has none)
     * must not read what the client sends next. */
    ap_remove_input_filter_byhandle(c->input_filters, "reqtimeout");
    ap_remove_output_filter_byhandle(c->output_filters, "SSL/TLS Coalescing Filter");
    if (!w->can_park) {
        r->input_filters = r->proto_input_filters = c->input_filters;
    }
    r->output_filters = r->proto_output_filters = c->output_filters;
    c->keepalive = AP_CONN_CLOSE;
    w->bb_in = apr_brigade_create(r->pool, c->bucket_alloc);
    w->bb_out = apr_brigade_create(r->pool, c->bucket_alloc);
    w->bb_tmp = apr_brigade_create(r->pool, c->bucket_alloc);
    w->fd = chatbot_conn_pollfd(c, r->pool);
    csd = ap_get_conn_socket(c);
    if (csd && !w->is_h2) {
        ap_filter_t *f;
        /* Blocking writes (an answer streaming) wait at most this long for
         * a client that does not read. */
        apr_socket_timeout_set(csd, (apr_interval_time_t)w->lim.send_timeout_ms * 1000);
        for (f = c->output_filters; f && f->next; f = f->next) {
        }
        w->core_out = f;
    }
    w->park_ping_ms = park_ping_ms(w);

    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS, 1);
    chat_metrics_gauge_add(chatbot_store(), CHAT_G_CONNECTIONS_TOTAL, 1);
    apr_pool_cleanup_register(r->pool, c, conn_gone, apr_pool_cleanup_null);
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  APLOGNO(10948) "chatbot: WebSocket open for %s (%s, %s)", w->id.label,
                  w->is_h2 ? "HTTP/2" : (ap_ssl_conn_is_ssl(c) ? "TLS" : "plain"),
                  w->can_park ? "parks when idle" : "holds a thread");

    w->last_rx = w->last_ping = chatbot_now_ms();
    w->last_msg = w->last_rx;
    /* the owner's changes are heard here from now on (redis: its shard's
     * channel, subscribed before the list is first read) */
    chat_store_watch(chatbot_store(), &w->id.owner, NULL, 1);
    w->watching = 1;
    w->user_seq = chat_store_user_seq(chatbot_store(), &w->id.owner);
    w->watched_seq = w->user_seq;
    {
        /* the current session: the default bot's latest, if any (what a
         * client that knows no ids, such as the old one, talks to) */
        chat_conv_info_t ci;
        w->cur_bot = sc->default_bot_p;
        if (chatbot_conv_resolve(r, &w->id, w->cur_bot, NULL, 0, &ci) == NULL) {
            apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
        }
    }
    chatbot_ws_transit(w, WS_ST_IDLE, "upgraded");
    chatbot_ws_send_hello(w);

    /* Frames that came with the handshake (a client that did not wait for
     * the 101, or frames in the same TCP segment / TLS record) were read
     * off the socket by httpd already and wait in the connection's
     * filters: the first step reads them. */
    next = chatbot_ws_drive(w, w->can_park);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->bytes_sent = 1; /* nothing more may be written as HTTP */
    if (next != CHATBOT_WS_DONE) {
        /* Idle: back to the MPM, which waits for the client (or for room
         * to write) within httpd's Timeout and then calls our
         * process_connection hook. The sense and clogging flags make it
         * come back to the hook from its write-completion state, the only
         * one a request may end in (mod_http2 does the same). */
        chatbot_ws_hold(w);
        c->keepalive = AP_CONN_KEEPALIVE;
        w->park_sense =
            next == CHATBOT_WS_WANT_WRITE ? CONN_SENSE_WANT_WRITE : CONN_SENSE_WANT_READ;
        c->cs->sense = w->park_sense;
        c->clogging_input_filters = 1;
        w->handing_over = 1;
        w->park_pending = 1;
        ap_log_rerror(
            APLOG_MARK, APLOG_TRACE2, 0, r, "chatbot: WebSocket handed to the MPM (%s)",
            next == CHATBOT_WS_WANT_WRITE ? "waits to write" : "waits for the client");
        return OK;
    }
    chatbot_ws_finish(w);
    c->keepalive = AP_CONN_CLOSE;
    return OK;
}
