//! Progressive rollouts: a plan moves a flag's `fractional` split step by step towards a variant,
//! checking gates during every hold, and rolls back (or pauses) when a gate fails.
//!
//! A rollout lives entirely in the authority's journal: its start record holds the plan and the
//! split as it was before, and every later change (a step, a pause, a resume, the end) is one
//! more rollout revision, the split changes included in the same revision. [`replay`] folds those
//! records back into each flag's rollout, so a daemon that restarts (even after `kill -9`)
//! resumes a rollout where the journal says it was, with the hold time left as of the last
//! record. Gate counters are not journaled; they start over after a restart.
//!
//! Module map: [`plan`] parses and validates plans, [`gates`] checks Prometheus and webhook
//! gates, [`runner`] drives rollouts (one task per active rollout), [`api`] serves the verbs
//! under `/v1/rollouts`, [`cli`] is the `flagd-rs rollout` client, [`metrics`] exports phases,
//! weights and gate results.

pub mod api;
pub mod cli;
pub mod gates;
pub mod metrics;
pub mod plan;
pub mod runner;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use flagd_evaluator::SplitEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use api::router;
pub use gates::{GateContext, GateEvaluator, GateOutcome, HttpGates, Verdict};
pub use metrics::RolloutCollector;
pub use plan::{CheckedPlan, OnFailure, Plan, PlanError, Step};
pub use runner::{GateStatus, RolloutError, RolloutRunner, RolloutStatus};

use super::AuthorityError;

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

/// A rollout journal record (the `event` of a rollout revision). Every record but the start
/// names its rollout by the revision that started it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A rollout started and its first step was applied.
    #[serde(rename_all = "camelCase")]
    Start {
        /// The plan.
        plan: Plan,
        /// The split's weights before the rollout, in split order.
        before: Vec<(String, u32)>,
        /// The step applied (1).
        step: usize,
        /// Its weight in percent.
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
        /// Its weight in percent.
        weight: f64,
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
    },
    /// The last hold passed.
    #[serde(rename_all = "camelCase")]
    Complete {
        /// The rollout.
        rollout: u64,
        /// Record time, Unix milliseconds.
        at_ms: u64,
    },
    /// A gate failed; the split was put back as it was before the rollout.
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
    /// Aborted by hand; the split was put back.
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
    pub before: Vec<(String, u32)>,
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
    /// The last revision recorded for it.
    pub revision: u64,
}

impl RolloutState {
    /// The state a start record begins.
    pub fn started(revision: u64, flag: &str, event: &Event) -> Option<RolloutState> {
        let Event::Start {
            plan,
            before,
            step,
            at_ms,
            hold_ms,
            ..
        } = event
        else {
            return None;
        };
        Some(RolloutState {
            id: revision,
            flag: flag.to_owned(),
            plan: plan.clone(),
            before: before.clone(),
            step: *step,
            phase: Phase::Running,
            hold_ms: *hold_ms,
            at_ms: *at_ms,
            started_ms: *at_ms,
            reason: None,
            revision,
        })
    }

