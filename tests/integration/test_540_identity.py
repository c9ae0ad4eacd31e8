"""Identity and isolation (issue 5): the anonymous session cookie (128
random bits signed by the server, HttpOnly, SameSite=Strict, Secure and
__Host- over https; the signature itself: test_545), r->user from an
httpd auth module, and attacks: another identity sending the victim's
conversation ids to every WebSocket message type and every REST route gets
not_found (exactly what an unknown id gets) and changes nothing."""
import os
import re

import pytest
import requests

from histutil import Conn, Rest, htpasswd, new_cookie, streams
from wsclient import handshake

FULL40 = " ".join("t%d" % i for i in range(40))
COOKIE_RE = re.compile(r"^(?:__Host-)?chatbot_sid=([0-9a-f]{32})\.[A-Za-z0-9_-]{43}; Path=/; "
                       r"HttpOnly; SameSite=Strict(; Secure)?; Max-Age=31536000$")


# ---- the anonymous cookie -------------------------------------------------------


def test_cookie_attributes_over_http_and_https(server):
    r = requests.post(server.base + "/api/session/create", json={}, timeout=10)
    assert r.status_code == 201
    m = COOKIE_RE.match(r.headers["Set-Cookie"])
    assert m and not m.group(2), r.headers["Set-Cookie"]        # no Secure over http
    assert r.headers["Set-Cookie"].startswith("chatbot_sid=")
    r2 = requests.post(server.base + "/api/session/create", json={}, timeout=10)
    assert COOKIE_RE.match(r2.headers["Set-Cookie"]).group(1) != m.group(1)
    r = requests.post(server.sbase + "/api/session/create", json={}, timeout=10,
                      verify=False)
    m = COOKIE_RE.match(r.headers["Set-Cookie"])
    assert m and m.group(2) == "; Secure", r.headers["Set-Cookie"]
    assert r.headers["Set-Cookie"].startswith("__Host-chatbot_sid=")
    # the old controller's launch (docs/api.md, compatibility) issues the
    # same cookie, under the same names
    for base, prefix, secure in ((server.base, "chatbot_sid=", None),
                                 (server.sbase, "__Host-chatbot_sid=", "; Secure")):
        r = requests.post(base + "/api/bot/launch", json={"bot_id": "BOT-001"}, timeout=10,
                          verify=False)
        assert r.status_code == 200 and r.json()["success"] is True, r.text
        m = COOKIE_RE.match(r.headers["Set-Cookie"])
        assert m and m.group(2) == secure and r.headers["Set-Cookie"].startswith(prefix)
    # a known cookie is kept; health checks and reads never get one
    r = requests.post(server.base + "/api/session/create", json={}, timeout=10,
                      headers={"Cookie": new_cookie()})
    assert r.status_code == 201 and "Set-Cookie" not in r.headers
    r = requests.post(server.base + "/api/bot/launch", json={"bot_id": "BOT-001"},
                      timeout=10, headers={"Cookie": new_cookie()})
    assert r.status_code == 200 and "Set-Cookie" not in r.headers
    assert "Set-Cookie" not in requests.get(server.base + "/api/health", timeout=10).headers
    assert "Set-Cookie" not in requests.get(server.base + "/api/sessions", timeout=10).headers


def test_cookie_on_the_websocket_handshake(server):
    status, hdrs, s, rest, key = handshake(server.port)
    s.close()
    assert status == 101
    assert COOKIE_RE.match(hdrs["set-cookie"]) and "Secure" not in hdrs["set-cookie"]
    cookie = new_cookie()
    status, hdrs, s, rest, key = handshake(server.port, headers={"Cookie": cookie})
    s.close()
    assert status == 101 and "set-cookie" not in hdrs


@pytest.mark.parametrize("value", [
    "ABCDEF0123456789ABCDEF0123456789",        # upper case: not ours
    "0123456789abcdef0123456789abcde",         # 31 digits
    "0123456789abcdef0123456789abcdef0",       # 33 digits
    "0123456789abcdef0123456789abcdeg",        # not hex
    "0123456789abcdef0123456789abcdef",        # the old unsigned form
])
def test_malformed_cookie_gets_a_fresh_identity(server, value):
    status, hdrs, s, rest, key = handshake(server.port,
                                           headers={"Cookie": "chatbot_sid=" + value})
    s.close()
    assert status == 101
    m = COOKIE_RE.match(hdrs["set-cookie"])
    assert m and m.group(1) != value


