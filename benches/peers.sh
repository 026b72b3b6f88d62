#!/usr/bin/env bash
# Side-by-side evaluator benchmark: the published flagd evaluators (js, py, rust; see
# ../shared/peers/README.md) and flagd-rs on one workload, in one run, so that ratios can be quoted.
#
# Usage: benches/peers.sh [mem] [load] [eval] [diff]     (default: mem load eval)
#
# On a shared machine the load changes from minute to minute, so `load` and `eval` are repeated
# ROUNDS times (peers, then flagd-rs, per round) and the report takes the median over rounds.
#
# Environment:
#   FLAGD_PEERS_SRC      the peers directory (default: <workspace>/../shared/peers)
#   FLAGD_PEERS_RUN      writable copy of it that the run uses (default: /tmp/flagd-peers-src);
#                        the workload generator writes beside itself, and the source may be read-only
#   PEERS_WORK           where the peers are installed (default: /tmp/flagd-peers); installing the
#                        Rust peer needs `protoc` (Debian: apt-get install protobuf-compiler)
#   FLAGD_PEERS_RESULTS  the JSON-lines results file (default: target/peers/results-<UTC time>.jsonl)
#   ROUNDS               repetitions of `load` and `eval` (default: 3)
# Every command is printed before it runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${FLAGD_PEERS_SRC:-$ROOT/../shared/peers}
RUN=${FLAGD_PEERS_RUN:-/tmp/flagd-peers-src}
export PEERS_WORK=${PEERS_WORK:-/tmp/flagd-peers}
export FLAGD_PEERS_WORKLOAD=$PEERS_WORK/workload
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${FLAGD_PEERS_RESULTS:-$TARGET/peers/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
OURS=$TARGET/dist/peer_workload
ROUNDS=${ROUNDS:-3}

modes=("$@")
[[ ${#modes[@]} -gt 0 ]] || modes=(mem load eval)

run() {
  printf '+ %s\n' "$*" >&2
  "$@"
}

# The machine's state, recorded beside the measurements.
machine() {
  printf '{"machine":{"nproc":%s,"loadavg":"%s","when":"%s"}}\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u +%FT%TZ)" | tee -a "$OUT"
}

# Measurements go to the results file; anything else the tools print (the generator's file sizes)
# goes to the terminal only.
record() {
  printf '+ %s\n' "$*" >&2
  "$@" | while IFS= read -r line; do
    if [[ $line == "{"* ]]; then printf '%s\n' "$line" | tee -a "$OUT"; else printf '%s\n' "$line" >&2; fi
  done
}

# 1. A writable copy of the peers, refreshed from the source.
run mkdir -p "$RUN"
run cp -r "$SRC/." "$RUN/"
run chmod -R u+w "$RUN"

# 2. Install the peers once (npm install, Python venv, cargo build of the Rust peer).
if [[ ! -d $PEERS_WORK/js/node_modules || ! -x $PEERS_WORK/py/.venv/bin/python ||
      ! -x $PEERS_WORK/rust/target/release/flagd_peer_bench ]]; then
  run "$RUN/run.sh" setup
fi

# 3. The workload (deterministic), where the peers and flagd-rs both read it.
run python3 "$RUN/workload/gen.py" >&2
run mkdir -p "$PEERS_WORK"
run ln -sfn "$RUN/workload" "$PEERS_WORK/workload"

# 4. flagd-rs's side, built with the shipped binary's settings (the dist profile).
run cargo build --profile dist --manifest-path "$ROOT/Cargo.toml" -p flagd-rs-benches --bin peer_workload

# 5. Peers and flagd-rs, mode by mode, one after another on the same machine.
run mkdir -p "$(dirname "$OUT")"
: >"$OUT"
for m in "${modes[@]}"; do
  case $m in
    mem)
      machine
      record "$RUN/run.sh" mem
      for f in flags.json flags-10000.json; do record "$OURS" mem "$f"; done ;;
    load | eval)
      for ((r = 1; r <= ROUNDS; r++)); do
        machine
        record "$RUN/run.sh" "$m"
        record "$OURS" "$m"
      done ;;
    diff)
      record "$RUN/run.sh" diff
      record "$OURS" diff
      record "$OURS" --fractional-hash v2 diff ;;
    *)
      echo "unknown mode: $m (mem, load, eval, diff)" >&2
      exit 2 ;;
  esac
done

echo >&2
echo "results: $OUT" >&2
echo >&2
run python3 "$ROOT/benches/peers_report.py" table "$OUT"
if [[ " ${modes[*]} " == *" diff "* ]]; then
  run python3 "$ROOT/benches/peers_report.py" diff "$FLAGD_PEERS_WORKLOAD/results"
fi
