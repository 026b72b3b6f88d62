//! What keeps a web browser from driving the admin API.
//!
//! A page the operator has open can make the browser send requests to `127.0.0.1:8017`: a
//! "simple" cross-origin POST (`text/plain`, no preflight), and after DNS rebinding any request,
//! under the attacker's host name. Every admin request therefore passes these checks, token or
//! not, before it reaches a handler:
//!
//! 1. `Host` (or the HTTP/2 authority) must be a loopback name (`localhost`, `127.0.0.0/8`,
//!    `[::1]`) or one given with `--admin-allowed-host`: a rebound name is refused.
//! 2. A present `Origin` must be the API's own origin (same scheme, host and port as the request)
//!    or one given with `--admin-allowed-origin`: a cross-origin page is refused. Only explicitly
//!    allowed origins get CORS answers; a preflight from any other origin is refused without any
//!    `Access-Control-*` header.
//! 3. Requests that change something (`POST`, `PUT`, `PATCH`, `DELETE`) must be
//!    `Content-Type: application/json`, which a browser cannot send cross-origin without a
//!    preflight.
//!
//! Refusals are JSON errors: 403 for host and origin, 415 for the content type.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::admin::ApiError;

/// The hosts and origins the admin API accepts besides loopback and its own origin.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// Extra `Host` values: a name (any port), `name:port`, or `*.domain` (any name under the
    /// domain), compared case-insensitively.
    pub allowed_hosts: Vec<String>,
    /// Extra origins, `scheme://host[:port]`, compared case-insensitively.
    pub allowed_origins: Vec<String>,
    /// Whether the admin API is served over TLS (the scheme of its own origin).
    pub tls: bool,
}

/// The checks, shared by every request.
#[derive(Debug, Clone)]
pub struct Guard(Arc<GuardConfig>);

impl Guard {
    /// A guard with `config`'s names normalised.
    pub fn new(mut config: GuardConfig) -> Guard {
        for h in &mut config.allowed_hosts {
            *h = h.trim().to_ascii_lowercase();
        }
        config.allowed_hosts.retain(|h| !h.is_empty());
        for o in &mut config.allowed_origins {
            *o = o.trim().trim_end_matches('/').to_ascii_lowercase();
        }
        config.allowed_origins.retain(|o| !o.is_empty());
        Guard(Arc::new(config))
    }

    /// Whether `host` (a `Host` header value) names this API.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = host_name(&host);
        is_loopback_name(name)
            || self
                .0
                .allowed_hosts
                .iter()
                .any(|a| match a.strip_prefix('*') {
                    // `*.svc`: any name under that domain (not the domain itself).
                    Some(suffix) if suffix.starts_with('.') => {
                        name.len() > suffix.len() && name.ends_with(suffix)
                    }
                    _ => *a == host || *a == name,
                })
    }

    /// Whether `origin` may call the API whose request `Host` is `host`.
    fn origin_allowed(&self, origin: &str, host: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        if self.explicitly_allowed(&origin) {
            return true;
        }
        let scheme = if self.0.tls { "https://" } else { "http://" };
        origin
            .strip_prefix(scheme)
            .is_some_and(|rest| rest == host.trim().to_ascii_lowercase())
    }

    fn explicitly_allowed(&self, origin: &str) -> bool {
        self.0.allowed_origins.iter().any(|a| a == origin)
    }
}

/// The host part of a `Host` value: `name`, `name:port`, `[v6]` or `[v6]:port`.
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn changes_state(method: &Method) -> bool {
    matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn refusal(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn forbidden(message: String) -> Response {
    refusal(message).into_response()
}

impl Guard {
    /// The checks every request to the admin port passes, whatever it is for (the API or the
    /// dashboard): a loopback or allowed `Host`, and a present `Origin` that is the port's own
    /// or an allowed one. Returns the request's `Origin`, or the refusal.
    pub fn screen(&self, request: &Request) -> Result<Option<String>, ApiError> {
        let host = request_host(request)
            .ok_or_else(|| refusal("the admin API needs a Host header".into()))?;
        if !self.host_allowed(&host) {
            return Err(refusal(format!(
                "host `{host}` is not allowed: the admin API answers loopback names and the \
                 hosts given with --admin-allowed-host"
            )));
        }
        match request.headers().get(header::ORIGIN) {
            None => Ok(None),
            Some(value) => {
                let text = value.to_str().unwrap_or("");
                if !self.origin_allowed(text, &host) {
                    return Err(refusal(format!(
                        "origin `{text}` is not allowed: the admin API refuses requests from \
                         other web origins unless they are given with --admin-allowed-origin"
                    )));
                }
                Ok(Some(text.to_owned()))
            }
        }
    }
}

/// The `Host` header, or the HTTP/2 authority.
fn request_host(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()))
}

/// The middleware: refuses what a browser could forge, answers preflights of explicitly allowed
/// origins, and passes the rest on.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let origin = match guard.screen(&request) {
        Ok(origin) => origin,
        Err(refusal) => return refusal.into_response(),
    };
    // Cross-origin headers only for origins the operator listed.
    let cors_origin = origin.filter(|o| guard.explicitly_allowed(&o.to_ascii_lowercase()));
    if request.method() == Method::OPTIONS {
        let Some(origin) = cors_origin else {
            return forbidden("the admin API answers no preflight from this origin".into());
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, if-match"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    if changes_state(request.method()) && !is_json(request.headers().get(header::CONTENT_TYPE)) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "requests that change the authority must be sent as Content-Type: application/json",
        )
        .into_response();
    }
    let mut response = next.run(request).await;
    if let Some(origin) = cors_origin {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(GuardConfig {
            allowed_hosts: vec![
                "Flags.Internal".into(),
                "10.0.0.5:8017".into(),
                "*.svc".into(),
            ],
            allowed_origins: vec!["https://ops.example/".into()],
            tls: false,
        })
    }

    #[test]
    fn hosts() {
        let g = guard();
        for ok in [
            "localhost",
            "LOCALHOST:8017",
            "127.0.0.1:8017",
            "127.1.2.3",
            "[::1]:8017",
            "[::1]",
            "flags.internal:9000",
            "10.0.0.5:8017",
            "flagd-rs.ops.svc:8017",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8017",
            "localhost.evil.example",
            "127.0.0.1.nip.io:8017",
            "10.0.0.5:8018",
            "0.0.0.0:8017",
            "svc",
            ".svc",
            "flagd-rs.svc.evil.example",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn origins() {
        let g = guard();
        assert!(g.origin_allowed("http://127.0.0.1:8017", "127.0.0.1:8017"));
        assert!(g.origin_allowed("https://ops.example", "127.0.0.1:8017"));
        assert!(!g.origin_allowed("https://127.0.0.1:8017", "127.0.0.1:8017"));
        assert!(!g.origin_allowed("http://evil.example", "127.0.0.1:8017"));
        assert!(!g.origin_allowed("null", "127.0.0.1:8017"));
        assert!(!g.origin_allowed("http://localhost:8017", "127.0.0.1:8017"));
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some(&HeaderValue::from_static("application/json"))));
        assert!(is_json(Some(&HeaderValue::from_static(
            "Application/JSON; charset=utf-8"
        ))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(Some(&HeaderValue::from_static(
            "application/x-www-form-urlencoded"
        ))));
        assert!(!is_json(None));
    }
}
