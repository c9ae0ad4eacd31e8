/* mod_chatbot_store_redis_ops.c - the redis store provider's operations
 * (chat_store_provider_t, whose table is here): conversations, settings
 * blobs, users and what stays on this host; messages are in
 * mod_chatbot_store_redis_msg.c, turns and generations in _turn.c. Each
 * is one Lua script run atomically by redis (mod_chatbot_store_redis_lua.c,
 * where the key patterns are documented).
 *
 * Contracts are those of chat/store.h, with one more outcome: when redis
 * cannot be reached within the timeout, operations return CHAT_EUNAVAIL
 * (lists and reads a negative CHAT_EUNAVAIL, void ones do nothing), which
 * the module shows as `store_unavailable`.
 *
 * The counters that connections poll (conv_seq, user_seq, events,
 * stop_requested) are never a network round trip: they are this child's
 * counters, bumped by the subscriber thread for each message on the
 * change channels it listens to (mod_chatbot_store_redis_sub.c). A
 * counter is shared by the ids of its slot (their first three hex
 * digits): a collision only costs a look for nothing. The small helpers
 * (arguments, replies, slots) are in mod_chatbot_store_redis_args.c.
 * Per-host state (processes, backends, metrics) goes to rs->local.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_main.h"
#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))

static void publish_user(chat_store_t *st, const chat_owner_t *owner)
{
    char hex[41], msg[64], ch[sizeof(RS_CHANNEL) + 4];
    const char *a[3];
    size_t l[3];

    owner_hex(owner, hex);
    a[0] = "PUBLISH";
    a[1] = ch;
    a[2] = msg;
    l[0] = 7;
    l[1] = (size_t)apr_snprintf(ch, sizeof(ch), "%s:%.3s", RS_CHANNEL, hex);
    l[2] = (size_t)apr_snprintf(msg, sizeof(msg), "u:%s@%s", hex, RS(st)->origin);
    /* seen here (at the watcher's next look), and by the others through
     * the channel: this child's subscriber skips its own message */
    apr_atomic_inc32(&RS(st)->user_seq[rs_slot(hex, 40)]);
    apr_atomic_inc32(&RS(st)->events);
    /* its reply (a count of listeners) is read at the connection's next use */
    rs_command_nowait(RS(st), 3, a, l);
}

/* ---- processes, policy, upkeep: this host ----------------------------------- */

static void rs_set_policy(chat_store_t *st, const chat_store_policy_t *p)
{
    RS(st)->policy = *p;
    chat_store_set_policy(RS(st)->local, p);
}

static chat_status_t rs_proc_attach(chat_store_t *st, int pid, uint64_t now_ms)
{
    return chat_store_proc_attach(RS(st)->local, pid, now_ms);
}

static void rs_proc_detach(chat_store_t *st)
{
    chat_store_proc_detach(RS(st)->local);
}

/* In the parent (monitor hook, child exits): the local upkeep, then on
 * redis the TTL sweep and the end of generations whose host died. */
static int rs_maintain(chat_store_t *st, uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    int n = chat_store_maintain(rs->local, now_ms);
    static uint64_t last;
    rs_args_t a = {0};
    redisReply *r;

    if (now_ms - last < 5000) {
        return n;
    }
    last = now_ms;
    arg_u64(&a, rs->ttl_ms && now_ms > rs->ttl_ms ? now_ms - rs->ttl_ms : 0);
    arg_u64(&a, now_ms > RS_GEN_LEASE_MS ? now_ms - RS_GEN_LEASE_MS : 0);
    r = rs_run(st, RS_LUA_SWEEP, &a);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        long long gone = rint_(r->element[0]), rec = rint_(r->element[1]);
        if (gone || rec) {
            ap_log_error(
                APLOG_MARK, APLOG_INFO, 0, ap_server_conf,
                APLOGNO(10967) "chatbot: redis store upkeep: %lld conversation(s) past "
                               "ChatbotStoreTTL removed, %lld abandoned answer(s) ended",
                gone, rec);
        }
    }
    if (r) {
        freeReplyObject(r);
    }
    return n;
}

/* ---- conversations ---------------------------------------------------------- */

