/* mod_chatbot_versions.c - answer versions and branches as the views and
 * the turns see them: the tree of a conversation's messages read from the
 * store (parents and CHAT_MSG_ALT, chat/versions.h), its active path, and
 * the version members every view writes ("versions", "version",
 * "siblings"). Selecting a version is one store call
 * (chat_store_msg_select); the WebSocket and REST front doors share
 * chatbot_ver_select below.
 */
#include <stdlib.h>
#include <string.h>

#include "mod_chatbot.h"
#include "chat/versions.h"

typedef struct {
    chatbot_tree_t *t;
    uint32_t cap;
} load_ctx_t;

static void load_cb(void *baton, const chat_msg_info_t *info, const char *text,
                    size_t len)
{
    load_ctx_t *lc = baton;

    (void)text;
    (void)len;
    if (info->index >= lc->cap) {
        return; /* added after the count was taken: not part of this view */
    }
    lc->t->parent[info->index] = info->parent;
    lc->t->flags[info->index] = info->flags;
    lc->t->role[info->index] = (uint32_t)info->role;
    if (info->index + 1 > lc->t->n) {
        lc->t->n = info->index + 1;
    }
}

void chatbot_tree_free(chatbot_tree_t *t)
{
    free(t->parent);
    memset(t, 0, sizeof(*t));
}

chat_status_t chatbot_tree_load(chat_store_t *st, const chat_owner_t *owner,
                                const char *conv_id, chat_buf_t *scratch,
                                chatbot_tree_t *t)
{
    chat_conv_info_t ci;

    memset(t, 0, sizeof(*t));
    if (!st || chat_store_conv_get(st, owner, conv_id, &ci) != CHAT_OK) {
        return CHAT_ENOTFOUND;
    }
    return chatbot_tree_load_n(st, owner, conv_id, ci.nmsgs, scratch, t);
}

chat_status_t chatbot_tree_load_n(chat_store_t *st, const chat_owner_t *owner,
                                  const char *conv_id, uint32_t nmsgs,
                                  chat_buf_t *scratch, chatbot_tree_t *t)
{
    load_ctx_t lc;
    uint32_t i, cap;
    int n;

    memset(t, 0, sizeof(*t));
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    cap = nmsgs + 1;
    t->parent = malloc(sizeof(uint32_t) * 5 * (size_t)cap);
    if (!t->parent) {
        return CHAT_ENOMEM;
    }
    t->flags = t->parent + cap;
    t->role = t->flags + cap;
    t->path = t->role + cap;
    t->pos_of = t->path + cap;
    lc.t = t;
    lc.cap = cap;
    n = chat_store_msg_read(st, owner, conv_id, 0, 0, scratch, load_cb, &lc);
    chat_buf_reset(scratch, 64 * 1024);
    if (n < 0) {
        chatbot_tree_free(t);
        return (chat_status_t)n;
    }
    t->npath = chat_ver_path(t->parent, t->flags, t->n, t->path);
    for (i = 0; i < t->n; i++) {
        t->pos_of[i] = CHAT_MSG_NO_PARENT;
    }
    for (i = 0; i < t->npath; i++) {
        t->pos_of[t->path[i]] = i;
    }
    return CHAT_OK;
}

uint32_t chatbot_tree_last_user(const chatbot_tree_t *t)
{
    uint32_t k;

    for (k = t->npath; k-- > 0;) {
        if (t->role[t->path[k]] == CHAT_ROLE_USER) {
            return t->path[k];
        }
    }
    return CHAT_MSG_NO_PARENT;
}

void chatbot_ver_members(chat_jw_t *jw, const chatbot_tree_t *t, uint32_t index, int tree)
{
    uint32_t sib[CHAT_MSG_MAX_VERSIONS], pos = 0, n, k;

    if (!t || index >= t->n) {
        return;
    }
    n = chat_ver_siblings(t->parent, t->n, index, sib, CHAT_MSG_MAX_VERSIONS, &pos);
    chat_jw_kint(jw, "versions", n);
    chat_jw_kint(jw, "version", pos + 1);
    if (n > 1) {
        chat_jw_key(jw, "siblings");
        chat_jw_arr_begin(jw);
        for (k = 0; k < n && k < CHAT_MSG_MAX_VERSIONS; k++) {
            chat_jw_int(jw, sib[k]);
        }
        chat_jw_arr_end(jw);
    }
    if (tree) {
        chat_jw_key(jw, "parent");
        if (t->parent[index] == CHAT_MSG_NO_PARENT || t->parent[index] >= index) {
            chat_jw_null(jw);
        }
        else {
            chat_jw_int(jw, t->parent[index]);
        }
        chat_jw_kbool(jw, "active", t->pos_of[index] != CHAT_MSG_NO_PARENT);
    }
}

const char *chatbot_ver_select(chat_store_t *st, const chatbot_ident_t *id,
                               const char *conv_id, apr_int64_t index, const char **emsg)
{
    chat_status_t rc;

    if (index < 0 || index > UINT32_MAX) {
        *emsg = "index must be the index of a stored message";
        return CHAT_ERR_BAD_REQUEST;
    }
    rc =
        chat_store_msg_select(st, &id->owner, conv_id, (uint32_t)index, chatbot_now_ms());
    switch (rc) {
    case CHAT_OK:
        chat_store_user_bump(st, &id->owner); /* other tabs reload it */
        return NULL;
    case CHAT_EBUSY:
        *emsg = "the conversation is generating an answer; stop it first";
        return CHAT_ERR_BUSY;
    case CHAT_ENOTFOUND:
        *emsg = "no such conversation or message";
        return CHAT_ERR_NOT_FOUND;
    default:
        *emsg = "the version could not be selected";
        return chatbot_store_err(rc);
    }
}

int chatbot_store_has_versions(chat_store_t *st)
{
    /* both providers keep them (shm: chat_store_ver.c; redis: lua_branch) */
    return st != NULL;
}
