/* Unit tests: conversations (ids, owner isolation, list/latest, rename,
 * flags, delete, id reuse, table-full eviction), generation ownership, and
 * the user table (rate limit through the store, change counters,
 * replacement). */
#include "test_store_util.h"

static void test_ids(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_conv_info_t ci;
    char id[25], bad[40];
    int i;
    (void)state;

    ts_open(&t, &l, 0);
    assert_int_equal(chat_store_conv_create(t.st, &o, "llama", "My title",
                                            0x0123456789abcdefull, 1000, &ci),
                     CHAT_OK);
    /* slot 0, then the tag, lower-case hex */
    assert_string_equal(ci.id, "000000000123456789abcdef");
    assert_string_equal(ci.bot, "llama");
    assert_string_equal(ci.title, "My title");
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    assert_int_equal(ci.created_ms, 1000);
    assert_int_equal(ci.updated_ms, 1000);
    assert_int_equal(ci.nmsgs, 0);
    assert_true(ci.seq > 0);
    assert_int_equal(chat_store_conv_seq(t.st, ci.id), ci.seq);
    mkconv(t.st, &o, "llama", UINT64_MAX, 1001, id);
    assert_string_equal(id, "00000001ffffffffffffffff");
    assert_int_equal(chat_store_conv_get(t.st, &o, id, NULL), CHAT_OK);

    /* malformed ids: all "not found", never a crash */
    strcpy(bad, ci.id);
    bad[5] = 'A'; /* upper case is not canonical */
    assert_int_equal(chat_store_conv_get(t.st, &o, bad, NULL), CHAT_ENOTFOUND);
    strcpy(bad, ci.id);
    bad[23] = '\0';
    assert_int_equal(chat_store_conv_get(t.st, &o, bad, NULL), CHAT_ENOTFOUND);
    strcpy(bad, ci.id);
    strcat(bad, "0");
    assert_int_equal(chat_store_conv_get(t.st, &o, bad, NULL), CHAT_ENOTFOUND);
    strcpy(bad, ci.id);
    bad[10] = 'g';
    assert_int_equal(chat_store_conv_get(t.st, &o, bad, NULL), CHAT_ENOTFOUND);
    /* a slot beyond the table, a zero tag, a wrong tag */
    assert_int_equal(chat_store_conv_get(t.st, &o, "000000080123456789abcdef", NULL),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, "ffffffff0123456789abcdef", NULL),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, "000000000000000000000000", NULL),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, "000000000123456789abcdee", NULL),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, "", NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, NULL, NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_seq(t.st, "000000000123456789abcdee"), 0);
    assert_int_equal(chat_store_conv_seq(t.st, NULL), 0);
    for (i = 0; i < 24; i++) { /* every prefix */
        memcpy(bad, ci.id, (size_t)i);
        bad[i] = '\0';
        assert_int_equal(chat_store_conv_get(t.st, &o, bad, NULL), CHAT_ENOTFOUND);
    }

    /* argument checks */
    assert_int_equal(chat_store_conv_create(t.st, &o, "llama", NULL, 0, 0, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_conv_create(t.st, &o, "", NULL, 1, 0, NULL), CHAT_EINVAL);
    assert_int_equal(chat_store_conv_create(t.st, &o, NULL, NULL, 1, 0, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_conv_create(t.st, NULL, "llama", NULL, 1, 0, NULL),
                     CHAT_EINVAL);
    {
        char longbot[CHAT_BOT_NAME_MAX + 2];
        memset(longbot, 'b', sizeof(longbot) - 1);
        longbot[sizeof(longbot) - 1] = '\0';
        assert_int_equal(chat_store_conv_create(t.st, &o, longbot, NULL, 1, 0, NULL),
                         CHAT_EINVAL);
        longbot[CHAT_BOT_NAME_MAX] = '\0'; /* exactly the maximum is fine */
        assert_int_equal(chat_store_conv_create(t.st, &o, longbot, NULL, 7, 0, &ci),
                         CHAT_OK);
        assert_string_equal(ci.bot, longbot);
    }
    CHECK(t.st);
    ts_close(&t);
}

/* Titles longer than CHAT_TITLE_MAX are cut at a character boundary. */
static void test_title_truncation(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_conv_info_t ci;
    char title[300];
    (void)state;

    ts_open(&t, &l, 0);
    memset(title, 'a', 127);
    memcpy(title + 127, "\xc3\xa9xyz", 6); /* U+00E9 across the limit */
    assert_int_equal(chat_store_conv_create(t.st, &o, "b", title, 1, 0, &ci), CHAT_OK);
    assert_int_equal(strlen(ci.title), 127);
    memset(title, 'a', 126);
    memcpy(title + 126, "\xc3\xa9xyz", 6);
    assert_int_equal(chat_store_conv_rename(t.st, &o, ci.id, title, 1), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, ci.id, &ci), CHAT_OK);
    assert_int_equal(strlen(ci.title), 128);
    assert_memory_equal(ci.title + 126, "\xc3\xa9", 2);
    /* a 4-byte character straddling the limit */
    memset(title, 'a', 126);
    memcpy(title + 126, "\xf0\x9f\x98\x80", 5);
    assert_int_equal(chat_store_conv_rename(t.st, &o, ci.id, title, 2), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, ci.id, &ci), CHAT_OK);
    assert_int_equal(strlen(ci.title), 126);
    assert_int_equal(chat_store_conv_rename(t.st, &o, ci.id, NULL, 3), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, ci.id, &ci), CHAT_OK);
    assert_string_equal(ci.title, "");
    CHECK(t.st);
    ts_close(&t);
}

