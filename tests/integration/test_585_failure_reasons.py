"""Issue 19 part 1: a failed or cut-off answer keeps its reason.

An answer that fails part-way (the backend's error line, a dropped backend,
a timeout) is stored with its error code and the server's sentence; the
WebSocket history, the REST history and both exports carry it as
`error: {code, message}` on the partial answer, followed by the failure's
error record, and a tab following the answer gets the same error frame as
the tab that asked. A user's Stop stays `interrupted` with no `error`. The
reason is never sent to the model: the next turn's backend request has the
partial answer but not the error text."""
import asyncio
import json
import urllib.request

import pytest

from conftest import sign_sid
from backends_util import (chat_requests_since, collect, connect, history, last_id,
                           new_sid, run, streams, turn, wait_for)

EXTRA = "ChatbotRateLimit off\nChatbotTokenTimeout 1s\n"


@pytest.fixture(scope="module")
def srv(fake):
    from conftest import Server
    s = Server(fake.url, extra=EXTRA, name="reasons")
    yield s
    s.stop()
    assert not s.bad_log_lines(), "error-level lines in the error log"


def rest(server, sid, path, body=None):
    req = urllib.request.Request(
        server.base + path, data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={"Content-Type": "application/json",
                 "Cookie": "chatbot_sid=" + sign_sid(sid)})
    with urllib.request.urlopen(req, timeout=15) as r:
        raw = r.read()
        return json.loads(raw) if "json" in r.headers.get("Content-Type", "") else raw.decode()


FAILS = [
    ("fault=error_line after=3 error=GPU%20on%20fire", "backend_error"),
    ("fault=drop after=3", "interrupted"),
    ("fault=hang_mid after=3", "backend_timeout"),
]


@pytest.mark.parametrize("directive,code", FAILS, ids=[f[0].split()[0] for f in FAILS])
def test_partial_failure_keeps_its_reason(srv, fake, directive, code):
    sid = new_sid()
    mark = last_id(fake)

    async def go():
        ws, _ = await connect(srv, sid=sid)
        frames = await turn(ws, "q [[fake tokens=10 %s]]" % directive, timeout=15)
        conv = frames[-1]["conversation_id"]
        h = await history(ws, conv)
        after = await turn(ws, "again [[fake tokens=2]]", conversation_id=conv)
        await ws.close()
        return frames, conv, h, after
    frames, conv, h, after = run(go())
    err = frames[-1]
    assert err["type"] == "error" and err["code"] == code and err["partial"] is True, err
    partial = streams(frames)
    assert partial == "t0 t1 t2"
    reason = {"code": code, "message": err["message"]}

    # WebSocket history: the partial answer with its reason, then the record
    msgs = h["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "assistant"]
    ans, rec = msgs[1], msgs[2]
    assert ans["content"] == partial and ans["interrupted"] is True
    assert ans["error"] == reason and ans["index"] == err["index"]
    assert rec["error"] is True and rec["code"] == code and rec["content"] == err["message"]

    # REST history: the same
    rh = rest(srv, sid, "/api/chat/history?conversation_id=%s" % conv)
    assert rh["messages"][1]["error"] == reason
    assert rh["messages"][2]["error"] is True
    # paging: a page that ends with the partial answer still tells its reason
    page = rest(srv, sid, "/api/chat/history?conversation_id=%s&limit=2" % conv)
    assert len(page["messages"]) == 2 and page["messages"][1]["error"] == reason

    # exports: JSON has the reason; Markdown heads the answer "(failed)"
    ej = rest(srv, sid, "/api/export/session", {"conversation_id": conv, "format": "json"})
    assert ej["messages"][1]["error"] == reason
    md = rest(srv, sid, "/api/export/session", {"conversation_id": conv})
    assert "### Assistant (failed)\n\nt0 t1 t2" in md
    assert "> **Error (%s):** %s" % (code, err["message"]) in md

    # the next turn's context has the partial answer, never the reason
    assert after[-1]["type"] == "response"
    reqs = chat_requests_since(fake, mark)
    ctx = reqs[-1]["body"]["messages"]
    texts = [m["content"] for m in ctx]
    assert "t0 t1 t2" in texts
    assert not any(err["message"] in t for t in texts), ctx


def test_stop_has_no_reason(srv, fake):
    sid = new_sid()

    async def go():
        ws, _ = await connect(srv, sid=sid)
        await ws.send(json.dumps({"type": "message",
                                  "content": "q [[fake tokens=200 delay_ms=50]]"}))
        first = await wait_for(ws, lambda m: m.get("type") == "stream", 15)
        conv = first["conversation_id"]
        await ws.send(json.dumps({"type": "stop", "conversation_id": conv}))
        frames = await collect(ws, 15)
        h = await history(ws, conv)
        await ws.close()
        return frames, conv, h
    frames, conv, h = run(go())
    assert frames[-1]["type"] == "response" and frames[-1]["interrupted"] is True
    msgs = h["messages"]
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    assert msgs[1]["interrupted"] is True and "error" not in msgs[1]
    md = rest(srv, sid, "/api/export/session", {"conversation_id": conv})
    assert "### Assistant (interrupted)" in md and "(failed)" not in md


def test_other_tab_gets_the_reason_live(srv, fake):
    """A second tab following the answer (resume) ends with the same error
    frame as the tab that asked, not with a response that looks like a Stop."""
    sid = new_sid()

    async def go():
        a, _ = await connect(srv, sid=sid)
        b, _ = await connect(srv, sid=sid)
        await a.send(json.dumps({
            "type": "message",
            "content": "q [[fake tokens=30 delay_ms=60 fault=error_line after=12 "
                       "error=GPU%20on%20fire]]"}))
        first = await wait_for(a, lambda m: m.get("type") == "stream", 15)
        conv = first["conversation_id"]
        await b.send(json.dumps({"type": "resume", "conversation_id": conv}))
        fa, fb = await asyncio.gather(collect(a, 20), collect(b, 20))
        await a.close()
        await b.close()
        return [first] + fa, fb
    fa, fb = run(go())
    ea, eb = fa[-1], fb[-1]
    assert ea["type"] == "error" and ea["code"] == "backend_error" and ea["partial"]
    assert eb["type"] == "error", fb[-3:]
    assert eb["code"] == "backend_error" and eb["message"] == ea["message"]
    assert eb["partial"] is True and eb["index"] == ea["index"]
    assert streams(fb) == streams(fa)
