/* Unit tests: store sizing, format, attach round trip (the region copied
 * byte for byte, as ChatbotHistoryFile does), attach rejecting corrupted
 * images (every field class, every byte flipped), recover and migrate. */
#include "test_store_util.h"

static const chat_rate_t RATE = {10, 60000, 10};

/* A store with a bit of everything in it. */
typedef struct {
    char a1[25], a2[25], b1[25];
    chat_owner_t alice, bob;
    int be;
    int series;
} pop_t;

static void populate(chat_store_t *st, pop_t *p)
{
    char big[600];
    int64_t retry;
    int32_t pos;

    memset(big, 'z', sizeof(big));
    p->alice = owner_of("u:alice");
    p->bob = owner_of("u:bob");
    mkconv(st, &p->alice, "llama", 0x1111, 1000, p->a1);
    mkconv(st, &p->alice, "qwen", 0x2222, 1100, p->a2);
    mkconv(st, &p->bob, "llama", 0x3333, 1200, p->b1);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_USER, 0, "hello", 5,
                                           2000, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_ASSISTANT,
                                           CHAT_MSG_COMPLETE, big, sizeof(big), 2100, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_USER, 0, "x", 1, 2200,
                                           NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a2, CHAT_ROLE_SYSTEM, 0, "sys", 3,
                                           2300, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_flags(st, &p->alice, p->a2, CHAT_CONV_ARCHIVED, 0, 2400),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->bob, p->b1, CHAT_ROLE_USER, 0, "hi bob", 6,
                                           2500, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_gen_begin(st, &p->bob, p->b1, 99, CHAT_CONV_GENERATING, 2600),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->bob, p->b1, CHAT_ROLE_ASSISTANT,
                                           CHAT_MSG_STREAMING, "partial", 7, 2700, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_rate_take(st, &p->alice, &RATE, 3000, &retry), CHAT_OK);
    assert_int_equal(chat_store_rate_take(st, &p->alice, &RATE, 3000, &retry), CHAT_OK);
    chat_store_user_bump(st, &p->bob);
    p->be = chat_store_backend_register(st, "ollama", 1);
    assert_int_equal(p->be, 0);
    assert_int_equal(chat_store_backend_acquire(st, p->be, 7, 3000, &pos), CHAT_OK);
    assert_int_equal(chat_store_backend_acquire(st, p->be, 8, 3000, &pos), CHAT_EAGAIN);
    chat_store_breaker_result(st, p->be, 0, 3000, 5, 30000);
    chat_store_backend_health(st, p->be, 1, "0.5.1", "", 3000);
    p->series = chat_store_series(st, "llama", "ollama");
    assert_int_equal(p->series, 0);
    chat_metrics_add(st, p->series, CHAT_CTR_TOKENS, 42);
    chat_metrics_observe(st, p->series, CHAT_HIST_TTFT, 300);
    chat_metrics_gauge_add(st, CHAT_G_CONNECTIONS, 3);
    chat_metrics_gauge_add(st, CHAT_G_MESSAGES_IN, 9);
    chat_metrics_error(st, "timeout");
    CHECK(st);
}

static void same_msgs(const msgs_t *a, const msgs_t *b)
{
    int i;
    assert_int_equal(a->n, b->n);
    for (i = 0; i < a->n && i < 64; i++) {
        assert_int_equal(a->info[i].index, b->info[i].index);
        assert_int_equal(a->info[i].role, b->info[i].role);
        assert_int_equal(a->info[i].flags, b->info[i].flags);
        assert_int_equal(a->info[i].ts_ms, b->info[i].ts_ms);
        assert_int_equal(a->info[i].len, b->info[i].len);
        assert_int_equal(a->len[i], b->len[i]);
        assert_string_equal(a->text[i], b->text[i]);
    }
}

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
#define ZERO(f)                                   \
    b = l;                                        \
    b.f = 0;                                      \
    assert_int_equal(chat_store_size(&b), 0);
    ZERO(max_users) ZERO(max_conversations) ZERO(max_messages) ZERO(max_message_bytes)
    ZERO(history_bytes) ZERO(max_backends) ZERO(queue_cap) ZERO(max_active) ZERO(metric_series)
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
    assert_int_equal(chat_store_conv_list(a.st, &p.alice, NULL, -1, collect_conv, &la), 2);
    assert_int_equal(chat_store_conv_list(b.st, &p.alice, NULL, -1, collect_conv, &lb), 2);
    for (i = 0; i < 2; i++) {
        same_conv(&la.c[i], &lb.c[i]);
    }
    assert_string_equal(lb.c[0].id, p.a2); /* most recently updated first */
    assert_string_equal(lb.c[1].id, p.a1);
    assert_int_equal(lb.c[0].flags, CHAT_CONV_ARCHIVED);

    memset(&ma, 0, sizeof(ma));
    memset(&mb, 0, sizeof(mb));
    assert_int_equal(chat_store_msg_read(a.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &ma), 3);
    assert_int_equal(chat_store_msg_read(b.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &mb), 3);
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
    assert_int_equal(chat_store_user_seq(b.st, &p.bob), chat_store_user_seq(a.st, &p.bob));
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

