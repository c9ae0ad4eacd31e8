"""The REST API (issue 5), route by route: success, then bad JSON, fields
of the wrong type, oversized bodies, unknown ids, wrong methods. Every
refusal is a 4xx with a JSON error body, never a 500 (the access log is
checked at the end, the error log by the fixture). Same identity and rate
limits as the WebSocket. docs/api.md describes every route."""
import json
import socket

import pytest
import requests

from histutil import Conn, Rest, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
<ChatbotBot helper>
    ChatbotModel "helper-model"
    ChatbotDescription "Helps"
</ChatbotBot>
<ChatbotBot other>
    ChatbotModel "other-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA, "rest")


@pytest.fixture
def rest(srv):
    return Rest(srv, cookie=new_cookie())


def err(r, status, code=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["message"] and body["detail"]
    if code:
        assert body["error"] == code, body
    return body


def session(rest, bot="helper", title=None):
    body = {"bot_id": bot}
    if title:
        body["title"] = title
    r = rest.post("/api/bot/launch", body)
    assert r.status_code == 201, r.text
    return r.json()["conversation_id"]


# ---- every route's success ------------------------------------------------------------


def test_health(srv):
    r = requests.get(srv.base + "/api/health", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["server"].startswith("mod_chatbot/")
    assert body["backends"][0]["name"] == "default" and body["backends"][0]["healthy"] is True
    assert body["backends"][0]["version"] == "0.12.6"
    assert {"conversations", "max_conversations", "history_bytes", "history_bytes_used",
            "evictions"} <= set(body["store"])
    assert r.headers["Cache-Control"] == "no-store"
    r = requests.head(srv.base + "/api/health", timeout=10)
    assert r.status_code == 200 and r.content == b""


def test_bots_and_status(rest):
    body = rest.get("/api/bots").json()
    assert [b["id"] for b in body["bots"]] == ["helper", "other"]
    assert body["default"] == "helper"
    assert body["bots"][0]["health"] == "up"
    st = rest.get("/api/status").json()
    assert st["backends"][0]["name"] == "default"
    assert {"connections", "generating", "queued", "conversations"} <= set(st)


def test_launch_create_status_stop(rest):
    r = rest.post("/api/bot/launch", {"bot_id": "other", "title": "launched"})
    assert r.status_code == 201
    body = r.json()
    conv = body["conversation_id"]
    assert body["session_id"] == conv and body["bot_id"] == "other"
    s = body["session"]
    assert s["state"] == "idle" and s["title"] == "launched" and s["model"] == "other-model"
    # no body at all: the default bot
    r = rest.post("/api/session/create")
    assert r.status_code == 201 and r.json()["bot_id"] == "helper"
    # "bot" is accepted for bot_id (old clients)
    r = rest.post("/api/session/create", {"bot": "other"})
    assert r.status_code == 201 and r.json()["bot_id"] == "other"
    r = rest.get("/api/bot/%s/status" % conv)
    assert r.status_code == 200 and r.json()["session"]["state"] == "idle"
    r = rest.post("/api/bot/stop/%s" % conv)
    assert r.status_code == 200
    assert r.json()["session"]["state"] == "stopped" and r.json()["session"]["stopped"]
    lst = rest.get("/api/sessions").json()["sessions"]
    assert len(lst) == 3 and lst[0]["conversation_id"] == conv
    assert [s["bot_id"] for s in rest.get("/api/sessions",
                                          params={"bot_id": "helper"}).json()["sessions"]] == \
        ["helper"]


def test_task_and_history(rest, fake):
    conv = session(rest)
    fake.script({"reply": "the answer"})
    r = rest.post("/api/bot/%s/task" % conv, {"message": "the question"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == body["content"] == "the answer"
    assert body["conversation_id"] == conv and body["bot_id"] == "helper"
    assert body["interrupted"] is False
    assert body["stats"]["model"] == "helper-model" and body["stats"]["tokens"] == 2
    # "content" and "task" work as the message field too
    for key in ("content", "task"):
        r = rest.post("/api/bot/%s/task" % conv, {key: "via " + key + " [[fake tokens=1]]"})
        assert r.status_code == 200 and r.json()["response"] == "t0"
    h = rest.get("/api/chat/history", params={"conversation_id": conv, "limit": 2}).json()
    assert h["total"] == 6 and h["has_more"] is True and h["bot_id"] == "helper"
    assert [(m["role"], m["content"]) for m in h["messages"]] == [
        ("user", "the question"), ("assistant", "the answer")]
    assert h["messages"][1]["interrupted"] is False
    # session_id is accepted for conversation_id (old clients)
    h2 = rest.get("/api/chat/history", params={"session_id": conv, "limit": 2}).json()
    assert h2["messages"] == h["messages"]
    # the WebSocket of the same identity sees the same history
    c = Conn(rest_server(rest), cookie=rest.s.headers["Cookie"])
    try:
        m = c.request({"type": "history", "conversation_id": conv}, "history")
        assert m["total"] == 6
    finally:
        c.close()


def rest_server(rest):
    class S:
        pass
    s = S()
    s.port = int(rest.base.rsplit(":", 1)[1])
    return s


def test_history_without_a_conversation_is_empty(rest):
    h = rest.get("/api/chat/history").json()
    assert h == {"conversation_id": None, "bot_id": "helper", "total": 0, "offset": 0,
                 "limit": 50, "has_more": False, "messages": []}


def test_stateless_chat(rest, fake):
    fake.script({"reply": "stateless"})
    r = rest.post("/api/chat", {"message": "hi", "history": [
        {"role": "user", "content": "before"}, {"role": "assistant", "content": "reply"}],
        "bot_id": "other"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == "stateless" and body["conversation_id"] is None
    assert body["bot_id"] == "other"
    req = [x for x in fake.requests() if x["path"] == "/api/chat"][-1]
    assert [(m["role"], m["content"]) for m in req["body"]["messages"]] == [
        ("system", "You are a helpful assistant."), ("user", "before"),
        ("assistant", "reply"), ("user", "hi")]
    assert req["body"]["model"] == "other-model"
    assert rest.get("/api/sessions").json()["sessions"] == []
    r = rest.post("/api/chat", {"message": "no history [[fake tokens=1]]", "history": None})
    assert r.status_code == 200 and r.json()["response"] == "t0"


def test_session_operations(rest):
    conv = session(rest, title="ops")
    r = rest.post("/api/session/%s/rename" % conv, {"title": "renamed"})
    assert r.status_code == 200 and r.json()["session"]["title"] == "renamed"
    for op, key, val in (("archive", "archived", True), ("unarchive", "archived", False),
                         ("stop", "stopped", True), ("select", "stopped", True)):
        r = rest.post("/api/session/%s/%s" % (conv, op))
        assert r.status_code == 200 and r.json()["session"][key] is val, (op, r.text)
    r = rest.post("/api/session/%s/delete" % conv)
    assert r.status_code == 200 and r.json()["status"] == "deleted"


def test_export(rest):
    conv = session(rest, title="exp")
    rest.post("/api/bot/%s/task" % conv, {"message": "q [[fake tokens=2]]"})
    r = rest.post("/api/export/session", {"session_id": conv, "format": "md"})
    assert r.status_code == 200 and r.text.startswith("# exp\n")
    assert "### You\n\nq [[fake tokens=2]]\n\n### Assistant\n\nt0 t1\n\n" in r.text
    r = rest.post("/api/export/session", {"conversation_id": conv, "format": "json"})
    assert r.json()["messages"][1]["content"] == "t0 t1"


def test_export_of_a_failed_turn(rest, fake):
    conv = session(rest, title="failing")
    fake.script({"status": 503})
    fail = rest.post("/api/bot/%s/task" % conv, {"message": "q"}).json()
    assert fail["error"] == "backend_busy"
    md = rest.post("/api/export/session", {"conversation_id": conv}).text
    assert md.endswith("### You\n\nq\n\n> **Error (backend_busy):** %s\n\n" % fail["message"])
    doc = rest.post("/api/export/session", {"conversation_id": conv, "format": "json"}).json()
    last = doc["messages"][-1]
    assert last["error"] is True and last["code"] == "backend_busy"
    assert last["content"] == fail["message"]


# ---- refusals ----------------------------------------------------------------------------

POST_ROUTES = ["/api/bot/launch", "/api/session/create", "/api/chat",
               "/api/export/session", "/api/bot/%(id)s/task", "/api/bot/stop/%(id)s",
               "/api/session/%(id)s/rename", "/api/session/%(id)s/select"]
GET_ROUTES = ["/api/health", "/api/bots", "/api/status", "/api/sessions",
              "/api/chat/history", "/api/bot/%(id)s/status"]


@pytest.mark.parametrize("path", POST_ROUTES)
@pytest.mark.parametrize("raw,code", [
    ("{", "bad_json"), ("{\"a\":1} x", "bad_json"), ("[1,2]", "bad_json"), ("\"str\"", "bad_json"),
    ("{\"a\":1,}", "bad_json"), ("{'a':1}", "bad_json"), ("nul", "bad_json"),
    ("{\"message\":\"\xff\"}", "bad_json"),
    ("[" * 100 + "]" * 100, "bad_json"),
])
def test_bad_json_is_400(rest, path, raw, code):
    conv = session(rest)
    data = raw.encode("latin-1") if "\xff" in raw else raw.encode()
    r = rest.post(path % {"id": conv}, raw=data)
    err(r, 400, code)


@pytest.mark.parametrize("path,body", [
    ("/api/bot/launch", {"bot_id": 5}),
    ("/api/bot/launch", {"title": ["x"]}),
    ("/api/bot/launch", {"title": "x" * 129}),
    ("/api/session/create", {"bot_id": {"a": 1}}),
    ("/api/bot/%(id)s/task", {"message": 5}),
    ("/api/bot/%(id)s/task", {"message": ""}),
    ("/api/bot/%(id)s/task", {}),
    ("/api/bot/%(id)s/task", {"content": True}),
    ("/api/chat", {"message": None}),
    ("/api/chat", {"message": "x", "history": "no"}),
    ("/api/chat", {"message": "x", "history": [{"role": "user"}]}),
    ("/api/chat", {"message": "x", "history": [{"role": "system", "content": "s"}]}),
    ("/api/chat", {"message": "x", "history": [{"role": "user", "content": 1}]}),
    ("/api/chat", {"message": "x", "history": [["user", "x"]]}),
    ("/api/chat", {"message": "x", "history": [{"role": "user", "content": "c"}] * 201}),
    ("/api/chat", {"message": "x", "bot_id": 1}),
    ("/api/chat", {"message": "cut\u0000here"}),
    ("/api/chat", {"message": "x", "history": [{"role": "user", "content": "a\u0000b"}]}),
    ("/api/bot/%(id)s/task", {"message": "cut\u0000here"}),
    ("/api/export/session", {}),
    ("/api/export/session", {"conversation_id": 5}),
    ("/api/export/session", {"conversation_id": "%(id)s", "format": "pdf"}),
    ("/api/export/session", {"conversation_id": "%(id)s", "format": 1}),
    ("/api/session/%(id)s/rename", {}),
    ("/api/session/%(id)s/rename", {"title": 7}),
    ("/api/session/%(id)s/rename", {"title": "t" * 129}),
])
def test_wrong_field_types_are_400(rest, path, body):
    conv = session(rest)
    body = json.loads(json.dumps(body).replace("%(id)s", conv))
    r = rest.post(path % {"id": conv}, body)
    err(r, 400, "bad_request")
    # nothing happened to the session
    assert rest.get("/api/chat/history", params={"conversation_id": conv}).json()["total"] == 0


def test_unknown_fields_are_ignored(rest):
    conv = session(rest)
    r = rest.post("/api/bot/%s/task" % conv, {"message": "x [[fake tokens=1]]",
                                                "extra": {"deep": [1, 2]}, "n": None})
    assert r.status_code == 200


@pytest.mark.parametrize("path", POST_ROUTES)
def test_oversized_body_is_413(srv, rest, path):
    conv = session(rest)
    big = json.dumps({"message": "x" * (1024 * 1024 + 10)})
    r = rest.post(path % {"id": conv}, raw=big)
    err(r, 413, "too_large")


def test_oversized_chunked_body_is_413(srv, rest):
    conv = session(rest)

    def gen():
        yield b'{"message":"'
        for _ in range(130):
            yield b"x" * 8192
        yield b'"}'
    r = rest.s.post(srv.base + "/api/bot/%s/task" % conv, data=gen(),
                    headers={"Content-Type": "application/json"}, timeout=30)
    err(r, 413, "too_large")


def test_message_over_the_message_limit_is_413(rest):
    conv = session(rest)
    r = rest.post("/api/bot/%s/task" % conv, {"message": "x" * 70000})
    err(r, 413, "too_large")
    r = rest.post("/api/chat", {"message": "x" * 70000})
    err(r, 413, "too_large")


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/bot/%(id)s/status", None),
    ("GET", "/api/chat/history?conversation_id=%(id)s", None),
    ("POST", "/api/bot/%(id)s/task", {"message": "x"}),
    ("POST", "/api/bot/stop/%(id)s", None),
    ("POST", "/api/session/%(id)s/select", None),
    ("POST", "/api/session/%(id)s/archive", None),
    ("POST", "/api/session/%(id)s/unarchive", None),
    ("POST", "/api/session/%(id)s/rename", {"title": "x"}),
    ("POST", "/api/session/%(id)s/stop", None),
    ("POST", "/api/session/%(id)s/delete", None),
    ("POST", "/api/export/session", {"conversation_id": "%(id)s"}),
])
@pytest.mark.parametrize("bad", ["000000010123456789abcdef", "nope", "x" * 64,
                                 "00000001-123456789abcdef", "0" * 24,
                                 "00000001ABCDEF0123456789"])
def test_unknown_ids_are_404(rest, method, path, body, bad):
    p = path % {"id": bad}
    if method == "GET":
        r = rest.get(p)
    else:
        b = json.loads(json.dumps(body).replace("%(id)s", bad)) if body else None
        r = rest.post(p, b)
    err(r, 404, "not_found")


def test_unknown_bot_in_history_is_404(rest):
    err(rest.get("/api/chat/history", params={"bot_id": "nosuchbot"}), 404, "not_found")


@pytest.mark.parametrize("path,params", [
    ("/api/nope", None), ("/api/", None), ("/api", None), ("/api/bot", None),
    ("/api/bot/a/b/c/d", None), ("/api/session/x/frobnicate", None),
    ("/api/chat/history/extra", None),
])
def test_unknown_routes_and_bots_are_404(rest, path, params):
    err(rest.get(path, params=params), 404, "not_found")
    err(rest.post(path), 404, "not_found")


@pytest.mark.parametrize("limit,offset", [("-1", "0"), ("abc", "0"), ("1.5", "0"),
                                          ("1", "-3"), ("1", "1e3"), ("99999999999", "0")])
def test_bad_pagination_is_400(rest, limit, offset):
    conv = session(rest)
    r = rest.get("/api/chat/history", params={"conversation_id": conv, "limit": limit,
                                              "offset": offset})
    err(r, 400, "bad_request")


@pytest.mark.parametrize("path", POST_ROUTES)
def test_get_on_post_routes_is_405(rest, path):
    conv = session(rest)
    r = rest.get(path % {"id": conv})
    err(r, 405)
    assert r.headers["Allow"] == "POST"


@pytest.mark.parametrize("path", GET_ROUTES)
def test_post_on_get_routes_is_405(rest, path):
    conv = session(rest)
    r = rest.post(path % {"id": conv})
    err(r, 405)
    assert r.headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_other_methods_are_405(rest, method):
    r = rest.s.request(method, rest.base + "/api/sessions", timeout=10)
    err(r, 405)


def test_backend_failure_is_a_json_error(rest, fake):
    conv = session(rest)
    fake.script({"status": 503})
    r = rest.post("/api/bot/%s/task" % conv, {"message": "x"})
    body = err(r, 503, "backend_busy")
    assert "busy" in body["message"]
    h = rest.get("/api/chat/history", params={"conversation_id": conv}).json()
    assert h["messages"][-1]["error"] is True
    assert h["messages"][-1]["code"] == "backend_busy"
    assert h["messages"][-1]["content"] == body["message"]


def test_wrong_content_type_is_400(rest):
    r = rest.post("/api/bot/launch", raw=b'{"bot_id":"helper"}',
                  headers={"Content-Type": "text/plain"})
    err(r, 400, "bad_request")


def test_raw_garbage_request_never_500(srv):
    """Bodies cut short, a lying Content-Length: the server answers 400 or
    waits for the rest, never 500."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    body = b'{"bot_id":"hel'
    s.sendall(b"POST /api/bot/launch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
              b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    assert data.startswith(b"HTTP/1.1 400"), data[:100]
