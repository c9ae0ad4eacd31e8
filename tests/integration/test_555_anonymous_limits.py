"""Anonymous limits (issue 14), as an attacker runs them with the default
configuration: twelve turns from twelve fresh cookies (or none) are limited
like twelve turns from one, because anonymous identities share their
address's budget (ChatbotAnonymousRateLimit, r->useragent_ip, so behind a
proxy mod_remoteip decides, IPv6 by /64); a loop of launches takes rate
tokens and cannot crowd others out of the store; authenticated users keep
their own budgets."""
import os

import pytest
import requests

from conftest import new_sid_cookie
from histutil import Conn, Rest, htpasswd
from redisutil import DOWN_LOG, REDIS

REMOTEIP = ("LoadModule remoteip_module /usr/lib/apache2/modules/mod_remoteip.so\n"
            "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy 127.0.0.1 ::1\n")


def ws_turn(server, text, cookie=None, xff=None):
    """One turn on a new WebSocket; the final frame's type or error code."""
    h = {}
    if cookie:
        h["Cookie"] = cookie
    if xff:
        h["X-Forwarded-For"] = xff
    c = Conn(server, headers=h)
    try:
        f = c.turn(text)[-1]
        return f["type"] if f["type"] == "response" else f["code"]
    finally:
        c.close()


def rest_chat(server, cookie=None, xff=None):
    h = {"Connection": "close"}
    if cookie:
        h["Cookie"] = cookie
    if xff:
        h["X-Forwarded-For"] = xff
    r = requests.post(server.base + "/api/chat", json={"message": "hi [[fake tokens=1]]"},
                      headers=h, timeout=30)
    return r.status_code


@pytest.fixture(params=["shm", "redis"])
def dflt(httpd, request):
    """The defaults: ChatbotRateLimit 10/min burst=10, and the address budget
    the same. mod_remoteip lets one test play several addresses. On shm and
    on redis (where an anonymous message's two buckets are one script,
    chat_store_rate_take2)."""
    if request.param == "shm":
        return httpd(extra=REMOTEIP, name="anon")
    if not os.path.exists(REDIS):
        pytest.skip("redis-server is not installed")
    rd = request.getfixturevalue("redis")
    return httpd(extra=REMOTEIP + "ChatbotStore redis://127.0.0.1:%d/3\n" % rd.port,
                 name="anon-redis", allow_errors=DOWN_LOG)


def test_twelve_turns_from_fresh_cookies_are_limited(dflt):
    """The finding: a fresh cookie (or none) was a fresh identity, and 12 of
    12 turns succeeded each way."""
    got = [ws_turn(dflt, "hi %d [[fake tokens=1]]" % i, xff="198.51.100.7")
           for i in range(6)]
    got += [ws_turn(dflt, "hi %d [[fake tokens=1]]" % i, cookie=new_sid_cookie(),
                    xff="198.51.100.7") for i in range(6)]
    assert got[:10] == ["response"] * 10, got
    assert got[10:] == ["rate_limited"] * 2, got
    # the REST API is the same budget
    assert rest_chat(dflt, xff="198.51.100.7") == 429
    assert rest_chat(dflt, cookie=new_sid_cookie(), xff="198.51.100.7") == 429
    # another address is not affected
    assert ws_turn(dflt, "other [[fake tokens=1]]", xff="198.51.100.8") == "response"


def test_rest_only_attacker_is_limited_too(dflt):
    codes = [rest_chat(dflt, xff="198.51.100.20") for _ in range(12)]
    assert codes == [200] * 10 + [429] * 2, codes


def test_limited_by_the_real_address_without_remoteip(httpd):
    """Without mod_remoteip the address is the connection's: a client
    cannot pick its budget with an X-Forwarded-For header."""
    s = httpd(name="anon-noremote")
    codes = [rest_chat(s, xff="203.0.113.%d" % i) for i in range(12)]
    assert codes == [200] * 10 + [429] * 2, codes


def test_ipv6_counts_by_64(dflt):
    for i in range(10):
        assert rest_chat(dflt, xff="2001:db8:1:2::%x" % (i + 1)) == 200
    # another host of the same /64: the same budget
    assert rest_chat(dflt, xff="2001:db8:1:2:ffff::1") == 429
    # the next /64: its own
    assert rest_chat(dflt, xff="2001:db8:1:3::1") == 200
    # an IPv4-mapped address is the IPv4 address
    for i in range(10):
        assert rest_chat(dflt, xff="198.51.100.30") == 200
    assert rest_chat(dflt, xff="::ffff:198.51.100.30") == 429


