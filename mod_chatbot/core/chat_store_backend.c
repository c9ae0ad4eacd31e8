/* chat_store_backend.c - per-backend state in the shared store: request
 * slots (holders with heartbeats), the FIFO waiting queue, the circuit
 * breaker and the last health probe. Each backend has its own lock.
 *
 * Fairness: a request may take a slot only if its place in line (queue
 * position, or queue length + 1 for a newcomer) is within the number of
 * free slots, so nobody jumps ahead of a waiter. Crashed children cannot
 * leak capacity: entries of a process that died are dropped within half a
 * second of the next acquire (and by chat_store_maintain), and holders that
 * stop beating for 60 s and waiters that stop polling for 10 s are dropped
 * whatever the reason.
 *
 * Holders are kept dense ([0, nactive) in use), so finding a ticket costs
 * the number of requests in flight, not the slot table's size.
 *
 * This state is soft: if a holder of the backend lock dies part way, the
 * next one repairs the tables (cs_backend_repair) instead of rolling back.
 */
#include <inttypes.h>
#include <string.h>

#include "chat_store_int.h"

static cs_backend_t *backend_at(chat_store_t *st, int idx)
{
    if (!st || idx < 0 || (uint32_t)idx >= CS_LOAD32(&st->hdr->nbackends)) {
        return NULL;
    }
    return &st->backends[idx];
}

static cs_holder_t *holders_of(chat_store_t *st, int idx)
{
    return &st->holders[(size_t)idx * st->l.max_active];
}

static cs_waiter_t *waiter_at(chat_store_t *st, int idx, const cs_backend_t *b,
                              uint32_t k)
{
    return &st->queue[(size_t)idx * st->l.queue_cap + (b->q_head + k) % st->l.queue_cap];
}

/* Effective number of slots: the registered limit, bounded by the layout. */
static uint32_t slot_limit(const chat_store_t *st, const cs_backend_t *b)
{
    return (b->max_active == 0 || b->max_active > st->l.max_active) ? st->l.max_active
                                                                    : b->max_active;
}

static int stale(uint64_t now_ms, uint64_t then_ms, uint64_t limit_ms)
{
    /* a clock going backwards never makes an entry stale */
    return now_ms > then_ms && now_ms - then_ms > limit_ms;
}

static int lock_backend(chat_store_t *st, int idx, cs_backend_t **pb)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b || cs_lock(st, cs_backend_lock(st, (uint32_t)idx)) != CHAT_OK) {
        return 0;
    }
    *pb = b;
    return 1;
}

static void unlock_backend(chat_store_t *st, int idx)
{
    cs_unlock(st, cs_backend_lock(st, (uint32_t)idx));
}

/* Removes the waiter at queue position k (0-based), keeping the order. */
static void queue_remove(chat_store_t *st, int idx, cs_backend_t *b, uint32_t k)
{
    for (; k + 1 < b->q_count; k++) {
        *waiter_at(st, idx, b, k) = *waiter_at(st, idx, b, k + 1);
    }
    memset(waiter_at(st, idx, b, b->q_count - 1), 0, sizeof(cs_waiter_t));
    b->q_count--;
    if (b->q_count == 0) {
        b->q_head = 0;
    }
}

static int queue_find(chat_store_t *st, int idx, const cs_backend_t *b, uint64_t ticket)
{
    uint32_t k;
    for (k = 0; k < b->q_count; k++) {
        if (waiter_at(st, idx, b, k)->ticket == ticket) {
            return (int)k;
        }
    }
    return -1;
}

static cs_holder_t *holder_find(chat_store_t *st, int idx, const cs_backend_t *b,
                                uint64_t ticket)
{
    cs_holder_t *ho = holders_of(st, idx);
    uint32_t k;
    for (k = 0; k < b->nactive; k++) {
        if (ho[k].ticket == ticket) {
            return &ho[k];
        }
    }
    return NULL;
}

/* Frees holder k: the last one moves into its place. */
static void holder_remove(chat_store_t *st, int idx, cs_backend_t *b, uint32_t k)
{
    cs_holder_t *ho = holders_of(st, idx);

    ho[k] = ho[b->nactive - 1];
    memset(&ho[b->nactive - 1], 0, sizeof(cs_holder_t));
    b->nactive--;
}

/* Drops stale entries and, with procs, those of processes that died (a
 * trylock per entry: not on every call). */
