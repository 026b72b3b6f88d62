//! The admin API against what a web page can make a browser send: cross-origin "simple"
//! requests, DNS rebinding (a foreign `Host`), preflights; and the admin port's TLS and binding
//! rules.

use std::path::Path;

use flagd_rs::Listeners;
use flagd_rs::config::{Config, TlsPaths};
use flagd_rs_tests::daemon::{TestDaemon, config_for};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const FLAGS: &str = r#"{
  "flags": {
    "checkout": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"},
                 "defaultVariant": "blue"},
    "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 100], ["canary", 0]]}}
  }
}"#;

const PLAN: &str = r#"{"plan": {"variant": "canary", "baseline": "stable",
  "steps": [{"weight": 10, "hold": "1h"}, {"weight": 100}]}}"#;

/// Every route that changes the authority, with a body it would accept.
fn mutating_routes() -> Vec<(Method, &'static str, &'static str)> {
    vec![
        (
            Method::PUT,
            "/v1/flags/checkout/override",
            r#"{"state":"ENABLED"}"#,
        ),
        (Method::DELETE, "/v1/flags/checkout/override", "{}"),
        (Method::POST, "/v1/revisions/0/restore", "{}"),
        (Method::POST, "/v1/rollouts/ramp/start", PLAN),
        (Method::POST, "/v1/rollouts/ramp/pause", "{}"),
        (Method::POST, "/v1/rollouts/ramp/resume", "{}"),
        (Method::POST, "/v1/rollouts/ramp/promote", "{}"),
        (Method::POST, "/v1/rollouts/ramp/abort", "{}"),
    ]
}

