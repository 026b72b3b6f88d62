//! The flag store: the single writer that turns source updates into immutable snapshots.
//!
//! Sources send [`SourceUpdate`]s; the store task parses and compiles each payload, keeps the
//! last good flags of a source when a payload is invalid, merges sources by priority (a later
//! source wins for the same flag set and key) and publishes a new [`Snapshot`] through an
//! `ArcSwap`. Readers load the current snapshot without locking; subscribers receive the set of
//! flags that changed.
//!
//! Overrides (live patches set through the admin API) are layered over the sources' documents
//! when a snapshot is built, so every server sees the effective flags; they stay applied when a
//! source reloads.

use std::hash::Hasher;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::{ArcSwap, Guard};
use flagd_evaluator::{
    Diagnostic, Flag, FlagSet, Format, LoadError, LoadOptions, OverridePatch, PatchError,
    PatchFailure,
};
use rustc_hash::{FxHashMap, FxHasher};
use tokio::sync::{broadcast, mpsc, watch};

use crate::otel::Telemetry;
use crate::otel::spans::Traced;
use crate::selector::Selector;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;

/// What a source reports.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// The document's current bytes.
    Content {
        /// Raw bytes as read or fetched.
        bytes: Vec<u8>,
        /// How to parse them.
        format: Format,
    },
    /// Bytes that may belong to a save still in progress (what the file source read right
    /// after a change). The store loads them as [`SourceEvent::Content`]; when they turn out cut
    /// short, it leaves the source as it was and answers `false` through `settled`, so that the
    /// source looks again. Every other outcome, accepted or rejected, answers `true`.
    Unsettled {
        /// Raw bytes as read.
        bytes: Vec<u8>,
        /// How to parse them.
        format: Format,
        /// The bytes' [`content_hash`], which the source works out anyway to tell new bytes
        /// from those it sent; the store uses it instead of hashing them again.
        hash: u64,
        /// Where the answer goes.
        settled: Settled,
    },
    /// The document is gone (a deleted file): its flags are removed.
    Removed,
    /// Fetching failed; the last good flags of the source stay.
    Failed(String),
}

/// What tells a document's bytes from other bytes: a fast hash of all of them and their length
/// (an unnoticed change would need two versions with the same hash, which only their writer can
/// make, against itself). The store keeps it per source to skip bytes it already holds.
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = FxHasher::default();
    h.write(bytes);
    h.write_usize(bytes.len());
    h.finish()
}

/// The store's answer to [`SourceEvent::Unsettled`]: `true` once the bytes were taken (accepted
/// or rejected), `false` when they were cut short and the source should look again. Dropped
/// unanswered only when the store stops.
#[derive(Debug, Clone)]
pub struct Settled(Arc<Mutex<Option<tokio::sync::oneshot::Sender<bool>>>>);

impl Settled {
    /// An answer slot and the receiver the source waits on.
    pub fn channel() -> (Settled, tokio::sync::oneshot::Receiver<bool>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Settled(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Answers (only the first answer counts).
    pub fn answer(&self, settled: bool) {
        let sender = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sender) = sender {
            let _ = sender.send(settled);
        }
    }
}

/// Whether bytes that failed to load are a document cut short (a save in progress) rather than a
/// finished document with an error: a JSON document that does not close every string, array and
/// object it opens (one that did would have parsed, or failed for another reason than its end),
/// or a YAML document that does not parse.
pub fn cut_short(bytes: &[u8], format: Format, error: &LoadError) -> bool {
    match format {
        Format::Json => !flagd_evaluator::closed(bytes),
        Format::Yaml => matches!(error, LoadError::Syntax { .. }),
    }
}

/// One message from a source to the store task.
#[derive(Debug, Clone)]
pub struct SourceUpdate {
    /// Index of the source in the configured list; also its priority (higher wins).
    pub source: usize,
    /// What happened.
    pub event: SourceEvent,
}

/// How a flag changed between two snapshots (flagd's EventStream vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The flag appeared.
    Write,
    /// The flag's definition changed.
    Update,
    /// The flag disappeared.
    Delete,
}

impl ChangeKind {
    /// The wire string: `write`, `update` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Write => "write",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One changed flag. It shares the flag it names (the new definition, or for a delete the
/// removed one) instead of copying its key and flag set.
#[derive(Debug, Clone)]
pub struct FlagChange {
    /// The flag as defined now, or as it was before a delete.
    flag: Arc<Flag>,
    /// The source that defines (or defined) it.
    pub source: Arc<str>,
    /// What happened to it.
    pub kind: ChangeKind,
}

impl FlagChange {
    /// The change of `flag` from `source`.
    fn new(flag: &Arc<Flag>, source: &Arc<str>, kind: ChangeKind) -> FlagChange {
        FlagChange {
            flag: flag.clone(),
            source: source.clone(),
            kind,
        }
    }

    /// The flag's key.
    pub fn key(&self) -> &str {
        self.flag.key()
    }

    /// The flag set it belongs (or belonged) to.
    pub fn flag_set_id(&self) -> Option<&str> {
        self.flag.flag_set_id()
    }
}

impl PartialEq for FlagChange {
    fn eq(&self, other: &FlagChange) -> bool {
        self.key() == other.key()
            && self.flag_set_id() == other.flag_set_id()
            && self.source == other.source
            && self.kind == other.kind
    }
}

impl Eq for FlagChange {}

/// The flags that changed when a revision was published.
#[derive(Debug, Clone)]
pub struct Change {
    /// The revision that introduced the change.
    pub revision: u64,
    /// The changed flags as a request without a source selector sees them (the
    /// highest-priority definition of each flag set and key), in store order.
    pub flags: Vec<FlagChange>,
    /// The changed flags of each source's own document, shadowed ones included: what a
    /// `source=` selector sees. In source order, then by key.
    pub by_source: Vec<FlagChange>,
}

impl Change {
    /// The changes visible through `selector`.
    pub fn selected<'a>(&'a self, selector: &'a Selector) -> impl Iterator<Item = &'a FlagChange> {
        let list = match selector {
            Selector::Source(_) => &self.by_source,
            Selector::All | Selector::FlagSet(_) => &self.flags,
        };
        list.iter()
            .filter(move |c| selector.matches(c.flag_set_id(), &c.source))
    }

    /// Whether nothing any selector sees changed.
    pub fn is_empty(&self) -> bool {
        self.flags.is_empty() && self.by_source.is_empty()
    }
}

/// A flag as the store serves it.
#[derive(Debug, Clone, Copy)]
pub struct FlagRef<'a> {
    /// The compiled flag.
    pub flag: &'a Flag,
    /// The URI of the source that defines it.
    pub source: &'a Arc<str>,
    /// The source's priority (its index; higher wins).
    pub priority: u32,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    source: u32,
    flag: u32,
    /// Whether the next entry has the same flag set and key (a higher-priority source's flag,
    /// which shadows this one except under a source selector).
    shadowed: bool,
}

/// One immutable, published state of all flags.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Monotonically increasing; bumped on every publish.
    pub revision: u64,
    sources: Arc<[Arc<str>]>,
    /// Per source, its document; a key is looked up in each through the document's own index.
    documents: Vec<Option<Arc<FlagSet>>>,
    /// Every stored flag sorted by (flag set, key, priority).
    entries: Vec<Entry>,
}

/// A stored flag as the change lists take it: the shared flag, its source and priority.
#[derive(Clone, Copy)]
struct Shared<'a> {
    flag: &'a Arc<Flag>,
    source: &'a Arc<str>,
    priority: u32,
}

