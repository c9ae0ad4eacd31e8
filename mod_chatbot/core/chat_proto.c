/* chat_proto.c - client message parsing (chat_cmsg_*) and the hot-path
 * server frames (chat_frame_delta, chat_frame_error).
 *
 * Client frames are parsed with json-c; the parsed object and the tokener
 * are kept in the message's private storage and reused, so the strings the
 * caller gets point into it without copies. The exact rules (which fields
 * each type takes, their types and limits) are in docs/protocol.md.
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/jsoncheck.h"
#include "chat/proto.h"
#include "chat/utf8.h"

#define MAX_NESTING 16  /* nested arrays/objects accepted in a client frame */
#define MAX_ID_BYTES 64 /* bot_id, conversation_id, command */
#define MAX_MSGID_BYTES 128
#define MAX_TITLE_BYTES 128

/* Parser storage behind chat_cmsg_t.priv_. */
typedef struct {
    struct json_tokener *tok;
    json_object *root;
    char idbuf[24]; /* an integer "id" as decimal text */
} cmsg_priv_t;

/* ---- message types and their fields ----------------------------------------- */

enum {
    F_CONTENT = 1u << 0,
    F_BOT_ID = 1u << 1,
    F_CONV_ID = 1u << 2,
    F_ID = 1u << 3,
    F_TITLE = 1u << 4,
    F_FORMAT = 1u << 5,
    F_COMMAND = 1u << 6,
    F_ARGS = 1u << 7,
    F_INDEX = 1u << 8,
    F_LIMIT = 1u << 9,
    F_OFFSET = 1u << 10,
    F_ARCHIVED = 1u << 11,
    F_LINE = 1u << 12, /* "command" as a chat line, read into content */
    F_QUERY = 1u << 13,
    F_ATTACH = 1u << 14,
    F_SETTINGS = 1u << 15 /* model, system, temperature, reset */
};

typedef struct {
    const char *name;
    unsigned allowed; /* fields this type reads ("id" is read for every type) */
    unsigned required;
} ctype_def_t;

/* Indexed by chat_ctype_t. */
static const ctype_def_t ctypes[] = {
    {"unknown", 0, 0},
    {"message", F_CONTENT | F_BOT_ID | F_CONV_ID | F_ATTACH, F_CONTENT},
    {"stop", F_CONV_ID, 0},
    {"regenerate", F_CONV_ID, 0},
    {"edit", F_CONV_ID | F_INDEX | F_CONTENT | F_ATTACH, F_CONV_ID | F_INDEX | F_CONTENT},
    {"history", F_CONV_ID | F_BOT_ID | F_LIMIT | F_OFFSET, 0},
    {"resume", F_CONV_ID | F_OFFSET, F_CONV_ID},
    {"launch", F_BOT_ID | F_TITLE, F_BOT_ID},
    {"select", F_CONV_ID, F_CONV_ID},
    {"stop_session", F_CONV_ID, F_CONV_ID},
    {"sessions", F_BOT_ID | F_ARCHIVED, 0},
    {"bots", 0, 0},
    {"rename", F_CONV_ID | F_TITLE, F_CONV_ID | F_TITLE},
    {"archive", F_CONV_ID | F_ARCHIVED, F_CONV_ID},
    {"delete", F_CONV_ID, F_CONV_ID},
    {"export", F_CONV_ID | F_FORMAT, F_CONV_ID},
    {"run", F_COMMAND | F_ARGS | F_CONV_ID, F_COMMAND},
    {"ping", 0, 0},
    {"status", 0, 0},
    {"command", F_LINE | F_BOT_ID | F_CONV_ID, F_LINE},
    {"search", F_QUERY | F_BOT_ID | F_LIMIT, F_QUERY},
    {"settings", F_CONV_ID | F_SETTINGS, F_CONV_ID},
    {"select_version", F_CONV_ID | F_INDEX | F_LIMIT, F_CONV_ID | F_INDEX},
};

