#!/bin/sh
# `make run`: start httpd (event MPM) in the foreground with mod_chatbot from a
# private ServerRoot: http://localhost:$CHATBOT_PORT and https on
# $CHATBOT_SSL_PORT (self-signed certificate made on first run). Ctrl-C stops it.
#
#   CHATBOT_PORT (8000)  CHATBOT_SSL_PORT (8443)
#   OLLAMA_URL (http://127.0.0.1:11434)  CHATBOT_MODEL (qwen2.5-coder:7b)
#
# If no Ollama answers at OLLAMA_URL, the project's fake backend is started on
# a private loopback port and the page says so: it gives canned replies.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
PORT=${CHATBOT_PORT:-8000}
SSLPORT=${CHATBOT_SSL_PORT:-8443}
OLLAMA_URL=${OLLAMA_URL:-http://127.0.0.1:11434}
MODEL=${CHATBOT_MODEL:-qwen2.5-coder:7b}
ROOT=${CHATBOT_RUN_ROOT:-$REPO/run}
PY=/usr/bin/python3

mkdir -p "$ROOT/run" "$ROOT/logs"
fake_pid=""
cleanup() {
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
}
trap cleanup EXIT INT TERM

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
       --listen '*' --backend "$OLLAMA_URL" --model "$MODEL" $demo)
/usr/sbin/apache2 -t -f "$CONF"
echo "run: mod_chatbot on http://localhost:$PORT/ and https://localhost:$SSLPORT/"
echo "run: logs in $ROOT/logs; Ctrl-C to stop"
/usr/sbin/apache2 -f "$CONF" -DFOREGROUND &
httpd_pid=$!
trap 'kill -TERM $httpd_pid 2>/dev/null; wait $httpd_pid 2>/dev/null; cleanup; exit 0' INT TERM
wait $httpd_pid || true
cleanup
