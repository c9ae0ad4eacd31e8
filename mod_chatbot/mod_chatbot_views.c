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
#include "mod_chatbot_settings.h"
#include "chat/versions.h"
#include "chat/compat.h"
#include "chat/markdown.h"
#include "chat/attach.h"

/* idle / queued / generating, or stopped: a session the user stopped and
 * has not written to since (a new message revives it). */
static const char *conv_state_name(const chat_conv_info_t *c)
{
    switch (c->state) {
    case CHAT_CONV_QUEUED:
        return "queued";
    case CHAT_CONV_GENERATING:
        return "generating";
    default:
        return (c->flags & CHAT_CONV_STOPPED) ? "stopped" : "idle";
    }
}

const char *chatbot_view_health_name(int healthy)
{
    return healthy > 0 ? "up" : healthy == 0 ? "down" : "unknown";
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

int chatbot_view_bot_health(chatbot_bot_t *b)
{
    return backend_health(b);
}

void chatbot_view_session(chat_jw_t *jw, server_rec *s, const chatbot_limits_t *lim,
                          const chat_conv_info_t *c)
{
    chatbot_bot_t *b = chatbot_bot_find(chatbot_srv(s), c->bot);

    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "conversation_id", c->id);
    chat_jw_kstr(jw, "bot_id", c->bot);
    chat_jw_kstr(jw, "title", c->title);
    chat_jw_kstr(jw, "state", conv_state_name(c));
    if (c->state == CHAT_CONV_QUEUED && c->queue_position > 0) {
        chat_jw_kint(jw, "position", c->queue_position);
    }
    chat_jw_kbool(jw, "stopped", (c->flags & CHAT_CONV_STOPPED) != 0);
    chat_jw_kbool(jw, "archived", (c->flags & CHAT_CONV_ARCHIVED) != 0);
    chat_jw_kint(jw, "messages", c->nmsgs);
    chat_jw_kint(jw, "created_ms", (int64_t)c->created_ms);
    chat_jw_kint(jw, "updated_ms", (int64_t)c->updated_ms);
    chat_jw_kstr(jw, "model", chatbot_settings_model(lim, b, c));
    chat_jw_kstr(jw, "backend_health",
                 chatbot_view_health_name(b ? backend_health(b) : -1));
    chat_jw_obj_end(jw);
}

typedef struct {
    chat_jw_t *jw;
    server_rec *s;
    apr_array_header_t *list;
    apr_pool_t *p;
} list_ctx_t;

static void collect_conv(void *baton, const chat_conv_info_t *c)
{
    list_ctx_t *lc = baton;
    *(chat_conv_info_t *)apr_array_push(lc->list) = *c;
}

int chatbot_view_sessions(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                          const char *bot, int archived)
{
    chat_store_t *st = chatbot_store();
    chatbot_limits_t lim;
    list_ctx_t lc;
    apr_pool_t *tmp;
    int i, n;

    /* A WebSocket sends this on every change of the user's sessions for as
     * long as it is open: the list must not live in r->pool. */
    if (apr_pool_create(&tmp, r->pool) != APR_SUCCESS) {
        chat_jw_arr_begin(jw);
        chat_jw_arr_end(jw);
        return 0;
    }
    lc.jw = jw;
    lc.s = r->server;
    lc.p = tmp;
    /* a user has a few sessions: start small (each entry is 500 bytes,
     * which apr_array_make zeroes) and let the array grow */
    lc.list = apr_array_make(tmp, 2, sizeof(chat_conv_info_t));
    if (st) {
        chat_store_conv_list(st, &id->owner, bot, archived, collect_conv, &lc);
    }
    chatbot_limits_get(r, &lim);
    chat_jw_arr_begin(jw);
    for (i = 0; i < lc.list->nelts; i++) {
        chatbot_view_session(jw, r->server, &lim,
                             &APR_ARRAY_IDX(lc.list, i, chat_conv_info_t));
    }
    chat_jw_arr_end(jw);
    n = lc.list->nelts;
    apr_pool_destroy(tmp);
    return n;
}

