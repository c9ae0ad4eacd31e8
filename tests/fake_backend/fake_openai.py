"""The OpenAI-compatible wire format in the fake backend: the SSE chunks
and chat.completion objects of POST /v1/chat/completions, as Ollama's
compatibility layer sends them or (flavor=llamacpp) as llama.cpp's server
does, their error objects, and the model list of GET /v1/models.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import calendar
import time

from fake_encoding import gojson
from fake_ollama import tag_entry


class OpenAIFormat:
    """POST /v1/chat/completions: SSE chunks, or one chat.completion object.
    flavor "ollama" mirrors Ollama's compatibility layer, "llamacpp" mirrors
    llama.cpp's server (null first content, ping comment, usage+timings in
    the finish chunk)."""
    kind = "openai"
    stream_ctype = "text/event-stream"
    json_ctype = "application/json"

    def __init__(self, model, rid, include_usage=False, flavor="ollama"):
        self.model = model
        self.id = "chatcmpl-%d" % rid
        self.created = int(time.time())
        self.include_usage = include_usage
        self.llamacpp = flavor == "llamacpp"

    def _chunk(self, delta, finish=None, **extra):
        if self.llamacpp:
            obj = {"choices": [{"finish_reason": finish, "index": 0, "delta": delta}],
                   "created": self.created, "id": self.id, "model": self.model,
                   "object": "chat.completion.chunk"}
        else:
            obj = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                   "model": self.model, "system_fingerprint": "fp_ollama",
                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        obj.update(extra)
        return obj

    @staticmethod
    def _event(obj):
        return b"data: " + gojson(obj) + b"\n\n"

    def _usage(self, st):
        if self.llamacpp:
            return {"completion_tokens": st["eval_n"], "prompt_tokens": st["prompt_n"],
                    "total_tokens": st["eval_n"] + st["prompt_n"]}
        return {"prompt_tokens": st["prompt_n"], "completion_tokens": st["eval_n"],
                "total_tokens": st["prompt_n"] + st["eval_n"]}

    def preamble(self):
        if self.llamacpp:
            return [self._event(self._chunk({"role": "assistant", "content": None})),
                    b": ping\n\n"]
        return []

    def token(self, kind, text):
        if self.llamacpp:
            delta = {"content": text} if kind == "c" else {"reasoning_content": text}
        elif kind == "c":
            delta = {"role": "assistant", "content": text}
        else:
            delta = {"role": "assistant", "content": "", "reasoning_content": text}
        return self._event(self._chunk(delta))

    def done(self, st, done_reason, last):
        delta = {}
        if last:
            delta = {"content": last} if self.llamacpp else {"role": "assistant", "content": last}
        if self.llamacpp:
            pms = st["prompt_ns"] / 1e6
            ems = st["eval_ns"] / 1e6
            rate = round(st["eval_n"] / (ems / 1000), 3) if ems else 0.0
            timings = {"prompt_n": st["prompt_n"], "prompt_ms": round(pms, 3),
                       "predicted_n": st["eval_n"], "predicted_ms": round(ems, 3),
                       "predicted_per_second": rate}
            out = self._event(self._chunk(delta, done_reason, usage=self._usage(st),
                                          timings=timings))
        else:
            out = self._event(self._chunk(delta, done_reason))
            if self.include_usage:
                usage = self._chunk({})
                usage["choices"] = []
                usage["usage"] = self._usage(st)
                out += self._event(usage)
        return out + b"data: [DONE]\n\n"

    def body(self, content, thinking, st, done_reason, done=True):
        msg = {"role": "assistant", "content": content}
        if thinking:
            msg["reasoning_content"] = thinking
        obj = {"id": self.id, "object": "chat.completion", "created": self.created,
               "model": self.model, "system_fingerprint": "fp_ollama",
               "choices": [{"index": 0, "message": msg,
                            "finish_reason": done_reason if done else None}],
               "usage": self._usage(st)}
        return gojson(obj)

    def error_obj(self, msg, status):
        if self.llamacpp:
            return {"error": {"code": status, "message": msg, "type": "server_error"}}
        etype = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"error": {"message": msg, "type": etype, "param": None, "code": None}}

    def error_line(self, msg):
        return self._event(self.error_obj(msg, 500))

    def error_body(self, msg, status):
        return self.json_ctype, gojson(self.error_obj(msg, status))

    def garbage(self):
        return b"data: this is not json\n\n"

    def truncated(self):
        whole = self.token("c", "truncated")
        return whole[:len(whole) // 2] + b"\n\n"

    def huge_prefix(self):
        head = gojson(self._chunk({"content": ""}))
        cut = head.index(b'"content":"') + len(b'"content":"')
        return b"data: " + head[:cut]

    def bench(self, tokens, st, stream):
        if not stream:
            return self.body("".join(tokens), None, st, "stop")
        lines = [self.token("c", t) for t in tokens]
        lines.append(self.done(st, "stop", None))
        return lines


def model_created(name):
    """/v1/models' "created" of a model: its /api/tags modified_at."""
    modified = tag_entry(name)["modified_at"]
    return calendar.timegm(time.strptime(modified[:19], "%Y-%m-%dT%H:%M:%S"))


def models_body(models):
    """The body of GET /v1/models for these model names."""
    return gojson({"object": "list", "data": [
        {"id": m, "object": "model", "created": model_created(m), "owned_by": "library"}
        for m in models]})
