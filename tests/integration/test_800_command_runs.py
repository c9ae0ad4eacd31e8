"""Commands a bot may run (issue 8): only admin-declared programs, never a
shell. Drives a real httpd through the WebSocket (`!name args`, `run`) and
POST /api/execute with fixture programs made in a temp dir:

  argv.sh    prints each argv entry as [entry], one per line
  envfd.sh   prints its cwd, environment and open file descriptors
  hang.sh    starts a background sleep, then sleeps itself (timeout kill)
  flood.sh   writes 10 MB (output cap)
  exit7.sh   exits with status 7
  bytes.sh   writes invalid UTF-8
and a data directory with a symlink pointing outside it.

Hostile arguments on a server of their own, programs whose processes leave
the command's process group and the child's starting state are in
test_805_command_processes.py; refused commands stored like runs, titles
from a first command and REST errors counted are in
test_801_command_conversations.py.
"""
import json
import os
import re
import shutil
import time
import urllib.request

import pytest

from cmdutil import (api, argv_lines, bang, cmd_fixture, cmd_server, connect, new_cookie, pid_gone,
                     wait_log, write_script, ws_send)
from conftest import configtest
from conftest import test_root as make_root

TRUNC = "\n[output truncated at 65536 bytes]"


@pytest.fixture(scope="module")
def fx():
    yield from cmd_fixture()


@pytest.fixture(scope="module")
def srv(fake, fx):
    yield from cmd_server(fake, fx, "cmds")


# ---- the chat line and the frame -----------------------------------------------------

def test_bang_runs_declared_command_with_literal_args(srv):
    m = bang(srv, "!args hello   world\t-x")
    assert m["type"] == "command_result", m
    assert m["command"] == "args"
    assert m["args"] == ["hello", "world", "-x"]
    assert m["output"] == "[hello]\n[world]\n[-x]\n"
    assert m["exit_code"] == 0
    assert m["signal"] is None
    assert m["truncated"] is False and m["timed_out"] is False
    assert isinstance(m["duration_ms"], int) and 0 <= m["duration_ms"] < 5000
    assert re.fullmatch(r"[0-9a-f]{24}", m["conversation_id"])
    assert m["bot_id"] == "tools"


@pytest.mark.parametrize("line,expect", [
    ("!args a;touch {M}", ["a;touch", "{M}"]),
    ("!args a ; touch {M}", ["a", ";", "touch", "{M}"]),
    ("!args x && touch {M}", ["x", "&&", "touch", "{M}"]),
    ("!args x || touch {M}", ["x", "||", "touch", "{M}"]),
    ("!args x | touch {M}", ["x", "|", "touch", "{M}"]),
    ("!args `touch {M}`", ["`touch", "{M}`"]),
    ("!args $(touch {M})", ["$(touch", "{M})"]),
    ("!args $(touch${IFS}{M})", ["$(touch${IFS}{M})"]),
    ("!args >{M}", [">{M}"]),
    ("!args '; touch {M}'", ["';", "touch", "{M}'"]),
    ("!args \"$(touch {M})\"", ["\"$(touch", "{M})\""]),
])
def test_shell_syntax_is_never_interpreted(srv, fx, line, expect):
    line = line.replace("{M}", fx.marker)
    expect = [e.replace("{M}", fx.marker) for e in expect]
    m = bang(srv, line)
    assert m["type"] == "command_result", m
    assert argv_lines(m["output"]) == expect
    assert m["args"] == expect
    time.sleep(0.1)
    assert not os.path.exists(fx.marker)


@pytest.mark.parametrize("line", [
    "!args x\ntouch {M}",
    "!args x\rtouch {M}",
    "!args x\u0000; touch {M}",
    "!args x \u001b[31m",
])
def test_control_characters_in_the_line_are_refused(srv, fx, line):
    m = bang(srv, line.replace("{M}", fx.marker))
    assert m["type"] == "error", m
    if "\u0000" in line:
        # the protocol parser already refuses NUL in any string field
        assert m["code"] in ("bad_request", "command_denied"), m
    else:
        assert m["code"] == "command_denied", m
        assert "control character" in m["message"]
    assert not os.path.exists(fx.marker)


