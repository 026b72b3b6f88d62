//! Resolution: from a flag and a context to a variant, value, reason and error code, with
//! flagd's exact quirks.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};

use crate::logic::value::PlainName;
use crate::logic::{BudgetLimit, ContextRef, EvalError, Exceeded, Outcome, Pick};
use crate::metadata::Metadata;
use crate::model::{Flag, FlagSet, State};

/// Why a flag resolved the way it did (flagd's reason strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting; the default variant.
    Static,
    /// Targeting picked a variant.
    TargetingMatch,
    /// Targeting returned null (or no variant could be determined): the default applies.
    Default,
    /// The flag is disabled.
    Disabled,
    /// Evaluation failed; see the error code.
    Error,
}

impl Reason {
    /// flagd's wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// flagd's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// No flag with that key (in the selected set).
    FlagNotFound,
    /// The variant's value is not of the requested type.
    TypeMismatch,
    /// The targeting rule could not be evaluated (unknown operator, bad arguments).
    ParseError,
    /// Targeting returned something that names no variant, or its evaluation exceeded the
    /// evaluation budget (see [`ErrorDetail`]).
    General,
}

impl ErrorCode {
    /// flagd's wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::General => "GENERAL",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an error was, beyond flagd's error code, for the errors flagd-rs adds to flagd's. One
/// byte, so that every evaluation carries it at no cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorDetail {
    /// The targeting rule needed more work or memory than the evaluation budget allows
    /// ([`crate::EvalBudget`]); the error code is [`ErrorCode::General`].
    BudgetExceeded(BudgetLimit),
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorDetail::BudgetExceeded(limit) => {
                write!(f, "evaluation budget exceeded ({limit})")
            }
        }
    }
}

/// The untyped outcome of evaluating one flag. Borrows from the flag: no allocation.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation<'a> {
    /// The flag evaluated.
    pub flag: &'a Flag,
    /// The chosen variant's name (absent for DISABLED and for DEFAULT without a default variant;
    /// present with an error when targeting named an unknown variant is not possible, so absent).
    pub variant: Option<&'a str>,
    /// The chosen variant's value.
    pub value: Option<&'a Value>,
    /// Why.
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error: Option<ErrorCode>,
    /// More about the error, for the errors flagd does not have.
    pub detail: Option<ErrorDetail>,
}

impl<'a> Evaluation<'a> {
    /// The flag's merged metadata.
    pub fn metadata(&self) -> &'a Metadata {
        self.flag.metadata()
    }

    /// The limit evaluation stopped at, with its value, when the targeting rule needed more
    /// than the evaluation budget allows.
    pub fn budget_exceeded(&self) -> Option<Exceeded> {
        self.detail.map(|ErrorDetail::BudgetExceeded(limit)| {
            self.flag
                .targeting()
                .map_or_else(crate::EvalBudget::default, crate::Rule::budget)
                .exceeded(limit)
        })
    }

    /// Whether this is the "no default variant" outcome (reason DEFAULT, nothing chosen), which
    /// flagd's v1 RPC reports as FLAG_NOT_FOUND.
    pub fn is_code_default(&self) -> bool {
        self.reason == Reason::Default && self.variant.is_none()
    }

    /// Applies a requested type: a value of another type turns the result into TYPE_MISMATCH
    /// (the variant name is still reported).
    pub fn typed<T: FlagType<'a>>(self) -> Resolution<'a, T> {
        let mut res = Resolution {
            value: None,
            variant: self.variant,
            reason: self.reason,
            error: self.error,
            detail: self.detail,
            metadata: self.flag.metadata(),
        };
        if let Some(v) = self.value {
            match T::from_value(v) {
                Some(t) => res.value = Some(t),
                None => {
                    res.reason = Reason::Error;
                    res.error = Some(ErrorCode::TypeMismatch);
                }
            }
        }
        res
    }
}

/// A typed outcome, for in-process Rust users.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'a, T> {
    /// The value, when a variant was chosen and had the requested type.
    pub value: Option<T>,
    /// The chosen variant's name.
    pub variant: Option<&'a str>,
    /// Why.
    pub reason: Reason,
    /// Set exactly when `reason` is [`Reason::Error`].
    pub error: Option<ErrorCode>,
    /// More about the error, for the errors flagd does not have.
    pub detail: Option<ErrorDetail>,
    /// The flag's merged metadata (empty for an unknown flag).
    pub metadata: &'a Metadata,
}

