/* mod_chatbot_views.c - JSON and Markdown views of bots, sessions, history
 * and the status board, shared by the WebSocket protocol and the REST API
 * so both always describe things the same way.
 *
 * Every function reads the shared store under the lock, copies what it
 * needs, and writes with the core's JSON writer (chat/proto.h).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "apr_strings.h"
#include "apr_time.h"

#include "mod_chatbot.h"
#include "chat/markdown.h"

/* idle / queued / generating, or stopped: a session the user stopped and
 * has not written to since (a new message revives it). */
static const char *conv_state_name(const chat_conv_info_t *c)
{
    switch (c->state) {
    case CHAT_CONV_QUEUED: return "queued";
    case CHAT_CONV_GENERATING: return "generating";
    default: return (c->flags & CHAT_CONV_STOPPED) ? "stopped" : "idle";
    }
}

static const char *health_name(int h)
{
    return h > 0 ? "up" : h == 0 ? "down" : "unknown";
}

static int backend_health(chatbot_bot_t *b)
{
    chat_store_t *st = chatbot_store();
    chat_backend_info_t bi;
    int i, best = -1;

    if (!st || !b->backends) {
        return -1;
    }
    for (i = 0; i < b->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(b->backends, i, chatbot_backend_t *);
        if (chat_store_backend_get(st, be->index, &bi) == CHAT_OK && bi.healthy > best) {
            best = bi.healthy;
        }
    }
    return best;
}

void chatbot_view_session(chat_jw_t *w, server_rec *s, const chat_conv_info_t *c)
{
    chatbot_bot_t *b = chatbot_bot_find(chatbot_srv(s), c->bot);

    chat_jw_obj_begin(w);
    chat_jw_kstr(w, "conversation_id", c->id);
    chat_jw_kstr(w, "bot_id", c->bot);
    chat_jw_kstr(w, "title", c->title);
    chat_jw_kstr(w, "state", conv_state_name(c));
    if (c->state == CHAT_CONV_QUEUED && c->queue_position > 0) {
        chat_jw_kint(w, "position", c->queue_position);
    }
    chat_jw_kbool(w, "stopped", (c->flags & CHAT_CONV_STOPPED) != 0);
    chat_jw_kbool(w, "archived", (c->flags & CHAT_CONV_ARCHIVED) != 0);
    chat_jw_kint(w, "messages", c->nmsgs);
    chat_jw_kint(w, "created_ms", (int64_t)c->created_ms);
    chat_jw_kint(w, "updated_ms", (int64_t)c->updated_ms);
    chat_jw_kstr(w, "model", b ? b->model : NULL);
    chat_jw_kstr(w, "backend_health", health_name(b ? backend_health(b) : -1));
    chat_jw_obj_end(w);
}

typedef struct {
    chat_jw_t *w;
    server_rec *s;
    apr_array_header_t *list;
    apr_pool_t *p;
} list_ctx_t;

static void collect_conv(void *baton, const chat_conv_info_t *c)
{
    list_ctx_t *lc = baton;
    *(chat_conv_info_t *)apr_array_push(lc->list) = *c;
}

int chatbot_view_sessions(chat_jw_t *w, request_rec *r, const chatbot_ident_t *id,
                          const char *bot, int archived)
{
    chat_store_t *st = chatbot_store();
    list_ctx_t lc;
    apr_pool_t *tmp;
    int i, n;

    /* A WebSocket sends this on every change of the user's sessions for as
     * long as it is open: the list must not live in r->pool. */
    if (apr_pool_create(&tmp, r->pool) != APR_SUCCESS) {
        chat_jw_arr_begin(w);
        chat_jw_arr_end(w);
        return 0;
    }
    lc.w = w;
    lc.s = r->server;
    lc.p = tmp;
    lc.list = apr_array_make(tmp, 16, sizeof(chat_conv_info_t));
    if (st && chatbot_lock() == APR_SUCCESS) {
        chat_store_conv_list(st, &id->owner, bot, archived, collect_conv, &lc);
        chatbot_unlock();
    }
    chat_jw_arr_begin(w);
    for (i = 0; i < lc.list->nelts; i++) {
        chatbot_view_session(w, r->server, &APR_ARRAY_IDX(lc.list, i, chat_conv_info_t));
    }
    chat_jw_arr_end(w);
    n = lc.list->nelts;
    apr_pool_destroy(tmp);
    return n;
}

