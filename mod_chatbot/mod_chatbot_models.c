/* mod_chatbot_models.c - the backends' model lists (Ollama GET /api/tags,
 * OpenAI-compatible GET /v1/models): one cache per child of every
 * backend's last list, kept MODELS_TTL_MS whether it could be read or not,
 * and one way to fetch them (chatbot_http_get_all: every stale backend at
 * once, one timeout). Its readers: GET /api/models (operators ask for
 * fresh lists, anyone else gets the cache, so that no client can make the
 * module call every backend at will) and the per-chat model offered and
 * checked (mod_chatbot_settings.c).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_strings.h"

#include "mod_chatbot.h"
#include "mod_chatbot_http.h"

#define MODELS_TTL_MS 10000
#define MODELS_TIMEOUT_MS 5000
#define MODELS_BODY_MAX (1024 * 1024)
#define MODELS_MAX 1000
#define MODELS_QUIET "the model list is not available right now"

/* One backend's last list; malloc'ed, under m_lock. */
typedef struct mentry {
    struct mentry *next;
    char *key; /* backend name + '\n' + url: the same across restarts */
    char **names;
    int n;
    char *error; /* NULL: read */
    apr_uint64_t at_ms;
} mentry_t;

static pthread_mutex_t m_lock = PTHREAD_MUTEX_INITIALIZER;
static mentry_t *m_head;

static void free_names(char **names, int n)
{
    int i;

    for (i = 0; names && i < n; i++) {
        free(names[i]);
    }
    free(names);
}

static const char *key_of(apr_pool_t *p, const chatbot_backend_t *be)
{
    return apr_pstrcat(p, be->name, "\n", be->url, NULL);
}

static mentry_t *find(const char *key)
{
    mentry_t *e;

    for (e = m_head; e && strcmp(e->key, key); e = e->next) {
    }
    return e;
}

/* Copies entry e into out (pool copies). Under m_lock. */
static void copy_out(apr_pool_t *p, const mentry_t *e, chatbot_model_list_t *out)
{
    int i;

    out->names = apr_pcalloc(p, sizeof(const char *) * (e->n + 1));
    for (i = 0; i < e->n; i++) {
        out->names[i] = apr_pstrdup(p, e->names[i]);
    }
    out->n = e->n;
    out->error = e->error ? apr_pstrdup(p, e->error) : NULL;
}

/* Takes in the list just read for key (names: malloc'ed, taken over) and
 * copies it out. */
static void keep(apr_pool_t *p, const char *key, char **names, int n, const char *error,
                 chatbot_model_list_t *out)
{
    mentry_t tmp, *e;

    pthread_mutex_lock(&m_lock);
    e = find(key);
    if (!e && (e = calloc(1, sizeof(*e))) != NULL) {
        if ((e->key = strdup(key)) == NULL) {
            free(e);
            e = NULL;
        }
        else {
            e->next = m_head;
            m_head = e;
        }
    }
    if (!e) {
        /* no memory for the cache: answer without keeping it */
        memset(&tmp, 0, sizeof(tmp));
        e = &tmp;
    }
    free_names(e->names, e->n);
    free(e->error);
    e->names = names;
    e->n = n;
    e->error = error ? strdup(error) : NULL;
    if (error && !e->error) {
        e->error = strdup("out of memory");
    }
    e->at_ms = chatbot_now_ms();
    copy_out(p, e, out);
    if (e == &tmp) {
        free_names(tmp.names, tmp.n);
        free(tmp.error);
    }
    pthread_mutex_unlock(&m_lock);
}

typedef struct {
    char **names;
    int n;
} names_t;

static void model_name(void *baton, const char *name)
{
    names_t *o = baton;

    if (o->n < MODELS_MAX && (o->names[o->n] = strdup(name)) != NULL) {
        o->n++;
    }
}

/* Why the reply of g is not a model list, or NULL; the names into o. */
static const char *read_reply(apr_pool_t *p, const chatbot_backend_t *be,
                              chatbot_http_get_t *g, names_t *o)
{
    if (!g->done) {
        return "the request could not be made";
    }
    if (g->overflow) {
        return "the model list is larger than 1 MiB";
    }
    if (g->res != CHATBOT_HTTP_OK) {
        return g->errtext ? g->errtext : "the request failed";
    }
    if (g->status != 200) {
        return apr_psprintf(p, "HTTP %ld", g->status);
    }
    if ((o->names = calloc(MODELS_MAX, sizeof(char *))) == NULL) {
        return "out of memory";
    }
    if (chat_models_parse(be->wire, g->body.data ? g->body.data : "", g->body.len,
                          model_name, o) < 0) {
        free_names(o->names, o->n);
        o->names = NULL;
        o->n = 0;
        return "the backend's model list is not valid JSON of the expected shape";
    }
    return NULL;
}

