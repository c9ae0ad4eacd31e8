/* mod_chatbot_request.c - a turn's backend request: the request body, the
 * streamed reply (parsed, handed to the driver, written into history as it
 * comes) and what its end means (complete, an error, or a failover).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot_engine.h"

#define ERRBODY_MAX 8192
#define MAX_LINE (1024 * 1024)

/* ---- the backend request --------------------------------------------------------- */

static int on_event(void *baton, const chat_event_t *ev)
{
    chatbot_turn_priv_t *t = baton;
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    apr_uint64_t now;

    switch (ev->type) {
    case CHAT_EV_CONTENT:
    case CHAT_EV_THINKING:
        now = chatbot_now_ms();
        if (!t->t_first) {
            t->t_first = now;
            p->ttft_ms = (double)(now - t->t_sent);
            /* the backend works: a half-open breaker closes now, not at the
             * end of a long answer */
            chatbot_turn_breaker(t, 1);
            if (t->loading_sent && e->cb.on_status) {
                e->cb.on_status(e->baton, p, "generating", 0);
            }
        }
        t->t_last = now;
        if (ev->type == CHAT_EV_THINKING) {
            if (e->cb.on_delta) {
                e->cb.on_delta(e->baton, p, 1, ev->text, ev->len);
            }
            return 0;
        }
        p->tokens++;
        /* The store's own limit, checked here so that a token it would
         * refuse never reaches the client (a stateless answer obeys it too). */
        if (p->answer.len + ev->len > e->sc->layout.max_message_bytes) {
            t->abort_code = CHAT_ERR_TOO_LARGE;
            apr_snprintf(t->abort_msg, sizeof(t->abort_msg),
                         "the answer exceeded ChatbotMaxAnswerBytes and was cut");
            return 1;
        }
        if (t->stateless) {
            p->has_answer = 1;
        }
        chat_buf_append(&p->answer, ev->text, ev->len);
        if (e->cb.on_delta) {
            e->cb.on_delta(e->baton, p, 0, ev->text, ev->len);
        }
        return 0;
    case CHAT_EV_DONE:
        if (ev->stats) {
            p->stats = *ev->stats;
        }
        return 0;
    case CHAT_EV_ERROR:
        t->backend_error = 1;
        apr_cpystrn(t->backend_msg, ev->text ? ev->text : "", sizeof(t->backend_msg));
        return 0;
    }
    return 0;
}

/* With the store in another process (redis), an answer's pieces are
 * written together: at most every STORE_COALESCE_MS or STORE_COALESCE_BYTES,
 * and all of it when the turn ends. */
#define STORE_COALESCE_MS 20
#define STORE_COALESCE_BYTES 4096
#define STORE_NOW_BYTES 16384 /* stored at once, not at the end of the run */

/* Writes the part of the answer not yet in the store, under one lock for
 * everything a read from the backend brought (a lock per token made the
 * global mutex the bottleneck); all: everything now (the turn ends).
 * Returns 0, or -1 with abort_code set. */
