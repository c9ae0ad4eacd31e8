"""Backend faults (issue 4): every fault mode of the fake backend, in both
wire formats, ends in the right error frame, a usable connection, a
consistent history and no leaked socket or busy worker; and each timeout
(connect, first token with the "loading" status, idle gap, total)."""
import json
import socket
import time

import pytest

from conftest import Server
from backends_util import (chat_requests_since, collect, connect, history, last_id, ping,
                           run, streams, turn, wait_ended, wait_for, wait_idle,
                           wait_no_sockets)

EXTRA = ("ChatbotRateLimit off\n"
         "ChatbotFirstTokenTimeout 2s\n"
         "ChatbotTokenTimeout 1s\n"
         "ChatbotCircuitBreaker failures=1000\n"
         "ChatbotBackend ol {url}\n"
         "ChatbotBackend oa {url} type=openai\n"
         "<ChatbotBot ol>\n    ChatbotBotBackend ol\n</ChatbotBot>\n"
         "<ChatbotBot oa>\n    ChatbotBotBackend oa\n</ChatbotBot>\n")


@pytest.fixture(scope="module")
def fsrv(fake):
    s = Server(fake.url, extra=EXTRA.format(url=fake.url), name="faults")
    yield s
    s.stop()
    bad = s.bad_log_lines()
    assert not bad, "unexpected error-level lines in the error log:\n" + "\n".join(bad)


# directive -> (code or "response", partial answer kept, text in the message)
FAULTS = [
    ("fault=refuse", "backend_error", False, "closed the connection"),
    ("fault=hang_headers", "backend_timeout", False, "ChatbotFirstTokenTimeout"),
    ("fault=hang_mid after=2", "backend_timeout", True, "no token for 1 s"),
    ("fault=slow delay_ms=300 tokens=4", "response", False, None),
    ("fault=drop after=2", "interrupted", True, "lost mid-answer"),
    ("fault=drop_rst after=2", "interrupted", True, "lost mid-answer"),
    ("fault=error_line after=2 error=GPU%20on%20fire", "backend_error", True, "GPU on fire"),
    ("status=404", "model_not_found", False, "pull it"),
    ("status=503", "backend_busy", False, "retry"),
    ("status=400", "backend_bad_request", False, "rejected the request"),
    ("status=500", "backend_error", False, "HTTP 500"),
    ("status=401", "backend_error", False, "key="),
    ("fault=garbage after=2", "backend_protocol", True, "not valid"),
    ("fault=invalid_json after=2", "backend_protocol", True, "not valid"),
    ("fault=huge_line after=2 huge_kb=8192", "backend_protocol", True, "longer than"),
    ("fault=wrong_content_type", "backend_protocol", False, "text/html"),
    ("fault=no_done tokens=3", "interrupted", True, "before the answer was complete"),
    ("fault=empty", "interrupted", False, "before the answer was complete"),
]


@pytest.mark.parametrize("wire", ["ol", "oa"])
@pytest.mark.parametrize("directive,code,partial,text", FAULTS,
                         ids=[f[0].split()[0] for f in FAULTS])
def test_fault(fsrv, fake, wire, directive, code, partial, text):
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(fsrv)
        t0 = time.time()
        frames = await turn(ws, "q [[fake %s]]" % directive, bot_id=wire, id="f1",
                            timeout=15)
        took = time.time() - t0
        conv = frames[-1]["conversation_id"]
        lat = await ping(ws)
        after = await turn(ws, "and now fine [[fake tokens=2]]", bot_id=wire,
                           conversation_id=conv)
        h = await history(ws, conv)
        await ws.close()
        return frames, took, lat, after, h
    frames, took, lat, after, h = run(go())
    final = frames[-1]
    if code == "response":
        assert final["type"] == "response" and final["interrupted"] is False, frames
        assert final["content"] == streams(frames) == "t0 t1 t2 t3"
    else:
        assert final["type"] == "error", frames
        assert final["code"] == code, final
        assert final["id"] == "f1"
        assert text in final["message"], final["message"]
        assert bool(final.get("partial")) == partial, final
    assert took < 6, "the fault took %.1f s to report" % took
    # the connection is usable
    assert lat < 2.0
    assert after[-1]["type"] == "response" and after[-1]["content"] == "t0 t1"
    # the history is consistent: question, answer (partial/complete) or error
    # line, then the next exchange
    msgs = h["messages"]
    assert [m["role"] for m in msgs[-4:]] == ["user", "assistant", "user", "assistant"]
    ans = msgs[-3]
    assert ans["streaming"] is False
    if code == "response":
        assert ans["content"] == final["content"] and ans["interrupted"] is False
    elif partial:
        assert ans["content"] == streams(frames) and ans["content"]
        assert ans["interrupted"] is True
        assert final["index"] == ans["index"]
    else:
        # the failure stays visible in the conversation, with its code
        assert ans.get("error") is True and ans.get("code") == code, ans
        assert ans["content"] == final["message"]
    assert msgs[-1]["content"] == "t0 t1" and msgs[-1]["interrupted"] is False
    # the backend request of the fault has ended, and nothing is left open
    reqs = chat_requests_since(fake, mark)
    assert len(reqs) >= 2
    for r in reqs:
        assert wait_ended(fake, r["id"])["t_end"] is not None
    if "huge_line" in directive:
        # the 8 MiB line was cut at the 1 MiB line cap, not read whole
        rec = wait_ended(fake, reqs[0]["id"])
        assert rec["client_closed_at"] is not None
    assert wait_no_sockets(fsrv, fake.port) == []


