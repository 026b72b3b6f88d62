//! The OFREP server over real HTTP: single and bulk evaluation, every status code, ETag and
//! `If-None-Match`, `flagConfigEtag`, selectors, context merging, strict bodies, numbers in the
//! form of the flag file, gzip, metrics, CORS and the body limit.

use std::sync::Arc;
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use flagd_rs::metrics::Metrics;
use flagd_rs::server::http::{Listener, serve};
use flagd_rs::server::ofrep;
use flagd_rs::state::{AppState, ContextConfig, Limits};
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

const MAIN: &str = r#"{
  "metadata": {"version": "7", "team": "core"},
  "flags": {
    "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
             "metadata": {"team": "a<b>", "nothing": null}},
    "off": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "nodefault": {"state": "ENABLED", "variants": {"a": 1.0, "b": 2.5}},
    "object": {"state": "ENABLED", "variants": {"o": {"z": 1, "a": "x&y"}}, "defaultVariant": "o"},
    "zero": {"state": "ENABLED", "variants": {"z": 0}, "defaultVariant": "z"},
    "by-team": {"state": "ENABLED", "variants": {"yes": "yes", "no": "no"}, "defaultVariant": "no",
                "targeting": {"if": [{"==": [{"var": "team"}, "blue"]}, "yes", "no"]}},
    "by-env": {"state": "ENABLED", "variants": {"prod": "prod", "other": "other"}, "defaultVariant": "other",
               "targeting": {"if": [{"==": [{"var": "env"}, "prod"]}, "prod", "other"]}},
    "broken": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a",
               "targeting": {"$ref": "nowhere"}},
    "unknown-variant": {"state": "ENABLED", "variants": {"a": "a"}, "defaultVariant": "a",
                        "targeting": {"cat": ["mis", "sing"]}}
  }
}"#;

const SET: &str = r#"{
  "metadata": {"flagSetId": "payments"},
  "flags": {
    "bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}
  }
}"#;

struct Server {
    base: String,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    client: reqwest::Client,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut AppState)) -> Server {
        // The flag-set document has the lower priority, so `bool` without a selector is MAIN's.
        Server::with_documents(&[("set.json", SET), ("main.json", MAIN)], configure).await
    }

    /// A server over `docs` (name and text), in ascending priority.
    async fn with_documents(
        docs: &[(&str, &str)],
        configure: impl FnOnce(&mut AppState),
    ) -> Server {
        let store = Store::new(
            docs.iter().map(|(name, _)| (*name).to_owned()).collect(),
            LoadOptions::default(),
        );
        for (i, (_, doc)) in docs.iter().enumerate() {
            let event = SourceEvent::Content {
                bytes: doc.as_bytes().to_vec(),
                format: Format::Json,
            };
            store.apply(SourceUpdate { source: i, event }).unwrap();
        }
        let (tx, rx) = watch::channel(false);
        let mut static_values = Map::new();
        static_values.insert("env".into(), json!("prod"));
        let mut state = AppState {
            store: store.clone(),
            context: Arc::new(ContextConfig {
                static_values,
                from_headers: vec![(http::HeaderName::from_static("x-team"), "team".into())],
            }),
            metrics: Arc::new(Metrics::new()),
            shutdown: rx.clone(),
            limits: Limits::default(),
            cors_origins: Arc::from(Vec::<String>::new()),
            telemetry: Default::default(),
            revision: None,
        };
        configure(&mut state);
        let metrics = state.metrics.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(serve(
            Listener::Tcp(listener),
            ofrep::router(state),
            None,
            0,
            rx,
        ));
        Server {
            base,
            store,
            metrics,
            shutdown: tx,
            client: reqwest::Client::new(),
        }
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
    }

    async fn flag(&self, key: &str, body: &str) -> (StatusCode, String) {
        let resp = self
            .post(&format!("/ofrep/v1/evaluate/flags/{key}"))
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            ct.as_deref(),
            Some("application/json"),
            "content type of {key}"
        );
        (status, resp.text().await.unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[tokio::test]
async fn single_flag_bodies_match_flagd() {
    let s = Server::start(|_| {}).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "bool",
            "",
            200,
            r#"{"value":true,"key":"bool","reason":"STATIC","variant":"on","metadata":{"team":"a\u003cb\u003e","version":"7"}}"#,
        ),
        (
            "off",
            "{}",
            200,
            r#"{"key":"off","reason":"DISABLED","variant":"","metadata":{"team":"core","version":"7"}}"#,
        ),
        (
            "nodefault",
            r#"{"context":{}}"#,
            200,
            r#"{"key":"nodefault","reason":"DEFAULT","variant":"","metadata":{"team":"core","version":"7"}}"#,
        ),
        (
            "object",
            "null",
            200,
            r#"{"value":{"a":"x\u0026y","z":1},"key":"object","reason":"STATIC","variant":"o","metadata":{"team":"core","version":"7"}}"#,
        ),
        (
            "zero",
            r#"{"context":null}"#,
            200,
            r#"{"value":0,"key":"zero","reason":"STATIC","variant":"z","metadata":{"team":"core","version":"7"}}"#,
        ),
        (
            "missing",
            "{}",
            404,
            r#"{"key":"missing","errorCode":"FLAG_NOT_FOUND","errorDetails":"flag `missing` does not exist","metadata":{}}"#,
        ),
        (
            "bool",
            "{not json",
            400,
            r#"{"key":"bool","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid: key must be a string at line 1 column 2","metadata":null}"#,
        ),
        (
            "bool",
            "[1]",
            400,
            r#"{"key":"bool","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid: invalid type: sequence, expected a JSON object like {\"context\": {...}} at line 1 column 1","metadata":null}"#,
        ),
    ];
    for (key, body, status, want) in cases {
        let (got_status, got) = s.flag(key, body).await;
        assert_eq!(got_status.as_u16(), *status, "{key} with {body:?}: {got}");
        assert_eq!(got, *want, "{key} with {body:?}");
    }
}

