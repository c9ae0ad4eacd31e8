"""Backends (issue 4): both wire formats against a real httpd and the fake
backend, the request we send, thinking deltas, stats, options, Stop and a
vanished client closing the upstream request within 100 ms, connection
reuse, and the request thread never blocking."""
import asyncio
import json
import time

import pytest

from backends_util import (chat_requests_since, collect, connect, history, last_id, new_sid,
                           ping, run, streams, turn, wait_ended, wait_for, wait_idle,
                           wait_no_sockets)

OA = "ChatbotRateLimit off\n" \
     "ChatbotBackend oa {url} type=openai key=sk-test-123\n" \
     "ChatbotBackend ol {url}\n" \
     "<ChatbotBot oabot>\n" \
     "    ChatbotBotBackend oa\n" \
     "    ChatbotModel oa-model\n" \
     "    ChatbotOption temperature 0.3\n" \
     "    ChatbotOption top_p 0.9\n" \
     "    ChatbotOption seed 42\n" \
     "    ChatbotOption num_predict 64\n" \
     "</ChatbotBot>\n" \
     "<ChatbotBot olbot>\n" \
     "    ChatbotBotBackend ol\n" \
     "    ChatbotModel ol-model\n" \
     "    ChatbotOption temperature 0.2\n" \
     "    ChatbotOption top_k 30\n" \
     "    ChatbotOption num_ctx 16384\n" \
     "    ChatbotOption keep_alive 5m\n" \
     "</ChatbotBot>\n"


@pytest.fixture
def two(httpd, fake):
    return httpd(extra=OA.format(url=fake.url))


def _hdrs(rec):
    return {k.lower(): v for k, v in rec["headers"].items()}


def test_openai_wire_format_request_and_thinking(two, fake):
    mark = last_id(fake)

    async def go():
        ws, hello = await connect(two)
        assert {b["id"] for b in hello["bots"]} >= {"oabot", "olbot"}
        frames = await turn(ws, "hi [[fake think=3 tokens=5]]", bot_id="oabot", id="m1")
        await ws.close()
        return frames
    frames = run(go())
    final = frames[-1]
    assert final["type"] == "response", frames
    assert streams(frames) == "t0 t1 t2 t3 t4" == final["content"]
    assert streams(frames, "thinking") == "think0 think1 think2"
    # thinking frames come before the answer and are separate frames
    kinds = [f["type"] for f in frames if f["type"] in ("thinking", "stream")]
    assert kinds == ["thinking"] * 3 + ["stream"] * 5
    assert all(f.get("id") == "m1" for f in frames if f["type"] in ("thinking", "stream"))
    st = final["stats"]
    # usage.completion_tokens counts the reasoning tokens too (3 + 5)
    assert st["backend"] == "oa" and st["tokens"] == 8 and st["done_reason"] == "stop"
    assert st["prompt_tokens"] > 0  # from the usage chunk (include_usage)
    (rec,) = chat_requests_since(fake, mark)
    assert rec["method"] == "POST" and rec["path"] == "/v1/chat/completions"
    assert rec["format"] == "openai"
    body = rec["body"]
    assert body["model"] == "oa-model"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["seed"] == 42
    assert body["max_tokens"] == 64
    assert "options" not in body and "keep_alive" not in body  # Ollama-only fields
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert body["messages"][-1]["role"] == "user"
    h = _hdrs(rec)
    assert h["authorization"] == "Bearer sk-test-123"
    assert h["accept"] == "text/event-stream"
    assert h["content-type"] == "application/json"
    assert "origin" not in h and "expect" not in h and "cookie" not in h
    assert h["host"] == "127.0.0.1:%d" % fake.port


def test_openai_llamacpp_flavour(two, fake):
    """llama.cpp: null first content, ": ping" comments, usage and timings
    in the finish chunk."""
    async def go():
        ws, _ = await connect(two)
        frames = await turn(ws, "x [[fake flavor=llamacpp tokens=6 done_reason=length]]",
                            bot_id="oabot")
        await ws.close()
        return frames
    frames = run(go())
    final = frames[-1]
    assert final["type"] == "response", frames
    assert final["content"] == streams(frames) == "t0 t1 t2 t3 t4 t5"
    assert final["interrupted"] is False
    st = final["stats"]
    assert st["done_reason"] == "length"
    assert st["tokens"] == 6
    assert st["tokens_per_sec"] > 0  # timings.predicted_per_second
    assert st["eval_ms"] >= 0


