/* Unit tests: store sizing, format, attach round trip (the region copied
 * byte for byte, as ChatbotHistoryFile does), attach refusing another
 * layout or a truncated image, image size from the header alone. */
#include "test_store_util.h"

static void same_conv(const chat_conv_info_t *a, const chat_conv_info_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->bot, b->bot);
    assert_string_equal(a->title, b->title);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->queue_position, b->queue_position);
    assert_int_equal(a->created_ms, b->created_ms);
    assert_int_equal(a->updated_ms, b->updated_ms);
    assert_int_equal(a->nmsgs, b->nmsgs);
    assert_int_equal(a->bytes, b->bytes);
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->gen_token, b->gen_token);
    assert_int_equal(a->stop_requested, b->stop_requested);
}

static void test_size(void **state)
{
    chat_store_layout_t l = small_layout(), b;
    size_t s0;
    (void)state;

    s0 = chat_store_size(&l);
    assert_true(s0 > 0);
    /* the arena is history_bytes rounded down to whole blocks */
    b = l;
    b.history_bytes += 255;
    assert_int_equal(chat_store_size(&b), s0);
    b.history_bytes += 1;
    assert_int_equal(chat_store_size(&b), s0 + 256);
    /* every count must be non-zero */
#define ZERO(f)                                                                          \
    do {                                                                                 \
        b = l;                                                                           \
        b.f = 0;                                                                         \
        assert_int_equal(chat_store_size(&b), 0);                                        \
    } while (0)
    ZERO(max_users);
    ZERO(max_conversations);
    ZERO(max_messages);
    ZERO(max_message_bytes);
    ZERO(history_bytes);
    ZERO(max_backends);
    ZERO(queue_cap);
    ZERO(max_active);
    ZERO(metric_series);
#undef ZERO
    /* and within the supported maxima */
    b = l;
    b.history_bytes = (uint64_t)1 << 40;
    assert_int_equal(chat_store_size(&b), 0);
    b = l;
    b.history_bytes = 4095;
    assert_int_equal(chat_store_size(&b), 0);
    b = l;
    b.max_conversations = UINT32_MAX;
    assert_int_equal(chat_store_size(&b), 0);
    b = l;
    b.max_message_bytes = UINT32_MAX;
    assert_int_equal(chat_store_size(&b), 0);
    assert_int_equal(chat_store_size(NULL), 0);

    /* the documented formula (docs/storage.md) for the default layout */
    b.max_users = 4096;
    b.max_conversations = 1024;
    b.max_messages = 200;
    b.max_message_bytes = 262144;
    b.history_bytes = 16u << 20;
    b.max_backends = 16;
    b.queue_cap = 64;
    b.max_active = 64;
    b.metric_series = 64;
    b.max_procs = 0; /* 64 */
    /* header 1616 -> 1664; 64 shards (82 locks, 65 undo logs), 64 owner
     * records per shard */
    assert_int_equal(chat_store_size(&b),
                     1664 + 82 * 128 + 65 * 8192 + 64 * 128 + 64 * 64 + 4096 * 72 +
                         64 * 64 * 48 + 1024 * 336 + 1024 * 16 + 16 * 288 + 16 * 64 * 24 +
                         16 * 64 * 24 + 64 * 640 + (16u << 20));
}

static void test_format_args(void **state)
{
    chat_store_layout_t l = small_layout();
    size_t n = chat_store_size(&l);
    uint64_t *mem = malloc(n + 8);
    chat_store_t *st = (chat_store_t *)1;
    (void)state;

    assert_int_equal(chat_store_format(&st, mem, n - 1, &l, 0), CHAT_EINVAL);
    assert_null(st);
    assert_int_equal(chat_store_format(&st, NULL, n, &l, 0), CHAT_EINVAL);
    assert_int_equal(chat_store_format(&st, (char *)mem + 1, n, &l, 0), CHAT_EINVAL);
    assert_int_equal(chat_store_format(NULL, mem, n, &l, 0), CHAT_EINVAL);
    l.max_users = 0;
    assert_int_equal(chat_store_format(&st, mem, n, &l, 0), CHAT_EINVAL);
    l = small_layout();
    assert_int_equal(chat_store_format(&st, mem, n + 8, &l, 0), CHAT_OK);
    CHECK(st);
    chat_store_detach(st);
    free(mem);
}

