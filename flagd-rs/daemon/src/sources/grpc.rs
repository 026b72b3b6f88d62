//! The gRPC source: follows another server's `flagd.sync.v1.FlagSyncService` (a flagd or a
//! flagd-rs sync port), so one daemon can serve what another one loads.
//!
//! The source opens a `SyncFlags` stream with the configured `provider_id` and selector and
//! sends every `flag_configuration` it receives to the store as a JSON document: the server
//! sends the whole selected configuration each time, never a delta. When the stream breaks or
//! cannot be opened the source reports `Failed` (the store keeps the last flags it received)
//! and opens a new stream after a delay that doubles with each consecutive failure, up to a cap.
//!
//! Targets: `grpc://host:port`, `grpcs://host:port` (TLS), a bare `host:port` from `--sources`
//! (TLS when `tls` is set), `dns:[//authority/]host:port`, and `uds://<path>` for a unix socket.
//! The `envoy://` and `xds://` resolvers are refused.

use std::path::PathBuf;
use std::time::Duration;

use flagd_evaluator::Format;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tonic::Code;
use tonic::metadata::{AsciiMetadataValue, MetadataKey, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};

use super::http::{RetryPolicy, error_chain, wait_for_stop};
use super::{Provider, SourceError, SourceSpec, runtime};
use crate::proto::flagd::sync::v1::SyncFlagsRequest;
use crate::proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use crate::selector::Selector;
use crate::store::{SourceEvent, SourceUpdate};

/// The metadata key flagd servers read the selector from (besides the request field).
const SELECTOR_METADATA: &str = "flagd-selector";

/// Timing and limits of a gRPC source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcOptions {
    /// Delays between attempts while the server cannot be reached or the stream keeps breaking.
    pub retry: RetryPolicy,
    /// How long establishing a connection (including TLS) may take.
    pub connect_timeout: Duration,
    /// The largest configuration message accepted.
    pub max_message_bytes: usize,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 64 << 20,
        }
    }
}

/// Where the sync server is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// `host:port` over TCP.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

/// Starts a task that follows the sync stream of the server `spec` names and sends each
/// configuration as source `index`, until `shutdown` becomes `true` (or its sender is dropped,
/// or `tx` is closed).
///
/// The request carries `spec.provider_id` and `spec.selector` (in the request body, as flagd's
/// own sync client sends it, and in the `flagd-selector` metadata that newer servers prefer);
/// `spec.headers` become request metadata, a `Host` entry the HTTP/2 authority. With TLS the
/// server is verified against `spec.cert_path` when set, else against the built-in roots.
///
/// Refuses `envoy://` and `xds://` targets and a provider other than gRPC, and, as
/// [`SourceError::Invalid`], a selector flagd would refuse and headers that cannot be sent.
pub fn spawn(
    spec: &SourceSpec,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
    options: GrpcOptions,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let handle = runtime()?;
    let unsupported = || SourceError::Unsupported {
        provider: spec.provider,
        uri: spec.uri.clone(),
    };
    if spec.provider != Provider::Grpc {
        return Err(unsupported());
    }
    let (target, tls) = parse_target(&spec.uri).ok_or_else(unsupported)?;
    let call = CallSettings::from_spec(spec).map_err(|problem| spec.invalid(problem))?;
    #[allow(deprecated)]
    let request = SyncFlagsRequest {
        provider_id: spec.provider_id.clone().unwrap_or_default(),
        selector: spec.selector.clone().unwrap_or_default(),
    };
    let source = GrpcSource {
        name: spec.source_uri(),
        target,
        tls: tls || spec.tls,
        cert_path: spec.cert_path.clone(),
        call,
        request,
        options,
        index,
        tx,
        last_failure: None,
    };
    Ok(handle.spawn(source.run(shutdown)))
}

