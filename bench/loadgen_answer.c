/* loadgen_answer.c - the answers the load generator reads: the chat
 * protocol's frames in ws and idle modes (stream, response, error, hello,
 * pong), the chunked NDJSON reply of direct mode, and the relay delay of
 * each token from the "t<ns>" stamp the fake backend wrote into it.
 */
#include "loadgen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- relay delay ----------------------------------------------------------------- */

/* Value of a "t<ns>" token at the start of a JSON string value after key. */
static int token_stamp(const char *p, size_t n, const char *key, uint64_t *ns)
{
    const char *k = memmem(p, n, key, strlen(key)), *end = p + n;
    uint64_t v = 0;

    if (!k) {
        return 0;
    }
    k += strlen(key);
    if (k < end && *k == ' ') {
        k++;
    }
    if (k >= end || *k != 't') {
        return 0;
    }
    for (k++; k < end && *k >= '0' && *k <= '9'; k++) {
        v = v * 10 + (uint64_t)(*k - '0');
    }
    *ns = v;
    return 1;
}

/* A token arrived: counted, and its relay delay sampled inside the window. */
static void relay_sample(conn_t *c, const char *p, size_t n, const char *key,
                         uint64_t now)
{
    uint64_t ts;

    c->tokens_seen++;
    if (measuring && c->sent_ns >= t_measure0 && c->sent_ns < t_measure1 &&
        token_stamp(p, n, key, &ts) && now >= ts) {
        sample_add(&relay_ns, now - ts);
    }
}

/* ---- ws and idle: the chat protocol's frames ------------------------------------- */

/* One text message from the server; "response" or "error" ends the turn. */
void on_text(conn_t *c, const char *p, size_t n, uint64_t now)
{
    static const char pre[] = "{\"type\":\"";
    const char *t;

    if (n < sizeof(pre) - 1 || memcmp(p, pre, sizeof(pre) - 1)) {
        protocol_errors++;
        return;
    }
    t = p + sizeof(pre) - 1;
    if (!strncmp(t, "stream\"", 7)) {
        relay_sample(c, p, n, "\"content\":\"", now);
    }
    else if (!strncmp(t, "response\"", 9)) {
        int ok = memmem(p, n, "\"interrupted\":false", 19) != NULL;
        if (!ok && errors_printed < 5) {
            errors_printed++;
            fprintf(stderr, "loadgen: conn %d: unexpected response: %.*s\n", c->idx,
                    (int)(n > 300 ? 300 : n), p);
        }
        turn_done(c, now, ok);
    }
    else if (!strncmp(t, "error\"", 6)) {
        if (errors_printed < 5) {
            errors_printed++;
            fprintf(stderr, "loadgen: conn %d: %.*s\n", c->idx, (int)(n > 300 ? 300 : n),
                    p);
        }
        turn_done(c, now, 0);
    }
    else if (!strncmp(t, "hello\"", 6)) {
        if (c->state != S_OPEN) {
            c->state = S_OPEN;
            ws_open++;
        }
    }
    else if (!strncmp(t, "pong\"", 5)) {
        pongs_rcvd++;
    }
}

/* ---- direct: the backend's chunked NDJSON reply ---------------------------------- */

/* Parses what c->in holds of the reply; its chunked terminator ends the turn. */
void http_parse(conn_t *c, uint64_t now)
{
    for (;;) {
        char *p = c->in.p + c->in.off, *eol;
        size_t avail = c->in.len - c->in.off;

        if (!c->busy) {
            if (avail) {
                conn_kill(c, "data without a request");
            }
            return;
        }
        switch (c->hstate) {
        case 0:
            eol = memmem(p, avail, "\r\n\r\n", 4);
            if (!eol) {
                return;
            }
            c->http_status = atoi(p + 9);
            if (strncmp(p, "HTTP/1.1 ", 9) ||
                !memmem(p, (size_t)(eol - p), "chunked", 7)) {
                conn_kill(c, "not a chunked HTTP/1.1 reply");
                return;
            }
            c->in.off += (size_t)(eol + 4 - p);
            c->hstate = 1;
            break;
        case 1:
            eol = memmem(p, avail, "\r\n", 2);
            if (!eol) {
                return;
            }
            c->chunk_left = strtoul(p, NULL, 16);
            c->in.off += (size_t)(eol + 2 - p);
            c->hstate = c->chunk_left ? 2 : 4;
            break;
        case 2:
            if (avail < c->chunk_left) {
                return; /* the fake sends one line per chunk: wait for it whole */
            }
            if (memmem(p, c->chunk_left, "\"done\":false", 12)) {
                relay_sample(c, p, c->chunk_left, "\"content\":\"", now);
            }
            c->in.off += c->chunk_left;
            c->hstate = 3;
            break;
        case 3:
            if (avail < 2) {
                return;
            }
            c->in.off += 2;
            c->hstate = 1;
            break;
        case 4:
            if (avail < 2) {
                return;
            }
            c->in.off += 2;
            c->hstate = 0;
            c->in.off = c->in.len = 0;
            turn_done(c, now, c->http_status == 200 && c->tokens_seen == opt.tokens);
            return;
        }
    }
}
