/* mod_chatbot_store_redis_turn.c - a chat turn's bookkeeping on redis in
 * one round trip each way (chat_store_turn_start / _finish in
 * include/chat/store.h). Without them a turn's start was four round trips
 * (generation begin, the user's message, the conversation's flags, the
 * owner's list) and its end four more; with many connections each round
 * trip is a wait and a context switch, which is what made the store on
 * redis slow (docs/performance.md). The script (lua_turn in
 * mod_chatbot_store_redis_lua.c) does the same steps as the separate
 * scripts, with the same limits, atomically. The generations' own steps
 * (begin, state, end, stop, and the ones an outage left pending) are here
 * too (lua_gen).
 */
#include <string.h>

#include "apr_atomic.h"
#include "apr_strings.h"

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))

/* The arguments both ops start with: op owner id token now, the limits. */
static int turn_args(chat_store_t *st, rs_args_t *a, char hex[41], const char *op,
                     const chat_owner_t *owner, const char *id, uint64_t token,
                     uint64_t now_ms)
{
    if (!owner || !valid_id(id) || token == 0) {
        return -1;
    }
    owner_hex(owner, hex);
    arg_str(a, op);
    arg_str(a, hex);
    arg_str(a, id);
    arg_u64(a, token);
    arg_u64(a, now_ms);
    arg_limits(st, a, owner);
    return 0;
}

