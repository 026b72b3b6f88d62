//! One rollout's state machine: the task that holds its steps, moves it on, pauses, resumes,
//! rolls it back or aborts it, and acts on the verbs sent to it. It is the only writer of its
//! rollout's records while it runs, in one leadership term.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::super::plan::{CheckedPlan, OnFailure};
use super::super::split::{self, Layout, percent_text, share, split_weights, weights_at};
use super::super::{Event, Phase, Rebase, RolloutState, now_ms};
use super::hold::{GateBook, HoldEnd, Input, next_input};
use super::status::{RolloutError, RolloutStatus};
use super::{Command, READY_POLL, RUNNER_ACTOR, RolloutRunner, Term, Verb, blocking, with_note};
use crate::authority::{AuthorityError, RolloutChange};

/// Why a rollout's task ends before its rollout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// This replica does not drive rollouts (any more) in the task's term: nothing more is
    /// written.
    Halt,
    /// A record clashed with a revision appended elsewhere: the task starts again from the
    /// journal.
    Reload,
}

/// Drives one rollout.
pub(super) struct Driver {
    pub(super) runner: Arc<RolloutRunner>,
    /// The leadership term the task writes in.
    term: Term,
    pub(super) flag: String,
    pub(super) checked: Arc<CheckedPlan>,
    pub(super) state: RolloutState,
    /// How the steps are laid over `state.base`.
    pub(super) layout: Layout,
    pub(super) book: GateBook,
    /// Whether the store has loaded every source (only then may the split move).
    ready: bool,
    /// Set when the task must end before the rollout does.
    pub(super) exit: Option<Exit>,
}

/// Whether `e` is the authority refusing a change as invalid for the flag (as opposed to
/// failing to record it).
fn is_refusal(e: &RolloutError) -> bool {
    matches!(
        e,
        RolloutError::UnknownFlag(_)
            | RolloutError::Authority(AuthorityError::Invalid(_) | AuthorityError::EmptyPatch)
    )
}

impl Driver {
    pub(super) fn new(
        runner: Arc<RolloutRunner>,
        term: Term,
        flag: String,
        checked: CheckedPlan,
        state: RolloutState,
        layout: Layout,
    ) -> Driver {
        let book = GateBook::new(Some(&checked), &state.counters);
        Driver {
            runner,
            term,
            flag,
            checked: Arc::new(checked),
            state,
            layout,
            book,
            ready: false,
            exit: None,
        }
    }

    /// Shows the driver's state in the runner's slot.
    pub(super) fn publish(&self, problem: Option<String>) {
        self.runner
            .publish(&self.flag, &self.state, &self.book.statuses, problem);
    }

    pub(super) fn status(&self) -> Result<RolloutStatus, RolloutError> {
        self.runner.status(&self.flag)
    }

    pub(super) fn step_hold(&self) -> Duration {
        self.state
            .step
            .checked_sub(1)
            .and_then(|i| self.checked.plan.steps.get(i))
            .map_or(Duration::ZERO, |s| s.hold)
    }

    fn left(&self) -> Duration {
        Duration::from_millis(self.state.remaining_ms(now_ms()))
    }

    /// Records `event` (changing the override as `change` says) and applies it to the state.
    /// When the journal cannot record it, the rollout pauses in memory (the journal's state
    /// resumes after a restart); when the authority refuses the change, nothing changes. When
    /// this replica no longer drives rollouts, or the record clashed with a revision appended
    /// elsewhere, nothing changes either and the task ends ([`Exit`]).
    pub(super) async fn record(
        &mut self,
        event: Event,
        change: RolloutChange,
        actor: &str,
        reason: String,
    ) -> Result<(), RolloutError> {
        let result = self
            .runner
            .record(self.term, &self.flag, &event, change, actor, reason.clone())
            .await;
        match result {
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
            Err(e) if matches!(e, RolloutError::NotController) || e.is_deposed() => {
                tracing::info!(flag = %self.flag, error = %e, %reason, "a rollout change was not made: this replica does not drive rollouts now");
                self.exit = Some(Exit::Halt);
                Err(e)
            }
            Err(e @ RolloutError::Authority(AuthorityError::Conflict { .. })) => {
                tracing::info!(flag = %self.flag, error = %e, %reason, "a rollout change clashed with a revision made elsewhere");
                self.exit = Some(Exit::Reload);
                Err(e)
            }
            Err(e) if is_refusal(&e) => {
                tracing::warn!(flag = %self.flag, error = %e, %reason, "a rollout change was refused");
                self.publish(Some(format!("could not apply `{reason}`: {e}")));
                Err(e)
            }
            Err(e) => {
                tracing::error!(flag = %self.flag, error = %e, %reason, "could not record a rollout change");
                if self.state.phase == Phase::Running {
                    self.state.hold_ms = self.state.remaining_ms(now_ms());
                    self.state.phase = Phase::Paused;
                    self.state.at_ms = now_ms();
                    self.state.reason = Some(format!("could not record: {reason}"));
                }
                self.publish(Some(format!("could not record `{reason}`: {e}")));
                Err(e)
            }
        }
    }

