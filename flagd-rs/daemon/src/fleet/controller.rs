//! One rollout controller per fleet: the replica that holds `PREFIX/controller` drives every
//! rollout; the others show the journal's rollouts and send verbs to it ([`super::verbs`]).
//!
//! - Every replica keeps a lease (time to live `--store-lease-ttl`) alive and campaigns with one
//!   transaction: if `PREFIX/controller` does not exist (create revision 0), put it, holding this
//!   replica's id, on the lease. The key's create revision is the *fence*: the journal writes
//!   every rollout record in a transaction that also compares it, so a replica that lost the
//!   key can change no rollout.
//! - A replica that lost the campaign watches the key and campaigns again once it is deleted
//!   (its holder's lease ended, or it resigned).
//! - The controller sets the journal's fence, lets the authority catch up with the head as of
//!   its election, and then leads: its runner resumes every active rollout from the journal.
//!   It steps down at once when its lease is lost (the keep-alive failed or etcd ended it),
//!   when the key is deleted or changes hands, or when the journal refuses one of its records:
//!   the runner stops its tasks, and only then is the fence cleared.
//! - While it leads it answers the verbs other replicas put under `PREFIX/verbs/`.
//!
//! A replica that steps down gives up its lease too (revoking it when etcd answers) and starts
//! again with a new one, so a key it may still hold ends with that lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::etcd::{
    Cmp, Compare, EtcdClient, EtcdError, Event, EventKind, Get, KeyRange, KeyValue, LeaseKeeper,
    Op, Put, Txn, WatchOptions, Watcher,
};
use super::journal::{EtcdJournal, Fence, Fencing};
use super::verbs::{self, EtcdRelay};
use crate::authority::rollout::runner::{RolloutRunner, Term};

/// How long to wait before trying again after etcd failed to answer.
const RETRY: Duration = Duration::from_millis(250);

/// How long a replica that steps down waits for its rollout tasks to stop before it clears
/// the journal's fence anyway (a record being written ends by etcd's call deadline).
const STEP_DOWN_WAIT: Duration = Duration::from_secs(5);

/// How long revoking a lease given up may take.
const REVOKE_WAIT: Duration = Duration::from_secs(1);

/// Sets the journal's fence: `Some(create revision)` of the controller key while this replica
/// leads, `None` otherwise.
pub type SetFence = Arc<dyn Fn(Option<i64>) + Send + Sync>;

/// The [`SetFence`] of `journal`: its rollout records are fenced by the controller key's
/// create revision while this replica leads.
pub fn fence_of(journal: &EtcdJournal) -> SetFence {
    fence_setter(journal.fencing(), journal.keys().controller())
}

/// The [`SetFence`] of a journal's `fencing` (taken from it before it was handed to the
/// authority), whose leader key is `controller_key` (`PREFIX/controller`).
pub fn fence_setter(fencing: Arc<Fencing>, controller_key: &str) -> SetFence {
    let key = controller_key.to_owned();
    Arc::new(move |fence: Option<i64>| match fence {
        Some(create_revision) => fencing.set(Fence {
            key: key.clone(),
            create_revision,
        }),
        None => fencing.clear(),
    })
}

/// The fleet's keys this module uses.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `PREFIX/controller`.
    pub(crate) controller: String,
    /// `PREFIX/head`.
    pub(crate) head: String,
    /// `PREFIX/verbs/`.
    pub(crate) verbs: String,
    /// `PREFIX/replies/`.
    pub(crate) replies: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        let prefix = prefix.trim_end_matches('/');
        Keys {
            controller: format!("{prefix}/controller"),
            head: format!("{prefix}/head"),
            verbs: format!("{prefix}/verbs/"),
            replies: format!("{prefix}/replies/"),
        }
    }
}

/// Who the rollout controller is, as this replica last learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leader {
    /// Not known (starting, or etcd does not answer).
    Unknown,
    /// This replica, elected at store revision `fence`.
    This {
        /// The controller key's create revision.
        fence: i64,
    },
    /// Another replica.
    Other {
        /// Its id.
        replica: String,
        /// The controller key's create revision.
        fence: i64,
    },
}

