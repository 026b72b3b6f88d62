//! Rollout verbs sent to any replica reach the controller through etcd.
//!
//! A replica that is not the controller puts `PREFIX/verbs/<uuid>` (the [`VerbRequest`] as
//! JSON, on its lease) and watches `PREFIX/replies/<uuid>`. The controller, which watches
//! `PREFIX/verbs/`, runs the verb on its runner and puts the answer its API gives (a
//! [`VerbAnswer`]: HTTP status and JSON body) as `PREFIX/replies/<uuid>` on its own lease, only
//! while the verb's key still exists. The sender answers its client with it and deletes both
//! keys. No controller, no answer in time, or a change of controller while waiting are answered
//! with a 503 saying so.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;

use super::controller::{Keys, Resumable};
use super::etcd::{Cmp, Compare, EtcdClient, EtcdError, EventKind, KeyRange, Op, Put, Txn};
use crate::authority::rollout::api;
use crate::authority::rollout::runner::{Relay, RolloutRunner, VerbAnswer, VerbRequest};

/// How long a replica waits for the controller's answer to a verb, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP status of every answer that is not the controller's.
const UNAVAILABLE: u16 = 503;

/// Sends verbs to the controller through etcd.
#[derive(Debug)]
pub struct EtcdRelay {
    client: EtcdClient,
    keys: Keys,
    /// The lease of this replica's election (0: none now): a verb key lives no longer.
    lease: Arc<AtomicI64>,
    timeout: Duration,
}

impl EtcdRelay {
    pub(crate) fn new(
        client: EtcdClient,
        keys: Keys,
        lease: Arc<AtomicI64>,
        timeout: Duration,
    ) -> EtcdRelay {
        EtcdRelay {
            client,
            keys,
            lease,
            timeout,
        }
    }

    async fn relay(&self, request: VerbRequest) -> VerbAnswer {
        let verb = request.verb.as_str();
        let controller = match self.client.get(self.keys.controller.as_str()).await {
            Ok(Some(kv)) => kv,
            Ok(None) => {
                return VerbAnswer::error(
                    UNAVAILABLE,
                    "no_controller",
                    format!(
                        "no replica is the rollout controller now (one is elected within the \
                         lease time to live of the last one's end): the {verb} was not sent; \
                         try again in a few seconds"
                    ),
                );
            }
            Err(e) => return unavailable(verb, &e),
        };
        let holder = controller.value_str().unwrap_or("?").to_owned();
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => {
                return VerbAnswer::error(500, "internal", format!("encoding the {verb}: {e}"));
            }
        };
        let id = uuid();
        let verb_key = format!("{}{id}", self.keys.verbs);
        let reply_key = format!("{}{id}", self.keys.replies);
        let put = Put::new(verb_key.as_str(), body).lease(self.lease.load(Ordering::Acquire));
        let sent = match self.client.put(put).await {
            Ok(sent) => sent,
            Err(e) => return unavailable(verb, &e),
        };
        let waited = tokio::time::timeout(
            self.timeout,
            self.wait(&reply_key, sent.revision, controller.create_revision),
        )
        .await;
        let answer = match waited {
            Ok(Some(answer)) => answer,
            Ok(None) => VerbAnswer::error(
                UNAVAILABLE,
                "controller_changed",
                format!(
                    "the rollout controller ({holder}) stepped down before it answered the \
                     {verb}, which may or may not have been applied: check the rollout's \
                     status before trying again"
                ),
            ),
            Err(_) => VerbAnswer::error(
                UNAVAILABLE,
                "controller_timeout",
                format!(
                    "the rollout controller ({holder}) did not answer the {verb} within {}; \
                     it may or may not have been applied: check the rollout's status before \
                     trying again",
                    humantime::format_duration(self.timeout)
                ),
            ),
        };
        let cleanup = Txn::new().and_then([
            Op::Delete(KeyRange::key(verb_key.as_str())),
            Op::Delete(KeyRange::key(reply_key.as_str())),
        ]);
        if let Err(e) = self.client.txn(cleanup).await {
            tracing::debug!(key = %verb_key, error = %e, "could not delete a relayed verb's keys");
        }
        answer
    }

    /// Waits for the reply put after store revision `sent`; `None` when the controller key
    /// (created at `fence`) goes or changes hands first.
    async fn wait(&self, reply_key: &str, sent: i64, fence: i64) -> Option<VerbAnswer> {
        let mut reply = Resumable::new(self.client.clone(), KeyRange::key(reply_key), sent + 1);
        let mut controller = Resumable::new(
            self.client.clone(),
            KeyRange::key(self.keys.controller.as_str()),
            sent + 1,
        );
        // Once the controller key's history is compacted away, only the reply is waited for.
        let mut watching = true;
        loop {
            tokio::select! {
                events = reply.next() => match events {
                    Ok(events) => {
                        let put = events.into_iter().find(|e| e.kind == EventKind::Put)?;
                        return Some(serde_json::from_slice(&put.kv.value).unwrap_or_else(|e| {
                            VerbAnswer::error(502, "bad_reply", format!("the controller's answer cannot be read: {e}"))
                        }));
                    }
                    // Compacted while waiting: read it.
                    Err(_) => return self.read_reply(reply_key).await,
                },
                events = controller.next(), if watching => match events {
                    Ok(events) => {
                        if events.iter().any(|e| e.kind == EventKind::Delete || e.kv.create_revision != fence) {
                            // A reply put just before the controller went still counts.
                            return self.read_reply(reply_key).await;
                        }
                    }
                    Err(_) => watching = false,
                },
            }
        }
    }

    async fn read_reply(&self, reply_key: &str) -> Option<VerbAnswer> {
        let kv = self.client.get(reply_key).await.ok()??;
        serde_json::from_slice(&kv.value).ok()
    }
}

