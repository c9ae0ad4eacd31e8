/* Unit tests: messages in the text arena - sizes across block boundaries,
 * streaming extend, resume reads at every offset, the per-conversation
 * cap, arena exhaustion and LRU eviction, context tails, ranges,
 * truncation and flags. */
#include "test_store_util.h"

static void pattern(char *p, size_t n, unsigned seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = (char)('a' + (i * 7 + seed) % 26);
    }
}

static chat_store_layout_t msg_layout(uint32_t blocks, uint32_t max_msgs,
                                      uint32_t max_bytes)
{
    chat_store_layout_t l = small_layout();
    l.history_bytes = (uint64_t)blocks * 256;
    l.max_messages = max_msgs;
    l.max_message_bytes = max_bytes;
    return l;
}

static void test_sizes(void **state)
{
    static const size_t sizes[] = {0,   1,   215, 216, 217,  463, 464,
                                   465, 711, 712, 713, 2000, 4096};
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_msg_info_t mi;
    chat_buf_t buf;
    char id[25], want[4096];
    uint32_t idx;
    size_t i;
    uint64_t total = 0;
    chat_conv_info_t ci;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pattern(want, sizes[i], (unsigned)i);
        assert_int_equal(chat_store_msg_append(t.st, &o, id, (chat_role_t)(i % 4), 0,
                                               want, sizes[i], 1000 + i, &idx),
                         CHAT_OK);
        assert_int_equal(idx, i);
        total += sizes[i];
        CHECK(t.st);
    }
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        pattern(want, sizes[i], (unsigned)i);
        assert_int_equal(chat_store_msg_get(t.st, &o, id, (uint32_t)i, 0, &buf, &mi),
                         CHAT_OK);
        assert_int_equal(mi.len, sizes[i]);
        assert_int_equal(buf.len, sizes[i]);
        assert_int_equal(mi.index, i);
        assert_int_equal(mi.role, (chat_role_t)(i % 4));
        assert_int_equal(mi.ts_ms, 1000 + i);
        assert_memory_equal(buf.data, want, sizes[i]);
        assert_int_equal(buf.data[buf.len], '\0');
    }
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.bytes, total);
    assert_int_equal(ci.nmsgs, 13);
    assert_int_equal(ci.updated_ms, 1012);
    ts_close(&t);
    chat_buf_free(&buf);
}

/* An answer streamed a byte at a time and in odd chunks, across many
 * block boundaries, reads back intact; resume works from every offset. */
static void test_extend_streaming(void **state)
{
    chat_store_layout_t l = msg_layout(64, 16, 4096);
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_msg_info_t mi;
    chat_buf_t buf;
    char id[25], want[4096];
    size_t n, off, step = 1;
    uint64_t seq;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, "x", 1, 101), CHAT_EINVAL);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, "q", 1, 101, NULL),
        CHAT_OK);
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT,
                                           CHAT_MSG_STREAMING, NULL, 0, 102, NULL),
                     CHAT_OK);
    pattern(want, sizeof(want), 3);
    for (n = 0; n < 1500; n++) { /* byte by byte over 7 block boundaries */
        seq = chat_store_conv_seq(t.st, id);
        assert_int_equal(chat_store_msg_extend(t.st, &o, id, want + n, 1, 200 + n),
                         CHAT_OK);
        assert_true(chat_store_conv_seq(t.st, id) > seq);
        if (n % 97 == 0) {
            CHECK(t.st);
        }
    }
    while (n < sizeof(want)) { /* chunks of 1..300 bytes */
        size_t k = step < sizeof(want) - n ? step : sizeof(want) - n;
        assert_int_equal(chat_store_msg_extend(t.st, &o, id, want + n, k, 2000), CHAT_OK);
        n += k;
        step = (step * 13 + 5) % 300 + 1;
        CHECK(t.st);
    }
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, NULL, 0, 3000), CHAT_OK);
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, NULL, 1, 3000), CHAT_EINVAL);
    /* at max_message_bytes: one more byte is refused, nothing appended */
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, "x", 1, 3000), CHAT_ETOOBIG);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 1, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(mi.len, sizeof(want));
    assert_int_equal(mi.flags, CHAT_MSG_STREAMING);
    assert_memory_equal(buf.data, want, sizeof(want));
    /* resume from every offset */
    for (off = 0; off <= sizeof(want); off++) {
        assert_int_equal(chat_store_msg_get(t.st, &o, id, 1, off, &buf, &mi), CHAT_OK);
        assert_int_equal(buf.len, sizeof(want) - off);
        assert_memory_equal(buf.data, want + off, sizeof(want) - off);
        assert_int_equal(buf.data[buf.len], '\0');
    }
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 1, sizeof(want) + 1, &buf, &mi),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 2, 0, &buf, &mi), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_string_equal(buf.data, "q");
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 1, NULL, &mi), CHAT_OK);
    /* the flags of the last message */
    assert_int_equal(
        chat_store_msg_flags(t.st, &o, id, CHAT_MSG_COMPLETE, CHAT_MSG_STREAMING, 3001),
        CHAT_OK);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 1, 0, NULL, &mi), CHAT_OK);
    assert_int_equal(mi.flags, CHAT_MSG_COMPLETE);
    assert_int_equal(chat_store_msg_flags(t.st, &o, id, 0x40, 0, 3002), CHAT_EINVAL);
    CHECK(t.st);
    ts_close(&t);
    chat_buf_free(&buf);
}

