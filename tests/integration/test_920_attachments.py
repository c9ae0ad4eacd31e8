"""Text attachments (issue 19 part 7): a `message` frame with
attachments [{name, content}] is stored with the message, given back by
history (WebSocket and REST) as attachments[], counted against
ChatbotMaxMessageBytes, and quoted in the backend request in the exact wire
format of Ollama (messages[].content of /api/chat) and OpenAI
(messages[].content of /v1/chat/completions). Binary content (NUL, invalid
UTF-8), bad names, too many files and oversized messages are refused with a
clear error and nothing is stored."""
import json

import pytest

from histutil import Conn, Rest, chat_requests, last_request_id, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
ChatbotMaxMessageBytes 4096
ChatbotBackend oa {url} type=openai
ChatbotBackend ol {url}
<ChatbotBot olbot>
    ChatbotBotBackend ol
    ChatbotModel ol-model
</ChatbotBot>
<ChatbotBot oabot>
    ChatbotBotBackend oa
    ChatbotModel oa-model
</ChatbotBot>
"""

FILE = "def greet(name):\n    return 'hello ' + name  # </attachment> inside\n"


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA.replace("{url}", fake.url), "attach")


def history(c, conv):
    return c.request({"type": "history", "conversation_id": conv, "limit": 100}, "history")


@pytest.mark.parametrize("bot,path", [("olbot", "/api/chat"), ("oabot", "/v1/chat/completions")])
def test_attachment_reaches_backend_and_history(srv, fake, bot, path):
    c = Conn(srv, cookie=new_cookie())
    try:
        since = last_request_id(fake)
        conv = c.launch(bot=bot)
        frames = c.turn("What does this do?", conversation_id=conv,
                        attachments=[{"name": "greet.py", "content": FILE},
                                     {"name": "notes \u00e9.txt", "content": "second file"}])
        assert frames[-1]["type"] == "response", frames
        reqs = [r for r in chat_requests(fake, since) if r["path"] == path]
        assert len(reqs) == 1, reqs
        body = reqs[0]["body"]
        user = [m for m in body["messages"] if m["role"] == "user"]
        assert len(user) == 1 and isinstance(user[0]["content"], str)
        sent = user[0]["content"]
        # quoted, with its name and exact size, then the question
        assert ('<attachment name="greet.py" bytes="%d">\n' % len(FILE.encode())) + FILE + \
            "\n</attachment>\n\n" in sent
        assert '<attachment name="notes \u00e9.txt" bytes="11">\nsecond file\n</attachment>' \
            in sent
        assert sent.endswith("What does this do?")
        assert sent.index("greet.py") < sent.index("notes") < sent.index("What does")

        h = history(c, conv)
        m = h["messages"][0]
        assert m["role"] == "user" and m["content"] == "What does this do?"
        assert m["attachments"] == [
            {"name": "greet.py", "bytes": len(FILE.encode()), "content": FILE},
            {"name": "notes \u00e9.txt", "bytes": 11, "content": "second file"}]
        assert "attachments" not in h["messages"][1]
    finally:
        c.close()


def test_rest_history_and_export(srv, fake):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    try:
        conv = c.launch(bot="olbot")
        # "content" may be left out when files are attached ("" is still refused)
        m = c.request({"type": "message", "conversation_id": conv, "content": "",
                       "attachments": [{"name": "only.md", "content": "x"}]}, "response")
        assert m["type"] == "error" and "content" in m["message"], m
        c.send_json({"type": "message", "conversation_id": conv,
                     "attachments": [{"name": "only.md", "content": "```\ncode\n```"}]})
        m, _ = c.wait(lambda f: f.get("type") in ("response", "error"), 30)
        assert m["type"] == "response", m
    finally:
        c.close()
    rest = Rest(srv, cookie=cookie)
    h = rest.get("/api/chat/history?conversation_id=" + conv).json()
    assert h["messages"][0]["content"] == ""
    assert h["messages"][0]["attachments"][0]["name"] == "only.md"
    r = rest.post("/api/export/session", {"conversation_id": conv, "format": "markdown"})
    assert r.status_code == 200, r.text
    md = r.text
    # fenced with a longer fence than the file's own
    assert "**Attachment: only.md** (12 bytes)\n\n````\n```\ncode\n```\n````" in md, md


def test_edit_keeps_attachments_sent_with_it(srv, fake):
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot="olbot")
        assert c.turn("first", conversation_id=conv)[-1]["type"] == "response"
        since = last_request_id(fake)
        c.send_json({"type": "edit", "conversation_id": conv, "index": 0, "content": "again",
                     "attachments": [{"name": "a.txt", "content": "alpha"}]})
        c.wait(lambda m: m.get("type") in ("response", "error"), 30)
        sent = [m for m in chat_requests(fake, since)[0]["body"]["messages"]
                if m["role"] == "user"][-1]["content"]
        assert sent.startswith('<attachment name="a.txt" bytes="5">\nalpha\n</attachment>')
        assert history(c, conv)["messages"][0]["attachments"][0]["content"] == "alpha"
    finally:
        c.close()


@pytest.mark.parametrize("att,word", [
    ([{"name": "x.bin", "content": "PNG\u0000data"}], "binary"),
    ([{"name": "x.bin", "content": "\ud800"}], None),  # a lone surrogate escape: U+FFFD, text
    ([{"name": "", "content": "a"}], "name"),
    ([{"name": "a/b.txt", "content": "a"}], "'/'"),
    ([{"name": "a\"b", "content": "a"}], "quotes"),
    ([{"name": "n" * 256, "content": "a"}], "255"),
    ([{"name": "a.txt"}], "content"),
    ([{"name": "a.txt", "content": 5}], "content"),
    (["a.txt"], "object"),
    ({"name": "a.txt", "content": "a"}, "array"),
    ([{"name": "f%d" % i, "content": "a"} for i in range(9)], "at most 8"),
])
def test_bad_attachments_refused(srv, fake, att, word):
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot="olbot")
        since = last_request_id(fake)
        c.send_json({"type": "message", "conversation_id": conv, "content": "look",
                     "attachments": att, "id": "m1"})
        m, _ = c.wait(lambda f: f.get("type") in ("response", "error"), 30)
        if word is None:
            assert m["type"] == "response", m
            return
        assert m["type"] == "error" and m["code"] == "bad_request", m
        assert word in m["message"], m
        assert m.get("id") == "m1"
        assert history(c, conv)["messages"] == []
        assert chat_requests(fake, since) == []
    finally:
        c.close()


def test_binary_raw_bytes_in_frame_closed_1007(srv):
    """Invalid UTF-8 cannot even reach the parser: RFC 6455 closes with 1007."""
    c = Conn(srv, cookie=new_cookie())
    try:
        raw = b'{"type":"message","content":"x","attachments":[{"name":"a","content":"\xff\xfe"}]}'
        c.send(1, raw)
        with pytest.raises(EOFError) as e:
            c.wait("never", 10)
        assert b"\x03\xef" in str(e.value).encode("latin-1") or "1007" in str(e.value) or \
            "\\x03\\xef" in str(e.value)
    finally:
        c.close()


def _frame(conv, content, atts):
    return json.dumps({"type": "message", "conversation_id": conv, "content": content,
                       "attachments": atts}, separators=(",", ":"))


def _stored(content, atts):
    return len(content.encode()) + sum(
        len(('<attachment name="%s" bytes="%d">\n' % (a["name"], len(a["content"].encode())))
            .encode()) + len(a["content"].encode()) + len("\n</attachment>\n\n")
        for a in atts)


def test_counted_against_max_message_bytes(srv, fake):
    """The frame fits ChatbotMaxMessageBytes (4096) but the message stored
    with its attachments would not: too_large, nothing stored or sent. (A
    frame over the limit is closed with 1009 by the WebSocket layer, as any
    oversized message.)"""
    c = Conn(srv, cookie=new_cookie())
    try:
        assert c.hello["limits"]["max_message_bytes"] == 4096
        conv = c.launch(bot="olbot")
        since = last_request_id(fake)
        atts = [{"name": "a", "content": "b" * 400} for _ in range(8)]
        fixed = len(_frame(conv, "", atts))
        content = "q" * (4090 - fixed)
        assert len(_frame(conv, content, atts)) <= 4096 < _stored(content, atts)
        c.send(1, _frame(conv, content, atts).encode())
        m, _ = c.wait(lambda f: f.get("type") in ("response", "error"), 30)
        assert m["type"] == "error" and m["code"] == "too_large", m
        assert "attachments" in m["message"] and "4096" in m["message"], m
        assert history(c, conv)["messages"] == []
        assert chat_requests(fake, since) == []
        # the same files with a shorter text fit, and are stored whole
        content = "q" * (4096 - _stored("", atts))
        assert _stored(content, atts) == 4096
        frames = c.turn(content, conversation_id=conv, attachments=atts)
        assert frames[-1]["type"] == "response", frames[-1]
        assert len(history(c, conv)["messages"][0]["attachments"]) == 8
    finally:
        c.close()
