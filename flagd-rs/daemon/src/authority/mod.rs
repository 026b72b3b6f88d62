//! The traffic-split authority: the override set layered over the flag files, changed only
//! through numbered, journaled revisions.
//!
//! Every change (set or clear an override, restore an earlier revision, a rollout step) is
//! validated against the loaded flags, appended to the journal and made durable, and only then
//! applied to the store, whose next snapshot serves the patched flags on every protocol. At
//! start-up the journal is replayed, so the daemon comes back with the overrides it had. When
//! the journal grows past its threshold it is compacted: the authority keeps only the revisions
//! after the journal's snapshot in memory, and reads older ones from the archive on demand
//! ([`history`]).
//!
//! The methods block on disk I/O (an fsync per change); async callers should run them with
//! `tokio::task::spawn_blocking`.

pub mod admin;
pub mod cache;
pub mod guard;
pub mod history;
pub mod journal;
pub mod rollout;
#[cfg(test)]
mod shared_tests;
pub mod state_dir;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use flagd_evaluator::{OverridePatch, PatchError, PatchField, SplitEntry, State};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::selector::Selector;
use crate::store::{OverrideError, Overrides, Store};

pub use cache::StateCache;
pub use history::{Cursor, Page};
use journal::apply_changes;
pub use journal::{
    FileJournal, FileOptions, Journal, JournalError, OverrideChange, Recovery, Replay, Replicated,
    RevisionInfo, RevisionKind, Segment, Snapshot, StoreHealth,
};

/// Why the authority refused a change.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// No loaded flag has that key.
    #[error("no flag '{0}' is defined")]
    UnknownFlag(String),
    /// The patch does not apply to the flag.
    #[error(transparent)]
    Invalid(#[from] PatchError),
    /// The patch sets nothing.
    #[error("the override sets nothing: give a state, a defaultVariant or weights")]
    EmptyPatch,
    /// The flag has no override to clear.
    #[error("flag '{0}' has no override")]
    NoOverride(String),
    /// The caller's expected revision is not the current one.
    #[error("revision {expected} is not current: the authority is at revision {head}")]
    Conflict {
        /// The revision the caller expected.
        expected: u64,
        /// The current revision.
        head: u64,
    },
    /// The revision to restore does not exist.
    #[error("no revision {revision}: the authority is at revision {head}")]
    UnknownRevision {
        /// The revision asked for.
        revision: u64,
        /// The current revision.
        head: u64,
    },
    /// The change could not be made durable; it was not applied.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl From<OverrideError> for AuthorityError {
    fn from(e: OverrideError) -> Self {
        match e {
            OverrideError::UnknownFlag(key) => AuthorityError::UnknownFlag(key),
            OverrideError::Patch(p) => AuthorityError::Invalid(p),
        }
    }
}

/// A flag as served, with the override layered on it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveFlag {
    /// The flag's key.
    pub key: String,
    /// Its flag set, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag_set_id: Option<String>,
    /// The source that defines it.
    pub source: String,
    /// The effective state.
    pub state: State,
    /// The effective default variant.
    pub default_variant: Option<String>,
    /// Variant names and values.
    pub variants: Map<String, Value>,
    /// The effective `fractional` split, when the flag has a single one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<Vec<SplitEntry>>,
    /// The override set on the flag, if any.
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_patch: Option<OverridePatch>,
    /// The override's fields that are not applied because the flag's document changed since
    /// they were set (the other fields are applied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_fields: Vec<StaleField>,
    /// The same, as one message (`None` when every field applies).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_error: Option<String>,
}

/// An override field that a file edit made stale.
#[derive(Debug, Clone, Serialize)]
pub struct StaleField {
    /// The field's name (`defaultVariant`, `weights`).
    pub field: PatchField,
    /// Why it does not apply.
    pub error: String,
}

/// An override on a flag that no source defines any more. It stays in the journal (and applies
/// again if the flag comes back) until it is cleared.
#[derive(Debug, Clone, Serialize)]
pub struct DanglingOverride {
    /// The flag's key.
    pub key: String,
    /// The override.
    #[serde(rename = "override")]
    pub override_patch: OverridePatch,
}

/// What the authority publishes for readers: the latest revision and the override set. Readers
/// (the admin list views, `/metrics`, the rollout runner) load it without any lock.
#[derive(Debug, Default)]
struct Published {
    head: u64,
    overrides: BTreeMap<String, OverridePatch>,
}

