"""The chat store on redis (issue 17): a real redis-server on a loopback
port and two httpd instances (each its own ServerRoot and ports) sharing it
with ChatbotStore redis://. A conversation made on A is B's too (same
signed cookie, same ChatbotCookieSecretFile); an answer A is generating is
followed and stopped from B (pub/sub, no polling); the rate limit is one
bucket for both; redis going away gives store_unavailable (WebSocket error
frame, REST 503, /api/health) and everything works again when it is back,
without a restart; an AOF restart loses nothing acknowledged; bad
ChatbotStore values are refused by `apache2 -t`."""
import os
import shutil
import signal
import subprocess
import time

import pytest

import conftest
from conftest import APACHE, free_port
from histutil import Conn, Rest, new_cookie, streams, wait_for
from redisutil import DOWN_LOG, REDIS, pair
import serverroot

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed "
                                       "(scripts/deps.sh test installs it)")


def test_chat_on_a_history_on_b(httpd, redis):
    a, b = pair(httpd, redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    try:
        conv = ca.launch(title="across")
        fr = ca.turn("hello [[fake tokens=4]]", conversation_id=conv)
        assert fr[-1]["type"] == "response", fr
        answer = fr[-1]["content"]
        h = Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv)
        assert h.status_code == 200, h.text
        body = h.json()
        assert body["title"] == "across" and body["total"] == 2
        assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
        assert body["messages"][0]["content"] == "hello [[fake tokens=4]]"
        assert body["messages"][1]["content"] == answer
        # B's session list has it, a stranger on B sees nothing of it
        ids = [s["conversation_id"] for s in Rest(b, cookie=me).get("/api/sessions").json()
               ["sessions"]]
        assert conv in ids
        other = Rest(b, cookie=new_cookie()).get("/api/chat/history?conversation_id=" + conv)
        assert other.status_code == 404
        # and the data really is in redis (one hash per conversation)
        assert redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "t").strip() == "across"
        # a second turn on B continues the same conversation
        cb = Conn(b, cookie=me)
        fr = cb.turn("again [[fake tokens=2]]", conversation_id=conv)
        assert fr[-1]["type"] == "response"
        cb.close()
        h = Rest(a, cookie=me).get("/api/chat/history?conversation_id=" + conv).json()
        assert h["total"] == 4
    finally:
        ca.close()


def test_resume_and_stop_on_b_while_a_generates(httpd, redis):
    a, b = pair(httpd, redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    cb = Conn(b, cookie=me)
    try:
        conv = ca.launch()
        ca.send_json({"type": "message", "content": "slow [[fake tokens=30 delay_ms=60]]",
                      "conversation_id": conv, "id": "m1"})
        ca.wait(lambda m: m.get("type") == "stream")
        # B follows the answer A is writing: catch-up, live pieces, response
        cb.send_json({"type": "resume", "conversation_id": conv, "offset": 0})
        final, before = cb.wait(lambda m: m.get("type") in ("response", "error") and
                                m.get("conversation_id") == conv, 30)
        got_a, _ = ca.wait(lambda m: m.get("type") in ("response", "error"), 30)
        assert final["type"] == "response" and got_a["type"] == "response", (final, got_a)
        assert final["content"] == got_a["content"]
        assert streams(before, conv) == final["content"]
        live = [m for m in before if m.get("type") == "stream"]
        assert len(live) >= 5, "B got the answer in %d piece(s): not followed live" % len(live)

        # a stop sent on B reaches the answer A generates
        ca.send_json({"type": "message", "content": "long [[fake tokens=400 delay_ms=50]]",
                      "conversation_id": conv, "id": "m2"})
        ca.wait(lambda m: m.get("type") == "stream")
        t0 = time.time()
        cb.send_json({"type": "stop", "conversation_id": conv})
        m, _ = ca.wait(lambda m: m.get("type") in ("response", "error"), 15)
        assert m["type"] == "response" and m["interrupted"] is True, m
        assert time.time() - t0 < 5
        h = Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv).json()
        assert h["state"] == "idle" and h["messages"][-1]["interrupted"] is True
    finally:
        ca.close()
        cb.close()


