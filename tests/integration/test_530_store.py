"""The shared history store (issue 5): eviction when full (counted, logged,
other conversations intact), the context sent to the model, sizes checked
at startup, and history surviving a graceful restart and, with
ChatbotHistoryFile, a full stop/start (a damaged file is set aside)."""
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from histutil import (Conn, Rest, chat_requests, last_request_id, new_cookie,
                      status_auto)

HERE = os.path.dirname(os.path.abspath(__file__))


def metric(server, name):
    text = requests.get(server.base + "/metrics", timeout=10).text
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def evicted_lines(server):
    return [l for l in server.read_error_log().splitlines() if "evicted conversation" in l]


def history(conn, conv):
    return conn.request({"type": "history", "conversation_id": conv, "limit": 1000},
                        "history")


# ---- eviction ---------------------------------------------------------------------


def test_full_conversation_table_evicts_the_least_recently_used(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxConversations 8\n", name="evict")
    alice = Conn(s, cookie=new_cookie())
    bob = Conn(s, cookie=new_cookie())
    try:
        a1 = alice.launch()
        fake.script({"reply": "kept?"})
        alice.turn("alice's oldest", conversation_id=a1)
        convs = []
        for i in range(7):
            c = bob.launch(title="b%d" % i)
            fake.script({"reply": "reply %d" % i})
            bob.turn("bob %d" % i, conversation_id=c)
            convs.append(c)
        assert status_auto(s)["ChatbotEvictions"] == "0"
        assert status_auto(s)["ChatbotConversations"] == "8"
        # the ninth conversation takes the least recently used slot: alice's
        alice_seen = len(alice.frames)
        b8 = bob.launch(title="b7")
        convs.append(b8)
        st = status_auto(s)
        assert st["ChatbotEvictions"] == "1" and st["ChatbotConversations"] == "8"
        assert metric(s, "chatbot_evictions_total") == 1
        lines = evicted_lines(s)
        assert len(lines) == 1
        assert "[chatbot:notice]" in lines[0]
        assert ("evicted conversation %s (bot default, 2 messages, 19 bytes)" % a1) in lines[0]
        assert "alice's oldest" not in s.read_error_log()      # never the content
        m = history(alice, a1)
        assert m["type"] == "error" and m["code"] == "not_found"
        # alice's open tab is told her session list changed
        pushes = [f for f in alice.frames[alice_seen:] + alice.quiet(1.0)
                  if f["type"] == "sessions"]
        assert pushes and pushes[-1]["sessions"] == []
        # every other conversation is intact
        for i, c in enumerate(convs[:7]):
            h = history(bob, c)
            assert [x["content"] for x in h["messages"]] == ["bob %d" % i, "reply %d" % i]
        lst = bob.request({"type": "sessions"}, "sessions")["sessions"]
        assert sorted(x["conversation_id"] for x in lst) == sorted(convs)
    finally:
        alice.close()
        bob.close()


def test_full_arena_evicts_whole_conversations_never_corrupts(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotHistorySize 64k\n"
              "ChatbotMaxAnswerBytes 16k\n", name="arena")
    c = Conn(s, cookie=new_cookie())
    try:
        big = {}
        for i in range(12):
            conv = c.launch(title="c%d" % i)
            text = ("%02d" % i) * 5000                       # 10,000 bytes
            fake.script({"reply": "ok %d" % i})
            f = c.turn(text, conversation_id=conv)
            assert f[-1]["type"] == "response", f
            big[conv] = (text, "ok %d" % i)
        n_evicted = int(status_auto(s)["ChatbotEvictions"])
        # 64 KiB hold about six such conversations: the others were evicted
        assert 4 <= n_evicted <= 8
        assert len(evicted_lines(s)) == n_evicted
        assert metric(s, "chatbot_evictions_total") == n_evicted
        used = int(status_auto(s)["ChatbotHistoryBytesUsed"])
        assert used <= 65536
        alive = [x["conversation_id"] for x in
                 c.request({"type": "sessions"}, "sessions")["sessions"]]
        assert len(alive) == 12 - n_evicted
        order = list(big)
        # the newest survive, oldest first to go, every survivor exact
        assert set(alive) == set(order[n_evicted:])
        for conv in alive:
            h = history(c, conv)
            assert [x["content"] for x in h["messages"]] == list(big[conv])
        for conv in order[:n_evicted]:
            assert history(c, conv)["code"] == "not_found"
        # a message larger than a stored message may be is refused, nothing lost
        conv = alive[-1]
        fake.script({"reply": "long " * 5000})
        f = c.turn("make it long", conversation_id=conv)
        assert f[-1]["type"] == "error" and f[-1]["code"] == "too_large"
        assert f[-1].get("partial") is True
        h = history(c, conv)
        assert h["messages"][-1]["interrupted"] is True
        assert len(h["messages"][-1]["content"]) <= 16384
    finally:
        c.close()


# ---- startup checks ------------------------------------------------------------------


@pytest.mark.parametrize("extra,needle", [
    ("ChatbotHistorySize 64k\nChatbotMaxAnswerBytes 64k\n", "ChatbotMaxAnswerBytes"),
    ("ChatbotMaxConversations 7\n", "ChatbotMaxConversations"),
    ("ChatbotHistorySize 1k\n", "ChatbotHistorySize"),
    ("ChatbotMaxUsers 0\n", "ChatbotMaxUsers"),
    ("ChatbotMaxMessagesPerConversation 0\n", "ChatbotMaxMessagesPerConversation"),
    ("ChatbotQueueSize 0\n", "ChatbotQueueSize"),
])
def test_bad_sizes_are_refused_at_startup(tmp_path, fake, extra, needle):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "scripts"))
    import serverroot
    from conftest import test_root
    root = test_root("sizes")
    conf = serverroot.render(root, 1, 2, fake.url, "m", extra=extra)
    r = subprocess.run(["/usr/sbin/apache2", "-t", "-f", conf], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert needle in r.stderr + r.stdout


# ---- context sent to the model ------------------------------------------------------

CTX = """
ChatbotRateLimit off
<ChatbotBot wide>
    ChatbotModel "wide-model"
</ChatbotBot>
<ChatbotBot tight>
    ChatbotModel "tight-model"
    ChatbotSystemPrompt "Be brief."
    ChatbotContext messages=3 tokens=50
</ChatbotBot>
ChatbotDefaultBot wide
"""


@pytest.fixture(scope="module")
def ctxsrv(fake):
    from conftest import Server
    s = Server(fake.url, extra=CTX, name="context")
    yield s
    s.stop()
    bad = s.bad_log_lines()
    assert not bad, "\n".join(bad)


def sent(fake, since):
    return chat_requests(fake, since)[-1]["body"]["messages"]


def test_context_is_the_last_20_messages_with_the_system_prompt(ctxsrv, fake):
    c = Conn(ctxsrv, cookie=new_cookie())
    try:
        conv = c.launch("wide")
        said = []
        for i in range(12):
            fake.script({"reply": "a%d" % i})
            since = last_request_id(fake)
            c.turn("q%d" % i, conversation_id=conv)
            said += ["q%d" % i, "a%d" % i]
            msgs = sent(fake, since)
            assert msgs[0] == {"role": "system", "content": "You are a helpful assistant."}
            expect = said[:-1][-20:]
            assert [m["content"] for m in msgs[1:]] == expect
        assert len(msgs) == 21
        assert msgs[1] == {"role": "assistant", "content": "a1"}
    finally:
        c.close()


def test_context_is_about_4000_tokens_newest_always_kept(ctxsrv, fake):
    c = Conn(ctxsrv, cookie=new_cookie())
    try:
        conv = c.launch("wide")
        m1, m2, m3 = "1" * 6000, "2" * 6000, "3" * 6000
        for m, r in ((m1, "r1"), (m2, "r2")):
            fake.script({"reply": r})
            c.turn(m, conversation_id=conv)
        fake.script({"reply": "r3"})
        since = last_request_id(fake)
        c.turn(m3, conversation_id=conv)
        # 16,000 bytes (4 bytes a token): m3 + r2 + m2 + r1 fit, m1 does not
        assert [m["content"] for m in sent(fake, since)] == [
            "You are a helpful assistant.", "r1", m2, "r2", m3]
        # one message over the whole budget still goes (with the system prompt)
        conv2 = c.launch("wide")
        huge = "h" * 20000
        since = last_request_id(fake)
        c.turn(huge, conversation_id=conv2)
        assert [m["content"] for m in sent(fake, since)] == [
            "You are a helpful assistant.", huge]
    finally:
        c.close()


def test_context_per_bot_and_errors_left_out(ctxsrv, fake):
    c = Conn(ctxsrv, cookie=new_cookie())
    try:
        conv = c.launch("tight")
        for i in range(3):
            fake.script({"reply": "b%d" % i})
            c.turn("t%d" % i, conversation_id=conv)
        since = last_request_id(fake)
        fake.script({"reply": "b3"})
        c.turn("t3", conversation_id=conv)
        assert sent(fake, since) == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "t2"}, {"role": "assistant", "content": "b2"},
            {"role": "user", "content": "t3"}]
        # tokens=50: 200 bytes
        fake.script({"reply": "y" * 150})
        c.turn("x" * 40, conversation_id=conv)
        since = last_request_id(fake)
        fake.script({"reply": "z"})
        c.turn("w" * 30, conversation_id=conv)
        assert [m["content"] for m in sent(fake, since)] == ["Be brief.", "y" * 150, "w" * 30]
        # a failed turn leaves an error in the conversation, never sent again
        fake.script({"status": 500})
        f = c.turn("fails", conversation_id=conv)
        assert f[-1]["type"] == "error"
        h = history(c, conv)
        assert h["messages"][-1].get("error") is True
        since = last_request_id(fake)
        fake.script({"reply": "fine"})
        c.turn("after", conversation_id=conv)
        assert [m["content"] for m in sent(fake, since)] == ["Be brief.", "z", "fails",
                                                             "after"]
    finally:
        c.close()


