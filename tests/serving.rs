//! The serving core's behaviour on the wire, the same on every port: the sync port's keepalive
//! enforcement against a real HTTP/2 client, the header read timeout against a slow client,
//! client deadlines (`Connect-Timeout-Ms`, `grpc-timeout`), gzip on gRPC and Connect, and the
//! sync stream metrics.

use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flagd_evaluator::{Format, LoadOptions};
use flagd_rs::metrics::Metrics;
use flagd_rs::proto::flagd::evaluation::v1;
use flagd_rs::proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use flagd_rs::proto::flagd::sync::v1::{FetchAllFlagsRequest, SyncFlagsRequest};
use flagd_rs::server::http::Listener;
use flagd_rs::server::keepalive::PingPolicy;
use flagd_rs::server::sync::{SyncOptions, serve_sync_with};
use flagd_rs::state::{AppState, ContextConfig, Limits};
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use flagd_rs_tests::daemon::TestDaemon;
use flagd_rs_tests::eval::{EvalServer, FLAGS, Options, envelope, split_envelopes};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tonic::Code;
use tonic::codec::CompressionEncoding;

const V1: &str = "/flagd.evaluation.v1.Service/";

/// A generous bound for anything that should happen promptly.
const SOON: Duration = Duration::from_secs(10);

/// A sync server on 127.0.0.1 serving `FLAGS`, with `options`.
struct SyncServer {
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    _shutdown: watch::Sender<bool>,
}

impl SyncServer {
    async fn start(options: SyncOptions, limits: Limits) -> SyncServer {
        let store = Store::new(vec!["flags.json".into()], LoadOptions::default());
        store
            .apply(SourceUpdate {
                source: 0,
                event: SourceEvent::Content {
                    bytes: FLAGS.as_bytes().to_vec(),
                    format: Format::Json,
                },
            })
            .unwrap();
        let (tx, rx) = watch::channel(false);
        let metrics = Arc::new(Metrics::new());
        let state = AppState {
            store,
            context: Arc::new(ContextConfig::default()),
            metrics: metrics.clone(),
            shutdown: rx.clone(),
            limits,
            cors_origins: Arc::from(Vec::<String>::new()),
            telemetry: Default::default(),
            revision: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_sync_with(
            Listener::Tcp(listener),
            state,
            None,
            options,
            rx,
        ));
        SyncServer {
            addr,
            metrics,
            _shutdown: tx,
        }
    }

    async fn with_policy(policy: PingPolicy) -> SyncServer {
        let options = SyncOptions {
            keepalive: policy,
            ..SyncOptions::default()
        };
        SyncServer::start(options, Limits::default()).await
    }

    async fn client(&self) -> FlagSyncServiceClient<tonic::transport::Channel> {
        FlagSyncServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// A raw HTTP/2 connection: the request sender, its ping handle and the connection task.
    async fn h2(
        &self,
    ) -> (
        h2::client::SendRequest<Bytes>,
        h2::PingPong,
        tokio::task::JoinHandle<Result<(), h2::Error>>,
    ) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let (send, mut connection) = h2::client::handshake(tcp).await.unwrap();
        let pings = connection.ping_pong().expect("ping handle");
        let task = tokio::spawn(connection);
        (send, pings, task)
    }
}

