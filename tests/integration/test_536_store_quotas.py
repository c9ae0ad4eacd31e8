"""Nobody can crowd others out of the shared store (issue 14, quotas):
per-identity quotas (conversations, history bytes, sessions created per
minute), eviction that never takes from someone holding less than the one
asking, authenticated identities never evicted by anonymous ones, and the
share of the store reserved for them. Written as an attacker would run it:
a launch flood from one anonymous cookie, and from one authenticated user,
against anonymous and authenticated victims.

Every test runs on both stores: this host's shared memory and redis
(ChatbotStore redis://, a redis-server of the test's own): the rules are
the same, counted in whole 256-byte blocks by shm and in text bytes by
redis (docs/storage.md).
"""
import os
import re
import subprocess
import time

import pytest
import requests

from histutil import Conn, Rest, history, new_cookie, status_auto
from redisutil import DOWN_LOG

USERS = ("alice", "mallory")


@pytest.fixture(scope="module")
def htpasswd():
    from conftest import test_root
    d = test_root("htpasswd")
    pw = os.path.join(d, "users")
    subprocess.run(["htpasswd", "-cbB", pw, "alice", "alice-pw"], check=True,
                   capture_output=True)
    subprocess.run(["htpasswd", "-bB", pw, "mallory", "mallory-pw"], check=True,
                   capture_output=True)
    os.chmod(pw, 0o644)
    return pw


@pytest.fixture(params=["shm", "redis"])
def serve(request, httpd):
    """serve(extra, name): an httpd whose store is shared memory, or redis
    (skipped without redis-server)."""
    if request.param == "shm":
        return lambda extra, name: httpd(extra=extra, name=name)
    redis = request.getfixturevalue("redis")
    line = "ChatbotStore redis://127.0.0.1:%d/6\n" % redis.port
    return lambda extra, name: httpd(extra=line + extra, name=name + "-redis",
                                     allow_errors=DOWN_LOG)


def config(pw, extra):
    """Anonymous /ws and /api, and the same under /auth/ behind Basic auth."""
    auth = ("    AuthType Basic\n    AuthName chat\n    AuthBasicProvider file\n"
            "    AuthUserFile %s\n    Require valid-user\n" % pw)
    return ("ChatbotRateLimit off\n" + extra +
            "<Location \"/auth/ws\">\n    SetHandler chatbot\n%s</Location>\n"
            "<Location \"/auth/api\">\n    SetHandler chatbot\n%s</Location>\n" % (auth, auth))


class AuthRest(Rest):
    def __init__(self, server, user):
        super().__init__(server, auth=(user, user + "-pw"), base=server.base + "/auth")


def launch(rest, title):
    """A new session through the REST API's own route (/api/bot/launch is
    the old controller's, which takes a bot_id: Flooder's rest-launch)."""
    return rest.post("/api/session/create", {"title": title})


def sessions(rest):
    r = rest.get("/api/sessions")
    assert r.status_code == 200, r.text
    body = r.json()
    items = body["sessions"]
    return sorted(x["conversation_id"] for x in items)


def victims(server):
    """An anonymous and an authenticated victim, two conversations each,
    with a turn in each."""
    anon = Rest(server, cookie=new_cookie())
    alice = AuthRest(server, "alice")
    made = {}
    for who, rest in (("anon", anon), ("alice", alice)):
        ids = []
        for i in range(2):
            r = launch(rest, "%s %d" % (who, i))
            assert r.status_code == 201, r.text
            conv = conv_id(r)
            t = rest.post("/api/session/%s/task" % conv,
                          {"message": "%s secret %d [[fake tokens=3]]" % (who, i)})
            assert t.status_code == 200, t.text
            ids.append(conv)
        made[who] = (rest, sorted(ids))
    return made


def intact(made):
    for who, (rest, ids) in made.items():
        assert sessions(rest) == ids, who
        for conv in ids:
            r = rest.get("/api/chat/history?conversation_id=%s" % conv)
            assert r.status_code == 200, (who, r.text)
            texts = [m["content"] for m in r.json()["messages"]]
            assert any(t.startswith("%s secret" % who) for t in texts), (who, texts)


def conv_id(r):
    body = r.json()
    return body.get("conversation_id") or body["session"]["conversation_id"]