void chatbot_view_bot(chat_jw_t *w, chatbot_srv_conf *sc, chatbot_bot_t *b)
{
    int i;

    chat_jw_obj_begin(w);
    chat_jw_kstr(w, "id", b->name);
    chat_jw_kstr(w, "name", b->name);
    chat_jw_kstr(w, "model", b->model);
    chat_jw_kstr(w, "description", b->description ? b->description : "");
    chat_jw_key(w, "backends");
    chat_jw_arr_begin(w);
    for (i = 0; i < b->backends->nelts; i++) {
        chat_jw_str(w, APR_ARRAY_IDX(b->backends, i, chatbot_backend_t *)->name);
    }
    chat_jw_arr_end(w);
    chat_jw_key(w, "commands");
    chat_jw_arr_begin(w);
    for (i = 0; i < b->command_names->nelts; i++) {
        chat_jw_str(w, APR_ARRAY_IDX(b->command_names, i, const char *));
    }
    chat_jw_arr_end(w);
    chat_jw_kbool(w, "default", b == sc->default_bot_p);
    chat_jw_kstr(w, "health", health_name(backend_health(b)));
    chat_jw_obj_end(w);
}

void chatbot_view_bots(chat_jw_t *w, chatbot_srv_conf *sc)
{
    int i;

    chat_jw_arr_begin(w);
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_view_bot(w, sc, APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *));
    }
    chat_jw_arr_end(w);
}

typedef struct {
    chat_jw_t *w;
} hist_ctx_t;

apr_size_t chatbot_error_code_len(const char *text, apr_size_t len)
{
    apr_size_t k = 0;

    while (k < len && ((text[k] >= 'a' && text[k] <= 'z') || text[k] == '_')) {
        k++;
    }
    return (k > 0 && k + 2 <= len && text[k] == ':' && text[k + 1] == ' ') ? k : 0;
}

static void emit_msg(void *baton, const chat_msg_info_t *m, const char *text, size_t len)
{
    hist_ctx_t *hc = baton;
    chat_jw_t *w = hc->w;

    chat_jw_obj_begin(w);
    chat_jw_kint(w, "index", m->index);
    chat_jw_kstr(w, "role", chat_role_name(m->role));
    if (m->flags & CHAT_MSG_ERROR) {
        size_t k = chatbot_error_code_len(text, len);
        if (k > 0) {
            chat_jw_kstrn(w, "code", text, k);
            text += k + 2;
            len -= k + 2;
        }
    }
    chat_jw_kstrn(w, "content", text, len);
    chat_jw_kint(w, "ts_ms", (int64_t)m->ts_ms);
    if (m->role == CHAT_ROLE_ASSISTANT) {
        chat_jw_kbool(w, "interrupted", (m->flags & CHAT_MSG_INTERRUPTED) != 0);
        chat_jw_kbool(w, "streaming", (m->flags & CHAT_MSG_STREAMING) != 0);
    }
    if (m->flags & CHAT_MSG_COMMAND) {
        chat_jw_kbool(w, "command", 1);
    }
    if (m->flags & CHAT_MSG_ERROR) {
        chat_jw_kbool(w, "error", 1);
    }
    if (m->flags & CHAT_MSG_REFUSED) {
        chat_jw_kbool(w, "refused", 1);
    }
    chat_jw_obj_end(w);
}

