//! The official flagd Gherkin suites, run in process against `flagd-evaluator`.
//!
//! `evaluator_gherkin_suite` runs every scenario of the testbed's `evaluator/gherkin/*.feature` on
//! `evaluator/flags/testkit-flags.json`; `provider_targeting_feature_in_process` runs the provider
//! suite's `gherkin/targeting.feature` on the testbed's merged `flags/*.json`, which is where the
//! `@fractional-v3` vectors live. Steps are matched by a table of patterns and given the meaning
//! the OpenFeature SDKs give them: a typed flag request with a caller fallback, a context, and
//! checks on the evaluation details the SDK would return.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use flagd_evaluator::{
    Evaluation, FlagSet, Format, HashGeneration, LoadOptions, Resolution, load, now_unix_seconds,
};
use flagd_rs_tests::require;
use flagd_rs_tests::testbed::{Case, Feature, Step, json_eq};
use regex::{Captures, Regex};
use serde_json::{Map, Value};

/// Tags that select behaviour flagd-rs deliberately does not implement.
const SKIPPED_TAGS: &[(&str, &str)] = &[(
    "fractional-v1",
    "legacy v1 bucketing (flagd < 0.15, abs(int32 hash) ratio) is not implemented",
)];

#[test]
fn evaluator_gherkin_suite() {
    let Some(dir) = require::testbed("the evaluator testbed suite") else {
        return;
    };
    let dir = dir.join("evaluator");
    let flags = std::fs::read(dir.join("flags").join("testkit-flags.json"))
        .unwrap_or_else(|e| panic!("cannot read the testkit flags under {}: {e}", dir.display()));
    let features = feature_files(&dir.join("gherkin"));
    let report = run_suite(&flags, &features);
    report.finish("testbed");
}

#[test]
fn provider_targeting_feature_in_process() {
    let Some(dir) = require::testbed("the provider targeting suite, in process") else {
        return;
    };
    let flags = merged_provider_flags(&dir.join("flags"));
    let report = run_suite(&flags, &[dir.join("gherkin").join("targeting.feature")]);
    report.finish("testbed (provider targeting.feature, in process)");
}

/// Merges every `flags/*.json` except `selector-*` into one document, as the testbed's launchpad
/// does for the daemon it starts.
fn merged_provider_flags(dir: &Path) -> Vec<u8> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("selector-"))
        })
        .collect();
    paths.sort();
    let mut flags = Map::new();
    let mut evaluators = Map::new();
    for path in paths {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc: Value =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (section, into) in [("flags", &mut flags), ("$evaluators", &mut evaluators)] {
            if let Some(Value::Object(m)) = doc.get(section) {
                into.extend(m.clone());
            }
        }
    }
    let merged = serde_json::json!({ "flags": flags, "$evaluators": evaluators });
    serde_json::to_vec(&merged).unwrap()
}

fn feature_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "feature"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no feature files in {}", dir.display());
    files
}

/// Outcome of a whole suite.
#[derive(Default)]
struct Report {
    passed: usize,
    failures: Vec<String>,
    skipped: Vec<String>,
    cases: usize,
    rerun_v2: usize,
}

impl Report {
    fn finish(self, label: &str) {
        for skip in &self.skipped {
            println!("skipped: {skip}");
        }
        for failure in &self.failures {
            println!("FAILED: {failure}");
        }
        let summary = format!(
            "{label}: {} passed, {} failed, {} skipped ({} cases; {} hash-dependent ones also run under v2)",
            self.passed,
            self.failures.len(),
            self.skipped.len(),
            self.cases,
            self.rerun_v2,
        );
        println!("{summary}");
        assert!(
            self.failures.is_empty(),
            "{summary}\n\n{}",
            self.failures.join("\n\n")
        );
    }
}

/// The flag document loaded once per hash generation.
struct Documents {
    v2: Result<FlagSet, String>,
    v3: Result<FlagSet, String>,
}