def test_trailing_newline_is_fine(srv):
    m = bang(srv, "!args ok\n")
    assert m["type"] == "command_result" and m["output"] == "[ok]\n"


def test_run_message_passes_args_verbatim(srv, fx):
    args = ["a b", "c;d", "$(id)", "`id`", "*", "~", "\u00e9t\u00e9", "--opt=1"]
    m = ws_send(srv, {"type": "run", "command": "args", "args": args})
    assert m["type"] == "command_result", m
    assert argv_lines(m["output"]) == args
    assert m["args"] == args


def test_undeclared_and_disallowed_commands_are_refused(srv, fx):
    for line in ("!rm -rf /", "!sh -c id", "!touch " + fx.marker, "!../bin/sh",
                 "!/bin/sh", "!args;touch " + fx.marker):
        m = bang(srv, line)
        assert m["type"] == "error" and m["code"] == "command_denied", (line, m)
        assert "tools" in m["message"]
    m = bang(srv, "!touch x")
    assert "'touch' is not a command bot 'tools' may run" in m["message"]
    assert "allowed: args, show, list" in m["message"]
    m = bang(srv, "!args x", bot_id="plain")
    assert m["type"] == "error" and m["code"] == "command_denied"
    assert m["message"] == "bot 'plain' may not run any command"
    ws = connect(srv)
    try:
        ws.send_json({"type": "launch", "bot_id": "plain"})
        conv = ws.recv_json()["session"]["conversation_id"]
        ws.send_json({"type": "run", "command": "flood", "conversation_id": conv})
        m = ws.recv_json()
    finally:
        ws.close()
    assert m["type"] == "error" and m["code"] == "command_denied", m
    assert m["message"] == "bot 'plain' may not run any command"
    assert not os.path.exists(fx.marker)
    wait_log(srv, r"\[chatbot:notice\].*chatbot: command refused user=anon:[0-9a-f]+ "
                  r"bot=tools .*command=\"rm\" args=\[\"-rf\" \"/\"\] code=command_denied")


def test_argument_count_is_enforced(srv):
    m = bang(srv, "!exit7 extra")
    assert m["type"] == "error" and m["code"] == "command_denied"
    assert m["message"] == "'exit7' takes no arguments"
    m = ws_send(srv, {"type": "run", "command": "args", "args": ["x"] * 17})
    assert m["code"] == "command_denied"
    assert m["message"] == "'args' takes at most 16 arguments"


# ---- paths ------------------------------------------------------------------------------

def test_paths_inside_cwd_work(srv, fx):
    m = bang(srv, "!show a.txt sub/b.txt inside/b.txt ./sub/../a.txt")
    assert m["type"] == "command_result", m
    assert m["output"] == "hello from a\nhello from b\nhello from b\nhello from a\n"
    assert m["exit_code"] == 0
    m = bang(srv, "!show " + os.path.join(fx.data, "a.txt"))
    assert m["output"] == "hello from a\n"
    # ".." after a symlink is resolved the kernel's way: escape/.. is the
    # parent of the link's target, and that leads back into data/ here
    m = bang(srv, "!show escape/../data/a.txt")
    assert m["type"] == "command_result", m
    assert m["output"] == "hello from a\n"
    # a file that does not exist (yet) is allowed; cat reports it
    m = bang(srv, "!show missing.txt")
    assert m["type"] == "command_result" and m["exit_code"] == 1
    assert "missing.txt" in m["output"]


