//! Chained daemons: daemon B takes daemon A's sync port (`grpc://`) as its source, so an edit of
//! A's file is served by B; selectors work at both ends of the chain, and B keeps serving its
//! last flags while A is away.

use std::time::Duration;

use flagd_rs::config::TlsPaths;
use flagd_rs::sources::SourceSpec;
use serde_json::json;

use crate::remote::{Daemon, file_source, write_file};

const FLAGS: &str = r#"{"flags":{
  "greeting":{"state":"ENABLED","variants":{"hi":"hello","yo":"yo"},"defaultVariant":"hi",
    "targeting":{"if":[{"==":[{"var":"lang"},"slang"]},"yo",null]}},
  "enabled":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}
}}"#;

const FLAGS_EDITED: &str = r#"{"flags":{
  "greeting":{"state":"ENABLED","variants":{"hi":"hello","bye":"goodbye"},"defaultVariant":"bye"},
  "enabled":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}
}}"#;

const PAYMENTS: &str = r#"{"metadata":{"flagSetId":"payments"},"flags":{
  "greeting":{"state":"ENABLED","variants":{"p":"pay up"},"defaultVariant":"p"},
  "limit":{"state":"ENABLED","variants":{"low":10,"high":1000},"defaultVariant":"low"}
}}"#;

fn grpc_source(port: u16) -> SourceSpec {
    SourceSpec::from_uri(&format!("grpc://127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn edits_flow_through_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let a = Daemon::start(vec![file_source(&file)]).await;
    let b = Daemon::start(vec![grpc_source(a.sync_port)]).await;

    assert_eq!(b.value("greeting").await, json!("hello"));
    let (status, body) = b.ofrep("greeting", json!({"lang": "slang"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["value"], &body["reason"]),
        (&json!("yo"), &json!("TARGETING_MATCH"))
    );
    let (status, body) = b.ofrep("missing", json!({}), None).await;
    assert_eq!(
        (status, &body["errorCode"]),
        (404, &json!("FLAG_NOT_FOUND"))
    );

    std::fs::write(&file, FLAGS_EDITED).unwrap();
    b.wait_value("greeting", json!("goodbye")).await;
    let (status, body) = b.connect_string("greeting").await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["value"], &body["variant"]),
        (&json!("goodbye"), &json!("bye"))
    );

    // A third daemon chained behind B sees the same flags.
    let c = Daemon::start(vec![grpc_source(b.sync_port)]).await;
    assert_eq!(c.value("greeting").await, json!("goodbye"));
    assert_eq!(c.value("enabled").await, json!(true));
    c.stop().await.unwrap();
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test]
async fn selectors_through_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let main = write_file(dir.path(), "flags.json", FLAGS);
    let payments = write_file(dir.path(), "payments.json", PAYMENTS);
    let a = Daemon::start(vec![file_source(&main), file_source(&payments)]).await;

    // B follows only the payments flag set.
    let mut spec = grpc_source(a.sync_port);
    spec.selector = Some("flagSetId=payments".into());
    spec.provider_id = Some("chain-test".into());
    let b = Daemon::start(vec![spec]).await;
    assert_eq!(b.value("greeting").await, json!("pay up"));
    assert_eq!(b.value("limit").await, json!(10));
    let (status, _) = b.ofrep("enabled", json!({}), None).await;
    assert_eq!(status, 404, "flags outside the selected set are not synced");

    // The flag set survives the hop: B's clients can select it too.
    let (status, body) = b
        .ofrep("limit", json!({}), Some("flagSetId=payments"))
        .await;
    assert_eq!((status, &body["value"]), (200, &json!(10)));
    let (status, _) = b.ofrep("limit", json!({}), Some("flagSetId=other")).await;
    assert_eq!(status, 404);

    // An unselected chain carries both sets (a key defined in both collapses to one entry in
    // the sync payload, as in flagd); a selector at the far end picks a set.
    let full = Daemon::start(vec![grpc_source(a.sync_port)]).await;
    let (status, body) = full
        .ofrep("limit", json!({}), Some("flagSetId=payments"))
        .await;
    assert_eq!((status, &body["value"]), (200, &json!(10)));
    let (status, body) = full.ofrep("enabled", json!({}), Some("flagSetId=")).await;
    assert_eq!((status, &body["value"]), (200, &json!(true)));
    let (status, _) = full.ofrep("limit", json!({}), Some("flagSetId=")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn chained_daemon_keeps_flags_while_upstream_is_away() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let a = Daemon::start(vec![file_source(&file)]).await;
    let b = Daemon::start(vec![grpc_source(a.sync_port)]).await;
    assert_eq!(b.value("greeting").await, json!("hello"));

    a.stop().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.value("greeting").await, json!("hello"));
    assert_eq!(b.value("enabled").await, json!(true));
    assert_eq!(b.readyz().await, 200);
    assert!(!b.has_stopped());
    b.stop().await.unwrap();
}

