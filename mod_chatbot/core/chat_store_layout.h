/* chat_store_layout.h - the records of the shared store region (the shared
 * memory provider of chat/store.h): its constants, every structure stored
 * in it and their sizes checked at compile time.
 *
 * Every structure here lives in the region (shared memory, or bytes read
 * back from ChatbotHistoryFile): fixed-width types only, explicit padding,
 * sizes checked at compile time, indexes instead of pointers. The layout
 * diagram and the locking and crash-safety rules are at the top of
 * chat_store.c. Changing any of these structures requires bumping
 * CS_VERSION.
 */
#ifndef CHAT_STORE_LAYOUT_H
#define CHAT_STORE_LAYOUT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

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
/* Internal, never shown to callers: every message follows the one before it
 * and none is another version (no CHAT_MSG_ALT), so the active path is the
 * whole list and its leaf is the last message. Set at creation, cleared by
 * the first message under another parent; a conversation of an image that
 * predates it takes the walk (chat_store_ver.c). */
#define CS_CONV_LINEAR 0x80000000u
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

#endif /* CHAT_STORE_LAYOUT_H */
