//! Validation of flag documents against the flag-file JSON schemas in `schemas/json/`.
//!
//! The schemas are embedded at build time and compiled once into a shared validator. A
//! hand-written check of the same constraints decides whether a document is valid, since the
//! general validator is too slow for documents with thousands of flags; only the parts of an
//! invalid document that fail it go through the general validator, whose errors are rewritten
//! into short, one-line messages that name the flag and the JSON pointer of the offending value.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::{Map, Value};

use crate::logic::input::RuleInput;

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
    /// The compiled schemas, or why they failed to compile. Compilation of the embedded schemas
    /// is covered by the tests, so the error branch exists only to keep `validate` total.
    compiled: Result<Compiled, String>,
}

/// The general validators used to explain a document the fast check rejected.
struct Compiled {
    /// The whole document (`flags.json`).
    document: Validator,
    /// One entry of the `flags` object.
    flag: Validator,
    /// One entry of the `flags` array, which must also carry its `key`.
    keyed_flag: Validator,
    /// Argument counts of the operators, read from `targeting.json` for the messages.
    arities: Arities,
}

/// Operator name to the (minimum, maximum) number of arguments the targeting schema allows.
type Arities = HashMap<String, (Option<u64>, Option<u64>)>;

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
        let compiled = match &self.compiled {
            Ok(compiled) => compiled,
            Err(reason) => {
                return vec![SchemaViolation {
                    pointer: String::new(),
                    flag: None,
                    message: format!("the flag-file schema could not be compiled: {reason}"),
                }];
            }
        };
        // The hand-written check accepts exactly what the schema accepts and costs a fraction
        // of the general validator, so a valid document never reaches the latter.
        if fast::document_ok(document) {
            return Vec::new();
        }
        let mut report = Report::new(document, &compiled.arities);
        let Some(root) = document.as_object() else {
            report.check(&compiled.document, document, "");
            return report.finish(0);
        };
        // Everything except the flags goes through the document schema in one piece. Flags with
        // an empty key stay in, as the document schema is what rejects such keys.
        let flags = root.get("flags");
        let mut shell: Map<String, Value> = root
            .iter()
            .filter(|(name, _)| *name != "flags")
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        match flags {
            Some(Value::Object(map)) => {
                let unnamed = map.iter().filter(|(key, _)| key.is_empty());
                let unnamed = unnamed.map(|(key, flag)| (key.clone(), flag.clone()));
                shell.insert("flags".to_owned(), Value::Object(unnamed.collect()));
            }
            Some(Value::Array(_)) => {
                shell.insert("flags".to_owned(), Value::Array(Vec::new()));
            }
            Some(other) => {
                shell.insert("flags".to_owned(), other.clone());
            }
            None => {}
        }
        report.check(&compiled.document, &Value::Object(shell), "");
        // Then each flag the fast check rejects, alone, so that the cost follows the number of
        // broken flags rather than the size of the document.
        let mut unexplained = 0usize;
        let mut explain_flag = |validator: &Validator, flag: &Value, pointer: String| {
            if report.is_full() {
                unexplained += 1;
            } else {
                report.check(validator, flag, &pointer);
            }
        };
        match flags {
            Some(Value::Object(map)) => {
                for (key, flag) in map {
                    if !key.is_empty() && !fast::flag_ok(flag, false) {
                        explain_flag(&compiled.flag, flag, format!("/flags/{}", escape(key)));
                    }
                }
            }
            Some(Value::Array(items)) => {
                for (index, flag) in items.iter().enumerate() {
                    if !fast::flag_ok(flag, true) {
                        explain_flag(&compiled.keyed_flag, flag, format!("/flags/{index}"));
                    }
                }
            }
            _ => {}
        }
        report.finish(unexplained)
    }
}

/// Whether `rule` is a targeting rule the schema accepts: an object whose known operators have
/// arguments of the right shape and number.
pub(crate) fn targeting_ok<I: RuleInput>(rule: &I) -> bool {
    fast::targeting_ok(rule)
}

/// Whether a flag's variant values (after repeated names are merged), given by their kinds,
/// are what the schema accepts: at least one, all booleans, all strings, all numbers or all
/// objects.
pub(crate) fn variant_kinds_ok(kinds: impl Iterator<Item = ValueKind>) -> bool {
    fast::variant_kinds_ok(kinds)
}

/// What a variant's value is, as far as the schema's checks of variants look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

