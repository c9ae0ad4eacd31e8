#!/bin/sh
# `make e2e`: start the fake backend and an httpd with mod_chatbot from a
# private ServerRoot, then run the browser tests (tests/e2e/run.sh) against
# them over https/wss. BASE_URL, STRICT_URL (a location with a 2/min rate
# limit), FAKE_URL and E2E_HTTPD_CONF (to restart the server) are exported
# for the tests.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=/usr/bin/python3
ROOT=$(mktemp -d /tmp/chatbot-e2e-XXXXXX)
chmod 755 "$ROOT"
fake_pid=""
cleanup() {
    [ -f "$ROOT/conf/httpd.conf" ] && /usr/sbin/apache2 -f "$ROOT/conf/httpd.conf" -k stop 2>/dev/null || true
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null || true
    sleep 0.5
}
trap cleanup EXIT INT TERM
mkdir -p "$ROOT/logs"
$PY tests/fake_backend/fake_backend.py --host 127.0.0.1 --port 0 --port-file "$ROOT/fake.port" \
    --control-port-file "$ROOT/fake.ctl" --token-delay-ms 20 >"$ROOT/logs/fake.log" 2>&1 &
fake_pid=$!
i=0
while [ ! -s "$ROOT/fake.port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
FAKE_PORT=$(cat "$ROOT/fake.port")
FAKE_CTL=$(cat "$ROOT/fake.ctl")
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(port); SSLPORT=$(port)
CONF=$($PY - "$ROOT" "$PORT" "$SSLPORT" "$FAKE_PORT" <<'PYEOF'
import sys
sys.path.insert(0, "scripts")
import serverroot
root, port, sslport, fport = sys.argv[1:5]
extra = """
ChatbotRateLimit 100/min burst=100
# every test's browser is anonymous and comes from 127.0.0.1: the address's
# shared budget would be the whole suite's, so it is sized for the suite
ChatbotAnonymousRateLimit 5000/min burst=5000
ChatbotUserSettings model system temperature
ChatbotBackend local http://127.0.0.1:%s max=2
ChatbotCommand date /usr/bin/date args=none timeout=5s
ChatbotCommand uptime /usr/bin/uptime args=none timeout=5s
<ChatbotBot coder>
    ChatbotBotBackend local
    ChatbotBotCommands date uptime
    ChatbotModel "qwen2.5-coder:7b"
    ChatbotDescription "Writes and explains code"
    ChatbotSystemPrompt "You are a coding assistant."
</ChatbotBot>
<ChatbotBot writer>
    ChatbotBotBackend local
    ChatbotModel "llama3.2:latest"
    ChatbotDescription "Helps with prose"
</ChatbotBot>
Alias /strict/ "@HTDOCS@/"
<Location "/strict/ws">
    SetHandler chatbot
    ChatbotRateLimit 2/min burst=2
</Location>
<Location "/strict/api">
    SetHandler chatbot
    ChatbotRateLimit 2/min burst=2
</Location>
""" % fport
print(serverroot.render(root, int(port), int(sslport), "http://127.0.0.1:%s" % fport,
                        "qwen2.5-coder:7b", extra=extra))
PYEOF
)
/usr/sbin/apache2 -f "$CONF" -k start
i=0
until curl -fsk "https://127.0.0.1:$SSLPORT/api/health" >/dev/null 2>&1 || [ $i -ge 100 ]; do
    sleep 0.1; i=$((i+1))
done
export BASE_URL="https://127.0.0.1:$SSLPORT/"
export STRICT_URL="https://127.0.0.1:$SSLPORT/strict/"
# the control API on its own port: it stays reachable while the chat port is
# "down" (POST $FAKE_URL/down makes the backend refuse connections)
export FAKE_URL="http://127.0.0.1:$FAKE_CTL/_fake/"
# the server's configuration: conversation-gone-restart stops and starts it
export E2E_HTTPD_CONF="$CONF"
export E2E_OUTPUT="$REPO/tests/output"
echo "e2e: httpd at $BASE_URL, fake backend at $FAKE_URL, logs in $ROOT/logs"
rc=0
./tests/e2e/run.sh "$@" || rc=$?
if grep -E "\[(chatbot:)?(error|crit|alert|emerg)\]" "$ROOT/logs/error_log"; then
    echo "e2e: unexpected error-level lines in the error log (above)" >&2
    rc=1
fi
exit $rc
