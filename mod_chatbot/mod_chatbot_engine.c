/* mod_chatbot_engine.c - the chat turn engine: from a user message to a
 * streamed, stored, measured answer.
 *
 * A turn: claim the conversation (one generator at a time, across all
 * children), store the user message, get a backend slot (fair FIFO queue
 * shared by all children; circuit breaker; failover to the next backend on
 * connect failure or 503), send the context with libcurl's multi
 * interface, parse the reply incrementally (chat/stream.h), write every
 * delta into history as it arrives (so another connection can resume it)
 * and hand it to the driver, then record the outcome, stats and metrics.
 *
 * Everything runs on the driver's thread: the WebSocket connection loop
 * polls the backend sockets and the client socket together, so a Stop, a
 * vanished client or a timeout closes the upstream request at once (closing
 * the HTTP request is the only way to make Ollama stop generating).
 */
#include <string.h>
#include <curl/curl.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_protocol.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_settings.h"

#define QUEUE_POLL_MS 50
#define ACTIVE_POLL_MS 50
#define LOADING_AFTER_MS 1500
#define BEAT_EVERY_MS 1000
#define DONE_GRACE_MS 1000 /* after DONE, the body may take this long to end */
#define ERRBODY_MAX 8192
#define MAX_LINE (1024 * 1024)
#define LOG_CONTENT_MAX 4000 /* bytes of prompt/answer logged with ChatbotLogContent */

typedef enum {
    PH_IDLE = 0,
    PH_QUEUED,
    PH_RUNNING,
} phase_t;

typedef struct turn_priv {
    chatbot_turn_t pub; /* first: drivers see this part */
    chatbot_engine_t *e;
    phase_t phase;
    apr_pool_t *pool;    /* cleared after every turn */
    apr_uint64_t token;  /* generation token in the store */
    apr_uint64_t ticket; /* backend queue ticket */
    int backend_i;       /* index in bot->backends */
    int slot_held;
    int queued_pos;
    CURL *easy;
    struct curl_slist *headers;
    chat_stream_t *parser;
    chat_wire_t parser_wire;
    chat_buf_t body;    /* request JSON */
    chat_buf_t errbody; /* non-2xx reply body */
    long http_status;
    int hdr_checked;
    int backend_error; /* an error line/event arrived */
    char backend_msg[300];
    const char *abort_code; /* set when we abort from the write callback */
    char abort_msg[300];
    apr_uint64_t t_start, t_queued, t_sent, t_first, t_last, t_beat, t_queue_poll;
    int loading_sent;
    int series;
    int health_down;        /* the backend failed; detail not yet written */
    apr_size_t stored;      /* bytes of pub.answer already in the store */
    apr_uint64_t t_stored;  /* when they were last written */
    const char *log_prompt; /* the user's text, kept only with ChatbotLogContent */
    int stateless;          /* no conversation: context in ctx, nothing stored */
    int branch_answer;      /* regenerate: the answer is a new version under
                             * pub.user_index (chat_store_msg_branch) */
    chat_msg_t *ctx;        /* stateless context, oldest first (in pool) */
    int nctx;
} turn_priv_t;

struct chatbot_engine {
    request_rec *r;
    apr_pool_t *pool;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    chatbot_turn_cb_t cb;
    void *baton;
    CURLM *multi;
    turn_priv_t turns[CHATBOT_MAX_TURNS];
    chat_buf_t scratch;
    struct engine_notes *notes; /* the request's, outlives the engine */
};

/* The access-log notes of the last turn, in buffers of the request (one
 * set per request, whatever the number of engines and turns: r->pool
 * lives as long as a WebSocket, an allocation per turn there would grow
 * without bound; the engine itself may be gone when the line is logged). */
struct engine_notes {
    char tokens[16], ttft[32];
    char model[CHAT_MODEL_NAME_MAX + 1]; /* a conversation's own model */
};

static struct engine_notes *engine_notes(request_rec *r)
{
    void *data = NULL;

    apr_pool_userdata_get(&data, "chatbot-engine-notes", r->pool);
    if (!data) {
        data = apr_pcalloc(r->pool, sizeof(struct engine_notes));
        apr_pool_userdata_setn(data, "chatbot-engine-notes", apr_pool_cleanup_null,
                               r->pool);
    }
    return data;
}

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

static CURLM *multi_get(void)
{
    int i;

    for (i = 0; i < MULTI_CACHE; i++) {
        CURLM *m = apr_atomic_xchgptr((volatile void **)&multi_cache[i].m, NULL);
        if (m) {
            return m;
        }
    }
    return curl_multi_init();
}

static void multi_put(CURLM *m)
{
    apr_uint64_t now = chatbot_now_ms();
    int i;

    for (i = 0; i < MULTI_CACHE; i++) {
        if (!multi_cache[i].m) {
            multi_cache[i].since = now;
            if (!apr_atomic_casptr((volatile void **)&multi_cache[i].m, m, NULL)) {
                return;
            }
        }
    }
    curl_multi_cleanup(m);
}

void chatbot_engine_prune(apr_uint64_t idle_ms)
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

static void turn_end(turn_priv_t *t, chatbot_outcome_t outcome, const char *code,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int turn_store_flush(turn_priv_t *t, int all);
static void breaker(turn_priv_t *t, int ok);

/* Records a turn's outcome as the backend's health, keeping the version
 * the last probe found. */
static void health_note(chat_store_t *st, chatbot_backend_t *be, int ok,
                        const char *detail)
{
    chat_store_backend_health(st, be->index, ok, NULL, detail, chatbot_now_ms());
}

/* ---- helpers shared with the front ends ------------------------------------------ */

chatbot_bot_t *chatbot_bot_get(server_rec *s, const char *name)
{
    chatbot_srv_conf *sc = chatbot_srv(s);

    if (!name || !*name) {
        return sc->default_bot_p;
    }
    return chatbot_bot_find(sc, name);
}

const char *chatbot_conv_resolve(request_rec *r, const chatbot_ident_t *id,
                                 chatbot_bot_t *bot, const char *conv_id, int create,
                                 chat_conv_info_t *out)
{
    chat_store_t *st = chatbot_store();
    chat_status_t rc;

    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    if (conv_id) {
        rc = chat_store_conv_get(st, &id->owner, conv_id, out);
    }
    else {
        rc = chat_store_conv_latest(st, &id->owner, bot ? bot->name : NULL, out);
        if (rc == CHAT_ENOTFOUND && create) {
            if (!bot) {
                bot = chatbot_srv(r->server)->default_bot_p;
            }
            rc = chat_store_conv_create(st, &id->owner, bot->name, NULL,
                                        chatbot_random64(), chatbot_now_ms(), out);
            if (rc == CHAT_OK) {
                chat_store_user_bump(st, &id->owner);
            }
        }
    }
    if (rc == CHAT_OK) {
        return NULL;
    }
    return chatbot_store_err(rc);
}

const char *chatbot_rate_check(const chatbot_ident_t *id, const chatbot_limits_t *lim,
                               apr_int64_t *retry_ms)
{
    chat_store_t *st = chatbot_store();
    int64_t retry = 0;
    chat_status_t rc;

    *retry_ms = 0;
    if (!st || (lim->rate.count == 0 && (!id->anonymous || lim->anon_rate.count == 0))) {
        return NULL;
    }
    /* The identity's own bucket first (a refused message then takes nothing
     * from its neighbours'), then, for anonymous identities, the budget of
     * the client's address, which a new cookie does not refill. */
    rc = lim->rate.count
             ? chat_store_rate_take(st, &id->owner, &lim->rate, chatbot_now_ms(), &retry)
             : CHAT_OK;
    if (rc == CHAT_OK && id->anonymous && lim->anon_rate.count) {
        rc = chat_store_rate_take(st, &id->addr, &lim->anon_rate, chatbot_now_ms(),
                                  &retry);
    }
    if (rc == CHAT_ELIMIT) {
        *retry_ms = retry;
        chat_metrics_gauge_add(st, CHAT_G_RATE_LIMITED, 1);
        return CHAT_ERR_RATE_LIMITED;
    }
    return NULL;
}

/* ---- engine lifetime --------------------------------------------------------------- */

static void turn_release_curl(turn_priv_t *t)
{
    if (t->easy) {
        curl_multi_remove_handle(t->e->multi, t->easy);
    }
    if (t->headers) {
        curl_slist_free_all(t->headers);
        t->headers = NULL;
    }
}

static apr_status_t engine_cleanup(void *data)
{
    chatbot_engine_t *e = data;
    int i;

    /* Turns still running when the pool goes (aborted connection): end them
     * properly so the store is left consistent. */
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        turn_priv_t *t = &e->turns[i];
        if (t->phase != PH_IDLE) {
            memset(&e->cb, 0, sizeof(e->cb));
            turn_end(t, CHATBOT_OUT_STOPPED, NULL, "connection ended");
        }
    }
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        turn_priv_t *t = &e->turns[i];
        turn_release_curl(t);
        if (t->easy) {
            curl_easy_cleanup(t->easy);
            t->easy = NULL;
        }
        if (t->parser) {
            chat_stream_destroy(t->parser);
            t->parser = NULL;
        }
        chat_buf_free(&t->body);
        chat_buf_free(&t->errbody);
        chat_buf_free(&t->pub.answer);
    }
    if (e->multi) {
        multi_put(e->multi);
        e->multi = NULL;
    }
    chat_buf_free(&e->scratch);
    return APR_SUCCESS;
}

