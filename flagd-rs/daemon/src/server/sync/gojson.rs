//! JSON text as Go's `encoding/json` writes it, which is what flagd sends in sync payloads and
//! OFREP bodies: compact, object keys sorted, and `<`, `>`, `&`, U+2028 and U+2029 escaped so the
//! text can be embedded in HTML.
//!
//! Numbers are the one place where the output is deliberately not Go's. flagd decodes every
//! number into a float64 and prints it back without a fraction when it is whole, so a float
//! variant `0.0` reaches clients as `0`, which typed clients (Python, Java) read as an integer
//! and then refuse as a float. Here a number keeps the kind the flag file gave it: a number
//! written with a fraction or an exponent stays a float (`0.0`, `-0.0`, `2.0`, `1.5`, `1e+300`,
//! where Go writes `0`, `-0`, `2`, `1.5`, `1e+300`), an integer stays an integer with all its
//! digits (`12345678901234567890`, where Go writes `12345678901234567000`). Floats use Go's
//! digits and notation otherwise (shortest round trip, exponent form below 1e-6 and from 1e21).
//! Negative zero keeps its sign (`-0.0`), as Go keeps it (`-0`). Protobuf JSON (Connect) is not
//! written here: a `double` there follows the protobuf mapping.
//!
//! Clients compare these bytes (OFREP ETags hash them; sync consumers diff payloads), so the
//! writer is exact and deterministic rather than relying on serde's formatting.

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
    value: impl FnMut(&mut String, &Value),
) {
    write_entries(
        out,
        sorted(map).into_iter().map(|(k, v)| (k.as_str(), v)),
        value,
    );
}

/// Appends an object of `entries`, which come in byte order of their keys (as a flag's
/// [`flagd_evaluator::Metadata`] iterates), writing each value with `value`.
pub fn write_entries<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a str, &'a Value)>,
    mut value: impl FnMut(&mut String, &Value),
) {
    out.push('{');
    for (i, (k, v)) in entries.enumerate() {
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

/// Appends a number in the form the flag file gave it (see the module documentation). The JSON
/// parser keeps that form: a literal with a fraction or exponent is a float, one without is a
/// 64-bit integer (a longer one, or `-0`, becomes a float, the only form that holds it).
pub fn write_number(out: &mut String, n: &serde_json::Number) {
    match n.as_f64().filter(|_| n.is_f64()) {
        Some(f) => write_float(out, f),
        // `i64` or `u64`: printed with every digit.
        None => {
            let _ = write!(out, "{n}");
        }
    }
}

/// Appends a float with Go's digits and notation, and a `.0` where Go would print none, so the
/// text still reads as a float (`0.0`, `-0.0`, `2.0`, `100000000000000000000.0`). Non-finite
/// values, which JSON cannot hold and the parser never produces, are written as `null`.
pub fn write_float(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    if f == 0.0 {
        // Go prints `0` and `-0`; both stay floats here, the sign kept.
        out.push_str(if f.is_sign_negative() { "-0.0" } else { "0.0" });
        return;
    }
    let text = flagd_evaluator::go_float(f);
    out.push_str(&text);
    if !text.contains(['.', 'e']) {
        out.push_str(".0");
    }
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
            (json!(1.5), "1.5"),
            (json!(1e21), "1e+21"),
            (json!(0.0000001), "1e-7"),
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

    /// Numbers as a flag file writes them, and how they are written back.
    #[test]
    fn numbers_keep_the_form_of_the_flag_file() {
        let cases: &[(&str, &str)] = &[
            ("0", "0"),
            ("0.0", "0.0"),
            ("-0.0", "-0.0"),
            ("1.0", "1.0"),
            ("2.00", "2.0"),
            ("1.5", "1.5"),
            ("-2.5", "-2.5"),
            ("0.1", "0.1"),
            ("1e2", "100.0"),
            ("1E2", "100.0"),
            ("1e20", "100000000000000000000.0"),
            ("1e21", "1e+21"),
            ("1e300", "1e+300"),
            ("-1e300", "-1e+300"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
            ("5e-324", "5e-324"),
            ("0.000001", "0.000001"),
            ("0.0000001", "1e-7"),
            ("9007199254740993", "9007199254740993"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("12345678901234567890", "12345678901234567890"),
            ("18446744073709551615", "18446744073709551615"),
            // Past 64 bits an integer only fits a float, as in Go.
            ("18446744073709551616", "18446744073709552000.0"),
            // The parser reads `-0` as the float -0.0 (no integer holds it).
            ("-0", "-0.0"),
        ];
        for (text, want) in cases {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(go(&v), *want, "for {text}");
            // What is written reads back as the same number of the same kind.
            let back: Value = serde_json::from_str(want).unwrap();
            assert_eq!(back, v, "round trip of {text}");
        }
        let nested: Value = serde_json::from_str(r#"{"b":[2.0,2],"a":{"x":0.0}}"#).unwrap();
        assert_eq!(go(&nested), r#"{"a":{"x":0.0},"b":[2.0,2]}"#);
        let mut s = String::new();
        write_float(&mut s, f64::NAN);
        assert_eq!(s, "null");
    }
}
