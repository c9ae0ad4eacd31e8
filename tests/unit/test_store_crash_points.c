/* Unit tests: a process killed at any instruction of a store update leaves
 * the store consistent and usable, and no reader sees a torn conversation
 * or message.
 *
 * Every operation is first run to count its crash points (the core calls
 * chat_store_crash_hook before and after each undo-log entry and at each
 * commit). Then, for every crash point N:
 *  - in process: the operation is cut at N (longjmp), the locks it held
 *    are recovered as their next holder would recover them, the upkeep
 *    sweeps;
 *  - for real: a forked child runs the operation and SIGKILLs itself at N
 *    in a MAP_SHARED region; the parent then takes every lock (the robust
 *    mutexes report EOWNERDEAD) and sweeps.
 * Afterwards the store must pass the strict check, every conversation must
 * be as it was before the operation or as it is after it (each message
 * whole, in one of its two versions), and further updates must succeed. */
#include <setjmp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_store_util.h"

/* ---- what a reader sees ------------------------------------------------------------ */

typedef struct {
    int role;
    int alt; /* CHAT_MSG_ALT: which version is chosen is part of the state */
    size_t len;
    char text[4200];
} smsg_t;

typedef struct {
    char id[25];
    char title[CHAT_TITLE_MAX + 1];
    int n;
    smsg_t m[8];
} sconv_t;

typedef struct {
    int n;
    sconv_t c[16];
} state_t;

static void cap_msg(void *baton, const chat_msg_info_t *info, const char *text,
                    size_t len)
{
    sconv_t *c = baton;
    if (c->n < 8 && len < sizeof(c->m[0].text)) {
        c->m[c->n].role = (int)info->role;
        c->m[c->n].alt = (info->flags & CHAT_MSG_ALT) != 0;
        c->m[c->n].len = len;
        memcpy(c->m[c->n].text, text, len);
        c->m[c->n].text[len] = '\0';
    }
    c->n++;
}

static void capture(world_t *w, state_t *s)
{
    chat_buf_t buf;
    int k, i;

    memset(s, 0, sizeof(*s));
    chat_buf_init(&buf);
    for (k = 0; k < 4; k++) {
        convs_t cv;
        memset(&cv, 0, sizeof(cv));
        chat_store_conv_list(w->st, &w->o[k], NULL, -1, collect_conv, &cv);
        for (i = 0; i < cv.n && i < 32 && s->n < 16; i++) {
            sconv_t *c = &s->c[s->n++];
            memcpy(c->id, cv.c[i].id, sizeof(c->id));
            memcpy(c->title, cv.c[i].title, sizeof(c->title));
            assert_true(
                chat_store_msg_read(w->st, &w->o[k], c->id, 0, 0, &buf, cap_msg, c) >= 0);
        }
    }
    chat_buf_free(&buf);
}

/* Versions: among the children of each message (and among the first
 * messages) exactly one is the chosen one, whatever was cut short. */
typedef struct {
    int n;
    uint32_t parent[64], flags[64];
} vtree_t;

static void vt_msg(void *baton, const chat_msg_info_t *info, const char *text, size_t len)
{
    vtree_t *t = baton;
    (void)text;
    (void)len;
    if (t->n < 64) {
        t->parent[t->n] = info->parent;
        t->flags[t->n] = info->flags;
    }
    t->n++;
}

static void check_versions(world_t *w, const char *what, int point)
{
    chat_buf_t buf;
    int k, i, j, p;

    chat_buf_init(&buf);
    for (k = 0; k < 4; k++) {
        convs_t cv;
        memset(&cv, 0, sizeof(cv));
        chat_store_conv_list(w->st, &w->o[k], NULL, -1, collect_conv, &cv);
        for (i = 0; i < cv.n && i < 32; i++) {
            vtree_t t;
            memset(&t, 0, sizeof(t));
            chat_store_msg_read(w->st, &w->o[k], cv.c[i].id, 0, 0, &buf, vt_msg, &t);
            for (p = -1; p < t.n && p < 64; p++) {
                uint32_t want = p < 0 ? CHAT_MSG_NO_PARENT : (uint32_t)p;
                int kids = 0, chosen = 0;
                for (j = 0; j < t.n && j < 64; j++) {
                    if (t.parent[j] == want) {
                        kids++;
                        chosen += !(t.flags[j] & CHAT_MSG_ALT);
                    }
                }
                if (kids && chosen != 1) {
                    fail_msg("%s @%d: %s: %d of %d versions chosen under %d", what, point,
                             cv.c[i].id, chosen, kids, p);
                }
            }
        }
    }
    chat_buf_free(&buf);
}