/// The fleet's controller election, as one replica takes part in it.
#[derive(Clone)]
pub struct ControllerSettings {
    /// The etcd client.
    pub client: EtcdClient,
    /// The fleet's key prefix (`/flagd-rs/prod`).
    pub prefix: String,
    /// This replica's id (the controller key's value while it leads).
    pub replica_id: String,
    /// The lease's time to live.
    pub lease_ttl: Duration,
    /// How long a replica waits for the controller's answer to a verb.
    pub verb_timeout: Duration,
}

impl ControllerSettings {
    /// The settings for `client`, `prefix`, `replica_id` and `lease_ttl`, with the default verb
    /// timeout ([`verbs::DEFAULT_TIMEOUT`]).
    pub fn new(
        client: EtcdClient,
        prefix: &str,
        replica_id: &str,
        lease_ttl: Duration,
    ) -> ControllerSettings {
        ControllerSettings {
            client,
            prefix: prefix.to_owned(),
            replica_id: replica_id.to_owned(),
            lease_ttl,
            verb_timeout: verbs::DEFAULT_TIMEOUT,
        }
    }
}

/// The running election ([`spawn`]). Dropping it stops the election without resigning (the
/// lease then ends by itself); [`ControllerHandle::resign`] hands over at once.
#[derive(Debug)]
pub struct ControllerHandle {
    leader: watch::Receiver<Leader>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ControllerHandle {
    /// Who the controller is, as this replica knows now.
    pub fn leader(&self) -> Leader {
        self.leader.borrow().clone()
    }

    /// Follows who the controller is.
    pub fn watch(&self) -> watch::Receiver<Leader> {
        self.leader.clone()
    }

    /// Steps down if this replica leads (its rollout tasks stop, the fence is cleared) and
    /// revokes its lease, so another replica is elected at once; then stops campaigning.
    pub async fn resign(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Takes part in the fleet's controller election: `runner` drives rollouts exactly while this
/// replica is the controller. `leading` must be the sender of the leadership input `runner` was
/// built with ([`RolloutRunner::spawn_led`]); `set_fence` sets the journal's fence. Installs
/// the relay that sends verbs to the controller into `runner`. Must be called inside a tokio
/// runtime.
pub fn spawn(
    settings: ControllerSettings,
    runner: Arc<RolloutRunner>,
    leading: watch::Sender<Option<Term>>,
    set_fence: SetFence,
) -> ControllerHandle {
    let keys = Keys::new(&settings.prefix);
    let lease = Arc::new(AtomicI64::new(0));
    runner.set_relay(Arc::new(EtcdRelay::new(
        settings.client.clone(),
        keys.clone(),
        lease.clone(),
        settings.verb_timeout,
    )));
    let (view, leader) = watch::channel(Leader::Unknown);
    let (shutdown, stop) = watch::channel(false);
    let controller = Controller {
        client: settings.client,
        keys,
        replica_id: settings.replica_id,
        lease_ttl: settings.lease_ttl,
        runner,
        leading,
        set_fence,
        view,
        lease,
    };
    let task = tokio::spawn(controller.run(stop));
    ControllerHandle {
        leader,
        shutdown,
        task: Some(task),
    }
}

struct Controller {
    client: EtcdClient,
    keys: Keys,
    replica_id: String,
    lease_ttl: Duration,
    runner: Arc<RolloutRunner>,
    leading: watch::Sender<Option<Term>>,
    set_fence: SetFence,
    view: watch::Sender<Leader>,
    /// The lease held now (0: none), which verbs sent from here are put on too.
    lease: Arc<AtomicI64>,
}

/// Why a replica stopped leading or following with its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The lease is lost (or may be): start again with a new one.
    LeaseLost,
    /// The controller key was deleted or changed hands while this replica led: campaign again.
    KeyLost,
    /// The replica stops.
    Shutdown,
}

/// What woke a leading replica.
enum LeadWake {
    End(End),
    Controller(Result<Vec<Event>, EtcdError>),
    Verbs(Result<Vec<Event>, EtcdError>),
}

impl Controller {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        // Whether the last lease could not be had: an outage is told once, not every attempt.
        let mut failing = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let lease = tokio::select! {
                lease = self.client.lease_grant(self.lease_ttl) => lease,
                _ = stop.wait_for(|s| *s) => break,
            };
            let mut keeper = match lease {
                Ok(lease) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!(
                            "got a lease: taking part in the rollout controller election again"
                        );
                    }
                    self.client.keep_alive(lease)
                }
                Err(e) => {
                    if failing {
                        tracing::debug!(error = %e, "still no lease for the rollout controller election");
                    } else {
                        tracing::warn!(error = %e, "could not get a lease to take part in the rollout controller election; trying again");
                    }
                    failing = true;
                    self.view.send_replace(Leader::Unknown);
                    pause(RETRY, &mut stop).await;
                    continue;
                }
            };
            self.lease.store(keeper.id(), Ordering::Release);
            let end = self.with_lease(&mut keeper, &mut stop).await;
            self.lease.store(0, Ordering::Release);
            let id = keeper.id();
            keeper.stop();
            // A lease given up is revoked, so that a key it may hold goes now, not at the end
            // of its time to live.
            if let Ok(Err(e)) =
                tokio::time::timeout(REVOKE_WAIT, self.client.lease_revoke(id)).await
            {
                tracing::debug!(lease = id, error = %e, "could not revoke a lease given up");
            }
            if end == End::Shutdown {
                break;
            }
        }
        self.view.send_replace(Leader::Unknown);
    }

    /// Campaigns, leads and follows while `keeper` holds the lease.
    async fn with_lease(&self, keeper: &mut LeaseKeeper, stop: &mut watch::Receiver<bool>) -> End {
        loop {
            let campaign = Txn::new()
                .when([Compare::create_revision(
                    self.keys.controller.as_str(),
                    Cmp::Equal,
                    0,
                )])
                .and_then([
                    Op::Put(
                        Put::new(self.keys.controller.as_str(), self.replica_id.as_str())
                            .lease(keeper.id()),
                    ),
                    Op::Get(Get::new(KeyRange::key(self.keys.head.as_str()))),
                ])
                .or_else([Op::Get(Get::new(KeyRange::key(
                    self.keys.controller.as_str(),
                )))]);
            let answer = tokio::select! {
                answer = self.client.txn(campaign) => answer,
                () = keeper.expired() => return End::LeaseLost,
                _ = stop.wait_for(|s| *s) => return End::Shutdown,
            };
            let end = match answer {
                Err(e) => {
                    tracing::warn!(error = %e, "the rollout controller election could not reach etcd");
                    self.view.send_replace(Leader::Unknown);
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => continue,
                        () = keeper.expired() => return End::LeaseLost,
                        _ = stop.wait_for(|s| *s) => return End::Shutdown,
                    }
                }
                Ok(won) if won.succeeded => {
                    let head = won
                        .range(1)
                        .and_then(|r| r.kvs.first())
                        .and_then(|kv| kv.value_str()?.trim().parse::<u64>().ok())
                        .unwrap_or(0);
                    self.lead(won.revision, head, keeper, stop).await
                }
                Ok(lost) => {
                    let holder = lost.range(0).and_then(|r| r.kvs.first()).cloned();
                    match holder {
                        // Deleted between the compare and the read: campaign again.
                        None => continue,
                        // Our own key, kept by this lease: lead again under it.
                        Some(kv) if kv.lease == keeper.id() => {
                            self.lead(kv.create_revision, 0, keeper, stop).await
                        }
                        Some(kv) => self.follow(kv, lost.revision, keeper, stop).await,
                    }
                }
            };
            match end {
                End::KeyLost => {}
                end => return end,
            }
        }
    }

    /// Waits, as a follower of `holder`, until the controller key is deleted (then returns
    /// `KeyLost`: campaign again).
    async fn follow(
        &self,
        holder: KeyValue,
        seen: i64,
        keeper: &mut LeaseKeeper,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        let replica = holder.value_str().unwrap_or("?").to_owned();
        let mut fence = holder.create_revision;
        tracing::info!(controller = %replica, fence, "another replica is the rollout controller");
        self.view.send_replace(Leader::Other {
            replica: replica.clone(),
            fence,
        });
        let mut key = Resumable::new(
            self.client.clone(),
            KeyRange::key(self.keys.controller.as_str()),
            seen + 1,
        );
        loop {
            let events = tokio::select! {
                events = key.next() => events,
                () = keeper.expired() => return End::LeaseLost,
                _ = stop.wait_for(|s| *s) => return End::Shutdown,
            };
            match events {
                Err(_) => return End::KeyLost,
                Ok(events) => {
                    for event in events {
                        match event.kind {
                            EventKind::Delete => {
                                tracing::info!(controller = %replica, "the rollout controller is gone; campaigning");
                                return End::KeyLost;
                            }
                            EventKind::Put if event.kv.create_revision != fence => {
                                fence = event.kv.create_revision;
                                let replica = event.kv.value_str().unwrap_or("?").to_owned();
                                self.view.send_replace(Leader::Other { replica, fence });
                            }
                            EventKind::Put => {}
                        }
                    }
                }
            }
        }
    }

    /// Leads in term `fence` until the lease or the key is lost, the journal refuses a record,
    /// or the replica stops; then steps down.
    async fn lead(
        &self,
        fence: i64,
        head: u64,
        keeper: &mut LeaseKeeper,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        tracing::info!(replica = %self.replica_id, fence, "elected rollout controller");
        self.view.send_replace(Leader::This { fence });
        (self.set_fence)(Some(fence));
        let end = self.leading(fence, head, keeper, stop).await;
        self.step_down(fence).await;
        end
    }

    async fn leading(
        &self,
        fence: i64,
        head: u64,
        keeper: &mut LeaseKeeper,
        stop: &mut watch::Receiver<bool>,
    ) -> End {
        // The rollouts resume from the journal as of the election: wait until the authority
        // has applied it (a record made from a stale view would clash and be made again).
        let mut applied = self.runner.authority().watch_head();
        tokio::select! {
            _ = tokio::time::timeout(self.lease_ttl, applied.wait_for(|h| *h >= head)) => {}
            () = keeper.expired() => return End::LeaseLost,
            _ = stop.wait_for(|s| *s) => return End::Shutdown,
        }
        self.leading.send_replace(Some(fence));
        let mut deposed = self.runner.watch_deposed();
        let mut key = Resumable::new(
            self.client.clone(),
            KeyRange::key(self.keys.controller.as_str()),
            fence + 1,
        );
        let mut verbs = Resumable::new(
            self.client.clone(),
            KeyRange::prefix(self.keys.verbs.as_str()),
            fence + 1,
        );
        let mut handled = HashSet::new();
        loop {
            let wake = tokio::select! {
                () = keeper.expired() => LeadWake::End(End::LeaseLost),
                _ = stop.wait_for(|s| *s) => LeadWake::End(End::Shutdown),
                _ = deposed.wait_for(|t| *t == Some(fence)) => LeadWake::End(End::LeaseLost),
                events = key.next() => LeadWake::Controller(events),
                events = verbs.next() => LeadWake::Verbs(events),
            };
            match wake {
                LeadWake::End(end) => return end,
                LeadWake::Controller(Ok(events)) => {
                    let lost = events
                        .iter()
                        .any(|e| e.kind == EventKind::Delete || e.kv.create_revision != fence);
                    if lost {
                        tracing::warn!(
                            fence,
                            "the rollout controller key was deleted or changed hands"
                        );
                        return End::KeyLost;
                    }
                }
                // The key's history is gone: read it.
                LeadWake::Controller(Err(_)) => {
                    match self.client.get(self.keys.controller.as_str()).await {
                        Ok(Some(kv)) if kv.create_revision == fence => {
                            key = Resumable::new(
                                self.client.clone(),
                                KeyRange::key(self.keys.controller.as_str()),
                                kv.mod_revision + 1,
                            );
                        }
                        Ok(_) => return End::KeyLost,
                        Err(_) => return End::LeaseLost,
                    }
                }
                LeadWake::Verbs(Ok(events)) => {
                    for event in events {
                        self.on_verb(event, fence, &mut handled);
                    }
                }
                LeadWake::Verbs(Err(_)) => {
                    // The verbs' history is gone: answer those still waiting.
                    match self
                        .client
                        .range(Get::new(KeyRange::prefix(self.keys.verbs.as_str())))
                        .await
                    {
                        Ok(listed) => {
                            for kv in listed.kvs {
                                self.on_verb(
                                    Event {
                                        kind: EventKind::Put,
                                        kv,
                                        prev_kv: None,
                                    },
                                    fence,
                                    &mut handled,
                                );
                            }
                            verbs = Resumable::new(
                                self.client.clone(),
                                KeyRange::prefix(self.keys.verbs.as_str()),
                                listed.revision + 1,
                            );
                        }
                        Err(_) => return End::LeaseLost,
                    }
                }
            }
        }
    }

    /// Answers a verb put under `PREFIX/verbs/` after this replica was elected (one put before
    /// may have reached the previous controller: its sender is told the controller changed).
    fn on_verb(&self, event: Event, fence: i64, handled: &mut HashSet<Vec<u8>>) {
        let kv = event.kv;
        if event.kind == EventKind::Delete {
            handled.remove(&kv.key);
            return;
        }
        if kv.create_revision <= fence || !handled.insert(kv.key.clone()) {
            return;
        }
        let Some(id) = kv
            .key_str()
            .and_then(|k| k.strip_prefix(self.keys.verbs.as_str()))
            .map(str::to_owned)
        else {
            return;
        };
        let runner = self.runner.clone();
        let client = self.client.clone();
        let keys = self.keys.clone();
        let lease = self.lease.load(Ordering::Acquire);
        tokio::spawn(async move {
            verbs::answer(&client, &keys, &id, &kv.value, lease, &runner).await;
        });
    }

    /// Stops leading: the runner's tasks stop, and once they have, the fence is cleared.
    async fn step_down(&self, fence: i64) {
        self.leading.send_replace(None);
        let mut active = self.runner.watch_active();
        let stopped = tokio::time::timeout(STEP_DOWN_WAIT, active.wait_for(Option::is_none)).await;
        if stopped.is_err() {
            tracing::warn!(
                fence,
                "the rollout tasks did not stop in time; clearing the fence anyway"
            );
        }
        (self.set_fence)(None);
        self.view.send_replace(Leader::Unknown);
        tracing::info!(replica = %self.replica_id, fence, "no longer the rollout controller");
    }
}

