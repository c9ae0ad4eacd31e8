/* mod_chatbot_api.c - the REST API (JSON): the route table, the one list of
 * what .../api/<route> answers, and the dispatch that applies it (404, 405
 * with Allow, HEAD as GET, the Origin check, the identity). Same identity,
 * rate limits and storage as the WebSocket; it covers what the old port-8000
 * service exposed. The routes live in mod_chatbot_api_*.c (see
 * mod_chatbot_api.h); every route is listed in docs/api.md.
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_api.h"

/* The health and model routes below call the plumbing by these names. */
static void begin(api_t *a)
{
    chatbot_api_begin(a);
}

static int finish(api_t *a, int status)
{
    return chatbot_api_finish(a, status);
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
    int i, up = 0, store_up, pinged;
    apr_uint32_t f0 = chatbot_store_failures();

    refresh_health(a, 0);
    for (i = 0; st && i < a->sc->backends->nelts; i++) {
        chat_backend_info_t bi;
        chatbot_backend_t *be = APR_ARRAY_IDX(a->sc->backends, i, chatbot_backend_t *);
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK && bi.healthy > 0) {
            up++;
        }
    }
    /* a store on redis that does not answer, or that refuses writes or
     * refused the calls above (over its maxmemory, a read-only replica:
     * rs_refused): this host cannot serve chats */
    pinged = chatbot_store_ping(st, 1) != 0;
    store_up = pinged && chatbot_store_failures() == f0;
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
            chat_jw_kbool(&a->jw, "reachable", pinged);
            chat_jw_kint(&a->jw, "calls", (int64_t)ss.calls);
            chat_jw_kint(&a->jw, "errors", (int64_t)ss.errors);
            apr_uint64_t ok = 0;
            for (i = 0; i < 8; i++) {
                ok += ss.hist[i];
            }
            chat_jw_kint(&a->jw, "latency_avg_us",
                         ok ? (int64_t)(ss.usec_total / ok) : 0);
            if (!store_up) {
                chat_jw_kstr(&a->jw, "detail",
                             pinged
                                 ? "redis refused the store's calls (error log: AH10962)"
                                 : ss.last_error);
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
 * OpenAI-compatible GET /v1/models) for the bot picker. A backend that
 * fails gets "error" (its reason only for operators, who get lists asked
 * now; others get the child's lists, at most 10 s old). */
static int route_models(api_t *a)
{
    begin(a);
    chat_jw_key(&a->jw, "backends");
    chatbot_models_write(&a->jw, a->r->pool, a->r->server, a->sc->backends,
                         (long)a->lim.connect_timeout_ms, a->lim.show_details);
    return finish(a, 200);
}

/* ---- routes ---------------------------------------------------------------------- */

/* Splits the route into at most max segments; max + 1 if it has more. */
static int split(apr_pool_t *p, const char *route, const char **seg, int max)
{
    char *s = apr_pstrdup(p, route), *tok, *last;
    int n = 0;

    for (tok = apr_strtok(s, "/", &last); tok && n < max;
         tok = apr_strtok(NULL, "/", &last)) {
        seg[n++] = tok;
    }
    return tok ? max + 1 : n;
}

/* The health of the backends, for the bot lists (mod_chatbot_api_bots.c). */
void chatbot_api_refresh_health(api_t *a)
{
    refresh_health(a, 0);
}

/* route_health and route_models as route table handlers */
static int health(api_t *a, const char *const *seg)
{
    return route_health(a);
}

static int models(api_t *a, const char *const *seg)
{
    return route_models(a);
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
    return chatbot_api_send_json(a, HTTP_METHOD_NOT_ALLOWED);
}

typedef int route_fn(api_t *a, const char *const *seg);

/* route flags */
#define ROUTE_PUBLIC 1    /* no identity, no cookie, no store check (load balancers) */
#define ROUTE_LEGACY 2    /* the port-8000 controller's: its reply and error shapes */
#define ROUTE_LEGACY_ID 4 /* ... and seg[1] is the bot id its answers name */

typedef struct {
    int method;       /* M_GET (HEAD is one too: r->header_only) or M_POST */
    const char *path; /* segments below .../api/; "*" matches any one */
    int flags;        /* ROUTE_* */
    route_fn *fn;
} route_t;

/* Every REST route (docs/api.md). The first pattern that matches a path
 * owns it: bot/stop/{id} comes before bot/{id}/task and bot/{id}/status.
 * The rows with that pattern give the methods it takes, and the Allow of
 * a 405 for any other. */
static const route_t routes[] = {
    {M_GET, "health", ROUTE_PUBLIC, health},
    {M_GET, "models", ROUTE_PUBLIC, models},
    {M_GET, "status", 0, chatbot_api_status},
    /* bots */
    {M_GET, "bots", ROUTE_LEGACY, chatbot_api_bots},
    {M_GET, "bots/status", ROUTE_LEGACY, chatbot_api_bots_status},
    {M_GET, "bots/declared", 0, chatbot_api_bots_declared},
    {M_POST, "bot/launch", ROUTE_LEGACY, chatbot_api_bot_launch},
    {M_POST, "bot/stop/*", ROUTE_LEGACY, chatbot_api_bot_stop},
    {M_POST, "bot/*/task", ROUTE_LEGACY | ROUTE_LEGACY_ID, chatbot_api_task},
    {M_GET, "bot/*/status", 0, chatbot_api_bot_status},
    {M_POST, "execute", 0, chatbot_api_execute},
    /* sessions */
    {M_GET, "sessions", 0, chatbot_api_sessions},
    {M_GET, "search", 0, chatbot_api_search},
    {M_POST, "session/create", 0, chatbot_api_session_create},
    {M_POST, "session/*/task", 0, chatbot_api_task},
    {M_GET, "session/*/settings", 0, chatbot_api_session_settings},
    {M_POST, "session/*/settings", 0, chatbot_api_session_settings},
    {M_POST, "session/*/version", 0, chatbot_api_session_version},
    {M_POST, "session/*/select", 0, chatbot_api_session_op},
    {M_POST, "session/*/archive", 0, chatbot_api_session_op},
    {M_POST, "session/*/unarchive", 0, chatbot_api_session_op},
    {M_POST, "session/*/rename", 0, chatbot_api_session_op},
    {M_POST, "session/*/delete", 0, chatbot_api_session_op},
    {M_POST, "session/*/stop", 0, chatbot_api_session_op},
    /* chat */
    {M_POST, "chat", 0, chatbot_api_chat},
    {M_GET, "chat/history", 0, chatbot_api_history},
    {M_POST, "chat/message", ROUTE_LEGACY, chatbot_api_message},
    {M_POST, "export/session", 0, chatbot_api_export},
    {0, NULL, 0, NULL}};

/* 1 if the n segments seg match pattern. */
static int route_match(const char *pattern, const char *const *seg, int n)
{
    const char *p = pattern;
    int i;

    for (i = 0; i < n; i++) {
        size_t len = strcspn(p, "/");
        int any = len == 1 && *p == '*';
        if (!len || (!any && (strlen(seg[i]) != len || strncmp(p, seg[i], len)))) {
            return 0;
        }
        p += len;
        if (*p == '/') {
            p++;
        }
    }
    return *p == '\0';
}

/* The Allow of the path owner's pattern: its rows' methods. */
static const char *route_allow(const route_t *owner)
{
    const route_t *rt;
    int get = 0, post = 0;

    for (rt = owner; rt->path; rt++) {
        if (!strcmp(rt->path, owner->path)) {
            get |= rt->method == M_GET;
            post |= rt->method == M_POST;
        }
    }
    return get && post ? "GET, HEAD, POST" : get ? "GET, HEAD" : "POST";
}

int chatbot_api_handler(request_rec *r, const char *route)
{
    api_t *a = chatbot_api_new(r);
    const char *seg[4];
    const route_t *owner = NULL, *rt;
    int n;

    if (!chatbot_store()) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "the chat store is not available",
                                 0);
    }
    n = split(r->pool, route, seg, 4);
    for (rt = routes; n <= 4 && rt->path && !owner; rt++) {
        if (route_match(rt->path, seg, n)) {
            owner = rt;
        }
    }
    if (!owner) {
        return chatbot_api_error(a, CHAT_ERR_NOT_FOUND, "no such API route", 0);
    }
    a->legacy = (owner->flags & ROUTE_LEGACY) != 0;
    if (owner->flags & ROUTE_LEGACY_ID) {
        a->legacy_id = seg[1];
    }
    /* The method, before anything else (no body read, no cookie set):
     * 405 with the route's own Allow. HEAD is a GET (r->header_only). */
    for (rt = owner; rt->path; rt++) {
        if (!strcmp(rt->path, owner->path) && rt->method == r->method_number) {
            break;
        }
    }
    if (!rt->path) {
        return method_not_allowed(a, route_allow(owner));
    }
    /* Cross-site request forgery: a browser sends the cookie (same-site
     * pages) or cached HTTP credentials (any page) with a POST another
     * site's page makes. Browsers always send Origin on a POST, so a POST
     * from an origin the WebSocket would refuse (ChatbotAllowedOrigins) is
     * refused too; clients without Origin (scripts, curl) are not browsers. */
    if (r->method_number == M_POST &&
        !chatbot_origin_allowed(r, apr_table_get(r->headers_in, "Origin"))) {
        ap_log_rerror(
            APLOG_MARK, APLOG_INFO, 0, r,
            APLOGNO(10975) "chatbot: API POST from origin %s refused (host %s); see "
                           "ChatbotAllowedOrigins",
            apr_table_get(r->headers_in, "Origin"), apr_table_get(r->headers_in, "Host"));
        return chatbot_api_error(a, CHAT_ERR_FORBIDDEN,
                                 "cross-origin request refused (ChatbotAllowedOrigins)",
                                 0);
    }
    /* Health and models: no identity needed, no cookie set (load balancers). */
    if (rt->flags & ROUTE_PUBLIC) {
        return rt->fn(a, seg);
    }
    /* Everything below reads or writes conversations: with the store on
     * redis unreachable, say so (503) rather than show an empty history.
     * No ping first (a round trip per request): a store call that fails
     * during the route turns its answer into the 503 (chatbot_api_send_json). */
    a->store_fail0 = chatbot_store_failures();
    a->store_watch = 1;
    /* Reading never creates state: a GET without a valid cookie reads as an
     * identity that owns nothing, and gets no cookie. */
    if ((r->method_number == M_GET ? chatbot_ident_find(r, &a->id)
                                   : chatbot_ident_get(r, &a->id)) != APR_SUCCESS) {
        return chatbot_api_error(a, CHAT_ERR_INTERNAL, "cannot create a session id", 0);
    }

    if (r->method_number == M_POST) {
        int rc = chatbot_api_read_body(a, 0);
        if (rc != OK || r->status >= 400) {
            return rc;
        }
    }
    return rt->fn(a, seg);
}
