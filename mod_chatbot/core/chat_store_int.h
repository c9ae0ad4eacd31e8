/* chat_store_int.h - private layout of the shared store region (the shared
 * memory provider of chat/store.h) and the helpers shared by chat_store*.c
 * and chat_metrics.c.
 *
 * Every structure here lives in the region (shared memory, or bytes read
 * back from ChatbotHistoryFile): fixed-width types only, explicit padding,
 * sizes checked at compile time, indexes instead of pointers. The layout
 * diagram and the locking and crash-safety rules are at the top of
 * chat_store.c. Changing any of these structures requires bumping
 * CS_VERSION.
 *
 * Not part of the public API: unit tests and the fuzzer include it to reach
 * cs_validate(), the crash hook and the internals they check.
 */
#ifndef CHAT_STORE_INT_H
#define CHAT_STORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chat/store.h"

#define CS_MAGIC "MODCHATS" /* 8 bytes, no NUL */
#define CS_VERSION 2u
#define CS_BOM 0x01020304u /* byte-order mark: rejects a foreign-endian file */
#define CS_NIL 0xFFFFFFFFu /* "no index" in every chain */
#define CS_ALIGN 64u       /* every section starts on a cache line */

/* text arena */
#define CS_BLOCK 256u
#define CS_BLK_HDR 8u  /* cs_blkhdr_t */
#define CS_MSG_HDR 32u /* cs_msghdr_t, after the block header */
#define CS_CAP_FIRST (CS_BLOCK - CS_BLK_HDR - CS_MSG_HDR) /* 216 text bytes */
#define CS_CAP_NEXT (CS_BLOCK - CS_BLK_HDR)               /* 248 text bytes */
#define CS_BLK_FREE 0x45455246u                           /* "FREE" */
#define CS_BLK_HEAD 0x44414548u /* "HEAD": first block of a message */
#define CS_BLK_CONT 0x544E4F43u /* "CONT": continuation block */
#define CS_BLK_META 0x4154454Du /* "META": a conversation's settings blob */

/* probe windows (open addressing inside a shard's part of a table) */
#define CS_WINDOW 8u        /* user table */
#define CS_OWNER_WINDOW 32u /* owner table */

/* sharding */
#define CS_MAX_SHARDS 64u

/* undo log of a shard or pool lock */
#define CS_LOG_BYTES 8192u
#define CS_LOG_MAXENT (CS_LOG_BYTES / 16u)

/* staleness of backend queue entries; how often acquire looks for them */
#define CS_WAITER_STALE_MS 10000u
#define CS_HOLDER_STALE_MS 60000u
#define CS_REAP_EVERY_MS 500u

/* how many candidates one victim search keeps */
#define CS_VICTIMS 8

/* supported maxima (chat_store_size returns 0 beyond them) */
#define CS_MAX_USERS (1u << 24)
#define CS_MAX_CONVS (1u << 22)
#define CS_MAX_MESSAGES (1u << 20)
#define CS_MAX_MSG_BYTES (1u << 30)
#define CS_MAX_HISTORY ((uint64_t)1 << 36) /* 64 GiB: 2^28 blocks */
#define CS_MIN_HISTORY (16u * CS_BLOCK)
#define CS_MAX_BACKENDS 1024u
#define CS_MAX_QUEUE 65536u
#define CS_MAX_ACTIVE 65536u
#define CS_MAX_SERIES 4096u
#define CS_MAX_PROCS 65536u

#define CS_NAME_SZ 72u        /* CHAT_BOT_NAME_MAX + 1, padded to 8 */
#define CS_TITLE_SZ 136u      /* CHAT_TITLE_MAX + 1, padded to 8 */
#define CS_CONV_BOT_SZ 68u    /* cs_conv_t.bot: CHAT_BOT_NAME_MAX + 1, padded to 4 */
#define CS_CONV_TITLE_SZ 132u /* cs_conv_t.title: CHAT_TITLE_MAX + 1, padded to 4 */

/* conversation flag/state masks */
#define CS_CONV_FLAGS (CHAT_CONV_ARCHIVED | CHAT_CONV_STOPPED)
#define CS_MSG_FLAGS                                                                     \
    (CHAT_MSG_COMPLETE | CHAT_MSG_INTERRUPTED | CHAT_MSG_COMMAND | CHAT_MSG_ERROR |      \
     CHAT_MSG_STREAMING | CHAT_MSG_REFUSED | CHAT_MSG_ATTACH | CHAT_MSG_ALT)

/* user entry flags */
#define CS_USER_USED 0x1u
#define CS_USER_BUCKET 0x2u  /* the rate-limit bucket has been initialised */
#define CS_USER_CBUCKET 0x4u /* the creation bucket has been initialised */
#define CS_USER_FLAGS (CS_USER_USED | CS_USER_BUCKET | CS_USER_CBUCKET)

/* owner record flags */
#define CS_OWN_USED 0x1u
#define CS_OWN_AUTH 0x2u /* an authenticated identity (r->user) */

