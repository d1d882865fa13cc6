#!/usr/bin/env bash
# Makes sure a real etcd and kube-apiserver are available for the local control plane.
# Discovery order: $ETCD / $KUBE_APISERVER, then PATH, then the cache outside the repo, then a build
# from Debian packages (etcd-server, and the `kubernetes` source package for kube-apiserver).
# Prints the two resolved paths as shell assignments on the last two lines of stdout.
set -euo pipefail

CACHE_DIR="${POD_IDENTITY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pod-identity-operator}"
# Bump the suffix when the build recipe changes, so machines rebuild instead of reusing a bad binary.
APISERVER_CACHE="$CACHE_DIR/kube-apiserver-1.20.2-r2"
log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] ERROR: %s\n' "$*" >&2; exit 1; }

is_debian() { [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2 || die "apt-get update failed"; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >&2 \
    || die "apt-get install $* failed"
}

find_etcd() {
  if [ -n "${ETCD:-}" ]; then [ -x "$ETCD" ] || die "\$ETCD=$ETCD is not executable"; echo "$ETCD"; return; fi
  if command -v etcd >/dev/null 2>&1; then command -v etcd; return; fi
  is_debian || die "etcd not found. Install etcd 3.4+ and put it on PATH, or set ETCD=/path/to/etcd."
  log "installing etcd from Debian's etcd-server package"
  apt_install etcd-server
  # The package enables a system etcd on the default ports; tests start their own on free ports.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then as_root systemctl disable --now etcd >/dev/null 2>&1 || true; fi
  command -v etcd || die "etcd-server installed but etcd is not on PATH"
}

build_apiserver() {
  is_debian || die "kube-apiserver not found and this is not Debian. Install kube-apiserver (1.20+) on PATH, or set KUBE_APISERVER=/path/to/kube-apiserver."
  mkdir -p "$CACHE_DIR"
  local work
  work=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
  log "building kube-apiserver from Debian's kubernetes source package (about 7 minutes on 2 cores; once per machine)"
  local src=/etc/apt/sources.list.d/pod-identity-deb-src.sources
  if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
    local uris signed
    uris=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    signed=$(awk '/^Signed-By:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uris" ] || die "cannot find a Debian mirror in /etc/apt/sources.list.d/debian.sources to add deb-src"
    . /etc/os-release
    printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
      "$uris" "${VERSION_CODENAME:-bookworm}" "${signed:-/usr/share/keyrings/debian-archive-keyring.gpg}" | as_root tee "$src" >/dev/null
    apt_updated=""
  fi
  # reflect2 1.0.1 (vendored by Kubernetes 1.20) crashes under Go >= 1.18 with "fatal error: fault" when
  # json-iterator sorts map keys, which kills the API server on the first custom object. Debian ships the
  # fixed reflect2 1.0.2 and json-iterator 1.1.12 as Go source packages; they replace the vendored copies.
  apt_install golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  (cd "$work" && apt-get source -qq kubernetes >&2) || die "apt-get source kubernetes failed"
  local tree
  tree=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'kubernetes-*' | head -n1)
  [ -n "$tree" ] || die "kubernetes source tree not found after apt-get source"
  mkdir -p "$tree/.go/src/k8s.io" && ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  local gocode=/usr/share/gocode/src/github.com
  rsync -a --delete --exclude='*_test.go' --exclude='.*' "$gocode/modern-go/reflect2/" "$tree/vendor/github.com/modern-go/reflect2/"
  rsync -a --delete --exclude='*_test.go' --exclude='.*' "$gocode/json-iterator/go/" "$tree/vendor/github.com/json-iterator/go/"
  local started=$SECONDS
  ( cd "$tree" && GOPATH="$tree/.go" GOFLAGS=-mod=vendor CGO_ENABLED=0 GO111MODULE=on \
      make WHAT=cmd/kube-apiserver >"$work/build.log" 2>&1 ) &
  local pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && log "still building kube-apiserver ($((SECONDS - started))s): $(tail -n1 "$work/build.log" | cut -c1-100)"
  done
  wait "$pid" || { tail -n 30 "$work/build.log" >&2; die "kube-apiserver build failed (log: $work/build.log)"; }
  mkdir -p "$APISERVER_CACHE"
  # Copy then rename, so a concurrent reader never sees a half-written binary.
  cp "$tree/_output/local/bin/linux/amd64/kube-apiserver" "$APISERVER_CACHE/.kube-apiserver.new"
  mv -f "$APISERVER_CACHE/.kube-apiserver.new" "$APISERVER_CACHE/kube-apiserver"
  rm -rf "$work"
  log "kube-apiserver built in $((SECONDS - started))s and cached in $APISERVER_CACHE"
}

find_apiserver() {
  if [ -n "${KUBE_APISERVER:-}" ]; then [ -x "$KUBE_APISERVER" ] || die "\$KUBE_APISERVER=$KUBE_APISERVER is not executable"; echo "$KUBE_APISERVER"; return; fi
  if command -v kube-apiserver >/dev/null 2>&1; then command -v kube-apiserver; return; fi
  if [ -x "$APISERVER_CACHE/kube-apiserver" ]; then echo "$APISERVER_CACHE/kube-apiserver"; return; fi
  build_apiserver
  echo "$APISERVER_CACHE/kube-apiserver"
}

# Concurrent callers (parallel test runs, make targets) wait for one install or build instead of racing it.
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.install.lock"
if ! flock -n 9; then
  log "another install or build is running; waiting for it"
  flock 9
fi
etcd_path=$(find_etcd)
apiserver_path=$(find_apiserver)
echo "ETCD=$etcd_path"
echo "KUBE_APISERVER=$apiserver_path"
