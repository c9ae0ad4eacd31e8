/* chat_store_msg.c - the text arena of the shared store: the pool of free
 * blocks and slots, messages as runs of one chain of 256-byte blocks per
 * conversation, and the message API (append, streaming extend, flags,
 * truncate, read, tail, get).
 *
 * A message of len bytes occupies exactly cs_blocks_for(len) blocks (see
 * the diagram in chat_store.c), so the free space in its last block follows
 * from len: extending the newest message is O(delta). Text is copied into
 * blocks before the length that makes it visible is changed (and blocks
 * taken from the pool are nobody else's until linked), so only the few
 * header fields that link and count are undo-logged.
 */
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

/* ---- the pool ------------------------------------------------------------------ */

int cs_pool_take_blocks(chat_store_t *st, uint32_t n, int auth, uint32_t *first,
                        uint32_t *last)
{
    cs_lock_t *lk = cs_pool_lock(st);
    cs_pool_t *p = &st->hdr->pool;
    cs_tx_t tx;
    uint32_t b, k;

    if (n == 0 || cs_lock(st, lk) != CHAT_OK) {
        return 0;
    }
    if (p->blk_nfree < n) {
        cs_unlock(st, lk);
        return 0;
    }
    b = p->blk_free;
    for (k = 1; k < n; k++) {
        b = cs_bh(st, b)->next;
    }
    *first = p->blk_free;
    *last = b;
    cs_tx_begin(&tx, st, lk);
    cs_snap(&tx, p, sizeof(*p));
    p->blk_free = cs_bh(st, b)->next;
    p->blk_nfree -= n;
    if (!auth) {
        p->anon_blocks += n;
    }
    cs_unlock(st, lk);
    return 1;
}

void cs_pool_give_blocks(chat_store_t *st, uint32_t first, uint32_t last, uint32_t n,
                         int auth)
{
    cs_lock_t *lk = cs_pool_lock(st);
    cs_pool_t *p = &st->hdr->pool;
    cs_tx_t tx;

    if (cs_lock(st, lk) != CHAT_OK) {
        return; /* leaked until the next sweep: logged */
    }
    cs_tx_begin(&tx, st, lk);
    cs_snap(&tx, p, sizeof(*p));
    cs_snap(&tx, cs_bh(st, last), sizeof(cs_blkhdr_t));
    cs_bh(st, last)->next = p->blk_free;
    p->blk_free = first;
    p->blk_nfree += n;
    if (!auth) {
        p->anon_blocks -= n <= p->anon_blocks ? n : p->anon_blocks;
    }
    cs_unlock(st, lk);
}

int cs_pool_take_slot(chat_store_t *st, int auth, uint32_t *slot)
{
    cs_lock_t *lk = cs_pool_lock(st);
    cs_pool_t *p = &st->hdr->pool;
    cs_tx_t tx;

    if (cs_lock(st, lk) != CHAT_OK) {
        return 0;
    }
    if (p->conv_free == CS_NIL) {
        cs_unlock(st, lk);
        return 0;
    }
    cs_tx_begin(&tx, st, lk);
    cs_snap(&tx, p, sizeof(*p));
    *slot = p->conv_free;
    p->conv_free = st->convs[*slot].own_next;
    p->nconv++;
    if (!auth) {
        p->anon_convs++;
    }
    cs_unlock(st, lk);
    return 1;
}

void cs_pool_give_slot(chat_store_t *st, uint32_t slot, int auth)
{
    cs_lock_t *lk = cs_pool_lock(st);
    cs_pool_t *p = &st->hdr->pool;
    cs_conv_t *c = &st->convs[slot];
    cs_tx_t tx;

    if (cs_lock(st, lk) != CHAT_OK) {
        return;
    }
    cs_tx_begin(&tx, st, lk);
    cs_snap(&tx, p, sizeof(*p));
    cs_snap(&tx, &c->own_next, sizeof(c->own_next));
    c->own_next = p->conv_free;
    p->conv_free = slot;
    p->nconv -= p->nconv ? 1 : 0;
    if (!auth && p->anon_convs) {
        p->anon_convs--;
    }
    cs_unlock(st, lk);
}

