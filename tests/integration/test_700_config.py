"""Configuration the httpd way (issue 7): every bad directive is refused by
`apache2 -t` with a message naming the directive and the bad value; per-dir
settings merge; the command table, the config records and docs/directives.md
agree; `make install` (DESTDIR) and the shipped conf/ files work."""
import os
import re
import shutil
import subprocess

import pytest

import conftest
from conftest import APACHE, REPO, configtest
from wsclient import RawWS

CONFIG_C = os.path.join(REPO, "mod_chatbot", "mod_chatbot_config.c")
HEADER = os.path.join(REPO, "include", "mod_chatbot.h")
DIRECTIVES_MD = os.path.join(REPO, "docs", "directives.md")
MODDIR = "/usr/lib/apache2/modules"


# (id, configuration fragment, strings the error must contain: the directive,
# the bad value, and what is allowed)
BAD = [
    # quotas
    ("quota-class", "ChatbotQuota guests conversations=3",
     ["ChatbotQuota", "'guests'", "anonymous"]),
    ("quota-nothing", "ChatbotQuota anonymous", ["ChatbotQuota", "conversations=N"]),
    ("quota-key", "ChatbotQuota anonymous chats=3", ["ChatbotQuota", "'chats=3'"]),
    ("quota-convs", "ChatbotQuota anonymous conversations=-1",
     ["ChatbotQuota", "'conversations=-1'"]),
    ("quota-history", "ChatbotQuota authenticated history=lots",
     ["ChatbotQuota", "'history=lots'"]),
    ("quota-sessions", "ChatbotQuota anonymous sessions=5/fortnight",
     ["ChatbotQuota", "'sessions=5/fortnight'"]),
    ("quota-share", "ChatbotQuota anonymous share=150%", ["ChatbotQuota", "'share=150%'",
                                                          "1% to 100%"]),
    ("quota-share-auth", "ChatbotQuota authenticated share=50%",
     ["ChatbotQuota", "'share=50%'", "anonymous line"]),
    ("quota-vhost", "<VirtualHost 127.0.0.1:1>\nChatbotQuota anonymous conversations=3\n"
     "</VirtualHost>", ["ChatbotQuota", "VirtualHost"]),
    # rates
    ("rate-word", "ChatbotRateLimit ten", ["ChatbotRateLimit", "'ten'", "10/min"]),
    ("rate-unit", "ChatbotRateLimit 10/fortnight", ["ChatbotRateLimit", "'10/fortnight'"]),
    ("rate-zero-count", "ChatbotRateLimit 0/min", ["ChatbotRateLimit", "'0/min'"]),
    ("rate-burst", "ChatbotRateLimit 10/min burst=lots",
     ["ChatbotRateLimit", "burst=lots"]),
    ("rate-burst-key", "ChatbotRateLimit 10/min bust=3", ["ChatbotRateLimit", "'bust=3'",
                                                         "burst=N"]),
    # URLs
    ("url-scheme", "<ChatbotBot a>\nChatbotBackendURL ftp://127.0.0.1:11434\n</ChatbotBot>",
     ["ChatbotBackendURL", "'ftp://127.0.0.1:11434'", "http://"]),
    ("url-no-scheme", "ChatbotBackend gpu 127.0.0.1:11434",
     ["ChatbotBackend", "'127.0.0.1:11434'", "http://"]),
    ("url-garbage", "ChatbotBackend gpu not-a-url", ["ChatbotBackend", "'not-a-url'"]),
    ("url-port", "ChatbotBackend gpu http://h:99999", ["ChatbotBackend", "'http://h:99999'",
                                                       "65535"]),
    ("url-userinfo", "ChatbotBackend gpu http://u:p@h", ["ChatbotBackend", "'http://u:p@h'",
                                                         "user info"]),
    ("url-query", "ChatbotBackend gpu http://h/x?y=1", ["ChatbotBackend", "'http://h/x?y=1'",
                                                        "query"]),
    ("url-no-host", "ChatbotBackend gpu http://", ["ChatbotBackend", "'http://'"]),
    ("url-space", 'ChatbotBackend gpu "http://h /x"', ["ChatbotBackend", "'http://h /x'"]),
    ("origin-path", "ChatbotAllowedOrigins https://chat.example.org/app",
     ["ChatbotAllowedOrigins", "'https://chat.example.org/app'", "no path"]),
    ("origin-garbage", "ChatbotAllowedOrigins example.org",
     ["ChatbotAllowedOrigins", "'example.org'"]),
    # backend options
    ("backend-type", "ChatbotBackend gpu http://h type=grpc",
     ["ChatbotBackend", "'type=grpc'", "ollama", "openai"]),
    ("backend-max", "ChatbotBackend gpu http://h max=-1", ["ChatbotBackend", "'max=-1'"]),
    ("backend-max-big", "ChatbotBackend gpu http://h max=70000",
     ["ChatbotBackend", "'max=70000'", "65536"]),
    ("backend-option", "ChatbotBackend gpu http://h timeout=5",
     ["ChatbotBackend", "'timeout=5'", "type=, key=, max="]),
    ("backend-name", "ChatbotBackend 'g p u' http://h", ["ChatbotBackend", "'g p u'"]),
    ("backend-args", "ChatbotBackend gpu", ["ChatbotBackend", "name and a URL"]),
    # missing bot backend
    ("bot-backend-missing", "<ChatbotBot coder>\nChatbotBotBackend nope\n</ChatbotBot>",
     ["ChatbotBotBackend", "'nope'", "coder", "ChatbotBackend nope"]),
    ("top-backend-missing", "ChatbotBackend gpu http://h\nChatbotBotBackend gpu gone",
     ["ChatbotBotBackend", "'gone'", "declared: default, gpu"]),
    # sizes out of range
    ("history-small", "ChatbotHistorySize 1k", ["ChatbotHistorySize", "'1k'", "64k", "4G"]),
    ("history-big", "ChatbotHistorySize 5G", ["ChatbotHistorySize", "'5G'", "4G"]),
    ("history-unit", "ChatbotHistorySize 16Q", ["ChatbotHistorySize", "'16Q'"]),
    ("answer-big", "ChatbotMaxAnswerBytes 100M", ["ChatbotMaxAnswerBytes", "'100M'", "16M"]),
    ("convs-small", "ChatbotMaxConversations 2", ["ChatbotMaxConversations", "'2'"]),
    ("users-word", "ChatbotMaxUsers many", ["ChatbotMaxUsers", "'many'"]),
    ("msgs-small", "ChatbotMaxMessagesPerConversation 1",
     ["ChatbotMaxMessagesPerConversation", "'1'"]),
    ("queue-zero", "ChatbotQueueSize 0", ["ChatbotQueueSize", "'0'"]),
    ("msgbytes-small", "ChatbotMaxMessageBytes 10", ["ChatbotMaxMessageBytes", "'10'"]),
    ("msgbytes-neg", "ChatbotMaxMessageBytes -5", ["ChatbotMaxMessageBytes", "'-5'"]),
    ("fragments-zero", "ChatbotMaxFragments 0", ["ChatbotMaxFragments", "'0'"]),
    ("conns-ip", "ChatbotMaxConnectionsPerIP -1", ["ChatbotMaxConnectionsPerIP", "'-1'"]),
    ("context-messages", "ChatbotContext messages=0", ["ChatbotContext", "'messages=0'"]),
    ("context-key", "ChatbotContext words=10", ["ChatbotContext", "'words=10'",
                                                "messages=N"]),
    ("answer-vs-history", "ChatbotHistorySize 1M\nChatbotMaxAnswerBytes 600k",
     ["ChatbotMaxAnswerBytes", "614400", "half", "ChatbotHistorySize"]),
    # unknown or bad model options
    ("option-unknown", "ChatbotOption creativity 11",
     ["ChatbotOption", "'creativity'", "temperature"]),
    ("option-range", "ChatbotOption temperature 3", ["ChatbotOption", "'3'"]),
    ("option-nan", "ChatbotOption top_p nan", ["ChatbotOption", "'nan'"]),
    ("option-keepalive", "ChatbotOption keep_alive forever", ["ChatbotOption", "'forever'"]),
    ("model-space", 'ChatbotModel "two words"', ["ChatbotModel", "'two words'"]),
    # durations
    ("duration-unit", "ChatbotTokenTimeout 5x", ["ChatbotTokenTimeout", "'5x'", "30s"]),
    ("duration-small", "ChatbotConnectTimeout 1ms", ["ChatbotConnectTimeout", "'1ms'",
                                                     "100ms"]),
    ("duration-big", "ChatbotTotalTimeout 2d", ["ChatbotTotalTimeout", "'2d'"]),
    ("duration-frac", "ChatbotFirstTokenTimeout 1.5s", ["ChatbotFirstTokenTimeout",
                                                        "'1.5s'"]),
    ("duration-neg", "ChatbotPingInterval -1", ["ChatbotPingInterval", "'-1'"]),
    ("duration-idle", "ChatbotIdleTimeout soon", ["ChatbotIdleTimeout", "'soon'"]),
    ("duration-send", "ChatbotSendTimeout 0", ["ChatbotSendTimeout", "'0'"]),
    ("duration-health", "ChatbotHealthCheckInterval 10ms",
     ["ChatbotHealthCheckInterval", "'10ms'"]),
    ("breaker-cooldown", "ChatbotCircuitBreaker cooldown=fast",
     ["ChatbotCircuitBreaker", "'cooldown=fast'"]),
    ("breaker-failures", "ChatbotCircuitBreaker failures=0",
     ["ChatbotCircuitBreaker", "'failures=0'"]),
    # booleans
    ("bool-logcontent", "ChatbotLogContent maybe", ["ChatbotLogContent", "'maybe'", "On or Off"]),
    ("bool-continue", "ChatbotContinueWithoutViewer sometimes",
     ["ChatbotContinueWithoutViewer", "'sometimes'", "On or Off"]),
    ("bool-cookie", "ChatbotCookieSecure 2", ["ChatbotCookieSecure", "'2'", "On or Off"]),
    ("details-value", "ChatbotShowDetails localhost",
     ["ChatbotShowDetails", "'localhost'", "On, Off or local"]),
    # duplicate names
    ("dup-backend", "ChatbotBackend gpu http://a\nChatbotBackend gpu http://b",
     ["ChatbotBackend", "'gpu'", "already defined", "httpd.conf:"]),
    ("dup-backend-url", "ChatbotBackendURL http://a\nChatbotBackendURL http://b",
     ["ChatbotBackendURL", "'default'", "already defined"]),
    ("dup-bot", "<ChatbotBot a>\n</ChatbotBot>\n<ChatbotBot a>\n</ChatbotBot>",
     ["<ChatbotBot a>", "already defined"]),
    ("bot-name", "<ChatbotBot -x>\n</ChatbotBot>", ["ChatbotBot", "'-x'"]),
    ("bot-nested", "<ChatbotBot a>\n<ChatbotBot b>\n</ChatbotBot>\n</ChatbotBot>",
     ["<ChatbotBot>", "nested"]),
    # per-dir directives where they are not allowed
    ("perdir-in-bot", "<ChatbotBot a>\nChatbotRateLimit 5/min\n</ChatbotBot>",
     ["ChatbotRateLimit", "<ChatbotBot a>", "not per bot"]),
    ("perdir-in-limit", "<Location /x>\n<Limit POST>\nChatbotMaxMessageBytes 4k\n</Limit>\n"
                        "</Location>",
     ["ChatbotMaxMessageBytes", "<Limit POST>", "every request method"]),
    # server-scope directives in <Location>, <Directory>, <VirtualHost>, <ChatbotBot>
    ("srv-in-location", "<Location /chat>\nChatbotHistorySize 32M\n</Location>",
     ["ChatbotHistorySize", "<Location /chat>", "main server configuration"]),
    ("srv-in-directory", "<Directory /tmp>\nChatbotBackend gpu http://h\n</Directory>",
     ["ChatbotBackend", "<Directory /tmp>", "main server configuration"]),
    ("srv-in-vhost", "<VirtualHost 127.0.0.1:1>\nChatbotModel llama3\n</VirtualHost>",
     ["ChatbotModel", "<VirtualHost 127.0.0.1:1>", "shared by every virtual host"]),
    ("srv-in-vhost-size", "<VirtualHost 127.0.0.1:1>\nChatbotQueueSize 8\n</VirtualHost>",
     ["ChatbotQueueSize", "<VirtualHost 127.0.0.1:1>"]),
    ("bot-in-location", "<Location /x>\n<ChatbotBot a>\n</ChatbotBot>\n</Location>",
     ["<ChatbotBot>", "<Location /x>"]),
    ("srv-in-ifmodule-location", "<Location /x>\n<IfModule mod_alias.c>\n"
                                 "ChatbotDefaultBot a\n</IfModule>\n</Location>",
     ["ChatbotDefaultBot", "<Location /x>"]),
    ("size-in-bot", "<ChatbotBot a>\nChatbotHistorySize 32M\n</ChatbotBot>",
     ["ChatbotHistorySize", "<ChatbotBot a>", "not per bot"]),
    ("breaker-in-bot", "<ChatbotBot a>\nChatbotCircuitBreaker failures=2\n</ChatbotBot>",
     ["ChatbotCircuitBreaker", "<ChatbotBot a>", "not per bot"]),
    ("command-in-location", "<Location /x>\nChatbotCommand ls /bin/ls\n</Location>",
     ["ChatbotCommand", "<Location>"]),
    # default bot naming nothing
    ("default-bot", "<ChatbotBot coder>\n</ChatbotBot>\nChatbotDefaultBot writer",
     ["ChatbotDefaultBot", "'writer'", "declared: coder"]),
]


