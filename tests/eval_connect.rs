//! The evaluation services over Connect (JSON and binary, HTTP/1.1 with reqwest) and
//! gRPC-Web: exact JSON bodies, flagd's error codes and HTTP statuses, protocol errors,
//! EventStream framing, and CORS.

use std::time::Duration;

use flagd_rs::proto::flagd::evaluation::v1;
use flagd_rs::state::Limits;
use flagd_rs_tests::eval::{EvalServer, FLAGS, FrameReader, Options, envelope, split_envelopes};
use prost::Message as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "/flagd.evaluation.v1.Service/";
const V2: &str = "/flagd.evaluation.v2.Service/";
const SCHEMA: &str = "/schema.v1.Service/";

fn client() -> reqwest::Client {
    reqwest::Client::builder().http1_only().build().unwrap()
}

/// POSTs `body` as JSON to `path`; returns status, content type and body as JSON.
async fn post(
    server: &EvalServer,
    path: &str,
    body: &str,
    selector: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut r = client()
        .post(server.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = selector {
        r = r.header("flagd-selector", s);
    }
    let response = r.send().await.unwrap();
    let status = response.status();
    let ct = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, ct, body)
}

#[track_caller]
fn ok(result: (StatusCode, String, Value), expected: Value) {
    assert_eq!(result.0, StatusCode::OK, "{result:?}");
    assert_eq!(result.1, "application/json");
    assert_eq!(result.2, expected);
}

#[track_caller]
fn err(result: (StatusCode, String, Value), status: u16, code: &str, message: &str) {
    assert_eq!(result.0.as_u16(), status, "{result:?}");
    assert_eq!(result.1, "application/json");
    assert_eq!(result.2, json!({"code": code, "message": message}));
}

