/* chat_store_api.c - the store's public functions (chat/store.h), which
 * dispatch to the provider of the handle, and the shared-memory provider's
 * table.
 *
 * This is the seam a second provider plugs into, as mod_socache's providers
 * do (ap_socache_provider_t): a provider fills a chat_store_provider_t and
 * makes handles that begin with a chat_store_head_t. The shared-memory
 * provider ("shm") is implemented by chat_store*.c and chat_metrics.c.
 * The backends' and metrics' functions are in chat_store_api_backend.c.
 */
#include "chat/markdown.h"
#include "chat_store_int.h"

static void shm_set_policy(chat_store_t *st, const chat_store_policy_t *p)
{
    st->policy = *p;
    if (st->policy.anon_share_pct == 0 || st->policy.anon_share_pct > 100) {
        st->policy.anon_share_pct = 100;
    }
}

#define cs_shm_set_policy shm_set_policy

const chat_store_provider_t cs_shm_provider = {
    .name = "shm",
    .detach = cs_shm_detach,
    .set_policy = cs_shm_set_policy,
    .proc_attach = cs_shm_proc_attach,
    .proc_detach = cs_shm_proc_detach,
    .maintain = cs_shm_maintain,
    .conv_create = cs_shm_conv_create,
    .create_retry_ms = cs_shm_create_retry_ms,
    .conv_get = cs_shm_conv_get,
    .conv_list = cs_shm_conv_list,
    .conv_latest = cs_shm_conv_latest,
    .conv_rename = cs_shm_conv_rename,
    .conv_flags = cs_shm_conv_flags,
    .conv_delete = cs_shm_conv_delete,
    .gen_begin = cs_shm_gen_begin,
    .gen_state = cs_shm_gen_state,
    .gen_end = cs_shm_gen_end,
    .gen_request_stop = cs_shm_gen_request_stop,
    .gen_stop_requested = cs_shm_gen_stop_requested,
    .conv_seq = cs_shm_conv_seq,
    .msg_append = cs_shm_msg_append,
    .msg_extend = cs_shm_msg_extend,
    .msg_flags = cs_shm_msg_flags,
    .msg_truncate = cs_shm_msg_truncate,
    .msg_read = cs_shm_msg_read,
    .msg_tail = cs_shm_msg_tail,
    .msg_branch = cs_shm_msg_branch,
    .msg_select = cs_shm_msg_select,
    .msg_get = cs_shm_msg_get,
    .rate_take = cs_shm_rate_take,
    .user_bump = cs_shm_user_bump,
    .user_seq = cs_shm_user_seq,
    .events = cs_shm_events,
    .backend_register = cs_shm_backend_register,
    .backend_acquire = cs_shm_backend_acquire,
    .backend_cancel = cs_shm_backend_cancel,
    .backend_release = cs_shm_backend_release,
    .backend_beat = cs_shm_backend_beat,
    .breaker_allow = cs_shm_breaker_allow,
    .breaker_result = cs_shm_breaker_result,
    .backend_health = cs_shm_backend_health,
    .backend_get = cs_shm_backend_get,
    .backend_count = cs_shm_backend_count,
    .series = cs_shm_series,
    .metrics_add = cs_shm_metrics_add,
    .metrics_observe = cs_shm_metrics_observe,
    .metrics_gauge_add = cs_shm_metrics_gauge_add,
    .metrics_error = cs_shm_metrics_error,
    .metrics_snapshot = cs_shm_metrics_snapshot,
    .metrics_series_count = cs_shm_metrics_series_count,
    .metrics_series_get = cs_shm_metrics_series_get,
    .conv_find_or_create = cs_shm_conv_find_or_create,
    .conv_meta_get = cs_shm_conv_meta_get,
    .conv_meta_set = cs_shm_conv_meta_set,
};

const char *chat_store_provider_name(chat_store_t *st)
{
    return st ? ((chat_store_head_t *)st)->provider->name : "";
}

void chat_store_detach(chat_store_t *st)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->detach(st);
}

