"""Bot sessions (issue 5): launch, list with status (idle / queued /
generating / stopped, model, backend health, last activity), switch, stop;
status changes pushed to every tab of the identity (and to no one else);
rename, archive, delete and export (Markdown and JSON)."""
import json
import re
import time

import pytest

from histutil import Conn, Rest, chat_requests, last_request_id, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
ChatbotBackend one %(url)s max=1
<ChatbotBot q>
    ChatbotModel "q-model"
    ChatbotBotBackend one
</ChatbotBot>
<ChatbotBot other>
    ChatbotModel "other-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA % {"url": fake.url}, "sessions", no_500=False)


def session_of(frame, conv):
    for s in frame.get("sessions", []):
        if s["conversation_id"] == conv:
            return s
    return None


def pushed(conn, conv, pred, timeout=1.0):
    """Waits for a pushed `sessions` frame whose entry for conv satisfies
    pred (the latest list already read counts); returns (entry, seconds
    waited)."""
    t0 = time.time()
    last = [m for m in conn.frames if m.get("type") == "sessions"]
    if last and session_of(last[-1], conv) is not None and pred(session_of(last[-1], conv)):
        return session_of(last[-1], conv), 0.0
    m, _ = conn.wait(lambda m: m.get("type") == "sessions" and session_of(m, conv) is not None
                     and pred(session_of(m, conv)), timeout)
    # a push: no request id, the non-archived list
    assert "id" not in m and m["archived"] is False, m
    return session_of(m, conv), time.time() - t0


def test_launch_list_status_push_stop_and_revive(srv):
    me = new_cookie()
    tab1 = Conn(srv, cookie=me)
    tab2 = Conn(srv, cookie=me)
    stranger = Conn(srv, cookie=new_cookie())
    try:
        s1 = tab1.launch("q", title="first")
        e, dt = pushed(tab2, s1, lambda s: s["state"] == "idle")
        assert e["title"] == "first" and e["bot_id"] == "q" and e["model"] == "q-model"
        assert e["stopped"] is False and e["archived"] is False and e["messages"] == 0
        assert e["backend_health"] in ("up", "down", "unknown")
        assert e["updated_ms"] >= e["created_ms"] > 0
        s2 = tab1.launch("q", title="second")
        pushed(tab2, s2, lambda s: s["state"] == "idle")

        # S1 generates a slow answer; S2 waits for the backend's only slot
        tab1.send_json({"type": "message", "content": "slow [[fake tokens=40 delay_ms=50]]",
                        "conversation_id": s1, "id": "m1"})
        tab1.wait(lambda m: m.get("type") == "stream")
        e, dt = pushed(tab2, s1, lambda s: s["state"] == "generating")
        assert dt < 1.0
        tab1.send_json({"type": "message", "content": "queued [[fake tokens=3]]",
                        "conversation_id": s2, "id": "m2"})
        st, _ = tab1.wait(lambda m: m.get("type") == "status" and
                          m.get("conversation_id") == s2 and m.get("state") == "queued")
        assert st["position"] == 1
        e, dt = pushed(tab2, s2, lambda s: s["state"] == "queued")
        assert e["position"] == 1 and dt < 1.0
        rest = Rest(srv, cookie=me)
        body = rest.get("/api/bot/%s/status" % s2).json()
        assert body["session"]["state"] == "queued"
        assert rest.get("/api/bot/%s/status" % s1).json()["session"]["state"] == "generating"

        # another identity hears nothing of all this
        assert [m for m in stranger.quiet(1.0) if m["type"] == "sessions"] == []

        # tab2 stops session S1: the running answer ends (interrupted), S1 is
        # "stopped", S2 gets the slot and completes
        tab2.send_json({"type": "stop_session", "conversation_id": s1})
        ok, _ = tab2.wait(lambda m: m.get("type") in ("ok", "error"))
        assert ok["type"] == "ok" and ok["op"] == "stop_session", ok
        resp, _ = tab1.wait(lambda m: m.get("type") in ("response", "error") and
                            m.get("id") == "m1", 5)
        assert resp["type"] == "response" and resp["interrupted"] is True
        assert resp["stats"]["done_reason"] == "stopped"
        partial = resp["content"]
        assert 0 < len(partial) < len(" ".join("t%d" % i for i in range(40)))
        e, dt = pushed(tab2, s1, lambda s: s["state"] == "stopped", 2.0)
        assert e["stopped"] is True
        resp2, _ = tab1.wait(lambda m: m.get("type") in ("response", "error") and
                             m.get("id") == "m2", 10)
        assert resp2["type"] == "response" and resp2["content"] == "t0 t1 t2"
        pushed(tab2, s2, lambda s: s["state"] == "idle", 2.0)

        # the stopped session's history stays readable, the partial answer kept
        h = rest.get("/api/chat/history", params={"conversation_id": s1}).json()
        assert h["state"] == "stopped"
        assert [m["role"] for m in h["messages"]] == ["user", "assistant"]
        assert h["messages"][1]["content"] == partial
        assert h["messages"][1]["interrupted"] is True
        lst = {s["conversation_id"]: s for s in rest.get("/api/sessions").json()["sessions"]}
        assert lst[s1]["state"] == "stopped" and lst[s1]["stopped"] is True
        assert lst[s2]["state"] == "idle" and lst[s2]["messages"] == 2

        # a new message revives the stopped session
        frames = tab1.turn("again [[fake tokens=2]]", conversation_id=s1)
        assert frames[-1]["type"] == "response"
        e, _ = pushed(tab2, s1, lambda s: s["state"] == "idle" and not s["stopped"], 2.0)
        assert e["messages"] == 4
    finally:
        for c in (tab1, tab2, stranger):
            c.close()


