//! The flag sync service over real gRPC: the initial and follow-up configurations, selectors,
//! FetchAllFlags, GetMetadata, the stream deadline, shutdown, and the OpenFeature flagd
//! provider in in-process mode.
// The request `selector` field and `GetMetadata` are deprecated in the protocol but still served.
#![allow(deprecated)]

use std::sync::Arc;
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use flagd_rs::metrics::Metrics;
use flagd_rs::proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use flagd_rs::proto::flagd::sync::v1::{
    FetchAllFlagsRequest, GetMetadataRequest, SyncFlagsRequest, SyncFlagsResponse,
};
use flagd_rs::server::http::Listener;
use flagd_rs::server::sync::serve_sync;
use flagd_rs::state::{AppState, ContextConfig, Limits};
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use serde_json::{Map, Value, json};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const A: &str = r#"{
  "$evaluators": {"is-staff": {"ends_with": [{"var": "email"}, "@example.com"]}},
  "flags": {
    "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
          "targeting": {"if": [{"$ref": "is-staff"}, "off", null]}}
  }
}"#;

const B: &str = r#"{
  "metadata": {"flagSetId": "team-b", "owner": "b"},
  "flags": {
    "b": {"state": "DISABLED", "variants": {"x": "<x>"}}
  }
}"#;

struct SyncServer {
    addr: String,
    store: Arc<Store>,
    shutdown: watch::Sender<bool>,
}

