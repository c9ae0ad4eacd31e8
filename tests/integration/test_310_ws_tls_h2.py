"""WebSockets over TLS (mod_ssl, wss://) and over HTTP/2 (RFC 8441,
`H2WebSockets on`): the same chat works through both (issue 3), and a
close handshake ends an idle HTTP/2 stream at once."""
import json
import struct
import time

import pytest
import websockets

from conftest import DEFAULT_EXTRA
from histutil import module_server
from wsclient import H2WS, collect_turn, run, ssl_ctx


@pytest.fixture(scope="module")
def server(fake):
    """The default server with WebSockets over HTTP/2 on: the shipped
    configuration leaves them off (docs/websocket.md, "HTTP/2")."""
    yield from module_server(fake, DEFAULT_EXTRA + "H2WebSockets on\n", "tlsh2")


def test_wss_chat_through_mod_ssl(server):
    async def go():
        ws = await websockets.connect(server.wss_url, ssl=ssl_ctx())
        hello = json.loads(await ws.recv())
        await ws.send(json.dumps({"type": "message", "content": "over tls [[fake tokens=5]]"}))
        frames = await collect_turn(ws)
        await ws.close()
        return hello, frames
    hello, frames = run(go())
    assert hello["type"] == "hello"
    streams = "".join(f["content"] for f in frames if f["type"] == "stream")
    assert frames[-1]["type"] == "response" and frames[-1]["content"] == streams
    assert len([f for f in frames if f["type"] == "stream"]) == 5


def test_wss_close_handshake(server):
    async def go():
        ws = await websockets.connect(server.wss_url, ssl=ssl_ctx())
        await ws.recv()
        await ws.close(code=1000, reason="bye")
        return ws.close_code
    assert run(go()) == 1000


def test_websocket_over_http2(server):
    ws = H2WS(server.sslport)
    try:
        assert ws.status == 200, "extended CONNECT must be answered 200"
        fin, op, payload, masked = ws.recv_frame()
        hello = json.loads(payload)
        assert hello["type"] == "hello" and not masked
        ws.send_json({"type": "ping"})
        assert ws.recv_json()["type"] == "pong"
        ws.send_json({"type": "message", "content": "over h2 [[fake tokens=6]]"})
        got = []
        while True:
            m = ws.recv_json()
            got.append(m)
            if m["type"] in ("response", "error"):
                break
        assert got[-1]["type"] == "response", got
        assert "".join(m["content"] for m in got if m["type"] == "stream") == got[-1]["content"]
        assert len([m for m in got if m["type"] == "stream"]) == 6
        # control frames over h2 too
        ws.send(9, b"h2ping")
        while True:
            fin, op, payload, masked = ws.recv_frame()
            if op == 10:
                assert payload == b"h2ping"
                break
        ws.send(8, struct.pack("!H", 1000))
        while True:
            fin, op, payload, masked = ws.recv_frame()
            if op == 8:
                assert struct.unpack("!H", payload[:2])[0] == 1000
                break
    finally:
        ws.close()


def test_http2_cross_origin_refused(server):
    ws = H2WS(server.sslport, origin="https://evil.example")
    try:
        assert ws.status == 403
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