/* A title is kept to one line: control characters (line breaks, tab, ESC,
 * DEL, C1) become spaces, on create and rename; everything else, other
 * scripts and the UTF-8 of every other character included, is kept. */
static void test_title_one_line(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_conv_info_t ci;
    (void)state;

    ts_open(&t, &l, 0);
    assert_int_equal(chat_store_conv_create(t.st, &o, "b", "a\nb\r\tc", 1, 0, &ci),
                     CHAT_OK);
    assert_string_equal(ci.title, "a b  c");
    assert_int_equal(chat_store_conv_rename(t.st, &o, ci.id,
                                            "\x1b[31mred\x7f \xc2\x85nel \xc2\xa0nbsp "
                                            "\xc3\xa9\xe2\x80\xae\xf0\x9f\x98\x80",
                                            1),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, ci.id, &ci), CHAT_OK);
    assert_string_equal(ci.title, " [31mred    nel \xc2\xa0nbsp "
                                  "\xc3\xa9\xe2\x80\xae\xf0\x9f\x98\x80");
    CHECK(t.st);
    ts_close(&t);
}

static void count_cb(void *baton, const chat_msg_info_t *info, const char *text,
                     size_t len)
{
    (void)info;
    (void)text;
    (void)len;
    (*(int *)baton)++;
}

/* Strict isolation: every function, called by another owner with a valid
 * id, answers exactly as for a missing id and changes nothing. */
