"""The shared history store's sizes (issue 5): eviction when full (counted,
logged, other conversations intact), also under concurrent pressure from
many users in several children where every survivor stays exact; sizes
checked at startup; an answer at exactly ChatbotMaxAnswerBytes is complete."""
import os
import re
import subprocess
import sys
import threading

import pytest
import requests

from histutil import Conn, Rest, alice_then_bob, history, new_cookie, status_auto

HERE = os.path.dirname(os.path.abspath(__file__))


def metric(server, name):
    text = requests.get(server.base + "/metrics", timeout=10).text
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def evicted_lines(server):
    return [l for l in server.read_error_log().splitlines() if "evicted conversation" in l]


# ---- eviction ---------------------------------------------------------------------


def test_full_conversation_table_evicts_from_whoever_holds_most(httpd, fake):
    """A full table makes room from the identity that holds the most: its
    least recently used idle conversation goes, never that of someone who
    holds less (issue 14: a flood cannot push others out)."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxConversations 8\n", name="evict")
    alice = Conn(s, cookie=new_cookie())
    bob = Conn(s, cookie=new_cookie())
    try:
        a1, convs = alice_then_bob(alice, bob, fake)
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
