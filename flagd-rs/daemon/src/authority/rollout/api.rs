//! The rollout routes of the admin API, nested under `/v1/rollouts`. Every answer, errors
//! included, is JSON.
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/rollouts` | every flag's latest rollout |
//! | `GET /v1/rollouts/{flag}` | one flag's latest rollout |
//! | `POST /v1/rollouts/{flag}/start` | start a rollout: `{"plan": {...}, "reason"?, "actor"?}` (the plan may also be YAML text) |
//! | `POST /v1/rollouts/{flag}/pause` | pause it (`{"reason"?, "actor"?}`) |
//! | `POST /v1/rollouts/{flag}/resume` | resume it (a split changed by hand is kept) |
//! | `POST /v1/rollouts/{flag}/promote` | skip the rest of the current hold |
//! | `POST /v1/rollouts/{flag}/abort` | end it now, putting back the override from before |
//!
//! Every verb takes a JSON object body (`{}` at least) sent with `Content-Type:
//! application/json`; anything else is refused (`415 unsupported_media_type`, `400
//! bad_request`), so a browser form cannot drive a rollout. Successful answers are the
//! rollout's status, with its last revision as `ETag`.
//!
//! In a fleet, a replica that is not the rollout controller answers `GET`s from its journal and
//! sends every verb to the controller through its runner's [`Relay`](super::runner::Relay): the
//! answer is the controller's, exactly as if it had been asked (`503 no_controller` while no
//! replica is the controller, `503 controller_timeout` when it does not answer in time).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::plan::{self, Plan};
use super::runner::{
    RolloutError, RolloutRunner, RolloutStatus, VerbAnswer, VerbKind, VerbRequest,
};
use crate::authority::{AuthorityError, JournalError};

/// The actor recorded when a request names none.
const DEFAULT_ACTOR: &str = "admin-api";

/// A JSON error answer: `{"error": code, "message": text}`.
#[derive(Debug)]
pub struct RolloutApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl RolloutApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        RolloutApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn not_json() -> Self {
        RolloutApiError {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            message:
                "send a JSON object body (`{}` at least) with `Content-Type: application/json`"
                    .into(),
        }
    }
}

impl From<RolloutError> for RolloutApiError {
    fn from(e: RolloutError) -> Self {
        let (status, code) = match &e {
            RolloutError::Plan(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_plan"),
            RolloutError::UnknownFlag(_) => (StatusCode::NOT_FOUND, "unknown_flag"),
            RolloutError::NoSplit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "no_split"),
            RolloutError::NotMonotonic { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "not_monotonic")
            }
            RolloutError::Active { .. } => (StatusCode::CONFLICT, "rollout_active"),
            RolloutError::NoRollout(_) => (StatusCode::NOT_FOUND, "no_rollout"),
            RolloutError::Finished { .. } => (StatusCode::CONFLICT, "rollout_finished"),
            RolloutError::Unresumable { .. } => (StatusCode::CONFLICT, "rollout_unresumable"),
            RolloutError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
            RolloutError::Authority(AuthorityError::Invalid(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_override")
            }
            RolloutError::Authority(AuthorityError::Conflict { .. }) => {
                (StatusCode::CONFLICT, "conflict")
            }
            RolloutError::Authority(AuthorityError::Journal(JournalError::Unavailable(_))) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            }
            RolloutError::Authority(AuthorityError::Journal(JournalError::NotLeader)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not_controller")
            }
            RolloutError::Authority(_) => (StatusCode::INTERNAL_SERVER_ERROR, "journal"),
            RolloutError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
            RolloutError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            RolloutError::NotController => (StatusCode::SERVICE_UNAVAILABLE, "not_controller"),
        };
        RolloutApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl RolloutApiError {
    fn body(&self) -> Value {
        json!({"error": self.code, "message": self.message})
    }
}

impl IntoResponse for RolloutApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<RolloutApiError> for VerbAnswer {
    fn from(e: RolloutApiError) -> Self {
        VerbAnswer {
            status: e.status.as_u16(),
            body: e.body(),
        }
    }
}

/// The `/v1/rollouts` routes, to be nested in the admin router.
pub fn router(runner: Arc<RolloutRunner>) -> Router {
    Router::new()
        .route("/", get(list))
        .route("/{flag}", get(status))
        .route("/{flag}/start", post(start))
        .route("/{flag}/pause", post(pause))
        .route("/{flag}/resume", post(resume))
        .route("/{flag}/promote", post(promote))
        .route("/{flag}/abort", post(abort))
        .with_state(runner)
}

fn answer(status: &RolloutStatus) -> Response {
    let mut response = axum::Json(status).into_response();
    etag(&mut response, status.revision);
    response
}

fn etag(response: &mut Response, revision: u64) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
}

