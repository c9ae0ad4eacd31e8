/* chat_store_conv.c - conversation slots (ids, owner checks, LRU and owner
 * lists, eviction, generation ownership) and the user table (rate-limit
 * buckets and per-user change counters) of the shared store.
 *
 * Every lookup checks the owner: a wrong owner is reported exactly like a
 * missing id (CHAT_ENOTFOUND), so ids never leak between users.
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

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    return -1;
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
    if (!c->in_use || c->tag != tag) {
        return NULL;
    }
    if (owner && memcmp(c->owner, owner->b, sizeof(owner->b)) != 0) {
        return NULL;
    }
    return c;
}

/* Lock-free variant: only atomic reads of the slot. */
static cs_conv_t *conv_peek(chat_store_t *st, const char *id)
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
    out->flags = c->flags;
    out->state = c->state;
    out->queue_position = c->state == CHAT_CONV_QUEUED ? c->queue_position : 0;
    out->created_ms = c->created_ms;
    out->updated_ms = c->updated_ms;
    out->nmsgs = c->nmsgs;
    out->bytes = c->bytes;
    out->seq = CS_LOAD64(&c->seq);
    out->gen_token = CS_LOAD64(&c->gen_token);
    out->stop_requested = CS_LOAD32(&c->stop_requested) != 0;
}

/* ---- lists ---------------------------------------------------------------------- */

static void lru_unlink(chat_store_t *st, cs_conv_t *c)
{
    cs_hdr_t *h = st->hdr;
    if (c->lru_prev != CS_NIL) {
        st->convs[c->lru_prev].lru_next = c->lru_next;
    }
    else {
        h->lru_head = c->lru_next;
    }
    if (c->lru_next != CS_NIL) {
        st->convs[c->lru_next].lru_prev = c->lru_prev;
    }
    else {
        h->lru_tail = c->lru_prev;
    }
    c->lru_prev = c->lru_next = CS_NIL;
}

static void lru_push_front(chat_store_t *st, cs_conv_t *c)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i = cs_conv_index(st, c);
    c->lru_prev = CS_NIL;
    c->lru_next = h->lru_head;
    if (h->lru_head != CS_NIL) {
        st->convs[h->lru_head].lru_prev = i;
    }
    else {
        h->lru_tail = i;
    }
    h->lru_head = i;
}

void cs_lru_push_back(chat_store_t *st, cs_conv_t *c)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i = cs_conv_index(st, c);
    c->lru_next = CS_NIL;
    c->lru_prev = h->lru_tail;
    if (h->lru_tail != CS_NIL) {
        st->convs[h->lru_tail].lru_next = i;
    }
    else {
        h->lru_head = i;
    }
    h->lru_tail = i;
}

static void own_unlink(chat_store_t *st, cs_conv_t *c)
{
    if (c->own_prev != CS_NIL) {
        st->convs[c->own_prev].own_next = c->own_next;
    }
    else {
        st->heads[cs_head_of(st, c->owner)] = c->own_next;
    }
    if (c->own_next != CS_NIL) {
        st->convs[c->own_next].own_prev = c->own_prev;
    }
    c->own_prev = c->own_next = CS_NIL;
}

static void own_push_front(chat_store_t *st, cs_conv_t *c)
{
    uint32_t *head = &st->heads[cs_head_of(st, c->owner)];
    uint32_t i = cs_conv_index(st, c);
    c->own_prev = CS_NIL;
    c->own_next = *head;
    if (*head != CS_NIL) {
        st->convs[*head].own_prev = i;
    }
    *head = i;
}

void cs_own_push_back(chat_store_t *st, cs_conv_t *c)
{
    uint32_t *head = &st->heads[cs_head_of(st, c->owner)];
    uint32_t i = cs_conv_index(st, c), last = *head;

    /* only used by migrate, once per conversation: walking is fine */
    c->own_next = CS_NIL;
    if (last == CS_NIL) {
        c->own_prev = CS_NIL;
        *head = i;
        return;
    }
    while (st->convs[last].own_next != CS_NIL) {
        last = st->convs[last].own_next;
    }
    st->convs[last].own_next = i;
    c->own_prev = last;
}

