"""Commands in conversations (issue 8): a refused command is kept in the
conversation like one that ran (history, export, not in the model's
context), a conversation that starts with a command gets a title from it,
and REST errors are counted in chatbot_errors_total like WebSocket ones.
The server runs the programs and declarations of cmdutil.CmdFixture; the
runs themselves are in test_800_command_runs.py.
"""
import json
import re
import time
import urllib.error
import urllib.request

import pytest

from cmdutil import api, cmd_fixture, cmd_server, connect, new_cookie


@pytest.fixture(scope="module")
def fx():
    yield from cmd_fixture()


@pytest.fixture(scope="module")
def srv(fake, fx):
    yield from cmd_server(fake, fx, "cmdconv")


# ==== commands in conversations: stored, titled, counted ======================================

SKIP = ("status", "sessions", "ack")


def launch(ws, bot="tools", title=None):
    m = {"type": "launch", "bot_id": bot}
    if title is not None:
        m["title"] = title
    ws.send_json(m)
    return ws.recv_json(skip_types=SKIP)["session"]


def history(ws, conv):
    ws.send_json({"type": "history", "conversation_id": conv})
    h = ws.recv_json(skip_types=SKIP)
    assert h["type"] == "history", h
    return h


def send(ws, conv, line):
    ws.send_json({"type": "message", "content": line, "conversation_id": conv})
    return ws.recv_json(skip_types=SKIP)


# ---- refusals are stored -----------------------------------------------------------------

def test_refused_commands_are_stored_like_runs(srv):
    ws = connect(srv)
    try:
        conv = launch(ws)["conversation_id"]
        assert send(ws, conv, "!args ok")["type"] == "command_result"
        refusals = []
        for line in ("!nope  a   b", "!show ../outside/secret.txt", "!args x\ntouch y"):
            m = send(ws, conv, line)
            assert m["type"] == "error" and m["code"] == "command_denied", m
            assert m["conversation_id"] == conv
            refusals.append((line, m["message"]))
        ws.send_json({"type": "run", "command": "nope", "args": ["q"], "conversation_id": conv})
        m = ws.recv_json(skip_types=SKIP)
        assert m["code"] == "command_denied", m
        refusals.append(("!nope q", m["message"]))
        h = history(ws, conv)
    finally:
        ws.close()
    msgs = h["messages"]
    assert h["total"] == 2 + 2 * len(refusals), msgs
    assert "refused" not in msgs[0] and "refused" not in msgs[1]
    for i, (line, reason) in enumerate(refusals):
        req, res = msgs[2 + 2 * i], msgs[3 + 2 * i]
        # the request as a command message (split and joined like a run's,
        # or the line as sent when it could not be split)
        expect = {"!nope  a   b": "!nope a b"}.get(line, line)
        assert req["role"] == "user" and req["content"] == expect, req
        assert req["command"] is True and req["refused"] is True
        assert "error" not in req
        # the refusal: command + error + refused, the code split out
        assert res["role"] == "assistant", res
        assert res["command"] is True and res["error"] is True and res["refused"] is True
        assert res["code"] == "command_denied"
        assert res["content"] == reason


def test_refusal_is_in_exports_but_not_in_the_model_context(srv, fake):
    ws = connect(srv, timeout=20)
    try:
        conv = launch(ws)["conversation_id"]
        assert send(ws, conv, "!nope-ctx")["code"] == "command_denied"
        ws.send_json({"type": "message", "content": "after the refusal", "conversation_id": conv})
        while ws.recv_json(skip_types=SKIP + ("stream",))["type"] not in ("response", "error"):
            pass
        ws.send_json({"type": "export", "conversation_id": conv})
        md = ws.recv_json(skip_types=SKIP)
        ws.send_json({"type": "export", "conversation_id": conv, "format": "json"})
        js = ws.recv_json(skip_types=SKIP)
    finally:
        ws.close()
    body = [r for r in fake.requests() if r["path"] == "/api/chat"][-1]["body"]
    texts = [m["content"] for m in body["messages"]]
    assert texts[-1] == "after the refusal"
    assert not any("nope-ctx" in t or "command_denied" in t for t in texts), texts
    assert "!nope-ctx" in md["content"]
    assert "**Refused (command_denied):** 'nope-ctx' is not a command" in md["content"], md
    doc = json.loads(js["content"])
    refused = [m for m in doc["messages"] if m.get("refused")]
    assert [m["role"] for m in refused] == ["user", "assistant"], doc
    assert refused[1]["code"] == "command_denied"


def test_refusals_not_about_the_command_are_not_stored(srv, fx):
    ws = connect(srv, timeout=20)
    ws2 = connect(srv, timeout=20)
    try:
        conv = launch(ws)["conversation_id"]
        # unknown conversation: nothing created, nothing stored
        m = send(ws, "000000000000000000000000", "!nope")
        assert m["code"] == "not_found", m
        # busy: a command runs in the conversation; a refused one from another
        # tab is answered but not written into it
        ws.send_json({"type": "message", "content": "!slow", "conversation_id": conv})
        time.sleep(0.5)
        m = send(ws2, conv, "!nope")
        assert m["code"] == "command_denied", m
        ws2.send_json({"type": "stop", "conversation_id": conv})
        r = ws.recv_json(skip_types=SKIP)
        assert r["type"] == "command_result", r
        h = history(ws, conv)
    finally:
        ws.close()
        ws2.close()
    assert [m["content"] for m in h["messages"]][0] == "!slow"
    assert h["total"] == 2, h


