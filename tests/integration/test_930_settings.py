"""Per-chat settings (issue 19 part 5): a conversation's model, system
prompt and temperature, within what the administrator allows
(ChatbotUserSettings, ChatbotTemperatureRange, ChatbotSystemPromptMax).
The WebSocket op "settings", hello.settings, GET/POST
/api/session/{id}/settings; the backend (the fake one, which records
requests) must receive what was chosen, in Ollama's and OpenAI's wire
formats; what is not allowed or out of range is refused with
setting_refused; another identity can neither read nor change them; they
survive a reconnect and a restart with a history file."""
import os

import pytest

from histutil import Conn, Rest, chat_requests, last_request_id, module_server, new_cookie

# the fake backend lists qwen2.5-coder:7b and llama3.2:latest
EXTRA = """
ChatbotRateLimit off
ChatbotBackend oa {url} type=openai
ChatbotBackend ol {url}
ChatbotSystemPrompt "You are the admin's bot."
<ChatbotBot olbot>
    ChatbotBotBackend ol
    ChatbotModel ol-model
</ChatbotBot>
<ChatbotBot oabot>
    ChatbotBotBackend oa
    ChatbotModel oa-model
</ChatbotBot>
ChatbotBackend gone http://127.0.0.1:9
<ChatbotBot gonebot>
    ChatbotBotBackend gone
    ChatbotModel gone-model
</ChatbotBot>
ChatbotUserSettings model system temperature
ChatbotTemperatureRange 0.1 1.5
ChatbotSystemPromptMax 64
<Location /locked>
    SetHandler chatbot
    ChatbotUserSettings none
</Location>
<Location /modelonly>
    SetHandler chatbot
    ChatbotUserSettings model
</Location>
"""


@pytest.fixture(scope="module")
def srv(fake):
    yield from module_server(fake, EXTRA.replace("{url}", fake.url), "settings")


def settings(c, conv, **fields):
    obj = {"type": "settings", "conversation_id": conv}
    obj.update(fields)
    return c.request(obj, "settings")


def sent_body(fake, since, path):
    reqs = [r for r in chat_requests(fake, since) if r["path"] == path]
    assert len(reqs) == 1, reqs
    return reqs[0]["body"]


def test_hello_says_what_is_allowed(srv):
    c = Conn(srv, cookie=new_cookie())
    try:
        s = c.hello["settings"]
        assert s["allowed"] == ["model", "system", "temperature"]
        assert s["temperature_range"] == {"min": 0.1, "max": 1.5}
        assert s["system_max"] == 64
    finally:
        c.close()


@pytest.mark.parametrize("bot,path", [("olbot", "/api/chat"),
                                      ("oabot", "/v1/chat/completions")])
def test_backend_gets_the_chosen_settings(srv, fake, bot, path):
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot=bot)
        m = settings(c, conv)
        assert m["type"] == "settings", m
        assert m["conversation_id"] == conv and m["bot_id"] == bot
        assert m["model"] is None and m["system"] is None and m["temperature"] is None
        assert m["defaults"]["model"] == bot.replace("bot", "-model")
        assert m["defaults"]["system"] is True
        # the bot's model first, then what its backend lists
        assert m["models"] == [bot.replace("bot", "-model"), "qwen2.5-coder:7b",
                               "llama3.2:latest"]
        m = settings(c, conv, model="llama3.2:latest", system="Answer in French.",
                     temperature=0.7)
        assert m["type"] == "settings", m
        assert (m["model"], m["system"], m["temperature"]) == \
            ("llama3.2:latest", "Answer in French.", 0.7)
        since = last_request_id(fake)
        frames = c.turn("Bonjour?", conversation_id=conv)
        assert frames[-1]["type"] == "response", frames
        body = sent_body(fake, since, path)
        assert body["model"] == "llama3.2:latest"
        assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
        assert [x["role"] for x in body["messages"]].count("system") == 1
        if path == "/api/chat":
            assert body["options"]["temperature"] == 0.7
            assert "temperature" not in body
        else:
            assert body["temperature"] == 0.7
            assert "options" not in body
        assert frames[-1]["stats"]["model"]

        # back to the bot's own: model "" and system "", temperature kept
        m = settings(c, conv, model="", system="")
        assert (m["model"], m["system"], m["temperature"]) == (None, None, 0.7)
        since = last_request_id(fake)
        frames = c.turn("Again", conversation_id=conv)
        assert frames[-1]["type"] == "response", frames
        body = sent_body(fake, since, path)
        assert body["model"] == bot.replace("bot", "-model")
        assert body["messages"][0] == {"role": "system", "content": "You are the admin's bot."}
        # reset: everything back
        m = settings(c, conv, reset=True)
        assert (m["model"], m["system"], m["temperature"]) == (None, None, None)
        since = last_request_id(fake)
        frames = c.turn("Once more", conversation_id=conv)
        body = sent_body(fake, since, path)
        assert "temperature" not in body and "temperature" not in body.get("options", {})
    finally:
        c.close()


