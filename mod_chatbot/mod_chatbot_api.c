/* mod_chatbot_api.c - the REST API (JSON), with the same identity, rate
 * limits and storage as the WebSocket. It covers what the old port-8000
 * service exposed; every route is listed in docs/api.md.
 *
 * Bad input always gets a 4xx with a JSON body {"error": <code>, "message":
 * <text>, "detail": <text>} (detail for FastAPI-era clients), never a 500.
 */
#include <string.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_portable.h"

#include "chat/compat.h"
#include "chat/jsoncheck.h"
#include "chat/utf8.h"
#include "mod_chatbot.h"
#include "mod_chatbot_settings.h"

#define BODY_MAX (1024 * 1024)
#define BODY_DEPTH 32 /* nesting accepted in a request body */
#define OFFSET_MAX 1000000

typedef struct {
    request_rec *r;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    json_object *body;  /* parsed request body (POST) */
    int query_bad;      /* a query parameter repeated or badly encoded */
    /* a route of the port-8000 controller (mod_chatbot_compat.c): its
     * replies and errors take the old shapes; legacy_id is the bot id the
     * route names (task: the answer's "bot_id") */
    int legacy;
    const char *legacy_id;
    chat_buf_t out;
    chat_jw_t jw;
    /* the store failed during the request (chatbot_store_failures moved):
     * whatever the route found, the answer is 503 store_unavailable */
    int store_watch;
    apr_uint32_t store_fail0;
} api_t;

static apr_status_t api_cleanup(void *data)
{
    api_t *a = data;

    if (a->body) {
        json_object_put(a->body);
        a->body = NULL;
    }
    chat_buf_free(&a->out);
    return APR_SUCCESS;
}

/* X-Content-Type-Options, once: in err_headers_out, where a `Header always
 * set X-Content-Type-Options nosniff` (conf/chatbot-csp.conf) replaces it
 * instead of adding a second copy. */
static void set_nosniff(request_rec *r)
{
    apr_table_unset(r->headers_out, "X-Content-Type-Options");
    apr_table_setn(r->err_headers_out, "X-Content-Type-Options", "nosniff");
}

static int send_error(api_t *a, const char *code, const char *msg, apr_int64_t retry_ms);
static const char *store_down_text(void);

static int send_json(api_t *a, int status)
{
    request_rec *r = a->r;

    if (a->store_watch && status < 500 && chatbot_store_failures() != a->store_fail0) {
        a->store_watch = 0;
        return send_error(a, CHAT_ERR_STORE_UNAVAILABLE, store_down_text(), 0);
    }

    r->status = status;
    ap_set_content_type(r, "application/json; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    set_nosniff(r);
    ap_set_content_length(r, (apr_off_t)a->out.len);
    if (!r->header_only) {
        ap_rwrite(a->out.data ? a->out.data : "", (int)a->out.len, r);
    }
    return OK;
}

/* Writes an error reply without counting it: for a failed turn, which the
 * engine has counted already (as it does for the WebSocket). */
static int send_error_counted(api_t *a, const char *code, const char *msg,
                              apr_int64_t retry_ms)
{
    chat_buf_reset(&a->out, 0);
    chat_jw_init(&a->jw, &a->out);
    chat_jw_obj_begin(&a->jw);
    if (a->legacy) {
        /* the old controller's shape: "error" is the text, "code" ours */
        chat_jw_kbool(&a->jw, "success", 0);
        chat_jw_kstr(&a->jw, "error", msg);
        chat_jw_kstr(&a->jw, "code", code);
        if (a->legacy_id) {
            chat_jw_key(&a->jw, "response");
            chat_jw_null(&a->jw);
        }
    }
    else {
        chat_jw_kstr(&a->jw, "error", code);
    }
    chat_jw_kstr(&a->jw, "message", msg);
    chat_jw_kstr(&a->jw, "detail", msg);
    if (retry_ms > 0) {
        chat_jw_kint(&a->jw, "retry_after_ms", retry_ms);
        apr_table_setn(a->r->err_headers_out, "Retry-After",
                       apr_psprintf(a->r->pool, "%" APR_INT64_T_FMT,
                                    (retry_ms + 999) / 1000));
    }
    chat_jw_obj_end(&a->jw);
    return send_json(a, a->legacy && chatbot_compat_outcome(code)
                            ? HTTP_OK
                            : chatbot_error_status(code));
}

/* Every error the API returns is counted once, by code, like the error
 * frames of the WebSocket (chatbot_errors_total, ChatbotErrors[code]). */
static const char *store_down_text(void)
{
    return chatbot_store_err_text(CHAT_ERR_STORE_UNAVAILABLE);
}

static int send_error(api_t *a, const char *code, const char *msg, apr_int64_t retry_ms)
{
    chat_metrics_error(chatbot_store(), code);
    return send_error_counted(a, code, msg, retry_ms);
}

static void begin(api_t *a)
{
    chat_buf_reset(&a->out, 0);
    chat_jw_init(&a->jw, &a->out);
    chat_jw_obj_begin(&a->jw);
}

static int finish(api_t *a, int status)
{
    chat_jw_obj_end(&a->jw);
    if (chat_jw_status(&a->jw) != CHAT_OK) {
        return send_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
    }
    return send_json(a, status);
}

/* 1 if the Content-Type names JSON: the media type (parameters and case
 * aside) is application/json or some application/<x>+json. A mere "json"
 * somewhere (text/plain; charset=json, a type a cross-site form can send
 * without a CORS preflight) is not enough. */
static int is_json_type(apr_pool_t *p, const char *ct)
{
    char *t = apr_pstrdup(p, ct), *semi = strchr(t, ';');
    size_t n;

    if (semi) {
        *semi = '\0';
    }
    while (*t == ' ' || *t == '\t') {
        t++;
    }
    n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) {
        t[--n] = '\0';
    }
    ap_str_tolower(t);
    if (!strcmp(t, "application/json")) {
        return 1;
    }
    return !strncmp(t, "application/", 12) && n > 17 && !strcmp(t + n - 5, "+json") &&
           !strchr(t + 12, '/');
}