def test_rate_limited_command_is_not_stored(httpd, fx):
    # 3 tokens: the launch and two commands
    s = httpd(extra=fx.conf(rate="ChatbotRateLimit 3/min"))
    cookie = new_cookie()
    ws = connect(s, cookie=cookie)
    try:
        conv = launch(ws)["conversation_id"]
        assert send(ws, conv, "!nope")["code"] == "command_denied"
        assert send(ws, conv, "!nope")["code"] == "command_denied"
        assert send(ws, conv, "!nope")["code"] == "rate_limited"
        h = history(ws, conv)
    finally:
        ws.close()
    assert h["total"] == 4, h


def test_api_execute_refusal_is_stored(srv):
    cookie = new_cookie()
    ws = connect(srv, cookie=cookie)
    try:
        conv = launch(ws)["conversation_id"]
        st, b = api(srv, {"command": "rm", "args": ["-rf", "/"], "conversation_id": conv},
                    cookie=cookie)
        assert st == 403 and b["error"] == "command_denied", b
        assert b["conversation_id"] == conv and b["index"] == 1, b
        # too many arguments: stored with the name alone
        st, b = api(srv, {"command": "args", "args": ["a"] * 100, "conversation_id": conv},
                    cookie=cookie)
        assert st == 403 and b["error"] == "command_denied" and b["index"] == 3, b
        # not about the command: not stored
        st, b = api(srv, {"command": "args", "args": [1], "conversation_id": conv},
                    cookie=cookie)
        assert st == 400, b
        h = history(ws, conv)
    finally:
        ws.close()
    msgs = h["messages"]
    assert [m["content"] for m in msgs[0::2]] == ["!rm -rf /", "!args"], msgs
    assert all(m["refused"] is True and m["command"] is True for m in msgs)
    assert msgs[1]["code"] == "command_denied" and "'rm' is not a command" in msgs[1]["content"]
    assert msgs[3]["content"] == "too many arguments"
    assert h["title"] == "!rm -rf /"
    # without conversation_id: the implied one (the bot's latest) keeps it
    st, b = api(srv, {"command": "nope"}, cookie=cookie)
    assert st == 403 and b["conversation_id"] == conv and b["index"] == 5, b
    # a new identity: the conversation created for it keeps it, and is titled
    cookie = new_cookie()
    st, b = api(srv, {"command": "nope"}, cookie=cookie)
    assert st == 403 and re.fullmatch(r"[0-9a-f]{24}", b["conversation_id"]), b
    ws = connect(srv, cookie=cookie)
    try:
        h = history(ws, b["conversation_id"])
    finally:
        ws.close()
    assert [m["content"] for m in h["messages"]] == ["!nope", b["message"]]
    assert h["title"] == "!nope"


# ---- automatic title -----------------------------------------------------------------------

def _wait_title(ws, conv, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        m = ws.recv_json(skip_types=("status", "ack"))
        if m["type"] == "sessions":
            for s in m["sessions"]:
                if s["conversation_id"] == conv and s["title"]:
                    return s["title"]
    raise AssertionError("no title pushed")


@pytest.mark.parametrize("line,title", [
    ("!args   hello \t world", "!args hello world"),
    ("!nope please", "!nope please"),
    ("!args " + "word1234 " * 10,
     "!args word1234 word1234 word1234 word1234 word1234\u2026"),
])
def test_first_command_titles_the_conversation(srv, line, title):
    cookie = new_cookie()
    ws = connect(srv, cookie=cookie)
    other = connect(srv, cookie=cookie)
    try:
        other.send_json({"type": "ping"})
        assert other.recv_json(skip_types=SKIP)["type"] == "pong"
        s = launch(ws)
        assert s["title"] == ""
        conv = s["conversation_id"]
        send(ws, conv, line)
        # pushed to the user's other tabs like a rename
        assert _wait_title(other, conv) == title
        # a second command does not change it
        send(ws, conv, "!args later")
        h = history(ws, conv)
    finally:
        ws.close()
        other.close()
    assert h["title"] == title


def test_command_does_not_replace_a_title(srv):
    cookie = new_cookie()
    ws = connect(srv, cookie=cookie)
    try:
        conv = launch(ws, title="mine")["conversation_id"]
        assert send(ws, conv, "!args x")["type"] == "command_result"
        h = history(ws, conv)
    finally:
        ws.close()
    assert h["title"] == "mine"


def test_api_execute_titles_its_conversation(srv):
    cookie = new_cookie()
    st, b = api(srv, {"command": "args", "args": ["t1"]}, cookie=cookie)
    assert st == 200, b
    ws = connect(srv, cookie=cookie)
    try:
        h = history(ws, b["conversation_id"])
    finally:
        ws.close()
    assert h["title"] == "!args t1"


# ---- REST errors counted -------------------------------------------------------------------

def _errors(srv):
    with urllib.request.urlopen(srv.base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r'^chatbot_errors_total\{code="([a-z_]+)"\} (\d+)$', text, re.M)}


def _req(srv, path, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          "Cookie": new_cookie()})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _delta(before, after):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def test_rest_errors_are_counted_once_by_code(srv):
    before = _errors(srv)
    assert _req(srv, "/api/nosuchroute")[0] == 404
    assert _req(srv, "/api/execute", {})[0] == 400
    assert _req(srv, "/api/execute", {"command": "nope"})[0] == 403
    assert _req(srv, "/api/execute", method="GET")[0] == 405
    assert _req(srv, "/api/chat/history?conversation_id=000000000000000000000000")[0] == 404
    after = _errors(srv)
    assert _delta(before, after) == {"not_found": 2, "bad_request": 2, "command_denied": 1}


def test_failed_rest_turn_is_counted_once(srv):
    before = _errors(srv)
    st, b = _req(srv, "/api/chat", {"message": "[[fake status=500 error=boom]]",
                                   "bot_id": "plain"})
    assert st >= 500 and b["error"].startswith("backend_"), b
    after = _errors(srv)
    assert _delta(before, after) == {b["error"]: 1}, (before, after)
