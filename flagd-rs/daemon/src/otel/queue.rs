//! The bounded span queue. The SDK's batch processor already holds spans in a bounded channel,
//! but keeps its count of dropped spans to itself; this gate in front of it admits a span only
//! while fewer than `capacity` spans await export, counts the ones it turns away, and is
//! released as spans are handed to the exporter. The gate's count is never below the
//! processor's own, so the processor never drops a span the gate did not count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter, SpanProcessor};
use prometheus_client::metrics::counter::Counter;

/// Spans admitted and not yet handed to the exporter, against the limit.
#[derive(Debug)]
pub struct Gate {
    waiting: AtomicUsize,
    capacity: usize,
    dropped: Counter,
}

impl Gate {
    /// A gate admitting up to `capacity` waiting spans; turned-away spans count in `dropped`.
    pub fn new(capacity: usize, dropped: Counter) -> Gate {
        Gate {
            waiting: AtomicUsize::new(0),
            capacity,
            dropped,
        }
    }

    /// Takes a place for one span; `false` (and one more drop counted) when the queue is full.
    fn admit(&self) -> bool {
        let admitted = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.capacity).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            self.dropped.inc();
        }
        admitted
    }

    /// Frees the places of `n` spans that left the queue.
    fn release(&self, n: usize) {
        let _ = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some(w.saturating_sub(n))
            });
    }
}

/// The batch processor behind the gate.
#[derive(Debug)]
pub struct GatedProcessor<P> {
    inner: P,
    gate: Arc<Gate>,
}

impl<P> GatedProcessor<P> {
    /// `inner` behind `gate`.
    pub fn new(inner: P, gate: Arc<Gate>) -> Self {
        Self { inner, gate }
    }
}

impl<P: SpanProcessor> SpanProcessor for GatedProcessor<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.gate.admit() {
            self.inner.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing the gate for every batch it is handed and logging when exports
/// start failing and when they work again (not every failure: a collector that is down would
/// otherwise fill the log).
#[derive(Debug)]
pub struct GatedExporter<E> {
    inner: E,
    gate: Arc<Gate>,
    health: ExportHealth,
}

impl<E> GatedExporter<E> {
    /// `inner`, releasing `gate`.
    pub fn new(inner: E, gate: Arc<Gate>) -> Self {
        Self {
            inner,
            gate,
            health: ExportHealth::new("spans"),
        }
    }
}

impl<E: SpanExporter> SpanExporter for GatedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.gate.release(batch.len());
        let result = self.inner.export(batch).await;
        self.health
            .record(result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Whether the last export of a signal failed, so that only changes are logged.
#[derive(Debug)]
pub struct ExportHealth {
    what: &'static str,
    failing: AtomicBool,
}

impl ExportHealth {
    /// Health of the exports of `what` (`spans`, `metrics`).
    pub fn new(what: &'static str) -> Self {
        Self {
            what,
            failing: AtomicBool::new(false),
        }
    }

    /// Records one export's outcome: `None` for success.
    pub fn record(&self, error: Option<&dyn std::fmt::Display>) {
        match error {
            Some(e) if !self.failing.swap(true, Ordering::AcqRel) => tracing::warn!(
                error = %e,
                "exporting {} to the OpenTelemetry collector failed; \
                 further failures are not logged until an export succeeds",
                self.what
            ),
            None if self.failing.swap(false, Ordering::AcqRel) => tracing::info!(
                "exporting {} to the OpenTelemetry collector works again",
                self.what
            ),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_capacity_and_counts_the_rest() {
        let dropped = Counter::default();
        let gate = Gate::new(2, dropped.clone());
        assert!(gate.admit() && gate.admit());
        assert!(!gate.admit());
        assert_eq!(dropped.get(), 1);
        gate.release(1);
        assert!(gate.admit());
        assert!(!gate.admit());
        assert_eq!(dropped.get(), 2);
        gate.release(10);
        assert!(gate.admit());
    }
}