#[tokio::test]
async fn targeting_outcomes_and_context_layers() {
    let s = Server::start(|_| {}).await;
    // Static `-X env=prod` beats the request's `env`.
    let (status, body) = s.flag("by-env", r#"{"context":{"env":"dev"}}"#).await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        r#"{"value":"prod","key":"by-env","reason":"TARGETING_MATCH","variant":"prod","metadata":{"team":"core","version":"7"}}"#
    );
    // The mapped header beats the request's `team`.
    let resp = s
        .post("/ofrep/v1/evaluate/flags/by-team")
        .header("X-Team", "blue")
        .body(r#"{"context":{"team":"red"}}"#)
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["value"], "yes");
    let (_, body) = s.flag("by-team", r#"{"context":{"team":"red"}}"#).await;
    assert!(
        body.starts_with(r#"{"value":"no","key":"by-team","reason":"TARGETING_MATCH""#),
        "{body}"
    );

    let (status, body) = s.flag("broken", "{}").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"key":"broken","errorCode":"PARSE_ERROR","errorDetails":"error parsing the flag `broken`","metadata":{"team":"core","version":"7"}}"#
    );
    let (status, body) = s.flag("unknown-variant", "{}").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        r#"{"key":"unknown-variant","errorCode":"GENERAL","errorDetails":"error processing the flag for evaluation","metadata":{"team":"core","version":"7"}}"#
    );
}

#[tokio::test]
async fn selectors_choose_and_echo() {
    let s = Server::start(|_| {}).await;
    let eval = |selector: &'static str, key: &'static str| {
        s.post(&format!("/ofrep/v1/evaluate/flags/{key}"))
            .header("Flagd-Selector", selector)
            .body("{}")
            .send()
    };
    // Without a selector the later source wins, whatever its flag set.
    let (_, body) = s.flag("bool", "{}").await;
    assert!(body.contains(r#""variant":"on""#), "{body}");
    let v: Value = eval("flagSetId=payments", "bool")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"value": false, "key": "bool", "reason": "STATIC", "variant": "off", "metadata": {"flagSetId": "payments"}})
    );
    let v: Value = eval("source=main.json", "bool")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["value"], true);
    assert_eq!(v["metadata"]["source"], "main.json");
    let resp = eval("flagSetId=payments", "zero").await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"key":"zero","errorCode":"FLAG_NOT_FOUND","errorDetails":"flag `zero` does not exist","metadata":{"flagSetId":"payments"}}"#
    );
    let resp = eval("team=x", "bool").await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"key":"bool","errorCode":"GENERAL","errorDetails":"invalid selector: invalid selector key \"team\", valid keys: \"flagSetId\", \"source\"","metadata":null}"#
    );
}

