//! Validation of flag documents against the flag-file JSON schemas in `schemas/json/`.
//!
//! The schemas are embedded at build time and compiled once into a shared validator. A valid
//! document costs one pass of the compiled validator; only an invalid one is walked a second time
//! to collect the violations, which are then rewritten into short, one-line messages that name the
//! flag and the JSON pointer of the offending value.

use std::fmt::Write as _;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::Value;

/// The flag-document schema (draft-07), as shipped in `schemas/json/flags.json`.
pub const FLAGS_SCHEMA: &str = include_str!("../../../schemas/json/flags.json");

/// The targeting-rule schema (draft-07), as shipped in `schemas/json/targeting.json`.
pub const TARGETING_SCHEMA: &str = include_str!("../../../schemas/json/targeting.json");

/// The `$id` of [`FLAGS_SCHEMA`]; `./targeting.json` inside it resolves against this URI.
const FLAGS_SCHEMA_URI: &str = "https://flagd-rs.dev/schema/v0/flags.json";

/// The `$id` of [`TARGETING_SCHEMA`], under which it is registered for the reference above.
const TARGETING_SCHEMA_URI: &str = "https://flagd-rs.dev/schema/v0/targeting.json";

/// At most this many violations are reported for one document; a document with thousands of
/// broken flags would otherwise flood the log with one warning per flag and property.
const MAX_VIOLATIONS: usize = 100;

/// Documents nested deeper than this are not handed to the validator, whose recursion follows the
/// nesting. Parsed JSON and YAML stop far earlier (128 levels); this only guards values built in
/// code.
const MAX_DEPTH: usize = 512;

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaViolation {
    /// JSON pointer (RFC 6901) of the offending value, e.g. `/flags/my-flag/variants`.
    pub pointer: String,
    /// The key of the flag the pointer is under, if any. For the array form of `flags` this is
    /// the `key` of that array element, when it is a string.
    pub flag: Option<String>,
    /// What is wrong, in one line.
    pub message: String,
}

/// The compiled flag-document validator, built once and reused for every load.
pub struct SchemaValidator {
    /// The compiled schema, or why it failed to compile. Compilation of the embedded schemas is
    /// covered by the tests, so the error branch exists only to keep `validate` total.
    compiled: Result<Validator, String>,
}

impl std::fmt::Debug for SchemaValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaValidator")
            .field("compiled", &self.compiled.is_ok())
            .finish()
    }
}

impl SchemaValidator {
    /// The process-wide validator, compiled on first use.
    pub fn shared() -> &'static SchemaValidator {
        static SHARED: OnceLock<SchemaValidator> = OnceLock::new();
        SHARED.get_or_init(|| SchemaValidator {
            compiled: compile(),
        })
    }

    /// Checks `document` against the flag-file schema and returns its violations (empty when the
    /// document is valid). Never panics; if the embedded schema failed to compile, the single
    /// violation says so.
    pub fn validate(&self, document: &Value) -> Vec<SchemaViolation> {
        let validator = match &self.compiled {
            Ok(validator) => validator,
            Err(reason) => {
                return vec![SchemaViolation {
                    pointer: String::new(),
                    flag: None,
                    message: format!("the flag-file schema could not be compiled: {reason}"),
                }];
            }
        };
        if exceeds_depth(document, MAX_DEPTH) {
            return vec![SchemaViolation {
                pointer: String::new(),
                flag: None,
                message: format!(
                    "the document nests deeper than {MAX_DEPTH} levels and was not checked"
                ),
            }];
        }
        // `is_valid` stops at the first failure and builds no error values, so the common case
        // (a valid document) pays for one cheap pass only.
        if validator.is_valid(document) {
            return Vec::new();
        }
        let mut found = Vec::new();
        for error in validator.iter_errors(document) {
            explain(&error, &mut found);
        }
        let mut violations: Vec<SchemaViolation> =
            Vec::with_capacity(found.len().min(MAX_VIOLATIONS + 1));
        let mut omitted = 0usize;
        for (pointer, message) in found {
            if violations
                .iter()
                .any(|v| v.pointer == pointer && v.message == message)
            {
                continue;
            }
            if violations.len() == MAX_VIOLATIONS {
                omitted += 1;
                continue;
            }
            let flag = flag_of(&pointer, document);
            violations.push(SchemaViolation {
                pointer,
                flag,
                message,
            });
        }
        if omitted > 0 {
            violations.push(SchemaViolation {
                pointer: String::new(),
                flag: None,
                message: format!("{omitted} more schema violations not shown"),
            });
        }
        violations
    }
}