/* ---- corruption classes ------------------------------------------------------ */

typedef void corrupt_fn(chat_store_t *st, const pop_t *p);

static cs_conv_t *conv_of(chat_store_t *st, const char *id)
{
    return cs_conv_find(st, NULL, id);
}

static uint32_t second_block(chat_store_t *st, const pop_t *p)
{
    /* a1's 600-byte message spans 3 blocks: HEAD, CONT, CONT */
    cs_conv_t *c = conv_of(st, p->a1);
    uint32_t m = cs_mh(st, c->first_msg)->next_msg;
    return cs_bh(st, m)->next;
}

#define CORRUPT(name, ...)                                    \
    static void name(chat_store_t *st, const pop_t *p)        \
    {                                                         \
        cs_hdr_t *h = st->hdr;                                \
        cs_conv_t *a1 = conv_of(st, p->a1);                   \
        cs_conv_t *b1 = conv_of(st, p->b1);                   \
        (void)h;                                              \
        (void)a1;                                             \
        (void)b1;                                             \
        __VA_ARGS__;                                          \
    }

CORRUPT(c_magic, h->magic[3] ^= 1)
CORRUPT(c_version, h->version = 3)
CORRUPT(c_bom, h->bom = 0x04030201)
CORRUPT(c_hdrsize, h->hdr_size++)
CORRUPT(c_convsize, h->conv_size = 320)
CORRUPT(c_blocksize, h->block_size = 512)
CORRUPT(c_locksize, h->lock_size++)
CORRUPT(c_mutexsize, h->mutex_size = 24)
CORRUPT(c_total, h->total_size--)
CORRUPT(c_offarena, h->off_arena += 64)
CORRUPT(c_offconvs, h->off_convs = 0)
CORRUPT(c_offlogs, h->off_logs += 64)
CORRUPT(c_nblocks, h->nblocks++)
CORRUPT(c_nshards, h->nshards = 4)
CORRUPT(c_procs, h->max_procs = 0)
CORRUPT(c_nconv, h->pool.nconv++)
CORRUPT(c_nconv_big, h->pool.nconv = 0xFFFFFFFF)
CORRUPT(c_anon_convs, h->pool.anon_convs++)
CORRUPT(c_anon_blocks, h->pool.anon_blocks++)
CORRUPT(c_free_cycle, st->convs[h->pool.conv_free].own_next = h->pool.conv_free)
CORRUPT(c_free_range, st->convs[h->pool.conv_free].own_next = 1000)
CORRUPT(c_free_head_used, h->pool.conv_free = cs_conv_index(st, a1))
CORRUPT(c_lock_pending, st->locks[st->nshards].log_len = 24)
CORRUPT(c_own_missing, st->owners[b1->owner_ref].flags = 0)
CORRUPT(c_own_key, b1->owner[0] ^= 1)
CORRUPT(c_own_cycle, st->convs[st->owners[a1->owner_ref].tail].own_next =
                         st->owners[a1->owner_ref].head)
