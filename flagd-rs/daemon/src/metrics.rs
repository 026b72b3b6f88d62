//! Metrics with flagd's OpenTelemetry names, exposed in Prometheus text format.
//! (Placeholder API; the implementation records nothing yet.)

use std::time::Duration;

/// The daemon's metrics registry.
#[derive(Debug, Default)]
pub struct Metrics {}

impl Metrics {
    /// A new, empty registry.
    pub fn new() -> Self {
        Self {}
    }

    /// Records one evaluation of `flag_key` (impression + result reason).
    pub fn evaluation(&self, _flag_key: &str, _variant: &str, _reason: &str, _error_code: Option<&str>) {}

    /// Records one served HTTP/gRPC request.
    pub fn http_request(&self, _route: &str, _method: &str, _status: u16, _elapsed: Duration) {}

    /// Prometheus text exposition of everything recorded.
    pub fn encode(&self) -> String {
        String::new()
    }
}
