"""The old port-8000 controller's clients, unchanged (issue 16 part 2).

Its browser client (BotLauncher, BotList, ChatPanel, StatusBoard) and the
scripts written against its REST API are replayed here through real HTTP
and WebSocket calls, as that client makes them: on load GET /api/bots, the
status board polling GET /api/bots/status, "Launch Bot" (POST
/api/bot/launch with a free-form id), Select (GET /api/chat/history?limit=
100&bot_id=ID), a typed line as the WebSocket {"type":"command"} frame
answered by a "response" frame, Stop (POST /api/bot/stop/ID). Frames are
judged the way that client judges them (its handleWebSocketMessage): a
frame with "success": false or an "error" member is a failure, "response"
is the answer, "typing" shows its indicator, anything else is ignored.
docs/api.md, "Compatibility with the port-8000 controller", is the contract.
"""
import datetime
import json
import time

import pytest
import requests

from histutil import Conn, Rest, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
<ChatbotBot helper>
    ChatbotModel "helper-model"
</ChatbotBot>
<ChatbotBot coder>
    ChatbotModel "coder-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA, "compat")


class OldClient:
    """The old browser client's calls: a cookie jar like a browser's (the
    identity cookie comes from the WebSocket handshake or a POST, never
    from a GET: docs/api.md), same-origin requests, the WebSocket on /ws
    with the page's Origin."""

    def __init__(self, server):
        self.server = server
        self.base = server.base
        self.s = requests.Session()
        self.s.headers["Connection"] = "close"
        self.ws = None

    def get(self, path, **kw):
        r = self.s.get(self.base + path, timeout=30, **kw)
        assert r.headers["Content-Type"].startswith("application/json"), r.text
        return r

    def post(self, path, body=None):
        # fetch() from the page: same origin, JSON body (or none: Stop)
        h = {"Origin": self.base}
        if body is not None:
            return self.s.post(self.base + path, json=body, headers=h, timeout=60)
        return self.s.post(self.base + path, headers=h, timeout=60)

    def cookie(self):
        return "; ".join("%s=%s" % (c.name, c.value) for c in self.s.cookies)

    def connect(self):
        self.ws = Conn(self.server, cookie=self.cookie() or None,
                       headers={"Origin": self.base})
        # a browser keeps the cookie a WebSocket handshake sets, for the
        # page's later fetch() calls
        set_cookie = self.ws.headers.get("set-cookie")
        if set_cookie:
            name, _, value = set_cookie.split(";", 1)[0].partition("=")
            self.s.cookies.set(name, value, path="/")
        return self.ws

    def load(self):
        """The page's DOMContentLoaded: initWebSocket() (new WebSocket('/ws'))
        first, then the bot list (GET /api/bots) and the status board
        (GET /api/bots/status). Returns the two replies."""
        self.connect()
        return self.get("/api/bots"), self.get("/api/bots/status")

    def send_line(self, bot_id, line, timeout=30):
        """ChatPanel.sendMessage over the WebSocket; returns (outcome, text,
        frames): outcome "response" or "error", as handleWebSocketMessage
        would show it, and whether "typing" came first."""
        self.ws.send_json({"type": "command", "bot_id": bot_id, "command": line})
        frames = []
        end = time.time() + timeout
        while time.time() < end:
            m = self.ws.next(end - time.time())
            frames.append(m)
            if m.get("success") is False or m.get("error"):
                return "error", m.get("error"), frames
            if m.get("type") == "response":
                return "response", m["content"], frames
        raise AssertionError("no answer: %r" % frames)

    def close(self):
        if self.ws:
            self.ws.close()


@pytest.fixture
def old(srv):
    c = OldClient(srv)
    yield c
    c.close()


