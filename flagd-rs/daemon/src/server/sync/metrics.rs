//! The sync service's stream metrics, under flagd's names:
//!
//! | flagd instrument | Prometheus series | labels |
//! |---|---|---|
//! | `feature_flag.flagd.sync.active_streams` (up-down counter) | `feature_flag_flagd_sync_active_streams` | `selector`, `provider_id` (each only when the client sent one) |
//! | `feature_flag.flagd.sync.stream.duration` (histogram, s) | `feature_flag_flagd_sync_stream_duration_seconds` | the same and `reason` (`normal_close`, `deadline_exceeded`) |
//!
//! Both label values come from clients, so distinct label sets are capped; beyond the cap a
//! stream is counted under `other`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use rustc_hash::FxHashSet;
use tokio::time::Instant;

/// flagd's buckets for stream durations: 30 s to 3 h.
const STREAM_DURATION_BUCKETS: [f64; 10] = [
    30.0, 60.0, 120.0, 300.0, 480.0, 600.0, 1200.0, 1800.0, 3600.0, 10800.0,
];

/// Distinct (selector, provider id) pairs kept apart.
const MAX_LABEL_SETS: usize = 256;

/// Why a stream ended, as flagd labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The client left or the daemon stopped.
    NormalClose,
    /// The server's or the client's deadline passed.
    DeadlineExceeded,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::NormalClose => "normal_close",
            EndReason::DeadlineExceeded => "deadline_exceeded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamLabels {
    selector: Arc<str>,
    provider_id: Arc<str>,
}

impl EncodeLabelSet for StreamLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        for (name, value) in [
            ("selector", &self.selector),
            ("provider_id", &self.provider_id),
        ] {
            if !value.is_empty() {
                EncodeLabelSet::encode(&[(name, &**value)], encoder)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct EndLabels {
    stream: StreamLabels,
    reason: EndReason,
}

impl EncodeLabelSet for EndLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.stream.encode(encoder)?;
        EncodeLabelSet::encode(&[("reason", self.reason.as_str())], encoder)
    }
}

#[derive(Debug, Clone)]
struct DurationBuckets;

impl MetricConstructor<Histogram> for DurationBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(STREAM_DURATION_BUCKETS)
    }
}

/// The sync stream metrics. Part of [`crate::metrics::Metrics`].
#[derive(Debug)]
pub struct SyncStreamMetrics {
    active: Family<StreamLabels, Gauge>,
    durations: Family<EndLabels, Histogram, DurationBuckets>,
    seen: RwLock<FxHashSet<StreamLabels>>,
}

impl SyncStreamMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let active = Family::<StreamLabels, Gauge>::default();
        let durations = Family::new_with_constructor(DurationBuckets);
        registry.register(
            "feature_flag_flagd_sync_active_streams",
            "Measures the number of currently active gRPC sync streaming connections",
            active.clone(),
        );
        registry.register_with_unit(
            "feature_flag_flagd_sync_stream_duration",
            "Measures the duration of gRPC sync streaming connections",
            Unit::Seconds,
            durations.clone(),
        );
        Self {
            active,
            durations,
            seen: RwLock::new(FxHashSet::default()),
        }
    }

    /// Counts a stream as open until the returned record is dropped.
    pub fn stream_opened(self: &Arc<Self>, selector: &str, provider_id: &str) -> StreamRecord {
        let mut labels = StreamLabels {
            selector: selector.into(),
            provider_id: provider_id.into(),
        };
        let known = self
            .seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&labels);
        if !known {
            let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
            if seen.len() >= MAX_LABEL_SETS {
                labels = StreamLabels {
                    selector: "other".into(),
                    provider_id: "other".into(),
                };
            } else {
                seen.insert(labels.clone());
            }
        }
        self.active.get_or_create(&labels).inc();
        StreamRecord {
            metrics: self.clone(),
            labels,
            started: Instant::now(),
            reason: EndReason::NormalClose,
        }
    }
}

/// One open stream in the metrics; records its end when dropped.
#[derive(Debug)]
pub struct StreamRecord {
    metrics: Arc<SyncStreamMetrics>,
    labels: StreamLabels,
    started: Instant,
    reason: EndReason,
}

impl StreamRecord {
    /// Sets why the stream ends (normal close unless told otherwise).
    pub fn ending(&mut self, reason: EndReason) {
        self.reason = reason;
    }
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        self.metrics.active.get_or_create(&self.labels).dec();
        let elapsed: Duration = self.started.elapsed();
        self.metrics
            .durations
            .get_or_create(&EndLabels {
                stream: self.labels.clone(),
                reason: self.reason,
            })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn streams_are_counted_with_flagds_names() {
        let mut registry = Registry::default();
        let metrics = Arc::new(SyncStreamMetrics::register(&mut registry));
        let mut a = metrics.stream_opened("flagSetId=a", "provider-1");
        let b = metrics.stream_opened("", "");
        let out = text(&registry);
        assert!(
            out.contains(
                "feature_flag_flagd_sync_active_streams{selector=\"flagSetId=a\",provider_id=\"provider-1\"} 1"
            ),
            "{out}"
        );
        assert!(
            out.contains("feature_flag_flagd_sync_active_streams 1"),
            "{out}"
        );
        a.ending(EndReason::DeadlineExceeded);
        drop(a);
        drop(b);
        let out = text(&registry);
        assert!(
            out.contains("feature_flag_flagd_sync_active_streams{selector=\"flagSetId=a\",provider_id=\"provider-1\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("feature_flag_flagd_sync_stream_duration_seconds_count{selector=\"flagSetId=a\",provider_id=\"provider-1\",reason=\"deadline_exceeded\"} 1"),
            "{out}"
        );
        assert!(
            out.contains(
                "feature_flag_flagd_sync_stream_duration_seconds_count{reason=\"normal_close\"} 1"
            ),
            "{out}"
        );
    }

    #[test]
    fn client_chosen_labels_are_capped() {
        let mut registry = Registry::default();
        let metrics = Arc::new(SyncStreamMetrics::register(&mut registry));
        let records: Vec<_> = (0..MAX_LABEL_SETS + 10)
            .map(|i| metrics.stream_opened(&format!("s{i}"), ""))
            .collect();
        let out = text(&registry);
        assert!(
            out.contains("feature_flag_flagd_sync_active_streams{selector=\"other\",provider_id=\"other\"} 10"),
            "{}",
            out.lines().filter(|l| l.contains("other")).collect::<Vec<_>>().join("\n")
        );
        drop(records);
    }
}
