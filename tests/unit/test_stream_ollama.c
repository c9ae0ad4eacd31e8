/* Unit tests: chat/stream.h - the Ollama NDJSON stream parser: every
 * Ollama vector fed whole, byte by byte, split at every offset and at pairs
 * of offsets; blank lines and CRLF, garbage, data after the done line,
 * line caps, UTF-8 sanitising, reset after a cut surrogate, real-world
 * Ollama shapes, and the in-place fast path against json-c. */
#include "test_stream_util.h"

/* ---- vectors ------------------------------------------------------------------ */

static void test_ollama_stream(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("chat_stream.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:The|C: sky|C: is|C: blue.|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "qwen2.5-coder:7b");
    assert_string_equal(r.done_stats.done_reason, "stop");
    assert_int_equal(r.done_stats.prompt_tokens, 26);
    assert_int_equal(r.done_stats.completion_tokens, 4);
    MS_EQ(r.done_stats.total_ms, 4883.583458);
    MS_EQ(r.done_stats.load_ms, 1.334875);
    MS_EQ(r.done_stats.prompt_ms, 342.546);
    MS_EQ(r.done_stats.eval_ms, 44.535599);
    MS_EQ(r.done_stats.tokens_per_sec, 4.0 / 0.044535599);
    chat_buf_free(&r.log);
}

static void test_ollama_last_has_content(void **state)
{
    rec_t r;
    (void)state;
    /* the CONTENT of the done line comes before DONE */
    assert_int_equal(check_vector("chat_stream_last_has_content.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:Hello|C: there!|D:|=0:", &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.model, "llama3.2");
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_int_equal(r.done_stats.prompt_tokens, 3);
    assert_int_equal(r.done_stats.completion_tokens, 2);
    MS_EQ(r.done_stats.total_ms, 1.0);
    MS_EQ(r.done_stats.load_ms, 0.001);
    MS_EQ(r.done_stats.prompt_ms, 0.002);
    MS_EQ(r.done_stats.eval_ms, 0.003);
    MS_EQ(r.done_stats.tokens_per_sec, 2.0 / 3e-6);
    chat_buf_free(&r.log);
}

static void test_ollama_thinking(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_thinking.ndjson", CHAT_WIRE_OLLAMA,
                     "T:Okay, the user|T: wants a greeting.|C:Hi!|D:|=0:", &r),
        CHAT_OK);
    assert_string_equal(r.done_stats.model, "qwen3");
    assert_int_equal(r.done_stats.completion_tokens, 7);
    MS_EQ(r.done_stats.tokens_per_sec, 7.0 / 0.004);
    chat_buf_free(&r.log);
}

static void test_ollama_unicode(void **state)
{
    rec_t r;
    /* exact bytes: raw multibyte text, and escapes decoded (the surrogate
     * pair to F0 9F 98 80, U+2028 to E2 80 A8, \u003c to '<') */
    const char *want = "C:Gr\xC3\xBC\xC3\x9F"
                       "e, |"
                       "C:\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE3\x83\x86"
                       "\xE3\x82\xAD\xE3\x82\xB9\xE3\x83\x88 |"
                       "C:emoji \xF0\x9F\x98\x80 |"
                       "C:escaped \xF0\x9F\x98\x80 and \xE2\x80\xA8 and <b>|"
                       "C:<script>alert(1)</script>|D:|=0:";
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_unicode.ndjson", CHAT_WIRE_OLLAMA, want, &r), CHAT_OK);
    assert_int_equal(r.done_stats.completion_tokens, 5);
    chat_buf_free(&r.log);
}

static void test_ollama_midstream_error(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(
        check_vector("chat_stream_midstream_error.ndjson", CHAT_WIRE_OLLAMA,
                     "C:Partial|C: answer|"
                     "E:an error was encountered while running the model: unexpected EOF|"
                     "=-23:backend error: an error was encountered while running the "
                     "model: unexpected EOF",
                     &r),
        CHAT_EINCOMPLETE);
    assert_int_equal(r.ndone, 0);
    chat_buf_free(&r.log);
}

static void test_ollama_truncated(void **state)
{
    rec_t r;
    (void)state;
    assert_int_equal(check_vector("chat_stream_truncated.ndjson", CHAT_WIRE_OLLAMA,
                                  "C:Cut|=-23:the stream ended inside NDJSON line 2 "
                                  "(truncated JSON object)",
                                  &r),
                     CHAT_EINCOMPLETE);
    chat_buf_free(&r.log);
}