/// Calls `FetchAllFlags` over a raw HTTP/2 connection; returns the `grpc-status`.
async fn fetch_all_raw(send: &mut h2::client::SendRequest<Bytes>) -> String {
    let request =
        http::Request::post("http://localhost/flagd.sync.v1.FlagSyncService/FetchAllFlags")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
    let (response, mut body) = send
        .clone()
        .ready()
        .await
        .unwrap()
        .send_request(request, false)
        .unwrap();
    body.send_data(Bytes::from(envelope(0, b"")), true).unwrap();
    let response = tokio::time::timeout(SOON, response).await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn sync_port_sends_goaway_to_a_client_that_pings_too_often() {
    let server = SyncServer::with_policy(PingPolicy::default()).await;
    let (_send, mut pings, connection) = server.h2().await;
    // grpc-go's policy: the first ping sets the clock, the next two too-early pings are
    // strikes it tolerates, the third strike ends the connection.
    for _ in 0..3 {
        tokio::time::timeout(SOON, pings.ping(h2::Ping::opaque()))
            .await
            .expect("pong in time")
            .expect("pong");
    }
    let fourth = tokio::time::timeout(SOON, pings.ping(h2::Ping::opaque()))
        .await
        .expect("an answer in time");
    assert!(fourth.is_err(), "the fourth ping is not answered");
    let ended = tokio::time::timeout(SOON, connection)
        .await
        .expect("the connection ends")
        .unwrap();
    let error = ended.expect_err("the connection ends with an error");
    assert!(error.is_go_away() && error.is_remote(), "{error:?}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
    assert!(error.to_string().contains("too_many_pings"), "{error}");
}

#[tokio::test]
async fn sync_port_keeps_a_client_that_pings_within_the_policy() {
    let policy = PingPolicy {
        min_time: Duration::from_millis(100),
        permit_without_stream: true,
    };
    let server = SyncServer::with_policy(policy).await;
    let (mut send, mut pings, connection) = server.h2().await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        tokio::time::timeout(SOON, pings.ping(h2::Ping::opaque()))
            .await
            .expect("pong in time")
            .expect("pong");
    }
    assert_eq!(fetch_all_raw(&mut send).await, "0");
    // Pings in quick succession are forgiven while the server keeps sending data.
    for _ in 0..5 {
        tokio::time::timeout(SOON, pings.ping(h2::Ping::opaque()))
            .await
            .expect("pong in time")
            .expect("pong");
        assert_eq!(fetch_all_raw(&mut send).await, "0");
    }
    assert!(!connection.is_finished());
}

#[tokio::test]
async fn sync_port_speaks_http2_only() {
    let server = SyncServer::with_policy(PingPolicy::default()).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(SOON, tcp.read_to_end(&mut out))
        .await
        .expect("the server closes the connection");
    assert!(
        !out.starts_with(b"HTTP/1.1"),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
}

/// Connects to `port`, sends half a request line and waits for the server to close.
async fn slow_client_is_dropped(port: u16) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.write_all(b"POST /ofrep/v1/evaluate/fl").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(SOON, tcp.read_to_end(&mut out))
        .await
        .expect("the server closes a slow client's connection");
    // Closed (EOF or reset), possibly after a 408 from hyper.
    if let Ok(n) = read {
        let text = String::from_utf8_lossy(&out[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_line_is_dropped() {
    let daemon = TestDaemon::start(&[] as &[&str]).await;
    slow_client_is_dropped(daemon.eval_port()).await;
    slow_client_is_dropped(daemon.ofrep_port).await;
    slow_client_is_dropped(daemon.management_port).await;
    // A client that connects and says nothing is dropped as well.
    let mut tcp = TcpStream::connect(("127.0.0.1", daemon.eval_port()))
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(SOON, tcp.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a silent client is dropped");
    // A prompt client is served as before.
    let response = flagd_rs_tests::daemon::post_json(
        daemon.eval_port(),
        "/flagd.evaluation.v2.Service/ResolveBoolean",
        r#"{"flagKey":"canary-deployment"}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
}

fn connect_client() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().unwrap()
}

#[tokio::test]
async fn connect_timeout_header_bounds_unary_calls_and_streams() {
    let server = EvalServer::start(FLAGS).await;
    let client = connect_client();
    let call = |timeout: &str| {
        client
            .post(server.url(&format!("{V1}ResolveBoolean")))
            .header("content-type", "application/json")
            .header("connect-timeout-ms", timeout)
            .body(r#"{"flagKey":"bool"}"#)
            .send()
    };
    // Within the deadline: answered as usual.
    let ok = call("5000").await.unwrap();
    assert_eq!(ok.status(), 200);
    // Not a timeout: invalid_argument, as connect-go answers.
    for bad in ["soon", "12345678901", "-1"] {
        let r = call(bad).await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_argument", "{bad}: {body}");
    }
    // A body that does not arrive before the deadline: deadline_exceeded (HTTP 504).
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow = client
        .post(server.url(&format!("{V1}ResolveBoolean")))
        .header("content-type", "application/json")
        .header("connect-timeout-ms", "200")
        .body(reqwest::Body::wrap_stream(rx))
        .send();
    use futures::SinkExt as _;
    tx.send(Ok(b"{\"flagKey\":".to_vec())).await.unwrap();
    let r = tokio::time::timeout(SOON, slow).await.unwrap().unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "deadline_exceeded", "{body}");
    drop(tx);

    // EventStream: the stream ends with deadline_exceeded once the client's deadline passes.
    let r = client
        .post(server.url(&format!("{V1}EventStream")))
        .header("content-type", "application/connect+json")
        .header("connect-timeout-ms", "300")
        .body(envelope(0, b"{}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all = tokio::time::timeout(SOON, r.bytes())
        .await
        .expect("the stream ends")
        .unwrap();
    let (frames, rest) = split_envelopes(&all);
    assert!(rest.is_empty());
    let (flags, last) = frames.last().unwrap();
    assert_eq!(*flags, 2, "end of stream");
    let end: Value = serde_json::from_slice(last).unwrap();
    assert_eq!(end["error"]["code"], "deadline_exceeded", "{end}");
    let first: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(first["type"], "provider_ready");
    // An invalid header on a stream is reported in the end-of-stream message.
    let r = client
        .post(server.url(&format!("{V1}EventStream")))
        .header("content-type", "application/connect+json")
        .header("connect-timeout-ms", "x")
        .body(envelope(0, b"{}"))
        .send()
        .await
        .unwrap();
    let all = r.bytes().await.unwrap();
    let (frames, _) = split_envelopes(&all);
    let end: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(end["error"]["code"], "invalid_argument", "{end}");
}

#[tokio::test]
async fn grpc_timeout_bounds_streams_and_invalid_values_are_refused() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v1().await;
    let mut request = tonic::Request::new(v1::EventStreamRequest {});
    request.set_timeout(Duration::from_millis(300));
    let mut stream = c.event_stream(request).await.unwrap().into_inner();
    let first = tokio::time::timeout(SOON, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.r#type, "provider_ready");
    let end = tokio::time::timeout(SOON, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);

    // A unary call with a deadline is answered as usual.
    let mut request = tonic::Request::new(v1::ResolveBooleanRequest {
        flag_key: "bool".into(),
        context: None,
    });
    request.set_timeout(Duration::from_secs(5));
    assert!(c.resolve_boolean(request).await.unwrap().into_inner().value);

    // Not a timeout: INVALID_ARGUMENT on the evaluation port (connect-go's answer).
    let mut request = tonic::Request::new(v1::ResolveBooleanRequest {
        flag_key: "bool".into(),
        context: None,
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    let status = c.resolve_boolean(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // The sync port: SyncFlags ends at the client's deadline; an invalid header is INTERNAL
    // (grpc-go's answer).
    let sync = SyncServer::with_policy(PingPolicy::default()).await;
    let mut client = sync.client().await;
    let mut request = tonic::Request::new(SyncFlagsRequest::default());
    request.set_timeout(Duration::from_millis(300));
    let mut stream = client.sync_flags(request).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let end = tokio::time::timeout(SOON, stream.message())
        .await
        .expect("the stream ends");
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    let mut request = tonic::Request::new(FetchAllFlagsRequest::default());
    request
        .metadata_mut()
        .insert("grpc-timeout", "1x".parse().unwrap());
    let status = client.fetch_all_flags(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}

#[tokio::test]
async fn grpc_messages_may_be_gzip_compressed_both_ways() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server
        .v1()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = c
        .resolve_all(v1::ResolveAllRequest { context: None })
        .await
        .unwrap();
    assert_eq!(
        response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip"),
        "the response is compressed for a client that accepts gzip"
    );
    assert!(response.into_inner().flags.contains_key("bool"));
    let r = c
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "bool".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.value);

    // A compressed message that expands past the body limit is refused, not buffered.
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let small = EvalServer::start_with(
        FLAGS,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    let mut c = small.v1().await.send_compressed(CompressionEncoding::Gzip);
    let huge: serde_json::Map<String, Value> = (0..20_000)
        .map(|i| (format!("key-{i}"), json!("x".repeat(16))))
        .collect();
    let status = c
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "bool".into(),
            context: Some(flagd_rs_tests::eval::pb_struct(Value::Object(huge))),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // The sync service too.
    let sync = SyncServer::with_policy(PingPolicy::default()).await;
    let mut client = sync
        .client()
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Gzip);
    let response = client
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .unwrap();
    assert_eq!(
        response
            .metadata()
            .get("grpc-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    assert!(
        response
            .into_inner()
            .flag_configuration
            .contains("\"bool\"")
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn connect_bodies_may_be_gzip_compressed() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let server = EvalServer::start_with(
        FLAGS,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    let client = connect_client();
    // A compressed request.
    let r = client
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(br#"{"flagKey":"str"}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["value"], "hi");
    // A response large enough to gain from compression comes compressed when accepted.
    let r = client
        .post(server.url(&format!("{V1}ResolveAll")))
        .header("content-type", "application/json")
        .header("accept-encoding", "br, gzip")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let body: Value = serde_json::from_slice(&gunzip(&r.bytes().await.unwrap())).unwrap();
    assert_eq!(body["flags"]["bool"]["boolValue"], true, "{body}");
    // Not without asking.
    let r = client
        .post(server.url(&format!("{V1}ResolveAll")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-encoding").is_none());
    // A zip bomb stops at the body limit: resource_exhausted.
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 * 1024);
    let r = client
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "resource_exhausted"
    );
    // Broken gzip is a malformed request.
    let r = client
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body("not gzip at all")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown encodings are unimplemented, as the Connect protocol says.
    let r = client
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/json")
        .header("content-encoding", "zstd")
        .body(r#"{"flagKey":"str"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unimplemented");
    assert!(body["message"].as_str().unwrap().contains("zstd"), "{body}");

    // Streams: a compressed request message, compressed event messages.
    let r = client
        .post(server.url(&format!("{V1}EventStream")))
        .header("content-type", "application/connect+json")
        .header("connect-content-encoding", "gzip")
        .header("connect-accept-encoding", "gzip")
        .header("connect-timeout-ms", "500")
        .body(envelope(1, &gzip(b"{}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["connect-content-encoding"], "gzip");
    let all = tokio::time::timeout(SOON, r.bytes())
        .await
        .unwrap()
        .unwrap();
    let (frames, _) = split_envelopes(&all);
    let (flags, first) = &frames[0];
    assert_eq!(*flags, 1, "a compressed message");
    let event: Value = serde_json::from_slice(&gunzip(first)).unwrap();
    assert_eq!(event["type"], "provider_ready");
    let (flags, end) = frames.last().unwrap();
    assert_eq!(*flags & 2, 2);
    let end: Value = serde_json::from_slice(end).unwrap();
    assert_eq!(end["error"]["code"], "deadline_exceeded");
    // An unknown stream encoding ends the stream with unimplemented.
    let r = client
        .post(server.url(&format!("{V1}EventStream")))
        .header("content-type", "application/connect+json")
        .header("connect-content-encoding", "snappy")
        .body(envelope(0, b"{}"))
        .send()
        .await
        .unwrap();
    let all = r.bytes().await.unwrap();
    let (frames, _) = split_envelopes(&all);
    let end: Value = serde_json::from_slice(&frames[0].1).unwrap();
    assert_eq!(end["error"]["code"], "unimplemented", "{end}");
}

#[tokio::test]
async fn sync_streams_are_counted_under_flagds_metric_names() {
    let sync = SyncServer::with_policy(PingPolicy::default()).await;
    let mut client = sync.client().await;
    let mut request = tonic::Request::new(SyncFlagsRequest {
        provider_id: "it".into(),
        ..SyncFlagsRequest::default()
    });
    request
        .metadata_mut()
        .insert("flagd-selector", "source=flags.json".parse().unwrap());
    let mut stream = client.sync_flags(request).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let text = sync.metrics.encode();
    assert!(
        text.contains(
            "feature_flag_flagd_sync_active_streams{selector=\"source=flags.json\",provider_id=\"it\"} 1"
        ),
        "{text}"
    );
    drop(stream);
    drop(client);
    // The server notices the client left and records the stream's end.
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let text = sync.metrics.encode();
        if text.contains("feature_flag_flagd_sync_stream_duration_seconds_count{selector=\"source=flags.json\",provider_id=\"it\",reason=\"normal_close\"} 1") {
            assert!(text.contains(
                "feature_flag_flagd_sync_active_streams{selector=\"source=flags.json\",provider_id=\"it\"} 0"
            ));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