#[tokio::test]
async fn upstream_down_at_start_is_retried() {
    // Reserve A's sync port, start B against it, then start A there.
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let port = flagd_rs_tests::ports::free_port();
    let b = Daemon::spawn(vec![grpc_source(port)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.readyz().await, 412);
    assert!(!b.has_stopped());

    let a = Daemon::start_with_sync_port(vec![file_source(&file)], port).await;
    b.wait_readyz(200).await;
    assert_eq!(b.value("greeting").await, json!("hello"));
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test]
async fn chain_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let socket = dir.path().join("sync.sock");
    let path = socket.clone();
    let a = Daemon::start_with(vec![file_source(&file)], move |c| {
        c.sync_socket_path = Some(path);
    })
    .await;
    let spec = SourceSpec::from_uri(&format!("uds://{}", socket.display())).unwrap();
    let b = Daemon::start(vec![spec]).await;
    assert_eq!(b.value("greeting").await, json!("hello"));
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

#[tokio::test]
async fn chain_over_tls_with_a_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = flagd_rs_tests::tls::self_signed(dir.path());
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let paths = TlsPaths {
        cert: cert.clone(),
        key,
    };
    let a = Daemon::start_with(vec![file_source(&file)], move |c| c.tls = Some(paths)).await;

    // Without the CA the server is not trusted: B keeps retrying and is not ready.
    let untrusted = Daemon::spawn(vec![
        SourceSpec::from_uri(&format!("grpcs://localhost:{}", a.sync_port)).unwrap(),
    ])
    .await;
    let mut spec = SourceSpec::from_uri(&format!("grpcs://localhost:{}", a.sync_port)).unwrap();
    spec.cert_path = Some(cert);
    let b = Daemon::start(vec![spec]).await;
    assert_eq!(b.value("greeting").await, json!("hello"));
    assert_eq!(untrusted.readyz().await, 412);
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// A peer whose stream deadline is tiny ends every sync stream at once; the downstream daemon
/// reopens it, but not in a tight loop (each reopening is a full pull on the peer).
#[tokio::test]
async fn a_tiny_upstream_deadline_is_not_a_tight_loop() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "flags.json", FLAGS);
    let a = Daemon::start_with(vec![file_source(&file)], |c| {
        c.limits.stream_deadline = Some(Duration::from_millis(5));
    })
    .await;
    // Every sync connection from B to A goes through this proxy, which counts them.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = proxy.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    let upstream = a.sync_port;
    let pump = tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = proxy.accept().await else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let b = Daemon::start(vec![grpc_source(proxy_port)]).await;
    assert_eq!(b.value("greeting").await, json!("hello"));
    let before = connections.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let opened = connections.load(Ordering::SeqCst) - before;
    // About one reopening per second (the first retry delay); a tight loop opens hundreds.
    assert!(opened <= 5, "{opened} sync connections in 2 s");
    assert!(opened >= 1, "the stream was never reopened");
    pump.abort();
    b.stop().await.unwrap();
    a.stop().await.unwrap();
}

