/* chat_store_check.c - the full consistency check of a store region (what
 * attach and load run, and what the fuzzer drives), the sweep that gives
 * back what a dead holder leaked, and the free-list rebuild used when the
 * region is new.
 *
 * The check trusts nothing: every index is range-checked before use, every
 * chain is walked with a visited bitmap (so a cycle ends the walk), every
 * count is recomputed and compared. A leak - a block or slot that is
 * neither free nor used, which a holder killed between the pool's commit
 * and its own leaves behind - is not an error: it is counted, and
 * cs_sweep returns it.
 */
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

#define BIT_SET(m, i) ((m)[(i) >> 3] |= (uint8_t)(1u << ((i)&7)))
#define BIT_GET(m, i) (((m)[(i) >> 3] >> ((i)&7)) & 1u)

#define SEEN_OWNER 1u /* slot found on its owner's list */
#define SEEN_FREE 2u  /* slot found on the free list */

typedef struct {
    uint8_t *bmap; /* blocks: used by a chain or on the free list */
    uint8_t *smap; /* slots: SEEN_* */
    uint64_t leaked_blocks;
    uint32_t leaked_slots;
    uint32_t in_use;
    uint32_t anon_convs;
    uint64_t anon_blocks;
} marks_t;

static void user_range(const chat_store_t *st, uint32_t s, uint32_t *u0, uint32_t *un)
{
    uint64_t a = (uint64_t)s * st->l.max_users / st->nshards;
    uint64_t b = (uint64_t)(s + 1) * st->l.max_users / st->nshards;
    *u0 = (uint32_t)a;
    *un = (uint32_t)(b - a);
}

/* Walks the chain of c, marking its blocks; checks every count. */
static int check_chain(const chat_store_t *st, const cs_conv_t *c, uint8_t *bmap)
{
    uint32_t nb = st->nblocks, b, prevhead = CS_NIL, lastb = CS_NIL, n = 0;
    uint64_t bytes = 0, blocks = 0;

    if (c->nmsgs == 0) {
        return c->first_msg == CS_NIL && c->last_msg == CS_NIL && c->last_blk == CS_NIL &&
               c->nblocks == 0 && c->bytes == 0;
    }
    for (b = c->first_msg; b != CS_NIL;) {
        const cs_msghdr_t *mh;
        uint64_t k, cnt = 1;
        uint32_t nx;

        if (n >= c->nmsgs || b >= nb || BIT_GET(bmap, b) ||
            cs_bh(st, b)->kind != CS_BLK_HEAD) {
            return 0;
        }
        mh = cs_mh(st, b);
        if (mh->prev_msg != prevhead || mh->role > CHAT_ROLE_TOOL ||
            (mh->flags & ~CS_MSG_FLAGS) || mh->len > st->l.max_message_bytes) {
            return 0;
        }
        /* a linear conversation is one straight path of chosen messages */
        if ((c->flags & CS_CONV_LINEAR) &&
            ((mh->flags & CHAT_MSG_ALT) ||
             cs_parent_of(mh, n) != (n ? n - 1 : CHAT_MSG_NO_PARENT))) {
            return 0;
        }
        BIT_SET(bmap, b);
        k = cs_blocks_for(mh->len);
        lastb = b;
        for (nx = cs_bh(st, b)->next; cnt < k; nx = cs_bh(st, nx)->next) {
            if (nx >= nb || BIT_GET(bmap, nx) || cs_bh(st, nx)->kind != CS_BLK_CONT) {
                return 0;
            }
            BIT_SET(bmap, nx);
            lastb = nx;
            cnt++;
        }
        if (mh->next_msg != nx) {
            return 0;
        }
        bytes += mh->len;
        blocks += k;
        n++;
        prevhead = b;
        b = nx;
    }
    return n == c->nmsgs && prevhead == c->last_msg && lastb == c->last_blk &&
           bytes == c->bytes && blocks == c->nblocks;
}

