//! The HTTP source: polls a flag document at an `http://` or `https://` URL.
//!
//! Every poll is a conditional `GET`: the `ETag` of the last document received goes back as
//! `If-None-Match`, so an unchanged document costs the server a `304` and nothing is sent to the
//! store. A `200` whose body is byte-identical to the last one is not sent either. The format
//! comes from the URL's extension (`.json`, `.yaml`, `.yml`), else from the `Content-Type`, else
//! JSON is assumed and the store reports a document that does not parse.
//!
//! The first request goes out at start; later polls follow the source's [`PollSchedule`]: every
//! `interval`, at an offset within the interval that comes from `intervalSeed` when one is set
//! and is drawn at random otherwise, so that replicas do not poll their origin in step.
//!
//! An origin that is down never stops the daemon. The source reports `Failed` (the store keeps
//! the last good flags, and readiness stays false until a first document arrives) and tries
//! again after a delay that doubles with each consecutive failure, up to a cap; the first
//! success returns it to its schedule.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use ::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use ::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use flagd_evaluator::Format;
use tokio::sync::{mpsc, watch};

use super::schedule::PollSchedule;
use super::{SourceError, SourceSpec, runtime};
use crate::store::{SourceEvent, SourceUpdate};

/// flagd's poll interval when a source sets none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// The largest document accepted; a larger body is reported as a failure instead of being
/// buffered without bound.
const MAX_DOCUMENT_BYTES: usize = 64 << 20;

/// How the delay between attempts grows while a remote source keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure.
    pub initial: Duration,
    /// The longest delay; reached by doubling `initial`.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay after `failures` consecutive failures (1 = the first): `initial` doubled
    /// `failures - 1` times, never more than `max`.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

/// Timing of an HTTP source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Poll interval; `None` takes the source's `interval` (seconds), else [`DEFAULT_INTERVAL`].
    /// The offset of the polls within it comes from the source's `intervalSeed`, else at random.
    pub interval: Option<Duration>,
    /// Delays between attempts while the origin fails.
    pub retry: RetryPolicy,
    /// How long establishing a connection may take.
    pub connect_timeout: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            interval: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Starts a task that polls `spec.uri` and sends its document as source `index` whenever it
/// changes, until `shutdown` becomes `true` (or its sender is dropped, or `tx` is closed).
///
/// Requests carry `Accept: application/json, application/yaml`, the spec's `headers` (a `Host`
/// entry names the host the request is for) and, when set, its `authHeader` as the
/// `Authorization` header; `timeoutS` bounds each request. Headers that cannot be sent are a
/// [`SourceError::Invalid`]. What it sends:
/// - `Content` with the body and its format, the first time and whenever the body changes;
/// - `Failed` when a request fails (connection, non-2xx status, timeout), once per distinct
///   problem, so the store keeps the last good flags;
/// - after a failure, the last document again once the origin answers, which tells the store
///   the problem is over without publishing anything.
pub fn spawn(
    spec: &SourceSpec,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
    options: HttpOptions,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let handle = runtime()?;
    let headers = request_headers(spec).map_err(|problem| spec.invalid(problem))?;
    let interval = options
        .interval
        .or_else(|| {
            spec.interval
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s)))
        })
        .unwrap_or(DEFAULT_INTERVAL);
    let schedule = PollSchedule::new(interval, spec.interval_seed.as_deref());
    let carries_secrets = !spec.headers.is_empty()
        || spec.auth_header.as_deref().is_some_and(|a| !a.is_empty())
        || has_userinfo(spec.uri.trim());
    let source = HttpSource {
        url: spec.uri.trim().to_owned(),
        shown: spec.source_uri(),
        carries_secrets,
        headers,
        timeout: spec
            .timeout_s
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(u64::from(s))),
        schedule,
        options,
        index,
        tx,
        etag: None,
        last: None,
        last_failure: None,
    };
    Ok(handle.spawn(source.run(shutdown)))
}

