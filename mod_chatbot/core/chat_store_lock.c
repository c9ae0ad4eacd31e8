/* chat_store_lock.c - the shared store's locks, their undo logs, and the
 * process table that tells who is still alive.
 *
 * Every lock is a process-shared, robust pthread mutex inside the region
 * (no priority inheritance: under contention a PI mutex hands over through
 * the kernel and convoys). When the process holding one dies, the kernel
 * marks it "owner died" and the next pthread_mutex_lock() returns
 * EOWNERDEAD: that caller repairs what the dead holder was changing before
 * it proceeds, so a kill -9 at any instruction leaves no lock taken and no
 * half-made change.
 *
 * How the repair is done depends on what the lock guards:
 *  - shard and pool locks (conversations, messages, identities, free space)
 *    keep an undo log: before a structure is changed, its old bytes are
 *    appended to the lock's log (cs_snap); committing empties the log. The
 *    recoverer writes the logged bytes back, newest first, which restores
 *    exactly the state before the dead holder's unfinished step. A crash
 *    only ever interrupts a store in program order (the killed thread's
 *    executed stores all land; compiler barriers keep the log entry ahead
 *    of the change it protects), so no hardware fence is needed.
 *  - backend and misc locks (request slots, queues, registrations) guard
 *    soft state that a repair pass makes consistent again.
 * Text bytes are copied into blocks beyond a message's visible length, and
 * blocks taken from the pool are private until linked, so neither needs a
 * log entry.
 *
 * Resources handed between two locks (blocks and slots between a shard and
 * the pool) move as "the giver commits first": a crash between the two
 * commits can only leak the resource, never give it to both sides. Leaks
 * are found and given back by cs_sweep (run by chat_store_maintain after a
 * recovery, and by every attach).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "chat_store_int.h"

#define LOG_MAGIC 0x474F4C55u /* "ULOG" */

typedef struct {
    uint64_t off;
    uint32_t size;
    uint32_t magic;
} log_entry_t;

void (*chat_store_crash_hook)(void);

void chat_store_set_crash_hook(void (*fn)(void))
{
    chat_store_crash_hook = fn;
}

static void crash_point(void)
{
    if (chat_store_crash_hook) {
        chat_store_crash_hook();
    }
}

static size_t pad8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

static int mutex_init(pthread_mutex_t *mu)
{
    pthread_mutexattr_t a;
    int rc;

    if (pthread_mutexattr_init(&a) != 0) {
        return -1;
    }
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (rc == 0) {
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    }
    if (rc == 0) {
        rc = pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_NONE);
    }
    if (rc == 0) {
        memset(mu, 0, sizeof(*mu));
        rc = pthread_mutex_init(mu, &a);
    }
    pthread_mutexattr_destroy(&a);
    return rc == 0 ? 0 : -1;
}

static const char *kind_name(uint32_t kind)
{
    switch (kind) {
    case CS_LK_SHARD:
        return "shard";
    case CS_LK_POOL:
        return "pool";
    case CS_LK_BACKEND:
        return "backend";
    default:
        return "registry";
    }
}

chat_status_t cs_locks_init(chat_store_t *st)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i;

    for (i = 0; i < h->nlocks; i++) {
        cs_lock_t *lk = &st->locks[i];
        memset(lk, 0, sizeof(*lk));
        if (i < st->nshards) {
            lk->kind = CS_LK_SHARD;
            lk->index = i;
        }
        else if (i == st->nshards) {
            lk->kind = CS_LK_POOL;
        }
        else if (i == st->nshards + 1) {
            lk->kind = CS_LK_MISC;
        }
        else {
            lk->kind = CS_LK_BACKEND;
            lk->index = i - st->nshards - 2;
        }
        if (lk->kind == CS_LK_SHARD || lk->kind == CS_LK_POOL) {
            lk->log_off = h->off_logs + (uint64_t)i * CS_LOG_BYTES;
        }
        if (mutex_init(&lk->m.mu) != 0) {
            return CHAT_EINTERNAL;
        }
    }
    for (i = 0; i < st->l.max_procs; i++) {
        cs_proc_t *p = &st->procs[i];
        memset(p, 0, sizeof(*p));
        if (mutex_init(&p->life.mu) != 0) {
            return CHAT_EINTERNAL;
        }
    }
    return CHAT_OK;
}

