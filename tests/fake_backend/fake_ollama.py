"""Ollama's wire format in the fake backend: the lines and objects of
POST /api/chat (NDJSON stream, stream:false object, error lines, the
"load" answer, the shapes the faults need) and the model list of
GET /api/tags, with the values of tests/vectors/ollama/.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import hashlib
import re
import time

from fake_encoding import gojson, rfc3339

OLLAMA_VERSION = "0.12.6"

# /api/tags entries for well-known names (the values of tests/vectors/ollama/tags.json).
KNOWN_MODELS = {
    "qwen2.5-coder:7b": ("2025-10-20T10:00:00.000000Z", 4683087332,
                         "2b0496514337a3d5901f1d253d01726c890b721e891335a56d6e08cedf3e2cb0",
                         "qwen2", "7.6B"),
    "llama3.2:latest": ("2025-10-19T10:00:00.000000Z", 2019393189,
                        "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
                        "llama", "3.2B"),
}


class OllamaFormat:
    """POST /api/chat: NDJSON lines, or one JSON object with stream:false."""
    kind = "ollama"
    stream_ctype = "application/x-ndjson"
    json_ctype = "application/json; charset=utf-8"

    def __init__(self, model, rid, include_usage=False, flavor="ollama"):
        self.model = model

    def _msg(self, content, thinking=None):
        m = {"role": "assistant", "content": content}
        if thinking:
            m["thinking"] = thinking
        return m

    def preamble(self):
        return []

    def token(self, kind, text):
        msg = self._msg(text) if kind == "c" else self._msg("", text)
        return gojson({"model": self.model, "created_at": rfc3339(time.time_ns()),
                       "message": msg, "done": False}) + b"\n"

    def _final(self, content, thinking, done, st, done_reason):
        obj = {"model": self.model, "created_at": rfc3339(time.time_ns()),
               "message": self._msg(content, thinking), "done": done}
        if done:
            obj["done_reason"] = done_reason
        obj.update(total_duration=st["total"], load_duration=st["load"],
                   prompt_eval_count=st["prompt_n"], prompt_eval_duration=st["prompt_ns"],
                   eval_count=st["eval_n"], eval_duration=st["eval_ns"])
        return gojson(obj)

    def done(self, st, done_reason, last):
        return self._final(last or "", None, True, st, done_reason) + b"\n"

    def body(self, content, thinking, st, done_reason, done=True):
        return self._final(content, thinking, done, st, done_reason)

    def error_line(self, msg):
        return gojson({"error": msg}) + b"\n"

    def error_body(self, msg, status):
        return self.json_ctype, gojson({"error": msg})

    def garbage(self):
        return b"this is not json\n"

    def truncated(self):
        whole = self.token("c", "truncated")
        return whole[:len(whole) // 2] + b"\n"

    def huge_prefix(self):
        return (b'{"model":' + gojson(self.model) + b',"created_at":"' +
                rfc3339(time.time_ns()).encode() + b'","message":{"role":"assistant","content":"')

    def load_body(self):
        return gojson({"model": self.model, "created_at": rfc3339(time.time_ns()),
                       "message": {"role": "assistant", "content": ""},
                       "done": True, "done_reason": "load"})

    def bench(self, tokens, st, stream):
        ts = rfc3339(time.time_ns())
        if not stream:
            return self.body("".join(tokens), None, st, "stop")
        head = b'{"model":' + gojson(self.model) + b',"created_at":"' + ts.encode() + \
            b'","message":{"role":"assistant","content":'
        tail = b'},"done":false}\n'
        lines = [head + gojson(t) + tail for t in tokens]
        lines.append(self.done(st, "stop", None))
        return lines


def tag_entry(name):
    """The /api/tags entry of one model name."""
    if name in KNOWN_MODELS:
        modified, size, digest, family, params = KNOWN_MODELS[name]
    else:
        digest = hashlib.sha256(name.encode()).hexdigest()
        size = 1_000_000_000 + int(digest[:8], 16) % 4_000_000_000
        modified = "2025-10-01T10:00:00.000000Z"
        mo = re.match(r"[a-z]+", name.lower())
        family = mo.group(0) if mo else "llama"
        ps = re.search(r":(\d+(?:\.\d+)?)b\b", name.lower())
        params = (ps.group(1) + "B") if ps else "7B"
    return {"name": name, "model": name, "modified_at": modified, "size": size,
            "digest": digest,
            "details": {"parent_model": "", "format": "gguf", "family": family,
                        "families": [family], "parameter_size": params,
                        "quantization_level": "Q4_K_M"}}


def tags_body(models):
    """The body of GET /api/tags for these model names."""
    return gojson({"models": [tag_entry(m) for m in models]})
