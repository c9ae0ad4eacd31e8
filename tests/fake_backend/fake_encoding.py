"""The fake backend's encoding helpers: what makes its bytes the same as
the real servers' (JSON as Go's encoding/json writes it, Go-style JSON error
messages, RFC 3339 times, HTTP dates and reason phrases, chunk frames),
reading a chat request body as Ollama's gin binding does (BadRequest), and
cutting a reply into tokens and split_utf8 pieces.

Part of the fake backend (tests/fake_backend/fake_backend.py, the entry point).
"""

import email.utils
import json
import re
import time
from http import HTTPStatus

TOKEN_RE = re.compile(r"\s*\S+|\s+")
SURROGATE_RE = re.compile("[\ud800-\udfff]")
GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                            "\u2028": "\\u2028", "\u2029": "\\u2029"})


class BadRequest(Exception):
    """A request error answered with 400 and this message."""


def gojson(obj):
    """Serialise like Go's encoding/json: compact, raw UTF-8, <>& and
    U+2028/U+2029 escaped, invalid UTF-16 replaced by U+FFFD."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = s.translate(GO_ESCAPES)
    if SURROGATE_RE.search(s):
        s = SURROGATE_RE.sub("\ufffd", s)
    return s.encode("utf-8")


def rfc3339(ns):
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction dropped."""
    sec, frac = divmod(ns, 1_000_000_000)
    out = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
    if frac:
        out += "." + ("%09d" % frac).rstrip("0")
    return out + "Z"


def http_date():
    return email.utils.formatdate(usegmt=True)


def reason_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code %d" % status


def chunk_frame(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def tokenize(text):
    """Words with their leading whitespace; "".join(result) == text."""
    return TOKEN_RE.findall(text)


def counted_tokens(n, prefix="t"):
    return [("%s%d" % (prefix, i)) if i == 0 else (" %s%d" % (prefix, i)) for i in range(n)]


def gotype(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def go_quote_char(c):
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    inner = json.dumps(c, ensure_ascii=False)[1:-1]
    return "'" + inner + "'"


def go_json_error(e):
    """A Go-like message for a Python JSONDecodeError."""
    doc, pos, msg = e.doc, e.pos, e.msg
    if pos >= len(doc) or msg.startswith("Unterminated string"):
        return "unexpected EOF"
    c = doc[pos]
    if msg.startswith("Expecting property name"):
        ctx = "looking for beginning of object key string"
    elif msg == "Expecting ':' delimiter":
        ctx = "after object key"
    elif msg == "Expecting ',' delimiter":
        ctx = "after object key:value pair"
    elif msg == "Extra data":
        ctx = "after top-level value"
    elif msg.startswith("Invalid control character"):
        ctx = "in string literal"
    elif msg.startswith("Invalid \\escape"):
        ctx = "in string escape code"
    else:
        ctx = "looking for beginning of value"
    return "invalid character %s %s" % (go_quote_char(c), ctx)


def _reject_constant(name):
    raise ValueError(name)


def parse_json_body(body):
    """Parse a request body like gin's ShouldBindJSON; raises BadRequest."""
    text = body.decode("utf-8", "replace")
    if not text.strip():
        raise BadRequest("missing request body")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise BadRequest(go_json_error(e))
    except ValueError as e:
        raise BadRequest("invalid character '%s' looking for beginning of value" % str(e)[:1])
    except RecursionError:
        raise BadRequest("exceeded max depth")


def split_points(data):
    """Where to cut a line for split_utf8: after the lead byte of every
    multibyte character, or in the middle when there is none."""
    cuts = [i + 1 for i, b in enumerate(data) if b >= 0xC0]
    if not cuts and len(data) > 1:
        cuts = [len(data) // 2]
    pieces, last = [], 0
    for c in cuts:
        if c > last:
            pieces.append(data[last:c])
            last = c
    pieces.append(data[last:])
    return [p for p in pieces if p]