def iso(ts):
    """JavaScript's new Date(ts) reads it: ISO 8601 UTC with milliseconds."""
    assert ts.endswith("Z") and len(ts) == 24, ts
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def test_the_old_clients_flow(srv, old, fake):
    port = srv.port
    # on load: the WebSocket (whose handshake issues the identity cookie),
    # the bot list (an object keyed by bot id) and the status board
    bots, board = old.load()
    assert "chatbot_sid" in old.cookie()
    assert bots.status_code == 200 and bots.json() == {"bots": {}}
    assert board.status_code == 200 and board.json() == []
    assert "Set-Cookie" not in bots.headers and "Set-Cookie" not in board.headers
    # Launch Bot, with a free-form id
    r = old.post("/api/bot/launch", {"bot_id": "BOT-001", "bot_type": "llama"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["bot_id"] == "BOT-001"
    assert "Set-Cookie" not in r.headers    # the identity the WebSocket got
    assert isinstance(body["message"], str) and "BOT-001" in body["message"]
    conv = body["conversation_id"]
    # a second launch of a running id is an error the launcher shows
    r = old.post("/api/bot/launch", {"bot_id": "BOT-001"})
    assert r.status_code == 200
    assert r.json()["success"] is False and "already running" in r.json()["error"]
    # the list shows it with Select and Stop
    bots = old.get("/api/bots").json()["bots"]
    assert list(bots) == ["BOT-001"]
    b = bots["BOT-001"]
    assert b["status"] == "running" and b["current_task"] is None
    assert b["port"] == port and isinstance(b["pid"], int) and b["pid"] > 1
    st = old.get("/api/bots/status").json()
    assert [(x["id"], x["running"], x["status"], x["port"]) for x in st] == [
        ("BOT-001", True, "online", port)]
    assert isinstance(st[0]["pid"], int)
    # Select: its (empty) history
    h = old.get("/api/chat/history?limit=100&bot_id=BOT-001").json()
    assert h["messages"] == [] and h["total"] == 0 and h["has_more"] is False
    # a typed line: the command frame, typing first, then the response frame
    fake.script({"reply": "Hello from BOT-001"})
    outcome, text, frames = old.send_line("BOT-001", "hello bot")
    assert (outcome, text) == ("response", "Hello from BOT-001"), frames
    types = [f["type"] for f in frames]
    assert "typing" in types and types.index("typing") < types.index("response"), types
    assert frames[types.index("typing")]["bot_id"] == "BOT-001"
    assert frames[-1]["conversation_id"] == conv
    # while it answers, the list says busy with the task
    fake.script({"tokens": 40, "delay_ms": 50})
    old.ws.send_json({"type": "command", "bot_id": "BOT-001", "command": "count slowly"})
    old.ws.wait("stream")
    b = old.get("/api/bots").json()["bots"]["BOT-001"]
    assert b["status"] == "busy" and b["current_task"] == "count slowly", b
    resp, _ = old.ws.wait("response", 30)
    assert resp["content"].split() == ["t%d" % i for i in range(40)]
    assert old.get("/api/bots").json()["bots"]["BOT-001"]["status"] == "running"
    # Select again: the conversation, oldest first, in the old shape
    h = old.get("/api/chat/history?limit=100&bot_id=BOT-001").json()
    assert [(m["role"], m["content"]) for m in h["messages"]] == [
        ("user", "hello bot"), ("assistant", "Hello from BOT-001"),
        ("user", "count slowly"), ("assistant", resp["content"])]
    assert h["total"] == 4 and h["has_more"] is False
    stamps = [iso(m["timestamp"]) for m in h["messages"]]
    assert stamps == sorted(stamps)
    assert all(m["bot_id"] == "BOT-001" and m["session_id"] == conv for m in h["messages"])
    assert abs((stamps[0] - datetime.datetime.utcnow()).total_seconds()) < 300
    # limit and offset count from the oldest
    h = old.get("/api/chat/history?limit=2&offset=1&bot_id=BOT-001").json()
    assert [m["content"] for m in h["messages"]] == ["Hello from BOT-001", "count slowly"]
    assert h["has_more"] is True and h["total"] == 4
    h = old.get("/api/chat/history", params={"session_id": conv, "limit": 1,
                                              "offset": 3}).json()
    assert h["has_more"] is False and h["messages"][0]["role"] == "assistant"
    # the REST fallback of the chat panel, and the history API of scripts
    fake.script({"reply": "by task"})
    r = old.post("/api/bot/BOT-001/task", {"command": "over REST"})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["response"] == "by task"
    r = old.post("/api/chat/message", {"role": "user", "content": "a note",
                                       "bot_id": "BOT-001", "session_id": conv})
    assert r.status_code == 200 and r.json()["success"] is True
    h = old.get("/api/chat/history?limit=100&bot_id=BOT-001").json()
    assert [m["content"] for m in h["messages"]][-3:] == ["over REST", "by task", "a note"]
    # Stop: gone from the list and the board; its lines now fail visibly
    r = old.post("/api/bot/stop/BOT-001")
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    assert "BOT-001" in r.json()["message"]
    assert old.get("/api/bots").json() == {"bots": {}}
    assert old.get("/api/bots/status").json() == []
    r = old.post("/api/bot/stop/BOT-001")
    assert r.json()["success"] is False and "not running" in r.json()["error"]
    r = old.post("/api/bot/BOT-001/task", {"command": "anyone?"})
    assert r.status_code == 200
    assert r.json() == {"success": False, "error": "Bot BOT-001 is not running",
                        "code": "not_found", "response": None,
                        "message": "Bot BOT-001 is not running",
                        "detail": "Bot BOT-001 is not running"}
    outcome, text, frames = old.send_line("BOT-001", "still there?")
    assert outcome == "error" and "not running" in text, frames
    assert frames[-1]["type"] == "error" and frames[-1]["message"] == text
    # its history stays readable; launched again, it has it back
    assert old.get("/api/chat/history?limit=100&bot_id=BOT-001").json()["total"] == 7
    r = old.post("/api/bot/launch", {"bot_id": "BOT-001"})
    assert r.json()["success"] is True and r.json()["conversation_id"] == conv
    assert list(old.get("/api/bots").json()["bots"]) == ["BOT-001"]
    fake.script({"reply": "back"})
    assert old.send_line("BOT-001", "again")[:2] == ("response", "back")


def test_failures_reach_the_old_client(srv, old, fake):
    old.post("/api/bot/launch", {"bot_id": "BOT-500"})
    old.connect()
    # a backend failure mid-chat
    fake.script({"status": 503})
    outcome, text, frames = old.send_line("BOT-500", "fail please")
    assert outcome == "error" and text, frames
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "backend_busy"
    assert frames[-1]["success"] is False and frames[-1]["error"] == frames[-1]["message"]
    # an id nobody launched, a bad frame
    outcome, text, _ = old.send_line("BOT-404", "hello?")
    assert outcome == "error" and "BOT-404" in text
    old.ws.send_json({"type": "command", "bot_id": "BOT-500"})
    m = old.ws.wait(lambda f: f.get("success") is False)[0]
    assert m["code"] == "bad_request" and "command" in m["error"]
    # the same failure over REST: 200 and success false, as the old service
    fake.script({"status": 503})
    r = old.post("/api/bot/BOT-500/task", {"command": "fail again"})
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is False and body["response"] is None
    assert body["code"] == "backend_busy" and body["error"]
    # still usable afterwards
    fake.script({"reply": "fine now"})
    assert old.send_line("BOT-500", "and now?")[:2] == ("response", "fine now")


def test_requests_it_cannot_read_keep_their_status(srv, old):
    for body, what in (({"bot_id": 7}, "must be strings"), ({}, "bot_id is required"),
                       ({"bot_id": "<img src=x>"}, "invalid bot id"),
                       ({"bot_id": " BOT"}, "invalid bot id"),
                       ({"bot_id": "x" * 65}, "invalid bot id")):
        r = old.post("/api/bot/launch", body)
        assert r.status_code == 400, (body, r.text)
        b = r.json()
        assert b["success"] is False and what in b["error"] and b["code"] == "bad_request"
    r = old.post("/api/bot/launch", {"bot_id": "BOT-1"})
    assert r.json()["success"] is True
    r = old.post("/api/bot/BOT-1/task", {"command": ""})
    assert r.status_code == 400 and r.json()["success"] is False
    assert r.json()["response"] is None
    r = old.s.post(old.base + "/api/bot/launch", data="{not json",
                   headers={"Content-Type": "application/json"}, timeout=10)
    assert r.status_code == 400 and r.json()["code"] == "bad_json"
    r = old.s.post(old.base + "/api/bot/launch", json={"bot_id": "BOT-2"},
                   headers={"Origin": "http://evil.example"}, timeout=10)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert "BOT-2" not in old.get("/api/bots").json()["bots"]
    r = old.s.get(old.base + "/api/bot/launch", timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"


def test_identities_see_only_their_own_bots(srv, fake):
    alice, mallory = OldClient(srv), OldClient(srv)
    try:
        alice.get("/api/bots")
        mallory.get("/api/bots")
        assert alice.post("/api/bot/launch", {"bot_id": "BOT-007"}).json()["success"]
        conv = alice.get("/api/bots").json()["bots"]["BOT-007"]["conversation_id"]
        assert mallory.get("/api/bots").json() == {"bots": {}}
        for name in ("BOT-007", conv):
            r = mallory.post("/api/bot/stop/%s" % name)
            assert r.json()["success"] is False
            r = mallory.post("/api/bot/%s/task" % name, {"command": "steal"})
            assert r.json()["success"] is False and r.json()["response"] is None
            r = mallory.get("/api/chat/history", params={"bot_id": name})
            assert r.status_code == 404
        # mallory may have a BOT-007 of her own, which alice never sees
        assert mallory.post("/api/bot/launch", {"bot_id": "BOT-007"}).json()["success"]
        mallory.connect()
        fake.script({"reply": "mallory's"})
        assert mallory.send_line("BOT-007", "mine")[:2] == ("response", "mallory's")
        bots = alice.get("/api/bots").json()["bots"]
        assert list(bots) == ["BOT-007"] and bots["BOT-007"]["conversation_id"] == conv
        assert alice.get("/api/chat/history",
                         params={"bot_id": "BOT-007"}).json()["total"] == 0
        assert fake.requests()[-1]["body"]["messages"][-1]["content"] == "mine"
    finally:
        alice.close()
        mallory.close()


def test_sessions_of_the_new_ui_and_declared_bots(srv, old, fake):
    """The browser UI's sessions are bots to the old client too: listed
    under their title when that can be an id, else their conversation id.
    A launch whose bot_type (or id) names a declared bot uses that bot."""
    old.load()
    c = old.ws
    titled = c.launch("helper", title="notes")
    question = c.launch("helper", title="What is this?")
    untitled = c.launch("helper")
    bots = old.get("/api/bots").json()["bots"]
    assert bots["notes"]["conversation_id"] == titled
    assert bots[question]["conversation_id"] == question
    assert bots[untitled]["conversation_id"] == untitled
    assert all(b["bot"] == "helper" for b in bots.values())
    # an old client talks to them by those ids
    fake.script({"reply": "noted"})
    assert old.send_line("notes", "remember")[:2] == ("response", "noted")
    fake.script({"reply": "by id"})
    assert old.send_line(question, "and you?")[:2] == ("response", "by id")
    h = old.get("/api/chat/history", params={"bot_id": question}).json()
    assert h["messages"][-1]["bot_id"] == question
    # the browser UI archives one: no longer running for the old client
    assert c.request({"type": "archive", "conversation_id": titled}, "ok")["type"] == "ok"
    assert "notes" not in old.get("/api/bots").json()["bots"]
    # bot_type names a declared bot; so may the id itself
    r = old.post("/api/bot/launch", {"bot_id": "BOT-C", "bot_type": "coder"}).json()
    assert r["success"] is True and r["bot"] == "coder"
    assert old.post("/api/bot/launch", {"bot_id": "coder"}).json()["bot"] == "coder"
    fake.script({"reply": "coded"})
    assert old.send_line("BOT-C", "code!")[:2] == ("response", "coded")
    assert fake.requests()[-1]["body"]["model"] == "coder-model"
    # a default-bot launch
    assert old.post("/api/bot/launch", {"bot_id": "BOT-D"}).json()["bot"] == "helper"
    # the command frame also takes a declared bot's name (its latest session)
    fake.script({"reply": "declared"})
    assert old.send_line("helper", "hi helper")[:2] == ("response", "declared")
    # GET /api/bot/{id}/status knows old ids too
    r = old.get("/api/bot/BOT-C/status").json()
    assert r["session"]["bot_id"] == "coder" and r["session"]["title"] == "BOT-C"


def test_stored_messages_make_a_history_to_launch_with(srv, old):
    """POST /api/chat/message keeps history for an id nobody launched (the
    old service's history was per bot id): not running until launched."""
    r = old.post("/api/chat/message", {"role": "user", "content": "earlier question",
                                       "bot_id": "BOT-H"})
    assert r.status_code == 200 and r.json()["success"] is True
    r = old.post("/api/chat/message", {"role": "assistant", "content": "earlier answer",
                                       "bot_id": "BOT-H"})
    assert r.json()["success"] is True and r.json()["index"] == 1
    assert "BOT-H" not in old.get("/api/bots").json()["bots"]
    h = old.get("/api/chat/history", params={"bot_id": "BOT-H", "limit": 100}).json()
    assert [(m["role"], m["content"]) for m in h["messages"]] == [
        ("user", "earlier question"), ("assistant", "earlier answer")]
    assert old.post("/api/bot/launch", {"bot_id": "BOT-H"}).json()["success"] is True
    assert "BOT-H" in old.get("/api/bots").json()["bots"]
    # the answer stored that way is context for the model, as any answer
    r = old.post("/api/chat/message", {"role": "user", "content": "x",
                                       "session_id": "0" * 24})
    assert r.status_code == 200 and r.json()["success"] is False
    assert r.json()["code"] == "not_found"


def test_the_new_uis_frames_are_unchanged(srv, fake):
    """Only a connection that spoke the old "command" frame gets the old
    failure members: the browser UI's error frames stay as they were."""
    c = Conn(srv, cookie=new_cookie())
    try:
        fake.script({"status": 503})
        f = c.turn("fail")
        assert f[-1]["type"] == "error" and "success" not in f[-1] and "error" not in f[-1]
        m = c.request({"type": "nonsense"}, "never")
        assert m["type"] == "error" and "success" not in m
    finally:
        c.close()


def test_rest_without_a_browser(srv, fake):
    """A script of the old API: no Origin, a cookie it keeps itself."""
    rest = Rest(srv, cookie=new_cookie())
    assert rest.post("/api/bot/launch", {"bot_id": "script-1"}).json()["success"] is True
    fake.script({"reply": "scripted"})
    r = rest.post("/api/bot/script-1/task", {"command": "go"}).json()
    assert r == {"success": True, "bot_id": "script-1", "response": "scripted",
                 "conversation_id": r["conversation_id"], "interrupted": False}
    assert json.loads(rest.get("/api/bots").text)["bots"]["script-1"]["status"] == "running"


def test_concurrent_requests_for_a_new_id_make_one_session(srv, old):
    """A double click on Launch, two tabs, a script's parallel calls: one
    user's concurrent launches of one new id make one running session (one
    launch succeeds, the others hear it is already running), and concurrent
    messages for an id nobody launched all land in one history."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    old.connect()   # the identity cookie every request below shares
    cookie = old.cookie()
    n = 8

    def fire(path, bodies):
        gate = threading.Barrier(len(bodies))

        def one(body):
            s = requests.Session()
            s.headers.update({"Connection": "close", "Cookie": cookie,
                              "Origin": old.base})
            gate.wait(timeout=30)
            return s.post(old.base + path, json=body, timeout=60)
        with ThreadPoolExecutor(len(bodies)) as ex:
            return list(ex.map(one, bodies))

    for round_ in range(3):
        bot_id = "RACE-%d" % round_
        replies = fire("/api/bot/launch", [{"bot_id": bot_id}] * n)
        assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
        ok = [r.json() for r in replies if r.json()["success"] is True]
        busy = [r.json() for r in replies if r.json()["success"] is False]
        assert len(ok) == 1 and len(busy) == n - 1, [r.text for r in replies]
        assert all("already running" in b["error"] for b in busy), busy
        board = old.get("/api/bots/status").json()
        assert [b["id"] for b in board].count(bot_id) == 1, board

        bot_id = "RACE-H%d" % round_
        replies = fire("/api/chat/message",
                       [{"role": "user", "content": "line %d" % i, "bot_id": bot_id}
                        for i in range(n)])
        assert all(r.status_code == 200 and r.json()["success"] is True
                   for r in replies), [r.text for r in replies]
        assert len({r.json()["session_id"] for r in replies}) == 1
        assert sorted(r.json()["index"] for r in replies) == list(range(n))
        h = old.get("/api/chat/history", params={"bot_id": bot_id, "limit": 100}).json()
        assert sorted(m["content"] for m in h["messages"]) == sorted(
            "line %d" % i for i in range(n))


def test_the_creation_rate_and_quotas_are_reported_as_such(httpd):
    """The old routes create sessions under the identity's quotas
    (ChatbotQuota, docs/directives.md) and say so as the new routes do:
    rate_limited for too many new sessions, quota_exceeded for a message
    larger than the identity's history share, never an internal error."""
    s = httpd(extra="ChatbotRateLimit off\n"
                    "ChatbotQuota anonymous sessions=2/min history=16k\n")
    c = OldClient(s)
    try:
        c.connect()
        for i in range(2):
            r = c.post("/api/bot/launch", {"bot_id": "Q-%d" % i})
            assert r.status_code == 200 and r.json()["success"] is True, r.text
        r = c.post("/api/bot/launch", {"bot_id": "Q-2"})
        assert r.json()["success"] is False, r.text
        assert r.json()["code"] == "rate_limited", r.text
        assert "too many new conversations" in r.json()["error"]
        # the same for history kept for an id nobody launched
        r = c.post("/api/chat/message", {"role": "user", "content": "x", "bot_id": "Q-3"})
        assert r.json()["success"] is False and r.json()["code"] == "rate_limited", r.text
        # a message larger than the identity's history share
        r = c.post("/api/chat/message", {"role": "user", "content": "y" * (30 * 1024),
                                         "bot_id": "Q-0"})
        assert r.json()["success"] is False, r.text
        assert r.json()["code"] == "quota_exceeded", r.text
    finally:
        c.close()
