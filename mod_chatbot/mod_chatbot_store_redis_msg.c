/* mod_chatbot_store_redis_msg.c - the redis store provider's message
 * operations (chat_store_provider_t msg_*): append, extend, flags,
 * truncate, reads, versions; each one Lua script (lua_append, lua_branch,
 * lua_read, lua_vread... in mod_chatbot_store_redis_lua.c).
 */
#include <stdlib.h>
#include <string.h>

#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"
#include "chat/versions.h"

#define RS(st) ((rs_store_t *)(st))

/* ---- messages ---------------------------------------------------------------- */

/* The arguments lua_append and lua_branch share after their first: owner
 * id role flags now text, the limits, auth (hex: the owner's, kept by the
 * caller for the call). -1 if the owner or id cannot be. */
static int msg_args(chat_store_t *st, rs_args_t *a, char hex[41],
                    const chat_owner_t *owner, const char *id, chat_role_t role,
                    uint32_t flags, const char *text, size_t len, uint64_t now_ms)
{
    if (arg_owner_id(a, hex, owner, id)) {
        return -1;
    }
    arg_u64(a, (unsigned)role);
    arg_u64(a, flags);
    arg_u64(a, now_ms);
    arg_mem(a, text, len);
    arg_limits(st, a, owner);
    return 0;
}

/* More text for the last message: lua_append "e". */
static chat_status_t extend(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            const char *text, size_t len, uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    if (!owner || !valid_id(id)) {
        return CHAT_ENOTFOUND;
    }
    if (len && !text) {
        return CHAT_EINVAL;
    }
    arg_str(&a, "e");
    msg_args(st, &a, hex, owner, id, 0, 0, text, len, now_ms);
    arg_u64(&a, RS(st)->policy.anon_share_pct);
    return rs_index_reply(RS(st), rs_run(st, RS_LUA_APPEND, &a), NULL);
}

/* A new message under parent (-1: the active path's last message, -2:
 * none, else an index): lua_branch. */
static chat_status_t branch(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            long long parent, chat_role_t role, uint32_t flags,
                            const char *text, size_t len, uint64_t now_ms,
                            uint32_t *index_out)
{
    char hex[41];
    rs_args_t a = {0};

    if (!owner || !valid_id(id)) {
        return CHAT_ENOTFOUND;
    }
    if ((len && !text) || (unsigned)role > CHAT_ROLE_TOOL) {
        return CHAT_EINVAL;
    }
    msg_args(st, &a, hex, owner, id, role, flags, text, len, now_ms);
    arg_i64(&a, parent);
    arg_u64(&a, CHAT_MSG_MAX_VERSIONS);
    arg_u64(&a, RS(st)->policy.anon_share_pct);
    return rs_index_reply(RS(st), rs_run(st, RS_LUA_BRANCH, &a), index_out);
}

chat_status_t rs_msg_append(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            chat_role_t role, uint32_t flags, const char *text,
                            size_t len, uint64_t now_ms, uint32_t *index_out)
{
    return branch(st, owner, id, -1, role, flags, text, len, now_ms, index_out);
}

chat_status_t rs_msg_extend(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            const char *text, size_t len, uint64_t now_ms)
{
    return extend(st, owner, id, text, len, now_ms);
}

chat_status_t rs_msg_flags(chat_store_t *st, const chat_owner_t *owner, const char *id,
                           uint32_t set, uint32_t clear, uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_u64(&a, set);
    arg_u64(&a, clear);
    arg_u64(&a, now_ms);
    return rs_done(rs_run(st, RS_LUA_MFLAGS, &a));
}

chat_status_t rs_msg_truncate(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              uint32_t keep, uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_u64(&a, keep);
    arg_u64(&a, now_ms);
    return rs_done(rs_run(st, RS_LUA_TRUNC, &a));
}

/* A read script's reply {0, first, hdr, text, ...} (lua_vread, lua_vtail)
 * for owner, id and the numbers that follow them, or NULL with *rc set
 * (the script's own status if it is not 0). */
