/* Unit tests: what a restart does with an image: recover (answers cut short,
 * queues and slots of dead processes, live gauges) and migrate into a
 * smaller or a larger layout. */
#include "test_store_util.h"

/* ---- recover ------------------------------------------------------------------------
 */

static void test_recover(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t a, b;
    pop_t p;
    chat_conv_info_t ci;
    chat_msg_info_t mi;
    chat_backend_info_t bi;
    chat_metrics_snapshot_t snap;
    chat_buf_t buf;
    char a3[25];
    int32_t pos;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&a, &l, 0);
    populate(a.st, &p);
    /* a queued conversation whose last message is the user's */
    mkconv(a.st, &p.alice, "llama", 0x4444, 4000, a3);
    assert_int_equal(
        chat_store_msg_append(a.st, &p.alice, a3, CHAT_ROLE_USER, 0, "q", 1, 4001, NULL),
        CHAT_OK);
    assert_int_equal(chat_store_gen_begin(a.st, &p.alice, a3, 5, CHAT_CONV_QUEUED, 4002),
                     CHAT_OK);
    /* the breaker is half open (its probe died with the old process) */
    chat_store_breaker_result(a.st, p.be, 0, 4000, 1, 1000);
    assert_int_equal(chat_store_breaker_allow(a.st, p.be, 5000, 1000), 1);
    ts_clone(&b, &a);

    chat_store_recover(b.st, 10000);
    CHECK(b.st);
    /* bob's streaming answer: interrupted, no longer streaming; idle */
    assert_int_equal(chat_store_conv_get(b.st, &p.bob, p.b1, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    assert_int_equal(ci.gen_token, 0);
    assert_true(ci.seq > chat_store_conv_seq(a.st, p.b1));
    assert_int_equal(chat_store_msg_get(b.st, &p.bob, p.b1, 1, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(mi.flags, CHAT_MSG_INTERRUPTED);
    assert_string_equal(buf.data, "partial");
    /* the queued one: idle, its user message untouched */
    assert_int_equal(chat_store_conv_get(b.st, &p.alice, a3, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    assert_int_equal(chat_store_msg_get(b.st, &p.alice, a3, 0, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(mi.flags, 0);
    /* a finished conversation is untouched */
    assert_int_equal(chat_store_msg_get(b.st, &p.alice, p.a1, 1, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(mi.flags, CHAT_MSG_COMPLETE);
    /* it can be generated into again */
    assert_int_equal(
        chat_store_gen_begin(b.st, &p.bob, p.b1, 100, CHAT_CONV_GENERATING, 10001),
        CHAT_OK);
    /* backend slots and queue emptied, breaker ready for a new probe */
    assert_int_equal(chat_store_backend_get(b.st, p.be, &bi), CHAT_OK);
    assert_int_equal(bi.active, 0);
    assert_int_equal(bi.queued, 0);
    assert_int_equal(bi.breaker, CHAT_BREAKER_OPEN);
    assert_int_equal(chat_store_breaker_allow(b.st, p.be, 10000, 1000), 1);
    assert_int_equal(chat_store_backend_acquire(b.st, p.be, 8, 10000, &pos), CHAT_OK);
    /* live gauges reset, counters kept */
    chat_metrics_snapshot(b.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_CONNECTIONS], 0);
    assert_int_equal(snap.gauges[CHAT_G_MESSAGES_IN], 9);
    /* a decrement from a child of the old generation does not go negative */
    chat_metrics_gauge_add(b.st, CHAT_G_CONNECTIONS, -1);
    chat_metrics_snapshot(b.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_CONNECTIONS], 0);
    CHECK(b.st);
    ts_close(&a);
    ts_close(&b);
    chat_buf_free(&buf);
}

/* ---- migrate
 * ---------------------------------------------------------------------------- */

static void test_migrate_smaller(void **state)
{
    chat_store_layout_t l = small_layout(), sl;
    tstore_t a, b;
    chat_owner_t o = owner_of("u:carol"), q = owner_of("u:dave");
    char ids[8][25];
    convs_t cv;
    msgs_t ms;
    chat_buf_t buf;
    chat_backend_info_t bi;
    chat_series_snapshot_t ss;
    chat_metrics_snapshot_t snap;
    int i, k, found[8];
    int32_t pos;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&a, &l, 100);
    /* 8 conversations, 3 messages each, updated in order 0..7; then 2
     * touched again so the LRU order is 0,1,3,4,5,6,7,2 (oldest first) */
    for (i = 0; i < 8; i++) {
        mkconv(a.st, i % 2 ? &q : &o, "llama", 0x100 + (uint64_t)i,
               1000 + (uint64_t)i * 10, ids[i]);
        for (k = 0; k < 3; k++) {
            char t[16];
            snprintf(t, sizeof(t), "c%d m%d", i, k);
            assert_int_equal(chat_store_msg_append(
                                 a.st, i % 2 ? &q : &o, ids[i], CHAT_ROLE_USER, 0, t,
                                 strlen(t), 1000 + (uint64_t)i * 10 + (uint64_t)k, NULL),
                             CHAT_OK);
        }
    }
    assert_int_equal(chat_store_conv_rename(a.st, &o, ids[2], "renamed", 5000), CHAT_OK);
    assert_int_equal(chat_store_backend_register(a.st, "ollama", 2), 0);
    chat_store_backend_health(a.st, 0, 0, "", "connection refused", 4000);
    assert_int_equal(chat_store_backend_acquire(a.st, 0, 1, 4000, &pos), CHAT_OK);
    assert_int_equal(chat_store_series(a.st, "llama", "ollama"), 0);
    chat_metrics_add(a.st, 0, CHAT_CTR_ANSWERS, 5);
    chat_metrics_error(a.st, "backend_down");
    chat_metrics_error(a.st, "backend_down");
    chat_store_user_bump(a.st, &o);

    /* 4 conversation slots, 2 messages each, a smaller arena */
    sl = l;
    sl.max_conversations = 4;
    sl.max_messages = 2;
    sl.history_bytes = 32 * 256;
    sl.max_users = 4;
    ts_open(&b, &sl, 9000);
    assert_int_equal(chat_store_migrate(b.st, a.st, 9000), CHAT_OK);
    CHECK(b.st);

    /* the 4 most recently updated (2, 7, 6, 5) survive, in LRU order */
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(b.st, &o, NULL, -1, collect_conv, &cv), 2);
    assert_int_equal(chat_store_conv_list(b.st, &q, NULL, -1, collect_conv, &cv), 2);
    memset(found, 0, sizeof(found));
    for (i = 0; i < cv.n; i++) {
        for (k = 0; k < 8; k++) {
            char want[16];
            snprintf(want, sizeof(want), "c%d m2", k);
            memset(&ms, 0, sizeof(ms));
            if (chat_store_msg_read(b.st, k % 2 ? &q : &o, cv.c[i].id, 0, 0, &buf,
                                    collect_msg, &ms) == 2 &&
                strcmp(ms.text[1], want) == 0) {
                found[k] = 1;
                /* the newest messages are kept */
                snprintf(want, sizeof(want), "c%d m1", k);
                assert_string_equal(ms.text[0], want);
                /* a conversation whose slot exists in dst keeps its id */
                if (k < 4) {
                    assert_string_equal(cv.c[i].id, ids[k]);
                }
                assert_int_equal(cv.c[i].nmsgs, 2);
            }
        }
    }
    assert_int_equal(found[2] + found[5] + found[6] + found[7], 4);
    assert_int_equal(found[0] + found[1] + found[3] + found[4], 0);
    assert_string_equal(cv.c[0].title, "renamed");
    assert_int_equal(chat_store_conv_get(b.st, &o, ids[2], NULL), CHAT_OK);
    assert_int_equal(chat_store_conv_get(b.st, &o, ids[0], NULL), CHAT_ENOTFOUND);
    /* list order is the LRU order */
    assert_true(cv.c[0].updated_ms > cv.c[1].updated_ms);
    assert_true(cv.c[2].updated_ms > cv.c[3].updated_ms);

    /* users, backends (health, not live slots), metrics */
    assert_int_equal(chat_store_user_seq(b.st, &o), chat_store_user_seq(a.st, &o));
    assert_int_equal(chat_store_backend_get(b.st, 0, &bi), CHAT_OK);
    assert_string_equal(bi.name, "ollama");
    assert_string_equal(bi.detail, "connection refused");
    assert_int_equal(bi.healthy, 0);
    assert_int_equal(bi.max_active, 2);
    assert_int_equal(bi.active, 0);
    assert_int_equal(chat_metrics_series_get(b.st, 0, &ss), CHAT_OK);
    assert_int_equal(ss.counters[CHAT_CTR_ANSWERS], 5);
    chat_metrics_snapshot(b.st, &snap);
    assert_int_equal(snap.nerrors, 1);
    assert_int_equal(snap.errors[0].count, 2);
    assert_int_equal(snap.started_ms, 100); /* the older start is kept */
    /* the seq clock keeps running forward */
    assert_true(chat_store_conv_seq(b.st, cv.c[0].id) > 0);
    assert_int_equal(chat_store_migrate(b.st, b.st, 0), CHAT_EINVAL);
    ts_close(&a);
    ts_close(&b);
    chat_buf_free(&buf);
}

/* A larger layout keeps every conversation and every id. */
static void test_migrate_larger(void **state)
{
    chat_store_layout_t l = small_layout(), bl;
    tstore_t a, b;
    pop_t p;
    msgs_t ma, mb;
    chat_buf_t buf;
    chat_conv_info_t ci;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&a, &l, 0);
    populate(a.st, &p);
    bl = l;
    bl.max_conversations = 64;
    bl.history_bytes = 1 << 20;
    bl.max_users = 1000;
    ts_open(&b, &bl, 0);
    assert_int_equal(chat_store_migrate(b.st, a.st, 10), CHAT_OK);
    CHECK(b.st);
    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    assert_int_equal(
        chat_store_msg_read(a.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &ma), 3);
    assert_int_equal(
        chat_store_msg_read(b.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &mb), 3);
    same_msgs(&ma, &mb);
    assert_int_equal(chat_store_conv_get(b.st, &p.alice, p.a2, &ci), CHAT_OK);
    assert_int_equal(ci.flags, CHAT_CONV_ARCHIVED);
    /* bob's generating conversation is copied as is; recover fixes it */
    assert_int_equal(chat_store_conv_get(b.st, &p.bob, p.b1, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_GENERATING);
    chat_store_recover(b.st, 20);
    CHECK(b.st);
    assert_int_equal(chat_store_conv_get(b.st, &p.bob, p.b1, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    ts_close(&a);
    ts_close(&b);
    chat_buf_free(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recover),
        cmocka_unit_test(test_migrate_smaller),
        cmocka_unit_test(test_migrate_larger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
