/* mod_chatbot_api_io.c - the REST API's plumbing: a request's state, reading
 * its JSON body and query string, writing its JSON answer or error.
 *
 * Bad input always gets a 4xx with a JSON body {"error": <code>, "message":
 * <text>, "detail": <text>} (detail for FastAPI-era clients), never a 500.
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "chat/jsoncheck.h"
#include "chat/utf8.h"
#include "mod_chatbot.h"
#include "mod_chatbot_api.h"

#define BODY_MAX (1024 * 1024)
#define BODY_DEPTH 32 /* nesting accepted in a request body */

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

api_t *chatbot_api_new(request_rec *r)
{
    api_t *a = apr_pcalloc(r->pool, sizeof(*a));

    a->r = r;
    a->sc = chatbot_srv(r->server);
    chatbot_limits_get(r, &a->lim);
    chat_buf_init(&a->out);
    apr_pool_cleanup_register(r->pool, a, api_cleanup, apr_pool_cleanup_null);
    return a;
}

/* X-Content-Type-Options, once: in err_headers_out, where a `Header always
 * set X-Content-Type-Options nosniff` (conf/chatbot-csp.conf) replaces it
 * instead of adding a second copy. */
void chatbot_api_nosniff(request_rec *r)
{
    apr_table_unset(r->headers_out, "X-Content-Type-Options");
    apr_table_setn(r->err_headers_out, "X-Content-Type-Options", "nosniff");
}

static const char *store_down_text(void)
{
    return chatbot_store_err_text(CHAT_ERR_STORE_UNAVAILABLE);
}

int chatbot_api_send_json(api_t *a, int status)
{
    request_rec *r = a->r;

    if (a->store_watch && status < 500 && chatbot_store_failures() != a->store_fail0) {
        a->store_watch = 0;
        return chatbot_api_error(a, CHAT_ERR_STORE_UNAVAILABLE, store_down_text(), 0);
    }

    r->status = status;
    ap_set_content_type(r, "application/json; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    chatbot_api_nosniff(r);
    ap_set_content_length(r, (apr_off_t)a->out.len);
    if (!r->header_only) {
        ap_rwrite(a->out.data ? a->out.data : "", (int)a->out.len, r);
    }
    return OK;
}

/* Writes an error reply without counting it: for a failed turn, which the
 * engine has counted already (as it does for the WebSocket). */
int chatbot_api_error_counted(api_t *a, const char *code, const char *msg,
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
        apr_table_setn(
            a->r->err_headers_out, "Retry-After",
            apr_psprintf(a->r->pool, "%" APR_INT64_T_FMT, (retry_ms + 999) / 1000));
    }
    chat_jw_obj_end(&a->jw);
    return chatbot_api_send_json(a, a->legacy && chatbot_compat_outcome(code)
                                        ? HTTP_OK
                                        : chatbot_error_status(code));
}

/* Every error the API returns is counted once, by code, like the error
 * frames of the WebSocket (chatbot_errors_total, ChatbotErrors[code]). */
int chatbot_api_error(api_t *a, const char *code, const char *msg, apr_int64_t retry_ms)
{
    chat_metrics_error(chatbot_store(), code);
    return chatbot_api_error_counted(a, code, msg, retry_ms);
}

void chatbot_api_begin(api_t *a)
{
    chat_buf_reset(&a->out, 0);
    chat_jw_init(&a->jw, &a->out);
    chat_jw_obj_begin(&a->jw);
}

int chatbot_api_finish(api_t *a, int status)
{
    chat_jw_obj_end(&a->jw);
    if (chat_jw_status(&a->jw) != CHAT_OK) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
    }
    return chatbot_api_send_json(a, status);
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
int chatbot_api_read_body(api_t *a, int required)
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
            return chatbot_api_error(a, CHAT_ERR_TOO_LARGE,
                                     "the request body is larger than 1 MiB", 0);
        }
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST, "cannot read the request body",
                                 0);
    }
    if (r->remaining > BODY_MAX) {
        return chatbot_api_error(a, CHAT_ERR_TOO_LARGE,
                                 "the request body is larger than 1 MiB", 0);
    }
    chat_buf_init(&raw);
    if (ap_should_client_block(r)) {
        char buf[8192];
        long n;
        while ((n = ap_get_client_block(r, buf, sizeof(buf))) > 0) {
            if (raw.len + (size_t)n > BODY_MAX) {
                chat_buf_free(&raw);
                return chatbot_api_error(a, CHAT_ERR_TOO_LARGE,
                                         "the request body is larger than 1 MiB", 0);
            }
            chat_buf_append(&raw, buf, (size_t)n);
        }
        if (n < 0) {
            chat_buf_free(&raw);
            return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                     "error reading the request body", 0);
        }
    }
    if (raw.len == 0) {
        chat_buf_free(&raw);
        if (required) {
            return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                     "a JSON object body is required", 0);
        }
        a->body = json_object_new_object();
        return OK;
    }
    if (ct && !is_json_type(r->pool, ct)) {
        chat_buf_free(&raw);
        return chatbot_api_error(a, CHAT_ERR_BAD_REQUEST,
                                 "the body must be JSON (Content-Type: application/json)",
                                 0);
    }
    /* RFC 8259 exactly, valid UTF-8 everywhere: json-c alone lets raw
     * control characters, single quotes, NaN and overlong UTF-8 through */
    if (chat_json_check(raw.data, raw.len, BODY_DEPTH, why, sizeof(why)) != CHAT_OK) {
        chat_buf_free(&raw);
        return chatbot_api_error(
            a, CHAT_ERR_BAD_JSON,
            apr_pstrcat(r->pool, "the body is not a JSON object: ", why, NULL), 0);
    }
    tok = json_tokener_new_ex(BODY_DEPTH);
    if (!tok) {
        chat_buf_free(&raw);
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "out of memory", 0);
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
        return chatbot_api_error(a, CHAT_ERR_BAD_JSON, "the body is not a JSON object",
                                 0);
    }
    return OK;
}

/* Gets an optional string field; *bad set if present with another type. */
const char *chatbot_api_jstr(api_t *a, const char *key, int *bad)
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
const char *chatbot_api_query(api_t *a, const char *name)
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

int chatbot_api_query_int(api_t *a, const char *name, apr_int64_t dflt, apr_int64_t max,
                          apr_int64_t *out)
{
    const char *v = chatbot_api_query(a, name);
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

/* The text of a rate_limited error (the WebSocket's wording). */
const char *chatbot_api_rate_msg(api_t *a, apr_int64_t retry_ms)
{
    return apr_psprintf(a->r->pool,
                        "rate limit exceeded (%u messages per %s); retry in %.1f s",
                        a->lim.rate.count,
                        a->lim.rate.period_ms == 60000     ? "minute"
                        : a->lim.rate.period_ms == 1000    ? "second"
                        : a->lim.rate.period_ms == 3600000 ? "hour"
                                                           : "period",
                        retry_ms / 1000.0);
}

apr_int64_t chatbot_api_create_retry(api_t *a, const char *code)
{
    chat_store_t *st = chatbot_store();
    int64_t ms;

    if (!st || !code || strcmp(code, CHAT_ERR_RATE_LIMITED)) {
        return 0;
    }
    ms = chat_store_create_retry_ms(st, &a->id.owner, chatbot_now_ms());
    return ms > 0 ? (apr_int64_t)ms : 1000;
}