static apr_status_t engine_pool_kill(void *data)
{
    apr_pool_destroy(data);
    return APR_SUCCESS;
}

chatbot_engine_t *chatbot_engine_create(request_rec *r, const chatbot_limits_t *lim,
                                        const chatbot_ident_t *id,
                                        const chatbot_turn_cb_t *cb, void *baton)
{
    apr_allocator_t *al = NULL;
    apr_pool_t *pool = NULL;
    chatbot_engine_t *e;
    int i;

    /* Its own allocator: what the turns allocated is freed with the engine,
     * instead of staying with the connection (a request's allocator keeps
     * every block it ever gave out for as long as the connection lives). */
    if (apr_allocator_create(&al) != APR_SUCCESS ||
        apr_pool_create_unmanaged_ex(&pool, NULL, al) != APR_SUCCESS) {
        if (al) {
            apr_allocator_destroy(al);
        }
        return NULL;
    }
    apr_allocator_owner_set(al, pool);
    apr_pool_cleanup_register(r->pool, pool, engine_pool_kill, apr_pool_cleanup_null);
    e = apr_pcalloc(pool, sizeof(*e));
    e->r = r;
    e->pool = pool;
    e->notes = engine_notes(r);
    e->sc = chatbot_srv(r->server);
    e->lim = *lim;
    e->id = *id;
    e->cb = *cb;
    e->baton = baton;
    e->multi = multi_get();
    if (!e->multi) {
        chatbot_engine_destroy(e);
        return NULL;
    }
    /* Keep a few connections to the backends alive between turns. */
    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, 4L);
    chat_buf_init(&e->scratch);
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        e->turns[i].e = e;
        chat_buf_init(&e->turns[i].body);
        chat_buf_init(&e->turns[i].errbody);
        chat_buf_init(&e->turns[i].pub.answer);
    }
    apr_pool_cleanup_register(pool, e, engine_cleanup, apr_pool_cleanup_null);
    return e;
}

void chatbot_engine_destroy(chatbot_engine_t *e)
{
    if (e) {
        apr_pool_cleanup_kill(e->r->pool, e->pool, engine_pool_kill);
        apr_pool_destroy(e->pool);
    }
}

int chatbot_engine_active(chatbot_engine_t *e)
{
    int i, n = 0;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        n += e->turns[i].phase != PH_IDLE;
    }
    return n;
}

int chatbot_engine_has(chatbot_engine_t *e, const char *conv_id)
{
    int i;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != PH_IDLE && !strcmp(e->turns[i].pub.conv_id, conv_id)) {
            return 1;
        }
    }
    return 0;
}

/* ---- ending a turn -------------------------------------------------------------- */

static void turn_metrics(turn_priv_t *t, chat_store_t *st)
{
    chatbot_turn_t *p = &t->pub;
    int s = t->series;

    if (s < 0) {
        return;
    }
    if (p->outcome == CHATBOT_OUT_COMPLETE) {
        chat_metrics_add(st, s, CHAT_CTR_ANSWERS, 1);
    }
    else if (p->has_answer) {
        chat_metrics_add(st, s, CHAT_CTR_INTERRUPTED, 1);
    }
    if (p->outcome == CHATBOT_OUT_FAILED) {
        chat_metrics_add(st, s, CHAT_CTR_ERRORS, 1);
    }
    if (p->stats.completion_tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_TOKENS, (uint64_t)p->stats.completion_tokens);
    }
    else if (p->tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_TOKENS, (uint64_t)p->tokens);
    }
    if (p->stats.prompt_tokens > 0) {
        chat_metrics_add(st, s, CHAT_CTR_PROMPT_TOKENS, (uint64_t)p->stats.prompt_tokens);
    }
    if (t->t_first) {
        chat_metrics_observe(st, s, CHAT_HIST_TTFT, p->ttft_ms);
    }
    if (p->outcome == CHATBOT_OUT_COMPLETE) {
        chat_metrics_observe(st, s, CHAT_HIST_DURATION, p->duration_ms);
        if (p->stats.tokens_per_sec > 0) {
            chat_metrics_observe(st, s, CHAT_HIST_TPS, p->stats.tokens_per_sec);
        }
    }
    if (t->t_queued) {
        chat_metrics_observe(st, s, CHAT_HIST_QUEUE_WAIT, p->queue_ms);
    }
}

static const char *outcome_name(chatbot_outcome_t o)
{
    switch (o) {
    case CHATBOT_OUT_COMPLETE:
        return "complete";
    case CHATBOT_OUT_STOPPED:
        return "stopped";
    case CHATBOT_OUT_FAILED:
        return "failed";
    default:
        return "none";
    }
}

/* Text for a key="value" field of the turn log line: only '"' and '\\' are
 * escaped here, because the error log itself escapes control characters,
 * non-ASCII bytes and (again) backslashes. */
static const char *log_quote(apr_pool_t *p, const char *s, apr_size_t len)
{
    char *out = apr_palloc(p, 2 * len + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            *o++ = '\\';
        }
        *o++ = s[i] ? s[i] : ' ';
    }
    *o = '\0';
    return out;
}

