/* chat_store.c - the shared-memory store provider's region: layout, format,
 * attach and load (with a full consistency check and sweep), the seq clock
 * and owner keys.
 *
 * Conversations are in chat_store_conv.c, the user table in
 * chat_store_user.c, generation ownership in chat_store_gen.c, quotas and
 * eviction in chat_store_evict.c, the text arena in chat_store_msg.c,
 * backends in chat_store_backend.c, metrics in chat_metrics.c, locks and
 * the process table in chat_store_lock.c, recovery after a restart and
 * migration between layouts in chat_store_migrate.c, the provider table in
 * chat_store_api.c; the structures are in chat_store_layout.h.
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
 *   | cs_hdr_t: magic "MODCHATS", version, byte-order mark, structure    |
 *   |   sizes, the layout, section offsets, the pool (free lists, class  |
 *   |   usage: pool lock), seq clock, gauges, error-code table           |
 *   +--------------------------------------------------------------------+ 64-aligned
 *   | locks: nlocks x cs_lock_t (128): robust process-shared mutexes     |
 *   |   [0, S) shards | S pool | S+1 misc | S+2+i backend i              |
 *   +--------------------------------------------------------------------+
 *   | undo logs: (S + 1) x 8 KiB, one per shard lock and the pool lock   |
 *   +--------------------------------------------------------------------+
 *   | processes: max_procs x cs_proc_t (128): a life mutex each child    |
 *   |   holds while it lives, epoch, pid                                 |
 *   +--------------------------------------------------------------------+
 *   | shard counters: S x 64                                             |
 *   +--------------------------------------------------------------------+
 *   | user table: max_users x cs_user_t (72), split in S equal parts;    |
 *   |   part = shard of the owner, open addressing in a window of 8;     |
 *   |   rate-limit and creation buckets, change seq                      |
 *   +--------------------------------------------------------------------+
 *   | owner records: S x P x cs_owner_t (48), P = 4 x conversations / S  |
 *   |   (>= 32); identities holding conversations: quota usage and their |
 *   |   conversations (doubly linked, most recently touched first)       |
 *   +--------------------------------------------------------------------+
 *   | conversation slots: max_conversations x cs_conv_t (336)            |
 *   |   id = hex8(slot) hex16(tag); in use: on the owner's list, under   |
 *   |   the owner's shard; free: on the pool's free list (own_next)      |
 *   +--------------------------------------------------------------------+
 *   | slot info: max_conversations x {updated, owner, flags} (16): the   |
 *   |   packed index a victim search scans                               |
 *   +--------------------------------------------------------------------+
 *   | backends: max_backends x cs_backend_t (288)                        |
 *   | holders: max_backends x max_active x {ticket, beat, proc} (24),    |
 *   |   dense: [0, nactive) in use                                       |
 *   | queues: max_backends x queue_cap x {ticket, poll, proc} (24), rings|
 *   +--------------------------------------------------------------------+
 *   | metric series: metric_series x cs_series_t (640)                   |
 *   +--------------------------------------------------------------------+
 *   | text arena: nblocks = history_bytes / 256 blocks of 256 bytes      |
 *   +--------------------------------------------------------------------+
 *
 * The blocks of a conversation form ONE chain, message after message; each
 * message's first block (HEAD) carries its header, and the messages are
 * also linked head to head (next_msg/prev_msg) to walk them quickly:
 *
 *   conv.first_msg                     conv.last_msg         conv.last_blk
 *        |                                  |                      |
 *        v                                  v                      v
 *   +----------+      +------+        +----------+           +------+
 *   |HEAD msg 0|----->|CONT  |------->|HEAD msg 1|---------->|CONT  |--> NIL
 *   | hdr, 216 |      | 248  |        | hdr, 216 |           | 248  |
 *   +----------+      +------+        +----------+           +------+
 *        next_msg ------------------------> (<- prev_msg)
 *
 * A message of len bytes always occupies exactly cs_blocks_for(len) blocks,
 * so extending the newest message is O(delta), and freeing any run of
 * messages - the oldest, the newest few, the whole conversation - splices
 * one piece of the chain onto the free list in O(1) writes.
 *
 * Locking (chat_store_lock.c has the mechanics). An identity's user entry,
 * owner record, conversations and their blocks are all under the lock of
 * its shard (a hash of the identity, 64 shards by default), so a chat turn
 * takes its own shard's lock and, a few times per answer, the pool lock
 * for a short pop or push of free space. Nothing on that path is global
 * except the pool lock's few instructions. Lock order: a thread may wait
 * only for a lock of higher index than every lock it holds (shards in
 * index order, then pool, misc, backends); a lower shard is only ever
 * tried (a victim search skips a busy one).
 *
 * Crash safety: shard and pool updates are undo-logged, backend and
 * registration state is repaired; a resource handed between the pool and
 * a shard is committed by its giver first, so a kill between the two
 * commits leaks it until the next sweep instead of giving it to two
 * owners. Attach and load check everything below with every lock held.
 */
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