static void test_isolation(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t alice = owner_of("u:alice"), mallory = owner_of("u:mallory");
    chat_conv_info_t before, after;
    chat_msg_info_t mi;
    chat_buf_t buf;
    convs_t cv;
    char id[25];
    const char *missing = "00000007aaaaaaaaaaaaaaaa";
    const char *ids[2];
    int k, n = 0;
    uint32_t idx;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &alice, "llama", 0xA11CE, 100, id);
    assert_int_equal(chat_store_msg_append(t.st, &alice, id, CHAT_ROLE_USER, 0, "secret",
                                           6, 101, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &before), CHAT_OK);
    ids[0] = id;
    ids[1] = missing;

    for (k = 0; k < 2; k++) {
        const char *x = ids[k];
        assert_int_equal(chat_store_conv_get(t.st, &mallory, x, &after), CHAT_ENOTFOUND);
        assert_int_equal(chat_store_conv_rename(t.st, &mallory, x, "pwned", 200),
                         CHAT_ENOTFOUND);
        assert_int_equal(
            chat_store_conv_flags(t.st, &mallory, x, CHAT_CONV_ARCHIVED, 0, 200),
            CHAT_ENOTFOUND);
        assert_int_equal(chat_store_conv_delete(t.st, &mallory, x), CHAT_ENOTFOUND);
        assert_int_equal(
            chat_store_gen_begin(t.st, &mallory, x, 5, CHAT_CONV_GENERATING, 200),
            CHAT_ENOTFOUND);
        assert_int_equal(chat_store_gen_request_stop(t.st, &mallory, x), CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_append(t.st, &mallory, x, CHAT_ROLE_USER, 0, "x",
                                               1, 200, &idx),
                         CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_extend(t.st, &mallory, x, "x", 1, 200),
                         CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_flags(t.st, &mallory, x, CHAT_MSG_ERROR, 0, 200),
                         CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_truncate(t.st, &mallory, x, 0, 200),
                         CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_read(t.st, &mallory, x, 0, 0, &buf, count_cb, &n),
                         CHAT_ENOTFOUND);
        assert_int_equal(
            chat_store_msg_tail(t.st, &mallory, x, 10, 1000, &buf, count_cb, &n),
            CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_get(t.st, &mallory, x, 0, 0, &buf, &mi),
                         CHAT_ENOTFOUND);
        /* and a NULL owner is nobody */
        assert_int_equal(chat_store_conv_get(t.st, NULL, x, NULL), CHAT_ENOTFOUND);
        assert_int_equal(chat_store_msg_read(t.st, NULL, x, 0, 0, &buf, count_cb, &n),
                         CHAT_ENOTFOUND);
        assert_int_equal(chat_store_conv_delete(t.st, NULL, x), CHAT_ENOTFOUND);
    }
    assert_int_equal(n, 0);
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &mallory, NULL, -1, collect_conv, &cv),
                     0);
    assert_int_equal(chat_store_conv_list(t.st, NULL, NULL, -1, collect_conv, &cv), 0);
    assert_int_equal(chat_store_conv_latest(t.st, &mallory, "llama", &after),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_latest(t.st, &mallory, NULL, &after),
                     CHAT_ENOTFOUND);
    assert_int_equal(cv.n, 0);

    /* nothing changed for alice */
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &after), CHAT_OK);
    assert_int_equal(after.seq, before.seq);
    assert_int_equal(after.updated_ms, before.updated_ms);
    assert_string_equal(after.title, "");
    assert_int_equal(after.flags, 0);
    assert_int_equal(after.nmsgs, 1);
    assert_int_equal(after.state, CHAT_CONV_IDLE);
    assert_int_equal(after.stop_requested, 0);
    assert_int_equal(chat_store_msg_get(t.st, &alice, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_string_equal(buf.data, "secret");
    assert_int_equal(mi.flags, 0);

    /* token-based calls: the token is the capability */
    assert_int_equal(
        chat_store_gen_begin(t.st, &alice, id, 42, CHAT_CONV_GENERATING, 300), CHAT_OK);
    assert_int_equal(chat_store_gen_state(t.st, id, 43, CHAT_CONV_QUEUED, 1),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_end(t.st, id, 43, 301), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_end(t.st, id, 0, 301), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_request_stop(t.st, &mallory, id), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 42), 0);
    assert_int_equal(chat_store_gen_end(t.st, id, 42, 302), CHAT_OK);

    /* the owners' change counters are separate */
    chat_store_user_bump(t.st, &alice);
    assert_int_equal(chat_store_user_seq(t.st, &mallory), 0);
    assert_true(chat_store_user_seq(t.st, &alice) > 0);
    CHECK(t.st);
    ts_close(&t);
    chat_buf_free(&buf);
}

