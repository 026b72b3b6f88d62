//! The dashboard over HTTP, as a browser without JavaScript uses it: every page renders, forms
//! change overrides, rollouts and revisions through the authority, writes a page of another
//! origin could forge are refused, and the live feed reports a change.

use std::path::Path;
use std::time::Duration;

use flagd_rs::config::Config;
use flagd_rs::ui::UiMode;
use flagd_rs_tests::daemon::{TestDaemon, config_for};
use futures::StreamExt;
use reqwest::{Method, StatusCode, redirect};
use serde_json::Value;

const FLAGS: &str = r#"{
  "flags": {
    "checkout": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"},
                 "defaultVariant": "blue"},
    "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 90], ["canary", 10]]}}
  }
}"#;

const PLAN: &str = r#"{"plan": {"variant": "canary", "baseline": "stable",
  "steps": [{"weight": 20, "hold": "1h"}, {"weight": 50, "hold": "1h"}, {"weight": 100}]},
  "reason": "ship it"}"#;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A daemon with the dashboard and a client that does not follow redirects.
pub struct Ui {
    pub daemon: TestDaemon,
    /// The flag file the daemon serves.
    pub flags: std::path::PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Ui {
    pub async fn start(mode: UiMode, edit: impl FnOnce(&mut Config, &Path)) -> Ui {
        Ui::serving(FLAGS, mode, edit).await
    }

    /// A daemon serving the flag document `document`.
    pub async fn serving(
        document: &str,
        mode: UiMode,
        edit: impl FnOnce(&mut Config, &Path),
    ) -> Ui {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, document).unwrap();
        let mut config = config_for(&[&flags]);
        config.state_dir = dir.path().join("state");
        config.ui = mode;
        edit(&mut config, dir.path());
        Ui {
            daemon: TestDaemon::start_with(config).await,
            flags,
            _dir: dir,
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.daemon.admin_port)
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.origin()))
            .body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let (status, _, body) = self.send(Method::GET, path, &[], "").await;
        (status, body)
    }

    /// An admin API call with a JSON body.
    pub async fn api(&self, method: Method, path: &str, body: &str) -> Value {
        let (status, _, text) = self
            .send(method, path, &[("content-type", "application/json")], body)
            .await;
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// A form POST as the dashboard's own page sends it.
    pub async fn post_form(
        &self,
        path: &str,
        extra: &[(&str, &str)],
        body: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let origin = self.origin();
        let mut headers = vec![
            FORM,
            ("origin", origin.as_str()),
            ("sec-fetch-site", "same-origin"),
        ];
        headers.extend_from_slice(extra);
        self.send(Method::POST, path, &headers, body).await
    }

    pub async fn head(&self) -> u64 {
        self.api(Method::GET, "/v1/revisions", "").await["head"]
            .as_u64()
            .unwrap()
    }
}