/* 1 for the codes of a failing backend (not of the user's request). */
static int backend_failure(const char *code)
{
    return code && (!strcmp(code, CHAT_ERR_BACKEND_UNREACHABLE) ||
                    !strcmp(code, CHAT_ERR_BACKEND_TIMEOUT) ||
                    !strcmp(code, CHAT_ERR_MODEL_NOT_FOUND) ||
                    !strcmp(code, CHAT_ERR_BACKEND_BUSY) ||
                    !strcmp(code, CHAT_ERR_BACKEND_ERROR) ||
                    !strcmp(code, CHAT_ERR_BACKEND_PROTOCOL) ||
                    !strcmp(code, CHAT_ERR_BACKEND_BAD_REQUEST) ||
                    !strcmp(code, CHAT_ERR_INTERRUPTED));
}

/* What the user is told about a failed turn (p->err_msg): for backend
 * failures and internal errors a fixed sentence, never the URL, the
 * backend's reply or a path (those stay in p->err_detail for the log and
 * the health status). Other codes' messages are the module's own words. */
static void user_error_text(chatbot_turn_t *p, const char *code)
{
    const char *text = chat_error_public_text(code ? code : CHAT_ERR_INTERNAL);

    if (!text) {
        return;
    }
    if (code && !strcmp(code, CHAT_ERR_MODEL_NOT_FOUND)) {
        /* the model's name is public (hello, bots): say which */
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "The model '%s' of bot '%s' is not available on its server. Please "
                     "tell the administrator.",
                     p->model, p->bot->name);
    }
    else {
        apr_cpystrn(p->err_msg, text, sizeof(p->err_msg));
    }
    if (p->has_answer || p->tokens > 0) {
        apr_cpystrn(p->err_msg + strlen(p->err_msg), " The partial answer is kept.",
                    sizeof(p->err_msg) - strlen(p->err_msg));
    }
}

static void turn_end(turn_priv_t *t, chatbot_outcome_t outcome, const char *code,
                     const char *fmt, ...)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();
    apr_uint64_t now = chatbot_now_ms();
    va_list ap;
    int was_running = t->phase == PH_RUNNING;

    if (t->phase == PH_IDLE) {
        return;
    }
    turn_release_curl(t);
    turn_store_flush(t, 1); /* what chat_stream_finish or a stop left unstored */
    p->outcome = outcome;
    p->err_code = code;
    if (fmt) {
        /* via a copy: callers often pass p->err_msg itself as an argument */
        char msg[sizeof(p->err_msg)];
        va_start(ap, fmt);
        apr_vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        apr_cpystrn(p->err_detail, msg, sizeof(p->err_detail));
        apr_cpystrn(p->err_msg, msg, sizeof(p->err_msg));
    }
    if (outcome == CHATBOT_OUT_FAILED) {
        user_error_text(p, code);
    }
    p->duration_ms = (double)(now - t->t_start);
    if (outcome == CHATBOT_OUT_STOPPED) {
        apr_cpystrn(p->stats.done_reason, p->stop_reason ? p->stop_reason : "stopped",
                    sizeof(p->stats.done_reason));
    }
    if (p->stats.tokens_per_sec <= 0 && p->tokens > 1 && t->t_first && now > t->t_first) {
        p->stats.tokens_per_sec = (p->tokens - 1) * 1000.0 / (double)(now - t->t_first);
    }
    if (st) {
        if (t->slot_held) {
            chat_store_backend_release(st, p->backend->index, t->ticket);
        }
        else if (t->phase == PH_QUEUED && p->backend) {
            chat_store_backend_cancel(st, p->backend->index, t->ticket);
        }
        if (t->health_down && p->backend) {
            health_note(st, p->backend, 0, p->err_detail);
        }
        if (t->stateless) {
            /* nothing stored */
        }
        else {
            /* Keep a failure and its reason in the conversation (it is
             * skipped when building the model's context). After a partial
             * answer it is that answer's reason: history shows the answer
             * as failed with this code and sentence, not as a Stop.
             * Stored as "<code>: <message>"; views split the code out. */
            const char *txt = outcome == CHATBOT_OUT_FAILED
                                  ? apr_pstrcat(t->pool, code ? code : CHAT_ERR_INTERNAL,
                                                ": ", p->err_msg, NULL)
                                  : NULL;
            uint32_t set = !p->has_answer                    ? 0
                           : outcome == CHATBOT_OUT_COMPLETE ? CHAT_MSG_COMPLETE
                                                             : CHAT_MSG_INTERRUPTED;
            if (txt && t->branch_answer && !p->has_answer) {
                /* a regenerate that failed at once: a version of its own */
                chat_store_msg_branch(st, &e->id.owner, p->conv_id, p->user_index,
                                      CHAT_ROLE_ASSISTANT, CHAT_MSG_ERROR, txt,
                                      strlen(txt), now, NULL);
                txt = NULL;
            }
            chat_store_turn_finish(st, &e->id.owner, p->conv_id, t->token, set, txt,
                                   txt ? strlen(txt) : 0, now);
        }
    }
    t->slot_held = 0;
    t->health_down = 0;
    if (st) {
        if (was_running) {
            chat_metrics_gauge_add(st, CHAT_G_GENERATING, -1);
        }
        else {
            chat_metrics_gauge_add(st, CHAT_G_QUEUED, -1);
        }
        if (code) {
            chat_metrics_error(st, code);
        }
        turn_metrics(t, st);
    }
    /* One line per turn. Free text (backend errors, and the conversation
     * itself only with ChatbotLogContent) is quoted so that it cannot pass
     * for another field; httpd escapes newlines, so it cannot forge a line.
     * A turn the backend failed is a warning: its details (URL, status,
     * the backend's own words) are in this line and nowhere users see. */
    if (APLOG_R_IS_LEVEL(e->r, APLOG_INFO) ||
        (outcome == CHATBOT_OUT_FAILED && APLOG_R_IS_LEVEL(e->r, APLOG_WARNING) &&
         backend_failure(code))) {
        const char *content = "";
        if (e->lim.log_content) {
            content = apr_psprintf(
                t->pool, " prompt=\"%s\" answer=\"%s\"",
                t->log_prompt ? log_quote(t->pool, t->log_prompt, strlen(t->log_prompt))
                              : "",
                log_quote(t->pool, p->answer.data ? p->answer.data : "",
                          p->answer.len > LOG_CONTENT_MAX ? LOG_CONTENT_MAX
                                                          : p->answer.len));
        }
        ap_log_rerror(
            APLOG_MARK,
            outcome == CHATBOT_OUT_FAILED && backend_failure(code) ? APLOG_WARNING
                                                                   : APLOG_INFO,
            0, e->r,
            APLOGNO(
                10930) "chatbot: turn user=%s bot=%s model=%s backend=%s conversation=%s "
                       "outcome=%s%s%s%s tokens=%d ttft_ms=%.1f duration_ms=%.1f "
                       "queue_ms=%.1f%s%s%s%s",
            e->id.label, p->bot->name, p->model, p->backend ? p->backend->name : "-",
            t->stateless ? "-" : p->conv_id, outcome_name(outcome), code ? " code=" : "",
            code ? code : "",
            (outcome == CHATBOT_OUT_STOPPED && p->stop_reason)
                ? apr_pstrcat(t->pool, " reason=", p->stop_reason, NULL)
                : "",
            p->tokens, p->ttft_ms, p->duration_ms, p->queue_ms,
            (code && *p->err_detail) ? " error=\"" : "",
            (code && *p->err_detail)
                ? log_quote(t->pool, p->err_detail, strlen(p->err_detail))
                : "",
            (code && *p->err_detail) ? "\"" : "", content);
    }
    /* Request notes for the access log (last turn wins). */
    apr_table_setn(e->r->notes, "chatbot-bot", p->bot->name);
    if (p->model == p->bot->model) {
        apr_table_setn(e->r->notes, "chatbot-model", p->model);
    }
    else {
        apr_cpystrn(e->notes->model, p->model, sizeof(e->notes->model));
        apr_table_setn(e->r->notes, "chatbot-model", e->notes->model);
    }
    /* Formatted into the request's note buffers (engine_notes). */
    apr_snprintf(e->notes->tokens, sizeof(e->notes->tokens), "%d", p->tokens);
    apr_snprintf(e->notes->ttft, sizeof(e->notes->ttft), "%.0f", p->ttft_ms);
    apr_table_setn(e->r->notes, "chatbot-tokens", e->notes->tokens);
    apr_table_setn(e->r->notes, "chatbot-ttft-ms", e->notes->ttft);
    t->phase = PH_IDLE;
    if (e->cb.on_done) {
        e->cb.on_done(e->baton, p);
    }
    if (t->parser) {
        chat_stream_reset(t->parser);
    }
    chat_buf_reset(&t->body, 64 * 1024);
    chat_buf_reset(&t->errbody, 16 * 1024);
    chat_buf_reset(&p->answer, 64 * 1024);
    if (t->pool) {
        apr_pool_clear(t->pool);
    }
    p->model = p->bot ? p->bot->model : NULL; /* a conversation's was in t->pool */
}

