"""Capacity and resilience (issue 4): the per-backend limit with its fair
FIFO queue shared by all children (positions, updates, cap, Stop while
queued), failover, the circuit breaker shared by all children, health
(/api/health, the status board, mod_status) and the model list
(/api/models)."""
import asyncio
import json
import socket
import time

import pytest

from backends_util import (api, failed_turn_line, new_sid, chat_requests_since,
                           child_of_client, collect, connect,
                           last_id, metrics, run, status_auto, turn,
                           wait_ended, wait_for, wait_idle, wait_no_sockets, ws_local_port)


def closed_port():
    sk = socket.socket()
    sk.bind(("127.0.0.1", 0))
    port = sk.getsockname()[1]
    sk.close()
    return port


async def spread(server, n=2, tries=16, sid=None):
    """Opens WebSocket connections until n of them are served by different
    httpd children; returns ([ws, ...] one per child, [every ws opened])."""
    by_child = {}
    opened = []
    for _ in range(tries):
        ws, _ = await connect(server, sid=sid)
        opened.append(ws)
        pid = child_of_client(server, ws_local_port(ws))
        by_child.setdefault(pid, ws)
        if len(by_child) >= n:
            break
    if len(by_child) < n:
        pytest.skip("connections all landed in one httpd child")
    return list(by_child.values())[:n], opened


async def close_all(wss):
    for ws in wss:
        await ws.close()


def msg(content, **kw):
    m = {"type": "message", "content": content}
    m.update(kw)
    return json.dumps(m)


def is_status(state, position=None):
    def pred(m):
        return (m.get("type") == "status" and m.get("state") == state and
                (position is None or m.get("position") == position))
    return pred


def is_final(m):
    return m.get("type") in ("response", "error")


QUEUE = ("ChatbotRateLimit off\nChatbotQueueSize 2\n"
         "ChatbotBackend q {url} max=1\n"
         "<ChatbotBot qb>\n    ChatbotBotBackend q\n</ChatbotBot>\n")


def test_queue_fifo_positions_cap_across_children(httpd, fake):
    s = httpd(extra=QUEUE.format(url=fake.url), serverlimit=2, threads=16)
    mark = last_id(fake)

    async def go():
        (x, y), opened = await spread(s, 2)
        c, _ = await connect(s)
        d, _ = await connect(s)
        opened += [c, d]
        # A (child X) holds the only slot
        await x.send(msg("A [[fake tokens=30 delay_ms=40]]", id="A"))
        await wait_for(x, lambda m: m.get("type") == "stream")
        # B (child Y) is first in the queue, C second
        await y.send(msg("B [[fake tokens=10 delay_ms=40]]", id="B"))
        await wait_for(y, is_status("queued", 1))
        await c.send(msg("C [[fake tokens=3]]", id="C"))
        await wait_for(c, is_status("queued", 2))
        # the queue (2) is full: D is told at once
        t0 = time.time()
        await d.send(msg("D", id="D"))
        d_frames = await collect(d, timeout=5)
        d_took = time.time() - t0
        _, board = api(s, "/api/status")
        a_final = await wait_for(x, is_final, timeout=15)
        # B runs when A is done; C moves up to position 1
        b_frames = []
        await wait_for(y, is_status("generating"), frames=b_frames)
        c_frames = []
        await wait_for(c, is_status("queued", 1), frames=c_frames)
        b_final = await wait_for(y, is_final, frames=b_frames)
        c_final = await wait_for(c, is_final, frames=c_frames)
        await close_all(opened)
        return d_frames, d_took, board, a_final, b_final, c_final
    d_frames, d_took, board, a_final, b_final, c_final = run(go())
    assert d_frames[-1]["type"] == "error" and d_frames[-1]["code"] == "queue_full"
    assert "busy" in d_frames[-1]["message"]
    assert d_took < 0.5
    q = [b for b in board["backends"] if b["name"] == "q"][0]
    assert q["active"] == 1 and q["queued"] == 2 and q["max"] == 1
    assert board["queued"] == 2 and board["generating"] == 1
    for f in (a_final, b_final, c_final):
        assert f["type"] == "response", f
    assert b_final["stats"]["queue_ms"] > 500
    # FIFO, one at a time
    reqs = chat_requests_since(fake, mark)
    order = [r["body"]["messages"][-1]["content"].split()[0] for r in reqs]
    assert order == ["A", "B", "C"]
    recs = [wait_ended(fake, r["id"]) for r in reqs]
    for prev, nxt in zip(recs, recs[1:]):
        assert nxt["t_start"] >= prev["t_end"] - 0.01
    wait_idle(s)
    assert wait_no_sockets(s, fake.port) == []


