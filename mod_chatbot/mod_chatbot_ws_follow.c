/* mod_chatbot_ws_follow.c - following an answer that another connection
 * writes (another tab, maybe in another child): `resume` streams it from
 * an offset, read back from the shared store as it grows, then ends it
 * with a response (or an error when the turn produced nothing). A
 * connection following an answer holds a worker, like one generating it.
 */
#include <string.h>

#include "httpd.h"
#include "http_config.h"
#include "apr_strings.h"

#include "mod_chatbot_ws.h"
#include "chat/utf8.h"

/* An answer is identified by its role (assistant) and creation time; its
 * index may move while it streams (a conversation at its message limit, or
 * short of arena, drops its oldest messages), so it is looked up again
 * among the last messages when the remembered index no longer holds it. */
typedef struct {
    apr_uint64_t ts;
    int found;
    uint32_t index;
} find_answer_t;

static void find_answer_cb(void *baton, const chat_msg_info_t *info, const char *text,
                           size_t len)
{
    find_answer_t *fa = baton;

    if (info->role == CHAT_ROLE_ASSISTANT && info->ts_ms == fa->ts) {
        fa->found = 1;
        fa->index = info->index;
    }
}

/* Under the lock: bytes [f->offset, len) of the followed answer into
 * w->scratch. CHAT_OK or CHAT_ENOTFOUND (the answer is gone). */
static chat_status_t follow_read(chatbot_wsc_t *w, chatbot_follow_t *f,
                                 const chat_conv_info_t *ci, chat_msg_info_t *mi)
{
    chat_store_t *st = chatbot_store();
    find_answer_t fa;
    uint32_t start;
    chat_status_t rc;

    rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, f->offset, &w->scratch,
                            mi);
    if (rc == CHAT_OK && mi->role == CHAT_ROLE_ASSISTANT && mi->ts_ms == f->ts) {
        return CHAT_OK;
    }
    fa.ts = f->ts;
    fa.found = 0;
    fa.index = 0;
    start = ci->nmsgs > 8 ? ci->nmsgs - 8 : 0;
    chat_store_msg_read(st, &w->id.owner, f->conv, start, 0, &w->scratch, find_answer_cb,
                        &fa);
    if (!fa.found) {
        return CHAT_ENOTFOUND;
    }
    f->index = fa.index;
    rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, f->offset, &w->scratch,
                            mi);
    return rc == CHAT_OK ? CHAT_OK : CHAT_ENOTFOUND;
}

void chatbot_ws_follow_end(chatbot_follow_t *f)
{
    if (f->watched) {
        chat_store_watch(chatbot_store(), NULL, f->conv, 0);
        f->watched = 0;
    }
    f->active = 0;
}

void chatbot_ws_follow_drop(chatbot_wsc_t *w, const char *conv)
{
    int i;

    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW; i++) {
        if (w->follow[i].active && !strcmp(w->follow[i].conv, conv)) {
            chatbot_ws_follow_end(&w->follow[i]);
        }
    }
}

