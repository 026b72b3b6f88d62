//! gzip for OFREP answers, as flagd's compression middleware does it: a JSON answer of at least
//! [`MIN_SIZE`] bytes is gzipped when the request accepts gzip; smaller ones stay as they are,
//! since the framing would cost more than it saves (a single-flag answer is a few hundred
//! bytes; a bulk answer of a dozen flags already compresses several times over). Every answer
//! says `Vary: Accept-Encoding`, so caches keep the two encodings apart. The handlers, which
//! hold the body before it becomes a response, build their JSON answers with [`json_answer`];
//! the port marks every answer with [`vary`].
//!
//! The compressed body is another representation, so it must not share the strong validator of
//! the plain one (RFC 9110 §8.8.1): its `ETag` gets the suffix [`ETAG_SUFFIX`] inside the
//! quotes (`"<hex>-gzip"`). `conditional.rs` strips it again when the request still accepts
//! gzip.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::wire::json_response;
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

/// A JSON answer with `status` and `body` to a request that accepts gzip (`accepts`) or not:
/// gzipped when it [`compresses`]. `etag` is the entity tag of the plain body; a gzipped answer
/// carries it [`suffixed`].
pub fn json_answer(
    status: StatusCode,
    body: String,
    etag: Option<&str>,
    accepts: bool,
) -> Response {
    let gzipped = compresses(accepts, body.len());
    let mut response = if gzipped {
        let mut response = json_response(status, compress::gzip(body.as_bytes()));
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        json_response(status, body)
    };
    if let Some(etag) = etag {
        let tag = if gzipped {
            HeaderValue::from_str(&suffixed(etag))
        } else {
            HeaderValue::from_str(etag)
        };
        if let Ok(tag) = tag {
            response.headers_mut().insert(header::ETAG, tag);
        }
    }
    response
}

/// Marks an answer of the port as varying with `Accept-Encoding`, as every one does.
pub fn vary(mut response: Response) -> Response {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
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

    #[tokio::test]
    async fn answers_are_gzipped_when_large_and_accepted() {
        use http_body_util::BodyExt as _;
        let large = format!("{{\"flags\":[{}]}}", "0,".repeat(MIN_SIZE) + "0");
        let read = |response: Response| async move {
            let (parts, body) = response.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        };

        let (parts, body) = read(json_answer(
            StatusCode::OK,
            large.clone(),
            Some("\"t\""),
            true,
        ))
        .await;
        assert_eq!(parts.headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(parts.headers[header::ETAG], "\"t-gzip\"");
        let mut back = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut back)
            .unwrap();
        assert_eq!(back, large);

        let (parts, body) = read(json_answer(
            StatusCode::OK,
            large.clone(),
            Some("\"t\""),
            false,
        ))
        .await;
        assert!(!parts.headers.contains_key(header::CONTENT_ENCODING));
        assert_eq!(parts.headers[header::ETAG], "\"t\"");
        assert_eq!(&body[..], large.as_bytes());

        let small = r#"{"errorCode":"GENERAL"}"#.to_owned();
        let (parts, body) = read(json_answer(
            StatusCode::BAD_REQUEST,
            small.clone(),
            None,
            true,
        ))
        .await;
        assert_eq!(parts.status, StatusCode::BAD_REQUEST);
        assert!(!parts.headers.contains_key(header::CONTENT_ENCODING));
        assert!(!parts.headers.contains_key(header::ETAG));
        assert_eq!(&body[..], small.as_bytes());

        let varied = vary(vary(Response::new(axum::body::Body::empty())));
        assert_eq!(varied.headers().get_all(header::VARY).iter().count(), 2);
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