CORRUPT(c_own_nconv, st->owners[a1->owner_ref].nconv++)
CORRUPT(c_own_nblocks, st->owners[a1->owner_ref].nblocks++)
CORRUPT(c_own_flags, st->owners[a1->owner_ref].flags |= 0x10)
CORRUPT(c_own_ref, a1->owner_ref = b1->owner_ref)
CORRUPT(c_own_tail, st->owners[a1->owner_ref].tail = CS_NIL)
CORRUPT(c_nowners, st->shards[0].nowners++)
CORRUPT(c_si_idle, st->slots[cs_conv_index(st, a1)].flags ^= CS_SI_IDLE)
CORRUPT(c_si_auth, st->slots[cs_conv_index(st, a1)].flags ^= CS_SI_AUTH)
CORRUPT(c_si_updated, st->slots[cs_conv_index(st, a1)].updated_ms++)
CORRUPT(c_si_free, st->slots[h->pool.conv_free].flags = CS_SI_USED)
CORRUPT(c_in_use, a1->in_use = 2)
CORRUPT(c_tag_free, st->convs[h->pool.conv_free].tag = 5)
CORRUPT(c_tag_zero, a1->tag = 0)
CORRUPT(c_state, a1->state = 7)
CORRUPT(c_state_token, b1->gen_token = 0)
CORRUPT(c_idle_token, a1->gen_token = 5)
CORRUPT(c_flags, a1->flags = 0x80)
CORRUPT(c_qpos, b1->queue_position = -1)
CORRUPT(c_stopreq, b1->stop_requested = 2)
CORRUPT(c_bot_unterminated, memset(a1->bot, 'x', sizeof(a1->bot)))
CORRUPT(c_bot_long, memset(a1->bot, 'x', CHAT_BOT_NAME_MAX + 1))
CORRUPT(c_bot_empty, a1->bot[0] = 0)
CORRUPT(c_title_unterminated, memset(a1->title, 'x', sizeof(a1->title)))
CORRUPT(c_nmsgs_more, a1->nmsgs++)
CORRUPT(c_nmsgs_less, a1->nmsgs--)
CORRUPT(c_nmsgs_cap, a1->nmsgs = st->l.max_messages + 1)
CORRUPT(c_bytes, a1->bytes++)
CORRUPT(c_cnblocks, a1->nblocks++)
CORRUPT(c_first_range, a1->first_msg = st->nblocks)
CORRUPT(c_first_nil, a1->first_msg = CS_NIL)
CORRUPT(c_last_msg, a1->last_msg = a1->first_msg)
CORRUPT(c_last_blk, a1->last_blk = a1->first_msg)
CORRUPT(c_last_blk_range, a1->last_blk = CS_NIL - 1)
CORRUPT(c_msg_len_blocks, cs_mh(st, a1->first_msg)->len += 300)
CORRUPT(c_msg_len_same, cs_mh(st, a1->first_msg)->len += 1)
CORRUPT(c_msg_len_huge, cs_mh(st, a1->first_msg)->len = 0xFFFFFFFF)
CORRUPT(c_msg_role, cs_mh(st, a1->first_msg)->role = 9)
CORRUPT(c_msg_flags, cs_mh(st, a1->first_msg)->flags = 0x100)
CORRUPT(c_msg_prev, cs_mh(st, a1->last_msg)->prev_msg = CS_NIL)
CORRUPT(c_msg_next_cycle, cs_mh(st, a1->last_msg)->next_msg = a1->first_msg)
CORRUPT(c_msg_next_self, cs_mh(st, a1->first_msg)->next_msg = a1->first_msg)
CORRUPT(c_msg_next_range, cs_mh(st, a1->first_msg)->next_msg = 99999)
CORRUPT(c_msg_cross, cs_mh(st, a1->first_msg)->next_msg = b1->first_msg)
CORRUPT(c_blk_cycle, cs_bh(st, second_block(st, p))->next = second_block(st, p))
CORRUPT(c_blk_range, cs_bh(st, second_block(st, p))->next = st->nblocks + 1)
CORRUPT(c_blk_kind, cs_bh(st, second_block(st, p))->kind = CS_BLK_FREE)
CORRUPT(c_head_kind, cs_bh(st, a1->first_msg)->kind = CS_BLK_CONT)
CORRUPT(c_blk_short, {
    uint32_t b2 = second_block(st, p);
    cs_bh(st, b2)->next = CS_NIL;
})
CORRUPT(c_bfree_range, h->pool.blk_free = st->nblocks)
CORRUPT(c_bfree_count, h->pool.blk_nfree++)
CORRUPT(c_bfree_less, h->pool.blk_nfree--)
CORRUPT(c_bfree_cycle, cs_bh(st, h->pool.blk_free)->next = h->pool.blk_free)
CORRUPT(c_bfree_shared, h->pool.blk_free = second_block(st, p))
CORRUPT(c_user_flags, {
    cs_user_t *u = cs_user_find(st, p->alice.b);
    u->flags |= 0x10;
})
CORRUPT(c_user_tokens, {
    cs_user_t *u = cs_user_find(st, p->alice.b);
    u->bucket.utokens = -1;
})
CORRUPT(c_user_create_tokens, {
    cs_user_t *u = cs_user_find(st, p->alice.b);
    u->create.utokens = -1;
})
CORRUPT(c_user_window, {
    /* move alice's entry outside her probe window (within her shard's part) */
    cs_user_t *u = cs_user_find(st, p->alice.b);
    uint32_t s = cs_shard_of(st, p->alice.b);
    uint32_t u0 = s * st->l.max_users / st->nshards;
    uint32_t un = (s + 1) * st->l.max_users / st->nshards - u0;
    uint32_t home = cs_owner_hash(p->alice.b, 4) % un;
    cs_user_t *far = &st->users[u0 + (home + CS_WINDOW) % un];
    if (far->flags) {
        far = &st->users[u0 + (home + CS_WINDOW + 1) % un];
    }
    *far = *u;
    memset(u, 0, sizeof(*u));
})
CORRUPT(c_user_shard, {
    /* alice's entry in the other shard's part of the table */
    cs_user_t *u = cs_user_find(st, p->alice.b);
    uint32_t s = cs_shard_of(st, p->alice.b) ^ 1;
    uint32_t u0 = s * st->l.max_users / st->nshards;
    st->users[u0] = *u;
    memset(u, 0, sizeof(*u));
    st->shards[s].nusers++;
    st->shards[s ^ 1].nusers--;
})
CORRUPT(c_user_dup, {
    cs_user_t *u = cs_user_find(st, p->alice.b);
    uint32_t s = cs_shard_of(st, p->alice.b);
    uint32_t u0 = s * st->l.max_users / st->nshards;
    uint32_t un = (s + 1) * st->l.max_users / st->nshards - u0;
    uint32_t home = cs_owner_hash(p->alice.b, 4) % un, k;
    for (k = 0; k < CS_WINDOW; k++) {
        cs_user_t *e = &st->users[u0 + (home + k) % un];
        if (!e->flags) {
            *e = *u;
            st->shards[s].nusers++;
            break;
        }
    }
})
CORRUPT(c_nusers, st->shards[1].nusers++)
CORRUPT(c_nbackends, h->nbackends++)
CORRUPT(c_nbackends_big, h->nbackends = 1000)
CORRUPT(c_be_name, memset(st->backends[0].name, 'x', sizeof(st->backends[0].name)))
CORRUPT(c_be_noname, st->backends[0].name[0] = 0)
CORRUPT(c_be_version, memset(st->backends[0].version, 'x', sizeof(st->backends[0].version)))
CORRUPT(c_be_detail, memset(st->backends[0].detail, 'x', sizeof(st->backends[0].detail)))
CORRUPT(c_be_breaker, st->backends[0].breaker = 3)
CORRUPT(c_be_healthy, st->backends[0].healthy = 2)
CORRUPT(c_be_qcount, st->backends[0].q_count = st->l.queue_cap + 1)
CORRUPT(c_be_qhead, st->backends[0].q_head = st->l.queue_cap)
CORRUPT(c_be_nactive, st->backends[0].nactive++)
CORRUPT(c_be_holder, st->holders[1].ticket = 77)
CORRUPT(c_be_waiter, st->queue[0].ticket = 0)
CORRUPT(c_be_unused, st->backends[2].nactive = 1)
CORRUPT(c_nseries, h->nseries++)
CORRUPT(c_nseries_big, h->nseries = 5000)
CORRUPT(c_series_name, memset(st->series[0].bot, 'x', sizeof(st->series[0].bot)))
CORRUPT(c_series_used, st->series[0].used = 0)
CORRUPT(c_err_state, h->errors[0].state = 3)
CORRUPT(c_err_code, memset(h->errors[0].code, 'x', sizeof(h->errors[0].code)))