@pytest.mark.parametrize("arg,why", [
    ("../outside/secret.txt", "'..' leads outside"),
    ("sub/../../outside/secret.txt", "'..' leads outside"),
    ("/etc/passwd", "absolute path outside"),
    ("{OUT}/secret.txt", "absolute path outside"),
    ("escape/secret.txt", "through a symbolic link"),
    ("escape", "through a symbolic link"),
    ("escape/../outside/secret.txt", "through a symbolic link"),
    ("dangling", "symbolic link that leads nowhere"),
    ("..\u2215outside\u2215secret.txt", "looks like path syntax"),
    ("\uff0e\uff0e\uff0foutside\uff0fsecret.txt", "looks like path syntax"),
    ("\u2024\u2024/outside/secret.txt", "looks like path syntax"),
    ("-n", "starts with '-'"),
    ("--output=/etc/x", "starts with '-'"),
    ("a.txt\u202e", "formatting"),
])
def test_paths_that_escape_are_refused(srv, fx, arg, why):
    arg = arg.replace("{OUT}", fx.outside)
    m = ws_send(srv, {"type": "run", "command": "show", "args": ["a.txt", arg]})
    assert m["type"] == "error" and m["code"] == "command_denied", m
    assert m["message"].startswith("argument 2 refused: "), m
    assert why in m["message"]
    assert "SECRET" not in json.dumps(m)


def test_listed_options_cannot_carry_paths(srv):
    m = bang(srv, "!list -a sub")
    assert m["type"] == "command_result" and m["output"].split() == [".", "..", "b.txt"]
    for opt in ("--hide=/etc", "-I../x", "--color=/x"):
        m = bang(srv, "!list " + opt)
        assert m["code"] == "command_denied", (opt, m)
        assert "an option's value may not carry a path" in m["message"]


# ---- the child's world ------------------------------------------------------------------

def test_child_environment_cwd_and_fds(srv, fx):
    m = bang(srv, "!envfd")
    assert m["type"] == "command_result", m
    lines = m["output"].splitlines()
    assert lines[0] == fx.data
    env = [l for l in lines if re.match(r"^[A-Z_]+=", l)]
    assert sorted(e.split("=")[0] for e in env) == ["LANG", "PATH", "PWD"], env
    assert "PATH=/usr/bin:/bin" in env and "LANG=C.UTF-8" in env
    fds = {}
    for l in lines:
        mm = re.search(r" (\d+) -> (.*)$", l)
        if mm:
            fds[int(mm.group(1))] = mm.group(2)
    assert fds[0] == "/dev/null"
    assert fds[1].startswith("pipe:") and fds[1] == fds[2]
    # nothing of httpd leaks: no listening or client socket, no log file
    assert not any("socket:" in v for v in fds.values()), fds
    assert not any("log" in v for v in fds.values()), fds
    # dash itself opens the script and a copy of stdin (on 10, 11)
    script = os.path.join(fx.bin, "envfd.sh")
    assert all(v in ("/dev/null", script) for fd, v in fds.items() if fd > 2), fds


def test_exit_code_is_reported(srv):
    m = bang(srv, "!exit7")
    assert m["exit_code"] == 7 and m["signal"] is None and m["output"] == "bye\n"


def test_invalid_utf8_output_is_sanitised(srv):
    ws = connect(srv)
    try:
        ws.send_json({"type": "message", "content": "!bytes"})
        while True:
            fin, op, payload, _ = ws.recv_frame()
            if op == 1:
                msg = json.loads(payload.decode("utf-8"))  # strict: valid UTF-8
                if msg["type"] == "command_result":
                    break
    finally:
        ws.close()
    assert msg["output"] == "ok \ufffd\ufffd end"


def test_timeout_kills_the_whole_group(srv, fx):
    for f in ("child.pid", "parent.pid"):
        try:
            os.unlink(os.path.join(fx.state, f))
        except FileNotFoundError:
            pass
    t0 = time.time()
    m = bang(srv, "!hang")
    took = time.time() - t0
    assert m["type"] == "command_result", m
    assert m["timed_out"] is True
    assert m["signal"] == 9 and m["exit_code"] is None
    assert m["output"] == "started\n"
    assert 1000 <= m["duration_ms"] < 4000
    assert took < 6
    child = int(open(os.path.join(fx.state, "child.pid")).read())
    parent = int(open(os.path.join(fx.state, "parent.pid")).read())
    end = time.time() + 3
    while time.time() < end and not (pid_gone(child) and pid_gone(parent)):
        time.sleep(0.05)
    assert pid_gone(parent), "the command survived its timeout"
    assert pid_gone(child), "the command's child survived the timeout"
    line = wait_log(srv, r"chatbot: command user=\S+ bot=tools conversation=\S+ command=hang")
    assert "timed_out=1" in line and "signal=9" in line