chat_status_t rs_index_reply(rs_store_t *rs, redisReply *r, uint32_t *index_out)
{
    chat_status_t rc = status_of(r);

    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
        rs_evictions(rs, r->element[1]);
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
static apr_uint32_t local_user_news(rs_store_t *rs, const char *hex)
{
    apr_uint32_t old = apr_atomic_inc32(&rs->user_seq[rs_slot(hex, 40)]);

    apr_atomic_inc32(&rs->events);
    return old;
}

/* Element k of reply r, taken out of it (the caller frees it); r keeps
 * its first k elements, the others are freed. */
static redisReply *take_tail(redisReply *r, size_t k)
{
    redisReply *x = r->element[k];
    size_t j;

    for (j = k + 1; j < r->elements; j++) {
        freeReplyObject(r->element[j]);
    }
    r->elements = k;
    return x;
}

/* The start's reply with the acquire's appended (rs_turn_start_acquire):
 * what the acquire tells goes where rs_backend_acquire puts it. */
static void acquired(rs_store_t *rs, redisReply *r, const char *name, apr_uint32_t wake,
                     chat_turn_acquire_t *acq)
{
    size_t k;

    for (k = 3; k < 9; k++) {
        if (r->element[k]->type != REDIS_REPLY_INTEGER) {
            return; /* tried 0: the caller acquires on its own */
        }
    }
    acq->rc = rs_backend_acq_reply(rs, acq->backend, name, acq->ticket, acq->now_ms, wake,
                                   r->element + 3, &acq->position);
    acq->generating = acq->rc == CHAT_OK && r->element[8]->integer == 1;
    acq->tried = 1;
}

/* The start (op s), with bot ("": none) the bot the caller believes the
 * conversation has: the script checks it with the owner, before it
 * changes anything (chat_store_turn_start_bot). */
static chat_status_t turn_start(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *bot, uint64_t token,
                                uint32_t state, const char *text, size_t len,
                                uint32_t flags, uint64_t now_ms, uint32_t *index_out,
                                chat_turn_acquire_t *acq)
{
    rs_store_t *rs = RS(st);
    rs_args_t a = {0};
    char hex[41];
    chat_backend_info_t bi;
    apr_uint32_t wake = apr_atomic_read32(&rs->bk_wake), s0;
    redisReply *r, *list = NULL, *cx = NULL;
    chat_status_t rc;
    int with_acq, failed;

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
    arg_u64(&a, RS_GEN_LEASE_MS);
    arg_mem(&a, text ? text : "", text ? len : 0);
    arg_str(&a, text ? "1" : "0");
    arg_u64(&a, flags);
    arg_u64(&a, CHAT_CONV_STOPPED);
    arg_str(&a, rs->origin);
    arg_u64(&a, rs->policy.anon_share_pct);
    arg_str(&a, bot);
    with_acq = acq && rs_backend_acq_args(rs, acq->backend, acq->ticket, &a, &bi) == 0;
    if (with_acq) {
        arg_str(&a, rs_list_wanted(rs, hex) ? "1" : "0");
        if (acq->ctx_msgs) {
            /* the context too, read once the slot is taken */
            arg_u64(&a, acq->ctx_msgs);
            arg_u64(&a, acq->ctx_bytes);
            arg_u64(&a, RS_TAIL_SKIP);
        }
    }
    s0 = apr_atomic_read32(&rs->user_seq[rs_slot(hex, 40)]);
    rs_watch_gen(rs, id); /* its stop is heard here */
    r = rs_eval(rs, RS_LUA_TURN, a.n, a.v, a.l);
    failed = r && r->type == REDIS_REPLY_ERROR;
    if (with_acq && r && r->type == REDIS_REPLY_ARRAY && r->elements == 11) {
        cx = take_tail(r, 10);
    }
    if (with_acq && r && r->type == REDIS_REPLY_ARRAY && r->elements == 10) {
        acquired(rs, r, bi.name, wake, acq);
        list = take_tail(r, 9);
        freeReplyObject(take_tail(r, 3)); /* the start's own reply remains */
    }
    rc = rs_index_reply(rs, r, index_out);
    if (rc == CHAT_OK) {
        rs_list_keep(rs, hex, s0, local_user_news(rs, hex) + 1, list);
        list = NULL;
        if (cx && acq->tried && acq->rc == CHAT_OK) {
            rs_ctx_keep(hex, id, acq->ctx_msgs, acq->ctx_bytes, cx);
            cx = NULL;
        }
    }
    else if (rc == CHAT_EUNAVAIL || failed) {
        /* a redis that hung runs the script when it wakes up, after the
         * caller has given up on the turn: end that generation then, and
         * give back the slot it may have taken (sent now, run after it);
         * a script that failed half-way (an error reply) may have begun
         * the generation and taken the slot as well */
        rs_gen_ended(rs, id, token, 1);
        if (with_acq) {
            rs_backend_release(st, acq->backend, acq->ticket);
        }
    }
    if (list) {
        freeReplyObject(list);
    }
    if (cx) {
        freeReplyObject(cx);
    }
    return rc;
}

chat_status_t rs_turn_start_acquire(chat_store_t *st, const chat_owner_t *owner,
                                    const char *id, uint64_t token, uint32_t state,
                                    const char *text, size_t len, uint32_t flags,
                                    uint64_t now_ms, uint32_t *index_out,
                                    chat_turn_acquire_t *acq)
{
    return turn_start(st, owner, id, "", token, state, text, len, flags, now_ms,
                      index_out, acq);
}

chat_status_t rs_turn_start_bot(chat_store_t *st, const chat_owner_t *owner,
                                const char *id, const char *bot, uint64_t token,
                                uint32_t state, const char *text, size_t len,
                                uint32_t flags, uint64_t now_ms, uint32_t *index_out,
                                chat_turn_acquire_t *acq)
{
    if (!*bot) {
        return CHAT_EINVAL;
    }
    return turn_start(st, owner, id, bot, token, state, text, len, flags, now_ms,
                      index_out, acq);
}

chat_status_t rs_turn_start(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint64_t token, uint32_t state, const char *text, size_t len,
                            uint32_t flags, uint64_t now_ms, uint32_t *index_out)
{
    return turn_start(st, owner, id, "", token, state, text, len, flags, now_ms,
                      index_out, NULL);
}

/* The finish (lua_turn "f"), with ans (NULL: none) stored first in the
 * same script. Its reply: {status, evicted, index, list | 0, refused}:
 * refused 1 when the store refused ans's text (status says why; nothing
 * else was done), or the 3 elements of an early refusal. */
static chat_status_t finish(chat_store_t *st, const chat_owner_t *owner, const char *id,
                            uint64_t token, chat_turn_text_t *ans, uint32_t answer_set,
                            const char *err, size_t err_len, uint64_t now_ms,
                            const chat_turn_release_t *rel)
{
    rs_store_t *rs = RS(st);
    rs_args_t a = {0};
    char hex[41];
    chat_status_t rc;
    redisReply *r, *list = NULL;
    apr_uint32_t s0, seq;
    int refused = 0, failed;
    chat_backend_info_t bi;

    if (turn_args(st, &a, hex, "f", owner, id, token, now_ms)) {
        if (rel) {
            rs_backend_release(st, rel->backend, rel->ticket);
        }
        return ans ? (ans->rc = CHAT_ENOTFOUND) : CHAT_ENOTFOUND;
    }
    arg_u64(&a, answer_set);
    arg_u64(&a, CHAT_MSG_STREAMING);
    arg_mem(&a, err ? err : "", err ? err_len : 0);
    arg_str(&a, err ? "1" : "0");
    arg_u64(&a, CHAT_MSG_ERROR);
    arg_str(&a, !ans ? "" : ans->extend ? "e" : "a");
    arg_str(&a, rs->origin);
    arg_u64(&a, rs->policy.anon_share_pct);
    arg_str(&a, rs_list_wanted(rs, hex) ? "1" : "0");
    arg_mem(&a, ans ? ans->text : "", ans ? ans->len : 0);
    arg_u64(&a, CHAT_MSG_STREAMING);
    if (rel && rs_backend_release_local(st, rel->backend, rel->ticket, &bi) == 0) {
        arg_str(&a, bi.name);
        arg_u64(&a, rel->ticket);
    }
    else {
        rel = NULL; /* nothing for redis to give back */
    }
    s0 = apr_atomic_read32(&rs->user_seq[rs_slot(hex, 40)]);
    r = rs_eval(rs, RS_LUA_TURN, a.n, a.v, a.l);
    failed = r && r->type == REDIS_REPLY_ERROR;
    if (rel && (!r || failed)) {
        /* the script may not have run (it gives the slot back first, so a
         * second release is harmless either way) */
        rs_backend_release_send(rs, bi.name, rel->ticket);
    }
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 5) {
        refused = rint_(r->element[4]) == 1;
        freeReplyObject(take_tail(r, 4));
        list = take_tail(r, 3); /* the owner's list, for the tab's next read */
        if (list->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(list);
            list = NULL;
        }
    }
    rc = rs_index_reply(rs, r, ans && !ans->extend ? &ans->index : NULL);
    if (ans) {
        ans->rc = rc; /* the script stores the text first, or stops */
    }
    if (refused) {
        /* the generation goes on: the caller finishes it with the reason */
        if (list) {
            freeReplyObject(list);
        }
        return rc;
    }
    /* an error reply: the finish may have stopped half-way, before the
     * generation's end */
    rs_gen_ended(rs, id, token, rc == CHAT_EUNAVAIL || failed);
    seq = local_user_news(rs, hex) + 1;
    if (rc == CHAT_OK && list) {
        rs_list_keep(rs, hex, s0, seq, list);
    }
    else if (list) {
        freeReplyObject(list);
    }
    return rc;
}