/* Reads and parses a JSON object body. Returns OK, or sends the error. */
static int read_body(api_t *a, int required)
{
    request_rec *r = a->r;
    chat_buf_t raw;
    json_tokener *tok;
    enum json_tokener_error jerr;
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    char why[160];
    int rc;

    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        /* a Content-Length over LimitRequestBody is refused right here */
        if (rc == HTTP_REQUEST_ENTITY_TOO_LARGE) {
            return send_error(a, CHAT_ERR_TOO_LARGE,
                              "the request body is larger than 1 MiB", 0);
        }
        return send_error(a, CHAT_ERR_BAD_REQUEST, "cannot read the request body", 0);
    }
    if (r->remaining > BODY_MAX) {
        return send_error(a, CHAT_ERR_TOO_LARGE, "the request body is larger than 1 MiB", 0);
    }
    chat_buf_init(&raw);
    if (ap_should_client_block(r)) {
        char buf[8192];
        long n;
        while ((n = ap_get_client_block(r, buf, sizeof(buf))) > 0) {
            if (raw.len + (size_t)n > BODY_MAX) {
                chat_buf_free(&raw);
                return send_error(a, CHAT_ERR_TOO_LARGE, "the request body is larger than "
                                  "1 MiB", 0);
            }
            chat_buf_append(&raw, buf, (size_t)n);
        }
        if (n < 0) {
            chat_buf_free(&raw);
            return send_error(a, CHAT_ERR_BAD_REQUEST, "error reading the request body", 0);
        }
    }
    if (raw.len == 0) {
        chat_buf_free(&raw);
        if (required) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, "a JSON object body is required", 0);
        }
        a->body = json_object_new_object();
        return OK;
    }
    if (ct && !is_json_type(r->pool, ct)) {
        chat_buf_free(&raw);
        return send_error(a, CHAT_ERR_BAD_REQUEST,
                          "the body must be JSON (Content-Type: application/json)", 0);
    }
    /* RFC 8259 exactly, valid UTF-8 everywhere: json-c alone lets raw
     * control characters, single quotes, NaN and overlong UTF-8 through */
    if (chat_json_check(raw.data, raw.len, BODY_DEPTH, why, sizeof(why)) != CHAT_OK) {
        chat_buf_free(&raw);
        return send_error(
            a, CHAT_ERR_BAD_JSON,
            apr_pstrcat(r->pool, "the body is not a JSON object: ", why, NULL), 0);
    }
    tok = json_tokener_new_ex(BODY_DEPTH);
    if (!tok) {
        chat_buf_free(&raw);
        return send_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    a->body = json_tokener_parse_ex(tok, raw.data, (int)raw.len);
    jerr = json_tokener_get_error(tok);
    if (a->body && jerr == json_tokener_success) {
        size_t off = json_tokener_get_parse_end(tok);
        while (off < raw.len && raw.data[off] && strchr(" \t\r\n", raw.data[off])) {
            off++;
        }
        if (off != raw.len) {
            jerr = json_tokener_error_parse_unexpected;
        }
    }
    json_tokener_free(tok);
    chat_buf_free(&raw);
    if (!a->body || jerr != json_tokener_success ||
        !json_object_is_type(a->body, json_type_object)) {
        if (a->body) {
            json_object_put(a->body);
            a->body = NULL;
        }
        return send_error(a, CHAT_ERR_BAD_JSON, "the body is not a JSON object", 0);
    }
    return OK;
}

/* Gets an optional string field; *bad set if present with another type. */
static const char *jstr(api_t *a, const char *key, int *bad)
{
    json_object *v;

    if (!a->body || !json_object_object_get_ex(a->body, key, &v) ||
        json_object_is_type(v, json_type_null)) {
        return NULL;
    }
    /* a string with U+0000 would be cut at it: refused, as on the WebSocket */
    if (!json_object_is_type(v, json_type_string) ||
        strlen(json_object_get_string(v)) != (size_t)json_object_get_string_len(v)) {
        *bad = 1;
        return NULL;
    }
    return json_object_get_string(v);
}

/* The value of query parameter name, NULL if absent. A value that is
 * badly %-encoded or decodes to a NUL, or a parameter given twice, sets
 * a->query_bad (400: no guessing which one was meant). */
static const char *query_arg(api_t *a, const char *name)
{
    request_rec *r = a->r;
    const char *q = r->args, *found = NULL;
    size_t n = strlen(name);

    while (q && *q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > n && !strncmp(q, name, n) && q[n] == '=') {
            char *v = apr_pstrndup(r->pool, q + n + 1, len - n - 1);
            char *p;
            if (found) {
                a->query_bad = 1;
                return NULL;
            }
            for (p = v; *p; p++) {
                if (*p == '+') {
                    *p = ' ';
                }
            }
            if (ap_unescape_url(v) != OK ||
                !chat_utf8_valid((const uint8_t *)v, strlen(v))) {
                a->query_bad = 1;
                return NULL;
            }
            found = v;
        }
        q = amp ? amp + 1 : NULL;
    }
    return found;
}

static int query_int(api_t *a, const char *name, apr_int64_t dflt, apr_int64_t max,
                     apr_int64_t *out)
{
    const char *v = query_arg(a, name);
    int64_t n;

    *out = dflt;
    if (a->query_bad) {
        return 0;
    }
    if (!v || !*v) {
        return 1;
    }
    if (chat_parse_int(v, 0, max, &n)) {
        return 0;
    }
    *out = n;
    return 1;
}

/* ---- turn collection (blocking routes) ----------------------------------------- */

typedef struct {
    int done;
    chatbot_outcome_t outcome;
    const char *code;
    char msg[512];
    chat_buf_t answer;
    chat_buf_t thinking;
    chat_stats_t stats;
    double ttft_ms, duration_ms;
    int tokens;
    uint32_t index;
    char conv[CHAT_CONV_ID_LEN + 1];
} collect_t;

static void c_delta(void *baton, chatbot_turn_t *t, int thinking, const char *text,
                    size_t len)
{
    collect_t *c = baton;

    if (thinking) {
        chat_buf_append(&c->thinking, text, len);
    }
}

static void c_done(void *baton, chatbot_turn_t *t)
{
    collect_t *c = baton;

    c->done = 1;
    c->outcome = t->outcome;
    c->code = t->err_code;
    apr_cpystrn(c->msg, t->err_msg, sizeof(c->msg));
    chat_buf_reset(&c->answer, 0);
    chat_buf_append(&c->answer, t->answer.data ? t->answer.data : "", t->answer.len);
    c->stats = t->stats;
    c->ttft_ms = t->ttft_ms;
    c->duration_ms = t->duration_ms;
    c->tokens = t->tokens;
    c->index = t->answer_index;
    apr_cpystrn(c->conv, t->conv_id, sizeof(c->conv));
}

static apr_status_t collect_cleanup(void *data)
{
    collect_t *c = data;

    chat_buf_free(&c->answer);
    chat_buf_free(&c->thinking);
    return APR_SUCCESS;
}

/* The text of a rate_limited error (the WebSocket's wording). */
static const char *rate_msg(api_t *a, apr_int64_t retry_ms)
{
    return apr_psprintf(a->r->pool,
                        "rate limit exceeded (%u messages per %s); retry in "
                        "%.1f s",
                        a->lim.rate.count,
                        a->lim.rate.period_ms == 60000     ? "minute"
                        : a->lim.rate.period_ms == 1000    ? "second"
                        : a->lim.rate.period_ms == 3600000 ? "hour"
                                                           : "period",
                        retry_ms / 1000.0);
}

/* ---- the client of a blocking turn ---------------------------------------------- */

#define WATCH_MAX_SLEEP_MS 250

typedef struct {
    conn_rec *c;
    int fd;          /* client descriptor to poll for input/hang-up, -1 if none */
    int watching;    /* 0 once gone, or once it has sent more (pipelining) */
    int h2;
} client_watch_t;

static void watch_init(client_watch_t *cw, request_rec *r)
{
    conn_rec *c = r->connection;
    apr_pollfd_t pfd;
    apr_interval_time_t ptimeout;

    memset(cw, 0, sizeof(*cw));
    cw->c = c;
    cw->fd = -1;
    cw->watching = 1;
    cw->h2 = c->master != NULL;
    memset(&pfd, 0, sizeof(pfd));
    pfd.p = r->pool;
    /* the socket over HTTP/1.x (TLS or not); over HTTP/2 mod_http2's pipe
     * for this stream, which only says "input", so there c->aborted (set
     * by mod_http2 when the stream is reset or the connection goes) is
     * what tells */
    if (ap_get_pollfd_from_conn(c, &pfd, &ptimeout) == APR_SUCCESS) {
        if (pfd.desc_type == APR_POLL_SOCKET) {
            apr_os_sock_t fd;
            if (apr_os_sock_get(&fd, pfd.desc.s) == APR_SUCCESS) {
                cw->fd = fd;
            }
        }
        else if (pfd.desc_type == APR_POLL_FILE) {
            apr_os_file_t fd;
            if (apr_os_file_get(&fd, pfd.desc.f) == APR_SUCCESS) {
                cw->fd = fd;
            }
        }
    }
}

