/* chat_store_backend.c - per-backend state in the shared store: request
 * slots (holders with heartbeats), the FIFO waiting queue, the circuit
 * breaker and the last health probe.
 *
 * Fairness: a request may take a slot only if its place in line (queue
 * position, or queue length + 1 for a newcomer) is within the number of
 * free slots, so nobody jumps ahead of a waiter. Crashed children cannot
 * leak capacity: holders that stop beating for 60 s and waiters that stop
 * polling for 10 s are dropped on the next acquire.
 */
#include <inttypes.h>
#include <string.h>

#include "chat_store_int.h"

static cs_backend_t *backend_at(chat_store_t *st, int idx)
{
    if (!st || idx < 0 || (uint32_t)idx >= st->hdr->nbackends) {
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

static cs_holder_t *holder_find(chat_store_t *st, int idx, uint64_t ticket)
{
    cs_holder_t *ho = holders_of(st, idx);
    uint32_t k;
    for (k = 0; k < st->l.max_active; k++) {
        if (ho[k].ticket == ticket) {
            return &ho[k];
        }
    }
    return NULL;
}

static void reap(chat_store_t *st, int idx, cs_backend_t *b, uint64_t now_ms)
{
    cs_holder_t *ho = holders_of(st, idx);
    uint32_t k;

    for (k = 0; k < st->l.max_active; k++) {
        if (ho[k].ticket && stale(now_ms, ho[k].beat_ms, CS_HOLDER_STALE_MS)) {
            chat_log(CHAT_LOG_WARN,
                     "chatbot store: backend %s: reclaimed a request slot whose holder "
                     "stopped beating %" PRIu64 " ms ago",
                     b->name, now_ms - ho[k].beat_ms);
            ho[k].ticket = 0;
            ho[k].beat_ms = 0;
            b->nactive--;
        }
    }
    for (k = 0; k < b->q_count;) {
        if (stale(now_ms, waiter_at(st, idx, b, k)->poll_ms, CS_WAITER_STALE_MS)) {
            queue_remove(st, idx, b, k);
        }
        else {
            k++;
        }
    }
}

int chat_store_backend_register(chat_store_t *st, const char *name, uint32_t max_active)
{
    cs_hdr_t *h;
    cs_backend_t *b;
    uint32_t i;
    size_t n;

    if (!st || !name) {
        return CHAT_EINVAL;
    }
    n = strlen(name);
    if (n == 0 || n > CHAT_BOT_NAME_MAX) {
        return CHAT_EINVAL;
    }
    h = st->hdr;
    for (i = 0; i < h->nbackends; i++) {
        if (strcmp(st->backends[i].name, name) == 0) {
            st->backends[i].max_active = max_active;
            return (int)i;
        }
    }
    if (h->nbackends >= st->l.max_backends) {
        return CHAT_EFULL;
    }
    b = &st->backends[h->nbackends];
    memset(b, 0, sizeof(*b));
    memcpy(b->name, name, n);
    b->used = 1;
    b->max_active = max_active;
    b->breaker = CHAT_BREAKER_CLOSED;
    b->healthy = -1;
    return (int)h->nbackends++;
}

chat_status_t chat_store_backend_acquire(chat_store_t *st, int idx, uint64_t ticket,
                                         uint64_t now_ms, int32_t *position)
{
    cs_backend_t *b = backend_at(st, idx);
    cs_holder_t *ho;
    uint32_t lim, nfree, k;
    int p;

    if (position) {
        *position = 0;
    }
    if (!b || ticket == 0) {
        return CHAT_EINVAL;
    }
    cs_note_now(st, now_ms);
    reap(st, idx, b, now_ms);
    ho = holder_find(st, idx, ticket);
    if (ho) {
        ho->beat_ms = now_ms;
        return CHAT_OK;
    }
    lim = slot_limit(st, b);
    nfree = lim > b->nactive ? lim - b->nactive : 0;
    p = queue_find(st, idx, b, ticket);
    if (p >= 0) {
        if ((uint32_t)p >= nfree) {
            waiter_at(st, idx, b, (uint32_t)p)->poll_ms = now_ms;
            if (position) {
                *position = p + 1;
            }
            return CHAT_EAGAIN;
        }
        queue_remove(st, idx, b, (uint32_t)p);
    }
    else if (b->q_count >= nfree) {
        cs_waiter_t *w;
        if (b->q_count >= st->l.queue_cap) {
            return CHAT_EFULL;
        }
        w = waiter_at(st, idx, b, b->q_count);
        w->ticket = ticket;
        w->poll_ms = now_ms;
        b->q_count++;
        if (position) {
            *position = (int32_t)b->q_count;
        }
        return CHAT_EAGAIN;
    }
    /* a free slot exists: nactive < lim <= layout max_active */
    ho = holders_of(st, idx);
    for (k = 0; k < st->l.max_active; k++) {
        if (ho[k].ticket == 0) {
            ho[k].ticket = ticket;
            ho[k].beat_ms = now_ms;
            b->nactive++;
            return CHAT_OK;
        }
    }
    return CHAT_EINTERNAL;
}

void chat_store_backend_cancel(chat_store_t *st, int idx, uint64_t ticket)
{
    cs_backend_t *b = backend_at(st, idx);
    int p;

    if (!b || ticket == 0) {
        return;
    }
    p = queue_find(st, idx, b, ticket);
    if (p >= 0) {
        queue_remove(st, idx, b, (uint32_t)p);
    }
}

void chat_store_backend_release(chat_store_t *st, int idx, uint64_t ticket)
{
    cs_backend_t *b = backend_at(st, idx);
    cs_holder_t *ho;

    if (!b || ticket == 0) {
        return;
    }
    ho = holder_find(st, idx, ticket);
    if (ho) {
        ho->ticket = 0;
        ho->beat_ms = 0;
        b->nactive--;
    }
    chat_store_backend_cancel(st, idx, ticket);
}

void chat_store_backend_beat(chat_store_t *st, int idx, uint64_t ticket, uint64_t now_ms)
{
    cs_backend_t *b = backend_at(st, idx);
    cs_holder_t *ho;
    int p;

    if (!b || ticket == 0) {
        return;
    }
    ho = holder_find(st, idx, ticket);
    if (ho) {
        ho->beat_ms = now_ms;
        return;
    }
    p = queue_find(st, idx, b, ticket);
    if (p >= 0) {
        waiter_at(st, idx, b, (uint32_t)p)->poll_ms = now_ms;
    }
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int chat_store_breaker_allow(chat_store_t *st, int idx, uint64_t now_ms,
                             uint64_t cooldown_ms)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b) {
        return 1; /* no such backend, no breaker */
    }
    switch (b->breaker) {
    case CHAT_BREAKER_OPEN:
        if (now_ms < b->open_until_ms) {
            return 0;
        }
        /* cooldown over: this caller is the single probe */
        b->breaker = CHAT_BREAKER_HALF_OPEN;
        b->open_until_ms = add_sat(now_ms, cooldown_ms);
        return 1;
    case CHAT_BREAKER_HALF_OPEN:
        /* a probe is out; if it never reports (its process died) another
         * one is allowed after a further cooldown */
        if (now_ms < b->open_until_ms) {
            return 0;
        }
        b->open_until_ms = add_sat(now_ms, cooldown_ms);
        return 1;
    default:
        return 1;
    }
}

void chat_store_breaker_result(chat_store_t *st, int idx, int ok, uint64_t now_ms,
                               uint32_t threshold, uint64_t cooldown_ms)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b) {
        return;
    }
    if (ok) {
        b->breaker = CHAT_BREAKER_CLOSED;
        b->failures = 0;
        b->open_until_ms = 0;
        return;
    }
    if (b->failures < UINT32_MAX) {
        b->failures++;
    }
    /* threshold 0 disables the breaker; a late failure while OPEN changes
     * nothing (the cooldown is not extended) */
    if (b->breaker == CHAT_BREAKER_HALF_OPEN ||
        (b->breaker == CHAT_BREAKER_CLOSED && threshold > 0 &&
         b->failures >= threshold)) {
        b->breaker = CHAT_BREAKER_OPEN;
        b->open_until_ms = add_sat(now_ms, cooldown_ms);
    }
}

void chat_store_backend_health(chat_store_t *st, int idx, int healthy,
                               const char *version, const char *detail, uint64_t now_ms)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b) {
        return;
    }
    b->healthy = healthy < 0 ? -1 : healthy > 0 ? 1 : 0;
    cs_copy_trunc(b->version, sizeof(b->version), sizeof(b->version) - 1, version);
    cs_copy_trunc(b->detail, sizeof(b->detail), sizeof(b->detail) - 1, detail);
    b->checked_ms = now_ms;
}

chat_status_t chat_store_backend_get(chat_store_t *st, int idx, chat_backend_info_t *out)
{
    cs_backend_t *b = backend_at(st, idx);

    if (!b || !out) {
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
    return CHAT_OK;
}

int chat_store_backend_count(chat_store_t *st)
{
    return st ? (int)st->hdr->nbackends : 0;
}
