"""Backend review: wire shapes real servers send that the other backend
tests do not cover, against a real httpd and the fake backend. A server
that ignores "stream":true, a compressed body, CRLF / CR line ends and a
charset in the content type, bytes or a dropped connection or a held-open
response after the end of the answer, a non-SSE body, base URLs ending in
/v1 or with a path prefix (and a wrong prefix, which is not "model not
found"), and what the request carries (escaping, headers)."""
import time

import pytest

from conftest import Fake, Server
from backends_util import chat_requests_since, connect, last_id, run, streams, turn

EXTRA = ("ChatbotRateLimit off\n"
         "ChatbotFirstTokenTimeout 5s\n"
         "ChatbotTokenTimeout 2s\n"
         "ChatbotCircuitBreaker failures=1000\n"
         "ChatbotBackend ol {url}\n"
         "ChatbotBackend oa {url} type=openai key=sk-review\n"
         "ChatbotBackend oav1 {url}/v1/ type=openai\n"
         "ChatbotBackend olpre {pre}/ollama/\n"
         "ChatbotBackend olwrong {url}/ollama\n"
         "<ChatbotBot ol>\n    ChatbotBotBackend ol\n</ChatbotBot>\n"
         "<ChatbotBot oa>\n    ChatbotBotBackend oa\n</ChatbotBot>\n"
         "<ChatbotBot oav1>\n    ChatbotBotBackend oav1\n</ChatbotBot>\n"
         "<ChatbotBot olpre>\n    ChatbotBotBackend olpre\n</ChatbotBot>\n"
         "<ChatbotBot olwrong>\n    ChatbotBotBackend olwrong\n</ChatbotBot>\n")


@pytest.fixture(scope="module")
def prefixed():
    f = Fake(("--path-prefix", "/ollama"))
    yield f
    f.stop()


@pytest.fixture(scope="module")
def rsrv(fake, prefixed):
    s = Server(fake.url, extra=EXTRA.format(url=fake.url, pre=prefixed.url), name="review")
    yield s
    s.stop()
    bad = s.bad_log_lines()
    assert not bad, "unexpected error-level lines in the error log:\n" + "\n".join(bad)


def one_turn(srv, bot, text, timeout=20.0):
    async def go():
        ws, _ = await connect(srv)
        frames = await turn(ws, text, bot_id=bot, timeout=timeout)
        # the connection stays usable after whatever happened
        after = await turn(ws, "again [[fake tokens=1]]", bot_id=bot, timeout=timeout)
        await ws.close()
        return frames, after
    frames, after = run(go())
    return frames


def assert_complete(frames, text):
    final = frames[-1]
    assert final["type"] == "response", frames
    assert final["content"] == text == streams(frames), frames
    return final


# ---- the reply --------------------------------------------------------------------

@pytest.mark.parametrize("bot", ["ol", "oa"])
def test_server_ignoring_stream_true(rsrv, bot):
    """A server that answers "stream":true with one JSON object: the whole
    answer, complete (OpenAI wire: it used to end as "interrupted")."""
    final = assert_complete(one_turn(rsrv, bot, "hello there [[fake ignore_stream]]"),
                            "Echo: hello there")
    assert final["stats"]["done_reason"] == "stop"
    assert final["stats"]["prompt_tokens"] > 0


def test_non_sse_body_is_a_protocol_error(rsrv):
    """200 with a body that is neither SSE nor JSON: backend_protocol, not
    an interrupted answer."""
    frames = one_turn(rsrv, "oa", "x [[fake ignore_stream fault=garbage]]")
    assert frames[-1]["type"] == "error", frames
    assert frames[-1]["code"] == "backend_protocol", frames[-1]


@pytest.mark.parametrize("bot", ["ol", "oa"])
def test_gzip_body_is_decoded(rsrv, bot):
    """A server (or proxy) that compresses the stream anyway."""
    assert_complete(one_turn(rsrv, bot, "[[fake gzip tokens=4]]"), "t0 t1 t2 t3")


