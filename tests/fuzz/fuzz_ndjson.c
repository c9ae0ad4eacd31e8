/* fuzz_ndjson.c - libFuzzer target for the Ollama NDJSON stream parser
 * (chat/stream.h); fuzz_sse.c reuses this file for the OpenAI SSE parser
 * by defining FUZZ_WIRE first.
 *
 * Input: byte 0 seeds the chunking, byte 1 picks max_line, the rest is the
 * stream. The stream is parsed whole, in chunks chosen by the seed, byte by
 * byte on the reset stream, and with the callback aborting early; all runs
 * must give the same events and status (split invariance). Invariants
 * checked on every event: texts are valid UTF-8 without NUL, NUL terminated
 * at len, CONTENT/THINKING non-empty, at most one DONE, nothing after DONE
 * or ERROR, finish() == CHAT_OK exactly when DONE was delivered; with
 * every line through json-c (chat_stream_set_fast_path(0)) the events are
 * the same. The same bytes also go through parse_whole, backend_error_text
 * and models_parse.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/stream.h"

#include "../unit/common/strict_utf8.h"

#ifndef FUZZ_WIRE
#define FUZZ_WIRE CHAT_WIRE_OLLAMA
#endif

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);    \
            abort();                                                                     \
        }                                                                                \
    } while (0)

typedef struct {
    chat_buf_t log;
    size_t events_len; /* log length before the final status */
    int nev, ndone, nerror, abort_at;
} fz_rec_t;

static int fz_cb(void *baton, const chat_event_t *ev)
{
    fz_rec_t *r = baton;

    r->nev++;
    CHECK(r->ndone == 0 && r->nerror == 0);
    CHECK(ev->text != NULL && ev->text[ev->len] == '\0');
    CHECK(ev->stats != NULL);
    CHECK(strict_utf8((const unsigned char *)ev->text, ev->len));
    switch (ev->type) {
    case CHAT_EV_CONTENT:
    case CHAT_EV_THINKING:
        CHECK(ev->len > 0);
        break;
    case CHAT_EV_DONE:
        r->ndone++;
        break;
    case CHAT_EV_ERROR:
        r->nerror++;
        break;
    default:
        CHECK(0);
    }
    chat_buf_printf(&r->log, "%d:%zu:", (int)ev->type, ev->len);
    chat_buf_append(&r->log, ev->text, ev->len);
    return r->abort_at && r->nev == r->abort_at;
}

/* Feeds p[0..n) in pieces (sizes from a xorshift seeded by seed; seed 0 =
 * one piece, seed 1 = one byte at a time), finishes, appends the status. */
static chat_status_t fz_run(chat_stream_t *s, fz_rec_t *r, const char *p, size_t n,
                            unsigned seed)
{
    chat_status_t st = CHAT_OK;
    uint32_t x = seed * 2654435761u + 1;
    size_t at = 0, k;

    while (at < n && st == CHAT_OK) {
        if (seed == 0) {
            k = n;
        }
        else if (seed == 1) {
            k = 1;
        }
        else {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            k = 1 + x % (1 + (seed & 63));
        }
        if (k > n - at) {
            k = n - at;
        }
        st = chat_stream_feed(s, p + at, k);
        at += k;
    }
    if (st == CHAT_OK) {
        st = chat_stream_finish(s);
        CHECK(chat_stream_finish(s) == st);
        /* OK exactly when DONE came (unless the callback refused it) */
        CHECK(st != CHAT_OK || r->ndone == 1);
        CHECK(r->ndone == 0 || st == CHAT_OK || (st == CHAT_ECLOSED && r->abort_at));
    }
    CHECK(chat_stream_is_done(s) == r->ndone);
    CHECK(r->ndone <= 1 && r->nerror <= 1);
    CHECK(strict_utf8((const unsigned char *)chat_stream_error(s),
                      strlen(chat_stream_error(s))));
    r->events_len = r->log.len;
    chat_buf_printf(&r->log, "=%d:%s", (int)st, chat_stream_error(s));
    return st;
}

static void fz_name(void *baton, const char *name)
{
    (void)baton;
    CHECK(name[0] != '\0');
    CHECK(strict_utf8((const unsigned char *)name, strlen(name)));
}

