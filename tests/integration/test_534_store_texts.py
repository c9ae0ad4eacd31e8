"""Stored texts given back with their structure (issue 5): a Markdown export
closes the code fences a message left open, and titles are one line in
history, exports and session lists."""
import json
import re

from histutil import Conn, Rest, new_cookie


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
