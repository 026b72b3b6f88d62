//! OpenTelemetry end to end: a daemon pointed at a test OTLP collector (built from the published
//! OTLP protobuf definitions) exports spans that continue the caller's W3C trace context, with
//! the feature-flag attributes, for gRPC, Connect and OFREP evaluations, source reloads and
//! admin writes and sync requests; `--metrics-exporter otel` pushes the metrics; and a collector that does not
//! answer slows no request down.

use std::time::Duration;

use flagd_rs::config::Config;
use flagd_rs::otel::{OtelArgs, OtelConfig};
use flagd_rs::proto::flagd::evaluation::v1;
use flagd_rs::proto::flagd::sync::v1 as sync;
use flagd_rs_tests::daemon::{TestDaemon, config_for, get};
use flagd_rs_tests::eval::pb_struct;
use flagd_rs_tests::otlp::{Collector, attr, hex, int_attr};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::json;

/// How long a test waits for an export (the batch delay is set to 50 ms below).
const ARRIVAL: Duration = Duration::from_secs(15);

const FLAGS: &str = r#"{"flags":{
  "color": {"state":"ENABLED","variants":{"red":"red","blue":"blue"},"defaultVariant":"red",
            "targeting":{"if":[{"==":[{"var":"targetingKey"},"user-1"]},"blue"]}},
  "switch": {"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on",
             "metadata":{"flagSetId":"shop"}}
}}"#;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A `traceparent` of [`TRACE_ID`] whose caller span is `span`, sampled.
fn traceparent(span: &str) -> String {
    format!("00-{TRACE_ID}-{span}-01")
}

/// Tracing (and with `metrics`, OTLP metrics) to `collector`, exporting every 50 ms.
fn otel_to(collector: &str, metrics: bool) -> OtelConfig {
    let args = OtelArgs {
        otel_collector_uri: Some(collector.to_owned()),
        metrics_exporter: if metrics {
            flagd_rs::otel::config::MetricsExporter::Otel
        } else {
            flagd_rs::otel::config::MetricsExporter::Prometheus
        },
        otel_service_name: Some("flags-under-test".to_owned()),
        otel_metrics_interval: Some(Duration::from_millis(200)),
        ..OtelArgs::default()
    };
    let mut config = args
        .resolve_with(&|_| None)
        .expect("valid OpenTelemetry options");
    config.schedule_delay = Duration::from_millis(50);
    config
}

