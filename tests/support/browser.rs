//! A real headless Chromium for the dashboard's browser tests, driven over WebDriver
//! (`chromedriver` + `fantoccini`). Missing either program follows [`crate::require`]'s rule.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::ports::free_port;
use crate::require;

/// The Debian packages that provide the programs.
const INSTALL: &str = "install them with `apt-get install -y chromium chromium-driver` (or set \
                       FLAGD_CHROMEDRIVER and FLAGD_CHROMIUM to the programs)";

/// Chromium's switches for a sandbox-less CI machine without a display or network access.
const SWITCHES: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
];

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn program(var: &str, names: &[&str]) -> Option<PathBuf> {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.is_file()),
        None => on_path(names),
    }
}

/// `chromedriver` and Chromium when both are installed; otherwise reports the suite as
/// skipped (or fails it under `FLAGD_TESTBED_REQUIRED=1`) and returns `None`.
pub fn programs(suite: &str) -> Option<(PathBuf, PathBuf)> {
    let Some(driver) = program("FLAGD_CHROMEDRIVER", &["chromedriver"]) else {
        require::missing(suite, "chromedriver is not installed", INSTALL);
        return None;
    };
    let Some(chromium) = program(
        "FLAGD_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    ) else {
        require::missing(suite, "Chromium is not installed", INSTALL);
        return None;
    };
    Some((driver, chromium))
}

/// A chromedriver process, a Chromium session in a fresh profile, and the WebDriver client.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser")
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a `width`×`height` window.
    pub async fn start(driver: &Path, chromium: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        let mut args: Vec<String> = SWITCHES.iter().map(|s| (*s).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args}
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let url = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            client: connect_when_up(&url, capabilities).await,
            driver,
            _profile: profile,
        };
        browser.resize(width, height).await;
        browser
    }

    /// Makes the viewport `width`×`height` CSS pixels (the window is resized until the page's
    /// inner size is right, since a window may have borders).
    pub async fn resize(&mut self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize the window");
        let inner = self
            .client
            .execute("return [window.innerWidth, window.innerHeight]", vec![])
            .await
            .expect("read the viewport");
        let (w, h) = (
            inner[0].as_u64().unwrap_or(width as u64) as u32,
            inner[1].as_u64().unwrap_or(height as u64) as u32,
        );
        if w != width || h != height {
            self.client
                .set_window_size(
                    width + width.saturating_sub(w),
                    height + height.saturating_sub(h),
                )
                .await
                .expect("resize the window");
        }
    }

    /// Ends the session and the driver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn connect_when_up(url: &str, capabilities: serde_json::Map<String, Value>) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities.clone())
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return client,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "could not start a Chromium session through chromedriver: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// An in-page check of what a screen reader and a low-vision reader need: every form control
/// has a label, images have alt text, links and buttons have text, the page has a language, a
/// title and a heading, and all visible text has a contrast ratio of at least 4.5:1 against
/// its background (3:1 for large text), computed from the computed styles. Answers a list of
/// problems (empty when the page passes).
pub const ACCESSIBILITY_CHECK: &str = r#"
const problems = [];
if (!document.documentElement.lang) problems.push("the page has no language");
if (!document.title.trim()) problems.push("the page has no title");
if (!document.querySelector("h1")) problems.push("the page has no h1");
for (const el of document.querySelectorAll("input, select, textarea")) {
  if (el.type === "hidden") continue;
  const byFor = el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]');
  if (!(byFor || el.closest("label") || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby")))
    problems.push("form control without a label: " + el.outerHTML.slice(0, 100));
}
for (const img of document.querySelectorAll("img")) {
  if (!img.hasAttribute("alt")) problems.push("image without alt text: " + img.outerHTML.slice(0, 100));
}
for (const svg of document.querySelectorAll('svg[role="img"]')) {
  if (!(svg.getAttribute("aria-label") || svg.querySelector("title"))) problems.push("graphic without a text alternative");
}
for (const el of document.querySelectorAll("a, button")) {
  if (!(el.textContent.trim() || el.getAttribute("aria-label"))) problems.push("link or button without text: " + el.outerHTML.slice(0, 100));
}
const parse = (s) => {
  const m = s.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(parseFloat);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, under) => ({
  r: top.r * top.a + under.r * (1 - top.a),
  g: top.g * top.a + under.g * (1 - top.a),
  b: top.b * top.a + under.b * (1 - top.a), a: 1 });
const background = (el) => {
  const layers = [];
  for (let e = el; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
  }
  let out = { r: 255, g: 255, b: 255, a: 1 };
  for (let i = layers.length - 1; i >= 0; i--) out = over(layers[i], out);
  return out;
};
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
};
const seen = new Set();
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let node = walker.nextNode(); node; node = walker.nextNode()) {
  const el = node.parentElement;
  if (!el || seen.has(el) || !node.textContent.trim()) continue;
  seen.add(el);
  if (el.closest(".visually-hidden, .skip, svg, script, style, title")) continue;
  const style = getComputedStyle(el);
  if (style.visibility === "hidden" || style.display === "none" || el.getClientRects().length === 0) continue;
  const bg = background(el);
  const fg = over(parse(style.color) || { r: 0, g: 0, b: 0, a: 1 }, bg);
  const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  const ratio = (hi + 0.05) / (lo + 0.05);
  const size = parseFloat(style.fontSize);
  const large = size >= 24 || (size >= 18.66 && parseInt(style.fontWeight, 10) >= 700);
  if (ratio < (large ? 3 : 4.5))
    problems.push("contrast " + ratio.toFixed(2) + " for '" + node.textContent.trim().slice(0, 40) + "' (" + style.color + " on rgb(" + [bg.r, bg.g, bg.b].map(Math.round) + "))");
}
return problems;
"#;

/// How much wider than the viewport the page is (0: no horizontal overflow).
pub const OVERFLOW_CHECK: &str = "return Math.max(0, document.documentElement.scrollWidth - \
                                  document.documentElement.clientWidth);";
