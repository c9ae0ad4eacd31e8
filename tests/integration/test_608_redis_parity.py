"""The store on redis behaves as the shm store where a user or an operator
can tell (issue 17: "everything that is shared between children today is
shared between hosts"). Each case here was found by running tests written
for the shm store against redis (CHATBOT_TEST_REDIS, tests/README.md) and
differed before it was mended:

- a title is one line on both stores (redis stored its new lines; both
  are now given the title already made one line and cut to 128 bytes);
- a bot of the old controller's API launched again after a stop gets its
  session back (redis answered an empty conversation id);
- the first /api/health after a start is 200 (redis answered 503 from the
  figures its health probe had just read, before it wrote its own);
- a backend's health written by one host is not hidden by another host's
  "still fine" (which was written at most once a second, whatever the
  others had written since)."""
import os
import re

import pytest
import requests

from histutil import Conn, Rest, new_cookie
from redisutil import DOWN_LOG, REDIS, pair, store_conf

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed")


def server_rest(httpd, store, request, db, name):
    """A server on the store, and a REST client with a new identity."""
    extra, kw = store_conf(store, request, db)
    s = httpd(extra=extra, name="%s-%s" % (name, store), **kw)
    return Rest(s, cookie=new_cookie())


@pytest.mark.parametrize("store", ["shm", "redis"])
def test_titles_are_one_line_alike(httpd, store, request):
    rest = server_rest(httpd, store, request, 5, "ptitle")
    r = rest.post("/api/session/create", {"title": "two\nlines\tand a tab"})
    assert r.status_code == 201, r.text
    conv = r.json()["conversation_id"]
    # a title longer than 128 bytes is refused before any store (400)
    r = rest.post("/api/session/%s/rename" % conv, {"title": "x" * 129})
    assert r.status_code == 400, r.text
    got = [x["title"] for x in rest.get("/api/sessions").json()["sessions"]
           if x["conversation_id"] == conv]
    assert got == ["two lines and a tab"], got
    r = rest.post("/api/session/create", {"title": "a\r\nb"})
    conv2 = r.json()["conversation_id"]
    titles = {x["conversation_id"]: x["title"]
              for x in rest.get("/api/sessions").json()["sessions"]}
    assert "\n" not in titles[conv2] and "\r" not in titles[conv2], titles
    assert titles[conv2].startswith("a") and titles[conv2].endswith("b"), titles


@pytest.mark.parametrize("store", ["shm", "redis"])
def test_a_bot_launched_again_gets_its_session_back(httpd, store, request):
    rest = server_rest(httpd, store, request, 6, "prelaunch")
    r = rest.post("/api/bot/launch", {"bot_id": "BOT-7"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    conv = r.json()["conversation_id"]
    assert len(conv) == 24, r.text
    r = rest.post("/api/bot/stop/BOT-7")
    assert r.json()["success"] is True, r.text
    r = rest.post("/api/bot/launch", {"bot_id": "BOT-7"})
    assert r.json()["success"] is True, r.text
    assert r.json()["conversation_id"] == conv, r.text
    assert "again" in r.json()["message"], r.text


def test_the_first_health_after_a_start_is_ok(httpd, redis):
    s = httpd(extra="ChatbotStore redis://127.0.0.1:%d/7\n" % redis.port,
              name="phealth", allow_errors=DOWN_LOG)
    r = requests.get(s.base + "/api/health", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["backends"][0]["healthy"] is True, r.text


def test_a_health_change_is_not_hidden_by_another_hosts_still_fine(httpd, fake, redis):
    a, b = pair(httpd, redis, db=8, name="phl")
    me = new_cookie()
    ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
    try:
        conv_a, conv_b = ca.launch(title="a"), cb.launch(title="b")
        # B reports "fine" (written), then A's backend call fails (0 written)
        assert cb.turn("one [[fake tokens=2]]", conversation_id=conv_b)[-1]["type"] \
            == "response"
        fake.script({"status": 503})
        fr = ca.turn("two", conversation_id=conv_a)
        assert fr[-1]["type"] == "error" and fr[-1]["code"] == "backend_busy", fr
        # B's next success, within the second of its last report, is the
        # news both hosts show
        assert cb.turn("three [[fake tokens=2]]", conversation_id=conv_b)[-1]["type"] \
            == "response"
        for srv in (a, b):
            h = requests.get(srv.base + "/api/health", timeout=10)
            assert h.status_code == 200, (srv.base, h.text)
            assert h.json()["backends"][0]["healthy"] is True, h.text
    finally:
        ca.close()
        cb.close()


def test_server_status_auto_keeps_one_token_per_value(httpd, redis):
    """server-status?auto is "Key: value" with one token per value (what
    scripts split on); the store on redis adds its lines in that form, its
    state as ChatbotStoreUp 1 or 0 (it was "ChatbotStore: redis up")."""
    s = httpd(extra="ChatbotStore redis://127.0.0.1:%d/9\n" % redis.port,
              name="pauto", allow_errors=DOWN_LOG)
    body = requests.get(s.base + "/server-status?auto", timeout=10).text
    lines = [ln for ln in body.splitlines() if ln.startswith("Chatbot")]
    assert "ChatbotStore: redis" in lines and "ChatbotStoreUp: 1" in lines, lines
    for ln in lines:
        assert re.match(r"^Chatbot[A-Za-z]+(\[[\w.-]+\][A-Za-z]+)*(\[[\w.-]+\])?: \S+$",
                        ln), ln