static void test_list_latest(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice"), p = owner_of("u:bob");
    chat_conv_info_t ci;
    convs_t cv;
    char a[25], b[25], c[25], d[25], e[25];
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, a);
    mkconv(t.st, &o, "qwen", 2, 110, b);
    mkconv(t.st, &p, "llama", 3, 120, e); /* another owner, interleaved */
    mkconv(t.st, &o, "llama", 4, 130, c);
    mkconv(t.st, &o, "llama", 5, 140, d);
    /* touch a: it becomes the most recent */
    assert_int_equal(
        chat_store_msg_append(t.st, &o, a, CHAT_ROLE_USER, 0, "hi", 2, 150, NULL),
        CHAT_OK);
    assert_int_equal(chat_store_conv_flags(t.st, &o, d, CHAT_CONV_ARCHIVED, 0, 160),
                     CHAT_OK);

    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &o, NULL, -1, collect_conv, &cv), 4);
    assert_string_equal(cv.c[0].id, d); /* archived at 160 */
    assert_string_equal(cv.c[1].id, a);
    assert_string_equal(cv.c[2].id, c);
    assert_string_equal(cv.c[3].id, b);
    assert_int_equal(cv.c[0].updated_ms, 160);
    assert_int_equal(cv.c[1].updated_ms, 150);
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &o, NULL, 0, collect_conv, &cv), 3);
    assert_string_equal(cv.c[0].id, a);
    assert_string_equal(cv.c[1].id, c);
    assert_string_equal(cv.c[2].id, b);
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &o, NULL, 1, collect_conv, &cv), 1);
    assert_string_equal(cv.c[0].id, d);
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &o, "llama", 0, collect_conv, &cv), 2);
    assert_string_equal(cv.c[0].id, a);
    assert_string_equal(cv.c[1].id, c);
    assert_int_equal(chat_store_conv_list(t.st, &o, "llama", -1, NULL, NULL), 3);
    assert_int_equal(chat_store_conv_list(t.st, &o, "nope", -1, NULL, NULL), 0);
    assert_int_equal(chat_store_conv_list(t.st, &p, NULL, -1, NULL, NULL), 1);

    /* latest: non-archived, by bot */
    assert_int_equal(chat_store_conv_latest(t.st, &o, "llama", &ci), CHAT_OK);
    assert_string_equal(ci.id, a);
    assert_int_equal(chat_store_conv_latest(t.st, &o, "qwen", &ci), CHAT_OK);
    assert_string_equal(ci.id, b);
    assert_int_equal(chat_store_conv_latest(t.st, &o, "nope", &ci), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_flags(t.st, &o, a, CHAT_CONV_ARCHIVED, 0, 170),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_latest(t.st, &o, "llama", &ci), CHAT_OK);
    assert_string_equal(ci.id, c);
    /* flags: set then clear; unknown bits refused */
    assert_int_equal(
        chat_store_conv_flags(t.st, &o, a, CHAT_CONV_STOPPED, CHAT_CONV_ARCHIVED, 180),
        CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, a, &ci), CHAT_OK);
    assert_int_equal(ci.flags, CHAT_CONV_STOPPED);
    assert_int_equal(chat_store_conv_flags(t.st, &o, a, 0x100, 0, 190), CHAT_EINVAL);
    assert_int_equal(chat_store_conv_flags(t.st, &o, a, 0, 0x100, 190), CHAT_EINVAL);
    /* rename bumps seq and the LRU */
    assert_int_equal(chat_store_conv_rename(t.st, &o, b, "renamed", 200), CHAT_OK);
    memset(&cv, 0, sizeof(cv));
    assert_int_equal(chat_store_conv_list(t.st, &o, NULL, -1, collect_conv, &cv), 4);
    assert_string_equal(cv.c[0].id, b);
    assert_string_equal(cv.c[0].title, "renamed");
    CHECK(t.st);
    ts_close(&t);
}

/* A deleted or evicted id stays dead even when its slot is reused. */
static void test_id_reuse(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    char a[25], b[25];
    uint64_t seq;
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 0x1111, 100, a);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, a, CHAT_ROLE_USER, 0, "hi", 2, 101, NULL),
        CHAT_OK);
    seq = chat_store_conv_seq(t.st, a);
    assert_true(seq > 0);
    assert_int_equal(chat_store_conv_delete(t.st, &o, a), CHAT_OK);
    CHECK(t.st);
    assert_int_equal(chat_store_conv_get(t.st, &o, a, NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_seq(t.st, a), 0);
    assert_int_equal(chat_store_conv_delete(t.st, &o, a), CHAT_ENOTFOUND);
    /* the slot is reused with a new tag */
    mkconv(t.st, &o, "llama", 0x2222, 102, b);
    assert_memory_equal(a, b, 8);
    assert_string_not_equal(a, b);
    assert_int_equal(chat_store_conv_get(t.st, &o, a, NULL), CHAT_ENOTFOUND);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, a, CHAT_ROLE_USER, 0, "x", 1, 103, NULL),
        CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, b, NULL), CHAT_OK);
    assert_true(chat_store_conv_seq(t.st, b) > seq);
    CHECK(t.st);
    ts_close(&t);
}

