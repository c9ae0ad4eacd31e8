"""Backend faults (issue 4): every fault mode of the fake backend, in both
wire formats, ends in the right error frame, a usable connection, a
consistent history and no leaked socket or busy worker; and each timeout
(connect, first token with the "loading" status, idle gap, total). The
user is told what happened in a sentence; the details (the backend's own
words, the HTTP status, the URL) are in the error log only (issue 14).

Then the wire shapes real servers send that are not faults: a server that
ignores "stream":true, a compressed body, CRLF / CR line ends and a
charset in the content type, bytes or a dropped connection or a held-open
response after the end of the answer, a non-SSE body, base URLs ending in
/v1 or with a path prefix (and a wrong prefix, which is not "model not
found"), and what the request carries (escaping, headers)."""
import json
import socket
import time

import pytest

from conftest import Fake, Server
from backends_util import (assert_quiet, chat_requests_since, collect, connect,
                           failed_turn_line, history, last_id, ping, run, streams, turn,
                           wait_ended, wait_for, wait_idle, wait_no_sockets)

EXTRA = ("ChatbotRateLimit off\n"
         "ChatbotFirstTokenTimeout 2s\n"
         "ChatbotTokenTimeout 1s\n"
         "ChatbotCircuitBreaker failures=1000\n"
         "ChatbotBackend ol {url}\n"
         "ChatbotBackend oa {url} type=openai\n"
         "<ChatbotBot ol>\n    ChatbotBotBackend ol\n</ChatbotBot>\n"
         "<ChatbotBot oa>\n    ChatbotBotBackend oa\n</ChatbotBot>\n")


@pytest.fixture(scope="module")
def fsrv(fake):
    s = Server(fake.url, extra=EXTRA.format(url=fake.url), name="faults")
    yield s
    s.stop()
    bad = s.bad_log_lines()
    assert not bad, "unexpected error-level lines in the error log:\n" + "\n".join(bad)


# directive -> (code or "response", partial answer kept, detail in the log)
FAULTS = [
    ("fault=refuse", "backend_error", False, "closed the connection"),
    ("fault=hang_headers", "backend_timeout", False, "ChatbotFirstTokenTimeout"),
    ("fault=hang_mid after=2", "backend_timeout", True, "no token for 1 s"),
    ("fault=slow delay_ms=300 tokens=4", "response", False, None),
    ("fault=drop after=2", "interrupted", True, "lost mid-answer"),
    ("fault=drop_rst after=2", "interrupted", True, "lost mid-answer"),
    ("fault=error_line after=2 error=GPU%20on%20fire", "backend_error", True, "GPU on fire"),
    ("status=404", "model_not_found", False, "pull it"),
    ("status=503", "backend_busy", False, "HTTP 503"),
    ("status=400", "backend_bad_request", False, "rejected the request"),
    ("status=500", "backend_error", False, "HTTP 500"),
    ("status=401", "backend_error", False, "key="),
    ("fault=garbage after=2", "backend_protocol", True, "not valid"),
    ("fault=invalid_json after=2", "backend_protocol", True, "not valid"),
    ("fault=huge_line after=2 huge_kb=8192", "backend_protocol", True, "longer than"),
    ("fault=wrong_content_type", "backend_protocol", False, "text/html"),
    ("fault=no_done tokens=3", "interrupted", True, "before the answer was complete"),
    ("fault=empty", "interrupted", False, "before the answer was complete"),
]


@pytest.mark.parametrize("wire", ["ol", "oa"])
@pytest.mark.parametrize("directive,code,partial,text", FAULTS,
                         ids=[f[0].split()[0] for f in FAULTS])
