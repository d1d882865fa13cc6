#!/usr/bin/env bash
# Runs every test stage, keeps going after a failure, prints one summary, and fails if any stage failed or
# if a test left a process or a network namespace behind.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ] && [ "${SKIP_ROOT_TESTS:-}" != 1 ]; then
  echo "The network-namespace e2e tests need root. Run as root, or set SKIP_ROOT_TESTS=1 to skip them explicitly." >&2
  exit 1
fi

declare -a names=() results=() times=()
stage() {
  local name=$1; shift
  local start=$SECONDS
  echo; echo "=== $name"
  if "$@"; then results+=(PASS); else results+=(FAIL); fi
  names+=("$name"); times+=($((SECONDS - start)))
}

before_leaks=$( { pgrep -x kube-apiserver; pgrep -x etcd; } 2>/dev/null | sort | tr '\n' ' ')

stage lint make --no-print-directory lint
stage typecheck make --no-print-directory typecheck
stage unit make --no-print-directory test-unit
stage e2e make --no-print-directory test-e2e

leaks() {
  # A leftover is a process that was not running before the tests and whose starter is gone (it was
  # re-parented to init). Another run's live control plane, with its parent still alive, is not ours.
  local now left=""; now=$( { pgrep -x kube-apiserver; pgrep -x etcd; } 2>/dev/null | sort | tr '\n' ' ')
  for pid in $now; do
    case " $before_leaks " in *" $pid "*) continue;; esac
    [ "$(ps -o ppid= -p "$pid" 2>/dev/null | tr -d ' ')" = 1 ] && left="$left $pid"
  done
  if [ -n "$left" ]; then echo "left running:$left" >&2; ps -o pid,args -p "${left# }" >&2 || true; return 1; fi
  local ns; ns=$(ip netns list 2>/dev/null | grep -E '^podid' || true)
  if [ -n "$ns" ]; then echo "network namespaces left: $ns" >&2; return 1; fi
}
stage no-leftovers leaks

echo
echo "=== summary"
failed=0
for i in "${!names[@]}"; do
  printf '%-14s %-5s %4ss\n' "${names[$i]}" "${results[$i]}" "${times[$i]}"
  [ "${results[$i]}" = PASS ] || failed=$((failed + 1))
done
passed=$(( ${#names[@]} - failed ))
echo "stages: $passed passed, $failed failed"
exit $(( failed > 0 ))
