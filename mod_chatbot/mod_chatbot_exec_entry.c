/* mod_chatbot_exec_entry.c - the two ways in to a command and their
 * replies: a `run` or "!" WebSocket message (a command_result or error
 * frame) and POST /api/execute (body checks, JSON reply and status).
 */
#include <string.h>
#include <json-c/json.h>

#include "httpd.h"
#include "apr_strings.h"

#include "mod_chatbot_exec.h"

/* Writes the command_result members into an open object. */
static void write_result(chat_jw_t *jw, const chatbot_exec_t *x)
{
    size_t i;

    chat_jw_kstr(jw, "command", x->name);
    chat_jw_key(jw, "args");
    chat_jw_arr_begin(jw);
    for (i = 0; i < x->nargs; i++) {
        chat_jw_str(jw, x->args[i]);
    }
    chat_jw_arr_end(jw);
    chat_jw_key(jw, "exit_code");
    if (x->res.reaped && !x->res.signal) {
        chat_jw_int(jw, x->res.exit_code);
    }
    else {
        chat_jw_null(jw);
    }
    chat_jw_key(jw, "signal");
    if (x->res.signal) {
        chat_jw_int(jw, x->res.signal);
    }
    else {
        chat_jw_null(jw);
    }
    chat_jw_kstrn(jw, "output", x->out.buf.data ? x->out.buf.data : "", x->out.buf.len);
    chat_jw_kbool(jw, "truncated", x->res.truncated);
    chat_jw_kbool(jw, "timed_out", x->res.timed_out);
    if (x->res.stopped) {
        chat_jw_kbool(jw, "stopped", 1);
    }
    chat_jw_kint(jw, "duration_ms", x->res.duration_ms);
    chat_jw_kstr(jw, "conversation_id", x->conv);
    chat_jw_kstr(jw, "bot_id", x->bot->name);
    if (x->has_index) {
        chat_jw_kint(jw, "index", x->result_index);
    }
}

int chatbot_exec_ws(request_rec *r, const chatbot_ident_t *id, chatbot_bot_t *bot,
                    const char *conv_id, const char *command, const char *const *args,
                    apr_size_t nargs, chat_buf_t *frame)
{
    chatbot_exec_t x;
    chat_jw_t jw;

    chatbot_exec_init(&x, r, id, bot, conv_id);
    if (!args) {
        if (chatbot_exec_split(&x, command ? command : "", command ? nargs : 0) == 0) {
            chatbot_exec_run(&x);
        }
    }
    else {
        x.name = command ? command : "";
        x.args = args;
        x.nargs = nargs;
        x.split = 1;
        chatbot_exec_run(&x);
    }
    if (x.code) {
        chatbot_exec_store_refusal(&x);
        chat_frame_error(frame, x.code, x.msg, conv_id, NULL, -1);
        /* an error frame like any other: counted by code (chatbot_errors_total,
         * ChatbotErrors[code]), so storage_full or internal alerts see it */
        chat_metrics_error(chatbot_store(), x.code);
        chatbot_exec_done(&x);
        return 0;
    }
    chat_buf_reset(frame, 64 * 1024);
    chat_jw_init(&jw, frame);
    chat_jw_obj_begin(&jw);
    chat_jw_kstr(&jw, "type", "command_result");
    write_result(&jw, &x);
    chat_jw_obj_end(&jw);
    chatbot_exec_done(&x);
    return chat_jw_status(&jw) == CHAT_OK ? 0 : -1;
}

/* An error reply, counted by code like every error the API returns
 * (chatbot_errors_total, ChatbotErrors[code]). x: the refusal stored in a
 * conversation, whose id and index are added (else NULL). */
static int api_error_x(chat_buf_t *out, int *status, const char *code, const char *msg,
                       const chatbot_exec_t *x)
{
    chat_jw_t jw;

    chat_buf_reset(out, 0);
    chat_jw_init(&jw, out);
    chat_jw_obj_begin(&jw);
    chat_jw_kstr(&jw, "error", code);
    chat_jw_kstr(&jw, "message", msg);
    chat_jw_kstr(&jw, "detail", msg);
    if (x && x->conv) {
        chat_jw_kstr(&jw, "conversation_id", x->conv);
        if (x->has_index) {
            chat_jw_kint(&jw, "index", x->result_index);
        }
    }
    chat_jw_obj_end(&jw);
    *status = chatbot_error_status(code);
    chat_metrics_error(chatbot_store(), code);
    return 0;
}

static int api_error(chat_buf_t *out, int *status, const char *code, const char *msg)
{
    return api_error_x(out, status, code, msg, NULL);
}

/* POST /api/execute {"command": name, "args": [strings], "bot_id"?,
 * "conversation_id"?}. For old clients, {"command": "ls -l"} without
 * "args" is split like a chat line (still no shell). */
