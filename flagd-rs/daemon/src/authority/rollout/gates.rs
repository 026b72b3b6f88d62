//! Gates: the checks a rollout makes during every hold. A Prometheus gate runs a PromQL instant
//! query against Prometheus' HTTP API (`GET /api/v1/query`) and compares every series of the
//! answer with its condition; a webhook gate POSTs the rollout's position to a URL that answers
//! pass or fail.
//!
//! Every check ends in one of three verdicts. `Fail` is a definite answer that the variant is not
//! healthy. `Inconclusive` means the check could not decide: Prometheus had no data (an empty
//! answer or `NaN`, as a ratio over zero requests gives), the query or the request failed, or
//! the webhook answered something else than pass or fail. A rollout never moves forward on an
//! inconclusive answer.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use super::plan::{Condition, Gate, GateKind};

/// The most bytes of a gate's answer that are read.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The variant is healthy by this gate.
    Pass,
    /// The variant is not healthy by this gate.
    Fail,
    /// The gate could not decide.
    Inconclusive,
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateOutcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The value compared (for a query, the first failing series' or else the first one's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// A sentence saying why.
    pub detail: String,
}

impl GateOutcome {
    /// A verdict with a value and a reason.
    pub fn new(verdict: Verdict, value: Option<f64>, detail: impl Into<String>) -> GateOutcome {
        GateOutcome {
            verdict,
            value,
            detail: detail.into(),
        }
    }

    fn inconclusive(detail: impl Into<String>) -> GateOutcome {
        GateOutcome::new(Verdict::Inconclusive, None, detail)
    }
}

/// Where the rollout is, as a gate sees it (and as a webhook receives it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateContext {
    /// The flag rolled out.
    pub flag: String,
    /// The rollout's id (the revision that started it).
    pub rollout: u64,
    /// The variant rolled out.
    pub variant: String,
    /// Its baseline.
    pub baseline: String,
    /// The current step (1-based).
    pub step: usize,
    /// The variant's current weight in percent.
    pub weight: f64,
}

/// Runs gate checks. The daemon uses [`HttpGates`]; tests can answer from a script.
pub trait GateEvaluator: Send + Sync + fmt::Debug {
    /// Checks `gate` once. Never fails: problems are inconclusive verdicts.
    fn check<'a>(&'a self, gate: &'a Gate, ctx: &'a GateContext) -> BoxFuture<'a, GateOutcome>;
}

/// Checks gates over HTTP. The client (and its TLS set-up) is built at the first check, so a
/// daemon that runs no gated rollout never pays for it.
#[derive(Debug, Clone, Default)]
pub struct HttpGates {
    client: std::sync::OnceLock<reqwest::Client>,
}

impl HttpGates {
    /// An HTTP gate client (per-check timeouts come from the gates).
    pub fn new() -> HttpGates {
        HttpGates::default()
    }

    fn client(&self) -> &reqwest::Client {
        self.client.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .user_agent(concat!(
                    "flagd-rs/",
                    env!("CARGO_PKG_VERSION"),
                    " rollout-gate"
                ))
                .build()
                .unwrap_or_default()
        })
    }

    async fn prometheus(
        &self,
        url: &str,
        query: &str,
        condition: &Condition,
        timeout: Duration,
    ) -> GateOutcome {
        let endpoint = format!("{url}/api/v1/query");
        let request = self
            .client()
            .get(&endpoint)
            .query(&[("query", query)])
            .timeout(timeout);
        let (status, body) = match send(request).await {
            Ok(answer) => answer,
            Err(e) => return GateOutcome::inconclusive(format!("querying {endpoint}: {e}")),
        };
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                return GateOutcome::inconclusive(format!(
                    "Prometheus answered {status} with a body that is not JSON"
                ));
            }
        };
        judge_prometheus(&value, condition)
    }

    async fn webhook(&self, url: &str, gate: &Gate, ctx: &GateContext) -> GateOutcome {
        let body = json!({
            "gate": gate.name,
            "flag": ctx.flag,
            "rollout": ctx.rollout,
            "variant": ctx.variant,
            "baseline": ctx.baseline,
            "step": ctx.step,
            "weight": ctx.weight,
        });
        let request = self.client().post(url).json(&body).timeout(gate.timeout);
        let (status, body) = match send(request).await {
            Ok(answer) => answer,
            Err(e) => return GateOutcome::inconclusive(format!("calling {url}: {e}")),
        };
        if !status.is_success() {
            return GateOutcome::inconclusive(format!("the webhook answered {status}"));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => judge_webhook(&v),
            Err(_) => GateOutcome::inconclusive("the webhook's answer is not JSON"),
        }
    }
}

