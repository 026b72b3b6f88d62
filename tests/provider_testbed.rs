//! The official flagd provider suite (the testbed's `gherkin/*.feature`), run against the daemon
//! through the OpenFeature Rust SDK and the published flagd provider (`open-feature` and
//! `open-feature-flagd` 0.3): `@rpc` scenarios in RPC mode on the evaluation port, `@in-process`
//! scenarios in in-process mode on the sync port.
//!
//! The daemon is started by [`Launchpad`] the way the reference launchpad starts flagd, one per
//! configuration (provider name and hash generation), reused by every scenario that needs it.
//! Each scenario gets a fresh provider behind a named OpenFeature client. Steps are matched by a
//! table of patterns and given the meaning the SDK step definitions give them.
//!
//! A scenario is skipped, with its reason printed, when it does not concern the daemon (the
//! provider's option parsing), when it needs something the Rust SDK or provider cannot do
//! (provider events, client state, some kinds of context), when it selects behaviour the daemon
//! does not implement (`@fractional-v1`), or when the provider itself is known to depart from the
//! flagd provider specification on that case, after checking against the protocol facts that
//! the daemon answers as flagd does. Every other scenario must pass.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flagd_evaluator::HashGeneration;
use flagd_rs_tests::daemon::request;
use flagd_rs_tests::launchpad::{LaunchConfig, Launchpad, Setup};
use flagd_rs_tests::testbed::{Case, Feature, Step, json_eq, testbed_dir};
use open_feature::provider::{FeatureProvider, NoOpProvider};
use open_feature::{
    Client, EvaluationContext, EvaluationContextFieldValue, EvaluationDetails, EvaluationError,
    EvaluationErrorCode, FlagMetadata, FlagMetadataValue, OpenFeature, StructValue,
    Value as OfValue,
};
use open_feature_flagd::{CacheSettings, CacheType, FlagdOptions, FlagdProvider, ResolverType};
use regex::{Captures, Regex};
use serde_json::Value;

/// Upper bound for one scenario (the longest outage a scenario asks for is 6 s).
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// Per-call deadline given to the provider unless a scenario sets `deadlineMs`. The provider's
/// own default is 500 ms; a loaded two-core machine can stall that long without the daemon
/// being at fault.
const DEFAULT_DEADLINE_MS: u32 = 2_000;

const NO_EVENTS: &str = "needs provider events or client state: open-feature 0.3 (the Rust SDK) \
    has no event-handler or provider-status API, and open-feature-flagd 0.3 emits no events";
const CONFIG_ONLY: &str = "checks the provider's own option and environment parsing (a client \
    option); the daemon takes no part";
const FRACTIONAL_V1: &str =
    "legacy v1 bucketing (flagd < 0.15, abs(int32 hash) ratio) is not implemented";
const FRACTIONAL_V2_IN_PROCESS: &str = "in-process mode evaluates `fractional` in the provider, \
    which hashes with v3 (CBOR); v2 vectors hold only for a v2 evaluator (RPC mode runs them \
    against a daemon started with --fractional-hash v2)";
const RPC_STRUCT_CONTEXT: &str = "open-feature-flagd 0.3's RPC resolver sends struct context \
    values as their Rust Debug text (convert_context), so a nested or object context never \
    reaches the daemon as an object";
const RPC_NO_SELECTOR: &str = "open-feature-flagd 0.3's RPC resolver ignores the selector \
    option (it sends no Flagd-Selector header), so the flag set cannot be chosen";
const NO_NULL_CONTEXT: &str =
    "open-feature 0.3's Value has no null, so a context holding null cannot be built";
const RPC_DISABLED_ZERO: &str = "open-feature-flagd 0.3's RPC resolver hands back the wire \
    value of a DISABLED flag (flagd.evaluation.v1 answers the type's zero value with variant \"\" \
    and reason DISABLED, protocol-facts §1, which the daemon did) instead of the caller's default \
    (protocol-facts §12)";
const RPC_V1_NO_DEFAULT: &str = "open-feature-flagd 0.3's RPC resolver calls \
    flagd.evaluation.v1, where a flag without a default variant answers FLAG_NOT_FOUND \
    (protocol-facts §1, legacy v1 behaviour, which the daemon did); reason DEFAULT comes only \
    from v2 and OFREP";
const RPC_DATA_LOSS: &str = "open-feature-flagd 0.3's RPC resolver reports gRPC DATA_LOSS, \
    flagd's code for PARSE_ERROR (protocol-facts §1, which the daemon sent), as GENERAL";
const IN_PROCESS_DISABLED: &str = "open-feature-flagd 0.3's in-process resolver answers \
    FLAG_NOT_FOUND for a flag whose state is DISABLED (the daemon synced it as flagd does), \
    where flagd resolves it with reason DISABLED and the caller's default (protocol-facts \
    §1/§12)";
const IN_PROCESS_NO_DEFAULT: &str = "open-feature-flagd 0.3's in-process resolver fails with \
    GENERAL (variant \"\" not found) for a flag without a default variant (the daemon synced \
    defaultVariant \"\" as flagd does, protocol-facts §5), where flagd answers reason DEFAULT \
    with the caller's default";
const IN_PROCESS_ENGINE: &str = "the in-process provider evaluates with its own engine \
    (flagd-evaluation-engine 0.1), which departs from flagd on sem_ver edge cases (`v` prefix, \
    partial versions, build metadata) and on starts_with/ends_with errors (false instead of \
    null); the daemon, asked the same over OFREP, gives the expected value";
