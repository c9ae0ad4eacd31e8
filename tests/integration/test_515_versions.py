"""Answer versions and branches (issue 19 part 3): regenerate adds a
version of the answer, an edit starts a branch; nothing is deleted; the
versions are navigable (select_version over the WebSocket, POST
/api/session/{id}/version over REST), shown in history with their
"versions"/"version"/"siblings", kept in exports; the model is sent the
active branch only; other identities can neither see nor select them; the
number of versions is bounded."""
import json
import os

import pytest

from histutil import Conn, Rest, chat_requests, last_request_id, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
<ChatbotBot vb>
    ChatbotModel "v-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA, "versions")


def history(c, conv):
    h = c.request({"type": "history", "conversation_id": conv, "limit": 100}, "history")
    assert h["type"] == "history", h
    return h


def texts(h):
    return [(m["role"], m["content"]) for m in h["messages"]]


def regenerate(c, conv, reply, fake):
    fake.script({"reply": reply})
    c.send_json({"type": "regenerate", "conversation_id": conv})
    resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
    assert resp["type"] == "response" and resp["content"] == reply, resp
    return resp


def model_messages(fake, since):
    reqs = chat_requests(fake, since)
    assert reqs, "no request reached the backend"
    return [(m["role"], m["content"]) for m in reqs[-1]["body"]["messages"]
            if m["role"] != "system"]


def test_regenerate_twice_then_navigate(srv, fake):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    other_tab = Conn(srv, cookie=me)
    try:
        conv = c.launch("vb")
        fake.script({"reply": "first"})
        f = c.turn("question", conversation_id=conv)
        assert f[-1]["content"] == "first"
        regenerate(c, conv, "second", fake)
        regenerate(c, conv, "third", fake)
        h = history(c, conv)
        assert texts(h) == [("user", "question"), ("assistant", "third")]
        assert h["total"] == 2 and h["stored"] == 4      # nothing deleted
        ans = h["messages"][1]
        assert ans["versions"] == 3 and ans["version"] == 3
        assert len(ans["siblings"]) == 3 and ans["siblings"][-1] == ans["index"]
        assert h["messages"][0]["versions"] == 1 and "siblings" not in h["messages"][0]

        # version 1: history and the model's context follow
        h1 = c.request({"type": "select_version", "conversation_id": conv,
                        "index": ans["siblings"][0]}, "history")
        assert h1["type"] == "history", h1
        assert texts(h1) == [("user", "question"), ("assistant", "first")]
        assert h1["messages"][1]["version"] == 1 and h1["messages"][1]["versions"] == 3
        # the other tab is told (its sessions list changes) and sees version 1
        other_tab.wait(lambda m: m.get("type") == "sessions", timeout=5)
        assert texts(history(other_tab, conv))[1] == ("assistant", "first")

        since = last_request_id(fake)
        fake.script({"reply": "follow-up answer"})
        f = c.turn("and then?", conversation_id=conv)
        assert f[-1]["type"] == "response"
        assert model_messages(fake, since) == [
            ("user", "question"), ("assistant", "first"), ("user", "and then?")]
        # the follow-up belongs to version 1's branch: switching to 3 hides it
        h3 = c.request({"type": "select_version", "conversation_id": conv,
                        "index": ans["siblings"][2]}, "history")
        assert texts(h3) == [("user", "question"), ("assistant", "third")]
        h1 = c.request({"type": "select_version", "conversation_id": conv,
                        "index": ans["siblings"][0]}, "history")
        assert texts(h1)[-1] == ("assistant", "follow-up answer")
    finally:
        c.close()
        other_tab.close()


