/* chat_store_ver.c - versions and branches in the shared store: the active
 * path of a conversation, the choice among siblings, select.
 *
 * A message's parent is recorded in its header as a distance back
 * (cs_msghdr_t.parent_back, see chat_store_layout.h), so dropping the oldest
 * messages never rewrites the others, and an image written before versions
 * existed (parent_back 0 everywhere) reads as one straight path. Among the
 * children of one parent exactly one lacks CHAT_MSG_ALT: the active path
 * starts at the chosen root and follows the chosen child. Choosing changes
 * the flags of two headers, undo-logged like every other change.
 */
#include "chat_store_int.h"

uint32_t cs_ver_leaf(const chat_store_t *st, const cs_conv_t *c)
{
    uint32_t cur = CHAT_MSG_NO_PARENT, i = 0, m;

    if (c->flags & CS_CONV_LINEAR) {
        return c->nmsgs ? c->nmsgs - 1 : CHAT_MSG_NO_PARENT;
    }
    /* children come after their parent: one pass from the oldest */
    for (m = c->first_msg; m != CS_NIL; m = cs_mh(st, m)->next_msg, i++) {
        const cs_msghdr_t *mh = cs_mh(st, m);
        if (!(mh->flags & CHAT_MSG_ALT) && cs_parent_of(mh, i) == cur) {
            cur = i;
        }
    }
    return cur;
}

uint32_t cs_ver_children(const chat_store_t *st, const cs_conv_t *c, uint32_t parent)
{
    uint32_t n = 0, i = 0, m;

    for (m = c->first_msg; m != CS_NIL; m = cs_mh(st, m)->next_msg, i++) {
        if (cs_parent_of(cs_mh(st, m), i) == parent) {
            n++;
        }
    }
    return n;
}

void cs_ver_choose(cs_tx_t *tx, cs_conv_t *c, uint32_t parent, uint32_t keep)
{
    chat_store_t *st = tx->st;
    uint32_t i = 0, m;

    for (m = c->first_msg; m != CS_NIL; m = cs_mh(st, m)->next_msg, i++) {
        cs_msghdr_t *mh = cs_mh(st, m);
        if (cs_parent_of(mh, i) != parent) {
            continue;
        }
        if (m == keep && (mh->flags & CHAT_MSG_ALT)) {
            cs_snap(tx, mh, sizeof(*mh));
            mh->flags &= ~CHAT_MSG_ALT;
        }
        else if (m != keep && !(mh->flags & CHAT_MSG_ALT)) {
            cs_snap(tx, mh, sizeof(*mh));
            mh->flags |= CHAT_MSG_ALT;
        }
    }
}

chat_status_t cs_shm_msg_select(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t index, uint64_t now_ms)
{
    cs_conv_t *c;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t m;

    if ((rc = cs_conv_lock_find(st, owner, id, &tx, &c)) != CHAT_OK) {
        return rc;
    }
    if (index >= c->nmsgs) {
        rc = CHAT_ENOTFOUND;
    }
    else if (c->state != CHAT_CONV_IDLE) {
        rc = CHAT_EBUSY; /* the answer being written belongs to the active path */
    }
    else {
        m = cs_msg_at(st, c, index);
        if (cs_mh(st, m)->flags & CHAT_MSG_ALT) {
            cs_ver_choose(&tx, c, cs_parent_of(cs_mh(st, m), index), m);
            cs_conv_touch(&tx, c, now_ms);
        }
    }
    cs_unlock(st, tx.lk);
    return rc;
}

int cs_ver_tail(const chat_store_t *st, const cs_conv_t *c, uint32_t max_msgs,
                size_t max_bytes, uint32_t *heads, uint32_t *idx)
{
    uint32_t want = cs_ver_leaf(st, c), i = c->nmsgs - 1, m, taken = 0;
    uint64_t total = 0;

    /* newest to oldest along the path; errors and refused commands are
     * skipped; the newest usable message is taken whatever its size */
    for (m = c->last_msg; m != CS_NIL && want != CHAT_MSG_NO_PARENT;
         m = cs_mh(st, m)->prev_msg, i--) {
        const cs_msghdr_t *mh = cs_mh(st, m);
        if (i != want) {
            continue;
        }
        want = cs_parent_of(mh, i);
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
        heads[taken] = m;
        idx[taken] = i;
        taken++;
    }
    return (int)taken;
}
