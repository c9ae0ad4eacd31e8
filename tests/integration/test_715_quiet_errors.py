"""Quiet errors (issue 14), as an anonymous user sees them: no backend URL,
host, port, path prefix, backend name or backend reply body in error frames,
REST errors, history or exports; /api/health is {"status": ...} unless the
client is an operator (ChatbotShowDetails, here: this machine, as in the
test configuration, and an <If> on the address inside a <Location>); the
error log, server-status and /metrics keep the details."""
import json
import re

import pytest
import requests

from conftest import new_sid_cookie
from histutil import Conn, Rest
from backends_util import failed_turn_line

REMOTEIP = ("LoadModule remoteip_module /usr/lib/apache2/modules/mod_remoteip.so\n"
            "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy 127.0.0.1 ::1\n")
OUTSIDER = {"X-Forwarded-For": "203.0.113.50"}
SECRET = "internal secret at /srv/x"


@pytest.fixture(scope="module")
def qsrv(fake):
    """Two bots: 'good' on the fake backend, 'broken' on a backend nobody
    listens to (the finding's own example)."""
    from histutil import module_server
    extra = (REMOTEIP + "ChatbotRateLimit off\n"
             "ChatbotBackend good %s\n"
             "ChatbotBackend broken http://127.0.0.1:1/prefix\n"
             "<ChatbotBot good>\n    ChatbotBotBackend good\n</ChatbotBot>\n"
             "<ChatbotBot broken>\n    ChatbotBotBackend broken\n</ChatbotBot>\n"
             % fake.url)
    yield from module_server(fake, extra, "quiet", no_500=False)


def leaks(text, fake_port):
    """The internal details a user must never see in text."""
    bad = ["127.0.0.1", "http://", "/prefix", "'broken'", "internal secret", "/srv/x",
           "HTTP 500", ":%d" % fake_port, "Couldn't connect", "ChatbotBackend"]
    return [b for b in bad if b in text]


def test_unreachable_backend_error_frame_names_no_url(qsrv, fake):
    """The finding: "cannot connect to backend 'broken' at
    http://127.0.0.1:1/prefix"."""
    c = Conn(qsrv, cookie=new_sid_cookie(), headers=OUTSIDER)
    try:
        f = c.turn("hello?", bot_id="broken")[-1]
        h = c.request({"type": "history", "conversation_id": f["conversation_id"]},
                      "history")
        ex = c.request({"type": "export", "conversation_id": f["conversation_id"]},
                       "export")
    finally:
        c.close()
    assert f["type"] == "error" and f["code"] == "backend_unreachable", f
    assert f["message"] == ("The language model server cannot be reached right now. "
                            "Please try again later.")
    assert leaks(json.dumps(f), fake.port) == []
    assert leaks(json.dumps(h), fake.port) == [] and h["messages"][-1]["error"] is True
    assert leaks(ex["content"], fake.port) == []
    # the operator has it all, in the error log
    line = failed_turn_line(qsrv, f["conversation_id"], "backend_unreachable")
    assert "http://127.0.0.1:1/prefix" in line and "backend 'broken'" in line


