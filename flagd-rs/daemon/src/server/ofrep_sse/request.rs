//! `GET /ofrep/v1/sse` and `GET /ofrep/v1/sse/{selector}`: reading a stream request and
//! writing the stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};

use super::hub::{Beat, OfrepStreams, Subscriber};
use super::wire::{KEEP_ALIVE, SSE_PATH, TOKEN_PARAM, Token};
use crate::selector::Selector;
use crate::server::eval::resolve::SELECTOR_HEADER;
use crate::server::ofrep::gzip;
use crate::server::sync::gojson::write_str;

/// The header a reconnecting `EventSource` sends with the id of the last event it received.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// The stream routes over `streams`. They read no request body, so no body limit applies.
pub fn routes<S>(streams: Arc<OfrepStreams>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route(SSE_PATH, get(connect))
        .route("/ofrep/v1/sse/", get(connect))
        .route("/ofrep/v1/sse/{*selector}", get(connect_at))
        .with_state(streams)
}

/// `GET /ofrep/v1/sse`: the selector from the query or the `Flagd-Selector` header.
async fn connect(
    State(streams): State<Arc<OfrepStreams>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    open(&streams, None, &uri, &headers)
}

/// `GET /ofrep/v1/sse/{selector}`: the selector in the path (percent-decoded).
async fn connect_at(
    State(streams): State<Arc<OfrepStreams>>,
    Path(selector): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    open(&streams, Some(selector), &uri, &headers)
}

fn open(streams: &OfrepStreams, path: Option<String>, uri: &Uri, headers: &HeaderMap) -> Response {
    let refuse = |status, details: &str| error(status, details, gzip::accepts_gzip(headers));
    let request = match StreamRequest::read(path, uri, headers) {
        Ok(request) => request,
        Err(details) => return refuse(StatusCode::BAD_REQUEST, &details),
    };
    match streams.subscribe(
        request.selector,
        request.token,
        request.last_event_id.as_deref(),
    ) {
        Some(subscriber) => stream(subscriber),
        None => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is shutting down",
        ),
    }
}

/// What a stream request asks for.
#[derive(Debug, PartialEq, Eq)]
struct StreamRequest {
    selector: Selector,
    token: Option<Token>,
    last_event_id: Option<String>,
}

impl StreamRequest {
    /// The selector comes from the path, else the `selector` query parameter, else `channels`
    /// (a flag set id, as an earlier flagd advertised it), else the `Flagd-Selector` header.
    fn read(path: Option<String>, uri: &Uri, headers: &HeaderMap) -> Result<StreamRequest, String> {
        let query: Vec<(String, String)> = match uri.query() {
            Some(q) => serde_urlencoded::from_str(q).map_err(|e| format!("invalid query: {e}"))?,
            None => Vec::new(),
        };
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let text = if let Some(path) = path.filter(|p| !p.is_empty()) {
            path
        } else if let Some(selector) = param("selector") {
            selector.to_owned()
        } else if let Some(channel) = param("channels") {
            if channel.contains('=') || channel.is_empty() {
                channel.to_owned()
            } else {
                format!("flagSetId={channel}")
            }
        } else {
            headers
                .get(SELECTOR_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default()
        };
        let selector = Selector::parse(&text).map_err(|e| format!("invalid selector: {e}"))?;
        let token = match param(TOKEN_PARAM).filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(Token::parse(t).ok_or_else(|| {
                format!(
                    "invalid {TOKEN_PARAM}: expected the 32 hex digits an eventStreams \
                     requestUri carries"
                )
            })?),
        };
        let last_event_id = headers
            .get(LAST_EVENT_ID)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
            .filter(|id| !id.is_empty());
        Ok(StreamRequest {
            selector,
            token,
            last_event_id,
        })
    }
}

