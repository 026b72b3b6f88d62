//! A replica's entry in the store: `PREFIX/replicas/<id>`, attached to a lease of the replica's
//! own, rewritten whenever the revision it serves changes. A replica that stops revokes the
//! lease (its entry goes at once); one that dies is dropped when the lease runs out. The
//! admin API reads the entries through [`EtcdDirectory`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::etcd::{EtcdClient, Get, KeyRange, Put};
use super::replicas::{Directory, ReplicaReport};
use crate::authority::Authority;

/// The pause before granting a lease again after the store refused or could not be reached.
const RETRY: Duration = Duration::from_millis(500);

/// The key prefix of the replicas' entries under the store prefix.
pub fn replicas_prefix(prefix: &str) -> String {
    format!("{prefix}/replicas/")
}

/// Keeps this replica's entry current until `shutdown` turns true, then removes it.
pub fn spawn(
    client: EtcdClient,
    prefix: &str,
    id: String,
    authority: Arc<Authority>,
    ttl: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let key = format!("{}{id}", replicas_prefix(prefix));
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let lease = match client.lease_grant(ttl).await {
                Ok(lease) => lease,
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "cannot register this replica in the store; retrying");
                        warned = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
            };
            let mut keeper = client.keep_alive(lease);
            let mut head = authority.watch_head();
            let mut written = None;
            loop {
                let report = ReplicaReport::of(&id, &authority);
                if written != Some(report.revision) {
                    let value = serde_json::to_vec(&report).unwrap_or_default();
                    match client
                        .put(Put::new(key.clone(), value).lease(keeper.id()))
                        .await
                    {
                        Ok(_) => {
                            if warned {
                                tracing::info!(replica = %id, "replica registered in the store");
                                warned = false;
                            }
                            written = Some(report.revision);
                        }
                        Err(e) if !warned => {
                            tracing::warn!(error = %e, "cannot report this replica's revision; retrying");
                            warned = true;
                        }
                        Err(_) => {}
                    }
                }
                let retry = written != Some(authority.head());
                tokio::select! {
                    changed = head.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(RETRY), if retry => {}
                    () = keeper.expired() => break,
                    _ = shutdown.changed() => {
                        // Gone at once, not a lease later: waits stop counting this replica.
                        let _ = client.lease_revoke(keeper.id()).await;
                        return;
                    }
                }
            }
        }
    })
}

/// The replicas as their entries in the store say.
#[derive(Debug, Clone)]
pub struct EtcdDirectory {
    client: EtcdClient,
    prefix: String,
}

impl EtcdDirectory {
    /// The entries under `prefix` (the store prefix).
    pub fn new(client: EtcdClient, prefix: &str) -> EtcdDirectory {
        EtcdDirectory {
            client,
            prefix: replicas_prefix(prefix),
        }
    }
}

#[tonic::async_trait]
impl Directory for EtcdDirectory {
    async fn list(&self) -> Result<Vec<ReplicaReport>, String> {
        let range = self
            .client
            .range_all(Get::new(KeyRange::prefix(self.prefix.clone())))
            .await
            .map_err(|e| e.to_string())?;
        Ok(range
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
            .collect())
    }
}
