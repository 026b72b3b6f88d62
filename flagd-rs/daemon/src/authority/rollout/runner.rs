//! The rollout runner: one task per active rollout holds its steps, checks its gates every
//! interval and records every change through the authority; verbs from the admin API reach the
//! task over a channel, so a rollout's changes are always made in order by one writer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use flagd_evaluator::OverridePatch;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::gates::{GateContext, GateEvaluator, GateOutcome, Verdict};
use super::plan::{CheckedPlan, OnFailure, Plan, PlanError};
use super::{Event, Phase, RolloutState, now_ms, replay, share, split_weights, step_weights};
use crate::authority::{Authority, AuthorityError};

/// The actor recorded for changes the runner makes by itself.
pub const RUNNER_ACTOR: &str = "rollout";

/// How long a verb waits for the rollout's task to act on it.
const VERB_TIMEOUT: Duration = Duration::from_secs(60);

/// How long [`RolloutRunner::stop`] waits for tasks before cancelling them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often a resumed rollout checks whether the store has loaded its flags.
const READY_POLL: Duration = Duration::from_millis(50);

/// Why a rollout verb was refused.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No loaded flag has that key.
    #[error("no flag '{0}' is defined")]
    UnknownFlag(String),
    /// The flag has no split the plan can move.
    #[error("flag '{flag}' cannot be rolled out: {detail}")]
    NoSplit {
        /// The flag.
        flag: String,
        /// Why.
        detail: String,
    },
    /// The first step would take users away from the variant.
    #[error(
        "the first step ({first}%) is below the variant's current share ({current}%): a ramp may only add users"
    )]
    NotMonotonic {
        /// The first step's weight.
        first: f64,
        /// The variant's share now.
        current: f64,
    },
    /// The flag already has a rollout in progress.
    #[error("flag '{flag}' already has a rollout in progress ({})", .phase.as_str())]
    Active {
        /// The flag.
        flag: String,
        /// Its phase.
        phase: Phase,
    },
    /// The flag never had a rollout.
    #[error("flag '{0}' has no rollout")]
    NoRollout(String),
    /// The flag's rollout is over.
    #[error("the rollout of flag '{flag}' is over ({})", .phase.as_str())]
    Finished {
        /// The flag.
        flag: String,
        /// How it ended.
        phase: Phase,
    },
    /// The authority refused or could not record a change.
    #[error(transparent)]
    Authority(AuthorityError),
    /// The daemon is shutting down.
    #[error("the rollout runner is stopping")]
    Stopped,
    /// The rollout's task did not act on a verb in time.
    #[error("the rollout of flag '{0}' did not answer in time")]
    Busy(String),
}

/// Check counts of one gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Passing checks.
    pub pass: u64,
    /// Failing checks.
    pub fail: u64,
    /// Inconclusive checks.
    pub inconclusive: u64,
}

/// A gate's results in the current rollout (since the daemon started or the rollout resumed).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The gate's name.
    pub name: String,
    /// `prometheus` or `webhook`.
    pub kind: &'static str,
    /// The last check's outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<GateOutcome>,
    /// When it was checked last (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<String>,
    /// Failed checks counted against the limit.
    pub failures: u32,
    /// The gate's failure limit.
    pub failure_limit: u32,
    /// Inconclusive checks in a row.
    pub inconclusive_in_a_row: u32,
    /// Checks by verdict.
    pub checks: Counts,
}

/// A rollout's status, as the API and CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The flag.
    pub flag: String,
    /// The rollout's id: the revision that started it.
    pub id: u64,
    /// The phase.
    pub phase: Phase,
    /// The variant rolled out.
    pub variant: String,
    /// Its baseline.
    pub baseline: String,
    /// The current step (1-based).
    pub step: usize,
    /// The number of steps.
    pub steps: usize,
    /// The variant's share in percent.
    pub weight: f64,
    /// The split's weights the rollout has set.
    pub weights: Map<String, Value>,
    /// The split's weights before the rollout.
    pub before: Map<String, Value>,
    /// Hold time left in the current step (while paused: what is left when resumed).
    pub hold_remaining_ms: u64,
    /// Why it paused or ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A problem the runner could not record (the journal refused a change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it last changed (RFC 3339).
    pub updated_at: String,
    /// The last revision it recorded.
    pub revision: u64,
    /// The gates' results.
    pub gates: Vec<GateStatus>,
    /// The plan.
    pub plan: Plan,
}

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
    /// The task's inbox; `None` once the rollout is over (or could not be resumed).
    commands: Option<mpsc::Sender<Command>>,
}

