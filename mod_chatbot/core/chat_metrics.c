/* chat_metrics.c - counters, histograms, gauges and error-code counts kept
 * in the shared store. Updates are lock-free (GCC/Clang __atomic builtins
 * on naturally aligned 64-bit fields), so the hot path of every answer
 * takes no lock for them; only creating a series takes the misc lock.
 */
#include <math.h>
#include <string.h>

#include "chat_store_int.h"

/* Bucket upper bounds; the last is +Inf. */
static const double bounds_ttft[CHAT_HIST_BUCKETS] = {
    50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000, INFINITY};
static const double bounds_duration[CHAT_HIST_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000, 300000, INFINITY};
static const double bounds_tps[CHAT_HIST_BUCKETS] = {1,  2,  5,   10,  20,  30,
                                                     50, 75, 100, 150, 250, INFINITY};

const double *chat_metrics_bounds(chat_hist_t h)
{
    switch (h) {
    case CHAT_HIST_TTFT:
    case CHAT_HIST_QUEUE_WAIT:
        return bounds_ttft;
    case CHAT_HIST_DURATION:
        return bounds_duration;
    case CHAT_HIST_TPS:
        return bounds_tps;
    default:
        return NULL;
    }
}

void cs_misc_repair(chat_store_t *st)
{
    cs_hdr_t *h = st->hdr;
    uint32_t i, n = 0;

    /* series and backends are published by their count, written last: an
     * entry past the count is not in use */
    while (n < st->l.metric_series && n < CS_LOAD32(&h->nseries) && st->series[n].used &&
           cs_strok(st->series[n].bot, CHAT_BOT_NAME_MAX + 1) &&
           cs_strok(st->series[n].backend, CHAT_BOT_NAME_MAX + 1)) {
        n++;
    }
    for (i = n; i < st->l.metric_series; i++) {
        st->series[i].used = 0;
    }
    CS_STORE32(&h->nseries, n);
    n = 0;
    while (n < st->l.max_backends && n < CS_LOAD32(&h->nbackends) &&
           st->backends[n].used &&
           cs_strok(st->backends[n].name, CHAT_BOT_NAME_MAX + 1) &&
           st->backends[n].name[0]) {
        n++;
    }
    for (i = n; i < st->l.max_backends; i++) {
        if (i >= CS_LOAD32(&h->nbackends) || !st->backends[i].used) {
            continue;
        }
        memset(&st->backends[i], 0, sizeof(cs_backend_t));
    }
    CS_STORE32(&h->nbackends, n);
}

int cs_shm_series(chat_store_t *st, const char *bot, const char *backend)
{
    cs_hdr_t *h;
    cs_series_t *s;
    uint32_t i, n;
    int rc;

    if (!st) {
        return CHAT_EINVAL;
    }
    bot = bot ? bot : "";
    backend = backend ? backend : "";
    if (strlen(bot) > CHAT_BOT_NAME_MAX || strlen(backend) > CHAT_BOT_NAME_MAX) {
        return CHAT_EINVAL;
    }
    if (cs_lock(st, cs_misc_lock(st)) != CHAT_OK) {
        return CHAT_EINTERNAL;
    }
    h = st->hdr;
    n = h->nseries;
    for (i = 0; i < n; i++) {
        if (strcmp(st->series[i].bot, bot) == 0 &&
            strcmp(st->series[i].backend, backend) == 0) {
            cs_unlock(st, cs_misc_lock(st));
            return (int)i;
        }
    }
    if (n >= st->l.metric_series) {
        cs_unlock(st, cs_misc_lock(st));
        return CHAT_EFULL;
    }
    s = &st->series[n];
    memset(s, 0, sizeof(*s));
    cs_copy_trunc(s->bot, CS_NAME_SZ, CHAT_BOT_NAME_MAX, bot);
    cs_copy_trunc(s->backend, CS_NAME_SZ, CHAT_BOT_NAME_MAX, backend);
    s->used = 1;
    /* publish after the names: lock-free readers use nseries as the bound */
    CS_STORE32(&h->nseries, n + 1);
    rc = (int)n;
    cs_unlock(st, cs_misc_lock(st));
    return rc;
}

static cs_series_t *series_at(chat_store_t *st, int series)
{
    if (!st || series < 0 || (uint32_t)series >= CS_LOAD32(&st->hdr->nseries)) {
        return NULL;
    }
    return &st->series[series];
}

void cs_shm_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v)
{
    cs_series_t *s = series_at(st, series);

    if (s && (unsigned)c < CHAT_CTR_COUNT) {
        CS_ADD64(&s->counters[c], v);
    }
}

void cs_shm_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v)
{
    cs_series_t *s = series_at(st, series);
    const double *b;
    uint64_t old, nw;
    int i;

    if (!s || (unsigned)h >= CHAT_HIST_COUNT || isnan(v)) {
        return;
    }
    b = chat_metrics_bounds(h);
    for (i = 0; i < CHAT_HIST_BUCKETS - 1 && v > b[i]; i++) {
    }
    CS_ADD64(&s->hist[h][i], 1);
    CS_ADD64(&s->hist_count[h], 1);
    /* the sum is a double: compare-and-swap its bit pattern */
    old = __atomic_load_n(&s->hist_sum[h], __ATOMIC_RELAXED);
    do {
        double d;
        memcpy(&d, &old, sizeof(d));
        d += v;
        memcpy(&nw, &d, sizeof(nw));
    } while (!__atomic_compare_exchange_n(&s->hist_sum[h], &old, nw, 0, __ATOMIC_RELAXED,
                                          __ATOMIC_RELAXED));
}

