/* chat_store_lock.h - which lock guards what (an identity's shard, the
 * pool, misc, one per backend), and the locks, undo-logged transactions and
 * process table of chat_store_lock.c.
 */
#ifndef CHAT_STORE_LOCK_H
#define CHAT_STORE_LOCK_H

#include <stddef.h>
#include <stdint.h>

#include "chat_store_handle.h"

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

#endif /* CHAT_STORE_LOCK_H */