const IN_PROCESS_UNRESOLVED_REF: &str = "open-feature-flagd 0.3's in-process resolver \
    (flagd-evaluation-engine 0.1) rejects a whole flag configuration that holds a `$ref` to a \
    missing evaluator, which flagd and the daemon serve as written (evaluation-facts: it fails \
    with PARSE_ERROR at evaluation), so in-process launchpads leave that flag out";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_testbed_rpc() {
    run_mode(Mode::Rpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_testbed_in_process() {
    run_mode(Mode::InProcess).await;
}

/// The launchpad's controls as the connection scenarios use them, checked through the provider
/// in both modes: a modified flag reaches RPC and in-process providers, and after the daemon
/// was stopped and started again on the same ports both providers are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launchpad_change_and_restart_reach_providers() {
    let flags = testbed_dir().join("flags");
    let launch = LaunchConfig {
        setup: Setup::Default,
        hash: HashGeneration::V3,
        omit_unresolved_refs: true,
    };
    let mut pad = Launchpad::start(&flags, launch).await.unwrap();
    // Without an event stream the provider's cache would never learn of the change.
    let rpc = FlagdProvider::new(FlagdOptions {
        cache_settings: None,
        ..options_for(Mode::Rpc, &pad)
    })
    .await
    .unwrap();
    let in_process = FlagdProvider::new(options_for(Mode::InProcess, &pad))
        .await
        .unwrap();
    let ctx = EvaluationContext::default();
    let value = |p: &FlagdProvider| {
        let p = p.clone();
        let ctx = ctx.clone();
        async move {
            p.resolve_string_value("changing-flag", &ctx)
                .await
                .map(|d| d.value)
                .ok()
        }
    };
    assert_eq!(value(&rpc).await.as_deref(), Some("foo"));
    assert_eq!(value(&in_process).await.as_deref(), Some("foo"));

    assert_eq!(pad.modify_flag().await.unwrap(), "bar");
    assert_eq!(value(&rpc).await.as_deref(), Some("bar"));
    eventually(
        "the in-process provider sees bar",
        || value(&in_process),
        "bar",
    )
    .await;

    let port = pad.ports().eval;
    pad.lose_connection(Duration::from_secs(1)).await.unwrap();
    assert_eq!(value(&rpc).await, None, "the daemon is down");
    pad.ensure_running().await.unwrap();
    assert_eq!(pad.ports().eval, port);
    eventually("the RPC provider is served again", || value(&rpc), "bar").await;
    // The in-process provider must have opened a new sync stream to see this change.
    assert_eq!(pad.modify_flag().await.unwrap(), "foo");
    eventually(
        "the in-process provider resynced",
        || value(&in_process),
        "foo",
    )
    .await;
    pad.stop().await.unwrap();
}

async fn eventually<F, Fut>(what: &str, mut probe: F, expected: &str)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let got = probe().await;
        if got.as_deref() == Some(expected) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every step of the provider suite must be understood: an unknown step is a failure.
#[test]
fn every_provider_step_is_understood() {
    let mut unknown = Vec::new();
    for path in feature_files() {
        let feature = Feature::read(&path).unwrap();
        for case in feature.cases() {
            for step in &case.steps {
                if let Err(e) = parse_step(step) {
                    unknown.push(format!("{}: {step}: {e}", path.display()));
                }
            }
        }
    }
    unknown.sort();
    unknown.dedup();
    assert!(unknown.is_empty(), "steps not understood:\n{unknown:#?}");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Rpc,
    InProcess,
}

impl Mode {
    fn tag(self) -> &'static str {
        match self {
            Mode::Rpc => "rpc",
            Mode::InProcess => "in-process",
        }
    }
}

fn feature_files() -> Vec<PathBuf> {
    let dir = testbed_dir().join("gherkin");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "feature"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no feature files in {}", dir.display());
    files
}

async fn run_mode(mode: Mode) {
    let mut pads = Pads::default();
    let mut report = Report::default();
    for path in feature_files() {
        let feature = match Feature::read(&path) {
            Ok(f) => f,
            Err(e) => {
                report.failures.push(format!("cannot parse feature: {e}"));
                continue;
            }
        };
        for case in feature.cases() {
            if !case.has_tag(mode.tag()) {
                report.not_applicable += 1;
                continue;
            }
            match run_case(mode, &mut pads, &case).await {
                Outcome::Passed => report.passed += 1,
                Outcome::Skipped(reason) => report
                    .skipped
                    .entry(reason)
                    .or_default()
                    .push(case.name.clone()),
                Outcome::Failed(e) => report.failures.push(format!("{}\n    {e}", case.name)),
            }
        }
    }
    for pad in &mut pads.pads {
        if let Err(e) = pad.stop().await {
            report.failures.push(format!(
                "stopping the {:?} daemon: {e:#}",
                pad.launch_config()
            ));
        }
    }
    report.finish(mode);
}

/// The daemons of one run, one per configuration, started when first needed.
#[derive(Default)]
struct Pads {
    pads: Vec<Launchpad>,
}

impl Pads {
    /// The launchpad of `launch` if it was started, running or not: evaluations during an
    /// outage must not wait for the restart.
    fn find(&self, launch: LaunchConfig) -> Option<&Launchpad> {
        self.pads.iter().find(|p| p.launch_config() == launch)
    }

    /// The launchpad of `launch`, started if needed and running.
    async fn get(&mut self, launch: LaunchConfig) -> anyhow::Result<&mut Launchpad> {
        let index = match self.pads.iter().position(|p| p.launch_config() == launch) {
            Some(i) => i,
            None => {
                let pad = Launchpad::start(&testbed_dir().join("flags"), launch).await?;
                self.pads.push(pad);
                self.pads.len() - 1
            }
        };
        let pad = self
            .pads
            .get_mut(index)
            .ok_or_else(|| anyhow::anyhow!("launchpad {index} vanished"))?;
        pad.ensure_running().await?;
        Ok(pad)
    }
}