def test_fault(fsrv, fake, wire, directive, code, partial, text):
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(fsrv)
        t0 = time.time()
        frames = await turn(ws, "q [[fake %s]]" % directive, bot_id=wire, id="f1",
                            timeout=15)
        took = time.time() - t0
        conv = frames[-1]["conversation_id"]
        lat = await ping(ws)
        after = await turn(ws, "and now fine [[fake tokens=2]]", bot_id=wire,
                           conversation_id=conv)
        h = await history(ws, conv)
        await ws.close()
        return frames, took, lat, after, h
    frames, took, lat, after, h = run(go())
    final = frames[-1]
    if code == "response":
        assert final["type"] == "response" and final["interrupted"] is False, frames
        assert final["content"] == streams(frames) == "t0 t1 t2 t3"
    else:
        assert final["type"] == "error", frames
        assert final["code"] == code, final
        assert final["id"] == "f1"
        assert_quiet(final["message"], text, fake.port)
        assert final["message"].endswith("The partial answer is kept.") == partial
        assert text in failed_turn_line(fsrv, final["conversation_id"], code)
        assert bool(final.get("partial")) == partial, final
    assert took < 6, "the fault took %.1f s to report" % took
    # the connection is usable
    assert lat < 2.0
    assert after[-1]["type"] == "response" and after[-1]["content"] == "t0 t1"
    # the history is consistent: question, answer (partial/complete) or error
    # line, then the next exchange
    msgs = h["messages"]
    if partial:
        # the partial answer, then its failure's reason (issue 19 part 1)
        assert [m["role"] for m in msgs[-5:]] == ["user", "assistant", "assistant",
                                                  "user", "assistant"]
        ans, reason = msgs[-4], msgs[-3]
        assert reason.get("error") is True and reason.get("code") == code, reason
        assert reason["content"] == final["message"]
        assert reason["index"] == ans["index"] + 1
    else:
        assert [m["role"] for m in msgs[-4:]] == ["user", "assistant", "user", "assistant"]
        ans = msgs[-3]
    assert ans["streaming"] is False
    if code == "response":
        assert ans["content"] == final["content"] and ans["interrupted"] is False
        assert "error" not in ans
    elif partial:
        assert ans["content"] == streams(frames) and ans["content"]
        assert ans["interrupted"] is True
        assert final["index"] == ans["index"]
        # told apart from a Stop: the answer carries the reason it was cut off
        assert ans["error"] == {"code": code, "message": final["message"]}, ans
    else:
        # the failure stays visible in the conversation, with its code
        assert ans.get("error") is True and ans.get("code") == code, ans
        assert ans["content"] == final["message"]
    assert msgs[-1]["content"] == "t0 t1" and msgs[-1]["interrupted"] is False
    # the backend request of the fault has ended, and nothing is left open
    reqs = chat_requests_since(fake, mark)
    assert len(reqs) >= 2
    for r in reqs:
        assert wait_ended(fake, r["id"])["t_end"] is not None
    if "huge_line" in directive:
        # the 8 MiB line was cut at the 1 MiB line cap, not read whole
        rec = wait_ended(fake, reqs[0]["id"])
        assert rec["client_closed_at"] is not None
    assert wait_no_sockets(fsrv, fake.port) == []


def test_no_leak_after_faults(fsrv, fake):
    """After all the faults: no socket to the backend, no busy worker, no
    turn left generating or queued, no slot held."""
    assert wait_no_sockets(fsrv, fake.port) == []
    st, sa = wait_idle(fsrv)
    assert all(b["active"] == 0 and b["queued"] == 0 for b in st["backends"])
    # the children still have their configured threads, none stuck
    assert int(sa["BusyWorkers"]) <= 1


# ---- timeouts ------------------------------------------------------------------------------