def test_settings_are_per_conversation(srv, fake):
    c = Conn(srv, cookie=new_cookie())
    try:
        a = c.launch(bot="olbot")
        b = c.launch(bot="olbot")
        assert settings(c, a, temperature=1.2)["temperature"] == 1.2
        since = last_request_id(fake)
        c.turn("hi", conversation_id=b)
        body = sent_body(fake, since, "/api/chat")
        assert "temperature" not in body.get("options", {})
        assert settings(c, b)["temperature"] is None
    finally:
        c.close()


@pytest.mark.parametrize("fields,words", [
    ({"temperature": 1.6}, "between 0.1 and 1.5"),
    ({"temperature": 0.05}, "between 0.1 and 1.5"),
    ({"temperature": -1}, "between 0.1 and 1.5"),
    ({"system": "x" * 65}, "too long"),
    ({"model": "gpt-4o"}, "not offered"),
    ({"model": "nosuchmodel"}, "not offered"),
])
def test_out_of_range_or_unknown_is_refused(srv, fake, fields, words):
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot="olbot")
        assert settings(c, conv, temperature=0.5)["temperature"] == 0.5
        m = settings(c, conv, **fields)
        assert m["type"] == "error" and m["code"] == "setting_refused", m
        assert words in m["message"], m
        assert m["conversation_id"] == conv
        # nothing changed
        m = settings(c, conv)
        assert (m["model"], m["system"], m["temperature"]) == (None, None, 0.5)
    finally:
        c.close()


@pytest.mark.parametrize("fields,err", [
    ({"temperature": "hot"}, "field 'temperature' must be a number"),
    ({"model": 7}, "field 'model' must be a string"),
    ({"reset": "yes"}, "field 'reset' must be a boolean"),
])
def test_bad_field_types(srv, fields, err):
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot="olbot")
        m = settings(c, conv, **fields)
        assert m["type"] == "error" and m["code"] == "bad_request", m
        assert err in m["message"]
    finally:
        c.close()


def test_admin_limits_what_may_be_set(srv, fake):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    conv = c.launch(bot="olbot")
    assert settings(c, conv, model="qwen2.5-coder:7b", temperature=0.3,
                    system="Be brief.")["type"] == "settings"
    c.close()
    # under /locked nothing may be set, and what was set is not used
    rest = Rest(srv, cookie=cookie, base=srv.base + "/locked")
    r = rest.get("/api/session/%s/settings" % conv)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["allowed"] == []
    assert (body["model"], body["system"], body["temperature"]) == (None, None, None)
    assert body["models"] == ["ol-model"]
    r = rest.post("/api/session/%s/settings" % conv, {"temperature": 0.5})
    assert r.status_code == 400 and r.json()["error"] == "setting_refused", r.text
    assert "temperature may not be changed" in r.json()["message"]
    # a turn there uses the bot's own settings
    since = last_request_id(fake)
    r = rest.post("/api/session/%s/task" % conv, {"message": "hello"})
    assert r.status_code == 200, r.text
    body = sent_body(fake, since, "/api/chat")
    assert body["model"] == "ol-model"
    assert body["messages"][0]["content"] == "You are the admin's bot."
    assert "temperature" not in body.get("options", {})
    # under /modelonly the model is used, the rest is not
    rest = Rest(srv, cookie=cookie, base=srv.base + "/modelonly")
    r = rest.post("/api/session/%s/settings" % conv, {"system": "Be long."})
    assert r.status_code == 400 and "system prompt may not be changed" in r.json()["message"]
    since = last_request_id(fake)
    r = rest.post("/api/session/%s/task" % conv, {"message": "hello"})
    assert r.status_code == 200, r.text
    body = sent_body(fake, since, "/api/chat")
    assert body["model"] == "qwen2.5-coder:7b"
    assert body["messages"][0]["content"] == "You are the admin's bot."
    # and back where everything is allowed, all three are used again
    since = last_request_id(fake)
    r = Rest(srv, cookie=cookie).post("/api/session/%s/task" % conv, {"message": "hi"})
    assert r.status_code == 200, r.text
    body = sent_body(fake, since, "/api/chat")
    assert (body["model"], body["messages"][0]["content"], body["options"]["temperature"]) \
        == ("qwen2.5-coder:7b", "Be brief.", 0.3)