const char *chatbot_view_history(chat_jw_t *w, const chatbot_ident_t *id,
                                 const char *conv_id, apr_int64_t limit,
                                 apr_int64_t offset, chat_buf_t *scratch)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    hist_ctx_t hc;
    chat_status_t rc;
    int n;

    if (limit <= 0 || limit > 1000) {
        limit = limit <= 0 ? 50 : 1000;
    }
    if (offset < 0) {
        offset = 0;
    }
    if (!st || chatbot_lock() != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    rc = chat_store_conv_get(st, &id->owner, conv_id, &ci);
    if (rc != CHAT_OK) {
        chatbot_unlock();
        return CHAT_ERR_NOT_FOUND;
    }
    chat_jw_kstr(w, "conversation_id", ci.id);
    chat_jw_kstr(w, "bot_id", ci.bot);
    chat_jw_kstr(w, "title", ci.title);
    chat_jw_kstr(w, "state", conv_state_name(&ci));
    chat_jw_kint(w, "total", ci.nmsgs);
    chat_jw_kint(w, "offset", offset);
    chat_jw_kint(w, "limit", limit);
    chat_jw_kbool(w, "has_more", (uint64_t)offset + (uint64_t)limit < ci.nmsgs);
    chat_jw_key(w, "messages");
    chat_jw_arr_begin(w);
    hc.w = w;
    n = 0;
    if ((uint64_t)offset < ci.nmsgs) {
        n = chat_store_msg_read(st, &id->owner, conv_id, (uint32_t)offset, (uint32_t)limit,
                                scratch, emit_msg, &hc);
    }
    chatbot_unlock();
    chat_buf_reset(scratch, 64 * 1024);
    chat_jw_arr_end(w);
    return n < 0 ? CHAT_ERR_INTERNAL : NULL;
}

/* ---- export --------------------------------------------------------------------- */

typedef struct {
    chat_buf_t *out;
    chat_jw_t *w;
    int json;
} exp_ctx_t;

/* A message that leaves a code fence open (an answer stopped inside a code
 * block, a user pasting half a block) would swallow every later heading of
 * the export into it: close it where the message ends. */
static void close_fence(chat_buf_t *out, const char *text, size_t len)
{
    char ch;
    size_t k = chat_md_open_fence(text, len, &ch);

    if (k) {
        chat_buf_puts(out, len && text[len - 1] == '\n' ? "" : "\n");
        while (k--) {
            chat_buf_append(out, &ch, 1);
        }
    }
}

static void export_msg(void *baton, const chat_msg_info_t *m, const char *text, size_t len)
{
    exp_ctx_t *ec = baton;

    if (ec->json) {
        emit_msg(&(hist_ctx_t){ec->w}, m, text, len);
        return;
    }
    if (m->flags & CHAT_MSG_ERROR) {
        size_t k = chatbot_error_code_len(text, len);
        if (k > 0) {
            chat_buf_printf(ec->out, "> **%s (%.*s):** ",
                            (m->flags & CHAT_MSG_REFUSED) ? "Refused" : "Error", (int)k, text);
            text += k + 2;
            len -= k + 2;
        }
        else {
            chat_buf_puts(ec->out, "> **Error:** ");
        }
        chat_buf_append(ec->out, text, len);
        chat_buf_puts(ec->out, "\n\n");
        return;
    }
    chat_buf_printf(ec->out, "### %s%s\n\n",
                    m->role == CHAT_ROLE_USER        ? "You"
                    : m->role == CHAT_ROLE_ASSISTANT ? "Assistant"
                                                     : chat_role_name(m->role),
                    (m->flags & CHAT_MSG_INTERRUPTED) ? " (interrupted)" : "");
    chat_buf_append(ec->out, text, len);
    close_fence(ec->out, text, len);
    chat_buf_puts(ec->out, "\n\n");
}