def test_edit_branches_and_the_old_turns_stay(srv, fake):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("vb")
        for i in range(1, 4):
            fake.script({"reply": "answer %d" % i})
            assert c.turn("turn %d" % i, conversation_id=conv)[-1]["type"] == "response"
        since = last_request_id(fake)
        fake.script({"reply": "edited answer"})
        c.send_json({"type": "edit", "conversation_id": conv, "index": 0,
                     "content": "turn 1, edited"})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "response" and resp["content"] == "edited answer"
        # the model saw the new branch only
        assert model_messages(fake, since) == [("user", "turn 1, edited")]
        h = history(c, conv)
        assert texts(h) == [("user", "turn 1, edited"), ("assistant", "edited answer")]
        assert h["stored"] == 8
        q = h["messages"][0]
        assert q["versions"] == 2 and q["version"] == 2 and q["siblings"][0] == 0
        # back to the first version: the three old turns are all there
        h0 = c.request({"type": "select_version", "conversation_id": conv, "index": 0},
                       "history")
        assert texts(h0) == [("user", "turn 1"), ("assistant", "answer 1"),
                             ("user", "turn 2"), ("assistant", "answer 2"),
                             ("user", "turn 3"), ("assistant", "answer 3")]
        assert h0["messages"][0]["version"] == 1
        # an edit of an answer is refused (only questions are edited)
        m = c.request({"type": "edit", "conversation_id": conv, "index": 1,
                       "content": "x"}, "response")
        assert m["type"] == "error" and m["code"] == "bad_request"

        # REST: the same switch, and exports keep every version
        rest = Rest(srv, cookie=me)
        r = rest.post("/api/session/%s/version" % conv, {"index": q["index"]})
        assert r.status_code == 200, r.text
        assert [m["content"] for m in r.json()["messages"]] == ["turn 1, edited",
                                                                 "edited answer"]
        r = rest.get("/api/chat/history?conversation_id=%s" % conv)
        assert r.json()["messages"][0]["versions"] == 2
        r = rest.post("/api/export/session", {"conversation_id": conv, "format": "json"})
        assert r.status_code == 200, r.text
        ex = r.json()
        assert len(ex["messages"]) == 8
        active = [m["content"] for m in ex["messages"] if m["active"]]
        assert active == ["turn 1, edited", "edited answer"]
        byidx = {m["index"]: m for m in ex["messages"]}
        assert byidx[1]["parent"] == 0 and byidx[0]["parent"] is None
        assert byidx[q["index"]]["parent"] is None and byidx[q["index"]]["versions"] == 2
        r = rest.post("/api/export/session", {"conversation_id": conv, "format": "markdown"})
        md = r.text
        assert "turn 1, edited" in md and "(version 2 of 2)" in md
        assert "## Other versions (6 messages)" in md
        assert md.index("answer 3") > md.index("## Other versions")
        # bad requests
        assert rest.post("/api/session/%s/version" % conv, {}).status_code == 400
        assert rest.post("/api/session/%s/version" % conv,
                         {"index": 99}).status_code == 404
        assert rest.post("/api/session/%s/version" % conv,
                         {"index": "0"}).status_code == 400
    finally:
        c.close()


def test_other_users_cannot_see_or_select(srv, fake):
    alice, eve = new_cookie(), new_cookie()
    a = Conn(srv, cookie=alice)
    e = Conn(srv, cookie=eve)
    try:
        conv = a.launch("vb")
        fake.script({"reply": "one"})
        a.turn("secret question", conversation_id=conv)
        regenerate(a, conv, "two", fake)
        m = e.request({"type": "select_version", "conversation_id": conv, "index": 1},
                      "history")
        assert m["type"] == "error" and m["code"] == "not_found"
        r = Rest(srv, cookie=eve).post("/api/session/%s/version" % conv, {"index": 1})
        assert r.status_code == 404
        assert "secret" not in r.text
        h = history(a, conv)
        assert h["messages"][1]["content"] == "two"      # unchanged by eve
        # malformed
        m = a.request({"type": "select_version", "conversation_id": conv}, "history")
        assert m["type"] == "error" and m["code"] == "bad_request"
        m = a.request({"type": "select_version", "conversation_id": conv, "index": 7},
                      "history")
        assert m["type"] == "error" and m["code"] == "not_found"
    finally:
        a.close()
        e.close()


