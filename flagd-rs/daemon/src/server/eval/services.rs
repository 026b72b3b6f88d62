//! The three evaluation services (`flagd.evaluation.v1`, `flagd.evaluation.v2`, deprecated
//! `schema.v1`): one method per RPC taking request headers and the decoded message, shared by
//! the gRPC trait implementations here and by the Connect handlers.

use std::pin::Pin;

use futures::{Stream, StreamExt as _};
use http::HeaderMap;
use serde_json::{Map, Value};

use super::error::RequestError;
use super::events::{self, EventMessage};
use super::resolve::{self, AnyValue, Api, Call};
use crate::context::map_to_struct;
use crate::proto::flagd::evaluation::{v1, v2};
use crate::proto::schema::v1 as schema;
use crate::server::deadline;
use crate::state::AppState;

/// A boxed stream of EventStream messages, as the gRPC traits want it.
pub type EventStream<M> = Pin<Box<dyn Stream<Item = Result<M, tonic::Status>> + Send + 'static>>;

/// Starts an EventStream for `api` with the selector of `headers`.
fn event_stream<M: EventMessage>(
    state: &AppState,
    api: Api,
    headers: &HeaderMap,
) -> Result<impl Stream<Item = Result<M, RequestError>> + Send + 'static, RequestError> {
    let selector = resolve::selector(headers)?;
    // An invalid `grpc-timeout` was refused before the call; a Connect stream passes none here.
    let client_deadline = deadline::grpc_timeout(headers).unwrap_or_default();
    Ok(
        events::subscribe(state, selector, api.stream_deadline(state), client_deadline)
            .map(|e| e.map(M::from_event)),
    )
}

fn owned(s: Option<&str>) -> String {
    s.unwrap_or_default().to_owned()
}

fn object(value: Option<&Map<String, Value>>) -> Option<pbjson_types::Struct> {
    Some(value.map(map_to_struct).unwrap_or_default())
}

/// One typed Resolve method; `$value` and `$variant` turn the borrowed outcome into the
/// response's field types.
macro_rules! typed_method {
    ($name:ident, $req:ty, $resp:ty, $t:ty, $value:expr, $variant:expr) => {
        /// Resolves one flag of this type.
        pub fn $name(&self, headers: &HeaderMap, request: $req) -> Result<$resp, RequestError> {
            let call = Call::new(&self.state, Self::API, headers, request.context)?;
            let snapshot = self.state.store.snapshot();
            let r = resolve::typed::<$t>(&self.state, &snapshot, &call, &request.flag_key)?;
            Ok(<$resp>::from((
                $value(r.value),
                r.reason.to_owned(),
                $variant(r.variant),
                Some(r.metadata),
            )))
        }
    };
}

/// Builds responses from `(value, reason, variant, metadata)` tuples, so the macro above stays
/// independent of each message's field types.
macro_rules! from_parts {
    ($($resp:ty: $value:ty, $variant:ty;)*) => {$(
        impl From<($value, String, $variant, Option<pbjson_types::Struct>)> for $resp {
            fn from((value, reason, variant, metadata): ($value, String, $variant, Option<pbjson_types::Struct>)) -> Self {
                Self { value, reason, variant, metadata }
            }
        }
    )*};
}

from_parts! {
    v1::ResolveBooleanResponse: bool, String;
    v1::ResolveStringResponse: String, String;
    v1::ResolveFloatResponse: f64, String;
    v1::ResolveIntResponse: i64, String;
    v1::ResolveObjectResponse: Option<pbjson_types::Struct>, String;
    schema::ResolveBooleanResponse: bool, String;
    schema::ResolveStringResponse: String, String;
    schema::ResolveFloatResponse: f64, String;
    schema::ResolveIntResponse: i64, String;
    schema::ResolveObjectResponse: Option<pbjson_types::Struct>, String;
    v2::ResolveBooleanResponse: Option<bool>, Option<String>;
    v2::ResolveStringResponse: Option<String>, Option<String>;
    v2::ResolveFloatResponse: Option<f64>, Option<String>;
    v2::ResolveIntResponse: Option<i64>, Option<String>;
    v2::ResolveObjectResponse: Option<pbjson_types::Struct>, Option<String>;
}

