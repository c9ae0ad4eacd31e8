/* mod_chatbot_store_redis_args.c - the redis store provider's small
 * shared helpers: a script's arguments (rs_args_t), owners and ids as
 * keys, replies read into numbers, statuses and conversation records, the
 * change counters' slots (a shard channel's number) and the evictions a
 * script reports. The operations are in mod_chatbot_store_redis_ops.c,
 * _msg.c and _turn.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpd.h"
#include "http_log.h"
#include "http_main.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))

/* ---- arguments ------------------------------------------------------------ */

void arg_mem(rs_args_t *a, const char *s, size_t len)
{
    if (a->n >= (int)(sizeof(a->v) / sizeof(a->v[0]))) {
        return; /* never: the scripts' arguments are counted (rs_args_t) */
    }
    a->v[a->n] = s ? s : "";
    a->l[a->n] = s ? len : 0;
    a->n++;
}

void arg_str(rs_args_t *a, const char *s)
{
    arg_mem(a, s, s ? strlen(s) : 0);
}

void arg_i64(rs_args_t *a, long long v)
{
    int k = snprintf(a->num[a->n], sizeof(a->num[0]), "%lld", v);
    arg_mem(a, a->num[a->n], (size_t)k);
}

void arg_u64(rs_args_t *a, unsigned long long v)
{
    int k = snprintf(a->num[a->n], sizeof(a->num[0]), "%llu", v);
    arg_mem(a, a->num[a->n], (size_t)k);
}

redisReply *rs_run(chat_store_t *st, rs_lua_t i, rs_args_t *a)
{
    return rs_eval(RS(st), i, a->n, a->v, a->l);
}

/* ---- helpers -------------------------------------------------------------- */

void owner_hex(const chat_owner_t *o, char out[41])
{
    static const char hx[] = "0123456789abcdef";
    int i;

    for (i = 0; i < 20; i++) {
        out[2 * i] = hx[o->b[i] >> 4];
        out[2 * i + 1] = hx[o->b[i] & 15];
    }
    out[40] = '\0';
}

int valid_id(const char *id)
{
    int i;

    if (!id) {
        return 0;
    }
    for (i = 0; i < CHAT_CONV_ID_LEN; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return id[CHAT_CONV_ID_LEN] == '\0';
}

/* The owner (hex) and conversation id arguments most scripts start with;
 * -1 (CHAT_ENOTFOUND for the caller) if either is missing or malformed. */
int arg_owner_id(rs_args_t *a, char hex[41], const chat_owner_t *owner, const char *id)
{
    if (!owner || !valid_id(id)) {
        return -1;
    }
    owner_hex(owner, hex);
    arg_str(a, hex);
    arg_str(a, id);
    return 0;
}

long long rint_(const redisReply *r)
{
    if (!r) {
        return 0;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
    }
    if (r->type == REDIS_REPLY_STRING) {
        return strtoll(r->str, NULL, 10);
    }
    return 0;
}

static unsigned long long ru64(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_STRING ? strtoull(r->str, NULL, 10)
                                              : (unsigned long long)rint_(r);
}

void rs_rcopy(char *dst, size_t cap, const redisReply *r)
{
    size_t n = r && r->type == REDIS_REPLY_STRING ? r->len : 0;

    if (n >= cap) {
        n = cap - 1;
    }
    if (n) {
        memcpy(dst, r->str, n);
    }
    dst[n] = '\0';
}

/* The status of an integer reply or of the first element of an array. */
chat_status_t status_of(const redisReply *r)
{
    if (!r) {
        return CHAT_EUNAVAIL;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        return (chat_status_t)r->integer;
    }
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        return (chat_status_t)rint_(r->element[0]);
    }
    if (r->type == REDIS_REPLY_ERROR && r->str && rs_refused(r->str)) {
        return CHAT_EUNAVAIL;
    }
    return CHAT_EINTERNAL;
}

chat_status_t rs_unexpected(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR ? status_of(r) : CHAT_EINTERNAL;
}

chat_status_t rs_done(redisReply *r)
{
    chat_status_t rc = status_of(r);

    if (r) {
        freeReplyObject(r);
    }
    return rc;
}

/* A conversation from the script fields (info() in the Lua prelude):
 * b t f s q c u by sq g st nmsgs model, at e[0..12]. */
void conv_of(chat_conv_info_t *c, const char *id, redisReply **e)
{
    char cid[sizeof(c->id)];

    /* id may be c->id itself (a caller reading its conversation again) */
    apr_cpystrn(cid, id, sizeof(cid));
    memset(c, 0, sizeof(*c));
    memcpy(c->id, cid, sizeof(cid));
    rs_rcopy(c->bot, sizeof(c->bot), e[0]);
    rs_rcopy(c->title, sizeof(c->title), e[1]);
    c->flags = (uint32_t)rint_(e[2]);
    c->state = (uint32_t)rint_(e[3]);
    c->queue_position = (int32_t)rint_(e[4]);
    c->created_ms = ru64(e[5]);
    c->updated_ms = ru64(e[6]);
    c->bytes = ru64(e[7]);
    c->seq = ru64(e[8]);
    c->gen_token = ru64(e[9]);
    c->stop_requested = rint_(e[10]) != 0;
    c->nmsgs = (uint32_t)rint_(e[11]);
    /* only what chat_settings_parse would read */
    if (e[12]->type == REDIS_REPLY_STRING &&
        chat_settings_model_ok(e[12]->str, e[12]->len)) {
        rs_rcopy(c->model, sizeof(c->model), e[12]);
    }
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

apr_uint32_t rs_slot(const char *s, size_t n)
{
    int a, b, c;

    if (n >= 3 && (a = hexv(s[0])) >= 0 && (b = hexv(s[1])) >= 0 &&
        (c = hexv(s[2])) >= 0) {
        return (apr_uint32_t)(a << 8 | b << 4 | c);
    }
    return rs_hash(s, n) % RS_SEQ_SLOTS;
}

/* The evictions a script reports (its reply's element): a count, or one
 * line each (room() and evict() in the Lua prelude), logged as the shm
 * store logs its own; counted in this host's ChatbotEvictions. */
long long rs_evictions(rs_store_t *rs, const redisReply *e)
{
    long long n;
    size_t i;

    if (!e) {
        return 0;
    }
    if (e->type != REDIS_REPLY_ARRAY) {
        n = rint_(e);
    }
    else {
        for (i = 0; i < e->elements; i++) {
            const redisReply *x = e->element[i];
            if (x->type == REDIS_REPLY_STRING) {
                ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, ap_server_conf,
                             APLOGNO(10968) "chatbot: chatbot store: evicted "
                                            "conversation %.*s",
                             (int)x->len, x->str);
            }
        }
        n = (long long)e->elements;
    }
    if (n > 0) {
        chat_metrics_gauge_add(rs->local, CHAT_G_EVICTIONS, n);
    }
    return n;
}

const chat_quota_t *quota_of(chat_store_t *st, const chat_owner_t *owner)
{
    return owner->auth ? &RS(st)->policy.auth : &RS(st)->policy.anon;
}

void arg_limits(chat_store_t *st, rs_args_t *a, const chat_owner_t *owner)
{
    rs_store_t *rs = RS(st);

    arg_u64(a, rs->layout.max_messages);
    arg_u64(a, rs->layout.max_message_bytes);
    arg_u64(a, rs->layout.history_bytes);
    arg_u64(a, quota_of(st, owner)->history_bytes);
    arg_str(a, owner->auth ? "1" : "0");
}