/// `{"errorCode":"GENERAL","errorDetails":..}` with `status`, gzipped as the port's other JSON
/// answers are when large enough and the request `accepts_gzip`.
fn error(status: StatusCode, details: &str, accepts_gzip: bool) -> Response {
    let mut body = String::from(r#"{"errorCode":"GENERAL","errorDetails":"#);
    write_str(&mut body, details);
    body.push('}');
    gzip::json_answer(status, body, None, accepts_gzip)
}

/// The event stream: the first frame if any, then the group's frames and keep-alive comments,
/// until the daemon shuts down.
fn stream(subscriber: Subscriber) -> Response {
    let frames = futures::stream::unfold(subscriber, |mut s| async move {
        let frame = next_frame(&mut s).await?;
        Some((Ok::<Bytes, Infallible>(frame), s))
    });
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) would hold events back.
    headers.insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

async fn next_frame(s: &mut Subscriber) -> Option<Bytes> {
    // The daemon may have begun shutting down before this stream subscribed to the beat.
    if *s.beat.borrow() == Beat::Closing {
        return None;
    }
    if let Some(first) = s.first.take() {
        return Some(first);
    }
    tokio::select! {
        biased;
        beat = s.beat.changed() => {
            beat.ok()?;
            match *s.beat.borrow_and_update() {
                Beat::Closing => None,
                Beat::Tick(_) => Some(Bytes::from_static(KEEP_ALIVE)),
            }
        }
        notice = s.notices.changed() => {
            notice.ok()?;
            Some(s.notices.borrow_and_update().clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        path: Option<&str>,
        uri: &str,
        headers: &[(&str, &str)],
    ) -> Result<StreamRequest, String> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        StreamRequest::read(path.map(str::to_owned), &uri.parse().unwrap(), &map)
    }

    #[test]
    fn selectors_come_from_path_query_or_header() {
        let set = |id: &str| Selector::FlagSet(id.into());
        assert_eq!(
            read(None, "/ofrep/v1/sse", &[]).unwrap().selector,
            Selector::All
        );
        assert_eq!(
            read(None, "/ofrep/v1/sse", &[("flagd-selector", "flagSetId=h")])
                .unwrap()
                .selector,
            set("h")
        );
        assert_eq!(
            read(
                None,
                "/ofrep/v1/sse?selector=flagSetId%3Dq",
                &[("flagd-selector", "flagSetId=h")]
            )
            .unwrap()
            .selector,
            set("q")
        );
        assert_eq!(
            read(None, "/ofrep/v1/sse?channels=c", &[])
                .unwrap()
                .selector,
            set("c")
        );
        assert_eq!(
            read(None, "/ofrep/v1/sse?channels=source%3Dx", &[])
                .unwrap()
                .selector,
            Selector::Source("x".into())
        );
        assert_eq!(
            read(
                Some("source=./f.json"),
                "/ofrep/v1/sse/x?selector=flagSetId%3Dq",
                &[]
            )
            .unwrap()
            .selector,
            Selector::Source("./f.json".into())
        );
        let err = read(None, "/ofrep/v1/sse?selector=team%3Da", &[]).unwrap_err();
        assert!(err.starts_with("invalid selector: "), "{err}");
        let err = read(Some("team=a"), "/ofrep/v1/sse/team=a", &[]).unwrap_err();
        assert!(err.starts_with("invalid selector: "), "{err}");
    }

    #[test]
    fn tokens_and_last_event_ids() {
        let hex = "0123456789abcdef0123456789abcdef";
        let r = read(
            None,
            &format!("/ofrep/v1/sse?ctx={hex}"),
            &[("last-event-id", " 42 ")],
        )
        .unwrap();
        assert_eq!(r.token, Token::parse(hex));
        assert_eq!(r.last_event_id.as_deref(), Some("42"));
        let r = read(None, "/ofrep/v1/sse?ctx=", &[("last-event-id", "")]).unwrap();
        assert_eq!((r.token, r.last_event_id), (None, None));
        let err = read(None, "/ofrep/v1/sse?ctx=nothex", &[]).unwrap_err();
        assert!(err.starts_with("invalid ctx"), "{err}");
    }
}