def test_rest_stop_of_an_answer_generated_over_websocket(srv):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other")
        c.send_json({"type": "message", "content": "long [[fake tokens=60 delay_ms=50]]",
                     "conversation_id": conv})
        c.wait(lambda m: m.get("type") == "stream")
        r = Rest(srv, cookie=me).post("/api/session/%s/stop" % conv)
        assert r.status_code == 200, r.text
        assert r.json()["session"]["stopped"] is True
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"), 3)
        assert resp["type"] == "response" and resp["interrupted"] is True
    finally:
        c.close()


def test_stop_of_a_queued_turn_from_another_tab(srv, fake):
    """A turn still waiting for a backend slot can be stopped from another
    connection too (it never reaches the backend)."""
    me = new_cookie()
    a = Conn(srv, cookie=me)
    b = Conn(srv, cookie=me)
    try:
        s1 = a.launch("q")
        s2 = a.launch("q")
        a.send_json({"type": "message", "content": "hold [[fake tokens=40 delay_ms=50]]",
                     "conversation_id": s1, "id": "h"})
        a.wait(lambda m: m.get("type") == "stream")
        a.send_json({"type": "message", "content": "wait [[fake tokens=2]]",
                     "conversation_id": s2, "id": "w"})
        a.wait(lambda m: m.get("type") == "status" and m.get("state") == "queued")
        since = last_request_id(fake)
        b.send_json({"type": "stop", "conversation_id": s2})
        resp, before = a.wait(lambda m: m.get("id") == "w" and m.get("type") in (
            "response", "error"), 3)
        assert resp["type"] == "response" and resp["interrupted"] is True
        assert resp["content"] == ""
        # stopped while the other answer still streams: it never got the slot
        assert not [m for m in before if m.get("id") == "h" and m["type"] == "response"]
        a.wait(lambda m: m.get("id") == "h" and m.get("type") == "response", 10)
        time.sleep(0.3)
        assert [r for r in chat_requests(fake, since)
                if "wait" in json.dumps(r["body"])] == []
    finally:
        a.close()
        b.close()


