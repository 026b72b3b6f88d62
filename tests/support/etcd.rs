//! A real etcd cluster for the fleet tests: N members (3 by default) of Debian's `etcd` on
//! loopback ports in a temporary directory, with short raft timeouts so that elections after a
//! failure take a fraction of a second.
//!
//! Members can be killed (`kill -9`), frozen (`SIGSTOP`) and thawed (`SIGCONT`), and restarted
//! on their data. Every process is killed when the cluster is dropped. A missing `etcd`
//! follows [`crate::require`]'s rule (skipped on a bare machine, a failure under
//! `FLAGD_TESTBED_REQUIRED=1`); an `etcd` that is installed but does not start is always a
//! failure.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flagd_rs::fleet::etcd::{EtcdClient, EtcdConfig, Get, KeyRange, Put};

use crate::ports::free_port;
use crate::require;

/// How to get the program.
const INSTALL: &str = "install it with `apt-get install -y etcd-server` (or set FLAGD_ETCD to \
                       an etcd 3.4+ binary)";

/// How long a start or restart may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`EtcdCluster::leader`] waits for an elected leader.
const LEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// Raft heartbeat and election timeout, in milliseconds: short, so that failover is quick.
const HEARTBEAT_MS: u32 = 50;
const ELECTION_MS: u32 = 500;

/// Attempts at starting a cluster (a loopback port chosen free may be taken before etcd binds
/// it).
const START_ATTEMPTS: usize = 3;

/// The `etcd` program: `FLAGD_ETCD`, else `etcd` on the `PATH`; when neither exists, reports
/// `suite` as skipped (or fails it) and returns `None`.
pub fn program(suite: &str) -> Option<PathBuf> {
    let found = match std::env::var_os("FLAGD_ETCD").filter(|v| !v.is_empty()) {
        Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("etcd"))
                .find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        require::missing(suite, "etcd is not installed", INSTALL);
    }
    found
}

/// One member: its ports, its process and whether it is frozen.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    process: Option<Child>,
    stopped: bool,
}

/// A running etcd cluster on loopback.
#[derive(Debug)]
pub struct EtcdCluster {
    program: PathBuf,
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    /// More arguments for every member.
    args: Vec<String>,
    /// One client over every member, for status and compaction.
    client: EtcdClient,
}

impl EtcdCluster {
    /// Starts a 3-member cluster and waits until it serves; `None` when etcd is not installed
    /// and the suite may be skipped. Must be called inside a tokio runtime (the cluster's
    /// client lives on it).
    pub async fn start(suite: &str) -> Option<EtcdCluster> {
        EtcdCluster::start_with(suite, 3).await
    }

    /// Starts a cluster of `members` members and waits until it serves.
    pub async fn start_with(suite: &str, members: usize) -> Option<EtcdCluster> {
        EtcdCluster::start_with_args(suite, members, &[]).await
    }

