"""Self-tests of the fake LLM backend (tests/fake_backend/fake_backend.py).

Run: /usr/bin/python3 -m pytest -q tests/fake_backend

Each server runs as a subprocess on a free port. Responses are read with raw
sockets and parsed strictly (status line, header order, chunked framing), and
every line is compared with the shapes in tests/vectors/ollama/.
"""

import base64
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


@pytest.fixture(scope="module")
def server():
    srv = Fake("--token-delay-ms", "1")
    yield srv
    assert srv.stop() == 0
    log = srv.stderr()
    assert "Traceback" not in log, log


@pytest.fixture
def fake(server):
    status, _ = server.control("POST", "/_fake/reset")
    assert status == 200
    return server


# ---------------------------------------------------------------------------
# Raw HTTP


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


# ---------------------------------------------------------------------------
# Plain endpoints


def test_root_get_and_head(fake):
    r = parse_one(exchange(fake.port, "GET", "/"))
    assert (r.status, r.body) == (200, b"Ollama is running")
    assert [k for k, _ in r.header_list] == ["Content-Type", "Date", "Content-Length", "Connection"]
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    raw = exchange(fake.port, "HEAD", "/")
    r = parse_one(raw, head_only=True)
    assert r.status == 200 and r.headers["content-length"] == "17"
    assert raw.endswith(b"\r\n\r\n")


def test_version_and_tags_match_vectors(fake):
    r = parse_one(exchange(fake.port, "GET", "/api/version"))
    assert r.status == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.body == load_vector("version.json").strip()
    r = parse_one(exchange(fake.port, "GET", "/api/tags"))
    assert r.status == 200
    assert r.body == load_vector("tags.json").strip()


def test_v1_models(fake):
    r = parse_one(exchange(fake.port, "GET", "/v1/models"))
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = json.loads(r.body)
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["qwen2.5-coder:7b", "llama3.2:latest"]
    for m in body["data"]:
        assert shape(m) == [("id", "str"), ("object", "str"), ("created", "int"),
                            ("owned_by", "str")]
        assert m["object"] == "model"
    assert body["data"][0]["created"] == 1760954400   # 2025-10-20T10:00:00Z


def test_unknown_path_and_method(fake):
    for method, path in (("GET", "/nope"), ("GET", "/api/chat"), ("POST", "/api/tags")):
        r = parse_one(exchange(fake.port, method, path, b"" if method == "POST" else None))
        assert (r.status, r.body) == (404, b"404 page not found")
        assert r.headers["content-type"] == "text/plain"


# ---------------------------------------------------------------------------
# /api/chat


def test_ollama_stream_is_default(fake):
    r = chat(fake.port, "hello big world")
    lines = check_ollama_stream(r)
    assert contents(lines) == ["Echo:", " hello", " big", " world", ""]
    done = lines[-1]
    assert done["done"] is True and done["done_reason"] == "stop"
    assert done["eval_count"] == 4
    assert all(ln["done"] is False for ln in lines[:-1])
    rec = fake.last()
    assert rec["outcome"] == "complete" and rec["status"] == 200
    assert rec["tokens_sent"] == 4 and rec["stream"] is True and rec["format"] == "ollama"


def test_ollama_unicode_and_go_escapes(fake):
    text = "Grüße 日本語 😀 <b>&\u2028"
    raw = exchange(fake.port, "POST", "/api/chat", chat_body(text))
    r = parse_one(raw)
    lines = check_ollama_stream(r)
    assert "".join(contents(lines)) == "Echo: " + text
    # Raw UTF-8 as Ollama sends it; <, >, & and U+2028 escaped as Go does.
    assert "Grüße".encode() in r.body and "😀".encode() in r.body
    assert b'" \\u003cb\\u003e\\u0026"' in r.body and b'"\\u2028"' in r.body
    assert b"<b>" not in r.body


def test_ollama_stream_false(fake):
    r = chat(fake.port, "hi there", stream=False)
    assert r.status == 200
    assert [k for k, _ in r.header_list] == ["Content-Type", "Date", "Content-Length", "Connection"]
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert not r.body.endswith(b"\n")
    body = json.loads(r.body)
    assert shape(body) == shape(vector_lines("chat_nostream.json")[0])
    assert body["message"]["content"] == "Echo: hi there"
    assert body["eval_count"] == 3 and body["done"] is True


