/* mod_chatbot_curl.c - mod_chatbot_http.h with libcurl: the per-child cache
 * of multi handles, the turn's streamed POST, and parallel GETs.
 */
#include <stddef.h>
#include <string.h>
#include <curl/curl.h>

#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

/* chatbot_http_waitfd_t is passed to curl_multi_poll as it is */
_Static_assert(sizeof(chatbot_http_waitfd_t) == sizeof(struct curl_waitfd) &&
                   offsetof(chatbot_http_waitfd_t, events) ==
                       offsetof(struct curl_waitfd, events) &&
                   offsetof(chatbot_http_waitfd_t, revents) ==
                       offsetof(struct curl_waitfd, revents) &&
                   CHATBOT_HTTP_POLLIN == CURL_WAIT_POLLIN &&
                   CHATBOT_HTTP_POLLPRI == CURL_WAIT_POLLPRI &&
                   CHATBOT_HTTP_POLLOUT == CURL_WAIT_POLLOUT,
               "chatbot_http_waitfd_t must match struct curl_waitfd");

/* A client is a multi handle; the type only hides curl from the callers. */
static CURLM *multi_of(chatbot_http_client_t *c)
{
    return (CURLM *)c;
}

static chatbot_http_result_t result_of(CURLcode res)
{
    switch (res) {
    case CURLE_OK:
        return CHATBOT_HTTP_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return CHATBOT_HTTP_ECONNECT;
    case CURLE_OPERATION_TIMEDOUT:
        return CHATBOT_HTTP_ETIMEOUT;
    default:
        return CHATBOT_HTTP_EOTHER;
    }
}

static int curl_ready;

static apr_status_t curl_cleanup(void *data)
{
    if (curl_ready) {
        curl_global_cleanup();
        curl_ready = 0;
    }
    return APR_SUCCESS;
}

apr_status_t chatbot_http_init(apr_pool_t *pconf)
{
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return APR_EGENERAL;
        }
        curl_ready = 1;
        /* on pconf: httpd unloads this module (and libcurl with it) when
         * pconf goes, at every restart; the next generation inits again */
        apr_pool_cleanup_register(pconf, NULL, curl_cleanup, apr_pool_cleanup_null);
    }
    return APR_SUCCESS;
}

/* ---- the client cache ------------------------------------------------------------- */

/* Multi handles are kept between engines (lock-free, a few per child): a
 * connection that is idle holds none, and a turn that comes soon after
 * another finds the backend connection it left open. The watcher closes
 * the ones left unused for a second (chatbot_engine_prune), so that no
 * backend connection outlives the chats that used it for long. */
#define MULTI_CACHE 64
static struct {
    void *volatile m;
    volatile apr_uint64_t since;
} multi_cache[MULTI_CACHE];

chatbot_http_client_t *chatbot_http_client_get(void)
{
    CURLM *m = NULL;
    int i;

    for (i = 0; i < MULTI_CACHE && !m; i++) {
        m = apr_atomic_xchgptr((volatile void **)&multi_cache[i].m, NULL);
    }
    if (!m) {
        m = curl_multi_init();
    }
    if (m) {
        /* Keep a few connections to the backends alive between turns. */
        curl_multi_setopt(m, CURLMOPT_MAXCONNECTS, 4L);
    }
    return (chatbot_http_client_t *)m;
}

void chatbot_http_client_put(chatbot_http_client_t *c)
{
    apr_uint64_t now = chatbot_now_ms();
    int i;

    for (i = 0; i < MULTI_CACHE; i++) {
        if (!multi_cache[i].m) {
            multi_cache[i].since = now;
            if (!apr_atomic_casptr((volatile void **)&multi_cache[i].m, c, NULL)) {
                return;
            }
        }
    }
    curl_multi_cleanup(multi_of(c));
}

