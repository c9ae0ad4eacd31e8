"""Self-tests of the fake backend: the real-world wire shapes added for the
backend review (docs/testing.md): gzip streams, CRLF/CR line ends and
other content types, "stream":true ignored, bytes or a drop after the end.
"""

import json
import time

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import chat, chat_body, connect, http_request, parse_response, read_all


def test_gzip_stream_decodes_incrementally(fake):
    import zlib
    r = chat(fake.port, "[[fake gzip tokens=3]]", path="/v1/chat/completions", stream=True)
    assert r.complete and r.headers["content-encoding"] == "gzip"
    d = zlib.decompressobj(31)
    # every chunk decodes on its own (sync flush): tokens still stream
    first = d.decompress(r.chunks[0])
    assert first.startswith(b"data: {") and first.endswith(b"\n\n")
    text = first + b"".join(d.decompress(c) for c in r.chunks[1:]) + d.flush()
    assert d.eof and text.endswith(b"data: [DONE]\n\n") and text.count(b"data: ") == 5


def test_eol_and_content_type(fake):
    r = chat(fake.port, "[[fake eol=crlf content_type=text/event-stream;%20charset=utf-8]]",
             path="/v1/chat/completions", stream=True)
    assert r.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert b"\n\n" not in r.body and r.body.endswith(b"data: [DONE]\r\n\r\n")
    r = chat(fake.port, "[[fake eol=cr tokens=2]]", path="/v1/chat/completions", stream=True)
    assert b"\n" not in r.body and r.body.endswith(b"data: [DONE]\r\r")
    r = chat(fake.port, "[[fake eol=crlf tokens=2]]")
    assert all(c.endswith(b"}\r\n") for c in r.chunks)


def test_ignore_stream_answers_one_object(fake):
    r = chat(fake.port, "[[fake ignore_stream]] hi", path="/v1/chat/completions", stream=True)
    assert r.headers["content-type"] == "application/json"
    obj = json.loads(r.body)
    assert obj["object"] == "chat.completion"
    assert obj["choices"][0]["message"]["content"] == "Echo: hi"
    r = chat(fake.port, "[[fake ignore_stream]] hi")
    assert json.loads(r.body)["message"]["content"] == "Echo: hi"


def test_after_done_and_drop_after_done(fake):
    r = chat(fake.port, "[[fake tokens=1 after_done=:%20ping%0A%0A]]",
             path="/v1/chat/completions", stream=True)
    assert r.complete and r.body.endswith(b"data: [DONE]\n\n: ping\n\n")
    s = connect(fake.port)
    s.sendall(http_request("POST", "/api/chat",
                           chat_body("[[fake tokens=2 fault=drop_after_done]]")))
    data, how = read_all(s)
    s.close()
    r, _ = parse_response(data)
    assert not r.complete and b'"done":true' in r.body
    t0 = time.monotonic()
    r = chat(fake.port, "[[fake tokens=1 hold_after_done_ms=300]]")
    assert r.complete and time.monotonic() - t0 >= 0.3