/// What every `SyncFlags` call of a source carries besides its body: the metadata (the
/// configured headers and the selector) and the HTTP/2 authority a `Host` header asks for.
#[derive(Debug, Clone)]
pub(crate) struct CallSettings {
    metadata: MetadataMap,
    authority: Option<String>,
}

impl CallSettings {
    /// The settings of `spec`, or what is wrong with them: a selector flagd would refuse (with
    /// flagd's message), a header name that is not valid gRPC metadata (a `-bin` name included:
    /// values are text), a value that is not visible ASCII, or a `Host` that is not an
    /// authority (`host` or `host:port`).
    pub(crate) fn from_spec(spec: &SourceSpec) -> Result<CallSettings, String> {
        let mut metadata = MetadataMap::new();
        let mut authority = None;
        for (name, value) in &spec.headers {
            let name = name.trim();
            if name.eq_ignore_ascii_case("host") {
                let valid = value.parse::<::http::uri::Authority>().is_ok() && !value.contains('@');
                if !valid {
                    return Err(format!(
                        "invalid Host header `{value}`: expected host or host:port"
                    ));
                }
                authority = Some(value.clone());
                continue;
            }
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("invalid header name `{name}` for gRPC metadata"))?;
            let value = metadata_text(value).ok_or_else(|| {
                format!("invalid value for header `{name}`: gRPC metadata must be visible ASCII")
            })?;
            metadata.insert(key, value);
        }
        if let Some(selector) = spec.selector.as_deref().filter(|s| !s.is_empty()) {
            Selector::parse(selector).map_err(|e| e.to_string())?;
            let value = metadata_text(selector).ok_or_else(|| {
                format!("invalid selector `{selector}`: it must be visible ASCII")
            })?;
            metadata.insert(SELECTOR_METADATA, value);
        }
        Ok(CallSettings {
            metadata,
            authority,
        })
    }
}

/// `text` as a text metadata value: printable ASCII (spaces included) only, as gRPC allows.
fn metadata_text(text: &str) -> Option<AsciiMetadataValue> {
    text.bytes()
        .all(|b| (0x20..=0x7e).contains(&b))
        .then(|| AsciiMetadataValue::try_from(text).ok())
        .flatten()
}

/// Splits a source URI into its target and whether the scheme asks for TLS; `None` for targets
/// this source cannot reach.
fn parse_target(uri: &str) -> Option<(Target, bool)> {
    let uri = uri.trim();
    let lower = uri.to_ascii_lowercase();
    let rest = |prefix: &str| uri.get(prefix.len()..).unwrap_or_default();
    let (target, tls) = if lower.starts_with("grpcs://") {
        (Target::Tcp(rest("grpcs://").to_owned()), true)
    } else if lower.starts_with("grpc://") {
        (Target::Tcp(rest("grpc://").to_owned()), false)
    } else if lower.starts_with("uds://") {
        (Target::Unix(PathBuf::from(rest("uds://"))), false)
    } else if lower.starts_with("unix://") {
        (Target::Unix(PathBuf::from(rest("unix://"))), false)
    } else if lower.starts_with("unix:") {
        (Target::Unix(PathBuf::from(rest("unix:"))), false)
    } else if lower.starts_with("dns:") {
        // `dns:host:port`, `dns:///host:port` or `dns://resolver/host:port`: the system
        // resolver is used whatever authority is named.
        let rest = rest("dns:");
        let host = match rest.strip_prefix("//") {
            Some(with_authority) => with_authority.split_once('/').map(|(_, h)| h)?,
            None => rest,
        };
        (Target::Tcp(host.to_owned()), false)
    } else if lower.contains("://") {
        return None;
    } else {
        (Target::Tcp(uri.to_owned()), false)
    };
    let valid = match &target {
        Target::Tcp(authority) => {
            let authority = authority.trim_end_matches('/');
            !authority.is_empty() && !authority.contains('/')
        }
        Target::Unix(path) => !path.as_os_str().is_empty(),
    };
    valid.then(|| match target {
        Target::Tcp(a) => (Target::Tcp(a.trim_end_matches('/').to_owned()), tls),
        unix => (unix, tls),
    })
}