/// The value types a flag can be resolved as.
pub trait FlagType<'a>: Sized {
    /// The type's name in messages.
    const NAME: &'static str;
    /// Converts a variant value, or `None` if it is of another type.
    fn from_value(value: &'a Value) -> Option<Self>;
}

impl<'a> FlagType<'a> for bool {
    const NAME: &'static str = "boolean";
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_bool()
    }
}

impl<'a> FlagType<'a> for &'a str {
    const NAME: &'static str = "string";
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_str()
    }
}

impl<'a> FlagType<'a> for i64 {
    const NAME: &'static str = "integer";
    /// flagd reads every number as a float64 and truncates it toward zero (1.9 -> 1).
    fn from_value(value: &'a Value) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            _ => None,
        }
    }
}

impl<'a> FlagType<'a> for f64 {
    const NAME: &'static str = "float";
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_f64()
    }
}

impl<'a> FlagType<'a> for &'a Map<String, Value> {
    const NAME: &'static str = "object";
    fn from_value(value: &'a Value) -> Option<Self> {
        value.as_object()
    }
}

impl Flag {
    /// Evaluates the flag against `context` at `timestamp` (Unix seconds, `$flagd.timestamp`).
    /// The context is a `&serde_json::Value` or a built [`crate::Context`].
    #[inline]
    pub fn evaluate<'a, 'c>(
        &'a self,
        context: impl Into<ContextRef<'c>>,
        timestamp: i64,
    ) -> Evaluation<'a> {
        self.evaluate_with(|| context, timestamp)
    }

    /// [`Flag::evaluate`] with the context produced by `context` only when the flag's targeting
    /// reads it (a disabled or static flag never calls it), for callers whose context costs
    /// something to build.
    pub fn evaluate_with<'a, 'c, C: Into<ContextRef<'c>>>(
        &'a self,
        context: impl FnOnce() -> C,
        timestamp: i64,
    ) -> Evaluation<'a> {
        let mut out = Evaluation {
            flag: self,
            variant: None,
            value: None,
            reason: Reason::Error,
            error: None,
            detail: None,
        };
        if self.state == State::Disabled {
            out.reason = Reason::Disabled;
            return out;
        }
        let Some(rule) = &self.targeting else {
            return self.fall_back(out, Reason::Static);
        };
        let result = match rule.evaluate_outcome(context().into(), &self.key, timestamp) {
            Ok(Outcome::Value(r)) => r,
            Ok(Outcome::Variant(i)) => {
                match self.variants.get(i as usize) {
                    Some((k, v)) => {
                        out.variant = Some(k);
                        out.value = Some(v);
                        out.reason = Reason::TargetingMatch;
                    }
                    None => out.error = Some(ErrorCode::General),
                }
                return out;
            }
            Ok(Outcome::Default) => return self.fall_back(out, Reason::Default),
            Ok(Outcome::NoVariant) => {
                out.error = Some(ErrorCode::General);
                return out;
            }
            Err(EvalError::BudgetExceeded(what)) => {
                out.error = Some(ErrorCode::General);
                out.detail = Some(ErrorDetail::BudgetExceeded(what.limit()));
                return out;
            }
            Err(_) => {
                out.error = Some(ErrorCode::ParseError);
                return out;
            }
        };
        // The usual results (a variant name written in the rule, a boolean) are matched
        // against the variants directly; anything else goes through the full Go rendering.
        let found = match result.plain_name() {
            PlainName::Null => return self.fall_back(out, Reason::Default),
            PlainName::Name(name) => self.variant(name),
            PlainName::Other => match variant_name(&result.into_cow()) {
                None => return self.fall_back(out, Reason::Default),
                Some(name) => self.variant(&name),
            },
        };
        match found {
            Some((k, v)) => {
                out.variant = Some(k);
                out.value = Some(v);
                out.reason = Reason::TargetingMatch;
            }
            None => out.error = Some(ErrorCode::General),
        }
        out
    }

    /// Works out what each constant result of the targeting rule's top-level `if` selects, as
    /// [`Flag::evaluate_with`] would find it by the result's variant name, so that evaluation
    /// skips the name matching for them. Called when the flag is built or its rule replaced.
    pub(crate) fn bind_results(&mut self) {
        let Some(mut rule) = self.targeting.take() else {
            return;
        };
        rule.bind(|v| match variant_name(v) {
            None => Pick::Default,
            Some(name) => match self.variant_index(&name).map(u32::try_from) {
                Some(Ok(i)) => Pick::Variant(i),
                Some(Err(_)) => Pick::Unbound,
                None => Pick::NoVariant,
            },
        });
        self.targeting = Some(rule);
    }

    /// The default variant with `reason`, or DEFAULT with nothing chosen when there is none.
    fn fall_back<'a>(&'a self, mut out: Evaluation<'a>, reason: Reason) -> Evaluation<'a> {
        match self.default_variant() {
            Some((name, value)) => {
                out.variant = Some(name);
                out.value = Some(value);
                out.reason = reason;
            }
            None => out.reason = Reason::Default,
        }
        out
    }
}

