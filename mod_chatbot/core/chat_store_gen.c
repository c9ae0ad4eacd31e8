/* chat_store_gen.c - generation ownership in the shared store: which
 * process generates a conversation's answer (token, state, stop requests),
 * and what happens when that process dies.
 */
#include <string.h>

#include "chat_store_int.h"

static int gen_state_ok(uint32_t state)
{
    return state == CHAT_CONV_QUEUED || state == CHAT_CONV_GENERATING;
}

void cs_gen_abandon(cs_tx_t *tx, cs_conv_t *c)
{
    chat_store_t *st = tx->st;
    char id[CHAT_CONV_ID_LEN + 1];

    cs_snap(tx, c, sizeof(*c));
    if (c->last_msg != CS_NIL) {
        cs_msghdr_t *mh = cs_mh(st, c->last_msg);
        cs_snap(tx, mh, sizeof(*mh));
        if (((mh->flags & CHAT_MSG_STREAMING) || mh->role == CHAT_ROLE_ASSISTANT) &&
            !(mh->flags & CHAT_MSG_COMPLETE)) {
            mh->flags |= CHAT_MSG_INTERRUPTED;
        }
        mh->flags &= ~CHAT_MSG_STREAMING;
    }
    c->state = CHAT_CONV_IDLE;
    c->queue_position = 0;
    c->gen_proc = 0;
    CS_STORE64(&c->gen_token, 0);
    CS_STORE32(&c->stop_requested, 0);
    cs_slot_update(tx, c);
    cs_conv_changed(st, c);
    cs_conv_format_id(st, c, id);
    chat_log(CHAT_LOG_NOTICE,
             "chatbot store: conversation %s: the process generating its answer died; "
             "the answer is kept, marked interrupted",
             id);
}

int cs_conv_reap_dead(chat_store_t *st)
{
    uint32_t i;
    int n = 0;

    for (i = 0; i < st->l.max_conversations; i++) {
        cs_conv_t *c = &st->convs[i];
        uint32_t flags = CS_PEEK32(&st->slots[i].flags);
        uint64_t gp, tag;
        uint8_t owner[20];
        cs_tx_t tx;
        if ((flags & (CS_SI_USED | CS_SI_IDLE)) != CS_SI_USED) {
            continue;
        }
        gp = CS_PEEK64(&c->gen_proc);
        tag = CS_LOAD64(&c->tag);
        if (!gp || !tag || cs_proc_alive(st, gp)) {
            continue;
        }
        memcpy(owner, c->owner, sizeof(owner));
        if (cs_lock_owner(st, owner, &tx) != CHAT_OK) {
            continue;
        }
        if (c->in_use && c->tag == tag && memcmp(c->owner, owner, 20) == 0 &&
            c->state != CHAT_CONV_IDLE && c->gen_proc == gp) {
            cs_gen_abandon(&tx, c);
            n++;
        }
        cs_tx_unlock(&tx);
    }
    return n;
}

chat_status_t cs_shm_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint64_t token, uint32_t state,
                               uint64_t now_ms)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (cs_conv_lock_find(st, owner, id, &tx, &c) != CHAT_OK) {
        return CHAT_ENOTFOUND; /* or the shard's lock unusable (logged) */
    }
    if (token == 0 || !gen_state_ok(state)) {
        cs_tx_unlock(&tx);
        return CHAT_EINVAL;
    }
    if (c->gen_token != 0 && c->gen_token != token) {
        if (cs_proc_alive(st, c->gen_proc)) {
            cs_tx_unlock(&tx);
            return CHAT_EBUSY;
        }
        /* its process died: take the conversation over */
        cs_gen_abandon(&tx, c);
    }
    cs_snap(&tx, c, sizeof(*c));
    if (c->state == CHAT_CONV_IDLE) {
        CS_STORE32(&c->stop_requested, 0);
        CS_STORE64(&c->gen_token, token);
        c->gen_proc = st->proc_tag;
    }
    c->state = state;
    c->queue_position = 0;
    cs_conv_touch(&tx, c, now_ms);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

/* The conversation generated with token, its owner's shard locked. */
static cs_conv_t *find_generating(chat_store_t *st, const char *id, uint64_t token,
                                  cs_tx_t *tx)
{
    cs_conv_t *c;

    if (!st || token == 0 || !(c = cs_conv_find_locked(st, id, tx))) {
        return NULL;
    }
    if (c->gen_token != token) {
        cs_tx_unlock(tx);
        return NULL;
    }
    return c;
}

chat_status_t cs_shm_gen_state(chat_store_t *st, const char *id, uint64_t token,
                               uint32_t state, int32_t queue_position)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (!(c = find_generating(st, id, token, &tx))) {
        return CHAT_ENOTFOUND;
    }
    if (!gen_state_ok(state)) {
        cs_tx_unlock(&tx);
        return CHAT_EINVAL;
    }
    cs_snap(&tx, c, sizeof(*c));
    c->state = state;
    c->queue_position =
        (state == CHAT_CONV_QUEUED && queue_position > 0) ? queue_position : 0;
    cs_conv_changed(st, c);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

chat_status_t cs_shm_gen_end(chat_store_t *st, const char *id, uint64_t token,
                             uint64_t now_ms)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (!(c = find_generating(st, id, token, &tx))) {
        return CHAT_ENOTFOUND;
    }
    cs_snap(&tx, c, sizeof(*c));
    c->state = CHAT_CONV_IDLE;
    c->queue_position = 0;
    c->gen_proc = 0;
    CS_STORE64(&c->gen_token, 0);
    CS_STORE32(&c->stop_requested, 0);
    cs_conv_touch(&tx, c, now_ms);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

chat_status_t cs_shm_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (cs_conv_lock_find(st, owner, id, &tx, &c) != CHAT_OK) {
        return CHAT_ENOTFOUND; /* or the shard's lock unusable (logged) */
    }
    if (c->state != CHAT_CONV_IDLE) {
        CS_STORE32(&c->stop_requested, 1);
        cs_conv_changed(st, c);
    }
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

int cs_shm_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token)
{
    cs_conv_t *c = cs_conv_peek(st, id);

    /* a holder that no longer holds the conversation must stop too */
    if (!c || token == 0 || CS_LOAD64(&c->gen_token) != token) {
        return 1;
    }
    return CS_LOAD32(&c->stop_requested) != 0;
}
