/* mod_chatbot_exec.h - commands a bot may run: the record ChatbotCommand
 * declares (mod_chatbot_config_cmd.c) and the run shared by the WebSocket
 * and REST entry points (mod_chatbot_exec.c, mod_chatbot_exec_entry.c). */
#ifndef MOD_CHATBOT_EXEC_H
#define MOD_CHATBOT_EXEC_H

#include "mod_chatbot.h"
#include "mod_chatbot_spawn.h"
#include "chat/cmd.h"

/* A declared command. */
/* A declared command. */
struct chatbot_command {
    chat_cmd_spec_t spec; /* spec.cwd is the realpath of cwd= */
    const char *cwd_real; /* the child's working directory ("/" if none) */
    const char *defined_at;
    int user_checked; /* runtime-user warnings given */
};

/* One run of a command, from the request to the result. */
typedef struct {
    request_rec *r;
    apr_pool_t *p; /* per run, destroyed at the end */
    const chatbot_ident_t *id;
    chatbot_bot_t *bot;
    const char *conv;
    const char *name;
    const char *const *args;
    size_t nargs;
    const char *line; /* the chat line "!name args" as sent, if any */
    size_t line_len;
    int split; /* name/args come from the request (not refused
                * while splitting the line) */
    chatbot_command_t *cmd;
    /* out */
    const char *code; /* CHAT_ERR_* or NULL */
    char msg[512];
    chat_cmd_output_t out;
    chatbot_run_result_t res;
    uint32_t result_index;
    int has_index;
    apr_uint64_t token;
} chatbot_exec_t;

/* Starts x for a request of r by id to bot in conversation conv (x->p is a
 * pool of its own); chatbot_exec_done frees it. */
void chatbot_exec_init(chatbot_exec_t *x, request_rec *r, const chatbot_ident_t *id,
                       chatbot_bot_t *bot, const char *conv);
void chatbot_exec_done(chatbot_exec_t *x);

/* Splits a "!name args" line into x->name / x->args. Returns 0 or refuses. */
int chatbot_exec_split(chatbot_exec_t *x, const char *line, size_t len);

/* Checks, claims the conversation, stores the request, runs, stores the
 * result, logs. On return either x->code is set (refused / failed) or the
 * command ran (x->res, x->out). */
void chatbot_exec_run(chatbot_exec_t *x);

/* Refuses the run: x->code and x->msg set, logged at notice level. */
void chatbot_exec_refuse(chatbot_exec_t *x, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Keeps a command_denied refusal in the conversation (request and reason). */
void chatbot_exec_store_refusal(chatbot_exec_t *x);

#endif
