/* test_stream_util.h - helpers shared by the test_stream_*.c unit tests:
 * the vectors (VECTORS names their folder, default tests/vectors), an
 * independent strict UTF-8 check, an event recorder that checks the
 * callback's invariants, and runs of a stream fed whole, byte by byte and
 * split at every offset and pair of offsets, with LF, CRLF or CR line
 * ends. Header-only (static). */
#ifndef TEST_STREAM_UTIL_H
#define TEST_STREAM_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "chat/stream.h"

static inline char *load_vector(const char *name, size_t *n)
{
    const char *dir = getenv("VECTORS");
    char path[512];
    FILE *f;
    long sz;
    char *buf;

    snprintf(path, sizeof(path), "%s/ollama/%s", dir && *dir ? dir : "tests/vectors",
             name);
    f = fopen(path, "rb");
    if (!f) {
        fail_msg("cannot open vector %s", path);
    }
    fseek(f, 0, SEEK_END);
    sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)sz + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    buf[sz] = '\0';
    fclose(f);
    *n = (size_t)sz;
    return buf;
}

#include "common/strict_utf8.h"

/* Records events as "C:<text>|" "T:..|" "E:..|" "D:|" and checks the
 * invariants (ev->len is checked by text[len] == NUL and the UTF-8 check,
 * which refuses NUL). */
typedef struct {
    chat_buf_t log;
    int ndone, nerror, nev;
    int abort_at; /* abort on this event number (1-based), 0 = never */
    chat_stats_t done_stats;
} rec_t;

static inline void rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    chat_buf_init(&r->log);
    chat_buf_append(&r->log, "", 0);
    chat_stats_init(&r->done_stats);
}

static inline int rec_cb(void *baton, const chat_event_t *ev)
{
    rec_t *r = baton;
    char tag = '?';

    r->nev++;
    /* nothing after DONE or ERROR */
    assert_int_equal(r->ndone + r->nerror, 0);
    assert_non_null(ev->text);
    assert_int_equal(ev->text[ev->len], '\0');
    assert_non_null(ev->stats);
    switch (ev->type) {
    case CHAT_EV_CONTENT:
        tag = 'C';
        break;
    case CHAT_EV_THINKING:
        tag = 'T';
        break;
    case CHAT_EV_ERROR:
        tag = 'E';
        r->nerror++;
        break;
    case CHAT_EV_DONE:
        tag = 'D';
        r->ndone++;
        r->done_stats = *ev->stats;
        break;
    default:
        fail_msg("bad event type %d", ev->type);
    }
    if (ev->type == CHAT_EV_CONTENT || ev->type == CHAT_EV_THINKING) {
        assert_true(ev->len > 0);
    }
    assert_true(strict_utf8((const unsigned char *)ev->text, ev->len));
    chat_buf_printf(&r->log, "%c:", tag);
    chat_buf_append(&r->log, ev->text, ev->len);
    chat_buf_append(&r->log, "|", 1);
    if (r->abort_at && r->nev == r->abort_at) {
        return 1;
    }
    return 0;
}

/* Feeds data cut at the given offsets, then finishes. Returns the first
 * failing status (or finish's); the log ends with "=<status>:<error>". */
static inline chat_status_t run_cuts(chat_wire_t wire, const char *data, size_t n,
                                     const size_t *cuts, size_t ncuts, size_t max_line,
                                     rec_t *r)
{
    chat_stream_t *s;
    chat_status_t st = CHAT_OK;
    size_t i, at = 0;

    assert_int_equal(chat_stream_create(&s, wire, max_line, rec_cb, r), CHAT_OK);
    for (i = 0; i <= ncuts && st == CHAT_OK; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        st = chat_stream_feed(s, data + at, to - at);
        at = to;
    }
    if (st == CHAT_OK) {
        st = chat_stream_finish(s);
        assert_int_equal(chat_stream_finish(s), st); /* idempotent */
    }
    assert_int_equal(chat_stream_is_done(s), r->ndone);
    if (st == CHAT_OK) {
        assert_int_equal(r->ndone, 1);
    }
    chat_buf_printf(&r->log, "=%d:%s", (int)st, chat_stream_error(s));
    chat_stream_destroy(s);
    return st;
}

