/* mod_chatbot_search.c - search across one's own conversations (issue 19
 * part 4): titles and message text, for GET /api/search and the WebSocket
 * op "search" (docs/api.md, docs/protocol.md).
 *
 * Only the caller's conversations are listed (chat_store_conv_list by
 * owner) and read (chat_store_msg_read checks the owner again), so another
 * user's text can never be reached. Only what a conversation shows is
 * found: the messages of its active path (the versions tree,
 * chatbot_tree_load_n; other versions are left out), reported with their
 * position on it; a message's text and its attachments' contents, never
 * the attachment envelopes (chat_search_message). Every request is
 * bounded: the query (CHAT_SEARCH_QUERY_MAX bytes), the hits (limit,
 * CHAT_SEARCH_PER_CONV per conversation), the text read
 * (CHAT_SEARCH_SCAN_MAX bytes, judged from each conversation's size before
 * it is read) and the time (SEARCH_TIME): a search that stops early says
 * so ("truncated": true).
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"
#include "apr_time.h"

#include "mod_chatbot.h"
#include "chat/search.h"
#include "chat/utf8.h"

#define SEARCH_TIME apr_time_from_msec(1500)

typedef struct {
    apr_array_header_t *list; /* chat_conv_info_t */
} conv_list_t;

typedef struct {
    apr_pool_t *p;
    const char *q;
    size_t qlen;
    const chat_conv_info_t *ci;
    apr_array_header_t *hits;  /* hit_t */
    apr_array_header_t *cands; /* hit_t: the current conversation's matches */
    int linear;                /* its messages form one path, oldest first */
    int conv_hits;             /* hits from the current conversation */
    int limit;
} search_ctx_t;

typedef struct {
    const chat_conv_info_t *ci;
    int index;    /* -1: the title; else the stored index */
    int position; /* on the active path */
    chat_role_t role;
    uint64_t ts_ms;
    const char *attachment; /* the attachment the match is in, or NULL */
    const char *snippet;
    size_t snippet_len;
    size_t match_off, match_len; /* bytes, within the snippet */
} hit_t;

static void collect(void *baton, const chat_conv_info_t *c)
{
    conv_list_t *cl = baton;
    *(chat_conv_info_t *)apr_array_push(cl->list) = *c;
}

/* UTF-16 code units of valid UTF-8 p[0..n): the unit JavaScript strings
 * (and JSON's \u escapes) count in, so the page can slice the snippet. */
static size_t utf16_units(const char *p, size_t n)
{
    size_t i, u = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c & 0xC0) != 0x80) {
            u += c >= 0xF0 ? 2 : 1;
        }
    }
    return u;
}

/* A hit (to, with the snippet of text around pos) of message index, or
 * of the title (index -1). */
static hit_t *push_hit(search_ctx_t *sc, apr_array_header_t *to, int index,
                       chat_role_t role, uint64_t ts, const char *text, size_t len,
                       size_t pos)
{
    hit_t *h = apr_array_push(to);
    size_t s, e;

    memset(h, 0, sizeof(*h));
    chat_search_snippet(text, len, pos, sc->qlen, CHAT_SEARCH_SNIPPET, &s, &e);
    h->ci = sc->ci;
    h->index = index;
    h->position = index;
    h->role = role;
    h->ts_ms = ts;
    h->snippet = apr_pstrmemdup(sc->p, text + s, e - s);
    h->snippet_len = e - s;
    h->match_off = pos - s;
    h->match_len = sc->qlen;
    return h;
}

static int full(const search_ctx_t *sc)
{
    return sc->hits->nelts >= sc->limit || sc->conv_hits >= CHAT_SEARCH_PER_CONV;
}

/* Runs under the store's lock: no store calls, no allocation beyond the
 * snippet. One candidate per message (its first match); which of them are
 * on the active path is known once the whole conversation was read. */