/// The five typed methods of an API whose responses always carry a value and a variant
/// (zero value and `""` when none was chosen).
macro_rules! typed_methods_with_zero_values {
    ($m:ident) => {
        typed_method!(resolve_boolean, $m::ResolveBooleanRequest, $m::ResolveBooleanResponse, bool, |v: Option<bool>| v.unwrap_or_default(), owned);
        typed_method!(resolve_string, $m::ResolveStringRequest, $m::ResolveStringResponse, &str, |v: Option<&str>| owned(v), owned);
        typed_method!(resolve_float, $m::ResolveFloatRequest, $m::ResolveFloatResponse, f64, |v: Option<f64>| v.unwrap_or_default(), owned);
        typed_method!(resolve_int, $m::ResolveIntRequest, $m::ResolveIntResponse, i64, |v: Option<i64>| v.unwrap_or_default(), owned);
        typed_method!(resolve_object, $m::ResolveObjectRequest, $m::ResolveObjectResponse, &Map<String, Value>, object, owned);
    };
}

/// `flagd.evaluation.v1.Service`.
#[derive(Debug, Clone)]
pub struct V1 {
    state: AppState,
}

impl V1 {
    const API: Api = Api::V1;

    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    typed_methods_with_zero_values!(v1);

    /// Resolves every selected flag that has a default variant.
    pub fn resolve_all(
        &self,
        headers: &HeaderMap,
        request: v1::ResolveAllRequest,
    ) -> Result<v1::ResolveAllResponse, RequestError> {
        let call = Call::new(&self.state, Self::API, headers, request.context)?;
        let snapshot = self.state.store.snapshot();
        let flags = resolve::all(&self.state, &snapshot, &call)
            .map(|f| {
                let flag = v1::AnyFlag {
                    reason: f.reason.to_owned(),
                    variant: f.variant.to_owned(),
                    value: Some(any_v1(f.value)),
                    metadata: Some(f.metadata),
                };
                (f.key.to_owned(), flag)
            })
            .collect();
        Ok(v1::ResolveAllResponse {
            flags,
            metadata: Some(map_to_struct(&call.selector.echo())),
        })
    }

    /// Starts an event stream.
    pub fn event_stream(
        &self,
        headers: &HeaderMap,
    ) -> Result<
        impl Stream<Item = Result<v1::EventStreamResponse, RequestError>> + Send + 'static,
        RequestError,
    > {
        event_stream(&self.state, Self::API, headers)
    }
}

fn any_v1(value: AnyValue<'_>) -> v1::any_flag::Value {
    match value {
        AnyValue::Bool(b) => v1::any_flag::Value::BoolValue(b),
        AnyValue::String(s) => v1::any_flag::Value::StringValue(s.to_owned()),
        AnyValue::Double(d) => v1::any_flag::Value::DoubleValue(d),
        AnyValue::Object(m) => v1::any_flag::Value::ObjectValue(map_to_struct(m)),
    }
}

fn any_schema(value: AnyValue<'_>) -> schema::any_flag::Value {
    match value {
        AnyValue::Bool(b) => schema::any_flag::Value::BoolValue(b),
        AnyValue::String(s) => schema::any_flag::Value::StringValue(s.to_owned()),
        AnyValue::Double(d) => schema::any_flag::Value::DoubleValue(d),
        AnyValue::Object(m) => schema::any_flag::Value::ObjectValue(map_to_struct(m)),
    }
}

/// `flagd.evaluation.v2.Service`.
#[derive(Debug, Clone)]
pub struct V2 {
    state: AppState,
}

impl V2 {
    const API: Api = Api::V2;

    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    typed_method!(
        resolve_boolean,
        v2::ResolveBooleanRequest,
        v2::ResolveBooleanResponse,
        bool,
        |v| v,
        variant_v2
    );
    typed_method!(
        resolve_string,
        v2::ResolveStringRequest,
        v2::ResolveStringResponse,
        &str,
        |v: Option<&str>| v.map(str::to_owned),
        variant_v2
    );
    typed_method!(
        resolve_float,
        v2::ResolveFloatRequest,
        v2::ResolveFloatResponse,
        f64,
        |v| v,
        variant_v2
    );
    typed_method!(
        resolve_int,
        v2::ResolveIntRequest,
        v2::ResolveIntResponse,
        i64,
        |v| v,
        variant_v2
    );
    typed_method!(
        resolve_object,
        v2::ResolveObjectRequest,
        v2::ResolveObjectResponse,
        &Map<String, Value>,
        |v: Option<&Map<String, Value>>| v.map(map_to_struct),
        variant_v2
    );

