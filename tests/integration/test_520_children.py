"""One store shared by every httpd child (issue 5): a conversation started
through one child continues through another, and an answer being written
by one child can be resumed from any other, mid-answer.

The servers here run 3 children of 5 worker threads; a WebSocket holds its
worker for as long as it is open. The kernel decides which child accepts a
connection, so the tests open connections and look each one up in
mod_status' worker table (pid and request line, the request tagged in its
query string) until they have the ones they need in the children they
need; the access log (pid=%P) must then agree.
"""
import threading
import time

import pytest

from histutil import (Conn, chat_requests, last_request_id, live_pid, new_cookie,
                      open_spread, streams, wait_logged, wait_ready)

FULL40 = " ".join("t%d" % i for i in range(40))
# every child at its limit: the MPM says so at level error
BUSY = (r"AH00484", r"AH10159")


@pytest.fixture
def three(httpd):
    # up to 3 followers of one answer in a child, all from one address:
    # more than the default worker budget (half of 5 threads) and address cap
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxWorkers 4\nChatbotMaxAnswersPerIP off\n",
              serverlimit=3, threads=5, name="three", allow_errors=BUSY)
    wait_ready(s, 3, 5)
    return s


def two_per_child(server, cookie):
    """Six connections of one identity, two in each child."""
    return open_spread(server, lambda tag: Conn(server, cookie=cookie, tag=tag),
                       {p: 2 for p in server.children()})


def close_all(conns):
    for c in conns:
        c.close()


def test_connections_are_spread_over_the_children(three):
    children = three.children()
    assert len(children) == 3
    conns, live = two_per_child(three, new_cookie())
    try:
        for c in conns:
            assert c.request({"type": "ping"}, "pong")["type"] == "pong"
    finally:
        close_all(conns)
    # the access log names the same children
    pids = wait_logged(three, [c.tag for c in conns])
    assert {c.tag: pids[c.tag] for c in conns} == live
    per = {}
    for c in conns:
        per.setdefault(pids[c.tag], []).append(c.tag)
    assert sorted(per) == sorted(children)
    assert sorted(len(v) for v in per.values()) == [2, 2, 2], per


def test_conversation_continues_through_other_children(three, fake):
    me = new_cookie()
    conns, _ = two_per_child(three, me)
    try:
        conv = conns[0].launch()
        fake.script({"reply": "reply 0"})
        f = conns[0].turn("message 0", conversation_id=conv)
        assert f[-1]["content"] == "reply 0"
        for i in range(1, 6):
            since = last_request_id(fake)
            fake.script({"reply": "reply %d" % i})
            f = conns[i].turn("message %d" % i, conversation_id=conv)
            assert f[0]["type"] == "ack" and f[0]["index"] == 2 * i
            assert f[-1]["type"] == "response" and f[-1]["content"] == "reply %d" % i
            # the model saw everything said through the other children
            msgs = chat_requests(fake, since)[-1]["body"]["messages"]
            assert [m["content"] for m in msgs[1:]] == [
                x for k in range(i) for x in ("message %d" % k, "reply %d" % k)] + [
                "message %d" % i]
        # and every child reads the same history
        for c in conns:
            h = c.request({"type": "history", "conversation_id": conv, "limit": 100},
                          "history")
            assert h["total"] == 12
            assert [m["content"] for m in h["messages"]][-2:] == ["message 5", "reply 5"]
    finally:
        close_all(conns)
    pids = wait_logged(three, [c.tag for c in conns])
    assert len({pids[c.tag] for c in conns}) == 3
    assert sum(1 for c in conns[1:] if pids[c.tag] != pids[conns[0].tag]) == 4


def collect_resume(conn, conv, offset, out, key):
    try:
        conn.send_json({"type": "resume", "conversation_id": conv, "offset": offset})
        final, before = conn.wait(lambda m: m.get("type") in ("response", "error"), 20)
        out[key] = (before, final)
    except Exception as e:  # noqa: BLE001 - reported by the test
        out[key] = ([], {"type": "exception", "error": repr(e)})


