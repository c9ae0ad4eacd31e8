/* chat/ratelimit.h - a token bucket with the clock passed in.
 *
 * Lives inside the shared store (one per user) but is plain arithmetic so
 * that it can be unit tested with a fake clock.
 */
#ifndef CHAT_RATELIMIT_H
#define CHAT_RATELIMIT_H

#include <stdint.h>
#include "chat/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "count per period_ms, bursts up to burst" (e.g. 10 per 60000 ms, burst
 * 10). count == 0 means unlimited. */
typedef struct {
    uint32_t count;
    int64_t period_ms;
    uint32_t burst;
} chat_rate_t;

/* Stored state. Tokens are kept in micro-tokens (1e-6) so that the
 * arithmetic is exact integer math, whatever the rate. */
typedef struct {
    int64_t utokens;  /* micro-tokens available */
    uint64_t last_ms; /* time of the last refill */
} chat_bucket_t;

/* A full bucket at now_ms. */
void chat_bucket_init(chat_bucket_t *b, const chat_rate_t *r, uint64_t now_ms);

/* Refills for the time elapsed since the last call (never beyond burst;
 * a clock going backwards refills nothing), then takes one token.
 * CHAT_OK, or CHAT_ELIMIT with *retry_after_ms (>= 1) = time until one
 * token is available. */
chat_status_t chat_bucket_take(chat_bucket_t *b, const chat_rate_t *r, uint64_t now_ms,
                               int64_t *retry_after_ms);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_RATELIMIT_H */
