"""Search across one's own conversations (issue 19 part 4): GET /api/search
and the WebSocket op "search" -> "search_results". Titles and message text,
ASCII case folding, UTF-8 left intact, snippets around the hit, the limits
(query length, result count, hits per conversation), bad input refused
with a clear 400 / error frame, and strict isolation: another identity's
words are never found, neither by REST nor by WebSocket."""
import urllib.parse

import pytest

from histutil import Conn, Rest, module_server, new_cookie

EXTRA = """
ChatbotRateLimit off
<ChatbotBot helper>
    ChatbotModel "helper-model"
</ChatbotBot>
<ChatbotBot other>
    ChatbotModel "other-model"
</ChatbotBot>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA, "search")


def search(rest, q, **params):
    params = dict(params, q=q)
    return rest.get("/api/search?" + urllib.parse.urlencode(params))


def ws_search(conn, query, **fields):
    obj = {"type": "search", "query": query}
    obj.update(fields)
    return conn.request(obj, "search_results")


@pytest.fixture(scope="module")
def alice(srv):
    """One identity with two conversations whose words are known."""
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    a = c.launch(bot="helper", title="Holiday planning")
    frames = c.turn("Where should we go? Maybe the Zanzibar coast in June.",
                    conversation_id=a)
    assert frames[-1]["type"] == "response", frames
    b = c.launch(bot="other", title="Café notes")
    frames = c.turn("The espresso at the caf\u00e9 was great; zanzibar blend.",
                    conversation_id=b)
    assert frames[-1]["type"] == "response", frames
    c.close()
    return {"cookie": cookie, "a": a, "b": b}


def test_rest_finds_message_text_case_insensitively(srv, alice):
    r = search(Rest(srv, cookie=alice["cookie"]), "ZANZIBAR")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == "ZANZIBAR" and body["truncated"] is False
    hits = [h for h in body["results"] if h["field"] == "message" and h["role"] == "user"]
    assert {h["conversation_id"] for h in hits} == {alice["a"], alice["b"]}
    for h in hits:
        assert isinstance(h["index"], int)
        s = h["snippet"]
        assert s[h["match_offset"]:h["match_offset"] + h["match_length"]].lower() == \
            "zanzibar", h
    # the most recently updated conversation first
    assert body["results"][0]["conversation_id"] == alice["b"]
    # the hit's index opens the conversation at the right message
    conv = hits[0]["conversation_id"]
    hist = Rest(srv, cookie=alice["cookie"]).get(
        "/api/chat/history?conversation_id=" + conv).json()
    msg = hist["messages"][hits[0]["index"]]
    assert "zanzibar" in msg["content"].lower()


def test_title_hits_and_bot_filter(srv, alice):
    rest = Rest(srv, cookie=alice["cookie"])
    body = search(rest, "holiday").json()
    assert [(h["conversation_id"], h["field"], h["index"]) for h in body["results"]] == \
        [(alice["a"], "title", None)]
    body = search(rest, "zanzibar", bot_id="helper").json()
    assert {h["conversation_id"] for h in body["results"]} == {alice["a"]}
    assert all(h["bot_id"] == "helper" for h in body["results"])


def test_utf8_query_and_snippet_offsets_in_utf16_units(srv, alice):
    rest = Rest(srv, cookie=alice["cookie"])
    body = search(rest, "caf\u00e9").json()
    fields = {(h["field"], h["conversation_id"]) for h in body["results"]}
    assert ("title", alice["b"]) in fields and ("message", alice["b"]) in fields
    for h in body["results"]:
        s = h["snippet"]
        assert s[h["match_offset"]:h["match_offset"] + h["match_length"]].lower() == \
            "caf\u00e9"
    # only ASCII letters fold: É does not find é (documented)
    assert search(rest, "CAF\u00c9").json()["results"] == []


def test_websocket_op_same_results(srv, alice):
    c = Conn(srv, cookie=alice["cookie"])
    try:
        m = ws_search(c, "Zanzibar", id="s1")
        assert m["type"] == "search_results" and m["id"] == "s1", m
        rest = search(Rest(srv, cookie=alice["cookie"]), "Zanzibar").json()
        assert m["results"] == rest["results"]
        m = ws_search(c, "zanzibar", bot_id="other", limit=1)
        assert len(m["results"]) == 1 and m["results"][0]["bot_id"] == "other"
    finally:
        c.close()


def test_isolation_other_identity_finds_nothing(srv, alice):
    """Bob uses the same words; neither ever sees the other's text."""
    bob_cookie = new_cookie()
    c = Conn(srv, cookie=bob_cookie)
    try:
        conv = c.launch(bot="helper", title="Bob's Zanzibar trip")
        frames = c.turn("bob-secret-word and zanzibar", conversation_id=conv)
        assert frames[-1]["type"] == "response", frames
        m = ws_search(c, "zanzibar")
        assert m["results"] and {h["conversation_id"] for h in m["results"]} == {conv}
        assert alice["a"] not in str(m) and "Holiday" not in str(m)
    finally:
        c.close()
    rest = Rest(srv, cookie=alice["cookie"])
    body = search(rest, "bob-secret-word").json()
    assert body["results"] == []
    body = search(rest, "zanzibar").json()
    assert conv not in {h["conversation_id"] for h in body["results"]}
    assert all("bob" not in h["snippet"].lower() and "bob" not in h["title"].lower()
               for h in body["results"])
    # no identity (a GET without a cookie owns nothing)
    body = search(Rest(srv), "zanzibar").json()
    assert body["results"] == [] and body["conversations"] == 0
    # a third, fresh identity over the WebSocket
    c = Conn(srv, cookie=new_cookie())
    try:
        assert ws_search(c, "zanzibar")["results"] == []
    finally:
        c.close()


