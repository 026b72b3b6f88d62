//! Which revision every replica serves: each replica reports its own (`replicas/<id>` in the
//! store, on its lease, so a replica that stops is dropped when its lease ends), and the admin
//! API lists them and waits until all of them serve a revision — what a pipeline does before
//! it opens a metric window on a new split.
//!
//! Without a shared store the directory is this process alone.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::authority::Authority;

/// How often a wait looks at the replicas' reports again.
pub const WAIT_POLL: Duration = Duration::from_millis(5);

/// What one replica reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaReport {
    /// The replica's id (`--replica-id`).
    pub id: String,
    /// The override revision it serves.
    pub revision: u64,
    /// Whether it is in contact with the store.
    pub connected: bool,
    /// When it last reported (RFC 3339, UTC).
    pub updated: String,
}

impl ReplicaReport {
    /// This process's report, as of now.
    pub fn of(id: &str, authority: &Authority) -> ReplicaReport {
        ReplicaReport {
            id: id.to_owned(),
            revision: authority.head(),
            connected: authority.store_health().is_none_or(|h| h.connected),
            updated: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Convergence {
    /// Whether every live replica serves the revision (or a later one).
    pub served: bool,
    /// The reports as last read.
    pub replicas: Vec<ReplicaReport>,
}

impl Convergence {
    /// The replicas that do not serve `revision` yet.
    pub fn behind(&self, revision: u64) -> impl Iterator<Item = &ReplicaReport> {
        self.replicas.iter().filter(move |r| r.revision < revision)
    }
}

/// Where the replicas' reports are read.
#[tonic::async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Every live replica's report, by id.
    async fn list(&self) -> Result<Vec<ReplicaReport>, String>;
}

/// This process alone.
#[derive(Debug, Clone)]
pub struct Single {
    id: String,
    authority: Arc<Authority>,
}

impl Single {
    /// The directory of a process that shares its authority with nobody.
    pub fn new(id: impl Into<String>, authority: Arc<Authority>) -> Single {
        Single {
            id: id.into(),
            authority,
        }
    }
}

#[tonic::async_trait]
impl Directory for Single {
    async fn list(&self) -> Result<Vec<ReplicaReport>, String> {
        Ok(vec![ReplicaReport::of(&self.id, &self.authority)])
    }
}

/// Waits until every replica in `directory` serves `revision` or a later one, for at most
/// `timeout`. A directory that cannot be read is an error; an empty one never converges.
pub async fn wait_for(
    directory: &dyn Directory,
    revision: u64,
    timeout: Duration,
) -> Result<Convergence, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let replicas = directory.list().await?;
        let served = !replicas.is_empty() && replicas.iter().all(|r| r.revision >= revision);
        if served || tokio::time::Instant::now() >= deadline {
            return Ok(Convergence { served, replicas });
        }
        tokio::time::sleep(WAIT_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Scripted(Mutex<Vec<Vec<u64>>>);

    #[tonic::async_trait]
    impl Directory for Scripted {
        async fn list(&self) -> Result<Vec<ReplicaReport>, String> {
            let mut script = self.0.lock().unwrap();
            let revisions = if script.len() > 1 {
                script.remove(0)
            } else {
                script[0].clone()
            };
            Ok(revisions
                .into_iter()
                .enumerate()
                .map(|(i, revision)| ReplicaReport {
                    id: format!("r{i}"),
                    revision,
                    connected: true,
                    updated: String::new(),
                })
                .collect())
        }
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_last_replica_serves_the_revision() {
        let d = Scripted(Mutex::new(vec![
            vec![3, 2, 2],
            vec![3, 3, 2],
            vec![3, 4, 3],
        ]));
        let c = wait_for(&d, 3, Duration::from_secs(5)).await.unwrap();
        assert!(c.served);
        assert_eq!(c.behind(3).count(), 0);
    }

    #[tokio::test]
    async fn a_wait_times_out_naming_who_is_behind() {
        let d = Scripted(Mutex::new(vec![vec![5, 4]]));
        let c = wait_for(&d, 5, Duration::from_millis(30)).await.unwrap();
        assert!(!c.served);
        let behind: Vec<&str> = c.behind(5).map(|r| r.id.as_str()).collect();
        assert_eq!(behind, ["r1"]);
        let empty = Scripted(Mutex::new(vec![vec![]]));
        assert!(!wait_for(&empty, 0, Duration::ZERO).await.unwrap().served);
    }
}
