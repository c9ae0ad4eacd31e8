/* mod_chatbot_status.c - observability: a "Chatbot" section in
 * mod_status's /server-status (HTML and ?auto), and a Prometheus text
 * exposition at .../metrics. All numbers come from the shared store, so
 * they are summed across every httpd child. The ?auto keys and the metric
 * names are an interface: docs/operations.md lists each one, keep it in
 * sync. Also the status board the page and /api/status show (backends,
 * load, store), from the same shared numbers.
 */
#include <stdio.h>
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_optional_hooks.h"
#include "mod_status.h"

#include "mod_chatbot.h"

/* Everything one report needs, read once (the store keeps changing while we
 * write; one snapshot keeps the report self-consistent enough). */
typedef struct {
    chat_metrics_snapshot_t ms;
    chat_series_snapshot_t *series;
    int nseries;
    uint64_t ctr[CHAT_CTR_COUNT]; /* summed over series */
    uint64_t errors;              /* summed over codes */
    int backends_up;
    apr_size_t shm_bytes;
    chatbot_ws_counts_t ws; /* the connection model, from every child */
} report_t;

static void report_read(apr_pool_t *p, chat_store_t *st, chatbot_srv_conf *sc,
                        report_t *rp)
{
    int i, j, n;

    memset(rp, 0, sizeof(*rp));
    chat_metrics_snapshot(st, &rp->ms);
    chatbot_ws_counts(&rp->ws);
    n = chat_metrics_series_count(st);
    rp->series = apr_pcalloc(p, sizeof(*rp->series) * (n > 0 ? n : 1));
    for (i = 0; i < n; i++) {
        if (chat_metrics_series_get(st, i, &rp->series[rp->nseries]) != CHAT_OK) {
            continue;
        }
        for (j = 0; j < CHAT_CTR_COUNT; j++) {
            rp->ctr[j] += rp->series[rp->nseries].counters[j];
        }
        rp->nseries++;
    }
    for (i = 0; i < rp->ms.nerrors; i++) {
        rp->errors += rp->ms.errors[i].count;
    }
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK && bi.healthy > 0) {
            rp->backends_up++;
        }
    }
    rp->shm_bytes = chat_store_size(&sc->layout);
}

/* Request slots a backend really has: max=, or the store's per-backend
 * table size when max= is absent (0) or larger. */
static unsigned slots(const chatbot_srv_conf *sc, const chat_backend_info_t *bi)
{
    return (bi->max_active == 0 || bi->max_active > sc->layout.max_active)
               ? sc->layout.max_active
               : bi->max_active;
}

/* The store on redis as this child sees it (calls, errors, latency), and
 * whether it answers now. 0 if the store is local (shm). */
static int store_remote(chat_store_t *st, chatbot_store_stats_t *ss, int *up,
                        apr_uint64_t *avg_us)
{
    apr_uint64_t ok = 0;
    int i;

    if (!chatbot_store_remote_stats(st, ss)) {
        return 0;
    }
    *up = chatbot_store_ping(st, 0) > 0;
    for (i = 0; i < 8; i++) {
        ok += ss->hist[i];
    }
    *avg_us = ok ? ss->usec_total / ok : 0;
    return 1;
}

static double hist_avg(const chat_series_snapshot_t *ss, chat_hist_t h)
{
    return ss->hist_count[h] ? ss->hist_sum[h] / (double)ss->hist_count[h] : 0.0;
}

/* ---- mod_status ----------------------------------------------------------------- */

