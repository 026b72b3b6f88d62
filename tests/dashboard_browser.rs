//! The dashboard in a real headless Chromium: every screen renders, passes an accessibility
//! check and fits a 375 px wide phone (a screenshot of each lands in `docs/ui/`); a split
//! changed through the admin API shows up on an open Flags page without a reload; Abort and
//! Restore work from the pages; a form on another origin's page, or a write without the admin
//! token, is refused.
//!
//! Needs `chromedriver` and Chromium (Debian: `chromium`, `chromium-driver`); without them the
//! tests say so and pass, unless `FLAGD_TESTBED_REQUIRED=1`.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, Locator};
use flagd_rs::config::Config;
use flagd_rs::ui::UiMode;
use flagd_rs_tests::browser::{ACCESSIBILITY_CHECK, Browser, OVERFLOW_CHECK, programs};
use flagd_rs_tests::daemon::{TestDaemon, workspace_root};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dashboard::{Ui, form_token};

const PLAN: &str = r#"{"plan": {"variant": "canary", "baseline": "stable",
  "steps": [{"weight": 10, "hold": "1h"}, {"weight": 25, "hold": "1h"}, {"weight": 50, "hold": "1h"}, {"weight": 100}]},
  "reason": "new checkout backend", "actor": "release-bot"}"#;

/// Waits (bounded) until `script` returns `true` in the page.
async fn until(client: &Client, script: &str, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let v = client.execute(script, vec![]).await.expect("run a script");
        if v == Value::Bool(true) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Clicks the element `at` finds.
async fn click(client: &Client, at: Locator<'_>) {
    let what = format!("{at:?}");
    client
        .find(at)
        .await
        .unwrap_or_else(|e| panic!("no {what} on the page: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {what}: {e}"));
}

/// Types `text` into the field `at` finds.
async fn type_into(client: &Client, at: Locator<'_>, text: &str) {
    let what = format!("{at:?}");
    client
        .find(at)
        .await
        .unwrap_or_else(|e| panic!("no {what} on the page: {e}"))
        .send_keys(text)
        .await
        .unwrap_or_else(|e| panic!("typing into {what}: {e}"));
}

/// Runs the in-page accessibility check on the open page; each problem found is added to
/// `problems`, labelled with `screen`.
async fn accessibility(client: &Client, screen: &str, problems: &mut Vec<String>) {
    let found = client.execute(ACCESSIBILITY_CHECK, vec![]).await.unwrap();
    for p in found.as_array().into_iter().flatten() {
        problems.push(format!("{screen}: {}", p.as_str().unwrap_or_default()));
    }
}

async fn main_text(client: &Client) -> String {
    client
        .find(Locator::Css("main"))
        .await
        .expect("the page has a main part")
        .text()
        .await
        .expect("its text")
}

/// A dashboard over the bundled flags, read-write.
async fn bundled(edit: impl FnOnce(&mut Config)) -> (TestDaemon, String) {
    let mut config = Config {
        ui: UiMode::Readwrite,
        ..Config::default()
    };
    edit(&mut config);
    let daemon = TestDaemon::start_with(config).await;
    let origin = format!("http://127.0.0.1:{}", daemon.admin_port);
    (daemon, origin)
}

async fn api(origin: &str, method: Method, path: &str, body: &str) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{origin}{path}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap()
}

fn screenshots() -> PathBuf {
    let dir = workspace_root().join("docs").join("ui");
    std::fs::create_dir_all(&dir).expect("create docs/ui");
    dir
}

