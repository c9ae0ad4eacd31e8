/* mod_chatbot_api_turn.c - the REST API's blocking chat turn: POST /api/chat
 * (stateless) and the task routes run one turn to completion and answer it
 * whole, watching the client meanwhile.
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_api.h"
#include "mod_chatbot_http.h"

/* Retry-After of a turn refused for want of a worker. */
#define SERVER_BUSY_RETRY_MS 5000

/* ---- turn collection (blocking routes) ----------------------------------------- */

typedef struct {
    int done;
    chatbot_outcome_t outcome;
    const char *code;
    char msg[512];
    chat_buf_t answer;
    chat_buf_t thinking;
    chat_stats_t stats;
    char model[CHAT_SETTINGS_MODEL_MAX + 1]; /* the one the turn asked for */
    double ttft_ms, duration_ms;
    int tokens;
    uint32_t index;
    char conv[CHAT_CONV_ID_LEN + 1];
} collect_t;

static void collect_delta(void *baton, chatbot_turn_t *t, int thinking, const char *text,
                          size_t len)
{
    collect_t *result = baton;

    if (thinking) {
        chat_buf_append(&result->thinking, text, len);
    }
}

static void collect_done(void *baton, chatbot_turn_t *t)
{
    collect_t *result = baton;

    result->done = 1;
    result->outcome = t->outcome;
    result->code = t->err_code;
    apr_cpystrn(result->msg, t->err_msg, sizeof(result->msg));
    chat_buf_reset(&result->answer, 0);
    chat_buf_append(&result->answer, t->answer.data ? t->answer.data : "", t->answer.len);
    result->stats = t->stats;
    apr_cpystrn(result->model, t->model ? t->model : "", sizeof(result->model));
    result->ttft_ms = t->ttft_ms;
    result->duration_ms = t->duration_ms;
    result->tokens = t->tokens;
    result->index = t->answer_index;
    apr_cpystrn(result->conv, t->conv_id, sizeof(result->conv));
}

static apr_status_t collect_cleanup(void *data)
{
    collect_t *result = data;

    chat_buf_free(&result->answer);
    chat_buf_free(&result->thinking);
    return APR_SUCCESS;
}

/* ---- the client of a blocking turn ---------------------------------------------- */

#define WATCH_MAX_SLEEP_MS 250

typedef struct {
    conn_rec *c;
    int fd;       /* client descriptor to poll for input/hang-up, -1 if none */
    int watching; /* 0 once gone, or once it has sent more (pipelining) */
    int h2;
} client_watch_t;

static void watch_init(client_watch_t *cw, request_rec *r)
{
    conn_rec *c = r->connection;

    memset(cw, 0, sizeof(*cw));
    cw->c = c;
    cw->watching = 1;
    cw->h2 = c->master != NULL;
    /* over HTTP/2 the descriptor only says "input": c->aborted tells */
    cw->fd = chatbot_conn_pollfd(c, r->pool);
}

