"""The fake backend's scripts: the vocabulary of keys and faults a test
can ask for, an inline [[fake key=value ...]] directive and a queued JSON
script checked and converted (normalize_script, extract_directive), and
what one chat request will then send (Plan, make_plan), the --demo reply
included.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import base64
import binascii
import re
import urllib.parse

from fake_encoding import counted_tokens, tokenize

FAULTS = frozenset((
    "refuse", "hang_headers", "hang_mid", "slow", "drop", "drop_rst",
    "error_line", "garbage", "invalid_json", "huge_line",
    "wrong_content_type", "no_done", "empty", "drop_after_done"))
# Faults that fire after `after` tokens and end the response.
MID_FAULTS = frozenset(("hang_mid", "drop", "drop_rst", "error_line",
                        "invalid_json", "huge_line"))
INT_KEYS = frozenset(("tokens", "delay_ms", "first_delay_ms", "after", "think",
                      "status", "split_utf8", "last_has_content", "huge_kb",
                      "ignore_stream", "gzip", "hold_after_done_ms"))
STR_KEYS = frozenset(("reply", "reply_b64", "fault", "done_reason", "error",
                      "flavor", "path", "eol", "content_type", "after_done"))
# Faults a script for a non-chat path (e.g. /api/tags) can use.
PLAIN_FAULTS = frozenset(("refuse", "hang_headers", "drop", "drop_rst", "garbage",
                          "wrong_content_type", "empty"))
CHAT_PATHS = ("/api/chat", "/v1/chat/completions")
DEFAULT_AFTER = 2
DEFAULT_HUGE_KB = 2048
SLOW_DELAY_MS = 500

DIRECTIVE_RE = re.compile(r"\[\[fake(?P<body>(?:\s+[^\s\]]+)*)\s*\]\]")

DEMO_CODE = ("\n\nHere is a small code block, so the page can show syntax highlighting:\n\n"
             "```python\n"
             "def greet(name: str) -> str:\n"
             "    \"\"\"Return a friendly greeting.\"\"\"\n"
             "    return f\"Hello, {name}!\"\n"
             "\n"
             "print(greet(\"world\"))\n"
             "```\n")


class ScriptError(Exception):
    pass


def normalize_script(raw, inline):
    """Validate one script (dict of key -> value) and convert the values.
    inline: values come from a [[fake ...]] directive (strings, %XX escapes)."""
    if not isinstance(raw, dict):
        raise ScriptError("a script must be a JSON object")
    out = {}
    for key, val in raw.items():
        if key in INT_KEYS:
            if isinstance(val, bool) or val is None:
                val = int(bool(val))
            try:
                ival = int(val)
            except (TypeError, ValueError):
                raise ScriptError("%s: not an integer: %r" % (key, val))
            if ival < 0:
                raise ScriptError("%s: must be >= 0" % key)
            if key == "status" and not 400 <= ival <= 599:
                raise ScriptError("status: must be 400..599")
            out[key] = ival
        elif key in STR_KEYS:
            if not isinstance(val, str):
                raise ScriptError("%s: must be a string" % key)
            if inline and key in ("reply", "error", "after_done", "content_type"):
                try:
                    val = urllib.parse.unquote(val, errors="strict")
                except UnicodeDecodeError:
                    raise ScriptError("%s: %%XX escapes are not UTF-8" % key)
            out[key] = val
        else:
            raise ScriptError("unknown key '%s'" % key)
    if "reply_b64" in out:
        b64 = out.pop("reply_b64")
        try:
            pad = "=" * (-len(b64) % 4)
            raw_bytes = base64.b64decode(b64.replace("-", "+").replace("_", "/") + pad,
                                         validate=True)
            out["reply"] = raw_bytes.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ScriptError("reply_b64: not base64 of UTF-8 text")
    if "fault" in out and out["fault"] not in FAULTS:
        raise ScriptError("unknown fault '%s'" % out["fault"])
    if "eol" in out and out["eol"] not in ("lf", "crlf", "cr"):
        raise ScriptError("eol: lf, crlf or cr")
    if "content_type" in out and not re.fullmatch(r"[\x20-\x7e]{1,200}", out["content_type"]):
        raise ScriptError("content_type: one printable ASCII header value")
    if "flavor" in out and out["flavor"] not in ("ollama", "llamacpp"):
        raise ScriptError("flavor: ollama or llamacpp")
    if "done_reason" in out and not re.fullmatch(r"[a-z_]{1,32}", out["done_reason"]):
        raise ScriptError("done_reason: a lowercase word such as stop or length")
    if "path" in out:
        if not out["path"].startswith("/"):
            raise ScriptError("path: must start with /")
        if (out["path"] not in CHAT_PATHS and out.get("fault")
                and out["fault"] not in PLAIN_FAULTS):
            raise ScriptError("fault %s applies only to chat requests" % out["fault"])
    return out


def extract_directive(text):
    """Return (text without the directive, script dict or None)."""
    m = DIRECTIVE_RE.search(text)
    if not m:
        if "[[fake" in text:
            raise ScriptError("malformed [[fake ...]] directive")
        return text, None
    raw = {}
    for item in m.group("body").split():
        key, sep, val = item.partition("=")
        raw[key] = val if sep else "1"
    script = normalize_script(raw, inline=True)
    left, right = text[:m.start()], text[m.end():]
    if left[-1:].isspace() and right[:1].isspace():
        right = right.lstrip()
    rest = (left + right).strip()
    return rest, script


class Plan:
    """What one chat request will send."""
    __slots__ = ("thinking", "content", "delay", "fault", "after", "error", "split",
                 "last_has_content", "done_reason", "huge_kb", "stream", "prompt_n",
                 "gzip", "eol", "content_type", "after_done", "hold_after_done")


def make_plan(cfg, script, echo_text, stream, messages, options):
    """What one chat request will send (a Plan): the script's keys over the
    server's defaults (cfg: the Server: token_delay_ms, bench, demo,
    bench_tokens_list)."""
    p = Plan()
    p.stream = stream
    p.fault = script.get("fault")
    delay_ms = script.get("delay_ms", 0 if cfg.bench else cfg.token_delay_ms)
    if p.fault == "slow" and "delay_ms" not in script:
        delay_ms = SLOW_DELAY_MS
    p.delay = delay_ms / 1000.0
    p.after = script.get("after", DEFAULT_AFTER)
    p.error = script.get("error")
    p.split = bool(script.get("split_utf8"))
    p.last_has_content = bool(script.get("last_has_content"))
    p.done_reason = script.get("done_reason", "stop")
    p.huge_kb = script.get("huge_kb", DEFAULT_HUGE_KB)
    p.thinking = counted_tokens(script.get("think", 0), "think")
    p.gzip = bool(script.get("gzip"))
    p.eol = {"crlf": b"\r\n", "cr": b"\r"}.get(script.get("eol"), b"\n")
    p.content_type = script.get("content_type")
    p.after_done = script.get("after_done", "").encode()
    p.hold_after_done = script.get("hold_after_done_ms", 0) / 1000.0
    if "reply" in script:
        p.content = tokenize(script["reply"])
    elif "tokens" in script:
        p.content = counted_tokens(script["tokens"])
    elif cfg.bench:
        p.content = cfg.bench_tokens_list
    elif cfg.demo:
        p.content = tokenize(demo_reply(echo_text))
    else:
        p.content = tokenize("Echo: " + echo_text if echo_text else "Echo:")
    limit = options.get("num_predict")
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(p.content):
        p.content = p.content[:limit]
        if "done_reason" not in script:
            p.done_reason = "length"
    p.prompt_n = max(1, sum(len(re.findall(r"\w+|[^\w\s]", m["content"])) + 4
                            for m in messages))
    return p


def demo_reply(said):
    """The canned --demo reply: clearly labelled, never pretending to be a model."""
    flat = " ".join(said.split())
    if len(flat) > 80:
        flat = flat[:77] + "..."
    text = ("(demo backend: canned reply, not a model) You said: \"%s\". "
            "This answer comes from the project's fake backend, so no language model is "
            "running. Point the module at a real Ollama server to get real answers." % flat)
    if re.search(r"\bcode", said, re.IGNORECASE):
        text += DEMO_CODE
    return text