void chatbot_http_client_prune(apr_uint64_t idle_ms)
{
    apr_uint64_t now = chatbot_now_ms();
    int i;

    for (i = 0; i < MULTI_CACHE; i++) {
        if (multi_cache[i].m && now - multi_cache[i].since >= idle_ms) {
            CURLM *m = apr_atomic_xchgptr((volatile void **)&multi_cache[i].m, NULL);
            if (m) {
                curl_multi_cleanup(m);
            }
        }
    }
}

apr_status_t chatbot_http_poll(chatbot_http_client_t *c, void *extra, unsigned nextra,
                               int timeout_ms)
{
    int numfds = 0;
    CURLMcode mc = curl_multi_poll(multi_of(c), extra, nextra, timeout_ms, &numfds);

    return mc == CURLM_OK ? APR_SUCCESS : APR_EGENERAL;
}

void chatbot_http_wakeup(chatbot_http_client_t *c)
{
    curl_multi_wakeup(multi_of(c));
}

/* ---- streamed POSTs ------------------------------------------------------------------
 */

struct chatbot_http_xfer {
    CURL *easy;
    struct curl_slist *headers;
    chatbot_http_sink_fn sink;
    void *baton;
    int attached; /* in a multi handle */
};

/* Each thread keeps one freed transfer for the next: an easy handle made
 * and cleaned up per turn was 12,000 instructions (a 5 KB zeroed struct,
 * its defaults and their teardown); curl_easy_reset on a kept one is a
 * fraction. Only a transfer no multi handle holds is kept. */
static __thread chatbot_http_xfer_t *xfer_spare;

static size_t xfer_write(char *data, size_t size, size_t nmemb, void *baton)
{
    chatbot_http_xfer_t *x = baton;

    return x->sink(x->baton, data, size * nmemb);
}

void chatbot_http_run(chatbot_http_client_t *c, chatbot_http_done_fn done)
{
    int running = 0, left;
    CURLMsg *m;

    curl_multi_perform(multi_of(c), &running);
    while ((m = curl_multi_info_read(multi_of(c), &left)) != NULL) {
        chatbot_http_xfer_t *x = NULL;
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x) {
            done(x->baton, result_of(m->data.result), curl_easy_strerror(m->data.result));
        }
    }
}

apr_status_t chatbot_http_post(chatbot_http_client_t *c, chatbot_http_xfer_t **xp,
                               apr_pool_t *p, const chatbot_http_post_t *req,
                               chatbot_http_sink_fn sink, void *baton)
{
    chatbot_http_xfer_t *x = *xp;
    CURL *h;

    if (!x && xfer_spare) {
        x = xfer_spare;
        xfer_spare = NULL;
        *xp = x;
        curl_easy_reset(x->easy);
    }
    else if (!x) {
        x = calloc(1, sizeof(*x));
        if (!x) {
            return APR_ENOMEM;
        }
        x->easy = curl_easy_init();
        if (!x->easy) {
            free(x);
            return APR_ENOMEM;
        }
        *xp = x;
    }
    else {
        curl_easy_reset(x->easy);
    }
    h = x->easy;
    x->sink = sink;
    x->baton = baton;
    x->headers = curl_slist_append(NULL, "Content-Type: application/json");
    x->headers =
        curl_slist_append(x->headers, apr_pstrcat(p, "Accept: ", req->accept, NULL));
    x->headers = curl_slist_append(x->headers, "Expect:");
    if (req->key) {
        x->headers = curl_slist_append(
            x->headers, apr_pstrcat(p, "Authorization: Bearer ", req->key, NULL));
    }
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xfer_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_USERAGENT, CHATBOT_SERVER_ID);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    /* Ask for no compression (a compressing proxy may hold tokens back),
     * but decode a gzip/deflate/br/zstd body a server sends anyway: with
     * any CURLOPT_ACCEPT_ENCODING set libcurl decodes what it supports. */
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "identity");
    if (curl_multi_add_handle(multi_of(c), h) != CURLM_OK) {
        return APR_EGENERAL;
    }
    x->attached = 1;
    return APR_SUCCESS;
}

long chatbot_http_status(chatbot_http_xfer_t *x)
{
    long code = 0;

    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    return code;
}