static int reap(chat_store_t *st, int idx, cs_backend_t *b, uint64_t now_ms, int procs)
{
    cs_holder_t *ho = holders_of(st, idx);
    uint32_t k;
    int n = 0;

    for (k = 0; k < b->nactive;) {
        int old = stale(now_ms, ho[k].beat_ms, CS_HOLDER_STALE_MS);
        if (old || (procs && !cs_proc_alive(st, ho[k].proc))) {
            chat_log(
                CHAT_LOG_WARN,
                "chatbot store: backend %s: reclaimed a request slot whose holder %s",
                b->name, old ? "stopped beating" : "died");
            holder_remove(st, idx, b, k);
            n++;
        }
        else {
            k++;
        }
    }
    for (k = 0; k < b->q_count;) {
        cs_waiter_t *w = waiter_at(st, idx, b, k);
        if (stale(now_ms, w->poll_ms, CS_WAITER_STALE_MS) ||
            (procs && !cs_proc_alive(st, w->proc))) {
            queue_remove(st, idx, b, k);
            n++;
        }
        else {
            k++;
        }
    }
    if (procs) {
        b->reaped_ms = now_ms;
    }
    return n;
}

void cs_backend_repair(chat_store_t *st, uint32_t idx)
{
    cs_backend_t *b = &st->backends[idx];
    cs_holder_t *ho = &st->holders[(size_t)idx * st->l.max_active];
    cs_waiter_t *q = &st->queue[(size_t)idx * st->l.queue_cap];
    uint32_t k, n = 0, head, cnt;

    if (idx >= st->l.max_backends) {
        return;
    }
    /* holders: dense again, duplicates dropped */
    for (k = 0; k < st->l.max_active; k++) {
        uint32_t j;
        int dup = 0;
        if (!ho[k].ticket) {
            continue;
        }
        for (j = 0; j < n; j++) {
            dup |= ho[j].ticket == ho[k].ticket;
        }
        if (!dup) {
            ho[n++] = ho[k];
        }
    }
    for (k = n; k < st->l.max_active; k++) {
        memset(&ho[k], 0, sizeof(cs_holder_t));
    }
    b->nactive = n;
    /* the queue: its live entries in order, from a sane head */
    head = b->q_head < st->l.queue_cap ? b->q_head : 0;
    cnt = b->q_count <= st->l.queue_cap ? b->q_count : st->l.queue_cap;
    n = 0;
    for (k = 0; k < cnt; k++) {
        cs_waiter_t w = q[(head + k) % st->l.queue_cap];
        if (w.ticket) {
            q[n++] = w;
        }
    }
    for (k = n; k < st->l.queue_cap; k++) {
        memset(&q[k], 0, sizeof(cs_waiter_t));
    }
    b->q_head = 0;
    b->q_count = n;
    if (b->breaker < CHAT_BREAKER_CLOSED || b->breaker > CHAT_BREAKER_HALF_OPEN) {
        b->breaker = CHAT_BREAKER_CLOSED;
    }
}

int cs_backend_reap_dead(chat_store_t *st)
{
    uint32_t i, nb = CS_LOAD32(&st->hdr->nbackends);
    int n = 0;

    for (i = 0; i < nb; i++) {
        cs_backend_t *b;
        if (lock_backend(st, (int)i, &b)) {
            n += reap(st, (int)i, b, cs_now(st), 1);
            unlock_backend(st, (int)i);
        }
    }
    return n;
}