static void search_msg(void *baton, const chat_msg_info_t *m, const char *text,
                       size_t len)
{
    search_ctx_t *sc = baton;
    chat_search_hit_t sh;
    uint32_t prev = m->index ? m->index - 1 : CHAT_MSG_NO_PARENT;
    hit_t *h;

    if (m->index >= sc->ci->nmsgs) {
        return; /* added after the list was taken: not part of this search */
    }
    if ((m->flags & CHAT_MSG_ALT) || m->parent != prev) {
        sc->linear = 0;
    }
    if (!chat_search_message(text, len, (m->flags & CHAT_MSG_ATTACH) != 0, sc->q,
                             sc->qlen, &sh)) {
        return;
    }
    h = push_hit(sc, sc->cands, (int)m->index, m->role, m->ts_ms, sh.seg, sh.seg_len,
                 sh.pos);
    if (sh.name) {
        h->attachment = apr_pstrmemdup(sc->p, sh.name, sh.name_len);
    }
}

/* Moves the current conversation's candidates on its active path to the
 * hits (with their positions), as long as there is room. A conversation
 * with versions is read once more, for its tree; without (linear), the
 * stored index is the position. */
static void keep_active(search_ctx_t *sc, chat_store_t *st, const chat_owner_t *owner,
                        chat_buf_t *scratch)
{
    chatbot_tree_t t;
    int i, have_tree = 0;

    if (sc->cands->nelts == 0) {
        return;
    }
    if (!sc->linear) {
        if (chatbot_tree_load_n(st, owner, sc->ci->id, sc->ci->nmsgs, scratch, &t) !=
            CHAT_OK) {
            return; /* gone meanwhile */
        }
        have_tree = 1;
    }
    for (i = 0; i < sc->cands->nelts && !full(sc); i++) {
        hit_t *h = &APR_ARRAY_IDX(sc->cands, i, hit_t);
        if (have_tree) {
            if ((uint32_t)h->index >= t.n || t.pos_of[h->index] == CHAT_MSG_NO_PARENT) {
                continue; /* another version, not shown */
            }
            h->position = (int)t.pos_of[h->index];
        }
        *(hit_t *)apr_array_push(sc->hits) = *h;
        sc->conv_hits++;
    }
    if (have_tree) {
        chatbot_tree_free(&t);
    }
}