/// Compiles the embedded schemas; `targeting.json` is registered under its `$id` so that the
/// relative `./targeting.json` references of `flags.json` resolve without any retrieval.
fn compile() -> Result<Validator, String> {
    let flags: Value =
        serde_json::from_str(FLAGS_SCHEMA).map_err(|e| format!("flags.json is not JSON: {e}"))?;
    let targeting: Value = serde_json::from_str(TARGETING_SCHEMA)
        .map_err(|e| format!("targeting.json is not JSON: {e}"))?;
    let registry = jsonschema::Registry::new()
        .add(TARGETING_SCHEMA_URI, targeting)
        .and_then(|builder| builder.prepare())
        .map_err(|e| format!("targeting.json: {e}"))?;
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .with_base_uri(FLAGS_SCHEMA_URI)
        .with_registry(&registry)
        .build(&flags)
        .map_err(|e| format!("flags.json: {e}"))
}

/// Whether `value` nests deeper than `limit` arrays/objects. Iterative, so it cannot itself
/// exhaust the stack.
fn exceeds_depth(value: &Value, limit: usize) -> bool {
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth >= limit {
            return true;
        }
        stack.extend(
            children
                .filter(|c| c.is_array() || c.is_object())
                .map(|c| (c, depth + 1)),
        );
    }
    false
}

/// Turns one validator error into `(pointer, message)` pairs, descending into `anyOf`/`oneOf`
/// failures so that the report names the actual problem instead of every rejected alternative.
fn explain(error: &ValidationError<'_>, out: &mut Vec<(String, String)>) {
    let pointer = error.instance_path().as_str();
    let segments = segments(pointer);
    match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            if segments.last().is_some_and(|s| s == "variants") {
                out.push((pointer.to_owned(), variants_message(error.instance())));
            } else if let Some(branch) = best_branch(context, pointer) {
                for inner in branch {
                    explain(inner, out);
                }
            } else {
                out.push((
                    pointer.to_owned(),
                    format!("{} matches none of the allowed forms", subject(&segments)),
                ));
            }
        }
        kind => out.push((pointer.to_owned(), describe(kind, error, &segments))),
    }
}

/// Picks the alternative of a failed `anyOf`/`oneOf` that came closest: one whose type matched
/// and whose errors lie deepest in the instance, preferring fewer errors on a tie.
fn best_branch<'e>(
    context: &'e [Vec<ValidationError<'static>>],
    at: &str,
) -> Option<&'e [ValidationError<'static>]> {
    context
        .iter()
        .filter(|branch| !branch.is_empty())
        .max_by_key(|branch| {
            let type_matched = !branch.iter().any(|e| {
                e.instance_path().as_str() == at
                    && matches!(e.kind(), ValidationErrorKind::Type { .. })
            });
            let depth = branch
                .iter()
                .map(|e| e.instance_path().as_str().matches('/').count())
                .max()
                .unwrap_or(0);
            (type_matched, depth, std::cmp::Reverse(branch.len()))
        })
        .map(Vec::as_slice)
}

