/* Unit tests: metric series, histogram buckets, gauges, the error-code
 * table and snapshots. */
#include <math.h>

#include "test_store_util.h"

static void test_bounds(void **state)
{
    static const double ttft[] = {50,   100,   250,   500,   1000,   2500,
                                  5000, 10000, 30000, 60000, 120000, INFINITY};
    static const double tps[] = {1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 250, INFINITY};
    int h, i;
    (void)state;

    assert_memory_equal(chat_metrics_bounds(CHAT_HIST_TTFT), ttft, sizeof(ttft));
    assert_memory_equal(chat_metrics_bounds(CHAT_HIST_QUEUE_WAIT), ttft, sizeof(ttft));
    assert_memory_equal(chat_metrics_bounds(CHAT_HIST_TPS), tps, sizeof(tps));
    assert_true(chat_metrics_bounds(CHAT_HIST_DURATION)[CHAT_HIST_BUCKETS - 2] == 300000);
    for (h = 0; h < CHAT_HIST_COUNT; h++) {
        const double *b = chat_metrics_bounds((chat_hist_t)h);
        assert_non_null(b);
        for (i = 1; i < CHAT_HIST_BUCKETS; i++) {
            assert_true(b[i] > b[i - 1]);
        }
        assert_true(isinf(b[CHAT_HIST_BUCKETS - 1]));
    }
    assert_null(chat_metrics_bounds(CHAT_HIST_COUNT));
}

static void test_series(void **state)
{
    chat_store_layout_t l = small_layout(); /* 4 series */
    tstore_t t;
    chat_series_snapshot_t ss;
    char longname[CHAT_BOT_NAME_MAX + 2];
    (void)state;

    ts_open(&t, &l, 0);
    assert_int_equal(chat_metrics_series_count(t.st), 0);
    assert_int_equal(chat_store_series(t.st, "llama", "ollama"), 0);
    assert_int_equal(chat_store_series(t.st, "qwen", "ollama"), 1);
    assert_int_equal(chat_store_series(t.st, "llama", "vllm"), 2);
    assert_int_equal(chat_store_series(t.st, "llama", "ollama"), 0);
    assert_int_equal(chat_store_series(t.st, NULL, NULL), 3); /* "" / "" */
    assert_int_equal(chat_store_series(t.st, "", ""), 3);
    assert_int_equal(chat_store_series(t.st, "x", "y"), CHAT_EFULL);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(chat_store_series(t.st, longname, "y"), CHAT_EINVAL);
    assert_int_equal(chat_metrics_series_count(t.st), 4);
    assert_int_equal(chat_metrics_series_get(t.st, 2, &ss), CHAT_OK);
    assert_string_equal(ss.bot, "llama");
    assert_string_equal(ss.backend, "vllm");
    assert_int_equal(chat_metrics_series_get(t.st, 4, &ss), CHAT_ENOTFOUND);
    assert_int_equal(chat_metrics_series_get(t.st, -1, &ss), CHAT_ENOTFOUND);

    chat_metrics_add(t.st, 1, CHAT_CTR_ANSWERS, 1);
    chat_metrics_add(t.st, 1, CHAT_CTR_ANSWERS, 2);
    chat_metrics_add(t.st, 1, CHAT_CTR_TOKENS, 1000);
    chat_metrics_add(t.st, 9, CHAT_CTR_TOKENS, 1000);   /* ignored */
    chat_metrics_add(t.st, 1, CHAT_CTR_COUNT, 1000);    /* ignored */
    chat_metrics_add(t.st, -1, CHAT_CTR_ANSWERS, 1000); /* ignored */
    assert_int_equal(chat_metrics_series_get(t.st, 1, &ss), CHAT_OK);
    assert_int_equal(ss.counters[CHAT_CTR_ANSWERS], 3);
    assert_int_equal(ss.counters[CHAT_CTR_TOKENS], 1000);
    assert_int_equal(ss.counters[CHAT_CTR_ERRORS], 0);
    assert_int_equal(chat_metrics_series_get(t.st, 0, &ss), CHAT_OK);
    assert_int_equal(ss.counters[CHAT_CTR_ANSWERS], 0);
    CHECK(t.st);
    ts_close(&t);
}