static const sconv_t *find_conv(const state_t *s, const char *id)
{
    int i;
    for (i = 0; i < s->n; i++) {
        if (!strcmp(s->c[i].id, id)) {
            return &s->c[i];
        }
    }
    return NULL;
}

static int same_msg(const smsg_t *a, const smsg_t *b)
{
    return a->role == b->role && a->alt == b->alt && a->len == b->len &&
           !memcmp(a->text, b->text, a->len);
}

/* The state after a crash: every conversation as before or as after the
 * operation, every message whole in one of its versions, in order. */
static void check_between(const state_t *after, const state_t *s0, const state_t *s1,
                          const char *what, int point)
{
    int i, j, k;

    for (i = 0; i < after->n; i++) {
        const sconv_t *x = &after->c[i];
        const sconv_t *x0 = find_conv(s0, x->id), *x1 = find_conv(s1, x->id);
        smsg_t const *seq[16];
        int nseq = 0;
        if (!x0 && !x1) {
            fail_msg("%s @%d: conversation %s appeared from nowhere", what, point, x->id);
        }
        if (!(x0 && !strcmp(x0->title, x->title)) &&
            !(x1 && !strcmp(x1->title, x->title))) {
            fail_msg("%s @%d: %s has a title of neither version", what, point, x->id);
        }
        for (k = 0; x0 && k < x0->n && k < 8; k++) {
            seq[nseq++] = &x0->m[k];
        }
        for (k = 0; x1 && k < x1->n && k < 8; k++) {
            seq[nseq++] = &x1->m[k];
        }
        /* a subsequence of the before-then-after messages, each whole */
        for (j = 0, k = 0; j < x->n && j < 8; j++) {
            while (k < nseq && !same_msg(seq[k], &x->m[j])) {
                k++;
            }
            if (k == nseq) {
                fail_msg("%s @%d: %s message %d (%zu bytes) is torn or unknown", what,
                         point, x->id, j, x->m[j].len);
            }
            k++;
        }
    }
    for (i = 0; i < s0->n; i++) {
        if (!find_conv(after, s0->c[i].id) && find_conv(s1, s0->c[i].id)) {
            fail_msg("%s @%d: conversation %s vanished", what, point, s0->c[i].id);
        }
    }
}

/* After recovery the store takes updates again. */
static void followup(world_t *w, uint64_t now)
{
    chat_owner_t fresh = owner_of("u:followup");
    chat_conv_info_t ci;
    char id[25];
    chat_status_t rc;

    mkconv(w->st, &fresh, "bot-f", 0xF00D, now, id);
    world_add(w, 0, w->a2, CHAT_ROLE_USER, 10, 'z', now + 1);
    rc = chat_store_conv_get(w->st, &w->o[1], w->b1, &ci);
    if (rc == CHAT_OK) {
        assert_int_equal(chat_store_gen_begin(w->st, &w->o[1], w->b1, 77,
                                              CHAT_CONV_GENERATING, now + 2),
                         CHAT_OK);
        assert_int_equal(chat_store_gen_end(w->st, w->b1, 77, now + 3), CHAT_OK);
    }
    CHECK(w->st);
}

/* ---- the operations ---------------------------------------------------------------- */

typedef void op_fn(world_t *w);

static void op_append(world_t *w)
{
    char buf[300];
    text_of(buf, sizeof(buf), 'p');
    chat_store_msg_append(w->st, &w->o[1], w->b1, CHAT_ROLE_USER, 0, buf, sizeof(buf),
                          100, NULL);
}

/* Needs more blocks than are free: evicts across shards first. */
static void op_append_evicting(world_t *w)
{
    static char buf[4000];
    text_of(buf, sizeof(buf), 'q');
    chat_store_msg_append(w->st, &w->o[3], w->d1, CHAT_ROLE_ASSISTANT, 0, buf,
                          sizeof(buf), 101, NULL);
    chat_store_msg_append(w->st, &w->o[3], w->d1, CHAT_ROLE_USER, 0, buf, sizeof(buf),
                          102, NULL);
}

static void op_extend(world_t *w)
{
    char buf[700];
    text_of(buf, sizeof(buf), 'r');
    chat_store_msg_extend(w->st, &w->o[0], w->a1, buf, sizeof(buf), 103);
}