struct Setup {
    daemon: TestDaemon,
    collector: Collector,
    flags: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(configure: impl FnOnce(&mut Config, &Collector)) -> Setup {
    let collector = Collector::start().await;
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let mut config = config_for(&[&flags]);
    config.otel = otel_to(&collector.uri(), false);
    configure(&mut config, &collector);
    let daemon = TestDaemon::start_with(config).await;
    Setup {
        daemon,
        collector,
        flags,
        _dir: dir,
    }
}

fn with_traceparent<T>(message: T, span: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("traceparent", traceparent(span).parse().unwrap());
    request
}

#[tokio::test]
async fn evaluation_spans_continue_the_callers_trace() {
    let s = setup(|config, _| {
        if let Some(traces) = &mut config.otel.traces {
            traces
                .headers
                .push(("x-collector-token".into(), "t0k3n".into()));
        }
    })
    .await;
    let mut client = v1::service_client::ServiceClient::connect(s.daemon.eval_url())
        .await
        .unwrap();

    let hit = client
        .resolve_string(with_traceparent(
            v1::ResolveStringRequest {
                flag_key: "color".into(),
                context: Some(pb_struct(json!({"targetingKey": "user-1"}))),
            },
            "00f067aa0ba902b7",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit.variant, "blue");
    let missing = client
        .resolve_boolean(with_traceparent(
            v1::ResolveBooleanRequest {
                flag_key: "no-such-flag".into(),
                context: None,
            },
            "1111111111111111",
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (resource, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.evaluation.v1.Service/ResolveString"
        })
        .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(span.kind, SpanKind::Server as i32);
    let a = &span.attributes;
    assert_eq!(attr(a, "feature_flag.key"), Some("color"));
    assert_eq!(attr(a, "feature_flag.result.variant"), Some("blue"));
    assert_eq!(
        attr(a, "feature_flag.result.reason"),
        Some("targeting_match")
    );
    assert_eq!(attr(a, "feature_flag.provider.name"), Some("flagd"));
    assert_eq!(attr(a, "feature_flag.context.id"), Some("user-1"));
    assert_eq!(attr(a, "error.type"), None);
    assert_eq!(attr(&resource, "service.name"), Some("flags-under-test"));
    assert_eq!(
        attr(&resource, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );

    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.evaluation.v1.Service/ResolveBoolean"
        })
        .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), "1111111111111111");
    let a = &span.attributes;
    assert_eq!(attr(a, "feature_flag.key"), Some("no-such-flag"));
    assert_eq!(attr(a, "feature_flag.result.reason"), Some("error"));
    assert_eq!(attr(a, "error.type"), Some("flag_not_found"));
    assert_eq!(attr(a, "feature_flag.result.variant"), None);
    assert_eq!(
        span.status.as_ref().map(|st| st.code),
        Some(StatusCode::Error as i32)
    );
    assert!(
        s.collector
            .last_metadata()
            .contains(&("x-collector-token".to_owned(), "t0k3n".to_owned())),
        "{:?}",
        s.collector.last_metadata()
    );

    // The Connect protocol goes through the same core, and a request without a trace context
    // starts a trace of its own.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/flagd.evaluation.v1.Service/ResolveBoolean",
            s.daemon.eval_url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"switch"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.evaluation.v1.Service/ResolveBoolean"
                && attr(&sp.attributes, "feature_flag.key") == Some("switch")
        })
        .await;
    assert!(span.parent_span_id.is_empty());
    assert_ne!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(
        attr(&span.attributes, "feature_flag.result.reason"),
        Some("static")
    );
    assert_eq!(attr(&span.attributes, "feature_flag.set.id"), Some("shop"));

    // ResolveAll: one span for the request, with the counts.
    let mut all = client
        .resolve_all(with_traceparent(
            v1::ResolveAllRequest::default(),
            "2222222222222222",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.flags.len(), 2);
    all.flags.clear();
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.evaluation.v1.Service/ResolveAll"
        })
        .await;
    assert_eq!(hex(&span.parent_span_id), "2222222222222222");
    assert_eq!(int_attr(&span.attributes, "flagd.flags.evaluated"), Some(2));
    assert_eq!(int_attr(&span.attributes, "flagd.flags.errors"), Some(0));
}

#[tokio::test]
async fn ofrep_requests_are_traced() {
    let s = setup(|_, _| {}).await;
    let http = reqwest::Client::new();
    let base = format!(
        "http://127.0.0.1:{}/ofrep/v1/evaluate/flags",
        s.daemon.ofrep_port
    );
    let single = http
        .post(format!("{base}/color"))
        .header("traceparent", traceparent("3333333333333333"))
        .json(&json!({"context": {"targetingKey": "user-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(single.status(), 200);
    let missing = http
        .post(format!("{base}/nope"))
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bulk = http
        .post(&base)
        .header("traceparent", traceparent("4444444444444444"))
        .json(&json!({"context": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 200);

    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "POST /ofrep/v1/evaluate/flags/{key}"
                && attr(&sp.attributes, "feature_flag.key") == Some("color")
        })
        .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), "3333333333333333");
    assert_eq!(
        attr(&span.attributes, "feature_flag.result.variant"),
        Some("blue")
    );
    assert_eq!(
        attr(&span.attributes, "feature_flag.result.reason"),
        Some("targeting_match")
    );
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            attr(&sp.attributes, "feature_flag.key") == Some("nope")
        })
        .await;
    assert_eq!(attr(&span.attributes, "error.type"), Some("flag_not_found"));
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| sp.name == "POST /ofrep/v1/evaluate/flags")
        .await;
    assert_eq!(hex(&span.parent_span_id), "4444444444444444");
    assert_eq!(int_attr(&span.attributes, "flagd.flags.evaluated"), Some(2));
}