void chatbot_ws_resume(chatbot_wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    chat_conv_info_t ci;
    chat_msg_info_t mi;
    chatbot_follow_t *f = NULL;
    apr_size_t offset = w->cm.offset > 0 ? (apr_size_t)w->cm.offset : 0;
    chat_status_t rc;
    int i, found = 0;

    rc = chat_store_conv_get(st, &w->id.owner, w->cm.conversation_id, &ci);
    if (rc == CHAT_OK && ci.nmsgs > 0) {
        found = chat_store_msg_get(st, &w->id.owner, ci.id, ci.nmsgs - 1, 0, &w->scratch,
                                   &mi) == CHAT_OK;
    }
    chat_buf_reset(&w->scratch, 64 * 1024);
    if (rc != CHAT_OK) {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND, "no such conversation",
                              w->cm.conversation_id, w->cm.id, -1);
        return;
    }
    apr_cpystrn(w->cur_conv, ci.id, sizeof(w->cur_conv));
    w->cur_bot = chatbot_bot_get(w->r->server, ci.bot);
    chatbot_ws_follow_drop(w, ci.id);
    if (w->eng && chatbot_engine_has(w->eng, ci.id)) {
        /* our own turn: it is already streaming to this connection */
        return;
    }
    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW && !f; i++) {
        if (!w->follow[i].active) {
            f = &w->follow[i];
        }
    }
    if (!f) {
        chatbot_ws_send_error(w, CHAT_ERR_BUSY, "too many answers followed at once",
                              ci.id, w->cm.id, -1);
        return;
    }
    memset(f, 0, sizeof(*f));
    apr_cpystrn(f->conv, ci.id, sizeof(f->conv));
    if (found && mi.role == CHAT_ROLE_ASSISTANT && !(mi.flags & CHAT_MSG_ERROR)) {
        /* the answer being written, or the last one */
        f->index = mi.index;
        f->ts = mi.ts_ms;
        f->offset = offset > mi.len ? mi.len : offset;
    }
    else if (ci.state != CHAT_CONV_IDLE) {
        /* queued, or no token yet: the answer will be the next message */
        f->wait_new = 1;
    }
    else {
        chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND, "there is no answer to resume",
                              ci.id, w->cm.id, -1);
        return;
    }
    f->seq = 0; /* read at once */
    f->active = 1;
    /* its changes are heard here (redis: its shard's channel) */
    chat_store_watch(st, NULL, f->conv, 1);
    f->watched = 1;
}

/* Sends what is new in the followed answers; a finished one ends with a
 * response (or an error when the turn produced nothing). */