cs_conv_t *cs_conv_alloc(chat_store_t *st, uint32_t want)
{
    cs_hdr_t *h = st->hdr;
    cs_conv_t *c;
    uint32_t i = want == CS_NIL ? h->conv_free : want;

    if (i == CS_NIL || i >= st->l.max_conversations || st->convs[i].in_use) {
        return NULL;
    }
    c = &st->convs[i];
    /* unlink from the (doubly linked) free list */
    if (c->lru_prev != CS_NIL) {
        st->convs[c->lru_prev].lru_next = c->lru_next;
    }
    else {
        h->conv_free = c->lru_next;
    }
    if (c->lru_next != CS_NIL) {
        st->convs[c->lru_next].lru_prev = c->lru_prev;
    }
    memset(c, 0, sizeof(*c));
    c->in_use = 1;
    c->lru_prev = c->lru_next = CS_NIL;
    c->own_prev = c->own_next = CS_NIL;
    c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    h->nconv++;
    return c;
}

/* Frees a slot whole: text, lists, tag (so stale ids stop matching). */
static void conv_release(chat_store_t *st, cs_conv_t *c)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i = cs_conv_index(st, c);

    cs_msg_free_all(st, c);
    lru_unlink(st, c);
    own_unlink(st, c);
    CS_STORE64(&c->tag, 0);
    CS_STORE64(&c->gen_token, 0);
    CS_STORE64(&c->seq, cs_next_seq(st));
    c->in_use = 0;
    c->state = CHAT_CONV_IDLE;
    c->lru_prev = CS_NIL;
    c->lru_next = h->conv_free;
    if (h->conv_free != CS_NIL) {
        st->convs[h->conv_free].lru_prev = i;
    }
    h->conv_free = i;
    h->nconv--;
}

void cs_conv_changed(chat_store_t *st, cs_conv_t *c)
{
    CS_STORE64(&c->seq, cs_next_seq(st));
}

void cs_conv_touch(chat_store_t *st, cs_conv_t *c, uint64_t now_ms)
{
    cs_note_now(st, now_ms);
    c->updated_ms = now_ms;
    if (st->hdr->lru_head != cs_conv_index(st, c)) {
        lru_unlink(st, c);
        lru_push_front(st, c);
    }
    if (c->own_prev != CS_NIL) {
        own_unlink(st, c);
        own_push_front(st, c);
    }
    cs_conv_changed(st, c);
}

cs_conv_t *cs_conv_lru_victim(chat_store_t *st, const cs_conv_t *self)
{
    uint32_t i;
    for (i = st->hdr->lru_tail; i != CS_NIL; i = st->convs[i].lru_prev) {
        cs_conv_t *c = &st->convs[i];
        if (c != self && c->state == CHAT_CONV_IDLE) {
            return c;
        }
    }
    return NULL;
}

void cs_conv_evict(chat_store_t *st, cs_conv_t *c)
{
    char id[CHAT_CONV_ID_LEN + 1];
    cs_user_t *u;

    cs_conv_format_id(st, c, id);
    chat_log(CHAT_LOG_NOTICE,
             "chatbot store: evicted conversation %s (bot %s, %" PRIu32
             " messages, %" PRIu64 " bytes) to make room",
             id, c->bot, c->nmsgs, c->bytes);
    __atomic_add_fetch(&st->hdr->gauges[CHAT_G_EVICTIONS], 1, __ATOMIC_RELAXED);
    /* the owner's session list changed */
    u = cs_user_find(st, c->owner);
    if (u) {
        CS_STORE64(&u->seq, cs_next_seq(st));
    }
    conv_release(st, c);
}

/* ---- conversations: public API ------------------------------------------------ */

chat_status_t chat_store_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title, uint64_t tag,
                                     uint64_t now_ms, chat_conv_info_t *out)
{
    cs_conv_t *c;
    size_t blen;

    if (!st || !owner || !bot || tag == 0) {
        return CHAT_EINVAL;
    }
    blen = strlen(bot);
    if (blen == 0 || blen > CHAT_BOT_NAME_MAX) {
        return CHAT_EINVAL;
    }
    c = cs_conv_alloc(st, CS_NIL);
    if (!c) {
        cs_conv_t *v = cs_conv_lru_victim(st, NULL);
        if (!v) {
            return CHAT_EFULL;
        }
        cs_conv_evict(st, v);
        c = cs_conv_alloc(st, CS_NIL);
        if (!c) {
            return CHAT_EINTERNAL;
        }
    }
    memcpy(c->owner, owner->b, sizeof(owner->b));
    cs_copy_trunc(c->bot, CS_NAME_SZ, CHAT_BOT_NAME_MAX, bot);
    cs_copy_trunc(c->title, CS_TITLE_SZ, CHAT_TITLE_MAX, title);
    chat_one_line(c->title); /* a title is one line of text, whoever reads it */
    c->created_ms = now_ms;
    c->state = CHAT_CONV_IDLE;
    lru_push_front(st, c);
    own_push_front(st, c);
    cs_conv_touch(st, c, now_ms);
    CS_STORE64(&c->tag, tag);
    if (out) {
        cs_conv_info(st, c, out);
    }
    return CHAT_OK;
}

