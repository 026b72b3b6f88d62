//! The JSON bodies of OFREP answers, in flagd's field order, written with the Go-compatible
//! writer (keys sorted, HTML characters escaped, numbers in the form the flag file gave them).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::Response;
use flagd_evaluator::Evaluation;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use crate::selector::Selector;
use crate::server::eval::resolve::{self, Meta};
use crate::server::sync::gojson::{write_str, write_value};

/// A response with a JSON body.
pub fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `{"value":..,"key":..,"reason":..,"variant":..,"metadata":{..}}` in Go's field order. `value`
/// is left out when there is none (the caller's default applies); `variant` is always present,
/// empty when nothing was chosen, because the Python OFREP provider fails without it.
pub fn write_success(
    out: &mut String,
    eval: &Evaluation<'_>,
    selector: &Selector,
    revision: Option<&Value>,
) {
    out.push('{');
    if let Some(value) = eval.value.filter(|v| !v.is_null()) {
        out.push_str("\"value\":");
        write_value(out, value);
        out.push(',');
    }
    out.push_str("\"key\":");
    write_str(out, eval.flag.key());
    out.push_str(",\"reason\":");
    write_str(out, eval.reason.as_str());
    out.push_str(",\"variant\":");
    write_str(out, eval.variant.unwrap_or_default());
    out.push_str(",\"metadata\":");
    write_metadata(
        out,
        resolve::metadata_entries(selector, revision, eval.metadata()),
    );
    out.push('}');
}

/// `{"key":..,"errorCode":..,"errorDetails":..,"metadata":..}`; `key` is left out for errors of a
/// whole bulk request, and `metadata` is `null` when there is none.
pub fn write_error<'m>(
    out: &mut String,
    key: Option<&str>,
    code: &str,
    details: &str,
    metadata: Option<impl Iterator<Item = (&'m str, Meta<'m>)>>,
) {
    out.push('{');
    if let Some(key) = key {
        out.push_str("\"key\":");
        write_str(out, key);
        out.push(',');
    }
    out.push_str("\"errorCode\":");
    write_str(out, code);
    out.push_str(",\"errorDetails\":");
    write_str(out, details);
    out.push_str(",\"metadata\":");
    match metadata {
        Some(entries) => write_metadata(out, entries),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// Writes metadata entries as an object with sorted keys; a later entry for the same key wins.
pub fn write_metadata<'m>(out: &mut String, entries: impl Iterator<Item = (&'m str, Meta<'m>)>) {
    let merged: BTreeMap<&str, Meta<'_>> = entries.collect();
    out.push('{');
    for (i, (k, v)) in merged.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k);
        out.push(':');
        match v {
            Meta::Text(s) => write_str(out, s),
            Meta::Json(v) => write_value(out, v),
        }
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn metadata_is_sorted_and_later_entries_win() {
        let a = json!("flag");
        let n = json!(2.0);
        let entries = [
            ("source", Meta::Text("echo")),
            ("z", Meta::Json(&n)),
            ("source", Meta::Json(&a)),
            ("a<", Meta::Text("&")),
        ];
        let mut out = String::new();
        write_metadata(&mut out, entries.into_iter());
        assert_eq!(out, r#"{"a\u003c":"\u0026","source":"flag","z":2.0}"#);
    }

    #[test]
    fn errors_with_and_without_key_and_metadata() {
        let mut out = String::new();
        write_error(
            &mut out,
            None,
            "INVALID_CONTEXT",
            "Provider context is not valid",
            None::<std::iter::Empty<(&str, Meta<'_>)>>,
        );
        assert_eq!(
            out,
            r#"{"errorCode":"INVALID_CONTEXT","errorDetails":"Provider context is not valid","metadata":null}"#
        );
        let v: Value = json!(true);
        let mut out = String::new();
        write_error(
            &mut out,
            Some("k"),
            "GENERAL",
            "d",
            Some([("x", Meta::Json(&v))].into_iter()),
        );
        assert_eq!(
            out,
            r#"{"key":"k","errorCode":"GENERAL","errorDetails":"d","metadata":{"x":true}}"#
        );
    }
}
