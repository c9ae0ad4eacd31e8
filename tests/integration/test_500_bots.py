"""Bots (issue 5): declared with <ChatbotBot> (model, backend, system
prompt, options, description, commands) or, when none is declared, the
implicit default bot made from the top-level directives."""
import pytest

from histutil import Conn, Rest, chat_requests, last_request_id, new_cookie

BOTS = """
ChatbotRateLimit off
ChatbotBackend second %(url)s type=openai
<ChatbotBot coder>
    ChatbotModel "coder-model"
    ChatbotDescription "Writes and explains code"
    ChatbotSystemPrompt "You are a senior software engineer."
    ChatbotOption temperature 0.2
    ChatbotOption num_ctx 16384
</ChatbotBot>
<ChatbotBot writer>
    ChatbotModel "writer-model"
    ChatbotSystemPrompt "You write short prose."
    ChatbotBotBackend second
</ChatbotBot>
ChatbotDefaultBot writer
"""


@pytest.fixture
def bots_server(httpd, fake):
    return httpd(extra=BOTS % {"url": fake.url}, name="bots")


def test_declared_bots_are_listed_in_order_with_their_settings(bots_server):
    r = Rest(bots_server, cookie=new_cookie()).get("/api/bots/declared")
    assert r.status_code == 200
    body = r.json()
    assert [b["id"] for b in body["bots"]] == ["coder", "writer"]
    assert body["default"] == "writer"
    coder, writer = body["bots"]
    assert coder["model"] == "coder-model"
    assert coder["description"] == "Writes and explains code"
    assert coder["backends"] == ["default"]          # the first declared backend
    assert coder["commands"] == []                   # commands: see the 8xx tests
    assert coder["default"] is False
    assert writer["model"] == "writer-model"
    assert writer["description"] == ""
    assert writer["backends"] == ["second"]
    assert writer["default"] is True
    # the implicit bot of the top-level directives is not offered
    assert "default" not in [b["id"] for b in body["bots"]]
    # the WebSocket hello describes the same bots
    c = Conn(bots_server, cookie=new_cookie())
    try:
        assert [(b["id"], b["model"], b["default"]) for b in c.hello["bots"]] == \
            [("coder", "coder-model", False), ("writer", "writer-model", True)]
        assert c.hello["conversation_id"] is None
    finally:
        c.close()


def test_each_bot_sends_its_model_prompt_options_and_backend(bots_server, fake):
    c = Conn(bots_server, cookie=new_cookie())
    try:
        since = last_request_id(fake)
        conv = c.launch("coder")
        frames = c.turn("hi coder [[fake tokens=3]]", conversation_id=conv)
        assert frames[-1]["type"] == "response", frames
        req = chat_requests(fake, since)[-1]
        assert req["path"] == "/api/chat"
        body = req["body"]
        assert body["model"] == "coder-model"
        assert body["messages"][0] == {"role": "system",
                                       "content": "You are a senior software engineer."}
        assert body["messages"][-1]["content"].startswith("hi coder")
        assert body["options"]["temperature"] == 0.2
        assert body["options"]["num_ctx"] == 16384

        since = last_request_id(fake)
        conv2 = c.launch("writer")
        frames = c.turn("hi writer [[fake tokens=3]]", conversation_id=conv2)
        assert frames[-1]["type"] == "response", frames
        req = chat_requests(fake, since)[-1]
        assert req["path"] == "/v1/chat/completions"       # the bot's own backend
        assert req["body"]["model"] == "writer-model"
        assert req["body"]["messages"][0] == {"role": "system",
                                              "content": "You write short prose."}
        assert frames[-1]["stats"]["backend"] == "second"
    finally:
        c.close()


def test_message_without_bot_goes_to_the_default_bot(bots_server, fake):
    c = Conn(bots_server, cookie=new_cookie())
    try:
        since = last_request_id(fake)
        frames = c.turn("who answers? [[fake tokens=2]]")
        assert frames[0]["type"] == "ack" and frames[0]["bot_id"] == "writer"
        assert frames[-1]["type"] == "response"
        assert chat_requests(fake, since)[-1]["body"]["model"] == "writer-model"
    finally:
        c.close()


def test_unknown_bot_is_not_found(bots_server):
    c = Conn(bots_server, cookie=new_cookie())
    try:
        m = c.request({"type": "launch", "bot_id": "nosuchbot"}, "session")
        assert m["type"] == "error" and m["code"] == "not_found"
        m = c.request({"type": "message", "content": "x", "bot_id": "nosuchbot",
                       "id": "u1"}, "response")
        assert m["type"] == "error" and m["code"] == "not_found" and m["id"] == "u1"
    finally:
        c.close()
    rest = Rest(bots_server, cookie=new_cookie())
    r = rest.post("/api/session/create", {"bot_id": "nosuchbot"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = rest.post("/api/chat", {"message": "x", "bot_id": "nosuchbot"})
    assert r.status_code == 404


def test_implicit_default_bot_without_sections(server, fake):
    body = Rest(server, cookie=new_cookie()).get("/api/bots/declared").json()
    assert len(body["bots"]) == 1
    bot = body["bots"][0]
    assert bot["id"] == "default" and body["default"] == "default"
    assert bot["model"] == "test-model" and bot["default"] is True
    assert bot["backends"] == ["default"]
    c = Conn(server, cookie=new_cookie())
    try:
        since = last_request_id(fake)
        frames = c.turn("implicit [[fake tokens=2]]")
        assert frames[-1]["type"] == "response"
        body = chat_requests(fake, since)[-1]["body"]
        assert body["model"] == "test-model"
        assert body["messages"][0] == {"role": "system",
                                       "content": "You are a helpful assistant."}
    finally:
        c.close()
