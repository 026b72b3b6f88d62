//! The evaluation budget end to end: a context that turns a flag's targeting into billions of
//! iterations is answered with GENERAL on every protocol, the daemon keeps serving, and the
//! management port counts each such evaluation.

use flagd_rs::config::Config;
use flagd_rs::proto::flagd::evaluation::v1;
use flagd_rs_tests::daemon::{self, TestDaemon};
use flagd_rs_tests::eval::pb_struct;
use serde_json::{Value, json};

/// `hostile` evaluates whatever rule the context sends in `x` (flagd re-reads a single-key
/// object returned by an `if` branch as a rule); `plain` is an ordinary targeted flag.
const FLAGS: &str = r#"{"flags":{
  "hostile":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off",
    "targeting":{"if":[true,{"var":"x"},null]}},
  "plain":{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a",
    "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"b","a"]}}
}}"#;

/// The message every protocol carries for the default budget.
const EXCEEDED: &str = "evaluation budget exceeded: more than 1000000 operations";

/// A context asking for 50,000 x 50,000 iterations, each reading the outer scope.
fn hostile_context() -> Value {
    json!({
        "x": {"some": [{"var": "big"}, {"some": [{"var": "big"}, {"==": [1, 2]}]}]},
        "big": vec![0; 50_000],
    })
}

fn body(flag_context: &Value, key: Option<&str>) -> String {
    match key {
        Some(key) => json!({"flagKey": key, "context": flag_context}).to_string(),
        None => json!({"context": flag_context}).to_string(),
    }
}

fn json_body(r: &daemon::HttpResponse) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.text()))
}

/// The value of the first metrics sample line containing every needle.
fn sample(text: &str, needles: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| needles.iter().all(|n| l.contains(n)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn hostile_contexts_get_general_on_every_protocol_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    let d = TestDaemon::start(&[&path]).await;
    let ctx = hostile_context();
    let connect = "/flagd.evaluation.v1.Service/ResolveBoolean";

    // Connect: GENERAL is `unknown` (HTTP 500), with the budget message. A normal request sent
    // alongside is answered as usual.
    let request = body(&ctx, Some("hostile"));
    let (hostile, normal) = tokio::join!(
        daemon::post_json(d.eval_port(), connect, &request),
        daemon::post_json(
            d.eval_port(),
            "/flagd.evaluation.v1.Service/ResolveString",
            r#"{"flagKey":"plain","context":{"tier":"gold"}}"#,
        ),
    );
    let hostile = hostile.unwrap();
    assert_eq!(hostile.status, 500, "{}", hostile.text());
    assert_eq!(
        json_body(&hostile),
        json!({"code": "unknown", "message": EXCEEDED})
    );
    let normal = normal.unwrap();
    assert_eq!(normal.status, 200, "{}", normal.text());
    assert_eq!(json_body(&normal)["value"], "B");

    // gRPC: UNKNOWN with the same message.
    let mut grpc = v1::service_client::ServiceClient::connect(d.eval_url())
        .await
        .unwrap();
    let status = grpc
        .resolve_boolean(v1::ResolveBooleanRequest {
            flag_key: "hostile".into(),
            context: Some(pb_struct(ctx.clone())),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unknown, "{status:?}");
    assert_eq!(status.message(), EXCEEDED);

    // ResolveAll: the flag's entry is an error, the others resolve.
    let all = daemon::post_json(
        d.eval_port(),
        "/flagd.evaluation.v1.Service/ResolveAll",
        &body(&ctx, None),
    )
    .await
    .unwrap();
    assert_eq!(all.status, 200, "{}", all.text());
    let all = json_body(&all);
    assert_eq!(all["flags"]["hostile"]["reason"], "ERROR", "{all}");
    assert_eq!(all["flags"]["plain"]["reason"], "TARGETING_MATCH", "{all}");

    // OFREP, one flag and all flags: GENERAL with the budget in the details.
    let one = daemon::post_json(
        d.ofrep_port,
        "/ofrep/v1/evaluate/flags/hostile",
        &body(&ctx, None),
    )
    .await
    .unwrap();
    assert_eq!(one.status, 400, "{}", one.text());
    let one = json_body(&one);
    assert_eq!(one["key"], "hostile", "{one}");
    assert_eq!(one["errorCode"], "GENERAL", "{one}");
    assert_eq!(
        one["errorDetails"],
        format!("flag `hostile`: {EXCEEDED}"),
        "{one}"
    );
    let bulk = daemon::post_json(d.ofrep_port, "/ofrep/v1/evaluate/flags", &body(&ctx, None))
        .await
        .unwrap();
    assert_eq!(bulk.status, 200, "{}", bulk.text());
    let bulk = json_body(&bulk);
    let entry = |key: &str| {
        bulk["flags"]
            .as_array()
            .and_then(|flags| flags.iter().find(|f| f["key"] == key))
            .cloned()
            .unwrap_or_else(|| panic!("no `{key}` in {bulk}"))
    };
    assert_eq!(entry("hostile")["errorCode"], "GENERAL", "{bulk}");
    assert_eq!(entry("plain")["value"], "A", "{bulk}");

    // Still serving, and still ready.
    let after = daemon::post_json(
        d.eval_port(),
        "/flagd.evaluation.v1.Service/ResolveString",
        r#"{"flagKey":"plain","context":{}}"#,
    )
    .await
    .unwrap();
    assert_eq!(after.status, 200, "{}", after.text());
    assert_eq!(
        daemon::get(d.management_port, "/readyz")
            .await
            .unwrap()
            .status,
        200
    );

    // Five evaluations hit the budget: Connect, gRPC, ResolveAll, OFREP single and bulk.
    let m = daemon::get(d.management_port, "/metrics").await.unwrap();
    assert_eq!(m.status, 200);
    let text = m.text();
    assert_eq!(
        sample(
            &text,
            &[
                "flagd_rs_evaluation_budget_exceeded_total{",
                "feature_flag_key=\"hostile\""
            ]
        ),
        Some(5.0),
        "{text}"
    );
    assert!(
        sample(
            &text,
            &[
                "flagd_rs_evaluation_budget_exceeded_total{",
                "feature_flag_key=\"plain\""
            ]
        )
        .is_none(),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &[
                "feature_flag_flagd_result_reason_total{",
                "ExceptionTypeKeyName=\"GENERAL\""
            ]
        ),
        Some(5.0),
        "{text}"
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn the_budget_follows_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    // A context rule that needs about 20,000 operations.
    let scan = json!({"some": [{"var": "big"}, {"==": [1, 2]}]});
    let ctx = json!({"x": {"if": [scan, "on", "off"]}, "big": vec![0; 10_000]});
    let request = body(&ctx, Some("hostile"));
    let connect = "/flagd.evaluation.v1.Service/ResolveBoolean";

    let d = TestDaemon::start(&[&path]).await;
    let r = daemon::post_json(d.eval_port(), connect, &request)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        json_body(&r),
        json!({"value": false, "reason": "TARGETING_MATCH", "variant": "off", "metadata": {}})
    );
    d.stop().await.unwrap();

    let mut config = Config::from_args([
        "start",
        "--uri",
        &format!("file:{}", path.display()),
        "--max-evaluation-ops",
        "1000",
    ])
    .unwrap();
    (config.sync_port, config.ofrep_port) = (0, 0);
    let d = TestDaemon::start_with(config).await;
    let r = daemon::post_json(d.eval_port(), connect, &request)
        .await
        .unwrap();
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        json_body(&r),
        json!({"code": "unknown", "message": "evaluation budget exceeded: more than 1000 operations"})
    );
    d.stop().await.unwrap();
}
