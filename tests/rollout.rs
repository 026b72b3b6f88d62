//! Rollouts: plans driven against a fake Prometheus and a fake webhook (ramps that complete,
//! failures that roll back, inconclusive answers that pause), the verbs, resuming from the
//! journal after a restart, and the admin routes, CLI and metrics of a running daemon.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_evaluator::{EvalContext, Format, LoadOptions, OverridePatch};
use flagd_rs::authority::rollout::{self, Phase, Plan, RolloutError, RolloutRunner, RolloutStatus};
use flagd_rs::authority::{Authority, RevisionKind};
use flagd_rs::selector::Selector;
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use flagd_rs::{Listeners, config::Config};
use flagd_rs_tests::daemon::config_for;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const FLAGS: &str = r#"{
  "flags": {
    "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 100], ["canary", 0]]}},
    "five": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 95], ["canary", 5]]}},
    "bg": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"}, "defaultVariant": "blue"}
  }
}"#;

/// A fake Prometheus (`GET /api/v1/query`) and webhook (`POST /hook`) on a loopback port. Query
/// answers are looked up by the query text; a missing query answers an empty vector.
#[derive(Clone, Default)]
struct Fake {
    /// query -> sample value ("0.99", "NaN"), or "error" for a query error.
    values: Arc<Mutex<HashMap<String, String>>>,
    /// The webhook's JSON answer.
    hook: Arc<Mutex<Value>>,
    /// Number of queries answered.
    queries: Arc<Mutex<u64>>,
}

impl Fake {
    async fn start() -> (Fake, String) {
        let fake = Fake::default();
        *fake.hook.lock().unwrap() = json!({"result": "pass"});
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let fake = served.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Read the head, then the body its Content-Length announces.
                    let head_end = loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + length {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    let body = fake.answer(&target);
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (fake, url)
    }

    fn answer(&self, target: &str) -> String {
        let url = reqwest::Url::parse(&format!("http://x{target}")).unwrap();
        if url.path() == "/hook" {
            return self.hook.lock().unwrap().to_string();
        }
        *self.queries.lock().unwrap() += 1;
        let query = url
            .query_pairs()
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        match self.values.lock().unwrap().get(&query).map(String::as_str) {
            Some("error") => {
                json!({"status": "error", "errorType": "bad_data", "error": "parse error"})
                    .to_string()
            }
            Some(v) => json!({"status": "success", "data": {"resultType": "vector",
                "result": [{"metric": {}, "value": [1.0, v]}]}})
            .to_string(),
            None => json!({"status": "success", "data": {"resultType": "vector", "result": []}})
                .to_string(),
        }
    }

    fn set(&self, query: &str, value: &str) {
        self.values
            .lock()
            .unwrap()
            .insert(query.to_owned(), value.to_owned());
    }

    fn queries(&self) -> u64 {
        *self.queries.lock().unwrap()
    }
}

fn store_with(flags: &str) -> Arc<Store> {
    let store = Store::new(vec!["mem".into()], LoadOptions::default());
    store
        .apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Content {
                bytes: flags.as_bytes().to_vec(),
                format: Format::Json,
            },
        })
        .unwrap();
    store
}

fn open(dir: &Path) -> (Arc<Authority>, Arc<RolloutRunner>) {
    open_over(dir, store_with(FLAGS))
}

fn open_over(dir: &Path, store: Arc<Store>) -> (Arc<Authority>, Arc<RolloutRunner>) {
    let authority = Authority::open(dir, store).unwrap();
    let runner = RolloutRunner::spawn(authority.clone(), Arc::new(rollout::HttpGates::new()));
    (authority, runner)
}

/// Replaces the store's (single) document with `flags`.
fn load(store: &Store, flags: &str) {
    store
        .apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Content {
                bytes: flags.as_bytes().to_vec(),
                format: Format::Json,
            },
        })
        .unwrap();
}

/// A plan: `steps` as (weight, hold ms), gates `ok` (>= 0.95 on query "ok") and, with `hook`,
/// a webhook gate.
fn plan(prom: &str, steps: &[(f64, u64)], extra: &str) -> Plan {
    let steps: Vec<String> = steps
        .iter()
        .map(|(w, h)| format!("  - {{weight: {w}, hold: {h}ms}}"))
        .collect();
    let text = format!(
        "variant: canary\nbaseline: stable\nprometheus: {prom}\ninterval: 50ms\n{extra}\nsteps:\n{}\ngates:\n  - name: ok\n    query: ok\n    condition: \">= 0.95\"\n",
        steps.join("\n")
    );
    rollout::plan::parse(text.as_bytes()).unwrap()
}