chat_status_t rs_turn_finish(chat_store_t *st, const chat_owner_t *owner, const char *id,
                             uint64_t token, uint32_t answer_set, const char *err,
                             size_t err_len, uint64_t now_ms)
{
    return finish(st, owner, id, token, NULL, answer_set, err, err_len, now_ms, NULL);
}

chat_status_t rs_turn_finish_text(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id, uint64_t token, chat_turn_text_t *ans,
                                  uint32_t answer_set, const char *err, size_t err_len,
                                  uint64_t now_ms)
{
    return finish(st, owner, id, token, ans, answer_set, err, err_len, now_ms, NULL);
}

chat_status_t rs_turn_finish_release(chat_store_t *st, const chat_owner_t *owner,
                                     const char *id, uint64_t token,
                                     chat_turn_text_t *ans, uint32_t answer_set,
                                     const char *err, size_t err_len, uint64_t now_ms,
                                     const chat_turn_release_t *rel)
{
    return finish(st, owner, id, token, ans, answer_set, err, err_len, now_ms, rel);
}

/* ---- generations ------------------------------------------------------------ */

static chat_status_t gen(chat_store_t *st, const char *op, const chat_owner_t *owner,
                         const char *id, uint64_t token, uint32_t state, int32_t qpos,
                         uint64_t now_ms)
{
    char hex[41] = "";
    rs_args_t a = {0};

    if (!valid_id(id)) {
        return CHAT_ENOTFOUND;
    }
    if (owner) {
        owner_hex(owner, hex);
    }
    arg_str(&a, op);
    arg_str(&a, hex);
    arg_str(&a, id);
    arg_u64(&a, token);
    arg_u64(&a, state);
    arg_i64(&a, qpos);
    arg_u64(&a, now_ms);
    arg_u64(&a, RS_GEN_LEASE_MS);
    return rs_done(rs_run(st, RS_LUA_GEN, &a));
}

chat_status_t rs_gen_begin(chat_store_t *st, const chat_owner_t *owner, const char *id,
                           uint64_t token, uint32_t state, uint64_t now_ms)
{
    chat_status_t rc;

    if (!owner || token == 0 ||
        (state != CHAT_CONV_QUEUED && state != CHAT_CONV_GENERATING)) {
        return token == 0 || !owner ? CHAT_EINVAL : CHAT_EINVAL;
    }
    rs_watch_gen(RS(st), id); /* its stop is heard here */
    rc = gen(st, "b", owner, id, token, state, 0, now_ms);
    if (rc == CHAT_EUNAVAIL) {
        rs_gen_ended(RS(st), id, token, 1); /* as in rs_turn_start */
    }
    return rc;
}