impl<'a> Shared<'a> {
    /// The flag as the store serves it.
    fn served(self) -> FlagRef<'a> {
        FlagRef {
            flag: self.flag,
            source: self.source,
            priority: self.priority,
        }
    }
}

impl Snapshot {
    fn build(
        revision: u64,
        sources: Arc<[Arc<str>]>,
        documents: Vec<Option<Arc<FlagSet>>>,
    ) -> Self {
        // Each flag with its sort key, worked out once; one document's flags come sorted by key,
        // so without flag sets (or with one source) the list is usually in order already.
        let mut keyed: Vec<(Option<&str>, &str, Entry)> = Vec::new();
        for (s, doc) in documents.iter().enumerate() {
            if let Some(doc) = doc {
                keyed.reserve(doc.len());
                keyed.extend(doc.flags().iter().enumerate().map(|(f, flag)| {
                    (
                        flag.flag_set_id(),
                        flag.key(),
                        Entry {
                            source: s as u32,
                            flag: f as u32,
                            shadowed: false,
                        },
                    )
                }));
            }
        }
        let order = |a: &(Option<&str>, &str, Entry), b: &(Option<&str>, &str, Entry)| {
            (a.0, a.1, a.2.source).cmp(&(b.0, b.1, b.2.source))
        };
        if !keyed.is_sorted_by(|a, b| order(a, b).is_le()) {
            keyed.sort_unstable_by(order);
        }
        let mut entries: Vec<Entry> = keyed.iter().map(|&(_, _, e)| e).collect();
        for (e, pair) in entries.iter_mut().zip(keyed.windows(2)) {
            if let [(set, key, _), (next_set, next_key, _)] = pair {
                e.shadowed = set == next_set && key == next_key;
            }
        }
        Snapshot {
            revision,
            sources,
            documents,
            entries,
        }
    }

    /// The stored flag `e` names.
    fn shared(&self, e: Entry) -> Option<Shared<'_>> {
        Some(Shared {
            flag: self
                .documents
                .get(e.source as usize)?
                .as_ref()?
                .flags()
                .get(e.flag as usize)?,
            source: self.sources.get(e.source as usize)?,
            priority: e.source,
        })
    }

    /// Looks up `key` as flagd does: the highest-priority flag with that key that `selector`
    /// admits.
    #[inline]
    pub fn get(&self, key: &str, selector: &Selector) -> Option<FlagRef<'_>> {
        self.documents
            .iter()
            .zip(self.sources.iter())
            .enumerate()
            .rev()
            .filter_map(|(s, (doc, source))| {
                Some(FlagRef {
                    flag: doc.as_ref()?.get(key)?,
                    source,
                    priority: s as u32,
                })
            })
            .find(|r| selector.matches(r.flag.flag_set_id(), r.source))
    }

    /// The flags `selector` admits, in store order (flag set, then key). For the same flag set
    /// and key only the highest-priority source's flag is listed, except under a source
    /// selector, which lists that source's own flags.
    pub fn iter<'a>(&'a self, selector: &'a Selector) -> impl Iterator<Item = FlagRef<'a>> + 'a {
        self.iter_shared(selector).map(Shared::served)
    }

    /// [`Snapshot::iter`] as the shared flags.
    fn iter_shared<'a>(&'a self, selector: &'a Selector) -> impl Iterator<Item = Shared<'a>> + 'a {
        let by_source = matches!(selector, Selector::Source(_));
        self.entries
            .iter()
            .filter(move |e| by_source || !e.shadowed)
            .filter_map(move |e| self.shared(*e))
            .filter(move |r| selector.matches(r.flag.flag_set_id(), r.source))
    }

    /// Number of flags visible without a selector.
    pub fn len(&self) -> usize {
        self.iter(&Selector::All).count()
    }

    /// Whether no flag is visible.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The configured sources' URIs, in priority order.
    pub fn sources(&self) -> &[Arc<str>] {
        &self.sources
    }

    /// The last good document of source `index`.
    pub fn document(&self, index: usize) -> Option<&Arc<FlagSet>> {
        self.documents.get(index).and_then(Option::as_ref)
    }
}

/// Readiness of one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    /// The source's URI.
    pub uri: Arc<str>,
    /// Whether it has delivered a valid document at least once (sticky).
    pub synced: bool,
    /// The last problem reported for it, if its latest update failed.
    pub last_error: Option<String>,
    /// When it last delivered a document that was accepted (or the same bytes again).
    pub last_sync: Option<std::time::SystemTime>,
    /// The diagnostics of the last document it delivered: the errors that rejected it (the
    /// last good flags were kept), or the warnings of an accepted one.
    pub diagnostics: Vec<flagd_evaluator::Diagnostic>,
}

/// What the store remembers of a source's latest update, for `/readyz` and the dashboard.
#[derive(Debug, Clone, Default)]
struct SourceReport {
    last_error: Option<String>,
    last_sync: Option<std::time::SystemTime>,
    diagnostics: Vec<flagd_evaluator::Diagnostic>,
}

/// Shared flag state: the current snapshot plus change notifications.
#[derive(Debug)]
pub struct Store {
    sources: Arc<[Arc<str>]>,
    options: LoadOptions,
    /// The published snapshot; shared because every request reads it.
    current: ArcSwap<Snapshot>,
    /// Change sets, for EventStream subscribers; shared so servers can subscribe.
    changes: broadcast::Sender<Arc<Change>>,
    /// The latest revision, for watchers that only need "something changed".
    revision: watch::Sender<u64>,
    /// Per source: has it synced once (readiness is sticky, as in flagd).
    synced: Box<[AtomicBool]>,
    /// Writer-only bookkeeping (content hashes, last good documents, the override set). Held
    /// only to merge and swap, never while a document is parsed; readers never take it.
    writer: Mutex<WriterState>,
    /// Per source: the last problem reported for it, its last sync and the diagnostics of its
    /// last document (read by `/readyz` and the dashboard).
    errors: Mutex<Vec<SourceReport>>,
    /// The override fields that do not apply to the flags loaded now, published for readers.
    published_failures: ArcSwap<Vec<PatchFailure>>,
}

/// Why [`Store::publish`] published nothing.
enum Publish {
    /// The document was rejected; the source's last good flags stay.
    Rejected(LoadError),
    /// Unsettled bytes were cut short; nothing changed.
    CutShort,
}

#[derive(Debug, Default)]
struct WriterState {
    hashes: Vec<Option<u64>>,
    /// Per source: the last good document as loaded, before overrides.
    raw: Vec<Option<Arc<FlagSet>>>,
    /// The override set layered over every document.
    overrides: Arc<Overrides>,
    /// Per source: the overrides that did not apply to its document.
    failures: Vec<Vec<PatchFailure>>,
}

/// The override set: flag key -> patch, applied to every stored flag with that key.
pub type Overrides = FxHashMap<Box<str>, OverridePatch>;

/// Why an override cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// No source defines a flag with that key.
    #[error("no flag '{0}' is defined")]
    UnknownFlag(String),
    /// The patch does not apply to a stored flag with that key.
    #[error(transparent)]
    Patch(#[from] PatchError),
}

