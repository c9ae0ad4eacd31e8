"""WebSocket review: handshake details (RFC 6455 4.2, httpd conventions),
frames judged on their header alone, and the client let go promptly when
it leaves mid-answer, over HTTP/1.1 and HTTP/2 (RFC 8441)."""
import asyncio
import base64
import json
import os
import socket
import struct
import time

import pytest
import websockets

from backends_util import chat_requests_since, history, last_id, new_sid, wait_ended
from wsclient import H2WS, RawWS, accept_for, collect_turn, handshake, run, ssl_ctx


# ---- handshake ------------------------------------------------------------------------

def test_head_upgrade_is_refused_with_405(server):
    """httpd gives HEAD the method number of GET: it must not switch
    protocols (RFC 6455 4.1: the handshake is a GET)."""
    status, hdrs, s, rest, key = handshake(server.port, method="HEAD")
    s.close()
    assert status == 405
    assert "sec-websocket-accept" not in hdrs
    assert "GET" in [m.strip() for m in hdrs.get("allow", "").split(",")]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_get_405_allowing_get(server, method):
    status, hdrs, s, rest, key = handshake(server.port, method=method)
    s.close()
    assert status == 405
    assert "GET" in [m.strip() for m in hdrs.get("allow", "").split(",")], hdrs


def test_head_without_upgrade_is_not_a_hang(server):
    t0 = time.time()
    status, hdrs, s, rest, key = handshake(server.port, method="HEAD",
                                           drop=("Upgrade", "Sec-WebSocket-Key"))
    s.close()
    assert status == 426
    assert time.time() - t0 < 3


@pytest.mark.parametrize("case,headers", [
    ("connection token list", {"Connection": "keep-alive, Upgrade"}),
    ("connection token list, no space, upper case", {"Connection": "keep-alive,UPGRADE"}),
    ("Upgrade: WebSocket", {"Upgrade": "WebSocket"}),
    ("permessage-deflate offered", {
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}),
    ("subprotocols offered", {"Sec-WebSocket-Protocol": "chat, superchat"}),
])
def test_accepted_handshakes_negotiate_nothing(server, case, headers):
    """Token lists and casing are accepted; an extension or subprotocol we
    do not implement is never echoed (RFC 6455 4.2.2)."""
    status, hdrs, s, rest, key = handshake(server.port, headers=headers)
    try:
        assert status == 101, case
        assert hdrs["sec-websocket-accept"] == accept_for(key)
        assert "sec-websocket-extensions" not in hdrs
        assert "sec-websocket-protocol" not in hdrs
    finally:
        s.close()


def test_default_websockets_client_offering_compression_chats(server):
    """python websockets offers permessage-deflate by default; the server
    declines it and the chat works uncompressed."""
    async def go():
        async with websockets.connect(server.ws_url) as ws:
            assert ws.extensions == []
            hello = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "message", "content": "hi [[fake tokens=4]]"}))
            frames = await collect_turn(ws)
            return hello, frames
    hello, frames = run(go())
    assert hello["type"] == "hello"
    assert frames[-1]["type"] == "response"
    assert frames[-1]["content"] == "t0 t1 t2 t3"


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_frames_sent_with_the_handshake_are_answered(server, tls):
    """Frames that arrive with the upgrade request (same TCP segment / TLS
    record) were read by httpd with the request: they must be processed at
    once, not when the client next sends something."""
    port = server.sslport if tls else server.port
    key = base64.b64encode(os.urandom(16)).decode()
    req = ("GET /ws HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
           "\r\n" % (port, key)).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        s = ssl_ctx().wrap_socket(s, server_hostname="localhost")
    try:
        s.sendall(req + RawWS.frame(1, b'{"type":"ping"}') + RawWS.frame(9, b"early"))
        s.settimeout(3)
        buf = b""
        while b'{"type":"pong"}' not in buf or b"early" not in buf:
            try:
                d = s.recv(65536)
            except socket.timeout:
                pytest.fail("frames sent with the handshake were not answered: %r" % buf[-200:])
            if not d:
                pytest.fail("connection closed")
            buf += d
        assert buf.startswith(b"HTTP/1.1 101 ")
    finally:
        s.close()