void chatbot_engine_stop(chatbot_engine_t *e, const char *conv_id, const char *reason)
{
    int i;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        turn_priv_t *t = &e->turns[i];
        if (t->phase == PH_IDLE || (conv_id && strcmp(t->pub.conv_id, conv_id))) {
            continue;
        }
        t->pub.stop_reason = reason;
        turn_end(t, CHATBOT_OUT_STOPPED, NULL, NULL);
    }
}

/* ---- the backend request --------------------------------------------------------- */

static int on_event(void *baton, const chat_event_t *ev)
{
    turn_priv_t *t = baton;
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
            breaker(t, 1);
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

/* Writes the part of the answer not yet in the store, under one lock for
 * everything a read from the backend brought (a lock per token made the
 * global mutex the bottleneck); all: everything now (the turn ends).
 * Returns 0, or -1 with abort_code set. */
static int turn_store_flush(turn_priv_t *t, int all)
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
    if (!t->abort_code) {
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
            apr_snprintf(t->abort_msg, sizeof(t->abort_msg),
                         "history storage is full (%s)", chat_status_str(rc));
        }
    }
    return -1;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *baton)
{
    turn_priv_t *t = baton;
    size_t n = size * nmemb;
    chat_status_t rc;

    if (!t->hdr_checked) {
        char *ct = NULL;
        t->hdr_checked = 1;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->http_status);
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_TYPE, &ct);
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
    if (t->phase != PH_RUNNING) {
        return 0;
    }
    rc = chat_stream_feed(t->parser, data, n);
    if (turn_store_flush(t, 0) < 0) {
        return 0;
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

typedef struct {
    apr_pool_t *p;
    apr_array_header_t *msgs;
} ctx_collect_t;

static void collect_msg(void *baton, const chat_msg_info_t *info, const char *text,
                        size_t len)
{
    ctx_collect_t *c = baton;
    chat_msg_t *m = apr_array_push(c->msgs);

    m->role = info->role;
    m->content = apr_pstrmemdup(c->p, text, len);
    m->len = len;
}

/* Builds the request and hands it to curl. Returns NULL or an error code. */
static const char *turn_send(turn_priv_t *t)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chatbot_bot_t *bot = p->bot;
    chatbot_backend_t *be = p->backend;
    chat_store_t *st = chatbot_store();
    ctx_collect_t cc;
    chat_msg_t *sys;
    chat_options_t opts;
    int n;

    cc.p = t->pool;
    cc.msgs = apr_array_make(t->pool, 24, sizeof(chat_msg_t));
    sys = apr_array_push(cc.msgs);
    sys->role = CHAT_ROLE_SYSTEM;
    sys->content = bot->system_prompt;
    sys->len = strlen(bot->system_prompt);
    opts = bot->options;
    p->model = bot->model;
    if (!t->stateless) {
        /* the conversation's own settings, as far as they are allowed now */
        chatbot_settings_t cs;
        chatbot_settings_load(t->pool, &e->lim, &e->id.owner, p->conv_id, &cs);
        if (cs.model) {
            p->model = cs.model;
        }
        if (cs.system) {
            sys->content = cs.system;
            sys->len = cs.system_len;
        }
        if (cs.has_temperature) {
            opts.temperature = cs.temperature;
        }
    }
    if (t->stateless) {
        for (n = 0; n < t->nctx; n++) {
            *(chat_msg_t *)apr_array_push(cc.msgs) = t->ctx[n];
        }
    }
    else {
        n = chat_store_msg_tail(
            st, &e->id.owner, p->conv_id, (uint32_t)bot->context_messages,
            (size_t)bot->context_tokens * 4, &e->scratch, collect_msg, &cc);
        chat_buf_reset(&e->scratch, 64 * 1024);
    }
    if (n < 0) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg), "the conversation is gone");
        return CHAT_ERR_NOT_FOUND;
    }
    if (!sys->len) {
        /* an empty system prompt is not sent */
        cc.msgs->elts += sizeof(chat_msg_t);
        cc.msgs->nelts--;
    }
    chat_buf_reset(&t->body, 64 * 1024);
    if (chat_request_build(be->wire, p->model, (const chat_msg_t *)cc.msgs->elts,
                           (size_t)cc.msgs->nelts, &opts, 1, &t->body) != CHAT_OK) {
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
    if (!t->easy) {
        t->easy = curl_easy_init();
        if (!t->easy) {
            return CHAT_ERR_INTERNAL;
        }
    }
    else {
        curl_easy_reset(t->easy);
    }
    t->headers = curl_slist_append(NULL, "Content-Type: application/json");
    t->headers = curl_slist_append(t->headers, be->wire == CHAT_WIRE_OLLAMA
                                                   ? "Accept: application/x-ndjson"
                                                   : "Accept: text/event-stream");
    t->headers = curl_slist_append(t->headers, "Expect:");
    if (be->key) {
        t->headers = curl_slist_append(
            t->headers, apr_pstrcat(t->pool, "Authorization: Bearer ", be->key, NULL));
    }
    curl_easy_setopt(t->easy, CURLOPT_URL, be->chat_url);
    curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->body.data);
    curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)t->body.len);
    curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->lim.connect_timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_USERAGENT, CHATBOT_SERVER_ID);
    curl_easy_setopt(t->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(t->easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(t->easy, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
    /* Ask for no compression (a compressing proxy may hold tokens back),
     * but decode a gzip/deflate/br/zstd body a server sends anyway: with
     * any CURLOPT_ACCEPT_ENCODING set libcurl decodes what it supports. */
    curl_easy_setopt(t->easy, CURLOPT_ACCEPT_ENCODING, "identity");
    t->http_status = 0;
    t->hdr_checked = 0;
    t->backend_error = 0;
    t->abort_code = NULL;
    chat_buf_reset(&t->errbody, 16 * 1024);
    if (curl_multi_add_handle(e->multi, t->easy) != CURLM_OK) {
        return CHAT_ERR_INTERNAL;
    }
    t->t_sent = chatbot_now_ms();
    t->loading_sent = 0;
    return NULL;
}

/* Tries backends from t->backend_i on: the breaker must allow it, then a
 * slot (or a place in the queue). Returns NULL (running or queued) or an
 * error code with err_msg set. */
static const char *turn_acquire(turn_priv_t *t)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();
    apr_array_header_t *bes = p->bot->backends;
    const char *why = NULL;
    int open_seen = 0, full_seen = 0;

    for (; t->backend_i < bes->nelts; t->backend_i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(bes, t->backend_i, chatbot_backend_t *);
        int32_t pos = 0;
        chat_status_t rc;
        int allow;
        apr_uint64_t now = chatbot_now_ms();

        rc = chat_store_backend_acquire(st, be->index, t->ticket, now, &pos);
        if (rc == CHAT_OK) {
            /* The breaker is asked only when a request would go out: a
             * half-open backend's single probe must be a real request, not
             * a turn that then waits in the queue. */
            allow = chat_store_breaker_allow(
                st, be->index, now, (uint64_t)apr_time_as_msec(e->sc->breaker_cooldown));
            if (!allow) {
                chat_store_backend_release(st, be->index, t->ticket);
                open_seen = 1;
                continue;
            }
        }
        else if (rc == CHAT_EAGAIN && !t->stateless && pos != t->queued_pos) {
            chat_store_gen_state(st, p->conv_id, t->token, CHAT_CONV_QUEUED, pos);
        }
        p->backend = be;
        t->series = p->bot->series ? p->bot->series[t->backend_i] : -1;
        if (rc == CHAT_OK) {
            t->slot_held = 1;
            p->queue_ms = (double)(now - t->t_queued);
            chat_metrics_gauge_add(st, CHAT_G_QUEUED, -1);
            chat_metrics_gauge_add(st, CHAT_G_GENERATING, 1);
            t->phase = PH_RUNNING;
            if (!t->stateless) {
                chat_store_gen_state(st, p->conv_id, t->token, CHAT_CONV_GENERATING, 0);
                chat_store_user_bump(st, &e->id.owner);
            }
            if (e->cb.on_status) {
                e->cb.on_status(e->baton, p, "generating", 0);
            }
            if ((why = turn_send(t)) != NULL) {
                return why;
            }
            return NULL;
        }
        if (rc == CHAT_EAGAIN) {
            t->t_queue_poll = now;
            if (pos != t->queued_pos) {
                if (!t->stateless) {
                    chat_store_user_bump(st, &e->id.owner);
                }
                t->queued_pos = pos;
                if (e->cb.on_status) {
                    e->cb.on_status(e->baton, p, "queued", pos);
                }
            }
            return NULL;
        }
        full_seen = 1; /* CHAT_EFULL: try the next backend */
    }
    if (full_seen) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "every backend of bot '%s' is busy and its waiting queue is full; "
                     "please retry in a moment",
                     p->bot->name);
        return CHAT_ERR_QUEUE_FULL;
    }
    if (open_seen) {
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "the backend of bot '%s' is failing (circuit breaker open after %d "
                     "consecutive failures); retrying automatically in up to %d s",
                     p->bot->name, e->sc->breaker_threshold,
                     (int)apr_time_sec(e->sc->breaker_cooldown));
        return CHAT_ERR_BACKEND_UNREACHABLE;
    }
    apr_snprintf(p->err_msg, sizeof(p->err_msg), "bot '%s' has no backend", p->bot->name);
    return CHAT_ERR_BACKEND_UNREACHABLE;
}