/* ---- undo log ------------------------------------------------------------------ */

/* 1 if [off, off+n) may be written back by a rollback: the pool part of the
 * header or the data sections, never the identification, the locks, the
 * logs or the process table. */
static int restorable(const chat_store_t *st, uint64_t off, uint64_t n)
{
    uint64_t pool = offsetof(cs_hdr_t, pool);

    if (n == 0 || off > st->size || n > st->size - off) {
        return 0;
    }
    if (off >= pool && off + n <= pool + sizeof(cs_pool_t)) {
        return 1;
    }
    return off >= st->hdr->off_shards;
}

static uint32_t rollback(chat_store_t *st, cs_lock_t *lk)
{
    uint32_t at[CS_LOG_MAXENT];
    uint32_t len = lk->log_len, pos = 0, n = 0, k;
    uint8_t *log;

    if (!lk->log_off || len == 0) {
        lk->log_len = 0;
        return 0;
    }
    if (len > CS_LOG_BYTES) {
        len = CS_LOG_BYTES;
    }
    log = st->base + lk->log_off;
    while (pos + sizeof(log_entry_t) <= len && n < CS_LOG_MAXENT) {
        log_entry_t e;
        memcpy(&e, log + pos, sizeof(e));
        if (e.magic != LOG_MAGIC || e.size == 0 || pad8(e.size) > len - pos - sizeof(e)) {
            break;
        }
        at[n++] = pos;
        pos += (uint32_t)(sizeof(e) + pad8(e.size));
    }
    for (k = n; k-- > 0;) {
        log_entry_t e;
        memcpy(&e, log + at[k], sizeof(e));
        if (restorable(st, e.off, e.size)) {
            memcpy(st->base + e.off, log + at[k] + sizeof(e), e.size);
        }
    }
    __atomic_store_n(&lk->log_len, 0, __ATOMIC_RELEASE);
    return n;
}

void cs_lock_rollback(chat_store_t *st, cs_lock_t *lk)
{
    rollback(st, lk);
}

static void recover(chat_store_t *st, cs_lock_t *lk);

void cs_lock_abandon(chat_store_t *st, cs_lock_t *lk)
{
    recover(st, lk);
    pthread_mutex_unlock(&lk->m.mu);
}

static void log_append(chat_store_t *st, cs_lock_t *lk, const void *p, size_t n)
{
    uint32_t len = lk->log_len;
    size_t need = sizeof(log_entry_t) + pad8(n);
    log_entry_t e;
    uint8_t *at;

    if (!lk->log_off || len + need > CS_LOG_BYTES) {
        /* Every step is bounded far below the log size; reaching this is a
         * bug. Stopping here keeps the store consistent: the next holder
         * undoes what was logged so far. */
        chat_log(CHAT_LOG_ERROR, "chatbot store: undo log of %s lock %u overflowed",
                 kind_name(lk->kind), lk->index);
        abort();
    }
    e.off = (uint64_t)((const uint8_t *)p - st->base);
    e.size = (uint32_t)n;
    e.magic = LOG_MAGIC;
    at = st->base + lk->log_off + len;
    memcpy(at, &e, sizeof(e));
    memcpy(at + sizeof(e), p, n);
    /* the entry before the length that makes it count, the length before
     * the change it protects */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&lk->log_len, (uint32_t)(len + need), __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

void cs_snap(cs_tx_t *tx, const void *p, size_t n)
{
    int i;

    for (i = 0; i < tx->nsnap; i++) {
        if (tx->snap[i] == p && tx->snapn[i] >= n) {
            return; /* already logged in this step */
        }
    }
    crash_point();
    log_append(tx->st, tx->lk, p, n);
    if (tx->nsnap < CS_TX_SNAPS) {
        tx->snap[tx->nsnap] = p;
        tx->snapn[tx->nsnap++] = n;
    }
    crash_point();
}

void cs_commit(chat_store_t *st, cs_lock_t *lk)
{
    (void)st;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&lk->log_len, 0, __ATOMIC_RELEASE);
    crash_point();
}