void chatbot_view_bot(chat_jw_t *jw, chatbot_srv_conf *sc, chatbot_bot_t *b)
{
    int i;

    chat_jw_obj_begin(jw);
    chat_jw_kstr(jw, "id", b->name);
    chat_jw_kstr(jw, "name", b->name);
    chat_jw_kstr(jw, "model", b->model);
    chat_jw_kstr(jw, "description", b->description ? b->description : "");
    chat_jw_key(jw, "backends");
    chat_jw_arr_begin(jw);
    for (i = 0; i < b->backends->nelts; i++) {
        chat_jw_str(jw, APR_ARRAY_IDX(b->backends, i, chatbot_backend_t *)->name);
    }
    chat_jw_arr_end(jw);
    chat_jw_key(jw, "commands");
    chat_jw_arr_begin(jw);
    for (i = 0; i < b->command_names->nelts; i++) {
        chat_jw_str(jw, APR_ARRAY_IDX(b->command_names, i, const char *));
    }
    chat_jw_arr_end(jw);
    chat_jw_kbool(jw, "default", b == sc->default_bot_p);
    chat_jw_kstr(jw, "health", chatbot_view_health_name(backend_health(b)));
    chat_jw_obj_end(jw);
}

void chatbot_view_bots(chat_jw_t *jw, chatbot_srv_conf *sc)
{
    int i;

    chat_jw_arr_begin(jw);
    for (i = 0; i < sc->bots->nelts; i++) {
        chatbot_view_bot(jw, sc, APR_ARRAY_IDX(sc->bots, i, chatbot_bot_t *));
    }
    chat_jw_arr_end(jw);
}

typedef struct {
    chat_jw_t *jw;
    const char *compat_id; /* port-8000 fields: the bot id old clients know */
    const char *conv_id;
    const char *err_code; /* the reason of the message being emitted, or NULL */
    const char *err_msg;
    size_t err_code_len, err_msg_len;
    const chatbot_tree_t *tree; /* versions (NULL: none written) */
    int whole_tree;             /* also "parent" and "active" (JSON export) */
} hist_ctx_t;

/* Which messages a read passes on: the active path's positions [from, to)
 * (path 1), the messages off it (path 2), or all (path 0). */
typedef struct {
    const chatbot_tree_t *tree;
    int path;
    uint32_t from, to;
    chat_msg_cb *next;
    void *baton;
} path_filter_t;

static void path_cb(void *baton, const chat_msg_info_t *m, const char *text, size_t len)
{
    path_filter_t *pf = baton;
    uint32_t pos =
        m->index < pf->tree->n ? pf->tree->pos_of[m->index] : CHAT_MSG_NO_PARENT;

    if (m->index >= pf->tree->n) {
        return; /* stored after the tree was read */
    }
    if (pf->path == 1 && (pos == CHAT_MSG_NO_PARENT || pos < pf->from || pos >= pf->to)) {
        return;
    }
    if (pf->path == 2 && pos != CHAT_MSG_NO_PARENT) {
        return;
    }
    pf->next(pf->baton, m, text, len);
}

/* Messages pass through a one-message lookahead so that an answer cut off
 * part-way is told apart from a user's Stop: the engine stores a failure's
 * reason as an error record ("<code>: <sentence>", CHAT_MSG_ERROR) right
 * after the partial answer, so an interrupted answer followed by such a
 * record failed for that reason. */
typedef struct {
    chat_msg_cb *emit; /* the view's own callback */
    void *baton;
    int held; /* an interrupted answer waits for what follows it */
    chat_msg_info_t info;
    chat_buf_t text;
    uint32_t left; /* messages still to emit (the last read is a peek) */
    int emitted;
    const char **err_code, **err_msg; /* where the view reads the reason */
    size_t *err_code_len, *err_msg_len;
} reason_la_t;

static int is_error_record(const chat_msg_info_t *m)
{
    return m->role == CHAT_ROLE_ASSISTANT && (m->flags & CHAT_MSG_ERROR) &&
           !(m->flags & CHAT_MSG_COMMAND);
}