/* Failed before any token with a failure worth another backend? */
static int try_failover(turn_priv_t *t)
{
    chat_store_t *st = chatbot_store();

    if (t->pub.tokens > 0 || t->backend_i + 1 >= t->pub.bot->backends->nelts) {
        return 0;
    }
    if (t->slot_held) {
        chat_store_backend_release(st, t->pub.backend->index, t->ticket);
    }
    if (t->health_down) {
        health_note(st, t->pub.backend, 0, t->pub.err_msg);
    }
    t->slot_held = 0;
    t->health_down = 0;
    turn_release_curl(t);
    ap_log_rerror(
        APLOG_MARK, APLOG_NOTICE, 0, t->e->r,
        APLOGNO(
            10932) "chatbot: backend %s failed (%s); failing over to the next backend of "
                   "bot %s",
        t->pub.backend->name, t->pub.err_msg, t->pub.bot->name);
    chat_metrics_gauge_add(st, CHAT_G_GENERATING, -1);
    chat_metrics_gauge_add(st, CHAT_G_QUEUED, 1);
    t->phase = PH_QUEUED;
    t->queued_pos = 0;
    t->backend_i++;
    {
        const char *code = turn_acquire(t);
        if (code) {
            turn_end(t, CHATBOT_OUT_FAILED, code, "%s", t->pub.err_msg);
        }
    }
    return 1;
}

/* Reports a success or failure of the current backend to its circuit
 * breaker. A failure's health detail is written once the error message is
 * known (turn_end, try_failover). */
static void breaker(turn_priv_t *t, int ok)
{
    chat_store_t *st = chatbot_store();

    if (!t->pub.backend) {
        return;
    }
    chat_store_breaker_result(st, t->pub.backend->index, ok, chatbot_now_ms(),
                              (uint32_t)t->e->sc->breaker_threshold,
                              (uint64_t)apr_time_as_msec(t->e->sc->breaker_cooldown));
    if (ok) {
        health_note(st, t->pub.backend, 1, "");
    }
    t->health_down = !ok;
}

/* 1 if a 404's error text is about the model (Ollama: 'model "x" not
 * found, try pulling it first'; OpenAI/vLLM: 'The model `x` does not
 * exist'), 0 if it is a plain "not found" of the path. */
static int error_names_model(const char *msg)
{
    return ap_strcasestr(msg, "model") != NULL;
}

