//! flagd-rs on the peer evaluators' workload, printing the same JSON lines as their benchmarks so
//! that one run can put every evaluator side by side.
//!
//! Usage: `peer_workload [--fractional-hash v2|v3] eval | load | mem <flagfile> | diff`.
//! For profiles: `spin <flag-key|file.json> <n>` (n evaluations of one flag over the contexts, or n
//! loads of a file) and `spin-reload <file.json> <n>` (n reloads with one flag changed each time).
//! The workload directory is `$FLAGD_PEERS_WORKLOAD` (default `/tmp/flagd-peers/workload`);
//! `$FLAGD_PEERS_CONTEXTS=n` makes `eval` and `spin` use only the first n contexts (to see working-set
//! effects; comparisons use all of them).

use std::hint::black_box;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use flagd_evaluator::{
    Context, FlagSet, Format, HashGeneration, LoadOptions, Loaded, now_unix_seconds,
};
use flagd_rs_benches::{
    Contexts, FLAGS, TIMED_FLAGS, diff_cell, median, parse_contexts, proc_status_mib, resolve_once,
    workload_dir,
};
use serde_json::{Map, Value, json};

// The daemon's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Error = Box<dyn std::error::Error>;

const USAGE: &str =
    "usage: peer_workload [--fractional-hash v2|v3] eval | load | mem <flagfile> | diff";

fn peer_name(hash: HashGeneration) -> String {
    let hash = match hash {
        HashGeneration::V2 => "v2",
        HashGeneration::V3 => "v3",
    };
    format!(
        "flagd-rs@{}(FlagSet::get+Flag::evaluate+typed, hash {hash})",
        env!("CARGO_PKG_VERSION")
    )
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut hash = HashGeneration::V3;
    if let Some(i) = args.iter().position(|a| a == "--fractional-hash") {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        hash = match value.as_str() {
            "v2" => HashGeneration::V2,
            "v3" => HashGeneration::V3,
            _ => {
                eprintln!("--fractional-hash takes v2 or v3\n{USAGE}");
                return ExitCode::from(2);
            }
        };
        args.drain(i..(i + 2).min(args.len()));
    }
    let result = match (args.first().map(String::as_str), args.get(1)) {
        (Some("eval"), None) => mode_eval(hash),
        (Some("load"), None) => mode_load(hash),
        (Some("mem"), Some(file)) => mode_mem(hash, file),
        (Some("diff"), None) => mode_diff(hash),
        (Some("spin"), Some(target)) => mode_spin(hash, target, args.get(2)),
        (Some("spin-reload"), Some(file)) => mode_spin_reload(hash, file, args.get(2)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peer_workload: {e}");
            ExitCode::FAILURE
        }
    }
}

fn options(hash: HashGeneration) -> LoadOptions {
    LoadOptions {
        hash,
        ..LoadOptions::default()
    }
}

fn read(dir: &Path, file: &str) -> Result<Vec<u8>, Error> {
    let path = dir.join(file);
    std::fs::read(&path).map_err(|e| {
        format!(
            "{}: {e} (run benches/peers.sh to generate the workload)",
            path.display()
        )
        .into()
    })
}

fn load(bytes: &[u8], hash: HashGeneration) -> Result<Loaded, Error> {
    Ok(flagd_evaluator::load(bytes, Format::Json, &options(hash))?)
}

fn contexts(dir: &Path) -> Result<Vec<Value>, Error> {
    let bytes = read(dir, "contexts.jsonl")?;
    Ok(parse_contexts(std::str::from_utf8(&bytes)?)?)
}

/// A diagnostic knob for `eval` and `spin`, never used for comparisons: only the first
/// `$FLAGD_PEERS_CONTEXTS` contexts, a smaller working set.
fn limited(mut ctxs: Vec<Value>) -> Vec<Value> {
    if let Some(n) = std::env::var("FLAGD_PEERS_CONTEXTS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        ctxs.truncate(n);
    }
    ctxs
}

/// Times whole passes over the contexts the way the peers do: ~1 s of warm-up sizes the runs, then
/// 7 runs of ~0.5 s; returns the per-run rates in evaluations per second.
fn time_passes(n_contexts: usize, mut pass: impl FnMut()) -> (Vec<f64>, usize) {
    let start = Instant::now();
    let mut passes = 0usize;
    while start.elapsed().as_secs_f64() < 1.0 {
        pass();
        passes += 1;
    }
    let per_run = passes.div_ceil(2).max(1);
    let rates = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_run {
                pass();
            }
            (per_run * n_contexts) as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    (rates, per_run * n_contexts)
}

