//! `GET /v1/replicas` on the admin port: every live replica and the revision it serves; with
//! `?revision=N`, waits (up to `timeout`, default 10 s) until all of them serve revision N.
//! 200 when they do, 504 naming the replicas still behind when the time is up.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::replicas::{Directory, wait_for};
use crate::authority::admin::ApiError;

/// The longest wait a request may ask for.
pub const MAX_WAIT: Duration = Duration::from_secs(120);

/// The wait when a request names a revision but no timeout.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Deserialize)]
struct ReplicasQuery {
    revision: Option<u64>,
    timeout: Option<String>,
}

/// The replica routes over `directory`.
pub fn router(directory: Arc<dyn Directory>) -> Router {
    Router::new()
        .route("/v1/replicas", get(replicas))
        .with_state(directory)
}

async fn replicas(
    State(directory): State<Arc<dyn Directory>>,
    query: Result<Query<ReplicasQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the query takes revision=N (a whole number) and timeout=DURATION (e.g. 10s)",
        )
        .into_response();
    };
    let timeout = match query.timeout.as_deref().map(humantime::parse_duration) {
        None => DEFAULT_WAIT,
        Some(Ok(t)) if t <= MAX_WAIT => t,
        Some(_) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!(
                    "timeout must be a duration such as 10s or 500ms, at most {}s",
                    MAX_WAIT.as_secs()
                ),
            )
            .into_response();
        }
    };
    let unavailable = |e: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            format!("the replicas cannot be read from the shared store: {e}"),
        )
        .into_response()
    };
    let Some(revision) = query.revision else {
        return match directory.list().await {
            Ok(replicas) => axum::Json(json!({ "replicas": replicas })).into_response(),
            Err(e) => unavailable(e),
        };
    };
    match wait_for(directory.as_ref(), revision, timeout).await {
        Ok(c) if c.served => {
            axum::Json(json!({"revision": revision, "served": true, "replicas": c.replicas}))
                .into_response()
        }
        Ok(c) => {
            let behind: Vec<String> = c
                .behind(revision)
                .map(|r| format!("{} serves revision {}", r.id, r.revision))
                .collect();
            let message = if c.replicas.is_empty() {
                "no replica is registered in the store".to_owned()
            } else {
                format!(
                    "not every replica serves revision {revision} after {}: {}",
                    humantime::format_duration(timeout),
                    behind.join(", ")
                )
            };
            let body = json!({
                "error": "not_served",
                "message": message,
                "revision": revision,
                "served": false,
                "replicas": c.replicas,
            });
            (StatusCode::GATEWAY_TIMEOUT, axum::Json(body)).into_response()
        }
        Err(e) => unavailable(e),
    }
}