def test_stop_while_queued_leaves_the_queue(httpd, fake):
    s = httpd(extra=QUEUE.format(url=fake.url), serverlimit=2, threads=16)
    mark = last_id(fake)

    async def go():
        (x, y), opened = await spread(s, 2)
        c, _ = await connect(s)
        opened.append(c)
        await x.send(msg("A [[fake tokens=200 delay_ms=30]]"))
        await wait_for(x, lambda m: m.get("type") == "stream")
        await y.send(msg("B [[fake tokens=3]]"))
        await wait_for(y, is_status("queued", 1))
        await c.send(msg("C [[fake tokens=3]]"))
        await wait_for(c, is_status("queued", 2))
        # B gives up while waiting
        await y.send(json.dumps({"type": "stop"}))
        b_final = await wait_for(y, is_final)
        c_up = await wait_for(c, is_status("queued", 1), timeout=3)
        _, board = api(s, "/api/status")
        # A is stopped: C gets the slot at once, not after a dead ticket
        t0 = time.time()
        await x.send(json.dumps({"type": "stop"}))
        await wait_for(x, is_final)
        await wait_for(c, is_status("generating"), timeout=3)
        c_wait = time.time() - t0
        c_final = await wait_for(c, is_final)
        await close_all(opened)
        return b_final, c_up, board, c_wait, c_final
    b_final, c_up, board, c_wait, c_final = run(go())
    assert b_final["type"] == "response" and b_final["interrupted"] is True
    assert b_final["content"] == ""
    q = [b for b in board["backends"] if b["name"] == "q"][0]
    assert q["queued"] == 1 and q["active"] == 1
    assert c_wait < 0.5
    assert c_final["type"] == "response"
    order = [r["body"]["messages"][-1]["content"].split()[0]
             for r in chat_requests_since(fake, mark)]
    assert order == ["A", "C"]  # B never reached the backend
    wait_idle(s)


def test_stop_from_another_child(httpd, fake):
    """Stop sent by another tab served by another child: a queued turn
    leaves the queue, a running one closes its backend request."""
    s = httpd(extra=QUEUE.format(url=fake.url), serverlimit=2, threads=16)
    sid = new_sid()
    mark = last_id(fake)

    async def go():
        (x, y), opened = await spread(s, 2, sid=sid)
        other, _ = await connect(s)
        opened.append(other)
        # another user's long answer holds the slot; ours waits
        await other.send(msg("O [[fake tokens=200 delay_ms=30]]"))
        await wait_for(other, lambda m: m.get("type") == "stream")
        await x.send(msg("Q [[fake tokens=3]]"))
        ack = await wait_for(x, lambda m: m.get("type") == "ack")
        await wait_for(x, is_status("queued", 1))
        await y.send(json.dumps({"type": "stop", "conversation_id": ack["conversation_id"]}))
        q_final = await wait_for(x, is_final, timeout=3)
        # now a running one
        await x.send(msg("R [[fake tokens=200 delay_ms=30]]"))
        ack = await wait_for(x, lambda m: m.get("type") == "ack")
        await other.send(json.dumps({"type": "stop"}))
        await wait_for(other, is_final)
        await wait_for(x, lambda m: m.get("type") == "stream")
        t_stop = time.time()
        await y.send(json.dumps({"type": "stop", "conversation_id": ack["conversation_id"]}))
        r_final = await wait_for(x, is_final, timeout=3)
        await close_all(opened)
        return q_final, t_stop, r_final
    q_final, t_stop, r_final = run(go())
    assert q_final["type"] == "response" and q_final["interrupted"] is True
    assert r_final["type"] == "response" and r_final["interrupted"] is True
    reqs = chat_requests_since(fake, mark)
    order = [r["body"]["messages"][-1]["content"].split()[0] for r in reqs]
    assert order == ["O", "R"]
    rec = wait_ended(fake, reqs[1]["id"])
    took = rec["client_closed_at"] - t_stop
    assert 0 <= took < 0.15, took  # the holder polls stop requests every 50 ms
    wait_idle(s)