#define NCTYPES (sizeof(ctypes) / sizeof(ctypes[0]))

/* compile-time check: one entry per chat_ctype_t, in order */
typedef char ctypes_table_matches_enum[NCTYPES == CHAT_C_SELECT_VERSION + 1 ? 1 : -1];

const char *chat_ctype_name(chat_ctype_t t)
{
    if ((unsigned)t >= NCTYPES) {
        return "unknown";
    }
    return ctypes[t].name;
}

/* ---- helpers ----------------------------------------------------------------- */

static void seterr(char *err, size_t errcap, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void seterr(char *err, size_t errcap, const char *fmt, ...)
{
    va_list ap;

    if (!err || errcap == 0) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
}

/* The length of the longest prefix of s[0..n) of at most max bytes that
 * does not end inside a UTF-8 sequence (for quoting names in errors). */
static int clip_utf8(const char *s, size_t n, size_t max)
{
    if (n <= max) {
        return (int)n;
    }
    n = max;
    while (n > 0 && ((uint8_t)s[n] & 0xC0) == 0x80) {
        n--;
    }
    return (int)n;
}

/* Validates a string field: NUL-free, UTF-8, within [minlen, maxlen]
 * (maxlen 0 = no limit). Returns CHAT_OK or CHAT_EINVAL with err set. */
static chat_status_t check_str(json_object *v, const char *field, size_t minlen,
                               size_t maxlen, const char **out, size_t *outlen, char *err,
                               size_t errcap)
{
    const char *s;
    size_t n;

    if (!json_object_is_type(v, json_type_string)) {
        seterr(err, errcap, "field '%s' must be a string", field);
        return CHAT_EINVAL;
    }
    s = json_object_get_string(v);
    n = (size_t)json_object_get_string_len(v);
    if (memchr(s, '\0', n)) {
        seterr(err, errcap, "field '%s' contains a NUL character", field);
        return CHAT_EINVAL;
    }
    /* json-c's own check lets encoded surrogates (ED A0 80) through, so
     * strings are checked again */
    if (!chat_utf8_valid((const uint8_t *)s, n)) {
        seterr(err, errcap, "field '%s' is not valid UTF-8", field);
        return CHAT_EINVAL;
    }
    if (n < minlen) {
        seterr(err, errcap, "field '%s' must not be empty", field);
        return CHAT_EINVAL;
    }
    if (maxlen && n > maxlen) {
        seterr(err, errcap, "field '%s' is too long (at most %zu bytes)", field, maxlen);
        return CHAT_EINVAL;
    }
    *out = s;
    if (outlen) {
        *outlen = n;
    }
    return CHAT_OK;
}

/* A JSON integer within int64. json-c saturates out-of-range integers at
 * INT64_MIN/INT64_MAX, so those two values are checked against uint64. */
static int json_int64(json_object *v, int64_t *out)
{
    int64_t x;

    if (!json_object_is_type(v, json_type_int)) {
        return 0;
    }
    x = json_object_get_int64(v);
    if (x == INT64_MAX && json_object_get_uint64(v) != (uint64_t)INT64_MAX) {
        return 0;
    }
    if (x == INT64_MIN) {
        return 0; /* may be a saturated -9223372036854775809 */
    }
    *out = x;
    return 1;
}

static chat_status_t check_count(json_object *v, const char *field, int64_t *out,
                                 char *err, size_t errcap)
{
    int64_t x;

    if (!json_int64(v, &x) || x < 0) {
        seterr(err, errcap, "field '%s' must be a non-negative integer", field);
        return CHAT_EINVAL;
    }
    *out = x;
    return CHAT_OK;
}

int chat_title_is_blank(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c > 0x20 && c != 0x7f) {
            if (c == 0xc2 && (unsigned char)s[1] >= 0x80 && (unsigned char)s[1] <= 0xa0) {
                s++; /* C1 controls and NO-BREAK SPACE: blank too */
                continue;
            }
            return 0;
        }
    }
    return 1;
}

