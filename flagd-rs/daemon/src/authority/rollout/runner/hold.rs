//! Holding a step: the gate checks a rollout makes every interval while it holds a step, their
//! counters (and when those must be recorded), and the wait itself, which keeps answering verbs
//! while a check is under way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::super::gates::{GateContext, GateEvaluator, GateOutcome, Verdict};
use super::super::plan::CheckedPlan;
use super::super::{Event, GateCounters, Phase, now_ms};
use super::driver::Driver;
use super::status::{Counts, GateStatus};
use super::{Command, RUNNER_ACTOR, Verb};
use crate::authority::RolloutChange;

/// Every gate's results in the current rollout, and the counters last recorded in the journal.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GateBook {
    /// The gates' results, in plan order.
    pub(super) statuses: Vec<GateStatus>,
    /// The counters as recorded: per gate the most failures and inconclusive answers in a row
    /// seen since the step (or the resume) began, so a restart never starts below them.
    recorded: BTreeMap<String, GateCounters>,
}

/// What one round of checks found.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct Tally {
    /// Every gate passed.
    pub(super) all_passed: bool,
    /// The first gate past its failure limit, with the check's detail.
    pub(super) failed: Option<(String, String)>,
    /// The first gate past the inconclusive limit, with the check's detail.
    pub(super) inconclusive: Option<(String, String)>,
}