#[tokio::test]
async fn every_screen_renders_passes_the_accessibility_check_and_fits_a_phone() {
    let Some((driver, chromium)) = programs("dashboard browser tests") else {
        return;
    };
    let (daemon, origin) = bundled(|_| {}).await;
    // Something on every screen: a kill switch, a split, a rollout, served traffic.
    api(
        &origin,
        Method::PUT,
        "/v1/flags/blue-green-deployment/override",
        r#"{"defaultVariant": "green", "reason": "switch to green", "actor": "alice"}"#,
    )
    .await;
    api(
        &origin,
        Method::PUT,
        "/v1/flags/checkout-experiment/override",
        r#"{"weights": {"control": 80, "treatment": 20}, "reason": "fewer treated users", "actor": "bob"}"#,
    )
    .await;
    // A rollout with a gate whose webhook passes, checked once before the screenshots.
    let webhook = serve("application/json", r#"{"result": "pass"}"#.to_owned()).await;
    let plan = format!(
        r#"{{"plan": {{"variant": "canary", "baseline": "stable", "interval": "1s",
          "steps": [{{"weight": 10, "hold": "1h"}}, {{"weight": 25, "hold": "1h"}}, {{"weight": 100}}],
          "gates": [{{"name": "error-rate", "webhook": "http://127.0.0.1:{webhook}/check"}}]}},
          "reason": "new checkout backend", "actor": "release-bot"}}"#
    );
    api(
        &origin,
        Method::POST,
        "/v1/rollouts/progressive-rollout/start",
        &plan,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api(&origin, Method::GET, "/v1/rollouts/progressive-rollout", "").await["gates"][0]
        .get("last")
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gate was never checked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ofrep = reqwest::Client::new();
    for i in 0..200 {
        ofrep
            .post(format!(
                "http://127.0.0.1:{}/ofrep/v1/evaluate/flags/progressive-rollout",
                daemon.ofrep_port
            ))
            .json(&serde_json::json!({"context": {"targetingKey": format!("user-{i}")}}))
            .send()
            .await
            .unwrap();
    }
    let screens = [
        ("flags", "/ui/".to_owned()),
        (
            "flag",
            "/ui/flags/progressive-rollout?context=%7B%22targetingKey%22%3A%20%22user-7%22%7D"
                .to_owned(),
        ),
        ("rollouts", "/ui/rollouts".to_owned()),
        ("history", "/ui/history".to_owned()),
        ("revision", "/ui/history/2".to_owned()),
        ("restore", "/ui/history/1/restore".to_owned()),
        ("health", "/ui/health".to_owned()),
    ];
    let dir = screenshots();
    let mut browser = Browser::start(&driver, &chromium, 1280, 900).await;
    let mut problems = Vec::new();
    for (name, path) in &screens {
        browser
            .client
            .goto(&format!("{origin}{path}"))
            .await
            .unwrap();
        let h1 = browser.client.find(Locator::Css("h1")).await.unwrap();
        assert!(!h1.text().await.unwrap().is_empty(), "{name}");
        accessibility(&browser.client, &format!("{name} (laptop)"), &mut problems).await;
        let png = browser.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
    // The check itself finds what it looks for: faint text and an unlabelled field.
    let planted = browser
        .client
        .execute(
            &format!(
                "const p = document.createElement('p'); p.textContent = 'faint'; \
                 p.style.color = '#bbbbbb'; document.querySelector('main').append(p); \
                 document.querySelector('main').append(document.createElement('input')); \
                 return (function () {{ {ACCESSIBILITY_CHECK} }})();"
            ),
            vec![],
        )
        .await
        .unwrap();
    let planted: Vec<&str> = planted
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        planted
            .iter()
            .any(|p| p.starts_with("contrast") && p.contains("faint"))
            && planted
                .iter()
                .any(|p| p.starts_with("form control without a label")),
        "{planted:?}"
    );
    browser.resize(375, 800).await;
    for (name, path) in &screens {
        browser
            .client
            .goto(&format!("{origin}{path}"))
            .await
            .unwrap();
        browser.client.find(Locator::Css("h1")).await.unwrap();
        let overflow = browser
            .client
            .execute(OVERFLOW_CHECK, vec![])
            .await
            .unwrap();
        assert_eq!(overflow, 0, "{name} is wider than a 375 px screen");
        accessibility(&browser.client, &format!("{name} (phone)"), &mut problems).await;
        if matches!(*name, "flags" | "rollouts") {
            let png = browser.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-phone.png")), png).unwrap();
        }
    }
    browser.close().await;
    assert!(
        problems.is_empty(),
        "accessibility problems:\n{}",
        problems.join("\n")
    );
}