def test_limits_per_request_and_per_conversation(srv):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    try:
        convs = [c.launch(bot="helper", title="limit %d" % i) for i in range(3)]
        for conv in convs:
            for k in range(7):
                frames = c.turn("needle number %d" % k, conversation_id=conv)
                assert frames[-1]["type"] == "response", frames
    finally:
        c.close()
    rest = Rest(srv, cookie=cookie)
    body = search(rest, "needle", limit=100).json()
    per = {}
    for h in body["results"]:
        per[h["conversation_id"]] = per.get(h["conversation_id"], 0) + 1
    # 7 user messages and 7 echoed answers each, at most 5 hits per conversation
    assert per == {conv: 5 for conv in convs}, per
    body = search(rest, "needle", limit=4).json()
    assert len(body["results"]) == 4 and body["truncated"] is True
    body = search(rest, "needle").json()
    assert len(body["results"]) == 15  # default limit 20, 3 x 5


@pytest.mark.parametrize("query,why", [
    ("", "empty"), ("   ", "empty"), ("x" * 257, "256"),
])
def test_bad_queries_rest(srv, query, why):
    r = search(Rest(srv, cookie=new_cookie()), query)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_request" and why in r.json()["message"]


def test_bad_requests_rest(srv):
    rest = Rest(srv, cookie=new_cookie())
    r = rest.get("/api/search")
    assert r.status_code == 400 and "required" in r.json()["message"]
    for qs in ("q=a&q=b", "q=%ff", "q=a%00b", "q=a&limit=x", "q=a&limit=101",
               "q=a&limit=-1"):
        r = rest.get("/api/search?" + qs)
        assert r.status_code == 400, (qs, r.text)
        assert r.json()["error"] == "bad_request"
    r = rest.post("/api/search", {"q": "a"})
    assert r.status_code == 405 and "GET" in r.headers["Allow"]
    # 256 bytes of UTF-8 (128 x é) are accepted
    assert search(rest, "\u00e9" * 128).status_code == 200


def test_bad_requests_websocket(srv):
    c = Conn(srv, cookie=new_cookie())
    try:
        for obj, word in (({"type": "search"}, "query"),
                          ({"type": "search", "query": 5}, "string"),
                          ({"type": "search", "query": ""}, "empty"),
                          ({"type": "search", "query": " \t"}, "empty"),
                          ({"type": "search", "query": "y" * 300}, "256"),
                          ({"type": "search", "query": "a", "limit": 500}, "100"),
                          ({"type": "search", "query": "a", "limit": "3"}, "limit")):
            m = c.request(dict(obj, id="bad"), "search_results")
            assert m["type"] == "error" and m["code"] == "bad_request", (obj, m)
            assert word in m["message"], (obj, m)
            assert m.get("id") == "bad", m
        # the connection is still usable
        assert ws_search(c, "anything")["results"] == []
    finally:
        c.close()


