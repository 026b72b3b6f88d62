//! Keeping a lease alive: a task that renews it over etcd's keep-alive stream, moves to
//! another member when one fails, and says when the lease must be taken as lost.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::client::{Attempt, Lease};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::lease_client::LeaseClient;
use super::watch::require_leader;
use super::{EtcdClient, EtcdError};

/// The shortest pause between two renewals.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Where a kept lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Renewed: it lives at least until `until` (counted from before the renewal was sent, so
    /// never later than etcd's own view).
    Alive {
        /// The end of its life unless renewed again.
        until: Instant,
    },
    /// It ended (etcd said so, or it could not be renewed before its end). It does not come
    /// back: grant a new one.
    Expired,
}

/// Renews a lease until dropped or stopped ([`EtcdClient::keep_alive`]).
#[derive(Debug)]
pub struct LeaseKeeper {
    id: i64,
    state: watch::Receiver<LeaseState>,
    task: JoinHandle<()>,
}

type KeepAliveStream = (
    mpsc::Sender<pb::LeaseKeepAliveRequest>,
    tonic::Streaming<pb::LeaseKeepAliveResponse>,
    pb::LeaseKeepAliveResponse,
);

impl EtcdClient {
    /// Renews lease `id` once; returns its new time to live (`None`: it no longer exists).
    pub async fn lease_keep_alive_once(&self, id: i64) -> Result<Option<Duration>, EtcdError> {
        let deadline = Instant::now() + self.timeout();
        let ((_, _, answer), _) = self.keep_alive_stream(id, deadline).await?;
        Ok(ttl_of(&answer))
    }

    /// Starts renewing `lease` in a task on the current tokio runtime (so this must be called
    /// from within one), about three times per time to live.
    pub fn keep_alive(&self, lease: Lease) -> LeaseKeeper {
        let (tx, state) = watch::channel(LeaseState::Alive {
            until: lease.expires,
        });
        let task = tokio::spawn(keep(self.clone(), lease, tx));
        LeaseKeeper {
            id: lease.id,
            state,
            task,
        }
    }

    /// Opens a keep-alive stream (require-leader) and renews `id` once on it.
    async fn keep_alive_stream(
        &self,
        id: i64,
        deadline: Instant,
    ) -> Result<(KeepAliveStream, usize), EtcdError> {
        let call = |attempt: Attempt| async move {
            let (requests, receiver) = mpsc::channel(4);
            requests
                .send(pb::LeaseKeepAliveRequest { id })
                .await
                .map_err(|_| Status::internal("the keep-alive request channel closed"))?;
            let mut request = tonic::Request::new(ReceiverStream::new(receiver));
            *request.metadata_mut() = attempt.metadata;
            let mut responses = LeaseClient::new(attempt.channel)
                .lease_keep_alive(request)
                .await?
                .into_inner();
            match responses.message().await? {
                Some(first) => Ok((requests, responses, first)),
                None => Err(Status::unavailable(
                    "the keep-alive stream ended without an answer",
                )),
            }
        };
        self.attempt("lease keep-alive", deadline, None, require_leader(), call)
            .await
    }
}

/// The time to live in an answer (`None`: the lease is gone).
fn ttl_of(answer: &pb::LeaseKeepAliveResponse) -> Option<Duration> {
    u64::try_from(answer.ttl)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs)
}

/// The renewal loop.
async fn keep(client: EtcdClient, lease: Lease, state: watch::Sender<LeaseState>) {
    let interval = (lease.ttl / 3).max(MIN_INTERVAL);
    let mut until = lease.expires;
    'streams: loop {
        if Instant::now() >= until {
            break;
        }
        let deadline = (Instant::now() + client.timeout()).min(until);
        let sent = Instant::now();
        let ((requests, mut responses, first), member) =
            match client.keep_alive_stream(lease.id, deadline).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(lease = lease.id, error = %e, "could not renew the etcd lease");
                    tokio::time::sleep_until((Instant::now() + interval).min(until)).await;
                    continue;
                }
            };
        let mut answer = first;
        let mut sent_at = sent;
        loop {
            match ttl_of(&answer) {
                Some(ttl) => {
                    until = sent_at + ttl;
                    state.send_replace(LeaseState::Alive { until });
                }
                None => break 'streams,
            }
            tokio::time::sleep(interval).await;
            sent_at = Instant::now();
            if requests
                .send(pb::LeaseKeepAliveRequest { id: lease.id })
                .await
                .is_err()
            {
                client.demote(member);
                continue 'streams;
            }
            let wait = (sent_at + client.timeout()).min(until);
            match tokio::time::timeout_at(wait, responses.message()).await {
                Ok(Ok(Some(next))) => answer = next,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                    client.demote(member);
                    continue 'streams;
                }
            }
        }
    }
    state.send_replace(LeaseState::Expired);
}

impl LeaseKeeper {
    /// The kept lease's ID.
    pub fn id(&self) -> i64 {
        self.id
    }

    /// Where the lease stands now. `Alive` with an `until` in the past counts as expired.
    pub fn state(&self) -> LeaseState {
        match *self.state.borrow() {
            LeaseState::Alive { until } if until <= Instant::now() => LeaseState::Expired,
            state => state,
        }
    }

    /// Whether the lease is alive now.
    pub fn is_alive(&self) -> bool {
        matches!(self.state(), LeaseState::Alive { .. })
    }

    /// Follows the lease's state as it is renewed.
    pub fn subscribe(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Waits until the lease must be taken as lost: etcd said it ended, or its end passed
    /// without a renewal.
    pub async fn expired(&mut self) {
        loop {
            let current = *self.state.borrow_and_update();
            let LeaseState::Alive { until } = current else {
                return;
            };
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    if *self.state.borrow() == current {
                        return;
                    }
                }
                changed = self.state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Stops renewing (the lease then ends by itself at the end of its time to live).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
