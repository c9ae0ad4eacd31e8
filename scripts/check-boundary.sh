#!/bin/sh
# Fails if the portable core (mod_chatbot/core, include/chat) includes an
# httpd, APR or curl header, directly or through a project header.
set -eu
cd "$(dirname "$0")/.."
bad=$(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"](httpd|http_|ap_|apr|apu|util_|mpm|scoreboard|mod_|curl/|mod_chatbot\.h)' \
        mod_chatbot/core/*.c mod_chatbot/core/*.h include/chat/*.h 2>/dev/null || true)
if [ -n "$bad" ]; then
    echo "check-boundary: the core must not include httpd/APR/curl headers:" >&2
    echo "$bad" >&2
    exit 1
fi
# Second line of defence: compile every core file with only the core's own
# include path and json-c/wslay; an indirect include of httpd/APR/curl fails.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for f in mod_chatbot/core/*.c; do
    ${CC:-cc} -std=c99 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fsyntax-only \
        -Iinclude $(pkg-config --cflags json-c 2>/dev/null) "$f" \
        -H 2>"$tmp/h" || { cat "$tmp/h" >&2; exit 1; }
    if grep -E '/(apache2|apr-1(\.0)?|curl)/|/apr[a-z_]*\.h' "$tmp/h" >/dev/null; then
        echo "check-boundary: $f pulls in an httpd/APR/curl header:" >&2
        grep -E '/(apache2|apr-1(\.0)?|curl)/|/apr[a-z_]*\.h' "$tmp/h" >&2
        exit 1
    fi
done
echo "check-boundary: core is free of httpd/APR/curl headers ($(ls mod_chatbot/core/*.c | wc -l) files)"
