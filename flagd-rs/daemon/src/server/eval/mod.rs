//! The evaluation port (8013): `flagd.evaluation.v1`, `flagd.evaluation.v2` and the deprecated
//! `schema.v1` services over gRPC, gRPC-Web and Connect (JSON and binary) on one listener.
//!
//! Requests with a gRPC content type (`application/grpc*`, gRPC-Web included) go to tonic; all
//! others to the Connect handler. Both call the same service methods in [`services`], which
//! evaluate on the current store snapshot without locking.

pub mod connect;
pub mod error;
pub mod events;
pub mod resolve;
pub mod rpc;
pub mod services;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Either};
use tonic::codec::CompressionEncoding::Gzip;
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::{Layer as _, Service as _};

use crate::proto::flagd::evaluation::{v1, v2};
use crate::proto::schema::v1 as schema;
use crate::server::deadline::GrpcDeadline;
use crate::server::http::{App, GrpcKind, grpc_kind};
use crate::server::record::Recorder;
use crate::server::{body, cors};
use crate::state::AppState;

use self::resolve::Api;

pub use error::{Code, RequestError};

/// A gRPC call's response future, as tonic's generated services return it.
type GrpcFuture = BoxFuture<'static, Result<http::Response<tonic::body::Body>, Infallible>>;

/// Builds one evaluation service: messages may come gzip-compressed (`grpc-encoding`) and are
/// sent compressed to clients that accept it (`grpc-accept-encoding`); `$limit` bounds a message
/// after decompression.
macro_rules! service {
    ($server:ty, $service:expr, $limit:expr) => {
        <$server>::new($service)
            .accept_compressed(Gzip)
            .send_compressed(Gzip)
            .max_decoding_message_size($limit)
    };
}

/// A service behind the gRPC-Web translation, its request bodies bounded after it (as
/// [`Limited`] bounds them).
type Web<S> = GrpcWebService<Limited<S>>;

/// The three evaluation services over gRPC, as tonic generates them, and behind the gRPC-Web
/// translation.
#[derive(Clone)]
struct Grpc {
    v1: v1::service_server::ServiceServer<services::V1>,
    v2: v2::service_server::ServiceServer<services::V2>,
    schema: schema::service_server::ServiceServer<services::SchemaV1>,
    v1_web: Web<v1::service_server::ServiceServer<services::V1>>,
    v2_web: Web<v2::service_server::ServiceServer<services::V2>>,
    schema_web: Web<schema::service_server::ServiceServer<services::SchemaV1>>,
    /// The request body limit.
    limit: usize,
}

impl Grpc {
    fn new(state: &AppState, limit: usize) -> Self {
        let v1 = service!(
            v1::service_server::ServiceServer<services::V1>,
            services::V1::new(state.clone()),
            limit
        );
        let v2 = service!(
            v2::service_server::ServiceServer<services::V2>,
            services::V2::new(state.clone()),
            limit
        );
        let schema = service!(
            schema::service_server::ServiceServer<services::SchemaV1>,
            services::SchemaV1::new(state.clone()),
            limit
        );
        let web = GrpcWebLayer::new();
        Grpc {
            v1_web: web.layer(Limited::new(v1.clone(), limit)),
            v2_web: web.layer(Limited::new(v2.clone(), limit)),
            schema_web: web.layer(Limited::new(schema.clone(), limit)),
            v1,
            v2,
            schema,
            limit,
        }
    }

    /// Calls the service `api` names, plain or through the gRPC-Web translation (`web`), its
    /// request body bounded ([`limit_grpc_body`]). A path of no service is answered
    /// UNIMPLEMENTED, as tonic's routes answer it.
    fn call(&self, api: Option<Api>, web: bool, request: Request) -> GrpcFuture {
        let limit = self.limit;
        match (api, web) {
            (Some(Api::V1), false) => self.v1.clone().call(limit_grpc_body(limit, request)),
            (Some(Api::V2), false) => self.v2.clone().call(limit_grpc_body(limit, request)),
            (Some(Api::Schema), false) => self.schema.clone().call(limit_grpc_body(limit, request)),
            // gRPC-Web is rare enough for its future to be boxed once more.
            (Some(Api::V1), true) => Box::pin(self.v1_web.clone().call(request)),
            (Some(Api::V2), true) => Box::pin(self.v2_web.clone().call(request)),
            (Some(Api::Schema), true) => Box::pin(self.schema_web.clone().call(request)),
            (None, _) => {
                let response = tonic::Status::unimplemented("").into_http();
                Box::pin(std::future::ready(Ok(response)))
            }
        }
    }
}

/// Everything the dispatch of the evaluation port needs, shared by every request.
struct Dispatch {
    grpc: Grpc,
    connect: connect::Connect,
    recorder: Arc<Recorder>,
}

/// The metrics route of every RPC, in the order of [`rpc::RPCS`], then `other`.
fn metric_routes() -> Vec<&'static str> {
    rpc::RPCS
        .iter()
        .map(|rpc| rpc.path)
        .chain(["other"])
        .collect()
}

/// [`app`] as a router.
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(app(state))
}