#[derive(Default)]
struct Report {
    passed: usize,
    failures: Vec<String>,
    skipped: BTreeMap<String, Vec<String>>,
    not_applicable: usize,
}

impl Report {
    fn finish(self, mode: Mode) {
        let label = format!("provider testbed ({})", mode.tag());
        for (reason, cases) in &self.skipped {
            println!("{label}: skipped {} case(s): {reason}", cases.len());
            for case in cases {
                println!("    - {case}");
            }
        }
        for failure in &self.failures {
            println!("{label}: FAILED: {failure}");
        }
        let skipped: usize = self.skipped.values().map(Vec::len).sum();
        println!(
            "{label}: {} cases of the suite are not tagged @{} and do not apply",
            self.not_applicable,
            mode.tag()
        );
        let summary = format!(
            "{label}: {} passed, {} failed, {skipped} skipped",
            self.passed,
            self.failures.len()
        );
        println!("{summary}");
        assert!(
            self.failures.is_empty(),
            "{summary}\n\n{}",
            self.failures.join("\n\n")
        );
    }
}

enum Outcome {
    Passed,
    Skipped(String),
    Failed(String),
}

/// Why a step stopped the scenario.
enum Stop {
    Skip(String),
    Fail(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Fail(e)
    }
}

async fn run_case(mode: Mode, pads: &mut Pads, case: &Case) -> Outcome {
    let mut actions = Vec::with_capacity(case.steps.len());
    for step in &case.steps {
        match parse_step(step) {
            Ok(a) => actions.push(a),
            Err(e) => return Outcome::Failed(format!("step `{step}`: {e}")),
        }
    }
    if let Some(reason) = static_skip(mode, case, &actions) {
        return Outcome::Skipped(reason.to_owned());
    }
    let hash = if case.has_tag("fractional-v2") {
        HashGeneration::V2
    } else {
        HashGeneration::V3
    };
    let mut world = World::new(mode, hash);
    let run = async {
        for (step, action) in case.steps.iter().zip(actions) {
            match world.apply(pads, action).await {
                Ok(()) => {}
                Err(Stop::Skip(reason)) => return Outcome::Skipped(reason),
                Err(Stop::Fail(e)) => return Outcome::Failed(format!("step `{step}`: {e}")),
            }
        }
        Outcome::Passed
    };
    let outcome = match tokio::time::timeout(CASE_TIMEOUT, run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(format!("did not finish within {CASE_TIMEOUT:?}")),
    };
    world.release().await;
    outcome
}

/// Decides, before anything runs, whether a case is skipped and why.
fn static_skip(mode: Mode, case: &Case, actions: &[Action]) -> Option<&'static str> {
    let any = |f: &dyn Fn(&Action) -> bool| actions.iter().any(f);
    if any(&|a| matches!(a, Action::ConfigOnly)) {
        return Some(CONFIG_ONLY);
    }
    if case.has_tag("fractional-v1") {
        return Some(FRACTIONAL_V1);
    }
    if mode == Mode::InProcess && case.has_tag("fractional-v2") {
        return Some(FRACTIONAL_V2_IN_PROCESS);
    }
    if any(&|a| matches!(a, Action::Event)) {
        return Some(NO_EVENTS);
    }
    let object_context = |a: &Action| match a {
        Action::Nested { .. } => true,
        Action::ContextKey { ty, .. } => ty == "Object",
        _ => false,
    };
    if mode == Mode::Rpc && any(&object_context) {
        return Some(RPC_STRUCT_CONTEXT);
    }
    if mode == Mode::Rpc && any(&|a| matches!(a, Action::Option { name, .. } if name == "selector"))
    {
        return Some(RPC_NO_SELECTOR);
    }
    let holds_null = |a: &Action| match a {
        Action::ContextKey { ty, value, .. } if ty == "Object" => {
            serde_json::from_str::<Value>(value).is_ok_and(|v| contains_null(&v))
        }
        _ => false,
    };
    any(&holds_null).then_some(NO_NULL_CONTEXT)
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(items) => items.iter().any(contains_null),
        Value::Object(map) => map.values().any(contains_null),
        _ => false,
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

/// A value of a requested type, as the SDK hands it to the caller.
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

/// What a step asks for, with its arguments.
#[derive(Debug, Clone)]
enum Action {
    Option {
        name: String,
        value: String,
    },
    ConfigOnly,
    Provider(String),
    Event,
    ConnectionLost(u64),
    FlagModified,
    Flag {
        ty: Ty,
        key: String,
        fallback: String,
    },
    ContextKey {
        key: String,
        ty: String,
        value: String,
    },
    TargetingKey(String),
    Nested {
        outer: String,
        inner: String,
        value: String,
    },
    Evaluate,
    ExpectValue(String),
    ExpectReason(String),
    ExpectErrorCode(String),
    ExpectVariant(String),
    ExpectMetadata(Vec<Vec<String>>),
    ExpectNoMetadata,
}