# ---- frames judged on the header -------------------------------------------------------

def _close_code_quickly(ws, timeout=2.0):
    t0 = time.time()
    code = ws.close_code(timeout=timeout)
    return code, time.time() - t0


@pytest.mark.parametrize("case,header,code", [
    # 2^32 bytes announced, nothing more sent: 1009 at once (not after 4 GiB)
    ("huge text frame header", struct.pack("!BBQ", 0x81, 0xFF, 1 << 32) + b"\1\2\3\4", 1009),
    ("70000-byte text header", struct.pack("!BBQ", 0x81, 0xFF, 70000) + b"\1\2\3\4", 1009),
    ("unmasked header", struct.pack("!BB", 0x81, 10), 1002),
    ("reserved opcode header", struct.pack("!BB", 0x83, 0x8A) + b"\1\2\3\4", 1002),
    ("RSV1 header (no deflate negotiated)", struct.pack("!BB", 0xC1, 0x8A) + b"\1\2\3\4",
     1002),
])
def test_bad_frame_header_alone_is_refused_at_once(server, case, header, code):
    ws = RawWS(server.port)
    try:
        ws.recv_frame()  # hello
        ws.send_raw(header)
        got, took = _close_code_quickly(ws)
        assert got == code, case
        assert took < 1.5, "%s: answered after %.1f s" % (case, took)
        assert ws.wait_eof(3)
    finally:
        ws.close()


def test_continuation_header_over_the_limit_is_refused_at_once(server):
    ws = RawWS(server.port)
    try:
        ws.recv_frame()
        ws.send(1, b"{" + b" " * 60000, fin=False)
        ws.send_raw(struct.pack("!BBH", 0x80, 0xFE, 6000) + b"\1\2\3\4")  # 66001 > 65536
        got, took = _close_code_quickly(ws)
        assert got == 1009 and took < 1.5
    finally:
        ws.close()


def test_valid_header_alone_waits_for_its_payload(server):
    ws = RawWS(server.port)
    try:
        ws.recv_frame()
        msg = json.dumps({"type": "ping"}).encode()
        frame = RawWS.frame(1, msg)
        ws.send_raw(frame[:6])
        time.sleep(0.5)
        ws.send_raw(frame[6:])
        assert ws.recv_json()["type"] == "pong"
    finally:
        ws.close()


# ---- the client leaves mid-answer: let it go at once, finish into history -------------

SLOW = "slow [[fake tokens=30 delay_ms=100]]"  # about 3 s of answer
WHOLE = " ".join("t%d" % i for i in range(30))


def _history_last(server, sid, conv):
    async def back():
        ws = await websockets.connect(server.ws_url,
                                      extra_headers={"Cookie": "chatbot_sid=%s" % sid})
        await ws.recv()
        h = await history(ws, conv)
        await ws.close()
        return h
    return run(back())["messages"][-1]


def _check_finished_into_history(server, fake, mark, sid, conv):
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"], timeout=10)
    assert rec["outcome"] == "complete" and rec["tokens_sent"] == 30
    time.sleep(0.2)
    last = _history_last(server, sid, conv)
    assert last["role"] == "assistant" and last["content"] == WHOLE
    assert last["interrupted"] is False


def _h2_start_answer(server, sid):
    ws = H2WS(server.sslport, headers=[("cookie", "chatbot_sid=%s" % sid)])
    assert ws.status == 200
    ws.recv_json(skip_types=())  # hello
    ws.send_json({"type": "message", "content": SLOW})
    conv = None
    while True:
        m = ws.recv_json(skip_types=("status", "sessions", "hello"))
        if m["type"] == "ack":
            conv = m["conversation_id"]
        if m["type"] == "stream":
            return ws, conv


