//! The rollout runner: one task per active rollout holds its steps, checks its gates every
//! interval and records every change through the authority; verbs from the admin API reach the
//! task over a channel, so a rollout's changes are always made in order by one writer.
//!
//! Module map: this file is the registry the API talks to (each flag's latest rollout, starting
//! rollouts, sending verbs, stopping); [`driver`] is one rollout's state machine; [`hold`] holds
//! a step and checks its gates; [`status`] has the answers (errors and statuses).

mod driver;
mod hold;
mod status;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::gates::GateEvaluator;
use super::plan::{CheckedPlan, Plan};
use super::split::{self, Layout, percent_text, share, split_weights, weights_at};
use super::{Event, Prior, RolloutState, now_ms, replay};
use crate::authority::{
    Authority, AuthorityError, JournalError, RevisionInfo, RolloutBasis, RolloutChange,
    RolloutStart,
};
use driver::Driver;
use hold::GateBook;
pub use status::{Counts, GateStatus, RolloutError, RolloutStatus};

/// The actor recorded for changes the runner makes by itself.
pub const RUNNER_ACTOR: &str = "rollout";

/// How long a verb waits, in all, to reach the rollout's task and for its answer.
const VERB_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`RolloutRunner::stop`] waits for tasks before cancelling them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often a resumed rollout checks whether the store has loaded its flags.
const READY_POLL: Duration = Duration::from_millis(50);

/// How many verbs may wait for one rollout's task.
const INBOX: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Pause,
    Resume,
    Promote,
    Abort,
}

#[derive(Debug)]
struct Command {
    verb: Verb,
    actor: String,
    reason: String,
    reply: oneshot::Sender<Result<RolloutStatus, RolloutError>>,
}

/// One flag's latest rollout.
#[derive(Debug)]
struct Slot {
    state: RolloutState,
    gates: Vec<GateStatus>,
    problem: Option<String>,
    /// The task's inbox; `None` once the rollout is over, or when it cannot go on (then only
    /// an abort is accepted, made by the runner itself).
    commands: Option<mpsc::Sender<Command>>,
}

impl Slot {
    fn status(&self, now: u64) -> RolloutStatus {
        RolloutStatus::of(&self.state, &self.gates, self.problem.as_deref(), now)
    }
}

/// Runs every active rollout, and answers the verbs.
#[derive(Debug)]
pub struct RolloutRunner {
    authority: Arc<Authority>,
    gates: Arc<dyn GateEvaluator>,
    /// Each flag's latest rollout. Written by the rollout's task (and by `start` and the abort
    /// of a rollout that cannot go on), read by the API and the metrics collector.
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Serializes starts (and aborts made by the runner), so that two of one flag cannot both
    /// find it free.
    start_lock: tokio::sync::Mutex<()>,
    stop_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Runs `f` (which blocks on the journal) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RolloutError> + Send + 'static,
) -> Result<T, RolloutError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(RolloutError::Stopped))
}

fn encode_error(e: serde_json::Error) -> RolloutError {
    RolloutError::Authority(AuthorityError::Journal(JournalError::Io(
        std::io::Error::other(e),
    )))
}

/// Records one rollout event through the authority, changing the override as `change` says.
async fn record(
    authority: &Arc<Authority>,
    flag: &str,
    event: &Event,
    change: RolloutChange,
    actor: &str,
    reason: String,
) -> Result<RevisionInfo, RolloutError> {
    let value = serde_json::to_value(event).map_err(encode_error)?;
    let authority = authority.clone();
    let (flag, actor) = (flag.to_owned(), actor.to_owned());
    blocking(move || {
        authority
            .append_rollout(&flag, value, change, &actor, &reason)
            .map_err(RolloutError::from)
    })
    .await
}

/// `text`, followed by `: note` when a note is given.
fn with_note(text: String, note: &str) -> String {
    if note.is_empty() {
        text
    } else {
        format!("{text}: {note}")
    }
}