/* The buckets of owner (and owner2 with rate2, unless NULL: asked only if
 * owner's gave a token) in one script (lua_bucket). */
static chat_status_t bucket2(chat_store_t *st, const char *kind,
                             const chat_owner_t *owner, const chat_rate_t *rate,
                             const chat_owner_t *owner2, const chat_rate_t *rate2,
                             int take, int64_t *wait)
{
    char key[48], key2[48], hex[41];
    rs_args_t a = {0};
    redisReply *r;

    *wait = 0;
    if (!rate || rate->count == 0 || rate->period_ms <= 0) {
        /* no first bucket: the second alone */
        return owner2 ? bucket2(st, kind, owner2, rate2, NULL, NULL, take, wait)
                      : CHAT_OK;
    }
    owner_hex(owner, hex);
    snprintf(key, sizeof(key), "%s:%s", kind, hex);
    arg_str(&a, key);
    arg_u64(&a, rate->count);
    arg_i64(&a, rate->period_ms);
    arg_u64(&a, rate->burst);
    arg_str(&a, take ? "1" : "0");
    if (owner2 && rate2 && rate2->count && rate2->period_ms > 0) {
        owner_hex(owner2, hex);
        snprintf(key2, sizeof(key2), "%s:%s", kind, hex);
        arg_str(&a, key2);
        arg_u64(&a, rate2->count);
        arg_i64(&a, rate2->period_ms);
        arg_u64(&a, rate2->burst);
    }
    if (!(r = rs_run(st, RS_LUA_BUCKET, &a))) {
        return CHAT_EUNAVAIL;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        chat_status_t rc = rs_unexpected(r);
        freeReplyObject(r);
        return rc;
    }
    *wait = r->integer;
    freeReplyObject(r);
    return *wait > 0 ? CHAT_ELIMIT : CHAT_OK;
}

chat_status_t bucket(chat_store_t *st, const char *kind, const chat_owner_t *owner,
                     const chat_rate_t *rate, int take, int64_t *wait)
{
    return bucket2(st, kind, owner, rate, NULL, NULL, take, wait);
}

static chat_status_t rs_conv_create(chat_store_t *st, const chat_owner_t *owner,
                                    const char *bot, const char *title, uint64_t tag,
                                    uint64_t now_ms, chat_conv_info_t *out)
{
    const chat_quota_t *q;
    char hex[41], id[CHAT_CONV_ID_LEN + 1];
    rs_args_t a = {0};
    redisReply *r;
    chat_status_t rc;
    int64_t wait;

    if (!owner || !bot || !*bot || strlen(bot) > CHAT_BOT_NAME_MAX || tag == 0 ||
        (title && strlen(title) > CHAT_TITLE_MAX)) {
        return CHAT_EINVAL;
    }
    q = quota_of(st, owner);
    if ((rc = bucket(st, "cr", owner, &q->create, 1, &wait)) != CHAT_OK) {
        return rc;
    }
    owner_hex(owner, hex);
    snprintf(id, sizeof(id), "%08x%016llx", (unsigned)(chatbot_random64() & 0xffffffffu),
             (unsigned long long)tag);
    arg_str(&a, hex);
    arg_str(&a, owner->auth ? "1" : "0");
    arg_str(&a, id);
    arg_str(&a, bot);
    arg_str(&a, title ? title : "");
    arg_u64(&a, now_ms);
    arg_u64(&a, q->conversations);
    arg_u64(&a, RS(st)->layout.max_conversations);
    arg_u64(&a, RS(st)->policy.anon_share_pct);
    r = rs_run(st, RS_LUA_CREATE, &a);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        rs_evictions(RS(st), r->element[1]);
    }
    if ((rc = rs_done(r)) == CHAT_OK && out) {
        memset(out, 0, sizeof(*out));
        apr_cpystrn(out->id, id, sizeof(out->id));
        apr_cpystrn(out->bot, bot, sizeof(out->bot));
        apr_cpystrn(out->title, title ? title : "", sizeof(out->title));
        out->created_ms = out->updated_ms = now_ms;
        out->seq = 1;
    }
    return rc;
}