@pytest.mark.parametrize("bot,script", [
    ("oa", "eol=crlf content_type=text/event-stream;%20charset=utf-8"),
    ("oa", "eol=cr"),
    ("oa", "eol=crlf flavor=llamacpp split_utf8"),
    ("ol", "eol=crlf content_type=application/x-ndjson;%20charset=utf-8 split_utf8"),
])
def test_line_ends_and_content_type_parameters(rsrv, bot, script):
    frames = one_turn(rsrv, bot, "h\u00e9 \u2603 \U0001F600 [[fake %s]]" % script)
    assert_complete(frames, "Echo: h\u00e9 \u2603 \U0001F600")


def test_bytes_after_done_are_ignored(rsrv):
    """A keep-alive comment after [DONE] does not turn a complete answer
    into a protocol error."""
    assert_complete(one_turn(rsrv, "oa", "[[fake tokens=2 after_done=:%20ping%0A%0A]]"),
                    "t0 t1")


@pytest.mark.parametrize("bot", ["ol", "oa"])
def test_drop_right_after_done_is_complete(rsrv, bot):
    """The server closed the connection after the done line without ending
    the chunked body: the answer was complete all the same."""
    assert_complete(one_turn(rsrv, bot, "[[fake tokens=3 fault=drop_after_done]]"),
                    "t0 t1 t2")


@pytest.mark.parametrize("bot", ["ol", "oa"])
def test_response_held_open_after_done(rsrv, bot):
    """done:true / [DONE] came but the response stays open: complete within
    about a second, not a token timeout (2 s) or a wait for the server."""
    t0 = time.time()
    frames = one_turn(rsrv, bot, "[[fake tokens=2 hold_after_done_ms=8000]]")
    assert_complete(frames, "t0 t1")
    assert time.time() - t0 < 6.0


# ---- base URLs ------------------------------------------------------------------------

def test_openai_base_url_ending_in_v1(rsrv, fake):
    """ChatbotBackend ... http://host/v1/ type=openai (OPENAI_BASE_URL style)
    posts to /v1/chat/completions, not /v1/v1/..."""
    mark = last_id(fake)
    assert_complete(one_turn(rsrv, "oav1", "[[fake tokens=2]]"), "t0 t1")
    recs = chat_requests_since(fake, mark)
    assert recs and all(r["target"] == "/v1/chat/completions" for r in recs)


def test_ollama_behind_a_path_prefix(rsrv, prefixed):
    mark = last_id(prefixed)
    assert_complete(one_turn(rsrv, "olpre", "[[fake tokens=2]]"), "t0 t1")
    targets = [r["target"] for r in prefixed.requests() if r["id"] > mark]
    assert targets and all(t == "/ollama/api/chat" for t in targets)


def test_wrong_path_prefix_is_not_model_not_found(rsrv):
    """Ollama's mux answers an unknown path 404 "404 page not found": the
    user is told to check the URL, not to pull the model."""
    frames = one_turn(rsrv, "olwrong", "hi")
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_error", err
    assert "/ollama/api/chat" in err["message"] and "path prefix" in err["message"]


def test_real_model_not_found_404(rsrv):
    frames = one_turn(rsrv, "ol", "hi [[fake status=404]]")
    assert frames[-1]["code"] == "model_not_found", frames[-1]


# ---- the request ------------------------------------------------------------------------

@pytest.mark.parametrize("bot", ["ol", "oa"])
def test_request_text_escaping_and_headers(rsrv, fake, bot):
    text = "q\"b\\s/\tt\x01\x1f\x7f \u2028 \U0001F600 \uffff end"
    mark = last_id(fake)
    frames = one_turn(rsrv, bot, text)
    assert frames[-1]["type"] == "response", frames
    rec = [r for r in chat_requests_since(fake, mark)][0]
    body = rec["body"]
    assert isinstance(body, dict), body  # valid JSON
    assert body["messages"][-1] == {"role": "user", "content": text}
    assert body["stream"] is True
    h = {k.lower(): v for k, v in rec["headers"].items()}
    assert "cookie" not in h and "origin" not in h and "referer" not in h
    assert h["accept-encoding"] == "identity"
    if bot == "oa":
        assert h["authorization"] == "Bearer sk-review"
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "authorization" not in h
        assert body["options"]["num_ctx"] > 0 and body["keep_alive"]
