"""pytest harness: a real httpd with mod_chatbot from a generated ServerRoot,
and the project's fake Ollama/OpenAI backend.

Fixtures
  fake      the fake backend (session scope): .url, .script(...), .requests()
  httpd     a factory: httpd(extra="...", backend=url, ...) -> Server
  server    a default Server (module scope) talking to `fake`
Helpers: sign_sid / new_sid_cookie (identities), configtest (`apache2 -t`
on a rendered ServerRoot), Server, Fake, free_port, test_root.
Every Server's error_log is checked at teardown: an unexpected [error],
[crit], [alert] or [emerg] line fails the test that owned the server.
"""
import atexit
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, HERE)
import serverroot  # noqa: E402

# Servers started by the tests sign session cookies with this key
# (ChatbotCookieSecretFile), so a test can make as many identities as it
# needs without a round trip: sign_sid() below. A test that wants the
# module's own generated secret passes cookie_secret=None to Server.
TEST_COOKIE_SECRET = "mod-chatbot-integration-tests-" + "5a" * 20


def sign_sid(sid_hex, secret=TEST_COOKIE_SECRET):
    """The cookie value the server issues for id sid_hex (32 lowercase hex
    digits): "<id>.<base64url HMAC-SHA256 of 'chatbot-sid/1:' + id>"."""
    mac = hmac.new(secret.encode(), b"chatbot-sid/1:" + sid_hex.encode(),
                   hashlib.sha256).digest()
    return sid_hex + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def new_sid_cookie(name="chatbot_sid"):
    """A Cookie header value with a new, validly signed identity."""
    return "%s=%s" % (name, sign_sid(os.urandom(16).hex()))


APACHE = "/usr/sbin/apache2"
FAKE = os.path.join(REPO, "tests", "fake_backend", "fake_backend.py")
PY = "/usr/bin/python3"
BAD_LEVELS = re.compile(r"\[(?:[a-z0-9_]+:)?(error|crit|alert|emerg)\]"
                        # a crashed child is logged at notice (AH00052)
                        r"|exit signal (?:Segmentation fault|Aborted|Bus error|"
                        r"Illegal instruction|Floating point exception)")


_PORTS_GIVEN = set()


def free_port():
    """A loopback port nobody listens on, never one this run gave out
    before: two ports asked for one after the other (a server's http and
    https) can otherwise be the same, and httpd refuses two Listen lines
    for one address ("Cannot define multiple Listeners")."""
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _PORTS_GIVEN:
            break
    _PORTS_GIVEN.add(port)
    return port


