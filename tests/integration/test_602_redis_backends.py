"""Backend slots, the waiting queue, the circuit breaker and health with
the store on redis (issue 17): shared by every host, as shm shares them
between the children of one host. Two httpd on one redis-server: `max=1`
is one slot for both hosts (the second host's turn queues, position
reported, until the first ends); a breaker opened by failures on A is open
on B; a kill -9 of the child holding the slot on A frees it for B within a
few seconds (holders refresh a 5 s expiry)."""
import os
import signal
import time

import pytest

from backends_util import api, chat_requests_since, last_id
from histutil import Conn, live_pid, new_cookie
import redisutil
from redisutil import DOWN_LOG, REDIS

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed")

QUEUE = ("ChatbotRateLimit off\nChatbotQueueSize 4\n"
         "ChatbotBackend q {url} max=1\n"
         "<ChatbotBot qb>\n    ChatbotBotBackend q\n</ChatbotBot>\n")
BREAKER = ("ChatbotRateLimit off\nChatbotCircuitBreaker failures=3 cooldown=30s\n"
           "ChatbotBackend cb {url}\n"
           "<ChatbotBot cbb>\n    ChatbotBotBackend cb\n</ChatbotBot>\n")


def pair(httpd, redis, extra, **kw):
    kw.setdefault("allow_errors", DOWN_LOG + (r"AH10962",))
    return redisutil.pair(httpd, redis, extra, db=4, name="rbk", **kw)


def is_status(state, position=None):
    def pred(m):
        return (m.get("type") == "status" and m.get("state") == state and
                (position is None or m.get("position") == position))
    return pred


def final(m):
    return m.get("type") in ("response", "error")


def backend(server, name):
    _, st = api(server, "/api/status")
    return [b for b in st["backends"] if b["name"] == name][0]


def board_shows(server, name, timeout=3.0, **want):
    """The backend's board figures reach `want` (they are cached for
    250 ms per child)."""
    end = time.time() + timeout
    while True:
        bk = backend(server, name)
        if all(bk.get(k) == v for k, v in want.items()) or time.time() > end:
            return bk
        time.sleep(0.1)


def test_one_slot_for_two_hosts(httpd, redis, fake):
    a, b = pair(httpd, redis, QUEUE.format(url=fake.url))
    ca, cb = Conn(a, cookie=new_cookie()), Conn(b, cookie=new_cookie())
    try:
        conv_a, conv_b = ca.launch(bot="qb"), cb.launch(bot="qb")
        ca.send_json({"type": "message", "content": "A [[fake tokens=25 delay_ms=80]]",
                      "conversation_id": conv_a, "id": "A"})
        ca.wait(lambda m: m.get("type") == "stream", 15)
        cb.send_json({"type": "message", "content": "B [[fake tokens=3]]",
                      "conversation_id": conv_b, "id": "B"})
        cb.wait(is_status("queued", 1), 10)
        # both hosts show the one slot taken and one waiter
        for s in (a, b):
            bk = board_shows(s, "q", active=1, queued=1)
            assert bk["active"] == 1 and bk["queued"] == 1, bk
        fa, _ = ca.wait(final, 30)
        t_a = time.time()
        fb, before = cb.wait(final, 30)
        assert fa["type"] == "response" and fb["type"] == "response", (fa, fb)
        assert any(is_status("generating")(m) for m in before), before
        # B waited for A (FIFO across hosts), and was woken, not left polling
        assert fb["stats"]["queue_ms"] > 1000, fb["stats"]
        assert time.time() - t_a < 3
        for s in (a, b):
            bk = board_shows(s, "q", active=0, queued=0)
            assert bk["active"] == 0 and bk["queued"] == 0, bk
    finally:
        ca.close()
        cb.close()


def test_turns_go_on_after_redis_forgets_its_scripts(httpd, redis, fake):
    """A child loads the scripts on its first connection only (redis's
    functions and script cache serve all clients): after a FUNCTION FLUSH
    and a SCRIPT FLUSH, the next turns on both hosts still start, store
    their answers and give back the one slot (a call sent without waiting
    whose function is gone is sent again once the functions are loaded
    again), and the history holds every message. Fails on a store that
    gives up on "Function not found" or NOSCRIPT, or loses the release."""
    a, b = pair(httpd, redis, QUEUE.format(url=fake.url))
    ca, cb = Conn(a, cookie=new_cookie()), Conn(b, cookie=new_cookie())
    try:
        conv_a, conv_b = ca.launch(bot="qb"), cb.launch(bot="qb")
        for i in range(3):
            assert "OK" in redis.cmd("FUNCTION", "FLUSH")
            assert "OK" in redis.cmd("SCRIPT", "FLUSH")
            for c, conv in ((ca, conv_a), (cb, conv_b)):
                fr = c.turn("turn %d [[fake tokens=3]]" % i, conversation_id=conv,
                            timeout=15)
                assert fr[-1]["type"] == "response", fr
        for s in (a, b):
            bk = board_shows(s, "q", active=0, queued=0)
            assert bk["active"] == 0 and bk["queued"] == 0, bk
        for c, conv in ((ca, conv_a), (cb, conv_b)):
            msgs = c.request({"type": "history", "conversation_id": conv,
                              "limit": 100}, "history")["messages"]
            assert [m["role"] for m in msgs] == ["user", "assistant"] * 3, msgs
            assert all(m["content"] for m in msgs), msgs
    finally:
        ca.close()
        cb.close()