const char *chatbot_http_content_type(chatbot_http_xfer_t *x)
{
    char *ct = NULL;

    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    return ct;
}

void chatbot_http_detach(chatbot_http_client_t *c, chatbot_http_xfer_t *x)
{
    if (!x) {
        return;
    }
    if (c) {
        curl_multi_remove_handle(multi_of(c), x->easy);
        x->attached = 0;
    }
    if (x->headers) {
        curl_slist_free_all(x->headers);
        x->headers = NULL;
    }
}

void chatbot_http_xfer_free(chatbot_http_xfer_t *x)
{
    if (x && !x->attached && !x->headers && !xfer_spare) {
        x->sink = NULL;
        x->baton = NULL;
        xfer_spare = x;
    }
    else if (x) {
        curl_easy_cleanup(x->easy);
        free(x);
    }
}

/* ---- parallel GETs
 * ------------------------------------------------------------------------ */

static size_t get_sink(char *d, size_t s, size_t n, void *baton)
{
    chatbot_http_get_t *g = baton;

    if (!g->abort_over_cap) {
        if (g->body.len < g->cap) {
            chat_buf_append(&g->body, d, s * n);
        }
        return s * n;
    }
    if (g->body.len + s * n > g->cap) {
        g->overflow = 1;
        return 0;
    }
    chat_buf_append(&g->body, d, s * n);
    return s * n;
}

apr_status_t chatbot_http_get_all(apr_pool_t *p, chatbot_http_get_t *reqs, int n,
                                  long connect_timeout_ms, long timeout_ms)
{
    CURLM *multi = curl_multi_init();
    CURL **hs;
    struct curl_slist **hd; /* live until the handles are gone */
    CURLMsg *msg;
    int i, running = 1, left;

    for (i = 0; i < n; i++) {
        chat_buf_init(&reqs[i].body);
        reqs[i].done = reqs[i].overflow = 0;
        reqs[i].status = 0;
        reqs[i].res = CHATBOT_HTTP_EOTHER;
        reqs[i].errtext = NULL;
    }
    if (!multi) {
        return APR_ENOMEM;
    }
    hs = apr_pcalloc(p, sizeof(*hs) * (n + 1));
    hd = apr_pcalloc(p, sizeof(*hd) * (n + 1));
    for (i = 0; i < n; i++) {
        chatbot_http_get_t *g = &reqs[i];
        CURL *h = hs[i] = curl_easy_init();
        if (!h) {
            continue;
        }
        curl_easy_setopt(h, CURLOPT_URL, g->url);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_timeout_ms);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, get_sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, g);
        curl_easy_setopt(h, CURLOPT_USERAGENT, CHATBOT_SERVER_ID);
        curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
        if (g->key) {
            hd[i] = curl_slist_append(
                NULL, apr_pstrcat(p, "Authorization: Bearer ", g->key, NULL));
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd[i]);
        }
        curl_multi_add_handle(multi, h);
    }
    while (running) {
        int numfds;
        if (curl_multi_perform(multi, &running) != CURLM_OK ||
            (running && curl_multi_poll(multi, NULL, 0, 200, &numfds) != CURLM_OK)) {
            break;
        }
    }
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        for (i = 0; msg->msg == CURLMSG_DONE && i < n; i++) {
            if (hs[i] == msg->easy_handle) {
                reqs[i].res = result_of(msg->data.result);
                reqs[i].errtext = curl_easy_strerror(msg->data.result);
                reqs[i].done = 1;
            }
        }
    }
    for (i = 0; i < n; i++) {
        if (hs[i]) {
            curl_easy_getinfo(hs[i], CURLINFO_RESPONSE_CODE, &reqs[i].status);
            curl_multi_remove_handle(multi, hs[i]);
            curl_easy_cleanup(hs[i]);
        }
        curl_slist_free_all(hd[i]);
    }
    curl_multi_cleanup(multi);
    return APR_SUCCESS;
}
