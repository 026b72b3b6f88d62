//! The clients of the daemon load benchmarks that a load generator cannot play: flag-file
//! rewrites, change-notification latency and many SyncFlags watchers.
//!
//! Usage:
//! - `load_client rewrite <file> <interval ms> <duration s>`: rewrites `<file>` every interval
//!   for the duration (write to a temporary file beside it, then rename over it, as editors and
//!   config management do), each time with a new value of one marker flag so that every write is
//!   a real change; prints how many writes it made.
//! - `load_client events <eval url> <file> <count>`: subscribes to
//!   `flagd.evaluation.v1.Service/EventStream` over gRPC, then `count` times rewrites `<file>` and
//!   times the span from the start of the write to the `configuration_change` event.
//! - `load_client watchers <sync url> <file> <daemon pid> <connections> <streams each>`: opens
//!   `connections` HTTP/2 connections to the sync port with `streams each` SyncFlags streams on
//!   each, waits for every stream's first payload, reads the daemon's resident memory before and
//!   after, then rewrites `<file>` once and times how long each stream takes to receive a payload
//!   with the new marker.
//!
//! - `load_client override <eval url> <sync url> <admin url> <count>`: with an EventStream and a
//!   SyncFlags stream open, `count` times switches the bundled `blue-green-deployment` flag
//!   between `green` and `blue` through the admin API (`PUT /v1/flags/{key}/override`) and times,
//!   from the start of the request: the admin API's answer (the revision is durable), the first
//!   `ResolveString` that serves the new variant, the `configuration_change` event naming the
//!   flag and the sync payload carrying the new default variant. Clears the override at the end.
//!
//! Each prints its result as one JSON line on stdout (times in milliseconds).
//!
//! The marker flag is `load-bench-marker`, a string flag whose single variant carries the
//! revision (`"rev-42"`); every other flag of the file is kept as it was.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flagd_rs::proto::flagd::evaluation::v1::service_client::ServiceClient;
use flagd_rs::proto::flagd::evaluation::v1::{EventStreamRequest, ResolveStringRequest};
use flagd_rs::proto::flagd::sync::v1::SyncFlagsRequest;
use flagd_rs::proto::flagd::sync::v1::flag_sync_service_client::FlagSyncServiceClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};

type Error = Box<dyn std::error::Error>;

const USAGE: &str = "usage: load_client rewrite <file> <interval ms> <duration s>
       load_client events <eval url> <file> <count>
       load_client watchers <sync url> <file> <daemon pid> <connections> <streams each>
       load_client override <eval url> <sync url> <admin url> <count>";

/// The flag whose value changes with every rewrite.
const MARKER_FLAG: &str = "load-bench-marker";

/// How long one change may take to arrive before the measurement gives up.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two measured rewrites: longer than the file source's debounce, so that each
/// rewrite is read on its own.
const PAUSE: Duration = Duration::from_millis(150);

/// A flag file and the document it started as.
struct FlagFile {
    path: PathBuf,
    temporary: PathBuf,
    template: Value,
}

impl FlagFile {
    fn open(path: &Path) -> Result<FlagFile, Error> {
        let template: Value = serde_json::from_slice(&std::fs::read(path)?)?;
        if !template.get("flags").is_some_and(Value::is_object) {
            return Err(format!("{} has no flags object", path.display()).into());
        }
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".tmp-{}", std::process::id()));
        Ok(FlagFile {
            path: path.to_owned(),
            temporary: path.with_file_name(name),
            template,
        })
    }

    /// Writes the document with the marker flag at `revision`: temporary file, then rename.
    fn write(&self, revision: u64) -> Result<(), Error> {
        let mut document = self.template.clone();
        if let Some(flags) = document.get_mut("flags").and_then(Value::as_object_mut) {
            flags.insert(MARKER_FLAG.to_owned(), marker(revision));
        }
        std::fs::write(&self.temporary, serde_json::to_vec(&document)?)?;
        std::fs::rename(&self.temporary, &self.path)?;
        Ok(())
    }
}

/// The value the marker flag carries at `revision`.
fn marker_value(revision: u64) -> String {
    format!("rev-{revision}")
}

fn marker(revision: u64) -> Value {
    json!({
        "state": "ENABLED",
        "variants": { "v": marker_value(revision) },
        "defaultVariant": "v",
    })
}