def test_h2_close_handshake_mid_answer_ends_the_stream_promptly(server, fake):
    """RFC 8441: after the close handshake the stream ends (END_STREAM) at
    once; the answer still finishes into history (ContinueWithoutViewer)."""
    sid = new_sid()
    mark = last_id(fake)
    ws, conv = _h2_start_answer(server, sid)
    try:
        t0 = time.time()
        ws.send(8, struct.pack("!H", 1000))
        while True:
            fin, op, payload, masked = ws.recv_frame(timeout=3)
            if op == 8:
                assert struct.unpack("!H", payload[:2])[0] == 1000
                break
        assert ws.wait_stream_end(5)
        took = time.time() - t0
        assert took < 1.0, "stream ended %.1f s after the close handshake" % took
    finally:
        ws.close()
    _check_finished_into_history(server, fake, mark, sid, conv)


def test_h2_end_stream_mid_answer_ends_the_stream_promptly(server, fake):
    """The client half-closes its stream without a close frame (the h2
    equivalent of a TCP FIN): the server ends its side at once too."""
    sid = new_sid()
    mark = last_id(fake)
    ws, conv = _h2_start_answer(server, sid)
    try:
        t0 = time.time()
        ws.end_stream()
        assert ws.wait_stream_end(5)
        took = time.time() - t0
        assert took < 1.0, "stream ended %.1f s after the client's END_STREAM" % took
    finally:
        ws.close()
    _check_finished_into_history(server, fake, mark, sid, conv)


def test_tcp_fin_mid_answer_closes_the_connection_promptly(server, fake):
    """A TCP FIN without a close frame mid-answer: the server closes its
    side at once (it does not keep the half-closed socket until the answer
    ends) and finishes the answer into history."""
    sid = new_sid()
    mark = last_id(fake)
    ws = RawWS(server.port, headers={"Cookie": "chatbot_sid=%s" % sid})
    try:
        ws.send_json({"type": "message", "content": SLOW})
        conv = None
        while True:
            m = ws.recv_json(skip_types=("status", "sessions"))
            if m["type"] == "ack":
                conv = m["conversation_id"]
            if m["type"] == "stream":
                break
        t0 = time.time()
        ws.sock.shutdown(socket.SHUT_WR)
        assert ws.wait_eof(5)
        took = time.time() - t0
        assert took < 1.0, "TCP closed %.1f s after the client's FIN" % took
    finally:
        ws.close()
    _check_finished_into_history(server, fake, mark, sid, conv)


