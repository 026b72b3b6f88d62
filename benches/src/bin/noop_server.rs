//! The baseline of the daemon load benchmarks: a server on the daemon's own serving stack (tonic
//! and axum on one port, dispatched by content type, hyper underneath) that answers
//! `flagd.evaluation.v1.Service/ResolveBoolean` with a constant response over gRPC and Connect
//! JSON, and an OFREP-shaped POST with a constant body. The daemon's throughput is quoted as a
//! ratio of this server's, measured in the same run.
//!
//! Usage: `noop_server <eval addr> <ofrep addr>`, for example
//! `noop_server 127.0.0.1:18113 127.0.0.1:18116`. Stops on SIGTERM or Ctrl-C.
//!
//! Requests are decoded (protobuf by tonic, JSON with the same generated serde code the daemon
//! uses) and responses encoded, so that the baseline does the codec work of a real server and
//! the difference to the daemon is evaluation, metrics, CORS and context handling.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flagd_rs::proto::flagd::evaluation::v1::service_server::{Service, ServiceServer};
use flagd_rs::proto::flagd::evaluation::v1::{
    EventStreamRequest, EventStreamResponse, ResolveAllRequest, ResolveAllResponse,
    ResolveBooleanRequest, ResolveBooleanResponse, ResolveFloatRequest, ResolveFloatResponse,
    ResolveIntRequest, ResolveIntResponse, ResolveObjectRequest, ResolveObjectResponse,
    ResolveStringRequest, ResolveStringResponse,
};
use flagd_rs::server::http::{Listener, grpc_or_http, serve};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::{Request, Status};

// The daemon's allocator, so that the baseline runs on the same stack.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What every ResolveBoolean answers: the shape of a static flag's resolution.
fn constant_boolean() -> ResolveBooleanResponse {
    ResolveBooleanResponse {
        value: true,
        reason: "STATIC".to_owned(),
        variant: "on".to_owned(),
        metadata: Some(pbjson_types::Struct::default()),
    }
}

/// The gRPC side: ResolveBoolean answers, everything else is unimplemented.
struct Noop;

#[tonic::async_trait]
impl Service for Noop {
    async fn resolve_all(
        &self,
        _: Request<ResolveAllRequest>,
    ) -> Result<tonic::Response<ResolveAllResponse>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }

    async fn resolve_boolean(
        &self,
        _: Request<ResolveBooleanRequest>,
    ) -> Result<tonic::Response<ResolveBooleanResponse>, Status> {
        Ok(tonic::Response::new(constant_boolean()))
    }

    async fn resolve_string(
        &self,
        _: Request<ResolveStringRequest>,
    ) -> Result<tonic::Response<ResolveStringResponse>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }

    async fn resolve_float(
        &self,
        _: Request<ResolveFloatRequest>,
    ) -> Result<tonic::Response<ResolveFloatResponse>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }

    async fn resolve_int(
        &self,
        _: Request<ResolveIntRequest>,
    ) -> Result<tonic::Response<ResolveIntResponse>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }

    async fn resolve_object(
        &self,
        _: Request<ResolveObjectRequest>,
    ) -> Result<tonic::Response<ResolveObjectResponse>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }

    type EventStreamStream = futures::stream::Empty<Result<EventStreamResponse, Status>>;

    async fn event_stream(
        &self,
        _: Request<EventStreamRequest>,
    ) -> Result<tonic::Response<Self::EventStreamStream>, Status> {
        Err(Status::unimplemented("not part of the baseline"))
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Connect unary ResolveBoolean with a JSON body.
async fn connect_boolean(body: Bytes) -> Response {
    if serde_json::from_slice::<ResolveBooleanRequest>(&body).is_err() {
        return json_response(
            StatusCode::BAD_REQUEST,
            br#"{"code":"invalid_argument"}"#.to_vec(),
        );
    }
    match serde_json::to_vec(&constant_boolean()) {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(_) => json_response(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// An OFREP single-flag evaluation: reads the context, answers a constant resolution.
async fn ofrep_flag(Path(key): Path<String>, body: Bytes) -> Response {
    if serde_json::from_slice::<Value>(&body).is_err() {
        return json_response(StatusCode::BAD_REQUEST, Vec::new());
    }
    let answer = json!({
        "key": key,
        "value": true,
        "reason": "STATIC",
        "variant": "on",
        "metadata": {},
    });
    match serde_json::to_vec(&answer) {
        Ok(bytes) => json_response(StatusCode::OK, bytes),
        Err(_) => json_response(StatusCode::INTERNAL_SERVER_ERROR, Vec::new()),
    }
}

/// An OFREP bulk evaluation: reads the context, answers an empty flag list.
async fn ofrep_bulk(body: Bytes) -> Response {
    if serde_json::from_slice::<Value>(&body).is_err() {
        return json_response(StatusCode::BAD_REQUEST, Vec::new());
    }
    json_response(StatusCode::OK, br#"{"flags":[],"metadata":{}}"#.to_vec())
}

fn eval_app() -> Router {
    let grpc = Routes::new(ServiceServer::new(Noop)).into_axum_router();
    let http = Router::new().route(
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        post(connect_boolean),
    );
    grpc_or_http(grpc, http)
}

fn ofrep_app() -> Router {
    Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(ofrep_flag))
        .route("/ofrep/v1/evaluate/flags", post(ofrep_bulk))
}

async fn bind(addr: &str) -> Result<Listener, String> {
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("invalid address {addr}: {e}"))?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map(Listener::Tcp)
        .map_err(|e| format!("binding {addr}: {e}"))
}

async fn run(eval: &str, ofrep: &str) -> Result<(), String> {
    let eval = bind(eval).await?;
    let ofrep = bind(ofrep).await?;
    let (stop, stopped) = watch::channel(false);
    let eval = tokio::spawn(serve(eval, eval_app(), None, 0, stopped.clone()));
    let ofrep = tokio::spawn(serve(ofrep, ofrep_app(), None, 0, stopped));
    flagd_rs::run::shutdown_signal().await;
    let _ = stop.send(true);
    for server in [eval, ofrep] {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("server failed: {e}")),
            Err(e) => return Err(format!("server task failed: {e}")),
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [eval, ofrep] = args.as_slice() else {
        eprintln!("usage: noop_server <eval addr> <ofrep addr>");
        return ExitCode::from(2);
    };
    match run(eval, ofrep).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noop_server: {e}");
            ExitCode::FAILURE
        }
    }
}
