"""`make run` from any directory (issue 16 part 1): the server that
scripts/run.sh starts (what `make run` runs after building) serves the
page, the API and the WebSocket from a clone inside a directory nobody else
may enter (mode 0700, as root's home and every home Debian 12's adduser
makes), without any permission of that directory being changed; and it
keeps the history across a stop and a start (issue 19 point 2).

As root, httpd's children run as www-data, which cannot enter the clone;
as a normal user (here: nobody, through setpriv, when the tests run as
root; else the user running them) httpd does not switch users at all. Both
are run for real: a copy of the files run.sh needs (the built module
included) in <tmp>/home/clone, started on free loopback ports against the
fake backend, then stopped with SIGTERM as Ctrl-C would."""
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest
import requests

from conftest import REPO, free_port
from histutil import Conn, Rest, new_cookie

# what scripts/run.sh reads from the clone once `make all` has built it
TREE = ["scripts", "conf", "htdocs", os.path.join("tests", "fake_backend"),
        os.path.join("build", "mod_chatbot.so")]


def users():
    """(label, user to run as or None for this process's user)."""
    if os.geteuid() == 0:
        return [("root", None), ("nobody", "nobody")]
    return [("user", None)]


class Clone:
    """A private home (0700) with a copy of the tree in it, owned by the
    user run.sh runs as."""

    def __init__(self, user):
        self.user = user
        self.base = tempfile.mkdtemp(prefix="chatbot-anywhere-")
        os.chmod(self.base, 0o755)  # like /home: the home inside is what is private
        self.home = os.path.join(self.base, "home")
        self.dir = os.path.join(self.home, "clone")
        os.makedirs(self.dir)
        for rel in TREE:
            src, dst = os.path.join(REPO, rel), os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                    "__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dst)
        if user:
            pw = pwd.getpwnam(user)
            for dp, dns, fns in os.walk(self.home):
                os.chown(dp, pw.pw_uid, pw.pw_gid)
                for f in fns:
                    os.chown(os.path.join(dp, f), pw.pw_uid, pw.pw_gid)
        os.chmod(self.home, 0o700)
        self.port = free_port()
        self.sslport = free_port()
        self.proc = None
        self.log = os.path.join(self.base, "run.log")

    def start(self, backend):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": self.home,
               "LANG": "C.UTF-8", "CHATBOT_PORT": str(self.port),
               "CHATBOT_SSL_PORT": str(self.sslport), "CHATBOT_LISTEN": "127.0.0.1",
               "OLLAMA_URL": backend, "CHATBOT_MODEL": "test-model"}
        cmd = ["sh", os.path.join(self.dir, "scripts", "run.sh")]
        if self.user:
            pw = pwd.getpwnam(self.user)
            cmd = ["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid,
                   "--clear-groups", "--"] + cmd
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         cwd="/", start_new_session=True)
        end = time.time() + 90
        while time.time() < end:
            if self.proc.poll() is not None:
                break
            try:
                requests.get("http://127.0.0.1:%d/api/health" % self.port, timeout=5)
                return  # it answers (what it answers is for the test to judge)
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("run.sh did not serve:\n" + self.output() + self.error_log())

    def stop(self):
        """SIGTERM to run.sh, as Ctrl-C would: it stops httpd and waits."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise AssertionError("run.sh did not stop within 60 s:\n" + self.output())

    def output(self):
        try:
            return open(self.log, errors="replace").read()
        except OSError:
            return ""

    def error_log(self):
        try:
            return open(os.path.join(self.dir, "run", "logs", "error_log"),
                        errors="replace").read()
        except OSError:
            return ""

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


def server_like(clone):
    class S:
        port = clone.port
        base = "http://127.0.0.1:%d" % clone.port
    return S()


@pytest.mark.parametrize("label,user", users(), ids=[u[0] for u in users()])
def test_run_from_a_private_clone(fake, label, user):
    clone = Clone(user)
    try:
        home_mode = stat.S_IMODE(os.stat(clone.home).st_mode)
        assert home_mode == 0o700
        clone.start(fake.url)
        out = clone.output()
        page = requests.get("http://127.0.0.1:%d/" % clone.port, timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:300]
        js = requests.get("https://127.0.0.1:%d/js/app.js" % clone.sslport, timeout=10,
                          verify=False)
        assert js.status_code == 200
        assert requests.get("http://127.0.0.1:%d/api/health" % clone.port,
                            timeout=10).json()["status"] == "ok"
        # the children really are who they should be
        conf = open(os.path.join(clone.dir, "run", "conf", "httpd.conf")).read()
        outside_note = os.path.join(clone.dir, "run", "conf", "outside")
        if os.geteuid() == 0 and user is None:
            assert "\nUser www-data" in conf
            # www-data cannot enter the clone: pages and runtime files are
            # served from outside it, and the console says where
            outside = open(outside_note).read().strip()
            assert outside.startswith("/run/mod_chatbot/") and os.path.isdir(outside)
            assert "cannot enter" in out and outside in out
        else:
            assert "\nUser " not in conf and not os.path.exists(outside_note)
        assert "history kept in %s/run/data/history.bin" % clone.dir in out
        # a chat over the WebSocket, kept under the identity this server
        # issued (a cookie signed with another key is not one: a new
        # identity, as for a browser's first visit)
        fake.script({"reply": "kept answer"})
        c = Conn(server_like(clone), cookie=new_cookie())
        try:
            cookie = c.headers["set-cookie"].split(";", 1)[0]
            assert cookie.startswith("chatbot_sid="), c.headers
            frames = c.turn("remember this")
            assert frames[-1]["type"] == "response", frames
            assert frames[-1]["content"] == "kept answer"
            conv = frames[-1]["conversation_id"]
        finally:
            c.close()
        # the secret that signed it is kept with the history, privately
        key = os.path.join(clone.dir, "run", "data", "history.bin.key")
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
        first_key = open(key).read()
        assert clone.stop() == 0, clone.output()
        # stopped: history saved, privately; nothing left outside the clone
        hist = os.path.join(clone.dir, "run", "data", "history.bin")
        assert os.path.getsize(hist) > 0, clone.error_log()
        assert stat.S_IMODE(os.stat(hist).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(hist)).st_mode) == 0o700
        if os.path.exists(outside_note):
            assert not os.path.exists(open(outside_note).read().strip())
        # started again: the same secret, the cookie is still the identity
        # and the conversation is back
        clone.start(fake.url)
        assert open(key).read() == first_key
        rest = Rest(server_like(clone), cookie=cookie)
        r = rest.get("/api/chat/history", params={"conversation_id": conv})
        assert r.status_code == 200, r.text
        h = r.json()
        assert [(m["role"], m["content"]) for m in h["messages"]] == [
            ("user", "remember this"), ("assistant", "kept answer")], h
        r = rest.post("/api/session/create", {})
        assert r.status_code == 201 and "Set-Cookie" not in r.headers, r.text
        assert clone.stop() == 0
        # the user's directories kept their permissions
        assert stat.S_IMODE(os.stat(clone.home).st_mode) == home_mode
        bad = [ln for ln in clone.error_log().splitlines()
               if "[core:error]" in ln or "AH00035" in ln or ":crit]" in ln]
        assert not bad, "\n".join(bad)
    except BaseException:
        print(clone.output())
        print(clone.error_log()[-4000:])
        raise
    finally:
        clone.cleanup()
