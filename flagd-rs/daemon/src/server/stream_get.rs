//! Long-lived streaming `GET`s (OFREP's event streams) on a lean HTTP/1.1 connection.
//!
//! hyper keeps two 8 KiB buffers and its connection state for as long as a connection lives,
//! about 17 KB of resident memory per HTTP/1.1 connection; for a server holding ten thousand
//! event streams open, that is most of its memory. A request whose head arrived whole, is a
//! `GET` of a configured path prefix over HTTP/1.1, carries no body and asks for no upgrade is
//! answered here instead: its head is parsed from the bytes peeked at accept, the request goes
//! through the port's own router (routing, CORS, the handler and its error answers are the same
//! as for any other request), and the response is written by hand, with `Connection: close` and
//! a chunked body, frame by frame as the body yields them. A connection served this way holds
//! only the socket, the response body and this task's small state. Every other request, and any
//! head this code is unsure of, goes to hyper untouched (nothing has been read from the socket
//! when that is decided).

use std::io;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Version};
use http_body_util::BodyExt as _;
use hyper_util::server::graceful::Watcher;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tower::ServiceExt as _;

/// The most bytes of a request head peeked at accept (and the largest head served here).
pub const PEEK_BYTES: usize = 4096;

/// The most header fields a head served here may have.
const MAX_FIELDS: usize = 64;

/// A request head that may be served here: the request (with an empty body) and the head's
/// length in bytes. `None` when `peeked` does not hold a complete head, or it is anything but a
/// bodiless HTTP/1.1 `GET` of a path under `prefix` of at most `max_head` bytes.
pub fn parse(peeked: &[u8], prefix: &str, max_head: usize) -> Option<(Request<Body>, usize)> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut head = httparse::Request::new(&mut fields);
    let httparse::Status::Complete(length) = head.parse(peeked).ok()? else {
        return None;
    };
    if length > max_head || head.method? != "GET" || head.version? != 1 {
        return None;
    }
    let path = head.path?;
    let rest = path.strip_prefix(prefix)?;
    if !(rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')) {
        return None;
    }
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11)
        .body(Body::empty())
        .ok()?;
    for field in head.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        // Anything that announces a body, an upgrade or an expectation is hyper's to handle.
        if [
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
            http::header::UPGRADE,
            http::header::EXPECT,
        ]
        .contains(&name)
        {
            return None;
        }
        let value = HeaderValue::from_bytes(field.value).ok()?;
        request.headers_mut().append(name, value);
    }
    Some((request, length))
}

/// Serves `request`, whose head is the first `head_length` bytes waiting on `stream`, through
/// `app`, then closes the connection. The watcher keeps the server's graceful shutdown waiting
/// for this connection until it ends.
pub async fn serve(
    mut stream: TcpStream,
    head_length: usize,
    request: Request<Body>,
    app: impl super::http::App,
    _watcher: Watcher,
) -> io::Result<()> {
    // The head was only peeked: consume it now (it is all there).
    let mut consumed = 0;
    while consumed < head_length {
        let mut sink = [0u8; 128];
        let want = (head_length - consumed).min(sink.len());
        let n = tokio::io::AsyncReadExt::read(&mut stream, &mut sink[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        consumed += n;
    }
    // Boxed: the router's future is large and done with once the response has begun.
    let response = match Box::pin(app.oneshot(request)).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let (parts, mut body) = response.into_parts();
    let head = response_head(&parts);
    drop(parts);
    stream.write_all(&head).await?;
    drop(head);
    let (reader, mut writer) = stream.split();
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        writer.write_all(&chunk(&data)).await?;
                    }
                }
                // The body ended (or failed: end the stream as cleanly as possible).
                Some(Err(_)) | None => break,
            },
            // The client went away (or sent something, which nothing here expects).
            ready = reader.readable() => {
                ready?;
                let mut probe = [0u8; 64];
                match reader.try_read(&mut probe) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    writer.write_all(b"0\r\n\r\n").await?;
    writer.shutdown().await
}

/// `HTTP/1.1 <status>`, the response's headers, `transfer-encoding: chunked` and
/// `connection: close`.
fn response_head(parts: &http::response::Parts) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .status
            .canonical_reason()
            .unwrap_or("Unknown")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
            || name == http::header::CONNECTION
        {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    out
}

/// One chunk of a chunked body: `<size in hex>\r\n<data>\r\n`.
fn chunk(data: &Bytes) -> Vec<u8> {
    let size = format!("{:x}\r\n", data.len());
    let mut out = Vec::with_capacity(size.len() + data.len() + 2);
    out.extend_from_slice(size.as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The head [`serve`] writes for `response`.
#[cfg(test)]
fn written(response: http::Response<Body>) -> Vec<u8> {
    let (parts, _) = response.into_parts();
    response_head(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "/ofrep/v1/sse";

    fn head(text: &str) -> Option<(Request<Body>, usize)> {
        parse(text.as_bytes(), PREFIX, PEEK_BYTES)
    }

    #[test]
    fn only_plain_gets_of_the_prefix_take_the_lean_path() {
        let (request, length) = head(
            "GET /ofrep/v1/sse/flagSetId=a?ctx=1 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\nextra",
        )
        .unwrap();
        assert_eq!(length, 75);
        assert_eq!(request.uri().path(), "/ofrep/v1/sse/flagSetId=a");
        assert_eq!(request.uri().query(), Some("ctx=1"));
        assert_eq!(request.headers()["last-event-id"], "7");
        assert!(head("GET /ofrep/v1/sse HTTP/1.1\r\n\r\n").is_some());
        assert!(head("GET /ofrep/v1/sse?selector=x HTTP/1.1\r\n\r\n").is_some());
        for other in [
            // Incomplete, other methods, versions, paths, bodies, upgrades.
            "GET /ofrep/v1/sse HTTP/1.1\r\nHost: x\r\n",
            "POST /ofrep/v1/sse HTTP/1.1\r\n\r\n",
            "HEAD /ofrep/v1/sse HTTP/1.1\r\n\r\n",
            "GET /ofrep/v1/sse HTTP/1.0\r\n\r\n",
            "GET /ofrep/v1/ssex HTTP/1.1\r\n\r\n",
            "GET /ofrep/v1/evaluate/flags HTTP/1.1\r\n\r\n",
            "GET /ofrep/v1/sse HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            "GET /ofrep/v1/sse HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /ofrep/v1/sse HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
            "GET /ofrep/v1/sse HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ] {
            assert!(head(other).is_none(), "{other:?}");
        }
        // A head larger than the limit is left to hyper, which refuses it.
        let big = format!(
            "GET /ofrep/v1/sse HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(200)
        );
        assert!(parse(big.as_bytes(), PREFIX, 100).is_none());
    }

    #[test]
    fn responses_are_written_chunked_and_closing() {
        let response = http::Response::builder()
            .status(400)
            .header("content-type", "application/json")
            .header("content-length", "2")
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(
            String::from_utf8(written(response)).unwrap(),
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
             transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
        assert_eq!(
            chunk(&Bytes::from_static(b": keep-alive\n\n")),
            b"e\r\n: keep-alive\n\n\r\n"
        );
    }
}