def wait_port(port, timeout=15.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def test_base():
    """The directory the test ServerRoots go to: /tmp/chatbot-tests for
    root, /tmp/chatbot-tests-<uid> for anyone else (so that root's and a
    user's runs never share it), world-traversable (children run as an
    unprivileged user when the tests run as root)."""
    name = "chatbot-tests" if os.geteuid() == 0 else "chatbot-tests-%d" % os.geteuid()
    base = os.path.join(tempfile.gettempdir(), name)
    os.makedirs(base, exist_ok=True)
    if os.lstat(base).st_uid != os.geteuid() or os.path.islink(base):
        raise RuntimeError("%s belongs to another user" % base)
    os.chmod(base, 0o755)
    return base


def test_root(name):
    """A world-traversable directory for a ServerRoot."""
    d = tempfile.mkdtemp(prefix=name + "-", dir=test_base())
    os.chmod(d, 0o755)
    return d


def configtest(extra, **kw):
    """Renders a ServerRoot with `extra` appended and runs `apache2 -t` on
    it; returns (exit status, stdout + stderr)."""
    root = test_root("conftest")
    try:
        conf = serverroot.render(root, 1, 2, kw.pop("backend", "http://127.0.0.1:9"),
                                 "test-model", extra=extra, **kw)
        r = subprocess.run([APACHE, "-t", "-f", conf], capture_output=True, text=True,
                           timeout=60)
        return r.returncode, r.stdout + r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Fake:
    """The fake backend process and its control API."""

    def __init__(self, extra_args=()):
        self.dir = test_root("fake")
        self.portfile = os.path.join(self.dir, "port")
        self.log = open(os.path.join(self.dir, "fake.log"), "w")
        self.proc = subprocess.Popen(
            [PY, FAKE, "--host", "127.0.0.1", "--port", "0", "--port-file", self.portfile,
             "--token-delay-ms", "5", *extra_args],
            stdout=self.log, stderr=self.log)
        end = time.time() + 10
        while not os.path.exists(self.portfile) and time.time() < end:
            time.sleep(0.05)
        if not os.path.exists(self.portfile):
            raise RuntimeError("fake backend did not start")
        self.port = int(open(self.portfile).read().strip())
        self.url = "http://127.0.0.1:%d" % self.port

    def _call(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def script(self, *scripts):
        return self._call("POST", "/_fake/script", list(scripts))

    def reset(self):
        return self._call("POST", "/_fake/reset", {})

    def requests(self):
        return self._call("GET", "/_fake/requests")

    def wait_closed(self, rid, timeout=5):
        return self._call("GET", "/_fake/requests?wait_closed=%s&timeout=%s" % (rid, timeout),
                          timeout=timeout + 5)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


_LIVE = set()


@atexit.register
def _stop_leftovers():
    """Never leave an httpd behind, even if a test run is interrupted."""
    for srv in list(_LIVE):
        srv.stop()


# CHATBOT_TEST_REDIS=<port of a running redis-server>: every server whose
# test does not choose a store gets `ChatbotStore redis://` to it, each on
# a database of its own (flushed first), so that the tests written for the
# shm store can be run against the redis store to compare the two. Not part
# of `make test` (tests of shm's own files and sizes fail there on purpose).
_SWEEP_REDIS = os.environ.get("CHATBOT_TEST_REDIS")
_SWEEP_DB = [0]


def _sweep_store(extra):
    if not _SWEEP_REDIS or "ChatbotStore" in extra:
        return extra
    db = _SWEEP_DB[0] % 16
    _SWEEP_DB[0] += 1
    subprocess.run(["redis-cli", "-p", _SWEEP_REDIS, "-n", str(db), "FLUSHDB"],
                   capture_output=True, timeout=10)
    return extra + "\nChatbotStore redis://127.0.0.1:%s/%d\n" % (_SWEEP_REDIS, db)


class Server:
    """One httpd instance."""

    def __init__(self, backend, extra="", name="httpd", allow_errors=(), **kw):
        self.root = test_root(name)
        self.port = free_port()
        self.sslport = free_port()
        self.allow_errors = [re.compile(p) for p in allow_errors]
        kw.setdefault("cookie_secret", TEST_COOKIE_SECRET)
        extra = _sweep_store(extra)
        self.conf = serverroot.render(self.root, self.port, self.sslport, backend,
                                      kw.pop("model", "test-model"), extra=extra, **kw)
        self.error_log = os.path.join(self.root, "logs", "error_log")
        self.access_log = os.path.join(self.root, "logs", "access_log")
        self.base = "http://127.0.0.1:%d" % self.port
        self.sbase = "https://127.0.0.1:%d" % self.sslport
        self.ws_url = "ws://127.0.0.1:%d/ws" % self.port
        self.wss_url = "wss://127.0.0.1:%d/ws" % self.sslport
        self.start()

    def ctl(self, *args, check=True):
        return subprocess.run([APACHE, "-f", self.conf, *args], capture_output=True,
                              text=True, check=check, timeout=60)

    def start(self):
        ready = self.ready_count()
        r = self.ctl("-k", "start", check=False)
        _LIVE.add(self)
        # `-k start` returns after the first configuration pass, with the
        # port already listening; the daemon then reads the configuration
        # again. Ready means that pass is done too (its "resuming normal
        # operations" line): a test that changes a file the configuration
        # refers to (a command's program) must not race with it.
        end = time.time() + 15
        while r.returncode == 0 and time.time() < end and \
                self.ready_count() <= ready:
            time.sleep(0.05)
        if r.returncode != 0 or self.ready_count() <= ready or \
                not wait_port(self.port):
            self.stop()
            raise RuntimeError("httpd did not start: %s %s\n%s" % (
                r.stdout, r.stderr, self.read_error_log()))

    def ready_count(self):
        """How often the daemon said "resuming normal operations" (AH00489
        with the event MPM, AH00292 with worker, AH00163 with prefork)."""
        log = self.read_error_log()
        return log.count("AH00489") + log.count("AH00292") + log.count("AH00163")

    def pid(self):
        try:
            return int(open(os.path.join(self.root, "run", "httpd.pid")).read())
        except (OSError, ValueError):
            return None

    def children(self):
        ppid = self.pid()
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(ppid)], capture_output=True,
                             text=True).stdout.split()
        return [int(p) for p in out]

    def graceful(self, wait=True):
        self.ctl("-k", "graceful")
        if wait:
            time.sleep(1.0)
            wait_port(self.port)

    def stop(self):
        _LIVE.discard(self)
        pid = self.pid()
        kids = self.children() if pid else []
        r = self.ctl("-k", "stop", check=False)
        if pid and r.returncode != 0:
            # `-k stop` parses the configuration again, which fails when a
            # test changed what it refers to (a deleted command program):
            # SIGTERM is what it would have sent.
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        end = time.time() + 20
        while pid and time.time() < end:
            try:
                os.kill(pid, 0)
                time.sleep(0.05)
            except OSError:
                break
        else:
            # never leave a server behind: it would hold its ports and CPU
            for p in ([pid] if pid else []) + kids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def read_error_log(self):
        try:
            with open(self.error_log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def bad_log_lines(self):
        bad = []
        for line in self.read_error_log().splitlines():
            if BAD_LEVELS.search(line) and not any(p.search(line) for p in self.allow_errors):
                bad.append(line)
        return bad

    def access_lines(self):
        with open(self.access_log, errors="replace") as f:
            return f.read().splitlines()


@pytest.fixture(scope="session")
def fake():
    f = Fake()
    yield f
    f.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item (the httpd fixture looks
    at it to tell whether the test failed)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def httpd(fake, request):
    servers = []

    def make(extra="", backend=None, **kw):
        s = Server(backend or fake.url, extra=extra, **kw)
        servers.append(s)
        return s

    yield make
    problems = []
    for s in servers:
        s.stop()
        problems += s.bad_log_lines()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        # shown with the failure ("Captured stdout teardown"); the server
        # root is kept for a look at the rest
        for s in servers:
            print("== %s: last lines of %s" % (request.node.name, s.error_log))
            print("\n".join(s.read_error_log().splitlines()[-40:]))
        return
    assert not problems, "unexpected error-level lines in the error log:\n" + "\n".join(problems)
    for s in servers:
        shutil.rmtree(s.root, ignore_errors=True)


DEFAULT_EXTRA = "ChatbotRateLimit off\n"


@pytest.fixture(scope="module")
def server(fake):
    s = Server(fake.url, extra=DEFAULT_EXTRA, name="default")
    yield s
    s.stop()
    bad = s.bad_log_lines()
    shutil.rmtree(s.root, ignore_errors=True)
    assert not bad, "unexpected error-level lines in the error log:\n" + "\n".join(bad)


# ---- conformance report ---------------------------------------------------------
# Tests append (case, expectation, observed, passed) rows here; the table is
# printed at the end of the run (issue 3: "the report of the conformance
# cases is printed as a table by the test run").
CONFORMANCE = []


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not CONFORMANCE:
        return
    tr = terminalreporter
    tr.section("WebSocket conformance (Autobahn-style cases 1-7, 9)")
    w1 = max(len(r[0]) for r in CONFORMANCE)
    tr.write_line("%-*s  %-40s  %-40s  %s" % (w1, "case", "expected", "observed", "result"))
    for case, exp, got, ok in sorted(CONFORMANCE):
        exp = exp if len(exp) <= 40 else exp[:37] + "..."
        got = got if len(got) <= 40 else got[:37] + "..."
        tr.write_line("%-*s  %-40s  %-40s  %s" % (w1, case, exp, got, "PASS" if ok else "FAIL"))
    npass = sum(1 for r in CONFORMANCE if r[3])
    tr.write_line("%d/%d cases passed" % (npass, len(CONFORMANCE)))


@pytest.fixture
def redis():
    """A redis-server of its own for the test (redisutil.Redis); skipped
    where redis-server is not installed."""
    import redisutil
    if not os.path.exists(redisutil.REDIS):
        pytest.skip("redis-server is not installed (scripts/deps.sh test installs it)")
    r = redisutil.Redis()
    yield r
    r.stop()
