/* chat_store.c - the shared store region: layout, format, attach (with a
 * full consistency check), migrate between layouts, recover after a
 * restart, and owner keys.
 *
 * Conversations and users are in chat_store_conv.c, the text arena in
 * chat_store_msg.c, backends in chat_store_backend.c, metrics in
 * chat_metrics.c; the structures are in chat_store_int.h.
 *
 * The region is one caller-given block of memory: an APR shared memory
 * segment mapped by every httpd child (possibly at different addresses),
 * kept across graceful restarts and written verbatim to
 * ChatbotHistoryFile. Hence: indexes and offsets only, never pointers;
 * fixed-width fields with explicit padding; a header that records the
 * format version, the layout and the structure sizes; and an attach that
 * trusts nothing it reads.
 *
 *   offset 0
 *   +--------------------------------------------------------------------+
 *   | cs_hdr_t (1472 bytes)                                              |
 *   |   magic "MODCHATS", version, byte-order mark, structure sizes,     |
 *   |   total size, the layout, section offsets, list heads & counts,    |
 *   |   seq clock, gauges[8], error-code table[24] (48 bytes each)       |
 *   +--------------------------------------------------------------------+ 64-aligned
 *   | user table: max_users x cs_user_t (56)                             |
 *   |   open addressing, key = owner (SHA-1), probe window 8 from        |
 *   |   hash % max_users; holds the token bucket and the change seq      |
 *   +--------------------------------------------------------------------+
 *   | conversation slots: max_conversations x cs_conv_t (336)            |
 *   |   id = hex8(slot) hex16(tag); in-use slots are on two doubly       |
 *   |   linked lists: the global LRU (lru_prev/next, head = most         |
 *   |   recently updated) and their owner-hash chain (own_prev/next);    |
 *   |   free slots are on the free list (lru_prev/next)                  |
 *   +--------------------------------------------------------------------+
 *   | owner-hash heads: nheads x uint32 (nheads = 2^k >= max_convs)      |
 *   +--------------------------------------------------------------------+
 *   | backends: max_backends x cs_backend_t (280)                        |
 *   +--------------------------------------------------------------------+
 *   | holders: max_backends x max_active x {ticket, beat_ms} (16)        |
 *   +--------------------------------------------------------------------+
 *   | queues: max_backends x queue_cap x {ticket, poll_ms} (16), rings   |
 *   +--------------------------------------------------------------------+
 *   | metric series: metric_series x cs_series_t (640)                   |
 *   +--------------------------------------------------------------------+
 *   | text arena: nblocks = history_bytes / 256 blocks of 256 bytes      |
 *   +--------------------------------------------------------------------+
 *
 * A message is a chain of blocks; the messages of a conversation form a
 * doubly linked list of their first (HEAD) blocks:
 *
 *   conv.first_msg                               conv.last_msg  conv.last_blk
 *        |                                            |              |
 *        v                                            v              v
 *   +-----------+---------+      +------+        +-----------+    +------+
 *   |next |HEAD |msghdr   |      |next  |        |next |HEAD |    |next  |
 *   |-----+-----| ts,len, |----->|CONT  |        |-----+-----|--->|CONT  |
 *   | 216 text bytes      |      |248 B |        | ...       |    |248 B |
 *   +-----------+---------+      +------+        +-----------+    +------+
 *         msghdr.next_msg  -------------------------->  (prev_msg <-)
 *
 * Free blocks are singly linked from hdr.blk_free (kind FREE). A message of
 * len bytes always occupies exactly cs_blocks_for(len) blocks, so the fill
 * of the last block follows from len and extending it is O(delta).
 *
 * Eviction: when a conversation slot or arena blocks are needed and none are
 * free, the least recently updated IDLE conversation (any owner, never the
 * one being written) is evicted whole; if none is left, the oldest messages
 * of the conversation being written are dropped (never its last message).
 * Before evicting anything the arena path checks that enough blocks can be
 * reclaimed, so a request that cannot succeed destroys nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

typedef struct {
    uint64_t off_users, off_convs, off_heads, off_backends, off_holders, off_queue,
        off_series, off_arena, total;
    uint32_t nblocks, nheads;
} cs_geom_t;

static uint64_t align_up(uint64_t v)
{
    return (v + CS_ALIGN - 1) & ~(uint64_t)(CS_ALIGN - 1);
}

static int layout_ok(const chat_store_layout_t *l)
{
    return l && l->max_users > 0 && l->max_users <= CS_MAX_USERS &&
           l->max_conversations > 0 && l->max_conversations <= CS_MAX_CONVS &&
           l->max_messages > 0 && l->max_messages <= CS_MAX_MESSAGES &&
           l->max_message_bytes > 0 && l->max_message_bytes <= CS_MAX_MSG_BYTES &&
           l->history_bytes >= CS_MIN_HISTORY && l->history_bytes <= CS_MAX_HISTORY &&
           l->max_backends > 0 && l->max_backends <= CS_MAX_BACKENDS &&
           l->queue_cap > 0 && l->queue_cap <= CS_MAX_QUEUE && l->max_active > 0 &&
           l->max_active <= CS_MAX_ACTIVE && l->metric_series > 0 &&
           l->metric_series <= CS_MAX_SERIES;
}

/* Section offsets for a layout; returns the total size or 0 if invalid. */
static uint64_t geometry(const chat_store_layout_t *l, cs_geom_t *g)
{
    uint64_t off;

    if (!layout_ok(l)) {
        return 0;
    }
    g->nblocks = (uint32_t)(l->history_bytes / CS_BLOCK);
    g->nheads = 1;
    while (g->nheads < l->max_conversations) {
        g->nheads <<= 1;
    }
    off = align_up(sizeof(cs_hdr_t));
    g->off_users = off;
    off = align_up(off + (uint64_t)l->max_users * sizeof(cs_user_t));
    g->off_convs = off;
    off = align_up(off + (uint64_t)l->max_conversations * sizeof(cs_conv_t));
    g->off_heads = off;
    off = align_up(off + (uint64_t)g->nheads * sizeof(uint32_t));
    g->off_backends = off;
    off = align_up(off + (uint64_t)l->max_backends * sizeof(cs_backend_t));
    g->off_holders = off;
    off = align_up(off + (uint64_t)l->max_backends * l->max_active * sizeof(cs_holder_t));
    g->off_queue = off;
    off = align_up(off + (uint64_t)l->max_backends * l->queue_cap * sizeof(cs_waiter_t));
    g->off_series = off;
    off = align_up(off + (uint64_t)l->metric_series * sizeof(cs_series_t));
    g->off_arena = off;
    off += (uint64_t)g->nblocks * CS_BLOCK;
    if (off > (uint64_t)SIZE_MAX) {
        return 0;
    }
    g->total = off;
    return off;
}