/* 1 if the client is gone: the connection was aborted, or (HTTP/1.x) a
 * non-blocking peek through the connection's input filters, as httpd's own
 * pipelining check does, finds the end of the stream or an error (a FIN,
 * a reset, a TLS close_notify). Data (a pipelined next request) means the
 * client is there; it is left for httpd and the descriptor no longer
 * polled (it would stay readable). */
static int watch_gone(client_watch_t *cw)
{
    apr_bucket_brigade *bb;
    apr_status_t rv;
    int gone = 0;

    if (cw->c->aborted) {
        return 1;
    }
    if (cw->h2) {
        return 0;
    }
    bb = apr_brigade_create(cw->c->pool, cw->c->bucket_alloc);
    rv = ap_get_brigade(cw->c->input_filters, bb, AP_MODE_SPECULATIVE, APR_NONBLOCK_READ, 1);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        gone = 0;
    }
    else if (rv != APR_SUCCESS) {
        gone = 1; /* EOF, reset, TLS alert */
    }
    else if (APR_BRIGADE_EMPTY(bb) || APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb))) {
        gone = 1;
    }
    else {
        cw->watching = 0; /* pipelined data: the client is alive */
    }
    apr_brigade_destroy(bb);
    return gone;
}

/* Runs the engine until the turn ends, watching the client meanwhile (as
 * the WebSocket loop does: its socket is polled with the backend's). If it
 * disconnects: a stateless answer (nobody could ever read it) is cancelled
 * at once; a conversation turn follows ChatbotContinueWithoutViewer (on:
 * finish into history; off: stop, the partial answer kept, interrupted).
 * Returns 1 if the client went away. */
static int wait_turn(api_t *a, chatbot_engine_t *e, int stateless)
{
    client_watch_t cw;
    int gone = 0;

    watch_init(&cw, a->r);
    while (chatbot_engine_active(e)) {
        struct curl_waitfd wfd;
        int w = chatbot_engine_wait_ms(e), poll_fd = cw.watching && cw.fd >= 0;
        int timeout = w < 0 || w > WATCH_MAX_SLEEP_MS ? WATCH_MAX_SLEEP_MS : w;

        memset(&wfd, 0, sizeof(wfd));
        wfd.fd = cw.fd;
        wfd.events = CURL_WAIT_POLLIN;
        chatbot_engine_poll(e, poll_fd ? &wfd : NULL, poll_fd ? 1 : 0, timeout);
        chatbot_engine_run(e);
        if (!chatbot_engine_active(e)) {
            break;
        }
        if (!gone && (cw.c->aborted || (poll_fd && wfd.revents) || (cw.watching && cw.h2))) {
            gone = watch_gone(&cw);
            if (gone) {
                cw.watching = 0;
                /* nothing more may be written on this connection */
                cw.c->keepalive = AP_CONN_CLOSE;
                ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, a->r, APLOGNO(10976)
                              "chatbot: API client gone mid-answer; %s",
                              stateless || !a->lim.continue_without_viewer
                                  ? "stopping the answer"
                                  : "finishing it into history");
                if (stateless || !a->lim.continue_without_viewer) {
                    chatbot_engine_stop(e, NULL, "client_gone");
                    break;
                }
            }
        }
        if (gone && chatbot_child_stopping()) {
            chatbot_engine_stop(e, NULL, "shutdown");
            break;
        }
    }
    return gone;
}

/* Runs one turn to completion and writes the answer object. conv_id NULL:
 * a stateless turn over hist (nothing stored). */
