"""The REST API (issue 5), route by route: success, then bad JSON, fields
of the wrong type, oversized bodies, unknown ids, wrong methods. Every
refusal is a 4xx with a JSON error body, never a 500 (the access log is
checked at the end, the error log by the fixture). Same identity and rate
limits as the WebSocket. docs/api.md describes every route.

Then the API under hostile or careless clients: methods and Allow,
Content-Type, body limits (Content-Length and chunked), query parameters,
cross-origin POSTs (CSRF), the cookie's flags, the error body's shape, and
a client that disconnects while a blocking route (`/api/chat`,
`/api/session/{id}/task`) waits for its answer: the fake backend records
when its upstream request was closed."""
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

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
        # the port-8000 routes keep the old shape: "error" is the text, "code"
        # the stable code (docs/api.md)
        assert (body["code"] if body.get("success") is False else body["error"]) == code, body
    return body


def session(rest, bot="helper", title=None):
    body = {"bot_id": bot}
    if title:
        body["title"] = title
    r = rest.post("/api/session/create", body)
    assert r.status_code == 201, r.text
    return r.json()["conversation_id"]


# ---- every route's success ------------------------------------------------------------


def test_health(srv):
    r = requests.get(srv.base + "/api/health", timeout=10)
    assert r.status_code == 200, r.text
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
    body = rest.get("/api/bots/declared").json()
    assert [b["id"] for b in body["bots"]] == ["helper", "other"]
    assert body["default"] == "helper"
    assert body["bots"][0]["health"] == "up"
    st = rest.get("/api/status").json()
    assert st["backends"][0]["name"] == "default"
    assert {"connections", "generating", "queued", "conversations"} <= set(st)