size_t chat_store_size(const chat_store_layout_t *l)
{
    cs_geom_t g;
    return (size_t)geometry(l, &g);
}

static chat_store_t *bind(void *base, size_t size, const chat_store_layout_t *l,
                          const cs_geom_t *g)
{
    chat_store_t *st = calloc(1, sizeof(*st));
    if (!st) {
        return NULL;
    }
    st->base = base;
    st->size = size;
    st->hdr = base;
    st->users = (cs_user_t *)(void *)(st->base + g->off_users);
    st->convs = (cs_conv_t *)(void *)(st->base + g->off_convs);
    st->heads = (uint32_t *)(void *)(st->base + g->off_heads);
    st->backends = (cs_backend_t *)(void *)(st->base + g->off_backends);
    st->holders = (cs_holder_t *)(void *)(st->base + g->off_holders);
    st->queue = (cs_waiter_t *)(void *)(st->base + g->off_queue);
    st->series = (cs_series_t *)(void *)(st->base + g->off_series);
    st->arena = st->base + g->off_arena;
    st->l = *l;
    st->nblocks = g->nblocks;
    st->nheads = g->nheads;
    return st;
}

chat_status_t chat_store_format(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l, uint64_t now_ms)
{
    cs_geom_t g;
    cs_hdr_t *h;
    chat_store_t *st;
    uint32_t i;

    if (pst) {
        *pst = NULL;
    }
    if (!pst || !base || ((uintptr_t)base & 7) || !geometry(l, &g) || size < g.total) {
        return CHAT_EINVAL;
    }
    st = bind(base, size, l, &g);
    if (!st) {
        return CHAT_ENOMEM;
    }
    memset(base, 0, (size_t)g.total);
    h = st->hdr;
    memcpy(h->magic, CS_MAGIC, 8);
    h->version = CS_VERSION;
    h->bom = CS_BOM;
    h->hdr_size = sizeof(cs_hdr_t);
    h->block_size = CS_BLOCK;
    h->conv_size = sizeof(cs_conv_t);
    h->user_size = sizeof(cs_user_t);
    h->backend_size = sizeof(cs_backend_t);
    h->series_size = sizeof(cs_series_t);
    h->total_size = g.total;
    h->max_users = l->max_users;
    h->max_conversations = l->max_conversations;
    h->max_messages = l->max_messages;
    h->max_message_bytes = l->max_message_bytes;
    h->history_bytes = l->history_bytes;
    h->max_backends = l->max_backends;
    h->queue_cap = l->queue_cap;
    h->max_active = l->max_active;
    h->metric_series = l->metric_series;
    h->nblocks = g.nblocks;
    h->nheads = g.nheads;
    h->off_users = g.off_users;
    h->off_convs = g.off_convs;
    h->off_heads = g.off_heads;
    h->off_backends = g.off_backends;
    h->off_holders = g.off_holders;
    h->off_queue = g.off_queue;
    h->off_series = g.off_series;
    h->off_arena = g.off_arena;
    h->started_ms = now_ms;
    h->last_now_ms = now_ms;
    h->lru_head = h->lru_tail = CS_NIL;

    /* every conversation slot on the free list, in order */
    for (i = 0; i < l->max_conversations; i++) {
        cs_conv_t *c = &st->convs[i];
        c->lru_prev = i ? i - 1 : CS_NIL;
        c->lru_next = i + 1 < l->max_conversations ? i + 1 : CS_NIL;
        c->own_prev = c->own_next = CS_NIL;
        c->first_msg = c->last_msg = c->last_blk = CS_NIL;
    }
    h->conv_free = 0;
    for (i = 0; i < g.nheads; i++) {
        st->heads[i] = CS_NIL;
    }
    /* every block on the free list, in order */
    for (i = 0; i < g.nblocks; i++) {
        cs_blkhdr_t *b = cs_bh(st, i);
        b->next = i + 1 < g.nblocks ? i + 1 : CS_NIL;
        b->kind = CS_BLK_FREE;
    }
    h->blk_free = 0;
    h->blk_nfree = g.nblocks;
    *pst = st;
    return CHAT_OK;
}

