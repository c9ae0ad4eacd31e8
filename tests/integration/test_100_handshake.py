"""RFC 6455 opening handshake: accepted and rejected cases (issue 2/3)."""
import base64
import json
import time

import pytest

from wsclient import RawWS, accept_for, handshake


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