def test_no_leak_after_faults(fsrv, fake):
    """After all the faults: no socket to the backend, no busy worker, no
    turn left generating or queued, no slot held."""
    assert wait_no_sockets(fsrv, fake.port) == []
    st, sa = wait_idle(fsrv)
    assert all(b["active"] == 0 and b["queued"] == 0 for b in st["backends"])
    # the children still have their configured threads, none stuck
    assert int(sa["BusyWorkers"]) <= 1


# ---- timeouts ------------------------------------------------------------------------------

def test_first_token_timeout_with_loading_status(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotFirstTokenTimeout 2s")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        await ws.send(json.dumps({"type": "message", "content": "[[fake fault=hang_headers]]"}))
        frames = await collect(ws, stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    loading = [f for f in frames if f.get("type") == "status" and f.get("state") == "loading"]
    assert len(loading) == 1
    assert 1.4 <= loading[0]["_t"] - t0 < 1.9
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_timeout"
    assert "within 2 s" in err["message"] and "ChatbotFirstTokenTimeout" in err["message"]
    assert 1.95 <= err["_t"] - t0 < 2.5
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["client_closed_at"] - t0 < 2.5


def test_slow_model_load_then_answer(httpd, fake):
    """first_delay_ms: "loading" after 1.5 s, then "generating" and the answer."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotFirstTokenTimeout 5s")

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        await ws.send(json.dumps({"type": "message",
                                  "content": "[[fake first_delay_ms=2200 tokens=3]]"}))
        frames = await collect(ws, stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    states = [(f["state"], f["_t"] - t0) for f in frames if f.get("type") == "status"]
    names = [s_ for s_, _ in states]
    assert "loading" in names
    i = names.index("loading")
    assert names[i + 1] == "generating", states
    assert states[i][1] >= 1.4
    assert frames[-1]["type"] == "response" and frames[-1]["content"] == "t0 t1 t2"
    assert frames[-1]["stats"]["ttft_ms"] >= 2100
    assert frames[-1]["stats"]["load_ms"] >= 2100


def test_token_timeout_keeps_partial(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotTokenTimeout 1s")

    async def go():
        ws, _ = await connect(s)
        frames = await turn(ws, "[[fake fault=hang_mid after=3 tokens=10]]", stamp=True, timeout=10)
        await ws.close()
        return frames
    frames = run(go())
    err = frames[-1]
    toks = [f for f in frames if f.get("type") == "stream"]
    assert err["type"] == "error" and err["code"] == "backend_timeout" and err["partial"]
    assert 0.95 <= err["_t"] - toks[-1]["_t"] < 1.5
    assert streams(frames) == "t0 t1 t2"


def test_total_timeout(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotTotalTimeout 2s")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        frames = await turn(ws, "[[fake tokens=100 delay_ms=100]]", stamp=True, timeout=10)
        await ws.close()
        return t0, frames
    t0, frames = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_timeout" and err["partial"]
    assert "ChatbotTotalTimeout" in err["message"]
    assert 1.95 <= err["_t"] - t0 < 2.5
    (rec,) = chat_requests_since(fake, mark)
    assert wait_ended(fake, rec["id"])["outcome"] == "client_closed"


def test_connect_timeout(httpd, fake):
    """A backend that never completes the TCP handshake: a listener whose
    accept queue is full (Linux then drops SYNs), the loopback stand-in for
    an unroutable address."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    try:
        # fill the accept queue (backlog 0 admits one, sometimes two)
        for _ in range(4):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.2)
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(("127.0.0.1", port))
            pytest.skip("this kernel completes handshakes on a full accept queue")
        except (socket.timeout, OSError):
            pass
        finally:
            probe.close()
        s = httpd(extra="ChatbotRateLimit off\nChatbotConnectTimeout 1s",
                  backend="http://127.0.0.1:%d" % port)

        async def go():
            ws, _ = await connect(s)
            t0 = time.time()
            await ws.send(json.dumps({"type": "message", "content": "hello?"}))
            await wait_for(ws, lambda m: m.get("type") == "ack")
            lat = await ping(ws)  # not blocked while connecting
            frames = await collect(ws, stamp=True, timeout=10)
            await ws.close()
            return t0, lat, frames
        t0, lat, frames = run(go())
        err = frames[-1]
        assert lat < 0.1
        assert err["type"] == "error" and err["code"] == "backend_unreachable", err
        assert "1000 ms" in err["message"]
        assert 0.95 <= err["_t"] - t0 < 1.6
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_connection_refused(httpd, fake):
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    s = httpd(extra="ChatbotRateLimit off", backend="http://127.0.0.1:%d" % port)

    async def go():
        ws, _ = await connect(s)
        t0 = time.time()
        frames = await turn(ws, "anyone?")
        took = time.time() - t0
        await ws.close()
        return frames, took
    frames, took = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "backend_unreachable"
    assert "is the server running" in err["message"] and str(port) in err["message"]
    assert took < 0.5


def test_endless_answer_is_cut_at_max_answer_bytes(httpd, fake):
    """A backend that never stops: the answer is cut at ChatbotMaxAnswerBytes,
    kept (interrupted), and the backend request closed."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotMaxAnswerBytes 8k")
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(s)
        frames = await turn(ws, "[[fake tokens=100000 delay_ms=0]]", timeout=15)
        h = await history(ws, frames[-1]["conversation_id"])
        await ws.close()
        return frames, h
    frames, h = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == "too_large" and err["partial"]
    kept = h["messages"][-1]
    assert kept["interrupted"] is True and 0 < len(kept["content"]) <= 8192
    (rec,) = chat_requests_since(fake, mark)
    rec = wait_ended(fake, rec["id"])
    assert rec["outcome"] == "client_closed" and rec["tokens_sent"] < 100000
    assert wait_no_sockets(s, fake.port) == []
