/* mod_chatbot_store_redis_sub.c - the redis store's change channels: each
 * child's subscriber thread (reconnecting with backoff) turns the messages
 * other children and hosts publish into the local counters that the
 * WebSocket watcher and the connections following an answer read (docs/
 * storage.md, "Following an answer across hosts").
 *
 * A change is published on its shard's channel (RS_CHANNEL ":" and the
 * first three hex digits of the owner or conversation it is about), and a
 * child subscribes only to the shards it needs: those of the owners with a
 * tab open here, of the conversations followed here, and of the
 * generations running here (for their stop). So a change reaches the
 * children that have a use for it, not every child of every host. A shard
 * is subscribed when first wanted (rs_watch wakes the thread) and given up
 * RS_SHARD_LINGER_MS after it was last wanted. Its counters are exact only
 * from its subscription's confirmation on (rs_heard); the confirmation
 * moves them, so whatever was published before it is looked at again.
 * The connection pool and the provider's set-up are in
 * mod_chatbot_store_redis.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "httpd.h"
#include "http_log.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

#define CH_LEN (sizeof(RS_CHANNEL) + 4) /* "chatbot:ev:abc" and its NUL */

/* Tells this child's WebSocket watcher that something changed. */
static void news(rs_store_t *rs)
{
    apr_atomic_inc32(&rs->events);
    chatbot_ws_watch_news();
}

static apr_uint32_t now32(void)
{
    return (apr_uint32_t)chatbot_now_ms();
}

static void wake_sub(rs_store_t *rs)
{
    if (rs->wake_fd[1] >= 0) {
        ssize_t n = write(rs->wake_fd[1], "w", 1);
        (void)n; /* full: a wake-up is pending anyway */
    }
}

int rs_heard(rs_store_t *rs, apr_uint32_t slot)
{
    return apr_atomic_read32(&rs->subd[slot % RS_SEQ_SLOTS]) == 1;
}

void rs_watch(rs_store_t *rs, const char *key, size_t n, int on, int wait)
{
    apr_uint32_t s = rs_slot(key, n);

    if (!rs->mu) {
        return;
    }
    if (!on) {
        /* never below 0: an off without its on is ignored */
        apr_uint32_t v = apr_atomic_read32(&rs->want[s]);
        while (v && apr_atomic_cas32(&rs->want[s], v - 1, v) != v) {
            v = apr_atomic_read32(&rs->want[s]);
        }
        return;
    }
    /* the increment is a full barrier: either the thread, giving the
     * shard up, sees it wanted, or this sees it given up and wakes it */
    apr_atomic_inc32(&rs->want[s]);
    if (apr_atomic_read32(&rs->subd[s]) == 1) {
        return;
    }
    wake_sub(rs);
    if (wait && rs->sub && rs->sub_mu && apr_atomic_read32(&rs->sub_up)) {
        /* a new tab: its list is read once the channel is heard, else the
         * confirmation would send it a second, equal one */
        apr_time_t until = apr_time_now() + apr_time_from_msec(RS_SUB_WAIT_MS);
        apr_thread_mutex_lock(rs->sub_mu);
        while (apr_atomic_read32(&rs->subd[s]) != 1) {
            apr_time_t left = until - apr_time_now();
            if (left <= 0) {
                break;
            }
            apr_thread_cond_timedwait(rs->sub_cv, rs->sub_mu, left);
        }
        apr_thread_mutex_unlock(rs->sub_mu);
    }
}

void rs_watch_gen(rs_store_t *rs, const char *id)
{
    apr_uint32_t s;

    if (!rs->mu || !valid_id(id)) {
        return;
    }
    s = rs_slot(id, CHAT_CONV_ID_LEN);
    apr_atomic_xchg32(&rs->gen_ms[s], now32() | 1); /* a full barrier too */
    if (apr_atomic_read32(&rs->subd[s]) != 1) {
        wake_sub(rs);
    }
}

static int wanted(rs_store_t *rs, apr_uint32_t s, apr_uint32_t now)
{
    apr_uint32_t g = apr_atomic_read32(&rs->gen_ms[s]);

    return apr_atomic_read32(&rs->want[s]) || (g && now - g < RS_GEN_WANT_MS);
}

/* The shard's counters moved: what its watchers and followers hold is
 * looked at again, and a generation asks redis whether it was stopped. */
static void shard_moved(rs_store_t *rs, apr_uint32_t s)
{
    apr_atomic_inc32(&rs->user_seq[s]);
    apr_atomic_inc32(&rs->conv_seq[s]);
    apr_atomic_set32(&rs->stop_hint[s], 1);
}

/* A batch of SUBSCRIBE or UNSUBSCRIBE (argv[0]) sent on c; 0 or -1. */
static int send_batch(redisContext *c, const char **argv, size_t *lens, int argc)
{
    int done = 0;

    if (argc < 2) {
        return 0;
    }
    if (redisAppendCommandArgv(c, argc, argv, lens) != REDIS_OK) {
        return -1;
    }
    while (!done) {
        if (redisBufferWrite(c, &done) != REDIS_OK) {
            return -1;
        }
    }
    return 0;
}

