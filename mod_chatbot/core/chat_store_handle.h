/* chat_store_handle.h - a process's handle on the shared store region
 * (struct chat_store: pointers into its mapping), the atomics every store
 * file uses and the small helpers that address blocks, conversations and
 * fixed string fields.
 */
#ifndef CHAT_STORE_HANDLE_H
#define CHAT_STORE_HANDLE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "chat_store_layout.h"

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

#endif /* CHAT_STORE_HANDLE_H */
