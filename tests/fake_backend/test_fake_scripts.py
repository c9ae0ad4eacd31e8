"""Self-tests of the fake backend's scripts and control API: inline
[[fake ...]] directives (escapes, base64, errors), queued scripts (FIFO,
per path, errors), /_fake/reset, the recorded requests and wait_closed.
"""

import base64
import json
import time

import pytest

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import (chat, connect, contents, exchange, http_request, load_vector,
                      ndjson_lines, parse_one, read_all)


# ---------------------------------------------------------------------------
# Inline directives


def test_directive_reply_escapes_and_b64(fake):
    r = chat(fake.port, "before [[fake reply=Gr%C3%BC%C3%9Fe%20du%20%5B1%5D]] after")
    assert contents(ndjson_lines(r)) == ["Grüße", " du", " [1]", ""]
    b64 = base64.b64encode("line1\nline 2 ✓".encode()).decode()
    r = chat(fake.port, "[[fake reply_b64=%s]]" % b64)
    assert "".join(contents(ndjson_lines(r))) == "line1\nline 2 ✓"
    assert contents(ndjson_lines(r))[:2] == ["line1", "\nline"]


def test_directive_removed_from_echo_and_only_last_user_message(fake):
    body = {"model": "m", "stream": False, "messages": [
        {"role": "user", "content": "old [[fake tokens=3]]"},
        {"role": "assistant", "content": "Echo: old"},
        {"role": "user", "content": "new [[fake delay_ms=0]] text"}]}
    r = parse_one(exchange(fake.port, "POST", "/api/chat", body))
    assert json.loads(r.body)["message"]["content"] == "Echo: new text"
    assert fake.last()["script"] == {"delay_ms": 0}


def test_directive_tokens(fake):
    r = chat(fake.port, "[[fake tokens=5]]")
    lines = ndjson_lines(r)
    assert contents(lines) == ["t0", " t1", " t2", " t3", " t4", ""]
    assert lines[-1]["eval_count"] == 5


@pytest.mark.parametrize("directive,err", [
    ("[[fake bogus=1]]", "fake directive: unknown key 'bogus'"),
    ("[[fake fault=nope]]", "fake directive: unknown fault 'nope'"),
    ("[[fake tokens=x]]", "fake directive: tokens: not an integer: 'x'"),
    ("[[fake tokens=3", "fake directive: malformed [[fake ...]] directive"),
    ("[[fake reply=%FF]]", "fake directive: reply: %XX escapes are not UTF-8"),
    ("[[fake reply_b64=***]]", "fake directive: reply_b64: not base64 of UTF-8 text"),
])
def test_directive_errors(fake, directive, err):
    r = chat(fake.port, directive)
    assert r.status == 400 and json.loads(r.body) == {"error": err}


# ---------------------------------------------------------------------------
# Control API


def test_control_script_fifo(fake):
    assert fake.script({"reply": "one"}, {"tokens": 2}, {"reply": "100% raw"})["queued"] == 3
    status, pending = fake.control("GET", "/_fake/scripts")
    assert pending == [{"reply": "one"}, {"tokens": 2}, {"reply": "100% raw"}]
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["one", ""]
    r = chat(fake.port, "x", path="/v1/chat/completions")
    assert json.loads(r.body)["choices"][0]["message"]["content"] == "t0 t1"
    # JSON scripts carry plain text; inline keys override the queued script
    r = chat(fake.port, "[[fake done_reason=length]]", stream=False)
    body = json.loads(r.body)
    assert body["message"]["content"] == "100% raw" and body["done_reason"] == "length"
    assert fake.control("GET", "/_fake/scripts")[1] == []
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["Echo:", " x", ""]


def test_control_script_single_object_and_errors(fake):
    assert fake.control("POST", "/_fake/script", {"tokens": "3"}) == (200, {"queued": 1})
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["t0", " t1", " t2", ""]
    for bad, msg in (([{"nope": 1}], "unknown key 'nope'"), ([{"status": 200}], "status: must be 400..599"),
                     ([{"fault": "x"}], "unknown fault 'x'"), (["str"], "a script must be a JSON object"),
                     ([{"path": "api"}], "path: must start with /"),
                     ([{"path": "/api/tags", "fault": "hang_mid"}],
                      "fault hang_mid applies only to chat requests")):
        assert fake.control("POST", "/_fake/script", bad) == (400, {"error": msg})


def test_control_script_for_other_path(fake):
    fake.script({"path": "/api/tags", "status": 503}, {"path": "/api/version", "fault": "empty"})
    # a chat request does not take a script meant for another path
    assert contents(ndjson_lines(chat(fake.port, "x"))) == ["Echo:", " x", ""]
    r = parse_one(exchange(fake.port, "GET", "/api/tags"))
    assert r.status == 503 and r.body == load_vector("error_busy.json").strip()
    r = parse_one(exchange(fake.port, "GET", "/api/version"))
    assert r.status == 200 and r.body == b""
    assert parse_one(exchange(fake.port, "GET", "/api/tags")).status == 200
    assert fake.last("/api/version")["outcome"] == "fault:empty"
    fake.script({"path": "/api/version", "fault": "refuse"},
                {"path": "/", "first_delay_ms": 200, "status": 404})
    s = connect(fake.port)
    s.sendall(http_request("GET", "/api/version"))
    assert read_all(s) == (b"", "reset")
    t0 = time.monotonic()
    r = parse_one(exchange(fake.port, "GET", "/"))
    assert time.monotonic() - t0 >= 0.19
    assert r.status == 404 and json.loads(r.body) == {"error": "not found"}


def test_reset_and_records(fake):
    fake.script({"tokens": 1}, {"tokens": 1})
    chat(fake.port, "hello [[fake delay_ms=20]]", stream=False)
    recs = fake.requests()
    assert len(recs) == 1
    rec = recs[0]
    assert rec["method"] == "POST" and rec["path"] == "/api/chat"
    assert rec["headers"]["content-type"] == "application/json"
    assert rec["body"]["messages"][0]["content"] == "hello [[fake delay_ms=20]]"
    assert rec["model"] == "llama3.2:latest" and rec["stream"] is False
    assert rec["t_start"] <= rec["t_first_token"] <= rec["t_end"]
    assert rec["t_end"] - rec["t_start"] >= 0.015
    assert rec["client_closed_at"] is None and rec["outcome"] == "complete"
    assert rec["script"] == {"tokens": 1, "delay_ms": 20}
    assert fake.control("GET", "/_fake/requests/%d" % rec["id"]) == (200, rec)
    assert fake.control("GET", "/_fake/requests/999999")[0] == 404
    assert fake.control("POST", "/_fake/reset") == (200, {"ok": True})
    assert fake.requests() == [] and fake.control("GET", "/_fake/scripts")[1] == []
    # ids keep growing across resets
    chat(fake.port, "x")
    assert fake.requests()[0]["id"] > rec["id"]
    status, info = fake.control("GET", "/_fake/info")
    assert info["fake"] is True and info["demo"] is False and info["port"] == fake.port


def test_wait_closed_timeout(fake):
    status, body = fake.control("GET", "/_fake/requests?wait_closed=987654&timeout=0.2")
    assert status == 504 and body["request"] is None