#[tokio::test]
async fn a_split_change_appears_live_and_abort_and_restore_work_from_the_pages() {
    let Some((driver, chromium)) = programs("dashboard browser tests") else {
        return;
    };
    let (_daemon, origin) = bundled(|_| {}).await;
    let browser = Browser::start(&driver, &chromium, 1280, 900).await;
    let client = &browser.client;

    // The Flags page, open and connected to the live feed.
    client.goto(&format!("{origin}/ui/")).await.unwrap();
    client
        .execute("window.notReloaded = true; return true;", vec![])
        .await
        .unwrap();
    until(
        client,
        "return document.getElementById('live-status').textContent.endsWith(' live');",
        "the live feed",
    )
    .await;
    let row = "document.getElementById('row::checkout-experiment')";
    let before = client
        .execute(&format!("return {row}.textContent;"), vec![])
        .await
        .unwrap();
    assert!(before.as_str().unwrap().contains("control 50%"), "{before}");
    let changed_at = tokio::time::Instant::now();
    api(
        &origin,
        Method::PUT,
        "/v1/flags/checkout-experiment/override",
        r#"{"weights": {"control": 30, "treatment": 70}, "reason": "ramp up"}"#,
    )
    .await;
    until(
        client,
        &format!("return {row}.textContent.includes('treatment 70%');"),
        "the changed row",
    )
    .await;
    eprintln!(
        "the changed split showed on the open Flags page after {:?}",
        changed_at.elapsed()
    );
    let same_page = client
        .execute("return window.notReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(same_page, Value::Bool(true), "the page was reloaded");

    // Abort a rollout from the Rollouts page.
    api(
        &origin,
        Method::POST,
        "/v1/rollouts/progressive-rollout/start",
        PLAN,
    )
    .await;
    client.goto(&format!("{origin}/ui/rollouts")).await.unwrap();
    click(client, Locator::LinkText("Abort…")).await;
    type_into(client, Locator::Id("verb-reason"), "error rate up").await;
    click(client, Locator::Css("main form button[type=submit]")).await;
    until(
        client,
        "return location.pathname === '/ui/rollouts' && location.search.includes('done=');",
        "the redirect after Abort",
    )
    .await;
    assert!(main_text(client).await.contains("aborted"));
    let status = api(&origin, Method::GET, "/v1/rollouts/progressive-rollout", "").await;
    assert_eq!(status["phase"], "aborted");
    let flag = api(&origin, Method::GET, "/v1/flags/progressive-rollout", "").await;
    assert!(flag["flag"].get("override").is_none(), "{flag}");
    client.goto(&format!("{origin}/ui/history")).await.unwrap();
    let history = main_text(client).await;
    assert!(
        history.contains("rollout abort") && history.contains("error rate up"),
        "{history}"
    );

    // Restore revision 1 (the 30/70 split) from its page, after its diff against what is live.
    api(
        &origin,
        Method::PUT,
        "/v1/flags/checkout-experiment/override",
        r#"{"weights": {"control": 90, "treatment": 10}, "reason": "too far"}"#,
    )
    .await;
    client
        .goto(&format!("{origin}/ui/history/1"))
        .await
        .unwrap();
    click(client, Locator::LinkText("Restore this revision…")).await;
    let confirm = main_text(client).await;
    assert!(
        confirm.contains("Live now → after the restore"),
        "{confirm}"
    );
    assert!(confirm.contains("control 90 / treatment 10"), "{confirm}");
    click(client, Locator::Css("main form button[type=submit]")).await;
    until(
        client,
        "return location.pathname.startsWith('/ui/history/') && location.search.includes('done=');",
        "the redirect after Restore",
    )
    .await;
    assert!(main_text(client).await.contains("Restored revision 1"));
    let flag = api(&origin, Method::GET, "/v1/flags/checkout-experiment", "").await;
    assert_eq!(
        flag["flag"]["override"]["weights"]["treatment"], 70,
        "{flag}"
    );
    browser.close().await;
}

/// Serves one HTML page on another port: another web origin.
async fn foreign_page(html: String) -> u16 {
    serve("text/html", html).await
}

/// Answers every request with `body` (`content_type`), on a port of its own.
async fn serve(content_type: &'static str, html: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = stream.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn writes_from_another_origin_or_without_the_token_are_refused() {
    let Some((driver, chromium)) = programs("dashboard browser tests") else {
        return;
    };
    let ui = Ui::start(UiMode::Readwrite, |_, _| {}).await;
    // Even knowing this process's form token, a page of another origin gets nowhere.
    let (_, page) = ui.get("/ui/flags/checkout").await;
    let token = form_token(&page);
    let target = format!("{}/ui/flags/checkout/override", ui.origin());
    let evil = foreign_page(format!(
        r#"<!doctype html><html lang="en"><title>elsewhere</title><body>
<form id="f" method="post" action="{target}">
<input type="hidden" name="form_token" value="{token}">
<input type="hidden" name="state" value="DISABLED"></form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  body: new URLSearchParams({{form_token: "{token}", state: "DISABLED"}})}})
  .finally(() => document.getElementById("f").submit());
</script></body></html>"#
    ))
    .await;
    let browser = Browser::start(&driver, &chromium, 1024, 768).await;
    let client = &browser.client;
    client
        .goto(&format!("http://127.0.0.1:{evil}/"))
        .await
        .unwrap();
    let admin_port = format!(":{}", ui.daemon.admin_port);
    until(
        client,
        &format!(
            "return location.host.endsWith('{admin_port}') && document.readyState === 'complete';"
        ),
        "the foreign form's submission",
    )
    .await;
    let answer = client.source().await.unwrap();
    assert!(answer.contains("is not allowed"), "{answer}");
    assert_eq!(ui.head().await, 0, "a foreign page changed the authority");
    let flag = ui.api(Method::GET, "/v1/flags/checkout", "").await;
    assert_eq!(flag["flag"]["state"], "ENABLED");
    browser.close().await;

    // With a token, the browser must sign in before anything, and a write without it fails.
    let ui = Ui::start(UiMode::Readwrite, |config, dir| {
        let file = dir.join("token");
        std::fs::write(&file, "s3cret").unwrap();
        config.admin_token_file = Some(file);
    })
    .await;
    let browser = Browser::start(&driver, &chromium, 1024, 768).await;
    let client = &browser.client;
    client
        .goto(&format!("{}/ui/flags/checkout", ui.origin()))
        .await
        .unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/ui/login");
    let (_, login) = ui.get("/ui/login").await;
    let token = form_token(&login);
    let status = client
        .execute(
            &format!(
                "return fetch('/ui/flags/checkout/override', {{method: 'POST', \
                 body: new URLSearchParams({{form_token: '{token}', state: 'DISABLED'}})}}) \
                 .then(r => r.status);"
            ),
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, 401);
    let (status, _, _) = ui
        .send(
            Method::GET,
            "/v1/flags/checkout",
            &[("authorization", "Bearer s3cret")],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Signing in with the token makes the same form work.
    type_into(client, Locator::Id("token"), "s3cret").await;
    click(client, Locator::Css("main form button[type=submit]")).await;
    until(
        client,
        "return location.pathname === '/ui/flags/checkout';",
        "the page after signing in",
    )
    .await;
    click(client, Locator::Css("#state option[value=DISABLED]")).await;
    type_into(client, Locator::Id("set-reason"), "incident").await;
    click(client, Locator::XPath("//button[text()='Set override']")).await;
    until(
        client,
        "return location.search.includes('done=');",
        "the redirect after the change",
    )
    .await;
    let (status, _, body) = ui
        .send(
            Method::GET,
            "/v1/flags/checkout",
            &[("authorization", "Bearer s3cret")],
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("DISABLED"), "{body}");
    browser.close().await;
}
