//! What a rollout verb sent to the fleet's controller carries, and the answer it brings back.
//! A replica that is not the controller hands a verb to its [`Relay`] (in a fleet, a relay
//! through etcd); the controller runs it on its runner and answers exactly what its own API
//! would have answered.

use std::fmt;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::super::plan::Plan;

/// A rollout verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerbKind {
    /// Start a rollout (with a plan).
    Start,
    /// Pause it.
    Pause,
    /// Resume it.
    Resume,
    /// Skip the rest of the current hold.
    Promote,
    /// End it, putting back the override from before.
    Abort,
}

impl VerbKind {
    /// The verb's name, as in the API's routes.
    pub fn as_str(self) -> &'static str {
        match self {
            VerbKind::Start => "start",
            VerbKind::Pause => "pause",
            VerbKind::Resume => "resume",
            VerbKind::Promote => "promote",
            VerbKind::Abort => "abort",
        }
    }
}

/// One verb, as the API understood it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerbRequest {
    /// What to do.
    pub verb: VerbKind,
    /// The flag whose rollout it is.
    pub flag: String,
    /// For a start: the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    /// Who asked.
    pub actor: String,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// An answer as the admin API gives it: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerbAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The JSON body: a rollout's status, or `{"error", "message"}`.
    pub body: Value,
}

impl VerbAnswer {
    /// An error answer: `{"error": code, "message": message}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> VerbAnswer {
        VerbAnswer {
            status,
            body: serde_json::json!({"error": code, "message": message.into()}),
        }
    }
}

/// Carries verbs to the replica that is the rollout controller and brings back its answers.
pub trait Relay: Send + Sync + fmt::Debug {
    /// Sends `request` to the controller and waits for its answer. Not reaching the
    /// controller, or no answer in time, is an answer too (a 503 saying so).
    fn send(&self, request: VerbRequest) -> BoxFuture<'_, VerbAnswer>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_through_json_unchanged() {
        let plan = super::super::super::plan::parse(
            b"variant: canary\nbaseline: stable\nsteps: [{weight: 5, hold: 200ms}, {weight: 100}]\n",
        )
        .unwrap();
        let request = VerbRequest {
            verb: VerbKind::Start,
            flag: "ramp".into(),
            plan: Some(plan),
            actor: "ci".into(),
            reason: "go".into(),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(serde_json::from_str::<VerbRequest>(&text).unwrap(), request);
        let answer = VerbAnswer::error(503, "no_controller", "none");
        assert_eq!(answer.body["error"], "no_controller");
    }
}