/* Checks the identification part of a header and returns the recorded
 * layout and its geometry. CHAT_OK or CHAT_EPARSE. */
static chat_status_t check_header_only(const void *base, size_t size,
                                       chat_store_layout_t *l, cs_geom_t *g)
{
    const cs_hdr_t *h = base;

    if (!base || ((uintptr_t)base & 7) || size < sizeof(cs_hdr_t)) {
        return CHAT_EPARSE;
    }
    if (memcmp(h->magic, CS_MAGIC, 8) != 0 || h->version != CS_VERSION ||
        h->bom != CS_BOM || h->hdr_size != sizeof(cs_hdr_t) ||
        h->block_size != CS_BLOCK || h->conv_size != sizeof(cs_conv_t) ||
        h->user_size != sizeof(cs_user_t) || h->backend_size != sizeof(cs_backend_t) ||
        h->series_size != sizeof(cs_series_t)) {
        return CHAT_EPARSE;
    }
    l->max_users = h->max_users;
    l->max_conversations = h->max_conversations;
    l->max_messages = h->max_messages;
    l->max_message_bytes = h->max_message_bytes;
    l->history_bytes = h->history_bytes;
    l->max_backends = h->max_backends;
    l->queue_cap = h->queue_cap;
    l->max_active = h->max_active;
    l->metric_series = h->metric_series;
    if (!geometry(l, g) || h->total_size != g->total || h->nblocks != g->nblocks ||
        h->nheads != g->nheads || h->off_users != g->off_users ||
        h->off_convs != g->off_convs || h->off_heads != g->off_heads ||
        h->off_backends != g->off_backends || h->off_holders != g->off_holders ||
        h->off_queue != g->off_queue || h->off_series != g->off_series ||
        h->off_arena != g->off_arena) {
        return CHAT_EPARSE;
    }
    return CHAT_OK;
}

/* As check_header_only, and the region must hold the whole image. */
static chat_status_t check_header(const void *base, size_t size, chat_store_layout_t *l,
                                  cs_geom_t *g)
{
    chat_status_t rc = check_header_only(base, size, l, g);

    if (rc == CHAT_OK && size < g->total) {
        return CHAT_EPARSE;
    }
    return rc;
}

