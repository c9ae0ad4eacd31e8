"""The fake backend's HTTP/1.1 connection: reading requests (keep-alive,
pipelining, Expect: 100-continue, chunked bodies), writing status lines and
headers in Go net/http's order, sending, and waiting in poll() so that a
client that closes or resets is seen at once (ClientGone), or closing on
purpose with FIN or RST (ConnClosed). HttpConn.serve() answers each
request with self.handle(req), which the subclass (fake_server.Conn) gives.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import math
import select
import socket
import struct
import time
import urllib.parse

from fake_encoding import http_date, reason_phrase

IO_TIMEOUT_S = 120.0        # a send that blocks this long means the client is stuck
MAX_HEADER_BYTES = 1 << 20  # Go's http.DefaultMaxHeaderBytes
MAX_BODY_BYTES = 64 << 20
RBUF_CAP = 1 << 20          # pipelined bytes buffered while streaming


class ClientGone(Exception):
    """The client closed or reset the connection."""


class ConnClosed(Exception):
    """We closed the connection on purpose (a fault); carries the outcome."""

    def __init__(self, outcome):
        super().__init__(outcome)
        self.outcome = outcome


class Request:
    __slots__ = ("method", "target", "path", "query", "version", "headers",
                 "body", "t_start", "close")


class HttpConn:
    """One client connection; subclasses give handle(req)."""

    def __init__(self, server, sock, addr):
        self.srv = server
        self.sock = sock
        self.peer = "%s:%s" % (addr[0], addr[1])
        self.rbuf = b""
        self.gone = False
        self.gone_at = None
        self.closed = False
        self.rec = None
        self.status = None
        self.chunked = True
        self.close_after = False
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLPRI |
                             getattr(select, "POLLRDHUP", 0))

    # -- socket primitives ---------------------------------------------------

    def mark_gone(self):
        if not self.gone:
            self.gone = True
            self.gone_at = time.time()
            if self.rec is not None and self.rec["t_end"] is None:
                self.srv.state.update(self.rec, client_closed_at=self.gone_at)

    def send(self, data):
        if self.gone:
            raise ClientGone()
        try:
            self.sock.sendall(data)
        except OSError:
            self.mark_gone()
            raise ClientGone()

    def wait(self, seconds):
        """Sleep up to `seconds` while watching the socket; False as soon as
        the client has closed or reset the connection."""
        if self.gone:
            return False
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if len(self.rbuf) >= RBUF_CAP:
                # Pipelined bytes fill the buffer: EOF cannot be seen any more.
                if left > 0:
                    time.sleep(left)
                return True
            try:
                events = self.poller.poll(max(0, math.ceil(left * 1000)))
            except InterruptedError:
                events = []
            if events:
                try:
                    data = self.sock.recv(65536)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    data = None
                except OSError:
                    self.mark_gone()
                    return False
                if data == b"":
                    self.mark_gone()
                    return False
                if data:
                    self.rbuf += data
                continue
            if left <= 0:
                return True

    def abort(self, rst):
        """Close the connection now: RST (SO_LINGER 0) or a plain FIN."""
        if self.closed:
            return
        self.closed = True
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def _recv_more(self):
        data = self.sock.recv(65536)
        if not data:
            return False
        self.rbuf += data
        return True

    # -- request parsing -----------------------------------------------------

    def read_request(self):
        """Read one request; None when the connection is finished."""
        while True:
            self.rbuf = self.rbuf.lstrip(b"\r\n")
            end = self.rbuf.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = self.rbuf.find(b"\n\n")
                sep = 2
            if end >= 0:
                break
            if len(self.rbuf) > MAX_HEADER_BYTES:
                self.simple_error(431, "431 Request Header Fields Too Large")
                return None
            try:
                if not self._recv_more():
                    if self.rbuf:
                        self.srv.log("%s incomplete request before EOF" % self.peer)
                    return None
            except OSError:
                return None
        head = self.rbuf[:end].decode("latin-1")
        self.rbuf = self.rbuf[end + sep:]
        lines = head.replace("\r\n", "\n").split("\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.simple_error(400, "400 Bad Request")
            return None
        req = Request()
        req.method, req.target, req.version = parts
        req.t_start = time.time()
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                self.simple_error(400, "400 Bad Request: malformed header")
                return None
            key = name.lower()
            value = value.strip()
            headers[key] = headers[key] + ", " + value if key in headers else value
        req.headers = headers
        split = urllib.parse.urlsplit(req.target)
        req.path = split.path or "/"
        req.query = urllib.parse.parse_qs(split.query)
        conn_hdr = headers.get("connection", "").lower()
        if req.version == "HTTP/1.0":
            req.close = "keep-alive" not in conn_hdr
        else:
            req.close = "close" in conn_hdr
        try:
            req.body = self._read_body(req)
        except ValueError as e:
            self.simple_error(400, "400 Bad Request: %s" % e)
            return None
        except OSError:
            return None
        if req.body is None:
            return None
        return req

    def _continue(self, req):
        if req.headers.get("expect", "").lower() == "100-continue" and req.version == "HTTP/1.1":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_body(self, req):
        te = req.headers.get("transfer-encoding", "").lower()
        if te:
            if te != "chunked":
                raise ValueError("unsupported transfer-encoding")
            if not self.rbuf:
                self._continue(req)
            return self._read_chunked()
        cl = req.headers.get("content-length")
        if cl is None:
            return b""
        if not cl.isdigit():
            raise ValueError("bad content-length")
        n = int(cl)
        if n > MAX_BODY_BYTES:
            raise ValueError("body too large")
        if n and len(self.rbuf) < n:
            self._continue(req)
        while len(self.rbuf) < n:
            if not self._recv_more():
                return None
        body, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return body

    def _read_line(self):
        while b"\r\n" not in self.rbuf:
            if len(self.rbuf) > 4096 or not self._recv_more():
                raise ValueError("bad chunk")
        line, _, self.rbuf = self.rbuf.partition(b"\r\n")
        return line

    def _read_chunked(self):
        out = []
        total = 0
        while True:
            size_s = self._read_line().split(b";")[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ValueError("bad chunk size")
            if size == 0:
                while self._read_line():
                    pass
                return b"".join(out)
            total += size
            if total > MAX_BODY_BYTES:
                raise ValueError("body too large")
            while len(self.rbuf) < size + 2:
                if not self._recv_more():
                    return None
            if self.rbuf[size:size + 2] != b"\r\n":
                raise ValueError("bad chunk framing")
            out.append(self.rbuf[:size])
            self.rbuf = self.rbuf[size + 2:]

    # -- response primitives -------------------------------------------------

    def head(self, status, ctype, length=None, chunked=False, extra=()):
        """Status line and headers in Go net/http's order: the handler's
        headers, then Date, Content-Length, Connection, Transfer-Encoding."""
        self.status = status
        lines = ["HTTP/1.1 %d %s" % (status, reason_phrase(status))]
        if ctype:
            lines.append("Content-Type: " + ctype)
        lines.extend(extra)
        lines.append("Date: " + http_date())
        if length is not None:
            lines.append("Content-Length: %d" % length)
        if self.close_after:
            lines.append("Connection: close")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(self, status, ctype, body, head_only=False):
        self.send(self.head(status, ctype, len(body)) + (b"" if head_only else body))

    def simple_error(self, status, text):
        """A protocol-level error (bad request line...): plain text, then close."""
        self.close_after = True
        try:
            self.respond(status, "text/plain; charset=utf-8", text.encode())
        except ClientGone:
            pass

    # -- connection loop -------------------------------------------------------

    def serve(self):
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.settimeout(IO_TIMEOUT_S)
            while not self.closed and not self.gone:
                req = self.read_request()
                if req is None:
                    break
                if not self.handle(req):
                    break
        except Exception as e:  # a bug must not kill the server or spam tracebacks
            self.srv.log("%s connection error: %s: %s" % (self.peer, type(e).__name__, e))
            if self.srv.verbose:
                import traceback
                traceback.print_exc()
        finally:
            if not self.closed:
                self.closed = True
                try:
                    self.sock.close()
                except OSError:
                    pass