impl GateBook {
    /// The book of `checked`'s gates, starting from the recorded `counters`.
    pub(super) fn new(
        checked: Option<&CheckedPlan>,
        counters: &BTreeMap<String, GateCounters>,
    ) -> GateBook {
        let statuses = checked
            .map(|c| {
                c.gates
                    .iter()
                    .map(|g| {
                        let n = counters.get(&g.name).copied().unwrap_or_default();
                        GateStatus {
                            name: g.name.clone(),
                            kind: g.kind_name(),
                            last: None,
                            checked_at: None,
                            failures: n.failures,
                            failure_limit: g.failure_limit,
                            inconclusive_in_a_row: n.inconclusive,
                            checks: Counts::default(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        GateBook {
            statuses,
            recorded: counters.clone(),
        }
    }

    /// Counts one round of `outcomes` (in gate order).
    pub(super) fn tally(
        &mut self,
        flag: &str,
        outcomes: Vec<GateOutcome>,
        inconclusive_limit: u32,
    ) -> Tally {
        let when = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let mut tally = Tally {
            all_passed: outcomes.iter().all(|o| o.verdict == Verdict::Pass),
            ..Tally::default()
        };
        for (status, outcome) in self.statuses.iter_mut().zip(outcomes) {
            match outcome.verdict {
                Verdict::Pass => {
                    status.checks.pass += 1;
                    status.inconclusive_in_a_row = 0;
                }
                Verdict::Fail => {
                    status.checks.fail += 1;
                    status.failures = status.failures.saturating_add(1);
                    status.inconclusive_in_a_row = 0;
                    tracing::warn!(flag, gate = %status.name, detail = %outcome.detail, failures = status.failures, "rollout gate failed");
                    if status.failures > status.failure_limit && tally.failed.is_none() {
                        tally.failed = Some((status.name.clone(), outcome.detail.clone()));
                    }
                }
                Verdict::Inconclusive => {
                    status.checks.inconclusive += 1;
                    status.inconclusive_in_a_row = status.inconclusive_in_a_row.saturating_add(1);
                    tracing::warn!(flag, gate = %status.name, detail = %outcome.detail, "rollout gate inconclusive");
                    if status.inconclusive_in_a_row > inconclusive_limit
                        && tally.inconclusive.is_none()
                    {
                        tally.inconclusive = Some((status.name.clone(), outcome.detail.clone()));
                    }
                }
            }
            status.last = Some(outcome);
            status.checked_at = Some(when.clone());
        }
        tally
    }

    /// The counters to record when some gate has gone past what the journal holds, or `None`.
    /// Recorded counters only ever grow until the next step or resume, so a gate that flaps
    /// between answers costs a bounded number of records.
    pub(super) fn to_record(&self) -> Option<BTreeMap<String, GateCounters>> {
        let mut grew = false;
        let mut out = BTreeMap::new();
        for s in &self.statuses {
            let r = self.recorded.get(&s.name).copied().unwrap_or_default();
            grew |= s.failures > r.failures || s.inconclusive_in_a_row > r.inconclusive;
            out.insert(
                s.name.clone(),
                GateCounters {
                    failures: s.failures.max(r.failures),
                    inconclusive: s.inconclusive_in_a_row.max(r.inconclusive),
                },
            );
        }
        grew.then_some(out)
    }

    /// Notes that `counters` are in the journal.
    pub(super) fn mark_recorded(&mut self, counters: BTreeMap<String, GateCounters>) {
        self.recorded = counters;
    }

    /// A human resumed: every counter starts over.
    pub(super) fn reset(&mut self) {
        for g in &mut self.statuses {
            g.failures = 0;
            g.inconclusive_in_a_row = 0;
        }
        self.recorded.clear();
    }

    /// A new step: inconclusive answers are counted over (failures carry on).
    pub(super) fn new_step(&mut self) {
        for g in &mut self.statuses {
            g.inconclusive_in_a_row = 0;
        }
        for c in self.recorded.values_mut() {
            c.inconclusive = 0;
        }
    }
}

/// Checks every gate of `checked` once, concurrently. Owns what it needs, so the rollout's task
/// can go on answering verbs while it runs (and drop it to cancel the checks).
fn check_all(
    evaluator: Arc<dyn GateEvaluator>,
    checked: Arc<CheckedPlan>,
    ctx: GateContext,
) -> BoxFuture<'static, Vec<GateOutcome>> {
    Box::pin(async move {
        futures::future::join_all(checked.gates.iter().map(|g| evaluator.check(g, &ctx))).await
    })
}

/// What woke a rollout's task.
pub(super) enum Input {
    Stop,
    Command(Command),
    Timer,
}

/// Waits for the runner to stop, a verb, or `until`.
pub(super) async fn next_input(
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
pub(super) enum HoldEnd {
    /// The runner is stopping.
    Stop,
    /// The hold is over and its last check passed.
    Done,
    /// A verb to act on, with the hold time left.
    Command(Command, Duration),
    /// A gate went past its failure limit.
    Failed {
        gate: String,
        detail: String,
        left: Duration,
    },
    /// A gate went past the inconclusive limit.
    Inconclusive {
        gate: String,
        detail: String,
        left: Duration,
    },
    /// The rollout's phase changed (a record could not be made and it paused), or its task
    /// must end.
    Interrupted,
}

impl Driver {
    /// A verb that arrives during a hold: a resume is answered at once (the rollout runs), a
    /// verb whose caller has gone is dropped, any other ends the hold.
    fn during_hold(&self, cmd: Command, deadline: Instant) -> Option<HoldEnd> {
        if cmd.reply.is_closed() {
            tracing::info!(flag = %self.flag, verb = ?cmd.verb, "dropping a rollout verb whose caller has gone");
            return None;
        }
        if cmd.verb == Verb::Resume {
            let _ = cmd.reply.send(self.status());
            return None;
        }
        Some(HoldEnd::Command(
            cmd,
            deadline.saturating_duration_since(Instant::now()),
        ))
    }

    /// Holds the current step: checks gates every interval until the hold is over, a gate
    /// decides otherwise, or a verb arrives.
    pub(super) async fn hold(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        stop: &mut watch::Receiver<bool>,
    ) -> HoldEnd {
        let start = Instant::now();
        let deadline = start + Duration::from_millis(self.state.remaining_ms(now_ms()));
        let interval = self.checked.plan.interval;
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
                Input::Command(cmd) => {
                    if let Some(end) = self.during_hold(cmd, deadline) {
                        return end;
                    }
                }
                Input::Timer => {
                    let now = Instant::now();
                    // At the end of the hold, check once more unless a check just ran.
                    let due = now >= next_check
                        || (now >= deadline
                            && last_check.is_none_or(|t| now.duration_since(t) >= interval / 2));
                    if gated && due {
                        match self.check_gates(rx, stop, deadline).await {
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

    /// Checks every gate once and counts the results, answering verbs meanwhile (any verb but
    /// resume cancels the check). Returns whether every gate passed, or how the hold ends.
    async fn check_gates(
        &mut self,
        rx: &mut mpsc::Receiver<Command>,
        stop: &mut watch::Receiver<bool>,
        deadline: Instant,
    ) -> Result<bool, HoldEnd> {
        let plan = &self.checked.plan;
        let ctx = GateContext {
            flag: self.flag.clone(),
            rollout: self.state.id,
            variant: plan.variant.clone(),
            baseline: plan.baseline.clone(),
            step: self.state.step,
            weight: self.state.weight(),
        };
        let mut check = check_all(self.runner.gates.clone(), self.checked.clone(), ctx);
        let outcomes = loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return Err(HoldEnd::Stop),
                cmd = rx.recv() => match cmd {
                    None => return Err(HoldEnd::Stop),
                    Some(cmd) => {
                        if let Some(end) = self.during_hold(cmd, deadline) {
                            return Err(end);
                        }
                    }
                },
                outcomes = &mut check => break outcomes,
            }
        };
        let tally = self
            .book
            .tally(&self.flag, outcomes, self.checked.plan.inconclusive_limit);
        self.publish(None);
        let left = deadline.saturating_duration_since(Instant::now());
        // A definite failure outweighs an inconclusive answer of another gate.
        if let Some((gate, detail)) = tally.failed {
            return Err(HoldEnd::Failed { gate, detail, left });
        }
        if let Some((gate, detail)) = tally.inconclusive {
            return Err(HoldEnd::Inconclusive { gate, detail, left });
        }
        if let Some(counters) = self.book.to_record() {
            let text = counters
                .iter()
                .map(|(name, c)| {
                    format!(
                        "'{name}' {} failed, {} inconclusive in a row",
                        c.failures, c.inconclusive
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let event = Event::Gates {
                rollout: self.state.id,
                counters: counters.clone(),
            };
            let reason = format!("rollout gate counts: {text}");
            match self
                .record(event, RolloutChange::Keep, RUNNER_ACTOR, reason)
                .await
            {
                Ok(()) => self.book.mark_recorded(counters),
                Err(_) if self.state.phase != Phase::Running || self.exit.is_some() => {
                    return Err(HoldEnd::Interrupted);
                }
                Err(_) => {}
            }
        }
        Ok(tally.all_passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::rollout::plan;

    fn checked(limit: u32) -> CheckedPlan {
        let text = format!(
            "variant: c\nbaseline: s\nfailureLimit: {limit}\nsteps: [{{weight: 10}}]\ngates:\n  - {{name: a, webhook: 'http://127.0.0.1:1/'}}\n  - {{name: b, webhook: 'http://127.0.0.1:1/'}}\n"
        );
        plan::parse(text.as_bytes()).unwrap().check("f").unwrap()
    }

    fn outcome(v: Verdict) -> GateOutcome {
        GateOutcome::new(v, None, v.as_str())
    }

    #[test]
    fn counters_start_from_the_journal_and_act_past_the_limit() {
        let mut recorded = BTreeMap::new();
        recorded.insert(
            "a".to_owned(),
            GateCounters {
                failures: 2,
                inconclusive: 0,
            },
        );
        let mut book = GateBook::new(Some(&checked(2)), &recorded);
        assert_eq!(book.statuses[0].failures, 2);
        // The third failure was recorded before a restart; the next one acts.
        let t = book.tally("f", vec![outcome(Verdict::Fail), outcome(Verdict::Pass)], 0);
        assert_eq!(t.failed.map(|f| f.0).as_deref(), Some("a"));
        assert!(!t.all_passed);
    }

    #[test]
    fn only_growth_past_the_journal_is_recorded() {
        let mut book = GateBook::new(Some(&checked(5)), &BTreeMap::new());
        book.tally("f", vec![outcome(Verdict::Pass), outcome(Verdict::Pass)], 3);
        assert_eq!(book.to_record(), None);
        book.tally(
            "f",
            vec![outcome(Verdict::Inconclusive), outcome(Verdict::Pass)],
            3,
        );
        let first = book.to_record().unwrap();
        assert_eq!(first["a"].inconclusive, 1);
        book.mark_recorded(first);
        // A flapping gate (pass, inconclusive, pass, ...) adds no records.
        for _ in 0..5 {
            book.tally("f", vec![outcome(Verdict::Pass), outcome(Verdict::Pass)], 3);
            book.tally(
                "f",
                vec![outcome(Verdict::Inconclusive), outcome(Verdict::Pass)],
                3,
            );
            assert_eq!(book.to_record(), None);
        }
        book.tally("f", vec![outcome(Verdict::Pass), outcome(Verdict::Fail)], 3);
        let second = book.to_record().unwrap();
        assert_eq!(
            (second["a"].inconclusive, second["b"].failures),
            (1, 1),
            "{second:?}"
        );
        book.new_step();
        assert_eq!(book.statuses[0].inconclusive_in_a_row, 0);
        assert_eq!(book.statuses[1].failures, 1);
        book.reset();
        assert_eq!(book.statuses[1].failures, 0);
    }
}

#[cfg(test)]
mod paused {
    use std::time::Duration;

    use super::super::super::Phase;
    use super::super::super::gates::Verdict;
    use super::super::testkit::{FLAGS, Script, open, plan, store, until, until_phase};

    #[tokio::test(start_paused = true)]
    async fn failure_counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let p = plan(&[(10.0, 3600), (100.0, 0)], "failureLimit: 2");
        {
            let (_, runner) = open(
                dir.path(),
                store(FLAGS, 1),
                Script::new(Some(Verdict::Fail)),
            );
            runner.start("ramp", p, "ci", "").await.unwrap();
            until(&runner, "ramp", |s| s.gates[0].failures == 2).await;
            runner.stop().await;
        }
        let gates = Script::new(Some(Verdict::Fail));
        let (authority, runner) = open(dir.path(), store(FLAGS, 1), gates.clone());
        let status = runner.status("ramp").unwrap();
        assert_eq!(
            (status.phase, status.gates[0].failures),
            (Phase::Running, 2)
        );
        // One more failure is past the limit of 2.
        let done = until_phase(&runner, "ramp", Phase::RolledBack).await;
        assert_eq!(gates.checks(), 1);
        assert!(done.reason.unwrap().contains("3 failed checks, limit 2"));
        assert_eq!(authority.override_of("ramp"), None);
        runner.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_moves_on_only_after_a_passing_check() {
        let dir = tempfile::tempdir().unwrap();
        let gates = Script::new(Some(Verdict::Inconclusive));
        let (_, runner) = open(dir.path(), store(FLAGS, 1), gates.clone());
        let p = plan(&[(10.0, 3), (100.0, 0)], "inconclusiveLimit: 1000");
        runner.start("ramp", p, "ci", "").await.unwrap();
        // Well past the 3 s hold, still at step 1, checking every second.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let status = runner.status("ramp").unwrap();
        assert_eq!((status.step, status.phase), (1, Phase::Running));
        assert!(gates.checks() >= 9, "{}", gates.checks());
        gates.set(Some(Verdict::Pass));
        until_phase(&runner, "ramp", Phase::Completed).await;
        runner.stop().await;
    }
}
