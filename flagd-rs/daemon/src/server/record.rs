//! The HTTP metrics of every port that serves requests, recorded under flagd's names (see
//! `metrics.rs`): the time to the response head, the size of the body as sent, and the requests
//! in flight until their body is sent.
//!
//! A port names its routes once ([`Recorder::new`]); the series of each route are kept per
//! method ([`RouteSeries`]), so recording a request finds them by index, with no lookup. A body
//! in memory is measured when the response head is ready; a streamed one (gRPC, event streams)
//! is counted as it is sent, by a wrapper generic over the body, so that the only box is the one
//! that turns it into the port's response body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::Method;
use http_body::{Frame, SizeHint};
use tokio::time::Instant;

use crate::metrics::{ActiveRequest, Metrics, RouteSeries};

/// The methods whose series are kept per route. Requests with another method (rare: an
/// extension method, refused by every route) are recorded through the metrics' cached lookups.
static METHODS: [Method; 7] = [
    Method::POST,
    Method::GET,
    Method::OPTIONS,
    Method::HEAD,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
];

/// Names the route of a request path for the metrics, as an index into the port's routes: a
/// route template or a procedure name, never the path itself (or clients could create series at
/// will). An index past the routes is recorded as `other`.
pub type RouteOf = fn(&str) -> usize;

/// The HTTP metrics of one port: the metrics registry and the series of each of its routes.
#[derive(Debug)]
pub struct Recorder {
    metrics: Arc<Metrics>,
    routes: Box<[&'static str]>,
    /// `routes.len() * METHODS.len()` series, route by route.
    series: Box<[RouteSeries]>,
}

impl Recorder {
    /// The recorder of a port whose requests fall on `routes`.
    pub fn new(metrics: Arc<Metrics>, routes: &[&'static str]) -> Arc<Recorder> {
        let series = routes
            .iter()
            .flat_map(|&route| {
                METHODS
                    .iter()
                    .map(move |m| RouteSeries::new(route, m.as_str()))
            })
            .collect();
        Arc::new(Recorder {
            metrics,
            routes: routes.into(),
            series,
        })
    }

    /// Starts recording a request with `method` on route number `route`: it counts as in flight
    /// until the returned value, or the response body it is handed to, is dropped.
    pub fn start(self: &Arc<Self>, route: usize, method: &Method) -> Started {
        let started = Instant::now();
        let series = METHODS
            .iter()
            .position(|m| m == method)
            .filter(|_| route < self.routes.len())
            .map(|m| route * METHODS.len() + m);
        let at = match series.and_then(|i| self.series.get(i).map(|s| (i, s))) {
            Some((i, series)) => {
                series.enter(&self.metrics);
                At::Series(i)
            }
            None => {
                let route = self.routes.get(route).copied().unwrap_or("other");
                let active = self.metrics.http_active(route, method.as_str());
                At::Lookup {
                    route,
                    method: method.clone(),
                    _active: active,
                }
            }
        };
        Started {
            recorder: self.clone(),
            at,
            started,
        }
    }
}

/// Where a request's series are.
#[derive(Debug)]
enum At {
    /// Kept series, by index.
    Series(usize),
    /// Found by the metrics' cached lookups; the guard keeps the request in flight.
    Lookup {
        route: &'static str,
        method: Method,
        _active: ActiveRequest,
    },
}

/// A request being recorded; holding it keeps the request in flight.
#[derive(Debug)]
pub struct Started {
    recorder: Arc<Recorder>,
    at: At,
    started: Instant,
}

impl Started {
    /// Records the request as answered with `status` once `future` yields its response, and the
    /// size of the body as it is sent.
    pub fn wrap<F>(self, future: F) -> Recorded<F> {
        Recorded {
            inner: future,
            started: Some(self),
        }
    }

    fn request(&self, status: u16) {
        let elapsed: Duration = self.started.elapsed();
        let metrics = &*self.recorder.metrics;
        match &self.at {
            At::Series(i) => {
                if let Some(series) = self.recorder.series.get(*i) {
                    series.request(metrics, status, elapsed);
                }
            }
            At::Lookup { route, method, .. } => {
                metrics.http_request(route, method.as_str(), status, elapsed);
            }
        }
    }