static void status_auto(request_rec *r, chatbot_srv_conf *sc, chat_store_t *st,
                        const report_t *rp)
{
    const chat_metrics_snapshot_t *ms = &rp->ms;
    int i;

    ap_rprintf(r, "ChatbotVersion: %s\n", CHATBOT_VERSION);
    ap_rprintf(r,
               "ChatbotConnections: %" APR_INT64_T_FMT "\n"
               "ChatbotConnectionsTotal: %" APR_INT64_T_FMT "\n"
               "ChatbotGenerating: %" APR_INT64_T_FMT "\n"
               "ChatbotQueued: %" APR_INT64_T_FMT "\n"
               "ChatbotClientMessages: %" APR_INT64_T_FMT "\n",
               ms->gauges[CHAT_G_CONNECTIONS], ms->gauges[CHAT_G_CONNECTIONS_TOTAL],
               ms->gauges[CHAT_G_GENERATING], ms->gauges[CHAT_G_QUEUED],
               ms->gauges[CHAT_G_MESSAGES_IN]);
    ap_rprintf(r,
               "ChatbotConnectionsParked: %" APR_INT64_T_FMT "\n"
               "ChatbotConnectionsActive: %" APR_INT64_T_FMT "\n"
               "ChatbotConnectionsWaiting: %" APR_INT64_T_FMT "\n"
               "ChatbotConnectionsHoldingThread: %" APR_INT64_T_FMT "\n"
               "ChatbotMaxWorkers: %d\n",
               rp->ws.parked, rp->ws.active, rp->ws.waiting, rp->ws.blocking,
               rp->ws.workers_max);
    ap_rprintf(r,
               "ChatbotAnswers: %" APR_UINT64_T_FMT "\n"
               "ChatbotAnswersInterrupted: %" APR_UINT64_T_FMT "\n"
               "ChatbotTurnErrors: %" APR_UINT64_T_FMT "\n"
               "ChatbotTokens: %" APR_UINT64_T_FMT "\n"
               "ChatbotPromptTokens: %" APR_UINT64_T_FMT "\n"
               "ChatbotErrors: %" APR_UINT64_T_FMT "\n",
               rp->ctr[CHAT_CTR_ANSWERS], rp->ctr[CHAT_CTR_INTERRUPTED],
               rp->ctr[CHAT_CTR_ERRORS], rp->ctr[CHAT_CTR_TOKENS],
               rp->ctr[CHAT_CTR_PROMPT_TOKENS], rp->errors);
    ap_rprintf(r,
               "ChatbotRateLimited: %" APR_INT64_T_FMT "\n"
               "ChatbotEvictions: %" APR_INT64_T_FMT "\n"
               "ChatbotCommands: %" APR_INT64_T_FMT "\n",
               ms->gauges[CHAT_G_RATE_LIMITED], ms->gauges[CHAT_G_EVICTIONS],
               ms->gauges[CHAT_G_COMMANDS]);
    ap_rprintf(r,
               "ChatbotConversations: %u\nChatbotConversationsMax: %u\n"
               "ChatbotUsers: %u\nChatbotUsersMax: %u\n"
               "ChatbotHistoryBytesUsed: %" APR_UINT64_T_FMT "\n"
               "ChatbotHistoryBytes: %" APR_UINT64_T_FMT "\n"
               "ChatbotShmBytes: %" APR_SIZE_T_FMT "\n",
               ms->conversations, ms->max_conversations, ms->users, ms->max_users,
               ms->arena_used, ms->arena_size, rp->shm_bytes);
    ap_rprintf(r,
               "ChatbotConversationsAnonymous: %u\n"
               "ChatbotHistoryBytesAnonymous: %" APR_UINT64_T_FMT "\n"
               "ChatbotStoreRecoveries: %" APR_UINT64_T_FMT "\n"
               "ChatbotStoreProcessesReaped: %" APR_UINT64_T_FMT "\n",
               ms->anon_conversations, ms->anon_arena_used, ms->recoveries,
               ms->procs_reaped);
    {
        chatbot_store_stats_t ss;
        apr_uint64_t avg;
        int sup;
        if (store_remote(st, &ss, &sup, &avg)) {
            /* one token per value, as every line here: the state apart */
            ap_rprintf(r,
                       "ChatbotStore: redis\n"
                       "ChatbotStoreUp: %d\n"
                       "ChatbotStoreCalls: %" APR_UINT64_T_FMT "\n"
                       "ChatbotStoreErrors: %" APR_UINT64_T_FMT "\n"
                       "ChatbotStoreLatencyAvgUs: %" APR_UINT64_T_FMT "\n"
                       "ChatbotStoreLatencyMaxUs: %" APR_UINT64_T_FMT "\n",
                       sup ? 1 : 0, ss.calls, ss.errors, avg, ss.usec_max);
        }
    }
    ap_rprintf(r, "ChatbotBackends: %d\nChatbotBackendsUp: %d\n", sc->backends->nelts,
               rp->backends_up);
    for (i = 0; i < ms->nerrors; i++) {
        ap_rprintf(r, "ChatbotErrors[%s]: %" APR_UINT64_T_FMT "\n", ms->errors[i].code,
                   ms->errors[i].count);
    }
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        ap_rprintf(r,
                   "ChatbotBackend[%s]Health: %s\nChatbotBackend[%s]Up: %d\n"
                   "ChatbotBackend[%s]Active: %u\nChatbotBackend[%s]MaxActive: %u\n"
                   "ChatbotBackend[%s]Queued: %u\nChatbotBackend[%s]Breaker: %s\n",
                   be->name, chatbot_view_health_name(bi.healthy), be->name, bi.healthy,
                   be->name, bi.active, be->name, slots(sc, &bi), be->name, bi.queued,
                   be->name, chatbot_view_breaker_name(bi.breaker));
    }
    for (i = 0; i < rp->nseries; i++) {
        const chat_series_snapshot_t *ss = &rp->series[i];
        const char *k =
            apr_psprintf(r->pool, "ChatbotBot[%s]Backend[%s]", ss->bot, ss->backend);
        ap_rprintf(r,
                   "%sAnswers: %" APR_UINT64_T_FMT "\n%sInterrupted: %" APR_UINT64_T_FMT
                   "\n%sErrors: %" APR_UINT64_T_FMT "\n%sTokens: %" APR_UINT64_T_FMT "\n"
                   "%sAvgTimeToFirstTokenMs: %.1f\n%sAvgTokensPerSecond: %.1f\n",
                   k, ss->counters[CHAT_CTR_ANSWERS], k,
                   ss->counters[CHAT_CTR_INTERRUPTED], k, ss->counters[CHAT_CTR_ERRORS],
                   k, ss->counters[CHAT_CTR_TOKENS], k, hist_avg(ss, CHAT_HIST_TTFT), k,
                   hist_avg(ss, CHAT_HIST_TPS));
    }
}

