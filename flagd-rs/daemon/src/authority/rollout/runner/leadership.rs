//! Whether this runner drives rollouts. Without a shared store it always does. In a fleet only
//! the rollout controller does: the runner follows a leadership input (`Some(term)` while this
//! replica is the controller), resumes every active rollout from the journal when it takes
//! over, stops its tasks at once when it steps down, and meanwhile shows the rollouts as the
//! journal has them.
//!
//! A term is a number that changes with every election this replica wins (in etcd: the
//! controller key's create revision, the fence its rollout records are written under). Records
//! are written under the [`Gate`]'s read guard and the term changes under its write guard, so
//! once the runner stepped down no record of that term can land from this process, and a new
//! term's tasks never overlap an earlier term's writes: one writer per rollout.

use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use super::{RolloutError, RolloutRunner};

/// A leadership term (see the module documentation). A runner without a shared store drives
/// rollouts in term [`ALWAYS`].
pub type Term = i64;

/// The term of a runner that is always the controller (no shared store).
pub const ALWAYS: Term = 0;

/// The term records are written in.
#[derive(Debug, Default)]
pub(super) struct Gate(RwLock<Option<Term>>);

impl Gate {
    /// Runs `write` (which records a rollout change) if the runner still drives rollouts in
    /// `term`, holding the term until `write` returns. Blocks: call it off the async workers.
    pub(super) fn write_as<T>(
        &self,
        term: Term,
        write: impl FnOnce() -> Result<T, RolloutError>,
    ) -> Result<T, RolloutError> {
        let held = self.0.read().unwrap_or_else(PoisonError::into_inner);
        if *held != Some(term) {
            return Err(RolloutError::NotController);
        }
        write()
    }

    /// Changes the term once every record being written in the current one is written.
    /// Blocks: call it off the async workers.
    pub(super) fn set(&self, term: Option<Term>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = term;
    }
}