/// `doc` with the overrides that name its flags applied field by field, and the fields that did
/// not apply. A document no override names is shared, not copied.
fn overlay(
    doc: &Arc<FlagSet>,
    overrides: &Overrides,
    options: &LoadOptions,
) -> (Arc<FlagSet>, Vec<PatchFailure>) {
    if overrides.is_empty() || !overrides.keys().any(|k| doc.get(k).is_some()) {
        return (doc.clone(), Vec::new());
    }
    let (patched, failures) = doc.with_patches(|key| overrides.get(key), options);
    for f in &failures {
        tracing::warn!(flag = %f.key, field = %f.field, error = %f.error, "override field is stale after a file change; skipped, the other fields apply");
    }
    (Arc::new(patched), failures)
}

impl Store {
    /// A store for `sources` (URIs in priority order), with nothing loaded yet.
    pub fn new(sources: Vec<String>, options: LoadOptions) -> Arc<Store> {
        let sources: Arc<[Arc<str>]> = sources.into_iter().map(Arc::from).collect();
        let n = sources.len();
        let snapshot = Snapshot::build(0, sources.clone(), vec![None; n]);
        Arc::new(Store {
            sources,
            options,
            current: ArcSwap::from_pointee(snapshot),
            changes: broadcast::channel(1024).0,
            revision: watch::channel(0).0,
            synced: (0..n).map(|_| AtomicBool::new(false)).collect(),
            writer: Mutex::new(WriterState {
                hashes: vec![None; n],
                raw: vec![None; n],
                overrides: Arc::default(),
                failures: vec![Vec::new(); n],
            }),
            errors: Mutex::new(vec![SourceReport::default(); n]),
            published_failures: ArcSwap::default(),
        })
    }

    /// The current snapshot. Cheap, lock-free; hold it only for the duration of one request.
    #[inline]
    pub fn snapshot(&self) -> Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The current snapshot as an owned `Arc`, for holding across `.await`.
    pub fn snapshot_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Receives every published change set.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Watches the latest revision.
    pub fn watch_revision(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// The load options every document is loaded with.
    pub fn options(&self) -> &LoadOptions {
        &self.options
    }

    /// True once every source has delivered a valid document at least once.
    pub fn is_ready(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Acquire))
    }

    /// Per-source readiness and last error.
    pub fn source_status(&self) -> Vec<SourceStatus> {
        let errors = self.errors.lock().map(|e| e.clone()).unwrap_or_default();
        self.sources
            .iter()
            .enumerate()
            .map(|(i, uri)| SourceStatus {
                uri: uri.clone(),
                synced: self
                    .synced
                    .get(i)
                    .is_some_and(|s| s.load(Ordering::Acquire)),
                last_error: errors.get(i).and_then(|r| r.last_error.clone()),
                last_sync: errors.get(i).and_then(|r| r.last_sync),
                diagnostics: errors
                    .get(i)
                    .map(|r| r.diagnostics.clone())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Applies one update. Only the store task calls this; it is synchronous because parsing
    /// and compiling is CPU work. Returns the published change, `Ok(None)` when nothing changed,
    /// or the reason the payload was rejected (the source's last good flags stay).
    ///
    /// After a large document was parsed, accepted or rejected, its freed parse tree is handed
    /// back to the system ([`crate::heap`]).
    pub fn apply(&self, update: SourceUpdate) -> Result<Option<Arc<Change>>, LoadError> {
        let mut parsed_large = false;
        let (update, settled, hash) = match update.event {
            SourceEvent::Unsettled {
                bytes,
                format,
                hash,
                settled,
            } => (
                SourceUpdate {
                    source: update.source,
                    event: SourceEvent::Content { bytes, format },
                },
                Some(settled),
                Some(hash),
            ),
            _ => (update, None, None),
        };
        let result = self.publish(update, hash, settled.is_some(), &mut parsed_large);
        if let Some(settled) = settled {
            settled.answer(!matches!(result, Err(Publish::CutShort)));
        }
        if parsed_large {
            crate::heap::release_free_pages();
        }
        match result {
            Ok(change) => Ok(change),
            // A save in progress: nothing changed, nothing to report.
            Err(Publish::CutShort) => Ok(None),
            Err(Publish::Rejected(err)) => Err(err),
        }
    }

    /// [`Store::apply`] itself; sets `parsed_large` when it parsed a large document. `hash` is
    /// the content's [`content_hash`] when the source sent it. The
    /// document is parsed and compiled before the writer lock is taken; the lock covers only
    /// the override overlay and the swap.
    /// With `unsettled`, bytes that turn out cut short ([`cut_short`]) leave everything as it
    /// was.
    fn publish(
        &self,
        update: SourceUpdate,
        hash: Option<u64>,
        unsettled: bool,
        parsed_large: &mut bool,
    ) -> Result<Option<Arc<Change>>, Publish> {
        let idx = update.source;
        let Some(uri) = self.sources.get(idx).cloned() else {
            return Ok(None);
        };
        // Only the store task publishes source documents, so the hash read here is still the
        // current one when the parsed document is swapped in below.
        let new_doc = match update.event {
            SourceEvent::Failed(message) => {
                tracing::warn!(source = %uri, error = %message, "source failed; keeping its last good flags");
                self.set_error(idx, Some(message));
                return Ok(None);
            }
            SourceEvent::Removed => None,
            // `apply` hands these on as `Content`.
            SourceEvent::Unsettled { .. } => return Ok(None),
            SourceEvent::Content { bytes, format } => {
                let hash = hash.unwrap_or_else(|| content_hash(&bytes));
                let (unchanged, previous) = {
                    let writer = self.lock_writer();
                    (
                        writer.hashes.get(idx).copied().flatten() == Some(hash),
                        writer.raw.get(idx).cloned().flatten(),
                    )
                };
                if unchanged {
                    // The same bytes as the last good document: nothing to publish, and any
                    // error reported since then no longer applies.
                    self.set_error(idx, None);
                    self.mark_synced(idx, None);
                    return Ok(None);
                }
                *parsed_large = bytes.len() >= crate::heap::TRIM_AFTER_BYTES;
                // Flags whose inputs did not change since the last good document are taken
                // from it as they are (the same `Arc`s), so that a one-flag edit compiles one
                // flag and the new snapshot shares everything else with the old one.
                let loaded = match &previous {
                    Some(previous) => {
                        flagd_evaluator::reload(&bytes, format, &self.options, previous)
                    }
                    None => flagd_evaluator::load(&bytes, format, &self.options),
                };
                drop(previous);
                match loaded {
                    Ok(loaded) => {
                        log_warnings(&uri, &loaded.diagnostics);
                        self.mark_synced(idx, Some(loaded.diagnostics.clone()));
                        Some((hash, Arc::new(loaded.flags)))
                    }
                    Err(err) if unsettled && cut_short(&bytes, format, &err) => {
                        tracing::debug!(source = %uri, "flag document cut short; waiting for the rest");
                        return Err(Publish::CutShort);
                    }
                    Err(err) => {
                        tracing::error!(source = %uri, error = %err, "rejected flag document; keeping the last good flags");
                        self.set_error(idx, Some(err.to_string()));
                        self.set_diagnostics(idx, rejection_diagnostics(&err));
                        return Err(Publish::Rejected(err));
                    }
                }
            }
        };
        self.set_error(idx, None);
        let mut writer = self.lock_writer();
        if let Some(h) = writer.hashes.get_mut(idx) {
            *h = new_doc.as_ref().map(|(hash, _)| *hash);
        }
        let new_doc = new_doc.map(|(_, doc)| doc);
        if let Some(slot) = writer.raw.get_mut(idx) {
            *slot = new_doc.clone();
        }
        let (effective, failures) = match &new_doc {
            Some(doc) => {
                let (d, f) = overlay(doc, &writer.overrides, &self.options);
                (Some(d), f)
            }
            None => (None, Vec::new()),
        };
        if let Some(slot) = writer.failures.get_mut(idx) {
            *slot = failures;
        }
        self.published_failures.store(Arc::new(
            writer.failures.iter().flatten().cloned().collect(),
        ));
        let old = self.current.load_full();
        let mut documents = old.documents.clone();
        if let Some(slot) = documents.get_mut(idx) {
            *slot = effective;
        }
        let next = Snapshot::build(old.revision + 1, self.sources.clone(), documents);
        let change = Arc::new(Change {
            revision: next.revision,
            flags: diff(&old, &next),
            by_source: document_diff(&old, &next),
        });
        let revision = next.revision;
        self.current.store(Arc::new(next));
        if new_doc.is_some()
            && let Some(s) = self.synced.get(idx)
        {
            s.store(true, Ordering::Release);
        }
        drop(writer);
        self.revision.send_replace(revision);
        tracing::info!(source = %uri, revision, changed = change.flags.len(), "flags updated");
        if change.is_empty() {
            return Ok(None);
        }
        let _ = self.changes.send(change.clone());
        Ok(Some(change))
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, WriterState> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_error(&self, idx: usize, error: Option<String>) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = errors.get_mut(idx) {
            slot.last_error = error;
        }
    }

    /// Notes an accepted document (`diagnostics`: its warnings) or the same bytes again
    /// (`None`: the diagnostics stay those of the document that was accepted).
    fn mark_synced(&self, idx: usize, diagnostics: Option<Vec<flagd_evaluator::Diagnostic>>) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = errors.get_mut(idx) {
            slot.last_sync = Some(std::time::SystemTime::now());
            if let Some(d) = diagnostics {
                slot.diagnostics = d;
            }
        }
    }

    fn set_diagnostics(&self, idx: usize, diagnostics: Vec<flagd_evaluator::Diagnostic>) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = errors.get_mut(idx) {
            slot.diagnostics = diagnostics;
        }
    }
}

