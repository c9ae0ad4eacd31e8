/* fuzz_store.c - libFuzzer target for chat_store_attach: a corrupted or
 * hostile ChatbotHistoryFile must never crash or hang the server, and
 * whatever attaches must stay consistent under every operation.
 *
 * Input: byte 0 selects the mode, the rest is the payload.
 *   mode % 4 == 0  payload = a raw region image, loaded with FUZZ_LAYOUT
 *   mode % 4 == 1  payload = a raw image, loaded with the layout it records
 *   mode % 4 >= 2  a valid populated image is built, then the payload is
 *                  read as (offset lo, mid, hi, xor) quads applied to it
 *                  (this gets past the header checks quickly)
 * Anything that loads is then exercised through the public API with the
 * owners and ids found in it, recovered, migrated, and re-validated: a
 * failed validation after operations on a valid store is a store bug and
 * aborts. With mode bit 7, one of those operations is cut short at a crash
 * point chosen by the mode's other bits (as if its process were killed
 * there): the locks it held are recovered as their next holder would, and
 * the store must still validate and take updates.
 *
 * Built with -DFUZZ_STORE_GEN_MAIN this file is a program that writes the
 * seed corpus: fuzz_store_gen <dir>.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/store.h"
#include "../../mod_chatbot/core/chat_store_int.h"

static chat_store_layout_t fuzz_layout(void)
{
    chat_store_layout_t l;
    memset(&l, 0, sizeof(l));
    l.max_users = 4;
    l.max_conversations = 4;
    l.max_messages = 6;
    l.max_message_bytes = 1024;
    l.history_bytes = 16 * 256;
    l.max_backends = 2;
    l.queue_cap = 2;
    l.max_active = 2;
    l.metric_series = 2;
    l.max_procs = 2;
    return l;
}

static chat_owner_t owner(const char *s)
{
    chat_owner_t o;
    chat_owner_from(&o, s, strlen(s));
    return o;
}

/* ---- crash points --------------------------------------------------------------- */

static int crash_count, crash_at;
static jmp_buf crash_jmp;

static void crash_hook(void)
{
    if (crash_at && ++crash_count == crash_at) {
        longjmp(crash_jmp, 1);
    }
}

/* The locks the cut-short operation held, recovered as if its process had
 * died (this thread holds them: trylock says busy). */
static void abandon_all(chat_store_t *st)
{
    uint32_t i;

    for (i = 0; i < st->hdr->nlocks; i++) {
        cs_lock_t *lk = &st->locks[i];
        if (pthread_mutex_trylock(&lk->m.mu) == 0) {
            pthread_mutex_unlock(&lk->m.mu);
        }
        else {
            cs_lock_abandon(st, lk);
        }
    }
}

/* A deterministic store with something in every table. */
static void populate(chat_store_t *st)
{
    chat_owner_t a = owner("u:a"), b = owner("u:b");
    chat_rate_t r = {5, 1000, 5};
    chat_conv_info_t ci;
    char text[600];
    int64_t retry;
    int32_t pos;
    int be;

    memset(text, 'w', sizeof(text));
    chat_store_conv_create(st, &a, "llama", "first", 0x11, 100, &ci);
    chat_store_msg_append(st, &a, ci.id, CHAT_ROLE_USER, 0, "hello", 5, 101, NULL);
    chat_store_msg_append(st, &a, ci.id, CHAT_ROLE_ASSISTANT, CHAT_MSG_COMPLETE, text,
                          600, 102, NULL);
    chat_store_conv_create(st, &b, "qwen", NULL, 0x22, 103, &ci);
    chat_store_msg_append(st, &b, ci.id, CHAT_ROLE_USER, 0, "question", 8, 104, NULL);
    chat_store_gen_begin(st, &b, ci.id, 77, CHAT_CONV_GENERATING, 105);
    chat_store_msg_append(st, &b, ci.id, CHAT_ROLE_ASSISTANT, CHAT_MSG_STREAMING, "ans",
                          3, 106, NULL);
    chat_store_rate_take(st, &a, &r, 107, &retry);
    chat_store_user_bump(st, &b);
    be = chat_store_backend_register(st, "ollama", 1);
    chat_store_backend_acquire(st, be, 1, 108, &pos);
    chat_store_backend_acquire(st, be, 2, 108, &pos);
    chat_store_breaker_result(st, be, 0, 108, 1, 1000);
    chat_store_backend_health(st, be, 1, "0.5", "", 108);
    chat_metrics_add(st, chat_store_series(st, "llama", "ollama"), CHAT_CTR_ANSWERS, 1);
    chat_metrics_error(st, "timeout");
}

static void noop_msg(void *baton, const chat_msg_info_t *info, const char *text,
                     size_t len)
{
    (void)baton;
    (void)info;
    (void)text;
    (void)len;
}

static void noop_conv(void *baton, const chat_conv_info_t *c)
{
    (void)baton;
    (void)c;
}

static void must_be_valid(chat_store_t *st)
{
    if (cs_validate(st) != CHAT_OK) {
        fprintf(stderr, "fuzz_store: store inconsistent after operations\n");
        abort();
    }
}