    /// Starts a cluster of `members` members, each also given `args`, and waits until it
    /// serves.
    pub async fn start_with_args(
        suite: &str,
        members: usize,
        args: &[&str],
    ) -> Option<EtcdCluster> {
        let program = program(suite)?;
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let mut cluster = EtcdCluster::spawn(&program, members, args.clone());
            match cluster.wait_serving(START_TIMEOUT).await {
                Ok(()) => return Some(cluster),
                Err(e) => failures.push(format!("{e}\n{}", cluster.logs())),
            }
        }
        panic!(
            "{suite}: etcd ({}) did not start a {members}-member cluster:\n{}",
            program.display(),
            failures.join("\n---\n")
        );
    }

    fn spawn(program: &Path, members: usize, args: Vec<String>) -> EtcdCluster {
        static CLUSTERS: AtomicU64 = AtomicU64::new(0);
        let dir = tempfile::tempdir().expect("a directory for etcd's data");
        let token = format!(
            "flagd-rs-test-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::Relaxed)
        );
        let members: Vec<Member> = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                process: None,
                stopped: false,
            })
            .collect();
        let endpoints: Vec<String> = members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        let client = EtcdClient::connect(EtcdConfig::new(endpoints)).expect("an etcd client");
        let mut cluster = EtcdCluster {
            program: program.to_owned(),
            dir,
            token,
            members,
            args,
            client,
        };
        for i in 0..cluster.members.len() {
            cluster.launch(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, member: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[member].name))
    }

    /// Starts member `i`'s process (on its existing data, if any).
    fn launch(&mut self, i: usize) {
        let initial_cluster = self.initial_cluster();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("an etcd log file");
        let member = &self.members[i];
        let client_url = format!("http://127.0.0.1:{}", member.client_port);
        let peer_url = format!("http://127.0.0.1:{}", member.peer_port);
        let data = self.dir.path().join(format!("{}.etcd", member.name));
        let mut command = Command::new(&self.program);
        command
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(&data)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", &HEARTBEAT_MS.to_string()])
            .args(["--election-timeout", &ELECTION_MS.to_string()])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // The environment's own etcd settings (ETCD_*) must not reach the test members.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ETCD_") {
                command.env_remove(key);
            }
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.program.display()));
        let member = &mut self.members[i];
        member.process = Some(child);
        member.stopped = false;
    }

    /// The last lines of every member's log.
    fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(15)..].join("\n");
                format!("== {} ==\n{tail}", self.members[i].name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until every running member reports a leader and a write and a linearizable read
    /// go through.
    async fn wait_serving(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            for member in &mut self.members {
                if let Some(process) = &mut member.process
                    && let Ok(Some(status)) = process.try_wait()
                {
                    member.process = None;
                    return Err(format!("member {} exited ({status})", member.name));
                }
            }
            let last = match self.serving().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the cluster did not serve within {timeout:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn serving(&self) -> Result<(), String> {
        for i in self.running() {
            let status = self
                .client
                .member_status(i)
                .await
                .map_err(|e| format!("{}: {e}", self.members[i].name))?;
            if status.leader == 0 {
                return Err(format!("{} has no leader yet", self.members[i].name));
            }
        }
        let probe = format!("/flagd-rs-test/probe/{}", self.token);
        self.client
            .put(Put::new(probe.clone(), "ok"))
            .await
            .map_err(|e| e.to_string())?;
        self.client
            .range(Get::new(KeyRange::key(probe)))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The members that run and are not frozen.
    fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].process.is_some() && !self.members[i].stopped)
            .collect()
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never: at least one is started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member's client address, `127.0.0.1:PORT`, by member index.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `member`'s client address.
    pub fn endpoint(&self, member: usize) -> String {
        format!("127.0.0.1:{}", self.members[member].client_port)
    }

    /// The `--store` URL of this cluster with key prefix `prefix` (`/...`).
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoints().join(","))
    }

    /// Client settings for every member.
    pub fn config(&self) -> EtcdConfig {
        EtcdConfig::new(self.endpoints())
    }

    /// A client over every member (on the current tokio runtime).
    pub fn client(&self) -> EtcdClient {
        EtcdClient::connect(self.config()).expect("an etcd client")
    }

    fn signal(&self, member: usize, signal: &str) {
        let process = self.members[member]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("etcd member {member} is not running"));
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(process.id().to_string())
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{signal} of etcd member {member} failed"
        );
    }

    /// Kills member `member` with SIGKILL (no chance to tidy up) and reaps it.
    pub fn kill9(&mut self, member: usize) {
        let m = &mut self.members[member];
        if let Some(mut process) = m.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
        m.stopped = false;
    }

    /// Freezes member `member` (SIGSTOP): its sockets stay open but nothing answers.
    pub fn stop(&mut self, member: usize) {
        self.signal(member, "STOP");
        self.members[member].stopped = true;
    }

    /// Thaws a frozen member (SIGCONT).
    pub fn cont(&mut self, member: usize) {
        self.signal(member, "CONT");
        self.members[member].stopped = false;
    }

    /// Starts a killed member again on its data and waits until the cluster serves with it.
    pub async fn restart(&mut self, member: usize) {
        self.kill9(member);
        self.launch(member);
        if let Err(e) = self.wait_serving(START_TIMEOUT).await {
            panic!(
                "etcd member {member} did not come back: {e}\n{}",
                self.logs()
            );
        }
    }

    /// The index of the raft leader, once the running members agree on one.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + LEADER_TIMEOUT;
        let mut last = String::from("no member answered");
        loop {
            let mut leaders = Vec::new();
            let mut ids = Vec::new();
            for i in self.running() {
                match self.client.member_status(i).await {
                    Ok(status) => {
                        ids.push((i, status.member_id));
                        leaders.push(status.leader);
                    }
                    Err(e) => last = format!("{}: {e}", self.members[i].name),
                }
            }
            if let Some(&leader) = leaders.first()
                && leader != 0
                && leaders.iter().all(|&l| l == leader)
                && let Some(&(index, _)) = ids.iter().find(|(_, id)| *id == leader)
            {
                return index;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!("the etcd members agreed on no leader within {LEADER_TIMEOUT:?}: {last}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The store's current revision.
    pub async fn revision(&self) -> i64 {
        self.client
            .status()
            .await
            .expect("the etcd cluster's status")
            .revision
    }

    /// etcd's MVCC compaction at `revision`: the history before it is gone.
    pub async fn compact(&self, revision: i64) {
        self.client
            .compact(revision, true)
            .await
            .expect("compact etcd's history");
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut process) = member.process.take() {
                let _ = process.kill();
                let _ = process.wait();
            }
        }
    }
}