def test_output_is_capped_with_marker(srv):
    t0 = time.time()
    m = bang(srv, "!flood")
    assert m["type"] == "command_result", m
    assert m["truncated"] is True
    assert m["output"].endswith(TRUNC)
    body = m["output"][:-len(TRUNC)]
    assert len(body) == 65536 and set(body) == {"y"}
    assert time.time() - t0 < 5  # stopped at the cap, not at the timeout
    line = wait_log(srv, r"command=flood .*truncated=1")
    assert "timed_out=0" in line


def test_stop_from_another_connection_kills_the_command(srv, fx):
    a = connect(srv, timeout=20)
    b = connect(srv, timeout=20)  # another tab of the same identity
    try:
        a.send_json({"type": "launch", "bot_id": "tools"})
        conv = a.recv_json()["session"]["conversation_id"]
        a.send_json({"type": "message", "content": "!slow", "conversation_id": conv})
        time.sleep(1.0)
        b.send_json({"type": "stop", "conversation_id": conv})
        t0 = time.time()
        m = a.recv_json(skip_types=("status", "sessions", "ack"))
        assert time.time() - t0 < 3
        assert m["type"] == "command_result", m
        assert m.get("stopped") is True and m["signal"] == 9 and m["timed_out"] is False
    finally:
        a.close()
        b.close()


# ---- history and context ------------------------------------------------------------------

def test_request_and_result_are_stored_in_history(srv):
    ws = connect(srv)
    try:
        ws.send_json({"type": "launch", "bot_id": "tools"})
        conv = ws.recv_json()["session"]["conversation_id"]
        ws.send_json({"type": "message", "content": "!args one two", "conversation_id": conv})
        res = ws.recv_json(skip_types=("status", "sessions", "ack"))
        assert res["type"] == "command_result" and res["conversation_id"] == conv
        ws.send_json({"type": "message", "content": "!nope", "conversation_id": conv})
        assert ws.recv_json()["code"] == "command_denied"
        ws.send_json({"type": "history", "conversation_id": conv})
        h = ws.recv_json()
    finally:
        ws.close()
    msgs = h["messages"]
    assert len(msgs) == 4, msgs  # the refusal is stored too (below: "refusals are stored")
    assert msgs[0]["role"] == "user" and msgs[0]["content"] == "!args one two"
    assert msgs[0]["command"] is True
    assert msgs[1]["role"] == "assistant" and msgs[1]["command"] is True
    assert msgs[1]["content"].startswith("```\n[one]\n[two]\n```\nexit code 0, ")
    assert res["index"] == 1
    assert msgs[2]["content"] == "!nope" and msgs[2]["refused"] is True
    assert msgs[3]["code"] == "command_denied" and msgs[3]["refused"] is True


def test_command_results_are_part_of_the_model_context(srv, fake):
    ws = connect(srv, timeout=20)
    try:
        ws.send_json({"type": "launch", "bot_id": "tools"})
        conv = ws.recv_json()["session"]["conversation_id"]
        ws.send_json({"type": "message", "content": "!args ctx-probe", "conversation_id": conv})
        assert ws.recv_json(skip_types=("status", "sessions", "ack"))["type"] == \
            "command_result"
        ws.send_json({"type": "message", "content": "what did it print?",
                      "conversation_id": conv})
        while ws.recv_json(skip_types=("status", "sessions", "ack", "stream"))["type"] \
                not in ("response", "error"):
            pass
    finally:
        ws.close()
    body = [r for r in fake.requests() if r["path"] == "/api/chat"][-1]["body"]
    roles = [(m["role"], m["content"]) for m in body["messages"]]
    assert ("user", "!args ctx-probe") in roles
    assert any(r == "assistant" and "[ctx-probe]" in c for r, c in roles)
    assert roles[-1] == ("user", "what did it print?")


