/* Unit tests: backend registration, the fair FIFO slot queue (positions,
 * cap, stale waiters and holders), the circuit breaker and health. */
#include "test_store_util.h"

static void test_register(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_backend_info_t bi;
    char longname[CHAT_BOT_NAME_MAX + 2];
    (void)state;

    ts_open(&t, &l, 0);
    assert_int_equal(chat_store_backend_count(t.st), 0);
    assert_int_equal(chat_store_backend_register(t.st, "a", 2), 0);
    assert_int_equal(chat_store_backend_register(t.st, "b", 0), 1);
    assert_int_equal(chat_store_backend_register(t.st, "a", 3),
                     0); /* found, limit updated */
    assert_int_equal(chat_store_backend_get(t.st, 0, &bi), CHAT_OK);
    assert_int_equal(bi.max_active, 3);
    assert_string_equal(bi.name, "a");
    assert_int_equal(bi.healthy, -1);
    assert_int_equal(bi.breaker, CHAT_BREAKER_CLOSED);
    assert_string_equal(bi.version, "");
    assert_int_equal(chat_store_backend_register(t.st, "c", 1), 2);
    assert_int_equal(chat_store_backend_register(t.st, "d", 1), 3);
    assert_int_equal(chat_store_backend_register(t.st, "e", 1), CHAT_EFULL);
    assert_int_equal(chat_store_backend_register(t.st, "", 1), CHAT_EINVAL);
    assert_int_equal(chat_store_backend_register(t.st, NULL, 1), CHAT_EINVAL);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(chat_store_backend_register(t.st, longname, 1), CHAT_EINVAL);
    assert_int_equal(chat_store_backend_count(t.st), 4);
    assert_int_equal(chat_store_backend_get(t.st, 4, &bi), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_backend_get(t.st, -1, &bi), CHAT_ENOTFOUND);
    CHECK(t.st);
    ts_close(&t);
}

/* Tickets are served in FIFO order; nobody jumps the queue. */
static void test_queue_fairness(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_backend_info_t bi;
    int32_t pos;
    int be;
    (void)state;

    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 1, 1000, &pos), CHAT_OK);
    assert_int_equal(pos, 0);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 2, 1000, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 1000, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1000, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 1000, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 3);
    /* polling keeps the position */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1010, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    /* holders re-acquiring are idempotent */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 1, 1010, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.active, 2);
    assert_int_equal(bi.queued, 3);

    /* a slot frees: 4 (second in line) polls first but must wait for 3 */
    chat_store_backend_release(t.st, be, 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1020, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    /* a newcomer does not jump ahead either */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 1020, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 4);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 1030, &pos), CHAT_OK);
    /* positions moved up */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1040, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 1040, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 3);
    /* two slots free at once: the first two in line may both go, in any
     * polling order */
    chat_store_backend_release(t.st, be, 2);
    chat_store_backend_release(t.st, be, 3);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 1050, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 1050, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1050, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 1050, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 1);
    /* cancel leaves the queue */
    chat_store_backend_cancel(t.st, be, 6);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.queued, 0);
    assert_int_equal(bi.active, 2);
    /* release of an unknown ticket is harmless */
    chat_store_backend_release(t.st, be, 99);
    chat_store_backend_release(t.st, be, 0);
    chat_store_backend_cancel(t.st, be, 99);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.active, 2);
    /* bad arguments */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 0, 1050, &pos), CHAT_EINVAL);
    assert_int_equal(chat_store_backend_acquire(t.st, 7, 1, 1050, &pos), CHAT_EINVAL);
    assert_int_equal(chat_store_backend_acquire(t.st, -1, 1, 1050, NULL), CHAT_EINVAL);
    CHECK(t.st);
    ts_close(&t);
}

static void test_queue_cap(void **state)
{
    chat_store_layout_t l = small_layout(); /* queue_cap 4 */
    tstore_t t;
    int32_t pos;
    int be;
    uint64_t k;
    (void)state;

    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 100, 0, &pos), CHAT_OK);
    for (k = 1; k <= 4; k++) {
        assert_int_equal(chat_store_backend_acquire(t.st, be, k, 0, &pos), CHAT_EAGAIN);
        assert_int_equal(pos, (int32_t)k);
    }
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 0, &pos), CHAT_EFULL);
    assert_int_equal(pos, 0);
    /* queued waiters still poll fine at the cap */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 1, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 4);
    /* serve two, queue two more */
    chat_store_backend_release(t.st, be, 100);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 1, 2, &pos), CHAT_OK);
    chat_store_backend_release(t.st, be, 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 2, 3, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 3, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 3);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 3, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 4);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 7, 3, &pos), CHAT_EFULL);
    chat_store_backend_cancel(t.st, be, 4); /* from the middle */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 4, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 6, 4, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 3);
    CHECK(t.st);
    ts_close(&t);
}

