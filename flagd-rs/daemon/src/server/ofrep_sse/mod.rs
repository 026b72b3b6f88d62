//! OFREP event streams (protocol ADR-0008) on the OFREP port: `GET /ofrep/v1/sse` tells a
//! client, with a `refetchEvaluation` event, that its bulk answer may have changed, so that web
//! and mobile providers need not poll.
//!
//! Every bulk answer lists the stream in `eventStreams`. Its `requestUri` names the request's
//! selector (`/ofrep/v1/sse/flagSetId=...`) and a token for the request's evaluation context
//! (`?ctx=<32 hex digits>`, see [`wire::Token`]). The token is what makes an event's `etag` equal
//! the `ETag` the client gets when it re-fetches: a bulk `ETag` is the hash of the exact body,
//! which depends on the context, and a stream request carries no context. The bulk handler
//! keeps the (selector, context) of each token it hands out (bounded, see [`hub`]); when a
//! change touches a selection, the body of each distinct (selector, context) that has a live
//! stream is rendered once by the same code as the bulk handler ([`crate::server::ofrep::render_bulk`]),
//! and its streams are told the new `ETag`, only if the body actually changed. A stream without
//! a token (plain `/ofrep/v1/sse`, as hand-configured clients use) is told the selection's
//! configuration version instead: the store revision at which its flags last changed.
//!
//! Streams are grouped by (selector, token); each group has one `watch` channel holding its
//! latest frame, and every stream of the group holds a receiver. A stream is a small state
//! machine polled by its connection, with no task or buffer of its own; keep-alive comments and
//! the shutdown signal come from one shared `watch` as well.

mod hub;
mod request;
mod wire;

use std::time::Duration;

pub use hub::OfrepStreams;
pub use request::routes;
pub use wire::SSE_PATH;

use crate::selector::Selector;
use crate::store::Snapshot;

/// How long a stream may stay quiet before a keep-alive comment is sent, as flagd does.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The `inactivityDelaySec` advertised by default (the protocol's default).
pub const DEFAULT_INACTIVITY_DELAY_SEC: u32 = 120;

/// The event-stream options (`--ofrep-sse*`; flagd's `SSEEnabled`, `SSEInactivityDelaySec`,
/// `SSEPublicURL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseSettings {
    /// Serve `/ofrep/v1/sse` and advertise it in bulk answers.
    pub enabled: bool,
    /// The `inactivityDelaySec` advertised: how long a hidden page keeps its stream open.
    pub inactivity_delay_sec: u32,
    /// The advertised `origin` (scheme, host and port, no trailing `/`); `None`: clients use
    /// the origin they reach OFREP at.
    pub public_url: Option<String>,
    /// Interval of keep-alive comments (zero: none).
    pub keep_alive: Duration,
}

impl Default for SseSettings {
    fn default() -> Self {
        SseSettings {
            enabled: true,
            inactivity_delay_sec: DEFAULT_INACTIVITY_DELAY_SEC,
            public_url: None,
            keep_alive: DEFAULT_KEEP_ALIVE,
        }
    }
}

/// Checks `--ofrep-sse-public-url` and returns the origin to advertise: an `http` or `https`
/// URL with a host, without path (a trailing `/` is dropped), query or fragment.
pub fn public_origin(url: &str) -> Result<String, String> {
    let trimmed = url.trim().trim_end_matches('/');
    let explain = |why: &str| {
        format!("`{url}` is not a public origin ({why}); expected e.g. https://flags.example.com")
    };
    let uri: http::Uri = trimmed.parse().map_err(|_| explain("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(explain("the scheme must be http or https")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(explain("no host"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() || trimmed.contains('#') {
        return Err(explain(
            "a path, query or fragment would be replaced by the stream's own path",
        ));
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(explain("credentials do not belong in an advertised URL"));
    }
    Ok(trimmed.to_owned())
}

/// Whether a bulk request's `flagConfigEtag` (the `etag` of the event that triggered it)
/// forbids answering `304`, as ADR-0008 requires when it names another configuration than the
/// one answered. `answer_etag` is the `ETag` of the answer about to be sent.
///
/// An event `etag` in the quoted form is a bulk `ETag` (a stream with a token): it vetoes when
/// it differs from `answer_etag`. Otherwise it is a configuration version (a stream without a
/// token): it vetoes when it differs from the selection's version as the streams know it, or
/// from the store revision when no stream follows that selection.
pub fn vetoes(
    streams: Option<&OfrepStreams>,
    snapshot: &Snapshot,
    selector: &Selector,
    announced: &str,
    answer_etag: &str,
) -> bool {
    let announced = announced.trim();
    if announced.starts_with('"') || announced.starts_with("W/") {
        let opaque = |t: &str| t.trim_start_matches("W/").trim_matches('"').to_owned();
        return opaque(announced) != opaque(answer_etag);
    }
    let version = streams
        .and_then(|s| s.selection_version(selector))
        .unwrap_or(snapshot.revision);
    announced != version.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_origins() {
        assert_eq!(
            public_origin("https://flags.example.com/").as_deref(),
            Ok("https://flags.example.com")
        );
        assert_eq!(
            public_origin(" http://127.0.0.1:8016 ").as_deref(),
            Ok("http://127.0.0.1:8016")
        );
        for bad in [
            "flags.example.com",
            "ftp://flags.example.com",
            "https://flags.example.com/base",
            "https://flags.example.com?x=1",
            "https://flags.example.com#top",
            "https://user:pw@flags.example.com",
            "",
        ] {
            let err = public_origin(bad).unwrap_err();
            assert!(err.contains("expected e.g."), "{bad}: {err}");
        }
    }

    #[test]
    fn config_etags_veto_only_when_they_name_another_configuration() {
        let snapshot = Snapshot::default();
        let tag = "\"abc\"";
        let veto = |announced: &str| vetoes(None, &snapshot, &Selector::All, announced, tag);
        assert!(!veto("\"abc\""));
        assert!(!veto("W/\"abc\""));
        assert!(veto("\"abd\""));
        // Without a stream for the selection, a version is compared with the store revision.
        assert!(!veto("0"));
        assert!(veto("7"));
        assert!(veto("stale"));
    }
}
