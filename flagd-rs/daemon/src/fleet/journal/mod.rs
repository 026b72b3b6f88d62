//! [`EtcdJournal`]: the revision journal kept in etcd, shared by every replica of a fleet.
//!
//! The layout of keys and values is in [`keys`]. An append is one transaction that compares
//! the head key's mod revision with the one this journal last saw and writes the new head and
//! the record together; a rollout record written while a [`Fence`] is set also compares the
//! leader key's create revision. Compaction moves the live records into an archive segment and
//! stores a snapshot, in one transaction compared on the head and the snapshot.
//!
//! The [`Journal`] trait is synchronous: the authority calls it from blocking threads. Each
//! call runs its etcd requests on the runtime the journal was opened with and waits for them
//! there; every write ends within the client's deadline (about 2 s), with
//! [`JournalError::Unavailable`] when etcd cannot be reached. A call must not come from one of
//! that runtime's worker threads (it would block one; on a single-threaded runtime, every
//! call would time out).
//!
//! A task on the same runtime follows the store (see [`follow`]): what other writers append
//! arrives through [`Journal::replicated`], and [`Journal::health`] says whether the store
//! answers.

mod follow;
pub mod keys;
mod ops;
mod state;

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::authority::journal::{
    Journal, JournalError, Replay, Replicated, RevisionInfo, RevisionKind, Segment, Snapshot,
    StoreHealth,
};
use crate::fleet::etcd::EtcdClient;

pub use keys::Keys;
use ops::{Appended, Compacted, Expected};
use state::State;

/// The default size of the live records at which the journal asks to be compacted. etcd
/// refuses requests over 1.5 MiB by default, and a compaction writes the live records (and
/// two snapshots) in one transaction, so this stays well below that.
pub const DEFAULT_COMPACT_BYTES: u64 = 256 * 1024;

/// The default interval of the watch's progress requests (its heartbeat).
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How long reads (which may take several requests) may take in all.
const READ_LIMIT: Duration = Duration::from_secs(30);

/// How an etcd journal behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtcdJournalOptions {
    /// Ask for compaction once the live records take about this many bytes (0: never).
    pub compact_bytes: u64,
    /// How often the watch asks etcd for a progress note; three intervals without any answer
    /// and the watch moves to another member.
    pub progress_interval: Duration,
}