/// The weights the authority's override of `flag` sets, as `name=weight` text.
fn split(authority: &Authority, flag: &str) -> String {
    let mut w = authority
        .override_of(flag)
        .and_then(|p| p.weights)
        .unwrap_or_default();
    w.sort();
    w.iter()
        .map(|(n, w)| format!("{n}={w}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Polls until the rollout of `flag` reaches a phase in `phases` (bounded).
async fn wait_phase(runner: &RolloutRunner, flag: &str, phases: &[Phase]) -> RolloutStatus {
    for _ in 0..400 {
        let status = runner.status(flag).unwrap();
        if phases.contains(&status.phase) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "rollout of {flag} never reached {phases:?}: {:?}",
        runner.status(flag)
    );
}

async fn wait_step(runner: &RolloutRunner, flag: &str, step: usize) -> RolloutStatus {
    for _ in 0..400 {
        let status = runner.status(flag).unwrap();
        if status.step >= step {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("rollout of {flag} never reached step {step}");
}

fn served_variant(store: &Store, key: &str, user: &str) -> String {
    let snapshot = store.snapshot();
    let flag = snapshot.get(key, &Selector::All).unwrap().flag;
    let data = json!({"targetingKey": user});
    let ctx = EvalContext {
        data: &data,
        flag_key: key,
        timestamp: 0,
    };
    let out = flag.targeting().unwrap().evaluate(&ctx).unwrap();
    out.as_str().unwrap_or_default().to_owned()
}

const RAMP: [(f64, u64); 6] = [
    (1.0, 120),
    (5.0, 120),
    (25.0, 120),
    (50.0, 120),
    (75.0, 120),
    (100.0, 0),
];

#[tokio::test]
async fn a_healthy_ramp_completes_with_one_revision_per_step() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    let status = runner
        .start("ramp", plan(&prom, &RAMP, ""), "ci", "ship it")
        .await
        .unwrap();
    assert_eq!(
        (status.phase, status.step, status.weight),
        (Phase::Running, 1, 1.0)
    );
    assert_eq!(split(&authority, "ramp"), "canary=1 stable=99");

    // Users served canary at one step stay canary at every later one.
    let users: Vec<String> = (0..2000).map(|i| format!("user-{i}")).collect();
    let mut canary: Vec<bool> = vec![false; users.len()];
    let mut seen_steps = Vec::new();
    loop {
        let status = runner.status("ramp").unwrap();
        for (i, u) in users.iter().enumerate() {
            let now = served_variant(authority.store(), "ramp", u) == "canary";
            assert!(
                now || !canary[i],
                "{u} left the canary at step {}",
                status.step
            );
            canary[i] = now;
        }
        if seen_steps.last() != Some(&status.step) {
            seen_steps.push(status.step);
        }
        if status.phase == Phase::Completed {
            break;
        }
        assert_eq!(status.phase, Phase::Running, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(canary.iter().all(|c| *c));
    assert_eq!(split(&authority, "ramp"), "canary=100 stable=0");
    assert!(seen_steps.len() >= 4, "{seen_steps:?}");

    let revisions = authority.revisions(Some("ramp"));
    let reasons: Vec<&str> = revisions.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(revisions.len(), 7, "{reasons:#?}");
    assert!(revisions.iter().all(|r| r.kind == RevisionKind::Rollout));
    assert_eq!(reasons[0], "rollout started: step 1/6, canary 1% (ship it)");
    assert_eq!(reasons[2], "rollout step 3/6: canary 25%");
    assert_eq!(reasons[6], "rollout completed: canary at 100%");
    assert_eq!(revisions[0].actor, "ci");
    assert_eq!(revisions[1].actor, "rollout");
    let done = runner.status("ramp").unwrap();
    assert!(done.gates[0].checks.pass >= 5, "{:?}", done.gates);
    assert_eq!(done.gates[0].checks.fail, 0);
    // The rollout is over: verbs are refused, a new rollout may start.
    assert!(matches!(
        runner.pause("ramp", "ci", "").await,
        Err(RolloutError::Finished {
            phase: Phase::Completed,
            ..
        })
    ));
    runner.stop().await;
}

#[tokio::test]
async fn a_failing_gate_rolls_back_within_two_intervals() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    let steps = [(1.0, 100), (25.0, 5000), (100.0, 0)];
    runner
        .start("ramp", plan(&prom, &steps, ""), "ci", "")
        .await
        .unwrap();
    wait_step(&runner, "ramp", 2).await;
    assert_eq!(split(&authority, "ramp"), "canary=25 stable=75");
    fake.set("ok", "0.9");
    let failed_at = tokio::time::Instant::now();
    let status = wait_phase(&runner, "ramp", &[Phase::RolledBack]).await;
    // The first failed check acts (failure limit 0): the rollback comes within one interval of
    // the failure (50 ms here; the bound leaves room for a loaded machine).
    assert_eq!(status.gates[0].checks.fail, 1, "{:?}", status.gates);
    assert!(
        failed_at.elapsed() < Duration::from_secs(2),
        "{:?}",
        failed_at.elapsed()
    );
    // The flag had no override before the rollout: it has none again.
    assert_eq!(authority.override_of("ramp"), None);
    assert_eq!(
        served_variant(authority.store(), "ramp", "anyone"),
        "stable"
    );
    let reason = status.reason.unwrap();
    assert!(
        reason.contains("gate 'ok' failed: 0.9 is not >= 0.95"),
        "{reason}"
    );
    let last = authority.revisions(Some("ramp")).pop().unwrap();
    assert!(
        last.reason
            .starts_with("rollout rolled back: gate 'ok' failed"),
        "{}",
        last.reason
    );
    assert_eq!(last.changes.len(), 1);
    runner.stop().await;
}

#[tokio::test]
async fn failure_limit_tolerates_failures_and_pause_on_failure_keeps_the_step() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.5");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    // Limit 2: the third failed check acts, and the plan says to pause.
    let p = plan(
        &prom,
        &[(10.0, 10_000), (100.0, 0)],
        "failureLimit: 2\nonFailure: pause",
    );
    runner.start("ramp", p, "ci", "").await.unwrap();
    let status = wait_phase(&runner, "ramp", &[Phase::Paused]).await;
    assert_eq!(status.gates[0].checks.fail, 3, "{:?}", status.gates);
    assert!(status.reason.unwrap().contains("3 failed checks, limit 2"));
    assert_eq!(split(&authority, "ramp"), "canary=10 stable=90");
    let left = status.hold_remaining_ms;
    assert!(left > 9000 && left < 10_000, "{left}");
    // While paused, no gate is checked and the hold does not count down.
    let queries = fake.queries();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(fake.queries(), queries);
    assert_eq!(runner.status("ramp").unwrap().hold_remaining_ms, left);
    // Resume starts the counters over; promote skips the hold.
    fake.set("ok", "0.99");
    let resumed = runner.resume("ramp", "ops", "looked fine").await.unwrap();
    assert_eq!(resumed.phase, Phase::Running);
    assert_eq!(resumed.gates[0].failures, 0);
    runner.promote("ramp", "ops", "").await.unwrap();
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    let reasons: Vec<String> = authority
        .revisions(Some("ramp"))
        .into_iter()
        .map(|r| r.reason)
        .collect();
    // The failure counts were journaled as they grew; the pause, resume and promotion follow.
    assert_eq!(
        reasons[1..],
        [
            "rollout gate counts: 'ok' 1 failed, 0 inconclusive in a row",
            "rollout gate counts: 'ok' 2 failed, 0 inconclusive in a row",
            "rollout paused: gate 'ok' failed: 0.5 is not >= 0.95 (3 failed checks, limit 2)",
            "rollout resumed by ops: looked fine",
            "rollout step 2/2: canary 100% (promoted by ops)",
            "rollout completed: canary at 100%",
        ],
        "{reasons:#?}"
    );
    runner.stop().await;
}

#[tokio::test]
async fn inconclusive_answers_pause_for_a_human() {
    let (fake, prom) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    // No data for the query.
    runner
        .start("ramp", plan(&prom, &[(5.0, 200), (100.0, 0)], ""), "ci", "")
        .await
        .unwrap();
    let status = wait_phase(&runner, "ramp", &[Phase::Paused]).await;
    let reason = status.reason.unwrap();
    assert!(
        reason.contains("gate 'ok' inconclusive: no data"),
        "{reason}"
    );
    assert_eq!(split(&authority, "ramp"), "canary=5 stable=95");
    // NaN (a ratio over no requests) and query errors are inconclusive too.
    for answer in ["NaN", "error"] {
        fake.set("ok", answer);
        runner.resume("ramp", "ops", "").await.unwrap();
        let status = wait_phase(&runner, "ramp", &[Phase::Paused]).await;
        assert!(status.reason.unwrap().contains("inconclusive"), "{answer}");
    }
    // Once the data is there, the rollout goes on.
    fake.set("ok", "0.99");
    runner.resume("ramp", "ops", "").await.unwrap();
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    runner.stop().await;
}

#[tokio::test]
async fn a_hold_ends_only_on_a_passing_check() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "NaN");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    // Inconclusive answers are allowed, but the step does not move on without a pass.
    let p = plan(
        &prom,
        &[(5.0, 100), (100.0, 0)],
        "inconclusiveLimit: 1000\nfailureLimit: 1000",
    );
    runner.start("ramp", p, "ci", "").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = runner.status("ramp").unwrap();
    assert_eq!((status.phase, status.step), (Phase::Running, 1));
    assert!(
        status.gates[0].checks.inconclusive >= 3,
        "{:?}",
        status.gates
    );
    fake.set("ok", "0.5");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = runner.status("ramp").unwrap();
    assert_eq!((status.phase, status.step), (Phase::Running, 1));
    assert_eq!(split(&authority, "ramp"), "canary=5 stable=95");
    fake.set("ok", "0.99");
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    runner.stop().await;
}

#[tokio::test]
async fn webhook_gates_decide_too() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    *fake.hook.lock().unwrap() = json!({"result": "fail", "message": "budget burnt"});
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    let mut p = plan(&prom, &[(50.0, 5000), (100.0, 0)], "");
    // Two gates may be checked at most every 100 ms.
    p.interval = Duration::from_millis(100);
    p.gates.push(rollout::plan::GateSpec {
        name: "budget".into(),
        query: None,
        condition: None,
        prometheus: None,
        webhook: Some(format!("{prom}/hook")),
        timeout: None,
        failure_limit: None,
    });
    runner.start("ramp", p, "ci", "").await.unwrap();
    let status = wait_phase(&runner, "ramp", &[Phase::RolledBack]).await;
    assert!(
        status
            .reason
            .unwrap()
            .contains("gate 'budget' failed: budget burnt"),
    );
    assert_eq!(authority.override_of("ramp"), None);
    runner.stop().await;
}

#[tokio::test]
async fn verbs_pause_promote_and_abort() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    // "five" starts at 5 % (from its file, without an override): the abort goes back there.
    let steps = [(5.0, 60_000), (50.0, 60_000), (100.0, 0)];
    runner
        .start("five", plan(&prom, &steps, ""), "ci", "")
        .await
        .unwrap();
    let paused = runner.pause("five", "ops", "lunch").await.unwrap();
    assert_eq!(paused.phase, Phase::Paused);
    assert_eq!(
        paused.reason.as_deref(),
        Some("rollout paused by ops: lunch")
    );
    // Pausing twice or resuming a running rollout changes nothing.
    let head = authority.head();
    runner.pause("five", "ops", "").await.unwrap();
    assert_eq!(authority.head(), head);
    let promoted = runner.promote("five", "ops", "").await.unwrap();
    assert_eq!((promoted.phase, promoted.step), (Phase::Running, 2));
    assert_eq!(split(&authority, "five"), "canary=50 stable=50");
    let head = authority.head();
    runner.resume("five", "ops", "").await.unwrap();
    assert_eq!(authority.head(), head);
    let aborted = runner.abort("five", "ops", "wrong build").await.unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(aborted.weight, 5.0);
    assert_eq!(authority.override_of("five"), None);
    let last = authority.revisions(Some("five")).pop().unwrap();
    assert_eq!(last.reason, "rollout aborted by ops: wrong build");
    assert_eq!(last.actor, "ops");
    assert!(matches!(
        runner.abort("five", "ops", "").await,
        Err(RolloutError::Finished { .. })
    ));
    runner.stop().await;
}

