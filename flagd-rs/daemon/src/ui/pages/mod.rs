//! The dashboard's pages: one module per screen, and here the frame they share (layout,
//! errors, small renderers).

pub mod flag;
pub mod flags;
pub mod health;
pub mod history;
pub mod rollouts;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use flagd_evaluator::{OverridePatch, SplitEntry, State};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde_json::Value;

use super::Dashboard;
use super::access::FORM_TOKEN_FIELD;
use crate::authority::AuthorityError;
use crate::authority::admin::ApiError;
use crate::authority::rollout::api::RolloutApiError;
use crate::authority::rollout::runner::RolloutError;

/// What a screen does when something changes: `rows` (the Flags table takes row events),
/// `page` (the page redraws its main part) or nothing (forms, confirmations).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    /// Row events.
    Rows,
    /// Redraw on any change.
    Page,
    /// No live updates.
    Off,
}

/// A page in the dashboard's frame.
pub fn layout(dashboard: &Dashboard, title: &str, current: &str, body: Markup) -> Html<String> {
    frame(dashboard, title, current, Live::Off, body)
}

/// Every page's `<head>`: the title, the stylesheet and, with `script`, the live-update script.
fn head(title: &str, script: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · flagd-rs" }
            link rel="stylesheet" href="/ui/assets/ui.css";
            @if script {
                script src="/ui/assets/ui.js" defer {}
            }
        }
    }
}

/// [`layout`] with live updates.
pub fn frame(
    dashboard: &Dashboard,
    title: &str,
    current: &str,
    live: Live,
    body: Markup,
) -> Html<String> {
    let live = match live {
        Live::Rows => "rows",
        Live::Page => "page",
        Live::Off => "",
    };
    let nav = [
        ("flags", "/ui/", "Flags"),
        ("rollouts", "/ui/rollouts", "Rollouts"),
        ("history", "/ui/history", "History"),
        ("health", "/ui/health", "Health"),
    ];
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, true))
            body data-live=(live) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    nav aria-label="Sections" {
                        a.brand href="/ui/" { "flagd-rs" }
                        ul {
                            @for (id, href, label) in nav {
                                li {
                                    @if id == current {
                                        a href=(href) aria-current="page" { (label) }
                                    } @else {
                                        a href=(href) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    span.mode {
                        @if dashboard.writable() { "read-write" } @else { "read-only" }
                        " · revision " (dashboard.authority.head()) " "
                        span #live-status aria-live="polite" {}
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// An error shown as a page.
#[derive(Debug)]
pub struct UiError {
    /// The answer's status.
    pub status: StatusCode,
    /// What went wrong, for the operator.
    pub message: String,
}

impl UiError {
    /// An error page.
    pub fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::NOT_FOUND, message)
    }
}

/// The admin API's answer to the same refusal, as a page.
impl From<AuthorityError> for UiError {
    fn from(e: AuthorityError) -> Self {
        let api = ApiError::from(e);
        UiError::new(api.status(), api.message())
    }
}

impl From<RolloutError> for UiError {
    fn from(e: RolloutError) -> Self {
        let api = RolloutApiError::from(e);
        UiError::new(api.status(), api.message())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let heading = self
            .status
            .canonical_reason()
            .unwrap_or("Something went wrong");
        let markup = html! {
            (DOCTYPE)
            html lang="en" {
                (head(heading, false))
                body data-live="" {
                    main #main {
                        h1 { (heading) }
                        p.banner.bad role="alert" { (self.message) }
                        p { a href="/ui/" { "Back to the flags" } }
                    }
                }
            }
        };
        (self.status, Html(markup.into_string())).into_response()
    }
}

/// Runs a blocking read or change of the authority (it may read the archive or fsync) off the
/// async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UiError> + Send + 'static,
) -> Result<T, UiError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
        ))
    })
}

/// After a change: back to `path` with a note saying what was done.
pub fn done(path: &str, note: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    let query = serde_urlencoded::to_string([("done", note)]).unwrap_or_default();
    Redirect::to(&format!("{path}{sep}{query}")).into_response()
}

/// The note of [`done`], shown once.
pub fn done_banner(note: Option<&str>) -> Markup {
    html! {
        @if let Some(note) = note.filter(|n| !n.is_empty()) {
            p.banner.good role="status" { (note) }
        }
    }
}

/// The hidden form token and the fields every change records: who and why.
pub fn change_fields(dashboard: &Dashboard, id: &str) -> Markup {
    html! {
        input type="hidden" name=(FORM_TOKEN_FIELD) value=(dashboard.access.form_token());
        label for={(id) "-reason"} { "Reason (recorded in the history)" }
        input id={(id) "-reason"} name="reason" type="text" maxlength="500";
        label for={(id) "-actor"} { "Your name (recorded as the actor)" }
        input id={(id) "-actor"} name="actor" type="text" maxlength="100" placeholder="dashboard";
    }
}

/// The actor of a change made from a form.
pub fn actor(form: &super::access::Form) -> String {
    form.get("actor").unwrap_or("dashboard").to_owned()
}

