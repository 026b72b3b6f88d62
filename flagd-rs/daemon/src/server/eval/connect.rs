//! The Connect protocol on the evaluation port: unary calls with `application/json` (proto3
//! JSON) or `application/proto` bodies, server-streaming EventStream with enveloped
//! `application/connect+json` / `+proto` frames, and Connect error bodies.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Code, EvalError, connect_error_json};
use super::events::{self, Event};
use super::resolve::{self, Api};
use super::services::{SchemaV1, V1, V2};
use crate::proto::flagd::evaluation::v1;
use crate::server::body;
use crate::state::AppState;

/// Envelope flag of a compressed message.
const FLAG_COMPRESSED: u8 = 0x01;
/// Envelope flag of the end-of-stream message.
const FLAG_END_STREAM: u8 = 0x02;
/// What a unary endpoint accepts, announced with 415 responses.
const ACCEPT_POST: &str = "application/json, application/json; charset=utf-8, application/proto";
/// What the streaming endpoint accepts.
const ACCEPT_POST_STREAM: &str = "application/connect+json, application/connect+proto";

/// Everything the Connect handler needs. Cheap to clone: the router clones its state for every
/// request, so the services sit behind one shared pointer.
#[derive(Debug, Clone)]
pub struct Connect {
    inner: Arc<Services>,
}

#[derive(Debug)]
struct Services {
    v1: V1,
    v2: V2,
    schema: SchemaV1,
    state: AppState,
}

impl Connect {
    /// The handler state over `state`.
    pub fn new(state: AppState) -> Self {
        Self {
            inner: Arc::new(Services {
                v1: V1::new(state.clone()),
                v2: V2::new(state.clone()),
                schema: SchemaV1::new(state.clone()),
                state,
            }),
        }
    }
}

/// The RPCs of the evaluation services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    ResolveAll,
    ResolveBoolean,
    ResolveString,
    ResolveFloat,
    ResolveInt,
    ResolveObject,
    EventStream,
}

/// Maps a request path to the API and RPC it names.
fn route(path: &str) -> Option<(Api, Rpc)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let api = match service {
        "flagd.evaluation.v1.Service" => Api::V1,
        "flagd.evaluation.v2.Service" => Api::V2,
        "schema.v1.Service" => Api::Schema,
        _ => return None,
    };
    let rpc = match method {
        "ResolveAll" if api != Api::V2 => Rpc::ResolveAll,
        "ResolveBoolean" => Rpc::ResolveBoolean,
        "ResolveString" => Rpc::ResolveString,
        "ResolveFloat" => Rpc::ResolveFloat,
        "ResolveInt" => Rpc::ResolveInt,
        "ResolveObject" => Rpc::ResolveObject,
        "EventStream" => Rpc::EventStream,
        _ => return None,
    };
    Some((api, rpc))
}

/// The served procedure `path` names (`/<service>/<method>`), as a static string for metric
/// labels; `None` for any other path.
pub fn procedure(path: &str) -> Option<&'static str> {
    let (api, rpc) = route(path)?;
    let name = match (api, rpc) {
        (Api::V1, Rpc::ResolveAll) => "/flagd.evaluation.v1.Service/ResolveAll",
        (Api::V1, Rpc::ResolveBoolean) => "/flagd.evaluation.v1.Service/ResolveBoolean",
        (Api::V1, Rpc::ResolveString) => "/flagd.evaluation.v1.Service/ResolveString",
        (Api::V1, Rpc::ResolveFloat) => "/flagd.evaluation.v1.Service/ResolveFloat",
        (Api::V1, Rpc::ResolveInt) => "/flagd.evaluation.v1.Service/ResolveInt",
        (Api::V1, Rpc::ResolveObject) => "/flagd.evaluation.v1.Service/ResolveObject",
        (Api::V1, Rpc::EventStream) => "/flagd.evaluation.v1.Service/EventStream",
        (Api::V2, Rpc::ResolveAll) => return None,
        (Api::V2, Rpc::ResolveBoolean) => "/flagd.evaluation.v2.Service/ResolveBoolean",
        (Api::V2, Rpc::ResolveString) => "/flagd.evaluation.v2.Service/ResolveString",
        (Api::V2, Rpc::ResolveFloat) => "/flagd.evaluation.v2.Service/ResolveFloat",
        (Api::V2, Rpc::ResolveInt) => "/flagd.evaluation.v2.Service/ResolveInt",
        (Api::V2, Rpc::ResolveObject) => "/flagd.evaluation.v2.Service/ResolveObject",
        (Api::V2, Rpc::EventStream) => "/flagd.evaluation.v2.Service/EventStream",
        (Api::Schema, Rpc::ResolveAll) => "/schema.v1.Service/ResolveAll",
        (Api::Schema, Rpc::ResolveBoolean) => "/schema.v1.Service/ResolveBoolean",
        (Api::Schema, Rpc::ResolveString) => "/schema.v1.Service/ResolveString",
        (Api::Schema, Rpc::ResolveFloat) => "/schema.v1.Service/ResolveFloat",
        (Api::Schema, Rpc::ResolveInt) => "/schema.v1.Service/ResolveInt",
        (Api::Schema, Rpc::ResolveObject) => "/schema.v1.Service/ResolveObject",
        (Api::Schema, Rpc::EventStream) => "/schema.v1.Service/EventStream",
    };
    Some(name)
}

