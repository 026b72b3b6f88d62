//! Client deadlines: `grpc-timeout` on gRPC and gRPC-Web, `Connect-Timeout-Ms` on Connect.
//!
//! A unary call must be answered within its deadline, body upload included, or it fails with
//! `DEADLINE_EXCEEDED` ([`GrpcDeadline`] bounds the gRPC response future; the Connect handler
//! bounds its own work). A stream ends with `DEADLINE_EXCEEDED` when its deadline passes (the
//! stream handlers take the deadline from the request headers). A header that is not a valid
//! timeout is refused as the servers flagd runs refuse it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use tokio::time::Sleep;

/// The gRPC timeout header.
pub static GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// The Connect timeout header.
pub static CONNECT_TIMEOUT: http::HeaderName = http::HeaderName::from_static("connect-timeout-ms");

/// The status message of a call whose client deadline passed.
pub const DEADLINE_MESSAGE: &str = "deadline exceeded";

/// The status message of a stream ended by the server's `--stream-deadline` (flagd's words).
pub const SERVER_DEADLINE_MESSAGE: &str = "stream closed due to server-side timeout";

/// The `grpc-timeout` of a request: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
/// `Err` with the reason when the header is there but not valid.
pub fn grpc_timeout(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let Some(value) = headers.get(&GRPC_TIMEOUT) else {
        return Ok(None);
    };
    let invalid = || {
        format!(
            "invalid grpc-timeout {:?}",
            String::from_utf8_lossy(value.as_bytes())
        )
    };
    let bytes = value.as_bytes();
    let Some((&unit, digits)) = bytes.split_last() else {
        return Err(invalid());
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(invalid());
    }
    let n = digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let duration = match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return Err(invalid()),
    };
    Ok(Some(duration))
}

/// The `Connect-Timeout-Ms` of a request: at most 10 digits of milliseconds. `Err` with
/// connect-go's reason when the header is there but not valid.
pub fn connect_timeout(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let Some(value) = headers.get(&CONNECT_TIMEOUT) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    if text.len() > 10 {
        return Err(format!("parse timeout: {text:?} has >10 digits"));
    }
    match text.parse::<u64>() {
        Ok(ms) if !text.starts_with('+') => Ok(Some(Duration::from_millis(ms))),
        _ => Err(format!("parse timeout: invalid value {text:?}")),
    }
}

/// The earlier of two optional deadlines, and whether it is the second one.
pub fn earliest(first: Option<Duration>, second: Option<Duration>) -> Option<(Duration, bool)> {
    match (first, second) {
        (Some(a), Some(b)) if b < a => Some((b, true)),
        (Some(a), _) => Some((a, false)),
        (None, Some(b)) => Some((b, true)),
        (None, None) => None,
    }
}

pin_project_lite::pin_project! {
    /// The response future of a gRPC call under the client's `grpc-timeout`: past the deadline
    /// before the response head, the call is answered `DEADLINE_EXCEEDED`; an invalid header
    /// is answered at once. Without the header it is the inner future as is. `RB` is the
    /// response body type of the call (the answers made here have an empty one).
    pub struct GrpcDeadline<F, RB = Body> {
        #[pin]
        inner: Option<F>,
        #[pin]
        sleep: Option<Sleep>,
        early: Option<Response<RB>>,
        web: bool,
    }
}

impl<F, RB: Default> GrpcDeadline<F, RB> {
    /// Calls `call` with `request` under the request's `grpc-timeout`. A header that is not a
    /// valid timeout is answered with `invalid` (connect-go refuses it as INVALID_ARGUMENT,
    /// grpc-go as INTERNAL) without calling. `web`: the request is gRPC-Web, and so are the
    /// answers made here.
    pub fn call<B>(
        request: http::Request<B>,
        web: bool,
        invalid: tonic::Code,
        call: impl FnOnce(http::Request<B>) -> F,
    ) -> Self {
        match grpc_timeout(request.headers()) {
            Ok(timeout) => Self {
                inner: Some(call(request)),
                sleep: timeout.map(tokio::time::sleep),
                early: None,
                web,
            },
            Err(reason) => Self {
                inner: None,
                sleep: None,
                early: Some(status_response(tonic::Status::new(invalid, reason), web)),
                web,
            },
        }
    }

    /// `inner` without a deadline.
    pub fn none(inner: F) -> Self {
        Self {
            inner: Some(inner),
            sleep: None,
            early: None,
            web: false,
        }
    }
}

/// A trailers-only gRPC (or gRPC-Web) response carrying `status`.
fn status_response<B: Default>(status: tonic::Status, web: bool) -> Response<B> {
    let mut response = status.into_http::<B>();
    if web {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc-web+proto"),
        );
    }
    response
}

impl<F, RB, E> Future for GrpcDeadline<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: Default,
{
    type Output = Result<Response<RB>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.early.take() {
            return Poll::Ready(Ok(response));
        }
        if let Some(inner) = this.inner.as_pin_mut()
            && let Poll::Ready(output) = inner.poll(cx)
        {
            return Poll::Ready(output);
        }
        match this.sleep.as_pin_mut().map(|sleep| sleep.poll(cx)) {
            Some(Poll::Ready(())) => {
                let status = tonic::Status::deadline_exceeded(DEADLINE_MESSAGE);
                Poll::Ready(Ok(status_response(status, *this.web)))
            }
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &http::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn grpc_timeouts() {
        let parse = |v: &str| grpc_timeout(&with(&GRPC_TIMEOUT, v));
        assert_eq!(grpc_timeout(&HeaderMap::new()), Ok(None));
        assert_eq!(parse("1H"), Ok(Some(Duration::from_secs(3600))));
        assert_eq!(parse("2M"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(parse("3S"), Ok(Some(Duration::from_secs(3))));
        assert_eq!(parse("500m"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(parse("7u"), Ok(Some(Duration::from_micros(7))));
        assert_eq!(
            parse("99999999n"),
            Ok(Some(Duration::from_nanos(99_999_999)))
        );
        for bad in ["", "m", "123456789m", "10x", "1.5S", "-1S", "S10"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn connect_timeouts() {
        let parse = |v: &str| connect_timeout(&with(&CONNECT_TIMEOUT, v));
        assert_eq!(connect_timeout(&HeaderMap::new()), Ok(None));
        assert_eq!(parse("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(parse("1500"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(
            parse("9999999999"),
            Ok(Some(Duration::from_millis(9_999_999_999)))
        );
        assert!(parse("12345678901").unwrap_err().contains(">10 digits"));
        for bad in ["", "-5", "+5", "1s", "abc", "1.5"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn earliest_deadline() {
        let s = Duration::from_secs;
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(s(2)), None), Some((s(2), false)));
        assert_eq!(earliest(None, Some(s(2))), Some((s(2), true)));
        assert_eq!(earliest(Some(s(1)), Some(s(2))), Some((s(1), false)));
        assert_eq!(earliest(Some(s(3)), Some(s(2))), Some((s(2), true)));
    }
}
