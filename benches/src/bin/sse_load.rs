//! The OFREP event-stream load (`benches/load/run.sh sse`): many `/ofrep/v1/sse` streams
//! against one daemon, each a plain HTTP/1.1 connection as a browser's `EventSource` opens it.
//!
//! Usage: `sse_load <OFREP base url> <flag file> <daemon pid> <streams> <contexts>`
//!
//! - `contexts` 0: every stream is the plain `/ofrep/v1/sse` (the selection's version as etag);
//! - `contexts` N: N distinct evaluation contexts; each client first makes its bulk request and
//!   connects to the stream that answer advertises (`?ctx=` token), as the web provider does,
//!   stream i with context i mod N. A change then renders the bulk body of every context.
//!
//! Measures, in this order: the daemon's resident memory with no stream (the baseline); one
//! stream's change -> event latency (three rewrites of the file: the reload's own cost); the
//! memory with all streams open; and three times change -> every stream notified, timed from
//! the start of the file write (write, rename, the file source's debounce and reload included)
//! to each stream's event. Prints one JSON line (times in milliseconds).
//!
//! Each rewrite changes the marker flag `load-bench-marker` (its only variant carries the
//! revision), which every selection sees and which changes every context's bulk answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

type Error = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str =
    "usage: sse_load <OFREP base url> <flag file> <daemon pid> <streams> <contexts>";

/// The flag whose value every rewrite changes.
const MARKER_FLAG: &str = "load-bench-marker";

/// Change rounds over all streams (and over the single baseline stream).
const ROUNDS: usize = 3;

/// Bulk-request connections used while clients open their streams.
const OPENERS: usize = 8;

/// Streams being opened at once (plain streams).
const OPENING: usize = 256;

/// How long one change may take to reach every stream.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(60);

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
            flags.insert(
                MARKER_FLAG.to_owned(),
                json!({"state": "ENABLED", "variants": {"v": format!("rev-{revision}")}, "defaultVariant": "v"}),
            );
        }
        std::fs::write(&self.temporary, serde_json::to_vec(&document)?)?;
        std::fs::rename(&self.temporary, &self.path)?;
        Ok(())
    }
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