/// The message encoding of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Json,
    Proto,
}

/// Reads the codec from a content type: unary (`application/json`, `application/proto`) or
/// streaming (`application/connect+json`, `application/connect+proto`).
fn codec(headers: &HeaderMap, streaming: bool) -> Option<Codec> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let (mime, params) = match ct.split_once(';') {
        Some((m, p)) => (m.trim(), Some(p.trim())),
        None => (ct.trim(), None),
    };
    let mime = mime.to_ascii_lowercase();
    let subtype = if streaming {
        mime.strip_prefix("application/connect+")?
    } else {
        mime.strip_prefix("application/")?
    };
    match (subtype, params) {
        ("json", None) => Some(Codec::Json),
        ("json", Some(p)) if p.replace(' ', "").eq_ignore_ascii_case("charset=utf-8") => {
            Some(Codec::Json)
        }
        ("proto", None) => Some(Codec::Proto),
        _ => None,
    }
}

/// Handles every non-gRPC request on the evaluation port.
pub async fn handle(State(connect): State<Connect>, request: Request) -> Response {
    let connect = &*connect.inner;
    let Some((api, rpc)) = route(request.uri().path()) else {
        let message = format!("{} is not a known procedure", request.uri().path());
        return (
            StatusCode::NOT_FOUND,
            json_body(&connect_error_json(Code::Unimplemented, &message)),
        )
            .into_response();
    };
    if request.method() != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST"))],
        )
            .into_response();
    }
    let streaming = rpc == Rpc::EventStream;
    let Some(codec) = codec(request.headers(), streaming) else {
        let accept = if streaming {
            ACCEPT_POST_STREAM
        } else {
            ACCEPT_POST
        };
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(http::HeaderName::from_static("accept-post"), accept)],
        )
            .into_response();
    };
    let encoding = if streaming {
        "connect-content-encoding"
    } else {
        "content-encoding"
    };
    if let Some(enc) = request
        .headers()
        .get(encoding)
        .filter(|e| e.as_bytes() != b"identity")
    {
        let message = format!(
            "unknown compression {:?}: supported encodings are identity",
            String::from_utf8_lossy(enc.as_bytes())
        );
        let body = connect_error_json(Code::Unimplemented, &message);
        return if streaming {
            stream_response(
                codec,
                futures::stream::once(async move { end_stream(Some(&body)) }),
            )
        } else {
            (StatusCode::NOT_IMPLEMENTED, json_body(&body)).into_response()
        };
    }
    let (parts, body) = request.into_parts();
    let body = match body::read_limited(&parts.headers, body, connect.state.limits.max_body_bytes)
        .await
        .map_err(EvalError::from)
    {
        Ok(b) => b,
        Err(e) if streaming => return stream_error(codec, &e),
        Err(e) => return unary_error(&e),
    };
    let h = &parts.headers;
    match (api, rpc) {
        (_, Rpc::EventStream) => event_stream(&connect.state, api, codec, h, &body),
        (Api::V1, Rpc::ResolveAll) => unary(codec, &body, |m| connect.v1.resolve_all(h, m)),
        (Api::V1, Rpc::ResolveBoolean) => unary(codec, &body, |m| connect.v1.resolve_boolean(h, m)),
        (Api::V1, Rpc::ResolveString) => unary(codec, &body, |m| connect.v1.resolve_string(h, m)),
        (Api::V1, Rpc::ResolveFloat) => unary(codec, &body, |m| connect.v1.resolve_float(h, m)),
        (Api::V1, Rpc::ResolveInt) => unary(codec, &body, |m| connect.v1.resolve_int(h, m)),
        (Api::V1, Rpc::ResolveObject) => unary(codec, &body, |m| connect.v1.resolve_object(h, m)),
        (Api::V2, Rpc::ResolveBoolean) => unary(codec, &body, |m| connect.v2.resolve_boolean(h, m)),
        (Api::V2, Rpc::ResolveString) => unary(codec, &body, |m| connect.v2.resolve_string(h, m)),
        (Api::V2, Rpc::ResolveFloat) => unary(codec, &body, |m| connect.v2.resolve_float(h, m)),
        (Api::V2, Rpc::ResolveInt) => unary(codec, &body, |m| connect.v2.resolve_int(h, m)),
        (Api::V2, Rpc::ResolveObject) => unary(codec, &body, |m| connect.v2.resolve_object(h, m)),
        // `route` never yields ResolveAll for v2; answer like an unknown procedure anyway.
        (Api::V2, Rpc::ResolveAll) => (
            StatusCode::NOT_FOUND,
            json_body(&connect_error_json(Code::Unimplemented, "")),
        )
            .into_response(),
        (Api::Schema, Rpc::ResolveAll) => unary(codec, &body, |m| connect.schema.resolve_all(h, m)),
        (Api::Schema, Rpc::ResolveBoolean) => {
            unary(codec, &body, |m| connect.schema.resolve_boolean(h, m))
        }
        (Api::Schema, Rpc::ResolveString) => {
            unary(codec, &body, |m| connect.schema.resolve_string(h, m))
        }
        (Api::Schema, Rpc::ResolveFloat) => {
            unary(codec, &body, |m| connect.schema.resolve_float(h, m))
        }
        (Api::Schema, Rpc::ResolveInt) => unary(codec, &body, |m| connect.schema.resolve_int(h, m)),
        (Api::Schema, Rpc::ResolveObject) => {
            unary(codec, &body, |m| connect.schema.resolve_object(h, m))
        }
    }
}

