//! Progressive rollouts: a plan moves a flag's `fractional` split step by step towards a variant,
//! checking gates during every hold, and rolls back (or pauses) when a gate fails.
//!
//! A rollout lives entirely in the authority's journal: its start record holds the plan, the
//! flag's whole override as it was before (possibly none) and the split it starts from, and
//! every later change (a step, a pause, a resume, the gates' failure counters, the end) is one
//! more rollout revision, the split changes included in the same revision. [`replay`] folds those
//! records back into each flag's rollout, so a daemon that restarts (even after `kill -9`)
//! resumes a rollout where the journal says it was, with the hold time left as of the last
//! record and the gates' failure counts it had. An abort or rollback puts back exactly the
//! override the flag had before the rollout, and is recorded even when the flag or its variants
//! are gone.
//!
//! Module map: [`plan`] parses and validates plans, [`split`] turns step percentages into split
//! weights, [`gates`] checks Prometheus and webhook gates, [`runner`] drives rollouts (one task
//! per active rollout), [`api`] serves the verbs under `/v1/rollouts`, [`cli`] is the
//! `flagd-rs rollout` client, [`metrics`] exports phases, weights and gate results.

pub mod api;
pub mod cli;
pub mod gates;
pub mod metrics;
pub mod plan;
pub mod runner;
pub mod split;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use flagd_evaluator::OverridePatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use api::router;
pub use gates::{GateContext, GateEvaluator, GateOutcome, HttpGates, Verdict};
pub use metrics::RolloutCollector;
pub use plan::{CheckedPlan, OnFailure, Plan, PlanError, Step};
pub use runner::{GateStatus, RolloutError, RolloutRunner, RolloutStatus};
pub use split::{Layout, Weights, share};

use super::{AuthorityError, RolloutChange};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Holding a step and checking gates.
    Running,
    /// Waiting for a human (paused by hand, by an inconclusive gate, or by a failed gate whose
    /// plan says to pause).
    Paused,
    /// Every step was held and passed.
    Completed,
    /// A gate failed and the split was put back.
    RolledBack,
    /// Aborted by hand; the split was put back.
    Aborted,
}

impl Phase {
    /// Every phase, for metrics.
    pub const ALL: [Phase; 5] = [
        Phase::Running,
        Phase::Paused,
        Phase::Completed,
        Phase::RolledBack,
        Phase::Aborted,
    ];

    /// The phase's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Completed => "completed",
            Phase::RolledBack => "rolled_back",
            Phase::Aborted => "aborted",
        }
    }

    /// Whether the rollout is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Completed | Phase::RolledBack | Phase::Aborted)
    }
}

/// The flag's override before a rollout started (`None`: it had none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prior {
    /// The override, if the flag had one.
    #[serde(rename = "override", default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<OverridePatch>,
}

/// A split a human accepted (by resuming or promoting a rollout after the split was changed
/// outside it): the steps that follow start from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rebase {
    /// The split as served when it was accepted, in entry order.
    pub base: Weights,
    /// How the remaining steps are laid over it.
    pub layout: Layout,
}

/// A gate's counters that outlive a restart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateCounters {
    /// Failed checks counted against the gate's failure limit.
    #[serde(default)]
    pub failures: u32,
    /// Inconclusive checks in a row (as recorded: never fewer than there were).
    #[serde(default)]
    pub inconclusive: u32,
}