static void test_append_args(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_conv_info_t ci;
    char id[25], big[4097];
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    memset(big, 'x', sizeof(big));
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, (chat_role_t)4, 0, "x", 1, 1, NULL),
        CHAT_EINVAL);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0x40, "x", 1, 1, NULL),
        CHAT_EINVAL);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, NULL, 1, 1, NULL),
        CHAT_EINVAL);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big, 4097, 1, NULL),
        CHAT_ETOOBIG);
    assert_int_equal(chat_store_msg_flags(t.st, &o, id, CHAT_MSG_ERROR, 0, 1),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 0);
    assert_int_equal(ci.updated_ms, 100);
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, CHAT_MSG_COMMAND,
                                           big, 4096, 1, NULL),
                     CHAT_OK);
    /* extending past the limit is refused whole */
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, "x", 1, 2), CHAT_ETOOBIG);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.bytes, 4096);
    CHECK(t.st);
    ts_close(&t);
}

/* max_messages: the oldest is dropped, indexes stay 0-based positions. */
static void test_message_cap(void **state)
{
    chat_store_layout_t l = msg_layout(64, 4, 4096);
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_buf_t buf;
    msgs_t ms;
    char id[25], txt[8];
    uint32_t idx, i;
    chat_metrics_snapshot_t snap;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    for (i = 0; i < 10; i++) {
        snprintf(txt, sizeof(txt), "m%u", i);
        assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, txt,
                                               strlen(txt), 200 + i, &idx),
                         CHAT_OK);
        assert_int_equal(idx, i < 4 ? i : 3);
        CHECK(t.st);
    }
    memset(&ms, 0, sizeof(ms));
    assert_int_equal(chat_store_msg_read(t.st, &o, id, 0, 0, &buf, collect_msg, &ms), 4);
    for (i = 0; i < 4; i++) {
        snprintf(txt, sizeof(txt), "m%u", i + 6);
        assert_string_equal(ms.text[i], txt);
        assert_int_equal(ms.info[i].index, i);
        assert_int_equal(ms.info[i].ts_ms, 206 + i);
    }
    /* the arena holds exactly the 4 messages */
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.arena_used, 4 * 256);
    assert_int_equal(snap.arena_size, 64 * 256);
    ts_close(&t);
    chat_buf_free(&buf);
}

/* A failing append loses nothing, not even to the message cap. */
static void test_cap_no_loss(void **state)
{
    chat_store_layout_t l = msg_layout(16, 2, 4096);
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_buf_t buf;
    chat_msg_info_t mi;
    chat_conv_info_t ci;
    static char big[4096];
    char id[25];
    uint32_t idx;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    memset(big, 'b', sizeof(big));
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, "m0", 2, 101, NULL),
        CHAT_OK);
    /* 10 blocks; 5 stay free */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT, 0, big,
                                           216 + 9 * 248, 102, NULL),
                     CHAT_OK);
    /* 16 blocks: 5 free + m0 (dropped by the cap) is not enough */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big,
                                           216 + 15 * 248, 103, NULL),
                     CHAT_EFULL);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 2);
    assert_int_equal(ci.updated_ms, 102);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_string_equal(buf.data, "m0");
    CHECK(t.st);
    /* 6 blocks: the cap drops m0, which makes just enough room */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big,
                                           216 + 5 * 248, 104, &idx),
                     CHAT_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(mi.len, 216 + 9 * 248);
    CHECK(t.st);
    ts_close(&t);
    chat_buf_free(&buf);
}

