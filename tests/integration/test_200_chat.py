"""The walking skeleton end to end: a browser-style client chats through
httpd with a streamed answer from the fake Ollama backend (issue 2)."""
import json
import time

import pytest
import websockets

from wsclient import RawWS, collect_turn, recv_type, run


async def connect(server, **kw):
    ws = await websockets.connect(server.ws_url, max_size=2 ** 22, **kw)
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello"
    return ws, hello


def test_streamed_answer_equals_response(server, fake):
    async def go():
        ws, hello = await connect(server)
        await ws.send(json.dumps({"type": "message", "content": "hello there [[fake tokens=12]]"}))
        frames = await collect_turn(ws)
        await ws.close()
        return frames
    frames = run(go())
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "ack"
    streams = [f["content"] for f in frames if f["type"] == "stream"]
    final = frames[-1]
    assert final["type"] == "response", frames
    assert len(streams) == 12
    assert "".join(streams) == final["content"]
    assert final["content"] == "".join(" t%d" % i if i else "t0" for i in range(12)) or \
        final["content"].split() == ["t%d" % i for i in range(12)]
    assert final["interrupted"] is False
    assert final["stats"]["tokens"] == 12
    assert final["stats"]["done_reason"] == "stop"
    assert final["stats"]["model"]


def test_old_client_message_shape_works(server):
    """The port-8000 client sends only {"type":"message","content":...}."""
    ws = RawWS(server.port)
    try:
        ws.send_json({"type": "message", "content": "compat check"})
        got = []
        while True:
            m = ws.recv_json(skip_types=("status", "sessions", "ack"))
            got.append(m)
            if m["type"] in ("response", "error"):
                break
        assert got[-1]["type"] == "response"
        assert got[-1]["content"] == "".join(m["content"] for m in got if m["type"] == "stream")
        assert "compat check" in got[-1]["content"]
    finally:
        ws.close()


def test_second_turn_carries_the_first(server, fake):
    async def go():
        ws, hello = await connect(server)
        await ws.send(json.dumps({"type": "launch", "bot_id": hello["bots"][0]["id"]}))
        sess = await recv_type(ws, "session")
        conv = sess["session"]["conversation_id"]
        await ws.send(json.dumps({"type": "message", "content": "my name is Ada",
                                  "conversation_id": conv}))
        first = await collect_turn(ws)
        await ws.send(json.dumps({"type": "message", "content": "what is my name?",
                                  "conversation_id": conv}))
        second = await collect_turn(ws)
        await ws.close()
        return first, second
    first, second = run(go())
    assert first[-1]["type"] == "response" and second[-1]["type"] == "response"
    reqs = [r for r in fake.requests() if r["path"] == "/api/chat"]
    last = reqs[-1]["body"]
    roles = [(m["role"], m["content"]) for m in last["messages"]]
    assert roles[0][0] == "system"
    assert ("user", "my name is Ada") in roles
    assert ("assistant", first[-1]["content"]) in roles
    assert roles[-1] == ("user", "what is my name?")
    assert last["model"] == "test-model"
    assert last["stream"] is True
    assert "num_ctx" in last["options"]
    # the browser's Origin/Host are never forwarded
    hdrs = {k.lower(): v for k, v in reqs[-1]["headers"].items()}
    assert "origin" not in hdrs
    assert hdrs.get("host", "").startswith("127.0.0.1:%d" % fake.port)


def _usable(ws_async):
    async def check(ws):
        await ws.send(json.dumps({"type": "ping"}))
        return await recv_type(ws, "pong")
    return check(ws_async)


@pytest.mark.parametrize("directive,code,partial", [
    ("[[fake status=404]]", "model_not_found", False),
    ("[[fake status=503]]", "backend_busy", False),
    ("[[fake status=400]]", "backend_bad_request", False),
    ("[[fake fault=error_line after=2]]", "backend_error", True),
    ("[[fake fault=drop after=3]]", "interrupted", True),
    ("[[fake fault=no_done tokens=3]]", "interrupted", True),
    ("[[fake fault=garbage after=1]]", "backend_protocol", True),
    ("[[fake fault=wrong_content_type]]", "backend_protocol", False),
])
def test_backend_faults_give_error_frames_and_usable_connection(server, directive, code,
                                                                partial):
    async def go():
        ws, _ = await connect(server)
        await ws.send(json.dumps({"type": "message", "content": "fault " + directive,
                                  "id": "f1"}))
        frames = await collect_turn(ws)
        pong = await _usable(ws)
        await ws.send(json.dumps({"type": "message", "content": "and now fine"}))
        after = await collect_turn(ws)
        await ws.close()
        return frames, pong, after
    frames, pong, after = run(go())
    err = frames[-1]
    assert err["type"] == "error", frames
    assert err["code"] == code, err
    assert err["id"] == "f1"
    assert err["message"]
    assert bool(err.get("partial")) == partial
    assert pong["type"] == "pong"
    assert after[-1]["type"] == "response"


def test_model_not_found_names_the_model(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off", model="nosuchmodel")

    async def go():
        ws, _ = await connect(s)
        await ws.send(json.dumps({"type": "message", "content": "hi"}))
        frames = await collect_turn(ws)
        await ws.close()
        return frames
    err = run(go())[-1]
    assert err["code"] == "model_not_found"
    # the user learns which model is missing; how to pull it is in the log
    assert "nosuchmodel" in err["message"] and "administrator" in err["message"]
    from backends_util import failed_turn_line
    assert "ollama pull nosuchmodel" in failed_turn_line(s, err["conversation_id"],
                                                         "model_not_found")


def test_backend_refused_gives_error_within_connect_timeout(httpd):
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    s = httpd(extra="ChatbotRateLimit off", backend="http://127.0.0.1:%d" % port)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        await ws.send(json.dumps({"type": "message", "content": "anyone?"}))
        frames = await collect_turn(ws, timeout=10)
        took = time.time() - t0
        pong = await _usable(ws)
        await ws.close()
        return frames, took, pong
    frames, took, pong = run(go())
    assert frames[-1]["type"] == "error"
    assert frames[-1]["code"] == "backend_unreachable"
    assert took < 5.5
    assert pong["type"] == "pong"


def test_malformed_client_messages_get_error_frames(server):
    ws = RawWS(server.port)
    try:
        for raw, code in [("not json", "bad_json"), ("[1,2]", "bad_json"),
                          ('{"type": 5}', "bad_json"), ('{"type":"nope"}', "unknown_type"),
                          ('{"type":"message","content":7}', "bad_request"),
                          ('{"type":"message"}', "bad_request")]:
            ws.send(1, raw)
            m = ws.recv_json()
            assert m["type"] == "error" and m["code"] == code, (raw, m)
        ws.send_json({"type": "ping"})
        assert ws.recv_json()["type"] == "pong"
    finally:
        ws.close()


def test_access_log_has_chatbot_notes(server):
    async def go():
        ws, _ = await connect(server)
        await ws.send(json.dumps({"type": "message", "content": "log me [[fake tokens=4]]"}))
        await collect_turn(ws)
        await ws.close()
    run(go())
    time.sleep(0.5)
    lines = [l for l in server.access_lines() if "GET /ws " in l]
    assert lines
    last = lines[-1]
    assert " 101 " in last
    assert '"test-model"' in last
    assert "tokens=4" in last
    assert "messages=1" in last
