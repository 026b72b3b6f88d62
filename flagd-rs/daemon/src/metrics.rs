//! Metrics with flagd's OpenTelemetry names, exposed in Prometheus text format.
//!
//! flagd records its metrics through OpenTelemetry and exports them with the Prometheus exporter,
//! which turns `feature_flag.flagd.impression` into `feature_flag_flagd_impression_total`, the
//! attribute `feature_flag.key` into the label `feature_flag_key`, and appends the unit
//! (`_seconds`) to histograms. This module writes those Prometheus names out directly:
//!
//! | flagd instrument | Prometheus series | labels |
//! |---|---|---|
//! | `feature_flag.flagd.impression` | `feature_flag_flagd_impression_total` | `feature_flag_key`, `feature_flag_result_variant`, `feature_flag_provider_name`, `feature_flag_reason` |
//! | `feature_flag.flagd.result.reason` | `feature_flag_flagd_result_reason_total` | `feature_flag_provider_name`, `feature_flag_reason`, and `feature_flag_key` on success or `ExceptionTypeKeyName` (the error code) on error |
//! | `http.server.request.duration` | `http_server_request_duration_seconds` | `http_route`, `http_request_method`, `http_response_status_code` |
//! | `feature_flag.flagd.sync.active_streams`, `feature_flag.flagd.sync.stream.duration` | see [`crate::server::sync::metrics`] | |
//! | `http.server.response.body.size` | `http_server_response_body_size_bytes` | `http_route`, `http_request_method`, `http_response_status_code` |
//! | `http.server.active_requests` | `http_server_active_requests` | `http_route`, `http_request_method` |
//! | (ours) | `flagd_rs_build_info` | `version` |
//! | (ours) | `flagd_rs_authority_revision`, `flagd_rs_authority_overrides_active` | |
//! | (ours) | `flagd_rs_split_weight` | `feature_flag_key`, `variant` |
//! | (ours) | `flagd_rs_evaluation_budget_exceeded_total` | `feature_flag_key` |
//!
//! The HTTP series are recorded by one layer for every port that serves requests
//! (`server::record`). `http_route` is a route template or an RPC's procedure name, as in flagd
//! (OFREP: `/ofrep/v1/evaluate/flags/{key}` and `/ofrep/v1/evaluate/{path:flags\/|flags}`), never
//! a raw path. The body size is what went on the wire (after compression). flagd's middleware
//! reads the status code before its handler runs, so its three series always say `200`; here the
//! duration and size series carry the status actually sent, and the in-flight gauge has no
//! status label, since none is known while a request runs.
//!
//! Recording is on the request path of every evaluation, so it is built to be cheap: each label
//! combination's counter handle is cached behind a read-mostly lock and found by borrowed string
//! comparison, so a repeated combination costs one uncontended read lock, a hash lookup and two
//! atomic increments, with no allocation. The HTTP series of a route the server knows in
//! advance are found without even that: a [`RouteSeries`] keeps the handles of one route and
//! method once they are first used.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

/// `Content-Type` of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
pub const PROMETHEUS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// `Content-Type` of [`Metrics::encode_openmetrics`]'s output.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The value of `feature_flag_provider_name`, as flagd reports it.
const PROVIDER_NAME: &str = "flagd";

/// Request-duration buckets in seconds (OpenTelemetry's HTTP semantic conventions, as flagd
/// documents them).
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Response-size buckets in bytes: 100 B to 1 GB by factors of ten, as flagd configures them.
const SIZE_BUCKETS: (f64, f64, u16) = (100.0, 10.0, 8);

/// Distinct routes kept apart; beyond this, requests are recorded under the route `other` so a
/// caller passing raw paths cannot grow the registry without bound.
const MAX_ROUTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ImpressionLabels {
    key: Arc<str>,
    variant: Arc<str>,
    reason: Arc<str>,
}

impl EncodeLabelSet for ImpressionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let labels: [(&str, &str); 4] = [
            ("feature_flag_key", &self.key),
            ("feature_flag_result_variant", &self.variant),
            ("feature_flag_provider_name", PROVIDER_NAME),
            ("feature_flag_reason", &self.reason),
        ];
        EncodeLabelSet::encode(&labels, encoder)
    }
}

/// Labels of `feature_flag.flagd.result.reason`: flagd names the flag only on success and the
/// error type only on failure (which keeps unknown keys from creating series).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReasonLabels {
    reason: Arc<str>,
    subject: Subject,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// A successful evaluation of this flag.
    Flag(Arc<str>),
    /// A failed evaluation with this error code.
    Error(Arc<str>),
}

