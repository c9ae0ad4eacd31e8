/* chat_store_msg.c - the text arena of the shared store: messages as chains
 * of 256-byte blocks, the free list, room-making (eviction) and the
 * message API (append, streaming extend, flags, truncate, read, tail, get).
 *
 * A message of len bytes occupies exactly cs_blocks_for(len) blocks (see
 * the diagram in chat_store.c), so the free space in its last block
 * follows from len: extending the newest message is O(delta).
 */
#include <string.h>

#include "chat_store_int.h"

/* ---- blocks ------------------------------------------------------------------- */

/* Pops a free block for c (the caller made sure one is free). */
static uint32_t blk_alloc(chat_store_t *st, cs_conv_t *c, uint32_t kind)
{
    cs_hdr_t *h = st->hdr;
    uint32_t b = h->blk_free;
    cs_blkhdr_t *bh = cs_bh(st, b);

    h->blk_free = bh->next;
    h->blk_nfree--;
    bh->next = CS_NIL;
    bh->kind = kind;
    c->nblocks++;
    if (c->state != CHAT_CONV_IDLE) {
        h->busy_blocks++;
    }
    return b;
}

/* Returns a whole chain (one message) of c to the free list. */
static void blk_free_chain(chat_store_t *st, cs_conv_t *c, uint32_t b)
{
    cs_hdr_t *h = st->hdr;
    while (b != CS_NIL) {
        cs_blkhdr_t *bh = cs_bh(st, b);
        uint32_t next = bh->next;
        bh->next = h->blk_free;
        bh->kind = CS_BLK_FREE;
        h->blk_free = b;
        h->blk_nfree++;
        c->nblocks--;
        if (c->state != CHAT_CONV_IDLE) {
            h->busy_blocks--;
        }
        b = next;
    }
}

static uint32_t last_block_of(const chat_store_t *st, uint32_t head)
{
    uint32_t b = head;
    while (cs_bh(st, b)->next != CS_NIL) {
        b = cs_bh(st, b)->next;
    }
    return b;
}

static void drop_oldest(chat_store_t *st, cs_conv_t *c)
{
    uint32_t m = c->first_msg;
    cs_msghdr_t *mh = cs_mh(st, m);
    uint32_t next = mh->next_msg;

    c->bytes -= mh->len;
    c->nmsgs--;
    blk_free_chain(st, c, m);
    c->first_msg = next;
    if (next != CS_NIL) {
        cs_mh(st, next)->prev_msg = CS_NIL;
    }
    else {
        c->last_msg = c->last_blk = CS_NIL;
    }
}

void cs_msg_free_all(chat_store_t *st, cs_conv_t *c)
{
    while (c->first_msg != CS_NIL) {
        drop_oldest(st, c);
    }
}

void cs_msg_push(chat_store_t *st, cs_conv_t *c, uint32_t role, uint32_t flags,
                 uint64_t ts_ms)
{
    uint32_t b = blk_alloc(st, c, CS_BLK_HEAD);
    cs_msghdr_t *mh = cs_mh(st, b);

    memset(mh, 0, sizeof(*mh));
    mh->ts_ms = ts_ms;
    mh->next_msg = CS_NIL;
    mh->prev_msg = c->last_msg;
    mh->role = role;
    mh->flags = flags;
    if (c->last_msg != CS_NIL) {
        cs_mh(st, c->last_msg)->next_msg = b;
    }
    else {
        c->first_msg = b;
    }
    c->last_msg = b;
    c->last_blk = b;
    c->nmsgs++;
}

