"""Test clients for the WebSocket endpoint.

RawWS     a blocking RFC 6455 client over a plain socket that builds frames
          byte by byte (masking, fragmentation, bad frames on purpose)
handshake send a raw upgrade request, return (status, headers, rest)
Chat      a small synchronous wrapper around the `websockets` library
"""
import asyncio
import base64
import hashlib
import json
import os
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def handshake(port, path="/ws", headers=None, method="GET", version="HTTP/1.1",
              host=None, timeout=5.0, key=None, drop=(), source=None):
    """Sends an upgrade request; returns (status, headers dict (lower-case
    keys), socket, leftover bytes). Headers in `drop` are omitted; source:
    the local address to connect from (loopback has 127.0.0.0/8)."""
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    h = {
        "Host": host or "127.0.0.1:%d" % port,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": key,
        "Sec-WebSocket-Version": "13",
    }
    if headers:
        h.update(headers)
    for d in drop:
        h.pop(d, None)
    req = "%s %s %s\r\n" % (method, path, version)
    req += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                 source_address=(source, 0) if source else None)
    s.sendall(req.encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    return status, {k: ", ".join(v) for k, v in hdrs.items()}, s, rest, key


class RawWS:
    """A WebSocket client that speaks frames by hand."""

    def __init__(self, port, path="/ws", headers=None, timeout=5.0):
        status, hdrs, s, rest, key = handshake(port, path, headers, timeout=timeout)
        if status != 101:
            raise RuntimeError("handshake failed: %d %r" % (status, hdrs))
        assert hdrs.get("sec-websocket-accept") == accept_for(key)
        self.sock = s
        self.buf = rest
        self.sock.settimeout(timeout)
        self.hello = None

    @staticmethod
    def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, key=b"\x12\x34\x56\x78",
              length=None):
        if isinstance(payload, str):
            payload = payload.encode()
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload) if length is None else length
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
            return hdr + key + masked
        return hdr + payload

    def send_raw(self, data, chop=None, delay=0.0):
        if chop:
            for i in range(0, len(data), chop):
                self.sock.sendall(data[i:i + chop])
                if delay:
                    time.sleep(delay)
        else:
            self.sock.sendall(data)

    def send(self, opcode, payload=b"", **kw):
        self.send_raw(self.frame(opcode, payload, **kw))

    def send_json(self, obj):
        self.send(1, json.dumps(obj))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk

    def recv_frame(self):
        """Returns (fin, opcode, payload, masked)."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        masked = bool(b1 & 0x80)
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        if masked:
            off += 4
        self._need(off + n)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload, masked

    def recv_json(self, skip_types=("status", "sessions")):
        """Next text frame as JSON, answering pings, skipping the given types."""
        while True:
            fin, op, payload, masked = self.recv_frame()
            assert not masked, "server frames must not be masked"
            if op == 9:
                self.send(10, payload)
                continue
            if op == 8:
                raise EOFError("close %r" % payload)
            if op == 1:
                msg = json.loads(payload.decode("utf-8"))
                if msg.get("type") == "hello" and self.hello is None:
                    self.hello = msg
                    continue
                if msg.get("type") in skip_types:
                    continue
                return msg

    def close_code(self, timeout=5.0):
        """Reads until a close frame; returns its code (None if no code) or
        'eof' if the TCP connection ended without one."""
        self.sock.settimeout(timeout)
        try:
            while True:
                fin, op, payload, masked = self.recv_frame()
                if op == 8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except (EOFError, ConnectionResetError):
            return "eof"

    def wait_eof(self, timeout=5.0):
        """True if the server closes TCP within timeout."""
        end = time.time() + timeout
        self.sock.settimeout(0.2)
        while time.time() < end:
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                continue
            except (ConnectionResetError, OSError):
                return True
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run(coro):
    return asyncio.run(coro)


async def collect_turn(ws, timeout=20.0, until=("response", "error")):
    """Receives frames until a response or error; returns the list."""
    frames = []
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            raise TimeoutError("no final frame; got %r" % frames)
        raw = await asyncio.wait_for(ws.recv(), left)
        msg = json.loads(raw)
        frames.append(msg)
        if msg.get("type") in until:
            return frames


async def recv_type(ws, type_, timeout=10.0):
    end = time.time() + timeout
    while True:
        left = end - time.time()
        if left <= 0:
            raise TimeoutError("no %s frame" % type_)
        msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        if msg.get("type") == type_:
            return msg


def ssl_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class H2WS:
    """A WebSocket over HTTP/2 (RFC 8441 extended CONNECT) using Debian's
    python3-h2, over TLS with ALPN h2. Frames inside DATA are plain RFC 6455
    frames (masked by the client)."""

    def __init__(self, port, path="/ws", origin=None, timeout=5.0, headers=()):
        import h2.config
        import h2.connection
        import h2.events
        import h2.settings
        self.events = h2.events
        ctx = ssl_ctx()
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2", "server did not negotiate h2"
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self.buf = b""
        self.closed = False
        self.connect_enabled = None
        # wait for the server's SETTINGS: it must allow extended CONNECT
        end = time.time() + timeout
        while self.connect_enabled is None and time.time() < end:
            self._pump()
        assert self.connect_enabled, "server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1"
        self.sid = self.conn.get_next_available_stream_id()
        extra = list(headers)
        headers = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                   (":path", path), (":authority", "127.0.0.1:%d" % port),
                   ("sec-websocket-version", "13")]
        if origin:
            headers.append(("origin", origin))
        headers.extend(extra)
        self.conn.send_headers(self.sid, headers, end_stream=False)
        self.sock.sendall(self.conn.data_to_send())
        self.status = None
        while self.status is None and time.time() < end:
            self._pump()

    def _pump(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise EOFError("h2 connection closed")
        for ev in self.conn.receive_data(data):
            if isinstance(ev, self.events.RemoteSettingsChanged):
                s = ev.changed_settings.get(8)  # ENABLE_CONNECT_PROTOCOL
                if s is not None:
                    self.connect_enabled = bool(s.new_value)
                elif self.connect_enabled is None:
                    self.connect_enabled = False
            elif isinstance(ev, self.events.ResponseReceived):
                self.status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, self.events.DataReceived):
                self.buf += ev.data
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, (self.events.StreamEnded, self.events.StreamReset)):
                self.closed = True
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def send(self, opcode, payload=b""):
        self.conn.send_data(self.sid, RawWS.frame(opcode, payload))
        self.sock.sendall(self.conn.data_to_send())

    def send_json(self, obj):
        self.send(1, json.dumps(obj))

    def end_stream(self):
        """Ends our side of the stream (END_STREAM): the h2 "TCP FIN"."""
        self.conn.end_stream(self.sid)
        self.sock.sendall(self.conn.data_to_send())

    def wait_stream_end(self, timeout=5.0):
        """True if the server ends (or resets) the stream within timeout."""
        end = time.time() + timeout
        while not self.closed and time.time() < end:
            self.sock.settimeout(max(0.05, min(0.2, end - time.time())))
            try:
                self._pump()
            except (socket.timeout, ssl.SSLError):
                continue
            except EOFError:
                break
        return self.closed

    def recv_frame(self, timeout=5.0):
        end = time.time() + timeout
        while True:
            if len(self.buf) >= 2:
                b0, b1 = self.buf[0], self.buf[1]
                n, off = b1 & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                if (b1 & 0x7F) < 126 or off > 2:
                    if b1 & 0x80:
                        off += 4
                    if len(self.buf) >= off + n:
                        payload = self.buf[off:off + n]
                        self.buf = self.buf[off + n:]
                        return bool(b0 & 0x80), b0 & 0x0F, payload, bool(b1 & 0x80)
            if time.time() > end:
                raise TimeoutError("no frame")
            self.sock.settimeout(max(0.05, end - time.time()))
            self._pump()

    def recv_json(self, skip_types=("status", "sessions", "hello", "ack")):
        while True:
            fin, op, payload, masked = self.recv_frame()
            assert not masked
            if op == 9:
                self.send(10, payload)
                continue
            if op == 8:
                raise EOFError("close %r" % payload)
            msg = json.loads(payload)
            if msg.get("type") not in skip_types:
                return msg

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
