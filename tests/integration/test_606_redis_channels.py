"""The store on redis, its change channels: a change is published on its
shard's channel (chatbot:ev:<first 3 hex digits of the conversation or the
identity>), and a child subscribes only to the shards its tabs, followers
and generations need, so a turn's messages reach the children that show
them, not every child of every host (docs/storage.md, "Following an answer
across hosts"). These fail on a store that publishes everything on the one
channel every child hears, or on a child that does not listen to a new
tab's shard."""
import os
import socket
import threading
import time

import pytest

from histutil import Conn, new_cookie
from redisutil import REDIS, pair

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS),
                                reason="redis-server is not installed")


class Sub:
    """PSUBSCRIBE chatbot:ev* on its own connection: every message published
    on the change channels, as (channel, payload)."""

    def __init__(self, redis):
        self.sock = socket.create_connection(("127.0.0.1", redis.port), timeout=5)
        self.sock.sendall(b"*2\r\n$10\r\nPSUBSCRIBE\r\n$11\r\nchatbot:ev*\r\n")
        self.buf = b""
        self.got = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def line(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def value(self):
        ln = self.line()
        if ln[:1] == b"*":
            return [self.value() for _ in range(int(ln[1:]))]
        if ln[:1] == b"$":
            n = int(ln[1:])
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v.decode()
        return ln[1:].decode()

    def run(self):
        try:
            while not self.done:
                v = self.value()
                if isinstance(v, list) and v and v[0] == "pmessage":
                    with self.lock:
                        self.got.append((v[2], v[3]))
        except (OSError, EOFError, ValueError):
            return

    def messages(self):
        time.sleep(0.3)
        with self.lock:
            return list(self.got)

    def close(self):
        self.done = True
        self.sock.close()


def numsub(redis, channel):
    out = redis.cmd("PUBSUB", "NUMSUB", channel).split()
    return int(out[1])


def test_changes_are_published_on_their_shard(httpd, redis):
    a, b = pair(httpd, redis)
    sub = Sub(redis)
    me = new_cookie()
    c = Conn(a, cookie=me)
    try:
        time.sleep(0.2)
        conv = c.launch(title="sharded")
        fr = c.turn("hello [[fake tokens=3]]", conversation_id=conv)
        assert fr[-1]["type"] == "response", fr
        got = sub.messages()
        kinds = {}
        for channel, payload in got:
            kind, key = payload[:1], payload[2:].split("@")[0]
            kinds.setdefault(kind, 0)
            kinds[kind] += 1
            if kind in ("c", "s", "u"):
                # never on the channel every child hears
                assert channel == "chatbot:ev:" + key[:3], (channel, payload)
            else:
                # a backend's freed slot (b:) or changed health (h:)
                assert kind in ("b", "h") and channel == "chatbot:ev", (channel, payload)
        assert kinds.get("c", 0) >= 1 and kinds.get("u", 0) >= 1, got
        assert ("chatbot:ev:" + conv[:3], "c:" + conv) in got
    finally:
        c.close()
        sub.close()


def test_only_the_children_with_a_tab_listen(httpd, redis):
    """A tab's identity's shard is heard by its own child only; a tab that
    opens on the other host makes that host listen too, before its first
    list is read, and it then hears the first host's changes."""
    a, b = pair(httpd, redis)
    sub = Sub(redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    cb = None
    try:
        conv = ca.launch(title="first")
        owners = [p[2:].split("@")[0] for _, p in sub.messages() if p.startswith("u:")]
        assert owners, sub.messages()
        shard = "chatbot:ev:" + owners[0][:3]
        # every child of both hosts listens to the channel of the backends
        everyone = numsub(redis, "chatbot:ev")
        assert everyone >= 2
        assert numsub(redis, shard) == 1  # A's child with the tab, not B's
        cb = Conn(b, cookie=me)
        assert numsub(redis, shard) == 2  # B's child, before its hello
        cb.quiet(0.3)
        # a change on A reaches the tab on B
        conv2 = ca.launch(title="second")
        m, _ = cb.wait(lambda f: f.get("type") == "sessions" and any(
            s.get("conversation_id") == conv2 for s in f.get("sessions", [])), timeout=5)
        assert any(s.get("conversation_id") == conv for s in m["sessions"])
    finally:
        ca.close()
        if cb:
            cb.close()
        sub.close()


def test_a_shard_no_tab_watches_is_given_up_then_taken_again(httpd, redis):
    """When its last tab closes, a child keeps listening to the shard for
    30 s (RS_SHARD_LINGER_MS), then unsubscribes; a tab that opens again
    makes it listen again and hears the other host's changes."""
    a, b = pair(httpd, redis)
    sub = Sub(redis)
    me = new_cookie()
    ca = Conn(a, cookie=me)
    cb = None
    try:
        ca.launch(title="first")
        owners = [p[2:].split("@")[0] for _, p in sub.messages() if p.startswith("u:")]
        assert owners, sub.messages()
        shard = "chatbot:ev:" + owners[0][:3]
        cb = Conn(b, cookie=me)
        assert numsub(redis, shard) == 2
        cb.close()
        cb = None
        time.sleep(5)
        assert numsub(redis, shard) == 2  # lingers
        end = time.time() + 40
        while time.time() < end and numsub(redis, shard) != 1:
            time.sleep(0.5)
        assert numsub(redis, shard) == 1  # B gave it up, A's tab keeps it
        cb = Conn(b, cookie=me)
        assert numsub(redis, shard) == 2
        cb.quiet(0.3)
        conv2 = ca.launch(title="second")
        cb.wait(lambda f: f.get("type") == "sessions" and any(
            s.get("conversation_id") == conv2 for s in f.get("sessions", [])), timeout=5)
    finally:
        ca.close()
        if cb:
            cb.close()
        sub.close()
