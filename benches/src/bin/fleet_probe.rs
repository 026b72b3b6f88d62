//! The fleet benchmark's client (`benches/load/run.sh fleet`): how long an admin write takes to
//! be served by every replica.
//!
//! Usage: `fleet_probe <flag> <writes> <replica>...` where each replica is
//! `ADMIN_URL,OFREP_URL` (e.g. `http://127.0.0.1:18617,http://127.0.0.1:18616`).
//!
//! Write i switches the flag's default variant (alternating between `blue` and `green`) through
//! replica i mod N's admin API. From the moment the write is acknowledged, every replica's OFREP
//! endpoint is polled (back to back, one connection each) until it serves the new variant; the
//! write's latency is the slowest replica's. Prints one JSON line: p50, p99 and max in
//! milliseconds, and the writes made.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: fleet_probe <flag> <writes> <ADMIN_URL,OFREP_URL>...";

/// How long one write may take to reach every replica.
const SERVE_TIMEOUT: Duration = Duration::from_secs(10);

struct Replica {
    admin: String,
    ofrep: String,
}

async fn served(http: &reqwest::Client, url: &str, variant: &str) -> Result<Duration, Error> {
    let start = Instant::now();
    loop {
        let answer: Value = http
            .post(url)
            .json(&json!({"context": {"targetingKey": "probe"}}))
            .send()
            .await?
            .json()
            .await?;
        if answer["variant"] == variant {
            return Ok(start.elapsed());
        }
        if start.elapsed() > SERVE_TIMEOUT {
            return Err(format!("{url} still serves {answer} after {SERVE_TIMEOUT:?}").into());
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Vec<String>) -> Result<Value, Error> {
    let [flag, writes, replicas @ ..] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let writes: usize = writes.parse().map_err(|_| USAGE)?;
    let replicas: Vec<Replica> = replicas
        .iter()
        .map(|r| {
            let (admin, ofrep) = r.split_once(',').ok_or(USAGE)?;
            Ok(Replica {
                admin: admin.to_owned(),
                ofrep: format!("{ofrep}/ofrep/v1/evaluate/flags/{flag}"),
            })
        })
        .collect::<Result<_, Error>>()?;
    if replicas.is_empty() || writes == 0 {
        return Err(USAGE.into());
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(4)
        .build()?;
    let mut latencies = Vec::with_capacity(writes);
    for i in 0..writes {
        let variant = if i % 2 == 0 { "green" } else { "blue" };
        let writer = &replicas[i % replicas.len()];
        let response = http
            .put(format!("{}/v1/flags/{flag}/override", writer.admin))
            .json(&json!({"defaultVariant": variant, "actor": "bench", "reason": "probe"}))
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(format!("write {i}: {}", response.text().await?).into());
        }
        let acknowledged = Instant::now();
        let polls = replicas.iter().map(|r| served(&http, &r.ofrep, variant));
        for result in futures::future::join_all(polls).await {
            result?;
        }
        latencies.push(acknowledged.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    Ok(json!({
        "writes": writes,
        "replicas": replicas.len(),
        "p50_ms": percentile(&latencies, 50.0),
        "p99_ms": percentile(&latencies, 99.0),
        "max_ms": latencies.last(),
    }))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fleet_probe: {e}");
            ExitCode::FAILURE
        }
    }
}
