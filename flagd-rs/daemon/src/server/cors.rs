//! The one CORS policy of every browser-facing port (evaluation 8013 and OFREP 8016), as flagd
//! configures it with `--cors-origin`: the listed origins (none or `*` = any), where an origin may
//! hold one `*` standing for any run of characters (`https://*.example.com`), compared without
//! regard to case; the usual methods; any request header (so `Flagd-Selector`, `If-None-Match`
//! and the protocol headers pass a preflight); and the protocol's response headers exposed,
//! `ETag` included so a cross-origin OFREP web provider can read it.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::Either;
use http::{HeaderName, HeaderValue, Method, Request, header};
use tower::util::Oneshot;
use tower::{Layer, Service, ServiceExt as _};
use tower_http::cors::{AllowHeaders, AllowOrigin, Cors, CorsLayer};

/// Response headers browsers may read: flagd's list, plus `ETag` for OFREP's bulk answers.
const EXPOSED_HEADERS: [&str; 12] = [
    "accept",
    "accept-encoding",
    "accept-post",
    "connect-accept-encoding",
    "connect-content-encoding",
    "content-encoding",
    "etag",
    "grpc-accept-encoding",
    "grpc-encoding",
    "grpc-message",
    "grpc-status",
    "grpc-status-details-bin",
];

/// The CORS layer for the configured `origins`.
pub fn layer(origins: &[String]) -> BrowserCorsLayer {
    let allow_origin = if origins.is_empty() || origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let patterns: Arc<[String]> = origins.iter().map(|o| o.to_ascii_lowercase()).collect();
        AllowOrigin::predicate(move |origin: &HeaderValue, _| {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            patterns.iter().any(|p| origin_matches(p, &origin))
        })
    };
    BrowserCorsLayer {
        cors: CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([
                Method::HEAD,
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static)),
    }
}

/// Whether `origin` (lower case) matches a configured origin (lower case), which may contain one
/// `*` standing for any run of characters.
fn origin_matches(pattern: &str, origin: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == origin,
        Some((prefix, suffix)) => {
            origin.len() >= prefix.len() + suffix.len()
                && origin.starts_with(prefix)
                && origin.ends_with(suffix)
        }
    }
}

/// Applies `tower_http`'s CORS handling only to requests that carry an `Origin` header.
///
/// Browsers send `Origin` with every cross-origin request and preflight; other clients (SDKs,
/// sidecars, chained daemons) do not, and the CORS headers would be dead weight on each of
/// their responses. Building those headers is a large share of a small request's cost, so
/// such requests skip the CORS service entirely; flagd's CORS library leaves them alone too.
#[derive(Debug, Clone)]
pub struct BrowserCorsLayer {
    cors: CorsLayer,
}

impl<S: Clone> Layer<S> for BrowserCorsLayer {
    type Service = BrowserCors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BrowserCors {
            cors: Arc::new(self.cors.layer(inner.clone())),
            inner,
        }
    }
}

/// The service of [`BrowserCorsLayer`].
#[derive(Debug)]
pub struct BrowserCors<S> {
    inner: S,
    /// Shared, because routers clone their services for every request and a CORS service is
    /// costly to clone; only requests with an `Origin` take a copy.
    cors: Arc<Cors<S>>,
}

impl<S: Clone> Clone for BrowserCors<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            cors: self.cors.clone(),
        }
    }
}

impl<S, B, R> Service<Request<B>> for BrowserCors<S>
where
    S: Service<Request<B>, Response = http::Response<R>> + Clone,
    R: Default,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Either<S::Future, Oneshot<Cors<S>, Request<B>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.headers().contains_key(header::ORIGIN) {
            Either::Right(Cors::clone(&self.cors).oneshot(request))
        } else {
            Either::Left(self.inner.call(request))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_by_one_wildcard() {
        assert!(origin_matches(
            "https://app.example.com",
            "https://app.example.com"
        ));
        assert!(!origin_matches(
            "https://app.example.com",
            "https://app.example.com.evil"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.example.com"
        ));
        assert!(origin_matches(
            "https://*.example.com",
            "https://a.b.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "http://a.example.com"
        ));
        assert!(!origin_matches(
            "https://*.example.com",
            "https://a.example.com.evil.net"
        ));
    }
}
