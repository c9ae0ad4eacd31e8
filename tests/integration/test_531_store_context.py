"""The context a turn sends the model from the store (issue 5): the last
messages within a message and token budget, per bot, with the system
prompt, failed turns left out; stateless /api/chat bounded the same way
and storing nothing."""
import os

import pytest

from histutil import Conn, Rest, history, last_request_id, new_cookie, sent, status_auto


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


@pytest.fixture(scope="module", params=["shm", "redis"])
def ctxsrv(fake, request):
    """The same tests with the store in shared memory and on redis (whose
    context read of a linear conversation is a script of its own, lua_vtail,
    that reads from the end only)."""
    from conftest import Server
    import redisutil
    extra, rd = CTX, None
    if request.param == "redis":
        if not os.path.exists(redisutil.REDIS):
            pytest.skip("redis-server is not installed")
        rd = redisutil.Redis()
        extra += "ChatbotStore redis://127.0.0.1:%d/0\n" % rd.port
    s = Server(fake.url, extra=extra, name="context-" + request.param)
    yield s
    s.stop()
    if rd:
        rd.stop()
    bad = s.bad_log_lines()
    assert not bad, "\n".join(bad)


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