int chatbot_turn_flush(chatbot_turn_priv_t *t, int all)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();
    apr_size_t n = p->answer.len - t->stored;
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc;

    if (!n || !st || t->stateless) {
        return 0;
    }
    if (t->abort_code && !strcmp(t->abort_code, CHAT_ERR_STORE_UNAVAILABLE)) {
        /* a write that timed out may still be run by a redis that was only
         * slow or hung: sending the same text again would store it twice */
        return -1;
    }
    if (!all && p->has_answer && n < STORE_COALESCE_BYTES &&
        now - t->t_stored < STORE_COALESCE_MS &&
        strcmp(chat_store_provider_name(st), CHATBOT_STORE_DEFAULT) != 0) {
        return 0; /* a round trip per token would be the bottleneck */
    }
    t->t_stored = now;
    if (!p->has_answer && t->branch_answer) {
        rc = chat_store_msg_branch(st, &e->id.owner, p->conv_id, p->user_index,
                                   CHAT_ROLE_ASSISTANT, CHAT_MSG_STREAMING,
                                   p->answer.data + t->stored, n, chatbot_now_ms(),
                                   &p->answer_index);
        if (rc == CHAT_OK) {
            p->has_answer = 1;
        }
    }
    else if (!p->has_answer) {
        rc = chat_store_msg_append(st, &e->id.owner, p->conv_id, CHAT_ROLE_ASSISTANT,
                                   CHAT_MSG_STREAMING, p->answer.data + t->stored, n,
                                   chatbot_now_ms(), &p->answer_index);
        if (rc == CHAT_OK) {
            p->has_answer = 1;
        }
    }
    else {
        rc = chat_store_msg_extend(st, &e->id.owner, p->conv_id,
                                   p->answer.data + t->stored, n, chatbot_now_ms());
    }
    if (rc == CHAT_OK) {
        t->stored += n;
        return 0;
    }
    chatbot_turn_store_refused(t, rc);
    return -1;
}

void chatbot_turn_store_refused(chatbot_turn_priv_t *t, chat_status_t rc)
{
    if (t->abort_code) {
        return; /* the first reason stands */
    }
    t->abort_code = rc == CHAT_ETOOBIG    ? CHAT_ERR_TOO_LARGE
                    : rc == CHAT_EQUOTA   ? CHAT_ERR_QUOTA_EXCEEDED
                    : rc == CHAT_EUNAVAIL ? CHAT_ERR_STORE_UNAVAILABLE
                                          : CHAT_ERR_STORAGE_FULL;
    if (rc == CHAT_EUNAVAIL) {
        apr_snprintf(t->abort_msg, sizeof(t->abort_msg), "%s",
                     chatbot_store_err_text(CHAT_ERR_STORE_UNAVAILABLE));
    }
    else if (rc == CHAT_ETOOBIG) {
        apr_snprintf(t->abort_msg, sizeof(t->abort_msg),
                     "the answer exceeded ChatbotMaxAnswerBytes and was cut");
    }
    else if (rc == CHAT_EQUOTA) {
        apr_snprintf(t->abort_msg, sizeof(t->abort_msg), "%s",
                     chatbot_store_err_text(CHAT_ERR_QUOTA_EXCEEDED));
    }
    else {
        apr_snprintf(t->abort_msg, sizeof(t->abort_msg), "history storage is full (%s)",
                     chat_status_str(rc));
    }
}

int chatbot_turn_final_text(chatbot_turn_priv_t *t, chat_turn_text_t *tt)
{
    chatbot_turn_t *p = &t->pub;

    if (p->answer.len == t->stored || !chatbot_store() || t->stateless ||
        (t->abort_code && !strcmp(t->abort_code, CHAT_ERR_STORE_UNAVAILABLE))) {
        return 0; /* nothing to store, or never again (chatbot_turn_flush) */
    }
    if (!p->has_answer && t->branch_answer) {
        return 0; /* a version of its own: chat_store_msg_branch */
    }
    tt->text = p->answer.data + t->stored;
    tt->len = p->answer.len - t->stored;
    tt->extend = p->has_answer;
    tt->index = 0;
    tt->rc = CHAT_OK;
    return 1;
}

void chatbot_turn_final_stored(chatbot_turn_priv_t *t, const chat_turn_text_t *tt)
{
    chatbot_turn_t *p = &t->pub;

    if (tt->rc != CHAT_OK) {
        chatbot_turn_store_refused(t, tt->rc);
        return;
    }
    t->stored += tt->len;
    if (!tt->extend) {
        p->has_answer = 1;
        p->answer_index = tt->index;
    }
}

