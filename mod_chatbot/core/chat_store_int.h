/* chat_store_int.h - private layout of the shared store region and the
 * helpers shared by chat_store*.c and chat_metrics.c.
 *
 * Every structure here lives in the region (shared memory, or bytes read
 * back from ChatbotHistoryFile): fixed-width types only, explicit padding,
 * sizes checked at compile time, indexes instead of pointers. The layout
 * diagram is at the top of chat_store.c. Changing any of these structures
 * requires bumping CS_VERSION.
 *
 * Not part of the public API: unit tests and the fuzzer include it only to
 * reach cs_validate() and to find ids in arbitrary images.
 */
#ifndef CHAT_STORE_INT_H
#define CHAT_STORE_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chat/store.h"

#define CS_MAGIC "MODCHATS" /* 8 bytes, no NUL */
#define CS_VERSION 1u
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

/* user table probe window (open addressing) */
#define CS_WINDOW 8u

/* staleness of backend queue entries */
#define CS_WAITER_STALE_MS 10000u
#define CS_HOLDER_STALE_MS 60000u

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

#define CS_NAME_SZ 72u   /* CHAT_BOT_NAME_MAX + 1, padded to 8 */
#define CS_TITLE_SZ 136u /* CHAT_TITLE_MAX + 1, padded to 8 */

/* conversation flag/state masks */
#define CS_CONV_FLAGS (CHAT_CONV_ARCHIVED | CHAT_CONV_STOPPED)
#define CS_MSG_FLAGS                                                                     \
    (CHAT_MSG_COMPLETE | CHAT_MSG_INTERRUPTED | CHAT_MSG_COMMAND | CHAT_MSG_ERROR |      \
     CHAT_MSG_STREAMING | CHAT_MSG_REFUSED)

/* user entry flags */
#define CS_USER_USED 0x1u
#define CS_USER_BUCKET 0x2u /* the bucket has been initialised */

/* error table entry states (claimed lock-free) */
#define CS_ERR_EMPTY 0u
#define CS_ERR_WRITING 1u
#define CS_ERR_READY 2u

typedef struct {
    uint32_t next; /* next block of the same chain, or CS_NIL */
    uint32_t kind; /* CS_BLK_* */
} cs_blkhdr_t;

typedef struct { /* follows the block header of a HEAD block */
    uint64_t ts_ms;
    uint32_t next_msg; /* HEAD block of the next message, or CS_NIL */
    uint32_t prev_msg; /* HEAD block of the previous message, or CS_NIL */
    uint32_t len;      /* text bytes */
    uint32_t flags;    /* CHAT_MSG_* */
    uint32_t role;     /* chat_role_t */
    uint32_t reserved;
} cs_msghdr_t;

typedef struct {
    char code[32];
    uint32_t state; /* CS_ERR_* (atomic) */
    uint32_t pad;
    uint64_t count; /* atomic */
} cs_errent_t;

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
    /* geometry derived from the layout (recomputed and compared by attach) */
    uint32_t nblocks;
    uint32_t nheads;
    uint64_t off_users;
    uint64_t off_convs;
    uint64_t off_heads;
    uint64_t off_backends;
    uint64_t off_holders;
    uint64_t off_queue;
    uint64_t off_series;
    uint64_t off_arena;
    /* state, changed under the caller's lock */
    uint32_t nconv;     /* conversations in use */
    uint32_t conv_free; /* free slot list head */
    uint32_t lru_head;  /* most recently updated */
    uint32_t lru_tail;  /* least recently updated */
    uint32_t nusers;
    uint32_t nbackends;
    uint32_t nseries;  /* written with release order */
    uint32_t blk_free; /* free block list head */
    uint32_t blk_nfree;
    uint32_t busy_blocks; /* blocks of QUEUED/GENERATING conversations */
    uint64_t started_ms;
    uint64_t last_now_ms; /* largest now_ms seen (for calls without a clock) */
    /* lock-free */
    uint64_t seq_clock; /* source of every seq value */
    int64_t gauges[8];  /* CHAT_G_* */
    uint64_t user_events; /* seq of the latest chat_store_user_bump (any user) */
    uint64_t reserved[3];
    cs_errent_t errors[CHAT_ERRCODE_MAX];
} cs_hdr_t;

