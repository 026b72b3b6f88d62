//! An evaluation port served in-process from a store the test controls, plus clients for it:
//! tonic clients for the three services, and helpers for Connect, gRPC-Web and envelopes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use flagd_rs::metrics::Metrics;
use flagd_rs::proto::flagd::evaluation::{v1, v2};
use flagd_rs::proto::schema::v1 as schema;
use flagd_rs::server::http::{self, Listener};
use flagd_rs::state::{AppState, ContextConfig, Limits};
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The URI of the single source of an [`EvalServer`].
pub const SOURCE: &str = "test";

/// The flags most evaluation tests use.
pub const FLAGS: &str = r#"{
  "metadata": {"version": "1"},
  "flags": {
    "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on", "metadata": {"owner": "qa"}},
    "str": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"}, "defaultVariant": "hi"},
    "int": {"state": "ENABLED", "variants": {"one": 1, "ten": 10}, "defaultVariant": "ten"},
    "frac-int": {"state": "ENABLED", "variants": {"a": 1.9, "b": -1.9}, "defaultVariant": "a"},
    "float": {"state": "ENABLED", "variants": {"half": 0.5}, "defaultVariant": "half"},
    "obj": {"state": "ENABLED", "variants": {"tpl": {"a": 1, "b": "x", "c": [true, null]}}, "defaultVariant": "tpl"},
    "targeted": {"state": "ENABLED", "variants": {"in": "INTERNAL", "out": "EXTERNAL"}, "defaultVariant": "out",
      "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "in", null]}},
    "team": {"state": "ENABLED", "variants": {"blue": "blue", "none": "none", "prod": "prod"}, "defaultVariant": "none",
      "targeting": {"if": [{"==": [{"var": "team"}, "blue"]}, "blue", {"==": [{"var": "env"}, "prod"]}, "prod", null]}},
    "disabled": {"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on", "metadata": {"owner": "ops"}},
    "no-default": {"state": "ENABLED", "variants": {"a": "A"}},
    "parse-error": {"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one", "targeting": {"invalid": [1]}},
    "general": {"state": "ENABLED", "variants": {"one": 1}, "defaultVariant": "one", "targeting": {"if": [true, "three", "one"]}},
    "set-flag": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a", "metadata": {"flagSetId": "other", "team": "x"}}
  }
}"#;

/// An evaluation server on 127.0.0.1 with an OS-chosen port.
#[derive(Debug)]
pub struct EvalServer {
    /// Where it listens.
    pub addr: SocketAddr,
    state: AppState,
    /// Its store; tests apply documents to it to trigger change events.
    pub store: Arc<Store>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

/// What a test may change before the server starts.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Request and stream limits (default: the daemon's defaults).
    pub limits: Limits,
    /// Static and header-mapped context.
    pub context: ContextConfig,
    /// CORS origins.
    pub cors_origins: Vec<String>,
}

impl EvalServer {
    /// Serves `flags` (a JSON document) with default options.
    pub async fn start(flags: &str) -> EvalServer {
        EvalServer::start_with(flags, Options::default()).await
    }

    /// Serves `flags` (a JSON document) with `options`.
    pub async fn start_with(flags: &str, options: Options) -> EvalServer {
        let store = Store::new(vec![SOURCE.into()], LoadOptions::default());
        let server_store = store.clone();
        let server = EvalServer::spawn(server_store, options).await;
        server.apply(flags);
        server
    }