#[tokio::test]
async fn reloads_and_admin_writes_are_traced() {
    let s = setup(|_, _| {}).await;
    // The first load is a reload like any other.
    let (_, first) = s
        .collector
        .span(ARRIVAL, |sp| sp.name == "flagd.source.reload")
        .await;
    assert_eq!(
        attr(&first.attributes, "flagd.source.event"),
        Some("content")
    );
    assert!(attr(&first.attributes, "flagd.source.uri").is_some_and(|u| u.ends_with("flags.json")));
    let first_revision = int_attr(&first.attributes, "flagd.store.revision").unwrap();

    std::fs::write(
        &s.flags,
        FLAGS.replace("\"defaultVariant\":\"red\"", "\"defaultVariant\":\"blue\""),
    )
    .unwrap();
    let (_, reload) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.source.reload"
                && int_attr(&sp.attributes, "flagd.flags.changed") == Some(1)
        })
        .await;
    assert!(int_attr(&reload.attributes, "flagd.store.revision").unwrap() > first_revision);

    // A document that does not parse is a failed reload.
    std::fs::write(&s.flags, "{\"flags\":").unwrap();
    let (_, rejected) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.source.reload"
                && attr(&sp.attributes, "error.type") == Some("invalid_document")
        })
        .await;
    assert!(attr(&rejected.attributes, "flagd.source.error").is_some());

    let response = reqwest::Client::new()
        .put(format!(
            "http://127.0.0.1:{}/v1/flags/switch/override",
            s.daemon.admin_port
        ))
        .header("traceparent", traceparent("5555555555555555"))
        .json(&json!({"state": "DISABLED", "reason": "incident"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let (_, write) = s
        .collector
        .span(ARRIVAL, |sp| sp.name == "PUT /v1/flags/{key}/override")
        .await;
    assert_eq!(hex(&write.trace_id), TRACE_ID);
    assert_eq!(hex(&write.parent_span_id), "5555555555555555");
    assert_eq!(attr(&write.attributes, "feature_flag.key"), Some("switch"));
    assert_eq!(
        int_attr(&write.attributes, "http.response.status_code"),
        Some(200)
    );
    assert!(int_attr(&write.attributes, "flagd.authority.revision").is_some_and(|r| r >= 1));
    // Reads are not traced.
    let read = get(s.daemon.admin_port, "/v1/flags").await.unwrap();
    assert_eq!(read.status, 200);
}

#[tokio::test]
async fn sync_requests_are_traced() {
    let s = setup(|_, _| {}).await;
    let url = format!("http://127.0.0.1:{}", s.daemon.sync_port.unwrap());
    let mut client = sync::flag_sync_service_client::FlagSyncServiceClient::connect(url)
        .await
        .unwrap();
    let mut stream = client
        .sync_flags(with_traceparent(
            sync::SyncFlagsRequest {
                provider_id: "in-process-1".into(),
                ..Default::default()
            },
            "7777777777777777",
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.flag_configuration.contains("color"));
    // The stream's span ends when the stream does.
    drop(stream);
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.sync.v1.FlagSyncService/SyncFlags"
        })
        .await;
    assert_eq!(hex(&span.trace_id), TRACE_ID);
    assert_eq!(hex(&span.parent_span_id), "7777777777777777");
    assert_eq!(
        attr(&span.attributes, "flagd.sync.provider_id"),
        Some("in-process-1")
    );
    assert_eq!(
        int_attr(&span.attributes, "flagd.sync.configurations_sent"),
        Some(1)
    );
    assert_eq!(span.events.len(), 1);
    assert_eq!(span.events[0].name, "flagd.sync.configuration");

    let all = client
        .fetch_all_flags(with_traceparent(
            sync::FetchAllFlagsRequest {
                selector: "flagSetId=shop".into(),
                ..Default::default()
            },
            "8888888888888888",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(all.flag_configuration.contains("switch"));
    let (_, span) = s
        .collector
        .span(ARRIVAL, |sp| {
            sp.name == "flagd.sync.v1.FlagSyncService/FetchAllFlags"
        })
        .await;
    assert_eq!(hex(&span.parent_span_id), "8888888888888888");
    assert_eq!(
        attr(&span.attributes, "flagd.selector"),
        Some("flagSetId=shop")
    );
    assert!(int_attr(&span.attributes, "flagd.store.revision").is_some());
}

#[tokio::test]
async fn metrics_are_pushed_with_metrics_exporter_otel() {
    let s = setup(|config, collector| config.otel = otel_to(&collector.uri(), true)).await;
    let response = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/switch",
            s.daemon.ofrep_port
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Request durations are recorded on the evaluation port.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/flagd.evaluation.v1.Service/ResolveBoolean",
            s.daemon.eval_url()
        ))
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"switch"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (resource, metric) = s
        .collector
        .metric(ARRIVAL, |m| {
            m.name == "feature_flag.flagd.impression"
                && matches!(&m.data, Some(metric::Data::Sum(sum)) if sum.data_points.iter().any(|p| {
                    attr(&p.attributes, "feature_flag.key") == Some("switch")
                }))
        })
        .await;
    assert_eq!(attr(&resource, "service.name"), Some("flags-under-test"));
    let Some(metric::Data::Sum(sum)) = metric.data else {
        unreachable!()
    };
    assert!(sum.is_monotonic);
    let (_, durations) = s
        .collector
        .metric(ARRIVAL, |m| m.name == "http.server.request.duration")
        .await;
    assert_eq!(durations.unit, "s");
    // Prometheus keeps serving the same registry under its own names.
    let text = get(s.daemon.management_port, "/metrics")
        .await
        .unwrap()
        .text();
    assert!(
        text.contains("feature_flag_flagd_impression_total{"),
        "{text}"
    );
}

#[tokio::test]
async fn a_collector_that_does_not_answer_blocks_no_request() {
    // One collector accepts connections and never speaks; the other port has nobody.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for (port, silent) in [(silent_port, true), (closed_port, false)] {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, FLAGS).unwrap();
        let mut config = config_for(&[&flags]);
        config.otel = otel_to(&format!("127.0.0.1:{port}"), true);
        if let Some(traces) = &mut config.otel.traces {
            traces.timeout = Duration::from_secs(30);
        }
        config.otel.queue_size = 4;
        config.otel.batch_size = 4;
        let daemon = TestDaemon::start_with(config).await;
        let mut client = v1::service_client::ServiceClient::connect(daemon.eval_url())
            .await
            .unwrap();
        for i in 0..200 {
            let request = v1::ResolveBooleanRequest {
                flag_key: "switch".into(),
                context: None,
            };
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                client.resolve_boolean(with_traceparent(request, "6666666666666666")),
            )
            .await
            .unwrap_or_else(|_| panic!("evaluation {i} waited for the collector"));
            assert!(answer.unwrap().into_inner().value);
        }
        let text = get(daemon.management_port, "/metrics")
            .await
            .unwrap()
            .text();
        let dropped: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("flagd_rs_otel_spans_dropped_total "))
            .unwrap_or_else(|| panic!("no dropped-span counter in {text}"))
            .trim()
            .parse()
            .unwrap();
        if silent {
            // The exporter hangs on its first batch, so the queue fills and the rest is dropped.
            assert!(dropped >= 100, "{dropped} spans dropped");
        }
        daemon.stop().await.unwrap();
    }
    held.abort();
}