def readers_elsewhere(server, cookie, gen_pid):
    """Five connections of the identity: two in each child but gen_pid's,
    one more anywhere."""
    return open_spread(server, lambda tag: Conn(server, cookie=cookie, tag=tag),
                       {p: 2 for p in server.children() if p != gen_pid}, extra=1)


def test_resume_mid_answer_from_other_children(three):
    me = new_cookie()
    gen = Conn(three, cookie=me, tag="gen")
    readers = []
    try:
        gen_pid = live_pid(three, "gen")
        conv = gen.launch()
        readers, live = readers_elsewhere(three, me, gen_pid)
        gen.send_json({"type": "message", "content": "slow [[fake tokens=40 delay_ms=50]]",
                       "conversation_id": conv, "id": "g"})
        gen.wait("stream")
        out = {}
        threads = []
        # five readers join at different moments, with different offsets
        for i, (r, offset) in enumerate(zip(readers, (0, 0, 7, 0, 10 ** 6))):
            if i:
                time.sleep(0.25)
            t = threading.Thread(target=collect_resume, args=(r, conv, offset, out, r.tag))
            t.start()
            threads.append(t)
        final, gframes = gen.wait(lambda m: m.get("type") in ("response", "error"), 20)
        for t in threads:
            t.join(25)
        assert final["type"] == "response" and final["content"] == FULL40
        assert streams(gen.frames) == FULL40
        for i, r in enumerate(readers):
            before, resp = out[r.tag]
            assert resp["type"] == "response", (r.tag, resp)
            assert resp["content"] == FULL40 and resp["resumed"] is True
            assert resp["interrupted"] is False
            got = streams(before, conv)
            if i == 2:
                assert got == FULL40[7:]
            elif i == 4:
                # an offset past what exists counts from the current end: the
                # rest arrives live
                assert got and FULL40.endswith(got) and len(got) < len(FULL40)
            else:
                assert got == FULL40, (r.tag, got)
            # every stream frame is one of the answer's pieces, in order
            assert all(f["conversation_id"] == conv for f in before if f["type"] == "stream")
    finally:
        close_all([gen] + readers)
    pids = wait_logged(three, ["gen"] + [r.tag for r in readers])
    assert {r.tag: pids[r.tag] for r in readers} == live and pids["gen"] == gen_pid
    others = [r.tag for r in readers if pids[r.tag] != pids["gen"]]
    assert len(others) >= 4 and len({pids[t] for t in others}) == 2, pids


FULL60 = " ".join("t%d" % i for i in range(60))


def test_reload_mid_answer_then_resume_elsewhere(three, fake):
    """The page reloads mid-answer: the answer goes on (the default:
    ChatbotContinueWithoutViewer on), the new page gets what was produced,
    then the rest live, whichever child it lands in."""
    me = new_cookie()
    gen = Conn(three, cookie=me, tag="gen")
    gen_pid = live_pid(three, "gen")
    conv = gen.launch()
    gen.send_json({"type": "message", "content": "reload [[fake tokens=60 delay_ms=80]]",
                   "conversation_id": conv})
    for _ in range(5):
        gen.wait("stream")
    gen.close()                                   # the reload
    readers = []
    try:
        readers, live = readers_elsewhere(three, me, gen_pid)
        out = {}
        threads = []
        for r in readers:
            assert r.hello["conversation_id"] == conv   # the page finds its session
            t = threading.Thread(target=collect_resume, args=(r, conv, 0, out, r.tag))
            t.start()
            threads.append(t)
        for t in threads:
            t.join(25)
        for r in readers:
            before, resp = out[r.tag]
            assert resp["type"] == "response", resp
            assert resp["content"] == FULL60 and resp["interrupted"] is False
            assert streams(before, conv) == FULL60
            # the reader came in mid-answer: part caught up, part live
            assert len([f for f in before if f["type"] == "stream"]) > 1
        h = readers[0].request({"type": "history", "conversation_id": conv}, "history")
        assert h["messages"][-1]["content"] == FULL60
        assert h["messages"][-1]["interrupted"] is False
        assert h["messages"][-1]["streaming"] is False
    finally:
        close_all(readers)
    pids = wait_logged(three, ["gen"] + [r.tag for r in readers])
    assert {r.tag: pids[r.tag] for r in readers} == live and pids["gen"] == gen_pid
    assert sum(1 for r in readers if pids[r.tag] != gen_pid) >= 4, pids