static int64_t rs_create_retry_ms(chat_store_t *st, const chat_owner_t *owner,
                                  uint64_t now_ms)
{
    int64_t wait = 0;

    bucket(st, "cr", owner, &quota_of(st, owner)->create, 0, &wait);
    return wait;
}

static chat_status_t rs_conv_get(chat_store_t *st, const chat_owner_t *owner,
                                 const char *id, chat_conv_info_t *out)
{
    char hex[41];
    rs_args_t a = {0};
    redisReply *r;
    chat_status_t rc;

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    r = rs_run(st, RS_LUA_GET, &a);
    rc = status_of(r);
    if (rc == CHAT_OK &&
        (r->type != REDIS_REPLY_ARRAY || r->elements != 1 + RS_NFIELDS)) {
        rc = CHAT_EINTERNAL;
    }
    if (rc == CHAT_OK && out) {
        conv_of(out, id, r->element + 1);
    }
    if (r) {
        freeReplyObject(r);
    }
    return rc;
}

static int list_valid(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements % (1 + RS_NFIELDS) == 0;
}

int rs_list_wanted(rs_store_t *rs, const char *hex)
{
    apr_uint64_t at = rs->listed_ms[rs_slot(hex, 40) % RS_LISTS];
    apr_uint64_t now = (apr_uint64_t)apr_time_as_msec(apr_time_now());

    /* kept only while this child hears the owner's changes */
    return rs->mu && at && now - at < RS_LIST_WANT_MS && rs_heard(rs, rs_slot(hex, 40));
}

void rs_list_keep(rs_store_t *rs, const char *hex, apr_uint32_t s0, apr_uint32_t seq,
                  redisReply *r)
{
    apr_uint32_t k = rs_slot(hex, 40) % RS_LISTS;
    redisReply *old = NULL;

    if (!rs->mu || !list_valid(r) || seq != s0 + 1) {
        if (r) {
            freeReplyObject(r);
        }
        return;
    }
    apr_thread_mutex_lock(rs->mu);
    old = rs->list[k].r;
    memcpy(rs->list[k].hex, hex, sizeof(rs->list[k].hex));
    rs->list[k].seq = seq;
    rs->list[k].r = r;
    apr_thread_mutex_unlock(rs->mu);
    if (old) {
        freeReplyObject(old);
    }
}

static redisReply *list_take(rs_store_t *rs, const char *hex)
{
    apr_uint32_t slot = rs_slot(hex, 40), k = slot % RS_LISTS;
    redisReply *r = NULL;

    rs->listed_ms[k] = (apr_uint64_t)apr_time_as_msec(apr_time_now());
    if (!rs->mu) {
        return NULL;
    }
    apr_thread_mutex_lock(rs->mu);
    if (rs->list[k].r && !strcmp(rs->list[k].hex, hex)) {
        if (rs->list[k].seq == apr_atomic_read32(&rs->user_seq[slot]) &&
            rs_heard(rs, slot)) {
            r = rs->list[k].r; /* once: another tab reads redis */
        }
        else {
            freeReplyObject(rs->list[k].r); /* something changed since */
        }
        rs->list[k].r = NULL;
    }
    apr_thread_mutex_unlock(rs->mu);
    return r;
}

void rs_list_clear(rs_store_t *rs)
{
    int k;

    for (k = 0; k < RS_LISTS; k++) {
        if (rs->list[k].r) {
            freeReplyObject(rs->list[k].r);
            rs->list[k].r = NULL;
        }
    }
}

/* The owner's conversations as the script lists them, most recent first;
 * the reply (freed by the caller) or NULL. A turn's script may have read
 * it already, right after the owner's last change (rs_list_keep). */
static redisReply *list_reply(chat_store_t *st, const chat_owner_t *owner)
{
    char hex[41];
    rs_args_t a = {0};
    redisReply *r;

    owner_hex(owner, hex);
    if ((r = list_take(RS(st), hex))) {
        return r;
    }
    arg_str(&a, hex);
    r = rs_run(st, RS_LUA_LIST, &a);
    if (r && !list_valid(r)) {
        freeReplyObject(r);
        r = NULL;
    }
    return r;
}