/// A rollout journal record (the `event` of a rollout revision). Every record but the start
/// names its rollout by the revision that started it.
///
/// Fields added after the first version are optional, so records written before them still
/// replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A rollout started and its first step was applied.
    #[serde(rename_all = "camelCase")]
    Start {
        /// The plan.
        plan: Box<Plan>,
        /// The split's weights before the rollout, in split order.
        before: Weights,
        /// The flag's whole override before the rollout, put back when it ends other than by
        /// completing (absent in records that predate it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prior: Option<Prior>,
        /// How the steps are laid over the split.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layout: Option<Layout>,
        /// The weights set by the first step.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        weights: Weights,
        /// The step applied (1).
        step: usize,
        /// Its weight in percent, as the plan says.
        weight: f64,
        /// Wall-clock time of the record, in Unix milliseconds.
        at_ms: u64,
        /// The step's hold.
        hold_ms: u64,
    },
    /// The rollout moved to another step.
    #[serde(rename_all = "camelCase")]
    Step {
        /// The rollout (its start revision).
        rollout: u64,
        /// The step applied (1-based).
        step: usize,
        /// Its weight in percent, as the plan says.
        weight: f64,
        /// The weights set.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        weights: Weights,
        /// A split changed by hand that a human accepted with this step.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rebase: Option<Rebase>,
        /// Record time, Unix milliseconds.
        at_ms: u64,
        /// The step's hold.
        hold_ms: u64,
        /// Whether a human skipped the rest of the previous hold.
        #[serde(default)]
        promoted: bool,
    },
    /// The rollout paused.
    #[serde(rename_all = "camelCase")]
    Pause {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
        /// Hold time left when it paused.
        remaining_ms: u64,
        /// Why.
        reason: String,
    },
    /// The rollout resumed its hold.
    #[serde(rename_all = "camelCase")]
    Resume {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
        /// Hold time left.
        remaining_ms: u64,
        /// A split changed by hand that the human accepted by resuming.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rebase: Option<Rebase>,
    },
    /// The gates' failure counters changed (recorded so that a restart does not reset them).
    #[serde(rename_all = "camelCase")]
    Gates {
        /// The rollout.
        rollout: u64,
        /// Every gate's counters, by gate name.
        counters: BTreeMap<String, GateCounters>,
    },
    /// The last hold passed.
    #[serde(rename_all = "camelCase")]
    Complete {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
    },
    /// A gate failed; the flag's override was put back as it was before the rollout.
    #[serde(rename_all = "camelCase")]
    Rollback {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
        /// Why.
        reason: String,
        /// The gate that failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gate: Option<String>,
    },
    /// Aborted by hand; the flag's override was put back as it was before the rollout.
    #[serde(rename_all = "camelCase")]
    Abort {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
        /// Why.
        reason: String,
    },
}

impl Event {
    /// The rollout the event belongs to (`None` for a start, which begins a new one).
    pub fn rollout(&self) -> Option<u64> {
        match self {
            Event::Start { .. } => None,
            Event::Step { rollout, .. }
            | Event::Pause { rollout, .. }
            | Event::Resume { rollout, .. }
            | Event::Gates { rollout, .. }
            | Event::Complete { rollout, .. }
            | Event::Rollback { rollout, .. }
            | Event::Abort { rollout, .. } => Some(*rollout),
        }
    }
}

/// A rollout as the journal records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The revision that started it (its id).
    pub id: u64,
    /// The flag.
    pub flag: String,
    /// The plan.
    pub plan: Plan,
    /// The split before the rollout, in split order.
    pub before: Weights,
    /// The flag's override before the rollout (`None` only for records that predate it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior: Option<Prior>,
    /// The split the steps are computed from: `before`, or a split changed by hand that a human
    /// accepted.
    pub base: Weights,
    /// How the steps are laid over `base` (`None` for old records: computed when resumed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// The weights the rollout set last (the split as served, unless changed outside it).
    pub weights: Weights,
    /// The current step (1-based).
    pub step: usize,
    /// The phase.
    pub phase: Phase,
    /// Hold time left as of `at_ms` (while running: counting down from then; while paused:
    /// what the hold has left when it resumes).
    pub hold_ms: u64,
    /// Wall-clock time of the last record, Unix milliseconds.
    pub at_ms: u64,
    /// When it started, Unix milliseconds.
    pub started_ms: u64,
    /// Why it paused or ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The gates' recorded counters, by gate name.
    pub counters: BTreeMap<String, GateCounters>,
    /// The last revision recorded for it.
    pub revision: u64,
}

impl RolloutState {
    /// The state a start record begins.
    pub fn started(revision: u64, flag: &str, event: &Event) -> Option<RolloutState> {
        let Event::Start {
            plan,
            before,
            prior,
            layout,
            weights,
            step,
            at_ms,
            hold_ms,
            ..
        } = event
        else {
            return None;
        };
        let mut state = RolloutState {
            id: revision,
            flag: flag.to_owned(),
            plan: (**plan).clone(),
            before: before.clone(),
            prior: prior.clone(),
            base: before.clone(),
            layout: *layout,
            weights: weights.clone(),
            step: *step,
            phase: Phase::Running,
            hold_ms: *hold_ms,
            at_ms: *at_ms,
            started_ms: *at_ms,
            reason: None,
            counters: BTreeMap::new(),
            revision,
        };
        if state.weights.is_empty() {
            state.weights = state.computed_weights(state.plan_weight());
        }
        Some(state)
    }

