"""Memory bounds of the store on redis (issue 17: "memory bounded as with
shm"), each checked against redis itself: a full conversation table makes
room from whoever holds the most (never from someone holding less), a full
arena evicts whole conversations and never corrupts the survivors, an
answer beyond ChatbotMaxAnswerBytes is cut (too_large, partial kept),
ChatbotMaxMessagesPerConversation drops the oldest messages, and
ChatbotStoreTTL sweeps idle conversations (an empty one too, never one being
generated) with every key they had. Deleting conversations leaves no
per-identity trace behind. ChatbotQueueSize bounds the backend's waiting
line for all hosts together. A stale entry in the index of
conversations is removed rather than counted as a place taken. The per-identity quotas and the reserved share
run on redis in test_536_store_quotas.py."""
import os
import re
import time

import pytest
import requests

from histutil import Conn, Rest, alice_then_bob, new_cookie, status_auto, wait_for
from redisutil import DOWN_LOG, REDIS

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed "
                                       "(scripts/deps.sh test installs it)")

DB = "7"


def server(httpd, redis, extra, name):
    return httpd(extra="ChatbotStore redis://127.0.0.1:%d/%s\nChatbotRateLimit off\n"
                 % (redis.port, DB) + extra, name=name, allow_errors=DOWN_LOG)


def rcmd(redis, *args):
    return redis.cmd("-n", DB, *args).strip()


def keys(redis, pattern="chatbot:*"):
    return sorted(k for k in rcmd(redis, "--scan", "--pattern", pattern).splitlines() if k)


def evicted_lines(s):
    return [ln for ln in s.read_error_log().splitlines() if "evicted conversation" in ln]


def history(conn, conv):
    return conn.request({"type": "history", "conversation_id": conv, "limit": 1000},
                        "history")


def metric(server, name):
    text = requests.get(server.base + "/metrics", timeout=10).text
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None



def test_full_conversation_table_evicts_from_whoever_holds_most(httpd, redis, fake):
    s = server(httpd, redis, "ChatbotMaxConversations 8\n", "redis-evict")
    alice, bob = Conn(s, cookie=new_cookie()), Conn(s, cookie=new_cookie())
    try:
        a1, convs = alice_then_bob(alice, bob, fake)
        assert status_auto(s)["ChatbotConversations"] == "8"
        # bob's eighth: alice holds one, less than bob will: his own least
        # recently used goes, not hers (older as it is)
        b8 = bob.launch(title="b7")
        st = status_auto(s)
        assert st["ChatbotEvictions"] == "1" and st["ChatbotConversations"] == "8", st
        assert metric(s, "chatbot_evictions_total") == 1
        lines = evicted_lines(s)
        assert len(lines) == 1 and "[chatbot:notice]" in lines[0]
        assert ("evicted conversation %s (bot default, 2 messages, 12 bytes)" % convs[0]) \
            in lines[0], lines
        assert "bob 0" not in s.read_error_log()      # never the content
        assert [x["content"] for x in history(alice, a1)["messages"]] == \
            ["alice's oldest", "kept?"]
        assert history(bob, convs[0])["code"] == "not_found"
        assert not keys(redis, "chatbot:*%s*" % convs[0])   # nothing of it is left
        # alice, holding less than bob, may take his least recently used one
        a2 = alice.launch(title="a2")
        assert status_auto(s)["ChatbotEvictions"] == "2"
        assert history(bob, convs[1])["code"] == "not_found"
        for i, c in enumerate(convs[2:], start=2):
            assert [x["content"] for x in history(bob, c)["messages"]] == \
                ["bob %d" % i, "reply %d" % i]
        lst = bob.request({"type": "sessions"}, "sessions")["sessions"]
        assert sorted(x["conversation_id"] for x in lst) == sorted(convs[2:] + [b8])
        lst = alice.request({"type": "sessions"}, "sessions")["sessions"]
        assert sorted(x["conversation_id"] for x in lst) == sorted([a1, a2])
    finally:
        alice.close()
        bob.close()


