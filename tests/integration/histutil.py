"""Helpers for the 5xx tests (bots, sessions, history, identity, REST):
a blocking WebSocket client that keeps every frame it reads, identities as
cookies, a REST client, and which httpd child served which connection.

Identities: the server takes any `chatbot_sid` of 32 lowercase hex digits
as an anonymous identity, so a test makes as many as it needs with
new_cookie() and can open several connections (tabs) of one identity.
"""
import json
import os
import re
import socket
import time

import requests

from wsclient import RawWS, handshake


def new_cookie():
    return "chatbot_sid=" + os.urandom(16).hex()


class Conn(RawWS):
    """One WebSocket connection. `tag` goes into the request's query string
    so the connection can be found in the access log (pid=%P)."""

    def __init__(self, server, cookie=None, tag=None, headers=None, timeout=10.0,
                 auth=None):
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        if auth:
            import base64
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % auth).encode()).decode()
        self.tag = tag or os.urandom(6).hex()
        status, hdrs, s, rest, key = handshake(server.port, "/ws?c=" + self.tag, h,
                                               timeout=timeout)
        if status != 101:
            s.close()
            raise RuntimeError("handshake failed: %d %r" % (status, hdrs))
        self.sock = s
        self.buf = rest
        self.headers = hdrs
        self.sock.settimeout(timeout)
        self.frames = []          # every JSON frame read, in order
        self.hello = self.next(timeout)
        assert self.hello["type"] == "hello", self.hello

    def send_msg(self, obj):
        self.send_json(obj)

    def next(self, timeout=10.0):
        """The next JSON frame (pings answered)."""
        self.sock.settimeout(timeout)
        while True:
            fin, op, payload, masked = self.recv_frame()
            if op == 9:
                self.send(10, payload)
                continue
            if op == 8:
                raise EOFError("close %r" % payload)
            if op == 1:
                m = json.loads(payload.decode("utf-8"))
                self.frames.append(m)
                return m

    def wait(self, pred, timeout=10.0):
        """Reads until pred(frame) (or frame type == pred); returns
        (frame, frames read before it)."""
        if isinstance(pred, str):
            t = pred
            pred = lambda m: m.get("type") == t  # noqa: E731
        end = time.time() + timeout
        before = []
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError("no matching frame; got %r" % before)
            m = self.next(left)
            if pred(m):
                return m, before
            before.append(m)

    def request(self, obj, reply, timeout=10.0):
        self.send_json(obj)
        return self.wait(lambda m: m.get("type") in (reply, "error"), timeout)[0]

    def turn(self, content, timeout=30.0, **fields):
        """Sends a message; returns the frames up to the response/error."""
        obj = {"type": "message", "content": content}
        obj.update(fields)
        self.send_json(obj)
        final, before = self.wait(lambda m: m.get("type") in ("response", "error"), timeout)
        return before + [final]

    def quiet(self, seconds):
        """Frames that arrive within `seconds` (reading stops at a timeout)."""
        got = []
        end = time.time() + seconds
        while time.time() < end:
            try:
                got.append(self.next(max(0.01, end - time.time())))
            except (socket.timeout, TimeoutError):
                break
        return got

    def launch(self, bot=None, title=None):
        obj = {"type": "launch"}
        if bot:
            obj["bot_id"] = bot
        else:
            obj["bot_id"] = self.hello["bots"][0]["id"]
        if title:
            obj["title"] = title
        m = self.request(obj, "session")
        assert m["type"] == "session", m
        return m["session"]["conversation_id"]


def streams(frames, conv=None):
    return "".join(f["content"] for f in frames
                   if f.get("type") == "stream" and (conv is None or
                                                     f.get("conversation_id") == conv))


class Rest:
    """REST calls with one identity (cookie or Basic auth)."""

    def __init__(self, server, cookie=None, auth=None, base=None, verify=False):
        self.base = base or server.base
        self.s = requests.Session()
        self.s.verify = verify
        if cookie:
            self.s.headers["Cookie"] = cookie
        if auth:
            self.s.auth = auth

    def get(self, path, **kw):
        return self.s.get(self.base + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path, body=None, raw=None, **kw):
        if raw is not None:
            return self.s.post(self.base + path, data=raw, timeout=kw.pop("timeout", 30),
                               headers=kw.pop("headers", {"Content-Type":
                                                          "application/json"}), **kw)
        return self.s.post(self.base + path, json=body, timeout=kw.pop("timeout", 30), **kw)


def pids_by_tag(server, timeout=5.0):
    """{tag: pid} for the closed WebSocket connections in the access log."""
    pat = re.compile(r'"GET /ws\?c=([0-9a-zA-Z_-]+) HTTP/1\.1" 101 .* pid=(\d+)')
    end = time.time() + timeout
    out = {}
    while time.time() < end:
        out = {}
        for line in server.access_lines():
            m = pat.search(line)
            if m:
                out[m.group(1)] = int(m.group(2))
        if out:
            return out
        time.sleep(0.1)
    return out


def wait_logged(server, tags, timeout=10.0):
    """Waits until every tag has its access-log line; returns {tag: pid}."""
    end = time.time() + timeout
    while True:
        got = pids_by_tag(server, 0.1)
        if all(t in got for t in tags) or time.time() > end:
            return got
        time.sleep(0.1)


def status_auto(server):
    r = requests.get(server.base + "/server-status?auto", timeout=10)
    out = {}
    for line in r.text.splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def chat_requests(fake, since=0):
    return [r for r in fake.requests() if r["path"] in ("/api/chat", "/v1/chat/completions")
            and r["id"] > since]


def last_request_id(fake):
    reqs = fake.requests()
    return reqs[-1]["id"] if reqs else 0
