"""Helpers of the fake backend's self-tests (tests/fake_backend/test_*.py):
the fake backend as a subprocess with its control API (Fake), raw HTTP
requests over sockets, a strict response parser (status line, header
order, chunked framing), NDJSON/SSE readers and the shapes in
tests/vectors/ollama/, and the fixtures `server` and `fake`.

A module of its own, and no conftest.py in this directory: integration
tests do `from conftest import`, and with two conftest modules in one
pytest session that finds whichever pytest loaded last.
"""

import http.client
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "fake_backend.py")
VECTORS = os.path.join(HERE, "..", "vectors", "ollama")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable

CREATED_AT_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")
DATE_RE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")


# ---------------------------------------------------------------------------
# Server processes


class Fake:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="fake_backend_test_")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [PYTHON, FAKE, "--port", "0", "--port-file", self.port_file] + list(args),
            stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            assert self.proc.poll() is None, "fake backend exited: " + self.stderr()
            assert time.monotonic() < deadline, "no port file"
            time.sleep(0.02)
        with open(self.port_file) as f:
            self.port = int(f.read().strip())

    def stderr(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(10)
        self.log.close()
        return rc

    # control API helpers
    def control(self, method, path, obj=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps(obj).encode() if obj is not None else None
        c.request(method, path, body=body,
                  headers={"Content-Type": "application/json"} if body else {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data)

    def script(self, *scripts):
        status, body = self.control("POST", "/_fake/script", list(scripts))
        assert status == 200, body
        return body

    def requests(self):
        return self.control("GET", "/_fake/requests")[1]

    def last(self, path=None):
        """The latest recorded request, once it has ended."""
        recs = [r for r in self.requests() if path is None or r["path"] == path]
        return self.wait_closed(recs[-1]["id"])

    def wait_closed(self, rid, timeout=5):
        status, rec = self.control("GET", "/_fake/requests?wait_closed=%d&timeout=%s"
                                   % (rid, timeout))
        assert status == 200, rec
        return rec


# ---------------------------------------------------------------------------
# Raw HTTP


# ---- fixtures (imported by the test files that use them: one conftest.py,
# tests/integration's, is all pytest sees, whatever the order of the paths
# it is given)

@pytest.fixture(scope="module")
def server():
    """One fake backend per test file (--token-delay-ms 1)."""
    srv = Fake("--token-delay-ms", "1")
    yield srv
    assert srv.stop() == 0
    log = srv.stderr()
    assert "Traceback" not in log, log


@pytest.fixture
def fake(server):
    """The test file's fake backend, with no queued scripts and no records."""
    status, _ = server.control("POST", "/_fake/reset")
    assert status == 200
    return server


def http_request(method, path, body=None, headers=None, close=True, version="HTTP/1.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"]
    if body is not None:
        lines.append("Content-Type: application/json")
        lines.append("Content-Length: %d" % len(body))
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def read_all(sock):
    out = b""
    while True:
        try:
            d = sock.recv(65536)
        except ConnectionResetError:
            return out, "reset"
        if not d:
            return out, "eof"
        out += d


def close_rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def exchange(port, method, path, body=None, headers=None):
    """One request with Connection: close; returns the raw response bytes."""
    s = connect(port)
    s.sendall(http_request(method, path, body, headers))
    data, _ = read_all(s)
    s.close()
    return data


class Resp:
    pass


def parse_response(buf, head_only=False):
    """Parse one HTTP/1.1 response strictly. Returns (Resp, leftover)."""
    head, sep, rest = buf.partition(b"\r\n\r\n")
    assert sep, "no end of headers in %r" % buf[:200]
    lines = head.decode("latin-1").split("\r\n")
    m = re.fullmatch(r"HTTP/1\.1 (\d{3}) ([A-Za-z -]+)", lines[0])
    assert m, lines[0]
    r = Resp()
    r.status, r.reason = int(m.group(1)), m.group(2)
    r.header_list = []
    for line in lines[1:]:
        k, sep2, v = line.partition(": ")
        assert sep2 and k and v == v.strip(), line
        r.header_list.append((k, v))
    r.headers = {k.lower(): v for k, v in r.header_list}
    assert DATE_RE.match(r.headers["date"]), r.headers["date"]
    r.chunks = None
    r.complete = True
    if head_only:
        r.body = b""
        return r, rest
    if "transfer-encoding" in r.headers:
        assert r.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in r.headers
        r.chunks = []
        r.complete = False
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                break
            size_s = rest[pos:eol].decode("latin-1")
            assert re.fullmatch(r"0|[1-9a-f][0-9a-f]*", size_s), "bad chunk size %r" % size_s
            size = int(size_s, 16)
            if size == 0:
                assert rest[eol + 2:eol + 4] == b"\r\n", "trailers or garbage after last chunk"
                r.complete = True
                pos = eol + 4
                break
            if len(rest) < eol + 2 + size + 2:
                break
            data = rest[eol + 2:eol + 2 + size]
            assert rest[eol + 2 + size:eol + 4 + size] == b"\r\n", "chunk not followed by CRLF"
            r.chunks.append(data)
            pos = eol + 4 + size
        r.body = b"".join(r.chunks)
        if not r.complete:
            r.tail = rest[pos:]
            pos = len(rest)
        return r, rest[pos:]
    if "content-length" in r.headers:
        n = int(r.headers["content-length"])
        assert len(rest) >= n, "short body"
        r.body = rest[:n]
        return r, rest[n:]
    r.body = rest
    return r, b""


def parse_one(buf, head_only=False):
    r, left = parse_response(buf, head_only)
    assert left == b"", "bytes after the response: %r" % left[:100]
    return r


def ndjson_lines(resp):
    """Each chunk must be exactly one NDJSON line."""
    out = []
    for c in resp.chunks:
        assert c.endswith(b"\n") and c.count(b"\n") == 1, "chunk is not one line: %r" % c[:120]
        out.append(json.loads(c))
    return out


def ndjson_lines_any(resp):
    """Lines of a stream whose chunks may split lines."""
    return [json.loads(x) for x in resp.body.split(b"\n") if x]


def sse_events(resp):
    """SSE events ("data: ...\\n\\n") from a stream body; comments kept as ':' items."""
    text = resp.body.decode("utf-8")
    assert text.endswith("\n\n") or not text
    out = []
    for block in text.split("\n\n")[:-1]:
        assert "\n" not in block, block
        if block.startswith(":"):
            out.append(":")
            continue
        assert block.startswith("data: "), block
        data = block[6:]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def load_vector(name):
    with open(os.path.join(VECTORS, name), "rb") as f:
        return f.read()


def vector_lines(name):
    return [json.loads(x) for x in load_vector(name).splitlines() if x.strip()]


def vector_events(name):
    out = []
    for block in load_vector(name).decode().split("\n\n"):
        if not block:
            continue
        if block.startswith(":"):
            out.append(":")
        elif block[6:] == "[DONE]":
            out.append("[DONE]")
        else:
            out.append(json.loads(block[6:]))
    return out


def shape(v):
    """Key order and value types, recursively."""
    if isinstance(v, dict):
        return [(k, shape(x)) for k, x in v.items()]
    if isinstance(v, list):
        return [shape(x) for x in v]
    return type(v).__name__


def chat_body(text, model="llama3.2:latest", **kw):
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    body.update(kw)
    return body


def chat(port, text, path="/api/chat", **kw):
    return parse_one(exchange(port, "POST", path, chat_body(text, **kw)))


def contents(lines):
    return [ln["message"]["content"] for ln in lines]


def check_ollama_stream(resp, model="llama3.2:latest"):
    assert resp.status == 200
    assert resp.header_list[0] == ("Content-Type", "application/x-ndjson")
    assert [k for k, _ in resp.header_list] == ["Content-Type", "Date", "Connection",
                                                "Transfer-Encoding"]
    assert resp.complete
    lines = ndjson_lines(resp)
    token_shape = shape(vector_lines("chat_stream.ndjson")[0])
    done_shape = shape(vector_lines("chat_stream.ndjson")[-1])
    for ln in lines[:-1]:
        assert shape(ln) == token_shape, ln
        assert ln["model"] == model
        assert CREATED_AT_RE.match(ln["created_at"]), ln["created_at"]
    done = lines[-1]
    assert shape(done) == done_shape, done
    assert CREATED_AT_RE.match(done["created_at"])
    assert done["total_duration"] >= done["eval_duration"] > 0
    assert done["load_duration"] > 0 and done["prompt_eval_duration"] > 0
    return lines