void chatbot_ws_follow_run(chatbot_wsc_t *w)
{
    chat_store_t *st = chatbot_store();
    int i;

    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW; i++) {
        chatbot_follow_t *f = &w->follow[i];
        chat_msg_info_t mi;
        chat_conv_info_t ci;
        chat_status_t rc;
        apr_uint64_t seq;
        const char *end_code = NULL, *end_msg = NULL;
        char code[48], emsg[600];
        size_t n;

        if (!f->active) {
            continue;
        }
        seq = chat_store_conv_seq(st, f->conv);
        if (seq == f->seq && f->seq) {
            continue;
        }
        f->seq = seq;
        rc = chat_store_conv_get(st, &w->id.owner, f->conv, &ci);
        if (rc == CHAT_OK && f->wait_new) {
            rc = CHAT_ENOTFOUND;
            if (ci.nmsgs > 0) {
                rc = chat_store_msg_get(st, &w->id.owner, f->conv, ci.nmsgs - 1, 0,
                                        &w->scratch, &mi);
            }
            if (rc == CHAT_OK && mi.role == CHAT_ROLE_ASSISTANT) {
                f->wait_new = 0;
                f->index = mi.index;
                f->ts = mi.ts_ms;
                if (mi.flags & CHAT_MSG_ERROR) {
                    /* the turn failed: its stored "<code>: <message>" */
                    apr_size_t k =
                        chatbot_error_code_len(w->scratch.data, w->scratch.len);
                    apr_size_t off = k ? k + 2 : 0;
                    if (k && k < sizeof(code)) {
                        memcpy(code, w->scratch.data, k);
                        code[k] = '\0';
                        end_code = code;
                    }
                    else {
                        end_code = CHAT_ERR_BACKEND_ERROR;
                    }
                    apr_cpystrn(emsg, w->scratch.data + off,
                                w->scratch.len - off < sizeof(emsg)
                                    ? w->scratch.len - off + 1
                                    : sizeof(emsg));
                    end_msg = emsg;
                }
            }
            else if (ci.state == CHAT_CONV_IDLE) {
                end_code = CHAT_ERR_INTERRUPTED;
                end_msg = "the answer ended without content";
            }
            else {
                chat_buf_reset(&w->scratch, 64 * 1024);
                continue; /* still waiting for the first token */
            }
        }
        else if (rc == CHAT_OK) {
            rc = follow_read(w, f, &ci, &mi);
            if (rc != CHAT_OK) {
                end_code = CHAT_ERR_NOT_FOUND;
                end_msg = "the answer is no longer in history";
            }
        }
        else {
            end_code = CHAT_ERR_NOT_FOUND;
            end_msg = "the conversation was deleted";
        }
        if (end_code) {
            chatbot_ws_follow_end(f);
            chatbot_ws_send_error(w, end_code, end_msg, f->conv, NULL, -1);
            chat_buf_reset(&w->scratch, 64 * 1024);
            continue;
        }
        n = chat_utf8_complete_prefix((const uint8_t *)w->scratch.data, w->scratch.len);
        if (n) {
            if (chat_frame_delta(&w->frame, 0, f->conv, NULL, w->scratch.data, n) ==
                CHAT_OK) {
                chatbot_ws_send_json(w);
            }
            f->offset += n;
        }
        if (!(mi.flags & CHAT_MSG_STREAMING) && (mi.flags & CHAT_MSG_INTERRUPTED) &&
            ci.state != CHAT_CONV_IDLE && ci.gen_token) {
            /* cut off: its failure's reason (if any) is stored next, before
             * the generation ends: wait for that */
            chat_buf_reset(&w->scratch, 64 * 1024);
            continue;
        }
        if (!(mi.flags & CHAT_MSG_STREAMING)) {
            chat_jw_t jw;
            chat_msg_info_t ri;
            chatbot_ws_follow_end(f);
            if ((mi.flags & CHAT_MSG_INTERRUPTED) && f->index + 1 < ci.nmsgs &&
                chat_store_msg_get(st, &w->id.owner, f->conv, f->index + 1, 0,
                                   &w->scratch, &ri) == CHAT_OK &&
                ri.role == CHAT_ROLE_ASSISTANT && (ri.flags & CHAT_MSG_ERROR) &&
                !(ri.flags & CHAT_MSG_COMMAND)) {
                /* it failed: the error frame the generating tab got */
                apr_size_t k = chatbot_error_code_len(w->scratch.data, w->scratch.len);
                chatbot_ws_frame_begin(w, &jw, "error");
                chat_jw_kstrn(&jw, "code", k ? w->scratch.data : CHAT_ERR_BACKEND_ERROR,
                              k ? k : strlen(CHAT_ERR_BACKEND_ERROR));
                chat_jw_kstrn(&jw, "message", w->scratch.data + (k ? k + 2 : 0),
                              w->scratch.len - (k ? k + 2 : 0));
                chat_jw_kstr(&jw, "conversation_id", f->conv);
                chat_jw_kbool(&jw, "partial", 1);
                chat_jw_kint(&jw, "index", f->index);
                chat_jw_kbool(&jw, "resumed", 1);
                chatbot_ws_frame_end(w, &jw);
                chat_buf_reset(&w->scratch, 64 * 1024);
                continue;
            }
            rc = chat_store_msg_get(st, &w->id.owner, f->conv, f->index, 0, &w->scratch,
                                    &mi);
            if (rc == CHAT_OK) {
                chatbot_ws_frame_begin(w, &jw, "response");
                chat_jw_kstrn(&jw, "content", w->scratch.data, w->scratch.len);
                chat_jw_kstr(&jw, "conversation_id", f->conv);
                chat_jw_kint(&jw, "index", mi.index);
                chat_jw_kbool(&jw, "interrupted", (mi.flags & CHAT_MSG_COMPLETE) == 0);
                chat_jw_kbool(&jw, "resumed", 1);
                chatbot_ws_frame_end(w, &jw);
            }
            else {
                chatbot_ws_send_error(w, CHAT_ERR_NOT_FOUND,
                                      "the answer is no longer in history", f->conv, NULL,
                                      -1);
            }
        }
        chat_buf_reset(&w->scratch, 64 * 1024);
    }
}

int chatbot_ws_following(chatbot_wsc_t *w)
{
    int i;

    for (i = 0; i < CHATBOT_WS_MAX_FOLLOW; i++) {
        if (w->follow[i].active) {
            return 1;
        }
    }
    return 0;
}