/// How a stream ended.
enum Ended {
    /// Shutdown was requested or the store stopped: the source is done.
    Stop,
    /// The stream broke after delivering configurations.
    Broke(String),
    /// The stream could not be opened, or broke before delivering anything.
    Failed(String),
    /// The server closed the stream at its deadline; open a new one at once.
    Deadline,
}

/// The state of one running gRPC source, owned by its task.
struct GrpcSource {
    /// The source URI, for logs.
    name: String,
    target: Target,
    tls: bool,
    cert_path: Option<PathBuf>,
    call: CallSettings,
    request: SyncFlagsRequest,
    options: GrpcOptions,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    /// The problem last reported, so a persistent one is reported once.
    last_failure: Option<String>,
}

impl GrpcSource {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            let started = tokio::time::Instant::now();
            let ended = tokio::select! {
                () = wait_for_stop(&mut shutdown) => return,
                ended = self.follow() => ended,
            };
            let problem = match ended {
                Ended::Stop => return,
                Ended::Deadline => {
                    failures = 0;
                    // A stream the peer ends after its deadline is reopened at once, but never
                    // sooner than the first retry delay after the last one was opened: a peer
                    // with a tiny deadline must not get a full pull in a tight loop.
                    let pause = self.options.retry.initial.saturating_sub(started.elapsed());
                    if !pause.is_zero() {
                        tokio::select! {
                            () = wait_for_stop(&mut shutdown) => return,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                    continue;
                }
                Ended::Broke(problem) => {
                    failures = 1;
                    problem
                }
                Ended::Failed(problem) => {
                    failures = failures.saturating_add(1);
                    problem
                }
            };
            tracing::debug!(source = %self.name, failures, error = %problem, "sync stream unavailable");
            if !self.fail(problem).await {
                return;
            }
            let delay = self.options.retry.delay(failures);
            tokio::select! {
                () = wait_for_stop(&mut shutdown) => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Connects, opens a stream and forwards its messages until it ends.
    async fn follow(&mut self) -> Ended {
        let channel = match self.connect().await {
            Ok(c) => c,
            Err(problem) => return Ended::Failed(problem),
        };
        let mut client = FlagSyncServiceClient::new(channel)
            .max_decoding_message_size(self.options.max_message_bytes);
        let request = self.request();
        let mut stream = match client.sync_flags(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => return Ended::Failed(describe(&self.name, &status)),
        };
        let mut received = false;
        loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    if !received {
                        tracing::info!(source = %self.name, "sync stream established");
                    }
                    received = true;
                    self.last_failure = None;
                    let event = SourceEvent::Content {
                        bytes: message.flag_configuration.into_bytes(),
                        format: Format::Json,
                    };
                    if !self.send(event).await {
                        return Ended::Stop;
                    }
                }
                Ok(None) => {
                    let problem = format!("the sync stream from {} ended", self.name);
                    return if received {
                        Ended::Broke(problem)
                    } else {
                        Ended::Failed(problem)
                    };
                }
                Err(status) if status.code() == Code::DeadlineExceeded && received => {
                    return Ended::Deadline;
                }
                Err(status) => {
                    let problem = describe(&self.name, &status);
                    return if received {
                        Ended::Broke(problem)
                    } else {
                        Ended::Failed(problem)
                    };
                }
            }
        }
    }

