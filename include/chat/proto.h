/* chat/proto.h - the chat protocol spoken with browsers over WebSocket (and
 * reused by the REST API): parsing client messages, writing server frames.
 *
 * Client -> server: one JSON object per text frame, {"type": ..., ...}.
 * Server -> client: frames are written with the small streaming JSON writer
 * below into a reused buffer: no allocation per token once warmed up.
 * See docs/protocol.md for every message type.
 */
#ifndef CHAT_PROTO_H
#define CHAT_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include "chat/common.h"
#include "chat/attach.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- client messages ------------------------------------------------- */

typedef enum {
    CHAT_C_UNKNOWN = 0,
    CHAT_C_MESSAGE,    /* content, [bot_id], [conversation_id], [id], [attachments] */
    CHAT_C_STOP,       /* [conversation_id]: stop the answer being generated */
    CHAT_C_REGENERATE, /* [conversation_id]: replace the last answer */
    CHAT_C_EDIT,       /* conversation_id, index, content: edit message and resend */
    CHAT_C_HISTORY,    /* [conversation_id], [bot_id], [limit], [offset] */
    CHAT_C_RESUME, /* conversation_id, [offset]: replay the answer from offset, then live
                    */
    CHAT_C_LAUNCH, /* bot_id, [title]: new bot session (conversation) */
    CHAT_C_SELECT, /* conversation_id: make it current for this connection */
    CHAT_C_STOP_SESSION,  /* conversation_id: cancel and mark the bot session stopped */
    CHAT_C_SESSIONS,      /* [bot_id], [archived]: list the user's bot sessions */
    CHAT_C_BOTS,          /* list declared bots */
    CHAT_C_RENAME,        /* conversation_id, title */
    CHAT_C_ARCHIVE,       /* conversation_id, [archived=true] */
    CHAT_C_DELETE,        /* conversation_id */
    CHAT_C_EXPORT,        /* conversation_id, [format=markdown|json] */
    CHAT_C_RUN,           /* command, [args]: run a declared command */
    CHAT_C_PING,          /* application level ping -> {"type":"pong"} */
    CHAT_C_STATUS,        /* status board snapshot */
    CHAT_C_COMMAND,       /* command, [bot_id], [conversation_id]: the port-8000
                           * client's chat line (its text is in content) */
    CHAT_C_SEARCH,        /* query, [bot_id], [limit]: search one's own conversations */
    CHAT_C_SETTINGS,      /* conversation_id, [model], [system], [temperature], [reset]:
                           * read or change a conversation's settings */
    CHAT_C_SELECT_VERSION /* conversation_id, index: make that message the
                           * chosen version (chat/versions.h) */
} chat_ctype_t;

/* Longest model name a client may send (settings). */
#define CHAT_MODEL_NAME_MAX 200

#define CHAT_MAX_ARGS 32
/* Most messages one history request (WebSocket or REST) may ask for. */
#define CHAT_HISTORY_LIMIT_MAX 1000

/* A parsed client message. Strings point into the parser's storage and are
 * valid until the next chat_cmsg_parse() / chat_cmsg_free() on the same
 * object. Absent strings are NULL; absent numbers are -1. */
typedef struct {
    chat_ctype_t type;
    const char *type_name; /* as sent (for error messages) */
    const char *content;
    size_t content_len;
    const char *bot_id;
    const char *conversation_id;
    const char *id; /* client's message id (string or number, echoed) */
    const char *title;
    const char *format;
    const char *command;
    const char *args[CHAT_MAX_ARGS];
    size_t nargs;
    const char *query;                     /* search: the words looked for */
    chat_attach_t attach[CHAT_ATTACH_MAX]; /* message, edit: text attachments */
    size_t nattach;
    int64_t index, limit, offset;
    int archived; /* -1 absent, 0/1 */
    /* settings: "model" and "system" may be "" (back to the bot's own) */
    const char *model;
    const char *system;
    size_t system_len;
    double temperature; /* valid if has_temperature */
    int has_temperature;
    int reset;   /* "reset": true: every setting back to the bot's */
    void *priv_; /* parser storage (json-c object) */
} chat_cmsg_t;

