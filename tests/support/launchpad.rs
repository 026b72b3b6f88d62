//! A launchpad for the provider testbed: starts the daemon the way the official testbed's
//! launchpad starts flagd, and plays the launchpad's part in the scenarios (losing the
//! connection for a while, modifying a flag).
//!
//! The work directory mirrors the reference layout. `rawflags/` holds a copy of every testbed
//! `flags/*.json`; `flags/allFlags.json` is every `rawflags/*.json` not named `selector-*`,
//! deep-merged into one document in file-name order (nested maps are merged key by key, so the
//! `flags` maps, `$evaluators` and any top-level `metadata` all combine; a later file wins a
//! conflict). The daemon serves `flags/allFlags.json` followed by `rawflags/selector-flags.json`
//! (the metadata setup adds `rawflags/selector-flag-combined-metadata.json`), with the static
//! context value `injectedmetadata=set`, as the reference configurations do.
//!
//! The daemon knows a file source by its path, and the reference runs flagd inside the work
//! directory, so its selectors are paths relative to it (`rawflags/selector-flags.json`). Tests
//! run in one process and cannot change directory, so sources are given as absolute paths and
//! [`Launchpad::selector`] turns a relative selector into the matching absolute one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use flagd_evaluator::HashGeneration;
use flagd_rs::Listeners;
use flagd_rs::config::{Config, TlsPaths};
use flagd_rs::sources::SourceSpec;
use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::daemon::{get, post_json};

/// The merged document, relative to the work directory.
pub const ALL_FLAGS: &str = "flags/allFlags.json";
/// The selector source served beside the merged document.
pub const SELECTOR_FLAGS: &str = "rawflags/selector-flags.json";
/// The extra source of the metadata setup (flag-set metadata combined with flag metadata).
pub const COMBINED_METADATA_FLAGS: &str = "rawflags/selector-flag-combined-metadata.json";
/// The file "the flag was modified" toggles.
pub const CHANGING_FLAG: &str = "rawflags/changing-flag.json";

/// How long a start may take until the daemon is ready and serves every source.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a stop may take.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the daemon gets to serve a modified flag.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon configurations the reference launchpad ships, by the provider names of the
/// scenarios that use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Setup {
    /// `default`: plain TCP ports (the `stable` provider).
    Default,
    /// `ssl`: TLS on the evaluation and sync ports (the `ssl` provider).
    Ssl,
    /// The evaluation and sync services on unix sockets (the `socket` provider).
    Socket,
    /// `metadata`: the default sources plus a document with flag-set metadata.
    Metadata,
    /// `sync-payload`: the default configuration with `--disable-sync-metadata`, so in-process
    /// providers must take the context from the sync payload.
    SyncPayload,
}

/// Which daemon a launchpad runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    /// The configuration.
    pub setup: Setup,
    /// The `fractional` hash generation (`--fractional-hash`).
    pub hash: HashGeneration,
    /// Leave out of the merged document every flag whose targeting refers to an evaluator the
    /// document does not define. The daemon, like flagd, serves such a flag with the `$ref`
    /// left in place (it fails with PARSE_ERROR when evaluated), but a client that rejects a
    /// whole flag configuration holding one cannot load the testbed's flags otherwise.
    pub omit_unresolved_refs: bool,
}

/// The ports (or sockets) of a launched daemon; they stay the same across restarts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// The evaluation port; `None` when it is a unix socket.
    pub eval: Option<u16>,
    /// The sync port; `None` when it is a unix socket.
    pub sync: Option<u16>,
    /// The management port (readiness).
    pub management: u16,
    /// The admin API port.
    pub admin: u16,
    /// The OFREP port.
    pub ofrep: u16,
}

