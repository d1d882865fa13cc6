#!/usr/bin/env bash
# OS tools the tests and `make run` use: iptables (nft and legacy), iproute2 (ip netns), conntrack, openssl, curl,
# unzip (scripts/ensure-helm.sh), lua5.1 (runs the Argo CD health check as Argo CD's Lua 5.1 would) and
# prometheus with promtool (alert unit tests, the full-stack scrape, `make run`).
set -euo pipefail
need=()
command -v iptables-restore >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v conntrack >/dev/null 2>&1 || need+=(conntrack)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
command -v pgrep >/dev/null 2>&1 || need+=(procps)
command -v lua5.1 >/dev/null 2>&1 || need+=(lua5.1)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing tools: ${need[*]}. Install them with your package manager." >&2; exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "missing tools: ${need[*]}. Run: sudo apt-get install -y ${need[*]}" >&2; exit 1
fi
echo "[system-deps] installing ${need[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
