/* mod_chatbot_http.h - the HTTP client interface to the model backends
 * (implemented with libcurl in mod_chatbot_curl.c, the only glue that sees curl).
 *
 * Two ways in:
 * - a client (a cached multi handle) drives streamed POSTs (transfers) for
 *   the turn engine: the engine polls it with its own fds and runs it after
 *   every wake-up; finished transfers are reported through a callback;
 * - chatbot_http_get_all fetches a few small documents in parallel and
 *   blocks until they are in (health probes, model lists).
 */
#ifndef MOD_CHATBOT_HTTP_H
#define MOD_CHATBOT_HTTP_H

#include "apr_pools.h"

#include "chat/common.h"

/* How a transfer ended (the library's codes mapped to the project's). */
typedef enum {
    CHATBOT_HTTP_OK = 0,   /* the whole reply came (any HTTP status) */
    CHATBOT_HTTP_ECONNECT, /* no connection: refused, host or proxy unknown */
    CHATBOT_HTTP_ETIMEOUT, /* a connect or transfer timeout */
    CHATBOT_HTTP_EOTHER    /* anything else (connection lost, write aborted...) */
} chatbot_http_result_t;

/* An extra fd for chatbot_http_poll; the same layout as libcurl's struct
 * curl_waitfd, so an array of either may be passed. */
typedef struct {
    int fd;
    short events;  /* CHATBOT_HTTP_POLL* */
    short revents; /* set by the poll */
} chatbot_http_waitfd_t;
#define CHATBOT_HTTP_POLLIN 0x0001
#define CHATBOT_HTTP_POLLPRI 0x0002
#define CHATBOT_HTTP_POLLOUT 0x0004

typedef struct chatbot_http_client chatbot_http_client_t;
typedef struct chatbot_http_xfer chatbot_http_xfer_t;

/* Called with each piece of a reply's body: returns len to go on, 0 to
 * abort the transfer (it then ends with CHATBOT_HTTP_EOTHER). */
typedef size_t (*chatbot_http_sink_fn)(void *baton, const char *data, size_t len);
/* Called by chatbot_http_run for each transfer that ended; baton is the
 * transfer's (chatbot_http_post). */
typedef void (*chatbot_http_done_fn)(void *baton, chatbot_http_result_t res,
                                     const char *errtext);

/* Initialises the library once per generation: again after a restart
 * (httpd unloads the module, and the library with it, when pconf goes). */
apr_status_t chatbot_http_init(apr_pool_t *pconf);

/* ---- clients ---------------------------------------------------------------------- */

/* A client from the per-child cache (a backend connection a previous one
 * left open is reused), or a new one; NULL if none can be made. */
chatbot_http_client_t *chatbot_http_client_get(void);
/* Gives the client back to the cache (or closes it when the cache is full). */
void chatbot_http_client_put(chatbot_http_client_t *c);
/* Closes the cached clients (and their backend connections) that were not
 * used for idle_ms. Safe from any thread. */
void chatbot_http_client_prune(apr_uint64_t idle_ms);
/* Waits up to timeout_ms for activity on the client's transfers or on one
 * of the nextra extra fds (an array of chatbot_http_waitfd_t). */
apr_status_t chatbot_http_poll(chatbot_http_client_t *c, void *extra, unsigned nextra,
                               int timeout_ms);
/* Makes a chatbot_http_poll in progress (or the next one) return at once.
 * Safe from any thread. */
void chatbot_http_wakeup(chatbot_http_client_t *c);
/* Moves every transfer forward (the sinks are called from here) and calls
 * done for each one that ended. */
void chatbot_http_run(chatbot_http_client_t *c, chatbot_http_done_fn done);

/* ---- streamed POSTs (the turn's request) ---------------------------------------------
 */

typedef struct {
    const char *url;
    const char *key;    /* bearer token, or NULL */
    const char *accept; /* the Accept header's value */
    const char *body;   /* JSON, kept by the caller until the transfer ends */
    apr_size_t len;
    long connect_timeout_ms;
} chatbot_http_post_t;

/* Starts a POST of req on c, reusing *xp if set (a transfer keeps its
 * handle between turns); the reply's body goes to sink, and done gets
 * baton. APR_SUCCESS, or an error (nothing started). */
apr_status_t chatbot_http_post(chatbot_http_client_t *c, chatbot_http_xfer_t **xp,
                               apr_pool_t *p, const chatbot_http_post_t *req,
                               chatbot_http_sink_fn sink, void *baton);
/* The reply's HTTP status (0 before the headers) and Content-Type (NULL
 * if none). */
long chatbot_http_status(chatbot_http_xfer_t *x);
const char *chatbot_http_content_type(chatbot_http_xfer_t *x);
/* Takes the transfer off its client (it stops; NULL x or c: no-op); the
 * handle stays for the next chatbot_http_post. */
void chatbot_http_detach(chatbot_http_client_t *c, chatbot_http_xfer_t *x);
/* Frees a detached transfer (NULL: no-op). */
void chatbot_http_xfer_free(chatbot_http_xfer_t *x);

/* ---- parallel GETs (probes, model lists) ----------------------------------------------
 */

typedef struct {
    /* in */
    const char *url;
    const char *key;    /* bearer token, or NULL */
    apr_size_t cap;     /* bytes of body kept */
    int abort_over_cap; /* 1: a longer body aborts (overflow set);
                         * 0: the body stops growing past cap */
    /* out */
    int done; /* the request was made and ended */
    chatbot_http_result_t res;
    const char *errtext; /* the library's words for res (static) */
    long status;         /* HTTP status, 0 if none */
    int overflow;
    chat_buf_t body; /* chat_buf_free it */
} chatbot_http_get_t;

/* Runs the n GETs at once and returns when all have ended; the wait is
 * the longest one's, bounded by timeout_ms. APR_SUCCESS, or an error if no
 * request could be made at all (then done is 0 everywhere). */
apr_status_t chatbot_http_get_all(apr_pool_t *p, chatbot_http_get_t *reqs, int n,
                                  long connect_timeout_ms, long timeout_ms);

#endif