static inline chat_status_t run_whole(chat_wire_t wire, const char *data, size_t n,
                                      size_t max_line, rec_t *r)
{
    return run_cuts(wire, data, n, NULL, 0, max_line, r);
}

/* Whole, byte by byte, every single cut and, with pairs, every pair of
 * cuts give the same log (inputs over 320 bytes: the first cut on a stride
 * of n/32, the second at every offset after it, to bound the run time). */
static inline void check_splits_ex(chat_wire_t wire, const char *data, size_t n,
                                   size_t max_line, const char *want_log, int pairs)
{
    rec_t ref, r;
    size_t i, j, cuts[2], *all;
    size_t stride = !pairs ? n + 1 : n <= 320 ? 1 : n / 32;

    rec_init(&ref);
    run_whole(wire, data, n, max_line, &ref);
    if (want_log) {
        assert_string_equal(ref.log.data, want_log);
    }
    /* one byte at a time */
    all = malloc((n ? n : 1) * sizeof(*all));
    for (i = 0; i + 1 < n; i++) {
        all[i] = i + 1;
    }
    rec_init(&r);
    run_cuts(wire, data, n, all, n ? n - 1 : 0, max_line, &r);
    assert_string_equal(r.log.data, ref.log.data);
    chat_buf_free(&r.log);
    free(all);
    for (i = 0; i <= n; i++) {
        cuts[0] = i;
        rec_init(&r);
        run_cuts(wire, data, n, cuts, 1, max_line, &r);
        if (strcmp(r.log.data, ref.log.data) != 0) {
            fail_msg("split at %zu:\n got %s\nwant %s", i, r.log.data, ref.log.data);
        }
        chat_buf_free(&r.log);
    }
    for (i = 0; i <= n; i += stride) {
        for (j = i; j <= n; j++) {
            cuts[0] = i;
            cuts[1] = j;
            rec_init(&r);
            run_cuts(wire, data, n, cuts, 2, max_line, &r);
            if (strcmp(r.log.data, ref.log.data) != 0) {
                fail_msg("splits at %zu,%zu:\n got %s\nwant %s", i, j, r.log.data,
                         ref.log.data);
            }
            chat_buf_free(&r.log);
        }
    }
    chat_buf_free(&ref.log);
}

static inline void check_splits(chat_wire_t wire, const char *data, size_t n,
                                size_t max_line, const char *want_log)
{
    check_splits_ex(wire, data, n, max_line, want_log, 1);
}

/* "\n" -> "\r\n" (or "\r" when cr_only). */
static inline char *to_crlf(const char *in, size_t n, size_t *out_n, int cr_only)
{
    char *o = malloc(2 * n + 1);
    size_t i, k = 0;

    for (i = 0; i < n; i++) {
        if (in[i] == '\n') {
            o[k++] = '\r';
            if (!cr_only) {
                o[k++] = '\n';
            }
        }
        else {
            o[k++] = in[i];
        }
    }
    o[k] = '\0';
    *out_n = k;
    return o;
}

/* Runs a vector through every split (LF, CRLF, and for SSE CR-only line
 * ends) and returns the whole-feed run's recorder for detail checks. */
static inline chat_status_t check_vector(const char *name, chat_wire_t wire,
                                         const char *want, rec_t *out)
{
    size_t n, cn;
    char *data = load_vector(name, &n), *crlf;
    chat_status_t st;
    int v;

    check_splits(wire, data, n, 1 << 20, want);
    for (v = 0; v < (wire == CHAT_WIRE_OPENAI ? 2 : 1); v++) {
        crlf = to_crlf(data, n, &cn, v);
        check_splits(wire, crlf, cn, 1 << 20, want);
        free(crlf);
    }
    rec_init(out);
    st = run_whole(wire, data, n, 1 << 20, out);
    free(data);
    return st;
}

#define MS_EQ(a, b) assert_true(fabs((a) - (b)) < 1e-9 * (fabs(b) + 1))

static inline void check_case(chat_wire_t wire, const char *data, size_t max_line,
                              const char *want)
{
    check_splits(wire, data, strlen(data), max_line, want);
}

#endif
