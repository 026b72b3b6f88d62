//! Fleet mode's options: the shared store (`--store etcd://...`) and what a replica reports.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

/// The default time-to-live of a replica's lease (its registration and, when it leads, the
/// rollout controller's key): a replica that stops renewing it is gone after this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The options of `flagd-rs start` for fleet mode.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// Share overrides, history and the rollout controller with other replicas through etcd:
    /// `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (`etcds://` for TLS). Unset: the journal in
    /// --state-dir, this process only.
    #[arg(long, env = "FLAGD_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// CA certificate (PEM) etcd's certificate is checked against; implies TLS.
    #[arg(long, env = "FLAGD_STORE_CA", value_name = "FILE")]
    pub store_ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to etcd; needs --store-key.
    #[arg(long, env = "FLAGD_STORE_CERT", value_name = "FILE")]
    pub store_cert: Option<PathBuf>,
    /// Private key (PEM) of --store-cert.
    #[arg(long, env = "FLAGD_STORE_KEY", value_name = "FILE")]
    pub store_key: Option<PathBuf>,
    /// etcd user name; the password is read from --store-password-file.
    #[arg(long, env = "FLAGD_STORE_USER")]
    pub store_user: Option<String>,
    /// File holding the etcd user's password (one line).
    #[arg(long, env = "FLAGD_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Fail readiness (`/readyz`) while the store is unreachable, instead of serving the last
    /// known state.
    #[arg(long, env = "FLAGD_STORE_FAIL_CLOSED")]
    pub store_fail_closed: bool,
    /// Seconds a replica's lease lives without renewal: how long a stopped replica stays
    /// registered, and how long a failed controller holds the leadership.
    #[arg(long, env = "FLAGD_STORE_LEASE_TTL", value_name = "SECONDS", default_value_t = DEFAULT_LEASE_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub store_lease_ttl: u64,
    /// This replica's name in the store (`replicas/<id>`). Default: the host name.
    #[arg(long, env = "FLAGD_REPLICA_ID")]
    pub replica_id: Option<String>,
    /// Add `flagd-rs-revision` (the override revision served) to every evaluation's flag
    /// metadata.
    #[arg(long, env = "FLAGD_REVISION_METADATA")]
    pub revision_metadata: bool,
}

/// Fleet mode, resolved: the store to share the authority through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// `--store` as given.
    pub url: String,
    /// TLS files.
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// User and password.
    pub credentials: Option<(String, String)>,
    /// Readiness fails while the store is unreachable.
    pub fail_closed: bool,
    /// Lease time-to-live.
    pub lease_ttl: Duration,
    /// This replica's id.
    pub replica_id: String,
}

impl StoreArgs {
    /// The store settings (`None`: no `--store`), with every file read and every pair checked.
    pub fn resolve(self) -> anyhow::Result<Option<StoreSettings>> {
        let Some(url) = self.store.filter(|u| !u.trim().is_empty()) else {
            for (given, name) in [
                (self.store_ca.is_some(), "--store-ca"),
                (self.store_cert.is_some(), "--store-cert"),
                (self.store_user.is_some(), "--store-user"),
                (self.store_fail_closed, "--store-fail-closed"),
            ] {
                if given {
                    bail!("{name} needs --store (the etcd cluster to share the authority through)");
                }
            }
            return Ok(None);
        };
        let identity = match (self.store_cert, self.store_key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--store-cert and --store-key go together"),
        };
        let credentials = match (self.store_user, self.store_password_file) {
            (Some(user), Some(file)) => {
                let password = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading --store-password-file {}", file.display()))?;
                let password = password.trim_end_matches(['\r', '\n']).to_owned();
                if password.is_empty() {
                    bail!("--store-password-file {} is empty", file.display());
                }
                Some((user, password))
            }
            (None, None) => None,
            _ => bail!("--store-user and --store-password-file go together"),
        };
        let replica_id = match self.replica_id.filter(|id| !id.trim().is_empty()) {
            Some(id) => id,
            None => default_replica_id(),
        };
        if replica_id.contains('/') || replica_id.chars().any(char::is_control) {
            bail!("--replica-id `{replica_id}` may not contain `/` or control characters");
        }
        Ok(Some(StoreSettings {
            url,
            ca: self.store_ca,
            identity,
            credentials,
            fail_closed: self.store_fail_closed,
            lease_ttl: Duration::from_secs(self.store_lease_ttl),
            replica_id,
        }))
    }
}

/// The host name (Kubernetes sets it to the pod's name), else one made up for this process.
pub fn default_replica_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| format!("replica-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(store: Option<&str>) -> StoreArgs {
        StoreArgs {
            store: store.map(str::to_owned),
            store_lease_ttl: 10,
            ..StoreArgs::default()
        }
    }

    #[test]
    fn no_store_is_the_local_journal_and_store_options_need_one() {
        assert_eq!(args(None).resolve().unwrap(), None);
        let err = StoreArgs {
            store_ca: Some("ca.pem".into()),
            ..args(None)
        }
        .resolve()
        .unwrap_err();
        assert!(
            err.to_string().contains("--store-ca needs --store"),
            "{err}"
        );
    }

    #[test]
    fn pairs_go_together_and_the_password_is_read_from_its_file() {
        let err = StoreArgs {
            store_cert: Some("c.pem".into()),
            ..args(Some("etcd://127.0.0.1:2379/f"))
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let settings = StoreArgs {
            store_user: Some("flagd".into()),
            store_password_file: Some(file),
            replica_id: Some("pod-a".into()),
            ..args(Some("etcd://127.0.0.1:2379/f"))
        }
        .resolve()
        .unwrap()
        .unwrap();
        assert_eq!(
            settings.credentials,
            Some(("flagd".to_owned(), "s3cret".to_owned()))
        );
        assert_eq!(settings.replica_id, "pod-a");
        assert!(!default_replica_id().is_empty());
    }

    #[test]
    fn a_replica_id_with_a_slash_is_refused() {
        let err = StoreArgs {
            replica_id: Some("a/b".into()),
            ..args(Some("etcd://127.0.0.1:2379/f"))
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("--replica-id"), "{err}");
    }
}
