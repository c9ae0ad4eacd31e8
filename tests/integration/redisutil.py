"""A redis-server for the tests of the store on redis (test_6xx, test_930):
a real server on a loopback port, its data in a private directory (AOF,
fsync always), so that a test can kill it and start it again. The `redis`
fixture (conftest.py) gives one per test."""
import os
import shutil
import signal
import socket
import subprocess
import time

import conftest
from conftest import free_port

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"

# what a redis outage logs (at error level, on purpose)
DOWN_LOG = (r"AH10960", r"AH10962")


class Redis:
    """A redis-server on a loopback port, its data (AOF, fsync always) in a
    private directory, so that it can be killed and started again."""

    def __init__(self, args=()):
        self.dir = conftest.test_root("redis")
        self.port = free_port()
        self.args = list(args)  # more of redis-server's options
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "a")
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--daemonize", "no", "--protected-mode", "yes", *self.args],
            stdout=self.log, stderr=self.log)
        end = time.time() + 15
        while time.time() < end:
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def cmd(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args],
                              capture_output=True, text=True, timeout=10).stdout

    def kill(self, sig=signal.SIGKILL):
        if self.proc:
            self.proc.send_signal(sig)
            self.proc.wait(10)
            self.proc = None
            self.log.close()

    def stop(self):
        self.kill(signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


def pair(httpd, redis, extra="ChatbotRateLimit off\n", db=3, name="redis", **kw):
    """Two hosts, A and B (httpd servers from the `httpd` fixture), on one
    redis database."""
    store = "ChatbotStore redis://127.0.0.1:%d/%d\n" % (redis.port, db)
    kw.setdefault("allow_errors", DOWN_LOG)
    a = httpd(extra=store + extra, name=name + "-a", **kw)
    b = httpd(extra=store + extra, name=name + "-b", **kw)
    return a, b


def store_conf(store, request, db, extra="ChatbotRateLimit off\n"):
    """For a test run on both stores ("shm", "redis"): the configuration
    lines (extra, and the ChatbotStore line on a redis of the test's own,
    database db) and the httpd() keywords for that store."""
    if store == "shm":
        return extra, {}
    if not os.path.exists(REDIS):
        import pytest
        pytest.skip("redis-server is not installed")
    r = request.getfixturevalue("redis")
    # redis stops before the server at the end: its outage is logged
    return (extra + "ChatbotStore redis://127.0.0.1:%d/%d\n" % (r.port, db),
            {"allow_errors": DOWN_LOG})