def test_launch_create_status_stop(rest):
    r = rest.post("/api/session/create", {"bot_id": "other", "title": "launched"})
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
    r = rest.post("/api/session/%s/stop" % conv)
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
    r = rest.post("/api/session/%s/task" % conv, {"message": "the question"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == body["content"] == "the answer"
    assert body["conversation_id"] == conv and body["bot_id"] == "helper"
    assert body["interrupted"] is False
    assert body["stats"]["model"] == "helper-model" and body["stats"]["tokens"] == 2
    # "content" and "task" work as the message field too
    for key in ("content", "task"):
        r = rest.post("/api/session/%s/task" % conv, {key: "via " + key + " [[fake tokens=1]]"})
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
    rest.post("/api/session/%s/task" % conv, {"message": "q [[fake tokens=2]]"})
    r = rest.post("/api/export/session", {"session_id": conv, "format": "md"})
    assert r.status_code == 200 and r.text.startswith("# exp\n")
    assert "### You\n\nq [[fake tokens=2]]\n\n### Assistant\n\nt0 t1\n\n" in r.text
    r = rest.post("/api/export/session", {"conversation_id": conv, "format": "json"})
    assert r.json()["messages"][1]["content"] == "t0 t1"


def test_export_of_a_failed_turn(rest, fake):
    conv = session(rest, title="failing")
    fake.script({"status": 503})
    fail = rest.post("/api/session/%s/task" % conv, {"message": "q"}).json()
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
               "/api/session/%(id)s/task", "/api/chat/message",
               "/api/session/%(id)s/rename", "/api/session/%(id)s/select"]
GET_ROUTES = ["/api/health", "/api/bots", "/api/bots/status", "/api/bots/declared",
              "/api/status", "/api/sessions", "/api/chat/history",
              "/api/bot/%(id)s/status"]


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
    ("/api/session/create", {"title": ["x"]}),
    ("/api/session/create", {"title": "x" * 129}),
    ("/api/bot/launch", {"bot_id": "BOT-1", "bot_type": 5}),
    ("/api/bot/launch", {"bot_id": "a/b"}),
    ("/api/chat/message", {"role": "user", "content": "x"}),
    ("/api/chat/message", {"role": "system", "content": "x", "bot_id": "B"}),
    ("/api/chat/message", {"role": "user", "content": "", "bot_id": "B"}),
    ("/api/chat/message", {"role": "user", "content": 1, "bot_id": "B"}),
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
    ("POST", "/api/session/%(id)s/task", {"message": "x"}),
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
    r = rest.post("/api/session/%s/task" % conv, {"message": "x"})
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


# ==== hostile or careless clients ==================================================


def strict_err(r, status, code):
    """A JSON error body of the documented shape, never cached."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json"), r.headers
    assert r.headers.get("Cache-Control") == "no-store"
    body = r.json()
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert body["detail"] == body["message"]
    return body


def launch(rest):
    r = rest.post("/api/session/create", {"bot_id": "helper"})
    assert r.status_code == 201, r.text
    return r.json()["conversation_id"]


def raw_http(port, data, timeout=10.0, tls=False):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    s.sendall(data)
    return s


def read_all(s):
    out = b""
    while True:
        try:
            d = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        out += d
    s.close()
    return out


# ---- methods ----------------------------------------------------------------------------

ALL_GET_ROUTES = ["/api/health", "/api/models", "/api/bots", "/api/bots/status",
                  "/api/bots/declared", "/api/status", "/api/sessions",
                  "/api/chat/history", "/api/bot/{id}/status"]
ALL_POST_ROUTES = ["/api/bot/launch", "/api/session/create", "/api/bot/stop/{id}",
                   "/api/bot/{id}/task", "/api/session/{id}/task", "/api/chat",
                   "/api/chat/message", "/api/session/{id}/select",
                   "/api/session/{id}/archive", "/api/session/{id}/unarchive",
                   "/api/session/{id}/rename", "/api/session/{id}/delete",
                   "/api/session/{id}/stop", "/api/export/session", "/api/execute"]


def test_wrong_method_gets_the_routes_own_allow(rest):
    conv = launch(rest)
    for path in ALL_GET_ROUTES:
        for m in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            r = rest.s.request(m, rest.base + path.format(id=conv), data=b"{}",
                               headers={"Content-Type": "application/json"}, timeout=10)
            strict_err(r, 405, "bad_request")
            assert r.headers["Allow"] == "GET, HEAD", (m, path, r.headers["Allow"])
    for path in ALL_POST_ROUTES:
        for m in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
            r = rest.s.request(m, rest.base + path.format(id=conv), timeout=10)
            assert r.status_code == 405, (m, path, r.status_code)
            assert r.headers["Allow"] == "POST", (m, path, r.headers["Allow"])
            if m != "HEAD":
                strict_err(r, 405, "bad_request")
    # a wrong method never touched the session
    assert rest.get("/api/bot/%s/status" % conv).json()["session"]["state"] == "idle"


def test_unknown_route_is_404_whatever_the_method(rest):
    for m in ("GET", "POST", "PUT", "DELETE"):
        for path in ("/api/nope", "/api/bot/x/y/z", "/api/session/x/explode", "/api/bot"):
            strict_err(rest.s.request(m, rest.base + path, timeout=10), 404, "not_found")


def test_405_sets_no_cookie(srv):
    r = requests.put(srv.base + "/api/sessions", timeout=10)
    assert r.status_code == 405 and "Set-Cookie" not in r.headers


# ---- bodies ------------------------------------------------------------------------------


def test_content_type_must_name_json(rest):
    for ct in ("text/plain; charset=json", "application/jsonx", "text/json-ish",
               "application/x-www-form-urlencoded", "multipart/form-data; boundary=json"):
        strict_err(rest.post("/api/session/create", raw=b"{}",
                             headers={"Content-Type": ct}), 400, "bad_request")
    for ct in ("application/json", "Application/JSON; charset=utf-8",
               "application/json ;charset=UTF-8", "application/merge-patch+json"):
        r = rest.post("/api/session/create", raw=b"{}", headers={"Content-Type": ct})
        assert r.status_code == 201, (ct, r.text)


def test_declared_body_over_limit_is_413(srv, rest):
    # bigger than LimitRequestBody itself: refused before a byte is read
    s = raw_http(srv.port, b"POST /api/session/create HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n"
                 b"Connection: close\r\n\r\n")
    out = read_all(s)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), out[:200]
    assert json.loads(body)["error"] == "too_large"
    # chunked, over 1 MiB
    big = b'{"title":"' + b"a" * (1024 * 1024) + b'"}'
    r = rest.post("/api/session/create", raw=iter([big[i:i + 65536]
                                                    for i in range(0, len(big), 65536)]))
    strict_err(r, 413, "too_large")


def test_expect_continue_over_limit_is_refused_without_the_body(srv):
    s = raw_http(srv.port, b"POST /api/session/create HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 2000000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    s.settimeout(5)
    head = s.recv(65536)
    s.close()
    assert head.startswith(b"HTTP/1.1 413"), head[:100]


# ---- query parameters -------------------------------------------------------------------


class Resp:
    """Enough of a requests.Response for strict_err()."""

    def __init__(self, raw):
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_code = int(lines[0].split()[1])
        self.headers = requests.structures.CaseInsensitiveDict(
            l.split(": ", 1) for l in lines[1:])
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.text)


def raw_get(srv, cookie, target):
    """GET with the request target sent exactly as given (requests would
    re-encode a bad %-escape)."""
    return Resp(read_all(raw_http(srv.port, ("GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n"
                                             "Connection: close\r\n\r\n"
                                             % (target, cookie)).encode())))


def test_query_parameters_repeated_or_badly_encoded(srv, rest):
    conv = launch(rest)
    ck = rest.s.headers["Cookie"]
    h = "/api/chat/history?conversation_id=" + conv
    for q in ("&limit=1&limit=2", "&offset=0&offset=1", "&limit=%zz", "&limit=%00",
              "&limit=-1", "&limit=1e99", "&limit=%2210%22", "&limit=10.0", "&limit=+5",
              "&offset=99999999999999999999999"):
        strict_err(raw_get(srv, ck, h + q), 400, "bad_request")
    # an id that does not decode is not "no id" (which means the latest session)
    for q in ("conversation_id=%zz", "conversation_id=%00",
              "conversation_id=%s&conversation_id=%s" % (conv, conv),
              "conversation_id=%s&session_id=%%zz" % conv):
        strict_err(raw_get(srv, ck, "/api/chat/history?" + q), 400, "bad_request")
    strict_err(raw_get(srv, ck, "/api/sessions?bot_id=helper&bot_id=other"), 400,
               "bad_request")
    strict_err(raw_get(srv, ck, "/api/sessions?archived=%zz"), 400, "bad_request")
    assert raw_get(srv, ck, h + "&limit=2&offset=0").status_code == 200


# ---- cross-origin requests ---------------------------------------------------------------


def test_cross_origin_post_is_refused(srv, rest):
    conv = launch(rest)
    before = len(rest.get("/api/sessions").json()["sessions"])
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1",
                   "https://127.0.0.1.evil.example:%d" % srv.port):
        h = {"Origin": origin, "Content-Type": "application/json"}
        for path, body in (("/api/session/create", {}),
                           ("/api/session/%s/task" % conv, {"message": "hi"}),
                           ("/api/session/%s/delete" % conv, {}),
                           ("/api/chat", {"message": "hi"}),
                           ("/api/execute", {"command": "ls"})):
            strict_err(rest.post(path, body, headers=h), 403, "forbidden")
    assert len(rest.get("/api/sessions").json()["sessions"]) == before
    assert rest.get("/api/chat/history",
                    params={"conversation_id": conv}).json()["total"] == 0
    # the page's own origin, and clients without Origin, may
    same = {"Origin": "http://127.0.0.1:%d" % srv.port}
    assert rest.post("/api/session/create", {}, headers=same).status_code == 201
    assert rest.post("/api/session/create", {}).status_code == 201
    # reads are not refused (a cross-origin page cannot read them: no CORS)
    r = rest.get("/api/sessions", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers


def test_allowed_origins_directive_applies_to_the_api(httpd):
    s = httpd(extra="ChatbotRateLimit off\nChatbotAllowedOrigins https://app.example.org")
    rest = Rest(s, cookie=new_cookie())
    ok = rest.post("/api/session/create", {}, headers={"Origin": "https://app.example.org"})
    assert ok.status_code == 201, ok.text
    # "same" is not listed: the host itself is refused now, as for the WebSocket
    strict_err(rest.post("/api/session/create", {},
                         headers={"Origin": "http://127.0.0.1:%d" % s.port}), 403, "forbidden")


def test_cookie_flags(srv):
    r = requests.post(srv.base + "/api/session/create", json={}, timeout=10)
    assert r.status_code == 201
    c = r.headers["Set-Cookie"]
    assert re.match(r"chatbot_sid=[0-9a-f]{32}\.[A-Za-z0-9_-]{43}; ", c), c
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in c, c


# ---- a client that goes away mid-answer ----------------------------------------------------


def start_turn(srv, cookie, path, message, tls=False):
    body = json.dumps({"message": message}).encode()
    port = srv.sslport if tls else srv.port
    return raw_http(port, ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: %s\r\n"
                           "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                           % (path, port, cookie, len(body))).encode() + body, tls=tls)


def upstream(fake, tag, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        recs = [r for r in fake.requests() if tag in json.dumps(r.get("body"))]
        if recs and recs[-1]["tokens_sent"] > 0:
            return recs[-1]
        time.sleep(0.05)
    raise AssertionError("the backend never got " + tag)


@pytest.mark.parametrize("tls", [False, True])
def test_stateless_chat_cancelled_when_client_leaves(srv, fake, tls):
    tag = "gone-%s" % os.urandom(4).hex()
    s = start_turn(srv, new_cookie(), "/api/chat",
                   "%s [[fake tokens=400 delay_ms=20]]" % tag, tls=tls)
    rec = upstream(fake, tag)
    s.close()
    t0 = time.time()
    rec = fake.wait_closed(rec["id"], timeout=10)
    assert rec["outcome"] == "client_closed", rec
    # closed at once, long before the 8 s the answer takes
    assert rec["t_end"] - t0 < 1.5, rec["t_end"] - t0
    assert rec["tokens_sent"] < 200


def test_task_finishes_into_history_when_client_leaves(srv, fake, rest):
    conv = launch(rest)
    tag = "left-%s" % os.urandom(4).hex()
    s = start_turn(srv, rest.s.headers["Cookie"], "/api/session/%s/task" % conv,
                   "%s [[fake tokens=60 delay_ms=20]]" % tag)
    rec = upstream(fake, tag)
    s.close()
    rec = fake.wait_closed(rec["id"], timeout=15)
    assert rec["outcome"] == "complete", rec
    end = time.time() + 5
    while time.time() < end:
        h = rest.get("/api/chat/history", params={"conversation_id": conv}).json()
        if h["state"] == "idle":
            break
        time.sleep(0.05)
    ans = h["messages"][-1]
    assert ans["role"] == "assistant" and not ans["interrupted"] and not ans["streaming"]
    assert ans["content"].split() == ["t%d" % i for i in range(60)]


def test_task_stopped_when_client_leaves_without_continue(httpd, fake):
    s = httpd(extra=EXTRA + "ChatbotContinueWithoutViewer off\n")
    rest = Rest(s, cookie=new_cookie())
    conv = launch(rest)
    tag = "stop-%s" % os.urandom(4).hex()
    sock = start_turn(s, rest.s.headers["Cookie"], "/api/session/%s/task" % conv,
                      "%s [[fake tokens=400 delay_ms=20]]" % tag)
    rec = upstream(fake, tag)
    sock.close()
    t0 = time.time()
    rec = fake.wait_closed(rec["id"], timeout=10)
    assert rec["outcome"] == "client_closed", rec
    assert rec["t_end"] - t0 < 1.5
    end = time.time() + 5
    while time.time() < end:
        h = rest.get("/api/chat/history", params={"conversation_id": conv}).json()
        if h["state"] != "generating":
            break
        time.sleep(0.05)
    ans = h["messages"][-1]
    assert ans["role"] == "assistant" and ans["interrupted"] is True


def test_pipelined_request_is_not_a_disconnect(srv, fake):
    """A client that sends its next request before the answer (HTTP/1.1
    pipelining) is still there: the answer runs to the end and both
    responses come back in order."""
    tag = "pipe-%s" % os.urandom(4).hex()
    body = json.dumps({"message": "%s [[fake tokens=30 delay_ms=20]]" % tag}).encode()
    s = raw_http(srv.port, ("POST /api/chat HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n"
                            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                            % (new_cookie(), len(body))).encode() + body +
                 b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = read_all(s)
    assert out.count(b"HTTP/1.1 200 OK") == 2, out[:300]
    first = out.split(b"\r\n\r\n", 1)[1]
    assert b'"interrupted":false' in first and b" t29" in first
    rec = upstream(fake, tag)
    assert fake.wait_closed(rec["id"], timeout=10)["outcome"] == "complete"


@pytest.mark.skipif(not shutil.which("curl"), reason="needs curl (HTTP/2 client)")
def test_stateless_chat_cancelled_when_h2_client_leaves(srv, fake):
    """Over HTTP/2 there is no socket of the request's own: mod_http2 marks
    the stream's connection aborted when the client goes."""
    tag = "h2gone-%s" % os.urandom(4).hex()
    body = json.dumps({"message": "%s [[fake tokens=400 delay_ms=20]]" % tag})
    p = subprocess.Popen(["curl", "-sk", "--http2", "-o", "/dev/null", "-w", "%{http_version}",
                          "-H", "Content-Type: application/json", "-d", body,
                          "https://127.0.0.1:%d/api/chat" % srv.sslport],
                         stdout=subprocess.PIPE)
    rec = upstream(fake, tag)
    p.kill()
    p.wait()
    t0 = time.time()
    rec = fake.wait_closed(rec["id"], timeout=10)
    assert rec["outcome"] == "client_closed", rec
    assert rec["t_end"] - t0 < 1.5
    end = time.time() + 5
    while not any('"POST /api/chat HTTP/2.0" 408' in l for l in srv.access_lines()):
        assert time.time() < end, "no 408 for the HTTP/2 request in the access log"
        time.sleep(0.1)
