/* Unit tests: answer versions and branches in the shared store - a
 * regenerated answer and an edited question become versions (nothing is
 * deleted), select switches the active path and with it the model's
 * context, the version bound, dropping the oldest messages, images from
 * before versions, a saved image, and chat/versions.h on what is read. */
#include "test_store_util.h"
#include "chat/versions.h"

static void add(chat_store_t *st, const chat_owner_t *o, const char *id, chat_role_t role,
                const char *text, uint32_t want)
{
    uint32_t idx = 99;
    assert_int_equal(
        chat_store_msg_append(st, o, id, role, 0, text, strlen(text), 1000, &idx),
        CHAT_OK);
    assert_int_equal(idx, want);
    CHECK(st);
}

static void branch(chat_store_t *st, const chat_owner_t *o, const char *id,
                   uint32_t parent, chat_role_t role, const char *text, uint32_t want)
{
    uint32_t idx = 99;
    assert_int_equal(
        chat_store_msg_branch(st, o, id, parent, role, 0, text, strlen(text), 1000, &idx),
        CHAT_OK);
    assert_int_equal(idx, want);
    CHECK(st);
}

/* The context as texts joined with '|'. */
static void tail_is(chat_store_t *st, const chat_owner_t *o, const char *id,
                    const char *want)
{
    msgs_t m;
    chat_buf_t buf;
    char got[1024] = "";
    int i, n;

    memset(&m, 0, sizeof(m));
    chat_buf_init(&buf);
    n = chat_store_msg_tail(st, o, id, 0, 1 << 20, &buf, collect_msg, &m);
    assert_int_equal(n, m.n);
    for (i = 0; i < m.n; i++) {
        if (i) {
            strcat(got, "|");
        }
        strcat(got, m.text[i]);
    }
    assert_string_equal(got, want);
    chat_buf_free(&buf);
}

/* The active path by chat/versions.h over everything read, as texts. */
static void path_is(chat_store_t *st, const chat_owner_t *o, const char *id,
                    const char *want)
{
    msgs_t m;
    chat_buf_t buf;
    uint32_t parent[64], flags[64], path[64], k, n;
    char got[1024] = "";
    int i;

    memset(&m, 0, sizeof(m));
    chat_buf_init(&buf);
    assert_true(chat_store_msg_read(st, o, id, 0, 0, &buf, collect_msg, &m) >= 0);
    for (i = 0; i < m.n; i++) {
        assert_int_equal(m.info[i].index, (uint32_t)i);
        parent[i] = m.info[i].parent;
        flags[i] = m.info[i].flags;
    }
    n = chat_ver_path(parent, flags, (uint32_t)m.n, path);
    for (k = 0; k < n; k++) {
        if (k) {
            strcat(got, "|");
        }
        strcat(got, m.text[path[k]]);
    }
    assert_string_equal(got, want);
    chat_buf_free(&buf);
}

static void info_of(chat_store_t *st, const chat_owner_t *o, const char *id, uint32_t i,
                    chat_msg_info_t *mi)
{
    assert_int_equal(chat_store_msg_get(st, o, id, i, 0, NULL, mi), CHAT_OK);
}

/* Regenerate twice: three answers under one question, the newest chosen;
 * select the first: context and path follow; a new question continues the
 * chosen one. */
static void test_regenerate_versions(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice");
    chat_msg_info_t mi;
    chat_conv_info_t ci;
    tstore_t t;
    char id[25];
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    add(t.st, &o, id, CHAT_ROLE_USER, "q", 0);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a1", 1);
    branch(t.st, &o, id, 0, CHAT_ROLE_ASSISTANT, "a2", 2);
    branch(t.st, &o, id, 0, CHAT_ROLE_ASSISTANT, "a3", 3);
    tail_is(t.st, &o, id, "q|a3");
    path_is(t.st, &o, id, "q|a3");
    info_of(t.st, &o, id, 1, &mi);
    assert_int_equal(mi.parent, 0);
    assert_true(mi.flags & CHAT_MSG_ALT);
    info_of(t.st, &o, id, 3, &mi);
    assert_false(mi.flags & CHAT_MSG_ALT);
    info_of(t.st, &o, id, 0, &mi);
    assert_int_equal(mi.parent, CHAT_MSG_NO_PARENT);
    assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
    assert_int_equal(ci.nmsgs, 4); /* nothing deleted */

    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 2000), CHAT_OK);
    CHECK(t.st);
    tail_is(t.st, &o, id, "q|a1");
    path_is(t.st, &o, id, "q|a1");
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 2000), CHAT_OK); /* again */
    tail_is(t.st, &o, id, "q|a1");
    add(t.st, &o, id, CHAT_ROLE_USER, "q2", 4);
    info_of(t.st, &o, id, 4, &mi);
    assert_int_equal(mi.parent, 1);
    tail_is(t.st, &o, id, "q|a1|q2");
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 2, 2000), CHAT_OK);
    tail_is(t.st, &o, id, "q|a2");
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 2000), CHAT_OK);
    tail_is(t.st, &o, id, "q|a1|q2"); /* the branch's own choice is kept */
    ts_close(&t);
}