static int run_turn(api_t *a, chatbot_bot_t *bot, const char *conv_id,
                    const char *content, apr_size_t len, const chat_msg_t *hist,
                    apr_size_t nhist)
{
    chatbot_turn_cb_t cb;
    chatbot_engine_t *e;
    chatbot_turn_req_t req;
    collect_t *c = apr_pcalloc(a->r->pool, sizeof(*c));
    const char *err;
    char msg[512];
    apr_int64_t retry;

    if ((err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return send_error(a, err, rate_msg(a, retry), retry);
    }
    if (len > a->lim.max_message_bytes) {
        return send_error(a, CHAT_ERR_TOO_LARGE, "the message is larger than "
                          "ChatbotMaxMessageBytes", 0);
    }
    chat_buf_init(&c->answer);
    chat_buf_init(&c->thinking);
    apr_pool_cleanup_register(a->r->pool, c, collect_cleanup, apr_pool_cleanup_null);
    memset(&cb, 0, sizeof(cb));
    cb.on_delta = c_delta;
    cb.on_done = c_done;
    e = chatbot_engine_create(a->r, &a->lim, &a->id, &cb, c);
    if (!e) {
        return send_error(a, CHAT_ERR_INTERNAL, "cannot create a backend client", 0);
    }
    memset(&req, 0, sizeof(req));
    req.bot = bot;
    req.conv_id = conv_id;
    req.content = content;
    req.len = len;
    req.mode = CHATBOT_TURN_NEW;
    req.history = hist;
    req.nhistory = nhist;
    if ((err = chatbot_turn_start(e, &req, msg, sizeof(msg)))) {
        return send_error(a, err, msg, 0);
    }
    if (wait_turn(a, e, conv_id == NULL)) {
        /* nobody to answer; the access log shows the status */
        a->r->status = HTTP_REQUEST_TIME_OUT;
        a->r->connection->aborted = 1;
        return OK;
    }
    if (c->outcome == CHATBOT_OUT_FAILED) {
        /* counted by the engine when the turn ended */
        return send_error_counted(a, c->code ? c->code : CHAT_ERR_INTERNAL, c->msg, 0);
    }
    begin(a);
    if (a->legacy) {
        /* the old controller's {"success": true, "response": ...} */
        chat_jw_kbool(&a->jw, "success", 1);
        chat_jw_kstr(&a->jw, "bot_id", a->legacy_id);
        chat_jw_kstrn(&a->jw, "response", c->answer.data ? c->answer.data : "",
                      c->answer.len);
        chat_jw_kstr(&a->jw, "conversation_id", c->conv);
        chat_jw_kbool(&a->jw, "interrupted", c->outcome != CHATBOT_OUT_COMPLETE);
        return finish(a, 200);
    }
    chat_jw_kstr(&a->jw, "conversation_id", c->conv[0] ? c->conv : NULL);
    chat_jw_kstr(&a->jw, "bot_id", bot->name);
    chat_jw_kstrn(&a->jw, "response", c->answer.data ? c->answer.data : "", c->answer.len);
    chat_jw_kstrn(&a->jw, "content", c->answer.data ? c->answer.data : "", c->answer.len);
    if (c->thinking.len) {
        chat_jw_kstrn(&a->jw, "thinking", c->thinking.data, c->thinking.len);
    }
    chat_jw_kbool(&a->jw, "interrupted", c->outcome != CHATBOT_OUT_COMPLETE);
    chat_jw_key(&a->jw, "stats");
    chat_jw_obj_begin(&a->jw);
    chat_jw_kstr(&a->jw, "model", c->stats.model[0] ? c->stats.model : bot->model);
    chat_jw_kstr(&a->jw, "done_reason", c->stats.done_reason[0] ? c->stats.done_reason : NULL);
    chat_jw_kint(&a->jw, "tokens",
                 c->stats.completion_tokens >= 0 ? c->stats.completion_tokens : c->tokens);
    chat_jw_kdouble(&a->jw, "ttft_ms", c->ttft_ms);
    chat_jw_kdouble(&a->jw, "duration_ms", c->duration_ms);
    if (c->stats.tokens_per_sec > 0) {
        chat_jw_kdouble(&a->jw, "tokens_per_sec", c->stats.tokens_per_sec);
    }
    chat_jw_obj_end(&a->jw);
    return finish(a, 200);
}

/* ---- health --------------------------------------------------------------------- */

/* Probes the backends due for it (mod_chatbot_probe.c). */
static void refresh_health(api_t *a, int force)
{
    chatbot_probe_health(a->r->pool, a->sc, (long)a->lim.connect_timeout_ms, force);
}

static int route_health(api_t *a)
{
    chat_store_t *st = chatbot_store();
    chat_metrics_snapshot_t ms;
    chatbot_store_stats_t ss;
    int i, up = 0, store_up;

    refresh_health(a, 0);
    for (i = 0; st && i < a->sc->backends->nelts; i++) {
        chat_backend_info_t bi;
        chatbot_backend_t *be = APR_ARRAY_IDX(a->sc->backends, i, chatbot_backend_t *);
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK && bi.healthy > 0) {
            up++;
        }
    }
    /* a store on redis that does not answer: this host cannot serve chats */
    store_up = chatbot_store_ping(st) != 0;
    up = up && store_up;
    begin(a);
    chat_jw_kstr(&a->jw, "status", up ? "ok" : "unavailable");
    if (!store_up) {
        chat_jw_kstr(&a->jw, "error", CHAT_ERR_STORE_UNAVAILABLE);
    }
    if (!a->lim.show_details) {
        /* what a load balancer needs; the rest is for operators
         * (ChatbotShowDetails, docs/security.md) */
        return finish(a, up ? 200 : 503);
    }
    chat_jw_kstr(&a->jw, "server", CHATBOT_SERVER_ID);
    chat_jw_kbool(&a->jw, "demo", a->sc->demo_notice != NULL);
    chat_jw_key(&a->jw, "backends");
    chatbot_view_backends(&a->jw, a->sc, 1);
    if (st) {
        chat_metrics_snapshot(st, &ms);
        chat_jw_key(&a->jw, "store");
        chat_jw_obj_begin(&a->jw);
        chat_jw_kint(&a->jw, "conversations", ms.conversations);
        chat_jw_kint(&a->jw, "max_conversations", ms.max_conversations);
        chat_jw_kint(&a->jw, "history_bytes_used", (int64_t)ms.arena_used);
        chat_jw_kint(&a->jw, "history_bytes", (int64_t)ms.arena_size);
        chat_jw_kint(&a->jw, "evictions", ms.gauges[CHAT_G_EVICTIONS]);
        chat_jw_kstr(&a->jw, "provider", chat_store_provider_name(st));
        if (chatbot_store_remote_stats(st, &ss)) {
            chat_jw_kbool(&a->jw, "reachable", store_up);
            chat_jw_kint(&a->jw, "calls", (int64_t)ss.calls);
            chat_jw_kint(&a->jw, "errors", (int64_t)ss.errors);
            apr_uint64_t ok = 0;
            for (i = 0; i < 8; i++) {
                ok += ss.hist[i];
            }
            chat_jw_kint(&a->jw, "latency_avg_us", ok ? (int64_t)(ss.usec_total / ok) : 0);
            if (!store_up) {
                chat_jw_kstr(&a->jw, "detail", ss.last_error);
            }
        }
        chat_jw_obj_end(&a->jw);
        chat_jw_kint(&a->jw, "connections", ms.gauges[CHAT_G_CONNECTIONS]);
        chat_jw_kint(&a->jw, "generating", ms.gauges[CHAT_G_GENERATING]);
    }
    return finish(a, up ? 200 : 503);
}

/* ---- model lists ------------------------------------------------------------------ */

/* GET /api/models: the models of every backend (Ollama GET /api/tags,
 * OpenAI-compatible GET /v1/models), fetched in parallel with a short
 * timeout, for the bot picker. A backend that fails gets "error". */
static int route_models(api_t *a)
{
    chatbot_models_t *ml =
        chatbot_models_fetch(a->r->pool, a->sc->backends, (long)a->lim.connect_timeout_ms);

    if (!ml) {
        return send_error(a, CHAT_ERR_INTERNAL, "cannot create a backend client", 0);
    }
    begin(a);
    chat_jw_key(&a->jw, "backends");
    chatbot_models_write(&a->jw, a->r->pool, ml);
    return finish(a, 200);
}

/* ---- routes ------------------------------------------------------------------------- */

/* Splits the route into at most 4 segments. */
static int split(apr_pool_t *p, const char *route, const char **seg, int max)
{
    char *s = apr_pstrdup(p, route), *tok, *last;
    int n = 0;

    for (tok = apr_strtok(s, "/", &last); tok && n < max; tok = apr_strtok(NULL, "/", &last)) {
        seg[n++] = tok;
    }
    return tok ? max + 1 : n;
}

static int method_not_allowed(api_t *a, const char *allow)
{
    apr_table_setn(a->r->err_headers_out, "Allow", allow);
    chat_buf_reset(&a->out, 0);
    chat_jw_init(&a->jw, &a->out);
    chat_jw_obj_begin(&a->jw);
    chat_jw_kstr(&a->jw, "error", CHAT_ERR_BAD_REQUEST);
    chat_jw_kstr(&a->jw, "message", "method not allowed");
    chat_jw_kstr(&a->jw, "detail", "method not allowed");
    chat_jw_obj_end(&a->jw);
    chat_metrics_error(chatbot_store(), CHAT_ERR_BAD_REQUEST);
    return send_json(a, HTTP_METHOD_NOT_ALLOWED);
}

/* The methods route seg[0..n-1] takes ("GET, HEAD" or "POST"), NULL if
 * there is no such route. Must agree with the dispatch below. */
static const char *route_allow(const char **seg, int n)
{
    static const char *const get1[] = {"health", "models", "bots", "status", "sessions",
                                       "search", NULL};
    static const char *const conv_ops[] = {"select", "archive", "unarchive",
                                           "rename", "delete",  "stop",
                                           "task",   "version", NULL};
    int i;

    if (n == 1) {
        for (i = 0; get1[i]; i++) {
            if (!strcmp(seg[0], get1[i])) {
                return "GET, HEAD";
            }
        }
        return !strcmp(seg[0], "chat") || !strcmp(seg[0], "execute") ? "POST" : NULL;
    }
    if (n == 2) {
        if ((!strcmp(seg[0], "chat") && !strcmp(seg[1], "history")) ||
            (!strcmp(seg[0], "bots") &&
             (!strcmp(seg[1], "status") || !strcmp(seg[1], "declared")))) {
            return "GET, HEAD";
        }
        if ((!strcmp(seg[0], "bot") && !strcmp(seg[1], "launch")) ||
            (!strcmp(seg[0], "chat") && !strcmp(seg[1], "message")) ||
            (!strcmp(seg[0], "session") && !strcmp(seg[1], "create")) ||
            (!strcmp(seg[0], "export") && !strcmp(seg[1], "session"))) {
            return "POST";
        }
        return NULL;
    }
    if (n == 3 && !strcmp(seg[0], "bot")) {
        if (!strcmp(seg[1], "stop") || !strcmp(seg[2], "task")) {
            return "POST";
        }
        return !strcmp(seg[2], "status") ? "GET, HEAD" : NULL;
    }
    if (n == 3 && !strcmp(seg[0], "session") && !strcmp(seg[2], "settings")) {
        return "GET, HEAD, POST";
    }
    if (n == 3 && !strcmp(seg[0], "session")) {
        for (i = 0; conv_ops[i]; i++) {
            if (!strcmp(seg[2], conv_ops[i])) {
                return "POST";
            }
        }
    }
    return NULL;
}

