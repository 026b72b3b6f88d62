//! What the runner answers: the errors of its verbs and a rollout's status as the API, the CLI
//! and the metrics show it.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::super::gates::GateOutcome;
use super::super::plan::{Plan, PlanError};
use super::super::{Phase, RolloutState};
use crate::authority::{AuthorityError, JournalError};

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
    /// The rollout cannot go on (its plan or split no longer fits); it can only be aborted.
    #[error("the rollout of flag '{flag}' cannot go on ({detail}); abort it to end it")]
    Unresumable {
        /// The flag.
        flag: String,
        /// Why.
        detail: String,
    },
    /// The flag sources have not all loaded yet, so the split cannot be moved.
    #[error(
        "the rollout of flag '{0}' waits for every flag source to load; pause and abort work now, resume and promote once they have loaded"
    )]
    NotReady(String),
    /// The authority refused or could not record a change.
    #[error(transparent)]
    Authority(AuthorityError),
    /// The daemon is shutting down.
    #[error("the rollout runner is stopping")]
    Stopped,
    /// The rollout's task did not act on a verb in time.
    #[error("the rollout of flag '{0}' did not answer in time")]
    Busy(String),
    /// Another replica of the fleet is the rollout controller: this one changes no rollout.
    #[error(
        "this replica is not the rollout controller: only the controller changes rollouts (the admin API sends verbs to it)"
    )]
    NotController,
}

impl RolloutError {
    /// Whether the journal refused a record because another replica is the controller.
    pub fn is_deposed(&self) -> bool {
        matches!(
            self,
            RolloutError::Authority(AuthorityError::Journal(JournalError::NotLeader))
        )
    }
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

/// A gate's results in the current rollout.
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
    /// Failed checks counted against the limit (over the rollout, restarts included, until a
    /// human resumes it).
    pub failures: u32,
    /// The gate's failure limit.
    pub failure_limit: u32,
    /// Inconclusive checks in a row.
    pub inconclusive_in_a_row: u32,
    /// Checks by verdict since the daemon started.
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
    /// The variant's share in percent of the traffic it and its baseline get, as served by
    /// the weights below.
    pub weight: f64,
    /// The current step's weight as the plan gives it.
    pub plan_weight: f64,
    /// The split's weights the rollout has set (once rolled back or aborted: the split from
    /// before).
    pub weights: Map<String, Value>,
    /// The split's weights before the rollout.
    pub before: Map<String, Value>,
    /// Hold time left in the current step (while paused: what is left when resumed).
    pub hold_remaining_ms: u64,
    /// Why it paused or ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A problem the runner could not record, or why the rollout cannot go on.
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

impl RolloutStatus {
    /// The status of `state` at wall-clock time `now_ms`.
    pub fn of(
        state: &RolloutState,
        gates: &[GateStatus],
        problem: Option<&str>,
        now_ms: u64,
    ) -> RolloutStatus {
        RolloutStatus {
            flag: state.flag.clone(),
            id: state.id,
            phase: state.phase,
            variant: state.plan.variant.clone(),
            baseline: state.plan.baseline.clone(),
            step: state.step,
            steps: state.plan.steps.len(),
            weight: state.weight(),
            plan_weight: state.plan_weight(),
            weights: weights_map(&state.weights),
            before: weights_map(&state.before),
            hold_remaining_ms: state.remaining_ms(now_ms),
            reason: state.reason.clone(),
            problem: problem.map(str::to_owned),
            started_at: rfc3339(state.started_ms),
            updated_at: rfc3339(state.at_ms),
            revision: state.revision,
            gates: gates.to_vec(),
            plan: state.plan.clone(),
        }
    }
}