/// One term's rollout tasks and the signal that stops them.
#[derive(Debug)]
pub(super) struct Crew {
    pub(super) stop: watch::Sender<bool>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

impl Crew {
    pub(super) fn new() -> Crew {
        Crew {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

/// The runner's leadership state.
#[derive(Debug)]
pub(super) struct Leadership {
    /// The term records are written in.
    pub(super) gate: Arc<Gate>,
    /// The current term's tasks.
    pub(super) crew: std::sync::Mutex<Crew>,
    /// The term the runner drives rollouts in, once it has acted on a change.
    pub(super) active: watch::Sender<Option<Term>>,
    /// The last term in which the journal refused a rollout record because another replica
    /// is the controller.
    pub(super) deposed: watch::Sender<Option<Term>>,
    /// Wakes the task that follows the leadership input.
    pub(super) wake: Notify,
    /// For a runner that is always the controller: its own leadership input.
    pub(super) always: Option<watch::Sender<Option<Term>>>,
}

impl Leadership {
    pub(super) fn new(always: bool) -> Leadership {
        Leadership {
            gate: Arc::new(Gate::default()),
            crew: std::sync::Mutex::new(Crew::new()),
            active: watch::channel(None).0,
            deposed: watch::channel(None).0,
            wake: Notify::new(),
            always: always.then(|| watch::channel(Some(ALWAYS)).0),
        }
    }

    pub(super) fn crew(&self) -> std::sync::MutexGuard<'_, Crew> {
        self.crew.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What woke the task that follows the leadership input.
enum Wake {
    /// The runner stops for good.
    Stop,
    /// The leadership input changed (or its sender is gone: `false`).
    Leadership(bool),
    /// The authority's head moved.
    Head,
    /// The runner itself asked (a record was refused as not the controller's).
    Asked,
}

impl RolloutRunner {
    /// The term the runner drives rollouts in now (`None`: another replica is the controller).
    pub fn active_term(&self) -> Option<Term> {
        *self.lead.active.borrow()
    }

    /// Whether this runner drives rollouts (it is the controller, or there is no shared store).
    pub fn is_controller(&self) -> bool {
        self.active_term().is_some()
    }

    /// Watches the term the runner drives rollouts in; it changes once the runner has acted on
    /// a leadership change (resumed every rollout, or stopped every task).
    pub fn watch_active(&self) -> watch::Receiver<Option<Term>> {
        self.lead.active.subscribe()
    }

    /// Watches the terms in which the journal refused a rollout record because another replica
    /// is the controller: the runner has stepped down by itself, and the controller must too.
    pub fn watch_deposed(&self) -> watch::Receiver<Option<Term>> {
        self.lead.deposed.subscribe()
    }

    /// The journal refused a record of `term` because another replica leads: steps down.
    pub(super) fn deposed(&self, term: Term) {
        if self.active_term() == Some(term) && *self.lead.deposed.borrow() != Some(term) {
            tracing::warn!(
                term,
                "the journal refused a rollout record: another replica is the rollout controller; stopping every rollout task here"
            );
            self.lead.deposed.send_replace(Some(term));
            self.lead.wake.notify_one();
        }
    }

    /// Takes over as the controller in `term` when the runner is built (nothing runs yet).
    pub(super) fn take_over_now(self: &Arc<Self>, term: Term) {
        self.lead.gate.set(Some(term));
        *self.lead.crew() = Crew::new();
        self.resume_all(term);
        self.lead.active.send_replace(Some(term));
    }

    /// Takes over as the controller in `term`: every rollout the journal holds as running or
    /// paused resumes, as after a restart.
    async fn take_over(self: &Arc<Self>, term: Term) {
        let _serial = self.start_lock.lock().await;
        if *self.stop_tx.borrow() {
            return;
        }
        let gate = self.lead.gate.clone();
        let _ = tokio::task::spawn_blocking(move || gate.set(Some(term))).await;
        *self.lead.crew() = Crew::new();
        tracing::info!(
            term,
            "this replica is the rollout controller: resuming rollouts"
        );
        self.resume_all(term);
        self.lead.active.send_replace(Some(term));
    }

    /// Stops driving rollouts: every task stops at once (a record being written when it stops
    /// is the last of its term), and the rollouts are shown as the journal has them.
    async fn step_down(&self) {
        let tasks = {
            let mut crew = self.lead.crew();
            crew.stop.send_replace(true);
            std::mem::take(&mut crew.tasks)
        };
        for task in &tasks {
            task.abort();
        }
        let _serial = self.start_lock.lock().await;
        let gate = self.lead.gate.clone();
        let _ = tokio::task::spawn_blocking(move || gate.set(None)).await;
        self.show_journal();
        if let Some(term) = self.lead.active.send_replace(None) {
            tracing::info!(
                term,
                "this replica is not the rollout controller: its rollout tasks stopped"
            );
        }
    }

    /// Follows `leadership` until the runner stops: takes over when it says `Some(term)` (for
    /// a term the journal has not refused), steps down when it says otherwise, and while not
    /// the controller shows the journal's rollouts again after every revision.
    pub(super) async fn follow_leadership(
        self: Arc<Self>,
        mut leadership: watch::Receiver<Option<Term>>,
    ) {
        let mut head = self.authority.watch_head();
        let mut stopped = self.stop_tx.subscribe();
        let mut input = true;
        let mut wake = Wake::Asked;
        loop {
            let said = if input {
                *leadership.borrow_and_update()
            } else {
                None
            };
            let wanted = said.filter(|t| *self.lead.deposed.borrow() != Some(*t));
            let acting = self.active_term();
            if wanted != acting {
                if acting.is_some() {
                    self.step_down().await;
                }
                if let Some(term) = wanted {
                    self.take_over(term).await;
                }
            } else if acting.is_none() && matches!(wake, Wake::Head) {
                self.show_journal();
            }
            wake = tokio::select! {
                biased;
                _ = stopped.wait_for(|s| *s) => Wake::Stop,
                changed = leadership.changed(), if input => Wake::Leadership(changed.is_ok()),
                () = self.lead.wake.notified() => Wake::Asked,
                changed = head.changed() => match changed {
                    Ok(()) => Wake::Head,
                    Err(_) => Wake::Stop,
                },
            };
            match wake {
                Wake::Stop => break,
                Wake::Leadership(false) => input = false,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::super::gates::Verdict;
    use super::super::super::{Event, Phase, now_ms};
    use super::super::testkit::{Fleet, Replica, Script, plan};
    use super::super::{RolloutError, RolloutRunner, RolloutStatus};
    use crate::authority::{RevisionInfo, RevisionKind};

    /// Lets (paused) time pass until `runner` shows a rollout of `flag` satisfying `done`.
    async fn seen(
        runner: &RolloutRunner,
        flag: &str,
        done: impl Fn(&RolloutStatus) -> bool,
    ) -> RolloutStatus {
        for _ in 0..36_000 {
            if let Ok(status) = runner.status(flag)
                && done(&status)
            {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never seen: {:?}", runner.status(flag));
    }

    /// The step records of rollout `id` in the fleet's journal, by step number.
    fn steps(fleet: &Fleet, id: u64) -> Vec<usize> {
        fleet
            .log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| serde_json::from_value::<Event>(r.event.clone()?).ok())
            .filter_map(|e| match e {
                Event::Step { rollout, step, .. } if rollout == id => Some(step),
                _ => None,
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_that_is_not_the_controller_shows_the_journal_and_takes_over_where_it_stands()
    {
        let fleet = Arc::new(Fleet::default());
        let a = Replica::join(&fleet, Script::new(Some(Verdict::Pass)));
        let b = Replica::join(&fleet, Script::new(Some(Verdict::Pass)));
        a.lead(&fleet, 1);
        a.until_active(Some(1)).await;
        assert!(!b.runner.is_controller());
        let p = plan(&[(10.0, 600), (50.0, 600), (100.0, 0)], "");
        let started = a.runner.start("ramp", p, "ci", "").await.unwrap();
        // The other replica shows it from the journal, and refuses verbs.
        let shown = seen(&b.runner, "ramp", |s| s.id == started.id).await;
        assert_eq!((shown.phase, shown.step), (Phase::Running, 1));
        let err = b.runner.pause("ramp", "ops", "").await.unwrap_err();
        assert!(matches!(err, RolloutError::NotController), "{err}");
        let err = b
            .runner
            .start("other", plan(&[(10.0, 1)], ""), "ci", "")
            .await
            .unwrap_err();
        assert!(matches!(err, RolloutError::NotController), "{err}");
        // The controller steps down: its task stops and it writes nothing more.
        a.leadership.send_replace(None);
        a.until_active(None).await;
        let written = fleet.len();
        tokio::time::sleep(Duration::from_secs(1200)).await;
        assert_eq!(fleet.len(), written, "a runner that stepped down wrote");
        assert_eq!(a.runner.status("ramp").unwrap().step, 1);
        // The other one takes over at the same step, with the hold left as of the journal
        // (wall-clock time hardly moves while tokio's is paused).
        b.lead(&fleet, 2);
        b.until_active(Some(2)).await;
        let resumed = b.runner.status("ramp").unwrap();
        assert_eq!((resumed.phase, resumed.step), (Phase::Running, 1));
        assert!(resumed.hold_remaining_ms > 500_000, "{resumed:?}");
        let done = seen(&b.runner, "ramp", |s| s.phase == Phase::Completed).await;
        assert_eq!(done.step, 3);
        assert_eq!(steps(&fleet, started.id), vec![2, 3]);
        // The replica that stepped down shows the end from the journal.
        seen(&a.runner, "ramp", |s| s.phase == Phase::Completed).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_refused_by_the_fence_steps_the_runner_down_for_that_term() {
        let fleet = Arc::new(Fleet::default());
        let a = Replica::join(&fleet, Script::new(Some(Verdict::Pass)));
        a.lead(&fleet, 1);
        a.until_active(Some(1)).await;
        let p = plan(&[(10.0, 5), (50.0, 5), (100.0, 0)], "");
        let started = a.runner.start("ramp", p, "ci", "").await.unwrap();
        // Another replica was elected; this one has not heard of it.
        *fleet.leader.lock().unwrap() = Some(2);
        let written = fleet.len();
        let mut deposed = a.runner.watch_deposed();
        tokio::time::timeout(Duration::from_secs(60), deposed.wait_for(|t| *t == Some(1)))
            .await
            .unwrap()
            .unwrap();
        a.until_active(None).await;
        assert_eq!(fleet.len(), written, "the fenced record was refused");
        // Its leadership input still says term 1: it does not take that term up again.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!a.runner.is_controller());
        let err = a.runner.promote("ramp", "ops", "").await.unwrap_err();
        assert!(matches!(err, RolloutError::NotController), "{err}");
        // Elected again, it goes on from the journal.
        a.lead(&fleet, 3);
        a.until_active(Some(3)).await;
        seen(&a.runner, "ramp", |s| s.phase == Phase::Completed).await;
        assert_eq!(steps(&fleet, started.id), vec![2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_record_that_clashes_with_one_made_elsewhere_goes_on_from_the_journal() {
        let fleet = Arc::new(Fleet::default());
        let a = Replica::join(&fleet, Script::new(Some(Verdict::Pass)));
        a.lead(&fleet, 1);
        a.until_active(Some(1)).await;
        let p = plan(&[(10.0, 3600), (100.0, 0)], "");
        let started = a.runner.start("ramp", p, "ci", "").await.unwrap();
        // A pause this replica has not heard of yet.
        let pause = Event::Pause {
            rollout: started.id,
            at_ms: now_ms(),
            remaining_ms: 1_000_000,
            reason: "rollout paused by ops".into(),
        };
        fleet.append_unannounced(RevisionInfo {
            revision: started.revision + 1,
            time: "2025-01-01T00:00:00Z".into(),
            actor: "ops".into(),
            reason: "rollout paused by ops".into(),
            kind: RevisionKind::Rollout,
            flag: Some("ramp".into()),
            changes: Vec::new(),
            restored: None,
            event: Some(serde_json::to_value(&pause).unwrap()),
        });
        let err = a.runner.promote("ramp", "ci", "").await.unwrap_err();
        assert!(
            matches!(
                err,
                RolloutError::Authority(crate::authority::AuthorityError::Conflict { .. })
            ),
            "{err}"
        );
        let paused = seen(&a.runner, "ramp", |s| s.phase == Phase::Paused).await;
        assert_eq!((paused.step, paused.hold_remaining_ms), (1, 1_000_000));
        assert!(a.runner.is_controller());
        // The task was started again from the journal: it answers verbs.
        let resumed = a.runner.resume("ramp", "ops", "").await.unwrap();
        assert_eq!(resumed.phase, Phase::Running);
        assert!(steps(&fleet, started.id).is_empty());
    }
}
