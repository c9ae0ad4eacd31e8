"""RFC 6455 conformance, table-driven in the spirit of the Autobahn|Testsuite
server cases 1-7 (and 9 for sizes). Each case sends raw frames from a
stdlib-socket client and states the server's expected reaction. Every case
runs three ways: frames sent whole, chopped into small TCP writes, and one
byte at a time, and must give the same observations.

mod_chatbot is not an echo server: a text message is a JSON protocol
message. "Handled" therefore means: a padded {"type":"ping"} of exactly N
bytes gets {"type":"pong"}; an empty or non-JSON text gets a bad_json error
frame; binary messages are refused with close 1003 (RFC 6455 7.4.1).

Then frames judged on their header alone (refused at once, not after the
announced payload), frame and close edge cases, server pings, and an idle
chat that outlives httpd's Timeout and mod_reqtimeout's limits.
"""
import asyncio
import json
import socket
import struct
import time

import pytest
import websockets

from conftest import CONFORMANCE
from wsclient import H2WS, RawWS, run, ssl_ctx

F = RawWS.frame
TEXT, BIN, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def padded_ping(n):
    """A JSON ping message of exactly n bytes (n >= 15)."""
    base = '{"type":"ping","pad":""}'
    if n < len(base):
        raise ValueError(n)
    return base[:-2] + "x" * (n - len(base)) + '"}'


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


def observe(ws, want, timeout=3.0):
    """Reads up to `want` reactions: 'pong:<hex>', 'json:<type>', 'close:<code>',
    'eof'. Stops early on close/eof. Returns the list."""
    out = []
    ws.sock.settimeout(timeout)
    try:
        while len(out) < want:
            fin, op, payload, masked = ws.recv_frame()
            assert not masked, "server frames must never be masked"
            if op == PONG:
                if payload == b"chatbot":  # reply to our own keep-alive ping? never sent
                    continue
                out.append("pong:" + payload.hex())
            elif op == PING:
                ws.send(PONG, payload)
            elif op == TEXT:
                msg = json.loads(payload.decode("utf-8"))
                if msg["type"] in ("hello", "sessions", "status"):
                    continue
                out.append("json:" + (msg["type"] if msg["type"] != "error" else
                                      "error:" + msg["code"]))
            elif op == CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                out.append("close:%s" % code)
                break
            else:
                out.append("op:%d" % op)
    except socket.timeout:
        pass
    except (EOFError, ConnectionResetError):
        out.append("eof")
    return out