# ---- failover ----------------------------------------------------------------------------

FAILOVER = ("ChatbotRateLimit off\n"
            "ChatbotBackend dead http://127.0.0.1:{dead}\n"
            "ChatbotBackend b1 {url}\n"
            "ChatbotBackend b2 {url}\n"
            "<ChatbotBot refused>\n    ChatbotBotBackend dead b2\n</ChatbotBot>\n"
            "<ChatbotBot busy>\n    ChatbotBotBackend b1 b2\n</ChatbotBot>\n")


def _m(mx, name, **labels):
    key = name + "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}"
    return mx.get(key, 0)


def test_failover_on_refused_and_503_without_double_counting(httpd, fake):
    s = httpd(extra=FAILOVER.format(url=fake.url, dead=closed_port()))
    mark = last_id(fake)
    m0 = metrics(s)

    async def go():
        ws, _ = await connect(s)
        a = await turn(ws, "one [[fake tokens=2]]", bot_id="refused")
        fake.script({"status": 503}, {"reply": "from the second"})
        b = await turn(ws, "two", bot_id="busy")
        fake.script({"status": 503}, {"status": 503})
        c = await turn(ws, "three", bot_id="busy")
        await ws.close()
        return a, b, c
    a, b, c = run(go())
    assert a[-1]["type"] == "response" and a[-1]["stats"]["backend"] == "b2"
    assert b[-1]["type"] == "response" and b[-1]["content"] == "from the second"
    assert b[-1]["stats"]["backend"] == "b2"
    assert c[-1]["type"] == "error" and c[-1]["code"] == "backend_busy"
    # which backend said what: in the log, not in the user's message
    assert "'b2'" not in c[-1]["message"]
    assert "backend 'b2' is busy (HTTP 503" in failed_turn_line(
        s, c[-1]["conversation_id"], "backend_busy")
    reqs = chat_requests_since(fake, mark)
    assert len(reqs) == 1 + 2 + 2
    m1 = metrics(s)
    # one answer per successful turn, on the backend that gave it
    assert _m(m1, "chatbot_answers_total", bot="refused", backend="b2") - \
        _m(m0, "chatbot_answers_total", bot="refused", backend="b2") == 1
    assert _m(m1, "chatbot_answers_total", bot="busy", backend="b2") - \
        _m(m0, "chatbot_answers_total", bot="busy", backend="b2") == 1
    assert _m(m1, "chatbot_answers_total", bot="busy", backend="b1") == 0
    # one error for the turn that failed everywhere, none for the failovers
    assert _m(m1, "chatbot_errors_total", code="backend_busy") - \
        _m(m0, "chatbot_errors_total", code="backend_busy") == 1
    assert _m(m1, "chatbot_errors_total", code="backend_unreachable") == 0
    assert _m(m1, "chatbot_turn_errors_total", bot="busy", backend="b2") == 1
    assert _m(m1, "chatbot_turn_errors_total", bot="busy", backend="b1") == 0
    assert m1["chatbot_answers_generating"] == 0 and m1["chatbot_turns_queued"] == 0


# ---- circuit breaker -------------------------------------------------------------------------

BREAKER = ("ChatbotRateLimit off\nChatbotCircuitBreaker failures=5 cooldown=2s\n"
           "ChatbotBackend cb {url}\n"
           "<ChatbotBot cbb>\n    ChatbotBotBackend cb\n</ChatbotBot>\n")


def _breaker(s):
    _, st = api(s, "/api/status")
    return [b for b in st["backends"] if b["name"] == "cb"][0]["breaker"]