def test_launch_flood_cannot_wipe_other_users(httpd):
    """The finding: 1,100 launches of {} in 1.5 s evicted everyone's
    conversations. Now every launch takes a rate token, on the browser UI's
    route (POST /api/session/create) and on the old controller's (POST
    /api/bot/launch, a new id each time): the flood stops after the burst,
    from one cookie or from fresh ones, and the victims' conversations
    (anonymous and authenticated) answer 200 afterwards."""
    pw = htpasswd(alice="alice-pw")
    auth = ('<Location "/auth">\n    SetHandler chatbot\n    AuthType Basic\n'
            '    AuthName chat\n    AuthBasicProvider file\n    AuthUserFile %s\n'
            '    Require valid-user\n</Location>\n' % pw)
    s = httpd(extra=REMOTEIP + "ChatbotMaxConversations 64\n" + auth, name="flood")
    vh = {"X-Forwarded-For": "198.51.100.1", "Cookie": new_sid_cookie()}
    r = requests.post(s.base + "/api/session/create", json={"title": "victim"}, headers=vh,
                      timeout=15)
    assert r.status_code == 201
    victim = r.json()["conversation_id"]
    r = requests.post(s.base + "/api/bot/launch", json={"bot_id": "VICTIM-1"}, headers=vh,
                      timeout=15)
    assert r.status_code == 200 and r.json()["success"] is True, r.text
    alice = Rest(s, auth=("alice", "alice-pw"), base=s.base + "/auth")
    r = alice.post("/api/session/create", {"title": "alice's"})
    assert r.status_code == 201, r.text
    alice_conv = r.json()["conversation_id"]
    r = alice.post("/api/bot/launch", {"bot_id": "ALICE-1"})
    assert r.status_code == 200 and r.json()["success"] is True, r.text

    def flood(route, xff, n):
        """n launches from one cookie and address; their status codes. The
        old route needs a new id each time (a running id is refused)."""
        h = {"X-Forwarded-For": xff, "Cookie": new_sid_cookie(), "Connection": "close"}
        sess = requests.Session()
        codes = []
        for i in range(n):
            body = {"bot_id": "FLOOD-%d" % i} if route == "/api/bot/launch" else {}
            codes.append(sess.post(s.base + route, json=body, headers=h,
                                   timeout=15).status_code)
        return h, codes

    # the browser UI's route
    attacker, codes = flood("/api/session/create", "203.0.113.66", 75)
    assert codes.count(201) == 10 and codes.count(429) == 65, codes
    # the old controller's route. Requests it cannot read (no or a bad id)
    # are refused before they cost a token; the rest stops at the burst too.
    old_attacker = {"X-Forwarded-For": "203.0.113.70", "Connection": "close"}
    for body in ({}, {"bot_id": ""}, {"bot_id": "a/b"}):
        r = requests.post(s.base + "/api/bot/launch", json=body, headers=old_attacker,
                          timeout=15)
        assert r.status_code == 400 and r.json()["code"] == "bad_request", r.text
    old_attacker, codes = flood("/api/bot/launch", "203.0.113.70", 75)
    assert codes.count(200) == 10 and codes.count(429) == 65, codes
    # fresh cookies do not help: the address's budget is spent, on either route
    sess = requests.Session()
    for h, route, body in ((attacker, "/api/session/create", {}),
                           (attacker, "/api/bot/launch", {"bot_id": "FRESH"}),
                           (old_attacker, "/api/bot/launch", {"bot_id": "FRESH"}),
                           (old_attacker, "/api/session/create", {})):
        h = dict(h)
        h.pop("Cookie", None)
        for _ in range(10):
            assert sess.post(s.base + route, json=body, headers=h,
                             timeout=15).status_code == 429
    r = requests.post(s.base + "/api/session/create", json={}, headers=attacker, timeout=15)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 6
    r = requests.post(s.base + "/api/bot/launch", json={"bot_id": "ONE-MORE"},
                      headers=old_attacker, timeout=15)
    assert r.status_code == 429 and r.json()["success"] is False, r.text
    assert r.json()["code"] == "rate_limited" and 1 <= int(r.headers["Retry-After"]) <= 6
    # the victims are untouched
    r = requests.get(s.base + "/api/bot/%s/status" % victim, headers=vh, timeout=15)
    assert r.status_code == 200, r.text
    r = requests.get(s.base + "/api/bots", headers=vh, timeout=15)
    assert set(r.json()["bots"]) == {"VICTIM-1", "victim"}, r.text
    assert alice.get("/api/bot/%s/status" % alice_conv).status_code == 200
    assert set(alice.get("/api/bots").json()["bots"]) == {"ALICE-1", alice_conv}
    # the WebSocket launch frame takes a token as well
    c = Conn(s, cookie=new_sid_cookie(), headers={"X-Forwarded-For": "203.0.113.67"})
    try:
        got = [c.request({"type": "launch", "bot_id": "default"}, "session")["type"]
               for _ in range(12)]
    finally:
        c.close()
    assert got == ["session"] * 10 + ["error"] * 2, got


def test_authenticated_users_keep_their_own_budgets(httpd):
    pw = htpasswd(alice="alice-pw", bob="bob-pw")
    auth = ("    AuthType Basic\n    AuthName chat\n    AuthBasicProvider file\n"
            "    AuthUserFile %s\n    Require valid-user\n" % pw)
    s = httpd(extra='<Location "/api">\n%s</Location>\n' % auth, name="anon-auth")
    for user in ("alice", "bob"):
        rest = Rest(s, auth=(user, user + "-pw"))
        codes = [rest.post("/api/chat", {"message": "x [[fake tokens=1]]"}).status_code
                 for _ in range(11)]
        # ten each from one address: the address budget is for anonymous use
        assert codes == [200] * 10 + [429], (user, codes)


def test_address_budget_can_be_raised_or_turned_off(httpd):
    s = httpd(extra="ChatbotAnonymousRateLimit off\n", name="anon-off")
    codes = [rest_chat(s, cookie=new_sid_cookie()) for _ in range(12)]
    assert codes == [200] * 12, codes
    # one cookie is still limited by its own bucket
    me = new_sid_cookie()
    codes = [rest_chat(s, cookie=me) for _ in range(11)]
    assert codes == [200] * 10 + [429], codes


def test_address_budget_follows_the_rate_limit_by_default(httpd):
    """ChatbotRateLimit off turns both off (an operator who wants no limit)."""
    s = httpd(extra="ChatbotRateLimit off\n", name="anon-rateoff")
    codes = [rest_chat(s) for _ in range(15)]
    assert codes == [200] * 15, codes