void cs_tx_commit(cs_tx_t *tx)
{
    cs_commit(tx->st, tx->lk);
    tx->nsnap = 0;
}

/* ---- taking and recovering ------------------------------------------------------ */

static void recover(chat_store_t *st, cs_lock_t *lk)
{
    uint32_t n = 0;

    switch (lk->kind) {
    case CS_LK_SHARD:
    case CS_LK_POOL:
        n = rollback(st, lk);
        /* the holder may have moved blocks or slots between the pool and a
         * shard: find anything lost in between */
        CS_STORE32(&st->hdr->sweep_needed, 1);
        break;
    case CS_LK_BACKEND:
        cs_backend_repair(st, lk->index);
        break;
    default:
        cs_misc_repair(st);
        break;
    }
    lk->recoveries++;
    CS_ADD64(&st->hdr->recoveries, 1);
    chat_log(
        CHAT_LOG_WARN,
        "chatbot store: the process holding the %s lock %u died; %u change(s) of its "
        "unfinished update rolled back",
        kind_name(lk->kind), lk->index, n);
}

/* After pthread_mutex_(try)lock returned rc: recovers a dead holder's
 * lock; 0 once the lock is ours. */
static int taken(chat_store_t *st, cs_lock_t *lk, int rc)
{
    if (rc == EOWNERDEAD) {
        recover(st, lk);
        pthread_mutex_consistent(&lk->m.mu);
        rc = 0;
    }
    if (rc == 0) {
        lk->holder = st->proc_tag;
    }
    return rc;
}

chat_status_t cs_lock(chat_store_t *st, cs_lock_t *lk)
{
    int rc = taken(st, lk, pthread_mutex_lock(&lk->m.mu));

    if (rc != 0) {
        chat_log(CHAT_LOG_ERROR, "chatbot store: cannot take the %s lock %u: %s",
                 kind_name(lk->kind), lk->index, strerror(rc));
        return CHAT_EINTERNAL;
    }
    return CHAT_OK;
}

int cs_trylock(chat_store_t *st, cs_lock_t *lk)
{
    return taken(st, lk, pthread_mutex_trylock(&lk->m.mu)) == 0;
}

void cs_unlock(chat_store_t *st, cs_lock_t *lk)
{
    cs_commit(st, lk);
    lk->holder = 0;
    pthread_mutex_unlock(&lk->m.mu);
}

chat_status_t cs_lock_all(chat_store_t *st)
{
    uint32_t i, n = st->hdr->nlocks;

    /* shards, pool, misc, backends: ascending index is the lock order */
    for (i = 0; i < n; i++) {
        if (cs_lock(st, &st->locks[i]) != CHAT_OK) {
            while (i-- > 0) {
                cs_unlock(st, &st->locks[i]);
            }
            return CHAT_EINTERNAL;
        }
    }
    return CHAT_OK;
}

void cs_unlock_all(chat_store_t *st)
{
    uint32_t i = st->hdr->nlocks;

    while (i-- > 0) {
        cs_unlock(st, &st->locks[i]);
    }
}

/* ---- processes ------------------------------------------------------------------- */

static uint64_t proc_tag(uint32_t slot, uint32_t epoch)
{
    return ((uint64_t)(slot + 1) << 32) | epoch;
}

chat_status_t cs_shm_proc_attach(chat_store_t *st, int pid, uint64_t now_ms)
{
    uint32_t i, n = st->l.max_procs, start = (uint32_t)pid % n;

    if (st->proc_slot >= 0) {
        return CHAT_OK;
    }
    for (i = 0; i < n; i++) {
        uint32_t k = (start + i) % n;
        cs_proc_t *p = &st->procs[k];
        int rc = pthread_mutex_trylock(&p->life.mu);
        uint32_t ep;
        if (rc == EOWNERDEAD) {
            pthread_mutex_consistent(&p->life.mu);
            rc = 0;
        }
        if (rc != 0) {
            continue;
        }
        /* ours for as long as this process lives */
        ep = __atomic_add_fetch(&p->epoch, 1, __ATOMIC_ACQ_REL);
        if (ep == 0) {
            ep = __atomic_add_fetch(&p->epoch, 1, __ATOMIC_ACQ_REL);
        }
        p->pid = pid;
        p->since_ms = now_ms;
        CS_STORE32(&p->state, CS_PROC_LIVE);
        st->proc_slot = (int)k;
        st->proc_tag = proc_tag(k, ep);
        return CHAT_OK;
    }
    chat_log(CHAT_LOG_WARN,
             "chatbot store: the process table (%u entries) is full; process %d's "
             "crashes will only be noticed by timeouts",
             n, pid);
    return CHAT_EFULL;
}