/// The one-line message for a single, non-composite violation.
fn describe(
    kind: &ValidationErrorKind,
    error: &ValidationError<'_>,
    segments: &[String],
) -> String {
    let instance = error.instance();
    let what = subject(segments);
    match kind {
        ValidationErrorKind::Required { property } => {
            format!("missing required property {}", preview(property))
        }
        ValidationErrorKind::Type { kind } => {
            format!(
                "{what} must be {}, found {}",
                expected_types(kind),
                type_name(instance)
            )
        }
        ValidationErrorKind::Enum { options } => {
            let options = match options.as_ref() {
                Value::Array(items) => items.iter().map(preview).collect::<Vec<_>>().join(", "),
                other => preview(other),
            };
            if is_sem_ver_operator(segments) {
                format!(
                    "sem_ver operator must be one of {options}, found {}",
                    preview(instance)
                )
            } else {
                format!(
                    "{what} must be one of {options}, found {}",
                    preview(instance)
                )
            }
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!(
                "{what} must be {}, found {}",
                preview(expected_value),
                preview(instance)
            )
        }
        ValidationErrorKind::MinProperties { limit } => {
            let noun = if segments.last().is_some_and(|s| s == "variants") {
                "variant"
            } else {
                "entry"
            };
            format!("{what} must have at least {limit} {}", plural(*limit, noun))
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!(
                "{what} must have at most {limit} {}",
                plural(*limit, "entry")
            )
        }
        ValidationErrorKind::MinItems { limit } => {
            arity_message(segments, instance, "at least", *limit)
        }
        ValidationErrorKind::MaxItems { limit } => {
            arity_message(segments, instance, "at most", *limit)
        }
        ValidationErrorKind::MinLength { limit: 1 } => format!("{what} must not be empty"),
        ValidationErrorKind::MinLength { limit } => {
            format!("{what} must be at least {limit} characters long")
        }
        ValidationErrorKind::PropertyNames { error: inner } => {
            let reason = match inner.kind() {
                ValidationErrorKind::MinLength { .. } => "names must not be empty".to_owned(),
                _ => {
                    let mut text = inner.to_string();
                    truncate(&mut text, 100);
                    text
                }
            };
            format!(
                "{what} has an invalid property name {}: {reason}",
                preview(inner.instance())
            )
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!(
                "{what} has unexpected properties: {}",
                unexpected.join(", ")
            )
        }
        _ => {
            let mut text = error.to_string();
            truncate(&mut text, 160);
            format!("{what}: {text}")
        }
    }
}

/// Message for an argument-count violation: operator arguments, `fractional` distributions or
/// any other array.
fn arity_message(segments: &[String], instance: &Value, bound: &str, limit: u64) -> String {
    let found = instance.as_array().map_or(0, Vec::len);
    let last = segments.last().map(String::as_str);
    let parent = segments
        .len()
        .checked_sub(2)
        .and_then(|i| segments.get(i))
        .map(String::as_str);
    let in_rule = segments.first().is_some_and(|s| s == "$evaluators")
        || segments.iter().any(|s| s == "targeting");
    if in_rule && parent == Some("fractional") && last.is_some_and(is_index) {
        return format!(
            "a fractional distribution must be [variant] or [variant, weight], found {found} {}",
            plural(found as u64, "item")
        );
    }
    match last {
        Some(op) if in_rule && !is_index(op) => {
            format!(
                "{op} expects {bound} {limit} {}, found {found}",
                plural(limit, "argument")
            )
        }
        _ => format!(
            "{} must have {bound} {limit} {}, found {found}",
            subject(segments),
            plural(limit, "item")
        ),
    }
}

/// Whether the pointer names the operator argument of a `sem_ver` rule (`.../sem_ver/1`).
fn is_sem_ver_operator(segments: &[String]) -> bool {
    matches!(segments, [.., op, index] if op == "sem_ver" && index == "1")
}

/// Summarises a failed "all variants share one type" check from the variants object itself,
/// which says far more than the four rejected alternatives would.
fn variants_message(instance: &Value) -> String {
    let Some(variants) = instance.as_object() else {
        return format!("variants must be an object, found {}", type_name(instance));
    };
    if let Some((name, value)) = variants.iter().find(|(_, v)| v.is_array() || v.is_null()) {
        return format!(
            "variant {} is {}; variant values must be booleans, strings, numbers or objects",
            preview(&Value::String(name.clone())),
            type_name(value)
        );
    }
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, value) in variants {
        let ty = type_name(value);
        match groups.iter_mut().find(|(t, _)| *t == ty) {
            Some((_, names)) => names.push(name),
            None => groups.push((ty, vec![name])),
        }
    }
    let mut found = String::new();
    for (i, (ty, names)) in groups.iter().enumerate() {
        if i > 0 {
            found.push_str(if i + 1 == groups.len() { " and " } else { ", " });
        }
        let listed: Vec<String> = names
            .iter()
            .take(3)
            .map(|n| preview(&Value::String((*n).to_owned())))
            .collect();
        let more = if names.len() > 3 { ", ..." } else { "" };
        let _ = write!(found, "{ty} ({}{more})", listed.join(", "));
    }
    format!("variants must all be of one type (boolean, string, number or object), found {found}")
}

