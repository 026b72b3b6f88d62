//! The serving loop every port runs (evaluation, sync, OFREP, management, admin): accept a
//! connection ([`listen`]), complete TLS, tell HTTP/1.1 from HTTP/2 (or, on a gRPC-only port,
//! speak HTTP/2 alone under the keepalive policy of [`keepalive`]), serve the port's router with
//! hyper, and on shutdown stop accepting and drain. Also the content-type test that tells gRPC
//! requests (for tonic) from everything else (for axum handlers).

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, Request, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt as _;

use super::keepalive::{PingGuard, PingPolicy};
use super::listen::{self, Conn, Protocol};
pub use super::listen::{Listener, load_tls};
use super::stream_get;

/// How long in-flight requests may run on after shutdown before their connections are dropped.
/// Event streams end themselves on shutdown, so only a stuck client ever hits this.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Go's default header limit, which flagd uses when the configured limit is 0.
const DEFAULT_MAX_HEADER_BYTES: usize = 1 << 20;

/// hyper's own default for reading an HTTP/1.1 request head, kept where a port sets none.
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The shortest time an idle HTTP/1.1 keep-alive connection is kept between requests: flagd's
/// `ReadTimeout`, which Go also uses as the idle timeout when none is set. hyper runs one timer
/// from the end of a response to the end of the next request head, so that timer is never set
/// below this; otherwise a pooled client connection idle for a second would be closed under a
/// request the client is about to send. The port's own, shorter timeout bounds the first bytes
/// of every connection (the protocol sniff), so a silent client is still dropped quickly.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);

/// What a port serves: a service from requests to responses that never fails, cloned for every
/// connection, as an axum [`Router`] is. The evaluation and OFREP ports serve their layered
/// dispatch as it is, without a router around it, whose fallback route would match the path,
/// record route parameters and box the service and its future for every request.
pub trait App:
    tower::Service<Request<Body>, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: tower::Service<
            Request<Body>,
            Response = Response,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// An [`App`] as hyper calls it: the request body boxed into axum's body type, as a router
/// boxes it.
type Hyper<A> = tower::util::MapRequest<A, fn(Request<Incoming>) -> Request<Body>>;

fn hyper_service<A: App>(app: A) -> TowerToHyperService<Hyper<A>> {
    let boxed: fn(Request<Incoming>) -> Request<Body> = |request| request.map(Body::new);
    TowerToHyperService::new(app.map_request(boxed))
}

/// How one port is served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Largest total size of request headers (0 = 1 MiB); larger heads are refused (HTTP 431
    /// on HTTP/1.1).
    pub max_header_bytes: usize,
    /// How long a client may take to send the first bytes of a connection (flagd's
    /// `ReadHeaderTimeout`); a whole HTTP/1.1 request head, and the idle time before the next
    /// one, may take up to [`KEEP_ALIVE_IDLE`] if that is longer. A slower client is
    /// disconnected.
    pub header_read_timeout: Duration,
    /// `Some`: the port speaks HTTP/2 only, as a grpc-go server does, and enforces this
    /// policy on client pings. `None`: HTTP/1.1 and HTTP/2 on one listener.
    pub grpc_only: Option<PingPolicy>,
    /// `Some(prefix)`: a plain-TCP `GET` under this path whose whole head arrives first is an
    /// event stream, served on a lean HTTP/1.1 connection ([`stream_get`]) rather than hyper's,
    /// which keeps buffers of tens of kilobytes for as long as a stream lives.
    pub event_streams: Option<&'static str>,
}

impl ServeOptions {
    /// HTTP/1.1 and HTTP/2 with the given header limit and hyper's default head timeout.
    pub fn http(max_header_bytes: usize) -> Self {
        Self {
            max_header_bytes,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            grpc_only: None,
            event_streams: None,
        }
    }

    /// The same with another header read timeout.
    pub fn header_read_timeout(self, timeout: Duration) -> Self {
        Self {
            header_read_timeout: timeout,
            ..self
        }
    }

    /// The same with event streams under `prefix` on the lean path.
    pub fn event_streams(self, prefix: &'static str) -> Self {
        Self {
            event_streams: Some(prefix),
            ..self
        }
    }

    /// HTTP/2 only, with `policy` enforced on client pings.
    pub fn grpc_only(max_header_bytes: usize, policy: PingPolicy) -> Self {
        Self {
            max_header_bytes,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            grpc_only: Some(policy),
            event_streams: None,
        }
    }
}

/// Serves `app` on `listener` (HTTP/1.1 and HTTP/2) until `shutdown` becomes `true`; see
/// [`serve_with`]. Request headers larger than `max_header_bytes` (0 = 1 MiB) are refused.
pub async fn serve(
    listener: Listener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    max_header_bytes: usize,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    serve_with(
        listener,
        app,
        tls,
        ServeOptions::http(max_header_bytes),
        shutdown,
    )
    .await
}

/// Serves `app` on `listener` until `shutdown` becomes `true`, then stops accepting, lets
/// in-flight requests finish (up to a grace period) and returns.
///
/// Without `options.grpc_only`, each connection speaks HTTP/1.1 or HTTP/2: prior-knowledge h2c
/// without TLS, ALPN-negotiated with `tls`. With it, HTTP/2 only.
pub async fn serve_with<A: App>(
    listener: Listener,
    app: A,
    tls: Option<Arc<ServerConfig>>,
    options: ServeOptions,
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let builders = Arc::new(Builders::new(&options));
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can ask for shutdown any more; keep serving.
                    std::future::pending::<()>().await;
                }
                continue;
            }
        };
        let conn = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Typically EMFILE or a connection reset before accept; back off briefly so a
                // persistent condition does not spin the loop.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let builders = builders.clone();
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let conn = match acceptor {
                Some(a) => match conn.tls(&a).await {
                    Some(c) => c,
                    None => return,
                },
                None => conn,
            };
            if let Err(e) = builders.serve(conn, app, watcher).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; dropping them");
    }
    Ok(())
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