impl Default for EtcdJournalOptions {
    fn default() -> Self {
        EtcdJournalOptions {
            compact_bytes: DEFAULT_COMPACT_BYTES,
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

/// The rollout controller's claim: the leader key and the create revision it had when this
/// replica won the election. While it is set, rollout records are appended only if the key
/// still has that create revision (so a deposed controller can change nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The leader key (`PREFIX/controller`, see [`Keys::controller`]).
    pub key: String,
    /// Its create revision when this replica won.
    pub create_revision: i64,
}

/// Where the fence is kept: set when this replica becomes the controller, cleared when it
/// stops being it. Shared between the journal and the leader election.
#[derive(Debug, Default)]
pub struct Fencing {
    current: Mutex<Option<Fence>>,
}

impl Fencing {
    /// Fences rollout records with `fence` from now on.
    pub fn set(&self, fence: Fence) {
        *lock(&self.current) = Some(fence);
    }

    /// Stops fencing.
    pub fn clear(&self) {
        *lock(&self.current) = None;
    }

    /// The fence in force.
    pub fn current(&self) -> Option<Fence> {
        lock(&self.current).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the journal, its calls and its follower task share.
pub(super) struct Shared {
    client: EtcdClient,
    keys: Keys,
    options: EtcdJournalOptions,
    /// What is known of the store; appends, compactions and the follower update it.
    state: Mutex<State>,
    /// How the journal stands with the store; the follower and failed writes update it.
    health: Mutex<StoreHealth>,
    fencing: Arc<Fencing>,
    closed: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The store answers.
    fn reachable(&self) {
        let mut health = lock(&self.health);
        if !health.connected {
            tracing::info!(prefix = self.keys.prefix(), "the shared store answers");
        }
        health.connected = true;
    }

    /// The store answered, and the state held is current.
    fn confirmed(&self) {
        self.reachable();
        lock(&self.health).confirmed = Some(SystemTime::now());
    }

    /// The store stopped answering.
    fn unreachable(&self, why: &str) {
        let mut health = lock(&self.health);
        if health.connected {
            tracing::warn!(prefix = self.keys.prefix(), %why, "lost the shared store");
        }
        health.connected = false;
    }
}

/// The journal in etcd under one prefix.
pub struct EtcdJournal {
    shared: Arc<Shared>,
    runtime: Handle,
    feed: Mutex<Option<mpsc::UnboundedReceiver<Replicated>>>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for EtcdJournal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdJournal")
            .field("prefix", &self.shared.keys.prefix())
            .field("head", &self.shared.state().head)
            .finish_non_exhaustive()
    }
}

impl EtcdJournal {
    /// [`EtcdJournal::open_with`] with the default options.
    pub fn open(
        client: EtcdClient,
        prefix: &str,
        runtime: Handle,
    ) -> Result<(EtcdJournal, Replay), JournalError> {
        EtcdJournal::open_with(client, prefix, runtime, EtcdJournalOptions::default())
    }

    /// Reads the journal under `prefix` (`/...`, as the store URL gives it) and starts
    /// following it on `runtime`. Returns the journal and what it holds. Fails with
    /// [`JournalError::Unavailable`] when etcd cannot be reached, and with
    /// [`JournalError::Inconsistent`] when what is stored does not read as a journal. Must be
    /// called from outside `runtime`'s worker threads (a blocking thread, or `main`).
    pub fn open_with(
        client: EtcdClient,
        prefix: &str,
        runtime: Handle,
        options: EtcdJournalOptions,
    ) -> Result<(EtcdJournal, Replay), JournalError> {
        let shared = EtcdJournal::shared(client, prefix, options)?;
        let listing = {
            let shared = shared.clone();
            wait(&runtime, READ_LIMIT, async move {
                ops::list(&shared.client, &shared.keys).await
            })?
        };
        shared.state().absorb(&listing);
        shared.confirmed();
        let head = listing.replay.head();
        let journal = EtcdJournal::start(shared, runtime, Some(listing.revision + 1), head);
        Ok((journal, listing.replay))
    }

    /// A journal under `prefix` that starts from `cached` (the last state this replica saw,
    /// kept locally) without reading etcd first, so a replica can start while etcd is down.
    /// Until the store has been read, appends are refused as unavailable; the first reading
    /// arrives through [`Journal::replicated`] as a [`Replicated::Reset`].
    pub fn open_cached(
        client: EtcdClient,
        prefix: &str,
        runtime: Handle,
        options: EtcdJournalOptions,
        cached: &Replay,
    ) -> Result<EtcdJournal, JournalError> {
        let shared = EtcdJournal::shared(client, prefix, options)?;
        {
            let mut state = shared.state();
            state.head = cached.head();
            state.base = cached.base();
            state.counted = cached.head();
        }
        lock(&shared.health).connected = false;
        Ok(EtcdJournal::start(shared, runtime, None, cached.head()))
    }

    fn shared(
        client: EtcdClient,
        prefix: &str,
        options: EtcdJournalOptions,
    ) -> Result<Arc<Shared>, JournalError> {
        Ok(Arc::new(Shared {
            client,
            keys: Keys::new(prefix)?,
            options,
            state: Mutex::new(State::default()),
            health: Mutex::new(StoreHealth {
                connected: false,
                confirmed: None,
            }),
            fencing: Arc::new(Fencing::default()),
            closed: AtomicBool::new(false),
        }))
    }

    fn start(
        shared: Arc<Shared>,
        runtime: Handle,
        next: Option<i64>,
        last_record: u64,
    ) -> EtcdJournal {
        let (tx, rx) = mpsc::unbounded_channel();
        let follower = follow::Follower::new(shared.clone(), tx, next, last_record);
        let task = runtime.spawn(follower.run());
        EtcdJournal {
            shared,
            runtime,
            feed: Mutex::new(Some(rx)),
            follower: Mutex::new(Some(task)),
        }
    }

    /// The keys of this journal's prefix.
    pub fn keys(&self) -> &Keys {
        &self.shared.keys
    }

    /// The fence of rollout records, for the leader election to set and clear.
    pub fn fencing(&self) -> Arc<Fencing> {
        self.shared.fencing.clone()
    }

    /// Runs `future` on the journal's runtime and waits for it, at most `limit`.
    fn wait<T: Send + 'static>(
        &self,
        limit: Duration,
        future: impl Future<Output = Result<T, JournalError>> + Send + 'static,
    ) -> Result<T, JournalError> {
        let result = wait(&self.runtime, limit, future);
        if let Err(JournalError::Unavailable(why)) = &result {
            self.shared.unreachable(why);
        }
        result
    }

    /// The longest a write may take: the client's deadline (which its retries keep to) and
    /// a margin for scheduling.
    fn write_limit(&self) -> Duration {
        self.shared.client.timeout() + Duration::from_secs(1)
    }

    fn stopped(&self) -> bool {
        self.shared.is_closed()
    }
}

/// Runs `future` on `runtime` and waits on this thread for its result, at most `limit`.
fn wait<T: Send + 'static>(
    runtime: &Handle,
    limit: Duration,
    future: impl Future<Output = Result<T, JournalError>> + Send + 'static,
) -> Result<T, JournalError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(JournalError::Unavailable(format!(
            "no answer from etcd within {limit:?}"
        ))),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(JournalError::Closed),
    }
}

