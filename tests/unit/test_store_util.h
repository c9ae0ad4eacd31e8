/* test_store_util.h - helpers shared by the test_store_*.c unit tests:
 * small layouts, owners, a malloc'ed region, a full consistency check
 * after every mutation, a log catcher; a populated store (the format,
 * corruption and restart tests) and the crash tests' small world, private
 * or MAP_SHARED. Header-only (static). */
#ifndef TEST_STORE_UTIL_H
#define TEST_STORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "chat/store.h"
#include "../../mod_chatbot/core/chat_store_int.h"

static inline chat_store_layout_t small_layout(void)
{
    chat_store_layout_t l;
    memset(&l, 0, sizeof(l));
    l.max_users = 32;
    l.max_conversations = 8;
    l.max_messages = 16;
    l.max_message_bytes = 4096;
    l.history_bytes = 64 * 256; /* 64 blocks */
    l.max_backends = 4;
    l.queue_cap = 4;
    l.max_active = 4;
    l.metric_series = 4;
    l.max_procs = 4;
    return l;
}

typedef struct {
    chat_store_t *st;
    void *mem;
    size_t size;
    chat_store_layout_t l;
} tstore_t;

static inline void ts_open(tstore_t *t, const chat_store_layout_t *l, uint64_t now)
{
    t->l = *l;
    t->size = chat_store_size(l);
    assert_true(t->size > 0);
    t->mem = malloc(t->size);
    assert_non_null(t->mem);
    memset(t->mem, 0xA5, t->size); /* format must not rely on zeroed memory */
    assert_int_equal(chat_store_format(&t->st, t->mem, t->size, l, now), CHAT_OK);
}

static inline void ts_close(tstore_t *t)
{
    chat_store_detach(t->st);
    free(t->mem);
    t->st = NULL;
    t->mem = NULL;
}

/* The invariants attach checks must hold after every operation. */
#define CHECK(st) assert_int_equal(cs_validate(st), CHAT_OK)

/* A byte copy of the region, attached: what a restart from the file sees. */
static inline void ts_clone(tstore_t *dst, const tstore_t *src)
{
    dst->l = src->l;
    dst->size = src->size;
    dst->mem = malloc(src->size);
    assert_non_null(dst->mem);
    memcpy(dst->mem, src->mem, src->size);
    assert_int_equal(chat_store_load(&dst->st, dst->mem, dst->size, &dst->l), CHAT_OK);
}

static inline chat_owner_t owner_of(const char *name)
{
    chat_owner_t o;
    chat_owner_from(&o, name, strlen(name));
    return o;
}

/* Creates a conversation and returns its id in id (25 bytes). */
static inline void mkconv(chat_store_t *st, const chat_owner_t *o, const char *bot,
                          uint64_t tag, uint64_t now, char *id)
{
    chat_conv_info_t ci;
    assert_int_equal(chat_store_conv_create(st, o, bot, NULL, tag, now, &ci), CHAT_OK);
    memcpy(id, ci.id, CHAT_CONV_ID_LEN + 1);
}

/* Collects messages delivered by msg_read / msg_tail. */
typedef struct {
    int n;
    chat_msg_info_t info[64];
    char text[64][512];
    size_t len[64];
} msgs_t;

static inline void collect_msg(void *baton, const chat_msg_info_t *info, const char *text,
                               size_t len)
{
    msgs_t *m = baton;
    if (m->n < 64) {
        m->info[m->n] = *info;
        m->len[m->n] = len;
        memcpy(m->text[m->n], text, len < 511 ? len : 511);
        m->text[m->n][len < 511 ? len : 511] = '\0';
        assert_int_equal(text[len], '\0');
    }
    m->n++;
}

/* Collects conversation ids listed by conv_list. */
typedef struct {
    int n;
    chat_conv_info_t c[32];
} convs_t;

static inline void collect_conv(void *baton, const chat_conv_info_t *c)
{
    convs_t *v = baton;
    if (v->n < 32) {
        v->c[v->n] = *c;
    }
    v->n++;
}

/* Log catcher. */
typedef struct {
    int n;
    chat_log_level_t level[32];
    char msg[32][256];
} logs_t;

static inline void catch_log(void *baton, chat_log_level_t level, const char *msg)
{
    logs_t *lg = baton;
    if (lg->n < 32) {
        lg->level[lg->n] = level;
        snprintf(lg->msg[lg->n], sizeof(lg->msg[0]), "%s", msg);
    }
    lg->n++;
}

/* ---- a populated store (format, corruption and restart tests) ------------------ */

static const chat_rate_t RATE = {10, 60000, 10};

/* A store with a bit of everything in it. */
typedef struct {
    char a1[25], a2[25], b1[25];
    chat_owner_t alice, bob;
    int be;
    int series;
} pop_t;

