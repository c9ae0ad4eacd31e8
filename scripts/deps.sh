#!/bin/sh
# Installs what the build, `make run` and `make test` need on Debian 12.
#   scripts/deps.sh          build + run + test packages, npm packages
#   scripts/deps.sh run      only what `make run` needs
#   scripts/deps.sh bench    plus the benchmark tools
# Idempotent and quick when everything is there (dpkg-query only).
set -eu
cd "$(dirname "$0")/.."
what=${1:-test}

pkgs="apache2 apache2-dev libapr1-dev libaprutil1-dev libcurl4-openssl-dev
      libjson-c-dev libwslay-dev libhiredis-dev libssl-dev pkg-config make gcc openssl ca-certificates curl python3"
if [ "$what" != run ]; then
    pkgs="$pkgs libcmocka-dev clang clang-format python3-pytest python3-websockets python3-requests
          python3-h2 python3-prometheus-client chromium fonts-dejavu-core iproute2
          procps redis-server redis-tools"
fi
if [ "$what" = bench ]; then
    pkgs="$pkgs wrk valgrind linux-perf"
fi
command -v npm >/dev/null 2>&1 || pkgs="$pkgs nodejs npm"

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: missing Debian packages:$missing" >&2
        echo "deps: run as root, or: sudo apt-get install$missing" >&2
        exit 1
    fi
    echo "deps: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # policy-rc.d keeps the Debian apache2 service from starting on port 80:
    # the project runs its own httpd from a private ServerRoot.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get install -y -qq --no-install-recommends $missing
fi

# npm packages (UI libraries and, for tests, playwright-core): installed from
# the lock file; nothing from npm is committed.
need_npm=0
[ -d node_modules/marked ] || need_npm=1
[ package-lock.json -nt node_modules/.package-lock.json ] && need_npm=1
[ "$what" != run ] && [ ! -d node_modules/playwright-core ] && need_npm=1
if [ "$need_npm" = 1 ]; then
    if [ "$what" = run ]; then
        npm ci --omit=dev --no-audit --no-fund --loglevel=error
    else
        npm ci --no-audit --no-fund --loglevel=error
    fi
fi