def test_isolation(srv, fake):
    alice, mallory = new_cookie(), new_cookie()
    c = Conn(srv, cookie=alice)
    try:
        conv = c.launch(bot="olbot")
        assert settings(c, conv, system="alice's secret prompt")["type"] == "settings"
    finally:
        c.close()
    m_ws = Conn(srv, cookie=mallory)
    try:
        for fields in ({}, {"temperature": 1.0}, {"reset": True}):
            m = settings(m_ws, conv, **fields)
            assert m["type"] == "error" and m["code"] == "not_found", m
            assert "secret" not in str(m)
        m = settings(m_ws, "00000007aaaaaaaaaaaaaaaa")
        assert m["type"] == "error" and m["code"] == "not_found", m
    finally:
        m_ws.close()
    rest = Rest(srv, cookie=mallory)
    r = rest.get("/api/session/%s/settings" % conv)
    assert r.status_code == 404 and "secret" not in r.text, r.text
    r = rest.post("/api/session/%s/settings" % conv, {"system": "pwned"})
    assert r.status_code == 404, r.text
    # alice's are intact
    r = Rest(srv, cookie=alice).get("/api/session/%s/settings" % conv)
    assert r.status_code == 200 and r.json()["system"] == "alice's secret prompt", r.text


def test_survive_reconnect_and_rest_agrees(srv, fake):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    conv = c.launch(bot="oabot")
    settings(c, conv, model="qwen2.5-coder:7b", temperature=1.0)
    c.close()
    c = Conn(srv, cookie=cookie)
    try:
        m = settings(c, conv)
        assert (m["model"], m["temperature"]) == ("qwen2.5-coder:7b", 1.0)
        # the history says so too
        h = c.request({"type": "history", "conversation_id": conv}, "history")
        assert h["settings"] == {"model": "qwen2.5-coder:7b", "temperature": 1.0,
                                 "system": False}, h
        r = Rest(srv, cookie=cookie).get("/api/session/%s/settings" % conv)
        assert r.status_code == 200
        assert (r.json()["model"], r.json()["temperature"]) == ("qwen2.5-coder:7b", 1.0)
        # REST changes are seen by the WebSocket
        r = Rest(srv, cookie=cookie).post("/api/session/%s/settings" % conv,
                                          {"temperature": 0.2})
        assert r.status_code == 200 and r.json()["temperature"] == 0.2, r.text
        assert settings(c, conv)["temperature"] == 0.2
        r = Rest(srv, cookie=cookie).post("/api/session/%s/settings" % conv, raw="[1]")
        assert r.status_code == 400, r.text
    finally:
        c.close()


def session_models(sessions):
    return {x["conversation_id"]: x["model"] for x in sessions}


def test_session_list_reports_the_chats_model(srv, fake):
    """Every view of a session (REST list and single session, the
    WebSocket's sessions reply and push, session frames) names the model
    its turns use: its own where this location lets users choose one, else
    the bot's."""
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    tab = Conn(srv, cookie=cookie)  # another tab: gets the pushed list
    try:
        own = c.launch(bot="olbot")
        plain = c.launch(bot="olbot")
        m = settings(c, own, model="llama3.2:latest")
        assert m["type"] == "settings" and m["model"] == "llama3.2:latest", m
        want = {own: "llama3.2:latest", plain: "ol-model"}
        # the push the change makes
        push, _ = tab.wait(lambda f: f.get("type") == "sessions" and "id" not in f and
                           session_models(f["sessions"]).get(own) == "llama3.2:latest")
        assert session_models(push["sessions"]) == want, push
        # the list asked for
        m = c.request({"type": "sessions"}, "sessions")
        assert session_models(m["sessions"]) == want, m
        # REST: the list, and one session
        rest = Rest(srv, cookie=cookie)
        r = rest.get("/api/sessions")
        assert r.status_code == 200 and session_models(r.json()["sessions"]) == want, r.text
        r = rest.post("/api/session/%s/select" % own)
        assert r.status_code == 200 and r.json()["session"]["model"] == "llama3.2:latest", \
            r.text
        # the WebSocket's session frame
        m = c.request({"type": "select", "conversation_id": own}, "session")
        assert m["type"] == "session" and m["session"]["model"] == "llama3.2:latest", m
        # the REST turn says which model answered
        r = rest.post("/api/session/%s/task" % own, {"message": "which model?"})
        assert r.status_code == 200 and r.json()["stats"]["model"] == "llama3.2:latest", \
            r.text
        # where users may not choose a model, the bot's is the one used
        r = Rest(srv, cookie=cookie, base=srv.base + "/locked").get("/api/sessions")
        assert session_models(r.json()["sessions"]) == {own: "ol-model", plain: "ol-model"}
        r = Rest(srv, cookie=cookie, base=srv.base + "/modelonly").get("/api/sessions")
        assert session_models(r.json()["sessions"]) == want
        # back to the bot's
        m = settings(c, own, model="")
        assert m["type"] == "settings" and m["model"] is None, m
        r = rest.get("/api/sessions")
        assert session_models(r.json()["sessions"]) == {own: "ol-model", plain: "ol-model"}
    finally:
        c.close()
        tab.close()


