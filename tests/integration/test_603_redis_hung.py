"""A redis that hangs instead of dying (issue 17, faults): redis-server
stopped with SIGSTOP, so that its sockets stay open and the kernel still
accepts connections for it, but nothing is ever answered. Unlike a killed
redis (test_600), every call can only end by its own timeout.

Required: a chat being answered gets an error frame, new chats and REST
calls get `store_unavailable` (REST 503), /api/health and server-status
say the store is down, each within a bound derived from
ChatbotStoreTimeout; no child crashes or stays stuck; and after SIGCONT
everything works again without a restart of httpd, including the
conversation whose answer the hang cut (it is not left "generating").
Every wait is bounded; redis is always continued in a `finally`."""
import os
import signal
import threading
import time

import pytest

from histutil import Conn, Rest, new_cookie, status_auto, wait_for
from redisutil import DOWN_LOG, REDIS

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed "
                                       "(scripts/deps.sh test installs it)")

TIMEOUT_MS = 400
# A call that finds redis hung fails after one ChatbotStoreTimeout; once the
# child knows redis is away, the next ones fail at once (backoff). A route
# makes a few calls, a turn a few more: 6 timeouts is already generous, and
# far below what one timeout per pooled connection would cost.
BOUND = 6 * TIMEOUT_MS / 1000.0 + 1.5



def timed(fn, *a, **kw):
    t0 = time.time()
    r = fn(*a, **kw)
    return r, time.time() - t0


