"""Helpers for the tests of declared commands (docs/commands.md): one
identity shared by the tests that do not bring their own cookie, a command
run over the WebSocket (`!name args`, `run`) or POST /api/execute, and
waits on the error log and on processes. Used by test_800_commands,
test_815_command_options and test_710_status."""
import json
import re
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
