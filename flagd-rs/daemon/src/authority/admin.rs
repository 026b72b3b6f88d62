//! The admin API (port 8017): read the effective flags and their overrides, change overrides,
//! list and restore revisions. Every answer, errors included, is JSON.
//!
//! | route | does |
//! |---|---|
//! | `GET /v1/flags` | every served flag with its override (stale fields named) and split, and the dangling overrides of flags no source defines |
//! | `GET /v1/flags/{key}` | one flag |
//! | `PUT /v1/flags/{key}/override` | set or change the override (`{"state"?, "defaultVariant"?, "weights"?, "reason"?, "actor"?}`) |
//! | `DELETE /v1/flags/{key}/override` | remove the override (`{"reason"?, "actor"?}` or `?reason=&actor=`) |
//! | `GET /v1/revisions?flag=&limit=&before=\|after=` | a page of revisions, oldest first (default: the latest 100; `next` is the cursor of the following page) |
//! | `GET /v1/revisions/{n}` | one revision |
//! | `POST /v1/revisions/{n}/restore` | restore the override set of revision `n` (`{"reason"?, "actor"?}`) |
//! | `/v1/rollouts/...` | the rollout routes, nested |
//! | `GET /v1/replicas?revision=&timeout=` | every replica and the revision it serves; with `revision`, waits until all serve it ([`crate::fleet::api`]) |
//!
//! Changing requests are JSON (`Content-Type: application/json`, a JSON object body), accept
//! `If-Match: <revision>` and answer 409 when the authority has moved on; successful answers
//! carry the new revision as `ETag`. Without a token the API must only listen on a loopback
//! address; with one, every request needs `Authorization: Bearer <token>`, and a non-loopback
//! address also needs TLS (or `--admin-insecure`). Whatever the token, [`super::guard`] refuses
//! requests a web page could forge (foreign `Host` or `Origin`, non-JSON changes).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use flagd_evaluator::OverridePatch;
use serde::Deserialize;
use serde_json::{Value, json};

use super::guard::Guard;
use super::{Authority, AuthorityError, Cursor, JournalError, RevisionInfo};

