//! An evaluation context laid out for lookups.
//!
//! A request's context is built once into a [`Context`]: its top-level entries sit in one small
//! inline array and all their text (keys and string values) in one buffer, so building it is
//! one allocation for a context of up to [`INLINE_ENTRIES`] entries, and a `var` lookup compares
//! a key's length and first sixteen bytes (two machine words), looking at the text only for
//! longer keys. Numbers,
//! booleans and `null` are stored in the entry; nested objects and arrays stay JSON values.
//!
//! A `&serde_json::Value` still works wherever a context is taken ([`ContextRef`]); building a
//! [`Context`] pays when one context is evaluated against several flags, or kept and evaluated
//! many times.
//!
//! ```
//! use flagd_evaluator::Context;
//! use serde_json::json;
//!
//! let ctx = Context::from_json(&json!({"email": "ann@acme.com", "age": 31}));
//! let mut b = Context::builder();
//! b.string("email", "ann@acme.com").number("age", 31.0);
//! assert_eq!(ctx.to_json(), b.build().to_json());
//! ```

use serde_json::{Map, Number, Value};
use smallvec::SmallVec;

/// Entries kept inline in a [`Context`]; a larger context moves them to the heap.
pub const INLINE_ENTRIES: usize = 8;

/// Contexts with more entries than this are sorted by key and searched by bisection.
const SCAN_LIMIT: usize = 16;

/// Largest integer a float64 holds exactly.
const MAX_EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// An evaluation context built for lookups (see the [module documentation](self)).
#[derive(Clone, Default)]
pub struct Context {
    entries: SmallVec<[Entry; INLINE_ENTRIES]>,
    /// The text of every key and string value, one after the other.
    text: String,
    /// Whether `entries` are sorted by key (large contexts), else in insertion order; keys are
    /// unique either way.
    sorted: bool,
}

/// One top-level entry.
#[derive(Clone)]
struct Entry {
    key: KeyRef,
    value: Slot,
}

/// A key: its length and first sixteen bytes inline, its text in the context's buffer.
#[derive(Clone, Copy)]
struct KeyRef {
    probe: Probe,
    start: u32,
}

/// A top-level value.
#[derive(Clone)]
enum Slot {
    Null,
    Bool(bool),
    /// A number whose JSON form is what [`crate::logic`] writes for this float (integers within
    /// ±2^53, fractions).
    Num(f64),
    /// A string in the context's buffer.
    Str {
        start: u32,
        len: u32,
    },
    /// An array, an object, or a number kept exactly as written.
    Json(Box<Value>),
}

/// What a key is compared by: its length and its first sixteen bytes as two words, computed
/// once (at rule compile time for a `var` path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    head: u64,
    tail: u64,
    len: u32,
}

impl Probe {
    /// The probe of `key`.
    #[inline]
    pub(crate) fn of(key: &str) -> Probe {
        let b = key.as_bytes();
        Probe {
            head: head_word(b),
            tail: head_word(b.get(8..).unwrap_or_default()),
            // A key longer than 4 GiB cannot be in a context (the buffer offsets are 32-bit),
            // so saturating never makes a false match.
            len: u32::try_from(key.len()).unwrap_or(u32::MAX),
        }
    }
}

/// The first eight bytes of `b`, zero-padded, as one word.
#[inline]
fn head_word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    let n = b.len().min(8);
    w[..n].copy_from_slice(&b[..n]);
    u64::from_le_bytes(w)
}

/// A context as evaluation reads it: a JSON value (the context is the value when it is an object,
/// else empty) or a built [`Context`].
#[derive(Debug, Clone, Copy)]
pub enum ContextRef<'a> {
    /// A JSON value.
    Json(&'a Value),
    /// A built context.
    Flat(&'a Context),
}

impl<'a> From<&'a Value> for ContextRef<'a> {
    fn from(v: &'a Value) -> Self {
        ContextRef::Json(v)
    }
}