/* Table full: the least recently updated IDLE conversation of any owner is
 * evicted (logged, counted); never a QUEUED/GENERATING one. */
static void test_table_eviction(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice"), p = owner_of("u:bob");
    char ids[8][25], x[25], y[25];
    chat_metrics_snapshot_t snap;
    logs_t lg;
    uint64_t bob_seq;
    int i;
    (void)state;

    memset(&lg, 0, sizeof(lg));
    chat_log_set(catch_log, &lg);
    ts_open(&t, &l, 0);
    for (i = 0; i < 8; i++) {
        mkconv(t.st, i == 0 ? &p : &o, "llama", 0x100 + (uint64_t)i, 100 + (uint64_t)i,
               ids[i]);
    }
    assert_int_equal(chat_store_msg_append(t.st, &p, ids[0], CHAT_ROLE_USER, 0,
                                           "private words", 13, 108, NULL),
                     CHAT_OK);
    /* ids[1] and ids[2] are busy, ids[3] is now the oldest idle one after
     * ids[0] was touched */
    assert_int_equal(chat_store_gen_begin(t.st, &o, ids[1], 11, CHAT_CONV_QUEUED, 50),
                     CHAT_OK);
    assert_int_equal(chat_store_gen_begin(t.st, &o, ids[2], 12, CHAT_CONV_GENERATING, 51),
                     CHAT_OK);
    chat_store_user_bump(t.st, &p);
    bob_seq = chat_store_user_seq(t.st, &p);
    /* the busy ones were touched last but are skipped anyway: make them
     * the least recently updated by touching everything else */
    for (i = 3; i < 8; i++) {
        assert_int_equal(chat_store_conv_rename(t.st, &o, ids[i], "t", 200 + (uint64_t)i),
                         CHAT_OK);
    }
    /* LRU order now (oldest first): 0 (bob's, 108), 3..7 (alice's, 203..207);
     * 1 and 2 are busy. Alice holds 7 and would hold 8: bob, holding one,
     * holds less than she will, so her own least recently used idle
     * conversation goes, never his. */
    mkconv(t.st, &o, "llama", 0x900, 300, x);
    assert_int_equal(chat_store_conv_get(t.st, &p, ids[0], NULL), CHAT_OK);
    assert_int_equal(chat_store_user_seq(t.st, &p), bob_seq); /* his list is untouched */
    assert_int_equal(chat_store_conv_get(t.st, &o, ids[3], NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, ids[1], NULL), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, ids[2], NULL), CHAT_OK);
    mkconv(t.st, &o, "llama", 0x901, 301, y);
    assert_int_equal(chat_store_conv_get(t.st, &o, ids[4], NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &p, ids[0], NULL), CHAT_OK);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 2);
    assert_int_equal(snap.conversations, 8);
    /* logged at NOTICE with the id and bot, never the content */
    assert_int_equal(lg.n, 2);
    assert_int_equal(lg.level[0], CHAT_LOG_NOTICE);
    assert_non_null(strstr(lg.msg[0], ids[3]));
    assert_non_null(strstr(lg.msg[0], "llama"));
    assert_null(strstr(lg.msg[0], "private"));
    assert_non_null(strstr(lg.msg[1], ids[4]));

    /* bob, holding fewer than alice, may take her least recently used idle
     * conversation (5, 205) */
    {
        char z[25];
        mkconv(t.st, &p, "llama", 0x902, 302, z);
        assert_int_equal(chat_store_conv_get(t.st, &o, ids[5], NULL), CHAT_ENOTFOUND);
        assert_int_equal(chat_store_conv_delete(t.st, &p, z), CHAT_OK);
    }

    /* everything of alice's busy, bob's one protected: EFULL, nothing
     * evicted */
    for (i = 6; i < 8; i++) {
        assert_int_equal(chat_store_gen_begin(t.st, &o, ids[i], 20 + (uint64_t)i,
                                              CHAT_CONV_GENERATING, 400),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_gen_begin(t.st, &o, x, 30, CHAT_CONV_QUEUED, 400),
                     CHAT_OK);
    assert_int_equal(chat_store_gen_begin(t.st, &o, y, 31, CHAT_CONV_QUEUED, 400),
                     CHAT_OK);
    {
        char z[25];
        mkconv(t.st, &o, "llama", 0x903, 402, z); /* the slot bob freed */
        assert_int_equal(chat_store_gen_begin(t.st, &o, z, 32, CHAT_CONV_QUEUED, 403),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_conv_create(t.st, &o, "llama", NULL, 0x999, 500, NULL),
                     CHAT_EFULL);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 3);
    assert_int_equal(snap.conversations, 8);
    assert_int_equal(chat_store_conv_get(t.st, &p, ids[0], NULL), CHAT_OK);
    /* one finishes: its slot can be taken */
    assert_int_equal(chat_store_gen_end(t.st, x, 30, 600), CHAT_OK);
    assert_int_equal(chat_store_conv_create(t.st, &o, "llama", NULL, 0x999, 601, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, x, NULL), CHAT_ENOTFOUND);
    CHECK(t.st);
    chat_log_set(NULL, NULL);
    ts_close(&t);
}