static void la_emit(reason_la_t *la, const chat_msg_info_t *m, const char *text,
                    size_t len)
{
    if (la->left == 0) {
        return;
    }
    la->left--;
    la->emitted++;
    la->emit(la->baton, m, text, len);
}

static void la_flush(reason_la_t *la, const chat_msg_info_t *next, const char *text,
                     size_t len)
{
    if (!la->held) {
        return;
    }
    la->held = 0;
    if (next && is_error_record(next)) {
        size_t k = chatbot_error_code_len(text, len);
        *la->err_code = k ? text : "backend_error";
        *la->err_code_len = k ? k : strlen("backend_error");
        *la->err_msg = k ? text + k + 2 : text;
        *la->err_msg_len = k ? len - k - 2 : len;
    }
    la_emit(la, &la->info, la->text.data ? la->text.data : "", la->text.len);
    *la->err_code = NULL;
}

static void la_cb(void *baton, const chat_msg_info_t *m, const char *text, size_t len)
{
    reason_la_t *la = baton;

    la_flush(la, m, text, len);
    if (m->role == CHAT_ROLE_ASSISTANT && (m->flags & CHAT_MSG_INTERRUPTED) &&
        !(m->flags & (CHAT_MSG_ERROR | CHAT_MSG_COMMAND))) {
        la->held = 1;
        la->info = *m;
        chat_buf_reset(&la->text, 64 * 1024);
        chat_buf_append(&la->text, text, len);
        return;
    }
    la_emit(la, m, text, len);
}

/* Reads messages [start, start+count) (count 0: all) into emit, telling
 * each interrupted answer its failure's reason (la->err_* set while it is
 * emitted). Reads one message more than asked to see a reason that follows
 * the last one. Returns the number emitted or a negative status. */
static int read_with_reasons(chat_store_t *st, const chatbot_ident_t *id,
                             const char *conv_id, uint32_t start, uint32_t count,
                             chat_buf_t *scratch, chat_msg_cb *emit, void *baton,
                             hist_ctx_t *hc, path_filter_t *pf)
{
    reason_la_t la;
    int n;

    memset(&la, 0, sizeof(la));
    la.emit = emit;
    la.baton = baton;
    la.left = count ? count : UINT32_MAX;
    la.err_code = &hc->err_code;
    la.err_msg = &hc->err_msg;
    la.err_code_len = &hc->err_code_len;
    la.err_msg_len = &hc->err_msg_len;
    hc->err_code = NULL;
    chat_buf_init(&la.text);
    if (pf) {
        /* start and count are positions on the active path (pf->path 1),
         * or nothing (the messages off it) */
        if (pf->path == 1) {
            pf->from = start;
            pf->to = count && start + count + 1 > start ? start + count + 1 : UINT32_MAX;
        }
        pf->next = la_cb;
        pf->baton = &la;
        n = chat_store_msg_read(st, &id->owner, conv_id, 0, 0, scratch, path_cb, pf);
    }
    else {
        n = chat_store_msg_read(st, &id->owner, conv_id, start, count ? count + 1 : 0,
                                scratch, la_cb, &la);
    }
    la_flush(&la, NULL, NULL, 0);
    chat_buf_free(&la.text);
    return n < 0 ? n : la.emitted;
}

apr_size_t chatbot_error_code_len(const char *text, apr_size_t len)
{
    apr_size_t k = 0;

    while (k < len && ((text[k] >= 'a' && text[k] <= 'z') || text[k] == '_')) {
        k++;
    }
    return (k > 0 && k + 2 <= len && text[k] == ':' && text[k + 1] == ' ') ? k : 0;
}

/* The attachments of a message stored with CHAT_MSG_ATTACH, as
 * "attachments": [{"name","bytes","content"}]; *text / *len become the
 * user's own text. A record not in the stored form is shown as it is. */