def test_backend_error_body_never_reaches_the_user(qsrv, fake):
    """The finding: a backend's error body was passed on verbatim ("answered
    HTTP 500: internal secret at /srv/x")."""
    rest = Rest(qsrv, cookie=new_sid_cookie())
    rest.s.headers.update(OUTSIDER)
    r = rest.post("/api/session/create", {"bot_id": "good"})
    assert r.status_code == 201, r.text
    conv = r.json()["conversation_id"]
    # (escaped in the prompt, which the user's own history shows)
    msg = "q [[fake status=500 error=%s]]" % SECRET.replace(" ", "%20").replace("/", "%2F")
    r = rest.post("/api/session/%s/task" % conv, {"message": msg})
    assert r.status_code == 502 and r.json()["error"] == "backend_error", r.text
    assert r.json()["message"] == "The language model server reported an error."
    assert leaks(r.text, fake.port) == []
    # the old controller's task route: its shape (200, "success": false, the
    # sentence as "error"), the same quiet sentence
    r = rest.post("/api/bot/launch", {"bot_id": "BOT-Q", "bot_type": "good"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    old_conv = r.json()["conversation_id"]
    r = rest.post("/api/bot/BOT-Q/task", {"command": msg})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == "backend_error" and \
        body["response"] is None, r.text
    assert body["error"] == body["message"] == "The language model server reported an error."
    assert leaks(r.text, fake.port) == []
    h = rest.get("/api/chat/history", params={"bot_id": "BOT-Q"})
    assert h.status_code == 200 and leaks(h.text, fake.port) == []
    assert h.json()["messages"][-1]["code"] == "backend_error"
    assert SECRET in failed_turn_line(qsrv, old_conv, "backend_error")
    # the stateless route too
    r = rest.post("/api/chat", {"message": msg, "bot_id": "good"})
    assert r.status_code == 502 and leaks(r.text, fake.port) == [], r.text
    # history and both exports
    h = rest.get("/api/chat/history?conversation_id=" + conv)
    assert leaks(h.text, fake.port) == [] and h.json()["messages"][-1]["code"] == \
        "backend_error"
    for fmt in ("markdown", "json"):
        e = rest.post("/api/export/session", {"conversation_id": conv, "format": fmt})
        assert e.status_code == 200 and leaks(e.text, fake.port) == [], e.text
    line = failed_turn_line(qsrv, conv, "backend_error")
    assert SECRET in line and "HTTP 500" in line


def test_model_not_found_names_only_the_model(qsrv, fake):
    c = Conn(qsrv, cookie=new_sid_cookie(), headers=OUTSIDER)
    try:
        f = c.turn("[[fake status=404 error=model%20x%20not%20found%20at%20%2Fsrv%2Fmodels]]",
                   bot_id="good")[-1]
    finally:
        c.close()
    assert f["code"] == "model_not_found"
    assert "test-model" in f["message"] and "/srv/models" not in f["message"]
    assert leaks(f["message"], fake.port) == []


# ---- health and status -------------------------------------------------------------------------


def test_health_for_a_load_balancer(qsrv, fake):
    """The finding: /api/health showed backend URLs to anyone."""
    r = requests.get(qsrv.base + "/api/health", headers=OUTSIDER, timeout=15)
    assert r.status_code == 200                       # 'good' is up
    assert r.json() == {"status": "ok"}, r.text
    assert "Set-Cookie" not in r.headers
    r = requests.head(qsrv.base + "/api/health", headers=OUTSIDER, timeout=15)
    assert r.status_code == 200
    # the operator (this machine: the test configuration's <If>) sees it all
    r = requests.get(qsrv.base + "/api/health", timeout=15)
    body = r.json()
    urls = {b["name"]: b["url"] for b in body["backends"]}
    assert urls["good"] == fake.url and urls["broken"] == "http://127.0.0.1:1/prefix"
    assert body["server"].startswith("mod_chatbot/") and "store" in body


def test_health_unavailable_is_quiet_too(httpd):
    s = httpd(extra=REMOTEIP, backend="http://127.0.0.1:1/prefix", name="quiet-down")
    r = requests.get(s.base + "/api/health", headers=OUTSIDER, timeout=15)
    assert r.status_code == 503 and r.json() == {"status": "unavailable"}, r.text
    r = requests.get(s.base + "/api/health", timeout=15)
    assert r.status_code == 503 and r.json()["backends"][0]["detail"]


def test_status_board_without_urls_versions_or_errors(qsrv, fake):
    requests.get(qsrv.base + "/api/health", timeout=15)   # probes both backends
    st = requests.get(qsrv.base + "/api/status", headers=OUTSIDER, timeout=15).json()
    c = Conn(qsrv, cookie=new_sid_cookie(), headers=OUTSIDER)
    try:
        board = c.request({"type": "status"}, "status_board")
    finally:
        c.close()
    for view in (st, board):
        assert {"good", "broken"} <= {b["name"] for b in view["backends"]}
        for b in view["backends"]:
            assert not {"url", "version", "detail"} & set(b), b
            assert {"healthy", "active", "queued", "breaker"} <= set(b), b
        assert leaks(json.dumps(view), fake.port) == []
        assert "0.12.6" not in json.dumps(view)
    # operators
    st = requests.get(qsrv.base + "/api/status", timeout=15).json()
    good = [b for b in st["backends"] if b["name"] == "good"][0]
    assert good["url"] == fake.url and "version" in good and "detail" in good
    c = Conn(qsrv, cookie=new_sid_cookie())
    try:
        board = c.request({"type": "status"}, "status_board")
    finally:
        c.close()
    assert any(b.get("url") == "http://127.0.0.1:1/prefix" for b in board["backends"])


def test_details_for_an_address_range_inside_a_location(httpd):
    """The documented way: an <If> on the address inside the API's
    <Location> (directives.md, ChatbotShowDetails)."""
    s = httpd(extra=REMOTEIP + '<Location "/api">\n    ChatbotShowDetails off\n'
                               '    <If "-R \'10.0.0.0/8\'">\n        ChatbotShowDetails on\n'
                               '    </If>\n</Location>\n', name="quiet-if")
    inside = requests.get(s.base + "/api/health", timeout=15,
                          headers={"X-Forwarded-For": "10.9.8.7"}).json()
    assert inside["backends"][0]["url"]
    assert requests.get(s.base + "/api/health", timeout=15,
                        headers={"X-Forwarded-For": "203.0.113.9"}).json() == {"status": "ok"}


def test_details_local_means_this_machine(httpd):
    """ChatbotShowDetails local (what the shipped configuration uses instead of
    an <If>): the clients `Require local` admits, by the address mod_remoteip
    sets; anyone else, including an address that merely starts like one, gets
    the load balancer's answer."""
    s = httpd(extra=REMOTEIP + '<Location "/api">\n    ChatbotShowDetails local\n'
                               '</Location>\n', name="quiet-local")
    for addr in ("127.0.0.1", "127.3.2.1", "::1", "::ffff:127.0.0.9"):
        got = requests.get(s.base + "/api/health", timeout=15,
                           headers={"X-Forwarded-For": addr}).json()
        assert got["backends"][0]["url"], (addr, got)
    assert requests.get(s.base + "/api/health", timeout=15).json()["backends"][0]["url"]
    for addr in ("10.9.8.7", "203.0.113.9", "::2", "128.0.0.1", "::ffff:10.0.0.1"):
        assert requests.get(s.base + "/api/health", timeout=15,
                            headers={"X-Forwarded-For": addr}).json() == {"status": "ok"}, addr


def test_operator_pages_keep_the_details(qsrv, fake):
    c = Conn(qsrv, cookie=new_sid_cookie(), headers=OUTSIDER)
    try:
        c.turn("x", bot_id="broken")
    finally:
        c.close()
    status = requests.get(qsrv.base + "/server-status", timeout=15).text
    assert "http://127.0.0.1:1/prefix" in status
    m = requests.get(qsrv.base + "/metrics", timeout=15).text
    assert re.search(r'chatbot_errors_total\{code="backend_unreachable"\} [1-9]', m), m


def test_model_lists_are_quiet_and_cached_for_anonymous_clients(qsrv, fake):
    """GET /api/models (no identity needed): an outsider gets one sentence
    for a backend whose list cannot be read, and a child's copy of the lists
    (at most 10 s old) instead of a fan-out to every backend per call; an
    operator gets the reason, fetched now."""
    from backends_util import last_id, requests_since
    url = qsrv.base + "/api/models"
    # an operator (this machine, ChatbotShowDetails): fresh, with the reason
    mark = last_id(fake)
    op = requests.get(url, timeout=15).json()
    per_fetch = len(requests_since(fake, mark, "/api/tags"))
    assert per_fetch >= 1
    reason = {b["name"]: b for b in op["backends"]}["broken"]["error"]
    assert reason != "the model list is not available right now" and "onnect" in reason
    # outsiders: one sentence, no details, and at most one fetch per child
    # (the test server has 2) for 12 calls
    mark = last_id(fake)
    first = None
    for _ in range(12):
        r = requests.get(url, timeout=15, headers=OUTSIDER)
        assert r.status_code == 200
        assert leaks(r.text, fake.port) == []
        got = {b["name"]: b for b in r.json()["backends"]}
        assert got["broken"]["models"] == []
        assert got["broken"]["error"] == "the model list is not available right now"
        assert got["good"]["models"] and "error" not in got["good"]
        first = first or r.json()
        assert r.json() == first
    assert len(requests_since(fake, mark, "/api/tags")) <= 2 * per_fetch
