//! Evaluator micro benchmarks, one per flag kind plus loading a 10,000-flag document.
//!
//! Run with `cargo bench -p flagd-rs-benches --bench evaluator`. Each evaluation benchmark resolves
//! one flag over a pass of 1,000 contexts (throughput is reported per evaluation); the fixtures
//! have the shapes of the peer workload and are built in process.

use std::hint::black_box;
use std::sync::LazyLock;

use divan::Bencher;
use divan::counter::ItemsCount;
use flagd_evaluator::{FlagSet, Format, LoadOptions, now_unix_seconds};
use flagd_rs_benches::{Kind, fixtures, resolve_once};
use serde_json::Value;

const PASS: usize = 1_000;

static SET: LazyLock<FlagSet> = LazyLock::new(|| {
    match flagd_evaluator::load(
        fixtures::bench_document().as_bytes(),
        Format::Json,
        &LoadOptions::default(),
    ) {
        Ok(loaded) => loaded.flags,
        Err(e) => panic!("the bench fixture must load: {e}"),
    }
});
static CONTEXTS: LazyLock<Vec<Value>> = LazyLock::new(|| fixtures::contexts(PASS));
static BIG_DOCUMENT: LazyLock<String> = LazyLock::new(|| fixtures::big_document(10_000));

fn main() {
    divan::main();
}

fn eval_pass(bencher: Bencher<'_, '_>, key: &'static str, kind: Kind) {
    let (set, contexts) = (&*SET, &*CONTEXTS);
    let now = now_unix_seconds();
    bencher
        .counter(ItemsCount::new(contexts.len()))
        .bench_local(|| {
            let mut ok = 0usize;
            for ctx in contexts {
                ok += usize::from(resolve_once(set, black_box(key), kind, black_box(ctx), now));
            }
            ok
        });
}

/// No targeting: lookup, default variant, typed extraction.
#[divan::bench]
fn static_bool(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "static-bool", Kind::Bool);
}

/// `if` + `in` on the email domain.
#[divan::bench]
fn if_in(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "email-domain", Kind::Bool);
}

/// `fractional` 95/5 on the targeting key (v3 hash).
#[divan::bench]
fn fractional(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "canary-split", Kind::String);
}

/// `sem_ver` `>=` against a context version.
#[divan::bench]
fn sem_ver(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "semver-gate", Kind::Bool);
}

/// `starts_with` / `ends_with` chain.
#[divan::bench]
fn starts_ends(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "string-ops", Kind::String);
}

/// A shared `$evaluators` rule through `$ref`.
#[divan::bench]
fn shared_ref(bencher: Bencher<'_, '_>) {
    eval_pass(bencher, "ref-shared", Kind::Bool);
}

/// Bytes to a compiled, indexed set of 10,000 flags, schema validation included.
#[divan::bench(sample_count = 20, sample_size = 1)]
fn load_10k(bencher: Bencher<'_, '_>) {
    let bytes = BIG_DOCUMENT.as_bytes();
    let opts = LoadOptions::default();
    bencher.bench_local(|| {
        flagd_evaluator::load(black_box(bytes), Format::Json, &opts).map(|l| l.flags.len())
    });
}