static void emit_attachments(chat_jw_t *jw, const char **text, size_t *len)
{
    chat_attach_t at[CHAT_ATTACH_MAX];
    size_t i, n;

    if (chat_attach_decode(*text, *len, at, CHAT_ATTACH_MAX, &n, text, len) != CHAT_OK) {
        return;
    }
    chat_jw_key(jw, "attachments");
    chat_jw_arr_begin(jw);
    for (i = 0; i < n; i++) {
        chat_jw_obj_begin(jw);
        chat_jw_kstrn(jw, "name", at[i].name, at[i].name_len);
        chat_jw_kint(jw, "bytes", (int64_t)at[i].len);
        chat_jw_kstrn(jw, "content", at[i].content, at[i].len);
        chat_jw_obj_end(jw);
    }
    chat_jw_arr_end(jw);
}

static void emit_msg(void *baton, const chat_msg_info_t *m, const char *text, size_t len)
{
    hist_ctx_t *hc = baton;
    chat_jw_t *jw = hc->jw;

    chat_jw_obj_begin(jw);
    chat_jw_kint(jw, "index", m->index);
    chat_jw_kstr(jw, "role", chat_role_name(m->role));
    if (m->flags & CHAT_MSG_ERROR) {
        size_t k = chatbot_error_code_len(text, len);
        if (k > 0) {
            chat_jw_kstrn(jw, "code", text, k);
            text += k + 2;
            len -= k + 2;
        }
    }
    if (m->flags & CHAT_MSG_ATTACH) {
        emit_attachments(jw, &text, &len);
    }
    chat_jw_kstrn(jw, "content", text, len);
    chat_jw_kint(jw, "ts_ms", (int64_t)m->ts_ms);
    if (m->role == CHAT_ROLE_ASSISTANT) {
        chat_jw_kbool(jw, "interrupted", (m->flags & CHAT_MSG_INTERRUPTED) != 0);
        chat_jw_kbool(jw, "streaming", (m->flags & CHAT_MSG_STREAMING) != 0);
    }
    if (hc->err_code) {
        /* an answer cut off by a failure: its reason (a Stop has none) */
        chat_jw_key(jw, "error");
        chat_jw_obj_begin(jw);
        chat_jw_kstrn(jw, "code", hc->err_code, hc->err_code_len);
        chat_jw_kstrn(jw, "message", hc->err_msg, hc->err_msg_len);
        chat_jw_obj_end(jw);
    }
    if (hc->tree) {
        if (m->index < hc->tree->n && hc->tree->pos_of[m->index] != CHAT_MSG_NO_PARENT) {
            /* its place on the active path (history offsets count these) */
            chat_jw_kint(jw, "position", hc->tree->pos_of[m->index]);
        }
        chatbot_ver_members(jw, hc->tree, m->index, hc->whole_tree);
    }
    if (m->flags & CHAT_MSG_COMMAND) {
        chat_jw_kbool(jw, "command", 1);
    }
    if (m->flags & CHAT_MSG_ERROR) {
        chat_jw_kbool(jw, "error", 1);
    }
    if (m->flags & CHAT_MSG_REFUSED) {
        chat_jw_kbool(jw, "refused", 1);
    }
    if (hc->compat_id) {
        char ts[CHAT_COMPAT_TS_SIZE];
        chat_compat_timestamp(m->ts_ms, ts);
        chat_jw_kstr(jw, "timestamp", ts);
        chat_jw_kstr(jw, "bot_id", hc->compat_id);
        chat_jw_kstr(jw, "session_id", hc->conv_id);
    }
    chat_jw_obj_end(jw);
}

const char *chatbot_view_history(chat_jw_t *jw, const chatbot_ident_t *id,
                                 const char *conv_id, apr_int64_t limit,
                                 apr_int64_t offset, chat_buf_t *scratch)
{
    return chatbot_view_history_compat(jw, id, conv_id, limit, offset, scratch, NULL,
                                       NULL);
}