/* slot info flags (the eviction index) */
#define CS_SI_USED 0x1u
#define CS_SI_IDLE 0x2u
#define CS_SI_AUTH 0x4u

/* lock kinds */
#define CS_LK_SHARD 1u   /* undo-logged: conversations, owners, users */
#define CS_LK_POOL 2u    /* undo-logged: free slots and blocks, class usage */
#define CS_LK_BACKEND 3u /* repaired: slots, queue, breaker of one backend */
#define CS_LK_MISC 4u    /* repaired: registration of backends and series */

/* process table states */
#define CS_PROC_FREE 0u
#define CS_PROC_LIVE 1u

/* error table entry states (claimed lock-free) */
#define CS_ERR_EMPTY 0u
#define CS_ERR_WRITING 1u
#define CS_ERR_READY 2u

typedef struct {
    uint32_t next; /* next block of the same chain, or CS_NIL */
    uint32_t kind; /* CS_BLK_* (a hint for the checker; free blocks: any) */
} cs_blkhdr_t;

typedef struct { /* follows the block header of a HEAD block */
    uint64_t ts_ms;
    uint32_t next_msg;    /* HEAD block of the next message, or CS_NIL */
    uint32_t prev_msg;    /* HEAD block of the previous message, or CS_NIL */
    uint32_t len;         /* text bytes */
    uint32_t flags;       /* CHAT_MSG_* */
    uint32_t role;        /* chat_role_t */
    uint32_t parent_back; /* how many messages back the parent is:
                           * 0 = the previous one (or none for the first:
                           * images written before versions existed),
                           * CS_PARENT_ROOT = none; a distance beyond the
                           * oldest kept message also means none */
} cs_msghdr_t;

#define CS_PARENT_ROOT 0xFFFFFFFFu

/* The parent index of the message at index (CHAT_MSG_NO_PARENT if none). */
static inline uint32_t cs_parent_of(const cs_msghdr_t *mh, uint32_t index)
{
    uint32_t b = mh->parent_back;
    if (b == 0) {
        return index ? index - 1 : CHAT_MSG_NO_PARENT;
    }
    return (b == CS_PARENT_ROOT || b > index) ? CHAT_MSG_NO_PARENT : index - b;
}

typedef struct {
    char code[32];
    uint32_t state; /* CS_ERR_* (atomic) */
    uint32_t pad;
    uint64_t count; /* atomic */
} cs_errent_t;

/* A process-shared, robust mutex (no priority inheritance) and, for the
 * logged kinds, the length of its undo log (the log itself is in the log
 * section at log_off). */
typedef struct {
    union {
        pthread_mutex_t mu;
        uint8_t raw[64];
    } m;
    uint32_t kind;    /* CS_LK_* */
    uint32_t index;   /* shard or backend number */
    uint32_t log_len; /* bytes of undo log in use: 0 = nothing to undo */
    uint32_t pad;
    uint64_t log_off;    /* region offset of the log, 0 for unlogged kinds */
    uint64_t recoveries; /* times taken over from a holder that died */
    uint64_t holder;     /* proc tag of the holder (diagnostics only) */
    uint64_t reserved[3];
} cs_lock_t;

/* One httpd child: its life mutex is held for as long as it lives, so a
 * trylock tells anyone whether it is gone (EOWNERDEAD). */
typedef struct {
    union {
        pthread_mutex_t mu;
        uint8_t raw[64];
    } life;
    uint32_t epoch; /* atomic; bumped by each claim */
    uint32_t state; /* CS_PROC_* (atomic) */
    int32_t pid;
    uint32_t pad;
    uint64_t since_ms;
    uint64_t reserved[5];
} cs_proc_t;

/* Counters of a shard, under its lock. */
typedef struct {
    uint32_t nusers;  /* user entries in use */
    uint32_t nowners; /* owner records in use */
    uint64_t reserved[7];
} cs_shard_t;

/* The free lists and class usage, under the pool lock. */
typedef struct {
    uint32_t conv_free; /* free slot list head (through own_next) */
    uint32_t nconv;     /* conversations in use */
    uint32_t blk_free;  /* free block list head */
    uint32_t blk_nfree;
    uint32_t anon_convs; /* conversations of anonymous identities */
    uint32_t pad;
    uint64_t anon_blocks; /* blocks of anonymous identities */
    uint64_t reserved[4];
} cs_pool_t;