static void op_cap(world_t *w)
{
    int i;
    for (i = 0; i < 4; i++) {
        char buf[100];
        text_of(buf, sizeof(buf), (char)('s' + i));
        chat_store_msg_append(w->st, &w->o[0], w->a1, CHAT_ROLE_USER, 0, buf, sizeof(buf),
                              104 + (uint64_t)i, NULL);
    }
}

/* A settings blob set, then replaced by a longer one (old chain freed). */
static void op_meta(world_t *w)
{
    char buf[900];
    text_of(buf, sizeof(buf), 'm');
    chat_store_conv_meta_set(w->st, &w->o[0], w->a1, buf, 300, 111);
    chat_store_conv_meta_set(w->st, &w->o[0], w->a1, buf, sizeof(buf), 112);
}

/* A conversation with a settings blob deleted: both chains go back. */
static void op_meta_delete(world_t *w)
{
    char buf[600];
    text_of(buf, sizeof(buf), 'n');
    chat_store_conv_meta_set(w->st, &w->o[1], w->b1, buf, sizeof(buf), 113);
    chat_store_conv_delete(w->st, &w->o[1], w->b1);
}

static void op_truncate(world_t *w)
{
    chat_store_msg_truncate(w->st, &w->o[0], w->a1, 1, 110);
}

/* A regenerate: a new version under a1's first message (its answer
 * becomes another version). */
static void op_branch(world_t *w)
{
    char buf[300];
    text_of(buf, sizeof(buf), 'v');
    chat_store_msg_branch(w->st, &w->o[0], w->a1, 0, CHAT_ROLE_ASSISTANT, 0, buf,
                          sizeof(buf), 160, NULL);
}

/* Back to c1's first answer: two headers change together. */
static void op_select(world_t *w)
{
    chat_store_msg_select(w->st, &w->o[2], w->c1, 1, 161);
}

static void op_delete(world_t *w)
{
    chat_store_conv_delete(w->st, &w->o[1], w->b1);
}

static void op_create_full(world_t *w)
{
    chat_conv_info_t ci;
    int i;
    /* 5 used of 8: the third creation finds the table full */
    for (i = 0; i < 4; i++) {
        chat_store_conv_create(w->st, &w->o[2], "bot-c", "new", 0x100 + (uint64_t)i,
                               120 + (uint64_t)i, &ci);
    }
}

static void op_create_quota(world_t *w)
{
    chat_store_policy_t p;
    chat_conv_info_t ci;

    chat_store_policy_default(&p);
    p.auth.conversations = 2; /* A holds 2: its oldest goes */
    chat_store_set_policy(w->st, &p);
    chat_store_conv_create(w->st, &w->o[0], "bot-a", "third", 0x200, 130, &ci);
    chat_store_policy_default(&p);
    chat_store_set_policy(w->st, &p);
}

static void op_rename_flags(world_t *w)
{
    chat_store_conv_rename(w->st, &w->o[2], w->c1, "renamed", 140);
    chat_store_conv_flags(w->st, &w->o[2], w->c1, CHAT_CONV_ARCHIVED, 0, 141);
    chat_store_msg_flags(w->st, &w->o[2], w->c1, CHAT_MSG_COMPLETE, 0, 142);
}

static void op_users(world_t *w)
{
    chat_rate_t r = {5, 60000, 5};
    int64_t retry;
    int i;
    for (i = 0; i < 12; i++) { /* more than a shard's window: replacements */
        char name[32];
        chat_owner_t o;
        snprintf(name, sizeof(name), "s:user%d", i);
        o = owner_of(name);
        chat_store_rate_take(w->st, &o, &r, 150 + (uint64_t)i, &retry);
        chat_store_user_bump(w->st, &o);
    }
}

static const struct {
    const char *name;
    op_fn *fn;
} ops[] = {
    {"append", op_append},
    {"append_evicting", op_append_evicting},
    {"extend", op_extend},
    {"cap", op_cap},
    {"truncate", op_truncate},
    {"meta", op_meta},
    {"meta_delete", op_meta_delete},
    {"branch", op_branch},
    {"select", op_select},
    {"delete", op_delete},
    {"create_full", op_create_full},
    {"create_quota", op_create_quota},
    {"rename_flags", op_rename_flags},
    {"users", op_users},
};
#define NOPS (int)(sizeof(ops) / sizeof(ops[0]))

/* ---- crash points ---------------------------------------------------------------------
 */