def test_the_cookie_is_the_identity(server):
    me = new_cookie()
    c = Conn(server, cookie=me)
    try:
        conv = c.launch()
        c.turn("mine [[fake tokens=2]]", conversation_id=conv)
    finally:
        c.close()
    ids = [x["conversation_id"] for x in
           Rest(server, cookie=me).get("/api/sessions").json()["sessions"]]
    assert ids == [conv]
    # the cookie among others, in any position
    r = requests.get(server.base + "/api/sessions", timeout=10,
                     headers={"Cookie": "a=1; x_chatbot_sid=zz; " + me + "; b=2"})
    assert [x["conversation_id"] for x in r.json()["sessions"]] == [conv]
    assert Rest(server, cookie=new_cookie()).get("/api/sessions").json()["sessions"] == []


# ---- r->user ------------------------------------------------------------------------


@pytest.fixture
def authsrv(httpd, tmp_path):
    pw = htpasswd(alice="alice-pw", bob="bob-pw")
    auth = ("    AuthType Basic\n    AuthName chat\n    AuthBasicProvider file\n"
            "    AuthUserFile %s\n    Require valid-user\n" % pw)
    extra = ("ChatbotRateLimit off\n<Location \"/ws\">\n%s</Location>\n"
             "<Location \"/api\">\n%s</Location>\n" % (auth, auth))
    return httpd(extra=extra, name="auth")


def test_authenticated_user_is_the_identity(authsrv):
    assert requests.get(authsrv.base + "/api/sessions", timeout=10).status_code == 401
    a1 = Conn(authsrv, auth=("alice", "alice-pw"))
    try:
        assert a1.hello["user"] == "alice"
        assert "set-cookie" not in a1.headers
        conv = a1.launch(title="alice's")
        a1.turn("hello from alice [[fake tokens=2]]", conversation_id=conv)
    finally:
        a1.close()
    # the same user from anywhere (another cookie, another connection)
    a2 = Conn(authsrv, auth=("alice", "alice-pw"), cookie=new_cookie())
    try:
        assert a2.hello["conversation_id"] == conv
        h = a2.request({"type": "history", "conversation_id": conv}, "history")
        assert h["total"] == 2
    finally:
        a2.close()
    rest = Rest(authsrv, auth=("alice", "alice-pw"))
    r = rest.get("/api/sessions")
    assert "Set-Cookie" not in r.headers
    assert [x["conversation_id"] for x in r.json()["sessions"]] == [conv]
    # bob sees nothing of alice's, even with alice's ids
    bob = Rest(authsrv, auth=("bob", "bob-pw"))
    assert bob.get("/api/sessions").json()["sessions"] == []
    assert bob.get("/api/chat/history", params={"conversation_id": conv}).status_code == 404
    b = Conn(authsrv, auth=("bob", "bob-pw"))
    try:
        assert b.hello["user"] == "bob" and b.hello["conversation_id"] is None
        m = b.request({"type": "history", "conversation_id": conv}, "history")
        assert m["type"] == "error" and m["code"] == "not_found"
    finally:
        b.close()


# ---- attacks ----------------------------------------------------------------------


def victim_state(rest, conv):
    h = rest.get("/api/chat/history", params={"conversation_id": conv, "limit": 1000})
    assert h.status_code == 200
    h = h.json()
    sessions = {s["conversation_id"]: s for s in rest.get("/api/sessions").json()["sessions"]}
    s = dict(sessions[conv])
    return ([(m["role"], m["content"], m.get("interrupted")) for m in h["messages"]],
            s["title"], s["state"], s["stopped"], s["archived"], s["messages"])


def ws_attacks(conv):
    return [
        {"type": "message", "content": "steal", "conversation_id": conv},
        {"type": "message", "content": "!ls", "conversation_id": conv},
        {"type": "regenerate", "conversation_id": conv},
        {"type": "edit", "conversation_id": conv, "index": 0, "content": "changed"},
        {"type": "history", "conversation_id": conv},
        {"type": "resume", "conversation_id": conv},
        {"type": "select", "conversation_id": conv},
        {"type": "stop", "conversation_id": conv},
        {"type": "stop_session", "conversation_id": conv},
        {"type": "rename", "conversation_id": conv, "title": "pwned"},
        {"type": "archive", "conversation_id": conv},
        {"type": "archive", "conversation_id": conv, "archived": False},
        {"type": "delete", "conversation_id": conv},
        {"type": "export", "conversation_id": conv},
        {"type": "export", "conversation_id": conv, "format": "json"},
        {"type": "run", "command": "ls", "conversation_id": conv},
    ]


def attack_ws(conn, conv):
    """Sends every message type with conv; returns the replies (the error
    frame each one got, with the id stripped)."""
    out = []
    for i, msg in enumerate(ws_attacks(conv)):
        msg = dict(msg, id="a%d" % i)
        conn.send_json(msg)
        m, before = conn.wait(lambda f: f.get("type") not in ("sessions", "status"), 5)
        assert not [f for f in before if f.get("type") == "sessions"
                    and any(s["conversation_id"] == conv for s in f["sessions"])]
        out.append((msg["type"], m))
    return out