    /// Applies a later record of this rollout.
    pub fn apply(&mut self, revision: u64, event: &Event) {
        self.revision = revision;
        match event {
            Event::Start { .. } => {}
            Event::Step {
                step,
                at_ms,
                hold_ms,
                ..
            } => {
                self.step = *step;
                self.at_ms = *at_ms;
                self.hold_ms = *hold_ms;
                self.phase = Phase::Running;
                self.reason = None;
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
                ..
            } => {
                self.phase = Phase::Running;
                self.at_ms = *at_ms;
                self.hold_ms = *remaining_ms;
                self.reason = None;
            }
            Event::Complete { at_ms, .. } => {
                self.phase = Phase::Completed;
                self.at_ms = *at_ms;
                self.hold_ms = 0;
                self.reason = None;
            }
            Event::Rollback { at_ms, reason, .. } => {
                self.phase = Phase::RolledBack;
                self.at_ms = *at_ms;
                self.hold_ms = 0;
                self.reason = Some(reason.clone());
            }
            Event::Abort { at_ms, reason, .. } => {
                self.phase = Phase::Aborted;
                self.at_ms = *at_ms;
                self.hold_ms = 0;
                self.reason = Some(reason.clone());
            }
        }
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

    /// The current step's weight in percent (0 once rolled back or aborted).
    pub fn weight(&self) -> f64 {
        match self.phase {
            Phase::RolledBack | Phase::Aborted => {
                share(&self.before, &self.plan.variant, &self.plan.baseline)
            }
            _ => self
                .step
                .checked_sub(1)
                .and_then(|i| self.plan.steps.get(i))
                .map_or(0.0, |s| s.weight),
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

/// The variant's share, in percent, of the traffic it and its baseline get under `weights`.
pub fn share(weights: &[(String, u32)], variant: &str, baseline: &str) -> f64 {
    let of = |name: &str| {
        weights
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, w)| f64::from(*w))
            .sum::<f64>()
    };
    let (v, b) = (of(variant), of(baseline));
    if v + b <= 0.0 {
        0.0
    } else {
        v * 100.0 / (v + b)
    }
}

/// The split's weights before a rollout, checked for `plan`: every entry must have a literal
/// weight, and the variant and its baseline must be in the split.
pub fn split_weights(
    flag: &str,
    split: &[SplitEntry],
    plan: &Plan,
) -> Result<Vec<(String, u32)>, RolloutError> {
    let no_split = |detail: String| RolloutError::NoSplit {
        flag: flag.to_owned(),
        detail,
    };
    let mut out = Vec::with_capacity(split.len());
    for entry in split {
        let weight = entry
            .weight
            .and_then(|w| u32::try_from(w).ok())
            .ok_or_else(|| {
                no_split(format!(
                    "the weight of variant '{}' is not a literal number",
                    entry.variant
                ))
            })?;
        out.push((entry.variant.clone(), weight));
    }
    for name in [&plan.variant, &plan.baseline] {
        if !out.iter().any(|(n, _)| n == name) {
            return Err(no_split(format!("the split has no variant '{name}'")));
        }
    }
    Ok(out)
}

/// The split's weights at `percent` for the rolled-out variant: every other variant of the split
/// keeps its weight from before the rollout, and the variant and its baseline share the rest.
/// When no other variant has users, the two share `scale` (100, or 10000 for steps with
/// decimals) so that every percentage is exact.
pub fn step_weights(
    before: &[(String, u32)],
    variant: &str,
    baseline: &str,
    scale: u32,
    percent: f64,
) -> Vec<(String, u32)> {
    let others_have_users = before
        .iter()
        .any(|(n, w)| n != variant && n != baseline && *w > 0);
    let pool: u64 = if others_have_users {
        before
            .iter()
            .filter(|(n, _)| n == variant || n == baseline)
            .map(|(_, w)| u64::from(*w))
            .sum()
    } else {
        u64::from(scale)
    };
    let pct = percent.clamp(0.0, 100.0);
    // Rounded to the pool's granularity; `pool` fits in u32, so the product fits in f64 exactly.
    let canary_f = (pool as f64 * pct / 100.0).round();
    let canary = u32::try_from(canary_f as u64)
        .unwrap_or(u32::MAX)
        .min(u32::try_from(pool).unwrap_or(u32::MAX));
    let rest = u32::try_from(pool)
        .unwrap_or(u32::MAX)
        .saturating_sub(canary);
    let mut seen_variant = false;
    let mut seen_baseline = false;
    before
        .iter()
        .map(|(name, weight)| {
            // A variant listed twice keeps its later entries at 0, as a patch does.
            let w = if name == variant && !seen_variant {
                seen_variant = true;
                canary
            } else if name == baseline && !seen_baseline {
                seen_baseline = true;
                rest
            } else if name == variant || name == baseline || !others_have_users {
                0
            } else {
                *weight
            };
            (name.clone(), w)
        })
        .collect()
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

    fn w(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()
    }

    #[test]
    fn step_weights_share_the_pool() {
        let before = w(&[("stable", 100), ("canary", 0)]);
        assert_eq!(
            step_weights(&before, "canary", "stable", 100, 25.0),
            w(&[("stable", 75), ("canary", 25)])
        );
        assert_eq!(
            step_weights(&before, "canary", "stable", 10_000, 0.5),
            w(&[("stable", 9950), ("canary", 50)])
        );
        // Another variant with users keeps them; the two share what they had.
        let three = w(&[("a", 10), ("stable", 80), ("canary", 0), ("c", 10)]);
        assert_eq!(
            step_weights(&three, "canary", "stable", 100, 50.0),
            w(&[("a", 10), ("stable", 40), ("canary", 40), ("c", 10)])
        );
        // Without other users, a 1/1 split becomes a percentage split.
        let small = w(&[("canary", 1), ("stable", 1), ("z", 0)]);
        assert_eq!(
            step_weights(&small, "canary", "stable", 100, 5.0),
            w(&[("canary", 5), ("stable", 95), ("z", 0)])
        );
        assert_eq!(
            share(&w(&[("stable", 95), ("canary", 5)]), "canary", "stable"),
            5.0
        );
        assert_eq!(share(&w(&[("a", 0)]), "canary", "stable"), 0.0);
    }

    #[test]
    fn replay_folds_the_latest_rollout() {
        let plan: Plan = plan::parse(b"variant: canary\nbaseline: stable\nsteps: [{weight: 1, hold: 10s}, {weight: 50, hold: 10s}]\n").unwrap();
        let start = Event::Start {
            plan: plan.clone(),
            before: w(&[("stable", 100), ("canary", 0)]),
            step: 1,
            weight: 1.0,
            at_ms: 1000,
            hold_ms: 10_000,
        };
        let v = |e: &Event| serde_json::to_value(e).unwrap();
        let records = vec![
            (3, "f".to_owned(), v(&start)),
            (
                4,
                "f".to_owned(),
                v(&Event::Step {
                    rollout: 3,
                    step: 2,
                    weight: 50.0,
                    at_ms: 11_000,
                    hold_ms: 10_000,
                    promoted: false,
                }),
            ),
            (
                5,
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
                6,
                "f".to_owned(),
                v(&Event::Complete {
                    rollout: 1,
                    at_ms: 0,
                }),
            ),
            (7, "f".to_owned(), serde_json::json!({"type": "unheard_of"})),
            (8, "g".to_owned(), v(&start)),
        ];
        let states = replay(&records);
        let f = &states["f"];
        assert_eq!(
            (f.id, f.step, f.phase, f.revision),
            (3, 2, Phase::Paused, 5)
        );
        assert_eq!(f.remaining_ms(99_999), 6000);
        assert_eq!(f.weight(), 50.0);
        let g = &states["g"];
        assert_eq!((g.id, g.step, g.phase), (8, 1, Phase::Running));
        assert_eq!(g.remaining_ms(4000), 7000);
        assert_eq!(g.remaining_ms(50_000), 0);
    }
}