def test_method_not_allowed(srv):
    import requests
    r = requests.put(srv.base + "/api/session/x/settings", timeout=10)
    assert r.status_code == 405
    assert r.headers["Allow"] == "GET, HEAD, POST"


def test_deleted_with_the_conversation(srv):
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    try:
        conv = c.launch(bot="olbot")
        settings(c, conv, system="temporary")
        m = c.request({"type": "delete", "conversation_id": conv}, "ok")
        assert m["type"] == "ok", m
        m = settings(c, conv)
        assert m["type"] == "error" and m["code"] == "not_found", m
    finally:
        c.close()


def test_survive_restart_with_history_file(httpd, fake):
    from conftest import test_root
    hist = os.path.join(test_root("settings-hist"), "history.bin")
    extra = EXTRA.replace("{url}", fake.url) + "ChatbotHistoryFile %s\n" % hist
    s = httpd(extra)
    cookie = new_cookie()
    c = Conn(s, cookie=cookie)
    conv = c.launch(bot="olbot")
    settings(c, conv, model="llama3.2:latest", system="Kept.", temperature=0.9)
    c.close()
    s.stop()
    assert os.path.getsize(hist) > 0
    s.start()
    c = Conn(s, cookie=cookie)
    try:
        m = settings(c, conv)
        assert (m["model"], m["system"], m["temperature"]) == ("llama3.2:latest", "Kept.", 0.9)
        r = Rest(s, cookie=cookie).get("/api/sessions")
        assert session_models(r.json()["sessions"]) == {conv: "llama3.2:latest"}, r.text
        since = last_request_id(fake)
        frames = c.turn("still there?", conversation_id=conv)
        assert frames[-1]["type"] == "response", frames
        body = sent_body(fake, since, "/api/chat")
        assert body["model"] == "llama3.2:latest"
        assert body["messages"][0]["content"] == "Kept."
        assert body["options"]["temperature"] == 0.9
    finally:
        c.close()



def test_on_redis_shared_by_two_servers(redis, httpd, fake):
    """With ChatbotStore redis://, settings made on A are B's, are in the
    conversation's hash, count in its bytes and go with it."""
    store = "ChatbotStore redis://127.0.0.1:%d/3\n" % redis.port
    extra = store + EXTRA.replace("{url}", fake.url)
    a = httpd(extra=extra, name="settings-redis-a")
    b = httpd(extra=extra, name="settings-redis-b")
    me = new_cookie()
    ca = Conn(a, cookie=me)
    try:
        conv = ca.launch(bot="oabot")
        before = int(redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "by").strip() or 0)
        m = settings(ca, conv, model="llama3.2:latest", system="From A.", temperature=1.1)
        assert m["type"] == "settings", m
        blob = redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "mt")
        assert "model=llama3.2:latest" in blob and "system=From A." in blob
        after = int(redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "by").strip())
        assert after > before
        # B reads them and its turn uses them
        cb = Conn(b, cookie=me)
        try:
            m = settings(cb, conv)
            assert (m["model"], m["system"], m["temperature"]) == \
                ("llama3.2:latest", "From A.", 1.1)
            r = Rest(b, cookie=me).get("/api/sessions")
            assert session_models(r.json()["sessions"]) == {conv: "llama3.2:latest"}, r.text
            m = cb.request({"type": "sessions"}, "sessions")
            assert session_models(m["sessions"]) == {conv: "llama3.2:latest"}, m
            since = last_request_id(fake)
            fr = cb.turn("hi from B", conversation_id=conv)
            assert fr[-1]["type"] == "response", fr
            body = sent_body(fake, since, "/v1/chat/completions")
            assert (body["model"], body["messages"][0]["content"], body["temperature"]) == \
                ("llama3.2:latest", "From A.", 1.1)
            # a stranger on B: not found
            r = Rest(b, cookie=new_cookie()).get("/api/session/%s/settings" % conv)
            assert r.status_code == 404
            # reset removes the field and gives the bytes back
            full = int(redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "by").strip())
            m = settings(cb, conv, reset=True)
            assert m["model"] is None
            r = Rest(a, cookie=me).get("/api/sessions")
            assert session_models(r.json()["sessions"]) == {conv: "oa-model"}, r.text
            assert redis.cmd("-n", "3", "HEXISTS", "chatbot:c:" + conv, "mt").strip() == "0"
            by = int(redis.cmd("-n", "3", "HGET", "chatbot:c:" + conv, "by").strip())
            assert by == full - len(blob.rstrip("\n").encode())
        finally:
            cb.close()
    finally:
        ca.close()