# ---- REST -----------------------------------------------------------------------------------

def test_api_execute(srv, fx):
    st, b = api(srv, {"command": "args", "args": ["x y", "$(touch %s)" % fx.marker]})
    assert st == 200, b
    assert b["type"] == "command_result" and b["exit_code"] == 0
    assert argv_lines(b["output"]) == ["x y", "$(touch %s)" % fx.marker]
    assert not os.path.exists(fx.marker)
    # old clients: a command line without "args" is split like a chat line
    st, b = api(srv, {"command": "args a;id b"})
    assert st == 200 and argv_lines(b["output"]) == ["a;id", "b"]
    st, b = api(srv, {"command": "exit7", "bot_id": "tools"})
    assert st == 200 and b["exit_code"] == 7


@pytest.mark.parametrize("body,status,code,msg", [
    ({"command": "rm", "args": ["-rf", "/"]}, 403, "command_denied", "'rm' is not a command"),
    ({"command": "args", "args": ["a\u0000b"]}, 403, "command_denied", "control character"),
    ({"command": "args", "args": ["a\nb"]}, 403, "command_denied", "control character"),
    ({"command": "show", "args": ["../outside/secret.txt"]}, 403, "command_denied", "'..'"),
    ({"command": "args\u0000x"}, 403, "command_denied", "NUL"),
    ({"command": "args", "bot_id": "plain"}, 403, "command_denied", "may not run any"),
    ({"command": "args", "bot_id": "nosuchbot"}, 404, "not_found", "unknown bot"),
    ({"command": "args", "conversation_id": "000000000000000000000000"}, 404, "not_found",
     "no such conversation"),
    ({"command": "args", "args": "x"}, 400, "bad_request", "array of strings"),
    ({"command": "args", "args": [1]}, 400, "bad_request", "array of strings"),
    ({"command": 5}, 400, "bad_request", "\"command\""),
    ({}, 400, "bad_request", "\"command\""),
])
def test_api_execute_refusals(srv, body, status, code, msg):
    st, b = api(srv, body)
    assert st == status, b
    assert b["error"] == code and msg in b["message"], b


def test_api_shares_identity_and_rate_limit(httpd, fx):
    # per identity (two identities of one address: not its shared budget)
    s = httpd(extra=fx.conf(rate="ChatbotRateLimit 2/min\nChatbotAnonymousRateLimit off"))
    me, other = new_cookie(), new_cookie()
    assert api(s, {"command": "exit7"}, cookie=me)[0] == 200
    assert bang(s, "!exit7", cookie=me)["type"] == "command_result"
    st, b = api(s, {"command": "exit7"}, cookie=me)
    assert st == 429 and b["error"] == "rate_limited"
    m = bang(s, "!exit7", cookie=me)
    assert m["type"] == "error" and m["code"] == "rate_limited"
    # another identity has its own budget
    assert api(s, {"command": "exit7"}, cookie=other)[0] == 200


def test_program_removed_after_start_gives_command_failed(httpd):
    root = make_root("cmdgone")
    try:
        prog = os.path.join(root, "gone.sh")
        write_script(prog, "echo never\n")
        s = httpd(extra="ChatbotRateLimit off\nChatbotCommand gone %s\n"
                        "ChatbotBotCommands gone\n" % prog)
        os.unlink(prog)
        ws = connect(s)
        try:
            ws.send_json({"type": "message", "content": "!gone"})
            m = ws.recv_json(skip_types=("status", "sessions", "ack"))
            assert m["type"] == "error" and m["code"] == "command_failed", m
            assert m["message"] == ("command 'gone' could not be started: No such file or "
                                    "directory")
            ws.send_json({"type": "history", "conversation_id": m["conversation_id"]})
            h = ws.recv_json()
        finally:
            ws.close()
        msgs = h["messages"]
        assert [x["role"] for x in msgs] == ["user", "assistant"]
        assert msgs[0]["content"] == "!gone" and msgs[0]["command"] is True
        assert msgs[1]["error"] is True and msgs[1]["command"] is True
        assert "could not be started" in msgs[1]["content"]
        line = wait_log(s, r"\[chatbot:warn\].*chatbot: command failed user=\S+ bot=default "
                           r"conversation=\S+ command=gone program=%s" % re.escape(prog))
        assert "No such file or directory" in line
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_every_run_is_logged_at_notice(srv):
    bang(srv, "!args log-me \u00e9")
    line = wait_log(srv, r"command=args args=\[\"log-me\" \"\\\\xc3\\\\xa9\"\]")
    assert "[chatbot:notice]" in line
    assert re.search(r"user=anon:[0-9a-f]+ bot=tools conversation=[0-9a-f]{24} ", line)
    assert re.search(r" exit=0 signal=0 duration_ms=\d+ output_bytes=\d+ truncated=0 "
                     r"timed_out=0", line)