/* Looks up a field; JSON null counts as absent. */
static json_object *field(json_object *root, const char *name)
{
    json_object *v = NULL;

    if (!json_object_object_get_ex(root, name, &v) ||
        json_object_is_type(v, json_type_null)) {
        return NULL;
    }
    return v;
}

static void cmsg_clear(chat_cmsg_t *m)
{
    void *priv = m->priv_;

    memset(m, 0, sizeof(*m));
    m->type = CHAT_C_UNKNOWN;
    m->index = -1;
    m->limit = -1;
    m->offset = -1;
    m->archived = -1;
    m->priv_ = priv;
}

void chat_cmsg_init(chat_cmsg_t *m)
{
    m->priv_ = NULL;
    cmsg_clear(m);
}

void chat_cmsg_free(chat_cmsg_t *m)
{
    cmsg_priv_t *pv = m->priv_;

    if (pv) {
        if (pv->root) {
            json_object_put(pv->root);
        }
        if (pv->tok) {
            json_tokener_free(pv->tok);
        }
        free(pv);
    }
    chat_cmsg_init(m);
}

/* Reads the "id" field: a string or an integer (kept as decimal text). */
static chat_status_t parse_msgid(chat_cmsg_t *m, cmsg_priv_t *pv, json_object *root,
                                 char *err, size_t errcap)
{
    json_object *v = field(root, "id");
    int64_t x;

    if (!v) {
        return CHAT_OK;
    }
    if (json_object_is_type(v, json_type_string)) {
        return check_str(v, "id", 1, MAX_MSGID_BYTES, &m->id, NULL, err, errcap);
    }
    if (!json_int64(v, &x)) {
        seterr(err, errcap, "field 'id' must be a string or an integer");
        return CHAT_EINVAL;
    }
    snprintf(pv->idbuf, sizeof(pv->idbuf), "%lld", (long long)x);
    m->id = pv->idbuf;
    return CHAT_OK;
}

static chat_status_t parse_args(chat_cmsg_t *m, json_object *v, char *err, size_t errcap)
{
    size_t i, n;

    if (!json_object_is_type(v, json_type_array)) {
        seterr(err, errcap, "field 'args' must be an array of strings");
        return CHAT_EINVAL;
    }
    n = json_object_array_length(v);
    if (n > CHAT_MAX_ARGS) {
        seterr(err, errcap, "field 'args' has too many elements (at most %d)",
               CHAT_MAX_ARGS);
        return CHAT_EINVAL;
    }
    for (i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(v, i);
        if (!a || !json_object_is_type(a, json_type_string)) {
            seterr(err, errcap, "field 'args' must be an array of strings");
            return CHAT_EINVAL;
        }
        if (check_str(a, "args", 0, 0, &m->args[i], NULL, err, errcap) != CHAT_OK) {
            return CHAT_EINVAL;
        }
    }
    m->nargs = n;
    return CHAT_OK;
}

/* "attachments": [{"name": string, "content": string}, ...]: text files of
 * a message (chat/attach.h). */
