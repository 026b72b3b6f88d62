//! The Connect protocol on the evaluation port: unary calls with `application/json` (proto3
//! JSON) or `application/proto` bodies, server-streaming EventStream with enveloped
//! `application/connect+json` / `+proto` frames, and Connect error bodies.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt as _};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::error::{Code, RequestError, connect_error_json};
use super::events::{self, Event};
use super::resolve::{self, Api};
use super::rpc::{self, Rpc};
use super::services::{SchemaV1, V1, V2};
use crate::proto::flagd::evaluation::v1;
use crate::server::{body, compress, deadline};
use crate::state::AppState;

/// Envelope flag of a compressed message.
const FLAG_COMPRESSED: u8 = 0x01;
/// Envelope flag of the end-of-stream message.
const FLAG_END_STREAM: u8 = 0x02;
/// What a unary endpoint accepts, announced with 415 responses.
const ACCEPT_POST: &str = "application/json, application/json; charset=utf-8, application/proto";
/// Unary responses smaller than this are sent uncompressed even when the client accepts gzip:
/// compressing a few dozen bytes costs more than it saves.
const MIN_COMPRESS_BYTES: usize = 1024;
/// The request encoding of a Connect stream.
static CONNECT_CONTENT_ENCODING: http::HeaderName =
    http::HeaderName::from_static("connect-content-encoding");
/// The response encodings a Connect stream's client accepts.
static CONNECT_ACCEPT_ENCODING: http::HeaderName =
    http::HeaderName::from_static("connect-accept-encoding");
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
    let prefix = if streaming {
        "application/connect+"
    } else {
        "application/"
    };
    // Compared without regard to case, without making a lower-case copy per request.
    let subtype = mime
        .get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .and_then(|_| mime.get(prefix.len()..))?;
    let codec = if subtype.eq_ignore_ascii_case("json") {
        Codec::Json
    } else if subtype.eq_ignore_ascii_case("proto") {
        Codec::Proto
    } else {
        return None;
    };
    match (codec, params) {
        (_, None) => Some(codec),
        (Codec::Json, Some(p)) if p.replace(' ', "").eq_ignore_ascii_case("charset=utf-8") => {
            Some(Codec::Json)
        }
        _ => None,
    }
}

/// Handles every non-gRPC request on the evaluation port.
pub async fn handle(State(connect): State<Connect>, request: Request) -> Response {
    let connect = &*connect.inner;
    let Some(&Rpc { api, method, .. }) = rpc::lookup(request.uri().path()) else {
        let message = format!("{} is not a known procedure", request.uri().path());
        return (
            StatusCode::NOT_FOUND,
            json_body(&connect_error_json(Code::Unimplemented, &message)),
        )
            .into_response();
    };
    if request.method() != http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, HeaderValue::from_static("POST"))],
        )
            .into_response();
    }
    let streaming = method.is_streaming();
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
    let compression = match Compression::negotiate(request.headers(), streaming) {
        Ok(c) => c,
        Err(e) if streaming => return stream_error(codec, &e),
        Err(e) => return unary_error(&e),
    };
    let timeout = match deadline::connect_timeout(request.headers()) {
        Ok(t) => t,
        Err(reason) if streaming => {
            return stream_error(codec, &RequestError::InvalidTimeout(reason));
        }
        Err(reason) => return unary_error(&RequestError::InvalidTimeout(reason)),
    };
    let call = Call {
        connect,
        api,
        method,
        codec,
        compression,
        deadline: timeout.map(|t| Instant::now() + t),
    };
    // The deadline covers reading the body too; a stream takes the rest of it along.
    match timeout {
        None => call.run(request).await,
        Some(t) => match tokio::time::timeout(t, call.run(request)).await {
            Ok(response) => response,
            Err(_) if streaming => stream_error(codec, &RequestError::DeadlineExceeded),
            Err(_) => unary_error(&RequestError::DeadlineExceeded),
        },
    }
}

/// The compression of a call: whether the request is gzip and whether the response may be.
#[derive(Debug, Clone, Copy)]
struct Compression {
    request: bool,
    response: bool,
}