/* ---- NDJSON details ---------------------------------------------------------- */

static void test_ndjson_blank_lines_and_crlf(void **state)
{
    (void)state;
    check_case(CHAT_WIRE_OLLAMA,
               "\n\r\n  \t\r\n{\"message\":{\"content\":\"a\"}}\r\n\n"
               "{\"message\":{\"content\":\"b\"},\"done\":false}\n \n"
               "{\"done\":true}\r\n\r\n \n",
               1024, "C:a|C:b|D:|=0:");
    /* the done line may end the stream without a newline */
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"x\"},\"done\":true}", 1024,
               "C:x|D:|=0:");
    /* done line with thinking and content: THINKING, CONTENT, DONE */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"thinking\":\"hm\",\"content\":\"ok\"},\"done\":true,"
               "\"done_reason\":\"stop\"}\n",
               1024, "T:hm|C:ok|D:|=0:");
    /* null content / missing message: no events; unknown members ignored */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":null,\"tool_calls\":[{\"function\":{}}]}}\n"
               "{\"status\":\"x\"}\n{\"message\":null}\n{\"done\":true}\n",
               1024, "D:|=0:");
    /* an empty stream is incomplete */
    check_case(CHAT_WIRE_OLLAMA, "", 1024, "=-23:the stream ended before done:true");
    check_case(CHAT_WIRE_OLLAMA, "\n\n", 1024, "=-23:the stream ended before done:true");
}

static void test_ndjson_garbage(void **state)
{
    char deep[400];
    size_t i;
    (void)state;
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\"}}\nhello\n", 1024,
               "C:a|=-20:NDJSON line 2: expected a JSON object, got text that is not "
               "JSON");
    check_case(CHAT_WIRE_OLLAMA, "[1,2]\n", 1024,
               "=-20:NDJSON line 1: expected a JSON object, got another JSON value");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":\"hi\"}\n", 1024,
               "=-20:NDJSON line 1: \"message\" is not an object");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":5}}\n", 1024,
               "=-20:NDJSON line 1: \"message.content\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"thinking\":[]}}\n", 1024,
               "=-20:NDJSON line 1: \"message.thinking\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":\"yes\"}\n", 1024,
               "=-20:NDJSON line 1: \"done\" is not a boolean");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":false} x\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (unexpected character) at byte 15");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":false}{\"done\":true}\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (unexpected character) at byte 14");
    /* a truncated object followed by a newline is garbage, not a cut */
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\n", 1024,
               "=-20:NDJSON line 1: truncated JSON object");
    check_case(CHAT_WIRE_OLLAMA, "{done:true}\n", 1024,
               "=-20:NDJSON line 1: invalid JSON (quoted object property name expected) "
               "at byte 1");
    /* too deep */
    for (i = 0; i < 100; i++) {
        deep[i] = '[';
    }
    memcpy(deep, "{\"a\":", 5);
    deep[100] = '\n';
    deep[101] = '\0';
    check_case(CHAT_WIRE_OLLAMA, deep, 1024,
               "=-20:NDJSON line 1: invalid JSON (nesting too deep) at byte 68");
    /* the failure is sticky */
    {
        rec_t r;
        chat_stream_t *s;
        rec_init(&r);
        assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r),
                         CHAT_OK);
        assert_int_equal(chat_stream_feed(s, "nope\n", 5), CHAT_EPARSE);
        assert_int_equal(chat_stream_feed(s, "{\"done\":true}\n", 14), CHAT_EPARSE);
        assert_int_equal(chat_stream_finish(s), CHAT_EPARSE);
        assert_int_equal(r.nev, 0);
        /* reset makes it usable again */
        chat_stream_reset(s);
        assert_string_equal(chat_stream_error(s), "");
        assert_int_equal(chat_stream_feed(s, "{\"done\":true}\n", 14), CHAT_OK);
        assert_int_equal(chat_stream_finish(s), CHAT_OK);
        assert_int_equal(r.ndone, 1);
        chat_stream_destroy(s);
        chat_buf_free(&r.log);
    }
}

