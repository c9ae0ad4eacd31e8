/* Unit test: several processes share one store region (an anonymous
 * MAP_SHARED mapping, as httpd children share the APR segment) and call the
 * store concurrently with no lock of their own: the store's locks (robust
 * mutexes inside the region) alone keep it consistent, and the lock-free
 * metrics are updated at the same time. Afterwards the region must be
 * consistent and every count exact. */
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
    uint64_t rate_ok;  /* atomic: rate-limit tokens granted */
    uint64_t acquired; /* atomic: backend slots obtained */
    uint64_t max_seen; /* highest concurrent holders seen (atomic) */
    uint64_t now;      /* shared fake clock (atomic) */
    char ids[NPROC][25];
    char shared_id[25];
    int be, series;
} shared_t;

static void child(shared_t *sh, void *region, size_t size, const chat_store_layout_t *l,
                  int n)
{
    chat_store_t *st;
    chat_owner_t me, common = owner_of("u:shared");
    chat_rate_t rate = {1, INT64_MAX, RATE_BURST};
    char name[16], txt[64];
    int k, fails = 0;

    snprintf(name, sizeof(name), "u:child%d", n);
    me = owner_of(name);
    if (chat_store_attach(&st, region, size, l) != CHAT_OK) {
        _exit(10);
    }

    for (k = 0; k < ITER; k++) {
        int64_t retry;
        int32_t pos;
        uint64_t ticket = ((uint64_t)(n + 1) << 32) | (uint64_t)(k + 1);
        chat_status_t rc;
        size_t len = (size_t)snprintf(txt, sizeof(txt), "child %d message %d", n, k);

        if (chat_store_rate_take(st, &common, &rate, 1000, &retry) == CHAT_OK) {
            __atomic_add_fetch(&sh->rate_ok, 1, __ATOMIC_SEQ_CST);
        }
        fails += chat_store_msg_append(st, &me, sh->ids[n], CHAT_ROLE_USER, 0, txt, len,
                                       __atomic_add_fetch(&sh->now, 1, __ATOMIC_SEQ_CST),
                                       NULL) != CHAT_OK;
        fails += chat_store_msg_extend(
                     st, &me, sh->ids[n], "!", 1,
                     __atomic_add_fetch(&sh->now, 1, __ATOMIC_SEQ_CST)) != CHAT_OK;
        fails += chat_store_msg_append(
                     st, &common, sh->shared_id, CHAT_ROLE_USER, 0, txt, len,
                     __atomic_add_fetch(&sh->now, 1, __ATOMIC_SEQ_CST), NULL) != CHAT_OK;
        chat_store_user_bump(st, &me);

        /* lock-free */
        chat_metrics_add(st, sh->series, CHAT_CTR_TOKENS, 1);
        chat_metrics_observe(st, sh->series, CHAT_HIST_TTFT, 75);
        chat_metrics_gauge_add(st, CHAT_G_MESSAGES_IN, 1);
        chat_metrics_error(st, k % 2 ? "odd" : "even");
        (void)chat_store_conv_seq(st, sh->ids[n]);

        /* a backend slot, fairly queued; poll until served */
        for (;;) {
            chat_backend_info_t bi;
            rc = chat_store_backend_acquire(
                st, sh->be, ticket, __atomic_load_n(&sh->now, __ATOMIC_SEQ_CST), &pos);
            if (rc == CHAT_OK) {
                uint64_t seen;
                chat_store_backend_get(st, sh->be, &bi);
                seen = __atomic_load_n(&sh->max_seen, __ATOMIC_SEQ_CST);
                while (bi.active > seen &&
                       !__atomic_compare_exchange_n(&sh->max_seen, &seen, bi.active, 0,
                                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
                }
                chat_store_backend_release(st, sh->be, ticket);
            }
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
    chat_owner_t common = owner_of("u:shared");
    chat_series_snapshot_t ss;
    chat_metrics_snapshot_t snap;
    chat_conv_info_t ci;
    chat_buf_t buf;
    pid_t pids[NPROC];
    int i, status;
    (void)state;

    l.max_conversations = NPROC + 2;
    /* every child may wait for a backend slot at once: with a shorter queue
     * the last ones are told CHAT_EFULL (right, but not what this tests) */
    l.queue_cap = NPROC;
    l.max_messages = 1000;
    l.history_bytes = 4096 * 256;
    size = chat_store_size(&l);
    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
              0);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(sh != MAP_FAILED && region != MAP_FAILED);
    memset(sh, 0, sizeof(*sh));

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
        assert_int_equal(chat_store_msg_get(st, &o, sh->ids[i], ITER - 1, 0, &buf, &mi),
                         CHAT_OK);
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
    munmap(region, size);
    munmap(sh, sizeof(*sh));
}

/* The old controller's launch and chat/message find a session by its title
 * or create it: processes racing on the same new titles make one session per
 * title, and every racer gets that one. */
#define RACE_TITLES 96

typedef struct {
    int go;                        /* atomic: the start line */
    uint32_t created[RACE_TITLES]; /* atomic */
    char ids[NPROC][RACE_TITLES][25];
} race_t;

static void racer(race_t *rc, void *region, size_t size, const chat_store_layout_t *l,
                  int n)
{
    chat_store_t *st;
    chat_owner_t o = owner_of("u:racer");
    int t, created;

    if (chat_store_attach(&st, region, size, l) != CHAT_OK) {
        _exit(10);
    }
    while (!__atomic_load_n(&rc->go, __ATOMIC_SEQ_CST)) {
    }
    for (t = 0; t < RACE_TITLES; t++) {
        char title[16];
        chat_conv_info_t ci;
        snprintf(title, sizeof(title), "bot-%d", t);
        if (chat_store_conv_find_or_create(st, &o, "llama", title, CHAT_CONV_STOPPED,
                                           0x1000 + (uint64_t)(n * RACE_TITLES + t), 10,
                                           &ci, &created) != CHAT_OK ||
            !(ci.flags & CHAT_CONV_STOPPED) || strcmp(ci.title, title) != 0) {
            _exit(2);
        }
        if (created) {
            __atomic_add_fetch(&rc->created[t], 1, __ATOMIC_SEQ_CST);
        }
        memcpy(rc->ids[n][t], ci.id, sizeof(rc->ids[n][t]));
    }
    chat_store_detach(st);
    _exit(0);
}

static void count_cb(void *baton, const chat_conv_info_t *c)
{
    (void)c;
    (*(int *)baton)++;
}

static void test_find_or_create_race(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:racer");
    chat_store_t *st;
    race_t *rc;
    void *region;
    size_t size;
    pid_t pids[NPROC];
    int i, t, status, n = 0;
    (void)state;

    l.max_conversations = RACE_TITLES * 2;
    size = chat_store_size(&l);
    rc = mmap(NULL, sizeof(*rc), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1,
              0);
    region = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(rc != MAP_FAILED && region != MAP_FAILED);
    memset(rc, 0, sizeof(*rc));
    assert_int_equal(chat_store_format(&st, region, size, &l, 0), CHAT_OK);
    fflush(NULL);
    for (i = 0; i < NPROC; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            racer(rc, region, size, &l, i);
        }
    }
    __atomic_store_n(&rc->go, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < NPROC; i++) {
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    CHECK(st);
    for (t = 0; t < RACE_TITLES; t++) {
        assert_int_equal(rc->created[t], 1);
        for (i = 1; i < NPROC; i++) {
            assert_string_equal(rc->ids[i][t], rc->ids[0][t]);
        }
    }
    chat_store_conv_list(st, &o, NULL, -1, count_cb, &n);
    assert_int_equal(n, RACE_TITLES);
    chat_store_detach(st);
    munmap(region, size);
    munmap(rc, sizeof(*rc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multiprocess),
        cmocka_unit_test(test_find_or_create_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
