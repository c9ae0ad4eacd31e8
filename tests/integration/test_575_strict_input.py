"""Strict input (issue 14), as an attacker sends it: JSON per RFC 8259 (no
raw TAB, LF or 0x01 in strings, no single quotes or NaN), UTF-8 everywhere
(overlong, surrogate, out-of-range: REST 400 bad_json, WebSocket close
1007), empty and blank titles refused, documented ranges enforced
(history limit <= 1000), reads that create nothing, and
X-Content-Type-Options sent once."""
import json

import pytest
import requests

from conftest import new_sid_cookie
from histutil import Conn, Rest
from wsclient import RawWS

RAW_BAD = [
    (b'{"message":"a\tb"}', "raw TAB"),
    (b'{"message":"a\nb"}', "raw LF"),
    (b'{"message":"a\x01b"}', "raw 0x01"),
    (b'{"mess\tage":"x"}', "raw TAB in a key"),
    (b'{"message":"\xc0\xaf"}', "overlong '/'"),
    (b'{"message":"\xe0\x80\xaf"}', "overlong, 3 bytes"),
    (b'{"message":"\xed\xa0\x80"}', "UTF-8-encoded surrogate"),
    (b'{"message":"\xf4\x90\x80\x80"}', "above U+10FFFF"),
    (b'{"message":"\xff"}', "0xFF"),
    (b'{"message":"ok","\xc3":1}', "cut sequence in a key"),
    (b'{"message":"ok"}\xc0\xaf', "bad UTF-8 after the object"),
    (b"{'message':'hi'}", "single quotes"),
    (b'{"message":"hi","n":NaN}', "NaN"),
    (b'{"message":"hi","n":Infinity}', "Infinity"),
    (b'{"message":"hi",}', "trailing comma"),
]


@pytest.fixture(scope="module")
def srv(fake):
    from histutil import module_server
    yield from module_server(fake, "ChatbotRateLimit off\n", "strict")


def conv_count(server):
    r = requests.get(server.base + "/api/health", timeout=10)   # local: details
    return r.json()["store"]["conversations"]


def create(rest, **body):
    r = rest.post("/api/session/create", body)
    assert r.status_code == 201, r.text
    return r.json()["conversation_id"]


@pytest.mark.parametrize("raw,what", RAW_BAD, ids=[w for _, w in RAW_BAD])
def test_rest_bad_json_is_refused_and_stores_nothing(srv, raw, what):
    rest = Rest(srv, cookie=new_sid_cookie())
    conv = create(rest)
    before = conv_count(srv)
    for path in ("/api/session/%s/task" % conv, "/api/chat", "/api/session/create",
                 "/api/session/%s/rename" % conv, "/api/execute"):
        r = rest.post(path, raw=raw)
        assert r.status_code == 400, (path, r.status_code, r.text)
        assert r.json()["error"] == "bad_json", (path, r.text)
        assert "invalid" in r.json()["message"]
    # the old controller's routes: the same 400, in its shape (docs/api.md)
    for path in ("/api/bot/%s/task" % conv, "/api/bot/launch", "/api/chat/message"):
        r = rest.post(path, raw=raw)
        assert r.status_code == 400, (path, r.status_code, r.text)
        body = r.json()
        assert body["success"] is False and body["code"] == "bad_json", (path, r.text)
        assert "invalid" in body["error"] and body["error"] == body["message"]
    # nothing was stored: no message, no new conversation, no U+FFFD
    h = rest.get("/api/chat/history?conversation_id=" + conv).json()
    assert h["total"] == 0 and h["title"] == ""
    assert conv_count(srv) == before
    # the same text written properly is accepted, on both kinds of route
    ok = rest.post("/api/session/%s/task" % conv,
                   {"message": "a\tb\u0001 \u00e9 [[fake tokens=1]]"})
    assert ok.status_code == 200, ok.text
    ok = rest.post("/api/bot/%s/task" % conv,
                   {"command": "a\tb\u0001 \u00e9 [[fake tokens=1]]"})
    assert ok.status_code == 200 and ok.json()["success"] is True, ok.text
    h = rest.get("/api/chat/history?conversation_id=" + conv).json()
    assert [m["content"] for m in h["messages"] if m["role"] == "user"] == [
        "a\tb\u0001 \u00e9 [[fake tokens=1]]"] * 2


def _ws_error(server, payload):
    c = Conn(server, cookie=new_sid_cookie())
    try:
        c.send(1, payload)
        return c.wait(lambda m: m.get("type") == "error")[0]
    finally:
        c.close()


@pytest.mark.parametrize("raw", [b'{"type":"message","content":"a\tb"}',
                                 b'{"type":"message","content":"a\nb"}',
                                 b'{"type":"message","content":"a\x01b"}',
                                 b"{'type':'ping'}",
                                 b'{"type":"history","limit":NaN}'])
def test_ws_bad_json_gets_an_error_frame(srv, raw):
    m = _ws_error(srv, raw)
    assert m["code"] == "bad_json" and "invalid JSON" in m["message"], m


@pytest.mark.parametrize("raw", [b'{"type":"message","content":"\xc0\xaf"}',
                                 b'{"type":"message","content":"\xed\xa0\x80"}',
                                 b'{"type":"message","content":"\xf4\x90\x80\x80"}'])