void cs_msg_write(chat_store_t *st, cs_conv_t *c, const char *text, size_t len)
{
    cs_msghdr_t *mh = cs_mh(st, c->last_msg);
    uint64_t cur = mh->len, k = cs_blocks_for(cur);
    size_t used, cap, n;
    uint8_t *data;

    if (len == 0) {
        return;
    }
    /* the free part of the tail block */
    if (k == 1) {
        used = (size_t)cur;
        cap = CS_CAP_FIRST;
        data = cs_blk(st, c->last_blk) + CS_BLK_HDR + CS_MSG_HDR;
    }
    else {
        used = (size_t)(cur - CS_CAP_FIRST - (k - 2) * CS_CAP_NEXT);
        cap = CS_CAP_NEXT;
        data = cs_blk(st, c->last_blk) + CS_BLK_HDR;
    }
    mh->len += (uint32_t)len;
    c->bytes += len;
    n = cap - used < len ? cap - used : len;
    memcpy(data + used, text, n);
    text += n;
    len -= n;
    while (len) {
        uint32_t b = blk_alloc(st, c, CS_BLK_CONT);
        cs_bh(st, c->last_blk)->next = b;
        c->last_blk = b;
        n = len < CS_CAP_NEXT ? len : CS_CAP_NEXT;
        memcpy(cs_blk(st, b) + CS_BLK_HDR, text, n);
        text += n;
        len -= n;
    }
}

/* Whether need blocks can be made free for conversation c once its
 * oldest messages holding capfree blocks are dropped (the per-conversation
 * cap): free blocks + blocks of idle conversations other than c + blocks
 * of c's messages except its last. */
static int room_possible(const chat_store_t *st, const cs_conv_t *c, uint64_t need,
                         uint64_t capfree, uint32_t capdrop)
{
    const cs_hdr_t *h = st->hdr;
    uint64_t used = (uint64_t)st->nblocks - h->blk_nfree;
    uint64_t idle_others =
        used - h->busy_blocks - (c->state == CHAT_CONV_IDLE ? c->nblocks : 0);
    uint64_t own = 0;

    if (c->nmsgs > capdrop) {
        own = c->nblocks - capfree - cs_blocks_for(cs_mh(st, c->last_msg)->len);
    }
    return h->blk_nfree + capfree + idle_others + own >= need;
}

/* Makes need blocks free for conversation c: evicts least recently
 * updated idle conversations of any owner (never c), then drops c's own
 * oldest messages (never its last). The caller has checked room_possible,
 * so nothing is destroyed for a request that cannot succeed. */
static void make_room(chat_store_t *st, cs_conv_t *c, uint64_t need)
{
    cs_hdr_t *h = st->hdr;

    while (h->blk_nfree < need) {
        cs_conv_t *v = cs_conv_lru_victim(st, c);
        if (v) {
            cs_conv_evict(st, v);
        }
        else if (c->nmsgs > 1) {
            drop_oldest(st, c);
        }
        else {
            break; /* not reached after room_possible */
        }
    }
}

/* Copies len bytes of the message whose HEAD block is head, from offset. */
static void msg_copy(const chat_store_t *st, uint32_t head, size_t offset, size_t len,
                     char *dst)
{
    uint32_t b = head;
    size_t cap = CS_CAP_FIRST, n;
    const uint8_t *p = cs_blk(st, head) + CS_BLK_HDR + CS_MSG_HDR;

    if (len == 0) {
        return; /* offset may be the end of the last block */
    }
    while (offset >= cap) { /* skip whole blocks */
        offset -= cap;
        b = cs_bh(st, b)->next;
        cap = CS_CAP_NEXT;
        p = cs_blk(st, b) + CS_BLK_HDR;
    }
    while (len) {
        n = cap - offset < len ? cap - offset : len;
        memcpy(dst, p + offset, n);
        dst += n;
        len -= n;
        offset = 0;
        if (len) {
            b = cs_bh(st, b)->next;
            cap = CS_CAP_NEXT;
            p = cs_blk(st, b) + CS_BLK_HDR;
        }
    }
}

static void msg_info(const chat_store_t *st, uint32_t head, uint32_t index,
                     chat_msg_info_t *info)
{
    const cs_msghdr_t *mh = cs_mh(st, head);
    info->index = index;
    info->role = (chat_role_t)mh->role;
    info->flags = mh->flags;
    info->ts_ms = mh->ts_ms;
    info->len = mh->len;
}

