//! The evaluation services over gRPC (HTTP/2 h2c) with tonic clients: every RPC of v1, v2 and
//! schema.v1, flagd's error mapping, selectors, context assembly and EventStream.

use std::time::Duration;

use flagd_rs::proto::flagd::evaluation::{v1, v2};
use flagd_rs::proto::schema::v1 as schema;
use flagd_rs::state::{ContextConfig, Limits};
use flagd_rs_tests::eval::{EvalServer, FLAGS, Options, empty, json_of, pb_struct};
use serde_json::{Value, json};
use tonic::Code;

fn md(pairs: &[(&str, &str)]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("version".into(), json!("1"));
    for (k, v) in pairs {
        m.insert((*k).into(), json!(v));
    }
    Value::Object(m)
}

fn req<T>(message: T, selector: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    if let Some(s) = selector {
        r.metadata_mut()
            .insert("flagd-selector", s.parse().unwrap());
    }
    r
}

macro_rules! resolve {
    ($client:expr, $method:ident, $req:ty, $key:expr) => {
        resolve!($client, $method, $req, $key, None, None)
    };
    ($client:expr, $method:ident, $req:ty, $key:expr, $ctx:expr, $selector:expr) => {
        $client
            .$method(req(<$req>::default().with($key, $ctx), $selector))
            .await
    };
}

/// Fills the two request fields every typed request has.
trait With: Sized {
    fn with(self, key: &str, ctx: Option<Value>) -> Self;
}

macro_rules! with {
    ($($t:ty),*) => {$(
        impl With for $t {
            fn with(mut self, key: &str, ctx: Option<Value>) -> Self {
                self.flag_key = key.to_owned();
                self.context = ctx.map(pb_struct);
                self
            }
        }
    )*};
}

with!(
    v1::ResolveBooleanRequest,
    v1::ResolveStringRequest,
    v1::ResolveFloatRequest,
    v1::ResolveIntRequest,
    v1::ResolveObjectRequest,
    v2::ResolveBooleanRequest,
    v2::ResolveStringRequest,
    v2::ResolveFloatRequest,
    v2::ResolveIntRequest,
    v2::ResolveObjectRequest,
    schema::ResolveBooleanRequest,
    schema::ResolveStringRequest,
    schema::ResolveFloatRequest,
    schema::ResolveIntRequest,
    schema::ResolveObjectRequest
);

#[track_caller]
fn check_status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
    code: Code,
    message: &str,
) {
    let status = result.expect_err("an error status");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(status.message(), message);
}

#[tokio::test]
async fn v1_typed_resolution() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v1().await;

    let r = resolve!(c, resolve_boolean, v1::ResolveBooleanRequest, "bool")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );
    assert_eq!(json_of(r.metadata), md(&[("owner", "qa")]));

    let r = resolve!(c, resolve_string, v1::ResolveStringRequest, "str")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("hi", "STATIC", "hi")
    );
    assert_eq!(json_of(r.metadata), md(&[]));

    let r = resolve!(c, resolve_int, v1::ResolveIntRequest, "int")
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.variant.as_str()), (10, "ten"));
    // flagd truncates a float variant toward zero.
    let r = resolve!(c, resolve_int, v1::ResolveIntRequest, "frac-int")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 1);

    let r = resolve!(c, resolve_float, v1::ResolveFloatRequest, "float")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 0.5);
    // Integer variants resolve as floats.
    let r = resolve!(c, resolve_float, v1::ResolveFloatRequest, "int")
        .unwrap()
        .into_inner();
    assert_eq!((r.value, r.reason.as_str()), (10.0, "STATIC"));

    let r = resolve!(c, resolve_object, v1::ResolveObjectRequest, "obj")
        .unwrap()
        .into_inner();
    assert_eq!(
        json_of(r.value),
        json!({"a": 1, "b": "x", "c": [true, null]})
    );
    assert_eq!(r.variant, "tpl");

    // Targeting on the request's context.
    let ctx = Some(json!({"email": "a@b.c"}));
    let r = resolve!(
        c,
        resolve_string,
        v1::ResolveStringRequest,
        "targeted",
        ctx,
        None
    )
    .unwrap()
    .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("INTERNAL", "TARGETING_MATCH", "in")
    );
    let r = resolve!(c, resolve_string, v1::ResolveStringRequest, "targeted")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("EXTERNAL", "DEFAULT", "out")
    );

    // DISABLED is a success with the zero value and no variant.
    let r = resolve!(c, resolve_boolean, v1::ResolveBooleanRequest, "disabled")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (false, "DISABLED", "")
    );
    assert_eq!(json_of(r.metadata), md(&[("owner", "ops")]));
    let r = resolve!(c, resolve_object, v1::ResolveObjectRequest, "disabled")
        .unwrap()
        .into_inner();
    assert_eq!((json_of(r.value), r.reason.as_str()), (empty(), "DISABLED"));
}