impl Documents {
    fn load(bytes: &[u8]) -> Documents {
        let with = |hash| {
            let opts = LoadOptions {
                hash,
                ..LoadOptions::default()
            };
            load(bytes, Format::Json, &opts)
                .map(|l| l.flags)
                .map_err(|e| e.to_string())
        };
        Documents {
            v2: with(HashGeneration::V2),
            v3: with(HashGeneration::V3),
        }
    }

    fn get(&self, hash: HashGeneration) -> Result<&FlagSet, &str> {
        match hash {
            HashGeneration::V2 => self.v2.as_ref().map_err(String::as_str),
            HashGeneration::V3 => self.v3.as_ref().map_err(String::as_str),
        }
    }
}

fn run_suite(flags: &[u8], features: &[std::path::PathBuf]) -> Report {
    let docs = Documents::load(flags);
    let mut report = Report::default();
    for path in features {
        let feature = match Feature::read(path) {
            Ok(f) => f,
            Err(e) => {
                report.failures.push(format!("cannot parse feature: {e}"));
                continue;
            }
        };
        for case in feature.cases() {
            report.cases += 1;
            if let Some((tag, why)) = SKIPPED_TAGS.iter().find(|(t, _)| case.has_tag(t)) {
                report
                    .skipped
                    .push(format!("{} (@{tag}: {why})", case.name));
                continue;
            }
            let v2 = case.has_tag("fractional-v2");
            let v3 = case.has_tag("fractional-v3");
            let generations: &[HashGeneration] = match (v2, v3) {
                (true, false) => &[HashGeneration::V2],
                (false, true) => &[HashGeneration::V3],
                _ => &[HashGeneration::V3, HashGeneration::V2],
            };
            let explicit = v2 != v3;
            for &hash in generations {
                let label = match hash {
                    HashGeneration::V2 => "v2",
                    HashGeneration::V3 => "v3",
                };
                let outcome = match docs.get(hash) {
                    Ok(set) => run_case(set, &case),
                    Err(e) => Outcome {
                        result: Err(format!("flag document rejected: {e}")),
                        fractional: false,
                    },
                };
                match outcome.result {
                    Ok(()) => report.passed += 1,
                    Err(e) => report
                        .failures
                        .push(format!("{} [{label}]\n    {e}", case.name)),
                }
                // A case without a generation tag runs under the default (v3); when the flag it
                // evaluates uses `fractional`, it is run again under v2, because the evaluator
                // suite's untagged fractional scenarios were written against v2 bucketing.
                if explicit || !outcome.fractional {
                    break;
                }
                if hash == HashGeneration::V3 {
                    report.rerun_v2 += 1;
                }
            }
        }
    }
    report
}

struct Outcome {
    result: Result<(), String>,
    /// Whether an evaluated flag's targeting uses `fractional`.
    fractional: bool,
}

fn run_case(flags: &FlagSet, case: &Case) -> Outcome {
    let mut world = World::new(flags);
    let mut result = Ok(());
    for step in &case.steps {
        if let Err(e) = run_step(&mut world, step) {
            result = Err(format!("step `{step}`: {e}"));
            break;
        }
    }
    Outcome {
        result,
        fractional: world.fractional,
    }
}

/// The requested flag type, as named in step text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl Ty {
    fn parse(name: &str) -> Result<Ty, String> {
        Ok(match name {
            "Boolean" => Ty::Boolean,
            "String" => Ty::String,
            "Integer" | "Long" => Ty::Integer,
            "Float" | "Double" => Ty::Float,
            "Object" => Ty::Object,
            other => return Err(format!("unknown type `{other}`")),
        })
    }
}

/// A value of a requested type, as an SDK would hand it to the caller.
#[derive(Debug, Clone)]
enum Typed {
    Bool(bool),
    Str(String),
    Int(i64),
    Float(f64),
    Object(Value),
}

impl PartialEq for Typed {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Typed::Bool(a), Typed::Bool(b)) => a == b,
            (Typed::Str(a), Typed::Str(b)) => a == b,
            (Typed::Int(a), Typed::Int(b)) => a == b,
            (Typed::Float(a), Typed::Float(b)) => a == b,
            (Typed::Object(a), Typed::Object(b)) => json_eq(a, b),
            _ => false,
        }
    }
}