/* Editing the first of three turns branches at the root; the old turns
 * stay and come back when the first version is selected. */
static void test_edit_branches(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice");
    uint32_t sib[8], pos = 9, parent[16], flags[16], n;
    msgs_t m;
    chat_buf_t buf;
    tstore_t t, c;
    char id[25];
    int i;
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    add(t.st, &o, id, CHAT_ROLE_USER, "u1", 0);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a1", 1);
    add(t.st, &o, id, CHAT_ROLE_USER, "u2", 2);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a2", 3);
    add(t.st, &o, id, CHAT_ROLE_USER, "u3", 4);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a3", 5);
    branch(t.st, &o, id, CHAT_MSG_NO_PARENT, CHAT_ROLE_USER, "e1", 6);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "b1", 7);
    tail_is(t.st, &o, id, "e1|b1");
    path_is(t.st, &o, id, "e1|b1");

    memset(&m, 0, sizeof(m));
    chat_buf_init(&buf);
    assert_int_equal(chat_store_msg_read(t.st, &o, id, 0, 0, &buf, collect_msg, &m), 8);
    for (i = 0; i < m.n; i++) {
        parent[i] = m.info[i].parent;
        flags[i] = m.info[i].flags;
    }
    n = chat_ver_siblings(parent, 8, 6, sib, 8, &pos);
    assert_int_equal(n, 2);
    assert_int_equal(sib[0], 0);
    assert_int_equal(sib[1], 6);
    assert_int_equal(pos, 1);
    assert_int_equal(chat_ver_siblings(parent, 8, 3, sib, 8, &pos), 1);
    assert_int_equal(pos, 0);
    (void)flags;

    /* a saved image (the history file) keeps versions and choices */
    ts_clone(&c, &t);
    tail_is(c.st, &o, id, "e1|b1");
    ts_close(&c);

    assert_int_equal(chat_store_msg_select(t.st, &o, id, 0, 2000), CHAT_OK);
    tail_is(t.st, &o, id, "u1|a1|u2|a2|u3|a3");
    /* an edit of the second question of the old branch */
    branch(t.st, &o, id, 1, CHAT_ROLE_USER, "e2", 8);
    tail_is(t.st, &o, id, "u1|a1|e2");
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 2, 2000), CHAT_OK);
    tail_is(t.st, &o, id, "u1|a1|u2|a2|u3|a3");
    chat_buf_free(&buf);
    ts_close(&t);
}