static size_t on_write(void *baton, const char *data, size_t n)
{
    chatbot_turn_priv_t *t = baton;
    chat_status_t rc;

    if (!t->hdr_checked) {
        const char *ct;
        t->hdr_checked = 1;
        t->http_status = chatbot_http_status(t->xfer);
        ct = chatbot_http_content_type(t->xfer);
        if (t->http_status >= 200 && t->http_status < 300 && ct &&
            (!strncasecmp(ct, "text/html", 9) || !strncasecmp(ct, "text/xml", 8) ||
             !strncasecmp(ct, "image/", 6))) {
            t->abort_code = CHAT_ERR_BACKEND_PROTOCOL;
            apr_snprintf(t->abort_msg, sizeof(t->abort_msg),
                         "backend '%s' answered with %s instead of a %s stream "
                         "(is %s really an %s server, and not a proxy or web page?)",
                         t->pub.backend->name, ct,
                         t->pub.backend->wire == CHAT_WIRE_OLLAMA ? "NDJSON" : "SSE",
                         t->pub.backend->url,
                         t->pub.backend->wire == CHAT_WIRE_OLLAMA ? "Ollama"
                                                                  : "OpenAI-compatible");
            return 0;
        }
    }
    if (t->http_status < 200 || t->http_status >= 300) {
        if (t->errbody.len < ERRBODY_MAX) {
            size_t k =
                n < ERRBODY_MAX - t->errbody.len ? n : ERRBODY_MAX - t->errbody.len;
            chat_buf_append(&t->errbody, data, k);
        }
        return n;
    }
    if (t->phase != CHATBOT_PH_RUNNING) {
        return 0;
    }
    rc = chat_stream_feed(t->parser, data, n);
    /* The store gets the text once per run of the transfers (all that one
     * wake-up brought: libcurl calls this once per chunk, an instant
     * backend's whole answer is twenty), unless it is already large. */
    if (t->pub.answer.len - t->stored >= STORE_NOW_BYTES) {
        if (chatbot_turn_flush(t, 0) < 0) {
            return 0;
        }
    }
    else {
        t->store_due = 1;
    }
    if (rc == CHAT_OK) {
        return n;
    }
    if (rc == CHAT_ECLOSED && (t->abort_code || chat_stream_is_done(t->parser))) {
        return t->abort_code ? 0 : n;
    }
    t->abort_code = CHAT_ERR_BACKEND_PROTOCOL;
    if (rc != CHAT_ETOOBIG) {
        apr_snprintf(
            t->abort_msg, sizeof(t->abort_msg),
            "backend '%s' sent a reply that is not valid %s: %s", t->pub.backend->name,
            t->pub.backend->wire == CHAT_WIRE_OLLAMA ? "Ollama NDJSON" : "OpenAI SSE",
            chat_stream_error(t->parser));
    }
    else {
        apr_snprintf(t->abort_msg, sizeof(t->abort_msg),
                     "backend '%s' sent a line longer than %d bytes",
                     t->pub.backend->name, MAX_LINE);
    }
    return 0;
}

/* Builds the request and hands it to the HTTP client. Returns NULL or an
 * error code. */
const char *chatbot_turn_send(chatbot_turn_priv_t *t)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chatbot_backend_t *be = p->backend;
    apr_array_header_t *msgs;
    chat_options_t opts;
    chatbot_http_post_t req;

    msgs = chatbot_turn_context(t, &opts);
    if (!msgs) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg), "the conversation is gone");
        return CHAT_ERR_NOT_FOUND;
    }
    chat_buf_reset(&t->body, 64 * 1024);
    if (chat_request_build(be->wire, p->model, (const chat_msg_t *)msgs->elts,
                           (size_t)msgs->nelts, &opts, 1, &t->body) != CHAT_OK) {
        return CHAT_ERR_INTERNAL;
    }
    if (!t->parser || t->parser_wire != be->wire) {
        if (t->parser) {
            chat_stream_destroy(t->parser);
            t->parser = NULL;
        }
        if (chat_stream_create(&t->parser, be->wire, MAX_LINE, on_event, t) != CHAT_OK) {
            return CHAT_ERR_INTERNAL;
        }
        t->parser_wire = be->wire;
    }
    else {
        chat_stream_reset(t->parser);
    }
    t->http_status = 0;
    t->hdr_checked = 0;
    t->backend_error = 0;
    t->abort_code = NULL;
    chat_buf_reset(&t->errbody, 16 * 1024);
    req.url = be->chat_url;
    req.key = be->key;
    req.accept =
        be->wire == CHAT_WIRE_OLLAMA ? "application/x-ndjson" : "text/event-stream";
    req.body = t->body.data;
    req.len = t->body.len;
    req.connect_timeout_ms = (long)e->lim.connect_timeout_ms;
    if (chatbot_http_post(e->http, &t->xfer, t->pool, &req, on_write, t) != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    t->t_sent = chatbot_now_ms();
    t->loading_sent = 0;
    return NULL;
}