/* HTML in the style of mod_status's own page: a <dl> summary, then plain
 * tables with <th> headers. */
static void status_html(request_rec *r, chatbot_srv_conf *sc, chat_store_t *st,
                        const report_t *rp)
{
    const chat_metrics_snapshot_t *ms = &rp->ms;
    apr_uint64_t now = chatbot_now_ms();
    int i;

    ap_rputs("<hr />\n<h2><a name=\"chatbot\">Chatbot</a></h2>\n<dl>\n", r);
    ap_rprintf(r, "<dt>Server Version: %s</dt>\n", CHATBOT_SERVER_ID);
    ap_rprintf(r,
               "<dt>%" APR_INT64_T_FMT " WebSocket connections open (%" APR_INT64_T_FMT
               " since start), %" APR_INT64_T_FMT " answers generating, %" APR_INT64_T_FMT
               " turns queued</dt>\n",
               ms->gauges[CHAT_G_CONNECTIONS], ms->gauges[CHAT_G_CONNECTIONS_TOTAL],
               ms->gauges[CHAT_G_GENERATING], ms->gauges[CHAT_G_QUEUED]);
    ap_rprintf(r,
               "<dt>%" APR_INT64_T_FMT " parked in the MPM (no thread), %" APR_INT64_T_FMT
               " streaming or following an answer, %" APR_INT64_T_FMT
               " waiting for a worker, %" APR_INT64_T_FMT
               " holding a thread for their whole life; at most %d worker(s) per child "
               "for WebSockets (ChatbotMaxWorkers)%s</dt>\n",
               rp->ws.parked, rp->ws.active, rp->ws.waiting, rp->ws.blocking,
               rp->ws.workers_max,
               rp->ws.can_park ? "" : "; this MPM cannot park connections");
    ap_rprintf(r,
               "<dt>%" APR_UINT64_T_FMT " answers completed, %" APR_UINT64_T_FMT
               " interrupted, %" APR_UINT64_T_FMT " turns failed; %" APR_UINT64_T_FMT
               " tokens generated, %" APR_UINT64_T_FMT " prompt tokens</dt>\n",
               rp->ctr[CHAT_CTR_ANSWERS], rp->ctr[CHAT_CTR_INTERRUPTED],
               rp->ctr[CHAT_CTR_ERRORS], rp->ctr[CHAT_CTR_TOKENS],
               rp->ctr[CHAT_CTR_PROMPT_TOKENS]);
    ap_rprintf(r,
               "<dt>%" APR_INT64_T_FMT " client messages, %" APR_INT64_T_FMT
               " rate-limit rejections, %" APR_UINT64_T_FMT
               " errors sent, %" APR_INT64_T_FMT " commands run</dt>\n",
               ms->gauges[CHAT_G_MESSAGES_IN], ms->gauges[CHAT_G_RATE_LIMITED],
               rp->errors, ms->gauges[CHAT_G_COMMANDS]);
    ap_rprintf(
        r,
        "<dt>Shared memory: %" APR_SIZE_T_FMT " bytes; history %" APR_UINT64_T_FMT
        " of %" APR_UINT64_T_FMT " bytes used (%.1f%%), %u of %u conversations, %u of "
        "%u users, %" APR_INT64_T_FMT " conversations evicted</dt>\n</dl>\n",
        rp->shm_bytes, ms->arena_used, ms->arena_size,
        ms->arena_size ? 100.0 * (double)ms->arena_used / (double)ms->arena_size : 0.0,
        ms->conversations, ms->max_conversations, ms->users, ms->max_users,
        ms->gauges[CHAT_G_EVICTIONS]);

    {
        chatbot_store_stats_t ss;
        apr_uint64_t avg;
        int sup;
        if (store_remote(st, &ss, &sup, &avg)) {
            ap_rprintf(r,
                       "<dl><dt>Store on redis: <b>%s</b>; this child: %" APR_UINT64_T_FMT
                       " calls, %" APR_UINT64_T_FMT
                       " errors, latency avg %" APR_UINT64_T_FMT
                       " &micro;s, max %" APR_UINT64_T_FMT " &micro;s%s%s</dt></dl>\n",
                       sup ? "up" : "DOWN", ss.calls, ss.errors, avg, ss.usec_max,
                       sup ? "" : "; last error: ",
                       sup ? "" : ap_escape_html(r->pool, ss.last_error));
        }
    }
    ap_rputs("<table border=\"0\"><tr><th>Backend</th><th>URL</th><th>Health</th>"
             "<th>Version</th><th>Active</th><th>Max</th><th>Queued</th><th>Breaker</th>"
             "<th>Checked</th><th>Detail</th></tr>\n",
             r);
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        ap_rprintf(r,
                   "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%u</td>"
                   "<td>%u</td><td>%u</td><td>%s</td><td>%s</td><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, be->name), ap_escape_html(r->pool, be->url),
                   chatbot_view_health_name(bi.healthy),
                   ap_escape_html(r->pool, bi.version), bi.active, slots(sc, &bi),
                   bi.queued, chatbot_view_breaker_name(bi.breaker),
                   bi.checked_ms ? apr_psprintf(r->pool, "%" APR_UINT64_T_FMT "s ago",
                                                (now - bi.checked_ms) / 1000)
                                 : "never",
                   ap_escape_html(r->pool, bi.detail));
    }
    ap_rputs("</table>\n", r);

    ap_rputs("<table border=\"0\"><tr><th>Bot</th><th>Backend</th><th>Answers</th>"
             "<th>Interrupted</th><th>Errors</th><th>Tokens</th><th>Prompt tokens</th>"
             "<th>Avg first token (ms)</th><th>Avg tokens/s</th></tr>\n",
             r);
    for (i = 0; i < rp->nseries; i++) {
        const chat_series_snapshot_t *ss = &rp->series[i];
        ap_rprintf(r,
                   "<tr><td>%s</td><td>%s</td><td>%" APR_UINT64_T_FMT
                   "</td><td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT
                   "</td><td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT
                   "</td><td>%.0f</td>"
                   "<td>%.1f</td></tr>\n",
                   ap_escape_html(r->pool, ss->bot), ap_escape_html(r->pool, ss->backend),
                   ss->counters[CHAT_CTR_ANSWERS], ss->counters[CHAT_CTR_INTERRUPTED],
                   ss->counters[CHAT_CTR_ERRORS], ss->counters[CHAT_CTR_TOKENS],
                   ss->counters[CHAT_CTR_PROMPT_TOKENS], hist_avg(ss, CHAT_HIST_TTFT),
                   hist_avg(ss, CHAT_HIST_TPS));
    }
    ap_rputs("</table>\n", r);

    if (ms->nerrors) {
        ap_rputs("<table border=\"0\"><tr><th>Error code</th><th>Count</th></tr>\n", r);
        for (i = 0; i < ms->nerrors; i++) {
            ap_rprintf(r, "<tr><td>%s</td><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                       ap_escape_html(r->pool, ms->errors[i].code), ms->errors[i].count);
        }
        ap_rputs("</table>\n", r);
    }
}

