/* mod_chatbot shared store: a conversation's settings blob.
 *
 * The blob is a chain of CS_BLK_META blocks (CS_CAP_NEXT bytes of data
 * each) hung off the conversation slot (cs_conv_t.meta_blk, meta_len). Its
 * blocks count against the owner's quota (cs_owner_t.nblocks) but are not
 * part of the message chain (cs_conv_t.nblocks counts messages only). A set
 * fills fresh blocks nobody can see, then swaps them in under the shard's
 * undo log; the old chain goes back to the pool after the commit (a kill in
 * between leaks it until the next sweep, never shares it). */

#include "chat_store_int.h"

chat_status_t cs_shm_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, chat_buf_t *out)
{
    cs_conv_t *c;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t b, left;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    left = c->meta_len;
    if (left && chat_buf_reserve(out, left) != CHAT_OK) {
        cs_unlock(st, tx.lk);
        return CHAT_ENOMEM;
    }
    for (b = c->meta_blk; left > 0 && b < st->nblocks; b = cs_bh(st, b)->next) {
        uint32_t n = left < CS_CAP_NEXT ? left : CS_CAP_NEXT;
        chat_buf_append(out, cs_blk(st, b) + CS_BLK_HDR, n);
        left -= n;
    }
    cs_unlock(st, tx.lk);
    return CHAT_OK;
}

uint32_t cs_meta_unlink(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last)
{
    chat_store_t *st = tx->st;
    uint32_t k = cs_meta_blocks(c->meta_len), i, b;

    *first = *last = CS_NIL;
    if (k == 0) {
        return 0;
    }
    for (i = 1, b = c->meta_blk; i < k; i++) {
        b = cs_bh(st, b)->next;
    }
    *first = c->meta_blk;
    *last = b;
    cs_snap(tx, &c->meta_len, sizeof(c->meta_len));
    cs_snap(tx, &c->meta_blk, sizeof(c->meta_blk));
    c->meta_len = 0;
    c->meta_blk = 0;
    return k;
}

chat_status_t cs_shm_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, const char *data, size_t len,
                                   uint64_t now_ms)
{
    cs_conv_t *c;
    cs_owner_t *o;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t need, old, ofirst, olast, first = CS_NIL, last = CS_NIL, b, k;
    size_t off = 0;
    int auth, tries;

    (void)now_ms;
    if (len > CHAT_CONV_META_MAX || (!data && len)) {
        return len > CHAT_CONV_META_MAX ? CHAT_ETOOBIG : CHAT_EINVAL;
    }
    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    o = &st->owners[c->owner_ref];
    auth = (o->flags & CS_OWN_AUTH) != 0;
    need = cs_meta_blocks((uint32_t)len);
    old = cs_meta_blocks(c->meta_len);
    if (need > st->nblocks) {
        cs_unlock(st, tx.lk);
        return CHAT_EFULL;
    }
    if (need) {
        rc = CHAT_EFULL;
        for (tries = 0; tries < 4; tries++) {
            /* the old blob is given back after, so it counts as used */
            rc = cs_make_room(&tx, o, auth, c, CS_RES_BLOCKS, need);
            o = &st->owners[c->owner_ref];
            if (rc != CHAT_OK) {
                break;
            }
            if (cs_pool_take_blocks(st, need, auth, &first, &last)) {
                break;
            }
            rc = CHAT_EFULL;
        }
        if (rc != CHAT_OK) {
            cs_unlock(st, tx.lk);
            return rc;
        }
        /* fill the fresh chain: nobody else can see it yet */
        for (k = 0, b = first; k < need; k++, b = cs_bh(st, b)->next) {
            size_t n = len - off < CS_CAP_NEXT ? len - off : CS_CAP_NEXT;
            cs_bh(st, b)->kind = CS_BLK_META;
            memcpy(cs_blk(st, b) + CS_BLK_HDR, data + off, n);
            off += n;
        }
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    }
    /* swap it in */
    old = cs_meta_unlink(&tx, c, &ofirst, &olast);
    cs_snap(&tx, o, sizeof(*o));
    if (need) {
        cs_snap(&tx, cs_bh(st, last), sizeof(cs_blkhdr_t));
        cs_bh(st, last)->next = CS_NIL;
        c->meta_blk = first;
        c->meta_len = (uint32_t)len;
    }
    o->nblocks -= old <= o->nblocks ? old : o->nblocks;
    o->nblocks += need;
    cs_conv_changed(st, c);
    cs_tx_commit(&tx); /* the giver commits first */
    cs_unlock(st, tx.lk);
    if (old) {
        cs_pool_give_blocks(st, ofirst, olast, old, auth);
    }
    return CHAT_OK;
}

void cs_meta_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                      const cs_conv_t *sc, uint32_t *cursor)
{
    uint32_t k = cs_meta_blocks(sc->meta_len), first = *cursor, b, sb = sc->meta_blk;
    size_t off = 0, len = sc->meta_len;

    dc->meta_len = 0;
    dc->meta_blk = 0;
    if (k == 0) {
        return;
    }
    *cursor += k;
    for (b = first; b < first + k; b++) {
        size_t n = len - off < CS_CAP_NEXT ? len - off : CS_CAP_NEXT;
        cs_bh(dst, b)->kind = CS_BLK_META;
        cs_bh(dst, b)->next = b + 1 < first + k ? b + 1 : CS_NIL;
        memcpy(cs_blk(dst, b) + CS_BLK_HDR, cs_blk(src, sb) + CS_BLK_HDR, n);
        off += n;
        sb = cs_bh(src, sb)->next;
    }
    dc->meta_blk = first;
    dc->meta_len = sc->meta_len;
}
