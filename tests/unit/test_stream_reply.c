/* Unit tests: chat/stream.h - whole (non-streamed) replies of both wire
 * formats, the backend's error text taken from an error body (JSON, SSE
 * events, plain text, HTML; capped on a code point boundary) and model
 * lists. VECTORS names the vectors dir (default tests/vectors). */
#include "test_stream_util.h"

#define LIT(s) (s), strlen(s)

/* ---- whole replies ------------------------------------------------------------- */

static void test_parse_whole(void **state)
{
    chat_buf_t c, t;
    chat_stats_t st;
    size_t n;
    char *body;
    const char *oa =
        "{\"id\":\"x\",\"object\":\"chat.completion\",\"model\":\"m1\",\"choices\":[{"
        "\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"Hi "
        "\\u00e9\",\"reasoning_content\":"
        "\"hmm\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,"
        "\"completion_tokens\":2,\"total_tokens\":6}}\n";
    (void)state;

    chat_buf_init(&c);
    chat_buf_init(&t);
    body = load_vector("chat_nostream.json", &n);
    chat_stats_init(&st);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OLLAMA, body, n, &c, &t, &st),
                     CHAT_OK);
    assert_string_equal(c.data, "The sky is blue because of Rayleigh scattering.");
    assert_int_equal(t.len, 0);
    assert_string_equal(st.model, "llama3.2");
    assert_string_equal(st.done_reason, "stop");
    assert_int_equal(st.prompt_tokens, 26);
    assert_int_equal(st.completion_tokens, 11);
    MS_EQ(st.eval_ms, 4535.599);
    MS_EQ(st.tokens_per_sec, 11 / 4.535599);
    free(body);

    chat_buf_reset(&c, 0);
    chat_stats_init(&st);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), &c, &t, &st), CHAT_OK);
    assert_string_equal(c.data, "Hi \xC3\xA9");
    assert_string_equal(t.data, "hmm");
    assert_string_equal(st.model, "m1");
    assert_string_equal(st.done_reason, "stop");
    assert_int_equal(st.prompt_tokens, 4);
    assert_int_equal(st.completion_tokens, 2);
    /* thinking may be NULL; stats too */
    chat_buf_reset(&c, 0);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), &c, NULL, NULL),
        CHAT_OK);
    assert_string_equal(c.data, "Hi \xC3\xA9");

    /* error bodies: EPROTO, message in content */
    body = load_vector("error_model_not_found.json", &n);
    chat_buf_reset(&c, 0);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OLLAMA, body, n, &c, NULL, NULL),
                     CHAT_EPROTO);
    assert_string_equal(c.data, "model 'nosuchmodel' not found");
    free(body);
    chat_buf_reset(&c, 0);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI,
                                             LIT("{\"error\":{\"message\":\"nope\"}}"),
                                             &c, NULL, NULL),
                     CHAT_EPROTO);
    assert_string_equal(c.data, "nope");

    /* garbage and wrong shapes */
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("nope"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("{\"a\":"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(
        chat_stream_parse_whole(CHAT_WIRE_OLLAMA, LIT("{\"message\":1}"), &c, NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI,
                                             LIT("{\"choices\":[{\"message\":[]}]}"), &c,
                                             NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_stream_parse_whole(CHAT_WIRE_OPENAI, NULL, 0, &c, NULL, NULL),
                     CHAT_EPARSE);
    chat_buf_free(&c);
    chat_buf_free(&t);
}

static void check_error_text(const char *body, size_t n, size_t cap, const char *want)
{
    char out[1024];
    size_t len;

    memset(out, 'Z', sizeof(out));
    len = chat_backend_error_text(body, n, out, cap);
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
}

static void test_error_text(void **state)
{
    char *body, big[1000];
    char out[400];
    size_t n, len;
    (void)state;

    body = load_vector("error_model_not_found.json", &n);
    check_error_text(body, n, 400, "model 'nosuchmodel' not found");
    free(body);
    body = load_vector("error_busy.json", &n);
    check_error_text(body, n, 400,
                     "server busy, please try again.  maximum pending requests exceeded");
    free(body);
    check_error_text(
        LIT("{\"error\":{\"message\":\"Incorrect API key\",\"type\":\"invalid\"}}"), 400,
        "Incorrect API key");
    check_error_text(LIT("{\"object\":\"error\",\"message\":\"vllm says no\"}"), 400,
                     "vllm says no");
    check_error_text(LIT("{\"detail\":\"Not Found\"}"), 400, "Not Found");
    check_error_text(LIT("{\"message\":\"bare\"}"), 400, "bare");
    /* JSON without a message: its first line as text */
    check_error_text(LIT("{\"foo\":1}"), 400, "{\"foo\":1}");
    /* plain text: first line, trimmed */
    check_error_text(LIT("  Bad Gateway  \r\nmore"), 400, "Bad Gateway");
    check_error_text(LIT("\n\n upstream timed out\n"), 400, "upstream timed out");
    check_error_text(LIT("tab\there\x01"), 400, "tab here");
    check_error_text(LIT("bad \xFF byte"), 400, "bad \xEF\xBF\xBD byte");
    check_error_text(
        LIT("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>"), 400,
        "502 Bad Gateway");
    check_error_text(LIT(""), 400, "");
    check_error_text(NULL, 5, 400, "");
    check_error_text(LIT("   \n"), 400, "");
    /* at most 300 bytes, cut on a code point boundary */
    memset(big, 'x', sizeof(big));
    len = chat_backend_error_text(big, sizeof(big), out, sizeof(out));
    assert_int_equal(len, 300);
    assert_int_equal(strlen(out), 300);
    /* "a" then e-acute (2 bytes) pairs: byte 300 would split a sequence */
    big[0] = 'a';
    for (n = 1; n + 1 < sizeof(big); n += 2) {
        memcpy(big + n, "\xC3\xA9", 2);
    }
    len = chat_backend_error_text(big, sizeof(big) - 1, out, sizeof(out));
    assert_int_equal(len, 299);
    assert_true(strict_utf8((const unsigned char *)out, len));
    /* outcap is respected */
    len = chat_backend_error_text("abcdefghij", 10, out, 5);
    assert_int_equal(len, 4);
    assert_string_equal(out, "abcd");
    assert_int_equal(chat_backend_error_text("abc", 3, out, 0), 0);
    check_error_text(LIT("{\"error\":\"abcdefghij\"}"), 6, "abcde");
}

static void name_cb(void *baton, const char *name)
{
    chat_buf_t *b = baton;
    chat_buf_puts(b, name);
    chat_buf_puts(b, ";");
}

static void test_models_parse(void **state)
{
    chat_buf_t b;
    char *body;
    size_t n;
    const char *oa =
        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-x\",\"object\":\"model\"},"
        "{\"id\":5},{\"id\":\"\"},7,{\"id\":\"m2\"}]}";
    (void)state;

    chat_buf_init(&b);
    body = load_vector("tags.json", &n);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OLLAMA, body, n, name_cb, &b), 2);
    assert_string_equal(b.data, "qwen2.5-coder:7b;llama3.2:latest;");
    free(body);
    chat_buf_reset(&b, 0);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, oa, strlen(oa), name_cb, &b), 2);
    assert_string_equal(b.data, "gpt-x;m2;");
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, oa, strlen(oa), NULL, NULL), 2);
    /* llama.cpp's /models has both lists; "model" when "name" is missing */
    chat_buf_reset(&b, 0);
    assert_int_equal(
        chat_models_parse(
            CHAT_WIRE_OLLAMA,
            LIT("{\"data\":[{\"id\":\"a\"}],\"models\":[{\"model\":\"b\"}]}"), name_cb,
            &b),
        1);
    assert_string_equal(b.data, "b;");
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OLLAMA, LIT("{\"models\":[]}"), NULL, NULL), 0);
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OLLAMA, LIT("{\"models\":5}"), NULL, NULL),
        CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("{}"), NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("[]"), NULL, NULL),
                     CHAT_EPARSE);
    assert_int_equal(chat_models_parse(CHAT_WIRE_OPENAI, LIT("{\"data\":["), NULL, NULL),
                     CHAT_EPARSE);
    /* names that are not clean UTF-8 are skipped */
    assert_int_equal(
        chat_models_parse(CHAT_WIRE_OPENAI,
                          LIT("{\"data\":[{\"id\":\"a\\u0000b\"},{\"id\":\"\xFF\"}]}"),
                          NULL, NULL),
        0);
    chat_buf_free(&b);
}

static void test_error_text_sse_body(void **state)
{
    (void)state;
    /* some servers answer a 4xx/5xx with their error as an SSE event */
    check_error_text(LIT("data: {\"error\":{\"message\":\"Invalid API key\"}}\n\n"), 400,
                     "Invalid API key");
    check_error_text(LIT("event: error\ndata: {\"error\":\"model not loaded\"}\n\n"), 400,
                     "model not loaded");
    check_error_text(LIT("error: {\"code\":503,\"message\":\"Loading model\",\"type\":"
                         "\"unavailable_error\"}\n\n"),
                     400, "Loading model");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_whole),
        cmocka_unit_test(test_error_text),
        cmocka_unit_test(test_models_parse),
        cmocka_unit_test(test_error_text_sse_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
