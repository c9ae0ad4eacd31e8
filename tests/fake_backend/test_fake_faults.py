"""Self-tests of the fake backend's faults in both wire formats (status=,
refuse, hangs, slow, drops, error lines, garbage, invalid JSON, huge
lines, wrong content type, no done line, empty body, first_delay_ms,
split_utf8), and how soon a client that closes or resets is seen.
"""

import json
import socket
import time

import pytest

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import (chat, chat_body, close_rst, connect, contents, http_request, ndjson_lines,
                      ndjson_lines_any, parse_one, parse_response, read_all, shape, sse_events,
                      vector_lines)


# ---------------------------------------------------------------------------
# Answers that fail before the first token


@pytest.mark.parametrize("status,body", [
    (503, '{"error":"server busy, please try again.  maximum pending requests exceeded"}'),
    (404, '{"error":"model \'llama3.2:latest\' not found"}'),
    (400, '{"error":"\\"llama3.2:latest\\" does not support chat"}'),
    (500, '{"error":"llama runner process has terminated: exit status 2"}'),
    (429, '{"error":"too many requests"}'),
])
def test_fault_status(fake, status, body):
    r = chat(fake.port, "x [[fake status=%d]]" % status)
    assert r.status == status and r.body == body.encode()
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert fake.last()["outcome"] == "fault:status"


def test_fault_status_openai_and_custom_error(fake):
    r = chat(fake.port, "[[fake status=503]]", path="/v1/chat/completions", stream=True)
    assert r.status == 503
    assert json.loads(r.body) == {"error": {
        "message": "server busy, please try again.  maximum pending requests exceeded",
        "type": "api_error", "param": None, "code": None}}
    r = chat(fake.port, "[[fake status=500 error=boom%20now]]")
    assert json.loads(r.body) == {"error": "boom now"}


def test_fault_refuse(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake fault=refuse]]")))
    data, how = read_all(s)
    assert data == b"" and how == "reset"
    s.close()
    assert fake.last()["outcome"] == "fault:refuse"


def test_fault_wrong_content_type(fake):
    r = chat(fake.port, "[[fake fault=wrong_content_type]]")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.body.startswith(b"<!DOCTYPE html>")


def test_fault_empty(fake):
    r = chat(fake.port, "[[fake fault=empty]]")
    assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "0"
    assert r.headers["content-type"] == "application/x-ndjson"


def test_first_delay_ms_holds_the_headers(fake):
    s = connect(fake.port)
    t0 = time.monotonic()
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake first_delay_ms=300]]")))
    first = s.recv(65536)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.29
    # headers and the first line travel together, as with Go's net/http
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b'"content":"Echo:"' in first
    data, _ = read_all(s)
    s.close()
    done = ndjson_lines(parse_one(first + data))[-1]
    assert done["load_duration"] >= 290_000_000


# ---------------------------------------------------------------------------
# A client that closes or resets


def test_fault_hang_headers_and_close_detection(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake fault=hang_headers]]")))
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(1)
    rid = fake.requests()[-1]["id"]
    t_close = time.time()
    s.close()
    rec = fake.wait_closed(rid)
    assert rec["outcome"] == "client_closed" and rec["status"] is None
    assert 0 <= rec["client_closed_at"] - t_close < 0.1
    assert rec["t_first_token"] is None


def test_fault_hang_mid_and_rst_detection(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake fault=hang_mid after=2 tokens=5]]")))
    buf = b""
    while buf.count(b'"done":false') < 2:
        buf += s.recv(65536)
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(1)
    rid = fake.requests()[-1]["id"]
    t_close = time.time()
    close_rst(s)
    rec = fake.wait_closed(rid)
    assert rec["outcome"] == "client_closed" and rec["tokens_sent"] == 2
    assert 0 <= rec["client_closed_at"] - t_close < 0.1


@pytest.mark.parametrize("path,stream", [("/api/chat", True), ("/v1/chat/completions", True),
                                         ("/api/chat", False)])
def test_client_close_mid_stream_detected_within_100ms(fake, path, stream):
    seen = {r["id"] for r in fake.requests()}
    s = connect(fake.port)
    s.sendall(http_request("POST", path, chat_body("[[fake tokens=50 delay_ms=500]]",
                                                   stream=stream)))
    if stream:
        buf = b""
        while b"t0" not in buf:
            buf += s.recv(65536)
    # (not streamed: nothing comes back to wait for) the fake has taken
    # this request in once it is recorded (bounded wait)
    end = time.time() + 5
    mine = []
    while not mine and time.time() < end:
        mine = [r["id"] for r in fake.requests() if r["id"] not in seen]
        time.sleep(0 if mine else 0.01)
    assert mine, "the fake never recorded the request"
    rid = mine[-1]
    time.sleep(0.05)
    t_close = time.time()
    s.close()
    rec = fake.wait_closed(rid)
    assert rec["outcome"] == "client_closed"
    assert 0 <= rec["client_closed_at"] - t_close < 0.1
    assert rec["t_end"] - t_close < 0.1
    assert rec["tokens_sent"] == (1 if stream else 0)


