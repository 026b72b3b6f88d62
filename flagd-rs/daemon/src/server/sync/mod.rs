//! The flag sync service (`flagd.sync.v1.FlagSyncService`, port 8015): streams the whole
//! selected flag configuration to in-process providers and chained daemons.
//!
//! Every message carries the full configuration, never a delta: one on connect and one after
//! each store change that alters what the stream's selector sees. A stream that wakes up for
//! a revision whose selected configuration is byte-identical to the last one sent stays quiet,
//! so a change to another selection costs its clients nothing.

pub mod gojson;
pub mod metrics;
pub mod payload;

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use tokio::sync::watch;
use tokio_rustls::rustls::ServerConfig;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::context::map_to_struct;
use crate::otel::spans::Traced;
use crate::proto::flagd::sync::v1::flag_sync_service_server::{
    FlagSyncService, FlagSyncServiceServer,
};
use crate::proto::flagd::sync::v1::{
    FetchAllFlagsRequest, FetchAllFlagsResponse, GetMetadataRequest, GetMetadataResponse,
    SyncFlagsRequest, SyncFlagsResponse,
};
use crate::selector::Selector;
use crate::server::deadline::{self, GrpcDeadline};
use crate::server::http::{self, Listener, ServeOptions};
use crate::server::keepalive::PingPolicy;
use crate::state::AppState;
use crate::store::Snapshot;
use metrics::{EndReason, StreamRecord};
// The gRPC metadata key that selects flags; it takes precedence over the request's field.
use crate::server::eval::resolve::SELECTOR_HEADER;

pub use payload::flag_configuration;

/// Payloads kept for reuse; one per distinct selector in use is plenty.
const PAYLOAD_CACHE_SIZE: usize = 32;

/// The sync service. Cheap to clone; clones share the payload cache.
#[derive(Debug, Clone)]
pub struct SyncService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: AppState,
    disable_metadata: bool,
    /// The latest payload per selector, keyed by snapshot revision: shared so that a store change
    /// seen by many streams with the same selector is serialised once, not once per stream.
    cache: Mutex<Vec<CachedPayload>>,
}

#[derive(Debug)]
struct CachedPayload {
    revision: u64,
    selector: Selector,
    json: Arc<str>,
}