/* Sent without waiting for the reply (read at the connection's next use):
 * its only caller goes on whatever it says (a token no longer generating
 * changes nothing), and on a turn's path the next store call would wait
 * for it. CHAT_OK once sent. */
chat_status_t rs_gen_state(chat_store_t *st, const char *id, uint64_t token,
                           uint32_t state, int32_t queue_position)
{
    rs_args_t a = {0};

    if (!valid_id(id)) {
        return CHAT_ENOTFOUND;
    }
    arg_str(&a, "s");
    arg_str(&a, "");
    arg_str(&a, id);
    arg_u64(&a, token);
    arg_u64(&a, state);
    arg_i64(&a, queue_position);
    arg_u64(&a, chatbot_now_ms());
    arg_u64(&a, RS_GEN_LEASE_MS);
    return rs_eval_nowait(RS(st), RS_LUA_GEN, a.n, a.v, a.l) ? CHAT_EUNAVAIL : CHAT_OK;
}

chat_status_t rs_gen_end(chat_store_t *st, const char *id, uint64_t token,
                         uint64_t now_ms)
{
    rs_store_t *rs = RS(st);
    chat_status_t rc = gen(st, "e", NULL, id, token, 0, 0, now_ms);

    rs_gen_ended(rs, id, token, rc == CHAT_EUNAVAIL);
    return rc;
}

void rs_gen_ended(rs_store_t *rs, const char *id, apr_uint64_t token, int unreachable)
{
    if (unreachable && rs->mu) {
        /* redis is away: end it when it is back (else it would look busy
         * until the generation lease runs out) */
        apr_thread_mutex_lock(rs->mu);
        if (rs->npend < RS_PEND_MAX) {
            apr_cpystrn(rs->pend[rs->npend].id, id, sizeof(rs->pend[0].id));
            rs->pend[rs->npend++].token = token;
        }
        apr_thread_mutex_unlock(rs->mu);
    }
    if (valid_id(id)) {
        apr_atomic_set32(&rs->stop_hint[rs_slot(id, CHAT_CONV_ID_LEN)], 0);
    }
}

void rs_flush_pending(rs_store_t *rs)
{
    char id[CHAT_CONV_ID_LEN + 1];
    apr_uint64_t token;

    while (rs->mu) {
        apr_thread_mutex_lock(rs->mu);
        if (!rs->npend) {
            apr_thread_mutex_unlock(rs->mu);
            return;
        }
        rs->npend--;
        apr_cpystrn(id, rs->pend[rs->npend].id, sizeof(id));
        token = rs->pend[rs->npend].token;
        apr_thread_mutex_unlock(rs->mu);
        if (gen((chat_store_t *)rs, "x", NULL, id, token, 0, 0, chatbot_now_ms()) ==
            CHAT_EUNAVAIL) {
            apr_thread_mutex_lock(rs->mu);
            apr_cpystrn(rs->pend[rs->npend].id, id, sizeof(rs->pend[0].id));
            rs->pend[rs->npend++].token = token;
            apr_thread_mutex_unlock(rs->mu);
            return; /* away again: next time */
        }
    }
}

chat_status_t rs_gen_request_stop(chat_store_t *st, const chat_owner_t *owner,
                                  const char *id)
{
    if (!owner) {
        return CHAT_ENOTFOUND;
    }
    return gen(st, "r", owner, id, 0, 0, 0, chatbot_now_ms());
}

/* The holder's loop asks often: redis is asked only when the channel
 * said "stop" for this slot, or once a second (in case the message was
 * missed while the subscriber reconnected). */
int rs_gen_stop_requested(chat_store_t *st, const char *id, uint64_t token)
{
    rs_store_t *rs = RS(st);
    apr_uint32_t h;
    apr_uint64_t now = chatbot_now_ms();
    chat_status_t rc;

    if (!valid_id(id)) {
        return 0;
    }
    h = rs_slot(id, CHAT_CONV_ID_LEN);
    rs_watch_gen(rs, id);
    if (!apr_atomic_read32(&rs->stop_hint[h]) &&
        now - rs->stop_checked[h] < RS_STOP_RECHECK_MS) {
        return 0;
    }
    rs->stop_checked[h] = now;
    rc = gen(st, "q", NULL, id, token, 0, 0, now);
    return rc > 0;
}

uint64_t rs_conv_seq(chat_store_t *st, const char *id)
{
    rs_store_t *rs = RS(st);

    if (!valid_id(id)) {
        return 0;
    }
    return ((uint64_t)apr_atomic_read32(&rs->epoch) << 32) +
           apr_atomic_read32(&rs->conv_seq[rs_slot(id, CHAT_CONV_ID_LEN)]) + 1;
}