const char *chatbot_view_export(request_rec *r, const chatbot_ident_t *id,
                                const char *conv_id, int json, chat_buf_t *out,
                                const char **filename)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    chat_buf_t scratch;
    chat_jw_t w;
    exp_ctx_t ec;
    char date[APR_CTIME_LEN];
    int n;

    if (!st || chatbot_lock() != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    if (chat_store_conv_get(st, &id->owner, conv_id, &ci) != CHAT_OK) {
        chatbot_unlock();
        return CHAT_ERR_NOT_FOUND;
    }
    chat_buf_init(&scratch);
    ec.out = out;
    ec.json = json;
    ec.w = &w;
    apr_ctime(date, (apr_time_t)ci.created_ms * 1000);
    if (json) {
        chat_jw_init(&w, out);
        chat_jw_obj_begin(&w);
        chat_jw_kstr(&w, "conversation_id", ci.id);
        chat_jw_kstr(&w, "bot_id", ci.bot);
        chat_jw_kstr(&w, "title", ci.title);
        chat_jw_kint(&w, "created_ms", (int64_t)ci.created_ms);
        chat_jw_kint(&w, "updated_ms", (int64_t)ci.updated_ms);
        chat_jw_key(&w, "messages");
        chat_jw_arr_begin(&w);
    }
    else {
        chat_one_line(ci.title); /* titles stored before they were kept to one line */
        chat_buf_printf(out, "# %s\n\n*Bot:* %s  \n*Started:* %s  \n*Messages:* %u\n\n",
                        ci.title[0] ? ci.title : "Conversation", ci.bot, date, ci.nmsgs);
    }
    n = chat_store_msg_read(st, &id->owner, conv_id, 0, 0, &scratch, export_msg, &ec);
    chatbot_unlock();
    chat_buf_free(&scratch);
    if (json) {
        chat_jw_arr_end(&w);
        chat_jw_obj_end(&w);
    }
    *filename = apr_psprintf(r->pool, "chat-%s-%.8s.%s", ci.bot, ci.id + 16,
                             json ? "json" : "md");
    return n < 0 ? CHAT_ERR_INTERNAL : NULL;
}

/* ---- status board --------------------------------------------------------------- */

static const char *breaker_name(int b)
{
    return b == CHAT_BREAKER_OPEN ? "open" : b == CHAT_BREAKER_HALF_OPEN ? "half-open"
                                                                         : "closed";
}

void chatbot_view_backends(chat_jw_t *w, chatbot_srv_conf *sc)
{
    chat_store_t *st = chatbot_store();
    int i;

    chat_jw_arr_begin(w);
    for (i = 0; st && i < sc->backends->nelts; i++) {
        chatbot_backend_t *be = APR_ARRAY_IDX(sc->backends, i, chatbot_backend_t *);
        chat_backend_info_t bi;
        if (chat_store_backend_get(st, be->index, &bi) != CHAT_OK) {
            continue;
        }
        chat_jw_obj_begin(w);
        chat_jw_kstr(w, "name", be->name);
        chat_jw_kstr(w, "type", be->wire == CHAT_WIRE_OLLAMA ? "ollama" : "openai");
        chat_jw_kstr(w, "url", be->url);
        if (bi.healthy < 0) {
            chat_jw_key(w, "healthy");
            chat_jw_null(w);
        }
        else {
            chat_jw_kbool(w, "healthy", bi.healthy);
        }
        chat_jw_kstr(w, "version", bi.version[0] ? bi.version : NULL);
        chat_jw_kstr(w, "detail", bi.detail);
        chat_jw_kint(w, "active", bi.active);
        chat_jw_kint(w, "max", bi.max_active);
        chat_jw_kint(w, "queued", bi.queued);
        chat_jw_kstr(w, "breaker", breaker_name(bi.breaker));
        chat_jw_kint(w, "checked_ms", (int64_t)bi.checked_ms);
        chat_jw_obj_end(w);
    }
    chat_jw_arr_end(w);
}

void chatbot_view_status(chat_jw_t *w, chatbot_srv_conf *sc)
{
    chat_store_t *st = chatbot_store();
    chat_metrics_snapshot_t ms;

    chat_jw_key(w, "backends");
    chatbot_view_backends(w, sc);
    if (st) {
        chat_metrics_snapshot(st, &ms);
        chat_jw_kint(w, "connections", ms.gauges[CHAT_G_CONNECTIONS]);
        chat_jw_kint(w, "generating", ms.gauges[CHAT_G_GENERATING]);
        chat_jw_kint(w, "queued", ms.gauges[CHAT_G_QUEUED]);
        chat_jw_kint(w, "conversations", ms.conversations);
        chat_jw_kint(w, "history_bytes_used", (int64_t)ms.arena_used);
        chat_jw_kint(w, "history_bytes", (int64_t)ms.arena_size);
    }
}