/// Decodes a request message in `codec`.
fn decode<M: prost::Message + Default + DeserializeOwned>(
    codec: Codec,
    bytes: &[u8],
) -> Result<M, EvalError> {
    match codec {
        Codec::Json if bytes.iter().all(u8::is_ascii_whitespace) => Err(EvalError::Malformed(
            "unmarshal message: zero-length payload is not a valid JSON object".to_owned(),
        )),
        Codec::Json => serde_json::from_slice(bytes)
            .map_err(|e| EvalError::Malformed(format!("unmarshal message: {e}"))),
        Codec::Proto => {
            M::decode(bytes).map_err(|e| EvalError::Malformed(format!("unmarshal message: {e}")))
        }
    }
}

/// Runs one unary call: decode, call, encode.
fn unary<Req, Resp>(
    codec: Codec,
    body: &[u8],
    call: impl FnOnce(Req) -> Result<Resp, EvalError>,
) -> Response
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
{
    let response = match decode(codec, body).and_then(call) {
        Ok(r) => r,
        Err(e) => return unary_error(&e),
    };
    match codec {
        Codec::Json => match to_json(&response) {
            Ok(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                bytes,
            )
                .into_response(),
            Err(e) => {
                tracing::error!(error = %e, "encoding a response as JSON");
                let body = connect_error_json(Code::Internal, "failed to encode the response");
                (StatusCode::INTERNAL_SERVER_ERROR, json_body(&body)).into_response()
            }
        },
        Codec::Proto => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/proto"),
            )],
            response.encode_to_vec(),
        )
            .into_response(),
    }
}

/// Writes floats as Go's protojson does (`10`, not `10.0`; exponent form outside
/// [1e-6, 1e21)), so bodies match flagd's byte for byte where field order allows.
struct GoNumbers;

