/* mod_chatbot_status.c - observability: a "Chatbot" section in
 * mod_status's /server-status (HTML and ?auto), and a Prometheus text
 * exposition at .../metrics. All numbers come from the shared store, so
 * they are summed across every httpd child.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "apr_optional_hooks.h"
#include "mod_status.h"

#include "mod_chatbot.h"

static const char *gauge_names[CHAT_G_COUNT] = {
    "Connections", "Generating", "Queued", "ConnectionsTotal", "MessagesIn",
    "RateLimited", "Evictions", "Commands"};

static int status_hook(request_rec *r, int flags)
{
    chat_store_t *st = chatbot_store();
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    chat_metrics_snapshot_t ms;
    int i, j, nseries;
    int autof = (flags & AP_STATUS_SHORT) != 0;

    if (!st) {
        return OK;
    }
    chat_metrics_snapshot(st, &ms);
    nseries = chat_metrics_series_count(st);
    if (autof) {
        for (i = 0; i < CHAT_G_COUNT; i++) {
            ap_rprintf(r, "Chatbot%s: %" APR_INT64_T_FMT "\n", gauge_names[i], ms.gauges[i]);
        }
        ap_rprintf(r, "ChatbotConversations: %u\nChatbotConversationsMax: %u\n"
                   "ChatbotHistoryBytesUsed: %" APR_UINT64_T_FMT "\n"
                   "ChatbotHistoryBytes: %" APR_UINT64_T_FMT "\n",
                   ms.conversations, ms.max_conversations, ms.arena_used, ms.arena_size);
        for (i = 0; i < nseries; i++) {
            chat_series_snapshot_t ss;
            if (chat_metrics_series_get(st, i, &ss) != CHAT_OK) {
                continue;
            }
            ap_rprintf(r, "ChatbotAnswers_%s_%s: %" APR_UINT64_T_FMT "\n"
                       "ChatbotTokens_%s_%s: %" APR_UINT64_T_FMT "\n",
                       ss.bot, ss.backend, ss.counters[CHAT_CTR_ANSWERS], ss.bot,
                       ss.backend, ss.counters[CHAT_CTR_TOKENS]);
        }
        for (i = 0; i < ms.nerrors; i++) {
            ap_rprintf(r, "ChatbotErrors_%s: %" APR_UINT64_T_FMT "\n", ms.errors[i].code,
                       ms.errors[i].count);
        }
        for (i = 0; i < sc->backends->nelts; i++) {
            chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
            chat_backend_info_t bi;
            if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
                ap_rprintf(r, "ChatbotBackendUp_%s: %d\nChatbotBackendActive_%s: %u\n"
                           "ChatbotBackendQueued_%s: %u\n",
                           be->name, bi.healthy, be->name, bi.active, be->name, bi.queued);
            }
        }
        return OK;
    }
    ap_rputs("<hr />\n<h2><a name=\"chatbot\">Chatbot</a></h2>\n<table border=\"1\">\n", r);
    for (i = 0; i < CHAT_G_COUNT; i++) {
        ap_rprintf(r, "<tr><th align=\"left\">%s</th><td>%" APR_INT64_T_FMT "</td></tr>\n",
                   gauge_names[i], ms.gauges[i]);
    }
    ap_rprintf(r, "<tr><th align=\"left\">Conversations</th><td>%u of %u</td></tr>\n"
               "<tr><th align=\"left\">History memory</th><td>%" APR_UINT64_T_FMT
               " of %" APR_UINT64_T_FMT " bytes</td></tr>\n</table>\n",
               ms.conversations, ms.max_conversations, ms.arena_used, ms.arena_size);
    ap_rputs("<h3>Backends</h3>\n<table border=\"1\"><tr><th>Name</th><th>URL</th>"
             "<th>Health</th><th>Version</th><th>Active</th><th>Queued</th>"
             "<th>Breaker</th></tr>\n", r);
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%u</td>"
                   "<td>%u</td><td>%s</td></tr>\n",
                   ap_escape_html(r->pool, be->name), ap_escape_html(r->pool, be->url),
                   bi.healthy > 0 ? "up" : bi.healthy == 0 ? "down" : "unknown",
                   ap_escape_html(r->pool, bi.version), bi.active, bi.queued,
                   bi.breaker == CHAT_BREAKER_OPEN        ? "open"
                   : bi.breaker == CHAT_BREAKER_HALF_OPEN ? "half-open"
                                                          : "closed");
    }
    ap_rputs("</table>\n<h3>Answers</h3>\n<table border=\"1\"><tr><th>Bot</th>"
             "<th>Backend</th><th>Answers</th><th>Interrupted</th><th>Errors</th>"
             "<th>Tokens</th></tr>\n", r);
    for (i = 0; i < nseries; i++) {
        chat_series_snapshot_t ss;
        if (chat_metrics_series_get(st, i, &ss) != CHAT_OK) {
            continue;
        }
        ap_rprintf(r, "<tr><td>%s</td><td>%s</td>", ap_escape_html(r->pool, ss.bot),
                   ap_escape_html(r->pool, ss.backend));
        for (j = 0; j < CHAT_CTR_COUNT; j++) {
            if (j == CHAT_CTR_PROMPT_TOKENS) {
                continue;
            }
            ap_rprintf(r, "<td>%" APR_UINT64_T_FMT "</td>", ss.counters[j]);
        }
        ap_rputs("</tr>\n", r);
    }
    ap_rputs("</table>\n", r);
    if (ms.nerrors) {
        ap_rputs("<h3>Errors by code</h3>\n<table border=\"1\">\n", r);
        for (i = 0; i < ms.nerrors; i++) {
            ap_rprintf(r, "<tr><th align=\"left\">%s</th><td>%" APR_UINT64_T_FMT
                       "</td></tr>\n",
                       ap_escape_html(r->pool, ms.errors[i].code), ms.errors[i].count);
        }
        ap_rputs("</table>\n", r);
    }
    return OK;
}

void chatbot_status_register(apr_pool_t *p)
{
    APR_OPTIONAL_HOOK(ap, status_hook, status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

/* ---- Prometheus ------------------------------------------------------------------ */

