"""The shared store across graceful restarts (issue 5): history kept, an
answer cut by the restart kept and marked interrupted; and the store never
re-checked or wiped while other processes write into it (graceful restarts
while answers stream, with and without new sizes)."""
import re
import threading
import time

import pytest

from histutil import (Conn, history, last_request_id, new_cookie, sent,
                      set_directive)


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
    # two tokens out before the restart: the kept part must hold both (with
    # one, a quick restart could cut the answer before the second)
    c.wait(lambda m: m.get("type") == "stream" and "t1" in m.get("content", ""))
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
