//! The OFREP server (port 8016): `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag,
//! `POST /ofrep/v1/evaluate/flags` evaluates every selected flag, with flagd's bodies, status
//! codes and field order.
//!
//! Beyond flagd's reference snapshot, bulk responses carry a strong `ETag` (the SHA-256 of the
//! exact body) and honour `If-None-Match` with `304 Not Modified`, as later flagd releases and
//! the OFREP web providers expect. Single-flag successes always carry `variant` and `metadata`,
//! because the Python OFREP provider fails on a response without `variant`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use flagd_evaluator::{ErrorCode, Evaluation, Exceeded, Flag, now_unix_seconds};
use http::header::{CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use serde_json::{Map, Value};

use crate::context::assemble;
use crate::selector::Selector;
use crate::server::body::{self, BodyError};
use crate::server::cors;
use crate::server::eval::resolve::SELECTOR_HEADER;
use crate::server::ofrep_sse::{self, OfrepStreams};
use crate::server::sync::gojson::{write_str, write_value};
use crate::state::AppState;
use crate::store::Snapshot;

/// The query parameter an SSE-triggered re-fetch carries (OFREP ADR-0008).
const FLAG_CONFIG_ETAG: &str = "flagConfigEtag";

/// The OFREP routes over `state`, with CORS for `state.cors_origins`, without event streams.
/// Other methods on these paths answer `405`; other paths `404`.
pub fn router(state: AppState) -> Router {
    router_with_streams(state, None)
}

/// [`router`] with the event streams: `/ofrep/v1/sse` served and advertised in bulk answers.
pub fn router_with_streams(state: AppState, streams: Option<Arc<OfrepStreams>>) -> Router {
    let cors = cors::layer(&state.cors_origins);
    let mut routes = Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
        .route("/ofrep/v1/evaluate/flags/", post(evaluate_flags));
    if let Some(streams) = streams {
        routes = routes
            .merge(ofrep_sse::routes(streams.clone()))
            .layer(Extension(streams));
    }
    routes
        .layer(cors)
        // Shared rather than cloned into every request.
        .with_state(Arc::new(state))
}

/// The store revision: what a re-fetch's `flagConfigEtag` from a stream without a token is
/// compared with when no stream follows its selection (see [`ofrep_sse::vetoes`]).
pub fn config_version(snapshot: &Snapshot) -> String {
    snapshot.revision.to_string()
}

/// Every way an OFREP request fails, mapped to flagd's status codes and bodies in one place.
#[derive(Debug)]
enum OfrepError {
    /// The body exceeds `--max-request-body`.
    TooLarge,
    /// The body is not a JSON request object. `key` is the flag of a single-flag request.
    InvalidContext { key: Option<String> },
    /// `Flagd-Selector` does not parse.
    InvalidSelector {
        key: Option<String>,
        message: String,
    },
    /// No such flag in the selection; `metadata` is the selector echo.
    NotFound {
        key: String,
        metadata: Map<String, Value>,
    },
    /// The flag exists but could not be evaluated; `metadata` is the response metadata.
    Evaluation {
        key: String,
        code: ErrorCode,
        exceeded: Option<Exceeded>,
        metadata: Map<String, Value>,
    },
}

impl IntoResponse for OfrepError {
    fn into_response(self) -> Response {
        let mut out = String::new();
        let status = match &self {
            OfrepError::TooLarge => {
                out.push_str(r#"{"errorDetails":"request body too large"}"#);
                StatusCode::PAYLOAD_TOO_LARGE
            }
            OfrepError::InvalidContext { key } => {
                write_error(
                    &mut out,
                    key.as_deref(),
                    "INVALID_CONTEXT",
                    "Provider context is not valid",
                    None,
                );
                StatusCode::BAD_REQUEST
            }
            OfrepError::InvalidSelector { key, message } => {
                let details = format!("invalid selector: {message}");
                write_error(&mut out, key.as_deref(), "GENERAL", &details, None);
                StatusCode::BAD_REQUEST
            }
            OfrepError::NotFound { key, metadata } => {
                let details = format!("flag `{key}` does not exist");
                write_error(
                    &mut out,
                    Some(key),
                    "FLAG_NOT_FOUND",
                    &details,
                    Some(metadata),
                );
                StatusCode::NOT_FOUND
            }
            OfrepError::Evaluation {
                key,
                code,
                exceeded,
                metadata,
            } => {
                let (code, details) = evaluation_error(key, *code, *exceeded);
                write_error(&mut out, Some(key), code, &details, Some(metadata));
                StatusCode::BAD_REQUEST
            }
        };
        json_response(status, out)
    }
}

/// flagd's error code and details for a failed evaluation (PARSE_ERROR, else GENERAL); an
/// error flagd does not have (the evaluation budget) is GENERAL with its own details.
fn evaluation_error(
    key: &str,
    code: ErrorCode,
    exceeded: Option<Exceeded>,
) -> (&'static str, String) {
    match (code, exceeded) {
        (ErrorCode::ParseError, _) => ("PARSE_ERROR", format!("error parsing the flag `{key}`")),
        (_, Some(what)) => (
            "GENERAL",
            format!("flag `{key}`: evaluation budget exceeded: {what}"),
        ),
        (_, None) => (
            "GENERAL",
            "error processing the flag for evaluation".to_owned(),
        ),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// What a request asks for, once its body and headers are read.
struct Query {
    context: Value,
    selector: Selector,
}

/// Reads the body (bounded by the configured limit), the context and the selector.
async fn read_request(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    key: Option<&str>,
) -> Result<Query, OfrepError> {
    // A body that breaks off is undecodable, as flagd's JSON decoder would see it.
    let bytes = body::read_limited(headers, body, state.limits.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => OfrepError::TooLarge,
            BodyError::Broken(_) => OfrepError::InvalidContext {
                key: key.map(str::to_owned),
            },
        })?;
    let request = parse_context(&bytes).ok_or_else(|| OfrepError::InvalidContext {
        key: key.map(str::to_owned),
    })?;
    let raw = headers
        .get(SELECTOR_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    let selector = Selector::parse(&raw).map_err(|e| OfrepError::InvalidSelector {
        key: key.map(str::to_owned),
        message: e.to_string(),
    })?;
    let lookup = |name: &str| header_str(headers, name);
    let context = assemble(request, &state.context, Some(&lookup));
    Ok(Query { context, selector })
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's `context` object, as flagd's decoder reads `{"context": {...}}`: an empty body
/// or `null` is an empty context; the first JSON value must be an object (trailing data is not
/// read); the `context` member is matched case-insensitively, as Go matches struct fields; a
/// `context` that is not an object is ignored. `None` means the body is not valid.
fn parse_context(bytes: &[u8]) -> Option<Map<String, Value>> {
    let text = bytes.trim_ascii_start();
    if text.is_empty() {
        return Some(Map::new());
    }
    let first = serde_json::Deserializer::from_slice(text)
        .into_iter::<Value>()
        .next()?
        .ok()?;
    let mut body = match first {
        Value::Null => return Some(Map::new()),
        Value::Object(m) => m,
        _ => return None,
    };
    let context = match body.remove("context") {
        Some(c) => c,
        None => {
            let key = body
                .keys()
                .find(|k| k.eq_ignore_ascii_case("context"))
                .cloned();
            key.and_then(|k| body.remove(&k)).unwrap_or(Value::Null)
        }
    };
    match context {
        Value::Object(m) => Some(m),
        Value::Null => Some(Map::new()),
        other => {
            tracing::warn!(
                kind = json_kind(&other),
                "OFREP context is not an object; evaluating with an empty context"
            );
            Some(Map::new())
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
async fn evaluate_flag(
    State(state): State<Arc<AppState>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OfrepError> {
    let query = read_request(&state, &headers, body, Some(&key)).await?;
    let echo = query.selector.echo();
    let snapshot = state.store.snapshot();
    let Some(found) = snapshot.get(&key, &query.selector) else {
        state
            .metrics
            .evaluation(&key, "", "ERROR", Some("FLAG_NOT_FOUND"));
        return Err(OfrepError::NotFound {
            key,
            metadata: echo,
        });
    };
    let eval = found.flag.evaluate(&query.context, now_unix_seconds());
    record(&state, &eval);
    if let Some(code) = eval.error {
        let metadata = merged_metadata(&echo, found.flag);
        return Err(OfrepError::Evaluation {
            key,
            code,
            exceeded: eval.budget_exceeded(),
            metadata,
        });
    }
    let mut out = String::with_capacity(128);
    write_success(&mut out, &eval, &echo);
    Ok(json_response(StatusCode::OK, out))
}

/// A bulk answer: the exact body and its strong `ETag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkAnswer {
    /// The JSON body.
    pub body: String,
    /// `"<SHA-256 of the body in hex>"`, quotes included.
    pub etag: String,
}

/// The bulk answer for `selector` and the assembled `context` at `now`: every selected flag
/// evaluated, the selector echo as `metadata`, and `event_streams` (a JSON array) as
/// `eventStreams` when given. `on_eval` sees each evaluation (the handler records metrics; the
/// event streams, which render the same body to learn its `ETag`, do not).
pub fn render_bulk(
    snapshot: &Snapshot,
    selector: &Selector,
    context: &Value,
    now: i64,
    event_streams: Option<&str>,
    mut on_eval: impl FnMut(&Evaluation<'_>),
) -> BulkAnswer {
    let echo = selector.echo();
    let mut out = String::with_capacity(256);
    out.push_str("{\"flags\":[");
    for (i, found) in snapshot.iter(selector).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let eval = found.flag.evaluate(context, now);
        on_eval(&eval);
        match eval.error {
            None => write_success(&mut out, &eval, &echo),
            Some(code) => {
                let (code, details) =
                    evaluation_error(found.flag.key(), code, eval.budget_exceeded());
                write_error(
                    &mut out,
                    Some(found.flag.key()),
                    code,
                    &details,
                    Some(&merged_metadata(&echo, found.flag)),
                );
            }
        }
    }
    out.push_str("],\"metadata\":");
    write_metadata(&mut out, echo.iter().filter(|(_, v)| !v.is_null()));
    if let Some(streams) = event_streams {
        out.push_str(",\"eventStreams\":");
        out.push_str(streams);
    }
    out.push('}');
    let etag = format!("\"{}\"", sha256_hex(out.as_bytes()));
    BulkAnswer { body: out, etag }
}

/// `POST /ofrep/v1/evaluate/flags` (and with a trailing `/`).
async fn evaluate_flags(
    State(state): State<Arc<AppState>>,
    streams: Option<Extension<Arc<OfrepStreams>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OfrepError> {
    let query = read_request(&state, &headers, body, None).await?;
    let snapshot = state.store.snapshot();
    let now = now_unix_seconds();
    let streams = streams.map(|Extension(s)| s);
    let on_eval = |eval: &Evaluation<'_>| record(&state, eval);
    let BulkAnswer { body: out, etag } = match &streams {
        Some(s) => s.bulk_answer(&snapshot, &query.selector, &query.context, now, on_eval),
        None => render_bulk(
            &snapshot,
            &query.selector,
            &query.context,
            now,
            None,
            on_eval,
        ),
    };
    // A re-fetch triggered by an SSE event that announced another configuration must get the
    // full body, even if the client's cached body happens to be identical.
    let vetoed = query_param(&uri, FLAG_CONFIG_ETAG).is_some_and(|v| {
        ofrep_sse::vetoes(streams.as_deref(), &snapshot, &query.selector, &v, &etag)
    });
    let etag_value =
        HeaderValue::from_str(&etag).unwrap_or_else(|_| HeaderValue::from_static("\"\""));
    if !vetoed && if_none_match(&headers, &etag) {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().insert(ETAG, etag_value);
        return Ok(response);
    }
    let mut response = json_response(StatusCode::OK, out);
    response.headers_mut().insert(ETAG, etag_value);
    Ok(response)
}

fn record(state: &AppState, eval: &Evaluation<'_>) {
    if eval.budget_exceeded().is_some() {
        state.metrics.budget_exceeded(eval.flag.key());
    }
    state.metrics.evaluation(
        eval.flag.key(),
        eval.variant.unwrap_or_default(),
        eval.reason.as_str(),
        eval.error.map(|e| e.as_str()),
    );
}

/// `{"value":..,"key":..,"reason":..,"variant":..,"metadata":{..}}` in Go's field order. `value`
/// is left out when there is none (the caller's default applies); `variant` is always present,
/// empty when nothing was chosen.
fn write_success(out: &mut String, eval: &Evaluation<'_>, echo: &Map<String, Value>) {
    out.push('{');
    if let Some(value) = eval.value.filter(|v| !v.is_null()) {
        out.push_str("\"value\":");
        write_value(out, value);
        out.push(',');
    }
    out.push_str("\"key\":");
    write_str(out, eval.flag.key());
    out.push_str(",\"reason\":");
    write_str(out, eval.reason.as_str());
    out.push_str(",\"variant\":");
    write_str(out, eval.variant.unwrap_or_default());
    out.push_str(",\"metadata\":");
    write_metadata(out, metadata_entries(echo, eval.flag));
    out.push('}');
}

/// `{"key":..,"errorCode":..,"errorDetails":..,"metadata":..}`; `key` is left out for whole-request
/// errors of the bulk endpoint, and `metadata` is `null` when there is none.
fn write_error(
    out: &mut String,
    key: Option<&str>,
    code: &str,
    details: &str,
    metadata: Option<&Map<String, Value>>,
) {
    out.push('{');
    if let Some(key) = key {
        out.push_str("\"key\":");
        write_str(out, key);
        out.push(',');
    }
    out.push_str("\"errorCode\":");
    write_str(out, code);
    out.push_str(",\"errorDetails\":");
    write_str(out, details);
    out.push_str(",\"metadata\":");
    match metadata {
        Some(m) => write_metadata(out, m.iter()),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// The response metadata: the selector echo overlaid by the flag's metadata, nulls skipped.
fn metadata_entries<'a>(
    echo: &'a Map<String, Value>,
    flag: &'a Flag,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    echo.iter()
        .chain(flag.metadata().iter())
        .filter(|(_, v)| !v.is_null())
}

fn merged_metadata(echo: &Map<String, Value>, flag: &Flag) -> Map<String, Value> {
    metadata_entries(echo, flag)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Writes entries as an object with sorted keys; a later entry for the same key wins.
fn write_metadata<'a>(out: &mut String, entries: impl Iterator<Item = (&'a String, &'a Value)>) {
    let merged: BTreeMap<&str, &Value> = entries.map(|(k, v)| (k.as_str(), v)).collect();
    out.push('{');
    for (i, (k, v)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut s = String::with_capacity(64);
    for b in digest.as_ref() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether any `If-None-Match` header matches `etag` (a quoted strong tag) under RFC 9110's weak
/// comparison: a comma-separated list, `*`, `W/` prefixes ignored, unquoted tags tolerated.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let opaque = etag.trim_matches('"');
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|list| list_matches(list, opaque))
}

fn list_matches(list: &str, opaque: &str) -> bool {
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let member = rest.strip_prefix("W/").unwrap_or(rest);
        let (tag, after) = match member.strip_prefix('"') {
            Some(quoted) => quoted.split_once('"').unwrap_or((quoted, "")),
            None => {
                let (tag, after) = member.split_once(',').unwrap_or((member, ""));
                (tag.trim_end(), after)
            }
        };
        if tag == "*" || tag == opaque {
            return true;
        }
        rest = after;
    }
}

/// The first value of query parameter `name`, percent-decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let mut look = bytes.clone();
                match (look.next().and_then(hex_val), look.next().and_then(hex_val)) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        bytes = look;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_parse_like_flagd() {
        let ok = |body: &str| parse_context(body.as_bytes());
        assert_eq!(ok(""), Some(Map::new()));
        assert_eq!(ok("  \n"), Some(Map::new()));
        assert_eq!(ok("null"), Some(Map::new()));
        assert_eq!(ok("{}"), Some(Map::new()));
        assert_eq!(ok(r#"{"context":"str"}"#), Some(Map::new()));
        assert_eq!(ok(r#"{"Context":{"a":1}}"#).map(|m| m.len()), Some(1));
        assert_eq!(
            ok(r#"{"context":{"a":1}} trailing"#).map(|m| m.len()),
            Some(1)
        );
        assert_eq!(ok("{"), None);
        assert_eq!(ok("[]"), None);
        assert_eq!(ok("\"x\""), None);
    }

    #[test]
    fn if_none_match_lists() {
        let tag = "abc";
        assert!(list_matches("\"abc\"", tag));
        assert!(list_matches("W/\"abc\"", tag));
        assert!(list_matches("\"x\", W/\"abc\"", tag));
        assert!(list_matches("*", tag));
        assert!(list_matches("x, abc", tag));
        assert!(list_matches("\"a,b\",\"abc\"", tag));
        assert!(!list_matches("\"abcd\"", tag));
        assert!(!list_matches("", tag));
        assert!(!list_matches("\"ab", tag));
    }

    #[test]
    fn query_parameters() {
        let uri: Uri = "/p?a=1&flagConfigEtag=%22v%201%22+x&b".parse().unwrap();
        assert_eq!(
            query_param(&uri, "flagConfigEtag").as_deref(),
            Some("\"v 1\" x")
        );
        assert_eq!(query_param(&uri, "b").as_deref(), Some(""));
        assert_eq!(query_param(&uri, "c"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(sha256_hex(b"").len(), 64);
    }
}