#[tokio::test]
async fn v1_json_bodies() {
    let server = EvalServer::start(FLAGS).await;
    let md = json!({"version": "1"});
    let p = |m: &str| format!("{V1}{m}");
    ok(
        post(&server, &p("ResolveBoolean"), r#"{"flagKey":"bool"}"#, None).await,
        json!({"value": true, "reason": "STATIC", "variant": "on", "metadata": {"version": "1", "owner": "qa"}}),
    );
    ok(
        post(
            &server,
            &p("ResolveString"),
            r#"{"flag_key":"str","context":{}}"#,
            None,
        )
        .await,
        json!({"value": "hi", "reason": "STATIC", "variant": "hi", "metadata": md}),
    );
    // int64 is a JSON string in proto3 JSON.
    ok(
        post(&server, &p("ResolveInt"), r#"{"flagKey":"frac-int"}"#, None).await,
        json!({"value": "1", "reason": "STATIC", "variant": "a", "metadata": md}),
    );
    ok(
        post(
            &server,
            &p("ResolveFloat"),
            r#"{"flagKey":"int","unknownField":[1]}"#,
            None,
        )
        .await,
        json!({"value": 10, "reason": "STATIC", "variant": "ten", "metadata": md}),
    );
    ok(
        post(&server, &p("ResolveObject"), r#"{"flagKey":"obj"}"#, None).await,
        json!({"value": {"a": 1, "b": "x", "c": [true, null]}, "reason": "STATIC", "variant": "tpl", "metadata": md}),
    );
    ok(
        post(
            &server,
            &p("ResolveString"),
            r#"{"flagKey":"targeted","context":{"email":"a@b.c"}}"#,
            None,
        )
        .await,
        json!({"value": "INTERNAL", "reason": "TARGETING_MATCH", "variant": "in", "metadata": md}),
    );
    // DISABLED: zero value, empty variant, all fields emitted.
    ok(
        post(&server, &p("ResolveInt"), r#"{"flagKey":"disabled"}"#, None).await,
        json!({"value": "0", "reason": "DISABLED", "variant": "", "metadata": {"version": "1", "owner": "ops"}}),
    );
    ok(
        post(
            &server,
            &p("ResolveObject"),
            r#"{"flagKey":"disabled"}"#,
            None,
        )
        .await,
        json!({"value": {}, "reason": "DISABLED", "variant": "", "metadata": {"version": "1", "owner": "ops"}}),
    );

    let (status, _, all) = post(
        &server,
        &p("ResolveAll"),
        r#"{"context":{"email":"a@b.c"}}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all["metadata"], json!({}));
    assert_eq!(
        all["flags"]["bool"],
        json!({"reason": "STATIC", "variant": "on", "boolValue": true, "metadata": {"version": "1", "owner": "qa"}})
    );
    assert_eq!(all["flags"]["int"]["doubleValue"], json!(10));
    assert_eq!(all["flags"]["str"]["stringValue"], json!("hi"));
    assert_eq!(all["flags"]["obj"]["objectValue"]["b"], json!("x"));
    assert_eq!(
        all["flags"]["disabled"],
        json!({"reason": "DISABLED", "variant": "", "boolValue": false, "metadata": {"version": "1", "owner": "ops"}})
    );
    assert_eq!(all["flags"]["parse-error"]["reason"], json!("ERROR"));
    assert!(all["flags"].get("no-default").is_none());

    let (_, _, all) = post(&server, &p("ResolveAll"), "{}", Some("flagSetId=other")).await;
    assert_eq!(all["metadata"], json!({"flagSetId": "other"}));
    assert_eq!(all["flags"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn v2_and_schema_json_bodies() {
    let server = EvalServer::start(FLAGS).await;
    ok(
        post(
            &server,
            &format!("{V2}ResolveBoolean"),
            r#"{"flagKey":"bool"}"#,
            None,
        )
        .await,
        json!({"value": true, "reason": "STATIC", "variant": "on", "metadata": {"version": "1", "owner": "qa"}}),
    );
    ok(
        post(
            &server,
            &format!("{V2}ResolveInt"),
            r#"{"flagKey":"int"}"#,
            None,
        )
        .await,
        json!({"value": "10", "reason": "STATIC", "variant": "ten", "metadata": {"version": "1"}}),
    );
    // Unset optional fields are omitted.
    ok(
        post(
            &server,
            &format!("{V2}ResolveString"),
            r#"{"flagKey":"no-default"}"#,
            None,
        )
        .await,
        json!({"reason": "DEFAULT", "metadata": {"version": "1"}}),
    );
    ok(
        post(
            &server,
            &format!("{V2}ResolveObject"),
            r#"{"flagKey":"disabled"}"#,
            None,
        )
        .await,
        json!({"reason": "DISABLED", "metadata": {"version": "1", "owner": "ops"}}),
    );
    ok(
        post(
            &server,
            &format!("{V2}ResolveFloat"),
            r#"{"flagKey":"float"}"#,
            None,
        )
        .await,
        json!({"value": 0.5, "reason": "STATIC", "variant": "half", "metadata": {"version": "1"}}),
    );
    ok(
        post(
            &server,
            &format!("{V2}ResolveObject"),
            r#"{"flagKey":"obj"}"#,
            None,
        )
        .await,
        json!({"value": {"a": 1, "b": "x", "c": [true, null]}, "reason": "STATIC", "variant": "tpl", "metadata": {"version": "1"}}),
    );
    // v2 has no ResolveAll.
    let (status, _, _) = post(&server, &format!("{V2}ResolveAll"), "{}", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    ok(
        post(
            &server,
            &format!("{SCHEMA}ResolveString"),
            r#"{"flagKey":"str"}"#,
            None,
        )
        .await,
        json!({"value": "hi", "reason": "STATIC", "variant": "hi", "metadata": {"version": "1"}}),
    );
    let (status, _, all) = post(&server, &format!("{SCHEMA}ResolveAll"), "{}", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        all["flags"]["bool"],
        json!({"reason": "STATIC", "variant": "on", "boolValue": true})
    );
    assert!(all.get("metadata").is_none());
}

#[tokio::test]
async fn errors_map_to_connect_codes_and_statuses() {
    let server = EvalServer::start(FLAGS).await;
    for prefix in [V1, V2, SCHEMA] {
        let p = |m: &str| format!("{prefix}{m}");
        err(
            post(
                &server,
                &p("ResolveBoolean"),
                r#"{"flagKey":"missing"}"#,
                None,
            )
            .await,
            404,
            "not_found",
            "Flag not found",
        );
        err(
            post(&server, &p("ResolveBoolean"), r#"{"flagKey":""}"#, None).await,
            404,
            "not_found",
            "Flag not found",
        );
        err(
            post(&server, &p("ResolveString"), r#"{"flagKey":"bool"}"#, None).await,
            400,
            "invalid_argument",
            "Type mismatch error",
        );
        err(
            post(
                &server,
                &p("ResolveInt"),
                r#"{"flagKey":"parse-error"}"#,
                None,
            )
            .await,
            500,
            "data_loss",
            "Error parsing input or configuration",
        );
        err(
            post(&server, &p("ResolveInt"), r#"{"flagKey":"general"}"#, None).await,
            500,
            "unknown",
            "General error",
        );
        err(
            post(
                &server,
                &p("ResolveInt"),
                r#"{"flagKey":"int"}"#,
                Some("nope=1"),
            )
            .await,
            400,
            "invalid_argument",
            "invalid selector key \"nope\", valid keys: \"flagSetId\", \"source\"",
        );
    }
    err(
        post(
            &server,
            &format!("{V1}ResolveString"),
            r#"{"flagKey":"no-default"}"#,
            None,
        )
        .await,
        404,
        "not_found",
        "Flag not found",
    );
}

#[tokio::test]
async fn malformed_requests() {
    let limits = Limits {
        max_body_bytes: 1024,
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
    let path = format!("{V1}ResolveBoolean");
    for body in ["", "{", "[]", r#"{"flagKey":5}"#, r#"{"context":"x"}"#] {
        let (status, ct, json) = post(&server, &path, body, None).await;
        assert_eq!(
            (status.as_u16(), ct.as_str()),
            (400, "application/json"),
            "{body}"
        );
        assert_eq!(json["code"], json!("invalid_argument"), "{body}");
    }
    let (_, _, json) = post(&server, &path, "", None).await;
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("zero-length payload is not a valid JSON object")
    );

    // Oversized body: resource_exhausted, HTTP 429.
    let big = format!(
        r#"{{"flagKey":"bool","context":{{"pad":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let (status, _, json) = post(&server, &path, &big, None).await;
    assert_eq!(status.as_u16(), 429);
    assert_eq!(json["code"], json!("resource_exhausted"));
    // Also without a Content-Length (chunked body).
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.clone().into_bytes())]);
    let response = client()
        .post(server.url(&path))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);

    // Binary proto: a valid message works; garbage is invalid_argument.
    let message = v1::ResolveBooleanRequest {
        flag_key: "bool".into(),
        context: None,
    };
    let response = client()
        .post(server.url(&path))
        .header("content-type", "application/proto")
        .body(message.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/proto");
    let decoded = v1::ResolveBooleanResponse::decode(response.bytes().await.unwrap()).unwrap();
    assert!(decoded.value);
    assert_eq!(decoded.reason, "STATIC");
    let response = client()
        .post(server.url(&path))
        .header("content-type", "application/proto")
        .body(vec![0xff, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["code"],
        json!("invalid_argument")
    );

    // Unknown procedure: 404; wrong content type: 415; wrong method: 405.
    let (status, _, json) = post(&server, &format!("{V1}Nope"), "{}", None).await;
    assert_eq!(status.as_u16(), 404);
    assert_eq!(json["code"], json!("unimplemented"));
    let (status, _, _) = post(&server, "/no.such.Service/Method", "{}", None).await;
    assert_eq!(status.as_u16(), 404);
    let response = client()
        .post(server.url(&path))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let response = client().get(server.url(&path)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    // Unsupported compression.
    let response = client()
        .post(server.url(&path))
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 501);
}

#[tokio::test]
async fn large_context_within_limit() {
    let server = EvalServer::start(FLAGS).await;
    let ctx: serde_json::Map<String, Value> = (0..5000)
        .map(|i| (format!("k{i}"), json!({"n": i, "s": "v"})))
        .collect();
    let body = json!({"flagKey": "targeted", "context": ctx}).to_string();
    assert!(body.len() < 1_000_000);
    let (status, _, json) = post(&server, &format!("{V1}ResolveString"), &body, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["value"], json!("EXTERNAL"));
    // Deeply nested contexts are refused, not a crash.
    let deep = format!(
        r#"{{"flagKey":"bool","context":{}1{}}}"#,
        r#"{"a":"#.repeat(200),
        "}".repeat(200)
    );
    let (status, _, _) = post(&server, &format!("{V1}ResolveBoolean"), &deep, None).await;
    assert_eq!(status.as_u16(), 400);
}

const INITIAL: &str = r#"{"flags": {
  "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
}}"#;
const CHANGED: &str = r#"{"flags": {
  "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
  "b": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}
}}"#;

async fn open_stream(
    server: &EvalServer,
    prefix: &str,
    codec: &str,
    selector: Option<&str>,
) -> FrameReader {
    let body = if codec == "json" {
        envelope(0, b"{}")
    } else {
        envelope(0, b"")
    };
    let mut r = client()
        .post(server.url(&format!("{prefix}EventStream")))
        .header("content-type", format!("application/connect+{codec}"))
        .header("connect-protocol-version", "1")
        .body(body);
    if let Some(s) = selector {
        r = r.header("flagd-selector", s);
    }
    let response = r.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        format!("application/connect+{codec}").as_str()
    );
    FrameReader::new(response)
}

#[tokio::test]
async fn event_stream_over_connect_json() {
    let limits = Limits {
        keep_alive: Duration::from_millis(300),
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
    let mut frames = open_stream(&server, V1, "json", None).await;
    assert_eq!(
        frames.next_json().await,
        Some((0, json!({"type": "provider_ready", "data": {}})))
    );
    // Idle: a keep-alive with `data: null`.
    assert_eq!(
        frames.next_json().await,
        Some((0, json!({"type": "keep_alive", "data": null})))
    );
    server.apply(CHANGED);
    let change = loop {
        let (flags, event) = frames.next_json().await.unwrap();
        assert_eq!(flags, 0);
        if event["type"] != json!("keep_alive") {
            break event;
        }
    };
    assert_eq!(
        change,
        json!({"type": "configuration_change", "data": {"flags": {"a": {"type": "update"}, "b": {"type": "write"}}}})
    );
    server.begin_shutdown();
    let shutdown = loop {
        let (_, event) = frames.next_json().await.unwrap();
        if event["type"] != json!("keep_alive") {
            break event;
        }
    };
    assert_eq!(shutdown, json!({"type": "provider_shutdown", "data": {}}));
    assert_eq!(frames.next_json().await, Some((2, json!({}))));
    assert_eq!(frames.next().await, None);
    server.stop().await;
}

#[tokio::test]
async fn event_stream_over_connect_proto_and_errors() {
    let limits = Limits {
        stream_deadline: Some(Duration::from_millis(200)),
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
    let mut frames = open_stream(&server, V2, "proto", None).await;
    let (flags, payload) = frames.next().await.unwrap();
    assert_eq!(flags, 0);
    let ready = v1::EventStreamResponse::decode(payload.as_slice()).unwrap();
    assert_eq!(ready.r#type, "provider_ready");
    // The deadline ends the stream with an error in the end-of-stream message.
    let (flags, payload) = frames.next().await.unwrap();
    assert_eq!(flags, 2);
    assert_eq!(
        serde_json::from_slice::<Value>(&payload).unwrap(),
        json!({"error": {"code": "deadline_exceeded", "message": "stream closed due to server-side timeout"}})
    );

    // An invalid selector is reported in the end-of-stream message.
    let mut frames = open_stream(&server, SCHEMA, "json", Some("bad=1")).await;
    let (flags, end) = frames.next_json().await.unwrap();
    assert_eq!(flags, 2);
    assert_eq!(end["error"]["code"], json!("invalid_argument"));

    // A unary content type on the streaming procedure is refused.
    let response = client()
        .post(server.url(&format!("{V1}EventStream")))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
}

#[tokio::test]
async fn grpc_web_unary() {
    let server = EvalServer::start(FLAGS).await;
    let message = v1::ResolveStringRequest {
        flag_key: "str".into(),
        context: None,
    };
    let response = client()
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(envelope(0, &message.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let bytes = response.bytes().await.unwrap();
    let (frames, rest) = split_envelopes(&bytes);
    assert!(rest.is_empty());
    assert_eq!(frames.len(), 2, "message and trailers");
    let decoded = v1::ResolveStringResponse::decode(frames[0].1.as_slice()).unwrap();
    assert_eq!(
        (decoded.value.as_str(), decoded.reason.as_str()),
        ("hi", "STATIC")
    );
    assert_eq!(frames[1].0, 0x80);
    assert!(String::from_utf8_lossy(&frames[1].1).contains("grpc-status:0"));

    // Errors arrive as trailers.
    let message = v1::ResolveStringRequest {
        flag_key: "missing".into(),
        context: None,
    };
    let response = client()
        .post(server.url(&format!("{V1}ResolveString")))
        .header("content-type", "application/grpc-web+proto")
        .body(envelope(0, &message.encode_to_vec()))
        .send()
        .await
        .unwrap();
    let status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await.unwrap();
    let trailers = String::from_utf8_lossy(&bytes).to_string();
    assert!(
        status.as_deref() == Some("5") || trailers.contains("grpc-status:5"),
        "{status:?} {trailers}"
    );
}

#[tokio::test]
async fn grpc_web_within_and_past_the_body_limit() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    let limits = Limits {
        max_body_bytes: 1024,
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
    let pad = pbjson_types::Struct {
        fields: [(
            "pad".to_owned(),
            pbjson_types::Value {
                kind: Some(pbjson_types::value::Kind::StringValue("x".repeat(4096))),
            },
        )]
        .into(),
    };
    // The response's frames, each base64 of its own in the text form.
    let frames_of = |text: bool, body: &[u8]| -> Vec<(u8, Vec<u8>)> {
        let bytes = if text {
            let body = std::str::from_utf8(body).unwrap();
            body.split_inclusive('=')
                .flat_map(|chunk| STANDARD.decode(chunk).unwrap())
                .collect()
        } else {
            body.to_vec()
        };
        let (frames, rest) = split_envelopes(&bytes);
        assert!(rest.is_empty());
        frames
    };
    for text in [false, true] {
        let content_type = if text {
            "application/grpc-web-text"
        } else {
            "application/grpc-web+proto"
        };
        let call = |context: Option<pbjson_types::Struct>| {
            let message = v1::ResolveStringRequest {
                flag_key: "str".into(),
                context,
            };
            let body = envelope(0, &message.encode_to_vec());
            client()
                .post(server.url(&format!("{V1}ResolveString")))
                .header("content-type", content_type)
                .header("accept", content_type)
                .body(if text {
                    STANDARD.encode(body).into_bytes()
                } else {
                    body
                })
                .send()
        };
        // Within the limit. The text form's first bytes ("AAAAA") would read as a length
        // prefix of about 1 GiB: only the decoded message's prefix counts.
        let response = call(None).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{content_type}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type.trim_end_matches("+proto")),
            "{content_type}"
        );
        let frames = frames_of(text, &response.bytes().await.unwrap());
        let decoded = v1::ResolveStringResponse::decode(frames[0].1.as_slice()).unwrap();
        assert_eq!(
            (decoded.value.as_str(), decoded.reason.as_str()),
            ("hi", "STATIC")
        );
        assert!(String::from_utf8_lossy(&frames[1].1).contains("grpc-status:0"));

        // Past it: RESOURCE_EXHAUSTED, as over plain gRPC.
        let response = call(Some(pad.clone())).await.unwrap();
        let status = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        let trailers = match status {
            Some(_) => String::new(),
            None => String::from_utf8_lossy(&frames_of(text, &body)[0].1).into_owned(),
        };
        assert!(
            status.as_deref() == Some("8") || trailers.contains("grpc-status:8"),
            "{content_type}: {status:?} {trailers}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn cors_preflight_and_exposed_headers() {
    let server = EvalServer::start(FLAGS).await;
    let response = client()
        .request(
            reqwest::Method::OPTIONS,
            server.url(&format!("{V1}ResolveBoolean")),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,flagd-selector",
        )
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let allowed = response.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("flagd-selector"), "{allowed}");

    let response = client()
        .post(server.url(&format!("{V1}ResolveBoolean")))
        .header("origin", "https://app.example")
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"bool"}"#)
        .send()
        .await
        .unwrap();
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("grpc-status") && exposed.contains("connect-content-encoding"),
        "{exposed}"
    );

    let options = Options {
        cors_origins: vec!["https://ok.example".into()],
        ..Options::default()
    };
    let server = EvalServer::start_with(FLAGS, options).await;
    let response = client()
        .post(server.url(&format!("{V1}ResolveBoolean")))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"bool"}"#)
        .send()
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    let response = client()
        .post(server.url(&format!("{V1}ResolveBoolean")))
        .header("origin", "https://ok.example")
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"bool"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://ok.example"
    );
}

#[tokio::test]
async fn testbed_flags_over_connect() {
    let Some(dir) = flagd_rs_tests::require::testbed("the testbed flags over Connect") else {
        return;
    };
    let flags = std::fs::read_to_string(dir.join("flags").join("testing-flags.json")).unwrap();
    let server = EvalServer::start(&flags).await;
    let (status, _, json) = post(
        &server,
        &format!("{V2}ResolveObject"),
        r#"{"flagKey":"object-flag"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["value"]["title"], json!("Check out these pics!"));
    assert_eq!(json["variant"], json!("template"));
    let (_, _, json) = post(
        &server,
        &format!("{V1}ResolveInt"),
        r#"{"flagKey":"integer-flag"}"#,
        None,
    )
    .await;
    assert_eq!(json["value"], json!("10"));
}

#[tokio::test]
async fn oversized_headers_are_refused() {
    let limits = Limits {
        max_header_bytes: 8192,
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
    let response = client()
        .post(server.url(&format!("{V1}ResolveBoolean")))
        .header("content-type", "application/json")
        .header("x-padding", "x".repeat(16 * 1024))
        .body(r#"{"flagKey":"bool"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 431);
    let (status, _, _) = post(
        &server,
        &format!("{V1}ResolveBoolean"),
        r#"{"flagKey":"bool"}"#,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn serves_on_a_unix_socket() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flagd.sock");
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = EvalServer::start(FLAGS).await;
    let state = server.state();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(flagd_rs::server::http::serve(
        flagd_rs::server::http::Listener::Unix(listener),
        flagd_rs::server::eval::router(state),
        None,
        0,
        rx,
    ));
    let body = r#"{"flagKey":"str"}"#;
    let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let request = format!(
        "POST {V2}ResolveString HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""value":"hi""#), "{response}");
    stop.send(true).unwrap();
    serving.await.unwrap().unwrap();
}

/// A self-signed certificate for `localhost` / 127.0.0.1 (P-256, valid for a century), used only
/// by the TLS test.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUFzF8J445xftkbi8ylNF777CXu6AwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTA4MDAwNFoYDzIxMjYxMTA1
MDgwMDA0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ427GUaGN162OO7qekbIPsWMCr22hsUsoEiPdok5nyhfpgjJOPAW7K
QFEP+w3nIwvD6SBe+P1T9/KsyRRc5Fvno2wwajAdBgNVHQ4EFgQUlWMywKLu86Hj
jMSNtQHUUDco7wgwHwYDVR0jBBgwFoAUlWMywKLu86HjjMSNtQHUUDco7wgwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0E
AwIDSAAwRQIgZpzGX+mpcex/aTjAQ5M820eoPsmlELduh9PHNaJSDaACIQDNlaTB
Jf1kUguwZfr/hTAaTXjv4/4ht19bItRu6eINSg==
-----END CERTIFICATE-----
";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYZbHWvcrVZRcv/sG
oCXj+cHF92x8ezhkgjBeGFsBX/ahRANCAAQ427GUaGN162OO7qekbIPsWMCr22hs
UsoEiPdok5nyhfpgjJOPAW7KQFEP+w3nIwvD6SBe+P1T9/KsyRRc5Fvn
-----END PRIVATE KEY-----
";

#[tokio::test]
async fn serves_tls_with_alpn() {
    use flagd_rs::server::http;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, TEST_CERT).unwrap();
    std::fs::write(&key, TEST_KEY).unwrap();
    assert!(http::load_tls(&cert, &dir.path().join("missing.pem")).is_err());
    assert!(
        http::load_tls(&key, &key).is_err(),
        "a key is not a certificate"
    );
    let tls = http::load_tls(&cert, &key).unwrap();

    let server = EvalServer::start(FLAGS).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let serving = tokio::spawn(http::serve(
        http::Listener::Tcp(listener),
        flagd_rs::server::eval::router(server.state()),
        Some(tls),
        0,
        rx,
    ));
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}{V1}ResolveBoolean", addr.port());
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"bool"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "ALPN picks h2"
    );
    assert_eq!(
        response.json::<Value>().await.unwrap()["value"],
        json!(true)
    );
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .build()
        .unwrap();
    let response = client
        .post(url.replace("ResolveBoolean", "ResolveString"))
        .header("content-type", "application/json")
        .body(r#"{"flagKey":"str"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body = response.json::<Value>().await.unwrap();
    assert_eq!(body["value"], json!("hi"), "{body}");
    stop.send(true).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn raw_json_bytes_match_protojson() {
    let server = EvalServer::start(FLAGS).await;
    let raw = |path: String, body: &'static str| {
        let url = server.url(&path);
        async move {
            client()
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        raw(format!("{V1}ResolveFloat"), r#"{"flagKey":"int"}"#).await,
        r#"{"value":10,"reason":"STATIC","variant":"ten","metadata":{"version":"1"}}"#
    );
    assert_eq!(
        raw(format!("{V1}ResolveInt"), r#"{"flagKey":"int"}"#).await,
        r#"{"value":"10","reason":"STATIC","variant":"ten","metadata":{"version":"1"}}"#
    );
    // Unset optional fields are left out; metadata keys come in no fixed order.
    let body = raw(format!("{V2}ResolveBoolean"), r#"{"flagKey":"disabled"}"#).await;
    assert!(
        body.starts_with(r#"{"reason":"DISABLED","metadata":{"#),
        "{body}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"reason": "DISABLED", "metadata": {"owner": "ops", "version": "1"}})
    );
    assert_eq!(
        raw(format!("{V1}ResolveBoolean"), r#"{"flagKey":"missing"}"#).await,
        r#"{"code":"not_found","message":"Flag not found"}"#
    );
}

/// The same `--cors-origin` wildcard the OFREP port accepts works on the evaluation port, for
/// Connect requests and for gRPC-Web, and origins compare without regard to case.
#[tokio::test]
async fn cors_wildcard_origin_on_the_evaluation_port() {
    let options = Options {
        cors_origins: vec!["https://*.Example.com".into()],
        ..Options::default()
    };
    let server = EvalServer::start_with(FLAGS, options).await;
    let allowed = |origin: &'static str| {
        let request = client()
            .post(server.url(&format!("{V1}ResolveBoolean")))
            .header("origin", origin)
            .header("content-type", "application/json")
            .body(r#"{"flagKey":"bool"}"#);
        async move {
            let response = request.send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap().to_owned())
        }
    };
    assert_eq!(
        allowed("https://app.example.com").await.as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        allowed("https://A.B.EXAMPLE.COM").await.as_deref(),
        Some("https://A.B.EXAMPLE.COM")
    );
    assert_eq!(allowed("https://example.com").await, None);
    assert_eq!(allowed("https://app.example.com.evil.test").await, None);

    let preflight = client()
        .request(
            reqwest::Method::OPTIONS,
            server.url(&format!("{V1}ResolveBoolean")),
        )
        .header("origin", "https://web.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type,x-grpc-web")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://web.example.com"
    );
}