#[tokio::test]
async fn bulk_lists_every_selected_flag() {
    let s = Server::start(|_| {}).await;
    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .header("Flagd-Selector", "flagSetId=payments")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"flags":[{"value":false,"key":"bool","reason":"STATIC","variant":"off","metadata":{"flagSetId":"payments"}}],"metadata":{"flagSetId":"payments"}}"#
    );

    let resp = s
        .post("/ofrep/v1/evaluate/flags/")
        .body(r#"{"context":{"team":"blue"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["metadata"], json!({}));
    let flags = v["flags"].as_array().unwrap();
    let keys: Vec<&str> = flags.iter().map(|f| f["key"].as_str().unwrap()).collect();
    // Store order: flags without a set first (by key), then the `payments` set.
    assert_eq!(
        keys,
        [
            "bool",
            "broken",
            "by-env",
            "by-team",
            "nodefault",
            "object",
            "off",
            "unknown-variant",
            "zero",
            "bool"
        ]
    );
    let by_key = |k: &str| flags.iter().find(|f| f["key"] == k).unwrap();
    assert_eq!(
        by_key("off"),
        &json!({"key": "off", "reason": "DISABLED", "variant": "", "metadata": {"team": "core", "version": "7"}})
    );
    assert_eq!(by_key("nodefault")["reason"], "DEFAULT");
    assert!(by_key("nodefault").get("value").is_none());
    assert_eq!(by_key("by-team")["value"], "yes");
    assert_eq!(
        by_key("broken"),
        &json!({"key": "broken", "errorCode": "PARSE_ERROR", "errorDetails": "error parsing the flag `broken`", "metadata": {"team": "core", "version": "7"}})
    );
    assert_eq!(by_key("unknown-variant")["errorCode"], "GENERAL");

    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid: key must be a string at line 1 column 2","metadata":null}"#
    );
    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .header("Flagd-Selector", "nope=1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .starts_with(r#"{"errorCode":"GENERAL","errorDetails":"invalid selector: "#)
    );
}

#[tokio::test]
async fn bulk_etag_and_conditional_requests() {
    let s = Server::start(|_| {}).await;
    let bulk = |inm: Option<&str>, query: &str| {
        let mut req = s
            .post(&format!("/ofrep/v1/evaluate/flags{query}"))
            .body("{}");
        if let Some(v) = inm {
            req = req.header("If-None-Match", v);
        }
        req.send()
    };
    let first = bulk(None, "").await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.len() == 66 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    assert!(
        etag[1..65]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    let body = first.text().await.unwrap();
    // The same request gives the same bytes and tag.
    let again = bulk(None, "").await.unwrap();
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert_eq!(again.text().await.unwrap(), body);

    let opaque = etag.trim_matches('"');
    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
        opaque.to_owned(),
    ] {
        let resp = bulk(Some(&inm), "").await.unwrap();
        assert_eq!(resp.status(), 304, "If-None-Match: {inm}");
        assert_eq!(resp.headers()["etag"], etag.as_str());
        assert!(resp.headers().get("content-type").is_none());
        assert_eq!(resp.text().await.unwrap(), "");
    }
    let resp = bulk(Some("\"other\", W/\"x\""), "").await.unwrap();
    assert_eq!(resp.status(), 200);

    // flagConfigEtag: a different configuration version vetoes the 304; the current one does not.
    let resp = bulk(Some(&etag), "?flagConfigEtag=stale").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["etag"], etag.as_str());
    let version = ofrep::config_version(&s.store.snapshot(), &flagd_rs::selector::Selector::All);
    let resp = bulk(
        Some(&etag),
        &format!("?flagConfigEtag={version}&flagConfigLastModified=1"),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 304);

    // A different context changes the body, so the old tag no longer matches.
    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .header("If-None-Match", &etag)
        .body(r#"{"context":{"team":"blue"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["etag"], etag.as_str());

    // So does a store change.
    let event = SourceEvent::Content {
        bytes: SET
            .replace(r#""defaultVariant": "off""#, r#""defaultVariant": "on""#)
            .into_bytes(),
        format: Format::Json,
    };
    s.store.apply(SourceUpdate { source: 0, event }).unwrap();
    let resp = bulk(Some(&etag), "").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["etag"], etag.as_str());
}