/* Walks the settings blob of c, marking its blocks. */
static int check_meta(const chat_store_t *st, const cs_conv_t *c, uint8_t *bmap)
{
    uint32_t nb = st->nblocks, k = cs_meta_blocks(c->meta_len), i, b = c->meta_blk;

    if (c->meta_len > CHAT_CONV_META_MAX) {
        return 0;
    }
    for (i = 0; i < k; i++) {
        if (b >= nb || BIT_GET(bmap, b) || cs_bh(st, b)->kind != CS_BLK_META) {
            return 0;
        }
        BIT_SET(bmap, b);
        b = cs_bh(st, b)->next;
    }
    return k == 0 || b == CS_NIL;
}

static int check_users(const chat_store_t *st)
{
    const int64_t maxtok = (int64_t)UINT32_MAX * 1000000;
    uint32_t s, i, k;

    for (s = 0; s < st->nshards; s++) {
        uint32_t u0, un, win, n = 0;
        user_range(st, s, &u0, &un);
        win = un < CS_WINDOW ? un : CS_WINDOW;
        for (i = 0; i < un; i++) {
            const cs_user_t *u = &st->users[u0 + i];
            uint32_t home;
            int inwin = 0;
            if (u->flags & ~CS_USER_FLAGS) {
                return 0;
            }
            if (!(u->flags & CS_USER_USED)) {
                continue;
            }
            if (u->bucket.utokens < 0 || u->bucket.utokens > maxtok ||
                u->create.utokens < 0 || u->create.utokens > maxtok ||
                cs_shard_of(st, u->owner) != s) {
                return 0;
            }
            home = cs_owner_hash(u->owner, 4) % un;
            for (k = 0; k < win; k++) {
                uint32_t j = (home + k) % un;
                const cs_user_t *o = &st->users[u0 + j];
                if (j == i) {
                    inwin = 1;
                }
                else if ((o->flags & CS_USER_USED) &&
                         memcmp(o->owner, u->owner, 20) == 0) {
                    return 0; /* duplicate key */
                }
            }
            if (!inwin) {
                return 0;
            }
            n++;
        }
        if (n != st->shards[s].nusers) {
            return 0;
        }
    }
    return 1;
}

/* Owner records and their lists; marks SEEN_OWNER on their slots. */
static int check_owners(const chat_store_t *st, marks_t *m)
{
    uint32_t P = st->owners_per_shard, win = P < CS_OWNER_WINDOW ? P : CS_OWNER_WINDOW;
    uint32_t nc = st->l.max_conversations, s, i, k;

    for (s = 0; s < st->nshards; s++) {
        uint32_t base = s * P, n = 0;
        for (i = 0; i < P; i++) {
            const cs_owner_t *o = &st->owners[base + i];
            uint32_t home, c, prev = CS_NIL, cnt = 0;
            uint64_t blocks = 0;
            int inwin = 0;
            if (o->flags & ~(CS_OWN_USED | CS_OWN_AUTH)) {
                return 0;
            }
            if (!(o->flags & CS_OWN_USED)) {
                continue;
            }
            if (cs_shard_of(st, o->key) != s || o->nconv == 0 || o->nconv > nc) {
                return 0;
            }
            home = cs_owner_hash(o->key, 12) % P;
            for (k = 0; k < win; k++) {
                uint32_t j = (home + k) % P;
                const cs_owner_t *x = &st->owners[base + j];
                if (j == i) {
                    inwin = 1;
                }
                else if ((x->flags & CS_OWN_USED) && memcmp(x->key, o->key, 20) == 0) {
                    return 0;
                }
            }
            if (!inwin) {
                return 0;
            }
            for (c = o->head; c != CS_NIL; c = st->convs[c].own_next) {
                const cs_conv_t *cv;
                if (c >= nc || cnt >= o->nconv || (m->smap[c] & SEEN_OWNER)) {
                    return 0;
                }
                cv = &st->convs[c];
                if (cv->in_use != 1 || cv->owner_ref != base + i ||
                    memcmp(cv->owner, o->key, 20) != 0 || cv->own_prev != prev) {
                    return 0;
                }
                m->smap[c] |= SEEN_OWNER;
                blocks += cv->nblocks + cs_meta_blocks(cv->meta_len);
                prev = c;
                cnt++;
            }
            if (cnt != o->nconv || prev != o->tail || blocks != o->nblocks) {
                return 0;
            }
            if (!(o->flags & CS_OWN_AUTH)) {
                m->anon_convs += cnt;
                m->anon_blocks += blocks;
            }
            n++;
        }
        if (n != st->shards[s].nowners) {
            return 0;
        }
    }
    return 1;
}

