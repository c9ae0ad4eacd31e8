/* chat_store_evict.c - per-identity quotas and making room in a full store.
 *
 * The rules (docs/storage.md explains them for operators):
 *  1. Quotas first. An identity never holds more than its class's quota of
 *     conversations and of arena bytes: at its quota it gives up its own
 *     least recently used idle conversation (and, for bytes, then the
 *     oldest messages of the conversation being written); if it has
 *     nothing of its own to give up, it gets CHAT_EQUOTA.
 *  2. Fairness. When the store is full, the victim is the least recently
 *     used idle conversation of an identity that holds at least as much of
 *     the scarce resource as the requester will after the request, or of
 *     the requester itself if nobody else qualifies. So nobody can push
 *     out a user who holds less than they do: a flood from one cookie or
 *     one account only ever recycles its own conversations.
 *  3. The division. An anonymous requester never evicts an authenticated
 *     identity. Anonymous identities may fill free space, but all of them
 *     together are entitled to anon_share_pct of the slots and of the
 *     arena only: while they hold more, an authenticated requester takes
 *     back the difference from them, least recently used first, whatever
 *     their size. Otherwise an authenticated requester takes from
 *     anonymous identities first, under the fairness rule.
 *
 * A victim search reads the packed slot index without any lock, keeps the
 * best few candidates, then takes each candidate's shard lock (waiting
 * only for a shard above the requester's, trying any other) and checks
 * again before evicting.
 */
#include <inttypes.h>
#include <string.h>

#include "chat_store_int.h"

const chat_quota_t *cs_quota(const chat_store_t *st, int auth)
{
    return auth ? &st->policy.auth : &st->policy.anon;
}

void cs_conv_release(cs_tx_t *tx, cs_conv_t *c)
{
    chat_store_t *st = tx->st;
    uint32_t idx = cs_conv_index(st, c), s = cs_shard_of(st, c->owner), first, last, n;
    uint32_t mfirst, mlast, mn;
    cs_owner_t *o = &st->owners[c->owner_ref];
    cs_slotinfo_t *si = &st->slots[idx];
    int auth = (o->flags & CS_OWN_AUTH) != 0;

    n = cs_msg_unlink_all(tx, c, &first, &last);
    mn = cs_meta_unlink(tx, c, &mfirst, &mlast);
    cs_snap(tx, o, sizeof(*o));
    o->nblocks -= n + mn <= o->nblocks ? n + mn : o->nblocks;
    cs_snap(tx, c, sizeof(*c));
    /* stale ids stop matching before anything else changes */
    CS_STORE64(&c->tag, 0);
    CS_STORE64(&c->gen_token, 0);
    cs_conv_changed(st, c);
    /* off the owner's list; the record goes with its last conversation */
    cs_owner_list_unlink(tx, o, c);
    o->nconv--;
    if (o->nconv == 0) {
        cs_snap(tx, &st->shards[s], sizeof(cs_shard_t));
        o->flags = 0;
        o->head = o->tail = CS_NIL;
        st->shards[s].nowners--;
    }
    cs_snap(tx, si, sizeof(*si));
    __atomic_store_n(&si->flags, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&si->owner_ref, CS_NIL, __ATOMIC_RELAXED);
    c->in_use = 0;
    c->state = CHAT_CONV_IDLE;
    c->gen_proc = 0;
    c->owner_ref = CS_NIL;
    c->own_prev = c->own_next = CS_NIL;
    /* the giver commits first: a crash from here on leaks, never shares */
    cs_tx_commit(tx);
    if (n) {
        cs_pool_give_blocks(st, first, last, n, auth);
    }
    if (mn) {
        cs_pool_give_blocks(st, mfirst, mlast, mn, auth);
    }
    cs_pool_give_slot(st, idx, auth);
}

void cs_conv_evict(cs_tx_t *tx, cs_conv_t *c, const char *why)
{
    chat_store_t *st = tx->st;
    char id[CHAT_CONV_ID_LEN + 1];
    cs_user_t *u;

    cs_conv_format_id(st, c, id);
    chat_log(CHAT_LOG_NOTICE,
             "chatbot store: evicted conversation %s (bot %s, %" PRIu32
             " messages, %" PRIu64 " bytes) to make room%s",
             id, c->bot, c->nmsgs, c->bytes, why);
    CS_ADD64((uint64_t *)&st->hdr->gauges[CHAT_G_EVICTIONS], 1);
    /* the owner's session list changed */
    u = cs_user_find(st, c->owner);
    if (u) {
        CS_STORE64(&u->seq, cs_next_seq(st));
        CS_STORE64(&st->hdr->user_events, CS_LOAD64(&u->seq));
    }
    cs_conv_release(tx, c);
}