static void test_histogram(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_series_snapshot_t ss;
    int s, i;
    uint64_t total = 0;
    (void)state;

    ts_open(&t, &l, 0);
    s = chat_store_series(t.st, "llama", "ollama");
    /* bucket bounds are inclusive upper limits ("le") */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 50);     /* 0 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 0);      /* 0 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, -3);     /* 0 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 50.001); /* 1 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 2500);   /* 5 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 120000); /* 10 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 120001); /* 11 (+Inf) */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, 1e300);  /* 11 */
    chat_metrics_observe(t.st, s, CHAT_HIST_TTFT, NAN);    /* ignored */
    chat_metrics_observe(t.st, s, CHAT_HIST_TPS, 42.5);    /* 6 (<= 50) */
    chat_metrics_observe(t.st, s, CHAT_HIST_COUNT, 1);     /* ignored */
    chat_metrics_observe(t.st, 3, CHAT_HIST_TPS, 1);       /* no such series */
    assert_int_equal(chat_metrics_series_get(t.st, s, &ss), CHAT_OK);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][0], 3);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][1], 1);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][5], 1);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][10], 1);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][11], 2);
    for (i = 0; i < CHAT_HIST_BUCKETS; i++) {
        total += ss.hist[CHAT_HIST_TTFT][i];
    }
    assert_int_equal(total, 8);
    assert_int_equal(ss.hist_count[CHAT_HIST_TTFT], 8);
    assert_true(ss.hist_sum[CHAT_HIST_TTFT] ==
                50 + 0 - 3 + 50.001 + 2500 + 120000 + 120001 + 1e300);
    assert_int_equal(ss.hist[CHAT_HIST_TPS][6], 1);
    assert_int_equal(ss.hist_count[CHAT_HIST_TPS], 1);
    assert_true(ss.hist_sum[CHAT_HIST_TPS] == 42.5);
    assert_int_equal(ss.hist_count[CHAT_HIST_DURATION], 0);
    assert_true(ss.hist_sum[CHAT_HIST_DURATION] == 0);
    CHECK(t.st);
    ts_close(&t);
}

static void test_gauges_errors_snapshot(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_metrics_snapshot_t snap;
    chat_owner_t o = owner_of("u:alice");
    char id[25], code[40];
    int i;
    (void)state;

    ts_open(&t, &l, 777);
    chat_metrics_gauge_add(t.st, CHAT_G_CONNECTIONS, 5);
    chat_metrics_gauge_add(t.st, CHAT_G_CONNECTIONS, -2);
    chat_metrics_gauge_add(t.st, CHAT_G_COMMANDS, 1);
    chat_metrics_gauge_add(t.st, CHAT_G_COUNT, 1); /* ignored */
    chat_metrics_error(t.st, "timeout");
    chat_metrics_error(t.st, "timeout");
    chat_metrics_error(t.st, "rate_limited");
    chat_metrics_error(t.st, NULL);
    chat_metrics_error(t.st, "");
    /* codes longer than 31 bytes are cut */
    chat_metrics_error(t.st, "a_very_long_error_code_name_that_goes_on");
    chat_metrics_error(t.st, "a_very_long_error_code_name_that_differs");
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_CONNECTIONS], 3);
    assert_int_equal(snap.gauges[CHAT_G_COMMANDS], 1);
    assert_int_equal(snap.nerrors, 4);
    assert_string_equal(snap.errors[0].code, "timeout");
    assert_int_equal(snap.errors[0].count, 2);
    assert_string_equal(snap.errors[1].code, "rate_limited");
    assert_string_equal(snap.errors[2].code, "unknown");
    assert_int_equal(snap.errors[2].count, 2);
    assert_string_equal(snap.errors[3].code, "a_very_long_error_code_name_tha");
    assert_int_equal(snap.errors[3].count, 2);
    /* the table fills: the last entry counts every other code */
    for (i = 0; i < 40; i++) {
        snprintf(code, sizeof(code), "code%d", i);
        chat_metrics_error(t.st, code);
    }
    chat_metrics_error(t.st, "timeout");
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.nerrors, CHAT_ERRCODE_MAX);
    assert_string_equal(snap.errors[CHAT_ERRCODE_MAX - 1].code, "other");
    assert_int_equal(snap.errors[CHAT_ERRCODE_MAX - 1].count,
                     40 - (CHAT_ERRCODE_MAX - 1 - 4));
    assert_int_equal(snap.errors[0].count, 3);
    /* store usage */
    assert_int_equal(snap.started_ms, 777);
    assert_int_equal(snap.conversations, 0);
    assert_int_equal(snap.max_conversations, 8);
    assert_int_equal(snap.max_users, 32);
    assert_int_equal(snap.arena_size, 64 * 256);
    assert_int_equal(snap.arena_used, 0);
    mkconv(t.st, &o, "llama", 1, 1000, id);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, "x", 1, 1001, NULL),
        CHAT_OK);
    chat_store_user_bump(t.st, &o);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.conversations, 1);
    assert_int_equal(snap.users, 1);
    assert_int_equal(snap.arena_used, 256);
    CHECK(t.st);
    ts_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_series),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_gauges_errors_snapshot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