int cs_shm_backend_register(chat_store_t *st, const char *name, uint32_t max_active)
{
    cs_hdr_t *h;
    cs_backend_t *b;
    uint32_t i;
    size_t n;
    int rc;

    if (!st || !name) {
        return CHAT_EINVAL;
    }
    n = strlen(name);
    if (n == 0 || n > CHAT_BOT_NAME_MAX) {
        return CHAT_EINVAL;
    }
    if (cs_lock(st, cs_misc_lock(st)) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    h = st->hdr;
    for (i = 0; i < h->nbackends; i++) {
        if (strcmp(st->backends[i].name, name) == 0) {
            st->backends[i].max_active = max_active;
            cs_unlock(st, cs_misc_lock(st));
            return (int)i;
        }
    }
    if (h->nbackends >= st->l.max_backends) {
        cs_unlock(st, cs_misc_lock(st));
        return CHAT_EFULL;
    }
    b = &st->backends[h->nbackends];
    memset(b, 0, sizeof(*b));
    memcpy(b->name, name, n);
    b->used = 1;
    b->max_active = max_active;
    b->breaker = CHAT_BREAKER_CLOSED;
    b->healthy = -1;
    rc = (int)h->nbackends;
    CS_STORE32(&h->nbackends, h->nbackends + 1);
    cs_unlock(st, cs_misc_lock(st));
    return rc;
}

chat_status_t cs_shm_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                     uint64_t now_ms, int32_t *position)
{
    cs_backend_t *b;
    cs_holder_t *ho;
    uint32_t lim, nfree;
    chat_status_t rc;
    int p, full, newcomer = 0;

    if (position) {
        *position = 0;
    }
    if (ticket == 0 || !lock_backend(st, idx, &b)) {
        return CHAT_EINVAL;
    }
    cs_note_now(st, now_ms);
    lim = slot_limit(st, b);
    /* every slot taken: a newcomer always checks that the holders live (a
     * child killed a moment ago must not make it queue); waiters already
     * in line check at most every 50 ms */
    full = b->nactive >= lim;
    if (full) {
        newcomer = !holder_find(st, idx, b, ticket) && queue_find(st, idx, b, ticket) < 0;
    }
    reap(st, idx, b, now_ms,
         stale(now_ms, b->reaped_ms, CS_REAP_EVERY_MS) ||
             (full && (newcomer || stale(now_ms, b->reaped_ms, 50))));
    ho = holder_find(st, idx, b, ticket);
    if (ho) {
        ho->beat_ms = now_ms;
        unlock_backend(st, idx);
        return CHAT_OK;
    }
    nfree = lim > b->nactive ? lim - b->nactive : 0;
    p = queue_find(st, idx, b, ticket);
    if (p >= 0) {
        if ((uint32_t)p >= nfree) {
            waiter_at(st, idx, b, (uint32_t)p)->poll_ms = now_ms;
            if (position) {
                *position = p + 1;
            }
            unlock_backend(st, idx);
            return CHAT_EAGAIN;
        }
        queue_remove(st, idx, b, (uint32_t)p);
    }
    else if (b->q_count >= nfree) {
        cs_waiter_t *w;
        if (b->q_count >= st->l.queue_cap) {
            unlock_backend(st, idx);
            return CHAT_EFULL;
        }
        w = waiter_at(st, idx, b, b->q_count);
        w->poll_ms = now_ms;
        w->proc = st->proc_tag;
        w->ticket = ticket;
        b->q_count++;
        if (position) {
            *position = (int32_t)b->q_count;
        }
        unlock_backend(st, idx);
        return CHAT_EAGAIN;
    }
    /* a free slot exists: nactive < lim <= layout max_active */
    rc = CHAT_EINTERNAL;
    if (b->nactive < st->l.max_active) {
        ho = &holders_of(st, idx)[b->nactive];
        ho->beat_ms = now_ms;
        ho->proc = st->proc_tag;
        ho->ticket = ticket;
        b->nactive++;
        rc = CHAT_OK;
    }
    unlock_backend(st, idx);
    return rc;
}

static void cancel_locked(chat_store_t *st, int idx, cs_backend_t *b, uint64_t ticket)
{
    int p = queue_find(st, idx, b, ticket);
    if (p >= 0) {
        queue_remove(st, idx, b, (uint32_t)p);
    }
}

void cs_shm_backend_cancel(chat_store_t *st, int idx, uint64_t ticket)
{
    cs_backend_t *b;

    if (ticket == 0 || !lock_backend(st, idx, &b)) {
        return;
    }
    cancel_locked(st, idx, b, ticket);
    unlock_backend(st, idx);
}

void cs_shm_backend_release(chat_store_t *st, int idx, uint64_t ticket)
{
    cs_backend_t *b;
    cs_holder_t *ho;

    if (ticket == 0 || !lock_backend(st, idx, &b)) {
        return;
    }
    ho = holder_find(st, idx, b, ticket);
    if (ho) {
        holder_remove(st, idx, b, (uint32_t)(ho - holders_of(st, idx)));
    }
    cancel_locked(st, idx, b, ticket);
    unlock_backend(st, idx);
}