/* 1 if seg[0..n-1] is a route of the port-8000 controller, whose replies
 * keep its shapes (mod_chatbot_compat.c). */
static int legacy_route(const char **seg, int n)
{
    if (!strcmp(seg[0], "bots")) {
        return n == 1 || (n == 2 && !strcmp(seg[1], "status"));
    }
    if (n == 2 && !strcmp(seg[0], "chat")) {
        return !strcmp(seg[1], "message");
    }
    if (!strcmp(seg[0], "bot")) {
        return (n == 2 && !strcmp(seg[1], "launch")) ||
               (n == 3 && (!strcmp(seg[1], "stop") || !strcmp(seg[2], "task")));
    }
    return 0;
}

/* NULL if title is a usable title, else why not: 1 to 128 bytes, not
 * blank (chat_title_is_blank), as on the WebSocket. */
static const char *title_error(const char *title)
{
    if (strlen(title) > CHAT_TITLE_MAX) {
        return "title is longer than 128 bytes";
    }
    return chat_title_is_blank(title) ? "title must not be empty or blank" : NULL;
}

static int session_reply(api_t *a, const chat_conv_info_t *ci, int status)
{
    begin(a);
    chat_jw_key(&a->jw, "session");
    chatbot_view_session(&a->jw, a->r->server, ci);
    chat_jw_kstr(&a->jw, "conversation_id", ci->id);
    chat_jw_kstr(&a->jw, "session_id", ci->id);
    chat_jw_kstr(&a->jw, "bot_id", ci->bot);
    return finish(a, status);
}

static int create_session(api_t *a)
{
    int bad = 0;
    const char *bot_id = jstr(a, "bot_id", &bad);
    const char *title = jstr(a, "title", &bad);
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    chat_status_t rc = CHAT_EINTERNAL;
    const char *err;
    apr_int64_t retry;

    if (!bot_id && !bad) {
        bot_id = jstr(a, "bot", &bad);
    }
    if (bad) {
        return send_error(a, CHAT_ERR_BAD_REQUEST, "bot_id and title must be strings", 0);
    }
    if (title && (err = title_error(title))) {
        return send_error(a, CHAT_ERR_BAD_REQUEST, err, 0);
    }
    bot = chatbot_bot_get(a->r->server, bot_id);
    if (!bot) {
        return send_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
    }
    /* creating takes a rate token, like a message: a loop of launches
     * must not be free (issue 14) */
    if ((err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return send_error(a, err, rate_msg(a, retry), retry);
    }
    rc = chat_store_conv_create(chatbot_store(), &a->id.owner, bot->name, title,
                                chatbot_random64(), chatbot_now_ms(), &ci);
    if (rc == CHAT_OK) {
        chat_store_user_bump(chatbot_store(), &a->id.owner);
    }
    else {
        const char *code = chatbot_store_err(rc);
        return send_error(a, code, chatbot_store_err_text(code),
                          rc == CHAT_ELIMIT
                              ? chat_store_create_retry_ms(chatbot_store(), &a->id.owner,
                                                           chatbot_now_ms())
                              : 0);
    }
    return session_reply(a, &ci, 201);
}

/* POST /api/session/{id}/version {"index": N}: makes message N the chosen
 * version of its siblings; answers the new active path as chat/history
 * does (its first page). */
static int version_op(api_t *a, const char *conv)
{
    json_object *v;
    chat_buf_t scratch;
    const char *e, *emsg = NULL;

    if (!a->body || !json_object_object_get_ex(a->body, "index", &v) ||
        !json_object_is_type(v, json_type_int)) {
        return send_error(a, CHAT_ERR_BAD_REQUEST,
                          "\"index\" (the index of a stored message) is required", 0);
    }
    e = chatbot_ver_select(chatbot_store(), &a->id, conv, json_object_get_int64(v),
                           &emsg);
    if (e) {
        return send_error(a, e, emsg, 0);
    }
    begin(a);
    chat_buf_init(&scratch);
    e = chatbot_view_history(&a->jw, &a->id, conv, CHAT_HISTORY_LIMIT_MAX, 0, &scratch);
    chat_buf_free(&scratch);
    if (e) {
        return send_error(a, e, "no such conversation", 0);
    }
    return finish(a, 200);
}

static int conv_flag_op(api_t *a, const char *conv, const char *op)
{
    chat_store_t *st = chatbot_store();
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc = CHAT_EINTERNAL;
    chat_conv_info_t ci;

    if (!st) {
        return send_error(a, CHAT_ERR_INTERNAL, "store unavailable", 0);
    }
    if (!strcmp(op, "archive")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, CHAT_CONV_ARCHIVED, 0, now);
    }
    else if (!strcmp(op, "unarchive")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, 0, CHAT_CONV_ARCHIVED, now);
    }
    else if (!strcmp(op, "stop")) {
        chat_store_gen_request_stop(st, &a->id.owner, conv);
        rc = chat_store_conv_flags(st, &a->id.owner, conv, CHAT_CONV_STOPPED, 0, now);
    }
    else if (!strcmp(op, "select")) {
        rc = chat_store_conv_flags(st, &a->id.owner, conv, 0, 0, now);
    }
    else if (!strcmp(op, "delete")) {
        chat_store_gen_request_stop(st, &a->id.owner, conv);
        rc = chat_store_conv_delete(st, &a->id.owner, conv);
    }
    else if (!strcmp(op, "rename")) {
        int bad = 0;
        const char *title = jstr(a, "title", &bad);
        if (!title || bad || title_error(title)) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              title && !bad ? title_error(title)
                                            : "title (a string of 1 to 128 bytes) is "
                                              "required",
                              0);
        }
        rc = chat_store_conv_rename(st, &a->id.owner, conv, title, now);
    }
    if (rc == CHAT_OK) {
        chat_store_user_bump(st, &a->id.owner);
        if (strcmp(op, "delete")) {
            rc = chat_store_conv_get(st, &a->id.owner, conv, &ci);
        }
    }
    if (rc == CHAT_EBUSY) {
        /* delete while another request generates: that answer has been
         * asked to stop */
        return send_error(a, CHAT_ERR_BUSY, "the session was generating an answer; it is "
                          "being stopped, delete again in a moment", 0);
    }
    if (rc != CHAT_OK) {
        return send_error(a, CHAT_ERR_NOT_FOUND, "no such session", 0);
    }
    if (!strcmp(op, "delete")) {
        begin(a);
        chat_jw_kstr(&a->jw, "status", "deleted");
        chat_jw_kstr(&a->jw, "conversation_id", conv);
        return finish(a, 200);
    }
    return session_reply(a, &ci, 200);
}

/* GET /api/session/{id}/settings: the conversation's settings; POST with
 * {"model","system","temperature","reset"} changes them first. */