static int rs_conv_list(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                        int archived, void (*cb)(void *baton, const chat_conv_info_t *c),
                        void *baton)
{
    redisReply *r;
    size_t i;
    int n = 0;

    if (!owner || !(r = list_reply(st, owner))) {
        return owner ? CHAT_EUNAVAIL : 0;
    }
    for (i = 0; i < r->elements; i += 1 + RS_NFIELDS) {
        chat_conv_info_t c;
        int arch;
        conv_of(&c, r->element[i]->str ? r->element[i]->str : "", r->element + i + 1);
        arch = (c.flags & CHAT_CONV_ARCHIVED) != 0;
        if ((bot && strcmp(bot, c.bot)) || (archived >= 0 && arch != archived)) {
            continue;
        }
        if (cb) {
            cb(baton, &c);
        }
        n++;
    }
    freeReplyObject(r);
    return n;
}

static chat_status_t rs_conv_latest(chat_store_t *st, const chat_owner_t *owner,
                                    const char *bot, chat_conv_info_t *out)
{
    redisReply *r;
    size_t i;
    chat_status_t rc = CHAT_ENOTFOUND;

    if (!owner || !(r = list_reply(st, owner))) {
        return owner ? CHAT_EUNAVAIL : CHAT_ENOTFOUND;
    }
    for (i = 0; i < r->elements && rc != CHAT_OK; i += 1 + RS_NFIELDS) {
        chat_conv_info_t c;
        conv_of(&c, r->element[i]->str ? r->element[i]->str : "", r->element + i + 1);
        if (!(c.flags & CHAT_CONV_ARCHIVED) && (!bot || !strcmp(bot, c.bot))) {
            if (out) {
                *out = c;
            }
            rc = CHAT_OK;
        }
    }
    freeReplyObject(r);
    return rc;
}

static chat_status_t update(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            const char *what, const char *title, uint32_t set,
                            uint32_t clear, uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_str(&a, what);
    if (title) {
        arg_str(&a, title);
        arg_str(&a, "0");
    }
    else {
        arg_u64(&a, set);
        arg_u64(&a, clear);
    }
    arg_u64(&a, now_ms);
    return rs_done(rs_run(st, RS_LUA_UPDATE, &a));
}

static chat_status_t rs_conv_rename(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, const char *title, uint64_t now_ms)
{
    if (!title || strlen(title) > CHAT_TITLE_MAX) {
        return CHAT_EINVAL;
    }
    return update(st, owner, id, "t", title, 0, 0, now_ms);
}

static chat_status_t rs_conv_flags(chat_store_t *st, const chat_owner_t *owner,
                                   const char *id, uint32_t set, uint32_t clear,
                                   uint64_t now_ms)
{
    return update(st, owner, id, "f", NULL, set, clear, now_ms);
}

static chat_status_t rs_conv_delete(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id)
{
    char hex[41];
    rs_args_t a = {0};

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    return rs_done(rs_run(st, RS_LUA_DELETE, &a));
}

/* ---- settings blob -------------------------------------------------------------- */

static chat_status_t rs_conv_meta_get(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, chat_buf_t *out)
{
    char hex[41];
    rs_args_t a = {0};
    redisReply *r;
    chat_status_t rc;

    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_str(&a, "g");
    arg_str(&a, "");
    arg_str(&a, "0");
    r = rs_run(st, RS_LUA_META, &a);
    rc = status_of(r);
    if (rc == CHAT_OK && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len <= CHAT_CONV_META_MAX) {
        if (chat_buf_append(out, r->element[1]->str, r->element[1]->len) != CHAT_OK) {
            rc = CHAT_ENOMEM;
        }
    }
    if (r) {
        freeReplyObject(r);
    }
    return rc;
}

void rs_meta_into(chat_store_t *st, const chat_owner_t *owner, const char *id,
                  chat_buf_t *meta)
{
    size_t had = meta->len;

    if (rs_conv_meta_get(st, owner, id, meta) != CHAT_OK) {
        meta->len = had;
        if (meta->data) {
            meta->data[had] = '\0';
        }
    }
}

