#!/usr/bin/python3
"""Fake LLM backend for mod_chatbot's tests, demos and benchmarks.

It speaks Ollama's API (/api/chat NDJSON, /api/tags, /api/version, GET and
HEAD /) and the OpenAI-compatible API (/v1/chat/completions as SSE or JSON,
/v1/models) with the same headers, chunking and line shapes as the real
servers (see tests/vectors/ollama/). It is NOT a model: replies are echoes,
canned demo text or whatever a test script asks for.

Usage (Python 3.11 stdlib only):

    fake_backend.py [--host 127.0.0.1] [--port 0] [--port-file PATH]
                    [--models qwen2.5-coder:7b,llama3.2:latest]
                    [--token-delay-ms 15] [--demo] [--strict-models]
                    [--bench] [--bench-tokens 100] [--quiet] [--verbose]

--port 0 picks a free port; the port is written to --port-file (atomically)
once the server listens. One line per request goes to stderr (--quiet turns
that off; --bench implies it). SIGTERM / SIGINT exit with status 0.

Replies:
  * default: "Echo: <last user message>" streamed word by word (each token is
    a word with its leading whitespace), --token-delay-ms between lines.
  * --demo: a reply labelled "(demo backend: canned reply, not a model)";
    asking for "code" adds a fenced code block.
  * --bench: --bench-tokens tokens "t0 t1 ..." with no delay, the whole
    response written in one send.
  * the model "nosuchmodel" always gets 404 "model 'nosuchmodel' not found".

Scripts choose the reply, timing and faults of one chat request:
  * inline, in the last user message: [[fake key=value key=value ...]]
    (removed from the echoed text; values use %XX escapes, a bare key means 1)
  * queued: POST /_fake/script with a JSON list of objects (same keys, JSON
    values, "reply" is plain text); each chat request takes the first queued
    script (FIFO), inline keys override it. A queued script with "path" is
    taken only by a request to that path (any endpoint, e.g. /api/tags).

  Keys: reply, reply_b64, tokens, delay_ms, first_delay_ms, think, fault,
  after, status, error, split_utf8, last_has_content, done_reason, huge_kb,
  flavor (ollama|llamacpp, for /v1), path (queued scripts only),
  ignore_stream, gzip, eol (lf|crlf|cr), content_type, after_done,
  hold_after_done_ms.
  Faults: refuse, hang_headers, hang_mid, slow, drop, drop_rst, error_line,
  garbage, invalid_json, huge_line, wrong_content_type, no_done, empty,
  drop_after_done.

Control API on the same port:
  POST /_fake/script, POST /_fake/reset, GET /_fake/scripts, GET /_fake/info,
  POST /_fake/down, POST /_fake/up (chat port stops/starts listening; use
  --control-port-file to reach the control API meanwhile),
  GET /_fake/requests, GET /_fake/requests/<id>,
  GET /_fake/requests?wait_closed=<id>&timeout=5 (blocks until it ended).

docs/testing.md ("The fake backend") documents every key and fault.

The code, one job per file next to this one (this file is the entry point:
the command line, signals, start and stop; it re-exports the names below):
  fake_encoding.py  Go-compatible JSON, dates, chunks; request body parsing
  fake_scripts.py   script keys and faults, [[fake ...]] directives, the Plan
  fake_state.py     the queued scripts and the request log (/_fake/requests)
  fake_ollama.py    Ollama's wire format (/api/chat lines, /api/tags)
  fake_openai.py    the OpenAI-compatible wire format (SSE, /v1/models)
  fake_http.py      the HTTP/1.1 connection: parsing, headers, poll, close
  fake_faults.py    faults before the first token and in the middle
  fake_chat.py      chat requests: validation, streamed/JSON/bench replies
  fake_server.py    routing, the control API, listening sockets, threads
"""

import argparse
import os
import signal
import sys

# The modules above are imported by name: the script's directory is on
# sys.path when it runs as a script; an importer that loads this file by
# its path may not have put it there.
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from fake_chat import SPLIT_PAUSE_S  # noqa: E402
from fake_encoding import (  # noqa: E402
    GO_ESCAPES, SURROGATE_RE, TOKEN_RE, BadRequest, chunk_frame, counted_tokens, go_json_error,
    go_quote_char, gojson, gotype, http_date, parse_json_body, reason_phrase, rfc3339,
    split_points, tokenize)
from fake_faults import (  # noqa: E402
    BUSY_MSG, HANG_CAP_S, HTML_BODY, RUNNER_ERROR_MSG, STREAM_ERROR_MSG)
from fake_http import (  # noqa: E402
    IO_TIMEOUT_S, MAX_BODY_BYTES, MAX_HEADER_BYTES, RBUF_CAP, ClientGone, ConnClosed, Request)
