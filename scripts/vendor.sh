#!/bin/sh
# Copies the UI's third-party libraries from node_modules (installed by
# `npm ci` from package-lock.json) into htdocs/vendor/. Nothing from npm is
# committed; htdocs/vendor is generated.
set -eu
cd "$(dirname "$0")/.."
if [ ! -d node_modules/marked ] || [ ! -d node_modules/dompurify ] || \
   [ ! -d node_modules/@highlightjs/cdn-assets ]; then
    npm ci --omit=dev --no-audit --no-fund --loglevel=error
fi
out=htdocs/vendor
rm -rf "$out"
mkdir -p "$out"
cp node_modules/marked/lib/marked.esm.js "$out/marked.esm.js"
cp node_modules/dompurify/dist/purify.es.mjs "$out/purify.es.mjs"
cp node_modules/@highlightjs/cdn-assets/es/highlight.min.js "$out/highlight.min.js"
cp node_modules/@highlightjs/cdn-assets/styles/github.min.css "$out/hl-light.css"
cp node_modules/@highlightjs/cdn-assets/styles/github-dark.min.css "$out/hl-dark.css"
for p in marked dompurify @highlightjs/cdn-assets; do
    v=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' node_modules/$p/package.json)
    echo "$p $v"
done > "$out/VERSIONS"
echo "vendor: $(tr '\n' ' ' < "$out/VERSIONS")"
