#!/usr/bin/python3
"""Fake LLM backend for mod_chatbot's tests, demos and benchmarks.

It speaks Ollama's API (/api/chat NDJSON, /api/tags, /api/version, GET and
HEAD /) and the OpenAI-compatible API (/v1/chat/completions as SSE or JSON,
/v1/models) with the same headers, chunking and line shapes as the real
servers (see tests/vectors/ollama/). It is NOT a model: replies are echoes,
canned demo text or whatever a test script asks for.

Usage (Python 3.11 stdlib only):

    fake_backend.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                    [--models qwen2.5-coder:7b,llama3.2:latest]
                    [--token-delay-ms 15] [--demo] [--strict-models]
                    [--bench] [--bench-tokens 100] [--quiet] [--verbose]

--port 0 picks a free port; the port is written to --port-file (atomically)
once the server listens. One line per request goes to stderr (--quiet turns
that off; --bench implies it). SIGTERM / SIGINT exit with status 0.

Replies:
  * default: "Echo: <last user message>" streamed word by word (each token is
    a word with its leading whitespace), --token-delay-ms between lines.
  * --demo: a reply labelled "(demo backend: canned reply, not a model)";
    asking for "code" adds a fenced code block.
  * --bench: --bench-tokens tokens "t0 t1 ..." with no delay, the whole
    response written in one send.
  * the model "nosuchmodel" always gets 404 "model 'nosuchmodel' not found".

Scripts choose the reply, timing and faults of one chat request:
  * inline, in the last user message: [[fake key=value key=value ...]]
    (removed from the echoed text; values use %XX escapes, a bare key means 1)
  * queued: POST /_fake/script with a JSON list of objects (same keys, JSON
    values, "reply" is plain text); each chat request takes the first queued
    script (FIFO), inline keys override it. A queued script with "path" is
    taken only by a request to that path (any endpoint, e.g. /api/tags).

  Keys: reply, reply_b64, tokens, delay_ms, first_delay_ms, think, fault,
  after, status, error, split_utf8, last_has_content, done_reason, huge_kb,
  flavor (ollama|llamacpp, for /v1), path (queued scripts only),
  ignore_stream, gzip, eol (lf|crlf|cr), content_type, after_done,
  hold_after_done_ms.
  Faults: refuse, hang_headers, hang_mid, slow, drop, drop_rst, error_line,
  garbage, invalid_json, huge_line, wrong_content_type, no_done, empty,
  drop_after_done.

Control API on the same port:
  POST /_fake/script, POST /_fake/reset, GET /_fake/scripts, GET /_fake/info,
  POST /_fake/down, POST /_fake/up (chat port stops/starts listening; use
  --control-port-file to reach the control API meanwhile),
  GET /_fake/requests, GET /_fake/requests/<id>,
  GET /_fake/requests?wait_closed=<id>&timeout=5 (blocks until it ended).

docs/testing.md ("The fake backend") documents every key and fault.
"""

import argparse
import base64
import binascii
import calendar
import collections
import email.utils
import hashlib
import json
import math
import os
import re
import select
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from http import HTTPStatus

OLLAMA_VERSION = "0.12.6"
DEFAULT_MODELS = "qwen2.5-coder:7b,llama3.2:latest"
HANG_CAP_S = 120.0          # hang faults give up after this long
IO_TIMEOUT_S = 120.0        # a send that blocks this long means the client is stuck
MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
MAX_BODY_BYTES = 64 << 20
MAX_RECORDS = 10000
RBUF_CAP = 1 << 20          # pipelined bytes buffered while streaming
SPLIT_PAUSE_S = 0.003       # between the pieces of a split_utf8 line

BUSY_MSG = "server busy, please try again.  maximum pending requests exceeded"
STREAM_ERROR_MSG = "an error was encountered while running the model: unexpected EOF"
RUNNER_ERROR_MSG = "llama runner process has terminated: exit status 2"

FAULTS = frozenset((
    "refuse", "hang_headers", "hang_mid", "slow", "drop", "drop_rst",
    "error_line", "garbage", "invalid_json", "huge_line",
    "wrong_content_type", "no_done", "empty", "drop_after_done"))
# Faults that fire after `after` tokens and end the response.
MID_FAULTS = frozenset(("hang_mid", "drop", "drop_rst", "error_line",
                        "invalid_json", "huge_line"))
INT_KEYS = frozenset(("tokens", "delay_ms", "first_delay_ms", "after", "think",
                      "status", "split_utf8", "last_has_content", "huge_kb",
                      "ignore_stream", "gzip", "hold_after_done_ms"))
STR_KEYS = frozenset(("reply", "reply_b64", "fault", "done_reason", "error",
                      "flavor", "path", "eol", "content_type", "after_done"))
# Faults a script for a non-chat path (e.g. /api/tags) can use.
PLAIN_FAULTS = frozenset(("refuse", "hang_headers", "drop", "drop_rst", "garbage",
                          "wrong_content_type", "empty"))
CHAT_PATHS = ("/api/chat", "/v1/chat/completions")
DEFAULT_AFTER = 2
DEFAULT_HUGE_KB = 2048
SLOW_DELAY_MS = 500

DIRECTIVE_RE = re.compile(r"\[\[fake(?P<body>(?:\s+[^\s\]]+)*)\s*\]\]")
TOKEN_RE = re.compile(r"\s*\S+|\s+")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                            "\u2028": "\\u2028", "\u2029": "\\u2029"})