def test_first_token_timeout_with_loading_status(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotFirstTokenTimeout 2s")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        await ws.send(json.dumps({"type": "message", "content": "[[fake fault=hang_headers]]"}))
        frames = await collect(ws, stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    loading = [f for f in frames if f.get("type") == "status" and f.get("state") == "loading"]
    assert len(loading) == 1
    assert 1.4 <= loading[0]["_t"] - t0 < 1.9
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_timeout"
    assert_quiet(err["message"], "ChatbotFirstTokenTimeout")
    line = failed_turn_line(s, err["conversation_id"], "backend_timeout")
    assert "within 2 s" in line and "ChatbotFirstTokenTimeout" in line
    assert 1.95 <= err["_t"] - t0 < 2.5
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["client_closed_at"] - t0 < 2.5


def test_slow_model_load_then_answer(httpd, fake):
    """first_delay_ms: "loading" after 1.5 s, then "generating" and the answer."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotFirstTokenTimeout 5s")

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        await ws.send(json.dumps({"type": "message",
                                  "content": "[[fake first_delay_ms=2200 tokens=3]]"}))
        frames = await collect(ws, stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    states = [(f["state"], f["_t"] - t0) for f in frames if f.get("type") == "status"]
    names = [s_ for s_, _ in states]
    assert "loading" in names
    i = names.index("loading")
    assert names[i + 1] == "generating", states
    assert states[i][1] >= 1.4
    assert frames[-1]["type"] == "response" and frames[-1]["content"] == "t0 t1 t2"
    assert frames[-1]["stats"]["ttft_ms"] >= 2100
    assert frames[-1]["stats"]["load_ms"] >= 2100


def test_token_timeout_keeps_partial(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotTokenTimeout 1s")

    async def go():
        ws, _ = await connect(s)
        frames = await turn(ws, "[[fake fault=hang_mid after=3 tokens=10]]", stamp=True, timeout=10)
        await ws.close()
        return frames
    frames = run(go())
    err = frames[-1]
    toks = [f for f in frames if f.get("type") == "stream"]
    assert err["type"] == "error" and err["code"] == "backend_timeout" and err["partial"]
    assert 0.95 <= err["_t"] - toks[-1]["_t"] < 1.5
    assert streams(frames) == "t0 t1 t2"


def test_total_timeout(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotTotalTimeout 2s")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        frames = await turn(ws, "[[fake tokens=100 delay_ms=100]]", stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_timeout" and err["partial"]
    assert_quiet(err["message"], "ChatbotTotalTimeout")
    assert "ChatbotTotalTimeout" in failed_turn_line(s, err["conversation_id"],
                                                     "backend_timeout")
    assert 1.95 <= err["_t"] - t0 < 2.5
    (rec,) = chat_requests_since(fake, mark)
    assert wait_ended(fake, rec["id"])["outcome"] == "client_closed"


def test_connect_timeout(httpd, fake):
    """A backend that never completes the TCP handshake: a listener whose
    accept queue is full (Linux then drops SYNs), the loopback stand-in for
    an unroutable address."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        # fill the accept queue (backlog 0 admits one, sometimes two)
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes handshakes on a full accept queue")
        except (socket.timeout, OSError):
            pass
        finally:
            probe.close()
        s = httpd(extra="ChatbotRateLimit off\nChatbotConnectTimeout 1s",
                  backend="http://127.0.0.1:%d" % port)

        async def go():
            ws, _ = await connect(s)
            t0 = time.time()
            await ws.send(json.dumps({"type": "message", "content": "hello?"}))
            await wait_for(ws, lambda m: m.get("type") == "ack")
            lat = await ping(ws)  # not blocked while connecting
            frames = await collect(ws, stamp=True, timeout=10)
            await ws.close()
            return t0, lat, frames
        t0, lat, frames = run(go())
        err = frames[-1]
        assert lat < 0.1
        assert err["type"] == "error" and err["code"] == "backend_unreachable", err
        assert_quiet(err["message"], "1000 ms", port)
        line = failed_turn_line(s, err["conversation_id"], "backend_unreachable")
        assert "1000 ms" in line and "127.0.0.1:%d" % port in line
        assert 0.95 <= err["_t"] - t0 < 1.6
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_connection_refused(httpd, fake):
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    s = httpd(extra="ChatbotRateLimit off", backend="http://127.0.0.1:%d" % port)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        frames = await turn(ws, "anyone?")
        took = time.time() - t0
        await ws.close()
        return frames, took
    frames, took = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_unreachable"
    assert_quiet(err["message"], "is the server running", port)
    line = failed_turn_line(s, err["conversation_id"], "backend_unreachable")
    assert "is the server running" in line and "http://127.0.0.1:%d" % port in line
    assert took < 0.5


def test_endless_answer_is_cut_at_max_answer_bytes(httpd, fake):
    """A backend that never stops: the answer is cut at ChatbotMaxAnswerBytes,
    kept (interrupted), and the backend request closed."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxAnswerBytes 8k")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        frames = await turn(ws, "[[fake tokens=100000 delay_ms=0]]", timeout=15)
        h = await history(ws, frames[-1]["conversation_id"])
        await ws.close()
        return frames, h
    frames, h = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "too_large" and err["partial"]
    kept, reason = h["messages"][-2], h["messages"][-1]
    assert kept["interrupted"] is True and 0 < len(kept["content"]) <= 8192
    assert kept["error"] == {"code": "too_large", "message": err["message"]}
    assert reason["error"] is True and reason["code"] == "too_large"
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["outcome"] == "client_closed" and rec["tokens_sent"] < 100000
    assert wait_no_sockets(s, fake.port) == []


# ==== wire shapes real servers send ===================================================

WIRE_EXTRA = ("ChatbotRateLimit off\n"
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
    s = Server(fake.url, extra=WIRE_EXTRA.format(url=fake.url, pre=prefixed.url), name="wire")
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
    assert "/ollama/api/chat" not in err["message"] and "pull" not in err["message"]
    line = failed_turn_line(rsrv, err["conversation_id"], "backend_error")
    assert "/ollama/api/chat" in line and "path prefix" in line


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