static void test_generation(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_conv_info_t ci;
    char id[25];
    uint64_t s0, s1;
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    /* idle: stop requests are accepted and ignored; a non-holder stops */
    assert_int_equal(chat_store_gen_request_stop(t.st, &o, id), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.stop_requested, 0);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 7), 1);
    /* argument checks */
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 0, CHAT_CONV_QUEUED, 101),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 7, CHAT_CONV_IDLE, 101),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 7, 9, 101), CHAT_EINVAL);

    s0 = chat_store_conv_seq(t.st, id);
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 7, CHAT_CONV_QUEUED, 101),
                     CHAT_OK);
    s1 = chat_store_conv_seq(t.st, id);
    assert_true(s1 > s0);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_QUEUED);
    assert_int_equal(ci.gen_token, 7);
    assert_int_equal(ci.updated_ms, 101);
    /* someone else: busy; the holder again: fine */
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 8, CHAT_CONV_GENERATING, 102),
                     CHAT_EBUSY);
    assert_int_equal(chat_store_gen_state(t.st, id, 7, CHAT_CONV_QUEUED, 3), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.queue_position, 3);
    assert_true(chat_store_conv_seq(t.st, id) > s1);
    assert_int_equal(chat_store_gen_state(t.st, id, 7, CHAT_CONV_IDLE, 0), CHAT_EINVAL);
    assert_int_equal(chat_store_gen_state(t.st, id, 7, CHAT_CONV_GENERATING, 5), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_GENERATING);
    assert_int_equal(ci.queue_position, 0);
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 7, CHAT_CONV_GENERATING, 103),
                     CHAT_OK);
    /* cannot delete while generating */
    assert_int_equal(chat_store_conv_delete(t.st, &o, id), CHAT_EBUSY);
    /* stop from another connection of the same owner */
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 7), 0);
    assert_int_equal(chat_store_gen_request_stop(t.st, &o, id), CHAT_OK);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 7), 1);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 8), 1);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.stop_requested, 1);
    CHECK(t.st);
    /* end: only the holder */
    assert_int_equal(chat_store_gen_end(t.st, id, 8, 104), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_end(t.st, id, 7, 105), CHAT_OK);
    assert_int_equal(chat_store_gen_end(t.st, id, 7, 106), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_gen_state(t.st, id, 7, CHAT_CONV_QUEUED, 1),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    assert_int_equal(ci.gen_token, 0);
    assert_int_equal(ci.stop_requested, 0);
    assert_int_equal(ci.updated_ms, 105);
    /* a new generation starts without the old stop request */
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 9, CHAT_CONV_GENERATING, 107),
                     CHAT_OK);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 9), 0);
    assert_int_equal(chat_store_gen_end(t.st, id, 9, 108), CHAT_OK);
    assert_int_equal(chat_store_conv_delete(t.st, &o, id), CHAT_OK);
    assert_int_equal(chat_store_gen_stop_requested(t.st, id, 9), 1);
    assert_int_equal(chat_store_gen_state(t.st, id, 9, CHAT_CONV_QUEUED, 1),
                     CHAT_ENOTFOUND);
    CHECK(t.st);
    ts_close(&t);
}