size_t chat_store_image_size(const void *hdr, size_t len)
{
    chat_store_layout_t l;
    cs_geom_t g;

    if (check_header_only(hdr, len, &l, &g) != CHAT_OK) {
        return 0;
    }
    return (size_t)g.total;
}

chat_status_t chat_store_layout_of(const void *base, size_t size,
                                   chat_store_layout_t *out)
{
    cs_geom_t g;
    chat_store_layout_t l;

    if (!out) {
        return CHAT_EINVAL;
    }
    if (check_header(base, size, &l, &g) != CHAT_OK) {
        return CHAT_EPARSE;
    }
    *out = l;
    return CHAT_OK;
}

int chat_store_layout_equal(const chat_store_layout_t *a, const chat_store_layout_t *b)
{
    return a->max_users == b->max_users && a->max_conversations == b->max_conversations &&
           a->max_messages == b->max_messages &&
           a->max_message_bytes == b->max_message_bytes &&
           a->history_bytes == b->history_bytes && a->max_backends == b->max_backends &&
           a->queue_cap == b->queue_cap && a->max_active == b->max_active &&
           a->metric_series == b->metric_series;
}

chat_status_t chat_store_attach(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l)
{
    chat_store_layout_t rec;
    cs_geom_t g;
    chat_store_t *st;
    chat_status_t rc;

    if (pst) {
        *pst = NULL;
    }
    if (!pst || !base || !l) {
        return CHAT_EINVAL;
    }
    rc = check_header(base, size, &rec, &g);
    if (rc != CHAT_OK) {
        return rc;
    }
    if (!chat_store_layout_equal(&rec, l)) {
        return CHAT_EINVAL;
    }
    st = bind(base, size, &rec, &g);
    if (!st) {
        return CHAT_ENOMEM;
    }
    rc = cs_validate(st);
    if (rc != CHAT_OK) {
        free(st);
        return rc;
    }
    *pst = st;
    return CHAT_OK;
}

void chat_store_detach(chat_store_t *st)
{
    free(st);
}

uint64_t cs_next_seq(chat_store_t *st)
{
    return CS_ADD64(&st->hdr->seq_clock, 1);
}

void cs_note_now(chat_store_t *st, uint64_t now_ms)
{
    if (now_ms > st->hdr->last_now_ms) {
        st->hdr->last_now_ms = now_ms;
    }
}

void chat_owner_from(chat_owner_t *o, const char *identity, size_t len)
{
    chat_sha1(identity ? identity : "", identity ? len : 0, o->b);
}

/* ---- validation ----------------------------------------------------------- */

#define BIT_SET(m, i) ((m)[(i) >> 3] |= (uint8_t)(1u << ((i)&7)))
#define BIT_GET(m, i) (((m)[(i) >> 3] >> ((i)&7)) & 1u)

#define SEEN_LRU 1u
#define SEEN_FREE 2u
#define SEEN_OWN 4u

/* Walks the conversation lists; marks seen[] bits. */
static int check_conv_lists(const chat_store_t *st, uint8_t *seen)
{
    const cs_hdr_t *h = st->hdr;
    uint32_t nc = st->l.max_conversations, i, prev, n, b;

    /* LRU list: exactly the in-use slots, prev links consistent */
    prev = CS_NIL;
    n = 0;
    for (i = h->lru_head; i != CS_NIL; i = st->convs[i].lru_next) {
        if (i >= nc || !st->convs[i].in_use || (seen[i] & SEEN_LRU) ||
            st->convs[i].lru_prev != prev || n >= h->nconv) {
            return 0;
        }
        seen[i] |= SEEN_LRU;
        prev = i;
        n++;
    }
    if (n != h->nconv || prev != h->lru_tail) {
        return 0;
    }
    /* free list: exactly the free slots */
    prev = CS_NIL;
    n = 0;
    for (i = h->conv_free; i != CS_NIL; i = st->convs[i].lru_next) {
        if (i >= nc || st->convs[i].in_use || (seen[i] & SEEN_FREE) ||
            st->convs[i].lru_prev != prev || n >= nc - h->nconv) {
            return 0;
        }
        seen[i] |= SEEN_FREE;
        prev = i;
        n++;
    }
    if (n != nc - h->nconv) {
        return 0;
    }
    /* owner chains: every in-use slot once, in the chain of its hash */
    n = 0;
    for (b = 0; b < st->nheads; b++) {
        prev = CS_NIL;
        for (i = st->heads[b]; i != CS_NIL; i = st->convs[i].own_next) {
            if (i >= nc || !st->convs[i].in_use || (seen[i] & SEEN_OWN) ||
                st->convs[i].own_prev != prev ||
                cs_head_of(st, st->convs[i].owner) != b || n >= h->nconv) {
                return 0;
            }
            seen[i] |= SEEN_OWN;
            prev = i;
            n++;
        }
    }
    return n == h->nconv;
}