def test_full_arena_evicts_whole_conversations_never_corrupts(httpd, redis, fake):
    s = server(httpd, redis, "ChatbotHistorySize 64k\nChatbotMaxAnswerBytes 16k\n",
               "redis-arena")
    c = Conn(s, cookie=new_cookie())
    other = Rest(s, cookie=new_cookie())
    try:
        # someone else's small conversation: it holds less than c, never goes
        r = other.post("/api/session/create", {"title": "small"})
        assert r.status_code == 201, r.text
        small = r.json().get("conversation_id") or r.json()["session"]["conversation_id"]
        t = other.post("/api/session/%s/task" % small, {"message": "tiny [[fake tokens=2]]"})
        assert t.status_code == 200, t.text
        big = {}
        for i in range(12):
            conv = c.launch(title="c%d" % i)
            text = ("%02d" % i) * 5000                       # 10,000 bytes
            fake.script({"reply": "ok %d" % i})
            f = c.turn(text, conversation_id=conv)
            assert f[-1]["type"] == "response", f
            big[conv] = (text, "ok %d" % i)
        n_evicted = int(status_auto(s)["ChatbotEvictions"])
        # 64 KiB of text hold six such conversations: the others went
        assert 5 <= n_evicted <= 7, n_evicted
        assert len(evicted_lines(s)) == n_evicted
        used = int(status_auto(s)["ChatbotHistoryBytesUsed"])
        assert used <= 65536
        assert int(rcmd(redis, "GET", "chatbot:bytes")) == used
        alive = [x["conversation_id"] for x in
                 c.request({"type": "sessions"}, "sessions")["sessions"]]
        order = list(big)
        assert set(alive) == set(order[n_evicted:])
        for conv in alive:
            assert [x["content"] for x in history(c, conv)["messages"]] == list(big[conv])
        h = other.get("/api/chat/history?conversation_id=" + small)
        assert h.status_code == 200 and h.json()["total"] == 2, h.text
        # an answer longer than ChatbotMaxAnswerBytes is cut, nothing lost
        conv = alive[-1]
        fake.script({"reply": "long " * 5000})
        f = c.turn("make it long", conversation_id=conv)
        assert f[-1]["type"] == "error" and f[-1]["code"] == "too_large", f[-1]
        assert f[-1].get("partial") is True
        h = history(c, conv)
        assert h["messages"][-2]["interrupted"] is True
        assert h["messages"][-2]["error"]["code"] == "too_large"
        assert 0 < len(h["messages"][-2]["content"]) <= 16384
        assert h["messages"][-1]["error"] is True and h["messages"][-1]["code"] == "too_large"
        assert [x["content"] for x in h["messages"][:2]] == list(big[conv])
    finally:
        c.close()


def test_messages_per_conversation_drop_the_oldest(httpd, redis):
    s = server(httpd, redis, "ChatbotMaxMessagesPerConversation 4\n", "redis-maxmsg")
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch()
        for i in range(4):
            f = c.turn("q%d [[fake tokens=1]]" % i, conversation_id=conv)
            assert f[-1]["type"] == "response", f
        h = history(c, conv)
        assert [m["content"] for m in h["messages"]] == \
            ["q2 [[fake tokens=1]]", "t0", "q3 [[fake tokens=1]]", "t0"]
        assert int(rcmd(redis, "LLEN", "chatbot:m:" + conv)) == 4
        # the dropped messages' texts are gone from redis too
        assert len(keys(redis, "chatbot:x:%s:*" % conv)) == 4
        by = int(rcmd(redis, "HGET", "chatbot:c:" + conv, "by"))
        assert by == sum(len(m["content"]) for m in h["messages"])
        # the message count a turn's script learns, and keeps while it drops
        # the oldest, is the one the lists show: the last one pushed (the
        # finish's own list) and one read afresh
        pushed = [m for m in c.frames if m.get("type") == "sessions"
                  and any(x["conversation_id"] == conv for x in m["sessions"])]
        assert pushed, c.frames
        last = [x for x in pushed[-1]["sessions"] if x["conversation_id"] == conv]
        assert last[0]["messages"] == 4, pushed[-1]
        lst = c.request({"type": "sessions"}, "sessions")["sessions"]
        assert [x["messages"] for x in lst if x["conversation_id"] == conv] == [4], lst
    finally:
        c.close()


