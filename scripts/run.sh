#!/bin/sh
# `make run`: start httpd (event MPM) in the foreground with mod_chatbot from a
# private ServerRoot: http://localhost:$CHATBOT_PORT and https on
# $CHATBOT_SSL_PORT (self-signed certificate made on first run). Ctrl-C stops it.
#
#   CHATBOT_PORT (8000)  CHATBOT_SSL_PORT (8443)  CHATBOT_LISTEN (*: every address)
#   OLLAMA_URL (http://127.0.0.1:11434)  CHATBOT_MODEL (qwen2.5-coder:7b)
#   CHATBOT_RUN_ROOT (./run)
#   CHATBOT_STORE (shm): ChatbotStore, e.g. redis://127.0.0.1:6379/0 to keep the
#   store in redis (docs/storage.md); the history file is then not used
#
# Works from any directory, as root or as a normal user: see
# scripts/serverroot.py for where each part of the ServerRoot goes when
# httpd's children (www-data, when started as root) cannot enter the clone
# (/run/mod_chatbot/<tag>, or under CHATBOT_OUTSIDE_DIR if set).
# The history is kept across restarts in $CHATBOT_RUN_ROOT/data/history.bin.
#
# If no Ollama answers at OLLAMA_URL, the project's fake backend is started on
# a private loopback port and the page says so: it gives canned replies.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
PORT=${CHATBOT_PORT:-8000}
SSLPORT=${CHATBOT_SSL_PORT:-8443}
LISTEN=${CHATBOT_LISTEN:-*}
OLLAMA_URL=${OLLAMA_URL:-http://127.0.0.1:11434}
MODEL=${CHATBOT_MODEL:-qwen2.5-coder:7b}
ROOT=${CHATBOT_RUN_ROOT:-$REPO/run}
PY=/usr/bin/python3

mkdir -p "$ROOT/run" "$ROOT/logs"
fake_pid=""
httpd_pid=""
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
    # the copy served from outside the clone (see serverroot.py) goes too
    if [ -z "$httpd_pid" ] && [ -s "$ROOT/conf/outside" ]; then
        case $(cat "$ROOT/conf/outside") in
        /?*/?*) rm -rf "$(cat "$ROOT/conf/outside")"
                rmdir "$(dirname "$(cat "$ROOT/conf/outside")")" 2>/dev/null || true ;;
        esac
    fi
}
stop() {
    if [ -n "$httpd_pid" ]; then
        kill -TERM "$httpd_pid" 2>/dev/null || true
        # the parent saves the history before it exits
        wait "$httpd_pid" 2>/dev/null || true
        httpd_pid=""
    fi
    cleanup
    exit 0
}
trap cleanup EXIT
trap stop INT TERM

demo=""
if curl -fsS --max-time 3 "$OLLAMA_URL/api/version" >/dev/null 2>&1; then
    echo "run: using the Ollama server at $OLLAMA_URL (model $MODEL)"
else
    rm -f "$ROOT/run/fake.port"
    $PY tests/fake_backend/fake_backend.py --demo --host 127.0.0.1 --port 0 \
        --port-file "$ROOT/run/fake.port" --models "$MODEL" \
        >>"$ROOT/logs/fake_backend.log" 2>&1 &
    fake_pid=$!
    i=0
    while [ ! -s "$ROOT/run/fake.port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    if [ ! -s "$ROOT/run/fake.port" ]; then
        echo "run: the demo backend did not start; see $ROOT/logs/fake_backend.log" >&2
        exit 1
    fi
    OLLAMA_URL="http://127.0.0.1:$(cat "$ROOT/run/fake.port")"
    demo="--demo"
    echo "run: no Ollama answers at the configured OLLAMA_URL;"
    echo "run: DEMO BACKEND started at $OLLAMA_URL: canned replies, not a model."
    echo "run: set OLLAMA_URL to use a real model."
fi

CONF=$($PY scripts/serverroot.py --root "$ROOT" --port "$PORT" --sslport "$SSLPORT" \
       --listen "$LISTEN" --backend "$OLLAMA_URL" --model "$MODEL" --history $demo)
# Every open chat is a file descriptor of a child; idle ones hold no thread
# (parked in the event MPM), so the descriptors are the limit: as many as
# this shell may have (docs/websocket.md, "Sizing").
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
/usr/sbin/apache2 -t -f "$CONF"
if [ -s "$ROOT/conf/outside" ]; then
    echo "run: httpd's children ($(sed -n 's/^User //p' "$CONF")) cannot enter $REPO:"
    echo "run: they get the pages and runtime files from $(cat "$ROOT/conf/outside")"
    echo "run: (a copy, refreshed at every start: restart after editing htdocs/)"
fi
echo "run: mod_chatbot on http://localhost:$PORT/ and https://localhost:$SSLPORT/"
if [ -n "${CHATBOT_STORE:-}" ] && [ "$CHATBOT_STORE" != shm ]; then
    echo "run: chat store in redis (CHATBOT_STORE); a password in it is not shown"
else
    echo "run: history kept in $ROOT/data/history.bin (saved when httpd stops;"
    echo "run: delete the file to start afresh)"
fi
echo "run: logs in $ROOT/logs; Ctrl-C to stop"
/usr/sbin/apache2 -f "$CONF" -DFOREGROUND &
httpd_pid=$!
wait "$httpd_pid" || true
httpd_pid=""
cleanup