class Hung:
    """SIGSTOP / SIGCONT of the test's redis-server; continued on exit
    whatever happened."""

    def __init__(self, redis):
        self.redis = redis
        self.stopped = False

    def stop(self):
        os.kill(self.redis.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped:
            os.kill(self.redis.proc.pid, signal.SIGCONT)
            self.stopped = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cont()


def server(httpd, redis, name):
    store = ("ChatbotStore redis://127.0.0.1:%d/5\nChatbotStoreTimeout %dms\n"
             "ChatbotRateLimit off\n" % (redis.port, TIMEOUT_MS))
    # one child: every call below goes through the same pool of connections
    return httpd(extra=store, name=name, serverlimit=1, allow_errors=DOWN_LOG)


def fill_pool(s, cookie, n=12):
    """n REST calls at once, so that the child's pool holds several idle
    connections when redis hangs (each of them would wait a full timeout)."""
    errs = []

    def one():
        r = Rest(s, cookie=cookie).get("/api/sessions")
        if r.status_code != 200:
            errs.append(r.text)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errs, errs


def cut_answer_ok(msg):
    """The answer a hang cut: kept, marked interrupted, and each piece of
    it stored once (a call that timed out is run by redis when it wakes
    up: it must not also have been sent again on another connection)."""
    words = msg["content"].split(" ")
    assert words == ["t%d" % i for i in range(len(words))], msg["content"]
    assert msg["role"] == "assistant" and msg["interrupted"] is True, msg


def crashed(s):
    return [ln for ln in s.read_error_log().splitlines() if "AH00052" in ln]


def test_hung_redis_during_a_chat(httpd, redis):
    s = server(httpd, redis, "redis-hung-chat")
    me = new_cookie()
    c = Conn(s, cookie=me)
    kids = sorted(s.children())
    with Hung(redis) as hung:
        conv = c.launch(title="hung")
        assert c.turn("before [[fake tokens=2]]", conversation_id=conv)[-1]["type"] == \
            "response"
        fill_pool(s, me)
        c.send_json({"type": "message", "content": "slow [[fake tokens=300 delay_ms=20]]",
                     "conversation_id": conv, "id": "h1"})
        c.wait(lambda m: m.get("type") == "stream", 15)
        hung.stop()
        t0 = time.time()
        m, _ = c.wait(lambda m: m.get("type") in ("response", "error"), BOUND + 5)
        took = time.time() - t0
        assert m["type"] == "error" and m["code"] == "store_unavailable", m
        assert took < BOUND, "the answer ended %.1f s after redis hung" % took

        # while it hangs: every kind of call fails clearly, each within the bound
        rest = Rest(s, cookie=me)
        r, took = timed(rest.get, "/api/sessions", timeout=BOUND + 10)
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        assert took < BOUND, took
        r, took = timed(rest.post, "/api/session/create", {"title": "x"},
                        timeout=BOUND + 10)
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        assert took < BOUND, took
        r, took = timed(rest.get, "/api/chat/history?conversation_id=" + conv,
                        timeout=BOUND + 10)
        assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
        assert took < BOUND, took
        h, took = timed(Rest(s).get, "/api/health", timeout=BOUND + 10)
        assert h.status_code == 503 and h.json()["error"] == "store_unavailable", h.text
        assert took < BOUND, took
        st, took = timed(status_auto, s)
        assert st.get("ChatbotStore") == "redis" and st.get("ChatbotStoreUp") == "0", st
        assert took < BOUND, took
        # a new message on the open connection, and a launch
        t0 = time.time()
        f = c.turn("during [[fake tokens=2]]", conversation_id=conv, timeout=BOUND + 5)
        assert f[-1]["type"] == "error" and f[-1]["code"] == "store_unavailable", f[-1]
        assert time.time() - t0 < BOUND
        m, took = timed(c.request, {"type": "launch", "bot_id": c.hello["bots"][0]["id"]},
                        "session", BOUND + 5)
        assert m["type"] == "error" and m["code"] == "store_unavailable", m
        assert took < BOUND, took
        # a new connection still opens (its hello needs no answer from redis
        # that could hang it)
        c2, took = timed(Conn, s, cookie=me, timeout=BOUND + 5)
        c2.close()
        assert took < BOUND, took

        hung.cont()
        # back, without a restart: health, the list, the conversation the
        # hang cut (ended, not left "generating"), a new turn in it
        assert wait_for(lambda: Rest(s).get("/api/health").status_code == 200, 15), \
            Rest(s).get("/api/health").text
        hist = wait_for(lambda: (lambda r: r.status_code == 200 and
                                 r.json()["state"] == "idle" and r.json())(
            rest.get("/api/chat/history?conversation_id=" + conv)), 15)
        assert hist, rest.get("/api/chat/history?conversation_id=" + conv).text
        assert hist["messages"][0]["content"] == "before [[fake tokens=2]]"
        assert hist["messages"][2]["content"].startswith("slow")
        if len(hist["messages"]) > 3 and hist["messages"][3]["role"] == "assistant":
            cut_answer_ok(hist["messages"][3])
        c3 = Conn(s, cookie=me)
        try:
            f = c3.turn("after [[fake tokens=2]]", conversation_id=conv)
            assert f[-1]["type"] == "response", f[-1]
        finally:
            c3.close()
        assert wait_for(lambda: status_auto(s).get("ChatbotStoreUp") == "1", 10)
        ids = [x["conversation_id"] for x in rest.get("/api/sessions").json()["sessions"]]
        assert conv in ids
    c.close()
    assert not crashed(s)
    assert sorted(s.children()) == kids, "a child was replaced"


def test_hung_redis_during_rest_calls(httpd, redis):
    """REST calls in flight when redis hangs (a task that streams its
    answer into the store, and list reads in a loop) all end with 503
    store_unavailable within the bound; after SIGCONT the same calls
    succeed and the task's conversation takes a new task."""
    s = server(httpd, redis, "redis-hung-rest")
    me = new_cookie()
    rest = Rest(s, cookie=me)
    kids = sorted(s.children())
    r = rest.post("/api/session/create", {"title": "rest"})
    assert r.status_code == 201, r.text
    conv = r.json().get("conversation_id") or r.json()["session"]["conversation_id"]
    fill_pool(s, me)
    out = {}

    def task():
        t0 = time.time()
        try:
            out["task"] = Rest(s, cookie=me).post(
                "/api/session/%s/task" % conv,
                {"message": "slow [[fake tokens=300 delay_ms=20]]"}, timeout=60)
        except Exception as e:  # noqa: BLE001 - reported below
            out["task"] = e
        out["task_s"] = time.time() - t0

    reads = []
    halt = threading.Event()

    def reader():
        while not halt.is_set():
            t0 = time.time()
            try:
                r = Rest(s, cookie=me).get("/api/sessions", timeout=60)
                reads.append((r.status_code, r.text, time.time() - t0))
            except Exception as e:  # noqa: BLE001
                reads.append((0, repr(e), time.time() - t0))

    with Hung(redis) as hung:
        t = threading.Thread(target=task)
        rd = [threading.Thread(target=reader) for _ in range(3)]
        t.start()
        for x in rd:
            x.start()
        time.sleep(1.0)            # the task is streaming, the reads go on
        assert t.is_alive(), out
        hung.stop()
        stopped = time.time()
        t.join(BOUND + 10)
        assert not t.is_alive(), "the REST task still waits %.0f s after redis hung" % (
            time.time() - stopped)
        hung_for = time.time() - stopped
        time.sleep(max(0.0, 2 * BOUND - hung_for))   # reads keep failing meanwhile
        n_hung = len(reads)
        hung.cont()
        resumed = time.time()
        ok_again = wait_for(lambda: any(code == 200 for code, _, _ in reads[n_hung:]), 15)
        halt.set()
        for x in rd:
            x.join(BOUND + 10)
        assert not any(x.is_alive() for x in rd)
    task_r = out["task"]
    assert not isinstance(task_r, Exception), task_r
    assert task_r.status_code == 503, task_r.text
    assert task_r.json()["error"] == "store_unavailable", task_r.text
    assert time.time() - resumed < 30
    assert ok_again, reads[n_hung:]
    failed = [x for x in reads if x[0] != 200]
    assert failed, "no read failed while redis was stopped"
    for code, text, took in failed:
        assert code == 503 and '"store_unavailable"' in text, (code, text)
    for code, text, took in reads:
        assert took < BOUND, "a read took %.1f s" % took
    # the task's conversation is usable again
    h = wait_for(lambda: (lambda r: r.status_code == 200 and r.json()["state"] == "idle" and
                          r.json())(
        rest.get("/api/chat/history?conversation_id=" + conv)), 15)
    assert h, rest.get("/api/chat/history?conversation_id=" + conv).text
    assert h["messages"][0]["content"].startswith("slow")
    if len(h["messages"]) > 1:
        cut_answer_ok(h["messages"][1])
    r = rest.post("/api/session/%s/task" % conv, {"message": "again [[fake tokens=2]]"})
    assert r.status_code == 200, r.text
    assert not crashed(s)
    assert sorted(s.children()) == kids, "a child was replaced"


def test_hung_redis_costs_one_timeout_not_one_per_connection(httpd, redis):
    """A child whose pool holds many idle connections when redis hangs:
    the first call waits for its timeout, and then the child knows redis
    is away - the calls right after it fail at once (backoff), they do not
    each try another pooled connection and wait a full timeout again."""
    timeout_ms = 1000
    store = ("ChatbotStore redis://127.0.0.1:%d/5\nChatbotStoreTimeout %dms\n"
             "ChatbotRateLimit off\n" % (redis.port, timeout_ms))
    s = httpd(extra=store, name="redis-hung-pool", serverlimit=1, allow_errors=DOWN_LOG)
    me = new_cookie()
    rest = Rest(s, cookie=me)
    assert rest.get("/api/sessions").status_code == 200
    with Hung(redis) as hung:
        # many calls wait on a redis that pauses for less than the timeout:
        # each takes a connection of its own, all idle afterwards
        results = []

        def one():
            results.append(Rest(s, cookie=me).get("/api/sessions").status_code)
        ts = [threading.Thread(target=one) for _ in range(14)]
        hung.stop()
        for t in ts:
            t.start()
        time.sleep(0.4)
        hung.cont()
        for t in ts:
            t.join(30)
        assert results.count(200) == 14, results
        clients = [ln for ln in redis.cmd("CLIENT", "LIST").splitlines() if " db=5 " in ln]
        assert len(clients) >= 11, clients      # the precondition: a full pool

        hung.stop()
        times = []
        for _ in range(9):
            r, took = timed(rest.get, "/api/sessions", timeout=30)
            assert r.status_code == 503 and r.json()["error"] == "store_unavailable", r.text
            times.append(took)
        hung.cont()
    slow = [t for t in times[1:] if t >= 0.9 * timeout_ms / 1000.0]
    # only a call that comes after a backoff ends tries redis again
    assert len(slow) <= 3, times
    assert wait_for(lambda: rest.get("/api/sessions").status_code == 200, 15)
    assert not crashed(s)