def test_switch_select_and_current_session(srv):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    rest = Rest(srv, cookie=me)
    try:
        s1 = c.launch("other", title="one")
        c.turn("in one [[fake tokens=1]]", conversation_id=s1)
        s2 = c.launch("q", title="two")
        # messages without conversation_id go to the connection's current
        # session: the one just launched
        frames = c.turn("to current [[fake tokens=1]]")
        assert frames[0]["type"] == "ack" and frames[0]["conversation_id"] == s2
        c.send_json({"type": "select", "conversation_id": s1})
        sess, _ = c.wait("session")
        hist, _ = c.wait("history")
        assert sess["session"]["conversation_id"] == s1
        assert hist["conversation_id"] == s1 and hist["total"] == 2
        frames = c.turn("after select [[fake tokens=1]]")
        assert frames[0]["conversation_id"] == s1 and frames[0]["bot_id"] == "other"
    finally:
        c.close()
    # a new connection starts on the default bot's latest session (q is the
    # default here: the first declared bot)
    c = Conn(srv, cookie=me)
    try:
        assert c.hello["conversation_id"] == s2 and c.hello["bot_id"] == "q"
        s3 = c.launch("q", title="three")
    finally:
        c.close()
    c = Conn(srv, cookie=me)
    try:
        assert c.hello["conversation_id"] == s3
    finally:
        c.close()
    # REST select makes a session its bot's latest: calls without an id
    # (and new connections) use it
    r = rest.post("/api/session/%s/select" % s2)
    assert r.status_code == 200 and r.json()["conversation_id"] == s2
    h = rest.get("/api/chat/history").json()
    assert h["conversation_id"] == s2 and h["total"] == 2
    assert rest.get("/api/sessions").json()["sessions"][0]["conversation_id"] == s2
    c = Conn(srv, cookie=me)
    try:
        assert c.hello["conversation_id"] == s2 and c.hello["bot_id"] == "q"
    finally:
        c.close()
    # bot_id picks that bot's latest session
    h = rest.get("/api/chat/history", params={"bot_id": "other"}).json()
    assert h["conversation_id"] == s1 and h["total"] == 4


def test_rename_archive_delete_over_websocket(srv):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other", title="before")
        m = c.request({"type": "rename", "conversation_id": conv, "title": "after ü"}, "ok")
        assert m == {"type": "ok", "op": "rename", "conversation_id": conv}
        lst = c.request({"type": "sessions"}, "sessions")
        assert session_of(lst, conv)["title"] == "after ü"
        m = c.request({"type": "archive", "conversation_id": conv}, "ok")
        assert m["op"] == "archive"
        assert session_of(c.request({"type": "sessions"}, "sessions"), conv) is None
        arch = c.request({"type": "sessions", "archived": True, "id": "arch"}, "sessions")
        assert arch["id"] == "arch" and arch["archived"] is True
        assert session_of(arch, conv)["archived"] is True
        m = c.request({"type": "archive", "conversation_id": conv, "archived": False}, "ok")
        assert session_of(c.request({"type": "sessions"}, "sessions"), conv)["archived"] is False
        # deleting while generating is refused, then works
        c.send_json({"type": "message", "content": "x [[fake tokens=30 delay_ms=50]]",
                     "conversation_id": conv})
        c.wait("stream")
        other = Conn(srv, cookie=me)
        try:
            m = other.request({"type": "delete", "conversation_id": conv}, "ok")
            assert m["type"] == "error" and m["code"] == "busy"
        finally:
            other.close()
        c.send_json({"type": "stop", "conversation_id": conv})
        c.wait("response")
        m = c.request({"type": "delete", "conversation_id": conv}, "ok")
        assert m == {"type": "ok", "op": "delete", "conversation_id": conv}
        m = c.request({"type": "history", "conversation_id": conv}, "history")
        assert m["type"] == "error" and m["code"] == "not_found"
        assert session_of(c.request({"type": "sessions", "archived": True}, "sessions"),
                          conv) is None
        # the deleted session was current: a message without id starts a new one
        frames = c.turn("fresh [[fake tokens=1]]")
        assert frames[0]["type"] == "ack" and frames[0]["conversation_id"] != conv
        assert frames[-1]["type"] == "response"
    finally:
        c.close()


