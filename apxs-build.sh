#!/bin/sh
# Builds mod_chatbot.so with apxs from the glue sources and the core static
# library (built first by `make core`, compiled with -fPIC).
#   APXS=/usr/bin/apxs BUILD=build ./apxs-build.sh
set -eu
cd "$(dirname "$0")"
APXS=${APXS:-apxs}
BUILD=${BUILD:-build}
[ -f "$BUILD/libchatcore.a" ] || make core
JSONC_CFLAGS=$(pkg-config --cflags json-c 2>/dev/null || true)
JSONC_LIBS=$(pkg-config --libs json-c 2>/dev/null || echo -ljson-c)
CURL_LIBS=$(curl-config --libs 2>/dev/null || echo -lcurl)
# -Wc passes flags to the compiler, -Wl to the linker (through libtool).
# libtool moves plain -l flags before the -Wl ones; the core archive needs
# its libraries after it (--as-needed), so they are passed as -Wl too.
$APXS -c -o mod_chatbot.la \
    -Iinclude $JSONC_CFLAGS \
    -Wc,-std=gnu99 -Wc,-Wall -Wc,-Wextra -Wc,-Wno-unused-parameter \
    -Wc,-Wno-missing-field-initializers -Wc,-O2 -Wc,-g \
    mod_chatbot/*.c \
    -Wl,--whole-archive -Wl,"$BUILD/libchatcore.a" -Wl,--no-whole-archive \
    $(for l in $CURL_LIBS $JSONC_LIBS -lwslay -lhiredis -lcrypto; do printf -- '-Wl,%s ' "$l"; done) \
    >"$BUILD/apxs.log" 2>&1 || { cat "$BUILD/apxs.log"; exit 1; }
grep -E "(warning|error):" "$BUILD/apxs.log" || true
mkdir -p "$BUILD"
# rename, never overwrite in place: a running httpd maps the old file
cp .libs/mod_chatbot.so "$BUILD/mod_chatbot.so.tmp"
mv -f "$BUILD/mod_chatbot.so.tmp" "$BUILD/mod_chatbot.so"
# Every core symbol must be resolved inside the module (the core is linked in
# whole); an undefined chat_* means a missing core function.
missing=$(nm -D --undefined-only "$BUILD/mod_chatbot.so" | awk '$2 ~ /^chat_/ {print $2}')
if [ -n "$missing" ]; then
    echo "apxs-build: undefined core symbols in the module: $missing" >&2
    rm -f "$BUILD/mod_chatbot.so"
    exit 1
fi
echo "built $BUILD/mod_chatbot.so"