impl Relay for EtcdRelay {
    fn send(&self, request: VerbRequest) -> BoxFuture<'_, VerbAnswer> {
        Box::pin(self.relay(request))
    }
}

fn unavailable(verb: &str, e: &EtcdError) -> VerbAnswer {
    VerbAnswer::error(
        UNAVAILABLE,
        "store_unavailable",
        format!(
            "the shared store is unavailable ({e}): the {verb} was not sent to the rollout controller; try again when it is back"
        ),
    )
}

/// On the controller: runs the verb put as `PREFIX/verbs/<id>` (`value`) on `runner` and puts
/// the answer as `PREFIX/replies/<id>` on `lease`, if the verb's key still exists.
pub(crate) async fn answer(
    client: &EtcdClient,
    keys: &Keys,
    id: &str,
    value: &[u8],
    lease: i64,
    runner: &Arc<RolloutRunner>,
) {
    let answer = match serde_json::from_slice::<VerbRequest>(value) {
        Ok(request) => {
            tracing::info!(verb = request.verb.as_str(), flag = %request.flag, actor = %request.actor, id, "a rollout verb relayed from another replica");
            api::execute(runner, request).await
        }
        Err(e) => VerbAnswer::error(
            400,
            "bad_request",
            format!("the relayed verb cannot be read: {e}"),
        ),
    };
    let body = match serde_json::to_vec(&answer) {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(id, error = %e, "could not encode a relayed verb's answer");
            return;
        }
    };
    let verb_key = format!("{}{id}", keys.verbs);
    let reply_key = format!("{}{id}", keys.replies);
    let reply = Txn::new()
        .when([Compare::version(verb_key.as_str(), Cmp::Greater, 0)])
        .and_then([Op::Put(Put::new(reply_key.as_str(), body).lease(lease))]);
    match client.txn(reply).await {
        Ok(r) if r.succeeded => {}
        Ok(_) => tracing::info!(
            id,
            "a relayed verb's sender stopped waiting before its answer"
        ),
        Err(e) => tracing::warn!(id, error = %e, "could not put a relayed verb's answer"),
    }
}

/// A random (version 4) UUID.
fn uuid() -> String {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // No system randomness: the time and a counter are unique enough for a key that lives
        // for one verb.
        static COUNTER: AtomicI64 = AtomicI64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        b[..8].copy_from_slice(&(nanos as u64).to_le_bytes());
        b[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_4_uuids() {
        let (a, b) = (uuid(), uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }
}