/* 1 if the client is gone: the connection was aborted, or (HTTP/1.x) a
 * non-blocking peek through the connection's input filters, as httpd's own
 * pipelining check does, finds the end of the stream or an error (a FIN,
 * a reset, a TLS close_notify). Data (a pipelined next request) means the
 * client is there; it is left for httpd and the descriptor no longer
 * polled (it would stay readable). The WebSocket reads instead of peeking
 * (mod_chatbot_ws_io.c): every byte after its 101 is its own, while bytes
 * after this request belong to httpd's next one. */
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
    rv = ap_get_brigade(cw->c->input_filters, bb, AP_MODE_SPECULATIVE, APR_NONBLOCK_READ,
                        1);
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
        chatbot_http_waitfd_t wfd;
        int engine_ms = chatbot_engine_wait_ms(e), poll_fd = cw.watching && cw.fd >= 0;
        int timeout = engine_ms < 0 || engine_ms > WATCH_MAX_SLEEP_MS ? WATCH_MAX_SLEEP_MS
                                                                      : engine_ms;

        memset(&wfd, 0, sizeof(wfd));
        wfd.fd = cw.fd;
        wfd.events = CHATBOT_HTTP_POLLIN;
        chatbot_engine_poll(e, poll_fd ? &wfd : NULL, poll_fd ? 1 : 0, timeout);
        chatbot_engine_run(e);
        if (!chatbot_engine_active(e)) {
            break;
        }
        if (!gone &&
            (cw.c->aborted || (poll_fd && wfd.revents) || (cw.watching && cw.h2))) {
            gone = watch_gone(&cw);
            if (gone) {
                cw.watching = 0;
                /* nothing more may be written on this connection */
                cw.c->keepalive = AP_CONN_CLOSE;
                ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, a->r,
                              APLOGNO(10976) "chatbot: API client gone mid-answer; %s",
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
    collect_t *result = apr_pcalloc(a->r->pool, sizeof(*result));
    const char *err;
    char msg[512];
    apr_int64_t retry;

    if ((err = chatbot_rate_check(&a->id, &a->lim, &retry))) {
        return chatbot_api_error(a, err, chatbot_api_rate_msg(a, retry), retry);
    }
    if (len > a->lim.max_message_bytes) {
        return chatbot_api_error(a, CHAT_ERR_TOO_LARGE,
                                 "the message is larger than ChatbotMaxMessageBytes", 0);
    }
    if (!chatbot_workers_take_request(a->r)) {
        /* the rest of the threads are for the site's other requests */
        return chatbot_api_error(a, CHAT_ERR_SERVER_BUSY,
                                 "every worker this server gives to answers is busy "
                                 "(ChatbotMaxWorkers, ChatbotMaxAnswersPerIP); "
                                 "retry in a moment",
                                 SERVER_BUSY_RETRY_MS);
    }
    chat_buf_init(&result->answer);
    chat_buf_init(&result->thinking);
    apr_pool_cleanup_register(a->r->pool, result, collect_cleanup, apr_pool_cleanup_null);
    memset(&cb, 0, sizeof(cb));
    cb.on_delta = collect_delta;
    cb.on_done = collect_done;
    e = chatbot_engine_create(a->r, &a->lim, &a->id, &cb, result);
    if (!e) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "cannot create a backend client",
                                 0);
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
        return chatbot_api_error(a, err, msg, 0);
    }
    if (wait_turn(a, e, conv_id == NULL)) {
        /* nobody to answer; the access log shows the status */
        a->r->status = HTTP_REQUEST_TIME_OUT;
        a->r->connection->aborted = 1;
        return OK;
    }
    if (result->outcome == CHATBOT_OUT_FAILED) {
        /* counted by the engine when the turn ended */
        return chatbot_api_error_counted(
            a, result->code ? result->code : CHAT_ERR_INTERNAL, result->msg, 0);
    }
    chatbot_api_begin(a);
    if (a->legacy) {
        /* the old controller's {"success": true, "response": ...} */
        chat_jw_kbool(&a->jw, "success", 1);
        chat_jw_kstr(&a->jw, "bot_id", a->legacy_id);
        chat_jw_kstrn(&a->jw, "response", result->answer.data ? result->answer.data : "",
                      result->answer.len);
        chat_jw_kstr(&a->jw, "conversation_id", result->conv);
        chat_jw_kbool(&a->jw, "interrupted", result->outcome != CHATBOT_OUT_COMPLETE);
        return chatbot_api_finish(a, 200);
    }
    chat_jw_kstr(&a->jw, "conversation_id", result->conv[0] ? result->conv : NULL);
    chat_jw_kstr(&a->jw, "bot_id", bot->name);
    chat_jw_kstrn(&a->jw, "response", result->answer.data ? result->answer.data : "",
                  result->answer.len);
    chat_jw_kstrn(&a->jw, "content", result->answer.data ? result->answer.data : "",
                  result->answer.len);
    if (result->thinking.len) {
        chat_jw_kstrn(&a->jw, "thinking", result->thinking.data, result->thinking.len);
    }
    chat_jw_kbool(&a->jw, "interrupted", result->outcome != CHATBOT_OUT_COMPLETE);
    chat_jw_key(&a->jw, "stats");
    chat_jw_obj_begin(&a->jw);
    chat_jw_kstr(&a->jw, "model",
                 result->stats.model[0] ? result->stats.model
                 : result->model[0]     ? result->model
                                        : bot->model);
    chat_jw_kstr(&a->jw, "done_reason",
                 result->stats.done_reason[0] ? result->stats.done_reason : NULL);
    chat_jw_kint(&a->jw, "tokens",
                 result->stats.completion_tokens >= 0 ? result->stats.completion_tokens
                                                      : result->tokens);
    chat_jw_kdouble(&a->jw, "ttft_ms", result->ttft_ms);
    chat_jw_kdouble(&a->jw, "duration_ms", result->duration_ms);
    if (result->stats.tokens_per_sec > 0) {
        chat_jw_kdouble(&a->jw, "tokens_per_sec", result->stats.tokens_per_sec);
    }
    chat_jw_obj_end(&a->jw);
    return chatbot_api_finish(a, 200);
}