    /// Runs the rollout until it ends or the runner stops; returns why it ended early, if it
    /// did. A rollout resumed after a restart or a take-over (`wait_ready`) first waits for
    /// the store to load every source, answering verbs meanwhile.
    pub(super) async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
        wait_ready: bool,
    ) -> Option<Exit> {
        if wait_ready && !self.wait_ready(&mut rx, &mut stop).await {
            return self.exit;
        }
        self.ready = true;
        loop {
            if self.exit.is_some() {
                return self.exit;
            }
            match self.state.phase {
                Phase::Completed | Phase::RolledBack | Phase::Aborted => break,
                Phase::Paused => match next_input(&mut rx, &mut stop, None).await {
                    Input::Stop => return None,
                    Input::Timer => {}
                    Input::Command(cmd) => {
                        let left = Duration::from_millis(self.state.hold_ms);
                        self.on_command(cmd, left).await;
                    }
                },
                Phase::Running => match self.hold(&mut rx, &mut stop).await {
                    HoldEnd::Stop => return None,
                    HoldEnd::Done => {
                        let _ = self.advance(None, None).await;
                    }
                    HoldEnd::Command(cmd, left) => self.on_command(cmd, left).await,
                    HoldEnd::Failed { gate, detail, left } => {
                        self.on_failure(&gate, &detail, left).await;
                    }
                    HoldEnd::Inconclusive { gate, detail, left } => {
                        let reason =
                            format!("rollout paused: gate '{gate}' inconclusive: {detail}");
                        let _ = self.pause(left, RUNNER_ACTOR, reason).await;
                    }
                    HoldEnd::Interrupted => {}
                },
            }
        }
        self.publish(None);
        None
    }

    /// Waits until the store has loaded every source; a resumed rollout must not move the split
    /// before its flag is loaded. Verbs are answered meanwhile (pause and abort act; resume and
    /// promote need the flag). Returns false when the runner stops or the task must end.
    async fn wait_ready(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        while !self.runner.authority.store().is_ready() {
            match next_input(rx, stop, Some(Instant::now() + READY_POLL)).await {
                Input::Stop => return false,
                Input::Timer => {}
                Input::Command(cmd) => {
                    let left = self.left();
                    self.on_command(cmd, left).await;
                    if self.exit.is_some() {
                        return false;
                    }
                    if self.state.phase.is_terminal() {
                        return true;
                    }
                }
            }
        }
        true
    }

    /// Acts on a verb (`left`: the hold time left) and answers it. A verb whose caller has
    /// gone is dropped: it is not acted on later.
    pub(super) async fn on_command(&mut self, cmd: Command, left: Duration) {
        if cmd.reply.is_closed() {
            tracing::info!(flag = %self.flag, verb = ?cmd.verb, "dropping a rollout verb whose caller has gone");
            return;
        }
        let result = match (cmd.verb, self.state.phase) {
            (_, phase) if phase.is_terminal() => Err(RolloutError::Finished {
                flag: self.flag.clone(),
                phase,
            }),
            (Verb::Pause, Phase::Paused) | (Verb::Resume, Phase::Running) => Ok(()),
            (Verb::Pause, _) => {
                let reason = with_note(format!("rollout paused by {}", cmd.actor), &cmd.reason);
                self.pause(left, &cmd.actor, reason).await
            }
            (Verb::Resume, _) => self.resume(&cmd).await,
            (Verb::Promote, _) => self.promote(&cmd).await,
            (Verb::Abort, _) => self.abort(&cmd).await,
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
            remaining_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            reason: reason.clone(),
        };
        self.record(event, RolloutChange::Keep, actor, reason).await
    }

    /// Resumes a paused rollout: a split changed by hand is accepted (the next steps start from
    /// it), and the gates' counters start over.
    async fn resume(&mut self, cmd: &Command) -> Result<(), RolloutError> {
        if !self.ready {
            return Err(RolloutError::NotReady(self.flag.clone()));
        }
        let rebase = self.accepted_split().await?;
        let mut text = format!("rollout resumed by {}", cmd.actor);
        if rebase.is_some() {
            text.push_str(", going on from the split as changed outside the rollout");
        }
        let reason = with_note(text, &cmd.reason);
        let change = match &rebase {
            // The accepted split becomes the rollout's own (it may be served only from the
            // file now, if the override was cleared).
            Some(r) => RolloutChange::Weights(r.base.clone()),
            None => RolloutChange::Keep,
        };
        let event = Event::Resume {
            rollout: self.state.id,
            at_ms: now_ms(),
            remaining_ms: self.state.hold_ms,
            rebase: rebase.clone(),
        };
        self.record(event, change, &cmd.actor, reason).await?;
        if let Some(r) = rebase {
            self.layout = r.layout;
        }
        self.book.reset();
        self.publish(None);
        Ok(())
    }

    async fn promote(&mut self, cmd: &Command) -> Result<(), RolloutError> {
        if !self.ready {
            return Err(RolloutError::NotReady(self.flag.clone()));
        }
        let rebase = self.accepted_split().await?;
        self.advance(Some(cmd), rebase).await
    }

    /// Ends the rollout by hand, putting back the flag's override from before it.
    async fn abort(&mut self, cmd: &Command) -> Result<(), RolloutError> {
        let reason = with_note(format!("rollout aborted by {}", cmd.actor), &cmd.reason);
        let event = Event::Abort {
            rollout: self.state.id,
            at_ms: now_ms(),
            reason: reason.clone(),
        };
        let change = self.state.restore_change();
        self.record(event, change, &cmd.actor, reason).await
    }

    async fn on_failure(&mut self, gate: &str, detail: &str, left: Duration) {
        let status = self.book.statuses.iter().find(|g| g.name == gate);
        let failures = status.map_or(0, |g| g.failures);
        let limit = status.map_or(0, |g| g.failure_limit);
        let why =
            format!("gate '{gate}' failed: {detail} ({failures} failed checks, limit {limit})");
        match self.checked.plan.on_failure {
            OnFailure::Rollback => {
                let event = Event::Rollback {
                    rollout: self.state.id,
                    at_ms: now_ms(),
                    reason: why.clone(),
                    gate: Some(gate.to_owned()),
                };
                let change = self.state.restore_change();
                let reason = format!("rollout rolled back: {why}");
                let _ = self.record(event, change, RUNNER_ACTOR, reason).await;
            }
            OnFailure::Pause => {
                let _ = self
                    .pause(left, RUNNER_ACTOR, format!("rollout paused: {why}"))
                    .await;
            }
        }
    }

    /// Describes how the flag's split differs from what the rollout set, if it does.
    fn diverged(&self) -> Option<String> {
        let normalize = |w: &[(String, u32)]| {
            let mut v: Vec<(String, u32)> = w.iter().filter(|(_, w)| *w > 0).cloned().collect();
            v.sort();
            v
        };
        let actual = self
            .runner
            .authority
            .override_of(&self.flag)
            .and_then(|p| p.weights);
        if actual.as_deref().map(normalize) == Some(normalize(&self.state.weights)) {
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
            "the split of '{}' was changed outside the rollout (now {shown}); resume to go on \
             from that split, or abort to put back the override from before the rollout",
            self.flag
        ))
    }

    /// When the split was changed outside the rollout, the split as served now, with the
    /// remaining steps laid over it: a human resuming or promoting accepts it.
    async fn accepted_split(&self) -> Result<Option<Rebase>, RolloutError> {
        if self.diverged().is_none() {
            return Ok(None);
        }
        let authority = self.runner.authority.clone();
        let flag = self.flag.clone();
        let basis = blocking(move || authority.rollout_basis(&flag).map_err(Into::into)).await?;
        let split = basis.split.ok_or_else(|| RolloutError::NoSplit {
            flag: self.flag.clone(),
            detail: "its targeting no longer has a single fractional split".into(),
        })?;
        let base = split_weights(&self.flag, &split)?;
        let plan = &self.checked.plan;
        let steps: Vec<f64> = plan
            .steps
            .iter()
            .skip(self.state.step)
            .map(|s| s.weight)
            .collect();
        let layout = split::layout(
            &self.flag,
            &base,
            &plan.variant,
            &plan.baseline,
            &steps,
            self.checked.scale,
        )?;
        Ok(Some(Rebase { base, layout }))
    }

    /// Moves to the next step, or completes after the last one. Without a human (`promoted`),
    /// a split changed outside the rollout pauses it instead; a step the flag no longer accepts
    /// (its flag or variant is gone) pauses it too.
    async fn advance(
        &mut self,
        promoted: Option<&Command>,
        rebase: Option<Rebase>,
    ) -> Result<(), RolloutError> {
        if promoted.is_none()
            && let Some(why) = self.diverged()
        {
            let left = self.left();
            return self
                .pause(left, RUNNER_ACTOR, format!("rollout paused: {why}"))
                .await;
        }
        let (actor, mut note) = match promoted {
            Some(cmd) => (cmd.actor.clone(), format!(" (promoted by {})", cmd.actor)),
            None => (RUNNER_ACTOR.to_owned(), String::new()),
        };
        if let Some(cmd) = promoted.filter(|c| !c.reason.is_empty()) {
            note = format!("{note}: {}", cmd.reason);
        }
        let plan = self.checked.plan.clone();
        let current = self.state.step;
        let Some(step) = plan.steps.get(current).cloned() else {
            let event = Event::Complete {
                rollout: self.state.id,
                at_ms: now_ms(),
            };
            let reason = format!(
                "rollout completed: {} at {}%{note}",
                plan.variant,
                percent_text(self.state.weight())
            );
            return self
                .record(event, RolloutChange::Keep, &actor, reason)
                .await;
        };
        let next = current + 1;
        let (base, layout) = match &rebase {
            Some(r) => (r.base.clone(), r.layout),
            None => (self.state.base.clone(), self.layout),
        };
        let weights = weights_at(&base, &plan.variant, &plan.baseline, layout, step.weight);
        let served = share(&weights, &plan.variant, &plan.baseline);
        let event = Event::Step {
            rollout: self.state.id,
            step: next,
            weight: step.weight,
            weights: weights.clone(),
            rebase: rebase.clone(),
            at_ms: now_ms(),
            hold_ms: u64::try_from(step.hold.as_millis()).unwrap_or(u64::MAX),
            promoted: promoted.is_some(),
        };
        let reason = format!(
            "rollout step {next}/{}: {} {}%{note}",
            plan.steps.len(),
            plan.variant,
            percent_text(served)
        );
        match self
            .record(event, RolloutChange::Weights(weights), &actor, reason)
            .await
        {
            Ok(()) => {
                if let Some(r) = rebase {
                    self.layout = r.layout;
                }
                self.book.new_step();
                self.publish(None);
                Ok(())
            }
            Err(e) if is_refusal(&e) => {
                let why = format!("rollout paused: step {next} cannot be applied: {e}");
                let left = self.left();
                let _ = self.pause(left, RUNNER_ACTOR, why).await;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use flagd_evaluator::OverridePatch;
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::super::super::Phase;
    use super::super::super::gates::Verdict;
    use super::super::testkit::{FLAGS, Script, open, plan, store, until, until_phase};
    use super::super::{Command, RolloutError, Verb};

    #[tokio::test(start_paused = true)]
    async fn a_verb_reaches_the_rollout_while_a_gate_check_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let gates = Script::new(None);
        let (authority, runner) = open(dir.path(), store(FLAGS, 1), gates.clone());
        runner
            .start("ramp", plan(&[(10.0, 3600), (100.0, 0)], ""), "ci", "")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(gates.checks(), 1, "a check is under way");
        let asked = Instant::now();
        let status = runner.abort("ramp", "ops", "stop").await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(status.phase, Phase::Aborted);
        // The flag had no override: it has none again.
        assert_eq!(authority.override_of("ramp"), None);
        runner.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_resumed_rollout_answers_verbs_while_the_sources_load() {
        let dir = tempfile::tempdir().unwrap();
        {
            let gates = Script::new(Some(Verdict::Pass));
            let (_, runner) = open(dir.path(), store(FLAGS, 1), gates);
            runner
                .start("ramp", plan(&[(10.0, 3600), (100.0, 0)], ""), "ci", "")
                .await
                .unwrap();
            runner.stop().await;
        }
        // The second source never loads: the store is not ready.
        let (authority, runner) = open(dir.path(), store(FLAGS, 2), Script::new(None));
        assert!(!authority.store().is_ready());
        let asked = Instant::now();
        let err = runner.promote("ramp", "ops", "").await.unwrap_err();
        assert!(matches!(err, RolloutError::NotReady(_)), "{err}");
        let paused = runner.pause("ramp", "ops", "").await.unwrap();
        assert_eq!(paused.phase, Phase::Paused);
        let aborted = runner.abort("ramp", "ops", "").await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(aborted.phase, Phase::Aborted);
        assert_eq!(authority.override_of("ramp"), None);
        runner.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_verb_whose_caller_has_gone_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_, runner) = open(
            dir.path(),
            store(FLAGS, 1),
            Script::new(Some(Verdict::Pass)),
        );
        runner
            .start("ramp", plan(&[(10.0, 3600), (100.0, 0)], ""), "ci", "")
            .await
            .unwrap();
        let inbox = runner.lock()["ramp"].commands.clone().unwrap();
        let (reply, answer) = oneshot::channel();
        drop(answer);
        let command = Command {
            verb: Verb::Pause,
            actor: "ops".into(),
            reason: String::new(),
            reply,
        };
        inbox.send(command).await.unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let status = runner.status("ramp").unwrap();
        assert_eq!(status.phase, Phase::Running);
        runner.stop().await;
    }

    const TRI: &str = r#"{"flags": {
      "ramp": {"state": "ENABLED", "variants": {"holdout": "h", "stable": "s", "canary": "c"},
               "defaultVariant": "stable",
               "targeting": {"fractional": [["holdout", 10], ["stable", 90], ["canary", 0]]}}
    }}"#;

    #[tokio::test(start_paused = true)]
    async fn resume_goes_on_from_a_split_changed_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let (authority, runner) = open(dir.path(), store(TRI, 1), Script::new(Some(Verdict::Pass)));
        runner
            .start(
                "ramp",
                plan(&[(10.0, 5), (50.0, 5), (100.0, 0)], ""),
                "ci",
                "",
            )
            .await
            .unwrap();
        let by_hand = OverridePatch {
            weights: Some(vec![
                ("holdout".into(), 30),
                ("stable".into(), 60),
                ("canary".into(), 10),
            ]),
            ..OverridePatch::default()
        };
        authority
            .set_override("ramp", by_hand, "ops", "more holdout", None)
            .unwrap();
        let paused = until_phase(&runner, "ramp", Phase::Paused).await;
        assert!(
            paused
                .reason
                .unwrap()
                .contains("resume to go on from that split"),
        );
        let resumed = runner.resume("ramp", "ops", "").await.unwrap();
        assert_eq!(resumed.phase, Phase::Running);
        let step2 = until(&runner, "ramp", |s| s.step == 2).await;
        // The holdout keeps its 30 % from the hand-made split; canary has half of the rest.
        let w = |name: &str| step2.weights[name].as_u64().unwrap();
        let total = w("holdout") + w("stable") + w("canary");
        assert_eq!((w("holdout") * 100 / total, step2.weight), (30, 50.0));
        let revisions = authority.revisions(Some("ramp"));
        let resume = revisions
            .iter()
            .find(|r| r.reason.starts_with("rollout resumed"))
            .unwrap();
        assert!(
            resume.reason.contains("going on from the split as changed"),
            "{}",
            resume.reason
        );
        runner.stop().await;
    }
}
