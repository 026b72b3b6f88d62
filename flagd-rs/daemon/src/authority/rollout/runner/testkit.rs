//! What the authority's unit tests share (the runner's, and the history's store): a store over
//! one in-memory document, an authority with a journal in a temporary directory, gates
//! answered from a script, and replicas sharing a journal in memory.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use futures::future::BoxFuture;

use super::super::gates::{GateContext, GateEvaluator, GateOutcome, Verdict};
use super::super::plan::{self, Gate, Plan};
use tokio::sync::{mpsc, watch};

use super::{RolloutRunner, RolloutStatus, Term};
use crate::authority::rollout::Phase;
use crate::authority::{
    Authority, Journal, JournalError, Replay, Replicated, RevisionInfo, RevisionKind, StateCache,
    StoreHealth,
};
use crate::store::{SourceEvent, SourceUpdate, Store};

pub(crate) const FLAGS: &str = r#"{"flags": {
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

/// A journal in memory that several authorities share, as a fleet's replicas share a store:
/// each append reaches the others' feeds, and a rollout record written under a fence is refused
/// (`NotLeader`) unless the fence is the fleet's leader term.
#[derive(Debug, Default)]
pub(crate) struct Fleet {
    pub(crate) log: Mutex<Vec<RevisionInfo>>,
    feeds: Mutex<Vec<mpsc::UnboundedSender<Replicated>>>,
    /// The term of the replica holding the leadership.
    pub(super) leader: Mutex<Option<Term>>,
}

impl Fleet {
    /// A new member's journal (unfenced): what the others append reaches its feed.
    pub(crate) fn member(self: &Arc<Fleet>) -> Box<dyn Journal> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.feeds.lock().unwrap().push(tx);
        Box::new(Member {
            fleet: Arc::clone(self),
            fence: Arc::new(Mutex::new(None)),
            feed: Mutex::new(Some(rx)),
        })
    }

    /// Appends `record` without telling any replica (a write whose news is late).
    pub(super) fn append_unannounced(&self, record: RevisionInfo) {
        self.log.lock().unwrap().push(record);
    }

    /// The number of revisions stored.
    pub(super) fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

#[derive(Debug)]
struct Member {
    fleet: Arc<Fleet>,
    fence: Arc<Mutex<Option<Term>>>,
    feed: Mutex<Option<mpsc::UnboundedReceiver<Replicated>>>,
}

impl Journal for Member {
    fn head(&self) -> u64 {
        self.fleet
            .log
            .lock()
            .unwrap()
            .last()
            .map_or(0, |r| r.revision)
    }

    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
        let mut log = self.fleet.log.lock().unwrap();
        if record.kind == RevisionKind::Rollout
            && let Some(fence) = *self.fence.lock().unwrap()
            && *self.fleet.leader.lock().unwrap() != Some(fence)
        {
            return Err(JournalError::NotLeader);
        }
        let actual = log.last().map_or(0, |r| r.revision);
        if actual != head {
            return Err(JournalError::Conflict {
                expected: head,
                head: actual,
            });
        }
        log.push(record.clone());
        for feed in self.fleet.feeds.lock().unwrap().iter() {
            let _ = feed.send(Replicated::Appended(vec![record.clone()]));
        }
        Ok(record.revision)
    }

    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError> {
        let log = self.fleet.log.lock().unwrap();
        Ok(log
            .iter()
            .filter(|r| r.revision >= revision)
            .cloned()
            .collect())
    }

    fn replicated(&self) -> Option<mpsc::UnboundedReceiver<Replicated>> {
        self.feed.lock().unwrap().take()
    }

    fn health(&self) -> Option<StoreHealth> {
        Some(StoreHealth {
            connected: true,
            confirmed: None,
        })
    }
}

/// One replica of a [`Fleet`]: its authority (following the others' appends), its runner led
/// by `leadership`, and the fence its rollout records are written under.
pub(super) struct Replica {
    pub(super) runner: Arc<RolloutRunner>,
    pub(super) leadership: watch::Sender<Option<Term>>,
    pub(super) fence: Arc<Mutex<Option<Term>>>,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// A replica of `fleet` serving `FLAGS`, not the controller, with gates answering `gates`.
    pub(super) fn join(fleet: &Arc<Fleet>, gates: Arc<Script>) -> Replica {
        let (tx, rx) = mpsc::unbounded_channel();
        fleet.feeds.lock().unwrap().push(tx);
        let fence = Arc::new(Mutex::new(None));
        let member = Member {
            fleet: fleet.clone(),
            fence: fence.clone(),
            feed: Mutex::new(Some(rx)),
        };
        let dir = tempfile::tempdir().unwrap();
        let records = fleet.log.lock().unwrap().clone();
        let authority = Authority::with_shared_journal(
            Box::new(member),
            Replay {
                snapshot: None,
                records,
            },
            store(FLAGS, 1),
            StateCache::in_dir(dir.path()),
        );
        authority.follow();
        let (leadership, input) = watch::channel(None);
        let runner = RolloutRunner::spawn_led(authority.clone(), gates, input);
        Replica {
            runner,
            leadership,
            fence,
            _dir: dir,
        }
    }

    /// Makes this replica the controller in `term`, as an election won would.
    pub(super) fn lead(&self, fleet: &Fleet, term: Term) {
        *fleet.leader.lock().unwrap() = Some(term);
        *self.fence.lock().unwrap() = Some(term);
        self.leadership.send_replace(Some(term));
    }

    /// Waits (bounded) until the runner drives rollouts in `term` (`None`: in none).
    pub(super) async fn until_active(&self, term: Option<Term>) {
        let mut active = self.runner.watch_active();
        tokio::time::timeout(Duration::from_secs(60), active.wait_for(|t| *t == term))
            .await
            .expect("the runner acts on its leadership")
            .unwrap();
    }
}
