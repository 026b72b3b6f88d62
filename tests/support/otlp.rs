//! A test OTLP/gRPC collector built from the published OTLP protobuf definitions
//! (`opentelemetry-proto`): it accepts trace and metric exports on 127.0.0.1:0 and keeps what
//! it received for the test to inspect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::{Notify, oneshot};
use tonic::{Request, Response, Status};

/// What the collector received.
#[derive(Debug, Default)]
struct Received {
    /// Every span, with the attributes of the resource it came with.
    spans: Vec<(Vec<KeyValue>, Span)>,
    metrics: Vec<(Vec<KeyValue>, Metric)>,
    /// Metadata (lower-case names) of the last export request.
    last_metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default)]
struct Sink {
    received: Arc<Mutex<Received>>,
    arrived: Arc<Notify>,
}

impl Sink {
    fn note_metadata(&self, metadata: &tonic::metadata::MetadataMap) {
        let pairs = metadata
            .as_ref()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        self.received.lock().unwrap().last_metadata = pairs;
    }
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        self.note_metadata(request.metadata());
        let mut received = self.received.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    received.spans.push((resource.clone(), span));
                }
            }
        }
        drop(received);
        self.arrived.notify_waiters();
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.note_metadata(request.metadata());
        let mut received = self.received.lock().unwrap();
        for rm in request.into_inner().resource_metrics {
            let resource = rm.resource.map(|r| r.attributes).unwrap_or_default();
            for sm in rm.scope_metrics {
                for metric in sm.metrics {
                    received.metrics.push((resource.clone(), metric));
                }
            }
        }
        drop(received);
        self.arrived.notify_waiters();
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running test collector; stops when dropped.
#[derive(Debug)]
pub struct Collector {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    sink: Sink,
    _stop: oneshot::Sender<()>,
}

impl Collector {
    /// Starts a collector on a free port.
    pub async fn start() -> Collector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test collector");
        let port = listener.local_addr().expect("collector address").port();
        let sink = Sink::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()))
            .add_service(MetricsServiceServer::new(sink.clone()))
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener),
                async move {
                    let _ = stopped.await;
                },
            );
        tokio::spawn(server);
        Collector {
            port,
            sink,
            _stop: stop,
        }
    }

    /// `127.0.0.1:<port>`, the form `--otel-collector-uri` takes.
    pub fn uri(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until a received span satisfies `matches` and returns it with its resource
    /// attributes; panics after `timeout`.
    pub async fn span(
        &self,
        timeout: Duration,
        matches: impl Fn(&Span) -> bool,
    ) -> (Vec<KeyValue>, Span) {
        self.wait(timeout, "span", |r| {
            r.spans.iter().find(|(_, s)| matches(s)).cloned()
        })
        .await
    }

    /// Waits until a received metric satisfies `matches`; panics after `timeout`.
    pub async fn metric(
        &self,
        timeout: Duration,
        matches: impl Fn(&Metric) -> bool,
    ) -> (Vec<KeyValue>, Metric) {
        self.wait(timeout, "metric", |r| {
            r.metrics.iter().rev().find(|(_, m)| matches(m)).cloned()
        })
        .await
    }

    /// The metadata of the last export received.
    pub fn last_metadata(&self) -> Vec<(String, String)> {
        self.sink.received.lock().unwrap().last_metadata.clone()
    }

    /// The names of every span received so far.
    pub fn span_names(&self) -> Vec<String> {
        let received = self.sink.received.lock().unwrap();
        received.spans.iter().map(|(_, s)| s.name.clone()).collect()
    }

    /// The names of every metric received so far (without repeats).
    pub fn metric_names(&self) -> Vec<String> {
        let received = self.sink.received.lock().unwrap();
        let mut names: Vec<String> = received
            .metrics
            .iter()
            .map(|(_, m)| m.name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    async fn wait<T>(
        &self,
        timeout: Duration,
        what: &str,
        find: impl Fn(&Received) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.sink.arrived.notified();
            if let Some(found) = find(&self.sink.received.lock().unwrap()) {
                return found;
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no matching {what} arrived within {timeout:?}; spans: {:?}; metrics: {:?}",
                self.span_names(),
                self.metric_names()
            );
            // Exports also arrive between a check and the wait: poll now and then.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), arrived).await;
        }
    }
}

/// The string value of attribute `key`.
pub fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()? {
        AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        } => Some(s),
        _ => None,
    }
}

/// The integer value of attribute `key`.
pub fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attributes.iter().find(|kv| kv.key == key)?.value.as_ref()? {
        AnyValue {
            value: Some(any_value::Value::IntValue(n)),
        } => Some(*n),
        _ => None,
    }
}

/// Lower-case hex of an id.
pub fn hex(id: &[u8]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}