/// The start record of a rollout of `flag` by `checked`, from the flag as served now: checks
/// that the split can carry the plan and lays the steps over it.
fn start_record(
    flag: &str,
    checked: &CheckedPlan,
    basis: RolloutBasis,
    note: &str,
) -> Result<(RolloutStart, Event), RolloutError> {
    let plan = &checked.plan;
    let split = basis.split.ok_or_else(|| RolloutError::NoSplit {
        flag: flag.to_owned(),
        detail: "its targeting has no single fractional split".into(),
    })?;
    let before = split_weights(flag, &split)?;
    let steps: Vec<f64> = plan.steps.iter().map(|s| s.weight).collect();
    let layout = split::layout(
        flag,
        &before,
        &plan.variant,
        &plan.baseline,
        &steps,
        checked.scale,
    )?;
    let current = share(&before, &plan.variant, &plan.baseline);
    let first = steps.first().copied().unwrap_or(0.0);
    // A hair of tolerance: a 1/3 split reads as 33.33...% and may start at 33.33 (its users
    // all stay: a step never gives the variant fewer than it has).
    if first + 0.005 < current {
        return Err(RolloutError::NotMonotonic { first, current });
    }
    let weights = weights_at(&before, &plan.variant, &plan.baseline, layout, first);
    let hold = plan.steps.first().map_or(Duration::ZERO, |s| s.hold);
    let event = Event::Start {
        plan: Box::new(plan.clone()),
        before,
        prior: Some(Prior {
            patch: basis.current,
        }),
        layout: Some(layout),
        weights: weights.clone(),
        step: 1,
        weight: first,
        at_ms: now_ms(),
        hold_ms: u64::try_from(hold.as_millis()).unwrap_or(u64::MAX),
    };
    let mut reason = format!(
        "rollout started: step 1/{}, {} {}%",
        steps.len(),
        plan.variant,
        percent_text(share(&weights, &plan.variant, &plan.baseline))
    );
    if !note.is_empty() {
        reason.push_str(&format!(" ({note})"));
    }
    let value = serde_json::to_value(&event).map_err(encode_error)?;
    Ok((
        RolloutStart {
            event: value,
            weights,
            reason,
        },
        event,
    ))
}

/// Whether a rollout the journal left running or paused can go on: its plan must still be
/// valid and its steps must fit the split it started from.
fn resumable(state: &RolloutState) -> Result<(CheckedPlan, Layout), RolloutError> {
    let checked = state.plan.check(&state.flag)?;
    let layout = state.layout_or_compute()?;
    Ok((checked, layout))
}