chat_status_t chat_store_conv_get(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, chat_conv_info_t *out)
{
    cs_conv_t *c;

    if (!owner) {
        return CHAT_ENOTFOUND;
    }
    c = cs_conv_find(st, owner, id);
    if (!c) {
        return CHAT_ENOTFOUND;
    }
    if (out) {
        cs_conv_info(st, c, out);
    }
    return CHAT_OK;
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

int chat_store_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                         int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                         void *baton)
{
    chat_conv_info_t info;
    uint32_t i;
    int n = 0;

    if (!st || !owner) {
        return 0;
    }
    /* the owner chain is in touch order: most recently updated first */
    for (i = st->heads[cs_head_of(st, owner->b)]; i != CS_NIL;
         i = st->convs[i].own_next) {
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
    return n;
}

chat_status_t chat_store_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, chat_conv_info_t *out)
{
    uint32_t i;

    if (!st || !owner) {
        return CHAT_ENOTFOUND;
    }
    for (i = st->heads[cs_head_of(st, owner->b)]; i != CS_NIL;
         i = st->convs[i].own_next) {
        const cs_conv_t *c = &st->convs[i];
        if (conv_matches(c, owner, bot, 0)) {
            if (out) {
                cs_conv_info(st, c, out);
            }
            return CHAT_OK;
        }
    }
    return CHAT_ENOTFOUND;
}

chat_status_t chat_store_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, const char *title, uint64_t now_ms)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    cs_copy_trunc(c->title, CS_TITLE_SZ, CHAT_TITLE_MAX, title);
    chat_one_line(c->title); /* a title is one line of text, whoever reads it */
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint32_t set, uint32_t clear,
                                    uint64_t now_ms)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if ((set | clear) & ~CS_CONV_FLAGS) {
        return CHAT_EINVAL;
    }
    c->flags = (c->flags | set) & ~clear;
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (c->state != CHAT_CONV_IDLE) {
        return CHAT_EBUSY;
    }
    conv_release(st, c);
    return CHAT_OK;
}

/* ---- generation ownership --------------------------------------------------------- */

static int gen_state_ok(uint32_t state)
{
    return state == CHAT_CONV_QUEUED || state == CHAT_CONV_GENERATING;
}

chat_status_t chat_store_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint64_t token, uint32_t state,
                                   uint64_t now_ms)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (token == 0 || !gen_state_ok(state)) {
        return CHAT_EINVAL;
    }
    if (c->gen_token != 0 && c->gen_token != token) {
        return CHAT_EBUSY;
    }
    if (c->state == CHAT_CONV_IDLE) {
        st->hdr->busy_blocks += c->nblocks;
        CS_STORE32(&c->stop_requested, 0);
        CS_STORE64(&c->gen_token, token);
    }
    c->state = state;
    c->queue_position = 0;
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_gen_state(chat_store_t *st, const char *id, uint64_t token,
                                   uint32_t state, int32_t queue_position)
{
    cs_conv_t *c = cs_conv_find(st, NULL, id);

    if (!c || token == 0 || c->gen_token != token) {
        return CHAT_ENOTFOUND;
    }
    if (!gen_state_ok(state)) {
        return CHAT_EINVAL;
    }
    c->state = state;
    c->queue_position =
        (state == CHAT_CONV_QUEUED && queue_position > 0) ? queue_position : 0;
    cs_conv_changed(st, c);
    return CHAT_OK;
}

chat_status_t chat_store_gen_end(chat_store_t *st, const char *id, uint64_t token,
                                 uint64_t now_ms)
{
    cs_conv_t *c = cs_conv_find(st, NULL, id);

    if (!c || token == 0 || c->gen_token != token) {
        return CHAT_ENOTFOUND;
    }
    st->hdr->busy_blocks -= c->nblocks;
    c->state = CHAT_CONV_IDLE;
    c->queue_position = 0;
    CS_STORE64(&c->gen_token, 0);
    CS_STORE32(&c->stop_requested, 0);
    cs_conv_touch(st, c, now_ms);
    return CHAT_OK;
}

