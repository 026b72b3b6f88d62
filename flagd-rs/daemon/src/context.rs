//! Evaluation context assembly: the request's context (a protobuf `Struct` or a JSON object)
//! merged with the static `-X` values and the header-mapped `-H` values, later ones winning.

use flagd_evaluator::{Context, ContextBuilder};
use http::HeaderMap;
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
    let mut ctx = request;
    for (k, v) in &config.static_values {
        ctx.insert(k.clone(), v.clone());
    }
    if let Some(header) = header {
        for (name, key) in &config.from_headers {
            if let Some(v) = header(name.as_str()).filter(|v| !v.is_empty()) {
                ctx.insert(key.clone(), Value::String(v.to_owned()));
            }
        }
    }
    Value::Object(ctx)
}

/// [`assemble`] with the headers of an HTTP request or gRPC call (non-text values ignored).
pub fn assemble_from(
    request: Map<String, Value>,
    config: &ContextConfig,
    headers: Option<&HeaderMap>,
) -> Value {
    match headers {
        Some(h) => assemble(
            request,
            config,
            Some(&|name: &str| h.get(name).and_then(|v| v.to_str().ok())),
        ),
        None => assemble(request, config, None),
    }
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
        for (name, key) in &config.from_headers {
            let value = headers.get(name).and_then(|v| v.to_str().ok());
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                ctx.string(key, v);
            }
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