impl Store {
    /// Checks that `patch` applies to every stored flag with key `key`, without changing
    /// anything.
    pub fn validate_override(&self, key: &str, patch: &OverridePatch) -> Result<(), OverrideError> {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = false;
        for doc in writer.raw.iter().flatten() {
            if let Some(flag) = doc.get(key) {
                found = true;
                flag.with_patch(patch, doc.evaluators(), &self.options)?;
            }
        }
        if found {
            Ok(())
        } else {
            Err(OverrideError::UnknownFlag(key.to_owned()))
        }
    }

    /// Replaces the override set and publishes the resulting snapshot (a new revision and a
    /// change set listing the flags whose effective definition changed, as a source update
    /// does). Each override is applied field by field: a field that does not fit the stored
    /// flag is skipped (reported by [`Store::override_failures`] and tried again on every later
    /// load) while the override's other fields apply.
    pub fn set_overrides(&self, overrides: Arc<Overrides>) -> Option<Arc<Change>> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut documents = Vec::with_capacity(writer.raw.len());
        let mut failures = Vec::with_capacity(writer.raw.len());
        for raw in &writer.raw {
            match raw {
                Some(doc) => {
                    let (d, f) = overlay(doc, &overrides, &self.options);
                    documents.push(Some(d));
                    failures.push(f);
                }
                None => {
                    documents.push(None);
                    failures.push(Vec::new());
                }
            }
        }
        self.published_failures
            .store(Arc::new(failures.iter().flatten().cloned().collect()));
        writer.overrides = overrides;
        writer.failures = failures;
        let old = self.current.load_full();
        let next = Snapshot::build(old.revision + 1, self.sources.clone(), documents);
        let change = Arc::new(Change {
            revision: next.revision,
            flags: diff(&old, &next),
            by_source: document_diff(&old, &next),
        });
        let revision = next.revision;
        self.current.store(Arc::new(next));
        drop(writer);
        self.revision.send_replace(revision);
        tracing::info!(revision, changed = change.flags.len(), "overrides applied");
        if change.is_empty() {
            return None;
        }
        let _ = self.changes.send(change.clone());
        Some(change)
    }

    /// The override fields that do not apply to the flags currently loaded (a reload removed a
    /// variant or the split), per flag and field. Lock-free.
    pub fn override_failures(&self) -> Arc<Vec<PatchFailure>> {
        self.published_failures.load_full()
    }

    /// The last good document of source `index` as loaded, before overrides.
    pub fn defined_document(&self, index: usize) -> Option<Arc<FlagSet>> {
        self.writer.lock().ok()?.raw.get(index).cloned().flatten()
    }
}

/// The diagnostics a rejection carries (a syntax error or an oversized document has none: its
/// message is the source's last error).
fn rejection_diagnostics(err: &LoadError) -> Vec<flagd_evaluator::Diagnostic> {
    match err {
        LoadError::Rejected { diagnostics } => diagnostics.clone(),
        _ => Vec::new(),
    }
}

fn log_warnings(uri: &str, diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        tracing::warn!(source = %uri, "{d}");
    }
}

/// Flags visible without a selector, in (flag set, key) order.
fn visible(s: &Snapshot) -> Vec<Shared<'_>> {
    s.iter_shared(&Selector::All).collect()
}