/* ---- chains --------------------------------------------------------------------- */

/* The last block of the message whose HEAD block is head. */
static uint32_t msg_last_block(const chat_store_t *st, uint32_t head)
{
    uint64_t k = cs_blocks_for(cs_mh(st, head)->len);
    uint32_t b = head;

    while (--k > 0) {
        b = cs_bh(st, b)->next;
    }
    return b;
}

uint32_t cs_msg_unlink_all(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last)
{
    uint32_t n = c->nblocks;

    *first = c->first_msg;
    *last = c->last_blk;
    cs_snap(tx, c, sizeof(*c));
    c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    c->nmsgs = 0;
    c->nblocks = 0;
    c->bytes = 0;
    return n;
}

void cs_msg_drop_oldest(cs_tx_t *tx, cs_conv_t *c, cs_owner_t *o, int auth)
{
    chat_store_t *st = tx->st;
    uint32_t m = c->first_msg, lastb, next;
    cs_msghdr_t *mh = cs_mh(st, m);
    uint32_t k = (uint32_t)cs_blocks_for(mh->len);
    uint32_t len = mh->len;

    if (mh->flags & CHAT_MSG_ALT) {
        /* its children become roots: they must not compete with the
         * chosen root (they were off the active path) */
        cs_ver_choose(tx, c, 0, CS_NIL);
    }
    lastb = msg_last_block(st, m);
    next = cs_bh(st, lastb)->next;
    cs_snap(tx, c, sizeof(*c));
    cs_snap(tx, o, sizeof(*o));
    if (next == CS_NIL) {
        c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    }
    else {
        cs_msghdr_t *nh = cs_mh(st, next);
        cs_snap(tx, nh, sizeof(*nh));
        nh->prev_msg = CS_NIL;
        c->first_msg = next;
    }
    c->nmsgs--;
    c->nblocks -= k;
    c->bytes -= len;
    o->nblocks -= k;
    cs_tx_commit(tx); /* the giver commits first */
    cs_pool_give_blocks(st, m, lastb, k, auth);
}

/* Gets need fresh blocks for c (making room first); CHAT_OK with the chain
 * first..last, or the reason there is none. */
static chat_status_t get_blocks(cs_tx_t *tx, cs_owner_t **po, int auth, cs_conv_t *c,
                                uint64_t need, uint32_t *first, uint32_t *last)
{
    chat_store_t *st = tx->st;
    int tries;

    for (tries = 0; tries < 4; tries++) {
        chat_status_t rc = cs_make_room(tx, *po, auth, c, CS_RES_BLOCKS, need);
        *po = &st->owners[c->owner_ref];
        if (rc != CHAT_OK) {
            return rc;
        }
        if (cs_pool_take_blocks(st, (uint32_t)need, auth, first, last)) {
            return CHAT_OK;
        }
    }
    return CHAT_EFULL;
}

/* Copies text into fresh blocks first.. (a chain of k blocks), starting at
 * in-block offset skip of the first one's capacity; sets their kinds. */
static void fill_blocks(chat_store_t *st, uint32_t b, int head, const char *text,
                        size_t len)
{
    while (b != CS_NIL) {
        size_t cap = head ? CS_CAP_FIRST : CS_CAP_NEXT;
        uint8_t *p = cs_blk(st, b) + CS_BLK_HDR + (head ? CS_MSG_HDR : 0);
        size_t n = len < cap ? len : cap;
        cs_bh(st, b)->kind = head ? CS_BLK_HEAD : CS_BLK_CONT;
        if (!n) {
            break; /* an empty message: text may be NULL */
        }
        memcpy(p, text, n);
        text += n;
        len -= n;
        head = 0;
        if (!len) {
            break;
        }
        b = cs_bh(st, b)->next;
    }
}

/* Marks the kinds of a run of fresh continuation blocks (and copies). */
static void fill_cont(chat_store_t *st, uint32_t b, uint32_t k, const char *text,
                      size_t len)
{
    while (k-- > 0) {
        size_t n = len < CS_CAP_NEXT ? len : CS_CAP_NEXT;
        cs_bh(st, b)->kind = CS_BLK_CONT;
        memcpy(cs_blk(st, b) + CS_BLK_HDR, text, n);
        text += n;
        len -= n;
        if (k) {
            b = cs_bh(st, b)->next;
        }
    }
}