/// The complete application of the evaluation port: gRPC (+ gRPC-Web) and Connect for the
/// three services, with CORS and request metrics.
///
/// Requests are dispatched here rather than by routers: the RPC table names the request's
/// metrics route, and the service prefix of the path its gRPC service, so a gRPC call reaches
/// tonic's generated service with its body unboxed, and its streamed response is boxed once,
/// where the metrics count its bytes.
pub fn app(state: AppState) -> impl App {
    let limit = body::effective_limit(state.limits.max_body_bytes);
    // The body limit (`limit_grpc_body`) refuses a message whose declared length is over the
    // limit with flagd's RESOURCE_EXHAUSTED before tonic would answer OUT_OF_RANGE; tonic's
    // limit then only bounds what a compressed message expands to (RESOURCE_EXHAUSTED too).
    let dispatch = Arc::new(Dispatch {
        grpc: Grpc::new(&state, limit),
        connect: connect::Connect::new(state.clone()),
        recorder: Recorder::new(state.metrics.clone(), &metric_routes()),
    });
    let service = tower::service_fn(move |request: Request| {
        let d = &*dispatch;
        let path = request.uri().path();
        let route = rpc::index(path).unwrap_or(rpc::RPCS.len());
        let started = d.recorder.start(route, request.method());
        // Plain gRPC over HTTP/2 (nearly all traffic) goes straight to tonic; gRPC-Web, and
        // gRPC over HTTP/1.1 (which only gRPC-Web can carry), through the gRPC-Web
        // translation; all other requests to the Connect handler. A gRPC call's
        // `grpc-timeout` bounds its response future; an invalid one is refused as connect-go
        // refuses it. Connect reads its own timeout header in the handler.
        match grpc_kind(request.headers()) {
            Some(kind) => {
                let web = kind == GrpcKind::Web || request.version() != http::Version::HTTP_2;
                let api = rpc::service_of(path);
                Either::Left(started.wrap(GrpcDeadline::call(
                    request,
                    kind == GrpcKind::Web,
                    tonic::Code::InvalidArgument,
                    |r| d.grpc.call(api, web, r),
                )))
            }
            None => {
                // The Connect handler's future is several times the size of a gRPC call's;
                // boxed, it does not make every gRPC stream's future (moved as the stream is
                // spawned and polled) as large as itself.
                let connect = Box::pin(connect::handle(State(d.connect.clone()), request));
                Either::Right(started.wrap(connect.map(Ok::<_, Infallible>)))
            }
        }
    });
    tower::ServiceBuilder::new()
        .layer(cors::layer(&state.cors_origins))
        .service(service)
}

/// Bounds a gRPC request body to `limit` bytes; past it the body fails with a
/// RESOURCE_EXHAUSTED status, which tonic reports to the client as is.
fn limit_grpc_body<B>(limit: usize, request: http::Request<B>) -> http::Request<LimitedBody<B>> {
    request.map(|body| LimitedBody {
        inner: body,
        remaining: limit,
        limit,
        prefix: [0; 5],
        prefix_len: 0,
    })
}

/// A gRPC service whose request bodies are bounded ([`limit_grpc_body`]) as they reach it. Behind
/// the gRPC-Web translation it sees the translated body (the text form decoded from base64),
/// so the first message's length prefix is checked in both forms, and the translation hands
/// the RESOURCE_EXHAUSTED status back in its trailers as tonic reports it.
#[derive(Clone)]
struct Limited<S> {
    inner: S,
    limit: usize,
}

impl<S> Limited<S> {
    fn new(inner: S, limit: usize) -> Self {
        Limited { inner, limit }
    }
}

impl<S, B> tower::Service<http::Request<B>> for Limited<S>
where
    S: tower::Service<http::Request<LimitedBody<B>>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.inner.call(limit_grpc_body(self.limit, request))
    }
}

/// A request body that errors with a gRPC status once more than `limit` bytes arrived, or as
/// soon as the first message's length prefix declares more than `limit` bytes.
struct LimitedBody<B> {
    inner: B,
    remaining: usize,
    limit: usize,
    /// The first message's 5-byte prefix (flags and length), as far as it arrived.
    prefix: [u8; 5],
    prefix_len: usize,
}

impl<B> LimitedBody<B> {
    /// Notes the start of the body; `true` once the first message declares too many bytes.
    fn declares_too_much(&mut self, data: &[u8]) -> bool {
        if self.prefix_len == self.prefix.len() {
            return false;
        }
        let n = (self.prefix.len() - self.prefix_len).min(data.len());
        self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
        self.prefix_len += n;
        if self.prefix_len < self.prefix.len() {
            return false;
        }
        let [_, a, b, c, d] = self.prefix;
        usize::try_from(u32::from_be_bytes([a, b, c, d])).is_ok_and(|len| len > self.limit)
    }
}

impl<B> http_body::Body for LimitedBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let frame = match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => {
                // A status the body already carries (the translation's) is kept as it is.
                return Poll::Ready(Some(Err(tonic::Status::from_error(e.into()))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = frame.data_ref() {
            let declared_too_much = self.declares_too_much(data);
            match self.remaining.checked_sub(data.len()) {
                Some(rest) if !declared_too_much => self.remaining = rest,
                _ => {
                    let error = RequestError::TooLarge(self.limit);
                    return Poll::Ready(Some(Err(error.into())));
                }
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