/* Subscribes to the shards wanted and not asked for, and gives up those
 * unwanted for RS_SHARD_LINGER_MS; 0, or -1 if the connection failed. */
static int reconcile(rs_store_t *rs, redisContext *c, char (*names)[CH_LEN])
{
    const char *sv[RS_SUB_BATCH + 1], *uv[RS_SUB_BATCH + 1];
    size_t sl[RS_SUB_BATCH + 1], ul[RS_SUB_BATCH + 1];
    int ns = 1, nu = 1;
    apr_uint32_t s, now = now32();

    sv[0] = "SUBSCRIBE";
    sl[0] = 9;
    uv[0] = "UNSUBSCRIBE";
    ul[0] = 11;
    for (s = 0; s < RS_SEQ_SLOTS; s++) {
        apr_uint32_t st = apr_atomic_read32(&rs->subd[s]);
        if (wanted(rs, s, now)) {
            rs->idle_ms[s] = 0;
            if (st) {
                continue;
            }
        }
        else if (!st) {
            continue;
        }
        else if (!rs->idle_ms[s]) {
            rs->idle_ms[s] = now | 1;
            continue;
        }
        else if (now - rs->idle_ms[s] < RS_SHARD_LINGER_MS || nu > RS_SUB_BATCH) {
            continue;
        }
        else {
            /* given up (a full barrier), then asked again if it became
             * wanted meanwhile (rs_watch saw it subscribed and did not
             * wake this thread) */
            apr_atomic_xchg32(&rs->subd[s], 0);
            rs->idle_ms[s] = 0;
            shard_moved(rs, s); /* no longer exact */
            uv[nu] = names[s];
            ul[nu++] = CH_LEN - 1;
            if (!wanted(rs, s, now32())) {
                continue;
            }
        }
        if (ns > RS_SUB_BATCH) {
            continue; /* the next round */
        }
        apr_atomic_set32(&rs->subd[s], 2);
        sv[ns] = names[s];
        sl[ns++] = CH_LEN - 1;
    }
    /* the unsubscriptions first: a shard given up and asked again in this
     * round is subscribed after it */
    if (send_batch(c, uv, ul, nu) || send_batch(c, sv, sl, ns)) {
        return -1;
    }
    return 0;
}

/* A shard channel's name -> its number, or -1. */
static int shard_of(const redisReply *ch)
{
    if (ch->type != REDIS_REPLY_STRING || ch->len != CH_LEN - 1 ||
        memcmp(ch->str, RS_CHANNEL ":", sizeof(RS_CHANNEL))) {
        return -1;
    }
    return (int)rs_slot(ch->str + sizeof(RS_CHANNEL), 3);
}

/* 1 if the message is news for this child's watcher: a user's list
 * changed, a backend's slot was freed, or a shard's channel was confirmed.
 * A conversation's change ("c:") and a stop ("s:") only move the counters
 * that the connections following or generating it read at their own step:
 * they wake no watcher (which looks at users' lists only). A
 * "u:<o>@<tag>" this child sent itself (tag == rs->origin) was counted
 * when it was sent, and is skipped: with it, each turn's own news came
 * twice, and the second woke the connection again (a list read and a
 * "sessions" frame more, or a ping to a parked one). */
static int on_message(rs_store_t *rs, redisReply *r)
{
    const char *m, *at;
    size_t len;
    apr_uint32_t h;
    int s;

    if (r->type == REDIS_REPLY_ERROR) {
        /* a shard's SUBSCRIBE refused: it stays "asked", its news unheard */
        if (!rs->sub_refused) {
            rs->sub_refused = 1;
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, NULL,
                         APLOGNO(10923) "chatbot: redis refused a change channel "
                                        "(%s): the store's ACL user must be allowed "
                                        "the channels " RS_CHANNEL " and " RS_CHANNEL
                                        ":* (docs/storage.md, Security)",
                         r->str ? r->str : "");
        }
        return 0;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        return 0;
    }
    if (!strcmp(r->element[0]->str, "subscribe")) {
        if ((s = shard_of(r->element[1])) < 0 ||
            apr_atomic_cas32(&rs->subd[s], 1, 2) != 2) {
            return 0;
        }
        shard_moved(rs, (apr_uint32_t)s);
        apr_thread_mutex_lock(rs->sub_mu);
        apr_thread_cond_broadcast(rs->sub_cv);
        apr_thread_mutex_unlock(rs->sub_mu);
        return 1;
    }
    if (r->element[2]->type != REDIS_REPLY_STRING || r->element[2]->len < 3 ||
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
    h = rs_slot(m + 2, len - 2);
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
    case 'h': /* a backend's health changed (rs_backend_health) */
        apr_atomic_inc32(&rs->health_news);
        return 1;
    default:
        return 0;
    }
}

/* The connection is gone: every shard must be asked for again, and was
 * not heard meanwhile. */
static void all_lost(rs_store_t *rs)
{
    apr_uint32_t s;

    apr_atomic_set32(&rs->sub_up, 0);
    for (s = 0; s < RS_SEQ_SLOTS; s++) {
        apr_atomic_set32(&rs->subd[s], 0);
        rs->idle_ms[s] = 0;
    }
    apr_atomic_inc32(&rs->epoch);
    news(rs);
}

