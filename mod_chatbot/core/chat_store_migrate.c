/* chat_store_migrate.c - the shared store across a restart: recover a kept
 * region (answers and backend slots of processes that are gone), and
 * migrate the data into a region of another layout.
 */
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

/* ---- recover ----------------------------------------------------------------- */

void chat_store_recover(chat_store_t *st, uint64_t now_ms)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i;

    cs_note_now(st, now_ms);
    for (i = 0; i < st->l.max_conversations; i++) {
        cs_conv_t *c = &st->convs[i];
        int busy;
        if (!c->in_use) {
            continue;
        }
        busy = c->state != CHAT_CONV_IDLE;
        if (c->last_msg != CS_NIL) {
            cs_msghdr_t *mh = cs_mh(st, c->last_msg);
            int stale = (mh->flags & CHAT_MSG_STREAMING) ||
                        (busy && mh->role == CHAT_ROLE_ASSISTANT);
            if (stale && !(mh->flags & CHAT_MSG_COMPLETE)) {
                mh->flags |= CHAT_MSG_INTERRUPTED;
            }
            mh->flags &= ~CHAT_MSG_STREAMING;
        }
        if (busy) {
            c->state = CHAT_CONV_IDLE;
            c->queue_position = 0;
            c->gen_proc = 0;
            CS_STORE64(&c->gen_token, 0);
            CS_STORE32(&c->stop_requested, 0);
            st->slots[i].flags |= CS_SI_IDLE;
            cs_conv_changed(st, c);
        }
    }
    for (i = 0; i < h->nbackends; i++) {
        cs_backend_t *b = &st->backends[i];
        memset(&st->holders[(size_t)i * st->l.max_active], 0,
               (size_t)st->l.max_active * sizeof(cs_holder_t));
        memset(&st->queue[(size_t)i * st->l.queue_cap], 0,
               (size_t)st->l.queue_cap * sizeof(cs_waiter_t));
        b->nactive = 0;
        b->q_head = 0;
        b->q_count = 0;
        if (b->breaker == CHAT_BREAKER_HALF_OPEN) {
            /* the probe died with its process: allow a new one now */
            b->breaker = CHAT_BREAKER_OPEN;
            b->open_until_ms = now_ms;
        }
    }
    /* live gauges describe processes that are gone */
    CS_STORE64(&h->gauges[CHAT_G_CONNECTIONS], 0);
    CS_STORE64(&h->gauges[CHAT_G_GENERATING], 0);
    CS_STORE64(&h->gauges[CHAT_G_QUEUED], 0);
}

/* ---- migrate ------------------------------------------------------------------ */

static void migrate_users(chat_store_t *dst, const chat_store_t *src)
{
    cs_tx_t tx;
    uint32_t i;

    for (i = 0; i < src->l.max_users; i++) {
        const cs_user_t *su = &src->users[i];
        cs_user_t *du;
        if (!(su->flags & CS_USER_USED)) {
            continue;
        }
        cs_tx_begin(&tx, dst, cs_shard_lock(dst, cs_shard_of(dst, su->owner)));
        du = cs_user_get(&tx, su->owner, su->last_seen_ms, 0);
        if (du) {
            du->flags = su->flags;
            du->seq = su->seq;
            du->last_seen_ms = su->last_seen_ms;
            du->bucket = su->bucket;
            du->create = su->create;
        }
        cs_tx_commit(&tx);
    }
}

static void migrate_backends(chat_store_t *dst, const chat_store_t *src)
{
    uint32_t i;
    for (i = 0; i < src->hdr->nbackends; i++) {
        const cs_backend_t *sb = &src->backends[i];
        cs_backend_t *db;
        int k = chat_store_backend_register(dst, sb->name, sb->max_active);
        if (k < 0) {
            continue;
        }
        db = &dst->backends[k];
        db->breaker = sb->breaker;
        db->failures = sb->failures;
        db->open_until_ms = sb->open_until_ms;
        db->healthy = sb->healthy;
        db->checked_ms = sb->checked_ms;
        memcpy(db->version, sb->version, sizeof(db->version));
        memcpy(db->detail, sb->detail, sizeof(db->detail));
    }
}