/// Runs a verb on this replica's runner and answers as the API does: what the controller
/// answers a verb relayed to it.
pub async fn execute(runner: &Arc<RolloutRunner>, request: VerbRequest) -> VerbAnswer {
    let VerbRequest {
        verb,
        flag,
        plan,
        actor,
        reason,
    } = request;
    let result = match verb {
        VerbKind::Start => match plan {
            Some(plan) => runner.start(&flag, plan, &actor, &reason).await,
            None => return RolloutApiError::bad_request("the body needs a `plan`").into(),
        },
        VerbKind::Pause => runner.pause(&flag, &actor, &reason).await,
        VerbKind::Resume => runner.resume(&flag, &actor, &reason).await,
        VerbKind::Promote => runner.promote(&flag, &actor, &reason).await,
        VerbKind::Abort => runner.abort(&flag, &actor, &reason).await,
    };
    match result {
        Ok(status) => VerbAnswer {
            status: if verb == VerbKind::Start {
                StatusCode::CREATED.as_u16()
            } else {
                StatusCode::OK.as_u16()
            },
            body: serde_json::to_value(&status).unwrap_or(Value::Null),
        },
        Err(e) => RolloutApiError::from(e).into(),
    }
}

/// Runs a verb here when this replica drives rollouts, or sends it to the controller: the
/// answer the controller gives, wherever the verb was asked (the API and the dashboard).
pub async fn run_verb(runner: &Arc<RolloutRunner>, request: VerbRequest) -> VerbAnswer {
    match runner.relay() {
        Some(relay) if !runner.is_controller() => relay.send(request).await,
        _ => execute(runner, request).await,
    }
}

async fn dispatch(runner: &Arc<RolloutRunner>, request: VerbRequest) -> Response {
    into_response(run_verb(runner, request).await)
}

/// The HTTP answer of `answer`; a success carries the rollout's last revision as `ETag`.
fn into_response(answer: VerbAnswer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let revision = answer.body.get("revision").and_then(Value::as_u64);
    let mut response = (status, axum::Json(answer.body)).into_response();
    if let Some(revision) = revision.filter(|_| status.is_success()) {
        etag(&mut response, revision);
    }
    response
}

async fn list(State(runner): State<Arc<RolloutRunner>>) -> Response {
    axum::Json(json!({"rollouts": runner.list()})).into_response()
}

async fn status(
    State(runner): State<Arc<RolloutRunner>>,
    Path(flag): Path<String>,
) -> Result<Response, RolloutApiError> {
    Ok(answer(&runner.status(&flag)?))
}

/// The `reason` and `actor` of a verb's optional JSON body.
#[derive(Debug, Default)]
struct Note {
    actor: String,
    reason: String,
}

fn field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<String, RolloutApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(RolloutApiError::bad_request(format!(
            "`{name}` must be a string"
        ))),
    }
}

/// The request's body: a JSON object sent as `application/json` (`{}` at least).
fn body_object(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Map<String, Value>, RolloutApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(RolloutApiError::not_json());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(RolloutApiError::bad_request(
            "the body must be a JSON object (`{}` at least)",
        )),
        Err(e) => Err(RolloutApiError::bad_request(format!(
            "invalid JSON body (`{{}}` at least): {e}"
        ))),
    }
}

fn note(obj: &serde_json::Map<String, Value>) -> Result<Note, RolloutApiError> {
    let mut actor = field(obj, "actor")?;
    if actor.is_empty() {
        actor = DEFAULT_ACTOR.to_owned();
    }
    Ok(Note {
        actor,
        reason: field(obj, "reason")?,
    })
}

