/* Unit tests: chat/stream.h - the OpenAI-compatible SSE stream parser:
 * every SSE vector fed whole, byte by byte, split at every offset and at
 * pairs of offsets, with LF, CRLF and CR line ends; SSE fields, the end of
 * the answer, error events, line caps, real-world OpenAI / vLLM /
 * llama.cpp shapes, one JSON reply where SSE was asked for, and 2xx bodies
 * that are not SSE. */
#include "test_stream_util.h"

/* ---- vectors ------------------------------------------------------------------ */

static void test_openai_stream(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("openai_stream.sse", CHAT_WIRE_OPENAI,
                                  "C:The|C: sky|C: is blue.|D:|=0:", &r),
                     CHAT_OK);
    /* usage came in a chunk after the finish chunk: merged by [DONE] */
    assert_string_equal(r.done_stats.model, "llama3.2");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 26);
    assert_int_equal(r.done_stats.completion_tokens, 3);
    MS_EQ(r.done_stats.total_ms, -1.0);
    MS_EQ(r.done_stats.tokens_per_sec, -1.0);
    chat_buf_free(&r.log);
}

static void test_openai_llamacpp(void **state)
{
    rec_t r;
    (void)state;
    /* null first content: no event; ": ping" ignored; reasoning_content */
    assert_int_equal(check_vector("openai_stream_llamacpp.sse", CHAT_WIRE_OPENAI,
                                  "T:Thinking...|C:Hello|C: world|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "gpt-3.5-turbo");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 5);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    MS_EQ(r.done_stats.prompt_ms, 12.5);
    MS_EQ(r.done_stats.eval_ms, 20.1);
    MS_EQ(r.done_stats.tokens_per_sec, 99.5);
    chat_buf_free(&r.log);
}

static void test_openai_error(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("openai_stream_error.sse", CHAT_WIRE_OPENAI,
                     "C:Part|E:the request exceeds the available context size|"
                     "=-23:backend error: the request exceeds the available context size",
                     &r),
        CHAT_EINCOMPLETE);
    chat_buf_free(&r.log);
}

/* ---- SSE details -------------------------------------------------------------- */

#define CHUNK(c) "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" c "\"}}]}"

static void test_sse_fields(void **state)
{
    (void)state;
    /* "data:" without a space; comments; event/id/retry and unknown fields */
    check_case(CHAT_WIRE_OPENAI,
               ": hello\n"
               "retry: 1000\nid: 7\nevent: message\nfoo: bar\nnocolon\n"
               "data:" CHUNK("a") "\n\n"
                                  "data:  " CHUNK("b") "\n\n"
                                                       ":\n\n\n"
                                                       "data: [DONE]\n\n",
               4096, "C:a|C:b|D:|=0:");
    /* one event spread over several data lines (joined with "\n") */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"delta\":\n"
               "data: {\"content\":\"multi\"}}]}\n"
               "\n"
               "data: [DONE]\n\n",
               4096, "C:multi|D:|=0:");
    /* the "\n" between data lines is real (json-c lets it into a string) */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"delta\":{\"content\":\"x\n"
               "data: y\"}}]}\n\n",
               4096, "C:x\ny|=-23:the stream ended before [DONE]");
    /* a byte order mark at the start is skipped; a lone EF is data */
    check_case(CHAT_WIRE_OPENAI,
               "\xEF\xBB\xBF"
               "data: [DONE]\n\n",
               4096, "D:|=0:");
    check_case(CHAT_WIRE_OPENAI,
               "\xEF\xBB"
               "data: [DONE]\n\n",
               4096, "=-20:the reply is not an SSE stream (no \"data:\" line)");
    /* empty events and data-less events dispatch nothing */
    check_case(CHAT_WIRE_OPENAI, "data:\n\ndata\n\nevent: x\n\ndata: [DONE]\n\n", 4096,
               "D:|=0:");
    /* reasoning (vLLM); reasoning_content wins when both are sent */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: {\"choices\":[{\"delta\":{\"reasoning\":\"r1\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"reasoning\":\"x\",\"reasoning_content\":"
        "\"r2\",\"content\":\"c\"}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"\",\"reasoning\":null}}]}\n\n"
        "data: [DONE]\n\n",
        4096, "T:r1|T:r2|C:c|D:|=0:");
    /* only choice index 0 is used */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"no\"}},"
               "{\"index\":0,\"delta\":{\"content\":\"yes\"}}]}\n\n"
               "data: [DONE]\n\n",
               4096, "C:yes|D:|=0:");
}