def rest_attacks(rest, conv):
    calls = [
        ("GET", "/api/chat/history?conversation_id=%s" % conv, None),
        ("GET", "/api/bot/%s/status" % conv, None),
        ("POST", "/api/session/%s/task" % conv, {"message": "steal"}),
        ("POST", "/api/export/session", {"conversation_id": conv}),
        ("POST", "/api/export/session", {"conversation_id": conv, "format": "json"}),
        ("POST", "/api/execute", {"command": "ls", "conversation_id": conv}),
    ] + [("POST", "/api/session/%s/%s" % (conv, op), {"title": "pwned"})
         for op in ("select", "archive", "unarchive", "rename", "stop", "delete")]
    out = []
    for method, path, body in calls:
        r = rest.get(path) if method == "GET" else rest.post(path, body)
        out.append((path.replace(conv, "ID"), r.status_code, r.json()))
    return out


def test_another_identity_can_touch_nothing(server):
    me = new_cookie()
    victim = Conn(server, cookie=me)
    vrest = Rest(server, cookie=me)
    attacker = Conn(server, cookie=new_cookie())
    arest = Rest(server, cookie=new_cookie())
    try:
        conv = victim.launch(title="secret plans")
        victim.turn("my secret [[fake tokens=3]]", conversation_id=conv)
        before = victim_state(vrest, conv)
        unknown = conv[:8] + os.urandom(8).hex()            # same slot, other tag
        random_id = os.urandom(12).hex()
        got = attack_ws(attacker, conv)
        for kind, m in got:
            assert m["type"] == "error" and m["code"] == "not_found", (kind, m)
            assert "secret" not in str(m)
        # exactly what an id that does not exist gets: no oracle
        for other in (unknown, random_id):
            ref = attack_ws(attacker, other)
            assert [(k, m["code"], m["message"]) for k, m in ref] == \
                [(k, m["code"], m["message"]) for k, m in got]
        assert victim_state(vrest, conv) == before
        got = rest_attacks(arest, conv)
        for path, status, body in got:
            assert status == 404 and body["error"] == "not_found", (path, status, body)
        assert rest_attacks(arest, unknown) == got
        assert victim_state(vrest, conv) == before
        assert arest.get("/api/sessions").json()["sessions"] == []
        # the victim's own view is unchanged and still works
        f = victim.turn("still mine [[fake tokens=2]]", conversation_id=conv)
        assert f[-1]["type"] == "response"
        # nothing of this reached the victim's tab
        assert not [x for x in victim.frames if x.get("type") == "error"]
    finally:
        victim.close()
        attacker.close()


def test_attacks_while_the_victim_is_generating(server):
    me = new_cookie()
    victim = Conn(server, cookie=me)
    attacker = Conn(server, cookie=new_cookie())
    arest = Rest(server, cookie=new_cookie())
    try:
        conv = victim.launch()
        victim.send_json({"type": "message", "content": "long [[fake tokens=40 delay_ms=50]]",
                          "conversation_id": conv, "id": "v"})
        victim.wait("stream")
        for msg in ({"type": "stop", "conversation_id": conv},
                    {"type": "stop_session", "conversation_id": conv},
                    {"type": "resume", "conversation_id": conv},
                    {"type": "delete", "conversation_id": conv}):
            m = attacker.request(msg, "never")
            assert m["type"] == "error" and m["code"] == "not_found", (msg, m)
        for path in ("/api/session/%s/stop" % conv, "/api/session/%s/delete" % conv):
            assert arest.post(path).status_code == 404
        # the attacker got no piece of the answer
        assert streams(attacker.frames) == ""
        resp, _ = victim.wait(lambda m: m.get("id") == "v" and m["type"] in ("response",
                                                                          "error"), 10)
        assert resp["type"] == "response" and resp["interrupted"] is False
        assert resp["content"] == FULL40
        assert streams(victim.frames) == FULL40
        assert not [f for f in attacker.frames if f.get("type") == "stream"]
    finally:
        victim.close()
        attacker.close()


def test_a_user_with_the_victims_cookie_but_logged_in_is_someone_else(authsrv):
    me = new_cookie()
    anon = Conn(authsrv, cookie=me, auth=("alice", "alice-pw"))
    anon.close()
    # an anonymous identity cannot exist behind auth; compare two users
    a = Rest(authsrv, auth=("alice", "alice-pw"))
    conv = a.post("/api/session/create", {"title": "alice only"}).json()["conversation_id"]
    b = Rest(authsrv, auth=("bob", "bob-pw"), cookie=me)
    assert b.get("/api/bot/%s/status" % conv).status_code == 404
    assert b.post("/api/session/%s/rename" % conv, {"title": "x"}).status_code == 404
    assert a.get("/api/bot/%s/status" % conv).json()["session"]["title"] == "alice only"