/* One conversation alone fills the arena: its own oldest messages go,
 * never the last; impossible requests change nothing. */
static void test_arena_one_huge(void **state)
{
    chat_store_layout_t l = msg_layout(64, 64, 65536);
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_buf_t buf;
    chat_conv_info_t ci, ci2;
    chat_msg_info_t mi;
    static char big[65536];
    char id[25];
    uint32_t i, idx;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    pattern(big, sizeof(big), 1);
    /* 1000-byte messages take 5 blocks: 12 fit in 64 */
    for (i = 0; i < 12; i++) {
        big[0] = (char)('A' + i);
        assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big, 1000,
                                               200 + i, &idx),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 12);
    /* the 13th drops the oldest */
    big[0] = 'M';
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big, 1000, 300, &idx),
        CHAT_OK);
    assert_int_equal(idx, 11);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(buf.data[0], 'B');
    CHECK(t.st);
    /* larger than the whole arena (81 blocks > 64): EFULL, nothing dropped */
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big, 20000, 301, NULL),
        CHAT_EFULL);
    /* 60 blocks: more than free (4) + all but the last message (55) */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, big,
                                           216 + 59 * 248, 302, NULL),
                     CHAT_EFULL);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci2), CHAT_OK);
    assert_int_equal(ci2.nmsgs, ci.nmsgs);
    assert_int_equal(ci2.bytes, ci.bytes);
    CHECK(t.st);
    /* 59 blocks fit: everything but the last message goes */
    big[0] = 'Z';
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT, 0, big,
                                           216 + 58 * 248, 303, &idx),
                     CHAT_OK);
    assert_int_equal(idx, 1);
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 0, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(buf.data[0], 'M');
    assert_int_equal(chat_store_msg_get(t.st, &o, id, 1, 0, &buf, &mi), CHAT_OK);
    assert_int_equal(buf.len, 216 + 58 * 248);
    assert_memory_equal(buf.data + 1, big + 1, buf.len - 1);
    /* its parent is still the message it was appended under, now at index
     * 0 (it was counted from before the drops, and became a second root,
     * off the active path) */
    assert_int_equal(mi.parent, 0);
    assert_int_equal(chat_store_msg_tail(t.st, &o, id, 20, 1 << 20, &buf, NULL, NULL), 2);
    CHECK(t.st);
    /* streaming into the last message drops the one before it, then stops */
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, big, 248 * 5, 304), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 1);
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, big, 248, 305), CHAT_EFULL);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci2), CHAT_OK);
    assert_int_equal(ci2.bytes, ci.bytes);
    /* an empty delta is still fine */
    assert_int_equal(chat_store_msg_extend(t.st, &o, id, big, 0, 306), CHAT_OK);
    CHECK(t.st);
    ts_close(&t);
    chat_buf_free(&buf);
}

static void add_blocks(chat_store_t *st, const chat_owner_t *o, const char *id, int nmsgs,
                       uint64_t now)
{
    static char five[1000];
    int i;
    memset(five, 'p', sizeof(five));
    for (i = 0; i < nmsgs; i++) { /* 5 blocks each */
        assert_int_equal(chat_store_msg_append(st, o, id, CHAT_ROLE_USER, 0, five,
                                               sizeof(five), now + (uint64_t)i, NULL),
                         CHAT_OK);
    }
}

/* Arena full: the least recently updated idle conversations of owners that
 * hold at least as much as the writer will are evicted first (counted,
 * logged), never a busy one, never the writer; a writer holding the most
 * pays with its own oldest messages. */