static redisReply *read_reply_x(chat_store_t *st, rs_lua_t script,
                                const chat_owner_t *owner, const char *id,
                                const long long *num, int nnum, size_t extra,
                                chat_status_t *rc)
{
    char hex[41];
    rs_args_t a = {0};
    redisReply *r;
    int i;

    if (!owner || !valid_id(id)) {
        *rc = CHAT_ENOTFOUND;
        return NULL;
    }
    owner_hex(owner, hex);
    arg_str(&a, hex);
    arg_str(&a, id);
    for (i = 0; i < nnum; i++) {
        arg_i64(&a, num[i]);
    }
    r = rs_run(st, script, &a);
    *rc = status_of(r);
    if (*rc == CHAT_OK && (r->type != REDIS_REPLY_ARRAY || r->elements < 2 + extra ||
                           (r->elements - 2 - extra) % 2)) {
        *rc = CHAT_EINTERNAL;
    }
    if (*rc != CHAT_OK) {
        if (r) {
            freeReplyObject(r);
        }
        return NULL;
    }
    return r;
}

static redisReply *read_reply(chat_store_t *st, rs_lua_t script,
                              const chat_owner_t *owner, const char *id,
                              const long long *num, int nnum, chat_status_t *rc)
{
    return read_reply_x(st, script, owner, id, num, nnum, 0, rc);
}

/* Messages [start, stop] (LRANGE indexes; start may be negative: from the
 * end). The reply {0, first, hdr, text, ...} or NULL with *rc set. */
static redisReply *read_range(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              long long start, long long stop, chat_status_t *rc)
{
    const long long num[2] = {start, stop};

    return read_reply(st, RS_LUA_VREAD, owner, id, num, 2, rc);
}

/* The decimal fields of a header "role:flags:ts:n[:parent]" (the parent
 * may be negative) into v[0..3] and *parent: how many were read, as
 * sscanf("%u:%u:%llu:%llu:%lld") counts them (a turn reads 20 or more
 * headers; sscanf was 2% of httpd's time per turn). */
static int hdr_fields(const char *s, unsigned long long v[4], long long *parent)
{
    int k;

    for (k = 0; k < 5; k++) {
        unsigned long long x = 0;
        const char *d;
        int neg = k == 4 && *s == '-';

        s += neg;
        for (d = s; *s >= '0' && *s <= '9'; s++) {
            x = x * 10 + (unsigned)(*s - '0');
        }
        if (s == d) {
            return k;
        }
        if (k < 4) {
            v[k] = x;
        }
        else {
            *parent = neg ? -(long long)x : (long long)x;
        }
        if (*s++ != ':') {
            return k + 1;
        }
    }
    return 5;
}

/* Message k of a read_range reply. */
static int msg_of(const redisReply *r, size_t k, chat_msg_info_t *mi)
{
    const redisReply *h = r->element[2 + 2 * k], *t = r->element[3 + 2 * k];
    unsigned long long v[4] = {0, 0, 0, 0};
    long long parent = -2;
    int nf;

    if (h->type != REDIS_REPLY_STRING || (nf = hdr_fields(h->str, v, &parent)) < 4) {
        return -1;
    }
    mi->index = (uint32_t)(rint_(r->element[1]) + (long long)k);
    mi->role = (chat_role_t)(unsigned)v[0];
    mi->flags = (uint32_t)v[1];
    mi->ts_ms = v[2];
    mi->len = t->type == REDIS_REPLY_STRING ? t->len : 0;
    /* the parent's index (lua_vread); without it, the previous message */
    if (nf == 5) {
        mi->parent = parent >= 0 && parent < (long long)mi->index ? (uint32_t)parent
                                                                  : CHAT_MSG_NO_PARENT;
    }
    else {
        mi->parent = mi->index ? mi->index - 1 : CHAT_MSG_NO_PARENT;
    }
    return 0;
}

static int deliver(const redisReply *r, size_t from, size_t to, chat_buf_t *text,
                   chat_msg_cb *cb, void *baton)
{
    size_t k;
    int n = 0;

    for (k = from; k < to; k++) {
        chat_msg_info_t mi;
        const redisReply *t = r->element[3 + 2 * k];
        if (msg_of(r, k, &mi)) {
            continue;
        }
        if (text) {
            chat_buf_reset(text, 1 << 16);
            if (mi.len && chat_buf_append(text, t->str, mi.len) != CHAT_OK) {
                return CHAT_ENOMEM;
            }
        }
        if (cb) {
            cb(baton, &mi, text ? text->data : t->str, mi.len);
        }
        n++;
    }
    return n;
}

int rs_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                void *baton)
{
    chat_status_t rc;
    redisReply *r =
        read_range(st, owner, id, start, count ? (long long)start + count - 1 : -1, &rc);
    int n;

    if (!r) {
        return rc;
    }
    n = deliver(r, 0, (r->elements - 2) / 2, text, cb, baton);
    freeReplyObject(r);
    return n;
}