/// The actor recorded when a request names none.
const DEFAULT_ACTOR: &str = "admin-api";

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    head: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            head: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What went wrong, in one sentence.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> Self {
        let message = e.to_string();
        let (status, code, head) = match &e {
            AuthorityError::UnknownFlag(_) => (StatusCode::NOT_FOUND, "unknown_flag", None),
            AuthorityError::Invalid(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_override", None)
            }
            AuthorityError::EmptyPatch => (StatusCode::BAD_REQUEST, "empty_override", None),
            AuthorityError::NoOverride(_) => (StatusCode::NOT_FOUND, "no_override", None),
            AuthorityError::Conflict { head, .. } => {
                (StatusCode::CONFLICT, "conflict", Some(*head))
            }
            AuthorityError::UnknownRevision { head, .. } => {
                (StatusCode::NOT_FOUND, "unknown_revision", Some(*head))
            }
            AuthorityError::Journal(JournalError::Missing { .. }) => {
                (StatusCode::GONE, "revision_unavailable", None)
            }
            AuthorityError::Journal(JournalError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None)
            }
            AuthorityError::Journal(JournalError::NotLeader) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not_controller", None)
            }
            AuthorityError::Journal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "journal", None),
        };
        ApiError {
            status,
            code,
            message,
            head,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let (Some(head), Some(obj)) = (self.head, body.as_object_mut()) {
            obj.insert("head".into(), head.into());
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The admin bearer token, compared in constant time.
#[derive(Clone)]
pub struct AdminToken(Arc<[u8; 32]>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token; surrounding whitespace (a file's trailing newline) is not part of it. `None`
    /// for an empty token.
    pub fn new(token: &str) -> Option<AdminToken> {
        let token = token.trim();
        (!token.is_empty()).then(|| AdminToken(Arc::new(digest(token.as_bytes()))))
    }

    /// Reads the token from a file.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<AdminToken> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading the admin token file {}: {e}", path.display()))?;
        AdminToken::new(&text)
            .ok_or_else(|| anyhow::anyhow!("the admin token file {} is empty", path.display()))
    }

    /// Whether `candidate` is the token. Both sides are hashed first, so the comparison takes
    /// the same time whatever the candidate's length or content.
    pub fn matches(&self, candidate: &str) -> bool {
        let other = digest(candidate.trim().as_bytes());
        self.0
            .iter()
            .zip(other.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    for (o, b) in out.iter_mut().zip(d.as_ref()) {
        *o = *b;
    }
    out
}

/// Refuses to serve the admin API on a non-loopback address without a token, or without TLS
/// unless `insecure` says plaintext is intended.
pub fn check_bind(
    addr: &SocketAddr,
    has_token: bool,
    has_tls: bool,
    insecure: bool,
) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !has_token {
        anyhow::bail!(
            "refusing to serve the admin API on {addr} without --admin-token-file: \
             without a token it may only listen on a loopback address"
        );
    }
    if !has_tls && !insecure {
        anyhow::bail!(
            "refusing to serve the admin API on {addr} in plaintext: give \
             --admin-cert-path/--admin-key-path (or --server-cert-path/--server-key-path), or \
             --admin-insecure if the network is trusted"
        );
    }
    Ok(())
}

/// The admin routes, with `rollouts` nested under `/v1/rollouts`. No authentication: wrap it
/// with [`require_token`] when a token is configured.
pub fn router(authority: Arc<Authority>, rollouts: Router, replicas: Router) -> Router {
    Router::new()
        .route("/v1/flags", get(list_flags))
        .route("/v1/flags/{key}", get(get_flag))
        .route(
            "/v1/flags/{key}/override",
            put(set_override).delete(clear_override),
        )
        .route("/v1/revisions", get(list_revisions))
        .route("/v1/revisions/{revision}", get(get_revision))
        .route("/v1/revisions/{revision}/restore", post(restore))
        .with_state(authority)
        .nest("/v1/rollouts", rollouts)
        .merge(replicas)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// `app` with every request required to carry `Authorization: Bearer <token>` (401 otherwise).
pub fn require_token(app: Router, token: AdminToken) -> Router {
    app.layer(middleware::from_fn_with_state(token, authenticate))
}

/// The admin app as served: [`router`], behind [`require_token`] when a token is given, and
/// behind the browser checks of [`guard`] in every case.
pub fn app(
    authority: Arc<Authority>,
    rollouts: Router,
    replicas: Router,
    token: Option<AdminToken>,
    guard: Guard,
) -> Router {
    let app = router(authority, rollouts, replicas);
    let app = match token {
        Some(t) => require_token(app, t),
        None => app,
    };
    app.layer(middleware::from_fn_with_state(guard, super::guard::check))
}

async fn authenticate(State(token): State<AdminToken>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        });
    match presented {
        Some(candidate) if token.matches(candidate) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid bearer token",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs an Authorization: Bearer token",
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// Runs a blocking authority call (it fsyncs) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthorityError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

/// A JSON answer carrying the revision as `ETag`.
fn with_etag(revision: u64, body: Value) -> Response {
    let mut response = axum::Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// `If-Match: 12`, `"12"` or `W/"12"`; `*` means any revision.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("If-Match is not text"))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.trim_start_matches("W/").trim_matches('"');
    bare.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!("If-Match must be a revision number, got `{text}`"))
    })
}

/// The optional `reason` and `actor` of a change, from a JSON body or the query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Note {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actor: Option<String>,
}

impl Note {
    fn actor(&self) -> &str {
        self.actor
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or(DEFAULT_ACTOR)
    }

    fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("")
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

async fn list_flags(State(authority): State<Arc<Authority>>) -> Result<Response, ApiError> {
    let (head, flags, dangling) = blocking(move || {
        Ok((
            authority.head(),
            authority.effective_flags(),
            authority.dangling_overrides(),
        ))
    })
    .await?;
    Ok(with_etag(
        head,
        json!({"revision": head, "flags": flags, "dangling": dangling}),
    ))
}

async fn get_flag(
    State(authority): State<Arc<Authority>>,
    Path(key): Path<String>,
) -> Result<Response, ApiError> {
    let (head, flags) =
        blocking(move || Ok((authority.head(), authority.effective_flags()))).await?;
    let found: Vec<_> = flags.into_iter().filter(|f| f.key == key).collect();
    match found.as_slice() {
        [] => Err(AuthorityError::UnknownFlag(key).into()),
        [one] => Ok(with_etag(head, json!({"revision": head, "flag": one}))),
        // The same key in several flag sets: the override applies to all of them.
        many => Ok(with_etag(
            head,
            json!({"revision": head, "flag": many.last(), "flagSets": many}),
        )),
    }
}

async fn set_override(
    State(authority): State<Arc<Authority>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    let mut value: Value = parse_json(&body)?;
    let Some(obj) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let note = Note {
        reason: take_string(obj, "reason")?,
        actor: take_string(obj, "actor")?,
    };
    let patch: OverridePatch = serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid override: {e}")))?;
    let info = blocking(move || {
        authority.set_override(&key, patch, note.actor(), note.reason(), expected)
    })
    .await?;
    Ok(revision_response(&info))
}

fn take_string(
    obj: &mut serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ApiError> {
    match obj.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("`{field}` must be a string"))),
    }
}

async fn clear_override(
    State(authority): State<Arc<Authority>>,
    Path(key): Path<String>,
    Query(query): Query<Note>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let expected = if_match(&headers)?;
    // The note may come in the JSON body or, as before, in the query.
    let note = if body.iter().all(u8::is_ascii_whitespace) {
        query
    } else {
        let body: Note = parse_json(&body)?;
        Note {
            reason: body.reason.or(query.reason),
            actor: body.actor.or(query.actor),
        }
    };
    let info =
        blocking(move || authority.clear_override(&key, note.actor(), note.reason(), expected))
            .await?;
    Ok(revision_response(&info))
}

/// Revisions per page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;

/// The largest `limit`.
const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevisionQuery {
    #[serde(default)]
    flag: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    after: Option<u64>,
}

/// A page of revisions, oldest first: by default the latest `limit`; with `before=N` the
/// latest below N; with `after=N` the first above N. `next`, when present, is the query of the
/// following page in the same direction (`{"before": N}` or `{"after": N}`).
async fn list_revisions(
    State(authority): State<Arc<Authority>>,
    query: Result<Query<RevisionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| ApiError::bad_request(format!("invalid query: {}", e.body_text())))?;
    let limit = match query.limit {
        None => DEFAULT_PAGE,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "`limit` must be between 1 and {MAX_PAGE}, got {n}"
            )));
        }
    };
    let cursor = match (query.before, query.after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give `before` or `after`, not both"));
        }
        (Some(before), None) => Cursor::Before(before),
        (None, Some(after)) => Cursor::After(after),
        (None, None) => Cursor::Before(u64::MAX),
    };
    let page = blocking(move || {
        let flag = query.flag.as_deref().filter(|f| !f.is_empty());
        authority.revisions_page(flag, cursor, limit)
    })
    .await?;
    let mut body = json!({"head": page.head, "revisions": page.revisions});
    if let (Some(next), Some(obj)) = (page.next, body.as_object_mut()) {
        obj.insert("next".into(), json!(next));
    }
    Ok(with_etag(page.head, body))
}

fn parse_revision(text: &str) -> Result<u64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("`{text}` is not a revision number")))
}

async fn get_revision(
    State(authority): State<Arc<Authority>>,
    Path(revision): Path<String>,
) -> Result<Response, ApiError> {
    let revision = parse_revision(&revision)?;
    let (head, info) =
        blocking(move || Ok((authority.head(), authority.revision(revision)?))).await?;
    match info {
        Some(info) => Ok(with_etag(head, json!(info))),
        None => Err(AuthorityError::UnknownRevision { revision, head }.into()),
    }
}

async fn restore(
    State(authority): State<Arc<Authority>>,
    Path(revision): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let revision = parse_revision(&revision)?;
    let expected = if_match(&headers)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "restore takes a JSON object body, e.g. {\"reason\": \"...\"} or {}",
        ));
    }
    let note: Note = parse_json(&body)?;
    let info =
        blocking(move || authority.restore_if(revision, note.actor(), note.reason(), expected))
            .await?;
    Ok(revision_response(&info))
}

fn revision_response(info: &RevisionInfo) -> Response {
    with_etag(info.revision, json!(info))
}
