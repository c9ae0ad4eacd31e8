/* mod_chatbot_store_redis_turn.c - a chat turn's bookkeeping on redis in
 * one round trip each way (chat_store_turn_start / _finish in
 * include/chat/store.h). Without them a turn's start was four round trips
 * (generation begin, the user's message, the conversation's flags, the
 * owner's list) and its end four more; with many connections each round
 * trip is a wait and a context switch, which is what made the store on
 * redis slow (docs/performance.md). The script (lua_turn in
 * mod_chatbot_store_redis_lua.c) does the same steps as the separate
 * scripts, with the same limits, atomically.
 */
#include <string.h>

#include "apr_atomic.h"

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))
#define GEN_LEASE_MS (600 * 1000) /* as in mod_chatbot_store_redis_ops.c */

/* The arguments both ops start with: op owner id token now, the limits. */
static int turn_args(chat_store_t *st, rs_args_t *a, char hex[41], const char *op,
                     const chat_owner_t *owner, const char *id, uint64_t token,
                     uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    const chat_quota_t *q;

    if (!owner || !valid_id(id) || token == 0) {
        return -1;
    }
    q = quota_of(st, owner);
    owner_hex(owner, hex);
    arg_str(a, op);
    arg_str(a, hex);
    arg_str(a, id);
    arg_u64(a, token);
    arg_u64(a, now_ms);
    arg_u64(a, rs->layout.max_messages);
    arg_u64(a, rs->layout.max_message_bytes);
    arg_u64(a, rs->layout.history_bytes);
    arg_u64(a, q->history_bytes);
    arg_str(a, owner->auth ? "1" : "0");
    return 0;
}

/* Status, evictions counted, the message's index (start). */
static chat_status_t turn_reply(rs_store_t *rs, redisReply *r, uint32_t *index_out)
{
    chat_status_t rc = status_of(r);

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
        if (rint_(r->element[1]) > 0) {
            chat_metrics_gauge_add(rs->local, CHAT_G_EVICTIONS, rint_(r->element[1]));
        }
        if (rc == CHAT_OK && index_out) {
            *index_out = (uint32_t)rint_(r->element[2]);
        }
    }
    else if (r && rc == CHAT_OK) {
        rc = CHAT_EINTERNAL;
    }
    if (r) {
        freeReplyObject(r);
    }
    return rc;
}

/* Tells this child's watchers (at their next look, as with the shm store);
 * the others hear the channel, this child skips its own message there. */
static void local_user_news(rs_store_t *rs, const char *hex)
{
    apr_atomic_inc32(&rs->user_seq[rs_hash(hex, 40) % RS_SEQ_SLOTS]);
    apr_atomic_inc32(&rs->events);
}

chat_status_t rs_turn_start(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint64_t token, uint32_t state, const char *text, size_t len,
                            uint32_t flags, uint64_t now_ms, uint32_t *index_out)
{
    rs_store_t *rs = RS(st);
    rs_args_t a = {0};
    char hex[41];
    chat_status_t rc;

    if (state != CHAT_CONV_QUEUED && state != CHAT_CONV_GENERATING) {
        return CHAT_EINVAL;
    }
    if (turn_args(st, &a, hex, "s", owner, id, token, now_ms)) {
        return token == 0 ? CHAT_EINVAL : CHAT_ENOTFOUND;
    }
    if (len && !text) {
        return CHAT_EINVAL;
    }
    arg_u64(&a, state);
    arg_u64(&a, GEN_LEASE_MS);
    arg_mem(&a, text ? text : "", text ? len : 0);
    arg_str(&a, text ? "1" : "0");
    arg_u64(&a, flags);
    arg_u64(&a, CHAT_CONV_STOPPED);
    arg_str(&a, rs->origin);
    rc = turn_reply(rs, rs_eval(rs, RS_LUA_TURN, a.n, a.v, a.l), index_out);
    if (rc == CHAT_OK) {
        local_user_news(rs, hex);
    }
    return rc;
}

chat_status_t rs_turn_finish(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint64_t token, uint32_t answer_set, const char *err,
                             size_t err_len, uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    rs_args_t a = {0};
    char hex[41];
    chat_status_t rc;

    if (turn_args(st, &a, hex, "f", owner, id, token, now_ms)) {
        return CHAT_ENOTFOUND;
    }
    arg_u64(&a, answer_set);
    arg_u64(&a, CHAT_MSG_STREAMING);
    arg_mem(&a, err ? err : "", err ? err_len : 0);
    arg_str(&a, err ? "1" : "0");
    arg_u64(&a, CHAT_MSG_ERROR);
    arg_str(&a, "");
    arg_str(&a, rs->origin);
    rc = turn_reply(rs, rs_eval(rs, RS_LUA_TURN, a.n, a.v, a.l), NULL);
    rs_gen_ended(rs, id, token, rc == CHAT_EUNAVAIL);
    local_user_news(rs, hex);
    return rc;
}