/// The headers every request carries, or why they cannot be built. A `Host` entry, in any case,
/// replaces the host taken from the URL (the client sends an explicit `Host` as given).
pub(crate) fn request_headers(spec: &SourceSpec) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, application/yaml"),
    );
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name `{name}` in the source's headers"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}` in the source's headers"))?;
        headers.insert(name, value);
    }
    if let Some(auth) = spec.auth_header.as_deref().filter(|a| !a.is_empty()) {
        let mut value = HeaderValue::from_str(auth)
            .map_err(|_| "invalid authHeader: not a valid header value".to_owned())?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}

/// The last document sent to the store.
struct Sent {
    hash: u64,
    bytes: Vec<u8>,
    format: Format,
}

/// What one poll found.
enum Polled {
    /// A body that differs from the last one.
    Changed { bytes: Vec<u8>, format: Format },
    /// `304`, or a body identical to the last one.
    Unchanged,
}

/// The state of one running HTTP source, owned by its task.
struct HttpSource {
    url: String,
    /// The URL as logs and errors show it: without user name and password.
    shown: String,
    /// Whether requests carry something a foreign origin must not see (headers, credentials).
    carries_secrets: bool,
    headers: HeaderMap,
    timeout: Option<Duration>,
    schedule: PollSchedule,
    options: HttpOptions,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    /// The validator of the last document received.
    etag: Option<HeaderValue>,
    last: Option<Sent>,
    /// The problem last reported, so a persistent one is reported once.
    last_failure: Option<String>,
}

impl HttpSource {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let headers = std::mem::take(&mut self.headers);
        tracing::debug!(
            source = %self.shown,
            interval = ?self.schedule.interval(),
            offset = ?self.schedule.offset(),
            "polling"
        );
        let client = match self.client() {
            Ok(c) => c,
            Err(problem) => {
                tracing::error!(source = %self.shown, error = %problem, "HTTP source cannot start");
                self.fail(problem).await;
                wait_for_stop(&mut shutdown).await;
                return;
            }
        };
        let mut failures: u32 = 0;
        loop {
            let polled = tokio::select! {
                () = wait_for_stop(&mut shutdown) => return,
                polled = self.poll(&client, &headers) => polled,
            };
            let delivered = match polled {
                Ok(Polled::Changed { bytes, format }) => {
                    failures = 0;
                    self.last_failure = None;
                    self.deliver(bytes, format).await
                }
                Ok(Polled::Unchanged) => {
                    failures = 0;
                    if self.last_failure.take().is_some() {
                        // The origin is back with the same document: resending it clears the
                        // store's error without publishing a new revision.
                        self.resend().await
                    } else {
                        true
                    }
                }
                Err(problem) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(source = %self.shown, failures, error = %problem, "HTTP poll failed");
                    self.fail(problem).await
                }
            };
            if !delivered {
                return; // the store has stopped
            }
            let delay = if failures == 0 {
                self.schedule.next_delay()
            } else {
                self.options.retry.delay(failures)
            };
            tokio::select! {
                () = wait_for_stop(&mut shutdown) => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn client(&self) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.options.connect_timeout)
            .redirect(redirect_policy(self.carries_secrets))
            .user_agent(concat!("flagd-rs/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = self.timeout {
            builder = builder.timeout(timeout);
        }
        builder
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", error_chain(&e)))
    }