/// The hidden form token of a page.
pub fn form_token(html: &str) -> String {
    let at = html
        .find(r#"name="form_token" value=""#)
        .expect("the page has a form");
    let rest = &html[at + r#"name="form_token" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn location(headers: &reqwest::header::HeaderMap) -> &str {
    headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn every_screen_renders_with_the_bundled_flags() {
    let daemon = TestDaemon::start::<&str>(&[]).await;
    let http = reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("http://127.0.0.1:{}{p}", daemon.admin_port);
    let root = http.get(url("/")).send().await.unwrap();
    assert_eq!(root.status(), StatusCode::SEE_OTHER);
    assert_eq!(root.headers()["location"], "/ui/");
    for (path, expect) in [
        ("/ui/", "canary-deployment"),
        ("/ui/flags/canary-deployment", "File → override → effective"),
        (
            "/ui/flags/canary-deployment?context=%7B%22targetingKey%22%3A%22u1%22%7D",
            "id=\"evaluation\"",
        ),
        ("/ui/rollouts", "No rollout has been started"),
        ("/ui/history", "No revisions."),
        ("/ui/health", "Ready: every source has loaded"),
        ("/ui/assets/ui.css", "@media"),
        ("/ui/assets/ui.js", "EventSource"),
    ] {
        let response = http.get(url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        if path.starts_with("/ui/assets") {
            assert!(response.headers().get("content-security-policy").is_some());
        } else {
            assert_eq!(response.headers()["x-frame-options"], "DENY", "{path}");
        }
        let text = response.text().await.unwrap();
        assert!(text.contains(expect), "{path} lacks {expect}:\n{text}");
    }
    // Read-only by default: no forms that change anything, and a POST is refused.
    let page = http
        .get(url("/ui/flags/canary-deployment"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("method=\"post\""));
    assert!(page.contains("Read-only dashboard"));
    let refused = http
        .post(url("/ui/flags/canary-deployment/override"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("state=DISABLED")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    // An unknown flag is a page saying so.
    let missing = http.get(url("/ui/flags/nope")).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn forms_set_and_clear_overrides_and_restore_a_revision() {
    let ui = Ui::start(UiMode::Readwrite, |_, _| {}).await;
    let (status, page) = ui.get("/ui/flags/ramp").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Set override"), "{page}");
    let token = form_token(&page);

    // The kill switch.
    let body = format!("form_token={token}&state=DISABLED&reason=incident+42&actor=alice");
    let (status, headers, text) = ui
        .post_form("/ui/flags/checkout/override", &[], &body)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert!(location(&headers).starts_with("/ui/flags/checkout?done="));
    let flag = ui.api(Method::GET, "/v1/flags/checkout", "").await;
    assert_eq!(flag["flag"]["state"], "DISABLED");

    // A split change, shown on the Flags page with its author and reason.
    let body = format!("form_token={token}&w_stable=60&w_canary=40&reason=more+canary");
    let (status, _, text) = ui.post_form("/ui/flags/ramp/override", &[], &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    let flag = ui.api(Method::GET, "/v1/flags/ramp", "").await;
    assert_eq!(flag["flag"]["override"]["weights"]["canary"], 40);
    let (_, flags) = ui.get("/ui/?override=1").await;
    assert!(
        flags.contains("alice") && flags.contains("incident 42"),
        "{flags}"
    );
    assert!(flags.contains("stable 60%, canary 40%"), "{flags}");
    let (_, detail) = ui.get("/ui/flags/ramp").await;
    assert!(detail.contains("stable 60 / canary 40"), "{detail}");

    // An invalid change is refused with the authority's message, and changes nothing.
    let body = format!("form_token={token}&defaultVariant=purple");
    let (status, _, text) = ui.post_form("/ui/flags/ramp/override", &[], &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    assert!(text.contains("purple"), "{text}");
    assert_eq!(ui.head().await, 2);

    // Clear the kill switch.
    let body = format!("form_token={token}&reason=resolved");
    let (status, _, text) = ui.post_form("/ui/flags/checkout/clear", &[], &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert_eq!(ui.head().await, 3);

    // History lists the three revisions; revision 1's page shows its diff.
    let (_, history) = ui.get("/ui/history").await;
    for n in ["#1", "#2", "#3", "incident 42", "resolved"] {
        assert!(history.contains(n), "{n}: {history}");
    }
    let (_, one) = ui.get("/ui/history/1").await;
    assert!(one.contains("state DISABLED"), "{one}");

    // Restore revision 1: the confirmation shows the diff against what is live.
    let (status, confirm) = ui.get("/ui/history/1/restore").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        confirm.contains("checkout") && confirm.contains("ramp"),
        "{confirm}"
    );
    let body = format!("form_token={token}&head=3&reason=back+to+1");
    let (status, headers, text) = ui.post_form("/ui/history/1/restore", &[], &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert!(
        location(&headers).starts_with("/ui/history/4"),
        "{headers:?}"
    );
    let flag = ui.api(Method::GET, "/v1/flags/checkout", "").await;
    assert_eq!(flag["flag"]["state"], "DISABLED");
    let flag = ui.api(Method::GET, "/v1/flags/ramp", "").await;
    assert!(flag["flag"].get("override").is_none(), "{flag}");

    // A confirmation shown before another change is not acted on blindly.
    let (status, _, text) = ui.post_form("/ui/history/2/restore", &[], &body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert_eq!(ui.head().await, 4);
}

#[tokio::test]
async fn writes_a_browser_could_forge_are_refused() {
    let ui = Ui::start(UiMode::Readwrite, |_, _| {}).await;
    let (_, page) = ui.get("/ui/flags/checkout").await;
    let token = form_token(&page);
    let good = format!("form_token={token}&state=DISABLED");
    let path = "/ui/flags/checkout/override";
    let rebound = format!("evil.example:{}", ui.daemon.admin_port);
    for (headers, body, expected) in [
        // A form on another origin's page.
        (
            vec![FORM, ("origin", "http://evil.example")],
            good.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            vec![FORM, ("origin", "null")],
            good.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            vec![FORM, ("sec-fetch-site", "cross-site")],
            good.as_str(),
            StatusCode::FORBIDDEN,
        ),
        (
            vec![FORM, ("sec-fetch-site", "same-site")],
            good.as_str(),
            StatusCode::FORBIDDEN,
        ),
        // DNS rebinding.
        (
            vec![FORM, ("host", rebound.as_str())],
            good.as_str(),
            StatusCode::FORBIDDEN,
        ),
        // Without the form token, or with a wrong one.
        (vec![FORM], "state=DISABLED", StatusCode::FORBIDDEN),
        (
            vec![FORM],
            "form_token=0000&state=DISABLED",
            StatusCode::FORBIDDEN,
        ),
        // Not a form.
        (
            vec![("content-type", "text/plain")],
            good.as_str(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let (status, _, text) = ui.send(Method::POST, path, &headers, body).await;
        assert_eq!(status, expected, "{headers:?} {body}: {text}");
    }
    assert_eq!(ui.head().await, 0);
    // The admin API still refuses forms, whatever the dashboard accepts.
    let (status, _, _) = ui
        .send(Method::PUT, "/v1/flags/checkout/override", &[FORM], &good)
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // The same form from the dashboard's own page works.
    let (status, _, text) = ui.post_form(path, &[], &good).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert_eq!(ui.head().await, 1);
}

#[tokio::test]
async fn with_a_token_the_dashboard_needs_a_sign_in() {
    let ui = Ui::start(UiMode::Readwrite, |config, dir| {
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        config.admin_token_file = Some(file);
    })
    .await;
    let (status, headers, _) = ui.send(Method::GET, "/ui/history", &[], "").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/ui/login?next=%2Fui%2Fhistory");
    let (status, login) = ui.get("/ui/login?next=%2Fui%2Fhistory").await;
    assert_eq!(status, StatusCode::OK);
    let token = form_token(&login);
    // A write without the session is refused, even with the form token.
    let body = format!("form_token={token}&state=DISABLED");
    let (status, _, _) = ui
        .post_form("/ui/flags/checkout/override", &[], &body)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The wrong token gets no cookie.
    let wrong = format!("form_token={token}&token=guess&next=%2Fui%2Fhistory");
    let (status, headers, _) = ui.post_form("/ui/login", &[], &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.get("set-cookie").is_none());
    // The right one signs in.
    let right = format!("form_token={token}&token=s3cret&next=%2Fui%2Fhistory");
    let (status, headers, _) = ui.post_form("/ui/login", &[], &right).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location(&headers), "/ui/history");
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let (status, _, _) = ui
        .send(Method::GET, "/ui/history", &[("cookie", &session)], "")
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, text) = ui
        .post_form(
            "/ui/flags/checkout/override",
            &[("cookie", &session)],
            &body,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    // The bearer token works too (for scripts that read pages).
    let (status, _, _) = ui
        .send(
            Method::GET,
            "/ui/",
            &[("authorization", "Bearer s3cret")],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn abort_from_the_rollouts_page_rolls_back_and_is_in_the_history() {
    let ui = Ui::start(UiMode::Readwrite, |_, _| {}).await;
    ui.api(Method::POST, "/v1/rollouts/ramp/start", PLAN).await;
    let (status, page) = ui.get("/ui/rollouts").await;
    assert_eq!(status, StatusCode::OK);
    for expected in [
        "step 1 of 3",
        "aria-current=\"step\"",
        "Pause…",
        "Promote…",
        "Abort…",
    ] {
        assert!(page.contains(expected), "{expected}: {page}");
    }
    assert!(!page.contains("Resume…"));
    let (status, confirm) = ui.get("/ui/rollouts/ramp/abort").await;
    assert_eq!(status, StatusCode::OK);
    assert!(confirm.contains("Confirm: Abort"), "{confirm}");
    let token = form_token(&confirm);
    let body = format!("form_token={token}&reason=bad+canary&actor=oncall");
    let (status, headers, text) = ui.post_form("/ui/rollouts/ramp/abort", &[], &body).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{text}");
    assert!(location(&headers).starts_with("/ui/rollouts?done="));
    let status = ui.api(Method::GET, "/v1/rollouts/ramp", "").await;
    assert_eq!(status["phase"], "aborted");
    let flag = ui.api(Method::GET, "/v1/flags/ramp", "").await;
    assert!(flag["flag"].get("override").is_none(), "{flag}");
    let (_, page) = ui.get("/ui/rollouts").await;
    assert!(
        page.contains("aborted") && !page.contains("Abort…"),
        "{page}"
    );
    let (_, history) = ui.get("/ui/history?flag=ramp").await;
    assert!(history.contains("rollout abort"), "{history}");
    assert!(
        history.contains("oncall") && history.contains("bad canary"),
        "{history}"
    );
    let (_, confirm) = ui.get("/ui/rollouts/ramp/abort").await;
    assert!(confirm.contains("cannot be aborted") && !confirm.contains("Confirm: Abort"));
    // A verb the phase does not allow is refused by the runner, as over the API.
    let (status, _, _) = ui.post_form("/ui/rollouts/ramp/resume", &[], &body).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn the_live_feed_sends_a_changed_row_and_ends_at_shutdown() {
    // A grace period longer than the daemon is given to stop: an open feed must not use it.
    let ui = Ui::start(UiMode::Readonly, |config, _| {
        config.shutdown_grace = Duration::from_secs(120);
    })
    .await;
    let response = ui
        .http
        .get(format!("{}/ui/events?q=ramp", ui.origin()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut stream = response.bytes_stream();
    ui.api(
        Method::PUT,
        "/v1/flags/ramp/override",
        r#"{"weights": {"stable": 70, "canary": 30}}"#,
    )
    .await;
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            // The row as the authority publishes it: split and override badge.
            if seen.contains("event: row")
                && seen.contains("canary 30%")
                && seen.contains("weights canary 30 / stable 70")
                && seen.contains("event: changed")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{seen}");
    assert!(seen.contains("row:") && seen.contains(":ramp"), "{seen}");
    // Shutting down ends the feed instead of waiting for the page to go away.
    let Ui { daemon, .. } = ui;
    daemon
        .stop()
        .await
        .expect("the daemon stops with a feed open");
    let rest = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "the feed did not end");
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let ui = Ui::start(UiMode::Off, |_, _| {}).await;
    let (status, body) = ui.get("/ui/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = ui.get("/v1/flags").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_shows_warnings_and_rejections_with_their_pointers() {
    let with_warning = FLAGS.replacen(
        r#""flags": {"#,
        r#""flags": {
    "mixed": {"state": "ENABLED", "variants": {"on": true, "n": 1}, "defaultVariant": "on"},"#,
        1,
    );
    let ui = Ui::serving(&with_warning, UiMode::Readonly, |_, _| {}).await;
    let (status, health) = ui.get("/ui/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        health.contains("Ready: every source has loaded"),
        "{health}"
    );
    assert!(
        health.contains(">warning<") && health.contains("/flags/mixed"),
        "{health}"
    );
    // A broken edit is rejected; the page says so, with where, and the last good flags stay.
    let broken = FLAGS.replace(
        r#""defaultVariant": "blue""#,
        r#""defaultVariant": "purple""#,
    );
    std::fs::write(&ui.flags, broken).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let health = loop {
        let (_, health) = ui.get("/ui/health").await;
        if health.contains("rejected, last good kept") {
            break health;
        }
        assert!(tokio::time::Instant::now() < deadline, "{health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        health.contains("/flags/checkout/defaultVariant"),
        "{health}"
    );
    assert!(health.contains("purple"), "{health}");
    let (_, flags) = ui.get("/ui/").await;
    assert!(
        flags.contains("row::checkout") && flags.contains("row::mixed"),
        "{flags}"
    );
}