static void fz_other_apis(const char *p, size_t n)
{
    chat_buf_t c, t;
    chat_stats_t st;
    char out[64];
    size_t len;
    chat_status_t rc;

    chat_buf_init(&c);
    chat_buf_init(&t);
    chat_stats_init(&st);
    rc = chat_stream_parse_whole(FUZZ_WIRE, p, n, &c, &t, &st);
    CHECK(rc == CHAT_OK || rc == CHAT_EPARSE || rc == CHAT_EPROTO);
    if (rc != CHAT_EPARSE) {
        /* an error message may legitimately contain NUL-free text only */
        CHECK(c.len == 0 || strict_utf8((const unsigned char *)c.data, c.len));
        CHECK(t.len == 0 || strict_utf8((const unsigned char *)t.data, t.len));
    }
    CHECK(strict_utf8((const unsigned char *)st.model, strlen(st.model)));
    CHECK(strict_utf8((const unsigned char *)st.done_reason, strlen(st.done_reason)));
    chat_buf_free(&c);
    chat_buf_free(&t);

    len = chat_backend_error_text(p, n, out, sizeof(out));
    CHECK(len < sizeof(out) && strlen(out) == len);
    CHECK(strict_utf8((const unsigned char *)out, len));
    len = chat_backend_error_text(p, n, out, 4);
    CHECK(len < 4 && strlen(out) == len);

    CHECK(chat_models_parse(FUZZ_WIRE, p, n, fz_name, NULL) >= CHAT_EPARSE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    chat_stream_t *s;
    fz_rec_t a, b;
    const char *p;
    size_t n, max_line;
    unsigned seed;

    if (size < 2) {
        return 0;
    }
    seed = data[0];
    max_line = data[1] == 255 ? (size_t)1 << 20 : 8 + (size_t)data[1] * 8;
    p = (const char *)data + 2;
    n = size - 2;

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    chat_buf_init(&a.log);
    chat_buf_init(&b.log);

    /* whole */
    CHECK(chat_stream_create(&s, FUZZ_WIRE, max_line, fz_cb, &a) == CHAT_OK);
    fz_run(s, &a, p, n, 0);
    chat_stream_destroy(s);

    /* every line through json-c (no in-place reading of token lines): the
     * same events, status and error */
    CHECK(chat_stream_create(&s, FUZZ_WIRE, max_line, fz_cb, &b) == CHAT_OK);
    chat_stream_set_fast_path(0);
    fz_run(s, &b, p, n, 0);
    chat_stream_set_fast_path(1);
    CHECK(a.log.len == b.log.len && memcmp(a.log.data, b.log.data, a.log.len) == 0);
    chat_stream_destroy(s);
    b.log.len = 0;
    b.nev = b.ndone = b.nerror = 0;

    /* chunks chosen by the input */
    CHECK(chat_stream_create(&s, FUZZ_WIRE, max_line, fz_cb, &b) == CHAT_OK);
    fz_run(s, &b, p, n, seed < 2 ? seed + 2 : seed);
    CHECK(a.log.len == b.log.len && memcmp(a.log.data, b.log.data, a.log.len) == 0);

    /* the same stream after reset, one byte at a time (small inputs) */
    if (n <= 8192) {
        chat_stream_reset(s);
        b.log.len = 0;
        b.nev = b.ndone = b.nerror = 0;
        fz_run(s, &b, p, n, 1);
        CHECK(a.log.len == b.log.len && memcmp(a.log.data, b.log.data, a.log.len) == 0);
    }

    /* the callback aborts at an event: the same prefix, then ECLOSED */
    if (a.nev > 0) {
        chat_stream_reset(s);
        b.log.len = 0;
        b.nev = b.ndone = b.nerror = 0;
        b.abort_at = 1 + (int)(seed % (unsigned)a.nev);
        CHECK(fz_run(s, &b, p, n, seed) == CHAT_ECLOSED);
        CHECK(b.nev == b.abort_at);
        CHECK(b.events_len <= a.events_len &&
              memcmp(a.log.data, b.log.data, b.events_len) == 0);
        CHECK(chat_stream_feed(s, "\n", 1) == CHAT_ECLOSED);
    }
    chat_stream_destroy(s);
    chat_buf_free(&a.log);
    chat_buf_free(&b.log);

    fz_other_apis(p, n);
    return 0;
}