static void test_ndjson_after_done(void **state)
{
    (void)state;
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}\n{\"message\":{\"content\":\"x\"}}\n",
               1024, "D:|=-61:data after the end of the answer");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}\n \r\n\t\n", 1024, "D:|=0:");
    /* after an ERROR the rest is ignored; the answer is incomplete */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"error\":\"boom\"}\n{\"message\":{\"content\":\"x\"}}\ngarbage\n"
               "{\"done\":true}\n",
               1024, "E:boom|=-23:backend error: boom");
    /* OpenAI-shaped error objects and odd error values */
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":{\"message\":\"bad\",\"code\":1}}\n", 1024,
               "E:bad|=-23:backend error: bad");
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":{\"code\":500}}\n", 1024,
               "E:{\"code\":500}|=-23:backend error: {\"code\":500}");
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":\"\"}\n", 1024,
               "E:unknown backend error|=-23:backend error: unknown backend error");
}

static void test_ndjson_too_big(void **state)
{
    char line[200];
    chat_stream_t *s;
    rec_t r;
    size_t i;
    (void)state;

    /* a line of exactly max_line bytes passes, with "\n" or "\r\n" */
    snprintf(line, sizeof(line),
             "{\"message\":{\"content\":\"%s\"}}\r\n{\"done\":true}\n", "0123456789");
    /* the first line is 36 bytes */
    check_case(CHAT_WIRE_OLLAMA, line, 36, "C:0123456789|D:|=0:");
    check_case(CHAT_WIRE_OLLAMA, line, 35, "=-40:NDJSON line 1 is longer than 35 bytes");
    check_case(CHAT_WIRE_OLLAMA, "{\"done\":true}", 12,
               "=-40:NDJSON line 1 is longer than 12 bytes");
    /* nothing beyond the cap is buffered: fed in small pieces, feed fails as
     * soon as the pending line passes max_line (+1 for a possible "\r") */
    rec_init(&r);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 100, rec_cb, &r), CHAT_OK);
    for (i = 0; i < 101; i++) {
        assert_int_equal(chat_stream_feed(s, "a", 1), CHAT_OK);
    }
    assert_int_equal(chat_stream_feed(s, "a", 1), CHAT_ETOOBIG);
    assert_int_equal(chat_stream_feed(s, "\n", 1), CHAT_ETOOBIG);
    assert_int_equal(chat_stream_finish(s), CHAT_ETOOBIG);
    chat_stream_destroy(s);
    chat_buf_free(&r.log);
}

static void test_utf8_sanitising(void **state)
{
    (void)state;
    /* raw invalid bytes, a cut sequence, overlong, encoded surrogate, > U+10FFFF */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"a\xFF"
               "b\"}}\n"
               "{\"message\":{\"content\":\"c\xE6\x97\"}}\n"
               "{\"message\":{\"content\":\"\xC0\xAF\"}}\n"
               "{\"message\":{\"content\":\"\xED\xA0\x80!\"}}\n"
               "{\"message\":{\"content\":\"\xF4\x90\x80\x80\"}}\n"
               "{\"done\":true}\n",
               1024,
               "C:a\xEF\xBF\xBD"
               "b|C:c\xEF\xBF\xBD|C:\xEF\xBF\xBD\xEF\xBF\xBD|"
               "C:\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!|"
               "C:\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|D:|=0:");
    /* lone surrogates in escapes and \u0000 become U+FFFD too */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"x\\ud83dy\"}}\n"
               "{\"message\":{\"content\":\"\\ude00\"}}\n"
               "{\"message\":{\"content\":\"n\\u0000n\"}}\n"
               "{\"message\":{\"content\":\"\\u00e9\\ud83d\\ude00\"}}\n"
               "{\"done\":true}\n",
               1024,
               "C:x\xEF\xBF\xBDy|C:\xEF\xBF\xBD|C:n\xEF\xBF\xBDn|"
               "C:\xC3\xA9\xF0\x9F\x98\x80|D:|=0:");
    /* invalid UTF-8 in an error message, too */
    check_case(CHAT_WIRE_OLLAMA, "{\"error\":\"bad \xFE\"}\n", 1024,
               "E:bad \xEF\xBF\xBD|=-23:backend error: bad \xEF\xBF\xBD");
}

/* Found by fuzzing: json-c's tokener reset keeps a pending high surrogate,
 * which turned the next answer's first escaped pair into U+FFFD + emoji. */