/* Walks the messages of c, marking their blocks; checks every count. */
static int check_messages(const chat_store_t *st, const cs_conv_t *c, uint8_t *bmap,
                          uint64_t *nused)
{
    uint32_t nb = st->nblocks, m, prev = CS_NIL, n = 0, last_blk = CS_NIL;
    uint64_t bytes = 0, blocks = 0;

    if (c->nmsgs == 0 &&
        (c->first_msg != CS_NIL || c->last_msg != CS_NIL || c->last_blk != CS_NIL)) {
        return 0;
    }
    for (m = c->first_msg; m != CS_NIL;) {
        const cs_msghdr_t *mh;
        uint64_t k, cnt = 1;
        uint32_t b;

        if (n >= c->nmsgs || m >= nb || BIT_GET(bmap, m) ||
            cs_bh(st, m)->kind != CS_BLK_HEAD) {
            return 0;
        }
        mh = cs_mh(st, m);
        if (mh->prev_msg != prev || mh->role > CHAT_ROLE_TOOL ||
            (mh->flags & ~CS_MSG_FLAGS) || mh->len > st->l.max_message_bytes) {
            return 0;
        }
        BIT_SET(bmap, m);
        k = cs_blocks_for(mh->len);
        last_blk = m;
        for (b = cs_bh(st, m)->next; b != CS_NIL; b = cs_bh(st, b)->next) {
            if (cnt >= k || b >= nb || BIT_GET(bmap, b) ||
                cs_bh(st, b)->kind != CS_BLK_CONT) {
                return 0;
            }
            BIT_SET(bmap, b);
            last_blk = b;
            cnt++;
        }
        if (cnt != k) {
            return 0;
        }
        bytes += mh->len;
        blocks += k;
        n++;
        prev = m;
        m = mh->next_msg;
    }
    if (n != c->nmsgs || prev != c->last_msg || last_blk != c->last_blk ||
        bytes != c->bytes || blocks != c->nblocks) {
        return 0;
    }
    *nused += blocks;
    return 1;
}

static int check_convs(const chat_store_t *st, uint8_t *seen, uint8_t *bmap)
{
    const cs_hdr_t *h = st->hdr;
    uint32_t nc = st->l.max_conversations, nb = st->nblocks, i, n = 0;
    uint64_t busy = 0, nused = 0, nfree = 0;

    if (h->nconv > nc || h->blk_nfree > nb || h->busy_blocks > nb) {
        return 0;
    }
    for (i = 0; i < nc; i++) {
        const cs_conv_t *c = &st->convs[i];
        if (c->in_use > 1 || (c->in_use != 0) != (c->tag != 0)) {
            return 0;
        }
        if (!c->in_use) {
            continue;
        }
        if (c->state > CHAT_CONV_GENERATING ||
            (c->state == CHAT_CONV_IDLE) != (c->gen_token == 0) ||
            (c->flags & ~CS_CONV_FLAGS) || c->queue_position < 0 ||
            c->stop_requested > 1 || c->nmsgs > st->l.max_messages || c->nblocks > nb ||
            !cs_strok(c->bot, CHAT_BOT_NAME_MAX + 1) || !c->bot[0] ||
            !cs_strok(c->title, CHAT_TITLE_MAX + 1)) {
            return 0;
        }
        if (c->state != CHAT_CONV_IDLE) {
            busy += c->nblocks;
        }
        n++;
    }
    if (n != h->nconv || busy != h->busy_blocks || !check_conv_lists(st, seen)) {
        return 0;
    }
    /* block free list */
    for (i = h->blk_free; i != CS_NIL; i = cs_bh(st, i)->next) {
        if (i >= nb || nfree >= h->blk_nfree || BIT_GET(bmap, i) ||
            cs_bh(st, i)->kind != CS_BLK_FREE) {
            return 0;
        }
        BIT_SET(bmap, i);
        nfree++;
    }
    if (nfree != h->blk_nfree) {
        return 0;
    }
    for (i = 0; i < nc; i++) {
        if (st->convs[i].in_use && !check_messages(st, &st->convs[i], bmap, &nused)) {
            return 0;
        }
    }
    /* no leaked block */
    return nused + nfree == nb;
}