#[tokio::test]
async fn starts_are_checked() {
    let (_fake, prom) = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (_authority, runner) = open(dir.path());
    let p = plan(&prom, &[(1.0, 60_000), (100.0, 0)], "");
    assert!(matches!(
        runner.start("nope", p.clone(), "ci", "").await,
        Err(RolloutError::UnknownFlag(_))
    ));
    assert!(matches!(
        runner.start("bg", p.clone(), "ci", "").await,
        Err(RolloutError::NoSplit { .. })
    ));
    // "five" serves 5 % canary already: a first step of 1 % would take users away.
    assert!(matches!(
        runner.start("five", p.clone(), "ci", "").await,
        Err(RolloutError::NotMonotonic { .. })
    ));
    let mut wrong = p.clone();
    wrong.variant = "blue".into();
    assert!(matches!(
        runner.start("ramp", wrong, "ci", "").await,
        Err(RolloutError::NoSplit { .. })
    ));
    runner.start("ramp", p.clone(), "ci", "").await.unwrap();
    assert!(matches!(
        runner.start("ramp", p.clone(), "ci", "").await,
        Err(RolloutError::Active { .. })
    ));
    assert!(matches!(
        runner.status("five"),
        Err(RolloutError::NoRollout(_))
    ));
    assert_eq!(runner.list().len(), 1);
    runner.stop().await;
}