/* o's least recently touched idle conversation other than self. */
static cs_conv_t *own_victim(chat_store_t *st, const cs_owner_t *o, const cs_conv_t *self)
{
    uint32_t i;

    for (i = o ? o->tail : CS_NIL; i != CS_NIL; i = st->convs[i].own_prev) {
        cs_conv_t *c = &st->convs[i];
        if (c != self && c->state == CHAT_CONV_IDLE) {
            return c;
        }
    }
    return NULL;
}

static uint64_t usage(const cs_owner_t *o, int res)
{
    if (!o) {
        return 0;
    }
    return res == CS_RES_SLOTS ? CS_PEEK32(&o->nconv) : CS_PEEK64(&o->nblocks);
}

/* Free res, before anything is evicted. */
static uint64_t available(chat_store_t *st, int res)
{
    const cs_pool_t *p = &st->hdr->pool;

    if (res == CS_RES_SLOTS) {
        return st->l.max_conversations - CS_PEEK32(&p->nconv);
    }
    return CS_PEEK32(&p->blk_nfree);
}

/* 1 if anonymous identities hold more res than their share. */
static int anon_over_share(chat_store_t *st, int res)
{
    const cs_pool_t *p = &st->hdr->pool;
    uint64_t total, used;

    if (st->policy.anon_share_pct >= 100) {
        return 0;
    }
    if (res == CS_RES_SLOTS) {
        total = st->l.max_conversations;
        used = CS_PEEK32(&p->anon_convs);
    }
    else {
        total = st->nblocks;
        used = CS_PEEK64(&p->anon_blocks);
    }
    return used > total * st->policy.anon_share_pct / 100;
}

typedef struct {
    uint32_t slot;
    uint32_t pref; /* lowest first, then least recently used */
    uint64_t updated;
    uint64_t tag;
} cand_t;

static int cand_before(const cand_t *a, const cand_t *b)
{
    if (a->pref != b->pref) {
        return a->pref < b->pref;
    }
    if (a->updated != b->updated) {
        return a->updated < b->updated;
    }
    return a->slot < b->slot;
}

/* Scans the slot index for eligible victims (see the rules above): fills
 * up to CS_VICTIMS candidates, best first, and *reclaim with what all the
 * eligible ones together would free. */
static int pick(chat_store_t *st, const cs_owner_t *o, int auth, const cs_conv_t *self,
                int res, uint64_t want_usage, cand_t *out, uint64_t *reclaim)
{
    uint32_t nc = st->l.max_conversations, nown = st->nshards * st->owners_per_shard;
    uint32_t i, self_i = self ? cs_conv_index(st, self) : CS_NIL;
    int n = 0, k, reclaim_anon = auth && anon_over_share(st, res);

    *reclaim = 0;
    for (i = 0; i < nc; i++) {
        const cs_slotinfo_t *si = &st->slots[i];
        uint32_t flags = CS_PEEK32(&si->flags), ref;
        const cs_owner_t *vo;
        cand_t cd;
        if ((flags & (CS_SI_USED | CS_SI_IDLE)) != (CS_SI_USED | CS_SI_IDLE) ||
            i == self_i) {
            continue;
        }
        if (!auth && (flags & CS_SI_AUTH)) {
            continue; /* never an authenticated identity for an anonymous one */
        }
        ref = CS_PEEK32(&si->owner_ref);
        if (ref >= nown) {
            continue;
        }
        vo = &st->owners[ref];
        if (vo != o && usage(vo, res) < want_usage &&
            !(reclaim_anon && !(flags & CS_SI_AUTH))) {
            continue; /* holds less than the requester will: protected */
        }
        *reclaim += res == CS_RES_SLOTS
                        ? 1
                        : CS_PEEK32(&st->convs[i].nblocks) +
                              cs_meta_blocks(CS_PEEK32(&st->convs[i].meta_len));
        cd.slot = i;
        /* anonymous first for an authenticated requester; anyone who holds
         * more before the requester's own */
        cd.pref = ((auth && !(flags & CS_SI_AUTH)) ? 0u : 2u) + (vo == o ? 1u : 0u);
        cd.updated = CS_PEEK64(&si->updated_ms);
        cd.tag = CS_LOAD64(&st->convs[i].tag);
        if (n < CS_VICTIMS) {
            n++;
        }
        else if (!cand_before(&cd, &out[n - 1])) {
            continue;
        }
        for (k = n - 1; k > 0 && cand_before(&cd, &out[k - 1]); k--) {
            out[k] = out[k - 1];
        }
        out[k] = cd;
    }
    return n;
}

