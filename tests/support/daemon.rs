//! A real daemon for tests: `flagd_rs::run` on 127.0.0.1 with ports chosen by the OS, plus a
//! minimal HTTP/1.1 client for its ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flagd_rs::config::Config;
use flagd_rs::sources::SourceSpec;
use flagd_rs::{BoundPorts, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long [`TestDaemon::wait_ready`] waits for `/readyz` before failing the test.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon running inside the test process.
#[derive(Debug)]
pub struct TestDaemon {
    /// The evaluation port (`None` when serving on a unix socket).
    pub eval_port: Option<u16>,
    /// The management port.
    pub management_port: u16,
    /// The admin API port.
    pub admin_port: u16,
    /// The OFREP port.
    pub ofrep_port: u16,
    /// The sync port (`None` when serving on a unix socket).
    pub sync_port: Option<u16>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The daemon's own state directory, unless the test chose one; removed with the daemon.
    _state: Option<tempfile::TempDir>,
}

impl TestDaemon {
    /// Starts a daemon serving `flag_files` (in priority order; none = the bundled flags) and
    /// waits until it is ready.
    pub async fn start<P: AsRef<Path>>(flag_files: &[P]) -> TestDaemon {
        TestDaemon::start_with(config_for(flag_files)).await
    }

    /// Starts a daemon with `config` (host and ports are replaced by 127.0.0.1:0) and waits
    /// until it is ready.
    pub async fn start_with(config: Config) -> TestDaemon {
        let daemon = TestDaemon::spawn(config).await;
        daemon.wait_ready().await;
        daemon
    }

    /// Starts a daemon with `config` (host and ports are replaced by 127.0.0.1:0) without
    /// waiting for readiness. Unless `config.state_dir` was changed from the default, the
    /// daemon gets a fresh temporary state directory, so daemons never share a journal.
    pub async fn spawn(mut config: Config) -> TestDaemon {
        config.host = [127, 0, 0, 1].into();
        config.port = 0;
        config.management_port = 0;
        config.admin_port = 0;
        let state = if config.state_dir == Config::default().state_dir {
            let dir = tempfile::tempdir().expect("temporary state directory");
            config.state_dir = dir.path().join("state");
            Some(dir)
        } else {
            None
        };
        let listeners = Listeners::bind(&config).await.expect("bind test listeners");
        let BoundPorts { eval, management } = listeners.ports().expect("bound ports");
        let admin_port = listeners.admin_port().expect("admin port");
        let ofrep_port = listeners.ofrep_port().expect("OFREP port");
        let sync_port = listeners.sync_port().expect("sync port");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(flagd_rs::run(config, listeners, async move {
            // A dropped sender (the test ended) also stops the daemon.
            let _ = rx.await;
        }));
        TestDaemon {
            eval_port: eval,
            management_port: management,
            admin_port,
            ofrep_port,
            sync_port,
            shutdown: Some(tx),
            task: Some(task),
            _state: state,
        }
    }

    /// The evaluation port; panics for a daemon on a unix socket.
    pub fn eval_port(&self) -> u16 {
        self.eval_port.expect("the daemon listens on a unix socket")
    }

    /// `http://127.0.0.1:<eval port>`.
    pub fn eval_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.eval_port())
    }

    /// `http://127.0.0.1:<management port>`.
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.management_port)
    }

    /// Polls `/readyz` until it answers 200; panics after a timeout or if the daemon stopped.
    pub async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(task) = &self.task {
                assert!(
                    !task.is_finished(),
                    "the daemon stopped before becoming ready"
                );
            }
            if get(self.management_port, "/readyz")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the daemon did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Fires the shutdown future without waiting for the daemon to stop.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (bounded) for `run` to return, after [`TestDaemon::trigger_shutdown`].
    pub async fn join(mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("joined twice");
        match tokio::time::timeout(Duration::from_secs(20), task).await {
            Ok(joined) => joined?,
            Err(_) => anyhow::bail!("the daemon did not stop within 20 s"),
        }
    }

    /// Shuts the daemon down and returns what `run` returned.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.trigger_shutdown();
        self.join().await
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// A configuration serving `flag_files` as file sources, in order.
pub fn config_for<P: AsRef<Path>>(flag_files: &[P]) -> Config {
    let sources = flag_files
        .iter()
        .map(|p| {
            SourceSpec::from_uri(&format!("file:{}", p.as_ref().display())).expect("file source")
        })
        .collect();
    Config {
        sources,
        ..Config::default()
    }
}

/// The repository root (the workspace directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// One HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding removed).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET path` on 127.0.0.1:`port`.
pub async fn get(port: u16, path: &str) -> std::io::Result<HttpResponse> {
    request(port, "GET", path, &[], b"").await
}

/// `POST path` with a JSON body on 127.0.0.1:`port`.
pub async fn post_json(port: u16, path: &str, body: &str) -> std::io::Result<HttpResponse> {
    request(
        port,
        "POST",
        path,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
    .await
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole response.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    read_response(&mut stream).await
}

/// Reads one complete response from a connection the server closes after it.
pub async fn read_response(stream: &mut TcpStream) -> std::io::Result<HttpResponse> {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "response timed out"))??;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad response: {}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// Parses a raw HTTP/1.1 response, skipping interim `1xx` responses.
pub fn parse_response(mut raw: &[u8]) -> Option<HttpResponse> {
    loop {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(raw.get(..end)?).ok()?;
        let rest = raw.get(end + 4..)?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        if (100..200).contains(&status) {
            raw = rest;
            continue;
        }
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            dechunk(rest)?
        } else {
            rest.to_vec()
        };
        return Some(HttpResponse {
            status,
            headers,
            body,
        });
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(data.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = data.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
