"""The shared history store (issue 5): eviction when full (counted, logged,
other conversations intact), the context sent to the model, sizes checked
at startup, and history surviving a graceful restart and, with
ChatbotHistoryFile, a full stop/start (a damaged file is set aside).

Then the store under pressure: it is never re-checked or migrated while
other processes write into it (graceful restarts while answers stream), a
history file written with other per-message limits is migrated rather than
discarded, the file is written safely (mode 0600, never through a planted
link), exports keep their structure whatever the stored text, titles are
one line, eviction under concurrent pressure keeps every survivor exact,
and an answer at exactly ChatbotMaxAnswerBytes is complete."""
import json
import os
import re
import stat
import subprocess
import sys
import threading
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


def test_full_conversation_table_evicts_from_whoever_holds_most(httpd, fake):
    """A full table makes room from the identity that holds the most: its
    least recently used idle conversation goes, never that of someone who
    holds less (issue 14: a flood cannot push others out)."""
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
        # bob's eighth: alice holds one, less than bob will: his own least
        # recently used conversation goes, not hers (older as it is)
        bob_seen = len(bob.frames)
        b8 = bob.launch(title="b7")
        st = status_auto(s)
        assert st["ChatbotEvictions"] == "1" and st["ChatbotConversations"] == "8"
        assert metric(s, "chatbot_evictions_total") == 1
        lines = evicted_lines(s)
        assert len(lines) == 1
        assert "[chatbot:notice]" in lines[0]
        assert ("evicted conversation %s (bot default, 2 messages, 12 bytes)" % convs[0]) \
            in lines[0]
        assert "bob 0" not in s.read_error_log()      # never the content
        h = history(alice, a1)
        assert [x["content"] for x in h["messages"]] == ["alice's oldest", "kept?"]
        m = history(bob, convs[0])
        assert m["type"] == "error" and m["code"] == "not_found"
        # bob's open tab is told his session list changed
        pushes = [f for f in bob.frames[bob_seen:] + bob.quiet(1.0) if f["type"] == "sessions"]
        assert pushes and convs[0] not in [x["conversation_id"] for x in pushes[-1]["sessions"]]
        # alice, holding less than bob, may take his least recently used one
        a2 = alice.launch(title="a2")
        assert status_auto(s)["ChatbotEvictions"] == "2"
        assert history(bob, convs[1])["code"] == "not_found"
        # every other conversation is intact
        for i, c in enumerate(convs[2:], start=2):
            h = history(bob, c)
            assert [x["content"] for x in h["messages"]] == ["bob %d" % i, "reply %d" % i]
        lst = bob.request({"type": "sessions"}, "sessions")["sessions"]
        assert sorted(x["conversation_id"] for x in lst) == sorted(convs[2:] + [b8])
        lst = alice.request({"type": "sessions"}, "sessions")["sessions"]
        assert sorted(x["conversation_id"] for x in lst) == sorted([a1, a2])
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
        # the partial answer, then its reason (issue 19 part 1)
        assert h["messages"][-2]["interrupted"] is True
        assert h["messages"][-2]["error"]["code"] == "too_large"
        assert len(h["messages"][-2]["content"]) <= 16384
        assert h["messages"][-1]["error"] is True and h["messages"][-1]["code"] == "too_large"
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
        # everything after the header: tables, lists and chains
        for off in range(2048, len(data), 997):
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


# ==== the store under pressure ===================================================


def set_directive(server, name, value):
    """Rewrites (or adds) a server-config directive in the rendered config."""
    text = open(server.conf).read()
    pat = re.compile(r"^%s .*$" % re.escape(name), re.M)
    if pat.search(text):
        text = pat.sub("%s %s" % (name, value), text)
    else:
        text += "\n%s %s\n" % (name, value)
    open(server.conf, "w").write(text)


# ---- graceful restart while answers stream ------------------------------------


def _stream_forever(server, cookie, stop, errors):
    try:
        c = Conn(server, cookie=cookie, timeout=20)
    except Exception as e:  # pragma: no cover - reported below
        errors.append(repr(e))
        return
    try:
        conv = c.launch()
        while not stop.is_set():
            c.send_json({"type": "message", "conversation_id": conv,
                         "content": "go [[fake tokens=3000 delay_ms=0]]"})
            try:
                c.wait(lambda m: m.get("type") in ("response", "error"), 20)
            except EOFError:
                return  # closed by the graceful restart: expected
    except (EOFError, OSError):
        return
    finally:
        c.close()