#[tokio::test]
async fn methods_paths_and_body_limit() {
    let s = Server::start(|st| st.limits.max_body_bytes = 64).await;
    let client = &s.client;
    for path in [
        "/ofrep/v1/evaluate/flags/bool",
        "/ofrep/v1/evaluate/flags",
        "/ofrep/v1/evaluate/flags/",
    ] {
        let resp = client
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "GET {path}");
    }
    let resp = client
        .post(format!("{}/ofrep/v1/configuration", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    let big = format!(r#"{{"context":{{"pad":"{}"}}}}"#, "x".repeat(200));
    let resp = s
        .post("/ofrep/v1/evaluate/flags/bool")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.text().await.unwrap(),
        r#"{"errorDetails":"request body too large"}"#
    );
    // Without a Content-Length the limit still applies while reading.
    let chunks = vec![Ok::<_, std::io::Error>(big.clone().into_bytes())];
    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    // Within the limit all is well.
    let resp = s
        .post("/ofrep/v1/evaluate/flags/bool")
        .body(r#"{"context":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn single_flag_paths_plain_and_escaped() {
    let s = Server::start(|_| ()).await;
    // A plain key and the same key with escapes are answered alike; a key that decodes to
    // something else is that flag.
    let plain = s.flag("by-team", "{}").await;
    assert_eq!(plain.0, 200);
    assert_eq!(s.flag("by%2Dteam", "{}").await, plain);
    assert_eq!(s.flag("%62%79-team", "{}").await, plain);
    let (status, body) = s.flag("by%20team", "{}").await;
    assert_eq!(status, 404);
    assert!(body.contains(r#""key":"by team""#), "{body}");
    // Keys that are not one path segment, or not UTF-8 once decoded, are no flag route.
    for (path, want) in [
        ("/ofrep/v1/evaluate/flags/by-team/", 404),
        ("/ofrep/v1/evaluate/flags/by/team", 404),
        ("/ofrep/v1/evaluate/flags/%FF", 400),
    ] {
        let resp = s.post(path).body("{}").send().await.unwrap();
        assert_eq!(resp.status(), want, "POST {path}");
        assert_eq!(resp.headers()["vary"], "accept-encoding", "POST {path}");
    }
    let resp = s
        .client
        .head(format!("{}/ofrep/v1/evaluate/flags/by-team", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    // Both ways of reaching the handler count under the single-flag route.
    let text = s.metrics.encode();
    let count = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains(r#"http_route="/ofrep/v1/evaluate/flags/{key}""#)
                && l.contains(r#"http_request_method="POST""#)
                && l.contains(r#"http_response_status_code="200""#)
        })
        .and_then(|l| l.rsplit(' ').next());
    assert_eq!(count, Some("3"), "{text}");
}

#[tokio::test]
async fn cors_preflight_and_exposed_etag() {
    let s =
        Server::start(|st| st.cors_origins = Arc::from(vec!["https://*.example.com".to_owned()]))
            .await;
    let preflight = |origin: &'static str| {
        s.client
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/ofrep/v1/evaluate/flags", s.base),
            )
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "content-type,if-none-match,flagd-selector",
            )
            .send()
    };
    let resp = preflight("https://app.example.com").await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        allowed.contains("if-none-match") && allowed.contains("flagd-selector"),
        "{allowed}"
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let resp = preflight("https://evil.test").await.unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let resp = s
        .post("/ofrep/v1/evaluate/flags")
        .header("Origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let expose = resp.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(expose.contains("etag"), "{expose}");

    // With no configured origins every origin is allowed.
    let open = Server::start(|_| {}).await;
    let resp = open
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/ofrep/v1/evaluate/flags/bool", open.base),
        )
        .header("Origin", "https://anywhere.test")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

/// The OpenFeature flagd provider in REST mode speaks OFREP to this server.
#[cfg(feature = "providers")]
#[tokio::test]
async fn openfeature_rest_provider() {
    use open_feature::EvaluationContext;
    use open_feature::provider::FeatureProvider;
    use open_feature_flagd::{FlagdOptions, FlagdProvider, ResolverType};

    let s = Server::start(|_| {}).await;
    let port = s.base.rsplit(':').next().unwrap().parse().unwrap();
    let options = FlagdOptions {
        host: "127.0.0.1".into(),
        port,
        resolver_type: ResolverType::Rest,
        ..Default::default()
    };
    let provider = FlagdProvider::new(options).await.unwrap();
    let ctx = EvaluationContext::default().with_targeting_key("user-1");
    let r = provider.resolve_bool_value("bool", &ctx).await.unwrap();
    assert!(r.value);
    assert_eq!(r.variant.as_deref(), Some("on"));
    let r = provider.resolve_int_value("zero", &ctx).await.unwrap();
    assert_eq!(r.value, 0);
    let ctx = ctx.with_custom_field("team", "blue");
    let r = provider
        .resolve_string_value("by-team", &ctx)
        .await
        .unwrap();
    assert_eq!(r.value, "yes");
    assert!(provider.resolve_bool_value("missing", &ctx).await.is_err());
}

/// Variants whose numbers a typed client must read back as the kind the file gave them.
const NUMBERS: &str = r#"{
  "flags": {
    "float-zero": {"state": "ENABLED", "variants": {"zero": 0.0, "one": 1.0}, "defaultVariant": "zero"},
    "float-negative-zero": {"state": "ENABLED", "variants": {"nz": -0.0}, "defaultVariant": "nz"},
    "float-half": {"state": "ENABLED", "variants": {"half": 1.5}, "defaultVariant": "half"},
    "float-whole": {"state": "ENABLED", "variants": {"two": 2.0}, "defaultVariant": "two"},
    "float-huge": {"state": "ENABLED", "variants": {"huge": 1e300}, "defaultVariant": "huge"},
    "int-zero": {"state": "ENABLED", "variants": {"zero": 0}, "defaultVariant": "zero"},
    "int-large": {"state": "ENABLED", "variants": {"big": 12345678901234567890}, "defaultVariant": "big"},
    "int-past-double": {"state": "ENABLED", "variants": {"big": 9007199254740993}, "defaultVariant": "big"},
    "object": {"state": "ENABLED", "variants": {"o": {"whole": 2.0, "int": 2, "zero": 0.0, "nested": {"n": [1.0, 1]}}},
               "defaultVariant": "o", "metadata": {"ratio": 1.0}}
  }
}"#;

/// The value of a single-flag answer, as raw JSON text.
fn raw_value(body: &str) -> &str {
    let start = body.find("\"value\":").expect("a value") + "\"value\":".len();
    let end = body.find(",\"key\":").expect("a key after the value");
    &body[start..end]
}

#[tokio::test]
async fn numbers_keep_the_form_of_the_flag_file() {
    let s = Server::with_documents(&[("numbers.json", NUMBERS)], |_| {}).await;
    // What Go's encoder (and so flagd) writes is in the comments.
    let cases = [
        ("float-zero", "0.0"),           // 0
        ("float-negative-zero", "-0.0"), // -0
        ("float-half", "1.5"),
        ("float-whole", "2.0"), // 2
        ("float-huge", "1e+300"),
        ("int-zero", "0"),
        ("int-large", "12345678901234567890"), // 12345678901234567000
        ("int-past-double", "9007199254740993"), // 9007199254740992
        (
            "object",
            r#"{"int":2,"nested":{"n":[1.0,1]},"whole":2.0,"zero":0.0}"#,
        ),
    ];
    for (key, want) in cases {
        let (status, body) = s.flag(key, "{}").await;
        assert_eq!(status, 200, "{key}: {body}");
        assert_eq!(raw_value(&body), want, "{key}: {body}");
    }
    let (_, body) = s.flag("object", "{}").await;
    assert!(body.ends_with(r#""metadata":{"ratio":1.0}}"#), "{body}");

    // The bulk answer writes the same text, and the JSON reads back as the same kinds.
    let resp = s.post("/ofrep/v1/evaluate/flags").send().await.unwrap();
    let body = resp.text().await.unwrap();
    for (key, want) in cases {
        assert!(
            body.contains(&format!(r#"{{"value":{want},"key":"{key}""#)),
            "{key} in {body}"
        );
    }
    let v: Value = serde_json::from_str(&body).unwrap();
    let value = |key: &str| {
        v["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
            .unwrap()["value"]
            .clone()
    };
    assert!(value("float-zero").is_f64());
    assert!(value("float-whole").is_f64());
    assert!(value("int-zero").is_u64());
    assert_eq!(value("int-large").as_u64(), Some(12345678901234567890));
    assert!(value("object")["whole"].is_f64() && value("object")["int"].is_u64());
}

#[tokio::test]
async fn bodies_are_decoded_strictly() {
    let s = Server::start(|_| {}).await;
    let refused = [
        (
            r#"{"context":{}} trailing"#,
            "trailing characters at line 1 column 16",
        ),
        (
            r#"{"context":{}}{"context":{}}"#,
            "trailing characters at line 1 column 15",
        ),
        (
            r#"{"context":"not-an-object"}"#,
            "the context must be a JSON object, not a string at line 1 column 27",
        ),
        (
            r#"{"context":[1]}"#,
            "the context must be a JSON object, not an array",
        ),
        (
            r#"{"context":7}"#,
            "the context must be a JSON object, not a number",
        ),
        (
            r#"{"context":true}"#,
            "the context must be a JSON object, not a boolean",
        ),
        (r#""text""#, "invalid type: string"),
        (r#"{"context":{"a":1}"#, "EOF while parsing an object"),
    ];
    for (body, reason) in refused {
        let (status, text) = s.flag("bool", body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["key"], "bool");
        assert_eq!(v["errorCode"], "INVALID_CONTEXT", "{body}");
        let details = v["errorDetails"].as_str().unwrap();
        assert!(
            details.starts_with("Provider context is not valid: ") && details.contains(reason),
            "{body}: {details}"
        );
        // The bulk endpoint refuses the same bodies, without a key.
        let resp = s
            .post("/ofrep/v1/evaluate/flags")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "bulk {body}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "INVALID_CONTEXT");
        assert!(v.get("key").is_none(), "{v}");
    }

    // Accepted: empty, null, duplicate members (the last wins), any case of `context`, other
    // members ignored.
    let accepted = [
        ("", "no"),
        ("   ", "no"),
        ("null", "no"),
        (r#"{"context":null}"#, "no"),
        (r#"{"context":{"team":"blue"}}"#, "yes"),
        (r#"{"Context":{"team":"blue"}}"#, "yes"),
        (
            r#"{"context":{"team":"red"},"context":{"team":"blue"}}"#,
            "yes",
        ),
        (
            r#"{"context":{"team":"blue"},"CONTEXT":{"team":"red"}}"#,
            "no",
        ),
        (r#"{"context":{"team":"red","team":"blue"}}"#, "yes"),
        (
            r#"{"targetingKey":"x","context":{"team":"blue"},"extra":[1,{}]}"#,
            "yes",
        ),
        ("{\"context\":{\"team\":\"blue\"}}\r\n", "yes"),
    ];
    for (body, want) in accepted {
        let (status, text) = s.flag("by-team", body).await;
        assert_eq!(status, 200, "{body:?}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["value"], want, "{body:?}");
    }
}

#[tokio::test]
async fn selector_header_must_be_text() {
    let s = Server::start(|_| {}).await;
    for path in ["/ofrep/v1/evaluate/flags/bool", "/ofrep/v1/evaluate/flags"] {
        let resp = s
            .post(path)
            .header(
                "Flagd-Selector",
                http::HeaderValue::from_bytes(b"flagSetId=\xff").unwrap(),
            )
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["errorCode"], "GENERAL");
        assert_eq!(
            v["errorDetails"],
            "invalid selector: the Flagd-Selector header is not valid text"
        );
        assert_eq!(v["metadata"], Value::Null);
    }
}

#[tokio::test]
async fn config_etag_and_conditional_bulk_requests() {
    let s = Server::start(|_| {}).await;
    let bulk = |selector: Option<&str>, inm: Option<&str>, query: &str| {
        let mut req = s.post(&format!("/ofrep/v1/evaluate/flags{query}"));
        if let Some(v) = selector {
            req = req.header("Flagd-Selector", v);
        }
        if let Some(v) = inm {
            req = req.header("If-None-Match", v);
        }
        req.send()
    };
    let payments = flagd_rs::selector::Selector::FlagSet("payments".into());
    let version = ofrep::config_version(&s.store.snapshot(), &payments);
    assert_eq!(version.len(), 32);
    let first = bulk(Some("flagSetId=payments"), None, "").await.unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    // The configuration version is not the answer's tag.
    assert_ne!(etag.trim_matches('"'), version);

    let sel = Some("flagSetId=payments");
    let cases: [(Option<&str>, String, u16); 9] = [
        // A matching trigger etag alone is not a validator.
        (None, format!("?flagConfigEtag={version}"), 200),
        // A differing one alone: a 200 as well.
        (None, "?flagConfigEtag=old".into(), 200),
        // With a matching If-None-Match, a matching trigger etag leaves the 304 alone, in any
        // of the forms an entity tag is written.
        (Some(&etag), format!("?flagConfigEtag={version}"), 304),
        (Some(&etag), format!("?flagConfigEtag=%22{version}%22"), 304),
        (
            Some(&etag),
            format!("?flagConfigEtag=W/%22{version}%22&flagConfigLastModified=1771622898"),
            304,
        ),
        (
            Some(&etag),
            "?flagConfigLastModified=2026-02-20T21:28:18Z".into(),
            304,
        ),
        (
            Some(&etag),
            "?flagConfigLastModified=not-a-date".into(),
            304,
        ),
        // A differing one vetoes the 304.
        (Some(&etag), "?flagConfigEtag=old".into(), 200),
        // A matching one does not rescue a stale validator.
        (Some("\"stale\""), format!("?flagConfigEtag={version}"), 200),
    ];
    for (inm, query, status) in &cases {
        let resp = bulk(sel, *inm, query).await.unwrap();
        assert_eq!(resp.status().as_u16(), *status, "{inm:?} {query}");
        assert_eq!(resp.headers()["etag"], etag.as_str(), "{inm:?} {query}");
        if *status == 304 {
            assert!(resp.headers().get("content-type").is_none());
            assert!(
                resp.headers()
                    .get("content-length")
                    .is_none_or(|v| v == "0"),
                "{:?}",
                resp.headers()
            );
            assert_eq!(resp.text().await.unwrap(), "");
        }
    }

    // A change elsewhere leaves the selection's version (and its answer) alone; a change of
    // the selection changes both.
    let main = SourceEvent::Content {
        bytes: MAIN.replace(r#""z": 0"#, r#""z": 1"#).into_bytes(),
        format: Format::Json,
    };
    s.store
        .apply(SourceUpdate {
            source: 1,
            event: main,
        })
        .unwrap();
    assert_eq!(
        ofrep::config_version(&s.store.snapshot(), &payments),
        version
    );
    let resp = bulk(sel, Some(&etag), &format!("?flagConfigEtag={version}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
    let set = SourceEvent::Content {
        bytes: SET
            .replace(r#""defaultVariant": "off""#, r#""defaultVariant": "on""#)
            .into_bytes(),
        format: Format::Json,
    };
    s.store
        .apply(SourceUpdate {
            source: 0,
            event: set,
        })
        .unwrap();
    let new_version = ofrep::config_version(&s.store.snapshot(), &payments);
    assert_ne!(new_version, version);
    let resp = bulk(sel, Some(&etag), &format!("?flagConfigEtag={new_version}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_ne!(resp.headers()["etag"], etag.as_str());
}

/// A document whose bulk answer is well over the compression threshold.
fn many_flags(n: usize) -> String {
    let flags: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#""my-service-feature-flag-{i}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "on"}}"#
            )
        })
        .collect();
    format!(r#"{{"flags": {{{}}}}}"#, flags.join(","))
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read as _;
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

#[tokio::test]
async fn gzip_for_clients_that_accept_it() {
    let doc = many_flags(40);
    let s = Server::with_documents(&[("many.json", &doc)], |_| {}).await;
    let bulk = |accept: Option<&str>, inm: Option<&str>| {
        let mut req = s.post("/ofrep/v1/evaluate/flags");
        if let Some(v) = accept {
            req = req.header("Accept-Encoding", v);
        }
        if let Some(v) = inm {
            req = req.header("If-None-Match", v);
        }
        req.send()
    };
    let plain = bulk(None, None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.headers()["vary"], "accept-encoding");
    let plain_tag = plain.headers()["etag"].to_str().unwrap().to_owned();
    let plain_body = plain.text().await.unwrap();
    assert!(plain_body.len() > 1024);

    let zipped = bulk(Some("gzip, deflate, br"), None).await.unwrap();
    assert_eq!(zipped.status(), 200);
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    assert_eq!(zipped.headers()["content-type"], "application/json");
    assert_eq!(zipped.headers()["vary"], "accept-encoding");
    let gzip_tag = zipped.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        gzip_tag,
        format!("{}-gzip\"", &plain_tag[..plain_tag.len() - 1])
    );
    let bytes = zipped.bytes().await.unwrap();
    assert!(bytes.len() < plain_body.len() / 4);
    assert_eq!(gunzip(&bytes), plain_body);

    // The tag of the gzipped representation matches only while the client accepts gzip.
    for (accept, inm, status) in [
        (Some("gzip"), &gzip_tag, 304),
        (None, &plain_tag, 304),
        (Some("gzip"), &plain_tag, 304),
        (None, &gzip_tag, 200),
        (Some("identity"), &gzip_tag, 200),
        (Some("gzip;q=0"), &gzip_tag, 200),
    ] {
        let resp = bulk(accept, Some(inm)).await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{accept:?} {inm}");
        if status == 304 {
            // The 304 names the representation a 200 would be now.
            let want = if accept == Some("gzip") {
                &gzip_tag
            } else {
                &plain_tag
            };
            assert_eq!(resp.headers()["etag"], want.as_str(), "{accept:?} {inm}");
            assert!(resp.headers().get("content-encoding").is_none());
        }
    }

    // A single-flag answer is below the threshold and stays plain.
    let resp = s
        .post("/ofrep/v1/evaluate/flags/my-service-feature-flag-1")
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("content-encoding").is_none());
    assert_eq!(resp.headers()["vary"], "accept-encoding");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["value"], true);
}

#[tokio::test]
async fn metrics_under_flagd_names() {
    let s = Server::start(|_| {}).await;
    let (status, _) = s.flag("bool", "{}").await;
    assert_eq!(status, 200);
    let (status, _) = s.flag("missing", "{}").await;
    assert_eq!(status, 404);
    let resp = s.post("/ofrep/v1/evaluate/flags/").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = s.metrics.encode();
    let find = |prefix: &str, needles: &[&str]| {
        text.lines()
            .find(|l| l.starts_with(prefix) && needles.iter().all(|n| l.contains(n)))
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let single = r#"http_route="/ofrep/v1/evaluate/flags/{key}""#;
    let bulk = r#"http_route="/ofrep/v1/evaluate/{path:flags\\/|flags}""#;
    assert_eq!(
        find(
            "http_server_request_duration_seconds_count{",
            &[
                single,
                r#"http_request_method="POST""#,
                r#"http_response_status_code="200""#
            ]
        )
        .as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        find(
            "http_server_request_duration_seconds_count{",
            &[single, r#"http_response_status_code="404""#]
        )
        .as_deref(),
        Some("1")
    );
    assert_eq!(
        find("http_server_response_body_size_bytes_count{", &[bulk]).as_deref(),
        Some("1"),
        "{text}"
    );
    assert_eq!(
        find("http_server_active_requests{", &[single]).as_deref(),
        Some("0")
    );
    // The evaluations themselves, through the shared core: the single flag, the bulk answer's
    // flags, and the miss.
    assert_eq!(
        find(
            "feature_flag_flagd_impression_total{",
            &[
                r#"feature_flag_key="bool""#,
                r#"feature_flag_result_variant="on""#
            ]
        )
        .as_deref(),
        Some("2")
    );
    assert_eq!(
        find(
            "feature_flag_flagd_result_reason_total{",
            &[r#"ExceptionTypeKeyName="FLAG_NOT_FOUND""#]
        )
        .as_deref(),
        Some("1")
    );
    assert!(
        find(
            "feature_flag_flagd_result_reason_total{",
            &[r#"ExceptionTypeKeyName="PARSE_ERROR""#]
        )
        .is_some()
    );
}