def test_circuit_breaker_shared_by_children(httpd, fake):
    s = httpd(extra=BREAKER.format(url=fake.url), serverlimit=2, threads=16)

    async def go():
        (x, y), opened = await spread(s, 2)
        out = {}
        mark = last_id(fake)
        fake.script(*[{"status": 503}] * 5)
        fails = []
        for i in range(5):  # alternate children
            fails.append((await turn((x, y)[i % 2], "f%d" % i))[-1])
        out["fails"] = fails
        out["sent"] = len(chat_requests_since(fake, mark))
        out["state1"] = _breaker(s)
        # open: a fast error without contacting the backend, in both children
        mark = last_id(fake)
        t0 = time.time()
        out["fast"] = [(await turn(ws, "fast"))[-1] for ws in (x, y)]
        out["fast_took"] = time.time() - t0
        out["fast_sent"] = len(chat_requests_since(fake, mark))
        # after the cooldown: one probe (half-open), the other child is refused
        await asyncio.sleep(2.1)
        mark = last_id(fake)
        await x.send(msg("probe [[fake tokens=20 delay_ms=40 first_delay_ms=1000]]"))
        await wait_for(x, is_status("generating"))
        await asyncio.sleep(0.1)
        out["state2"] = _breaker(s)
        out["during_probe"] = (await turn(y, "meanwhile"))[-1]
        # the probe's first token closes the breaker, before its answer ends
        await wait_for(x, lambda m: m.get("type") == "stream")
        out["state3"] = _breaker(s)
        out["probe"] = await wait_for(x, is_final)
        out["probe_sent"] = len(chat_requests_since(fake, mark))
        out["after"] = (await turn(y, "after [[fake tokens=2]]"))[-1]
        # a failed probe opens it again at once
        fake.script(*[{"status": 503}] * 5)
        for i in range(5):
            await turn((x, y)[i % 2], "g%d" % i)
        await asyncio.sleep(2.1)
        fake.script({"status": 503})
        out["bad_probe"] = (await turn(x, "bad probe"))[-1]
        mark = last_id(fake)
        out["reopened"] = (await turn(y, "again"))[-1]
        out["reopened_sent"] = len(chat_requests_since(fake, mark))
        await close_all(opened)
        return out
    o = run(go())
    assert [f["code"] for f in o["fails"]] == ["backend_busy"] * 5
    assert o["sent"] == 5
    assert o["state1"] == "open"
    for f in o["fast"]:
        assert f["type"] == "error" and f["code"] == "backend_unreachable"
        assert "circuit breaker" not in f["message"]
    assert "circuit breaker open" in failed_turn_line(s, o["fast"][0]["conversation_id"],
                                                      "backend_unreachable")
    assert o["fast_sent"] == 0 and o["fast_took"] < 0.5
    assert o["state2"] == "half-open"
    assert o["during_probe"]["code"] == "backend_unreachable"
    assert o["probe"]["type"] == "response"
    assert o["probe_sent"] == 1
    assert o["state3"] == "closed"
    assert o["after"]["type"] == "response"
    assert o["bad_probe"]["code"] == "backend_busy"
    assert o["reopened"]["code"] == "backend_unreachable" and o["reopened_sent"] == 0


# ---- health and models -------------------------------------------------------------------------

HEALTH = ("ChatbotRateLimit off\n"
          "ChatbotBackend ol {url}\n"
          "ChatbotBackend oa {url} type=openai\n"
          "ChatbotBackend dead http://127.0.0.1:{dead}\n"
          "<ChatbotBot hb>\n    ChatbotBotBackend ol oa dead\n</ChatbotBot>\n")


def test_health_version_status_board_and_mod_status(httpd, fake):
    s = httpd(extra=HEALTH.format(url=fake.url, dead=closed_port()))
    mark = last_id(fake)
    code, h = api(s, "/api/health")
    assert code == 200 and h["status"] == "ok"
    be = {b["name"]: b for b in h["backends"]}
    assert be["ol"]["healthy"] is True and be["ol"]["version"] == "0.12.6"
    assert be["oa"]["healthy"] is True and be["oa"]["type"] == "openai"
    assert be["dead"]["healthy"] is False and be["dead"]["detail"]
    paths = sorted(r["path"] for r in requests_since_all(fake, mark))
    assert "/api/version" in paths and "/v1/models" in paths
    # a turn's outcome keeps what the probe learnt
    async def go():
        ws, _ = await connect(s)
        f = await turn(ws, "[[fake tokens=2]]")
        await ws.send(json.dumps({"type": "status"}))
        board = await wait_for(ws, lambda m: m.get("type") == "status_board")
        await ws.close()
        return f, board
    f, board = run(go())
    assert f[-1]["type"] == "response"
    bb = {b["name"]: b for b in board["backends"]}
    assert bb["ol"]["healthy"] is True and bb["ol"]["version"] == "0.12.6"
    assert bb["dead"]["healthy"] is False
    sa = status_auto(s)
    assert sa["ChatbotBackend[ol]Up"] == "1" and sa["ChatbotBackend[dead]Up"] == "0"
    mx = metrics(s)
    assert mx['chatbot_backend_up{backend="ol"}'] == 1
    assert mx['chatbot_backend_up{backend="dead"}'] == 0