void cs_shm_proc_detach(chat_store_t *st)
{
    cs_proc_t *p;

    if (st->proc_slot < 0) {
        return;
    }
    p = &st->procs[st->proc_slot];
    CS_STORE32(&p->state, CS_PROC_FREE);
    pthread_mutex_unlock(&p->life.mu);
    st->proc_slot = -1;
    st->proc_tag = 0;
}

/* 1 if the process of tag lives (or cannot be told), 0 if it is gone.
 * Whoever first finds it gone frees its entry and counts it (*freed = 1),
 * deciding under the entry's life mutex, so a death is counted once. */
static int proc_check(chat_store_t *st, uint64_t tag, int *freed)
{
    uint32_t slot, epoch;
    cs_proc_t *p;
    int rc;

    *freed = 0;
    if (tag == 0) {
        return 1; /* unknown: only timeouts can tell */
    }
    if (tag == st->proc_tag) {
        return 1;
    }
    slot = (uint32_t)(tag >> 32) - 1;
    epoch = (uint32_t)tag;
    if (slot >= st->l.max_procs) {
        return 0;
    }
    p = &st->procs[slot];
    if (CS_LOAD32(&p->epoch) != epoch || CS_LOAD32(&p->state) != CS_PROC_LIVE) {
        return 0;
    }
    rc = pthread_mutex_trylock(&p->life.mu);
    if (rc == EBUSY || rc == EDEADLK) {
        return 1;
    }
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(&p->life.mu);
        rc = 0;
    }
    if (rc == 0) {
        /* nobody holds it: the process is gone; free the entry (still ours
         * to change only if no one claimed it meanwhile) */
        if (CS_LOAD32(&p->epoch) == epoch && CS_LOAD32(&p->state) == CS_PROC_LIVE) {
            CS_STORE32(&p->state, CS_PROC_FREE);
            CS_ADD64(&st->hdr->proc_reaped, 1);
            *freed = 1;
        }
        pthread_mutex_unlock(&p->life.mu);
    }
    return 0;
}

int cs_proc_alive(chat_store_t *st, uint64_t tag)
{
    int freed;

    return proc_check(st, tag, &freed);
}

int cs_shm_maintain(chat_store_t *st, uint64_t now_ms)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i;
    int dead = 0;

    cs_note_now(st, now_ms);
    /* locks whose holder died: a trylock recovers them */
    for (i = 0; i < h->nlocks; i++) {
        if (cs_trylock(st, &st->locks[i])) {
            cs_unlock(st, &st->locks[i]);
        }
    }
    for (i = 0; i < st->l.max_procs; i++) {
        cs_proc_t *p = &st->procs[i];
        int freed;
        if (CS_LOAD32(&p->state) == CS_PROC_LIVE &&
            !proc_check(st, proc_tag(i, CS_LOAD32(&p->epoch)), &freed)) {
            dead += freed;
        }
    }
    /* every time: a process that died between two calls may have been
     * freed by someone else's liveness check already */
    cs_conv_reap_dead(st);
    cs_backend_reap_dead(st);
    if (CS_LOAD32(&h->sweep_needed) && cs_lock_all(st) == CHAT_OK) {
        uint64_t leaked = 0;
        if (cs_validate_ex(st, &leaked) == CHAT_OK) {
            if (leaked) {
                cs_sweep(st);
            }
            CS_STORE32(&h->sweep_needed, 0);
        }
        else {
            chat_log(CHAT_LOG_ERROR,
                     "chatbot store: the store failed its consistency check after a "
                     "recovery");
            CS_STORE32(&h->sweep_needed, 0);
        }
        cs_unlock_all(st);
    }
    return dead;
}