    /// Applies a later record of this rollout.
    pub fn apply(&mut self, revision: u64, event: &Event) {
        self.revision = revision;
        match event {
            Event::Start { .. } => {}
            Event::Step {
                step,
                weight,
                weights,
                rebase,
                at_ms,
                hold_ms,
                ..
            } => {
                if let Some(r) = rebase {
                    self.rebase(r);
                }
                self.step = *step;
                self.weights = if weights.is_empty() {
                    self.computed_weights(*weight)
                } else {
                    weights.clone()
                };
                self.at_ms = *at_ms;
                self.hold_ms = *hold_ms;
                self.phase = Phase::Running;
                self.reason = None;
                // A new step starts counting inconclusive answers over.
                for c in self.counters.values_mut() {
                    c.inconclusive = 0;
                }
            }
            Event::Pause {
                at_ms,
                remaining_ms,
                reason,
                ..
            } => {
                self.phase = Phase::Paused;
                self.at_ms = *at_ms;
                self.hold_ms = *remaining_ms;
                self.reason = Some(reason.clone());
            }
            Event::Resume {
                at_ms,
                remaining_ms,
                rebase,
                ..
            } => {
                if let Some(r) = rebase {
                    self.rebase(r);
                    self.weights = r.base.clone();
                }
                self.phase = Phase::Running;
                self.at_ms = *at_ms;
                self.hold_ms = *remaining_ms;
                self.reason = None;
                // A human resuming starts every gate's counters over.
                self.counters.clear();
            }
            Event::Gates { counters, .. } => self.counters = counters.clone(),
            Event::Complete { at_ms, .. } => {
                self.phase = Phase::Completed;
                self.at_ms = *at_ms;
                self.hold_ms = 0;
                self.reason = None;
            }
            Event::Rollback { at_ms, reason, .. } | Event::Abort { at_ms, reason, .. } => {
                self.phase = if matches!(event, Event::Abort { .. }) {
                    Phase::Aborted
                } else {
                    Phase::RolledBack
                };
                self.weights = self.before.clone();
                self.at_ms = *at_ms;
                self.hold_ms = 0;
                self.reason = Some(reason.clone());
            }
        }
    }

    fn rebase(&mut self, r: &Rebase) {
        self.base = r.base.clone();
        self.layout = Some(r.layout);
    }

    /// Hold time left at wall-clock time `now_ms` (while paused: what is left when resumed).
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        match self.phase {
            Phase::Running => self
                .hold_ms
                .saturating_sub(now_ms.saturating_sub(self.at_ms)),
            Phase::Paused => self.hold_ms,
            _ => 0,
        }
    }

    /// The current step's weight as the plan gives it.
    pub fn plan_weight(&self) -> f64 {
        self.step
            .checked_sub(1)
            .and_then(|i| self.plan.steps.get(i))
            .map_or(0.0, |s| s.weight)
    }

    /// The variant's share in percent of the pool as served: of the weights the rollout set
    /// (the split from before once it was rolled back or aborted).
    pub fn weight(&self) -> f64 {
        share(&self.weights, &self.plan.variant, &self.plan.baseline)
    }

    /// The layout of the steps over `base`: the recorded one, or (for old records) computed.
    pub fn layout_or_compute(&self) -> Result<Layout, RolloutError> {
        if let Some(l) = self.layout {
            return Ok(l);
        }
        let checked = self.plan.check(&self.flag)?;
        let steps: Vec<f64> = self.plan.steps.iter().map(|s| s.weight).collect();
        split::layout(
            &self.flag,
            &self.base,
            &self.plan.variant,
            &self.plan.baseline,
            &steps,
            checked.scale,
        )
    }

    /// The weights of a step of `percent`, computed from `base`, or `base` itself when the steps
    /// cannot be laid over it.
    pub fn computed_weights(&self, percent: f64) -> Weights {
        match self.layout_or_compute() {
            Ok(layout) => split::weights_at(
                &self.base,
                &self.plan.variant,
                &self.plan.baseline,
                layout,
                percent,
            ),
            Err(_) => self.base.clone(),
        }
    }

    /// What ending this rollout other than by completing does to the flag's override: put back
    /// exactly the override from before (old records, which lack it, put back the split's
    /// weights if they still apply).
    pub fn restore_change(&self) -> RolloutChange {
        match &self.prior {
            Some(prior) => RolloutChange::Restore(prior.patch.clone()),
            None => RolloutChange::RestoreWeights(self.before.clone()),
        }
    }
}