impl Typed {
    fn parse(ty: Ty, text: &str) -> Result<Typed, String> {
        let bad = |e: &dyn std::fmt::Display| format!("`{text}` is not a valid {ty:?}: {e}");
        Ok(match ty {
            Ty::Boolean => Typed::Bool(text.parse().map_err(|e| bad(&e))?),
            Ty::String => Typed::Str(text.to_owned()),
            Ty::Integer => Typed::Int(text.parse().map_err(|e| bad(&e))?),
            Ty::Float => Typed::Float(text.parse().map_err(|e| bad(&e))?),
            Ty::Object => Typed::Object(serde_json::from_str(text).map_err(|e| bad(&e))?),
        })
    }
}

/// A typed request: flag key, type and the caller's fallback value.
struct Request {
    ty: Ty,
    key: String,
    fallback: Typed,
}

/// What an OpenFeature SDK returns from a detailed evaluation.
#[derive(Debug)]
struct Details {
    value: Typed,
    variant: Option<String>,
    reason: String,
    error_code: Option<String>,
    metadata: Map<String, Value>,
}

struct World<'a> {
    flags: &'a FlagSet,
    request: Option<Request>,
    context: Map<String, Value>,
    details: Option<Details>,
    fractional: bool,
}

impl<'a> World<'a> {
    fn new(flags: &'a FlagSet) -> Self {
        World {
            flags,
            request: None,
            context: Map::new(),
            details: None,
            fractional: false,
        }
    }

    fn details(&self) -> Result<&Details, String> {
        self.details
            .as_ref()
            .ok_or_else(|| "the flag was not evaluated yet".to_owned())
    }

    /// Evaluates the request with the SDK's typed semantics on top of the raw evaluation.
    fn evaluate(&mut self) -> Result<(), String> {
        let req = self.request.as_ref().ok_or("no flag was requested")?;
        let context = Value::Object(self.context.clone());
        let Some(eval) = self.flags.evaluate(&req.key, &context, now_unix_seconds()) else {
            self.details = Some(Details {
                value: req.fallback.clone(),
                variant: None,
                reason: "ERROR".into(),
                error_code: Some("FLAG_NOT_FOUND".into()),
                metadata: Map::new(),
            });
            return Ok(());
        };
        self.fractional |= eval
            .flag
            .targeting_source()
            .is_some_and(|s| s.contains("\"fractional\""));
        let fallback = &req.fallback;
        let details = match req.ty {
            Ty::Boolean => sdk_details(eval.typed::<bool>(), fallback, Typed::Bool),
            Ty::String => sdk_details(eval.typed::<&str>(), fallback, |s| Typed::Str(s.to_owned())),
            Ty::Integer => sdk_details(eval.typed::<i64>(), fallback, Typed::Int),
            Ty::Float => sdk_details(eval.typed::<f64>(), fallback, Typed::Float),
            Ty::Object => sdk_details(eval.typed::<&Map<String, Value>>(), fallback, |m| {
                Typed::Object(Value::Object(m.clone()))
            }),
        };
        check_invariants(&eval)?;
        self.details = Some(details);
        Ok(())
    }
}

/// The evaluation's own promises: an error code exactly when the reason is ERROR, a value exactly
/// when there is a variant.
fn check_invariants(eval: &Evaluation<'_>) -> Result<(), String> {
    let reason_is_error = eval.reason == flagd_evaluator::Reason::Error;
    if reason_is_error != eval.error.is_some() {
        return Err(format!(
            "inconsistent evaluation: reason {:?}, error {:?}",
            eval.reason, eval.error
        ));
    }
    if eval.variant.is_some() != eval.value.is_some() {
        return Err(format!(
            "inconsistent evaluation: variant {:?} but value {:?}",
            eval.variant, eval.value
        ));
    }
    Ok(())
}