/// The flag a pointer lies under: the map key for `/flags/<key>/...`, or the `key` of the array
/// element for `/flags/<index>/...`.
fn flag_of(pointer: &str, document: &Value) -> Option<String> {
    let mut parts = pointer.split('/').skip(1);
    if parts.next()? != "flags" {
        return None;
    }
    let segment = unescape(parts.next()?);
    match document.get("flags")? {
        Value::Array(items) => items
            .get(segment.parse::<usize>().ok()?)?
            .get("key")?
            .as_str()
            .map(str::to_owned),
        _ => Some(segment),
    }
}

/// The unescaped reference tokens of a JSON pointer (`""` has none).
fn segments(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(unescape).collect()
}

/// Undoes RFC 6901 escaping of one reference token.
fn unescape(token: &str) -> String {
    if token.contains('~') {
        token.replace("~1", "/").replace("~0", "~")
    } else {
        token.to_owned()
    }
}

fn is_index(segment: &str) -> bool {
    !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit())
}

/// A short name for the value at a pointer, to open a message with.
fn subject(segments: &[String]) -> String {
    match segments {
        [] => "the document".to_owned(),
        [flags, _] if flags == "flags" => "the flag".to_owned(),
        [evaluators, name] if evaluators == "$evaluators" => {
            format!("evaluator {}", preview(&Value::String(name.clone())))
        }
        [.., container, name]
            if (container == "metadata" || container == "variants") && !is_index(name) =>
        {
            let noun = if container == "metadata" {
                "metadata"
            } else {
                "variant"
            };
            format!("{noun} {}", preview(&Value::String(name.clone())))
        }
        _ => {
            // Trailing array indices attach to the nearest named segment: `fractional[1][0]`.
            let named = segments.iter().rposition(|s| !is_index(s));
            let (head, indices) = match named {
                Some(i) => (
                    segments.get(i).map_or("", String::as_str),
                    segments.get(i + 1..).unwrap_or(&[]),
                ),
                None => ("item", segments),
            };
            let mut text = head.to_owned();
            for index in indices {
                let _ = write!(text, "[{index}]");
            }
            text
        }
    }
}

