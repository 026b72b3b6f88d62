//! JSON text as Go's `encoding/json` writes it, which is what flagd sends in sync payloads and
//! OFREP bodies: compact, object keys sorted, numbers printed as float64, and `<`, `>`, `&`,
//! U+2028 and U+2029 escaped so the text can be embedded in HTML.
//!
//! Clients compare these bytes (OFREP ETags hash them; sync consumers diff payloads), so the
//! writer reproduces Go's output exactly rather than relying on serde's formatting.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Appends `value` as Go would marshal the equivalent `interface{}`.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => write_map(out, map, write_value),
    }
}

/// Appends an object with its keys in byte order, writing each value with `value`.
pub fn write_map(
    out: &mut String,
    map: &Map<String, Value>,
    mut value: impl FnMut(&mut String, &Value),
) {
    out.push('{');
    for (i, (k, v)) in sorted(map).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        value(out, v);
    }
    out.push('}');
}

/// The entries of `map` in byte order of their keys. serde_json's default map is already
/// ordered that way; sorting keeps the output right if a dependency enables `preserve_order`.
pub fn sorted(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    entries
}

/// Appends a number the way Go prints a float64 (flagd decodes every JSON number into one):
/// integral values without a fraction, exponent form below 1e-6 and from 1e21 on.
pub fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(i) = n.as_i64() {
        // Exactly representable integers print the same as Go's float64 formatting.
        if i.unsigned_abs() <= 1 << 53 {
            let _ = write!(out, "{i}");
            return;
        }
    }
    out.push_str(&flagd_evaluator::go_float(n.as_f64().unwrap_or(0.0)));
}

/// Appends a quoted string with Go's escaping (HTML-safe, `\b` and `\f` short forms).
pub fn write_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => Some(""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        out.push_str(s.get(start..i).unwrap_or_default());
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push_str(escape);
        }
        start = i + c.len_utf8();
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn go(v: &Value) -> String {
        let mut s = String::new();
        write_value(&mut s, v);
        s
    }

    #[test]
    fn matches_go_encoding() {
        let cases: &[(Value, &str)] = &[
            (json!(null), "null"),
            (json!([true, false]), "[true,false]"),
            (json!(1), "1"),
            (json!(-7), "-7"),
            (json!(1.0), "1"),
            (json!(1.5), "1.5"),
            (json!(1e21), "1e+21"),
            (json!(0.0000001), "1e-7"),
            (json!(12345678901234567890u64), "12345678901234567000"),
            (json!("a<b>&c"), r#""a\u003cb\u003e\u0026c""#),
            (
                json!("q\"\\\n\r\t\u{8}\u{c}\u{1}"),
                r#""q\"\\\n\r\t\b\f\u0001""#,
            ),
            (json!("\u{2028}é"), "\"\\u2028é\""),
            (
                json!({"b": 1, "a": {"d": [], "c": {}}}),
                r#"{"a":{"c":{},"d":[]},"b":1}"#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(go(v), *want, "for {v}");
        }
    }
}