impl ValueKind {
    /// The kind of `value`.
    pub(crate) fn of(value: &Value) -> Self {
        match value {
            Value::Null => ValueKind::Null,
            Value::Bool(_) => ValueKind::Bool,
            Value::Number(_) => ValueKind::Number,
            Value::String(_) => ValueKind::String,
            Value::Array(_) => ValueKind::Array,
            Value::Object(_) => ValueKind::Object,
        }
    }
}

/// Whether a metadata value is one the schema accepts (a string, number or boolean).
pub(crate) fn metadata_value_ok(value: &Value) -> bool {
    fast::metadata_value_ok(value)
}

/// Whether a document's top-level `metadata` object is what the schema accepts.
pub(crate) fn set_metadata_ok(metadata: &Map<String, Value>) -> bool {
    fast::set_metadata_ok(metadata)
}

/// Collects the violations of one document: deduplicated, capped, each with its flag.
struct Report<'d> {
    document: &'d Value,
    arities: &'d Arities,
    violations: Vec<SchemaViolation>,
}

impl<'d> Report<'d> {
    fn new(document: &'d Value, arities: &'d Arities) -> Self {
        Report {
            document,
            arities,
            violations: Vec::new(),
        }
    }

    fn is_full(&self) -> bool {
        self.violations.len() >= MAX_VIOLATIONS
    }

    /// Validates `value`, found at `base` inside the document, and records what is wrong.
    fn check(&mut self, validator: &Validator, value: &Value, base: &str) {
        let mut found = Vec::new();
        if exceeds_depth(value, MAX_DEPTH) {
            let what = subject(&segments(base));
            let message =
                format!("{what} nests deeper than {MAX_DEPTH} levels and was not checked");
            found.push((base.to_owned(), message));
        } else {
            for error in validator.iter_errors(value) {
                explain(&error, base, self.arities, &mut found);
            }
        }
        for (pointer, message) in found {
            let duplicate = self
                .violations
                .iter()
                .any(|v| v.pointer == pointer && v.message == message);
            if !duplicate {
                let flag = flag_of(&pointer, self.document);
                self.violations.push(SchemaViolation {
                    pointer,
                    flag,
                    message,
                });
            }
        }
    }

    /// The violations, cut to [`MAX_VIOLATIONS`] plus one line saying what was left out;
    /// `unexplained` counts the broken flags that were not examined once the report was full.
    fn finish(mut self, unexplained: usize) -> Vec<SchemaViolation> {
        let dropped = self.violations.len().saturating_sub(MAX_VIOLATIONS);
        self.violations.truncate(MAX_VIOLATIONS);
        let summary = match (dropped, unexplained) {
            (0, 0) => None,
            (dropped, 0) => Some(format!("{dropped} more schema violations not shown")),
            (0, flags) => Some(format!(
                "schema violations in {flags} more {} not shown",
                plural(flags as u64, "flag")
            )),
            (dropped, flags) => Some(format!(
                "{dropped} more schema violations, and those in {flags} more {}, not shown",
                plural(flags as u64, "flag")
            )),
        };
        if let Some(message) = summary {
            self.violations.push(SchemaViolation {
                pointer: String::new(),
                flag: None,
                message,
            });
        }
        self.violations
    }
}

/// Compiles the embedded schemas. Both files are registered under their `$id`s, so the relative
/// `./targeting.json` references of `flags.json` resolve without any retrieval.
fn compile() -> Result<Compiled, String> {
    let flags: Value =
        serde_json::from_str(FLAGS_SCHEMA).map_err(|e| format!("flags.json is not JSON: {e}"))?;
    let targeting: Value = serde_json::from_str(TARGETING_SCHEMA)
        .map_err(|e| format!("targeting.json is not JSON: {e}"))?;
    let arities = operator_arities(&targeting);
    let registry = jsonschema::Registry::new()
        .add(FLAGS_SCHEMA_URI, flags.clone())
        .and_then(|builder| builder.add(TARGETING_SCHEMA_URI, targeting))
        .and_then(|builder| builder.prepare())
        .map_err(|e| format!("cannot register the schemas: {e}"))?;
    let document = jsonschema::options()
        .with_draft(Draft::Draft7)
        .with_base_uri(FLAGS_SCHEMA_URI)
        .with_registry(&registry)
        .build(&flags)
        .map_err(|e| format!("flags.json: {e}"))?;
    // The single-flag validators refer into the registered document; they get no base URI of
    // their own, which would shadow the registered `flags.json`.
    let definition = |name: &str| {
        let reference = format!("{FLAGS_SCHEMA_URI}#/definitions/{name}");
        jsonschema::options()
            .with_draft(Draft::Draft7)
            .with_registry(&registry)
            .build(&serde_json::json!({ "$ref": reference }))
            .map_err(|e| format!("flags.json#/definitions/{name}: {e}"))
    };
    Ok(Compiled {
        document,
        flag: definition("flag")?,
        keyed_flag: definition("keyedFlag")?,
        arities,
    })
}