fn expected_types(kind: &TypeKind) -> String {
    match kind {
        TypeKind::Single(ty) => ty.to_string(),
        TypeKind::Multiple(set) => {
            // "string or null" reads better than the set's own order ("null or string").
            let mut names: Vec<String> = set.iter().map(|t| t.to_string()).collect();
            names.sort_by_key(|name| name == "null");
            match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => names.join(""),
            }
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compact JSON of a value, shortened so a message stays one readable line.
fn preview(value: &Value) -> String {
    let mut text = value.to_string();
    truncate(&mut text, 60);
    text
}

fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    if text.contains('\n') {
        *text = text.replace('\n', " ");
    }
}

fn plural(count: u64, noun: &str) -> String {
    match (count, noun) {
        (1, _) => noun.to_owned(),
        (_, "entry") => "entries".to_owned(),
        _ => format!("{noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    /// Flags in the testbed files that break the schema on purpose (they test how evaluation
    /// copes with malformed operator arguments).
    const DELIBERATELY_INVALID: &[&str] = &[
        "semver-invalid-operator-flag",
        "semver-wrong-args-flag",
        "starts-with-wrong-args-flag",
        "ends-with-wrong-args-flag",
    ];

    fn violations(doc: &str) -> Vec<SchemaViolation> {
        let value: Value = serde_json::from_str(doc).unwrap();
        SchemaValidator::shared().validate(&value)
    }

    #[track_caller]
    fn valid(doc: &str) {
        let found = violations(doc);
        assert!(found.is_empty(), "unexpected violations: {found:#?}");
    }

    #[test]
    fn embedded_schemas_compile() {
        let compiled = &SchemaValidator::shared().compiled;
        assert!(compiled.is_ok(), "{:?}", compiled.as_ref().err());
    }

    /// One line per case: document, expected pointer, expected flag, text the message contains.
    #[rustfmt::skip]
    const VIOLATION_CASES: &[(&str, &str, Option<&str>, &str)] = &[
        // missing state
        (r#"{"flags":{"f":{"variants":{"a":true}}}}"#, "/flags/f", Some("f"), r#"missing required property "state""#),
        // bad state
        (r#"{"flags":{"f":{"state":"ON","variants":{"a":true}}}}"#, "/flags/f/state", Some("f"), r#"state must be one of "ENABLED", "DISABLED", found "ON""#),
        // empty and missing variants
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{}}}}"#, "/flags/f/variants", Some("f"), "variants must have at least 1 variant"),
        (r#"{"flags":{"f":{"state":"ENABLED"}}}"#, "/flags/f", Some("f"), r#"missing required property "variants""#),
        // mixed variant types, variant of a type no flag can have
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"on":true,"n":1}}}}"#, "/flags/f/variants", Some("f"), r#"variants must all be of one type (boolean, string, number or object), found number ("n") and boolean ("on")"#),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":[1]}}}}"#, "/flags/f/variants", Some("f"), r#"variant "a" is array"#),
        // defaultVariant number
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"defaultVariant":1}}}"#, "/flags/f/defaultVariant", Some("f"), "defaultVariant must be string or null, found number"),
        // metadata with an object value; flag-set metadata with a numeric flagSetId
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"metadata":{"team":{"a":1}}}}}"#, "/flags/f/metadata/team", Some("f"), r#"metadata "team" must be boolean, number or string, found object"#),
        (r#"{"flags":{},"metadata":{"flagSetId":7}}"#, "/metadata/flagSetId", None, r#"metadata "flagSetId" must be string, found number"#),
        // array form: the flag is named by its key; a missing or empty key
        (r#"{"flags":[{"key":"k","state":"ENABLED","variants":{"a":"x"},"defaultVariant":5}]}"#, "/flags/0/defaultVariant", Some("k"), "found number"),
        (r#"{"flags":[{"state":"ENABLED","variants":{"a":"x"}}]}"#, "/flags/0", None, r#"missing required property "key""#),
        (r#"{"flags":[{"key":"","state":"ENABLED","variants":{"a":"x"}}]}"#, "/flags/0/key", Some(""), "key must not be empty"),
        // sem_ver bad operator and arity
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"sem_ver":[{"var":"v"},"===","1.0.0"]}}}}"#, "/flags/f/targeting/sem_ver/1", Some("f"), r#"sem_ver operator must be one of "=", "!=", "<", "<=", ">", ">=", "^", "~", found "===""#),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"sem_ver":[{"var":"v"},"="]}}}}"#, "/flags/f/targeting/sem_ver", Some("f"), "sem_ver expects at least 3 arguments, found 2"),
        // starts_with / ends_with arity
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"if":[{"starts_with":["abc"]},"a",null]}}}}"#, "/flags/f/targeting/if/0/starts_with", Some("f"), "starts_with expects at least 2 arguments, found 1"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"ends_with":["a","b","c"]}}}}"#, "/flags/f/targeting/ends_with", Some("f"), "ends_with expects at most 2 arguments, found 3"),
        // fractional distributions and bucketing value
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"fractional":[["a",50],["b",25,1]]}}}}"#, "/flags/f/targeting/fractional/1", Some("f"), "a fractional distribution must be [variant] or [variant, weight], found 3 items"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"fractional":[["a",1.5]]}}}}"#, "/flags/f/targeting/fractional/0/1", Some("f"), "fractional[0][1] must be integer, object or null, found number"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"fractional":[7,["a",1]]}}}}"#, "/flags/f/targeting/fractional/0", Some("f"), "fractional[0] must be string, array, object or null, found number"),
        // targeting that is no rule at all
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":"a"}}}"#, "/flags/f/targeting", Some("f"), "targeting must be object, found string"),
        // flag keys needing pointer escapes, empty flag keys
        (r#"{"flags":{"a/b~c":{"state":"X","variants":{"a":"x"}}}}"#, "/flags/a~1b~0c/state", Some("a/b~c"), "state must be one of"),
        (r#"{"flags":{"":{"state":"ENABLED","variants":{"a":"x"}}}}"#, "/flags", None, r#"flags has an invalid property name "": names must not be empty"#),
        // wrong document structure
        (r#"{"flags":{"f":"flag"}}"#, "/flags/f", Some("f"), "the flag must be object, found string"),
        (r#"{"flags":"none"}"#, "/flags", None, "flags must be object, found string"),
        (r#"{"flag":{}}"#, "", None, r#"missing required property "flags""#),
        (r#"[]"#, "", None, "the document must be object, found array"),
        // broken shared evaluators
        (r#"{"flags":{},"$evaluators":{"e":{"in":["x"]}}}"#, "/$evaluators/e/in", None, "in expects at least 2 arguments, found 1"),
        (r#"{"flags":{},"$evaluators":{"e":3}}"#, "/$evaluators/e", None, r#"evaluator "e" must be object, found number"#),
    ];

    #[test]
    fn schema_violation_cases() {
        let mut failures = Vec::new();
        for (doc, pointer, flag, needle) in VIOLATION_CASES {
            let found = violations(doc);
            let ok = match found.as_slice() {
                [v] => {
                    v.pointer == *pointer
                        && v.flag.as_deref() == *flag
                        && v.message.contains(needle)
                }
                _ => false,
            };
            if !ok {
                failures.push(format!(
                    "{doc}\n  expected {pointer:?} {flag:?} {needle:?}\n  found {found:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn accepted_shapes() {
        valid(
            r#"{"flags":[{"key":"k","state":"DISABLED","variants":{"a":{"x":1}},"defaultVariant":null}]}"#,
        );
        valid(r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":true},"targeting":{}}}}"#);
        valid(
            r#"{"$schema":"https://flagd.dev/schema/v0/flags.json","flags":{"f":{"state":"ENABLED","variants":{"on":true,"off":false},"targeting":{"if":[{"$ref":"staff"},"on","off"]}}},"$evaluators":{"staff":{"ends_with":[{"var":"email"},"@acme.com"]}},"metadata":{"flagSetId":"s","version":"1","n":1,"b":true}}"#,
        );
        // Unknown operators fail when the rule is compiled, not here.
        valid(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"targeting":{"invalid":["x"]}}}}"#,
        );
        // Operand forms JSONLogic allows: bare single operands, rules computing operators and weights.
        valid(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"targeting":{"if":[{"!":{"var":"x"}},"a",{"sem_ver":["1.0.0",{"var":"op"},{"var":"v"}]}]}}}}"#,
        );
        valid(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"targeting":{"fractional":[{"var":"k"},[{"var":"c"},{"if":[true,1,0]}],[null],[true,-5]]}}}}"#,
        );
        valid(
            r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"targeting":{"and":[{"<":[1,{"var":"x"},3]},{"in":[{"var":"x"},[1,[2,4]]]},{"missing_some":[1,["a","b"]]},{"var":["a",null]}]}}}}"#,
        );
    }

    #[test]
    fn many_violations_are_capped() {
        let flags: serde_json::Map<String, Value> = (0..150)
            .map(|i| {
                (
                    format!("f{i}"),
                    json!({"state": "NOPE", "variants": {"a": true}}),
                )
            })
            .collect();
        let found = SchemaValidator::shared().validate(&json!({ "flags": flags }));
        assert_eq!(found.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            found[MAX_VIOLATIONS].message,
            "50 more schema violations not shown"
        );
    }

    #[test]
    fn overly_deep_values_are_not_walked() {
        let mut rule = json!(true);
        for _ in 0..(MAX_DEPTH + 10) {
            rule = json!({ "!": [rule] });
        }
        let doc =
            json!({"flags": {"f": {"state": "ENABLED", "variants": {"a": 1}, "targeting": rule}}});
        let found = SchemaValidator::shared().validate(&doc);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("deeper than"));
    }

    #[test]
    fn testbed_flag_files_validate() {
        let root = std::env::var_os("FLAGD_TESTBED")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testbed")
            });
        if !root.is_dir() {
            println!(
                "skipping: no testbed at {} (set FLAGD_TESTBED)",
                root.display()
            );
            return;
        }
        let mut checked = 0;
        for dir in [root.join("flags"), root.join("evaluator/flags")] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let doc: Value =
                    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
                let found = SchemaValidator::shared().validate(&doc);
                for v in &found {
                    let expected = v
                        .flag
                        .as_deref()
                        .is_some_and(|f| DELIBERATELY_INVALID.contains(&f));
                    assert!(expected, "{}: {v:?}", path.display());
                }
                // The schema must notice every deliberately broken flag the file contains.
                for flag in DELIBERATELY_INVALID {
                    if doc["flags"].get(flag).is_some() {
                        assert!(
                            found.iter().any(|v| v.flag.as_deref() == Some(flag)),
                            "{}: {flag} passed",
                            path.display()
                        );
                    }
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 11,
            "only {checked} testbed files found under {}",
            root.display()
        );
    }

    /// A document shaped like the 10,000-flag benchmark workload (six flag templates cycled).
    fn workload(n: usize) -> Value {
        let flags: serde_json::Map<String, Value> = (0..n)
            .map(|i| {
                let flag = match i % 6 {
                    0 => json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
                    1 => json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                        "targeting": {"if": [{"in": [format!("@d{i}.example.com"), {"var": "email"}]}, "on", "off"]}}),
                    2 => json!({"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"}, "defaultVariant": "stable",
                        "targeting": {"fractional": [["stable", 100 - (1 + i % 50)], ["canary", 1 + i % 50]]}}),
                    3 => json!({"state": "ENABLED", "variants": {"new": true, "old": false}, "defaultVariant": "old",
                        "targeting": {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", format!("{}.{}.0", i % 5, i % 10)]}, "new", "old"]}}),
                    4 => json!({"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "c",
                        "targeting": {"if": [{"starts_with": [{"var": "region"}, format!("r{i}-")]}, "a",
                            {"ends_with": [{"var": "email"}, format!(".t{i}")]}, "b", "c"]}}),
                    _ => json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                        "targeting": {"if": [{"$ref": "isStaff"}, "on", "off"]}, "metadata": {"owner": format!("team-{}", i % 17)}}),
                };
                (format!("flag-{i:05}"), flag)
            })
            .collect();
        json!({
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "$evaluators": {"isStaff": {"and": [{"ends_with": [{"var": "email"}, "@acme.com"]}, {">=": [{"var": "age"}, 30]}]}},
            "flags": flags,
        })
    }

    /// Prints how long validation of a 10,000-flag document takes. Run with
    /// `cargo test --release -p flagd-evaluator schema::tests::validation_time -- --ignored --nocapture`;
    /// `FLAGD_WORKLOAD_FILE` may name a generated `flags-10000.json` to time instead.
    #[test]
    #[ignore]
    fn validation_time() {
        let doc = match std::env::var_os("FLAGD_WORKLOAD_FILE") {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
            None => workload(10_000),
        };
        let validator = SchemaValidator::shared();
        let start = std::time::Instant::now();
        assert!(validator.validate(&doc).is_empty());
        println!(
            "first validation (includes schema compilation): {:?}",
            start.elapsed()
        );
        let mut times: Vec<std::time::Duration> = (0..20)
            .map(|_| {
                let start = std::time::Instant::now();
                let found = validator.validate(&doc);
                let elapsed = start.elapsed();
                assert!(found.is_empty());
                elapsed
            })
            .collect();
        times.sort();
        println!(
            "validate, 10k flags: min {:?}, median {:?}, max {:?}",
            times[0], times[10], times[19]
        );
        let mut broken = doc.clone();
        broken["flags"]["flag-09999"]["state"] = json!("BROKEN");
        let start = std::time::Instant::now();
        let found = validator.validate(&broken);
        println!(
            "validate, 10k flags, one violation: {:?} ({found:?})",
            start.elapsed()
        );
    }
}
