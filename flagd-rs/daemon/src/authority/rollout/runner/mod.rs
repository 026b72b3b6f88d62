//! The rollout runner: one task per active rollout holds its steps, checks its gates every
//! interval and records every change through the authority; verbs from the admin API reach the
//! task over a channel, so a rollout's changes are always made in order by one writer.
//!
//! In a fleet only the replica elected rollout controller drives rollouts; the others show the
//! rollouts as the journal has them, and their API sends verbs to the controller
//! ([`leadership`], [`relay`]).
//!
//! Module map: this file is the registry the API talks to (each flag's latest rollout, starting
//! rollouts, sending verbs, stopping); [`driver`] is one rollout's state machine; [`hold`] holds
//! a step and checks its gates; [`status`] has the answers (errors and statuses);
//! [`leadership`] takes over and steps down; [`relay`] is what a verb sent to the controller
//! carries.

mod driver;
mod hold;
mod leadership;
mod relay;
mod status;
#[cfg(test)]
pub(crate) mod testkit;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
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
use leadership::Leadership;
pub use leadership::{ALWAYS, Term};
pub use relay::{Relay, VerbAnswer, VerbKind, VerbRequest};
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

    /// A rollout as the journal has it, with no task: whether it can go on is checked, and
    /// the plan and layout to drive it with are returned when it can.
    fn from_journal(flag: &str, state: RolloutState) -> (Slot, Option<(CheckedPlan, Layout)>) {
        let mut slot = Slot {
            gates: GateBook::new(state.plan.check(flag).ok().as_ref(), &state.counters).statuses,
            state,
            problem: None,
            commands: None,
        };
        if slot.state.phase.is_terminal() {
            return (slot, None);
        }
        match resumable(&slot.state) {
            Err(e) => {
                slot.problem = Some(format!("cannot resume: {e}"));
                (slot, None)
            }
            Ok(drive) => (slot, Some(drive)),
        }
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
    /// Serializes starts, aborts made by the runner, taking over and stepping down, so that
    /// two of one flag cannot both find it free.
    start_lock: tokio::sync::Mutex<()>,
    /// Set when the runner stops for good (the daemon is shutting down).
    stop_tx: watch::Sender<bool>,
    /// Whether, and in which term, this runner drives rollouts.
    lead: Leadership,
    /// Where the API sends verbs while another replica is the controller.
    relay: OnceLock<Arc<dyn Relay>>,
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
    /// A runner over `authority`, checking gates with `gates`, that always drives rollouts (a
    /// daemon without a shared store). Replays the rollout records and resumes every rollout
    /// that was running or paused (each waits until the store has loaded its flags before it
    /// changes the split). A rollout that cannot go on (its plan no longer validates) is listed
    /// with the problem and can be aborted. Must be called inside a tokio runtime.
    pub fn spawn(authority: Arc<Authority>, gates: Arc<dyn GateEvaluator>) -> Arc<RolloutRunner> {
        let runner = RolloutRunner::new(authority, gates, Leadership::new(true));
        runner.take_over_now(ALWAYS);
        let always = runner.lead.always.as_ref().map(watch::Sender::subscribe);
        if let Some(input) = always {
            tokio::spawn(runner.clone().follow_leadership(input));
        }
        runner
    }

    /// A runner that drives rollouts only while `leadership` says `Some(term)`: this replica
    /// is the fleet's rollout controller in that term (see [`leadership`]). When it becomes
    /// the controller it resumes every active rollout from the journal as a restart does (the
    /// same step, the hold time left as of the last record, the gates' counters); when it
    /// stops being the controller its tasks stop at once, and it writes nothing; meanwhile its
    /// status and list answers are the journal's, read again after every revision. A term in
    /// which the journal refused one of its records (another replica leads) is not taken up
    /// again; [`RolloutRunner::watch_deposed`] reports it. Must be called inside a tokio
    /// runtime.
    pub fn spawn_led(
        authority: Arc<Authority>,
        gates: Arc<dyn GateEvaluator>,
        leadership: watch::Receiver<Option<Term>>,
    ) -> Arc<RolloutRunner> {
        let runner = RolloutRunner::new(authority, gates, Leadership::new(false));
        match *leadership.borrow() {
            Some(term) => runner.take_over_now(term),
            None => runner.show_journal(),
        }
        tokio::spawn(runner.clone().follow_leadership(leadership));
        runner
    }

    fn new(
        authority: Arc<Authority>,
        gates: Arc<dyn GateEvaluator>,
        lead: Leadership,
    ) -> Arc<RolloutRunner> {
        Arc::new(RolloutRunner {
            authority,
            gates,
            slots: Mutex::new(BTreeMap::new()),
            start_lock: tokio::sync::Mutex::new(()),
            stop_tx: watch::channel(false).0,
            lead,
            relay: OnceLock::new(),
        })
    }

    /// Replays the rollout records and resumes, in `term`, every rollout that was running or
    /// paused.
    fn resume_all(self: &Arc<Self>, term: Term) {
        let states = replay(&self.authority.rollout_records());
        let mut slots = BTreeMap::new();
        let mut launches = Vec::new();
        for (flag, state) in states {
            let (mut slot, drive) = Slot::from_journal(&flag, state);
            match drive {
                None => {
                    if let Some(problem) = &slot.problem {
                        tracing::error!(flag, %problem, "cannot resume a rollout; it can be aborted");
                    }
                }
                Some((checked, layout)) => {
                    tracing::info!(
                        flag,
                        rollout = slot.state.id,
                        step = slot.state.step,
                        phase = slot.state.phase.as_str(),
                        "resuming rollout"
                    );
                    let (tx, rx) = mpsc::channel(INBOX);
                    slot.commands = Some(tx);
                    launches.push((flag.clone(), checked, slot.state.clone(), layout, rx));
                }
            }
            slots.insert(flag, slot);
        }
        *self.lock() = slots;
        for (flag, checked, state, layout, rx) in launches {
            self.launch(term, flag, checked, state, layout, rx, true);
        }
    }

    /// Shows every flag's latest rollout as the journal has it, with no task.
    fn show_journal(&self) {
        let slots = replay(&self.authority.rollout_records())
            .into_iter()
            .map(|(flag, state)| {
                let (slot, _) = Slot::from_journal(&flag, state);
                (flag, slot)
            })
            .collect();
        *self.lock() = slots;
    }

    /// Starts the task of flag `flag`'s rollout again from the journal, after one of its
    /// records clashed with a revision appended elsewhere: the journal says where it is.
    async fn reload(self: &Arc<Self>, term: Term, flag: String) {
        let _serial = self.start_lock.lock().await;
        if self.active_term() != Some(term) || *self.stop_tx.borrow() {
            return;
        }
        let authority = self.authority.clone();
        let records = match tokio::task::spawn_blocking(move || authority.rollout_records()).await {
            Ok(records) => records,
            Err(_) => return,
        };
        let Some(state) = replay(&records).remove(&flag) else {
            return;
        };
        tracing::info!(
            flag,
            rollout = state.id,
            step = state.step,
            phase = state.phase.as_str(),
            "a rollout record clashed with a revision made elsewhere; going on from the journal"
        );
        let (mut slot, drive) = Slot::from_journal(&flag, state);
        let launch = drive.map(|(checked, layout)| {
            let (tx, rx) = mpsc::channel(INBOX);
            slot.commands = Some(tx);
            (checked, slot.state.clone(), layout, rx)
        });
        self.lock().insert(flag.clone(), slot);
        if let Some((checked, state, layout, rx)) = launch {
            self.launch(term, flag, checked, state, layout, rx, false);
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        self: &Arc<Self>,
        term: Term,
        flag: String,
        checked: CheckedPlan,
        state: RolloutState,
        layout: Layout,
        rx: mpsc::Receiver<Command>,
        wait_ready: bool,
    ) {
        let driver = Driver::new(self.clone(), term, flag.clone(), checked, state, layout);
        let mut crew = self.lead.crew();
        let stop = crew.stop.subscribe();
        let runner = self.clone();
        let task = tokio::spawn(async move {
            if driver.run(rx, stop, wait_ready).await == Some(driver::Exit::Reload) {
                runner.reload(term, flag).await;
            }
        });
        crew.tasks.retain(|t| !t.is_finished());
        crew.tasks.push(task);
    }

    /// Records one rollout event in `term` through the authority, changing the override as
    /// `change` says. A refusal by the journal because another replica is the controller
    /// steps the runner down.
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        term: Term,
        flag: &str,
        event: &Event,
        change: RolloutChange,
        actor: &str,
        reason: String,
    ) -> Result<RevisionInfo, RolloutError> {
        let value = serde_json::to_value(event).map_err(encode_error)?;
        let authority = self.authority.clone();
        let gate = self.lead.gate.clone();
        let (flag, actor) = (flag.to_owned(), actor.to_owned());
        let result = blocking(move || {
            gate.write_as(term, || {
                authority
                    .append_rollout(&flag, value, change, &actor, &reason)
                    .map_err(RolloutError::from)
            })
        })
        .await;
        if let Err(e) = &result
            && e.is_deposed()
        {
            self.deposed(term);
        }
        result
    }

    /// The term a verb may write in now, or why it may not.
    fn writing_term(&self) -> Result<Term, RolloutError> {
        if *self.stop_tx.borrow() {
            return Err(RolloutError::Stopped);
        }
        self.active_term().ok_or(RolloutError::NotController)
    }

    /// Where the API sends verbs while this replica is not the controller (set once, by the
    /// fleet's controller election).
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        if self.relay.set(relay).is_err() {
            tracing::warn!("the rollout runner already has a relay to the controller");
        }
    }

    /// The relay to the controller, if this runner is part of a fleet.
    pub fn relay(&self) -> Option<Arc<dyn Relay>> {
        self.relay.get().cloned()
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
        self.writing_term()?;
        let _serial = self.start_lock.lock().await;
        let term = self.writing_term()?;
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
        let gate = self.lead.gate.clone();
        let (info, event) = blocking(move || {
            gate.write_as(term, || {
                authority.start_rollout(&key, &who, |basis| {
                    start_record(&key, &for_record, basis, &note)
                })
            })
        })
        .await
        .inspect_err(|e| {
            if e.is_deposed() {
                self.deposed(term);
            }
        })?;
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
        self.launch(term, flag.to_owned(), checked, state, layout, rx, false);
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
        self.writing_term()?;
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
        let term = self.writing_term()?;
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
        let info = self
            .record(term, flag, &event, state.restore_change(), actor, text)
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

    /// Stops every rollout task for good (their state stays in the journal, to be resumed by
    /// the next runner). Waits briefly for tasks busy recording a change.
    pub async fn stop(&self) {
        let _ = self.stop_tx.send(true);
        let tasks: Vec<JoinHandle<()>> = {
            let mut crew = self.lead.crew();
            crew.stop.send_replace(true);
            std::mem::take(&mut crew.tasks)
        };
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
