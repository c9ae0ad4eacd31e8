"""Helpers for the tests of declared commands (docs/commands.md): one
identity shared by the tests that do not bring their own cookie, a command
run over the WebSocket (`!name args`, `run`) or POST /api/execute, and
waits on the error log and on processes. CmdFixture makes the programs and
directories of test_800_command_runs and test_801_command_conversations
and their declarations. Used by those two, test_815_command_options and
test_710_status."""
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request

from wsclient import RawWS


def new_cookie():
    from conftest import new_sid_cookie
    return new_sid_cookie()


COOKIE = new_cookie()  # one identity for the requests that bring no cookie of their own


def connect(server, timeout=15.0, cookie=None):
    return RawWS(server.port, timeout=timeout, headers={"Cookie": cookie or COOKIE})


def ws_send(server, payload, timeout=15.0, skip=("status", "sessions", "ack"), cookie=None):
    """Sends one message on a fresh connection; returns the first reply."""
    ws = connect(server, timeout, cookie)
    try:
        ws.send_json(payload)
        return ws.recv_json(skip_types=skip)
    finally:
        ws.close()


def bang(server, line, cookie=None, **kw):
    msg = {"type": "message", "content": line}
    msg.update(kw)
    return ws_send(server, msg, cookie=cookie)


def api(server, body, raw=None, cookie=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(server.base + "/api/execute", data=data, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Cookie": cookie or COOKIE})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def argv_lines(output):
    return [l[1:-1] for l in output.splitlines()]


def wait_log(server, pattern, timeout=5.0):
    rx = re.compile(pattern)
    end = time.time() + timeout
    while time.time() < end:
        for line in server.read_error_log().splitlines():
            if rx.search(line):
                return line
        time.sleep(0.1)
    raise AssertionError("no log line matches %r:\n%s" % (pattern, server.read_error_log()[-3000:]))


def pid_gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return True
    # a zombie is dead (only waiting for its parent, or init, to reap it)
    return st[st.rindex(")") + 2] == "Z"


MARKER_NAME = "INJECTED"


def write_script(path, body):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body)
    os.chmod(path, 0o755)


class CmdFixture:
    """Programs and directories for the declared commands (world readable:
    httpd's children run as www-data when the tests run as root)."""

    def __init__(self):
        from conftest import test_root as make_root
        self.root = make_root("cmds")
        self.bin = os.path.join(self.root, "bin")
        self.data = os.path.join(self.root, "data")
        self.state = os.path.join(self.root, "state")   # writable by the children
        self.outside = os.path.join(self.root, "outside")
        for d in (self.bin, self.data, self.outside, os.path.join(self.data, "sub")):
            os.makedirs(d)
            os.chmod(d, 0o755)
        os.makedirs(self.state)
        os.chmod(self.state, 0o777)
        self.marker = os.path.join(self.state, MARKER_NAME)
        write_script(os.path.join(self.bin, "argv.sh"),
                     'for a in "$@"; do printf "[%s]\\n" "$a"; done\n')
        write_script(os.path.join(self.bin, "envfd.sh"),
                     "pwd\nenv | sort\nls -l /proc/$$/fd\n")
        write_script(os.path.join(self.bin, "hang.sh"),
                     'sleep 60 &\necho $! > "$1/child.pid"\necho $$ > "$1/parent.pid"\n'
                     'echo started\nsleep 60\n')
        write_script(os.path.join(self.bin, "flood.sh"),
                     "head -c 10485760 /dev/zero | tr '\\000' y\n")
        write_script(os.path.join(self.bin, "exit7.sh"), "echo bye\nexit 7\n")
        write_script(os.path.join(self.bin, "bytes.sh"), "printf 'ok \\377\\376 end'\n")
        with open(os.path.join(self.bin, "notexec.sh"), "w") as f:
            f.write("#!/bin/sh\necho no\n")
        os.chmod(os.path.join(self.bin, "notexec.sh"), 0o644)
        with open(os.path.join(self.data, "a.txt"), "w") as f:
            f.write("hello from a\n")
        with open(os.path.join(self.data, "sub", "b.txt"), "w") as f:
            f.write("hello from b\n")
        with open(os.path.join(self.outside, "secret.txt"), "w") as f:
            f.write("SECRET\n")
        for p in (os.path.join(self.data, "a.txt"), os.path.join(self.data, "sub", "b.txt"),
                  os.path.join(self.outside, "secret.txt")):
            os.chmod(p, 0o644)
        os.symlink(self.outside, os.path.join(self.data, "escape"))
        os.symlink("sub", os.path.join(self.data, "inside"))
        os.symlink(os.path.join(self.outside, "new.txt"), os.path.join(self.data, "dangling"))

    def conf(self, rate="ChatbotRateLimit off"):
        b = self.bin
        return "\n".join([
            rate,
            "ChatbotCommand args %s/argv.sh args=many paths=off options=-x,--opt=" % b,
            "ChatbotCommand show /bin/cat args=many cwd=%s" % self.data,
            "ChatbotCommand list /bin/ls -1 args=many cwd=%s options=-a,--hide=,-I=,--color="
            % self.data,
            "ChatbotCommand envfd %s/envfd.sh cwd=%s" % (b, self.data),
            "ChatbotCommand hang %s/hang.sh %s timeout=1s" % (b, self.state),
            "ChatbotCommand slow %s/hang.sh %s timeout=20s" % (b, self.state),
            "ChatbotCommand flood %s/flood.sh" % b,
            "ChatbotCommand exit7 %s/exit7.sh" % b,
            "ChatbotCommand bytes %s/bytes.sh" % b,
            "ChatbotCommand touch /usr/bin/touch args=one paths=off",
            "<ChatbotBot tools>",
            "    ChatbotBotCommands args show list envfd hang slow flood exit7 bytes",
            "</ChatbotBot>",
            "<ChatbotBot plain>",
            "</ChatbotBot>",
            "ChatbotDefaultBot tools",
            "",
        ])

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)


def cmd_fixture():
    """Body of a module-scoped fixture: a CmdFixture, cleaned up after."""
    f = CmdFixture()
    yield f
    f.cleanup()


def cmd_server(fake, fx, name):
    """Body of a module-scoped fixture: a server with fx's declarations,
    stopped after; its error log must then hold no unexpected error line."""
    from conftest import Server
    s = Server(fake.url, extra=fx.conf(), name=name)
    yield s
    s.stop()
    bad = s.bad_log_lines()
    shutil.rmtree(s.root, ignore_errors=True)
    assert not bad, "unexpected error-level lines in the error log:\n" + "\n".join(bad)
