"""What a parked WebSocket (idle, in the event MPM, no thread) still does
(issue 13 point 2): keep-alive pings, the idle timeout and httpd's own
Timeout, session pushes, resume, stop, waiting for a worker, graceful
restart (1001) and immediate stop, slow readers parked on write, access-log
notes, no libcurl handle while idle, and a `history` frame that creates
nothing."""
import json
import os
import re
import socket
import struct
import threading
import time
import urllib.request

from histutil import Conn, Rest, new_cookie, status_auto
from wsclient import RawWS, accept_for

EXTRA = "ChatbotRateLimit off\n"
# the cookie identities below are anonymous: their history quota (1M by
# default, ChatbotQuota) must hold the multi-MB messages these tests send
BIG_QUOTA = "ChatbotQuota anonymous history=16M\n"


def metrics(server):
    with urllib.request.urlopen(server.base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(chatbot_\w+) (-?[0-9.]+)$", text, re.M)}


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def parked(server, n):
    return wait_for(lambda: metrics(server)["chatbot_websocket_connections_parked"] >= n,
                    what="%d parked connections" % n)


def child_fds(server):
    return sum(len(os.listdir("/proc/%d/fd" % p)) for p in server.children())


def frames_until_close(ws, seconds):
    """Reads frames (never answering pings) until a close or `seconds`;
    returns (list of opcodes, close code or None, seconds taken)."""
    t0 = time.time()
    ops = []
    ws.sock.settimeout(0.5)
    while time.time() - t0 < seconds:
        try:
            fin, op, payload, masked = ws.recv_frame()
        except socket.timeout:
            continue
        except (EOFError, ConnectionResetError):
            return ops, "eof", time.time() - t0
        ops.append(op)
        if op == 8:
            return ops, struct.unpack("!H", payload[:2])[0], time.time() - t0
    return ops, None, time.time() - t0


# ---- keep-alive and timeouts ------------------------------------------------------------

def test_pings_keep_a_parked_connection_past_httpd_timeout(httpd):
    """The MPM closes a parked connection that stays silent for Timeout;
    the server's pings (at least twice per Timeout) make the client answer,
    and the pong keeps it."""
    s = httpd(extra=EXTRA + "Timeout 2\n<Location /ws>\nChatbotPingInterval 1s\n</Location>")
    c = Conn(s)
    parked(s, 1)
    pings = 0
    end = time.time() + 7
    c.sock.settimeout(0.5)
    while time.time() < end:
        try:
            fin, op, payload, masked = c.recv_frame()
        except socket.timeout:
            continue
        if op == 9:
            pings += 1
            c.send(10, payload)
        assert op != 8, "closed while answering pings"
    assert pings >= 5
    assert c.request({"type": "ping"}, "pong")["type"] == "pong"
    c.close()


def test_idle_timeout_closes_a_parked_connection(httpd):
    """ChatbotIdleTimeout: a client that answers nothing, not even pings,
    gets 1008 after it (the watcher wakes the parked connection)."""
    s = httpd(extra=EXTRA + "<Location /ws>\nChatbotPingInterval 1s\n"
                            "ChatbotIdleTimeout 3s\n</Location>", loglevel="debug")
    ws = RawWS(s.port)
    parked(s, 1)
    ops, code, took = frames_until_close(ws, 15)
    ws.close()
    assert 9 in ops                           # it was pinged first
    assert code == 1008 and 2.5 < took < 8, (ops, code, took)
    wait_for(lambda: "idle timeout (no pong)" in s.read_error_log(), what="the log line")


def test_httpd_timeout_closes_a_silent_parked_connection(httpd):
    """httpd's Timeout, which the MPM applies to a parked connection, ends a
    peer that answers no ping before ChatbotIdleTimeout does: the module
    still says goodbye (1008) from its pre_close_connection hook."""
    s = httpd(extra=EXTRA + "Timeout 2\n<Location /ws>\nChatbotPingInterval off\n"
                            "ChatbotIdleTimeout 60s\n</Location>", loglevel="debug")
    ws = RawWS(s.port)
    ops, code, took = frames_until_close(ws, 15)
    ws.close()
    assert code == 1008 and took < 8, (ops, code, took)
    wait_for(lambda: "httpd's Timeout passed without a byte from the client" in
             s.read_error_log(), what="the log line")


# ---- the chat from parked connections ------------------------------------------------

def test_session_push_resume_and_stop_reach_a_parked_tab(httpd):
    s = httpd(extra=EXTRA)
    me = new_cookie()
    a, b = Conn(s, cookie=me), Conn(s, cookie=me)
    parked(s, 2)
    # a session launched in tab a is pushed to the parked tab b
    conv = a.launch(title="pushed")
    m, _ = b.wait(lambda f: f.get("type") == "sessions" and "id" not in f and
                  any(x["conversation_id"] == conv for x in f["sessions"]), 10)
    # tab a answers slowly; the parked tab b follows it, then stops it
    a.send_json({"type": "message", "content": "slow [[fake tokens=200 delay_ms=30]]",
                 "conversation_id": conv})
    a.wait("stream", 10)
    b.send_json({"type": "resume", "conversation_id": conv})
    b.wait(lambda f: f.get("type") == "stream" and f.get("conversation_id") == conv, 10)
    b.send_json({"type": "stop", "conversation_id": conv})
    ra, _ = a.wait(lambda f: f.get("type") in ("response", "error"), 15)
    assert ra["type"] == "response" and ra["interrupted"] is True, ra
    rb, _ = b.wait(lambda f: f.get("type") in ("response", "error"), 15)
    assert rb["type"] == "response" and rb.get("resumed") is True, rb
    assert rb["content"] == ra["content"]
    a.close()
    b.close()


def test_a_turn_waits_for_a_worker_without_a_thread(httpd):
    """ChatbotMaxWorkers 1: a second question waits (status queued), parked,
    and is answered when the first one ends; a queued one can be stopped."""
    s = httpd(extra=EXTRA + "ChatbotMaxWorkers 1\nChatbotMaxAnswersPerIP off\n",
              serverlimit=1, threads=4)
    a, b, c = Conn(s), Conn(s), Conn(s)
    a.send_json({"type": "message", "content": "first [[fake tokens=20 delay_ms=100]]",
                 "id": "a1"})
    a.wait("stream", 10)
    b.send_json({"type": "message", "content": "second [[fake tokens=3]]", "id": "b1"})
    q, _ = b.wait("status", 10)
    assert q["state"] == "queued" and q["position"] == 1 and q["id"] == "b1", q
    c.send_json({"type": "message", "content": "third [[fake tokens=3]]", "id": "c1"})
    q, _ = c.wait("status", 10)
    assert q["state"] == "queued" and q["position"] == 2, q
    m = metrics(s)
    assert m["chatbot_websocket_workers_max"] == 1, m
    assert m["chatbot_websocket_connections_waiting"] == 2, m
    assert m["chatbot_websocket_connections_active"] == 1, m
    c.send_json({"type": "stop", "id": "c2"})
    e, _ = c.wait("error", 10)
    assert e["code"] == "interrupted", e
    ra, _ = a.wait("response", 15)
    rb, before = b.wait(lambda f: f.get("type") in ("response", "error"), 15)
    assert rb["type"] == "response" and rb["content"].split() == ["t0", "t1", "t2"], rb
    assert [f for f in before if f.get("type") == "ack" and f.get("id") == "b1"]
    assert metrics(s)["chatbot_websocket_connections_waiting"] == 0
    for x in (a, b, c):
        x.close()


def test_answers_per_address_are_capped(httpd):
    """ChatbotMaxAnswersPerIP 1: a second answer for the same address waits
    (queued) with workers to spare, and starts when the first one ends."""
    s = httpd(extra=EXTRA + "ChatbotMaxAnswersPerIP 1\n", serverlimit=1, threads=8)
    a, b = Conn(s), Conn(s)
    a.send_json({"type": "message", "content": "one [[fake tokens=10 delay_ms=100]]"})
    a.wait("stream", 10)
    b.send_json({"type": "message", "content": "two [[fake tokens=2]]", "id": "b"})
    q, _ = b.wait("status", 10)
    assert q["state"] == "queued", q
    m = metrics(s)
    assert m["chatbot_websocket_workers_max"] == 4, m      # not the limit here
    assert m["chatbot_websocket_connections_waiting"] == 1, m
    ra, _ = a.wait("response", 15)
    rb, _ = b.wait(lambda f: f.get("type") in ("response", "error"), 15)
    assert rb["type"] == "response", rb
    a.close()
    b.close()


def test_idle_connections_hold_no_libcurl_handle(httpd):
    """An idle connection holds its socket and nothing else: no curl multi
    handle (each holds a socket pair)."""
    s = httpd(extra=EXTRA, serverlimit=1, threads=8)
    warm = Conn(s)
    assert warm.turn("warm [[fake tokens=2]]")[-1]["type"] == "response"
    time.sleep(0.5)
    before = child_fds(s)
    conns = [Conn(s) for _ in range(60)]
    for c in conns[:10]:
        assert c.turn("one turn [[fake tokens=2]]")[-1]["type"] == "response"
    parked(s, 61)
    added = child_fds(s) - before
    assert 60 <= added <= 60 + 4, added
    for c in conns + [warm]:
        c.close()


def pss_anon_kb(server):
    """Anonymous memory (heap) of the children, in KB, as PSS."""
    total = 0
    for pid in server.children():
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    total += int(line.split()[1])
    return total


def test_long_parked_connections_give_their_spare_memory_back(httpd):
    """A parked connection's allocator keeps the nodes it freed (the buffers
    that read the handshake and wrote the 101, the last turn's) for reuse;
    parked for 2 s, it gives them back to malloc, once per park: the heap
    shrinks by several KB per connection, and every connection still
    chats afterwards (a damaged allocator would show there)."""
    s = httpd(extra=EXTRA + "<Location /ws>\nChatbotPingInterval off\n</Location>\n")
    n = 300
    t0 = time.time()
    conns = [Conn(s) for _ in range(n)]
    parked(s, n)
    before = pss_anon_kb(s)
    opened_in = time.time() - t0
    time.sleep(4.5)   # LEAN_AFTER_MS (2 s) after the last park, and the watcher's passes
    after = pss_anon_kb(s)
    given_back = (before - after) / n
    # 8 KB per connection here. If opening them took long, the first ones
    # were lean before the first measure: count only those surely opened
    # within 1.5 s of it (at an even pace).
    fresh = min(1.0, 1.5 / max(opened_in, 0.001))
    assert given_back >= 4.0 * fresh, (before, after, given_back, opened_in)
    for c in conns[::10]:
        assert c.turn("after the lean [[fake tokens=3]]")[-1]["type"] == "response"
        assert c.request({"type": "ping"}, "pong")["type"] == "pong"
    for c in conns:
        c.close()


# ---- slow readers ---------------------------------------------------------------------------

def slow_reader(server, cookie, request):
    """A client that asks for something big and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                  "Sec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n"
                  % (server.port, key, cookie)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0] and accept_for(key).encode() in head
    sock.sendall(RawWS.frame(1, json.dumps(request)))
    return sock


def test_slow_readers_park_on_write_instead_of_holding_workers(httpd):
    """Clients that ask for a few MB and do not read: each reply waits in the
    MPM for room to write (CONN_SENSE_WANT_WRITE), not on a worker: with
    more such clients than the child has threads, GET / still answers."""
    s = httpd(extra=EXTRA + "ChatbotHistorySize 64M\nChatbotMaxAnswerBytes 8M\n"
                            + BIG_QUOTA +
                            "<Location /ws>\nChatbotMaxMessageBytes 8M\n</Location>",
              serverlimit=1, threads=4,
              # 8 upgrades at once on 4 threads: on a loaded machine all 4
              # can be busy with handshakes for a moment, and the event MPM
              # logs that at error level; what counts is that GET / answers
              allow_errors=(r"AH00484",))
    me = new_cookie()
    c = Conn(s, cookie=me, timeout=60)
    big = "x" * (3 * 1024 * 1024) + " [[fake tokens=1]]"
    assert c.turn(big, timeout=60)[-1]["type"] == "response"
    c.close()
    socks = [slow_reader(s, me, {"type": "history", "limit": 10}) for _ in range(8)]
    try:
        time.sleep(1.0)
        t0 = time.time()
        with urllib.request.urlopen(s.base + "/", timeout=10) as r:
            assert r.status == 200
        assert time.time() - t0 < 2.0
        assert metrics(s)["chatbot_websocket_connections_parked"] >= 8
        # a reader that starts reading gets the whole reply
        sock = socks[0]
        sock.settimeout(20)
        data = b""
        while data.count(b"x" * 1024) < 3 * 1024:
            chunk = sock.recv(1 << 20)
            assert chunk
            data += chunk
        assert b'"type":"history"' in data
    finally:
        for x in socks:
            x.close()


def test_a_reply_too_big_for_the_socket_at_the_upgrade_arrives_whole(httpd):
    """Frames sent with the upgrade are handled before the handler returns;
    a reply that then does not fit in the socket goes to the MPM waiting to
    write, and comes back to the module when there is room - also when the
    MPM's own flush empties what the network filter held (the connection
    must not fall into keep-alive, where KeepAliveTimeout cut the reply)."""
    s = httpd(extra=EXTRA + "KeepAliveTimeout 1\nChatbotHistorySize 64M\n"
                            "ChatbotMaxAnswerBytes 8M\n" + BIG_QUOTA +
                            "<Location /ws>\nChatbotMaxMessageBytes 8M\n</Location>",
              serverlimit=1, threads=16, loglevel="trace2")
    size = 6 * 1024 * 1024     # more than the kernel's socket buffers hold (4 MB)
    me = new_cookie()
    c = Conn(s, cookie=me, timeout=60)
    assert c.turn("x" * size + " [[fake tokens=1]]", timeout=60)[-1]["type"] == "response"
    c.close()
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    upgrade = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
               "Sec-WebSocket-Version: 13\r\nCookie: %s\r\n\r\n"
               % (s.port, key, me)).encode()
    ask = RawWS.frame(1, json.dumps({"type": "history", "limit": 10}))
    results = []

    def one():
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", s.port))
        sock.sendall(upgrade + ask)     # the question comes with the upgrade
        xs, head = 0, bytearray()
        try:
            while xs < size:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                if len(head) < 4096:
                    head += chunk[:4096]
                xs += chunk.count(b"x")
                time.sleep(0.001)       # a reader slower than the server
        except OSError:
            pass
        sock.close()
        results.append(xs >= size and b'"type":"history"' in head)

    for _ in range(4):
        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == 32 and all(results), "%d of %d replies cut" % (
        results.count(False), len(results))
    # the path this is about was taken
    assert "handed to the MPM (waits to write)" in s.read_error_log()


# ---- restarts and stops ------------------------------------------------------------------

def test_graceful_restart_says_1001_to_parked_connections(httpd):
    s = httpd(extra=EXTRA)
    conns = [RawWS(s.port) for _ in range(40)]
    parked(s, 40)
    t0 = time.time()
    s.graceful(wait=False)
    codes = [ws.close_code(timeout=10) for ws in conns]
    took = time.time() - t0
    for ws in conns:
        ws.close()
    assert codes == [1001] * 40, codes
    assert took < 5
    ws = RawWS(s.port)  # the new generation takes connections
    ws.send_json({"type": "ping"})
    assert ws.recv_json()["type"] == "pong"
    ws.close()


def test_graceful_stop_says_1001_to_parked_connections(httpd):
    s = httpd(extra=EXTRA)
    conns = [RawWS(s.port) for _ in range(20)]
    parked(s, 20)
    s.ctl("-k", "graceful-stop")
    codes = [ws.close_code(timeout=10) for ws in conns]
    for ws in conns:
        ws.close()
    assert codes == [1001] * 20, codes


def test_immediate_stop_with_parked_and_streaming_connections(httpd):
    """An immediate stop: parked connections end with the child (TCP closed),
    answers being streamed stop and are kept; no child crashes (the
    httpd fixture fails the test on a crashed child)."""
    for rnd in range(3):
        s = httpd(extra=EXTRA + "ChatbotHistoryFile history.bin\n", name="stopmix")
        idle = [RawWS(s.port) for _ in range(40)]
        busy = [Conn(s, cookie=new_cookie()) for _ in range(10)]
        for c in busy:
            c.send_json({"type": "message", "content": "x [[fake tokens=400 delay_ms=10]]"})
        for c in busy:
            c.wait("stream", 10)
        t0 = time.time()
        s.stop()
        assert time.time() - t0 < 10
        for ws in idle:
            assert ws.close_code(timeout=5) in (1001, "eof")
            ws.close()
        for c in busy:
            c.close()
        assert not s.bad_log_lines(), "round %d" % rnd
        assert "history saved to" in s.read_error_log()


# ---- what stays as it was ------------------------------------------------------------------

def test_access_log_line_is_written_when_the_websocket_closes(httpd):
    """The upgrade request stays open while the connection lives (parked or
    not): its access-log line comes at the end, with the connection's notes
    and its whole duration."""
    s = httpd(extra=EXTRA)
    c = Conn(s)
    assert c.turn("noted [[fake tokens=4]]")[-1]["type"] == "response"
    time.sleep(1.2)       # parked meanwhile
    assert c.request({"type": "ping"}, "pong")["type"] == "pong"
    assert not [ln for ln in s.access_lines() if "c=%s" % c.tag in ln]
    c.send(8, struct.pack("!H", 1000))
    assert c.close_code() == 1000
    c.close()
    line = wait_for(lambda: [ln for ln in s.access_lines() if "c=%s" % c.tag in ln],
                    what="the access log line")[0]
    assert '" 101 ' in line
    assert "tokens=4" in line and "messages=1" in line and "close=1000/1000" in line, line
    duration_us = int(re.search(r'" 101 \S+ (\d+) ', line).group(1))
    assert duration_us > 1200000


def test_history_without_conversation_creates_nothing(httpd):
    """A read never creates state: `history` with no conversation id (and
    none yet) answers an empty history."""
    s = httpd(extra=EXTRA)
    me = new_cookie()
    c = Conn(s, cookie=me)
    h = c.request({"type": "history"}, "history")
    assert h["type"] == "history" and h["messages"] == [] and h["conversation_id"] is None
    assert h["total"] == 0
    sessions = c.request({"type": "sessions"}, "sessions")
    assert sessions["sessions"] == []
    r = Rest(s, cookie=me).get("/api/sessions")
    assert r.status_code == 200 and r.json()["sessions"] == [], r.text
    # with a conversation, it is that one's
    conv = c.launch()
    assert c.request({"type": "history"}, "history")["conversation_id"] == conv
    c.close()


def test_status_shows_parked_and_active_connections(httpd):
    s = httpd(extra=EXTRA)
    conns = [Conn(s) for _ in range(5)]
    parked(s, 5)
    st = status_auto(s)
    assert int(st["ChatbotConnectionsParked"]) == 5, st
    assert int(st["ChatbotConnectionsActive"]) == 0, st
    assert int(st["ChatbotMaxWorkers"]) == 32, st
    conns[0].send_json({"type": "message", "content": "busy [[fake tokens=50 delay_ms=50]]"})
    conns[0].wait("stream", 10)
    st = status_auto(s)
    assert int(st["ChatbotConnectionsActive"]) == 1 and \
        int(st["ChatbotConnectionsParked"]) == 4, st
    with urllib.request.urlopen(s.base + "/server-status", timeout=10) as r:
        html = r.read().decode()
    assert re.search(r"4 parked in the MPM \(no thread\), 1 streaming", html)
    for c in conns:
        c.close()
