/* Unit tests: attach rejecting corrupted images (every field class), and
 * every byte of a populated image flipped: attach never crashes, whatever
 * still attaches is consistent and usable. */
#include "test_store_util.h"

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

#define CORRUPT(name, ...)                                                               \
    static void name(chat_store_t *st, const pop_t *p)                                   \
    {                                                                                    \
        cs_hdr_t *h = st->hdr;                                                           \
        cs_conv_t *a1 = conv_of(st, p->a1);                                              \
        cs_conv_t *b1 = conv_of(st, p->b1);                                              \
        (void)h;                                                                         \
        (void)a1;                                                                        \
        (void)b1;                                                                        \
        __VA_ARGS__;                                                                     \
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
CORRUPT(c_be_version,
        memset(st->backends[0].version, 'x', sizeof(st->backends[0].version)))
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
    c_magic,
    c_version,
    c_bom,
    c_hdrsize,
    c_convsize,
    c_blocksize,
    c_locksize,
    c_mutexsize,
    c_total,
    c_offarena,
    c_offconvs,
    c_offlogs,
    c_nblocks,
    c_nshards,
    c_procs,
    c_nconv,
    c_nconv_big,
    c_anon_convs,
    c_anon_blocks,
    c_free_cycle,
    c_free_range,
    c_free_head_used,
    c_lock_pending,
    c_own_missing,
    c_own_key,
    c_own_cycle,
    c_own_nconv,
    c_own_nblocks,
    c_own_flags,
    c_own_ref,
    c_own_tail,
    c_nowners,
    c_si_idle,
    c_si_auth,
    c_si_updated,
    c_si_free,
    c_in_use,
    c_tag_free,
    c_tag_zero,
    c_state,
    c_state_token,
    c_idle_token,
    c_flags,
    c_qpos,
    c_stopreq,
    c_bot_unterminated,
    c_bot_long,
    c_bot_empty,
    c_title_unterminated,
    c_nmsgs_more,
    c_nmsgs_less,
    c_nmsgs_cap,
    c_bytes,
    c_cnblocks,
    c_first_range,
    c_first_nil,
    c_last_msg,
    c_last_blk,
    c_last_blk_range,
    c_msg_len_blocks,
    c_msg_len_same,
    c_msg_len_huge,
    c_msg_role,
    c_msg_flags,
    c_msg_prev,
    c_msg_next_cycle,
    c_msg_next_self,
    c_msg_next_range,
    c_msg_cross,
    c_blk_cycle,
    c_blk_range,
    c_blk_kind,
    c_head_kind,
    c_blk_short,
    c_bfree_range,
    c_bfree_count,
    c_bfree_less,
    c_bfree_cycle,
    c_bfree_shared,
    c_user_flags,
    c_user_tokens,
    c_user_create_tokens,
    c_user_window,
    c_user_shard,
    c_user_dup,
    c_nusers,
    c_nbackends,
    c_nbackends_big,
    c_be_name,
    c_be_noname,
    c_be_version,
    c_be_detail,
    c_be_breaker,
    c_be_healthy,
    c_be_qcount,
    c_be_qhead,
    c_be_nactive,
    c_be_holder,
    c_be_waiter,
    c_be_unused,
    c_nseries,
    c_nseries_big,
    c_series_name,
    c_series_used,
    c_err_state,
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
            chat_store_msg_append(st, o, cv.c[k].id, CHAT_ROLE_USER, 0, "again", 5, 9001,
                                  NULL);
            chat_store_msg_truncate(st, o, cv.c[k].id, 1, 9002);
        }
        chat_store_conv_latest(st, o, "llama", NULL);
        chat_store_rate_take(st, o, &RATE, 9000, &retry);
        chat_store_user_bump(st, o);
        if (chat_store_conv_create(st, o, "llama", "t", 0xABCD + (uint64_t)i, 9100,
                                   NULL) == CHAT_OK) {
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attach_corrupt),
        cmocka_unit_test(test_attach_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