typedef struct {
    /* identification (checked by attach) */
    char magic[8];
    uint32_t version;
    uint32_t bom;
    uint32_t hdr_size;
    uint32_t block_size;
    uint32_t conv_size;
    uint32_t user_size;
    uint32_t backend_size;
    uint32_t series_size;
    uint64_t total_size;
    uint32_t lock_size;
    uint32_t mutex_size; /* sizeof(pthread_mutex_t) of the writer */
    uint32_t owner_size;
    uint32_t proc_size;
    /* the layout (chat_store_layout_t, fixed width) */
    uint32_t max_users;
    uint32_t max_conversations;
    uint32_t max_messages;
    uint32_t max_message_bytes;
    uint64_t history_bytes;
    uint32_t max_backends;
    uint32_t queue_cap;
    uint32_t max_active;
    uint32_t metric_series;
    uint32_t max_procs;
    /* geometry derived from the layout (recomputed and compared by attach) */
    uint32_t nblocks;
    uint32_t nshards;
    uint32_t nlocks;
    uint32_t owners_per_shard;
    uint32_t pad0;
    uint64_t off_locks;
    uint64_t off_logs;
    uint64_t off_procs;
    uint64_t off_shards;
    uint64_t off_users;
    uint64_t off_owners;
    uint64_t off_convs;
    uint64_t off_slots;
    uint64_t off_backends;
    uint64_t off_holders;
    uint64_t off_queue;
    uint64_t off_series;
    uint64_t off_arena;
    /* under the pool lock */
    cs_pool_t pool;
    /* under the misc lock */
    uint32_t nbackends;
    uint32_t nseries; /* written with release order */
    /* lock-free */
    uint64_t started_ms;
    uint64_t last_now_ms;  /* largest now_ms seen (atomic max) */
    uint64_t seq_clock;    /* source of every seq value */
    int64_t gauges[8];     /* CHAT_G_* */
    uint64_t user_events;  /* seq of the latest chat_store_user_bump (any user) */
    uint32_t sweep_needed; /* a dead holder's work was rolled back */
    uint32_t pad1;
    uint64_t recoveries;  /* locks taken over from dead holders */
    uint64_t proc_reaped; /* dead processes whose work was cleaned up */
    uint64_t victim_cursor;
    uint64_t reserved[4];
    cs_errent_t errors[CHAT_ERRCODE_MAX];
} cs_hdr_t;

typedef struct {
    uint8_t owner[20];
    uint32_t flags; /* CS_USER_* */
    uint64_t seq;   /* atomic: change counter for session lists */
    uint64_t last_seen_ms;
    chat_bucket_t bucket; /* the rate limit (two 64-bit fields) */
    chat_bucket_t create; /* conversations created */
} cs_user_t;

/* An identity that owns conversations: its quota usage and its
 * conversations, most recently touched first. */
typedef struct {
    uint8_t key[20];
    uint32_t flags; /* CS_OWN_* */
    uint32_t nconv;
    uint32_t head; /* most recently touched conversation */
    uint32_t tail; /* least recently touched */
    uint32_t pad;
    uint64_t nblocks;
} cs_owner_t;

typedef struct {
    uint64_t tag; /* caller's random tag; 0 = free slot (atomic) */
    uint64_t created_ms;
    uint64_t updated_ms;
    uint64_t bytes;     /* text bytes in all messages */
    uint64_t seq;       /* atomic */
    uint64_t gen_token; /* atomic; 0 = nobody generating */
    uint64_t gen_proc;  /* proc tag of the generating process, 0 = unknown */
    uint8_t owner[20];
    uint32_t in_use;
    uint32_t flags; /* CHAT_CONV_ARCHIVED/STOPPED */
    uint32_t state; /* CHAT_CONV_IDLE/QUEUED/GENERATING */
    int32_t queue_position;
    uint32_t stop_requested; /* atomic */
    uint32_t nmsgs;
    uint32_t nblocks;   /* arena blocks held (one chain) */
    uint32_t first_msg; /* HEAD block of the oldest message = first block */
    uint32_t last_msg;  /* HEAD block of the newest message */
    uint32_t last_blk;  /* last block of the chain (O(delta) extend) */
    uint32_t own_prev;  /* owner list: more recently touched */
    uint32_t own_next;  /* owner list: less recently touched; free list */
    uint32_t owner_ref; /* index of the owner record */
    /* bot and title keep the offsets and the total size they had before the
     * settings blob: meta_len and meta_blk live in what was their zeroed
     * padding, so older history files load with "no settings" */
    char bot[CS_CONV_BOT_SZ];
    uint32_t meta_len; /* settings blob bytes (chat_store_conv_meta_set), 0 = none */
    char title[CS_CONV_TITLE_SZ];
    uint32_t meta_blk; /* first block of the blob (CS_BLK_META chain), if meta_len */
} cs_conv_t;

/* The eviction index: what a victim search needs of every slot, packed. */
typedef struct {
    uint64_t updated_ms;
    uint32_t owner_ref;
    uint32_t flags; /* CS_SI_* */
} cs_slotinfo_t;

typedef struct {
    char name[CS_NAME_SZ];
    char version[32];
    char detail[128];
    uint64_t open_until_ms; /* OPEN: cooldown end; HALF_OPEN: probe deadline */
    uint64_t checked_ms;
    uint32_t used;
    uint32_t max_active; /* as registered (0 = unlimited) */
    uint32_t nactive;    /* holders[0..nactive) are in use (dense) */
    uint32_t q_head;     /* ring of queue_cap waiters */
    uint32_t q_count;
    int32_t breaker;
    uint32_t failures;
    int32_t healthy;
    uint64_t reaped_ms; /* last look for stale or dead entries */
} cs_backend_t;