static void test_reset_after_surrogate_error(void **state)
{
    rec_t r;
    chat_stream_t *s;
    const char *bad = "{\"message\":{\"content\":\"\\ud83d\n";
    const char *good = "{\"message\":{\"content\":\"\\ud83d\\ude00\"},\"done\":true}\n";
    (void)state;
    rec_init(&r);
    assert_int_equal(chat_stream_create(&s, CHAT_WIRE_OLLAMA, 1024, rec_cb, &r), CHAT_OK);
    assert_int_equal(chat_stream_feed(s, bad, strlen(bad)), CHAT_EPARSE);
    chat_stream_reset(s);
    assert_int_equal(chat_stream_feed(s, good, strlen(good)), CHAT_OK);
    assert_int_equal(chat_stream_finish(s), CHAT_OK);
    assert_string_equal(r.log.data, "C:\xF0\x9F\x98\x80|D:|");
    chat_stream_destroy(s);
    chat_buf_free(&r.log);
}

/* ---- review of real-world Ollama shapes; the in-place fast path ---------------- */

/* The in-place reader of ordinary token lines gives exactly what json-c
 * gives, line shape by line shape (and declines whatever it does not
 * expect, which then fails or succeeds as json-c says). */
static void same_stats(const chat_stats_t *a, const chat_stats_t *b)
{
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->done_reason, b->done_reason);
    assert_int_equal(a->prompt_tokens, b->prompt_tokens);
    assert_int_equal(a->completion_tokens, b->completion_tokens);
    assert_true(a->total_ms == b->total_ms);
    assert_true(a->load_ms == b->load_ms);
    assert_true(a->prompt_ms == b->prompt_ms);
    assert_true(a->eval_ms == b->eval_ms);
    assert_true(a->tokens_per_sec == b->tokens_per_sec);
}

static void fast_vs_json_c(const char *line)
{
    static const char done[] = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\","
                               "\"content\":\"\"},\"done\":true,\"eval_count\":2}\n";
    chat_buf_t in;
    rec_t fast, slow;

    chat_buf_init(&in);
    chat_buf_puts(&in, line);
    chat_buf_puts(&in, "\n");
    chat_buf_puts(&in, done);
    rec_init(&fast);
    rec_init(&slow);
    chat_stream_set_fast_path(1);
    run_whole(CHAT_WIRE_OLLAMA, in.data, in.len, 4096, &fast);
    chat_stream_set_fast_path(0);
    run_whole(CHAT_WIRE_OLLAMA, in.data, in.len, 4096, &slow);
    chat_stream_set_fast_path(1);
    if (strcmp(fast.log.data, slow.log.data) != 0) {
        fail_msg("line %s:\n fast   %s\n json-c %s", line, fast.log.data, slow.log.data);
    }
    same_stats(&fast.done_stats, &slow.done_stats);
    chat_buf_free(&fast.log);
    chat_buf_free(&slow.log);
    chat_buf_free(&in);
}

