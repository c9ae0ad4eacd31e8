/* mod_chatbot_store_redis_titled.c - chat_store_conv_find_or_create with
 * the store on redis: the owner's conversation with a given title, or a
 * new one, so that two hosts (or children) asked at once for the same
 * title make one conversation. The look-up and the creation are one Lua
 * script (lua_titled in mod_chatbot_store_redis_lua.c): a first run only
 * looks; if nothing has that title, the creation bucket
 * (ChatbotQuota ... sessions=) is taken and a second run looks again and
 * creates in the same step. A caller that lost the race gets the
 * conversation the other one made (its bucket token is spent).
 */
#include <stdio.h>
#include <string.h>

#include "mod_chatbot_store_redis.h"

#define RS(st) ((rs_store_t *)(st))

static chat_status_t titled(chat_store_t *st, const chat_owner_t *owner, const char *bot,
                            const char *title, uint32_t flags, uint64_t tag,
                            uint64_t now_ms, int create, chat_conv_info_t *out,
                            int *created)
{
    rs_store_t *rs = RS(st);
    const chat_quota_t *q = quota_of(st, owner);
    char hex[41], id[CHAT_CONV_ID_LEN + 1];
    rs_args_t a = {0};
    redisReply *r;
    long long status;

    owner_hex(owner, hex);
    snprintf(id, sizeof(id), "%08x%016llx", (unsigned)(chatbot_random64() & 0xffffffffu),
             (unsigned long long)tag);
    arg_str(&a, hex);
    arg_str(&a, owner->auth ? "1" : "0");
    arg_str(&a, id);
    arg_str(&a, bot);
    arg_str(&a, title);
    arg_u64(&a, now_ms);
    arg_u64(&a, q->conversations);
    arg_u64(&a, rs->layout.max_conversations);
    arg_u64(&a, flags);
    arg_str(&a, create ? "1" : "0");
    arg_u64(&a, rs->policy.anon_share_pct);
    if (!(r = rs_eval(rs, RS_LUA_TITLED, a.n, a.v, a.l))) {
        return CHAT_EUNAVAIL;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
        chat_status_t rc = rs_unexpected(r);
        freeReplyObject(r);
        return rc;
    }
    status = rint_(r->element[0]);
    rs_evictions(rs, r->element[1]);
    if (status == 2 || status < 0) {
        freeReplyObject(r);
        return status == 2 ? CHAT_ENOTFOUND : (chat_status_t)status;
    }
    if (r->elements != 3 + RS_NFIELDS || r->element[2]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return CHAT_EINTERNAL;
    }
    if (out) {
        conv_of(out, r->element[2]->str, r->element + 3);
    }
    if (created) {
        *created = status == 0;
    }
    freeReplyObject(r);
    return CHAT_OK;
}

chat_status_t rs_conv_find_or_create(chat_store_t *st, const chat_owner_t *owner,
                                     const char *bot, const char *title, uint32_t flags,
                                     uint64_t tag, uint64_t now_ms, chat_conv_info_t *out,
                                     int *created)
{
    chat_status_t rc;
    int64_t wait;

    if (created) {
        *created = 0;
    }
    if (!owner || !bot || !*bot || strlen(bot) > CHAT_BOT_NAME_MAX || tag == 0 ||
        !title || strlen(title) > CHAT_TITLE_MAX) {
        return CHAT_EINVAL;
    }
    rc = titled(st, owner, bot, title, flags, tag, now_ms, 0, out, created);
    if (rc != CHAT_ENOTFOUND) {
        return rc;
    }
    if ((rc = bucket(st, "cr", owner, &quota_of(st, owner)->create, 1, &wait)) !=
        CHAT_OK) {
        return rc;
    }
    return titled(st, owner, bot, title, flags, tag, now_ms, 1, out, created);
}
