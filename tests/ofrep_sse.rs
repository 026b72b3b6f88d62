//! OFREP event streams end to end: a bulk answer advertises the stream, a change of a client's
//! flags (file reload, override, rollout step) sends it a `refetchEvaluation` event whose `etag`
//! is the `ETag` of the re-fetch; selectors filter streams; `Last-Event-ID` resumes;
//! keep-alives, shutdown, bad requests, a thousand streams, and a real `EventSource` in
//! headless Chromium (skipped without Chromium, unless `FLAGD_TESTBED_REQUIRED=1`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use flagd_rs::config::Config;
use flagd_rs_tests::browser::{Browser, programs};
use flagd_rs_tests::daemon::{TestDaemon, config_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Two flag sets: `web` (`color`, targeted on `tier`; `ramp`, a split) and `api` (`limit`).
const FLAGS: &str = r#"{"flags": {
  "color": {"state": "ENABLED", "variants": {"red": "red", "blue": "blue"}, "defaultVariant": "red",
            "targeting": {"if": [{"==": [{"var": "tier"}, "gold"]}, "blue", null]},
            "metadata": {"flagSetId": "web"}},
  "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
           "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 100], ["canary", 0]]},
           "metadata": {"flagSetId": "web"}},
  "limit": {"state": "ENABLED", "variants": {"low": 10, "high": 100}, "defaultVariant": "low",
            "metadata": {"flagSetId": "api"}}
}}"#;

/// How long a test waits for an event it expects.
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// How long a test listens to make sure an event does not come.
const QUIET_WAIT: Duration = Duration::from_millis(600);

struct Setup {
    daemon: TestDaemon,
    file: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut Config)) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flags.json");
        std::fs::write(&file, FLAGS).unwrap();
        let mut config = config_for(&[&file]);
        config.state_dir = dir.path().join("state");
        configure(&mut config);
        let daemon = TestDaemon::start_with(config).await;
        Setup {
            daemon,
            file,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    fn ofrep(&self) -> String {
        format!("http://127.0.0.1:{}", self.daemon.ofrep_port)
    }

    fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.daemon.admin_port)
    }

    /// A bulk request with `context`, the selector header `selector` (if any), `query` after
    /// the path and `If-None-Match` (if any).
    async fn bulk(
        &self,
        selector: Option<&str>,
        context: &Value,
        query: &str,
        if_none_match: Option<&str>,
    ) -> Bulk {
        let mut request = self
            .http
            .post(format!("{}/ofrep/v1/evaluate/flags{query}", self.ofrep()))
            .header("content-type", "application/json")
            .body(json!({ "context": context }).to_string())
            .timeout(Duration::from_secs(10));
        if let Some(selector) = selector {
            request = request.header("flagd-selector", selector);
        }
        if let Some(tag) = if_none_match {
            request = request.header("if-none-match", tag);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        Bulk { status, etag, body }
    }

    /// Rewrites the flag file (write and rename) with `edit` applied to [`FLAGS`].
    fn rewrite(&self, from: &str, to: &str) {
        let current = std::fs::read_to_string(&self.file).unwrap();
        assert!(current.contains(from), "{from} not in the flag file");
        write_atomically(&self.file, &current.replacen(from, to, 1));
    }

    /// Opens `path` (with the OFREP base in front when it starts with `/`).
    async fn stream(&self, path: &str, headers: &[(&str, &str)]) -> Sse {
        let url = if path.starts_with('/') {
            format!("{}{path}", self.ofrep())
        } else {
            path.to_owned()
        };
        Sse::open(&self.http, &url, headers).await
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Bulk {
    status: StatusCode,
    etag: String,
    body: Value,
}

impl Bulk {
    /// The stream the answer advertises: its URL (origin + requestUri) and the entry.
    fn stream_url(&self, ofrep: &str) -> String {
        let streams = self.body["eventStreams"].as_array().expect("eventStreams");
        assert_eq!(streams.len(), 1, "{}", self.body);
        let entry = &streams[0];
        assert_eq!(entry["type"], "sse");
        let endpoint = &entry["endpoint"];
        let origin = endpoint["origin"].as_str().unwrap_or(ofrep);
        format!("{origin}{}", endpoint["requestUri"].as_str().unwrap())
    }

    fn value(&self, key: &str) -> Value {
        self.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .map(|f| f["value"].clone())
            .unwrap_or(Value::Null)
    }
}

/// What an event stream delivered.
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Event {
        id: Option<String>,
        event: Option<String>,
        data: Value,
    },
    Comment(String),
    /// The server ended the stream.
    End,
}

/// A minimal `text/event-stream` reader.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(http: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Sse {
        let mut request = http.get(url).header("accept", "text/event-stream");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = tokio::time::timeout(EVENT_WAIT, request.send())
            .await
            .expect("the stream's headers")
            .unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        assert_eq!(response.headers()["cache-control"], "no-cache");
        Sse {
            response,
            buffer: String::new(),
        }
    }

    /// The next item, or `None` when nothing arrives within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(Ok(None) | Err(_)) => return Some(Item::End),
            }
        }
    }

    /// The next event (comments skipped); panics when none arrives in time.
    async fn event(&mut self) -> (String, Value) {
        let deadline = tokio::time::Instant::now() + EVENT_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Item::Event { id, event, data }) => {
                    assert_eq!(event.as_deref(), Some("message"));
                    assert_eq!(data["type"], "refetchEvaluation", "{data}");
                    return (id.expect("an event id"), data);
                }
                Some(Item::Comment(_)) => {}
                Some(Item::End) => panic!("the stream ended"),
                None => panic!("no event within {EVENT_WAIT:?}"),
            }
        }
    }

    /// Asserts that no event arrives for a little while (comments are fine).
    async fn quiet(&mut self) {
        let deadline = tokio::time::Instant::now() + QUIET_WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                None => return,
                Some(Item::Comment(_)) => {}
                Some(other) => panic!("expected no event, got {other:?}"),
            }
        }
    }
}