#[tokio::test]
async fn v1_errors_follow_flagd() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v1().await;
    check_status(
        resolve!(c, resolve_boolean, v1::ResolveBooleanRequest, "missing"),
        Code::NotFound,
        "Flag not found",
    );
    check_status(
        resolve!(c, resolve_boolean, v1::ResolveBooleanRequest, ""),
        Code::NotFound,
        "Flag not found",
    );
    check_status(
        resolve!(c, resolve_string, v1::ResolveStringRequest, "bool"),
        Code::InvalidArgument,
        "Type mismatch error",
    );
    check_status(
        resolve!(c, resolve_int, v1::ResolveIntRequest, "str"),
        Code::InvalidArgument,
        "Type mismatch error",
    );
    check_status(
        resolve!(c, resolve_object, v1::ResolveObjectRequest, "int"),
        Code::InvalidArgument,
        "Type mismatch error",
    );
    check_status(
        resolve!(c, resolve_int, v1::ResolveIntRequest, "parse-error"),
        Code::DataLoss,
        "Error parsing input or configuration",
    );
    check_status(
        resolve!(c, resolve_int, v1::ResolveIntRequest, "general"),
        Code::Unknown,
        "General error",
    );
    // v1 keeps the legacy answer for a flag without a default variant.
    check_status(
        resolve!(c, resolve_string, v1::ResolveStringRequest, "no-default"),
        Code::NotFound,
        "Flag not found",
    );
    check_status(
        resolve!(
            c,
            resolve_boolean,
            v1::ResolveBooleanRequest,
            "bool",
            None,
            Some("team=a")
        ),
        Code::InvalidArgument,
        "invalid selector key \"team\", valid keys: \"flagSetId\", \"source\"",
    );
}

#[tokio::test]
async fn v2_optional_values() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v2().await;
    let r = resolve!(c, resolve_boolean, v2::ResolveBooleanRequest, "bool")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_deref()),
        (Some(true), "STATIC", Some("on"))
    );
    assert_eq!(json_of(r.metadata), md(&[("owner", "qa")]));
    let r = resolve!(c, resolve_string, v2::ResolveStringRequest, "str")
        .unwrap()
        .into_inner();
    assert_eq!(r.value.as_deref(), Some("hi"));
    let r = resolve!(c, resolve_int, v2::ResolveIntRequest, "frac-int")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, Some(1));
    let r = resolve!(c, resolve_float, v2::ResolveFloatRequest, "float")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, Some(0.5));
    let r = resolve!(c, resolve_object, v2::ResolveObjectRequest, "obj")
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.value)["b"], json!("x"));

    // No default variant: DEFAULT with neither value nor variant.
    let r = resolve!(c, resolve_string, v2::ResolveStringRequest, "no-default")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DEFAULT", None)
    );
    // DISABLED: no value, no variant, flag metadata.
    let r = resolve!(c, resolve_boolean, v2::ResolveBooleanRequest, "disabled")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant),
        (None, "DISABLED", None)
    );
    assert_eq!(json_of(r.metadata), md(&[("owner", "ops")]));
    let r = resolve!(c, resolve_object, v2::ResolveObjectRequest, "disabled")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, None);

    check_status(
        resolve!(c, resolve_float, v2::ResolveFloatRequest, "missing"),
        Code::NotFound,
        "Flag not found",
    );
    check_status(
        resolve!(c, resolve_float, v2::ResolveFloatRequest, "str"),
        Code::InvalidArgument,
        "Type mismatch error",
    );
    check_status(
        resolve!(c, resolve_float, v2::ResolveFloatRequest, "parse-error"),
        Code::DataLoss,
        "Error parsing input or configuration",
    );
    check_status(
        resolve!(c, resolve_float, v2::ResolveFloatRequest, "general"),
        Code::Unknown,
        "General error",
    );
}

