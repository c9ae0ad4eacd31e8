"""Self-tests of the fake backend: POST /api/chat in Ollama's wire format
(NDJSON stream and stream:false object, Go's escaping, thinking, done
reasons, num_predict, the "load" answer, request validation, unknown
models), line by line against the shapes in tests/vectors/ollama/.
"""

import json

import pytest

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import (check_ollama_stream, chat, chat_body, contents, exchange, load_vector,
                      ndjson_lines, parse_one, shape, vector_lines)


def test_ollama_stream_is_default(fake):
    r = chat(fake.port, "hello big world")
    lines = check_ollama_stream(r)
    assert contents(lines) == ["Echo:", " hello", " big", " world", ""]
    done = lines[-1]
    assert done["done"] is True and done["done_reason"] == "stop"
    assert done["eval_count"] == 4
    assert all(ln["done"] is False for ln in lines[:-1])
    rec = fake.last()
    assert rec["outcome"] == "complete" and rec["status"] == 200
    assert rec["tokens_sent"] == 4 and rec["stream"] is True and rec["format"] == "ollama"


def test_ollama_unicode_and_go_escapes(fake):
    text = "Grüße 日本語 😀 <b>&\u2028"
    raw = exchange(fake.port, "POST", "/api/chat", chat_body(text))
    r = parse_one(raw)
    lines = check_ollama_stream(r)
    assert "".join(contents(lines)) == "Echo: " + text
    # Raw UTF-8 as Ollama sends it; <, >, & and U+2028 escaped as Go does.
    assert "Grüße".encode() in r.body and "😀".encode() in r.body
    assert b'" \\u003cb\\u003e\\u0026"' in r.body and b'"\\u2028"' in r.body
    assert b"<b>" not in r.body


def test_ollama_stream_false(fake):
    r = chat(fake.port, "hi there", stream=False)
    assert r.status == 200
    assert [k for k, _ in r.header_list] == ["Content-Type", "Date", "Content-Length", "Connection"]
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert not r.body.endswith(b"\n")
    body = json.loads(r.body)
    assert shape(body) == shape(vector_lines("chat_nostream.json")[0])
    assert body["message"]["content"] == "Echo: hi there"
    assert body["eval_count"] == 3 and body["done"] is True


def test_ollama_thinking(fake):
    r = chat(fake.port, "q [[fake think=3]]")
    lines = ndjson_lines(r)
    vec = vector_lines("chat_stream_thinking.ndjson")
    for ln in lines[:3]:
        assert shape(ln) == shape(vec[0])
    assert [ln["message"]["thinking"] for ln in lines[:3]] == ["think0", " think1", " think2"]
    assert contents(lines[3:]) == ["Echo:", " q", ""]
    assert shape(lines[3]) == shape(vec[2]) and shape(lines[-1]) == shape(vec[-1])
    assert lines[-1]["eval_count"] == 5
    r = chat(fake.port, "q [[fake think=2]]", stream=False)
    msg = json.loads(r.body)["message"]
    assert msg == {"role": "assistant", "content": "Echo: q", "thinking": "think0 think1"}


def test_last_has_content_and_done_reason(fake):
    r = chat(fake.port, "[[fake reply=Hello%20there! last_has_content=1 done_reason=length]]")
    lines = ndjson_lines(r)
    vec = vector_lines("chat_stream_last_has_content.ndjson")
    assert [shape(x) for x in lines] == [shape(x) for x in vec]
    assert contents(lines) == ["Hello", " there!"]
    assert lines[-1]["done_reason"] == "length" and lines[-1]["eval_count"] == 2


def test_num_predict_truncates_with_length(fake):
    r = chat(fake.port, "[[fake tokens=10]]", options={"num_predict": 3})
    lines = ndjson_lines(r)
    assert contents(lines) == ["t0", " t1", " t2", ""]
    assert lines[-1]["done_reason"] == "length"


def test_empty_messages_is_a_load_request(fake):
    r = parse_one(exchange(fake.port, "POST", "/api/chat", {"model": "llama3.2", "messages": []}))
    assert r.status == 200 and r.headers["content-type"] == "application/json; charset=utf-8"
    body = json.loads(r.body)
    assert body["done"] is True and body["done_reason"] == "load"
    assert body["message"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize("body,message", [
    (b'{"model":"x","messages":[', "unexpected EOF"),
    (b"{'model':1}", "invalid character '\\'' looking for beginning of object key string"),
    (b"hello", "invalid character 'h' looking for beginning of value"),
    (b"", "missing request body"),
    (b'{"model":"x"} x', "invalid character 'x' after top-level value"),
    (b'{"messages":[]}', "model is required"),
    (b'{"model":"x","messages":"hi"}',
     "json: cannot unmarshal string into Go struct field ChatRequest.messages of type []api.Message"),
    (b'{"model":"x","messages":[1]}',
     "json: cannot unmarshal number into Go struct field ChatRequest.messages of type api.Message"),
    (b'{"model":"x","messages":[{"role":"user","content":[1]}]}',
     "json: cannot unmarshal array into Go struct field Message.messages.content of type string"),
    (b'{"model":"x","messages":[{"content":"hi"}]}', "invalid message format: role is required"),
    (b'{"model":7,"messages":[]}',
     "json: cannot unmarshal number into Go struct field ChatRequest.model of type string"),
    (b'[1]', "json: cannot unmarshal array into Go value of type api.ChatRequest"),
])
def test_ollama_validation(fake, body, message):
    r = parse_one(exchange(fake.port, "POST", "/api/chat", body))
    assert r.status == 400
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert json.loads(r.body) == {"error": message}


def test_nosuchmodel(fake):
    r = chat(fake.port, "hi", model="nosuchmodel")
    assert r.status == 404 and r.reason == "Not Found"
    assert r.body == load_vector("error_model_not_found.json").strip()
    r = chat(fake.port, "hi", path="/v1/chat/completions", model="nosuchmodel", stream=True)
    assert r.status == 404 and r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"error": {"message": "model 'nosuchmodel' not found",
                                            "type": "not_found_error", "param": None,
                                            "code": None}}
