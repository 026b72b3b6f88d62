//! Shared pieces of the evaluator benchmarks: the flag kinds measured, the provider-like
//! resolution step, workload access and in-process fixtures.
//!
//! The peer comparison (`peer_workload`) reads the workload that the peer benchmarks generate so
//! that every evaluator sees the same bytes; the micro benchmarks build equivalent fixtures here so
//! that `cargo bench` needs nothing outside the repository.

use std::hint::black_box;
use std::path::PathBuf;

use flagd_evaluator::{Context, ContextRef, Evaluation, Flag, FlagSet, Resolution};
use serde_json::{Map, Value, json};

/// The type a flag is resolved as, as the peers' providers request it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `resolveBooleanEvaluation`.
    Bool,
    /// `resolveStringEvaluation`.
    String,
}

/// The flags of the shared workload's `flags.json`, in the peers' order, with their types.
/// The first six are timed; the last two only take part in the differential comparison.
pub const FLAGS: [(&str, Kind); 8] = [
    ("static-bool", Kind::Bool),
    ("email-domain", Kind::Bool),
    ("canary-split", Kind::String),
    ("semver-gate", Kind::Bool),
    ("string-ops", Kind::String),
    ("ref-shared", Kind::Bool),
    ("fractional-3way", Kind::String),
    ("fractional-odd", Kind::String),
];

/// How many of [`FLAGS`] are timed.
pub const TIMED_FLAGS: usize = 6;

/// The directory holding `flags.json`, `flags-10000.json` and `contexts.jsonl`:
/// `$FLAGD_PEERS_WORKLOAD`, or `/tmp/flagd-peers/workload`.
pub fn workload_dir() -> PathBuf {
    std::env::var_os("FLAGD_PEERS_WORKLOAD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/flagd-peers/workload"))
}

/// Parses a JSON-lines file of evaluation contexts into values, once, before timing starts.
pub fn parse_contexts(text: &str) -> Result<Vec<Value>, serde_json::Error> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect()
}

/// The contexts as evaluation takes them: built once into [`Context`]s (as a server builds a
/// request's context once, and as the peers pre-parse theirs into their own structures), or,
/// with `$FLAGD_PEERS_JSON_CONTEXTS=1`, the JSON values themselves (to compare the two).
pub enum Contexts {
    /// Built contexts.
    Built(Vec<Context>),
    /// JSON values.
    Json(Vec<Value>),
}

impl Contexts {
    /// Builds `values` into contexts unless `$FLAGD_PEERS_JSON_CONTEXTS` is `1`.
    pub fn prepare(values: Vec<Value>) -> Contexts {
        if std::env::var("FLAGD_PEERS_JSON_CONTEXTS").is_ok_and(|v| v == "1") {
            Contexts::Json(values)
        } else {
            Contexts::Built(values.iter().map(Context::from_json).collect())
        }
    }

    /// How many contexts there are.
    pub fn len(&self) -> usize {
        match self {
            Contexts::Built(c) => c.len(),
            Contexts::Json(c) => c.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with each context.
    #[inline]
    pub fn each(&self, mut f: impl FnMut(ContextRef<'_>)) {
        match self {
            Contexts::Built(c) => c.iter().for_each(|c| f(ContextRef::Flat(c))),
            Contexts::Json(c) => c.iter().for_each(|c| f(ContextRef::Json(c))),
        }
    }
}

/// One provider-style resolution: look the flag up, evaluate it, extract the typed value.
/// Returns whether the resolution came back without an error code.
#[inline]
pub fn resolve_once<'c>(
    set: &FlagSet,
    key: &str,
    kind: Kind,
    context: impl Into<ContextRef<'c>>,
    now: i64,
) -> bool {
    let Some(flag) = set.get(key) else {
        return false;
    };
    let evaluation = flag.evaluate(context, now);
    match kind {
        Kind::Bool => ok(black_box(evaluation.typed::<bool>())),
        Kind::String => ok(black_box(evaluation.typed::<&str>())),
    }
}

fn ok<T>(r: Resolution<'_, T>) -> bool {
    r.error.is_none()
}

/// The outcome of one flag for one context in the peers' differential format: the variant name,
/// `ERROR:<CODE>`, or `NOVARIANT:<REASON>`.
pub fn diff_cell<'c>(
    flag: &Flag,
    kind: Kind,
    context: impl Into<ContextRef<'c>>,
    now: i64,
) -> String {
    let evaluation: Evaluation<'_> = flag.evaluate(context, now);
    let (variant, reason, error) = match kind {
        Kind::Bool => {
            let r = evaluation.typed::<bool>();
            (r.variant, r.reason, r.error)
        }
        Kind::String => {
            let r = evaluation.typed::<&str>();
            (r.variant, r.reason, r.error)
        }
    };
    match (error, variant) {
        (Some(code), _) => format!("ERROR:{code}"),
        (None, Some(v)) => v.to_owned(),
        (None, None) => format!("NOVARIANT:{reason}"),
    }
}

/// The median of `values` (the upper one for an even count, as the peers take it).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A field of `/proc/self/status` in MiB (`VmRSS`, `VmHWM`), where the platform has it.
pub fn proc_status_mib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// In-process fixtures with the same shapes as the peer workload (flag templates, context fields).
pub mod fixtures {
    use super::*;

    fn shared_evaluators() -> Value {
        json!({
            "isStaff": {"and": [
                {"ends_with": [{"var": "email"}, "@acme.com"]},
                {">=": [{"var": "age"}, 30]}
            ]}
        })
    }