@pytest.mark.parametrize("resize", [False, True])
def test_graceful_restart_while_answers_stream_never_wipes_the_store(httpd, fake, resize):
    s = httpd(extra="ChatbotRateLimit off\nChatbotHistorySize 4M\n", name="gracestream")
    me = new_cookie()
    c = Conn(s, cookie=me)
    keep = c.launch(title="keep me")
    c.turn("a turn to keep [[fake tokens=3]]", conversation_id=keep)
    c.close()
    for i in range(8):
        stop, errors = threading.Event(), []
        th = [threading.Thread(target=_stream_forever, args=(s, new_cookie(), stop, errors))
              for _ in range(4)]
        for t in th:
            t.start()
        time.sleep(0.4)
        if resize:
            set_directive(s, "ChatbotHistorySize", "%dM" % (4 + (i % 2)))
        s.graceful(wait=False)
        time.sleep(0.6)
        stop.set()
        for t in th:
            t.join(30)
    s.graceful()
    log = s.read_error_log()
    assert "AH10913" not in log, log[-3000:]
    if resize:
        # every resize made a new segment of the new layout; never re-used
        assert log.count("store sizes changed; conversations migrated") == 7  # 4M->5M->4M...
        sizes = re.findall(r"shared store (\d+) bytes \(\d+ conversations, (\d+) bytes of "
                           r"history\)", log)
        assert {h for _, h in sizes} == {str(4 << 20), str(5 << 20)}
    c = Conn(s, cookie=me)
    try:
        h = history(c, keep)
        assert h.get("title") == "keep me", h
        assert h["messages"][0]["content"].startswith("a turn to keep")
    finally:
        c.close()


# ---- ChatbotHistoryFile --------------------------------------------------------


HIST = "ChatbotRateLimit off\nChatbotHistoryFile history.bin\n"


def _one_turn(s, me, title="persisted"):
    c = Conn(s, cookie=me)
    try:
        conv = c.launch(title=title)
        c.turn("keep me [[fake tokens=2]]", conversation_id=conv)
    finally:
        c.close()
    return conv


@pytest.mark.parametrize("directive,value", [
    ("ChatbotMaxMessagesPerConversation", "100"),
    ("ChatbotMaxAnswerBytes", "128k"),
])
def test_history_file_of_other_message_limits_is_migrated(httpd, fake, directive, value):
    """The per-message limits are part of the layout but cost no memory:
    an image saved under other values has exactly the size of the new
    segment and must still be migrated, not thrown away as corrupt."""
    s = httpd(extra=HIST, name="histlimits")
    me = new_cookie()
    conv = _one_turn(s, me)
    s.stop()
    path = os.path.join(s.root, "history.bin")
    size = os.path.getsize(path)
    set_directive(s, directive, value)
    s.start()
    log = s.read_error_log()
    assert "not a valid history image" not in log, log[-2000:]
    assert not os.path.exists(path + ".bad")
    assert "migrated to the new sizes" in log
    c = Conn(s, cookie=me)
    try:
        h = history(c, conv)
        assert h.get("title") == "persisted", h
        assert [m["content"] for m in h["messages"]][0] == "keep me [[fake tokens=2]]"
    finally:
        c.close()
    s.stop()
    assert os.path.getsize(path) == size  # same size, new layout, saved again


def test_history_save_is_private_and_never_follows_a_planted_link(httpd, fake):
    s = httpd(extra=HIST, name="histlink")
    _one_turn(s, new_cookie())
    path = os.path.join(s.root, "history.bin")
    victim = os.path.join(s.root, "victim.txt")
    with open(victim, "w") as f:
        f.write("precious\n")
    os.chmod(victim, 0o644)
    os.symlink(victim, path + ".tmp")       # left by someone who can write the dir
    open(path, "wb").write(b"old")
    os.chmod(path, 0o644)
    s.stop()
    assert open(victim).read() == "precious\n"
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode)
    assert st.st_mode & 0o077 == 0, oct(st.st_mode)
    assert st.st_size > 1000
    assert not os.path.lexists(path + ".tmp")
    assert "history saved to" in s.read_error_log()


def test_history_save_over_a_stale_tmp_file_is_private(httpd, fake):
    s = httpd(extra=HIST, name="histtmp")
    _one_turn(s, new_cookie())
    path = os.path.join(s.root, "history.bin")
    with open(path + ".tmp", "w") as f:
        f.write("stale")
    os.chmod(path + ".tmp", 0o666)
    s.stop()
    assert os.stat(path).st_mode & 0o077 == 0, oct(os.stat(path).st_mode)
    assert not os.path.lexists(path + ".tmp")