static const char *hist_names[CHAT_HIST_COUNT] = {
    "chatbot_time_to_first_token_seconds", "chatbot_answer_duration_seconds",
    "chatbot_tokens_per_second", "chatbot_queue_wait_seconds"};
static const char *hist_help[CHAT_HIST_COUNT] = {
    "Time from sending the request to the first token.",
    "Time from the user's message to the end of the answer.",
    "Generation speed of completed answers.",
    "Time spent waiting for a backend slot."};

static void prom_label(chat_buf_t *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') {
            chat_buf_append(b, "\\", 1);
        }
        if (*v == '\n') {
            chat_buf_puts(b, "\\n");
            continue;
        }
        chat_buf_append(b, v, 1);
    }
}

static void prom_series_labels(chat_buf_t *b, const chat_series_snapshot_t *ss)
{
    chat_buf_puts(b, "bot=\"");
    prom_label(b, ss->bot);
    chat_buf_puts(b, "\",backend=\"");
    prom_label(b, ss->backend);
    chat_buf_puts(b, "\"");
}

int chatbot_metrics_handler(request_rec *r)
{
    chat_store_t *st = chatbot_store();
    chatbot_srv_conf *sc = chatbot_srv(r->server);
    chat_metrics_snapshot_t ms;
    chat_buf_t b;
    int i, h, k, nseries;
    static const struct {
        chat_counter_t c;
        const char *name, *help;
    } ctrs[] = {
        {CHAT_CTR_ANSWERS, "chatbot_answers_total", "Answers completed."},
        {CHAT_CTR_INTERRUPTED, "chatbot_answers_interrupted_total",
         "Answers stopped or failed part way."},
        {CHAT_CTR_TOKENS, "chatbot_tokens_total", "Completion tokens generated."},
        {CHAT_CTR_PROMPT_TOKENS, "chatbot_prompt_tokens_total", "Prompt tokens evaluated."},
        {CHAT_CTR_ERRORS, "chatbot_turn_errors_total", "Turns that ended in an error."},
    };
    static const struct {
        chat_gauge_t g;
        const char *name, *type, *help;
    } gauges[] = {
        {CHAT_G_CONNECTIONS, "chatbot_websocket_connections", "gauge",
         "Open WebSocket connections."},
        {CHAT_G_GENERATING, "chatbot_generating", "gauge", "Answers being generated."},
        {CHAT_G_QUEUED, "chatbot_queued", "gauge", "Turns waiting for a backend."},
        {CHAT_G_CONNECTIONS_TOTAL, "chatbot_websocket_connections_total", "counter",
         "WebSocket connections accepted."},
        {CHAT_G_MESSAGES_IN, "chatbot_client_messages_total", "counter",
         "Client protocol messages received."},
        {CHAT_G_RATE_LIMITED, "chatbot_rate_limited_total", "counter",
         "Messages refused by the rate limit."},
        {CHAT_G_EVICTIONS, "chatbot_evictions_total", "counter",
         "Conversations evicted from shared memory."},
        {CHAT_G_COMMANDS, "chatbot_commands_total", "counter", "Commands run."},
    };

    if (r->method_number != M_GET) {
        apr_table_setn(r->err_headers_out, "Allow", "GET, HEAD");
        return HTTP_METHOD_NOT_ALLOWED;
    }
    if (!st) {
        return HTTP_SERVICE_UNAVAILABLE;
    }
    chat_buf_init(&b);
    chat_metrics_snapshot(st, &ms);
    nseries = chat_metrics_series_count(st);
    for (i = 0; i < (int)(sizeof(gauges) / sizeof(gauges[0])); i++) {
        chat_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n%s %" APR_INT64_T_FMT "\n",
                        gauges[i].name, gauges[i].help, gauges[i].name, gauges[i].type,
                        gauges[i].name, ms.gauges[gauges[i].g]);
    }
    chat_buf_printf(&b, "# HELP chatbot_conversations Conversations in shared memory.\n"
                    "# TYPE chatbot_conversations gauge\nchatbot_conversations %u\n"
                    "# HELP chatbot_history_bytes_used Bytes of history text stored.\n"
                    "# TYPE chatbot_history_bytes_used gauge\n"
                    "chatbot_history_bytes_used %" APR_UINT64_T_FMT "\n"
                    "# HELP chatbot_history_bytes Size of the history arena.\n"
                    "# TYPE chatbot_history_bytes gauge\n"
                    "chatbot_history_bytes %" APR_UINT64_T_FMT "\n",
                    ms.conversations, ms.arena_used, ms.arena_size);
    chat_buf_puts(&b, "# HELP chatbot_errors_total Error frames sent, by code.\n"
                      "# TYPE chatbot_errors_total counter\n");
    for (i = 0; i < ms.nerrors; i++) {
        chat_buf_puts(&b, "chatbot_errors_total{code=\"");
        prom_label(&b, ms.errors[i].code);
        chat_buf_printf(&b, "\"} %" APR_UINT64_T_FMT "\n", ms.errors[i].count);
    }
    chat_buf_puts(&b, "# HELP chatbot_backend_up Backend health (1 up, 0 down, -1 unknown).\n"
                      "# TYPE chatbot_backend_up gauge\n");
    for (i = 0; i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK) {
            chat_buf_puts(&b, "chatbot_backend_up{backend=\"");
            prom_label(&b, be->name);
            chat_buf_printf(&b, "\"} %d\n", bi.healthy);
        }
    }
    for (k = 0; k < (int)(sizeof(ctrs) / sizeof(ctrs[0])); k++) {
        chat_buf_printf(&b, "# HELP %s %s\n# TYPE %s counter\n", ctrs[k].name, ctrs[k].help,
                        ctrs[k].name);
        for (i = 0; i < nseries; i++) {
            chat_series_snapshot_t ss;
            if (chat_metrics_series_get(st, i, &ss) != CHAT_OK) {
                continue;
            }
            chat_buf_printf(&b, "%s{", ctrs[k].name);
            prom_series_labels(&b, &ss);
            chat_buf_printf(&b, "} %" APR_UINT64_T_FMT "\n", ss.counters[ctrs[k].c]);
        }
    }
    for (h = 0; h < CHAT_HIST_COUNT; h++) {
        const double *bounds = chat_metrics_bounds((chat_hist_t)h);
        /* ms-based histograms are exported in seconds, as Prometheus wants */
        double scale = h == CHAT_HIST_TPS ? 1.0 : 0.001;
        chat_buf_printf(&b, "# HELP %s %s\n# TYPE %s histogram\n", hist_names[h],
                        hist_help[h], hist_names[h]);
        for (i = 0; i < nseries; i++) {
            chat_series_snapshot_t ss;
            uint64_t cum = 0;
            if (chat_metrics_series_get(st, i, &ss) != CHAT_OK) {
                continue;
            }
            for (k = 0; k < CHAT_HIST_BUCKETS; k++) {
                cum += ss.hist[h][k];
                chat_buf_printf(&b, "%s_bucket{", hist_names[h]);
                prom_series_labels(&b, &ss);
                if (k == CHAT_HIST_BUCKETS - 1) {
                    chat_buf_printf(&b, ",le=\"+Inf\"} %" APR_UINT64_T_FMT "\n", cum);
                }
                else {
                    chat_buf_printf(&b, ",le=\"%g\"} %" APR_UINT64_T_FMT "\n",
                                    bounds[k] * scale, cum);
                }
            }
            chat_buf_printf(&b, "%s_sum{", hist_names[h]);
            prom_series_labels(&b, &ss);
            chat_buf_printf(&b, "} %.6f\n", ss.hist_sum[h] * scale);
            chat_buf_printf(&b, "%s_count{", hist_names[h]);
            prom_series_labels(&b, &ss);
            chat_buf_printf(&b, "} %" APR_UINT64_T_FMT "\n", ss.hist_count[h]);
        }
    }
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)b.len);
    if (!r->header_only) {
        ap_rwrite(b.data, (int)b.len, r);
    }
    chat_buf_free(&b);
    return OK;
}