/// On an error, or when no variant was chosen (DISABLED, DEFAULT without a default variant), the
/// SDK hands back the caller's fallback; on an error it reports no variant.
fn sdk_details<T>(res: Resolution<'_, T>, fallback: &Typed, wrap: impl Fn(T) -> Typed) -> Details {
    let metadata = res.metadata.to_map();
    let error_code = res.error.map(|e| e.as_str().to_owned());
    let (value, variant) = match (res.error, res.value) {
        (None, Some(v)) => (wrap(v), res.variant.map(str::to_owned)),
        (None, None) => (fallback.clone(), res.variant.map(str::to_owned)),
        (Some(_), _) => (fallback.clone(), None),
    };
    Details {
        value,
        variant,
        reason: res.reason.as_str().to_owned(),
        error_code,
        metadata,
    }
}

type Handler = fn(&mut World<'_>, &Captures<'_>, &Step) -> Result<(), String>;

/// A quoted step argument; `\"` inside it stands for `"`, as in Cucumber's `{string}`.
const STR: &str = r#""((?:[^"\\]|\\.)*)""#;

/// A quoted argument at the end of a step, taken greedily: the provider suite writes JSON
/// objects inside the quotes without escaping them.
const LAST: &str = r#""(.*)""#;

static STEPS: LazyLock<Vec<(Regex, Handler)>> = LazyLock::new(|| {
    let table: Vec<(String, Handler)> = vec![
        ("an evaluator".into(), |w, _, _| {
            *w = World::new(w.flags);
            Ok(())
        }),
        // Provider-suite background steps: nothing to set up for an in-process evaluator.
        ("a stable flagd provider".into(), |_, _, _| Ok(())),
        (
            format!("an option {STR} of type {STR} with value {STR}"),
            |_, _, _| Ok(()),
        ),
        (
            format!(r"a (\w+)-flag with key {STR} and a (?:fallback|default) value {STR}"),
            |w, c, _| {
                let ty = Ty::parse(&c[1])?;
                let fallback = Typed::parse(ty, &arg(c, 3))?;
                w.request = Some(Request {
                    ty,
                    key: arg(c, 2),
                    fallback,
                });
                Ok(())
            },
        ),
        (
            format!(r"a context containing a key {STR}, with type {STR} and with value {LAST}"),
            |w, c, _| {
                let value = context_value(&arg(c, 2), &arg(c, 3))?;
                w.context.insert(arg(c, 1), value);
                Ok(())
            },
        ),
        (
            format!("a context containing a targeting key with value {STR}"),
            |w, c, _| {
                w.context
                    .insert("targetingKey".into(), Value::String(arg(c, 1)));
                Ok(())
            },
        ),
        (
            format!(
                "a context containing a nested property with outer key {STR} and inner key {STR}, with value {STR}"
            ),
            |w, c, _| {
                let outer = w
                    .context
                    .entry(arg(c, 1))
                    .or_insert_with(|| Value::Object(Map::new()));
                if !outer.is_object() {
                    *outer = Value::Object(Map::new());
                }
                if let Value::Object(m) = outer {
                    m.insert(arg(c, 2), Value::String(arg(c, 3)));
                }
                Ok(())
            },
        ),
        ("the flag was evaluated with details".into(), |w, _, _| {
            w.evaluate()
        }),
        (
            format!("the resolved details value should be {LAST}"),
            |w, c, _| {
                let ty = w.request.as_ref().ok_or("no flag was requested")?.ty;
                let expected = Typed::parse(ty, &arg(c, 1))?;
                let got = &w.details()?.value;
                expect(&expected, got, w.details()?)
            },
        ),
        (format!("the reason should be {STR}"), |w, c, _| {
            let d = w.details()?;
            expect(&arg(c, 1), &d.reason, d)
        }),
        (format!("the error-code should be {STR}"), |w, c, _| {
            let d = w.details()?;
            let expected = Some(arg(c, 1)).filter(|s| !s.is_empty());
            expect(&expected, &d.error_code, d)
        }),
        (format!("the variant should be {STR}"), |w, c, _| {
            let d = w.details()?;
            expect(&Some(arg(c, 1)), &d.variant, d)
        }),
        (
            "the resolved metadata should contain".into(),
            |w, _, step| {
                let d = w.details()?;
                let table = step.table.as_ref().ok_or("the step needs a table")?;
                let mut problems = Vec::new();
                for row in table.iter().skip(1) {
                    let [key, ty, value] = row.as_slice() else {
                        return Err(format!("metadata rows need 3 cells, got {row:?}"));
                    };
                    let got = d.metadata.get(key);
                    let ok = match (ty.as_str(), got) {
                        ("String", Some(Value::String(s))) => s == value,
                        ("Integer" | "Long", Some(v)) => {
                            v.as_i64().is_some_and(|i| Ok(i) == value.parse())
                        }
                        ("Float" | "Double", Some(v)) => {
                            v.as_f64().is_some_and(|f| Ok(f) == value.parse())
                        }
                        ("Boolean", Some(Value::Bool(b))) => Ok(*b) == value.parse(),
                        _ => false,
                    };
                    if !ok {
                        problems.push(format!("`{key}`: expected {ty} {value}, got {got:?}"));
                    }
                }
                if problems.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "metadata mismatch: {}; metadata {:?}",
                        problems.join("; "),
                        d.metadata
                    ))
                }
            },
        ),
        ("the resolved metadata is empty".into(), |w, _, _| {
            let d = w.details()?;
            if d.metadata.is_empty() {
                Ok(())
            } else {
                Err(format!("expected no metadata, got {:?}", d.metadata))
            }
        }),
    ];
    table
        .into_iter()
        .map(|(pattern, handler)| (Regex::new(&format!("^{pattern}$")).unwrap(), handler))
        .collect()
});