def test_versions_are_bounded(srv, fake):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("vb")
        c.turn("q [[fake tokens=1]]", conversation_id=conv)
        for _ in range(31):
            c.send_json({"type": "regenerate", "conversation_id": conv})
            resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
            assert resp["type"] == "response", resp
        h = history(c, conv)
        assert h["messages"][1]["versions"] == 32
        c.send_json({"type": "regenerate", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "error" and resp["code"] == "too_large"
        assert "32 versions" in resp["message"]
        assert history(c, conv)["stored"] == 33
    finally:
        c.close()


def test_versions_on_the_redis_store_across_hosts(httpd, fake, redis):
    """The same semantics with ChatbotStore redis://: regenerate twice and
    an edit on host A, the versions seen and switched on host B, the model
    sent the active branch only, the parents gone with the conversation."""
    from redisutil import pair
    r = redis
    try:
        a, b = pair(httpd, r)
        me = new_cookie()
        ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
        try:
            conv = ca.launch()
            fake.script({"reply": "one"})
            assert ca.turn("q1", conversation_id=conv)[-1]["content"] == "one"
            regenerate(ca, conv, "two", fake)
            regenerate(ca, conv, "three", fake)
            h = history(cb, conv)
            assert texts(h) == [("user", "q1"), ("assistant", "three")]
            assert h["stored"] == 4 and h["messages"][1]["versions"] == 3
            sib = h["messages"][1]["siblings"]
            h1 = cb.request({"type": "select_version", "conversation_id": conv,
                             "index": sib[0]}, "history")
            assert texts(h1) == [("user", "q1"), ("assistant", "one")]
            since = last_request_id(fake)
            fake.script({"reply": "more"})
            assert ca.turn("q2", conversation_id=conv)[-1]["content"] == "more"
            assert model_messages(fake, since) == [("user", "q1"), ("assistant", "one"),
                                                   ("user", "q2")]
            # an edit of the first question branches at the root
            fake.script({"reply": "fresh"})
            ca.send_json({"type": "edit", "conversation_id": conv, "index": 0,
                          "content": "q1 again"})
            resp, _ = ca.wait(lambda m: m.get("type") in ("response", "error"))
            assert resp["type"] == "response" and resp["content"] == "fresh", resp
            assert texts(history(cb, conv)) == [("user", "q1 again"), ("assistant", "fresh")]
            h0 = cb.request({"type": "select_version", "conversation_id": conv, "index": 0},
                            "history")
            assert texts(h0) == [("user", "q1"), ("assistant", "one"), ("user", "q2"),
                                 ("assistant", "more")]
            # another identity: not found
            other = Conn(b, cookie=new_cookie())
            m = other.request({"type": "select_version", "conversation_id": conv,
                               "index": 1}, "history")
            other.close()
            assert m["type"] == "error" and m["code"] == "not_found"
            assert r.cmd("-n", "3", "--scan", "--pattern", "*pv:*").strip()
            d = ca.request({"type": "delete", "conversation_id": conv}, "ok")
            assert d["type"] == "ok"
            assert r.cmd("-n", "3", "--scan", "--pattern", "*pv:*").strip() == ""
        finally:
            ca.close()
            cb.close()
    finally:
        r.stop()


@pytest.mark.parametrize("store", ["shm", "redis"])
def test_the_oldest_dropped_off_the_path_keeps_the_path(httpd, fake, store, request):
    """At the conversation's message cap the oldest message goes. When it
    is a version not chosen (the first question, edited), its children
    become roots: they were off the active path and must stay off it
    (marked other versions), or the path would start at the old answer and
    the model be sent the old branch. The same on both stores."""
    from redisutil import store_conf
    extra, kw = store_conf(store, request, 4, "ChatbotRateLimit off\n"
                           "ChatbotMaxMessagesPerConversation 6\n")
    s = httpd(extra=extra, name="vcap-" + store, **kw)
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch()
        for i in (1, 2):
            fake.script({"reply": "r%d" % i})
            assert c.turn("a%d" % i, conversation_id=conv)[-1]["content"] == "r%d" % i
        fake.script({"reply": "s1"})
        c.send_json({"type": "edit", "conversation_id": conv, "index": 0,
                     "content": "b1"})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "response" and resp["content"] == "s1", resp
        h = history(c, conv)
        assert h["stored"] == 6 and texts(h) == [("user", "b1"), ("assistant", "s1")], h
        # the next question drops the first one (a1, not chosen)
        since = last_request_id(fake)
        fake.script({"reply": "s2"})
        assert c.turn("b2", conversation_id=conv)[-1]["content"] == "s2"
        assert model_messages(fake, since) == [("user", "b1"), ("assistant", "s1"),
                                               ("user", "b2")]
        h = history(c, conv)
        assert texts(h) == [("user", "b1"), ("assistant", "s1"), ("user", "b2"),
                            ("assistant", "s2")], h
        assert h["stored"] == 6, h
        # and the old branch is still there, as another version
        old = [m for m in h["messages"] if m.get("versions", 1) > 1]
        assert old and old[0]["content"] == "b1", h
        # the next answers stay on the path as more of the oldest go
        fake.script({"reply": "s3"})
        assert c.turn("b3", conversation_id=conv)[-1]["content"] == "s3"
        h = history(c, conv)
        assert texts(h)[-4:] == [("user", "b2"), ("assistant", "s2"), ("user", "b3"),
                                 ("assistant", "s3")], h
        assert texts(h)[:2] == [("user", "b1"), ("assistant", "s1")], h
    finally:
        c.close()
