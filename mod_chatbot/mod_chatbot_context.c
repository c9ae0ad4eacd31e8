/* mod_chatbot_context.c - what the model is sent for a turn: the system
 * prompt, the conversation's own settings, and the context (the stored
 * conversation's tail, or a stateless turn's own messages, cut alike).
 */
#include <string.h>

#include "httpd.h"
#include "apr_strings.h"

#include "mod_chatbot_engine.h"
#include "mod_chatbot_settings.h"

typedef struct {
    apr_pool_t *p;
    apr_array_header_t *msgs;
} ctx_collect_t;

static void collect_msg(void *baton, const chat_msg_info_t *info, const char *text,
                        size_t len)
{
    ctx_collect_t *c = baton;
    chat_msg_t *m = apr_array_push(c->msgs);

    m->role = info->role;
    m->content = apr_pstrmemdup(c->p, text, len);
    m->len = len;
}

apr_array_header_t *chatbot_turn_context(chatbot_turn_priv_t *t, chat_options_t *opts)
{
    chatbot_engine_t *e = t->e;
    chatbot_turn_t *p = &t->pub;
    chatbot_bot_t *bot = p->bot;
    chat_store_t *st = chatbot_store();
    ctx_collect_t cc;
    chat_msg_t *sys;
    int n;

    cc.p = t->pool;
    cc.msgs = apr_array_make(t->pool, 24, sizeof(chat_msg_t));
    sys = apr_array_push(cc.msgs);
    sys->role = CHAT_ROLE_SYSTEM;
    sys->content = bot->system_prompt;
    sys->len = strlen(bot->system_prompt);
    *opts = bot->options;
    p->model = bot->model;
    if (t->stateless) {
        for (n = 0; n < t->nctx; n++) {
            *(chat_msg_t *)apr_array_push(cc.msgs) = t->ctx[n];
        }
    }
    else {
        /* the conversation's own settings, as far as they are allowed now,
         * read with its tail (one request to a store on redis) */
        chatbot_settings_t cs;
        chat_buf_t mb;
        chat_buf_init(&mb);
        n = chat_store_msg_tail_meta(
            st, &e->id.owner, p->conv_id, (uint32_t)bot->context_messages,
            (size_t)bot->context_tokens * 4, &e->scratch, collect_msg, &cc, &mb);
        chat_buf_reset(&e->scratch, 64 * 1024);
        chatbot_settings_of_blob(t->pool, &e->lim, mb.data, mb.len, &cs);
        chat_buf_free(&mb);
        sys = (chat_msg_t *)cc.msgs->elts; /* the tail may have moved it */
        if (cs.model) {
            p->model = cs.model;
        }
        if (cs.system) {
            sys->content = cs.system;
            sys->len = cs.system_len;
        }
        if (cs.has_temperature) {
            opts->temperature = cs.temperature;
        }
    }
    if (n < 0) {
        return NULL;
    }
    if (!sys->len) {
        /* an empty system prompt is not sent */
        cc.msgs->elts += sizeof(chat_msg_t);
        cc.msgs->nelts--;
    }
    return cc.msgs;
}

/* The context of a stateless turn: the caller's history then the new
 * message, cut like chat_store_msg_tail cuts a stored conversation (the
 * newest messages, at most context_messages of them and context_tokens * 4
 * bytes, the newest always). The texts stay the caller's. */
void chatbot_turn_stateless_context(chatbot_turn_priv_t *t, const chatbot_turn_req_t *req)
{
    chatbot_bot_t *bot = req->bot;
    apr_size_t total = req->nhistory + 1, budget = (apr_size_t)bot->context_tokens * 4;
    apr_size_t taken = 0, bytes = 0, i;

    while (taken < total) {
        apr_size_t k = total - 1 - taken;
        apr_size_t len = k == req->nhistory ? req->len : req->history[k].len;
        if (bot->context_messages > 0 && taken >= (apr_size_t)bot->context_messages) {
            break;
        }
        if (taken > 0 && bytes + len > budget) {
            break;
        }
        bytes += len;
        taken++;
    }
    t->ctx = apr_palloc(t->pool, sizeof(chat_msg_t) * taken);
    t->nctx = (int)taken;
    for (i = 0; i < taken; i++) {
        apr_size_t k = total - taken + i;
        if (k == req->nhistory) {
            t->ctx[i].role = CHAT_ROLE_USER;
            t->ctx[i].content = req->content;
            t->ctx[i].len = req->len;
        }
        else {
            t->ctx[i] = req->history[k];
        }
    }
}