class Flooder:
    """One identity creating conversations as fast as it can through one
    creating route: REST launch, REST session create, or WebSocket launch."""

    def __init__(self, server, flooder, route):
        self.route = route
        auth = ("mallory", "mallory-pw") if flooder == "authenticated" else None
        prefix = "/auth" if auth else ""
        self.rest = AuthRest(server, "mallory") if auth else Rest(server, cookie=new_cookie())
        self.ws = None
        if route == "ws-launch":
            self.ws = Conn(server, cookie=None if auth else self.rest.s.headers["Cookie"],
                           auth=auth, path=prefix + "/ws")

    def create(self, i):
        """201 or 507 (REST status; a WebSocket error code maps to 507)."""
        title = "flood %d" % i
        if self.route == "rest-launch":
            # the old controller's launch: a new bot id each time; it answers
            # what happened with 200 and "success" (docs/api.md)
            r = self.rest.post("/api/bot/launch", {"bot_id": "flood-%d" % i})
            assert r.status_code == 200, r.text
            if r.json()["success"] is True:
                return 201
            assert r.json()["code"] in ("storage_full", "quota_exceeded"), r.text
            return 507
        elif self.route == "rest-session-create":
            r = self.rest.post("/api/session/create", {"title": title})
        else:
            m = self.ws.request({"type": "launch", "bot_id": self.ws.hello["bots"][0]["id"],
                                 "title": title}, "session")
            if m["type"] == "session":
                return 201
            assert m["code"] in ("storage_full", "quota_exceeded"), m
            return 507
        assert r.status_code in (201, 507), r.text
        if r.status_code == 507:
            assert r.json()["error"] in ("storage_full", "quota_exceeded"), r.text
        return r.status_code

    def close(self):
        if self.ws:
            self.ws.close()


@pytest.mark.parametrize("limit", ["quota", "full-store"])
@pytest.mark.parametrize("route", ["rest-launch", "rest-session-create", "ws-launch"])
@pytest.mark.parametrize("flooder", ["anonymous", "authenticated"])
def test_launch_flood_never_evicts_a_victim(serve, htpasswd, flooder, route, limit):
    """Launches as fast as possible from one identity, through each route
    that creates conversations, in a store that holds far fewer
    conversations. With a conversation quota the flooder recycles its own
    conversations at its quota; without one it fills the store, and the
    store then makes room from whoever holds the most: the flooder itself.
    Either way the victims keep everything."""
    n = 1000 if route == "rest-launch" and limit == "quota" else 300
    quota = "conversations=40" if limit == "quota" else "conversations=off"
    s = serve(extra=config(htpasswd, "ChatbotMaxConversations 48\n"
                           "ChatbotQuota anonymous sessions=off %s\n"
                           "ChatbotQuota authenticated sessions=off %s\n" % (quota, quota)),
              name="flood")
    made = victims(s)
    attacker = Flooder(s, flooder, route)
    try:
        codes = [attacker.create(i) for i in range(n)]
    finally:
        attacker.close()
    assert codes.count(201) > n - 48, codes
    intact(made)
    mine = sessions(attacker.rest)
    assert 0 < len(mine) <= (40 if limit == "quota" else 48 - 4)
    st = status_auto(s)
    # every eviction was of the flooder's own conversations
    assert int(st["ChatbotEvictions"]) >= n - 48
    evicted = [l for l in s.read_error_log().splitlines() if "evicted conversation" in l]
    assert evicted
    for who, (rest, ids) in made.items():
        for conv in ids:
            assert not [l for l in evicted if conv in l]


@pytest.mark.parametrize("flooder", ["anonymous", "authenticated"])
def test_history_flood_never_evicts_a_victim(serve, htpasswd, flooder):
    """One identity writes large messages into conversation after
    conversation until the arena is full many times over (no history quota
    of its own to stop it): the store makes room from the flooder, who holds
    the most, never from the victims, who hold less."""
    s = serve(extra=config(htpasswd, "ChatbotHistorySize 64k\nChatbotMaxMessageBytes 16k\n"
                           "ChatbotMaxAnswerBytes 16k\n"
                           "ChatbotQuota anonymous sessions=off history=off\n"
                           "ChatbotQuota authenticated sessions=off history=off\n"),
              name="byteflood")
    made = victims(s)
    attacker = Flooder(s, flooder, "rest-session-create")
    ok = 0
    for i in range(12):
        r = launch(attacker.rest, "bytes %d" % i)
        if r.status_code != 201:
            assert r.json()["error"] == "storage_full", r.text
            continue
        conv = conv_id(r)
        for k in range(3):
            t = attacker.rest.post("/api/session/%s/task" % conv,
                                   {"message": ("%d.%d " % (i, k)) * 2000 +
                                    "[[fake tokens=3]]"})
            assert t.status_code in (200, 507), t.text
            if t.status_code == 200:
                ok += 1
            else:
                assert t.json()["error"] in ("storage_full", "quota_exceeded"), t.text
    # about 36 x 12 KB went through a 64 KB arena
    assert ok >= 20, ok
    assert int(status_auto(s)["ChatbotEvictions"]) >= 10
    intact(made)


