/* test_store_meta.c - a conversation's settings blob in the shm store:
 * get/set, owner checks, quota, delete, restart (file image), migrate. */
#include "test_store_util.h"

static void fill(char *p, size_t n, char seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        p[i] = (char)('a' + (seed + i) % 26);
    }
}

static void test_meta_basic(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t, r;
    chat_owner_t alice = owner_of("u:alice"), mallory = owner_of("u:mallory");
    chat_buf_t buf;
    chat_conv_info_t a, b;
    char id[25], big[CHAT_CONV_META_MAX + 1];
    const char *js = "{\"model\":\"m1\",\"temperature\":0.5}";
    (void)state;

    chat_buf_init(&buf);
    ts_open(&t, &l, 0);
    mkconv(t.st, &alice, "llama", 0xA11CE, 100, id);
    /* nothing set: empty */
    assert_int_equal(chat_store_conv_meta_get(t.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, 0);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &a), CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, js, strlen(js), 200),
                     CHAT_OK);
    CHECK(t.st);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &b), CHAT_OK);
    assert_true(b.seq > a.seq);
    assert_int_equal(b.updated_ms, a.updated_ms); /* not a use */
    assert_int_equal(b.nmsgs, 0);
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(t.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, strlen(js));
    assert_memory_equal(buf.data, js, buf.len);

    /* another owner: as if the id did not exist, and nothing changes */
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(t.st, &mallory, id, &buf), CHAT_ENOTFOUND);
    assert_int_equal(buf.len, 0);
    assert_int_equal(chat_store_conv_meta_set(t.st, &mallory, id, "{}", 2, 300),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_meta_get(t.st, NULL, id, &buf), CHAT_ENOTFOUND);
    assert_int_equal(
        chat_store_conv_meta_set(t.st, &alice, "00000007aaaaaaaaaaaaaaaa", "{}", 2, 300),
        CHAT_ENOTFOUND);
    /* too big, bad arguments */
    fill(big, sizeof(big), 1);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, big, sizeof(big), 300),
                     CHAT_ETOOBIG);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, NULL, 3, 300),
                     CHAT_EINVAL);
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(t.st, &alice, id, &buf), CHAT_OK);
    assert_memory_equal(buf.data, js, strlen(js));

    /* the largest blob, spanning blocks, replacing the small one */
    assert_int_equal(
        chat_store_conv_meta_set(t.st, &alice, id, big, CHAT_CONV_META_MAX, 400),
        CHAT_OK);
    CHECK(t.st);
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(t.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, CHAT_CONV_META_MAX);
    assert_memory_equal(buf.data, big, CHAT_CONV_META_MAX);
    /* messages and the blob do not disturb each other */
    assert_int_equal(
        chat_store_msg_append(t.st, &alice, id, CHAT_ROLE_USER, 0, "hello", 5, 500, NULL),
        CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, js, strlen(js), 600),
                     CHAT_OK);
    CHECK(t.st);

    /* a restart from the file image keeps it */
    ts_clone(&r, &t);
    CHECK(r.st);
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(r.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, strlen(js));
    assert_memory_equal(buf.data, js, buf.len);
    ts_close(&r);

    /* removing it */
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, NULL, 0, 700), CHAT_OK);
    CHECK(t.st);
    chat_buf_reset(&buf, 0);
    assert_int_equal(chat_store_conv_meta_get(t.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, 0);
    ts_close(&t);
    chat_buf_free(&buf);
}

/* The blob's blocks come from the arena and go back with the conversation. */
static void test_meta_blocks_returned(void **state)
{
    chat_store_layout_t l = small_layout(); /* 64 blocks */
    tstore_t t;
    chat_owner_t alice = owner_of("u:alice");
    chat_buf_t buf;
    char id[25], id2[25], big[CHAT_CONV_META_MAX];
    uint32_t before;
    int i;
    (void)state;

    chat_buf_init(&buf);
    fill(big, sizeof(big), 3);
    ts_open(&t, &l, 0);
    before = t.st->hdr->pool.blk_nfree;
    for (i = 0; i < 20; i++) {
        mkconv(t.st, &alice, "llama", 0xB0 + (uint64_t)i, 100 + (uint64_t)i, id);
        assert_int_equal(
            chat_store_conv_meta_set(t.st, &alice, id, big, sizeof(big), 200), CHAT_OK);
        assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, big, 100, 201),
                         CHAT_OK);
        assert_int_equal(
            chat_store_conv_meta_set(t.st, &alice, id, big, sizeof(big), 202), CHAT_OK);
        CHECK(t.st);
        assert_int_equal(chat_store_conv_delete(t.st, &alice, id), CHAT_OK);
        CHECK(t.st);
        assert_int_equal(t.st->hdr->pool.blk_nfree, before);
    }
    /* a full arena evicts the owner's older conversation for the blob */
    mkconv(t.st, &alice, "llama", 0xC1, 1000, id);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, big, sizeof(big), 1001),
                     CHAT_OK);
    mkconv(t.st, &alice, "llama", 0xC2, 1002, id2);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id2, big, sizeof(big), 1003),
                     CHAT_OK);
    CHECK(t.st);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, NULL), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id2, NULL), CHAT_OK);
    ts_close(&t);
    chat_buf_free(&buf);
}