async fn start(
    State(runner): State<Arc<RolloutRunner>>,
    Path(flag): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, RolloutApiError> {
    let request = start_request(flag, &headers, &body)?;
    Ok(dispatch(&runner, request).await)
}

/// A start's request: the body's plan (an object or YAML text), actor and reason.
fn start_request(
    flag: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<VerbRequest, RolloutApiError> {
    let obj = body_object(headers, body)?;
    let note = note(&obj)?;
    let plan: Plan = match obj.get("plan") {
        Some(Value::String(text)) => plan::parse(text.as_bytes()).map_err(RolloutError::from)?,
        Some(value @ Value::Object(_)) => serde_json::from_value(value.clone())
            .map_err(|e| RolloutError::Plan(plan::PlanError(e.to_string())))?,
        Some(_) => {
            return Err(RolloutApiError::bad_request(
                "`plan` must be an object or YAML text",
            ));
        }
        None => return Err(RolloutApiError::bad_request("the body needs a `plan`")),
    };
    Ok(VerbRequest {
        verb: VerbKind::Start,
        flag,
        plan: Some(plan),
        actor: note.actor,
        reason: note.reason,
    })
}

macro_rules! verb {
    ($name:ident, $kind:expr) => {
        async fn $name(
            State(runner): State<Arc<RolloutRunner>>,
            Path(flag): Path<String>,
            headers: HeaderMap,
            body: Bytes,
        ) -> Result<Response, RolloutApiError> {
            let note = note(&body_object(&headers, &body)?)?;
            let request = VerbRequest {
                verb: $kind,
                flag,
                plan: None,
                actor: note.actor,
                reason: note.reason,
            };
            Ok(dispatch(&runner, request).await)
        }
    };
}

verb!(pause, VerbKind::Pause);
verb!(resume, VerbKind::Resume);
verb!(promote, VerbKind::Promote);
verb!(abort, VerbKind::Abort);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::body::Body;
    use axum::http::Request;
    use futures::future::BoxFuture;
    use tower::ServiceExt as _;

    use super::super::runner::Relay;
    use super::super::runner::testkit::{FLAGS, store};
    use super::*;
    use crate::authority::Authority;

    /// A relay that answers every verb with `answer` and keeps what it was sent.
    #[derive(Debug)]
    struct Recorder {
        sent: Mutex<Vec<VerbRequest>>,
        answer: VerbAnswer,
    }

    impl Relay for Recorder {
        fn send(&self, request: VerbRequest) -> BoxFuture<'_, VerbAnswer> {
            self.sent.lock().unwrap().push(request);
            Box::pin(async move { self.answer.clone() })
        }
    }

    async fn call(router: &Router, path: &str, body: &str) -> (StatusCode, HeaderMap, Value) {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
        (
            parts.status,
            parts.headers,
            serde_json::from_slice(&bytes).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_replica_that_is_not_the_controller_relays_verbs_and_answers_what_came_back() {
        let dir = tempfile::tempdir().unwrap();
        let authority = Authority::open(dir.path(), store(FLAGS, 1)).unwrap();
        let (_leading, input) = tokio::sync::watch::channel(None);
        let runner = RolloutRunner::spawn_led(
            authority,
            std::sync::Arc::new(super::super::HttpGates::new()),
            input,
        );
        let router = router(runner.clone());
        // Without a relay there is nowhere to send it.
        let (status, _, body) = call(&router, "/ramp/pause", "{}").await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (503, Some("not_controller"))
        );
        let relay = Arc::new(Recorder {
            sent: Mutex::new(Vec::new()),
            answer: VerbAnswer {
                status: 201,
                body: json!({"flag": "ramp", "revision": 7, "phase": "running"}),
            },
        });
        runner.set_relay(relay.clone());
        let plan = r#"{"plan": "variant: canary\nbaseline: stable\nsteps: [{weight: 10}]\n", "reason": "go"}"#;
        let (status, headers, body) = call(&router, "/ramp/start", plan).await;
        assert_eq!(
            (status.as_u16(), body["revision"].as_u64()),
            (201, Some(7)),
            "{body}"
        );
        assert_eq!(headers[header::ETAG], "\"7\"");
        let (status, _, _) = call(&router, "/ramp/pause", r#"{"actor": "ops"}"#).await;
        assert_eq!(status.as_u16(), 201);
        // A body the API refuses is refused here, without being sent.
        let (status, _, body) = call(&router, "/ramp/start", r#"{"plan": 3}"#).await;
        assert_eq!(
            (status.as_u16(), body["error"].as_str()),
            (400, Some("bad_request"))
        );
        let sent = relay.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (
                sent[0].verb,
                sent[0].flag.as_str(),
                sent[0].actor.as_str(),
                sent[0].reason.as_str()
            ),
            (VerbKind::Start, "ramp", DEFAULT_ACTOR, "go")
        );
        assert_eq!(sent[0].plan.as_ref().unwrap().steps.len(), 1);
        assert_eq!(
            (sent[1].verb, sent[1].actor.as_str()),
            (VerbKind::Pause, "ops")
        );
        // An error answer carries no ETag.
        let answer = into_response(VerbAnswer::error(503, "no_controller", "none"));
        assert_eq!(answer.status().as_u16(), 503);
        assert!(answer.headers().get(header::ETAG).is_none());
        runner.stop().await;
    }

    fn headers(content_type: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(ct) = content_type {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        }
        h
    }

    #[test]
    fn verbs_take_a_json_object_sent_as_json() {
        let json = headers(Some("application/json; charset=utf-8"));
        assert!(body_object(&json, b"{}").unwrap().is_empty());
        let obj = body_object(&json, br#"{"reason": "r"}"#).unwrap();
        assert_eq!(note(&obj).unwrap().reason, "r");
        assert_eq!(note(&obj).unwrap().actor, DEFAULT_ACTOR);
        for (h, body, code) in [
            (headers(None), &b"{}"[..], "unsupported_media_type"),
            (headers(Some("text/plain")), b"{}", "unsupported_media_type"),
            (
                headers(Some("application/x-www-form-urlencoded")),
                b"a=b",
                "unsupported_media_type",
            ),
            (json.clone(), b"", "bad_request"),
            (json.clone(), b"[]", "bad_request"),
            (json.clone(), b"not json", "bad_request"),
        ] {
            assert_eq!(body_object(&h, body).unwrap_err().code, code);
        }
        let bad = body_object(&json, br#"{"reason": 1}"#).unwrap();
        assert_eq!(note(&bad).unwrap_err().code, "bad_request");
    }
}