/// What the recording upstream saw of each `SyncFlags` call.
#[derive(Debug, Clone, Default)]
struct SeenCall {
    metadata: Vec<(String, String)>,
    selector_field: String,
    provider_id: String,
    authority: Option<String>,
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<SeenCall>>>;

/// A `flagd.sync.v1.FlagSyncService` that records every `SyncFlags` call and answers it with
/// [`FLAGS`], then keeps the stream open.
#[derive(Clone)]
struct RecordingUpstream {
    seen: Seen,
}

#[tonic::async_trait]
impl flagd_rs::proto::flagd::sync::v1::flag_sync_service_server::FlagSyncService
    for RecordingUpstream
{
    type SyncFlagsStream = futures::stream::BoxStream<
        'static,
        Result<flagd_rs::proto::flagd::sync::v1::SyncFlagsResponse, tonic::Status>,
    >;

    async fn sync_flags(
        &self,
        request: tonic::Request<flagd_rs::proto::flagd::sync::v1::SyncFlagsRequest>,
    ) -> Result<tonic::Response<Self::SyncFlagsStream>, tonic::Status> {
        use futures::StreamExt;
        let metadata = request
            .metadata()
            .clone()
            .into_headers()
            .iter()
            .map(|(k, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (k.as_str().to_owned(), value)
            })
            .collect();
        #[allow(deprecated)]
        let call = SeenCall {
            metadata,
            selector_field: request.get_ref().selector.clone(),
            provider_id: request.get_ref().provider_id.clone(),
            // Filled in by `SeeAuthority`, which sees the HTTP/2 request first.
            authority: request.extensions().get::<Authority>().map(|a| a.0.clone()),
        };
        self.seen.lock().unwrap().push(call);
        let first = flagd_rs::proto::flagd::sync::v1::SyncFlagsResponse {
            flag_configuration: FLAGS.to_owned(),
            sync_context: None,
        };
        let stream = futures::stream::once(async move { Ok(first) })
            .chain(futures::stream::pending())
            .boxed();
        Ok(tonic::Response::new(stream))
    }

    async fn fetch_all_flags(
        &self,
        _request: tonic::Request<flagd_rs::proto::flagd::sync::v1::FetchAllFlagsRequest>,
    ) -> Result<
        tonic::Response<flagd_rs::proto::flagd::sync::v1::FetchAllFlagsResponse>,
        tonic::Status,
    > {
        Err(tonic::Status::unimplemented("not used"))
    }

    async fn get_metadata(
        &self,
        _request: tonic::Request<flagd_rs::proto::flagd::sync::v1::GetMetadataRequest>,
    ) -> Result<tonic::Response<flagd_rs::proto::flagd::sync::v1::GetMetadataResponse>, tonic::Status>
    {
        Err(tonic::Status::unimplemented("not used"))
    }
}

/// The `:authority` of an HTTP/2 request, handed to the gRPC handler as a request extension.
#[derive(Debug, Clone)]
struct Authority(String);

/// Puts each request's authority into its extensions before the wrapped service sees it.
#[derive(Clone)]
struct SeeAuthority<S>(S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for SeeAuthority<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for SeeAuthority<S>
where
    S: tonic::codegen::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if let Some(authority) = request.uri().authority().map(|a| a.to_string()) {
            request.extensions_mut().insert(Authority(authority));
        }
        self.0.call(request)
    }
}

/// The configured headers reach the upstream sync server as gRPC metadata on the `SyncFlags`
/// call, a `Host` header as the HTTP/2 authority, and the selector both in the request and in
/// the `flagd-selector` metadata.
#[tokio::test]
async fn custom_headers_reach_the_upstream_as_metadata() {
    use flagd_rs::proto::flagd::sync::v1::flag_sync_service_server::FlagSyncServiceServer;

    let seen = Seen::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = SeeAuthority(FlagSyncServiceServer::new(RecordingUpstream {
        seen: seen.clone(),
    }));
    let upstream = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let spec = flagd_rs::sources::parse_sources_json(&format!(
        r#"[{{"uri":"grpc://127.0.0.1:{port}","provider":"grpc","providerID":"edge-1",
             "selector":"flagSetId=",
             "headers":{{"X-Tenant-ID":"tenant-7","authorization":"Bearer s3cret",
                         "Host":"flags.internal:8015"}}}}]"#
    ))
    .unwrap();
    let b = Daemon::start(spec).await;
    assert_eq!(b.value("greeting").await, json!("hello"));

    let call = seen
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("no SyncFlags call");
    let header = |name: &str| {
        call.metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-tenant-id"), Some("tenant-7"), "{call:?}");
    assert_eq!(header("authorization"), Some("Bearer s3cret"), "{call:?}");
    assert_eq!(header("flagd-selector"), Some("flagSetId="), "{call:?}");
    assert_eq!(header("host"), None, "{call:?}");
    assert_eq!(call.authority.as_deref(), Some("flags.internal:8015"));
    assert_eq!(call.selector_field, "flagSetId=");
    assert_eq!(call.provider_id, "edge-1");

    b.stop().await.unwrap();
    upstream.abort();
}