typedef struct {
    uint64_t ticket; /* non-zero */
    uint64_t beat_ms;
    uint64_t proc; /* proc tag of the holder's process */
} cs_holder_t;

typedef struct {
    uint64_t ticket;
    uint64_t poll_ms;
    uint64_t proc;
} cs_waiter_t;

typedef struct {
    char bot[CS_NAME_SZ];
    char backend[CS_NAME_SZ];
    uint32_t used;
    uint32_t pad;
    uint64_t counters[CHAT_CTR_COUNT];
    uint64_t hist[CHAT_HIST_COUNT][CHAT_HIST_BUCKETS];
    uint64_t hist_sum[CHAT_HIST_COUNT]; /* IEEE-754 double bits (CAS updated) */
    uint64_t hist_count[CHAT_HIST_COUNT];
} cs_series_t;

/* Compile-time layout checks: a change here changes the file format. */
#define CS_STATIC_ASSERT(name, cond) typedef char cs_static_assert_##name[(cond) ? 1 : -1]
CS_STATIC_ASSERT(blkhdr, sizeof(cs_blkhdr_t) == CS_BLK_HDR);
CS_STATIC_ASSERT(msghdr, sizeof(cs_msghdr_t) == CS_MSG_HDR);
CS_STATIC_ASSERT(errent, sizeof(cs_errent_t) == 48);
CS_STATIC_ASSERT(mutex, sizeof(pthread_mutex_t) <= 64);
CS_STATIC_ASSERT(lock, sizeof(cs_lock_t) == 128);
CS_STATIC_ASSERT(proc, sizeof(cs_proc_t) == 128);
CS_STATIC_ASSERT(shard, sizeof(cs_shard_t) == 64);
CS_STATIC_ASSERT(pool, sizeof(cs_pool_t) == 64);
CS_STATIC_ASSERT(hdr_probe, sizeof(cs_hdr_t) <= CHAT_STORE_HEADER_BYTES);
CS_STATIC_ASSERT(user, sizeof(cs_user_t) == 72);
CS_STATIC_ASSERT(owner, sizeof(cs_owner_t) == 48);
CS_STATIC_ASSERT(bucket, sizeof(chat_bucket_t) == 16);
CS_STATIC_ASSERT(conv, sizeof(cs_conv_t) == 336);
CS_STATIC_ASSERT(slotinfo, sizeof(cs_slotinfo_t) == 16);
CS_STATIC_ASSERT(backend, sizeof(cs_backend_t) == 288);
CS_STATIC_ASSERT(holder, sizeof(cs_holder_t) == 24);
CS_STATIC_ASSERT(waiter, sizeof(cs_waiter_t) == 24);
CS_STATIC_ASSERT(series, sizeof(cs_series_t) == 640);
CS_STATIC_ASSERT(gauges, CHAT_G_COUNT == 8);
CS_STATIC_ASSERT(name_sz, CS_NAME_SZ > CHAT_BOT_NAME_MAX);
CS_STATIC_ASSERT(title_sz, CS_TITLE_SZ > CHAT_TITLE_MAX);
CS_STATIC_ASSERT(conv_bot_sz, CS_CONV_BOT_SZ > CHAT_BOT_NAME_MAX);
CS_STATIC_ASSERT(conv_title_sz, CS_CONV_TITLE_SZ > CHAT_TITLE_MAX);
CS_STATIC_ASSERT(conv_size, sizeof(cs_conv_t) == 336);

/* The process-local handle: pointers into this process's mapping. */
struct chat_store {
    chat_store_head_t head; /* the provider (chat/store.h) */
    uint8_t *base;
    size_t size;
    cs_hdr_t *hdr;
    cs_lock_t *locks; /* shards, then pool, misc, one per backend */
    uint8_t *logs;
    cs_proc_t *procs;
    cs_shard_t *shards;
    cs_user_t *users;
    cs_owner_t *owners;
    cs_conv_t *convs;
    cs_slotinfo_t *slots;
    cs_backend_t *backends;
    cs_holder_t *holders; /* max_backends * max_active */
    cs_waiter_t *queue;   /* max_backends * queue_cap */
    cs_series_t *series;
    uint8_t *arena;
    chat_store_layout_t l;
    uint32_t nblocks;
    uint32_t nshards;
    uint32_t owners_per_shard;
    chat_store_policy_t policy; /* this process's quotas */
    uint64_t proc_tag;          /* this process's claim in the proc table */
    int proc_slot;              /* -1: none */
};

/* ---- atomics (GCC/Clang builtins on naturally aligned fields) ---------- */
#define CS_LOAD64(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CS_STORE64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CS_ADD64(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define CS_LOAD32(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CS_STORE32(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CS_PEEK32(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define CS_PEEK64(p) __atomic_load_n((p), __ATOMIC_RELAXED)

/* ---- small helpers ---------------------------------------------------- */