    async fn connect(&self) -> Result<Channel, String> {
        let scheme = if self.tls { "https" } else { "http" };
        let authority = match &self.target {
            Target::Tcp(authority) => authority.as_str(),
            // The authority of a unix-socket connection is never resolved.
            Target::Unix(_) => "localhost",
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| format!("invalid sync target {}: {}", self.name, error_chain(&e)))?
            .connect_timeout(self.options.connect_timeout)
            .tcp_nodelay(true)
            // Slower than the 30 s minimum flagd's server enforces, so it never sends GOAWAY.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some(host) = &self.call.authority {
            let origin: Uri = format!("{scheme}://{host}")
                .parse()
                .map_err(|_| format!("invalid Host header `{host}` for {}", self.name))?;
            endpoint = endpoint.origin(origin);
        }
        if self.tls {
            endpoint = endpoint
                .tls_config(self.tls_config().await?)
                .map_err(|e| format!("TLS for {}: {}", self.name, error_chain(&e)))?;
        }
        let connected = match &self.target {
            Target::Tcp(_) => endpoint.connect().await,
            Target::Unix(path) => {
                let path = path.clone();
                endpoint
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move { UnixStream::connect(path).await.map(TokioIo::new) }
                    }))
                    .await
            }
        };
        connected.map_err(|e| format!("cannot connect to {}: {}", self.name, error_chain(&e)))
    }

    async fn tls_config(&self) -> Result<ClientTlsConfig, String> {
        let config = ClientTlsConfig::new().timeout(self.options.connect_timeout);
        let config = match &self.target {
            Target::Tcp(authority) => config.domain_name(host_of(authority)),
            Target::Unix(_) => config,
        };
        match &self.cert_path {
            Some(path) => {
                let pem = tokio::fs::read(path).await.map_err(|e| {
                    format!("cannot read the CA certificate {}: {e}", path.display())
                })?;
                Ok(config.ca_certificate(Certificate::from_pem(pem)))
            }
            None => Ok(config.with_enabled_roots()),
        }
    }

    /// The `SyncFlags` request with its metadata.
    fn request(&self) -> tonic::Request<SyncFlagsRequest> {
        let mut request = tonic::Request::new(self.request.clone());
        *request.metadata_mut() = self.call.metadata.clone();
        request
    }

    /// Reports `problem` unless it is the one reported last; `false` when the store has stopped.
    async fn fail(&mut self, problem: String) -> bool {
        if self.last_failure.as_deref() == Some(problem.as_str()) {
            return true;
        }
        self.last_failure = Some(problem.clone());
        self.send(SourceEvent::Failed(problem)).await
    }

    async fn send(&self, event: SourceEvent) -> bool {
        self.tx
            .send(SourceUpdate {
                source: self.index,
                event,
            })
            .await
            .is_ok()
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn describe(name: &str, status: &tonic::Status) -> String {
    let mut text = format!("sync stream from {name} failed: {:?}", status.code());
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let tcp = |s: &str| Some((Target::Tcp(s.to_owned()), false));
        assert_eq!(parse_target("grpc://localhost:8015"), tcp("localhost:8015"));
        assert_eq!(parse_target("GRPC://h:1/"), tcp("h:1"));
        assert_eq!(
            parse_target("grpcs://flags.example:443"),
            Some((Target::Tcp("flags.example:443".into()), true))
        );
        assert_eq!(parse_target("localhost:8015"), tcp("localhost:8015"));
        assert_eq!(parse_target("dns:///flagd:8015"), tcp("flagd:8015"));
        assert_eq!(parse_target("dns://8.8.8.8/flagd:8015"), tcp("flagd:8015"));
        assert_eq!(parse_target("dns:flagd:8015"), tcp("flagd:8015"));
        assert_eq!(
            parse_target("uds:///tmp/sync.sock"),
            Some((Target::Unix("/tmp/sync.sock".into()), false))
        );
        assert_eq!(
            parse_target("unix:/tmp/s.sock"),
            Some((Target::Unix("/tmp/s.sock".into()), false))
        );
        assert_eq!(parse_target("envoy://svc/flagd"), None);
        assert_eq!(parse_target("xds:///flagd"), None);
        assert_eq!(parse_target("grpc://"), None);
        assert_eq!(parse_target("grpc://h:1/path"), None);
    }

    #[test]
    fn call_settings_carry_headers_selector_and_authority() {
        let mut spec = SourceSpec::from_uri("grpc://127.0.0.1:8015").unwrap();
        spec.selector = Some("flagSetId=payments".into());
        spec.headers.insert("X-Team".into(), "core".into());
        spec.headers
            .insert("authorization".into(), "Bearer t".into());
        spec.headers
            .insert("HOST".into(), "flags.internal:8443".into());
        let call = CallSettings::from_spec(&spec).unwrap();
        let text = |k: &str| call.metadata.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(text("x-team"), Some("core"));
        assert_eq!(text("authorization"), Some("Bearer t"));
        assert_eq!(text("flagd-selector"), Some("flagSetId=payments"));
        assert_eq!(
            text("host"),
            None,
            "Host becomes the authority, not metadata"
        );
        assert_eq!(call.authority.as_deref(), Some("flags.internal:8443"));

        // Without headers or selector the call carries no metadata.
        let bare = CallSettings::from_spec(&SourceSpec::from_uri("grpc://h:1").unwrap()).unwrap();
        assert!(bare.metadata.is_empty());
        assert_eq!(bare.authority, None);
    }

    #[test]
    fn call_settings_refuse_what_cannot_be_sent() {
        let problem = |edit: &dyn Fn(&mut SourceSpec)| {
            let mut spec = SourceSpec::from_uri("grpc://h:1").unwrap();
            edit(&mut spec);
            CallSettings::from_spec(&spec).unwrap_err()
        };
        assert_eq!(
            problem(&|s| s.selector = Some("team=a".into())),
            "invalid selector key \"team\", valid keys: \"flagSetId\", \"source\""
        );
        assert!(problem(&|s| s.selector = Some("source=é".into())).contains("visible ASCII"));
        assert!(
            problem(&|s| {
                s.headers.insert("x-trace-bin".into(), "abc".into());
            })
            .contains("`x-trace-bin`")
        );
        assert!(
            problem(&|s| {
                s.headers.insert("x-team".into(), "caf\u{e9}".into());
            })
            .contains("visible ASCII")
        );
        for host in ["", "a b", "user@h", "h/path"] {
            let err = problem(&|s| {
                s.headers.insert("Host".into(), host.into());
            });
            assert!(err.contains("invalid Host header"), "{host}: {err}");
        }
    }

    #[tokio::test]
    async fn invalid_settings_stop_the_source_from_starting() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let mut spec = SourceSpec::from_uri("grpc://h:1").unwrap();
        spec.selector = Some("team=a".into());
        let err = spawn(&spec, 0, tx, shutdown, GrpcOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid source \"h:1\": invalid selector key \"team\", valid keys: \
             \"flagSetId\", \"source\""
        );
    }

    #[test]
    fn host_of_authority() {
        assert_eq!(host_of("flags.example:443"), "flags.example");
        assert_eq!(host_of("[::1]:8015"), "::1");
        assert_eq!(host_of("flags.example"), "flags.example");
    }

    #[tokio::test]
    async fn envoy_targets_are_refused() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let spec = SourceSpec::from_uri("envoy://svc/flagd").unwrap();
        let err = spawn(&spec, 0, tx, shutdown, GrpcOptions::default()).unwrap_err();
        assert!(err.to_string().contains("envoy://svc/flagd"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_server_reports_failure_once() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let spec = SourceSpec::from_uri(&format!("grpc://127.0.0.1:{port}")).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let options = GrpcOptions {
            retry: RetryPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
            ..GrpcOptions::default()
        };
        let task = spawn(&spec, 1, tx, shutdown, options).unwrap();
        let update = rx.recv().await.unwrap();
        assert_eq!(update.source, 1);
        match update.event {
            SourceEvent::Failed(message) => {
                assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(200), rx.recv())
                .await
                .is_err()
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
