//! The HTTP metrics of every port that serves requests, recorded by one layer under flagd's
//! names (see `metrics.rs`): the time to the response head, the size of the body as sent, and
//! the requests in flight until their body is sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use http_body::{Body as _, Frame, SizeHint};
use tokio::time::Instant;

use crate::metrics::{ActiveRequest, Metrics};

/// Names the route of a request path for the metrics: a route template or a procedure name,
/// never the path itself (or clients could create series at will).
pub type RouteOf = fn(&str) -> &'static str;

/// Records each request (route, method, status) in the metrics. A plain layer rather than a
/// `from_fn` middleware, which would clone and box the inner service and box a future for every
/// request.
#[derive(Debug, Clone)]
pub struct RecordLayer {
    metrics: Arc<Metrics>,
    route_of: RouteOf,
}

impl RecordLayer {
    /// A layer recording into `metrics`, naming routes with `route_of`.
    pub fn new(metrics: Arc<Metrics>, route_of: RouteOf) -> Self {
        RecordLayer { metrics, route_of }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            metrics: self.metrics.clone(),
            route_of: self.route_of,
        }
    }
}

/// The service of [`RecordLayer`].
#[derive(Debug, Clone)]
pub struct Record<S> {
    inner: S,
    metrics: Arc<Metrics>,
    route_of: RouteOf,
}

impl<S, B> tower::Service<http::Request<B>> for Record<S>
where
    S: tower::Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let method = request.method().clone();
        let route = (self.route_of)(request.uri().path());
        let active = self.metrics.http_active(route, method.as_str());
        Recorded {
            inner: self.inner.call(request),
            done: Some(Done {
                metrics: self.metrics.clone(),
                route,
                method,
                started,
                _active: active,
            }),
        }
    }
}

/// What a request's metrics need once it is answered; holding it keeps the request in flight.
struct Done {
    metrics: Arc<Metrics>,
    route: &'static str,
    method: Method,
    started: Instant,
    _active: ActiveRequest,
}

pin_project_lite::pin_project! {
    /// The response future of [`Record`]: records the request once the response head is ready.
    pub struct Recorded<F> {
        #[pin]
        inner: F,
        done: Option<Done>,
    }
}

impl<F, E> std::future::Future for Recorded<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some(done) = this.done.take() else {
            return Poll::Ready(Ok(response));
        };
        let status = response.status().as_u16();
        let elapsed: Duration = done.started.elapsed();
        done.metrics
            .http_request(done.route, done.method.as_str(), status, elapsed);
        // A body in memory is sent at once; a streamed one is counted as it goes.
        Poll::Ready(Ok(match response.body().size_hint().exact() {
            Some(bytes) => {
                done.metrics
                    .http_response_size(done.route, done.method.as_str(), status, bytes);
                response
            }
            None => response.map(|body| {
                Body::new(Counted {
                    inner: body,
                    bytes: 0,
                    status,
                    done: Some(done),
                })
            }),
        }))
    }
}

/// A streamed response body that records its size, and ends the request's time in flight, when
/// it ends or is dropped.
struct Counted {
    inner: Body,
    bytes: u64,
    status: u16,
    done: Option<Done>,
}

impl Counted {
    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            done.metrics.http_response_size(
                done.route,
                done.method.as_str(),
                self.status,
                self.bytes,
            );
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    self.bytes += data.len() as u64;
                }
            }
            Some(Err(_)) | None => self.finish(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    fn route(path: &str) -> &'static str {
        if path == "/known" { "/known" } else { "other" }
    }

    fn count(text: &str, prefix: &str, needles: &[&str]) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    }

    #[tokio::test]
    async fn records_in_memory_and_streamed_bodies() {
        let metrics = Arc::new(Metrics::new());
        let svc = RecordLayer::new(metrics.clone(), route).layer(tower::service_fn(
            |req: http::Request<Body>| async move {
                let body = if req.uri().path() == "/known" {
                    Body::from("12345")
                } else {
                    let chunks = vec![Ok::<_, std::io::Error>("ab"), Ok("cde")];
                    Body::from_stream(futures::stream::iter(chunks))
                };
                Ok::<_, std::convert::Infallible>(Response::new(body))
            },
        ));
        let request = |path: &str| http::Request::post(path).body(Body::empty()).unwrap();

        let response = svc.clone().oneshot(request("/known")).await.unwrap();
        let text = metrics.encode();
        assert_eq!(
            count(
                &text,
                "http_server_response_body_size_bytes_sum{",
                &["/known"]
            )
            .as_deref(),
            Some("5.0")
        );
        assert_eq!(
            count(&text, "http_server_active_requests{", &["/known"]).as_deref(),
            Some("0")
        );
        drop(response);

        let response = svc.oneshot(request("/raw/path")).await.unwrap();
        let gauge = || {
            count(
                &metrics.encode(),
                "http_server_active_requests{",
                &["other"],
            )
        };
        assert_eq!(
            gauge().as_deref(),
            Some("1"),
            "in flight until the body is sent"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"abcde");
        let text = metrics.encode();
        assert_eq!(
            count(
                &text,
                "http_server_response_body_size_bytes_sum{",
                &["other"]
            )
            .as_deref(),
            Some("5.0")
        );
        assert_eq!(gauge().as_deref(), Some("0"));
        assert!(
            count(
                &text,
                "http_server_request_duration_seconds_count{",
                &["http_route=\"other\"", "http_request_method=\"POST\""]
            )
            .is_some_and(|n| n == "1")
        );
    }
}
