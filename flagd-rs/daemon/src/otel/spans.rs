//! The spans the daemon records, and the W3C trace context (`traceparent`, `tracestate`) of the
//! requests they answer.
//!
//! Every helper starts from a [`Telemetry`] and does nothing but one branch when it is off: no
//! span, no context, no allocation. When it is on, a request that is not sampled costs the
//! `traceparent` lookup and a random draw; attributes are only built for spans that are sampled.
//! Evaluation spans carry the OpenTelemetry feature-flag attributes (`feature_flag.key`,
//! `feature_flag.result.variant`, `feature_flag.result.reason`, `error.type`,
//! `feature_flag.provider.name`, `feature_flag.set.id`, `feature_flag.context.id`); reasons and
//! error codes are written in lower case, as those conventions and OpenFeature's SDKs write them.

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, Method};
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::Span;

use super::Telemetry;

/// `feature_flag.provider.name` of every evaluation, as flagd reports it in its metrics.
pub const PROVIDER_NAME: &str = "flagd";

/// The W3C header that carries the caller's trace and span id.
const TRACEPARENT: &str = "traceparent";

/// Request headers as a propagation carrier.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The caller's trace context from `headers`; an empty context when there is none (or it does
/// not parse), which makes the span a root.
pub fn parent(headers: &HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

impl Telemetry {
    /// A span named `name` of `kind`, child of `parent`; a [`Traced`] that records nothing when
    /// tracing is off or the span is not sampled (then nothing is built at all).
    pub fn span(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: &Context,
    ) -> Traced {
        match self.tracer_for(parent) {
            None => Traced::OFF,
            Some(tracer) => Traced(Some(
                tracer
                    .span_builder(name)
                    .with_kind(kind)
                    .start_with_context(tracer, parent),
            )),
        }
    }

    /// A server span for a request with `headers`, child of the caller's span if it sent one.
    pub fn server_span(&self, name: impl Into<Cow<'static, str>>, headers: &HeaderMap) -> Traced {
        if !self.is_on() {
            return Traced::OFF;
        }
        self.span(name, SpanKind::Server, &parent(headers))
    }
}

/// A span that may not exist. Ends when dropped.
#[derive(Debug)]
pub struct Traced(Option<Span>);

impl Traced {
    /// No span.
    pub const OFF: Traced = Traced(None);

    /// Whether the span exists and is sampled, i.e. whether attributes are worth building.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(opentelemetry::trace::Span::is_recording)
    }

    /// The span, when it records.
    #[inline]
    fn recording(&mut self) -> Option<&mut Span> {
        self.0.as_mut().filter(|s| s.is_recording())
    }

    /// Sets attribute `key`.
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(span) = self.recording() {
            span.set_attribute(KeyValue::new(key, value));
        }
    }

    /// Sets the attributes `make` builds, only if the span records.
    pub fn set_with(&mut self, make: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = self.recording() {
            span.set_attributes(make());
        }
    }

    /// Renames the span to what `make` builds, only if the span records.
    pub fn rename(&mut self, make: impl FnOnce() -> String) {
        if let Some(span) = self.recording() {
            span.update_name(make());
        }
    }

    /// Adds an event named `name` with the attributes `make` builds.
    pub fn event(&mut self, name: &'static str, make: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = self.recording() {
            span.add_event(name, make());
        }
    }

    /// Marks the span failed with `error_type` (also its status description).
    pub fn fail(&mut self, error_type: &str) {
        if let Some(span) = self.recording() {
            span.set_attribute(KeyValue::new("error.type", error_type.to_owned()));
            span.set_status(Status::error(error_type.to_owned()));
        }
    }
}

/// The authority's head revision after a write, read when its span ends.
pub type Head = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Traces the writes (every method but GET, HEAD and OPTIONS) of the admin port: one server span
/// per write, child of the caller's trace context, named by method and route, with the status
/// code, the flag key from the route and the authority's head revision after the write. `app`
/// is returned unchanged when tracing is off.
pub fn trace_writes(app: axum::Router, telemetry: &Telemetry, head: Head) -> axum::Router {
    if !telemetry.is_on() {
        return app;
    }
    app.layer(axum::middleware::from_fn_with_state(
        (telemetry.clone(), head),
        trace_write,
    ))
}

async fn trace_write(
    State((telemetry, head)): State<(Telemetry, Head)>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("other", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let mut span = telemetry.server_span(format!("{method} {route}"), request.headers());
    let key = route_param(&route, request.uri().path(), "{key}");
    span.set_with(|| {
        let mut attrs = vec![
            KeyValue::new("http.request.method", method.as_str().to_owned()),
            KeyValue::new("http.route", route.clone()),
        ];
        if let Some(key) = key {
            attrs.push(KeyValue::new("feature_flag.key", key));
        }
        attrs
    });
    let response = next.run(request).await;
    let status = response.status();
    span.set_with(|| {
        vec![
            KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
            KeyValue::new(
                "flagd.authority.revision",
                i64::try_from(head()).unwrap_or(i64::MAX),
            ),
        ]
    });
    if status.is_client_error() || status.is_server_error() {
        span.fail(status.as_str());
    }
    response
}

/// The path segment standing where `param` stands in `route` (`/v1/flags/{key}/override`).
fn route_param(route: &str, path: &str, param: &str) -> Option<String> {
    route
        .split('/')
        .zip(path.split('/'))
        .find(|(r, _)| *r == param)
        .map(|(_, p)| p.to_owned())
}

/// What one flag evaluation resolved to, for its span.
#[derive(Debug, Clone, Copy)]
pub struct FlagOutcome<'a> {
    /// The flag's key.
    pub key: &'a str,
    /// The chosen variant, if any.
    pub variant: Option<&'a str>,
    /// flagd's reason string (`STATIC`, `TARGETING_MATCH`, `ERROR`, ...).
    pub reason: &'a str,
    /// flagd's error code (`FLAG_NOT_FOUND`, ...), for a failed evaluation.
    pub error: Option<&'a str>,
    /// The flag's flag set.
    pub set_id: Option<&'a str>,
}