void chatbot_turn_detach(chatbot_turn_priv_t *t)
{
    chatbot_http_detach(t->e->http, t->xfer);
}

/* 1 if a 404's error text is about the model (Ollama: 'model "x" not
 * found, try pulling it first'; OpenAI/vLLM: 'The model `x` does not
 * exist'), 0 if it is a plain "not found" of the path. */
static int error_names_model(const char *msg)
{
    return ap_strcasestr(msg, "model") != NULL;
}

void chatbot_turn_transfer_done(chatbot_turn_priv_t *t, chatbot_http_result_t res,
                                const char *errtext)
{
    chatbot_turn_t *p = &t->pub;
    chatbot_backend_t *be = p->backend;
    char emsg[300];
    chat_status_t fin;

    if (!t->hdr_checked) {
        /* no body at all (Content-Length: 0, HEAD-like): the write callback
         * never ran */
        t->http_status = chatbot_http_status(t->xfer);
    }
    if (t->abort_code) {
        /* We aborted from a callback: protocol error or storage limit. */
        int backend_fault = !strcmp(t->abort_code, CHAT_ERR_BACKEND_PROTOCOL);
        apr_cpystrn(p->err_msg, t->abort_msg, sizeof(p->err_msg));
        if (backend_fault) {
            chatbot_turn_breaker(t, 0);
        }
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, t->abort_code, "%s", t->abort_msg);
        return;
    }
    if (t->http_status >= 200 && t->http_status < 300 && res != CHATBOT_HTTP_OK &&
        res != CHATBOT_HTTP_ETIMEOUT) {
        /* The connection broke after a 2xx: the answer may have been
         * complete already (done:true / [DONE] / a finish_reason came, then
         * the server dropped the connection without ending the body). */
        fin = chat_stream_finish(t->parser);
        if ((fin == CHAT_OK || chat_stream_is_done(t->parser)) && !t->backend_error) {
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
            return;
        }
    }
    if (res == CHATBOT_HTTP_OK && t->http_status >= 200 && t->http_status < 300) {
        fin = chat_stream_finish(t->parser);
        /* once the server said the answer is done, bytes it sent after
         * that (a keep-alive comment after [DONE]...) are ignored */
        if ((fin == CHAT_OK || chat_stream_is_done(t->parser)) && !t->backend_error) {
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
            return;
        }
        if (t->backend_error) {
            /* A model error is not a sign the server is down. */
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                             "backend '%s' reported an error%s: %s", be->name,
                             p->tokens ? " mid-answer (partial answer kept)" : "",
                             t->backend_msg);
            return;
        }
        if (fin == CHAT_EINCOMPLETE) {
            chatbot_turn_breaker(t, 0);
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_INTERRUPTED,
                "backend '%s' ended the stream before the answer was complete%s",
                be->name, p->tokens ? " (partial answer kept)" : "");
            return;
        }
        chatbot_turn_breaker(t, 0);
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_PROTOCOL,
                         "backend '%s' sent a reply that is not valid %s: %s", be->name,
                         be->wire == CHAT_WIRE_OLLAMA ? "Ollama NDJSON" : "OpenAI SSE",
                         chat_stream_error(t->parser));
        return;
    }
    if (res == CHATBOT_HTTP_OK) {
        /* HTTP error status */
        long st = t->http_status;
        chat_backend_error_text(t->errbody.data ? t->errbody.data : "", t->errbody.len,
                                emsg, sizeof(emsg));
        if (st == 404 && !error_names_model(emsg)) {
            /* Not "model not found" but no such endpoint: a wrong path
             * prefix, type= or port (Ollama's mux says "404 page not
             * found", FastAPI {"detail":"Not Found"}, nginx an HTML page) */
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                "backend '%s' has no %s endpoint at %s (HTTP 404%s%s); check the "
                "URL's path prefix and type= of ChatbotBackend",
                be->name, be->wire == CHAT_WIRE_OLLAMA ? "Ollama" : "OpenAI-compatible",
                be->chat_url, *emsg ? ": " : "", emsg);
            return;
        }
        if (st == 404) {
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_MODEL_NOT_FOUND,
                "model '%s' is not available on backend '%s'%s%s; pull it first "
                "(ollama pull %s) or fix ChatbotModel",
                p->model, be->name, *emsg ? ": " : "", emsg, p->model);
            return;
        }
        if (st == 503 || st == 429) {
            apr_snprintf(p->err_msg, sizeof(p->err_msg), "HTTP %ld %s", st, emsg);
            chatbot_turn_breaker(t, 0);
            if (chatbot_turn_failover(t)) {
                return;
            }
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_BUSY,
                "backend '%s' is busy (HTTP %ld%s%s); please retry in a moment", be->name,
                st, *emsg ? ": " : "", emsg);
            return;
        }
        if (st == 400 || st == 422) {
            chatbot_turn_breaker(t, 1);
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_BAD_REQUEST,
                             "backend '%s' rejected the request (HTTP %ld)%s%s", be->name,
                             st, *emsg ? ": " : "", emsg);
            return;
        }
        chatbot_turn_breaker(t, st < 500);
        chatbot_turn_end(
            t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
            "backend '%s' answered HTTP %ld%s%s%s", be->name, st, *emsg ? ": " : "", emsg,
            (st == 401 || st == 403) ? " (check the key= of ChatbotBackend)" : "");
        return;
    }
    switch (res) {
    case CHATBOT_HTTP_ECONNECT:
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "cannot connect to backend '%s' at %s (%s)", be->name, be->url,
                     errtext);
        chatbot_turn_breaker(t, 0);
        if (chatbot_turn_failover(t)) {
            return;
        }
        chatbot_turn_end(
            t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_UNREACHABLE,
            "cannot connect to backend '%s' at %s (%s); is the server running?", be->name,
            be->url, errtext);
        return;
    case CHATBOT_HTTP_ETIMEOUT:
        if (!t->http_status && !t->hdr_checked) {
            apr_snprintf(p->err_msg, sizeof(p->err_msg),
                         "backend '%s' at %s did not accept a connection within %d ms",
                         be->name, be->url, (int)t->e->lim.connect_timeout_ms);
            chatbot_turn_breaker(t, 0);
            if (chatbot_turn_failover(t)) {
                return;
            }
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_UNREACHABLE, "%s",
                             p->err_msg);
            return;
        }
        chatbot_turn_breaker(t, 0);
        chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                         "backend '%s' timed out", be->name);
        return;
    default:
        chatbot_turn_breaker(t, 0);
        if (p->tokens > 0) {
            chatbot_turn_end(
                t, CHATBOT_OUT_FAILED, CHAT_ERR_INTERRUPTED,
                "the connection to backend '%s' was lost mid-answer (%s); the "
                "partial answer is kept",
                be->name, errtext);
        }
        else {
            chatbot_turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                             "backend '%s' closed the connection without an answer (%s)",
                             be->name, errtext);
        }
        return;
    }
}
