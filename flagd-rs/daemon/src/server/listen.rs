//! Accepting connections for every port: TCP or unix-socket listeners, TLS with a bounded
//! handshake, and the one connection type ([`Conn`]) the serving loop speaks HTTP over.
//!
//! Also the protocol sniff of a port that speaks both HTTP/1.1 and HTTP/2: the first bytes of a
//! connection tell an HTTP/2 client (the connection preface) from an HTTP/1.1 one, read under
//! the port's header deadline so that a client that connects and says nothing is dropped.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection preface every HTTP/2 client starts with (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A bound listener: TCP, or a unix socket (`--socket-path`, `--sync-socket-path`).
#[derive(Debug)]
pub enum Listener {
    /// A TCP listener.
    Tcp(tokio::net::TcpListener),
    /// A unix domain socket listener.
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// The next connection.
    pub async fn accept(&self) -> io::Result<Conn> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                // Small gRPC responses and stream messages should not wait for Nagle's algorithm.
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
            Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
        }
    }
}

/// An accepted connection: TCP or unix socket, in the clear or under TLS.
#[derive(Debug)]
pub enum Conn {
    /// Plain TCP.
    Tcp(TcpStream),
    /// A plain unix socket.
    Unix(UnixStream),
    /// TLS over TCP.
    TlsTcp(Box<TlsStream<TcpStream>>),
    /// TLS over a unix socket.
    TlsUnix(Box<TlsStream<UnixStream>>),
}

impl Conn {
    /// Runs the TLS handshake over this connection, bounded by a timeout. `None` when the
    /// handshake fails or takes too long (the connection is then dropped).
    pub async fn tls(self, acceptor: &TlsAcceptor) -> Option<Conn> {
        let handshake = async {
            match self {
                Conn::Tcp(s) => acceptor.accept(s).await.map(|s| Conn::TlsTcp(Box::new(s))),
                Conn::Unix(s) => acceptor.accept(s).await.map(|s| Conn::TlsUnix(Box::new(s))),
                secured => Ok(secured),
            }
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(conn)) => Some(conn),
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
}

/// Delegates one `AsyncRead`/`AsyncWrite` method to whichever stream a [`Conn`] holds.
macro_rules! each_stream {
    ($conn:expr, $s:ident => $call:expr) => {
        match $conn {
            Conn::Tcp($s) => $call,
            Conn::Unix($s) => $call,
            Conn::TlsTcp($s) => $call,
            Conn::TlsUnix($s) => $call,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each_stream!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The protocol a client opened a connection with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (anything that does not start with the HTTP/2 preface).
    Http1,
    /// HTTP/2 with prior knowledge (h2c) or negotiated by ALPN.
    Http2,
}

/// Reads the first bytes of `conn` until they match the HTTP/2 preface or cannot, within
/// `deadline` when one is given. The bytes read are handed back in front of the connection.
/// An error when the client closes or stays silent past the deadline.
pub async fn sniff(
    mut conn: Conn,
    deadline: Option<Duration>,
) -> io::Result<(Protocol, Prefixed<Conn>)> {
    let read = async {
        let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
        let protocol = loop {
            if buf.len() == H2_PREFACE.len() {
                break Protocol::Http2;
            }
            let mut chunk = [0u8; 24];
            let wanted = H2_PREFACE.len() - buf.len();
            let n = conn.read(&mut chunk[..wanted]).await?;
            let Some(read) = chunk.get(..n).filter(|r| !r.is_empty()) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection before a request",
                ));
            };
            let start = buf.len();
            buf.extend_from_slice(read);
            if H2_PREFACE.get(start..buf.len()) != Some(read) {
                break Protocol::Http1;
            }
        };
        Ok::<_, io::Error>((protocol, buf.freeze()))
    };
    let (protocol, prefix) = match deadline {
        Some(d) => tokio::time::timeout(d, read).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "no request head within the header read timeout",
            )
        })??,
        None => read.await?,
    };
    Ok((protocol, Prefixed::new(prefix, conn)))
}

/// A connection with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    /// `inner`, whose next reads return `prefix` first.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        Self { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.has_remaining() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
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
    use tokio::io::AsyncWriteExt as _;

    async fn pair() -> (TcpStream, Conn) {
        let listener = Listener::Tcp(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        let Listener::Tcp(l) = &listener else {
            unreachable!()
        };
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let conn = listener.accept().await.unwrap();
        (client, conn)
    }

    #[tokio::test]
    async fn sniffs_http2_and_http1_and_hands_the_bytes_back() {
        let (mut client, conn) = pair().await;
        client.write_all(H2_PREFACE).await.unwrap();
        client.write_all(b"rest").await.unwrap();
        let (protocol, mut io) = sniff(conn, None).await.unwrap();
        assert_eq!(protocol, Protocol::Http2);
        let mut read = [0u8; 28];
        io.read_exact(&mut read).await.unwrap();
        assert_eq!(&read[..24], H2_PREFACE);
        assert_eq!(&read[24..], b"rest");

        let (mut client, conn) = pair().await;
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let (protocol, mut io) = sniff(conn, None).await.unwrap();
        assert_eq!(protocol, Protocol::Http1);
        let mut read = [0u8; 16];
        io.read_exact(&mut read).await.unwrap();
        assert_eq!(&read, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_silent_or_half_speaking_client_times_out() {
        let (mut client, conn) = pair().await;
        // The start of the preface, then nothing: still undecided at the deadline.
        client.write_all(b"PRI * HT").await.unwrap();
        let err = sniff(conn, Some(Duration::from_millis(50)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let (client, conn) = pair().await;
        drop(client);
        let err = sniff(conn, Some(Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
