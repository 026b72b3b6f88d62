//! Remote sources against real servers: an HTTP origin served by the test (ETag and `304`,
//! headers, outages, an origin that is down at start-up) and the daemon's own ports for remote
//! clients (OFREP, and the sync port opening only once every source has synced).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_evaluator::Format;
use flagd_rs::config::Config;
use flagd_rs::proto::flagd::sync::v1::SyncFlagsRequest;
use flagd_rs::proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use flagd_rs::sources::http::{self as http_source, HttpOptions, RetryPolicy};
use flagd_rs::sources::{Provider, SourceSpec};
use flagd_rs::store::{SourceEvent, SourceUpdate};
use flagd_rs::{BoundPorts, Listeners};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen within a few poll intervals.
const PATIENCE: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------------------------------------
// A daemon with every port exposed.

/// A daemon started with `flagd_rs::run` on 127.0.0.1, all ports chosen by the OS.
pub struct Daemon {
    pub management_port: u16,
    /// 0 when the sync service listens on a unix socket.
    pub sync_port: u16,
    pub ofrep_port: u16,
    pub eval_port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    client: reqwest::Client,
    _state: tempfile::TempDir,
}

impl Daemon {
    /// Starts a daemon for `sources` without waiting for readiness.
    pub async fn spawn(sources: Vec<SourceSpec>) -> Daemon {
        Daemon::spawn_with_sync_port(sources, 0).await
    }

    /// Starts a daemon whose sync port is `sync_port` and waits until it is ready.
    pub async fn start_with_sync_port(sources: Vec<SourceSpec>, sync_port: u16) -> Daemon {
        let d = Daemon::spawn_with_sync_port(sources, sync_port).await;
        d.wait_readyz(200).await;
        d
    }

    async fn spawn_with_sync_port(sources: Vec<SourceSpec>, sync_port: u16) -> Daemon {
        Daemon::spawn_with(sources, |c| c.sync_port = sync_port).await
    }

    /// Starts a daemon for `sources` with `configure` applied to its configuration (ports and
    /// state directory are set beforehand) and waits until it is ready.
    pub async fn start_with(
        sources: Vec<SourceSpec>,
        configure: impl FnOnce(&mut Config),
    ) -> Daemon {
        let d = Daemon::spawn_with(sources, configure).await;
        d.wait_readyz(200).await;
        d
    }