def test_ttl_sweeps_idle_conversations_with_all_their_keys(httpd, redis):
    """ChatbotStoreTTL 1m: conversations idle for longer (aged here by
    moving their last-update time back in redis) are removed by the upkeep
    with every key they had - an empty one too - while a fresh one and one
    whose answer is being generated stay."""
    s = server(httpd, redis, "ChatbotStoreTTL 1m\n", "redis-ttl")
    me = new_cookie()
    c = Conn(s, cookie=me)
    try:
        full, empty, fresh, busy = (c.launch(title=t) for t in ("full", "empty", "fresh",
                                                                "busy"))
        assert c.turn("keep? [[fake tokens=3]]", conversation_id=full)[-1]["type"] == \
            "response"
        assert c.turn("keep [[fake tokens=3]]", conversation_id=fresh)[-1]["type"] == \
            "response"
        c.send_json({"type": "message", "content": "slow [[fake tokens=400 delay_ms=100]]",
                     "conversation_id": busy, "id": "b"})
        c.wait(lambda m: m.get("type") == "stream", 15)
        owner = rcmd(redis, "HGET", "chatbot:c:" + full, "o")
        old = str(int(time.time() * 1000) - 2 * 3600 * 1000)
        for conv in (full, empty, busy):
            rcmd(redis, "ZADD", "chatbot:all", old, conv)
            rcmd(redis, "ZADD", "chatbot:u:" + owner, old, conv)
            rcmd(redis, "HSET", "chatbot:c:" + conv, "u", old)
        assert keys(redis, "chatbot:x:%s:*" % full)
        gone = wait_for(lambda: not keys(redis, "chatbot:*%s*" % full) and
                        not keys(redis, "chatbot:*%s*" % empty), 40)
        assert gone, (keys(redis, "chatbot:*%s*" % full), keys(redis, "chatbot:*%s*" % empty))
        assert "past ChatbotStoreTTL removed" in s.read_error_log()
        ids = [x["conversation_id"] for x in Rest(s, cookie=me).get("/api/sessions").json()
               ["sessions"]]
        assert sorted(ids) == sorted([fresh, busy])
        assert keys(redis, "chatbot:c:" + busy)
        c.send_json({"type": "stop", "conversation_id": busy})
        m, _ = c.wait(lambda m: m.get("type") in ("response", "error") and
                      m.get("conversation_id", busy) == busy, 15)
        assert m["type"] == "response" and m["interrupted"] is True, m
        # the owner's usage is exactly what is left
        left = int(rcmd(redis, "HGET", "chatbot:c:" + fresh, "by")) + \
            int(rcmd(redis, "HGET", "chatbot:c:" + busy, "by"))
        assert int(rcmd(redis, "HGET", "chatbot:ub", owner)) == left
        assert int(rcmd(redis, "GET", "chatbot:bytes")) == left
    finally:
        c.close()


def test_deleted_conversations_leave_nothing_behind(httpd, redis):
    """Many identities, each making and deleting conversations (one of
    them empty): afterwards redis holds no per-identity usage field, no
    conversation key, and the counters are back at zero."""
    s = server(httpd, redis, "", "redis-leftover")
    base = set(keys(redis))
    for i in range(5):
        me = Rest(s, cookie=new_cookie())
        made = []
        for k in range(2):
            r = me.post("/api/session/create", {"title": "t%d" % k})
            assert r.status_code == 201, r.text
            made.append(r.json().get("conversation_id") or
                        r.json()["session"]["conversation_id"])
        t = me.post("/api/session/%s/task" % made[0], {"message": "hi [[fake tokens=2]]"})
        assert t.status_code == 200, t.text
        for conv in made:            # the second one is empty
            r = me.post("/api/session/%s/delete" % conv)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "deleted"
    assert rcmd(redis, "HLEN", "chatbot:ub") == "0"
    for k in ("chatbot:bytes", "chatbot:an", "chatbot:ab"):
        assert rcmd(redis, "GET", k) in ("0", ""), (k, rcmd(redis, "GET", k))
    assert rcmd(redis, "ZCARD", "chatbot:all") == "0"
    left = [k for k in set(keys(redis)) - base
            if not re.match(r"chatbot:(bytes|an|ab|evictions|cr:\w+|rl:\w+|bk:.*|bs:.*)$", k)]
    assert not left, left


