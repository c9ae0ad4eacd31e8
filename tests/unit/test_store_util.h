/* test_store_util.h - helpers shared by the test_store_*.c unit tests:
 * small layouts, owners, a malloc'ed region, a full consistency check
 * after every mutation, and a log catcher. Header-only (static). */
#ifndef TEST_STORE_UTIL_H
#define TEST_STORE_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

#endif