/// A running daemon task.
#[derive(Debug)]
struct Running {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

#[derive(Debug)]
enum DaemonState {
    Running(Running),
    /// Stopped; the task brings it back on the same ports after a delay.
    Restarting(JoinHandle<anyhow::Result<Running>>),
    Stopped,
}

/// A daemon in its own work directory, with the launchpad's controls.
#[derive(Debug)]
pub struct Launchpad {
    launch: LaunchConfig,
    work: tempfile::TempDir,
    config: Config,
    ports: Ports,
    probes: Vec<String>,
    omitted: Vec<String>,
    state: DaemonState,
}

impl Launchpad {
    /// Prepares a work directory from the testbed's `flags/` directory and starts the daemon;
    /// returns once it is ready and serves a flag of every source.
    pub async fn start(testbed_flags: &Path, launch: LaunchConfig) -> anyhow::Result<Launchpad> {
        let work = tempfile::tempdir().context("creating the launchpad work directory")?;
        let omitted = prepare_work_dir(testbed_flags, work.path(), launch.omit_unresolved_refs)?;
        let mut config = daemon_config(work.path(), launch)?;
        let listeners = Listeners::bind(&config)
            .await
            .context("binding the daemon's ports")?;
        let bound = listeners.ports()?;
        let ports = Ports {
            eval: bound.eval,
            sync: listeners.sync_port()?,
            management: bound.management,
            admin: listeners.admin_port()?,
            ofrep: listeners.ofrep_port()?,
        };
        // Restarts bind exactly these ports again (the listeners set SO_REUSEADDR).
        config.port = ports.eval.unwrap_or(0);
        config.sync_port = ports.sync.unwrap_or(0);
        config.management_port = ports.management;
        config.admin_port = ports.admin;
        config.ofrep_port = ports.ofrep;
        let probes = probe_keys(&config)?;
        let running = launch_daemon(config.clone(), listeners, ports.clone(), probes.clone())
            .await
            .with_context(|| format!("starting the {:?} daemon", launch.setup))?;
        Ok(Launchpad {
            launch,
            work,
            config,
            ports,
            probes,
            omitted,
            state: DaemonState::Running(running),
        })
    }

    /// What this launchpad runs.
    pub fn launch_config(&self) -> LaunchConfig {
        self.launch
    }

    /// The daemon's ports.
    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    /// The unix socket of the evaluation service (socket setup only).
    pub fn eval_socket(&self) -> Option<&Path> {
        self.config.socket_path.as_deref()
    }

    /// The unix socket of the sync service (socket setup only).
    pub fn sync_socket(&self) -> Option<&Path> {
        self.config.sync_socket_path.as_deref()
    }

    /// The certificate clients must trust (ssl setup only).
    pub fn cert_path(&self) -> Option<&Path> {
        self.config.tls.as_ref().map(|t| t.cert.as_path())
    }

    /// The absolute path of a work-directory file given relative to it.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.work.path().join(relative)
    }

    /// The definition of flag `key` as the daemon serves it: from the work-directory file
    /// `selector` names, or without one from the last source that defines it (sources later
    /// in the list win).
    pub fn flag_definition(&self, key: &str, selector: Option<&str>) -> Option<Value> {
        let read = |path: &Path| {
            let doc: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            doc.get("flags")?.get(key).cloned()
        };
        match selector {
            Some(s) if self.work.path().join(s).is_file() => read(&self.path(s)),
            _ => self
                .config
                .sources
                .iter()
                .rev()
                .find_map(|spec| read(&spec.path())),
        }
    }

    /// The flags left out of the merged document (see [`LaunchConfig::omit_unresolved_refs`]).
    pub fn omitted_flags(&self) -> &[String] {
        &self.omitted
    }

    /// The selector the daemon knows for `selector`: a path relative to the work directory
    /// that names one of its files becomes that file's absolute path (the source URI the
    /// daemon was given); anything else is returned unchanged.
    pub fn selector(&self, selector: &str) -> String {
        let relative = Path::new(selector);
        if relative.is_relative() && self.work.path().join(relative).is_file() {
            self.path(selector).display().to_string()
        } else {
            selector.to_owned()
        }
    }

    /// Waits for a restart in progress; starts the daemon again if it was stopped.
    pub async fn ensure_running(&mut self) -> anyhow::Result<()> {
        match std::mem::replace(&mut self.state, DaemonState::Stopped) {
            DaemonState::Running(running) => {
                self.state = DaemonState::Running(running);
            }
            DaemonState::Restarting(task) => {
                let running = task.await.context("the restart task failed")??;
                self.state = DaemonState::Running(running);
            }
            DaemonState::Stopped => {
                let running = self.relaunch().await?;
                self.state = DaemonState::Running(running);
            }
        }
        Ok(())
    }