# /api/tags entries for well-known names (the values of tests/vectors/ollama/tags.json).
KNOWN_MODELS = {
    "qwen2.5-coder:7b": ("2025-10-20T10:00:00.000000Z", 4683087332,
                         "2b0496514337a3d5901f1d253d01726c890b721e891335a56d6e08cedf3e2cb0",
                         "qwen2", "7.6B"),
    "llama3.2:latest": ("2025-10-19T10:00:00.000000Z", 2019393189,
                        "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "llama", "3.2B"),
}

HTML_BODY = (b"<!DOCTYPE html>\n<html><head><title>Welcome</title></head>"
             b"<body><h1>It works!</h1><p>This is not an LLM backend.</p></body></html>\n")

DEMO_CODE = ("\n\nHere is a small code block, so the page can show syntax highlighting:\n\n"
             "```python\n"
             "def greet(name: str) -> str:\n"
             "    \"\"\"Return a friendly greeting.\"\"\"\n"
             "    return f\"Hello, {name}!\"\n"
             "\n"
             "print(greet(\"world\"))\n"
             "```\n")


# ---------------------------------------------------------------------------
# Encoding helpers


def gojson(obj):
    """Serialise like Go's encoding/json: compact, raw UTF-8, <>& and
    U+2028/U+2029 escaped, invalid UTF-16 replaced by U+FFFD."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = s.translate(GO_ESCAPES)
    if SURROGATE_RE.search(s):
        s = SURROGATE_RE.sub("\ufffd", s)
    return s.encode("utf-8")


def rfc3339(ns):
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    sec, frac = divmod(ns, 1_000_000_000)
    out = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        out += "." + ("%09d" % frac).rstrip("0")
    return out + "Z"


def http_date():
    return email.utils.formatdate(usegmt=True)


def reason_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code %d" % status


def chunk_frame(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def tokenize(text):
    """Words with their leading whitespace; "".join(result) == text."""
    return TOKEN_RE.findall(text)


def counted_tokens(n, prefix="t"):
    return [("%s%d" % (prefix, i)) if i == 0 else (" %s%d" % (prefix, i)) for i in range(n)]


def gotype(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def go_quote_char(c):
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    inner = json.dumps(c, ensure_ascii=False)[1:-1]
    return "'" + inner + "'"


def go_json_error(e):
    """A Go-like message for a Python JSONDecodeError."""
    doc, pos, msg = e.doc, e.pos, e.msg
    if pos >= len(doc) or msg.startswith("Unterminated string"):
        return "unexpected EOF"
    c = doc[pos]
    if msg.startswith("Expecting property name"):
        ctx = "looking for beginning of object key string"
    elif msg == "Expecting ':' delimiter":
        ctx = "after object key"
    elif msg == "Expecting ',' delimiter":
        ctx = "after object key:value pair"
    elif msg == "Extra data":
        ctx = "after top-level value"
    elif msg.startswith("Invalid control character"):
        ctx = "in string literal"
    elif msg.startswith("Invalid \\escape"):
        ctx = "in string escape code"
    else:
        ctx = "looking for beginning of value"
    return "invalid character %s %s" % (go_quote_char(c), ctx)


def _reject_constant(name):
    raise ValueError(name)


def parse_json_body(body):
    """Parse a request body like gin's ShouldBindJSON; raises BadRequest."""
    text = body.decode("utf-8", "replace")
    if not text.strip():
        raise BadRequest("missing request body")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadRequest(go_json_error(e))
    except ValueError as e:
        raise BadRequest("invalid character '%s' looking for beginning of value" % str(e)[:1])
    except RecursionError:
        raise BadRequest("exceeded max depth")


def split_points(data):
    """Where to cut a line for split_utf8: after the lead byte of every
    multibyte character, or in the middle when there is none."""
    cuts = [i + 1 for i, b in enumerate(data) if b >= 0xC0]
    if not cuts and len(data) > 1:
        cuts = [len(data) // 2]
    pieces, last = [], 0
    for c in cuts:
        if c > last:
            pieces.append(data[last:c])
            last = c
    pieces.append(data[last:])
    return [p for p in pieces if p]


# ---------------------------------------------------------------------------
# Scripts


class BadRequest(Exception):
    """A request error answered with 400 and this message."""


class ScriptError(Exception):
    pass


def normalize_script(raw, inline):
    """Validate one script (dict of key -> value) and convert the values.
    inline: values come from a [[fake ...]] directive (strings, %XX escapes)."""
    if not isinstance(raw, dict):
        raise ScriptError("a script must be a JSON object")
    out = {}
    for key, val in raw.items():
        if key in INT_KEYS:
            if isinstance(val, bool) or val is None:
                val = int(bool(val))
            try:
                ival = int(val)
            except (TypeError, ValueError):
                raise ScriptError("%s: not an integer: %r" % (key, val))
            if ival < 0:
                raise ScriptError("%s: must be >= 0" % key)
            if key == "status" and not 400 <= ival <= 599:
                raise ScriptError("status: must be 400..599")
            out[key] = ival
        elif key in STR_KEYS:
            if not isinstance(val, str):
                raise ScriptError("%s: must be a string" % key)
            if inline and key in ("reply", "error", "after_done", "content_type"):
                try:
                    val = urllib.parse.unquote(val, errors="strict")
                except UnicodeDecodeError:
                    raise ScriptError("%s: %%XX escapes are not UTF-8" % key)
            out[key] = val
        else:
            raise ScriptError("unknown key '%s'" % key)
    if "reply_b64" in out:
        b64 = out.pop("reply_b64")
        try:
            pad = "=" * (-len(b64) % 4)
            raw_bytes = base64.b64decode(b64.replace("-", "+").replace("_", "/") + pad,
                                         validate=True)
            out["reply"] = raw_bytes.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ScriptError("reply_b64: not base64 of UTF-8 text")
    if "fault" in out and out["fault"] not in FAULTS:
        raise ScriptError("unknown fault '%s'" % out["fault"])
    if "eol" in out and out["eol"] not in ("lf", "crlf", "cr"):
        raise ScriptError("eol: lf, crlf or cr")
    if "content_type" in out and not re.fullmatch(r"[\x20-\x7e]{1,200}", out["content_type"]):
        raise ScriptError("content_type: one printable ASCII header value")
    if "flavor" in out and out["flavor"] not in ("ollama", "llamacpp"):
        raise ScriptError("flavor: ollama or llamacpp")
    if "done_reason" in out and not re.fullmatch(r"[a-z_]{1,32}", out["done_reason"]):
        raise ScriptError("done_reason: a lowercase word such as stop or length")
    if "path" in out:
        if not out["path"].startswith("/"):
            raise ScriptError("path: must start with /")
        if (out["path"] not in CHAT_PATHS and out.get("fault")
                and out["fault"] not in PLAIN_FAULTS):
            raise ScriptError("fault %s applies only to chat requests" % out["fault"])
    return out


def extract_directive(text):
    """Return (text without the directive, script dict or None)."""
    m = DIRECTIVE_RE.search(text)
    if not m:
        if "[[fake" in text:
            raise ScriptError("malformed [[fake ...]] directive")
        return text, None
    raw = {}
    for item in m.group("body").split():
        key, sep, val = item.partition("=")
        raw[key] = val if sep else "1"
    script = normalize_script(raw, inline=True)
    left, right = text[:m.start()], text[m.end():]
    if left[-1:].isspace() and right[:1].isspace():
        right = right.lstrip()
    rest = (left + right).strip()
    return rest, script


# ---------------------------------------------------------------------------
# Shared state: queued scripts and request records


class State:
    def __init__(self):
        self.cond = threading.Condition()
        self.scripts = collections.deque()
        self.records = collections.OrderedDict()
        self.next_id = 1

    def queue(self, scripts):
        with self.cond:
            self.scripts.extend(scripts)
            return len(self.scripts)

    def pop_script(self, path, chat):
        """The first queued script for this request: one naming its path, or,
        for a chat request, one without a path."""
        with self.cond:
            for i, s in enumerate(self.scripts):
                p = s.get("path")
                if p == path or (p is None and chat):
                    del self.scripts[i]
                    return dict(s)
        return None

    def reset(self):
        with self.cond:
            self.scripts.clear()
            self.records.clear()
            self.cond.notify_all()

    def new_record(self, req, peer):
        body = None
        if req.body:
            try:
                body = json.loads(req.body.decode("utf-8"))
            except (ValueError, RecursionError):
                body = req.body.decode("utf-8", "replace")
        with self.cond:
            rid = self.next_id
            self.next_id += 1
            rec = {
                "id": rid, "method": req.method, "path": req.path,
                "target": req.target, "peer": peer,
                "headers": dict(req.headers), "body": body,
                "model": body.get("model") if isinstance(body, dict) else None,
                "format": None, "stream": None, "script": None,
                "status": None, "tokens_sent": 0,
                "t_start": req.t_start, "t_first_token": None, "t_end": None,
                "client_closed_at": None, "outcome": None,
            }
            self.records[rid] = rec
            while len(self.records) > MAX_RECORDS:
                self.records.popitem(last=False)
            return rec

    def update(self, rec, **kw):
        with self.cond:
            rec.update(kw)

    def finish(self, rec, **kw):
        with self.cond:
            rec.update(kw)
            rec["t_end"] = time.time()
            self.cond.notify_all()

    def snapshot(self, rid=None):
        with self.cond:
            if rid is None:
                return [dict(r) for r in self.records.values()]
            r = self.records.get(rid)
            return dict(r) if r else None

    def wait_ended(self, rid, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                r = self.records.get(rid)
                if r is not None and r["t_end"] is not None:
                    return dict(r), True
                left = deadline - time.monotonic()
                if left <= 0:
                    return (dict(r) if r else None), False
                self.cond.wait(left)


# ---------------------------------------------------------------------------
# Wire formats


class OllamaFormat:
    """POST /api/chat: NDJSON lines, or one JSON object with stream:false."""
    kind = "ollama"
    stream_ctype = "application/x-ndjson"
    json_ctype = "application/json; charset=utf-8"

    def __init__(self, model, rid, include_usage=False, flavor="ollama"):
        self.model = model

    def _msg(self, content, thinking=None):
        m = {"role": "assistant", "content": content}
        if thinking:
            m["thinking"] = thinking
        return m

    def preamble(self):
        return []

    def token(self, kind, text):
        msg = self._msg(text) if kind == "c" else self._msg("", text)
        return gojson({"model": self.model, "created_at": rfc3339(time.time_ns()),
                       "message": msg, "done": False}) + b"\n"

    def _final(self, content, thinking, done, st, done_reason):
        obj = {"model": self.model, "created_at": rfc3339(time.time_ns()),
               "message": self._msg(content, thinking), "done": done}
        if done:
            obj["done_reason"] = done_reason
        obj.update(total_duration=st["total"], load_duration=st["load"],
                   prompt_eval_count=st["prompt_n"], prompt_eval_duration=st["prompt_ns"],
                   eval_count=st["eval_n"], eval_duration=st["eval_ns"])
        return gojson(obj)

    def done(self, st, done_reason, last):
        return self._final(last or "", None, True, st, done_reason) + b"\n"

    def body(self, content, thinking, st, done_reason, done=True):
        return self._final(content, thinking, done, st, done_reason)

    def error_line(self, msg):
        return gojson({"error": msg}) + b"\n"

    def error_body(self, msg, status):
        return self.json_ctype, gojson({"error": msg})

    def garbage(self):
        return b"this is not json\n"

    def truncated(self):
        whole = self.token("c", "truncated")
        return whole[:len(whole) // 2] + b"\n"

    def huge_prefix(self):
        return (b'{"model":' + gojson(self.model) + b',"created_at":"' +
                rfc3339(time.time_ns()).encode() + b'","message":{"role":"assistant","content":"')

    def load_body(self):
        return gojson({"model": self.model, "created_at": rfc3339(time.time_ns()),
                       "message": {"role": "assistant", "content": ""},
                       "done": True, "done_reason": "load"})

    def bench(self, tokens, st, stream):
        ts = rfc3339(time.time_ns())
        if not stream:
            return self.body("".join(tokens), None, st, "stop")
        head = b'{"model":' + gojson(self.model) + b',"created_at":"' + ts.encode() + \
            b'","message":{"role":"assistant","content":'
        tail = b'},"done":false}\n'
        lines = [head + gojson(t) + tail for t in tokens]
        lines.append(self.done(st, "stop", None))
        return lines


class OpenAIFormat:
    """POST /v1/chat/completions: SSE chunks, or one chat.completion object.
    flavor "ollama" mirrors Ollama's compatibility layer, "llamacpp" mirrors
    llama.cpp's server (null first content, ping comment, usage+timings in
    the finish chunk)."""
    kind = "openai"
    stream_ctype = "text/event-stream"
    json_ctype = "application/json"

    def __init__(self, model, rid, include_usage=False, flavor="ollama"):
        self.model = model
        self.id = "chatcmpl-%d" % rid
        self.created = int(time.time())
        self.include_usage = include_usage
        self.llamacpp = flavor == "llamacpp"

    def _chunk(self, delta, finish=None, **extra):
        if self.llamacpp:
            obj = {"choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
                   "created": self.created, "id": self.id, "model": self.model,
                   "object": "chat.completion.chunk"}
        else:
            obj = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                   "model": self.model, "system_fingerprint": "fp_ollama",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        obj.update(extra)
        return obj

    @staticmethod
    def _event(obj):
        return b"data: " + gojson(obj) + b"\n\n"

    def _usage(self, st):
        if self.llamacpp:
            return {"completion_tokens": st["eval_n"], "prompt_tokens": st["prompt_n"],
                    "total_tokens": st["eval_n"] + st["prompt_n"]}
        return {"prompt_tokens": st["prompt_n"], "completion_tokens": st["eval_n"],
                "total_tokens": st["prompt_n"] + st["eval_n"]}

    def preamble(self):
        if self.llamacpp:
            return [self._event(self._chunk({"role": "assistant", "content": None})),
                    b": ping\n\n"]
        return []

    def token(self, kind, text):
        if self.llamacpp:
            delta = {"content": text} if kind == "c" else {"reasoning_content": text}
        elif kind == "c":
            delta = {"role": "assistant", "content": text}
        else:
            delta = {"role": "assistant", "content": "", "reasoning_content": text}
        return self._event(self._chunk(delta))

    def done(self, st, done_reason, last):
        delta = {}
        if last:
            delta = {"content": last} if self.llamacpp else {"role": "assistant", "content": last}
        if self.llamacpp:
            pms = st["prompt_ns"] / 1e6
            ems = st["eval_ns"] / 1e6
            rate = round(st["eval_n"] / (ems / 1000), 3) if ems else 0.0
            timings = {"prompt_n": st["prompt_n"], "prompt_ms": round(pms, 3),
                       "predicted_n": st["eval_n"], "predicted_ms": round(ems, 3),
                       "predicted_per_second": rate}
            out = self._event(self._chunk(delta, done_reason, usage=self._usage(st),
                                          timings=timings))
        else:
            out = self._event(self._chunk(delta, done_reason))
            if self.include_usage:
                usage = self._chunk({})
                usage["choices"] = []
                usage["usage"] = self._usage(st)
                out += self._event(usage)
        return out + b"data: [DONE]\n\n"

    def body(self, content, thinking, st, done_reason, done=True):
        msg = {"role": "assistant", "content": content}
        if thinking:
            msg["reasoning_content"] = thinking
        obj = {"id": self.id, "object": "chat.completion", "created": self.created,
               "model": self.model, "system_fingerprint": "fp_ollama",
               "choices": [{"index": 0, "message": msg,
                            "finish_reason": done_reason if done else None}],
               "usage": self._usage(st)}
        return gojson(obj)

    def error_obj(self, msg, status):
        if self.llamacpp:
            return {"error": {"code": status, "message": msg, "type": "server_error"}}
        etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"error": {"message": msg, "type": etype, "param": None, "code": None}}

    def error_line(self, msg):
        return self._event(self.error_obj(msg, 500))

    def error_body(self, msg, status):
        return self.json_ctype, gojson(self.error_obj(msg, status))

    def garbage(self):
        return b"data: this is not json\n\n"

    def truncated(self):
        whole = self.token("c", "truncated")
        return whole[:len(whole) // 2] + b"\n\n"

    def huge_prefix(self):
        head = gojson(self._chunk({"content": ""}))
        cut = head.index(b'"content":"') + len(b'"content":"')
        return b"data: " + head[:cut]

    def bench(self, tokens, st, stream):
        if not stream:
            return self.body("".join(tokens), None, st, "stop")
        lines = [self.token("c", t) for t in tokens]
        lines.append(self.done(st, "stop", None))
        return lines


# ---------------------------------------------------------------------------
# HTTP connection


class ClientGone(Exception):
    """The client closed or reset the connection."""


class ConnClosed(Exception):
    """We closed the connection on purpose (a fault); carries the outcome."""

    def __init__(self, outcome):
        super().__init__(outcome)
        self.outcome = outcome


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers",
                 "body", "t_start", "close")


class Plan:
    """What one chat request will send."""
    __slots__ = ("thinking", "content", "delay", "fault", "after", "error", "split",
                 "last_has_content", "done_reason", "huge_kb", "stream", "prompt_n",
                 "gzip", "eol", "content_type", "after_done", "hold_after_done")


class Conn:
    def __init__(self, server, sock, addr):
        self.srv = server
        self.sock = sock
        self.peer = "%s:%s" % (addr[0], addr[1])
        self.rbuf = b""
        self.gone = False
        self.gone_at = None
        self.closed = False
        self.rec = None
        self.status = None
        self.chunked = True
        self.close_after = False
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLPRI |
                             getattr(select, "POLLRDHUP", 0))

    # -- socket primitives ---------------------------------------------------

    def mark_gone(self):
        if not self.gone:
            self.gone = True
            self.gone_at = time.time()
            if self.rec is not None and self.rec["t_end"] is None:
                self.srv.state.update(self.rec, client_closed_at=self.gone_at)

    def send(self, data):
        if self.gone:
            raise ClientGone()
        try:
            self.sock.sendall(data)
        except OSError:
            self.mark_gone()
            raise ClientGone()

    def wait(self, seconds):
        """Sleep up to `seconds` while watching the socket; False as soon as
        the client has closed or reset the connection."""
        if self.gone:
            return False
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if len(self.rbuf) >= RBUF_CAP:
                # Pipelined bytes fill the buffer: EOF cannot be seen any more.
                if left > 0:
                    time.sleep(left)
                return True
            try:
                events = self.poller.poll(max(0, math.ceil(left * 1000)))
            except InterruptedError:
                events = []
            if events:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    data = None
                except OSError:
                    self.mark_gone()
                    return False
                if data == b"":
                    self.mark_gone()
                    return False
                if data:
                    self.rbuf += data
                continue
            if left <= 0:
                return True

    def abort(self, rst):
        """Close the connection now: RST (SO_LINGER 0) or a plain FIN."""
        if self.closed:
            return
        self.closed = True
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_more(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.rbuf += data
        return True

    # -- request parsing -----------------------------------------------------

    def read_request(self):
        """Read one request; None when the connection is finished."""
        while True:
            self.rbuf = self.rbuf.lstrip(b"\r\n")
            end = self.rbuf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = self.rbuf.find(b"\n\n")
                sep = 2
            if end >= 0:
                break
            if len(self.rbuf) > MAX_HEADER_BYTES:
                self.simple_error(431, "431 Request Header Fields Too Large")
                return None
            try:
                if not self._recv_more():
                    if self.rbuf:
                        self.srv.log("%s incomplete request before EOF" % self.peer)
                    return None
            except OSError:
                return None
        head = self.rbuf[:end].decode("latin-1")
        self.rbuf = self.rbuf[end + sep:]
        lines = head.replace("\r\n", "\n").split("\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.simple_error(400, "400 Bad Request")
            return None
        req = Request()
        req.method, req.target, req.version = parts
        req.t_start = time.time()
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                self.simple_error(400, "400 Bad Request: malformed header")
                return None
            key = name.lower()
            value = value.strip()
            headers[key] = headers[key] + ", " + value if key in headers else value
        req.headers = headers
        split = urllib.parse.urlsplit(req.target)
        req.path = split.path or "/"
        req.query = urllib.parse.parse_qs(split.query)
        conn_hdr = headers.get("connection", "").lower()
        if req.version == "HTTP/1.0":
            req.close = "keep-alive" not in conn_hdr
        else:
            req.close = "close" in conn_hdr
        try:
            req.body = self._read_body(req)
        except ValueError as e:
            self.simple_error(400, "400 Bad Request: %s" % e)
            return None
        except OSError:
            return None
        if req.body is None:
            return None
        return req

    def _continue(self, req):
        if req.headers.get("expect", "").lower() == "100-continue" and req.version == "HTTP/1.1":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_body(self, req):
        te = req.headers.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise ValueError("unsupported transfer-encoding")
            if not self.rbuf:
                self._continue(req)
            return self._read_chunked()
        cl = req.headers.get("content-length")
        if cl is None:
            return b""
        if not cl.isdigit():
            raise ValueError("bad content-length")
        n = int(cl)
        if n > MAX_BODY_BYTES:
            raise ValueError("body too large")
        if n and len(self.rbuf) < n:
            self._continue(req)
        while len(self.rbuf) < n:
            if not self._recv_more():
                return None
        body, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return body

    def _read_line(self):
        while b"\r\n" not in self.rbuf:
            if len(self.rbuf) > 4096 or not self._recv_more():
                raise ValueError("bad chunk")
        line, _, self.rbuf = self.rbuf.partition(b"\r\n")
        return line

    def _read_chunked(self):
        out = []
        total = 0
        while True:
            size_s = self._read_line().split(b";")[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ValueError("bad chunk size")
            if size == 0:
                while self._read_line():
                    pass
                return b"".join(out)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("body too large")
            while len(self.rbuf) < size + 2:
                if not self._recv_more():
                    return None
            if self.rbuf[size:size + 2] != b"\r\n":
                raise ValueError("bad chunk framing")
            out.append(self.rbuf[:size])
            self.rbuf = self.rbuf[size + 2:]

    # -- response primitives -------------------------------------------------

    def head(self, status, ctype, length=None, chunked=False, extra=()):
        """Status line and headers in Go net/http's order: the handler's
        headers, then Date, Content-Length, Connection, Transfer-Encoding."""
        self.status = status
        lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status))]
        if ctype:
            lines.append("Content-Type: " + ctype)
        lines.extend(extra)
        lines.append("Date: " + http_date())
        if length is not None:
            lines.append("Content-Length: %d" % length)
        if self.close_after:
            lines.append("Connection: close")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, status, ctype, body, head_only=False):
        self.send(self.head(status, ctype, len(body)) + (b"" if head_only else body))

    def simple_error(self, status, text):
        """A protocol-level error (bad request line...): plain text, then close."""
        self.close_after = True
        try:
            self.respond(status, "text/plain; charset=utf-8", text.encode())
        except ClientGone:
            pass

    # -- dispatch --------------------------------------------------------------

    def serve(self):
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(IO_TIMEOUT_S)
            while not self.closed and not self.gone:
                req = self.read_request()
                if req is None:
                    break
                if not self.handle(req):
                    break
        except Exception as e:  # a bug must not kill the server or spam tracebacks
            self.srv.log("%s connection error: %s: %s" % (self.peer, type(e).__name__, e))
            if self.srv.verbose:
                import traceback
                traceback.print_exc()
        finally:
            if not self.closed:
                self.closed = True
                try:
                    self.sock.close()
                except OSError:
                    pass

    def handle(self, req):
        """Answer one request; True to keep the connection open."""
        self.close_after = req.close
        self.chunked = req.version == "HTTP/1.1"
        self.status = None
        self.ready_ns = None
        prefix = self.srv.path_prefix
        if prefix and not (req.path == "/_fake" or req.path.startswith("/_fake/")):
            # served behind a reverse proxy under a path prefix
            if req.path.startswith(prefix + "/"):
                req.path = req.path[len(prefix):]
            else:
                req.path = "/_no_such_path"
        if req.path == "/_fake" or req.path.startswith("/_fake/"):
            self.rec = None
            self.control(req)
            self.srv.log("%s %s %s %s" % (self.peer, req.method, req.target, self.status))
            return not self.close_after and not self.gone
        state = self.srv.state
        rec = self.rec = state.new_record(req, self.peer)
        outcome = "complete"
        try:
            outcome = self.route(req, rec) or "complete"
        except ClientGone:
            outcome = "client_closed"
        except ConnClosed as e:
            outcome = e.outcome
        except Exception as e:
            outcome = "server_error"
            self.srv.log("%s #%d handler error: %s: %s"
                         % (self.peer, rec["id"], type(e).__name__, e))
            if self.srv.verbose:
                import traceback
                traceback.print_exc()
            self.abort(rst=False)
        if self.gone:
            outcome = "client_closed"
        state.finish(rec, outcome=outcome, status=self.status,
                     client_closed_at=self.gone_at if self.gone else None)
        ms = (rec["t_end"] - rec["t_start"]) * 1000
        self.srv.log("%s #%d %s %s %s %s tokens=%d %.1fms" % (
            self.peer, rec["id"], req.method, req.target, self.status or "-",
            outcome, rec["tokens_sent"], ms))
        self.rec = None
        return not (self.close_after or self.gone or self.closed)

    def route(self, req, rec):
        m, p = req.method, req.path
        if p == "/api/chat" and m == "POST":
            return self.chat(req, rec, OllamaFormat)
        if p == "/v1/chat/completions" and m == "POST":
            return self.chat(req, rec, OpenAIFormat)
        script = self.srv.state.pop_script(p, chat=False)
        if script:
            self.srv.state.update(rec, script=dict(script))
            outcome = self.pre_faults(script, OllamaFormat("", 0), None)
            if outcome:
                return outcome
        head_only = m == "HEAD"
        if p == "/" and m in ("GET", "HEAD"):
            self.respond(200, "text/plain; charset=utf-8", b"Ollama is running", head_only)
        elif p == "/api/version" and m in ("GET", "HEAD"):
            self.respond(200, "application/json; charset=utf-8",
                         gojson({"version": OLLAMA_VERSION}), head_only)
        elif p == "/api/tags" and m in ("GET", "HEAD"):
            self.respond(200, "application/json; charset=utf-8", self.srv.tags_body, head_only)
        elif p == "/api/ps" and m == "GET":
            self.respond(200, "application/json; charset=utf-8", gojson({"models": []}))
        elif p == "/v1/models" and m == "GET":
            self.respond(200, "application/json", self.srv.models_body)
        else:
            self.respond(404, "text/plain", b"404 page not found")
        if script and script.get("fault"):
            return "fault:" + script["fault"]
        return None

    # -- control API -------------------------------------------------------------

    def control_json(self, status, obj):
        self.respond(status, "application/json", json.dumps(obj).encode() + b"\n")

    def control(self, req):
        state = self.srv.state
        m, p = req.method, req.path.rstrip("/")
        try:
            if p == "/_fake/script" and m == "POST":
                try:
                    raw = json.loads(req.body.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    return self.control_json(400, {"error": "invalid JSON: %s" % e})
                if isinstance(raw, dict):
                    raw = [raw]
                if not isinstance(raw, list):
                    return self.control_json(400, {"error": "expected a list of scripts"})
                try:
                    scripts = [normalize_script(s, inline=False) for s in raw]
                except ScriptError as e:
                    return self.control_json(400, {"error": str(e)})
                return self.control_json(200, {"queued": state.queue(scripts)})
            if p == "/_fake/reset" and m == "POST":
                state.reset()
                return self.control_json(200, {"ok": True})
            if p == "/_fake/scripts" and m == "GET":
                with state.cond:
                    pending = [dict(s) for s in state.scripts]
                return self.control_json(200, pending)
            if p == "/_fake/info" and m == "GET":
                return self.control_json(200, self.srv.info())
            if p in ("/_fake/down", "/_fake/up") and m == "POST":
                # down: the chat port stops listening (new connections are
                # refused, like a stopped Ollama); up: it listens again on the
                # same port. Needs --control-port-file to be reachable while down.
                if p == "/_fake/down":
                    self.srv.go_down()
                else:
                    self.srv.go_up()
                return self.control_json(200, {"listening": self.srv.lsock is not None})
            if p == "/_fake/requests" and m == "GET":
                if "wait_closed" in req.query:
                    try:
                        rid = int(req.query["wait_closed"][0])
                        timeout = float(req.query.get("timeout", ["5"])[0])
                    except ValueError:
                        return self.control_json(400, {"error": "wait_closed=<id>&timeout=<s>"})
                    rec, ended = state.wait_ended(rid, min(max(timeout, 0), 600))
                    if ended:
                        return self.control_json(200, rec)
                    return self.control_json(504, {"error": "request %d has not ended" % rid,
                                                   "request": rec})
                return self.control_json(200, state.snapshot())
            mo = re.fullmatch(r"/_fake/requests/(\d+)", p)
            if mo and m == "GET":
                rec = state.snapshot(int(mo.group(1)))
                if rec is None:
                    return self.control_json(404, {"error": "no such request"})
                return self.control_json(200, rec)
            return self.control_json(404, {"error": "unknown control endpoint %s %s" % (m, p)})
        except ClientGone:
            return None

    # -- chat ----------------------------------------------------------------------

    def chat(self, req, rec, fmt_cls):
        """POST /api/chat or /v1/chat/completions."""
        state = self.srv.state
        openai = fmt_cls is OpenAIFormat
        queued = state.pop_script(req.path, chat=True)
        err_fmt = fmt_cls("", rec["id"])
        try:
            body = parse_json_body(req.body)
            model, stream, messages, options = self.validate(body, openai)
        except BadRequest as e:
            self.send_error(err_fmt, 400, str(e))
            return None
        state.update(rec, format=fmt_cls.kind, stream=stream, model=model)

        last_user = ""
        for msg in messages:
            if msg["role"] == "user":
                last_user = msg["content"]
        try:
            echo_text, inline = extract_directive(last_user)
        except ScriptError as e:
            self.send_error(err_fmt, 400, "fake directive: %s" % e)
            return None
        script = queued or {}
        if inline:
            script.update(inline)
        if script:
            state.update(rec, script=dict(script))

        include_usage = bool(openai and isinstance(body.get("stream_options"), dict)
                             and body["stream_options"].get("include_usage") is True)
        fmt = fmt_cls(model, rec["id"], include_usage, script.get("flavor", "ollama"))
        if model == "nosuchmodel" or (self.srv.strict_models and not self.srv.has_model(model)):
            self.send_error(fmt, 404, "model '%s' not found" % model)
            return None
        if not messages and not openai:
            # Ollama answers an empty conversation with a "load" object.
            self.respond(200, OllamaFormat.json_ctype, fmt.load_body())
            return None

        plan = self.make_plan(script, echo_text, stream, messages, options, openai)
        fault = plan.fault
        outcome = self.pre_faults(script, fmt, model, plan)
        if outcome:
            return outcome
        if self.srv.bench and not script:
            self.bench_reply(rec, fmt, plan)
        elif stream and not script.get("ignore_stream"):
            self.stream_reply(rec, fmt, plan)
        else:
            self.json_reply(rec, fmt, plan)
        return "fault:" + fault if fault else None

    def validate(self, body, openai):
        """Check the request like Ollama's JSON binding does; raises BadRequest."""
        def unmarshal(val, field, gotype_name):
            raise BadRequest("json: cannot unmarshal %s into Go struct field %s of type %s"
                             % (gotype(val), field, gotype_name))
        if not isinstance(body, dict):
            raise BadRequest("json: cannot unmarshal %s into Go value of type api.ChatRequest"
                             % gotype(body))
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            unmarshal(model, "ChatRequest.model", "string")
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            unmarshal(stream, "ChatRequest.stream", "bool")
        if stream is None:
            stream = not openai   # Ollama streams by default, OpenAI does not
        msgs = body.get("messages")
        if msgs is None:
            msgs = []
        if not isinstance(msgs, list):
            unmarshal(msgs, "ChatRequest.messages", "[]api.Message")
        out = []
        for m in msgs:
            if not isinstance(m, dict):
                unmarshal(m, "ChatRequest.messages", "api.Message")
            role = m.get("role")
            if role is not None and not isinstance(role, str):
                unmarshal(role, "Message.messages.role", "string")
            if not role:
                raise BadRequest("invalid message format: role is required")
            content = m.get("content")
            if content is None:
                content = ""
            elif isinstance(content, list) and openai:
                texts = []
                for part in content:
                    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                        raise BadRequest("invalid message format")
                    if part["type"] == "text":
                        if not isinstance(part.get("text"), str):
                            raise BadRequest("invalid message format")
                        texts.append(part["text"])
                content = "\n".join(texts)
            elif not isinstance(content, str):
                if openai:
                    raise BadRequest("invalid message content type: %s" % gotype(content))
                unmarshal(content, "Message.messages.content", "string")
            out.append({"role": role, "content": content})
        if not model:
            raise BadRequest("model is required")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        if openai:
            for key in ("max_completion_tokens", "max_tokens"):
                if isinstance(body.get(key), int) and not isinstance(body.get(key), bool):
                    options = {"num_predict": body[key]}
        return model, stream, out, options

    def send_error(self, fmt, status, msg):
        ctype, body = fmt.error_body(msg, status)
        self.respond(status, ctype, body)

    def make_plan(self, script, echo_text, stream, messages, options, openai):
        cfg = self.srv
        p = Plan()
        p.stream = stream
        p.fault = script.get("fault")
        delay_ms = script.get("delay_ms", 0 if cfg.bench else cfg.token_delay_ms)
        if p.fault == "slow" and "delay_ms" not in script:
            delay_ms = SLOW_DELAY_MS
        p.delay = delay_ms / 1000.0
        p.after = script.get("after", DEFAULT_AFTER)
        p.error = script.get("error")
        p.split = bool(script.get("split_utf8"))
        p.last_has_content = bool(script.get("last_has_content"))
        p.done_reason = script.get("done_reason", "stop")
        p.huge_kb = script.get("huge_kb", DEFAULT_HUGE_KB)
        p.thinking = counted_tokens(script.get("think", 0), "think")
        p.gzip = bool(script.get("gzip"))
        p.eol = {"crlf": b"\r\n", "cr": b"\r"}.get(script.get("eol"), b"\n")
        p.content_type = script.get("content_type")
        p.after_done = script.get("after_done", "").encode()
        p.hold_after_done = script.get("hold_after_done_ms", 0) / 1000.0
        if "reply" in script:
            p.content = tokenize(script["reply"])
        elif "tokens" in script:
            p.content = counted_tokens(script["tokens"])
        elif cfg.bench:
            p.content = cfg.bench_tokens_list
        elif cfg.demo:
            p.content = tokenize(demo_reply(echo_text))
        else:
            p.content = tokenize("Echo: " + echo_text if echo_text else "Echo:")
        limit = options.get("num_predict")
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(p.content):
            p.content = p.content[:limit]
            if "done_reason" not in script:
                p.done_reason = "length"
        p.prompt_n = max(1, sum(len(re.findall(r"\w+|[^\w\s]", m["content"])) + 4
                                for m in messages))
        return p

    def pre_faults(self, script, fmt, model, plan=None):
        """Faults that act before any token: first_delay_ms, refuse,
        hang_headers, status, wrong_content_type, empty. Returns the outcome
        when one of them answered the request."""
        first_delay = script.get("first_delay_ms", 0) / 1000.0
        if first_delay and not self.wait(first_delay):
            raise ClientGone()
        self.ready_ns = time.time_ns()
        fault = script.get("fault")
        if fault == "refuse":
            self.abort(rst=True)
            raise ConnClosed("fault:refuse")
        if fault == "hang_headers":
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_headers")
        status = script.get("status")
        if status:
            defaults = {500: RUNNER_ERROR_MSG, 503: BUSY_MSG}
            if model is not None:
                defaults[400] = '"%s" does not support chat' % model
                defaults[404] = "model '%s' not found" % model
            msg = script.get("error") or defaults.get(status) or reason_phrase(status).lower()
            self.send_error(fmt, status, msg)
            return "fault:status"
        if fault == "wrong_content_type":
            self.respond(200, "text/html; charset=utf-8", HTML_BODY)
            return "fault:wrong_content_type"
        if fault == "empty":
            stream = plan.stream if plan else False
            self.respond(200, fmt.stream_ctype if stream else fmt.json_ctype, b"")
            return "fault:empty"
        if fault == "garbage" and plan is None:
            self.respond(200, "application/json; charset=utf-8", b"this is not json")
            return "fault:garbage"
        if fault in ("drop", "drop_rst") and plan is None:
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        return None

    def stats(self, rec, plan, n_tokens):
        now = time.time_ns()
        start = int(rec["t_start"] * 1e9)
        ready = self.ready_ns or start
        first = int(rec["t_first_token"] * 1e9) if rec["t_first_token"] else now
        return {"total": max(1, now - start), "load": max(1, ready - start),
                "prompt_n": plan.prompt_n, "prompt_ns": max(1, first - ready),
                "eval_n": n_tokens, "eval_ns": max(1, now - first)}

    # -- streamed replies ------------------------------------------------------------

    def _frame(self, data):
        return chunk_frame(data) if self.chunked else data

    def stream_reply(self, rec, fmt, plan):
        state = self.srv.state
        started = [False]
        head = self.head(200, plan.content_type or fmt.stream_ctype, chunked=self.chunked,
                         extra=("Content-Encoding: gzip",) if plan.gzip else ())
        # gzip: one member, flushed after every write so that tokens still
        # stream (what a compressing server or proxy does at best)
        gz = zlib.compressobj(6, zlib.DEFLATED, 31) if plan.gzip else None

        def encode(data):
            if plan.eol != b"\n":
                data = data.replace(b"\n", plan.eol)
            if gz:
                data = gz.compress(data) + gz.flush(zlib.Z_SYNC_FLUSH)
            return data

        def write(data, split=False):
            pieces = split_points(data) if split else [data]
            for i, piece in enumerate(pieces):
                frame = self._frame(encode(piece))
                if not started[0]:
                    frame = head + frame
                    started[0] = True
                if i and not self.wait(SPLIT_PAUSE_S):
                    raise ClientGone()
                self.send(frame)

        def start():
            if not started[0]:
                started[0] = True
                self.send(head)

        def end():
            start()
            if gz:
                tail = gz.flush(zlib.Z_FINISH)
                if tail:
                    self.send(self._frame(tail))
            if self.chunked:
                self.send(b"0\r\n\r\n")
            else:
                self.close_after = True

        events = [("t", t) for t in plan.thinking] + [("c", c) for c in plan.content]
        last_in_done = plan.last_has_content and events and events[-1][0] == "c"
        n_lines = len(events) - 1 if last_in_done else len(events)
        for b in fmt.preamble():
            write(b)
        sent = 0
        for i in range(n_lines):
            if plan.fault in MID_FAULTS and i == plan.after:
                return self.mid_fault(fmt, plan, write, start, end)
            if plan.fault == "garbage" and i == plan.after:
                write(fmt.garbage())
            if i and not self.wait(plan.delay):
                raise ClientGone()
            if not i and not self.wait(0):
                raise ClientGone()
            write(fmt.token(*events[i]), plan.split)
            sent += 1
            if i == 0:
                state.update(rec, t_first_token=time.time(), tokens_sent=sent)
            else:
                rec["tokens_sent"] = sent
        if plan.fault in MID_FAULTS:
            return self.mid_fault(fmt, plan, write, start, end)
        if plan.fault == "garbage" and plan.after >= n_lines:
            write(fmt.garbage())
        if n_lines and not self.wait(plan.delay):
            raise ClientGone()
        if plan.fault != "no_done":
            if last_in_done:
                state.update(rec, tokens_sent=sent + 1,
                             t_first_token=rec["t_first_token"] or time.time())
            st = self.stats(rec, plan, len(events))
            write(fmt.done(st, plan.done_reason, events[-1][1] if last_in_done else None))
            if plan.after_done:
                write(plan.after_done)
            if plan.hold_after_done and not self.wait(plan.hold_after_done):
                raise ClientGone()
            if plan.fault == "drop_after_done":
                self.abort(rst=False)
                raise ConnClosed("fault:drop_after_done")
        end()
        return None

    def mid_fault(self, fmt, plan, write, start, end):
        fault = plan.fault
        if fault == "hang_mid":
            start()
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_mid")
        if fault in ("drop", "drop_rst"):
            start()
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        if fault == "error_line":
            write(fmt.error_line(plan.error or STREAM_ERROR_MSG))
        elif fault == "invalid_json":
            write(fmt.truncated())
        elif fault == "huge_line":
            write(fmt.huge_prefix())
            left = plan.huge_kb * 1024
            block = b"x" * 65536
            while left > 0:
                if not self.wait(0):
                    raise ClientGone()
                write(block[:min(left, len(block))])
                left -= len(block)
        end()
        return None

    # -- non-streamed replies ----------------------------------------------------------

    def json_reply(self, rec, fmt, plan):
        state = self.srv.state
        events = [("t", t) for t in plan.thinking] + [("c", c) for c in plan.content]
        for i in range(len(events)):
            if plan.fault in MID_FAULTS and i == plan.after:
                break
            if not self.wait(plan.delay if i else 0):
                raise ClientGone()
            if i == 0:
                state.update(rec, t_first_token=time.time())
        else:
            if events and not self.wait(plan.delay):
                raise ClientGone()
        fault = plan.fault
        if fault == "hang_mid":
            if not self.wait(HANG_CAP_S):
                raise ClientGone()
            self.abort(rst=False)
            raise ConnClosed("fault:hang_mid")
        if fault in ("drop", "drop_rst"):
            self.abort(rst=fault == "drop_rst")
            raise ConnClosed("fault:" + fault)
        if fault == "error_line":
            self.send_error(fmt, 500, plan.error or STREAM_ERROR_MSG)
            return
        thinking = "".join(plan.thinking)
        content = "".join(plan.content)
        st = self.stats(rec, plan, len(events))
        body = fmt.body(content, thinking, st, plan.done_reason, done=fault != "no_done")
        if fault == "garbage":
            body = b"this is not json"
        elif fault == "invalid_json":
            body = body[:len(body) // 2]
        elif fault == "huge_line":
            body = fmt.huge_prefix()
            if body.startswith(b"data: "):
                body = body[6:]
            body += b"x" * (plan.huge_kb * 1024)
        state.update(rec, tokens_sent=len(events))
        self.respond(200, fmt.json_ctype, body)

    # -- benchmark replies ----------------------------------------------------------

    def bench_reply(self, rec, fmt, plan):
        """Everything in one send: no delays, no per-token polling."""
        rec["t_first_token"] = time.time()
        st = self.stats(rec, plan, len(plan.content))
        out = fmt.bench(plan.content, st, plan.stream)
        if not plan.stream:
            self.respond(200, fmt.json_ctype, out)
        else:
            head = self.head(200, fmt.stream_ctype, chunked=self.chunked)
            if self.chunked:
                out.append(b"")
                body = b"".join(b"%x\r\n%s\r\n" % (len(x), x) for x in out)
            else:
                self.close_after = True
                body = b"".join(out)
            self.send(head + body)
        rec["tokens_sent"] = len(plan.content)


def demo_reply(said):
    """The canned --demo reply: clearly labelled, never pretending to be a model."""
    flat = " ".join(said.split())
    if len(flat) > 80:
        flat = flat[:77] + "..."
    text = ("(demo backend: canned reply, not a model) You said: \"%s\". "
            "This answer comes from the project's fake backend, so no language model is "
            "running. Point the module at a real Ollama server to get real answers." % flat)
    if re.search(r"\bcode", said, re.IGNORECASE):
        text += DEMO_CODE
    return text


# ---------------------------------------------------------------------------
# Server


class Server:
    def __init__(self, args):
        self.args = args
        self.state = State()
        self.models = [m.strip() for m in args.models.split(",") if m.strip()]
        self.token_delay_ms = args.token_delay_ms
        self.demo = args.demo
        self.bench = args.bench
        self.bench_tokens_list = counted_tokens(args.bench_tokens)
        self.strict_models = args.strict_models
        self.path_prefix = getattr(args, "path_prefix", "")
        self.quiet = args.quiet or (args.bench and not args.verbose)
        self.verbose = args.verbose
        self.log_lock = threading.Lock()
        self.stopping = False
        self.tags_body = gojson({"models": [self.tag_entry(m) for m in self.models]})
        self.models_body = gojson({"object": "list", "data": [
            {"id": m, "object": "model", "created": self.created(m), "owned_by": "library"}
            for m in self.models]})

    def has_model(self, name):
        return name in self.models or (":" not in name and name + ":latest" in self.models)

    @staticmethod
    def tag_entry(name):
        if name in KNOWN_MODELS:
            modified, size, digest, family, params = KNOWN_MODELS[name]
        else:
            digest = hashlib.sha256(name.encode()).hexdigest()
            size = 1_000_000_000 + int(digest[:8], 16) % 4_000_000_000
            modified = "2025-10-01T10:00:00.000000Z"
            mo = re.match(r"[a-z]+", name.lower())
            family = mo.group(0) if mo else "llama"
            ps = re.search(r":(\d+(?:\.\d+)?)b\b", name.lower())
            params = (ps.group(1) + "B") if ps else "7B"
        return {"name": name, "model": name, "modified_at": modified, "size": size,
                "digest": digest,
                "details": {"parent_model": "", "format": "gguf", "family": family,
                            "families": [family], "parameter_size": params,
                            "quantization_level": "Q4_K_M"}}

    def created(self, name):
        modified = self.tag_entry(name)["modified_at"]
        return calendar.timegm(time.strptime(modified[:19], "%Y-%m-%dT%H:%M:%S"))

    def info(self):
        return {"fake": True, "demo": self.demo, "bench": self.bench, "models": self.models,
                "token_delay_ms": self.token_delay_ms, "version": OLLAMA_VERSION,
                "pid": os.getpid(), "port": self.port}

    def log(self, line):
        if self.quiet:
            return
        with self.log_lock:
            try:
                sys.stderr.write("fake_backend: %s\n" % line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _listen(self, port):
        host = self.args.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    @staticmethod
    def _write_port(path, port):
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, path)

    def bind(self):
        self.lsock = self._listen(self.args.port)
        self.port = self.lsock.getsockname()[1]
        self.csock = None
        self.wake_w = None
        if self.args.control_port_file:
            self.csock = self._listen(0)
            self._write_port(self.args.control_port_file, self.csock.getsockname()[1])
        if self.args.port_file:
            self._write_port(self.args.port_file, self.port)

    def _wake(self):
        if self.wake_w is not None:
            try:
                os.write(self.wake_w, b"w")
            except OSError:
                pass

    def go_down(self):
        with self.log_lock:
            sock, self.lsock = self.lsock, None
        if sock is not None:
            sock.close()
        self._wake()

    def go_up(self):
        with self.log_lock:
            if self.lsock is None:
                self.lsock = self._listen(self.port)
        self._wake()

    def serve_forever(self, wake_fd):
        """Accept until a signal handler sets self.stopping (it also writes
        to wake_fd, so the select() below returns at once). The control
        port, if any, is served the same way."""
        while not self.stopping:
            listeners = [s for s in (self.lsock, self.csock) if s is not None]
            try:
                ready, _, _ = select.select(listeners + [wake_fd], [], [])
            except (InterruptedError, ValueError, OSError):
                continue
            if wake_fd in ready:
                try:
                    os.read(wake_fd, 512)
                except OSError:
                    pass
                continue
            for ls in ready:
                try:
                    sock, addr = ls.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:
                    self.log("accept failed: %s" % e)
                    time.sleep(0.05)
                    continue
                sock.setblocking(True)
                t = threading.Thread(target=Conn(self, sock, addr).serve, daemon=True)
                t.start()


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Fake Ollama / OpenAI-compatible backend for tests, demos and benchmarks.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--control-port-file",
                    help="also listen on a second port (written here) that serves the "
                         "control API even while the chat port is down (POST /_fake/down)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    ap.add_argument("--token-delay-ms", type=float, default=15.0,
                    help="default delay between streamed lines")
    ap.add_argument("--demo", action="store_true",
                    help="canned, clearly labelled replies for `make run` without Ollama")
    ap.add_argument("--strict-models", action="store_true",
                    help="404 for any model not in --models (default: only nosuchmodel)")
    ap.add_argument("--bench", action="store_true",
                    help="answer at once with --bench-tokens tokens, no delays, quiet")
    ap.add_argument("--bench-tokens", type=int, default=100)
    ap.add_argument("--path-prefix", default="",
                    help="serve the API under this path (e.g. /ollama), as behind a "
                         "reverse proxy; other paths get 404")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    ap.add_argument("--verbose", action="store_true", help="tracebacks for internal errors")
    args = ap.parse_args(argv)
    args.path_prefix = args.path_prefix.rstrip("/")
    if args.path_prefix and not args.path_prefix.startswith("/"):
        ap.error("--path-prefix must start with /")
    if args.token_delay_ms < 0 or args.bench_tokens < 0:
        ap.error("delays and token counts must be >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    srv = Server(args)

    def on_signal(signum, frame):
        srv.stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        srv.bind()
    except OSError as e:
        sys.stderr.write("fake_backend: cannot listen on %s:%s: %s\n" % (args.host, args.port, e))
        return 1
    mode = "bench" if args.bench else "demo" if args.demo else "test"
    sys.stderr.write("fake_backend: listening on %s:%d (%s mode, models %s)\n"
                     % (args.host, srv.port, mode, ",".join(srv.models)))
    sys.stderr.flush()
    srv.wake_w = wake_w
    srv.serve_forever(wake_r)
    for ls in (srv.lsock, srv.csock):
        try:
            if ls is not None:
                ls.close()
        except OSError:
            pass
    if args.port_file:
        try:
            with open(args.port_file) as f:
                if f.read().strip() == str(srv.port):
                    os.unlink(args.port_file)
        except OSError:
            pass
    with srv.log_lock:
        try:
            sys.stderr.write("fake_backend: shutting down\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    # Daemon connection threads may be blocked in poll(); leave without joining them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
