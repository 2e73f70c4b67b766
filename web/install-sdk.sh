#!/bin/sh
# Install the Ultravox client SDK at the versions package-lock.json pins (npm registry, no
# install scripts) and copy its browser files into the page's vendor folder, given as $1.
# Used by `make web` and by the Dockerfile's build stage.
set -eu
cd "$(dirname "$0")"
dest="$1"
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
rm -rf "$dest"
mkdir -p "$dest/ultravox-client"
cp node_modules/ultravox-client/dist/esm/index.js node_modules/ultravox-client/dist/esm/version.js \
    node_modules/ultravox-client/LICENSE "$dest/ultravox-client/"
# The SDK's one dependency with a browser build: a single self-contained ES module.
cp node_modules/livekit-client/dist/livekit-client.esm.mjs "$dest/"
cp node_modules/livekit-client/LICENSE "$dest/livekit-client.LICENSE"
