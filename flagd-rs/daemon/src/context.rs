//! Evaluation context assembly: the request's context (a protobuf `Struct` or a JSON object)
//! merged with the static `-X` values and the header-mapped `-H` values, later ones winning.
//!
//! Header-mapped values follow flagd: the header is looked up by name without regard to case
//! (HTTP/1.1 `X-User-Id`, HTTP/2 and gRPC `x-user-id`), its first value is taken, an empty
//! value sets nothing, and the value is always a string. Bytes that are not UTF-8 (header
//! values are bytes on the wire) are replaced with U+FFFD rather than dropping the value.

use std::borrow::Cow;

use flagd_evaluator::{Context, ContextBuilder};
use http::{HeaderMap, HeaderName};
use pbjson_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::state::ContextConfig;

/// Largest integer a float64 holds exactly; integral numbers up to it become JSON integers.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Looks a request header up by its lower-case name.
pub type HeaderLookup<'h> = dyn Fn(&str) -> Option<&'h str> + 'h;

/// Builds the context flagd evaluates with: `request` overlaid by the static values, then by
/// the values of the configured headers (`header` looks a header up by its lower-case name;
/// `None` skips the header mapping, as the deprecated `schema.v1` service does). Empty header
/// values are ignored.
pub fn assemble<'h>(
    request: Map<String, Value>,
    config: &ContextConfig,
    header: Option<&HeaderLookup<'h>>,
) -> Value {
    let mut ctx = with_static_values(request, config);
    if let Some(header) = header {
        for (name, key) in &config.from_headers {
            if let Some(v) = header(name.as_str()).filter(|v| !v.is_empty()) {
                ctx.insert(key.clone(), Value::String(v.to_owned()));
            }
        }
    }
    Value::Object(ctx)
}

/// [`assemble`] with the headers of an HTTP request or gRPC call, read as
/// [`mapped_header_values`] reads them.
pub fn assemble_from(
    request: Map<String, Value>,
    config: &ContextConfig,
    headers: Option<&HeaderMap>,
) -> Value {
    let mut ctx = with_static_values(request, config);
    if let Some(headers) = headers {
        for (key, value) in mapped_header_values(config, headers) {
            ctx.insert(key.to_owned(), Value::String(value.into_owned()));
        }
    }
    Value::Object(ctx)
}

/// The context entries the `-H` mapping takes from `headers`, in the configured order (a later
/// mapping to the same key wins when both are set): for each mapping whose header is present
/// with a non-empty first value, the context key and that value as text.
pub fn mapped_header_values<'a>(
    config: &'a ContextConfig,
    headers: &'a HeaderMap,
) -> impl Iterator<Item = (&'a str, Cow<'a, str>)> + 'a {
    config
        .from_headers
        .iter()
        .filter_map(|(name, key)| header_text(headers, name).map(|v| (key.as_str(), v)))
}

/// The first value of header `name` as text, unless it is absent or empty. `HeaderMap` keys
/// are lower case and `HeaderName`s are too, so the lookup ignores the case the client wrote.
pub fn header_text<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<Cow<'h, str>> {
    let value = headers.get(name)?.as_bytes();
    (!value.is_empty()).then(|| String::from_utf8_lossy(value))
}

/// `request` with the static values written over it.
fn with_static_values(request: Map<String, Value>, config: &ContextConfig) -> Map<String, Value> {
    let mut ctx = request;
    for (k, v) in &config.static_values {
        ctx.insert(k.clone(), v.clone());
    }
    ctx
}

/// Builds the context of an evaluation request straight from its protobuf `Struct` (no JSON
/// object in between): the request's fields, then the static values, then the values of the
/// configured headers (`headers: None` skips the mapping, as the deprecated `schema.v1` service
/// does), later ones winning as in [`assemble`]. Empty header values are ignored.
pub fn build(
    request: Option<pbjson_types::Struct>,
    config: &ContextConfig,
    headers: Option<&HeaderMap>,
) -> Context {
    let fields = request.map(|s| s.fields).unwrap_or_default();
    let text: usize = fields
        .iter()
        .map(|(k, v)| {
            k.len()
                + match &v.kind {
                    Some(Kind::StringValue(s)) => s.len(),
                    _ => 0,
                }
        })
        .sum();
    let mut ctx = Context::builder_with_capacity(
        fields.len() + config.static_values.len() + config.from_headers.len(),
        text,
    );
    for (k, v) in fields {
        match v.kind {
            None | Some(Kind::NullValue(_)) => ctx.null(&k),
            Some(Kind::BoolValue(b)) => ctx.bool(&k, b),
            Some(Kind::StringValue(s)) => ctx.string(&k, &s),
            // Non-finite numbers become null, as in `proto_to_json`.
            Some(Kind::NumberValue(n)) => ctx.number(&k, n),
            Some(kind) => ctx.json(&k, proto_to_json(pbjson_types::Value { kind: Some(kind) })),
        };
    }
    overlay(&mut ctx, config, headers);
    ctx.build()
}