/// Sends a request and reads a bounded body.
async fn send(request: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
    let mut response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl GateEvaluator for HttpGates {
    fn check<'a>(&'a self, gate: &'a Gate, ctx: &'a GateContext) -> BoxFuture<'a, GateOutcome> {
        Box::pin(async move {
            let check = async {
                match &gate.kind {
                    GateKind::Prometheus {
                        url,
                        query,
                        condition,
                    } => self.prometheus(url, query, condition, gate.timeout).await,
                    GateKind::Webhook { url } => self.webhook(url, gate, ctx).await,
                }
            };
            // The request timeout covers the exchange; this also bounds connecting.
            match tokio::time::timeout(gate.timeout + Duration::from_millis(100), check).await {
                Ok(outcome) => outcome,
                Err(_) => GateOutcome::inconclusive(format!(
                    "no answer within {}",
                    humantime::format_duration(gate.timeout)
                )),
            }
        })
    }
}

/// A Prometheus sample value: a string holding a float (`"0.5"`, `"NaN"`, `"+Inf"`).
fn sample(v: &Value) -> Option<f64> {
    let text = v.as_array()?.get(1)?.as_str()?;
    text.parse().ok()
}

fn labels(series: &Value) -> String {
    let Some(metric) = series.get("metric").and_then(Value::as_object) else {
        return "{}".into();
    };
    let inner: Vec<String> = metric.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", inner.join(","))
}

