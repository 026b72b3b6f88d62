//! gzip for OFREP answers, as flagd's compression middleware does it: a JSON answer of at least
//! [`MIN_SIZE`] bytes is gzipped when the request accepts gzip; smaller ones stay as they are,
//! since the framing would cost more than it saves (a single-flag answer is a few hundred
//! bytes; a bulk answer of a dozen flags already compresses several times over). Every answer
//! says `Vary: Accept-Encoding`, so caches keep the two encodings apart.
//!
//! The compressed body is another representation, so it must not share the strong validator of
//! the plain one (RFC 9110 §8.8.1): its `ETag` gets the suffix [`ETAG_SUFFIX`] inside the
//! quotes (`"<hex>-gzip"`). `conditional.rs` strips it again when the request still accepts
//! gzip.

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt as _;

use crate::server::compress;

/// The smallest body worth compressing, flagd's default.
pub const MIN_SIZE: usize = 1024;

/// What a gzipped answer's entity tag ends with, inside the quotes.
pub const ETAG_SUFFIX: &str = "-gzip";

/// Whether the request's `Accept-Encoding` accepts gzip.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    compress::accepts_gzip(headers.get_all(header::ACCEPT_ENCODING))
}

/// Whether an answer of `len` bytes to a request that accepts gzip (`accepts`) is gzipped.
pub fn compresses(accepts: bool, len: usize) -> bool {
    accepts && len >= MIN_SIZE
}

/// The entity tag of the gzipped representation of the body tagged `etag`.
pub fn suffixed(etag: &str) -> String {
    match etag.strip_suffix('"') {
        Some(open) => format!("{open}{ETAG_SUFFIX}\""),
        None => format!("{etag}{ETAG_SUFFIX}"),
    }
}

/// The middleware: gzips the JSON answers of requests that accept gzip (see the module
/// documentation) and marks every answer as varying with `Accept-Encoding`.
pub async fn negotiate(request: Request, next: Next) -> Response {
    let accepts = accepts_gzip(request.headers());
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    let size = response.body().size_hint().exact();
    let eligible = response.status() != StatusCode::NOT_MODIFIED
        && !response.headers().contains_key(header::CONTENT_ENCODING)
        && is_json(response.headers())
        && size.is_some_and(|n| compresses(accepts, usize::try_from(n).unwrap_or(usize::MAX)));
    if !eligible {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The body is in memory (its exact size is known), so collecting it does not wait.
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "reading an OFREP answer to compress it");
            let mut failed = Response::new(Body::empty());
            *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return failed;
        }
    };
    let compressed = compress::gzip(&bytes);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    if let Some(tag) = parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        && let Ok(tag) = HeaderValue::from_str(&suffixed(tag))
    {
        parts.headers.insert(header::ETAG, tag);
    }
    Response::from_parts(parts, Body::from(compressed))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn accept(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::ACCEPT_ENCODING, v.parse().unwrap());
        }
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_negotiation() {
        assert!(accept(&["gzip"]));
        assert!(accept(&["GZIP"]));
        assert!(accept(&["x-gzip"]));
        assert!(accept(&["br, gzip, deflate"]));
        assert!(accept(&["gzip;q=0.5"]));
        assert!(accept(&["deflate", "gzip"]));
        assert!(accept(&["*"]));
        assert!(accept(&["br;q=1, *;q=0.1"]));
        assert!(!accept(&[]));
        assert!(!accept(&["identity"]));
        assert!(!accept(&["br, deflate"]));
        assert!(!accept(&["gzip;q=0"]));
        assert!(!accept(&["gzip; q=0.0"]));
        assert!(!accept(&["*;q=0"]));
        assert!(!accept(&["gzip;q=0, *"]));
    }

    #[test]
    fn tags_and_sizes() {
        assert_eq!(suffixed("\"abc\""), "\"abc-gzip\"");
        assert_eq!(suffixed("abc"), "abc-gzip");
        assert!(!compresses(true, MIN_SIZE - 1));
        assert!(compresses(true, MIN_SIZE));
        assert!(!compresses(false, 1 << 20));
    }

    #[test]
    fn gzip_round_trip() {
        let text = "{\"flags\":[]}".repeat(200);
        let packed = compress::gzip(text.as_bytes());
        assert!(packed.len() < text.len() / 4);
        let mut back = String::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }
}
