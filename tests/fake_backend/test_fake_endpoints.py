"""Self-tests of the fake backend: the plain endpoints (GET and HEAD /,
/api/version, /api/tags, /v1/models) against tests/vectors/ollama/, and
404 for any other path or method.
"""

import json

from fakeutil import fake, server  # noqa: F401 (pytest fixtures)
from fakeutil import exchange, load_vector, parse_one, shape


def test_root_get_and_head(fake):
    r = parse_one(exchange(fake.port, "GET", "/"))
    assert (r.status, r.body) == (200, b"Ollama is running")
    assert [k for k, _ in r.header_list] == ["Content-Type", "Date", "Content-Length", "Connection"]
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    raw = exchange(fake.port, "HEAD", "/")
    r = parse_one(raw, head_only=True)
    assert r.status == 200 and r.headers["content-length"] == "17"
    assert raw.endswith(b"\r\n\r\n")


def test_version_and_tags_match_vectors(fake):
    r = parse_one(exchange(fake.port, "GET", "/api/version"))
    assert r.status == 200
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    assert r.body == load_vector("version.json").strip()
    r = parse_one(exchange(fake.port, "GET", "/api/tags"))
    assert r.status == 200
    assert r.body == load_vector("tags.json").strip()


def test_v1_models(fake):
    r = parse_one(exchange(fake.port, "GET", "/v1/models"))
    assert r.status == 200 and r.headers["content-type"] == "application/json"
    body = json.loads(r.body)
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["qwen2.5-coder:7b", "llama3.2:latest"]
    for m in body["data"]:
        assert shape(m) == [("id", "str"), ("object", "str"), ("created", "int"),
                            ("owned_by", "str")]
        assert m["object"] == "model"
    assert body["data"][0]["created"] == 1760954400   # 2025-10-20T10:00:00Z


def test_unknown_path_and_method(fake):
    for method, path in (("GET", "/nope"), ("GET", "/api/chat"), ("POST", "/api/tags")):
        r = parse_one(exchange(fake.port, method, path, b"" if method == "POST" else None))
        assert (r.status, r.body) == (404, b"404 page not found")
        assert r.headers["content-type"] == "text/plain"