@pytest.mark.parametrize("frag,words", [
    ("ChatbotUserSettings model colour", ["ChatbotUserSettings", "'colour'",
                                          "model system temperature"]),
    ("ChatbotUserSettings none model", ["ChatbotUserSettings", "'none'"]),
    ("ChatbotUserSettings", ["ChatbotUserSettings"]),
    ("ChatbotTemperatureRange 0 3", ["ChatbotTemperatureRange", "'3'"]),
    ("ChatbotTemperatureRange -0.5 1", ["ChatbotTemperatureRange", "'-0.5'"]),
    ("ChatbotTemperatureRange 1.5 0.5", ["ChatbotTemperatureRange", "above"]),
    ("ChatbotTemperatureRange warm 1", ["ChatbotTemperatureRange", "'warm'"]),
    ("ChatbotTemperatureRange 1", ["ChatbotTemperatureRange"]),
    ("ChatbotSystemPromptMax 0", ["ChatbotSystemPromptMax", "'0'"]),
    ("ChatbotSystemPromptMax 9000", ["ChatbotSystemPromptMax", "'9000'", "7680"]),
    ("ChatbotSystemPromptMax lots", ["ChatbotSystemPromptMax", "'lots'"]),
    ("<ChatbotBot b>\nChatbotUserSettings none\n</ChatbotBot>",
     ["ChatbotUserSettings", "not per bot"]),
])
def test_bad_values_fail_configtest(frag, words):
    from conftest import configtest
    rc, out = configtest(frag)
    assert rc != 0, out
    for w in words:
        assert w in out, (w, out)


def test_good_values_pass_configtest():
    from conftest import configtest
    rc, out = configtest("ChatbotUserSettings model SYSTEM temperature\n"
                         "ChatbotTemperatureRange 0 2\nChatbotSystemPromptMax 4K\n"
                         "<Location /x>\nChatbotUserSettings none\n"
                         "ChatbotTemperatureRange 0.5 0.5\n</Location>\n")
    assert rc == 0, out


def test_unreadable_model_list(srv):
    """A backend whose model list cannot be read offers the bot's own model
    only, and a refusal says why."""
    c = Conn(srv, cookie=new_cookie())
    try:
        conv = c.launch(bot="gonebot")
        m = settings(c, conv)
        assert m["models"] == ["gone-model"], m
        m = settings(c, conv, model="llama3.2:latest")
        assert m["type"] == "error" and m["code"] == "setting_refused", m
        assert "cannot be read now" in m["message"], m
        # the bot's own model is always allowed (stored as "the bot's")
        m = settings(c, conv, model="gone-model", temperature=0.5)
        assert (m["type"], m["model"], m["temperature"]) == ("settings", None, 0.5), m
    finally:
        c.close()