static corrupt_fn *const corruptions[] = {
    c_magic, c_version, c_bom, c_hdrsize, c_convsize, c_blocksize, c_locksize, c_mutexsize,
    c_total, c_offarena, c_offconvs, c_offlogs, c_nblocks, c_nshards, c_procs, c_nconv,
    c_nconv_big, c_anon_convs, c_anon_blocks, c_free_cycle, c_free_range, c_free_head_used,
    c_lock_pending, c_own_missing, c_own_key,
    c_own_cycle, c_own_nconv, c_own_nblocks, c_own_flags, c_own_ref, c_own_tail, c_nowners,
    c_si_idle, c_si_auth, c_si_updated, c_si_free, c_in_use, c_tag_free, c_tag_zero, c_state,
    c_state_token, c_idle_token, c_flags, c_qpos, c_stopreq, c_bot_unterminated, c_bot_long,
    c_bot_empty, c_title_unterminated, c_nmsgs_more, c_nmsgs_less, c_nmsgs_cap, c_bytes,
    c_cnblocks, c_first_range, c_first_nil, c_last_msg, c_last_blk, c_last_blk_range,
    c_msg_len_blocks, c_msg_len_same, c_msg_len_huge, c_msg_role, c_msg_flags, c_msg_prev,
    c_msg_next_cycle, c_msg_next_self, c_msg_next_range, c_msg_cross, c_blk_cycle,
    c_blk_range, c_blk_kind, c_head_kind, c_blk_short, c_bfree_range, c_bfree_count,
    c_bfree_less, c_bfree_cycle, c_bfree_shared, c_user_flags, c_user_tokens,
    c_user_create_tokens, c_user_window, c_user_shard, c_user_dup, c_nusers, c_nbackends,
    c_nbackends_big, c_be_name, c_be_noname, c_be_version, c_be_detail, c_be_breaker,
    c_be_healthy, c_be_qcount, c_be_qhead, c_be_nactive, c_be_holder, c_be_waiter,
    c_be_unused, c_nseries, c_nseries_big, c_series_name, c_series_used, c_err_state,
    c_err_code,
};

