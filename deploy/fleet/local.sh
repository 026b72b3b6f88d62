#!/usr/bin/env bash
# A fleet on one machine: three etcd members and three flagd-rs replicas on loopback, sharing
# one authority. Ctrl-C stops everything.
#
#   deploy/fleet/local.sh [FLAG_FILE]          (default: the bundled flags/default.flagd.json)
#
# Replica N (0, 1, 2) serves evaluation on 8013+1000N, management on 8014+1000N, sync on
# 8015+1000N, OFREP on 8016+1000N and the admin API on 8017+1000N. Try:
#   flagd-rs split progressive-rollout stable=75 canary=25 --admin-url http://127.0.0.1:9017
#   curl -s http://127.0.0.1:10016/ofrep/v1/evaluate/flags/progressive-rollout -d '{"context":{"targetingKey":"u1"}}'
# Needs `etcd` (Debian/Ubuntu: apt-get install etcd-server) and `flagd-rs` on PATH (or FLAGD_RS).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
flags=${1:-$root/flags/default.flagd.json}
flagd_rs=${FLAGD_RS:-flagd-rs}
command -v etcd >/dev/null || { echo "etcd is not installed (apt-get install etcd-server)" >&2; exit 1; }
command -v "$flagd_rs" >/dev/null || { echo "$flagd_rs is not on PATH (cargo install --path flagd-rs/daemon, or set FLAGD_RS)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
stop() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  # Give every process up to 10 s to stop cleanly, then kill what is left.
  local i
  for i in $(seq 1 100); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
trap 'exit 130' INT TERM

cluster=m0=http://127.0.0.1:2380,m1=http://127.0.0.1:12380,m2=http://127.0.0.1:22380
endpoints=127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379
for i in 0 1 2; do
  client=$((2379 + 10000 * i)) peer=$((2380 + 10000 * i))
  etcd --name "m$i" --data-dir "$work/etcd-$i" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token flagd-rs-local \
    >"$work/etcd-$i.log" 2>&1 &
  pids+=($!)
done

for i in 0 1 2; do
  base=$((8013 + 1000 * i))
  "$flagd_rs" start --uri "file:$flags" --store "etcd://$endpoints/flagd-rs" \
    --replica-id "replica-$i" --state-dir "$work/state-$i" \
    --port "$base" --management-port $((base + 1)) --sync-port $((base + 2)) \
    --ofrep-port $((base + 3)) --admin-port $((base + 4)) &
  pids+=($!)
done
echo "fleet running (logs of etcd in $work); Ctrl-C stops it"
wait -n
