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
pub mod services;

use axum::Router;
use axum::extract::Request;
use tonic::service::Routes;
use tower::{Layer as _, ServiceExt as _};

use crate::proto::flagd::evaluation::{v1, v2};
use crate::proto::schema::v1 as schema;
use crate::server::http::{GrpcKind, grpc_kind};
use crate::server::record::RecordLayer;
use crate::server::{body, cors};
use crate::state::AppState;

pub use error::{Code, EvalError};

/// The three evaluation services as tonic routes, each service wrapped by `$wrap` (a closure,
/// expanded once per service type).
macro_rules! evaluation_routes {
    ($state:expr, $wrap:expr) => {{
        Routes::new(($wrap)(
            v1::service_server::ServiceServer::new(services::V1::new($state.clone()))
                .max_decoding_message_size(usize::MAX),
        ))
        .add_service(($wrap)(
            v2::service_server::ServiceServer::new(services::V2::new($state.clone()))
                .max_decoding_message_size(usize::MAX),
        ))
        .add_service(($wrap)(
            schema::service_server::ServiceServer::new(services::SchemaV1::new($state.clone()))
                .max_decoding_message_size(usize::MAX),
        ))
        .into_axum_router()
    }};
}

/// The complete application of the evaluation port: gRPC (+ gRPC-Web) and Connect for the
/// three services, with CORS and request metrics.
pub fn router(state: AppState) -> Router {
    let limit = body::effective_limit(state.limits.max_body_bytes);
    // The body limit (`limit_grpc_body`) bounds gRPC messages; tonic's own per-message limit
    // would answer OUT_OF_RANGE instead of flagd's RESOURCE_EXHAUSTED.
    let grpc = evaluation_routes!(state, |s| s);
    let web = tonic_web::GrpcWebLayer::new();
    let grpc_web = evaluation_routes!(state, |s| web.layer(s));
    let http = Router::new()
        .fallback(connect::handle)
        .with_state(connect::Connect::new(state.clone()));
    // Plain gRPC over HTTP/2 (nearly all traffic) goes straight to tonic; gRPC-Web, and gRPC
    // over HTTP/1.1 (which only gRPC-Web can carry), through the gRPC-Web translation; all
    // other requests to the Connect handler. The layers wrap the dispatch directly rather than
    // the router, where each one would box and clone its inner service for every request.
    let dispatch = tower::service_fn(move |request: Request| match grpc_kind(request.headers()) {
        Some(GrpcKind::Plain) if request.version() == http::Version::HTTP_2 => {
            grpc.clone().oneshot(limit_grpc_body(limit, request))
        }
        Some(_) => grpc_web.clone().oneshot(limit_grpc_body(limit, request)),
        None => http.clone().oneshot(request),
    });
    let service = tower::ServiceBuilder::new()
        .layer(cors::layer(&state.cors_origins))
        .layer(RecordLayer::new(state.metrics.clone(), |path| {
            connect::procedure(path).unwrap_or("other")
        }))
        .service(dispatch);
    Router::new().fallback_service(service)
}

/// Bounds a gRPC request body to `limit` bytes; past it the body fails with a
/// RESOURCE_EXHAUSTED status, which tonic reports to the client as is.
fn limit_grpc_body(limit: usize, request: Request) -> Request {
    request.map(|body| {
        axum::body::Body::new(LimitedBody {
            inner: body,
            remaining: limit,
            limit,
        })
    })
}

/// A request body that errors with a gRPC status once more than `limit` bytes arrived.
struct LimitedBody {
    inner: axum::body::Body,
    remaining: usize,
    limit: usize,
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
            match self.remaining.checked_sub(data.len()) {
                Some(rest) => self.remaining = rest,
                None => {
                    let error = EvalError::TooLarge(self.limit);
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
