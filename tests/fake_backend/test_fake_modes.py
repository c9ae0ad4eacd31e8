"""Self-tests of the fake backend's command-line modes and process
behaviour, each with a server of its own: --strict-models,
--token-delay-ms timing, --demo, --bench, --path-prefix, and a clean exit
on SIGTERM or SIGINT in the middle of a stream.
"""

import http.client
import json
import os
import re
import signal
import time

import pytest

from fakeutil import (Fake, chat, chat_body, check_ollama_stream, connect, contents, exchange,
                      http_request, ndjson_lines, parse_one, sse_events)


def test_strict_models():
    srv = Fake("--token-delay-ms", "0", "--strict-models", "--models", "a:latest,b:1b")
    try:
        assert chat(srv.port, "hi", model="a").status == 200
        assert chat(srv.port, "hi", model="b:1b").status == 200
        r = chat(srv.port, "hi", model="c")
        assert r.status == 404 and json.loads(r.body) == {"error": "model 'c' not found"}
        tags = json.loads(parse_one(exchange(srv.port, "GET", "/api/tags")).body)["models"]
        assert [t["name"] for t in tags] == ["a:latest", "b:1b"]
        assert tags[1]["details"]["parameter_size"] == "1B"
    finally:
        assert srv.stop() == 0


def test_timing_is_plausible():
    srv = Fake("--token-delay-ms", "40")
    try:
        t0 = time.monotonic()
        r = chat(srv.port, "a b c d")
        wall = time.monotonic() - t0
        done = ndjson_lines(r)[-1]
        # 4 tokens + the done line, 40 ms apart
        assert 0.15 <= wall < 1.5
        assert 150_000_000 <= done["eval_duration"] <= done["total_duration"] <= wall * 1e9
        stamps = [ln["created_at"] for ln in ndjson_lines(r)]
        assert stamps == sorted(stamps)
    finally:
        assert srv.stop() == 0


def test_demo_mode():
    srv = Fake("--demo", "--token-delay-ms", "0")
    try:
        r = chat(srv.port, "hello there")
        text = "".join(contents(ndjson_lines(r)))
        assert text.startswith("(demo backend: canned reply, not a model) You said: \"hello there\".")
        assert "```" not in text
        r = chat(srv.port, "show me some code " + "x" * 200, stream=False)
        text = json.loads(r.body)["message"]["content"]
        assert "```python\n" in text and text.rstrip().endswith("```")
        assert "You said: \"show me some code " + "x" * 59 + "...\"." in text
        r = chat(srv.port, "[[fake reply=scripted]]", stream=False)
        assert json.loads(r.body)["message"]["content"] == "scripted"
        assert srv.control("GET", "/_fake/info")[1]["demo"] is True
    finally:
        assert srv.stop() == 0


def test_bench_mode():
    srv = Fake("--bench", "--bench-tokens", "50")
    try:
        r = chat(srv.port, "x")
        lines = ndjson_lines(r)
        assert len(lines) == 51 and lines[-1]["eval_count"] == 50
        assert contents(lines)[:3] == ["t0", " t1", " t2"]
        check_ollama_stream(r)
        r = chat(srv.port, "x", path="/v1/chat/completions", stream=True)
        assert len(sse_events(r)) == 52
        # keep-alive throughput: 200 streamed answers quickly, one read each
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        body = json.dumps(chat_body("x"))
        t0 = time.monotonic()
        for _ in range(200):
            c.request("POST", "/api/chat", body=body)
            resp = c.getresponse()
            assert resp.read().count(b"\n") == 51
        assert time.monotonic() - t0 < 10
        c.close()
        assert "POST /api/chat" not in srv.stderr()   # --bench is quiet
    finally:
        assert srv.stop() == 0


def test_path_prefix():
    srv = Fake("--token-delay-ms", "0", "--path-prefix", "/ollama/")
    try:
        r = chat(srv.port, "hi", path="/ollama/api/chat")
        assert r.status == 200 and contents(ndjson_lines(r))[0] == "Echo:"
        assert parse_one(exchange(srv.port, "GET", "/ollama/api/version")).status == 200
        r = parse_one(exchange(srv.port, "POST", "/api/chat", chat_body("hi")))
        assert r.status == 404 and r.body == b"404 page not found"
        assert srv.requests()[-1]["target"] == "/api/chat"
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_cleanly_during_stream(sig):
    srv = Fake("--token-delay-ms", "0")
    s = connect(srv.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake fault=hang_headers]]")))
    time.sleep(0.1)
    srv.proc.send_signal(sig)
    assert srv.stop() == 0
    s.close()
    log = srv.stderr()
    assert "Traceback" not in log and "shutting down" in log
    assert not os.path.exists(srv.port_file)
    assert re.search(r"#1 POST /api/chat", log) is None  # still hanging when stopped
    assert "listening on 127.0.0.1:%d" % srv.port in log