/// `ENABLED` or `DISABLED`.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Enabled => "ENABLED",
        State::Disabled => "DISABLED",
    }
}

/// JSON, indented.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A value as short text: strings bare, the rest as JSON.
pub fn short(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The flag's type, from its variants' values.
pub fn flag_type<'a>(mut values: impl Iterator<Item = &'a Value>) -> &'static str {
    let Some(first) = values.next() else {
        return "—";
    };
    let kind = |v: &Value| match v {
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "float",
        Value::Object(_) | Value::Array(_) => "object",
        Value::Null => "null",
    };
    let k = kind(first);
    match values.map(kind).find(|other| *other != k) {
        None => k,
        Some(other) if matches!((k, other), ("integer", "float") | ("float", "integer")) => "float",
        Some(_) => "mixed",
    }
}

/// An override's fields in one line (`none` without one).
pub fn patch_summary(patch: Option<&OverridePatch>) -> String {
    let Some(p) = patch else {
        return "none".to_owned();
    };
    let mut parts = Vec::new();
    if let Some(s) = p.state {
        parts.push(format!("state {}", state_name(s)));
    }
    if let Some(d) = &p.default_variant {
        parts.push(format!("default {d}"));
    }
    if let Some(w) = &p.weights {
        let ws: Vec<String> = w.iter().map(|(n, w)| format!("{n} {w}")).collect();
        parts.push(format!("weights {}", ws.join(" / ")));
    }
    if parts.is_empty() {
        "empty".to_owned()
    } else {
        parts.join(" · ")
    }
}

/// The split's weights as percentages (an absent weight counts as 1, as in flagd).
pub fn percentages(split: &[SplitEntry]) -> Vec<(String, f64)> {
    let weights: Vec<u64> = split.iter().map(|e| e.weight.unwrap_or(1)).collect();
    let total: u64 = weights.iter().sum();
    split
        .iter()
        .zip(weights)
        .map(|(e, w)| {
            let pct = if total == 0 {
                0.0
            } else {
                w as f64 * 100.0 / total as f64
            };
            (e.variant.clone(), pct)
        })
        .collect()
}

/// A percentage with at most one decimal.
pub fn pct(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}%")
    } else {
        format!("{rounded:.1}%")
    }
}

/// A horizontal bar of shares (an SVG, so no inline style is needed), with its text
/// alternative.
pub fn bar(shares: &[(String, f64)]) -> Markup {
    let label: Vec<String> = shares
        .iter()
        .map(|(n, p)| format!("{n} {}", pct(*p)))
        .collect();
    let label = label.join(", ");
    let mut x = 0.0;
    let rects: Vec<(f64, f64)> = shares
        .iter()
        .map(|(_, p)| {
            let at = x;
            x += p;
            (at, *p)
        })
        .collect();
    html! {
        span.split {
            svg.bar viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label=(label) {
                @for (i, (at, p)) in rects.iter().enumerate() {
                    rect class={"c" (i % 6)} x=(format!("{at:.2}")) y="0" width=(format!("{p:.2}")) height="10" {}
                }
            }
            span.legend { (label) }
        }
    }
}

/// Text that becomes a DOM id or part of a URL path: kept as is (maud escapes it).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A link to a flag's page.
pub fn flag_href(key: &str, set: Option<&str>) -> String {
    match set {
        Some(s) => format!(
            "/ui/flags/{}?{}",
            path_segment(key),
            serde_urlencoded::to_string([("set", s)]).unwrap_or_default()
        ),
        None => format!("/ui/flags/{}", path_segment(key)),
    }
}

/// Raw markup (for text the templates already escaped).
pub fn raw(text: String) -> PreEscaped<String> {
    PreEscaped(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_renderers() {
        assert_eq!(flag_type([json!(true), json!(false)].iter()), "boolean");
        assert_eq!(flag_type([json!(1), json!(2.5)].iter()), "float");
        assert_eq!(flag_type([json!("a"), json!(1)].iter()), "mixed");
        assert_eq!(flag_type([json!({"a": 1})].iter()), "object");
        assert_eq!(pct(33.333), "33.3%");
        assert_eq!(pct(50.0), "50%");
        let split = [
            SplitEntry {
                variant: "a".into(),
                weight: Some(3),
            },
            SplitEntry {
                variant: "b".into(),
                weight: None,
            },
        ];
        assert_eq!(
            percentages(&split),
            [("a".to_owned(), 75.0), ("b".to_owned(), 25.0)]
        );
        let svg = bar(&percentages(&split)).into_string();
        assert!(svg.contains(r#"aria-label="a 75%, b 25%""#), "{svg}");
        assert!(svg.contains(r#"x="75.00""#), "{svg}");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(flag_href("k", Some("s 1")), "/ui/flags/k?set=s+1");
        let patch = OverridePatch {
            state: Some(State::Disabled),
            weights: Some(vec![("a".into(), 10), ("b".into(), 90)]),
            ..OverridePatch::default()
        };
        assert_eq!(
            patch_summary(Some(&patch)),
            "state DISABLED · weights a 10 / b 90"
        );
        assert_eq!(patch_summary(None), "none");
    }
}