    /// Starts an event stream.
    pub fn event_stream(
        &self,
        headers: &HeaderMap,
    ) -> Result<
        impl Stream<Item = Result<v2::EventStreamResponse, RequestError>> + Send + 'static,
        RequestError,
    > {
        event_stream(&self.state, Self::API, headers)
    }
}

fn variant_v2(variant: Option<&str>) -> Option<String> {
    variant.map(str::to_owned)
}

/// The deprecated `schema.v1.Service`.
#[derive(Debug, Clone)]
pub struct SchemaV1 {
    state: AppState,
}

impl SchemaV1 {
    const API: Api = Api::Schema;

    /// The service over `state`.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    typed_methods_with_zero_values!(schema);

    /// Resolves every selected flag that has a default variant.
    pub fn resolve_all(
        &self,
        headers: &HeaderMap,
        request: schema::ResolveAllRequest,
    ) -> Result<schema::ResolveAllResponse, RequestError> {
        let call = Call::new(&self.state, Self::API, headers, request.context)?;
        let snapshot = self.state.store.snapshot();
        let flags = resolve::all(&self.state, &snapshot, &call)
            .map(|f| {
                let flag = schema::AnyFlag {
                    reason: f.reason.to_owned(),
                    variant: f.variant.to_owned(),
                    value: Some(any_schema(f.value)),
                };
                (f.key.to_owned(), flag)
            })
            .collect();
        Ok(schema::ResolveAllResponse { flags })
    }

    /// Starts an event stream.
    pub fn event_stream(
        &self,
        headers: &HeaderMap,
    ) -> Result<
        impl Stream<Item = Result<schema::EventStreamResponse, RequestError>> + Send + 'static,
        RequestError,
    > {
        event_stream(&self.state, Self::API, headers)
    }
}

/// The gRPC trait implementation of API module `$m` for `$svc`, delegating every method to
/// the service's method of the same name. Written as one macro so `async_trait` sees every
/// method expanded.
macro_rules! grpc_service {
    ($svc:ty, $m:ident, [$($name:ident: $req:ident => $resp:ident),* $(,)?]) => {
        #[tonic::async_trait]
        impl $m::service_server::Service for $svc {
            $(
                async fn $name(
                    &self,
                    request: tonic::Request<$m::$req>,
                ) -> Result<tonic::Response<$m::$resp>, tonic::Status> {
                    let (metadata, _, message) = request.into_parts();
                    <$svc>::$name(self, metadata.as_ref(), message).map(tonic::Response::new).map_err(Into::into)
                }
            )*

            type EventStreamStream = EventStream<$m::EventStreamResponse>;

            async fn event_stream(
                &self,
                request: tonic::Request<$m::EventStreamRequest>,
            ) -> Result<tonic::Response<Self::EventStreamStream>, tonic::Status> {
                let stream = <$svc>::event_stream(self, request.metadata().as_ref())?;
                Ok(tonic::Response::new(Box::pin(stream.map(|r| r.map_err(tonic::Status::from)))))
            }
        }
    };
}

grpc_service!(V1, v1, [
    resolve_all: ResolveAllRequest => ResolveAllResponse,
    resolve_boolean: ResolveBooleanRequest => ResolveBooleanResponse,
    resolve_string: ResolveStringRequest => ResolveStringResponse,
    resolve_float: ResolveFloatRequest => ResolveFloatResponse,
    resolve_int: ResolveIntRequest => ResolveIntResponse,
    resolve_object: ResolveObjectRequest => ResolveObjectResponse,
]);

grpc_service!(V2, v2, [
    resolve_boolean: ResolveBooleanRequest => ResolveBooleanResponse,
    resolve_string: ResolveStringRequest => ResolveStringResponse,
    resolve_float: ResolveFloatRequest => ResolveFloatResponse,
    resolve_int: ResolveIntRequest => ResolveIntResponse,
    resolve_object: ResolveObjectRequest => ResolveObjectResponse,
]);

grpc_service!(SchemaV1, schema, [
    resolve_all: ResolveAllRequest => ResolveAllResponse,
    resolve_boolean: ResolveBooleanRequest => ResolveBooleanResponse,
    resolve_string: ResolveStringRequest => ResolveStringResponse,
    resolve_float: ResolveFloatRequest => ResolveFloatResponse,
    resolve_int: ResolveIntRequest => ResolveIntResponse,
    resolve_object: ResolveObjectRequest => ResolveObjectResponse,
]);