/* Everything written survives a byte copy + attach. */
static void test_roundtrip(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t a, b;
    pop_t p;
    convs_t la, lb;
    msgs_t ma, mb;
    chat_buf_t buf;
    chat_backend_info_t ba, bb;
    chat_series_snapshot_t sa, sb;
    chat_metrics_snapshot_t xa, xb;
    int64_t ra, rb;
    int i;
    (void)state;

    chat_buf_init(&buf);
    ts_open(&a, &l, 500);
    populate(a.st, &p);
    ts_clone(&b, &a);

    memset(&la, 0, sizeof(la));
    memset(&lb, 0, sizeof(lb));
    assert_int_equal(chat_store_conv_list(a.st, &p.alice, NULL, -1, collect_conv, &la),
                     2);
    assert_int_equal(chat_store_conv_list(b.st, &p.alice, NULL, -1, collect_conv, &lb),
                     2);
    for (i = 0; i < 2; i++) {
        same_conv(&la.c[i], &lb.c[i]);
    }
    assert_string_equal(lb.c[0].id, p.a2); /* most recently updated first */
    assert_string_equal(lb.c[1].id, p.a1);
    assert_int_equal(lb.c[0].flags, CHAT_CONV_ARCHIVED);

    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    assert_int_equal(
        chat_store_msg_read(a.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &ma), 3);
    assert_int_equal(
        chat_store_msg_read(b.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &mb), 3);
    same_msgs(&ma, &mb);
    assert_int_equal(mb.len[1], 600);
    assert_string_equal(mb.text[0], "hello");

    /* bob's conversation is still generating (until recover) */
    assert_int_equal(chat_store_conv_get(b.st, &p.bob, p.b1, &lb.c[0]), CHAT_OK);
    assert_int_equal(lb.c[0].state, CHAT_CONV_GENERATING);
    assert_int_equal(lb.c[0].gen_token, 99);
    assert_int_equal(chat_store_conv_seq(b.st, p.b1), chat_store_conv_seq(a.st, p.b1));
    assert_true(chat_store_conv_seq(b.st, p.b1) > 0);

    /* users: change counters and rate-limit state */
    assert_int_equal(chat_store_user_seq(b.st, &p.bob),
                     chat_store_user_seq(a.st, &p.bob));
    assert_true(chat_store_user_seq(b.st, &p.bob) > 0);
    for (i = 0; i < 9; i++) {
        chat_status_t r1 = chat_store_rate_take(a.st, &p.alice, &RATE, 3000, &ra);
        chat_status_t r2 = chat_store_rate_take(b.st, &p.alice, &RATE, 3000, &rb);
        assert_int_equal(r1, r2);
        assert_int_equal(ra, rb);
        assert_int_equal(r1, i < 8 ? CHAT_OK : CHAT_ELIMIT);
    }

    /* backends */
    assert_int_equal(chat_store_backend_count(b.st), 1);
    assert_int_equal(chat_store_backend_get(a.st, p.be, &ba), CHAT_OK);
    assert_int_equal(chat_store_backend_get(b.st, p.be, &bb), CHAT_OK);
    assert_memory_equal(&ba, &bb, sizeof(ba));
    assert_string_equal(bb.name, "ollama");
    assert_int_equal(bb.active, 1);
    assert_int_equal(bb.queued, 1);
    assert_int_equal(bb.failures, 1);
    assert_string_equal(bb.version, "0.5.1");

    /* metrics */
    assert_int_equal(chat_metrics_series_count(b.st), 1);
    assert_int_equal(chat_metrics_series_get(a.st, 0, &sa), CHAT_OK);
    assert_int_equal(chat_metrics_series_get(b.st, 0, &sb), CHAT_OK);
    assert_memory_equal(&sa, &sb, sizeof(sa));
    chat_metrics_snapshot(a.st, &xa);
    chat_metrics_snapshot(b.st, &xb);
    assert_memory_equal(&xa, &xb, sizeof(xa));
    assert_int_equal(xb.nerrors, 1);
    assert_string_equal(xb.errors[0].code, "timeout");
    assert_int_equal(xb.conversations, 3);
    assert_int_equal(xb.started_ms, 500);

    CHECK(b.st);
    ts_close(&a);
    ts_close(&b);
    chat_buf_free(&buf);
}

