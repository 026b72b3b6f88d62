#!/usr/bin/env bash
# End-to-end rollout scenarios against a real Prometheus.
#
# Starts, all on loopback with free ports and in a temporary directory: flagd-rs (a flag file
# with `progressive-rollout` and `blue-green-deployment`), two test applications that ask
# flagd-rs for their variant on every request and export per-variant counters (one with a
# healthy canary, one whose canary fails 10 % of its requests), and Prometheus scraping them
# every second. Then runs:
#   1. a healthy canary ramps 1 -> 5 -> 25 -> 50 -> 75 -> 100 % and completes;
#   2. the same ramp with the failing canary rolls back to 0 % within two gate intervals of the
#      failure showing in Prometheus, and `flagd-rs history` shows the steps and the reason;
#   3. a blue/green switch to green, then `flagd-rs restore` to the revision before it;
#   4. a restore to an older revision serves exactly the flags served at that revision;
#   5. kill -9 of the daemon during a rollout: the journal is intact, the split is the last
#      acknowledged one, and the rollout resumes and completes.
# (Scenario 2 runs first, while the canary has had no traffic yet.)
#
# Usage: e2e/rollout/run.sh
#   FLAGD_RS_BIN=path   use this binary instead of building one
#   E2E_PROFILE=release build the release binary (default: the debug one)
#   E2E_KEEP=1          keep the temporary directory (logs) afterwards
#   E2E_SCENARIOS="2 1" run only these scenarios
# Needs python3 and curl; installs Prometheus with apt-get when it is missing (as root).
# The last line printed is `rollout e2e: N passed, M failed`; the exit status is non-zero when
# anything failed.

set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
T0=$(date +%s.%N)
PASSED=0
FAILED=0
RESULTS=()

WORK=$(mktemp -d "${TMPDIR:-/tmp}/flagd-rs-rollout-e2e.XXXXXX")
FLAGD_PID=""
OTHER_PIDS=()

# Seconds since $1 (a `date +%s.%N` time), one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
# Whether the awk expression $1 is true.
is() { awk "BEGIN { exit !($1) }"; }
log() { printf '[%6ss] %s\n' "$(since "$T0")" "$*"; }