static int check_convs(const chat_store_t *st, marks_t *m)
{
    const cs_pool_t *pool = &st->hdr->pool;
    uint32_t nc = st->l.max_conversations, nb = st->nblocks, i, n = 0;
    uint64_t nfree = 0, used = 0;

    for (i = 0; i < nc; i++) {
        const cs_conv_t *c = &st->convs[i];
        const cs_slotinfo_t *si = &st->slots[i];
        uint32_t want;
        if (c->in_use > 1 || (c->in_use != 0) != (c->tag != 0)) {
            return 0;
        }
        if (!c->in_use) {
            if (si->flags != 0) {
                return 0;
            }
            continue;
        }
        if (!(m->smap[i] & SEEN_OWNER) || c->state > CHAT_CONV_GENERATING ||
            (c->state == CHAT_CONV_IDLE) != (c->gen_token == 0) ||
            (c->flags & ~(CS_CONV_FLAGS | CS_CONV_LINEAR)) || c->queue_position < 0 ||
            c->stop_requested > 1 || c->nmsgs > st->l.max_messages || c->nblocks > nb ||
            !cs_strok(c->bot, CHAT_BOT_NAME_MAX + 1) || !c->bot[0] ||
            !cs_strok(c->title, CHAT_TITLE_MAX + 1)) {
            return 0;
        }
        want = CS_SI_USED | (c->state == CHAT_CONV_IDLE ? CS_SI_IDLE : 0) |
               ((st->owners[c->owner_ref].flags & CS_OWN_AUTH) ? CS_SI_AUTH : 0);
        if (si->flags != want || si->owner_ref != c->owner_ref ||
            si->updated_ms != c->updated_ms) {
            return 0;
        }
        if (!check_chain(st, c, m->bmap) || !check_meta(st, c, m->bmap)) {
            return 0;
        }
        used += c->nblocks + cs_meta_blocks(c->meta_len);
        n++;
    }
    m->in_use = n;
    /* the free slot list: free slots only, each once */
    for (i = pool->conv_free; i != CS_NIL; i = st->convs[i].own_next) {
        if (i >= nc || st->convs[i].in_use || (m->smap[i] & SEEN_FREE)) {
            return 0;
        }
        m->smap[i] |= SEEN_FREE;
    }
    for (i = 0; i < nc; i++) {
        if (!st->convs[i].in_use && !(m->smap[i] & SEEN_FREE)) {
            m->leaked_slots++;
        }
    }
    if (pool->nconv != n + m->leaked_slots) {
        return 0;
    }
    /* the free block list */
    if (pool->blk_nfree > nb) {
        return 0;
    }
    for (i = pool->blk_free; i != CS_NIL; i = cs_bh(st, i)->next) {
        if (i >= nb || nfree >= pool->blk_nfree || BIT_GET(m->bmap, i)) {
            return 0;
        }
        BIT_SET(m->bmap, i);
        nfree++;
    }
    if (nfree != pool->blk_nfree || used + nfree > nb) {
        return 0;
    }
    m->leaked_blocks = nb - used - nfree;
    /* class usage is exact unless something leaked (then the sweep
     * recounts it) */
    if (!m->leaked_slots && !m->leaked_blocks &&
        (pool->anon_convs != m->anon_convs || pool->anon_blocks != m->anon_blocks)) {
        return 0;
    }
    return 1;
}

