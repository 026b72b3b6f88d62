//! Rollout plans: what is rolled out, in which steps, checked by which gates, and what happens
//! when a gate fails. Plans are written in YAML or JSON and validated before anything changes.
//!
//! ```yaml
//! variant: canary            # the variant being rolled out
//! baseline: stable           # the variant it takes users from
//! prometheus: http://127.0.0.1:9090
//! interval: 10s              # gates are checked this often during a hold
//! failureLimit: 0            # failed checks a gate may have before the plan acts
//! inconclusiveLimit: 0       # inconclusive checks in a row before the plan pauses
//! onFailure: rollback        # or: pause
//! steps:
//!   - {weight: 1, hold: 5m}
//!   - {weight: 5, hold: 5m}
//!   - {weight: 100}
//! gates:
//!   - name: success-rate
//!     query: sum(rate(app_requests_total{variant="{{variant}}",outcome="ok"}[1m])) / sum(rate(app_requests_total{variant="{{variant}}"}[1m]))
//!     condition: ">= 0.95"
//!   - name: approval
//!     webhook: http://127.0.0.1:9000/check
//! ```
//!
//! Weights are percentages of the traffic the variant and its baseline share (the *pool*); every
//! other variant of the split keeps exactly its users. They may only grow from one step to the
//! next, so a ramp only ever adds users to the rolled-out variant. Each step is served exactly
//! (or, for a split whose total leaves no room, within 0.1 point); a split that cannot carry the
//! plan is refused when the rollout starts (see [`super::split`]).
//!
//! How a plan runs:
//! - During each hold every gate is checked every `interval`, and once more when the hold ends.
//!   A step moves on only after a check in which every gate passed; a hold whose last check did
//!   not pass goes on, checking, until one does or a limit is reached.
//! - A gate's failed checks are counted over the rollout, restarts of the daemon included (the
//!   counts are journaled), and start over when a human resumes it; one more than its
//!   `failureLimit` rolls back (the flag's override goes back to exactly what it was before the
//!   rollout, none if it had none), or pauses, as `onFailure` says.
//! - More inconclusive answers in a row than `inconclusiveLimit` (no data, a query error, a
//!   webhook that does not answer) pause the rollout for a human.
//! - A plan makes at most 20 gate checks a second (its gates divided by its interval), and its
//!   interval is at least 50 ms.
//! - In queries and webhook URLs, `{{flag}}`, `{{variant}}` and `{{baseline}}` are replaced.

use std::fmt;
use std::time::Duration;

use flagd_evaluator::Format;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The gate interval when the plan gives none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The shortest accepted gate interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The most gate checks a plan may make per second (its gates divided by its interval), so that
/// one plan cannot flood Prometheus or a webhook: 20 gates need an interval of at least 1 s.
pub const MAX_CHECKS_PER_SECOND: u32 = 20;

/// How long one gate check may take when the gate gives no timeout.
pub const DEFAULT_GATE_TIMEOUT: Duration = Duration::from_secs(5);

/// The most steps a plan may have.
pub const MAX_STEPS: usize = 1000;

/// The most gates a plan may have.
pub const MAX_GATES: usize = 64;

/// The longest hold (or interval) accepted: a year, far beyond any sensible plan, and small
/// enough that adding it to a timestamp cannot overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A rollout plan as written (and as stored in the journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Plan {
    /// The flag the plan is written for; when given it must be the flag it is started on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// The variant being rolled out.
    pub variant: String,
    /// The variant it takes users from (and gives them back to on rollback).
    pub baseline: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// How often gates are checked during a hold.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// How many failed checks a gate may have during the rollout before the plan acts on the
    /// failure (0: act on the first one).
    #[serde(default)]
    pub failure_limit: u32,
    /// How many inconclusive checks in a row a gate may have before the rollout pauses
    /// (0: pause on the first one).
    #[serde(default)]
    pub inconclusive_limit: u32,
    /// What a gate failure past its limit does.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Base URL of the Prometheus HTTP API that query gates ask (unless they name their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// The gates, checked every interval during every hold.
    #[serde(default)]
    pub gates: Vec<GateSpec>,
}

fn default_interval() -> Duration {
    DEFAULT_INTERVAL
}