#[tokio::test]
async fn selectors_scope_lookups_and_echo_in_metadata() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v1().await;
    let sel = Some("flagSetId=other");
    let r = resolve!(
        c,
        resolve_string,
        v1::ResolveStringRequest,
        "set-flag",
        None,
        sel
    )
    .unwrap()
    .into_inner();
    assert_eq!(r.value, "A");
    assert_eq!(
        json_of(r.metadata),
        json!({"flagSetId": "other", "team": "x", "version": "1"})
    );
    check_status(
        resolve!(
            c,
            resolve_boolean,
            v1::ResolveBooleanRequest,
            "bool",
            None,
            sel
        ),
        Code::NotFound,
        "Flag not found",
    );
    // `flagSetId=` selects the flags without a set; the echo is the empty id.
    let r = resolve!(
        c,
        resolve_boolean,
        v1::ResolveBooleanRequest,
        "bool",
        None,
        Some("flagSetId=")
    )
    .unwrap()
    .into_inner();
    assert_eq!(
        json_of(r.metadata),
        json!({"flagSetId": "", "owner": "qa", "version": "1"})
    );
    let r = resolve!(
        c,
        resolve_boolean,
        v1::ResolveBooleanRequest,
        "bool",
        None,
        Some("source=test")
    )
    .unwrap()
    .into_inner();
    assert_eq!(
        json_of(r.metadata),
        json!({"source": "test", "owner": "qa", "version": "1"})
    );
    check_status(
        resolve!(
            c,
            resolve_boolean,
            v1::ResolveBooleanRequest,
            "bool",
            None,
            Some("elsewhere")
        ),
        Code::NotFound,
        "Flag not found",
    );
}