/* chat_store_msg_tail of a linear conversation (lua_vtail): the messages
 * from the oldest one the context takes to the last, those with a skip
 * flag passed over. -> the count delivered or an error; *branched set
 * (and nothing delivered) if the conversation has branches: the caller
 * reads the tree. With meta, the settings blob is appended to it too
 * (read in the same script). */
/* The context a turn's start read (rs_ctx_keep), per thread. */
static __thread struct {
    redisReply *r;
    char hex[41];
    char id[CHAT_CONV_ID_LEN + 1];
    uint32_t max_msgs;
    size_t max_bytes;
} ctx_kept;

void rs_ctx_drop(void)
{
    if (ctx_kept.r) {
        freeReplyObject(ctx_kept.r);
        ctx_kept.r = NULL;
    }
}

void rs_ctx_keep(const char *hex, const char *id, uint32_t max_msgs, size_t max_bytes,
                 redisReply *r)
{
    rs_ctx_drop();
    /* {1}, or {0, first, hdr, text, ..., blob} */
    if (!r || r->type != REDIS_REPLY_ARRAY || !r->elements ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        (r->element[0]->integer == 1
             ? r->elements != 1
             : r->element[0]->integer != 0 || r->elements < 3 || (r->elements - 3) % 2)) {
        if (r) {
            freeReplyObject(r);
        }
        return;
    }
    ctx_kept.r = r;
    apr_cpystrn(ctx_kept.hex, hex, sizeof(ctx_kept.hex));
    apr_cpystrn(ctx_kept.id, id, sizeof(ctx_kept.id));
    ctx_kept.max_msgs = max_msgs;
    ctx_kept.max_bytes = max_bytes;
}

/* The kept context if it answers this read (taken), else NULL (dropped). */
static redisReply *ctx_take(const chat_owner_t *owner, const char *id, uint32_t max_msgs,
                            size_t max_bytes)
{
    redisReply *r = ctx_kept.r;
    char hex[41];

    if (!r) {
        return NULL;
    }
    ctx_kept.r = NULL;
    owner_hex(owner, hex);
    if (strcmp(ctx_kept.id, id) || strcmp(ctx_kept.hex, hex) ||
        ctx_kept.max_msgs != max_msgs || ctx_kept.max_bytes != max_bytes) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static int linear_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                       uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                       chat_msg_cb *cb, void *baton, chat_buf_t *meta, int *branched)
{
    const uint32_t skip = RS_TAIL_SKIP;
    const long long num[4] = {max_msgs, (long long)max_bytes, skip, meta ? 1 : 0};
    chat_status_t rc = CHAT_OK;
    redisReply *r =
        owner && valid_id(id) ? ctx_take(owner, id, max_msgs, max_bytes) : NULL;
    size_t k, npairs, blob = meta ? 1 : 0;
    int n = 0;

    if (r) {
        /* read by the turn's start: with the blob, whether wanted or not */
        if (r->element[0]->integer == 1) {
            freeReplyObject(r);
            *branched = 1;
            return 0;
        }
        blob = 1;
    }
    else {
        r = read_reply_x(st, RS_LUA_VTAIL, owner, id, num, 4, meta ? 1 : 0, &rc);
    }
    *branched = !r && rc == 1;
    if (!r) {
        return *branched ? 0 : rc;
    }
    npairs = (r->elements - 2 - blob) / 2;
    for (k = 0; k < npairs && n >= 0; k++) {
        chat_msg_info_t mi;
        if (msg_of(r, k, &mi) || (mi.flags & skip)) {
            continue;
        }
        n = deliver(r, k, k + 1, text, cb, baton) < 0 ? CHAT_ENOMEM : n + 1;
    }
    if (meta && n >= 0) {
        const redisReply *b = r->element[r->elements - 1];
        if (b->type == REDIS_REPLY_STRING && b->len && b->len <= CHAT_CONV_META_MAX &&
            chat_buf_append(meta, b->str, b->len) != CHAT_OK) {
            n = CHAT_ENOMEM;
        }
    }
    freeReplyObject(r);
    return n;
}

int rs_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                uint32_t max_msgs, size_t max_bytes, chat_buf_t *text, chat_msg_cb *cb,
                void *baton)
{
    return rs_msg_tail_meta(st, owner, id, max_msgs, max_bytes, text, cb, baton, NULL);
}