static void test_ndjson_fast_path_same_as_json_c(void **state)
{
    static const char *const lines[] = {
        /* ordinary token lines (read in place) */
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-10-20T10:00:00.1Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"Hello\"},\"done\":false}",
        "{ \"message\" : { \"content\" : \"a b\" , \"role\" : \"assistant\" } , "
        "\"done\" : false }",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hmm\"},"
        "\"done\":false}",
        "{\"message\":{\"content\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}}",
        "{\"message\":{\"content\":\"bad \xff\xfe utf8 \xc3\"},\"done\":false}",
        "{\"message\":{\"content\":\"x\",\"images\":null,\"tool_calls\":[{\"a\":[1,2.5e3,"
        "-0.1E-2,true,false,null,{}]},[]]},\"n\":-12,\"done\":false}",
        "{\"model\":\"\",\"message\":{\"content\":\"no model\"}}",
        "{\"other\":\"with \\\"escapes\\\" \\u00e9 \\ud83d\\ude00\",\"message\":"
        "{\"content\":\"ok\"}}",
        /* the last line with its statistics (read in place) */
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-10-20T10:00:02Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\","
        "\"done\":true,\"total_duration\":4883583458,\"load_duration\":1334875,"
        "\"prompt_eval_count\":26,\"prompt_eval_duration\":342546000,"
        "\"eval_count\":4,\"eval_duration\":4535000000}",
        "{\"message\":{\"content\":\"last words\"},\"done\":true,\"eval_count\":0,"
        "\"eval_duration\":0}",
        "{\"done\":true}",
        "{\"model\":\"other\",\"done\":true,\"done_reason\":\"length\",\"eval_count\":"
        "999999999999999,\"eval_duration\":1}",
        /* declined: json-c decides */
        "{\"done\":true,\"eval_count\":1.5,\"eval_duration\":1000}",
        "{\"done\":true,\"eval_count\":3,\"eval_duration\":2e9}",
        "{\"done\":true,\"eval_count\":-3,\"eval_duration\":2}",
        "{\"done\":true,\"eval_count\":1234567890123456,\"eval_duration\":2}",
        "{\"done\":true,\"eval_count\":12345678901234567890123,\"eval_duration\":2}",
        "{\"done\":true,\"eval_count\":3,\"eval_count\":4}",
        "{\"done\":true,\"eval_count\":03}",
        "{\"done\":true,\"eval_count\":\"3\"}",
        "{\"done\":true,\"eval_count\":null,\"total_duration\":true}",
        "{\"done\":true,\"done_reason\":\"st\\u006fp\"}",
        "{\"done\":true,\"done_reason\":7}",
        "{\"done\":true,\"done_reason\":\"a\",\"done_reason\":\"b\"}",
        "{\"done\":true,\"done\":true}",
        "{\"done\":tru}",
        "{\"message\":{\"content\":\"line\\nbreak \\\"q\\\" \\u00e9 \\ud83d\\ude00\"}}",
        "{\"message\":{\"content\":\"lone \\ud800 surrogate\"}}",
        "{\"message\":{\"content\":\"nul \\u0000 byte\"}}",
        "{\"message\":{\"content\":\"raw\ttab\"}}",
        "{\"message\":{\"content\":\"one\",\"content\":\"two\"}}",
        "{\"message\":{\"content\":\"a\"},\"message\":{\"content\":\"b\"}}",
        "{\"message\":{\"content\":\"a\"},\"done\":false,\"done\":true}",
        "{\"mess\\u0061ge\":{\"content\":\"escaped key\"}}",
        "{\"message\":{\"cont\\u0065nt\":\"escaped inner key\"}}",
        "{\"message\":{\"content\":null}}",
        "{\"message\":{\"content\":42}}",
        "{\"message\":\"not an object\"}",
        "{\"message\":{\"content\":\"x\"},\"done\":\"false\"}",
        "{\"message\":{\"content\":\"x\"},\"done\":0}",
        "{\"error\":\"model 'x' not found\"}",
        "{\"error\":{\"message\":\"nested\"},\"message\":{\"content\":\"x\"}}",
        "{\"object\":\"error\",\"message\":\"vllm style\"}",
        "{\"model\":\"m\\u00e9\",\"message\":{\"content\":\"escaped model\"}}",
        "{\"model\":7,\"message\":{\"content\":\"numeric model\"}}",
        "{\"message\":{\"content\":\"x\"},\"n\":01}",
        "{\"message\":{\"content\":\"x\"},\"n\":1.}",
        "{\"message\":{\"content\":\"x\"},\"n\":NaN}",
        "{\"message\":{\"content\":\"x\"},\"n\":[1,]}",
        "{\"message\":{\"content\":\"x\"},}",
        "{\"message\":{\"content\":\"x\"}} trailing",
        "{\"message\":{\"content\":\"x\"}\f}",
        "{\"message\":{\"content\":\"x\"},\"deep\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]"
        "]]}",
        "{\"message\":{\"content\":\"x\"},\"s\":\"bad \\q escape\"}",
        "{\"message\":{\"content\":\"x\"},\"s\":\"short \\u12\"}",
        "{\"message\":{\"content\":\"unterminated}}",
        "{\"message\":{\"content\":\"x\"}",
        "{'message':{'content':'single quotes'}}",
    };
    size_t i;
    (void)state;

    for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        fast_vs_json_c(lines[i]);
    }
    /* and every Ollama vector */
    {
        static const char *const vec[] = {"chat_stream.ndjson",
                                          "chat_stream_last_has_content.ndjson",
                                          "chat_stream_midstream_error.ndjson",
                                          "chat_stream_thinking.ndjson",
                                          "chat_stream_truncated.ndjson",
                                          "chat_stream_unicode.ndjson"};
        for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
            size_t n;
            char *data = load_vector(vec[i], &n);
            rec_t fast, slow;
            rec_init(&fast);
            rec_init(&slow);
            run_whole(CHAT_WIRE_OLLAMA, data, n, 4096, &fast);
            chat_stream_set_fast_path(0);
            run_whole(CHAT_WIRE_OLLAMA, data, n, 4096, &slow);
            chat_stream_set_fast_path(1);
            assert_string_equal(fast.log.data, slow.log.data);
            same_stats(&fast.done_stats, &slow.done_stats);
            chat_buf_free(&fast.log);
            chat_buf_free(&slow.log);
            free(data);
        }
    }
}