/* Fills text with bytes [offset, len) of a message. CHAT_OK or CHAT_ENOMEM. */
static chat_status_t msg_fill(const chat_store_t *st, uint32_t head, size_t offset,
                              chat_buf_t *text)
{
    size_t n = cs_mh(st, head)->len - offset;

    /* keep any allocation up to the largest possible message */
    chat_buf_reset(text, (size_t)st->l.max_message_bytes + 1);
    if (chat_buf_reserve(text, n) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    msg_copy(st, head, offset, n, text->data);
    text->len = n;
    text->data[n] = '\0';
    return CHAT_OK;
}

/* HEAD block of message index (walking from the nearer end). */
static uint32_t msg_at(const chat_store_t *st, const cs_conv_t *c, uint32_t index)
{
    uint32_t m, k;
    if (index < c->nmsgs / 2) {
        for (m = c->first_msg, k = 0; k < index; k++) {
            m = cs_mh(st, m)->next_msg;
        }
    }
    else {
        for (m = c->last_msg, k = c->nmsgs - 1; k > index; k--) {
            m = cs_mh(st, m)->prev_msg;
        }
    }
    return m;
}

/* ---- public API ----------------------------------------------------------------------
 */

chat_status_t chat_store_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, chat_role_t role, uint32_t flags,
                                    const char *text, size_t len, uint64_t now_ms,
                                    uint32_t *index_out)
{
    cs_conv_t *c;
    uint64_t need, capfree = 0;
    uint32_t capdrop = 0, m, k;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if ((unsigned)role > CHAT_ROLE_TOOL || (flags & ~CS_MSG_FLAGS) || (!text && len)) {
        return CHAT_EINVAL;
    }
    if (len > st->l.max_message_bytes) {
        return CHAT_ETOOBIG;
    }
    need = cs_blocks_for(len);
    /* the per-conversation cap drops the oldest messages first (they free
     * blocks too); nothing is dropped if the append cannot succeed */
    if (c->nmsgs >= st->l.max_messages) {
        capdrop = c->nmsgs - st->l.max_messages + 1; /* <= nmsgs */
        for (k = 0, m = c->first_msg; k < capdrop; k++, m = cs_mh(st, m)->next_msg) {
            capfree += cs_blocks_for(cs_mh(st, m)->len);
        }
    }
    if (need > st->nblocks || !room_possible(st, c, need, capfree, capdrop)) {
        return CHAT_EFULL;
    }
    while (c->nmsgs >= st->l.max_messages) {
        drop_oldest(st, c);
    }
    make_room(st, c, need);
    cs_msg_push(st, c, (uint32_t)role, flags, now_ms);
    cs_msg_write(st, c, text, len);
    cs_conv_touch(st, c, now_ms);
    if (index_out) {
        *index_out = c->nmsgs - 1;
    }
    return CHAT_OK;
}