void chat_cmsg_init(chat_cmsg_t *m);
void chat_cmsg_free(chat_cmsg_t *m);

/* Parses one client frame. On failure returns CHAT_EPARSE (not JSON / not
 * an object / no string "type"), CHAT_EINVAL (a known field has the wrong
 * type or a required field is missing), or CHAT_ENOTFOUND (unknown type;
 * m->type_name is set), or CHAT_ENOMEM. err (may be NULL) receives a short
 * English reason. On CHAT_EINVAL / CHAT_ENOTFOUND the fields read before
 * the bad one stay set (id and conversation_id first), so the error frame
 * can echo them. Field rules (types, limits, null = absent): docs/protocol.md. */
chat_status_t chat_cmsg_parse(chat_cmsg_t *m, const char *json, size_t len, char *err,
                              size_t errcap);

const char *chat_ctype_name(chat_ctype_t t);

/* 1 if a title has no visible character: only white space, control
 * characters (a title stores them as spaces) and no-break spaces. Such a
 * title is refused like an empty one. */
int chat_title_is_blank(const char *title);

/* ---- JSON writer ------------------------------------------------------ */

/* Appends JSON to a chat_buf_t. Strings are escaped for safe embedding:
 * control characters, '"', '\\', '<', '>', '&', U+2028, U+2029 become
 * escapes; invalid UTF-8 becomes U+FFFD. Commas are inserted automatically.
 * Errors (ENOMEM; EINVAL for misuse: a value without a key in an object, a
 * key outside one, a mismatched end, more than CHAT_JW_DEPTH-1 levels, a
 * second top-level value) are sticky: check chat_jw_status() at the end;
 * it also returns CHAT_EINVAL while the document is unfinished. */
#define CHAT_JW_DEPTH 16
typedef struct {
    chat_buf_t *buf;
    int depth;
    uint8_t first[CHAT_JW_DEPTH]; /* bit 0: no element yet at this level;
                                     bit 1: the level is an object */
    uint8_t after_key;
    chat_status_t status;
} chat_jw_t;

void chat_jw_init(chat_jw_t *w, chat_buf_t *buf);
void chat_jw_obj_begin(chat_jw_t *w);
void chat_jw_obj_end(chat_jw_t *w);
void chat_jw_arr_begin(chat_jw_t *w);
void chat_jw_arr_end(chat_jw_t *w);
void chat_jw_key(chat_jw_t *w, const char *key);
void chat_jw_str(chat_jw_t *w, const char *s); /* NULL -> null */
void chat_jw_strn(chat_jw_t *w, const char *s, size_t n);
void chat_jw_int(chat_jw_t *w, int64_t v);
/* Doubles get 6 significant digits, more to keep every integer digit
 * (41.2, 89.6861, 1764134400000); below 1e-4 or from 1e17 with an exponent
 * (1e-05); non-finite -> null. */
void chat_jw_double(chat_jw_t *w, double v);
void chat_jw_bool(chat_jw_t *w, int v);
void chat_jw_null(chat_jw_t *w);
/* Appends already-serialised JSON as a value (trusted input). */
void chat_jw_raw(chat_jw_t *w, const char *json, size_t n);
/* key + value shorthands */
void chat_jw_kstr(chat_jw_t *w, const char *key, const char *s);
void chat_jw_kstrn(chat_jw_t *w, const char *key, const char *s, size_t n);
void chat_jw_kint(chat_jw_t *w, const char *key, int64_t v);
void chat_jw_kdouble(chat_jw_t *w, const char *key, double v);
void chat_jw_kbool(chat_jw_t *w, const char *key, int v);
chat_status_t chat_jw_status(const chat_jw_t *w);