def _damage(path, how):
    if how == "empty":
        open(path, "wb").close()
    elif how == "directory":
        os.unlink(path)
        os.mkdir(path)
    elif how == "version":
        data = bytearray(open(path, "rb").read())
        data[8] ^= 0x01                      # the format version after the magic
        open(path, "wb").write(bytes(data))
    elif how == "extended":
        with open(path, "ab") as f:
            f.write(b"\0" * 4096)
    elif how == "header-only":
        data = open(path, "rb").read()[:4096]
        open(path, "wb").write(data)
    elif how == "tiny":
        open(path, "wb").write(b"MODCHATS")


@pytest.mark.parametrize("how,logged", [
    ("empty", "is empty; starting empty"),
    ("directory", "is not a regular file"),
    ("version", "not a history image, or from another version"),
    ("extended", "truncated or extended"),
    ("header-only", "truncated or extended"),
    ("tiny", "not a history image"),
])
def test_unusable_history_file_starts_empty_with_a_clear_line(httpd, fake, how, logged):
    s = httpd(extra=HIST, name="histbad",
              allow_errors=(r"AH10909", r"AH10905", r"AH10902"))
    me = new_cookie()
    conv = _one_turn(s, me)
    s.stop()
    path = os.path.join(s.root, "history.bin")
    _damage(path, how)
    s.start()
    log = s.read_error_log()
    assert logged in log, log[-2000:]
    c = Conn(s, cookie=me)
    try:
        m = history(c, conv)
        assert m["type"] == "error" and m["code"] == "not_found"
        f = c.turn("a fresh start [[fake tokens=2]]")
        assert f[-1]["type"] == "response"
    finally:
        c.close()
    if how not in ("empty", "directory"):
        assert os.path.exists(path + ".bad")
    s.stop()
    if how == "directory":
        assert os.path.isdir(path)
        assert "could not save the history" in s.read_error_log()
    else:
        assert os.path.isfile(path) and os.path.getsize(path) > 4096


# ---- export and titles ----------------------------------------------------------


def md_headings(md):
    """The '### ' headings a CommonMark reader sees (outside fenced code)."""
    out, fence = [], None
    for line in md.split("\n"):
        m = re.match(r" {0,3}(`{3,}|~{3,})(.*)$", line)
        if fence is None:
            if m and not (m.group(1)[0] == "`" and "`" in m.group(2)):
                fence = m.group(1)
            elif line.startswith("### "):
                out.append(line[4:])
        elif m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                and not m.group(2).strip():
            fence = None
    return out