impl serde_json::ser::Formatter for GoNumbers {
    fn write_f64<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f64,
    ) -> std::io::Result<()> {
        writer.write_all(flagd_evaluator::go_float(value).as_bytes())
    }

    fn write_f32<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        value: f32,
    ) -> std::io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }
}

/// Serializes a message as proto3 JSON with Go's number formatting.
fn to_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut out, GoNumbers,
    ))?;
    Ok(out)
}

/// A Connect unary error response.
fn unary_error(e: &EvalError) -> Response {
    let status =
        StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, json_body(&e.connect_json())).into_response()
}

fn json_body(v: &serde_json::Value) -> impl IntoResponse + use<> {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
}

/// Serves EventStream: checks the (optional) enveloped request message, then streams events.
fn event_stream(
    state: &AppState,
    api: Api,
    codec: Codec,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Err(e) = check_stream_request(codec, body) {
        return stream_error(codec, &e);
    }
    let selector = match resolve::selector(headers) {
        Ok(s) => s,
        Err(e) => return stream_error(codec, &e),
    };
    let events = events::subscribe(state, selector, api.stream_deadline(state));
    stream_response(codec, frames(codec, events))
}

/// The request of a server stream is one enveloped (empty) message; an empty body is accepted
/// too, since the message carries nothing.
fn check_stream_request(codec: Codec, body: &[u8]) -> Result<(), EvalError> {
    if body.is_empty() {
        return Ok(());
    }
    let Some((flags, payload, rest)) = split_envelope(body) else {
        return Err(EvalError::Malformed(
            "protocol error: incomplete envelope".to_owned(),
        ));
    };
    if !rest.is_empty() {
        return Err(EvalError::Malformed(
            "protocol error: more than one request message".to_owned(),
        ));
    }
    if flags & FLAG_COMPRESSED != 0 {
        return Err(EvalError::Malformed(
            "protocol error: compressed message without an encoding".to_owned(),
        ));
    }
    decode::<v1::EventStreamRequest>(codec, payload).map(drop)
}

/// Splits the first enveloped message off `buf`: (flags, payload, rest).
fn split_envelope(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&flags, rest) = buf.split_first()?;
    let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
    let len = usize::try_from(u32::from_be_bytes(len_bytes)).ok()?;
    let payload = rest.get(4..4 + len)?;
    Some((flags, payload, rest.get(4 + len..).unwrap_or_default()))
}