    /// Stops the daemon and waits until `run` has returned; returns what it returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        match std::mem::replace(&mut self.state, DaemonState::Stopped) {
            DaemonState::Running(running) => stop_daemon(running).await,
            DaemonState::Restarting(task) => {
                task.abort();
                match task.await {
                    Ok(Ok(running)) => stop_daemon(running).await,
                    _ => Ok(()),
                }
            }
            DaemonState::Stopped => Ok(()),
        }
    }

    /// The launchpad's `/restart?seconds=N`: stops the daemon now and brings it back on the
    /// same ports after `outage`, in the background. The next [`Launchpad::ensure_running`]
    /// waits for it.
    pub async fn lose_connection(&mut self, outage: Duration) -> anyhow::Result<()> {
        self.stop().await?;
        let config = self.config.clone();
        let ports = self.ports.clone();
        let probes = self.probes.clone();
        self.state = DaemonState::Restarting(tokio::spawn(async move {
            tokio::time::sleep(outage).await;
            let listeners = Listeners::bind(&config)
                .await
                .context("binding the same ports again")?;
            launch_daemon(config, listeners, ports, probes).await
        }));
        Ok(())
    }

    /// The launchpad's `/change`: toggles the default variant of `changing-flag` between `foo`
    /// and `bar` in `rawflags/changing-flag.json`, rewrites the merged document in place, and
    /// waits until the daemon serves the new variant. Returns the new variant.
    pub async fn modify_flag(&mut self) -> anyhow::Result<String> {
        let path = self.path(CHANGING_FLAG);
        let mut doc: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        let variant = doc
            .pointer_mut("/flags/changing-flag/defaultVariant")
            .context("changing-flag.json has no flags.changing-flag.defaultVariant")?;
        let next = if variant.as_str() == Some("foo") {
            "bar"
        } else {
            "foo"
        };
        *variant = Value::from(next);
        std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
        self.omitted = merge_flags(self.work.path(), self.launch.omit_unresolved_refs)?;
        self.ensure_running().await?;
        let deadline = tokio::time::Instant::now() + CHANGE_TIMEOUT;
        loop {
            let served = post_json(
                self.ports.ofrep,
                "/ofrep/v1/evaluate/flags/changing-flag",
                "{}",
            )
            .await
            .ok()
            .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .and_then(|v| v.get("variant").and_then(Value::as_str).map(str::to_owned));
            if served.as_deref() == Some(next) {
                return Ok(next.to_owned());
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the daemon did not serve changing-flag={next} within {CHANGE_TIMEOUT:?} \
                     after {ALL_FLAGS} was rewritten (it serves {served:?})"
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn relaunch(&self) -> anyhow::Result<Running> {
        let listeners = Listeners::bind(&self.config)
            .await
            .context("binding the same ports again")?;
        launch_daemon(
            self.config.clone(),
            listeners,
            self.ports.clone(),
            self.probes.clone(),
        )
        .await
    }
}

/// Copies the testbed's flag files into `rawflags/` and writes the merged document.
/// Returns the flags left out of the merged document.
fn prepare_work_dir(
    testbed_flags: &Path,
    work: &Path,
    omit_refs: bool,
) -> anyhow::Result<Vec<String>> {
    let raw = work.join("rawflags");
    std::fs::create_dir_all(&raw)?;
    std::fs::create_dir_all(work.join("flags"))?;
    for path in json_files(testbed_flags)? {
        let name = path.file_name().context("a flag file without a name")?;
        std::fs::copy(&path, raw.join(name))
            .with_context(|| format!("copying {}", path.display()))?;
    }
    merge_flags(work, omit_refs)
}

/// Writes `flags/allFlags.json`: every `rawflags/*.json` not named `selector-*`, deep-merged in
/// file-name order; with `omit_refs`, without the flags that refer to a missing evaluator,
/// whose keys are returned.
fn merge_flags(work: &Path, omit_refs: bool) -> anyhow::Result<Vec<String>> {
    let mut merged = Map::new();
    for path in json_files(&work.join("rawflags"))? {
        let selector = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("selector-"));
        if selector {
            continue;
        }
        let doc: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        if let Value::Object(map) = doc {
            deep_merge(&mut merged, map);
        }
    }
    let mut omitted = Vec::new();
    if omit_refs {
        let evaluators = merged
            .get("$evaluators")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(Value::Object(flags)) = merged.get_mut("flags") {
            flags.retain(|key, flag| {
                let keep = flag
                    .get("targeting")
                    .is_none_or(|t| !refers_to_missing(t, &evaluators));
                if !keep {
                    omitted.push(key.clone());
                }
                keep
            });
        }
    }
    std::fs::write(
        work.join(ALL_FLAGS),
        serde_json::to_vec_pretty(&Value::Object(merged))?,
    )?;
    Ok(omitted)
}

/// Whether `rule` holds a `{"$ref": name}` whose name `evaluators` does not define.
fn refers_to_missing(rule: &Value, evaluators: &Map<String, Value>) -> bool {
    match rule {
        Value::Object(map) => {
            let missing = map.len() == 1
                && map
                    .get("$ref")
                    .and_then(Value::as_str)
                    .is_some_and(|name| !evaluators.contains_key(name));
            missing || map.values().any(|v| refers_to_missing(v, evaluators))
        }
        Value::Array(items) => items.iter().any(|v| refers_to_missing(v, evaluators)),
        _ => false,
    }
}

/// Merges `src` into `dst`: maps present on both sides merge key by key, anything else from
/// `src` replaces what `dst` had.
fn deep_merge(dst: &mut Map<String, Value>, src: Map<String, Value>) {
    for (key, value) in src {
        match (dst.get_mut(&key), value) {
            (Some(Value::Object(d)), Value::Object(s)) => deep_merge(d, s),
            (_, value) => {
                dst.insert(key, value);
            }
        }
    }
}

fn json_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// The daemon configuration of `launch` in `work`, on 127.0.0.1 and free ports.
fn daemon_config(work: &Path, launch: LaunchConfig) -> anyhow::Result<Config> {
    let mut files = vec![ALL_FLAGS, SELECTOR_FLAGS];
    if launch.setup == Setup::Metadata {
        files.push(COMBINED_METADATA_FLAGS);
    }
    let sources = files
        .iter()
        .map(|f| SourceSpec::from_uri(&format!("file:{}", work.join(f).display())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut config = Config {
        sources,
        host: [127, 0, 0, 1].into(),
        port: 0,
        management_port: 0,
        sync_port: 0,
        ofrep_port: 0,
        admin_port: 0,
        state_dir: work.join("state"),
        // A stop is the scenario's "connection lost": it should not wait for open streams.
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    };
    config
        .context
        .static_values
        .insert("injectedmetadata".into(), Value::from("set"));
    config.load.hash = launch.hash;
    match launch.setup {
        Setup::Default | Setup::Metadata => {}
        Setup::Ssl => {
            let ssl = work.join("ssl");
            std::fs::create_dir_all(&ssl)?;
            let tls = TlsPaths {
                cert: ssl.join("server-cert.pem"),
                key: ssl.join("server-key.pem"),
            };
            std::fs::write(&tls.cert, TEST_CERT)?;
            std::fs::write(&tls.key, TEST_KEY)?;
            config.tls = Some(tls);
        }
        Setup::Socket => {
            config.socket_path = Some(work.join("flagd.sock"));
            config.sync_socket_path = Some(work.join("flagd-sync.sock"));
        }
        Setup::SyncPayload => config.disable_sync_metadata = true,
    }
    Ok(config)
}

/// One enabled flag key per file source (the first in key order), to check that every source
/// is served before a start counts as done, as the reference launchpad does: a daemon can be
/// ready before its store holds the flags.
fn probe_keys(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    for spec in &config.sources {
        let path = spec.path();
        let doc: Value = serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("parsing {}", path.display()))?;
        let mut enabled: Vec<&String> = doc
            .get("flags")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, f)| f.get("state").and_then(Value::as_str) != Some("DISABLED"))
            .map(|(k, _)| k)
            .collect();
        enabled.sort();
        match enabled.first() {
            Some(key) => keys.push((*key).clone()),
            None => bail!("{} defines no enabled flag", path.display()),
        }
    }
    Ok(keys)
}