def test_stateless_chat_is_bounded_and_stores_nothing(ctxsrv, fake):
    me = new_cookie()
    rest = Rest(ctxsrv, cookie=me)
    before = status_auto(ctxsrv)["ChatbotConversations"]
    hist = []
    for i in range(15):
        hist += [{"role": "user", "content": "u%d" % i},
                 {"role": "assistant", "content": "a%d" % i}]
    since = last_request_id(fake)
    fake.script({"reply": "stateless answer"})
    r = rest.post("/api/chat", {"message": "now", "history": hist})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["response"] == "stateless answer" and body["conversation_id"] is None
    assert body["bot_id"] == "wide" and body["interrupted"] is False
    msgs = sent(fake, since)
    assert msgs[0]["role"] == "system"
    assert [m["content"] for m in msgs[1:]] == [x["content"] for x in hist][-19:] + ["now"]
    # per bot bounds apply too
    since = last_request_id(fake)
    r = rest.post("/api/chat", {"message": "now", "history": hist, "bot_id": "tight"})
    assert r.status_code == 200
    assert [m["content"] for m in sent(fake, since)] == ["Be brief.", "u14", "a14", "now"]
    # no conversation was created, not even for a moment in the archive
    assert rest.get("/api/sessions").json()["sessions"] == []
    assert rest.get("/api/sessions", params={"archived": "1"}).json()["sessions"] == []
    assert status_auto(ctxsrv)["ChatbotConversations"] == before
    # a backend failure is a clean error, and still nothing is stored
    fake.script({"status": 404})
    r = rest.post("/api/chat", {"message": "x"})
    assert r.status_code == 502 and r.json()["error"] == "model_not_found"
    assert status_auto(ctxsrv)["ChatbotConversations"] == before


