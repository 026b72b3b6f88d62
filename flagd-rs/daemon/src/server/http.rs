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
    mut shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let builder = connection_builder(max_header_bytes);
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
        let builder = builder.clone();
        let app = app.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let served = match (stream, acceptor) {
                (Stream::Tcp(s), None) => serve_io(&builder, watcher, s, app).await,
                (Stream::Unix(s), None) => serve_io(&builder, watcher, s, app).await,
                (Stream::Tcp(s), Some(a)) => match tls_handshake(&a, s).await {
                    Some(s) => serve_io(&builder, watcher, s, app).await,
                    None => Ok(()),
                },
                (Stream::Unix(s), Some(a)) => match tls_handshake(&a, s).await {
                    Some(s) => serve_io(&builder, watcher, s, app).await,
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

fn connection_builder(max_header_bytes: usize) -> auto::Builder<TokioExecutor> {
    let limit = if max_header_bytes == 0 {
        DEFAULT_MAX_HEADER_BYTES
    } else {
        max_header_bytes
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper answers 431 when a request head does not fit in the read buffer; it needs at least
    // 8 KiB to work at all.
    builder
        .http1()
        .timer(TokioTimer::new())
        .max_buf_size(limit.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limit).unwrap_or(u32::MAX));
    builder
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