    async fn spawn_with(sources: Vec<SourceSpec>, configure: impl FnOnce(&mut Config)) -> Daemon {
        let state = tempfile::tempdir().unwrap();
        let mut config = Config {
            sources,
            host: [127, 0, 0, 1].into(),
            port: 0,
            management_port: 0,
            sync_port: 0,
            ofrep_port: 0,
            admin_port: 0,
            state_dir: state.path().join("state"),
            ..Config::default()
        };
        configure(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let BoundPorts { eval, management } = listeners.ports().unwrap();
        // 0 when the sync service listens on a unix socket.
        let sync_port = listeners.sync_port().unwrap().unwrap_or(0);
        let ofrep_port = listeners.ofrep_port().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(flagd_rs::run(config, listeners, async move {
            let _ = rx.await;
        }));
        Daemon {
            management_port: management,
            sync_port,
            ofrep_port,
            eval_port: eval.unwrap(),
            shutdown: Some(tx),
            task: Some(task),
            client: reqwest::Client::new(),
            _state: state,
        }
    }

    /// Starts a daemon for `sources` and waits until it is ready.
    pub async fn start(sources: Vec<SourceSpec>) -> Daemon {
        let d = Daemon::spawn(sources).await;
        d.wait_readyz(200).await;
        d
    }

    /// `GET /readyz` status.
    pub async fn readyz(&self) -> u16 {
        self.client
            .get(format!("http://127.0.0.1:{}/readyz", self.management_port))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// Polls `/readyz` until it answers `status`; panics if the daemon stopped or it never does.
    pub async fn wait_readyz(&self, status: u16) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                !self.task.as_ref().unwrap().is_finished(),
                "the daemon stopped"
            );
            if self.readyz().await == status {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Evaluates `key` over OFREP with `context` and an optional selector: (status, body).
    pub async fn ofrep(&self, key: &str, context: Value, selector: Option<&str>) -> (u16, Value) {
        let mut request = self
            .client
            .post(format!(
                "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/{key}",
                self.ofrep_port
            ))
            .json(&json!({ "context": context }))
            .timeout(Duration::from_secs(5));
        if let Some(s) = selector {
            request = request.header("flagd-selector", s);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// Resolves string flag `key` over Connect JSON on the evaluation port: (status, body).
    pub async fn connect_string(&self, key: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!(
                "http://127.0.0.1:{}/flagd.evaluation.v1.Service/ResolveString",
                self.eval_port
            ))
            .json(&json!({ "flagKey": key, "context": {} }))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The value OFREP returns for `key` (empty context), `Value::Null` when it is not found.
    pub async fn value(&self, key: &str) -> Value {
        let (_, body) = self.ofrep(key, json!({}), None).await;
        body.get("value").cloned().unwrap_or(Value::Null)
    }

    /// Polls OFREP until `key` evaluates to `expected`.
    pub async fn wait_value(&self, key: &str, expected: Value) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.value(key).await;
            if value == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} stayed {value}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `run` has returned (it must not, whatever the sources do).
    pub fn has_stopped(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Shuts the daemon down and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(20), task).await??
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Writes `contents` to `name` in `dir` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

/// A file source for `path`.
pub fn file_source(path: &Path) -> SourceSpec {
    SourceSpec::new(path.display().to_string(), Provider::File)
}

// ------------------------------------------------------------------------------------------------
// A flag origin: a minimal HTTP/1.1 server with ETag support.

/// What the origin serves and what it has seen.
#[derive(Debug, Default)]
struct OriginState {
    body: String,
    etag: Option<String>,
    content_type: Option<String>,
    /// Status to answer instead of the document (e.g. 500), if set.
    status: Option<u16>,
    requests: usize,
    not_modified: usize,
    /// Lower-cased headers of the last request.
    last_headers: Vec<(String, String)>,
    /// Answer `302` to this location instead of the document, if set.
    redirect: Option<String>,
}

/// A flag document served over HTTP by the test; it can be stopped and started again on the
/// same port.
struct Origin {
    addr: SocketAddr,
    state: Arc<Mutex<OriginState>>,
    task: Option<JoinHandle<()>>,
}

impl Origin {
    /// Serves `body` with `etag` on a port chosen by the OS.
    async fn start(body: &str, etag: Option<&str>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Origin::serve(listener, body, etag)
    }

    /// Serves `body` on `addr`, which must be free.
    async fn start_on(addr: SocketAddr, body: &str, etag: Option<&str>) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
        Origin::serve(listener, body, etag)
    }

    fn serve(listener: TcpListener, body: &str, etag: Option<&str>) -> Origin {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(OriginState {
            body: body.to_owned(),
            etag: etag.map(str::to_owned),
            ..OriginState::default()
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Connections die with the accept task, so a stopped origin is really gone.
                connections.spawn(answer(stream, shared.clone()));
            }
        });
        Origin {
            addr,
            state,
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, body: &str, etag: Option<&str>) {
        let mut s = self.state.lock().unwrap();
        s.body = body.to_owned();
        s.etag = etag.map(str::to_owned);
    }

    fn set_content_type(&self, content_type: &str) {
        self.state.lock().unwrap().content_type = Some(content_type.to_owned());
    }

    fn set_status(&self, status: Option<u16>) {
        self.state.lock().unwrap().status = status;
    }

    fn set_redirect(&self, location: &str) {
        self.state.lock().unwrap().redirect = Some(location.to_owned());
    }

    fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.requests, s.not_modified)
    }

    fn last_header(&self, name: &str) -> Option<String> {
        let s = self.state.lock().unwrap();
        s.last_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// Stops listening and drops every open connection.
    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Polls until the origin has answered `n` requests in total.
    async fn wait_requests(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.counts().0 < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the origin saw {} requests, expected {n}",
                self.counts().0
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Reads one request head and answers it (`Connection: close`).
async fn answer(mut stream: TcpStream, state: Arc<Mutex<OriginState>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let headers: Vec<(String, String)> = text
        .split("\r\n")
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let response = {
        let mut s = state.lock().unwrap();
        s.requests += 1;
        let if_none_match = headers
            .iter()
            .find(|(k, _)| k == "if-none-match")
            .map(|(_, v)| v.clone());
        s.last_headers = headers;
        if let Some(location) = &s.redirect {
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
        } else if let Some(status) = s.status {
            format!("HTTP/1.1 {status} Oops\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        } else if s.etag.is_some() && if_none_match == s.etag {
            s.not_modified += 1;
            "HTTP/1.1 304 Not Modified\r\nconnection: close\r\n\r\n".to_owned()
        } else {
            let mut r = String::from("HTTP/1.1 200 OK\r\nconnection: close\r\n");
            if let Some(etag) = &s.etag {
                r.push_str(&format!("etag: {etag}\r\n"));
            }
            if let Some(ct) = &s.content_type {
                r.push_str(&format!("content-type: {ct}\r\n"));
            }
            r.push_str(&format!(
                "content-length: {}\r\n\r\n{}",
                s.body.len(),
                s.body
            ));
            r
        }
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A port nothing listens on (it was free a moment ago).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn doc(value: &str) -> String {
    format!(
        r#"{{"flags":{{"color":{{"state":"ENABLED","variants":{{"v":"{value}"}},"defaultVariant":"v"}}}}}}"#
    )
}

const LOCAL: &str = r#"{"flags":{
  "local":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}
}}"#;

fn http_spec(url: String, interval: u32) -> SourceSpec {
    SourceSpec {
        interval: Some(interval),
        ..SourceSpec::new(url, Provider::Http)
    }
}

/// Receives the next update, failing the test after a while.
async fn next_update(rx: &mut mpsc::Receiver<SourceUpdate>) -> SourceEvent {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no update from the source")
        .expect("the source stopped")
        .event
}

fn fast_options() -> HttpOptions {
    HttpOptions {
        interval: Some(Duration::from_millis(30)),
        retry: RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(80),
        },
        ..HttpOptions::default()
    }
}

// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn http_source_honours_etag_and_sends_only_changes() {
    let origin = Origin::start(&doc("red"), Some("\"v1\"")).await;
    let mut spec = SourceSpec::new(origin.url("/flags"), Provider::Http);
    spec.auth_header = Some("Bearer s3cret".into());
    spec.headers.insert("X-Team".into(), "core".into());
    spec.timeout_s = Some(5);
    let (tx, mut rx) = mpsc::channel(8);
    let (stop, shutdown) = watch::channel(false);
    let task = http_source::spawn(&spec, 0, tx, shutdown, fast_options()).unwrap();

    match next_update(&mut rx).await {
        SourceEvent::Content { bytes, format } => {
            assert_eq!(bytes, doc("red").as_bytes());
            assert_eq!(format, Format::Json);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        origin.last_header("authorization").as_deref(),
        Some("Bearer s3cret")
    );
    assert_eq!(origin.last_header("x-team").as_deref(), Some("core"));
    assert!(
        origin
            .last_header("accept")
            .is_some_and(|a| a.contains("application/json") && a.contains("application/yaml"))
    );

    // Later polls are conditional: the origin answers 304 and nothing reaches the store.
    origin.wait_requests(5).await;
    let (requests, not_modified) = origin.counts();
    assert!(
        not_modified >= requests - 1,
        "{requests} requests, {not_modified} 304s"
    );
    assert_eq!(
        origin.last_header("if-none-match").as_deref(),
        Some("\"v1\"")
    );
    assert!(
        rx.try_recv().is_err(),
        "an unchanged document was sent again"
    );

    // A new document (and ETag) is sent once; YAML by content type (the path has no extension).
    let yaml =
        "flags:\n  color:\n    state: ENABLED\n    variants: {v: blue}\n    defaultVariant: v\n";
    origin.set_content_type("application/yaml");
    origin.set(yaml, Some("\"v2\""));
    match next_update(&mut rx).await {
        SourceEvent::Content { bytes, format } => {
            assert_eq!(bytes, yaml.as_bytes());
            assert_eq!(format, Format::Yaml);
        }
        other => panic!("unexpected {other:?}"),
    }
    let seen = origin.counts().0;
    origin.wait_requests(seen + 3).await;
    assert!(rx.try_recv().is_err());

    // Without an ETag, an identical body is not sent again either.
    origin.set(yaml, None);
    let seen = origin.counts().0;
    origin.wait_requests(seen + 3).await;
    assert!(rx.try_recv().is_err(), "an identical body was sent again");

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A `Host` header replaces the host of the URL in the request the origin receives (a proxy or
/// gateway routes by it), with the other headers alongside.
#[tokio::test]
async fn http_source_sends_the_configured_host() {
    let origin = Origin::start(&doc("red"), None).await;
    let mut spec = SourceSpec::new(origin.url("/flags.json"), Provider::Http);
    spec.headers.insert("Host".into(), "flags.internal".into());
    spec.headers.insert("X-Tenant-ID".into(), "tenant-7".into());
    spec.interval_seed = Some("replica-1".into());
    let (tx, mut rx) = mpsc::channel(8);
    let (stop, shutdown) = watch::channel(false);
    let task = http_source::spawn(&spec, 0, tx, shutdown, fast_options()).unwrap();
    assert!(matches!(
        next_update(&mut rx).await,
        SourceEvent::Content { .. }
    ));
    assert_eq!(
        origin.last_header("host").as_deref(),
        Some("flags.internal")
    );
    assert_eq!(
        origin.last_header("x-tenant-id").as_deref(),
        Some("tenant-7")
    );
    // Seeded polls keep coming.
    origin.wait_requests(3).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

/// A redirect to another origin is followed only when the source sends nothing secret; the
/// other origin never sees the source's headers. Credentials in the URL never show in names or
/// messages.
#[tokio::test]
async fn http_source_redirects_never_carry_secrets_to_another_origin() {
    let target = Origin::start(&doc("moved"), None).await;
    let redirector = Origin::start("", None).await;
    redirector.set_redirect(&target.url("/flags.json"));

    // Nothing secret: the redirect is followed.
    let spec = SourceSpec::new(redirector.url("/flags.json"), Provider::Http);
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let _task = http_source::spawn(&spec, 0, tx, shutdown, fast_options()).unwrap();
    match next_update(&mut rx).await {
        SourceEvent::Content { bytes, .. } => assert_eq!(bytes, doc("moved").as_bytes()),
        other => panic!("unexpected {other:?}"),
    }
    drop(_stop);

    // An API key: refused before anything reaches the other origin.
    let seen = target.counts().0;
    let mut spec = SourceSpec::new(redirector.url("/flags.json"), Provider::Http);
    spec.headers.insert("X-Api-Key".into(), "k3y".into());
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let _task = http_source::spawn(&spec, 0, tx, shutdown, fast_options()).unwrap();
    match next_update(&mut rx).await {
        SourceEvent::Failed(message) => {
            assert!(message.contains("another origin"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    redirector.wait_requests(redirector.counts().0 + 2).await;
    assert_eq!(target.counts().0, seen, "the other origin was asked");

    // Credentials in the URL: kept for the request, never shown.
    let url = redirector
        .url("/flags.json")
        .replacen("http://", "http://user:pa55word@", 1);
    let spec = SourceSpec::new(url, Provider::Http);
    assert!(
        !spec.source_uri().contains("pa55word"),
        "{}",
        spec.source_uri()
    );
    assert!(
        !spec.source_uri().contains("user@"),
        "{}",
        spec.source_uri()
    );
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let _task = http_source::spawn(&spec, 0, tx, shutdown, fast_options()).unwrap();
    match next_update(&mut rx).await {
        SourceEvent::Failed(message) => {
            assert!(message.contains("another origin"), "{message}");
            assert!(!message.contains("pa55word"), "{message}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(target.counts().0, seen);
}

#[tokio::test]
async fn http_source_reports_errors_once_and_recovers() {
    let origin = Origin::start(&doc("red"), Some("\"v1\"")).await;
    let spec = SourceSpec::new(origin.url("/flags.json"), Provider::Http);
    let (tx, mut rx) = mpsc::channel(8);
    let (_stop, shutdown) = watch::channel(false);
    let _task = http_source::spawn(&spec, 3, tx, shutdown, fast_options()).unwrap();
    assert!(matches!(
        next_update(&mut rx).await,
        SourceEvent::Content { .. }
    ));

    origin.set_status(Some(500));
    match next_update(&mut rx).await {
        SourceEvent::Failed(message) => assert!(message.contains("500"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    // Backing off and failing the same way is not reported again.
    let seen = origin.counts().0;
    origin.wait_requests(seen + 2).await;
    assert!(rx.try_recv().is_err());

    // Back with the same document: it is sent again once, which clears the store's error.
    origin.set_status(None);
    match next_update(&mut rx).await {
        SourceEvent::Content { bytes, .. } => assert_eq!(bytes, doc("red").as_bytes()),
        other => panic!("unexpected {other:?}"),
    }
    let seen = origin.counts().0;
    origin.wait_requests(seen + 3).await;
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn daemon_survives_an_http_outage_with_its_last_flags() {
    let dir = tempfile::tempdir().unwrap();
    let local = write_file(dir.path(), "local.json", LOCAL);
    let mut origin = Origin::start(&doc("red"), Some("\"v1\"")).await;
    let d = Daemon::start(vec![
        file_source(&local),
        http_spec(origin.url("/flags.json"), 1),
    ])
    .await;
    assert_eq!(d.value("color").await, json!("red"));

    origin.stop().await;
    // At least one poll fails while the origin is down.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(d.value("color").await, json!("red"), "last good flags kept");
    assert_eq!(d.value("local").await, json!(true));
    assert_eq!(d.readyz().await, 200, "readiness is sticky");
    assert!(!d.has_stopped());

    let origin = Origin::start_on(origin.addr, &doc("green"), Some("\"v2\"")).await;
    d.wait_value("color", json!("green")).await;
    assert!(origin.counts().0 >= 1);
    d.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_waits_for_an_http_source_that_is_down_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let local = write_file(dir.path(), "local.json", LOCAL);
    let addr = free_addr();
    let d = Daemon::spawn(vec![
        file_source(&local),
        http_spec(format!("http://{addr}/flags.json"), 1),
    ])
    .await;
    // The file source serves while the origin is down; the daemon is not ready.
    d.wait_value("local", json!(true)).await;
    assert_eq!(d.readyz().await, 412);
    let (status, body) = d.ofrep("color", json!({}), None).await;
    assert_eq!(
        (status, body["errorCode"].clone()),
        (404, json!("FLAG_NOT_FOUND"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.readyz().await, 412);
    assert!(
        !d.has_stopped(),
        "a source that is down must not stop the daemon"
    );

    let _origin = Origin::start_on(addr, &doc("red"), None).await;
    d.wait_readyz(200).await;
    assert_eq!(d.value("color").await, json!("red"));
    d.stop().await.unwrap();
}

/// Opens a `SyncFlags` stream on `port` and returns the first configuration's flag keys.
async fn first_sync_keys(port: u16) -> Vec<String> {
    let mut client = FlagSyncServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let mut stream = client
        .sync_flags(SyncFlagsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let message = stream.message().await.unwrap().unwrap();
    let config: Value = serde_json::from_str(&message.flag_configuration).unwrap();
    let mut keys: Vec<String> = config["flags"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn sync_port_opens_once_every_source_synced() {
    let dir = tempfile::tempdir().unwrap();
    let local = write_file(dir.path(), "local.json", LOCAL);
    let addr = free_addr();
    let d = Daemon::spawn(vec![
        file_source(&local),
        http_spec(format!("http://{addr}/flags.json"), 1),
    ])
    .await;
    d.wait_value("local", json!(true)).await;
    let port = d.sync_port;
    let sync = tokio::spawn(async move { first_sync_keys(port).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !sync.is_finished(),
        "sync served before every source synced"
    );

    let _origin = Origin::start_on(addr, &doc("red"), None).await;
    let keys = tokio::time::timeout(Duration::from_secs(4), sync)
        .await
        .expect("sync did not open after the sources synced")
        .unwrap();
    assert_eq!(keys, ["color", "local"]);
}

#[tokio::test]
async fn sync_port_opens_after_five_seconds_without_every_source() {
    let dir = tempfile::tempdir().unwrap();
    let local = write_file(dir.path(), "local.json", LOCAL);
    let d = Daemon::spawn(vec![
        file_source(&local),
        http_spec(format!("http://{}/flags.json", free_addr()), 1),
    ])
    .await;
    let started = tokio::time::Instant::now();
    let keys = tokio::time::timeout(Duration::from_secs(10), first_sync_keys(d.sync_port))
        .await
        .expect("sync never opened");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(keys, ["local"]);
    assert_eq!(d.readyz().await, 412);
}