static void test_attach_corrupt(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t a, b;
    pop_t p;
    size_t i;
    (void)state;

    ts_open(&a, &l, 0);
    populate(a.st, &p);
    for (i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++) {
        chat_store_t *st2 = (chat_store_t *)1;
        chat_status_t rc;
        ts_clone(&b, &a);
        corruptions[i](b.st, &p);
        rc = chat_store_load(&st2, b.mem, b.size, &l);
        if (rc != CHAT_EPARSE) {
            print_error("corruption #%zu attached with %d\n", i, (int)rc);
        }
        assert_int_equal(rc, CHAT_EPARSE);
        assert_null(st2);
        ts_close(&b);
    }
    ts_close(&a);
}

/* Exercises a store that attached: nothing may crash, invariants hold. */
static void exercise(chat_store_t *st, const pop_t *p)
{
    chat_buf_t buf;
    convs_t cv;
    msgs_t ms;
    chat_metrics_snapshot_t snap;
    chat_backend_info_t bi;
    int64_t retry;
    int32_t pos;
    int i, nb;
    const chat_owner_t *owners[2];

    owners[0] = &p->alice;
    owners[1] = &p->bob;
    chat_buf_init(&buf);
    for (i = 0; i < 2; i++) {
        const chat_owner_t *o = owners[i];
        char id[25];
        int k;
        memset(&cv, 0, sizeof(cv));
        chat_store_conv_list(st, o, NULL, -1, collect_conv, &cv);
        for (k = 0; k < cv.n && k < 32; k++) {
            memset(&ms, 0, sizeof(ms));
            chat_store_msg_read(st, o, cv.c[k].id, 0, 0, &buf, collect_msg, &ms);
            chat_store_msg_tail(st, o, cv.c[k].id, 3, 100, &buf, NULL, NULL);
            chat_store_msg_get(st, o, cv.c[k].id, 0, 1, &buf, NULL);
            chat_store_msg_extend(st, o, cv.c[k].id, "more", 4, 9000);
            chat_store_msg_append(st, o, cv.c[k].id, CHAT_ROLE_USER, 0, "again", 5, 9001, NULL);
            chat_store_msg_truncate(st, o, cv.c[k].id, 1, 9002);
        }
        chat_store_conv_latest(st, o, "llama", NULL);
        chat_store_rate_take(st, o, &RATE, 9000, &retry);
        chat_store_user_bump(st, o);
        if (chat_store_conv_create(st, o, "llama", "t", 0xABCD + (uint64_t)i, 9100, NULL) ==
            CHAT_OK) {
            mkconv(st, o, "qwen", 0xBCDE + (uint64_t)i, 9200, id);
            chat_store_msg_append(st, o, id, CHAT_ROLE_USER, 0, "z", 1, 9300, NULL);
        }
    }
    nb = chat_store_backend_count(st);
    for (i = 0; i < nb; i++) {
        chat_store_backend_acquire(st, i, 1000 + (uint64_t)i, 9000, &pos);
        chat_store_backend_release(st, i, 1000 + (uint64_t)i);
        chat_store_breaker_allow(st, i, 9000, 100);
        chat_store_backend_get(st, i, &bi);
    }
    chat_metrics_add(st, 0, CHAT_CTR_ANSWERS, 1);
    chat_metrics_error(st, "x");
    chat_metrics_snapshot(st, &snap);
    chat_store_recover(st, 9500);
    CHECK(st);
    chat_buf_free(&buf);
}

