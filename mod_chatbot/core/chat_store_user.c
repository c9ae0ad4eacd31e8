/* chat_store_user.c - the user table of the shared store: an entry per
 * identity with its rate-limit and creation buckets and change counter.
 *
 * An identity's entry is under the lock of its shard, like its
 * conversations (chat_store_conv.c).
 */
#include <string.h>

#include "chat_store_int.h"

static void user_range(const chat_store_t *st, uint32_t s, uint32_t *u0, uint32_t *un)
{
    uint64_t a = (uint64_t)s * st->l.max_users / st->nshards;
    uint64_t b = (uint64_t)(s + 1) * st->l.max_users / st->nshards;
    *u0 = (uint32_t)a;
    *un = (uint32_t)(b - a);
}

cs_user_t *cs_user_find(chat_store_t *st, const uint8_t *owner)
{
    uint32_t u0, un, home, k;

    user_range(st, cs_shard_of(st, owner), &u0, &un);
    home = cs_owner_hash(owner, 4) % un;
    for (k = 0; k < CS_WINDOW && k < un; k++) {
        cs_user_t *u = &st->users[u0 + (home + k) % un];
        if ((CS_LOAD32(&u->flags) & CS_USER_USED) && memcmp(u->owner, owner, 20) == 0) {
            return u;
        }
    }
    return NULL;
}

cs_user_t *cs_user_get(cs_tx_t *tx, const uint8_t *owner, uint64_t seen_ms, int force)
{
    chat_store_t *st = tx->st;
    uint32_t s = cs_shard_of(st, owner), u0, un, home, k;
    cs_user_t *u = cs_user_find(st, owner), *victim = NULL;
    int fresh = 0;

    if (u) {
        if (seen_ms > u->last_seen_ms) {
            cs_snap(tx, u, sizeof(*u));
            u->last_seen_ms = seen_ms;
        }
        return u;
    }
    user_range(st, s, &u0, &un);
    home = cs_owner_hash(owner, 4) % un;
    for (k = 0; k < CS_WINDOW && k < un; k++) {
        cs_user_t *e = &st->users[u0 + (home + k) % un];
        if (!(e->flags & CS_USER_USED)) {
            victim = e;
            fresh = 1;
            break;
        }
        if (!victim || e->last_seen_ms < victim->last_seen_ms) {
            victim = e;
        }
    }
    if (!fresh && !force && victim->last_seen_ms > seen_ms) {
        return NULL;
    }
    cs_snap(tx, victim, sizeof(*victim));
    if (fresh) {
        cs_snap(tx, &st->shards[s], sizeof(cs_shard_t));
        st->shards[s].nusers++;
    }
    /* the new entry's seq comes from the global clock, so a tab that saw
     * the replaced entry's value still notices a change */
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->owner, owner, 20);
    victim->last_seen_ms = seen_ms;
    CS_STORE64(&victim->seq, cs_next_seq(st));
    CS_STORE32(&victim->flags, CS_USER_USED);
    return victim;
}

chat_status_t cs_shm_rate_take(chat_store_t *st, const chat_owner_t *owner,
                               const chat_rate_t *rate, uint64_t now_ms,
                               int64_t *retry_after_ms)
{
    cs_user_t *u;
    cs_tx_t tx;
    chat_status_t rc;

    if (retry_after_ms) {
        *retry_after_ms = 0;
    }
    if (!st || !owner || !rate) {
        return CHAT_EINVAL;
    }
    if (rate->count == 0) {
        return CHAT_OK; /* unlimited: no need to track the user */
    }
    cs_note_now(st, now_ms);
    if (cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return CHAT_OK; /* fail open: logged */
    }
    u = cs_user_get(&tx, owner->b, now_ms, 1);
    cs_snap(&tx, u, sizeof(*u));
    if (!(u->flags & CS_USER_BUCKET)) {
        chat_bucket_init(&u->bucket, rate, now_ms);
        u->flags |= CS_USER_BUCKET;
    }
    rc = chat_bucket_take(&u->bucket, rate, now_ms, retry_after_ms);
    cs_tx_unlock(&tx);
    return rc;
}

void cs_shm_user_bump(chat_store_t *st, const chat_owner_t *owner)
{
    cs_user_t *u;
    cs_tx_t tx;
    uint64_t seq;

    if (!st || !owner) {
        return;
    }
    u = cs_user_find(st, owner->b);
    if (!u) {
        if (cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
            return;
        }
        u = cs_user_get(&tx, owner->b, cs_now(st), 1);
        seq = cs_next_seq(st);
        CS_STORE64(&u->seq, seq);
        cs_tx_unlock(&tx);
    }
    else {
        /* an existing entry: the counter is atomic, no lock needed (if the
         * entry is being replaced right now, the extra bump is harmless) */
        seq = cs_next_seq(st);
        CS_STORE64(&u->seq, seq);
    }
    CS_STORE64(&st->hdr->user_events, seq);
}

uint64_t cs_shm_events(chat_store_t *st)
{
    return st ? CS_LOAD64(&st->hdr->user_events) : 0;
}

uint64_t cs_shm_user_seq(chat_store_t *st, const chat_owner_t *owner)
{
    cs_user_t *u;

    if (!st || !owner) {
        return 0;
    }
    u = cs_user_find(st, owner->b);
    return u ? CS_LOAD64(&u->seq) : 0;
}