void chat_store_set_policy(chat_store_t *st, const chat_store_policy_t *p)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->set_policy(st, p);
}

chat_status_t chat_store_proc_attach(chat_store_t *st, int pid, uint64_t now_ms)
{
    if (!st) {
        return CHAT_EINVAL;
    }
    return ((chat_store_head_t *)st)->provider->proc_attach(st, pid, now_ms);
}

void chat_store_proc_detach(chat_store_t *st)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->proc_detach(st);
}

int chat_store_maintain(chat_store_t *st, uint64_t now_ms)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->maintain(st, now_ms);
}

/* A title as every store keeps it, whichever the provider: at most
 * CHAT_TITLE_MAX bytes (a UTF-8 character is not cut) of one line of text
 * (chat_one_line), so that a title looked for (find_or_create) is the
 * title stored. NULL stays NULL. */
static const char *title_of(const char *title, char *buf)
{
    if (!title) {
        return NULL;
    }
    cs_copy_trunc(buf, CHAT_TITLE_MAX + 1, CHAT_TITLE_MAX, title);
    chat_one_line(buf);
    return buf;
}

chat_status_t chat_store_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title, uint64_t tag,
                                     uint64_t now_ms, chat_conv_info_t *out)
{
    char tb[CHAT_TITLE_MAX + 1];

    if (!st) {
        return CHAT_EINVAL;
    }
    return ((chat_store_head_t *)st)
        ->provider->conv_create(st, owner, bot, title_of(title, tb), tag, now_ms, out);
}

/* for a provider without conv_find_or_create: the same choice over its list */
typedef struct {
    const char *title;
    int rank; /* of best: 0 running .. 3 stopped and archived; 4 none */
    chat_conv_info_t *best;
} titled_t;

static void titled_cb(void *baton, const chat_conv_info_t *c)
{
    titled_t *t = baton;
    int rank = ((c->flags & CHAT_CONV_ARCHIVED) ? 2 : 0) +
               ((c->flags & CHAT_CONV_STOPPED) ? 1 : 0);

    if (rank < t->rank && !strcmp(c->title, t->title)) {
        t->rank = rank;
        *t->best = *c;
    }
}

chat_status_t chat_store_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                             const char *bot, const char *title,
                                             uint32_t flags, uint64_t tag,
                                             uint64_t now_ms, chat_conv_info_t *out,
                                             int *created)
{
    const chat_store_provider_t *pv;
    chat_conv_info_t ci;
    titled_t t;
    chat_status_t rc;
    char tb[CHAT_TITLE_MAX + 1];

    if (created) {
        *created = 0;
    }
    if (!st || !title) {
        return CHAT_EINVAL;
    }
    title = title_of(title, tb);
    pv = ((chat_store_head_t *)st)->provider;
    if (pv->conv_find_or_create) {
        return pv->conv_find_or_create(st, owner, bot, title, flags, tag, now_ms, out,
                                       created);
    }
    t.title = title;
    t.rank = 4;
    t.best = out ? out : &ci;
    pv->conv_list(st, owner, NULL, -1, titled_cb, &t);
    if (t.rank < 4) {
        return CHAT_OK;
    }
    rc = pv->conv_create(st, owner, bot, title, tag, now_ms, t.best);
    if (rc == CHAT_OK && flags) {
        rc = pv->conv_flags(st, owner, t.best->id, flags, 0, now_ms);
        if (rc == CHAT_OK) {
            t.best->flags |= flags;
        }
    }
    if (rc == CHAT_OK && created) {
        *created = 1;
    }
    return rc;
}

int64_t chat_store_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                                   uint64_t now_ms)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->create_retry_ms(st, owner, now_ms);
}

chat_status_t chat_store_conv_get(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, chat_conv_info_t *out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->conv_get(st, owner, id, out);
}

int chat_store_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                         int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                         void *baton)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)
        ->provider->conv_list(st, owner, bot, archived, cb, baton);
}

chat_status_t chat_store_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, chat_conv_info_t *out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->conv_latest(st, owner, bot, out);
}