#[tokio::test]
async fn a_split_changed_outside_the_rollout_pauses_it() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    runner
        .start(
            "ramp",
            plan(&prom, &[(10.0, 300), (100.0, 0)], ""),
            "ci",
            "",
        )
        .await
        .unwrap();
    let manual = OverridePatch {
        weights: Some(vec![("stable".into(), 70), ("canary".into(), 30)]),
        ..OverridePatch::default()
    };
    authority
        .set_override("ramp", manual, "ops", "hotfix", None)
        .unwrap();
    let status = wait_phase(&runner, "ramp", &[Phase::Paused]).await;
    assert!(
        status
            .reason
            .unwrap()
            .contains("changed outside the rollout (now stable=70 canary=30)")
    );
    assert_eq!(split(&authority, "ramp"), "canary=30 stable=70");
    // A human accepts it: the rollout goes on from its own next step.
    runner.resume("ramp", "ops", "").await.unwrap();
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    assert_eq!(split(&authority, "ramp"), "canary=100 stable=0");
    runner.stop().await;
}

#[tokio::test]
async fn rollouts_resume_from_the_journal_after_a_restart() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    {
        let (authority, runner) = open(dir.path());
        let steps = [(1.0, 50), (25.0, 60_000), (100.0, 0)];
        runner
            .start("ramp", plan(&prom, &steps, ""), "ci", "")
            .await
            .unwrap();
        let p = plan(&prom, &[(10.0, 400), (100.0, 0)], "");
        runner
            .start(
                "five",
                {
                    let mut p = p;
                    p.steps[0].weight = 10.0;
                    p
                },
                "ci",
                "",
            )
            .await
            .unwrap();
        wait_step(&runner, "ramp", 2).await;
        runner.pause("five", "ops", "").await.unwrap();
        assert_eq!(split(&authority, "ramp"), "canary=25 stable=75");
        runner.stop().await;
    }
    // A new daemon: the journal alone restores both rollouts where they were.
    let (authority, runner) = open(dir.path());
    let ramp = runner.status("ramp").unwrap();
    assert_eq!((ramp.phase, ramp.step), (Phase::Running, 2));
    assert!(
        ramp.hold_remaining_ms > 50_000,
        "{}",
        ramp.hold_remaining_ms
    );
    assert_eq!(split(&authority, "ramp"), "canary=25 stable=75");
    let five = runner.status("five").unwrap();
    assert_eq!((five.phase, five.step), (Phase::Paused, 1));
    assert_eq!(split(&authority, "five"), "canary=10 stable=90");
    // The resumed tasks take verbs and finish the plans.
    runner.promote("ramp", "ops", "").await.unwrap();
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    runner.resume("five", "ops", "").await.unwrap();
    wait_phase(&runner, "five", &[Phase::Completed]).await;
    runner.stop().await;
}