impl<'a> From<&'a Context> for ContextRef<'a> {
    fn from(c: &'a Context) -> Self {
        ContextRef::Flat(c)
    }
}

impl<'a> From<&&'a Value> for ContextRef<'a> {
    fn from(v: &&'a Value) -> Self {
        ContextRef::Json(v)
    }
}

impl<'a> From<&&'a Context> for ContextRef<'a> {
    fn from(c: &&'a Context) -> Self {
        ContextRef::Flat(c)
    }
}

impl<'a> ContextRef<'a> {
    /// Whether the context is an object (a built context always is).
    #[inline]
    pub(crate) fn is_object(self) -> bool {
        match self {
            ContextRef::Json(v) => v.is_object(),
            ContextRef::Flat(_) => true,
        }
    }

    /// The `targetingKey` entry when it is a string.
    #[inline]
    pub(crate) fn targeting_key(self) -> Option<&'a str> {
        const KEY: &str = "targetingKey";
        match self {
            ContextRef::Json(v) => v.get(KEY).and_then(Value::as_str),
            ContextRef::Flat(c) => match c.lookup(Probe::of(KEY), KEY)? {
                Found::Str(s) => Some(s),
                _ => None,
            },
        }
    }
}

/// A value found at the top level of a [`Context`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Found<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Json(&'a Value),
}

/// Builds a [`Context`]; a key given twice keeps its last value.
#[derive(Debug, Default)]
pub struct ContextBuilder {
    ctx: Context,
}

impl ContextBuilder {
    fn push(&mut self, key: &str, value: Slot) -> &mut Self {
        let Some(key) = self.ctx.add_text(key) else {
            return self;
        };
        let bytes = key_bytes(&self.ctx.text, key);
        let entry = Entry {
            key: KeyRef {
                probe: Probe {
                    head: head_word(bytes),
                    tail: head_word(bytes.get(8..).unwrap_or_default()),
                    len: key.1,
                },
                start: key.0,
            },
            value,
        };
        self.ctx.entries.push(entry);
        self
    }

    /// Sets `key` to a string.
    pub fn string(&mut self, key: &str, value: &str) -> &mut Self {
        match self.ctx.add_text(value) {
            Some((start, len)) => self.push(key, Slot::Str { start, len }),
            None => self,
        }
    }

    /// Sets `key` to a number (NaN and infinities, which JSON cannot hold, become `null`).
    pub fn number(&mut self, key: &str, value: f64) -> &mut Self {
        let slot = if !value.is_finite() {
            Slot::Null
        } else if value.fract() != 0.0 || value.abs() <= MAX_EXACT_INT {
            Slot::Num(value)
        } else {
            // Whole and beyond 2^53: kept as the float JSON writes for it.
            Number::from_f64(value).map_or(Slot::Null, |n| Slot::Json(Box::new(Value::Number(n))))
        };
        self.push(key, slot)
    }