fn run_step(world: &mut World<'_>, step: &Step) -> Result<(), String> {
    let matches: Vec<_> = STEPS
        .iter()
        .filter_map(|(re, h)| re.captures(&step.text).map(|c| (c, h)))
        .collect();
    match matches.as_slice() {
        [(captures, handler)] => handler(world, captures, step),
        [] => Err("unknown step text".into()),
        _ => Err("ambiguous step text".into()),
    }
}

/// The `i`-th quoted argument, unescaped.
fn arg(c: &Captures<'_>, i: usize) -> String {
    c.get(i)
        .map_or("", |m| m.as_str())
        .replace("\\\"", "\"")
        .replace("\\'", "'")
}

fn context_value(ty: &str, text: &str) -> Result<Value, String> {
    Ok(match Typed::parse(Ty::parse(ty)?, text)? {
        Typed::Bool(b) => Value::Bool(b),
        Typed::Str(s) => Value::String(s),
        Typed::Int(i) => Value::from(i),
        Typed::Float(f) => Value::from(f),
        Typed::Object(v) => v,
    })
}

fn expect<T: PartialEq + std::fmt::Debug>(
    expected: &T,
    got: &T,
    details: &Details,
) -> Result<(), String> {
    if expected == got {
        Ok(())
    } else {
        Err(format!(
            "expected {expected:?}, got {got:?}\n    details: {details:?}"
        ))
    }
}

/// Every step of the suites must be understood: an unknown step is a failure, not a skip.
#[test]
fn every_testbed_step_is_understood() {
    let Some(dir) = require::testbed("the testbed step check") else {
        return;
    };
    let mut paths = feature_files(&dir.join("evaluator").join("gherkin"));
    paths.push(dir.join("gherkin").join("targeting.feature"));
    let mut unknown = BTreeSet::new();
    for path in paths {
        let feature = Feature::read(&path).unwrap();
        for case in feature.cases() {
            for step in case.steps {
                let n = STEPS
                    .iter()
                    .filter(|(re, _)| re.is_match(&step.text))
                    .count();
                if n != 1 {
                    unknown.insert(format!("{}: {step} ({n} matches)", path.display()));
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "steps without exactly one definition:\n{unknown:#?}"
    );
}