static void test_arena_eviction_order(void **state)
{
    chat_store_layout_t l = msg_layout(64, 64, 65536);
    tstore_t t;
    chat_owner_t a = owner_of("u:a"), b = owner_of("u:b"), c = owner_of("u:c"),
                 d = owner_of("u:d");
    char ia[25], ib[25], ic[25], idd[25];
    chat_metrics_snapshot_t snap;
    chat_conv_info_t ci;
    logs_t lg;
    (void)state;

    memset(&lg, 0, sizeof(lg));
    chat_log_set(catch_log, &lg);
    ts_open(&t, &l, 0);
    mkconv(t.st, &a, "bot-a", 1, 100, ia);
    mkconv(t.st, &b, "bot-b", 2, 100, ib);
    mkconv(t.st, &c, "bot-c", 3, 100, ic);
    mkconv(t.st, &d, "bot-d", 4, 100, idd);
    /* b is written first, then a, then c: a is not the oldest by slot */
    add_blocks(t.st, &b, ib, 4, 200);
    add_blocks(t.st, &a, ia, 4, 300);
    add_blocks(t.st, &c, ic, 4, 400);
    assert_int_equal(chat_store_gen_begin(t.st, &c, ic, 9, CHAT_CONV_GENERATING, 150),
                     CHAT_OK);
    /* 60 used, 4 free: d needs 5 -> b goes (least recently updated) */
    add_blocks(t.st, &d, idd, 1, 500);
    assert_int_equal(chat_store_conv_get(t.st, &b, ib, NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &a, ia, NULL), CHAT_OK);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 1);
    assert_int_equal(lg.n, 1);
    assert_int_equal(lg.level[0], CHAT_LOG_NOTICE);
    assert_non_null(strstr(lg.msg[0], ib));
    assert_non_null(strstr(lg.msg[0], "bot-b"));
    assert_null(strstr(lg.msg[0], "ppp"));
    CHECK(t.st);
    /* 19 free: three more messages of d fit; the fourth would make d hold
     * 25 blocks, more than a's 20: a is protected and d gives up its own
     * oldest message instead */
    add_blocks(t.st, &d, idd, 4, 600);
    assert_int_equal(chat_store_conv_get(t.st, &a, ia, NULL), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &d, idd, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 4);
    assert_int_equal(chat_store_conv_get(t.st, &c, ic, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 4);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 1);
    assert_int_equal(snap.arena_used, 60 * 256);
    CHECK(t.st);
    /* a newcomer holding less may take from the larger ones: the least
     * recently updated idle one (a, 303) goes, not d (603) */
    {
        chat_owner_t e = owner_of("u:e");
        char ie[25];
        mkconv(t.st, &e, "bot-e", 5, 650, ie);
        add_blocks(t.st, &e, ie, 1, 660);
        assert_int_equal(chat_store_conv_get(t.st, &a, ia, NULL), CHAT_ENOTFOUND);
        assert_int_equal(chat_store_conv_get(t.st, &d, idd, NULL), CHAT_OK);
        assert_int_equal(chat_store_conv_get(t.st, &e, ie, NULL), CHAT_OK);
    }
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 2);
    assert_int_equal(snap.arena_used, 45 * 256);
    CHECK(t.st);
    /* d busy too: c, streaming and the largest, can only drop its own
     * older messages */
    assert_int_equal(chat_store_gen_begin(t.st, &d, idd, 10, CHAT_CONV_QUEUED, 800),
                     CHAT_OK);
    {
        static char chunk[248 * 40];
        memset(chunk, 'q', sizeof(chunk));
        /* 1000 + 6200 bytes need 25 more blocks: 19 free, two of its own
         * 5-block messages dropped */
        assert_int_equal(chat_store_msg_extend(t.st, &c, ic, chunk, 248 * 25, 900),
                         CHAT_OK);
        assert_int_equal(chat_store_conv_get(t.st, &c, ic, &ci), CHAT_OK);
        assert_int_equal(ci.nmsgs, 2);
        assert_int_equal(ci.bytes, 2000 + 248 * 25);
        /* 40 more: 4 free + 5 droppable is hopeless: nothing dropped */
        assert_int_equal(chat_store_msg_extend(t.st, &c, ic, chunk, 248 * 40, 901),
                         CHAT_EFULL);
        assert_int_equal(chat_store_conv_get(t.st, &c, ic, &ci), CHAT_OK);
        assert_int_equal(ci.nmsgs, 2);
        assert_int_equal(chat_store_conv_get(t.st, &d, idd, &ci), CHAT_OK);
        assert_int_equal(ci.nmsgs, 4);
    }
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 2);
    assert_int_equal(snap.arena_used, 60 * 256);
    CHECK(t.st);
    /* d finishes: still smaller than c, so c keeps paying with its own */
    assert_int_equal(chat_store_gen_end(t.st, idd, 10, 950), CHAT_OK);
    assert_int_equal(chat_store_gen_end(t.st, ic, 9, 951), CHAT_OK);
    {
        char blk[248 * 5];
        memset(blk, 'r', sizeof(blk));
        assert_int_equal(chat_store_msg_extend(t.st, &c, ic, blk, sizeof(blk), 952),
                         CHAT_OK);
    }
    assert_int_equal(chat_store_conv_get(t.st, &d, idd, NULL), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &c, ic, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 1);
    chat_metrics_snapshot(t.st, &snap);
    assert_int_equal(snap.gauges[CHAT_G_EVICTIONS], 2);
    CHECK(t.st);
    chat_log_set(NULL, NULL);
    ts_close(&t);
}