def test_rename_archive_delete_over_rest(srv):
    rest = Rest(srv, cookie=new_cookie())
    r = rest.post("/api/session/create", {"bot_id": "other", "title": "t1"})
    assert r.status_code == 201
    conv = r.json()["conversation_id"]
    assert r.json()["session"]["title"] == "t1"
    r = rest.post("/api/session/%s/rename" % conv, {"title": "t2"})
    assert r.status_code == 200 and r.json()["session"]["title"] == "t2"
    r = rest.post("/api/session/%s/archive" % conv)
    assert r.status_code == 200 and r.json()["session"]["archived"] is True
    ids = [s["conversation_id"] for s in rest.get("/api/sessions").json()["sessions"]]
    assert conv not in ids
    ids = [s["conversation_id"] for s in
           rest.get("/api/sessions", params={"archived": "1"}).json()["sessions"]]
    assert ids == [conv]
    r = rest.post("/api/session/%s/unarchive" % conv)
    assert r.status_code == 200 and r.json()["session"]["archived"] is False
    r = rest.post("/api/session/%s/delete" % conv)
    assert r.status_code == 200 and r.json() == {"status": "deleted", "conversation_id": conv}
    assert rest.post("/api/session/%s/delete" % conv).status_code == 404
    assert rest.get("/api/chat/history", params={"conversation_id": conv}).status_code == 404
    assert rest.get("/api/sessions").json()["sessions"] == []