/// [`build`] for a request whose context is a JSON object (OFREP): the object's members, then
/// the static values, then the values of the configured headers, later ones winning.
pub fn build_json(
    request: Map<String, Value>,
    config: &ContextConfig,
    headers: Option<&HeaderMap>,
) -> Context {
    let text: usize = request
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    let mut ctx = Context::builder_with_capacity(
        request.len() + config.static_values.len() + config.from_headers.len(),
        text,
    );
    for (k, v) in request {
        ctx.json(&k, v);
    }
    overlay(&mut ctx, config, headers);
    ctx.build()
}

/// Adds the static values and then the configured headers' values (non-empty text only) over
/// what the request gave.
fn overlay(ctx: &mut ContextBuilder, config: &ContextConfig, headers: Option<&HeaderMap>) {
    for (k, v) in &config.static_values {
        ctx.json_ref(k, v);
    }
    if let Some(headers) = headers {
        for (key, value) in mapped_header_values(config, headers) {
            ctx.string(key, &value);
        }
    }
}

/// Converts a request's protobuf `Struct` into a JSON object, moving its strings.
pub fn struct_to_map(s: Option<pbjson_types::Struct>) -> Map<String, Value> {
    s.map(|s| {
        s.fields
            .into_iter()
            .map(|(k, v)| (k, proto_to_json(v)))
            .collect()
    })
    .unwrap_or_default()
}

/// Converts one protobuf `Value` into JSON. Integral numbers become JSON integers, so targeting
/// that prints them (`cat`, `sem_ver`) sees `1`, as flagd's Go formatting does, not `1.0`.
pub fn proto_to_json(v: pbjson_types::Value) -> Value {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) => number(n),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_map(Some(s))),
        Some(Kind::ListValue(l)) => Value::Array(l.values.into_iter().map(proto_to_json).collect()),
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() <= MAX_EXACT_INT {
        // In range and integral, so the conversion is exact.
        let i = n as i64;
        return Value::Number(i.into());
    }
    // NaN and infinities have no JSON form; flagd's Go context would hold them but no JSONLogic
    // comparison with them can succeed, so null is the closest equivalent.
    Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// Converts a JSON object into a protobuf `Struct` (for response values and metadata).
pub fn map_to_struct<'a>(
    m: impl IntoIterator<Item = (&'a String, &'a Value)>,
) -> pbjson_types::Struct {
    pbjson_types::Struct {
        fields: m
            .into_iter()
            .map(|(k, v)| (k.clone(), json_to_proto(v)))
            .collect(),
    }
}