/* Links the fresh chain first..last (k blocks) after c's last block. */
static void link_chain(cs_tx_t *tx, cs_conv_t *c, uint32_t first, uint32_t last)
{
    chat_store_t *st = tx->st;

    cs_bh(st, last)->next = CS_NIL; /* fresh: nobody else's */
    if (c->last_blk != CS_NIL) {
        cs_snap(tx, cs_bh(st, c->last_blk), sizeof(cs_blkhdr_t));
        cs_bh(st, c->last_blk)->next = first;
    }
    else {
        c->first_msg = first;
    }
    c->last_blk = last;
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
    info->parent = cs_parent_of(mh, index);
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
uint32_t cs_msg_at(const chat_store_t *st, const cs_conv_t *c, uint32_t index)
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

void cs_msg_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                     uint32_t head, uint32_t *cursor)
{
    const cs_msghdr_t *sm = cs_mh(src, head);
    uint32_t k = (uint32_t)cs_blocks_for(sm->len), first = *cursor, b, sb = head;
    size_t off = 0, len = sm->len;
    cs_msghdr_t *mh = cs_mh(dst, first);

    *cursor += k;
    for (b = first; b < first + k; b++) {
        const uint8_t *p = b == first ? cs_blk(src, sb) + CS_BLK_HDR + CS_MSG_HDR
                                      : cs_blk(src, sb) + CS_BLK_HDR;
        size_t cap = b == first ? CS_CAP_FIRST : CS_CAP_NEXT;
        size_t n = len - off < cap ? len - off : cap;
        cs_bh(dst, b)->kind = b == first ? CS_BLK_HEAD : CS_BLK_CONT;
        cs_bh(dst, b)->next = b + 1 < first + k ? b + 1 : CS_NIL;
        memcpy(cs_blk(dst, b) + CS_BLK_HDR + (b == first ? CS_MSG_HDR : 0), p, n);
        off += n;
        sb = cs_bh(src, sb)->next;
    }
    memset(mh, 0, sizeof(*mh));
    mh->ts_ms = sm->ts_ms;
    mh->len = sm->len;
    mh->flags = sm->flags;
    mh->role = sm->role;
    mh->parent_back = sm->parent_back;
    mh->next_msg = CS_NIL;
    mh->prev_msg = dc->last_msg;
    if (dc->last_blk != CS_NIL) {
        cs_bh(dst, dc->last_blk)->next = first;
        cs_mh(dst, dc->last_msg)->next_msg = first;
    }
    else {
        dc->first_msg = first;
    }
    dc->last_msg = first;
    dc->last_blk = first + k - 1;
    dc->nmsgs++;
    dc->nblocks += k;
    dc->bytes += sm->len;
}

/* ---- public API ------------------------------------------------------------------- */

static chat_status_t done(cs_tx_t *tx, chat_status_t rc)
{
    cs_unlock(tx->st, tx->lk);
    return rc;
}

/* Appends a message under parent (CS_PARENT_LEAF: the active path's last
 * message; CHAT_MSG_NO_PARENT: a root), chosen among its siblings. */