def test_metrics_count_commands(srv):
    def count():
        with urllib.request.urlopen(srv.base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        mm = re.search(r"^chatbot_commands_total (\d+)", text, re.M)
        return int(mm.group(1)) if mm else 0
    before = count()
    bang(srv, "!exit7")
    bang(srv, "!nope")
    assert count() == before + 1


# ---- configuration errors (apachectl -t) -----------------------------------------------------

def test_configtest_accepts_the_fixture(fx):
    rc, out = configtest(fx.conf())
    assert rc == 0, out


@pytest.mark.parametrize("decl,needle", [
    ("ChatbotCommand ghost /nonexistent/ghost",
     "ChatbotCommand ghost: program /nonexistent/ghost: no such file"),
    ("ChatbotCommand ne {BIN}/notexec.sh", "ChatbotCommand ne: program {BIN}/notexec.sh is not "
                                           "executable"),
    ("ChatbotCommand d {BIN}", "is not a regular file"),
    ("ChatbotCommand rel bin/ls", "ChatbotCommand rel: program 'bin/ls': expected an absolute "
                                  "path"),
    ("ChatbotCommand cw /bin/ls cwd=/nonexistent-dir", "ChatbotCommand cw: cwd=/nonexistent-dir: "
                                                       "no such directory"),
    ("ChatbotCommand cw /bin/ls cwd=/etc/passwd", "cwd=/etc/passwd is not a directory"),
    ("ChatbotCommand a /bin/ls args=all", "ChatbotCommand a: args=all: expected args=none, "
                                          "args=one or args=many"),
    ("ChatbotCommand t /bin/ls timeout=forever", "ChatbotCommand t: timeout=forever: expected "
                                                 "a duration"),
    ("ChatbotCommand m /bin/ls maxoutput=lots", "maxoutput=lots: expected a size"),
    ("ChatbotCommand u /bin/ls colour=red", "unknown option 'colour='; allowed: args=none|one|"
                                            "many, timeout="),
    ("ChatbotCommand p /bin/ls args=many", "args=many with paths=on (the default) needs "
                                           "cwd=/dir"),
    ("ChatbotCommand x /bin/ls\nChatbotCommand x /bin/cat", "ChatbotCommand x: already "
                                                            "declared"),
    ("ChatbotBotCommands nothere", "ChatbotBotCommands names 'nothere', which is not "
                                   "declared; declare it with ChatbotCommand nothere"),
    ("ChatbotCommand ok /bin/ls\n<ChatbotBot b>\nChatbotBotCommands ok missing\n</ChatbotBot>",
     "bot 'b' ("),
    ("ChatbotCommand ok /bin/ls\nChatbotBotCommands ok\n<ChatbotBot b>\n</ChatbotBot>",
     "ChatbotBotCommands outside <ChatbotBot> has no effect"),
    ("<ChatbotBot b>\nChatbotCommand ok /bin/ls\n</ChatbotBot>",
     "declare commands at server level"),
])
def test_configtest_rejects_bad_declarations(fx, decl, needle):
    decl = decl.replace("{BIN}", fx.bin)
    rc, out = configtest(decl)
    assert rc != 0, out
    assert needle.replace("{BIN}", fx.bin) in out, out
