/* mod_chatbot_store_redis_sub.c - the redis store's change channel: each
 * child's subscriber thread (SUBSCRIBE chatbot:ev, reconnecting with
 * backoff) turns the messages other children and hosts publish into the
 * local counters that the WebSocket watcher and the connections following
 * an answer read (docs/storage.md, "Following an answer across hosts").
 * The connection pool and the provider's set-up are in
 * mod_chatbot_store_redis.c.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "httpd.h"
#include "apr_atomic.h"

#include "mod_chatbot_store_redis.h"

/* Tells this child's WebSocket watcher that something changed. */
static void news(rs_store_t *rs)
{
    apr_atomic_inc32(&rs->events);
    chatbot_ws_watch_news();
}

/* 1 if the message is news for this child's watcher: a user's list
 * changed or a backend's slot was freed. A conversation's change ("c:")
 * and a stop ("s:") only move the counters that the connections following
 * or generating it read at their own step: they wake no watcher (which
 * looks at users' lists only). A "u:<o>@<tag>" this child sent itself
 * (tag == rs->origin) was counted when it was sent, and is skipped: with
 * it, each turn's own news came twice, and the second woke the connection
 * again (a list read and a "sessions" frame more, or a ping to a parked
 * one). */
static int on_message(rs_store_t *rs, redisReply *r)
{
    const char *m, *at;
    size_t len;
    apr_uint32_t h;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[2]->type != REDIS_REPLY_STRING || r->element[2]->len < 3 ||
        strcmp(r->element[0]->str, "message")) {
        return 0;
    }
    m = r->element[2]->str;
    len = r->element[2]->len;
    if ((at = memchr(m, '@', len))) {
        if ((size_t)(m + len - at - 1) == strlen(rs->origin) &&
            !memcmp(at + 1, rs->origin, strlen(rs->origin))) {
            return 0;
        }
        len = (size_t)(at - m);
        if (len < 3) {
            return 0;
        }
    }
    h = rs_hash(m + 2, len - 2) % RS_SEQ_SLOTS;
    switch (m[0]) {
    case 'u':
        apr_atomic_inc32(&rs->user_seq[h]);
        return 1;
    case 's':
        /* a stop is a change of the conversation too */
        apr_atomic_set32(&rs->stop_hint[h], 1);
        /* fall through */
    case 'c':
        apr_atomic_inc32(&rs->conv_seq[h]);
        return 0;
    case 'b': /* a backend's slot or place in line was freed */
        apr_atomic_inc32(&rs->bk_wake);
        return 1;
    default:
        return 0;
    }
}

/* The subscriber thread of a child: SUBSCRIBE chatbot:ev, read with poll()
 * so that it can see sub_exit every 250 ms; reconnects with backoff. Each
 * (re)subscription bumps the epoch, which every counter includes: whatever
 * was published while it was away is seen as a change. */
void *APR_THREAD_FUNC rs_sub_main(apr_thread_t *thd, void *data)
{
    rs_store_t *rs = data;
    redisContext *c = NULL;
    int backoff = RS_BACKOFF_MIN_MS;
    char err[128];

    while (!rs->sub_exit) {
        struct pollfd pfd;
        int n;

        if (!c) {
            const char *a[2] = {"SUBSCRIBE", RS_CHANNEL};
            c = rs_connect(rs, err, sizeof(err));
            if (c && rs_setup_cmd(c, err, sizeof(err), 2, a)) {
                redisFree(c);
                c = NULL;
            }
            if (!c) {
                int waited;
                for (waited = 0; waited < backoff && !rs->sub_exit; waited += 50) {
                    apr_sleep(apr_time_from_msec(50));
                }
                backoff =
                    backoff * 2 > RS_BACKOFF_MAX_MS ? RS_BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
            backoff = RS_BACKOFF_MIN_MS;
            rs_flush_pending(rs);
            apr_atomic_inc32(&rs->epoch);
            news(rs);
        }
        /* generations this child could not end while redis was away: a
         * redis that hung and came back never broke this connection, so
         * they are not left to the resubscription */
        if (*(volatile int *)&rs->npend && chatbot_now_ms() >= rs->retry_at_ms) {
            rs_flush_pending(rs);
        }
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        n = poll(&pfd, 1, 250);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n != 0) {
            void *reply = NULL;
            int moved = 0;
            if (n < 0 || redisBufferRead(c) != REDIS_OK) {
                redisFree(c);
                c = NULL;
                apr_atomic_inc32(&rs->epoch);
                news(rs);
                continue;
            }
            while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply) {
                moved |= on_message(rs, reply);
                freeReplyObject(reply);
                reply = NULL;
            }
            if (moved) {
                news(rs); /* once for all the messages one read brought */
            }
            if (c->err) {
                redisFree(c);
                c = NULL;
            }
        }
    }
    if (c) {
        redisFree(c);
    }
    return NULL;
}