#define CS_PARENT_LEAF 0xFFFFFFFEu
static chat_status_t msg_add(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t parent, chat_role_t role, uint32_t flags,
                             const char *text, size_t len, uint64_t now_ms,
                             uint32_t *index_out)
{
    cs_conv_t *c;
    cs_owner_t *o;
    cs_msghdr_t *mh;
    cs_tx_t tx;
    chat_status_t rc;
    uint64_t need, capfree = 0;
    uint32_t capdrop = 0, m, k, first, last;
    int auth, leafward;
    uint32_t back;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if ((unsigned)role > CHAT_ROLE_TOOL || (flags & ~CS_MSG_FLAGS) || (!text && len)) {
        return done(&tx, CHAT_EINVAL);
    }
    flags &= ~CHAT_MSG_ALT; /* a new message is the chosen version */
    if (len > st->l.max_message_bytes) {
        return done(&tx, CHAT_ETOOBIG);
    }
    if (parent == CS_PARENT_LEAF) {
        parent = cs_ver_leaf(st, c);
    }
    else if (parent != CHAT_MSG_NO_PARENT && parent >= c->nmsgs) {
        return done(&tx, CHAT_ENOTFOUND);
    }
    /* under the leaf of a linear conversation: no sibling to count or to
     * mark as another version, and it stays linear */
    leafward = (c->flags & CS_CONV_LINEAR) && parent == cs_ver_leaf(st, c);
    if (!leafward && cs_ver_children(st, c, parent) >= CHAT_MSG_MAX_VERSIONS) {
        return done(&tx, CHAT_ELIMIT);
    }
    /* the parent as a distance from the end (0: none): the drops below (the
     * cap, and room made from this conversation's own oldest messages) move
     * every index */
    back = parent == CHAT_MSG_NO_PARENT ? 0 : c->nmsgs - parent;
    o = &st->owners[c->owner_ref];
    auth = (o->flags & CS_OWN_AUTH) != 0;
    need = cs_blocks_for(len);
    if (need > st->nblocks) {
        return done(&tx, CHAT_EFULL);
    }
    /* the per-conversation cap drops the oldest messages first (they free
     * blocks too); nothing is dropped if the room cannot be made */
    if (c->nmsgs >= st->l.max_messages) {
        capdrop = c->nmsgs - st->l.max_messages + 1; /* <= nmsgs */
        for (k = 0, m = c->first_msg; k < capdrop; k++, m = cs_mh(st, m)->next_msg) {
            capfree += cs_blocks_for(cs_mh(st, m)->len);
        }
        if (need > capfree) {
            rc = cs_make_room(&tx, o, auth, c, CS_RES_BLOCKS, need - capfree);
            if (rc != CHAT_OK) {
                return done(&tx, rc);
            }
            o = &st->owners[c->owner_ref];
        }
        while (c->nmsgs >= st->l.max_messages) {
            cs_msg_drop_oldest(&tx, c, o, auth);
        }
    }
    rc = get_blocks(&tx, &o, auth, c, need, &first, &last);
    if (rc != CHAT_OK) {
        return done(&tx, rc);
    }
    /* a parent that was dropped leaves the new message a root */
    parent = back == 0 || back > c->nmsgs ? CHAT_MSG_NO_PARENT : c->nmsgs - back;
    /* the new message, complete, in its fresh blocks */
    mh = cs_mh(st, first);
    memset(mh, 0, sizeof(*mh));
    mh->ts_ms = now_ms;
    mh->next_msg = CS_NIL;
    mh->prev_msg = c->last_msg;
    mh->role = (uint32_t)role;
    mh->flags = flags;
    mh->len = (uint32_t)len;
    mh->parent_back = parent == CHAT_MSG_NO_PARENT ? CS_PARENT_ROOT : c->nmsgs - parent;
    fill_blocks(st, first, 1, text, len);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    /* then linked, its siblings made other versions */
    if (!leafward) {
        cs_ver_choose(&tx, c, parent, CS_NIL);
    }
    cs_snap(&tx, c, sizeof(*c));
    if (!leafward) {
        c->flags &= ~CS_CONV_LINEAR;
    }
    cs_snap(&tx, o, sizeof(*o));
    if (c->last_msg != CS_NIL) {
        cs_msghdr_t *ph = cs_mh(st, c->last_msg);
        cs_snap(&tx, ph, sizeof(*ph));
        ph->next_msg = first;
    }
    link_chain(&tx, c, first, last);
    c->last_msg = first;
    c->nmsgs++;
    c->nblocks += (uint32_t)need;
    c->bytes += len;
    o->nblocks += need;
    cs_conv_touch(&tx, c, now_ms);
    if (index_out) {
        *index_out = c->nmsgs - 1;
    }
    return done(&tx, CHAT_OK);
}