static chat_status_t parse_attach(chat_cmsg_t *m, json_object *v, char *err,
                                  size_t errcap)
{
    size_t i, n;

    if (!json_object_is_type(v, json_type_array)) {
        seterr(err, errcap, "field 'attachments' must be an array of objects");
        return CHAT_EINVAL;
    }
    n = json_object_array_length(v);
    if (n > CHAT_ATTACH_MAX) {
        seterr(err, errcap, "field 'attachments' has too many elements (at most %d)",
               CHAT_ATTACH_MAX);
        return CHAT_EINVAL;
    }
    for (i = 0; i < n; i++) {
        json_object *a = json_object_array_get_idx(v, i), *nv, *cv;
        chat_attach_t *at = &m->attach[i];
        const char *why;
        if (!a || !json_object_is_type(a, json_type_object) ||
            !json_object_object_get_ex(a, "name", &nv) ||
            !json_object_is_type(nv, json_type_string) ||
            !json_object_object_get_ex(a, "content", &cv) ||
            !json_object_is_type(cv, json_type_string)) {
            seterr(err, errcap,
                   "each attachment must be an object with a string 'name' "
                   "and a string 'content'");
            return CHAT_EINVAL;
        }
        at->name = json_object_get_string(nv);
        at->name_len = (size_t)json_object_get_string_len(nv);
        at->content = json_object_get_string(cv);
        at->len = (size_t)json_object_get_string_len(cv);
        if ((why = chat_attach_name_error(at->name, at->name_len)) != NULL) {
            seterr(err, errcap, "%s", why);
            return CHAT_EINVAL;
        }
        if (!chat_attach_is_text(at->content, at->len)) {
            seterr(err, errcap,
                   "attachment '%.*s' is not text (a NUL byte or invalid "
                   "UTF-8): binary files cannot be attached",
                   (int)at->name_len, at->name);
            return CHAT_EINVAL;
        }
    }
    m->nattach = n;
    return CHAT_OK;
}

/* settings: "model" (string, "" = the bot's), "system" (string, "" = the
 * bot's), "temperature" (a finite number), "reset" (boolean). The bounds
 * the administrator sets are checked by the module, not here. */
static chat_status_t parse_settings(chat_cmsg_t *m, json_object *root, char *err,
                                    size_t errcap)
{
    json_object *v;

    if ((v = field(root, "model")) != NULL &&
        check_str(v, "model", 0, CHAT_MODEL_NAME_MAX, &m->model, NULL, err, errcap) !=
            CHAT_OK) {
        return CHAT_EINVAL;
    }
    if ((v = field(root, "system")) != NULL &&
        check_str(v, "system", 0, 0, &m->system, &m->system_len, err, errcap) !=
            CHAT_OK) {
        return CHAT_EINVAL;
    }
    if ((v = field(root, "temperature")) != NULL) {
        double t;
        if (!json_object_is_type(v, json_type_double) &&
            !json_object_is_type(v, json_type_int)) {
            seterr(err, errcap, "field 'temperature' must be a number");
            return CHAT_EINVAL;
        }
        t = json_object_get_double(v);
        if (!isfinite(t)) {
            seterr(err, errcap, "field 'temperature' must be a finite number");
            return CHAT_EINVAL;
        }
        m->temperature = t;
        m->has_temperature = 1;
    }
    if ((v = field(root, "reset")) != NULL) {
        if (!json_object_is_type(v, json_type_boolean)) {
            seterr(err, errcap, "field 'reset' must be a boolean");
            return CHAT_EINVAL;
        }
        m->reset = json_object_get_boolean(v) ? 1 : 0;
    }
    return CHAT_OK;
}