static inline uint8_t *cs_blk(const chat_store_t *st, uint32_t i)
{
    return st->arena + (size_t)i * CS_BLOCK;
}

static inline cs_blkhdr_t *cs_bh(const chat_store_t *st, uint32_t i)
{
    return (cs_blkhdr_t *)(void *)cs_blk(st, i);
}

static inline cs_msghdr_t *cs_mh(const chat_store_t *st, uint32_t i)
{
    return (cs_msghdr_t *)(void *)(cs_blk(st, i) + CS_BLK_HDR);
}

/* Number of blocks a message of len text bytes occupies. */
static inline uint64_t cs_blocks_for(uint64_t len)
{
    if (len <= CS_CAP_FIRST) {
        return 1;
    }
    return 1 + (len - CS_CAP_FIRST + CS_CAP_NEXT - 1) / CS_CAP_NEXT;
}

static inline uint32_t cs_conv_index(const chat_store_t *st, const cs_conv_t *c)
{
    return (uint32_t)(c - st->convs);
}

/* Hash of an owner key (SHA-1 output: any 4 bytes are uniform). */
static inline uint32_t cs_owner_hash(const uint8_t *o, unsigned at)
{
    return (uint32_t)o[at] | ((uint32_t)o[at + 1] << 8) | ((uint32_t)o[at + 2] << 16) |
           ((uint32_t)o[at + 3] << 24);
}

/* The shard of an identity: its users entry, owner record and
 * conversations are all under that shard's lock. */
static inline uint32_t cs_shard_of(const chat_store_t *st, const uint8_t *owner)
{
    return cs_owner_hash(owner, 8) & (st->nshards - 1);
}

static inline cs_lock_t *cs_shard_lock(const chat_store_t *st, uint32_t shard)
{
    return &st->locks[shard];
}

static inline cs_lock_t *cs_pool_lock(const chat_store_t *st)
{
    return &st->locks[st->nshards];
}

static inline cs_lock_t *cs_misc_lock(const chat_store_t *st)
{
    return &st->locks[st->nshards + 1];
}

static inline cs_lock_t *cs_backend_lock(const chat_store_t *st, uint32_t idx)
{
    return &st->locks[st->nshards + 2 + idx];
}

/* Copies a C string into a fixed field; returns 0 if it did not fit. */
static inline int cs_strset(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        return 0;
    }
    memcpy(dst, src ? src : "", n);
    memset(dst + n, 0, cap - n);
    return 1;
}