static int status_hook(request_rec *r, int flags)
{
    chat_store_t *st = chatbot_store();
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    report_t rp;

    if (!st || !sc) {
        return OK;
    }
    report_read(r->pool, st, sc, &rp);
    if (flags & AP_STATUS_SHORT) {
        status_auto(r, sc, st, &rp);
    }
    else {
        status_html(r, sc, st, &rp);
    }
    return OK;
}

/* Optional hook: registering it costs nothing when mod_status is absent. */
void chatbot_status_register(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

/* ---- Prometheus ------------------------------------------------------------------ */

static const char *hist_names[CHAT_HIST_COUNT] = {
    "chatbot_time_to_first_token_seconds", "chatbot_answer_duration_seconds",
    "chatbot_tokens_per_second", "chatbot_queue_wait_seconds"};
static const char *hist_help[CHAT_HIST_COUNT] = {
    "Time from sending the request to the backend to the first token.",
    "Time from the user's message to the end of a completed answer.",
    "Generation speed of completed answers, in tokens per second.",
    "Time a turn waited for a backend slot."};

/* Label values: backslash, double quote and newline are escaped (text
 * format 0.0.4). */
static void prom_label(chat_buf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\') {
            chat_buf_puts(b, "\\\\");
        }
        else if (*v == '"') {
            chat_buf_puts(b, "\\\"");
        }
        else if (*v == '\n') {
            chat_buf_puts(b, "\\n");
        }
        else {
            chat_buf_append(b, v, 1);
        }
    }
}

