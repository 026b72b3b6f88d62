//! Every way an OFREP request or one of its flags fails, mapped to flagd's status codes, error
//! codes and bodies in this one place.

use axum::response::Response;
use flagd_evaluator::{ErrorCode, Evaluation, Exceeded};
use http::StatusCode;
use serde_json::{Map, Value};

use super::gzip;
use super::wire::write_error;
use crate::server::eval::RequestError;
use crate::server::eval::resolve::Meta;

/// flagd's details for a body it cannot decode; ours add what was wrong.
const INVALID_CONTEXT: &str = "Provider context is not valid";

/// Why an OFREP request failed as a whole (a bulk request's per-flag failures are entries of
/// its answer, written by [`write_flag_error`]).
#[derive(Debug)]
pub enum OfrepError {
    /// The body exceeds `--max-request-body`: 413.
    TooLarge,
    /// The body is not a valid request (see `request.rs`): 400 `INVALID_CONTEXT`. `key` is the
    /// flag of a single-flag request.
    InvalidContext { key: Option<String>, reason: String },
    /// `Flagd-Selector` does not parse: 400 `GENERAL`.
    InvalidSelector {
        key: Option<String>,
        message: String,
    },
    /// No such flag in the selection: 404 `FLAG_NOT_FOUND`; `metadata` is the selector echo.
    NotFound {
        key: String,
        metadata: Map<String, Value>,
    },
    /// The flag exists but could not be evaluated: 400 with the flag's error code; `metadata`
    /// is the response metadata.
    Evaluation {
        key: String,
        code: ErrorCode,
        exceeded: Option<Exceeded>,
        metadata: Map<String, Value>,
    },
}

impl OfrepError {
    /// The answer to a request whose `Flagd-Selector` the resolution core refused (it does not
    /// parse, or is not text).
    pub fn selector(e: &RequestError, key: Option<&str>) -> OfrepError {
        OfrepError::InvalidSelector {
            key: key.map(str::to_owned),
            message: e.to_string(),
        }
    }
}

/// Collects metadata entries for an error answer.
pub fn collect_metadata<'m>(
    entries: impl Iterator<Item = (&'m str, Meta<'m>)>,
) -> Map<String, Value> {
    entries
        .map(|(k, v)| {
            let v = match v {
                Meta::Text(s) => Value::String(s.to_owned()),
                Meta::Json(v) => v.clone(),
            };
            (k.to_owned(), v)
        })
        .collect()
}

impl OfrepError {
    /// The answer to a request that accepts gzip (`accepts_gzip`) or not.
    pub fn answer(self, accepts_gzip: bool) -> Response {
        let (status, body) = self.render();
        gzip::json_answer(status, body, None, accepts_gzip)
    }

    /// The status code and JSON body of the answer.
    fn render(&self) -> (StatusCode, String) {
        let mut out = String::new();
        let none = None::<std::iter::Empty<(&str, Meta<'_>)>>;
        let status = match self {
            OfrepError::TooLarge => {
                out.push_str(r#"{"errorDetails":"request body too large"}"#);
                StatusCode::PAYLOAD_TOO_LARGE
            }
            OfrepError::InvalidContext { key, reason } => {
                let details = format!("{INVALID_CONTEXT}: {reason}");
                write_error(&mut out, key.as_deref(), "INVALID_CONTEXT", &details, none);
                StatusCode::BAD_REQUEST
            }
            OfrepError::InvalidSelector { key, message } => {
                let details = format!("invalid selector: {message}");
                write_error(&mut out, key.as_deref(), "GENERAL", &details, none);
                StatusCode::BAD_REQUEST
            }
            OfrepError::NotFound { key, metadata } => {
                let details = format!("flag `{key}` does not exist");
                write_error(
                    &mut out,
                    Some(key),
                    "FLAG_NOT_FOUND",
                    &details,
                    Some(entries(metadata)),
                );
                StatusCode::NOT_FOUND
            }
            OfrepError::Evaluation {
                key,
                code,
                exceeded,
                metadata,
            } => {
                let (code, details) = flag_error(key, *code, *exceeded);
                write_error(&mut out, Some(key), code, &details, Some(entries(metadata)));
                StatusCode::BAD_REQUEST
            }
        };
        (status, out)
    }
}

fn entries(m: &Map<String, Value>) -> impl Iterator<Item = (&str, Meta<'_>)> {
    m.iter().map(|(k, v)| (k.as_str(), Meta::Json(v)))
}

/// Writes a failed flag of a bulk answer: `{"key":..,"errorCode":..,"errorDetails":..,
/// "metadata":{..}}` with the same codes and details as a single-flag request's failure.
pub fn write_flag_error<'m>(
    out: &mut String,
    eval: &Evaluation<'_>,
    code: ErrorCode,
    metadata: impl Iterator<Item = (&'m str, Meta<'m>)>,
) {
    let key = eval.flag.key();
    let (code, details) = flag_error(key, code, eval.budget_exceeded());
    write_error(out, Some(key), code, &details, Some(metadata));
}

/// flagd's error code and details for a flag that failed to evaluate (PARSE_ERROR, else
/// GENERAL); an error flagd does not have (the evaluation budget) is GENERAL with its own
/// details.
fn flag_error(key: &str, code: ErrorCode, exceeded: Option<Exceeded>) -> (&'static str, String) {
    match (code, exceeded) {
        (ErrorCode::ParseError, _) => ("PARSE_ERROR", format!("error parsing the flag `{key}`")),
        (_, Some(what)) => (
            "GENERAL",
            format!("flag `{key}`: evaluation budget exceeded: {what}"),
        ),
        (_, None) => (
            "GENERAL",
            "error processing the flag for evaluation".to_owned(),
        ),
    }
}
