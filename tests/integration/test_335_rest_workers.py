"""REST turns are bounded like WebSocket answers (issue 13): a POST that
waits for a whole answer holds its request's thread, so it takes a place
in ChatbotMaxWorkers and in its address's ChatbotMaxAnswersPerIP. Beyond
them it gets 503 server_busy with Retry-After at once, and the site's
other requests keep the rest of the threads."""
import json
import socket
import threading
import time

from test_330_ws_parking import get_ms, wait_metric

NOLIMIT = "ChatbotRateLimit off\nChatbotAnonymousRateLimit off\n"
SLOW = "slow [[fake tokens=6 delay_ms=500]]"   # about 3 s per answer


def post_raw(port, path, body, cookie=None):
    """Sends a POST and returns its socket (the reply read later)."""
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    extra = b"Cookie: %s\r\n" % cookie.encode() if cookie else b""
    s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Connection: close\r\n%sContent-Length: %d\r\n\r\n"
              % (path.encode(), extra, len(data)) + data)
    return s


def read_reply(s):
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
    if hdrs.get("transfer-encoding") == "chunked":
        out, rest = b"", body
        while rest:
            n, _, rest = rest.partition(b"\r\n")
            n = int(n, 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    return status, hdrs, json.loads(body)


def flood(server, n, path="/api/chat", body=None, cookie=None):
    return [post_raw(server.port, path, body or {"message": SLOW}, cookie) for _ in range(n)]


def flood_while_serving(s, n):
    """n slow REST turns at once from one address; while they run, GET /
    is served within a second. Returns every turn's reply."""
    socks = flood(s, n)
    try:
        time.sleep(1.0)
        assert max(get_ms(s.base + "/", 5, timeout=5)) < 1000
    finally:
        replies = [read_reply(k) for k in socks]
    return replies


def test_rest_turns_share_the_worker_budget(httpd):
    """One child of 8 threads: ChatbotMaxWorkers auto is 4 and
    ChatbotMaxAnswersPerIP auto 2. Ten slow answers asked at once from one
    address: 2 are answered, 8 refused at once with 503 server_busy and a
    Retry-After; GET / is served meanwhile; afterwards a turn works again."""
    s = httpd(extra=NOLIMIT, serverlimit=1, threads=8)
    replies = flood_while_serving(s, 10)
    ok = [r for r in replies if r[0] == 200]
    busy = [r for r in replies if r[0] == 503]
    assert len(ok) == 2 and len(busy) == 8, [(r[0], r[2].get("error")) for r in replies]
    for status, hdrs, body in busy:
        assert body["error"] == "server_busy", body
        assert hdrs.get("retry-after") == "5" and body["retry_after_ms"] == 5000, (hdrs, body)
    for status, hdrs, body in ok:
        assert body["response"].split() == ["t%d" % i for i in range(6)], body
    # every place is given back: two more answers fit again
    again = [read_reply(k) for k in flood(s, 2, body={"message": "hi [[fake tokens=2]]"})]
    assert [r[0] for r in again] == [200, 200], again


def test_rest_turns_bounded_by_max_workers(httpd):
    """Without the per-address cap, ChatbotMaxWorkers alone bounds them:
    4 of 10 are answered, and WebSocket turns meanwhile wait their turn
    rather than taking more threads."""
    s = httpd(extra=NOLIMIT + "ChatbotMaxAnswersPerIP off\n", serverlimit=1, threads=8)
    replies = flood_while_serving(s, 10)
    codes = sorted(r[0] for r in replies)
    assert codes == [200] * 4 + [503] * 6, codes


def test_legacy_task_route_is_bounded_too(httpd):
    """The old controller's POST /api/bot/{id}/task keeps its shape:
    {"success": false, "error": ...} with the code server_busy."""
    s = httpd(extra=NOLIMIT, serverlimit=1, threads=8)
    cookie = None
    for i in range(4):
        status, hdrs, body = read_reply(post_raw(s.port, "/api/bot/launch",
                                                 {"bot_id": "BOT-%03d" % i}, cookie))
        assert status == 200 and body["success"] is True, body
        cookie = cookie or hdrs["set-cookie"].split(";")[0]
    socks = [post_raw(s.port, "/api/bot/BOT-%03d/task" % i, {"command": SLOW}, cookie)
             for i in range(4)]
    replies = [read_reply(k) for k in socks]
    refused = [r for r in replies if r[2].get("success") is False]
    assert len(refused) == 2, replies
    for status, hdrs, body in refused:
        assert body["code"] == "server_busy" and body["response"] is None, body