/// One step: the rolled-out variant's weight and how long to hold it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// The variant's share of the traffic it and its baseline get, in percent (0 < w <= 100,
    /// at most two decimals).
    pub weight: f64,
    /// How long to hold this weight, checking gates, before the next step (0: move on at once).
    #[serde(default, with = "duration")]
    pub hold: Duration,
}

/// What a failed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Put the split back where it was before the rollout.
    #[default]
    Rollback,
    /// Keep the current step and wait for a human.
    Pause,
}

/// A gate as written: a Prometheus query with a condition, or a webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateSpec {
    /// The gate's name (unique in the plan; used in metrics and reasons).
    pub name: String,
    /// A PromQL instant query; `{{flag}}`, `{{variant}}` and `{{baseline}}` are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The condition every series of the query's answer must meet, e.g. `>= 0.95`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The Prometheus base URL for this gate, instead of the plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<String>,
    /// A URL answering a POST with `{"result": "pass" | "fail" | "inconclusive"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// How long one check may take.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "optional_duration"
    )]
    pub timeout: Option<Duration>,
    /// This gate's failure limit, instead of the plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_limit: Option<u32>,
}

/// A comparison operator of a gate condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Ge => ">=",
            Comparison::Gt => ">",
            Comparison::Le => "<=",
            Comparison::Lt => "<",
            Comparison::Eq => "==",
            Comparison::Ne => "!=",
        }
    }
}

/// A gate condition: `value <op> threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The comparison.
    pub op: Comparison,
    /// The threshold.
    pub threshold: f64,
}

impl Condition {
    /// Parses `>= 0.95`, `<1`, `== 0` and the like.
    pub fn parse(text: &str) -> Result<Condition, String> {
        let t = text.trim();
        let ops = [
            (">=", Comparison::Ge),
            ("<=", Comparison::Le),
            ("==", Comparison::Eq),
            ("!=", Comparison::Ne),
            (">", Comparison::Gt),
            ("<", Comparison::Lt),
        ];
        let Some((rest, op)) = ops
            .iter()
            .find_map(|(sym, op)| t.strip_prefix(sym).map(|rest| (rest, *op)))
        else {
            return Err(format!(
                "condition `{text}` must start with >=, >, <=, <, == or !="
            ));
        };
        let threshold: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("condition `{text}`: `{}` is not a number", rest.trim()))?;
        if !threshold.is_finite() {
            return Err(format!("condition `{text}`: the threshold must be finite"));
        }
        Ok(Condition { op, threshold })
    }

    /// Whether `value` meets the condition.
    pub fn holds(&self, value: f64) -> bool {
        match self.op {
            Comparison::Ge => value >= self.threshold,
            Comparison::Gt => value > self.threshold,
            Comparison::Le => value <= self.threshold,
            Comparison::Lt => value < self.threshold,
            Comparison::Eq => value == self.threshold,
            Comparison::Ne => value != self.threshold,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op.symbol(), self.threshold)
    }
}

/// What a validated gate checks.
#[derive(Debug, Clone, PartialEq)]
pub enum GateKind {
    /// A PromQL instant query against `url`, whose answer must meet `condition`.
    Prometheus {
        /// Base URL of the Prometheus HTTP API.
        url: String,
        /// The query, with the placeholders replaced.
        query: String,
        /// The condition every series must meet.
        condition: Condition,
    },
    /// A webhook answering pass or fail.
    Webhook {
        /// The URL to POST to.
        url: String,
    },
}

/// A validated gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// The gate's name.
    pub name: String,
    /// What it checks.
    pub kind: GateKind,
    /// How long one check may take.
    pub timeout: Duration,
    /// Failed checks tolerated before the plan acts.
    pub failure_limit: u32,
}

impl Gate {
    /// `prometheus` or `webhook`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            GateKind::Prometheus { .. } => "prometheus",
            GateKind::Webhook { .. } => "webhook",
        }
    }
}

/// A plan checked against the flag it is started on.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPlan {
    /// The plan as written.
    pub plan: Plan,
    /// The flag it rolls out.
    pub flag: String,
    /// The validated gates.
    pub gates: Vec<Gate>,
    /// The weight total used for the variant and its baseline when no other variant of the
    /// split has users: 100 for whole percentages, 10000 when a step has decimals.
    pub scale: u32,
}