chat_status_t chat_store_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, const char *title, uint64_t now_ms)
{
    char tb[CHAT_TITLE_MAX + 1];

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->conv_rename(st, owner, id, title_of(title, tb), now_ms);
}

chat_status_t chat_store_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t set, uint32_t clear,
                                    uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->conv_flags(st, owner, id, set, clear, now_ms);
}

chat_status_t chat_store_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->conv_delete(st, owner, id);
}

chat_status_t chat_store_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                       const char *id, chat_buf_t *out)
{
    const chat_store_provider_t *p;

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    p = ((chat_store_head_t *)st)->provider;
    return p->conv_meta_get ? p->conv_meta_get(st, owner, id, out) : CHAT_EINTERNAL;
}

chat_status_t chat_store_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                       const char *id, const char *data, size_t len,
                                       uint64_t now_ms)
{
    const chat_store_provider_t *p;

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    if (len > CHAT_CONV_META_MAX || (!data && len)) {
        return len > CHAT_CONV_META_MAX ? CHAT_ETOOBIG : CHAT_EINVAL;
    }
    p = ((chat_store_head_t *)st)->provider;
    return p->conv_meta_set ? p->conv_meta_set(st, owner, id, data, len, now_ms)
                            : CHAT_EINTERNAL;
}

chat_status_t chat_store_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint64_t token, uint32_t state,
                                   uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->gen_begin(st, owner, id, token, state, now_ms);
}

chat_status_t chat_store_gen_state(chat_store_t *st, const char *id, uint64_t token,
                                   uint32_t state, int32_t queue_position)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->gen_state(st, id, token, state, queue_position);
}

chat_status_t chat_store_gen_end(chat_store_t *st, const char *id, uint64_t token,
                                 uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->gen_end(st, id, token, now_ms);
}

chat_status_t chat_store_turn_start_acquire(chat_store_t *st, const chat_owner_t *owner,
                                            const char *id, uint64_t token,
                                            uint32_t state, const char *text, size_t len,
                                            uint32_t flags, uint64_t now_ms,
                                            uint32_t *index_out, chat_turn_acquire_t *acq)
{
    const chat_store_provider_t *pv;

    if (acq) {
        acq->tried = 0;
        acq->rc = CHAT_EINTERNAL;
        acq->position = 0;
        acq->generating = 0;
    }
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (acq && pv->turn_start_acquire) {
        return pv->turn_start_acquire(st, owner, id, token, state, text, len, flags,
                                      now_ms, index_out, acq);
    }
    return chat_store_turn_start(st, owner, id, token, state, text, len, flags, now_ms,
                                 index_out);
}