#[tokio::test]
async fn a_hold_that_ran_out_while_down_advances_after_a_gate_check() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    {
        let (_authority, runner) = open(dir.path());
        let steps = [(1.0, 300), (100.0, 0)];
        runner
            .start("ramp", plan(&prom, &steps, ""), "ci", "")
            .await
            .unwrap();
        runner.stop().await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let queries = fake.queries();
    let (authority, runner) = open(dir.path());
    wait_phase(&runner, "ramp", &[Phase::Completed]).await;
    assert!(
        fake.queries() > queries,
        "a gate was checked before moving on"
    );
    assert_eq!(split(&authority, "ramp"), "canary=100 stable=0");
    runner.stop().await;
}

/// A daemon serving `FLAGS` with its admin API, for the routes, CLI and metrics.
struct Daemon {
    admin_url: String,
    flags: std::path::PathBuf,
    management_port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    async fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, FLAGS).unwrap();
        let mut config: Config = config_for(&[&flags]);
        config.host = [127, 0, 0, 1].into();
        config.port = 0;
        config.management_port = 0;
        config.admin_port = 0;
        config.state_dir = dir.path().join("state");
        let listeners = Listeners::bind(&config).await.unwrap();
        let ports = listeners.ports().unwrap();
        let admin_url = format!("http://127.0.0.1:{}", listeners.admin_port().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(flagd_rs::run(config, listeners, async move {
            let _ = rx.await;
        }));
        let ready = format!("http://127.0.0.1:{}/readyz", ports.management);
        for _ in 0..500 {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
                return Daemon {
                    admin_url,
                    flags: flags.clone(),
                    management_port: ports.management,
                    shutdown: Some(tx),
                    task: Some(task),
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the daemon did not become ready");
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let ended = tokio::time::timeout(Duration::from_secs(20), task).await;
            assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
        }
    }
}