impl Journal for EtcdJournal {
    fn head(&self) -> u64 {
        self.shared.state().head
    }

    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
        if self.stopped() {
            return Err(JournalError::Closed);
        }
        let known = {
            let state = self.shared.state();
            if state.head != head {
                return Err(JournalError::Conflict {
                    expected: head,
                    head: state.head,
                });
            }
            state.head_mod
        };
        if record.revision != head + 1 {
            return Err(JournalError::OutOfOrder {
                revision: record.revision,
                head,
            });
        }
        let Some(head_mod) = known else {
            return Err(JournalError::Unavailable(
                "the store has not been read yet since this replica started".into(),
            ));
        };
        let value = keys::encode_record(record)?;
        let bytes = value.len();
        let fence = match record.kind {
            RevisionKind::Rollout => self.shared.fencing.current(),
            _ => None,
        };
        let revision = record.revision;
        let shared = self.shared.clone();
        let outcome = self.wait(self.write_limit(), async move {
            ops::append(
                &shared.client,
                &shared.keys,
                head_mod,
                revision,
                value,
                fence,
            )
            .await
        })?;
        let mut state = self.shared.state();
        match outcome {
            Appended::Done { head_mod } => {
                state.saw_head(revision, head_mod);
                state.count(revision, bytes);
                Ok(revision)
            }
            Appended::AlreadyStored { head, head_mod } => {
                state.saw_head(head, head_mod);
                state.count(revision, bytes);
                Ok(revision)
            }
            Appended::Conflict {
                head: now,
                head_mod,
            } => {
                state.saw_head(now, head_mod);
                Err(JournalError::Conflict {
                    expected: head,
                    head: now,
                })
            }
            Appended::NotLeader => Err(JournalError::NotLeader),
        }
    }

    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError> {
        let shared = self.shared.clone();
        self.wait(READ_LIMIT, async move {
            ops::read_from(&shared.client, &shared.keys, revision).await
        })
    }

    fn segments(&self) -> Vec<Segment> {
        self.shared.state().segments.clone()
    }

    fn read_segment(&self, segment: &Segment) -> Result<Replay, JournalError> {
        let shared = self.shared.clone();
        let segment = *segment;
        self.wait(READ_LIMIT, async move {
            ops::read_segment(&shared.client, &shared.keys, segment).await
        })
    }

    fn compaction_due(&self) -> bool {
        let state = self.shared.state();
        self.shared.options.compact_bytes > 0
            && !self.stopped()
            && state.head > state.base
            && state.head_mod.is_some()
            && state.live_bytes >= self.shared.options.compact_bytes
    }

    fn compact(&self, snapshot: &Snapshot) -> Result<Option<Segment>, JournalError> {
        if self.stopped() {
            return Err(JournalError::Closed);
        }
        let expected = {
            let state = self.shared.state();
            if snapshot.revision != state.head {
                return Err(JournalError::Conflict {
                    expected: snapshot.revision,
                    head: state.head,
                });
            }
            if state.head == state.base {
                return Ok(None);
            }
            let Some(head_mod) = state.head_mod else {
                return Err(JournalError::Unavailable(
                    "the store has not been read yet since this replica started".into(),
                ));
            };
            Expected {
                base: state.base,
                head: state.head,
                head_mod,
                snapshot_mod: state.snapshot_mod,
            }
        };
        let shared = self.shared.clone();
        let snapshot_owned = snapshot.clone();
        let outcome = self.wait(self.write_limit() * 2, async move {
            ops::compact(&shared.client, &shared.keys, expected, &snapshot_owned).await
        })?;
        let mut state = self.shared.state();
        match outcome {
            Compacted::Done {
                snapshot_mod,
                segment,
            } => {
                state.saw_snapshot(snapshot.revision, snapshot_mod);
                state.saw_segment(segment);
                tracing::info!(
                    prefix = self.shared.keys.prefix(),
                    revisions = format!("{}..={}", segment.first, segment.last),
                    "compacted the journal in etcd"
                );
                Ok(Some(segment))
            }
            Compacted::HeadMoved { head, head_mod } => {
                state.saw_head(head, head_mod);
                Err(JournalError::Conflict {
                    expected: snapshot.revision,
                    head,
                })
            }
            Compacted::ByAnother => Ok(None),
        }
    }

    fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Some(task) = lock(&self.follower).take() {
            task.abort();
        }
    }

    fn replicated(&self) -> Option<mpsc::UnboundedReceiver<Replicated>> {
        lock(&self.feed).take()
    }

    fn health(&self) -> Option<StoreHealth> {
        Some(*lock(&self.shared.health))
    }
}

impl Drop for EtcdJournal {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.follower).take() {
            task.abort();
        }
    }
}