/// Judges an answer of `/api/v1/query` against `condition`: every series must meet it; an
/// empty answer or a `NaN` is no data.
pub fn judge_prometheus(answer: &Value, condition: &Condition) -> GateOutcome {
    if answer.get("status").and_then(Value::as_str) != Some("success") {
        let kind = answer
            .get("errorType")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let message = answer
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("the answer has no status");
        return GateOutcome::inconclusive(format!("query error ({kind}): {message}"));
    }
    let data = answer.get("data");
    let result_type = data
        .and_then(|d| d.get("resultType"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let result = data.and_then(|d| d.get("result"));
    let values: Vec<(String, Option<f64>)> = match (result_type, result) {
        ("scalar", Some(r)) => vec![("scalar".into(), sample(r))],
        ("vector", Some(Value::Array(series))) => series
            .iter()
            .map(|s| (labels(s), s.get("value").and_then(sample)))
            .collect(),
        ("matrix", _) => {
            return GateOutcome::inconclusive(
                "the query returned a range vector; gates need an instant value",
            );
        }
        _ => {
            return GateOutcome::inconclusive(format!(
                "unexpected answer (resultType `{result_type}`)"
            ));
        }
    };
    if values.is_empty() {
        return GateOutcome::inconclusive("no data: the query returned no series");
    }
    let mut first = None;
    for (series, value) in &values {
        let Some(v) = value else {
            return GateOutcome::inconclusive(format!("series {series} has no numeric value"));
        };
        if v.is_nan() {
            return GateOutcome::inconclusive(format!("no data: series {series} is NaN"));
        }
        first.get_or_insert(*v);
        if !condition.holds(*v) {
            let detail = if values.len() == 1 {
                format!("{v} is not {condition}")
            } else {
                format!("series {series}: {v} is not {condition}")
            };
            return GateOutcome::new(Verdict::Fail, Some(*v), detail);
        }
    }
    let detail = match first {
        Some(v) if values.len() == 1 => format!("{v} is {condition}"),
        _ => format!("all {} series are {condition}", values.len()),
    };
    GateOutcome::new(Verdict::Pass, first, detail)
}

/// Judges a webhook's JSON answer: `{"result": "pass"|"fail"|"inconclusive"}` or
/// `{"pass": true|false}`, with optional `value` and `message`.
pub fn judge_webhook(answer: &Value) -> GateOutcome {
    let verdict = match (
        answer.get("result").and_then(Value::as_str),
        answer.get("pass").and_then(Value::as_bool),
    ) {
        (Some(r), _) if r.eq_ignore_ascii_case("pass") => Some(Verdict::Pass),
        (Some(r), _) if r.eq_ignore_ascii_case("fail") => Some(Verdict::Fail),
        (Some(r), _) if r.eq_ignore_ascii_case("inconclusive") => Some(Verdict::Inconclusive),
        (None, Some(true)) => Some(Verdict::Pass),
        (None, Some(false)) => Some(Verdict::Fail),
        _ => None,
    };
    let value = answer.get("value").and_then(Value::as_f64);
    let message = answer.get("message").and_then(Value::as_str);
    match verdict {
        Some(v) => GateOutcome::new(
            v,
            value,
            message.map_or_else(|| format!("the webhook answered {v}"), str::to_owned),
        ),
        None => GateOutcome::inconclusive(
            "the webhook's answer has no `result` of pass, fail or inconclusive",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(values: &[&str]) -> Value {
        let result: Vec<Value> = values
            .iter()
            .enumerate()
            .map(|(i, v)| json!({"metric": {"i": i.to_string()}, "value": [1.0, v]}))
            .collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn prometheus_answers() {
        let ge = Condition::parse(">= 0.95").unwrap();
        let judge = |a: &Value| judge_prometheus(a, &ge).verdict;
        assert_eq!(judge(&vector(&["0.99"])), Verdict::Pass);
        assert_eq!(judge(&vector(&["0.9"])), Verdict::Fail);
        assert_eq!(judge(&vector(&["0.99", "0.5"])), Verdict::Fail);
        assert_eq!(judge(&vector(&["0.99", "0.97"])), Verdict::Pass);
        assert_eq!(judge(&vector(&[])), Verdict::Inconclusive);
        assert_eq!(judge(&vector(&["NaN"])), Verdict::Inconclusive);
        assert_eq!(judge(&vector(&["+Inf"])), Verdict::Pass);
        assert_eq!(judge(&vector(&["x"])), Verdict::Inconclusive);
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "0.2"]}});
        let out = judge_prometheus(&scalar, &ge);
        assert_eq!((out.verdict, out.value), (Verdict::Fail, Some(0.2)));
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        let out = judge_prometheus(&error, &ge);
        assert_eq!(out.verdict, Verdict::Inconclusive);
        assert!(out.detail.contains("parse error"), "{}", out.detail);
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert_eq!(judge(&matrix), Verdict::Inconclusive);
        assert_eq!(judge(&json!(null)), Verdict::Inconclusive);
    }

    #[test]
    fn webhook_answers() {
        let v = |a: Value| judge_webhook(&a).verdict;
        assert_eq!(v(json!({"result": "pass"})), Verdict::Pass);
        assert_eq!(v(json!({"result": "FAIL"})), Verdict::Fail);
        assert_eq!(v(json!({"result": "inconclusive"})), Verdict::Inconclusive);
        assert_eq!(v(json!({"pass": true})), Verdict::Pass);
        assert_eq!(v(json!({"pass": false})), Verdict::Fail);
        assert_eq!(v(json!({"result": "maybe"})), Verdict::Inconclusive);
        assert_eq!(v(json!([])), Verdict::Inconclusive);
        let out = judge_webhook(&json!({"result": "fail", "message": "budget burnt", "value": 3}));
        assert_eq!(out.detail, "budget burnt");
        assert_eq!(out.value, Some(3.0));
    }
}