/* Takes the victim's shard and evicts it if it is still what the search
 * saw. 1 if evicted. */
static int evict_candidate(cs_tx_t *tx, const cs_owner_t *o, int auth, const cand_t *cd,
                           int res, uint64_t want_usage)
{
    chat_store_t *st = tx->st;
    cs_conv_t *v = &st->convs[cd->slot];
    uint8_t key[20];
    uint32_t vs, my = tx->lk->index;
    cs_lock_t *vlk;
    cs_tx_t vtx;
    int ok = 0;

    memcpy(key, v->owner, sizeof(key));
    vs = cs_shard_of(st, key);
    if (vs == my) {
        vtx = *tx;
    }
    else {
        vlk = cs_shard_lock(st, vs);
        /* wait only for a higher shard than ours: no cycle of waits */
        if (vs > my ? cs_lock(st, vlk) != CHAT_OK : !cs_trylock(st, vlk)) {
            return 0;
        }
        cs_tx_begin(&vtx, st, vlk);
    }
    if (v->in_use && v->tag == cd->tag && memcmp(v->owner, key, 20) == 0 &&
        v->state == CHAT_CONV_IDLE && v->owner_ref != CS_NIL) {
        const cs_owner_t *vo = &st->owners[v->owner_ref];
        int vauth = (vo->flags & CS_OWN_AUTH) != 0;
        if ((auth || !vauth) && (vo == o || usage(vo, res) >= want_usage ||
                                 (auth && !vauth && anon_over_share(st, res)))) {
            if (vs == my) {
                cs_tx_commit(tx); /* ours is consistent here: keep it */
            }
            cs_conv_evict(&vtx, v, vo == o ? " (its owner's own)" : "");
            ok = 1;
        }
    }
    if (vs != my) {
        cs_unlock(st, vtx.lk);
    }
    else {
        tx->nsnap = 0;
    }
    return ok;
}

chat_status_t cs_make_room(cs_tx_t *tx, cs_owner_t *o, int auth, cs_conv_t *c, int res,
                           uint64_t need)
{
    chat_store_t *st = tx->st;
    const chat_quota_t *q = cs_quota(st, auth);
    uint8_t key[20];
    int rounds, first = 1;

    if (o) {
        memcpy(key, o->key, sizeof(key));
    }
    /* 1. the identity's own quota */
    if (res == CS_RES_SLOTS && q->conversations) {
        while (o && o->nconv + need > q->conversations) {
            cs_conv_t *v = own_victim(st, o, c);
            if (!v) {
                return CHAT_EQUOTA;
            }
            cs_tx_commit(tx);
            cs_conv_evict(tx, v, " (its owner reached the conversation quota)");
            o = cs_owner_find(st, key);
        }
    }
    if (res == CS_RES_BLOCKS && q->history_bytes && c) {
        uint64_t qb = q->history_bytes / CS_BLOCK;
        if (need > qb) {
            return CHAT_EQUOTA;
        }
        while (o && o->nblocks + need > qb) {
            cs_conv_t *v = own_victim(st, o, c);
            cs_tx_commit(tx);
            if (v) {
                cs_conv_evict(tx, v, " (its owner reached the history quota)");
            }
            else if (c->nmsgs > 1) {
                cs_msg_drop_oldest(tx, c, o, auth);
            }
            else {
                return CHAT_EQUOTA;
            }
            o = cs_owner_find(st, key);
        }
    }
    /* 2. the store, or the anonymous share */
    for (rounds = 0; rounds < 64; rounds++) {
        cand_t cand[CS_VICTIMS];
        uint64_t reclaim, have = available(st, res), own = 0;
        int n, k, done = 0;
        if (have >= need) {
            return CHAT_OK;
        }
        n = pick(st, o, auth, c, res, usage(o, res) + need, cand, &reclaim);
        if (res == CS_RES_BLOCKS && c && c->nmsgs > 1) {
            own = c->nblocks - cs_blocks_for(cs_mh(st, c->last_msg)->len);
        }
        if (first && have + reclaim + own < need) {
            return CHAT_EFULL; /* hopeless: destroy nothing */
        }
        first = 0;
        for (k = 0; k < n && !done; k++) {
            done = evict_candidate(tx, o, auth, &cand[k], res, usage(o, res) + need);
        }
        if (!done) {
            if (own) {
                cs_tx_commit(tx);
                cs_msg_drop_oldest(tx, c, o, auth);
                continue;
            }
            if (n == 0) {
                return CHAT_EFULL;
            }
        }
        if (o) {
            o = cs_owner_find(st, key);
        }
    }
    return available(st, res) >= need ? CHAT_OK : CHAT_EFULL;
}
