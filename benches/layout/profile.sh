#!/usr/bin/env bash
# Writes the link order of the daemon's functions (flagd-rs/daemon/layout/<profile>.order): the
# functions start-up and an idle daemon run, then those that serve one request of each protocol,
# recorded with callgrind on that profile's binary. The linker places them first and together, so that
# the pages of code a running daemon touches are few and adjacent instead of spread over the
# whole text (the kernel maps code in blocks around each page touched).
#
# Usage: benches/layout/profile.sh [PROFILE]   (default dist; after
#        `cargo build --profile PROFILE -p flagd-rs --bin flagd-rs`; run it for `dist` and `release`)
# Needs valgrind, curl and python3. Symbol names carry a hash of the build's settings and of the
# dependencies' versions, so each profile has its own list, and a dependency upgrade leaves
# names behind: the linker skips them (the daemon only touches more pages) until this is run
# again.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PROFILE=${1:-dist}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/flagd-rs
OUT=$ROOT/flagd-rs/daemon/layout/$PROFILE.order
BASE=${LAYOUT_BASE_PORT:-19500}
WORK=$(mktemp -d)
trap 'if [ -n "${PID:-}" ]; then kill "$PID" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is needed" >&2; exit 1; }
cd "$ROOT"
valgrind --tool=callgrind --demangle=no --dump-instr=no --collect-jumps=no \
  --callgrind-out-file="$WORK/cg.%p" \
  "$BIN" start -p "$BASE" -m $((BASE + 1)) -g $((BASE + 2)) -r $((BASE + 3)) \
  --admin-port $((BASE + 4)) --state-dir "$WORK/state" 2>"$WORK/log" &
PID=$!
for _ in $(seq 1 600); do
  curl -fsS -o /dev/null "http://127.0.0.1:$((BASE + 1))/readyz" 2>/dev/null && break
  sleep 0.2
done
curl -fsS -o /dev/null "http://127.0.0.1:$((BASE + 1))/readyz"
sleep 3 # idle: background tasks run their first rounds
callgrind_control -d "$PID" >/dev/null

flag=$(python3 -c 'import json,sys; d=json.load(open("flags/default.flagd.json")); print(next(k for k,v in d["flags"].items() if all(isinstance(x,bool) for x in v["variants"].values())))')
body="{\"flagKey\":\"$flag\",\"context\":{\"targetingKey\":\"user-1\",\"email\":\"a@example.com\"}}"
python3 - "$flag" >"$WORK/grpc.bin" <<'PY'
import struct, sys
def varint(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)
def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload
ctx = field(1, field(1, b"targetingKey") + field(2, field(3, b"user-1")))
msg = field(1, sys.argv[1].encode()) + field(2, ctx)
sys.stdout.buffer.write(b"\x00" + struct.pack(">I", len(msg)) + msg)
PY
for i in 1 2 3; do
  for version in v1 v2; do
    curl -fsS -o /dev/null --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' \
      --data-binary @"$WORK/grpc.bin" "http://127.0.0.1:$BASE/flagd.evaluation.$version.Service/ResolveBoolean"
  done
  curl -fsS -o /dev/null -H 'content-type: application/json' --data "$body" \
    "http://127.0.0.1:$BASE/flagd.evaluation.v1.Service/ResolveBoolean"
  curl -fsS -o /dev/null -H 'content-type: application/json' --data '{"context":{"targetingKey":"user-1"}}' \
    "http://127.0.0.1:$((BASE + 3))/ofrep/v1/evaluate/flags/$flag"
  curl -fsS -o /dev/null -H 'content-type: application/json' --data '{"context":{"targetingKey":"user-1"}}' \
    "http://127.0.0.1:$((BASE + 3))/ofrep/v1/evaluate/flags"
  curl -fsS -o /dev/null "http://127.0.0.1:$((BASE + 1))/metrics"
done
callgrind_control -d "$PID" >/dev/null
kill -TERM "$PID"
wait "$PID" || true
PID=

python3 - "$WORK" "$OUT" <<'PY'
import glob, os, re, sys
work, out = sys.argv[1:3]
seen, order = set(), []
# First the functions of start-up and idle (dump 1), then those of the requests (dump 2).
for dump in ("1", "2"):
    for path in sorted(glob.glob(f"{work}/cg.*.{dump}")):
        for line in open(path, encoding="utf-8", errors="replace"):
            m = re.match(r"c?fn=\(\d+\) (\S+)", line)
            if not m:
                continue
            symbol = m.group(1).split("'")[0]
            if symbol.startswith(("_ZN", "_R")) and symbol not in seen:
                seen.add(symbol)
                order.append(symbol)
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w", encoding="utf-8") as f:
    f.write("\n".join(order) + "\n")
print(f"{len(order)} functions -> {out}", file=sys.stderr)
PY