/* Every byte of a populated image flipped: attach never crashes, and
 * whatever still attaches is consistent and usable. */
static void test_attach_every_byte(void **state)
{
    chat_store_layout_t l = small_layout();
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    tstore_t a;
    pop_t p;
    uint8_t *img;
    size_t off;
    unsigned m;
    int ok = 0, rejected = 0;
    (void)state;

    ts_open(&a, &l, 0);
    populate(a.st, &p);
    img = malloc(a.size);
    for (m = 0; m < sizeof(masks); m++) {
        for (off = 0; off < a.size; off++) {
            chat_store_t *st = NULL;
            chat_status_t rc;
            memcpy(img, a.mem, a.size);
            img[off] ^= masks[m];
            rc = chat_store_load(&st, img, a.size, &l);
            if (rc == CHAT_OK) {
                ok++;
                /* only bytes without structure (text, times, counters,
                 * free space) may change and still attach */
                if (off % 64 == 0 || masks[m] == 0xFF) {
                    exercise(st, &p);
                }
                chat_store_detach(st);
            }
            else {
                assert_true(rc == CHAT_EPARSE || rc == CHAT_EINVAL);
                assert_null(st);
                rejected++;
            }
        }
    }
    /* most bytes are text, free space or free-form numbers; but every
     * structural byte must have been caught */
    print_message("every byte: %d attached, %d rejected\n", ok, rejected);
    assert_true(ok > 0);
    assert_true(rejected > 0);
    free(img);
    ts_close(&a);
}

/* ---- recover ------------------------------------------------------------------------ */

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
    assert_int_equal(chat_store_msg_append(a.st, &p.alice, a3, CHAT_ROLE_USER, 0, "q", 1, 4001,
                                           NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_gen_begin(a.st, &p.alice, a3, 5, CHAT_CONV_QUEUED, 4002), CHAT_OK);
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
    assert_int_equal(chat_store_gen_begin(b.st, &p.bob, p.b1, 100, CHAT_CONV_GENERATING, 10001),
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

/* ---- migrate ---------------------------------------------------------------------------- */

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
        mkconv(a.st, i % 2 ? &q : &o, "llama", 0x100 + (uint64_t)i, 1000 + (uint64_t)i * 10,
               ids[i]);
        for (k = 0; k < 3; k++) {
            char t[16];
            snprintf(t, sizeof(t), "c%d m%d", i, k);
            assert_int_equal(chat_store_msg_append(a.st, i % 2 ? &q : &o, ids[i], CHAT_ROLE_USER,
                                                   0, t, strlen(t),
                                                   1000 + (uint64_t)i * 10 + (uint64_t)k, NULL),
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
            if (chat_store_msg_read(b.st, k % 2 ? &q : &o, cv.c[i].id, 0, 0, &buf, collect_msg,
                                    &ms) == 2 &&
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
    assert_int_equal(chat_store_msg_read(a.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &ma), 3);
    assert_int_equal(chat_store_msg_read(b.st, &p.alice, p.a1, 0, 0, &buf, collect_msg, &mb), 3);
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
        cmocka_unit_test(test_size),
        cmocka_unit_test(test_format_args),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_attach_identity),
        cmocka_unit_test(test_image_size),
        cmocka_unit_test(test_attach_corrupt),
        cmocka_unit_test(test_attach_every_byte),
        cmocka_unit_test(test_recover),
        cmocka_unit_test(test_migrate_smaller),
        cmocka_unit_test(test_migrate_larger),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
