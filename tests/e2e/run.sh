#!/bin/sh
# Browser end-to-end tests of the web UI (called by `make e2e`).
#
#   BASE_URL  the page under test, e.g. https://127.0.0.1:8443/ (required)
#   FAKE_URL  the fake backend's control API (needed by backend-down)
#   CHROMIUM  browser binary (default /usr/bin/chromium)
#
# Runs the tests/e2e/tests_*.mjs files (run.mjs) with node + playwright-core
# against Debian's Chromium; screenshots go to tests/output/screenshots/. Extra arguments
# select tests by name substring. Without BASE_URL this fails (exit 1):
# a skipped suite must not look like a passing one.
set -eu
cd "$(dirname "$0")/../.."
if [ -z "${BASE_URL:-}" ]; then
    echo "e2e: BASE_URL not set, skipped"
    exit 1
fi
if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
mkdir -p tests/output/screenshots
exec node tests/e2e/run.mjs "$@"