/* A quota in blocks counts the blob. */
static void test_meta_quota(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_store_policy_t p;
    tstore_t t;
    chat_owner_t alice = owner_of("u:alice");
    char id[25], big[CHAT_CONV_META_MAX];
    (void)state;

    fill(big, sizeof(big), 5);
    ts_open(&t, &l, 0);
    chat_store_policy_default(&p);
    p.anon.history_bytes = p.auth.history_bytes = 10 * 256;
    chat_store_set_policy(t.st, &p);
    mkconv(t.st, &alice, "llama", 0xD1, 100, id);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, big, 9 * 248, 101),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, big, sizeof(big), 102),
                     CHAT_EQUOTA);
    CHECK(t.st);
    ts_close(&t);
}

/* Migrating to other sizes keeps the blob. */
static void test_meta_migrate(void **state)
{
    chat_store_layout_t l = small_layout(), bl;
    tstore_t a, b;
    chat_owner_t alice = owner_of("u:alice");
    chat_buf_t buf;
    char id[25], big[1000];
    (void)state;

    chat_buf_init(&buf);
    fill(big, sizeof(big), 7);
    ts_open(&a, &l, 0);
    mkconv(a.st, &alice, "llama", 0xE1, 100, id);
    assert_int_equal(
        chat_store_msg_append(a.st, &alice, id, CHAT_ROLE_USER, 0, "hi", 2, 101, NULL),
        CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(a.st, &alice, id, big, sizeof(big), 102),
                     CHAT_OK);
    bl = l;
    bl.max_conversations = 64;
    bl.history_bytes = 1 << 20;
    ts_open(&b, &bl, 0);
    assert_int_equal(chat_store_migrate(b.st, a.st, 10), CHAT_OK);
    CHECK(b.st);
    assert_int_equal(chat_store_conv_meta_get(b.st, &alice, id, &buf), CHAT_OK);
    assert_int_equal(buf.len, sizeof(big));
    assert_memory_equal(buf.data, big, sizeof(big));
    ts_close(&a);
    ts_close(&b);
    chat_buf_free(&buf);
}

/* A conversation's info names the model of its blob, read from the
 * blob's first blocks: after a system prompt that spans blocks, from a
 * list, after a restart, and nothing once the blob is gone. */
static void list_model_cb(void *baton, const chat_conv_info_t *c)
{
    snprintf(baton, CHAT_SETTINGS_MODEL_MAX + 1, "%s", c->model);
}

static void test_meta_model_in_info(void **state)
{
    chat_store_layout_t l = small_layout();
    tstore_t t, r;
    chat_owner_t alice = owner_of("u:alice");
    chat_conv_info_t ci;
    chat_settings_t cs;
    chat_buf_t blob;
    char id[25], sys[3000], name[CHAT_SETTINGS_MODEL_MAX + 1],
        listed[CHAT_SETTINGS_MODEL_MAX + 1];
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &alice, "llama", 0xA11CE, 100, id);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, "");
    /* the longest name, a temperature and a system prompt of many blocks */
    memset(name, 'm', CHAT_SETTINGS_MODEL_MAX);
    name[CHAT_SETTINGS_MODEL_MAX] = '\0';
    fill(sys, sizeof(sys), 3);
    sys[10] = '\n'; /* "model=" inside the prompt is not a model line */
    memcpy(sys + 11, "model=fake\n", 11);
    memset(&cs, 0, sizeof(cs));
    cs.model = name;
    cs.model_len = strlen(name);
    cs.has_temperature = 1;
    cs.temperature = 0.1;
    cs.system = sys;
    cs.system_len = sizeof(sys);
    chat_buf_init(&blob);
    assert_int_equal(chat_settings_write(&cs, &blob), CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, blob.data, blob.len, 200),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, name);
    listed[0] = '\0';
    assert_int_equal(chat_store_conv_list(t.st, &alice, NULL, -1, list_model_cb, listed),
                     1);
    assert_string_equal(listed, name);
    ts_clone(&r, &t);
    assert_int_equal(chat_store_conv_get(r.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, name);
    ts_close(&r);
    /* no model line, only a prompt that names one */
    chat_buf_reset(&blob, 0);
    cs.model = NULL;
    assert_int_equal(chat_settings_write(&cs, &blob), CHAT_OK);
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, blob.data, blob.len, 300),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, "");
    /* a short one, then none */
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, "model=m2\n", 9, 400),
                     CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, "m2");
    assert_int_equal(chat_store_conv_meta_set(t.st, &alice, id, NULL, 0, 500), CHAT_OK);
    assert_int_equal(chat_store_conv_get(t.st, &alice, id, &ci), CHAT_OK);
    assert_string_equal(ci.model, "");
    CHECK(t.st);
    ts_close(&t);
    chat_buf_free(&blob);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_basic),
        cmocka_unit_test(test_meta_blocks_returned),
        cmocka_unit_test(test_meta_quota),
        cmocka_unit_test(test_meta_migrate),
        cmocka_unit_test(test_meta_model_in_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
