//! What the authority's unit tests share (the runner's, and the history's store): a store over
//! one in-memory document, an authority with a journal in a temporary directory, and gates
//! answered from a script.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use futures::future::BoxFuture;

use super::super::gates::{GateContext, GateEvaluator, GateOutcome, Verdict};
use super::super::plan::{self, Gate, Plan};
use super::{RolloutRunner, RolloutStatus};
use crate::authority::Authority;
use crate::authority::rollout::Phase;
use crate::store::{SourceEvent, SourceUpdate, Store};

pub(super) const FLAGS: &str = r#"{"flags": {
  "ramp": {"state": "ENABLED", "variants": {"stable": "s", "canary": "c"}, "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 100], ["canary", 0]]}}
}}"#;

/// A store over `sources` sources, of which the first has loaded `flags`.
pub(crate) fn store(flags: &str, sources: usize) -> Arc<Store> {
    let names = (0..sources).map(|i| format!("mem{i}")).collect();
    let store = Store::new(names, LoadOptions::default());
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

/// Gates that answer what the script says; `None` never answers.
#[derive(Debug)]
pub(super) struct Script {
    pub(super) verdict: Mutex<Option<Verdict>>,
    pub(super) checks: Mutex<u32>,
}

impl Script {
    pub(super) fn new(verdict: Option<Verdict>) -> Arc<Script> {
        Arc::new(Script {
            verdict: Mutex::new(verdict),
            checks: Mutex::new(0),
        })
    }

    pub(super) fn set(&self, verdict: Option<Verdict>) {
        *self.verdict.lock().unwrap() = verdict;
    }

    pub(super) fn checks(&self) -> u32 {
        *self.checks.lock().unwrap()
    }
}

impl GateEvaluator for Script {
    fn check<'a>(&'a self, _: &'a Gate, _: &'a GateContext) -> BoxFuture<'a, GateOutcome> {
        *self.checks.lock().unwrap() += 1;
        let verdict = *self.verdict.lock().unwrap();
        Box::pin(async move {
            match verdict {
                Some(v) => GateOutcome::new(v, Some(1.0), v.as_str()),
                None => std::future::pending().await,
            }
        })
    }
}

/// An authority over `store` journaling in `dir`, and a runner over it with `gates`.
pub(super) fn open(
    dir: &Path,
    store: Arc<Store>,
    gates: Arc<Script>,
) -> (Arc<Authority>, Arc<RolloutRunner>) {
    let authority = Authority::open(dir, store).unwrap();
    let runner = RolloutRunner::spawn(authority.clone(), gates);
    (authority, runner)
}

/// A plan with one webhook gate, checked every second, and `extra` YAML lines.
pub(super) fn plan(steps: &[(f64, u64)], extra: &str) -> Plan {
    let steps: Vec<String> = steps
        .iter()
        .map(|(w, h)| format!("  - {{weight: {w}, hold: {h}s}}"))
        .collect();
    let text = format!(
        "variant: canary\nbaseline: stable\ninterval: 1s\n{extra}\nsteps:\n{}\ngates:\n  - {{name: hook, webhook: 'http://127.0.0.1:1/hook'}}\n",
        steps.join("\n")
    );
    plan::parse(text.as_bytes()).unwrap()
}

/// Lets (paused) time pass until the rollout of `flag` satisfies `done` (bounded).
pub(super) async fn until(
    runner: &RolloutRunner,
    flag: &str,
    done: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    for _ in 0..600 {
        let status = runner.status(flag).unwrap();
        if done(&status) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reached: {:?}", runner.status(flag));
}

/// [`until`] the rollout is in `phase`.
pub(super) async fn until_phase(runner: &RolloutRunner, flag: &str, phase: Phase) -> RolloutStatus {
    until(runner, flag, |s| s.phase == phase).await
}