static void migrate_metrics(chat_store_t *dst, const chat_store_t *src)
{
    const cs_hdr_t *sh = src->hdr;
    uint32_t i, n = CS_LOAD32(&sh->nseries);
    int g, k, b;

    for (i = 0; i < n; i++) {
        const cs_series_t *ss = &src->series[i];
        int k2 = chat_store_series(dst, ss->bot, ss->backend);
        cs_series_t *ds;
        if (k2 < 0) {
            continue;
        }
        ds = &dst->series[k2];
        for (k = 0; k < CHAT_CTR_COUNT; k++) {
            ds->counters[k] += ss->counters[k];
        }
        for (k = 0; k < CHAT_HIST_COUNT; k++) {
            double a, c;
            for (b = 0; b < CHAT_HIST_BUCKETS; b++) {
                ds->hist[k][b] += ss->hist[k][b];
            }
            memcpy(&a, &ds->hist_sum[k], sizeof(a));
            memcpy(&c, &ss->hist_sum[k], sizeof(c));
            a += c;
            memcpy(&ds->hist_sum[k], &a, sizeof(a));
            ds->hist_count[k] += ss->hist_count[k];
        }
    }
    for (g = 0; g < CHAT_G_COUNT; g++) {
        dst->hdr->gauges[g] =
            (int64_t)((uint64_t)dst->hdr->gauges[g] + (uint64_t)sh->gauges[g]);
    }
    for (i = 0; i < CHAT_ERRCODE_MAX; i++) {
        if (sh->errors[i].state == CS_ERR_READY) {
            cs_metrics_error_add(dst, sh->errors[i].code,
                                 CS_LOAD64(&sh->errors[i].count));
        }
    }
    if (sh->started_ms && sh->started_ms < dst->hdr->started_ms) {
        dst->hdr->started_ms = sh->started_ms;
    }
    dst->hdr->recoveries = sh->recoveries;
    dst->hdr->proc_reaped = sh->proc_reaped;
}

/* qsort has no context argument: the parent migrates single-threaded */
static const chat_store_t *sort_src;

/* Most recently updated first, then by slot. */
static int cmp_updated(const void *a, const void *b)
{
    const chat_store_t *src = sort_src;
    const cs_conv_t *x = &src->convs[*(const uint32_t *)a];
    const cs_conv_t *y = &src->convs[*(const uint32_t *)b];

    if (x->updated_ms != y->updated_ms) {
        return x->updated_ms > y->updated_ms ? -1 : 1;
    }
    return *(const uint32_t *)a < *(const uint32_t *)b ? -1 : 1;
}