/* Reads the fields the type takes, in a fixed order. */
static chat_status_t parse_fields(chat_cmsg_t *m, json_object *root, unsigned allowed,
                                  char *err, size_t errcap)
{
    json_object *v;

#define STRFIELD(flag, name, minlen, maxlen, dst, dstlen)                                \
    if ((allowed & (flag)) && (v = field(root, name)) != NULL &&                         \
        check_str(v, name, minlen, maxlen, &(dst), dstlen, err, errcap) != CHAT_OK) {    \
        return CHAT_EINVAL;                                                              \
    }
#define CNTFIELD(flag, name, dst)                                                        \
    if ((allowed & (flag)) && (v = field(root, name)) != NULL &&                         \
        check_count(v, name, &(dst), err, errcap) != CHAT_OK) {                          \
        return CHAT_EINVAL;                                                              \
    }

    /* identifiers first, so an error about a later field can still echo them */
    STRFIELD(F_CONV_ID, "conversation_id", 1, MAX_ID_BYTES, m->conversation_id, NULL)
    STRFIELD(F_BOT_ID, "bot_id", 1, MAX_ID_BYTES, m->bot_id, NULL)
    STRFIELD(F_CONTENT, "content", 1, 0, m->content, &m->content_len)
    STRFIELD(F_TITLE, "title", 1, MAX_TITLE_BYTES, m->title, NULL)
    STRFIELD(F_COMMAND, "command", 1, MAX_ID_BYTES, m->command, NULL)
    STRFIELD(F_LINE, "command", 1, 0, m->content, &m->content_len)
    STRFIELD(F_FORMAT, "format", 1, 0, m->format, NULL)
    STRFIELD(F_QUERY, "query", 1, 0, m->query, NULL)
    if (m->format && strcmp(m->format, "markdown") != 0 &&
        strcmp(m->format, "json") != 0) {
        m->format = NULL;
        seterr(err, errcap, "field 'format' must be \"markdown\" or \"json\"");
        return CHAT_EINVAL;
    }
    if (m->title && chat_title_is_blank(m->title)) {
        m->title = NULL;
        seterr(err, errcap, "field 'title' must not be blank");
        return CHAT_EINVAL;
    }
    CNTFIELD(F_INDEX, "index", m->index)
    CNTFIELD(F_LIMIT, "limit", m->limit)
    if (m->limit > CHAT_HISTORY_LIMIT_MAX) {
        m->limit = -1;
        seterr(err, errcap, "field 'limit' must be at most %d", CHAT_HISTORY_LIMIT_MAX);
        return CHAT_EINVAL;
    }
    CNTFIELD(F_OFFSET, "offset", m->offset)
    if ((allowed & F_ARCHIVED) && (v = field(root, "archived")) != NULL) {
        if (!json_object_is_type(v, json_type_boolean)) {
            seterr(err, errcap, "field 'archived' must be a boolean");
            return CHAT_EINVAL;
        }
        m->archived = json_object_get_boolean(v) ? 1 : 0;
    }
    if ((allowed & F_ARGS) && (v = field(root, "args")) != NULL &&
        parse_args(m, v, err, errcap) != CHAT_OK) {
        return CHAT_EINVAL;
    }
    if ((allowed & F_ATTACH) && (v = field(root, "attachments")) != NULL &&
        parse_attach(m, v, err, errcap) != CHAT_OK) {
        return CHAT_EINVAL;
    }
    if ((allowed & F_SETTINGS) && parse_settings(m, root, err, errcap) != CHAT_OK) {
        return CHAT_EINVAL;
    }
#undef STRFIELD
#undef CNTFIELD
    return CHAT_OK;
}

static chat_status_t check_required(const chat_cmsg_t *m, unsigned required, char *err,
                                    size_t errcap)
{
    const char *missing = NULL;

    if ((required & F_CONV_ID) && !m->conversation_id) {
        missing = "conversation_id";
    }
    else if ((required & F_BOT_ID) && !m->bot_id) {
        missing = "bot_id";
    }
    else if ((required & F_CONTENT) && !m->content && !m->nattach) {
        missing = "content";
    }
    else if ((required & F_INDEX) && m->index < 0) {
        missing = "index";
    }
    else if ((required & F_TITLE) && !m->title) {
        missing = "title";
    }
    else if ((required & F_COMMAND) && !m->command) {
        missing = "command";
    }
    else if ((required & F_LINE) && !m->content) {
        missing = "command";
    }
    else if ((required & F_QUERY) && !m->query) {
        missing = "query";
    }
    if (missing) {
        seterr(err, errcap, "missing field '%s'", missing);
        return CHAT_EINVAL;
    }
    return CHAT_OK;
}