/// The span of one evaluation request (a typed resolution, a bulk evaluation, an OFREP request),
/// shared by every transport so that each request is traced the same way in one place.
#[derive(Debug)]
pub struct EvalSpan {
    span: Traced,
    /// `Some((evaluated, failed))` for a bulk request.
    bulk: Option<(u32, u32)>,
}

impl EvalSpan {
    /// No span.
    pub const OFF: EvalSpan = EvalSpan {
        span: Traced::OFF,
        bulk: None,
    };

    /// Starts the server span of an evaluation request named `name`, child of the trace
    /// context in `headers`. One branch and nothing else when tracing is off.
    #[inline]
    pub fn start(telemetry: &Telemetry, name: &'static str, headers: &HeaderMap) -> EvalSpan {
        if !telemetry.is_on() {
            return EvalSpan::OFF;
        }
        Self::begin(telemetry, name, headers)
    }

    #[inline(never)]
    fn begin(telemetry: &Telemetry, name: &'static str, headers: &HeaderMap) -> EvalSpan {
        let mut span = telemetry.server_span(name, headers);
        span.set("feature_flag.provider.name", PROVIDER_NAME);
        EvalSpan { span, bulk: None }
    }

    /// Whether attributes are worth building.
    #[inline]
    pub fn is_recording(&self) -> bool {
        self.span.is_recording()
    }

    /// Renames the span (only computed when it records).
    pub fn rename(&mut self, make: impl FnOnce() -> String) {
        self.span.rename(make);
    }

    /// Records a single-flag outcome; `context_id` (the targeting key) is only asked for when
    /// the span records.
    /// On a bulk request's span the flag is only counted.
    pub fn flag(&mut self, outcome: FlagOutcome<'_>, context_id: impl FnOnce() -> Option<String>) {
        if !self.span.is_recording() {
            return;
        }
        if self.bulk.is_some() {
            self.bulk_entry(outcome.error.is_some());
            return;
        }
        self.span.set_with(|| {
            let mut attrs = Vec::with_capacity(6);
            attrs.push(KeyValue::new("feature_flag.key", outcome.key.to_owned()));
            attrs.push(KeyValue::new(
                "feature_flag.result.reason",
                outcome.reason.to_ascii_lowercase(),
            ));
            if let Some(variant) = outcome.variant.filter(|v| !v.is_empty()) {
                attrs.push(KeyValue::new(
                    "feature_flag.result.variant",
                    variant.to_owned(),
                ));
            }
            if let Some(set) = outcome.set_id {
                attrs.push(KeyValue::new("feature_flag.set.id", set.to_owned()));
            }
            if let Some(id) = context_id() {
                attrs.push(KeyValue::new("feature_flag.context.id", id));
            }
            attrs
        });
        if let Some(code) = outcome.error {
            self.span.fail(&code.to_ascii_lowercase());
        }
    }

    /// Marks this a bulk request; its counts are recorded when the span ends.
    pub fn bulk(&mut self) {
        if self.span.is_recording() {
            self.bulk = Some((0, 0));
        }
    }

    /// Counts one flag of a bulk request.
    #[inline]
    pub fn bulk_entry(&mut self, failed: bool) {
        if let Some((evaluated, errors)) = &mut self.bulk {
            *evaluated += 1;
            *errors += u32::from(failed);
        }
    }

    /// Marks the whole request failed with `error_type` (`invalid_selector`, `parse_error`, ...).
    pub fn fail(&mut self, error_type: &str) {
        self.span.fail(error_type);
    }
}

impl Drop for EvalSpan {
    fn drop(&mut self) {
        if let Some((evaluated, errors)) = self.bulk {
            self.span.set_with(|| {
                vec![
                    KeyValue::new("flagd.flags.evaluated", i64::from(evaluated)),
                    KeyValue::new("flagd.flags.errors", i64::from(errors)),
                ]
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn parent_comes_from_traceparent() {
        let mut headers = HeaderMap::new();
        assert!(!parent(&headers).has_active_span());
        headers.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let cx = parent(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(format!("{:016x}", sc.span_id()), "b7ad6b7169203331");
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert!(!parent(&headers).span().span_context().is_valid());
    }

    #[test]
    fn route_params() {
        assert_eq!(
            route_param(
                "/v1/flags/{key}/override",
                "/v1/flags/my-flag/override",
                "{key}"
            ),
            Some("my-flag".to_owned())
        );
        assert_eq!(route_param("/v1/revisions", "/v1/revisions", "{key}"), None);
    }

    #[test]
    fn everything_is_inert_when_tracing_is_off() {
        let off = Telemetry::off();
        let mut span = EvalSpan::start(&off, "x", &HeaderMap::new());
        assert!(!span.is_recording());
        span.bulk();
        span.bulk_entry(true);
        span.flag(
            FlagOutcome {
                key: "k",
                variant: None,
                reason: "ERROR",
                error: Some("FLAG_NOT_FOUND"),
                set_id: None,
            },
            || panic!("the context id is not asked for"),
        );
        span.rename(|| panic!("the name is not built"));
        let mut traced = off.server_span("y", &HeaderMap::new());
        traced.set_with(|| panic!("attributes are not built"));
        assert!(!traced.is_recording());
    }
}