/// What a rollout record does to the flag's override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutChange {
    /// Nothing.
    Keep,
    /// Sets the split's weights (merged into the override as [`Authority::set_override`] does,
    /// and validated: refused if they do not apply).
    Weights(Vec<(String, u32)>),
    /// Puts back exactly this override (`None`: no override), without validating it against
    /// the flag as it is now.
    Restore(Option<OverridePatch>),
    /// Puts back the split's weights (merged into the override) if they still apply to the
    /// flag; otherwise leaves the override as it is. For rollouts recorded without their
    /// earlier override.
    RestoreWeights(Vec<(String, u32)>),
}

/// A flag as a rollout starts from it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutBasis {
    /// The served flag's `fractional` split, if its targeting has a single one.
    pub split: Option<Vec<SplitEntry>>,
    /// The flag's override, if it has one.
    pub current: Option<OverridePatch>,
}

/// What [`Authority::start_rollout`] journals.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutStart {
    /// The start record.
    pub event: Value,
    /// The split's weights at the first step.
    pub weights: Vec<(String, u32)>,
    /// The revision's reason.
    pub reason: String,
}

fn weights_only(weights: &[(String, u32)]) -> OverridePatch {
    OverridePatch {
        weights: Some(weights.to_vec()),
        ..OverridePatch::default()
    }
}