/// Reads the `minItems`/`maxItems` of every operator in `targeting.json`, following a `$ref`
/// to a shared argument definition, so messages can state the expected count in full.
fn operator_arities(targeting: &Value) -> Arities {
    let Some(operators) = targeting
        .pointer("/definitions/expression/properties")
        .and_then(Value::as_object)
    else {
        return Arities::new();
    };
    operators
        .iter()
        .filter_map(|(op, schema)| {
            let schema = match schema.get("$ref").and_then(Value::as_str) {
                Some(reference) => {
                    let name = reference.strip_prefix("#/definitions/")?;
                    targeting.get("definitions")?.get(name)?
                }
                None => schema,
            };
            let min = schema.get("minItems").and_then(Value::as_u64);
            let max = schema.get("maxItems").and_then(Value::as_u64);
            (min.is_some() || max.is_some()).then(|| (op.clone(), (min, max)))
        })
        .collect()
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
/// `base` is where the validated value sits in the document.
fn explain(
    error: &ValidationError<'_>,
    base: &str,
    arities: &Arities,
    out: &mut Vec<(String, String)>,
) {
    let relative = error.instance_path().as_str();
    let pointer = format!("{base}{relative}");
    let segments = segments(&pointer);
    match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            if segments.last().is_some_and(|s| s == "variants") {
                out.push((pointer, variants_message(error.instance())));
            } else if let Some(branch) = best_branch(context, relative) {
                for inner in branch {
                    explain(inner, base, arities, out);
                }
            } else {
                let message = format!("{} matches none of the allowed forms", subject(&segments));
                out.push((pointer, message));
            }
        }
        kind => {
            let message = describe(kind, error, &segments, arities);
            out.push((pointer, message));
        }
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
    arities: &Arities,
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
            arity_message(segments, instance, ("at least", *limit), arities)
        }
        ValidationErrorKind::MaxItems { limit } => {
            arity_message(segments, instance, ("at most", *limit), arities)
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
/// any other array. `violated` is the bound that failed, e.g. `("at least", 2)`.
fn arity_message(
    segments: &[String],
    instance: &Value,
    violated: (&str, u64),
    arities: &Arities,
) -> String {
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
    let (bound, limit) = violated;
    match last {
        Some(op) if in_rule && !is_index(op) => {
            let expected = match arities.get(op) {
                Some((Some(min), Some(max))) if min == max => {
                    format!("exactly {min} {}", plural(*min, "argument"))
                }
                Some((Some(min), Some(max))) => format!("{min} to {max} arguments"),
                _ => format!("{bound} {limit} {}", plural(limit, "argument")),
            };
            format!("{op} expects {expected}, found {found}")
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

/// RFC 6901 escaping of one reference token.
fn escape(token: &str) -> String {
    if token.contains(['~', '/']) {
        token.replace('~', "~0").replace('/', "~1")
    } else {
        token.to_owned()
    }
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

/// Compact JSON of a value, shortened so a message stays one readable line. Serialisation stops
/// once the limit is reached, so a huge offending value costs no more than a small one.
fn preview(value: &Value) -> String {
    const LIMIT: usize = 60;
    let mut out = Bounded {
        bytes: Vec::new(),
        limit: LIMIT + 1,
    };
    // The writer refuses bytes past its limit, which ends serialisation with an error.
    let complete = serde_json::to_writer(&mut out, value).is_ok();
    let text = match std::str::from_utf8(&out.bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(out.bytes.get(..e.valid_up_to()).unwrap_or_default())
            .unwrap_or_default(),
    };
    let mut text = text.to_owned();
    if !complete || text.len() > LIMIT {
        truncate(&mut text, LIMIT);
    }
    text
}

/// An `io::Write` that keeps at most `limit` bytes and then fails.
struct Bounded {
    bytes: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = self.limit.saturating_sub(self.bytes.len());
        if room == 0 {
            return Err(std::io::Error::other("preview limit reached"));
        }
        let taken = room.min(data.len());
        self.bytes.extend(data.iter().take(taken));
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary), marking the cut with `...`,
/// and folds it onto one line.
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

/// A direct implementation of `flags.json` and `targeting.json` for documents that satisfy them.
///
/// The general validator needs about 3 µs per flag, which puts a 10,000-flag document far over
/// the load budget. These functions check the same constraints with plain pattern matching and
/// answer `true` only for a document the schemas accept; for anything else (including documents
/// nested deeper than [`MAX_DEPTH`]) they answer `false` and the general validator takes over to
/// find and explain the violations. The tests compare both on the testbed files, on every
/// violation case and on generated documents, so a change to the schema files that is not
/// mirrored here fails the build's tests.
mod fast {
    use serde_json::{Map, Value};

    use super::{MAX_DEPTH, ValueKind};
    use crate::logic::input::{RuleInput, Shape};

    /// The operators `sem_ver` accepts, as listed in `targeting.json`.
    const SEM_VER_OPERATORS: &[&str] = &["=", "!=", "<", "<=", ">", ">=", "^", "~"];

    pub(super) fn document_ok(document: &Value) -> bool {
        let Some(root) = document.as_object() else {
            return false;
        };
        let flags_ok = match root.get("flags") {
            Some(Value::Object(flags)) => flags
                .iter()
                .all(|(key, flag)| !key.is_empty() && flag_ok(flag, false)),
            Some(Value::Array(flags)) => flags.iter().all(|flag| flag_ok(flag, true)),
            _ => false,
        };
        flags_ok
            && root.get("$schema").is_none_or(Value::is_string)
            && root.get("$evaluators").is_none_or(|evaluators| {
                evaluators.as_object().is_some_and(|evaluators| {
                    evaluators
                        .iter()
                        .all(|(name, rule)| !name.is_empty() && targeting_ok(rule))
                })
            })
            && root
                .get("metadata")
                .is_none_or(|metadata| metadata.as_object().is_some_and(set_metadata_ok))
    }

    pub(super) fn set_metadata_ok(metadata: &Map<String, Value>) -> bool {
        metadata.values().all(metadata_value_ok)
            && ["flagSetId", "version"]
                .iter()
                .all(|key| metadata.get(*key).is_none_or(Value::is_string))
    }

    /// One pass over the flag's members: cheaper than a lookup per known property.
    pub(super) fn flag_ok(flag: &Value, keyed: bool) -> bool {
        let Some(flag) = flag.as_object() else {
            return false;
        };
        let (mut has_state, mut has_variants, mut has_key) = (false, false, !keyed);
        for (name, value) in flag {
            let ok = match name.as_str() {
                "state" => {
                    has_state = true;
                    matches!(value.as_str(), Some("ENABLED" | "DISABLED"))
                }
                "variants" => {
                    has_variants = true;
                    value
                        .as_object()
                        .is_some_and(|variants| variant_values_ok(variants.values()))
                }
                "defaultVariant" => value.is_string() || value.is_null(),
                "targeting" => targeting_ok(value),
                "metadata" => metadata_ok(value),
                "key" if keyed => {
                    has_key = true;
                    value.as_str().is_some_and(|key| !key.is_empty())
                }
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        has_state && has_variants && has_key
    }

    /// At least one variant, and all values booleans, all strings, all numbers or all objects.
    pub(super) fn variant_values_ok<'a>(values: impl Iterator<Item = &'a Value>) -> bool {
        variant_kinds_ok(values.map(ValueKind::of))
    }

    /// [`variant_values_ok`] from the values' kinds.
    pub(super) fn variant_kinds_ok(mut kinds: impl Iterator<Item = ValueKind>) -> bool {
        let Some(first) = kinds.next() else {
            return false;
        };
        if matches!(first, ValueKind::Null | ValueKind::Array) {
            return false;
        }
        kinds.all(|kind| kind == first)
    }

    fn metadata_ok(metadata: &Value) -> bool {
        metadata
            .as_object()
            .is_some_and(|m| m.values().all(metadata_value_ok))
    }

    pub(super) fn metadata_value_ok(value: &Value) -> bool {
        value.is_string() || value.is_number() || value.is_boolean()
    }

    pub(super) fn targeting_ok<I: RuleInput>(rule: &I) -> bool {
        rule.is_object() && expression_ok(rule, 0)
    }

    /// Any operand: arrays are checked element by element, objects as rules (known operators
    /// only), scalars always pass.
    fn expression_ok<I: RuleInput>(value: &I, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match value.shape() {
            Shape::Arr(items) => items.iter().all(|item| expression_ok(item, depth + 1)),
            Shape::Obj(_) => value
                .members()
                .all(|(op, args)| operator_ok(op, args, depth + 1)),
            _ => true,
        }
    }

    /// The elements of `value` when it is an array.
    fn array<I: RuleInput>(value: &I) -> Option<&[I]> {
        match value.shape() {
            Shape::Arr(items) => Some(items),
            _ => None,
        }
    }

    fn operator_ok<I: RuleInput>(op: &str, args: &I, depth: usize) -> bool {
        let operands = |min: usize, max: usize| {
            array(args).is_some_and(|a| (min..=max).contains(&a.len()))
                && expression_ok(args, depth)
        };
        // A bare operand stands for a one-element list; an explicit list is counted.
        let bare_or_operands = |min: usize, max: usize| {
            array(args).is_none_or(|a| (min..=max).contains(&a.len())) && expression_ok(args, depth)
        };
        match op {
            "var" => {
                !matches!(args.shape(), Shape::Bool(_))
                    && array(args).is_none_or(|a| a.len() <= 2)
                    && expression_ok(args, depth)
            }
            "missing" | "and" | "or" | "+" | "*" | "min" | "max" | "cat" | "merge" => {
                expression_ok(args, depth)
            }
            "if" | "?:" => operands(0, usize::MAX),
            "missing_some" | "==" | "!=" | "===" | "!==" | "/" | "%" | "in" | "map" | "filter"
            | "all" | "none" | "some" | "starts_with" | "ends_with" => operands(2, 2),
            "<" | "<=" | ">" | ">=" | "substr" | "reduce" => operands(2, 3),
            "!" | "!!" | "abs" => bare_or_operands(1, 1),
            "-" => bare_or_operands(1, 2),
            "$ref" => matches!(args.shape(), Shape::Str(name) if !name.is_empty()),
            "sem_ver" => match array(args) {
                Some([left, operator, right]) => {
                    let operator_ok = match operator.shape() {
                        Shape::Str(s) => SEM_VER_OPERATORS.contains(&s),
                        Shape::Obj(_) => expression_ok(operator, depth + 1),
                        _ => false,
                    };
                    operator_ok && expression_ok(left, depth + 1) && expression_ok(right, depth + 1)
                }
                _ => false,
            },
            "fractional" => match array(args) {
                Some([first, rest @ ..]) => {
                    let first_ok = match first.shape() {
                        Shape::Arr(_) => distribution_ok(first, depth + 1),
                        Shape::Str(_) | Shape::Null => true,
                        Shape::Obj(_) => expression_ok(first, depth + 1),
                        Shape::Bool(_) | Shape::Num(_) => false,
                    };
                    first_ok && rest.iter().all(|d| distribution_ok(d, depth + 1))
                }
                _ => false,
            },
            // Operators the schema does not list are not checked.
            _ => true,
        }
    }

    /// `[variant]` or `[variant, weight]`; the weight an integer, null or a rule.
    fn distribution_ok<I: RuleInput>(value: &I, depth: usize) -> bool {
        let Some(items) = array(value) else {
            return false;
        };
        let variant_ok = |v: &I| array(v).is_none() && expression_ok(v, depth + 1);
        let weight_ok = |w: &I| match w.shape() {
            Shape::Null => true,
            Shape::Num(n) => is_integer(n),
            Shape::Obj(_) => expression_ok(w, depth + 1),
            _ => false,
        };
        match items {
            [variant] => variant_ok(variant),
            [variant, weight] => variant_ok(variant) && weight_ok(weight),
            _ => false,
        }
    }

    /// JSON Schema's `integer` (drafts 6 and later): any number without a fractional part.
    fn is_integer(n: &serde_json::Number) -> bool {
        n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"sem_ver":[{"var":"v"},"="]}}}}"#, "/flags/f/targeting/sem_ver", Some("f"), "sem_ver expects exactly 3 arguments, found 2"),
        // starts_with / ends_with arity
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"if":[{"starts_with":["abc"]},"a",null]}}}}"#, "/flags/f/targeting/if/0/starts_with", Some("f"), "starts_with expects exactly 2 arguments, found 1"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"ends_with":["a","b","c"]}}}}"#, "/flags/f/targeting/ends_with", Some("f"), "ends_with expects exactly 2 arguments, found 3"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"<":[{"var":"n"}]}}}}"#, "/flags/f/targeting/<", Some("f"), "< expects 2 to 3 arguments, found 1"),
        (r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":"x"},"targeting":{"var":["a",1,2]}}}}"#, "/flags/f/targeting/var", Some("f"), "var expects at most 2 arguments, found 3"),
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
        (r#"{"flags":{},"$evaluators":{"e":{"in":["x"]}}}"#, "/$evaluators/e/in", None, "in expects exactly 2 arguments, found 1"),
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
        let broken = |n: usize| -> Value {
            let flags: serde_json::Map<String, Value> = (0..n)
                .map(|i| {
                    (
                        format!("f{i:03}"),
                        json!({"state": "NOPE", "variants": {"a": true, "b": 1}}),
                    )
                })
                .collect();
            json!({ "flags": flags })
        };
        // Two violations per flag: the report fills up within the 50th flag.
        let found = SchemaValidator::shared().validate(&broken(150));
        assert_eq!(found.len(), MAX_VIOLATIONS + 1);
        assert_eq!(found[0].flag.as_deref(), Some("f000"));
        assert_eq!(
            found[MAX_VIOLATIONS].message,
            "schema violations in 100 more flags not shown"
        );
        // Three per flag (no state, no variants, a numeric key): the 34th flag overflows.
        let found = SchemaValidator::shared()
            .validate(&json!({"flags": (0..120).map(|i| json!({"key": i})).collect::<Vec<_>>()}));
        assert_eq!(found.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            found[MAX_VIOLATIONS].message,
            "2 more schema violations, and those in 86 more flags, not shown"
        );
    }

    #[test]
    fn messages_stay_short_for_huge_values() {
        let state = "é".repeat(100_000);
        let doc = json!({"flags": {"f": {"state": state, "variants": {"a": 1}}}});
        let found = SchemaValidator::shared().validate(&doc);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.len() < 200, "{}", found[0].message);
        let message = &found[0].message;
        assert!(
            message.contains("found \"ééé") && message.ends_with("é..."),
            "{message}"
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
        let Some(documents) = crate::testbed::flag_documents() else {
            return;
        };
        let mut checked = 0;
        for (path, doc) in &documents {
            let found = SchemaValidator::shared().validate(doc);
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
        assert!(checked >= 11, "only {checked} testbed flag files found");
    }

    /// The fast path and the compiled schema agree on the testbed files and the fixed cases.
    #[test]
    fn fast_path_agrees_on_fixed_documents() {
        let validator = &SchemaValidator::shared()
            .compiled
            .as_ref()
            .unwrap()
            .document;
        for (doc, ..) in VIOLATION_CASES {
            let doc: Value = serde_json::from_str(doc).unwrap();
            assert!(!fast::document_ok(&doc), "fast path accepts {doc}");
            assert!(!validator.is_valid(&doc), "schema accepts {doc}");
        }
        let doc = workload(60);
        assert!(fast::document_ok(&doc) && validator.is_valid(&doc));
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-3i64..200).prop_map(Value::from),
            prop_oneof![Just(1.5), Just(2.0), Just(-0.0)].prop_map(Value::from),
            prop::sample::select(vec![
                "ENABLED", "DISABLED", "", "x", "on", "=", "===", "^", "~"
            ])
            .prop_map(Value::from),
        ]
    }

    /// Every operator `targeting.json` lists (besides `$ref`, `sem_ver` and `fractional`, which
    /// get their own generators) with the argument counts it allows, plus one it does not list.
    #[rustfmt::skip]
    const ARITIES: &[(&str, usize, usize)] = &[
        ("var", 1, 2), ("missing", 0, 3), ("missing_some", 2, 2), ("if", 0, 5), ("?:", 2, 3),
        ("==", 2, 2), ("!=", 2, 2), ("===", 2, 2), ("!==", 2, 2), ("<", 2, 3), ("<=", 2, 3), (">", 2, 3),
        (">=", 2, 3), ("!", 1, 1), ("!!", 1, 1), ("and", 1, 3), ("or", 1, 3), ("+", 0, 3), ("*", 1, 3),
        ("-", 1, 2), ("/", 2, 2), ("%", 2, 2), ("abs", 1, 1), ("min", 1, 3), ("max", 1, 3), ("in", 2, 2),
        ("cat", 0, 3), ("substr", 2, 3), ("merge", 0, 3), ("map", 2, 2), ("filter", 2, 2),
        ("reduce", 2, 3), ("all", 2, 2), ("none", 2, 2), ("some", 2, 2), ("starts_with", 2, 2),
        ("ends_with", 2, 2), ("custom_op", 0, 3),
    ];

    /// The generators cover every operator of the targeting schema.
    #[test]
    fn generators_cover_every_schema_operator() {
        let schema: Value = serde_json::from_str(TARGETING_SCHEMA).unwrap();
        let listed = schema["definitions"]["expression"]["properties"]
            .as_object()
            .unwrap();
        for op in listed.keys() {
            let covered = ["$ref", "sem_ver", "fractional"].contains(&op.as_str())
                || ARITIES.iter().any(|(name, ..)| name == op);
            assert!(covered, "operator {op} is missing from ARITIES");
        }
    }

    /// Values drawn from a JSONLogic-like grammar: mostly well-formed rules over the operators
    /// the schema knows (and one it does not), with wrong argument counts, wrong operand types,
    /// bad `sem_ver` operators and bad `fractional` distributions mixed in.
    fn rule() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(4, 40, 4, |inner| {
            let operands = prop::collection::vec(inner.clone(), 0..6);
            let distribution = (
                prop_oneof![4 => Just(json!("a")), 1 => inner.clone()],
                prop_oneof![3 => (-5i64..60).prop_map(Value::from), 1 => Just(json!(1.5)), 1 => inner.clone()],
                 0u8..10,
            )
                .prop_map(|(variant, weight, shape)| match shape {
                    0 => json!([variant, weight, 1]),
                    1 => json!([]),
                    2 => json!([variant]),
                    3 => variant,
                    _ => json!([variant, weight]),
                });
            prop_oneof![
                2 => prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                6 => (prop::sample::select(ARITIES), operands.clone(), 0u8..10).prop_map(|((op, min, max), args, pick)| {
                    // Mostly a count the operator accepts, sometimes one just outside that range or any
                    // count, sometimes a bare operand.
                    let len = match pick {
                        0 => max.saturating_add(1).min(6),
                        1 => min.saturating_sub(1),
                        2 => args.len(),
                        3 => return json!({ op: args.first().cloned().unwrap_or(Value::Null) }),
                        _ => min + usize::from(pick) % (max.min(5) - min + 1),
                    };
                    json!({ op: args.into_iter().cycle().take(len).collect::<Vec<_>>() })
                }),
                2 => (inner.clone(), prop::sample::select(vec!["=", "!=", "^", "~", ">=", "===", "", "v"]), inner.clone(), 0u8..8)
                    .prop_map(|(left, operator, right, shape)| match shape {
                        0 => json!({"sem_ver": [left, operator]}),
                        1 => json!({"sem_ver": [left, right, right]}),
                        2 => json!({"sem_ver": [left, {"var": "op"}, right]}),
                        _ => json!({"sem_ver": [left, operator, right]}),
                    }),
                2 => (prop::option::of(prop_oneof![inner.clone(), Just(json!({"var": "k"}))]), prop::collection::vec(distribution, 0..3))
                    .prop_map(|(first, mut rest)| {
                        if let Some(first) = first {
                            rest.insert(0, first);
                        }
                        json!({ "fractional": rest })
                    }),
                1 => Just(json!({"$ref": "e"})),
                1 => prop::sample::select(vec![json!({"$ref": ""}), json!({"$ref": 1}), json!({"var": true})]),
                1 => prop::collection::vec(inner, 0..3).prop_map(|items| {
                    Value::Object(items.into_iter().enumerate().map(|(i, v)| (format!("k{i}"), v)).collect())
                }),
            ]
        })
    }

    fn small_map(values: impl Strategy<Value = Value>) -> impl Strategy<Value = Value> {
        prop::collection::btree_map(
            prop::sample::select(vec!["", "a", "b", "flagSetId", "version"]),
            values,
            0..3,
        )
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    }

    /// Variants: mostly all of one type, sometimes mixed, empty or not an object.
    fn variants() -> impl Strategy<Value = Value> {
        let one_type = prop::sample::select(vec![
            json!(true),
            json!("s"),
            json!(3),
            json!(0.5),
            json!({"a": 1}),
        ]);
        prop_oneof![
            6 => (one_type, 1usize..4).prop_map(|(value, n)| {
                Value::Object((0..n).map(|i| (format!("v{i}"), value.clone())).collect())
            }),
            2 => small_map(prop_oneof![leaf(), Just(json!({"a": 1})), Just(json!([1]))]),
            1 => leaf(),
        ]
    }

    fn flag() -> impl Strategy<Value = Value> {
        let fields = (
            prop_oneof![8 => prop::sample::select(vec!["ENABLED", "DISABLED"]).prop_map(|s| Some(json!(s))), 2 => prop::option::of(leaf())],
            prop_oneof![9 => variants().prop_map(Some), 1 => Just(None)],
            prop_oneof![2 => Just(None), 2 => Just(Some(json!("v0"))), 1 => prop::option::of(leaf())],
            prop_oneof![2 => Just(None), 6 => rule().prop_map(|r| Some(if r.is_object() { r } else { json!({"if": [r, "v0", null]}) })), 1 => prop::option::of(rule())],
            prop_oneof![3 => Just(None), 2 => small_map(leaf()).prop_map(Some), 1 => prop::option::of(rule())],
            prop_oneof![3 => Just(None), 2 => Just(Some(json!("k"))), 1 => prop::option::of(leaf())],
        );
        prop_oneof![
            1 => leaf(),
            19 => fields.prop_map(|(state, variants, default, targeting, metadata, key)| {
                let mut flag = serde_json::Map::new();
                for (name, value) in [("state", state), ("variants", variants), ("defaultVariant", default), ("targeting", targeting), ("metadata", metadata), ("key", key)] {
                    if let Some(value) = value {
                        flag.insert(name.to_owned(), value);
                    }
                }
                Value::Object(flag)
            }),
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        (
            prop_oneof![
                4 => small_map(flag()),
                2 => prop::collection::vec(flag(), 0..3).prop_map(Value::from),
                1 => leaf(),
            ],
            prop::option::of(prop_oneof![small_map(rule()), leaf()]),
            prop::option::of(prop_oneof![small_map(leaf()), leaf()]),
            prop::option::of(leaf()),
        )
            .prop_map(|(flags, evaluators, metadata, schema)| {
                let mut doc = serde_json::Map::new();
                doc.insert("flags".to_owned(), flags);
                for (name, value) in [
                    ("$evaluators", evaluators),
                    ("metadata", metadata),
                    ("$schema", schema),
                ] {
                    if let Some(value) = value {
                        doc.insert(name.to_owned(), value);
                    }
                }
                Value::Object(doc)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The fast path accepts exactly the documents the compiled schemas accept.
        #[test]
        fn fast_path_agrees_with_schema(doc in document()) {
            let validator = &SchemaValidator::shared().compiled.as_ref().unwrap().document;
            prop_assert_eq!(fast::document_ok(&doc), validator.is_valid(&doc), "{}", doc);
        }

        /// Flags taken alone (the rule grammar reaches every operator check) agree as well.
        #[test]
        fn fast_path_agrees_on_single_flags(flag in flag()) {
            let doc = json!({"flags": {"f": flag}});
            let validator = &SchemaValidator::shared().compiled.as_ref().unwrap().document;
            prop_assert_eq!(fast::document_ok(&doc), validator.is_valid(&doc), "{}", doc);
            if !fast::document_ok(&doc) {
                prop_assert!(!SchemaValidator::shared().validate(&doc).is_empty());
            }
        }
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
        let doc = match std::env::var_os("FLAGD_WORKLOAD_FILE").filter(|path| !path.is_empty()) {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap(),
            None => workload(10_000),
        };
        let start = std::time::Instant::now();
        let validator = SchemaValidator::shared();
        println!("schema compilation: {:?}", start.elapsed());
        let time = |label: &str, doc: &Value, violations: usize| {
            let mut times: Vec<std::time::Duration> = (0..21)
                .map(|_| {
                    let start = std::time::Instant::now();
                    let found = validator.validate(doc);
                    let elapsed = start.elapsed();
                    assert_eq!(found.len(), violations, "{found:?}");
                    elapsed
                })
                .collect();
            times.sort();
            println!(
                "{label}: min {:?}, median {:?}, max {:?}",
                times[0], times[10], times[20]
            );
        };
        time("validate, 10k flags", &doc, 0);
        let mut broken = doc.clone();
        let last = broken["flags"]
            .as_object()
            .and_then(|f| f.keys().next_back().cloned())
            .unwrap();
        broken["flags"][&last]["state"] = json!("BROKEN");
        time("validate, 10k flags, one broken", &broken, 1);
    }
}