typedef struct {
    uint8_t owner[20];
    uint32_t flags; /* CS_USER_* */
    uint64_t seq;   /* atomic: change counter for session lists */
    uint64_t last_seen_ms;
    chat_bucket_t bucket; /* two 64-bit fields, no padding */
} cs_user_t;

typedef struct {
    uint64_t tag; /* caller's random tag; 0 = free slot (atomic) */
    uint64_t created_ms;
    uint64_t updated_ms;
    uint64_t bytes;     /* text bytes in all messages */
    uint64_t seq;       /* atomic */
    uint64_t gen_token; /* atomic; 0 = nobody generating */
    uint8_t owner[20];
    uint32_t in_use;
    uint32_t flags; /* CHAT_CONV_ARCHIVED/STOPPED */
    uint32_t state; /* CHAT_CONV_IDLE/QUEUED/GENERATING */
    int32_t queue_position;
    uint32_t stop_requested; /* atomic */
    uint32_t nmsgs;
    uint32_t nblocks;   /* arena blocks held */
    uint32_t first_msg; /* HEAD block of the oldest message */
    uint32_t last_msg;  /* HEAD block of the newest message */
    uint32_t last_blk;  /* last block of the newest message (O(delta) extend) */
    uint32_t lru_prev;  /* free slots: lru_prev/next link the free list */
    uint32_t lru_next;
    uint32_t own_prev; /* chain of the owner hash bucket */
    uint32_t own_next;
    uint32_t pad;
    char bot[CS_NAME_SZ];
    char title[CS_TITLE_SZ];
} cs_conv_t;

typedef struct {
    char name[CS_NAME_SZ];
    char version[32];
    char detail[128];
    uint64_t open_until_ms; /* OPEN: cooldown end; HALF_OPEN: probe deadline */
    uint64_t checked_ms;
    uint32_t used;
    uint32_t max_active; /* as registered (0 = unlimited) */
    uint32_t nactive;    /* non-zero holder tickets */
    uint32_t q_head;     /* ring of queue_cap waiters */
    uint32_t q_count;
    int32_t breaker;
    uint32_t failures;
    int32_t healthy;
} cs_backend_t;

typedef struct {
    uint64_t ticket; /* 0 = free */
    uint64_t beat_ms;
} cs_holder_t;