def test_backend_queue_is_bounded_for_all_hosts(httpd, redis, fake):
    """ChatbotQueueSize on redis: one line for every host, as long as the
    size (`chatbot:bq:<backend>`), and the next request, whichever host it
    reaches, is told at once (queue_full); when the line moves, the waiters
    are served and the line is empty again."""
    conf = ("ChatbotQueueSize 2\nChatbotBackend q %s max=1\n"
            "<ChatbotBot qb>\n    ChatbotBotBackend q\n</ChatbotBot>\n" % fake.url)
    a = server(httpd, redis, conf, "redis-queue-a")
    b = server(httpd, redis, conf, "redis-queue-b")
    conns = [Conn(h, cookie=new_cookie()) for h in (a, b, a, b)]
    try:
        convs = [c.launch(bot="qb") for c in conns]

        def send(i, text):
            conns[i].send_json({"type": "message", "content": text,
                                "conversation_id": convs[i], "id": "m%d" % i})
        send(0, "A [[fake tokens=20 delay_ms=60]]")
        conns[0].wait(lambda m: m.get("type") == "stream", 15)
        send(1, "B [[fake tokens=2]]")
        conns[1].wait(lambda m: m.get("type") == "status" and m.get("state") == "queued" and
                      m.get("position") == 1, 10)
        send(2, "C [[fake tokens=2]]")
        conns[2].wait(lambda m: m.get("type") == "status" and m.get("state") == "queued" and
                      m.get("position") == 2, 10)
        assert rcmd(redis, "ZCARD", "chatbot:bq:q") == "2"
        t0 = time.time()
        send(3, "D [[fake tokens=2]]")
        d, _ = conns[3].wait(lambda m: m.get("type") in ("response", "error"), 10)
        assert d["type"] == "error" and d["code"] == "queue_full", d
        assert time.time() - t0 < 2
        for i in range(3):
            f, _ = conns[i].wait(lambda m: m.get("type") in ("response", "error"), 30)
            assert f["type"] == "response", (i, f)
        assert rcmd(redis, "ZCARD", "chatbot:bq:q") == "0"
        assert wait_for(lambda: rcmd(redis, "ZCARD", "chatbot:bh:q") == "0", 5)
    finally:
        for c in conns:
            c.close()


def test_stale_index_entry_takes_no_place(httpd, redis):
    """An id left in chatbot:all without its conversation (a write cut
    half-way by an old bug, a hand edit) does not count as a place taken
    for good: the next create that needs room removes it instead of
    evicting a real conversation."""
    s = server(httpd, redis, "ChatbotMaxConversations 8\n", "redis-stale")
    me = Rest(s, cookie=new_cookie())
    made = []
    for i in range(7):
        r = me.post("/api/session/create", {"title": "c%d" % i})
        assert r.status_code == 201, r.text
        made.append(r.json().get("conversation_id") or r.json()["session"]["conversation_id"])
    rcmd(redis, "ZADD", "chatbot:all", "1", "00000000ffffffffffffffff")
    assert rcmd(redis, "ZCARD", "chatbot:all") == "8"
    r = me.post("/api/session/create", {"title": "c7"})
    assert r.status_code == 201, r.text
    ids = [x["conversation_id"] for x in me.get("/api/sessions").json()["sessions"]]
    assert len(ids) == 8 and set(made) <= set(ids)
    assert rcmd(redis, "ZSCORE", "chatbot:all", "00000000ffffffffffffffff") == ""
    assert status_auto(s)["ChatbotEvictions"] == "0"