static void test_sse_end(void **state)
{
    (void)state;
    /* [DONE] without its blank line at EOF still ends the answer */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DONE]", 4096,
               "C:a|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DONE]\n", 4096,
               "C:a|D:|=0:");
    /* cut inside [DONE] or inside the JSON: incomplete */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\ndata: [DON", 4096,
               "C:a|=-23:the stream ended inside [DONE]");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":\"ab", 4096,
               "=-23:the stream ended inside SSE event 1 (truncated JSON object)");
    /* a finish_reason without [DONE]: complete; without either: incomplete */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: " CHUNK(
            "a") "\n\n"
                 "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n",
        4096, "C:a|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("a") "\n\n", 4096,
               "C:a|=-23:the stream ended before [DONE]");
    /* after [DONE] only whitespace */
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\n\r\n \n", 4096, "D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\ndata: [DONE]\n\n", 4096,
               "D:|=-61:data after the end of the answer");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE]\n\n: ping\n\n", 4096,
               "D:|=-61:data after the end of the answer");
}

static void test_sse_errors(void **state)
{
    (void)state;
    /* llama.cpp's "error:" field, followed by its [DONE] (ignored) */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: " CHUNK(
            "a") "\n\n"
                 "error: {\"code\":400,\"message\":\"the request exceeds the available "
                 "context size, try increasing "
                 "it\",\"type\":\"exceed_context_size_error\"}\n\n"
                 "data: [DONE]\n\n",
        4096,
        "C:a|E:the request exceeds the available context size, try increasing it|"
        "=-23:backend error: the request exceeds the available context size, try "
        "increasing it");
    /* "event: error" with a plain text or JSON payload */
    check_case(CHAT_WIRE_OPENAI, "event: error\ndata: upstream went away\n\n", 4096,
               "E:upstream went away|=-23:backend error: upstream went away");
    check_case(CHAT_WIRE_OPENAI,
               "event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n", 4096,
               "E:overloaded|=-23:backend error: overloaded");
    /* vLLM's ErrorResponse */
    check_case(
        CHAT_WIRE_OPENAI,
        "data: {\"object\":\"error\",\"message\":\"bad request\",\"code\":400}\n\n", 4096,
        "E:bad request|=-23:backend error: bad request");
    /* wrong shapes */
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":{}}\n\n", 4096,
               "=-20:SSE event 1: \"choices\" is not an array");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[5]}\n\n", 4096,
               "=-20:SSE event 1: an element of \"choices\" is not an object");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":\"x\"}]}\n\n", 4096,
               "=-20:SSE event 1: \"delta\" is not an object");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":1}}]}\n\n",
               4096, "=-20:SSE event 1: \"content\" is not a string");
    check_case(CHAT_WIRE_OPENAI, "data: hello\n\n", 4096,
               "=-20:SSE event 1: expected a JSON object, got text that is not JSON");
    check_case(CHAT_WIRE_OPENAI, "data: [DONE] x\n\n", 4096,
               "=-20:SSE event 1: expected a JSON object, got another JSON value");
}

static void test_sse_too_big(void **state)
{
    char big[300];
    (void)state;
    /* one data line of 52 bytes: max_line 52 passes, 51 fails */
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("0123") "\n\ndata: [DONE]\n\n", 52,
               "C:0123|D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: " CHUNK("0123") "\n\ndata: [DONE]\n\n", 51,
               "=-40:SSE event 1 is longer than 51 bytes");
    /* several lines add up (with their "\n") */
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":\ndata: []}\n\ndata: [DONE]\n\n", 15,
               "D:|=0:");
    check_case(CHAT_WIRE_OPENAI, "data: {\"choices\":\ndata: []}\n\ndata: [DONE]\n\n", 14,
               "=-40:SSE event 1 is longer than 14 bytes");
    /* a huge comment or unknown field line is capped too */
    memset(big, 'x', sizeof(big));
    memcpy(big, ": ", 2);
    big[sizeof(big) - 1] = '\0';
    check_case(CHAT_WIRE_OPENAI, big, 100, "=-40:an SSE line is longer than 132 bytes");
    big[0] = 'z';
    check_case(CHAT_WIRE_OPENAI, big, 100, "=-40:an SSE line is longer than 132 bytes");
}

