"""Review of the history store (issue 5, second pass): the store is never
re-checked or migrated while other processes write into it, a history file
written with other per-message limits is migrated rather than discarded, the
file is written safely (mode 0600, never through a planted link), and
exports keep their structure whatever the stored text."""
import json
import os
import re
import stat
import threading
import time

import pytest
import requests

from histutil import Conn, Rest, new_cookie, status_auto


def history(conn, conv):
    return conn.request({"type": "history", "conversation_id": conv, "limit": 1000},
                        "history")


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
                r = rest.post("/api/bot/launch", {"bot_id": "default",
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
        answer = [m for m in h["messages"] if m["role"] == "assistant"][-1]
        kept = answer["content"]
        assert kept == sent and over.startswith(kept) and 8185 <= len(kept.encode()) <= 8192
        assert answer["interrupted"] is True
    finally:
        c.close()