from fake_ollama import KNOWN_MODELS, OLLAMA_VERSION, OllamaFormat  # noqa: E402
from fake_openai import OpenAIFormat  # noqa: E402
from fake_scripts import (  # noqa: E402
    CHAT_PATHS, DEFAULT_AFTER, DEFAULT_HUGE_KB, DEMO_CODE, DIRECTIVE_RE, FAULTS, INT_KEYS,
    MID_FAULTS, PLAIN_FAULTS, SLOW_DELAY_MS, STR_KEYS, Plan, ScriptError, demo_reply,
    extract_directive, normalize_script)
from fake_server import Conn, Server  # noqa: E402
from fake_state import MAX_RECORDS, State  # noqa: E402

DEFAULT_MODELS = "qwen2.5-coder:7b,llama3.2:latest"

# Every public name the single-file fake backend defined, for its importers.
__all__ = [
    "OLLAMA_VERSION", "DEFAULT_MODELS", "HANG_CAP_S", "IO_TIMEOUT_S", "MAX_HEADER_BYTES",
    "MAX_BODY_BYTES", "MAX_RECORDS", "RBUF_CAP", "SPLIT_PAUSE_S", "BUSY_MSG",
    "STREAM_ERROR_MSG", "RUNNER_ERROR_MSG", "FAULTS", "MID_FAULTS", "INT_KEYS", "STR_KEYS",
    "PLAIN_FAULTS", "CHAT_PATHS", "DEFAULT_AFTER", "DEFAULT_HUGE_KB", "SLOW_DELAY_MS",
    "DIRECTIVE_RE", "TOKEN_RE", "SURROGATE_RE", "GO_ESCAPES", "KNOWN_MODELS", "HTML_BODY",
    "DEMO_CODE", "gojson", "rfc3339", "http_date", "reason_phrase", "chunk_frame", "tokenize",
    "counted_tokens", "gotype", "go_quote_char", "go_json_error", "parse_json_body",
    "split_points", "BadRequest", "ScriptError", "normalize_script", "extract_directive",
    "State", "OllamaFormat", "OpenAIFormat", "ClientGone", "ConnClosed", "Request", "Plan",
    "Conn", "demo_reply", "Server", "parse_args", "main"]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Fake Ollama / OpenAI-compatible backend for tests, demos and benchmarks.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--port-file", help="write the bound port here (atomically)")
    ap.add_argument("--control-port-file",
                    help="also listen on a second port (written here) that serves the "
                         "control API even while the chat port is down (POST /_fake/down)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    ap.add_argument("--token-delay-ms", type=float, default=15.0,
                    help="default delay between streamed lines")
    ap.add_argument("--demo", action="store_true",
                    help="canned, clearly labelled replies for `make run` without Ollama")
    ap.add_argument("--strict-models", action="store_true",
                    help="404 for any model not in --models (default: only nosuchmodel)")
    ap.add_argument("--bench", action="store_true",
                    help="answer at once with --bench-tokens tokens, no delays, quiet")
    ap.add_argument("--bench-tokens", type=int, default=100)
    ap.add_argument("--path-prefix", default="",
                    help="serve the API under this path (e.g. /ollama), as behind a "
                         "reverse proxy; other paths get 404")
    ap.add_argument("--quiet", action="store_true", help="no per-request log lines")
    ap.add_argument("--verbose", action="store_true", help="tracebacks for internal errors")
    args = ap.parse_args(argv)
    args.path_prefix = args.path_prefix.rstrip("/")
    if args.path_prefix and not args.path_prefix.startswith("/"):
        ap.error("--path-prefix must start with /")
    if args.token_delay_ms < 0 or args.bench_tokens < 0:
        ap.error("delays and token counts must be >= 0")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    srv = Server(args)

    def on_signal(signum, frame):
        srv.stopping = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        srv.bind()
    except OSError as e:
        sys.stderr.write("fake_backend: cannot listen on %s:%s: %s\n" % (args.host, args.port, e))
        return 1
    mode = "bench" if args.bench else "demo" if args.demo else "test"
    sys.stderr.write("fake_backend: listening on %s:%d (%s mode, models %s)\n"
                     % (args.host, srv.port, mode, ",".join(srv.models)))
    sys.stderr.flush()
    srv.wake_w = wake_w
    srv.serve_forever(wake_r)
    for ls in (srv.lsock, srv.csock):
        try:
            if ls is not None:
                ls.close()
        except OSError:
            pass
    if args.port_file:
        try:
            with open(args.port_file) as f:
                if f.read().strip() == str(srv.port):
                    os.unlink(args.port_file)
        except OSError:
            pass
    with srv.log_lock:
        try:
            sys.stderr.write("fake_backend: shutting down\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    # Daemon connection threads may be blocked in poll(); leave without joining them.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