/// The change set between two snapshots: one entry per (flag set, key) that was added,
/// removed, or whose definition or source differs.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<FlagChange> {
    let (a, b) = (visible(old), visible(new));
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    let change = |r: &Shared<'_>, kind| FlagChange::new(r.flag, r.source, kind);
    while i < a.len() || j < b.len() {
        let ord = match (a.get(i), b.get(j)) {
            // The same flag is at the same place in both.
            (Some(x), Some(y)) if Arc::ptr_eq(x.flag, y.flag) => std::cmp::Ordering::Equal,
            (Some(x), Some(y)) => {
                (x.flag.flag_set_id(), x.flag.key()).cmp(&(y.flag.flag_set_id(), y.flag.key()))
            }
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                if let Some(x) = a.get(i) {
                    out.push(change(x, ChangeKind::Delete));
                }
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                if let Some(y) = b.get(j) {
                    out.push(change(y, ChangeKind::Write));
                }
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                if let (Some(x), Some(y)) = (a.get(i), b.get(j))
                    && (x.source != y.source || !x.flag.same_definition(y.flag))
                {
                    out.push(change(y, ChangeKind::Update));
                }
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The change set of each source's own document: one entry per flag that was added, removed
/// or whose definition differs, in source order and by key. A document shared by both
/// snapshots (the same `Arc`) has no changes and is not compared.
fn document_diff(old: &Snapshot, new: &Snapshot) -> Vec<FlagChange> {
    let mut out = Vec::new();
    for (index, source) in new.sources.iter().enumerate() {
        let (a, b) = (old.document(index), new.document(index));
        if let (Some(a), Some(b)) = (a, b)
            && Arc::ptr_eq(a, b)
        {
            continue;
        }
        let empty: &[Arc<Flag>] = &[];
        let a = a.map_or(empty, |d| d.flags());
        let b = b.map_or(empty, |d| d.flags());
        let change = |f: &Arc<Flag>, kind| FlagChange::new(f, source, kind);
        // Both lists are sorted by key with one flag per key.
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if Arc::ptr_eq(x, y) => {
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.key() == y.key() => {
                    if !x.same_definition(y) || x.flag_set_id() != y.flag_set_id() {
                        out.push(change(y, ChangeKind::Update));
                    }
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.key() < y.key() => {
                    out.push(change(x, ChangeKind::Delete));
                    i += 1;
                }
                (Some(x), None) => {
                    out.push(change(x, ChangeKind::Delete));
                    i += 1;
                }
                (_, Some(y)) => {
                    out.push(change(y, ChangeKind::Write));
                    j += 1;
                }
                (None, None) => break,
            }
        }
    }
    out
}

/// The store task: applies updates one at a time, off the async workers.
pub async fn run(store: Arc<Store>, updates: mpsc::Receiver<SourceUpdate>) {
    run_traced(store, updates, Telemetry::off()).await;
}

/// [`run`], recording a span for every update a source delivers (its source, the revision it
/// published and how many flags changed, or why it was rejected).
pub async fn run_traced(
    store: Arc<Store>,
    mut updates: mpsc::Receiver<SourceUpdate>,
    telemetry: Telemetry,
) {
    while let Some(update) = updates.recv().await {
        let mut span = reload_span(&telemetry, &store, &update);
        let s = store.clone();
        // Parsing and compiling a large document is CPU work; keep it off the request workers.
        let outcome = tokio::task::spawn_blocking(move || s.apply(update)).await;
        if span.is_recording() {
            match &outcome {
                Ok(Ok(Some(change))) => span.set_with(|| {
                    vec![
                        KeyValue::new("flagd.store.revision", revision_attr(change.revision)),
                        KeyValue::new(
                            "flagd.flags.changed",
                            i64::try_from(change.flags.len()).unwrap_or(i64::MAX),
                        ),
                    ]
                }),
                Ok(Ok(None)) => span.set("flagd.flags.changed", 0_i64),
                Ok(Err(e)) => {
                    span.set("flagd.source.error", e.to_string());
                    span.fail("invalid_document");
                }
                Err(_) => span.fail("internal"),
            }
        }
    }
}

/// The span of one source update: a root span (a reload is not caused by a request).
fn reload_span(telemetry: &Telemetry, store: &Store, update: &SourceUpdate) -> Traced {
    if !telemetry.is_on() {
        return Traced::OFF;
    }
    let mut span = telemetry.span(
        "flagd.source.reload",
        SpanKind::Internal,
        &opentelemetry::Context::new(),
    );
    span.set_with(|| {
        let event = match &update.event {
            SourceEvent::Content { .. } | SourceEvent::Unsettled { .. } => "content",
            SourceEvent::Removed => "removed",
            SourceEvent::Failed(_) => "failed",
        };
        let mut attrs = vec![KeyValue::new("flagd.source.event", event)];
        if let Some(uri) = store.sources.get(update.source) {
            attrs.push(KeyValue::new("flagd.source.uri", uri.to_string()));
        }
        attrs
    });
    if let SourceEvent::Failed(message) = &update.event {
        span.set("flagd.source.error", message.clone());
        span.fail("source_failed");
    }
    span
}

fn revision_attr(revision: u64) -> i64 {
    i64::try_from(revision).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(source: usize, json: &str) -> SourceUpdate {
        SourceUpdate {
            source,
            event: SourceEvent::Content {
                bytes: json.as_bytes().to_vec(),
                format: Format::Json,
            },
        }
    }

    fn doc(flags: &[(&str, &str, Option<&str>)]) -> String {
        let body: Vec<String> = flags
            .iter()
            .map(|(k, v, set)| {
                let md = set.map(|s| format!(r#","metadata":{{"flagSetId":"{s}"}}"#)).unwrap_or_default();
                format!(r#""{k}":{{"state":"ENABLED","variants":{{"a":"{v}"}},"defaultVariant":"a"{md}}}"#)
            })
            .collect();
        format!(r#"{{"flags":{{{}}}}}"#, body.join(","))
    }

    fn value_of(store: &Store, key: &str, sel: &Selector) -> Option<String> {
        let snap = store.snapshot();
        let r = snap.get(key, sel)?;
        r.flag
            .default_variant()
            .map(|(_, v)| v.as_str().unwrap_or_default().to_owned())
    }

    /// `bytes` offered as a save that may be in progress; the store's answer.
    fn offer(store: &Store, bytes: &[u8], format: Format) -> (bool, Result<bool, String>) {
        let (settled, mut verdict) = Settled::channel();
        let result = store.apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Unsettled {
                bytes: bytes.to_vec(),
                format,
                hash: content_hash(bytes),
                settled,
            },
        });
        let answer = verdict.try_recv().expect("answered");
        (
            answer,
            result.map(|c| c.is_some()).map_err(|e| e.to_string()),
        )
    }

    #[test]
    fn unsettled_bytes_cut_short_leave_the_source_as_it_was() {
        let store = Store::new(vec!["file".into()], LoadOptions::default());
        let good = doc(&[("x", "1", None)]);
        assert_eq!(
            offer(&store, good.as_bytes(), Format::Json),
            (true, Ok(true))
        );
        let edit =
            r#"{"flags":{"x":{"state":"ENABLED","variants":{"a":"2 \" }"},"defaultVariant":"a"}}}"#;
        // Every prefix of the edit is a save in progress: no change, no error, no diagnostics.
        for end in 0..edit.len() {
            let cut = &edit.as_bytes()[..end];
            assert_eq!(
                offer(&store, cut, Format::Json),
                (false, Ok(false)),
                "{}",
                &edit[..end]
            );
            let status = &store.source_status()[0];
            assert_eq!(status.last_error, None, "{}", &edit[..end]);
            assert!(status.diagnostics.is_empty());
            assert_eq!(
                value_of(&store, "x", &Selector::default()).as_deref(),
                Some("1")
            );
        }
        assert_eq!(
            offer(&store, edit.as_bytes(), Format::Json),
            (true, Ok(true))
        );
        assert_eq!(
            value_of(&store, "x", &Selector::default()).as_deref(),
            Some("2 \" }")
        );
        // The same prefix sent as finished content is rejected as it always was.
        let cut = &edit.as_bytes()[..20];
        let as_content = store
            .apply(SourceUpdate {
                source: 0,
                event: SourceEvent::Content {
                    bytes: cut.to_vec(),
                    format: Format::Json,
                },
            })
            .unwrap_err();
        assert!(matches!(as_content, LoadError::Syntax { .. }));
        // A YAML document cut short does not parse.
        assert_eq!(
            offer(&store, b"flags:\n  x: {state: ENA", Format::Yaml),
            (false, Ok(false))
        );
    }

    #[test]
    fn finished_documents_with_errors_are_rejected_with_the_same_message() {
        let store = Store::new(vec!["file".into()], LoadOptions::default());
        for (bytes, format) in [
            (&br#"{"flags":}"#[..], Format::Json),
            (br#"{"flags":{}} x"#, Format::Json),
            (
                br#"{"flags":{"x":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"b"}}}"#,
                Format::Json,
            ),
            (b"flags: {x: 1}\n", Format::Yaml),
        ] {
            let expected = flagd_evaluator::load(bytes, format, &LoadOptions::default())
                .unwrap_err()
                .to_string();
            assert_eq!(offer(&store, bytes, format), (true, Err(expected.clone())));
            assert_eq!(store.source_status()[0].last_error, Some(expected));
        }
        // Hostile documents: nested deeply, cut inside an escape, numbers out of range.
        let deep = "[".repeat(10_000);
        assert!(!offer(&store, deep.as_bytes(), Format::Json).0);
        assert!(!offer(&store, br#"{"flags":{"a":"\u00"#, Format::Json).0);
        let (answer, result) = offer(
            &store,
            br#"{"flags":{"a":{"state":"ENABLED","variants":{"a":1e400}}}}"#,
            Format::Json,
        );
        assert!(answer && result.is_err(), "{result:?}");
    }

    #[test]
    fn later_source_wins_and_changes_are_reported() {
        let store = Store::new(vec!["one".into(), "two".into()], LoadOptions::default());
        assert!(!store.is_ready());
        let c = store
            .apply(content(0, &doc(&[("x", "1", None), ("y", "1", None)])))
            .unwrap()
            .unwrap();
        assert_eq!(c.flags.len(), 2);
        assert!(c.flags.iter().all(|f| f.kind == ChangeKind::Write));
        assert!(!store.is_ready());
        let c = store
            .apply(content(1, &doc(&[("x", "2", None)])))
            .unwrap()
            .unwrap();
        let got: Vec<_> = c
            .flags
            .iter()
            .map(|f| (f.key(), f.flag_set_id(), &*f.source, f.kind))
            .collect();
        assert_eq!(got, vec![("x", None, "two", ChangeKind::Update)]);
        assert!(store.is_ready());
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("2"));
        assert_eq!(
            value_of(&store, "x", &Selector::Source("one".into())).as_deref(),
            Some("1")
        );
        assert_eq!(store.snapshot().len(), 2);
        // Same bytes again: nothing happens.
        assert!(
            store
                .apply(content(1, &doc(&[("x", "2", None)])))
                .unwrap()
                .is_none()
        );
        // Invalid payload: rejected, last good kept.
        assert!(store.apply(content(1, "{\"flags\":")).is_err());
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("2"));
        // Removal: the lower-priority definition shows again.
        let c = store
            .apply(SourceUpdate {
                source: 1,
                event: SourceEvent::Removed,
            })
            .unwrap()
            .unwrap();
        assert_eq!(c.flags.len(), 1);
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("1"));
    }

    fn overrides(list: &[(&str, OverridePatch)]) -> Arc<Overrides> {
        Arc::new(
            list.iter()
                .map(|(k, p)| (Box::from(*k), p.clone()))
                .collect(),
        )
    }

    #[test]
    fn overrides_are_layered_and_survive_reloads() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let two = r#"{"flags":{"x":{"state":"ENABLED","variants":{"a":"A","b":"B"},"defaultVariant":"a"}}}"#;
        store.apply(content(0, two)).unwrap();
        let mut events = store.subscribe();
        let green = OverridePatch {
            default_variant: Some("b".into()),
            ..OverridePatch::default()
        };
        assert!(store.validate_override("x", &green).is_ok());
        assert_eq!(
            store.validate_override("y", &green),
            Err(OverrideError::UnknownFlag("y".into()))
        );
        let bad = OverridePatch {
            default_variant: Some("c".into()),
            ..OverridePatch::default()
        };
        assert!(matches!(
            store.validate_override("x", &bad),
            Err(OverrideError::Patch(_))
        ));

        let before = store.snapshot().revision;
        let change = store
            .set_overrides(overrides(&[("x", green.clone())]))
            .unwrap();
        assert_eq!(change.revision, before + 1);
        assert_eq!(change.flags[0].kind, ChangeKind::Update);
        assert_eq!(events.try_recv().unwrap().revision, change.revision);
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("B"));
        assert_eq!(
            store
                .defined_document(0)
                .unwrap()
                .get("x")
                .unwrap()
                .default_variant()
                .unwrap()
                .0,
            "a"
        );

        // A reload keeps the override; a reload that removes the variant serves the flag as defined.
        store
            .apply(content(0, &two.replace("\"A\"", "\"A2\"")))
            .unwrap();
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("B"));
        store.apply(content(0, &doc(&[("x", "1", None)]))).unwrap();
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("1"));
        assert_eq!(store.override_failures().len(), 1);
        store.apply(content(0, two)).unwrap();
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("B"));
        assert!(store.override_failures().is_empty());

        // Clearing publishes the flag as defined again; the same set again publishes no change.
        assert!(store.set_overrides(Arc::default()).is_some());
        assert_eq!(value_of(&store, "x", &Selector::All).as_deref(), Some("A"));
        assert!(store.set_overrides(Arc::default()).is_none());
    }

    /// A document of `n` flags `f0..`, each with targeting; `f1` refers to evaluator `e1`, `f2`
    /// to `e2`, which refers to `e1` in turn.
    fn targeted(n: usize, edit: impl Fn(usize, String) -> String, extra: &str) -> String {
        let flags: Vec<String> = (0..n)
            .map(|i| {
                let rule = match i {
                    1 => r#"{"if":[{"$ref":"e1"},"a","b"]}"#.to_owned(),
                    2 => r#"{"if":[{"$ref":"e2"},"a","b"]}"#.to_owned(),
                    _ => format!(r#"{{"if":[{{"in":["@d{i}.example",{{"var":"email"}}]}},"a","b"]}}"#),
                };
                let def = format!(
                    r#""f{i}": {{"state": "ENABLED", "variants": {{"a": "A{i}", "b": "B"}}, "defaultVariant": "b", "targeting": {rule}, "metadata": {{"owner": "t{i}"}}}}"#
                );
                edit(i, def)
            })
            .collect();
        format!(
            r#"{{"$evaluators": {{"e1": {{"==": [{{"var": "k"}}, 1]}}, "e2": {{"or": [{{"$ref": "e1"}}, false]}}}}, {extra} "flags": {{{}}}}}"#,
            flags.join(", ")
        )
    }

    fn same(edit: usize, def: String) -> String {
        let _ = edit;
        def
    }

    fn shared(store: &Store, key: &str) -> Arc<Flag> {
        store
            .defined_document(0)
            .unwrap()
            .get_shared(key)
            .unwrap()
            .clone()
    }

    fn keys(change: &Change) -> Vec<(&str, ChangeKind)> {
        change.flags.iter().map(|c| (c.key(), c.kind)).collect()
    }

    #[test]
    fn a_reload_reuses_unchanged_flags_and_lists_exactly_the_changed_ones() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        store.apply(content(0, &targeted(6, same, ""))).unwrap();
        let before: Vec<Arc<Flag>> = (0..6).map(|i| shared(&store, &format!("f{i}"))).collect();

        // One flag's definition changes: only it is compiled again and reported.
        let edited = targeted(
            6,
            |i, def| {
                if i == 4 {
                    def.replace("\"A4\"", "\"A4x\"")
                } else {
                    def
                }
            },
            "",
        );
        let change = store.apply(content(0, &edited)).unwrap().unwrap();
        assert_eq!(keys(&change), vec![("f4", ChangeKind::Update)]);
        for (i, old) in before.iter().enumerate() {
            let now = shared(&store, &format!("f{i}"));
            assert_eq!(Arc::ptr_eq(old, &now), i != 4, "f{i}");
        }

        // Whitespace inside one rule: compiled again, but the same rule, so no change event.
        let respaced = targeted(
            6,
            |i, def| {
                let def = if i == 4 {
                    def.replace("\"A4\"", "\"A4x\"")
                } else {
                    def
                };
                if i == 3 {
                    def.replace("\"if\":[", "\"if\": [ ")
                } else {
                    def
                }
            },
            "",
        );
        assert!(store.apply(content(0, &respaced)).unwrap().is_none());
        assert!(!Arc::ptr_eq(&before[3], &shared(&store, "f3")));
        assert!(Arc::ptr_eq(&before[5], &shared(&store, "f5")));
    }

    #[test]
    fn a_changed_evaluator_recompiles_the_flags_that_refer_to_it() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let doc = targeted(4, same, "");
        store.apply(content(0, &doc)).unwrap();
        let before: Vec<Arc<Flag>> = (0..4).map(|i| shared(&store, &format!("f{i}"))).collect();

        // e2 is used by f2 only: f1 (e1) and the others stay as they were. f2's own rule text
        // is unchanged, but it now evaluates e2's new body, so it is reported as changed (as
        // flagd, which inlines evaluators before comparing, reports it).
        let keys = |change: Option<Arc<Change>>| -> Vec<String> {
            change
                .map(|c| c.flags.iter().map(|f| f.key().to_string()).collect())
                .unwrap_or_default()
        };
        let e2 = doc.replace(
            r#"{"or": [{"$ref": "e1"}, false]}"#,
            r#"{"or": [{"$ref": "e1"}, true]}"#,
        );
        assert_ne!(e2, doc);
        assert_eq!(keys(store.apply(content(0, &e2)).unwrap()), ["f2"]);
        let now: Vec<Arc<Flag>> = (0..4).map(|i| shared(&store, &format!("f{i}"))).collect();
        assert!(Arc::ptr_eq(&before[0], &now[0]));
        assert!(Arc::ptr_eq(&before[1], &now[1]));
        assert!(!Arc::ptr_eq(&before[2], &now[2]));
        assert!(Arc::ptr_eq(&before[3], &now[3]));
        let ctx = serde_json::json!({"k": 0});
        assert_eq!(now[2].evaluate(&ctx, 0).variant, Some("a"));
        assert_eq!(before[2].evaluate(&ctx, 0).variant, Some("b"));

        // e1 is used by f1 directly and by f2 through e2: both are compiled again.
        let e1 = e2.replace(
            r#"{"==": [{"var": "k"}, 1]}"#,
            r#"{"==": [{"var": "k"}, 2]}"#,
        );
        assert_eq!(keys(store.apply(content(0, &e1)).unwrap()), ["f1", "f2"]);
        assert!(!Arc::ptr_eq(&now[1], &shared(&store, "f1")));
        assert!(!Arc::ptr_eq(&now[2], &shared(&store, "f2")));
        assert!(Arc::ptr_eq(&now[0], &shared(&store, "f0")));
        assert!(Arc::ptr_eq(&now[3], &shared(&store, "f3")));

        // An evaluator nothing refers to: every flag is kept.
        let now: Vec<Arc<Flag>> = (0..4).map(|i| shared(&store, &format!("f{i}"))).collect();
        let unused = e1.replace(
            r#""$evaluators": {"#,
            r#""$evaluators": {"unused": {"var": "z"}, "#,
        );
        assert!(store.apply(content(0, &unused)).unwrap().is_none());
        for (i, old) in now.iter().enumerate() {
            assert!(Arc::ptr_eq(old, &shared(&store, &format!("f{i}"))), "f{i}");
        }
    }

    #[test]
    fn a_missing_evaluator_that_appears_recompiles_its_flags() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let without = targeted(3, same, "").replace(r#""e1": {"==": [{"var": "k"}, 1]}, "#, "");
        store.apply(content(0, &without)).unwrap();
        let f1 = shared(&store, "f1");
        let f0 = shared(&store, "f0");
        let change = store.apply(content(0, &targeted(3, same, ""))).unwrap();
        let keys: Vec<&str> = change
            .as_ref()
            .map(|c| c.flags.iter().map(|f| f.key()).collect())
            .unwrap_or_default();
        // f1 refers to e1 directly, f2 through e2.
        assert_eq!(keys, ["f1", "f2"]);
        assert!(!Arc::ptr_eq(&f1, &shared(&store, "f1")));
        assert!(Arc::ptr_eq(&f0, &shared(&store, "f0")));
        let ctx = serde_json::json!({"k": 1});
        assert_eq!(shared(&store, "f1").evaluate(&ctx, 0).variant, Some("a"));
    }

    #[test]
    fn flag_set_metadata_and_load_options_are_inputs_of_every_flag() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        store
            .apply(content(
                0,
                &targeted(3, same, r#""metadata": {"team": "x"},"#),
            ))
            .unwrap();
        let before: Vec<Arc<Flag>> = (0..3).map(|i| shared(&store, &format!("f{i}"))).collect();
        let change = store
            .apply(content(
                0,
                &targeted(3, same, r#""metadata": {"team": "y"},"#),
            ))
            .unwrap()
            .unwrap();
        assert_eq!(change.flags.len(), 3);
        for (i, old) in before.iter().enumerate() {
            let now = shared(&store, &format!("f{i}"));
            assert!(!Arc::ptr_eq(old, &now), "f{i}");
            assert_eq!(now.metadata()["team"], "y");
        }

        // The same document under other options is compiled afresh.
        let doc = targeted(3, same, "");
        let options = LoadOptions::default();
        let first = flagd_evaluator::load(doc.as_bytes(), Format::Json, &options).unwrap();
        let again =
            flagd_evaluator::reload(doc.as_bytes(), Format::Json, &options, &first.flags).unwrap();
        assert!(Arc::ptr_eq(
            &first.flags.flags()[0],
            &again.flags.flags()[0]
        ));
        let deeper = LoadOptions {
            max_rule_depth: 10,
            ..options
        };
        let other =
            flagd_evaluator::reload(doc.as_bytes(), Format::Json, &deeper, &first.flags).unwrap();
        assert!(!Arc::ptr_eq(
            &first.flags.flags()[0],
            &other.flags.flags()[0]
        ));
    }

    #[test]
    fn removed_and_added_flags_are_reported_and_the_rest_shared() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        store.apply(content(0, &targeted(4, same, ""))).unwrap();
        let f0 = shared(&store, "f0");
        // f3 removed, f4 and f5 added.
        let fewer = targeted(3, same, "");
        let more = targeted(6, same, "");
        let change = store.apply(content(0, &fewer)).unwrap().unwrap();
        assert_eq!(keys(&change), vec![("f3", ChangeKind::Delete)]);
        let change = store.apply(content(0, &more)).unwrap().unwrap();
        assert_eq!(
            keys(&change),
            vec![
                ("f3", ChangeKind::Write),
                ("f4", ChangeKind::Write),
                ("f5", ChangeKind::Write)
            ]
        );
        assert!(Arc::ptr_eq(&f0, &shared(&store, "f0")));
        // A rejected document changes nothing, and the next good one still reuses.
        assert!(store.apply(content(0, r#"{"flags":{"f0":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"zz"}}}"#)).is_err());
        let change = store.apply(content(0, &fewer)).unwrap().unwrap();
        assert_eq!(keys(&change).len(), 3);
        assert!(Arc::ptr_eq(&f0, &shared(&store, "f0")));
    }

    #[test]
    fn a_source_selector_sees_changes_of_its_own_shadowed_flags() {
        let store = Store::new(vec!["low".into(), "high".into()], LoadOptions::default());
        store.apply(content(0, &doc(&[("k", "1", None)]))).unwrap();
        store.apply(content(1, &doc(&[("k", "2", None)]))).unwrap();
        let (low, high) = (
            Selector::Source("low".into()),
            Selector::Source("high".into()),
        );
        let seen = |c: &Change, s: &Selector| -> Vec<(String, ChangeKind)> {
            c.selected(s)
                .map(|f| (f.key().to_string(), f.kind))
                .collect()
        };
        // The shadowed definition changes: invisible without a selector, seen by its source.
        let change = store
            .apply(content(0, &doc(&[("k", "3", None)])))
            .unwrap()
            .unwrap();
        assert!(change.flags.is_empty());
        assert_eq!(seen(&change, &Selector::All), vec![]);
        assert_eq!(seen(&change, &low), vec![("k".into(), ChangeKind::Update)]);
        assert_eq!(seen(&change, &high), vec![]);
        // The shadowing source drops the flag: the visible definition is now the lower one's,
        // the higher source lost it and the lower source's own flag did not change.
        let change = store
            .apply(content(1, &doc(&[("other", "x", None)])))
            .unwrap()
            .unwrap();
        assert_eq!(
            seen(&change, &Selector::All),
            vec![
                ("k".into(), ChangeKind::Update),
                ("other".into(), ChangeKind::Write)
            ]
        );
        assert_eq!(seen(&change, &low), vec![]);
        assert_eq!(
            seen(&change, &high),
            vec![
                ("k".into(), ChangeKind::Delete),
                ("other".into(), ChangeKind::Write)
            ]
        );
    }

    #[test]
    fn flag_sets_keep_same_keys_apart() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        store.apply(content(0, r#"{"flags":[
            {"key":"k","state":"ENABLED","variants":{"a":"A"},"defaultVariant":"a","metadata":{"flagSetId":"one"}}]}"#)).unwrap();
        let store2 = Store::new(vec!["s1".into(), "s2".into()], LoadOptions::default());
        store2
            .apply(content(0, &doc(&[("k", "A", Some("one"))])))
            .unwrap();
        store2
            .apply(content(1, &doc(&[("k", "B", Some("two"))])))
            .unwrap();
        let snap = store2.snapshot();
        assert_eq!(snap.iter(&Selector::All).count(), 2);
        assert_eq!(
            value_of(&store2, "k", &Selector::FlagSet("one".into())).as_deref(),
            Some("A")
        );
        assert_eq!(
            value_of(&store2, "k", &Selector::FlagSet("two".into())).as_deref(),
            Some("B")
        );
        assert_eq!(value_of(&store2, "k", &Selector::All).as_deref(), Some("B"));
        assert!(snap.get("k", &Selector::FlagSet("".into())).is_none());
    }

    #[test]
    fn lookups_and_listings_agree_with_a_scan_of_every_source() {
        let uris = ["s0", "s1", "s2"];
        let store = Store::new(
            uris.iter().map(|u| u.to_string()).collect(),
            LoadOptions::default(),
        );
        let docs: [&[(&str, &str, Option<&str>)]; 3] = [
            &[
                ("a", "0a", None),
                ("b", "0b", Some("one")),
                ("c", "0c", Some("two")),
                ("e", "0e", None),
            ],
            &[
                ("a", "1a", Some("one")),
                ("b", "1b", Some("one")),
                ("d", "1d", None),
            ],
            &[
                ("a", "2a", None),
                ("c", "2c", Some("one")),
                ("d", "2d", Some("two")),
            ],
        ];
        for (i, d) in docs.iter().enumerate() {
            store.apply(content(i, &doc(d))).unwrap();
        }
        let snap = store.snapshot();
        let selectors = [
            Selector::All,
            Selector::FlagSet("one".into()),
            Selector::FlagSet("two".into()),
            Selector::FlagSet("".into()),
            Selector::Source("s0".into()),
            Selector::Source("s1".into()),
            Selector::Source("s2".into()),
        ];
        // Every stored flag as (flag set, key, priority, value).
        let mut all: Vec<(Option<&str>, &str, u32, &str)> = Vec::new();
        for (s, d) in docs.iter().enumerate() {
            for (k, v, set) in d.iter() {
                all.push((*set, k, s as u32, v));
            }
        }
        all.sort();
        for sel in &selectors {
            for key in ["a", "b", "c", "d", "e", "f", ""] {
                // The highest-priority flag with the key that the selector admits.
                let expected = all
                    .iter()
                    .filter(|(set, k, s, _)| *k == key && sel.matches(*set, uris[*s as usize]))
                    .max_by_key(|(_, _, s, _)| *s)
                    .map(|(_, _, s, v)| (*s, v.to_string()));
                let got = snap.get(key, sel).map(|r| {
                    let v = r.flag.default_variant().and_then(|(_, v)| v.as_str());
                    (r.priority, v.unwrap_or_default().to_owned())
                });
                assert_eq!(got, expected, "{key:?} under {sel:?}");
            }
            // In (flag set, key) order; a higher source shadows the same flag set and key except
            // under a source selector.
            let expected: Vec<(Option<&str>, &str, u32)> = all
                .iter()
                .filter(|(set, k, s, _)| {
                    matches!(sel, Selector::Source(_))
                        || !all
                            .iter()
                            .any(|(set2, k2, s2, _)| set2 == set && k2 == k && s2 > s)
                })
                .filter(|(set, _, s, _)| sel.matches(*set, uris[*s as usize]))
                .map(|(set, k, s, _)| (*set, *k, *s))
                .collect();
            let got: Vec<(Option<&str>, &str, u32)> = snap
                .iter(sel)
                .map(|r| (r.flag.flag_set_id(), r.flag.key(), r.priority))
                .collect();
            assert_eq!(got, expected, "listing under {sel:?}");
        }
    }

    #[test]
    fn changes_share_the_flags_they_name() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let c = store
            .apply(content(
                0,
                &doc(&[("x", "1", Some("one")), ("y", "1", None)]),
            ))
            .unwrap()
            .unwrap();
        let snap = store.snapshot();
        let stored = snap.document(0).unwrap().flags();
        for list in [&c.flags, &c.by_source] {
            assert_eq!(list.len(), 2);
            for change in list {
                assert!(stored.iter().any(|f| Arc::ptr_eq(f, &change.flag)));
            }
        }
        assert_eq!(
            c.flags
                .iter()
                .map(|f| (f.flag_set_id(), f.key()))
                .collect::<Vec<_>>(),
            vec![(None, "y"), (Some("one"), "x")]
        );
        // A removed flag is named as it was.
        let removed = shared(&store, "x");
        let c = store
            .apply(content(0, &doc(&[("y", "1", None)])))
            .unwrap()
            .unwrap();
        for list in [&c.flags, &c.by_source] {
            assert_eq!(list.len(), 1);
            assert!(Arc::ptr_eq(&list[0].flag, &removed));
            assert_eq!(
                (list[0].key(), list[0].flag_set_id(), list[0].kind),
                ("x", Some("one"), ChangeKind::Delete)
            );
        }
    }

    #[test]
    fn unsettled_bytes_are_known_by_the_hash_they_came_with() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let text = doc(&[("x", "1", None)]);
        assert_eq!(
            offer(&store, text.as_bytes(), Format::Json),
            (true, Ok(true))
        );
        // The same bytes as settled content: the store already holds them.
        assert!(store.apply(content(0, &text)).unwrap().is_none());
        assert_eq!(
            offer(&store, text.as_bytes(), Format::Json),
            (true, Ok(false))
        );
    }
}