int chatbot_exec_api(request_rec *r, const chatbot_ident_t *id, void *body,
                     const chatbot_limits_t *lim, chat_buf_t *out, int *status)
{
    json_object *b = body, *v, *jargs = NULL;
    const char *command, *bot_id = NULL, *conv = NULL, *err;
    chatbot_bot_t *bot;
    chat_conv_info_t ci;
    const char **args = NULL;
    size_t nargs = 0, i, clen;
    chatbot_exec_t x;
    chat_jw_t jw;
    int line;

    if (!b || !json_object_is_type(b, json_type_object)) {
        return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                         "a JSON object body is required");
    }
    if (!json_object_object_get_ex(b, "command", &v) ||
        !json_object_is_type(v, json_type_string)) {
        return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                         "\"command\" (a string: the name of a declared command) is "
                         "required");
    }
    command = json_object_get_string(v);
    clen = (size_t)json_object_get_string_len(v);
    if (json_object_object_get_ex(b, "bot_id", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                             "bot_id must be a string");
        }
        bot_id = json_object_get_string(v);
    }
    if (json_object_object_get_ex(b, "conversation_id", &v) &&
        !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                             "conversation_id must be a string");
        }
        conv = json_object_get_string(v);
    }
    if (json_object_object_get_ex(b, "args", &jargs) &&
        !json_object_is_type(jargs, json_type_null)) {
        if (!json_object_is_type(jargs, json_type_array)) {
            return api_error(out, status, CHAT_ERR_BAD_REQUEST,
                             "args must be an array of strings");
        }
        nargs = json_object_array_length(jargs);
    }
    else {
        jargs = NULL;
    }

    bot = chatbot_bot_get(r->server, bot_id);
    if (!bot) {
        return api_error(out, status, CHAT_ERR_NOT_FOUND, "unknown bot");
    }
    if ((err = chatbot_conv_resolve(r, id, bot, conv, 1, &ci))) {
        return api_error(out, status, err, "no such conversation");
    }
    if (conv && !(bot = chatbot_bot_get(r->server, ci.bot))) {
        return api_error(out, status, CHAT_ERR_NOT_FOUND,
                         "the conversation's bot no "
                         "longer exists");
    }

    chatbot_exec_init(&x, r, id, bot, apr_pstrdup(r->pool, ci.id));
    line = !jargs && (command[0] == '!' || strpbrk(command, " \t"));
    if (line) {
        const char *l =
            command[0] == '!' ? command : apr_pstrcat(x.p, "!", command, NULL);
        if (chatbot_exec_split(&x, l, clen + (command[0] == '!' ? 0 : 1)) == 0) {
            chatbot_exec_run(&x);
        }
    }
    else {
        x.name = command;
        x.split = 1;
        if (strlen(command) != clen) {
            chatbot_exec_refuse(&x, CHAT_ERR_COMMAND_DENIED,
                                "the command name contains a NUL character");
        }
        else if (nargs > CHAT_CMD_MAX_USER_ARGS) {
            /* refused before the arguments are looked at; stored as the
             * name alone */
            chatbot_exec_refuse(&x, CHAT_ERR_COMMAND_DENIED, "too many arguments");
            nargs = 0;
        }
        if (nargs) {
            args = apr_pcalloc(x.p, sizeof(*args) * nargs);
        }
        for (i = 0; i < nargs && !x.code; i++) {
            json_object *a = json_object_array_get_idx(jargs, i);
            if (!json_object_is_type(a, json_type_string)) {
                chatbot_exec_refuse(&x, CHAT_ERR_BAD_REQUEST,
                                    "args must be an array of strings");
                break;
            }
            args[i] = json_object_get_string(a);
            if (strlen(args[i]) != (size_t)json_object_get_string_len(a)) {
                x.args = args;
                x.nargs = i;
                chatbot_exec_refuse(&x, CHAT_ERR_COMMAND_DENIED,
                                    "argument %" APR_SIZE_T_FMT
                                    " refused: an argument contains a "
                                    "control character (newline, NUL, escape...)",
                                    (apr_size_t)(i + 1));
            }
        }
        x.args = args;
        x.nargs = x.code ? i : nargs; /* a refusal is stored with the arguments read */
        if (!x.code) {
            chatbot_exec_run(&x);
        }
    }
    if (x.code) {
        chatbot_exec_store_refusal(&x);
        api_error_x(out, status, x.code, x.msg, &x);
        chatbot_exec_done(&x);
        return 0;
    }
    chat_buf_reset(out, 0);
    chat_jw_init(&jw, out);
    chat_jw_obj_begin(&jw);
    chat_jw_kstr(&jw, "type", "command_result");
    write_result(&jw, &x);
    chat_jw_obj_end(&jw);
    chatbot_exec_done(&x);
    *status = 200;
    return 0;
}