/// Why a plan is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rollout plan: {0}")]
pub struct PlanError(pub String);

fn invalid(message: impl Into<String>) -> PlanError {
    PlanError(message.into())
}

/// Parses a plan from YAML or JSON (JSON is YAML, but its own parser gives better messages).
pub fn parse(bytes: &[u8]) -> Result<Plan, PlanError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let format = if first == Some(&b'{') {
        Format::Json
    } else {
        Format::Yaml
    };
    let value = flagd_evaluator::parse(bytes, format).map_err(|e| invalid(e.to_string()))?;
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// Replaces the placeholders of a query or URL.
fn expand(text: &str, flag: &str, plan: &Plan) -> String {
    text.replace("{{flag}}", flag)
        .replace("{{variant}}", &plan.variant)
        .replace("{{baseline}}", &plan.baseline)
}

fn check_url(url: &str, what: &str) -> Result<(), PlanError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err(invalid(format!("{what} `{url}` must be an http(s) URL"))),
        Err(e) => Err(invalid(format!("{what} `{url}` is not a URL: {e}"))),
    }
}

impl Plan {
    /// Checks the plan for rolling out flag `flag`.
    pub fn check(&self, flag: &str) -> Result<CheckedPlan, PlanError> {
        if let Some(own) = &self.flag
            && own != flag
        {
            return Err(invalid(format!(
                "the plan is for flag '{own}', not '{flag}'"
            )));
        }
        if self.variant.is_empty() || self.baseline.is_empty() {
            return Err(invalid("variant and baseline must be named"));
        }
        if self.variant == self.baseline {
            return Err(invalid("variant and baseline must differ"));
        }
        if self.steps.is_empty() {
            return Err(invalid("a plan needs at least one step"));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(invalid(format!(
                "a plan may have at most {MAX_STEPS} steps"
            )));
        }
        let mut previous = 0.0;
        let mut scale = 100;
        for (i, step) in self.steps.iter().enumerate() {
            let n = i + 1;
            let w = step.weight;
            if !w.is_finite() || w <= 0.0 || w > 100.0 {
                return Err(invalid(format!(
                    "step {n}: the weight must be above 0 and at most 100, got {w}"
                )));
            }
            let hundredths = w * 100.0;
            if (hundredths - hundredths.round()).abs() > 1e-6 {
                return Err(invalid(format!(
                    "step {n}: the weight {w} has more than two decimals"
                )));
            }
            if (w - w.round()).abs() > 1e-9 {
                scale = 10_000;
            }
            if w < previous {
                return Err(invalid(format!(
                    "step {n}: the weight {w} is below the previous step's {previous}; \
                     weights may only grow"
                )));
            }
            previous = w;
            if step.hold > MAX_DURATION {
                return Err(invalid(format!("step {n}: the hold is too long")));
            }
        }
        if self.interval < MIN_INTERVAL || self.interval > MAX_DURATION {
            return Err(invalid(format!(
                "the interval must be between {} and a year",
                humantime::format_duration(MIN_INTERVAL)
            )));
        }
        if let Some(url) = &self.prometheus {
            check_url(url, "prometheus")?;
        }
        if self.gates.len() > MAX_GATES {
            return Err(invalid(format!(
                "a plan may have at most {MAX_GATES} gates"
            )));
        }
        // gates / interval <= MAX_CHECKS_PER_SECOND, in whole milliseconds.
        let per_second_ms = self.gates.len() as u128 * 1000;
        if per_second_ms > u128::from(MAX_CHECKS_PER_SECOND) * self.interval.as_millis() {
            let needed = Duration::from_millis(
                u64::try_from(per_second_ms.div_ceil(u128::from(MAX_CHECKS_PER_SECOND)))
                    .unwrap_or(u64::MAX),
            );
            return Err(invalid(format!(
                "{} gates every {} would make more than {MAX_CHECKS_PER_SECOND} checks a second; \
                 use an interval of at least {}",
                self.gates.len(),
                humantime::format_duration(self.interval),
                humantime::format_duration(needed)
            )));
        }
        let mut gates: Vec<Gate> = Vec::with_capacity(self.gates.len());
        for spec in &self.gates {
            let gate = self.check_gate(spec, flag)?;
            if gates.iter().any(|g| g.name == gate.name) {
                return Err(invalid(format!("two gates are named '{}'", gate.name)));
            }
            gates.push(gate);
        }
        Ok(CheckedPlan {
            plan: self.clone(),
            flag: flag.to_owned(),
            gates,
            scale,
        })
    }