async fn runner_phase(http: &reqwest::Client, url: &str, flag: &str) -> String {
    let status: Value = http
        .get(format!("{url}/v1/rollouts/{flag}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    status["phase"].as_str().unwrap_or_default().to_owned()
}

async fn cli(args: &[&str], url: &str) -> anyhow::Result<String> {
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.extend(["--admin-url".to_owned(), url.to_owned()]);
    rollout::cli::run_args(all).await
}

#[tokio::test]
async fn admin_routes_cli_and_metrics() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let daemon = Daemon::start().await;
    let url = daemon.admin_url.clone();
    let http = reqwest::Client::new();

    let dir = tempfile::tempdir().unwrap();
    let plan_file = dir.path().join("plan.yaml");
    std::fs::write(
        &plan_file,
        format!(
            "flag: ramp\nvariant: canary\nbaseline: stable\nprometheus: {prom}\ninterval: 50ms\nsteps:\n  - {{weight: 1, hold: 1m}}\n  - {{weight: 100}}\ngates:\n  - name: ok\n    query: ok\n    condition: '>= 0.95'\n"
        ),
    )
    .unwrap();
    let plan_path = plan_file.to_str().unwrap();
    let out = cli(
        &["start", "ramp", "--plan", plan_path, "--reason", "go"],
        &url,
    )
    .await
    .unwrap();
    assert!(
        out.starts_with("ramp: running, step 1/2, canary 1% (canary=1 stable=99)"),
        "{out}"
    );
    let err = cli(&["start", "ramp", "--plan", plan_path], &url)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("409 rollout_active"), "{err:#}");
    let err = cli(&["start", "five", "--plan", plan_path], &url)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("422 invalid_plan"), "{err:#}");
    let err = cli(&["pause", "bg"], &url).await.unwrap_err();
    assert!(format!("{err:#}").contains("404 no_rollout"), "{err:#}");

    // The JSON status over HTTP.
    let status: Value = http
        .get(format!("{url}/v1/rollouts/ramp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["phase"], "running");
    assert_eq!(status["weights"], json!({"canary": 1, "stable": 99}));
    let list: Value = http
        .get(format!("{url}/v1/rollouts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["rollouts"].as_array().unwrap().len(), 1);
    let bad = http
        .post(format!("{url}/v1/rollouts/ramp/start"))
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Verbs take a JSON body sent as JSON: a form post or an empty body is refused.
    for (content_type, body, code) in [
        (None, "", 415),
        (Some("application/x-www-form-urlencoded"), "reason=x", 415),
        (Some("text/plain"), "{}", 415),
        (Some("application/json"), "", 400),
    ] {
        let mut request = http
            .post(format!("{url}/v1/rollouts/ramp/pause"))
            .body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), code, "{content_type:?} {body:?}");
    }
    assert_eq!(
        runner_phase(&http, &url, "ramp").await,
        "running",
        "a refused verb changes nothing"
    );
    // A plan may also be sent as YAML text.
    let started = http
        .post(format!("{url}/v1/rollouts/five/start"))
        .json(&json!({"plan": "variant: canary\nbaseline: stable\nsteps: [{weight: 50}]\n"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);

    // Gate results and weights on the management port.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        daemon.management_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    for line in [
        r#"flagd_rs_rollout_phase{feature_flag_key="ramp",phase="running"} 1"#,
        r#"flagd_rs_rollout_step{feature_flag_key="ramp"} 1"#,
        r#"flagd_rs_rollout_weight_percent{feature_flag_key="ramp",variant="canary"} 1"#,
        r#"flagd_rs_rollout_gate_result{feature_flag_key="ramp",gate="ok",result="pass"} 1"#,
        r#"flagd_rs_rollout_gate_value{feature_flag_key="ramp",gate="ok"} 0.99"#,
        r#"flagd_rs_rollout_phase{feature_flag_key="five",phase="completed"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    assert!(
        metrics.contains(
            r#"flagd_rs_rollout_gate_checks_total{feature_flag_key="ramp",gate="ok",result="pass"}"#
        ),
        "{metrics}"
    );

    // Promote to the end and wait for it from the CLI.
    let out = cli(&["promote", "ramp", "-o", "json"], &url).await.unwrap();
    let promoted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(promoted["step"], 2);
    let out = cli(&["status", "ramp", "--wait", "--timeout", "10s"], &url)
        .await
        .unwrap();
    assert!(
        out.starts_with("ramp: completed, step 2/2, canary 100%"),
        "{out}"
    );
    let out = cli(&["status"], &url).await.unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    daemon.stop().await;
}

/// `FLAGS` without the flag `ramp`.
const FLAGS_WITHOUT_RAMP: &str = r#"{
  "flags": {
    "five": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 95], ["canary", 5]]}}
  }
}"#;

/// Splits with a third variant.
const THIRD: &str = r#"{
  "flags": {
    "between": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary", "other": "other"},
                "defaultVariant": "stable",
                "targeting": {"fractional": [["canary", 0], ["other", 10], ["stable", 90]]}},
    "beside": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary", "other": "other"},
               "defaultVariant": "stable",
               "targeting": {"fractional": [["other", 10], ["stable", 90], ["canary", 0]]}},
    "pool2": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary", "holdout": "holdout"},
              "defaultVariant": "stable",
              "targeting": {"fractional": [["holdout", 98], ["stable", 2], ["canary", 0]]}}
  }
}"#;

