//! The OFREP server (port 8016): `POST /ofrep/v1/evaluate/flags/{key}` evaluates one flag,
//! `POST /ofrep/v1/evaluate/flags` evaluates every selected flag, with flagd's bodies, status
//! codes and field order.
//!
//! Evaluation goes through the resolution core the gRPC and Connect services use
//! (`server::eval::resolve`): the same selector parsing, the same context (request ∪ `-X`
//! static values ∪ `-H` headers, built only when a rule reads it), the same response metadata
//! and the same evaluation metrics. What is OFREP's own is here:
//!
//! - `request.rs`: the strict reading of the request body;
//! - `wire.rs`: the JSON answers, numbers in the form the flag file gave them;
//! - `error.rs`: every failure's status code and body, in one place;
//! - `conditional.rs`: the bulk answer's `ETag`, `If-None-Match` and `304`, and the
//!   `flagConfigEtag` veto of ADR-0008;
//! - `version.rs`: the configuration version of a selection ([`config_version`]), which event
//!   streams announce;
//! - `gzip.rs`: compressed answers for clients that accept gzip.
//!
//! Beyond flagd's reference snapshot, bulk answers carry a strong `ETag` (the SHA-256 of the
//! exact body) and honour `If-None-Match` with `304 Not Modified`, as flagd 0.16 and the OFREP
//! web providers do. Single-flag successes always carry `variant` and `metadata`, because the
//! Python OFREP provider fails on an answer without `variant`. Requests are recorded in the HTTP
//! metrics under flagd's route names ([`SINGLE_ROUTE`], [`BULK_ROUTE`]).

mod conditional;
mod error;
pub(crate) mod gzip;
mod request;
mod version;
mod wire;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use flagd_evaluator::{Evaluation, Flag, Metadata, now_unix_seconds};
use futures::future::Either;
use http::header::ETAG;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use serde_json::{Map, Value};
use tower::ServiceExt as _;
use tower::util::MapResponseLayer;

pub use version::config_version;

use self::error::{OfrepError, collect_metadata, write_flag_error};
use self::wire::{write_metadata, write_success};
use crate::selector::Selector;
use crate::server::body::{self, BodyError};
use crate::server::cors;
use crate::server::eval::resolve::{self, Call};
use crate::server::http::App;
use crate::server::ofrep_sse::{self, OfrepStreams};
use crate::server::record::RecordLayer;
use crate::state::AppState;
use crate::store::Snapshot;

/// The single-flag route, as flagd names it in its HTTP metrics.
pub const SINGLE_ROUTE: &str = "/ofrep/v1/evaluate/flags/{key}";

/// The bulk route (`flags` and `flags/`), as flagd names it in its HTTP metrics.
pub const BULK_ROUTE: &str = "/ofrep/v1/evaluate/{path:flags\\/|flags}";

/// The metrics routes of this port: [`SINGLE_ROUTE`], [`BULK_ROUTE`] and `other`.
const ROUTES: [&str; 3] = [SINGLE_ROUTE, BULK_ROUTE, "other"];

/// The metrics route of a request path on this port, as an index into [`ROUTES`].
fn route_of(path: &str) -> usize {
    match path.strip_prefix("/ofrep/v1/evaluate/flags") {
        Some("" | "/") => 1,
        Some(key) if key.starts_with('/') => 0,
        _ => 2,
    }
}

/// What the OFREP handlers share.
struct Ofrep {
    state: AppState,
    /// The event streams, which bulk answers advertise, when they are served.
    streams: Option<Arc<OfrepStreams>>,
}

/// The OFREP routes over `state`, with CORS for `state.cors_origins`, the HTTP metrics and gzip,
/// without event streams. Other methods on these paths answer `405`; other paths `404`.
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(app(state, None))
}

/// The application of the OFREP port, served without a router around it; with `streams`,
/// `/ofrep/v1/sse` is served and advertised in bulk answers.
pub fn app(state: AppState, streams: Option<Arc<OfrepStreams>>) -> impl App {
    let cors = cors::layer(&state.cors_origins);
    let record = RecordLayer::new(state.metrics.clone(), &ROUTES, route_of);
    // Shared rather than cloned into every request.
    let ofrep = Arc::new(Ofrep {
        state,
        streams: streams.clone(),
    });
    let mut routes = Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(evaluate_flag))
        .route("/ofrep/v1/evaluate/flags", post(evaluate_flags))
        .route("/ofrep/v1/evaluate/flags/", post(evaluate_flags));
    if let Some(streams) = streams {
        routes = routes.merge(ofrep_sse::routes(streams));
    }
    let routes = routes.with_state(ofrep.clone());
    // A single-flag evaluation, the port's most frequent request, goes straight to its
    // handler; everything else through the routes.
    let dispatch = tower::service_fn(move |request: Request| match single_flag_key(&request) {
        Some(key) => {
            let ofrep = ofrep.clone();
            Either::Left(async move {
                let (parts, body) = request.into_parts();
                Ok(single_answer(&ofrep, key, &parts.headers, body).await)
            })
        }
        None => Either::Right(routes.clone().oneshot(request)),
    });
    // The handlers gzip their own answers, so the metrics see the bytes that are sent; every
    // answer varies with `Accept-Encoding`.
    tower::ServiceBuilder::new()
        .layer(cors)
        .layer(record)
        .layer(MapResponseLayer::new(gzip::vary))
        .service(dispatch)
}