def test_ws_invalid_utf8_closes_1007(srv, raw):
    ws = RawWS(srv.port, headers={"Cookie": new_sid_cookie()})
    try:
        ws.send(1, raw)
        assert ws.close_code() == 1007
    finally:
        ws.close()


# ---- titles and ranges ----------------------------------------------------------------


@pytest.mark.parametrize("title", ["", " ", "\t\n", "\u00a0", "\u0085 \u007f"])
def test_empty_or_blank_titles_are_refused(srv, title):
    rest = Rest(srv, cookie=new_sid_cookie())
    conv = create(rest, title="kept")
    r = rest.post("/api/session/%s/rename" % conv, {"title": title})
    assert r.status_code == 400 and r.json()["error"] == "bad_request", r.text
    r = rest.post("/api/session/create", {"title": title})
    assert r.status_code == 400 and r.json()["error"] == "bad_request", r.text
    # the old controller's bot ids become titles: a blank one is refused too
    r = rest.post("/api/bot/launch", {"bot_id": title})
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    r = rest.post("/api/chat/message", {"role": "user", "content": "x", "bot_id": title})
    assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    assert [s["title"] for s in rest.get("/api/sessions").json()["sessions"]] == ["kept"]
    c = Conn(srv, cookie=rest.s.headers["Cookie"])
    try:
        m = c.request({"type": "rename", "conversation_id": conv, "title": title}, "ok")
        assert m["type"] == "error" and m["code"] == "bad_request", m
    finally:
        c.close()
    assert [s["title"] for s in rest.get("/api/sessions").json()["sessions"]] == ["kept"]


def test_history_limit_is_at_most_1000(srv):
    rest = Rest(srv, cookie=new_sid_cookie())
    conv = create(rest)
    q = "/api/chat/history?conversation_id=%s&limit=" % conv
    assert rest.get(q + "1000").status_code == 200
    for bad in ("1001", "100000", "-1", "1e3", "1.0", "ten"):
        r = rest.get(q + bad)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", (bad, r.text)
    assert rest.get(q + "5&offset=1000001").status_code == 400
    c = Conn(srv, cookie=rest.s.headers["Cookie"])
    try:
        m = c.request({"type": "history", "conversation_id": conv, "limit": 1001}, "history")
        assert m["type"] == "error" and m["code"] == "bad_request", m
        assert "at most 1000" in m["message"]
        assert c.request({"type": "history", "conversation_id": conv, "limit": 1000},
                         "history")["limit"] == 1000
    finally:
        c.close()


def test_query_values_must_be_utf8(srv):
    rest = Rest(srv, cookie=new_sid_cookie())
    for q in ("bot_id=%C0%AF", "bot_id=%ED%A0%80", "conversation_id=%FF"):
        r = rest.get("/api/chat/history?" + q)
        assert r.status_code == 400 and r.json()["error"] == "bad_request", (q, r.text)


# ---- reading creates nothing --------------------------------------------------------------


def test_reads_create_nothing(srv):
    before = conv_count(srv)
    forged = "chatbot_sid=" + "0" * 32
    for cookie in (None, forged):
        h = {"Cookie": cookie} if cookie else {}
        for path in ("/api/sessions", "/api/chat/history", "/api/chat/history?bot_id=default",
                     "/api/bot/000000010000000000000000/status", "/api/bots",
                     "/api/bots/status", "/api/bots/declared", "/api/status",
                     "/api/health", "/api/models"):
            for method in ("GET", "HEAD"):
                r = requests.request(method, srv.base + path, headers=h, timeout=15)
                assert "Set-Cookie" not in r.headers, (method, path)
                assert r.status_code in (200, 404), (method, path, r.status_code)
        r = requests.get(srv.base + "/api/chat/history", headers=h, timeout=15)
        assert r.json()["conversation_id"] is None and r.json()["messages"] == []
        assert requests.get(srv.base + "/api/sessions", headers=h,
                            timeout=15).json()["sessions"] == []
    assert conv_count(srv) == before


# ---- headers ---------------------------------------------------------------------------------


def header_names(server, method, path, body=None, headers=None):
    """Every header name of the response, repeats kept, lower case."""
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
    try:
        c.request(method, path, body=body, headers=headers or {})
        return [k.lower() for k, _ in c.getresponse().getheaders()]
    finally:
        c.close()


@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/bots", None),
    ("HEAD", "/api/health", None),
    ("GET", "/api/nosuchroute", None),
    ("POST", "/api/bots", b""),
    ("POST", "/api/chat", b"{x}"),
])
def test_nosniff_is_sent_once(srv, method, path, body):
    """The finding: X-Content-Type-Options appeared twice (the module's and
    the configuration's `Header always set`, conf/chatbot-csp.conf)."""
    names = header_names(srv, method, path, body)
    assert names.count("x-content-type-options") == 1, names
    assert names.count("cache-control") == 1, names


def test_nosniff_once_on_the_export(srv):
    rest = Rest(srv, cookie=new_sid_cookie())
    conv = create(rest)
    names = header_names(srv, "POST", "/api/export/session",
                         json.dumps({"conversation_id": conv}).encode(),
                         {"Cookie": rest.s.headers["Cookie"],
                          "Content-Type": "application/json"})
    assert names.count("x-content-type-options") == 1, names