# ---- restarts ------------------------------------------------------------------------


def test_graceful_restart_keeps_history(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\n", name="graceful")
    me = new_cookie()
    c = Conn(s, cookie=me)
    conv = c.launch(title="survivor")
    fake.script({"reply": "before restart"})
    c.turn("remember me", conversation_id=conv)
    c.close()
    s.graceful()
    assert "generation 2" in s.read_error_log()
    c = Conn(s, cookie=me)
    try:
        assert c.hello["conversation_id"] == conv
        h = history(c, conv)
        assert h["title"] == "survivor"
        assert [x["content"] for x in h["messages"]] == ["remember me", "before restart"]
        since = last_request_id(fake)
        c.turn("still there?", conversation_id=conv)
        assert [m["content"] for m in sent(fake, since)][1:] == [
            "remember me", "before restart", "still there?"]
    finally:
        c.close()
    # an answer cut by a graceful restart is kept, marked interrupted
    c = Conn(s, cookie=me)
    c.send_json({"type": "message", "content": "long [[fake tokens=200 delay_ms=30]]",
                 "conversation_id": conv})
    c.wait("stream")
    s.graceful(wait=False)
    assert c.close_code(10) == 1001
    c.close()
    time.sleep(1.5)
    c = Conn(s, cookie=me)
    try:
        h = history(c, conv)
        assert h["state"] == "idle"
        last = h["messages"][-1]
        assert last["role"] == "assistant" and last["interrupted"] is True
        assert last["streaming"] is False and last["content"].startswith("t0 t1")
    finally:
        c.close()
    assert "generation 3" in s.read_error_log()


def test_history_file_survives_stop_and_start(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotHistoryFile history.bin\n",
              name="histfile")
    me = new_cookie()
    c = Conn(s, cookie=me)
    conv = c.launch(title="persisted")
    fake.script({"reply": "written to disk"})
    c.turn("keep me", conversation_id=conv)
    other = c.launch(title="archived one")
    c.request({"type": "archive", "conversation_id": other}, "ok")
    c.close()
    s.stop()
    path = os.path.join(s.root, "history.bin")
    assert os.path.getsize(path) > 0
    assert "history saved to" in s.read_error_log()
    s.start()
    assert "history loaded from" in s.read_error_log()
    c = Conn(s, cookie=me)
    try:
        assert c.hello["conversation_id"] == conv
        h = history(c, conv)
        assert h["title"] == "persisted"
        assert [x["content"] for x in h["messages"]] == ["keep me", "written to disk"]
        arch = c.request({"type": "sessions", "archived": True}, "sessions")["sessions"]
        assert [x["conversation_id"] for x in arch] == [other]
        # an answer running when httpd stops is kept, marked interrupted
        c.send_json({"type": "message", "content": "cut [[fake tokens=200 delay_ms=30]]",
                     "conversation_id": conv})
        c.wait("stream")
    finally:
        c.close()
    s.stop()
    s.start()
    c = Conn(s, cookie=me)
    try:
        h = history(c, conv)
        assert h["state"] == "idle" and len(h["messages"]) == 4
        assert h["messages"][-1]["interrupted"] is True
        assert h["messages"][-1]["streaming"] is False
    finally:
        c.close()


@pytest.mark.parametrize("damage", ["garbage", "flipped", "truncated"])
def test_damaged_history_file_is_set_aside(httpd, fake, damage):
    s = httpd(extra="ChatbotRateLimit off\nChatbotHistoryFile history.bin\n",
              name="badfile", allow_errors=(r"AH10909",))
    me = new_cookie()
    c = Conn(s, cookie=me)
    conv = c.launch()
    c.turn("soon lost [[fake tokens=2]]", conversation_id=conv)
    c.close()
    s.stop()
    path = os.path.join(s.root, "history.bin")
    data = bytearray(open(path, "rb").read())
    if damage == "garbage":
        data = bytearray(os.urandom(len(data)))
    elif damage == "flipped":
        # the conversation table (after the 1472-byte header and user table)
        for off in range(1472, min(len(data), 1472 + 300000), 997):
            data[off] ^= 0x5A
    else:
        data = data[:len(data) // 2]
    open(path, "wb").write(bytes(data))
    s.start()
    log = s.read_error_log()
    assert "is not a valid history image" in log
    assert os.path.exists(path + ".bad")
    assert open(path + ".bad", "rb").read() == bytes(data)
    c = Conn(s, cookie=me)
    try:
        assert c.hello["conversation_id"] is None
        m = history(c, conv)
        assert m["type"] == "error" and m["code"] == "not_found"
        assert c.request({"type": "sessions"}, "sessions")["sessions"] == []
        f = c.turn("a fresh start [[fake tokens=2]]")
        assert f[-1]["type"] == "response"
    finally:
        c.close()