/// A plan with no gates: `steps` as (weight, hold ms).
fn ungated(steps: &[(f64, u64)]) -> Plan {
    let steps: Vec<String> = steps
        .iter()
        .map(|(w, h)| format!("  - {{weight: {w}, hold: {h}ms}}"))
        .collect();
    let text = format!(
        "variant: canary\nbaseline: stable\nsteps:\n{}\n",
        steps.join("\n")
    );
    rollout::plan::parse(text.as_bytes()).unwrap()
}

async fn admin_flag(http: &reqwest::Client, url: &str, key: &str) -> Value {
    let flags: Value = http
        .get(format!("{url}/v1/flags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    flags["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == key)
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn abort_leaves_no_pinned_override() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let daemon = Daemon::start().await;
    let url = daemon.admin_url.clone();
    let http = reqwest::Client::new();
    let p = plan(&prom, &[(10.0, 60_000), (100.0, 0)], "");
    let started = http
        .post(format!("{url}/v1/rollouts/ramp/start"))
        .json(&json!({"plan": p}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    assert!(
        admin_flag(&http, &url, "ramp")
            .await
            .get("override")
            .is_some()
    );
    cli(&["abort", "ramp"], &url).await.unwrap();
    let flag = admin_flag(&http, &url, "ramp").await;
    assert!(flag.get("override").is_none(), "{flag}");
    // An edit of the file's split is served, since no override pins the old one.
    std::fs::write(
        &daemon.flags,
        FLAGS.replace(
            r#"[["stable", 100], ["canary", 0]]"#,
            r#"[["stable", 50], ["canary", 50]]"#,
        ),
    )
    .unwrap();
    let mut served = Value::Null;
    for _ in 0..400 {
        served = admin_flag(&http, &url, "ramp").await["split"].clone();
        if served
            == json!([{"variant": "stable", "weight": 50}, {"variant": "canary", "weight": 50}])
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        served,
        json!([{"variant": "stable", "weight": 50}, {"variant": "canary", "weight": 50}])
    );
    daemon.stop().await;
}

#[tokio::test]
async fn rollback_restores_exactly_the_override_from_before() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    // Only a default variant: the rollback must not add weights to it.
    let before = OverridePatch {
        default_variant: Some("canary".into()),
        ..OverridePatch::default()
    };
    authority
        .set_override("ramp", before.clone(), "ops", "blue/green", None)
        .unwrap();
    runner
        .start(
            "ramp",
            plan(&prom, &[(10.0, 60_000), (100.0, 0)], ""),
            "ci",
            "",
        )
        .await
        .unwrap();
    assert_eq!(
        authority
            .override_of("ramp")
            .unwrap()
            .default_variant
            .as_deref(),
        Some("canary")
    );
    fake.set("ok", "0.5");
    wait_phase(&runner, "ramp", &[Phase::RolledBack]).await;
    assert_eq!(authority.override_of("ramp"), Some(before));
    runner.stop().await;
}

#[tokio::test]
async fn a_rollout_whose_flag_left_the_file_can_be_aborted() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.99");
    let dir = tempfile::tempdir().unwrap();
    let store = store_with(FLAGS);
    let (authority, runner) = open_over(dir.path(), store.clone());
    let p = plan(&prom, &[(10.0, 60_000), (100.0, 0)], "");
    runner.start("ramp", p.clone(), "ci", "").await.unwrap();
    load(&store, FLAGS_WITHOUT_RAMP);
    let aborted = runner.abort("ramp", "ops", "flag removed").await.unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(authority.override_of("ramp"), None);
    load(&store, FLAGS);
    runner.start("ramp", p.clone(), "ci", "").await.unwrap();
    runner.stop().await;
    drop((authority, runner));

    // Across a restart: the daemon comes back without the flag.
    let (authority, runner) = open_over(dir.path(), store_with(FLAGS_WITHOUT_RAMP));
    let aborted = runner.abort("ramp", "ops", "").await.unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(authority.override_of("ramp"), None);
    load(authority.store(), FLAGS);
    let again = runner.start("ramp", p, "ci", "").await.unwrap();
    assert_eq!(again.phase, Phase::Running);
    runner.stop().await;
}

/// A server that accepts connections and never answers.
async fn silent() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

#[tokio::test]
async fn abort_answers_while_a_gate_check_or_the_sources_keep_it_waiting() {
    let hang = silent().await;
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open(dir.path());
    let p: Plan = rollout::plan::parse(
        format!(
            "variant: canary\nbaseline: stable\ninterval: 50ms\nsteps: [{{weight: 10, hold: 1h}}, {{weight: 100}}]\ngates:\n  - {{name: slow, webhook: '{hang}/hook', timeout: 1h}}\n"
        )
        .as_bytes(),
    )
    .unwrap();
    runner.start("ramp", p.clone(), "ci", "").await.unwrap();
    // Let the first check start (and hang).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = tokio::time::Instant::now();
    let aborted = tokio::time::timeout(Duration::from_secs(20), runner.abort("ramp", "ops", ""))
        .await
        .expect("the abort was answered")
        .unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert!(asked.elapsed() < Duration::from_secs(20));
    assert_eq!(authority.override_of("ramp"), None);

    // A restarted daemon whose second source never loads: the rollout waits, and answers.
    runner.start("ramp", p, "ci", "").await.unwrap();
    runner.stop().await;
    drop((authority, runner));
    let store = Store::new(vec!["mem".into(), "never".into()], LoadOptions::default());
    load(&store, FLAGS);
    let (authority, runner) = open_over(dir.path(), store);
    let err = runner.promote("ramp", "ops", "").await.unwrap_err();
    assert!(matches!(err, RolloutError::NotReady(_)), "{err}");
    let aborted = tokio::time::timeout(Duration::from_secs(20), runner.abort("ramp", "ops", ""))
        .await
        .expect("the abort was answered")
        .unwrap();
    assert_eq!(aborted.phase, Phase::Aborted);
    assert_eq!(authority.override_of("ramp"), None);
    runner.stop().await;
}

#[tokio::test]
async fn a_third_variant_keeps_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open_over(dir.path(), store_with(THIRD));
    // Between canary and stable, its users would move at every step: refused, nothing changes.
    let err = runner
        .start("between", ungated(&[(10.0, 60_000), (100.0, 0)]), "ci", "")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("variant 'other' (weight 10) sits between"),
        "{err}"
    );
    assert_eq!(authority.override_of("between"), None);

    // Beside them, its users stay exactly where they are, step after step.
    let users: Vec<String> = (0..3000).map(|i| format!("user-{i}")).collect();
    let other: Vec<bool> = users
        .iter()
        .map(|u| served_variant(authority.store(), "beside", u) == "other")
        .collect();
    assert!(other.iter().any(|o| *o));
    let steps = [(10.0, 60_000), (35.0, 60_000), (80.0, 60_000), (100.0, 0)];
    runner
        .start("beside", ungated(&steps), "ci", "")
        .await
        .unwrap();
    for step in 1..=steps.len() {
        let status = runner.status("beside").unwrap();
        assert_eq!((status.step, status.weight), (step, steps[step - 1].0));
        for (u, was) in users.iter().zip(&other) {
            let now = served_variant(authority.store(), "beside", u) == "other";
            assert_eq!(now, *was, "{u} at step {step}");
        }
        if step < steps.len() {
            runner.promote("beside", "ci", "").await.unwrap();
        }
    }
    runner.stop().await;
}