    /// Sets `key` to a boolean.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.push(key, Slot::Bool(value))
    }

    /// Sets `key` to `null`.
    pub fn null(&mut self, key: &str) -> &mut Self {
        self.push(key, Slot::Null)
    }

    /// Sets `key` to a JSON value.
    pub fn json(&mut self, key: &str, value: Value) -> &mut Self {
        match value {
            Value::Array(_) | Value::Object(_) => self.push(key, Slot::Json(Box::new(value))),
            other => self.json_ref(key, &other),
        }
    }

    /// Sets `key` to a copy of a JSON value.
    pub fn json_ref(&mut self, key: &str, value: &Value) -> &mut Self {
        match value {
            Value::Null => self.null(key),
            Value::Bool(b) => self.bool(key, *b),
            Value::String(s) => self.string(key, s),
            Value::Number(n) => {
                let slot = match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) if i.unsigned_abs() <= MAX_EXACT_INT as u64 => Slot::Num(i as f64),
                    (None, Some(f)) if n.is_f64() && f.fract() != 0.0 => Slot::Num(f),
                    _ => Slot::Json(Box::new(value.clone())),
                };
                self.push(key, slot)
            }
            Value::Array(_) | Value::Object(_) => {
                self.push(key, Slot::Json(Box::new(value.clone())))
            }
        }
    }

    /// The context.
    pub fn build(self) -> Context {
        let mut ctx = self.ctx;
        if ctx.entries.len() > SCAN_LIMIT {
            // A stable sort keeps equal keys in insertion order; the last of each run wins.
            let text = &ctx.text;
            ctx.entries
                .sort_by(|a, b| key_bytes_of(text, a.key).cmp(key_bytes_of(text, b.key)));
            let mut kept: SmallVec<[Entry; INLINE_ENTRIES]> =
                SmallVec::with_capacity(ctx.entries.len());
            for e in ctx.entries.drain(..) {
                match kept.last_mut() {
                    Some(last) if key_bytes_of(text, last.key) == key_bytes_of(text, e.key) => {
                        *last = e;
                    }
                    _ => kept.push(e),
                }
            }
            ctx.entries = kept;
            ctx.sorted = true;
        } else if ctx.entries.len() > 1 {
            // A later entry replaces an earlier one with the same key, in its place.
            let text = &ctx.text;
            let mut kept: SmallVec<[Entry; INLINE_ENTRIES]> = SmallVec::new();
            for e in ctx.entries.drain(..) {
                let same = kept.iter_mut().find(|k| {
                    k.key.probe == e.key.probe
                        && key_bytes_of(text, k.key) == key_bytes_of(text, e.key)
                });
                match same {
                    Some(k) => k.value = e.value,
                    None => kept.push(e),
                }
            }
            ctx.entries = kept;
        }
        ctx
    }
}

fn key_bytes(text: &str, (start, len): (u32, u32)) -> &[u8] {
    text.as_bytes()
        .get(start as usize..start as usize + len as usize)
        .unwrap_or_default()
}

fn key_bytes_of(text: &str, k: KeyRef) -> &[u8] {
    key_bytes(text, (k.start, k.probe.len))
}

impl Context {
    /// A builder with room for text of about `text` bytes.
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// A builder for a context of about `entries` entries and `text` bytes of keys and strings.
    pub fn builder_with_capacity(entries: usize, text: usize) -> ContextBuilder {
        let mut b = ContextBuilder::default();
        b.ctx.entries.reserve(entries);
        b.ctx.text.reserve(text);
        b
    }

    /// The context of a JSON value: its entries when it is an object, else empty (flagd always
    /// evaluates against an object).
    pub fn from_json(value: &Value) -> Context {
        match value {
            Value::Object(m) => Context::from_map(m),
            _ => Context::default(),
        }
    }

    /// The context of a JSON object.
    pub fn from_map(m: &Map<String, Value>) -> Context {
        let text = m
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        let mut b = Context::builder_with_capacity(m.len(), text);
        for (k, v) in m {
            b.json_ref(k, v);
        }
        b.build()
    }

    /// How many entries the context has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the context has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The context as a JSON object (a key given twice keeps its last value).
    pub fn to_json(&self) -> Value {
        Value::Object(self.to_map())
    }