def test_breaker_opened_on_a_is_open_on_b(httpd, redis, fake):
    a, b = pair(httpd, redis, BREAKER.format(url=fake.url))
    ca, cb = Conn(a, cookie=new_cookie()), Conn(b, cookie=new_cookie())
    try:
        fake.script(*[{"status": 503}] * 3)
        conv = ca.launch(bot="cbb")
        for i in range(3):
            fr = ca.turn("f%d" % i, conversation_id=conv)
            assert fr[-1]["type"] == "error", fr[-1]
        bk = board_shows(b, "cb", breaker="open")
        assert bk["breaker"] == "open", bk
        conv_b = cb.launch(bot="cbb")
        mark = last_id(fake)
        t0 = time.time()
        fr = cb.turn("on b", conversation_id=conv_b)
        # B fails at once without asking the backend (the breaker said no)
        assert fr[-1]["type"] == "error" and fr[-1]["code"] == "backend_unreachable", fr[-1]
        assert time.time() - t0 < 2
        assert chat_requests_since(fake, mark) == []
        assert "circuit breaker open" in open(b.error_log).read()
    finally:
        ca.close()
        cb.close()


def test_killed_holder_frees_the_slot_for_the_other_host(httpd, redis, fake):
    a, b = pair(httpd, redis, QUEUE.format(url=fake.url),
                allow_errors=DOWN_LOG + (r"AH10962", r"AH00052", r"exit signal"))
    ca = Conn(a, cookie=new_cookie(), tag="holder")
    cb = Conn(b, cookie=new_cookie())
    try:
        conv_a, conv_b = ca.launch(bot="qb"), cb.launch(bot="qb")
        ca.send_json({"type": "message", "content": "A [[fake tokens=600 delay_ms=100]]",
                      "conversation_id": conv_a, "id": "A"})
        ca.wait(lambda m: m.get("type") == "stream", 15)
        cb.send_json({"type": "message", "content": "B [[fake tokens=3]]",
                      "conversation_id": conv_b, "id": "B"})
        cb.wait(is_status("queued", 1), 10)
        pid = live_pid(a, "holder")
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        fb, _ = cb.wait(final, 20)
        took = time.time() - t0
        assert fb["type"] == "response", fb
        assert took < 8, "the slot of the dead holder came back after %.1f s" % took
    finally:
        ca.close()
        cb.close()


def test_one_session_for_one_new_id_across_hosts(httpd, redis):
    """The port-8000 routes find a session by its name or make it
    (chat_store_conv_find_or_create): one Lua step on redis, so that
    concurrent messages for one new id sent to both hosts land in one
    session, not one per host."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests

    a, b = pair(httpd, redis, "ChatbotRateLimit off\n")
    me = new_cookie()
    n = 8
    for round_ in range(3):
        bot_id = "RACE-%d" % round_
        gate = threading.Barrier(n)

        def one(i):
            s = (a, b)[i % 2]
            gate.wait(timeout=30)
            return requests.post(s.base + "/api/chat/message", timeout=60,
                                 json={"role": "user", "content": "line %d" % i,
                                       "bot_id": bot_id},
                                 headers={"Connection": "close", "Cookie": me,
                                          "Origin": s.base})
        with ThreadPoolExecutor(n) as ex:
            replies = list(ex.map(one, range(n)))
        assert all(r.status_code == 200 and r.json()["success"] is True
                   for r in replies), [r.text for r in replies]
        assert len({r.json()["session_id"] for r in replies}) == 1, [r.text for r in replies]
        h = requests.get(b.base + "/api/chat/history",
                         params={"bot_id": bot_id, "limit": 100},
                         headers={"Cookie": me}).json()
        assert sorted(m["content"] for m in h["messages"]) == sorted(
            "line %d" % i for i in range(n))