static void test_tail(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_buf_t buf;
    msgs_t ms;
    char id[25], empty[25], txt[400];
    static const size_t lens[] = {10, 100, 200, 50, 30, 300};
    static const uint32_t flags[] = {
        0, 0, CHAT_MSG_COMPLETE, CHAT_MSG_ERROR, 0, CHAT_MSG_COMPLETE};
    size_t i;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    mkconv(t.st, &o, "llama", 2, 100, empty);
    for (i = 0; i < 6; i++) {
        pattern(txt, lens[i], (unsigned)i);
        assert_int_equal(chat_store_msg_append(
                             t.st, &o, id, i % 2 ? CHAT_ROLE_USER : CHAT_ROLE_ASSISTANT,
                             flags[i], txt, lens[i], 200 + i, NULL),
                         CHAT_OK);
    }
#define TAIL(mm, mb)                                                                     \
    (memset(&ms, 0, sizeof(ms)),                                                         \
     chat_store_msg_tail(t.st, &o, id, mm, mb, &buf, collect_msg, &ms))
    /* everything but the error, oldest first, with positions */
    assert_int_equal(TAIL(10, 10000), 5);
    assert_int_equal(ms.info[0].index, 0);
    assert_int_equal(ms.info[2].index, 2);
    assert_int_equal(ms.info[3].index, 4);
    assert_int_equal(ms.info[4].index, 5);
    assert_int_equal(ms.len[4], 300);
    pattern(txt, 300, 5);
    assert_memory_equal(ms.text[4], txt, 300);
    /* max_msgs 0: no count limit */
    assert_int_equal(TAIL(0, 10000), 5);
    /* count limit: the newest 3 usable */
    assert_int_equal(TAIL(3, 10000), 3);
    assert_int_equal(ms.info[0].index, 2);
    assert_int_equal(ms.info[1].index, 4);
    assert_int_equal(ms.info[2].index, 5);
    /* byte budget: 300 + 30 fits exactly, + 200 does not */
    assert_int_equal(TAIL(10, 330), 2);
    assert_int_equal(ms.info[0].index, 4);
    assert_int_equal(TAIL(10, 329), 1);
    assert_int_equal(ms.info[0].index, 5);
    /* the newest is always included, even over budget */
    assert_int_equal(TAIL(10, 10), 1);
    assert_int_equal(ms.info[0].index, 5);
    assert_int_equal(TAIL(10, 0), 1);
    /* contiguous: the 200 stops the walk, older small ones are not taken */
    assert_int_equal(TAIL(10, 335), 2);
    /* a trailing error is skipped; the newest usable one is included */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT,
                                           CHAT_MSG_ERROR, "backend down", 12, 300, NULL),
                     CHAT_OK);
    assert_int_equal(TAIL(1, 0), 1);
    assert_int_equal(ms.info[0].index, 5);
    assert_int_equal(TAIL(2, 100000), 2);
    assert_int_equal(ms.info[0].index, 4);
    assert_int_equal(ms.info[1].index, 5);
    /* a refused command (request and refusal) is never sent to the model */
    assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER,
                                           CHAT_MSG_COMMAND | CHAT_MSG_REFUSED, "!rm x",
                                           5, 301, NULL),
                     CHAT_OK);
    assert_int_equal(
        chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT,
                              CHAT_MSG_COMMAND | CHAT_MSG_ERROR | CHAT_MSG_REFUSED,
                              "command_denied: no", 18, 302, NULL),
        CHAT_OK);
    assert_int_equal(TAIL(2, 100000), 2);
    assert_int_equal(ms.info[0].index, 4);
    assert_int_equal(ms.info[1].index, 5);
    /* empty conversation; NULL buffer */
    memset(&ms, 0, sizeof(ms));
    assert_int_equal(
        chat_store_msg_tail(t.st, &o, empty, 10, 1000, &buf, collect_msg, &ms), 0);
    assert_int_equal(chat_store_msg_tail(t.st, &o, id, 10, 1000, NULL, collect_msg, &ms),
                     CHAT_EINVAL);
