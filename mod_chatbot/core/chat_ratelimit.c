/* chat_ratelimit.c - token bucket with the clock passed in.
 *
 * Tokens are counted in micro-tokens. To stay exact however often the
 * bucket is polled, a refill adds A(now) - A(last) where
 * A(t) = floor(t * count * 1e6 / period_ms) is the accrual since the epoch:
 * the rounding of successive refills telescopes instead of accumulating.
 * The arithmetic is done in 128-bit integers so no rate or clock value can
 * overflow, and the stored state is clamped on every call, so a bucket read
 * back from a corrupted file cannot misbehave.
 */
#include "chat/ratelimit.h"

#define UTOK 1000000

__extension__ typedef unsigned __int128 cs_u128;

/* Effective burst: 0 means "count" (and never less than one token). */
static uint64_t burst_of(const chat_rate_t *r)
{
    uint64_t b = r->burst ? r->burst : r->count;
    return b ? b : 1;
}

static int unlimited(const chat_rate_t *r)
{
    return r->count == 0 || r->period_ms <= 0;
}

void chat_bucket_init(chat_bucket_t *b, const chat_rate_t *r, uint64_t now_ms)
{
    if (!b) {
        return;
    }
    b->utokens = (r && !unlimited(r)) ? (int64_t)(burst_of(r) * UTOK) : 0;
    b->last_ms = now_ms;
}

/* Micro-tokens accrued from time 0 to t. */
static cs_u128 accrual(uint64_t t, cs_u128 per_period, uint64_t period)
{
    return (cs_u128)t * per_period / period;
}

chat_status_t chat_bucket_take(chat_bucket_t *b, const chat_rate_t *r, uint64_t now_ms,
                               int64_t *retry_after_ms)
{
    int64_t cap, tok;
    cs_u128 per_period, a_now;
    uint64_t period;

    if (retry_after_ms) {
        *retry_after_ms = 0;
    }
    if (!b || !r) {
        return CHAT_EINVAL;
    }
    if (unlimited(r)) {
        return CHAT_OK;
    }
    cap = (int64_t)(burst_of(r) * UTOK); /* <= 2^32 * 1e6: fits */
    tok = b->utokens < 0 ? 0 : b->utokens > cap ? cap : b->utokens;
    per_period = (cs_u128)r->count * UTOK;
    period = (uint64_t)r->period_ms;
    a_now = accrual(now_ms, per_period, period);
    if (now_ms > b->last_ms) {
        cs_u128 add = a_now - accrual(b->last_ms, per_period, period);
        tok = add >= (cs_u128)(cap - tok) ? cap : tok + (int64_t)add;
    }
    /* a clock that went backwards refills nothing; counting restarts from
     * the new time rather than locking the user out until it catches up */
    b->last_ms = now_ms;
    if (tok >= UTOK) {
        b->utokens = tok - UTOK;
        return CHAT_OK;
    }
    b->utokens = tok;
    if (retry_after_ms) {
        /* the first t with A(t) >= A(now) + missing */
        cs_u128 target = a_now + (cs_u128)(UTOK - tok);
        cs_u128 t = (target * period + per_period - 1) / per_period;
        cs_u128 wait = t - now_ms;
        *retry_after_ms = wait < 1 ? 1 : wait > INT64_MAX ? INT64_MAX : (int64_t)wait;
    }
    return CHAT_ELIMIT;
}