# (id, description, frames to send, expected reactions)
def cases():
    c = []
    # 1.x  payload sizes, text and binary
    for n in (125, 126, 127, 128, 65535, 65536):
        c.append(("1.1.%d" % n, "text message of %d bytes" % n,
                  [F(TEXT, padded_ping(n))], ["json:pong"]))
    c.append(("1.1.0", "empty text message", [F(TEXT, b"")], ["json:error:bad_json"]))
    for n in (0, 125, 65536):
        c.append(("1.2.%d" % n, "binary message of %d bytes" % n,
                  [F(BIN, b"\xfe" * n)], ["close:1003"]))
    # 2.x  pings and pongs
    c.append(("2.1", "ping, empty payload", [F(PING, b"")], ["pong:"]))
    c.append(("2.2", "ping, text payload", [F(PING, b"Hello, world!")],
              ["pong:" + b"Hello, world!".hex()]))
    c.append(("2.3", "ping, binary payload", [F(PING, b"\x00\xff\xfe\xfd\xfc\xfb\x00\xff")],
              ["pong:00fffefdfcfb00ff"]))
    c.append(("2.4", "ping, 125-byte payload", [F(PING, b"\xfe" * 125)],
              ["pong:" + "fe" * 125]))
    c.append(("2.5", "ping, 126-byte payload", [F(PING, b"\xfe" * 126)], ["close:1002"]))
    c.append(("2.6", "unsolicited pong is ignored",
              [F(PONG, b"unsolicited"), F(TEXT, padded_ping(30))], ["json:pong"]))
    c.append(("2.10", "ten pings, ten pongs in order",
              [F(PING, b"p%d" % i) for i in range(10)],
              ["pong:" + (b"p%d" % i).hex() for i in range(10)]))
    # 3.x  reserved bits
    for rsv in range(1, 8):
        c.append(("3.%d" % rsv, "RSV=%d on a text frame after a valid message" % rsv,
                  [F(TEXT, padded_ping(30)), F(TEXT, padded_ping(30), rsv=rsv),
                   F(TEXT, padded_ping(30))],
                  ["json:pong", "close:1002"]))
    c.append(("3.8", "RSV on a ping", [F(PING, b"x", rsv=4)], ["close:1002"]))
    # 4.x  reserved opcodes
    for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15):
        c.append(("4.op%d" % op, "reserved opcode %d" % op,
                  [F(TEXT, padded_ping(30)), F(op, b"reserved"), F(PING, b"after")],
                  ["json:pong", "close:1002"]))
    # 5.x  fragmentation
    msg = padded_ping(40).encode()
    c.append(("5.1", "fragmented ping", [F(PING, b"ab", fin=False), F(CONT, b"cd")],
              ["close:1002"]))
    c.append(("5.2", "fragmented pong", [F(PONG, b"ab", fin=False), F(CONT, b"cd")],
              ["close:1002"]))
    c.append(("5.3", "text in two fragments",
              [F(TEXT, msg[:10], fin=False), F(CONT, msg[10:])], ["json:pong"]))
    c.append(("5.6", "ping between fragments is answered at once",
              [F(TEXT, msg[:10], fin=False), F(PING, b"mid"), F(CONT, msg[10:])],
              ["pong:" + b"mid".hex(), "json:pong"]))
    c.append(("5.9", "continuation without a message", [F(CONT, b"orphan")], ["close:1002"]))
    c.append(("5.10", "orphan continuation after a message",
              [F(TEXT, padded_ping(30)), F(CONT, b"orphan", fin=True)],
              ["json:pong", "close:1002"]))
    c.append(("5.18", "new text frame inside a fragmented message",
              [F(TEXT, msg[:10], fin=False), F(TEXT, msg[10:])], ["close:1002"]))
    c.append(("5.19", "many fragments with pings",
              [F(TEXT, msg[:5], fin=False), F(PING, b"1"), F(CONT, msg[5:20], fin=False),
               F(PING, b"2"), F(CONT, msg[20:])],
              ["pong:31", "pong:32", "json:pong"]))
    # 6.x  UTF-8
    good = '{"type":"ping","pad":"κόσμε 日本 😀"}'.encode()
    c.append(("6.2", "valid UTF-8, split inside code points across fragments",
              [F(TEXT, good[:24], fin=False), F(CONT, good[24:27], fin=False),
               F(CONT, good[27:])], ["json:pong"]))
    for cid, bad in (("6.3.1", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),
                     ("6.6.overlong", b'{"type":"ping","x":"\xc0\xaf"}'),
                     ("6.8.surrogate", b'{"type":"ping","x":"\xed\xa0\x80"}'),
                     ("6.9.too-big", b'{"type":"ping","x":"\xf4\x90\x80\x80"}'),
                     ("6.10.bare-cont", b'{"type":"ping","x":"\x80"}'),
                     ("6.11.truncated-end", b'{"type":"ping"}\xe2\x82')):
        c.append((cid, "invalid UTF-8 in a text message", [F(TEXT, bad)], ["close:1007"]))
    c.append(("6.4.1", "invalid UTF-8 in the first fragment fails fast",
              [F(TEXT, b'{"type":"ping","x":"\xed\xa0\x80', fin=False)], ["close:1007"]))
    c.append(("6.4.2", "invalid UTF-8 across fragments",
              [F(TEXT, b'{"type":"ping","x":"\xe2', fin=False), F(CONT, b'\x28"}')],
              ["close:1007"]))
    # 7.x  close
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                 3000, 3999, 4000, 4999):
        c.append(("7.7.%d" % code, "close %d is echoed" % code,
                  [F(CLOSE, close_payload(code))], ["close:%d" % code]))
    for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
        c.append(("7.9.%d" % code, "invalid close code %d" % code,
                  [F(CLOSE, close_payload(code))], ["close:1002"]))
    c.append(("7.1.1", "close without a code is echoed without one",
              [F(CLOSE, b"")], ["close:None"]))
    c.append(("7.3.2", "close with a 1-byte payload", [F(CLOSE, b"\x03")], ["close:1002"]))
    c.append(("7.5.1", "close reason that is not UTF-8",
              [F(CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce"))],
              ["close:1007"]))
    c.append(("7.1.3", "nothing is processed after a close",
              [F(CLOSE, close_payload(1000)), F(TEXT, padded_ping(30)), F(PING, b"late")],
              ["close:1000"]))
    # misc: masking, sizes, floods
    c.append(("x.unmasked", "unmasked client frame", [F(TEXT, padded_ping(30), mask=False)],
              ["close:1002"]))
    # only the header and a few bytes are sent: the close must not wait for
    # (or buffer) the 64 KiB payload
    c.append(("9.too-big", "message over ChatbotMaxMessageBytes (header + 8 bytes)",
              [F(TEXT, b"x" * 8, length=65537)], ["close:1009"]))
    c.append(("9.too-big-frag", "fragmented message growing over the cap",
              [F(TEXT, b"x" * 40000, fin=False), F(CONT, b"x" * 40000)], ["close:1009"]))
    flood = [F(TEXT, b"{", fin=False)] + [F(CONT, b" ", fin=False)] * 2000
    c.append(("x.fragment-flood", "2000 tiny fragments in one message", flood,
              ["close:1008"]))
    return c


CASES = cases()


@pytest.mark.parametrize("mode", ["whole", "chopped", "bytewise"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conformance(server, case, mode):
    cid, desc, frames, expected = case
    data = b"".join(frames)
    if mode == "bytewise" and len(data) > 4096:
        pytest.skip("bytewise only for small cases")
    ws = RawWS(server.port)
    try:
        if mode == "whole":
            ws.send_raw(data)
        elif mode == "chopped":
            ws.send_raw(data, chop=7 if len(data) < 4096 else 997, delay=0.0005)
        else:
            ws.send_raw(data, chop=1, delay=0.0002)
        got = observe(ws, len(expected) + (1 if expected[-1].startswith("close") else 0))
        closing = expected[-1].startswith("close")
        ok = got[:len(expected)] == expected
        if ok and closing:
            # after the close handshake the server closes TCP
            ok = ws.wait_eof(5.0) if not got[-1] == "eof" else True
        if ok and not closing:
            # and the connection is still usable
            ws.send_raw(F(TEXT, padded_ping(30)))
            ok = observe(ws, 1) == ["json:pong"]
        CONFORMANCE.append(("%s [%s]" % (cid, mode), " ".join(expected),
                            " ".join(got) or "(nothing)", ok))
        assert got[:len(expected)] == expected, desc
        assert ok, "%s: connection state after the case is wrong" % desc
    finally:
        ws.close()


# ---- frames judged on the header; frame and close edge cases -------------------------------

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


# ---- idle chats --------------------------------------------------------------------------

def test_server_pings_idle_client(httpd):
    s = httpd(extra='ChatbotRateLimit off\n<Location "/ws">\nChatbotPingInterval 1s\n'
                    'ChatbotIdleTimeout 30s\n</Location>')
    ws = RawWS(s.port)
    try:
        ws.sock.settimeout(3)
        seen_ping = False
        end = time.time() + 3
        while time.time() < end and not seen_ping:
            fin, op, payload, masked = ws.recv_frame()
            seen_ping = op == PING
        assert seen_ping
    finally:
        ws.close()


def test_half_open_peer_is_dropped(httpd):
    """A client that never answers pings is closed after ChatbotIdleTimeout."""
    s = httpd(extra='ChatbotRateLimit off\n<Location "/ws">\nChatbotPingInterval 1s\n'
                    'ChatbotIdleTimeout 3s\n</Location>')
    ws = RawWS(s.port)
    try:
        t0 = time.time()
        ws.sock.settimeout(10)
        code = None
        try:
            while True:
                fin, op, payload, masked = ws.recv_frame()  # never pong
                if op == CLOSE:
                    code = struct.unpack("!H", payload[:2])[0]
                    break
        except EOFError:
            pass
        took = time.time() - t0
        assert code == 1008
        assert 2.5 < took < 6
        assert ws.wait_eof(5)
    finally:
        ws.close()


def test_idle_chat_survives_reqtimeout_and_timeout(httpd):
    """Debian's mod_reqtimeout (header=20-40) and Timeout must not kill an
    idle chat that answers pings: stay connected for 26 s."""
    s = httpd(extra='ChatbotRateLimit off\nTimeout 5\n<Location "/ws">\n'
                    'ChatbotPingInterval 2s\nChatbotIdleTimeout 10s\n</Location>')
    ws = RawWS(s.port)
    try:
        end = time.time() + 26
        ws.sock.settimeout(1)
        while time.time() < end:
            try:
                fin, op, payload, masked = ws.recv_frame()
                if op == PING:
                    ws.send(PONG, payload)
                assert op != CLOSE, "server closed an idle but alive chat"
            except socket.timeout:
                pass
        ws.send_json({"type": "ping"})
        ws.sock.settimeout(5)
        assert ws.recv_json()["type"] == "pong"
    finally:
        ws.close()


def test_silent_idle_longer_than_timeout_and_reqtimeout(httpd):
    """Nothing from the client for longer than httpd's Timeout and
    mod_reqtimeout's limits, with ChatbotPingInterval off: the chat is still
    there, over ws://, wss:// and HTTP/2. (A parked connection is still
    pinged twice per Timeout, which the event MPM applies to it; the
    client library answers those pings by itself.)"""
    s = httpd(extra="ChatbotRateLimit off\nTimeout 2\nKeepAliveTimeout 2\n"
                    "H2WebSockets on\nRequestReadTimeout header=2 body=2\n"
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
