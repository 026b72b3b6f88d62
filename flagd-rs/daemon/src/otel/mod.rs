//! OpenTelemetry: spans for evaluations, sync streams, source reloads and admin writes, exported
//! over OTLP/gRPC, with the W3C trace context of incoming requests as their parent; and, with
//! `--metrics-exporter otel`, the daemon's metrics pushed over OTLP as well.
//!
//! Nothing here is built unless a collector is configured: [`Telemetry::off`] is a `None`, and
//! every span helper checks it before doing anything else, so a request costs one branch when
//! tracing is off. When it is on, spans go through a bounded queue to a batch exporter running
//! on its own thread: a request never waits for the collector, and a span that finds the queue
//! full is dropped and counted in `flagd_rs_otel_spans_dropped_total`.
//!
//! - `config.rs` — the flags and `OTEL_*` variables, resolved into [`OtelConfig`].
//! - `channel.rs` — the gRPC channel to a collector (endpoint, TLS, metadata).
//! - `queue.rs` — the bounded span queue in front of the SDK's batch processor.
//! - `sampling.rs` — the sampling decision taken before a span is built.
//! - `spans.rs` — trace-context extraction and the spans the servers record.
//! - `metrics.rs` — the periodic OTLP export of the metrics registry.

mod channel;
pub mod config;
pub mod metrics;
mod queue;
mod sampling;
pub mod spans;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};

pub use config::{OtelArgs, OtelConfig};
pub use spans::EvalSpan;

use crate::metrics::Metrics;

/// The instrumentation scope of every span the daemon records.
const SCOPE: &str = "flagd-rs";

/// How long shutdown waits for the last spans to be exported.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The daemon's tracing handle, shared by every server; cheap to clone. [`Telemetry::off`] (the
/// default) records nothing and costs nothing.
#[derive(Clone, Default)]
pub struct Telemetry {
    tracing: Option<Arc<Tracing>>,
}

struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    sampling: sampling::Sampling,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("tracing", &self.tracing.is_some())
            .finish()
    }
}

impl Telemetry {
    /// No tracing.
    pub const fn off() -> Telemetry {
        Telemetry { tracing: None }
    }

    /// Whether spans are recorded at all.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.tracing.is_some()
    }

    /// The tracer, when tracing is on and a span with parent `parent` is sampled.
    #[inline]
    pub(crate) fn tracer_for(&self, parent: &opentelemetry::Context) -> Option<&SdkTracer> {
        let tracing = self.tracing.as_deref()?;
        tracing.sampling.keep(parent).then_some(&tracing.tracer)
    }

    /// Starts tracing as `config` says (nothing when it names no trace collector), registering
    /// the dropped-span counter in `metrics`. Must run inside the tokio runtime.
    pub fn start(config: &OtelConfig, metrics: &mut Metrics) -> anyhow::Result<Telemetry> {
        let Some(target) = &config.traces else {
            return Ok(Telemetry::off());
        };
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_channel(channel::connect(target)?)
            .with_timeout(target.timeout)
            .with_metadata(channel::metadata(target));
        if target.gzip {
            builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
        }
        let exporter = builder.build().context("building the OTLP span exporter")?;
        let dropped = metrics.register_counter(
            "flagd_rs_otel_spans_dropped",
            "Spans dropped because the export queue to the OpenTelemetry collector was full",
        );
        let gate = Arc::new(queue::Gate::new(config.queue_size, dropped));
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.queue_size)
            .with_max_export_batch_size(config.batch_size)
            .with_scheduled_delay(config.schedule_delay)
            .build();
        let processor =
            BatchSpanProcessor::builder(queue::GatedExporter::new(exporter, gate.clone()))
                .with_batch_config(batch)
                .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(queue::GatedProcessor::new(processor, gate))
            .with_sampler(sampler(config))
            .with_resource(resource(config))
            .build();
        let tracer = provider.tracer(SCOPE);
        tracing::info!(
            collector = %target.endpoint,
            sample_ratio = config.sample_ratio,
            "exporting traces over OTLP"
        );
        Ok(Telemetry {
            tracing: Some(Arc::new(Tracing {
                provider,
                tracer,
                sampling: sampling::Sampling::new(config.sample_ratio, config.ignore_parent),
            })),
        })
    }

    /// Exports the spans still queued (bounded by a few seconds) and stops the exporter.
    pub async fn shutdown(&self) {
        let Some(tracing) = self.tracing.clone() else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || {
            tracing.provider.shutdown_with_timeout(SHUTDOWN_FLUSH)
        })
        .await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "the last spans could not be exported");
        }
    }
}

/// The SDK's sampler. Parent-based ratio sampling (the default) is decided before a span is
/// built ([`sampling::Sampling`]), so the SDK keeps what reaches it; a ratio that ignores
/// parents is decided by the SDK from the trace id.
fn sampler(config: &OtelConfig) -> Sampler {
    if !config.ignore_parent {
        return Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    }
    match config.sample_ratio {
        r if r >= 1.0 => Sampler::AlwaysOn,
        r if r <= 0.0 => Sampler::AlwaysOff,
        r => Sampler::TraceIdRatioBased(r),
    }
}

/// The resource of every span and metric: the configured attributes, nothing detected.
fn resource(config: &OtelConfig) -> Resource {
    Resource::builder_empty()
        .with_attributes(
            config
                .resource
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .build()
}