    /// The context's entries as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for e in &self.entries {
            let key = self.key_str(e.key).to_owned();
            m.insert(key, self.found(&e.value).to_value());
        }
        m
    }

    /// The value of top-level `key`, as JSON.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.lookup(Probe::of(key), key).map(Found::to_value)
    }

    /// Appends `s` to the text buffer; `None` when the buffer would pass 4 GiB.
    fn add_text(&mut self, s: &str) -> Option<(u32, u32)> {
        let start = u32::try_from(self.text.len()).ok()?;
        let len = u32::try_from(s.len()).ok()?;
        start.checked_add(len)?;
        self.text.push_str(s);
        Some((start, len))
    }

    fn key_str(&self, k: KeyRef) -> &str {
        self.text_at(k.start, k.probe.len)
    }

    #[inline]
    fn text_at(&self, start: u32, len: u32) -> &str {
        self.text
            .get(start as usize..start as usize + len as usize)
            .unwrap_or_default()
    }

    #[inline(always)]
    fn found<'a>(&'a self, slot: &'a Slot) -> Found<'a> {
        match slot {
            Slot::Null => Found::Null,
            Slot::Bool(b) => Found::Bool(*b),
            Slot::Num(n) => Found::Num(*n),
            Slot::Str { start, len } => Found::Str(self.text_at(*start, *len)),
            Slot::Json(v) => Found::Json(v),
        }
    }

    /// Whether entry key `k` is `key` (whose probe is `p`).
    #[inline(always)]
    fn matches(&self, k: KeyRef, p: Probe, key: &str) -> bool {
        k.probe == p
            && (p.len <= 16 || key_bytes_of(&self.text, k).get(16..) == key.as_bytes().get(16..))
    }

    /// The value of top-level `key`, whose probe is `p`.
    #[inline(always)]
    pub(crate) fn lookup(&self, p: Probe, key: &str) -> Option<Found<'_>> {
        if self.sorted {
            let i = self
                .entries
                .binary_search_by(|e| key_bytes_of(&self.text, e.key).cmp(key.as_bytes()))
                .ok()?;
            return self.entries.get(i).map(|e| self.found(&e.value));
        }
        for e in &self.entries {
            if self.matches(e.key, p, key) {
                return Some(self.found(&e.value));
            }
        }
        None
    }
}

impl Found<'_> {
    /// The value as JSON.
    pub(crate) fn to_value(self) -> Value {
        match self {
            Found::Null => Value::Null,
            Found::Bool(b) => Value::Bool(b),
            Found::Num(n) => super::value::num_value(n),
            Found::Str(s) => Value::String(s.to_owned()),
            Found::Json(v) => v.clone(),
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|e| (self.key_str(e.key), self.found(&e.value))),
            )
            .finish()
    }
}

impl From<&Value> for Context {
    fn from(v: &Value) -> Self {
        Context::from_json(v)
    }
}