/* 1 if the fixed field holds a NUL-terminated string. */
static inline int cs_strok(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* ---- chat_store_lock.c: locks, undo logs, processes ----------------------- */

/* A critical section under one undo-logged lock. Before a structure in
 * the region is changed, cs_snap() copies its old bytes into the lock's
 * undo log; cs_unlock()/cs_commit() drop the log. If the holder dies, the
 * next one to take the lock writes the old bytes back, newest first. */
#define CS_TX_SNAPS 48
typedef struct {
    chat_store_t *st;
    cs_lock_t *lk;
    int nsnap;
    const void *snap[CS_TX_SNAPS];
    size_t snapn[CS_TX_SNAPS];
} cs_tx_t;

/* Test hook: called at every point where a crash must leave the store
 * consistent (before and after each undo-log entry). NULL in production. */
extern void (*chat_store_crash_hook)(void);

/* Formats every lock and the process table (fresh region or image). */
chat_status_t cs_locks_init(chat_store_t *st);
/* Takes a lock, recovering it if its holder died. CHAT_OK or
 * CHAT_EINTERNAL (the mutex is unusable: logged). */
chat_status_t cs_lock(chat_store_t *st, cs_lock_t *lk);
/* 1 if taken (recovered if needed), 0 if someone else holds it. */
int cs_trylock(chat_store_t *st, cs_lock_t *lk);
void cs_unlock(chat_store_t *st, cs_lock_t *lk);
/* Makes everything written so far under lk permanent (empties its log). */
void cs_commit(chat_store_t *st, cs_lock_t *lk);
/* Starts a transaction under a held logged lock. */
static inline void cs_tx_begin(cs_tx_t *tx, chat_store_t *st, cs_lock_t *lk)
{
    tx->st = st;
    tx->lk = lk;
    tx->nsnap = 0;
}
/* Logs the current n bytes at p (once per transaction step). */
void cs_snap(cs_tx_t *tx, const void *p, size_t n);
/* cs_commit for the transaction's lock, and forgets the snapshots. */
void cs_tx_commit(cs_tx_t *tx);
/* Takes every lock (shards, pool, backends, misc, in that order). */
chat_status_t cs_lock_all(chat_store_t *st);
void cs_unlock_all(chat_store_t *st);
/* 1 if the process with this tag may still be alive (0 = unknown: alive). */
int cs_proc_alive(chat_store_t *st, uint64_t tag);
/* Undoes the log of lk as if its holder had died (tests; the caller holds
 * lk). */
void cs_lock_rollback(chat_store_t *st, cs_lock_t *lk);
/* Tests: the calling thread holds lk and "dies": lk is recovered as its
 * next holder would (rolled back or repaired), then released. */
void cs_lock_abandon(chat_store_t *st, cs_lock_t *lk);

/* ---- chat_store.c ----------------------------------------------------------- */
uint64_t cs_next_seq(chat_store_t *st);
void cs_note_now(chat_store_t *st, uint64_t now_ms);
uint64_t cs_now(chat_store_t *st); /* the largest now_ms seen */
/* Full consistency check of the region (what attach runs; the caller holds
 * every lock or nobody else uses the region). *leaked (may be NULL) gets
 * the number of blocks and slots reachable from nothing: a holder that died
 * between handing a resource over and recording it leaves those, and
 * cs_sweep gives them back. CHAT_OK or CHAT_EPARSE; CHAT_ENOMEM if the
 * scratch bitmaps cannot be allocated. */
chat_status_t cs_validate_ex(const chat_store_t *st, uint64_t *leaked);
chat_status_t cs_validate(const chat_store_t *st);
/* Gives leaked blocks and slots back and recounts the pool's class usage
 * (caller holds every lock; the store passed cs_validate_ex). */
void cs_sweep(chat_store_t *st);

/* ---- chat_store_conv.c ------------------------------------------------------- */
void cs_copy_trunc(char *dst, size_t cap, size_t maxlen, const char *src);
/* Finds a conversation by id for owner (NULL: any owner; the caller must
 * then hold the shard of the conversation's owner). NULL if not found. */
cs_conv_t *cs_conv_find(chat_store_t *st, const chat_owner_t *owner, const char *id);
/* Lock-free variant: only atomic reads of the slot. */
cs_conv_t *cs_conv_peek(chat_store_t *st, const char *id);
/* Locks the shard of owner (a transaction on its lock). */
chat_status_t cs_lock_owner(chat_store_t *st, const uint8_t *owner, cs_tx_t *tx);
void cs_tx_unlock(cs_tx_t *tx);
/* Locks the shard of owner and finds its conversation id: NULL (nothing
 * held) if either fails. */
cs_conv_t *cs_conv_lock_find(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             cs_tx_t *tx);
/* Finds a conversation by id alone and locks the shard of its owner. */
cs_conv_t *cs_conv_find_locked(chat_store_t *st, const char *id, cs_tx_t *tx);
/* The slot info of c from its state (logged in tx). */
void cs_slot_update(cs_tx_t *tx, cs_conv_t *c);
void cs_conv_format_id(const chat_store_t *st, const cs_conv_t *c, char *out);
void cs_conv_info(const chat_store_t *st, const cs_conv_t *c, chat_conv_info_t *out);
/* Marks the conversation changed (new seq) and most recently used. */
void cs_conv_touch(cs_tx_t *tx, cs_conv_t *c, uint64_t now_ms);
void cs_conv_changed(chat_store_t *st, cs_conv_t *c);
cs_owner_t *cs_owner_find(chat_store_t *st, const uint8_t *key);
/* Finds or creates the owner record of key (caller holds its shard). NULL
 * if its shard's window of records is full. */
cs_owner_t *cs_owner_get(cs_tx_t *tx, const uint8_t *key, int auth);
/* Takes c off its owner's list (caller holds the shard). */
void cs_owner_list_unlink(cs_tx_t *tx, cs_owner_t *o, cs_conv_t *c);
/* Puts the conversation into the slot info and the owner's list (migrate,
 * sweep: no logging). */
void cs_conv_link_raw(chat_store_t *st, cs_conv_t *c, int auth);

/* ---- chat_store_user.c: the user table ---------------------------------------- */
cs_user_t *cs_user_find(chat_store_t *st, const uint8_t *owner);
/* Finds or creates owner's entry (caller holds its shard); a full window
 * replaces its least recently seen entry (only if it was seen before
 * seen_ms, unless force). */
cs_user_t *cs_user_get(cs_tx_t *tx, const uint8_t *owner, uint64_t seen_ms, int force);

/* ---- chat_store_gen.c: generation ownership ----------------------------------- */
/* Ends a generation whose process died: last answer interrupted, idle. */
void cs_gen_abandon(cs_tx_t *tx, cs_conv_t *c);
/* Ends generations of processes that died (maintenance). Returns how many. */
int cs_conv_reap_dead(chat_store_t *st);

/* ---- chat_store_meta.c: the settings blob of a conversation ----------------- */
/* Blocks held by c's settings blob (CS_CAP_NEXT text bytes each). */
static inline uint32_t cs_meta_blocks(uint32_t meta_len)
{
    return (meta_len + CS_CAP_NEXT - 1) / CS_CAP_NEXT;
}
chat_status_t cs_shm_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, chat_buf_t *out);
chat_status_t cs_shm_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, const char *data, size_t len,
                                   uint64_t now_ms);
/* Detaches c's blob (logged in tx): returns its block count, its chain in
 * first..last (for cs_pool_give_blocks after the commit). */