chat_status_t cs_shm_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, chat_role_t role, uint32_t flags,
                                const char *text, size_t len, uint64_t now_ms,
                                uint32_t *index_out)
{
    return msg_add(st, owner, id, CS_PARENT_LEAF, role, flags, text, len, now_ms,
                   index_out);
}

chat_status_t cs_shm_msg_branch(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t parent, chat_role_t role,
                                uint32_t flags, const char *text, size_t len,
                                uint64_t now_ms, uint32_t *index_out)
{
    if (parent == CS_PARENT_LEAF) {
        return CHAT_ENOTFOUND;
    }
    return msg_add(st, owner, id, parent, role, flags, text, len, now_ms, index_out);
}

chat_status_t cs_shm_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *text, size_t len,
                                uint64_t now_ms)
{
    cs_conv_t *c;
    cs_owner_t *o;
    cs_msghdr_t *mh;
    cs_tx_t tx;
    chat_status_t rc;
    uint64_t cur, need, k;
    uint32_t first = CS_NIL, last = CS_NIL;
    size_t used, cap, n;
    uint8_t *data;
    int auth;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if (c->nmsgs == 0 || (!text && len)) {
        return done(&tx, CHAT_EINVAL);
    }
    if (len == 0) {
        return done(&tx, CHAT_OK);
    }
    cur = cs_mh(st, c->last_msg)->len;
    if (len > st->l.max_message_bytes || cur + len > st->l.max_message_bytes) {
        return done(&tx, CHAT_ETOOBIG);
    }
    o = &st->owners[c->owner_ref];
    auth = (o->flags & CS_OWN_AUTH) != 0;
    need = cs_blocks_for(cur + len) - cs_blocks_for(cur);
    if (need) {
        rc = get_blocks(&tx, &o, auth, c, need, &first, &last);
        if (rc != CHAT_OK) {
            return done(&tx, rc);
        }
    }
    /* the free part of the tail block, then the fresh blocks: all beyond
     * the visible length until it changes */
    k = cs_blocks_for(cur);
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
    n = cap - used < len ? cap - used : len;
    memcpy(data + used, text, n);
    if (need) {
        fill_cont(st, first, (uint32_t)need, text + n, len - n);
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    mh = cs_mh(st, c->last_msg);
    cs_snap(&tx, c, sizeof(*c));
    cs_snap(&tx, mh, sizeof(*mh));
    if (need) {
        cs_snap(&tx, o, sizeof(*o));
        link_chain(&tx, c, first, last);
        c->nblocks += (uint32_t)need;
        o->nblocks += need;
    }
    mh->len += (uint32_t)len;
    c->bytes += len;
    cs_conv_touch(&tx, c, now_ms);
    return done(&tx, CHAT_OK);
}

chat_status_t cs_shm_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint32_t set, uint32_t clear,
                               uint64_t now_ms)
{
    cs_conv_t *c;
    cs_msghdr_t *mh;
    cs_tx_t tx;
    chat_status_t rc;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if (c->nmsgs == 0 || ((set | clear) & ~CS_MSG_FLAGS)) {
        return done(&tx, CHAT_EINVAL);
    }
    mh = cs_mh(st, c->last_msg);
    cs_snap(&tx, mh, sizeof(*mh));
    mh->flags = (mh->flags | set) & ~clear;
    if (mh->flags & CHAT_MSG_ALT) {
        cs_snap(&tx, c, sizeof(*c));
        c->flags &= ~CS_CONV_LINEAR;
    }
    cs_conv_touch(&tx, c, now_ms);
    return done(&tx, CHAT_OK);
}