/// Runs the daemon on `listeners` and waits until `/readyz` answers 200 and every probe flag
/// is served over OFREP.
async fn launch_daemon(
    config: Config,
    listeners: Listeners,
    ports: Ports,
    probes: Vec<String>,
) -> anyhow::Result<Running> {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(flagd_rs::run(config, listeners, async move {
        // A dropped sender (the launchpad went away) stops the daemon too.
        let _ = rx.await;
    }));
    let running = Running { shutdown: tx, task };
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let wait = |what: String| {
        let running = &running;
        async move {
            if running.task.is_finished() {
                bail!("the daemon stopped while {what}");
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the daemon timed out while {what}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        }
    };
    while !get(ports.management, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
    {
        wait("waiting for /readyz".into()).await?;
    }
    for key in &probes {
        let path = format!("/ofrep/v1/evaluate/flags/{key}");
        while !post_json(ports.ofrep, &path, "{}")
            .await
            .is_ok_and(|r| r.status == 200 && !r.text().contains("FLAG_NOT_FOUND"))
        {
            wait(format!("waiting for flag `{key}` to be served")).await?;
        }
    }
    Ok(running)
}

async fn stop_daemon(running: Running) -> anyhow::Result<()> {
    let _ = running.shutdown.send(());
    match tokio::time::timeout(STOP_TIMEOUT, running.task).await {
        Ok(joined) => joined.context("the daemon task failed")?,
        Err(_) => bail!("the daemon did not stop within {STOP_TIMEOUT:?}"),
    }
}

/// A self-signed certificate for `localhost` / 127.0.0.1 (P-256, valid for a century); clients
/// of the ssl setup trust it as their CA.
const TEST_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT6gAwIBAgIUFzF8J445xftkbi8ylNF777CXu6AwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyOTA4MDAwNFoYDzIxMjYxMTA1
MDgwMDA0WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAAQ427GUaGN162OO7qekbIPsWMCr22hsUsoEiPdok5nyhfpgjJOPAW7K
QFEP+w3nIwvD6SBe+P1T9/KsyRRc5Fvno2wwajAdBgNVHQ4EFgQUlWMywKLu86Hj
jMSNtQHUUDco7wgwHwYDVR0jBBgwFoAUlWMywKLu86HjjMSNtQHUUDco7wgwGgYD
VR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMAwGA1UdEwEB/wQCMAAwCgYIKoZIzj0E
AwIDSAAwRQIgZpzGX+mpcex/aTjAQ5M820eoPsmlELduh9PHNaJSDaACIQDNlaTB
Jf1kUguwZfr/hTAaTXjv4/4ht19bItRu6eINSg==
-----END CERTIFICATE-----
";

/// The private key of [`TEST_CERT`].
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYZbHWvcrVZRcv/sG
oCXj+cHF92x8ezhkgjBeGFsBX/ahRANCAAQ427GUaGN162OO7qekbIPsWMCr22hs
UsoEiPdok5nyhfpgjJOPAW7KQFEP+w3nIwvD6SBe+P1T9/KsyRRc5Fvn
-----END PRIVATE KEY-----
";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deep_merge_combines_nested_maps() {
        let mut dst = json!({"flags": {"a": 1}, "$evaluators": {"e": 1}})
            .as_object()
            .unwrap()
            .clone();
        let src = json!({"flags": {"b": 2}, "metadata": {"m": true}, "$evaluators": {"e": 2}})
            .as_object()
            .unwrap()
            .clone();
        deep_merge(&mut dst, src);
        assert_eq!(
            Value::Object(dst),
            json!({"flags": {"a": 1, "b": 2}, "$evaluators": {"e": 2}, "metadata": {"m": true}})
        );
    }
}
