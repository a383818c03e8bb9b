#!/usr/bin/env bash
# Builds the Uppy page's browser bundle (examples/uppy.py, /uppy) from the npm
# registry: @uppy/core, @uppy/drag-drop and @uppy/tus at the versions pinned
# in tests/js/package-lock.json, bundled and minified by esbuild (also pinned
# there) into one ES module, examples/static/uppy/uppy.min.js (~125 KB), plus
# their CSS, licences and a VERSION file. The result is committed, so the demo
# needs no network and no Node at run time; tests/interop/test_uppy_bundle.py
# checks that the committed files are exactly what this script builds.
#   bash examples/vendor_uppy.sh        # UPPY_OUT=dir builds elsewhere (the test does)
set -euo pipefail
cd "$(dirname "$0")/.."

js=tests/js
if [ ! -x "$js/node_modules/.bin/esbuild" ] || [ ! -d "$js/node_modules/@uppy/core" ]; then
  npm ci --prefix "$js" --no-audit --no-fund --loglevel=error
fi
out=${UPPY_OUT:-examples/static/uppy}
mkdir -p "$out"
# esbuild resolves packages from the entry's folder upwards: build from tests/js.
entry=$(mktemp "$js/.uppy-entry-XXXXXX.mjs")
trap 'rm -f "$entry"' EXIT
cp examples/uppy_src/entry.js "$entry"
"$js/node_modules/.bin/esbuild" "$entry" --bundle --minify --format=esm \
  --target=es2020 --legal-comments=none --log-level=warning --outfile="$out/uppy.min.js"
cat "$js/node_modules/@uppy/core/dist/style.min.css" \
    "$js/node_modules/@uppy/drag-drop/dist/style.min.css" > "$out/uppy.min.css"
{
  echo "Uppy (https://uppy.io) and tus-js-client, MIT licence:"
  echo
  cat "$js/node_modules/@uppy/core/LICENSE"
} > "$out/LICENSE.uppy"
node -e '
  const lock = require("./tests/js/package-lock.json").packages;
  for (const p of ["@uppy/core", "@uppy/drag-drop", "@uppy/tus", "tus-js-client", "preact", "esbuild"])
    console.log(p + " " + lock["node_modules/" + p].version);
' > "$out/VERSION"
echo "built $out/uppy.min.js from: $(tr '\n' ' ' < "$out/VERSION")"
