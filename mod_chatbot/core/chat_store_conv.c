/* chat_store_conv.c - conversation slots of the shared store: ids, owner
 * checks, owner records and lists, create / find / list / rename / delete.
 * The user table is in chat_store_user.c, generation ownership in
 * chat_store_gen.c.
 *
 * Everything an identity owns is under the lock of its shard: callers pass
 * the owner, so the lock is known before the slot is looked at. Every
 * lookup checks the owner: a wrong owner is reported exactly like a missing
 * id (CHAT_ENOTFOUND), so ids never leak between users.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "chat/markdown.h"
#include "chat_store_int.h"

/* ---- helpers ------------------------------------------------------------------ */

void cs_copy_trunc(char *dst, size_t cap, size_t maxlen, const char *src)
{
    size_t n = src ? strlen(src) : 0;

    if (n > maxlen) {
        n = maxlen;
        /* do not cut a UTF-8 sequence: back up to its lead byte */
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    if (n) {
        memcpy(dst, src, n);
    }
    memset(dst + n, 0, cap - n);
}

/* Lower-case hex digit values, 0xFF for anything else (ids are parsed on
 * every store call: a table, not a chain of comparisons). */
static const uint8_t hexv[256] = {
    ['0'] = 0,  ['1'] = 1,  ['2'] = 2,  ['3'] = 3,  ['4'] = 4,  ['5'] = 5,
    ['6'] = 6,  ['7'] = 7,  ['8'] = 8,  ['9'] = 9,  ['a'] = 10, ['b'] = 11,
    ['c'] = 12, ['d'] = 13, ['e'] = 14, ['f'] = 15,
};

static int hexval(char ch)
{
    unsigned char c = (unsigned char)ch;
    /* the table's zeroes are digits only for '0' */
    return (hexv[c] || c == '0') ? hexv[c] : -1;
}

/* Parses "<8 hex slot><16 hex tag>" (lower case, exactly 24 digits). */
static int parse_id(const chat_store_t *st, const char *id, uint32_t *slot, uint64_t *tag)
{
    uint64_t s = 0, t = 0;
    int i;

    if (!id) {
        return 0;
    }
    for (i = 0; i < CHAT_CONV_ID_LEN; i++) {
        int v = hexval(id[i]); /* stops at the NUL: it is not a digit */
        if (v < 0) {
            return 0;
        }
        if (i < 8) {
            s = (s << 4) | (uint64_t)v;
        }
        else {
            t = (t << 4) | (uint64_t)v;
        }
    }
    if (id[CHAT_CONV_ID_LEN] != '\0' || s >= st->l.max_conversations || t == 0) {
        return 0;
    }
    *slot = (uint32_t)s;
    *tag = t;
    return 1;
}

cs_conv_t *cs_conv_find(chat_store_t *st, const chat_owner_t *owner, const char *id)
{
    uint32_t slot;
    uint64_t tag;
    cs_conv_t *c;

    if (!st || !parse_id(st, id, &slot, &tag)) {
        return NULL;
    }
    c = &st->convs[slot];
    if (CS_LOAD64(&c->tag) != tag || !c->in_use) {
        return NULL;
    }
    if (owner && memcmp(c->owner, owner->b, sizeof(owner->b)) != 0) {
        return NULL;
    }
    return c;
}

/* Lock-free variant: only atomic reads of the slot. */
cs_conv_t *cs_conv_peek(chat_store_t *st, const char *id)
{
    uint32_t slot;
    uint64_t tag;

    if (!st || !parse_id(st, id, &slot, &tag) || CS_LOAD64(&st->convs[slot].tag) != tag) {
        return NULL;
    }
    return &st->convs[slot];
}

void cs_conv_format_id(const chat_store_t *st, const cs_conv_t *c, char *out)
{
    snprintf(out, CHAT_CONV_ID_LEN + 1, "%08" PRIx32 "%016" PRIx64, cs_conv_index(st, c),
             c->tag);
}

void cs_conv_info(const chat_store_t *st, const cs_conv_t *c, chat_conv_info_t *out)
{
    memset(out, 0, sizeof(*out));
    cs_conv_format_id(st, c, out->id);
    memcpy(out->bot, c->bot, CHAT_BOT_NAME_MAX);
    memcpy(out->title, c->title, CHAT_TITLE_MAX);
    out->flags = c->flags & CS_CONV_FLAGS;
    out->state = c->state;
    out->queue_position = c->state == CHAT_CONV_QUEUED ? c->queue_position : 0;
    out->created_ms = c->created_ms;
    out->updated_ms = c->updated_ms;
    out->nmsgs = c->nmsgs;
    out->bytes = c->bytes;
    out->seq = CS_LOAD64(&c->seq);
    out->gen_token = CS_LOAD64(&c->gen_token);
    out->stop_requested = CS_LOAD32(&c->stop_requested) != 0;
    /* the model of its settings: every blob written names it first
     * (chat_settings_write), so two blocks hold it; the bounds hold in a
     * damaged image too */
    if (c->meta_len && c->meta_len <= CHAT_CONV_META_MAX) {
        char pre[2 * CS_CAP_NEXT];
        uint32_t want = c->meta_len < sizeof(pre) ? c->meta_len : (uint32_t)sizeof(pre);
        uint32_t got = 0, b;
        for (b = c->meta_blk; got < want && b < st->nblocks; b = cs_bh(st, b)->next) {
            uint32_t n = want - got < CS_CAP_NEXT ? want - got : CS_CAP_NEXT;
            memcpy(pre + got, cs_blk(st, b) + CS_BLK_HDR, n);
            got += n;
        }
        chat_settings_model_of(pre, got, got == c->meta_len, out->model);
    }
}

/* Locks the shard of owner. */
chat_status_t cs_lock_owner(chat_store_t *st, const uint8_t *owner, cs_tx_t *tx)
{
    cs_lock_t *lk = cs_shard_lock(st, cs_shard_of(st, owner));

    if (cs_lock(st, lk) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    cs_tx_begin(tx, st, lk);
    return CHAT_OK;
}

void cs_tx_unlock(cs_tx_t *tx)
{
    cs_unlock(tx->st, tx->lk);
}

/* Locks the shard of owner and finds its conversation id (the lock is held
 * on CHAT_OK only). */
chat_status_t cs_conv_lock_find(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, cs_tx_t *tx, cs_conv_t **pc)
{
    if (!st || !owner) {
        return CHAT_ENOTFOUND;
    }
    if (cs_lock_owner(st, owner->b, tx) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    if (!(*pc = cs_conv_find(st, owner, id))) {
        cs_tx_unlock(tx);
        return CHAT_ENOTFOUND;
    }
    return CHAT_OK;
}

/* Finds a conversation by id alone and locks the shard of its owner (the
 * owner is read before the lock and checked again under it). */
cs_conv_t *cs_conv_find_locked(chat_store_t *st, const char *id, cs_tx_t *tx)
{
    int tries;

    for (tries = 0; tries < 4; tries++) {
        cs_conv_t *c = cs_conv_peek(st, id);
        uint8_t owner[20];
        if (!c) {
            return NULL;
        }
        memcpy(owner, c->owner, sizeof(owner));
        if (cs_lock_owner(st, owner, tx) != CHAT_OK) {
            return NULL;
        }
        c = cs_conv_find(st, NULL, id);
        if (c && memcmp(c->owner, owner, sizeof(owner)) == 0) {
            return c;
        }
        cs_tx_unlock(tx);
        if (!c) {
            return NULL;
        }
    }
    return NULL;
}

/* ---- owner records ------------------------------------------------------------- */

cs_owner_t *cs_owner_find(chat_store_t *st, const uint8_t *key)
{
    uint32_t P = st->owners_per_shard, base = cs_shard_of(st, key) * P;
    uint32_t home = cs_owner_hash(key, 12) % P, k;

    for (k = 0; k < CS_OWNER_WINDOW && k < P; k++) {
        cs_owner_t *o = &st->owners[base + (home + k) % P];
        if ((o->flags & CS_OWN_USED) && memcmp(o->key, key, 20) == 0) {
            return o;
        }
    }
    return NULL;
}

cs_owner_t *cs_owner_get(cs_tx_t *tx, const uint8_t *key, int auth)
{
    chat_store_t *st = tx->st;
    uint32_t s = cs_shard_of(st, key), P = st->owners_per_shard, base = s * P;
    uint32_t home = cs_owner_hash(key, 12) % P, k;
    cs_owner_t *o = cs_owner_find(st, key);

    if (o) {
        return o;
    }
    for (k = 0; k < CS_OWNER_WINDOW && k < P; k++) {
        o = &st->owners[base + (home + k) % P];
        if (!(o->flags & CS_OWN_USED)) {
            cs_snap(tx, o, sizeof(*o));
            cs_snap(tx, &st->shards[s], sizeof(cs_shard_t));
            memcpy(o->key, key, 20);
            o->flags = CS_OWN_USED | (auth ? CS_OWN_AUTH : 0);
            o->nconv = 0;
            o->nblocks = 0;
            o->head = o->tail = CS_NIL;
            st->shards[s].nowners++;
            return o;
        }
    }
    return NULL;
}

void cs_owner_list_unlink(cs_tx_t *tx, cs_owner_t *o, cs_conv_t *c)
{
    chat_store_t *st = tx->st;

    cs_snap(tx, o, sizeof(*o));
    cs_snap(tx, c, sizeof(*c));
    if (c->own_prev != CS_NIL) {
        cs_conv_t *p = &st->convs[c->own_prev];
        cs_snap(tx, p, sizeof(*p));
        p->own_next = c->own_next;
    }
    else {
        o->head = c->own_next;
    }
    if (c->own_next != CS_NIL) {
        cs_conv_t *n = &st->convs[c->own_next];
        cs_snap(tx, n, sizeof(*n));
        n->own_prev = c->own_prev;
    }
    else {
        o->tail = c->own_prev;
    }
    c->own_prev = c->own_next = CS_NIL;
}

static void list_push_front(cs_tx_t *tx, cs_owner_t *o, cs_conv_t *c)
{
    chat_store_t *st = tx->st;
    uint32_t i = cs_conv_index(st, c);

    cs_snap(tx, o, sizeof(*o));
    cs_snap(tx, c, sizeof(*c));
    c->own_prev = CS_NIL;
    c->own_next = o->head;
    if (o->head != CS_NIL) {
        cs_conv_t *h = &st->convs[o->head];
        cs_snap(tx, h, sizeof(*h));
        h->own_prev = i;
    }
    else {
        o->tail = i;
    }
    o->head = i;
}

/* The slot info of c from its state (caller snapped nothing of it). */
void cs_slot_update(cs_tx_t *tx, cs_conv_t *c)
{
    chat_store_t *st = tx->st;
    cs_slotinfo_t *si = &st->slots[cs_conv_index(st, c)];
    uint32_t flags = CS_SI_USED | (c->state == CHAT_CONV_IDLE ? CS_SI_IDLE : 0) |
                     ((st->owners[c->owner_ref].flags & CS_OWN_AUTH) ? CS_SI_AUTH : 0);

    if (si->flags == flags && si->owner_ref == c->owner_ref &&
        si->updated_ms == c->updated_ms) {
        return;
    }
    cs_snap(tx, si, sizeof(*si));
    __atomic_store_n(&si->updated_ms, c->updated_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&si->owner_ref, c->owner_ref, __ATOMIC_RELAXED);
    __atomic_store_n(&si->flags, flags, __ATOMIC_RELAXED);
}

void cs_conv_link_raw(chat_store_t *st, cs_conv_t *c, int auth)
{
    cs_owner_t *o = &st->owners[c->owner_ref];
    cs_slotinfo_t *si = &st->slots[cs_conv_index(st, c)];
    uint32_t i = cs_conv_index(st, c);

    c->own_next = CS_NIL;
    c->own_prev = o->tail;
    if (o->tail != CS_NIL) {
        st->convs[o->tail].own_next = i;
    }
    else {
        o->head = i;
    }
    o->tail = i;
    o->nconv++;
    o->nblocks += c->nblocks + cs_meta_blocks(c->meta_len);
    si->updated_ms = c->updated_ms;
    si->owner_ref = c->owner_ref;
    si->flags = CS_SI_USED | (c->state == CHAT_CONV_IDLE ? CS_SI_IDLE : 0) |
                (auth ? CS_SI_AUTH : 0);
}

void cs_conv_changed(chat_store_t *st, cs_conv_t *c)
{
    CS_STORE64(&c->seq, cs_next_seq(st));
}

void cs_conv_touch(cs_tx_t *tx, cs_conv_t *c, uint64_t now_ms)
{
    chat_store_t *st = tx->st;
    cs_owner_t *o = &st->owners[c->owner_ref];

    cs_note_now(st, now_ms);
    cs_snap(tx, c, sizeof(*c));
    c->updated_ms = now_ms;
    if (o->head != cs_conv_index(st, c)) {
        cs_owner_list_unlink(tx, o, c);
        list_push_front(tx, o, c);
    }
    cs_slot_update(tx, c);
    cs_conv_changed(st, c);
}

/* ---- conversations: public API ------------------------------------------------ */

/* Spends one creation token of owner. CHAT_OK or CHAT_ELIMIT. */
static chat_status_t take_create(cs_tx_t *tx, const chat_owner_t *owner, uint64_t now_ms)
{
    const chat_quota_t *q = cs_quota(tx->st, owner->auth);
    cs_user_t *u;
    int64_t retry;

    if (q->create.count == 0) {
        return CHAT_OK;
    }
    u = cs_user_get(tx, owner->b, now_ms, 1);
    cs_snap(tx, u, sizeof(*u));
    if (!(u->flags & CS_USER_CBUCKET)) {
        chat_bucket_init(&u->create, &q->create, now_ms);
        u->flags |= CS_USER_CBUCKET;
    }
    return chat_bucket_take(&u->create, &q->create, now_ms, &retry);
}

/* Under the owner's lock: owner's conversation titled title, the first of
 * rank 0 (neither stopped nor archived) .. 3 (both) in touch order. */
static cs_conv_t *find_titled(chat_store_t *st, const chat_owner_t *owner,
                              const char *title)
{
    cs_owner_t *o = cs_owner_find(st, owner->b);
    cs_conv_t *best = NULL;
    int best_rank = 4;
    uint32_t i;

    for (i = o ? o->head : CS_NIL; i != CS_NIL && best_rank > 0;
         i = st->convs[i].own_next) {
        cs_conv_t *c = &st->convs[i];
        int rank = ((c->flags & CHAT_CONV_ARCHIVED) ? 2 : 0) +
                   ((c->flags & CHAT_CONV_STOPPED) ? 1 : 0);
        if (rank < best_rank && memcmp(c->owner, owner->b, sizeof(owner->b)) == 0 &&
            strcmp(c->title, title) == 0) {
            best = c;
            best_rank = rank;
        }
    }
    return best;
}

/* find: look for title first (chat_store_conv_find_or_create) */
static chat_status_t conv_create(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, const char *title, uint32_t flags,
                                 int find, uint64_t tag, uint64_t now_ms,
                                 chat_conv_info_t *out, int *created)
{
    cs_owner_t *o;
    cs_conv_t *c;
    cs_tx_t tx;
    chat_status_t rc;
    uint32_t slot = CS_NIL;
    size_t blen;
    int tries, auth;

    if (created) {
        *created = 0;
    }
    if (!st || !owner || !bot || tag == 0 || (flags & ~CS_CONV_FLAGS) ||
        (find && !title)) {
        return CHAT_EINVAL;
    }
    blen = strlen(bot);
    if (blen == 0 || blen > CHAT_BOT_NAME_MAX) {
        return CHAT_EINVAL;
    }
    auth = owner->auth != 0;
    cs_note_now(st, now_ms);
    if (cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    if (find && (c = find_titled(st, owner, title)) != NULL) {
        if (out) {
            cs_conv_info(st, c, out);
        }
        cs_tx_unlock(&tx);
        return CHAT_OK;
    }
    rc = take_create(&tx, owner, now_ms);
    if (rc != CHAT_OK) {
        cs_tx_unlock(&tx);
        return rc;
    }
    cs_tx_commit(&tx); /* the token stays spent */
    /* room for one slot, then take it: another child may take the room
     * first, so try a few times */
    for (tries = 0; tries < 4 && slot == CS_NIL; tries++) {
        rc = cs_make_room(&tx, cs_owner_find(st, owner->b), auth, NULL, CS_RES_SLOTS, 1);
        if (rc != CHAT_OK) {
            cs_tx_unlock(&tx);
            return rc;
        }
        if (!cs_pool_take_slot(st, auth, &slot)) {
            slot = CS_NIL;
        }
    }
    if (slot == CS_NIL) {
        cs_tx_unlock(&tx);
        return CHAT_EFULL;
    }
    o = cs_owner_get(&tx, owner->b, auth);
    if (!o) {
        /* no room for one more identity in this shard's owner table: the
         * slot goes back */
        cs_tx_unlock(&tx);
        cs_pool_give_slot(st, slot, auth);
        return CHAT_EFULL;
    }
    c = &st->convs[slot];
    cs_snap(&tx, c, sizeof(*c));
    memset(c, 0, sizeof(*c));
    c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    memcpy(c->owner, owner->b, sizeof(owner->b));
    cs_copy_trunc(c->bot, sizeof(c->bot), CHAT_BOT_NAME_MAX, bot);
    cs_copy_trunc(c->title, sizeof(c->title), CHAT_TITLE_MAX, title);
    chat_one_line(c->title); /* a title is one line of text, whoever reads it */
    c->created_ms = now_ms;
    c->updated_ms = now_ms;
    c->state = CHAT_CONV_IDLE;
    c->flags = flags | CS_CONV_LINEAR;
    c->owner_ref = (uint32_t)(o - st->owners);
    c->in_use = 1;
    list_push_front(&tx, o, c);
    o->nconv++;
    cs_slot_update(&tx, c);
    cs_conv_changed(st, c);
    CS_STORE64(&c->tag, tag);
    if (out) {
        cs_conv_info(st, c, out);
    }
    cs_tx_unlock(&tx);
    if (created) {
        *created = 1;
    }
    return CHAT_OK;
}

chat_status_t cs_shm_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, const char *title, uint64_t tag,
                                 uint64_t now_ms, chat_conv_info_t *out)
{
    return conv_create(st, owner, bot, title, 0, 0, tag, now_ms, out, NULL);
}

chat_status_t cs_shm_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                         const char *bot, const char *title,
                                         uint32_t flags, uint64_t tag, uint64_t now_ms,
                                         chat_conv_info_t *out, int *created)
{
    return conv_create(st, owner, bot, title, flags, 1, tag, now_ms, out, created);
}

int64_t cs_shm_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                               uint64_t now_ms)
{
    const chat_quota_t *q;
    chat_bucket_t b;
    cs_user_t *u;
    cs_tx_t tx;
    int64_t retry = 0;

    if (!st || !owner) {
        return 0;
    }
    q = cs_quota(st, owner->auth);
    if (q->create.count == 0 || cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return 0;
    }
    u = cs_user_find(st, owner->b);
    if (u && (u->flags & CS_USER_CBUCKET)) {
        b = u->create; /* a copy: asking does not spend */
        if (chat_bucket_take(&b, &q->create, now_ms, &retry) == CHAT_OK) {
            retry = 0;
        }
    }
    cs_tx_unlock(&tx);
    return retry;
}

chat_status_t cs_shm_conv_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              chat_conv_info_t *out)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (!st || !owner || cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return CHAT_ENOTFOUND;
    }
    c = cs_conv_find(st, owner, id);
    if (c && out) {
        cs_conv_info(st, c, out);
    }
    cs_tx_unlock(&tx);
    return c ? CHAT_OK : CHAT_ENOTFOUND;
}