cleanup() {
    [[ -n "$FLAGD_PID" ]] && kill "$FLAGD_PID" 2>/dev/null
    for pid in "${OTHER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    if [[ -n "${E2E_KEEP:-}" ]]; then
        echo "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "rollout e2e: setup failed: $*" >&2
    for f in "$WORK"/*.log; do
        [[ -f "$f" ]] && { echo "--- $f (tail)" >&2; tail -n 20 "$f" >&2; }
    done
    echo "rollout e2e: 0 passed, 1 failed"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Tools and binaries

command -v python3 >/dev/null || die "python3 is required"
command -v curl >/dev/null || die "curl is required"

PROMETHEUS_BIN=$(command -v prometheus || true)
if [[ -z "$PROMETHEUS_BIN" ]]; then
    log "installing prometheus"
    if [[ $(id -u) -ne 0 ]]; then die "prometheus is missing and we are not root to install it"; fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) \
        >"$WORK/apt.log" 2>&1 || die "apt-get install prometheus failed (see $WORK/apt.log)"
    PROMETHEUS_BIN=$(command -v prometheus) || die "prometheus not found after installing it"
fi

if [[ -n "${FLAGD_RS_BIN:-}" ]]; then
    BIN=$FLAGD_RS_BIN
else
    PROFILE=${E2E_PROFILE:-debug}
    log "building flagd-rs ($PROFILE)"
    if [[ $PROFILE == release ]]; then
        (cd "$ROOT" && cargo build -q -p flagd-rs --release) || die "cargo build failed"
    else
        (cd "$ROOT" && cargo build -q -p flagd-rs) || die "cargo build failed"
    fi
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/flagd-rs
fi
[[ -x "$BIN" ]] || die "no flagd-rs binary at $BIN"

H="$HERE/helpers.py"
read -r EVAL MGMT SYNC OFREP ADMIN PROM APP_OK APP_BAD < <(python3 "$H" ports 8)
export FLAGD_ADMIN_URL="http://127.0.0.1:$ADMIN"
export FLAGD_ADMIN_ACTOR="e2e"
PROM_URL="http://127.0.0.1:$PROM"
FLAG=progressive-rollout
BG=blue-green-deployment

# ---------------------------------------------------------------------------------------------
# Processes

cat >"$WORK/flags.json" <<'EOF'
{
  "flags": {
    "progressive-rollout": {
      "state": "ENABLED",
      "variants": {"stable": "stable", "canary": "canary"},
      "defaultVariant": "stable",
      "targeting": {"fractional": [["stable", 100], ["canary", 0]]}
    },
    "blue-green-deployment": {
      "state": "ENABLED",
      "variants": {"blue": "blue", "green": "green"},
      "defaultVariant": "blue"
    },
    "new-checkout": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"fractional": [["off", 50], ["on", 50]]}
    }
  }
}
EOF

start_flagd() {
    "$BIN" start --uri "file:$WORK/flags.json" -p "$EVAL" -m "$MGMT" -g "$SYNC" -r "$OFREP" \
        --admin-port "$ADMIN" --state-dir "$WORK/state" >>"$WORK/flagd.log" 2>&1 &
    FLAGD_PID=$!
    for _ in $(seq 1 200); do
        if curl -sf "http://127.0.0.1:$MGMT/readyz" >/dev/null 2>&1 &&
            curl -sf "$FLAGD_ADMIN_URL/v1/rollouts" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$FLAGD_PID" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

log "starting flagd-rs (eval $EVAL, management $MGMT, admin $ADMIN)"
start_flagd || die "flagd-rs did not become ready"

python3 "$HERE/canary_app.py" --flagd-port "$EVAL" --metrics-port "$APP_OK" --name healthy \
    --rate 150 >"$WORK/app-healthy.log" 2>&1 &
OTHER_PIDS+=($!)
python3 "$HERE/canary_app.py" --flagd-port "$EVAL" --metrics-port "$APP_BAD" --name failing \
    --rate 150 --canary-fail-every 10 >"$WORK/app-failing.log" 2>&1 &
OTHER_PIDS+=($!)

cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
scrape_configs:
  - job_name: canary-healthy
    static_configs: [{targets: ["127.0.0.1:$APP_OK"]}]
  - job_name: canary-failing
    static_configs: [{targets: ["127.0.0.1:$APP_BAD"]}]
  - job_name: flagd-rs
    static_configs: [{targets: ["127.0.0.1:$MGMT"]}]
EOF
log "starting prometheus on $PROM"
"$PROMETHEUS_BIN" --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROM" --log.level=warn >"$WORK/prometheus.log" 2>&1 &
OTHER_PIDS+=($!)
for _ in $(seq 1 300); do
    curl -sf "$PROM_URL/-/ready" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -sf "$PROM_URL/-/ready" >/dev/null 2>&1 || die "prometheus did not become ready"

# One PromQL instant value ("none" without data).
promq() {
    curl -sG "$PROM_URL/api/v1/query" --data-urlencode "query=$1" |
        python3 "$H" get 'd["data"]["result"][0]["value"][1] if d["data"]["result"] else "none"'
}

# Wait until both applications are scraped.
for _ in $(seq 1 100); do
    up=$(promq 'sum(up{job=~"canary-.*"})')
    [[ $up == 2 ]] && break
    sleep 0.2
done
[[ ${up:-} == 2 ]] || die "prometheus does not scrape the test applications (up=$up)"
log "ready: prometheus scrapes both applications"

render_plan() { # render_plan TEMPLATE HOLD OUT
    sed -e "s|@PROMETHEUS@|$PROM_URL|" -e "s|@HOLD@|$2|" "$HERE/$1" >"$3"
}

fl() { "$BIN" "$@"; }

# The rollout's status as JSON.
status_json() { fl rollout status "$FLAG" -o json 2>/dev/null; }

fail() {
    echo "    FAIL: $*"
    return 1
}

run_scenario() { # run_scenario NAME FUNCTION
    local name=$1 start rc
    [[ " ${E2E_SCENARIOS:-1 2 3 4 5} " == *" ${name%%:*} "* ]] || return 0
    start=$(date +%s.%N)
    log "scenario $name"
    "$2"
    rc=$?
    local took
    took=$(since "$start")
    if [[ $rc -eq 0 ]]; then
        PASSED=$((PASSED + 1))
        RESULTS+=("ok    $name (${took}s)")
        log "  ok (${took}s)"
    else
        FAILED=$((FAILED + 1))
        RESULTS+=("FAIL  $name (${took}s)")
        log "  FAILED (${took}s)"
        echo "    --- rollout status"
        status_json | head -c 3000
        echo "    --- history"
        fl history "$FLAG" 2>&1 | tail -n 12
    fi
}

# Polls the rollout until its phase is one of $1 (space separated); fails after $2 seconds.
wait_phase() {
    local want=" $1 " deadline=$((SECONDS + $2)) phase
    while ((SECONDS < deadline)); do
        phase=$(status_json | python3 "$H" get 'd["phase"]' 2>/dev/null)
        [[ $want == *" $phase "* ]] && { echo "$phase"; return 0; }
        sleep 0.25
    done
    echo "${phase:-unknown}"
    return 1
}

# ---------------------------------------------------------------------------------------------
# Scenarios

GATE_INTERVAL=1 # seconds; the plans' `interval`

scenario_failing_canary_rolls_back() {
    render_plan plan-failing.yaml 3s "$WORK/plan-failing.yaml"
    local error_rate='sum(increase(canary_app_requests_total{job="canary-failing",variant="canary",outcome="error"}[10s])) / sum(increase(canary_app_requests_total{job="canary-failing",variant="canary"}[10s]))'
    fl rollout start "$FLAG" --plan "$WORK/plan-failing.yaml" --reason "e2e: failing canary" >/dev/null ||
        { fail "rollout start refused"; return 1; }
    local phase
    phase=$(wait_phase "rolled_back completed aborted paused" 60)
    [[ $phase == rolled_back ]] || { fail "expected rolled_back, got '$phase'"; return 1; }
    local status weights reason started_at rolled_back_at
    status=$(status_json)
    weights=$(echo "$status" | python3 "$H" get 'd["weights"]["canary"], d["weights"]["stable"]')
    [[ $weights == "(0, 100)" ]] || { fail "split after rollback is $weights"; return 1; }
    reason=$(echo "$status" | python3 "$H" get 'd["reason"]')
    started_at=$(echo "$status" | python3 "$H" get 'd["startedAt"]')
    rolled_back_at=$(echo "$status" | python3 "$H" get 'd["updatedAt"]')
    echo "    rolled back $(awk -v a="$(python3 "$H" epoch "$started_at")" \
        -v b="$(python3 "$H" epoch "$rolled_back_at")" 'BEGIN { printf "%.1f", b - a }')s after the start: $reason"
    [[ $reason == *"failed"* ]] || { fail "rollback reason: $reason"; return 1; }
    # Acted on the first failed check of the gate that failed.
    local first
    first=$(echo "$status" | python3 "$H" get 'max(g["failures"] for g in d["gates"])')
    [[ $first == 1 ]] || { fail "acted after $first failed checks, not the first"; return 1; }
    # When did Prometheus first show the error rate above the gate's 5 %? Asked afterwards with
    # a range query, so the answer does not depend on how fast this script polls.
    local visible t_back lag
    visible=$(python3 "$H" first-above "$PROM_URL" "$error_rate" "$started_at" "$rolled_back_at" 0.05)
    [[ $visible != none ]] || { fail "Prometheus never showed the failure before the rollback"; return 1; }
    t_back=$(python3 "$H" epoch "$rolled_back_at")
    lag=$(awk -v a="$visible" -v b="$t_back" 'BEGIN { printf "%.2f", b - a }')
    echo "    error rate above 5 % in Prometheus -> rolled back: ${lag}s (gate interval ${GATE_INTERVAL}s)"
    is "$lag <= 2 * $GATE_INTERVAL" || { fail "the rollback came ${lag}s after the failure showed"; return 1; }
    # Every user is served the baseline again.
    local served
    served=$(python3 "$H" variants "$EVAL" "$FLAG" 200)
    [[ $served == '{"stable": 200}' ]] || { fail "served after rollback: $served"; return 1; }
    # History: the start, any steps, and the rollback with its reason.
    local history
    history=$(fl history "$FLAG")
    echo "$history" | sed 's/^/    | /'
    grep -q "rollout started: step 1/6" <<<"$history" || { fail "history lacks the start"; return 1; }
    grep -q "rollout rolled back: gate '.*' failed" <<<"$history" ||
        { fail "history lacks the rollback reason"; return 1; }
}

scenario_healthy_ramp_completes() {
    render_plan plan-healthy.yaml 3s "$WORK/plan-healthy.yaml"
    fl rollout start "$FLAG" --plan "$WORK/plan-healthy.yaml" --reason "e2e: healthy canary" >/dev/null ||
        { fail "rollout start refused"; return 1; }
    local steps_seen="" step phase deadline=$((SECONDS + 120))
    while ((SECONDS < deadline)); do
        local s
        s=$(status_json)
        phase=$(echo "$s" | python3 "$H" get 'd["phase"]')
        step=$(echo "$s" | python3 "$H" get 'd["weight"]')
        [[ " $steps_seen " == *" $step "* ]] || steps_seen="$steps_seen $step"
        [[ $phase == running ]] || break
        sleep 0.25
    done
    echo "    weights seen:$steps_seen"
    [[ $phase == completed ]] || { fail "expected completed, got '$phase'"; return 1; }
    local served
    served=$(python3 "$H" variants "$EVAL" "$FLAG" 200)
    [[ $served == '{"canary": 200}' ]] || { fail "served after completion: $served"; return 1; }
    local history steps
    history=$(fl history "$FLAG")
    steps=$(grep -c "rollout step [2-6]/6" <<<"$history")
    # Scenario 2's rollout may have made some steps too; this one makes all five.
    ((steps >= 5)) || { fail "history shows $steps steps"; return 1; }
    grep -q "rollout completed: canary at 100%" <<<"$history" || { fail "no completion in history"; return 1; }
    local gates
    gates=$(status_json | python3 "$H" get '" ".join(g["name"] + "=" + str(g["checks"]) for g in d["gates"])')
    echo "    gate checks: $gates"
    # The daemon's metrics, straight and through Prometheus.
    local metrics
    metrics=$(curl -sf "http://127.0.0.1:$MGMT/metrics")
    grep -q "flagd_rs_rollout_phase{feature_flag_key=\"$FLAG\",phase=\"completed\"} 1" <<<"$metrics" ||
        { fail "metrics lack the completed phase"; return 1; }
    grep -q "flagd_rs_rollout_gate_checks_total{feature_flag_key=\"$FLAG\",gate=\"success-rate\",result=\"pass\"}" <<<"$metrics" ||
        { fail "metrics lack gate results"; return 1; }
    local scraped=""
    for _ in $(seq 1 20); do
        scraped=$(promq "flagd_rs_rollout_weight_percent{feature_flag_key=\"$FLAG\",variant=\"canary\"}")
        [[ $scraped == 100 ]] && break
        sleep 0.25
    done
    [[ $scraped == 100 ]] || { fail "Prometheus sees canary weight $scraped"; return 1; }
}

scenario_blue_green_switch_and_restore() {
    local switched rev before served
    switched=$(fl switch "$BG" green --reason "e2e: go green" -o json) || { fail "switch refused"; return 1; }
    rev=$(echo "$switched" | python3 "$H" get 'd["revision"]')
    before=$((rev - 1))
    served=$(python3 "$H" variants "$EVAL" "$BG" 50)
    [[ $served == '{"green": 50}' ]] || { fail "after the switch: $served"; return 1; }
    echo "    switched at revision $rev; restoring revision $before"
    fl restore "$before" --reason "e2e: back to blue" >/dev/null || { fail "restore refused"; return 1; }
    served=$(python3 "$H" variants "$EVAL" "$BG" 50)
    [[ $served == '{"blue": 50}' ]] || { fail "after the restore: $served"; return 1; }
    fl history "$BG" | tail -n 2 | sed 's/^/    | /'
}

scenario_restore_reproduces_served_flags() {
    fl split "$FLAG" stable=70 canary=30 --reason "e2e: a split to remember" >/dev/null ||
        { fail "split refused"; return 1; }
    local head
    head=$(fl history -o json | python3 "$H" get 'd["head"]')
    python3 "$H" snapshot "$EVAL" "$ADMIN" 100 >"$WORK/at-$head.json" || { fail "snapshot failed"; return 1; }
    fl split "$FLAG" stable=10 canary=90 >/dev/null &&
        fl switch "$BG" green >/dev/null &&
        fl disable new-checkout >/dev/null &&
        fl split new-checkout off=90 on=10 >/dev/null || { fail "changes refused"; return 1; }
    python3 "$H" snapshot "$EVAL" "$ADMIN" 100 >"$WORK/changed.json"
    cmp -s "$WORK/at-$head.json" "$WORK/changed.json" && { fail "the changes changed nothing"; return 1; }
    fl restore "$head" --reason "e2e: restore $head" >/dev/null || { fail "restore refused"; return 1; }
    python3 "$H" snapshot "$EVAL" "$ADMIN" 100 >"$WORK/restored.json"
    if ! cmp -s "$WORK/at-$head.json" "$WORK/restored.json"; then
        diff <(python3 -m json.tool "$WORK/at-$head.json") <(python3 -m json.tool "$WORK/restored.json") | head -n 20
        { fail "flags served after restoring revision $head differ from those served at it"; return 1; }
    fi
    echo "    revision $head: 100 users x 3 flags and the effective definitions are identical after the restore"
    # And back to the middle of scenario 1's ramp: the split it had then.
    local mid
    mid=$(fl history "$FLAG" -o json | python3 "$H" get \
        '[r["revision"] for r in d["revisions"] if r["reason"].startswith("rollout step 3/6")][-1]')
    fl restore "$mid" >/dev/null || { fail "restore of $mid refused"; return 1; }
    local split
    split=$(curl -sf "$FLAGD_ADMIN_URL/v1/flags/$FLAG" | python3 "$H" get \
        '{e["variant"]: e["weight"] for e in d["flag"]["split"]}')
    [[ $split == "{'stable': 75, 'canary': 25}" ]] || { fail "split at revision $mid: $split"; return 1; }
    echo "    revision $mid (rollout step 3/6): split $split"
}

scenario_kill_9_during_rollout() {
    fl split "$FLAG" stable=100 canary=0 --reason "e2e: reset before the restart test" >/dev/null ||
        { fail "reset refused"; return 1; }
    render_plan plan-healthy.yaml 8s "$WORK/plan-restart.yaml"
    fl rollout start "$FLAG" --plan "$WORK/plan-restart.yaml" --reason "e2e: kill -9" >/dev/null ||
        { fail "rollout start refused"; return 1; }
    # Kill it early in the hold of step 2 or later, so that the last acknowledged change is known
    # and the restarted daemon is up well before the hold ends.
    local s phase step left deadline=$((SECONDS + 90))
    while ((SECONDS < deadline)); do
        s=$(curl -sf "$FLAGD_ADMIN_URL/v1/rollouts/$FLAG")
        read -r phase step left < <(echo "$s" | python3 "$H" get \
            '" ".join(str(x) for x in (d["phase"], d["step"], d["holdRemainingMs"]))')
        [[ $phase == running ]] || { fail "not running: $s"; return 1; }
        ((step >= 2 && left >= 6000)) && break
        sleep 0.1
    done
    ((step >= 2 && left >= 6000)) || { fail "never caught early in a hold"; return 1; }
    curl -sf "$FLAGD_ADMIN_URL/v1/revisions" >"$WORK/revisions-before.json" &&
        curl -sf "$FLAGD_ADMIN_URL/v1/flags/$FLAG" >"$WORK/flag-before.json" ||
        { fail "admin API"; return 1; }
    kill -9 "$FLAGD_PID"
    wait "$FLAGD_PID" 2>/dev/null
    local killed_at=$SECONDS
    start_flagd || { fail "flagd-rs did not restart"; return 1; }
    curl -sf "$FLAGD_ADMIN_URL/v1/revisions" >"$WORK/revisions-after.json" &&
        curl -sf "$FLAGD_ADMIN_URL/v1/flags/$FLAG" >"$WORK/flag-after.json" ||
        { fail "admin API after the restart"; return 1; }
    local split_of='{e["variant"]: e["weight"] for e in d["flag"]["split"]}'
    local head_before weights_before head_after weights_after
    head_before=$(python3 "$H" get 'd["head"]' <"$WORK/revisions-before.json")
    weights_before=$(python3 "$H" get "$split_of" <"$WORK/flag-before.json")
    head_after=$(python3 "$H" get 'd["head"]' <"$WORK/revisions-after.json")
    weights_after=$(python3 "$H" get "$split_of" <"$WORK/flag-after.json")
    echo "    killed at step $step (revision $head_before, split $weights_before, ${left} ms of hold left);" \
        "up again after $((SECONDS - killed_at))s"
    # The journal is intact: every acknowledged revision is there, unchanged.
    local prefix
    prefix=$(python3 -c 'import json,sys
a = json.load(open(sys.argv[1]))["revisions"]
b = json.load(open(sys.argv[2]))["revisions"]
print(b[:len(a)] == a)' "$WORK/revisions-before.json" "$WORK/revisions-after.json")
    [[ $prefix == True ]] || { fail "the journal lost or changed revisions"; return 1; }
    ls "$WORK/state" | grep -q corrupt && { fail "the journal needed recovery"; return 1; }
    # The split is the last acknowledged one, unless the restart took longer than the hold had
    # left (a loaded machine) and the resumed rollout has already moved on by itself.
    if [[ $head_after == "$head_before" ]]; then
        [[ $weights_after == "$weights_before" ]] ||
            { fail "split after restart $weights_after, acknowledged $weights_before"; return 1; }
    else
        local later only_steps
        later=$(python3 "$H" get "[r['reason'] for r in d['revisions'][$head_before:]]" <"$WORK/revisions-after.json")
        only_steps=$(python3 "$H" get \
            "all(r['reason'].startswith('rollout step') for r in d['revisions'][$head_before:])" \
            <"$WORK/revisions-after.json")
        echo "    the resumed rollout moved on before it was looked at: $later"
        [[ $only_steps == True ]] ||
            { fail "unexpected revisions after the restart: $later"; return 1; }
    fi
    local after
    after=$(status_json)
    echo "    after restart: $(fl rollout status "$FLAG")"
    [[ $(echo "$after" | python3 "$H" get 'd["step"] >= '"$step") == True ]] ||
        { fail "the rollout went backwards"; return 1; }
    local phase
    phase=$(wait_phase "completed rolled_back aborted paused" 90)
    [[ $phase == completed ]] || { fail "the resumed rollout ended $phase"; return 1; }
    local served
    served=$(python3 "$H" variants "$EVAL" "$FLAG" 100)
    [[ $served == '{"canary": 100}' ]] || { fail "served after completion: $served"; return 1; }
}

run_scenario "2: failing canary rolls back" scenario_failing_canary_rolls_back
run_scenario "1: healthy canary ramps to 100%" scenario_healthy_ramp_completes
run_scenario "3: blue/green switch and restore" scenario_blue_green_switch_and_restore
run_scenario "4: restore reproduces the served flags" scenario_restore_reproduces_served_flags
run_scenario "5: kill -9 during a rollout" scenario_kill_9_during_rollout

echo
for r in "${RESULTS[@]}"; do
    echo "  $r"
done
log "done"
echo "rollout e2e: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