chat_status_t chat_store_turn_start_bot(chat_store_t *st, const chat_owner_t *owner,
                                        const char *id, const char *bot, uint64_t token,
                                        uint32_t state, const char *text, size_t len,
                                        uint32_t flags, uint64_t now_ms,
                                        uint32_t *index_out, chat_turn_acquire_t *acq)
{
    const chat_store_provider_t *pv;
    chat_conv_info_t ci;
    chat_status_t rc;

    if (acq) {
        acq->tried = 0;
        acq->rc = CHAT_EINTERNAL;
        acq->position = 0;
        acq->generating = 0;
    }
    if (!st || !bot) {
        return CHAT_EINVAL;
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (pv->turn_start_bot) {
        return pv->turn_start_bot(st, owner, id, bot, token, state, text, len, flags,
                                  now_ms, index_out, acq);
    }
    /* the look-up the caller skipped, then the start: what it would have
     * done itself (a cheap read on shm) */
    rc = chat_store_conv_get(st, owner, id, &ci);
    if (rc != CHAT_OK) {
        return rc;
    }
    if (strcmp(ci.bot, bot)) {
        return CHAT_ESTALE;
    }
    return chat_store_turn_start_acquire(st, owner, id, token, state, text, len, flags,
                                         now_ms, index_out, acq);
}

chat_status_t chat_store_turn_start(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint64_t token, uint32_t state,
                                    const char *text, size_t len, uint32_t flags,
                                    uint64_t now_ms, uint32_t *index_out)
{
    const chat_store_provider_t *pv;
    chat_status_t rc;

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (pv->turn_start) {
        return pv->turn_start(st, owner, id, token, state, text, len, flags, now_ms,
                              index_out);
    }
    rc = pv->gen_begin(st, owner, id, token, state, now_ms);
    if (rc != CHAT_OK || !text) {
        if (rc == CHAT_OK) {
            pv->user_bump(st, owner);
        }
        return rc;
    }
    rc = pv->msg_append(st, owner, id, CHAT_ROLE_USER, flags, text, len, now_ms,
                        index_out);
    if (rc != CHAT_OK) {
        pv->gen_end(st, id, token, now_ms);
        return rc;
    }
    pv->conv_flags(st, owner, id, 0, CHAT_CONV_STOPPED, now_ms);
    pv->user_bump(st, owner);
    return CHAT_OK;
}

chat_status_t chat_store_turn_finish(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, uint64_t token, uint32_t answer_set,
                                     const char *err, size_t err_len, uint64_t now_ms)
{
    const chat_store_provider_t *pv;
    chat_status_t rc;

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (pv->turn_finish) {
        return pv->turn_finish(st, owner, id, token, answer_set, err, err_len, now_ms);
    }
    if (answer_set) {
        pv->msg_flags(st, owner, id, answer_set, CHAT_MSG_STREAMING, now_ms);
    }
    if (err) {
        pv->msg_append(st, owner, id, CHAT_ROLE_ASSISTANT, CHAT_MSG_ERROR, err, err_len,
                       now_ms, NULL);
    }
    rc = pv->gen_end(st, id, token, now_ms);
    pv->user_bump(st, owner);
    return rc;
}

chat_status_t chat_store_turn_finish_text(chat_store_t *st, const chat_owner_t *owner,
                                          const char *id, uint64_t token,
                                          chat_turn_text_t *ans, uint32_t answer_set,
                                          const char *err, size_t err_len,
                                          uint64_t now_ms)
{
    const chat_store_provider_t *pv;

    if (!ans || !ans->len) {
        if (ans) {
            ans->rc = CHAT_OK;
        }
        return chat_store_turn_finish(st, owner, id, token, answer_set, err, err_len,
                                      now_ms);
    }
    ans->rc = CHAT_ENOTFOUND;
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    if (!ans->text) {
        return ans->rc = CHAT_EINVAL;
    }
    pv = ((chat_store_head_t *)st)->provider;
    if (pv->turn_finish_text) {
        return pv->turn_finish_text(st, owner, id, token, ans, answer_set, err, err_len,
                                    now_ms);
    }
    ans->rc = ans->extend
                  ? pv->msg_extend(st, owner, id, ans->text, ans->len, now_ms)
                  : pv->msg_append(st, owner, id, CHAT_ROLE_ASSISTANT, CHAT_MSG_STREAMING,
                                   ans->text, ans->len, now_ms, &ans->index);
    if (ans->rc != CHAT_OK && ans->rc != CHAT_EUNAVAIL) {
        return ans->rc;
    }
    return chat_store_turn_finish(st, owner, id, token, answer_set, err, err_len, now_ms);
}

chat_status_t chat_store_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                          const char *id)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->gen_request_stop(st, owner, id);
}

int chat_store_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token)
{
    if (!st) {
        return 1;
    }
    return ((chat_store_head_t *)st)->provider->gen_stop_requested(st, id, token);
}

uint64_t chat_store_conv_seq(chat_store_t *st, const char *id)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->conv_seq(st, id);
}

chat_status_t chat_store_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, chat_role_t role, uint32_t flags,
                                    const char *text, size_t len, uint64_t now_ms,
                                    uint32_t *index_out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_append(st, owner, id, role, flags, text, len, now_ms, index_out);
}

chat_status_t chat_store_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, const char *text, size_t len,
                                    uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_extend(st, owner, id, text, len, now_ms);
}

chat_status_t chat_store_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint32_t set, uint32_t clear,
                                   uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_flags(st, owner, id, set, clear, now_ms);
}

