"""RFC 6455 opening handshake: accepted and rejected cases (issue 2/3),
and the httpd conventions around it: HEAD and other methods get 405 with
Allow, token lists and casing are accepted, an offered extension or
subprotocol is never echoed, and frames sent with the upgrade request are
answered at once."""
import base64
import json
import os
import socket
import time

import pytest
import websockets

from wsclient import RawWS, accept_for, collect_turn, handshake, run, ssl_ctx


def test_valid_handshake_gets_101_and_hello(server):
    status, hdrs, s, rest, key = handshake(server.port)
    try:
        assert status == 101
        assert hdrs["upgrade"].lower() == "websocket"
        assert "upgrade" in hdrs["connection"].lower()
        assert hdrs["sec-websocket-accept"] == accept_for(key)
        assert "sec-websocket-extensions" not in hdrs  # nothing negotiated
    finally:
        s.close()


def test_hello_frame_describes_the_server(server):
    ws = RawWS(server.port)
    try:
        fin, op, payload, masked = ws.recv_frame()
        assert fin and op == 1 and not masked
        hello = json.loads(payload)
        assert hello["type"] == "hello"
        assert hello["protocol"] == 1
        assert hello["bots"] and hello["bots"][0]["model"] == "test-model"
        assert hello["limits"]["max_message_bytes"] == 65536
    finally:
        ws.close()


def test_rfc_example_accept_value():
    assert accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("case,kwargs,expect", [
    ("no upgrade header", dict(drop=("Upgrade",)), 426),
    ("upgrade to something else", dict(headers={"Upgrade": "h2c"}), 426),
    ("no connection upgrade token", dict(headers={"Connection": "keep-alive"}), 400),
    ("missing key", dict(drop=("Sec-WebSocket-Key",)), 400),
    ("key not 16 bytes", dict(key=base64.b64encode(b"short").decode()), 400),
    ("key not base64", dict(key="!!!!not-base64!!!!!!!!=="), 400),
    ("version 8", dict(headers={"Sec-WebSocket-Version": "8"}), 426),
    ("no version", dict(drop=("Sec-WebSocket-Version",)), 400),
    ("POST", dict(method="POST"), 405),
    ("HTTP/1.0", dict(version="HTTP/1.0"), 400),
    ("cross-site origin", dict(headers={"Origin": "https://evil.example"}), 403),
    ("null origin", dict(headers={"Origin": "null"}), 403),
    ("same host other port", dict(headers={"Origin": "http://127.0.0.1:1"}), 403),
])
def test_bad_handshakes_are_refused_quickly(server, case, kwargs, expect):
    t0 = time.time()
    status, hdrs, s, rest, key = handshake(server.port, **kwargs)
    s.close()
    assert status == expect, case
    assert time.time() - t0 < 3, "a bad handshake must not hang"
    if expect == 426 and "headers" in kwargs and "Sec-WebSocket-Version" in kwargs["headers"]:
        assert hdrs.get("sec-websocket-version") == "13"
    assert "sec-websocket-accept" not in hdrs


def test_same_origin_is_accepted(server):
    status, hdrs, s, rest, key = handshake(
        server.port, headers={"Origin": "http://127.0.0.1:%d" % server.port})
    s.close()
    assert status == 101


def test_origin_rejection_is_logged(server):
    status, _, s, _, _ = handshake(server.port, headers={"Origin": "https://attacker.test"})
    s.close()
    assert status == 403
    time.sleep(0.2)
    assert "origin https://attacker.test refused" in server.read_error_log()


def test_allowed_origins_directive(httpd):
    s = httpd(extra='<Location "/ws">\nChatbotAllowedOrigins https://chat.example.org\n'
                    '</Location>\nChatbotRateLimit off')
    ok, _, s1, _, _ = handshake(s.port, headers={"Origin": "https://chat.example.org"})
    s1.close()
    bad, _, s2, _, _ = handshake(s.port, headers={"Origin": "http://127.0.0.1:%d" % s.port})
    s2.close()
    assert ok == 101
    assert bad == 403


def test_plain_get_of_ws_endpoint_says_upgrade_required(server):
    import urllib.request
    import urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.base + "/ws", timeout=5)
    assert e.value.code == 426
    assert e.value.headers["Upgrade"].lower() == "websocket"


# ---- methods, token lists, offers, frames with the handshake -------------------------------

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
