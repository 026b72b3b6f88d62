//! The management port (probes, metrics, gRPC health) and the daemon's lifecycle, end to end.

use std::time::Duration;

use flagd_rs::config::Config;
use flagd_rs_tests::daemon::{self, TestDaemon, config_for};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const FLAGS: &str = r#"{"flags":{
  "bool-flag":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"},
  "targeted":{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a",
    "targeting":{"if":[{"==":[{"var":"tier"},"gold"]},"b","a"]}}
}}"#;

fn flag_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("flags.json");
    std::fs::write(&path, FLAGS).unwrap();
    path
}

async fn wait_for_status(port: u16, path: &str, status: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if daemon::get(port, path)
            .await
            .is_ok_and(|r| r.status == status)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never answered {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_first_sync() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("later.json");
    let d = TestDaemon::spawn(config_for(&[&missing])).await;

    // Live at once, but not ready while the only source has never delivered flags.
    wait_for_status(d.management_port, "/healthz", 200).await;
    let health = daemon::get(d.management_port, "/healthz").await.unwrap();
    assert!(health.body.is_empty());
    let ready = daemon::get(d.management_port, "/readyz").await.unwrap();
    assert_eq!(ready.status, 412, "{}", ready.text());

    // The file appears: the source syncs and the daemon becomes ready.
    std::fs::write(&missing, FLAGS).unwrap();
    d.wait_ready().await;

    // Readiness is sticky: a broken document later does not make the daemon unready.
    std::fs::write(&missing, "{\"flags\":").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        daemon::get(d.management_port, "/readyz")
            .await
            .unwrap()
            .status,
        200
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn bundled_flags_make_the_daemon_ready() {
    let d = TestDaemon::start_with(Config::default()).await;
    let r = daemon::post_json(
        d.eval_port(),
        "/flagd.evaluation.v1.Service/ResolveBoolean",
        r#"{"flagKey":"canary-deployment","context":{"environment":"prod"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["value"], true, "{body}");
    assert_eq!(body["reason"], "TARGETING_MATCH", "{body}");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_count_evaluations_with_flagd_names() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(&[flag_file(&dir)]).await;
    let eval = |body: &'static str| {
        let port = d.eval_port();
        async move {
            let r = daemon::post_json(port, "/flagd.evaluation.v1.Service/ResolveString", body)
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
        }
    };
    for _ in 0..3 {
        eval(r#"{"flagKey":"targeted","context":{"tier":"gold"}}"#).await;
    }
    eval(r#"{"flagKey":"targeted","context":{}}"#).await;
    let missing = daemon::post_json(
        d.eval_port(),
        "/flagd.evaluation.v1.Service/ResolveString",
        r#"{"flagKey":"no-such-flag","context":{}}"#,
    )
    .await
    .unwrap();
    assert_eq!(missing.status, 404, "{}", missing.text());

    let m = daemon::get(d.management_port, "/metrics").await.unwrap();
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{:?}",
        m.headers
    );
    let text = m.text();
    let sample = |needles: &[&str]| -> Option<f64> {
        text.lines()
            .find(|l| needles.iter().all(|n| l.contains(n)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    let impressions = [
        "feature_flag_flagd_impression_total{",
        "feature_flag_key=\"targeted\"",
    ];
    assert_eq!(
        sample(&[
            impressions[0],
            impressions[1],
            "feature_flag_result_variant=\"b\""
        ]),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&[
            impressions[0],
            impressions[1],
            "feature_flag_result_variant=\"a\"",
            "TARGETING_MATCH"
        ]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&[
            "feature_flag_flagd_result_reason_total{",
            "feature_flag_reason=\"TARGETING_MATCH\"",
            "targeted"
        ]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&[
            "feature_flag_flagd_result_reason_total{",
            "ExceptionTypeKeyName=\"FLAG_NOT_FOUND\""
        ]),
        Some(1.0),
        "{text}"
    );
    assert!(
        !text.contains("no-such-flag"),
        "unknown keys must not create series:\n{text}"
    );
    assert!(text.contains("flagd_rs_build_info{"), "{text}");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_health_is_served_on_the_management_port() {
    let dir = tempfile::tempdir().unwrap();
    let d = TestDaemon::start(&[flag_file(&dir)]).await;
    let channel = tonic::transport::Endpoint::from_shared(d.management_url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let resp = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(resp.into_inner().status, ServingStatus::Serving as i32);
    // HTTP requests on the same port still reach the probes.
    assert_eq!(
        daemon::get(d.management_port, "/healthz")
            .await
            .unwrap()
            .status,
        200
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_returns_ok() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start(&[flag_file(&dir)]).await;
    let port = d.eval_port();

    // Start a request and hold its body back. `Expect: 100-continue` makes the server confirm
    // that the handler is already reading the body, so the request is provably in flight.
    let body = br#"{"flagKey":"bool-flag","context":{}}"#;
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /flagd.evaluation.v1.Service/ResolveBoolean HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut interim),
    )
    .await
    .expect("100 Continue")
    .unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    d.trigger_shutdown();
    // Wait until the daemon has stopped accepting connections, so the request is completed
    // during the drain and not before it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener stayed open after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.write_all(body).await.unwrap();
    let resp = daemon::read_response(&mut stream).await.unwrap();
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(resp.text().contains("\"value\":true"), "{}", resp.text());

    d.join().await.unwrap();
}