uint32_t cs_meta_unlink(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last);
/* Copies sc's blob into dst's blocks from *cursor on (migrate: dst fresh). */
void cs_meta_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                      const cs_conv_t *sc, uint32_t *cursor);

/* ---- chat_store_evict.c: quotas and making room ------------------------------ */
#define CS_RES_SLOTS 0
#define CS_RES_BLOCKS 1
/* Makes `need` of resource res available for the conversation c (may be
 * NULL when creating) of owner o (both in the shard of tx), within o's
 * quota and class share, evicting per the fairness rules. The caller holds
 * tx's shard lock only. CHAT_OK, CHAT_EQUOTA (o at its quota with nothing
 * of its own to give up), CHAT_EFULL. */
chat_status_t cs_make_room(cs_tx_t *tx, cs_owner_t *o, int auth, cs_conv_t *c, int res,
                           uint64_t need);
/* Evicts conversation c (idle, in tx's shard): unlinks it, commits, gives
 * its slot and blocks back to the pool. */
void cs_conv_evict(cs_tx_t *tx, cs_conv_t *c, const char *why);
/* Deletes c (as evict, without the eviction count and log line). */
void cs_conv_release(cs_tx_t *tx, cs_conv_t *c);
/* Per-identity limits of the class. */
const chat_quota_t *cs_quota(const chat_store_t *st, int auth);

/* ---- chat_store_msg.c -------------------------------------------------------- */
/* Takes n blocks from the pool as a chain first..last (last->next is
 * undefined): the pool commits at once. 0 if the pool has fewer. */
int cs_pool_take_blocks(chat_store_t *st, uint32_t n, int auth, uint32_t *first,
                        uint32_t *last);
/* Gives the chain first..last of n blocks back (the caller has committed the
 * unlink). */
void cs_pool_give_blocks(chat_store_t *st, uint32_t first, uint32_t last, uint32_t n,
                         int auth);
int cs_pool_take_slot(chat_store_t *st, int auth, uint32_t *slot);
void cs_pool_give_slot(chat_store_t *st, uint32_t slot, int auth);
/* Drops c's oldest message (committed, blocks given back). */
void cs_msg_drop_oldest(cs_tx_t *tx, cs_conv_t *c, cs_owner_t *o, int auth);
/* Unlinks every block of c (caller commits, then gives them back):
 * returns the chain and its length. */
uint32_t cs_msg_unlink_all(cs_tx_t *tx, cs_conv_t *c, uint32_t *first, uint32_t *last);
/* Migrate: copies message head of src into a new last message of dc,
 * taking dst's blocks in index order from *cursor (dst is fresh; its free
 * lists are rebuilt afterwards). */
void cs_msg_copy_raw(chat_store_t *dst, cs_conv_t *dc, const chat_store_t *src,
                     uint32_t head, uint32_t *cursor);
/* Rebuilds the free lists of slots and blocks from what conversations use
 * (format, migrate, load: nobody else uses the region). */
void cs_free_lists_rebuild(chat_store_t *st);

/* HEAD block of message index of c (walking from the nearer end). */
uint32_t cs_msg_at(const chat_store_t *st, const cs_conv_t *c, uint32_t index);
/* Takes the shard lock of owner and finds its conversation id (the lock is
 * held on CHAT_OK only). CHAT_OK, CHAT_ENOTFOUND, CHAT_EINTERNAL. */
chat_status_t cs_msg_lock_find(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, cs_tx_t *tx, cs_conv_t **pc);

/* ---- chat_store_ver.c: versions and branches ------------------------------------ */
/* The index of the last message of c's active path (CHAT_MSG_NO_PARENT if
 * c is empty). */
uint32_t cs_ver_leaf(const chat_store_t *st, const cs_conv_t *c);
/* How many messages of c have this parent (CHAT_MSG_NO_PARENT: roots). */
uint32_t cs_ver_children(const chat_store_t *st, const cs_conv_t *c, uint32_t parent);
/* Among the children of parent, makes the one whose HEAD block is keep
 * the chosen one and every other an alternative (keep CS_NIL: all of
 * them alternatives). Undo-logged in tx. */
void cs_ver_choose(cs_tx_t *tx, cs_conv_t *c, uint32_t parent, uint32_t keep);
/* The context of msg_tail: the newest messages of the active path, newest
 * first, as HEAD blocks and indexes (arrays of c->nmsgs). Returns how many. */
int cs_ver_tail(const chat_store_t *st, const cs_conv_t *c, uint32_t max_msgs,
                size_t max_bytes, uint32_t *heads, uint32_t *idx);

/* ---- chat_store_backend.c ------------------------------------------------------ */
/* Repairs a backend's tables after its lock's holder died. */
void cs_backend_repair(chat_store_t *st, uint32_t idx);
/* Drops holders and waiters of dead processes. Returns how many. */
int cs_backend_reap_dead(chat_store_t *st);

/* ---- chat_metrics.c ------------------------------------------------------------ */
void cs_metrics_error_add(chat_store_t *st, const char *code, uint64_t n);
/* Repairs the series table after the misc lock's holder died. */
void cs_misc_repair(chat_store_t *st);