type Parser = fn(&Captures<'_>, &Step) -> Result<Action, String>;

/// A quoted argument in the middle of a step.
const STR: &str = r#""((?:[^"\\]|\\.)*)""#;

/// A quoted argument at the end of a step, taken greedily: the suite writes JSON objects inside
/// the quotes without escaping them.
const LAST: &str = r#""(.*)""#;

static STEPS: LazyLock<Vec<(Regex, Parser)>> = LazyLock::new(|| {
    let event = "(ready|error|stale|change)";
    let table: Vec<(String, Parser)> = vec![
        (
            format!("an option {STR} of type {STR} with value {LAST}"),
            |c, _| {
                Ok(Action::Option {
                    name: arg(c, 1),
                    value: arg(c, 3),
                })
            },
        ),
        (
            format!("an environment variable {STR} with value {LAST}"),
            |_, _| Ok(Action::ConfigOnly),
        ),
        ("a config was initialized".into(), |_, _| {
            Ok(Action::ConfigOnly)
        }),
        (
            format!("the option {STR} of type {STR} should have the value {LAST}"),
            |_, _| Ok(Action::ConfigOnly),
        ),
        ("we should have an error".into(), |_, _| {
            Ok(Action::ConfigOnly)
        }),
        (r"an? (\w+) flagd provider".into(), |c, _| {
            Ok(Action::Provider(arg(c, 1)))
        }),
        (format!("an? {event} event handler"), |_, _| {
            Ok(Action::Event)
        }),
        (format!("an? {event} event was fired"), |_, _| {
            Ok(Action::Event)
        }),
        (
            format!(r"the {event} event handler should have been executed(?: within \d+ms)?"),
            |_, _| Ok(Action::Event),
        ),
        (
            "the flag should be part of the event payload".into(),
            |_, _| Ok(Action::Event),
        ),
        ("the client should be in fatal state".into(), |_, _| {
            Ok(Action::Event)
        }),
        (r"the connection is lost for (\d+)s".into(), |c, _| {
            let secs = arg(c, 1)
                .parse()
                .map_err(|e| format!("bad duration: {e}"))?;
            Ok(Action::ConnectionLost(secs))
        }),
        ("the flag was modified".into(), |_, _| {
            Ok(Action::FlagModified)
        }),
        (
            format!(r"an? (\w+)-flag with key {STR} and a (?:fallback|default) value {LAST}"),
            |c, _| {
                Ok(Action::Flag {
                    ty: Ty::parse(&arg(c, 1))?,
                    key: arg(c, 2),
                    fallback: arg(c, 3),
                })
            },
        ),
        (
            format!("a context containing a key {STR}, with type {STR} and with value {LAST}"),
            |c, _| {
                Ok(Action::ContextKey {
                    key: arg(c, 1),
                    ty: arg(c, 2),
                    value: arg(c, 3),
                })
            },
        ),
        (
            format!("a context containing a targeting key with value {LAST}"),
            |c, _| Ok(Action::TargetingKey(arg(c, 1))),
        ),
        (
            format!(
                "a context containing a nested property with outer key {STR} and inner key {STR}, with value {LAST}"
            ),
            |c, _| {
                Ok(Action::Nested {
                    outer: arg(c, 1),
                    inner: arg(c, 2),
                    value: arg(c, 3),
                })
            },
        ),
        ("the flag was evaluated with details".into(), |_, _| {
            Ok(Action::Evaluate)
        }),
        (
            format!("the resolved details value should be {LAST}"),
            |c, _| Ok(Action::ExpectValue(arg(c, 1))),
        ),
        (format!("the reason should be {LAST}"), |c, _| {
            Ok(Action::ExpectReason(arg(c, 1)))
        }),
        (format!("the error-code should be {LAST}"), |c, _| {
            Ok(Action::ExpectErrorCode(arg(c, 1)))
        }),
        (format!("the variant should be {LAST}"), |c, _| {
            Ok(Action::ExpectVariant(arg(c, 1)))
        }),
        ("the resolved metadata should contain".into(), |_, step| {
            let table = step.table.clone().ok_or("the step needs a table")?;
            Ok(Action::ExpectMetadata(table))
        }),
        ("the resolved metadata is empty".into(), |_, _| {
            Ok(Action::ExpectNoMetadata)
        }),
    ];
    table
        .into_iter()
        .map(|(pattern, parser)| {
            let re = Regex::new(&format!("^{pattern}$"))
                .unwrap_or_else(|e| panic!("bad step pattern {pattern}: {e}"));
            (re, parser)
        })
        .collect()
});

fn parse_step(step: &Step) -> Result<Action, String> {
    let matches: Vec<_> = STEPS
        .iter()
        .filter_map(|(re, p)| re.captures(&step.text).map(|c| (c, p)))
        .collect();
    match matches.as_slice() {
        [(captures, parser)] => parser(captures, step),
        [] => Err("unknown step text".into()),
        _ => Err("ambiguous step text".into()),
    }
}

/// The `i`-th captured argument, with `\"` read as `"`.
fn arg(c: &Captures<'_>, i: usize) -> String {
    c.get(i)
        .map_or("", |m| m.as_str())
        .replace("\\\"", "\"")
        .replace("\\'", "'")
}

/// A typed request: flag key, type and the caller's default value.
struct Request {
    ty: Ty,
    key: String,
    fallback: Typed,
}

/// What the caller sees of a detailed evaluation. The Rust SDK returns an error instead of
/// details when resolution fails; the caller then has its default value, reason ERROR and the
/// error's code, which is what the other SDKs put into the details.
#[derive(Debug)]
struct Details {
    value: Typed,
    variant: Option<String>,
    reason: Option<String>,
    error_code: Option<String>,
    /// The SDK's error code as the provider gave it (`General` carries the provider's text).
    raw_error: Option<String>,
    error_message: Option<String>,
    metadata: FlagMetadata,
}

/// The state of one scenario.
struct World {
    mode: Mode,
    hash: HashGeneration,
    options: BTreeMap<String, String>,
    provider: Option<(String, Client, LaunchConfig)>,
    request: Option<Request>,
    context: EvaluationContext,
    details: Option<Details>,
}

static PROVIDER_COUNTER: AtomicUsize = AtomicUsize::new(0);

impl World {
    fn new(mode: Mode, hash: HashGeneration) -> World {
        World {
            mode,
            hash,
            options: BTreeMap::new(),
            provider: None,
            request: None,
            context: EvaluationContext::default(),
            details: None,
        }
    }

    /// Unbinds the scenario's provider from its client name, dropping it.
    async fn release(&mut self) {
        if let Some((name, _, _)) = self.provider.take() {
            OpenFeature::singleton_mut()
                .await
                .set_named_provider(&name, NoOpProvider::default())
                .await;
        }
    }

    fn details(&self) -> Result<&Details, Stop> {
        self.details
            .as_ref()
            .ok_or_else(|| Stop::Fail("the flag was not evaluated yet".into()))
    }

    /// The launchpad of the scenario's provider (the default one before any provider).
    fn launch(&self) -> LaunchConfig {
        self.provider.as_ref().map_or(
            LaunchConfig {
                setup: Setup::Default,
                hash: self.hash,
                omit_unresolved_refs: self.mode == Mode::InProcess,
            },
            |(_, _, launch)| *launch,
        )
    }

    async fn apply(&mut self, pads: &mut Pads, action: Action) -> Result<(), Stop> {
        match action {
            Action::Option { name, value } => {
                self.options.insert(name, value);
            }
            Action::ConfigOnly => return Err(Stop::Skip(CONFIG_ONLY.into())),
            Action::Event => return Err(Stop::Skip(NO_EVENTS.into())),
            Action::Provider(name) => self.start_provider(pads, &name).await?,
            Action::ConnectionLost(secs) => {
                let pad = pads.get(self.launch()).await.map_err(fail)?;
                pad.lose_connection(Duration::from_secs(secs))
                    .await
                    .map_err(fail)?;
            }
            Action::FlagModified => {
                let pad = pads.get(self.launch()).await.map_err(fail)?;
                pad.modify_flag().await.map_err(fail)?;
            }
            Action::Flag { ty, key, fallback } => {
                let fallback = Typed::parse(ty, &fallback)?;
                self.request = Some(Request { ty, key, fallback });
            }
            Action::ContextKey { key, ty, value } => {
                let value = context_value(&ty, &value)?;
                self.context.add_custom_field(key, value);
            }
            Action::TargetingKey(key) => self.context.targeting_key = Some(key),
            Action::Nested {
                outer,
                inner,
                value,
            } => {
                let mut fields = match self.context.custom_fields.get(&outer) {
                    Some(EvaluationContextFieldValue::Struct(s)) => s
                        .downcast_ref::<StructValue>()
                        .map(|s| s.fields.clone())
                        .unwrap_or_default(),
                    _ => Default::default(),
                };
                fields.insert(inner, OfValue::String(value));
                self.context.add_custom_field(
                    outer,
                    EvaluationContextFieldValue::new_struct(StructValue { fields }),
                );
            }
            Action::Evaluate => self.evaluate(pads).await?,
            Action::ExpectValue(text) => {
                let ty = self
                    .request
                    .as_ref()
                    .ok_or_else(|| Stop::Fail("no flag was requested".into()))?
                    .ty;
                let expected = Typed::parse(ty, &text)?;
                let d = self.details()?;
                let outcome = expect(&expected, &d.value, d);
                self.check(pads, Expectation::Value, Some(&expected), outcome)
                    .await?;
            }
            Action::ExpectReason(reason) => {
                let d = self.details()?;
                let outcome = expect(&Some(reason.clone()), &d.reason, d);
                self.check(pads, Expectation::Reason(&reason), None, outcome)
                    .await?;
            }
            Action::ExpectErrorCode(code) => {
                let d = self.details()?;
                let expected = Some(code.clone()).filter(|c| !c.is_empty());
                let outcome = expect(&expected, &d.error_code, d);
                self.check(pads, Expectation::ErrorCode(&code), None, outcome)
                    .await?;
            }
            Action::ExpectVariant(variant) => {
                let d = self.details()?;
                expect(&Some(variant), &d.variant, d)?;
            }
            Action::ExpectMetadata(table) => {
                let d = self.details()?;
                check_metadata(&table, &d.metadata).map_err(|e| format!("{e}; details {d:?}"))?;
            }
            Action::ExpectNoMetadata => {
                let d = self.details()?;
                if !d.metadata.values.is_empty() {
                    return Err(Stop::Fail(format!(
                        "expected no metadata, got {:?}",
                        d.metadata.values
                    )));
                }
            }
        }
        Ok(())
    }

    /// Turns a failed expectation into a skip when it is one of the known departures of the
    /// Rust provider from the flagd provider specification, and the daemon's answer, as far as
    /// the details show it, is the one flagd gives.
    async fn check(
        &self,
        pads: &Pads,
        expectation: Expectation<'_>,
        expected_value: Option<&Typed>,
        outcome: Result<(), Stop>,
    ) -> Result<(), Stop> {
        if outcome.is_ok() {
            return outcome;
        }
        let (Some(d), Some(req)) = (self.details.as_ref(), self.request.as_ref()) else {
            return outcome;
        };
        let Some(pad) = pads.find(self.launch()) else {
            return outcome;
        };
        let selector = self.options.get("selector").map(String::as_str);
        let flag = pad.flag_definition(&req.key, selector);
        let disabled = flag
            .as_ref()
            .is_some_and(|f| f.get("state").and_then(Value::as_str) == Some("DISABLED"));
        let no_default = flag.as_ref().is_some_and(|f| {
            f.get("defaultVariant")
                .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
        });
        let error = d.error_code.as_deref();
        let message = d.error_message.as_deref().unwrap_or("");
        if self.mode == Mode::InProcess
            && matches!(expectation, Expectation::Value)
            && let Some(expected) = expected_value
            && flag
                .as_ref()
                .and_then(|f| f.get("targeting"))
                .is_some_and(|t| uses_operator(t, &["sem_ver", "starts_with", "ends_with"]))
        {
            let daemon = self
                .ofrep_value(pad, req, selector)
                .await
                .map_err(|e| Stop::Fail(format!("asking the daemon over OFREP: {e}")))?;
            if daemon == *expected {
                return Err(Stop::Skip(IN_PROCESS_ENGINE.into()));
            }
            return Err(Stop::Fail(format!(
                "{}\n    the daemon over OFREP gives {daemon:?} as well",
                stop_text(outcome)
            )));
        }
        let reason = match (self.mode, expectation) {
            (Mode::Rpc, Expectation::Value)
                if disabled
                    && d.reason.as_deref() == Some("DISABLED")
                    && d.variant.as_deref() == Some("")
                    && d.value == zero_value(req.ty) =>
            {
                Some(RPC_DISABLED_ZERO)
            }
            (Mode::Rpc, Expectation::Reason("DEFAULT"))
                if no_default && error == Some("FLAG_NOT_FOUND") =>
            {
                Some(RPC_V1_NO_DEFAULT)
            }
            (Mode::Rpc, Expectation::ErrorCode("PARSE_ERROR"))
                if d.raw_error.as_deref() == Some("General(\"DataLoss\")") =>
            {
                Some(RPC_DATA_LOSS)
            }
            (Mode::InProcess, Expectation::Reason("DISABLED"))
                if disabled
                    && error == Some("FLAG_NOT_FOUND")
                    && message.contains("is disabled") =>
            {
                Some(IN_PROCESS_DISABLED)
            }
            (
                Mode::InProcess,
                Expectation::Reason("DEFAULT") | Expectation::ErrorCode("FLAG_NOT_FOUND"),
            ) if no_default && error == Some("GENERAL") && message.contains("was not found") => {
                Some(IN_PROCESS_NO_DEFAULT)
            }
            _ => None,
        };
        match reason {
            Some(reason) => Err(Stop::Skip(reason.into())),
            None => outcome,
        }
    }

    /// The value the daemon itself gives for the current request, asked over OFREP with the
    /// scenario's context and selector; a response without a value leaves the caller's default.
    async fn ofrep_value(
        &self,
        pad: &Launchpad,
        req: &Request,
        selector: Option<&str>,
    ) -> Result<Typed, String> {
        let body = serde_json::json!({ "context": context_json(&self.context) }).to_string();
        let selector = selector.map(|s| pad.selector(s));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(s) = &selector {
            headers.push(("flagd-selector", s.as_str()));
        }
        let path = format!("/ofrep/v1/evaluate/flags/{}", req.key);
        let response = request(pad.ports().ofrep, "POST", &path, &headers, body.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let doc: Value = serde_json::from_slice(&response.body).map_err(|e| e.to_string())?;
        let Some(value) = doc.get("value") else {
            return Ok(req.fallback.clone());
        };
        let typed = match req.ty {
            Ty::Boolean => value.as_bool().map(Typed::Bool),
            Ty::String => value.as_str().map(|s| Typed::Str(s.to_owned())),
            Ty::Integer => value.as_i64().map(Typed::Int),
            Ty::Float => value.as_f64().map(Typed::Float),
            Ty::Object => value.is_object().then(|| Typed::Object(value.clone())),
        };
        typed.ok_or_else(|| format!("the daemon answered {doc}"))
    }

    async fn start_provider(&mut self, pads: &mut Pads, name: &str) -> Result<(), Stop> {
        let setup = match name {
            "stable" => Setup::Default,
            "ssl" => Setup::Ssl,
            "socket" => Setup::Socket,
            "metadata" => Setup::Metadata,
            "syncpayload" => Setup::SyncPayload,
            // Both only make sense with the error events that follow them.
            "unavailable" | "forbidden" => return Err(Stop::Skip(NO_EVENTS.into())),
            other => return Err(Stop::Fail(format!("unknown provider `{other}`"))),
        };
        self.release().await;
        let launch = LaunchConfig {
            setup,
            hash: self.hash,
            omit_unresolved_refs: self.mode == Mode::InProcess,
        };
        let pad = pads.get(launch).await.map_err(fail)?;
        let opts = provider_options(self.mode, pad, &self.options)?;
        let provider = tokio::time::timeout(Duration::from_secs(15), FlagdProvider::new(opts))
            .await
            .map_err(|_| Stop::Fail("the provider did not initialize within 15 s".into()))?
            .map_err(|e| Stop::Fail(format!("the provider did not initialize: {e}")))?;
        let client_name = format!(
            "provider-testbed-{}-{}",
            self.mode.tag(),
            PROVIDER_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut api = OpenFeature::singleton_mut().await;
        api.set_named_provider(&client_name, provider).await;
        let client = api.create_named_client(&client_name);
        drop(api);
        self.provider = Some((client_name, client, launch));
        Ok(())
    }

    async fn evaluate(&mut self, pads: &Pads) -> Result<(), Stop> {
        if self.mode == Mode::InProcess
            && let Some(req) = &self.request
            && pads
                .find(self.launch())
                .is_some_and(|pad| pad.omitted_flags().contains(&req.key))
        {
            return Err(Stop::Skip(IN_PROCESS_UNRESOLVED_REF.into()));
        }
        let (_, client, _) = self
            .provider
            .as_ref()
            .ok_or_else(|| Stop::Fail("no provider was created".into()))?;
        let req = self
            .request
            .as_ref()
            .ok_or_else(|| Stop::Fail("no flag was requested".into()))?;
        let ctx = Some(&self.context);
        let key = req.key.as_str();
        let result = match req.ty {
            Ty::Boolean => client
                .get_bool_details(key, ctx, None)
                .await
                .map(|d| details(d, Typed::Bool)),
            Ty::String => client
                .get_string_details(key, ctx, None)
                .await
                .map(|d| details(d, Typed::Str)),
            Ty::Integer => client
                .get_int_details(key, ctx, None)
                .await
                .map(|d| details(d, Typed::Int)),
            Ty::Float => client
                .get_float_details(key, ctx, None)
                .await
                .map(|d| details(d, Typed::Float)),
            Ty::Object => client
                .get_struct_details::<StructValue>(key, ctx, None)
                .await
                .map(|d| details(d, |s| Typed::Object(struct_to_json(&s)))),
        };
        self.details = Some(match result {
            Ok(d) => d,
            Err(e) => error_details(e, req.fallback.clone()),
        });
        Ok(())
    }
}

/// Which assertion failed, for [`World::check`].
#[derive(Debug, Clone, Copy)]
enum Expectation<'a> {
    Value,
    Reason(&'a str),
    ErrorCode(&'a str),
}

/// Whether `rule` applies one of `operators` anywhere.
fn uses_operator(rule: &Value, operators: &[&str]) -> bool {
    match rule {
        Value::Object(map) => map
            .iter()
            .any(|(k, v)| operators.contains(&k.as_str()) || uses_operator(v, operators)),
        Value::Array(items) => items.iter().any(|v| uses_operator(v, operators)),
        _ => false,
    }
}

/// The evaluation context as JSON, as a client would send it.
fn context_json(ctx: &EvaluationContext) -> Value {
    let mut map = serde_json::Map::new();
    for (key, value) in &ctx.custom_fields {
        let json = match value {
            EvaluationContextFieldValue::Bool(b) => Value::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Value::from(*i),
            EvaluationContextFieldValue::Float(f) => Value::from(*f),
            EvaluationContextFieldValue::String(s) => Value::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => Value::String(t.to_string()),
            EvaluationContextFieldValue::Struct(s) => s
                .downcast_ref::<StructValue>()
                .map_or(Value::Null, struct_to_json),
        };
        map.insert(key.clone(), json);
    }
    if let Some(key) = &ctx.targeting_key {
        map.insert("targetingKey".into(), Value::String(key.clone()));
    }
    Value::Object(map)
}

fn stop_text(stop: Result<(), Stop>) -> String {
    match stop {
        Ok(()) => String::new(),
        Err(Stop::Fail(e) | Stop::Skip(e)) => e,
    }
}

/// The value an RPC response carries for a type when it has none to give.
fn zero_value(ty: Ty) -> Typed {
    match ty {
        Ty::Boolean => Typed::Bool(false),
        Ty::String => Typed::Str(String::new()),
        Ty::Integer => Typed::Int(0),
        Ty::Float => Typed::Float(0.0),
        Ty::Object => Typed::Object(Value::Object(serde_json::Map::new())),
    }
}

fn fail(e: anyhow::Error) -> Stop {
    Stop::Fail(format!("{e:#}"))
}

/// The provider options for `mode` against `pad`, with the scenario's options applied.
fn provider_options(
    mode: Mode,
    pad: &Launchpad,
    options: &BTreeMap<String, String>,
) -> Result<FlagdOptions, Stop> {
    let mut opts = options_for(mode, pad);
    for (name, value) in options {
        match name.as_str() {
            // Caching is an RPC-mode option; the in-process resolver's own cache would drop the
            // reason of cached answers.
            "cache" => {
                if mode == Mode::Rpc {
                    opts.cache_settings = Some(CacheSettings {
                        cache_type: CacheType::from(value.as_str()),
                        ..CacheSettings::default()
                    });
                }
            }
            "selector" => opts.selector = Some(pad.selector(value)),
            "deadlineMs" => {
                opts.deadline_ms = value
                    .parse()
                    .map_err(|e| Stop::Fail(format!("bad deadlineMs `{value}`: {e}")))?;
            }
            "targetUri" => {
                let port = match mode {
                    Mode::Rpc => pad.ports().eval,
                    Mode::InProcess => pad.ports().sync,
                }
                .ok_or_else(|| Stop::Fail("targetUri needs a TCP port".into()))?;
                opts.target_uri = Some(value.replace("<port>", &port.to_string()));
            }
            "fatalStatusCodes" => {
                return Err(Stop::Skip(
                    "open-feature-flagd 0.3 has no fatalStatusCodes option".into(),
                ));
            }
            other => {
                return Err(Stop::Skip(format!(
                    "option `{other}` is not mapped to FlagdOptions by this runner"
                )));
            }
        }
    }
    Ok(opts)
}

/// Provider options for `mode` against `pad` with the suite's defaults: port or socket of the
/// mode, TLS with the launchpad's certificate for the ssl setup, an LRU cache in RPC mode.
fn options_for(mode: Mode, pad: &Launchpad) -> FlagdOptions {
    let ports = pad.ports();
    let (resolver_type, port, socket) = match mode {
        Mode::Rpc => (ResolverType::Rpc, ports.eval, pad.eval_socket()),
        Mode::InProcess => (ResolverType::InProcess, ports.sync, pad.sync_socket()),
    };
    let cert = pad.cert_path();
    FlagdOptions {
        host: "localhost".into(),
        port: port.unwrap_or(0),
        target_uri: None,
        resolver_type,
        tls: cert.is_some(),
        cert_path: cert.map(|p| p.display().to_string()),
        deadline_ms: DEFAULT_DEADLINE_MS,
        cache_settings: (mode == Mode::Rpc).then(CacheSettings::default),
        retry_backoff_ms: 250,
        retry_backoff_max_ms: 2_000,
        retry_grace_period: 5,
        selector: None,
        socket_path: socket.map(|p| p.display().to_string()),
        source_configuration: None,
        stream_deadline_ms: 600_000,
        keep_alive_time_ms: 0,
        offline_poll_interval_ms: None,
        provider_id: None,
    }
}

fn details<T>(d: EvaluationDetails<T>, wrap: impl FnOnce(T) -> Typed) -> Details {
    Details {
        value: wrap(d.value),
        variant: d.variant,
        reason: d.reason.map(|r| r.to_string()),
        error_code: None,
        raw_error: None,
        error_message: None,
        metadata: d.flag_metadata,
    }
}

fn error_details(e: EvaluationError, fallback: Typed) -> Details {
    let raw_error = Some(format!("{:?}", e.code));
    let (code, general) = match e.code {
        EvaluationErrorCode::General(text) => ("GENERAL".to_owned(), Some(text)),
        other => (other.to_string(), None),
    };
    Details {
        value: fallback,
        variant: None,
        reason: Some("ERROR".into()),
        error_code: Some(code),
        raw_error,
        // The provider puts its text into the message or, for GENERAL, into the code.
        error_message: e.message.or(general),
        metadata: FlagMetadata::default(),
    }
}

fn struct_to_json(s: &StructValue) -> Value {
    Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), of_to_json(v)))
            .collect(),
    )
}