/* The transfer of t finished with curl result res. */
static void turn_transfer_done(turn_priv_t *t, CURLcode res)
{
    chatbot_turn_t *p = &t->pub;
    chatbot_backend_t *be = p->backend;
    char emsg[300];
    chat_status_t fin;

    if (!t->hdr_checked) {
        /* no body at all (Content-Length: 0, HEAD-like): the write callback
         * never ran */
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &t->http_status);
    }
    if (t->abort_code) {
        /* We aborted from a callback: protocol error or storage limit. */
        int backend_fault = !strcmp(t->abort_code, CHAT_ERR_BACKEND_PROTOCOL);
        apr_cpystrn(p->err_msg, t->abort_msg, sizeof(p->err_msg));
        if (backend_fault) {
            breaker(t, 0);
        }
        turn_end(t, CHATBOT_OUT_FAILED, t->abort_code, "%s", t->abort_msg);
        return;
    }
    if (t->http_status >= 200 && t->http_status < 300 && res != CURLE_OK &&
        res != CURLE_OPERATION_TIMEDOUT) {
        /* The connection broke after a 2xx: the answer may have been
         * complete already (done:true / [DONE] / a finish_reason came, then
         * the server dropped the connection without ending the body). */
        fin = chat_stream_finish(t->parser);
        if ((fin == CHAT_OK || chat_stream_is_done(t->parser)) && !t->backend_error) {
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
            return;
        }
    }
    if (res == CURLE_OK && t->http_status >= 200 && t->http_status < 300) {
        fin = chat_stream_finish(t->parser);
        /* once the server said the answer is done, bytes it sent after
         * that (a keep-alive comment after [DONE]...) are ignored */
        if ((fin == CHAT_OK || chat_stream_is_done(t->parser)) && !t->backend_error) {
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
            return;
        }
        if (t->backend_error) {
            /* A model error is not a sign the server is down. */
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                     "backend '%s' reported an error%s: %s", be->name,
                     p->tokens ? " mid-answer (partial answer kept)" : "",
                     t->backend_msg);
            return;
        }
        if (fin == CHAT_EINCOMPLETE) {
            breaker(t, 0);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_INTERRUPTED,
                     "backend '%s' ended the stream before the answer was complete%s",
                     be->name, p->tokens ? " (partial answer kept)" : "");
            return;
        }
        breaker(t, 0);
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_PROTOCOL,
                 "backend '%s' sent a reply that is not valid %s: %s", be->name,
                 be->wire == CHAT_WIRE_OLLAMA ? "Ollama NDJSON" : "OpenAI SSE",
                 chat_stream_error(t->parser));
        return;
    }
    if (res == CURLE_OK) {
        /* HTTP error status */
        long st = t->http_status;
        chat_backend_error_text(t->errbody.data ? t->errbody.data : "", t->errbody.len,
                                emsg, sizeof(emsg));
        if (st == 404 && !error_names_model(emsg)) {
            /* Not "model not found" but no such endpoint: a wrong path
             * prefix, type= or port (Ollama's mux says "404 page not
             * found", FastAPI {"detail":"Not Found"}, nginx an HTML page) */
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                     "backend '%s' has no %s endpoint at %s (HTTP 404%s%s); check the "
                     "URL's path prefix and type= of ChatbotBackend",
                     be->name,
                     be->wire == CHAT_WIRE_OLLAMA ? "Ollama" : "OpenAI-compatible",
                     be->chat_url, *emsg ? ": " : "", emsg);
            return;
        }
        if (st == 404) {
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_MODEL_NOT_FOUND,
                     "model '%s' is not available on backend '%s'%s%s; pull it first "
                     "(ollama pull %s) or fix ChatbotModel",
                     p->model, be->name, *emsg ? ": " : "", emsg, p->model);
            return;
        }
        if (st == 503 || st == 429) {
            apr_snprintf(p->err_msg, sizeof(p->err_msg), "HTTP %ld %s", st, emsg);
            breaker(t, 0);
            if (try_failover(t)) {
                return;
            }
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_BUSY,
                     "backend '%s' is busy (HTTP %ld%s%s); please retry in a moment",
                     be->name, st, *emsg ? ": " : "", emsg);
            return;
        }
        if (st == 400 || st == 422) {
            breaker(t, 1);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_BAD_REQUEST,
                     "backend '%s' rejected the request (HTTP %ld)%s%s", be->name, st,
                     *emsg ? ": " : "", emsg);
            return;
        }
        breaker(t, st < 500);
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                 "backend '%s' answered HTTP %ld%s%s%s", be->name, st, *emsg ? ": " : "",
                 emsg,
                 (st == 401 || st == 403) ? " (check the key= of ChatbotBackend)" : "");
        return;
    }
    switch (res) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        apr_snprintf(p->err_msg, sizeof(p->err_msg),
                     "cannot connect to backend '%s' at %s (%s)", be->name, be->url,
                     curl_easy_strerror(res));
        breaker(t, 0);
        if (try_failover(t)) {
            return;
        }
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_UNREACHABLE,
                 "cannot connect to backend '%s' at %s (%s); is the server running?",
                 be->name, be->url, curl_easy_strerror(res));
        return;
    case CURLE_OPERATION_TIMEDOUT:
        if (!t->http_status && !t->hdr_checked) {
            long connected = 0;
            curl_easy_getinfo(t->easy, CURLINFO_CONNECT_TIME_T, &connected);
            apr_snprintf(p->err_msg, sizeof(p->err_msg),
                         "backend '%s' at %s did not accept a connection within %d ms",
                         be->name, be->url, (int)t->e->lim.connect_timeout_ms);
            breaker(t, 0);
            if (try_failover(t)) {
                return;
            }
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_UNREACHABLE, "%s",
                     p->err_msg);
            return;
        }
        breaker(t, 0);
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                 "backend '%s' timed out", be->name);
        return;
    default:
        breaker(t, 0);
        if (p->tokens > 0) {
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_INTERRUPTED,
                     "the connection to backend '%s' was lost mid-answer (%s); the "
                     "partial answer is kept",
                     be->name, curl_easy_strerror(res));
        }
        else {
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_ERROR,
                     "backend '%s' closed the connection without an answer (%s)",
                     be->name, curl_easy_strerror(res));
        }
        return;
    }
}

/* ---- starting a turn ----------------------------------------------------------------
 */

/* The context of a stateless turn: the caller's history then the new
 * message, cut like chat_store_msg_tail cuts a stored conversation (the
 * newest messages, at most context_messages of them and context_tokens * 4
 * bytes, the newest always). The texts stay the caller's. */
static void stateless_context(turn_priv_t *t, const chatbot_turn_req_t *req)
{
    chatbot_bot_t *bot = req->bot;
    apr_size_t total = req->nhistory + 1, budget = (apr_size_t)bot->context_tokens * 4;
    apr_size_t taken = 0, bytes = 0, i;

    while (taken < total) {
        apr_size_t k = total - 1 - taken;
        apr_size_t len = k == req->nhistory ? req->len : req->history[k].len;
        if (bot->context_messages > 0 && taken >= (apr_size_t)bot->context_messages) {
            break;
        }
        if (taken > 0 && bytes + len > budget) {
            break;
        }
        bytes += len;
        taken++;
    }
    t->ctx = apr_palloc(t->pool, sizeof(chat_msg_t) * taken);
    t->nctx = (int)taken;
    for (i = 0; i < taken; i++) {
        apr_size_t k = total - taken + i;
        if (k == req->nhistory) {
            t->ctx[i].role = CHAT_ROLE_USER;
            t->ctx[i].content = req->content;
            t->ctx[i].len = req->len;
        }
        else {
            t->ctx[i] = req->history[k];
        }
    }
}

/* A new message's turn in the store: generation, message, list at once. */
static chat_status_t turn_start(turn_priv_t *t, const chatbot_turn_req_t *req,
                                apr_uint64_t now)
{
    return chat_store_turn_start(chatbot_store(), &t->e->id.owner, t->pub.conv_id,
                                 t->token, CHAT_CONV_QUEUED, req->content, req->len,
                                 (req->content[0] == '!' ? CHAT_MSG_COMMAND : 0) |
                                     req->msg_flags,
                                 now, &t->pub.user_index);
}