chat_status_t chat_store_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, uint32_t keep, uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->msg_truncate(st, owner, id, keep, now_ms);
}

int chat_store_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                        void *baton)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_read(st, owner, id, start, count, text, cb, baton);
}

int chat_store_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                        chat_msg_cb *cb, void *baton)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_tail(st, owner, id, max_msgs, max_bytes, text, cb, baton);
}

int chat_store_msg_tail_meta(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                             chat_msg_cb *cb, void *baton, chat_buf_t *meta)
{
    const chat_store_provider_t *p;

    if (!st) {
        return CHAT_ENOTFOUND;
    }
    p = ((chat_store_head_t *)st)->provider;
    if (p->msg_tail_meta) {
        return p->msg_tail_meta(st, owner, id, max_msgs, max_bytes, text, cb, baton,
                                meta);
    }
    if (meta) {
        size_t had = meta->len;
        if (chat_store_conv_meta_get(st, owner, id, meta) != CHAT_OK) {
            meta->len = had; /* as if none were set */
            if (meta->data) {
                meta->data[had] = '\0';
            }
        }
    }
    return p->msg_tail(st, owner, id, max_msgs, max_bytes, text, cb, baton);
}

chat_status_t chat_store_msg_branch(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t parent, chat_role_t role,
                                    uint32_t flags, const char *text, size_t len,
                                    uint64_t now_ms, uint32_t *index_out)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_branch(st, owner, id, parent, role, flags, text, len, now_ms,
                               index_out);
}

chat_status_t chat_store_msg_select(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t index, uint64_t now_ms)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)->provider->msg_select(st, owner, id, index, now_ms);
}

chat_status_t chat_store_msg_get(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, uint32_t index, size_t offset,
                                 chat_buf_t *text, chat_msg_info_t *info)
{
    if (!st) {
        return CHAT_ENOTFOUND;
    }
    return ((chat_store_head_t *)st)
        ->provider->msg_get(st, owner, id, index, offset, text, info);
}

chat_status_t chat_store_rate_take(chat_store_t *st, const chat_owner_t *owner,
                                   const chat_rate_t *rate, uint64_t now_ms,
                                   int64_t *retry_after_ms)
{
    if (!st) {
        return CHAT_OK;
    }
    return ((chat_store_head_t *)st)
        ->provider->rate_take(st, owner, rate, now_ms, retry_after_ms);
}

chat_status_t chat_store_rate_take2(chat_store_t *st, const chat_owner_t *owner,
                                    const chat_rate_t *rate, const chat_owner_t *owner2,
                                    const chat_rate_t *rate2, uint64_t now_ms,
                                    int64_t *retry_after_ms)
{
    const chat_store_provider_t *p;
    chat_status_t rc;

    if (!st) {
        return CHAT_OK;
    }
    p = ((chat_store_head_t *)st)->provider;
    if (p->rate_take2) {
        return p->rate_take2(st, owner, rate, owner2, rate2, now_ms, retry_after_ms);
    }
    rc = p->rate_take(st, owner, rate, now_ms, retry_after_ms);
    if (rc == CHAT_OK) {
        rc = p->rate_take(st, owner2, rate2, now_ms, retry_after_ms);
    }
    return rc;
}

void chat_store_user_bump(chat_store_t *st, const chat_owner_t *owner)
{
    if (!st) {
        return;
    }
    ((chat_store_head_t *)st)->provider->user_bump(st, owner);
}

uint64_t chat_store_user_seq(chat_store_t *st, const chat_owner_t *owner)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->user_seq(st, owner);
}

void chat_store_watch(chat_store_t *st, const chat_owner_t *owner, const char *id, int on)
{
    const chat_store_provider_t *p;

    if (!st || (!owner && !id)) {
        return;
    }
    p = ((chat_store_head_t *)st)->provider;
    if (p->watch) {
        p->watch(st, owner, id, on);
    }
}

uint64_t chat_store_events(chat_store_t *st)
{
    if (!st) {
        return 0;
    }
    return ((chat_store_head_t *)st)->provider->events(st);
}