impl From<&Map<String, Value>> for Context {
    fn from(m: &Map<String, Value>) -> Self {
        Context::from_map(m)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::logic::{CompileOptions, Rule};

    /// Evaluates `rule` over `data` as JSON and as a built context; both must agree.
    #[track_caller]
    fn both(rule: Value, data: &Value) -> Value {
        let rule = Rule::compile(&rule, &CompileOptions::default()).unwrap();
        let json = rule.evaluate_with(data, "flag", 7).unwrap().into_owned();
        let built = Context::from_json(data);
        let flat = rule.evaluate_with(&built, "flag", 7).unwrap().into_owned();
        assert_eq!(flat, json, "over {data}");
        flat
    }

    #[test]
    fn lookups_of_every_kind() {
        let data = json!({
            "s": "text", "n": 42, "f": 1.5, "whole_float": 2.0, "big": 18446744073709551615u64,
            "neg": -9007199254740993i64, "t": true, "nil": null, "arr": [1, "a"],
            "obj": {"k": "v"}, "empty": ""
        });
        let ctx = Context::from_json(&data);
        assert_eq!(ctx.len(), 11);
        for (k, v) in data.as_object().unwrap() {
            assert_eq!(ctx.get(k).as_ref(), Some(v), "{k}");
            assert_eq!(both(json!({"var": k}), &data), *v, "{k}");
        }
        assert_eq!(ctx.get("missing"), None);
        assert_eq!(both(json!({"var": "missing"}), &data), Value::Null);
        assert_eq!(
            both(json!({"var": ["missing", "dflt"]}), &data),
            json!("dflt")
        );
        assert_eq!(both(json!({"var": ["nil", "dflt"]}), &data), json!("dflt"));
        assert_eq!(ctx.to_json(), data);
        assert_eq!(
            both(json!({"+": [{"var": "n"}, {"var": "f"}]}), &data),
            json!(43.5)
        );
        assert_eq!(
            both(json!({"==": [{"var": "t"}, true]}), &data),
            json!(true)
        );
        assert_eq!(both(json!({"!": {"var": "empty"}}), &data), json!(true));
    }

    #[test]
    fn nested_paths_and_indexes() {
        let data = json!({"user": {"address": {"city": "Oslo"}, "tags": ["a", "b"]}, "s": "xy"});
        assert_eq!(
            both(json!({"var": "user.address.city"}), &data),
            json!("Oslo")
        );
        assert_eq!(both(json!({"var": "user.tags.1"}), &data), json!("b"));
        assert_eq!(both(json!({"var": "user.tags.9"}), &data), Value::Null);
        // A path that continues past a string or a number finds nothing.
        assert_eq!(both(json!({"var": "s.0"}), &data), Value::Null);
        assert_eq!(
            both(json!({"var": "user.address.city.x"}), &data),
            Value::Null
        );
        // The whole context, with `$flagd` added.
        let whole = both(json!({"var": ""}), &data);
        assert_eq!(whole["$flagd"]["flagKey"], json!("flag"));
        assert_eq!(whole["user"], data["user"]);
        assert_eq!(both(json!({"var": "$flagd.flagKey"}), &data), json!("flag"));
        assert_eq!(
            both(
                json!({"missing": ["user.address.city", "nope", "s"]}),
                &data
            ),
            json!(["nope"])
        );
        assert_eq!(
            both(
                json!({"map": [{"var": "user.tags"}, {"cat": [{"var": ""}, "!"]}]}),
                &data
            ),
            json!(["a!", "b!"])
        );
    }

    #[test]
    fn keys_are_compared_whole() {
        // Same length and same first eight bytes, different tails.
        let data = json!({"targetingKeyA": 1, "targetingKeyB": 2, "targetin": 3, "target": 4,
            "a-key-longer-than-16-bytes-1": 5, "a-key-longer-than-16-bytes-2": 6});
        let ctx = Context::from_json(&data);
        for (k, v) in data.as_object().unwrap() {
            assert_eq!(ctx.get(k).as_ref(), Some(v), "{k}");
        }
        assert_eq!(ctx.get("targetingKeyC"), None);
        assert_eq!(ctx.get("targeti"), None);
        assert_eq!(ctx.get("targetingKey"), None);
        assert_eq!(ctx.get(""), None);
        assert_eq!(ctx.get("a-key-longer-than-16-bytes-3"), None);
    }

    #[test]
    fn unicode_keys_and_values() {
        let data = json!({"ключ": "значение", "日本語のキー": "値", "é": "ü", "emoji🙂": 1});
        let ctx = Context::from_json(&data);
        for (k, v) in data.as_object().unwrap() {
            assert_eq!(ctx.get(k).as_ref(), Some(v), "{k}");
            assert_eq!(both(json!({"var": k}), &data), *v, "{k}");
        }
        assert_eq!(
            both(json!({"starts_with": [{"var": "ключ"}, "зна"]}), &data),
            json!(true)
        );
        assert_eq!(
            both(json!({"in": ["値", {"var": "日本語のキー"}]}), &data),
            json!(true)
        );
        assert_eq!(ctx.get("ключи"), None);
    }

    #[test]
    fn large_contexts_are_sorted_and_searched() {
        let mut m = Map::new();
        for i in 0..500 {
            m.insert(format!("key-{i}"), json!(format!("value-{i}")));
        }
        let data = Value::Object(m);
        let ctx = Context::from_json(&data);
        assert_eq!(ctx.len(), 500);
        for i in [0, 1, 99, 250, 499] {
            let key = format!("key-{i}");
            assert_eq!(ctx.get(&key), Some(json!(format!("value-{i}"))));
            assert_eq!(
                both(json!({"var": key}), &data),
                json!(format!("value-{i}"))
            );
        }
        assert_eq!(ctx.get("key-500"), None);
        assert_eq!(ctx.to_json(), data);
    }

    #[test]
    fn a_key_given_twice_keeps_its_last_value() {
        for extra in [0, 40] {
            let mut b = Context::builder();
            b.string("k", "first").number("n", 1.0);
            for i in 0..extra {
                b.bool(&format!("filler-{i}"), true);
            }
            b.string("k", "second").null("n");
            let ctx = b.build();
            assert_eq!(ctx.get("k"), Some(json!("second")), "{extra}");
            assert_eq!(ctx.get("n"), Some(Value::Null), "{extra}");
            assert_eq!(ctx.to_json()["k"], json!("second"));
            assert_eq!(ctx.len(), 2 + extra);
        }
    }

    #[test]
    fn numbers_keep_their_json_form() {
        let mut b = Context::builder();
        b.number("int", 3.0)
            .number("frac", 0.25)
            .number("huge", 1e300)
            .number("nan", f64::NAN)
            .number("inf", f64::INFINITY)
            .json("obj", json!({"a": [1]}))
            .json("str", json!("s"));
        let ctx = b.build();
        assert_eq!(
            ctx.to_json(),
            json!({"int": 3, "frac": 0.25, "huge": 1e300, "nan": null, "inf": null,
                   "obj": {"a": [1]}, "str": "s"})
        );
    }

    #[test]
    fn literal_searches_of_top_level_strings_agree_with_the_general_path() {
        let data = json!({
            "email": "ann@acme.com", "region": "eu-west-1", "n": 42, "t": true, "nil": null,
            "arr": ["@acme.com"], "obj": {"a": "@acme.com"}, "empty": "", "uni": "ünï@çødé.org",
            "long": format!("{}@acme.com", "x".repeat(300)),
            "nested": {"email": "bob@acme.com"}
        });
        let subjects = [
            "email",
            "region",
            "n",
            "t",
            "nil",
            "arr",
            "obj",
            "empty",
            "uni",
            "long",
            "missing",
            "nested.email",
        ];
        let literals = [
            "@acme.com",
            "eu-",
            ".org",
            "",
            "ø",
            "çødé.org",
            "1",
            "true",
            "@acme.co",
        ];
        for subject in subjects {
            for literal in literals {
                let var = json!({"var": subject});
                for op in ["in", "starts_with", "ends_with"] {
                    let args = if op == "in" {
                        json!([literal, var])
                    } else {
                        json!([var, literal])
                    };
                    // `both` checks the built context against the JSON value; the expected
                    // value comes from the general operator over a computed subject.
                    let got = both(json!({ op: args }), &data);
                    let general = if op == "in" {
                        json!({ op: [literal, {"or": [var]}] })
                    } else {
                        json!({ op: [{"or": [var]}, literal] })
                    };
                    assert_eq!(got, both(general, &data), "{op} {subject} {literal}");
                }
            }
        }
        // A budget too small for the lookup fails the same way on both paths.
        let rule = json!({"starts_with": [{"var": "region"}, "eu-"]});
        let opts = CompileOptions {
            budget: crate::EvalBudget {
                max_operations: 1,
                ..crate::EvalBudget::default()
            },
            ..CompileOptions::default()
        };
        let rule = Rule::compile(&rule, &opts).unwrap();
        let built = Context::from_json(&data);
        assert_eq!(
            rule.evaluate_with(&built, "flag", 7).unwrap_err(),
            rule.evaluate_with(&data, "flag", 7).unwrap_err()
        );
    }

    #[test]
    fn non_object_json_is_an_empty_context() {
        assert!(Context::from_json(&json!([1, 2])).is_empty());
        assert!(Context::from_json(&json!("s")).is_empty());
        assert_eq!(both(json!({"var": "x"}), &json!(5)), Value::Null);
    }
}