def test_ollama_thinking(fake):
    r = chat(fake.port, "q [[fake think=3]]")
    lines = ndjson_lines(r)
    vec = vector_lines("chat_stream_thinking.ndjson")
    for ln in lines[:3]:
        assert shape(ln) == shape(vec[0])
    assert [ln["message"]["thinking"] for ln in lines[:3]] == ["think0", " think1", " think2"]
    assert contents(lines[3:]) == ["Echo:", " q", ""]
    assert shape(lines[3]) == shape(vec[2]) and shape(lines[-1]) == shape(vec[-1])
    assert lines[-1]["eval_count"] == 5
    r = chat(fake.port, "q [[fake think=2]]", stream=False)
    msg = json.loads(r.body)["message"]
    assert msg == {"role": "assistant", "content": "Echo: q", "thinking": "think0 think1"}


def test_last_has_content_and_done_reason(fake):
    r = chat(fake.port, "[[fake reply=Hello%20there! last_has_content=1 done_reason=length]]")
    lines = ndjson_lines(r)
    vec = vector_lines("chat_stream_last_has_content.ndjson")
    assert [shape(x) for x in lines] == [shape(x) for x in vec]
    assert contents(lines) == ["Hello", " there!"]
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 2


def test_num_predict_truncates_with_length(fake):
    r = chat(fake.port, "[[fake tokens=10]]", options={"num_predict": 3})
    lines = ndjson_lines(r)
    assert contents(lines) == ["t0", " t1", " t2", ""]
    assert lines[-1]["done_reason"] == "length"


def test_empty_messages_is_a_load_request(fake):
    r = parse_one(exchange(fake.port, "POST", "/api/chat", {"model": "llama3.2", "messages": []}))
    assert r.status == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    body = json.loads(r.body)
    assert body["done"] is True and body["done_reason"] == "load"
    assert body["message"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize("body,message", [
    (b'{"model":"x","messages":[', "unexpected EOF"),
    (b"{'model':1}", "invalid character '\\'' looking for beginning of object key string"),
    (b"hello", "invalid character 'h' looking for beginning of value"),
    (b"", "missing request body"),
    (b'{"model":"x"} x', "invalid character 'x' after top-level value"),
    (b'{"messages":[]}', "model is required"),
    (b'{"model":"x","messages":"hi"}',
     "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"),
    (b'{"model":"x","messages":[1]}',
     "json: cannot unmarshal number into Go struct field ChatRequest.messages of type api.Message"),
    (b'{"model":"x","messages":[{"role":"user","content":[1]}]}',
     "json: cannot unmarshal array into Go struct field Message.messages.content of type string"),
    (b'{"model":"x","messages":[{"content":"hi"}]}', "invalid message format: role is required"),
    (b'{"model":7,"messages":[]}',
     "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"),
    (b'[1]', "json: cannot unmarshal array into Go value of type api.ChatRequest"),
])
def test_ollama_validation(fake, body, message):
    r = parse_one(exchange(fake.port, "POST", "/api/chat", body))
    assert r.status == 400
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(r.body) == {"error": message}


def test_nosuchmodel(fake):
    r = chat(fake.port, "hi", model="nosuchmodel")
    assert r.status == 404 and r.reason == "Not Found"
    assert r.body == load_vector("error_model_not_found.json").strip()
    r = chat(fake.port, "hi", path="/v1/chat/completions", model="nosuchmodel", stream=True)
    assert r.status == 404 and r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"error": {"message": "model 'nosuchmodel' not found",
                                            "type": "not_found_error", "param": None,
                                            "code": None}}


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


# ---------------------------------------------------------------------------
# /v1/chat/completions


def test_openai_stream_with_usage(fake):
    r = chat(fake.port, "hello world", path="/v1/chat/completions", stream=True,
             stream_options={"include_usage": True})
    assert r.status == 200 and r.complete
    assert r.header_list[0] == ("Content-Type", "text/event-stream")
    ev = sse_events(r)
    vec = vector_events("openai_stream.sse")
    assert [shape(e) for e in ev] == [shape(e) for e in vec[:1] * 3 + vec[3:]]
    assert [e["choices"][0]["delta"]["content"] for e in ev[:3]] == ["Echo:", " hello", " world"]
    assert ev[3]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert ev[4]["usage"]["completion_tokens"] == 3
    assert ev[4]["usage"]["total_tokens"] == ev[4]["usage"]["prompt_tokens"] + 3
    assert ev[-1] == "[DONE]"
    assert len({e["id"] for e in ev[:-1]}) == 1
    # finish + usage + [DONE] travel in one chunk, as Ollama flushes them together
    assert r.chunks[-1].startswith(b'data: {') and r.chunks[-1].endswith(b"data: [DONE]\n\n")
    assert all(c.count(b"\n\n") == 1 for c in r.chunks[:-1])


