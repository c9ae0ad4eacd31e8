/* Unit tests: store processes killed for real, outside any crash point.
 *
 * A generation whose process died (SIGKILL) is taken over at once and its
 * backend slot freed on the next look. A stress test then runs worker
 * processes doing random updates while the parent kills them at random,
 * and checks every message it finds. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_store_util.h"

/* A generation whose process died is taken over at once; its backend slot
 * is freed on the next look. */
static void test_dead_process_releases(void **state)
{
    world_t w;
    chat_conv_info_t ci;
    chat_msg_info_t mi;
    chat_metrics_snapshot_t snap;
    chat_buf_t buf;
    int32_t pos;
    pid_t pid;
    int status, be;
    (void)state;

    chat_buf_init(&buf);
    world_open(&w, 1);
    be = chat_store_backend_register(w.st, "ollama", 1);
    pid = fork();
    if (pid == 0) {
        if (chat_store_proc_attach(w.st, (int)getpid(), 500) != CHAT_OK ||
            chat_store_gen_begin(w.st, &w.o[1], w.b1, 41, CHAT_CONV_GENERATING, 500) !=
                CHAT_OK ||
            chat_store_msg_append(w.st, &w.o[1], w.b1, CHAT_ROLE_ASSISTANT,
                                  CHAT_MSG_STREAMING, "half an ans", 11, 501,
                                  NULL) != CHAT_OK ||
            chat_store_backend_acquire(w.st, be, 9, 501, &pos) != CHAT_OK) {
            _exit(3);
        }
        raise(SIGKILL);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    /* alive for all anyone knows until asked: another connection may take
     * the conversation over right away */
    assert_int_equal(chat_store_conv_get(w.st, &w.o[1], w.b1, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_GENERATING);
    assert_int_equal(chat_store_gen_begin(w.st, &w.o[1], w.b1, 42, CHAT_CONV_QUEUED, 600),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_get(w.st, &w.o[1], w.b1, 2, 0, &buf, &mi), CHAT_OK);
    assert_true(mi.flags & CHAT_MSG_INTERRUPTED);
    assert_false(mi.flags & CHAT_MSG_STREAMING);
    assert_memory_equal(buf.data, "half an ans", 11);
    assert_int_equal(chat_store_gen_end(w.st, w.b1, 42, 601), CHAT_OK);
    /* the slot: free for a newcomer as soon as the dead holder is noticed,
     * not after the 60 s heartbeat timeout */
    assert_int_equal(chat_store_backend_acquire(w.st, be, 10, 600, &pos), CHAT_OK);
    chat_store_backend_release(w.st, be, 10);
    /* maintain finds the dead process in the table (already freed above):
     * the death is counted once, by whoever noticed it first */
    assert_int_equal(chat_store_maintain(w.st, 1300), 0);
    chat_metrics_snapshot(w.st, &snap);
    assert_int_equal(snap.procs_reaped, 1);
    CHECK(w.st);
    chat_buf_free(&buf);
    world_close(&w);
}

/* ---- stress: random updates, random kills
 * ----------------------------------------------- */

#define WORKERS 5
#define STRESS_MS 2500

/* A message is whole chunks "[nnnn:" + nnnn letters + "]": a torn write
 * would leave a partial chunk. */
static size_t chunk(char *buf, size_t cap, unsigned seed)
{
    size_t k = 5 + seed % 400, i;
    if (k + 7 > cap) {
        k = cap - 7;
    }
    snprintf(buf, cap, "[%04zu:", k);
    for (i = 0; i < k; i++) {
        buf[6 + i] = (char)('a' + (seed + i) % 26);
    }
    buf[6 + k] = ']';
    return k + 7;
}

static int well_formed(const char *t, size_t len)
{
    size_t off = 0;
    while (off < len) {
        unsigned k;
        size_t i;
        if (len - off < 7 || sscanf(t + off, "[%4u:", &k) != 1 || t[off + 5] != ':' ||
            len - off < (size_t)k + 7 || t[off + 6 + k] != ']') {
            return 0;
        }
        for (i = 0; i < k; i++) {
            if (t[off + 6 + i] < 'a' || t[off + 6 + i] > 'z') {
                return 0;
            }
        }
        off += k + 7;
    }
    return 1;
}

static void worker(world_t *w, int me)
{
    unsigned seed = (unsigned)getpid() * 2654435761u;
    char buf[1024];
    uint64_t now = 10000;
    int32_t pos;

    chat_store_proc_attach(w->st, (int)getpid(), now);
    for (;;) {
        unsigned r = (seed = seed * 1103515245u + 12345u) >> 8;
        char name[32];
        chat_owner_t o;
        chat_conv_info_t ci;
        size_t n;
        snprintf(name, sizeof(name), "%s:stress%u", r & 1 ? "u" : "s", (r >> 1) % 10);
        o = owner_of(name);
        now++;
        if (chat_store_conv_latest(w->st, &o, NULL, &ci) != CHAT_OK ||
            (r >> 5) % 9 == 0) {
            chat_store_conv_create(w->st, &o, "bot", "stress", ((uint64_t)r << 20) | 1,
                                   now, &ci);
            continue;
        }
        switch ((r >> 8) % 8) {
        case 0:
        case 1:
        case 2: {
            /* as the engine does: messages go in under generation ownership */
            uint64_t tok = ((uint64_t)me << 32) | r | 1;
            if (chat_store_gen_begin(w->st, &o, ci.id, tok, CHAT_CONV_QUEUED, now) ==
                CHAT_OK) {
                n = chunk(buf, sizeof(buf), r);
                chat_store_msg_append(w->st, &o, ci.id, CHAT_ROLE_USER, 0, buf, n, now,
                                      NULL);
                chat_store_gen_end(w->st, ci.id, tok, now);
            }
            break;
        }
        case 3:
        case 4: {
            uint64_t tok = ((uint64_t)me << 32) | r | 1;
            if (chat_store_gen_begin(w->st, &o, ci.id, tok, CHAT_CONV_GENERATING, now) ==
                CHAT_OK) {
                int k;
                n = chunk(buf, sizeof(buf), r + 1);
                chat_store_msg_append(w->st, &o, ci.id, CHAT_ROLE_ASSISTANT,
                                      CHAT_MSG_STREAMING, buf, n, now, NULL);
                for (k = 0; k < 4; k++) {
                    n = chunk(buf, sizeof(buf), r + 2 + (unsigned)k);
                    chat_store_msg_extend(w->st, &o, ci.id, buf, n, now);
                }
                chat_store_msg_flags(w->st, &o, ci.id, CHAT_MSG_COMPLETE,
                                     CHAT_MSG_STREAMING, now);
                chat_store_gen_end(w->st, ci.id, tok, now);
            }
            break;
        }
        case 5:
            chat_store_msg_truncate(w->st, &o, ci.id, (r >> 12) % 3, now);
            break;
        case 6:
            chat_store_conv_delete(w->st, &o, ci.id);
            break;
        default:
            chat_store_backend_acquire(w->st, 0, r | 1, now, &pos);
            chat_store_backend_release(w->st, 0, r | 1);
            chat_store_user_bump(w->st, &o);
            break;
        }
    }
}

static uint64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void test_stress_random_kills(void **state)
{
    world_t w;
    pid_t pids[WORKERS];
    chat_metrics_snapshot_t snap;
    chat_buf_t buf;
    uint64_t end;
    int i, kills = 0, checked = 0, k;
    unsigned seed = 12345;
    (void)state;

    chat_store_layout_t l = crash_layout();
    chat_log_set(NULL, NULL);
    chat_buf_init(&buf);
    l.max_conversations = 48;
    l.max_users = 64;
    l.max_messages = 12;
    l.history_bytes = 600 * 256;
    world_open_l(&w, 1, &l);
    chat_store_backend_register(w.st, "ollama", 2);
    for (i = 0; i < WORKERS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            worker(&w, i);
            _exit(0);
        }
    }
    end = ms_now() + STRESS_MS;
    while (ms_now() < end) {
        struct timespec ts = {0, (long)(2 + (seed = seed * 1103515245u + 12345u) % 15) *
                                     1000000L};
        int v = (int)((seed >> 8) % WORKERS), status;
        nanosleep(&ts, NULL);
        kill(pids[v], SIGKILL);
        waitpid(pids[v], &status, 0);
        kills++;
        pids[v] = fork();
        if (pids[v] == 0) {
            worker(&w, v);
            _exit(0);
        }
    }
    for (i = 0; i < WORKERS; i++) {
        int status;
        kill(pids[i], SIGKILL);
        waitpid(pids[i], &status, 0);
    }
    chat_store_maintain(w.st, 100000);
    assert_int_equal(cs_validate(w.st), CHAT_OK);
    chat_metrics_snapshot(w.st, &snap);
    /* every message of every conversation: whole chunks only; nobody left
     * generating after the upkeep */
    for (k = 0; k < 20; k++) {
        char name[32];
        chat_owner_t o;
        convs_t cv;
        snprintf(name, sizeof(name), "%s:stress%d", k & 1 ? "u" : "s", k / 2);
        o = owner_of(name);
        memset(&cv, 0, sizeof(cv));
        chat_store_conv_list(w.st, &o, NULL, -1, collect_conv, &cv);
        for (i = 0; i < cv.n && i < 32; i++) {
            uint32_t m;
            assert_int_equal(cv.c[i].state, CHAT_CONV_IDLE);
            for (m = 0; m < cv.c[i].nmsgs; m++) {
                chat_msg_info_t mi;
                assert_int_equal(
                    chat_store_msg_get(w.st, &o, cv.c[i].id, m, 0, &buf, &mi), CHAT_OK);
                if (!well_formed(buf.data, buf.len)) {
                    fail_msg("torn message in %s: %.*s", cv.c[i].id, (int)buf.len,
                             buf.data);
                }
                assert_false(mi.flags & CHAT_MSG_STREAMING);
                checked++;
            }
        }
    }
    print_message("stress: %u conversations, %d kills, %llu recoveries, %llu processes "
                  "reaped, %d messages "
                  "checked\n",
                  snap.conversations, kills, (unsigned long long)snap.recoveries,
                  (unsigned long long)snap.procs_reaped, checked);
    assert_true(kills > 20);
    assert_true(checked > 0);
    chat_buf_free(&buf);
    world_close(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_process_releases),
        cmocka_unit_test(test_stress_random_kills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