chat_status_t chat_cmsg_parse(chat_cmsg_t *m, const char *json, size_t len, char *err,
                              size_t errcap)
{
    cmsg_priv_t *pv = m->priv_;
    enum json_tokener_error jerr;
    json_object *root, *tv;
    const char *tname;
    size_t tlen, i;
    chat_status_t st;

    seterr(err, errcap, "%s", "");
    if (pv && pv->root) {
        json_object_put(pv->root);
        pv->root = NULL;
    }
    cmsg_clear(m);
    if (!json && len) {
        seterr(err, errcap, "no message");
        return CHAT_EPARSE;
    }
    if (len > INT_MAX) {
        seterr(err, errcap, "the message is too large");
        return CHAT_EPARSE;
    }
    /* Anything but an object is refused before json-c sees it: a bare
     * number at the end of input would otherwise read as incomplete. */
    for (i = 0; i < len &&
                (json[i] == ' ' || json[i] == '\t' || json[i] == '\n' || json[i] == '\r');
         i++) {
    }
    if (i == len || json[i] != '{') {
        seterr(err, errcap, "the message must be a JSON object");
        return CHAT_EPARSE;
    }
    /* RFC 8259 exactly (json-c lets raw control characters in strings,
     * single quotes, NaN and bad UTF-8 through) */
    if (chat_json_check(json, len, MAX_NESTING, err, errcap) != CHAT_OK) {
        return CHAT_EPARSE;
    }
    if (!pv) {
        pv = calloc(1, sizeof(*pv));
        if (!pv) {
            seterr(err, errcap, "out of memory");
            return CHAT_ENOMEM;
        }
        m->priv_ = pv;
    }
    if (!pv->tok) {
        pv->tok = json_tokener_new_ex(MAX_NESTING + 1); /* + the innermost scalar */
        if (!pv->tok) {
            seterr(err, errcap, "out of memory");
            return CHAT_ENOMEM;
        }
        json_tokener_set_flags(pv->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    }
    json_tokener_reset(pv->tok);
    root = json_tokener_parse_ex(pv->tok, json, (int)len);
    jerr = json_tokener_get_error(pv->tok);
    if (!root) {
        if (jerr == json_tokener_continue) {
            seterr(err, errcap, "invalid JSON: the text ends before the object does");
        }
        else {
            seterr(err, errcap, "invalid JSON: %s at byte %zu",
                   json_tokener_error_desc(jerr), json_tokener_get_parse_end(pv->tok));
        }
        /* json-c 0.16's json_tokener_reset() keeps a pending high surrogate
         * ("\ud83d" at the cut), which would turn the next message's first
         * \u escape into U+FFFD: start the next parse with a new tokener. */
        json_tokener_free(pv->tok);
        pv->tok = NULL;
        return CHAT_EPARSE;
    }
    pv->root = root;
    if (json_tokener_get_parse_end(pv->tok) != len) {
        /* strict mode stops at a NUL byte and reports success */
        seterr(err, errcap, "invalid JSON: unexpected data after the object at byte %zu",
               json_tokener_get_parse_end(pv->tok));
        return CHAT_EPARSE;
    }
    if (!json_object_is_type(root, json_type_object)) {
        seterr(err, errcap, "the message must be a JSON object");
        return CHAT_EPARSE;
    }
    if (!json_object_object_get_ex(root, "type", &tv) ||
        !json_object_is_type(tv, json_type_string)) {
        seterr(err, errcap, "the message has no string field 'type'");
        return CHAT_EPARSE;
    }
    tname = json_object_get_string(tv);
    tlen = (size_t)json_object_get_string_len(tv);
    m->type_name = tname;
    for (i = 1; i < NCTYPES; i++) {
        if (strlen(ctypes[i].name) == tlen && memcmp(ctypes[i].name, tname, tlen) == 0) {
            m->type = (chat_ctype_t)i;
            break;
        }
    }
    /* the id is read first (for every type) so that errors can echo it */
    st = parse_msgid(m, pv, root, err, errcap);
    if (st != CHAT_OK) {
        return st;
    }
    if (m->type == CHAT_C_UNKNOWN) {
        seterr(err, errcap, "unknown message type '%.*s'", clip_utf8(tname, tlen, 40),
               tname);
        return CHAT_ENOTFOUND;
    }
    st = parse_fields(m, root, ctypes[m->type].allowed, err, errcap);
    if (st == CHAT_OK) {
        st = check_required(m, ctypes[m->type].required, err, errcap);
    }
    return st;
}

/* ---- hot-path frames --------------------------------------------------------- */

static chat_status_t put(chat_buf_t *b, const char *s, size_t n)
{
    return chat_buf_append(b, s, n);
}

#define PUTLIT(b, lit) put((b), (lit), sizeof(lit) - 1)

/* ,"<key>":"<escaped v>" */
static chat_status_t put_kstr(chat_buf_t *b, const char *kq, size_t kqlen, const char *v)
{
    if (put(b, kq, kqlen) != CHAT_OK || chat_json_escape(b, v, strlen(v)) != CHAT_OK ||
        PUTLIT(b, "\"") != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return CHAT_OK;
}

#define PUTKSTR(b, lit, v) put_kstr((b), (lit), sizeof(lit) - 1, (v))

chat_status_t chat_frame_delta(chat_buf_t *buf, int thinking, const char *conv_id,
                               const char *msg_id, const char *delta, size_t len)
{
    /* reset without releasing: this runs once per token */
    chat_buf_reset(buf, SIZE_MAX);
    if (chat_buf_reserve(buf, len + 64) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if ((thinking ? PUTLIT(buf, "{\"type\":\"thinking\",\"content\":\"")
                  : PUTLIT(buf, "{\"type\":\"stream\",\"content\":\"")) != CHAT_OK ||
        chat_json_escape(buf, delta, delta ? len : 0) != CHAT_OK ||
        PUTLIT(buf, "\"") != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (conv_id && PUTKSTR(buf, ",\"conversation_id\":\"", conv_id) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (msg_id && PUTKSTR(buf, ",\"id\":\"", msg_id) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return PUTLIT(buf, "}");
}

chat_status_t chat_frame_error(chat_buf_t *buf, const char *code, const char *message,
                               const char *conv_id, const char *msg_id,
                               int64_t retry_after_ms)
{
    chat_buf_reset(buf, SIZE_MAX);
    if (PUTKSTR(buf, "{\"type\":\"error\",\"code\":\"",
                code ? code : CHAT_ERR_INTERNAL) != CHAT_OK ||
        PUTKSTR(buf, ",\"message\":\"", message ? message : "") != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (conv_id && PUTKSTR(buf, ",\"conversation_id\":\"", conv_id) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (msg_id && PUTKSTR(buf, ",\"id\":\"", msg_id) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    if (retry_after_ms >= 0 && chat_buf_printf(buf, ",\"retry_after_ms\":%lld",
                                               (long long)retry_after_ms) != CHAT_OK) {
        return CHAT_ENOMEM;
    }
    return PUTLIT(buf, "}");
}

const char *chat_error_public_text(const char *code)
{
    static const struct {
        const char *code;
        const char *text;
    } texts[] = {
        {CHAT_ERR_BACKEND_UNREACHABLE, "The language model server cannot be reached "
                                       "right now. Please try again later."},
        {CHAT_ERR_BACKEND_TIMEOUT,
         "The language model server took too long to answer. Please try again."},
        {CHAT_ERR_MODEL_NOT_FOUND,
         "The model of this bot is not available on its server. Please tell the "
         "administrator."},
        {CHAT_ERR_BACKEND_BUSY,
         "The language model server is busy. Please retry in a moment."},
        {CHAT_ERR_BACKEND_ERROR, "The language model server reported an error."},
        {CHAT_ERR_BACKEND_PROTOCOL,
         "The language model server sent a reply that could not be read."},
        {CHAT_ERR_BACKEND_BAD_REQUEST,
         "The language model server could not process this request."},
        {CHAT_ERR_INTERRUPTED, "The answer ended before it was complete."},
        {CHAT_ERR_INTERNAL, "The server hit an internal error."},
    };
    size_t i;

    for (i = 0; code && i < sizeof(texts) / sizeof(texts[0]); i++) {
        if (!strcmp(texts[i].code, code)) {
            return texts[i].text;
        }
    }
    return NULL;
}
