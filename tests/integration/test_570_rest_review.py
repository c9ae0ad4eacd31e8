"""The REST API under hostile or careless clients (review of issue 5):
methods and Allow, Content-Type, body limits (Content-Length and chunked),
query parameters, cross-origin POSTs (CSRF), the cookie's flags, the error
body's shape, and a client that disconnects while a blocking route
(`/api/chat`, `/api/bot/{id}/task`) waits for its answer: the fake
backend records when its upstream request was closed."""
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

from histutil import Rest, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
<ChatbotBot helper>
    ChatbotModel "helper-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA, "restrev")


@pytest.fixture
def rest(srv):
    return Rest(srv, cookie=new_cookie())


def err(r, status, code):
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
    r = rest.post("/api/bot/launch", {"bot_id": "helper"})
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

GET_ROUTES = ["/api/health", "/api/models", "/api/bots", "/api/status", "/api/sessions",
              "/api/chat/history", "/api/bot/{id}/status"]
POST_ROUTES = ["/api/bot/launch", "/api/session/create", "/api/bot/stop/{id}",
               "/api/bot/{id}/task", "/api/chat", "/api/session/{id}/select",
               "/api/session/{id}/archive", "/api/session/{id}/unarchive",
               "/api/session/{id}/rename", "/api/session/{id}/delete",
               "/api/session/{id}/stop", "/api/export/session", "/api/execute"]


def test_wrong_method_gets_the_routes_own_allow(rest):
    conv = launch(rest)
    for path in GET_ROUTES:
        for m in ("POST", "PUT", "DELETE", "OPTIONS", "PATCH"):
            r = rest.s.request(m, rest.base + path.format(id=conv), data=b"{}",
                               headers={"Content-Type": "application/json"}, timeout=10)
            err(r, 405, "bad_request")
            assert r.headers["Allow"] == "GET, HEAD", (m, path, r.headers["Allow"])
    for path in POST_ROUTES:
        for m in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
            r = rest.s.request(m, rest.base + path.format(id=conv), timeout=10)
            assert r.status_code == 405, (m, path, r.status_code)
            assert r.headers["Allow"] == "POST", (m, path, r.headers["Allow"])
            if m != "HEAD":
                err(r, 405, "bad_request")
    # a wrong method never touched the session
    assert rest.get("/api/bot/%s/status" % conv).json()["session"]["state"] == "idle"


def test_unknown_route_is_404_whatever_the_method(rest):
    for m in ("GET", "POST", "PUT", "DELETE"):
        for path in ("/api/nope", "/api/bot/x/y/z", "/api/session/x/explode", "/api/bot"):
            err(rest.s.request(m, rest.base + path, timeout=10), 404, "not_found")


def test_405_sets_no_cookie(srv):
    r = requests.put(srv.base + "/api/sessions", timeout=10)
    assert r.status_code == 405 and "Set-Cookie" not in r.headers


# ---- bodies ------------------------------------------------------------------------------


def test_content_type_must_name_json(rest):
    for ct in ("text/plain; charset=json", "application/jsonx", "text/json-ish",
               "application/x-www-form-urlencoded", "multipart/form-data; boundary=json"):
        err(rest.post("/api/session/create", raw=b"{}", headers={"Content-Type": ct}),
            400, "bad_request")
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
    err(r, 413, "too_large")


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
    """Enough of a requests.Response for err()."""

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
        err(raw_get(srv, ck, h + q), 400, "bad_request")
    # an id that does not decode is not "no id" (which means the latest session)
    for q in ("conversation_id=%zz", "conversation_id=%00",
              "conversation_id=%s&conversation_id=%s" % (conv, conv),
              "conversation_id=%s&session_id=%%zz" % conv):
        err(raw_get(srv, ck, "/api/chat/history?" + q), 400, "bad_request")
    err(raw_get(srv, ck, "/api/sessions?bot_id=helper&bot_id=other"), 400, "bad_request")
    err(raw_get(srv, ck, "/api/sessions?archived=%zz"), 400, "bad_request")
    assert raw_get(srv, ck, h + "&limit=2&offset=0").status_code == 200


# ---- cross-origin requests ---------------------------------------------------------------


def test_cross_origin_post_is_refused(srv, rest):
    conv = launch(rest)
    before = len(rest.get("/api/sessions").json()["sessions"])
    for origin in ("http://evil.example", "null", "http://127.0.0.1:1",
                   "https://127.0.0.1.evil.example:%d" % srv.port):
        h = {"Origin": origin, "Content-Type": "application/json"}
        for path, body in (("/api/session/create", {}),
                           ("/api/bot/%s/task" % conv, {"message": "hi"}),
                           ("/api/session/%s/delete" % conv, {}),
                           ("/api/chat", {"message": "hi"}),
                           ("/api/execute", {"command": "ls"})):
            err(rest.post(path, body, headers=h), 403, "forbidden")
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
    err(rest.post("/api/session/create", {},
                  headers={"Origin": "http://127.0.0.1:%d" % s.port}), 403, "forbidden")


def test_cookie_flags(srv):
    r = requests.post(srv.base + "/api/session/create", json={}, timeout=10)
    assert r.status_code == 201
    c = r.headers["Set-Cookie"]
    assert re.match(r"chatbot_sid=[0-9a-f]{32}; ", c), c
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
    s = start_turn(srv, rest.s.headers["Cookie"], "/api/bot/%s/task" % conv,
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
    sock = start_turn(s, rest.s.headers["Cookie"], "/api/bot/%s/task" % conv,
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