/* ---- the shared-memory provider's operations (chat/store.h has their
 * contracts; chat_store_api.c dispatches to them) ---------------------------- */
extern const chat_store_provider_t cs_shm_provider;
void cs_shm_detach(chat_store_t *st);
chat_status_t cs_shm_proc_attach(chat_store_t *st, int pid, uint64_t now_ms);
void cs_shm_proc_detach(chat_store_t *st);
int cs_shm_maintain(chat_store_t *st, uint64_t now_ms);
chat_status_t cs_shm_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, const char *title, uint64_t tag,
                                 uint64_t now_ms, chat_conv_info_t *out);
chat_status_t cs_shm_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                         const char *bot, const char *title,
                                         uint32_t flags, uint64_t tag, uint64_t now_ms,
                                         chat_conv_info_t *out, int *created);
int64_t cs_shm_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                               uint64_t now_ms);
chat_status_t cs_shm_conv_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                              chat_conv_info_t *out);
int cs_shm_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                     int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                     void *baton);
chat_status_t cs_shm_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                 const char *bot, chat_conv_info_t *out);
chat_status_t cs_shm_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, const char *title, uint64_t now_ms);
chat_status_t cs_shm_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t set, uint32_t clear,
                                uint64_t now_ms);
chat_status_t cs_shm_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id);
chat_status_t cs_shm_gen_begin(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint64_t token, uint32_t state,
                               uint64_t now_ms);
chat_status_t cs_shm_gen_state(chat_store_t *st, const char *id, uint64_t token,
                               uint32_t state, int32_t queue_position);
chat_status_t cs_shm_gen_end(chat_store_t *st, const char *id, uint64_t token,
                             uint64_t now_ms);
chat_status_t cs_shm_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id);
int cs_shm_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token);
uint64_t cs_shm_conv_seq(chat_store_t *st, const char *id);
chat_status_t cs_shm_msg_append(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, chat_role_t role, uint32_t flags,
                                const char *text, size_t len, uint64_t now_ms,
                                uint32_t *index_out);
chat_status_t cs_shm_msg_extend(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *text, size_t len,
                                uint64_t now_ms);
chat_status_t cs_shm_msg_flags(chat_store_t *st, const chat_owner_t *owner,
                               const char *id, uint32_t set, uint32_t clear,
                               uint64_t now_ms);
chat_status_t cs_shm_msg_truncate(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint32_t keep, uint64_t now_ms);
int cs_shm_msg_read(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t start, uint32_t count, chat_buf_t *text, chat_msg_cb *cb,
                    void *baton);
int cs_shm_msg_tail(chat_store_t *st, const chat_owner_t *owner, const char *id,
                    uint32_t max_msgs, size_t max_bytes, chat_buf_t *text,
                    chat_msg_cb *cb, void *baton);
chat_status_t cs_shm_msg_branch(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t parent, chat_role_t role,
                                uint32_t flags, const char *text, size_t len,
                                uint64_t now_ms, uint32_t *index_out);
chat_status_t cs_shm_msg_select(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, uint32_t index, uint64_t now_ms);
chat_status_t cs_shm_msg_get(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint32_t index, size_t offset, chat_buf_t *text,
                             chat_msg_info_t *info);
chat_status_t cs_shm_rate_take(chat_store_t *st, const chat_owner_t *owner,
                               const chat_rate_t *rate, uint64_t now_ms,
                               int64_t *retry_after_ms);
void cs_shm_user_bump(chat_store_t *st, const chat_owner_t *owner);
uint64_t cs_shm_user_seq(chat_store_t *st, const chat_owner_t *owner);
uint64_t cs_shm_events(chat_store_t *st);
int cs_shm_backend_register(chat_store_t *st, const char *name, uint32_t max_active);
chat_status_t cs_shm_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                     uint64_t now_ms, int32_t *position);
void cs_shm_backend_cancel(chat_store_t *st, int idx, uint64_t ticket);
void cs_shm_backend_release(chat_store_t *st, int idx, uint64_t ticket);
void cs_shm_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms);
int cs_shm_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms,
                         uint64_t cooldown_ms);
void cs_shm_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                           uint32_t threshold, uint64_t cooldown_ms);
void cs_shm_backend_health(chat_store_t *st, int idx, int healthy, const char *version,
                           const char *detail, uint64_t now_ms);
chat_status_t cs_shm_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out);
int cs_shm_backend_count(chat_store_t *st);
int cs_shm_series(chat_store_t *st, const char *bot, const char *backend);
void cs_shm_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v);
void cs_shm_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v);
void cs_shm_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta);
void cs_shm_metrics_error(chat_store_t *st, const char *code);
void cs_shm_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out);
int cs_shm_metrics_series_count(chat_store_t *st);
chat_status_t cs_shm_metrics_series_get(chat_store_t *st, int series,
                                        chat_series_snapshot_t *out);

#endif /* CHAT_STORE_INT_H */