static inline void populate(chat_store_t *st, pop_t *p)
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
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_USER, 0,
                                           "hello", 5, 2000, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_ASSISTANT,
                                           CHAT_MSG_COMPLETE, big, sizeof(big), 2100,
                                           NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a1, CHAT_ROLE_USER, 0, "x",
                                           1, 2200, NULL),
                     CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->alice, p->a2, CHAT_ROLE_SYSTEM, 0,
                                           "sys", 3, 2300, NULL),
                     CHAT_OK);
    assert_int_equal(
        chat_store_conv_flags(st, &p->alice, p->a2, CHAT_CONV_ARCHIVED, 0, 2400),
        CHAT_OK);
    assert_int_equal(chat_store_msg_append(st, &p->bob, p->b1, CHAT_ROLE_USER, 0,
                                           "hi bob", 6, 2500, NULL),
                     CHAT_OK);
    assert_int_equal(
        chat_store_gen_begin(st, &p->bob, p->b1, 99, CHAT_CONV_GENERATING, 2600),
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

static inline void same_msgs(const msgs_t *a, const msgs_t *b)
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

/* ---- a small world --------------------------------------------------------------- */

typedef struct {
    chat_store_t *st;
    void *mem;
    size_t size;
    chat_store_layout_t l;
    int shared;        /* mmap'ed MAP_SHARED (fork tests) */
    chat_owner_t o[4]; /* A, B authenticated; C, D anonymous */
    char a1[25], a2[25], b1[25], c1[25], d1[25];
} world_t;

static inline chat_store_layout_t crash_layout(void)
{
    chat_store_layout_t l = small_layout();
    l.max_conversations = 8;
    l.max_messages = 6;
    l.max_message_bytes = 4096;
    l.history_bytes = 48 * 256;
    l.max_procs = 8;
    return l;
}

/* Owners: two in each shard, so evictions cross shards. */
static inline void pick_owners(world_t *w)
{
    int want[4] = {0, 1, 0, 1}, k, i;
    char name[32];

    for (k = 0; k < 4; k++) {
        for (i = 0;; i++) {
            snprintf(name, sizeof(name), "%s:o%d-%d", k < 2 ? "u" : "s", k, i);
            w->o[k] = owner_of(name);
            if ((int)cs_shard_of(w->st, w->o[k].b) == want[k] % (int)w->st->nshards) {
                break;
            }
        }
    }
}

static inline void text_of(char *buf, size_t n, char tag)
{
    size_t i;
    for (i = 0; i < n; i++) {
        buf[i] = (char)(tag + (i % 7));
    }
}

static inline void world_add(world_t *w, int who, const char *id, chat_role_t role,
                             size_t n, char tag, uint64_t now)
{
    static char buf[4096];
    text_of(buf, n, tag);
    assert_int_equal(
        chat_store_msg_append(w->st, &w->o[who], id, role, 0, buf, n, now, NULL),
        CHAT_OK);
}

static inline void world_open_l(world_t *w, int shared, const chat_store_layout_t *l)
{
    memset(w, 0, sizeof(*w));
    w->l = *l;
    w->size = chat_store_size(&w->l);
    w->shared = shared;
    if (shared) {
        w->mem = mmap(NULL, w->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                      -1, 0);
        assert_true(w->mem != MAP_FAILED);
    }
    else {
        w->mem = malloc(w->size);
        assert_non_null(w->mem);
    }
    assert_int_equal(chat_store_format(&w->st, w->mem, w->size, &w->l, 1), CHAT_OK);
    pick_owners(w);
    mkconv(w->st, &w->o[0], "bot-a", 0xA1, 10, w->a1);
    world_add(w, 0, w->a1, CHAT_ROLE_USER, 40, 'a', 11);
    world_add(w, 0, w->a1, CHAT_ROLE_ASSISTANT, 600, 'b', 12);
    world_add(w, 0, w->a1, CHAT_ROLE_USER, 30, 'c', 13);
    mkconv(w->st, &w->o[0], "bot-a", 0xA2, 14, w->a2);
    world_add(w, 0, w->a2, CHAT_ROLE_USER, 200, 'd', 15);
    mkconv(w->st, &w->o[1], "bot-b", 0xB1, 16, w->b1);
    world_add(w, 1, w->b1, CHAT_ROLE_USER, 100, 'e', 17);
    world_add(w, 1, w->b1, CHAT_ROLE_ASSISTANT, 1500, 'f', 18);
    mkconv(w->st, &w->o[2], "bot-c", 0xC1, 19, w->c1);
    world_add(w, 2, w->c1, CHAT_ROLE_USER, 20, 'g', 20);
    world_add(w, 2, w->c1, CHAT_ROLE_ASSISTANT, 900, 'h', 21);
    {
        /* a regenerated answer: c1 has two versions of it (op_select) */
        static char vbuf[120];
        text_of(vbuf, sizeof(vbuf), 'H');
        assert_int_equal(chat_store_msg_branch(w->st, &w->o[2], w->c1, 0,
                                               CHAT_ROLE_ASSISTANT, 0, vbuf, sizeof(vbuf),
                                               21, NULL),
                         CHAT_OK);
    }
    mkconv(w->st, &w->o[3], "bot-d", 0xD1, 22, w->d1);
    world_add(w, 3, w->d1, CHAT_ROLE_USER, 1000, 'i', 23);
    CHECK(w->st);
}

static inline void world_open(world_t *w, int shared)
{
    chat_store_layout_t l = crash_layout();
    world_open_l(w, shared, &l);
}

static inline void world_close(world_t *w)
{
    chat_store_detach(w->st);
    if (w->shared) {
        munmap(w->mem, w->size);
    }
    else {
        free(w->mem);
    }
}

#endif