/// Sleeps for `wait` unless the replica stops first.
async fn pause(wait: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
}

/// A watch that starts again, from the revision after the last event it delivered, when its
/// stream fails; only a compaction of the revisions it still needs ends it (an error).
pub(crate) struct Resumable {
    client: EtcdClient,
    range: KeyRange,
    next: i64,
    watcher: Option<Watcher>,
}

impl Resumable {
    pub(crate) fn new(client: EtcdClient, range: KeyRange, from: i64) -> Resumable {
        Resumable {
            client,
            range,
            next: from,
            watcher: None,
        }
    }

    /// The events of the next answer that has any.
    pub(crate) async fn next(&mut self) -> Result<Vec<Event>, EtcdError> {
        loop {
            let watcher = match &mut self.watcher {
                Some(w) => w,
                None => {
                    let options = WatchOptions::new(self.range.clone()).start_revision(self.next);
                    match self.client.watch(options).await {
                        Ok(w) => self.watcher.insert(w),
                        Err(e @ EtcdError::Compacted(_)) => return Err(e),
                        Err(_) => {
                            tokio::time::sleep(RETRY).await;
                            continue;
                        }
                    }
                }
            };
            match watcher.message().await {
                Ok(Some(answer)) if answer.compact_revision != 0 => {
                    self.watcher = None;
                    return Err(EtcdError::Compacted(format!(
                        "revisions before {} are compacted",
                        answer.compact_revision
                    )));
                }
                Ok(Some(answer)) if answer.canceled => self.watcher = None,
                Ok(Some(answer)) => {
                    if let Some(last) = answer.events.last() {
                        self.next = last.kv.mod_revision + 1;
                        return Ok(answer.events);
                    }
                }
                Ok(None) | Err(_) => {
                    self.watcher = None;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_under_the_prefix() {
        let keys = Keys::new("/flagd-rs/prod");
        assert_eq!(keys.controller, "/flagd-rs/prod/controller");
        assert_eq!(keys.head, "/flagd-rs/prod/head");
        assert_eq!(keys.verbs, "/flagd-rs/prod/verbs/");
        assert_eq!(keys.replies, "/flagd-rs/prod/replies/");
    }

    #[test]
    fn the_fence_setter_sets_and_clears_the_journals_fence() {
        let fencing = Arc::new(Fencing::default());
        let set = fence_setter(fencing.clone(), "/f/controller");
        set(Some(42));
        assert_eq!(
            fencing.current(),
            Some(Fence {
                key: "/f/controller".into(),
                create_revision: 42
            })
        );
        set(None);
        assert_eq!(fencing.current(), None);
    }
}
