"""Helpers for the backend tests (test_4xx): WebSocket turns, the fake
backend's records, and where httpd's sockets are (leak checks)."""
import asyncio
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import websockets

from wsclient import run, ssl_ctx  # noqa: F401  (run is re-exported for the tests)


def new_sid():
    return os.urandom(16).hex()


async def connect(server, sid=None, tls=False, **kw):
    """Opens /ws (wss:// with tls; with a fixed session cookie if sid) and
    returns (ws, hello)."""
    from conftest import sign_sid
    # over https the cookie is __Host-chatbot_sid (ChatbotCookieHostPrefix)
    headers = {"Cookie": "%s=%s" % ("__Host-chatbot_sid" if tls else "chatbot_sid",
                                    sign_sid(sid))} if sid else None
    if tls:
        kw["ssl"] = ssl_ctx()
    ws = await websockets.connect(server.wss_url if tls else server.ws_url,
                                  max_size=2 ** 24, extra_headers=headers, **kw)
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello"
    return ws, hello


async def recv(ws, timeout=10.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def collect(ws, timeout=20.0, until=("response", "error"), stamp=False):
    """Frames until a final one (response/error); with stamp, each frame
    gets "_t" = time.time() of its arrival."""
    frames = []
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            raise TimeoutError("no final frame; got %r" % frames)
        msg = await recv(ws, left)
        if stamp:
            msg["_t"] = time.time()
        frames.append(msg)
        if msg.get("type") in until:
            return frames


async def wait_for(ws, pred, timeout=10.0, frames=None):
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            raise TimeoutError("frame not seen; got %r" % frames)
        msg = await recv(ws, left)
        msg["_t"] = time.time()
        if frames is not None:
            frames.append(msg)
        if pred(msg):
            return msg


async def turn(ws, content, timeout=20.0, stamp=False, **fields):
    msg = {"type": "message", "content": content}
    msg.update(fields)
    await ws.send(json.dumps(msg))
    return await collect(ws, timeout=timeout, stamp=stamp)


async def ping(ws, timeout=5.0):
    t0 = time.time()
    await ws.send(json.dumps({"type": "ping"}))
    await wait_for(ws, lambda m: m.get("type") == "pong", timeout)
    return time.time() - t0


async def history(ws, conv):
    await ws.send(json.dumps({"type": "history", "conversation_id": conv, "limit": 200}))
    return await wait_for(ws, lambda m: m.get("type") == "history")


def streams(frames, kind="stream"):
    return "".join(f["content"] for f in frames if f.get("type") == kind)


# ---- the fake backend ---------------------------------------------------------------

def fake_get(fake, path, timeout=10):
    try:
        with urllib.request.urlopen(fake.url + path, timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def last_id(fake):
    reqs = fake.requests()
    return max([r["id"] for r in reqs], default=0)


def requests_since(fake, mark, path=None):
    return [r for r in fake.requests()
            if r["id"] > mark and (path is None or r["path"] == path)]


def chat_requests_since(fake, mark):
    return [r for r in fake.requests()
            if r["id"] > mark and r["path"] in ("/api/chat", "/v1/chat/completions")]


def wait_ended(fake, rid, timeout=5.0):
    """The request's record once it has ended (the fake saw it finish or
    the client leave)."""
    return fake_get(fake, "/_fake/requests?wait_closed=%d&timeout=%s" % (rid, timeout),
                    timeout=timeout + 5)


def wait_chat_request(fake, mark, timeout=5.0, n=1):
    end = time.time() + timeout
    while time.time() < end:
        got = chat_requests_since(fake, mark)
        if len(got) >= n:
            return got
        time.sleep(0.02)
    raise TimeoutError("the fake backend got no chat request")


# ---- httpd's processes and sockets -----------------------------------------------------

_SS_PID = re.compile(r"pid=(\d+)")


def ss_lines():
    out = subprocess.run(["ss", "-tanpH"], capture_output=True, text=True).stdout
    return out.splitlines()


def sockets_to_port(pids, port):
    """httpd children's TCP sockets (any state but LISTEN) whose peer is
    127.0.0.1:port, as (state, local, peer) tuples."""
    pids = set(pids)
    found = []
    for line in ss_lines():
        cols = line.split()
        if len(cols) < 5 or cols[0] == "LISTEN":
            continue
        state, local, peer = cols[0], cols[3], cols[4]
        owners = {int(p) for p in _SS_PID.findall(line)}
        if owners & pids and peer.endswith(":%d" % port):
            found.append((state, local, peer))
    return found


def wait_no_sockets(server, port, timeout=3.0):
    end = time.time() + timeout
    left = None
    while time.time() < end:
        left = sockets_to_port(server.children(), port)
        if not left:
            return []
        time.sleep(0.05)
    return left


def child_of_client(server, local_port):
    """The pid of the httpd child serving our client socket local_port."""
    for line in ss_lines():
        cols = line.split()
        if len(cols) < 5 or cols[0] != "ESTAB":
            continue
        if cols[3].endswith(":%d" % server.port) and cols[4].endswith(":%d" % local_port):
            m = _SS_PID.search(line)
            if m:
                return int(m.group(1))
    return None


def ws_local_port(ws):
    return ws.transport.get_extra_info("sockname")[1]


def api(server, path, method="GET", body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def text(server, path, timeout=10):
    with urllib.request.urlopen(server.base + path, timeout=timeout) as r:
        return r.read().decode()


def metrics(server):
    """/metrics as {name{labels}: value}."""
    out = {}
    for line in text(server, "/metrics").splitlines():
        if not line or line.startswith("#"):
            continue
        k, _, v = line.rpartition(" ")
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def status_auto(server):
    out = {}
    for line in text(server, "/server-status?auto").splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def wait_idle(server, timeout=5.0):
    """Waits until the status board shows nothing generating or queued and
    mod_status shows only the worker answering it busy."""
    end = time.time() + timeout
    st = sa = None
    while time.time() < end:
        _, st = api(server, "/api/status")
        sa = status_auto(server)
        busy_backends = [b for b in st["backends"] if b["active"] or b["queued"]]
        if (st["generating"] == 0 and st["queued"] == 0 and not busy_backends and
                int(sa.get("BusyWorkers", "99")) <= 1):
            return st, sa
        time.sleep(0.05)
    raise AssertionError("httpd not idle: %r %r" % (st, sa))


def failed_turn_line(server, conv, code, timeout=5.0):
    """The error log's line for the failed turn of conversation conv (its
    details: URL, HTTP status, the backend's words), which users never see
    (docs/security.md)."""
    rx = re.compile(r"\[chatbot:warn\] .* chatbot: turn .*conversation=%s outcome=failed "
                    r"code=%s " % (re.escape(conv), re.escape(code)))
    end = time.time() + timeout
    while True:
        with open(server.error_log, errors="replace") as f:
            for line in f:
                if rx.search(line):
                    return line
        if time.time() > end:
            raise AssertionError("no failed-turn line for %s %s" % (conv, code))
        time.sleep(0.05)


def assert_quiet(message, *details):
    """An error message for users: none of the details, no URL, no status."""
    for d in details:
        assert str(d) not in message, (d, message)
    assert "://" not in message and "HTTP" not in message and "127.0.0.1" not in message, \
        message
