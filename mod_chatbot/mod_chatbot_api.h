/* mod_chatbot_api.h - what the REST API files (mod_chatbot_api*.c) share:
 * the request being answered, the plumbing that answers it, and the routes.
 *
 *   mod_chatbot_api.c           the route table and its dispatch (404, 405
 *                               with Allow, the Origin check, the identity);
 *                               for now also the health and model routes
 *   mod_chatbot_api_io.c        reading a request (JSON body, query string)
 *                               and writing its JSON answer or error
 *   mod_chatbot_api_sessions.c  conversations: list, search, create, the
 *                               per-session operations, history, export
 *   mod_chatbot_api_bots.c      bots, the status board, commands, and the old
 *                               controller's bot routes
 *   mod_chatbot_api_turn.c      the blocking chat turn (/api/chat, the task
 *                               routes), watching the client meanwhile
 *
 * Every route is listed in docs/api.md.
 */
#ifndef MOD_CHATBOT_API_H
#define MOD_CHATBOT_API_H

#include <json-c/json.h>

#include "httpd.h"

#include "mod_chatbot.h"

/* One REST request. */
typedef struct {
    request_rec *r;
    chatbot_srv_conf *sc;
    chatbot_limits_t lim;
    chatbot_ident_t id;
    json_object *body; /* parsed request body (POST) */
    int query_bad;     /* a query parameter repeated or badly encoded */
    /* a route of the port-8000 controller (mod_chatbot_compat.c): its
     * replies and errors take the old shapes; legacy_id is the bot id the
     * route names (task: the answer's "bot_id") */
    int legacy;
    const char *legacy_id;
    chat_buf_t out;
    chat_jw_t jw;
    /* the store failed during the request (chatbot_store_failures moved):
     * whatever the route found, the answer is 503 store_unavailable */
    int store_watch;
    apr_uint32_t store_fail0;
} api_t;

/* ---- plumbing (mod_chatbot_api_io.c) ------------------------------------------- */

/* A request's state, freed with r->pool. */
api_t *chatbot_api_new(request_rec *r);

/* X-Content-Type-Options: nosniff, once. */
void chatbot_api_nosniff(request_rec *r);

/* Sends a->out as the JSON answer with this status (a 503 store_unavailable
 * instead if the store failed meanwhile, see api_t.store_watch). */
int chatbot_api_send_json(api_t *a, int status);

/* Sends an error {"error","message","detail"} (the old controller's shape
 * on its routes), its status from the code, and counts it. retry_ms > 0
 * adds retry_after_ms and Retry-After. */
int chatbot_api_error(api_t *a, const char *code, const char *msg, apr_int64_t retry_ms);

/* The same without counting: for a failed turn, which the engine counted. */
int chatbot_api_error_counted(api_t *a, const char *code, const char *msg,
                              apr_int64_t retry_ms);

/* Starts a JSON object answer in a->jw; chatbot_api_finish ends and sends it. */
void chatbot_api_begin(api_t *a);
int chatbot_api_finish(api_t *a, int status);

/* Reads and parses a JSON object body into a->body (an empty body is {}
 * unless required). Returns OK, or sends the error. */
int chatbot_api_read_body(api_t *a, int required);

/* An optional string field of the body; *bad set if present with another
 * type (or a U+0000 inside). */
const char *chatbot_api_jstr(api_t *a, const char *key, int *bad);

/* The value of query parameter name, NULL if absent; a repeated or badly
 * encoded one sets a->query_bad. */
const char *chatbot_api_query(api_t *a, const char *name);

/* An integer query parameter from 0 to max, dflt if absent or empty.
 * Returns 0 if it is not one (or a->query_bad). */
int chatbot_api_query_int(api_t *a, const char *name, apr_int64_t dflt, apr_int64_t max,
                          apr_int64_t *out);

/* The text of a rate_limited error (the WebSocket's wording). */
const char *chatbot_api_rate_msg(api_t *a, apr_int64_t retry_ms);
/* For a failure of a route that makes sessions: the wait (ms) before the
 * identity may make one again if code is rate_limited (ChatbotQuota
 * sessions=), else 0; it becomes retry_after_ms and Retry-After. */
apr_int64_t chatbot_api_create_retry(api_t *a, const char *code);

/* ---- routes ------------------------------------------------------------------------ */

/* The handlers of the route table (mod_chatbot_api.c says which method
 * and path each one answers). seg: the path's segments below .../api/, as
 * many as the route's pattern has. The request has passed the method and
 * Origin checks, its identity is known and a POST's body read. Each
 * returns OK once its answer (or error) is written. */

/* mod_chatbot_api_sessions.c */
int chatbot_api_sessions(api_t *a, const char *const *seg);
int chatbot_api_search(api_t *a, const char *const *seg);
int chatbot_api_session_create(api_t *a, const char *const *seg);
int chatbot_api_session_op(api_t *a, const char *const *seg);
int chatbot_api_session_version(api_t *a, const char *const *seg);
int chatbot_api_session_settings(api_t *a, const char *const *seg);
int chatbot_api_history(api_t *a, const char *const *seg);
int chatbot_api_message(api_t *a, const char *const *seg);
int chatbot_api_export(api_t *a, const char *const *seg);

/* The answer about one session: {"session", "conversation_id", ...}. */
int chatbot_api_session_reply(api_t *a, const chat_conv_info_t *ci, int status);

/* mod_chatbot_api_bots.c */
int chatbot_api_bots(api_t *a, const char *const *seg);
int chatbot_api_bots_status(api_t *a, const char *const *seg);
int chatbot_api_bots_declared(api_t *a, const char *const *seg);
int chatbot_api_status(api_t *a, const char *const *seg);
int chatbot_api_bot_launch(api_t *a, const char *const *seg);
int chatbot_api_bot_stop(api_t *a, const char *const *seg);
int chatbot_api_bot_status(api_t *a, const char *const *seg);
int chatbot_api_execute(api_t *a, const char *const *seg);

/* mod_chatbot_api_turn.c */
int chatbot_api_chat(api_t *a, const char *const *seg);
int chatbot_api_task(api_t *a, const char *const *seg);

/* mod_chatbot_api.c: probes the backends whose health is older than
 * ChatbotHealthInterval (for the bot lists). */
void chatbot_api_refresh_health(api_t *a);

#endif
