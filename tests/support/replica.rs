//! A fleet replica: the real `flagd-rs` executable started with `--store`, on free loopback
//! ports, as a separate process a test can kill -9, stop (SIGSTOP), continue and restart on the
//! same ports and state directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ports::free_port;

/// How long a replica may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One replica process.
#[derive(Debug)]
pub struct Replica {
    /// Its `--replica-id`.
    pub id: String,
    child: Option<Child>,
    flags: PathBuf,
    state: PathBuf,
    store: String,
    extra: Vec<String>,
    /// The evaluation port.
    pub eval: u16,
    /// The management port.
    pub management: u16,
    /// The OFREP port.
    pub ofrep: u16,
    /// The admin port.
    pub admin: u16,
    sync: u16,
    log: PathBuf,
}

impl Replica {
    /// Starts replica `id` serving `flags`, sharing `store` (an `etcd://` URL), keeping its
    /// cache in `state`, with `extra` start options; does not wait for it to be ready.
    pub fn spawn(id: &str, flags: &Path, state: &Path, store: &str, extra: &[&str]) -> Replica {
        let mut replica = Replica {
            id: id.to_owned(),
            child: None,
            flags: flags.to_owned(),
            state: state.to_owned(),
            store: store.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            eval: free_port(),
            management: free_port(),
            ofrep: free_port(),
            admin: free_port(),
            sync: free_port(),
            log: state.with_extension("log"),
        };
        replica.launch();
        replica
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(crate::binary::flagd_rs());
        cmd.arg("start")
            .arg("--uri")
            .arg(format!("file:{}", self.flags.display()))
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--store")
            .arg(&self.store)
            .arg("--replica-id")
            .arg(&self.id)
            .args(&self.extra);
        for (option, port) in [
            ("--port", self.eval),
            ("--management-port", self.management),
            ("--sync-port", self.sync),
            ("--ofrep-port", self.ofrep),
            ("--admin-port", self.admin),
        ] {
            cmd.arg(option).arg(port.to_string());
        }
        cmd.env_remove("RUST_LOG")
            .env("FLAGD_LOG_FORMAT", "console")
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the replica runs").id()
    }

    /// Waits until `/readyz` answers 200; panics with the replica's log after the timeout.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("replica {} exited with {status}:\n{}", self.id, self.log());
            }
            if crate::daemon::get(self.management, "/readyz")
                .await
                .is_ok_and(|r| r.status == 200)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("replica {} not ready:\n{}", self.id, self.log());
    }

    /// The replica's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// The OFREP evaluation of `flag` for `key`: the whole answer.
    pub async fn evaluate(&self, flag: &str, key: &str) -> Value {
        let body = json!({"context": {"targetingKey": key}}).to_string();
        let response = crate::daemon::post_json(
            self.ofrep,
            &format!("/ofrep/v1/evaluate/flags/{flag}"),
            &body,
        )
        .await
        .unwrap();
        serde_json::from_str(&response.text()).unwrap_or(Value::Null)
    }

    /// The variant served for `flag` and `key`.
    pub async fn variant(&self, flag: &str, key: &str) -> Option<String> {
        self.evaluate(flag, key).await["variant"]
            .as_str()
            .map(str::to_owned)
    }

    /// Waits until the replica serves `variant` for `flag` and `key`; returns how long that
    /// took, or `None` after `timeout`.
    pub async fn wait_variant(
        &self,
        flag: &str,
        key: &str,
        variant: &str,
        timeout: Duration,
    ) -> Option<Duration> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.variant(flag, key).await.as_deref() == Some(variant) {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }

    /// A metric's value from `/metrics` (the first sample whose line starts with `name`).
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = crate::daemon::get(self.management, "/metrics")
            .await
            .ok()?
            .text();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.split([' ', '{']).next() == Some(name))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`, `TERM`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// kill -9, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the process with SIGTERM and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same ports and state directory (after kill9/terminate).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the replica still runs");
        self.launch();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