void cs_shm_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms)
{
    cs_backend_t *b;
    cs_holder_t *ho;
    int p;

    if (ticket == 0 || !lock_backend(st, idx, &b)) {
        return;
    }
    ho = holder_find(st, idx, b, ticket);
    if (ho) {
        ho->beat_ms = now_ms;
    }
    else if ((p = queue_find(st, idx, b, ticket)) >= 0) {
        waiter_at(st, idx, b, (uint32_t)p)->poll_ms = now_ms;
    }
    unlock_backend(st, idx);
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int cs_shm_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms, uint64_t cooldown_ms)
{
    cs_backend_t *b = backend_at(st, idx);
    int allow = 1;

    if (!b) {
        return 1; /* no such backend, no breaker */
    }
    if (CS_PEEK32((const uint32_t *)&b->breaker) == CHAT_BREAKER_CLOSED) {
        return 1; /* the common case needs no lock */
    }
    if (!lock_backend(st, idx, &b)) {
        return 1;
    }
    switch (b->breaker) {
    case CHAT_BREAKER_OPEN:
        if (now_ms < b->open_until_ms) {
            allow = 0;
            break;
        }
        /* cooldown over: this caller is the single probe */
        b->breaker = CHAT_BREAKER_HALF_OPEN;
        b->open_until_ms = add_sat(now_ms, cooldown_ms);
        break;
    case CHAT_BREAKER_HALF_OPEN:
        /* a probe is out; if it never reports (its process died) another
         * one is allowed after a further cooldown */
        if (now_ms < b->open_until_ms) {
            allow = 0;
            break;
        }
        b->open_until_ms = add_sat(now_ms, cooldown_ms);
        break;
    default:
        break;
    }
    unlock_backend(st, idx);
    return allow;
}

void cs_shm_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                           uint32_t threshold, uint64_t cooldown_ms)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b) {
        return;
    }
    if (ok && CS_PEEK32((const uint32_t *)&b->breaker) == CHAT_BREAKER_CLOSED &&
        CS_PEEK32(&b->failures) == 0) {
        return; /* nothing to change: no lock */
    }
    if (!lock_backend(st, idx, &b)) {
        return;
    }
    if (ok) {
        b->breaker = CHAT_BREAKER_CLOSED;
        b->failures = 0;
        b->open_until_ms = 0;
    }
    else {
        if (b->failures < UINT32_MAX) {
            b->failures++;
        }
        /* threshold 0 disables the breaker; a late failure while OPEN
         * changes nothing (the cooldown is not extended) */
        if (b->breaker == CHAT_BREAKER_HALF_OPEN ||
            (b->breaker == CHAT_BREAKER_CLOSED && threshold > 0 &&
             b->failures >= threshold)) {
            b->breaker = CHAT_BREAKER_OPEN;
            b->open_until_ms = add_sat(now_ms, cooldown_ms);
        }
    }
    unlock_backend(st, idx);
}

void cs_shm_backend_health(chat_store_t *st, int idx, int healthy, const char *version,
                           const char *detail, uint64_t now_ms)
{
    cs_backend_t *b = backend_at(st, idx);
    int h = healthy < 0 ? -1 : healthy > 0 ? 1 : 0;
    uint64_t checked;

    if (!b) {
        return;
    }
    /* every turn reports; the common "still fine" needs no lock while the
     * last report is under a second old */
    checked = CS_PEEK64(&b->checked_ms);
    if (CS_PEEK32((const uint32_t *)&b->healthy) == (uint32_t)h && !version && detail &&
        !detail[0] && !CS_PEEK32((const uint32_t *)b->detail) && now_ms >= checked &&
        now_ms - checked < 1000) {
        return;
    }
    if (!lock_backend(st, idx, &b)) {
        return;
    }
    b->healthy = h;
    if (version) { /* NULL: keep what the last probe found */
        cs_copy_trunc(b->version, sizeof(b->version), sizeof(b->version) - 1, version);
    }
    cs_copy_trunc(b->detail, sizeof(b->detail), sizeof(b->detail) - 1, detail);
    b->checked_ms = now_ms;
    unlock_backend(st, idx);
}

chat_status_t cs_shm_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out)
{
    cs_backend_t *b;

    if (!out || !lock_backend(st, idx, &b)) {
        return CHAT_ENOTFOUND;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out->name, b->name, CHAT_BOT_NAME_MAX);
    out->max_active = b->max_active;
    out->active = b->nactive;
    out->queued = b->q_count;
    out->breaker = b->breaker;
    out->failures = b->failures;
    out->open_until_ms = b->open_until_ms;
    out->healthy = b->healthy;
    out->checked_ms = b->checked_ms;
    memcpy(out->version, b->version, sizeof(out->version));
    memcpy(out->detail, b->detail, sizeof(out->detail));
    unlock_backend(st, idx);
    return CHAT_OK;
}

int cs_shm_backend_count(chat_store_t *st)
{
    return st ? (int)CS_LOAD32(&st->hdr->nbackends) : 0;
}
