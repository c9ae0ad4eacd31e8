/* Unit tests: the token bucket (chat/ratelimit.h) with a fake clock. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "chat/ratelimit.h"

static chat_rate_t rate(uint32_t count, int64_t period, uint32_t burst)
{
    chat_rate_t r;
    r.count = count;
    r.period_ms = period;
    r.burst = burst;
    return r;
}

/* 10 per minute, burst 10: exactly 10 at t=0, then one every 6 s. */
static void test_ten_per_minute(void **state)
{
    chat_rate_t r = rate(10, 60000, 10);
    chat_bucket_t b;
    int64_t retry = -1;
    int i;
    (void)state;

    chat_bucket_init(&b, &r, 1000);
    for (i = 0; i < 10; i++) {
        assert_int_equal(chat_bucket_take(&b, &r, 1000, &retry), CHAT_OK);
        assert_int_equal(retry, 0);
    }
    assert_int_equal(chat_bucket_take(&b, &r, 1000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 6000);
    /* 1 ms before: still limited, 1 ms to go */
    assert_int_equal(chat_bucket_take(&b, &r, 1000 + 5999, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(chat_bucket_take(&b, &r, 1000 + 6000, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, 1000 + 6000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 6000);
    /* 3 s later: half a token, 3 s to go */
    assert_int_equal(chat_bucket_take(&b, &r, 1000 + 9000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 3000);
    assert_int_equal(chat_bucket_take(&b, &r, 1000 + 12000, &retry), CHAT_OK);
    /* a long pause refills to the burst, never beyond */
    for (i = 0; i < 10; i++) {
        assert_int_equal(chat_bucket_take(&b, &r, 10000000, &retry), CHAT_OK);
    }
    assert_int_equal(chat_bucket_take(&b, &r, 10000000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 6000);
}

/* However often it is polled, the bucket grants exactly floor(t * rate)
 * tokens by time t (the rounding of refills does not accumulate), and
 * retry_after always points at the exact millisecond of the next one. */
static void test_long_run_exact(void **state)
{
    static const uint32_t counts[] = {7, 10, 3, 13};
    static const int64_t periods[] = {60000, 60000, 1000, 7919};
    size_t c;
    (void)state;

    for (c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
        chat_rate_t r = rate(counts[c], periods[c], 100);
        chat_bucket_t b;
        int64_t retry;
        uint64_t t = 0, granted = 0, step = 1, next_ok = 0;
        int i;

        chat_bucket_init(&b, &r, 0);
        for (i = 0; i < 100; i++) { /* drain the burst at t = 0 */
            assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
        }
        while (t < 3600000) {
            chat_status_t rc = chat_bucket_take(&b, &r, t, &retry);
            uint64_t due = t * counts[c] / (uint64_t)periods[c]; /* tokens accrued */
            if (rc == CHAT_OK) {
                granted++;
                assert_true(t >= next_ok);
            }
            else {
                assert_int_equal(rc, CHAT_ELIMIT);
                assert_int_equal(granted, due); /* nothing left unclaimed */
                next_ok = t + (uint64_t)retry;
                /* the token is due exactly then, not a ms earlier */
                assert_true((next_ok * counts[c]) / (uint64_t)periods[c] > due);
                assert_true(((next_ok - 1) * counts[c]) / (uint64_t)periods[c] == due);
            }
            assert_true(granted <= due);
            step = step * 7 % 1013; /* irregular polling, 1..1012 ms */
            t += step;
        }
    }
}

/* retry_after is the exact time to the next token, even for odd rates. */
static void test_retry_exact_odd_rate(void **state)
{
    chat_rate_t r = rate(3, 1000, 1); /* one every 333.33 ms */
    chat_bucket_t b;
    int64_t retry;
    (void)state;

    chat_bucket_init(&b, &r, 0);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 334); /* 333 ms give 999000 micro-tokens */
    assert_int_equal(chat_bucket_take(&b, &r, 333, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(chat_bucket_take(&b, &r, 334, &retry), CHAT_OK);
}

static void test_backwards_clock(void **state)
{
    chat_rate_t r = rate(1, 1000, 1);
    chat_bucket_t b;
    int64_t retry;
    (void)state;

    chat_bucket_init(&b, &r, 100000);
    assert_int_equal(chat_bucket_take(&b, &r, 100000, &retry), CHAT_OK);
    /* the clock jumps back 50 s: nothing refills, nothing overflows */
    assert_int_equal(chat_bucket_take(&b, &r, 50000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1000);
    /* counting restarts from the new time */
    assert_int_equal(chat_bucket_take(&b, &r, 50000 + 999, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(chat_bucket_take(&b, &r, 50000 + 1000, &retry), CHAT_OK);
    /* to time 0 */
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_ELIMIT);
    assert_true(retry >= 1);
}

static void test_unlimited_and_defaults(void **state)
{
    chat_rate_t r = rate(0, 60000, 0);
    chat_bucket_t b;
    int64_t retry = 5;
    int i;
    (void)state;

    chat_bucket_init(&b, &r, 0);
    for (i = 0; i < 1000; i++) {
        assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
        assert_int_equal(retry, 0);
    }
    /* period 0 / negative: treated as unlimited */
    r = rate(5, 0, 5);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    r = rate(5, -1, 5);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    /* burst 0 means burst = count */
    r = rate(3, 1000, 0);
    chat_bucket_init(&b, &r, 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    }
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 334);
    /* retry_after may be NULL */
    assert_int_equal(chat_bucket_take(&b, &r, 0, NULL), CHAT_ELIMIT);
    assert_int_equal(chat_bucket_take(NULL, &r, 0, &retry), CHAT_EINVAL);
    assert_int_equal(chat_bucket_take(&b, NULL, 0, &retry), CHAT_EINVAL);
}

/* Extreme values: no overflow, sane answers. */
static void test_extremes(void **state)
{
    chat_rate_t r = rate(UINT32_MAX, 1, UINT32_MAX);
    chat_bucket_t b;
    int64_t retry;
    (void)state;

    chat_bucket_init(&b, &r, 0);
    assert_int_equal(b.utokens, (int64_t)UINT32_MAX * 1000000);
    assert_int_equal(chat_bucket_take(&b, &r, UINT64_MAX, &retry), CHAT_OK);
    assert_int_equal(b.utokens, (int64_t)UINT32_MAX * 1000000 - 1000000);

    r = rate(1, INT64_MAX, 1);
    chat_bucket_init(&b, &r, 0);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, UINT64_MAX, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, UINT64_MAX, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, INT64_MAX - 1); /* exact: 3 * (2^63 - 1) - (2^64 - 1) */

    /* a corrupted state is clamped, not trusted */
    r = rate(1, 1000, 2);
    b.utokens = INT64_MAX;
    b.last_ms = 0;
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_OK);
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_ELIMIT);
    b.utokens = INT64_MIN;
    assert_int_equal(chat_bucket_take(&b, &r, 0, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1000);
    assert_int_equal(chat_bucket_take(&b, &r, 1000, &retry), CHAT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_per_minute),
        cmocka_unit_test(test_long_run_exact),
        cmocka_unit_test(test_retry_exact_odd_rate),
        cmocka_unit_test(test_backwards_clock),
        cmocka_unit_test(test_unlimited_and_defaults),
        cmocka_unit_test(test_extremes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
