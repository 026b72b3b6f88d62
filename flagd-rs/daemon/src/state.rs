//! The state every server shares: one documented struct, cloned cheaply into each handler.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::otel::Telemetry;
use crate::store::Store;

/// How request contexts are completed (flagd's `-X` and `-H` options).
#[derive(Debug, Clone, Default)]
pub struct ContextConfig {
    /// `--context-value key=value`: always strings; override the request's context.
    pub static_values: Map<String, Value>,
    /// `--context-from-header Header=key`: header name (lower case) and the context key it sets;
    /// override both the request's context and the static values.
    pub from_headers: Vec<(http::HeaderName, String)>,
}

/// Limits applied to requests and streams.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted (0 = no limit).
    pub max_body_bytes: usize,
    /// Largest total size of request headers accepted.
    pub max_header_bytes: usize,
    /// Server-side deadline for EventStream and SyncFlags streams (`None` = no deadline).
    pub stream_deadline: Option<Duration>,
    /// Idle time after which EventStream sends `keep_alive`.
    pub keep_alive: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1_000_000,
            max_header_bytes: 1_000_000,
            stream_deadline: None,
            keep_alive: Duration::from_secs(20),
        }
    }
}

/// Everything a request handler needs. Cheap to clone (all fields are shared handles).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The flags; shared because every request reads the current snapshot.
    pub store: Arc<Store>,
    /// Static and header-mapped context; shared, read-only after start-up.
    pub context: Arc<ContextConfig>,
    /// Counters and histograms; shared because every request records into them.
    pub metrics: Arc<Metrics>,
    /// Becomes `true` when the daemon shuts down; streams send `provider_shutdown` and end.
    pub shutdown: watch::Receiver<bool>,
    /// Request and stream limits.
    pub limits: Limits,
    /// Allowed CORS origins (`*` = any; empty = any, as flagd's CORS library treats it).
    pub cors_origins: Arc<[String]>,
    /// Request spans; shared because every request may record one ([`Telemetry::off`] when no
    /// collector is configured).
    pub telemetry: Telemetry,
    /// With `--revision-metadata`: the override revision served, added to every evaluation's
    /// flag metadata as `flagd-rs-revision`.
    pub revision: Option<Arc<std::sync::atomic::AtomicU64>>,
}