    fn check_gate(&self, spec: &GateSpec, flag: &str) -> Result<Gate, PlanError> {
        let name = spec.name.trim();
        if name.is_empty() {
            return Err(invalid("every gate needs a name"));
        }
        let what = |m: &str| invalid(format!("gate '{name}': {m}"));
        let kind = match (&spec.query, &spec.webhook) {
            (Some(query), None) => {
                let Some(condition) = &spec.condition else {
                    return Err(what("a query gate needs a condition, e.g. \">= 0.95\""));
                };
                let condition = Condition::parse(condition).map_err(|e| what(&e))?;
                let Some(url) = spec.prometheus.as_ref().or(self.prometheus.as_ref()) else {
                    return Err(what(
                        "no Prometheus URL: set `prometheus` on the plan or the gate",
                    ));
                };
                check_url(url, "prometheus")?;
                if query.trim().is_empty() {
                    return Err(what("the query is empty"));
                }
                GateKind::Prometheus {
                    url: url.trim_end_matches('/').to_owned(),
                    query: expand(query, flag, self),
                    condition,
                }
            }
            (None, Some(url)) => {
                if spec.condition.is_some() || spec.prometheus.is_some() {
                    return Err(what("a webhook gate takes no condition or prometheus URL"));
                }
                let url = expand(url, flag, self);
                check_url(&url, "webhook")?;
                GateKind::Webhook { url }
            }
            (Some(_), Some(_)) => return Err(what("give either a query or a webhook, not both")),
            (None, None) => return Err(what("give a query (with a condition) or a webhook")),
        };
        let timeout = spec.timeout.unwrap_or(DEFAULT_GATE_TIMEOUT);
        if timeout.is_zero() || timeout > MAX_DURATION {
            return Err(what("the timeout must be above 0"));
        }
        Ok(Gate {
            name: name.to_owned(),
            kind,
            timeout,
            failure_limit: spec.failure_limit.unwrap_or(self.failure_limit),
        })
    }
}