/// The flag key of a request the routes would give to [`evaluate_flag`] unchanged: a `POST` of
/// `/ofrep/v1/evaluate/flags/{key}` whose key is one path segment with nothing to
/// percent-decode. Any other request, a key with `%` escapes included, goes through the routes,
/// which decode it (or refuse it) as they always have.
fn single_flag_key(request: &Request) -> Option<String> {
    if request.method() != Method::POST {
        return None;
    }
    let key = request
        .uri()
        .path()
        .strip_prefix("/ofrep/v1/evaluate/flags/")?;
    let plain = !key.is_empty() && !key.contains(['/', '%']);
    plain.then(|| key.to_owned())
}

/// A bulk answer: the exact body and its strong `ETag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkAnswer {
    /// The JSON body.
    pub body: String,
    /// `"<SHA-256 of the body in hex>"`, quotes included.
    pub etag: String,
}

/// The one renderer of bulk bodies: every flag `selector` selects, evaluated by `evaluate`, the
/// selector's echo as `metadata`, and `event_streams` (a JSON array) as `eventStreams` when
/// given. The handler evaluates through the resolution core (metrics, spans); the event streams
/// render the same body for a context they keep, to learn the `ETag` its refetch will get.
pub fn render_bulk<'s>(
    snapshot: &'s Snapshot,
    selector: &'s Selector,
    revision: Option<&Value>,
    mut evaluate: impl FnMut(&'s Flag) -> Evaluation<'s>,
    event_streams: Option<&str>,
) -> BulkAnswer {
    let mut out = String::with_capacity(256);
    out.push_str("{\"flags\":[");
    for (i, found) in snapshot.iter(selector).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let eval = evaluate(found.flag);
        match eval.error {
            None => write_success(&mut out, &eval, selector, revision),
            Some(code) => write_flag_error(
                &mut out,
                &eval,
                code,
                resolve::metadata_entries(selector, revision, eval.metadata()),
            ),
        }
    }
    // The top-level metadata is the selector's echo alone.
    out.push_str("],\"metadata\":");
    write_metadata(
        &mut out,
        resolve::metadata_entries(selector, None, Metadata::empty()),
    );
    if let Some(streams) = event_streams {
        out.push_str(",\"eventStreams\":");
        out.push_str(streams);
    }
    out.push('}');
    let etag = conditional::etag(out.as_bytes());
    BulkAnswer { body: out, etag }
}

/// Reads the request's context from the body (bounded by the configured limit).
async fn read_context(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    key: Option<&str>,
) -> Result<Map<String, Value>, OfrepError> {
    let invalid = |reason: String| OfrepError::InvalidContext {
        key: key.map(str::to_owned),
        reason,
    };
    let bytes = body::read_limited(headers, body, state.limits.max_body_bytes)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge(_) => OfrepError::TooLarge,
            // A body that breaks off is undecodable, as flagd's JSON decoder would see it.
            BodyError::Broken(_) => invalid(e.to_string()),
        })?;
    request::decode(&bytes).map_err(|e| invalid(e.to_string()))
}

/// `POST /ofrep/v1/evaluate/flags/{key}`.
async fn evaluate_flag(
    State(ofrep): State<Arc<Ofrep>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    single_answer(&ofrep, key, &headers, body).await
}

/// The answer to a single-flag evaluation.
async fn single_answer(ofrep: &Ofrep, key: String, headers: &HeaderMap, body: Body) -> Response {
    let accepts_gzip = gzip::accepts_gzip(headers);
    match single(&ofrep.state, key, headers, body).await {
        Ok(out) => gzip::json_answer(StatusCode::OK, out, None, accepts_gzip),
        Err(e) => e.answer(accepts_gzip),
    }
}