impl Compression {
    /// Reads `Content-Encoding`/`Accept-Encoding` (unary) or their `Connect-` forms (streams).
    /// An encoding other than gzip or identity is `unimplemented`, as the Connect protocol says.
    fn negotiate(headers: &HeaderMap, streaming: bool) -> Result<Compression, RequestError> {
        let (content, accept) = if streaming {
            (&CONNECT_CONTENT_ENCODING, &CONNECT_ACCEPT_ENCODING)
        } else {
            (&header::CONTENT_ENCODING, &header::ACCEPT_ENCODING)
        };
        let request = match headers.get(content).map(HeaderValue::as_bytes) {
            None | Some(b"identity") => false,
            Some(b"gzip") => true,
            Some(other) => {
                return Err(RequestError::UnknownEncoding(format!(
                    "unknown compression {:?}: supported encodings are gzip",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        Ok(Compression {
            request,
            response: compress::accepts_gzip(headers.get(accept)),
        })
    }
}

/// One Connect call past the protocol checks.
struct Call<'a> {
    connect: &'a Services,
    api: Api,
    method: rpc::Method,
    codec: Codec,
    compression: Compression,
    /// The client's deadline, if it sent one.
    deadline: Option<Instant>,
}

impl Call<'_> {
    /// Reads the body (decompressed when the request says gzip), calls the method and encodes
    /// the response.
    async fn run(self, request: Request) -> Response {
        let Call {
            connect,
            api,
            method,
            codec,
            compression,
            ..
        } = self;
        let streaming = method.is_streaming();
        let limit = connect.state.limits.max_body_bytes;
        let (parts, body) = request.into_parts();
        let body = match body::read_limited(&parts.headers, body, limit).await {
            // A stream request's message is enveloped; its own flag says whether it is
            // compressed.
            Ok(b) if compression.request && !streaming => compress::gunzip(&b, limit)
                .map(Bytes::from)
                .map_err(RequestError::from),
            Ok(b) => Ok(b),
            Err(e) => Err(RequestError::from(e)),
        };
        let body: Bytes = match body {
            Ok(b) => b,
            Err(e) if streaming => return stream_error(codec, &e),
            Err(e) => return unary_error(&e),
        };
        let h = &parts.headers;
        let gzip = compression.response;
        let c = connect;
        match (api, method) {
            (_, rpc::Method::EventStream) => {
                let client_deadline = self
                    .deadline
                    .map(|d| d.saturating_duration_since(Instant::now()));
                let stream = StreamCall {
                    codec,
                    gzip,
                    request_gzip: compression.request,
                    limit,
                };
                event_stream(&c.state, api, stream, h, &body, client_deadline)
            }
            (Api::V1, rpc::Method::ResolveAll) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_all(h, m))
            }
            (Api::V1, rpc::Method::ResolveBoolean) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_boolean(h, m))
            }
            (Api::V1, rpc::Method::ResolveString) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_string(h, m))
            }
            (Api::V1, rpc::Method::ResolveFloat) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_float(h, m))
            }
            (Api::V1, rpc::Method::ResolveInt) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_int(h, m))
            }
            (Api::V1, rpc::Method::ResolveObject) => {
                unary(codec, gzip, &body, |m| c.v1.resolve_object(h, m))
            }
            (Api::V2, rpc::Method::ResolveBoolean) => {
                unary(codec, gzip, &body, |m| c.v2.resolve_boolean(h, m))
            }
            (Api::V2, rpc::Method::ResolveString) => {
                unary(codec, gzip, &body, |m| c.v2.resolve_string(h, m))
            }
            (Api::V2, rpc::Method::ResolveFloat) => {
                unary(codec, gzip, &body, |m| c.v2.resolve_float(h, m))
            }
            (Api::V2, rpc::Method::ResolveInt) => {
                unary(codec, gzip, &body, |m| c.v2.resolve_int(h, m))
            }
            (Api::V2, rpc::Method::ResolveObject) => {
                unary(codec, gzip, &body, |m| c.v2.resolve_object(h, m))
            }
            // The table has no ResolveAll for v2; answer like an unknown procedure anyway.
            (Api::V2, rpc::Method::ResolveAll) => (
                StatusCode::NOT_FOUND,
                json_body(&connect_error_json(Code::Unimplemented, "")),
            )
                .into_response(),
            (Api::Schema, rpc::Method::ResolveAll) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_all(h, m))
            }
            (Api::Schema, rpc::Method::ResolveBoolean) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_boolean(h, m))
            }
            (Api::Schema, rpc::Method::ResolveString) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_string(h, m))
            }
            (Api::Schema, rpc::Method::ResolveFloat) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_float(h, m))
            }
            (Api::Schema, rpc::Method::ResolveInt) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_int(h, m))
            }
            (Api::Schema, rpc::Method::ResolveObject) => {
                unary(codec, gzip, &body, |m| c.schema.resolve_object(h, m))
            }
        }
    }
}