    /// One conditional `GET`.
    async fn poll(
        &mut self,
        client: &reqwest::Client,
        headers: &HeaderMap,
    ) -> Result<Polled, String> {
        let mut request = client.get(&self.url).headers(headers.clone());
        if let Some(etag) = &self.etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        let mut response = request.send().await.map_err(|e| {
            format!(
                "GET {} failed: {}",
                self.shown,
                error_chain(&e.without_url())
            )
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Polled::Unchanged);
        }
        if !status.is_success() {
            return Err(format!("GET {} answered {status}", self.shown));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large(&self.shown));
        }
        let etag = response.headers().get(ETAG).cloned();
        let format = document_format(
            &self.url,
            response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            format!(
                "reading {} failed: {}",
                self.shown,
                error_chain(&e.without_url())
            )
        })? {
            if bytes.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(too_large(&self.shown));
            }
            bytes.extend_from_slice(&chunk);
        }
        // Remembered only once the whole body is in hand, so a broken transfer is fetched again.
        self.etag = etag;
        let hash = hash_of(&bytes);
        if self
            .last
            .as_ref()
            .is_some_and(|l| l.hash == hash && l.format == format)
        {
            return Ok(Polled::Unchanged);
        }
        Ok(Polled::Changed { bytes, format })
    }

    /// Sends a new document; `false` when the store has stopped.
    async fn deliver(&mut self, bytes: Vec<u8>, format: Format) -> bool {
        self.last = Some(Sent {
            hash: hash_of(&bytes),
            bytes: bytes.clone(),
            format,
        });
        self.send(SourceEvent::Content { bytes, format }).await
    }

    /// Sends the last document again, if there is one.
    async fn resend(&mut self) -> bool {
        match &self.last {
            Some(last) => {
                let event = SourceEvent::Content {
                    bytes: last.bytes.clone(),
                    format: last.format,
                };
                self.send(event).await
            }
            None => true,
        }
    }

    /// Reports `problem` unless it is the one reported last.
    async fn fail(&mut self, problem: String) -> bool {
        if self.last_failure.as_deref() == Some(problem.as_str()) {
            return true;
        }
        self.last_failure = Some(problem.clone());
        self.send(SourceEvent::Failed(problem)).await
    }

    async fn send(&self, event: SourceEvent) -> bool {
        self.tx
            .send(SourceUpdate {
                source: self.index,
                event,
            })
            .await
            .is_ok()
    }
}

/// The format of a fetched document: the URL path's extension decides, then the
/// `Content-Type`; JSON when neither names one.
fn document_format(url: &str, content_type: Option<&str>) -> Format {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    if path.ends_with(".yaml") || path.ends_with(".yml") {
        return Format::Yaml;
    }
    if path.ends_with(".json") {
        return Format::Json;
    }
    content_type
        .and_then(Format::from_content_type)
        .unwrap_or(Format::Json)
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// How many redirects one poll follows.
const MAX_REDIRECTS: usize = 10;

/// Redirects are followed, but never from `https` to plain `http` (the document would travel in
/// cleartext), and, when the source sends headers or credentials, never to another origin
/// (they would be sent to it).
fn redirect_policy(carries_secrets: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let previous = attempt.previous();
        if previous.len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let (Some(first), Some(last)) = (previous.first(), previous.last()) else {
            return attempt.follow();
        };
        let next = attempt.url();
        if last.scheme() == "https" && next.scheme() != "https" {
            let refused = format!(
                "refusing a redirect from https to {}://{}",
                next.scheme(),
                next.host_str().unwrap_or("")
            );
            return attempt.error(refused);
        }
        if carries_secrets && origin(first) != origin(next) {
            let refused = format!(
                "refusing a redirect to another origin ({}://{}) with the source's headers or \
                 credentials; point the source at the final URL",
                next.scheme(),
                next.host_str().unwrap_or("")
            );
            return attempt.error(refused);
        }
        attempt.follow()
    })
}

fn origin(url: &reqwest::Url) -> (&str, Option<&str>, Option<u16>) {
    (url.scheme(), url.host_str(), url.port_or_known_default())
}