const char *chatbot_view_history_compat(chat_jw_t *jw, const chatbot_ident_t *id,
                                        const char *conv_id, apr_int64_t limit,
                                        apr_int64_t offset, chat_buf_t *scratch,
                                        const char *compat_id,
                                        const chat_conv_info_t *known)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    chatbot_tree_t tree;
    path_filter_t pf;
    hist_ctx_t hc;
    chat_status_t rc;
    int n;

    if (limit <= 0 || limit > 1000) {
        limit = limit <= 0 ? 50 : 1000;
    }
    if (offset < 0) {
        offset = 0;
    }
    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    if (known) {
        ci = *known;
    }
    else if (chat_store_conv_get(st, &id->owner, conv_id, &ci) != CHAT_OK) {
        return CHAT_ERR_NOT_FOUND;
    }
    /* the active path: what the conversation shows (chat/versions.h) */
    rc = chatbot_tree_load_n(st, &id->owner, conv_id, ci.nmsgs, scratch, &tree);
    if (rc != CHAT_OK) {
        return rc == CHAT_ENOTFOUND ? CHAT_ERR_NOT_FOUND : CHAT_ERR_INTERNAL;
    }
    chat_jw_kstr(jw, "conversation_id", ci.id);
    chat_jw_kstr(jw, "bot_id", ci.bot);
    chat_jw_kstr(jw, "title", ci.title);
    chat_jw_kstr(jw, "state", conv_state_name(&ci));
    chat_jw_kint(jw, "total", tree.npath);
    chat_jw_kint(jw, "stored", tree.n);
    chat_jw_kint(jw, "offset", offset);
    chat_jw_kint(jw, "limit", limit);
    chat_jw_kbool(jw, "has_more", (uint64_t)offset + (uint64_t)limit < tree.npath);
    chat_jw_key(jw, "messages");
    chat_jw_arr_begin(jw);
    memset(&hc, 0, sizeof(hc));
    hc.jw = jw;
    hc.conv_id = ci.id;
    hc.tree = &tree;
    /* the id an old client knows the session by: the one it asked for,
     * else its title if that can be one, else its conversation id */
    hc.compat_id = !compat_id || *compat_id                           ? compat_id
                   : chat_compat_id_valid(ci.title, strlen(ci.title)) ? ci.title
                                                                      : ci.id;
    n = 0;
    memset(&pf, 0, sizeof(pf));
    pf.tree = &tree;
    pf.path = 1;
    if ((uint64_t)offset < tree.npath) {
        n = read_with_reasons(st, id, conv_id, (uint32_t)offset, (uint32_t)limit, scratch,
                              emit_msg, &hc, &hc, &pf);
    }
    chatbot_tree_free(&tree);
    chat_buf_reset(scratch, 64 * 1024);
    chat_jw_arr_end(jw);
    return n < 0 ? CHAT_ERR_INTERNAL : NULL;
}

/* ---- export --------------------------------------------------------------------- */