#[tokio::test]
async fn v1_resolve_all() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.v1().await;
    let ctx = pb_struct(json!({"email": "a@b.c"}));
    let r = c
        .resolve_all(v1::ResolveAllRequest { context: Some(ctx) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.metadata), empty());
    let flag = |k: &str| r.flags.get(k).unwrap_or_else(|| panic!("{k} listed"));
    use v1::any_flag::Value as V;
    assert_eq!(flag("bool").value, Some(V::BoolValue(true)));
    assert_eq!(
        json_of(flag("bool").metadata.clone()),
        md(&[("owner", "qa")])
    );
    assert_eq!(flag("str").value, Some(V::StringValue("hi".into())));
    assert_eq!(flag("int").value, Some(V::DoubleValue(10.0)));
    assert_eq!(flag("frac-int").value, Some(V::DoubleValue(1.9)));
    assert_eq!(
        flag("targeted").value,
        Some(V::StringValue("INTERNAL".into()))
    );
    assert_eq!(
        (
            flag("targeted").reason.as_str(),
            flag("targeted").variant.as_str()
        ),
        ("TARGETING_MATCH", "in")
    );
    match &flag("obj").value {
        Some(V::ObjectValue(s)) => assert_eq!(json_of(Some(s.clone()))["a"], json!(1)),
        other => panic!("object expected, got {other:?}"),
    }
    // DISABLED: listed with the zero value of the default's type.
    let d = flag("disabled");
    assert_eq!(
        (d.reason.as_str(), d.variant.as_str(), d.value.clone()),
        ("DISABLED", "", Some(V::BoolValue(false)))
    );
    // Per-flag errors become ERROR entries with the zero value.
    let p = flag("parse-error");
    assert_eq!(
        (p.reason.as_str(), p.value.clone()),
        ("ERROR", Some(V::DoubleValue(0.0)))
    );
    assert_eq!(flag("general").reason, "ERROR");
    // Flags without a default variant are skipped.
    assert!(!r.flags.contains_key("no-default"));
    assert_eq!(r.flags.len(), 12);

    let r = c
        .resolve_all(req(
            v1::ResolveAllRequest::default(),
            Some("flagSetId=other"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.flags.keys().collect::<Vec<_>>(), ["set-flag"]);
    assert_eq!(json_of(r.metadata), json!({"flagSetId": "other"}));
    let status = c
        .resolve_all(req(v1::ResolveAllRequest::default(), Some("x=y")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn context_merges_static_and_header_values() {
    let mut context = ContextConfig::default();
    context.static_values.insert("env".into(), json!("prod"));
    context
        .from_headers
        .push((http::HeaderName::from_static("x-team"), "team".into()));
    let server = EvalServer::start_with(
        FLAGS,
        Options {
            context,
            ..Options::default()
        },
    )
    .await;

    let mut c = server.v1().await;
    // The static value overrides the request's.
    let ctx = Some(json!({"env": "dev"}));
    let r = resolve!(
        c,
        resolve_string,
        v1::ResolveStringRequest,
        "team",
        ctx,
        None
    )
    .unwrap()
    .into_inner();
    assert_eq!(r.value, "prod");
    // The header value overrides both.
    let mut request = req(
        v1::ResolveStringRequest::default().with("team", Some(json!({"team": "red"}))),
        None,
    );
    request
        .metadata_mut()
        .insert("x-team", "blue".parse().unwrap());
    assert_eq!(
        c.resolve_string(request).await.unwrap().into_inner().value,
        "blue"
    );

    // The deprecated service ignores header mappings but applies static values.
    let mut s = server.schema().await;
    let mut request = req(
        schema::ResolveStringRequest::default().with("team", None),
        None,
    );
    request
        .metadata_mut()
        .insert("x-team", "blue".parse().unwrap());
    assert_eq!(
        s.resolve_string(request).await.unwrap().into_inner().value,
        "prod"
    );
}

#[tokio::test]
async fn schema_v1_service() {
    let server = EvalServer::start(FLAGS).await;
    let mut c = server.schema().await;
    let r = resolve!(c, resolve_boolean, schema::ResolveBooleanRequest, "bool")
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.value, r.reason.as_str(), r.variant.as_str()),
        (true, "STATIC", "on")
    );
    let r = resolve!(c, resolve_int, schema::ResolveIntRequest, "int")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 10);
    let r = resolve!(c, resolve_float, schema::ResolveFloatRequest, "float")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, 0.5);
    let r = resolve!(c, resolve_string, schema::ResolveStringRequest, "str")
        .unwrap()
        .into_inner();
    assert_eq!(r.value, "hi");
    let r = resolve!(c, resolve_object, schema::ResolveObjectRequest, "obj")
        .unwrap()
        .into_inner();
    assert_eq!(json_of(r.value)["b"], json!("x"));
    let r = resolve!(
        c,
        resolve_boolean,
        schema::ResolveBooleanRequest,
        "disabled"
    )
    .unwrap()
    .into_inner();
    assert_eq!((r.value, r.reason.as_str()), (false, "DISABLED"));
    // The deprecated service passes flagd's internal fallback reason through.
    let r = resolve!(
        c,
        resolve_string,
        schema::ResolveStringRequest,
        "no-default"
    )
    .unwrap()
    .into_inner();
    assert_eq!(
        (r.value.as_str(), r.reason.as_str(), r.variant.as_str()),
        ("", "FALLBACK", "")
    );
    check_status(
        resolve!(c, resolve_boolean, schema::ResolveBooleanRequest, "nope"),
        Code::NotFound,
        "Flag not found",
    );
    let r = c
        .resolve_all(schema::ResolveAllRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.flags.len(), 12);
    assert_eq!(
        r.flags["bool"].value,
        Some(schema::any_flag::Value::BoolValue(true))
    );
}

#[tokio::test]
async fn large_contexts_and_body_limit() {
    let limits = Limits {
        max_body_bytes: 64 * 1024,
        ..Limits::default()
    };
    let server = EvalServer::start_with(
        FLAGS,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    let mut c = server.v1().await;
    let big: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("k{i}"), json!(i))).collect();
    let ctx = Some(Value::Object(big));
    let r = resolve!(
        c,
        resolve_boolean,
        v1::ResolveBooleanRequest,
        "bool",
        ctx,
        None
    )
    .unwrap()
    .into_inner();
    assert!(r.value);
    let huge: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| (format!("key-{i}"), json!("x".repeat(16))))
        .collect();
    let status = resolve!(
        c,
        resolve_boolean,
        v1::ResolveBooleanRequest,
        "bool",
        Some(Value::Object(huge)),
        None
    )
    .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}

/// Reads the next stream message as (type, data as JSON or null); fails after 10 s.
async fn next_event<S, M>(stream: &mut S) -> (String, Value)
where
    S: futures::Stream<Item = Result<M, tonic::Status>> + Unpin,
    M: Pair,
{
    use futures::StreamExt as _;
    let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event ok");
    let (kind, data) = item.pair();
    (kind, data.map(|d| json_of(Some(d))).unwrap_or(Value::Null))
}