static int check_backends(const chat_store_t *st)
{
    const cs_hdr_t *h = st->hdr;
    uint32_t i, k;

    if (h->nbackends > st->l.max_backends) {
        return 0;
    }
    for (i = 0; i < st->l.max_backends; i++) {
        const cs_backend_t *b = &st->backends[i];
        const cs_holder_t *ho = &st->holders[(size_t)i * st->l.max_active];
        const cs_waiter_t *q = &st->queue[(size_t)i * st->l.queue_cap];

        if (b->used != (i < h->nbackends ? 1u : 0u) || b->nactive > st->l.max_active ||
            b->q_count > st->l.queue_cap || b->q_head >= st->l.queue_cap) {
            return 0;
        }
        for (k = 0; k < st->l.max_active; k++) {
            if ((ho[k].ticket != 0) != (k < b->nactive)) {
                return 0;
            }
        }
        for (k = 0; k < b->q_count; k++) {
            if (q[(b->q_head + k) % st->l.queue_cap].ticket == 0) {
                return 0;
            }
        }
        if (!b->used) {
            if (b->nactive || b->q_count) {
                return 0;
            }
            continue;
        }
        if (!cs_strok(b->name, CHAT_BOT_NAME_MAX + 1) || !b->name[0] ||
            !cs_strok(b->version, sizeof(b->version)) ||
            !cs_strok(b->detail, sizeof(b->detail)) || b->breaker < CHAT_BREAKER_CLOSED ||
            b->breaker > CHAT_BREAKER_HALF_OPEN || b->healthy < -1 || b->healthy > 1) {
            return 0;
        }
    }
    return 1;
}

static int check_metrics(const chat_store_t *st)
{
    const cs_hdr_t *h = st->hdr;
    uint32_t i, nseries = CS_LOAD32(&h->nseries);

    if (nseries > st->l.metric_series) {
        return 0;
    }
    for (i = 0; i < st->l.metric_series; i++) {
        const cs_series_t *s = &st->series[i];
        if (s->used != (i < nseries ? 1u : 0u)) {
            return 0;
        }
        if (s->used && (!cs_strok(s->bot, CHAT_BOT_NAME_MAX + 1) ||
                        !cs_strok(s->backend, CHAT_BOT_NAME_MAX + 1))) {
            return 0;
        }
    }
    for (i = 0; i < CHAT_ERRCODE_MAX; i++) {
        uint32_t state = CS_LOAD32(&h->errors[i].state);
        if (state > CS_ERR_READY ||
            (state == CS_ERR_READY && !cs_strok(h->errors[i].code, 32))) {
            return 0;
        }
    }
    return 1;
}

/* Lock records match the geometry, no log is pending (the caller holds
 * every lock, or nobody uses the region), process entries are sane. */
static int check_locks(const chat_store_t *st)
{
    const cs_hdr_t *h = st->hdr;
    uint32_t i;

    for (i = 0; i < h->nlocks; i++) {
        const cs_lock_t *lk = &st->locks[i];
        uint32_t kind = i < st->nshards        ? CS_LK_SHARD
                        : i == st->nshards     ? CS_LK_POOL
                        : i == st->nshards + 1 ? CS_LK_MISC
                                               : CS_LK_BACKEND;
        uint64_t log_off = kind == CS_LK_SHARD || kind == CS_LK_POOL
                               ? h->off_logs + (uint64_t)i * CS_LOG_BYTES
                               : 0;
        if (lk->kind != kind || lk->log_off != log_off || lk->log_len != 0) {
            return 0;
        }
    }
    for (i = 0; i < st->l.max_procs; i++) {
        if (st->procs[i].state > CS_PROC_LIVE) {
            return 0;
        }
    }
    return 1;
}

static chat_status_t check_all(const chat_store_t *st, marks_t *m)
{
    int ok;

    memset(m, 0, sizeof(*m));
    m->smap = calloc(st->l.max_conversations, 1);
    m->bmap = calloc(((size_t)st->nblocks + 7) / 8, 1);
    if (!m->smap || !m->bmap) {
        free(m->smap);
        free(m->bmap);
        m->smap = m->bmap = NULL;
        return CHAT_ENOMEM;
    }
    ok = check_locks(st) && st->hdr->pool.nconv <= st->l.max_conversations &&
         check_owners(st, m) && check_convs(st, m) && check_users(st) &&
         check_backends(st) && check_metrics(st);
    return ok ? CHAT_OK : CHAT_EPARSE;
}

static void marks_free(marks_t *m)
{
    free(m->smap);
    free(m->bmap);
}

chat_status_t cs_validate_ex(const chat_store_t *st, uint64_t *leaked)
{
    marks_t m;
    chat_status_t rc = check_all(st, &m);

    if (leaked) {
        *leaked = rc == CHAT_OK ? m.leaked_blocks + m.leaked_slots : 0;
    }
    marks_free(&m);
    return rc;
}