/* Appends s escaped as the inside of a JSON string (no quotes). CHAT_OK,
 * CHAT_ENOMEM, or CHAT_EINVAL if s is NULL and n > 0. */
chat_status_t chat_json_escape(chat_buf_t *out, const char *s, size_t n);

/* Length of the longest prefix of s[0..n) that a JSON string holds byte
 * for byte: printable ASCII other than '"' and '\\'. Scans 8 bytes at a
 * time (the hot paths: request bodies, backend lines). */
size_t chat_json_plain(const char *s, size_t n);

/* ---- hot-path frames ---------------------------------------------------- */

/* {"type":"stream"|"thinking","content":<delta>,"conversation_id":..,"id":..}
 * conv_id / msg_id may be NULL (then omitted); delta is escaped like any
 * writer string. Resets buf first (keeping its memory). CHAT_OK or
 * CHAT_ENOMEM. */
chat_status_t chat_frame_delta(chat_buf_t *buf, int thinking, const char *conv_id,
                               const char *msg_id, const char *delta, size_t len);

/* {"type":"error","code":<code>,"message":<message>[,"conversation_id"]
 *  [,"id"][,"retry_after_ms"]} - retry_after_ms < 0 omits it; a NULL code
 * is "internal", a NULL message "". Resets buf. CHAT_OK or CHAT_ENOMEM. */
chat_status_t chat_frame_error(chat_buf_t *buf, const char *code, const char *message,
                               const char *conv_id, const char *msg_id,
                               int64_t retry_after_ms);

/* Stable error codes used in error frames and REST error bodies. */
#define CHAT_ERR_BAD_JSON "bad_json"
#define CHAT_ERR_BAD_REQUEST "bad_request"
#define CHAT_ERR_UNKNOWN_TYPE "unknown_type"
#define CHAT_ERR_TOO_LARGE "too_large"
#define CHAT_ERR_RATE_LIMITED "rate_limited"
#define CHAT_ERR_NOT_FOUND "not_found"
#define CHAT_ERR_BUSY "busy"
#define CHAT_ERR_BACKEND_UNREACHABLE "backend_unreachable"
#define CHAT_ERR_BACKEND_TIMEOUT "backend_timeout"
#define CHAT_ERR_MODEL_NOT_FOUND "model_not_found"
#define CHAT_ERR_BACKEND_BUSY "backend_busy"
#define CHAT_ERR_BACKEND_ERROR "backend_error"
#define CHAT_ERR_BACKEND_PROTOCOL "backend_protocol"
#define CHAT_ERR_BACKEND_BAD_REQUEST "backend_bad_request"
#define CHAT_ERR_INTERRUPTED "interrupted"
#define CHAT_ERR_QUEUE_FULL "queue_full"
#define CHAT_ERR_SERVER_BUSY "server_busy" /* REST: no worker for a turn now */
#define CHAT_ERR_COMMAND_DENIED "command_denied"
#define CHAT_ERR_COMMAND_FAILED "command_failed"
#define CHAT_ERR_STORAGE_FULL "storage_full"
#define CHAT_ERR_QUOTA_EXCEEDED "quota_exceeded" /* an identity's share of the store */
#define CHAT_ERR_FORBIDDEN "forbidden"           /* REST: a cross-origin POST */
#define CHAT_ERR_INTERNAL "internal"
#define CHAT_ERR_STORE_UNAVAILABLE "store_unavailable" /* ChatbotStore unreachable */
#define CHAT_ERR_SETTING_REFUSED                                                         \
    "setting_refused" /* a conversation setting the                                      \
                       administrator does not allow */

/* The sentence users are shown for a failure whose details are for the
 * operator only (backend failures, internal errors): it names no URL,
 * path, host or backend reply. NULL for codes whose own message is
 * already written for users (rate_limited, not_found, too_large...). The
 * details go to the error log, /metrics and the status pages instead. */
const char *chat_error_public_text(const char *code);

#ifdef __cplusplus
}
#endif
#endif /* CHAT_PROTO_H */