def test_launch_flood_is_rate_limited_by_default(serve, htpasswd):
    """With the default quotas a launch flood gets 429 after the burst, with
    Retry-After, and the victims keep everything."""
    s = serve(extra=config(htpasswd, "ChatbotMaxConversations 16\n"), name="floodrate")
    made = victims(s)
    attacker = Rest(s, cookie=new_cookie())
    codes = []
    t0 = time.time()
    for i in range(60):
        r = launch(attacker, "flood %d" % i)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"] == "rate_limited"
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["retry_after_ms"] > 0
    # the default: a burst of 20, then 20 per minute (one every 3 s)
    refills = int((time.time() - t0) / 3.0)
    assert 20 <= codes.count(201) <= 20 + refills, codes
    assert codes.count(429) == 60 - codes.count(201)
    intact(made)
    # the WebSocket launch spends the same budget
    c = Conn(s, cookie=attacker.s.headers["Cookie"])
    try:
        m = c.request({"type": "launch", "bot_id": c.hello["bots"][0]["id"]}, "session")
        assert m["type"] == "error" and m["code"] == "rate_limited", m
        assert m.get("retry_after_ms", 0) > 0
    finally:
        c.close()


@pytest.mark.parametrize("route", ["/api/bot/launch", "/api/chat/message"])
def test_old_routes_over_the_session_quota_say_when_to_retry(serve, htpasswd, route):
    """The old controller's routes that make sessions (a launch, a message
    for a new bot_id) answer 429 over ChatbotQuota sessions= with
    retry_after_ms and Retry-After, as the other routes do."""
    s = serve(extra=config(htpasswd, "ChatbotQuota anonymous sessions=3/min\n"),
              name="oldquota")
    me = Rest(s, cookie=new_cookie())
    codes = []
    for i in range(6):
        body = {"bot_id": "OLD-%d" % i}
        if route == "/api/chat/message":
            body.update(role="user", content="hello %d" % i)
        r = me.post(route, body)
        codes.append(r.status_code)
        if r.status_code == 429:
            j = r.json()
            assert j["success"] is False and j["code"] == "rate_limited", j
            assert j["retry_after_ms"] > 0, j
            assert 1 <= int(r.headers["Retry-After"]) <= 60, r.headers
    assert codes[:3] == [200] * 3 and 429 in codes[3:], codes


def test_conversation_quota_recycles_the_identitys_own_oldest(serve, htpasswd):
    s = serve(extra=config(htpasswd, "ChatbotQuota anonymous conversations=3 "
                           "sessions=off\n"), name="convquota")
    me = Rest(s, cookie=new_cookie())
    ids = [conv_id(launch(me, "c%d" % i)) for i in range(5)]
    assert sessions(me) == sorted(ids[2:])
    lines = [l for l in s.read_error_log().splitlines() if "evicted conversation" in l]
    assert len(lines) == 2 and ids[0] in lines[0] and ids[1] in lines[1]
    assert "conversation quota" in lines[0]


def test_history_quota_gives_a_clear_error(serve, htpasswd):
    s = serve(extra=config(htpasswd, "ChatbotQuota anonymous history=8k sessions=off\n"
                           "ChatbotMaxMessageBytes 64k\n"), name="bytequota")
    me = Rest(s, cookie=new_cookie())
    conv = conv_id(launch(me, "big"))
    r = me.post("/api/session/%s/task" % conv, {"message": "x" * 20000})
    assert r.status_code == 507, r.text
    assert r.json()["error"] == "quota_exceeded"
    assert "http" not in r.json()["message"]
    # the WebSocket says the same
    c = Conn(s, cookie=me.s.headers["Cookie"])
    try:
        f = c.turn("y" * 20000, conversation_id=conv)
        assert f[-1]["type"] == "error" and f[-1]["code"] == "quota_exceeded", f[-1]
        # and small messages still work: older ones make room
        for i in range(12):
            f = c.turn(("z%d " % i) * 300 + "[[fake tokens=2]]", conversation_id=conv)
            assert f[-1]["type"] == "response", f[-1]
    finally:
        c.close()