/* Crashed children: waiters that stop polling for 10 s are dropped,
 * holders that stop beating for 60 s are reaped. */
static void test_stale(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_backend_info_t bi;
    logs_t lg;
    int32_t pos;
    int be;
    (void)state;

    memset(&lg, 0, sizeof(lg));
    chat_log_set(catch_log, &lg);
    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 1);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 1, 0, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 2, 0, &pos), CHAT_EAGAIN);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 5000, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    /* 2 never polls again: exactly 10 s is still fine, then it is gone */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 10000, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 10001, &pos), CHAT_EAGAIN);
    assert_int_equal(pos, 1);
    /* the holder beats; the waiter keeps polling */
    chat_store_backend_beat(t.st, be, 1, 50000);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 19000, &pos), CHAT_EAGAIN);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 28000, &pos), CHAT_EAGAIN);
    chat_store_backend_beat(t.st, be, 3, 37000); /* beat also counts as a poll */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 46000, &pos), CHAT_EAGAIN);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 110000, &pos), CHAT_EAGAIN);
    /* (3 was idle 64 s: dropped, then re-queued as a newcomer) */
    assert_int_equal(pos, 1);
    assert_int_equal(lg.n, 0);
    /* 1 stops beating at 50000: reaped after 60 s, 3 gets the slot */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 3, 110001, &pos), CHAT_OK);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.level[0], CHAT_LOG_WARN);
    assert_non_null(strstr(lg.msg[0], "ollama"));
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.active, 1);
    assert_int_equal(bi.queued, 0);
    /* a clock going backwards reaps nothing */
    assert_int_equal(chat_store_backend_acquire(t.st, be, 4, 0, &pos), CHAT_EAGAIN);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.active, 1);
    assert_int_equal(bi.queued, 1);
    CHECK(t.st);
    chat_log_set(NULL, NULL);
    ts_close(&t);
}

/* max_active 0 = as many as the layout has slots. */
static void test_unlimited(void **state)
{
    chat_store_layout_t l = small_layout(); /* max_active 4 */
    tstore_t t;
    int32_t pos;
    int be;
    uint64_t k;
    (void)state;

    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 0);
    for (k = 1; k <= 4; k++) {
        assert_int_equal(chat_store_backend_acquire(t.st, be, k, 0, &pos), CHAT_OK);
    }
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 0, &pos), CHAT_EAGAIN);
    /* re-registering with a lower limit: nobody new gets in until below it */
    assert_int_equal(chat_store_backend_register(t.st, "ollama", 2), be);
    chat_store_backend_release(t.st, be, 1);
    chat_store_backend_release(t.st, be, 2);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 0, &pos), CHAT_EAGAIN);
    chat_store_backend_release(t.st, be, 3);
    assert_int_equal(chat_store_backend_acquire(t.st, be, 5, 0, &pos), CHAT_OK);
    CHECK(t.st);
    ts_close(&t);
}