impl RolloutRunner {
    /// A runner over `authority`, checking gates with `gates`. Replays the rollout records and
    /// resumes every rollout that was running or paused (each waits until the store has loaded
    /// its flags before it changes the split). A rollout that cannot go on (its plan no longer
    /// validates) is listed with the problem and can be aborted. Must be called inside a tokio
    /// runtime.
    pub fn spawn(authority: Arc<Authority>, gates: Arc<dyn GateEvaluator>) -> Arc<RolloutRunner> {
        let (stop_tx, _) = watch::channel(false);
        let runner = Arc::new(RolloutRunner {
            authority,
            gates,
            slots: Mutex::new(BTreeMap::new()),
            start_lock: tokio::sync::Mutex::new(()),
            stop_tx,
            tasks: Mutex::new(Vec::new()),
        });
        let states = replay(&runner.authority.rollout_records());
        for (flag, state) in states {
            let mut slot = Slot {
                gates: GateBook::new(state.plan.check(&flag).ok().as_ref(), &state.counters)
                    .statuses,
                state,
                problem: None,
                commands: None,
            };
            if slot.state.phase.is_terminal() {
                runner.lock().insert(flag, slot);
                continue;
            }
            match resumable(&slot.state) {
                Err(e) => {
                    tracing::error!(flag, error = %e, "cannot resume a rollout; it can be aborted");
                    slot.problem = Some(format!("cannot resume: {e}"));
                    runner.lock().insert(flag, slot);
                }
                Ok((checked, layout)) => {
                    tracing::info!(
                        flag,
                        rollout = slot.state.id,
                        step = slot.state.step,
                        phase = slot.state.phase.as_str(),
                        "resuming rollout"
                    );
                    let state = slot.state.clone();
                    let (tx, rx) = mpsc::channel(INBOX);
                    slot.commands = Some(tx);
                    runner.lock().insert(flag.clone(), slot);
                    runner.launch(flag, checked, state, layout, rx, true);
                }
            }
        }
        runner
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn launch(
        self: &Arc<Self>,
        flag: String,
        checked: CheckedPlan,
        state: RolloutState,
        layout: Layout,
        rx: mpsc::Receiver<Command>,
        wait_ready: bool,
    ) {
        let driver = Driver::new(self.clone(), flag, checked, state, layout);
        let stop = self.stop_tx.subscribe();
        let task = tokio::spawn(driver.run(rx, stop, wait_ready));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Shows a rollout's task's state in its slot (unless a newer rollout took the slot).
    fn publish(
        &self,
        flag: &str,
        state: &RolloutState,
        gates: &[GateStatus],
        problem: Option<String>,
    ) {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(flag)
            && slot.state.id == state.id
        {
            slot.state = state.clone();
            slot.gates = gates.to_vec();
            slot.problem = problem;
            if state.phase.is_terminal() {
                slot.commands = None;
            }
        }
    }

    /// The authority rollouts are recorded in.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// Starts rolling out flag `flag` by `plan`: checks the plan against the flag as served,
    /// records the start (with the flag's whole override as it is, to be put back if the
    /// rollout is aborted or rolled back) and the first step's weights in one revision, and
    /// begins its first hold.
    pub async fn start(
        self: &Arc<Self>,
        flag: &str,
        plan: Plan,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        if *self.stop_tx.borrow() {
            return Err(RolloutError::Stopped);
        }
        let _serial = self.start_lock.lock().await;
        if let Some(slot) = self.lock().get(flag)
            && !slot.state.phase.is_terminal()
        {
            return Err(RolloutError::Active {
                flag: flag.to_owned(),
                phase: slot.state.phase,
            });
        }
        let checked = plan.check(flag)?;
        let authority = self.authority.clone();
        let (key, who, note) = (flag.to_owned(), actor.to_owned(), reason.to_owned());
        let for_record = checked.clone();
        let (info, event) = blocking(move || {
            authority.start_rollout(&key, &who, |basis| {
                start_record(&key, &for_record, basis, &note)
            })
        })
        .await?;
        let Some(state) = RolloutState::started(info.revision, flag, &event) else {
            return Err(RolloutError::Stopped);
        };
        let layout = state.layout.unwrap_or(Layout {
            multiplier: 1,
            pool: checked.scale,
        });
        tracing::info!(flag, rollout = state.id, variant = %checked.plan.variant, "rollout started");
        let (tx, rx) = mpsc::channel(INBOX);
        let slot = Slot {
            gates: GateBook::new(Some(&checked), &state.counters).statuses,
            state: state.clone(),
            problem: None,
            commands: Some(tx),
        };
        let status = slot.status(now_ms());
        self.lock().insert(flag.to_owned(), slot);
        self.launch(flag.to_owned(), checked, state, layout, rx, false);
        Ok(status)
    }

    /// The status of flag `flag`'s latest rollout.
    pub fn status(&self, flag: &str) -> Result<RolloutStatus, RolloutError> {
        self.lock()
            .get(flag)
            .map(|s| s.status(now_ms()))
            .ok_or_else(|| RolloutError::NoRollout(flag.to_owned()))
    }

    /// Every flag's latest rollout.
    pub fn list(&self) -> Vec<RolloutStatus> {
        let now = now_ms();
        self.lock().values().map(|s| s.status(now)).collect()
    }

    /// Pauses the rollout: the hold stops counting and no gate is checked until it resumes.
    pub async fn pause(
        &self,
        flag: &str,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        self.command(flag, Verb::Pause, actor, reason).await
    }

    /// Resumes a paused rollout where its hold stopped (gate counters start over). A split
    /// changed outside the rollout is accepted: the next steps start from it.
    pub async fn resume(
        &self,
        flag: &str,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        self.command(flag, Verb::Resume, actor, reason).await
    }

    /// Skips the rest of the current hold: the next step now (or completion after the last).
    pub async fn promote(
        &self,
        flag: &str,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        self.command(flag, Verb::Promote, actor, reason).await
    }

    /// Ends the rollout now, putting back the flag's override as it was before the rollout
    /// (none, if it had none). Works for a rollout that cannot go on, too.
    pub async fn abort(
        &self,
        flag: &str,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        self.command(flag, Verb::Abort, actor, reason).await
    }

    async fn command(
        &self,
        flag: &str,
        verb: Verb,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        let sender = {
            let slots = self.lock();
            let Some(slot) = slots.get(flag) else {
                return Err(RolloutError::NoRollout(flag.to_owned()));
            };
            if slot.state.phase.is_terminal() {
                return Err(self.gone(&slots, flag));
            }
            match (&slot.commands, verb) {
                (Some(tx), _) => Some(tx.clone()),
                (None, Verb::Abort) => None,
                (None, _) => {
                    return Err(RolloutError::Unresumable {
                        flag: flag.to_owned(),
                        detail: slot.problem.clone().unwrap_or_default(),
                    });
                }
            }
        };
        let Some(sender) = sender else {
            return self.abort_stranded(flag, actor, reason).await;
        };
        let (reply, answer) = oneshot::channel();
        let command = Command {
            verb,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            reply,
        };
        // One limit for queueing and answering; a verb given up on is dropped by the task.
        let exchange = async move {
            sender.send(command).await.ok()?;
            answer.await.ok()
        };
        match tokio::time::timeout(VERB_TIMEOUT, exchange).await {
            Ok(Some(result)) => result,
            Ok(None) => Err(self.gone(&self.lock(), flag)),
            Err(_) => Err(RolloutError::Busy(flag.to_owned())),
        }
    }

    /// Why a verb found no task to answer it.
    fn gone(&self, slots: &BTreeMap<String, Slot>, flag: &str) -> RolloutError {
        match slots.get(flag) {
            Some(s) if s.state.phase.is_terminal() => RolloutError::Finished {
                flag: flag.to_owned(),
                phase: s.state.phase,
            },
            Some(_) => RolloutError::Stopped,
            None => RolloutError::NoRollout(flag.to_owned()),
        }
    }

    /// Aborts a rollout that has no task (it could not be resumed): records the abort and puts
    /// back the override from before it, whatever the flag looks like now.
    async fn abort_stranded(
        &self,
        flag: &str,
        actor: &str,
        reason: &str,
    ) -> Result<RolloutStatus, RolloutError> {
        let _serial = self.start_lock.lock().await;
        let state = {
            let slots = self.lock();
            match slots.get(flag) {
                Some(s) if !s.state.phase.is_terminal() && s.commands.is_none() => s.state.clone(),
                Some(_) => return Err(self.gone(&slots, flag)),
                None => return Err(RolloutError::NoRollout(flag.to_owned())),
            }
        };
        let text = with_note(format!("rollout aborted by {actor}"), reason);
        let event = Event::Abort {
            rollout: state.id,
            at_ms: now_ms(),
            reason: text.clone(),
        };
        let info = record(
            &self.authority,
            flag,
            &event,
            state.restore_change(),
            actor,
            text,
        )
        .await?;
        let mut slots = self.lock();
        let slot = slots
            .get_mut(flag)
            .filter(|s| s.state.id == state.id)
            .ok_or_else(|| RolloutError::NoRollout(flag.to_owned()))?;
        slot.state.apply(info.revision, &event);
        slot.problem = None;
        tracing::info!(
            flag,
            rollout = state.id,
            "rollout that could not go on was aborted"
        );
        Ok(slot.status(now_ms()))
    }

    /// Stops every rollout task (their state stays in the journal, to be resumed by the next
    /// runner). Waits briefly for tasks busy recording a change.
    pub async fn stop(&self) {
        let _ = self.stop_tx.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for mut task in tasks {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }

    /// Every flag's latest rollout with its gate results, for the metrics collector.
    pub(crate) fn snapshot(&self) -> Vec<(RolloutState, Vec<GateStatus>)> {
        self.lock()
            .values()
            .map(|s| (s.state.clone(), s.gates.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Prior;
    use super::super::gates::Verdict;
    use super::testkit::{FLAGS, Script, open, plan, store};
    use super::*;
    use flagd_evaluator::OverridePatch;

    /// Journals a running rollout of `ramp` whose plan no longer validates (an interval below
    /// today's minimum), over an override that had only a default variant.
    fn strand(authority: &Authority) {
        let prior = OverridePatch {
            default_variant: Some("canary".into()),
            ..OverridePatch::default()
        };
        authority
            .set_override("ramp", prior.clone(), "ops", "", None)
            .unwrap();
        let mut p = plan(&[(10.0, 3600), (100.0, 0)], "");
        p.interval = Duration::from_millis(10);
        let weights = vec![("stable".to_owned(), 90), ("canary".to_owned(), 10)];
        let event = Event::Start {
            plan: Box::new(p),
            before: vec![("stable".to_owned(), 100), ("canary".to_owned(), 0)],
            prior: Some(Prior { patch: Some(prior) }),
            layout: None,
            weights: weights.clone(),
            step: 1,
            weight: 10.0,
            at_ms: now_ms(),
            hold_ms: 3_600_000,
        };
        authority
            .append_rollout(
                "ramp",
                serde_json::to_value(event).unwrap(),
                RolloutChange::Weights(weights),
                "ci",
                "started",
            )
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_rollout_that_cannot_go_on_is_listed_and_can_be_aborted() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, runner) = open(dir.path(), store(FLAGS, 1), Script::new(None));
        runner.stop().await;
        strand(&authority);
        drop(runner);
        let runner = RolloutRunner::spawn(authority.clone(), Script::new(Some(Verdict::Pass)));
        let status = runner.status("ramp").unwrap();
        assert_eq!(status.phase, super::super::Phase::Running);
        assert!(status.problem.unwrap().contains("cannot resume"));
        let err = runner.resume("ramp", "ops", "").await.unwrap_err();
        assert!(matches!(err, RolloutError::Unresumable { .. }), "{err}");
        let p = plan(&[(10.0, 1), (100.0, 0)], "");
        let err = runner.start("ramp", p.clone(), "ci", "").await.unwrap_err();
        assert!(matches!(err, RolloutError::Active { .. }), "{err}");
        let aborted = runner.abort("ramp", "ops", "").await.unwrap();
        assert_eq!(aborted.phase, super::super::Phase::Aborted);
        // Exactly the override from before: a default variant, no weights.
        let back = authority.override_of("ramp").unwrap();
        assert_eq!(
            (back.default_variant.as_deref(), back.weights),
            (Some("canary"), None)
        );
        runner.start("ramp", p, "ci", "").await.unwrap();
        runner.stop().await;
    }
}