def test_h2_close_mid_answer_without_continuing_ends_the_stream(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotContinueWithoutViewer off")
    mark = last_id(fake)
    ws, conv = _h2_start_answer(s, new_sid())
    try:
        t0 = time.time()
        ws.send(8, struct.pack("!H", 1000))
        assert ws.wait_stream_end(5)
        assert time.time() - t0 < 1.0
    finally:
        ws.close()
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"], timeout=5)
    assert rec["outcome"] == "client_closed"


# ---- frame and close edge cases (regressions) -----------------------------------------

def _reactions(ws, timeout=2.0):
    """What the server sends until it ends the connection: a list of
    'close:<code>', 'pong:<hex>', 'json:<type>' items, then 'eof' or 'open'."""
    out = []
    ws.sock.settimeout(timeout)
    try:
        while True:
            fin, op, payload, masked = ws.recv_frame()
            if op == 8:
                out.append("close:%s" % (struct.unpack("!H", payload[:2])[0]
                                         if len(payload) >= 2 else None))
                out.append("eof" if ws.wait_eof(3) else "open")
                return out
            if op == 10:
                out.append("pong:" + payload.hex())
            elif op == 1:
                m = json.loads(payload)
                out.append("json:" + m["type"] + (":" + m["code"] if "code" in m else ""))
    except socket.timeout:
        out.append("open")
    except (EOFError, ConnectionResetError):
        out.append("eof")
    return out


@pytest.mark.parametrize("case,data,expect", [
    ("64-bit length with the most significant bit set",
     struct.pack("!BBQ", 0x81, 0xFF, (1 << 63) | 5) + b"\1\2\3\4" + b"x" * 5,
     ["close:1002", "eof"]),
    ("16-bit length used for 5 bytes (not minimal)",
     struct.pack("!BBH", 0x81, 0xFE, 5) + b"\0\0\0\0" + b"xxxxx", ["close:1002", "eof"]),
    ("close with a 123-byte reason is echoed",
     RawWS.frame(8, struct.pack("!H", 1000) + b"r" * 123), ["close:1000", "eof"]),
    ("close with a 124-byte reason (control frame over 125)",
     RawWS.frame(8, struct.pack("!H", 1000) + b"r" * 124), ["close:1002", "eof"]),
    ("close after close: one echo",
     RawWS.frame(8, struct.pack("!H", 4001)) + RawWS.frame(8, struct.pack("!H", 1000)),
     ["close:4001", "eof"]),
    ("data and ping after close are ignored",
     RawWS.frame(8, struct.pack("!H", 1000)) + RawWS.frame(1, b'{"type":"ping"}')
     + RawWS.frame(9, b"late"), ["close:1000", "eof"]),
    ("zero-length fragmented text is one empty message",
     RawWS.frame(1, b"", fin=False) + RawWS.frame(0, b"", fin=False) + RawWS.frame(0, b""),
     ["json:error:bad_json", "open"]),
    ("control frames between fragments",
     RawWS.frame(1, b'{"type"', fin=False) + RawWS.frame(9, b"a") + RawWS.frame(10, b"b")
     + RawWS.frame(0, b':"ping"}'), ["pong:61", "json:pong", "open"]),
])
def test_frame_and_close_edge_cases(server, case, data, expect):
    ws = RawWS(server.port)
    try:
        ws.recv_frame()
        ws.send_raw(data)
        assert _reactions(ws, timeout=1.0) == expect, case
    finally:
        ws.close()


def test_h2_close_handshake_when_idle_ends_the_stream(server):
    ws = H2WS(server.sslport)
    try:
        ws.recv_json(skip_types=())
        t0 = time.time()
        ws.send(8, struct.pack("!H", 1000) + b"bye")
        fin, op, payload, masked = ws.recv_frame(timeout=3)
        assert op == 8 and struct.unpack("!H", payload[:2])[0] == 1000
        assert ws.wait_stream_end(3) and time.time() - t0 < 1.0
    finally:
        ws.close()


def test_silent_idle_longer_than_timeout_and_reqtimeout(httpd):
    """No traffic at all (no pings) for longer than httpd's Timeout and
    mod_reqtimeout's limits: the chat is still there, over ws://, wss://
    and HTTP/2."""
    s = httpd(extra="ChatbotRateLimit off\nTimeout 2\nKeepAliveTimeout 2\n"
                    "RequestReadTimeout header=2 body=2\n"
                    '<Location "/ws">\nChatbotPingInterval off\n</Location>')

    async def one(url, **kw):
        async with websockets.connect(url, ping_interval=None, **kw) as ws:
            await ws.recv()
            try:
                m = await asyncio.wait_for(ws.recv(), 6)
                return "unexpected frame %r" % m
            except asyncio.TimeoutError:
                pass
            await ws.send(json.dumps({"type": "ping"}))
            return json.loads(await asyncio.wait_for(ws.recv(), 5))["type"]

    async def both():
        return await asyncio.gather(one(s.ws_url), one(s.wss_url, ssl=ssl_ctx()),
                                    return_exceptions=True)
    h2 = H2WS(s.sslport)
    try:
        h2.recv_json(skip_types=())
        assert run(both()) == ["pong", "pong"]
        h2.send_json({"type": "ping"})
        assert h2.recv_json()["type"] == "pong"
    finally:
        h2.close()