def test_ollama_request_options_fixed_num_ctx_keep_alive(two, fake):
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(two)
        a = await turn(ws, "first [[fake think=2 tokens=3]]", bot_id="olbot")
        conv = a[-1]["conversation_id"]
        b = await turn(ws, "second " + "x" * 3000, bot_id="olbot", conversation_id=conv)
        await ws.close()
        return a, b
    a, b = run(go())
    assert a[-1]["type"] == "response" and b[-1]["type"] == "response"
    assert streams(a, "thinking") == "think0 think1"
    assert a[-1]["content"] == "t0 t1 t2"
    reqs = chat_requests_since(fake, mark)
    assert [r["path"] for r in reqs] == ["/api/chat", "/api/chat"]
    for r in reqs:
        body = r["body"]
        assert body["model"] == "ol-model" and body["stream"] is True
        assert body["keep_alive"] == "5m"
        # the same num_ctx every time: a change would make Ollama reload the model
        assert body["options"] == {"temperature": 0.2, "top_k": 30, "num_ctx": 16384}
        h = _hdrs(r)
        assert h["accept"] == "application/x-ndjson"
        assert "authorization" not in h and "origin" not in h and "cookie" not in h
        # a body over 1 KiB: curl would add "Expect: 100-continue" by itself
        assert "expect" not in h
    assert len(json.dumps(reqs[1]["body"])) > 3000
    # the first answer went back as context (the thinking did not)
    msgs = reqs[1]["body"]["messages"]
    assert {"role": "assistant", "content": "t0 t1 t2"} in msgs


def test_ollama_done_line_with_content_and_stats(two, fake):
    async def go():
        ws, _ = await connect(two)
        frames = await turn(ws, "[[fake tokens=4 last_has_content=1 done_reason=length]]",
                            bot_id="olbot")
        await ws.close()
        return frames
    frames = run(go())
    final = frames[-1]
    assert final["content"] == streams(frames) == "t0 t1 t2 t3"
    st = final["stats"]
    assert st["tokens"] == 4 and st["done_reason"] == "length"
    assert st["model"] == "ol-model"
    assert st["eval_ms"] > 0 and st["tokens_per_sec"] > 0
    # tokens/s is eval_count / eval_duration
    assert st["tokens_per_sec"] == pytest.approx(4 / (st["eval_ms"] / 1000.0), rel=0.01)
    assert st["ttft_ms"] >= 0 and st["duration_ms"] >= st["ttft_ms"]


