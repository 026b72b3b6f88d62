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

use axum::Router;
use axum::extract::Request;
use tonic::service::Routes;
use tower::{Layer as _, ServiceExt as _};

use crate::proto::flagd::evaluation::{v1, v2};
use crate::proto::schema::v1 as schema;
use crate::server::deadline::GrpcDeadline;
use crate::server::http::{GrpcKind, grpc_kind};
use crate::server::record::RecordLayer;
use crate::server::{body, cors};
use crate::state::AppState;

pub use error::{Code, RequestError};

/// The three evaluation services as tonic routes, each service wrapped by `$wrap` (a closure,
/// expanded once per service type). Messages may come gzip-compressed (`grpc-encoding`) and
/// are sent compressed to clients that accept it (`grpc-accept-encoding`); `$limit` bounds a
/// message after decompression.
macro_rules! evaluation_routes {
    ($state:expr, $limit:expr, $wrap:expr) => {{
        use tonic::codec::CompressionEncoding::Gzip;
        Routes::new(($wrap)(
            v1::service_server::ServiceServer::new(services::V1::new($state.clone()))
                .accept_compressed(Gzip)
                .send_compressed(Gzip)
                .max_decoding_message_size($limit),
        ))
        .add_service(($wrap)(
            v2::service_server::ServiceServer::new(services::V2::new($state.clone()))
                .accept_compressed(Gzip)
                .send_compressed(Gzip)
                .max_decoding_message_size($limit),
        ))
        .add_service(($wrap)(
            schema::service_server::ServiceServer::new(services::SchemaV1::new($state.clone()))
                .accept_compressed(Gzip)
                .send_compressed(Gzip)
                .max_decoding_message_size($limit),
        ))
        .into_axum_router()
    }};
}

/// The complete application of the evaluation port: gRPC (+ gRPC-Web) and Connect for the
/// three services, with CORS and request metrics.
pub fn router(state: AppState) -> Router {
    let limit = body::effective_limit(state.limits.max_body_bytes);
    // The body limit (`limit_grpc_body`) refuses a message whose declared length is over the
    // limit with flagd's RESOURCE_EXHAUSTED before tonic would answer OUT_OF_RANGE; tonic's
    // limit then only bounds what a compressed message expands to (RESOURCE_EXHAUSTED too).
    let grpc = evaluation_routes!(state, limit, |s| s);
    let web = tonic_web::GrpcWebLayer::new();
    let grpc_web = evaluation_routes!(state, limit, |s| web.layer(s));
    let http = Router::new()
        .fallback(connect::handle)
        .with_state(connect::Connect::new(state.clone()));
    // Plain gRPC over HTTP/2 (nearly all traffic) goes straight to tonic; gRPC-Web, and gRPC
    // over HTTP/1.1 (which only gRPC-Web can carry), through the gRPC-Web translation; all
    // other requests to the Connect handler. The layers wrap the dispatch directly rather than
    // the router, where each one would box and clone its inner service for every request.
    // A gRPC call's `grpc-timeout` bounds its response future; an invalid one is refused as
    // connect-go refuses it. Connect reads its own timeout header in the handler.
    let dispatch = tower::service_fn(move |request: Request| match grpc_kind(request.headers()) {
        Some(GrpcKind::Plain) if request.version() == http::Version::HTTP_2 => {
            GrpcDeadline::call(request, false, tonic::Code::InvalidArgument, |r| {
                grpc.clone().oneshot(limit_grpc_body(limit, r))
            })
        }
        Some(kind) => {
            let web = kind == GrpcKind::Web;
            GrpcDeadline::call(request, web, tonic::Code::InvalidArgument, |r| {
                grpc_web.clone().oneshot(limit_grpc_body(limit, r))
            })
        }
        None => GrpcDeadline::none(http.clone().oneshot(request)),
    });
    let service = tower::ServiceBuilder::new()
        .layer(cors::layer(&state.cors_origins))
        .layer(RecordLayer::new(state.metrics.clone(), |path| {
            rpc::lookup(path).map_or("other", |rpc| rpc.path)
        }))
        .service(dispatch);
    Router::new().fallback_service(service)
}

/// Bounds a gRPC request body to `limit` bytes; past it the body fails with a
/// RESOURCE_EXHAUSTED status, which tonic reports to the client as is.
fn limit_grpc_body(limit: usize, request: Request) -> Request {
    // gRPC-Web's text form is base64: its first bytes are no length prefix.
    let text = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|ct| ct.as_bytes().get(..21))
        .is_some_and(|ct| ct.eq_ignore_ascii_case(b"application/grpc-web-"));
    request.map(|body| {
        axum::body::Body::new(LimitedBody {
            inner: body,
            remaining: limit,
            limit,
            prefix: [0; 5],
            prefix_len: if text { 5 } else { 0 },
        })
    })
}

/// A request body that errors with a gRPC status once more than `limit` bytes arrived, or as
/// soon as the first message's length prefix declares more than `limit` bytes.
struct LimitedBody {
    inner: axum::body::Body,
    remaining: usize,
    limit: usize,
    /// The first message's 5-byte prefix (flags and length), as far as it arrived.
    prefix: [u8; 5],
    prefix_len: usize,
}

impl LimitedBody {
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

impl http_body::Body for LimitedBody {
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
                return Poll::Ready(Some(Err(tonic::Status::from_error(Box::new(e)))));
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