static chat_status_t rs_conv_meta_set(chat_store_t *st, const chat_owner_t *owner,
                                      const char *id, const char *data, size_t len,
                                      uint64_t now_ms)
{
    char hex[41];
    rs_args_t a = {0};

    (void)now_ms;
    if (arg_owner_id(&a, hex, owner, id)) {
        return CHAT_ENOTFOUND;
    }
    arg_str(&a, "s");
    arg_mem(&a, data ? data : "", len);
    arg_u64(&a, quota_of(st, owner)->history_bytes);
    arg_u64(&a, RS(st)->layout.history_bytes);
    return rs_done(rs_run(st, RS_LUA_META, &a));
}

/* ---- users ------------------------------------------------------------------- */

static chat_status_t rs_rate_take(chat_store_t *st, const chat_owner_t *owner,
                                  const chat_rate_t *rate, uint64_t now_ms,
                                  int64_t *retry_after_ms)
{
    int64_t wait = 0;
    chat_status_t rc = owner ? bucket(st, "rl", owner, rate, 1, &wait) : CHAT_EINVAL;

    if (retry_after_ms) {
        *retry_after_ms = wait;
    }
    return rc;
}

static chat_status_t rs_rate_take2(chat_store_t *st, const chat_owner_t *owner,
                                   const chat_rate_t *rate, const chat_owner_t *owner2,
                                   const chat_rate_t *rate2, uint64_t now_ms,
                                   int64_t *retry_after_ms)
{
    int64_t wait = 0;
    chat_status_t rc = owner && owner2
                           ? bucket2(st, "rl", owner, rate, owner2, rate2, 1, &wait)
                           : CHAT_EINVAL;

    if (retry_after_ms) {
        *retry_after_ms = wait;
    }
    return rc;
}

static void rs_user_bump(chat_store_t *st, const chat_owner_t *owner)
{
    if (owner) {
        publish_user(st, owner);
    }
}

static void rs_watch_op(chat_store_t *st, const chat_owner_t *owner, const char *id,
                        int on)
{
    char hex[41];

    if (id) {
        if (valid_id(id)) {
            rs_watch(RS(st), id, CHAT_CONV_ID_LEN, on, 0);
        }
        return;
    }
    owner_hex(owner, hex);
    rs_watch(RS(st), hex, 40, on, 1);
}

static uint64_t rs_user_seq(chat_store_t *st, const chat_owner_t *owner)
{
    rs_store_t *rs = RS(st);
    char hex[41];

    if (!owner) {
        return 0;
    }
    owner_hex(owner, hex);
    return ((uint64_t)apr_atomic_read32(&rs->epoch) << 32) +
           apr_atomic_read32(&rs->user_seq[rs_slot(hex, 40)]);
}

static uint64_t rs_events(chat_store_t *st)
{
    rs_store_t *rs = RS(st);

    return ((uint64_t)apr_atomic_read32(&rs->epoch) << 32) +
           apr_atomic_read32(&rs->events);
}

/* ---- backends and metrics: this host ------------------------------------------ */

static int rs_backend_register(chat_store_t *st, const char *name, uint32_t max_active)
{
    return chat_store_backend_register(RS(st)->local, name, max_active);
}

static int rs_backend_count(chat_store_t *st)
{
    return chat_store_backend_count(RS(st)->local);
}

static int rs_series(chat_store_t *st, const char *bot, const char *backend)
{
    return chat_store_series(RS(st)->local, bot, backend);
}

static void rs_metrics_add(chat_store_t *st, int series, chat_counter_t c, uint64_t v)
{
    chat_metrics_add(RS(st)->local, series, c, v);
}

static void rs_metrics_observe(chat_store_t *st, int series, chat_hist_t h, double v)
{
    chat_metrics_observe(RS(st)->local, series, h, v);
}

static void rs_metrics_gauge_add(chat_store_t *st, chat_gauge_t g, int64_t delta)
{
    chat_metrics_gauge_add(RS(st)->local, g, delta);
}

static void rs_metrics_error(chat_store_t *st, const char *code)
{
    chat_metrics_error(RS(st)->local, code);
}