static int route_settings(api_t *a, const char *conv)
{
    chat_conv_info_t ci;
    chatbot_bot_t *bot;
    chatbot_settings_t s;
    chat_status_t rc = chat_store_conv_get(chatbot_store(), &a->id.owner, conv, &ci);
    char msg[256];

    if (rc != CHAT_OK) {
        const char *code = chatbot_store_err(rc);
        return send_error(a, code, chatbot_store_err_text(code), 0);
    }
    bot = chatbot_bot_get(a->r->server, ci.bot);
    if (!bot) {
        return send_error(a, CHAT_ERR_NOT_FOUND, "the session's bot no longer exists", 0);
    }
    if (a->r->method_number == M_POST) {
        chatbot_settings_req_t req;
        const char *err = chatbot_settings_req_from_json(a->body, &req);
        if (err) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, err, 0);
        }
        err = chatbot_settings_change(a->r->pool, &a->lim, bot, &a->id.owner, conv, &req,
                                      msg, sizeof(msg));
        if (err) {
            return send_error(a, err, msg, 0);
        }
    }
    chatbot_settings_load(a->r->pool, &a->lim, &a->id.owner, conv, &s);
    begin(a);
    chat_jw_kstr(&a->jw, "conversation_id", conv);
    chatbot_settings_view(&a->jw, a->r->pool, &a->lim, bot, &s);
    return finish(a, 200);
}

int chatbot_exec_api(request_rec *r, const chatbot_ident_t *id, void *body,
                     const chatbot_limits_t *lim, chat_buf_t *out, int *status);