void cs_shm_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta)
{
    if (st && (unsigned)g < CHAT_G_COUNT) {
        __atomic_add_fetch(&st->hdr->gauges[g], delta, __ATOMIC_RELAXED);
    }
}

void cs_metrics_error_add(chat_store_t *st, const char *code, uint64_t n)
{
    char key[32];
    cs_hdr_t *h = st->hdr;
    int i;

    cs_copy_trunc(key, sizeof(key), sizeof(key) - 1, code && *code ? code : "unknown");
    /* the last entry collects every code that found no room */
    for (i = 0; i < CHAT_ERRCODE_MAX; i++) {
        cs_errent_t *e = &h->errors[i];
        const char *k = i == CHAT_ERRCODE_MAX - 1 ? "other" : key;
        for (;;) {
            uint32_t state = CS_LOAD32(&e->state), expected = CS_ERR_EMPTY;
            if (state == CS_ERR_READY) {
                if (strncmp(e->code, k, sizeof(e->code)) == 0) {
                    CS_ADD64(&e->count, n);
                    return;
                }
                break;
            }
            if (state != CS_ERR_EMPTY) {
                break; /* being named by another process: never wait for it */
            }
            if (__atomic_compare_exchange_n(&e->state, &expected, CS_ERR_WRITING, 0,
                                            __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
                cs_copy_trunc(e->code, sizeof(e->code), sizeof(e->code) - 1, k);
                CS_ADD64(&e->count, n);
                CS_STORE32(&e->state, CS_ERR_READY);
                return;
            }
        }
    }
}

void cs_shm_metrics_error(chat_store_t *st, const char *code)
{
    if (st) {
        cs_metrics_error_add(st, code, 1);
    }
}

void cs_shm_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out)
{
    cs_hdr_t *h;
    int i, j;

    if (!out) {
        return;
    }
    memset(out, 0, sizeof(*out));
    if (!st) {
        return;
    }
    h = st->hdr;
    for (i = 0; i < CHAT_G_COUNT; i++) {
        out->gauges[i] = CS_LOAD64(&h->gauges[i]);
    }
    /* live gauges cannot be negative (a child of the previous generation
     * may decrement after a recover reset them) */
    for (i = CHAT_G_CONNECTIONS; i <= CHAT_G_QUEUED; i++) {
        if (out->gauges[i] < 0) {
            out->gauges[i] = 0;
        }
    }
    for (i = 0; i < CHAT_ERRCODE_MAX; i++) {
        const cs_errent_t *e = &h->errors[i];
        if (CS_LOAD32(&e->state) != CS_ERR_READY) {
            continue;
        }
        /* two processes may have named the same code at once: merge */
        for (j = 0; j < out->nerrors; j++) {
            if (strncmp(out->errors[j].code, e->code, sizeof(e->code)) == 0) {
                break;
            }
        }
        if (j == out->nerrors) {
            memcpy(out->errors[j].code, e->code, sizeof(out->errors[j].code));
            out->errors[j].code[sizeof(out->errors[j].code) - 1] = '\0';
            out->nerrors++;
        }
        out->errors[j].count += CS_LOAD64(&e->count);
    }
    /* usage counters are written under the lock; read them atomically so
     * a snapshot taken without it sees whole values */
    out->conversations = CS_LOAD32(&h->pool.nconv);
    out->max_conversations = st->l.max_conversations;
    for (i = 0; i < (int)st->nshards; i++) {
        out->users += CS_LOAD32(&st->shards[i].nusers);
    }
    out->max_users = st->l.max_users;
    out->arena_size = (uint64_t)st->nblocks * CS_BLOCK;
    out->arena_used = (uint64_t)(st->nblocks - CS_LOAD32(&h->pool.blk_nfree)) * CS_BLOCK;
    out->anon_conversations = CS_LOAD32(&h->pool.anon_convs);
    out->anon_arena_used = CS_LOAD64(&h->pool.anon_blocks) * CS_BLOCK;
    out->started_ms = h->started_ms;
    out->recoveries = CS_LOAD64(&h->recoveries);
    out->procs_reaped = CS_LOAD64(&h->proc_reaped);
}

int cs_shm_metrics_series_count(chat_store_t *st)
{
    return st ? (int)CS_LOAD32(&st->hdr->nseries) : 0;
}

chat_status_t cs_shm_metrics_series_get(chat_store_t *st, int series,
                                        chat_series_snapshot_t *out)
{
    cs_series_t *s = series_at(st, series);
    int i, k;

    if (!s || !out) {
        return CHAT_ENOTFOUND;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out->bot, s->bot, CHAT_BOT_NAME_MAX);
    memcpy(out->backend, s->backend, CHAT_BOT_NAME_MAX);
    for (i = 0; i < CHAT_CTR_COUNT; i++) {
        out->counters[i] = CS_LOAD64(&s->counters[i]);
    }
    for (i = 0; i < CHAT_HIST_COUNT; i++) {
        uint64_t bits = CS_LOAD64(&s->hist_sum[i]);
        for (k = 0; k < CHAT_HIST_BUCKETS; k++) {
            out->hist[i][k] = CS_LOAD64(&s->hist[i][k]);
        }
        memcpy(&out->hist_sum[i], &bits, sizeof(bits));
        out->hist_count[i] = CS_LOAD64(&s->hist_count[i]);
    }
    return CHAT_OK;
}