/* Every public operation on everything found in the store. The read
 * buffer is global: a cut-short pass (longjmp) must not leak it. */
static chat_buf_t buf;

static void exercise(chat_store_t *st, uint8_t seed)
{
    chat_conv_info_t ci;
    chat_msg_info_t mi;
    chat_metrics_snapshot_t snap;
    chat_series_snapshot_t ss;
    chat_backend_info_t bi;
    chat_rate_t r = {2, 1000, 2};
    char text[700];
    uint32_t i, n = st->l.max_conversations;
    int k, nb;
    int64_t retry;
    int32_t pos;
    uint64_t now = 1000 + seed;

    memset(text, 'f', sizeof(text));
    for (i = 0; i < n; i++) {
        cs_conv_t *c = &st->convs[i];
        chat_owner_t o;
        char id[CHAT_CONV_ID_LEN + 1];
        if (!c->in_use) {
            continue;
        }
        memcpy(o.b, c->owner, sizeof(o.b));
        o.auth = c->owner_ref < st->nshards * st->owners_per_shard &&
                 (st->owners[c->owner_ref].flags & CS_OWN_AUTH);
        cs_conv_format_id(st, c, id);
        chat_store_conv_get(st, &o, id, &ci);
        chat_store_conv_list(st, &o, NULL, -1, noop_conv, NULL);
        chat_store_conv_latest(st, &o, c->bot, &ci);
        chat_store_msg_read(st, &o, id, 0, 0, &buf, noop_msg, NULL);
        chat_store_msg_read(st, &o, id, seed % 4, 2, &buf, noop_msg, NULL);
        chat_store_msg_tail(st, &o, id, seed % 5, seed * 3u, &buf, noop_msg, NULL);
        chat_store_msg_get(st, &o, id, seed % 3, seed % 300, &buf, &mi);
        chat_store_conv_seq(st, id);
        chat_store_gen_stop_requested(st, id, c->gen_token);
        must_be_valid(st);
        switch ((seed + i) % 6) {
        case 0:
            chat_store_msg_extend(st, &o, id, text, seed % 700, now++);
            break;
        case 1:
            chat_store_msg_append(st, &o, id, CHAT_ROLE_USER, 0, text, (size_t)seed * 3,
                                  now++, NULL);
            break;
        case 2:
            chat_store_msg_truncate(st, &o, id, seed % 3, now++);
            chat_store_msg_flags(st, &o, id, CHAT_MSG_ERROR, 0, now++);
            break;
        case 3:
            chat_store_gen_begin(st, &o, id, 5, CHAT_CONV_QUEUED, now++);
            chat_store_gen_state(st, id, 5, CHAT_CONV_GENERATING, 0);
            chat_store_gen_request_stop(st, &o, id);
            chat_store_msg_append(st, &o, id, CHAT_ROLE_ASSISTANT, CHAT_MSG_STREAMING,
                                  text, 300, now++, NULL);
            chat_store_gen_end(st, id, 5, now++);
            break;
        case 4:
            chat_store_conv_rename(st, &o, id, "renamed", now++);
            chat_store_conv_flags(st, &o, id, CHAT_CONV_ARCHIVED, 0, now++);
            break;
        default:
            chat_store_conv_delete(st, &o, id);
            break;
        }
        chat_store_rate_take(st, &o, &r, now, &retry);
        chat_store_user_bump(st, &o);
        chat_store_user_seq(st, &o);
        must_be_valid(st);
    }
    /* new conversations (evicting), a big message (arena pressure) */
    for (k = 0; k < 3; k++) {
        chat_owner_t o = owner(k ? "u:new" : "u:a");
        if (chat_store_conv_create(st, &o, "llama", NULL, 0x1000 + (uint64_t)k + seed,
                                   now++, &ci) == CHAT_OK) {
            chat_store_msg_append(st, &o, ci.id, CHAT_ROLE_USER, 0, text, 700, now++,
                                  NULL);
            chat_store_msg_extend(st, &o, ci.id, text, 300, now++);
        }
        must_be_valid(st);
    }
    nb = chat_store_backend_count(st);
    for (k = 0; k < nb; k++) {
        uint64_t t;
        for (t = 1; t <= 4; t++) {
            chat_store_backend_acquire(st, k, t, now, &pos);
        }
        chat_store_backend_beat(st, k, 1, now);
        chat_store_backend_cancel(st, k, 3);
        chat_store_backend_release(st, k, 1);
        chat_store_backend_acquire(st, k, 2, now + 70000, &pos);
        chat_store_breaker_allow(st, k, now, 100);
        chat_store_breaker_result(st, k, seed & 1, now, 2, 100);
        chat_store_backend_health(st, k, 0, "v", "down", now);
        chat_store_backend_get(st, k, &bi);
    }
    chat_store_backend_register(st, "vllm", 0);
    k = chat_store_series(st, "qwen", "vllm");
    chat_metrics_add(st, k, CHAT_CTR_TOKENS, 3);
    chat_metrics_observe(st, k, CHAT_HIST_TPS, seed);
    chat_metrics_gauge_add(st, CHAT_G_QUEUED, -1);
    chat_metrics_error(st, "fuzz");
    chat_metrics_snapshot(st, &snap);
    for (k = 0; k < chat_metrics_series_count(st); k++) {
        chat_metrics_series_get(st, k, &ss);
    }
    must_be_valid(st);
    chat_store_recover(st, now);
    must_be_valid(st);
}