int chatbot_api_handler(request_rec *r, const char *route)
{
    api_t *a = apr_pcalloc(r->pool, sizeof(*a));
    const char *seg[5];
    const char *allow;
    int n, bad = 0;

    a->r = r;
    a->sc = chatbot_srv(r->server);
    chatbot_limits_get(r, &a->lim);
    chat_buf_init(&a->out);
    apr_pool_cleanup_register(r->pool, a, api_cleanup, apr_pool_cleanup_null);
    if (!chatbot_store()) {
        return send_error(a, CHAT_ERR_INTERNAL, "the chat store is not available", 0);
    }
    n = split(r->pool, route, seg, 4);
    if (n == 0 || n > 4 || !(allow = route_allow(seg, n))) {
        return send_error(a, CHAT_ERR_NOT_FOUND, "no such API route", 0);
    }
    if ((a->legacy = legacy_route(seg, n)) && n == 3 && !strcmp(seg[2], "task") &&
        strcmp(seg[1], "stop")) {
        a->legacy_id = seg[1];
    }
    /* The method, before anything else (no body read, no cookie set):
     * 405 with the route's own Allow. HEAD is a GET (r->header_only). */
    if (!strcmp(allow, "GET, HEAD, POST")
            ? r->method_number != M_GET && r->method_number != M_POST
            : r->method_number != (strcmp(allow, "POST") ? M_GET : M_POST)) {
        return method_not_allowed(a, allow);
    }
    /* Cross-site request forgery: a browser sends the cookie (same-site
     * pages) or cached HTTP credentials (any page) with a POST another
     * site's page makes. Browsers always send Origin on a POST, so a POST
     * from an origin the WebSocket would refuse (ChatbotAllowedOrigins) is
     * refused too; clients without Origin (scripts, curl) are not browsers. */
    if (r->method_number == M_POST &&
        !chatbot_origin_allowed(r, apr_table_get(r->headers_in, "Origin"))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(10975)
                      "chatbot: API POST from origin %s refused (host %s); see "
                      "ChatbotAllowedOrigins", apr_table_get(r->headers_in, "Origin"),
                      apr_table_get(r->headers_in, "Host"));
        return send_error(a, CHAT_ERR_FORBIDDEN, "cross-origin request refused "
                          "(ChatbotAllowedOrigins)", 0);
    }
    /* Health first: no identity needed, no cookie set (load balancers). */
    if (n == 1 && !strcmp(seg[0], "health")) {
        if (r->method_number != M_GET) {
            return method_not_allowed(a, "GET, HEAD");
        }
        return route_health(a);
    }
    if (n == 1 && !strcmp(seg[0], "models")) {
        if (r->method_number != M_GET) {
            return method_not_allowed(a, "GET, HEAD");
        }
        return route_models(a);
    }
    /* Everything below reads or writes conversations: with the store on
     * redis unreachable, say so (503) rather than show an empty history.
     * No ping first (a round trip per request): a store call that fails
     * during the route turns its answer into the 503 (send_json). */
    a->store_fail0 = chatbot_store_failures();
    a->store_watch = 1;
    /* Reading never creates state: a GET without a valid cookie reads as an
     * identity that owns nothing, and gets no cookie. */
    if ((r->method_number == M_GET ? chatbot_ident_find(r, &a->id)
                                   : chatbot_ident_get(r, &a->id)) != APR_SUCCESS) {
        return send_error(a, CHAT_ERR_INTERNAL, "cannot create a session id", 0);
    }

    if (r->method_number == M_POST) {
        int rc = read_body(a, 0);
        if (rc != OK || r->status >= 400) {
            return rc;
        }
    }

    /* GET /api/bots, GET /api/bots/status: the old controller's running
     * bots, as an object keyed by bot id and as the status board's list */
    if (a->legacy && !strcmp(seg[0], "bots")) {
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        refresh_health(a, 0);
        chat_buf_reset(&a->out, 0);
        chat_jw_init(&a->jw, &a->out);
        chatbot_compat_bots(&a->jw, r, &a->id, n == 2);
        if (chat_jw_status(&a->jw) != CHAT_OK) {
            return send_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
        }
        return send_json(a, 200);
    }
    /* GET /api/bots/declared: the bots of the configuration */
    if (n == 2 && !strcmp(seg[0], "bots") && !strcmp(seg[1], "declared")) {
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        refresh_health(a, 0);
        begin(a);
        chat_jw_key(&a->jw, "bots");
        chatbot_view_bots(&a->jw, a->sc);
        chat_jw_kstr(&a->jw, "default", a->sc->default_bot_p->name);
        return finish(a, 200);
    }
    /* GET /api/status: the status board */
    if (n == 1 && !strcmp(seg[0], "status")) {
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        begin(a);
        chatbot_view_status(&a->jw, a->sc, a->lim.show_details);
        return finish(a, 200);
    }
    /* GET /api/sessions[?bot_id=&archived=1] */
    if (n == 1 && !strcmp(seg[0], "sessions")) {
        const char *arch = query_arg(a, "archived");
        const char *bot_id = query_arg(a, "bot_id");
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        if (a->query_bad) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, "a query parameter is repeated or "
                              "badly encoded", 0);
        }
        begin(a);
        chat_jw_key(&a->jw, "sessions");
        chatbot_view_sessions(&a->jw, r, &a->id, bot_id,
                              arch && (!strcmp(arch, "1") || !strcmp(arch, "true")) ? 1 : 0);
        return finish(a, 200);
    }
    /* GET /api/search?q=&bot_id=&limit=: the caller's own conversations */
    if (n == 1 && !strcmp(seg[0], "search")) {
        apr_int64_t limit;
        const char *e, *emsg;
        const char *q = query_arg(a, "q");
        const char *bot_id = query_arg(a, "bot_id");
        chat_buf_t scratch;
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        if (!query_int(a, "limit", 0, 1000000, &limit) || a->query_bad) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, "a query parameter is repeated, "
                              "badly encoded or not a number", 0);
        }
        begin(a);
        chat_buf_init(&scratch);
        e = chatbot_view_search(&a->jw, r, &a->id, q, bot_id, limit, &scratch, &emsg);
        chat_buf_free(&scratch);
        if (e) {
            return send_error(a, e, emsg ? emsg : "search failed", 0);
        }
        return finish(a, 200);
    }
    /* POST /api/session/create: a new session of a declared bot */
    if (n == 2 && !strcmp(seg[0], "session") && !strcmp(seg[1], "create")) {
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        return create_session(a);
    }
    /* POST /api/bot/launch {"bot_id","bot_type"}, POST /api/bot/stop/{id}:
     * the old controller's bots (an id names a session) */
    if (a->legacy && !strcmp(seg[0], "bot") &&
        !strcmp(seg[1], n == 2 ? "launch" : "stop")) {
        const char *name = n == 2 ? jstr(a, "bot_id", &bad) : seg[2];
        const char *type = n == 2 ? jstr(a, "bot_type", &bad) : NULL;
        const char *e, *emsg = NULL;
        apr_int64_t retry;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        if (bad) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              "bot_id and bot_type must be strings", 0);
        }
        /* a launch takes a rate token, like create (issue 14); a request
         * refused for its id (400) does not */
        if (n == 2 && name && chat_compat_id_valid(name, strlen(name)) &&
            (e = chatbot_rate_check(&a->id, &a->lim, &retry))) {
            return send_error(a, e, rate_msg(a, retry), retry);
        }
        begin(a);
        e = n == 2 ? chatbot_compat_launch(&a->jw, r, &a->id, name, type, &emsg)
                   : chatbot_compat_stop(&a->jw, r, &a->id, name, &emsg);
        return e ? send_error(a, e, emsg, 0) : finish(a, 200);
    }
    /* GET /api/bot/{id}/status: the session an id (old or conversation) names */
    if (n == 3 && !strcmp(seg[0], "bot") && !strcmp(seg[2], "status")) {
        chat_conv_info_t ci;
        const char *e;
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        e = chatbot_compat_find(r, &a->id, seg[1], &ci);
        if (e) {
            return send_error(a, e, "no such session", 0);
        }
        return session_reply(a, &ci, 200);
    }
    /* POST /api/bot/{id}/task (the old controller's: {"command"}, a running
     * bot) and POST /api/session/{id}/task: one turn, the whole answer */
    if (n == 3 && (!strcmp(seg[0], "bot") || !strcmp(seg[0], "session")) &&
        !strcmp(seg[2], "task")) {
        chat_conv_info_t ci;
        const char *e, *msg, *emsg = "no such session";
        chatbot_bot_t *bot;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        msg = jstr(a, "message", &bad);
        if (!msg && !bad) msg = jstr(a, "content", &bad);
        if (!msg && !bad) msg = jstr(a, "task", &bad);
        if (!msg && !bad) msg = jstr(a, "command", &bad);
        if (bad || !msg || !*msg) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              a->legacy ? "a non-empty string \"command\" is required"
                                        : "a non-empty string \"message\" is required",
                              0);
        }
        e = a->legacy ? chatbot_compat_running(r, &a->id, seg[1], &ci, &emsg)
                      : chatbot_conv_resolve(r, &a->id, NULL, seg[1], 0, &ci);
        if (e) {
            return send_error(a, e, emsg, 0);
        }
        bot = chatbot_bot_get(r->server, ci.bot);
        if (!bot) {
            return send_error(a, CHAT_ERR_NOT_FOUND, "the session's bot no longer exists", 0);
        }
        return run_turn(a, bot, ci.id, msg, strlen(msg), NULL, 0);
    }
    /* GET|POST /api/session/{id}/settings */
    if (n == 3 && !strcmp(seg[0], "session") && !strcmp(seg[2], "settings")) {
        return route_settings(a, seg[1]);
    }
    /* POST /api/session/{id}/version {"index": N}: choose a version */
    if (n == 3 && !strcmp(seg[0], "session") && !strcmp(seg[2], "version")) {
        if (r->method_number != M_POST)
            return method_not_allowed(a, "POST");
        return version_op(a, seg[1]);
    }
    /* POST /api/session/{id}/select|archive|unarchive|rename|delete|stop */
    if (n == 3 && !strcmp(seg[0], "session")) {
        if (strcmp(seg[2], "select") && strcmp(seg[2], "archive") &&
            strcmp(seg[2], "unarchive") && strcmp(seg[2], "rename") &&
            strcmp(seg[2], "delete") && strcmp(seg[2], "stop")) {
            return send_error(a, CHAT_ERR_NOT_FOUND, "no such API route", 0);
        }
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        return conv_flag_op(a, seg[1], seg[2]);
    }
    /* GET /api/chat/history?bot_id=&conversation_id=&limit=&offset= */
    if (n == 2 && !strcmp(seg[0], "chat") && !strcmp(seg[1], "history")) {
        apr_int64_t limit, offset;
        chat_conv_info_t ci;
        chat_buf_t scratch;
        chatbot_bot_t *bot = NULL;
        const char *bot_id = query_arg(a, "bot_id");
        const char *conv = query_arg(a, "conversation_id");
        const char *sid = query_arg(a, "session_id");
        const char *e;
        if (r->method_number != M_GET) return method_not_allowed(a, "GET, HEAD");
        if (a->query_bad) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, "a query parameter is repeated or "
                              "badly encoded", 0);
        }
        const char *compat_id = "";
        chat_conv_info_t fi;
        if (!conv) conv = sid;
        if (!query_int(a, "limit", 50, CHAT_HISTORY_LIMIT_MAX, &limit) ||
            !query_int(a, "offset", 0, OFFSET_MAX, &offset)) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              a->query_bad
                                  ? "a query parameter is repeated or badly encoded"
                                  : "limit must be an integer from 0 to 1000 and "
                                    "offset one from 0 to 1000000",
                              0);
        }
        /* bot_id: an old-style bot id (a session, see mod_chatbot_compat.c),
         * else a declared bot (its latest session) */
        if (!conv && bot_id && !chatbot_compat_find(r, &a->id, bot_id, &fi)) {
            conv = apr_pstrdup(r->pool, fi.id);
            compat_id = bot_id;
        }
        else if (!conv && bot_id && !(bot = chatbot_bot_get(r->server, bot_id))) {
            return send_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
        }
        /* without conversation_id: the bot's latest session */
        if (!bot) {
            bot = a->sc->default_bot_p;
        }
        e = chatbot_conv_resolve(r, &a->id, bot, conv, 0, &ci);
        if (e) {
            if (!conv && !strcmp(e, CHAT_ERR_NOT_FOUND)) {
                /* no conversation yet: an empty history */
                begin(a);
                chat_jw_kstr(&a->jw, "conversation_id", NULL);
                chat_jw_kstr(&a->jw, "bot_id", bot->name);
                chat_jw_kint(&a->jw, "total", 0);
                chat_jw_kint(&a->jw, "offset", offset);
                chat_jw_kint(&a->jw, "limit", limit);
                chat_jw_kbool(&a->jw, "has_more", 0);
                chat_jw_key(&a->jw, "messages");
                chat_jw_arr_begin(&a->jw);
                chat_jw_arr_end(&a->jw);
                return finish(a, 200);
            }
            return send_error(a, e, "no such conversation", 0);
        }
        begin(a);
        chat_buf_init(&scratch);
        e = chatbot_view_history_compat(&a->jw, &a->id, ci.id, limit, offset, &scratch,
                                        compat_id, &ci);
        chat_buf_free(&scratch);
        if (e) {
            return send_error(a, e, "no such conversation", 0);
        }
        return finish(a, 200);
    }
    /* POST /api/chat/message {"role","content","bot_id"|"session_id"}: stores
     * a message (the old controller's history API) */
    if (a->legacy && !strcmp(seg[0], "chat")) {
        const char *role, *content, *bid, *sid, *e, *emsg = NULL;
        apr_int64_t retry;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        role = jstr(a, "role", &bad);
        content = jstr(a, "content", &bad);
        bid = jstr(a, "bot_id", &bad);
        sid = jstr(a, "session_id", &bad);
        if (!sid && !bad) sid = jstr(a, "conversation_id", &bad);
        if (bad || !role || !content || !*content || (!bid && !sid)) {
            return send_error(a, CHAT_ERR_BAD_REQUEST, "role, a non-empty content and "
                              "bot_id or session_id are required, as strings", 0);
        }
        if (strcmp(role, "user") && strcmp(role, "assistant")) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              "role must be \"user\" or \"assistant\"", 0);
        }
        if (strlen(content) > a->lim.max_message_bytes) {
            return send_error(a, CHAT_ERR_TOO_LARGE, "the message is larger than "
                              "ChatbotMaxMessageBytes", 0);
        }
        /* a token, as a message takes (an invalid bot_id is a 400 first) */
        if ((sid || chat_compat_id_valid(bid, strlen(bid))) &&
            (e = chatbot_rate_check(&a->id, &a->lim, &retry))) {
            return send_error(a, e, rate_msg(a, retry), retry);
        }
        begin(a);
        e = chatbot_compat_store_message(&a->jw, r, &a->id, role, content,
                                         strlen(content), bid, sid, &emsg);
        return e ? send_error(a, e, emsg, 0) : finish(a, 200);
    }
    /* POST /api/chat {"message", "history":[{role,content}], "bot_id"} (stateless) */
    if (n == 1 && !strcmp(seg[0], "chat")) {
        json_object *hist = NULL;
        const char *msg, *bot_id;
        chatbot_bot_t *bot;
        chat_msg_t *msgs;
        size_t i, hn = 0;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        msg = jstr(a, "message", &bad);
        if (!msg && !bad) msg = jstr(a, "content", &bad);
        bot_id = jstr(a, "bot_id", &bad);
        if (bad || !msg || !*msg) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              "a non-empty string \"message\" is required", 0);
        }
        if (json_object_object_get_ex(a->body, "history", &hist) &&
            !json_object_is_type(hist, json_type_null)) {
            if (!json_object_is_type(hist, json_type_array)) {
                return send_error(a, CHAT_ERR_BAD_REQUEST, "history must be an array", 0);
            }
            hn = json_object_array_length(hist);
            if (hn > 200) {
                return send_error(a, CHAT_ERR_BAD_REQUEST,
                                  "history has more than 200 messages", 0);
            }
            for (i = 0; i < hn; i++) {
                json_object *m = json_object_array_get_idx(hist, i), *role, *content;
                const char *rs;
                if (!json_object_is_type(m, json_type_object) ||
                    !json_object_object_get_ex(m, "role", &role) ||
                    !json_object_object_get_ex(m, "content", &content) ||
                    !json_object_is_type(role, json_type_string) ||
                    !json_object_is_type(content, json_type_string)) {
                    return send_error(a, CHAT_ERR_BAD_REQUEST,
                                      "history items must be {\"role\": string, "
                                      "\"content\": string}", 0);
                }
                rs = json_object_get_string(role);
                if (strlen(json_object_get_string(content)) !=
                    (size_t)json_object_get_string_len(content)) {
                    return send_error(a, CHAT_ERR_BAD_REQUEST,
                                      "history contents must not contain U+0000", 0);
                }
                if (strcmp(rs, "user") && strcmp(rs, "assistant")) {
                    return send_error(a, CHAT_ERR_BAD_REQUEST,
                                      "history roles must be \"user\" or \"assistant\"", 0);
                }
            }
        }
        bot = chatbot_bot_get(r->server, bot_id);
        if (!bot) {
            return send_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
        }
        /* Stateless: the given history goes to the model as context and
         * nothing is stored (no conversation is created, none can leak). */
        msgs = apr_palloc(r->pool, sizeof(chat_msg_t) * (hn ? hn : 1));
        for (i = 0; i < hn; i++) {
            json_object *m = json_object_array_get_idx(hist, i), *role, *content;
            json_object_object_get_ex(m, "role", &role);
            json_object_object_get_ex(m, "content", &content);
            msgs[i].role = strcmp(json_object_get_string(role), "user") ? CHAT_ROLE_ASSISTANT
                                                                        : CHAT_ROLE_USER;
            msgs[i].content = json_object_get_string(content);
            msgs[i].len = (size_t)json_object_get_string_len(content);
        }
        return run_turn(a, bot, NULL, msg, strlen(msg), msgs, hn);
    }
    /* POST /api/export/session {"conversation_id","format":"markdown"|"json"} */
    if (n == 2 && !strcmp(seg[0], "export") && !strcmp(seg[1], "session")) {
        const char *conv, *format, *fname = NULL, *e;
        chat_buf_t out;
        int json;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        conv = jstr(a, "conversation_id", &bad);
        if (!conv && !bad) conv = jstr(a, "session_id", &bad);
        format = jstr(a, "format", &bad);
        if (bad || !conv) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              "conversation_id (string) is required", 0);
        }
        if (format && strcmp(format, "markdown") && strcmp(format, "json") &&
            strcmp(format, "md")) {
            return send_error(a, CHAT_ERR_BAD_REQUEST,
                              "format must be \"markdown\" or \"json\"", 0);
        }
        json = format && !strcmp(format, "json");
        chat_buf_init(&out);
        e = chatbot_view_export(r, &a->id, conv, json, &out, &fname);
        if (e) {
            chat_buf_free(&out);
            return send_error(a, e, "no such conversation", 0);
        }
        ap_set_content_type(r, json ? "application/json; charset=utf-8"
                                    : "text/markdown; charset=utf-8");
        apr_table_setn(r->headers_out, "Content-Disposition",
                       apr_psprintf(r->pool, "attachment; filename=\"%s\"", fname));
        set_nosniff(r);
        apr_table_setn(r->headers_out, "Cache-Control", "no-store");
        ap_set_content_length(r, (apr_off_t)out.len);
        if (!r->header_only) {
            ap_rwrite(out.data ? out.data : "", (int)out.len, r);
        }
        chat_buf_free(&out);
        return OK;
    }
    /* POST /api/execute {"command","args":[...],"bot_id","conversation_id"} */
    if (n == 1 && !strcmp(seg[0], "execute")) {
        int status = 200;
        apr_int64_t retry;
        const char *e;
        if (r->method_number != M_POST) return method_not_allowed(a, "POST");
        if ((e = chatbot_rate_check(&a->id, &a->lim, &retry))) {
            return send_error(a, e, rate_msg(a, retry), retry);
        }
        chat_buf_reset(&a->out, 0);
        chatbot_exec_api(r, &a->id, a->body, &a->lim, &a->out, &status);
        return send_json(a, status);
    }
    return send_error(a, CHAT_ERR_NOT_FOUND, "no such API route", 0);
}
