//! Traffic-split authority benchmarks: replaying the revision journal at start-up, and evaluating
//! through the store with and without active overrides.
//!
//! Run with `cargo bench -p flagd-rs-benches --bench authority`.
//!
//! - `journal_replay`: `Authority::open` on a journal of 100,000 revisions (a ramp, a blue/green
//!   switch and a toggle changed in turn, as the replay test writes them): read, checksum and
//!   decode every record, rebuild the override set, apply it to a store holding the flags.
//! - `evaluate`: one fractional flag resolved through `Store::snapshot` + `Snapshot::get` +
//!   `Flag::evaluate` (what a request does) over 1,000 contexts, with no override and with 100
//!   active overrides (the evaluated flag among them, the split moved to 75/25).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use divan::Bencher;
use divan::counter::ItemsCount;
use flagd_evaluator::{Format, LoadOptions, OverridePatch, now_unix_seconds};
use flagd_rs::authority::journal::{JOURNAL_FILE, encode_record};
use flagd_rs::authority::{Authority, OverrideChange, RevisionInfo, RevisionKind};
use flagd_rs::selector::Selector;
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use serde_json::{Value, json};

/// Revisions in the replayed journal.
const REVISIONS: u64 = 100_000;

/// Fractional flags in the evaluation document; overrides go to the first ones.
const FLAGS: usize = 200;

/// Contexts per evaluation pass.
const PASS: usize = 1_000;

fn main() {
    divan::main();
}

fn flag_key(i: usize) -> String {
    format!("split-{i:03}")
}

/// `FLAGS` fractional flags, plus the three flags the journal changes.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut flags = serde_json::Map::new();
    for i in 0..FLAGS {
        flags.insert(
            flag_key(i),
            json!({
                "state": "ENABLED",
                "variants": {"stable": "stable", "canary": "canary"},
                "defaultVariant": "stable",
                "targeting": {"fractional": [["stable", 95], ["canary", 5]]},
            }),
        );
    }
    flags.insert(
        "ramp".into(),
        json!({
            "state": "ENABLED",
            "variants": {"stable": "stable", "canary": "canary"},
            "defaultVariant": "stable",
            "targeting": {"fractional": [["stable", 100], ["canary", 0]]},
        }),
    );
    flags.insert(
        "bg".into(),
        json!({
            "state": "ENABLED",
            "variants": {"blue": "blue", "green": "green"},
            "defaultVariant": "blue",
        }),
    );
    flags.insert(
        "toggle".into(),
        json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "on",
        }),
    );
    json!({ "flags": flags }).to_string()
});

fn store() -> Arc<Store> {
    let store = Store::new(vec!["bench".into()], LoadOptions::default());
    if let Err(e) = store.apply(SourceUpdate {
        source: 0,
        event: SourceEvent::Content {
            bytes: DOCUMENT.as_bytes().to_vec(),
            format: Format::Json,
        },
    }) {
        panic!("the bench document must load: {e}");
    }
    store
}

fn weights(stable: u32, canary: u32) -> OverridePatch {
    OverridePatch {
        weights: Some(vec![("stable".into(), stable), ("canary".into(), canary)]),
        ..OverridePatch::default()
    }
}

fn default_variant(v: &str) -> OverridePatch {
    OverridePatch {
        default_variant: Some(v.into()),
        ..OverridePatch::default()
    }
}

/// A fresh directory under Cargo's scratch directory for benchmarks.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("authority-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        panic!("cannot create {}: {e}", dir.display());
    }
    dir
}

/// A state directory holding a journal of `REVISIONS` records.
static JOURNAL: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = scratch("journal");
    let keys = ["ramp", "bg", "toggle"];
    let mut last: [Option<OverridePatch>; 3] = [None, None, None];
    let mut bytes = Vec::with_capacity(40 << 20);
    for revision in 1..=REVISIONS {
        let slot = (revision % 3) as usize;
        let after = match slot {
            0 => {
                let canary = (revision % 100) as u32;
                weights(100 - canary, canary)
            }
            1 => default_variant(if revision % 2 == 0 { "green" } else { "blue" }),
            _ => default_variant(if revision % 2 == 0 { "off" } else { "on" }),
        };
        let record = RevisionInfo {
            revision,
            time: "2026-01-01T00:00:00.000Z".into(),
            actor: "pipeline".into(),
            reason: format!("step {revision}"),
            kind: RevisionKind::Set,
            flag: Some(keys[slot].into()),
            changes: vec![OverrideChange {
                flag: keys[slot].into(),
                before: last[slot].take(),
                after: Some(after.clone()),
            }],
            restored: None,
            event: None,
        };
        last[slot] = Some(after);
        match encode_record(&record) {
            Ok(encoded) => bytes.extend_from_slice(&encoded),
            Err(e) => panic!("cannot encode revision {revision}: {e}"),
        }
    }
    if let Err(e) = std::fs::write(dir.join(JOURNAL_FILE), &bytes) {
        panic!("cannot write the journal: {e}");
    }
    eprintln!(
        "journal: {REVISIONS} revisions, {:.1} MiB",
        bytes.len() as f64 / f64::from(1 << 20)
    );
    dir
});

#[divan::bench(sample_count = 10, sample_size = 1)]
fn journal_replay(bencher: Bencher<'_, '_>) {
    let dir = &*JOURNAL;
    bencher.with_inputs(store).bench_local_values(|store| {
        let authority = match Authority::open(dir, store) {
            Ok(authority) => authority,
            Err(e) => panic!("replay failed: {e:#}"),
        };
        assert_eq!(authority.head(), REVISIONS);
        authority
    });
}

/// A store with `overrides` active overrides, set through the authority (journaled).
fn store_with_overrides(overrides: usize) -> Arc<Store> {
    let store = store();
    if overrides > 0 {
        let dir = scratch(&format!("overrides-{overrides}"));
        let authority = match Authority::open(&dir, store.clone()) {
            Ok(authority) => authority,
            Err(e) => panic!("cannot open the authority: {e:#}"),
        };
        for i in 0..overrides {
            if let Err(e) =
                authority.set_override(&flag_key(i), weights(75, 25), "bench", "bench", None)
            {
                panic!("override {i} refused: {e}");
            }
        }
        assert_eq!(authority.overrides().len(), overrides);
    }
    store
}

static CONTEXTS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    (0..PASS)
        .map(|i| json!({"targetingKey": format!("user-{i}"), "tier": "gold"}))
        .collect()
});

#[divan::bench(args = [0, 100])]
fn evaluate(bencher: Bencher<'_, '_>, overrides: usize) {
    let store = store_with_overrides(overrides);
    let contexts = &*CONTEXTS;
    let key = flag_key(0);
    let now = now_unix_seconds();
    // The split in effect shows in the canary share of the pass.
    let canary = contexts
        .iter()
        .filter(|ctx| {
            let snapshot = store.snapshot();
            snapshot
                .get(&key, &Selector::All)
                .is_some_and(|f| f.flag.evaluate(ctx, now).variant == Some("canary"))
        })
        .count();
    eprintln!("{overrides} overrides: {canary} of {PASS} contexts on the canary");
    bencher.counter(ItemsCount::new(PASS)).bench_local(|| {
        let mut canary = 0usize;
        for ctx in contexts {
            let snapshot = store.snapshot();
            if let Some(found) = snapshot.get(black_box(&key), &Selector::All) {
                let evaluation = found.flag.evaluate(black_box(ctx), now);
                canary += usize::from(evaluation.variant == Some("canary"));
            }
        }
        canary
    });
}