@pytest.mark.parametrize("extra,needles", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_configtest_refuses_bad_directive(extra, needles):
    rc, out = configtest(extra)
    assert rc != 0, "apache2 -t accepted:\n%s\n%s" % (extra, out)
    assert "Syntax OK" not in out
    for n in needles:
        assert n in out, "%r not in the message:\n%s" % (n, out)


def test_configtest_error_names_file_and_line():
    """A value error points at the line (httpd's "Syntax error on line N of
    FILE"), a cross-directive error at the definition it is about."""
    rc, out = configtest("\n\nChatbotRateLimit ten")
    assert rc != 0
    assert re.search(r"Syntax error on line \d+ of \S+httpd\.conf:\s*ChatbotRateLimit", out), out
    rc, out = configtest("<ChatbotBot coder>\nChatbotBotBackend nope\n</ChatbotBot>")
    assert rc != 0
    assert re.search(r"bot 'coder' \(\S+httpd\.conf:\d+\)", out), out


GOOD = """
ChatbotStore shm
ChatbotStoreTTL 168h
ChatbotStoreTimeout 500ms
ChatbotBackend gpu1 http://127.0.0.1:9 max=4
ChatbotBackend gpu2 http://[::1]:8080/prefix type=openai key=sk-local max=8
ChatbotHistorySize 32M
ChatbotMaxConversations 2048
ChatbotMaxUsers 8192
ChatbotMaxMessagesPerConversation 100
ChatbotMaxAnswerBytes 128k
ChatbotQueueSize 32
ChatbotQuota anonymous conversations=16 history=512k sessions=10/min share=40%
ChatbotQuota authenticated conversations=off history=8M sessions=off
ChatbotCircuitBreaker failures=3 cooldown=30s
ChatbotHealthCheckInterval 15s
ChatbotMaxConnectionsPerIP 8
ChatbotMaxWorkers 16
ChatbotMaxAnswersPerIP off
ChatbotDemoNotice "a test"
ChatbotOption keep_alive -1
<IfModule chatbot_module>
    ChatbotSystemPrompt "Be brief."
</IfModule>
<ChatbotBot coder>
    ChatbotModel "qwen2.5-coder:7b"
    ChatbotDescription "Writes code"
    ChatbotBotBackend gpu1 gpu2
    ChatbotOption temperature 0.2
    ChatbotOption num_ctx 16384
    ChatbotOption num_predict 512
    ChatbotOption top_p 0.9
    ChatbotOption top_k 40
    ChatbotOption seed 7
    ChatbotContext messages=30 tokens=8000
</ChatbotBot>
<ChatbotBot writer>
    ChatbotBackendURL http://127.0.0.1:9 type=openai
</ChatbotBot>
ChatbotDefaultBot writer
ChatbotRateLimit 20/min burst=5
ChatbotAnonymousRateLimit 60/min burst=20
ChatbotAllowedOrigins same https://intranet.example.org http://localhost:8000
<If "-R '127.0.0.0/8'">
    ChatbotShowDetails on
</If>
<Location "/chat">
    ChatbotRateLimit off
    ChatbotMaxMessageBytes 16k
    ChatbotMaxFragments 64
    ChatbotConnectTimeout 2s
    ChatbotFirstTokenTimeout 3m
    ChatbotTokenTimeout 30s
    ChatbotTotalTimeout 1h
    ChatbotPingInterval off
    ChatbotIdleTimeout 120s
    ChatbotSendTimeout 500ms
    ChatbotLogContent on
    ChatbotContinueWithoutViewer no
    ChatbotCookieSecure On
    ChatbotCookieHostPrefix off
    ChatbotAnonymousRateLimit off
    ChatbotUserSettings model system temperature
    ChatbotTemperatureRange 0.1 1.2
    ChatbotSystemPromptMax 2k
</Location>
<VirtualHost 127.0.0.1:1>
    ChatbotAllowedOrigins *
    ChatbotRateLimit 5/s
</VirtualHost>
"""


def test_configtest_accepts_every_directive_in_its_context():
    rc, out = configtest(GOOD)
    assert rc == 0, out
    assert "Syntax OK" in out


def test_good_config_mentions_every_directive():
    """GOOD above is the positive test of every directive (except
    ChatbotCommand, tested by the commands suite)."""
    names = set(command_table())
    used = set(re.findall(r"^\s*<?(Chatbot\w+)", GOOD, re.M))
    # a secret file needs a file of the right mode: test_545
    missing = names - used - {"ChatbotCommand", "ChatbotBotCommands", "ChatbotHistoryFile",
                              "ChatbotCookieSecretFile"}
    assert not missing, missing


# ---- per-dir merging at run time ---------------------------------------------------

def _turn(ws, text):
    ws.send_json({"type": "message", "content": text})
    while True:
        m = ws.recv_json(skip_types=("status", "sessions", "ack", "stream", "session"))
        if m["type"] in ("response", "error"):
            return m


def test_per_dir_settings_merge(httpd):
    """The main server sets a rate limit and a message size; a <Location>
    overrides the rate limit only and inherits the size."""
    srv = httpd(extra="ChatbotRateLimit 1/min burst=1\nChatbotMaxMessageBytes 1k\n"
                      "<Location /free>\n    SetHandler chatbot\n"
                      "    ChatbotRateLimit off\n</Location>\n")
    # /ws: inherits the server's rate limit
    ws = RawWS(srv.port, "/ws")
    try:
        assert _turn(ws, "one")["type"] == "response"
        second = _turn(ws, "two")
        assert second["type"] == "error" and second["code"] == "rate_limited", second
    finally:
        ws.close()
    # /free/ws: no rate limit, but the server's 1k message limit
    ws = RawWS(srv.port, "/free/ws")
    try:
        for i in range(3):
            assert _turn(ws, "turn %d" % i)["type"] == "response"
        ws.send(1, b'{"type":"message","content":"' + b"x" * 2000 + b'"}')
        assert ws.close_code() == 1009
    finally:
        ws.close()


# ---- the command table, the records and the docs agree ---------------------------

def command_table():
    """{directive: scope} from chatbot_cmds[] in mod_chatbot_config.c."""
    src = open(CONFIG_C).read()
    table = src[src.index("const command_rec chatbot_cmds[]"):]
    table = table[:table.index("{NULL}")]
    out = {}
    for m in re.finditer(r'AP_INIT_\w+\(\s*"(<?Chatbot\w+)"\s*,\s*\w+\s*,\s*[^,]+,\s*([\w |()]+?)\s*,',
                         table):
        out[m.group(1).lstrip("<")] = m.group(2).strip()
    assert len(out) >= 30, out
    return out


def doc_sections():
    """{directive: section text} from docs/directives.md."""
    text = open(DIRECTIVES_MD).read()
    parts = re.split(r"^### ", text, flags=re.M)[1:]
    out = {}
    for p in parts:
        title, _, body = p.partition("\n")
        name = title.strip().replace("&lt;", "").replace("&gt;", "").strip("<>`")
        body = re.split(r"^##? ", body, flags=re.M)[0]
        out[name] = body
    return out


def test_every_directive_is_documented_and_vice_versa():
    table = command_table()
    docs = doc_sections()
    undocumented = sorted(set(table) - set(docs))
    unknown = sorted(n for n in set(docs) - set(table) if n.startswith("Chatbot"))
    assert not undocumented, "directives without a section in docs/directives.md: %s" % \
        undocumented
    assert not unknown, "docs/directives.md documents directives that do not exist: %s" % \
        unknown


def _row(body, key):
    m = re.search(r"^\|\s*%s\s*\|(.*)\|\s*$" % key, body, re.M)
    return m.group(1).strip() if m else None


@pytest.mark.parametrize("name", sorted(command_table()))
def test_directive_doc_has_httpd_fields(name):
    """Description, Syntax, Default, Context rows and an example, as in
    httpd's own module docs; the Context matches the command table."""
    body = doc_sections()[name]
    for key in ("Description", "Syntax", "Default", "Context", "Module"):
        assert _row(body, key), "%s: no %s row" % (name, key)
    syntax = _row(body, "Syntax")
    assert name in syntax, (name, syntax)
    ex = re.findall(r"```apache\n(.*?)```", body, re.S)
    assert ex and any(name in e for e in ex), "%s: no example using it" % name
    context = _row(body, "Context")
    scope = command_table()[name]
    # ANYDIR: per-dir directives; SRV / RSRC_CONF: server scope (SRV also
    # lets the setters run in directory context, to refuse it with a reason)
    assert scope in ("ANYDIR", "SRV", "RSRC_CONF"), (name, scope)
    if scope == "ANYDIR":
        assert "directory" in context and "virtual host" in context, (name, context)
    else:
        assert "directory" not in context and "virtual host" not in context, (name, context)
        assert context.startswith("server config"), (name, context)


def _c_body(src, signature):
    i = src.index(signature)
    j = src.index("\n}\n", i)
    return src[i:j]


def _struct_fields(src, name):
    m = re.search(r"typedef struct(?: \w+)? \{([^{}]*)\} %s;" % name, src)
    assert m, name
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    fields = []
    for decl in body.split(";"):
        decl = decl.strip()
        if not decl:
            continue
        # "apr_int64_t a, b" / "const char *path" / "int x"
        head, *rest = decl.split(",")
        names = [head.split()[-1]] + [r.strip() for r in rest]
        fields += [n.lstrip("*") for n in names]
    return fields


def test_create_merge_cover_every_dir_field():
    """Every field of chatbot_dir_conf is merged; every field merged with
    the UNSET sentinel starts UNSET in create; every field a directive sets
    is read somewhere (else the directive would be silently ignored); and
    chatbot_limits_get fills every field of chatbot_limits_t. Python rather
    than an X-macro: the check needs no change to the shared header, and
    fails with the field's name."""
    hdr = open(HEADER).read()
    src = open(CONFIG_C).read()
    fields = _struct_fields(hdr, "chatbot_dir_conf")
    assert "max_message_bytes" in fields and "cookie_secure" in fields, fields
    create = _c_body(src, "void *chatbot_create_dir_conf(")
    merge = _c_body(src, "void *chatbot_merge_dir_conf(")
    for f in fields:
        merged_sentinel = re.search(r"\bMERGE\(%s\)" % f, merge)
        merged_by_hand = re.search(r"\bn->%s\s*=" % f, merge)
        assert merged_sentinel or merged_by_hand, "chatbot_merge_dir_conf ignores %s" % f
        if merged_sentinel:
            assert re.search(r"dc->%s\s*=\s*CHATBOT_UNSET" % f, create), \
                "chatbot_create_dir_conf does not start %s as CHATBOT_UNSET" % f
    # fields set by directive setters must be read by the module
    setters = src[src.index("/* ---- per-dir directives"):src.index("const command_rec chatbot_cmds")]
    limits_get = _c_body(src, "void chatbot_limits_get(")
    glue = ""
    for fn in os.listdir(os.path.join(REPO, "mod_chatbot")):
        if fn.endswith(".c") and fn != "mod_chatbot_config.c":
            glue += open(os.path.join(REPO, "mod_chatbot", fn)).read()
    for f in fields:
        if re.search(r"dc->%s\b" % f, setters):
            assert re.search(r"dc->%s\b" % f, limits_get) or re.search(r"->%s\b" % f, glue), \
                "%s is set by a directive but never read" % f
    # chatbot_limits_t: every field filled
    for f in _struct_fields(hdr, "chatbot_limits_t"):
        assert re.search(r"lim->%s\b" % f, limits_get), "chatbot_limits_get leaves %s unset" % f


def test_server_record_is_global():
    """Server-scope settings are one per httpd: merge returns the main
    server's record, which is only safe because every server-scope setter
    refuses <VirtualHost> (the srv-in-vhost cases above)."""
    src = open(CONFIG_C).read()
    merge = _c_body(src, "void *chatbot_merge_srv_conf(")
    assert re.search(r"return base;", merge)
    table = command_table()
    server_scope = [n for n, s in table.items() if s in ("SRV", "RSRC_CONF")]
    assert len(server_scope) >= 20
    for name in ("ChatbotBackend", "ChatbotHistorySize", "ChatbotDefaultBot"):
        assert name in server_scope


# ---- installation and the shipped configuration -----------------------------------

def _apxs(var):
    return subprocess.run(["apxs", "-q", var], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_install_into_destdir(tmp_path):
    dest = tmp_path / "stage"
    env = dict(os.environ, DESTDIR=str(dest))
    r = subprocess.run(["sh", os.path.join(REPO, "scripts", "install.sh")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    libexec = _apxs("LIBEXECDIR")
    so = dest / libexec.lstrip("/") / "mod_chatbot.so"
    assert so.is_file() and so.stat().st_size > 10000
    assert (so.stat().st_mode & 0o777) == 0o644
    with open(so, "rb") as f, open(os.path.join(REPO, "build", "mod_chatbot.so"), "rb") as g:
        assert f.read() == g.read()
    avail = dest / "etc" / "apache2" / "mods-available"
    load = (avail / "chatbot.load").read_text()
    assert re.search(r"^LoadModule chatbot_module %s/mod_chatbot\.so$" % re.escape(libexec),
                     load, re.M), load
    assert (avail / "chatbot.conf").read_text() == \
        open(os.path.join(REPO, "conf", "chatbot.conf")).read()
    doc = dest / "usr" / "share" / "doc" / "mod_chatbot"
    for f in ("directives.md", "protocol.md", "deployment.md", "operations.md"):
        assert (doc / f).is_file(), f
    for f in ("vhost-tls-h2.conf", "vhost-basic-auth.conf", "vhost-require.conf",
              "chatbot-log.conf"):
        assert (doc / "examples" / f).is_file(), f
    state = dest / "var" / "lib" / "apache2" / "chatbot"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
    # a second install keeps a locally edited chatbot.conf
    (avail / "chatbot.conf").write_text("# local edit\n")
    r = subprocess.run(["sh", os.path.join(REPO, "scripts", "install.sh")], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (avail / "chatbot.conf").read_text() == "# local edit\n"
    assert (avail / "chatbot.conf.dist").is_file()


BASE_CONF = """ServerRoot "{root}"
ServerName localhost
PidFile "{root}/httpd.pid"
DefaultRuntimeDir "{root}"
ErrorLog "{root}/error_log"
Listen 127.0.0.1:1
LoadModule mpm_event_module {moddir}/mod_mpm_event.so
LoadModule authz_core_module {moddir}/mod_authz_core.so
LoadModule authz_host_module {moddir}/mod_authz_host.so
LoadModule alias_module {moddir}/mod_alias.so
LoadModule headers_module {moddir}/mod_headers.so
"""


def test_a2enmod_chatbot_and_configtest(tmp_path):
    """Debian's a2enmod enables the installed files, and an apache2.conf
    that includes mods-enabled/ (as Debian's does) passes apache2 -t."""
    dest = tmp_path / "stage"
    subprocess.run(["sh", os.path.join(REPO, "scripts", "install.sh")],
                   env=dict(os.environ, DESTDIR=str(dest)), check=True, capture_output=True)
    confdir = dest / "etc" / "apache2"
    (confdir / "mods-enabled").mkdir()
    (confdir / "envvars").write_text("")
    state = tmp_path / "state"
    state.mkdir()
    r = subprocess.run(["a2enmod", "chatbot"], capture_output=True, text=True,
                       env=dict(os.environ, APACHE_CONFDIR=str(confdir),
                                APACHE_STATE_DIRECTORY=str(state)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Enabling module chatbot" in r.stdout
    for f in ("chatbot.load", "chatbot.conf"):
        link = confdir / "mods-enabled" / f
        assert link.is_symlink() and link.resolve() == (confdir / "mods-available" / f)
    # The staged .load names the system path; point it at the staged module.
    libexec = _apxs("LIBEXECDIR")
    load = (confdir / "mods-enabled" / "chatbot.load").read_text()
    load = load.replace(libexec, str(dest) + libexec)
    (confdir / "mods-available" / "chatbot.load").write_text(load)
    root = tmp_path / "root"
    root.mkdir()
    conf = tmp_path / "apache2.conf"
    conf.write_text(BASE_CONF.format(root=root, moddir=MODDIR) +
                    "IncludeOptional %s/mods-enabled/*.load\n"
                    "IncludeOptional %s/mods-enabled/*.conf\n" % (confdir, confdir))
    r = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stderr + r.stdout
    # and with the module's directives visible: a bad edit is caught
    with open(confdir / "mods-available" / "chatbot.conf", "a") as f:
        f.write("\n<IfModule chatbot_module>\nChatbotRateLimit ten\n</IfModule>\n")
    r = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0 and "ChatbotRateLimit: invalid value 'ten'" in r.stderr


def test_chatbot_conf_passes_configtest_without_optional_modules(tmp_path):
    """conf/chatbot.conf with only the modules it cannot do without
    (mod_headers absent: its <IfModule> parts are skipped)."""
    root = tmp_path
    conf = tmp_path / "httpd.conf"
    base = BASE_CONF.replace("LoadModule headers_module", "# LoadModule headers_module")
    conf.write_text(base.format(root=root, moddir=MODDIR) +
                    "LoadModule chatbot_module %s/build/mod_chatbot.so\n"
                    "Include %s/conf/chatbot.conf\n" % (REPO, REPO))
    r = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _stub_cert(d):
    cert, key = d / "chat.pem", d / "chat.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=chat.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


EXAMPLE_MODULES = """
LoadModule ssl_module {moddir}/mod_ssl.so
LoadModule http2_module {moddir}/mod_http2.so
LoadModule socache_shmcb_module {moddir}/mod_socache_shmcb.so
LoadModule authn_core_module {moddir}/mod_authn_core.so
LoadModule authn_file_module {moddir}/mod_authn_file.so
LoadModule auth_basic_module {moddir}/mod_auth_basic.so
LoadModule authz_user_module {moddir}/mod_authz_user.so
LoadModule ldap_module {moddir}/mod_ldap.so
LoadModule authnz_ldap_module {moddir}/mod_authnz_ldap.so
LoadModule chatbot_module {repo}/build/mod_chatbot.so
Define APACHE_LOG_DIR {root}
Include {repo}/conf/chatbot-log.conf
Listen 127.0.0.1:2 https
"""


@pytest.mark.parametrize("example", sorted(f for f in os.listdir(
    os.path.join(REPO, "conf", "examples")) if f.endswith(".conf")))
def test_example_vhost_is_valid(tmp_path, example):
    cert, key = _stub_cert(tmp_path)
    text = open(os.path.join(REPO, "conf", "examples", example)).read()
    # the examples name the usual Debian paths; point them at stub files
    text = text.replace("/etc/ssl/certs/chat.example.org.pem", str(cert))
    text = text.replace("/etc/ssl/private/chat.example.org.key", str(key))
    text = text.replace("*:443", "127.0.0.1:2")
    (tmp_path / "htpasswd").write_text("alice:$apr1$abc$def\n")
    text = text.replace("/etc/apache2/chatbot.htpasswd", str(tmp_path / "htpasswd"))
    conf = tmp_path / "httpd.conf"
    conf.write_text(BASE_CONF.format(root=tmp_path, moddir=MODDIR) +
                    EXAMPLE_MODULES.format(moddir=MODDIR, repo=REPO, root=tmp_path) + text)
    r = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Syntax OK" in r.stderr + r.stdout
    if example == "vhost-tls-h2.conf":
        assert re.search(r"^\s*H2WebSockets off", text, re.M)
        assert re.search(r"^\s*Protocols h2 http/1.1", text, re.M)


def _doc_examples():
    text = open(DIRECTIVES_MD).read()
    out = []
    for name, body in doc_sections().items():
        for i, ex in enumerate(re.findall(r"```apache\n(.*?)```", body, re.S)):
            out.append(("%s-%d" % (name, i), ex))
    return out


@pytest.mark.parametrize("example", [e[1] for e in _doc_examples()],
                         ids=[e[0] for e in _doc_examples()])
def test_directive_doc_examples_pass_configtest(tmp_path, example):
    """Every example in docs/directives.md is a valid configuration (with
    the backends and bots it refers to declared around it)."""
    pre = ""
    for be, url in (("gpu1", "http://10.0.0.5:11434"), ("gpu2", "http://10.0.0.6:11434")):
        if re.search(r"\b%s\b" % be, example) and "ChatbotBackend %s " % be not in example:
            pre += "ChatbotBackend %s %s\n" % (be, url)
    m = re.search(r"ChatbotDefaultBot (\S+)", example)
    if m and "<ChatbotBot %s>" % m.group(1) not in example:
        pre += "<ChatbotBot %s>\n</ChatbotBot>\n" % m.group(1)
    m = re.search(r"ChatbotCookieSecretFile (\S+)", example)
    if m:
        # the key file it names, relative to ServerRoot, as the docs say
        secret = tmp_path / m.group(1)
        secret.write_text("%s\n" % os.urandom(32).hex())
        secret.chmod(0o600)
    conf = tmp_path / "httpd.conf"
    conf.write_text(BASE_CONF.format(root=tmp_path, moddir=MODDIR) +
                    "LoadModule chatbot_module %s/build/mod_chatbot.so\n" % REPO + pre + example)
    r = subprocess.run([APACHE, "-t", "-f", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, example + "\n" + r.stdout + r.stderr


def test_htaccess_cannot_change_server_scope(httpd):
    """Even an AllowOverrideList naming it cannot let an .htaccess file
    declare backends (global, shared memory) at request time."""
    d = conftest.test_root("htaccess")
    try:
        with open(os.path.join(d, ".htaccess"), "w") as f:
            f.write("ChatbotBackend sneaky http://127.0.0.1:9\n")
        with open(os.path.join(d, "index.html"), "w") as f:
            f.write("hi\n")
        os.chmod(os.path.join(d, ".htaccess"), 0o644)
        os.chmod(os.path.join(d, "index.html"), 0o644)
        srv = httpd(extra='Alias /ht "%s"\n<Directory "%s">\n    Require all granted\n'
                          '    AllowOverride None\n    AllowOverrideList ChatbotBackend\n'
                          '</Directory>\n' % (d, d),
                    allow_errors=[r"\.htaccess: ChatbotBackend cannot occur within an "
                                  r"\.htaccess file"])
        import urllib.request
        import urllib.error
        try:
            urllib.request.urlopen(srv.base + "/ht/index.html", timeout=10)
            status = 200
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == 500
        assert "ChatbotBackend cannot occur within an .htaccess file" in srv.read_error_log()
    finally:
        shutil.rmtree(d, ignore_errors=True)
