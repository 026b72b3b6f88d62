#!/usr/bin/env bash
# End-to-end check with the published Python OpenFeature providers: builds flagd-rs, starts it on
# free loopback ports with e2e/python/flags.json, and evaluates flags through the flagd provider
# (RPC and in-process modes) and the OFREP provider (check_clients.py). Then runs the flagd
# testbed's provider scenarios through the OFREP provider (testbed.py), which starts its own
# daemons of the same executable on the testbed's flag files.
#
# Usage: e2e/python/run.sh
#   E2E_VENV      virtualenv to create or reuse (default: target/e2e-venv)
#   E2E_PYTHON    interpreter that creates it (default: python3)
#   E2E_RELEASE   set to 1 to test a release build
#   FLAGD_TESTBED the testbed (default: ../shared/testbed beside the repository); with
#                 FLAGD_TESTBED_REQUIRED=1 a missing testbed is a failure, else a skip
# Prints `python-e2e: N passed, M failed` for the client checks and
# `python-testbed: N passed, M failed, K skipped` for the testbed (with a line per feature);
# exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

venv="${E2E_VENV:-$root/target/e2e-venv}"
python="${E2E_PYTHON:-python3}"

work="$(mktemp -d)"
daemon_pid=""
cleanup() {
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$daemon_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "$1" >&2
  [[ -f "$work/daemon.log" ]] && tail -n 40 "$work/daemon.log" >&2
  echo "python-e2e: 0 passed, 1 failed"
  exit 1
}

echo "== python providers ($venv)"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  openfeature-provider-flagd openfeature-provider-ofrep
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(openfeature-|grpcio )' || true

echo "== building flagd-rs"
profile=debug
build_args=(build -p flagd-rs --bin flagd-rs)
if [[ "${E2E_RELEASE:-}" == 1 ]]; then
  profile=release
  build_args+=(--release)
fi
cargo "${build_args[@]}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bin="$target_dir/$profile/flagd-rs"

# Five free loopback ports, chosen by the OS and released just before the daemon binds them.
read -r eval_port mgmt_port sync_port ofrep_port admin_port < <("$python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
EOF
)

echo "== starting flagd-rs (eval $eval_port, management $mgmt_port, sync $sync_port, ofrep $ofrep_port)"
cp "$here/flags.json" "$work/flags.json"
"$bin" start \
  --uri "file:$work/flags.json" \
  --port "$eval_port" --management-port "$mgmt_port" \
  --sync-port "$sync_port" --ofrep-port "$ofrep_port" \
  --admin-port "$admin_port" --state-dir "$work/state" \
  --context-value env=prod \
  >"$work/daemon.log" 2>&1 &
daemon_pid=$!

ready=""
for _ in $(seq 300); do
  if ! kill -0 "$daemon_pid" 2>/dev/null; then
    fail "flagd-rs exited during start-up"
  fi
  if curl -fsS -o /dev/null "http://127.0.0.1:$mgmt_port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ -n "$ready" ]] || fail "flagd-rs did not become ready within 30 s"

echo "== evaluating through the Python providers"
status=0
E2E_EVAL_PORT="$eval_port" E2E_SYNC_PORT="$sync_port" E2E_OFREP_PORT="$ofrep_port" \
  timeout 120 "$venv/bin/python" "$here/check_clients.py" || status=$?
if [[ $status -ne 0 ]]; then
  echo "-- flagd-rs log (last lines)" >&2
  tail -n 40 "$work/daemon.log" >&2
fi
if [[ $status -eq 124 ]]; then
  echo "the Python checks did not finish within 120 s" >&2
  echo "python-e2e: 0 passed, 1 failed"
fi

echo "== the flagd testbed's provider scenarios through the Python OFREP provider"
testbed_status=0
E2E_BIN="$bin" timeout 600 "$venv/bin/python" "$here/testbed.py" || testbed_status=$?
if [[ $testbed_status -eq 124 ]]; then
  echo "the testbed scenarios did not finish within 600 s" >&2
  echo "python-testbed: 0 passed, 1 failed, 0 skipped"
fi
if [[ $status -eq 0 ]]; then
  status=$testbed_status
fi
exit "$status"