#[tokio::test]
async fn a_two_point_pool_steps_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (authority, runner) = open_over(dir.path(), store_with(THIRD));
    let steps = [1.0, 10.0, 25.0, 50.0, 100.0];
    let plan = ungated(&steps.map(|w| (w, 60_000)));
    runner.start("pool2", plan, "ci", "").await.unwrap();
    for (i, want) in steps.iter().enumerate() {
        let status = runner.status("pool2").unwrap();
        let w = |name: &str| status.weights[name].as_f64().unwrap();
        assert_eq!(status.step, i + 1);
        // The canary has exactly the plan's share of the 2 % that canary and stable share.
        assert_eq!(w("canary") * 100.0 / (w("canary") + w("stable")), *want);
        assert_eq!(status.weight, *want);
        // And the holdout keeps its 98 %.
        assert_eq!(
            w("holdout") * 100.0 / (w("holdout") + w("canary") + w("stable")),
            98.0
        );
        if i + 1 < steps.len() {
            runner.promote("pool2", "ci", "").await.unwrap();
        }
    }
    let served = authority.override_of("pool2").unwrap().weights.unwrap();
    assert_eq!(served.iter().map(|(_, w)| *w).sum::<u32>(), 5000);
    runner.stop().await;
}

#[tokio::test]
async fn gate_failure_counts_survive_a_restart() {
    let (fake, prom) = Fake::start().await;
    fake.set("ok", "0.5");
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(&prom, &[(10.0, 600_000), (100.0, 0)], "failureLimit: 2");
    p.interval = Duration::from_millis(400);
    {
        let (_authority, runner) = open(dir.path());
        runner.start("ramp", p, "ci", "").await.unwrap();
        for _ in 0..400 {
            if runner.status("ramp").unwrap().gates[0].failures >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        runner.stop().await;
    }
    let (authority, runner) = open(dir.path());
    let status = runner.status("ramp").unwrap();
    assert_eq!(
        (status.phase, status.gates[0].failures),
        (Phase::Running, 2),
        "{status:?}"
    );
    let done = wait_phase(&runner, "ramp", &[Phase::RolledBack]).await;
    assert!(
        done.reason
            .as_deref()
            .unwrap()
            .contains("(3 failed checks, limit 2)"),
        "{:?}",
        done.reason
    );
    assert_eq!(authority.override_of("ramp"), None);
    runner.stop().await;
}