def test_openai_stream_default_false_and_no_usage(fake):
    r = chat(fake.port, "hey", path="/v1/chat/completions")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = json.loads(r.body)
    assert shape(body) == [
        ("id", "str"), ("object", "str"), ("created", "int"), ("model", "str"),
        ("system_fingerprint", "str"),
        ("choices", [[("index", "int"), ("message", [("role", "str"), ("content", "str")]),
                      ("finish_reason", "str")]]),
        ("usage", [("prompt_tokens", "int"), ("completion_tokens", "int"),
                   ("total_tokens", "int")])]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Echo: hey"
    r = chat(fake.port, "hey", path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    assert ev[-1] == "[DONE]" and "usage" not in ev[-2]
    assert ev[-2]["choices"][0]["finish_reason"] == "stop"


def test_openai_content_parts_and_max_tokens(fake):
    body = {"model": "m", "stream": False, "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}]}
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", body))
    choice = json.loads(r.body)["choices"][0]
    assert choice["message"]["content"] == "Echo: a"
    assert choice["finish_reason"] == "length"


def test_openai_thinking_and_last_has_content(fake):
    r = chat(fake.port, "[[fake think=1 reply=a%20b last_has_content=1]]",
             path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                            "reasoning_content": "think0"}
    assert ev[1]["choices"][0]["delta"]["content"] == "a"
    assert ev[2]["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": " b"},
                                   "finish_reason": "stop"}
    assert ev[3] == "[DONE]"
    r = chat(fake.port, "[[fake think=2]]", path="/v1/chat/completions")
    msg = json.loads(r.body)["choices"][0]["message"]
    assert msg["reasoning_content"] == "think0 think1" and msg["content"] == "Echo:"


def test_openai_llamacpp_flavor(fake):
    fake.script({"flavor": "llamacpp", "think": 1, "reply": "Hello world"})
    r = chat(fake.port, "x", path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    vec = vector_events("openai_stream_llamacpp.sse")
    assert [shape(e) for e in ev] == [shape(e) for e in vec]
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert ev[2]["choices"][0]["delta"] == {"reasoning_content": "think0"}
    assert [e["choices"][0]["delta"]["content"] for e in ev[3:5]] == ["Hello", " world"]
    assert ev[5]["usage"]["completion_tokens"] == 3


def test_openai_validation(fake):
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", b"{bad"))
    assert r.status == 400 and r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"error": {
        "message": "invalid character 'b' looking for beginning of object key string",
        "type": "invalid_request_error", "param": None, "code": None}}
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", {"messages": []}))
    assert json.loads(r.body)["error"]["message"] == "model is required"


# ---------------------------------------------------------------------------
# Scripts: inline directives and the control API


def test_directive_reply_escapes_and_b64(fake):
    r = chat(fake.port, "before [[fake reply=Gr%C3%BC%C3%9Fe%20du%20%5B1%5D]] after")
    assert contents(ndjson_lines(r)) == ["Grüße", " du", " [1]", ""]
    b64 = base64.b64encode("line1\nline 2 ✓".encode()).decode()
    r = chat(fake.port, "[[fake reply_b64=%s]]" % b64)
    assert "".join(contents(ndjson_lines(r))) == "line1\nline 2 ✓"
    assert contents(ndjson_lines(r))[:2] == ["line1", "\nline"]


def test_directive_removed_from_echo_and_only_last_user_message(fake):
    body = {"model": "m", "stream": False, "messages": [
        {"role": "user", "content": "old [[fake tokens=3]]"},
        {"role": "assistant", "content": "Echo: old"},
        {"role": "user", "content": "new [[fake delay_ms=0]] text"}]}
    r = parse_one(exchange(fake.port, "POST", "/api/chat", body))
    assert json.loads(r.body)["message"]["content"] == "Echo: new text"
    assert fake.last()["script"] == {"delay_ms": 0}


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


def test_directive_tokens(fake):
    r = chat(fake.port, "[[fake tokens=5]]")
    lines = ndjson_lines(r)
    assert contents(lines) == ["t0", " t1", " t2", " t3", " t4", ""]
    assert lines[-1]["eval_count"] == 5


@pytest.mark.parametrize("directive,err", [
    ("[[fake bogus=1]]", "fake directive: unknown key 'bogus'"),
    ("[[fake fault=nope]]", "fake directive: unknown fault 'nope'"),
    ("[[fake tokens=x]]", "fake directive: tokens: not an integer: 'x'"),
    ("[[fake tokens=3", "fake directive: malformed [[fake ...]] directive"),
    ("[[fake reply=%FF]]", "fake directive: reply: %XX escapes are not UTF-8"),
    ("[[fake reply_b64=***]]", "fake directive: reply_b64: not base64 of UTF-8 text"),
])
def test_directive_errors(fake, directive, err):
    r = chat(fake.port, directive)
    assert r.status == 400 and json.loads(r.body) == {"error": err}


def test_control_script_fifo(fake):
    assert fake.script({"reply": "one"}, {"tokens": 2}, {"reply": "100% raw"})["queued"] == 3
    status, pending = fake.control("GET", "/_fake/scripts")
    assert pending == [{"reply": "one"}, {"tokens": 2}, {"reply": "100% raw"}]
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["one", ""]
    r = chat(fake.port, "x", path="/v1/chat/completions")
    assert json.loads(r.body)["choices"][0]["message"]["content"] == "t0 t1"
    # JSON scripts carry plain text; inline keys override the queued script
    r = chat(fake.port, "[[fake done_reason=length]]", stream=False)
    body = json.loads(r.body)
    assert body["message"]["content"] == "100% raw" and body["done_reason"] == "length"
    assert fake.control("GET", "/_fake/scripts")[1] == []
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["Echo:", " x", ""]


def test_control_script_single_object_and_errors(fake):
    assert fake.control("POST", "/_fake/script", {"tokens": "3"}) == (200, {"queued": 1})
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["t0", " t1", " t2", ""]
    for bad, msg in (([{"nope": 1}], "unknown key 'nope'"), ([{"status": 200}], "status: must be 400..599"),
                     ([{"fault": "x"}], "unknown fault 'x'"), (["str"], "a script must be a JSON object"),
                     ([{"path": "api"}], "path: must start with /"),
                     ([{"path": "/api/tags", "fault": "hang_mid"}],
                      "fault hang_mid applies only to chat requests")):
        assert fake.control("POST", "/_fake/script", bad) == (400, {"error": msg})


def test_control_script_for_other_path(fake):
    fake.script({"path": "/api/tags", "status": 503}, {"path": "/api/version", "fault": "empty"})
    # a chat request does not take a script meant for another path
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["Echo:", " x", ""]
    r = parse_one(exchange(fake.port, "GET", "/api/tags"))
    assert r.status == 503 and r.body == load_vector("error_busy.json").strip()
    r = parse_one(exchange(fake.port, "GET", "/api/version"))
    assert r.status == 200 and r.body == b""
    assert parse_one(exchange(fake.port, "GET", "/api/tags")).status == 200
    assert fake.last("/api/version")["outcome"] == "fault:empty"
    fake.script({"path": "/api/version", "fault": "refuse"},
                {"path": "/", "first_delay_ms": 200, "status": 404})
    s = connect(fake.port)
    s.sendall(http_request("GET", "/api/version"))
    assert read_all(s) == (b"", "reset")
    t0 = time.monotonic()
    r = parse_one(exchange(fake.port, "GET", "/"))
    assert time.monotonic() - t0 >= 0.19
    assert r.status == 404 and json.loads(r.body) == {"error": "not found"}


def test_reset_and_records(fake):
    fake.script({"tokens": 1}, {"tokens": 1})
    chat(fake.port, "hello [[fake delay_ms=20]]", stream=False)
    recs = fake.requests()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["method"] == "POST" and rec["path"] == "/api/chat"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec["body"]["messages"][0]["content"] == "hello [[fake delay_ms=20]]"
    assert rec["model"] == "llama3.2:latest" and rec["stream"] is False
    assert rec["t_start"] <= rec["t_first_token"] <= rec["t_end"]
    assert rec["t_end"] - rec["t_start"] >= 0.015
    assert rec["client_closed_at"] is None and rec["outcome"] == "complete"
    assert rec["script"] == {"tokens": 1, "delay_ms": 20}
    assert fake.control("GET", "/_fake/requests/%d" % rec["id"]) == (200, rec)
    assert fake.control("GET", "/_fake/requests/999999")[0] == 404
    assert fake.control("POST", "/_fake/reset") == (200, {"ok": True})
    assert fake.requests() == [] and fake.control("GET", "/_fake/scripts")[1] == []
    # ids keep growing across resets
    chat(fake.port, "x")
    assert fake.requests()[0]["id"] > rec["id"]
    status, info = fake.control("GET", "/_fake/info")
    assert info["fake"] is True and info["demo"] is False and info["port"] == fake.port


def test_wait_closed_timeout(fake):
    status, body = fake.control("GET", "/_fake/requests?wait_closed=987654&timeout=0.2")
    assert status == 504 and body["request"] is None


# ---------------------------------------------------------------------------
# Faults


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


def close_rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


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


def test_fault_wrong_content_type(fake):
    r = chat(fake.port, "[[fake fault=wrong_content_type]]")
    assert r.status == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.body.startswith(b"<!DOCTYPE html>")


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


def ndjson_lines_any(resp):
    """Lines of a stream whose chunks may split lines."""
    return [json.loads(x) for x in resp.body.split(b"\n") if x]


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


# ---------------------------------------------------------------------------
# Modes and process behaviour


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


def test_log_line_per_request(server):
    log = server.stderr()
    assert re.search(r"fake_backend: 127\.0\.0\.1:\d+ #\d+ POST /api/chat 200 complete "
                     r"tokens=\d+ [\d.]+ms", log)
    assert "Traceback" not in log


# ---------------------------------------------------------------------------
# Real-world shapes added for the backend review (docs/testing.md)


def test_gzip_stream_decodes_incrementally(fake):
    import zlib
    r = chat(fake.port, "[[fake gzip tokens=3]]", path="/v1/chat/completions", stream=True)
    assert r.complete and r.headers["content-encoding"] == "gzip"
    d = zlib.decompressobj(31)
    # every chunk decodes on its own (sync flush): tokens still stream
    first = d.decompress(r.chunks[0])
    assert first.startswith(b"data: {") and first.endswith(b"\n\n")
    text = first + b"".join(d.decompress(c) for c in r.chunks[1:]) + d.flush()
    assert d.eof and text.endswith(b"data: [DONE]\n\n") and text.count(b"data: ") == 5


def test_eol_and_content_type(fake):
    r = chat(fake.port, "[[fake eol=crlf content_type=text/event-stream;%20charset=utf-8]]",
             path="/v1/chat/completions", stream=True)
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b"\n\n" not in r.body and r.body.endswith(b"data: [DONE]\r\n\r\n")
    r = chat(fake.port, "[[fake eol=cr tokens=2]]", path="/v1/chat/completions", stream=True)
    assert b"\n" not in r.body and r.body.endswith(b"data: [DONE]\r\r")
    r = chat(fake.port, "[[fake eol=crlf tokens=2]]")
    assert all(c.endswith(b"}\r\n") for c in r.chunks)


def test_ignore_stream_answers_one_object(fake):
    r = chat(fake.port, "[[fake ignore_stream]] hi", path="/v1/chat/completions", stream=True)
    assert r.headers["content-type"] == "application/json"
    obj = json.loads(r.body)
    assert obj["object"] == "chat.completion"
    assert obj["choices"][0]["message"]["content"] == "Echo: hi"
    r = chat(fake.port, "[[fake ignore_stream]] hi")
    assert json.loads(r.body)["message"]["content"] == "Echo: hi"


def test_after_done_and_drop_after_done(fake):
    r = chat(fake.port, "[[fake tokens=1 after_done=:%20ping%0A%0A]]",
             path="/v1/chat/completions", stream=True)
    assert r.complete and r.body.endswith(b"data: [DONE]\n\n: ping\n\n")
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat",
                           chat_body("[[fake tokens=2 fault=drop_after_done]]")))
    data, how = read_all(s)
    s.close()
    r, _ = parse_response(data)
    assert not r.complete and b'"done":true' in r.body
    t0 = time.monotonic()
    r = chat(fake.port, "[[fake tokens=1 hold_after_done_ms=300]]")
    assert r.complete and time.monotonic() - t0 >= 0.3


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
