"""Helpers for the 5xx tests (bots, sessions, history, identity, REST):
a blocking WebSocket client that keeps every frame it reads, identities as
cookies, a REST client, and which httpd child served which connection.

Identities: the test servers sign cookies with a key the tests know
(conftest.TEST_COOKIE_SECRET), so a test makes as many identities as it
needs with new_cookie() and can open several connections (tabs) of one.
"""
import json
import os
import re
import socket
import time

import requests

from wsclient import RawWS, handshake


def new_cookie():
    from conftest import new_sid_cookie
    return new_sid_cookie()


def htpasswd(**users):
    """A Basic-auth password file (user=password) readable by httpd's
    children; returns its path."""
    import subprocess
    from conftest import test_root
    path = os.path.join(test_root("htpasswd"), "users")
    for i, (user, pw) in enumerate(sorted(users.items())):
        subprocess.run(["htpasswd", "-bB"] + (["-c"] if i == 0 else []) +
                       [path, user, pw], check=True, capture_output=True)
    os.chmod(path, 0o644)
    return path


def module_server(fake, extra, name, no_500=True):
    """A generator for a module-scoped server fixture: one httpd for the
    file's tests; at the end no error-level log line and (no_500) no 500
    in the access log."""
    from conftest import Server
    s = Server(fake.url, extra=extra, name=name)
    yield s
    s.stop()
    if no_500:
        statuses = [int(m.group(1)) for m in
                    (re.search(r'" (\d{3}) ', ln) for ln in s.access_lines()) if m]
        assert statuses and 500 not in statuses, "a 500 was sent"
    bad = s.bad_log_lines()
    assert not bad, "\n".join(bad)


_LOCAL_PORT = {}  # Conn tag -> the local port of its socket (live_pids)


class Conn(RawWS):
    """One WebSocket connection. `tag` goes into the request's query string
    so the connection can be found in the access log (pid=%P); `path` is
    the endpoint (another <Location>, e.g. one behind authentication)."""

    def __init__(self, server, cookie=None, tag=None, headers=None, timeout=10.0,
                 auth=None, path="/ws"):
        h = dict(headers or {})
        if cookie:
            h["Cookie"] = cookie
        if auth:
            import base64
            h["Authorization"] = "Basic " + base64.b64encode(
                ("%s:%s" % auth).encode()).decode()
        self.tag = tag or os.urandom(6).hex()
        status, hdrs, s, rest, key = handshake(server.port, path + "?c=" + self.tag, h,
                                               timeout=timeout)
        if status != 101:
            s.close()
            raise RuntimeError("handshake failed: %d %r" % (status, hdrs))
        self.sock = s
        _LOCAL_PORT[self.tag] = s.getsockname()[1]
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
        """Sends obj; returns its reply (or an error). A `sessions` reply is
        told from a pushed list by the request's id, which it echoes."""
        if "id" not in obj:
            self.nreq = getattr(self, "nreq", 0) + 1
            obj = dict(obj, id="req%d" % self.nreq)
        rid = obj["id"]
        self.send_json(obj)
        return self.wait(lambda m: m.get("type") == "error" or (
            m.get("type") == reply and (reply != "sessions" or m.get("id") == rid)),
            timeout)[0]

    def turn(self, content, timeout=30.0, **fields):
        """Sends a message; returns the turn's frames up to the
        response/error (pushed `sessions` lists left out; self.frames has
        them)."""
        obj = {"type": "message", "content": content}
        obj.update(fields)
        self.send_json(obj)
        final, before = self.wait(lambda m: m.get("type") in ("response", "error"), timeout)
        return [m for m in before if m.get("type") != "sessions"] + [final]

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
        # one connection per call: a kept-alive one may be closed by httpd
        # (KeepAliveTimeout) just as the next POST goes out on a loaded
        # machine, and a POST is not retried
        self.s.headers["Connection"] = "close"
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