impl SyncService {
    /// A service over `state`'s store. With `disable_metadata`, the deprecated `GetMetadata`
    /// answers `UNIMPLEMENTED` (flagd's `--disable-sync-metadata`).
    pub fn new(state: AppState, disable_metadata: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                state,
                disable_metadata,
                cache: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The selected configuration of `snapshot`, reusing a payload built for the same revision
    /// and selector by another request.
    fn payload(&self, snapshot: &Snapshot, selector: &Selector) -> Arc<str> {
        let revision = snapshot.revision;
        let lookup = |cache: &[CachedPayload]| {
            cache
                .iter()
                .find(|c| c.revision == revision && c.selector == *selector)
                .map(|c| c.json.clone())
        };
        if let Some(json) = self.inner.cache.lock().ok().and_then(|c| lookup(&c)) {
            return json;
        }
        // Built outside the lock: streams with other selectors need not wait for it.
        let json: Arc<str> = flag_configuration(snapshot, selector).into();
        if let Ok(mut cache) = self.inner.cache.lock() {
            cache.retain(|c| c.revision >= revision && c.selector != *selector);
            if cache.len() >= PAYLOAD_CACHE_SIZE {
                cache.remove(0);
            }
            cache.push(CachedPayload {
                revision,
                selector: selector.clone(),
                json: json.clone(),
            });
        }
        json
    }

    fn sync_context(&self) -> pbjson_types::Struct {
        map_to_struct(&self.inner.state.context.static_values)
    }
}

/// The tonic service for `state`, ready to add to a tonic router or server.
pub fn sync_service(state: AppState, disable_metadata: bool) -> FlagSyncServiceServer<SyncService> {
    // Configurations are sent whole; let large ones through as grpc-go does by default on the
    // sending side (no limit), while requests stay small.
    // Messages may come gzip-compressed and are compressed for clients that accept it, as
    // grpc-go does with its gzip codec registered.
    FlagSyncServiceServer::new(SyncService::new(state, disable_metadata))
        .max_encoding_message_size(usize::MAX)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
}

/// The selector a request asks for: the `flagd-selector` metadata (first value), else the
/// deprecated request field. A selector flagd would refuse is `INVALID_ARGUMENT`.
fn request_selector(metadata: &MetadataMap, field: &str) -> Result<Selector, Status> {
    let header = metadata
        .get(SELECTOR_HEADER)
        .map(|v| v.to_str().unwrap_or_default())
        .filter(|v| !v.is_empty());
    Selector::parse(header.unwrap_or(field)).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The selector expression a request sent, as the metrics label it (header first, then the
/// deprecated field).
fn selector_label(metadata: &MetadataMap, field: &str) -> String {
    metadata
        .get(SELECTOR_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or(field)
        .to_owned()
}

/// The span of a sync request, child of the caller's trace context, with the provider id and the
/// selector it asked for; nothing when tracing is off.
fn sync_span(
    state: &AppState,
    method: &'static str,
    metadata: &MetadataMap,
    provider_id: &str,
    selector: &str,
) -> Traced {
    if !state.telemetry.is_on() {
        return Traced::OFF;
    }
    let mut span = state.telemetry.server_span(method, metadata.as_ref());
    span.set_with(|| {
        let header = metadata
            .get(SELECTOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        vec![
            opentelemetry::KeyValue::new("flagd.sync.provider_id", provider_id.to_owned()),
            opentelemetry::KeyValue::new("flagd.selector", header.unwrap_or(selector).to_owned()),
        ]
    });
    span
}

fn revision_attr(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

/// The response stream of `SyncFlags`.
pub type SyncFlagsStream =
    Pin<Box<dyn Stream<Item = Result<SyncFlagsResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl FlagSyncService for SyncService {
    type SyncFlagsStream = SyncFlagsStream;

    async fn sync_flags(
        &self,
        request: Request<SyncFlagsRequest>,
    ) -> Result<Response<Self::SyncFlagsStream>, Status> {
        // The deprecated field is still what flagd's own sync client and older providers send.
        #[allow(deprecated)]
        let raw_selector = &request.get_ref().selector;
        let state = &self.inner.state;
        let mut span = sync_span(
            state,
            "flagd.sync.v1.FlagSyncService/SyncFlags",
            request.metadata(),
            &request.get_ref().provider_id,
            raw_selector,
        );
        let selector = request_selector(request.metadata(), raw_selector)
            .inspect_err(|_| span.fail("invalid_selector"))?;
        let provider_id = &request.get_ref().provider_id;
        tracing::debug!(%provider_id, ?selector, "sync stream opened");
        // The server's `--stream-deadline` or the client's `grpc-timeout` (checked before the
        // call), whichever comes first.
        let server_deadline = state.limits.stream_deadline.filter(|d| !d.is_zero());
        let client_deadline =
            deadline::grpc_timeout(request.metadata().as_ref()).unwrap_or_default();
        let (deadline, deadline_message) =
            match deadline::earliest(server_deadline, client_deadline) {
                Some((after, true)) => (Some(after), deadline::DEADLINE_MESSAGE),
                other => (
                    other.map(|(after, _)| after),
                    deadline::SERVER_DEADLINE_MESSAGE,
                ),
            };
        let record = state.metrics.sync_streams.stream_opened(
            &selector_label(request.metadata(), raw_selector),
            provider_id,
        );
        let watch = SyncWatch {
            service: self.clone(),
            selector,
            revisions: state.store.watch_revision(),
            shutdown: Some(state.shutdown.clone()),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep(d))),
            deadline_message,
            last: None,
            done: false,
            record,
            span,
            sent: 0,
        };
        let stream = futures::stream::unfold(watch, |mut w| async move {
            let item = w.next().await?;
            Some((item, w))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch_all_flags(
        &self,
        request: Request<FetchAllFlagsRequest>,
    ) -> Result<Response<FetchAllFlagsResponse>, Status> {
        // The deprecated field is still what flagd's own sync client and older providers send.
        #[allow(deprecated)]
        let raw_selector = &request.get_ref().selector;
        let mut span = sync_span(
            &self.inner.state,
            "flagd.sync.v1.FlagSyncService/FetchAllFlags",
            request.metadata(),
            &request.get_ref().provider_id,
            raw_selector,
        );
        let selector = request_selector(request.metadata(), raw_selector)
            .inspect_err(|_| span.fail("invalid_selector"))?;
        let snapshot = self.inner.state.store.snapshot_full();
        let json = self.payload(&snapshot, &selector);
        span.set("flagd.store.revision", revision_attr(snapshot.revision));
        Ok(Response::new(FetchAllFlagsResponse {
            flag_configuration: json.to_string(),
        }))
    }

    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        if self.inner.disable_metadata {
            return Err(Status::unimplemented("metadata endpoint disabled"));
        }
        #[allow(deprecated)]
        let response = GetMetadataResponse {
            metadata: Some(self.sync_context()),
        };
        Ok(Response::new(response))
    }
}

/// One open `SyncFlags` stream: what it selects and what it last sent.
struct SyncWatch {
    service: SyncService,
    selector: Selector,
    /// Woken on every published revision; never lags, so no change is missed.
    revisions: watch::Receiver<u64>,
    /// `None` once the shutdown sender is gone (nobody can ask for shutdown any more).
    shutdown: Option<watch::Receiver<bool>>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The status message at `deadline` (the server's or the client's).
    deadline_message: &'static str,
    last: Option<Arc<str>>,
    done: bool,
    /// The stream in the metrics, until it is dropped.
    record: StreamRecord,
    /// The stream's span, open while the stream is; each configuration sent is an event on it.
    span: Traced,
    sent: u32,
}

impl Drop for SyncWatch {
    fn drop(&mut self) {
        let sent = i64::from(self.sent);
        self.span.set("flagd.sync.configurations_sent", sent);
    }
}

impl SyncWatch {
    /// The next message, or `None` when the stream ends (shutdown, store gone, deadline passed).
    async fn next(&mut self) -> Option<Result<SyncFlagsResponse, Status>> {
        loop {
            if self.done || self.shutdown.as_ref().is_some_and(|s| *s.borrow()) {
                return None;
            }
            if self.last.is_some() {
                match self.wake().await {
                    Wake::Shutdown { sender_alive } => {
                        if !sender_alive {
                            self.shutdown = None;
                        }
                        continue;
                    }
                    Wake::Deadline => {
                        self.done = true;
                        self.record.ending(EndReason::DeadlineExceeded);
                        self.span.fail("deadline_exceeded");
                        return Some(Err(Status::deadline_exceeded(self.deadline_message)));
                    }
                    Wake::Revision { store_alive: false } => return None,
                    Wake::Revision { store_alive: true } => {}
                }
            }
            // Mark the revision seen before loading the snapshot, so a publish that lands in
            // between wakes the stream again instead of being lost.
            self.revisions.borrow_and_update();
            let snapshot = self.service.inner.state.store.snapshot_full();
            let json = self.service.payload(&snapshot, &self.selector);
            if self.last.as_ref().is_some_and(|last| *last == json) {
                continue;
            }
            self.last = Some(json.clone());
            self.sent = self.sent.saturating_add(1);
            self.span.event("flagd.sync.configuration", || {
                vec![opentelemetry::KeyValue::new(
                    "flagd.store.revision",
                    revision_attr(snapshot.revision),
                )]
            });
            return Some(Ok(SyncFlagsResponse {
                flag_configuration: json.to_string(),
                sync_context: Some(self.service.sync_context()),
            }));
        }
    }
}

/// Why a waiting stream woke up.
enum Wake {
    Shutdown { sender_alive: bool },
    Deadline,
    Revision { store_alive: bool },
}

impl SyncWatch {
    async fn wake(&mut self) -> Wake {
        let Self {
            shutdown,
            deadline,
            revisions,
            ..
        } = self;
        tokio::select! {
            alive = async {
                match shutdown.as_mut() {
                    Some(s) => s.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => Wake::Shutdown { sender_alive: alive },
            () = async {
                match deadline.as_mut() {
                    Some(d) => d.await,
                    None => std::future::pending().await,
                }
            } => Wake::Deadline,
            changed = revisions.changed() => Wake::Revision { store_alive: changed.is_ok() },
        }
    }
}

/// How the sync port is served, besides its listener and TLS. The default is flagd's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncOptions {
    /// Make the deprecated `GetMetadata` answer `UNIMPLEMENTED`.
    pub disable_metadata: bool,
    /// What client keepalive pings must respect.
    pub keepalive: PingPolicy,
    /// Largest total size of request headers (0 = 1 MiB).
    pub max_header_bytes: usize,
}

/// Serves the sync service on `listener` (TCP or unix socket) until `shutdown` becomes `true`,
/// with flagd's default keepalive policy; see [`serve_sync_with`].
pub async fn serve_sync(
    listener: Listener,
    state: AppState,
    tls: Option<Arc<ServerConfig>>,
    disable_metadata: bool,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let options = SyncOptions {
        disable_metadata,
        ..SyncOptions::default()
    };
    serve_sync_with(listener, state, tls, options, shutdown).await
}

/// Serves the sync service on `listener` until `shutdown` becomes `true`.
///
/// The port speaks gRPC only (HTTP/2, prior knowledge without TLS, ALPN with `tls`), like flagd's
/// grpc-go server, and enforces `options.keepalive` on client pings the way grpc-go does. Open
/// streams end when shutdown starts; the server then waits up to a grace period for
/// connections to close.
pub async fn serve_sync_with(
    listener: Listener,
    state: AppState,
    tls: Option<Arc<ServerConfig>>,
    options: SyncOptions,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut state = state;
    // Streams must end with the server, whatever receiver the state was built with.
    state.shutdown = shutdown.clone();
    let app = router(state, options.disable_metadata);
    let serve = ServeOptions::grpc_only(options.max_header_bytes, options.keepalive);
    http::serve_with(listener, app, tls, serve, shutdown).await
}

/// The sync port's application: the sync service as tonic routes.
///
/// A call's `grpc-timeout` bounds its response; an invalid one is refused with INTERNAL, as
/// grpc-go refuses it.
pub fn router(state: AppState, disable_metadata: bool) -> axum::Router {
    use tower::ServiceExt as _;
    let routes =
        tonic::service::Routes::new(sync_service(state, disable_metadata)).into_axum_router();
    let service = tower::service_fn(move |request: axum::extract::Request| {
        GrpcDeadline::call(request, false, tonic::Code::Internal, |r| {
            routes.clone().oneshot(r)
        })
    });
    axum::Router::new().fallback_service(service)
}