typedef struct {
    chat_buf_t *out;
    chat_jw_t *jw;
    int json;
    hist_ctx_t hc; /* for JSON messages, and the reason of a failed answer */
    int off_path;  /* Markdown: writing the versions off the active path */
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

/* The attachments of a message in a Markdown export: each in a fence
 * longer than any run of backticks in it, so nothing in a file can end it. */
static void export_attachments(chat_buf_t *out, const char **text, size_t *len)
{
    chat_attach_t at[CHAT_ATTACH_MAX];
    size_t i, j, n;

    if (chat_attach_decode(*text, *len, at, CHAT_ATTACH_MAX, &n, text, len) != CHAT_OK) {
        return;
    }
    for (i = 0; i < n; i++) {
        size_t run = 0, longest = 0, k;
        for (j = 0; j < at[i].len; j++) {
            run = at[i].content[j] == '`' ? run + 1 : 0;
            longest = run > longest ? run : longest;
        }
        chat_buf_printf(out, "**Attachment: %.*s** (%zu bytes)\n\n", (int)at[i].name_len,
                        at[i].name, at[i].len);
        for (k = 0; k < (longest < 3 ? 3 : longest + 1); k++) {
            chat_buf_append(out, "`", 1);
        }
        chat_buf_puts(out, "\n");
        chat_buf_append(out, at[i].content, at[i].len);
        chat_buf_puts(out, at[i].len && at[i].content[at[i].len - 1] == '\n' ? "" : "\n");
        for (k = 0; k < (longest < 3 ? 3 : longest + 1); k++) {
            chat_buf_append(out, "`", 1);
        }
        chat_buf_puts(out, "\n\n");
    }
}

static void export_msg(void *baton, const chat_msg_info_t *m, const char *text,
                       size_t len)
{
    exp_ctx_t *ec = baton;
    uint32_t nver = 1, pos = 0;

    if (ec->json) {
        emit_msg(&ec->hc, m, text, len);
        return;
    }
    if (ec->hc.tree && m->index < ec->hc.tree->n) {
        nver = chat_ver_siblings(ec->hc.tree->parent, ec->hc.tree->n, m->index, NULL, 0,
                                 &pos);
    }
    if (ec->off_path) {
        /* the versions not shown: each under a heading naming its place */
        chat_buf_printf(ec->out, "#### Message %u, version %u of %u", m->index, pos + 1,
                        nver);
        if (m->parent != CHAT_MSG_NO_PARENT) {
            chat_buf_printf(ec->out, " (after message %u)", m->parent);
        }
        chat_buf_puts(ec->out, "\n\n");
    }
    if (m->flags & CHAT_MSG_ERROR) {
        size_t k = chatbot_error_code_len(text, len);
        if (k > 0) {
            chat_buf_printf(ec->out, "> **%s (%.*s):** ",
                            (m->flags & CHAT_MSG_REFUSED) ? "Refused" : "Error", (int)k,
                            text);
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
    chat_buf_printf(ec->out, "%s %s%s", ec->off_path ? "#####" : "###",
                    m->role == CHAT_ROLE_USER        ? "You"
                    : m->role == CHAT_ROLE_ASSISTANT ? "Assistant"
                                                     : chat_role_name(m->role),
                    ec->hc.err_code                     ? " (failed)"
                    : (m->flags & CHAT_MSG_INTERRUPTED) ? " (interrupted)"
                                                        : "");
    if (nver > 1 && !ec->off_path) {
        chat_buf_printf(ec->out, " (version %u of %u)", pos + 1, nver);
    }
    chat_buf_puts(ec->out, "\n\n");
    if (m->flags & CHAT_MSG_ATTACH) {
        export_attachments(ec->out, &text, &len);
    }
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
    chatbot_tree_t tree;
    path_filter_t pf;
    chat_buf_t scratch;
    chat_jw_t jw;
    exp_ctx_t ec;
    chatbot_limits_t lim;
    chatbot_settings_t set;
    char date[APR_CTIME_LEN];
    char name[101]; /* the file's name from the title, as the page makes it */
    size_t k, nl = 0;
    int n;

    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    if (chat_store_conv_get(st, &id->owner, conv_id, &ci) != CHAT_OK) {
        return CHAT_ERR_NOT_FOUND;
    }
    /* the chat's own settings, as its next turn uses them */
    chatbot_limits_get(r, &lim);
    chatbot_settings_load(r->pool, &lim, &id->owner, conv_id, &set);
    chat_buf_init(&scratch);
    if (chatbot_tree_load(st, &id->owner, conv_id, &scratch, &tree) != CHAT_OK) {
        chat_buf_free(&scratch);
        return CHAT_ERR_NOT_FOUND;
    }
    ec.out = out;
    ec.json = json;
    ec.jw = &jw;
    ec.off_path = 0;
    memset(&ec.hc, 0, sizeof(ec.hc));
    ec.hc.jw = &jw;
    ec.hc.tree = &tree;
    ec.hc.whole_tree = 1;
    memset(&pf, 0, sizeof(pf));
    pf.tree = &tree;
    apr_ctime(date, (apr_time_t)ci.created_ms * 1000);
    if (json) {
        chat_jw_init(&jw, out);
        chat_jw_obj_begin(&jw);
        chat_jw_kstr(&jw, "conversation_id", ci.id);
        chat_jw_kstr(&jw, "bot_id", ci.bot);
        chat_jw_kstr(&jw, "title", ci.title);
        chat_jw_kint(&jw, "created_ms", (int64_t)ci.created_ms);
        chat_jw_kint(&jw, "updated_ms", (int64_t)ci.updated_ms);
        /* null: the bot's own */
        chat_jw_key(&jw, "settings");
        chat_jw_obj_begin(&jw);
        chat_jw_kstr(&jw, "model", set.model);
        chat_jw_key(&jw, "temperature");
        if (set.has_temperature) {
            chat_jw_double(&jw, set.temperature);
        }
        else {
            chat_jw_null(&jw);
        }
        chat_jw_key(&jw, "system");
        if (set.system) {
            chat_jw_strn(&jw, set.system, set.system_len);
        }
        else {
            chat_jw_null(&jw);
        }
        chat_jw_obj_end(&jw);
        chat_jw_key(&jw, "messages");
        chat_jw_arr_begin(&jw);
    }
    else {
        chat_one_line(ci.title); /* titles stored before they were kept to one line */
        chat_buf_printf(out, "# %s\n\n*Bot:* %s  \n*Started:* %s  \n",
                        ci.title[0] ? ci.title : "Conversation", ci.bot, date);
        if (set.model || set.has_temperature || set.system) {
            /* one line: the system prompt itself is in the JSON export */
            chat_buf_printf(out, "*Settings:* model %s, temperature ",
                            set.model ? set.model : "(the bot's)");
            if (set.has_temperature) {
                chat_buf_printf(out, "%g", set.temperature);
            }
            else {
                chat_buf_printf(out, "(the bot's)");
            }
            if (set.system) {
                chat_buf_printf(out, ", own system prompt (%lu bytes)  \n",
                                (unsigned long)set.system_len);
            }
            else {
                chat_buf_printf(out, ", the bot's system prompt  \n");
            }
        }
        chat_buf_printf(out, "*Messages:* %u\n\n", tree.npath);
    }
    /* JSON: every message, each with its parent and whether it is on the
     * active path (the whole tree). Markdown: the active path, then the
     * other versions. */
    pf.path = json ? 0 : 1;
    n = read_with_reasons(st, id, conv_id, 0, 0, &scratch, export_msg, &ec, &ec.hc, &pf);
    if (!json && n >= 0 && tree.n > tree.npath) {
        chat_buf_printf(out, "---\n\n## Other versions (%u messages)\n\n",
                        tree.n - tree.npath);
        ec.off_path = 1;
        pf.path = 2;
        n = read_with_reasons(st, id, conv_id, 0, 0, &scratch, export_msg, &ec, &ec.hc,
                              &pf);
    }
    chatbot_tree_free(&tree);
    chat_buf_free(&scratch);
    if (json) {
        chat_jw_arr_end(&jw);
        chat_jw_obj_end(&jw);
    }
    /* named after the title as the page names it: characters a file name
     * or the quoted header cannot hold (\ / : * ? " < > | and controls)
     * become spaces, runs of white space one space, no leading dots, at
     * most 100 bytes (whole UTF-8 characters); else chat-<bot>-<id8> */
    for (k = 0; ci.title[k] && nl < sizeof(name) - 1; k++) {
        unsigned char c = (unsigned char)ci.title[k];
        if (c < 0x20 || c == 0x7f || strchr("\\/:*?\"<>|", c)) {
            c = ' ';
        }
        if ((c == ' ' && (nl == 0 || name[nl - 1] == ' ')) || (c == '.' && nl == 0)) {
            continue;
        }
        name[nl++] = (char)c;
    }
    if (((unsigned char)ci.title[k] & 0xC0) == 0x80) {
        /* cut inside a character: drop all of it */
        while (nl > 0 && ((unsigned char)name[nl - 1] & 0xC0) == 0x80) {
            nl--;
        }
        if (nl > 0) {
            nl--;
        }
    }
    while (nl > 0 && name[nl - 1] == ' ') {
        nl--;
    }
    name[nl] = '\0';
    *filename = nl ? apr_psprintf(r->pool, "%s.%s", name, json ? "json" : "md")
                   : apr_psprintf(r->pool, "chat-%s-%.8s.%s", ci.bot, ci.id + 16,
                                  json ? "json" : "md");
    return n < 0 ? CHAT_ERR_INTERNAL : NULL;
}