static void prom_family(chat_buf_t *b, const char *name, const char *type,
                        const char *help)
{
    chat_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{label="value"} */
static void prom_sample1(chat_buf_t *b, const char *name, const char *label,
                         const char *value)
{
    chat_buf_printf(b, "%s{%s=\"", name, label);
    prom_label(b, value);
    chat_buf_puts(b, "\"} ");
}

/* name[suffix]{bot="..",backend=".."[,extra] */
static void prom_series(chat_buf_t *b, const char *name, const char *suffix,
                        const chat_series_snapshot_t *ss)
{
    chat_buf_printf(b, "%s%s{bot=\"", name, suffix);
    prom_label(b, ss->bot);
    chat_buf_puts(b, "\",backend=\"");
    prom_label(b, ss->backend);
    chat_buf_puts(b, "\"");
}

static void prom_le(chat_buf_t *b, double bound)
{
    char num[64];

    /* C's %g: "0.05" and "600" (APR's %g would write ".05") */
    snprintf(num, sizeof(num), "%g", bound);
    chat_buf_printf(b, ",le=\"%s\"} ", num);
}

static void prom_write(chat_buf_t *b, chatbot_srv_conf *sc, chat_store_t *st,
                       const report_t *rp)
{
    const chat_metrics_snapshot_t *ms = &rp->ms;
    int i, h, k;
    static const struct {
        chat_gauge_t g;
        const char *name, *type, *help;
    } gauges[] = {
        {CHAT_G_CONNECTIONS, "chatbot_websocket_connections_open", "gauge",
         "Open WebSocket connections."},
        {CHAT_G_CONNECTIONS_TOTAL, "chatbot_websocket_connections_total", "counter",
         "WebSocket connections accepted."},
        {CHAT_G_GENERATING, "chatbot_answers_generating", "gauge",
         "Answers being generated now."},
        {CHAT_G_QUEUED, "chatbot_turns_queued", "gauge",
         "Turns waiting for a backend slot now."},
        {CHAT_G_MESSAGES_IN, "chatbot_client_messages_total", "counter",
         "Protocol messages received from clients."},
        {CHAT_G_RATE_LIMITED, "chatbot_rate_limited_total", "counter",
         "Messages refused by ChatbotRateLimit."},
        {CHAT_G_EVICTIONS, "chatbot_evictions_total", "counter",
         "Conversations evicted from shared memory to make room."},
        {CHAT_G_COMMANDS, "chatbot_commands_total", "counter", "Commands run."},
    };
    static const struct {
        chat_counter_t c;
        const char *name, *help;
    } ctrs[] = {
        {CHAT_CTR_ANSWERS, "chatbot_answers_total", "Answers completed."},
        {CHAT_CTR_INTERRUPTED, "chatbot_answers_interrupted_total",
         "Answers stopped or failed part way (partial answer kept)."},
        {CHAT_CTR_ERRORS, "chatbot_turn_errors_total", "Turns that ended in an error."},
        {CHAT_CTR_TOKENS, "chatbot_tokens_total", "Completion tokens generated."},
        {CHAT_CTR_PROMPT_TOKENS, "chatbot_prompt_tokens_total",
         "Prompt tokens evaluated (as reported by the backend)."},
    };

    prom_family(b, "chatbot_info", "gauge", "mod_chatbot build information.");
    prom_sample1(b, "chatbot_info", "version", CHATBOT_VERSION);
    chat_buf_puts(b, "1\n");
    for (i = 0; i < (int)(sizeof(gauges) / sizeof(gauges[0])); i++) {
        prom_family(b, gauges[i].name, gauges[i].type, gauges[i].help);
        chat_buf_printf(b, "%s %" APR_INT64_T_FMT "\n", gauges[i].name,
                        ms->gauges[gauges[i].g]);
    }
    {
        const struct {
            const char *name, *help;
            apr_int64_t v;
        } conn[] = {
            {"chatbot_websocket_connections_parked",
             "Idle WebSockets parked in the event MPM: they hold no thread.",
             rp->ws.parked},
            {"chatbot_websocket_connections_active",
             "WebSockets streaming or following an answer: each holds a worker.",
             rp->ws.active},
            {"chatbot_websocket_connections_waiting",
             "WebSockets whose turn waits for a worker (ChatbotMaxWorkers, "
             "ChatbotMaxAnswersPerIP).",
             rp->ws.waiting},
            {"chatbot_websocket_connections_holding_thread",
             "WebSockets that hold a thread for their whole life (HTTP/2 streams, "
             "MPMs that cannot park).",
             rp->ws.blocking},
            {"chatbot_websocket_workers_max",
             "Worker threads per child that WebSockets may hold (ChatbotMaxWorkers).",
             rp->ws.workers_max},
        };
        for (i = 0; i < (int)(sizeof(conn) / sizeof(conn[0])); i++) {
            prom_family(b, conn[i].name, "gauge", conn[i].help);
            chat_buf_printf(b, "%s %" APR_INT64_T_FMT "\n", conn[i].name, conn[i].v);
        }
    }
    prom_family(b, "chatbot_errors_total", "counter",
                "Error messages sent, by error code.");
    for (i = 0; i < ms->nerrors; i++) {
        prom_sample1(b, "chatbot_errors_total", "code", ms->errors[i].code);
        chat_buf_printf(b, "%" APR_UINT64_T_FMT "\n", ms->errors[i].count);
    }

    /* shared memory */
    prom_family(b, "chatbot_conversations", "gauge", "Conversations in shared memory.");
    chat_buf_printf(b, "chatbot_conversations %u\n", ms->conversations);
    prom_family(b, "chatbot_conversations_max", "gauge",
                "Conversation slots (ChatbotMaxConversations).");
    chat_buf_printf(b, "chatbot_conversations_max %u\n", ms->max_conversations);
    prom_family(b, "chatbot_users", "gauge", "Identities tracked in shared memory.");
    chat_buf_printf(b, "chatbot_users %u\n", ms->users);
    prom_family(b, "chatbot_users_max", "gauge", "Identity slots (ChatbotMaxUsers).");
    chat_buf_printf(b, "chatbot_users_max %u\n", ms->max_users);
    prom_family(b, "chatbot_history_used_bytes", "gauge",
                "Bytes of message text stored.");
    chat_buf_printf(b, "chatbot_history_used_bytes %" APR_UINT64_T_FMT "\n",
                    ms->arena_used);
    prom_family(b, "chatbot_history_size_bytes", "gauge",
                "Size of the message text arena (ChatbotHistorySize).");
    chat_buf_printf(b, "chatbot_history_size_bytes %" APR_UINT64_T_FMT "\n",
                    ms->arena_size);
    prom_family(b, "chatbot_shm_size_bytes", "gauge",
                "Size of the shared memory segment.");
    chat_buf_printf(b, "chatbot_shm_size_bytes %" APR_SIZE_T_FMT "\n", rp->shm_bytes);
    prom_family(b, "chatbot_conversations_anonymous", "gauge",
                "Conversations of anonymous identities.");
    chat_buf_printf(b, "chatbot_conversations_anonymous %u\n", ms->anon_conversations);
    prom_family(b, "chatbot_history_anonymous_bytes", "gauge",
                "History arena bytes held by anonymous identities.");
    chat_buf_printf(b, "chatbot_history_anonymous_bytes %" APR_UINT64_T_FMT "\n",
                    ms->anon_arena_used);
    prom_family(b, "chatbot_store_recoveries_total", "counter",
                "Store locks taken over from a process that died holding them (its "
                "unfinished update rolled back).");
    chat_buf_printf(b, "chatbot_store_recoveries_total %" APR_UINT64_T_FMT "\n",
                    ms->recoveries);
    prom_family(b, "chatbot_store_processes_reaped_total", "counter",
                "Processes found dead whose answers and backend slots were released.");
    chat_buf_printf(b, "chatbot_store_processes_reaped_total %" APR_UINT64_T_FMT "\n",
                    ms->procs_reaped);
    {
        static const double sb[7] = {0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05};
        chatbot_store_stats_t ss;
        apr_uint64_t avg, cum = 0;
        int sup, k;
        if (store_remote(st, &ss, &sup, &avg)) {
            prom_family(b, "chatbot_store_up", "gauge",
                        "1 if the store on redis answers, 0 if not.");
            chat_buf_printf(b, "chatbot_store_up %d\n", sup);
            prom_family(b, "chatbot_store_calls_total", "counter",
                        "Calls to the store on redis (this child).");
            chat_buf_printf(b, "chatbot_store_calls_total %" APR_UINT64_T_FMT "\n",
                            ss.calls);
            prom_family(b, "chatbot_store_errors_total", "counter",
                        "Store calls that failed: unreachable, timeout, pool busy (this "
                        "child).");
            chat_buf_printf(b, "chatbot_store_errors_total %" APR_UINT64_T_FMT "\n",
                            ss.errors);
            prom_family(b, "chatbot_store_latency_seconds", "histogram",
                        "Latency of store calls that succeeded (this child).");
            for (k = 0; k < 7; k++) {
                cum += ss.hist[k];
                chat_buf_printf(
                    b,
                    "chatbot_store_latency_seconds_bucket{le=\"%g\"} %" APR_UINT64_T_FMT
                    "\n",
                    sb[k], cum);
            }
            cum += ss.hist[7];
            chat_buf_printf(
                b,
                "chatbot_store_latency_seconds_bucket{le=\"+Inf\"} %" APR_UINT64_T_FMT
                "\n",
                cum);
            chat_buf_printf(b, "chatbot_store_latency_seconds_sum %.6f\n",
                            (double)ss.usec_total / 1e6);
            chat_buf_printf(
                b, "chatbot_store_latency_seconds_count %" APR_UINT64_T_FMT "\n", cum);
        }
    }

    /* backends */
    prom_family(b, "chatbot_backend_up", "gauge",
                "Backend health from the last probe: 1 up, 0 down, -1 not probed yet.");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
            prom_sample1(b, "chatbot_backend_up", "backend", be->name);
            chat_buf_printf(b, "%d\n", bi.healthy);
        }
    }
    prom_family(b, "chatbot_backend_active_requests", "gauge",
                "Requests a backend is answering now.");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
            prom_sample1(b, "chatbot_backend_active_requests", "backend", be->name);
            chat_buf_printf(b, "%u\n", bi.active);
        }
    }
    prom_family(b, "chatbot_backend_max_requests", "gauge",
                "Concurrent requests allowed to a backend (max=, default 256).");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
            prom_sample1(b, "chatbot_backend_max_requests", "backend", be->name);
            chat_buf_printf(b, "%u\n", slots(sc, &bi));
        }
    }
    prom_family(b, "chatbot_backend_queued_turns", "gauge",
                "Turns waiting for a slot on a backend now.");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
            prom_sample1(b, "chatbot_backend_queued_turns", "backend", be->name);
            chat_buf_printf(b, "%u\n", bi.queued);
        }
    }
    prom_family(b, "chatbot_backend_breaker_state", "gauge",
                "Circuit breaker state of a backend (1 for the current state).");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        static const struct {
            int v;
            const char *name;
        } states[] = {{CHAT_BREAKER_CLOSED, "closed"},
                      {CHAT_BREAKER_OPEN, "open"},
                      {CHAT_BREAKER_HALF_OPEN, "half_open"}};
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        for (k = 0; k < 3; k++) {
            chat_buf_puts(b, "chatbot_backend_breaker_state{backend=\"");
            prom_label(b, be->name);
            chat_buf_printf(b, "\",state=\"%s\"} %d\n", states[k].name,
                            bi.breaker == states[k].v);
        }
    }

    /* per (bot, backend) series */
    for (k = 0; k < (int)(sizeof(ctrs) / sizeof(ctrs[0])); k++) {
        prom_family(b, ctrs[k].name, "counter", ctrs[k].help);
        for (i = 0; i < rp->nseries; i++) {
            prom_series(b, ctrs[k].name, "", &rp->series[i]);
            chat_buf_printf(b, "} %" APR_UINT64_T_FMT "\n",
                            rp->series[i].counters[ctrs[k].c]);
        }
    }
    for (h = 0; h < CHAT_HIST_COUNT; h++) {
        const double *bounds = chat_metrics_bounds((chat_hist_t)h);
        /* ms-based histograms are exported in seconds, as Prometheus wants */
        double scale = h == CHAT_HIST_TPS ? 1.0 : 0.001;
        prom_family(b, hist_names[h], "histogram", hist_help[h]);
        for (i = 0; i < rp->nseries; i++) {
            const chat_series_snapshot_t *ss = &rp->series[i];
            uint64_t cum = 0;
            for (k = 0; k < CHAT_HIST_BUCKETS; k++) {
                cum += ss->hist[h][k];
                prom_series(b, hist_names[h], "_bucket", ss);
                if (k == CHAT_HIST_BUCKETS - 1) {
                    chat_buf_puts(b, ",le=\"+Inf\"} ");
                }
                else {
                    prom_le(b, bounds[k] * scale);
                }
                chat_buf_printf(b, "%" APR_UINT64_T_FMT "\n", cum);
            }
            prom_series(b, hist_names[h], "_sum", ss);
            chat_buf_printf(b, "} %.6f\n", ss->hist_sum[h] * scale);
            prom_series(b, hist_names[h], "_count", ss);
            /* the +Inf bucket and _count must agree even if an observation
             * lands between the reads of the two */
            chat_buf_printf(b, "} %" APR_UINT64_T_FMT "\n", cum);
        }
    }
}

