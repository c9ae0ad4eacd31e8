/* fuzz_proto - client frames through chat_cmsg_parse.
 *
 * Properties checked: no crash or leak on any input; an accepted message
 * has its required fields; its fields written back with the JSON writer
 * form strict JSON that json-c reads back byte-identically and that
 * chat_cmsg_parse accepts again with the same values; every error comes
 * with a reason, and the error frame built from it is valid JSON. The raw
 * input also goes through chat_json_escape and chat_frame_delta, whose
 * output must always be valid JSON.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat/proto.h"

#define CHECK(c)                                                                         \
    do {                                                                                 \
        if (!(c)) {                                                                      \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static json_object *parse_strict(const char *s, size_t n)
{
    struct json_tokener *tok = json_tokener_new_ex(64);
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, s, (int)n);
    if (o && json_tokener_get_parse_end(tok) != n) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static void same_str(json_object *o, const char *key, const char *want)
{
    json_object *v = NULL;

    if (!want) {
        CHECK(!json_object_object_get_ex(o, key, &v));
        return;
    }
    CHECK(json_object_object_get_ex(o, key, &v));
    CHECK(json_object_is_type(v, json_type_string));
    CHECK((size_t)json_object_get_string_len(v) == strlen(want));
    CHECK(memcmp(json_object_get_string(v), want, strlen(want)) == 0);
}

static void same_opt(const char *a, const char *b)
{
    CHECK((a == NULL) == (b == NULL));
    CHECK(!a || strcmp(a, b) == 0);
}

static void serialise(const chat_cmsg_t *m, chat_buf_t *b)
{
    chat_jw_t w;
    size_t i;

    chat_jw_init(&w, b);
    chat_jw_obj_begin(&w);
    chat_jw_kstr(&w, "type", m->type_name);
    if (m->content) {
        /* the port-8000 client's "command" frame carries its text there */
        chat_jw_kstrn(&w, m->type == CHAT_C_COMMAND ? "command" : "content", m->content,
                      m->content_len);
    }
#define OPT(k, v)                                                                        \
    if (v) {                                                                             \
        chat_jw_kstr(&w, k, v);                                                          \
    }
    OPT("bot_id", m->bot_id)
    OPT("conversation_id", m->conversation_id)
    OPT("id", m->id)
    OPT("title", m->title)
    OPT("format", m->format)
    OPT("command", m->command)
#undef OPT
    if (m->nargs) {
        chat_jw_key(&w, "args");
        chat_jw_arr_begin(&w);
        for (i = 0; i < m->nargs; i++) {
            chat_jw_str(&w, m->args[i]);
        }
        chat_jw_arr_end(&w);
    }
    if (m->index >= 0) {
        chat_jw_kint(&w, "index", m->index);
    }
    if (m->limit >= 0) {
        chat_jw_kint(&w, "limit", m->limit);
    }
    if (m->offset >= 0) {
        chat_jw_kint(&w, "offset", m->offset);
    }
    if (m->archived >= 0) {
        chat_jw_kbool(&w, "archived", m->archived);
    }
    chat_jw_obj_end(&w);
    CHECK(chat_jw_status(&w) == CHAT_OK);
}