    fn response_size(&self, status: u16, bytes: u64) {
        let metrics = &*self.recorder.metrics;
        match &self.at {
            At::Series(i) => {
                if let Some(series) = self.recorder.series.get(*i) {
                    series.response_size(metrics, status, bytes);
                }
            }
            At::Lookup { route, method, .. } => {
                metrics.http_response_size(route, method.as_str(), status, bytes);
            }
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let At::Series(i) = self.at
            && let Some(series) = self.recorder.series.get(i)
        {
            series.leave();
        }
    }
}

/// Records each request of the wrapped service (route, method, status). A plain layer rather
/// than a `from_fn` middleware, which would clone and box the inner service and box a future for
/// every request.
#[derive(Debug, Clone)]
pub struct RecordLayer {
    recorder: Arc<Recorder>,
    route_of: RouteOf,
}

impl RecordLayer {
    /// A layer recording into `metrics` requests on `routes`, naming each with `route_of`.
    pub fn new(metrics: Arc<Metrics>, routes: &[&'static str], route_of: RouteOf) -> Self {
        RecordLayer {
            recorder: Recorder::new(metrics, routes),
            route_of,
        }
    }
}

impl<S> tower::Layer<S> for RecordLayer {
    type Service = Record<S>;

    fn layer(&self, inner: S) -> Record<S> {
        Record {
            inner,
            recorder: self.recorder.clone(),
            route_of: self.route_of,
        }
    }
}

/// The service of [`RecordLayer`].
#[derive(Debug, Clone)]
pub struct Record<S> {
    inner: S,
    recorder: Arc<Recorder>,
    route_of: RouteOf,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Record<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Recorded<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let route = (self.route_of)(request.uri().path());
        let started = self.recorder.start(route, request.method());
        started.wrap(self.inner.call(request))
    }
}

pin_project_lite::pin_project! {
    /// A response future under recording: records the request once the response head is ready
    /// and hands the body over as the port's response body (boxed only when it is not one
    /// already).
    pub struct Recorded<F> {
        #[pin]
        inner: F,
        started: Option<Started>,
    }
}

impl<F, B, E> std::future::Future for Recorded<F>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match ready!(this.inner.poll(cx)) {
            Ok(response) => response,
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some(started) = this.started.take() else {
            return Poll::Ready(Ok(response.map(Body::new)));
        };
        let status = response.status().as_u16();
        started.request(status);
        // A body in memory is sent at once; a streamed one is counted as it goes.
        Poll::Ready(Ok(
            match http_body::Body::size_hint(response.body()).exact() {
                Some(bytes) => {
                    started.response_size(status, bytes);
                    drop(started);
                    response.map(Body::new)
                }
                None => response.map(|body| {
                    Body::new(Counted {
                        inner: body,
                        bytes: 0,
                        status,
                        started: Some(started),
                    })
                }),
            },
        ))
    }
}

pin_project_lite::pin_project! {
    /// A streamed response body that records its size, and ends the request's time in flight,
    /// when it ends or is dropped.
    struct Counted<B> {
        #[pin]
        inner: B,
        bytes: u64,
        status: u16,
        started: Option<Started>,
    }

    impl<B> PinnedDrop for Counted<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            finish(this.started, *this.status, *this.bytes);
        }
    }
}

/// Records the size of a streamed body once.
fn finish(started: &mut Option<Started>, status: u16, bytes: u64) {
    if let Some(started) = started.take() {
        started.response_size(status, bytes);
    }
}

