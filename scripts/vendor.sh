#!/bin/sh
# Copies the UI's third-party libraries from node_modules (installed by
# `npm ci` from package-lock.json) into htdocs/vendor/. Nothing from npm is
# committed; htdocs/vendor is generated.
set -eu
cd "$(dirname "$0")/.."
pkgs="marked dompurify @highlightjs/cdn-assets katex marked-footnote"
for p in $pkgs; do
    if [ ! -d "node_modules/$p" ]; then
        npm ci --omit=dev --no-audit --no-fund --loglevel=error
        break
    fi
done
out=htdocs/vendor
rm -rf "$out"
mkdir -p "$out/katex/fonts"
cp node_modules/marked/lib/marked.esm.js "$out/marked.esm.js"
cp node_modules/dompurify/dist/purify.es.mjs "$out/purify.es.mjs"
cp node_modules/@highlightjs/cdn-assets/es/highlight.min.js "$out/highlight.min.js"
cp node_modules/@highlightjs/cdn-assets/styles/github.min.css "$out/hl-light.css"
cp node_modules/@highlightjs/cdn-assets/styles/github-dark.min.css "$out/hl-dark.css"
# Math: KaTeX's ES module, its stylesheet and fonts (same origin: the CSP's
# default-src 'self' covers fonts). Loaded by the page only when an answer
# contains math.
cp node_modules/katex/dist/katex.mjs "$out/katex/katex.mjs"
cp node_modules/katex/dist/katex.min.css "$out/katex/katex.min.css"
cp node_modules/katex/dist/fonts/*.woff2 node_modules/katex/dist/fonts/*.woff "$out/katex/fonts/"
# Footnotes: a marked extension (plain ES module, no imports).
cp node_modules/marked-footnote/dist/index.js "$out/marked-footnote.js"
if grep -q '^import ' "$out/marked-footnote.js" "$out/katex/katex.mjs"; then
    echo "vendor: a vendored module imports another package; the page loads no bare specifiers" >&2
    exit 1
fi
for p in $pkgs; do
    v=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' node_modules/$p/package.json)
    echo "$p $v"
done > "$out/VERSIONS"
echo "vendor: $(tr '\n' ' ' < "$out/VERSIONS")"
