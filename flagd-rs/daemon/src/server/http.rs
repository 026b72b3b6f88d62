//! Serving plumbing shared by the ports: accepting TCP or unix-socket connections, HTTP/1.1 and
//! HTTP/2 (h2c or TLS with ALPN) on one listener, graceful shutdown, and telling gRPC
//! requests (for tonic) from everything else (for axum handlers).

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use http::{HeaderMap, Request, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tower::ServiceExt as _;

use super::stream_get;

/// How long in-flight requests may run on after shutdown before their connections are dropped.
/// Event streams end themselves on shutdown, so only a stuck client ever hits this.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's default header limit, which flagd uses when the configured limit is 0.
const DEFAULT_MAX_HEADER_BYTES: usize = 1 << 20;

/// A bound listener: TCP, or a unix socket (`--socket-path`).
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
    /// A unix domain socket listener.
    Unix(tokio::net::UnixListener),
}

/// An accepted connection from either kind of listener.
enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Small gRPC responses should not wait for Nagle's algorithm.
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Stream::Unix(s)),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` becomes `true`, then stops accepting, lets
/// in-flight requests finish (up to a grace period) and returns.
///
/// Each connection speaks HTTP/1.1 or HTTP/2: prior-knowledge h2c without TLS, ALPN-negotiated
/// with `tls`. Request headers larger than `max_header_bytes` (0 = 1 MiB) are refused.
pub async fn serve(
    listener: Listener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    max_header_bytes: usize,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    serve_with(listener, app, tls, max_header_bytes, shutdown, None).await
}

/// [`serve`], with plain-TCP `GET`s of paths under `streams` (long-lived event streams) served on
/// a lean HTTP/1.1 connection ([`stream_get`]) instead of hyper's, when their head allows it.
pub async fn serve_with_streams(
    listener: Listener,
    app: Router,
    max_header_bytes: usize,
    shutdown: watch::Receiver<bool>,
    streams: &'static str,
) -> io::Result<()> {
    serve_with(
        listener,
        app,
        None,
        max_header_bytes,
        shutdown,
        Some(streams),
    )
    .await
}

async fn serve_with(
    listener: Listener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    max_header_bytes: usize,
    mut shutdown: watch::Receiver<bool>,
    streams: Option<&'static str>,
) -> io::Result<()> {
    // Shared, not cloned into each connection's task.
    let builders = Arc::new(Builders::new(max_header_bytes));
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The sender is gone: nobody can ask for shutdown any more; keep serving.
                    std::future::pending::<()>().await;
                }
                continue;
            }
        };
        let stream = match stream {
            Ok(s) => s,
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
        // Each kind of connection is served by its own boxed future, so that a task holds only
        // the state of its kind (a plain HTTP/1.1 connection does not carry room for TLS).
        tokio::spawn(async move {
            let served = match (stream, acceptor) {
                (Stream::Tcp(s), None) => {
                    Box::pin(serve_tcp(&builders, watcher, s, app, streams)).await
                }
                (Stream::Unix(s), None) => {
                    Box::pin(serve_io(&builders.auto, watcher, s, app)).await
                }
                (Stream::Tcp(s), Some(a)) => match tls_handshake(&a, s).await {
                    Some(s) => Box::pin(serve_io(&builders.auto, watcher, s, app)).await,
                    None => Ok(()),
                },
                (Stream::Unix(s), Some(a)) => match tls_handshake(&a, s).await {
                    Some(s) => Box::pin(serve_io(&builders.auto, watcher, s, app)).await,
                    None => Ok(()),
                },
            };
            if let Err(e) = served {
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

/// The connection builders of a port, configured alike: `auto` tells HTTP/2 from HTTP/1.1 by
/// reading a connection's first bytes; `http1` serves a connection already known to be
/// HTTP/1.1.
#[derive(Clone)]
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: hyper::server::conn::http1::Builder,
    /// The largest request head accepted.
    max_head: usize,
}

impl Builders {
    fn new(max_header_bytes: usize) -> Builders {
        let limit = if max_header_bytes == 0 {
            DEFAULT_MAX_HEADER_BYTES
        } else {
            max_header_bytes
        };
        // hyper answers 431 when a request head does not fit in the read buffer; it needs at
        // least 8 KiB to work at all.
        let max_buf = limit.max(8192);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1().timer(TokioTimer::new()).max_buf_size(max_buf);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limit).unwrap_or(u32::MAX));
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(TokioTimer::new()).max_buf_size(max_buf);
        Builders {
            auto,
            http1,
            max_head: limit,
        }
    }
}

/// A plain TCP connection. Its first bytes are peeked, not read:
///
/// - a `GET` under `streams` whose head arrived whole is served by [`stream_get`];
/// - HTTP/2 with prior knowledge starts with the preface `PRI * HTTP/2.0`, which no HTTP/1.1
///   request does; anything else goes to hyper's HTTP/1.1 server as it arrived (reading the
///   first bytes to tell, as the version detection does, would make hyper read a request in two
///   parts and double its read buffer for the rest of the connection);
/// - the rest (the preface, or too few bytes to tell) to the version detection.
async fn serve_tcp(
    builders: &Builders,
    watcher: hyper_util::server::graceful::Watcher,
    stream: tokio::net::TcpStream,
    app: Router,
    streams: Option<&'static str>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let opening = std::future::poll_fn(|cx| {
        PEEKED.with_borrow_mut(|buffer| {
            let mut peeked = tokio::io::ReadBuf::new(&mut buffer[..]);
            stream
                .poll_peek(cx, &mut peeked)
                .map_ok(|_| Opening::of(peeked.filled(), streams, builders.max_head))
        })
    })
    .await?;
    match opening {
        Opening::Closed => Ok(()),
        Opening::Stream(request, length) => {
            let served = stream_get::serve(stream, length, *request, app, watcher);
            Box::pin(served).await.map_err(Into::into)
        }
        Opening::Http1 => {
            let service = TowerToHyperService::new(app);
            let conn = builders
                .http1
                .serve_connection(TokioIo::new(stream), service);
            Box::pin(watcher.watch(conn)).await.map_err(Into::into)
        }
        Opening::Unknown => Box::pin(serve_io(&builders.auto, watcher, stream, app)).await,
    }
}

thread_local! {
    /// Where each worker thread peeks at new connections: one buffer per thread rather than one
    /// per connection.
    static PEEKED: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; stream_get::PEEK_BYTES]);
}

/// What a new plain TCP connection's first bytes say about it.
enum Opening {
    /// The client closed it without sending anything.
    Closed,
    /// A request [`stream_get`] serves, and the length of its head.
    Stream(Box<Request<Body>>, usize),
    /// HTTP/1.1.
    Http1,
    /// The HTTP/2 preface, or too few bytes to tell.
    Unknown,
}

impl Opening {
    fn of(peeked: &[u8], streams: Option<&str>, max_head: usize) -> Opening {
        if peeked.is_empty() {
            return Opening::Closed;
        }
        if let Some(prefix) = streams
            && let Some((request, length)) = stream_get::parse(peeked, prefix, max_head)
        {
            return Opening::Stream(Box::new(request), length);
        }
        match peeked.get(..3) {
            Some(b"PRI") | None => Opening::Unknown,
            Some(_) => Opening::Http1,
        }
    }
}

async fn tls_handshake<S>(
    acceptor: &TlsAcceptor,
    stream: S,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}

async fn serve_io<S>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: S,
    app: Router,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    watcher.watch(conn.into_owned()).await
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

/// Loads a PEM certificate chain and private key into a server config that offers HTTP/2 and
/// HTTP/1.1 through ALPN.
pub fn load_tls(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        File::open(cert).with_context(|| format!("opening TLS certificate {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading TLS certificate {}", cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "no certificate found in {}",
        cert.display()
    );
    let key = rustls_pemfile::private_key(&mut BufReader::new(
        File::open(key).with_context(|| format!("opening TLS key {}", key.display()))?,
    ))
    .with_context(|| format!("reading TLS key {}", key.display()))?
    .with_context(|| format!("no private key found in {}", key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("configuring TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("TLS certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_told_apart_by_their_first_bytes() {
        let of = |bytes: &[u8], streams| Opening::of(bytes, streams, 1 << 20);
        let sse = Some("/ofrep/v1/sse");
        assert!(matches!(of(b"", sse), Opening::Closed));
        assert!(matches!(
            of(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sse),
            Opening::Unknown
        ));
        assert!(matches!(of(b"PO", None), Opening::Unknown));
        assert!(matches!(of(b"POST /x HTTP/1.1\r\n", None), Opening::Http1));
        let get = b"GET /ofrep/v1/sse HTTP/1.1\r\nhost: x\r\n\r\n";
        assert!(matches!(of(get, sse), Opening::Stream(_, 39)));
        assert!(matches!(of(get, None), Opening::Http1));
        assert!(matches!(of(&get[..20], sse), Opening::Http1));
    }

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