#undef TAIL
    ts_close(&t);
    chat_buf_free(&buf);
}

static void test_read_ranges(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t;
    chat_owner_t o = owner_of("u:alice");
    chat_buf_t buf;
    msgs_t ms;
    char id[25], txt[8];
    uint32_t i;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    for (i = 0; i < 5; i++) {
        snprintf(txt, sizeof(txt), "m%u", i);
        assert_int_equal(
            chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, txt, 2, 200 + i, NULL),
            CHAT_OK);
    }
#define READ(s, c)                                                                       \
    (memset(&ms, 0, sizeof(ms)),                                                         \
     chat_store_msg_read(t.st, &o, id, s, c, &buf, collect_msg, &ms))
    assert_int_equal(READ(0, 0), 5);
    assert_string_equal(ms.text[4], "m4");
    assert_int_equal(READ(1, 2), 2);
    assert_string_equal(ms.text[0], "m1");
    assert_string_equal(ms.text[1], "m2");
    assert_int_equal(ms.info[1].index, 2);
    assert_int_equal(READ(3, 0), 2);
    assert_string_equal(ms.text[0], "m3");
    assert_int_equal(READ(4, 10), 1);
    assert_string_equal(ms.text[0], "m4");
    assert_int_equal(READ(5, 0), 0);
    assert_int_equal(READ(100, 1), 0);
    assert_int_equal(READ(0, UINT32_MAX), 5);
    assert_int_equal(chat_store_msg_read(t.st, &o, id, 0, 0, NULL, collect_msg, &ms),
                     CHAT_EINVAL);
    assert_int_equal(chat_store_msg_read(t.st, &o, id, 0, 0, &buf, NULL, NULL), 5);
    /* truncate keeps the first messages; appending continues cleanly */
    assert_int_equal(chat_store_msg_truncate(t.st, &o, id, 10, 300), CHAT_OK);
    assert_int_equal(READ(0, 0), 5);
    assert_int_equal(chat_store_msg_truncate(t.st, &o, id, 3, 301), CHAT_OK);
    CHECK(t.st);
    assert_int_equal(READ(0, 0), 3);
    assert_string_equal(ms.text[2], "m2");
    {
        char big[700];
        uint32_t idx;
        pattern(big, sizeof(big), 9);
        assert_int_equal(chat_store_msg_append(t.st, &o, id, CHAT_ROLE_ASSISTANT, 0, big,
                                               500, 302, &idx),
                         CHAT_OK);
        assert_int_equal(idx, 3);
        assert_int_equal(chat_store_msg_truncate(t.st, &o, id, 4, 303), CHAT_OK);
        assert_int_equal(
            chat_store_msg_append(t.st, &o, id, CHAT_ROLE_USER, 0, "tail", 4, 304, NULL),
            CHAT_OK);
        assert_int_equal(chat_store_msg_truncate(t.st, &o, id, 4, 305), CHAT_OK);
        /* last_blk was recomputed: extending continues the 500 bytes */
        assert_int_equal(chat_store_msg_extend(t.st, &o, id, big + 500, 200, 306),
                         CHAT_OK);
        CHECK(t.st);
        assert_int_equal(READ(3, 1), 1);
        assert_int_equal(ms.len[0], 700);
        assert_memory_equal(ms.text[0], big, 511);
    }
    assert_int_equal(chat_store_msg_truncate(t.st, &o, id, 0, 307), CHAT_OK);
    assert_int_equal(READ(0, 0), 0);
    CHECK(t.st);
#undef READ
    ts_close(&t);
    chat_buf_free(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_extend_streaming),
        cmocka_unit_test(test_append_args),
        cmocka_unit_test(test_message_cap),
        cmocka_unit_test(test_cap_no_loss),
        cmocka_unit_test(test_arena_one_huge),
        cmocka_unit_test(test_arena_eviction_order),
        cmocka_unit_test(test_tail),
        cmocka_unit_test(test_read_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