impl FlagSet {
    /// Evaluates flag `key`; `None` when there is no such flag.
    pub fn evaluate<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
        timestamp: i64,
    ) -> Option<Evaluation<'a>> {
        self.get(key).map(|f| f.evaluate(context, timestamp))
    }

    /// Resolves flag `key` as type `T` at the current time.
    pub fn resolve<'a, 'c, T: FlagType<'a>>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, T> {
        match self.evaluate(key, context, now_unix_seconds()) {
            Some(e) => e.typed(),
            None => Resolution {
                value: None,
                variant: None,
                reason: Reason::Error,
                error: Some(ErrorCode::FlagNotFound),
                detail: None,
                metadata: Metadata::empty(),
            },
        }
    }

    /// Resolves a boolean flag.
    pub fn resolve_bool<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, bool> {
        self.resolve(key, context)
    }

    /// Resolves a string flag.
    pub fn resolve_string<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, &'a str> {
        self.resolve(key, context)
    }

    /// Resolves an integer flag (numbers are truncated toward zero, as flagd does).
    pub fn resolve_int<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, i64> {
        self.resolve(key, context)
    }

    /// Resolves a float flag.
    pub fn resolve_float<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, f64> {
        self.resolve(key, context)
    }

    /// Resolves an object flag.
    pub fn resolve_object<'a, 'c>(
        &'a self,
        key: &str,
        context: impl Into<ContextRef<'c>>,
    ) -> Resolution<'a, &'a Map<String, Value>> {
        self.resolve(key, context)
    }

    /// Evaluates every flag at one instant, in key order.
    pub fn evaluate_all<'a, 'c: 'a>(
        &'a self,
        context: impl Into<ContextRef<'c>>,
    ) -> impl Iterator<Item = Evaluation<'a>> {
        let now = now_unix_seconds();
        let context = context.into();
        self.flags.iter().map(move |f| f.evaluate(context, now))
    }
}

/// The current time as Unix seconds, for `$flagd.timestamp`.
pub fn now_unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The variant name a targeting result selects, reproducing flagd: the result is encoded as Go's
/// `encoding/json` would (HTML-escaping on), then every `"` is removed. `None` means JSON null.
pub fn variant_name(result: &Value) -> Option<Cow<'_, str>> {
    match result {
        Value::Null => None,
        Value::String(s) => Some(if needs_go_escape(s) {
            let mut out = String::with_capacity(s.len() + 8);
            go_escape_into(s, &mut out);
            Cow::Owned(out.replace('"', ""))
        } else {
            Cow::Borrowed(s.as_str())
        }),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Number(n) => Some(Cow::Owned(go_float(n.as_f64().unwrap_or(0.0)))),
        other => {
            let mut out = String::new();
            go_json_into(other, &mut out);
            Some(Cow::Owned(out.replace('"', "")))
        }
    }
}