static int conv_matches(const cs_conv_t *c, const chat_owner_t *owner, const char *bot,
                        int archived)
{
    if (memcmp(c->owner, owner->b, sizeof(owner->b)) != 0) {
        return 0;
    }
    if (bot && strcmp(c->bot, bot) != 0) {
        return 0;
    }
    if (archived == 0 && (c->flags & CHAT_CONV_ARCHIVED)) {
        return 0;
    }
    if (archived == 1 && !(c->flags & CHAT_CONV_ARCHIVED)) {
        return 0;
    }
    return 1;
}

int cs_shm_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                     int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                     void *baton)
{
    chat_conv_info_t info;
    cs_owner_t *o;
    cs_tx_t tx;
    uint32_t i;
    int n = 0;

    if (!st || !owner || cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return 0;
    }
    o = cs_owner_find(st, owner->b);
    /* the owner's list is in touch order: most recently updated first */
    for (i = o ? o->head : CS_NIL; i != CS_NIL; i = st->convs[i].own_next) {
        const cs_conv_t *c = &st->convs[i];
        if (!conv_matches(c, owner, bot, archived)) {
            continue;
        }
        if (cb) {
            cs_conv_info(st, c, &info);
            cb(baton, &info);
        }
        n++;
    }
    cs_tx_unlock(&tx);
    return n;
}

