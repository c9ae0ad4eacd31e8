/* mod_chatbot_bots.c - what the front doors ask before a turn: a bot by
 * name, a conversation resolved (or created) for an identity, the rate limit.
 */
#include "httpd.h"
#include "http_config.h"

#include "mod_chatbot.h"

chatbot_bot_t *chatbot_bot_get(server_rec *s, const char *name)
{
    chatbot_srv_conf *sc = chatbot_srv(s);

    if (!name || !*name) {
        return sc->default_bot_p;
    }
    return chatbot_bot_find(sc, name);
}

const char *chatbot_conv_resolve(request_rec *r, const chatbot_ident_t *id,
                                 chatbot_bot_t *bot, const char *conv_id, int create,
                                 chat_conv_info_t *out)
{
    chat_store_t *st = chatbot_store();
    chat_status_t rc;

    if (!st) {
        return CHAT_ERR_INTERNAL;
    }
    if (conv_id) {
        rc = chat_store_conv_get(st, &id->owner, conv_id, out);
    }
    else {
        rc = chat_store_conv_latest(st, &id->owner, bot ? bot->name : NULL, out);
        if (rc == CHAT_ENOTFOUND && create) {
            if (!bot) {
                bot = chatbot_srv(r->server)->default_bot_p;
            }
            rc = chat_store_conv_create(st, &id->owner, bot->name, NULL,
                                        chatbot_random64(), chatbot_now_ms(), out);
            if (rc == CHAT_OK) {
                chat_store_user_bump(st, &id->owner);
            }
        }
    }
    if (rc == CHAT_OK) {
        return NULL;
    }
    return chatbot_store_err(rc);
}

/* ---- the rate limit ------------------------------------------------------------- */

const char *chatbot_rate_check(const chatbot_ident_t *id, const chatbot_limits_t *lim,
                               apr_int64_t *retry_ms)
{
    chat_store_t *st = chatbot_store();
    int64_t retry = 0;
    chat_status_t rc;

    *retry_ms = 0;
    if (!st || (lim->rate.count == 0 && (!id->anonymous || lim->anon_rate.count == 0))) {
        return NULL;
    }
    /* The identity's own bucket first (a refused message then takes nothing
     * from its neighbours'), then, for anonymous identities, the budget of
     * the client's address, which a new cookie does not refill. */
    if (lim->rate.count && id->anonymous && lim->anon_rate.count) {
        /* both in one step (redis: one round trip) */
        rc = chat_store_rate_take2(st, &id->owner, &lim->rate, &id->addr, &lim->anon_rate,
                                   chatbot_now_ms(), &retry);
    }
    else {
        rc = lim->rate.count ? chat_store_rate_take(st, &id->owner, &lim->rate,
                                                    chatbot_now_ms(), &retry)
                             : CHAT_OK;
        if (rc == CHAT_OK && id->anonymous && lim->anon_rate.count) {
            rc = chat_store_rate_take(st, &id->addr, &lim->anon_rate, chatbot_now_ms(),
                                      &retry);
        }
    }
    if (rc == CHAT_ELIMIT) {
        *retry_ms = retry;
        chat_metrics_gauge_add(st, CHAT_G_RATE_LIMITED, 1);
        return CHAT_ERR_RATE_LIMITED;
    }
    return NULL;
}