chat_status_t chat_store_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, const char *text, size_t len,
                                    uint64_t now_ms)
{
    cs_conv_t *c;
    uint64_t cur, need;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (c->nmsgs == 0 || (!text && len)) {
        return CHAT_EINVAL;
    }
    if (len == 0) {
        return CHAT_OK;
    }
    cur = cs_mh(st, c->last_msg)->len;
    if (len > st->l.max_message_bytes || cur + len > st->l.max_message_bytes) {
        return CHAT_ETOOBIG;
    }
    need = cs_blocks_for(cur + len) - cs_blocks_for(cur);
    if (!room_possible(st, c, need, 0, 0)) {
        return CHAT_EFULL;
    }
    make_room(st, c, need);
    cs_msg_write(st, c, text, len);
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint32_t set, uint32_t clear,
                                   uint64_t now_ms)
{
    cs_conv_t *c;
    cs_msghdr_t *mh;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (c->nmsgs == 0 || ((set | clear) & ~CS_MSG_FLAGS)) {
        return CHAT_EINVAL;
    }
    mh = cs_mh(st, c->last_msg);
    mh->flags = (mh->flags | set) & ~clear;
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, uint32_t keep, uint64_t now_ms)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (keep >= c->nmsgs) {
        return CHAT_OK;
    }
    while (c->nmsgs > keep) {
        uint32_t m = c->last_msg;
        cs_msghdr_t *mh = cs_mh(st, m);
        uint32_t prev = mh->prev_msg;
        c->bytes -= mh->len;
        c->nmsgs--;
        blk_free_chain(st, c, m);
        c->last_msg = prev;
        if (prev != CS_NIL) {
            cs_mh(st, prev)->next_msg = CS_NIL;
        }
        else {
            c->first_msg = CS_NIL;
        }
    }
    c->last_blk = c->last_msg != CS_NIL ? last_block_of(st, c->last_msg) : CS_NIL;
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

int chat_store_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                        void *baton)
{
    cs_conv_t *c;
    chat_msg_info_t info;
    uint32_t m, i, end;
    int n = 0;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (!text) {
        return CHAT_EINVAL;
    }
    if (start >= c->nmsgs) {
        return 0;
    }
    end = (count == 0 || count > c->nmsgs - start) ? c->nmsgs : start + count;
    for (m = msg_at(st, c, start), i = start; i < end; i++, m = cs_mh(st, m)->next_msg) {
        if (msg_fill(st, m, 0, text) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        msg_info(st, m, i, &info);
        if (cb) {
            cb(baton, &info, text->data, text->len);
        }
        n++;
    }
    return n;
}

int chat_store_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                        chat_msg_cb *cb, void *baton)
{
    cs_conv_t *c;
    chat_msg_info_t info;
    uint32_t m, first = CS_NIL, first_index = 0, back = 0, taken = 0;
    uint64_t total = 0;
    int n = 0;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (!text) {
        return CHAT_EINVAL;
    }
    /* newest to oldest: a contiguous run of the history, errors and refused
     * commands skipped;
     * the newest usable message is taken whatever its size */
    for (m = c->last_msg; m != CS_NIL; m = cs_mh(st, m)->prev_msg, back++) {
        const cs_msghdr_t *mh = cs_mh(st, m);
        if (mh->flags & (CHAT_MSG_ERROR | CHAT_MSG_REFUSED)) {
            continue;
        }
        if (max_msgs && taken >= max_msgs) {
            break;
        }
        if (taken > 0 && total + mh->len > max_bytes) {
            break;
        }
        total += mh->len;
        taken++;
        first = m;
        first_index = c->nmsgs - 1 - back;
    }
    for (m = first; m != CS_NIL; m = cs_mh(st, m)->next_msg, first_index++) {
        if (cs_mh(st, m)->flags & (CHAT_MSG_ERROR | CHAT_MSG_REFUSED)) {
            continue;
        }
        if (msg_fill(st, m, 0, text) != CHAT_OK) {
            return CHAT_ENOMEM;
        }
        msg_info(st, m, first_index, &info);
        if (cb) {
            cb(baton, &info, text->data, text->len);
        }
        n++;
    }
    return n;
}

chat_status_t chat_store_msg_get(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, uint32_t index, size_t offset,
                                 chat_buf_t *text, chat_msg_info_t *info)
{
    cs_conv_t *c;
    uint32_t m;

    if (!owner || !(c = cs_conv_find(st, owner, id)) || index >= c->nmsgs) {
        return CHAT_ENOTFOUND;
    }
    m = msg_at(st, c, index);
    if (offset > cs_mh(st, m)->len) {
        return CHAT_EINVAL;
    }
    if (text && msg_fill(st, m, offset, text) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (info) {
        msg_info(st, m, index, info);
    }
    return CHAT_OK;
}