chat_status_t cs_shm_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, chat_conv_info_t *out)
{
    chat_status_t rc = CHAT_ENOTFOUND;
    cs_owner_t *o;
    cs_tx_t tx;
    uint32_t i;

    if (!st || !owner || cs_lock_owner(st, owner->b, &tx) != CHAT_OK) {
        return CHAT_ENOTFOUND;
    }
    o = cs_owner_find(st, owner->b);
    for (i = o ? o->head : CS_NIL; i != CS_NIL; i = st->convs[i].own_next) {
        const cs_conv_t *c = &st->convs[i];
        if (conv_matches(c, owner, bot, 0)) {
            if (out) {
                cs_conv_info(st, c, out);
            }
            rc = CHAT_OK;
            break;
        }
    }
    cs_tx_unlock(&tx);
    return rc;
}

chat_status_t cs_shm_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, const char *title, uint64_t now_ms)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (cs_conv_lock_find(st, owner, id, &tx, &c) != CHAT_OK) {
        return CHAT_ENOTFOUND; /* or the shard's lock unusable (logged) */
    }
    cs_snap(&tx, c, sizeof(*c));
    cs_copy_trunc(c->title, sizeof(c->title), CHAT_TITLE_MAX, title);
    chat_one_line(c->title); /* a title is one line of text, whoever reads it */
    cs_conv_touch(&tx, c, now_ms);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