const char *chatbot_turn_start(chatbot_engine_t *e, const chatbot_turn_req_t *req,
                               char *errmsg, apr_size_t errcap)
{
    chat_store_t *st = chatbot_store();
    turn_priv_t *t = NULL;
    chatbot_turn_t *p;
    chat_status_t rc;
    apr_uint64_t now = chatbot_now_ms();
    const char *code;
    int i, one_step;

    if (!st) {
        apr_cpystrn(errmsg, "the chat store is not available", errcap);
        return CHAT_ERR_INTERNAL;
    }
    if (!req->conv_id && (req->mode != CHATBOT_TURN_NEW || !req->content)) {
        apr_cpystrn(errmsg, "a stateless turn needs a new message", errcap);
        return CHAT_ERR_BAD_REQUEST;
    }
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != PH_IDLE && req->conv_id &&
            !strcmp(e->turns[i].pub.conv_id, req->conv_id)) {
            apr_cpystrn(errmsg,
                        "this conversation is already generating an answer; stop "
                        "it first",
                        errcap);
            return CHAT_ERR_BUSY;
        }
        if (!t && e->turns[i].phase == PH_IDLE) {
            t = &e->turns[i];
        }
    }
    if (!t) {
        apr_snprintf(errmsg, errcap,
                     "at most %d answers can be generated at once per "
                     "connection",
                     CHATBOT_MAX_TURNS);
        return CHAT_ERR_BUSY;
    }
    if (!t->pool && apr_pool_create(&t->pool, e->pool) != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    p = &t->pub;
    memset(&p->stats, 0, sizeof(p->stats));
    chat_stats_init(&p->stats);
    t->stateless = req->conv_id == NULL;
    t->branch_answer = 0;
    t->ctx = NULL;
    t->nctx = 0;
    apr_cpystrn(p->conv_id, req->conv_id ? req->conv_id : "", sizeof(p->conv_id));
    p->msg_id = req->msg_id ? apr_pstrdup(t->pool, req->msg_id) : NULL;
    p->bot = req->bot;
    p->model = req->bot->model;
    p->backend = NULL;
    p->has_answer = 0;
    p->outcome = CHATBOT_OUT_NONE;
    p->err_code = NULL;
    p->err_msg[0] = '\0';
    p->err_detail[0] = '\0';
    p->stop_reason = NULL;
    p->ttft_ms = p->duration_ms = p->queue_ms = 0;
    p->tokens = 0;
    t->stored = 0;
    t->t_stored = 0;
    t->token = chatbot_random64();
    t->ticket = chatbot_random64();
    t->backend_i = 0;
    t->slot_held = 0;
    t->queued_pos = 0;
    t->t_start = now;
    t->t_queued = t->t_sent = t->t_first = t->t_last = 0;
    t->t_beat = now;
    t->series = -1;
    t->log_prompt = NULL;

    if (t->stateless) {
        stateless_context(t, req);
        p->user_index = (uint32_t)req->nhistory;
        goto accepted;
    }
    /* a new message: the generation, the message and the list in one call */
    one_step = req->mode == CHATBOT_TURN_NEW;
    rc = one_step ? turn_start(t, req, now)
                  : chat_store_gen_begin(st, &e->id.owner, p->conv_id, t->token,
                                         CHAT_CONV_QUEUED, now);
    if (rc == CHAT_EBUSY) {
        /* The store takes a conversation over at once when the process
         * generating in it died. A generator of unknown process that has
         * not written for longer than any answer may take is gone too. */
        chat_conv_info_t ci;
        if (chat_store_conv_get(st, &e->id.owner, p->conv_id, &ci) == CHAT_OK &&
            now - ci.updated_ms > (apr_uint64_t)e->lim.total_timeout_ms + 60000) {
            chat_store_gen_end(st, p->conv_id, ci.gen_token, now);
            chat_store_msg_flags(st, &e->id.owner, p->conv_id, CHAT_MSG_INTERRUPTED,
                                 CHAT_MSG_STREAMING, now);
            rc = one_step ? turn_start(t, req, now)
                          : chat_store_gen_begin(st, &e->id.owner, p->conv_id, t->token,
                                                 CHAT_CONV_QUEUED, now);
        }
    }
    if (rc != CHAT_OK && rc != CHAT_EBUSY && rc != CHAT_ENOTFOUND) {
        code = chatbot_store_err(rc); /* the message could not be stored */
        apr_cpystrn(errmsg, chatbot_store_err_text(code), errcap);
        return code;
    }
    if (rc != CHAT_OK) {
        if (rc == CHAT_EBUSY) {
            apr_cpystrn(errmsg,
                        "this conversation is already generating an answer "
                        "(in another tab?); stop it first",
                        errcap);
            return CHAT_ERR_BUSY;
        }
        apr_cpystrn(errmsg, "no such conversation", errcap);
        return CHAT_ERR_NOT_FOUND;
    }
    code = NULL;
    if (one_step) {
        goto accepted;
    }
    if (req->mode == CHATBOT_TURN_NEW || req->mode == CHATBOT_TURN_EDIT) {
        uint32_t parent = CHAT_MSG_NO_PARENT;
        int branch = 0;
        if (req->mode == CHATBOT_TURN_EDIT) {
            /* an edit starts a branch: the new question is a version of the
             * edited one (same parent); the old turns stay, reachable by
             * selecting the earlier version */
            chatbot_tree_t tr;
            if (chatbot_tree_load(st, &e->id.owner, p->conv_id, &e->scratch, &tr) !=
                    CHAT_OK ||
                req->edit_index >= tr.n) {
                code = CHAT_ERR_NOT_FOUND;
                apr_snprintf(errmsg, errcap, "message %u does not exist",
                             req->edit_index);
            }
            else if (tr.role[req->edit_index] != CHAT_ROLE_USER) {
                code = CHAT_ERR_BAD_REQUEST;
                apr_snprintf(errmsg, errcap, "message %u is not a user message",
                             req->edit_index);
            }
            else if (!chatbot_store_has_versions(st)) {
                /* a store without versions: the later turns are replaced */
                chat_store_msg_truncate(st, &e->id.owner, p->conv_id, req->edit_index,
                                        now);
            }
            else {
                parent = tr.parent[req->edit_index];
                branch = 1;
            }
            chatbot_tree_free(&tr);
        }
        if (!code) {
            uint32_t fl =
                (req->content[0] == '!' ? CHAT_MSG_COMMAND : 0) | req->msg_flags;
            rc = branch ? chat_store_msg_branch(st, &e->id.owner, p->conv_id, parent,
                                                CHAT_ROLE_USER, fl, req->content,
                                                req->len, now, &p->user_index)
                        : chat_store_msg_append(st, &e->id.owner, p->conv_id,
                                                CHAT_ROLE_USER, fl, req->content,
                                                req->len, now, &p->user_index);
            if (rc == CHAT_ELIMIT && branch) {
                code = CHAT_ERR_TOO_LARGE;
                apr_snprintf(errmsg, errcap, "a message keeps at most %u versions",
                             CHAT_MSG_MAX_VERSIONS);
            }
            else if (rc != CHAT_OK) {
                code = chatbot_store_err(rc);
                apr_cpystrn(errmsg, chatbot_store_err_text(code), errcap);
            }
        }
    }
    else { /* regenerate: a new version of the answer to the active path's
            * last user message (after an answer, an error, or nothing) */
        chatbot_tree_t tr;
        uint32_t u = CHAT_MSG_NO_PARENT, nsib = 0;
        if (chatbot_tree_load(st, &e->id.owner, p->conv_id, &e->scratch, &tr) ==
            CHAT_OK) {
            u = chatbot_tree_last_user(&tr);
            for (i = 0; u != CHAT_MSG_NO_PARENT && i < (int)tr.n; i++) {
                nsib += tr.parent[i] == u;
            }
            chatbot_tree_free(&tr);
        }
        if (u == CHAT_MSG_NO_PARENT) {
            code = CHAT_ERR_BAD_REQUEST;
            apr_cpystrn(errmsg, "there is no message to regenerate an answer for",
                        errcap);
        }
        else if (!chatbot_store_has_versions(st)) {
            chat_store_msg_truncate(st, &e->id.owner, p->conv_id, u + 1, now);
            p->user_index = u;
        }
        else if (nsib >= CHAT_MSG_MAX_VERSIONS) {
            code = CHAT_ERR_TOO_LARGE;
            apr_snprintf(errmsg, errcap, "an answer keeps at most %u versions",
                         CHAT_MSG_MAX_VERSIONS);
        }
        else {
            p->user_index = u;
            t->branch_answer = 1;
        }
        chat_buf_reset(&e->scratch, 64 * 1024);
    }
    if (code) {
        chat_store_gen_end(st, p->conv_id, t->token, now);
        return code;
    }
    /* a new turn revives a stopped bot session */
    chat_store_conv_flags(st, &e->id.owner, p->conv_id, 0, CHAT_CONV_STOPPED, now);
    chat_store_user_bump(st, &e->id.owner);

accepted:
    /* Copied only once the turn is sure to end in turn_end (which clears
     * the pool). */
    if (e->lim.log_content && req->content &&
        (req->mode == CHATBOT_TURN_NEW || req->mode == CHATBOT_TURN_EDIT)) {
        t->log_prompt =
            apr_pstrmemdup(t->pool, req->content,
                           req->len > LOG_CONTENT_MAX ? LOG_CONTENT_MAX : req->len);
    }
    if (e->cb.on_accepted) {
        e->cb.on_accepted(e->baton, p);
    }
    /* Every turn starts "queued" (counted in the queued gauge) until
     * turn_acquire gets a backend slot. */
    t->phase = PH_QUEUED;
    t->t_queued = now;
    chat_metrics_gauge_add(st, CHAT_G_QUEUED, 1);
    code = turn_acquire(t);
    if (code) {
        turn_end(t, CHATBOT_OUT_FAILED, code, "%s", p->err_msg);
    }
    return NULL;
}