/// The `q` quantile (0..=1) of sorted `values`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// One keep-alive HTTP/1.1 connection for bulk requests.
struct BulkClient {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

impl BulkClient {
    async fn connect(addr: SocketAddr) -> Result<BulkClient, Error> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(BulkClient {
            stream,
            host: addr.to_string(),
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Posts a bulk request with `context`; returns the advertised stream's requestUri.
    async fn request_uri(&mut self, context: &Value) -> Result<String, Error> {
        let body = json!({ "context": context }).to_string();
        // One write: a head and a body written apart would wait for a delayed ACK.
        let request = format!(
            "POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        let (status, body) = self.read_response().await?;
        if status != 200 {
            return Err(format!("bulk request: HTTP {status}").into());
        }
        let answer: Value = serde_json::from_slice(&body)?;
        answer["eventStreams"][0]["endpoint"]["requestUri"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "the bulk answer advertises no event stream".into())
    }

    /// Reads one response with a `content-length` body.
    async fn read_response(&mut self) -> Result<(u16, Vec<u8>), Error> {
        loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buffer[..end]).to_ascii_lowercase();
                let status: u16 = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or("a response without a status")?;
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .ok_or("a response without content-length")?;
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill().await?;
                }
                let body = self.buffer[end + 4..total].to_vec();
                self.buffer.drain(..total);
                return Ok((status, body));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> Result<(), Error> {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the connection closed".into());
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// One event stream: connects, reports when its headers arrived, then reports the arrival
/// time of every `refetchEvaluation` event until the connection ends.
async fn follow(
    addr: SocketAddr,
    uri: String,
    opened: oneshot::Sender<Result<(), String>>,
    seen: mpsc::UnboundedSender<Instant>,
) {
    let mut stream = match connect_stream(addr, &uri).await {
        Ok(stream) => {
            let _ = opened.send(Ok(()));
            stream
        }
        Err(e) => {
            let _ = opened.send(Err(e.to_string()));
            return;
        }
    };
    const NEEDLE: &[u8] = b"refetchEvaluation";
    let mut buffer = [0u8; 512];
    // The end of the previous read, in case the needle is split between two reads.
    let mut carried = 0;
    loop {
        let n = match stream.read(&mut buffer[carried..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let now = Instant::now();
        let filled = carried + n;
        let found = buffer[..filled]
            .windows(NEEDLE.len())
            .filter(|w| *w == NEEDLE)
            .count();
        for _ in 0..found {
            let _ = seen.send(now);
        }
        let keep = if found > 0 {
            0
        } else {
            (NEEDLE.len() - 1).min(filled)
        };
        buffer.copy_within(filled - keep..filled, 0);
        carried = keep;
    }
}

async fn connect_stream(addr: SocketAddr, uri: &str) -> Result<TcpStream, Error> {
    let mut stream = TcpStream::connect(addr).await?;
    let head = format!("GET {uri} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    // The head ends the server's first write (an event, if any, comes later), so reading until
    // its end reads nothing of the body.
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the stream closed before its headers".into());
        }
        head.extend_from_slice(&chunk[..n]);
        if head.len() > 8192 {
            return Err("oversized response head".into());
        }
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!("stream: {}", String::from_utf8_lossy(&head)).into());
    }
    Ok(stream)
}

/// Opens one stream and waits until its headers arrived.
async fn open_one(
    addr: SocketAddr,
    uri: String,
    seen: &mpsc::UnboundedSender<Instant>,
) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    tokio::spawn(follow(addr, uri, tx, seen.clone()));
    rx.await
        .map_err(|_| "a stream task ended")?
        .map_err(Into::into)
}

/// Opens `streams` streams: plain, or each after its client's bulk request (context i mod
/// `contexts`).
async fn open_all(
    addr: SocketAddr,
    streams: usize,
    contexts: usize,
    seen: &mpsc::UnboundedSender<Instant>,
) -> Result<(), Error> {
    let mut workers = tokio::task::JoinSet::new();
    if contexts == 0 {
        let permits = Arc::new(Semaphore::new(OPENING));
        for _ in 0..streams {
            let permit = permits.clone().acquire_owned().await?;
            let seen = seen.clone();
            workers.spawn(async move {
                let opened = open_one(addr, "/ofrep/v1/sse".to_owned(), &seen).await;
                drop(permit);
                opened
            });
        }
    } else {
        for worker in 0..OPENERS {
            let seen = seen.clone();
            workers.spawn(async move {
                let mut bulk = BulkClient::connect(addr).await?;
                for i in (worker..streams).step_by(OPENERS) {
                    let context =
                        json!({"targetingKey": format!("user-{}", i % contexts), "plan": "pro"});
                    let uri = bulk.request_uri(&context).await?;
                    open_one(addr, uri, &seen).await?;
                }
                Ok(())
            });
        }
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// Rewrites the file `ROUNDS` times and times each stream's event from the write's start.
/// Returns one summary per round.
async fn rounds(
    file: &FlagFile,
    revision: &mut u64,
    streams: usize,
    seen: &mut mpsc::UnboundedReceiver<Instant>,
) -> Result<Vec<Value>, Error> {
    let mut out = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        // Anything left over (keep-alives carry no needle, so nothing should be).
        while seen.try_recv().is_ok() {}
        *revision += 1;
        let started = Instant::now();
        file.write(*revision)?;
        let mut millis = Vec::with_capacity(streams);
        while millis.len() < streams {
            match tokio::time::timeout(NOTIFY_TIMEOUT, seen.recv()).await {
                Ok(Some(at)) => {
                    millis.push(at.saturating_duration_since(started).as_secs_f64() * 1000.0)
                }
                _ => {
                    return Err(format!(
                        "only {} of {streams} streams were notified",
                        millis.len()
                    )
                    .into());
                }
            }
        }
        millis.sort_by(f64::total_cmp);
        out.push(json!({
            "first_ms": quantile(&millis, 0.0),
            "p50_ms": quantile(&millis, 0.50),
            "p99_ms": quantile(&millis, 0.99),
            "max_ms": quantile(&millis, 1.0),
        }));
        // Longer than the file source's debounce, so that rounds do not merge.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(out)
}

fn worst(rounds: &[Value], field: &str) -> f64 {
    rounds
        .iter()
        .filter_map(|r| r[field].as_f64())
        .fold(f64::NAN, f64::max)
}

async fn run(
    base: &str,
    file: &Path,
    pid: u32,
    streams: usize,
    contexts: usize,
) -> Result<(), Error> {
    let addr: SocketAddr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .map_err(|_| format!("expected http://<ip>:<port>, got {base}"))?;
    let file = FlagFile::open(file)?;
    // The marker flag is in the file before anything is measured.
    let mut revision = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    file.write(revision)?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid)?;

    // One stream alone: what a change costs before any fan-out.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    open_all(addr, 1, 0, &seen_tx).await?;
    let single = rounds(&file, &mut revision, 1, &mut seen).await?;
    drop(seen);

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let opening = Instant::now();
    open_all(addr, streams, contexts, &seen_tx).await?;
    let open_ms = opening.elapsed().as_secs_f64() * 1000.0;
    // Let buffers that grew while streams opened settle before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid)?;
    let all = rounds(&file, &mut revision, streams, &mut seen).await?;
    let grown = rss_after.saturating_sub(rss_before);
    let result = json!({
        "streams": streams,
        "contexts": contexts,
        "open_ms": open_ms,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "bytes_per_stream": (grown * 1024) as f64 / streams as f64,
        "single_p50_ms": worst(&single, "p50_ms"),
        "p50_ms": worst(&all, "p50_ms"),
        "p99_ms": worst(&all, "p99_ms"),
        "max_ms": worst(&all, "max_ms"),
        "single_rounds": single,
        "rounds": all,
    });
    println!("{result}");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = (|| -> Result<(), Error> {
        let [base, file, pid, streams, contexts] = args.as_slice() else {
            return Err(USAGE.into());
        };
        let number = |s: &str| -> Result<usize, Error> {
            s.parse()
                .map_err(|_| format!("not a number: {s}\n{USAGE}").into())
        };
        let pid = u32::try_from(number(pid)?)?;
        let (streams, contexts) = (number(streams)?, number(contexts)?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(run(base, Path::new(file), pid, streams, contexts))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sse_load: {e}");
            ExitCode::FAILURE
        }
    }
}
