"""A tab's turn in its current conversation, when another host (or tab)
changed that conversation since the tab's last turn. On redis such a turn
is not looked up first: the turn's start script checks the owner, the
conversation's existence and its bot, and only when one of them is not
what the tab knew does the module look the conversation up as before
(chat_store_turn_start_bot, docs/storage.md). Each case runs on shm (B is
a second tab of the same server) and on redis (B is a second host) and
must give the same frames on both: a deleted conversation is forgotten
(a message without an id starts a new one; one with its id is refused as
not_found), an archived one still takes the message, the settings chosen
on B (the model) are the ones sent, and on redis a conversation whose bot
changed in the store is answered by its new bot, or refused if that bot
is unknown here."""
import os

import pytest

from histutil import Conn, chat_requests, last_request_id, new_cookie
from redisutil import DOWN_LOG, REDIS, pair

BOTS = """
ChatbotRateLimit off
<ChatbotBot coder>
    ChatbotModel "coder-model"
</ChatbotBot>
<ChatbotBot writer>
    ChatbotModel "writer-model"
</ChatbotBot>
ChatbotDefaultBot coder
ChatbotUserSettings model
"""

STORES = ["shm", pytest.param("redis", marks=pytest.mark.skipif(
    not os.path.exists(REDIS), reason="redis-server is not installed"))]


def hosts(store, httpd, request, name):
    """(A, B, redis or None): one server on shm, two hosts on one redis."""
    if store == "shm":
        a = httpd(extra=BOTS, name=name)
        return a, a, None
    redis = request.getfixturevalue("redis")
    a, b = pair(httpd, redis, extra=BOTS, name=name, allow_errors=DOWN_LOG)
    return a, b, redis


def model_sent(fake, since):
    reqs = chat_requests(fake, since)
    assert len(reqs) == 1, reqs
    return reqs[0]["body"]["model"]


def final(frames):
    f = frames[-1]
    return f["type"], f.get("code"), f.get("message"), f.get("conversation_id")


@pytest.mark.parametrize("store", STORES)
def test_deleted_on_b_between_two_turns_on_a(store, httpd, fake, request):
    a, b, _ = hosts(store, httpd, request, "cur-del")
    me = new_cookie()
    ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
    try:
        conv = ca.launch(bot="coder")
        assert final(ca.turn("one", conversation_id=conv))[0] == "response"
        m = cb.request({"type": "delete", "conversation_id": conv}, "ok")
        assert m == {"type": "ok", "op": "delete", "conversation_id": conv}, m
        # its id: not found, nothing stored, no new conversation
        fr = ca.turn("two", conversation_id=conv, id="m2")
        assert final(fr) == ("error", "not_found", "no such conversation", conv), fr
        assert fr[-1]["id"] == "m2"
        # no id: the current one is forgotten; the bot's new one takes it
        fr = ca.turn("three")
        kind, _, _, new = final(fr)
        assert kind == "response" and new and new != conv, fr
        lst = cb.request({"type": "sessions"}, "sessions")
        assert [s["conversation_id"] for s in lst["sessions"]] == [new], lst
        # and that one is current now: the next turn stays in it
        assert final(ca.turn("four"))[3] == new
        m = cb.request({"type": "history", "conversation_id": new}, "history")
        assert [x["content"] for x in m["messages"] if x["role"] == "user"] == \
            ["three", "four"], m
        # deleted again: an explicit bot that is the current one's, no id
        cb.request({"type": "delete", "conversation_id": new}, "ok")
        fr = ca.turn("five", bot_id="coder")
        assert final(fr)[0] == "response" and final(fr)[3] not in (conv, new), fr
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("store", STORES)
def test_archived_on_b_still_takes_the_message(store, httpd, request):
    a, b, _ = hosts(store, httpd, request, "cur-arch")
    me = new_cookie()
    ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
    try:
        conv = ca.launch(bot="writer")
        assert final(ca.turn("one", conversation_id=conv))[0] == "response"
        m = cb.request({"type": "archive", "conversation_id": conv}, "ok")
        assert m["op"] == "archive", m
        assert final(ca.turn("two")) == ("response", None, None, conv)
        arch = cb.request({"type": "sessions", "archived": True}, "sessions")
        assert [s["conversation_id"] for s in arch["sessions"]] == [conv], arch
    finally:
        ca.close()
        cb.close()


@pytest.mark.parametrize("store", STORES)
def test_settings_changed_on_b_are_the_next_turns(store, httpd, fake, request):
    a, b, _ = hosts(store, httpd, request, "cur-set")
    me = new_cookie()
    ca, cb = Conn(a, cookie=me), Conn(b, cookie=me)
    try:
        conv = ca.launch(bot="coder")
        since = last_request_id(fake)
        assert final(ca.turn("one", conversation_id=conv))[0] == "response"
        assert model_sent(fake, since) == "coder-model"
        m = cb.request({"type": "settings", "conversation_id": conv,
                        "model": "llama3.2:latest"}, "settings")
        assert m["type"] == "settings" and m["model"] == "llama3.2:latest", m
        since = last_request_id(fake)
        assert final(ca.turn("two"))[0] == "response"
        assert model_sent(fake, since) == "llama3.2:latest"
        cb.request({"type": "settings", "conversation_id": conv, "model": ""}, "settings")
        since = last_request_id(fake)
        assert final(ca.turn("three", conversation_id=conv))[0] == "response"
        assert model_sent(fake, since) == "coder-model"
    finally:
        ca.close()
        cb.close()


@pytest.mark.skipif(not os.path.exists(REDIS), reason="redis-server is not installed")
def test_bot_changed_in_the_store_between_two_turns(httpd, fake, request):
    """No op changes a conversation's bot today; the start script's check
    is what would notice if one did (or if the hash were edited): the tab's
    next turn is the new bot's, and a bot this host does not know refuses
    the turn as the look-up does (not_found, nothing stored)."""
    a, _, redis = hosts("redis", httpd, request, "cur-bot")
    me = new_cookie()
    ca = Conn(a, cookie=me)
    try:
        conv = ca.launch(bot="coder")
        since = last_request_id(fake)
        assert final(ca.turn("one", conversation_id=conv))[0] == "response"
        assert model_sent(fake, since) == "coder-model"
        redis.cmd("-n", "3", "HSET", "chatbot:c:" + conv, "b", "writer")
        since = last_request_id(fake)
        fr = ca.turn("two")
        assert final(fr) == ("response", None, None, conv), fr
        assert model_sent(fake, since) == "writer-model"
        redis.cmd("-n", "3", "HSET", "chatbot:c:" + conv, "b", "nosuchbot")
        since = last_request_id(fake)
        fr = ca.turn("three", conversation_id=conv)
        assert final(fr) == ("error", "not_found", "no such conversation", conv), fr
        assert chat_requests(fake, since) == []
        redis.cmd("-n", "3", "HSET", "chatbot:c:" + conv, "b", "coder")
        m = ca.request({"type": "history", "conversation_id": conv}, "history")
        assert [x["content"] for x in m["messages"] if x["role"] == "user"] == \
            ["one", "two"], m
    finally:
        ca.close()