static void test_attach_identity(void **state)
{
    chat_store_layout_t l = small_layout(), other;
    chat_store_layout_t got;
    tstore_t a;
    chat_store_t *st = (chat_store_t *)1;
    uint8_t *img;
    size_t n;
    (void)state;

    ts_open(&a, &l, 0);
    n = a.size;
    img = malloc(n);
    memcpy(img, a.mem, n);

    assert_int_equal(chat_store_attach(&st, img, n, &l), CHAT_OK);
    chat_store_detach(st);
    /* a different layout: EINVAL (so the caller can migrate) */
    other = l;
    other.max_messages++;
    assert_int_equal(chat_store_attach(&st, img, n, &other), CHAT_EINVAL);
    assert_null(st);
    other = l;
    other.history_bytes += 256;
    assert_int_equal(chat_store_attach(&st, img, n, &other), CHAT_EINVAL);
    /* layout_of reports the recorded layout */
    assert_int_equal(chat_store_layout_of(img, n, &got), CHAT_OK);
    assert_true(chat_store_layout_equal(&got, &l)); /* fields: padding differs */
    assert_int_equal(got.max_procs, l.max_procs);
    assert_int_equal(chat_store_layout_of(img, 100, &got), CHAT_EPARSE);
    assert_int_equal(chat_store_layout_of(img, n, NULL), CHAT_EINVAL);
    /* truncated */
    assert_int_equal(chat_store_attach(&st, img, n - 1, &l), CHAT_EPARSE);
    assert_int_equal(chat_store_attach(&st, img, 0, &l), CHAT_EPARSE);
    assert_int_equal(chat_store_attach(&st, img, sizeof(cs_hdr_t) - 1, &l), CHAT_EPARSE);
    /* a larger buffer is fine (a file may be padded) */
    assert_int_equal(chat_store_attach(&st, img, n, NULL), CHAT_EINVAL);
    assert_int_equal(chat_store_attach(NULL, img, n, &l), CHAT_EINVAL);
    /* zeroes: not a store */
    memset(img, 0, n);
    assert_int_equal(chat_store_attach(&st, img, n, &l), CHAT_EPARSE);
    assert_int_equal(chat_store_layout_of(img, n, &got), CHAT_EPARSE);
    free(img);
    ts_close(&a);
}

/* chat_store_image_size: a loader sizes its buffer from the header alone,
 * so a huge or foreign file is never read whole. */
static void test_image_size(void **state)
{
    chat_store_layout_t l = small_layout(), l2 = small_layout();
    tstore_t a, b;
    uint8_t *img;
    size_t n;
    (void)state;

    ts_open(&a, &l, 0);
    n = a.size;
    img = calloc(1, CHAT_STORE_HEADER_BYTES);
    memcpy(img, a.mem, CHAT_STORE_HEADER_BYTES < n ? CHAT_STORE_HEADER_BYTES : n);
    /* the header alone is enough, whatever the rest */
    assert_int_equal(chat_store_image_size(img, CHAT_STORE_HEADER_BYTES),
                     chat_store_size(&l));
    assert_int_equal(chat_store_image_size(img, sizeof(cs_hdr_t)), chat_store_size(&l));
    assert_int_equal(chat_store_image_size(img, sizeof(cs_hdr_t) - 1), 0);
    assert_int_equal(chat_store_image_size(NULL, CHAT_STORE_HEADER_BYTES), 0);
    /* but a full check is still needed to use it */
    assert_int_equal(chat_store_layout_of(img, sizeof(cs_hdr_t), &l2), CHAT_EPARSE);
    /* another layout of the very same size (the per-message limits cost
     * nothing): same image size, recorded layout differs */
    l2 = l;
    l2.max_messages = l.max_messages * 2;
    l2.max_message_bytes = l.max_message_bytes / 2;
    assert_int_equal(chat_store_size(&l2), chat_store_size(&l));
    ts_open(&b, &l2, 0);
    assert_int_equal(chat_store_image_size(b.mem, b.size), chat_store_size(&l));
    {
        chat_store_layout_t got;
        chat_store_t *st = NULL;
        assert_int_equal(chat_store_layout_of(b.mem, b.size, &got), CHAT_OK);
        assert_int_equal(got.max_messages, l2.max_messages);
        assert_int_equal(chat_store_attach(&st, b.mem, b.size, &l), CHAT_EINVAL);
    }
    /* a wrong version, a header whose sizes disagree with its layout */
    ((cs_hdr_t *)img)->version++;
    assert_int_equal(chat_store_image_size(img, CHAT_STORE_HEADER_BYTES), 0);
    ((cs_hdr_t *)img)->version--;
    ((cs_hdr_t *)img)->total_size += 256;
    assert_int_equal(chat_store_image_size(img, CHAT_STORE_HEADER_BYTES), 0);
    ((cs_hdr_t *)img)->total_size -= 256;
    ((cs_hdr_t *)img)->history_bytes = (uint64_t)1 << 62; /* absurd arena */
    assert_int_equal(chat_store_image_size(img, CHAT_STORE_HEADER_BYTES), 0);
    free(img);
    ts_close(&b);
    ts_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size),       cmocka_unit_test(test_format_args),
        cmocka_unit_test(test_roundtrip),  cmocka_unit_test(test_attach_identity),
        cmocka_unit_test(test_image_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
