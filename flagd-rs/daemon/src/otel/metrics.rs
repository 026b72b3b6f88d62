//! `--metrics-exporter otel`: the metrics registry pushed over OTLP/gRPC at a fixed interval.
//!
//! The registry stays the single place metrics are recorded (and `/metrics` keeps serving it
//! unchanged). Each export reads the registry's OpenMetrics text, the same numbers a Prometheus
//! scrape sees, and turns every family into an OTLP metric with cumulative temporality: counters
//! into monotonic sums, gauges and info families into gauges, histograms into explicit-bucket
//! histograms. flagd's own instruments get back their OpenTelemetry names and attribute keys
//! (`feature_flag.flagd.impression` with `feature_flag.key`, `http.server.request.duration` in
//! `s` with `http.route`, ...); the daemon's own metrics keep their Prometheus names.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;

use super::channel;
use super::config::Target;
use super::queue::ExportHealth;
use crate::metrics::Metrics;

/// flagd's OpenTelemetry instruments, by the Prometheus family name the registry writes: their
/// OTLP name and unit.
const FLAGD_INSTRUMENTS: &[(&str, &str, &str)] = &[
    (
        "feature_flag_flagd_impression",
        "feature_flag.flagd.impression",
        "{impression}",
    ),
    (
        "feature_flag_flagd_result_reason",
        "feature_flag.flagd.result.reason",
        "{evaluation}",
    ),
    (
        "http_server_request_duration_seconds",
        "http.server.request.duration",
        "s",
    ),
];

/// Prometheus label names back to flagd's attribute keys.
const ATTRIBUTE_KEYS: &[(&str, &str)] = &[
    ("feature_flag_key", "feature_flag.key"),
    ("feature_flag_result_variant", "feature_flag.result.variant"),
    ("feature_flag_provider_name", "feature_flag.provider.name"),
    ("feature_flag_reason", "feature_flag.reason"),
    ("http_route", "http.route"),
    ("http_request_method", "http.request.method"),
    ("http_response_status_code", "http.response.status_code"),
];

/// Starts pushing `metrics` to `target` every `interval`, plus once more when `shutdown` turns
/// true (then the task ends). Must run inside the tokio runtime.
pub fn spawn(
    target: &Target,
    resource: &[(String, String)],
    interval: Duration,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut client = MetricsServiceClient::new(channel::connect(target)?);
    if target.gzip {
        client = client.send_compressed(CompressionEncoding::Gzip);
    }
    let metadata = channel::metadata(target);
    let resource = Resource {
        attributes: resource
            .iter()
            .map(|(k, v)| string_attribute(k.clone(), v.clone()))
            .collect(),
        ..Default::default()
    };
    tracing::info!(collector = %target.endpoint, ?interval, "exporting metrics over OTLP");
    Ok(tokio::spawn(async move {
        let health = ExportHealth::new("metrics");
        let start = unix_nanos(SystemTime::now());
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                _ = shutdown.wait_for(|stop| *stop) => true,
            };
            let now = unix_nanos(SystemTime::now());
            let request = ExportMetricsServiceRequest {
                resource_metrics: vec![ResourceMetrics {
                    resource: Some(resource.clone()),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: super::SCOPE.to_owned(),
                            version: env!("CARGO_PKG_VERSION").to_owned(),
                            ..Default::default()
                        }),
                        metrics: to_otlp(&metrics.encode_openmetrics(), start, now),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            let mut request = tonic::Request::new(request);
            *request.metadata_mut() = metadata.clone();
            let result = client.export(request).await;
            health.record(result.as_ref().err().map(|e| e as &dyn std::fmt::Display));
            if last {
                break;
            }
        }
    }))
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn string_attribute(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// One family of the OpenMetrics text: `# TYPE`, `# HELP` and its samples.
#[derive(Debug, Default)]
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: String,
    samples: Vec<Sample<'a>>,
}

#[derive(Debug)]
struct Sample<'a> {
    /// The sample's name (the family name plus `_total`, `_bucket`, ...).
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: &'a str,
}

/// Converts the registry's OpenMetrics text into OTLP metrics with cumulative data points from
/// `start` to `now` (Unix nanoseconds). Lines that do not parse are skipped.
fn to_otlp(text: &str, start: u64, now: u64) -> Vec<Metric> {
    parse(text)
        .iter()
        .filter_map(|family| convert(family, start, now))
        .collect()
}

