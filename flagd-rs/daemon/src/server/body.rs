//! Reading a whole request body under the configured size limit (`--max-request-body`), for
//! every handler that needs the body at once (Connect and OFREP).

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The declared or actual length exceeds the limit, in bytes.
    #[error("the request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// The body broke off (the connection failed or was reset mid-body).
    #[error("reading the request body: {0}")]
    Broken(String),
}

/// The effective limit for a configured one: 0 means no limit.
pub fn effective_limit(configured: usize) -> usize {
    match configured {
        0 => usize::MAX,
        n => n,
    }
}

/// Reads the whole body, refusing more than `limit` bytes (0 = no limit). A `Content-Length`
/// above the limit is refused before a byte of the body is read.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let limit = effective_limit(limit);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Broken(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_length(n: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, n.parse().unwrap());
        headers
    }

    #[tokio::test]
    async fn reads_a_body_within_the_limit() {
        let bytes = read_limited(&HeaderMap::new(), Body::from("hello"), 5)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"hello");
        let bytes = read_limited(&HeaderMap::new(), Body::from("hello"), 0)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"hello");
    }

    #[tokio::test]
    async fn refuses_a_body_past_the_limit() {
        let err = read_limited(&HeaderMap::new(), Body::from("hello!"), 5)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge(5)), "{err:?}");
    }

    #[tokio::test]
    async fn refuses_a_declared_length_past_the_limit_before_reading() {
        let err = read_limited(&with_length("1000"), Body::from("x"), 10)
            .await
            .unwrap_err();
        assert!(matches!(err, BodyError::TooLarge(10)), "{err:?}");
        // A declared length within the limit is read as usual.
        let bytes = read_limited(&with_length("1"), Body::from("x"), 10)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"x");
    }

    #[tokio::test]
    async fn a_broken_body_is_an_error_of_its_own() {
        let stream = futures::stream::iter(vec![
            Ok::<_, std::io::Error>(Bytes::from_static(b"{")),
            Err(std::io::Error::other("connection reset")),
        ]);
        let err = read_limited(&HeaderMap::new(), Body::from_stream(stream), 100)
            .await
            .unwrap_err();
        assert!(
            matches!(err, BodyError::Broken(ref m) if m.contains("connection reset")),
            "{err:?}"
        );
    }
}
