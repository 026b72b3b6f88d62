//! The management port (8014): liveness, readiness, Prometheus metrics and gRPC health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::{Metrics, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
use crate::store::Store;

/// What the management handlers read.
#[derive(Debug, Clone)]
pub struct ManagementState {
    /// Readiness comes from the store's per-source sync state.
    pub store: Arc<Store>,
    /// The registry `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// True while the evaluation service accepts requests; shared with `run`, which flips it.
    pub serving: Arc<AtomicBool>,
    /// With `--store-fail-closed`: the authority whose shared store must be reachable for the
    /// daemon to be ready.
    pub fail_closed: Option<Arc<crate::authority::Authority>>,
}

impl ManagementState {
    /// Ready as flagd defines it: the evaluation service is serving and every source has
    /// delivered a valid document at least once; with `--store-fail-closed`, also the shared
    /// store answers.
    pub fn is_ready(&self) -> bool {
        self.serving.load(Ordering::Acquire)
            && self.store.is_ready()
            && self
                .fail_closed
                .as_ref()
                .is_none_or(|a| a.store_health().is_none_or(|health| health.connected))
    }
}

/// The HTTP routes: `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(state: ManagementState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// The standard `grpc.health.v1.Health` service as an axum router (for
/// [`crate::server::http::grpc_or_http`]), reporting SERVING for the whole server (`""`) until
/// [`set_not_serving`] is called on shutdown.
pub fn health_service() -> (HealthReporter, Router) {
    let (reporter, service) = tonic_health::server::health_reporter();
    (
        reporter,
        tonic::service::Routes::new(service).into_axum_router(),
    )
}

/// Marks the whole server NOT_SERVING so gRPC health checks fail while shutdown drains.
pub async fn set_not_serving(reporter: &HealthReporter) {
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

async fn healthz() -> StatusCode {
    StatusCode::OK
}

async fn readyz(State(state): State<ManagementState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::PRECONDITION_FAILED
    }
}

async fn metrics(State(state): State<ManagementState>, headers: HeaderMap) -> Response {
    // Prometheus asks for OpenMetrics when it can parse it; everything else gets the classic
    // text format, which is also what flagd's exporter serves by default.
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if wants_openmetrics {
        (state.metrics.encode_openmetrics(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (state.metrics.encode(), PROMETHEUS_CONTENT_TYPE)
    };
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagd_evaluator::{Format, LoadOptions};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use crate::store::{SourceEvent, SourceUpdate};

    async fn get(
        router: &Router,
        path: &str,
        accept: Option<&str>,
    ) -> (StatusCode, String, String) {
        let mut req = axum::http::Request::get(path);
        if let Some(a) = accept {
            req = req.header(header::ACCEPT, a);
        }
        let resp = router
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn probes_follow_store_and_serving() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let state = ManagementState {
            store: store.clone(),
            metrics: Arc::new(Metrics::new()),
            serving: Arc::new(AtomicBool::new(true)),
            fail_closed: None,
        };
        let r = router(state.clone());
        assert_eq!(
            get(&r, "/healthz", None).await,
            (StatusCode::OK, String::new(), String::new())
        );
        assert_eq!(
            get(&r, "/readyz", None).await.0,
            StatusCode::PRECONDITION_FAILED
        );
        let doc = br#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"}}}"#
            .to_vec();
        store
            .apply(SourceUpdate {
                source: 0,
                event: SourceEvent::Content {
                    bytes: doc,
                    format: Format::Json,
                },
            })
            .unwrap();
        assert_eq!(get(&r, "/readyz", None).await.0, StatusCode::OK);
        state.serving.store(false, Ordering::Release);
        assert_eq!(
            get(&r, "/readyz", None).await.0,
            StatusCode::PRECONDITION_FAILED
        );
    }

    #[tokio::test]
    async fn metrics_negotiates_format() {
        let state = ManagementState {
            store: Store::new(vec![], LoadOptions::default()),
            metrics: Arc::new(Metrics::new()),
            serving: Arc::new(AtomicBool::new(true)),
            fail_closed: None,
        };
        state.metrics.evaluation("f", "a", "STATIC", None);
        let r = router(state);
        let (status, ct, body) = get(&r, "/metrics", None).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, PROMETHEUS_CONTENT_TYPE)
        );
        assert!(
            body.contains("feature_flag_flagd_impression_total{"),
            "{body}"
        );
        let (_, ct, body) = get(
            &r,
            "/metrics",
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
        )
        .await;
        assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
        assert!(body.ends_with("# EOF\n"));
    }
}