    async fn spawn(store: Arc<Store>, options: Options) -> EvalServer {
        let (shutdown, rx) = watch::channel(false);
        let state = AppState {
            store: store.clone(),
            context: Arc::new(options.context),
            metrics: Arc::new(Metrics::new()),
            shutdown: rx.clone(),
            limits: options.limits,
            cors_origins: options.cors_origins.into(),
            telemetry: Default::default(),
            revision: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let app = flagd_rs::server::eval::router(state.clone());
        let max_header = options.limits.max_header_bytes;
        let task = tokio::spawn(http::serve(
            Listener::Tcp(listener),
            app,
            None,
            max_header,
            rx,
        ));
        EvalServer {
            addr,
            state,
            store,
            shutdown,
            task: Some(task),
        }
    }

    /// The state the server was built with (to serve the same flags elsewhere).
    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Publishes `flags` as the source's new content; panics if it is rejected.
    pub fn apply(&self, flags: &str) {
        self.store
            .apply(SourceUpdate {
                source: 0,
                event: SourceEvent::Content {
                    bytes: flags.as_bytes().to_vec(),
                    format: Format::Json,
                },
            })
            .expect("flag document accepted");
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url(""))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// A gRPC client for `flagd.evaluation.v1.Service`.
    pub async fn v1(&self) -> v1::service_client::ServiceClient<Channel> {
        v1::service_client::ServiceClient::new(self.channel().await)
    }

    /// A gRPC client for `flagd.evaluation.v2.Service`.
    pub async fn v2(&self) -> v2::service_client::ServiceClient<Channel> {
        v2::service_client::ServiceClient::new(self.channel().await)
    }

    /// A gRPC client for `schema.v1.Service`.
    pub async fn schema(&self) -> schema::service_client::ServiceClient<Channel> {
        schema::service_client::ServiceClient::new(self.channel().await)
    }

    /// Asks the server to shut down (streams send `provider_shutdown`) and waits until it has
    /// stopped.
    pub async fn stop(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("serve");
        }
    }

    /// Asks the server to shut down without waiting.
    pub fn begin_shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for EvalServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A protobuf `Struct` from a JSON object.
pub fn pb_struct(v: Value) -> pbjson_types::Struct {
    match v {
        Value::Object(m) => flagd_rs::context::map_to_struct(&m),
        other => panic!("not an object: {other}"),
    }
}

/// A protobuf `Struct` as JSON.
pub fn json_of(s: Option<pbjson_types::Struct>) -> Value {
    Value::Object(flagd_rs::context::struct_to_map(s))
}

/// An empty JSON object.
pub fn empty() -> Value {
    Value::Object(Map::new())
}

/// One enveloped message (gRPC, gRPC-Web and Connect streaming share the framing).
pub fn envelope(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a buffer of enveloped messages into (flags, payload) pairs; returns the pairs and
/// the bytes of an incomplete trailing message.
pub fn split_envelopes(mut buf: &[u8]) -> (Vec<(u8, Vec<u8>)>, Vec<u8>) {
    let mut out = Vec::new();
    while buf.len() >= 5 {
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            break;
        }
        out.push((buf[0], buf[5..5 + len].to_vec()));
        buf = &buf[5 + len..];
    }
    (out, buf.to_vec())
}

/// Reads enveloped frames from a streaming HTTP response, one at a time.
#[derive(Debug)]
pub struct FrameReader {
    response: reqwest::Response,
    pending: Vec<u8>,
    frames: std::collections::VecDeque<(u8, Vec<u8>)>,
}

impl FrameReader {
    /// Reads from `response`.
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            pending: Vec::new(),
            frames: Default::default(),
        }
    }

    /// The next frame, or `None` when the body ended; fails the test after 10 s.
    pub async fn next(&mut self) -> Option<(u8, Vec<u8>)> {
        tokio::time::timeout(Duration::from_secs(10), self.next_inner())
            .await
            .expect("a frame in time")
    }

    async fn next_inner(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            let chunk = self.response.chunk().await.expect("body chunk")?;
            self.pending.extend_from_slice(&chunk);
            let (frames, rest) = split_envelopes(&self.pending);
            self.frames.extend(frames);
            self.pending = rest;
        }
    }

    /// The next frame's payload as JSON, with its flags.
    pub async fn next_json(&mut self) -> Option<(u8, Value)> {
        let (flags, payload) = self.next().await?;
        Some((flags, serde_json::from_slice(&payload).expect("JSON frame")))
    }
}