def rest_history_at(rest, conv, position):
    r = rest.get("/api/chat/history?conversation_id=%s&offset=%d&limit=1" % (conv, position))
    assert r.status_code == 200, r.text
    return r.json()["messages"][0]


def test_hits_on_the_active_path_with_their_position(srv, fake):
    """In a branched conversation a hit's `position` is its place on the
    active path (history's `offset`), `index` its stored index (history's
    `index`); versions that are not shown are not found."""
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    rest = Rest(srv, cookie=cookie)
    try:
        conv = c.launch(bot="helper", title="Branches")
        fake.script({"reply": "plain answer"})
        assert c.turn("first kiwi question", conversation_id=conv)[-1]["type"] == "response"
        fake.script({"reply": "mango answer"})
        assert c.turn("second question", conversation_id=conv)[-1]["type"] == "response"
        fake.script({"reply": "papaya answer"})
        c.send_json({"type": "regenerate", "conversation_id": conv})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["content"] == "papaya answer", resp
        fake.script({"reply": "banana answer"})
        c.send_json({"type": "edit", "conversation_id": conv, "index": 0,
                     "content": "first edited kiwi question"})
        resp, _ = c.wait(lambda m: m.get("type") in ("response", "error"))
        assert resp["content"] == "banana answer", resp
        # stored: 0 kiwi, 1 plain, 2 second, 3 mango, 4 papaya, 5 edited kiwi,
        # 6 banana; shown: 5, 6
        body = search(rest, "kiwi").json()
        assert [(h["index"], h["position"]) for h in body["results"]] == [(5, 0)], body
        assert "edited" in body["results"][0]["snippet"]
        h = search(rest, "banana").json()["results"]
        assert [(x["index"], x["position"], x["role"]) for x in h] == [(6, 1, "assistant")]
        assert rest_history_at(rest, conv, h[0]["position"])["index"] == 6
        for word in ("mango", "papaya", "plain", "second"):
            assert search(rest, word).json()["results"] == [], word

        # the first branch again: its turns are found, at their positions
        c.request({"type": "select_version", "conversation_id": conv, "index": 0},
                  "history")
        h = search(rest, "papaya").json()["results"]
        assert [(x["index"], x["position"]) for x in h] == [(4, 3)], h
        assert rest_history_at(rest, conv, 3)["content"] == "papaya answer"
        assert search(rest, "mango").json()["results"] == []
        body = search(rest, "kiwi").json()
        assert [(x["index"], x["position"]) for x in body["results"]] == [(0, 0)]
        # the WebSocket op says the same
        assert ws_search(c, "papaya")["results"] == h
    finally:
        c.close()


def test_attachments_searched_without_their_envelope(srv, fake):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    rest = Rest(srv, cookie=cookie)
    try:
        conv = c.launch(bot="helper", title="Files")
        fake.script({"reply": "ok"})
        frames = c.turn("please read quokka", conversation_id=conv,
                        attachments=[{"name": "wombat.txt", "content": "a numbat line"}])
        assert frames[-1]["type"] == "response", frames
        # the envelope's words and the file's name are not message text
        for word in ("attachment", "bytes=", "wombat", "<", "13"):
            assert search(rest, word).json()["results"] == [], word
        h = search(rest, "quokka").json()["results"]
        assert len(h) == 1 and h[0]["snippet"] == "please read quokka", h
        assert "attachment" not in h[0]
        # the file's contents are: the hit says which attachment
        h = search(rest, "NUMBAT").json()["results"]
        assert len(h) == 1 and h[0]["attachment"] == "wombat.txt", h
        s = h[0]["snippet"]
        assert s == "a numbat line"
        assert s[h[0]["match_offset"]:h[0]["match_offset"] + h[0]["match_length"]] == \
            "numbat"
        assert (h[0]["index"], h[0]["position"], h[0]["role"]) == (0, 0, "user")
    finally:
        c.close()