fn mode_eval(hash: HashGeneration) -> Result<(), Error> {
    let dir = workload_dir();
    let set: FlagSet = load(&read(&dir, "flags.json")?, hash)?.flags;
    let ctxs = Contexts::prepare(limited(contexts(&dir)?));
    let mut out = Map::new();
    for &(key, kind) in &FLAGS[..TIMED_FLAGS] {
        let mut errors = 0usize;
        let (rates, evals_per_run) = time_passes(ctxs.len(), || {
            // One timestamp per pass over 10k contexts, as a server takes one per request.
            let now = now_unix_seconds();
            ctxs.each(|ctx| {
                if !resolve_once(&set, black_box(key), kind, ctx, now) {
                    errors += 1;
                }
            });
        });
        out.insert(
            key.to_owned(),
            json!({
                "ops_per_s_median": median(&rates).round(),
                "runs": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
                "evals_per_run": evals_per_run,
                "errors_total": errors,
            }),
        );
    }
    println!("{}", json!({"peer": peer_name(hash), "eval": out}));
    Ok(())
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mode_load(hash: HashGeneration) -> Result<(), Error> {
    let dir = workload_dir();
    let opts = options(hash);
    let mut out = Map::new();
    for file in ["flags-1000.json", "flags-10000.json"] {
        let bytes = read(&dir, file)?;
        for _ in 0..2 {
            black_box(load(&bytes, hash)?);
        }
        let (mut total, mut parse, mut validate, mut build) = (vec![], vec![], vec![], vec![]);
        let mut flags = 0;
        let mut warnings = 0;
        for _ in 0..7 {
            // The whole load, as a source update runs it: bytes to a compiled, indexed set.
            let t = Instant::now();
            let loaded = load(black_box(&bytes), hash)?;
            total.push(ms(t));
            flags = loaded.flags.len();
            warnings = loaded.diagnostics.len();
            drop(black_box(loaded));

            // The full way in its stages (parse to a value, schema validation, checks and
            // compilation), which documents with diagnostics take.
            let t = Instant::now();
            let doc = flagd_evaluator::parse(black_box(&bytes), Format::Json)?;
            parse.push(ms(t));
            let t = Instant::now();
            black_box(flagd_evaluator::schema::SchemaValidator::shared().validate(&doc));
            validate.push(ms(t));
            let t = Instant::now();
            black_box(flagd_evaluator::load_value(doc, &opts)?);
            build.push(ms(t));
        }
        out.insert(
            file.to_owned(),
            json!({
                "flags": flags,
                "diagnostics": warnings,
                "load_ms_median": round2(median(&total)),
                "parse_ms_median": round2(median(&parse)),
                "validate_ms_median": round2(median(&validate)),
                "validate_and_compile_ms_median": round2(median(&build)),
                "load_runs_ms": total.iter().map(|x| round2(*x)).collect::<Vec<_>>(),
            }),
        );
    }
    println!(
        "{}",
        json!({"peer": peer_name(hash), "load": out,
            "note": "load_ms = flagd_evaluator::load(bytes): typed decode + checks + compile + index; parse/validate/validate_and_compile = the full way (parse to a value, schema validation, checks, compile), taken by documents with diagnostics"})
    );
    Ok(())
}

fn round1(x: Option<f64>) -> Value {
    x.map(|x| json!((x * 10.0).round() / 10.0))
        .unwrap_or(Value::Null)
}

fn mode_mem(hash: HashGeneration, file: &str) -> Result<(), Error> {
    // Read first, as the peers do, so the document text is not counted as added memory.
    let bytes = read(&workload_dir(), file)?;
    let before = proc_status_mib("VmRSS");
    let loaded = load(&bytes, hash)?;
    let after = proc_status_mib("VmRSS");
    let peak = proc_status_mib("VmHWM");
    // A second copy, loaded while the first stays alive, reuses the heap the first load freed
    // (its parsed document), so what it adds is close to what one loaded set keeps alive.
    let second = load(&bytes, hash)?;
    let after_second = proc_status_mib("VmRSS");
    let diff = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
    println!(
        "{}",
        json!({"peer": peer_name(hash), "file": file, "flags": loaded.flags.len(),
            "rss_before_mb": round1(before), "rss_after_mb": round1(after), "peak_rss_mb": round1(peak),
            "rss_added_mb": round1(diff(after, before)),
            "rss_added_by_second_copy_mb": round1(diff(after_second, after))})
    );
    // Both sets stay alive until after the measurement.
    drop(black_box((loaded, second)));
    Ok(())
}

fn mode_diff(hash: HashGeneration) -> Result<(), Error> {
    let dir = workload_dir();
    let set = load(&read(&dir, "flags.json")?, hash)?.flags;
    let ctxs = contexts(&dir)?;
    let now = now_unix_seconds();
    let mut lines = String::new();
    for ctx in &ctxs {
        let mut results = Map::new();
        for &(key, kind) in &FLAGS {
            let cell = match set.get(key) {
                Some(flag) => diff_cell(flag, kind, &Context::from_json(ctx), now),
                None => "ERROR:FLAG_NOT_FOUND".to_owned(),
            };
            results.insert(key.to_owned(), Value::String(cell));
        }
        let targeting_key = ctx.get("targetingKey").cloned().unwrap_or(Value::Null);
        lines.push_str(&json!({"targetingKey": targeting_key, "results": results}).to_string());
        lines.push('\n');
    }
    let name = match hash {
        HashGeneration::V2 => "flagd-rs-v2.jsonl",
        HashGeneration::V3 => "flagd-rs.jsonl",
    };
    let results_dir = dir.join("results");
    std::fs::create_dir_all(&results_dir)?;
    std::fs::write(results_dir.join(name), lines)?;
    println!(
        "{}",
        json!({"peer": peer_name(hash), "wrote": format!("workload/results/{name}"), "n": ctxs.len()})
    );
    Ok(())
}

/// Untimed repetitions for a profiler (`valgrind --tool=callgrind`): `spin <flag-key> [passes]`
/// resolves one flag over all contexts `passes` times; `spin <file.json> [loads]` loads a document
/// `loads` times.
/// `spin-reload <file.json> <n>`: loads the file, then n times loads it again with one flag
/// changed (the first `"defaultVariant": "on"` flipped to `"off"` and back), as a reload of the
/// store does: reusing the previous load's unchanged flags, the previous set dropped afterwards.
fn mode_spin_reload(
    hash: HashGeneration,
    file: &str,
    repeats: Option<&String>,
) -> Result<(), Error> {
    let repeats: usize = repeats.map(|r| r.parse()).transpose()?.unwrap_or(1);
    let original = String::from_utf8(read(&workload_dir(), file)?)?;
    let edited = original.replacen(r#""defaultVariant": "on""#, r#""defaultVariant": "off""#, 1);
    if edited == original {
        return Err(format!("{file} has no `\"defaultVariant\": \"on\"` to flip").into());
    }
    let opts = options(hash);
    let mut current: FlagSet = load(original.as_bytes(), hash)?.flags;
    for i in 0..repeats {
        let bytes = if i % 2 == 0 { &edited } else { &original };
        let next =
            flagd_evaluator::reload(black_box(bytes.as_bytes()), Format::Json, &opts, &current)?;
        current = black_box(next.flags);
    }
    Ok(())
}

fn mode_spin(hash: HashGeneration, target: &str, repeats: Option<&String>) -> Result<(), Error> {
    let repeats: usize = repeats.map(|r| r.parse()).transpose()?.unwrap_or(1);
    let dir = workload_dir();
    if target.ends_with(".json") {
        let bytes = read(&dir, target)?;
        for _ in 0..repeats {
            black_box(load(black_box(&bytes), hash)?);
        }
        return Ok(());
    }
    let Some(&(key, kind)) = FLAGS.iter().find(|(k, _)| *k == target) else {
        return Err(format!("unknown flag `{target}`").into());
    };
    let set = load(&read(&dir, "flags.json")?, hash)?.flags;
    let ctxs = Contexts::prepare(limited(contexts(&dir)?));
    let now = now_unix_seconds();
    let mut errors = 0usize;
    for _ in 0..repeats {
        ctxs.each(|ctx| {
            errors += usize::from(!resolve_once(&set, black_box(key), kind, ctx, now));
        });
    }
    eprintln!("{} resolutions, {errors} errors", repeats * ctxs.len());
    Ok(())
}
