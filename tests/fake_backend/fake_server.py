"""The fake backend's server: the listening sockets (the chat port that
POST /_fake/down and /_fake/up close and reopen, the optional control
port), one thread per connection, the request log line, and Conn, which
routes each request: /_fake/... to the control API (scripts, reset,
recorded requests, info), the chat paths to fake_chat, and the plain
Ollama and OpenAI endpoints (/, /api/version, /api/tags, /api/ps,
/v1/models).

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import json
import os
import re
import select
import socket
import sys
import threading
import time

from fake_chat import ChatMixin
from fake_encoding import counted_tokens, gojson
from fake_faults import FaultsMixin
from fake_http import ClientGone, ConnClosed, HttpConn
from fake_ollama import OLLAMA_VERSION, OllamaFormat, tags_body
from fake_openai import OpenAIFormat, models_body
from fake_scripts import ScriptError, normalize_script
from fake_state import State


class Conn(ChatMixin, FaultsMixin, HttpConn):
    """A client connection of the fake backend: HttpConn's HTTP/1.1, the
    routing of each request, the control API, chats and faults."""

    # -- dispatch --------------------------------------------------------------

    def handle(self, req):
        """Answer one request; True to keep the connection open."""
        self.close_after = req.close
        self.chunked = req.version == "HTTP/1.1"
        self.status = None
        self.ready_ns = None
        prefix = self.srv.path_prefix
        if prefix and not (req.path == "/_fake" or req.path.startswith("/_fake/")):
            # served behind a reverse proxy under a path prefix
            if req.path.startswith(prefix + "/"):
                req.path = req.path[len(prefix):]
            else:
                req.path = "/_no_such_path"
        if req.path == "/_fake" or req.path.startswith("/_fake/"):
            self.rec = None
            self.control(req)
            self.srv.log("%s %s %s %s" % (self.peer, req.method, req.target, self.status))
            return not self.close_after and not self.gone
        state = self.srv.state
        rec = self.rec = state.new_record(req, self.peer)
        outcome = "complete"
        try:
            outcome = self.route(req, rec) or "complete"
        except ClientGone:
            outcome = "client_closed"
        except ConnClosed as e:
            outcome = e.outcome
        except Exception as e:
            outcome = "server_error"
            self.srv.log("%s #%d handler error: %s: %s"
                         % (self.peer, rec["id"], type(e).__name__, e))
            if self.srv.verbose:
                import traceback
                traceback.print_exc()
            self.abort(rst=False)
        if self.gone:
            outcome = "client_closed"
        state.finish(rec, outcome=outcome, status=self.status,
                     client_closed_at=self.gone_at if self.gone else None)
        ms = (rec["t_end"] - rec["t_start"]) * 1000
        self.srv.log("%s #%d %s %s %s %s tokens=%d %.1fms" % (
            self.peer, rec["id"], req.method, req.target, self.status or "-",
            outcome, rec["tokens_sent"], ms))
        self.rec = None
        return not (self.close_after or self.gone or self.closed)

    def route(self, req, rec):
        m, p = req.method, req.path
        if p == "/api/chat" and m == "POST":
            return self.chat(req, rec, OllamaFormat)
        if p == "/v1/chat/completions" and m == "POST":
            return self.chat(req, rec, OpenAIFormat)
        script = self.srv.state.pop_script(p, chat=False)
        if script:
            self.srv.state.update(rec, script=dict(script))
            outcome = self.pre_faults(script, OllamaFormat("", 0), None)
            if outcome:
                return outcome
        head_only = m == "HEAD"
        if p == "/" and m in ("GET", "HEAD"):
            self.respond(200, "text/plain; charset=utf-8", b"Ollama is running", head_only)
        elif p == "/api/version" and m in ("GET", "HEAD"):
            self.respond(200, "application/json; charset=utf-8",
                         gojson({"version": OLLAMA_VERSION}), head_only)
        elif p == "/api/tags" and m in ("GET", "HEAD"):
            self.respond(200, "application/json; charset=utf-8", self.srv.tags_body, head_only)
        elif p == "/api/ps" and m == "GET":
            self.respond(200, "application/json; charset=utf-8", gojson({"models": []}))
        elif p == "/v1/models" and m == "GET":
            self.respond(200, "application/json", self.srv.models_body)
        else:
            self.respond(404, "text/plain", b"404 page not found")
        if script and script.get("fault"):
            return "fault:" + script["fault"]
        return None

    # -- control API -------------------------------------------------------------

    def control_json(self, status, obj):
        self.respond(status, "application/json", json.dumps(obj).encode() + b"\n")

    def control(self, req):
        state = self.srv.state
        m, p = req.method, req.path.rstrip("/")
        try:
            if p == "/_fake/script" and m == "POST":
                try:
                    raw = json.loads(req.body.decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    return self.control_json(400, {"error": "invalid JSON: %s" % e})
                if isinstance(raw, dict):
                    raw = [raw]
                if not isinstance(raw, list):
                    return self.control_json(400, {"error": "expected a list of scripts"})
                try:
                    scripts = [normalize_script(s, inline=False) for s in raw]
                except ScriptError as e:
                    return self.control_json(400, {"error": str(e)})
                return self.control_json(200, {"queued": state.queue(scripts)})
            if p == "/_fake/reset" and m == "POST":
                state.reset()
                return self.control_json(200, {"ok": True})
            if p == "/_fake/scripts" and m == "GET":
                with state.cond:
                    pending = [dict(s) for s in state.scripts]
                return self.control_json(200, pending)
            if p == "/_fake/info" and m == "GET":
                return self.control_json(200, self.srv.info())
            if p in ("/_fake/down", "/_fake/up") and m == "POST":
                # down: the chat port stops listening (new connections are
                # refused, like a stopped Ollama); up: it listens again on the
                # same port. Needs --control-port-file to be reachable while down.
                if p == "/_fake/down":
                    self.srv.go_down()
                else:
                    self.srv.go_up()
                return self.control_json(200, {"listening": self.srv.lsock is not None})
            if p == "/_fake/requests" and m == "GET":
                if "wait_closed" in req.query:
                    try:
                        rid = int(req.query["wait_closed"][0])
                        timeout = float(req.query.get("timeout", ["5"])[0])
                    except ValueError:
                        return self.control_json(400, {"error": "wait_closed=<id>&timeout=<s>"})
                    rec, ended = state.wait_ended(rid, min(max(timeout, 0), 600))
                    if ended:
                        return self.control_json(200, rec)
                    return self.control_json(504, {"error": "request %d has not ended" % rid,
                                                   "request": rec})
                return self.control_json(200, state.snapshot())
            mo = re.fullmatch(r"/_fake/requests/(\d+)", p)
            if mo and m == "GET":
                rec = state.snapshot(int(mo.group(1)))
                if rec is None:
                    return self.control_json(404, {"error": "no such request"})
                return self.control_json(200, rec)
            return self.control_json(404, {"error": "unknown control endpoint %s %s" % (m, p)})
        except ClientGone:
            return None


class Server:
    def __init__(self, args):
        self.args = args
        self.state = State()
        self.models = [m.strip() for m in args.models.split(",") if m.strip()]
        self.token_delay_ms = args.token_delay_ms
        self.demo = args.demo
        self.bench = args.bench
        self.bench_tokens_list = counted_tokens(args.bench_tokens)
        self.strict_models = args.strict_models
        self.path_prefix = getattr(args, "path_prefix", "")
        self.quiet = args.quiet or (args.bench and not args.verbose)
        self.verbose = args.verbose
        self.log_lock = threading.Lock()
        self.stopping = False
        self.tags_body = tags_body(self.models)
        self.models_body = models_body(self.models)

    def has_model(self, name):
        return name in self.models or (":" not in name and name + ":latest" in self.models)

    def info(self):
        return {"fake": True, "demo": self.demo, "bench": self.bench, "models": self.models,
                "token_delay_ms": self.token_delay_ms, "version": OLLAMA_VERSION,
                "pid": os.getpid(), "port": self.port}

    def log(self, line):
        if self.quiet:
            return
        with self.log_lock:
            try:
                sys.stderr.write("fake_backend: %s\n" % line)
                sys.stderr.flush()
            except (OSError, ValueError):
                pass

    def _listen(self, port):
        host = self.args.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    @staticmethod
    def _write_port(path, port):
        tmp = "%s.tmp.%d" % (path, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, path)

    def bind(self):
        self.lsock = self._listen(self.args.port)
        self.port = self.lsock.getsockname()[1]
        self.csock = None
        self.wake_w = None
        if self.args.control_port_file:
            self.csock = self._listen(0)
            self._write_port(self.args.control_port_file, self.csock.getsockname()[1])
        if self.args.port_file:
            self._write_port(self.args.port_file, self.port)

    def _wake(self):
        if self.wake_w is not None:
            try:
                os.write(self.wake_w, b"w")
            except OSError:
                pass

    def go_down(self):
        with self.log_lock:
            sock, self.lsock = self.lsock, None
        if sock is not None:
            sock.close()
        self._wake()

    def go_up(self):
        with self.log_lock:
            if self.lsock is None:
                self.lsock = self._listen(self.port)
        self._wake()

    def serve_forever(self, wake_fd):
        """Accept until a signal handler sets self.stopping (it also writes
        to wake_fd, so the select() below returns at once). The control
        port, if any, is served the same way."""
        while not self.stopping:
            listeners = [s for s in (self.lsock, self.csock) if s is not None]
            try:
                ready, _, _ = select.select(listeners + [wake_fd], [], [])
            except (InterruptedError, ValueError, OSError):
                continue
            if wake_fd in ready:
                try:
                    os.read(wake_fd, 512)
                except OSError:
                    pass
                continue
            for ls in ready:
                try:
                    sock, addr = ls.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue
                except OSError as e:
                    self.log("accept failed: %s" % e)
                    time.sleep(0.05)
                    continue
                sock.setblocking(True)
                t = threading.Thread(target=Conn(self, sock, addr).serve, daemon=True)
                t.start()
