//! One-line conformance cases for flagd's evaluation semantics, as written down in the shared
//! evaluation facts: loading, resolution quirks, metadata, `fractional` (both hash generations),
//! `sem_ver`, `starts_with`/`ends_with` and every JSONLogic operator flagd supports.
//!
//! Each case is one call. Results are compared as text so a failure reads as
//! "expected X, got Y" with the rule and context beside it.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::panic::Location;

use flagd_evaluator::ops::murmur3::murmur3_32;
use flagd_evaluator::{
    CompileOptions, EvalContext, FlagSet, Format, HashGeneration, LoadError, LoadOptions, Reason,
    Rule, Severity, load,
};
use flagd_rs_tests::testbed::json_eq;
use serde_json::{Value, json};

const V2: HashGeneration = HashGeneration::V2;
const V3: HashGeneration = HashGeneration::V3;

/// The `$flagd.timestamp` every rule-level case sees.
const NOW: i64 = 1_700_000_000;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

thread_local! {
    static FAILURES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Collects the failing cases of one test so that all of them are reported, not only the first.
/// Create one at the top of each test; it fails the test when dropped if any case failed.
struct Cases;

impl Cases {
    fn start() -> Cases {
        FAILURES.with(|f| f.borrow_mut().clear());
        Cases
    }
}

impl Drop for Cases {
    fn drop(&mut self) {
        let failures = FAILURES.with(|f| std::mem::take(&mut *f.borrow_mut()));
        if !failures.is_empty() && !std::thread::panicking() {
            panic!(
                "{} failing case(s):\n\n{}",
                failures.len(),
                failures.join("\n\n")
            );
        }
    }
}

/// Records a failing case at the caller's line.
#[track_caller]
fn fail(message: String) {
    let at = Location::caller();
    FAILURES.with(|f| {
        f.borrow_mut()
            .push(format!("{}:{}: {message}", at.file(), at.line()))
    });
}

/// Compares a case's outcome with its expectation.
#[track_caller]
fn check(got: &str, expected: &str, what: impl std::fmt::Display) {
    if got != expected {
        fail(format!(
            "{what}\n    expected: {expected}\n    got:      {got}"
        ));
    }
}

fn parse(what: &str, text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("bad {what} JSON in the case: {e}: {text}"))
}

/// Evaluates a JSONLogic rule against a context (flag key `flag`, timestamp [`NOW`]). `expected`
/// is the JSON result, or `PARSE_ERROR` for an evaluation error.
#[track_caller]
fn logic(rule: &str, ctx: &str, expected: &str) {
    let rule_value = parse("rule", rule);
    let data = parse("context", ctx);
    let got = match Rule::compile(&rule_value, &CompileOptions::default()) {
        Err(e) => format!("compile error: {e}"),
        Ok(compiled) => {
            let ctx = EvalContext {
                data: &data,
                flag_key: "flag",
                timestamp: NOW,
            };
            match compiled.evaluate(&ctx) {
                Err(_) => "PARSE_ERROR".to_owned(),
                Ok(v) => {
                    if expected != "PARSE_ERROR" && json_eq(&v, &parse("expected", expected)) {
                        return;
                    }
                    v.to_string()
                }
            }
        }
    };
    check(
        &got,
        expected,
        format_args!("rule {rule} with context {ctx}"),
    );
}

/// Loads a document (JSON) with the given hash generation.
fn load_doc(doc: &Value, hash: HashGeneration) -> Result<FlagSet, LoadError> {
    let bytes = serde_json::to_vec(doc).unwrap();
    load(
        &bytes,
        Format::Json,
        &LoadOptions {
            hash,
            ..LoadOptions::default()
        },
    )
    .map(|l| l.flags)
}

/// Wraps one flag definition into a document under key `key`, enabling it unless it says
/// otherwise.
fn single_flag_doc(key: &str, def: &str) -> Value {
    let mut flag = parse("flag", def);
    if let Value::Object(m) = &mut flag {
        m.entry("state").or_insert_with(|| json!("ENABLED"));
    }
    json!({ "flags": { key: flag } })
}

/// `REASON [ERROR_CODE] [variant]` of an untyped evaluation, or `FLAG_NOT_FOUND`.
fn describe(flags: &FlagSet, key: &str, ctx: &Value) -> String {
    let Some(eval) = flags.evaluate(key, ctx, NOW) else {
        return "FLAG_NOT_FOUND".into();
    };
    let mut out = eval.reason.as_str().to_owned();
    if let Some(code) = eval.error {
        let _ = write!(out, " {}", code.as_str());
    }
    if let Some(variant) = eval.variant {
        let _ = write!(out, " {variant}");
    }
    out
}

/// Evaluates flag `f` defined by `def` (a flag object) against `ctx`; see [`describe`].
#[track_caller]
fn flag(def: &str, ctx: &str, expected: &str) {
    let got = match load_doc(&single_flag_doc("f", def), V3) {
        Ok(flags) => describe(&flags, "f", &parse("context", ctx)),
        Err(e) => format!("load error: {e}"),
    };
    check(
        &got,
        expected,
        format_args!("flag {def} with context {ctx}"),
    );
}

/// Evaluates flag `key` of a whole document against `ctx`; see [`describe`].
#[track_caller]
fn doc(document: &str, key: &str, ctx: &str, expected: &str) {
    let got = match load_doc(&parse("document", document), V3) {
        Ok(flags) => describe(&flags, key, &parse("context", ctx)),
        Err(e) => format!("load error: {e}"),
    };
    check(&got, expected, format_args!("flag {key} of {document}"));
}

/// The requested type of a typed resolution.
#[derive(Clone, Copy)]
enum Ty {
    Bool,
    Str,
    Int,
    Float,
    Obj,
}

/// Resolves flag `f` (static, empty context) as type `ty`: `REASON [CODE] [variant] [value]`.
#[track_caller]
fn typed(def: &str, ty: Ty, expected: &str) {
    let flags = match load_doc(&single_flag_doc("f", def), V3) {
        Ok(flags) => flags,
        Err(e) => return fail(format!("flag {def} did not load: {e}")),
    };
    let ctx = json!({});
    let Some(eval) = flags.evaluate("f", &ctx, NOW) else {
        return fail(format!("flag {def} was not found"));
    };
    fn render<T>(r: flagd_evaluator::Resolution<'_, T>, show: impl Fn(T) -> String) -> String {
        let mut out = r.reason.as_str().to_owned();
        if let Some(code) = r.error {
            let _ = write!(out, " {}", code.as_str());
        }
        if let Some(variant) = r.variant {
            let _ = write!(out, " {variant}");
        }
        if let Some(value) = r.value {
            let _ = write!(out, " {}", show(value));
        }
        out
    }
    let got = match ty {
        Ty::Bool => render(eval.typed::<bool>(), |v| v.to_string()),
        Ty::Str => render(eval.typed::<&str>(), |v| format!("{v:?}")),
        Ty::Int => render(eval.typed::<i64>(), |v| v.to_string()),
        Ty::Float => render(eval.typed::<f64>(), |v| format!("{v:?}")),
        Ty::Obj => render(eval.typed::<&serde_json::Map<String, Value>>(), |v| {
            Value::Object(v.clone()).to_string()
        }),
    };
    check(&got, expected, format_args!("flag {def}"));
}

/// Builds flag `key` whose targeting is `{"fractional": args}`, with a variant for every name
/// the arguments can produce and a default variant `_default`, and evaluates it.
/// The result is the chosen variant, `DEFAULT` when the operator returned null, or
/// `ERROR <code>`.
fn fractional_outcome(hash: HashGeneration, key: &str, args: &Value, ctx: &Value) -> String {
    let mut variants = serde_json::Map::new();
    variants.insert("_default".into(), json!("_default"));
    // Every string and boolean in the arguments may end up as the chosen variant (nested rules
    // can compute a name), so each becomes a variant named after itself.
    fn names(v: &Value, out: &mut serde_json::Map<String, Value>) {
        match v {
            Value::String(s) => {
                out.insert(s.clone(), Value::String(s.clone()));
            }
            Value::Bool(b) => {
                out.insert(b.to_string(), Value::String(b.to_string()));
            }
            Value::Array(a) => a.iter().for_each(|x| names(x, out)),
            Value::Object(m) => m.values().for_each(|x| names(x, out)),
            Value::Null | Value::Number(_) => {}
        }
    }
    names(args, &mut variants);
    let document = json!({ "flags": { key: {
        "state": "ENABLED",
        "variants": variants,
        "defaultVariant": "_default",
        "targeting": { "fractional": args },
    }}});
    let flags = match load_doc(&document, hash) {
        Ok(f) => f,
        Err(e) => return format!("load error: {e}"),
    };
    let Some(eval) = flags.evaluate(key, ctx, NOW) else {
        return "FLAG_NOT_FOUND".into();
    };
    match (eval.reason, eval.error, eval.variant) {
        (Reason::TargetingMatch, None, Some(v)) => v.to_owned(),
        (Reason::Default, None, Some("_default")) => "DEFAULT".into(),
        (reason, Some(code), _) => format!("{} {}", reason.as_str(), code.as_str()),
        (reason, None, variant) => format!("{} {variant:?}", reason.as_str()),
    }
}

