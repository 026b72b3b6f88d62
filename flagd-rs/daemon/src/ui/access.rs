//! Who may see the dashboard and what a browser may make it do.
//!
//! Every request first passes the admin port's own checks ([`Guard::screen`]: a loopback or
//! allowed `Host`, and an `Origin`, when present, that is the port's own). Then:
//!
//! - **Sign-in.** With an admin token configured, pages need the token too: `/ui/login` takes
//!   it once and sets a session cookie (`HttpOnly`, `SameSite=Strict`, `Path=/ui`, `Secure`
//!   over TLS) whose value is an HMAC, under a key made at start, of a fixed label; it proves
//!   the token was shown to this process and is worthless after a restart. A request with
//!   `Authorization: Bearer <token>` is signed in as well.
//! - **Writes** are `POST`s of `application/x-www-form-urlencoded` forms, and only with
//!   `--ui readwrite`. A browser announces where a request comes from: a present `Origin` must be
//!   the port's own (checked above) and a present `Sec-Fetch-Site` must be `same-origin`, so a
//!   form on another origin's page is refused before any handler runs. Every form also carries
//!   a hidden `form_token` (the HMAC of another label under the same key), which a page of
//!   another origin cannot read; a request without it changes nothing. Pages may not be framed
//!   (`frame-ancestors 'none'`), so a form cannot be clicked through another page either.
//!
//! Whatever the dashboard changes, it changes through the methods the admin API calls, so a
//! change made here is journaled, validated and audited exactly as one made with the CLI.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use ring::hmac;
use serde::Deserialize;

use super::Dashboard;
use super::pages::{self, UiError};
use crate::authority::admin::AdminToken;
use crate::authority::guard::Guard;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "flagd_ui_session";

/// The hidden field every dashboard form carries.
pub const FORM_TOKEN_FIELD: &str = "form_token";

/// Sign-in state and the per-process values behind the session cookie and the form token.
pub struct Access {
    token: Option<AdminToken>,
    session: String,
    form_token: String,
    tls: bool,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("sign_in", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

impl Access {
    /// The access rules for a port with `token` (if any); `tls`: whether it serves TLS.
    pub fn new(token: Option<AdminToken>, tls: bool) -> Access {
        let rng = ring::rand::SystemRandom::new();
        // A key generation that fails leaves no secret to derive from: fall back to one built
        // from the clock and the address of a heap value, which still differs per process.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).unwrap_or_else(|_| {
            let seed = format!(
                "{:?}{:p}",
                std::time::SystemTime::now(),
                Box::new(0u8).as_ref()
            );
            hmac::Key::new(hmac::HMAC_SHA256, seed.as_bytes())
        });
        let label = |l: &[u8]| hex(hmac::sign(&key, l).as_ref());
        Access {
            token,
            session: label(b"flagd-rs dashboard session"),
            form_token: label(b"flagd-rs dashboard form"),
            tls,
        }
    }

    /// Whether pages need the admin token.
    pub fn needs_sign_in(&self) -> bool {
        self.token.is_some()
    }

    /// Whether `headers` carry the session cookie or the bearer token (always, without a token).
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .is_some_and(|(_, t)| token.matches(t));
        bearer
            || headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .any(|(name, value)| name == SESSION_COOKIE && same(value, &self.session))
    }

    /// The hidden form field's value.
    pub fn form_token(&self) -> &str {
        &self.form_token
    }

    fn session_cookie(&self) -> String {
        let secure = if self.tls { "; Secure" } else { "" };
        format!(
            "{SESSION_COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict{secure}",
            self.session
        )
    }
}

/// Constant-time equality (the lengths are public: both are hex HMACs).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A submitted form's fields.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Result<Form, UiError> {
        serde_urlencoded::from_bytes(body)
            .map(Form)
            .map_err(|e| UiError::bad_request(format!("the form could not be read: {e}")))
    }

    /// The first value of `name`, trimmed; `None` when absent or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every (name, value) pair whose name starts with `prefix`, the prefix removed.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.0
            .iter()
            .filter_map(move |(k, v)| Some((k.strip_prefix(prefix)?, v.trim())))
    }
}