impl From<compress::DecompressError> for RequestError {
    fn from(e: compress::DecompressError) -> Self {
        match e {
            compress::DecompressError::TooLarge(limit) => RequestError::TooLarge(limit),
            compress::DecompressError::Corrupt(_) => RequestError::Malformed(e.to_string()),
        }
    }
}

/// Decodes a request message in `codec`.
fn decode<M: prost::Message + Default + DeserializeOwned>(
    codec: Codec,
    bytes: &[u8],
) -> Result<M, RequestError> {
    match codec {
        Codec::Json if bytes.iter().all(u8::is_ascii_whitespace) => Err(RequestError::Malformed(
            "unmarshal message: zero-length payload is not a valid JSON object".to_owned(),
        )),
        Codec::Json => serde_json::from_slice(bytes)
            .map_err(|e| RequestError::Malformed(format!("unmarshal message: {e}"))),
        Codec::Proto => {
            M::decode(bytes).map_err(|e| RequestError::Malformed(format!("unmarshal message: {e}")))
        }
    }
}

/// Runs one unary call: decode, call, encode (gzip when the client accepts it and the body
/// is large enough to gain from it).
fn unary<Req, Resp>(
    codec: Codec,
    gzip: bool,
    body: &[u8],
    call: impl FnOnce(Req) -> Result<Resp, RequestError>,
) -> Response
where
    Req: prost::Message + Default + DeserializeOwned,
    Resp: prost::Message + Serialize,
{
    let response = match decode(codec, body).and_then(call) {
        Ok(r) => r,
        Err(e) => return unary_error(&e),
    };
    let (content_type, bytes) = match codec {
        Codec::Json => match to_json(&response) {
            Ok(bytes) => ("application/json", bytes),
            Err(e) => {
                tracing::error!(error = %e, "encoding a response as JSON");
                let body = connect_error_json(Code::Internal, "failed to encode the response");
                return (StatusCode::INTERNAL_SERVER_ERROR, json_body(&body)).into_response();
            }
        },
        Codec::Proto => ("application/proto", response.encode_to_vec()),
    };
    let content_type = (header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if gzip && bytes.len() >= MIN_COMPRESS_BYTES {
        let encoding = (
            header::CONTENT_ENCODING,
            HeaderValue::from_static(compress::GZIP),
        );
        return ([content_type, encoding], compress::gzip(&bytes)).into_response();
    }
    ([content_type], bytes).into_response()
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
fn unary_error(e: &RequestError) -> Response {
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

/// How one EventStream call encodes its messages.
#[derive(Debug, Clone, Copy)]
struct StreamCall {
    codec: Codec,
    /// Compress the event messages (the client sent `Connect-Accept-Encoding: gzip`).
    gzip: bool,
    /// The request message may be compressed (`Connect-Content-Encoding: gzip`).
    request_gzip: bool,
    /// The body limit, which also bounds a decompressed request message.
    limit: usize,
}

/// Serves EventStream: checks the (optional) enveloped request message, then streams events
/// until the server's or the client's deadline, whichever comes first.
fn event_stream(
    state: &AppState,
    api: Api,
    call: StreamCall,
    headers: &HeaderMap,
    body: &[u8],
    client_deadline: Option<std::time::Duration>,
) -> Response {
    let codec = call.codec;
    if let Err(e) = check_stream_request(call, body) {
        return stream_error(codec, &e);
    }
    let selector = match resolve::selector(headers) {
        Ok(s) => s,
        Err(e) => return stream_error(codec, &e),
    };
    let events = events::subscribe(state, selector, api.stream_deadline(state), client_deadline);
    let mut response = stream_response(codec, frames(codec, call.gzip, events));
    if call.gzip {
        response.headers_mut().insert(
            CONNECT_CONTENT_ENCODING.clone(),
            HeaderValue::from_static(compress::GZIP),
        );
    }
    response
}

/// The request of a server stream is one enveloped (empty) message; an empty body is accepted
/// too, since the message carries nothing. A compressed message needs a request encoding.
fn check_stream_request(call: StreamCall, body: &[u8]) -> Result<(), RequestError> {
    if body.is_empty() {
        return Ok(());
    }
    let Some((flags, payload, rest)) = split_envelope(body) else {
        return Err(RequestError::Malformed(
            "protocol error: incomplete envelope".to_owned(),
        ));
    };
    if !rest.is_empty() {
        return Err(RequestError::Malformed(
            "protocol error: more than one request message".to_owned(),
        ));
    }
    if flags & FLAG_COMPRESSED == 0 {
        return decode::<v1::EventStreamRequest>(call.codec, payload).map(drop);
    }
    if !call.request_gzip {
        return Err(RequestError::Malformed(
            "protocol error: compressed message without an encoding".to_owned(),
        ));
    }
    let payload = compress::gunzip(payload, call.limit)?;
    decode::<v1::EventStreamRequest>(call.codec, &payload).map(drop)
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

/// One event as a message frame, compressed with `gzip`.
fn event_frame(codec: Codec, gzip: bool, event: Event) -> Bytes {
    let payload = match codec {
        // Written by hand so an unset `data` is emitted as `null`, as protojson does.
        Codec::Json => serde_json::json!({ "type": event.kind, "data": event.data })
            .to_string()
            .into_bytes(),
        // The three APIs' stream messages share one wire format.
        Codec::Proto => {
            let message = v1::EventStreamResponse {
                r#type: event.kind.to_owned(),
                data: event.data,
            };
            prost::Message::encode_to_vec(&message)
        }
    };
    if gzip {
        envelope(FLAG_COMPRESSED, &compress::gzip(&payload))
    } else {
        envelope(0, &payload)
    }
}

/// Events as frames, closed by the end-of-stream message.
fn frames(
    codec: Codec,
    gzip: bool,
    events: impl Stream<Item = Result<Event, RequestError>> + Send + 'static,
) -> impl Stream<Item = Bytes> + Send + 'static {
    // `None` marks the end of the events so the end-of-stream frame can follow exactly once.
    events
        .map(Some)
        .chain(futures::stream::once(async { None }))
        .scan(false, move |ended, item| {
            let frame = match (*ended, item) {
                (true, _) => None,
                (false, Some(Ok(event))) => Some(event_frame(codec, gzip, event)),
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
fn stream_error(codec: Codec, e: &RequestError) -> Response {
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
        let e = RequestError::StreamDeadline;
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
        let call = |codec| StreamCall {
            codec,
            gzip: false,
            request_gzip: false,
            limit: 100,
        };
        let json = call(Codec::Json);
        assert!(check_stream_request(json, b"").is_ok());
        assert!(check_stream_request(json, &envelope(0, b"{}")).is_ok());
        assert!(check_stream_request(call(Codec::Proto), &envelope(0, b"")).is_ok());
        assert!(check_stream_request(json, &envelope(0, b"")).is_err());
        assert!(check_stream_request(json, &envelope(1, b"{}")).is_err());
        assert!(check_stream_request(json, &[0, 0]).is_err());
        let gzip = StreamCall {
            request_gzip: true,
            ..json
        };
        assert!(check_stream_request(gzip, &envelope(1, &compress::gzip(b"{}"))).is_ok());
        let big = compress::gzip(&[b' '; 1000]);
        assert_eq!(
            check_stream_request(gzip, &envelope(1, &big)),
            Err(RequestError::TooLarge(100))
        );
    }

    #[test]
    fn codecs() {
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
        assert_eq!(
            codec(&ct("Application/JSON ; Charset=UTF-8"), false),
            Some(Codec::Json)
        );
        assert_eq!(
            codec(&ct("APPLICATION/CONNECT+PROTO"), true),
            Some(Codec::Proto)
        );
        assert_eq!(codec(&ct("application/proto; charset=utf-8"), false), None);
        assert_eq!(codec(&ct("application/json; charset=latin1"), false), None);
        assert_eq!(codec(&ct("application/jsonx"), false), None);
        assert_eq!(codec(&ct("application/"), false), None);
        assert_eq!(codec(&ct("app"), false), None);
    }
}