/// Folds the authority's rollout records into the latest rollout of every flag. Records that do
/// not parse or belong to a superseded rollout are skipped (and logged).
pub fn replay(records: &[(u64, String, Value)]) -> BTreeMap<String, RolloutState> {
    let mut out: BTreeMap<String, RolloutState> = BTreeMap::new();
    for (revision, flag, value) in records {
        let event: Event = match serde_json::from_value(value.clone()) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(revision, flag, error = %e, "skipping an unreadable rollout record");
                continue;
            }
        };
        match event.rollout() {
            None => {
                if let Some(state) = RolloutState::started(*revision, flag, &event) {
                    out.insert(flag.clone(), state);
                }
            }
            Some(id) => match out.get_mut(flag) {
                Some(state) if state.id == id => state.apply(*revision, &event),
                _ => tracing::warn!(
                    revision,
                    flag,
                    rollout = id,
                    "skipping a record of a rollout that is not the flag's latest"
                ),
            },
        }
    }
    out
}

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl From<AuthorityError> for RolloutError {
    fn from(e: AuthorityError) -> Self {
        match e {
            AuthorityError::UnknownFlag(flag) => RolloutError::UnknownFlag(flag),
            other => RolloutError::Authority(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(list: &[(&str, u32)]) -> Weights {
        list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    }

    #[test]
    fn replay_folds_the_latest_rollout() {
        let plan: Plan = plan::parse(b"variant: canary\nbaseline: stable\nsteps: [{weight: 1, hold: 10s}, {weight: 50, hold: 10s}]\n").unwrap();
        let start = Event::Start {
            plan: Box::new(plan.clone()),
            before: w(&[("stable", 100), ("canary", 0)]),
            prior: Some(Prior::default()),
            layout: Some(Layout {
                multiplier: 1,
                pool: 100,
            }),
            weights: w(&[("stable", 99), ("canary", 1)]),
            step: 1,
            weight: 1.0,
            at_ms: 1000,
            hold_ms: 10_000,
        };
        let v = |e: &Event| serde_json::to_value(e).unwrap();
        let mut counters = BTreeMap::new();
        counters.insert(
            "ok".to_owned(),
            GateCounters {
                failures: 2,
                inconclusive: 1,
            },
        );
        let records = vec![
            (3, "f".to_owned(), v(&start)),
            (
                4,
                "f".to_owned(),
                v(&Event::Gates {
                    rollout: 3,
                    counters: counters.clone(),
                }),
            ),
            (
                5,
                "f".to_owned(),
                v(&Event::Step {
                    rollout: 3,
                    step: 2,
                    weight: 50.0,
                    weights: w(&[("stable", 50), ("canary", 50)]),
                    rebase: None,
                    at_ms: 11_000,
                    hold_ms: 10_000,
                    promoted: false,
                }),
            ),
            (
                6,
                "f".to_owned(),
                v(&Event::Pause {
                    rollout: 3,
                    at_ms: 15_000,
                    remaining_ms: 6000,
                    reason: "by hand".into(),
                }),
            ),
            // A stray record of another rollout and garbage are skipped.
            (
                7,
                "f".to_owned(),
                v(&Event::Complete {
                    rollout: 1,
                    at_ms: 0,
                }),
            ),
            (8, "f".to_owned(), serde_json::json!({"type": "unheard_of"})),
            (9, "g".to_owned(), v(&start)),
        ];
        let states = replay(&records);
        let f = &states["f"];
        assert_eq!(
            (f.id, f.step, f.phase, f.revision),
            (3, 2, Phase::Paused, 6)
        );
        assert_eq!(f.remaining_ms(99_999), 6000);
        assert_eq!(f.weight(), 50.0);
        // The step kept the failures and started the inconclusive count over.
        assert_eq!(
            f.counters["ok"],
            GateCounters {
                failures: 2,
                inconclusive: 0
            }
        );
        assert_eq!(f.restore_change(), RolloutChange::Restore(None));
        let g = &states["g"];
        assert_eq!((g.id, g.step, g.phase), (9, 1, Phase::Running));
        assert_eq!(g.remaining_ms(4000), 7000);
        assert_eq!(g.remaining_ms(50_000), 0);
    }

    #[test]
    fn records_from_before_the_prior_override_still_replay() {
        // A start record as first written: weights and override absent.
        let old = serde_json::json!({
            "type": "start",
            "plan": {"variant": "canary", "baseline": "stable", "steps": [{"weight": 10}, {"weight": 100}]},
            "before": [["stable", 100], ["canary", 0]],
            "step": 1, "weight": 10.0, "atMs": 5, "holdMs": 0
        });
        let step = serde_json::json!({"type": "step", "rollout": 1, "step": 2, "weight": 100.0,
            "atMs": 6, "holdMs": 0});
        let abort = serde_json::json!({"type": "abort", "rollout": 1, "atMs": 7, "reason": "x"});
        let states = replay(&[(1, "f".into(), old), (2, "f".into(), step)]);
        let f = &states["f"];
        assert_eq!(f.weights, w(&[("stable", 0), ("canary", 100)]));
        assert_eq!(
            f.restore_change(),
            RolloutChange::RestoreWeights(w(&[("stable", 100), ("canary", 0)]))
        );
        let mut f = f.clone();
        f.apply(3, &serde_json::from_value(abort).unwrap());
        assert_eq!((f.phase, f.weight()), (Phase::Aborted, 0.0));
    }
}