apr_array_header_t *chatbot_models_get(apr_pool_t *p, server_rec *s,
                                       apr_array_header_t *bes, long connect_timeout_ms,
                                       int fresh)
{
    apr_array_header_t *out =
        apr_array_make(p, bes->nelts + 1, sizeof(chatbot_model_list_t));
    apr_uint64_t now = chatbot_now_ms();
    chatbot_http_get_t *reqs = apr_pcalloc(p, sizeof(*reqs) * (bes->nelts + 1));
    int *who = apr_pcalloc(p, sizeof(int) * (bes->nelts + 1));
    long connect_ms =
        connect_timeout_ms < MODELS_TIMEOUT_MS ? connect_timeout_ms : MODELS_TIMEOUT_MS;
    int i, n = 0;

    /* what the cache has */
    pthread_mutex_lock(&m_lock);
    for (i = 0; i < bes->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(bes, i, chatbot_backend_t *);
        chatbot_model_list_t *ml = apr_array_push(out);
        mentry_t *e = fresh ? NULL : find(key_of(p, be));

        memset(ml, 0, sizeof(*ml));
        ml->be = be;
        if (e && now - e->at_ms < MODELS_TTL_MS) {
            copy_out(p, e, ml);
            continue;
        }
        who[n] = i;
        reqs[n].url = apr_pstrcat(
            p, be->url, be->wire == CHAT_WIRE_OLLAMA ? "/api/tags" : "/v1/models", NULL);
        reqs[n].key = be->key;
        reqs[n].cap = MODELS_BODY_MAX;
        reqs[n].abort_over_cap = 1;
        n++;
    }
    pthread_mutex_unlock(&m_lock);
    if (!n) {
        return out;
    }
    /* the others, all at once; if no request could be made at all, done
     * stays 0 everywhere and each says so */
    chatbot_http_get_all(p, reqs, n, connect_ms, MODELS_TIMEOUT_MS);
    for (i = 0; i < n; i++) {
        chatbot_model_list_t *ml = &APR_ARRAY_IDX(out, who[i], chatbot_model_list_t);
        names_t got = {NULL, 0};
        const char *err = read_reply(p, ml->be, &reqs[i], &got);

        chat_buf_free(&reqs[i].body);
        if (err) {
            /* the reason is for operators and the log; anyone else gets
             * one sentence (docs/security.md, quiet errors) */
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s ? s : ap_server_conf,
                         APLOGNO(10998) "chatbot: model list of backend '%s' (%s): %s",
                         ml->be->name, ml->be->url, err);
        }
        keep(p, key_of(p, ml->be), got.names, got.n, err, ml);
    }
    return out;
}

void chatbot_models_write(chat_jw_t *jw, apr_pool_t *p, server_rec *s,
                          apr_array_header_t *bes, long connect_timeout_ms, int details)
{
    apr_array_header_t *lists =
        chatbot_models_get(p, s, bes, connect_timeout_ms, details);
    int i, k;

    chat_jw_arr_begin(jw);
    for (i = 0; i < lists->nelts; i++) {
        const chatbot_model_list_t *ml = &APR_ARRAY_IDX(lists, i, chatbot_model_list_t);
        chat_jw_obj_begin(jw);
        chat_jw_kstr(jw, "name", ml->be->name);
        chat_jw_kstr(jw, "type", ml->be->wire == CHAT_WIRE_OLLAMA ? "ollama" : "openai");
        chat_jw_key(jw, "models");
        chat_jw_arr_begin(jw);
        for (k = 0; k < ml->n; k++) {
            chat_jw_str(jw, ml->names[k]);
        }
        chat_jw_arr_end(jw);
        if (ml->error) {
            chat_jw_kstr(jw, "error", details ? ml->error : MODELS_QUIET);
        }
        chat_jw_obj_end(jw);
    }
    chat_jw_arr_end(jw);
}