def wait_for(pred, timeout=20.0, step=0.1):
    """pred() until it is true or timeout passes; returns its last value."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


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


def sent(fake, since):
    """The messages the model was sent in the newest chat request after `since`."""
    return chat_requests(fake, since)[-1]["body"]["messages"]


def history(conn, conv):
    """A conversation's history over the WebSocket (up to 1000 messages)."""
    return conn.request({"type": "history", "conversation_id": conv, "limit": 1000},
                        "history")


def set_directive(server, name, value):
    """Rewrites (or adds) a server-config directive in the rendered config."""
    text = open(server.conf).read()
    pat = re.compile(r"^%s .*$" % re.escape(name), re.M)
    if pat.search(text):
        text = pat.sub("%s %s" % (name, value), text)
    else:
        text += "\n%s %s\n" % (name, value)
    open(server.conf, "w").write(text)


def wait_ready(server, processes, threads, timeout=10.0):
    """Waits until every child has started all its workers and they are
    idle (but for the status request itself), so that connections opened
    next spread over all children."""
    end = time.time() + timeout
    st = {}
    while time.time() < end:
        st = status_auto(server)
        try:
            busy, idle = int(st.get("BusyWorkers", -1)), int(st.get("IdleWorkers", -1))
            procs = int(st.get("Processes", -1))
        except ValueError:
            busy = idle = procs = -1
        if procs == processes and busy + idle == processes * threads and busy <= 1:
            return st
        time.sleep(0.1)
    raise RuntimeError("server not ready: %r" % st)


def live_pids(server):
    """{tag: pid} of the Conns open now: the child whose socket each one
    talks to (`ss -p`; a WebSocket parked in the event MPM is on no worker,
    so mod_status' worker table does not show it)."""
    from backends_util import _SS_PID, ss_lines
    by_port = {}
    for line in ss_lines():
        cols = line.split()
        if len(cols) >= 5 and cols[0] == "ESTAB" and cols[3].endswith(":%d" % server.port):
            m = _SS_PID.search(line)
            if m:
                by_port[int(cols[4].rsplit(":", 1)[1])] = int(m.group(1))
    return {tag: by_port[p] for tag, p in list(_LOCAL_PORT.items()) if p in by_port}


def live_pid(server, tag, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        pid = live_pids(server).get(tag)
        if pid:
            return pid
        time.sleep(0.05)
    raise RuntimeError("connection %s not found among the children's sockets" % tag)


def open_spread(server, make, need, extra=0, limit=200):
    """Opens connections (make(tag) returns an open Conn) until need[pid]
    of them are in each child pid, and `extra` more in any child. The
    kernel picks the child (unevenly: idle WebSockets are parked, so no
    child runs out of threads and stops accepting): connections that land
    where none is needed any more are closed again. Returns (kept connections in the order
    opened, {tag: pid})."""
    need = dict(need)
    kept, spare, pid_of = [], [], {}
    try:
        while any(v > 0 for v in need.values()) or extra > 0:
            limit -= 1
            if limit < 0:
                raise RuntimeError("could not spread connections: %r" % need)
            c = make(os.urandom(6).hex())
            pid = live_pid(server, c.tag)
            if need.get(pid, 0) > 0:
                need[pid] -= 1
            elif extra > 0:
                extra -= 1
            else:
                spare.append(c)
                continue
            kept.append(c)
            pid_of[c.tag] = pid
    except Exception:
        for c in kept:
            c.close()
        raise
    finally:
        for c in spare:
            c.close()
    return kept, pid_of


def alice_then_bob(alice, bob, fake, n=7):
    """The eviction tests' opening (both stores): alice makes one
    conversation with one turn, then bob n, each with one turn. Returns
    alice's id and bob's ids, oldest first."""
    a1 = alice.launch()
    fake.script({"reply": "kept?"})
    alice.turn("alice's oldest", conversation_id=a1)
    convs = []
    for i in range(n):
        c = bob.launch(title="b%d" % i)
        fake.script({"reply": "reply %d" % i})
        bob.turn("bob %d" % i, conversation_id=c)
        convs.append(c)
    return a1, convs