chat_status_t cs_validate(const chat_store_t *st)
{
    uint64_t leaked = 0;
    chat_status_t rc = cs_validate_ex(st, &leaked);

    return rc == CHAT_OK && leaked ? CHAT_EPARSE : rc;
}

void cs_sweep(chat_store_t *st)
{
    cs_pool_t *pool = &st->hdr->pool;
    marks_t m;
    cs_tx_t tx;
    uint32_t i, pushed = 0, blocks = 0, slots = 0;

    if (check_all(st, &m) != CHAT_OK) {
        marks_free(&m);
        return;
    }
    cs_tx_begin(&tx, st, cs_pool_lock(st));
    for (i = 0; i < st->nblocks; i++) {
        if (BIT_GET(m.bmap, i)) {
            continue;
        }
        cs_snap(&tx, pool, sizeof(*pool));
        cs_snap(&tx, cs_bh(st, i), sizeof(cs_blkhdr_t));
        cs_bh(st, i)->next = pool->blk_free;
        cs_bh(st, i)->kind = CS_BLK_FREE;
        pool->blk_free = i;
        pool->blk_nfree++;
        blocks++;
        if (++pushed % 64 == 0) {
            cs_tx_commit(&tx);
        }
    }
    for (i = 0; i < st->l.max_conversations; i++) {
        cs_conv_t *c = &st->convs[i];
        if (c->in_use || (m.smap[i] & SEEN_FREE)) {
            continue;
        }
        cs_snap(&tx, pool, sizeof(*pool));
        cs_snap(&tx, &c->own_next, sizeof(c->own_next));
        c->own_next = pool->conv_free;
        pool->conv_free = i;
        slots++;
        if (++pushed % 64 == 0) {
            cs_tx_commit(&tx);
        }
    }
    cs_snap(&tx, pool, sizeof(*pool));
    pool->nconv = m.in_use;
    pool->anon_convs = m.anon_convs;
    pool->anon_blocks = m.anon_blocks;
    cs_tx_commit(&tx);
    marks_free(&m);
    if (blocks || slots) {
        chat_log(CHAT_LOG_NOTICE,
                 "chatbot store: gave back %u block(s) and %u slot(s) left over by a "
                 "process that died",
                 blocks, slots);
    }
}

void cs_free_lists_rebuild(chat_store_t *st)
{
    cs_pool_t *pool = &st->hdr->pool;
    uint8_t *bmap = calloc(((size_t)st->nblocks + 7) / 8, 1);
    uint32_t i, head = CS_NIL, n = 0;

    memset(pool, 0, sizeof(*pool));
    for (i = 0; i < st->l.max_conversations; i++) {
        const cs_conv_t *c = &st->convs[i];
        uint32_t b;
        uint64_t k = 0;
        if (!c->in_use) {
            continue;
        }
        pool->nconv++;
        if (!(st->owners[c->owner_ref].flags & CS_OWN_AUTH)) {
            pool->anon_convs++;
            pool->anon_blocks += c->nblocks + cs_meta_blocks(c->meta_len);
        }
        for (b = c->first_msg; bmap && b != CS_NIL && k < c->nblocks;
             b = cs_bh(st, b)->next, k++) {
            BIT_SET(bmap, b);
        }
        for (k = 0, b = c->meta_blk;
             bmap && k < cs_meta_blocks(c->meta_len) && b < st->nblocks;
             b = cs_bh(st, b)->next, k++) {
            BIT_SET(bmap, b);
        }
    }
    for (i = st->nblocks; i-- > 0;) {
        if (bmap && BIT_GET(bmap, i)) {
            continue;
        }
        cs_bh(st, i)->next = head;
        cs_bh(st, i)->kind = CS_BLK_FREE;
        head = i;
        n++;
    }
    pool->blk_free = head;
    pool->blk_nfree = n;
    head = CS_NIL;
    for (i = st->l.max_conversations; i-- > 0;) {
        cs_conv_t *c = &st->convs[i];
        if (c->in_use) {
            continue;
        }
        c->own_prev = CS_NIL;
        c->own_next = head;
        head = i;
    }
    pool->conv_free = head;
    free(bmap);
}