/// The body of a single-flag success.
async fn single(
    state: &AppState,
    key: String,
    headers: &HeaderMap,
    body: Body,
) -> Result<String, OfrepError> {
    let context = read_context(state, headers, body, Some(&key)).await?;
    let call = Call::json(state, headers, context, SINGLE_SPAN)
        .map_err(|e| OfrepError::selector(&e, Some(&key)))?;
    let snapshot = state.store.snapshot();
    let Ok(flag) = resolve::lookup(state, &snapshot, &call, &key) else {
        let metadata = collect_metadata(call.metadata_entries(Metadata::empty()));
        return Err(OfrepError::NotFound { key, metadata });
    };
    let eval = resolve::untyped(state, &call, flag, now_unix_seconds());
    if let Some(code) = eval.error {
        return Err(OfrepError::Evaluation {
            key,
            code,
            exceeded: eval.budget_exceeded(),
            metadata: collect_metadata(call.metadata_entries(eval.metadata())),
        });
    }
    let mut out = String::with_capacity(128);
    write_success(&mut out, &eval, &call.selector, call.revision());
    Ok(out)
}

/// The span name of a single-flag request (its route).
const SINGLE_SPAN: &str = "POST /ofrep/v1/evaluate/flags/{key}";

/// The span name of a bulk request (its route).
const BULK_SPAN: &str = "POST /ofrep/v1/evaluate/flags";

/// `POST /ofrep/v1/evaluate/flags` (and with a trailing `/`).
async fn evaluate_flags(
    State(ofrep): State<Arc<Ofrep>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let accepts_gzip = gzip::accepts_gzip(&headers);
    let streams = ofrep.streams.as_deref();
    bulk(&ofrep.state, streams, &uri, &headers, body, accepts_gzip)
        .await
        .unwrap_or_else(|e| e.answer(accepts_gzip))
}

async fn bulk(
    state: &AppState,
    streams: Option<&OfrepStreams>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    accepts_gzip: bool,
) -> Result<Response, OfrepError> {
    let context = read_context(state, headers, body, None).await?;
    let call = Call::json(state, headers, context, BULK_SPAN)
        .map_err(|e| OfrepError::selector(&e, None))?;
    call.trace_bulk();
    let snapshot = state.store.snapshot();
    let now = now_unix_seconds();
    let evaluate = |flag| resolve::untyped(state, &call, flag, now);
    let BulkAnswer { body: out, etag } = match streams {
        // The streams learn this context, so they can announce the ETag its refetch will get.
        Some(streams) => {
            let context = call.context().to_json();
            streams.bulk_answer(
                &snapshot,
                &call.selector,
                call.revision(),
                &context,
                evaluate,
            )
        }
        None => render_bulk(&snapshot, &call.selector, call.revision(), evaluate, None),
    };
    let vetoed = match streams {
        Some(streams) => conditional::config_etag(uri).is_some_and(|announced| {
            ofrep_sse::vetoes(Some(streams), &snapshot, &call.selector, &announced, &etag)
        }),
        None => conditional::config_etag_differs(uri, || config_version(&snapshot, &call.selector)),
    };
    if !vetoed && conditional::if_none_match(headers, &etag, accepts_gzip) {
        // The tag of the representation a 200 would carry now.
        let tag = if gzip::compresses(accepts_gzip, out.len()) {
            gzip::suffixed(&etag)
        } else {
            etag
        };
        return Ok(not_modified(&tag));
    }
    Ok(gzip::json_answer(
        StatusCode::OK,
        out,
        Some(&etag),
        accepts_gzip,
    ))
}

/// `304 Not Modified`: the `ETag` and nothing else (no body, no content type or length).
fn not_modified(etag: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    if let Ok(tag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(ETAG, tag);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_flag_requests_taken_straight_to_the_handler() {
        let key = |method: Method, path: &str| {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            single_flag_key(&request)
        };
        let post = |path| key(Method::POST, path);
        assert_eq!(
            post("/ofrep/v1/evaluate/flags/my-flag").as_deref(),
            Some("my-flag")
        );
        assert_eq!(
            post("/ofrep/v1/evaluate/flags/a.b_c?x=1").as_deref(),
            Some("a.b_c")
        );
        // Left to the routes: other methods, paths, empty or nested keys, and escapes to decode.
        assert_eq!(key(Method::GET, "/ofrep/v1/evaluate/flags/my-flag"), None);
        assert_eq!(key(Method::HEAD, "/ofrep/v1/evaluate/flags/my-flag"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flags/"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flags"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flags/a/b"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flags/a/"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flags/my%20flag"), None);
        assert_eq!(post("/ofrep/v1/evaluate/flagsx"), None);
        assert_eq!(post("/ofrep/v1/sse"), None);
    }

    #[test]
    fn metrics_routes() {
        let route = |path| ROUTES[route_of(path)];
        assert_eq!(route("/ofrep/v1/evaluate/flags"), BULK_ROUTE);
        assert_eq!(route("/ofrep/v1/evaluate/flags/"), BULK_ROUTE);
        assert_eq!(route("/ofrep/v1/evaluate/flags/my-flag"), SINGLE_ROUTE);
        assert_eq!(route("/ofrep/v1/evaluate/flagsx"), "other");
        assert_eq!(route("/ofrep/v1/configuration"), "other");
        assert_eq!(route("/"), "other");
    }
}
