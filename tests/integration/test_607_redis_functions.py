"""The store's scripts as redis functions (docs/storage.md, "Atomic,
across hosts"): on redis 7 each script is a library of its own, named as
its one function, chatbot_<the script's SHA-1>, whose helpers are made once
when it is loaded, and a call (FCALL) runs only the script's own steps. A
redis that refuses FUNCTION (before 7, or an ACL without it) gets the same
scripts with EVALSHA, and says so once in the error log. Either way turns
answer and the history is whole; functions flushed under a running host
are loaded again by the next call that misses one. The reads are declared
no-writes, so they answer while redis is over its maxmemory."""
import json
import os
import re
import subprocess
import time

import pytest

from histutil import Conn, Rest, history, new_cookie
from redisutil import DOWN_LOG, REDIS, Redis

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed")

AS_SCRIPTS = r"AH10926"


def calls(redis):
    """INFO commandstats: {command: calls}."""
    out = {}
    for ln in redis.cmd("INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([\w|]+):calls=(\d+)", ln)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def libraries(redis, *auth):
    out = subprocess.run(["redis-cli", "-p", str(redis.port), *auth, "--json",
                          "FUNCTION", "LIST"], capture_output=True, text=True,
                         timeout=10).stdout
    return json.loads(out)


def chat(s, n, cookie=None):
    """n turns in a new conversation, and its history checked."""
    c = Conn(s, cookie=cookie or new_cookie())
    try:
        conv = c.launch(title="functions")
        for i in range(n):
            fr = c.turn("q%d [[fake tokens=5]]" % i, conversation_id=conv)
            assert fr[-1]["type"] == "response", fr
        msgs = history(c, conv)["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * n, msgs
        assert all(m["content"] for m in msgs), msgs
        return conv
    finally:
        c.close()


def counted_turns(httpd, redis, url, name):
    """A server on url; a warm-up turn, then 3 turns counted:
    INFO commandstats of those, and the server."""
    s = httpd(extra="ChatbotStore %s\nChatbotRateLimit off\n" % url, name=name,
              allow_errors=DOWN_LOG)
    chat(s, 1)
    redis.cmd("CONFIG", "RESETSTAT")
    chat(s, 3)
    return calls(redis), s


def test_turns_call_functions_with_the_documented_acl(httpd, redis):
    # the ACL user docs/storage.md ("Security") tells to make
    assert "OK" in redis.cmd("ACL", "SETUSER", "chat", "on", ">s3cret", "~chatbot:*",
                             "&chatbot:ev", "&chatbot:ev:*", "+@all", "-@dangerous")
    st, s = counted_turns(httpd, redis, "redis://chat:s3cret@127.0.0.1:%d/2" % redis.port,
                          "redis-fn")
    # a turn's start and finish at least, each one call
    assert st.get("fcall", 0) >= 6, st
    assert "evalsha" not in st and "eval" not in st, st
    # loaded once per child, not per call
    assert "function|load" not in st, st
    libs = [x for x in libraries(redis) if x["library_name"].startswith("chatbot_")]
    assert libs, libraries(redis)
    for x in libs:
        assert re.fullmatch(r"chatbot_[0-9a-f]{40}", x["library_name"]), x
        assert [f["name"] for f in x["functions"]] == [x["library_name"]], x
    assert AS_SCRIPTS not in open(s.error_log).read()


def test_functions_flushed_under_a_host_are_loaded_again(httpd, redis):
    store = "ChatbotStore redis://127.0.0.1:%d/2\n" % redis.port
    s = httpd(extra=store + "ChatbotRateLimit off\n", name="redis-fnflush",
              allow_errors=DOWN_LOG)
    me = new_cookie()
    conv = chat(s, 1, me)
    assert "OK" in redis.cmd("FUNCTION", "FLUSH")
    assert libraries(redis) == []
    redis.cmd("CONFIG", "RESETSTAT")
    # a call that waits for its reply (rs_eval): the history
    h = Rest(s, cookie=me).get("/api/chat/history?conversation_id=" + conv)
    assert h.status_code == 200 and h.json()["total"] == 2, h.text
    st = calls(redis)
    assert st.get("function|load", 0) >= 1, st
    assert "evalsha" not in st, st
    # and the turns after it
    chat(s, 2, me)
    assert libraries(redis), "the functions were not loaded again"
    assert "fcall" in calls(redis)


def test_a_redis_without_functions_gets_scripts(httpd):
    # what a redis before 7 answers: FUNCTION is an unknown command
    r = Redis(args=["--rename-command", "FUNCTION", '""'])
    try:
        st, s = counted_turns(httpd, r, "redis://127.0.0.1:%d/2" % r.port, "redis-nofn")
        assert st.get("evalsha", 0) >= 6, st
        assert "fcall" not in st, st
        log = open(s.error_log).read()
        assert AS_SCRIPTS in log and "unknown command" in log, log[-2000:]
        # and scripts flushed under it are sent again with EVAL
        assert "OK" in r.cmd("SCRIPT", "FLUSH")
        chat(s, 1)
    finally:
        r.stop()


def over_maxmemory(s, redis):
    """A chat on s, then redis over its maxmemory: the conversation's
    history still reads, a new turn fails with the error frame
    store_unavailable and a change over REST with 503 store_unavailable
    (redis refusing, not a fault of the module), and nothing of the refused
    turn is stored; once redis has room again, turns go on."""
    me = new_cookie()
    conv = chat(s, 1, me)
    assert "OK" in redis.cmd("CONFIG", "SET", "maxmemory", "1")
    try:
        h = Rest(s, cookie=me).get("/api/chat/history?conversation_id=" + conv)
        assert h.status_code == 200 and h.json()["total"] == 2, h.text
        c = Conn(s, cookie=me)
        try:
            fr = c.turn("over [[fake tokens=2]]", conversation_id=conv)
            assert fr[-1]["type"] == "error", fr
            # redis refusing is the store being unavailable, not a fault
            assert fr[-1]["code"] == "store_unavailable", fr
        finally:
            c.close()
        rest = Rest(s, cookie=me)
        for path, body in (("/api/session/%s/rename" % conv, {"title": "over"}),
                           ("/api/session/create", {})):
            w = rest.post(path, body)
            assert w.status_code == 503, (path, w.status_code, w.text)
            assert w.json()["error"] == "store_unavailable", w.text
        h = rest.get("/api/chat/history?conversation_id=" + conv)
        assert h.status_code == 200 and h.json()["total"] == 2, h.text
        # redis answers, but this host cannot serve chats: health says why
        hh = rest.get("/api/health")
        assert hh.status_code == 503, hh.text
        assert hh.json()["error"] == "store_unavailable", hh.text
        assert hh.json()["store"]["reachable"] is True, hh.text
    finally:
        redis.cmd("CONFIG", "SET", "maxmemory", "0")
    # the refused turn left nothing behind: no user message without its
    # answer, no generation that makes the next turn busy, the old title
    c = Conn(s, cookie=me)
    try:
        fr = c.turn("again [[fake tokens=2]]", conversation_id=conv)
        assert fr[-1]["type"] == "response", fr
        msgs = history(c, conv)["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant"] * 2, msgs
        assert msgs[2]["content"] == "again [[fake tokens=2]]", msgs
    finally:
        c.close()
    sess = Rest(s, cookie=me).get("/api/sessions").json()["sessions"]
    assert [x["title"] for x in sess if x["conversation_id"] == conv] == ["functions"], sess


def test_reads_answer_while_redis_is_over_its_maxmemory(httpd, redis):
    """As functions: a redis over its maxmemory refuses, before it runs,
    every function that may write. The store's reads are declared
    no-writes, so they still answer there (over_maxmemory)."""
    s = httpd(extra="ChatbotStore redis://127.0.0.1:%d/2\nChatbotRateLimit off\n"
              % redis.port, name="redis-oom", allow_errors=DOWN_LOG)
    over_maxmemory(s, redis)


def test_scripts_over_maxmemory_are_refused_at_their_first_write(httpd):
    """As scripts (EVALSHA, a redis without FUNCTION): redis cannot tell a
    script that writes before it runs, so it refuses its first write
    command instead. The turn's script keeps its conversation's writes
    back and sends them at its end, after a step refused: that write is
    refused too, so the script fails with redis's OOM error and stores
    nothing, the same as a function refused (over_maxmemory)."""
    r = Redis(args=["--rename-command", "FUNCTION", '""'])
    try:
        s = httpd(extra="ChatbotStore redis://127.0.0.1:%d/2\nChatbotRateLimit off\n"
                  % r.port, name="redis-oom-eval", allow_errors=DOWN_LOG)
        over_maxmemory(s, r)
        st = calls(r)
        assert st.get("evalsha", 0) >= 4 and "fcall" not in st, st
    finally:
        r.stop()


def test_a_turn_that_fails_half_way_keeps_what_it_wrote(httpd, redis):
    """A turn's script keeps its conversation's hash writes back and sends
    them as one at its end. A command that fails half-way (here the
    anonymous identities' byte counter is made a key of the wrong type, so
    the start fails after the user's message is stored) still has them
    sent, as when each step wrote its own: the message number is counted,
    so the next message gets a text of its own (a number used again would
    append its text to the failed one's), and the generation the start
    began is ended, so the next turn is not refused as busy."""
    s = httpd(extra="ChatbotStore redis://127.0.0.1:%d/3\nChatbotRateLimit off\n"
              % redis.port, name="redis-half", allow_errors=DOWN_LOG)
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch(title="half")
        fr = c.turn("first [[fake tokens=3]]", conversation_id=conv)
        assert fr[-1]["type"] == "response", fr
        ab = redis.cmd("-n", "3", "GET", "chatbot:ab").strip()
        redis.cmd("-n", "3", "DEL", "chatbot:ab")
        redis.cmd("-n", "3", "HSET", "chatbot:ab", "x", "1")
        try:
            fr = c.turn("second [[fake tokens=3]]", conversation_id=conv)
            assert fr[-1]["type"] == "error", fr
        finally:
            redis.cmd("-n", "3", "DEL", "chatbot:ab")
            redis.cmd("-n", "3", "SET", "chatbot:ab", ab or "0")
        # the failed start's generation ends within the sub thread's round
        end = time.time() + 10
        while True:
            fr = c.turn("third [[fake tokens=3]]", conversation_id=conv)
            if fr[-1]["type"] == "response" or time.time() > end:
                break
            assert fr[-1].get("code") == "busy", fr
            time.sleep(0.2)
        assert fr[-1]["type"] == "response", fr
        msgs = history(c, conv)["messages"]
        texts = [m["content"] for m in msgs if m["role"] == "user"]
        assert texts == ["first [[fake tokens=3]]", "second [[fake tokens=3]]",
                         "third [[fake tokens=3]]"], texts
    finally:
        c.close()