chat_status_t chat_store_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                          const char *id)
{
    cs_conv_t *c;

    if (!owner || !(c = cs_conv_find(st, owner, id))) {
        return CHAT_ENOTFOUND;
    }
    if (c->state != CHAT_CONV_IDLE) {
        CS_STORE32(&c->stop_requested, 1);
        cs_conv_changed(st, c);
    }
    return CHAT_OK;
}

int chat_store_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token)
{
    cs_conv_t *c = conv_peek(st, id);

    /* a holder that no longer holds the conversation must stop too */
    if (!c || token == 0 || CS_LOAD64(&c->gen_token) != token) {
        return 1;
    }
    return CS_LOAD32(&c->stop_requested) != 0;
}

uint64_t chat_store_conv_seq(chat_store_t *st, const char *id)
{
    cs_conv_t *c = conv_peek(st, id);
    return c ? CS_LOAD64(&c->seq) : 0;
}

/* ---- users ---------------------------------------------------------------------- */

static uint32_t user_home(const chat_store_t *st, const uint8_t *owner)
{
    return cs_owner_hash(owner, 4) % st->l.max_users;
}

static uint32_t user_window(const chat_store_t *st)
{
    return st->l.max_users < CS_WINDOW ? st->l.max_users : CS_WINDOW;
}

cs_user_t *cs_user_find(chat_store_t *st, const uint8_t *owner)
{
    uint32_t home = user_home(st, owner), w = user_window(st), k;

    for (k = 0; k < w; k++) {
        cs_user_t *u = &st->users[(home + k) % st->l.max_users];
        if ((CS_LOAD32(&u->flags) & CS_USER_USED) && memcmp(u->owner, owner, 20) == 0) {
            return u;
        }
    }
    return NULL;
}

cs_user_t *cs_user_get(chat_store_t *st, const uint8_t *owner, uint64_t seen_ms,
                       int force)
{
    uint32_t home = user_home(st, owner), w = user_window(st), k;
    cs_user_t *u = cs_user_find(st, owner), *victim = NULL;

    if (u) {
        if (seen_ms > u->last_seen_ms) {
            u->last_seen_ms = seen_ms;
        }
        return u;
    }
    for (k = 0; k < w; k++) {
        cs_user_t *e = &st->users[(home + k) % st->l.max_users];
        if (!(e->flags & CS_USER_USED)) {
            victim = e;
            st->hdr->nusers++;
            break;
        }
        if (!victim || e->last_seen_ms < victim->last_seen_ms) {
            victim = e;
        }
    }
    if ((victim->flags & CS_USER_USED) && !force && victim->last_seen_ms > seen_ms) {
        return NULL;
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

chat_status_t chat_store_rate_take(chat_store_t *st, const chat_owner_t *owner,
                                   const chat_rate_t *rate, uint64_t now_ms,
                                   int64_t *retry_after_ms)
{
    cs_user_t *u;

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
    u = cs_user_get(st, owner->b, now_ms, 1);
    if (!(u->flags & CS_USER_BUCKET)) {
        chat_bucket_init(&u->bucket, rate, now_ms);
        u->flags |= CS_USER_BUCKET;
    }
    return chat_bucket_take(&u->bucket, rate, now_ms, retry_after_ms);
}

void chat_store_user_bump(chat_store_t *st, const chat_owner_t *owner)
{
    cs_user_t *u;
    uint64_t seq;

    if (!st || !owner) {
        return;
    }
    u = cs_user_get(st, owner->b, st->hdr->last_now_ms, 1);
    seq = cs_next_seq(st);
    CS_STORE64(&u->seq, seq);
    CS_STORE64(&st->hdr->user_events, seq);
}

uint64_t chat_store_events(chat_store_t *st)
{
    return st ? CS_LOAD64(&st->hdr->user_events) : 0;
}

uint64_t chat_store_user_seq(chat_store_t *st, const chat_owner_t *owner)
{
    cs_user_t *u;

    if (!st || !owner) {
        return 0;
    }
    u = cs_user_find(st, owner->b);
    return u ? CS_LOAD64(&u->seq) : 0;
}