/* ---- routes ---------------------------------------------------------------------- */

/* POST /api/bot/{id}/task (the old controller's: {"command"}, a running
 * bot) and POST /api/session/{id}/task: one turn, the whole answer */
int chatbot_api_task(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    chat_conv_info_t ci;
    const char *err, *msg, *emsg = "no such session";
    chatbot_bot_t *bot;
    int bad = 0;

    msg = chatbot_api_jstr(a, "message", &bad);
    if (!msg && !bad) {
        msg = chatbot_api_jstr(a, "content", &bad);
    }
    if (!msg && !bad) {
        msg = chatbot_api_jstr(a, "task", &bad);
    }
    if (!msg && !bad) {
        msg = chatbot_api_jstr(a, "command", &bad);
    }
    if (bad || !msg || !*msg) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 a->legacy ? "a non-empty string \"command\" is required"
                                           : "a non-empty string \"message\" is required",
                                 0);
    }
    err = a->legacy ? chatbot_compat_running(r, &a->id, seg[1], &ci, &emsg)
                    : chatbot_conv_resolve(r, &a->id, NULL, seg[1], 0, &ci);
    if (err) {
        return chatbot_api_error(a, err, emsg, 0);
    }
    bot = chatbot_bot_get(r->server, ci.bot);
    if (!bot) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND,
                                 "the session's bot no longer exists", 0);
    }
    return run_turn(a, bot, ci.id, msg, strlen(msg), NULL, 0);
}

/* POST /api/chat {"message", "history":[{role,content}], "bot_id"} (stateless) */
int chatbot_api_chat(api_t *a, const char *const *seg)
{
    request_rec *r = a->r;
    json_object *hist = NULL;
    const char *msg, *bot_id;
    chatbot_bot_t *bot;
    chat_msg_t *msgs;
    size_t i, hn = 0;
    int bad = 0;

    msg = chatbot_api_jstr(a, "message", &bad);
    if (!msg && !bad) {
        msg = chatbot_api_jstr(a, "content", &bad);
    }
    bot_id = chatbot_api_jstr(a, "bot_id", &bad);
    if (bad || !msg || !*msg) {
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "a non-empty string \"message\" is required", 0);
    }
    if (json_object_object_get_ex(a->body, "history", &hist) &&
        !json_object_is_type(hist, json_type_null)) {
        if (!json_object_is_type(hist, json_type_array)) {
            return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST, "history must be an array",
                                     0);
        }
        hn = json_object_array_length(hist);
        if (hn > 200) {
            return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
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
                return chatbot_api_error(
                    a, CHAT_ERR_BAD_REQUEST,
                    "history items must be {\"role\": string, \"content\": string}", 0);
            }
            rs = json_object_get_string(role);
            if (strlen(json_object_get_string(content)) !=
                (size_t)json_object_get_string_len(content)) {
                return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                         "history contents must not contain U+0000", 0);
            }
            if (strcmp(rs, "user") && strcmp(rs, "assistant")) {
                return chatbot_api_error(
                    a, CHAT_ERR_BAD_REQUEST,
                    "history roles must be \"user\" or \"assistant\"", 0);
            }
        }
    }
    bot = chatbot_bot_get(r->server, bot_id);
    if (!bot) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND, "unknown bot", 0);
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