impl EncodeLabelSet for ReasonLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let subject = match &self.subject {
            Subject::Flag(key) => ("feature_flag_key", &**key),
            Subject::Error(code) => ("ExceptionTypeKeyName", &**code),
        };
        let labels: [(&str, &str); 3] = [
            ("feature_flag_provider_name", PROVIDER_NAME),
            ("feature_flag_reason", &self.reason),
            subject,
        ];
        EncodeLabelSet::encode(&labels, encoder)
    }
}

/// The label of a per-flag counter of our own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlagLabel {
    key: Arc<str>,
}

impl EncodeLabelSet for FlagLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let labels: [(&str, &str); 1] = [("feature_flag_key", &self.key)];
        EncodeLabelSet::encode(&labels, encoder)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct HttpLabels {
    route: Arc<str>,
    method: Arc<str>,
    status: u16,
}

impl EncodeLabelSet for HttpLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        // Only runs at scrape time, so formatting the status code here costs nothing on requests.
        let status = self.status.to_string();
        let labels: [(&str, &str); 3] = [
            ("http_route", &self.route),
            ("http_request_method", &self.method),
            ("http_response_status_code", &status),
        ];
        EncodeLabelSet::encode(&labels, encoder)
    }
}

/// Labels of the in-flight gauge (no status: it is not known while the request runs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ActiveLabels {
    route: Arc<str>,
    method: Arc<str>,
}

impl EncodeLabelSet for ActiveLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let labels: [(&str, &str); 2] = [
            ("http_route", &self.route),
            ("http_request_method", &self.method),
        ];
        EncodeLabelSet::encode(&labels, encoder)
    }
}

#[derive(Debug, Clone)]
struct DurationHistogram;

impl MetricConstructor<Histogram> for DurationHistogram {
    fn new_metric(&self) -> Histogram {
        Histogram::new(DURATION_BUCKETS)
    }
}

#[derive(Debug, Clone)]
struct SizeHistogram;

impl MetricConstructor<Histogram> for SizeHistogram {
    fn new_metric(&self) -> Histogram {
        let (start, factor, count) = SIZE_BUCKETS;
        Histogram::new(exponential_buckets(start, factor, count))
    }
}

/// Cached counters of one successful (key, variant, reason) combination.
#[derive(Debug)]
struct SuccessEntry {
    variant: Box<str>,
    reason: Box<str>,
    impression: Counter,
    result: Counter,
}

/// Cached counter of one failed (reason, error) combination.
#[derive(Debug)]
struct ErrorEntry {
    reason: Box<str>,
    error: Box<str>,
    result: Counter,
}

#[derive(Debug)]
struct HttpEntry {
    method: Box<str>,
    status: u16,
    duration: Histogram,
    size: Histogram,
}

/// The cached in-flight gauge of one method on a route.
#[derive(Debug)]
struct ActiveEntry {
    method: Box<str>,
    gauge: Gauge,
}

/// The HTTP series of one route and method, resolved the first time they are recorded and kept,
/// so that recording through it is a few atomic operations (and the histograms' own lock), with
/// no lookup. Series appear in the exposition only once something was recorded in them, as with
/// [`Metrics::http_request`]. Responses with another status than 200 take the cached lookup.
#[derive(Debug)]
pub struct RouteSeries {
    route: &'static str,
    method: &'static str,
    active: OnceLock<Gauge>,
    /// The duration and size histograms of status 200.
    ok: OnceLock<(Histogram, Histogram)>,
}

impl RouteSeries {
    /// The series of `route` and `method` (nothing is created yet).
    pub const fn new(route: &'static str, method: &'static str) -> Self {
        RouteSeries {
            route,
            method,
            active: OnceLock::new(),
            ok: OnceLock::new(),
        }
    }