const char *chatbot_view_search(chat_jw_t *jw, request_rec *r, const chatbot_ident_t *id,
                                const char *query, const char *bot, apr_int64_t limit,
                                chat_buf_t *scratch, const char **emsg)
{
    chat_store_t *st = chatbot_store();
    apr_pool_t *tmp;
    conv_list_t cl;
    search_ctx_t sc;
    apr_time_t start = apr_time_now();
    uint64_t scanned = 0;
    int i, searched = 0, truncated = 0;
    const char *q = query;
    size_t qlen;

    *emsg = NULL;
    if (!q) {
        *emsg = "a query \"q\" is required";
        return CHAT_ERR_BAD_REQUEST;
    }
    qlen = chat_search_trim(&q, strlen(q));
    if (qlen == 0) {
        *emsg = "the search query is empty";
        return CHAT_ERR_BAD_REQUEST;
    }
    if (qlen > CHAT_SEARCH_QUERY_MAX) {
        *emsg = "the search query is longer than 256 bytes";
        return CHAT_ERR_BAD_REQUEST;
    }
    if (!chat_utf8_valid((const uint8_t *)q, qlen) || memchr(q, 0, qlen)) {
        *emsg = "the search query is not valid UTF-8 text";
        return CHAT_ERR_BAD_REQUEST;
    }
    if (limit <= 0) {
        limit = CHAT_SEARCH_LIMIT_DEFAULT;
    }
    if (limit > CHAT_SEARCH_LIMIT_MAX) {
        *emsg = "limit must be between 1 and 100";
        return CHAT_ERR_BAD_REQUEST;
    }
    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    /* a WebSocket may search many times: nothing may stay in r->pool */
    if (apr_pool_create(&tmp, r->pool) != APR_SUCCESS) {
        return CHAT_ERR_INTERNAL;
    }
    cl.list = apr_array_make(tmp, 16, sizeof(chat_conv_info_t));
    chat_store_conv_list(st, &id->owner, bot, -1, collect, &cl);

    memset(&sc, 0, sizeof(sc));
    sc.p = tmp;
    sc.q = apr_pstrmemdup(tmp, q, qlen);
    sc.qlen = qlen;
    sc.limit = (int)limit;
    sc.hits = apr_array_make(tmp, 16, sizeof(hit_t));
    sc.cands = apr_array_make(tmp, 16, sizeof(hit_t));
    for (i = 0; i < cl.list->nelts && sc.hits->nelts < sc.limit; i++) {
        const chat_conv_info_t *ci = &APR_ARRAY_IDX(cl.list, i, chat_conv_info_t);
        long pos;

        if (scanned + ci->bytes > CHAT_SEARCH_SCAN_MAX ||
            apr_time_now() - start > SEARCH_TIME) {
            truncated = 1;
            break;
        }
        sc.ci = ci;
        sc.conv_hits = 0;
        pos = chat_search_find(ci->title, strlen(ci->title), 0, sc.q, sc.qlen);
        if (pos >= 0) {
            push_hit(&sc, sc.hits, -1, CHAT_ROLE_USER, ci->updated_ms, ci->title,
                     strlen(ci->title), (size_t)pos);
            sc.conv_hits++;
        }
        if (ci->nmsgs > 0 && !full(&sc)) {
            /* a conversation that went away since the list: skipped */
            apr_array_clear(sc.cands);
            sc.linear = 1;
            chat_store_msg_read(st, &id->owner, ci->id, 0, 0, scratch, search_msg, &sc);
            chat_buf_reset(scratch, 64 * 1024);
            keep_active(&sc, st, &id->owner, scratch);
        }
        scanned += ci->bytes;
        searched++;
    }
    if (i < cl.list->nelts && !truncated) {
        truncated = 1; /* the limit of hits was reached first */
    }

    chat_jw_kstrn(jw, "query", sc.q, sc.qlen);
    chat_jw_kint(jw, "limit", limit);
    chat_jw_kint(jw, "searched", searched);
    chat_jw_kint(jw, "conversations", cl.list->nelts);
    chat_jw_kbool(jw, "truncated", truncated);
    chat_jw_key(jw, "results");
    chat_jw_arr_begin(jw);
    for (i = 0; i < sc.hits->nelts; i++) {
        const hit_t *h = &APR_ARRAY_IDX(sc.hits, i, hit_t);
        chat_jw_obj_begin(jw);
        chat_jw_kstr(jw, "conversation_id", h->ci->id);
        chat_jw_kstr(jw, "bot_id", h->ci->bot);
        chat_jw_kstr(jw, "title", h->ci->title);
        chat_jw_kbool(jw, "archived", (h->ci->flags & CHAT_CONV_ARCHIVED) != 0);
        chat_jw_kint(jw, "updated_ms", (int64_t)h->ci->updated_ms);
        chat_jw_kstr(jw, "field", h->index < 0 ? "title" : "message");
        if (h->index < 0) {
            chat_jw_kstr(jw, "index", NULL);
            chat_jw_kstr(jw, "position", NULL);
            chat_jw_kstr(jw, "role", NULL);
        }
        else {
            chat_jw_kint(jw, "index", h->index);
            chat_jw_kint(jw, "position", h->position);
            chat_jw_kstr(jw, "role", chat_role_name(h->role));
            chat_jw_kint(jw, "ts_ms", (int64_t)h->ts_ms);
            if (h->attachment) {
                chat_jw_kstr(jw, "attachment", h->attachment);
            }
        }
        chat_jw_kstrn(jw, "snippet", h->snippet, h->snippet_len);
        chat_jw_kint(jw, "match_offset", (int64_t)utf16_units(h->snippet, h->match_off));
        chat_jw_kint(jw, "match_length",
                     (int64_t)utf16_units(h->snippet + h->match_off, h->match_len));
        chat_jw_obj_end(jw);
    }
    chat_jw_arr_end(jw);
    apr_pool_destroy(tmp);
    return NULL;
}