fn rewrite(file: &Path, interval: Duration, duration: Duration) -> Result<(), Error> {
    let file = FlagFile::open(file)?;
    let started = Instant::now();
    let mut next = started;
    let mut writes = 0u64;
    while started.elapsed() < duration {
        writes += 1;
        file.write(writes)?;
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    println!(
        "{}",
        json!({ "writes": writes, "seconds": started.elapsed().as_secs_f64() })
    );
    Ok(())
}

/// The `q` quantile (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: the smallest value with at least q of the values at or below it.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

async fn events(url: &str, file: &Path, count: u64) -> Result<(), Error> {
    let file = FlagFile::open(file)?;
    let mut client = ServiceClient::connect(url.to_owned()).await?;
    let mut events = client
        .event_stream(EventStreamRequest {})
        .await?
        .into_inner();
    // The stream opens with provider_ready; only then are changes reported to this subscriber.
    loop {
        match tokio::time::timeout(EVENT_TIMEOUT, events.message()).await {
            Ok(Ok(Some(event))) if event.r#type == "provider_ready" => break,
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err("the event stream ended before provider_ready".into()),
            Ok(Err(status)) => return Err(status.into()),
            Err(_) => return Err("no provider_ready".into()),
        }
    }
    let mut millis = Vec::new();
    let mut extra = 0u64;
    for revision in 1..=count {
        let started = Instant::now();
        file.write(revision)?;
        loop {
            match tokio::time::timeout(EVENT_TIMEOUT, events.message()).await {
                Ok(Ok(Some(event))) if event.r#type == "configuration_change" => break,
                Ok(Ok(Some(_))) => {}
                Ok(Ok(None)) => return Err("the event stream ended".into()),
                Ok(Err(status)) => return Err(status.into()),
                Err(_) => {
                    return Err(format!("no configuration_change for write {revision}").into());
                }
            }
        }
        millis.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(PAUSE).await;
        // A second event for the same write would be taken for the next write's; count and drop
        // any that came in the pause.
        while let Ok(Ok(Some(event))) =
            tokio::time::timeout(Duration::from_millis(1), events.message()).await
        {
            if event.r#type == "configuration_change" {
                extra += 1;
            }
        }
    }
    let mut fields = serde_json::Map::new();
    fields.insert("writes".into(), json!(count));
    summary(&mut fields, "", millis);
    fields.insert("extra_events".into(), json!(extra));
    println!("{}", Value::Object(fields));
    Ok(())
}

/// The resident memory of process `pid` in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for process {pid}").into())
}

/// What a watcher reports to the coordinator.
enum Report {
    /// The stream delivered its first payload.
    Ready,
    /// The stream failed before or while waiting for its first payload.
    Failed(String),
    /// The stream delivered a payload with the awaited marker at this instant.
    Seen(Instant),
}

/// One SyncFlags stream: reports its first payload, then the arrival of each payload that
/// contains the marker `wanted` holds at that moment.
async fn watch_one(
    mut client: FlagSyncServiceClient<Channel>,
    id: String,
    wanted: watch::Receiver<String>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let request = SyncFlagsRequest {
        provider_id: id,
        selector: String::new(),
    };
    let mut stream = match client.sync_flags(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            let _ = reports.send(Report::Failed(status.to_string()));
            return;
        }
    };
    match stream.message().await {
        Ok(Some(_)) => {
            let _ = reports.send(Report::Ready);
        }
        Ok(None) => {
            let _ = reports.send(Report::Failed("stream ended".to_owned()));
            return;
        }
        Err(status) => {
            let _ = reports.send(Report::Failed(status.to_string()));
            return;
        }
    }
    while let Ok(Some(message)) = stream.message().await {
        let now = Instant::now();
        let wanted = wanted.borrow().clone();
        if !wanted.is_empty() && message.flag_configuration.contains(&wanted) {
            let _ = reports.send(Report::Seen(now));
        }
    }
}

