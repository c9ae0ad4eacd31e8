/* mod_chatbot_probe.c - asking the backends how they are: health probes,
 * recorded in the store (the model lists are mod_chatbot_models.c's).
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

#define PROBE_BODY_MAX 65536

/* ---- health ------------------------------------------------------------------------ */

/* The version an Ollama /api/version reply names, or "". */
static void probe_version(const chat_buf_t *body, char *version, apr_size_t cap)
{
    json_object *o = json_tokener_parse(body->data), *v;

    if (o && json_object_object_get_ex(o, "version", &v) &&
        json_object_is_type(v, json_type_string)) {
        apr_cpystrn(version, json_object_get_string(v), cap);
    }
    if (o) {
        json_object_put(o);
    }
}

/* Probes every backend whose last check is older than the interval (GET
 * /api/version, or /v1/models for OpenAI-compatible servers), all at once,
 * and records the results in the store: the wait is one probe's timeout,
 * not the sum of them. */
void chatbot_probe_health(apr_pool_t *p, chatbot_srv_conf *sc, long connect_timeout_ms,
                          int force)
{
    chat_store_t *st = chatbot_store();
    apr_array_header_t *bes = sc->backends;
    apr_uint64_t now = chatbot_now_ms();
    chatbot_http_get_t *prs;
    chatbot_backend_t **who;
    int i, n = 0;

    if (!st) {
        return;
    }
    prs = apr_pcalloc(p, sizeof(*prs) * (bes->nelts + 1));
    who = apr_pcalloc(p, sizeof(*who) * (bes->nelts + 1));
    for (i = 0; i < bes->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(bes, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        if (force || bi.healthy < 0 ||
            now - bi.checked_ms >= (apr_uint64_t)apr_time_as_msec(sc->health_interval) ||
            (bi.healthy == 0 && now - bi.checked_ms >= 2000)) {
            who[n] = be;
            prs[n].url = apr_pstrcat(
                p, be->url, be->wire == CHAT_WIRE_OLLAMA ? "/api/version" : "/v1/models",
                NULL);
            prs[n].key = be->key;
            prs[n].cap = PROBE_BODY_MAX;
            n++;
        }
    }
    if (!n || chatbot_http_get_all(p, prs, n, connect_timeout_ms,
                                   connect_timeout_ms + 3000) != APR_SUCCESS) {
        return;
    }
    for (i = 0; i < n; i++) {
        chatbot_http_get_t *pr = &prs[i];
        char version[32] = "";
        char detail[128] = "";
        int ok = 0;

        if (!pr->done) {
            apr_cpystrn(detail, "the probe could not be made", sizeof(detail));
        }
        else if (pr->res != CHATBOT_HTTP_OK) {
            apr_cpystrn(detail, pr->errtext, sizeof(detail));
        }
        else if (pr->status != 200) {
            apr_snprintf(detail, sizeof(detail), "HTTP %ld", pr->status);
        }
        else {
            ok = 1;
            if (who[i]->wire == CHAT_WIRE_OLLAMA && pr->body.len) {
                probe_version(&pr->body, version, sizeof(version));
            }
        }
        chat_buf_free(&pr->body);
        chat_store_backend_health(st, who[i]->index, ok, version, detail,
                                  chatbot_now_ms());
    }
}