static void check_accepted(const chat_cmsg_t *m)
{
    chat_buf_t b;
    json_object *o, *v;
    chat_cmsg_t again;
    char err[128];
    size_t i;

    CHECK(m->type != CHAT_C_UNKNOWN);
    CHECK(strcmp(m->type_name, chat_ctype_name(m->type)) == 0);
    CHECK(!m->content || (m->content_len == strlen(m->content) && m->content_len > 0));
    CHECK(m->nargs <= CHAT_MAX_ARGS);
    switch (m->type) {
    case CHAT_C_MESSAGE:
        CHECK(m->content);
        break;
    case CHAT_C_EDIT:
        CHECK(m->conversation_id && m->content && m->index >= 0);
        break;
    case CHAT_C_LAUNCH:
        CHECK(m->bot_id);
        break;
    case CHAT_C_RENAME:
        CHECK(m->conversation_id && m->title);
        break;
    case CHAT_C_RUN:
        CHECK(m->command);
        break;
    case CHAT_C_COMMAND:
        CHECK(m->content && !m->command);
        break;
    case CHAT_C_RESUME:
    case CHAT_C_SELECT:
    case CHAT_C_STOP_SESSION:
    case CHAT_C_ARCHIVE:
    case CHAT_C_DELETE:
    case CHAT_C_EXPORT:
        CHECK(m->conversation_id);
        break;
    default:
        break;
    }
    CHECK(!m->format || !strcmp(m->format, "json") || !strcmp(m->format, "markdown"));

    chat_buf_init(&b);
    serialise(m, &b);
    o = parse_strict(b.data, b.len);
    CHECK(o != NULL);
    same_str(o, "type", m->type_name);
    same_str(o, m->type == CHAT_C_COMMAND ? "command" : "content", m->content);
    same_str(o, "bot_id", m->bot_id);
    same_str(o, "conversation_id", m->conversation_id);
    same_str(o, "id", m->id);
    same_str(o, "title", m->title);
    if (m->type != CHAT_C_COMMAND) {
        same_str(o, "command", m->command);
    }
    if (m->nargs) {
        CHECK(json_object_object_get_ex(o, "args", &v));
        CHECK(json_object_array_length(v) == m->nargs);
        for (i = 0; i < m->nargs; i++) {
            json_object *a = json_object_array_get_idx(v, i);
            CHECK((size_t)json_object_get_string_len(a) == strlen(m->args[i]));
            CHECK(memcmp(json_object_get_string(a), m->args[i], strlen(m->args[i])) == 0);
        }
    }
    json_object_put(o);

    /* our own output is accepted again with the same values */
    chat_cmsg_init(&again);
    CHECK(chat_cmsg_parse(&again, b.data, b.len, err, sizeof(err)) == CHAT_OK);
    CHECK(again.type == m->type);
    same_opt(again.content, m->content);
    same_opt(again.bot_id, m->bot_id);
    same_opt(again.conversation_id, m->conversation_id);
    same_opt(again.id, m->id);
    same_opt(again.title, m->title);
    same_opt(again.format, m->format);
    same_opt(again.command, m->command);
    CHECK(again.nargs == m->nargs);
    for (i = 0; i < m->nargs; i++) {
        CHECK(strcmp(again.args[i], m->args[i]) == 0);
    }
    CHECK(again.index == m->index && again.limit == m->limit &&
          again.offset == m->offset);
    CHECK(again.archived == m->archived);
    chat_cmsg_free(&again);
    chat_buf_free(&b);
}

static void check_valid_json(const chat_buf_t *b)
{
    json_object *o = parse_strict(b->data, b->len);
    CHECK(o != NULL);
    json_object_put(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static chat_cmsg_t reused; /* zero-initialised = chat_cmsg_init state */
    chat_cmsg_t m;
    chat_buf_t b;
    char err[128];
    chat_status_t st, st2;

    chat_cmsg_init(&m);
    err[0] = 'x';
    st = chat_cmsg_parse(&m, (const char *)data, size, err, sizeof(err));
    CHECK(st == CHAT_OK || st == CHAT_EPARSE || st == CHAT_EINVAL ||
          st == CHAT_ENOTFOUND);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    CHECK((st == CHAT_OK) == (err[0] == '\0'));
    if (st == CHAT_OK) {
        check_accepted(&m);
    }
    if (st == CHAT_ENOTFOUND) {
        CHECK(m.type == CHAT_C_UNKNOWN && m.type_name != NULL);
    }

    /* an error frame from whatever the parser produced is valid JSON */
    chat_buf_init(&b);
    CHECK(chat_frame_error(&b, CHAT_ERR_BAD_REQUEST, err, m.conversation_id, m.id, 5) ==
          CHAT_OK);
    check_valid_json(&b);

    /* a reused object gives the same answer */
    st2 = chat_cmsg_parse(&reused, (const char *)data, size, NULL, 0);
    CHECK(st2 == st);
    CHECK(reused.type == m.type);
    same_opt(reused.id, m.id);
    same_opt(reused.content, m.content);
    chat_cmsg_free(&m);

    /* the raw bytes, escaped, are always a valid JSON string */
    chat_buf_reset(&b, 1 << 16);
    CHECK(chat_buf_append(&b, "\"", 1) == CHAT_OK);
    CHECK(chat_json_escape(&b, (const char *)data, size) == CHAT_OK);
    CHECK(chat_buf_append(&b, "\"", 1) == CHAT_OK);
    check_valid_json(&b);
    CHECK(chat_frame_delta(&b, (int)(size & 1), "c", "i", (const char *)data, size) ==
          CHAT_OK);
    check_valid_json(&b);
    chat_buf_free(&b);
    return 0;
}