typedef struct {
    uint64_t ticket;
    uint64_t poll_ms;
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
CS_STATIC_ASSERT(hdr, sizeof(cs_hdr_t) == 1472);
CS_STATIC_ASSERT(hdr_probe, sizeof(cs_hdr_t) <= CHAT_STORE_HEADER_BYTES);
CS_STATIC_ASSERT(hdr_errors, offsetof(cs_hdr_t, errors) == 320);
CS_STATIC_ASSERT(hdr_gauges, offsetof(cs_hdr_t, gauges) == 224);
CS_STATIC_ASSERT(user, sizeof(cs_user_t) == 56);
CS_STATIC_ASSERT(bucket, sizeof(chat_bucket_t) == 16);
CS_STATIC_ASSERT(conv, sizeof(cs_conv_t) == 336);
CS_STATIC_ASSERT(conv_owner, offsetof(cs_conv_t, owner) == 48);
CS_STATIC_ASSERT(conv_bot, offsetof(cs_conv_t, bot) == 128);
CS_STATIC_ASSERT(backend, sizeof(cs_backend_t) == 280);
CS_STATIC_ASSERT(backend_used, offsetof(cs_backend_t, used) == 248);
CS_STATIC_ASSERT(holder, sizeof(cs_holder_t) == 16);
CS_STATIC_ASSERT(waiter, sizeof(cs_waiter_t) == 16);
CS_STATIC_ASSERT(series, sizeof(cs_series_t) == 640);
CS_STATIC_ASSERT(series_ctr, offsetof(cs_series_t, counters) == 152);
CS_STATIC_ASSERT(gauges, CHAT_G_COUNT == 8);
CS_STATIC_ASSERT(name_sz, CS_NAME_SZ > CHAT_BOT_NAME_MAX);
CS_STATIC_ASSERT(title_sz, CS_TITLE_SZ > CHAT_TITLE_MAX);

/* The process-local handle: pointers into this process's mapping. */
struct chat_store {
    uint8_t *base;
    size_t size;
    cs_hdr_t *hdr;
    cs_user_t *users;
    cs_conv_t *convs;
    uint32_t *heads;
    cs_backend_t *backends;
    cs_holder_t *holders; /* max_backends * max_active */
    cs_waiter_t *queue;   /* max_backends * queue_cap */
    cs_series_t *series;
    uint8_t *arena;
    chat_store_layout_t l;
    uint32_t nblocks;
    uint32_t nheads;
};

/* ---- atomics (GCC/Clang builtins on naturally aligned fields) ---------- */
#define CS_LOAD64(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CS_STORE64(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CS_ADD64(p, v) __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define CS_LOAD32(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define CS_STORE32(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

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

static inline uint32_t cs_head_of(const chat_store_t *st, const uint8_t *owner)
{
    return cs_owner_hash(owner, 0) & (st->nheads - 1);
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

/* chat_store.c */
uint64_t cs_next_seq(chat_store_t *st);
void cs_note_now(chat_store_t *st, uint64_t now_ms);
/* Full consistency check of the region (what attach runs). CHAT_OK or
 * CHAT_EPARSE; CHAT_ENOMEM if the scratch bitmaps cannot be allocated. */
chat_status_t cs_validate(const chat_store_t *st);

/* chat_store_conv.c */
/* Copies src (NULL = "") into a fixed field of cap bytes, cutting it to at
 * most maxlen (< cap) bytes at a UTF-8 character boundary; the rest of the
 * field is zeroed. */
void cs_copy_trunc(char *dst, size_t cap, size_t maxlen, const char *src);
/* Finds a conversation by id (owner NULL: any owner). NULL if not found. */
cs_conv_t *cs_conv_find(chat_store_t *st, const chat_owner_t *owner, const char *id);
void cs_conv_touch(chat_store_t *st, cs_conv_t *c, uint64_t now_ms);
void cs_conv_changed(chat_store_t *st, cs_conv_t *c);
void cs_conv_format_id(const chat_store_t *st, const cs_conv_t *c, char *out);
void cs_conv_info(const chat_store_t *st, const cs_conv_t *c, chat_conv_info_t *out);
void cs_conv_evict(chat_store_t *st, cs_conv_t *c);
cs_conv_t *cs_conv_lru_victim(chat_store_t *st, const cs_conv_t *self);
/* Takes a free slot (want, or any if want is CS_NIL) off the free list. */
cs_conv_t *cs_conv_alloc(chat_store_t *st, uint32_t want);
void cs_lru_push_back(chat_store_t *st, cs_conv_t *c);
void cs_own_push_back(chat_store_t *st, cs_conv_t *c);
cs_user_t *cs_user_find(chat_store_t *st, const uint8_t *owner);
/* Finds or creates owner's entry; a full window replaces its least
 * recently seen entry (only if it was seen before seen_ms, unless force). */
cs_user_t *cs_user_get(chat_store_t *st, const uint8_t *owner, uint64_t seen_ms,
                       int force);

/* chat_store_msg.c */
void cs_msg_free_all(chat_store_t *st, cs_conv_t *c);
/* Starts an empty last message (needs one free block). */
void cs_msg_push(chat_store_t *st, cs_conv_t *c, uint32_t role, uint32_t flags,
                 uint64_t ts_ms);
/* Appends bytes to the last message (the caller made the blocks free). */
void cs_msg_write(chat_store_t *st, cs_conv_t *c, const char *text, size_t len);

/* chat_metrics.c */
void cs_metrics_error_add(chat_store_t *st, const char *code, uint64_t n);

#endif /* CHAT_STORE_INT_H */