chat_status_t cs_shm_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t set, uint32_t clear,
                                uint64_t now_ms)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (cs_conv_lock_find(st, owner, id, &tx, &c) != CHAT_OK) {
        return CHAT_ENOTFOUND; /* or the shard's lock unusable (logged) */
    }
    if ((set | clear) & ~CS_CONV_FLAGS) {
        cs_tx_unlock(&tx);
        return CHAT_EINVAL;
    }
    cs_snap(&tx, c, sizeof(*c));
    c->flags = (c->flags | set) & ~clear;
    cs_conv_touch(&tx, c, now_ms);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

chat_status_t cs_shm_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id)
{
    cs_conv_t *c;
    cs_tx_t tx;

    if (cs_conv_lock_find(st, owner, id, &tx, &c) != CHAT_OK) {
        return CHAT_ENOTFOUND; /* or the shard's lock unusable (logged) */
    }
    if (c->state != CHAT_CONV_IDLE) {
        cs_tx_unlock(&tx);
        return CHAT_EBUSY;
    }
    cs_conv_release(&tx, c);
    cs_tx_unlock(&tx);
    return CHAT_OK;
}

uint64_t cs_shm_conv_seq(chat_store_t *st, const char *id)
{
    cs_conv_t *c = cs_conv_peek(st, id);
    return c ? CS_LOAD64(&c->seq) : 0;
}
