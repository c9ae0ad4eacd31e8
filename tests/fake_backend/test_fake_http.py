"""Self-tests of the fake backend's HTTP/1.1 side: keep-alive with a real
client, raw pipelining, Expect: 100-continue, chunked request bodies,
HTTP/1.0 without chunking, a bad request line, and the log line written
for each request.
"""

import http.client
import json
import re

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import (chat_body, connect, contents, http_request, ndjson_lines, parse_one,
                      parse_response, read_all)


def test_keep_alive_http_client(fake):
    c = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    seen = []
    for path, body in (("/api/tags", None), ("/api/chat", chat_body("one")),
                       ("/v1/chat/completions", chat_body("two", stream=True)),
                       ("/api/chat", chat_body("three", stream=False)), ("/", None)):
        c.request("POST" if body else "GET", path,
                  body=json.dumps(body) if body else None)
        r = c.getresponse()
        seen.append((r.status, r.read()))
    c.close()
    assert [s for s, _ in seen] == [200] * 5
    assert b"Echo:" in seen[1][1] and b"[DONE]" in seen[2][1]
    peers = {r["peer"] for r in fake.requests()}
    assert len(peers) == 1


def test_keep_alive_raw_pipelined(fake):
    s = connect(fake.port)
    reqs = (http_request("POST", "/api/chat", chat_body("a"), close=False) +
            http_request("GET", "/api/version", close=False) +
            http_request("POST", "/api/chat", chat_body("b", stream=False), close=True))
    s.sendall(reqs)
    data, _ = read_all(s)
    s.close()
    r1, rest = parse_response(data)
    r2, rest = parse_response(rest)
    r3, rest = parse_response(rest)
    assert rest == b""
    assert contents(ndjson_lines(r1)) == ["Echo:", " a", ""]
    assert r2.body == b'{"version":"0.12.6"}'
    assert json.loads(r3.body)["message"]["content"] == "Echo: b"
    assert r3.headers["connection"] == "close" and "connection" not in r1.headers


def test_expect_100_continue_and_chunked_request(fake):
    body = json.dumps(chat_body("long " * 400 + "[[fake delay_ms=0]]", stream=False)).encode()
    s = connect(fake.port)
    head = ("POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n" % len(body)).encode()
    s.sendall(head)
    assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(body)
    data, _ = read_all(s)
    s.close()
    assert json.loads(parse_one(data).body)["message"]["content"].startswith("Echo: long long")
    body = json.dumps(chat_body("chunked", stream=False)).encode()
    raw = (b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + b"%x\r\n%s\r\n" % (5, body[:5]) +
           b"%x\r\n%s\r\n0\r\n\r\n" % (len(body) - 5, body[5:]))
    s = connect(fake.port)
    s.sendall(raw)
    data, _ = read_all(s)
    s.close()
    assert json.loads(parse_one(data).body)["message"]["content"] == "Echo: chunked"


def test_http10_stream_without_chunking(fake):
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat", chat_body("old"), close=False,
                           version="HTTP/1.0"))
    data, how = read_all(s)
    s.close()
    r = parse_one(data)
    assert r.chunks is None and how == "eof"
    assert [json.loads(x)["message"]["content"] for x in r.body.splitlines()] == [
        "Echo:", " old", ""]


def test_bad_request_line(fake):
    s = connect(fake.port)
    s.sendall(b"NONSENSE\r\n\r\n")
    data, _ = read_all(s)
    r = parse_one(data)
    assert r.status == 400 and r.headers["connection"] == "close"


# ---------------------------------------------------------------------------
# The log (after the tests above, which wrote to it)


def test_log_line_per_request(server):
    log = server.stderr()
    assert re.search(r"fake_backend: 127\.0\.0\.1:\d+ #\d+ POST /api/chat 200 complete "
                     r"tokens=\d+ [\d.]+ms", log)
    assert "Traceback" not in log