/* The subscriber thread of a child: SUBSCRIBE chatbot:ev and the wanted
 * shards, read with poll() so that it can see sub_exit every 250 ms and a
 * wake-up (a new shard wanted) at once; reconnects with backoff. Each
 * (re)subscription bumps the epoch, which every counter includes:
 * whatever was published while it was away is seen as a change. */
void *APR_THREAD_FUNC rs_sub_main(apr_thread_t *thd, void *data)
{
    rs_store_t *rs = data;
    redisContext *c = NULL;
    int backoff = RS_BACKOFF_MIN_MS;
    char err[128];
    char(*names)[CH_LEN] = malloc(sizeof(*names) * RS_SEQ_SLOTS);
    apr_uint32_t s;
    apr_uint64_t rec_ms = 0;
    int woken = 1;

    if (!names) {
        return NULL;
    }
    for (s = 0; s < RS_SEQ_SLOTS; s++) {
        apr_snprintf(names[s], CH_LEN, "%s:%03x", RS_CHANNEL, (unsigned)s);
    }
    while (!rs->sub_exit) {
        struct pollfd pfd[2];
        int n;

        if (!c) {
            const char *a[2] = {"SUBSCRIBE", RS_CHANNEL};
            c = rs_connect(rs, err, sizeof(err), 0); /* no scripts run on it */
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
            all_lost(rs);
            apr_atomic_set32(&rs->sub_up, 1);
            woken = 1;
        }
        /* generations this child could not end while redis was away: a
         * redis that hung and came back never broke this connection, so
         * they are not left to the resubscription */
        if (*(volatile int *)&rs->npend && chatbot_now_ms() >= rs->retry_at_ms) {
            rs_flush_pending(rs);
        }
        if (woken || chatbot_now_ms() - rec_ms >= 250) {
            /* a shard wanted at once; the lingering ones given up */
            rec_ms = chatbot_now_ms();
            woken = 0;
            if (reconcile(rs, c, names)) {
                redisFree(c);
                c = NULL;
                all_lost(rs);
                continue;
            }
        }
        pfd[0].fd = c->fd;
        pfd[0].events = POLLIN;
        pfd[0].revents = 0;
        pfd[1].fd = rs->wake_fd[0];
        pfd[1].events = POLLIN;
        pfd[1].revents = 0;
        n = poll(pfd, rs->wake_fd[0] >= 0 ? 2 : 1, 250);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n > 0 && (pfd[1].revents & POLLIN)) {
            char buf[64];
            while (read(rs->wake_fd[0], buf, sizeof(buf)) == (ssize_t)sizeof(buf)) {
            }
            woken = 1;
        }
        if (n < 0 || (pfd[0].revents & (POLLIN | POLLERR | POLLHUP))) {
            void *reply = NULL;
            int moved = 0;
            if (n < 0 || redisBufferRead(c) != REDIS_OK) {
                redisFree(c);
                c = NULL;
                all_lost(rs);
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
                all_lost(rs);
            }
        }
    }
    if (c) {
        redisFree(c);
    }
    free(names);
    return NULL;
}

static apr_status_t sub_cleanup(void *data)
{
    rs_sub_close(data);
    return APR_SUCCESS;
}

apr_status_t rs_sub_open(rs_store_t *rs, apr_pool_t *p)
{
    apr_status_t rv;

    memset(rs->want, 0, sizeof(rs->want));
    memset(rs->gen_ms, 0, sizeof(rs->gen_ms));
    memset(rs->subd, 0, sizeof(rs->subd));
    memset(rs->idle_ms, 0, sizeof(rs->idle_ms));
    rs->wake_fd[0] = rs->wake_fd[1] = -1;
    if ((rv = apr_thread_mutex_create(&rs->sub_mu, APR_THREAD_MUTEX_DEFAULT, p)) ||
        (rv = apr_thread_cond_create(&rs->sub_cv, p))) {
        rs->sub_mu = NULL;
        return rv;
    }
    if (pipe(rs->wake_fd)) {
        rs->wake_fd[0] = rs->wake_fd[1] = -1;
        return APR_FROM_OS_ERROR(errno);
    }
    fcntl(rs->wake_fd[0], F_SETFL, O_NONBLOCK);
    fcntl(rs->wake_fd[1], F_SETFL, O_NONBLOCK);
    fcntl(rs->wake_fd[0], F_SETFD, FD_CLOEXEC);
    fcntl(rs->wake_fd[1], F_SETFD, FD_CLOEXEC);
    apr_pool_cleanup_register(p, rs, sub_cleanup, apr_pool_cleanup_null);
    return APR_SUCCESS;
}

/* After the thread has been joined (child_stop). */
void rs_sub_close(rs_store_t *rs)
{
    int i;

    for (i = 0; i < 2; i++) {
        if (rs->wake_fd[i] >= 0) {
            close(rs->wake_fd[i]);
            rs->wake_fd[i] = -1;
        }
    }
}