def test_markdown_export_closes_fences_a_message_left_open(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\n", name="mdfence")
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch(title="fences")
        fake.script({"reply": "Sure:\n```python\nprint('<b>hi</b>')"})  # cut short
        c.turn("paste:\n~~~~\nhalf a block <script>x</script>", conversation_id=conv)
        fake.script({"reply": "a ``` b\n```\nfenced\n```\ndone"})
        c.turn("and ```` inline", conversation_id=conv)
        md = c.request({"type": "export", "conversation_id": conv}, "export")["content"]
        assert md_headings(md) == ["You", "Assistant", "You", "Assistant"], md
        # the text itself is exported as stored
        assert "half a block <script>x</script>\n~~~~\n\n### Assistant" in md
        assert "print('<b>hi</b>')\n```\n\n### You" in md
        assert md.endswith("```\nfenced\n```\ndone\n\n")
        doc = json.loads(c.request({"type": "export", "conversation_id": conv,
                                    "format": "json"}, "export")["content"])
        assert doc["messages"][1]["content"] == "Sure:\n```python\nprint('<b>hi</b>')"
    finally:
        c.close()


def test_titles_are_one_line_everywhere(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\n", name="titles")
    me = new_cookie()
    c = Conn(s, cookie=me)
    try:
        conv = c.launch(title="line\none")
        assert c.request({"type": "history", "conversation_id": conv},
                         "history")["title"] == "line one"
        m = c.request({"type": "rename", "conversation_id": conv,
                       "title": "\u001b[2Jx\r\n# injected\u0085\u00e9\u202e"}, "ok")
        assert m["type"] == "ok"
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert h["title"] == " [2Jx  # injected  \u00e9\u202e"
        md = c.request({"type": "export", "conversation_id": conv}, "export")["content"]
        assert md.startswith("# " + h["title"] + "\n\n*Bot:*")
    finally:
        c.close()
    r = Rest(s, cookie=me).post("/api/session/%s/rename" % conv, {"title": "a\tb\nc"})
    assert r.status_code == 200, r.text
    lst = Rest(s, cookie=me).get("/api/sessions").json()
    titles = json.dumps(lst)
    assert "a b c" in titles and "a\\tb" not in titles


# ---- eviction under pressure from many users in several children ---------------


def test_eviction_under_concurrent_pressure_keeps_every_survivor_exact(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxConversations 8\n"
                    "ChatbotHistorySize 64k\nChatbotMaxAnswerBytes 8k\n",
              serverlimit=3, threads=8, name="evictmp")
    nusers, rounds = 12, 4
    written = {}                 # conv -> [contents], as each user wrote them
    errors = []
    lock = threading.Lock()

    def user(u):
        me = new_cookie()
        try:
            c = Conn(s, cookie=me, timeout=20)
            rest = Rest(s, cookie=me)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
            return
        try:
            for k in range(rounds):
                r = rest.post("/api/session/create", {"bot_id": "default",
                                                      "title": "u%d-%d" % (u, k)})
                if r.status_code not in (200, 201):
                    # every slot busy generating: refused, documented
                    if r.json().get("error") != "storage_full":
                        errors.append(r.text)
                    continue
                conv = r.json()["conversation_id"]
                text = ("u%d k%d " % (u, k)) + "\u00e9" * (300 + 97 * u)
                f = c.turn(text + " [[fake tokens=40]]", conversation_id=conv, timeout=30)
                if f[-1]["type"] == "response":
                    with lock:
                        written[conv] = (me, [text + " [[fake tokens=40]]",
                                              f[-1]["content"]])
                elif f[-1].get("code") not in ("not_found", "storage_full"):
                    errors.append(f[-1])
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))
        finally:
            c.close()

    th = [threading.Thread(target=user, args=(u,)) for u in range(nusers)]
    for t in th:
        t.start()
    for t in th:
        t.join(120)
    assert not errors, errors[:5]
    st = status_auto(s)
    assert int(st["ChatbotConversations"]) <= 8
    assert int(st["ChatbotEvictions"]) >= len(written) - 8
    nlog = len([l for l in s.read_error_log().splitlines() if "evicted conversation" in l])
    assert nlog == int(st["ChatbotEvictions"])
    # every conversation still there is exactly what its user wrote; every
    # other one is gone for its owner, and nobody else sees it
    alive = 0
    for conv, (me, contents) in written.items():
        r = Rest(s, cookie=me).get("/api/chat/history", params={"conversation_id": conv,
                                                                "limit": 100})
        if r.status_code == 404:
            continue
        assert r.status_code == 200, r.text
        alive += 1
        assert [m["content"] for m in r.json()["messages"]] == contents
        other = Rest(s, cookie=new_cookie()).get(
            "/api/chat/history", params={"conversation_id": conv})
        assert other.status_code == 404
    assert alive <= 8
    assert "AH10913" not in s.read_error_log()
    # the store is still consistent: a graceful restart re-checks it whole
    s.graceful()
    assert "AH10913" not in s.read_error_log()
    assert status_auto(s)["ChatbotConversations"] == st["ChatbotConversations"]


# ---- an answer at exactly ChatbotMaxAnswerBytes ----------------------------------


def test_answer_at_exactly_the_cap_is_complete_one_byte_more_is_cut_whole(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxAnswerBytes 8k\n", name="cap")
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch()
        # 2-, 3- and 4-byte characters; exactly 8192 bytes
        exact = ("\u00e9\u65e5\U0001F600" * 1000)[:900]
        exact = exact + "x" * (8192 - len(exact.encode()))
        assert len(exact.encode()) == 8192
        fake.script({"reply": exact})
        f = c.turn("exact", conversation_id=conv)
        assert f[-1]["type"] == "response" and f[-1]["content"] == exact
        h = history(c, conv)
        assert h["messages"][-1]["content"] == exact
        assert h["messages"][-1]["interrupted"] is False
        # one byte more: the token that would cross the cap is not taken,
        # whatever the characters: history is what the client was sent
        over = "\U0001F600 " * 1638                    # 8190 bytes, 1638 tokens
        over += "\u65e5"                               # a 3-byte char across 8192
        assert len(over.encode()) == 8193
        fake.script({"reply": over})
        f = c.turn("over", conversation_id=conv)
        assert f[-1]["type"] == "error" and f[-1]["code"] == "too_large"
        sent = "".join(x["content"] for x in f if x.get("type") == "stream")
        h = history(c, conv)
        # the cut answer, then its reason (issue 19 part 1)
        answer = [m for m in h["messages"] if m["role"] == "assistant" and
                  m.get("error") is not True][-1]
        kept = answer["content"]
        assert kept == sent and over.startswith(kept) and 8185 <= len(kept.encode()) <= 8192
        assert answer["interrupted"] is True and answer["error"]["code"] == "too_large"
        assert h["messages"][-1]["error"] is True and h["messages"][-1]["code"] == "too_large"
    finally:
        c.close()