chat_status_t chat_store_migrate(chat_store_t *dst, const chat_store_t *src,
                                 uint64_t now_ms)
{
    uint32_t snc, i, n = 0, kept = 0, budget, cursor = 0;
    uint32_t *order, *start, *slot;
    uint8_t *meta;
    int pass;

    if (!dst || !src || dst == src || dst->base == src->base) {
        return CHAT_EINVAL;
    }
    cs_note_now(dst, now_ms);
    snc = src->l.max_conversations;
    order = malloc((size_t)snc * sizeof(uint32_t));
    start = malloc((size_t)snc * sizeof(uint32_t));
    slot = malloc((size_t)snc * sizeof(uint32_t));
    meta = calloc(snc ? snc : 1, 1);
    if (!order || !start || !slot || !meta) {
        free(order);
        free(start);
        free(slot);
        free(meta);
        return CHAT_ENOMEM;
    }
    if (CS_LOAD64(&src->hdr->seq_clock) > dst->hdr->seq_clock) {
        dst->hdr->seq_clock = CS_LOAD64(&src->hdr->seq_clock);
    }
    migrate_users(dst, src);
    migrate_backends(dst, src);
    migrate_metrics(dst, src);

    for (i = 0; i < snc; i++) {
        start[i] = CS_NIL;
        slot[i] = CS_NIL;
        if (src->convs[i].in_use) {
            order[n++] = i;
        }
    }
    sort_src = src;
    qsort(order, n, sizeof(uint32_t), cmp_updated);

    /* 1. choose, newest first, the conversations and the newest messages of
     *    each that fit dst's limits; stop at the first that cannot fit */
    budget = dst->nblocks;
    for (i = 0; i < n && kept < dst->l.max_conversations; i++) {
        const cs_conv_t *c = &src->convs[order[i]];
        uint32_t m, first = CS_NIL, cnt = 0;
        uint64_t need = 0;
        for (m = c->last_msg; m != CS_NIL && cnt < dst->l.max_messages;
             m = cs_mh(src, m)->prev_msg) {
            uint64_t k = cs_blocks_for(cs_mh(src, m)->len);
            if (cs_mh(src, m)->len > dst->l.max_message_bytes || need + k > budget) {
                break;
            }
            need += k;
            first = m;
            cnt++;
        }
        if (c->nmsgs > 0 && cnt == 0) {
            break; /* dst is full */
        }
        budget -= (uint32_t)need;
        /* the settings blob comes along if it fits */
        if (c->meta_len && c->meta_len <= CHAT_CONV_META_MAX &&
            cs_meta_blocks(c->meta_len) <= budget) {
            budget -= cs_meta_blocks(c->meta_len);
            meta[order[i]] = 1;
        }
        start[order[i]] = first;
        slot[order[i]] = CS_NIL - 1; /* chosen, slot not yet assigned */
        kept++;
    }
    /* 2. keep ids valid: a conversation keeps its slot if dst has it, the
     *    others take the remaining slots (lowest first) */
    {
        uint8_t *taken = calloc(dst->l.max_conversations, 1);
        uint32_t next = 0;
        if (!taken) {
            free(order);
            free(start);
            free(slot);
            free(meta);
            return CHAT_ENOMEM;
        }
        for (pass = 1; pass <= 2; pass++) {
            for (i = 0; i < n; i++) {
                uint32_t si = order[i];
                if (slot[si] != CS_NIL - 1) {
                    continue;
                }
                if (pass == 1) {
                    if (si < dst->l.max_conversations && !taken[si]) {
                        slot[si] = si;
                        taken[si] = 1;
                    }
                    continue;
                }
                while (next < dst->l.max_conversations && taken[next]) {
                    next++;
                }
                if (next < dst->l.max_conversations) {
                    slot[si] = next;
                    taken[next] = 1;
                }
            }
        }
        free(taken);
    }
    /* 3. fill the slots newest first (each owner's list then runs newest
     *    first as well); dst is fresh, so blocks are taken in index order and
     *    the free lists are rebuilt at the end */
    for (i = 0; i < n; i++) {
        const cs_conv_t *sc = &src->convs[order[i]];
        cs_conv_t *dc;
        cs_owner_t *o;
        uint32_t m;
        int auth;
        if (slot[order[i]] >= CS_NIL - 1) {
            continue;
        }
        auth = sc->owner_ref < src->nshards * src->owners_per_shard &&
               (src->owners[sc->owner_ref].flags & CS_OWN_AUTH);
        {
            cs_tx_t tx;
            cs_tx_begin(&tx, dst, cs_shard_lock(dst, cs_shard_of(dst, sc->owner)));
            o = cs_owner_get(&tx, sc->owner, auth);
            cs_tx_commit(&tx);
        }
        if (!o) {
            continue;
        }
        dc = &dst->convs[slot[order[i]]];
        memset(dc, 0, sizeof(*dc));
        dc->first_msg = dc->last_msg = dc->last_blk = CS_NIL;
        dc->in_use = 1;
        dc->created_ms = sc->created_ms;
        dc->updated_ms = sc->updated_ms;
        dc->seq = CS_LOAD64(&sc->seq);
        dc->gen_token = sc->gen_token;
        dc->gen_proc = sc->gen_proc;
        memcpy(dc->owner, sc->owner, 20);
        dc->flags = sc->flags;
        dc->state = sc->state;
        dc->queue_position = sc->queue_position;
        dc->stop_requested = sc->stop_requested;
        memcpy(dc->bot, sc->bot, sizeof(dc->bot));
        memcpy(dc->title, sc->title, sizeof(dc->title));
        dc->owner_ref = (uint32_t)(o - dst->owners);
        for (m = start[order[i]]; m != CS_NIL; m = cs_mh(src, m)->next_msg) {
            cs_msg_copy_raw(dst, dc, src, m, &cursor);
        }
        if (meta[order[i]]) {
            cs_meta_copy_raw(dst, dc, src, sc, &cursor);
        }
        cs_conv_link_raw(dst, dc, auth);
        CS_STORE64(&dc->tag, sc->tag);
    }
    cs_free_lists_rebuild(dst);
    free(order);
    free(start);
    free(slot);
    free(meta);
    return CHAT_OK;
}
