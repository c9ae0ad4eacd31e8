/* Unit test: several processes share one store region (an anonymous
 * MAP_SHARED mapping, as httpd children share the APR segment) under a
 * process-shared mutex, with the lock-free metrics updated concurrently.
 * Afterwards the region must be consistent and every count exact. */
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_store_util.h"

#define NPROC 8
#define ITER 300
#define RATE_BURST 100
#define SLOTS 2

typedef struct {
    pthread_mutex_t mu;
    uint64_t rate_ok;      /* atomic: rate-limit tokens granted */
    uint64_t acquired;     /* atomic: backend slots obtained */
    uint64_t max_seen;     /* highest concurrent holders seen (under lock) */
    uint64_t now;          /* shared fake clock, under lock */
    char ids[NPROC][25];
    char shared_id[25];
    int be, series;
} shared_t;

static void child(shared_t *sh, void *region, size_t size, const chat_store_layout_t *l, int n)
{
    chat_store_t *st;
    chat_owner_t me, common = owner_of("u:shared");
    chat_rate_t rate = {1, INT64_MAX, RATE_BURST};
    char name[16], txt[64];
    int k, fails = 0;

    snprintf(name, sizeof(name), "u:child%d", n);
    me = owner_of(name);
    pthread_mutex_lock(&sh->mu);
    if (chat_store_attach(&st, region, size, l) != CHAT_OK) {
        _exit(10);
    }
    pthread_mutex_unlock(&sh->mu);

    for (k = 0; k < ITER; k++) {
        int64_t retry;
        int32_t pos;
        uint64_t ticket = ((uint64_t)(n + 1) << 32) | (uint64_t)(k + 1);
        chat_status_t rc;
        size_t len = (size_t)snprintf(txt, sizeof(txt), "child %d message %d", n, k);

        pthread_mutex_lock(&sh->mu);
        if (chat_store_rate_take(st, &common, &rate, 1000, &retry) == CHAT_OK) {
            __atomic_add_fetch(&sh->rate_ok, 1, __ATOMIC_SEQ_CST);
        }
        fails += chat_store_msg_append(st, &me, sh->ids[n], CHAT_ROLE_USER, 0, txt, len,
                                       ++sh->now, NULL) != CHAT_OK;
        fails += chat_store_msg_extend(st, &me, sh->ids[n], "!", 1, ++sh->now) != CHAT_OK;
        fails += chat_store_msg_append(st, &common, sh->shared_id, CHAT_ROLE_USER, 0, txt, len,
                                       ++sh->now, NULL) != CHAT_OK;
        chat_store_user_bump(st, &me);
        pthread_mutex_unlock(&sh->mu);

        /* lock-free */
        chat_metrics_add(st, sh->series, CHAT_CTR_TOKENS, 1);
        chat_metrics_observe(st, sh->series, CHAT_HIST_TTFT, 75);
        chat_metrics_gauge_add(st, CHAT_G_MESSAGES_IN, 1);
        chat_metrics_error(st, k % 2 ? "odd" : "even");
        (void)chat_store_conv_seq(st, sh->ids[n]);

        /* a backend slot, fairly queued; poll until served */
        for (;;) {
            chat_backend_info_t bi;
            pthread_mutex_lock(&sh->mu);
            rc = chat_store_backend_acquire(st, sh->be, ticket, sh->now, &pos);
            if (rc == CHAT_OK) {
                chat_store_backend_get(st, sh->be, &bi);
                if (bi.active > sh->max_seen) {
                    sh->max_seen = bi.active;
                }
                chat_store_backend_release(st, sh->be, ticket);
            }
            pthread_mutex_unlock(&sh->mu);
            if (rc == CHAT_OK) {
                __atomic_add_fetch(&sh->acquired, 1, __ATOMIC_SEQ_CST);
                break;
            }
            if (rc != CHAT_EAGAIN || pos < 1) {
                fails++;
                break;
            }
            usleep(50);
        }
    }
    pthread_mutex_lock(&sh->mu);
    fails += cs_validate(st) != CHAT_OK;
    pthread_mutex_unlock(&sh->mu);
    chat_store_detach(st);
    _exit(fails ? 1 : 0);
}