def test_resume_before_the_first_token_and_after_the_end(three):
    me = new_cookie()
    gen = Conn(three, cookie=me)
    reader = Conn(three, cookie=me)
    try:
        conv = gen.launch()
        gen.send_json({"type": "message", "content":
                       "late [[fake tokens=5 first_delay_ms=800 delay_ms=20]]",
                       "conversation_id": conv})
        gen.wait("ack")
        reader.send_json({"type": "resume", "conversation_id": conv})
        final, before = reader.wait(lambda m: m.get("type") in ("response", "error"), 10)
        assert final["type"] == "response", final
        assert final["content"] == "t0 t1 t2 t3 t4" == streams(before)
        gen.wait("response")
        # after the end: the whole last answer, then the response
        reader.send_json({"type": "resume", "conversation_id": conv, "offset": 3})
        final, before = reader.wait(lambda m: m.get("type") in ("response", "error"), 5)
        assert final["content"] == "t0 t1 t2 t3 t4"
        assert streams(before) == "t0 t1 t2 t3 t4"[3:]
        # a conversation without an answer has nothing to resume
        empty = reader.launch()
        m = reader.request({"type": "resume", "conversation_id": empty}, "response")
        assert m["type"] == "error" and m["code"] == "not_found"
    finally:
        close_all([gen, reader])


def test_resume_of_a_failed_turn_reports_the_error(three):
    me = new_cookie()
    gen = Conn(three, cookie=me)
    reader = Conn(three, cookie=me)
    try:
        conv = gen.launch()
        gen.send_json({"type": "message", "content":
                       "fail [[fake status=503 first_delay_ms=600]]", "conversation_id": conv})
        gen.wait("ack")
        reader.send_json({"type": "resume", "conversation_id": conv})
        m, _ = reader.wait(lambda m: m.get("type") in ("response", "error"), 10)
        assert m["type"] == "error" and m["conversation_id"] == conv
        assert m["code"] == "backend_busy" and "busy" in m["message"]
        assert not m["message"].startswith("backend_busy")
        g, _ = gen.wait(lambda m: m.get("type") in ("response", "error"), 10)
        assert g["type"] == "error" and g["code"] == "backend_busy"
    finally:
        close_all([gen, reader])


def test_answer_stops_when_its_viewer_leaves_if_configured(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotContinueWithoutViewer off\n",
              name="noviewer")
    me = new_cookie()
    gen = Conn(s, cookie=me)
    conv = gen.launch()
    since = last_request_id(fake)
    gen.send_json({"type": "message", "content": "bye [[fake tokens=40 delay_ms=50]]",
                   "conversation_id": conv})
    for _ in range(3):
        gen.wait("stream")
    t_close = time.time()
    gen.close()
    req = chat_requests(fake, since)[-1]
    done = fake.wait_closed(req["id"], timeout=5)
    assert done["outcome"] == "client_closed"
    assert done["client_closed_at"] - t_close < 1.0
    c = Conn(s, cookie=me)
    try:
        c.send_json({"type": "resume", "conversation_id": conv})
        m, before = c.wait(lambda m: m.get("type") in ("response", "error"), 5)
        assert m["type"] == "response" and m["interrupted"] is True
        assert 0 < len(m["content"]) < len(FULL40)
        assert FULL40.startswith(m["content"])
        assert streams(before) == m["content"]
    finally:
        c.close()