def test_anonymous_never_evicts_authenticated(serve, htpasswd):
    s = serve(extra=config(htpasswd, "ChatbotMaxConversations 8\n"
                           "ChatbotQuota authenticated sessions=off\n"
                           "ChatbotQuota anonymous sessions=off\n"), name="classes")
    alice = AuthRest(s, "alice")
    mine = [conv_id(launch(alice, "a%d" % i)) for i in range(8)]
    anon = Rest(s, cookie=new_cookie())
    r = launch(anon, "no room")
    assert r.status_code == 507 and r.json()["error"] == "storage_full", r.text
    assert sessions(alice) == sorted(mine)
    assert status_auto(s)["ChatbotEvictions"] == "0"


def test_authenticated_take_back_their_reserved_share(serve, htpasswd):
    """Anonymous identities may fill free space; beyond their share (50% by
    default) an authenticated user takes it back, least recently used
    first, whatever their size."""
    s = serve(extra=config(htpasswd, "ChatbotMaxConversations 8\n"
                           "ChatbotQuota anonymous sessions=off\n"), name="share")
    anons = [Rest(s, cookie=new_cookie()) for _ in range(8)]
    first = [conv_id(launch(a, "anon")) for a in anons]
    alice = AuthRest(s, "alice")
    got = [conv_id(launch(alice, "a%d" % i)) for i in range(4)]
    assert sessions(alice) == sorted(got)
    # the four least recently used anonymous conversations went
    for a, conv in zip(anons, first):
        expect = [] if conv in first[:4] else [conv]
        assert sessions(a) == expect
    # at the share, the anonymous ones left are protected (each holds one,
    # less than alice will): alice recycles her own least recently used
    a4 = conv_id(launch(alice, "a4"))
    assert sessions(alice) == sorted(got[1:] + [a4])
    assert status_auto(s)["ChatbotConversationsAnonymous"] == "4"
    m = requests.get(s.base + "/metrics", timeout=10).text
    assert re.search(r"^chatbot_conversations_anonymous 4$", m, re.M)


def test_refused_answer_fails_the_turn_however_it_arrived(serve, htpasswd, fake):
    """An answer the history quota refuses ends its turn with quota_exceeded,
    whether the store refuses a piece while it streams or its last piece,
    stored with the turn's finish (with redis, one script: an answer that
    came in one run of the transfers is stored only there). Before, a
    refused last piece was dropped and the turn answered as complete,
    with nothing stored."""
    s = serve(extra=config(htpasswd, "ChatbotQuota anonymous history=4k sessions=off\n"
                           "ChatbotMaxMessageBytes 64k\n"), name="answerquota")
    big = ("x" * 99 + " ") * 60  # 6000 bytes, more than the whole quota
    got = {}
    for how, script in (("streamed", {"reply": big}),
                        ("one run", {"reply": big, "ignore_stream": 1})):
        c = Conn(s, cookie=new_cookie())  # an identity of its own: a clean quota
        try:
            conv = c.launch(title="refused")
            fake.script(script)
            f = c.turn("hello", conversation_id=conv)
            got[how] = f[-1]
            assert f[-1]["type"] == "error", (how, f[-1])
            assert f[-1]["code"] == "quota_exceeded", (how, f[-1])
            # the turn ended: nothing left streaming, the conversation idle
            h = history(c, conv)
            assert not any(m.get("streaming") for m in h["messages"]), (how, h)
            if how == "one run":
                # nothing of the answer stored, its reason is
                last = h["messages"][-1]
                assert last["role"] == "assistant" and last.get("error"), last
                assert last.get("code") == "quota_exceeded", last
                f = c.turn("small [[fake tokens=2]]", conversation_id=conv)
                assert f[-1]["type"] == "response", f[-1]
        finally:
            c.close()
    assert got["one run"]["message"] == got["streamed"]["message"], got
    assert "history storage" in got["one run"]["message"], got
