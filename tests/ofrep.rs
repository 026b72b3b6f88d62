//! The OFREP server over real HTTP: single and bulk evaluation, every status code, ETag and
//! `If-None-Match`, selectors, context merging, CORS and the body limit.

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
    shutdown: watch::Sender<bool>,
    client: reqwest::Client,
}

impl Server {
    async fn start(configure: impl FnOnce(&mut AppState)) -> Server {
        // The flag-set document has the lower priority, so `bool` without a selector is MAIN's.
        let store = Store::new(
            vec!["set.json".into(), "main.json".into()],
            LoadOptions::default(),
        );
        for (i, doc) in [SET, MAIN].iter().enumerate() {
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
        };
        configure(&mut state);
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
            r#"{"context":"not an object"}"#,
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
            r#"{"key":"bool","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}"#,
        ),
        (
            "bool",
            "[1]",
            400,
            r#"{"key":"bool","errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}"#,
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
        r#"{"errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}"#
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
    let version = ofrep::config_version(&s.store.snapshot());
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