/* This host's figures; the store usage is redis's (all hosts). */
static void rs_metrics_snapshot(chat_store_t *st, chat_metrics_snapshot_t *out)
{
    rs_store_t *rs = RS(st);
    const char *a[6] = {"EVAL",
                        "local function n(k) return math.max(0, tonumber("
                        "redis.call('GET', ARGV[1]..k) or '0')) end "
                        "return {redis.call('ZCARD', ARGV[1]..'all'), n('bytes'), "
                        "n('an'), n('ab')}",
                        "0", RS_PREFIX};
    redisReply *r;

    chat_metrics_snapshot(rs->local, out);
    out->max_conversations = rs->layout.max_conversations;
    out->arena_size = rs->layout.history_bytes;
    if ((r = rs_command(rs, 4, a, NULL))) {
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
            out->conversations = (uint32_t)rint_(r->element[0]);
            out->arena_used = (uint64_t)rint_(r->element[1]);
            out->anon_conversations = (uint32_t)rint_(r->element[2]);
            out->anon_arena_used = (uint64_t)rint_(r->element[3]);
        }
        freeReplyObject(r);
    }
}

static int rs_metrics_series_count(chat_store_t *st)
{
    return chat_metrics_series_count(RS(st)->local);
}

static chat_status_t rs_metrics_series_get(chat_store_t *st, int series,
                                           chat_series_snapshot_t *out)
{
    return chat_metrics_series_get(RS(st)->local, series, out);
}

const chat_store_provider_t rs_provider = {
    .name = "redis",
    .detach = rs_detach,
    .set_policy = rs_set_policy,
    .proc_attach = rs_proc_attach,
    .proc_detach = rs_proc_detach,
    .maintain = rs_maintain,
    .conv_create = rs_conv_create,
    .create_retry_ms = rs_create_retry_ms,
    .conv_get = rs_conv_get,
    .conv_list = rs_conv_list,
    .conv_latest = rs_conv_latest,
    .conv_rename = rs_conv_rename,
    .conv_flags = rs_conv_flags,
    .conv_delete = rs_conv_delete,
    .conv_meta_get = rs_conv_meta_get,
    .conv_meta_set = rs_conv_meta_set,
    .gen_begin = rs_gen_begin,
    .gen_state = rs_gen_state,
    .gen_end = rs_gen_end,
    .gen_request_stop = rs_gen_request_stop,
    .gen_stop_requested = rs_gen_stop_requested,
    .conv_seq = rs_conv_seq,
    .msg_append = rs_msg_append,
    .msg_extend = rs_msg_extend,
    .msg_flags = rs_msg_flags,
    .msg_truncate = rs_msg_truncate,
    .msg_read = rs_msg_read,
    .msg_tail = rs_msg_tail,
    .msg_tail_meta = rs_msg_tail_meta,
    .msg_branch = rs_msg_branch,
    .msg_select = rs_msg_select,
    .msg_get = rs_msg_get,
    .rate_take = rs_rate_take,
    .user_bump = rs_user_bump,
    .user_seq = rs_user_seq,
    .events = rs_events,
    .backend_register = rs_backend_register,
    .backend_acquire = rs_backend_acquire,
    .backend_cancel = rs_backend_cancel,
    .backend_release = rs_backend_release,
    .backend_beat = rs_backend_beat,
    .breaker_allow = rs_breaker_allow,
    .breaker_result = rs_breaker_result,
    .backend_health = rs_backend_health,
    .backend_get = rs_backend_get,
    .backend_count = rs_backend_count,
    .series = rs_series,
    .metrics_add = rs_metrics_add,
    .metrics_observe = rs_metrics_observe,
    .metrics_gauge_add = rs_metrics_gauge_add,
    .metrics_error = rs_metrics_error,
    .metrics_snapshot = rs_metrics_snapshot,
    .metrics_series_count = rs_metrics_series_count,
    .metrics_series_get = rs_metrics_series_get,
    .turn_start = rs_turn_start,
    .turn_start_acquire = rs_turn_start_acquire,
    .turn_start_bot = rs_turn_start_bot,
    .turn_finish = rs_turn_finish,
    .turn_finish_text = rs_turn_finish_text,
    .turn_finish_release = rs_turn_finish_release,
    .conv_find_or_create = rs_conv_find_or_create,
    .watch = rs_watch_op,
    .rate_take2 = rs_rate_take2,
};