/// Whether Go's encoder would change `s` (or remove a quote from it), so that the variant name
/// differs from the string.
#[inline]
pub(crate) fn needs_go_escape(s: &str) -> bool {
    // One pass over the bytes; 0xE2 may start U+2028 or U+2029, which only a second look at
    // such (rare) strings can confirm.
    let mut maybe_separator = false;
    for b in s.bytes() {
        if GO_SPECIAL[usize::from(b)] {
            if b != 0xE2 {
                return true;
            }
            maybe_separator = true;
        }
    }
    maybe_separator && s.contains(['\u{2028}', '\u{2029}'])
}

/// Bytes that may make Go's encoder rewrite a string: quotes, backslashes, HTML-sensitive
/// characters, control characters, and the lead byte of U+2028/U+2029.
static GO_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t[0xE2] = true;
    t
};

fn go_escape_into(s: &str, out: &mut String) {
    use std::fmt::Write;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' | '\u{0}'..='\u{1f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Go's `encoding/json` rendering of any value (keys sorted, floats as Go prints them).
fn go_json_into(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => {
            out.push('"');
            go_escape_into(s, out);
            out.push('"');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                go_json_into(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                go_escape_into(k, out);
                out.push_str("\":");
                go_json_into(x, out);
            }
            out.push('}');
        }
    }
}

/// A float64 as Go's `encoding/json` prints it: shortest round-trip digits, plain notation for
/// 1e-6 <= |f| < 1e21, otherwise exponent notation like `1e+21` / `1e-7`.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    } else if f == 0.0 {
        "0".to_owned()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn variant_names_follow_go_encoding() {
        let cases: &[(Value, Option<&str>)] = &[
            (json!(null), None),
            (json!("on"), Some("on")),
            (json!("null"), Some("null")),
            (json!(true), Some("true")),
            (json!(false), Some("false")),
            (json!(1), Some("1")),
            (json!(1.0), Some("1")),
            (json!(1.5), Some("1.5")),
            (json!(-0.0), Some("0")),
            (json!(1e21), Some("1e+21")),
            (json!(1e20), Some("100000000000000000000")),
            (json!(0.0000001), Some("1e-7")),
            (json!(0.000001), Some("0.000001")),
            (json!("a<b"), Some("a\\u003cb")),
            (json!("say \"hi\""), Some("say \\hi\\")),
            (json!({"a": 1, "b": "x"}), Some("{a:1,b:x}")),
            (json!(["a", 1]), Some("[a,1]")),
        ];
        for (value, expected) in cases {
            assert_eq!(variant_name(value).as_deref(), *expected, "for {value}");
        }
    }

    #[test]
    fn an_exceeded_budget_is_general_with_its_detail() {
        let doc = br#"{"flags": {"f": {"state": "ENABLED", "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [{"some": [{"var": "xs"}, {"==": [{"var": ""}, 9]}]}, "on", "off"]}}}}"#;
        let opts = crate::LoadOptions {
            budget: crate::EvalBudget {
                max_operations: 50,
                ..crate::EvalBudget::default()
            },
            ..crate::LoadOptions::default()
        };
        let flags = crate::load(doc, crate::Format::Json, &opts).unwrap().flags;
        let small = json!({"xs": [1, 9]});
        let e = flags.evaluate("f", &small, 0).unwrap();
        assert_eq!(
            (e.variant, e.reason, e.error),
            (Some("on"), Reason::TargetingMatch, None)
        );
        assert_eq!(e.budget_exceeded(), None);

        let large = json!({"xs": vec![0; 100]});
        let e = flags.evaluate("f", &large, 0).unwrap();
        assert_eq!(
            (e.variant, e.reason, e.error),
            (None, Reason::Error, Some(ErrorCode::General))
        );
        let detail = ErrorDetail::BudgetExceeded(BudgetLimit::Operations);
        assert_eq!(e.detail, Some(detail));
        assert_eq!(e.budget_exceeded(), Some(Exceeded::Operations(50)));
        assert_eq!(
            detail.to_string(),
            "evaluation budget exceeded (operations)"
        );
        // The detail costs no space.
        assert_eq!(std::mem::size_of::<Option<ErrorDetail>>(), 1);
        let typed = flags.resolve_bool("f", &large);
        assert_eq!(
            (typed.error, typed.detail),
            (Some(ErrorCode::General), Some(detail))
        );
        // Other failures carry no detail.
        assert_eq!(flags.resolve_bool("missing", &large).detail, None);
    }

    /// The outcome of evaluating `flag` in a comparable form.
    fn outcome(e: &Evaluation<'_>) -> (Option<String>, Option<Value>, Reason, Option<ErrorCode>) {
        (
            e.variant.map(str::to_owned),
            e.value.cloned(),
            e.reason,
            e.error,
        )
    }

    #[test]
    fn bound_constant_results_agree_with_name_matching() {
        // Variants named as Go renders the results below, and a few results naming none.
        let doc = r#"{"flags": {
            "if": {"state": "ENABLED", "variants": {"on": 1, "off": 2, "true": 3, "false": 4,
                    "1": 5, "1.5": 6, "a\\u003cb": 7, "é": 8, "": 9, "[a,1]": 10},
                "defaultVariant": "off",
                "targeting": {"if": [
                    {"in": ["@acme.com", {"var": "email"}]}, "on",
                    {"starts_with": [{"var": "region"}, "eu-"]}, true,
                    {"ends_with": [{"var": "email"}, ".org"]}, false,
                    {"==": [{"var": "n"}, 1]}, 1,
                    {"==": [{"var": "n"}, 2]}, 1.5,
                    {"==": [{"var": "n"}, 3]}, "a<b",
                    {"==": [{"var": "n"}, 4]}, "é",
                    {"==": [{"var": "n"}, 5]}, "",
                    {"==": [{"var": "n"}, 6]}, ["a", 1],
                    {"==": [{"var": "n"}, 7]}, null,
                    {"==": [{"var": "n"}, 8]}, "nope",
                    {"==": [{"var": "n"}, 9]}, {"var": "pick"},
                    {"==": [{"var": "n"}, 10]}, {"if": [{"var": "t"}, "on", "missing"]},
                    "off"]}},
            "logic": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [
                    {"and": [{"var": "t"}, {"or": [{"var": "n"}, {"var": "email"}]},
                        {"ends_with": [{"var": "email"}, ".org"]}]}, "on",
                    {"and": []}, "on",
                    {"or": []}, "on",
                    {"and": [{"var": "pick"}, {"or": [false, {"nope": 1}]}]}, "on",
                    {"and": [{"var": "region"}, {"var": "n"}]}, "off",
                    {"or": [{"!": {"var": "email"}}, {"and": [{"var": "n"}, 0]}]}, "on",
                    "off"]}},
            "no-else": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "defaultVariant": "off",
                "targeting": {"if": [{"in": ["@acme.com", {"var": "email"}]}, "on"]}},
            "no-default": {"state": "ENABLED", "variants": {"on": true, "off": false},
                "targeting": {"if": [{"var": "t"}, "on", null]}},
            "only-else": {"state": "ENABLED", "variants": {"on": true},
                "defaultVariant": "on", "targeting": {"if": [{"var": "email"}]}},
            "split": {"state": "ENABLED", "variants": {"a": "a", "b": "b", "true": "t"},
                "defaultVariant": "a",
                "targeting": {"fractional": [["a", 10], ["b", 10], ["gone", 10], [null, 10], [true, 10]]}},
            "split-by": {"state": "ENABLED", "variants": {"a": "a", "b": "b"},
                "defaultVariant": "a",
                "targeting": {"fractional": [{"var": "email"}, ["a", 1], ["b", 1]]}}
        }}"#;
        let set = crate::load(
            doc.as_bytes(),
            crate::Format::Json,
            &crate::LoadOptions::default(),
        )
        .unwrap()
        .flags;
        let contexts = [
            json!({"email": "ann@acme.com", "targetingKey": "k1"}),
            json!({"email": "bob@uni.edu.org", "region": "eu-west-1", "targetingKey": "k2"}),
            json!({"email": "cy@x.org", "targetingKey": "ユーザー"}),
            json!({"region": "us-east-1", "targetingKey": ""}),
            json!({"email": 42, "region": ["eu-"], "targetingKey": 7}),
            json!({"t": true, "pick": "on"}),
            json!({"t": false}),
            json!("not an object"),
            json!(null),
            json!({}),
        ];
        let numbered = (1..=10).map(
            |n| json!({"n": n, "t": n % 2 == 0, "pick": "on", "targetingKey": format!("u{n}")}),
        );
        let mut budgets = vec![crate::EvalBudget::default()];
        budgets.extend((1..6).map(|max_operations| crate::EvalBudget {
            max_operations,
            ..crate::EvalBudget::default()
        }));
        for flag in set.flags() {
            let rule = flag.targeting().unwrap();
            assert!(
                rule.is_bound() != (flag.key() == "split-by"),
                "{}",
                flag.key()
            );
            for budget in &budgets {
                let mut bound = (**flag).clone();
                let mut unbound = (**flag).clone();
                if let (Some(b), Some(u)) = (&mut bound.targeting, &mut unbound.targeting) {
                    b.set_budget(*budget);
                    *u = b.unbound();
                }
                for ctx in contexts.iter().cloned().chain(numbered.clone()) {
                    let built = crate::Context::from_json(&ctx);
                    let expected = outcome(&unbound.evaluate(&ctx, 5));
                    assert_eq!(
                        outcome(&bound.evaluate(&ctx, 5)),
                        expected,
                        "{} {ctx}",
                        flag.key()
                    );
                    assert_eq!(
                        outcome(&bound.evaluate(&built, 5)),
                        expected,
                        "{} {ctx}",
                        flag.key()
                    );
                    let a = bound.evaluate(&ctx, 5);
                    let b = unbound.evaluate(&ctx, 5);
                    assert_eq!(a.detail, b.detail);
                }
            }
        }
        // Spot checks of what the bound results select.
        let ctx = json!({"n": 3});
        let e = set.evaluate("if", &ctx, 0).unwrap();
        assert_eq!((e.variant, e.value), (Some("a\\u003cb"), Some(&json!(7))));
        let e = set.evaluate("if", &json!({"n": 7}), 0).unwrap();
        assert_eq!((e.variant, e.reason), (Some("off"), Reason::Default));
        let e = set.evaluate("if", &json!({"n": 8}), 0).unwrap();
        assert_eq!((e.variant, e.error), (None, Some(ErrorCode::General)));
        let e = set.evaluate("if", &json!({"n": 1}), 0).unwrap();
        assert_eq!((e.variant, e.reason), (Some("1"), Reason::TargetingMatch));
        let e = set.evaluate("no-default", &json!({"t": false}), 0).unwrap();
        assert_eq!(
            (e.variant, e.reason, e.error),
            (None, Reason::Default, None)
        );
        let e = set
            .evaluate("no-else", &json!({"email": "x@y.z"}), 0)
            .unwrap();
        assert_eq!((e.variant, e.reason), (Some("off"), Reason::Default));
    }

    #[test]
    fn a_patched_rule_is_bound_again() {
        let doc = br#"{"flags": {"f": {"state": "ENABLED", "variants": {"a": 1, "b": 2},
            "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}}}}"#;
        let set = crate::load(doc, crate::Format::Json, &crate::LoadOptions::default())
            .unwrap()
            .flags;
        let patch: crate::OverridePatch =
            serde_json::from_value(json!({"weights": {"a": 0, "b": 100}})).unwrap();
        let flag = set
            .get("f")
            .unwrap()
            .with_patch(&patch, set.evaluators(), &crate::LoadOptions::default())
            .unwrap();
        assert!(flag.targeting().unwrap().is_bound());
        for i in 0..50 {
            let e = flag.evaluate(&json!({"targetingKey": format!("user-{i}")}), 0);
            assert_eq!((e.variant, e.value), (Some("b"), Some(&json!(2))));
        }
    }

    #[test]
    fn integer_truncates_like_flagd() {
        assert_eq!(i64::from_value(&json!(1.9)), Some(1));
        assert_eq!(i64::from_value(&json!(-1.9)), Some(-1));
        assert_eq!(i64::from_value(&json!("1")), None);
        assert_eq!(f64::from_value(&json!(3)), Some(3.0));
    }
}