static void test_ndjson_ollama_shapes(void **state)
{
    rec_t r;
    const char *tools =
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.1Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"need the weather\"},"
        "\"done\":false}\r\n"
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.2Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{"
        "\"name\":"
        "\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}}]},\"done\":false}\r\n"
        "\r\n"
        "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-10-20T10:00:00.3Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"length\",\"done\":"
        "true,"
        "\"total_duration\":3000000000,\"load_duration\":1500000000,"
        "\"prompt_eval_count\":12,\"prompt_eval_duration\":250000000,\"eval_count\":40,"
        "\"eval_duration\":1000000000}\r\n";
    (void)state;
    check_splits(CHAT_WIRE_OLLAMA, tools, strlen(tools), 4096,
                 "T:need the weather|D:|=0:");
    rec_init(&r);
    assert_int_equal(run_whole(CHAT_WIRE_OLLAMA, tools, strlen(tools), 4096, &r),
                     CHAT_OK);
    assert_string_equal(r.done_stats.done_reason, "length");
    assert_string_equal(r.done_stats.model, "qwen3:8b");
    assert_int_equal(r.done_stats.prompt_tokens, 12);
    assert_int_equal(r.done_stats.completion_tokens, 40);
    MS_EQ(r.done_stats.total_ms, 3000.0);
    MS_EQ(r.done_stats.load_ms, 1500.0);
    MS_EQ(r.done_stats.prompt_ms, 250.0);
    MS_EQ(r.done_stats.eval_ms, 1000.0);
    MS_EQ(r.done_stats.tokens_per_sec, 40.0);
    chat_buf_free(&r.log);
    /* the "load" reply to an empty conversation is a (content-less) done */
    check_case(
        CHAT_WIRE_OLLAMA,
        "{\"model\":\"llama3.2\",\"created_at\":\"2025-10-20T10:00:00Z\",\"message\":"
        "{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"load\","
        "\"done\":true}\n",
        4096, "D:|=0:");
    /* the 404 body of a missing model, as a 200 line: an error */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}\n", 4096,
               "E:model \"x\" not found, try pulling it first|=-23:backend error: model "
               "\"x\" not found, try pulling it first");
    /* a number where a string belongs: a clear protocol error */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"role\":\"assistant\",\"content\":42}}\n", 4096,
               "=-20:NDJSON line 1: \"message.content\" is not a string");
    check_case(CHAT_WIRE_OLLAMA, "{\"message\":{\"content\":\"a\"},\"done\":\"true\"}\n",
               4096, "=-20:NDJSON line 1: \"done\" is not a boolean");
    /* raw invalid UTF-8 in content never reaches the caller */
    check_case(CHAT_WIRE_OLLAMA,
               "{\"message\":{\"content\":\"a\xC3\"}}\n{\"message\":{\"content\":\"\xA9"
               "b\xED\xA0\x80\"},\"done\":true}\n",
               4096,
               "C:a\xEF\xBF\xBD|C:\xEF\xBF\xBD"
               "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD|D:|=0:");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ollama_stream),
        cmocka_unit_test(test_ollama_last_has_content),
        cmocka_unit_test(test_ollama_thinking),
        cmocka_unit_test(test_ollama_unicode),
        cmocka_unit_test(test_ollama_midstream_error),
        cmocka_unit_test(test_ollama_truncated),
        cmocka_unit_test(test_ndjson_blank_lines_and_crlf),
        cmocka_unit_test(test_ndjson_garbage),
        cmocka_unit_test(test_ndjson_after_done),
        cmocka_unit_test(test_ndjson_too_big),
        cmocka_unit_test(test_utf8_sanitising),
        cmocka_unit_test(test_reset_after_surrogate_error),
        cmocka_unit_test(test_ndjson_ollama_shapes),
        cmocka_unit_test(test_ndjson_fast_path_same_as_json_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