fn of_to_json(v: &OfValue) -> Value {
    match v {
        OfValue::Bool(b) => Value::Bool(*b),
        OfValue::Int(i) => Value::from(*i),
        OfValue::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        OfValue::String(s) => Value::String(s.clone()),
        OfValue::Array(items) => Value::Array(items.iter().map(of_to_json).collect()),
        OfValue::Struct(s) => struct_to_json(s),
    }
}

fn json_to_of(v: &Value) -> Result<OfValue, Stop> {
    Ok(match v {
        Value::Null => return Err(Stop::Skip(NO_NULL_CONTEXT.into())),
        Value::Bool(b) => OfValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => OfValue::Int(i),
            None => OfValue::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => OfValue::String(s.clone()),
        Value::Array(items) => {
            OfValue::Array(items.iter().map(json_to_of).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => OfValue::Struct(StructValue {
            fields: map
                .iter()
                .map(|(k, v)| Ok((k.clone(), json_to_of(v)?)))
                .collect::<Result<_, Stop>>()?,
        }),
    })
}

fn context_value(ty: &str, text: &str) -> Result<EvaluationContextFieldValue, Stop> {
    Ok(match Typed::parse(Ty::parse(ty)?, text)? {
        Typed::Bool(b) => EvaluationContextFieldValue::Bool(b),
        Typed::Str(s) => EvaluationContextFieldValue::String(s),
        Typed::Int(i) => EvaluationContextFieldValue::Int(i),
        Typed::Float(f) => EvaluationContextFieldValue::Float(f),
        Typed::Object(v) => match json_to_of(&v)? {
            OfValue::Struct(s) => EvaluationContextFieldValue::new_struct(s),
            _ => return Err(Stop::Fail(format!("`{text}` is not a JSON object"))),
        },
    })
}

/// Checks `key | metadata_type | value` rows (after the header) against the metadata. Numbers
/// compare by value whether the provider reports them as integers or floats, since flagd reads
/// every number as a float64.
fn check_metadata(table: &[Vec<String>], metadata: &FlagMetadata) -> Result<(), String> {
    let mut problems = Vec::new();
    for row in table.iter().skip(1) {
        let [key, ty, value] = row.as_slice() else {
            return Err(format!("metadata rows need 3 cells, got {row:?}"));
        };
        let got = metadata.values.get(key);
        let number = |v: &FlagMetadataValue| match v {
            FlagMetadataValue::Int(i) => Some(*i as f64),
            FlagMetadataValue::Float(f) => Some(*f),
            _ => None,
        };
        let ok = match (ty.as_str(), got) {
            ("String", Some(FlagMetadataValue::String(s))) => s == value,
            ("Boolean", Some(FlagMetadataValue::Bool(b))) => Ok(*b) == value.parse::<bool>(),
            ("Integer" | "Long" | "Float" | "Double", Some(v)) => {
                number(v).is_some_and(|n| Ok(n) == value.parse::<f64>())
            }
            _ => false,
        };
        if !ok {
            problems.push(format!("`{key}`: expected {ty} {value}, got {got:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("metadata mismatch: {}", problems.join("; ")))
    }
}

fn expect<T: PartialEq + std::fmt::Debug>(
    expected: &T,
    got: &T,
    details: &Details,
) -> Result<(), Stop> {
    if expected == got {
        Ok(())
    } else {
        let error = details
            .error_message
            .as_deref()
            .map(|m| format!(" (error message: {m})"))
            .unwrap_or_default();
        Err(Stop::Fail(format!(
            "expected {expected:?}, got {got:?}{error}\n    details: {details:?}"
        )))
    }
}