static int crash_count, crash_at;
static jmp_buf crash_jmp;
static int crash_kill;

static void crash_hook(void)
{
    if (++crash_count == crash_at) {
        if (crash_kill) {
            raise(SIGKILL);
        }
        longjmp(crash_jmp, 1);
    }
}

static int count_points(int op)
{
    world_t w;
    world_open(&w, 0);
    crash_count = 0;
    crash_at = -1;
    chat_store_crash_hook = crash_hook;
    ops[op].fn(&w);
    chat_store_crash_hook = NULL;
    CHECK(w.st);
    world_close(&w);
    return crash_count;
}

static void reference(int op, state_t *s0, state_t *s1)
{
    world_t w;
    world_open(&w, 0);
    capture(&w, s0);
    ops[op].fn(&w);
    CHECK(w.st);
    capture(&w, s1);
    world_close(&w);
}

/* The locks the "dead" thread still holds, recovered as the next holder
 * would (the thread itself holds them, so trylock says busy). */
static int abandon_all(world_t *w)
{
    uint32_t i;
    int n = 0;

    for (i = 0; i < w->st->hdr->nlocks; i++) {
        cs_lock_t *lk = &w->st->locks[i];
        if (pthread_mutex_trylock(&lk->m.mu) == 0) {
            pthread_mutex_unlock(&lk->m.mu);
        }
        else {
            cs_lock_abandon(w->st, lk);
            n++;
        }
    }
    return n;
}

static state_t g_s0, g_s1, g_after;

static void test_crash_every_point_in_process(void **state)
{
    volatile int op, n, total, held = 0, runs = 0;
    (void)state;

    chat_log_set(NULL, NULL);
    for (op = 0; op < NOPS; op++) {
        total = count_points(op);
        assert_true(total > 0);
        reference(op, &g_s0, &g_s1);
        for (n = 1; n <= total; n++) {
            world_t w;
            world_open(&w, 0);
            crash_count = 0;
            crash_at = n;
            crash_kill = 0;
            chat_store_crash_hook = crash_hook;
            if (!setjmp(crash_jmp)) {
                ops[op].fn(&w);
            }
            chat_store_crash_hook = NULL;
            held += abandon_all(&w);
            chat_store_maintain(w.st, 1000);
            if (cs_validate(w.st) != CHAT_OK) {
                fail_msg("%s @%d/%d: the store fails its check after recovery",
                         ops[op].name, n, total);
            }
            capture(&w, &g_after);
            check_between(&g_after, &g_s0, &g_s1, ops[op].name, n);
            check_versions(&w, ops[op].name, n);
            followup(&w, 2000);
            world_close(&w);
            runs++;
        }
    }
    print_message("in process: %d crash points, %d locks recovered\n", runs, held);
    assert_true(held > 0);
}

static void test_crash_every_point_sigkill(void **state)
{
    int op, n, total, runs = 0;
    uint64_t recoveries = 0;
    (void)state;

    chat_log_set(NULL, NULL);
    for (op = 0; op < NOPS; op++) {
        total = count_points(op);
        reference(op, &g_s0, &g_s1);
        /* every point of the short operations, a spread of the long ones */
        for (n = 1; n <= total; n += total > 60 ? 3 : 1) {
            world_t w;
            chat_metrics_snapshot_t snap;
            pid_t pid;
            int status;
            world_open(&w, 1);
            pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                crash_count = 0;
                crash_at = n;
                crash_kill = 1;
                chat_store_crash_hook = crash_hook;
                ops[op].fn(&w);
                _exit(0);
            }
            assert_int_equal(waitpid(pid, &status, 0), pid);
            assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
            /* the robust mutexes report the dead holder to the next taker */
            chat_store_maintain(w.st, 1000);
            if (cs_validate(w.st) != CHAT_OK) {
                fail_msg("%s @%d/%d (killed): the store fails its check", ops[op].name, n,
                         total);
            }
            chat_metrics_snapshot(w.st, &snap);
            recoveries += snap.recoveries;
            capture(&w, &g_after);
            check_between(&g_after, &g_s0, &g_s1, ops[op].name, n);
            check_versions(&w, ops[op].name, n);
            followup(&w, 2000);
            world_close(&w);
            runs++;
        }
    }
    print_message("killed: %d crash points, %llu locks recovered\n", runs,
                  (unsigned long long)recoveries);
    assert_true(recoveries > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_every_point_in_process),
        cmocka_unit_test(test_crash_every_point_sigkill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