def test_one_run_answer_followed_on_b(httpd, redis):
    """An answer that comes in one piece is stored with the turn's finish
    (one script): B, following the turn from before its first token, sees
    the whole text and the end at once, never a finished turn short of it."""
    a, b = pair(httpd, redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    cb = Conn(b, cookie=me)
    try:
        conv = ca.launch()
        # %20: the stored question does not contain the answer's text
        ca.send_json({"type": "message", "conversation_id": conv, "id": "m1",
                      "content": "now [[fake reply=all%20in%20one%20piece "
                                 "first_delay_ms=1200 ignore_stream]]"})
        time.sleep(0.4)
        cb.send_json({"type": "resume", "conversation_id": conv, "offset": 0})
        final, before = cb.wait(lambda m: m.get("type") in ("response", "error") and
                                m.get("conversation_id") == conv, 30)
        got_a, _ = ca.wait(lambda m: m.get("type") in ("response", "error"), 30)
        assert got_a["type"] == "response" and got_a["content"] == "all in one piece", got_a
        assert final["type"] == "response", final
        assert final["content"] == "all in one piece" and final["interrupted"] is False
        assert streams(before, conv) == "all in one piece", before
        h = Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv).json()
        last = h["messages"][-1]
        assert h["state"] == "idle" and last["content"] == "all in one piece", h
        assert not last["streaming"] and not last["interrupted"], last
    finally:
        ca.close()
        cb.close()


def test_rate_limit_counted_across_hosts(httpd, redis):
    a, b = pair(httpd, redis, extra="ChatbotRateLimit 6/hour burst=6\n"
                                    "ChatbotAnonymousRateLimit off\n")
    me = new_cookie()
    ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
    try:
        conv = ca.launch()                     # one token
        outcomes = []
        for i in range(8):                     # alternate hosts
            c = (ca, cb)[i % 2]
            c.send_json({"type": "message", "content": "n%d [[fake tokens=1]]" % i,
                         "conversation_id": conv, "id": "r%d" % i})
            m, _ = c.wait(lambda f: f.get("type") in ("response", "error"), 20)
            outcomes.append(m.get("code", "ok") if m["type"] == "error" else "ok")
        # 6 tokens in all: the launch and 5 messages, whichever host
        assert outcomes == ["ok"] * 5 + ["rate_limited"] * 3, outcomes
        r = Rest(b, cookie=me).post("/api/chat", {"message": "x", "conversation_id": conv})
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    finally:
        ca.close()
        cb.close()



def test_redis_down_then_back(httpd, redis):
    a, b = pair(httpd, redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    try:
        conv = ca.launch()
        assert ca.turn("before [[fake tokens=2]]", conversation_id=conv)[-1]["type"] == \
            "response"
        # redis goes away in the middle of an answer: the turn ends with an
        # error frame, no hang
        ca.send_json({"type": "message", "content": "slow [[fake tokens=200 delay_ms=30]]",
                      "conversation_id": conv, "id": "d1"})
        ca.wait(lambda m: m.get("type") == "stream")
        redis.kill()
        m, _ = ca.wait(lambda m: m.get("type") in ("response", "error"), 20)
        assert m["type"] == "error" and m["code"] == "store_unavailable", m
        # new work is refused clearly
        m = ca.request({"type": "launch", "bot_id": ca.hello["bots"][0]["id"]}, "session")
        assert m["type"] == "error" and m["code"] == "store_unavailable", m
        r = Rest(b, cookie=me).get("/api/sessions")
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        h = Rest(b).get("/api/health")
        assert h.status_code == 503 and h.json()["error"] == "store_unavailable", h.text
        st = Rest(a).get("/server-status?auto").text
        assert "ChatbotStore: redis\n" in st and "ChatbotStoreUp: 0\n" in st
        # back: recovers without a restart (backoff is at most 5 s)
        redis.start()
        assert wait_for(lambda: Rest(b).get("/api/health").status_code == 200), \
            Rest(b).get("/api/health").text
        # the answer cut by the outage is ended by A when redis is back
        hist = wait_for(lambda: (lambda r: r.status_code == 200 and
                                 r.json()["state"] == "idle" and r.json())(
            Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv)))
        assert hist, Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv).text
        assert hist["messages"][0]["content"] == "before [[fake tokens=2]]"
        assert hist["messages"][1]["content"] == "t0 t1"
        assert hist["messages"][2]["content"].startswith("slow")
        if len(hist["messages"]) > 3:
            assert hist["messages"][3]["interrupted"] is True
        ca2 = Conn(a, cookie=me)
        fr = ca2.turn("after [[fake tokens=2]]", conversation_id=conv)
        assert fr[-1]["type"] == "response", fr
        ca2.close()
        assert "ChatbotStoreUp: 1\n" in Rest(a).get("/server-status?auto").text
    finally:
        ca.close()


