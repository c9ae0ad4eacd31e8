/* mod_chatbot_probe.c - asking the backends how they are: health probes
 * (recorded in the store) and model lists (for GET /api/models).
 */
#include <pthread.h>
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

#define PROBE_BODY_MAX 65536
#define MODELS_BODY_MAX (1024 * 1024)
#define MODELS_TIMEOUT_MS 5000
#define MODELS_MAX 1000
/* how long a child answers GET /api/models from its last lists when the
 * client is not an operator (ChatbotShowDetails off) */
#define MODELS_PUBLIC_TTL_MS 10000
#define MODELS_CACHE_SLOTS 8

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

/* ---- model lists ------------------------------------------------------------------ */

struct chatbot_models {
    apr_array_header_t *bes;
    chatbot_http_get_t *reqs;
};

chatbot_models_t *chatbot_models_fetch(apr_pool_t *p, apr_array_header_t *bes,
                                       long connect_timeout_ms)
{
    chatbot_models_t *ml = apr_pcalloc(p, sizeof(*ml));
    long connect_ms =
        connect_timeout_ms < MODELS_TIMEOUT_MS ? connect_timeout_ms : MODELS_TIMEOUT_MS;
    int i;

    ml->bes = bes;
    ml->reqs = apr_pcalloc(p, sizeof(*ml->reqs) * (bes->nelts + 1));
    for (i = 0; i < bes->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(bes, i, chatbot_backend_t *);
        ml->reqs[i].url = apr_pstrcat(
            p, be->url, be->wire == CHAT_WIRE_OLLAMA ? "/api/tags" : "/v1/models", NULL);
        ml->reqs[i].key = be->key;
        ml->reqs[i].cap = MODELS_BODY_MAX;
        ml->reqs[i].abort_over_cap = 1;
    }
    if (chatbot_http_get_all(p, ml->reqs, bes->nelts, connect_ms, MODELS_TIMEOUT_MS) !=
        APR_SUCCESS) {
        return NULL;
    }
    return ml;
}

typedef struct {
    chat_jw_t *jw;
    int n;
} models_out_t;

static void model_name(void *baton, const char *name)
{
    models_out_t *o = baton;

    if (o->n++ < MODELS_MAX) {
        chat_jw_str(o->jw, name);
    }
}

void chatbot_models_write(chat_jw_t *jw, apr_pool_t *p, server_rec *s,
                          chatbot_models_t *ml, int details)
{
    int i;

    chat_jw_arr_begin(jw);
    for (i = 0; i < ml->bes->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(ml->bes, i, chatbot_backend_t *);
        chatbot_http_get_t *m = &ml->reqs[i];
        const char *err = NULL;
        models_out_t o;
        chat_buf_t names;

        chat_jw_obj_begin(jw);
        chat_jw_kstr(jw, "name", be->name);
        chat_jw_kstr(jw, "type", be->wire == CHAT_WIRE_OLLAMA ? "ollama" : "openai");
        if (!m->done) {
            err = "the request could not be made";
        }
        else if (m->overflow) {
            err = "the model list is larger than 1 MiB";
        }
        else if (m->res != CHATBOT_HTTP_OK) {
            err = m->errtext;
        }
        else if (m->status != 200) {
            err = apr_psprintf(p, "HTTP %ld", m->status);
        }
        /* names go to a side buffer first: a parse error must not leave a
         * half-written array */
        chat_buf_init(&names);
        if (!err) {
            chat_jw_t nw;
            int n;
            chat_jw_init(&nw, &names);
            chat_jw_arr_begin(&nw);
            o.jw = &nw;
            o.n = 0;
            n = chat_models_parse(be->wire, m->body.data ? m->body.data : "", m->body.len,
                                  model_name, &o);
            chat_jw_arr_end(&nw);
            if (n < 0 || chat_jw_status(&nw) != CHAT_OK) {
                err = "the backend's model list is not valid JSON of the expected shape";
            }
        }
        chat_jw_key(jw, "models");
        if (err) {
            /* the reason is for operators and the log; anyone else gets
             * one sentence (docs/security.md, quiet errors) */
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         APLOGNO(10998) "chatbot: model list of backend '%s' (%s): %s",
                         be->name, be->url, err);
            chat_jw_arr_begin(jw);
            chat_jw_arr_end(jw);
            chat_jw_kstr(jw, "error",
                         details ? err : "the model list is not available right now");
        }
        else {
            chat_jw_raw(jw, names.data, names.len);
        }
        chat_buf_free(&names);
        chat_jw_obj_end(jw);
    }
    chat_jw_arr_end(jw);
    for (i = 0; i < ml->bes->nelts; i++) {
        chat_buf_free(&ml->reqs[i].body);
    }
}