/// `fractional` with the arguments `args` (a JSON array) for flag `key` and context `ctx`.
#[track_caller]
fn frac(hash: HashGeneration, key: &str, args: &str, ctx: &str, expected: &str) {
    let got = fractional_outcome(hash, key, &parse("args", args), &parse("context", ctx));
    check(
        &got,
        expected,
        format_args!("{hash:?} fractional {args} for flag {key} with context {ctx}"),
    );
}

/// `fractional` bucketing on the literal string `value` with `weights` (distribution entries).
#[track_caller]
fn frac_str(hash: HashGeneration, value: &str, weights: &str, expected: &str) {
    let args = format!("[{}, {weights}]", json!(value));
    frac(hash, "flag", &args, "{}", expected);
}

/// The shorthand form: bucketing on flag key + targeting key.
#[track_caller]
fn frac_tk(hash: HashGeneration, key: &str, targeting_key: &str, weights: &str, expected: &str) {
    let ctx = json!({ "targetingKey": targeting_key }).to_string();
    frac(hash, key, &format!("[{weights}]"), &ctx, expected);
}

/// The testbed's `fractional-basic-flag`: 25 buckets of weight 4 on `{"var":"hashing_input"}`.
#[track_caller]
fn bucket25(hash: HashGeneration, input: Value, expected: &str) {
    let mut args = vec![json!({"var": "hashing_input"})];
    args.extend((1..=25).map(|i| json!([format!("bucket{i}"), 4])));
    let ctx = json!({ "hashing_input": input });
    let got = fractional_outcome(hash, "fractional-basic-flag", &Value::Array(args), &ctx);
    check(
        &got,
        expected,
        format_args!("{hash:?} 25-bucket fractional on {input}"),
    );
}