/* ---- driving ------------------------------------------------------------------------
 */

int chatbot_engine_wait_ms(chatbot_engine_t *e)
{
    int i, w = -1;

    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        int tw;
        if (e->turns[i].phase == PH_QUEUED) {
            tw = QUEUE_POLL_MS;
        }
        else if (e->turns[i].phase == PH_RUNNING) {
            tw = ACTIVE_POLL_MS;
        }
        else {
            continue;
        }
        if (w < 0 || tw < w) {
            w = tw;
        }
    }
    return w;
}

apr_status_t chatbot_engine_poll(chatbot_engine_t *e, void *extra, unsigned nextra,
                                 int timeout_ms)
{
    int numfds = 0;
    CURLMcode mc = curl_multi_poll(e->multi, extra, nextra, timeout_ms, &numfds);

    return mc == CURLM_OK ? APR_SUCCESS : APR_EGENERAL;
}

void chatbot_engine_wakeup(chatbot_engine_t *e)
{
    if (e && e->multi) {
        curl_multi_wakeup(e->multi);
    }
}

static void check_timeouts(turn_priv_t *t, apr_uint64_t now)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chat_store_t *st = chatbot_store();

    /* Stop from another connection (tab, child), queued or running, or a
     * lost claim on the conversation */
    if (!t->stateless && chat_store_gen_stop_requested(st, p->conv_id, t->token)) {
        p->stop_reason = "stopped";
        turn_end(t, CHATBOT_OUT_STOPPED, NULL, NULL);
        return;
    }
    if (t->phase == PH_QUEUED) {
        if ((apr_int64_t)(now - t->t_start) > e->lim.total_timeout_ms) {
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                     "waited %d s in the queue for backend '%s'; giving up",
                     (int)(e->lim.total_timeout_ms / 1000),
                     p->backend ? p->backend->name : "-");
            return;
        }
        if (now - t->t_queue_poll >= QUEUE_POLL_MS) {
            const char *c = turn_acquire(t);
            if (c) {
                turn_end(t, CHATBOT_OUT_FAILED, c, "%s", p->err_msg);
            }
        }
        return;
    }
    if (t->phase != PH_RUNNING) {
        return;
    }
    if (t->parser && chat_stream_is_done(t->parser) && !t->backend_error &&
        !t->abort_code && now - t->t_sent >= DONE_GRACE_MS &&
        (!t->t_last || now - t->t_last >= DONE_GRACE_MS)) {
        /* The server said the answer is done but keeps the response open
         * (pings after [DONE], a proxy holding the body): the answer is
         * complete; closing the request is all that is left. */
        breaker(t, 1);
        turn_end(t, CHATBOT_OUT_COMPLETE, NULL, NULL);
        return;
    }
    if (!t->t_first) {
        if ((apr_int64_t)(now - t->t_sent) > e->lim.first_token_timeout_ms) {
            breaker(t, 0);
            turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                     "backend '%s' produced no answer within %d s (model '%s' still "
                     "loading? see ChatbotFirstTokenTimeout)",
                     p->backend->name, (int)(e->lim.first_token_timeout_ms / 1000),
                     p->model);
            return;
        }
        if (!t->loading_sent && now - t->t_sent >= LOADING_AFTER_MS) {
            t->loading_sent = 1;
            if (e->cb.on_status) {
                e->cb.on_status(e->baton, p, "loading", 0);
            }
        }
    }
    else if ((apr_int64_t)(now - t->t_last) > e->lim.token_timeout_ms) {
        breaker(t, 0);
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                 "backend '%s' stalled: no token for %d s (partial answer kept)",
                 p->backend->name, (int)(e->lim.token_timeout_ms / 1000));
        return;
    }
    if ((apr_int64_t)(now - t->t_start) > e->lim.total_timeout_ms) {
        turn_end(t, CHATBOT_OUT_FAILED, CHAT_ERR_BACKEND_TIMEOUT,
                 "the answer took longer than %d s (ChatbotTotalTimeout); partial answer "
                 "kept",
                 (int)(e->lim.total_timeout_ms / 1000));
        return;
    }
    if (now - t->t_beat >= BEAT_EVERY_MS && t->slot_held) {
        t->t_beat = now;
        chat_store_backend_beat(st, p->backend->index, t->ticket, now);
    }
}

void chatbot_engine_run(chatbot_engine_t *e)
{
    int running = 0, i, left;
    CURLMsg *m;
    apr_uint64_t now;

    curl_multi_perform(e->multi, &running);
    while ((m = curl_multi_info_read(e->multi, &left)) != NULL) {
        turn_priv_t *t = NULL;
        if (m->msg != CURLMSG_DONE) {
            continue;
        }
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t && t->phase == PH_RUNNING) {
            turn_transfer_done(t, m->data.result);
        }
    }
    now = chatbot_now_ms();
    for (i = 0; i < CHATBOT_MAX_TURNS; i++) {
        if (e->turns[i].phase != PH_IDLE) {
            check_timeouts(&e->turns[i], now);
        }
    }
}

void chatbot_engine_run_all(chatbot_engine_t *e)
{
    while (chatbot_engine_active(e)) {
        int w = chatbot_engine_wait_ms(e);
        chatbot_engine_poll(e, NULL, 0, w < 0 ? 100 : w);
        chatbot_engine_run(e);
        if (e->r->connection->aborted && !e->lim.continue_without_viewer) {
            chatbot_engine_stop(e, NULL, "client_gone");
        }
    }
}