static void test_errors_and_limits(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice"), eve = owner_of("u:eve");
    chat_msg_info_t mi;
    tstore_t t;
    char id[25], text[8];
    uint32_t i, idx;
    (void)state;

    l.max_messages = 64;
    l.history_bytes = 128 * 256;
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    add(t.st, &o, id, CHAT_ROLE_USER, "q", 0);
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 2000), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_msg_select(t.st, &eve, id, 0, 2000), CHAT_ENOTFOUND);
    assert_int_equal(chat_store_msg_branch(t.st, &o, id, 5, CHAT_ROLE_ASSISTANT, 0, "x",
                                           1, 1000, &idx),
                     CHAT_ENOTFOUND);
    assert_int_equal(chat_store_msg_branch(t.st, &eve, id, 0, CHAT_ROLE_ASSISTANT, 0, "x",
                                           1, 1000, &idx),
                     CHAT_ENOTFOUND);
    for (i = 0; i < CHAT_MSG_MAX_VERSIONS; i++) {
        snprintf(text, sizeof(text), "a%u", i);
        branch(t.st, &o, id, 0, CHAT_ROLE_ASSISTANT, text, i + 1);
    }
    assert_int_equal(chat_store_msg_branch(t.st, &o, id, 0, CHAT_ROLE_ASSISTANT, 0, "x",
                                           1, 1000, &idx),
                     CHAT_ELIMIT);
    tail_is(t.st, &o, id, "q|a31");
    /* a generating conversation's active path does not move */
    assert_int_equal(chat_store_gen_begin(t.st, &o, id, 77, CHAT_CONV_GENERATING, 3000),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 3000), CHAT_EBUSY);
    assert_int_equal(chat_store_gen_end(t.st, id, 77, 3000), CHAT_OK);
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 1, 3000), CHAT_OK);
    tail_is(t.st, &o, id, "q|a0");
    info_of(t.st, &o, id, 32, &mi);
    assert_true(mi.flags & CHAT_MSG_ALT);
    ts_close(&t);
}

/* The per-conversation cap drops the oldest messages, other versions or
 * not: the active path stays one path. */
static void test_drop_oldest(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice");
    tstore_t t;
    char id[25];
    (void)state;

    l.max_messages = 6;
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    add(t.st, &o, id, CHAT_ROLE_USER, "u1", 0);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a1", 1);
    branch(t.st, &o, id, CHAT_MSG_NO_PARENT, CHAT_ROLE_USER, "e1", 2);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "b1", 3);
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 0, 2000), CHAT_OK);
    add(t.st, &o, id, CHAT_ROLE_USER, "u2", 4);
    assert_int_equal(chat_store_msg_select(t.st, &o, id, 2, 2000), CHAT_OK);
    tail_is(t.st, &o, id, "e1|b1");
    add(t.st, &o, id, CHAT_ROLE_USER, "f2", 5);
    /* full: u1 (another version) goes; its children a1 and u2 must not
     * take over the active path */
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "g2", 5);
    tail_is(t.st, &o, id, "e1|b1|f2|g2");
    path_is(t.st, &o, id, "e1|b1|f2|g2");
    add(t.st, &o, id, CHAT_ROLE_USER, "f3", 5); /* a1 goes, and u2 stays aside */
    tail_is(t.st, &o, id, "e1|b1|f2|g2|f3");
    /* then the chosen root goes: its chosen child becomes the root */
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "g3", 5);
    tail_is(t.st, &o, id, "b1|f2|g2|f3|g3");
    path_is(t.st, &o, id, "b1|f2|g2|f3|g3");
    ts_close(&t);
}

/* An image written before versions existed (parent_back 0 everywhere, no
 * CHAT_MSG_ALT) reads as one straight path. */
static void test_old_image(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice");
    chat_msg_info_t mi;
    cs_conv_t *c;
    uint32_t m;
    tstore_t t;
    char id[25];
    (void)state;

    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    add(t.st, &o, id, CHAT_ROLE_USER, "u1", 0);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a1", 1);
    add(t.st, &o, id, CHAT_ROLE_USER, "u2", 2);
    c = cs_conv_find(t.st, &o, id);
    assert_non_null(c);
    for (m = c->first_msg; m != CS_NIL; m = cs_mh(t.st, m)->next_msg) {
        cs_mh(t.st, m)->parent_back = 0;
    }
    c->flags &= ~CS_CONV_LINEAR; /* nor did the flag */
    CHECK(t.st);
    tail_is(t.st, &o, id, "u1|a1|u2");
    path_is(t.st, &o, id, "u1|a1|u2");
    info_of(t.st, &o, id, 2, &mi);
    assert_int_equal(mi.parent, 1);
    add(t.st, &o, id, CHAT_ROLE_ASSISTANT, "a2", 3);
    branch(t.st, &o, id, 2, CHAT_ROLE_ASSISTANT, "a2b", 4);
    tail_is(t.st, &o, id, "u1|a1|u2|a2b");
    ts_close(&t);
}