/// Converts one JSON value into a protobuf `Value`. Numbers become float64, as in protobuf.
pub fn json_to_proto(v: &Value) -> pbjson_types::Value {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(pbjson_types::ListValue {
            values: a.iter().map(json_to_proto).collect(),
        }),
        Value::Object(m) => Kind::StructValue(map_to_struct(m)),
    };
    pbjson_types::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> ContextConfig {
        let mut static_values = Map::new();
        static_values.insert("env".into(), json!("prod"));
        static_values.insert("team".into(), json!("static"));
        ContextConfig {
            static_values,
            from_headers: vec![
                (http::HeaderName::from_static("x-team"), "team".into()),
                (http::HeaderName::from_static("x-empty"), "empty".into()),
            ],
        }
    }

    #[test]
    fn later_layers_win() {
        let request = json!({"env": "dev", "team": "req", "user": "u", "empty": "kept"});
        let Value::Object(request) = request else {
            unreachable!()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-team", "header".parse().unwrap());
        headers.insert("x-empty", "".parse().unwrap());
        let ctx = assemble_from(request.clone(), &config(), Some(&headers));
        assert_eq!(
            ctx,
            json!({"env": "prod", "team": "header", "user": "u", "empty": "kept"})
        );
        let ctx = assemble(request, &config(), None);
        assert_eq!(
            ctx,
            json!({"env": "prod", "team": "static", "user": "u", "empty": "kept"})
        );
    }

    #[test]
    fn built_context_matches_the_assembled_one() {
        let request = json!({"env": "dev", "team": "req", "user": "u", "empty": "kept",
            "n": 3, "f": 2.5, "big": 1e300, "t": true, "nil": null,
            "nested": {"a": [1, "x"]}, "list": ["p", 2]});
        let Value::Object(request) = request else {
            unreachable!()
        };
        let mut headers = HeaderMap::new();
        headers.insert("x-team", "header".parse().unwrap());
        headers.insert("x-empty", "".parse().unwrap());
        for headers in [Some(&headers), None] {
            let expected = assemble_from(request.clone(), &config(), headers);
            let built = build(Some(map_to_struct(&request)), &config(), headers);
            assert_eq!(built.to_json(), expected);
        }
        assert_eq!(
            build(None, &config(), None).to_json(),
            json!({"env": "prod", "team": "static"})
        );
        let mut s = map_to_struct(&Map::new());
        s.fields.insert(
            "nan".into(),
            pbjson_types::Value {
                kind: Some(Kind::NumberValue(f64::NAN)),
            },
        );
        s.fields
            .insert("none".into(), pbjson_types::Value { kind: None });
        let ctx = build(Some(s), &ContextConfig::default(), None);
        assert_eq!(ctx.to_json(), json!({"nan": null, "none": null}));
    }

    /// A mapping as the command line gives it: `X-User-ID=user`.
    fn mapping(header: &str, key: &str) -> ContextConfig {
        ContextConfig {
            static_values: Map::new(),
            from_headers: vec![(
                HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).unwrap(),
                key.into(),
            )],
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    }

    #[test]
    fn header_names_match_whatever_case_either_side_writes() {
        let config = mapping("X-User-ID", "user");
        for written in ["x-user-id", "X-User-ID", "X-USER-ID", "x-UsEr-Id"] {
            let request = headers(&[(written, "u-42")]);
            assert_eq!(
                assemble_from(Map::new(), &config, Some(&request)),
                json!({"user": "u-42"}),
                "{written}"
            );
            assert_eq!(
                build(None, &config, Some(&request)).to_json(),
                json!({"user": "u-42"}),
                "{written}"
            );
        }
        // The lookup closure OFREP passes is asked with the lower-case name.
        let request = headers(&[("X-User-Id", "u-7")]);
        let lookup = |name: &str| request.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(
            assemble(Map::new(), &config, Some(&lookup)),
            json!({"user": "u-7"})
        );
    }

    #[test]
    fn only_a_non_empty_first_value_is_used_and_always_as_text() {
        let config = mapping("x-tier", "tier");
        let cases: [(&[(&str, &str)], Value); 5] = [
            (&[("x-tier", "gold"), ("x-tier", "silver")], json!("gold")),
            // An empty first value sets nothing, as Go's `Header.Get` returns it.
            (&[("x-tier", ""), ("x-tier", "silver")], json!("kept")),
            (&[("x-tier", "42")], json!("42")),
            (&[("x-tier", "true")], json!("true")),
            (&[], json!("kept")),
        ];
        for (pairs, expected) in cases {
            let request = headers(pairs);
            let Value::Object(body) = json!({"tier": "kept"}) else {
                unreachable!()
            };
            let ctx = assemble_from(body.clone(), &config, Some(&request));
            assert_eq!(ctx["tier"], expected, "{pairs:?}");
            let built = build(Some(map_to_struct(&body)), &config, Some(&request));
            assert_eq!(built.to_json()["tier"], expected, "{pairs:?}");
        }
    }

    #[test]
    fn values_that_are_not_ascii_are_kept() {
        let config = mapping("x-city", "city");
        let request = headers(&[("x-city", "Zürich")]);
        assert_eq!(
            assemble_from(Map::new(), &config, Some(&request)),
            json!({"city": "Zürich"})
        );
        assert_eq!(
            build(None, &config, Some(&request)).to_json(),
            json!({"city": "Zürich"})
        );
        // Bytes that are not UTF-8 are replaced, not dropped.
        let mut request = HeaderMap::new();
        request.insert(
            "x-city",
            http::HeaderValue::from_bytes(b"Z\xfcrich").unwrap(),
        );
        assert_eq!(
            header_text(&request, &HeaderName::from_static("x-city")).as_deref(),
            Some("Z\u{fffd}rich")
        );
    }

    #[test]
    fn json_context_matches_the_assembled_one() {
        let request = json!({"env": "dev", "team": "req", "user": "u", "empty": "kept",
            "n": 3, "f": 2.5, "whole": 2.0, "big": 1e300, "huge": 12345678901234567890u64,
            "t": true, "nil": null, "nested": {"a": [1, "x"]}, "list": ["p", 2]});
        let Value::Object(request) = request else {
            unreachable!()
        };
        let mut headers = HeaderMap::new();
        headers.insert("X-Team", "header".parse().unwrap());
        headers.insert("x-empty", "".parse().unwrap());
        for headers in [Some(&headers), None] {
            let expected = assemble_from(request.clone(), &config(), headers);
            let built = build_json(request.clone(), &config(), headers);
            assert_eq!(built.to_json(), expected);
        }
        assert_eq!(
            build_json(Map::new(), &config(), None).to_json(),
            json!({"env": "prod", "team": "static"})
        );
    }

    #[test]
    fn struct_round_trip() {
        let v = json!({"a": 1, "b": 1.5, "c": [true, null, "x"], "d": {"e": -3}, "f": 1e300});
        let Value::Object(m) = v.clone() else {
            unreachable!()
        };
        let s = map_to_struct(&m);
        assert_eq!(Value::Object(struct_to_map(Some(s))), v);
        assert_eq!(number(f64::NAN), Value::Null);
        assert_eq!(struct_to_map(None), Map::new());
    }
}