def test_export_markdown_and_json(srv, fake):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other", title="Export <me>")
        fake.script({"reply": "Answer one"})
        f1 = c.turn("first question", conversation_id=conv)
        fake.script({"reply": "Answer two\nwith lines"})
        f2 = c.turn("second *question*", conversation_id=conv)
        assert f1[-1]["content"] == "Answer one"
        assert f2[-1]["content"] == "Answer two\nwith lines"
        m = c.request({"type": "export", "conversation_id": conv}, "export")
        assert m["format"] == "markdown"
        # named after the title, with the characters a file name cannot
        # hold dropped (an untitled chat: chat-<bot>-<id8>, test_930)
        assert m["filename"] == "Export me.md"
        md = m["content"]
        head, _, body = md.partition("### You")
        assert head.startswith("# Export <me>\n\n*Bot:* other  \n*Started:* ")
        assert "*Messages:* 4\n\n" in head
        assert "### You" + body == ("### You\n\nfirst question\n\n"
                                    "### Assistant\n\nAnswer one\n\n"
                                    "### You\n\nsecond *question*\n\n"
                                    "### Assistant\n\nAnswer two\nwith lines\n\n")
        m = c.request({"type": "export", "conversation_id": conv, "format": "json"}, "export")
        assert m["format"] == "json" and m["filename"].endswith(".json")
        doc = json.loads(m["content"])
        assert doc["conversation_id"] == conv and doc["bot_id"] == "other"
        assert doc["title"] == "Export <me>"
        assert [(x["index"], x["role"], x["content"]) for x in doc["messages"]] == [
            (0, "user", "first question"), (1, "assistant", "Answer one"),
            (2, "user", "second *question*"), (3, "assistant", "Answer two\nwith lines")]
        assert all(x["interrupted"] is False for x in doc["messages"]
                   if x["role"] == "assistant")
    finally:
        c.close()
    rest = Rest(srv, cookie=me)
    r = rest.post("/api/export/session", {"conversation_id": conv, "format": "markdown"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/markdown")
    assert r.headers["Content-Disposition"] == 'attachment; filename="Export me.md"'
    assert r.text == md
    r = rest.post("/api/export/session", {"conversation_id": conv, "format": "json"})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == doc
    # the default format is markdown
    assert rest.post("/api/export/session", {"conversation_id": conv}).text == md


def test_history_pagination_has_more(srv, fake):
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other")
        for i in range(3):
            fake.script({"reply": "a%d" % i})
            c.turn("q%d" % i, conversation_id=conv)
        m = c.request({"type": "history", "conversation_id": conv, "limit": 4, "offset": 1},
                      "history")
        assert m["total"] == 6 and m["has_more"] is True
        assert [x["content"] for x in m["messages"]] == ["a0", "q1", "a1", "q2"]
    finally:
        c.close()
    rest = Rest(srv, cookie=me)
    h = rest.get("/api/chat/history", params={"conversation_id": conv, "limit": 2,
                                              "offset": 4}).json()
    assert h["has_more"] is False and h["total"] == 6 and h["offset"] == 4
    assert [x["content"] for x in h["messages"]] == ["q2", "a2"]
    h = rest.get("/api/chat/history", params={"conversation_id": conv, "limit": 2}).json()
    assert h["has_more"] is True and [x["index"] for x in h["messages"]] == [0, 1]
    h = rest.get("/api/chat/history", params={"conversation_id": conv, "offset": 10}).json()
    assert h["messages"] == [] and h["has_more"] is False


def test_streaming_answer_is_in_history_while_it_grows(srv):
    """The UI draws a reloaded page from history: the answer being written
    is there already, role assistant, "streaming": true, growing."""
    me = new_cookie()
    gen = Conn(srv, cookie=me)
    other = Conn(srv, cookie=me)
    try:
        conv = gen.launch("other")
        gen.send_json({"type": "message", "content": "grow [[fake tokens=30 delay_ms=40]]",
                       "conversation_id": conv, "id": "g"})
        for _ in range(3):
            gen.wait("stream")
        seen = []
        for _ in range(2):
            h = other.request({"type": "history", "conversation_id": conv}, "history")
            assert h["state"] == "generating" and h["total"] == 2
            last = h["messages"][-1]
            assert last["role"] == "assistant" and last["streaming"] is True
            assert last["interrupted"] is False and last["index"] == 1
            seen.append(last["content"])
            time.sleep(0.3)
        full = " ".join("t%d" % i for i in range(30))
        assert full.startswith(seen[0]) and full.startswith(seen[1])
        assert 0 < len(seen[0]) < len(seen[1]) < len(full)
        resp, _ = gen.wait(lambda m: m.get("id") == "g" and m["type"] == "response", 10)
        assert resp["content"] == full
        last = other.request({"type": "history", "conversation_id": conv},
                             "history")["messages"][-1]
        assert last["streaming"] is False and last["content"] == full
    finally:
        gen.close()
        other.close()


def test_regenerate_after_an_error_and_after_a_lone_user_message(srv, fake):
    """regenerate re-runs the last user message whether history ends with
    an answer, an error or the user message itself."""
    me = new_cookie()
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other")
        fake.script({"status": 500})
        f = c.turn("please work", conversation_id=conv)
        assert f[-1]["type"] == "error"
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert h["messages"][-1]["error"] is True and h["messages"][-1]["code"]
        since = last_request_id(fake)
        c.send_json({"type": "regenerate", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "response" and resp["content"] == "Echo: please work"
        assert chat_requests(fake, since)[-1]["body"]["messages"][-1] == {
            "role": "user", "content": "please work"}
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert [(m["role"], m["content"]) for m in h["messages"]] == [
            ("user", "please work"), ("assistant", "Echo: please work")]
        # again, over a normal answer: replaced, not appended
        c.send_json({"type": "regenerate", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "response"
        assert c.request({"type": "history", "conversation_id": conv},
                         "history")["total"] == 2
    finally:
        c.close()
    # history ending with the user's message (stopped before any token)
    c = Conn(srv, cookie=me)
    try:
        conv = c.launch("other")
        c.send_json({"type": "message", "id": "w", "conversation_id": conv,
                     "content": "wait for me [[fake first_delay_ms=3000 tokens=2]]"})
        c.wait("ack")
        c.send_json({"type": "stop", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("id") == "w" and m["type"] in ("response", "error"))
        assert resp["interrupted"] is True and resp["content"] == ""
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert [m["role"] for m in h["messages"]] == ["user"]
        fake.script({"reply": "finally"})
        c.send_json({"type": "regenerate", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["type"] == "response" and resp["content"] == "finally"
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert [(m["role"], m["content"]) for m in h["messages"]] == [
            ("user", "wait for me [[fake first_delay_ms=3000 tokens=2]]"),
            ("assistant", "finally")]
        # nothing to regenerate in an empty conversation
        empty = c.launch("other")
        m = c.request({"type": "regenerate", "conversation_id": empty}, "response")
        assert m["type"] == "error" and m["code"] == "bad_request"
    finally:
        c.close()