impl SyncServer {
    async fn start(docs: &[(&str, &str)], disable_metadata: bool, limits: Limits) -> SyncServer {
        let store = Store::new(
            docs.iter().map(|(uri, _)| (*uri).to_owned()).collect(),
            LoadOptions::default(),
        );
        for (i, (_, doc)) in docs.iter().enumerate() {
            apply(&store, i, doc);
        }
        let (tx, rx) = watch::channel(false);
        let mut static_values = Map::new();
        static_values.insert("region".into(), json!("eu"));
        let state = AppState {
            store: store.clone(),
            context: Arc::new(ContextConfig {
                static_values,
                from_headers: Vec::new(),
            }),
            metrics: Arc::new(Metrics::new()),
            shutdown: rx.clone(),
            limits,
            cors_origins: Arc::from(Vec::<String>::new()),
            telemetry: Default::default(),
            revision: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(serve_sync(
            Listener::Tcp(listener),
            state,
            None,
            disable_metadata,
            rx,
        ));
        SyncServer {
            addr,
            store,
            shutdown: tx,
        }
    }

    async fn default() -> SyncServer {
        Self::start(&[("a.json", A), ("b.json", B)], false, Limits::default()).await
    }

    async fn client(&self) -> FlagSyncServiceClient<Channel> {
        FlagSyncServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    async fn stream(
        &self,
        field: &str,
        header: Option<&str>,
    ) -> Result<Streaming<SyncFlagsResponse>, tonic::Status> {
        let mut req = tonic::Request::new(SyncFlagsRequest {
            provider_id: "test".into(),
            selector: field.into(),
        });
        if let Some(h) = header {
            req.metadata_mut()
                .insert("flagd-selector", h.parse().unwrap());
        }
        self.client()
            .await
            .sync_flags(req)
            .await
            .map(tonic::Response::into_inner)
    }
}

impl Drop for SyncServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

fn apply(store: &Store, source: usize, doc: &str) {
    let event = SourceEvent::Content {
        bytes: doc.as_bytes().to_vec(),
        format: Format::Json,
    };
    store.apply(SourceUpdate { source, event }).unwrap();
}

async fn next(stream: &mut Streaming<SyncFlagsResponse>) -> SyncFlagsResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

fn flags(msg: &str) -> Value {
    serde_json::from_str::<Value>(msg).unwrap()["flags"].clone()
}

const A_JSON: &str = concat!(
    r#""a":{"state":"ENABLED","defaultVariant":"on","variants":{"off":false,"on":true},"#,
    r#""targeting":{"if":[{"ends_with":[{"var":"email"},"@example.com"]},"off",null]},"source":"a.json"}"#
);
const B_JSON: &str = concat!(
    r#""b":{"state":"DISABLED","defaultVariant":"","variants":{"x":"\u003cx\u003e"},"source":"b.json","#,
    r#""metadata":{"flagSetId":"team-b","owner":"b"}}"#
);

#[tokio::test]
async fn stream_sends_initial_and_changed_configurations() {
    let s = SyncServer::default().await;
    let mut stream = s.stream("", None).await.unwrap();
    let first = next(&mut stream).await;
    assert_eq!(
        first.flag_configuration,
        format!("{{\"flags\":{{{A_JSON},{B_JSON}}}}}")
    );
    let ctx = first.sync_context.unwrap();
    assert_eq!(ctx.fields.len(), 1);
    assert_eq!(
        flagd_rs::context::struct_to_map(Some(ctx)),
        json!({"region": "eu"}).as_object().unwrap().clone()
    );

    apply(
        &s.store,
        0,
        &A.replace(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#),
    );
    let second = next(&mut stream).await;
    assert_eq!(
        flags(&second.flag_configuration)["a"]["defaultVariant"],
        "off"
    );
    assert!(second.sync_context.is_some());

    // A removed source disappears from the next configuration.
    s.store
        .apply(SourceUpdate {
            source: 1,
            event: SourceEvent::Removed,
        })
        .unwrap();
    let third = next(&mut stream).await;
    assert!(flags(&third.flag_configuration).get("b").is_none());
}

#[tokio::test]
async fn selectors_from_header_and_field() {
    let s = SyncServer::default().await;
    let only_b = format!("{{\"flags\":{{{B_JSON}}}}}");
    let mut by_field = s.stream("flagSetId=team-b", None).await.unwrap();
    assert_eq!(next(&mut by_field).await.flag_configuration, only_b);
    let mut by_header = s.stream("", Some("source=b.json")).await.unwrap();
    assert_eq!(next(&mut by_header).await.flag_configuration, only_b);
    // The header wins over the field.
    let mut both = s.stream("flagSetId=team-b", Some("a.json")).await.unwrap();
    assert_eq!(
        next(&mut both).await.flag_configuration,
        format!("{{\"flags\":{{{A_JSON}}}}}")
    );

    // A change outside the selection sends nothing; a change inside it does.
    apply(
        &s.store,
        0,
        &A.replace(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#),
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), by_field.message()).await;
    assert!(quiet.is_err(), "unexpected message: {quiet:?}");
    apply(
        &s.store,
        1,
        &B.replace(r#""owner": "b""#, r#""owner": "c""#),
    );
    let msg = next(&mut by_field).await;
    assert_eq!(
        flags(&msg.flag_configuration)["b"]["metadata"]["owner"],
        "c"
    );

    let err = s.stream("colour=red", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("invalid selector key \"colour\""),
        "{}",
        err.message()
    );
    let err = s.stream("", Some("colour=red")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn fetch_all_and_metadata() {
    let s = SyncServer::default().await;
    let mut client = s.client().await;
    let all = client
        .fetch_all_flags(FetchAllFlagsRequest {
            provider_id: String::new(),
            selector: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.flag_configuration,
        format!("{{\"flags\":{{{A_JSON},{B_JSON}}}}}")
    );
    let mut req = tonic::Request::new(FetchAllFlagsRequest {
        provider_id: String::new(),
        selector: "a.json".into(),
    });
    req.metadata_mut()
        .insert("flagd-selector", "flagSetId=team-b".parse().unwrap());
    let only_b = client.fetch_all_flags(req).await.unwrap().into_inner();
    assert_eq!(
        only_b.flag_configuration,
        format!("{{\"flags\":{{{B_JSON}}}}}")
    );
    let err = client
        .fetch_all_flags(FetchAllFlagsRequest {
            provider_id: String::new(),
            selector: "x=y".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let md = client
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner()
        .metadata;
    assert_eq!(
        flagd_rs::context::struct_to_map(md),
        json!({"region": "eu"}).as_object().unwrap().clone()
    );

    let disabled = SyncServer::start(&[("a.json", A)], true, Limits::default()).await;
    let err = disabled
        .client()
        .await
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "metadata endpoint disabled");
}

#[tokio::test]
async fn deadline_and_shutdown_end_streams() {
    let limits = Limits {
        stream_deadline: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let s = SyncServer::start(&[("a.json", A)], false, limits).await;
    let mut stream = s.stream("", None).await.unwrap();
    next(&mut stream).await;
    let err = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert_eq!(err.message(), "stream closed due to server-side timeout");

    let s = SyncServer::default().await;
    let mut stream = s.stream("", None).await.unwrap();
    next(&mut stream).await;
    s.shutdown.send(true).unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

/// The OpenFeature flagd provider in in-process mode syncs from this server and evaluates the
/// testbed's flags itself, including a `$ref` the payload had to inline.
#[cfg(feature = "providers")]
#[tokio::test]
async fn openfeature_in_process_provider() {
    use open_feature::EvaluationContext;
    use open_feature::provider::FeatureProvider;
    use open_feature_flagd::{FlagdOptions, FlagdProvider, ResolverType};

    let Some(dir) =
        flagd_rs_tests::require::testbed("the in-process provider on the testbed flags")
    else {
        return;
    };
    let dir = dir.join("flags");
    let testing = std::fs::read_to_string(dir.join("testing-flags.json")).unwrap();
    // flagd leaves a reference to a missing evaluator in the payload, and this provider refuses
    // a whole configuration containing one; leave that testbed flag out.
    let mut refs: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("evaluator-refs.json")).unwrap())
            .unwrap();
    refs["flags"]
        .as_object_mut()
        .unwrap()
        .remove("ref-to-nonexistent-evaluator-flag")
        .unwrap();
    let refs = refs.to_string();
    let s = SyncServer::start(
        &[("testing.json", &testing), ("refs.json", &refs)],
        false,
        Limits::default(),
    )
    .await;
    let (host, port) = s.addr.rsplit_once(':').unwrap();
    let options = FlagdOptions {
        host: host.into(),
        port: port.parse().unwrap(),
        resolver_type: ResolverType::InProcess,
        cache_settings: None,
        ..Default::default()
    };
    let provider = FlagdProvider::new(options).await.unwrap();
    let ctx = EvaluationContext::default().with_targeting_key("user");
    assert!(
        provider
            .resolve_bool_value("boolean-flag", &ctx)
            .await
            .unwrap()
            .value
    );
    assert_eq!(
        provider
            .resolve_string_value("string-flag", &ctx)
            .await
            .unwrap()
            .value,
        "hi"
    );
    assert_eq!(
        provider
            .resolve_int_value("integer-flag", &ctx)
            .await
            .unwrap()
            .value,
        10
    );
    assert_eq!(
        provider
            .resolve_float_value("float-flag", &ctx)
            .await
            .unwrap()
            .value,
        0.5
    );
    let ballmer = ctx
        .clone()
        .with_custom_field("email", "ballmer@macrosoft.com");
    let r = provider
        .resolve_string_value("some-email-targeted-flag", &ballmer)
        .await
        .unwrap();
    assert_eq!(r.value, "hi");
    let r = provider
        .resolve_string_value("some-email-targeted-flag", &ctx)
        .await
        .unwrap();
    assert_eq!(r.value, "bye");

    // A store change reaches the provider.
    apply(
        &s.store,
        0,
        &testing.replace(
            r#""defaultVariant": "greeting""#,
            r#""defaultVariant": "parting""#,
        ),
    );
    let mut value = String::new();
    for _ in 0..100 {
        value = provider
            .resolve_string_value("string-flag", &ctx)
            .await
            .unwrap()
            .value;
        if value == "bye" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value, "bye");
}

/// The sync port over TLS (ALPN h2).
#[tokio::test]
async fn tls() {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = flagd_rs_tests::tls::self_signed(dir.path());
    let store = Store::new(vec!["a.json".into()], LoadOptions::default());
    apply(&store, 0, A);
    let (tx, rx) = watch::channel(false);
    let state = AppState {
        store,
        context: Arc::new(ContextConfig::default()),
        metrics: Arc::new(Metrics::new()),
        shutdown: rx.clone(),
        limits: Limits::default(),
        cors_origins: Arc::from(Vec::<String>::new()),
        telemetry: Default::default(),
        revision: None,
    };
    let tls = flagd_rs::server::http::load_tls(&cert, &key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(serve_sync(
        Listener::Tcp(listener),
        state,
        Some(tls),
        false,
        rx,
    ));
    let pem = std::fs::read(&cert).unwrap();
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let all = FlagSyncServiceClient::new(channel)
        .fetch_all_flags(FetchAllFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.flag_configuration,
        format!("{{\"flags\":{{{A_JSON}}}}}")
    );
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// The sync port over a unix socket, through the in-process provider's socket support.
#[cfg(feature = "providers")]
#[tokio::test]
async fn unix_socket() {
    use open_feature::EvaluationContext;
    use open_feature::provider::FeatureProvider;
    use open_feature_flagd::{FlagdOptions, FlagdProvider, ResolverType};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(vec!["a.json".into()], LoadOptions::default());
    apply(&store, 0, A);
    let (tx, rx) = watch::channel(false);
    let state = AppState {
        store,
        context: Arc::new(ContextConfig::default()),
        metrics: Arc::new(Metrics::new()),
        shutdown: rx.clone(),
        limits: Limits::default(),
        cors_origins: Arc::from(Vec::<String>::new()),
        telemetry: Default::default(),
        revision: None,
    };
    let socket = dir.path().join("sync.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(serve_sync(Listener::Unix(listener), state, None, false, rx));
    let options = FlagdOptions {
        socket_path: Some(socket.to_string_lossy().into_owned()),
        resolver_type: ResolverType::InProcess,
        cache_settings: None,
        ..Default::default()
    };
    let provider = FlagdProvider::new(options).await.unwrap();
    let ctx = EvaluationContext::default().with_custom_field("email", "x@example.com");
    assert!(!provider.resolve_bool_value("a", &ctx).await.unwrap().value);
    let _ = tx.send(true);
}