def test_client_vanishing_during_a_big_write(fake):
    s = connect(fake.port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(http_request("POST", "/api/chat",
                           chat_body("[[fake fault=huge_line after=1 huge_kb=200000]]")))
    assert s.recv(1000).startswith(b"HTTP/1.1 200 OK")
    time.sleep(0.1)
    rid = fake.requests()[-1]["id"]
    close_rst(s)
    rec = fake.wait_closed(rid)
    assert rec["outcome"] == "client_closed" and rec["client_closed_at"] is not None
    # the server carries on
    assert contents(ndjson_lines(chat(fake.port, "still here"))) == ["Echo:", " still", " here", ""]


# ---------------------------------------------------------------------------
# Faults in the middle of an answer


def test_fault_slow(fake):
    t0 = time.monotonic()
    r = chat(fake.port, "[[fake fault=slow tokens=2 delay_ms=150]]")
    assert time.monotonic() - t0 >= 0.3
    assert contents(ndjson_lines(r)) == ["t0", " t1", ""]
    assert fake.last()["outcome"] == "fault:slow"
    done = ndjson_lines(r)[-1]
    assert done["eval_duration"] >= 290_000_000 and done["total_duration"] >= done["eval_duration"]


@pytest.mark.parametrize("fault,how", [("drop", "eof"), ("drop_rst", "reset")])
def test_fault_drop(fake, fault, how):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat",
                           chat_body("[[fake fault=%s after=3 tokens=5]]" % fault)))
    data, got = read_all(s)
    s.close()
    assert got == how
    r, _ = parse_response(data)
    assert r.status == 200 and not r.complete and r.tail == b""
    assert contents(ndjson_lines(r)) == ["t0", " t1", " t2"]
    rec = fake.last()
    assert rec["outcome"] == "fault:" + fault and rec["tokens_sent"] == 3


def test_fault_drop_after_zero_sends_headers_only(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("[[fake fault=drop after=0]]")))
    data, how = read_all(s)
    r, _ = parse_response(data)
    assert r.status == 200 and r.chunks == [] and not r.complete


def test_fault_error_line_ollama(fake):
    r = chat(fake.port, "[[fake reply=Partial%20answer%20never fault=error_line after=2]]",
             model="llama3.2")
    assert r.status == 200 and r.complete
    lines = ndjson_lines(r)
    vec = vector_lines("chat_stream_midstream_error.ndjson")
    assert [shape(x) for x in lines] == [shape(x) for x in vec]
    assert contents(lines[:2]) == ["Partial", " answer"]
    assert lines[2] == vec[2]
    assert fake.last()["outcome"] == "fault:error_line"


def test_fault_error_line_openai_and_nostream(fake):
    r = chat(fake.port, "[[fake fault=error_line after=1 error=too%20long]]",
             path="/v1/chat/completions", stream=True)
    assert r.complete
    ev = sse_events(r)
    assert len(ev) == 2 and "[DONE]" not in ev
    assert ev[1] == {"error": {"message": "too long", "type": "api_error", "param": None,
                               "code": None}}
    r = chat(fake.port, "[[fake fault=error_line after=1]]", stream=False)
    assert r.status == 500 and json.loads(r.body) == vector_lines(
        "chat_stream_midstream_error.ndjson")[2]


def test_fault_garbage(fake):
    r = chat(fake.port, "[[fake fault=garbage after=1 tokens=2]]")
    assert r.complete and r.chunks[1] == b"this is not json\n"
    assert [json.loads(c)["message"]["content"] for c in r.chunks[0:1] + r.chunks[2:3]] == [
        "t0", " t1"]
    assert json.loads(r.chunks[-1])["done"] is True
    r = chat(fake.port, "[[fake fault=garbage after=0]]", path="/v1/chat/completions",
             stream=True)
    assert r.chunks[0] == b"data: this is not json\n\n"


def test_fault_invalid_json(fake):
    r = chat(fake.port, "[[fake fault=invalid_json after=1]]")
    assert r.complete and len(r.chunks) == 2
    assert r.chunks[1].startswith(b'{"model":') and r.chunks[1].endswith(b"\n")
    with pytest.raises(ValueError):
        json.loads(r.chunks[1])
    r = chat(fake.port, "[[fake fault=invalid_json after=0]]", stream=False)
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(r.body)


def test_fault_huge_line(fake):
    r = chat(fake.port, "[[fake fault=huge_line after=1 huge_kb=300]]")
    assert r.complete
    line = b"".join(r.chunks[1:])
    assert b"\n" not in line and len(line) >= 300 * 1024
    assert line.startswith(b'{"model":"llama3.2:latest","created_at":"')
    r = chat(fake.port, "[[fake fault=huge_line after=0 huge_kb=70]]",
             path="/v1/chat/completions", stream=True)
    assert r.body.startswith(b"data: {") and b"\n" not in r.body
    assert len(r.body) >= 70 * 1024


def test_fault_no_done(fake):
    r = chat(fake.port, "[[fake fault=no_done tokens=2]]")
    assert r.complete
    lines = ndjson_lines(r)
    assert contents(lines) == ["t0", " t1"] and not any(ln["done"] for ln in lines)
    r = chat(fake.port, "[[fake fault=no_done tokens=2]]", path="/v1/chat/completions",
             stream=True, stream_options={"include_usage": True})
    ev = sse_events(r)
    assert len(ev) == 2 and all(e["choices"][0]["finish_reason"] is None for e in ev)
    r = chat(fake.port, "[[fake fault=no_done]]", stream=False)
    assert json.loads(r.body)["done"] is False


def test_split_utf8(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body(
        "[[fake reply=%C3%BC%E6%97%A5%F0%9F%98%80 split_utf8=1]]")))
    pieces = []
    while True:
        d = s.recv(65536)
        if not d:
            break
        pieces.append(d)
    s.close()
    r = parse_one(b"".join(pieces))
    assert contents(ndjson_lines_any(r)) == ["ü日😀", ""]
    # the token line was cut after the lead byte of each multibyte character
    cut = [c for c in r.chunks if c.endswith(b"\xc3") or c.endswith(b"\xe6") or
           c.endswith(b"\xf0")]
    assert len(cut) == 3
    # ...and the pieces went out as separate sends, a few ms apart
    assert len(pieces) >= 2