chat_status_t cs_shm_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint32_t keep, uint64_t now_ms)
{
    cs_conv_t *c;
    cs_owner_t *o;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t head, m, oldlast, freed = 0;
    uint64_t bytes = 0;
    int auth;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if (keep >= c->nmsgs) {
        return done(&tx, CHAT_OK);
    }
    o = &st->owners[c->owner_ref];
    auth = (o->flags & CS_OWN_AUTH) != 0;
    head = cs_msg_at(st, c, keep);
    for (m = head; m != CS_NIL; m = cs_mh(st, m)->next_msg) {
        freed += (uint32_t)cs_blocks_for(cs_mh(st, m)->len);
        bytes += cs_mh(st, m)->len;
    }
    oldlast = c->last_blk;
    cs_snap(&tx, c, sizeof(*c));
    cs_snap(&tx, o, sizeof(*o));
    if (keep == 0) {
        c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    }
    else {
        uint32_t prev = cs_mh(st, head)->prev_msg, lb = msg_last_block(st, prev);
        cs_snap(&tx, cs_mh(st, prev), sizeof(cs_msghdr_t));
        cs_snap(&tx, cs_bh(st, lb), sizeof(cs_blkhdr_t));
        cs_mh(st, prev)->next_msg = CS_NIL;
        cs_bh(st, lb)->next = CS_NIL;
        c->last_msg = prev;
        c->last_blk = lb;
    }
    c->nmsgs = keep;
    c->nblocks -= freed;
    c->bytes -= bytes;
    o->nblocks -= freed;
    cs_conv_touch(&tx, c, now_ms);
    cs_tx_commit(&tx); /* the giver commits first */
    cs_pool_give_blocks(st, head, oldlast, freed, auth);
    return done(&tx, CHAT_OK);
}

int cs_shm_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                    void *baton)
{
    cs_conv_t *c;
    chat_msg_info_t info;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t m, i, end;
    int n = 0;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc == CHAT_EINTERNAL ? CHAT_EINTERNAL : CHAT_ENOTFOUND;
    }
    if (!text) {
        return done(&tx, CHAT_EINVAL);
    }
    if (start >= c->nmsgs) {
        return done(&tx, 0);
    }
    end = (count == 0 || count > c->nmsgs - start) ? c->nmsgs : start + count;
    for (m = cs_msg_at(st, c, start), i = start; i < end;
         i++, m = cs_mh(st, m)->next_msg) {
        if (msg_fill(st, m, 0, text) != CHAT_OK) {
            return done(&tx, CHAT_ENOMEM);
        }
        msg_info(st, m, i, &info);
        if (cb) {
            cb(baton, &info, text->data, text->len);
        }
        n++;
    }
    return done(&tx, n);
}

int cs_shm_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                    chat_msg_cb *cb, void *baton)
{
    cs_conv_t *c;
    chat_msg_info_t info;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t *heads;
    int k, taken, n = 0;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc == CHAT_EINTERNAL ? CHAT_EINTERNAL : CHAT_ENOTFOUND;
    }
    if (!text) {
        return done(&tx, CHAT_EINVAL);
    }
    if (c->nmsgs == 0) {
        return done(&tx, 0);
    }
    heads = malloc(sizeof(uint32_t) * 2 * (size_t)c->nmsgs);
    if (!heads) {
        return done(&tx, CHAT_ENOMEM);
    }
    /* the active path only (chat_store_ver.c), delivered oldest first */
    taken = cs_ver_tail(st, c, max_msgs, max_bytes, heads, heads + c->nmsgs);
    for (k = taken - 1; k >= 0; k--) {
        if (msg_fill(st, heads[k], 0, text) != CHAT_OK) {
            free(heads);
            return done(&tx, CHAT_ENOMEM);
        }
        msg_info(st, heads[k], heads[c->nmsgs + (uint32_t)k], &info);
        if (cb) {
            cb(baton, &info, text->data, text->len);
        }
        n++;
    }
    free(heads);
    return done(&tx, n);
}

chat_status_t cs_shm_msg_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t index, size_t offset, chat_buf_t *text,
                             chat_msg_info_t *info)
{
    cs_conv_t *c;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t m;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if (index >= c->nmsgs) {
        return done(&tx, CHAT_ENOTFOUND);
    }
    m = cs_msg_at(st, c, index);
    if (offset > cs_mh(st, m)->len) {
        return done(&tx, CHAT_EINVAL);
    }
    if (text && msg_fill(st, m, offset, text) != CHAT_OK) {
        return done(&tx, CHAT_ENOMEM);
    }
    if (info) {
        msg_info(st, m, index, info);
    }
    return done(&tx, CHAT_OK);
}