static void test_user_seq(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice"), p = owner_of("s:cookie");
    uint64_t a0, a1, b0;
    (void)state;

    ts_open(&t, &l, 0);
    assert_int_equal(chat_store_user_seq(t.st, &o), 0);
    assert_int_equal(chat_store_events(t.st), 0);
    chat_store_user_bump(t.st, &o);
    a0 = chat_store_user_seq(t.st, &o);
    assert_true(a0 > 0);
    /* the global event counter follows every user's bump */
    assert_int_equal(chat_store_events(t.st), a0);
    chat_store_user_bump(t.st, &p);
    b0 = chat_store_user_seq(t.st, &p);
    assert_true(b0 > a0);
    assert_int_equal(chat_store_events(t.st), b0);
    assert_int_equal(chat_store_user_seq(t.st, &o), a0);
    chat_store_user_bump(t.st, &o);
    a1 = chat_store_user_seq(t.st, &o);
    assert_true(a1 > a0);
    /* owner keys: SHA-1 of the identity string */
    {
        chat_owner_t x;
        char hex[41];
        chat_owner_from(&x, "u:alice", 7);
        chat_hex(x.b, 20, hex);
        assert_memory_equal(x.b, o.b, 20);
        chat_owner_from(&x, "abc", 3);
        chat_hex(x.b, 20, hex);
        assert_string_equal(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
    CHECK(t.st);
    ts_close(&t);
}

/* Rate limits through the store, per user, exact. */
static void test_rate_take(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice"), p = owner_of("u:bob");
    chat_rate_t r = {10, 60000, 10}, unlimited = {0, 60000, 0};
    int64_t retry;
    int i;
    (void)state;

    ts_open(&t, &l, 0);
    for (i = 0; i < 10; i++) {
        assert_int_equal(chat_store_rate_take(t.st, &o, &r, 5000, &retry), CHAT_OK);
    }
    assert_int_equal(chat_store_rate_take(t.st, &o, &r, 5000, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 6000);
    /* bob has his own bucket */
    assert_int_equal(chat_store_rate_take(t.st, &p, &r, 5000, &retry), CHAT_OK);
    assert_int_equal(chat_store_rate_take(t.st, &o, &r, 10999, &retry), CHAT_ELIMIT);
    assert_int_equal(retry, 1);
    assert_int_equal(chat_store_rate_take(t.st, &o, &r, 11000, &retry), CHAT_OK);
    assert_int_equal(chat_store_rate_take(t.st, &o, &r, 11000, &retry), CHAT_ELIMIT);
    /* unlimited never refuses */
    for (i = 0; i < 100; i++) {
        assert_int_equal(chat_store_rate_take(t.st, &o, &unlimited, 11000, &retry),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_rate_take(t.st, NULL, &r, 0, &retry), CHAT_EINVAL);
    assert_int_equal(chat_store_rate_take(t.st, &o, NULL, 0, &retry), CHAT_EINVAL);
    CHECK(t.st);
    ts_close(&t);
}

/* Users beyond the table replace the least recently seen in the window. */
static void test_user_replacement(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_rate_t r = {1, 60000, 1};
    chat_owner_t u[9];
    int64_t retry;
    int i;
    chat_metrics_snapshot_t snap;
    (void)state;

    l.max_users = 8; /* the window covers the whole table */
    ts_open(&t, &l, 0);
    for (i = 0; i < 9; i++) {
        char name[16];
        snprintf(name, sizeof(name), "u:user%d", i);
        u[i] = owner_of(name);
    }
    /* 8 users take their only token at t = 100 + i; user 3 is seen again */
    for (i = 0; i < 8; i++) {
        assert_int_equal(chat_store_rate_take(t.st, &u[i], &r, 100 + (uint64_t)i, &retry),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_rate_take(t.st, &u[0], &r, 200, &retry), CHAT_ELIMIT);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.users, 8);
    /* a 9th user replaces user 1, the least recently seen (101) */
    assert_int_equal(chat_store_rate_take(t.st, &u[8], &r, 300, &retry), CHAT_OK);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.users, 8);
    CHECK(t.st);
    /* user 1 comes back with a fresh (full) bucket; the others kept theirs */
    assert_int_equal(chat_store_rate_take(t.st, &u[2], &r, 301, &retry), CHAT_ELIMIT);
    assert_int_equal(chat_store_rate_take(t.st, &u[0], &r, 301, &retry), CHAT_ELIMIT);
    assert_int_equal(chat_store_rate_take(t.st, &u[8], &r, 301, &retry), CHAT_ELIMIT);
    /* (u[1] now replaces the least recently seen: u[3], at 103) */
    assert_int_equal(chat_store_rate_take(t.st, &u[1], &r, 302, &retry), CHAT_OK);
    assert_int_equal(chat_store_rate_take(t.st, &u[3], &r, 303, &retry), CHAT_OK);
    CHECK(t.st);
    ts_close(&t);
}

/* chat_store_turn_start_bot: a start for a conversation the caller knew
 * from an earlier turn, checked as it starts (the generic look-up on shm):
 * gone, another owner's or another bot's changes nothing. */
static void test_turn_start_bot(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice"), m = owner_of("u:mallory");
    chat_conv_info_t ci;
    chat_turn_acquire_t acq = {.backend = 0, .ticket = 5, .now_ms = 101};
    uint32_t idx = 99;
    char id[25];
    uint64_t s0;
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    s0 = chat_store_conv_seq(t.st, id);
    assert_int_equal(chat_store_turn_start_bot(t.st, &o, id, "mistral", 7,
                                               CHAT_CONV_QUEUED, "hi", 2, 0, 101, &idx,
                                               &acq),
                     CHAT_ESTALE);
    assert_int_equal(acq.tried, 0);
    assert_int_equal(chat_store_turn_start_bot(t.st, &m, id, "llama", 7, CHAT_CONV_QUEUED,
                                               "hi", 2, 0, 101, &idx, NULL),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_turn_start_bot(t.st, &o, id, NULL, 7, CHAT_CONV_QUEUED,
                                               "hi", 2, 0, 101, &idx, NULL),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_conv_seq(t.st, id), s0);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_IDLE);
    assert_int_equal(ci.nmsgs, 0);
    assert_int_equal(idx, 99);
    /* its own bot: the turn starts as chat_store_turn_start_acquire's */
    assert_int_equal(chat_store_turn_start_bot(t.st, &o, id, "llama", 7, CHAT_CONV_QUEUED,
                                               "hi", 2, 0, 102, &idx, &acq),
                     CHAT_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.state, CHAT_CONV_QUEUED);
    assert_int_equal(ci.gen_token, 7);
    assert_int_equal(ci.nmsgs, 1);
    /* generating already: busy, as the start without the check */
    assert_int_equal(chat_store_turn_start_bot(t.st, &o, id, "llama", 8, CHAT_CONV_QUEUED,
                                               "again", 5, 0, 103, &idx, NULL),
                     CHAT_EBUSY);
    assert_int_equal(chat_store_gen_end(t.st, id, 7, 104), CHAT_OK);
    /* deleted: not found */
    assert_int_equal(chat_store_conv_delete(t.st, &o, id), CHAT_OK);
    assert_int_equal(chat_store_turn_start_bot(t.st, &o, id, "llama", 9, CHAT_CONV_QUEUED,
                                               "hi", 2, 0, 105, &idx, NULL),
                     CHAT_ENOTFOUND);
    CHECK(t.st);
    ts_close(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_title_truncation),
        cmocka_unit_test(test_title_one_line),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_list_latest),
        cmocka_unit_test(test_id_reuse),
        cmocka_unit_test(test_table_eviction),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_turn_start_bot),
        cmocka_unit_test(test_user_seq),
        cmocka_unit_test(test_rate_take),
        cmocka_unit_test(test_user_replacement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