/// Runs every active rollout, and answers the verbs.
#[derive(Debug)]
pub struct RolloutRunner {
    authority: Arc<Authority>,
    gates: Arc<dyn GateEvaluator>,
    /// Each flag's latest rollout. Written by the rollout's task (and by `start`), read by the
    /// API and the metrics collector.
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Serializes starts, so that two starts of one flag cannot both find it free.
    start_lock: tokio::sync::Mutex<()>,
    stop_tx: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn rfc3339(ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

fn weights_map(weights: &[(String, u32)]) -> Map<String, Value> {
    weights
        .iter()
        .map(|(n, w)| (n.clone(), Value::from(*w)))
        .collect()
}

fn gate_statuses(checked: Option<&CheckedPlan>) -> Vec<GateStatus> {
    checked
        .map(|c| {
            c.gates
                .iter()
                .map(|g| GateStatus {
                    name: g.name.clone(),
                    kind: g.kind_name(),
                    last: None,
                    checked_at: None,
                    failures: 0,
                    failure_limit: g.failure_limit,
                    inconclusive_in_a_row: 0,
                    checks: Counts::default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The weights a rollout has set at its current state.
fn current_weights(state: &RolloutState, scale: u32) -> Vec<(String, u32)> {
    match state.phase {
        Phase::RolledBack | Phase::Aborted => state.before.clone(),
        _ => step_weights(
            &state.before,
            &state.plan.variant,
            &state.plan.baseline,
            scale,
            state.weight(),
        ),
    }
}

fn scale_of(plan: &Plan, flag: &str) -> u32 {
    plan.check(flag).map_or(100, |c| c.scale)
}

impl Slot {
    fn status(&self, now: u64) -> RolloutStatus {
        let s = &self.state;
        let scale = scale_of(&s.plan, &s.flag);
        RolloutStatus {
            flag: s.flag.clone(),
            id: s.id,
            phase: s.phase,
            variant: s.plan.variant.clone(),
            baseline: s.plan.baseline.clone(),
            step: s.step,
            steps: s.plan.steps.len(),
            weight: s.weight(),
            weights: weights_map(&current_weights(s, scale)),
            before: weights_map(&s.before),
            hold_remaining_ms: s.remaining_ms(now),
            reason: s.reason.clone(),
            problem: self.problem.clone(),
            started_at: rfc3339(s.started_ms),
            updated_at: rfc3339(s.at_ms),
            revision: s.revision,
            gates: self.gates.clone(),
            plan: s.plan.clone(),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthorityError> + Send + 'static,
) -> Result<T, RolloutError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(RolloutError::from),
        Err(_) => Err(RolloutError::Stopped),
    }
}

impl RolloutRunner {
    /// A runner over `authority`, checking gates with `gates`. Replays the rollout records and
    /// resumes every rollout that was running or paused (each waits until the store has loaded
    /// its flags before it changes anything). Must be called inside a tokio runtime.
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
            let checked = state.plan.check(&flag);
            let mut slot = Slot {
                gates: gate_statuses(checked.as_ref().ok()),
                state,
                problem: None,
                commands: None,
            };
            match checked {
                Err(e) if !slot.state.phase.is_terminal() => {
                    tracing::error!(flag, error = %e, "cannot resume a rollout: its plan no longer validates");
                    slot.problem = Some(format!("cannot resume: {e}"));
                    runner.lock().insert(flag, slot);
                }
                Ok(checked) if !slot.state.phase.is_terminal() => {
                    tracing::info!(
                        flag,
                        rollout = slot.state.id,
                        step = slot.state.step,
                        phase = slot.state.phase.as_str(),
                        "resuming rollout"
                    );
                    let state = slot.state.clone();
                    let (tx, rx) = mpsc::channel(8);
                    slot.commands = Some(tx);
                    runner.lock().insert(flag.clone(), slot);
                    runner.launch(flag, checked, state, rx, true);
                }
                _ => {
                    runner.lock().insert(flag, slot);
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
        rx: mpsc::Receiver<Command>,
        wait_ready: bool,
    ) {
        let gates = gate_statuses(Some(&checked));
        let driver = Driver {
            runner: self.clone(),
            flag,
            checked,
            state,
            gates,
            trust_split: false,
        };
        let stop = self.stop_tx.subscribe();
        let task = tokio::spawn(driver.run(rx, stop, wait_ready));
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The authority rollouts are recorded in.
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// Starts rolling out flag `flag` by `plan`: checks the plan against the flag's current
    /// split, records the start with the first step's weights, and begins its first hold.
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
        let flags = blocking(move || Ok(authority.effective_flags())).await?;
        let Some(served) = flags.into_iter().rev().find(|f| f.key == flag) else {
            return Err(RolloutError::UnknownFlag(flag.to_owned()));
        };
        let Some(split) = served.split else {
            return Err(RolloutError::NoSplit {
                flag: flag.to_owned(),
                detail: "its targeting has no single fractional split".into(),
            });
        };
        let before = split_weights(flag, &split, &plan)?;
        let current = share(&before, &plan.variant, &plan.baseline);
        let first = plan.steps.first().map_or(0.0, |s| s.weight);
        // A hair of tolerance: a 1/3 split reads as 33.33...% and may start at 33.33.
        if first + 0.005 < current {
            return Err(RolloutError::NotMonotonic { first, current });
        }
        let hold = plan.steps.first().map_or(Duration::ZERO, |s| s.hold);
        let at = now_ms();
        let event = Event::Start {
            plan: plan.clone(),
            before: before.clone(),
            step: 1,
            weight: first,
            at_ms: at,
            hold_ms: duration_ms(hold),
        };
        let weights = step_weights(&before, &plan.variant, &plan.baseline, checked.scale, first);
        let mut text = format!(
            "rollout started: step 1/{}, {} {first}%",
            plan.steps.len(),
            plan.variant
        );
        if !reason.is_empty() {
            text.push_str(&format!(" ({reason})"));
        }
        let info = record(&self.authority, flag, &event, Some(weights), actor, text).await?;
        let Some(state) = RolloutState::started(info.revision, flag, &event) else {
            return Err(RolloutError::Stopped);
        };
        tracing::info!(flag, rollout = state.id, variant = %plan.variant, "rollout started");
        let (tx, rx) = mpsc::channel(8);
        let slot = Slot {
            state: state.clone(),
            gates: gate_statuses(Some(&checked)),
            problem: None,
            commands: Some(tx),
        };
        let status = slot.status(now_ms());
        self.lock().insert(flag.to_owned(), slot);
        self.launch(flag.to_owned(), checked, state, rx, false);
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

    /// Resumes a paused rollout where its hold stopped (gate counters start over).
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

    /// Ends the rollout now, putting the split back as it was before it.
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
        let finished = |slots: &BTreeMap<String, Slot>| match slots.get(flag) {
            Some(s) => RolloutError::Finished {
                flag: flag.to_owned(),
                phase: s.state.phase,
            },
            None => RolloutError::NoRollout(flag.to_owned()),
        };
        let sender = {
            let slots = self.lock();
            match slots.get(flag).and_then(|s| s.commands.clone()) {
                Some(tx) => tx,
                None => return Err(finished(&slots)),
            }
        };
        let (reply, answer) = oneshot::channel();
        let command = Command {
            verb,
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            reply,
        };
        if sender.send(command).await.is_err() {
            return Err(finished(&self.lock()));
        }
        match tokio::time::timeout(VERB_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(finished(&self.lock())),
            Err(_) => Err(RolloutError::Busy(flag.to_owned())),
        }
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

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Records one rollout event (with the split's new weights, if any) through the authority.
async fn record(
    authority: &Arc<Authority>,
    flag: &str,
    event: &Event,
    weights: Option<Vec<(String, u32)>>,
    actor: &str,
    reason: String,
) -> Result<crate::authority::RevisionInfo, RolloutError> {
    let value = serde_json::to_value(event).map_err(|e| {
        RolloutError::Authority(AuthorityError::Journal(crate::authority::JournalError::Io(
            std::io::Error::other(e),
        )))
    })?;
    let patch = weights.map(|w| OverridePatch {
        weights: Some(w),
        ..OverridePatch::default()
    });
    let authority = authority.clone();
    let (flag, actor) = (flag.to_owned(), actor.to_owned());
    blocking(move || authority.append_rollout(&flag, value, patch, &actor, &reason)).await
}

enum Input {
    Stop,
    Command(Command),
    Timer,
}

async fn next_input(
    rx: &mut mpsc::Receiver<Command>,
    stop: &mut watch::Receiver<bool>,
    until: Option<Instant>,
) -> Input {
    let timer = async {
        match until {
            Some(t) => tokio::time::sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => Input::Stop,
        cmd = rx.recv() => cmd.map_or(Input::Stop, Input::Command),
        () = timer => Input::Timer,
    }
}

/// How a hold ended.
enum HoldEnd {
    Stop,
    Done,
    Command(Command, Duration),
    Failed {
        gate: String,
        detail: String,
        left: Duration,
    },
    Inconclusive {
        gate: String,
        detail: String,
        left: Duration,
    },
}

/// Drives one rollout; the only writer of its records while it runs.
struct Driver {
    runner: Arc<RolloutRunner>,
    flag: String,
    checked: CheckedPlan,
    state: RolloutState,
    gates: Vec<GateStatus>,
    /// Set when a human resumed or promoted: the split as it is now is accepted, even if it was
    /// changed outside the rollout.
    trust_split: bool,
}

impl Driver {
    fn plan(&self) -> &Plan {
        &self.checked.plan
    }

    fn publish(&self, problem: Option<String>) {
        let mut slots = self.runner.lock();
        if let Some(slot) = slots.get_mut(&self.flag)
            && slot.state.id == self.state.id
        {
            slot.state = self.state.clone();
            slot.gates = self.gates.clone();
            slot.problem = problem;
            if self.state.phase.is_terminal() {
                slot.commands = None;
            }
        }
    }

    fn status(&self) -> Result<RolloutStatus, RolloutError> {
        self.runner.status(&self.flag)
    }

    async fn record(
        &mut self,
        event: Event,
        weights: Option<Vec<(String, u32)>>,
        actor: &str,
        reason: String,
    ) -> Result<(), RolloutError> {
        match record(
            &self.runner.authority,
            &self.flag,
            &event,
            weights,
            actor,
            reason.clone(),
        )
        .await
        {
            Ok(info) => {
                self.state.apply(info.revision, &event);
                self.publish(None);
                tracing::info!(
                    flag = %self.flag,
                    rollout = self.state.id,
                    revision = info.revision,
                    phase = self.state.phase.as_str(),
                    step = self.state.step,
                    %reason,
                    "rollout revision"
                );
                Ok(())
            }
            Err(e) => {
                // The change did not happen. Stop and wait for a human, in memory only (the
                // journal refused the write); after a restart the journal's state resumes.
                tracing::error!(flag = %self.flag, error = %e, %reason, "could not record a rollout change");
                if self.state.phase == Phase::Running {
                    let left = self.state.remaining_ms(now_ms());
                    self.state.phase = Phase::Paused;
                    self.state.hold_ms = left;
                    self.state.at_ms = now_ms();
                    self.state.reason = Some(format!("could not record: {reason}"));
                }
                self.publish(Some(format!("could not record `{reason}`: {e}")));
                Err(e)
            }
        }
    }

    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
        wait_ready: bool,
    ) {
        if wait_ready {
            // A resumed rollout must not touch the split before the store has loaded the flag.
            while !self.runner.authority.store().is_ready() {
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(READY_POLL) => {}
                }
            }
        }
        loop {
            match self.state.phase {
                Phase::Completed | Phase::RolledBack | Phase::Aborted => break,
                Phase::Paused => match next_input(&mut rx, &mut stop, None).await {
                    Input::Stop => return,
                    Input::Timer => {}
                    Input::Command(cmd) => self.paused_command(cmd).await,
                },
                Phase::Running => match self.hold(&mut rx, &mut stop).await {
                    HoldEnd::Stop => return,
                    HoldEnd::Done => {
                        let _ = self.advance(None).await;
                    }
                    HoldEnd::Command(cmd, left) => self.running_command(cmd, left).await,
                    HoldEnd::Failed { gate, detail, left } => {
                        self.on_failure(&gate, &detail, left).await;
                    }
                    HoldEnd::Inconclusive { gate, detail, left } => {
                        let reason =
                            format!("rollout paused: gate '{gate}' inconclusive: {detail}");
                        let _ = self.pause(left, RUNNER_ACTOR, reason).await;
                    }
                },
            }
        }
        self.publish(None);
    }

    async fn paused_command(&mut self, cmd: Command) {
        let result = match cmd.verb {
            Verb::Pause => Ok(()),
            Verb::Resume => {
                for g in &mut self.gates {
                    g.failures = 0;
                    g.inconclusive_in_a_row = 0;
                }
                let event = Event::Resume {
                    rollout: self.state.id,
                    at_ms: now_ms(),
                    remaining_ms: self.state.hold_ms,
                };
                let reason = with_note(format!("rollout resumed by {}", cmd.actor), &cmd.reason);
                let r = self.record(event, None, &cmd.actor, reason).await;
                if r.is_ok() {
                    self.trust_split = true;
                }
                r
            }
            Verb::Promote => {
                self.trust_split = true;
                self.advance(Some(&cmd)).await
            }
            Verb::Abort => self.roll_back(&cmd).await,
        };
        let _ = cmd.reply.send(result.and_then(|()| self.status()));
    }

    async fn running_command(&mut self, cmd: Command, left: Duration) {
        let result = match cmd.verb {
            // A resume of a running rollout changes nothing (`hold` answers it).
            Verb::Resume => Ok(()),
            Verb::Pause => {
                let reason = with_note(format!("rollout paused by {}", cmd.actor), &cmd.reason);
                self.pause(left, &cmd.actor, reason).await
            }
            Verb::Promote => {
                self.trust_split = true;
                self.advance(Some(&cmd)).await
            }
            Verb::Abort => self.roll_back(&cmd).await,
        };
        let _ = cmd.reply.send(result.and_then(|()| self.status()));
    }

    async fn pause(
        &mut self,
        left: Duration,
        actor: &str,
        reason: String,
    ) -> Result<(), RolloutError> {
        let event = Event::Pause {
            rollout: self.state.id,
            at_ms: now_ms(),
            remaining_ms: duration_ms(left),
            reason: reason.clone(),
        };
        self.record(event, None, actor, reason).await
    }

    async fn on_failure(&mut self, gate: &str, detail: &str, left: Duration) {
        let failures = self
            .gates
            .iter()
            .find(|g| g.name == gate)
            .map_or(0, |g| g.failures);
        let limit = self
            .gates
            .iter()
            .find(|g| g.name == gate)
            .map_or(0, |g| g.failure_limit);
        let why =
            format!("gate '{gate}' failed: {detail} ({failures} failed checks, limit {limit})");
        match self.plan().on_failure {
            OnFailure::Rollback => {
                let event = Event::Rollback {
                    rollout: self.state.id,
                    at_ms: now_ms(),
                    reason: why.clone(),
                    gate: Some(gate.to_owned()),
                };
                let before = self.state.before.clone();
                let reason = format!("rollout rolled back: {why}");
                let _ = self.record(event, Some(before), RUNNER_ACTOR, reason).await;
            }
            OnFailure::Pause => {
                let _ = self
                    .pause(left, RUNNER_ACTOR, format!("rollout paused: {why}"))
                    .await;
            }
        }
    }

    async fn roll_back(&mut self, cmd: &Command) -> Result<(), RolloutError> {
        let reason = with_note(format!("rollout aborted by {}", cmd.actor), &cmd.reason);
        let event = Event::Abort {
            rollout: self.state.id,
            at_ms: now_ms(),
            reason: reason.clone(),
        };
        let before = self.state.before.clone();
        self.record(event, Some(before), &cmd.actor, reason).await
    }

    fn step_weights(&self, percent: f64) -> Vec<(String, u32)> {
        let plan = self.plan();
        step_weights(
            &self.state.before,
            &plan.variant,
            &plan.baseline,
            self.checked.scale,
            percent,
        )
    }

    /// Describes how the flag's split differs from what the rollout set, if it does.
    fn diverged(&self) -> Option<String> {
        let normalize = |w: &[(String, u32)]| {
            let mut v: Vec<(String, u32)> = w.iter().filter(|(_, w)| *w > 0).cloned().collect();
            v.sort();
            v
        };
        let expected = normalize(&self.step_weights(self.state.weight()));
        let actual = self
            .runner
            .authority
            .override_of(&self.flag)
            .and_then(|p| p.weights);
        let actual_n = actual.as_deref().map(normalize);
        if actual_n.as_ref() == Some(&expected) {
            return None;
        }
        let shown = actual.map_or_else(
            || "no override".to_owned(),
            |w| {
                w.iter()
                    .map(|(n, w)| format!("{n}={w}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        );
        Some(format!(
            "the split of '{}' was changed outside the rollout (now {shown}); resume to continue from it",
            self.flag
        ))
    }

    /// Moves to the next step, or completes after the last one.
    async fn advance(&mut self, promoted: Option<&Command>) -> Result<(), RolloutError> {
        if !std::mem::take(&mut self.trust_split)
            && let Some(why) = self.diverged()
        {
            let reason = format!("rollout paused: {why}");
            let left = Duration::from_millis(self.state.remaining_ms(now_ms()));
            return self.pause(left, RUNNER_ACTOR, reason).await;
        }
        let (actor, note) = match promoted {
            Some(cmd) => (cmd.actor.as_str(), format!(" (promoted by {})", cmd.actor)),
            None => (RUNNER_ACTOR, String::new()),
        };
        let note = match promoted {
            Some(cmd) if !cmd.reason.is_empty() => format!("{note}: {}", cmd.reason),
            _ => note,
        };
        let total = self.plan().steps.len();
        let current = self.state.step;
        let variant = self.plan().variant.clone();
        match self.plan().steps.get(current).cloned() {
            None => {
                let event = Event::Complete {
                    rollout: self.state.id,
                    at_ms: now_ms(),
                };
                let reason = format!(
                    "rollout completed: {variant} at {}%{note}",
                    self.state.weight()
                );
                self.record(event, None, actor, reason).await
            }
            Some(step) => {
                let next = current + 1;
                let event = Event::Step {
                    rollout: self.state.id,
                    step: next,
                    weight: step.weight,
                    at_ms: now_ms(),
                    hold_ms: duration_ms(step.hold),
                    promoted: promoted.is_some(),
                };
                let weights = self.step_weights(step.weight);
                let reason = format!(
                    "rollout step {next}/{total}: {variant} {}%{note}",
                    step.weight
                );
                self.record(event, Some(weights), actor, reason).await
            }
        }
    }

    fn step_hold(&self) -> Duration {
        self.state
            .step
            .checked_sub(1)
            .and_then(|i| self.plan().steps.get(i))
            .map_or(Duration::ZERO, |s| s.hold)
    }

    /// Holds the current step: checks gates every interval until the hold is over, a gate
    /// decides otherwise, or a verb arrives.
    async fn hold(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        stop: &mut watch::Receiver<bool>,
    ) -> HoldEnd {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(self.state.remaining_ms(now_ms()));
        let interval = self.plan().interval;
        let gated = !self.checked.gates.is_empty() && !self.step_hold().is_zero();
        let mut last_check: Option<Instant> = None;
        let mut next_check = start + interval;
        // A step only moves on after a check in which every gate passed.
        let mut passed = false;
        loop {
            let wake = if !gated {
                deadline
            } else if Instant::now() >= deadline {
                next_check
            } else {
                next_check.min(deadline)
            };
            match next_input(rx, stop, Some(wake)).await {
                Input::Stop => return HoldEnd::Stop,
                Input::Command(cmd) if cmd.verb == Verb::Resume => {
                    let _ = cmd.reply.send(self.status());
                }
                Input::Command(cmd) => {
                    return HoldEnd::Command(
                        cmd,
                        deadline.saturating_duration_since(Instant::now()),
                    );
                }
                Input::Timer => {
                    let now = Instant::now();
                    // At the end of the hold, check once more unless a check just ran.
                    let due = now >= next_check
                        || (now >= deadline
                            && last_check.is_none_or(|t| now.duration_since(t) >= interval / 2));
                    if gated && due {
                        match self.check_gates(deadline).await {
                            Ok(all_passed) => passed = all_passed,
                            Err(end) => return end,
                        }
                        let checked = Instant::now();
                        last_check = Some(checked);
                        next_check = checked + interval;
                    }
                    // Past the hold with a check that did not pass (a failure or an
                    // inconclusive answer within its limit): hold on and check again.
                    if Instant::now() >= deadline && (!gated || passed) {
                        return HoldEnd::Done;
                    }
                }
            }
        }
    }

    /// Checks every gate once (concurrently) and records the results. Returns whether every
    /// gate passed, or how the hold ends if a gate decided it.
    async fn check_gates(&mut self, deadline: Instant) -> Result<bool, HoldEnd> {
        let plan = self.plan();
        let ctx = GateContext {
            flag: self.flag.clone(),
            rollout: self.state.id,
            variant: plan.variant.clone(),
            baseline: plan.baseline.clone(),
            step: self.state.step,
            weight: self.state.weight(),
        };
        let evaluator = self.runner.gates.clone();
        let outcomes =
            futures::future::join_all(self.checked.gates.iter().map(|g| evaluator.check(g, &ctx)))
                .await;
        let inconclusive_limit = self.plan().inconclusive_limit;
        let when = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut failed: Option<(String, String)> = None;
        let mut inconclusive: Option<(String, String)> = None;
        let all_passed = outcomes.iter().all(|o| o.verdict == Verdict::Pass);
        for (status, outcome) in self.gates.iter_mut().zip(outcomes) {
            match outcome.verdict {
                Verdict::Pass => {
                    status.checks.pass += 1;
                    status.inconclusive_in_a_row = 0;
                }
                Verdict::Fail => {
                    status.checks.fail += 1;
                    status.failures = status.failures.saturating_add(1);
                    status.inconclusive_in_a_row = 0;
                    tracing::warn!(flag = %self.flag, gate = %status.name, detail = %outcome.detail, failures = status.failures, "rollout gate failed");
                    if status.failures > status.failure_limit && failed.is_none() {
                        failed = Some((status.name.clone(), outcome.detail.clone()));
                    }
                }
                Verdict::Inconclusive => {
                    status.checks.inconclusive += 1;
                    status.inconclusive_in_a_row = status.inconclusive_in_a_row.saturating_add(1);
                    tracing::warn!(flag = %self.flag, gate = %status.name, detail = %outcome.detail, "rollout gate inconclusive");
                    if status.inconclusive_in_a_row > inconclusive_limit && inconclusive.is_none() {
                        inconclusive = Some((status.name.clone(), outcome.detail.clone()));
                    }
                }
            }
            status.last = Some(outcome);
            status.checked_at = Some(when.clone());
        }
        self.publish(None);
        let left = deadline.saturating_duration_since(Instant::now());
        // A definite failure outweighs an inconclusive answer of another gate.
        if let Some((gate, detail)) = failed {
            return Err(HoldEnd::Failed { gate, detail, left });
        }
        if let Some((gate, detail)) = inconclusive {
            return Err(HoldEnd::Inconclusive { gate, detail, left });
        }
        Ok(all_passed)
    }
}

/// `text`, followed by `: note` when a note is given.
fn with_note(text: String, note: &str) -> String {
    if note.is_empty() {
        text
    } else {
        format!("{text}: {note}")
    }
}