def test_stats_in_final_frame_and_access_log_notes(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off")

    async def go():
        ws, _ = await connect(s)
        frames = await turn(ws, "[[fake tokens=7 first_delay_ms=120]]")
        await ws.close()
        return frames
    final = run(go())[-1]
    st = final["stats"]
    assert st["tokens"] == 7 and st["done_reason"] == "stop" and st["backend"] == "default"
    assert st["ttft_ms"] >= 100
    assert st["tokens_per_sec"] > 0 and st["prompt_tokens"] > 0
    end = time.time() + 3
    line = None
    while time.time() < end and not line:
        lines = [l for l in s.access_lines() if "GET /ws " in l]
        line = lines[-1] if lines else None
        time.sleep(0.05)
    assert line, "no access log line"
    assert "tokens=7 " in line
    ttft = int(line.split("ttft_ms=")[1].split()[0])
    assert abs(ttft - st["ttft_ms"]) <= 1


# ---- Stop and vanished clients --------------------------------------------------------

def test_stop_closes_upstream_within_100ms(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        await ws.send(json.dumps({"type": "message", "id": "s1",
                                  "content": "[[fake tokens=400 delay_ms=30]]"}))
        frames = []
        for _ in range(3):
            await wait_for(ws, lambda m: m.get("type") == "stream", frames=frames)
        t_stop = time.time()
        await ws.send(json.dumps({"type": "stop"}))
        final = await wait_for(ws, lambda m: m.get("type") in ("response", "error"),
                               frames=frames)
        h = await history(ws, final["conversation_id"])
        await ws.close()
        return t_stop, frames, final, h
    t_stop, frames, final, h = run(go())
    assert final["type"] == "response" and final["interrupted"] is True
    assert final["stats"]["done_reason"] == "stopped"
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["outcome"] == "client_closed"
    assert rec["client_closed_at"] is not None
    took = rec["client_closed_at"] - t_stop
    assert 0 <= took < 0.1, "upstream closed %.3f s after Stop" % took
    assert rec["tokens_sent"] < 400
    # history keeps the partial answer, marked interrupted
    last = h["messages"][-1]
    assert last["role"] == "assistant" and last["interrupted"] is True
    assert last["streaming"] is False
    assert last["content"] == final["content"] == streams(frames)
    assert wait_no_sockets(s, fake.port) == []


def _close_abruptly(ws):
    """Drops the TCP connection without a close frame (a vanished client)."""
    sock = ws.transport.get_extra_info("socket")
    import socket as _s
    sock.setsockopt(_s.SOL_SOCKET, _s.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.transport.abort()


@pytest.mark.parametrize("how", ["tcp_drop", "close_frame"])
def test_vanished_client_closes_upstream_when_not_continuing(httpd, fake, how):
    s = httpd(extra="ChatbotRateLimit off\nChatbotContinueWithoutViewer off")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        await ws.send(json.dumps({"type": "message", "content": "[[fake tokens=400 delay_ms=30]]"}))
        for _ in range(3):
            await wait_for(ws, lambda m: m.get("type") == "stream")
        t_gone = time.time()
        if how == "tcp_drop":
            _close_abruptly(ws)
        else:
            await ws.close()
        return t_gone
    t_gone = run(go())
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["outcome"] == "client_closed"
    took = rec["client_closed_at"] - t_gone
    # at once: the next token write (30 ms apart) or the client socket's
    # error ends it; 0.3 s leaves room for a busy 2-core machine, far under
    # the 1 s pings or timeouts that a missed drop would wait for
    assert 0 <= took < 0.3, "upstream closed %.3f s after the client left" % took
    assert wait_no_sockets(s, fake.port) == []


@pytest.mark.parametrize("how", ["tcp_drop", "close_frame", "close_frame_tls"])
def test_vanished_client_answer_completes_into_history(httpd, fake, how):
    """ChatbotContinueWithoutViewer on (the default): the answer goes on to
    the end and is stored whole; a reconnecting client finds it."""
    s = httpd(extra="ChatbotRateLimit off")
    sid = new_sid()
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s, sid=sid, tls=how.endswith("tls"))
        await ws.send(json.dumps({"type": "message", "content": "[[fake tokens=30 delay_ms=30]]"}))
        ack = await wait_for(ws, lambda m: m.get("type") == "ack")
        await wait_for(ws, lambda m: m.get("type") == "stream")
        if how == "tcp_drop":
            _close_abruptly(ws)
        else:
            t0 = time.time()
            await ws.close()
            # the server ends TCP at once, though it goes on generating
            assert time.time() - t0 < 1.0
        return ack["conversation_id"]
    conv = run(go())
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"], timeout=10)
    assert rec["outcome"] == "complete" and rec["tokens_sent"] == 30

    async def back():
        ws, _ = await connect(s, sid=sid)
        h = await history(ws, conv)
        await ws.close()
        return h
    time.sleep(0.2)
    h = run(back())
    last = h["messages"][-1]
    assert last["role"] == "assistant"
    assert last["content"] == " ".join("t%d" % i for i in range(30))
    assert last["interrupted"] is False and last["streaming"] is False
    assert wait_no_sockets(s, fake.port) == []
    wait_idle(s)


# ---- connection handling -----------------------------------------------------------------

def test_keepalive_reused_but_not_after_an_aborted_transfer(httpd, fake):
    """A complete answer leaves the backend connection reusable; one that
    was cut (Stop, drop, timeout) is never reused."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotTokenTimeout 1s")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        out = []
        out.append(await turn(ws, "a [[fake tokens=3]]"))
        out.append(await turn(ws, "b [[fake tokens=3]]"))
        await ws.send(json.dumps({"type": "message", "content": "c [[fake tokens=300 delay_ms=20]]"}))
        await wait_for(ws, lambda m: m.get("type") == "stream")
        await ws.send(json.dumps({"type": "stop"}))
        out.append(await collect(ws))
        out.append(await turn(ws, "d [[fake tokens=3]]"))
        out.append(await turn(ws, "e [[fake fault=hang_mid after=2]]"))
        out.append(await turn(ws, "f [[fake tokens=3]]"))
        out.append(await turn(ws, "g [[fake fault=drop after=2]]"))
        out.append(await turn(ws, "h [[fake tokens=3]]"))
        await ws.close()
        return out
    out = run(go())
    kinds = [o[-1].get("code") or o[-1]["type"] for o in out]
    assert kinds == ["response", "response", "response", "response", "backend_timeout",
                     "response", "interrupted", "response"]
    reqs = chat_requests_since(fake, mark)
    peers = [r["peer"] for r in reqs]
    assert len(peers) == 8
    assert peers[1] == peers[0]          # keep-alive after a complete answer
    assert peers[3] != peers[2]          # not after a Stop
    assert peers[5] != peers[4]          # not after a token timeout
    assert peers[7] != peers[6]          # not after a drop
    assert wait_no_sockets(s, fake.port) == []


def test_request_thread_never_blocks(httpd, fake):
    """While a turn waits for headers, the connection still answers at once."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotFirstTokenTimeout 3s")

    async def go():
        ws, _ = await connect(s)
        await ws.send(json.dumps({"type": "message", "content": "[[fake fault=hang_headers]]"}))
        await wait_for(ws, lambda m: m.get("type") == "ack")
        lat = []
        for _ in range(5):
            lat.append(await ping(ws))
            await asyncio.sleep(0.1)
        final = await collect(ws, timeout=10)
        await ws.close()
        return lat, final
    lat, final = run(go())
    assert max(lat) < 0.25, lat  # milliseconds really; slack for a loaded machine
    assert final[-1]["type"] == "error" and final[-1]["code"] == "backend_timeout"