struct Admin {
    daemon: TestDaemon,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Admin {
    async fn start(edit: impl FnOnce(&mut Config, &Path)) -> Admin {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, FLAGS).unwrap();
        let mut config = config_for(&[&flags]);
        config.state_dir = dir.path().join("state");
        edit(&mut config, dir.path());
        let daemon = TestDaemon::start_with(config).await;
        Admin {
            daemon,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.daemon.admin_port)
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.daemon.admin_port)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, value)
    }

    async fn head(&self) -> u64 {
        let (status, _, body) = self.send(Method::GET, "/v1/revisions", &[], "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["head"].as_u64().unwrap()
    }

    async fn kill_switch(&self) {
        let (status, _, body) = self
            .send(
                Method::PUT,
                "/v1/flags/checkout/override",
                &[("content-type", "application/json")],
                r#"{"state":"DISABLED","reason":"incident"}"#,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
const TEXT: (&str, &str) = ("content-type", "text/plain");
const EVIL: (&str, &str) = ("origin", "http://evil.example");

/// The request from the top of the list: a page's "simple" cross-origin POST that used to clear
/// every override, kill switches included.
#[tokio::test]
async fn a_simple_cross_origin_restore_is_refused_and_the_kill_switch_stays() {
    let admin = Admin::start(|_, _| {}).await;
    admin.kill_switch().await;
    let (status, _, body) = admin
        .send(Method::POST, "/v1/revisions/0/restore", &[TEXT, EVIL], "{}")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert!(
        body["message"].as_str().unwrap().contains("evil.example"),
        "{body}"
    );
    assert_eq!(admin.head().await, 1);
    let (_, _, flag) = admin.send(Method::GET, "/v1/flags/checkout", &[], "").await;
    assert_eq!(flag["flag"]["state"], "DISABLED");
}

#[tokio::test]
async fn every_mutating_route_refuses_what_a_browser_can_forge() {
    let admin = Admin::start(|_, _| {}).await;
    admin.kill_switch().await;
    let rebound = format!("evil.example:{}", admin.daemon.admin_port);
    for (method, path, body) in mutating_routes() {
        // Cross-origin, as a page would send it without a preflight.
        let (status, _, answer) = admin.send(method.clone(), path, &[TEXT, EVIL], body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        // Cross-origin with the right content type (a browser would preflight it first).
        let (status, _, answer) = admin.send(method.clone(), path, &[JSON, EVIL], body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        // The opaque origin of sandboxed frames and file pages.
        let (status, _, _) = admin
            .send(method.clone(), path, &[JSON, ("origin", "null")], body)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}");
        // DNS rebinding: the attacker's name now resolves to 127.0.0.1.
        let (status, _, answer) = admin
            .send(
                method.clone(),
                path,
                &[JSON, ("host", rebound.as_str())],
                body,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("host"));
        // No Origin, but not JSON: refused too.
        for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
            let (status, _, answer) = admin
                .send(
                    method.clone(),
                    path,
                    &[("content-type", content_type)],
                    body,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{method} {path}: {answer}"
            );
            assert_eq!(answer["error"], "unsupported_media_type");
        }
        let (status, _, _) = admin.send(method.clone(), path, &[], body).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{method} {path}"
        );
    }
    // Reads under a rebound name are refused as well, so the attacker cannot read the answers.
    let (status, _, _) = admin
        .send(Method::GET, "/v1/flags", &[("host", rebound.as_str())], "")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Nothing of the above changed anything.
    assert_eq!(admin.head().await, 1);
}

#[tokio::test]
async fn restore_needs_a_json_body() {
    let admin = Admin::start(|_, _| {}).await;
    admin.kill_switch().await;
    let (status, _, body) = admin
        .send(Method::POST, "/v1/revisions/0/restore", &[JSON], "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("JSON object"));
    let (status, _, body) = admin
        .send(
            Method::POST,
            "/v1/revisions/0/restore",
            &[JSON],
            r#"{"reason":"undo"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(admin.head().await, 2);
}

#[tokio::test]
async fn preflights_get_no_permissive_cors() {
    let admin = Admin::start(|c, _| {
        c.admin_allowed_origins = vec!["https://ops.example".into()];
    })
    .await;
    let preflight = [
        ("origin", "http://evil.example"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "content-type"),
    ];
    let (status, headers, _) = admin
        .send(
            Method::OPTIONS,
            "/v1/flags/checkout/override",
            &preflight,
            "",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        headers
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{headers:?}"
    );
    // An origin the operator listed gets a preflight answer naming only itself.
    let allowed = [
        ("origin", "https://ops.example"),
        ("access-control-request-method", "PUT"),
    ];
    let (status, headers, _) = admin
        .send(Method::OPTIONS, "/v1/flags/checkout/override", &allowed, "")
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://ops.example"
    );
    let (status, headers, body) = admin
        .send(
            Method::PUT,
            "/v1/flags/checkout/override",
            &[JSON, ("origin", "https://ops.example")],
            r#"{"defaultVariant":"green"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://ops.example"
    );
}

#[tokio::test]
async fn same_origin_and_configured_hosts_are_served() {
    let admin = Admin::start(|c, _| {
        c.admin_allowed_hosts = vec!["flags.internal".into()];
    })
    .await;
    let own_origin = format!("http://{}", admin.host());
    let (status, headers, body) = admin
        .send(
            Method::PUT,
            "/v1/flags/checkout/override",
            &[JSON, ("origin", own_origin.as_str())],
            r#"{"defaultVariant":"green"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("access-control-allow-origin").is_none());
    let configured = format!("flags.internal:{}", admin.daemon.admin_port);
    let localhost = format!("localhost:{}", admin.daemon.admin_port);
    for host in [configured.as_str(), localhost.as_str(), "[::1]"] {
        let (status, _, body) = admin
            .send(Method::GET, "/v1/flags", &[("host", host)], "")
            .await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }
}

#[tokio::test]
async fn a_token_does_not_lift_the_browser_rules() {
    let admin = Admin::start(|c, dir| {
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        c.admin_token_file = Some(token);
    })
    .await;
    let auth = ("authorization", "Bearer s3cret");
    let (status, _, _) = admin
        .send(
            Method::PUT,
            "/v1/flags/checkout/override",
            &[JSON, EVIL, auth],
            r#"{"state":"DISABLED"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = admin
        .send(
            Method::PUT,
            "/v1/flags/checkout/override",
            &[TEXT, auth],
            r#"{"state":"DISABLED"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, _, body) = admin
        .send(
            Method::PUT,
            "/v1/flags/checkout/override",
            &[JSON, auth],
            r#"{"state":"DISABLED"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_admin_port_serves_tls_and_the_cli_trusts_a_given_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = flagd_rs_tests::tls::self_signed(dir.path());
    let paths = TlsPaths {
        cert: cert.clone(),
        key,
    };
    let admin = Admin::start(move |c, _| c.admin_tls = Some(paths)).await;
    let https = format!("https://localhost:{}", admin.daemon.admin_port);
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let response = client
        .get(format!("{https}/v1/flags"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Plain HTTP is not spoken there.
    let plain = reqwest::get(admin.url("/v1/flags")).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    let out = flagd_rs::cli_admin::run_args([
        "disable",
        "checkout",
        "--admin-url",
        &https,
        "--admin-ca-cert",
        cert.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(out.contains("revision 1 set checkout"), "{out}");
    // Without the CA the CLI does not trust the certificate.
    let err = flagd_rs::cli_admin::run_args(["enable", "checkout", "--admin-url", &https])
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("calling the admin API"),
        "{err:#}"
    );
}

#[tokio::test]
async fn a_non_loopback_admin_address_needs_a_token_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t").unwrap();
    let (cert, key) = flagd_rs_tests::tls::self_signed(dir.path());
    let base = Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        management_port: 0,
        admin_port: 0,
        admin_address: [0, 0, 0, 0].into(),
        state_dir: dir.path().join("state"),
        ..Config::default()
    };
    let err = Listeners::bind(&base).await.unwrap_err();
    assert!(
        err.to_string().contains("without --admin-token-file"),
        "{err}"
    );
    let with_token = Config {
        admin_token_file: Some(token),
        ..base
    };
    let err = Listeners::bind(&with_token).await.unwrap_err();
    assert!(err.to_string().contains("in plaintext"), "{err}");
    let insecure = Config {
        admin_insecure: true,
        ..with_token.clone()
    };
    assert!(Listeners::bind(&insecure).await.is_ok());
    let with_tls = Config {
        admin_tls: Some(TlsPaths { cert, key }),
        ..with_token
    };
    assert!(Listeners::bind(&with_tls).await.is_ok());
}

/// The CLI's requests pass the guard: JSON bodies on every change, the clear included.
#[tokio::test]
async fn the_cli_speaks_json() {
    let admin = Admin::start(|_, _| {}).await;
    let url = format!("http://127.0.0.1:{}", admin.daemon.admin_port);
    for args in [
        vec!["switch", "checkout", "green"],
        vec!["clear", "checkout", "--reason", "done"],
        vec!["restore", "1"],
    ] {
        let mut all = args.clone();
        all.extend(["--admin-url", url.as_str()]);
        flagd_rs::cli_admin::run_args(all).await.unwrap();
    }
    let (_, _, body) = admin.send(Method::GET, "/v1/revisions", &[], "").await;
    let revisions = body["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 3);
    assert_eq!(revisions[1]["reason"], json!("done"));
}
