"""ChatbotHistoryFile (issue 5): history survives a full stop and start; a
damaged or unusable file is set aside with a clear log line and the store
starts empty; a file written with other per-message limits is migrated
rather than discarded; the file is written safely (mode 0600, never
through a planted link)."""
import os
import stat

import pytest

from histutil import Conn, history, new_cookie, set_directive


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