/* Migrates into a fresh store of a different (smaller) layout. */
static void migrate_smaller(const chat_store_t *src)
{
    chat_store_layout_t l = fuzz_layout();
    chat_store_t *dst;
    void *mem;
    size_t n;

    l.max_conversations = 2;
    l.max_messages = 2;
    l.max_message_bytes = 300;
    l.max_users = 2;
    l.max_backends = 1;
    l.metric_series = 1;
    n = chat_store_size(&l);
    mem = malloc(n);
    if (!mem || chat_store_format(&dst, mem, n, &l, 5) != CHAT_OK) {
        abort();
    }
    chat_store_migrate(dst, src, 6);
    must_be_valid(dst);
    chat_store_detach(dst);
    free(mem);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat_store_layout_t l = fuzz_layout();
    chat_store_t *st = NULL;
    void *img;
    size_t n;
    uint8_t mode;

    if (size < 1) {
        return 0;
    }
    mode = data[0];
    data++;
    size--;
    if (mode % 4 < 2) {
        /* exactly the payload, so ASan sees any read past its end */
        n = size;
        img = malloc(n ? n : 1);
        if (!img) {
            return 0;
        }
        if (n) {
            memcpy(img, data, n);
        }
        {
            /* the loader's first look: the size from the header alone is
             * the size layout_of accepts, for a whole image */
            size_t want = chat_store_image_size(img, n);
            chat_store_layout_t rec;
            if (chat_store_layout_of(img, n, &rec) == CHAT_OK &&
                want != chat_store_size(&rec)) {
                abort();
            }
        }
        if (mode % 4 == 1 && chat_store_layout_of(img, n, &l) != CHAT_OK) {
            free(img);
            return 0;
        }
    }
    else {
        chat_store_t *fresh;
        size_t i;
        n = chat_store_size(&l);
        img = malloc(n);
        if (!img || chat_store_format(&fresh, img, n, &l, 1) != CHAT_OK) {
            abort();
        }
        populate(fresh);
        chat_store_detach(fresh);
        for (i = 0; i + 4 <= size; i += 4) {
            size_t off = ((size_t)data[i] | ((size_t)data[i + 1] << 8) |
                          ((size_t)data[i + 2] << 16)) %
                         n;
            ((uint8_t *)img)[off] ^= data[i + 3];
        }
    }
    if (chat_store_load(&st, img, n, &l) == CHAT_OK) {
        must_be_valid(st);
        if (mode & 0x80) {
            /* cut one pass of operations short at crash point 1..32 */
            crash_count = 0;
            crash_at = 1 + ((mode >> 2) & 31);
            chat_store_crash_hook = crash_hook;
            if (!setjmp(crash_jmp)) {
                exercise(st, (uint8_t)(mode >> 2));
            }
            chat_store_crash_hook = NULL;
            crash_at = 0;
            abandon_all(st);
            chat_store_maintain(st, 5000);
            must_be_valid(st);
        }
        exercise(st, (uint8_t)(mode >> 2));
        migrate_smaller(st);
        chat_store_detach(st);
        chat_buf_free(&buf);
    }
    free(img);
    return 0;
}

#ifdef FUZZ_STORE_GEN_MAIN
/* Writes the seed corpus into dir. */
static void put(const char *dir, const char *name, uint8_t mode, const void *p, size_t n)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(&mode, 1, 1, f);
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(int argc, char **argv)
{
    chat_store_layout_t l = fuzz_layout();
    chat_store_t *st;
    size_t n = chat_store_size(&l);
    void *mem = malloc(n);
    static const uint8_t flips[] = {0x40, 0x00, 0x00, 0x01, 0x10, 0x01,
                                    0x00, 0x80, 0x00, 0x02, 0x00, 0xff};

    if (argc != 2 || !mem) {
        fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
        return 2;
    }
    chat_store_format(&st, mem, n, &l, 1);
    put(argv[1], "empty.img", 0, mem, n);
    populate(st);
    put(argv[1], "populated.img", 4, mem, n);
    put(argv[1], "populated-own-layout.img", 5, mem, n);
    put(argv[1], "truncated.img", 0, mem, n - 100);
    put(argv[1], "mutate-none", 2, "", 0);
    put(argv[1], "mutate-some", 6, flips, sizeof(flips));
    put(argv[1], "cut-early", 0x82, "", 0);
    put(argv[1], "cut-late", 0xFE, "", 0);
    put(argv[1], "cut-mutated", 0x96, flips, sizeof(flips));
    chat_store_detach(st);
    free(mem);
    return 0;
}
#endif