def requests_since_all(fake, mark):
    return [r for r in fake.requests() if r["id"] > mark]


def test_health_503_when_every_backend_is_down(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off", backend="http://127.0.0.1:%d" % closed_port())
    t0 = time.time()
    code, h = api(s, "/api/health")
    assert time.time() - t0 < 1
    assert code == 503 and h["status"] == "unavailable"
    assert h["backends"][0]["healthy"] is False
    assert "onnect" in h["backends"][0]["detail"]


def test_health_probe_failure_modes(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off\nChatbotHealthCheckInterval 1s")
    fake.script({"path": "/api/version", "status": 500})
    code, h = api(s, "/api/health")
    assert code == 503 and h["backends"][0]["detail"] == "HTTP 500"
    time.sleep(2.1)  # a backend known down is probed again after 2 s
    code, h = api(s, "/api/health")
    assert code == 200 and h["backends"][0]["version"] == "0.12.6"


def test_models_route(httpd, fake):
    s = httpd(extra=HEALTH.format(url=fake.url, dead=closed_port()))
    code, m = api(s, "/api/models")
    assert code == 200
    got = {b["name"]: b for b in m["backends"]}
    assert set(got) == {"default", "ol", "oa", "dead"}
    assert got["ol"]["models"] == ["qwen2.5-coder:7b", "llama3.2:latest"]
    assert "error" not in got["ol"] and got["ol"]["type"] == "ollama"
    assert got["oa"]["models"] == ["qwen2.5-coder:7b", "llama3.2:latest"]
    assert got["oa"]["type"] == "openai"
    assert got["dead"]["models"] == [] and "onnect" in got["dead"]["error"]
    # broken answers become an error per backend, never a failed route
    fake.script({"path": "/api/tags", "status": 500})
    fake.script({"path": "/api/tags", "fault": "garbage"})
    code, m = api(s, "/api/models")
    errs = sorted(b.get("error", "") for b in m["backends"] if b["type"] == "ollama")
    assert code == 200
    assert any("HTTP 500" in e for e in errs) and any("not valid JSON" in e for e in errs)
    code, m = api(s, "/api/models", method="POST", body={})
    assert code == 405


def test_models_route_times_out(httpd, fake):
    s = httpd(extra="ChatbotRateLimit off")
    fake.script({"path": "/api/tags", "fault": "hang_headers"})
    t0 = time.time()
    code, m = api(s, "/api/models")
    took = time.time() - t0
    assert code == 200 and "error" in m["backends"][0]
    assert 4.5 < took < 7
    assert wait_no_sockets(s, fake.port) == []


def test_health_probes_run_in_parallel(httpd, fake):
    """Two hanging backends cost one probe timeout (connect timeout + 3 s),
    not two."""
    s = httpd(extra="ChatbotRateLimit off\nChatbotConnectTimeout 1s\n"
                    "ChatbotBackend h1 {url}\nChatbotBackend h2 {url}\n".format(url=fake.url))
    fake.script({"path": "/api/version", "fault": "hang_headers"},
                {"path": "/api/version", "fault": "hang_headers"})
    t0 = time.time()
    code, h = api(s, "/api/health")
    took = time.time() - t0
    # three probes at once (default, h1, h2): two of them take the hangs
    down = [b for b in h["backends"] if b["healthy"] is False]
    assert len(down) == 2 and len(h["backends"]) == 3 and code == 200
    assert all(b["detail"] == "Timeout was reached" for b in down), down
    assert 3.9 < took < 6, took
    assert wait_no_sockets(s, fake.port) == []
