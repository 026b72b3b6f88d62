#!/usr/bin/env bash
# Daemon load benchmarks: flagd-rs and a no-op server on the same serving stack
# (benches/src/bin/noop_server.rs), loaded in the same run so that every throughput figure is a
# ratio measured under the same conditions. Results are summarised in benches/RESULTS.md.
#
# Usage: benches/load/run.sh [MODE...]   (default: every mode, in this order)
#   throughput  max req/s: gRPC ResolveBoolean (h2load, 8 connections x 16 streams) for a static
#               and a targeting flag, and for the static flag on flagd.evaluation.v2 (against the
#               no-op's v1), Connect JSON ResolveBoolean (wrk, 32 connections), OFREP
#               single flag (wrk); daemon and no-op alternate, LOAD_REPEAT rounds
#   latency     p50/p99 at half the daemon's max rate (h2load --rps, per-request log), for the
#               daemon and for the no-op at the same rate; and at a light 1,000 req/s (gRPC)
#   reload      the flag file rewritten 10 times a second (write and rename) under constant-rate
#               load, against the same load without rewrites; and under max load (wrk)
#   events      save -> configuration_change latency over gRPC EventStream, 100 rewrites
#   ofrep       OFREP bulk evaluation of 100 flags: max req/s and p99 at half of it
#   watchers    10,000 SyncFlags streams: memory per stream, change -> all notified
#   memory      resident memory idle with the bundled flags and with 10,000 flags
#   overrides   gRPC ResolveBoolean max req/s with no override, with 100 active overrides (the
#               evaluated flags among them), and with those and one admin write a second,
#               alternating, LOAD_REPEAT rounds each
#   override    override accepted -> visible on RPC, EventStream and SyncFlags (200 blue/green
#               switches through the admin API), idle and under constant gRPC load
#   load        a LOAD_FLAGS-flag file (benches/load/gen_flags.py: targeting and metadata on every
#               flag) against a 1-flag file: start -> ready, RSS at rest, and a rewrite changing
#               one flag -> its new value served (LOAD_REWRITES per round); the two files
#               alternate, LOAD_REPEAT rounds (benches/load/startup.py)
#   dashboard   gRPC and Connect ResolveBoolean (targeting flag) max req/s and CPU per request:
#               the main daemon with the dashboard open (its pages fetched, the live feed
#               connected) against a daemon started with --ui off; alternating, LOAD_REPEAT rounds
#   otel        gRPC ResolveBoolean (targeting flag) max req/s and CPU per request: a daemon
#               tracing every request at 1 % sampling (--otel-sample-ratio 0.01) against one
#               without tracing, both started fresh on the same flags; alternating, LOAD_REPEAT
#               rounds. The collector is an unreachable port on 127.0.0.1 (nothing listens), so
#               the sampled spans are built, queued and exported to a refused connection: the
#               request-path cost of tracing, without a collector's CPU on the same 2 cores
#               (run it explicitly: it is not in the default set)
#   sse         LOAD_SSE_STREAMS OFREP event streams (/ofrep/v1/sse, one HTTP/1.1 connection
#               each; benches/src/bin/sse_load.rs): the daemon's resident memory per stream
#               against its 0-stream baseline, and a flag-file change -> every stream notified
#               (p50/p99 of 3 changes, from the start of the write), beside one stream alone;
#               once with plain streams, once with a bulk request and its own context (a token)
#               per stream, as web providers connect
#   fleet       three etcd members and three replicas sharing one store (--store etcd://...):
#               an admin write through one replica -> its change served by all three (OFREP,
#               LOAD_FLEET_WRITES writes, each through the next replica;
#               benches/src/bin/fleet_probe.rs), and gRPC ResolveBoolean max req/s and CPU per
#               request of a replica against a daemon with the file journal on the same flags,
#               alternating, LOAD_REPEAT rounds (run it explicitly: it needs `etcd`, and it is
#               not in the default set)
#
# Environment (defaults in brackets):
#   LOAD_DURATION [10]       seconds of each max-rate measurement (after LOAD_WARMUP [2] s of
#                            h2load warm-up; constant-rate runs leave out their first LOAD_WARMUP s)
#   LOAD_REPEAT [3]          rounds of the max-rate measurements; tables quote medians
#   LOAD_LATENCY_DURATION [15]  seconds of each constant-rate measurement
#   LOAD_THREADS [1]         threads of h2load and wrk
#   LOAD_BASE_PORT [18000]   ports used: base+13..17 (daemon), +113/+116 (no-op), +213..217 (bulk
#                            daemon), +313..317 (watchers daemon), +413..417 (memory daemons),
#                            +513..517 (override daemons), +613..617 (load daemons),
#                            +713..717 (the daemon without dashboard), +813..817 and
#                            +913..917 (untraced and traced daemons), +899 (the unreachable
#                            collector), +1013..1017 (sse daemon), +1113..1117, +1213..1217,
#                            +1313..1317 (fleet replicas), +1413..1417 (file-journal daemon
#                            of the fleet mode), +1500..1521 (etcd members)
#   LOAD_FLAGS [10000]       flags in the large file of the load mode
#   LOAD_REWRITES [5]        rewrites per round and file in the load mode
#   LOAD_WATCHERS [100x100]  SyncFlags connections x streams per connection
#   LOAD_SSE_STREAMS [10000] OFREP event streams of the sse mode
#   LOAD_FLEET_WRITES [200]  admin writes of the fleet mode
#   LOAD_WORK [/tmp/flagd-load]    scratch directory (flag files, bodies, logs)
#   LOAD_RESULTS             JSON-lines results [target/load/results-<UTC time>.jsonl]
#   LOAD_NO_BUILD            set to skip the build
#   LOAD_PROFILE [dist]      the cargo profile whose binaries are built and loaded (`release`
#                            to compare the quick build with the shipped one)
#   FLAGD_PEERS_SRC          the peer workload generator's directory [<workspace>/../shared/peers]
#
# Every load targets 127.0.0.1, every load command is bounded in time, and every process the
# script starts is stopped when it exits. Every command is printed before it runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$ROOT/benches/load
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=${LOAD_PROFILE:-dist}
BIN=$TARGET/$PROFILE
PEERS_SRC=${FLAGD_PEERS_SRC:-$ROOT/../shared/peers}
WORK=${LOAD_WORK:-/tmp/flagd-load}
OUT=${LOAD_RESULTS:-$TARGET/load/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
DURATION=${LOAD_DURATION:-10}
WARMUP=${LOAD_WARMUP:-2}
REPEAT=${LOAD_REPEAT:-3}
LAT_DURATION=${LOAD_LATENCY_DURATION:-15}
THREADS=${LOAD_THREADS:-1}
BASE=${LOAD_BASE_PORT:-18000}
WATCHERS=${LOAD_WATCHERS:-100x100}
SSE_STREAMS=${LOAD_SSE_STREAMS:-10000}
LOAD_FLAGS=${LOAD_FLAGS:-10000}
REWRITES=${LOAD_REWRITES:-5}
STATS="python3 $HERE/stats.py"

modes=("$@")
[[ ${#modes[@]} -gt 0 ]] || modes=(throughput latency reload events ofrep watchers memory overrides override load sse)

DAEMON=$((BASE + 13))
NOOP=$((BASE + 113))
BULK=$((BASE + 213))
WATCH=$((BASE + 313))
MEMORY=$((BASE + 413))
AUTH=$((BASE + 513))
LOADING=$((BASE + 613))
NO_UI=$((BASE + 713))
UNTRACED=$((BASE + 813))
TRACED=$((BASE + 913))
NO_COLLECTOR=$((BASE + 899))
SSE=$((BASE + 1013))
FLEET=$((BASE + 1113))
FLEET_FILE=$((BASE + 1413))
ETCD=$((BASE + 1500))
FLEET_WRITES=${LOAD_FLEET_WRITES:-200}
RESOLVE=/flagd.evaluation.v1.Service/ResolveBoolean
RESOLVE_V2=/flagd.evaluation.v2.Service/ResolveBoolean
OFREP_SINGLE=/ofrep/v1/evaluate/flags/static-bool
OFREP_BULK=/ofrep/v1/evaluate/flags

PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run() {
  printf '+ %s\n' "$*" >&2
  "$@"
}

# Appends one JSON result, with the fields given as `key=json` pairs merged in, to the results.
record() {
  local json=$1
  shift
  python3 -c '
import json, sys
row = json.loads(sys.argv[1])
for pair in sys.argv[2:]:
    key, value = pair.split("=", 1)
    row[key] = json.loads(value)
print(json.dumps(row))' "$json" "$@" | tee -a "$OUT"
}

ensure_tools() {
  local missing=()
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v wrk >/dev/null || missing+=(wrk)
  if [[ ${#missing[@]} -gt 0 ]]; then
    run apt-get install -y -qq -o DPkg::Lock::Timeout=600 "${missing[@]}"
  fi
}

build() {
  [[ -n ${LOAD_NO_BUILD:-} ]] && return
  (cd "$ROOT" && run cargo build --profile "$PROFILE" -p flagd-rs --bin flagd-rs \
    -p flagd-rs-benches --bin noop_server --bin load_client --bin sse_load --bin fleet_probe)
}

# Generates the peer workload (the generator writes beside itself, so it runs from a copy) and
# the request bodies.
prepare() {
  mkdir -p "$WORK/peers" "$(dirname "$OUT")"
  if [[ ! -f $WORK/peers/flags-10000.json ]]; then
    run cp "$PEERS_SRC/workload/gen.py" "$WORK/peers/gen.py"
    run python3 "$WORK/peers/gen.py" >&2
  fi
  run python3 "$HERE/prepare.py" "$WORK" "$WORK/peers"
  if [[ ! -f $WORK/load/load-$LOAD_FLAGS.json ]]; then
    run python3 "$HERE/gen_flags.py" "$WORK/load" "$LOAD_FLAGS"
  fi
}

# Refuses to start when something already listens on one of the ports: the load would go to it.
ports_free() {
  local port
  for port in "$@"; do
    if ss -Htln "sport = :$port" | grep -q .; then
      echo "port $port is in use; set LOAD_BASE_PORT to use other ports" >&2
      exit 1
    fi
  done
}

# start_daemon <name> <eval port> [start options...]: management, sync, OFREP and admin ports are
# the next four. Waits until /readyz answers; sets DAEMON_PID.
start_daemon() {
  local name=$1 port=$2
  shift 2
  rm -rf "$WORK/state-$name"
  ports_free "$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4))
  printf '+ %s\n' "flagd-rs start -p $port -m $((port + 1)) -g $((port + 2)) -r $((port + 3)) $*" >&2
  "$BIN/flagd-rs" start -p "$port" -m $((port + 1)) -g $((port + 2)) -r $((port + 3)) \
    --admin-port $((port + 4)) --state-dir "$WORK/state-$name" "$@" >/dev/null 2>"$WORK/$name.log" &
  DAEMON_PID=$!
  PIDS+=("$DAEMON_PID")
  local i
  for i in $(seq 1 300); do
    if curl -sf -o /dev/null "http://127.0.0.1:$((port + 1))/readyz"; then
      return 0
    fi
    kill -0 "$DAEMON_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "daemon $name did not become ready; log:" >&2
  tail -20 "$WORK/$name.log" >&2
  exit 1
}

stop() {
  local pid=$1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

start_noop() {
  ports_free "$NOOP" $((NOOP + 3))
  # Started directly (not through `run`), so that $! is the server's own process.
  printf '+ %s\n' "noop_server 127.0.0.1:$NOOP 127.0.0.1:$((NOOP + 3))" >&2
  "$BIN/noop_server" "127.0.0.1:$NOOP" "127.0.0.1:$((NOOP + 3))" 2>"$WORK/noop.log" >/dev/null &
  NOOP_PID=$!
  PIDS+=("$NOOP_PID")
  local i
  for i in $(seq 1 100); do
    if curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
      --data-binary @"$WORK/ofrep-single.json" "http://127.0.0.1:$((NOOP + 3))$OFREP_SINGLE"; then
      return 0
    fi
    sleep 0.1
  done
  echo "the no-op server did not start" >&2
  exit 1
}

# CPU time (user + system) a process has used so far, in clock ticks.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# The process serving as <server> (daemon or noop) in the current measurement.
server_pid() {
  if [[ $1 == noop ]]; then echo "$NOOP_PID"; else echo "$SERVER_PID"; fi
}

# cpu_fields <server> <ticks before> <requests>: the server's CPU time per request, which,
# unlike req/s, does not depend on how much CPU the rest of the machine leaves it.
cpu_fields() {
  local used=$(($(cpu_ticks "$(server_pid "$1")") - $2))
  python3 -c 'import sys; t, n, hz = map(float, sys.argv[1:]); print(f"cpu_us_per_req={t / hz * 1e6 / n if n else 0:.2f}")' \
    "$used" "$3" "$(getconf CLK_TCK)"
}

rss_kib() {
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# The resident memory split into anonymous (heap, stacks) and file-backed (mapped binary and
# libraries) pages, as JSON fields.
rss_split() {
  awk '/^RssAnon:/ {a=$2} /^RssFile:/ {f=$2} END {printf "\"anon_kib\":%d,\"file_kib\":%d", a, f}' \
    "/proc/$1/status"
}

# Spot checks before any load: each endpoint answers 200 with a real resolution (and gRPC with
# grpc-status 0 and a message). Sets GRPC_BYTES_<name>, the response body size of each gRPC
# request, which the load runs use to count gRPC errors h2load cannot see.
spot_check() {
  local port=$1 label=$2 ofrep=$3 name out
  for name in static targeting; do
    out=$(curl -sS -m 5 -w ' HTTP %{http_code}' -X POST -H 'content-type: application/json' \
      --data-binary @"$WORK/connect-$name.json" "http://127.0.0.1:$port$RESOLVE")
    echo "$label Connect $name: $out" >&2
    [[ $out == *'"value"'*'HTTP 200' ]] || { echo "spot check failed" >&2; exit 1; }
    grpc_spot_check "$port" "$label" "$name" "$name" "$RESOLVE"
  done
  if [[ $label == flagd-rs ]]; then
    grpc_spot_check "$port" "$label" v2_static static "$RESOLVE_V2"
  fi
  out=$(curl -sS -m 5 -w ' HTTP %{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary @"$WORK/ofrep-single.json" "http://127.0.0.1:$ofrep$OFREP_SINGLE")
  echo "$label OFREP: $out" >&2
  [[ $out == *'"value"'*'HTTP 200' ]] || { echo "spot check failed" >&2; exit 1; }
}

# grpc_spot_check <port> <label> <name> <body: static|targeting> <path>: one gRPC request answers
# grpc-status 0; sets GRPC_BYTES_<name> to its response body size.
grpc_spot_check() {
  local port=$1 label=$2 name=$3 body=$4 path=$5
  curl -sS -m 5 --http2-prior-knowledge -D "$WORK/grpc-headers" -o "$WORK/grpc-response" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    --data-binary @"$WORK/grpc-$body.bin" "http://127.0.0.1:$port$path"
  echo "$label gRPC ${name//_/ }: $(tr -d '\r' <"$WORK/grpc-headers" | grep -i '^grpc-' | tr '\n' ' ')" \
    "$(stat -c %s "$WORK/grpc-response") bytes" >&2
  grep -qi '^grpc-status: 0' "$WORK/grpc-headers" || { echo "spot check failed" >&2; exit 1; }
  printf -v "GRPC_BYTES_$name" '%s' "$(stat -c %s "$WORK/grpc-response")"
}

# h2load_max <test> <server> <run> <port> <body> <response bytes> [<path>]: max-rate gRPC
# (ResolveBoolean of flagd.evaluation.v1 unless another path is given).
h2load_max() {
  local test=$1 server=$2 round=$3 port=$4 body=$5 bytes=$6 path=${7:-$RESOLVE}
  local log=$WORK/$1-$2-$3.out
  local options=(-c 8 -m 16 -t "$THREADS" -d "$body" -H 'content-type: application/grpc'
    -H 'te: trailers' "http://127.0.0.1:$port$path")
  # A separate warm-up run: h2load's own --warm-up-time leaves the warm-up's bytes in the
  # traffic totals, which the gRPC error count below relies on.
  run h2load -D "$WARMUP" "${options[@]}" >/dev/null
  local ticks json
  ticks=$(cpu_ticks "$(server_pid "$server")")
  run h2load -D "$DURATION" "${options[@]}" >"$log"
  json=$($STATS h2load "$log" "$bytes")
  record "$json" "test=\"$test\"" "server=\"$server\"" "run=$round" \
    "$(cpu_fields "$server" "$ticks" "$($STATS get "$json" done)")"
}

# wrk_max <test> <server> <run> <url> <body> [<key=json>...]: max-rate HTTP/1.1 POST with a JSON
# body; the optional fields are added to the result.
wrk_max() {
  local test=$1 server=$2 round=$3 url=$4 body=$5 log=$WORK/$1-$2-$3.out
  shift 5
  local ticks json
  ticks=$(cpu_ticks "$(server_pid "$server")")
  run wrk -t "$THREADS" -c 32 -d "${DURATION}s" --timeout 5s -s "$HERE/post.lua" "$url" \
    -- "$body" application/json >"$log"
  json=$($STATS wrk "$log")
  record "$json" "test=\"$test\"" "server=\"$server\"" "run=$round" \
    "$(cpu_fields "$server" "$ticks" "$($STATS get "$json" requests)")" \
    "errors=$(($($STATS get "$json" non_2xx) + $($STATS get "$json" socket_errors)))" "$@"
}

throughput() {
  local round
  for round in $(seq 1 "$REPEAT"); do
    h2load_max grpc-static daemon "$round" "$DAEMON" "$WORK/grpc-static.bin" "$GRPC_BYTES_static"
    h2load_max grpc-static noop "$round" "$NOOP" "$WORK/grpc-static.bin" "$NOOP_GRPC_BYTES"
    h2load_max grpc-targeting daemon "$round" "$DAEMON" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
    h2load_max grpc-targeting noop "$round" "$NOOP" "$WORK/grpc-targeting.bin" "$NOOP_GRPC_BYTES"
    # flagd.evaluation.v2 on the daemon, against the no-op's v1 (the same request bytes).
    h2load_max grpc-v2-static daemon "$round" "$DAEMON" "$WORK/grpc-static.bin" "$GRPC_BYTES_v2_static" "$RESOLVE_V2"
    h2load_max grpc-v2-static noop "$round" "$NOOP" "$WORK/grpc-static.bin" "$NOOP_GRPC_BYTES"
    wrk_max connect-static daemon "$round" "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/connect-static.json"
    wrk_max connect-static noop "$round" "http://127.0.0.1:$NOOP$RESOLVE" "$WORK/connect-static.json"
    wrk_max connect-targeting daemon "$round" "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/connect-targeting.json"
    wrk_max connect-targeting noop "$round" "http://127.0.0.1:$NOOP$RESOLVE" "$WORK/connect-targeting.json"
    wrk_max ofrep-single daemon "$round" "http://127.0.0.1:$((DAEMON + 3))$OFREP_SINGLE" "$WORK/ofrep-single.json"
    wrk_max ofrep-single noop "$round" "http://127.0.0.1:$((NOOP + 3))$OFREP_SINGLE" "$WORK/ofrep-single.json"
  done
}

grpc_bytes() {
  local name=GRPC_BYTES_$1
  echo "${!name}"
}

# The max rate of a scenario from this run's results, measuring it once if it is not there yet.
max_rate() {
  local test=$1 rate
  rate=$($STATS median-rps "$OUT" "$test" daemon)
  if [[ $rate -eq 0 ]]; then
    case $test in
      grpc-*) h2load_max "$test" daemon 0 "$DAEMON" "$WORK/$test.bin" "$(grpc_bytes "${test#grpc-}")" >&2 ;;
      connect-*) wrk_max "$test" daemon 0 "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/$test.json" >&2 ;;
    esac
    rate=$($STATS median-rps "$OUT" "$test" daemon)
  fi
  echo "$rate"
}

# h2load_rate <test> <server> <url> <rate> <clients> <extra fields> -- <h2load options...>:
# constant total rate spread over the clients; p50/p99 from the per-request log, leaving out the
# first LOAD_WARMUP seconds.
h2load_rate() {
  local test=$1 server=$2 url=$3 rate=$4 clients=$5 extra=$6 log=$WORK/$1-$2.log
  shift 7
  rm -f "$log" # h2load appends to an existing log
  run h2load -c "$clients" -t "$THREADS" --rps $((rate / clients)) -D $((LAT_DURATION + WARMUP)) \
    --log-file="$log" "$@" "$url" >"$WORK/$test-$server.out"
  local summary
  summary=$($STATS h2load "$WORK/$test-$server.out" "${GRPC_CHECK_BYTES:-0}")
  record "$($STATS log "$log" "$WARMUP")" "test=\"$test\"" "server=\"$server\"" \
    "target_rps=$rate" "errors=$($STATS get "$summary" errors)" $extra
}

grpc_rate() {
  local test=$1 server=$2 port=$3 body=$4 rate=$5 bytes=$6 extra=${7:-}
  GRPC_CHECK_BYTES=$bytes h2load_rate "$test" "$server" "http://127.0.0.1:$port$RESOLVE" "$rate" 8 "$extra" -- \
    -m 16 -d "$body" -H 'content-type: application/grpc' -H 'te: trailers'
}

connect_rate() {
  local test=$1 server=$2 port=$3 body=$4 rate=$5 extra=${6:-}
  h2load_rate "$test" "$server" "http://127.0.0.1:$port$RESOLVE" "$rate" 32 "$extra" -- \
    --h1 -d "$body" -H 'content-type: application/json'
}

latency() {
  local rate flag
  for flag in static targeting; do
    rate=$(($(max_rate grpc-$flag) / 2))
    grpc_rate "p99-grpc-$flag" daemon "$DAEMON" "$WORK/grpc-$flag.bin" "$rate" "$(grpc_bytes "$flag")"
    grpc_rate "p99-grpc-$flag" noop "$NOOP" "$WORK/grpc-$flag.bin" "$rate" "$NOOP_GRPC_BYTES"
  done
  rate=$(($(max_rate connect-static) / 2))
  connect_rate p99-connect-static daemon "$DAEMON" "$WORK/connect-static.json" "$rate"
  connect_rate p99-connect-static noop "$NOOP" "$WORK/connect-static.json" "$rate"
  # Away from saturation: one connection, one request at a time, 1,000 a second.
  GRPC_CHECK_BYTES=$GRPC_BYTES_static h2load_rate p99-grpc-static-light daemon \
    "http://127.0.0.1:$DAEMON$RESOLVE" 1000 1 "" -- -m 1 -d "$WORK/grpc-static.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers'
  GRPC_CHECK_BYTES=$NOOP_GRPC_BYTES h2load_rate p99-grpc-static-light noop \
    "http://127.0.0.1:$NOOP$RESOLVE" 1000 1 "" -- -m 1 -d "$WORK/grpc-static.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers'
}

# rewrites <seconds>: starts the 10-per-second rewriter in the background; sets REWRITER_PID.
rewrites() {
  printf '+ %s\n' "load_client rewrite $WORK/flags.json 100 $1" >&2
  "$BIN/load_client" rewrite "$WORK/flags.json" 100 "$1" >"$WORK/rewrites.json" &
  REWRITER_PID=$!
  PIDS+=("$REWRITER_PID")
}

reload() {
  local rate round
  # Constant rate: p99 and failures with and without rewrites, gRPC and Connect JSON; the two
  # alternate, LOAD_REPEAT rounds, since one p99 of a shared machine moves by tens of percent.
  for round in $(seq 1 "$REPEAT"); do
    rate=$(($(max_rate grpc-targeting) / 2))
    grpc_rate p99-reload-grpc-targeting-none daemon "$DAEMON" "$WORK/grpc-targeting.bin" "$rate" "$GRPC_BYTES_targeting" "run=$round"
    rewrites $((LAT_DURATION + WARMUP))
    grpc_rate p99-reload-grpc-targeting-10ps daemon "$DAEMON" "$WORK/grpc-targeting.bin" "$rate" "$GRPC_BYTES_targeting" "run=$round"
    wait "$REWRITER_PID"
    cat "$WORK/rewrites.json" >&2
    rate=$(($(max_rate connect-targeting) / 2))
    connect_rate p99-reload-connect-targeting-none daemon "$DAEMON" "$WORK/connect-targeting.json" "$rate" "run=$round"
    rewrites $((LAT_DURATION + WARMUP))
    connect_rate p99-reload-connect-targeting-10ps daemon "$DAEMON" "$WORK/connect-targeting.json" "$rate" "run=$round"
    wait "$REWRITER_PID"
    cat "$WORK/rewrites.json" >&2
  done
  # Max rate without and with rewrites: throughput and failures.
  wrk_max reload-wrk daemon 1 "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/connect-targeting.json" reloads_per_s=0
  rewrites "$DURATION"
  wrk_max reload-wrk daemon 2 "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/connect-targeting.json" \
    reloads_per_s=10
  wait "$REWRITER_PID"
  cat "$WORK/rewrites.json" >&2
}

events() {
  local json
  json=$(run "$BIN/load_client" events "http://127.0.0.1:$DAEMON" "$WORK/flags.json" 100)
  record "$json" 'test="events"'
}

ofrep() {
  local round rate out
  start_daemon bulk "$BULK" -f "file:$WORK/bulk100.json"
  SERVER_PID=$DAEMON_PID
  local url="http://127.0.0.1:$((BULK + 3))$OFREP_BULK"
  out=$(curl -sS -m 5 -w ' HTTP %{http_code}' -X POST -H 'content-type: application/json' \
    --data-binary @"$WORK/ofrep-bulk.json" "$url")
  echo "bulk: $(printf '%s' "$out" | head -c 300)... $(printf '%s' "$out" | grep -o '"key"' | wc -l) flags ${out##* }" >&2
  for round in $(seq 1 "$REPEAT"); do
    wrk_max ofrep-bulk100 daemon "$round" "$url" "$WORK/ofrep-bulk.json"
    wrk_max ofrep-bulk100 noop "$round" "http://127.0.0.1:$((NOOP + 3))$OFREP_BULK" "$WORK/ofrep-bulk.json"
  done
  rate=$(($($STATS median-rps "$OUT" ofrep-bulk100 daemon) / 2))
  h2load_rate p99-ofrep-bulk100 daemon "$url" "$rate" 32 "" -- \
    --h1 -d "$WORK/ofrep-bulk.json" -H 'content-type: application/json'
  stop "$DAEMON_PID"
  SERVER_PID=$MAIN_PID
}

watchers() {
  local connections=${WATCHERS%x*} streams=${WATCHERS#*x}
  # Each connection is one socket on each side; leave room for both.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  cp "$WORK/flags.json" "$WORK/watch-flags.json"
  start_daemon watchers "$WATCH" -f "file:$WORK/watch-flags.json"
  sleep 1
  local json
  json=$(run "$BIN/load_client" watchers "http://127.0.0.1:$((WATCH + 2))" \
    "$WORK/watch-flags.json" "$DAEMON_PID" "$connections" "$streams")
  record "$json" 'test="watchers"'
  stop "$DAEMON_PID"
}

sse() {
  local contexts json
  # Each stream is one socket on each side; leave room for both.
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if (($(ulimit -n) < SSE_STREAMS + 1000)); then
    echo "sse: the open-file limit ($(ulimit -n)) is too low for $SSE_STREAMS streams" >&2
    exit 1
  fi
  for contexts in 0 "$SSE_STREAMS"; do
    cp "$WORK/flags.json" "$WORK/sse-flags.json"
    start_daemon sse "$SSE" -f "file:$WORK/sse-flags.json"
    json=$(run "$BIN/sse_load" "http://127.0.0.1:$((SSE + 3))" "$WORK/sse-flags.json" \
      "$DAEMON_PID" "$SSE_STREAMS" "$contexts")
    record "$json" 'test="sse"'
    stop "$DAEMON_PID"
  done
}

memory() {
  local rss
  start_daemon memory-bundled "$MEMORY"
  sleep 2
  rss=$(rss_kib "$DAEMON_PID")
  record "{\"test\":\"rss\",\"label\":\"idle, bundled flags (no source)\",\"rss_kib\":$rss,$(rss_split "$DAEMON_PID")}"
  stop "$DAEMON_PID"
  local started
  started=$(date +%s%N)
  start_daemon memory-10k "$MEMORY" -f "file:$WORK/peers/flags-10000.json"
  local ready=$((($(date +%s%N) - started) / 1000000))
  sleep 2
  rss=$(rss_kib "$DAEMON_PID")
  record "{\"test\":\"rss\",\"label\":\"idle, 10,000 flags (ready in ${ready} ms)\",\"rss_kib\":$rss,$(rss_split "$DAEMON_PID")}"
  stop "$DAEMON_PID"
}

# set_overrides <admin url> <keys file>: one override per key (state ENABLED: what the flags
# already say, so that answers and response sizes stay as they were).
set_overrides() {
  local key status
  while read -r key; do
    status=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' \
      --data '{"state":"ENABLED","reason":"load benchmark"}' "$1/v1/flags/$key/override")
    [[ $status == 200 ]] || { echo "override of $key: HTTP $status" >&2; exit 1; }
  done <"$2"
}

# admin_writes <admin url> <seconds>: one override write a second (static-bool set ENABLED
# again, which is what the flag says), each answered only once it is durable.
admin_writes() {
  local end=$((SECONDS + $2)) i=0
  while ((SECONDS < end)); do
    curl -sS -m 5 -o /dev/null -X PUT -H 'content-type: application/json' \
      --data "{\"state\":\"ENABLED\",\"reason\":\"load benchmark write $i\"}" \
      "$1/v1/flags/static-bool/override" || true
    i=$((i + 1))
    sleep 1
  done
}

clear_overrides() {
  local key status
  while read -r key; do
    status=$(curl -sS -m 5 -o /dev/null -w '%{http_code}' -X DELETE -H 'content-type: application/json' \
      "$1/v1/flags/$key/override")
    [[ $status == 200 ]] || { echo "clearing $key: HTTP $status" >&2; exit 1; }
  done <"$2"
}

overrides() {
  local round count
  start_daemon overrides "$AUTH" -f "file:$WORK/flags.json" -f "file:$WORK/bulk100.json"
  SERVER_PID=$DAEMON_PID
  local admin=http://127.0.0.1:$((AUTH + 4))
  # The two evaluated flags and 98 of the bulk document's.
  python3 -c '
import json, sys
bulk = list(json.load(open(sys.argv[1]))["flags"])[:98]
print("\n".join(["static-bool", "ref-shared"] + bulk))' "$WORK/bulk100.json" >"$WORK/override-keys"
  for round in $(seq 1 "$REPEAT"); do
    h2load_max overrides-0-static daemon "$round" "$AUTH" "$WORK/grpc-static.bin" "$GRPC_BYTES_static"
    h2load_max overrides-0-targeting daemon "$round" "$AUTH" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
    printf '+ %s\n' "set_overrides $admin (100 flags)" >&2
    set_overrides "$admin" "$WORK/override-keys"
    count=$(curl -sS "$admin/v1/flags" | python3 -c 'import json, sys; print(sum(1 for f in json.load(sys.stdin)["flags"] if f.get("override")))')
    echo "active overrides: $count" >&2
    [[ $count -eq 100 ]] || { echo "expected 100 active overrides" >&2; exit 1; }
    h2load_max overrides-100-static daemon "$round" "$AUTH" "$WORK/grpc-static.bin" "$GRPC_BYTES_static"
    h2load_max overrides-100-targeting daemon "$round" "$AUTH" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
    # The same with one admin write a second (each one journaled, fsynced and applied).
    local flag writer
    for flag in static targeting; do
      admin_writes "$admin" $((WARMUP + DURATION + 1)) &
      writer=$!
      local bytes_var=GRPC_BYTES_$flag
      h2load_max "overrides-100w-$flag" daemon "$round" "$AUTH" "$WORK/grpc-$flag.bin" "${!bytes_var}"
      wait "$writer"
    done
    printf '+ %s\n' "clear_overrides $admin (100 flags)" >&2
    clear_overrides "$admin" "$WORK/override-keys"
  done
  stop "$DAEMON_PID"
  SERVER_PID=$MAIN_PID
}

override() {
  local json rate loader
  start_daemon override "$AUTH" -f "file:$ROOT/flags/default.flagd.json" -f "file:$WORK/flags.json"
  local urls=("http://127.0.0.1:$AUTH" "http://127.0.0.1:$((AUTH + 2))" "http://127.0.0.1:$((AUTH + 4))")
  json=$(run "$BIN/load_client" override "${urls[@]}" 200)
  record "$json" 'test="override-visible"' 'load="idle"'
  # The same under a constant gRPC load of half the main daemon's max rate.
  rate=$(($(max_rate grpc-static) / 2))
  printf '+ %s\n' "h2load --rps ... $rate req/s in the background" >&2
  h2load -c 8 -m 16 -t "$THREADS" --rps $((rate / 8)) -D 60 -d "$WORK/grpc-static.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$AUTH$RESOLVE" >"$WORK/override-load.out" &
  loader=$!
  PIDS+=("$loader")
  sleep 2
  json=$(run "$BIN/load_client" override "${urls[@]}" 200)
  record "$json" 'test="override-visible"' "load=\"gRPC $rate req/s\""
  kill -INT "$loader" 2>/dev/null || true
  wait "$loader" 2>/dev/null || true
  stop "$DAEMON_PID"
}

# A large flag file against a 1-flag file: start -> ready, RSS, rewrite -> served.
load() {
  ports_free "$LOADING" $((LOADING + 1)) $((LOADING + 2)) $((LOADING + 3)) $((LOADING + 4))
  local line
  while read -r line; do
    record "$line"
  done < <(run python3 "$HERE/startup.py" "$BIN/flagd-rs" "$LOADING" "$WORK/load" "$REPEAT" \
    "$REWRITES" "$WORK/load/load-1.json" "$WORK/load/load-$LOAD_FLAGS.json")
}

ensure_tools
build
prepare
echo "results: $OUT; load: $(uptime)" >&2

start_daemon main "$DAEMON" -f "file:$WORK/flags.json"
MAIN_PID=$DAEMON_PID
SERVER_PID=$MAIN_PID
start_noop
spot_check "$NOOP" no-op $((NOOP + 3))
NOOP_GRPC_BYTES=$GRPC_BYTES_static
spot_check "$DAEMON" flagd-rs $((DAEMON + 3))

# The dashboard open and idle on the main daemon (pages fetched once, live feed connected) against
# a daemon without it, on the same flags.
dashboard() {
  local round admin=$((DAEMON + 4)) page feed
  start_daemon no-ui "$NO_UI" -f "file:$WORK/flags.json" --ui off
  local no_ui_pid=$DAEMON_PID
  for page in /ui/ /ui/rollouts /ui/history /ui/health; do
    curl -sSf -o /dev/null "http://127.0.0.1:$admin$page" || { echo "dashboard page $page failed" >&2; exit 1; }
  done
  curl -sSN -m $((REPEAT * 4 * (DURATION + WARMUP) + 60)) "http://127.0.0.1:$admin/ui/events" \
    >"$WORK/ui-events.out" 2>/dev/null &
  feed=$!
  PIDS+=("$feed")
  for round in $(seq 1 "$REPEAT"); do
    SERVER_PID=$MAIN_PID
    h2load_max dashboard-open-grpc daemon "$round" "$DAEMON" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
    SERVER_PID=$no_ui_pid
    h2load_max dashboard-off-grpc daemon "$round" "$NO_UI" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
    SERVER_PID=$MAIN_PID
    wrk_max dashboard-open-connect daemon "$round" "http://127.0.0.1:$DAEMON$RESOLVE" "$WORK/connect-targeting.json"
    SERVER_PID=$no_ui_pid
    wrk_max dashboard-off-connect daemon "$round" "http://127.0.0.1:$NO_UI$RESOLVE" "$WORK/connect-targeting.json"
  done
  kill -0 "$feed" 2>/dev/null || { echo "the dashboard's live feed closed during the run" >&2; exit 1; }
  stop "$feed"
  stop "$no_ui_pid"
  SERVER_PID=$MAIN_PID
}

# Tracing on at 1 % sampling (spans exported to a port nobody listens on) against tracing off,
# two fresh daemons on the same flags.
otel() {
  local round off_pid on_pid
  ports_free "$NO_COLLECTOR"
  start_daemon untraced "$UNTRACED" -f "file:$WORK/flags.json" --ui off
  off_pid=$DAEMON_PID
  start_daemon traced "$TRACED" -f "file:$WORK/flags.json" --ui off \
    --otel-collector-uri "127.0.0.1:$NO_COLLECTOR" --otel-sample-ratio 0.01
  on_pid=$DAEMON_PID
  # Each round measures both daemons, the first one alternating, so that neither always meets
  # the machine right after the other's load.
  for round in $(seq 1 "$REPEAT"); do
    local order=(on off)
    ((round % 2)) || order=(off on)
    local which
    for which in "${order[@]}"; do
      if [[ $which == on ]]; then
        SERVER_PID=$on_pid
        h2load_max otel-on-grpc daemon "$round" "$TRACED" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
      else
        SERVER_PID=$off_pid
        h2load_max otel-off-grpc daemon "$round" "$UNTRACED" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
      fi
    done
  done
  curl -sS "http://127.0.0.1:$((TRACED + 1))/metrics" | grep '^flagd_rs_otel_spans_dropped_total' >&2 || true
  stop "$on_pid"
  stop "$off_pid"
  SERVER_PID=$MAIN_PID
}

# start_etcd: three members on loopback (client ports ETCD, +10, +20; peers one above each),
# data in $WORK/etcd-*; waits until every member is healthy.
start_etcd() {
  command -v etcd >/dev/null || run apt-get install -y -qq -o DPkg::Lock::Timeout=600 etcd-server
  local i cluster=""
  for i in 0 1 2; do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((ETCD + 10 * i + 1))"
  done
  for i in 0 1 2; do
    local client=$((ETCD + 10 * i)) peer=$((ETCD + 10 * i + 1))
    ports_free "$client" "$peer"
    rm -rf "$WORK/etcd-$i"
    etcd --name "m$i" --data-dir "$WORK/etcd-$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$$" \
      >"$WORK/etcd-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 0 1 2; do
    local n
    for n in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$((ETCD + 10 * i))/health" | grep -q '"health":"true"' && break
      [[ $n == 100 ]] && { echo "etcd member $i did not become healthy" >&2; tail -5 "$WORK/etcd-$i.log" >&2; exit 1; }
      sleep 0.1
    done
  done
}

fleet() {
  local i replicas=() pids=() round
  python3 - "$WORK/flags.json" "$WORK/fleet-flags.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["flags"]["fleet-probe"] = {"state": "ENABLED", "defaultVariant": "blue",
                               "variants": {"blue": "blue", "green": "green"}}
json.dump(doc, open(sys.argv[2], "w"))
PY
  start_etcd
  local store="etcd://127.0.0.1:$ETCD,127.0.0.1:$((ETCD + 10)),127.0.0.1:$((ETCD + 20))/bench-$$"
  for i in 0 1 2; do
    local port=$((FLEET + 100 * i))
    start_daemon "fleet$i" "$port" -f "file:$WORK/fleet-flags.json" --ui off --store "$store" \
      --replica-id "replica-$i"
    pids+=("$DAEMON_PID")
    replicas+=("http://127.0.0.1:$((port + 4)),http://127.0.0.1:$((port + 3))")
  done
  start_daemon fleetfile "$FLEET_FILE" -f "file:$WORK/fleet-flags.json" --ui off
  local file_pid=$DAEMON_PID
  local json
  json=$(run "$BIN/fleet_probe" fleet-probe "$FLEET_WRITES" "${replicas[@]}")
  record "$json" 'test="fleet-propagation"'
  for round in $(seq 1 "$REPEAT"); do
    local order=(etcd file)
    ((round % 2)) || order=(file etcd)
    local which
    for which in "${order[@]}"; do
      if [[ $which == etcd ]]; then
        SERVER_PID=${pids[0]}
        h2load_max fleet-etcd-grpc daemon "$round" "$FLEET" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
      else
        SERVER_PID=$file_pid
        h2load_max fleet-file-grpc daemon "$round" "$FLEET_FILE" "$WORK/grpc-targeting.bin" "$GRPC_BYTES_targeting"
      fi
    done
  done
  for i in "${pids[@]}" "$file_pid"; do
    stop "$i"
  done
  SERVER_PID=$MAIN_PID
}

for mode in "${modes[@]}"; do
  echo "== $mode ($(uptime))" >&2
  case $mode in
    throughput | latency | reload | events | ofrep | watchers | memory | overrides | override | load | dashboard | otel | sse | fleet) "$mode" ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
  esac
done
record "{\"test\":\"rss\",\"label\":\"main daemon after the runs above\",\"rss_kib\":$(rss_kib "$MAIN_PID"),$(rss_split "$MAIN_PID")}"

echo >&2
$STATS report "$OUT"