static int check_users(const chat_store_t *st)
{
    uint32_t nu = st->l.max_users, win = nu < CS_WINDOW ? nu : CS_WINDOW, i, k, n = 0;
    const int64_t maxtok = (int64_t)UINT32_MAX * 1000000;

    for (i = 0; i < nu; i++) {
        const cs_user_t *u = &st->users[i];
        uint32_t home;
        int inwin = 0;
        if (u->flags & ~(CS_USER_USED | CS_USER_BUCKET)) {
            return 0;
        }
        if (!(u->flags & CS_USER_USED)) {
            continue;
        }
        if (u->bucket.utokens < 0 || u->bucket.utokens > maxtok) {
            return 0;
        }
        home = cs_owner_hash(u->owner, 4) % nu;
        for (k = 0; k < win; k++) {
            uint32_t j = (home + k) % nu;
            if (j == i) {
                inwin = 1;
            }
            else if ((st->users[j].flags & CS_USER_USED) &&
                     memcmp(st->users[j].owner, u->owner, 20) == 0) {
                return 0; /* duplicate key */
            }
        }
        if (!inwin) {
            return 0;
        }
        n++;
    }
    return n == st->hdr->nusers;
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
        uint32_t n = 0;

        if (b->used != (i < h->nbackends ? 1u : 0u)) {
            return 0;
        }
        for (k = 0; k < st->l.max_active; k++) {
            n += ho[k].ticket != 0;
        }
        if (n != b->nactive || b->q_count > st->l.queue_cap ||
            b->q_head >= st->l.queue_cap) {
            return 0;
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

chat_status_t cs_validate(const chat_store_t *st)
{
    uint8_t *seen, *bmap;
    int ok;

    seen = calloc(st->l.max_conversations, 1);
    bmap = calloc(((size_t)st->nblocks + 7) / 8, 1);
    if (!seen || !bmap) {
        free(seen);
        free(bmap);
        return CHAT_ENOMEM;
    }
    ok = st->hdr->nusers <= st->l.max_users && check_convs(st, seen, bmap) &&
         check_users(st) && check_backends(st) && check_metrics(st);
    free(seen);
    free(bmap);
    return ok ? CHAT_OK : CHAT_EPARSE;
}

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
            h->busy_blocks -= c->nblocks;
            c->state = CHAT_CONV_IDLE;
            c->queue_position = 0;
            CS_STORE64(&c->gen_token, 0);
            CS_STORE32(&c->stop_requested, 0);
            cs_conv_changed(st, c);
        }
    }
    for (i = 0; i < h->nbackends; i++) {
        cs_backend_t *b = &st->backends[i];
        memset(&st->holders[(size_t)i * st->l.max_active], 0,
               (size_t)st->l.max_active * sizeof(cs_holder_t));
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
    uint32_t i;
    for (i = 0; i < src->l.max_users; i++) {
        const cs_user_t *su = &src->users[i];
        cs_user_t *du;
        if (!(su->flags & CS_USER_USED)) {
            continue;
        }
        du = cs_user_get(dst, su->owner, su->last_seen_ms, 0);
        if (du) {
            du->flags = su->flags;
            du->seq = su->seq;
            du->last_seen_ms = su->last_seen_ms;
            du->bucket = su->bucket;
        }
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
}

/* Copies message head of src into a new last message of dc. The caller
 * has checked that the blocks are free. */
static void migrate_message(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                            uint32_t head)
{
    const cs_msghdr_t *mh = cs_mh(src, head);
    uint32_t b = head;
    size_t off = 0, len = mh->len;

    cs_msg_push(dst, dc, mh->role, mh->flags, mh->ts_ms);
    while (off < len) {
        const uint8_t *p;
        size_t cap, n;
        if (b == head) {
            p = cs_blk(src, b) + CS_BLK_HDR + CS_MSG_HDR;
            cap = CS_CAP_FIRST;
        }
        else {
            p = cs_blk(src, b) + CS_BLK_HDR;
            cap = CS_CAP_NEXT;
        }
        n = len - off < cap ? len - off : cap;
        cs_msg_write(dst, dc, (const char *)p, n);
        off += n;
        b = cs_bh(src, b)->next;
    }
}

chat_status_t chat_store_migrate(chat_store_t *dst, const chat_store_t *src,
                                 uint64_t now_ms)
{
    uint32_t snc, i, kept = 0, budget;
    uint32_t *start, *slot;
    int pass;

    if (!dst || !src || dst == src || dst->base == src->base) {
        return CHAT_EINVAL;
    }
    cs_note_now(dst, now_ms);
    snc = src->l.max_conversations;
    start = malloc((size_t)snc * sizeof(uint32_t));
    slot = malloc((size_t)snc * sizeof(uint32_t));
    if (!start || !slot) {
        free(start);
        free(slot);
        return CHAT_ENOMEM;
    }
    if (CS_LOAD64(&src->hdr->seq_clock) > dst->hdr->seq_clock) {
        dst->hdr->seq_clock = CS_LOAD64(&src->hdr->seq_clock);
    }
    migrate_users(dst, src);
    migrate_backends(dst, src);
    migrate_metrics(dst, src);

    /* 1. choose, newest first, the conversations and the newest messages of
     *    each that fit dst's limits; stop at the first that cannot fit */
    for (i = 0; i < snc; i++) {
        start[i] = CS_NIL;
        slot[i] = CS_NIL;
    }
    budget = dst->hdr->blk_nfree;
    for (i = src->hdr->lru_head; i != CS_NIL && kept < dst->l.max_conversations;
         i = src->convs[i].lru_next) {
        const cs_conv_t *c = &src->convs[i];
        uint32_t m, first = CS_NIL, n = 0;
        uint64_t need = 0;
        for (m = c->last_msg; m != CS_NIL && n < dst->l.max_messages;
             m = cs_mh(src, m)->prev_msg) {
            uint64_t k = cs_blocks_for(cs_mh(src, m)->len);
            if (cs_mh(src, m)->len > dst->l.max_message_bytes || need + k > budget) {
                break;
            }
            need += k;
            first = m;
            n++;
        }
        if (c->nmsgs > 0 && n == 0) {
            break; /* dst is full */
        }
        budget -= (uint32_t)need;
        start[i] = first;
        slot[i] = CS_NIL - 1; /* chosen, slot not yet assigned */
        kept++;
    }
    /* 2. keep ids valid: a conversation keeps its slot if dst has it, the
     *    others take the remaining free slots */
    for (pass = 1; pass <= 2; pass++) {
        for (i = src->hdr->lru_head; i != CS_NIL; i = src->convs[i].lru_next) {
            cs_conv_t *dc;
            if (slot[i] != CS_NIL - 1 || (pass == 1 && i >= dst->l.max_conversations)) {
                continue;
            }
            dc = cs_conv_alloc(dst, pass == 1 ? i : CS_NIL);
            if (dc) {
                slot[i] = cs_conv_index(dst, dc);
            }
        }
    }
    /* 3. fill the slots in LRU order (newest first) */
    for (i = src->hdr->lru_head; i != CS_NIL; i = src->convs[i].lru_next) {
        const cs_conv_t *sc = &src->convs[i];
        cs_conv_t *dc;
        uint32_t m;
        if (slot[i] >= CS_NIL - 1) {
            continue;
        }
        dc = &dst->convs[slot[i]];
        dc->created_ms = sc->created_ms;
        dc->updated_ms = sc->updated_ms;
        dc->seq = CS_LOAD64(&sc->seq);
        dc->gen_token = sc->gen_token;
        memcpy(dc->owner, sc->owner, 20);
        dc->flags = sc->flags;
        dc->state = sc->state;
        dc->queue_position = sc->queue_position;
        dc->stop_requested = sc->stop_requested;
        memcpy(dc->bot, sc->bot, CS_NAME_SZ);
        memcpy(dc->title, sc->title, CS_TITLE_SZ);
        for (m = start[i]; m != CS_NIL; m = cs_mh(src, m)->next_msg) {
            migrate_message(dst, dc, src, m);
        }
        cs_lru_push_back(dst, dc);
        cs_own_push_back(dst, dc);
        CS_STORE64(&dc->tag, sc->tag);
    }
    free(start);
    free(slot);
    return CHAT_OK;
}