static void test_breaker(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_backend_info_t bi;
    int be, i;
    (void)state;

    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 1);
    /* 4 failures: still closed; a success resets the count */
    for (i = 0; i < 4; i++) {
        assert_int_equal(chat_store_breaker_allow(t.st, be, 1000, 30000), 1);
        chat_store_breaker_result(t.st, be, 0, 1000, 5, 30000);
    }
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.failures, 4);
    assert_int_equal(bi.breaker, CHAT_BREAKER_CLOSED);
    chat_store_breaker_result(t.st, be, 1, 1000, 5, 30000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.failures, 0);
    /* 5 consecutive failures: open */
    for (i = 0; i < 5; i++) {
        chat_store_breaker_result(t.st, be, 0, 2000, 5, 30000);
    }
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.breaker, CHAT_BREAKER_OPEN);
    assert_int_equal(bi.open_until_ms, 32000);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 2000, 30000), 0);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 31999, 30000), 0);
    /* a late failure while open does not extend the cooldown */
    chat_store_breaker_result(t.st, be, 0, 20000, 5, 30000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.open_until_ms, 32000);
    /* cooldown over: exactly one probe */
    assert_int_equal(chat_store_breaker_allow(t.st, be, 32000, 30000), 1);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.breaker, CHAT_BREAKER_HALF_OPEN);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 32000, 30000), 0);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 40000, 30000), 0);
    /* the probe fails: open again for a full cooldown */
    chat_store_breaker_result(t.st, be, 0, 41000, 5, 30000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.breaker, CHAT_BREAKER_OPEN);
    assert_int_equal(bi.open_until_ms, 71000);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 70999, 30000), 0);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 71000, 30000), 1);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 71001, 30000), 0);
    /* the probe succeeds: closed, everyone allowed */
    chat_store_breaker_result(t.st, be, 1, 72000, 5, 30000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.breaker, CHAT_BREAKER_CLOSED);
    assert_int_equal(bi.failures, 0);
    for (i = 0; i < 3; i++) {
        assert_int_equal(chat_store_breaker_allow(t.st, be, 72000, 30000), 1);
    }
    /* a probe that never reports (its child died): another one after a
     * further cooldown */
    for (i = 0; i < 5; i++) {
        chat_store_breaker_result(t.st, be, 0, 80000, 5, 1000);
    }
    assert_int_equal(chat_store_breaker_allow(t.st, be, 81000, 1000), 1);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 81999, 1000), 0);
    assert_int_equal(chat_store_breaker_allow(t.st, be, 82000, 1000), 1);
    /* threshold 0 disables opening */
    chat_store_breaker_result(t.st, be, 1, 90000, 5, 1000);
    for (i = 0; i < 50; i++) {
        chat_store_breaker_result(t.st, be, 0, 90000, 0, 1000);
    }
    assert_int_equal(chat_store_breaker_allow(t.st, be, 90000, 1000), 1);
    /* unknown backends have no breaker */
    assert_int_equal(chat_store_breaker_allow(t.st, 3, 0, 1000), 1);
    chat_store_breaker_result(t.st, 3, 0, 0, 1, 1000);
    CHECK(t.st);
    ts_close(&t);
}

static void test_health(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_backend_info_t bi;
    char detail[300];
    int be;
    (void)state;

    ts_open(&t, &l, 0);
    be = chat_store_backend_register(t.st, "ollama", 1);
    chat_store_backend_health(t.st, be, 1, "0.5.7", NULL, 1234);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.healthy, 1);
    assert_string_equal(bi.version, "0.5.7");
    assert_string_equal(bi.detail, "");
    assert_int_equal(bi.checked_ms, 1234);
    /* long details are cut at a character boundary */
    memset(detail, 'e', 126);
    memcpy(detail + 126, "\xc3\xa9rreur", 8);
    chat_store_backend_health(t.st, be, 0, NULL, detail, 2000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.healthy, 0);
    assert_string_equal(bi.version, "0.5.7"); /* NULL keeps the version */
    assert_int_equal(strlen(bi.detail), 126);
    /* a turn's "still fine" within a second of the last report changes
     * nothing (and takes no lock); later it is recorded */
    chat_store_backend_health(t.st, be, 1, NULL, "", 2100);
    chat_store_backend_health(t.st, be, 1, NULL, "", 2500);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.healthy, 1);
    assert_int_equal(bi.checked_ms, 2100);
    chat_store_backend_health(t.st, be, 1, NULL, "", 3200);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.checked_ms, 3200);
    chat_store_backend_health(t.st, be, 0, "", "", 3300);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_string_equal(bi.version, "");
    chat_store_backend_health(t.st, be, -5, "v", "d", 3000);
    assert_int_equal(chat_store_backend_get(t.st, be, &bi), CHAT_OK);
    assert_int_equal(bi.healthy, -1);
    chat_store_backend_health(t.st, 9, 1, "v", "d", 3000); /* ignored */
    CHECK(t.st);
    ts_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register),  cmocka_unit_test(test_queue_fairness),
        cmocka_unit_test(test_queue_cap), cmocka_unit_test(test_stale),
        cmocka_unit_test(test_unlimited), cmocka_unit_test(test_breaker),
        cmocka_unit_test(test_health),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