/// Durations as humantime text (`"90s"`, `"1m 30s"`, `"500ms"`) or a number of seconds.
pub(crate) mod duration {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Seconds(f64),
        Human(String),
    }

    fn to_duration(raw: Text) -> Result<Duration, String> {
        match raw {
            Text::Seconds(s) if s.is_finite() && s >= 0.0 && s <= MAX_DURATION.as_secs_f64() => {
                Ok(Duration::from_secs_f64(s))
            }
            Text::Seconds(s) => Err(format!("{s} is not a valid number of seconds")),
            Text::Human(t) => humantime::parse_duration(t.trim())
                .map_err(|e| format!("`{t}` is not a duration (like 30s, 5m or 500ms): {e}")),
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        to_duration(Text::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub(crate) fn parse_optional<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<Text>::deserialize(d)? {
            None => Ok(None),
            Some(t) => to_duration(t).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

mod optional_duration {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        duration::parse_optional(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
variant: canary
baseline: stable
prometheus: http://127.0.0.1:9090/
interval: 2s
steps:
  - {weight: 1, hold: 10s}
  - {weight: 50, hold: 1m}
  - weight: 100
gates:
  - name: success
    query: sum(rate(ok{variant="{{variant}}",flag="{{flag}}"}[1m]))
    condition: ">= 0.95"
  - name: hook
    webhook: http://127.0.0.1:9/check?flag={{flag}}
    timeout: 500ms
    failureLimit: 2
"#;

    #[test]
    fn yaml_and_json_plans_parse_and_check() {
        let plan = parse(YAML.as_bytes()).unwrap();
        let checked = plan.check("ramp").unwrap();
        assert_eq!(checked.scale, 100);
        assert_eq!(plan.interval, Duration::from_secs(2));
        assert_eq!(plan.steps[2].hold, Duration::ZERO);
        assert_eq!(plan.on_failure, OnFailure::Rollback);
        let GateKind::Prometheus {
            url,
            query,
            condition,
        } = &checked.gates[0].kind
        else {
            panic!("{:?}", checked.gates[0]);
        };
        assert_eq!(url, "http://127.0.0.1:9090");
        assert_eq!(query, r#"sum(rate(ok{variant="canary",flag="ramp"}[1m]))"#);
        assert!(condition.holds(0.95) && !condition.holds(0.9));
        assert_eq!(checked.gates[1].timeout, Duration::from_millis(500));
        assert_eq!(checked.gates[1].failure_limit, 2);
        assert_eq!(checked.gates[0].failure_limit, 0);
        // The stored form reads back to the same plan.
        let json = serde_json::to_vec(&plan).unwrap();
        assert_eq!(parse(&json).unwrap(), plan);
    }

    #[test]
    fn bad_plans_are_refused() {
        let base: Plan = parse(YAML.as_bytes()).unwrap();
        let refuse = |f: &dyn Fn(&mut Plan), needle: &str| {
            let mut p = base.clone();
            f(&mut p);
            let e = p.check("ramp").unwrap_err().to_string();
            assert!(e.contains(needle), "{e} (wanted {needle})");
        };
        refuse(&|p| p.steps[1].weight = 0.5, "only grow");
        refuse(&|p| p.steps[0].weight = 0.0, "above 0");
        refuse(&|p| p.steps[2].weight = 101.0, "at most 100");
        refuse(&|p| p.steps[0].weight = 0.125, "two decimals");
        refuse(&|p| p.steps.clear(), "at least one step");
        refuse(&|p| p.baseline = "canary".into(), "differ");
        refuse(&|p| p.flag = Some("other".into()), "not 'ramp'");
        refuse(
            &|p| p.gates[0].condition = Some("~ 1".into()),
            "must start with",
        );
        refuse(&|p| p.gates[0].condition = None, "needs a condition");
        refuse(
            &|p| p.gates[0].webhook = Some("http://x".into()),
            "not both",
        );
        refuse(&|p| p.gates[1].name = "success".into(), "two gates");
        refuse(&|p| p.prometheus = None, "no Prometheus URL");
        refuse(&|p| p.interval = Duration::ZERO, "interval");
        refuse(
            &|p| p.interval = Duration::from_millis(40),
            "between 50ms and a year",
        );
        // Two gates may be checked every 100 ms, not every 99 ms.
        refuse(
            &|p| p.interval = Duration::from_millis(99),
            "more than 20 checks a second; use an interval of at least 100ms",
        );
        let mut p = base.clone();
        p.interval = Duration::from_millis(100);
        assert!(p.check("ramp").is_ok());
        refuse(&|p| p.gates[1].webhook = Some("ftp://x".into()), "http(s)");
        let mut p = base.clone();
        p.steps[0].weight = 0.5;
        assert_eq!(p.check("ramp").unwrap().scale, 10_000);
    }

    #[test]
    fn unknown_fields_and_bad_durations_are_refused() {
        assert!(parse(b"variant: a\nbaseline: b\nsteps: []\nsurprise: 1\n").is_err());
        assert!(parse(b"variant: a\nbaseline: b\nsteps: [{weight: 1, hold: soon}]\n").is_err());
        assert!(parse(b"variant: a\nbaseline: b\nsteps: [{weight: 1, hold: -1}]\n").is_err());
        let p =
            parse(br#"{"variant":"a","baseline":"b","steps":[{"weight":1,"hold":1.5}]}"#).unwrap();
        assert_eq!(p.steps[0].hold, Duration::from_millis(1500));
        assert!(parse(b"").is_err());
        assert!(parse(b"[1, 2]").is_err());
    }

    #[test]
    fn conditions() {
        for (text, yes, no) in [
            (">= 0.95", 0.95, 0.94),
            ("> 0", 0.1, 0.0),
            ("<1", 0.5, 1.0),
            ("<= 0.05", 0.05, 0.06),
            ("== 0", 0.0, 1.0),
            ("!= 0", 1.0, 0.0),
        ] {
            let c = Condition::parse(text).unwrap();
            assert!(c.holds(yes) && !c.holds(no), "{text}");
        }
        assert!(Condition::parse(">= NaN").is_err());
        assert!(Condition::parse(">=").is_err());
        assert!(!Condition::parse("< 1").unwrap().holds(f64::NAN));
    }
}