int chatbot_metrics_handler(request_rec *r)
{
    chat_store_t *st = chatbot_store();
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    report_t rp;
    chat_buf_t b;

    if (r->method_number != M_GET) {
        ap_allow_methods(r, REPLACE_ALLOW, "GET", NULL); /* httpd writes Allow */
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!st) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    report_read(r->pool, st, sc, &rp);
    chat_buf_init(&b);
    prom_write(&b, sc, st, &rp);
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)b.len);
    if (!r->header_only) {
        ap_rwrite(b.data, (int)b.len, r);
    }
    chat_buf_free(&b);
    return OK;
}

/* ---- status board --------------------------------------------------------------- */

const char *chatbot_view_breaker_name(int breaker)
{
    return breaker == CHAT_BREAKER_OPEN        ? "open"
           : breaker == CHAT_BREAKER_HALF_OPEN ? "half-open"
                                               : "closed";
}

void chatbot_view_backends(chat_jw_t *jw, chatbot_srv_conf *sc, int details)
{
    chat_store_t *st = chatbot_store();
    int i;

    chat_jw_arr_begin(jw);
    for (i = 0; st && i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        chat_jw_obj_begin(jw);
        chat_jw_kstr(jw, "name", be->name);
        chat_jw_kstr(jw, "type", be->wire == CHAT_WIRE_OLLAMA ? "ollama" : "openai");
        if (details) {
            chat_jw_kstr(jw, "url", be->url);
        }
        if (bi.healthy < 0) {
            chat_jw_key(jw, "healthy");
            chat_jw_null(jw);
        }
        else {
            chat_jw_kbool(jw, "healthy", bi.healthy);
        }
        if (details) {
            chat_jw_kstr(jw, "version", bi.version[0] ? bi.version : NULL);
            chat_jw_kstr(jw, "detail", bi.detail);
        }
        chat_jw_kint(jw, "active", bi.active);
        chat_jw_kint(jw, "max", bi.max_active);
        chat_jw_kint(jw, "queued", bi.queued);
        chat_jw_kstr(jw, "breaker", chatbot_view_breaker_name(bi.breaker));
        chat_jw_kint(jw, "checked_ms", (int64_t)bi.checked_ms);
        chat_jw_obj_end(jw);
    }
    chat_jw_arr_end(jw);
}

void chatbot_view_status(chat_jw_t *jw, chatbot_srv_conf *sc, int details)
{
    chat_store_t *st = chatbot_store();
    chat_metrics_snapshot_t ms;

    chat_jw_key(jw, "backends");
    chatbot_view_backends(jw, sc, details);
    if (st) {
        chat_metrics_snapshot(st, &ms);
        chat_jw_kint(jw, "connections", ms.gauges[CHAT_G_CONNECTIONS]);
        chat_jw_kint(jw, "generating", ms.gauges[CHAT_G_GENERATING]);
        chat_jw_kint(jw, "queued", ms.gauges[CHAT_G_QUEUED]);
        chat_jw_kint(jw, "conversations", ms.conversations);
        chat_jw_kint(jw, "history_bytes_used", (int64_t)ms.arena_used);
        chat_jw_kint(jw, "history_bytes", (int64_t)ms.arena_size);
    }
}
