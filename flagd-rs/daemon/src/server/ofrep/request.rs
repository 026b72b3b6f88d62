//! Reading an OFREP request body, `{"context": {...}}`, strictly, as Go's JSON decoder reads
//! it into flagd's request type (a struct whose `context` field is a JSON object):
//!
//! | body | outcome |
//! |---|---|
//! | empty, only whitespace, or `null` | empty request context |
//! | an object without `context`, or `"context": null` | empty request context |
//! | `"context": {...}` | that object (a repeated key inside it: the last one wins) |
//! | `context` spelt in another case (`Context`, `CONTEXT`) | the same member, as Go matches field names |
//! | `context` more than once | each one must be an object or `null`; the last one wins, no error |
//! | other members | ignored, as Go ignores unknown fields (they must still be valid JSON) |
//! | not JSON (syntax error, cut short), anything after the JSON value | 400 `INVALID_CONTEXT` |
//! | a JSON value that is not an object (array, string, number, boolean) | 400 `INVALID_CONTEXT` |
//! | `context` that is not an object or `null` (`"context": "x"`, `[]`, `1`, `true`) | 400 `INVALID_CONTEXT` |
//! | the body breaks off mid-transfer | 400 `INVALID_CONTEXT` |
//! | more than `--max-request-body` bytes | 413 |
//!
//! Every refusal is `INVALID_CONTEXT`, the code flagd answers for a body it cannot decode, and
//! never `PARSE_ERROR`: OFREP clients read `PARSE_ERROR` as "the flag's configuration does not
//! parse" (what it means on a flag's evaluation), which a malformed request is not. The details
//! keep flagd's text and add what was wrong and where.
//!
//! Bytes that are not UTF-8 inside strings are replaced by U+FFFD, as Go's decoder replaces
//! them, rather than refused.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body is not a valid OFREP request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// The request context of an OFREP body (see the module documentation for the rules).
pub fn decode(bytes: &[u8]) -> Result<Map<String, Value>, DecodeError> {
    if bytes.trim_ascii().is_empty() {
        return Ok(Map::new());
    }
    let text = String::from_utf8_lossy(bytes);
    let request: Request = serde_json::from_str(&text).map_err(|e| DecodeError(e.to_string()))?;
    Ok(request.0.unwrap_or_default())
}

/// The decoded body: the last `context` member, if any was not `null`.
struct Request(Option<Map<String, Value>>);

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RequestVisitor)
    }
}

struct RequestVisitor;

impl<'de> Visitor<'de> for RequestVisitor {
    type Value = Request;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(r#"a JSON object like {"context": {...}}"#)
    }

    /// `null` decodes into Go's struct as nothing at all.
    fn visit_unit<E: de::Error>(self) -> Result<Request, E> {
        Ok(Request(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Request, A::Error> {
        let mut context = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key.eq_ignore_ascii_case("context") {
                context = map.next_value::<Context>()?.0;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Request(context))
    }
}

/// One `context` member: an object, or `null` for none.
struct Context(Option<Map<String, Value>>);

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Object(m) => Ok(Context(Some(m))),
            Value::Null => Ok(Context(None)),
            other => Err(de::Error::custom(format_args!(
                "the context must be a JSON object, not {}",
                kind(&other)
            ))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(body: &str) -> Value {
        Value::Object(decode(body.as_bytes()).unwrap_or_else(|e| panic!("{body:?}: {e}")))
    }

    fn refused(body: &[u8]) -> String {
        match decode(body) {
            Ok(m) => panic!("{:?} was accepted as {m:?}", String::from_utf8_lossy(body)),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn accepted_bodies() {
        assert_eq!(ok(""), json!({}));
        assert_eq!(ok(" \n\t"), json!({}));
        assert_eq!(ok("null"), json!({}));
        assert_eq!(ok(" null "), json!({}));
        assert_eq!(ok("{}"), json!({}));
        assert_eq!(ok(r#"{"context":null}"#), json!({}));
        assert_eq!(ok(r#"{"context":{"a":1}}"#), json!({"a": 1}));
        assert_eq!(ok(r#"{"Context":{"a":1}}"#), json!({"a": 1}));
        assert_eq!(ok(r#"{"CONTEXT":{"a":1}}"#), json!({"a": 1}));
        assert_eq!(ok("{\"context\":{\"a\":1}}\n"), json!({"a": 1}));
        assert_eq!(ok(r#"{"context":{"a":1,"a":2}}"#), json!({"a": 2}));
        assert_eq!(
            ok(r#"{"context":{"a":1},"context":{"b":2}}"#),
            json!({"b": 2})
        );
        assert_eq!(ok(r#"{"context":{"a":1},"Context":null}"#), json!({}));
        assert_eq!(
            ok(r#"{"other":[1,{"x":"y"}],"context":{"t":"u"},"more":null}"#),
            json!({"t": "u"})
        );
        assert_eq!(
            ok(r#"{"context":{"nested":{"n":1.5},"list":[true,null]}}"#),
            json!({"nested": {"n": 1.5}, "list": [true, null]})
        );
    }

    #[test]
    fn refused_bodies() {
        for body in [
            "{",
            "{not json",
            r#"{"context":{}"#,
            r#"{"context":{}} trailing"#,
            r#"{"context":{}}{"context":{}}"#,
            "null null",
            "[]",
            "[1]",
            r#""x""#,
            "1",
            "true",
            r#"{"context":"not-an-object"}"#,
            r#"{"context":[]}"#,
            r#"{"context":1}"#,
            r#"{"context":false}"#,
            r#"{"context":"x","context":{}}"#,
            r#"{"context":{},"context":"x"}"#,
            r#"{"other":nope}"#,
        ] {
            refused(body.as_bytes());
        }
        assert!(refused(br#"{"context":{}} trailing"#).contains("trailing characters"));
        assert_eq!(
            refused(br#"{"context":"not-an-object"}"#),
            "the context must be a JSON object, not a string at line 1 column 27"
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_as_go_does() {
        let body = b"{\"context\":{\"name\":\"a\xffb\"}}";
        assert_eq!(
            Value::Object(decode(body).unwrap()),
            json!({"name": "a\u{fffd}b"})
        );
    }
}