/* A new conversation is marked linear (its leaf is its last message, no
 * walk): it stays so through appends and the cap's drops, and stops being
 * linear at its first branch or message marked as another version, after
 * which the walk gives the same answers as the reference (chat/versions.h).
 * The image check refuses the mark on a conversation that has branches. */
static void test_linear_mark(void **state)
{
    chat_store_layout_t l = small_layout();
    chat_owner_t o = owner_of("u:alice");
    cs_conv_t *c;
    tstore_t t;
    char id[25], id2[25], want[256] = "";
    uint32_t i;
    (void)state;

    l.max_messages = 8;
    ts_open(&t, &l, 0);
    mkconv(t.st, &o, "llama", 1, 100, id);
    c = cs_conv_find(t.st, &o, id);
    assert_non_null(c);
    assert_true(c->flags & CS_CONV_LINEAR);
    for (i = 0; i < 12; i++) {
        char txt[8];
        snprintf(txt, sizeof(txt), "m%u", i);
        add(t.st, &o, id, i % 2 ? CHAT_ROLE_ASSISTANT : CHAT_ROLE_USER, txt,
            i < 8 ? i : 7);
        assert_true(c->flags & CS_CONV_LINEAR);
    }
    for (i = 4; i < 12; i++) {
        snprintf(want + strlen(want), sizeof(want) - strlen(want), "%sm%u",
                 i > 4 ? "|" : "", i);
    }
    tail_is(t.st, &o, id, want);
    path_is(t.st, &o, id, want);
    /* not shown to callers */
    {
        chat_conv_info_t ci;
        assert_int_equal(chat_store_conv_get(t.st, &o, id, &ci), CHAT_OK);
        assert_int_equal(ci.flags & ~(CHAT_CONV_ARCHIVED | CHAT_CONV_STOPPED), 0);
    }
    /* a regenerated answer: no longer linear, the walk follows it */
    branch(t.st, &o, id, 6, CHAT_ROLE_ASSISTANT, "r", 7);
    assert_false(c->flags & CS_CONV_LINEAR);
    tail_is(t.st, &o, id, "m5|m6|m7|m8|m9|m10|r");
    path_is(t.st, &o, id, "m5|m6|m7|m8|m9|m10|r");
    /* the mark on a conversation with versions is a damaged image */
    c->flags |= CS_CONV_LINEAR;
    assert_int_not_equal(cs_validate(t.st), CHAT_OK);
    c->flags &= ~CS_CONV_LINEAR;
    CHECK(t.st);

    /* the last message marked as another version by hand */
    mkconv(t.st, &o, "llama", 1, 101, id2);
    add(t.st, &o, id2, CHAT_ROLE_USER, "q", 0);
    add(t.st, &o, id2, CHAT_ROLE_ASSISTANT, "a", 1);
    assert_int_equal(chat_store_msg_flags(t.st, &o, id2, CHAT_MSG_ALT, 0, 3000), CHAT_OK);
    CHECK(t.st);
    c = cs_conv_find(t.st, &o, id2);
    assert_false(c->flags & CS_CONV_LINEAR);
    tail_is(t.st, &o, id2, "q");
    path_is(t.st, &o, id2, "q");
    ts_close(&t);
}

/* chat/versions.h on its own: a parent not earlier counts as none. */
static void test_pure(void **state)
{
    uint32_t parent[] = {CHAT_MSG_NO_PARENT, 0, 0, 7, 2};
    uint32_t flags[] = {0, CHAT_MSG_ALT, 0, CHAT_MSG_ALT, 0};
    uint32_t path[5], pos = 9;
    (void)state;

    assert_int_equal(chat_ver_path(parent, flags, 5, path), 3);
    assert_int_equal(path[0], 0);
    assert_int_equal(path[1], 2);
    assert_int_equal(path[2], 4);
    assert_int_equal(chat_ver_siblings(parent, 5, 3, NULL, 0, &pos), 2); /* roots */
    assert_int_equal(pos, 1);
    assert_int_equal(chat_ver_siblings(parent, 5, 9, NULL, 0, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regenerate_versions), cmocka_unit_test(test_edit_branches),
        cmocka_unit_test(test_errors_and_limits),   cmocka_unit_test(test_drop_oldest),
        cmocka_unit_test(test_old_image),           cmocka_unit_test(test_pure),
        cmocka_unit_test(test_linear_mark),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