def test_one_model_list_cache(httpd, fake):
    """The lists GET /api/models shows and those a chat's model is offered
    from and checked against are one cache per child, 10 s old at most:
    what one read, the other does not ask again; an operator's /api/models
    asks now and renews it. One child, so that every call meets the same
    cache."""
    import time
    import requests
    from backends_util import last_id, requests_since
    remoteip = ("LoadModule remoteip_module /usr/lib/apache2/modules/mod_remoteip.so\n"
                "RemoteIPHeader X-Forwarded-For\nRemoteIPInternalProxy 127.0.0.1 ::1\n")
    outsider = {"X-Forwarded-For": "203.0.113.50"}
    s = httpd(remoteip + EXTRA.replace("{url}", fake.url), serverlimit=1,
              name="settings-models")

    def asked(mark):  # Ollama lists: ol's and the server's default backend's
        return len(requests_since(fake, mark, "/api/tags"))  # (oa's: health too)

    mark = last_id(fake)
    r = requests.get(s.base + "/api/models", headers=outsider, timeout=15)
    assert r.status_code == 200, r.text
    got = {b["name"]: b for b in r.json()["backends"]}
    assert "llama3.2:latest" in got["ol"]["models"]
    assert got["gone"]["error"] == "the model list is not available right now"
    per_fetch = asked(mark)
    assert per_fetch == 2
    c = Conn(s, cookie=new_cookie())
    try:
        conv = c.launch(bot="olbot")
        mark = last_id(fake)
        m = settings(c, conv)
        assert m["models"] == ["ol-model", "qwen2.5-coder:7b", "llama3.2:latest"], m
        assert settings(c, conv, model="llama3.2:latest")["model"] == "llama3.2:latest"
        m = settings(c, conv, model="nosuchmodel")
        assert m["type"] == "error" and "not offered" in m["message"], m
        # a backend that could not be read is not asked again either
        gone = c.launch(bot="gonebot")
        m = settings(c, gone, model="llama3.2:latest")
        assert "cannot be read now" in m["message"], m
        assert asked(mark) == 0
        # an operator (this machine) gets lists asked now
        mark = last_id(fake)
        r = requests.get(s.base + "/api/models", timeout=15)
        assert "onnect" in {b["name"]: b for b in r.json()["backends"]}["gone"]["error"]
        assert asked(mark) == per_fetch
        # ten seconds on, the lists are asked again
        time.sleep(10.5)
        mark = last_id(fake)
        assert "llama3.2:latest" in settings(c, conv)["models"]
        assert asked(mark) == 1
        # and what the settings just read is not asked for /api/models
        r = requests.get(s.base + "/api/models", headers=outsider, timeout=15)
        assert r.status_code == 200
        assert asked(mark) == per_fetch
    finally:
        c.close()


def test_exports_carry_the_settings_and_the_title(srv, fake):
    """The JSON export has the chat's settings, the Markdown one a line;
    the REST export's file is named after the title (as the page names
    it), else chat-<bot>-<id8>."""
    cookie = new_cookie()
    c = Conn(srv, cookie=cookie)
    rest = Rest(srv, cookie=cookie)
    try:
        conv = c.launch(bot="olbot", title='Trip: "Lisbon"/plans?')
        plain = c.launch(bot="olbot")
        assert settings(c, conv, model="llama3.2:latest", temperature=0.35,
                        system="Reply like a pirate.")["type"] == "settings"
        for k in (conv, plain):
            assert c.turn("hello", conversation_id=k)[-1]["type"] == "response"
    finally:
        c.close()

    def export(k, fmt):
        r = rest.post("/api/export/session", {"conversation_id": k, "format": fmt})
        assert r.status_code == 200, r.text
        return r

    r = export(conv, "json")
    assert r.json()["settings"] == {"model": "llama3.2:latest", "temperature": 0.35,
                                    "system": "Reply like a pirate."}
    assert r.headers["Content-Disposition"] == \
        'attachment; filename="Trip Lisbon plans.json"'
    r = export(conv, "markdown")
    assert "*Settings:* model llama3.2:latest, temperature 0.35, own system prompt " \
        "(20 bytes)  \n" in r.text, r.text
    assert r.headers["Content-Disposition"] == 'attachment; filename="Trip Lisbon plans.md"'
    # the bot's own settings: nulls, no line; untitled: the id-based name
    r = export(plain, "json")
    assert r.json()["settings"] == {"model": None, "temperature": None, "system": None}
    assert r.headers["Content-Disposition"] == \
        'attachment; filename="chat-olbot-%s.json"' % plain[16:24]
    assert "*Settings:*" not in export(plain, "md").text
    # under /locked the stored settings are not used, and not exported as used
    r = Rest(srv, cookie=cookie, base=srv.base + "/locked").post(
        "/api/export/session", {"conversation_id": conv, "format": "json"})
    assert r.json()["settings"] == {"model": None, "temperature": None, "system": None}