impl Dashboard {
    /// The form of a change: refused unless the dashboard is read-write, the request is signed
    /// in and the form carries this process's form token.
    pub fn write_form(&self, headers: &HeaderMap, body: &[u8]) -> Result<Form, UiError> {
        if !self.writable() {
            return Err(UiError::new(
                StatusCode::FORBIDDEN,
                "The dashboard is read-only (--ui readonly): change flags with the admin API or \
                 the CLI, or start the daemon with --ui readwrite.",
            ));
        }
        if !self.access.signed_in(headers) {
            return Err(UiError::new(
                StatusCode::UNAUTHORIZED,
                "Sign in with the admin token first.",
            ));
        }
        let form = Form::parse(body)?;
        match form.get(FORM_TOKEN_FIELD) {
            Some(t) if same(t, self.access.form_token()) => Ok(form),
            _ => Err(UiError::new(
                StatusCode::FORBIDDEN,
                "The form is missing this dashboard's form token (it was not sent from one of \
                 its pages, or the daemon restarted since the page was loaded): reload the page \
                 and try again.",
            )),
        }
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Why a browser's write is refused before it reaches a handler, if it is.
fn write_refusal(headers: &HeaderMap) -> Option<UiError> {
    if let Some(site) = headers.get("sec-fetch-site")
        && !site.as_bytes().eq_ignore_ascii_case(b"same-origin")
    {
        return Some(UiError::new(
            StatusCode::FORBIDDEN,
            "This form was sent from a page of another site; the dashboard only accepts \
             forms from its own pages.",
        ));
    }
    if !is_form(headers) {
        return Some(UiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The dashboard takes forms (application/x-www-form-urlencoded); scripts use the \
             admin API under /v1.",
        ));
    }
    None
}

/// The middleware in front of every dashboard route.
pub async fn check(
    State((dashboard, guard)): State<(Arc<Dashboard>, Guard)>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = guard.screen(&request) {
        return refusal.into_response();
    }
    let path = request.uri().path();
    let open = path == "/ui/login" || path.starts_with("/ui/assets/") || path == "/";
    match *request.method() {
        Method::GET | Method::HEAD => {
            if !open && !dashboard.access.signed_in(request.headers()) {
                let next = request
                    .uri()
                    .path_and_query()
                    .map_or("/ui/", |p| p.as_str());
                let target = format!(
                    "/ui/login?{}",
                    serde_urlencoded::to_string([("next", next)]).unwrap_or_default()
                );
                return Redirect::to(&target).into_response();
            }
        }
        Method::POST => {
            if let Some(refusal) = write_refusal(request.headers()) {
                return refusal.into_response();
            }
        }
        _ => {
            return UiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "The dashboard answers GET and form POSTs only.",
            )
            .into_response();
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
             form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The query of the sign-in page.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after signing in: a dashboard page, never another site.
fn safe_next(next: Option<&str>) -> &str {
    next.filter(|n| n.starts_with("/ui/") && !n.starts_with("//"))
        .unwrap_or("/ui/")
}

/// `GET /ui/login`.
pub async fn login_page(
    State(dashboard): State<Arc<Dashboard>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    login_form(
        &dashboard,
        safe_next(query.next.as_deref()),
        None,
        StatusCode::OK,
    )
}

fn login_form(
    dashboard: &Dashboard,
    next: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if !dashboard.access.needs_sign_in() {
            p { "No admin token is configured: the dashboard needs no sign-in." }
            p { a href="/ui/" { "Go to the flags" } }
        } @else {
            @if let Some(e) = error { p.banner.bad role="alert" { (e) } }
            form method="post" action="/ui/login" class="stack" {
                input type="hidden" name=(FORM_TOKEN_FIELD) value=(dashboard.access.form_token());
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input id="token" name="token" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    (status, pages::layout(dashboard, "Sign in", "", body)).into_response()
}

/// `POST /ui/login`: checks the token and sets the session cookie.
pub async fn login(
    State(dashboard): State<Arc<Dashboard>>,
    body: Bytes,
) -> Result<Response, UiError> {
    let form = Form::parse(&body)?;
    if !form
        .get(FORM_TOKEN_FIELD)
        .is_some_and(|t| same(t, dashboard.access.form_token()))
    {
        return Err(UiError::new(
            StatusCode::FORBIDDEN,
            "The sign-in form did not come from this dashboard: reload it and try again.",
        ));
    }
    let next = safe_next(form.get("next")).to_owned();
    let Some(token) = &dashboard.access.token else {
        return Ok(Redirect::to(&next).into_response());
    };
    if !form.get("token").is_some_and(|t| token.matches(t)) {
        return Ok(login_form(
            &dashboard,
            &next,
            Some("That is not the admin token."),
            StatusCode::UNAUTHORIZED,
        ));
    }
    let mut response = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&dashboard.access.session_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn sign_in_takes_the_cookie_or_the_bearer_token() {
        let open = Access::new(None, false);
        assert!(open.signed_in(&HeaderMap::new()));
        let access = Access::new(AdminToken::new("s3cret"), false);
        assert!(!access.signed_in(&HeaderMap::new()));
        assert!(access.signed_in(&headers(&[("authorization", "Bearer s3cret")])));
        assert!(!access.signed_in(&headers(&[("authorization", "Bearer nope")])));
        let cookie = format!("a=b; {SESSION_COOKIE}={}", access.session);
        assert!(access.signed_in(&headers(&[("cookie", &cookie)])));
        assert!(!access.signed_in(&headers(&[("cookie", "flagd_ui_session=00")])));
        // Another process's cookie is worthless here.
        let other = Access::new(AdminToken::new("s3cret"), false);
        let stale = format!("{SESSION_COOKIE}={}", other.session);
        assert!(!access.signed_in(&headers(&[("cookie", &stale)])));
        assert!(
            access
                .session_cookie()
                .contains("HttpOnly; SameSite=Strict")
        );
        assert!(
            Access::new(None, true)
                .session_cookie()
                .ends_with("; Secure")
        );
    }

    #[test]
    fn writes_must_be_same_origin_forms() {
        let form = ("content-type", "application/x-www-form-urlencoded");
        assert!(write_refusal(&headers(&[form])).is_none());
        assert!(write_refusal(&headers(&[form, ("sec-fetch-site", "same-origin")])).is_none());
        for site in ["cross-site", "same-site", "none"] {
            let refused = write_refusal(&headers(&[form, ("sec-fetch-site", site)]));
            assert_eq!(
                refused.map(|e| e.status),
                Some(StatusCode::FORBIDDEN),
                "{site}"
            );
        }
        for ct in [
            "text/plain",
            "multipart/form-data; boundary=x",
            "application/json",
        ] {
            let refused = write_refusal(&headers(&[("content-type", ct)]));
            assert_eq!(
                refused.map(|e| e.status),
                Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
                "{ct}"
            );
        }
    }

    #[test]
    fn forms_and_next_pages() {
        let form = Form::parse(b"reason=why+not&w_blue=10&w_green=%2090&empty=").unwrap();
        assert_eq!(form.get("reason"), Some("why not"));
        assert_eq!(form.get("empty"), None);
        let weights: Vec<_> = form.with_prefix("w_").collect();
        assert_eq!(weights, [("blue", "10"), ("green", "90")]);
        assert_eq!(safe_next(Some("/ui/history")), "/ui/history");
        assert_eq!(safe_next(Some("https://evil.example/")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui/")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