int rs_msg_tail_meta(chat_store_t *st, const chat_owner_t *owner, const char *id,
                     uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                     chat_msg_cb *cb, void *baton, chat_buf_t *meta)
{
    chat_status_t rc;
    redisReply *r;
    size_t total, k, used = 0;
    uint32_t *parent, *flags, *path, np, j, from;
    int n, branched;

    if (max_msgs == 0) {
        if (meta) {
            rs_meta_into(st, owner, id, meta); /* nothing to read with the blob */
        }
        return 0;
    }
    /* a linear conversation: from its end only (lua_vtail) */
    n = linear_tail(st, owner, id, max_msgs, max_bytes, text, cb, baton, meta, &branched);
    if (!branched) {
        return n;
    }
    if (meta) {
        rs_meta_into(st, owner, id, meta); /* with versions: the blob on its own */
    }
    /* a conversation with branches: every stored message (at most
     * max_messages), for the active path (chat/versions.h); errors and
     * refused commands are skipped */
    r = read_range(st, owner, id, 0, -1, &rc);
    if (!r) {
        return rc;
    }
    total = (r->elements - 2) / 2;
    if (!total) {
        freeReplyObject(r);
        return 0;
    }
    parent = malloc(sizeof(uint32_t) * 3 * total);
    if (!parent) {
        freeReplyObject(r);
        return CHAT_ENOMEM;
    }
    flags = parent + total;
    path = flags + total;
    for (k = 0; k < total; k++) {
        chat_msg_info_t mi;
        if (msg_of(r, k, &mi)) {
            parent[k] = CHAT_MSG_NO_PARENT;
            flags[k] = CHAT_MSG_ALT; /* unreadable: never on the path */
            continue;
        }
        parent[k] = mi.parent == CHAT_MSG_NO_PARENT
                        ? mi.parent
                        : mi.parent - (uint32_t)rint_(r->element[1]);
        flags[k] = mi.flags;
    }
    np = chat_ver_path(parent, flags, (uint32_t)total, path);
    /* newest first: how far back it goes */
    from = np;
    n = 0;
    for (j = np; j-- > 0;) {
        chat_msg_info_t mi;
        if (msg_of(r, path[j], &mi) || (mi.flags & CHAT_MSG_ERROR) ||
            ((mi.flags & CHAT_MSG_REFUSED) && (mi.flags & CHAT_MSG_COMMAND))) {
            continue;
        }
        if (n >= (int)max_msgs || (n > 0 && used + mi.len > max_bytes)) {
            break;
        }
        used += mi.len;
        from = j;
        n++;
    }
    n = 0;
    for (j = from; j < np; j++) {
        chat_msg_info_t mi;
        if (msg_of(r, path[j], &mi) || (mi.flags & CHAT_MSG_ERROR) ||
            ((mi.flags & CHAT_MSG_REFUSED) && (mi.flags & CHAT_MSG_COMMAND))) {
            continue;
        }
        if (deliver(r, path[j], path[j] + 1, text, cb, baton) < 0) {
            break;
        }
        n++;
    }
    free(parent);
    freeReplyObject(r);
    return n;
}

chat_status_t rs_msg_branch(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint32_t parent, chat_role_t role, uint32_t flags,
                            const char *text, size_t len, uint64_t now_ms,
                            uint32_t *index_out)
{
    return branch(st, owner, id, parent == CHAT_MSG_NO_PARENT ? -2 : (long long)parent,
                  role, flags, text, len, now_ms, index_out);
}

chat_status_t rs_msg_select(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint32_t index, uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_u64(&a, index);
    arg_u64(&a, now_ms);
    return rs_done(rs_run(st, RS_LUA_VSELECT, &a));
}

chat_status_t rs_msg_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                         uint32_t index, size_t offset, chat_buf_t *text,
                         chat_msg_info_t *info)
{
    chat_status_t rc;
    redisReply *r = read_range(st, owner, id, index, index, &rc);
    chat_msg_info_t mi;

    if (!r) {
        return rc;
    }
    if (r->elements != 4 || msg_of(r, 0, &mi)) {
        freeReplyObject(r);
        return CHAT_ENOTFOUND;
    }
    if (offset > mi.len) {
        freeReplyObject(r);
        return CHAT_EINVAL;
    }
    if (text) {
        chat_buf_reset(text, 1 << 16);
        if (mi.len > offset && chat_buf_append(text, r->element[3]->str + offset,
                                               mi.len - offset) != CHAT_OK) {
            freeReplyObject(r);
            return CHAT_ENOMEM;
        }
    }
    if (info) {
        *info = mi;
    }
    freeReplyObject(r);
    return CHAT_OK;
}