fn parse(text: &str) -> Vec<Family<'_>> {
    let mut families: Vec<Family<'_>> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            families.push(Family {
                name,
                kind: kind.trim(),
                ..Family::default()
            });
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            // HELP precedes TYPE in the registry's output; keep it for the family that follows.
            families.push(Family {
                name,
                kind: "",
                help: unescape(help),
                samples: Vec::new(),
            });
        } else if line.starts_with('#') || line.trim().is_empty() {
            // `# UNIT`, `# EOF` and blank lines carry nothing the conversion needs.
        } else if let Some(sample) = parse_sample(line)
            && let Some(family) = families.last_mut()
        {
            family.samples.push(sample);
        }
    }
    // Merge each HELP entry into the TYPE entry of the same name that follows it.
    let mut merged: Vec<Family<'_>> = Vec::with_capacity(families.len());
    for family in families {
        match merged.last_mut() {
            Some(prev) if prev.name == family.name && prev.kind.is_empty() => {
                prev.kind = family.kind;
                prev.samples.extend(family.samples);
            }
            _ => merged.push(family),
        }
    }
    merged
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return None,
    };
    let mut labels = Vec::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches(',');
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let (key, after) = body.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((key.trim(), value));
            body = after;
        }
    } else {
        rest
    };
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The escaped text up to the closing quote, unescaped, and what follows the quote.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some(next)) => {
                out.push(next);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

fn convert(family: &Family<'_>, start: u64, now: u64) -> Option<Metric> {
    let (name, unit) = FLAGD_INSTRUMENTS
        .iter()
        .find(|(prom, _, _)| *prom == family.name)
        .map_or_else(
            || (family.name.to_owned(), unit_of(family.name)),
            |(_, otel, unit)| ((*otel).to_owned(), (*unit).to_owned()),
        );
    let number_points = |suffix: &str| -> Vec<NumberDataPoint> {
        family
            .samples
            .iter()
            .filter(|s| s.name.strip_prefix(family.name) == Some(suffix))
            .filter_map(|s| {
                Some(NumberDataPoint {
                    attributes: attributes(&s.labels),
                    start_time_unix_nano: start,
                    time_unix_nano: now,
                    value: Some(number(s.value)?),
                    ..Default::default()
                })
            })
            .collect()
    };
    let data = match family.kind {
        "counter" => metric::Data::Sum(Sum {
            data_points: number_points("_total"),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        "gauge" | "unknown" => metric::Data::Gauge(Gauge {
            data_points: number_points(""),
        }),
        "info" => metric::Data::Gauge(Gauge {
            data_points: number_points("_info"),
        }),
        "histogram" => metric::Data::Histogram(Histogram {
            data_points: histogram_points(family, start, now),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        _ => return None,
    };
    Some(Metric {
        name,
        description: family.help.trim_end_matches('.').to_owned(),
        unit,
        data: Some(data),
        ..Default::default()
    })
}

/// The unit a Prometheus name ends with, in UCUM as OTLP wants it.
fn unit_of(name: &str) -> String {
    if name.ends_with("_seconds") {
        "s".to_owned()
    } else if name.ends_with("_bytes") {
        "By".to_owned()
    } else {
        String::new()
    }
}

fn number(text: &str) -> Option<number_data_point::Value> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(number_data_point::Value::AsInt(n));
    }
    text.parse::<f64>()
        .ok()
        .map(number_data_point::Value::AsDouble)
}

/// Histograms: the cumulative `_bucket` series of each label set become per-bucket counts.
fn histogram_points(family: &Family<'_>, start: u64, now: u64) -> Vec<HistogramDataPoint> {
    #[derive(Default)]
    struct Point {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    }
    let mut points: BTreeMap<Vec<(&str, String)>, Point> = BTreeMap::new();
    for s in &family.samples {
        let Some(suffix) = s.name.strip_prefix(family.name) else {
            continue;
        };
        let labels: Vec<(&str, String)> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .cloned()
            .collect();
        let point = points.entry(labels).or_default();
        match suffix {
            "_sum" => point.sum = s.value.parse().unwrap_or(0.0),
            "_count" => point.count = s.value.parse::<f64>().map_or(0, |v| v as u64),
            "_bucket" => {
                let le = s
                    .labels
                    .iter()
                    .find(|(k, _)| *k == "le")
                    .and_then(|(_, v)| match v.as_str() {
                        "+Inf" => Some(f64::INFINITY),
                        v => v.parse().ok(),
                    });
                if let Some(le) = le {
                    point
                        .buckets
                        .push((le, s.value.parse::<f64>().map_or(0, |v| v as u64)));
                }
            }
            _ => {}
        }
    }
    points
        .into_iter()
        .map(|(labels, mut p)| {
            p.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let explicit_bounds: Vec<f64> = p
                .buckets
                .iter()
                .map(|(le, _)| *le)
                .filter(|le| le.is_finite())
                .collect();
            let mut bucket_counts = Vec::with_capacity(explicit_bounds.len() + 1);
            let mut below = 0;
            for (le, cumulative) in &p.buckets {
                if le.is_finite() {
                    bucket_counts.push(cumulative.saturating_sub(below));
                    below = *cumulative;
                }
            }
            bucket_counts.push(p.count.saturating_sub(below));
            HistogramDataPoint {
                attributes: attributes(&labels),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: p.count,
                sum: Some(p.sum),
                bucket_counts,
                explicit_bounds,
                ..Default::default()
            }
        })
        .collect()
}

/// Labels as attributes, with flagd's keys restored.
fn attributes(labels: &[(&str, String)]) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(k, v)| {
            let key = ATTRIBUTE_KEYS
                .iter()
                .find(|(prom, _)| prom == k)
                .map_or(*k, |(_, otel)| otel);
            string_attribute(key.to_owned(), v.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("{name} missing from {metrics:?}"))
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
        attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
            match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.as_str()),
                _ => None,
            }
        })
    }

    #[test]
    fn the_registry_converts_with_flagd_names() {
        let m = Metrics::new();
        m.evaluation("my-flag", "on", "STATIC", None);
        m.evaluation("my-flag", "on", "STATIC", None);
        m.evaluation("gone", "", "ERROR", Some("FLAG_NOT_FOUND"));
        m.http_request("/r", "POST", 200, Duration::from_millis(3));
        m.http_request("/r", "POST", 200, Duration::from_millis(30));
        m.http_request("/r", "POST", 200, Duration::from_secs(20));
        let metrics = to_otlp(&m.encode_openmetrics(), 1, 2);

        let impressions = find(&metrics, "feature_flag.flagd.impression");
        let Some(metric::Data::Sum(sum)) = &impressions.data else {
            panic!("{impressions:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let point = &sum.data_points[0];
        assert_eq!(point.value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!((point.start_time_unix_nano, point.time_unix_nano), (1, 2));
        assert_eq!(attr(&point.attributes, "feature_flag.key"), Some("my-flag"));
        assert_eq!(
            attr(&point.attributes, "feature_flag.result.variant"),
            Some("on")
        );
        assert_eq!(
            attr(&point.attributes, "feature_flag.provider.name"),
            Some("flagd")
        );
        assert!(!impressions.description.is_empty());

        let reasons = find(&metrics, "feature_flag.flagd.result.reason");
        let Some(metric::Data::Sum(sum)) = &reasons.data else {
            panic!()
        };
        assert!(
            sum.data_points
                .iter()
                .any(|p| { attr(&p.attributes, "ExceptionTypeKeyName") == Some("FLAG_NOT_FOUND") })
        );

        let durations = find(&metrics, "http.server.request.duration");
        assert_eq!(durations.unit, "s");
        let Some(metric::Data::Histogram(h)) = &durations.data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.count, 3);
        assert!((p.sum.unwrap() - 20.033).abs() < 1e-9);
        assert_eq!(p.explicit_bounds.len(), 14);
        assert_eq!(p.bucket_counts.len(), 15);
        assert_eq!(p.bucket_counts[0], 1, "3 ms in the first bucket");
        assert_eq!(p.bucket_counts[3], 1, "30 ms between 25 and 50 ms");
        assert_eq!(p.bucket_counts[14], 1, "20 s above the last bound");
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), 3);
        assert_eq!(attr(&p.attributes, "http.route"), Some("/r"));
        assert_eq!(
            attr(&p.attributes, "http.response.status_code"),
            Some("200")
        );
        assert!(attr(&p.attributes, "le").is_none());

        let build = find(&metrics, "flagd_rs_build");
        let Some(metric::Data::Gauge(g)) = &build.data else {
            panic!()
        };
        assert!(attr(&g.data_points[0].attributes, "version").is_some());
    }

    #[test]
    fn samples_and_escapes_parse() {
        let s = parse_sample(r#"a_total{k="x\"y\\z\nw",j="2"} 3.5 1700"#).unwrap();
        assert_eq!(s.name, "a_total");
        assert_eq!(
            s.labels,
            vec![("k", "x\"y\\z\nw".to_owned()), ("j", "2".to_owned())]
        );
        assert_eq!(s.value, "3.5");
        let s = parse_sample("plain 7").unwrap();
        assert!(s.labels.is_empty() && s.value == "7");
        assert!(parse_sample(r#"broken{k="unterminated} 1"#).is_none());
        let text = "# HELP g A gauge.\n# TYPE g gauge\ng 4.25\n# TYPE c counter\nc_total 2\nc_created 1.5\n# EOF\n";
        let metrics = to_otlp(text, 0, 0);
        assert_eq!(metrics.len(), 2);
        assert_eq!(metrics[0].description, "A gauge");
        let Some(metric::Data::Sum(sum)) = &metrics[1].data else {
            panic!()
        };
        assert_eq!(sum.data_points.len(), 1, "_created is not a data point");
    }
}
