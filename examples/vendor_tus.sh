#!/usr/bin/env bash
# Vendors tus-js-client's browser bundle (from the npm registry) into
# examples/static/tus/, where the tus example page (examples/tus.py, /tus)
# loads it from. Run from anywhere:
#   bash examples/vendor_tus.sh
# It installs tests/js (npm ci, the version pinned by its package-lock.json)
# when that is not done yet, then copies dist/tus.min.js and the licence.
# Without the vendored copy the page falls back to tests/js/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=tests/js/node_modules/tus-js-client
if [ ! -f "$pkg/dist/tus.min.js" ]; then
  npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
fi
mkdir -p examples/static/tus
cp "$pkg/dist/tus.min.js" examples/static/tus/tus.min.js
cp "$pkg/LICENSE" examples/static/tus/LICENSE.tus-js-client
version=$(python -c "import json; print(json.load(open('$pkg/package.json'))['version'])")
echo "$version" > examples/static/tus/VERSION
echo "vendored tus-js-client $version into examples/static/tus/"