/* ---- review of real-world shapes (OpenAI / vLLM / llama.cpp) ------------------- */

/* Every SSE vector also with "\r\n" and lone "\r" line ends. */
static void check_sse_all_eols(const char *data, size_t max_line, const char *want)
{
    size_t cn;
    char *v;
    int cr_only;

    check_splits(CHAT_WIRE_OPENAI, data, strlen(data), max_line, want);
    for (cr_only = 0; cr_only < 2; cr_only++) {
        v = to_crlf(data, strlen(data), &cn, cr_only);
        check_splits(CHAT_WIRE_OPENAI, v, cn, max_line, want);
        free(v);
    }
}

static void test_sse_openai_shapes(void **state)
{
    rec_t r;
    (void)state;
    /* OpenAI with stream_options.include_usage: a role-only first chunk with
     * "content":"" and refusal null, "usage":null on every chunk, a finish
     * chunk with an empty delta, then the usage chunk with "choices":[],
     * [DONE]; preceded by a BOM, "event:"/"id:"/"retry:" fields and
     * comments, with and without the space after the colon */
    const char *oa =
        "\xEF\xBB\xBF: OPENROUTER PROCESSING\n\n"
        "retry: 3000\n"
        "id: 1\n"
        "event: message\n"
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_1\",\"choices\":[{"
        "\"index\":0,"
        "\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},"
        "\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        "data:{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[{"
        "\"index\":0,\"delta\":{\"content\":\"Hel\"},\"finish_reason\":null}],"
        "\"usage\":null}\n\n"
        ":\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
        "null,\"reasoning_content\":null},\"finish_reason\":null}],\"usage\":null}\n\n"
        "id: 2\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
        "\"lo \\ud83d\\ude00\"},\"finish_reason\":null}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{},"
        "\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n"
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":"
        "\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
        "\"completion_tokens\":3,\"total_tokens\":12,\"completion_tokens_details\":"
        "{\"reasoning_tokens\":0}}}\n\n"
        "data: [DONE]\n\n";

    check_sse_all_eols(oa, 4096, "C:Hel|C:lo \xF0\x9F\x98\x80|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OPENAI, oa, strlen(oa), 4096, &r), CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_string_equal(r.done_stats.model, "gpt-4o-mini");
    assert_int_equal(r.done_stats.prompt_tokens, 9);
    assert_int_equal(r.done_stats.completion_tokens, 3);
    chat_buf_free(&r.log);

    /* every finish_reason is relayed as done_reason */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},"
               "\"finish_reason\":\"content_filter\"}]}\n\ndata: [DONE]\n\n",
               4096, "C:x|D:|=0:");
    /* a tool-call answer: no text, complete */
    check_case(CHAT_WIRE_OPENAI,
               "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
               "\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":"
               "\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]},"
               "\"finish_reason\":null}]}\n\n"
               "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
               "\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
               4096, "D:|=0:");
    /* an error object as a data event (OpenAI, LiteLLM) mid-stream */
    check_sse_all_eols(
        "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
        "data: {\"error\":{\"message\":\"Rate limit reached\",\"type\":"
        "\"requests\",\"param\":null,\"code\":\"rate_limit_exceeded\"}}\n\n",
        4096, "C:a|E:Rate limit reached|=-23:backend error: Rate limit reached");
}

static void test_sse_json_body(void **state)
{
    rec_t r;
    const char *whole =
        "{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion\",\"created\":1,"
        "\"model\":\"Qwen/Qwen2.5-7B-Instruct\",\"choices\":[{\"index\":0,\"message\":{"
        "\"role\":\"assistant\",\"reasoning_content\":\"think\",\"content\":\"Hi "
        "\\u00e9\",\"tool_calls\":[]},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
        "\"usage\":{\"prompt_tokens\":5,\"total_tokens\":7,\"completion_tokens\":2}}\n";
    (void)state;
    /* a server that ignored "stream":true answers one chat.completion
     * (pretty-printed by some proxies): the whole answer, complete */
    check_case(CHAT_WIRE_OPENAI, whole, 4096, "T:think|C:Hi \xC3\xA9|D:|=0:");
    check_case(CHAT_WIRE_OPENAI,
               "\r\n{\n  \"choices\": [\n    {\n      \"index\": 0,\n      \"message\": "
               "{\"role\": \"assistant\", \"content\": \"a\\nb\"},\n      "
               "\"finish_reason\": \"stop\"\n    }\n  ]\n}\n",
               4096, "C:a\nb|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OPENAI, whole, strlen(whole), 4096, &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_string_equal(r.done_stats.model, "Qwen/Qwen2.5-7B-Instruct");
    assert_int_equal(r.done_stats.prompt_tokens, 5);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    chat_buf_free(&r.log);
    /* an error object with a 2xx status: the backend's error, not a cut
     * answer (OpenAI, vLLM, llama.cpp shapes) */
    check_case(CHAT_WIRE_OPENAI,
               "{\"error\":{\"message\":\"This model's maximum context length is 8192 "
               "tokens\",\"type\":\"invalid_request_error\",\"param\":\"messages\","
               "\"code\":\"context_length_exceeded\"}}",
               4096,
               "E:This model's maximum context length is 8192 tokens|=-23:backend error: "
               "This model's maximum context length is 8192 tokens");
    check_case(
        CHAT_WIRE_OPENAI,
        "{\"object\":\"error\",\"message\":\"The model `x` does not exist.\","
        "\"type\":\"NotFoundError\",\"param\":null,\"code\":404}",
        4096,
        "E:The model `x` does not exist.|=-23:backend error: The model `x` does not "
        "exist.");
    /* cut inside the object: interrupted; other JSON: protocol error */
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[{\"message\":{\"content\":\"ab", 4096,
               "=-23:the stream ended inside the JSON reply");
    check_case(
        CHAT_WIRE_OPENAI, "{\"status\":\"ok\"}", 4096,
        "=-20:the reply is neither SSE nor a JSON chat completion (no \"choices\")");
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[]} x", 4096,
               "=-20:the reply is neither SSE nor a JSON chat completion: invalid JSON "
               "(unexpected character) at byte 15");
    check_case(CHAT_WIRE_OPENAI, "{\"choices\":[{\"message\":{\"content\":7}}]}", 4096,
               "=-20:JSON reply: \"content\" is not a string");
    /* the whole body is capped by max_line */
    check_case(CHAT_WIRE_OPENAI, whole, 64,
               "=-40:the JSON reply is longer than 64 bytes");
}

static void test_sse_not_sse(void **state)
{
    (void)state;
    /* a 2xx body that is not SSE at all is a protocol error, not an
     * interrupted answer */
    check_case(CHAT_WIRE_OPENAI, "Hello, this is not an event stream\n", 4096,
               "=-20:the reply is not an SSE stream (no \"data:\" line)");
    check_case(CHAT_WIRE_OPENAI, "OK", 4096,
               "=-20:the reply is not an SSE stream (no \"data:\" line)");
    check_case(CHAT_WIRE_OPENAI, "\n<!DOCTYPE html><html><body>login</body></html>", 4096,
               "=-20:the reply is HTML or XML, not an SSE stream");
    /* but only comments, or nothing, is a cut answer */
    check_case(CHAT_WIRE_OPENAI, ": ping\n\n: ping\n\n", 4096,
               "=-23:the stream ended before [DONE]");
    check_case(CHAT_WIRE_OPENAI, "\r\n\r\n", 4096, "=-23:the stream ended before [DONE]");
    /* and an unknown field next to real events is ignored (the spec) */
    check_case(CHAT_WIRE_OPENAI,
               "x-vendor: 1\ndata: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
               "data: [DONE]\n\n",
               4096, "C:a|D:|=0:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_stream), cmocka_unit_test(test_openai_llamacpp),
        cmocka_unit_test(test_openai_error),  cmocka_unit_test(test_sse_fields),
        cmocka_unit_test(test_sse_end),       cmocka_unit_test(test_sse_errors),
        cmocka_unit_test(test_sse_too_big),   cmocka_unit_test(test_sse_openai_shapes),
        cmocka_unit_test(test_sse_json_body), cmocka_unit_test(test_sse_not_sse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