    fn document(flags: Map<String, Value>) -> String {
        json!({
            "$schema": "https://flagd.dev/schema/v0/flags.json",
            "$evaluators": shared_evaluators(),
            "flags": flags,
        })
        .to_string()
    }

    /// The six timed flags of the workload, as a flag document.
    pub fn bench_document() -> String {
        let flags = json!({
            "static-bool": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
            "email-domain": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"in": ["@acme.com", {"var": "email"}]}, "on", "off"]}},
            "canary-split": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
                "defaultVariant": "stable",
                "targeting": {"fractional": [["stable", 95], ["canary", 5]]}},
            "semver-gate": {"state": "ENABLED", "variants": {"new": true, "old": false}, "defaultVariant": "old",
                "targeting": {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", "2.1.0"]}, "new", "old"]}},
            "string-ops": {"state": "ENABLED", "variants": {"eu": "eu", "org": "org", "other": "other"},
                "defaultVariant": "other",
                "targeting": {"if": [
                    {"starts_with": [{"var": "region"}, "eu-"]}, "eu",
                    {"ends_with": [{"var": "email"}, ".org"]}, "org",
                    "other"]}},
            "ref-shared": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                "targeting": {"if": [{"$ref": "isStaff"}, "on", "off"]}},
        });
        document(flags.as_object().cloned().unwrap_or_default())
    }

    /// A document of `n` flags cycling through the six templates, literals varying per flag.
    pub fn big_document(n: usize) -> String {
        let mut flags = Map::new();
        for i in 0..n {
            let flag = match i % 6 {
                0 => {
                    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"})
                }
                1 => {
                    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                    "targeting": {"if": [{"in": [format!("@d{i}.example.com"), {"var": "email"}]}, "on", "off"]}})
                }
                2 => {
                    let w = 1 + i % 50;
                    json!({"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
                        "defaultVariant": "stable",
                        "targeting": {"fractional": [["stable", 100 - w], ["canary", w]]}})
                }
                3 => {
                    json!({"state": "ENABLED", "variants": {"new": true, "old": false}, "defaultVariant": "old",
                    "targeting": {"if": [{"sem_ver": [{"var": "appVersion"}, ">=", format!("{}.{}.0", i % 5, i % 10)]},
                        "new", "old"]}})
                }
                4 => {
                    json!({"state": "ENABLED", "variants": {"a": "a", "b": "b", "c": "c"}, "defaultVariant": "c",
                    "targeting": {"if": [{"starts_with": [{"var": "region"}, format!("r{i}-")]}, "a",
                        {"ends_with": [{"var": "email"}, format!(".t{i}")]}, "b", "c"]}})
                }
                _ => {
                    json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                    "targeting": {"if": [{"$ref": "isStaff"}, "on", "off"]},
                    "metadata": {"owner": format!("team-{}", i % 17)}})
                }
            };
            flags.insert(format!("flag-{i:05}"), flag);
        }
        document(flags)
    }

    const DOMAINS: [&str; 6] = [
        "acme.com",
        "example.org",
        "gmail.com",
        "corp.acme.com",
        "mail.example.net",
        "uni.edu.org",
    ];
    const REGIONS: [&str; 6] = [
        "eu-west-1",
        "eu-central-1",
        "us-east-1",
        "us-west-2",
        "ap-south-1",
        "sa-east-1",
    ];
    const VERSIONS: [&str; 9] = [
        "1.9.3",
        "2.0.0",
        "2.0.9",
        "2.1.0",
        "2.1.0-beta.1",
        "2.3.1",
        "3.0.0",
        "v2.2.0",
        "10.0.0",
    ];
    const UNICODE_KEYS: [&str; 6] = ["josé", "ユーザー", "Ωmega", "Müller", "😀emoji", "naïve"];

    fn pick<'a>(items: &[&'a str], r: u64) -> &'a str {
        items
            .get((r % items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }

    /// `n` evaluation contexts with the workload's fields and value mix (2 % non-ASCII keys),
    /// from a fixed-seed generator.
    pub fn contexts(n: usize) -> Vec<Value> {
        // SplitMix64: deterministic, dependency-free, good enough to spread the picks.
        let mut state: u64 = 42;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|i| {
                let targeting_key = if i % 50 == 7 {
                    format!("{}-{i}", pick(&UNICODE_KEYS, i as u64))
                } else {
                    format!("user-{:012x}", next() >> 16)
                };
                json!({
                    "targetingKey": targeting_key,
                    "email": format!("u{i}@{}", pick(&DOMAINS, next())),
                    "region": pick(&REGIONS, next()),
                    "appVersion": pick(&VERSIONS, next()),
                    "age": 18 + next() % 53,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load_and_every_timed_flag_resolves() {
        let opts = flagd_evaluator::LoadOptions::default();
        let loaded = flagd_evaluator::load(
            fixtures::bench_document().as_bytes(),
            flagd_evaluator::Format::Json,
            &opts,
        )
        .unwrap();
        assert_eq!(loaded.flags.len(), TIMED_FLAGS);
        let contexts = fixtures::contexts(100);
        assert_eq!(contexts.len(), 100);
        for (key, _) in &FLAGS[..TIMED_FLAGS] {
            assert!(loaded.flags.get(key).is_some(), "{key}");
        }
        let big = flagd_evaluator::load(
            fixtures::big_document(60).as_bytes(),
            flagd_evaluator::Format::Json,
            &opts,
        )
        .unwrap();
        assert_eq!(big.flags.len(), 60);
    }

    #[test]
    fn median_and_status_fields() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
        assert!(median(&[]).is_nan());
        if cfg!(target_os = "linux") {
            assert!(proc_status_mib("VmRSS").is_some_and(|m| m > 0.0));
        }
    }
}