/// Whether `uri` carries a user name or password (`https://user:token@host/...`).
pub(crate) fn has_userinfo(uri: &str) -> bool {
    reqwest::Url::parse(uri).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// `uri` without its user name and password, for names that appear in logs, metrics and
/// payloads; unchanged when it has none.
pub(crate) fn without_userinfo(uri: &str) -> String {
    match reqwest::Url::parse(uri) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

fn too_large(url: &str) -> String {
    format!("the document at {url} is larger than {MAX_DOCUMENT_BYTES} bytes")
}

/// An error with its causes, which for reqwest hold the useful part (`connection refused`).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Resolves once `shutdown` is `true` or its sender is gone.
pub(crate) async fn wait_for_stop(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Provider;

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let secs: Vec<u64> = (1..=9).map(|n| policy.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(policy.delay(0), Duration::from_secs(1));
        assert_eq!(policy.delay(u32::MAX), Duration::from_secs(60));
        let fast = RetryPolicy {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(25),
        };
        assert_eq!(fast.delay(2), Duration::from_millis(20));
        assert_eq!(fast.delay(3), Duration::from_millis(25));
    }

    #[test]
    fn format_from_extension_then_content_type() {
        let f = document_format;
        assert_eq!(f("http://h/a.yaml", Some("application/json")), Format::Yaml);
        assert_eq!(f("http://h/a.YML?x=1", None), Format::Yaml);
        assert_eq!(f("http://h/a.json", Some("application/yaml")), Format::Json);
        assert_eq!(
            f("http://h/flags", Some("application/x-yaml")),
            Format::Yaml
        );
        assert_eq!(
            f("http://h/flags", Some("application/json; charset=utf-8")),
            Format::Json
        );
        assert_eq!(f("http://h/flags", Some("text/plain")), Format::Json);
        assert_eq!(f("http://h/flags", None), Format::Json);
    }

    #[test]
    fn headers_include_auth_and_custom_entries() {
        let mut spec = SourceSpec::new("http://h/f.json", Provider::Http);
        spec.auth_header = Some("Bearer secret".into());
        spec.headers.insert("X-Team".into(), "core".into());
        let headers = request_headers(&spec).unwrap();
        assert_eq!(headers.get(AUTHORIZATION).unwrap(), "Bearer secret");
        assert!(headers.get(AUTHORIZATION).unwrap().is_sensitive());
        assert_eq!(headers.get("x-team").unwrap(), "core");
        assert!(headers.get(ACCEPT).is_some());
        spec.headers.insert("bad header".into(), "x".into());
        assert!(request_headers(&spec).unwrap_err().contains("bad header"));
    }

    #[test]
    fn a_host_header_names_the_host_of_the_request() {
        let mut spec = SourceSpec::new("http://10.0.0.7:8080/f.json", Provider::Http);
        spec.headers.insert("Host".into(), "flags.internal".into());
        let headers = request_headers(&spec).unwrap();
        assert_eq!(headers.get(::http::header::HOST).unwrap(), "flags.internal");
    }

    #[tokio::test]
    async fn headers_that_cannot_be_sent_stop_the_source_from_starting() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let mut spec = SourceSpec::new("http://h/f.json", Provider::Http);
        spec.headers.insert("X-Team".into(), "line\nbreak".into());
        let err = spawn(&spec, 0, tx, shutdown, HttpOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid source \"http://h/f.json\": invalid value for header `x-team` in the \
             source's headers"
        );
    }

    #[tokio::test]
    async fn unreachable_origin_reports_failure_and_retries() {
        // A port that was just free: connections are refused.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let spec = SourceSpec::new(format!("http://127.0.0.1:{port}/f.json"), Provider::Http);
        let (tx, mut rx) = mpsc::channel(8);
        let (stop, shutdown) = watch::channel(false);
        let options = HttpOptions {
            retry: RetryPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(20),
            },
            ..HttpOptions::default()
        };
        let task = spawn(&spec, 2, tx, shutdown, options).unwrap();
        let update = rx.recv().await.unwrap();
        assert_eq!(update.source, 2);
        match update.event {
            SourceEvent::Failed(message) => assert!(message.contains("GET"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
        // The same problem is not reported again while retrying.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), rx.recv())
                .await
                .is_err()
        );
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }
}