/// One enveloped message.
fn envelope(flags: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(flags);
    out.extend_from_slice(
        &u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// The end-of-stream message: `{}` or `{"error": {...}}`; always JSON, whatever the codec.
fn end_stream(error: Option<&serde_json::Value>) -> Bytes {
    let body = match error {
        Some(e) => serde_json::json!({ "error": e }),
        None => serde_json::json!({}),
    };
    envelope(FLAG_END_STREAM, body.to_string().as_bytes())
}

/// One event as a message frame.
fn event_frame(codec: Codec, event: Event) -> Bytes {
    match codec {
        // Written by hand so an unset `data` is emitted as `null`, as protojson does.
        Codec::Json => {
            let body = serde_json::json!({ "type": event.kind, "data": event.data });
            envelope(0, body.to_string().as_bytes())
        }
        // The three APIs' stream messages share one wire format.
        Codec::Proto => {
            let message = v1::EventStreamResponse {
                r#type: event.kind.to_owned(),
                data: event.data,
            };
            envelope(0, &prost::Message::encode_to_vec(&message))
        }
    }
}

/// Events as frames, closed by the end-of-stream message.
fn frames(
    codec: Codec,
    events: impl Stream<Item = Result<Event, EvalError>> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    // `None` marks the end of the events so the end-of-stream frame can follow exactly once.
    events
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .scan(false, move |ended, item| {
            let frame = match (*ended, item) {
                (true, _) => None,
                (false, Some(Ok(event))) => Some(event_frame(codec, event)),
                (false, Some(Err(e))) => {
                    *ended = true;
                    Some(end_stream(Some(&e.connect_json())))
                }
                (false, None) => {
                    *ended = true;
                    Some(end_stream(None))
                }
            };
            futures::future::ready(frame)
        })
}

/// A streaming response carrying `frames`.
fn stream_response(codec: Codec, frames: impl Stream<Item = Bytes> + Send + 'static) -> Response {
    let content_type = match codec {
        Codec::Json => "application/connect+json",
        Codec::Proto => "application/connect+proto",
    };
    let body = Body::from_stream(frames.map(Ok::<_, std::convert::Infallible>));
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

/// A streaming response that only reports `e` (streams answer errors with HTTP 200).
fn stream_error(codec: Codec, e: &EvalError) -> Response {
    let frame = end_stream(Some(&e.connect_json()));
    stream_response(codec, futures::stream::once(async move { frame }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let frame = envelope(0, b"{\"a\":1}");
        assert_eq!(&frame[..5], &[0, 0, 0, 0, 7]);
        let (flags, payload, rest) = split_envelope(&frame).unwrap();
        assert_eq!((flags, payload, rest), (0, &b"{\"a\":1}"[..], &b""[..]));
        let end = end_stream(None);
        assert_eq!(&end[..], &[2, 0, 0, 0, 2, b'{', b'}']);
        assert!(split_envelope(&[0, 0, 0]).is_none());
        let numbers = serde_json::json!({"a": 10.0, "b": 0.5, "c": 1e21, "d": -3, "e": 1e-7});
        assert_eq!(
            String::from_utf8(to_json(&numbers).unwrap()).unwrap(),
            r#"{"a":10,"b":0.5,"c":1e+21,"d":-3,"e":1e-7}"#
        );
        assert!(split_envelope(&[0, 0, 0, 0, 5, 1]).is_none());
        let two = [envelope(0, b"{}"), envelope(0, b"{}")].concat();
        assert_eq!(split_envelope(&two).unwrap().2.len(), 7);
        let e = EvalError::StreamDeadline;
        let end = end_stream(Some(&e.connect_json()));
        let (flags, payload, _) = split_envelope(&end).unwrap();
        assert_eq!(flags, FLAG_END_STREAM);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(payload).unwrap(),
            serde_json::json!({"error": {"code": "deadline_exceeded", "message": "stream closed due to server-side timeout"}})
        );
    }

    #[test]
    fn stream_request_check() {
        assert!(check_stream_request(Codec::Json, b"").is_ok());
        assert!(check_stream_request(Codec::Json, &envelope(0, b"{}")).is_ok());
        assert!(check_stream_request(Codec::Proto, &envelope(0, b"")).is_ok());
        assert!(check_stream_request(Codec::Json, &envelope(0, b"")).is_err());
        assert!(check_stream_request(Codec::Json, &envelope(1, b"{}")).is_err());
        assert!(check_stream_request(Codec::Json, &[0, 0]).is_err());
    }

    #[test]
    fn routes_and_codecs() {
        assert_eq!(
            route("/flagd.evaluation.v1.Service/ResolveAll"),
            Some((Api::V1, Rpc::ResolveAll))
        );
        assert_eq!(route("/flagd.evaluation.v2.Service/ResolveAll"), None);
        assert_eq!(
            route("/schema.v1.Service/EventStream"),
            Some((Api::Schema, Rpc::EventStream))
        );
        assert_eq!(route("/flagd.evaluation.v1.Service/Nope"), None);
        assert_eq!(route("/"), None);
        assert_eq!(
            procedure("/schema.v1.Service/ResolveInt"),
            Some("/schema.v1.Service/ResolveInt")
        );
        assert_eq!(
            procedure("/flagd.evaluation.v2.Service/EventStream"),
            Some("/flagd.evaluation.v2.Service/EventStream")
        );
        assert_eq!(procedure("/flagd.evaluation.v2.Service/ResolveAll"), None);
        let ct = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().unwrap());
            h
        };
        assert_eq!(codec(&ct("application/json"), false), Some(Codec::Json));
        assert_eq!(
            codec(&ct("application/json; charset=utf-8"), false),
            Some(Codec::Json)
        );
        assert_eq!(codec(&ct("application/proto"), false), Some(Codec::Proto));
        assert_eq!(codec(&ct("application/connect+json"), false), None);
        assert_eq!(
            codec(&ct("application/connect+json"), true),
            Some(Codec::Json)
        );
        assert_eq!(
            codec(&ct("application/connect+proto"), true),
            Some(Codec::Proto)
        );
        assert_eq!(codec(&ct("text/plain"), false), None);
        assert_eq!(codec(&HeaderMap::new(), false), None);
    }
}