def test_aof_restart_keeps_acknowledged(httpd, redis):
    a, b = pair(httpd, redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    try:
        conv = ca.launch(title="durable")
        answer = ca.turn("keep [[fake tokens=3]]", conversation_id=conv)[-1]["content"]
    finally:
        ca.close()
    redis.kill(signal.SIGKILL)       # no shutdown save: only the AOF
    redis.start()
    h = wait_for(lambda: (lambda r: r.status_code == 200 and r.json())(
        Rest(b, cookie=me).get("/api/chat/history?conversation_id=" + conv)))
    assert h and h["title"] == "durable"
    assert [m["content"] for m in h["messages"]] == ["keep [[fake tokens=3]]", answer]


@pytest.mark.parametrize("value,needle", [
    ("redis://", "no host"),
    ("redis://127.0.0.1:99999/0", "port"),
    ("redis://127.0.0.1:6379/x", "database"),
    ("redis://user@127.0.0.1:6379/0", "credentials"),
    ("unix:relative.sock", "absolute"),
    ("unix:/run/redis.sock?database=2", "only option"),
    ("memcache://127.0.0.1", "expected shm"),
    ("rediss://127.0.0.1:6379/0", "TLS"),
])
def test_bad_store_values_refused(value, needle):
    root = conftest.test_root("badstore")
    try:
        conf = serverroot.render(root, free_port(), free_port(), "http://127.0.0.1:9",
                                 "m", extra="ChatbotStore %s\n" % value)
        r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0
        assert "ChatbotStore" in r.stderr and needle in r.stderr, r.stderr
        # a password is never echoed back
        conf = serverroot.render(root, free_port(), free_port(), "http://127.0.0.1:9", "m",
                                 extra="ChatbotStore redis://u:s3cretpw@h:0/1\n")
        r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0 and "s3cretpw" not in r.stderr, r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_good_store_values_accepted():
    root = conftest.test_root("goodstore")
    try:
        for v in ("shm", "redis://127.0.0.1:6379/0", "redis://:pw@localhost/2",
                  "unix:/run/redis/redis-server.sock?db=1"):
            conf = serverroot.render(root, free_port(), free_port(), "http://127.0.0.1:9",
                                     "m", extra="ChatbotStore %s\nChatbotStoreTTL 168h\n"
                                                "ChatbotStoreTimeout 500ms\n" % v)
            r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True,
                               timeout=60)
            assert r.returncode == 0, (v, r.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_secret_in_memory_with_redis_is_warned(httpd, redis):
    """With the store on redis, the conversations outlive httpd and are
    shared by hosts; a cookie secret made in memory is neither: httpd says
    so at start (AH10999). With ChatbotCookieSecretFile it does not."""
    store = "ChatbotStore redis://127.0.0.1:%d/3\n" % redis.port
    mem = httpd(extra=store, name="redis-memsecret", cookie_secret=None,
                allow_errors=DOWN_LOG)
    assert "AH10999" in mem.read_error_log()
    withfile = httpd(extra=store, name="redis-filesecret", allow_errors=DOWN_LOG)
    assert "AH10999" not in withfile.read_error_log()
    shm = httpd(name="shm-memsecret", cookie_secret=None)
    assert "AH10999" not in shm.read_error_log()
