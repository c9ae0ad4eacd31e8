"""Self-tests of the fake backend: POST /v1/chat/completions in the
OpenAI-compatible wire format (SSE with and without usage, the
chat.completion object, content parts, max_tokens, reasoning_content, the
llama.cpp flavor, request validation) against tests/vectors/ollama/.
"""

import json

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import chat, exchange, parse_one, shape, sse_events, vector_events


def test_openai_stream_with_usage(fake):
    r = chat(fake.port, "hello world", path="/v1/chat/completions", stream=True,
             stream_options={"include_usage": True})
    assert r.status == 200 and r.complete
    assert r.header_list[0] == ("Content-Type", "text/event-stream")
    ev = sse_events(r)
    vec = vector_events("openai_stream.sse")
    assert [shape(e) for e in ev] == [shape(e) for e in vec[:1] * 3 + vec[3:]]
    assert [e["choices"][0]["delta"]["content"] for e in ev[:3]] == ["Echo:", " hello", " world"]
    assert ev[3]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert ev[4]["usage"]["completion_tokens"] == 3
    assert ev[4]["usage"]["total_tokens"] == ev[4]["usage"]["prompt_tokens"] + 3
    assert ev[-1] == "[DONE]"
    assert len({e["id"] for e in ev[:-1]}) == 1
    # finish + usage + [DONE] travel in one chunk, as Ollama flushes them together
    assert r.chunks[-1].startswith(b'data: {') and r.chunks[-1].endswith(b"data: [DONE]\n\n")
    assert all(c.count(b"\n\n") == 1 for c in r.chunks[:-1])


def test_openai_stream_default_false_and_no_usage(fake):
    r = chat(fake.port, "hey", path="/v1/chat/completions")
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = json.loads(r.body)
    assert shape(body) == [
        ("id", "str"), ("object", "str"), ("created", "int"), ("model", "str"),
        ("system_fingerprint", "str"),
        ("choices", [[("index", "int"), ("message", [("role", "str"), ("content", "str")]),
                      ("finish_reason", "str")]]),
        ("usage", [("prompt_tokens", "int"), ("completion_tokens", "int"),
                   ("total_tokens", "int")])]
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Echo: hey"
    r = chat(fake.port, "hey", path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    assert ev[-1] == "[DONE]" and "usage" not in ev[-2]
    assert ev[-2]["choices"][0]["finish_reason"] == "stop"


def test_openai_content_parts_and_max_tokens(fake):
    body = {"model": "m", "stream": False, "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a b c"}]}]}
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", body))
    choice = json.loads(r.body)["choices"][0]
    assert choice["message"]["content"] == "Echo: a"
    assert choice["finish_reason"] == "length"


def test_openai_thinking_and_last_has_content(fake):
    r = chat(fake.port, "[[fake think=1 reply=a%20b last_has_content=1]]",
             path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": "",
                                            "reasoning_content": "think0"}
    assert ev[1]["choices"][0]["delta"]["content"] == "a"
    assert ev[2]["choices"][0] == {"index": 0, "delta": {"role": "assistant", "content": " b"},
                                   "finish_reason": "stop"}
    assert ev[3] == "[DONE]"
    r = chat(fake.port, "[[fake think=2]]", path="/v1/chat/completions")
    msg = json.loads(r.body)["choices"][0]["message"]
    assert msg["reasoning_content"] == "think0 think1" and msg["content"] == "Echo:"


def test_openai_llamacpp_flavor(fake):
    fake.script({"flavor": "llamacpp", "think": 1, "reply": "Hello world"})
    r = chat(fake.port, "x", path="/v1/chat/completions", stream=True)
    ev = sse_events(r)
    vec = vector_events("openai_stream_llamacpp.sse")
    assert [shape(e) for e in ev] == [shape(e) for e in vec]
    assert ev[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert ev[2]["choices"][0]["delta"] == {"reasoning_content": "think0"}
    assert [e["choices"][0]["delta"]["content"] for e in ev[3:5]] == ["Hello", " world"]
    assert ev[5]["usage"]["completion_tokens"] == 3


def test_openai_validation(fake):
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", b"{bad"))
    assert r.status == 400 and r.headers["content-type"] == "application/json"
    assert json.loads(r.body) == {"error": {
        "message": "invalid character 'b' looking for beginning of object key string",
        "type": "invalid_request_error", "param": None, "code": None}}
    r = parse_one(exchange(fake.port, "POST", "/v1/chat/completions", {"messages": []}))
    assert json.loads(r.body)["error"]["message"] == "model is required"