/// `patch` merged into the `current` override, as [`Authority::set_override`] merges.
fn merged(current: Option<&OverridePatch>, patch: OverridePatch) -> OverridePatch {
    match current {
        Some(c) => c.merged(&patch),
        None => patch,
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// The state the live revisions follow: the journal's snapshot (revision 0 without one).
    base: Snapshot,
    /// The revisions after `base`, in order; `log[i].revision == base.revision + i + 1`. Older
    /// revisions are in the journal's archive.
    log: Vec<RevisionInfo>,
    overrides: BTreeMap<String, OverridePatch>,
}

impl Inner {
    fn head(&self) -> u64 {
        self.log.last().map_or(self.base.revision, |r| r.revision)
    }

    /// The override set right after `revision`, if it is `base` or a live revision.
    fn overrides_at(&self, revision: u64) -> Option<BTreeMap<String, OverridePatch>> {
        if revision < self.base.revision || revision > self.head() {
            return None;
        }
        let mut target = self.base.overrides.clone();
        for r in self.log.iter().take_while(|r| r.revision <= revision) {
            apply_changes(&mut target, &r.changes);
        }
        Some(target)
    }
}

/// Owns the journal and the override set, and applies the set to the store.
#[derive(Debug)]
pub struct Authority {
    store: Arc<Store>,
    journal: Box<dyn Journal>,
    /// Serializes changes; readers use `published` instead.
    inner: Mutex<Inner>,
    published: ArcSwap<Published>,
    /// The head after every revision, for watchers that redraw on any change (the dashboard's
    /// live view); rollout revisions that move no override reach nobody through the store.
    head_tx: tokio::sync::watch::Sender<u64>,
    /// The revision applied to the store, updated before the store's snapshot changes: what
    /// evaluations report as `flagd-rs-revision`.
    served: Arc<std::sync::atomic::AtomicU64>,
    /// With a shared journal: where the state as of the head is kept for a restart while the
    /// store is unreachable.
    cache: Option<StateCache>,
    /// When the authority was built: the state's age when the store never confirmed it.
    started: SystemTime,
}

/// How many times a change is tried again when other replicas appended first and touched none
/// of the flags it changes.
const CATCH_UP_RETRIES: usize = 8;

/// A revision about to be journaled.
struct Draft {
    kind: RevisionKind,
    flag: Option<String>,
    changes: Vec<OverrideChange>,
    restored: Option<u64>,
    event: Option<Value>,
    /// The revision the caller said it changes (`If-Match`): when other replicas appended
    /// first, the change is refused instead of being tried again on their state.
    if_match: Option<u64>,
}

impl Draft {
    fn new(kind: RevisionKind, flag: Option<&str>, changes: Vec<OverrideChange>) -> Draft {
        Draft {
            kind,
            flag: flag.map(str::to_owned),
            changes,
            restored: None,
            event: None,
            if_match: None,
        }
    }

    /// Whether revision `other`, appended by another writer first, changes what this draft was
    /// computed from.
    fn clashes_with(&self, other: &RevisionInfo) -> bool {
        if self.if_match.is_some() {
            return true;
        }
        if self.kind == RevisionKind::Restore {
            return !other.changes.is_empty();
        }
        self.flag.as_deref().is_some_and(|f| other.touches(f))
            || self.changes.iter().any(|c| other.touches(&c.flag))
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Authority {
    /// [`Authority::open_with`] with the default journal options.
    pub fn open(state_dir: &Path, store: Arc<Store>) -> anyhow::Result<Arc<Authority>> {
        Authority::open_with(state_dir, store, FileOptions::default())
    }

    /// Opens the journal in `state_dir` (taking the directory's lock, so no other process can
    /// use it while this authority lives), replays it and applies the resulting overrides to
    /// `store`. Fails when another process holds the directory or the journal is damaged.
    pub fn open_with(
        state_dir: &Path,
        store: Arc<Store>,
        options: FileOptions,
    ) -> anyhow::Result<Arc<Authority>> {
        let (journal, replay, recovery) = FileJournal::open_with(state_dir, options)
            .with_context(|| format!("opening the journal in {}", state_dir.display()))?;
        if let Some(problem) = &recovery.problem {
            tracing::warn!(%problem, dropped_bytes = recovery.dropped_bytes, "journal recovered");
        }
        for done in &recovery.tidied {
            tracing::info!("{done}");
        }
        let authority = Authority::with_journal(Box::new(journal), replay, store);
        if authority.journal.compaction_due()
            && let Err(e) = authority.compact()
        {
            tracing::warn!(error = %e, "could not compact the journal");
        }
        tracing::info!(
            state_dir = %state_dir.display(),
            revision = authority.head(),
            overrides = authority.overrides().len(),
            "authority journal replayed"
        );
        Ok(authority)
    }

    /// An authority over any journal, starting from what it already holds.
    pub fn with_journal(
        journal: Box<dyn Journal>,
        replay: Replay,
        store: Arc<Store>,
    ) -> Arc<Authority> {
        Authority::build(journal, replay, store, None)
    }

    /// An authority over a journal other replicas append to as well: it starts from `replay`
    /// (what the store holds, or the cache when the store could not be read), keeps its state
    /// in `cache` after every change it applies, and applies what the others append once
    /// [`Authority::follow`] runs.
    pub fn with_shared_journal(
        journal: Box<dyn Journal>,
        replay: Replay,
        store: Arc<Store>,
        cache: StateCache,
    ) -> Arc<Authority> {
        let authority = Authority::build(journal, replay, store, Some(cache));
        authority.save_cache(&authority.lock());
        authority
    }

    fn build(
        journal: Box<dyn Journal>,
        replay: Replay,
        store: Arc<Store>,
        cache: Option<StateCache>,
    ) -> Arc<Authority> {
        let base = replay.snapshot.unwrap_or_default();
        let mut overrides = base.overrides.clone();
        for r in &replay.records {
            apply_changes(&mut overrides, &r.changes);
        }
        let inner = Inner {
            base,
            log: replay.records,
            overrides,
        };
        if !inner.overrides.is_empty() {
            store.set_overrides(Arc::new(to_store(&inner.overrides)));
        }
        let head = inner.head();
        let head_tx = tokio::sync::watch::channel(head).0;
        let published = ArcSwap::from_pointee(Published {
            head: inner.head(),
            overrides: inner.overrides.clone(),
        });
        Arc::new(Authority {
            store,
            journal,
            inner: Mutex::new(inner),
            published,
            head_tx,
            cache,
            started: SystemTime::now(),
            served: Arc::new(std::sync::atomic::AtomicU64::new(head)),
        })
    }

    /// Applies, as they arrive, the revisions other replicas append to a shared journal (see
    /// [`Journal::replicated`]). `None` for a journal only this process writes.
    pub fn follow(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let mut feed = self.journal.replicated()?;
        let authority = Arc::clone(self);
        Some(tokio::spawn(async move {
            while let Some(update) = feed.recv().await {
                let this = Arc::clone(&authority);
                match tokio::task::spawn_blocking(move || this.apply_replicated(update)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "could not apply revisions from the store");
                    }
                    Err(e) => tracing::warn!(error = %e, "applying revisions stopped"),
                }
            }
        }))
    }

    /// Applies what another writer appended: revisions this authority already holds are
    /// skipped, a gap is filled from the journal, and a reset replaces the whole state.
    pub fn apply_replicated(&self, update: Replicated) -> Result<(), AuthorityError> {
        let mut inner = self.lock();
        match update {
            Replicated::Appended(records) => {
                let head = inner.head();
                let fresh: Vec<RevisionInfo> =
                    records.into_iter().filter(|r| r.revision > head).collect();
                let dense = fresh
                    .iter()
                    .zip(head + 1..)
                    .all(|(r, expected)| r.revision == expected);
                if fresh.is_empty() {
                    return Ok(());
                }
                let fresh = if dense {
                    fresh
                } else {
                    self.journal.read_from(head + 1)?
                };
                self.adopt(&mut inner, fresh);
            }
            Replicated::Reset(replay) => self.reset(&mut inner, replay),
        }
        Ok(())
    }

    /// Appends `records` (which follow the head) to the state and publishes it.
    fn adopt(&self, inner: &mut Inner, records: Vec<RevisionInfo>) {
        let mut touched = false;
        let mut adopted = false;
        for record in records {
            if record.revision != inner.head() + 1 {
                continue;
            }
            touched |= !record.changes.is_empty();
            apply_changes(&mut inner.overrides, &record.changes);
            tracing::info!(
                revision = record.revision,
                kind = ?record.kind,
                flag = record.flag.as_deref().unwrap_or(""),
                actor = %record.actor,
                reason = %record.reason,
                "authority revision"
            );
            inner.log.push(record);
            adopted = true;
        }
        if adopted {
            self.publish(inner, touched);
        }
    }

    /// Replaces the whole state with `replay` (a shared journal read again).
    fn reset(&self, inner: &mut Inner, replay: Replay) {
        let base = replay.snapshot.unwrap_or_default();
        let mut overrides = base.overrides.clone();
        for r in &replay.records {
            apply_changes(&mut overrides, &r.changes);
        }
        if replay.records.last().map_or(base.revision, |r| r.revision) < inner.head() {
            tracing::warn!(
                held = inner.head(),
                "the shared store holds fewer revisions than this replica served"
            );
        }
        *inner = Inner {
            base,
            log: replay.records,
            overrides,
        };
        self.publish(inner, true);
    }

    /// Publishes the state in `inner` to readers (and the store, when `touched`).
    fn publish(&self, inner: &Inner, touched: bool) {
        self.served
            .store(inner.head(), std::sync::atomic::Ordering::Release);
        if touched {
            self.store
                .set_overrides(Arc::new(to_store(&inner.overrides)));
        }
        self.published.store(Arc::new(Published {
            head: inner.head(),
            overrides: inner.overrides.clone(),
        }));
        self.head_tx.send_replace(inner.head());
        self.save_cache(inner);
    }

    fn save_cache(&self, inner: &Inner) {
        if let Some(cache) = &self.cache {
            let snapshot = inner.base.advanced(&inner.log, now());
            if let Err(e) = cache.store(&snapshot) {
                tracing::warn!(path = %cache.path().display(), error = %e,
                    "could not save the state cache");
            }
        }
    }

    /// The revision this process serves, as a shared counter that evaluations read without a
    /// lock (`--revision-metadata`).
    pub fn served_revision(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.served)
    }

    /// How the shared journal stands with its store (`None`: a local journal).
    pub fn store_health(&self) -> Option<StoreHealth> {
        self.journal.health()
    }

    /// With `if_match`: whether it is the head. A shared journal may be ahead of this replica,
    /// so on a mismatch the head is read again before the change is refused.
    fn check_head(&self, inner: &mut Inner, if_match: Option<u64>) -> Result<(), AuthorityError> {
        if let Some(expected) = if_match
            && expected != inner.head()
            && self.journal.health().is_some()
        {
            self.catch_up(inner)?;
        }
        check_head(inner, if_match)
    }

    /// Runs `attempt` again while it loses a race with another replica writing the shared
    /// journal: each conflict has applied the other's revisions, so the next attempt works out
    /// the change from the state as it now is, as one process would have. A caller that named
    /// the revision it changes (`If-Match`) gets the conflict instead.
    fn retrying<T>(
        &self,
        if_match: Option<u64>,
        mut attempt: impl FnMut() -> Result<T, AuthorityError>,
    ) -> Result<T, AuthorityError> {
        let shared = self.journal.health().is_some();
        let mut tries = 0;
        loop {
            match attempt() {
                Err(AuthorityError::Conflict { .. })
                    if shared && if_match.is_none() && tries < CATCH_UP_RETRIES =>
                {
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    /// Reads what other writers appended after the head and applies it; returns it.
    fn catch_up(&self, inner: &mut Inner) -> Result<Vec<RevisionInfo>, AuthorityError> {
        let caught = self.journal.read_from(inner.head() + 1)?;
        self.adopt(inner, caught.clone());
        Ok(caught)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store the overrides are applied to.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The latest revision (0 before the first change). Lock-free.
    pub fn head(&self) -> u64 {
        self.published.load().head
    }

    /// Watches the head: changes after every revision (override or rollout record).
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.head_tx.subscribe()
    }

    /// The overrides in effect, by flag key. Lock-free.
    pub fn overrides(&self) -> Vec<(String, OverridePatch)> {
        self.published
            .load()
            .overrides
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// The override on flag `key`, if any. Lock-free.
    pub fn override_of(&self, key: &str) -> Option<OverridePatch> {
        self.published.load().overrides.get(key).cloned()
    }

    /// The rollout records a replay needs, in order, as (revision, flag, event): those the
    /// journal's snapshot kept (each flag's latest rollout) and every later one.
    pub fn rollout_records(&self) -> Vec<(u64, String, Value)> {
        let inner = self.lock();
        let kept = inner
            .base
            .rollouts
            .iter()
            .map(|r| (r.revision, r.flag.clone(), r.event.clone()));
        let live = inner
            .log
            .iter()
            .filter(|r| r.kind == RevisionKind::Rollout)
            .filter_map(|r| Some((r.revision, r.flag.clone()?, r.event.clone()?)));
        kept.chain(live).collect()
    }

    /// Compacts the journal now: the revisions after its snapshot move into its archive and it
    /// restarts from a snapshot at the head. Returns the archived range (`None`: nothing to
    /// compact, or a journal that does not compact).
    pub fn compact(&self) -> Result<Option<Segment>, AuthorityError> {
        let mut inner = self.lock();
        self.compact_locked(&mut inner)
    }

    fn compact_locked(&self, inner: &mut Inner) -> Result<Option<Segment>, AuthorityError> {
        if inner.log.is_empty() {
            return Ok(None);
        }
        let snapshot = inner.base.advanced(&inner.log, now());
        let segment = self.journal.compact(&snapshot)?;
        if segment.is_some() {
            inner.base = snapshot;
            inner.log = Vec::new();
        }
        Ok(segment)
    }

    /// Closes the journal: no change is accepted any more, and the state directory is free for
    /// another process. Called when the daemon stops.
    pub fn close(&self) {
        self.journal.close();
    }

    /// Sets (or changes) the override of flag `key`: the fields `patch` sets replace those of
    /// the current override, the others are kept. Only the fields `patch` sets are validated:
    /// a field of the current override that a file edit made stale neither blocks the change
    /// nor is dropped by it (it stays reported until it is set again or cleared). With
    /// `if_match`, the change is made only if the authority is still at that revision.
    pub fn set_override(
        &self,
        key: &str,
        patch: OverridePatch,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        if patch.is_empty() {
            return Err(AuthorityError::EmptyPatch);
        }
        self.retrying(if_match, || {
            self.set_override_once(key, patch.clone(), actor, reason, if_match)
        })
    }

    fn set_override_once(
        &self,
        key: &str,
        patch: OverridePatch,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        let mut inner = self.lock();
        self.check_head(&mut inner, if_match)?;
        self.store.validate_override(key, &patch)?;
        let before = inner.overrides.get(key).cloned();
        let after = merged(before.as_ref(), patch);
        let change = OverrideChange {
            flag: key.to_owned(),
            before,
            after: Some(after),
        };
        let draft = Draft {
            if_match,
            ..Draft::new(RevisionKind::Set, Some(key), vec![change])
        };
        self.commit(&mut inner, draft, actor, reason)
    }

    /// Removes the override of flag `key`, so it is served as its document defines it.
    pub fn clear_override(
        &self,
        key: &str,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        self.retrying(if_match, || {
            self.clear_override_once(key, actor, reason, if_match)
        })
    }

    fn clear_override_once(
        &self,
        key: &str,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        let mut inner = self.lock();
        self.check_head(&mut inner, if_match)?;
        let Some(before) = inner.overrides.get(key).cloned() else {
            return Err(AuthorityError::NoOverride(key.to_owned()));
        };
        let change = OverrideChange {
            flag: key.to_owned(),
            before: Some(before),
            after: None,
        };
        let draft = Draft {
            if_match,
            ..Draft::new(RevisionKind::Clear, Some(key), vec![change])
        };
        self.commit(&mut inner, draft, actor, reason)
    }

    /// Makes the override set what it was right after `revision` (0: no overrides), as a new
    /// revision. A recorded state is restored as it was recorded: fields that no longer fit the
    /// flags are reported as stale and skipped, as after a file edit, and overrides of flags
    /// that are gone are kept as dangling.
    pub fn restore(
        &self,
        revision: u64,
        actor: &str,
        reason: &str,
    ) -> Result<RevisionInfo, AuthorityError> {
        self.restore_if(revision, actor, reason, None)
    }

    /// [`Authority::restore`], made only if the authority is still at revision `if_match`.
    pub fn restore_if(
        &self,
        revision: u64,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        self.retrying(if_match, || {
            self.restore_once(revision, actor, reason, if_match)
        })
    }

    fn restore_once(
        &self,
        revision: u64,
        actor: &str,
        reason: &str,
        if_match: Option<u64>,
    ) -> Result<RevisionInfo, AuthorityError> {
        let (mut inner, target) = self.locked_with_target(revision)?;
        self.check_head(&mut inner, if_match)?;
        let mut changes = Vec::new();
        for (key, before) in &inner.overrides {
            if !target.contains_key(key) {
                changes.push(OverrideChange {
                    flag: key.clone(),
                    before: Some(before.clone()),
                    after: None,
                });
            }
        }
        for (key, after) in &target {
            let before = inner.overrides.get(key);
            if before != Some(after) {
                changes.push(OverrideChange {
                    flag: key.clone(),
                    before: before.cloned(),
                    after: Some(after.clone()),
                });
            }
        }
        let draft = Draft {
            restored: Some(revision),
            if_match,
            ..Draft::new(RevisionKind::Restore, None, changes)
        };
        self.commit(&mut inner, draft, actor, reason)
    }

    /// The override set right after `revision` (0: none), as [`Authority::restore`] would put
    /// it back: what a restore's confirmation compares with the live set.
    pub fn overrides_at(
        &self,
        revision: u64,
    ) -> Result<BTreeMap<String, OverridePatch>, AuthorityError> {
        self.locked_with_target(revision).map(|(_, target)| target)
    }

    /// The lock, and the override set right after `revision`. A revision older than the
    /// journal's snapshot is read from the archive first, without the lock (history never
    /// changes). The snapshot only moves forward, so a revision the lock finds newer than it
    /// stays in memory.
    fn locked_with_target(
        &self,
        revision: u64,
    ) -> Result<(MutexGuard<'_, Inner>, BTreeMap<String, OverridePatch>), AuthorityError> {
        let mut archived = None;
        let inner = loop {
            let inner = self.lock();
            if archived.is_some() || revision >= inner.base.revision {
                break inner;
            }
            drop(inner);
            archived = Some(self.archived_overrides(revision)?);
        };
        let head = inner.head();
        if revision > head {
            return Err(AuthorityError::UnknownRevision { revision, head });
        }
        let target = match archived {
            Some(target) => target,
            None => inner
                .overrides_at(revision)
                .ok_or(AuthorityError::UnknownRevision { revision, head })?,
        };
        Ok((inner, target))
    }

    /// The flag an unqualified evaluation of `flag` serves (the highest-priority source's,
    /// with the override layered on it): its `fractional` split, if it has a single one, and its
    /// override.
    pub fn rollout_basis(&self, flag: &str) -> Result<RolloutBasis, AuthorityError> {
        let inner = self.lock();
        self.basis(&inner, flag)
    }

    fn basis(&self, inner: &Inner, flag: &str) -> Result<RolloutBasis, AuthorityError> {
        let snapshot = self.store.snapshot_full();
        let served = snapshot
            .get(flag, &Selector::All)
            .ok_or_else(|| AuthorityError::UnknownFlag(flag.to_owned()))?;
        let empty = Map::new();
        let evaluators = snapshot
            .document(served.priority as usize)
            .map_or(&empty, |d| d.evaluators());
        Ok(RolloutBasis {
            split: served.flag.fractional_split(evaluators).ok(),
            current: inner.overrides.get(flag).cloned(),
        })
    }

    /// Starts a rollout of flag `flag` in one step under the authority's lock: `build` is given
    /// the flag as served now ([`RolloutBasis`]) and returns the start record, the split's first
    /// weights and the reason; they are journaled (the weights merged into the flag's override
    /// and validated) before anything else can change the flag. Returns the revision and what
    /// `build` handed back with the record.
    pub fn start_rollout<T, E>(
        &self,
        flag: &str,
        actor: &str,
        build: impl FnOnce(RolloutBasis) -> Result<(RolloutStart, T), E>,
    ) -> Result<(RevisionInfo, T), E>
    where
        E: From<AuthorityError>,
    {
        let mut inner = self.lock();
        let basis = self.basis(&inner, flag)?;
        let (start, out) = build(basis)?;
        let changes = self.rollout_changes(&inner, flag, RolloutChange::Weights(start.weights))?;
        let draft = Draft {
            event: Some(start.event),
            ..Draft::new(RevisionKind::Rollout, Some(flag), changes)
        };
        let info = self.commit(&mut inner, draft, actor, &start.reason)?;
        Ok((info, out))
    }

    /// Records a rollout's state change for flag `flag`, changing the flag's override in the
    /// same revision as `change` says. Only [`RolloutChange::Weights`] is validated against the
    /// flag; putting back an earlier override is always recorded, even for a flag or variant
    /// that is gone.
    pub fn append_rollout(
        &self,
        flag: &str,
        event: Value,
        change: RolloutChange,
        actor: &str,
        reason: &str,
    ) -> Result<RevisionInfo, AuthorityError> {
        let mut inner = self.lock();
        let changes = self.rollout_changes(&inner, flag, change)?;
        let draft = Draft {
            event: Some(event),
            ..Draft::new(RevisionKind::Rollout, Some(flag), changes)
        };
        self.commit(&mut inner, draft, actor, reason)
    }

    fn rollout_changes(
        &self,
        inner: &Inner,
        flag: &str,
        change: RolloutChange,
    ) -> Result<Vec<OverrideChange>, AuthorityError> {
        let before = inner.overrides.get(flag).cloned();
        let after = match change {
            RolloutChange::Keep => return Ok(Vec::new()),
            // Only the weights are validated: another field of the override that a file edit
            // made stale is kept (and stays reported), as for any other change.
            RolloutChange::Weights(weights) => {
                let patch = weights_only(&weights);
                self.store.validate_override(flag, &patch)?;
                Some(merged(before.as_ref(), patch))
            }
            RolloutChange::Restore(prior) => prior,
            RolloutChange::RestoreWeights(weights) => {
                let patch = weights_only(&weights);
                if let Err(e) = self.store.validate_override(flag, &patch) {
                    tracing::warn!(flag, error = %e, "a rollout's earlier split no longer applies; the override is left as it is");
                    return Ok(Vec::new());
                }
                Some(merged(before.as_ref(), patch))
            }
        };
        if after == before {
            return Ok(Vec::new());
        }
        Ok(vec![OverrideChange {
            flag: flag.to_owned(),
            before,
            after,
        }])
    }

    /// Journals a revision, then applies it. With a shared journal another replica may have
    /// appended first: its revisions are applied, and the draft is tried again on top of them
    /// when they touch none of its flags (otherwise, or with `If-Match`, it is a conflict).
    fn commit(
        &self,
        inner: &mut Inner,
        draft: Draft,
        actor: &str,
        reason: &str,
    ) -> Result<RevisionInfo, AuthorityError> {
        let mut record = RevisionInfo {
            revision: inner.head() + 1,
            time: now(),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            kind: draft.kind,
            flag: draft.flag.clone(),
            changes: draft.changes.clone(),
            restored: draft.restored,
            event: draft.event.clone(),
        };
        let mut retries = 0;
        loop {
            let head = inner.head();
            match self.journal.append_if_head(head, &record) {
                Ok(_) => break,
                Err(JournalError::Conflict { .. }) if retries < CATCH_UP_RETRIES => {
                    retries += 1;
                    let caught = self.catch_up(inner)?;
                    if caught.is_empty() || caught.iter().any(|r| draft.clashes_with(r)) {
                        return Err(AuthorityError::Conflict {
                            expected: draft.if_match.unwrap_or(head),
                            head: inner.head(),
                        });
                    }
                    record.revision = inner.head() + 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.adopt(inner, vec![record.clone()]);
        // The revision is durable and applied; a failed compaction only leaves the journal
        // longer, and is tried again after the next revision.
        if self.journal.compaction_due()
            && let Err(e) = self.compact_locked(inner)
        {
            tracing::warn!(error = %e, "could not compact the journal");
        }
        Ok(record)
    }

    /// Overrides on flags that no source defines now. Lock-free.
    pub fn dangling_overrides(&self) -> Vec<DanglingOverride> {
        let published = self.published.load();
        let snapshot = self.store.snapshot();
        published
            .overrides
            .iter()
            .filter(|(key, _)| snapshot.get(key, &Selector::All).is_none())
            .map(|(key, patch)| DanglingOverride {
                key: key.clone(),
                override_patch: patch.clone(),
            })
            .collect()
    }

    /// Every flag as served (highest-priority definition per flag set and key), with its
    /// override, its stale override fields and its split. Lock-free.
    pub fn effective_flags(&self) -> Vec<EffectiveFlag> {
        let published = self.published.load_full();
        let overrides = &published.overrides;
        let failures = self.store.override_failures();
        let snapshot = self.store.snapshot_full();
        snapshot
            .iter(&Selector::All)
            .map(|r| {
                let flag = r.flag;
                let evaluators = snapshot
                    .document(r.priority as usize)
                    .map(|d| d.evaluators());
                let empty = Map::new();
                let stale_fields: Vec<StaleField> = failures
                    .iter()
                    .filter(|f| f.key == flag.key())
                    .map(|f| StaleField {
                        field: f.field,
                        error: f.error.to_string(),
                    })
                    .collect();
                let override_error = (!stale_fields.is_empty()).then(|| {
                    stale_fields
                        .iter()
                        .map(|f| format!("{} not applied: {}", f.field, f.error))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                EffectiveFlag {
                    key: flag.key().to_owned(),
                    flag_set_id: flag.flag_set_id().map(str::to_owned),
                    source: r.source.to_string(),
                    state: flag.state(),
                    default_variant: flag.default_variant().map(|(n, _)| n.to_owned()),
                    variants: flag
                        .variants()
                        .map(|(k, v)| (k.to_owned(), v.clone()))
                        .collect(),
                    split: flag.fractional_split(evaluators.unwrap_or(&empty)).ok(),
                    override_patch: overrides.get(flag.key()).cloned(),
                    stale_fields,
                    override_error,
                }
            })
            .collect()
    }
}

fn check_head(inner: &Inner, if_match: Option<u64>) -> Result<(), AuthorityError> {
    match if_match {
        Some(expected) if expected != inner.head() => Err(AuthorityError::Conflict {
            expected,
            head: inner.head(),
        }),
        _ => Ok(()),
    }
}

fn to_store(overrides: &BTreeMap<String, OverridePatch>) -> Overrides {
    overrides
        .iter()
        .map(|(k, p)| (Box::from(k.as_str()), p.clone()))
        .collect()
}

/// Publishes the authority's state at every scrape: the revision, the number of overrides and
/// the weight of every variant of every flag's split (whether set by an override or the file).
#[derive(Debug)]
pub struct AuthorityCollector(Arc<Authority>);

impl AuthorityCollector {
    /// A collector reading `authority`.
    pub fn new(authority: Arc<Authority>) -> Self {
        AuthorityCollector(authority)
    }
}

impl prometheus_client::collector::Collector for AuthorityCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::gauge::ConstGauge;

        // Published state only: a scrape never waits on a change being journaled.
        let (head, active) = {
            let published = self.0.published.load();
            (published.head, published.overrides.len())
        };
        let revision = ConstGauge::new(i64::try_from(head).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "flagd_rs_authority_revision",
            "The latest override revision",
            None,
            revision.metric_type(),
        )?;
        revision.encode(m)?;
        let count = ConstGauge::new(i64::try_from(active).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "flagd_rs_authority_overrides_active",
            "Number of flags with an override",
            None,
            count.metric_type(),
        )?;
        count.encode(m)?;

        if let Some(health) = self.0.store_health() {
            let connected = ConstGauge::new(i64::from(health.connected));
            let m = encoder.encode_descriptor(
                "flagd_rs_store_connected",
                "Whether the shared store (etcd) answers (1) or not (0)",
                None,
                connected.metric_type(),
            )?;
            connected.encode(m)?;
            // Seconds since the store last confirmed the state served is current; from start-up
            // when it never has (the state came from the local cache).
            let since = health.confirmed.unwrap_or(self.0.started);
            let age = SystemTime::now()
                .duration_since(since)
                .unwrap_or_default()
                .as_secs_f64();
            let age = ConstGauge::new(age);
            let m = encoder.encode_descriptor(
                "flagd_rs_store_state_age_seconds",
                "Seconds since the shared store last confirmed the served state is current",
                None,
                age.metric_type(),
            )?;
            age.encode(m)?;
        }

        let dangling =
            ConstGauge::new(i64::try_from(self.0.dangling_overrides().len()).unwrap_or(i64::MAX));
        let m = encoder.encode_descriptor(
            "flagd_rs_authority_overrides_dangling",
            "Number of overrides on flags that no source defines",
            None,
            dangling.metric_type(),
        )?;
        dangling.encode(m)?;
        let failures = self.0.store.override_failures();
        let mut family = encoder.encode_descriptor(
            "flagd_rs_authority_override_stale_fields",
            "Override fields not applied because the flag's file changed (1 per flag and field)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let mut seen = std::collections::BTreeSet::new();
        for f in failures.iter() {
            if seen.insert((f.key.as_str(), f.field)) {
                let labels: [(&str, &str); 2] =
                    [("feature_flag_key", &f.key), ("field", f.field.name())];
                ConstGauge::new(1i64).encode(family.encode_family(&labels)?)?;
            }
        }

        // One series per key: the definition an unqualified evaluation serves (the
        // highest-priority source's), when several flag sets define the key.
        let snapshot = self.0.store.snapshot_full();
        let flags: BTreeMap<String, EffectiveFlag> = self
            .0
            .effective_flags()
            .into_iter()
            .filter(|f| {
                snapshot.get(&f.key, &Selector::All).is_some_and(|r| {
                    **r.source == *f.source && r.flag.flag_set_id() == f.flag_set_id.as_deref()
                })
            })
            .map(|f| (f.key.clone(), f))
            .collect();
        let mut family = encoder.encode_descriptor(
            "flagd_rs_split_weight",
            "Current weight of each variant of a flag's fractional split",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for flag in flags.values() {
            for entry in flag.split.iter().flatten() {
                let Some(weight) = entry.weight else {
                    continue;
                };
                let labels: [(&str, &str); 2] =
                    [("feature_flag_key", &flag.key), ("variant", &entry.variant)];
                let gauge = ConstGauge::new(i64::try_from(weight).unwrap_or(i64::MAX));
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}