typedef struct {
    uint64_t off_locks, off_logs, off_procs, off_shards, off_users, off_owners, off_convs,
        off_slots, off_backends, off_holders, off_queue, off_series, off_arena, total;
    uint32_t nblocks, nshards, nlocks, owners_per_shard, max_procs;
} cs_geom_t;

static uint64_t align_up(uint64_t v)
{
    return (v + CS_ALIGN - 1) & ~(uint64_t)(CS_ALIGN - 1);
}

static uint32_t procs_of(const chat_store_layout_t *l)
{
    return l->max_procs ? l->max_procs : 64;
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
           l->metric_series <= CS_MAX_SERIES && procs_of(l) <= CS_MAX_PROCS;
}

/* Shards: a power of two, at most 64, with at least 4 conversations and a
 * full user window each. */
static uint32_t shards_for(const chat_store_layout_t *l)
{
    uint32_t n = 1;

    while (n * 2 <= CS_MAX_SHARDS && n * 2 * 4 <= l->max_conversations &&
           n * 2 * CS_WINDOW <= l->max_users) {
        n *= 2;
    }
    return n;
}

/* Section offsets for a layout; returns the total size or 0 if invalid. */
static uint64_t geometry(const chat_store_layout_t *l, cs_geom_t *g)
{
    uint64_t off, per;

    if (!layout_ok(l)) {
        return 0;
    }
    g->nblocks = (uint32_t)(l->history_bytes / CS_BLOCK);
    g->nshards = shards_for(l);
    per = ((uint64_t)l->max_conversations + g->nshards - 1) / g->nshards;
    g->owners_per_shard =
        (uint32_t)(4 * per < CS_OWNER_WINDOW ? CS_OWNER_WINDOW : 4 * per);
    g->nlocks = g->nshards + 2 + l->max_backends;
    g->max_procs = procs_of(l);
    off = align_up(sizeof(cs_hdr_t));
    g->off_locks = off;
    off = align_up(off + (uint64_t)g->nlocks * sizeof(cs_lock_t));
    g->off_logs = off;
    off = align_up(off + (uint64_t)(g->nshards + 1) * CS_LOG_BYTES);
    g->off_procs = off;
    off = align_up(off + (uint64_t)g->max_procs * sizeof(cs_proc_t));
    g->off_shards = off;
    off = align_up(off + (uint64_t)g->nshards * sizeof(cs_shard_t));
    g->off_users = off;
    off = align_up(off + (uint64_t)l->max_users * sizeof(cs_user_t));
    g->off_owners = off;
    off = align_up(off + (uint64_t)g->nshards * g->owners_per_shard * sizeof(cs_owner_t));
    g->off_convs = off;
    off = align_up(off + (uint64_t)l->max_conversations * sizeof(cs_conv_t));
    g->off_slots = off;
    off = align_up(off + (uint64_t)l->max_conversations * sizeof(cs_slotinfo_t));
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
    st->head.provider = &cs_shm_provider;
    st->base = base;
    st->size = size;
    st->hdr = base;
    st->locks = (cs_lock_t *)(void *)(st->base + g->off_locks);
    st->logs = st->base + g->off_logs;
    st->procs = (cs_proc_t *)(void *)(st->base + g->off_procs);
    st->shards = (cs_shard_t *)(void *)(st->base + g->off_shards);
    st->users = (cs_user_t *)(void *)(st->base + g->off_users);
    st->owners = (cs_owner_t *)(void *)(st->base + g->off_owners);
    st->convs = (cs_conv_t *)(void *)(st->base + g->off_convs);
    st->slots = (cs_slotinfo_t *)(void *)(st->base + g->off_slots);
    st->backends = (cs_backend_t *)(void *)(st->base + g->off_backends);
    st->holders = (cs_holder_t *)(void *)(st->base + g->off_holders);
    st->queue = (cs_waiter_t *)(void *)(st->base + g->off_queue);
    st->series = (cs_series_t *)(void *)(st->base + g->off_series);
    st->arena = st->base + g->off_arena;
    st->l = *l;
    st->l.max_procs = g->max_procs;
    st->nblocks = g->nblocks;
    st->nshards = g->nshards;
    st->owners_per_shard = g->owners_per_shard;
    st->proc_slot = -1;
    chat_store_policy_default(&st->policy);
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
    h->lock_size = sizeof(cs_lock_t);
    h->mutex_size = sizeof(pthread_mutex_t);
    h->owner_size = sizeof(cs_owner_t);
    h->proc_size = sizeof(cs_proc_t);
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
    h->max_procs = g.max_procs;
    h->nblocks = g.nblocks;
    h->nshards = g.nshards;
    h->nlocks = g.nlocks;
    h->owners_per_shard = g.owners_per_shard;
    h->off_locks = g.off_locks;
    h->off_logs = g.off_logs;
    h->off_procs = g.off_procs;
    h->off_shards = g.off_shards;
    h->off_users = g.off_users;
    h->off_owners = g.off_owners;
    h->off_convs = g.off_convs;
    h->off_slots = g.off_slots;
    h->off_backends = g.off_backends;
    h->off_holders = g.off_holders;
    h->off_queue = g.off_queue;
    h->off_series = g.off_series;
    h->off_arena = g.off_arena;
    h->started_ms = now_ms;
    h->last_now_ms = now_ms;
    for (i = 0; i < l->max_conversations; i++) {
        cs_conv_t *c = &st->convs[i];
        c->own_prev = c->own_next = CS_NIL;
        c->first_msg = c->last_msg = c->last_blk = CS_NIL;
        c->owner_ref = CS_NIL;
        st->slots[i].owner_ref = CS_NIL;
    }
    for (i = 0; i < g.nshards * g.owners_per_shard; i++) {
        st->owners[i].head = st->owners[i].tail = CS_NIL;
    }
    cs_free_lists_rebuild(st);
    if (cs_locks_init(st) != CHAT_OK) {
        free(st);
        return CHAT_EINTERNAL;
    }
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
        h->series_size != sizeof(cs_series_t) || h->lock_size != sizeof(cs_lock_t) ||
        h->mutex_size != sizeof(pthread_mutex_t) || h->owner_size != sizeof(cs_owner_t) ||
        h->proc_size != sizeof(cs_proc_t) || h->max_procs == 0) {
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
    l->max_procs = h->max_procs;
    if (!geometry(l, g) || h->total_size != g->total || h->nblocks != g->nblocks ||
        h->nshards != g->nshards || h->nlocks != g->nlocks ||
        h->owners_per_shard != g->owners_per_shard || h->off_locks != g->off_locks ||
        h->off_logs != g->off_logs || h->off_procs != g->off_procs ||
        h->off_shards != g->off_shards || h->off_users != g->off_users ||
        h->off_owners != g->off_owners || h->off_convs != g->off_convs ||
        h->off_slots != g->off_slots || h->off_backends != g->off_backends ||
        h->off_holders != g->off_holders || h->off_queue != g->off_queue ||
        h->off_series != g->off_series || h->off_arena != g->off_arena) {
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
           a->metric_series == b->metric_series && procs_of(a) == procs_of(b);
}

/* Finds leaks and checks everything, holding every lock. */
static chat_status_t check_and_sweep(chat_store_t *st)
{
    uint64_t leaked = 0;
    chat_status_t rc;

    if (cs_lock_all(st) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    rc = cs_validate_ex(st, &leaked);
    if (rc == CHAT_OK && leaked) {
        cs_sweep(st);
        rc = cs_validate(st);
    }
    if (rc == CHAT_OK) {
        CS_STORE32(&st->hdr->sweep_needed, 0);
    }
    cs_unlock_all(st);
    return rc;
}

/* attach and load: the region's header must match l; image: reset the
 * locks and the process table first (a saved image has no update in
 * progress). Then everything is checked, holding every lock. */
static chat_status_t open_region(chat_store_t **pst, void *base, size_t size,
                                 const chat_store_layout_t *l, int image)
{
    chat_store_layout_t rec;
    cs_geom_t g;
    chat_store_t *st;
    chat_status_t rc;
    uint32_t i;

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
    if (image) {
        /* a saved image is written with every lock held and every log empty */
        for (i = 0; i < g.nlocks; i++) {
            if (st->locks[i].log_len != 0) {
                free(st);
                return CHAT_EPARSE;
            }
        }
        if (cs_locks_init(st) != CHAT_OK) {
            free(st);
            return CHAT_EINTERNAL;
        }
    }
    rc = check_and_sweep(st);
    if (rc != CHAT_OK) {
        free(st);
        return rc;
    }
    *pst = st;
    return CHAT_OK;
}

chat_status_t chat_store_attach(chat_store_t **pst, void *base, size_t size,
                                const chat_store_layout_t *l)
{
    return open_region(pst, base, size, l, 0);
}

chat_status_t chat_store_load(chat_store_t **pst, void *base, size_t size,
                              const chat_store_layout_t *l)
{
    return open_region(pst, base, size, l, 1);
}

void cs_shm_detach(chat_store_t *st)
{
    free(st);
}

uint64_t cs_next_seq(chat_store_t *st)
{
    return CS_ADD64(&st->hdr->seq_clock, 1);
}

void cs_note_now(chat_store_t *st, uint64_t now_ms)
{
    uint64_t cur = CS_PEEK64(&st->hdr->last_now_ms);

    while (now_ms > cur &&
           !__atomic_compare_exchange_n(&st->hdr->last_now_ms, &cur, now_ms, 0,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

uint64_t cs_now(chat_store_t *st)
{
    return CS_PEEK64(&st->hdr->last_now_ms);
}

void chat_owner_from(chat_owner_t *o, const char *identity, size_t len)
{
    chat_sha1(identity ? identity : "", identity ? len : 0, o->b);
    o->auth = identity && len >= 2 && identity[0] == 'u' && identity[1] == ':';
}

void chat_store_policy_default(chat_store_policy_t *p)
{
    memset(p, 0, sizeof(*p));
    p->anon_share_pct = 100;
}