async fn watchers(
    url: &str,
    file: &Path,
    pid: u32,
    connections: usize,
    streams: usize,
) -> Result<(), Error> {
    let file = FlagFile::open(file)?;
    let total = connections * streams;
    let rss_before = rss_kib(pid)?;
    let (wanted_tx, wanted_rx) = watch::channel(String::new());
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let opening = Instant::now();
    for c in 0..connections {
        // Each connected channel is one HTTP/2 connection; its clients share it as streams.
        let channel = Endpoint::from_shared(url.to_owned())?.connect().await?;
        for s in 0..streams {
            let client =
                FlagSyncServiceClient::new(channel.clone()).max_decoding_message_size(usize::MAX);
            tokio::spawn(watch_one(
                client,
                format!("load-{c}-{s}"),
                wanted_rx.clone(),
                reports_tx.clone(),
            ));
        }
    }
    drop(reports_tx);
    let mut ready = 0;
    while ready < total {
        match tokio::time::timeout(Duration::from_secs(60), reports.recv()).await {
            Ok(Some(Report::Ready)) => ready += 1,
            Ok(Some(Report::Failed(e))) => return Err(format!("a stream failed: {e}").into()),
            Ok(Some(Report::Seen(_))) => {}
            Ok(None) => return Err("every watcher ended".into()),
            Err(_) => return Err(format!("only {ready} of {total} streams opened").into()),
        }
    }
    let opened_ms = opening.elapsed().as_secs_f64() * 1000.0;
    // Let buffers that grew while streams opened settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid)?;

    // A revision no earlier run of this client can have left in the file.
    let revision = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let _ = wanted_tx.send(format!("\"{}\"", marker_value(revision)));
    let started = Instant::now();
    file.write(revision)?;
    let mut millis = Vec::with_capacity(total);
    while millis.len() < total {
        match tokio::time::timeout(EVENT_TIMEOUT, reports.recv()).await {
            Ok(Some(Report::Seen(at))) => {
                millis.push(at.saturating_duration_since(started).as_secs_f64() * 1000.0);
            }
            Ok(Some(Report::Failed(e))) => return Err(format!("a stream failed: {e}").into()),
            Ok(Some(Report::Ready)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let notified = millis.len();
    let grown = rss_after.saturating_sub(rss_before);
    let mut fields = json!({
        "streams": total,
        "connections": connections,
        "open_ms": opened_ms,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "bytes_per_stream": (grown * 1024) as f64 / total as f64,
        "notified": notified,
    });
    if let Some(fields) = fields.as_object_mut() {
        summary(fields, "", millis);
    }
    println!("{fields}");
    if notified < total {
        return Err(format!("only {notified} of {total} streams saw the change").into());
    }
    Ok(())
}

/// The flag the override measurement switches (bundled flags: `blue` by default).
const SWITCHED_FLAG: &str = "blue-green-deployment";

/// One plain HTTP/1.1 request to the admin API; returns the status code and the body.
async fn admin_request(
    base: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), Error> {
    let authority = base
        .strip_prefix("http://")
        .ok_or("the admin URL must start with http://")?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {text}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    Ok((status, body.unwrap_or_default()))
}

/// Whether an EventStream `configuration_change` names `flag` in its `flags` object.
fn event_names(data: Option<&pbjson_types::Struct>, flag: &str) -> bool {
    use pbjson_types::value::Kind;
    data.and_then(|d| d.fields.get("flags")).is_some_and(
        |v| matches!(&v.kind, Some(Kind::StructValue(s)) if s.fields.contains_key(flag)),
    )
}

/// The default variant a sync payload gives `flag`.
fn synced_default(payload: &str, flag: &str) -> Option<String> {
    let document: Value = serde_json::from_str(payload).ok()?;
    let variant = document.get("flags")?.get(flag)?.get("defaultVariant")?;
    variant.as_str().map(str::to_owned)
}

/// Percentiles of one series of times, as JSON fields named `<prefix>p50_ms`, `<prefix>p99_ms`
/// and `<prefix>max_ms`.
fn summary(fields: &mut serde_json::Map<String, Value>, prefix: &str, mut millis: Vec<f64>) {
    millis.sort_by(f64::total_cmp);
    fields.insert(format!("{prefix}p50_ms"), json!(quantile(&millis, 0.50)));
    fields.insert(format!("{prefix}p99_ms"), json!(quantile(&millis, 0.99)));
    fields.insert(format!("{prefix}max_ms"), json!(quantile(&millis, 1.0)));
}

async fn overrides(eval: &str, sync: &str, admin: &str, count: u64) -> Result<(), Error> {
    let mut client = ServiceClient::connect(eval.to_owned()).await?;
    // EventStream: every configuration_change that names the flag, with its arrival time.
    let mut events = client
        .event_stream(EventStreamRequest {})
        .await?
        .into_inner();
    match tokio::time::timeout(EVENT_TIMEOUT, events.message()).await {
        Ok(Ok(Some(event))) if event.r#type == "provider_ready" => {}
        _ => return Err("no provider_ready on the event stream".into()),
    }
    let (event_tx, mut event_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = events.message().await {
            if event.r#type == "configuration_change"
                && event_names(event.data.as_ref(), SWITCHED_FLAG)
            {
                let _ = event_tx.send(Instant::now());
            }
        }
    });
    // SyncFlags: the default variant of every payload, with its arrival time.
    let mut sync_client = FlagSyncServiceClient::connect(sync.to_owned())
        .await?
        .max_decoding_message_size(usize::MAX);
    let mut payloads = sync_client
        .sync_flags(SyncFlagsRequest {
            provider_id: "override-bench".to_owned(),
            selector: String::new(),
        })
        .await?
        .into_inner();
    match tokio::time::timeout(EVENT_TIMEOUT, payloads.message()).await {
        Ok(Ok(Some(_))) => {}
        _ => return Err("no first sync payload".into()),
    }
    let (sync_tx, mut sync_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(message)) = payloads.message().await {
            let now = Instant::now();
            if let Some(variant) = synced_default(&message.flag_configuration, SWITCHED_FLAG) {
                let _ = sync_tx.send((now, variant));
            }
        }
    });

    let path = format!("/v1/flags/{SWITCHED_FLAG}/override");
    let (mut ack, mut rpc, mut event, mut synced) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rpc_after_ack, mut event_after_ack, mut sync_after_ack) =
        (Vec::new(), Vec::new(), Vec::new());
    let since =
        |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1000.0;
    for i in 1..=count {
        let variant = if i % 2 == 1 { "green" } else { "blue" };
        let body = json!({"defaultVariant": variant, "reason": format!("bench {i}"), "actor": "load_client"});
        let started = Instant::now();
        let (status, answer) = admin_request(admin, "PUT", &path, &body.to_string()).await?;
        let acked = Instant::now();
        if status != 200 {
            return Err(format!("the override was refused ({status}): {answer}").into());
        }
        // RPC: the first resolution after the acknowledgement that serves the new variant.
        let served = loop {
            let response = client
                .resolve_string(ResolveStringRequest {
                    flag_key: SWITCHED_FLAG.to_owned(),
                    context: None,
                })
                .await?
                .into_inner();
            if response.variant == variant {
                break Instant::now();
            }
            if started.elapsed() > EVENT_TIMEOUT {
                return Err(
                    format!("RPC still serves {} after switch {i}", response.variant).into(),
                );
            }
        };
        let changed = match tokio::time::timeout(EVENT_TIMEOUT, event_rx.recv()).await {
            Ok(Some(at)) => at,
            _ => return Err(format!("no configuration_change for switch {i}").into()),
        };
        let delivered = loop {
            match tokio::time::timeout(EVENT_TIMEOUT, sync_rx.recv()).await {
                Ok(Some((at, v))) if v == variant => break at,
                Ok(Some(_)) => {}
                _ => return Err(format!("no sync payload for switch {i}").into()),
            }
        };
        ack.push(since(started, acked));
        rpc.push(since(started, served));
        event.push(since(started, changed));
        synced.push(since(started, delivered));
        rpc_after_ack.push(since(acked, served));
        event_after_ack.push(since(acked, changed));
        sync_after_ack.push(since(acked, delivered));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, answer) = admin_request(admin, "DELETE", &path, "").await?;
    if status != 200 {
        return Err(format!("clearing the override failed ({status}): {answer}").into());
    }
    let mut fields = serde_json::Map::new();
    fields.insert("switches".into(), json!(count));
    summary(&mut fields, "ack_", ack);
    summary(&mut fields, "rpc_", rpc);
    summary(&mut fields, "event_", event);
    summary(&mut fields, "sync_", synced);
    summary(&mut fields, "rpc_after_ack_", rpc_after_ack);
    summary(&mut fields, "event_after_ack_", event_after_ack);
    summary(&mut fields, "sync_after_ack_", sync_after_ack);
    println!("{}", Value::Object(fields));
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|_| format!("not a number: {s}\n{USAGE}").into())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["rewrite", file, interval, duration] => (|| {
            rewrite(
                Path::new(file),
                Duration::from_millis(number(interval)?),
                Duration::from_secs(number(duration)?),
            )
        })(),
        ["events", url, file, count] => (|| {
            let count = number(count)?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(events(url, Path::new(file), count))
        })(),
        ["watchers", url, file, pid, connections, streams] => (|| {
            let pid = number(pid)?;
            let connections = number(connections)?;
            let streams = number(streams)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(watchers(url, Path::new(file), pid, connections, streams))
        })(),
        ["override", eval, sync, admin, count] => (|| {
            let count = number(count)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(overrides(eval, sync, admin, count))
        })(),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load_client: {e}");
            ExitCode::FAILURE
        }
    }
}