/* ---- GET /api/models ------------------------------------------------------------ */

typedef struct {
    const void *bes; /* the server's backend list: one entry per vhost */
    char *json;      /* malloc'ed */
    apr_size_t len;
    apr_uint64_t at_ms;
} models_slot_t;

static pthread_mutex_t mslot_lock = PTHREAD_MUTEX_INITIALIZER;
static models_slot_t mslots[MODELS_CACHE_SLOTS];

static const char *models_cached(apr_pool_t *p, const void *bes, apr_size_t *len)
{
    apr_uint64_t now = chatbot_now_ms();
    const char *out = NULL;
    int i;

    pthread_mutex_lock(&mslot_lock);
    for (i = 0; i < MODELS_CACHE_SLOTS; i++) {
        if (mslots[i].json && mslots[i].bes == bes &&
            now - mslots[i].at_ms < MODELS_PUBLIC_TTL_MS) {
            out = apr_pstrmemdup(p, mslots[i].json, mslots[i].len);
            *len = mslots[i].len;
            break;
        }
    }
    pthread_mutex_unlock(&mslot_lock);
    return out;
}

static void models_keep(const void *bes, const char *json, apr_size_t len)
{
    apr_uint64_t now = chatbot_now_ms();
    models_slot_t *slot = NULL;
    char *copy = malloc(len + 1);
    int i;

    if (!copy) {
        return;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    pthread_mutex_lock(&mslot_lock);
    for (i = 0; i < MODELS_CACHE_SLOTS; i++) {
        if (mslots[i].bes == bes || !mslots[i].json) {
            slot = &mslots[i];
            break;
        }
        if (!slot || mslots[i].at_ms < slot->at_ms) {
            slot = &mslots[i]; /* else the oldest goes */
        }
    }
    free(slot->json);
    slot->bes = bes;
    slot->json = copy;
    slot->len = len;
    slot->at_ms = now;
    pthread_mutex_unlock(&mslot_lock);
}

const char *chatbot_models_json(apr_pool_t *p, server_rec *s, apr_array_header_t *bes,
                                long connect_timeout_ms, int details, apr_size_t *len)
{
    chatbot_models_t *ml;
    chat_buf_t buf;
    chat_jw_t jw;
    const char *out;

    if (!details && (out = models_cached(p, bes, len)) != NULL) {
        return out;
    }
    ml = chatbot_models_fetch(p, bes, connect_timeout_ms);
    if (!ml) {
        return NULL;
    }
    chat_buf_init(&buf);
    chat_jw_init(&jw, &buf);
    chatbot_models_write(&jw, p, s, ml, details);
    if (chat_jw_status(&jw) != CHAT_OK) {
        chat_buf_free(&buf);
        return NULL;
    }
    out = apr_pstrmemdup(p, buf.data ? buf.data : "[]", buf.data ? buf.len : 2);
    *len = buf.data ? buf.len : 2;
    if (!details) {
        models_keep(bes, out, *len);
    }
    chat_buf_free(&buf);
    return out;
}