/// The testbed's four-suit split, bucketing on `seed` (a rule) with `user.name` = `name`.
#[track_caller]
fn suits(hash: HashGeneration, key: &str, seed: &str, name: &str, expected: &str) {
    let args = format!(r#"[{seed},["clubs",25],["diamonds",25],["hearts",25],["spades",25]]"#);
    let ctx = json!({ "user": { "name": name } }).to_string();
    frac(hash, key, &args, &ctx, expected);
}

#[track_caller]
fn murmur(input: &str, seed: u32, expected: u32) {
    let got = murmur3_32(input.as_bytes(), seed).to_string();
    check(
        &got,
        &expected.to_string(),
        format_args!("murmur3_32({input:?}, seed {seed})"),
    );
}

/// The document is rejected, with an error whose text contains `needle`.
#[track_caller]
fn rejects(document: &str, needle: &str) {
    match load(document.as_bytes(), Format::Json, &LoadOptions::default()) {
        Ok(_) => fail(format!("document should be rejected: {document}")),
        Err(e) if !e.to_string().contains(needle) => {
            fail(format!(
                "rejection of {document}\n    {e}\n    does not mention {needle:?}"
            ));
        }
        Err(_) => {}
    }
}

/// The document loads with exactly `warnings` schema warnings (`None`: any number, at least
/// one); strict mode rejects it exactly when it warned.
#[track_caller]
fn loads(document: &str, warnings: Option<usize>) {
    let loaded = match load(document.as_bytes(), Format::Json, &LoadOptions::default()) {
        Ok(l) => l,
        Err(e) => return fail(format!("document should load: {e}\n    {document}")),
    };
    let n = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    let warned_as_expected = match warnings {
        Some(w) => n == w,
        None => n > 0,
    };
    if !warned_as_expected {
        let all: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
        fail(format!(
            "{document}\n    expected {warnings:?} warning(s), got {all:?}"
        ));
    }
    let strict = LoadOptions {
        strict: true,
        ..LoadOptions::default()
    };
    let strict_ok = load(document.as_bytes(), Format::Json, &strict).is_ok();
    if strict_ok != (n == 0) {
        fail(format!(
            "{document}\n    strict mode must reject exactly the documents that warn"
        ));
    }
}

/// The document loads, whatever it warns about.
#[track_caller]
fn loads_any(document: &str) {
    if let Err(e) = load(document.as_bytes(), Format::Json, &LoadOptions::default()) {
        fail(format!("document should load: {e}\n    {document}"));
    }
}

/// Flag `key`'s merged metadata and flag-set id.
#[track_caller]
fn meta(document: &str, key: &str, expected: &str, set: Option<&str>) {
    let flags = match load_doc(&parse("document", document), V3) {
        Ok(flags) => flags,
        Err(e) => return fail(format!("document did not load: {e}\n    {document}")),
    };
    let Some(f) = flags.get(key) else {
        return fail(format!("no flag {key} in {document}"));
    };
    let got = Value::Object(f.metadata().to_map());
    if !json_eq(&got, &parse("expected", expected)) {
        check(
            &got.to_string(),
            expected,
            format_args!("metadata of {key}"),
        );
    }
    check(
        &format!("{:?}", f.flag_set_id()),
        &format!("{set:?}"),
        format_args!("flag set of {key}"),
    );
}

const RBGY: &str = r#"["red",25],["blue",25],["green",25],["yellow",25]"#;
const HALVES: &str = r#"["lower",50],["upper",50]"#;
const FIRST_SECOND: &str = r#"["first",50],["second",50]"#;
const BY_KEY_AND_NAME: &str = r#"{"cat":[{"var":"$flagd.flagKey"},{"var":"user.name"}]}"#;
const SHARED_SEED: &str = r#"{"cat":["shared-seed",{"var":"user.name"}]}"#;
const HEADS_TAILS: &str = r#"["heads"],["tails",1]"#;

// ---------------------------------------------------------------------------------------------
// §1 Loading
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn load_rejections_and_warnings() {
    let _cases = Cases::start();
    rejects(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"off"}}}"#, "isn't a valid variant");
    rejects(r#"{"flags":{"a":{"state":"ENABLED","variants":{},"defaultVariant":"on"}}}"#, "isn't a valid variant");
    rejects(r#"{"$evaluators":{"e":{}},"flags":{}}"#, "empty");
    rejects(r#"{"$evaluators":{"e":[]},"flags":{}}"#, "empty");
    rejects(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}"#, "invalid JSON");
    rejects(r#"{"flags":"nope"}"#, "flags");
    rejects(r#"not json"#, "invalid JSON");
    loads(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}"#, Some(0));
    loads(r#"{"flags":[{"key":"a","state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}]}"#, Some(0));
    loads(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true,"n":1},"defaultVariant":"on"}}}"#, None);
    loads(r#"{"flags":{"a":{"state":"SOMETIMES","variants":{"on":true},"defaultVariant":"on"}}}"#, None);
    loads_any(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":""}}}"#);
    loads_any(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":null}}}"#);
    loads_any(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":{"nope":[1]}}}}"#);
    loads_any(r#"{"flags":{"a":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":{"if":[{"$ref":"missing"},"on",null]}}}}"#);
    loads(r#"{"$schema":"https://flagd.dev/schema/v0/flags.json","flags":{}}"#, Some(0));
}

// ---------------------------------------------------------------------------------------------
// §2 Resolution quirks
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn resolution_quirks() {
    let _cases = Cases::start();
    const ON_OFF: &str = r#""variants":{"on":true,"off":false},"defaultVariant":"off""#;
    // Static flags: no, null or empty targeting.
    flag(&format!("{{{ON_OFF}}}"), "{}", "STATIC off");
    flag(&format!(r#"{{{ON_OFF},"targeting":null}}"#), "{}", "STATIC off");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{}}}}"#), "{}", "STATIC off");
    flag(r#"{"variants":{"false":1,"true":2},"defaultVariant":"false","targeting":{}}"#, "{}", "STATIC false");
    // Targeting results name variants.
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"if":[true,"on","off"]}}}}"#), "{}", "TARGETING_MATCH on");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"if":[false,"on","off"]}}}}"#), "{}", "TARGETING_MATCH off");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"if":[true,null,"on"]}}}}"#), "{}", "DEFAULT off");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"var":"missing"}}}}"#), "{}", "DEFAULT off");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"if":[true,"three","on"]}}}}"#), "{}", "ERROR GENERAL");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"invalid":["this is not valid targeting"]}}}}"#), "{}", "ERROR PARSE_ERROR");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"var":"o"}}}}"#), r#"{"o":{"a":1}}"#, "ERROR GENERAL");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"var":"o"}}}}"#), r#"{"o":["on"]}"#, "ERROR GENERAL");
    flag(&format!(r#"{{{ON_OFF},"targeting":{{"var":"s"}}}}"#), r#"{"s":""}"#, "ERROR GENERAL");
    // Boolean and number results select variants by their JSON text.
    flag(r#"{"variants":{"false":1,"true":2},"defaultVariant":"false","targeting":{"if":[true,true,false]}}"#, "{}", "TARGETING_MATCH true");
    flag(r#"{"variants":{"false":1,"true":2},"defaultVariant":"true","targeting":{"==":[1,2]}}"#, "{}", "TARGETING_MATCH false");
    flag(r#"{"variants":{"1":"one","2":"two"},"defaultVariant":"2","targeting":{"var":"n"}}"#, r#"{"n":1}"#, "TARGETING_MATCH 1");
    flag(r#"{"variants":{"1":"one","2":"two"},"defaultVariant":"2","targeting":{"var":"n"}}"#, r#"{"n":1.0}"#, "TARGETING_MATCH 1");
    flag(r#"{"variants":{"1.5":"x","2":"two"},"defaultVariant":"2","targeting":{"var":"n"}}"#, r#"{"n":1.5}"#, "TARGETING_MATCH 1.5");
    flag(r#"{"variants":{"1e+21":"x","2":"two"},"defaultVariant":"2","targeting":{"var":"n"}}"#, r#"{"n":1e21}"#, "TARGETING_MATCH 1e+21");
    flag(r#"{"variants":{"3":"x","2":"two"},"defaultVariant":"2","targeting":{"+":[1,2]}}"#, "{}", "TARGETING_MATCH 3");
    // Encoded-then-unquoted names: objects, HTML escapes, quotes, and the string "null".
    flag(r#"{"variants":{"{a:1}":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"o"}}"#, r#"{"o":{"a":1}}"#, "TARGETING_MATCH {a:1}");
    flag(r#"{"variants":{"a<b":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"s"}}"#, r#"{"s":"a<b"}"#, "ERROR GENERAL");
    flag(r#"{"variants":{"a\\u003cb":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"s"}}"#, r#"{"s":"a<b"}"#, "TARGETING_MATCH a\\u003cb");
    flag(r#"{"variants":{"say \\hi\\":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"s"}}"#, r#"{"s":"say \"hi\""}"#, "TARGETING_MATCH say \\hi\\");
    flag(r#"{"variants":{"null":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"s"}}"#, r#"{"s":"null"}"#, "TARGETING_MATCH null");
    flag(r#"{"variants":{"null":"x","d":"y"},"defaultVariant":"d","targeting":{"var":"s"}}"#, "{}", "DEFAULT d");
    // Disabled flags and flags without a default variant.
    flag(&format!(r#"{{"state":"DISABLED",{ON_OFF}}}"#), "{}", "DISABLED");
    flag(&format!(r#"{{"state":"DISABLED",{ON_OFF},"targeting":{{"invalid":[1]}}}}"#), "{}", "DISABLED");
    flag(r#"{"variants":{"on":true,"off":false}}"#, "{}", "DEFAULT");
    flag(r#"{"variants":{"on":true,"off":false},"defaultVariant":null}"#, "{}", "DEFAULT");
    flag(r#"{"variants":{"on":true,"off":false},"defaultVariant":""}"#, "{}", "DEFAULT");
    flag(r#"{"variants":{"on":true,"off":false},"targeting":{"if":[{"==":[{"var":"e"},"x"]},"on",null]}}"#, r#"{"e":"x"}"#, "TARGETING_MATCH on");
    flag(r#"{"variants":{"on":true,"off":false},"targeting":{"if":[{"==":[{"var":"e"},"x"]},"on",null]}}"#, r#"{"e":"y"}"#, "DEFAULT");
    flag(r#"{"variants":{"on":true,"off":false},"targeting":{"if":[{"==":[{"var":"e"},"x"]},"on"]}}"#, "{}", "DEFAULT");
    // Context enrichment: `$flagd.flagKey` is the evaluated key and cannot be spoofed.
    flag(r#"{"variants":{"f":1,"x":2},"defaultVariant":"x","targeting":{"var":"$flagd.flagKey"}}"#, "{}", "TARGETING_MATCH f");
    flag(r#"{"variants":{"f":1,"x":2},"defaultVariant":"x","targeting":{"var":"$flagd.flagKey"}}"#, r#"{"$flagd":{"flagKey":"x"}}"#, "TARGETING_MATCH f");
    flag(r#"{"variants":{"past":-1,"future":1},"defaultVariant":"future","targeting":{"if":[{">":[{"var":"$flagd.timestamp"},{"var":"t"}]},"past","future"]}}"#, r#"{"t":1}"#, "TARGETING_MATCH past");
    flag(r#"{"variants":{"past":-1,"future":1},"defaultVariant":"past","targeting":{"if":[{">":[{"var":"$flagd.timestamp"},{"var":"t"}]},"past","future"]}}"#, r#"{"t":4133980802}"#, "TARGETING_MATCH future");
    // `targetingKey` is an ordinary property.
    flag(r#"{"variants":{"hit":1,"miss":2},"defaultVariant":"miss","targeting":{"if":[{"==":[{"var":"targetingKey"},"k"]},"hit",null]}}"#, r#"{"targetingKey":"k"}"#, "TARGETING_MATCH hit");
    // Shared evaluators.
    const REFS: &str = r#"{"$evaluators":{"is_ballmer":{"==":["ballmer@macrosoft.com",{"var":["email"]}]}},"flags":{
        "ok":{"state":"ENABLED","variants":{"hi":"hi","bye":"bye"},"defaultVariant":"bye","targeting":{"if":[{"$ref":"is_ballmer"},"hi","bye"]}},
        "spaced":{"state":"ENABLED","variants":{"hi":"hi","bye":"bye"},"defaultVariant":"bye","targeting":{"if":[{ "$ref" : "is_ballmer" },"hi","bye"]}},
        "dangling":{"state":"ENABLED","variants":{"hi":"hi","bye":"bye"},"defaultVariant":"bye","targeting":{"if":[{"$ref":"nope"},"hi","bye"]}}}}"#;
    doc(REFS, "ok", r#"{"email":"ballmer@macrosoft.com"}"#, "TARGETING_MATCH hi");
    doc(REFS, "ok", r#"{"email":"someone@else.com"}"#, "TARGETING_MATCH bye");
    doc(REFS, "spaced", r#"{"email":"ballmer@macrosoft.com"}"#, "TARGETING_MATCH hi");
    doc(REFS, "dangling", r#"{"email":"ballmer@macrosoft.com"}"#, "ERROR PARSE_ERROR");
    doc(REFS, "absent", "{}", "FLAG_NOT_FOUND");
    // Array form; a repeated key keeps the later definition.
    doc(r#"{"flags":[{"key":"a","state":"ENABLED","variants":{"x":1,"y":2},"defaultVariant":"x"},{"key":"a","state":"ENABLED","variants":{"x":1,"y":2},"defaultVariant":"y"}]}"#, "a", "{}", "STATIC y");
}

#[test]
#[rustfmt::skip]
fn typed_resolution() {
    let _cases = Cases::start();
    typed(r#"{"variants":{"on":true,"off":false},"defaultVariant":"on"}"#, Ty::Bool, "STATIC on true");
    typed(r#"{"variants":{"on":true,"off":false},"defaultVariant":"on"}"#, Ty::Str, "ERROR TYPE_MISMATCH on");
    typed(r#"{"variants":{"a":"x"},"defaultVariant":"a"}"#, Ty::Str, r#"STATIC a "x""#);
    typed(r#"{"variants":{"a":"x"},"defaultVariant":"a"}"#, Ty::Int, "ERROR TYPE_MISMATCH a");
    typed(r#"{"variants":{"a":10},"defaultVariant":"a"}"#, Ty::Int, "STATIC a 10");
    typed(r#"{"variants":{"a":1.9},"defaultVariant":"a"}"#, Ty::Int, "STATIC a 1");
    typed(r#"{"variants":{"a":-1.9},"defaultVariant":"a"}"#, Ty::Int, "STATIC a -1");
    typed(r#"{"variants":{"a":3},"defaultVariant":"a"}"#, Ty::Float, "STATIC a 3.0");
    typed(r#"{"variants":{"a":0.5},"defaultVariant":"a"}"#, Ty::Float, "STATIC a 0.5");
    typed(r#"{"variants":{"a":0.5},"defaultVariant":"a"}"#, Ty::Bool, "ERROR TYPE_MISMATCH a");
    typed(r#"{"variants":{"a":{"k":1}},"defaultVariant":"a"}"#, Ty::Obj, r#"STATIC a {"k":1}"#);
    typed(r#"{"variants":{"a":{}},"defaultVariant":"a"}"#, Ty::Obj, "STATIC a {}");
    typed(r#"{"variants":{"a":[1]},"defaultVariant":"a"}"#, Ty::Obj, "ERROR TYPE_MISMATCH a");
    typed(r#"{"variants":{"a":"x"},"defaultVariant":"a"}"#, Ty::Obj, "ERROR TYPE_MISMATCH a");
    typed(r#"{"state":"DISABLED","variants":{"a":"x"},"defaultVariant":"a"}"#, Ty::Str, "DISABLED");
    typed(r#"{"variants":{"a":"x"}}"#, Ty::Int, "DEFAULT");
    typed(r#"{"variants":{"a":"x"},"defaultVariant":"a","targeting":{"bogus":[]}}"#, Ty::Str, "ERROR PARSE_ERROR");
}

// ---------------------------------------------------------------------------------------------
// §7 Metadata
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn metadata_merging() {
    let _cases = Cases::start();
    const DOC: &str = r#"{"metadata":{"flagSetId":"set","team":"a","version":"1"},"flags":{
        "x":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","metadata":{"team":"b","n":2}},
        "y":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"},
        "z":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","metadata":{"flagSetId":"other"}}}}"#;
    meta(DOC, "x", r#"{"flagSetId":"set","team":"b","version":"1","n":2}"#, Some("set"));
    meta(DOC, "y", r#"{"flagSetId":"set","team":"a","version":"1"}"#, Some("set"));
    meta(DOC, "z", r#"{"flagSetId":"other","team":"a","version":"1"}"#, Some("other"));
    meta(r#"{"flags":{"p":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on"}}}"#, "p", "{}", None);
    meta(r#"{"flags":{"p":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","metadata":{"s":"1.0.2","i":2,"f":0.1,"b":true}}}}"#, "p", r#"{"s":"1.0.2","i":2,"f":0.1,"b":true}"#, None);
    // Metadata is carried on every outcome of an existing flag.
    let with_meta = |document: &str, key: &str, field: &str| -> String {
        let Ok(flags) = load_doc(&parse("document", document), V3) else { return "load error".into() };
        match flags.evaluate(key, &json!({}), NOW) {
            Some(e) => format!("{:?} {}", e.reason, e.metadata().get(field).map_or("-".into(), Value::to_string)),
            None => "FLAG_NOT_FOUND".into(),
        }
    };
    check(&with_meta(DOC, "x", "team"), r#"Static "b""#, "metadata of a static flag");
    check(&with_meta(r#"{"metadata":{"k":"v"},"flags":{"d":{"state":"DISABLED","variants":{"on":true},"defaultVariant":"on"}}}"#, "d", "k"), r#"Disabled "v""#, "metadata of a disabled flag");
    check(&with_meta(r#"{"metadata":{"k":"v"},"flags":{"d":{"state":"ENABLED","variants":{"on":true}}}}"#, "d", "k"), r#"Default "v""#, "metadata of a flag without a default variant");
    check(&with_meta(r#"{"metadata":{"k":"v"},"flags":{"d":{"state":"ENABLED","variants":{"on":true},"defaultVariant":"on","targeting":{"bad":1}}}}"#, "d", "k"), r#"Error "v""#, "metadata of a flag whose targeting fails");
    let empty = load_doc(&parse("document", DOC), V3).map(|f| f.resolve_bool("missing", &json!({})).metadata.len());
    check(&format!("{empty:?}"), "Ok(0)", "metadata of an unknown flag");
}

// ---------------------------------------------------------------------------------------------
// §4 fractional
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn murmur3_vectors() {
    let _cases = Cases::start();
    murmur("", 0, 0);
    murmur("hello", 0, 0x248b_fa47);
    murmur("abc", 0, 0xb3dd_93fa);
    murmur("", 1, 0x514e_28b7);
    murmur("aaaa", 0x9747_b28c, 0x5a97_808a);
    murmur("Hello, world!", 0x9747_b28c, 0x2488_4cba);
    murmur("headerColorrachel@faas.com", 0, 1_805_633_606);
    murmur("headerColormonica@faas.com", 0, 3_314_683_759);
    murmur("headerColorjoey@faas.com", 0, 309_582_631);
    murmur("headerColorross@faas.com", 0, 1_595_699_981);
    murmur("my-seedrachel@faas.com", 0, 2_931_187_178);
    murmur("my-seedmonica@faas.com", 0, 309_002_457);
    murmur("my-seedjoey@faas.com", 0, 1_300_152_927);
    murmur("my-seedross@faas.com", 0, 3_030_988_938);
    murmur("ross@faas.com", 0, 345_441_592);
    murmur("email", 0, 3_737_300_892);
    murmur("foo@foo.com", 0, 4_156_476_097);
    murmur("headerColorfoo@foo.com", 0, 3_455_740_957);
    murmur("clampedWeightFlagsome-targeting-key", 0, 4_218_311_896);
    murmur("ejOoVL", 0, 0);
    murmur("bY9fO-", 0, 1);
    murmur("SI7p-", 0, 2_147_483_647);
    murmur("6LvT0", 0, 2_147_483_648);
    murmur("ceQdGm", 0, 4_294_967_295);
    murmur("jon@company.com", 0, 1_557_731_397);
    murmur("user1", 0, 3_305_849_917);
}

/// The facts-sheet table, hashed over the UTF-8 string (v2).
#[test]
#[rustfmt::skip]
fn fractional_table_v2() {
    let _cases = Cases::start();
    frac_str(V2, "headerColorrachel@faas.com", RBGY, "blue");
    frac_str(V2, "headerColormonica@faas.com", RBGY, "yellow");
    frac_str(V2, "headerColorjoey@faas.com", RBGY, "red");
    frac_str(V2, "headerColorross@faas.com", RBGY, "blue");
    frac_str(V2, "my-seedrachel@faas.com", RBGY, "green");
    frac_str(V2, "my-seedmonica@faas.com", RBGY, "red");
    frac_str(V2, "my-seedjoey@faas.com", RBGY, "blue");
    frac_str(V2, "my-seedross@faas.com", RBGY, "green");
    frac_str(V2, "ross@faas.com", RBGY, "red");
    frac_str(V2, "email", r#"["red",50],["blue",25],["green",25]"#, "green");
    frac_str(V2, "foo@foo.com", r#"["red",25],["blue",25]"#, "blue");
    frac_str(V2, "foo@foo.com", r#"["red"],["blue"]"#, "blue");
    frac_tk(V2, "headerColor", "foo@foo.com", r#"["blue",50],["green",50]"#, "green");
    frac_tk(V2, "clampedWeightFlag", "some-targeting-key", r#"["red",-1000],["green",1]"#, "green");
    frac_str(V2, "ejOoVL", HALVES, "lower");
    frac_str(V2, "bY9fO-", HALVES, "lower");
    frac_str(V2, "SI7p-", HALVES, "lower");
    frac_str(V2, "6LvT0", HALVES, "upper");
    frac_str(V2, "ceQdGm", HALVES, "upper");
    frac_str(V2, "jon@company.com", FIRST_SECOND, "first");
    frac_str(V2, "user1", FIRST_SECOND, "second");
    // The same bucketing string built by a rule from `$flagd.flagKey` and the context.
    frac(V2, "headerColor", &format!(r#"[{{"cat":[{{"var":"$flagd.flagKey"}},{{"var":"email"}}]}},{RBGY}]"#), r#"{"email":"rachel@faas.com"}"#, "blue");
    frac(V2, "headerColor", &format!(r#"[{{"cat":[{{"var":"$flagd.flagKey"}},{{"var":"email"}}]}},{RBGY}]"#), r#"{"email":"monica@faas.com"}"#, "yellow");
}

/// The same table under v3 (the string is hashed as a CBOR text string, the shorthand as the
/// CBOR array `[flagKey, targetingKey]`); expectations recomputed independently.
#[test]
#[rustfmt::skip]
fn fractional_table_v3() {
    let _cases = Cases::start();
    frac_str(V3, "headerColorrachel@faas.com", RBGY, "red");
    frac_str(V3, "headerColormonica@faas.com", RBGY, "green");
    frac_str(V3, "headerColorjoey@faas.com", RBGY, "red");
    frac_str(V3, "headerColorross@faas.com", RBGY, "green");
    frac_str(V3, "my-seedrachel@faas.com", RBGY, "green");
    frac_str(V3, "my-seedmonica@faas.com", RBGY, "yellow");
    frac_str(V3, "my-seedjoey@faas.com", RBGY, "green");
    frac_str(V3, "my-seedross@faas.com", RBGY, "red");
    frac_str(V3, "ross@faas.com", RBGY, "red");
    frac_str(V3, "email", r#"["red",50],["blue",25],["green",25]"#, "blue");
    frac_str(V3, "foo@foo.com", r#"["red",25],["blue",25]"#, "blue");
    frac_str(V3, "foo@foo.com", r#"["red"],["blue"]"#, "blue");
    frac_tk(V3, "headerColor", "foo@foo.com", r#"["blue",50],["green",50]"#, "blue");
    frac_tk(V3, "clampedWeightFlag", "some-targeting-key", r#"["red",-1000],["green",1]"#, "green");
    frac_str(V3, "ejOoVL", HALVES, "lower");
    frac_str(V3, "bY9fO-", HALVES, "lower");
    frac_str(V3, "SI7p-", HALVES, "lower");
    frac_str(V3, "6LvT0", HALVES, "upper");
    frac_str(V3, "ceQdGm", HALVES, "upper");
    frac_str(V3, "jon@company.com", FIRST_SECOND, "first");
    frac_str(V3, "user1", FIRST_SECOND, "second");
}

/// Expectations of the testbed's fractional scenarios, per generation.
#[test]
#[rustfmt::skip]
fn fractional_testbed_vectors() {
    let _cases = Cases::start();
    suits(V2, "fractional-flag", BY_KEY_AND_NAME, "jack", "hearts");
    suits(V2, "fractional-flag", BY_KEY_AND_NAME, "queen", "spades");
    suits(V2, "fractional-flag", BY_KEY_AND_NAME, "ten", "clubs");
    suits(V2, "fractional-flag", BY_KEY_AND_NAME, "nine", "diamonds");
    suits(V2, "fractional-flag", BY_KEY_AND_NAME, "3", "clubs");
    suits(V3, "fractional-flag", BY_KEY_AND_NAME, "jack", "diamonds");
    suits(V3, "fractional-flag", BY_KEY_AND_NAME, "queen", "diamonds");
    suits(V3, "fractional-flag", BY_KEY_AND_NAME, "ten", "clubs");
    suits(V3, "fractional-flag", BY_KEY_AND_NAME, "nine", "clubs");
    suits(V3, "fractional-flag", BY_KEY_AND_NAME, "3", "spades");
    suits(V2, "fractional-flag-A-shared-seed", SHARED_SEED, "seven", "hearts");
    suits(V2, "fractional-flag-A-shared-seed", SHARED_SEED, "eight", "diamonds");
    suits(V2, "fractional-flag-A-shared-seed", SHARED_SEED, "nine", "clubs");
    suits(V2, "fractional-flag-B-shared-seed", SHARED_SEED, "two", "spades");
    suits(V3, "fractional-flag-A-shared-seed", SHARED_SEED, "seven", "hearts");
    suits(V3, "fractional-flag-A-shared-seed", SHARED_SEED, "eight", "hearts");
    suits(V3, "fractional-flag-A-shared-seed", SHARED_SEED, "nine", "diamonds");
    suits(V3, "fractional-flag-B-shared-seed", SHARED_SEED, "two", "diamonds");
    frac_tk(V2, "fractional-flag-shorthand", "jon@company.com", HEADS_TAILS, "heads");
    frac_tk(V2, "fractional-flag-shorthand", "jane@company.com", HEADS_TAILS, "tails");
    frac_tk(V3, "fractional-flag-shorthand", "jon@company.com", HEADS_TAILS, "tails");
    frac_tk(V3, "fractional-flag-shorthand", "jane@company.com", HEADS_TAILS, "tails");
    frac_tk(V3, "fractional-flag-shorthand", "user-1", HEADS_TAILS, "heads");
    frac_tk(V3, "fractional-flag-shorthand", "user-2", HEADS_TAILS, "tails");
    frac_tk(V3, "fractional-flag-shorthand", "user-3", HEADS_TAILS, "heads");
    for hash in [V2, V3] {
        frac_tk(hash, "fractional-single-entry-flag", "some-targeting-key", r#"["single",1]"#, "single");
        frac(hash, "fractional-null-bucket-key-flag", r#"[{"var":"missing_key"},["one",50],["two",50]]"#, "{}", "DEFAULT");
        frac(hash, "fractional-zero-weights-flag", r#"[{"var":"targetingKey"},["one",0],["two",0]]"#, r#"{"targetingKey":"any-user"}"#, "DEFAULT");
        frac(hash, "fractional-negative-weight-flag", r#"[{"var":"targetingKey"},["one",-50],["two",100]]"#, r#"{"targetingKey":"any-user"}"#, "two");
        frac(hash, "targeting-null-flag", r#"[null,["one"]]"#, "{}", "DEFAULT");
        frac(hash, "f", HEADS_TAILS_ARGS, r#"{"irrelevant":"none"}"#, "DEFAULT");
        frac(hash, "f", HEADS_TAILS_ARGS, r#"{"targetingKey":12345}"#, "DEFAULT");
        frac(hash, "f", HEADS_TAILS_ARGS, r#"{"targetingKey":true}"#, "DEFAULT");
        frac(hash, "f", HEADS_TAILS_ARGS, r#"{"targetingKey":""}"#, "DEFAULT");
        frac(hash, "f", HEADS_TAILS_ARGS, r#"{"targetingKey":null}"#, "DEFAULT");
        // Nested rules as variant names and weights (outcomes agree under both generations).
        frac(hash, "f", NESTED_IF, r#"{"targetingKey":"jon@company.com","tier":"premium"}"#, "premium");
        frac(hash, "f", NESTED_IF, r#"{"targetingKey":"jon@company.com","tier":"basic"}"#, "standard");
        frac(hash, "f", NESTED_IF, r#"{"targetingKey":"user1","tier":"premium"}"#, "standard");
        frac(hash, "f", NESTED_WEIGHT, r#"{"targetingKey":"jon@company.com","tier":"premium"}"#, "red");
        frac(hash, "f", NESTED_WEIGHT, r#"{"targetingKey":"user1","tier":"basic"}"#, "blue");
    }
    // The v2 hash edge cases exist only for v2 inputs; the v3 basic-type vectors follow.
    bucket25(V3, json!(true), "bucket5");
    bucket25(V3, json!(false), "bucket1");
    bucket25(V3, json!("user1"), "bucket22");
    bucket25(V3, json!("user2"), "bucket16");
    bucket25(V3, json!(123), "bucket20");
    bucket25(V3, json!(456), "bucket12");
    bucket25(V3, json!(1.23), "bucket14");
    bucket25(V3, json!(4.56), "bucket18");
    bucket25(V3, json!("123"), "bucket22");
    bucket25(V3, json!("true"), "bucket24");
    bucket25(V3, json!("false"), "bucket1");
    bucket25(V3, json!("null"), "bucket8");
    bucket25(V3, json!("1.23"), "bucket4");
    bucket25(V3, json!(0), "bucket8");
    bucket25(V3, json!(1.0), "bucket23");
    bucket25(V3, json!(1), "bucket23");
    bucket25(V3, json!(-2.0), "bucket12");
    bucket25(V3, json!(-2), "bucket12");
    bucket25(V3, json!(9_007_199_254_740_992.0), "bucket10");
    bucket25(V3, json!(9_007_199_254_740_992_i64), "bucket10");
    bucket25(V3, json!(0.0), "bucket8");
    bucket25(V3, json!(-0.0), "bucket8");
    bucket25(V3, json!(2_147_483_647), "bucket10");
    bucket25(V3, json!(2_147_483_648_i64), "bucket25");
    bucket25(V3, json!(-2_147_483_648_i64), "bucket8");
    bucket25(V3, json!(-2_147_483_649_i64), "bucket18");
    bucket25(V3, json!(23), "bucket21");
    bucket25(V3, json!(24), "bucket11");
    bucket25(V3, json!(255), "bucket13");
    bucket25(V3, json!(256), "bucket13");
    bucket25(V3, json!(65535), "bucket4");
    bucket25(V3, json!(65536), "bucket11");
    bucket25(V3, json!(4_294_967_295_i64), "bucket14");
    bucket25(V3, json!(4_294_967_296_i64), "bucket19");
    bucket25(V3, json!(-24), "bucket4");
    bucket25(V3, json!(-25), "bucket16");
    bucket25(V3, json!(1e20), "bucket19");
    bucket25(V3, json!(-1e20), "bucket25");
    bucket25(V3, json!(65504.0), "bucket16");
    bucket25(V3, json!(0.000_061_035_156_25), "bucket22");
    bucket25(V3, json!(65505.0), "bucket17");
    bucket25(V3, json!(f64::from(f32::MAX)), "bucket10");
    bucket25(V3, json!(3.5e38), "bucket1");
    bucket25(V3, json!(f64::MAX), "bucket17");
    bucket25(V3, json!(f64::from_bits(1)), "bucket2");
    bucket25(V3, json!({"a": 1, "b": 2}), "bucket23");
    bucket25(V3, json!({"z": 1, "aa": 2}), "bucket21");
    bucket25(V3, json!({"a": {"b": 1}, "b": 2}), "bucket9");
    bucket25(V3, json!({"aaa": 1, "ÿ": 2}), "bucket12");
    bucket25(V3, json!({"key": -0.0}), "bucket10");
    bucket25(V3, json!({"key": 0}), "bucket10");
    bucket25(V3, json!({}), "bucket3");
    bucket25(V3, json!({"a": [1, [], 3], "b": null}), "bucket3");
    bucket25(V3, json!({"a": [1, "two", true, [], null]}), "bucket23");
    bucket25(V3, json!({"a": [[[[null]]]]}), "bucket7");
    bucket25(V3, json!(""), "bucket4");
    bucket25(V3, json!("a"), "bucket6");
    bucket25(V3, json!("12345678901234567890123"), "bucket4");
    bucket25(V3, json!("123456789012345678901234"), "bucket14");
    bucket25(V3, json!("a".repeat(255)), "bucket18");
    bucket25(V3, json!("a".repeat(256)), "bucket7");
    bucket25(V3, json!("あいうえおかき"), "bucket17");
    bucket25(V3, json!("café façade résumé café"), "bucket9");
    bucket25(V3, json!(r"A\u0000B"), "bucket15");
    frac_tk(V3, "fractional-flag-shorthand", "user-1", HEADS_TAILS, "heads");
}

const HEADS_TAILS_ARGS: &str = r#"[["heads"],["tails",1]]"#;
const NESTED_IF: &str = r#"[{"var":"targetingKey"},[{"if":[{"==":[{"var":"tier"},"premium"]},"premium","standard"]},50],["standard",50]]"#;
const NESTED_WEIGHT: &str = r#"[{"var":"targetingKey"},["red",{"if":[{"==":[{"var":"tier"},"premium"]},100,0]}],["blue",10]]"#;

/// Argument handling and error fallbacks of `fractional` (§4 steps 1–4).
#[test]
#[rustfmt::skip]
fn fractional_arguments() {
    let _cases = Cases::start();
    for hash in [V2, V3] {
        frac(hash, "f", r#"["k",["a",1]]"#, "{}", "a");
        frac(hash, "f", r#"["k",["a"]]"#, "{}", "a");
        frac(hash, "f", r#"["k",["a",0],["b",1]]"#, "{}", "b");
        frac(hash, "f", r#"["k",["a",1],["b",0]]"#, "{}", "a");
        frac(hash, "f", r#"["k",["a",null]]"#, "{}", "a");
        frac(hash, "f", r#"["k",["a",2147483647]]"#, "{}", "a");
        frac(hash, "f", r#"["k",["a",2147483648]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",["a",2147483647],["b",1]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",["a",1.5]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",["a","1"]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",["a",0]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",[]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k",[{"a":1,"b":2},1]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"["k","a"]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"[["a",1]]"#, r#"{"targetingKey":"x"}"#, "a");
        frac(hash, "f", r#"[["a",1]]"#, "{}", "DEFAULT");
        frac(hash, "f", r#"[{"var":"k"},[{"var":"v"},1]]"#, r#"{"k":"x","v":"k"}"#, "k");
        frac(hash, "f", r#"["k",["a",{"+":[0,1]}]]"#, "{}", "a");
        frac(hash, "f", r#"["k",[true,1]]"#, "{}", "true");
        frac(hash, "f", r#"["k",[false,0],[true,1]]"#, "{}", "true");
    }
    // v2: a null first argument is dropped (shorthand); any other non-string one is a distribution.
    frac(V2, "f", r#"[null,["a",1]]"#, r#"{"targetingKey":"x"}"#, "a");
    frac(V2, "f", r#"[5,["a",1]]"#, "{}", "DEFAULT");
    frac(V2, "f", r#"[true,["a",1]]"#, "{}", "DEFAULT");
    // v3: numbers, booleans and objects are bucketing values of their own.
    frac(V3, "f", r#"[5,["a",1]]"#, "{}", "a");
    frac(V3, "f", r#"[true,["a",1]]"#, "{}", "a");
    // A fractional result used as a condition.
    flag(r#"{"variants":{"big":"hundreds","small":"ones","fallback":"zero"},"defaultVariant":"fallback","targeting":{"if":[{"fractional":[[false,0],[true,100]]},"big","small"]}}"#, r#"{"targetingKey":"some-targeting-key"}"#, "TARGETING_MATCH big");
    flag(r#"{"variants":{"big":"hundreds","small":"ones","fallback":"zero"},"defaultVariant":"fallback","targeting":{"if":[{"fractional":[[false,100],[true,0]]},"big","small"]}}"#, r#"{"targetingKey":"some-targeting-key"}"#, "TARGETING_MATCH small");
    logic(r#"{"fractional":[]}"#, "{}", "null");
    logic(r#"{"fractional":"k"}"#, "{}", "null");
}

// ---------------------------------------------------------------------------------------------
// §5 sem_ver, §6 starts_with / ends_with
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn sem_ver() {
    let _cases = Cases::start();
    logic(r#"{"sem_ver":["2.0.0","=","2.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["2.1.0",">","2.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.9.0","<","2.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["2.0.0-alpha","<","2.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["2.0.0-alpha","=","2.0.0"]}"#, "{}", "false");
    logic(r#"{"sem_ver":["2.0.0.0","=","2.0.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["2.0.0.0","<","2.0.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["1.0.0","=","v1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["v1.0.0","=","v1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["V1.0.0","=","v1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0","^","1"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1","=","1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":[1,"=","1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":[{"var":"v"},"=","1.0.0"]}"#, r#"{"v":1.0}"#, "true");
    logic(r#"{"sem_ver":[1.2,"=","1.2.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.2",">","1.1"]}"#, "{}", "true");
    logic(r#"{"sem_ver":[1.1,">","1.1"]}"#, "{}", "false");
    logic(r#"{"sem_ver":[2,">","1.1"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0+other","=","1.0.0+build"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0","!=","1.0.1"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0","<=","1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.1",">=","1.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0",">=","1.0.1"]}"#, "{}", "false");
    logic(r#"{"sem_ver":["3.0.1","~","3.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["3.1.0","~","3.0.0"]}"#, "{}", "false");
    logic(r#"{"sem_ver":["3.1.0","^","3.0.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["4.0.0","^","3.0.0"]}"#, "{}", "false");
    logic(r#"{"sem_ver":["0.2.0","^","0.1.0"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0-alpha","<","1.0.0-beta"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0-alpha.1","<","1.0.0-alpha.beta"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0-beta.2","<","1.0.0-beta.11"]}"#, "{}", "true");
    logic(r#"{"sem_ver":["1.0.0","===","1.0.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["not-a-version","=","1.0.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["01.0.0","=","1.0.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["1.2-alpha","=","1.2.0"]}"#, "{}", "null");
    logic(r#"{"sem_ver":["1.0.0","="]}"#, "{}", "null");
    logic(r#"{"sem_ver":["1.0.0","=","1.0.0","x"]}"#, "{}", "null");
    logic(r#"{"sem_ver":[{"var":"missing"},"=","1.0.0"]}"#, "{}", "null");
    logic(r#"{"if":[{"sem_ver":["bad","=","1.0.0"]},"yes","no"]}"#, "{}", r#""no""#);
}

#[test]
#[rustfmt::skip]
fn starts_with_ends_with() {
    let _cases = Cases::start();
    logic(r#"{"starts_with":["abcdef","abc"]}"#, "{}", "true");
    logic(r#"{"starts_with":["abcdef","bcd"]}"#, "{}", "false");
    logic(r#"{"starts_with":["ABCdef","abc"]}"#, "{}", "false");
    logic(r#"{"starts_with":["abc",""]}"#, "{}", "true");
    logic(r#"{"starts_with":["ab","abc"]}"#, "{}", "false");
    logic(r#"{"starts_with":[{"var":"id"},"abc"]}"#, r#"{"id":"abcxyz"}"#, "true");
    logic(r#"{"starts_with":[123,"1"]}"#, "{}", "null");
    logic(r#"{"starts_with":["abc",1]}"#, "{}", "null");
    logic(r#"{"starts_with":["abc"]}"#, "{}", "null");
    logic(r#"{"starts_with":["abc","a","b"]}"#, "{}", "null");
    logic(r#"{"starts_with":[{"var":"missing"},"a"]}"#, "{}", "null");
    logic(r#"{"ends_with":["uvwxyz","xyz"]}"#, "{}", "true");
    logic(r#"{"ends_with":["uvwxyz","uvw"]}"#, "{}", "false");
    logic(r#"{"ends_with":["xyz","uvwxyz"]}"#, "{}", "false");
    logic(r#"{"ends_with":["héllo","llo"]}"#, "{}", "true");
    logic(r#"{"ends_with":["abc",3]}"#, "{}", "null");
    logic(r#"{"ends_with":["xyz"]}"#, "{}", "null");
    flag(r#"{"variants":{"true":"true","false":"false","fallback":"fallback"},"defaultVariant":"fallback","targeting":{"starts_with":[{"var":"num"},"abc"]}}"#, r#"{"num":123}"#, "DEFAULT fallback");
    flag(r#"{"variants":{"true":"true","false":"false","fallback":"fallback"},"defaultVariant":"fallback","targeting":{"ends_with":[{"var":"s"},"xyz"]}}"#, r#"{"s":"uvwxyz"}"#, "TARGETING_MATCH true");
}

// ---------------------------------------------------------------------------------------------
// §8 JSONLogic operators
// ---------------------------------------------------------------------------------------------

#[test]
#[rustfmt::skip]
fn logic_literals_and_unsupported() {
    let _cases = Cases::start();
    logic(r#"{"a":1,"b":2}"#, "{}", r#"{"a":1,"b":2}"#);
    logic("{}", "{}", "{}");
    logic(r#"{"if":[true,{"a":1,"b":2},"x"]}"#, "{}", r#"{"a":1,"b":2}"#);
    logic(r#"{"unknown":[1]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"log":"x"}"#, "{}", "PARSE_ERROR");
    logic(r#"{"method":["abc","toUpperCase"]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"preserve":[1]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"val":"a"}"#, r#"{"a":1}"#, "PARSE_ERROR");
    logic(r#"{"exists":"a"}"#, r#"{"a":1}"#, "PARSE_ERROR");
    logic(r#"{"throw":"x"}"#, "{}", "PARSE_ERROR");
    logic(r#"{"$ref":"e"}"#, "{}", "PARSE_ERROR");
    logic(r#"{"fractionalEvaluation":["k",["a",1]]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"if":[true,{"unknown":1},"b"]}"#, "{}", "PARSE_ERROR");
}

#[test]
#[rustfmt::skip]
fn logic_truthiness_and_if() {
    let _cases = Cases::start();
    logic(r#"{"if":[true,"t","f"]}"#, "{}", r#""t""#);
    logic(r#"{"if":[false,"t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":[false,"t"]}"#, "{}", "null");
    logic(r#"{"if":[]}"#, "{}", "null");
    logic(r#"{"if":[false,"a",true,"b","c"]}"#, "{}", r#""b""#);
    logic(r#"{"if":[false,"a",false,"b","c"]}"#, "{}", r#""c""#);
    logic(r#"{"if":[false,"a",false,"b"]}"#, "{}", "null");
    logic(r#"{"if":[0,"t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":["","t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":["0","t","f"]}"#, "{}", r#""t""#);
    logic(r#"{"if":[null,"t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":[[],"t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":[[0],"t","f"]}"#, "{}", r#""t""#);
    logic(r#"{"if":[{},"t","f"]}"#, "{}", r#""f""#);
    logic(r#"{"if":[{"var":"o"},"t","f"]}"#, r#"{"o":{}}"#, r#""f""#);
    logic(r#"{"if":[{"var":"o"},"t","f"]}"#, r#"{"o":{"a":1}}"#, r#""t""#);
    logic(r#"{"if":[{"var":"n"},"t","f"]}"#, r#"{"n":-1}"#, r#""t""#);
    logic(r#"{"if":[true,{"var":"x"},"no"]}"#, r#"{"x":{"var":"y"},"y":"deep"}"#, r#""deep""#);
    logic(r#"{"if":"x"}"#, "{}", "PARSE_ERROR");
    logic(r#"{"?:":[true,"a","b"]}"#, "{}", r#""a""#);
    logic(r#"{"?:":[false,"a","b"]}"#, "{}", r#""b""#);
}

#[test]
#[rustfmt::skip]
fn logic_boolean_operators() {
    let _cases = Cases::start();
    logic(r#"{"!":[true]}"#, "{}", "false");
    logic(r#"{"!":[false]}"#, "{}", "true");
    logic(r#"{"!":true}"#, "{}", "false");
    logic(r#"{"!":[[]]}"#, "{}", "true");
    logic(r#"{"!":[{}]}"#, "{}", "true");
    logic(r#"{"!":["0"]}"#, "{}", "false");
    logic(r#"{"!":[0]}"#, "{}", "true");
    logic(r#"{"!":[null]}"#, "{}", "true");
    logic(r#"{"!!":["a"]}"#, "{}", "true");
    logic(r#"{"!!":[""]}"#, "{}", "false");
    logic(r#"{"!!":[[1]]}"#, "{}", "true");
    logic(r#"{"!!":[[]]}"#, "{}", "false");
    logic(r#"{"!!":[{}]}"#, "{}", "false");
    logic(r#"{"!!":["0"]}"#, "{}", "true");
    logic(r#"{"and":[true,"a"]}"#, "{}", r#""a""#);
    logic(r#"{"and":[true,0,"x"]}"#, "{}", "0");
    logic(r#"{"and":["",true]}"#, "{}", r#""""#);
    logic(r#"{"and":[true,true]}"#, "{}", "true");
    logic(r#"{"and":[1,2]}"#, "{}", "2");
    logic(r#"{"and":[3,1]}"#, "{}", "1");
    logic(r#"{"and":[1,"result"]}"#, "{}", r#""result""#);
    logic(r#"{"and":[]}"#, "{}", "null");
    logic(r#"{"and":[false,{"var":"a"}]}"#, r#"{"a":1}"#, "false");
    logic(r#"{"or":[false,"a"]}"#, "{}", r#""a""#);
    logic(r#"{"or":[0,""]}"#, "{}", r#""""#);
    logic(r#"{"or":[false,0]}"#, "{}", "0");
    logic(r#"{"or":[null,"x"]}"#, "{}", r#""x""#);
    logic(r#"{"or":[[],{"var":"a"}]}"#, r#"{"a":5}"#, "5");
    logic(r#"{"or":[true,false]}"#, "{}", "true");
    logic(r#"{"or":[null,0]}"#, "{}", "0");
    logic(r#"{"or":[{"var":"x"},"default"]}"#, "{}", r#""default""#);
}

#[test]
#[rustfmt::skip]
fn logic_equality() {
    let _cases = Cases::start();
    logic(r#"{"==":[1,1]}"#, "{}", "true");
    logic(r#"{"==":[1,"1"]}"#, "{}", "true");
    logic(r#"{"==":[1,1.0]}"#, "{}", "true");
    logic(r#"{"==":["1","1.0"]}"#, "{}", "false");
    logic(r#"{"==":[0,""]}"#, "{}", "true");
    logic(r#"{"==":[null,0]}"#, "{}", "false");
    logic(r#"{"==":[null,null]}"#, "{}", "true");
    logic(r#"{"==":[null,""]}"#, "{}", "false");
    logic(r#"{"==":[true,1]}"#, "{}", "true");
    logic(r#"{"==":[false,"0"]}"#, "{}", "true");
    logic(r#"{"==":["abc",0]}"#, "{}", "false");
    logic(r#"{"==":["a","a"]}"#, "{}", "true");
    logic(r#"{"==":["a","A"]}"#, "{}", "false");
    logic(r#"{"==":[{"var":"email"},"a@b.c"]}"#, r#"{"email":"a@b.c"}"#, "true");
    logic(r#"{"==":[{"var":"missing"},null]}"#, "{}", "true");
    logic(r#"{"!=":[1,2]}"#, "{}", "true");
    logic(r#"{"!=":[1,"1"]}"#, "{}", "false");
    logic(r#"{"!=":[null,0]}"#, "{}", "true");
    logic(r#"{"===":[1,1]}"#, "{}", "true");
    logic(r#"{"===":[1,1.0]}"#, "{}", "true");
    logic(r#"{"===":[1,"1"]}"#, "{}", "false");
    logic(r#"{"===":["a","a"]}"#, "{}", "true");
    logic(r#"{"===":[true,1]}"#, "{}", "false");
    logic(r#"{"!==":[1,"1"]}"#, "{}", "true");
    logic(r#"{"!==":[2,2]}"#, "{}", "false");
}

#[test]
#[rustfmt::skip]
fn logic_ordering() {
    let _cases = Cases::start();
    logic(r#"{"<":[1,2]}"#, "{}", "true");
    logic(r#"{"<":[2,1]}"#, "{}", "false");
    logic(r#"{"<":[1,1]}"#, "{}", "false");
    logic(r#"{"<":["a","b"]}"#, "{}", "true");
    logic(r#"{"<":["10","9"]}"#, "{}", "true");
    logic(r#"{"<":[10,"9"]}"#, "{}", "false");
    logic(r#"{"<":["9",10]}"#, "{}", "true");
    logic(r#"{"<":[1,2,3]}"#, "{}", "true");
    logic(r#"{"<":[1,3,3]}"#, "{}", "false");
    logic(r#"{"<":[1,"2",3]}"#, "{}", "true");
    logic(r#"{"<=":[2,2]}"#, "{}", "true");
    logic(r#"{"<=":[3,2]}"#, "{}", "false");
    logic(r#"{"<=":[1,2,2]}"#, "{}", "true");
    logic(r#"{"<=":[1,3,2]}"#, "{}", "false");
    logic(r#"{">":[3,2]}"#, "{}", "true");
    logic(r#"{">":[2,3]}"#, "{}", "false");
    logic(r#"{">":["b","a"]}"#, "{}", "true");
    logic(r#"{">":[3,2,1]}"#, "{}", "true");
    logic(r#"{">":[3,3,1]}"#, "{}", "false");
    logic(r#"{">=":[2,2]}"#, "{}", "true");
    logic(r#"{">=":[1,2]}"#, "{}", "false");
    logic(r#"{">=":[3,3,1]}"#, "{}", "true");
    logic(r#"{">":[{"var":"$flagd.timestamp"},1]}"#, "{}", "true");
    logic(r#"{"<":[{"var":"$flagd.timestamp"},4133980802]}"#, "{}", "true");
}

#[test]
#[rustfmt::skip]
fn logic_arithmetic() {
    let _cases = Cases::start();
    logic(r#"{"+":[1,2]}"#, "{}", "3");
    logic(r#"{"+":[1,2,3]}"#, "{}", "6");
    logic(r#"{"+":["1",2]}"#, "{}", "3");
    logic(r#"{"+":[1.5,1.5]}"#, "{}", "3");
    logic(r#"{"+":["3"]}"#, "{}", "3");
    logic(r#"{"-":[5,3]}"#, "{}", "2");
    logic(r#"{"-":[3]}"#, "{}", "-3");
    logic(r#"{"-":[1.5,0.5]}"#, "{}", "1");
    logic(r#"{"*":[2,3]}"#, "{}", "6");
    logic(r#"{"*":[2,3,4]}"#, "{}", "24");
    logic(r#"{"*":["2",3]}"#, "{}", "6");
    logic(r#"{"/":[7,2]}"#, "{}", "3.5");
    logic(r#"{"/":[1,4]}"#, "{}", "0.25");
    logic(r#"{"/":["8",2]}"#, "{}", "4");
    logic(r#"{"%":[7,3]}"#, "{}", "1");
    logic(r#"{"%":[-7,3]}"#, "{}", "-1");
    logic(r#"{"%":[7.5,2]}"#, "{}", "1.5");
    logic(r#"{"abs":-5}"#, "{}", "5");
    logic(r#"{"abs":[-1.5]}"#, "{}", "1.5");
    logic(r#"{"abs":[3]}"#, "{}", "3");
    logic(r#"{"max":[1,5,3]}"#, "{}", "5");
    logic(r#"{"max":[-1,-5]}"#, "{}", "-1");
    logic(r#"{"max":["7",3]}"#, "{}", "7");
    logic(r#"{"min":[4,-1,2]}"#, "{}", "-1");
    logic(r#"{"min":[2]}"#, "{}", "2");
    logic(r#"{"+":[{"var":"a"},{"var":"b"}]}"#, r#"{"a":1,"b":2.5}"#, "3.5");
}

#[test]
#[rustfmt::skip]
fn logic_data_access() {
    let _cases = Cases::start();
    logic(r#"{"var":"a"}"#, r#"{"a":1}"#, "1");
    logic(r#"{"var":["a"]}"#, r#"{"a":1}"#, "1");
    logic(r#"{"var":"a.b"}"#, r#"{"a":{"b":"x"}}"#, r#""x""#);
    logic(r#"{"var":"a.b.c"}"#, r#"{"a":{"b":"x"}}"#, "null");
    logic(r#"{"var":"arr.1"}"#, r#"{"arr":["x","y"]}"#, r#""y""#);
    logic(r#"{"var":"arr.5"}"#, r#"{"arr":["x","y"]}"#, "null");
    logic(r#"{"var":["x","dflt"]}"#, "{}", r#""dflt""#);
    logic(r#"{"var":["a","dflt"]}"#, r#"{"a":0}"#, "0");
    logic(r#"{"var":""}"#, r#"{"a":1}"#, r#"{"a":1,"$flagd":{"flagKey":"flag","timestamp":1700000000}}"#);
    logic(r#"{"var":1}"#, r#"{"1":"one"}"#, r#""one""#);
    logic(r#"{"var":"missing"}"#, "{}", "null");
    logic(r#"{"var":{"cat":["a",".b"]}}"#, r#"{"a":{"b":7}}"#, "7");
    logic(r#"{"var":"user.name"}"#, r#"{"user":{"name":"jack"}}"#, r#""jack""#);
    logic(r#"{"var":"$flagd.flagKey"}"#, "{}", r#""flag""#);
    logic(r#"{"var":"$flagd.timestamp"}"#, "{}", "1700000000");
    logic(r#"{"var":"$flagd.flagKey"}"#, r#"{"$flagd":{"flagKey":"spoof"}}"#, r#""flag""#);
    logic(r#"{"missing":["a","b"]}"#, r#"{"a":1}"#, r#"["b"]"#);
    logic(r#"{"missing":["a","b"]}"#, r#"{"a":1,"b":2}"#, "[]");
    logic(r#"{"missing":["a.b"]}"#, r#"{"a":{"b":1}}"#, "[]");
    logic(r#"{"missing":"x"}"#, "{}", r#"["x"]"#);
    logic(r#"{"missing":["a"]}"#, r#"{"a":null}"#, r#"["a"]"#);
    logic(r#"{"missing_some":[1,["a","b"]]}"#, r#"{"b":2}"#, "[]");
    logic(r#"{"missing_some":[2,["a","b","c"]]}"#, r#"{"a":1}"#, r#"["b","c"]"#);
    logic(r#"{"missing_some":[1,["a"]]}"#, "{}", r#"["a"]"#);
    logic(r#"{"missing_some":[2,["a","b","c"]]}"#, r#"{"a":1,"c":3}"#, "[]");
}

#[test]
#[rustfmt::skip]
fn logic_strings() {
    let _cases = Cases::start();
    logic(r#"{"in":["Spring","Springfield"]}"#, "{}", "true");
    logic(r#"{"in":["x","Springfield"]}"#, "{}", "false");
    logic(r#"{"in":["",""]}"#, "{}", "true");
    logic(r#"{"in":[1,"abc"]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"cat":["a","b"]}"#, "{}", r#""ab""#);
    logic(r#"{"cat":["a",1,2.5]}"#, "{}", r#""a12.5""#);
    logic(r#"{"cat":["v",1.0]}"#, "{}", r#""v1""#);
    logic(r#"{"cat":["a",0.1]}"#, "{}", r#""a0.1""#);
    logic(r#"{"cat":["v",1e21]}"#, "{}", r#""v1000000000000000000000""#);
    logic(r#"{"cat":[" a","b "]}"#, "{}", r#""ab""#);
    logic(r#"{"cat":["a"," ","b"]}"#, "{}", r#""a b""#);
    logic(r#"{"cat":["a",null,"b"]}"#, "{}", r#""ab""#);
    logic(r#"{"cat":["a",true]}"#, "{}", "PARSE_ERROR");
    logic(r#"{"cat":[{"var":"$flagd.flagKey"},{"var":"k"}]}"#, r#"{"k":"x"}"#, r#""flagx""#);
    logic(r#"{"substr":["jsonlogic",4]}"#, "{}", r#""logic""#);
    logic(r#"{"substr":["jsonlogic",-5]}"#, "{}", r#""logic""#);
    logic(r#"{"substr":["jsonlogic",1,3]}"#, "{}", r#""son""#);
    logic(r#"{"substr":["jsonlogic",4,-2]}"#, "{}", r#""log""#);
    logic(r#"{"substr":["jsonlogic",0,100]}"#, "{}", r#""jsonlogic""#);
    logic(r#"{"substr":["héllo",1,2]}"#, "{}", r#""él""#);
    logic(r#"{"substr":["abc",-10]}"#, "{}", r#""abc""#);
}

#[test]
#[rustfmt::skip]
fn logic_arrays() {
    let _cases = Cases::start();
    logic(r#"{"in":["b",["a","b"]]}"#, "{}", "true");
    logic(r#"{"in":["c",["a","b"]]}"#, "{}", "false");
    logic(r#"{"in":[3,[1,2,3]]}"#, "{}", "true");
    logic(r#"{"in":[4,[1,2,3]]}"#, "{}", "false");
    logic(r#"{"in":[5,[[1,10]]]}"#, "{}", "true");
    logic(r#"{"in":[10,[[1,10]]]}"#, "{}", "true");
    logic(r#"{"in":[1,[[1,10]]]}"#, "{}", "true");
    logic(r#"{"in":[11,[[1,10]]]}"#, "{}", "false");
    logic(r#"{"in":[5,[1,[4,6]]]}"#, "{}", "true");
    logic(r#"{"in":["a",{"var":"o"}]}"#, r#"{"o":{"a":1}}"#, "false");
    logic(r#"{"in":["a",null]}"#, "{}", "false");
    logic(r#"{"in":[null,["a"]]}"#, "{}", "false");
    logic(r#"{"in":[{"var":"email"},["a@b.c","d@e.f"]]}"#, r#"{"email":"d@e.f"}"#, "true");
    logic(r#"{"merge":[[1,2],[3]]}"#, "{}", "[1,2,3]");
    logic(r#"{"merge":[1,[2,[3]]]}"#, "{}", "[1,2,[3]]");
    logic(r#"{"merge":["a",["b"]]}"#, "{}", r#"["a","b"]"#);
    logic(r#"{"merge":[]}"#, "{}", "[]");
    logic(r#"{"map":[[1,2,3],{"*":[{"var":""},2]}]}"#, "{}", "[2,4,6]");
    logic(r#"{"map":[{"var":"xs"},{"+":[{"var":""},1]}]}"#, r#"{"xs":[1,2]}"#, "[2,3]");
    logic(r#"{"map":[{"var":"missing"},{"var":""}]}"#, "{}", "[]");
    logic(r#"{"filter":[[1,2,3,4],{">":[{"var":""},2]}]}"#, "{}", "[3,4]");
    logic(r#"{"filter":[{"var":"xs"},{"==":[{"%":[{"var":""},2]},0]}]}"#, r#"{"xs":[1,2,3,4]}"#, "[2,4]");
    logic(r#"{"filter":[[],{"var":""}]}"#, "{}", "[]");
    logic(r#"{"reduce":[[1,2,3],{"+":[{"var":"current"},{"var":"accumulator"}]},0]}"#, "{}", "6");
    logic(r#"{"reduce":[[1,2,3],{"+":[{"var":"current"},{"var":"accumulator"}]},10]}"#, "{}", "16");
    logic(r#"{"reduce":[[1,2,3,4],{"*":[{"var":"current"},{"var":"accumulator"}]},1]}"#, "{}", "24");
    logic(r#"{"reduce":[["a","b"],{"cat":[{"var":"accumulator"},{"var":"current"}]},""]}"#, "{}", r#""ab""#);
    logic(r#"{"reduce":[{"var":"xs"},{"+":[{"var":"current"},{"var":"accumulator"}]},{"var":"start"}]}"#, r#"{"xs":[1,2],"start":5}"#, "8");
    logic(r#"{"all":[[1,2,3],{">":[{"var":""},0]}]}"#, "{}", "true");
    logic(r#"{"all":[[1,-2],{">":[{"var":""},0]}]}"#, "{}", "false");
    logic(r#"{"all":[[],{">":[{"var":""},0]}]}"#, "{}", "false");
    logic(r#"{"some":[[1,2],{">":[{"var":""},1]}]}"#, "{}", "true");
    logic(r#"{"some":[[1,2],{">":[{"var":""},5]}]}"#, "{}", "false");
    logic(r#"{"some":[[],{">":[{"var":""},1]}]}"#, "{}", "false");
    logic(r#"{"none":[[1,2],{">":[{"var":""},5]}]}"#, "{}", "true");
    logic(r#"{"none":[[1,2],{">":[{"var":""},1]}]}"#, "{}", "false");
    logic(r#"{"none":[[],{">":[{"var":""},1]}]}"#, "{}", "true");
    logic(r#"{"set":[{"var":"o"},"b",2]}"#, r#"{"o":{"a":1}}"#, r#"{"a":1,"b":2}"#);
    logic(r#"{"contains_all":[["a","b","c"],["a","c"]]}"#, "{}", "true");
    logic(r#"{"contains_all":[["a","b"],["a","x"]]}"#, "{}", "false");
    logic(r#"{"contains_any":[["a","b"],["x","b"]]}"#, "{}", "true");
    logic(r#"{"contains_any":[["a","b"],["x","y"]]}"#, "{}", "false");
    logic(r#"{"contains_none":[["a","b"],["x","y"]]}"#, "{}", "true");
    logic(r#"{"contains_none":[["a","b"],["x","b"]]}"#, "{}", "false");
}