static void test_multiprocess(void **state)
{
    chat_store_layout_t l = small_layout();
    size_t size;
    shared_t *sh;
    void *region;
    chat_store_t *st;
    pthread_mutexattr_t ma;
    chat_owner_t common = owner_of("u:shared");
    chat_series_snapshot_t ss;
    chat_metrics_snapshot_t snap;
    chat_conv_info_t ci;
    chat_buf_t buf;
    pid_t pids[NPROC];
    int i, status;
    (void)state;

    l.max_conversations = NPROC + 2;
    l.max_messages = 1000;
    l.history_bytes = 4096 * 256;
    size = chat_store_size(&l);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED && region != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    pthread_mutexattr_init(&ma);
    assert_int_equal(pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED), 0);
    assert_int_equal(pthread_mutex_init(&sh->mu, &ma), 0);
    pthread_mutexattr_destroy(&ma);

    assert_int_equal(chat_store_format(&st, region, size, &l, 0), CHAT_OK);
    for (i = 0; i < NPROC; i++) {
        char name[16];
        chat_owner_t o;
        snprintf(name, sizeof(name), "u:child%d", i);
        o = owner_of(name);
        mkconv(st, &o, "llama", 0x100 + (uint64_t)i, 1, sh->ids[i]);
    }
    mkconv(st, &common, "llama", 0x999, 1, sh->shared_id);
    sh->be = chat_store_backend_register(st, "ollama", SLOTS);
    sh->series = chat_store_series(st, "llama", "ollama");
    sh->now = 10;

    fflush(NULL);
    for (i = 0; i < NPROC; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            child(sh, region, size, &l, i);
        }
    }
    for (i = 0; i < NPROC; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }

    CHECK(st);
    /* exactly the burst was granted, whatever the interleaving */
    assert_int_equal(sh->rate_ok, RATE_BURST);
    assert_int_equal(sh->acquired, NPROC * ITER);
    assert_true(sh->max_seen >= 1 && sh->max_seen <= SLOTS);
    /* every message is there, every answer complete */
    chat_buf_init(&buf);
    for (i = 0; i < NPROC; i++) {
        char name[16], want[64];
        chat_owner_t o;
        chat_msg_info_t mi;
        snprintf(name, sizeof(name), "u:child%d", i);
        o = owner_of(name);
        assert_int_equal(chat_store_conv_get(st, &o, sh->ids[i], &ci), CHAT_OK);
        assert_int_equal(ci.nmsgs, ITER);
        assert_int_equal(chat_store_msg_get(st, &o, sh->ids[i], ITER - 1, 0, &buf, &mi), CHAT_OK);
        snprintf(want, sizeof(want), "child %d message %d!", i, ITER - 1);
        assert_string_equal(buf.data, want);
        assert_true(chat_store_user_seq(st, &o) > 0);
    }
    assert_int_equal(chat_store_conv_get(st, &common, sh->shared_id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 1000 < NPROC * ITER ? 1000 : NPROC * ITER);
    /* lock-free counters lost nothing */
    assert_int_equal(chat_metrics_series_get(st, sh->series, &ss), CHAT_OK);
    assert_int_equal(ss.counters[CHAT_CTR_TOKENS], NPROC * ITER);
    assert_int_equal(ss.hist[CHAT_HIST_TTFT][1], NPROC * ITER);
    assert_int_equal(ss.hist_count[CHAT_HIST_TTFT], NPROC * ITER);
    assert_true(ss.hist_sum[CHAT_HIST_TTFT] == 75.0 * NPROC * ITER);
    chat_metrics_snapshot(st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_MESSAGES_IN], NPROC * ITER);
    assert_int_equal(snap.nerrors, 2);
    assert_int_equal(snap.errors[0].count + snap.errors[1].count, NPROC * ITER);
    chat_buf_free(&buf);
    chat_store_detach(st);
    pthread_mutex_destroy(&sh->mu);
    munmap(region, size);
    munmap(sh, sizeof(*sh));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiprocess),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