fn parse_block(block: &str) -> Item {
    let (mut id, mut event, mut data, mut comment) = (None, None, None, None);
    for line in block.lines() {
        if let Some(c) = line.strip_prefix(':') {
            comment = Some(c.trim().to_owned());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => id = Some(value),
                "event" => event = Some(value),
                "data" => data = Some(value),
                _ => {}
            }
        }
    }
    match (data, comment) {
        (Some(data), _) => Item::Event {
            id,
            event,
            data: serde_json::from_str(&data).unwrap(),
        },
        (None, Some(comment)) => Item::Comment(comment),
        (None, None) => panic!("an empty block: {block:?}"),
    }
}

#[tokio::test]
async fn a_file_change_announces_the_etag_the_refetch_gets() {
    let s = Setup::start().await;
    let ctx = json!({"targetingKey": "user-1", "tier": "gold"});
    let first = s.bulk(Some("flagSetId=web"), &ctx, "", None).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.value("color"), "blue");
    let entry = &first.body["eventStreams"][0];
    assert_eq!(entry["inactivityDelaySec"], 120);
    assert!(entry["endpoint"].get("origin").is_none(), "{entry}");
    let url = first.stream_url(&s.ofrep());
    assert!(
        url.contains("/ofrep/v1/sse/flagSetId=web?ctx="),
        "the requestUri carries the selector and a token: {url}"
    );
    // The advertisement is stable: the same request is still a 304.
    let again = s
        .bulk(Some("flagSetId=web"), &ctx, "", Some(&first.etag))
        .await;
    assert_eq!(again.status, 304);
    let mut stream = s.stream(&url, &[]).await;

    // A change in the other flag set: nothing.
    s.rewrite(r#""defaultVariant": "low""#, r#""defaultVariant": "high""#);
    stream.quiet().await;

    // A change of this client's answer.
    s.rewrite(r#""blue": "blue""#, r#""blue": "navy""#);
    let (id, data) = stream.event().await;
    let etag = data["etag"].as_str().unwrap().to_owned();
    assert_ne!(etag, first.etag);
    assert!(data["lastModified"].as_i64().unwrap() > 1_700_000_000);
    assert!(id.parse::<u64>().is_ok(), "{id}");

    // The re-fetch the event triggers: a full answer whose tag is the event's.
    let query = format!(
        "?flagConfigEtag={}&flagConfigLastModified={}",
        urlencode(&etag),
        data["lastModified"]
    );
    let refetch = s
        .bulk(Some("flagSetId=web"), &ctx, &query, Some(&first.etag))
        .await;
    assert_eq!(refetch.status, 200);
    assert_eq!(refetch.etag, etag);
    assert_eq!(refetch.value("color"), "navy");
    // With the announced tag already held: 304.
    let held = s
        .bulk(Some("flagSetId=web"), &ctx, &query, Some(&etag))
        .await;
    assert_eq!(held.status, 304);
    assert_eq!(held.etag, etag);
    // An event tag that differs from the answer forbids the 304.
    let vetoed = s
        .bulk(
            Some("flagSetId=web"),
            &ctx,
            &format!("?flagConfigEtag={}", urlencode(&first.etag)),
            Some(&etag),
        )
        .await;
    assert_eq!(vetoed.status, 200);

    // Another context of the same selection whose answer does not change hears nothing.
    let red = json!({"targetingKey": "user-2", "tier": "silver"});
    let other = s.bulk(Some("flagSetId=web"), &red, "", None).await;
    let mut red_stream = s.stream(&other.stream_url(&s.ofrep()), &[]).await;
    s.rewrite(r#""blue": "navy""#, r#""blue": "teal""#);
    stream.event().await;
    red_stream.quiet().await;
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn an_override_through_the_admin_api_sends_an_event() {
    let s = Setup::start().await;
    let ctx = json!({"targetingKey": "user-1"});
    let first = s.bulk(None, &ctx, "", None).await;
    let mut stream = s.stream(&first.stream_url(&s.ofrep()), &[]).await;
    let out = flagd_rs::cli_admin::run_args(["disable", "color", "--admin-url", &s.admin()])
        .await
        .unwrap();
    assert!(!out.is_empty());
    let (_, data) = stream.event().await;
    let refetch = s.bulk(None, &ctx, "", Some(&first.etag)).await;
    assert_eq!(refetch.status, 200);
    assert_eq!(data["etag"], refetch.etag.as_str());
    assert_eq!(refetch.value("color"), Value::Null, "{}", refetch.body);
}

#[tokio::test]
async fn rollout_steps_send_events() {
    let s = Setup::start().await;
    // A plain stream (no token): it hears every change of its selection.
    let mut stream = s.stream("/ofrep/v1/sse/flagSetId=web", &[]).await;
    let plan = "variant: canary\nbaseline: stable\nsteps:\n  - {weight: 20, hold: 300ms}\n  - {weight: 100}\n";
    let started = s
        .http
        .post(format!("{}/v1/rollouts/ramp/start", s.admin()))
        .json(&json!({"plan": plan, "actor": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201, "{}", started.text().await.unwrap());
    // The first step, then the last one.
    let (first_id, first) = stream.event().await;
    let (second_id, second) = stream.event().await;
    assert!(second_id.parse::<u64>().unwrap() > first_id.parse::<u64>().unwrap());
    assert_ne!(first["etag"], second["etag"]);
    // The ramp is done: every user gets the canary.
    let answer = s
        .bulk(
            Some("flagSetId=web"),
            &json!({"targetingKey": "u"}),
            "",
            None,
        )
        .await;
    assert_eq!(answer.value("ramp"), "canary");
}

#[tokio::test]
async fn last_event_id_resumes_where_the_client_left_off() {
    let s = Setup::start().await;
    let mut stream = s.stream("/ofrep/v1/sse", &[]).await;
    s.rewrite(r#""defaultVariant": "low""#, r#""defaultVariant": "high""#);
    let (id, _) = stream.event().await;
    drop(stream);

    // Nothing changed since that event: nothing is sent.
    let mut resumed = s.stream("/ofrep/v1/sse", &[("last-event-id", &id)]).await;
    resumed.quiet().await;
    drop(resumed);

    // A change while the client was away is sent at once.
    s.rewrite(r#""defaultVariant": "high""#, r#""defaultVariant": "low""#);
    // Wait until the change is served before reconnecting.
    for _ in 0..500 {
        if s.bulk(None, &json!({}), "", None).await.value("limit") == 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut resumed = s.stream("/ofrep/v1/sse", &[("last-event-id", &id)]).await;
    let (later, _) = resumed.event().await;
    assert!(later.parse::<u64>().unwrap() > id.parse::<u64>().unwrap());

    // An id from another process cannot be judged: the current event at once.
    let mut foreign = s.stream("/ofrep/v1/sse", &[("last-event-id", "12")]).await;
    let (current, _) = foreign.event().await;
    assert_eq!(current, later);
}

#[tokio::test]
async fn selectors_in_header_query_or_path_filter_streams() {
    let s = Setup::start().await;
    let mut header = s
        .stream("/ofrep/v1/sse", &[("flagd-selector", "flagSetId=api")])
        .await;
    let mut query = s
        .stream("/ofrep/v1/sse?selector=flagSetId%3Dapi", &[])
        .await;
    let mut channels = s.stream("/ofrep/v1/sse?channels=api", &[]).await;
    let mut path = s.stream("/ofrep/v1/sse/flagSetId=web", &[]).await;
    let mut escaped = s.stream("/ofrep/v1/sse/flagSetId%3Dweb", &[]).await;
    let source = format!("source={}", s.file.display());
    let mut by_source = s
        .stream(
            &format!("/ofrep/v1/sse/{}", source.replace('/', "%2F")),
            &[],
        )
        .await;

    s.rewrite(r#""defaultVariant": "red""#, r#""defaultVariant": "blue""#);
    path.event().await;
    escaped.event().await;
    by_source.event().await;
    header.quiet().await;
    query.quiet().await;
    channels.quiet().await;

    s.rewrite(r#""defaultVariant": "low""#, r#""defaultVariant": "high""#);
    header.event().await;
    query.event().await;
    channels.event().await;
    by_source.event().await;
    path.quiet().await;
    escaped.quiet().await;

    // A selector's bulk answer advertises the path form.
    let answer = s.bulk(Some("flagSetId=api"), &json!({}), "", None).await;
    assert!(
        answer
            .stream_url(&s.ofrep())
            .contains("/ofrep/v1/sse/flagSetId=api?ctx="),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_bad_selector_or_token_is_refused_with_400() {
    let s = Setup::start().await;
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("/ofrep/v1/sse", &[("flagd-selector", "team=a")]),
        ("/ofrep/v1/sse?selector=team%3Da", &[]),
        ("/ofrep/v1/sse/team=a", &[]),
        ("/ofrep/v1/sse?ctx=not-a-token", &[]),
    ];
    for (path, headers) in cases {
        let mut request = s.http.get(format!("{}{path}", s.ofrep()));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let body: Value = response.json().await.unwrap();
        let details = body["errorDetails"].as_str().unwrap();
        assert!(
            details.starts_with("invalid selector: invalid selector key \"team\"")
                || details.starts_with("invalid ctx"),
            "{path}: {details}"
        );
    }
}

/// The raw exchange of one request on its own connection, read until the server closes it.
async fn raw_exchange(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(EVENT_WAIT, socket.read_to_end(&mut raw))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(raw).unwrap()
}

#[tokio::test]
async fn stream_requests_are_served_whether_or_not_they_take_the_lean_path() {
    let s = Setup::start().await;
    let port = s.daemon.ofrep_port;
    // The lean path answers a refused stream, chunked, and closes the connection.
    let refused = raw_exchange(
        port,
        "GET /ofrep/v1/sse?selector=team%3Dx HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    assert!(
        refused.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{refused}"
    );
    assert!(refused.contains("connection: close\r\n"), "{refused}");
    assert!(
        refused.contains("transfer-encoding: chunked\r\n"),
        "{refused}"
    );
    assert!(refused.contains("invalid selector"), "{refused}");
    assert!(refused.ends_with("0\r\n\r\n"), "{refused}");
    // Other paths are not taken over: a GET of an evaluation path is hyper's 405.
    let other = raw_exchange(
        port,
        "GET /ofrep/v1/evaluate/flags HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 405"), "{other}");

    // A head too large for the lean path (or one announcing a body) goes to hyper, and the
    // stream works there just the same.
    let padding = "a".repeat(6000);
    let mut big = s.stream("/ofrep/v1/sse", &[("x-padding", &padding)]).await;
    let mut with_body = s.stream("/ofrep/v1/sse", &[("content-length", "0")]).await;
    s.rewrite(r#""defaultVariant": "low""#, r#""defaultVariant": "high""#);
    big.event().await;
    with_body.event().await;
}

#[tokio::test]
async fn idle_streams_get_keep_alive_comments_and_cors_headers() {
    let s = Setup::start_with(|c| {
        c.ofrep_sse.keep_alive = Duration::from_millis(200);
        c.cors_origins = vec!["https://*.example.com".into()];
    })
    .await;
    let mut stream = s
        .stream("/ofrep/v1/sse", &[("origin", "https://app.example.com")])
        .await;
    assert_eq!(
        stream.response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    for _ in 0..2 {
        match stream.next(EVENT_WAIT).await {
            Some(Item::Comment(c)) => assert_eq!(c, "keep-alive"),
            other => panic!("expected a keep-alive comment, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn streams_end_cleanly_when_the_daemon_stops() {
    let mut s = Setup::start().await;
    let mut streams = Vec::new();
    for path in ["/ofrep/v1/sse", "/ofrep/v1/sse/flagSetId=web"] {
        streams.push(s.stream(path, &[]).await);
    }
    s.daemon.trigger_shutdown();
    for stream in &mut streams {
        loop {
            match stream.next(EVENT_WAIT).await {
                Some(Item::End) => break,
                Some(Item::Comment(_)) => {}
                other => panic!("expected the end of the stream, got {other:?}"),
            }
        }
    }
    // The daemon does not wait for its grace period: every stream ended by itself.
    let Setup { daemon, .. } = s;
    let stopped = tokio::time::timeout(Duration::from_secs(8), daemon.join()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "{stopped:?}");
}

#[tokio::test]
async fn event_streams_follow_the_options() {
    let s = Setup::start_with(|c| {
        c.ofrep_sse.public_url = Some("https://flags.example.com".into());
        c.ofrep_sse.inactivity_delay_sec = 30;
    })
    .await;
    let answer = s.bulk(None, &json!({}), "", None).await;
    let entry = &answer.body["eventStreams"][0];
    assert_eq!(entry["endpoint"]["origin"], "https://flags.example.com");
    assert_eq!(entry["inactivityDelaySec"], 30);

    let off = Setup::start_with(|c| c.ofrep_sse.enabled = false).await;
    let answer = off.bulk(None, &json!({}), "", None).await;
    assert!(answer.body.get("eventStreams").is_none(), "{}", answer.body);
    let response = off
        .http
        .get(format!("{}/ofrep/v1/sse", off.ofrep()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // The command line: flags, environment-style values and a checked public URL.
    let config = Config::from_args([
        "start",
        "--ofrep-sse=false",
        "--ofrep-sse-inactivity-delay",
        "45",
        "--ofrep-sse-public-url",
        "https://flags.example.com/",
        "--ofrep-sse-keep-alive",
        "5s",
    ])
    .unwrap();
    assert!(!config.ofrep_sse.enabled);
    assert_eq!(config.ofrep_sse.inactivity_delay_sec, 45);
    assert_eq!(
        config.ofrep_sse.public_url.as_deref(),
        Some("https://flags.example.com")
    );
    assert_eq!(config.ofrep_sse.keep_alive, Duration::from_secs(5));
    assert!(Config::from_args(["start"]).unwrap().ofrep_sse.enabled);
    let err = Config::from_args(["start", "--ofrep-sse-public-url", "flags.example.com/x"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--ofrep-sse-public-url"), "{err}");
    assert!(Config::from_args(["start", "--ofrep-sse-inactivity-delay", "0"]).is_err());
}

#[tokio::test]
async fn a_thousand_streams_are_all_notified() {
    const STREAMS: usize = 1000;
    let s = Setup::start().await;
    // Half the clients have their own context (a token each), half follow a plain stream.
    let mut urls = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        if i % 2 == 0 {
            let ctx = json!({"targetingKey": format!("user-{i}")});
            urls.push(s.bulk(None, &ctx, "", None).await.stream_url(&s.ofrep()));
        } else {
            urls.push(format!("{}/ofrep/v1/sse", s.ofrep()));
        }
    }
    let (ready_tx, mut ready) = tokio::sync::mpsc::channel(STREAMS);
    let (seen_tx, mut seen) = tokio::sync::mpsc::channel(STREAMS);
    for url in urls {
        let (http, ready_tx, seen_tx) = (s.http.clone(), ready_tx.clone(), seen_tx.clone());
        tokio::spawn(async move {
            let mut stream = Sse::open(&http, &url, &[]).await;
            let _ = ready_tx.send(()).await;
            let (_, data) = stream.event().await;
            let _ = seen_tx.send(data).await;
        });
    }
    drop((ready_tx, seen_tx));
    for _ in 0..STREAMS {
        tokio::time::timeout(Duration::from_secs(60), ready.recv())
            .await
            .expect("every stream connects")
            .expect("a stream task failed while connecting");
    }
    s.rewrite(r#""defaultVariant": "red""#, r#""defaultVariant": "blue""#);
    let mut notified = 0;
    while notified < STREAMS {
        match tokio::time::timeout(Duration::from_secs(60), seen.recv()).await {
            Ok(Some(data)) => {
                assert_eq!(data["type"], "refetchEvaluation");
                notified += 1;
            }
            _ => panic!("only {notified} of {STREAMS} streams were notified"),
        }
    }
}

/// A real `EventSource` in headless Chromium, on a page of another origin (the management
/// port), as a web provider runs: the bulk answer's `eventStreams` resolved against the OFREP
/// base, a `message` event after a change, and the re-fetch it triggers.
#[tokio::test]
async fn a_browser_event_source_follows_changes() {
    let Some((driver, chromium)) = programs("ofrep_sse::a_browser_event_source_follows_changes")
    else {
        return;
    };
    let s = Setup::start().await;
    let browser = Browser::start(&driver, &chromium, 800, 600).await;
    let client = browser.client.clone();
    client
        .goto(&format!(
            "http://127.0.0.1:{}/healthz",
            s.daemon.management_port
        ))
        .await
        .unwrap();
    let base = s.ofrep();
    let opened = client
        .execute_async(
            r#"
const [base, done] = arguments;
(async () => {
  const r = await fetch(base + "/ofrep/v1/evaluate/flags", {method: "POST",
    headers: {"Content-Type": "application/json; charset=utf-8", "Flagd-Selector": "flagSetId=web"},
    body: JSON.stringify({context: {targetingKey: "browser-user", tier: "gold"}})});
  const body = await r.json();
  const stream = body.eventStreams.find((s) => s.type === "sse");
  const url = new URL(stream.endpoint.requestUri, stream.endpoint.origin ?? new URL(base).origin);
  window.ofrep = {etag: r.headers.get("ETag"), events: [], url: url.href};
  const source = new EventSource(url);
  source.addEventListener("message", (e) => window.ofrep.events.push(JSON.parse(e.data)));
  source.onopen = () => done(window.ofrep);
  source.onerror = () => done({error: "the stream failed", url: url.href});
})().catch((e) => done({error: String(e)}));
"#,
            vec![json!(base)],
        )
        .await
        .unwrap();
    assert!(opened.get("error").is_none(), "{opened}");
    let old_etag = opened["etag"].as_str().expect("a readable ETag").to_owned();

    s.rewrite(r#""blue": "blue""#, r#""blue": "navy""#);
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    let event = loop {
        let events = client
            .execute("return window.ofrep.events;", vec![])
            .await
            .unwrap();
        if let Some(first) = events.as_array().and_then(|e| e.first()) {
            break first.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page's EventSource saw no event"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["type"], "refetchEvaluation");
    let refetch = client
        .execute_async(
            r#"
const [base, event, old, done] = arguments;
const query = "?flagConfigEtag=" + encodeURIComponent(event.etag) +
  "&flagConfigLastModified=" + event.lastModified;
fetch(base + "/ofrep/v1/evaluate/flags" + query, {method: "POST",
  headers: {"Content-Type": "application/json", "Flagd-Selector": "flagSetId=web", "If-None-Match": old},
  body: JSON.stringify({context: {targetingKey: "browser-user", tier: "gold"}})})
  .then(async (r) => done({status: r.status, etag: r.headers.get("ETag"), body: await r.json()}))
  .catch((e) => done({error: String(e)}));
"#,
            vec![json!(base), event.clone(), json!(old_etag)],
        )
        .await
        .unwrap();
    assert_eq!(refetch["status"], 200, "{refetch}");
    assert_eq!(refetch["etag"], event["etag"]);
    let color = refetch["body"]["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "color")
        .unwrap()["value"]
        .clone();
    assert_eq!(color, "navy");
    browser.close().await;
}