/// The next event that is not a keep-alive.
async fn next_change<S, M>(stream: &mut S) -> (String, Value)
where
    S: futures::Stream<Item = Result<M, tonic::Status>> + Unpin,
    M: Pair,
{
    loop {
        let event = next_event(stream).await;
        if event.0 != "keep_alive" {
            return event;
        }
    }
}

/// The (type, data) of the three APIs' stream messages.
trait Pair {
    fn pair(self) -> (String, Option<pbjson_types::Struct>);
}

macro_rules! into_pair {
    ($($t:ty),*) => {$(
        impl Pair for $t {
            fn pair(self) -> (String, Option<pbjson_types::Struct>) { (self.r#type, self.data) }
        }
    )*};
}
into_pair!(
    v1::EventStreamResponse,
    v2::EventStreamResponse,
    schema::EventStreamResponse
);

const CHANGED: &str = r#"{"flags": {
  "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
  "str": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"}, "defaultVariant": "hi"},
  "new": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"}
}}"#;

const INITIAL: &str = r#"{"flags": {
  "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
  "str": {"state": "ENABLED", "variants": {"hi": "hi", "bye": "bye"}, "defaultVariant": "hi"},
  "gone": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a"},
  "set-flag": {"state": "ENABLED", "variants": {"a": "A"}, "defaultVariant": "a", "metadata": {"flagSetId": "other"}}
}}"#;

#[tokio::test]
async fn event_stream_v1_lifecycle() {
    let server = EvalServer::start(INITIAL).await;
    let mut c = server.v1().await;
    let mut stream = c
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        next_event(&mut stream).await,
        ("provider_ready".into(), empty())
    );

    server.apply(CHANGED);
    let (kind, data) = next_event(&mut stream).await;
    assert_eq!(kind, "configuration_change");
    assert_eq!(
        data,
        json!({"flags": {
            "bool": {"type": "update"},
            "gone": {"type": "delete"},
            "new": {"type": "write"},
            "set-flag": {"type": "delete"}
        }})
    );

    server.begin_shutdown();
    assert_eq!(
        next_event(&mut stream).await,
        ("provider_shutdown".into(), empty())
    );
    use futures::StreamExt as _;
    assert!(
        stream.next().await.is_none(),
        "the stream ends after provider_shutdown"
    );
    server.stop().await;
}

#[tokio::test]
async fn event_stream_filters_by_selector_and_sends_keep_alive() {
    let limits = Limits {
        keep_alive: Duration::from_millis(200),
        ..Limits::default()
    };
    let server = EvalServer::start_with(
        INITIAL,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    let mut c = server.v2().await;
    let mut stream = c
        .event_stream(req(v2::EventStreamRequest {}, Some("flagSetId=other")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.0, "provider_ready");
    // A change outside the selected set sends nothing; the next message is a keep-alive.
    server.apply(&INITIAL.replace(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#));
    assert_eq!(
        next_event(&mut stream).await,
        ("keep_alive".into(), Value::Null)
    );
    server.apply(CHANGED);
    assert_eq!(
        next_change(&mut stream).await,
        (
            "configuration_change".into(),
            json!({"flags": {"set-flag": {"type": "delete"}}})
        )
    );

    let mut s = server.schema().await;
    let mut stream = s
        .event_stream(schema::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.0, "provider_ready");
    let status = c
        .event_stream(req(v2::EventStreamRequest {}, Some("bad=1")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn event_stream_deadline() {
    let limits = Limits {
        stream_deadline: Some(Duration::from_millis(300)),
        ..Limits::default()
    };
    let server = EvalServer::start_with(
        INITIAL,
        Options {
            limits,
            ..Options::default()
        },
    )
    .await;
    let mut c = server.v1().await;
    let mut stream = c
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.0, "provider_ready");
    use futures::StreamExt as _;
    let end = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap();
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "stream closed due to server-side timeout");

    // schema.v1 has no deadline: it is still open after the v1 stream was closed.
    let mut s = server.schema().await;
    let mut stream = s
        .event_stream(schema::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut stream).await.0, "provider_ready");
    let mut v1_stream = c
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_event(&mut v1_stream).await.0, "provider_ready");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), v1_stream.next())
            .await
            .unwrap()
            .unwrap()
            .is_err()
    );
    server.apply(CHANGED);
    assert_eq!(next_change(&mut stream).await.0, "configuration_change");
}