    /// The route label.
    pub fn route(&self) -> &'static str {
        self.route
    }

    /// The method label.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// Counts one more request in flight; [`RouteSeries::leave`] counts it out.
    #[inline]
    pub fn enter(&self, metrics: &Metrics) {
        self.active
            .get_or_init(|| metrics.active_gauge(self.route, self.method))
            .inc();
    }

    /// Counts out a request [`RouteSeries::enter`] counted in.
    #[inline]
    pub fn leave(&self) {
        if let Some(gauge) = self.active.get() {
            gauge.dec();
        }
    }

    /// [`Metrics::http_request`] for this route and method.
    #[inline]
    pub fn request(&self, metrics: &Metrics, status: u16, elapsed: Duration) {
        match status {
            200 => self.ok(metrics).0.observe(elapsed.as_secs_f64()),
            _ => metrics.http_request(self.route, self.method, status, elapsed),
        }
    }

    /// [`Metrics::http_response_size`] for this route and method.
    #[inline]
    pub fn response_size(&self, metrics: &Metrics, status: u16, bytes: u64) {
        match status {
            // Exact up to 2^53 bytes, far beyond any response.
            200 => self.ok(metrics).1.observe(bytes as f64),
            _ => metrics.http_response_size(self.route, self.method, status, bytes),
        }
    }

    fn ok(&self, metrics: &Metrics) -> &(Histogram, Histogram) {
        self.ok.get_or_init(|| {
            metrics.with_http_entry(self.route, self.method, 200, |e| {
                (e.duration.clone(), e.size.clone())
            })
        })
    }
}

/// One request in flight: counted in `http_server_active_requests` until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Gauge);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The daemon's metrics registry. Shared (`Arc<Metrics>`) by every server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    impressions: Family<ImpressionLabels, Counter>,
    results: Family<ReasonLabels, Counter>,
    durations: Family<HttpLabels, Histogram, DurationHistogram>,
    sizes: Family<HttpLabels, Histogram, SizeHistogram>,
    active: Family<ActiveLabels, Gauge>,
    /// Evaluations stopped by the evaluation budget, per flag.
    budget_exceeded: Family<FlagLabel, Counter>,
    /// Flag key -> counters per (variant, reason); flags have few variants, so a short list.
    success: RwLock<FxHashMap<Box<str>, SmallVec<[SuccessEntry; 2]>>>,
    /// Few combinations exist (error codes x reasons), so a plain list.
    errors: RwLock<Vec<ErrorEntry>>,
    /// Route -> histograms per (method, status).
    http: RwLock<FxHashMap<Box<str>, SmallVec<[HttpEntry; 2]>>>,
    /// The sync service's streams.
    pub sync_streams: Arc<crate::server::sync::metrics::SyncStreamMetrics>,
    /// Route -> in-flight gauges per method.
    in_flight: RwLock<FxHashMap<Box<str>, SmallVec<[ActiveEntry; 1]>>>,
}