impl<B> http_body::Body for Counted<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(data) = f.data_ref() {
                    *this.bytes += data.len() as u64;
                }
            }
            Some(Err(_)) | None => finish(this.started, *this.status, *this.bytes),
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    const ROUTES: [&str; 2] = ["/known", "other"];

    fn route(path: &str) -> usize {
        usize::from(path != "/known")
    }

    fn count(text: &str, prefix: &str, needles: &[&str]) -> Option<String> {
        text.lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    }

    /// Answers `/known` with 5 bytes in memory, `/missing` with a 404, and anything else with
    /// 5 bytes in two chunks.
    fn service(
        metrics: &Arc<Metrics>,
    ) -> impl tower::Service<
        http::Request<Body>,
        Response = Response,
        Error = std::convert::Infallible,
    > + Clone {
        RecordLayer::new(metrics.clone(), &ROUTES, route).layer(tower::service_fn(
            |req: http::Request<Body>| async move {
                let response = match req.uri().path() {
                    "/known" => Response::new(Body::from("12345")),
                    "/missing" => {
                        let mut r = Response::new(Body::from("gone"));
                        *r.status_mut() = http::StatusCode::NOT_FOUND;
                        r
                    }
                    _ => {
                        let chunks = vec![Ok::<_, std::io::Error>("ab"), Ok("cde")];
                        Response::new(Body::from_stream(futures::stream::iter(chunks)))
                    }
                };
                Ok::<_, std::convert::Infallible>(response)
            },
        ))
    }

    fn request(method: Method, path: &str) -> http::Request<Body> {
        http::Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap()
    }

    #[tokio::test]
    async fn records_in_memory_and_streamed_bodies() {
        let metrics = Arc::new(Metrics::new());
        let svc = service(&metrics);
        assert!(
            !metrics.encode().contains("http_server_active_requests{"),
            "no series before the first request"
        );

        let response = svc
            .clone()
            .oneshot(request(Method::POST, "/known"))
            .await
            .unwrap();
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

        let response = svc
            .oneshot(request(Method::POST, "/raw/path"))
            .await
            .unwrap();
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

    #[tokio::test]
    async fn other_statuses_and_methods() {
        let metrics = Arc::new(Metrics::new());
        let svc = service(&metrics);
        for _ in 0..2 {
            let r = svc
                .clone()
                .oneshot(request(Method::GET, "/missing"))
                .await
                .unwrap();
            assert_eq!(r.status(), http::StatusCode::NOT_FOUND);
        }
        let purge = Method::from_bytes(b"PURGE").unwrap();
        let r = svc.clone().oneshot(request(purge, "/known")).await.unwrap();
        assert_eq!(r.status(), http::StatusCode::OK);
        let text = metrics.encode();
        let needles = [
            "http_route=\"other\"",
            "http_request_method=\"GET\"",
            "http_response_status_code=\"404\"",
        ];
        assert_eq!(
            count(
                &text,
                "http_server_request_duration_seconds_count{",
                &needles
            )
            .as_deref(),
            Some("2")
        );
        assert_eq!(
            count(&text, "http_server_response_body_size_bytes_sum{", &needles).as_deref(),
            Some("8.0")
        );
        let purged = [
            "http_route=\"/known\"",
            "http_request_method=\"PURGE\"",
            "http_response_status_code=\"200\"",
        ];
        assert_eq!(
            count(
                &text,
                "http_server_request_duration_seconds_count{",
                &purged
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            count(
                &text,
                "http_server_active_requests{",
                &["http_request_method=\"PURGE\""]
            )
            .as_deref(),
            Some("0")
        );
    }

    #[tokio::test]
    async fn a_dropped_request_is_no_longer_in_flight() {
        let metrics = Arc::new(Metrics::new());
        let recorder = Recorder::new(metrics.clone(), &ROUTES);
        let gauge = || {
            count(
                &metrics.encode(),
                "http_server_active_requests{",
                &["/known"],
            )
        };
        let started = recorder.start(0, &Method::POST);
        let pending = started.wrap(std::future::pending::<Result<Response, ()>>());
        assert_eq!(gauge().as_deref(), Some("1"));
        drop(pending);
        assert_eq!(gauge().as_deref(), Some("0"));
        assert!(
            !metrics
                .encode()
                .contains("http_server_request_duration_seconds_count{"),
            "an unanswered request has no duration"
        );
    }
}