thread_local! {
    /// Where each worker thread peeks at new connections of a port with event streams: one
    /// buffer per thread rather than one per connection.
    static PEEKED: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; stream_get::PEEK_BYTES]);
}

/// The hyper connection settings of one port, built once.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    grpc_only: Option<PingPolicy>,
    event_streams: Option<&'static str>,
    max_head: usize,
}

impl Builders {
    fn new(options: &ServeOptions) -> Self {
        let limit = match options.max_header_bytes {
            0 => DEFAULT_MAX_HEADER_BYTES,
            n => n,
        };
        let mut http1 = http1::Builder::new();
        // hyper answers 431 when a request head does not fit in the read buffer; it needs at
        // least 8 KiB to work at all.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout.max(KEEP_ALIVE_IDLE))
            .max_buf_size(limit.max(8192));
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limit).unwrap_or(u32::MAX));
        Self {
            http1,
            http2,
            header_read_timeout: options.header_read_timeout,
            grpc_only: options.grpc_only,
            event_streams: options.event_streams,
            max_head: limit,
        }
    }

    /// Serves one connection to its end.
    async fn serve<A: App>(&self, conn: Conn, app: A, watcher: Watcher) -> Result<(), ConnError> {
        if let Some(policy) = self.grpc_only {
            let service = hyper_service(app);
            return self
                .serve_h2(PingGuard::new(conn, policy), service, watcher)
                .await;
        }
        let conn = match (self.event_streams, conn) {
            (Some(prefix), Conn::Tcp(tcp)) => match self.peek_stream(&tcp, prefix).await? {
                Some((request, length)) => {
                    let served = stream_get::serve(tcp, length, *request, app, watcher);
                    return Box::pin(served).await.map_err(Into::into);
                }
                None => Conn::Tcp(tcp),
            },
            (_, conn) => conn,
        };
        let service = hyper_service(app);
        let (protocol, io) = listen::sniff(conn, Some(self.header_read_timeout)).await?;
        match protocol {
            Protocol::Http1 => watcher
                .watch(self.http1.serve_connection(TokioIo::new(io), service))
                .await
                .map_err(Into::into),
            Protocol::Http2 => self.serve_h2(io, service, watcher).await,
        }
    }

    /// Peeks at the first bytes of `tcp` (nothing is read) under the header read timeout: an
    /// event-stream request under `prefix` whose whole head is there, and its length.
    async fn peek_stream(
        &self,
        tcp: &tokio::net::TcpStream,
        prefix: &str,
    ) -> io::Result<Option<(Box<Request<Body>>, usize)>> {
        let peek = std::future::poll_fn(|cx| {
            PEEKED.with_borrow_mut(|buffer| {
                let mut peeked = tokio::io::ReadBuf::new(&mut buffer[..]);
                tcp.poll_peek(cx, &mut peeked).map_ok(|_| {
                    stream_get::parse(peeked.filled(), prefix, self.max_head)
                        .map(|(request, length)| (Box::new(request), length))
                })
            })
        });
        match tokio::time::timeout(self.header_read_timeout, peek).await {
            Ok(result) => result,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head within the header read timeout",
            )),
        }
    }

    async fn serve_h2<S, A: App>(
        &self,
        io: S,
        service: TowerToHyperService<Hyper<A>>,
        watcher: Watcher,
    ) -> Result<(), ConnError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        watcher
            .watch(self.http2.serve_connection(TokioIo::new(io), service))
            .await
            .map_err(Into::into)
    }
}

/// Whether a request is gRPC (`application/grpc`, `application/grpc+proto`, ...) or gRPC-Web
/// (`application/grpc-web*`); both are handled by tonic.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    grpc_kind(headers).is_some()
}

/// One router that sends gRPC and gRPC-Web requests (by `content-type`) to `grpc` — tonic's
/// routes converted with `into_axum_router()`, with `tonic_web::GrpcWebLayer` applied where
/// gRPC-Web is wanted — and every other request to `http`.
///
/// Both routers may serve the same paths (Connect and gRPC share them), which is why they are
/// not merged: axum refuses overlapping routes.
pub fn grpc_or_http(grpc: Router, http: Router) -> Router {
    let dispatch = tower::service_fn(move |req: Request<Body>| {
        let target = if is_grpc(req.headers()) {
            grpc.clone()
        } else {
            http.clone()
        };
        target.oneshot(req)
    });
    Router::new().fallback_service(dispatch)
}

/// The two gRPC content-type families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcKind {
    /// `application/grpc`, `application/grpc+proto`, ...
    Plain,
    /// `application/grpc-web*`.
    Web,
}

/// Which gRPC family a request's `content-type` names, if any.
pub fn grpc_kind(headers: &HeaderMap) -> Option<GrpcKind> {
    let ct = headers.get(header::CONTENT_TYPE)?.as_bytes();
    let prefix = ct.get(..16)?;
    if !prefix.eq_ignore_ascii_case(b"application/grpc") {
        return None;
    }
    match ct.get(16..20) {
        Some(web) if web.eq_ignore_ascii_case(b"-web") => Some(GrpcKind::Web),
        _ => Some(GrpcKind::Plain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let check = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            is_grpc(&h)
        };
        assert!(check("application/grpc"));
        assert!(check("application/grpc+proto"));
        assert!(check("Application/GRPC"));
        assert!(check("application/grpc-web+proto"));
        assert!(!check("application/json"));
        assert!(!check("application/connect+json"));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