/// `route`, or `other` once [`MAX_ROUTES`] routes are known and it is not one of them.
fn bounded<'r, V>(cache: &FxHashMap<Box<str>, V>, route: &'r str) -> &'r str {
    if cache.len() >= MAX_ROUTES && !cache.contains_key(route) {
        "other"
    } else {
        route
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and nothing recorded.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let impressions = Family::<ImpressionLabels, Counter>::default();
        let results = Family::<ReasonLabels, Counter>::default();
        let durations = Family::new_with_constructor(DurationHistogram);
        let sizes = Family::new_with_constructor(SizeHistogram);
        let active = Family::<ActiveLabels, Gauge>::default();
        let budget_exceeded = Family::<FlagLabel, Counter>::default();
        registry.register(
            "feature_flag_flagd_impression",
            "Measures the number of evaluations for a given flag",
            impressions.clone(),
        );
        registry.register(
            "feature_flag_flagd_result_reason",
            "Measures the number of evaluations for a given reason",
            results.clone(),
        );
        registry.register_with_unit(
            "http_server_request_duration",
            "Measures the duration of inbound HTTP requests",
            Unit::Seconds,
            durations.clone(),
        );
        registry.register_with_unit(
            "http_server_response_body_size",
            "Measures the size of HTTP response messages (compressed)",
            Unit::Bytes,
            sizes.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Measures the number of concurrent HTTP requests that are currently in-flight",
            active.clone(),
        );
        registry.register(
            "flagd_rs_evaluation_budget_exceeded",
            "Evaluations stopped because the targeting rule needed more work or memory than the \
             evaluation budget allows",
            budget_exceeded.clone(),
        );
        registry.register(
            "flagd_rs_build",
            "flagd-rs build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        let sync_streams = Arc::new(crate::server::sync::metrics::SyncStreamMetrics::register(
            &mut registry,
        ));
        Self {
            registry,
            sync_streams,
            impressions,
            results,
            durations,
            sizes,
            active,
            budget_exceeded,
            success: RwLock::new(FxHashMap::default()),
            errors: RwLock::new(Vec::new()),
            http: RwLock::new(FxHashMap::default()),
            in_flight: RwLock::new(FxHashMap::default()),
        }
    }

    /// Records one evaluation of `flag_key` (impression + result reason). A successful
    /// evaluation (`error_code` is `None`) counts an impression and a result for the flag; a
    /// failed one counts only a result labelled with the error code, as flagd does.
    #[inline]
    pub fn evaluation(
        &self,
        flag_key: &str,
        variant: &str,
        reason: &str,
        error_code: Option<&str>,
    ) {
        match error_code {
            None => self.success(flag_key, variant, reason),
            Some(code) => self.failure(reason, code),
        }
    }

    fn success(&self, key: &str, variant: &str, reason: &str) {
        {
            let cache = self.success.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = cache.get(key).and_then(|list| {
                list.iter()
                    .find(|e| &*e.variant == variant && &*e.reason == reason)
            }) {
                e.impression.inc();
                e.result.inc();
                return;
            }
        }
        // First time for this combination: resolve the series once and remember the handles.
        let (key_arc, reason_arc): (Arc<str>, Arc<str>) = (key.into(), reason.into());
        let impression = self.impressions.get_or_create_owned(&ImpressionLabels {
            key: key_arc.clone(),
            variant: variant.into(),
            reason: reason_arc.clone(),
        });
        let result = self.results.get_or_create_owned(&ReasonLabels {
            reason: reason_arc,
            subject: Subject::Flag(key_arc),
        });
        impression.inc();
        result.inc();
        let mut cache = self.success.write().unwrap_or_else(|e| e.into_inner());
        let list = cache.entry(key.into()).or_default();
        if !list
            .iter()
            .any(|e| &*e.variant == variant && &*e.reason == reason)
        {
            list.push(SuccessEntry {
                variant: variant.into(),
                reason: reason.into(),
                impression,
                result,
            });
        }
    }

    fn failure(&self, reason: &str, code: &str) {
        {
            let cache = self.errors.read().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = cache
                .iter()
                .find(|e| &*e.reason == reason && &*e.error == code)
            {
                e.result.inc();
                return;
            }
        }
        let result = self.results.get_or_create_owned(&ReasonLabels {
            reason: reason.into(),
            subject: Subject::Error(code.into()),
        });
        result.inc();
        let mut cache = self.errors.write().unwrap_or_else(|e| e.into_inner());
        if !cache
            .iter()
            .any(|e| &*e.reason == reason && &*e.error == code)
        {
            cache.push(ErrorEntry {
                reason: reason.into(),
                error: code.into(),
                result,
            });
        }
    }

    /// The impressions counted so far per (flag key, variant), summed over reasons, for the
    /// dashboard's served-share view. Reads the counters' handles under the cache's read lock
    /// (which evaluations share), so it never holds up an evaluation.
    pub fn impression_totals(&self) -> Vec<(Box<str>, Box<str>, u64)> {
        let cache = self.success.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(Box<str>, Box<str>, u64)> = Vec::with_capacity(cache.len() * 2);
        for (key, list) in cache.iter() {
            for e in list {
                let n = e.impression.get();
                match out
                    .iter_mut()
                    .rev()
                    .take_while(|(k, _, _)| k == key)
                    .find(|(_, v, _)| *v == e.variant)
                {
                    Some(slot) => slot.2 += n,
                    None => out.push((key.clone(), e.variant.clone(), n)),
                }
            }
        }
        out
    }

    /// Counts an evaluation of `flag_key` that stopped at the evaluation budget (in addition to
    /// the [`Metrics::evaluation`] every evaluation records). Rare, so not cached: only flags
    /// that exist reach here, which bounds the series.
    pub fn budget_exceeded(&self, flag_key: &str) {
        self.budget_exceeded
            .get_or_create(&FlagLabel {
                key: flag_key.into(),
            })
            .inc();
    }

    /// Records one served HTTP/gRPC request. `route` must be a route template or a procedure
    /// name (`/flagd.evaluation.v1.Service/ResolveBoolean`), never a raw path with user input.
    #[inline]
    pub fn http_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        self.with_http_entry(route, method, status, |e| e.duration.observe(seconds));
    }

    /// Records the size of one response's body as sent (after compression), in bytes.
    #[inline]
    pub fn http_response_size(&self, route: &str, method: &str, status: u16, bytes: u64) {
        // Exact up to 2^53 bytes, far beyond any response.
        let bytes = bytes as f64;
        self.with_http_entry(route, method, status, |e| e.size.observe(bytes));
    }

    /// Counts a request in flight on `route` until the returned guard is dropped.
    pub fn http_active(&self, route: &str, method: &str) -> ActiveRequest {
        let gauge = self.active_gauge(route, method);
        gauge.inc();
        ActiveRequest(gauge)
    }

    /// The in-flight gauge of `route` and `method`, created the first time.
    fn active_gauge(&self, route: &str, method: &str) -> Gauge {
        {
            let cache = self.in_flight.read().unwrap_or_else(|e| e.into_inner());
            let route = bounded(&cache, route);
            if let Some(e) = cache
                .get(route)
                .and_then(|list| list.iter().find(|e| &*e.method == method))
            {
                return e.gauge.clone();
            }
        }
        let mut cache = self.in_flight.write().unwrap_or_else(|e| e.into_inner());
        let route = bounded(&cache, route);
        let list = cache.entry(route.into()).or_default();
        let gauge = match list.iter().find(|e| &*e.method == method) {
            Some(e) => e.gauge.clone(),
            None => {
                let gauge = self.active.get_or_create_owned(&ActiveLabels {
                    route: route.into(),
                    method: method.into(),
                });
                list.push(ActiveEntry {
                    method: method.into(),
                    gauge: gauge.clone(),
                });
                gauge
            }
        };
        drop(cache);
        gauge
    }

    /// Runs `record` on the cached histograms of (route, method, status), creating them the
    /// first time.
    #[inline]
    fn with_http_entry<R>(
        &self,
        route: &str,
        method: &str,
        status: u16,
        record: impl FnOnce(&HttpEntry) -> R,
    ) -> R {
        {
            let cache = self.http.read().unwrap_or_else(|e| e.into_inner());
            let route = bounded(&cache, route);
            if let Some(e) = cache.get(route).and_then(|list| {
                list.iter()
                    .find(|e| e.status == status && &*e.method == method)
            }) {
                return record(e);
            }
        }
        let mut cache = self.http.write().unwrap_or_else(|e| e.into_inner());
        let route = bounded(&cache, route);
        let list = cache.entry(route.into()).or_default();
        match list
            .iter()
            .find(|e| e.status == status && &*e.method == method)
        {
            Some(e) => record(e),
            None => {
                let labels = HttpLabels {
                    route: route.into(),
                    method: method.into(),
                    status,
                };
                let entry = HttpEntry {
                    method: method.into(),
                    status,
                    duration: self.durations.get_or_create_owned(&labels),
                    size: self.sizes.get_or_create_owned(&labels),
                };
                let recorded = record(&entry);
                list.push(entry);
                recorded
            }
        }
    }

    /// Adds metrics computed at each scrape (the authority's revision, overrides and split
    /// weights). Call before the registry is shared.
    pub fn register_collector(
        &mut self,
        collector: Box<dyn prometheus_client::collector::Collector>,
    ) {
        self.registry.register_collector(collector);
    }

    /// Registers a counter of our own named `name` (exposed as `<name>_total`). Call before the
    /// registry is shared.
    pub fn register_counter(&mut self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.registry.register(name, help, counter.clone());
        counter
    }

    /// Prometheus text exposition (format 0.0.4) of everything recorded.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// OpenMetrics text exposition of everything recorded.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str, needles: &[&str]) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
    }

    #[test]
    fn evaluations_use_flagd_names() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.evaluation("my-flag", "on", "STATIC", None);
        }
        m.evaluation("my-flag", "off", "TARGETING_MATCH", None);
        m.evaluation("missing", "", "ERROR", Some("FLAG_NOT_FOUND"));
        m.evaluation("other-missing", "", "ERROR", Some("FLAG_NOT_FOUND"));
        let text = m.encode();
        let l = line(
            &text,
            "feature_flag_flagd_impression_total{",
            &[
                "feature_flag_key=\"my-flag\"",
                "feature_flag_result_variant=\"on\"",
                "feature_flag_reason=\"STATIC\"",
                "feature_flag_provider_name=\"flagd\"",
            ],
        )
        .unwrap();
        assert!(l.ends_with(" 3"), "{l}");
        let l = line(
            &text,
            "feature_flag_flagd_result_reason_total{",
            &[
                "feature_flag_key=\"my-flag\"",
                "feature_flag_reason=\"TARGETING_MATCH\"",
            ],
        )
        .unwrap();
        assert!(l.ends_with(" 1"), "{l}");
        let l = line(
            &text,
            "feature_flag_flagd_result_reason_total{",
            &["ExceptionTypeKeyName=\"FLAG_NOT_FOUND\""],
        )
        .unwrap();
        assert!(l.ends_with(" 2") && !l.contains("feature_flag_key"), "{l}");
        assert!(line(&text, "feature_flag_flagd_impression_total{", &["missing"]).is_none());
        assert!(
            line(&text, "flagd_rs_build_info{", &["version=\""]).is_some(),
            "{text}"
        );
    }

    #[test]
    fn budget_exceeded_is_counted_per_flag() {
        let m = Metrics::new();
        assert!(!m.encode().contains("flagd_rs_evaluation_budget_exceeded"));
        m.budget_exceeded("hostile");
        m.budget_exceeded("hostile");
        m.budget_exceeded("other");
        let text = m.encode();
        let l = line(
            &text,
            "flagd_rs_evaluation_budget_exceeded_total{",
            &["feature_flag_key=\"hostile\""],
        )
        .unwrap();
        assert!(l.ends_with(" 2"), "{l}");
        let l = line(
            &text,
            "flagd_rs_evaluation_budget_exceeded_total{",
            &["feature_flag_key=\"other\""],
        )
        .unwrap();
        assert!(l.ends_with(" 1"), "{l}");
    }

    #[test]
    fn http_durations_are_histograms_in_seconds() {
        let m = Metrics::new();
        m.http_request(
            "/flagd.evaluation.v1.Service/ResolveBoolean",
            "POST",
            200,
            Duration::from_millis(3),
        );
        m.http_request(
            "/flagd.evaluation.v1.Service/ResolveBoolean",
            "POST",
            200,
            Duration::from_millis(30),
        );
        let text = m.encode();
        let l = line(
            &text,
            "http_server_request_duration_seconds_count{",
            &[
                "http_route=\"/flagd.evaluation.v1.Service/ResolveBoolean\"",
                "http_request_method=\"POST\"",
                "http_response_status_code=\"200\"",
            ],
        )
        .unwrap();
        assert!(l.ends_with(" 2"), "{l}");
        let l = line(
            &text,
            "http_server_request_duration_seconds_bucket{",
            &["le=\"0.005\""],
        )
        .unwrap();
        assert!(l.ends_with(" 1"), "{l}");
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn response_sizes_and_requests_in_flight() {
        let m = Metrics::new();
        let route = "/ofrep/v1/evaluate/flags/{key}";
        m.http_response_size(route, "POST", 200, 150);
        m.http_response_size(route, "POST", 200, 5000);
        let text = m.encode();
        let l = line(
            &text,
            "http_server_response_body_size_bytes_count{",
            &[
                "http_route=\"/ofrep/v1/evaluate/flags/{key}\"",
                "http_response_status_code=\"200\"",
            ],
        )
        .unwrap();
        assert!(l.ends_with(" 2"), "{l}");
        let l = line(
            &text,
            "http_server_response_body_size_bytes_bucket{",
            &["le=\"1000\""],
        )
        .unwrap();
        assert!(l.ends_with(" 1"), "{l}");
        let l = line(&text, "http_server_response_body_size_bytes_sum{", &[]).unwrap();
        assert!(l.ends_with(" 5150.0"), "{l}");

        let gauge = |m: &Metrics| {
            let text = m.encode();
            line(
                &text,
                "http_server_active_requests{",
                &["http_request_method=\"POST\""],
            )
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        let a = m.http_active(route, "POST");
        let b = m.http_active(route, "POST");
        assert_eq!(gauge(&m).as_deref(), Some("2"));
        drop(a);
        assert_eq!(gauge(&m).as_deref(), Some("1"));
        drop(b);
        assert_eq!(gauge(&m).as_deref(), Some("0"));
    }

    #[test]
    fn routes_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_ROUTES + 10) {
            m.http_request(&format!("/r{i}"), "GET", 404, Duration::ZERO);
        }
        let text = m.encode();
        let l = line(
            &text,
            "http_server_request_duration_seconds_count{",
            &["http_route=\"other\""],
        )
        .unwrap();
        assert!(l.ends_with(" 10"), "{l}");
    }
}
