//! The revision journal: every override and rollout change, appended and made durable before it
//! takes effect, replayed at start-up, and compacted into a snapshot when it grows.
//!
//! # On disk (the state directory)
//!
//! - `lock` — held with `flock` by the one process that owns the directory, and holding its PID.
//!   A second daemon (or `flagd-rs journal recover` / `compact`) refuses to run beside it.
//! - `journal.log` — the live journal: records `[u32 length][u32 CRC-32][JSON]` (little-endian;
//!   the CRC is IEEE CRC-32 of the JSON bytes). Every record is a [`RevisionInfo`], except that
//!   the first may be a [`Snapshot`] (`{"snapshot": {...}}`): the override set and the rollout
//!   records as of revision S, which the records S+1, S+2, … then follow.
//! - `archive/journal-<first>-<last>.log` — compacted revisions, in the same format, never
//!   rewritten: the live journal as it was when it was compacted.
//! - `journal.log.corrupt-<offset>[.n]`, `journal.log.cut-<offset>[.n]` — bytes cut off the
//!   journal, each in a file of its own that is never overwritten.
//!
//! # What a crash or damage does
//!
//! Each append is fsynced before it is acknowledged, and every new file and directory entry is
//! made durable. A crash in the middle of an append leaves a bad record at the very end with
//! nothing readable after it: a torn tail. Open cuts it off (saving it aside first), which loses
//! only the write that was never acknowledged. A bad record with intact records after it is
//! damage, not an interrupted write: open refuses it ([`JournalError::Damaged`], naming the byte
//! offset and the revision) and changes nothing; the operator decides with `flagd-rs journal
//! check` and `flagd-rs journal recover --truncate-at REV`.
//!
//! Compaction ([`FileJournal::compact`](file::FileJournal)) writes the new live journal (one
//! snapshot record) under a temporary name, links the old one into the archive, and renames the
//! new one over it, syncing each step; open finishes the job of an interrupted compaction, so a
//! crash at any point loses and duplicates no revision.
//!
//! The [`Journal`] trait is the seam through which another store (a replicated key-value store:
//! "append if the head is N, read from N") can replace the files.

pub mod archive;
pub mod cli;
pub(crate) mod durable;
pub mod file;
pub mod lock;
pub mod ops;
pub mod record;
pub mod snapshot;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

use flagd_evaluator::OverridePatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use archive::Segment;
pub use file::{DEFAULT_COMPACT_BYTES, FileJournal, FileOptions};
pub use lock::StateLock;
pub use record::{crc32, encode_record, encode_snapshot};
pub use snapshot::apply_changes;

/// The journal file's name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.log";

/// What a revision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionKind {
    /// An override was set (or changed).
    Set,
    /// An override was removed.
    Clear,
    /// The override set was restored to what it was after an earlier revision.
    Restore,
    /// A rollout changed state (and possibly the flag's override).
    Rollout,
}

/// One flag's override before and after a revision (`None`: no override).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverrideChange {
    /// The flag's key.
    pub flag: String,
    /// The override before the revision.
    pub before: Option<OverridePatch>,
    /// The override after the revision.
    pub after: Option<OverridePatch>,
}

/// One numbered revision: what changed, when, by whom and why. This is also the journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionInfo {
    /// The revision number: 1 for the first change, then consecutive.
    pub revision: u64,
    /// When it was made (RFC 3339, UTC).
    pub time: String,
    /// Who made it.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// What kind of change it is.
    pub kind: RevisionKind,
    /// The flag the revision is about (for set, clear and rollout revisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Override changes, in the order they were applied (empty when no override changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<OverrideChange>,
    /// For a restore: the revision whose override set was restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<u64>,
    /// For a rollout revision: the rollout's own record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

impl RevisionInfo {
    /// Whether the revision concerns flag `key` (names it or changes its override).
    pub fn touches(&self, key: &str) -> bool {
        self.flag.as_deref() == Some(key) || self.changes.iter().any(|c| c.flag == key)
    }
}

/// A rollout revision's record, as a snapshot keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    /// The revision that recorded it.
    pub revision: u64,
    /// The rolled-out flag.
    pub flag: String,
    /// The rollout's event.
    pub event: Value,
}

/// The authority's state as of one revision: what a compacted journal starts from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The revision the state is as of (0: before the first change).
    pub revision: u64,
    /// When the snapshot was taken (RFC 3339, UTC).
    #[serde(default)]
    pub time: String,
    /// The overrides in effect, by flag key.
    #[serde(default)]
    pub overrides: BTreeMap<String, OverridePatch>,
    /// The rollout records a replay still needs (each flag's latest rollout), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<RolloutRecord>,
}

/// Stored history: the snapshot it starts from (if any) and the revisions that follow it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// The state the records follow (`None`: they start at revision 1).
    pub snapshot: Option<Snapshot>,
    /// The revisions after the snapshot, in order.
    pub records: Vec<RevisionInfo>,
}

impl Replay {
    /// The revision the records follow.
    pub fn base(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.revision)
    }

    /// The last revision held.
    pub fn head(&self) -> u64 {
        self.records.last().map_or(self.base(), |r| r.revision)
    }
}

/// Where a journal is damaged: a bad record with intact records after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file.
    pub path: PathBuf,
    /// Byte offset of the bad record.
    pub offset: u64,
    /// The revision that cannot be read there.
    pub revision: u64,
    /// The last revision before the damage that reads intact.
    pub intact: u64,
    /// What is wrong with the record.
    pub detail: String,
    /// Byte offset and revision of the next intact record, if one was found.
    pub resume: Option<(u64, u64)>,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is damaged at byte {}: revision {} cannot be read ({})",
            self.path.display(),
            self.offset,
            self.revision,
            self.detail
        )?;
        if let Some((offset, revision)) = self.resume {
            write!(
                f,
                "; intact records follow at byte {offset} (revision {revision}), so this is not \
                 an interrupted write"
            )?;
        }
        let dir = self
            .path
            .parent()
            .map_or_else(|| ".".into(), |p| p.display().to_string());
        write!(
            f,
            ". Revisions up to {} are intact and nothing was changed. Inspect it with `flagd-rs \
             journal check --state-dir {dir}`; to keep revisions up to {} and move the rest \
             aside (into a file that is kept), run `flagd-rs journal recover --truncate-at {} \
             --state-dir {dir}`, or restore the state directory from a backup",
            self.intact, self.intact, self.intact
        )
    }
}

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another writer appended first: the journal's head is not the one expected.
    #[error("the journal is at revision {head}, not {expected}")]
    Conflict {
        /// The head the caller expected.
        expected: u64,
        /// The actual head.
        head: u64,
    },
    /// The record to append is not numbered `head + 1`.
    #[error("record {revision} cannot follow revision {head}")]
    OutOfOrder {
        /// The record's revision.
        revision: u64,
        /// The journal's head.
        head: u64,
    },
    /// Reading or writing failed.
    #[error("journal I/O failed: {0}")]
    Io(#[from] io::Error),
    /// A write failed and could not be undone; the journal accepts no more writes until the
    /// daemon restarts (and recovers the file on open).
    #[error("the journal is unusable after a failed write; restart to recover it")]
    Poisoned,
    /// Writing or syncing a record failed and removing it failed too: the record may be on disk
    /// in full. The change was not applied, but the next start may replay it; the journal
    /// accepts no more writes until then.
    #[error(
        "the change could not be made durable ({0}) and could not be taken back either: it is \
         not applied now, but it may take effect when the daemon restarts (`flagd-rs journal \
         check` shows whether it is there); the journal accepts no more changes until a restart"
    )]
    Unconfirmed(std::io::Error),
    /// The journal was closed (its daemon is stopping) and accepts no more writes.
    #[error("the journal is closed")]
    Closed,
    /// Another process owns the state directory.
    #[error(
        "the state directory {} is in use by another flagd-rs process ({}): only one daemon \
         may use a state directory; stop that process first or give this one its own --state-dir",
        .dir.display(),
        .pid.map_or_else(|| "PID unknown".to_owned(), |p| format!("PID {p}"))
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
        /// The process holding it, as its lock file says.
        pid: Option<u32>,
    },
    /// The journal has a bad record with intact records after it.
    #[error("{0}")]
    Damaged(Box<Damage>),
    /// The state directory's files contradict each other (an archive segment that does not fit
    /// the live journal, a journal missing beside its archive, a segment that does not read).
    #[error("{path}: {detail}", path = .path.display())]
    Inconsistent {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A compacted revision is no longer stored (its archive segment is missing).
    #[error("revision {revision} was compacted and its archive segment is not stored")]
    Missing {
        /// The revision asked for.
        revision: u64,
    },
    /// The shared store cannot be reached, so the change was not confirmed and is not served.
    /// Evaluation goes on with the last state. A write the store received just before it
    /// stopped answering may still be committed when it recovers; the history then shows it.
    #[error(
        "the shared store is unavailable ({0}): the change was not confirmed and is not served; \
         if the store received it before it stopped answering it takes effect when the store \
         is back (the history shows it), otherwise try again then"
    )]
    Unavailable(String),
    /// A rollout record was refused because this process no longer holds the rollout
    /// controller's leadership (another replica was elected after it lost its lease).
    #[error("this replica is not the rollout controller any more: the change was not made")]
    NotLeader,
}

/// What a journal that other processes append to as well reports about their writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Replicated {
    /// Revisions another writer appended, in order: one whole answer of the store's watch.
    /// They may repeat revisions the reader already holds (its own appends among them).
    Appended(Vec<RevisionInfo>),
    /// Start again from this history: what was watched had a gap (the store compacted past
    /// the reader, or the watch was lost), so the whole live state was read again.
    Reset(Replay),
}

/// How a shared journal stands with its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreHealth {
    /// Whether the store answers now.
    pub connected: bool,
    /// When the state held was last confirmed current by the store (`None`: never, the state
    /// came from the local cache).
    pub confirmed: Option<std::time::SystemTime>,
}

/// Durable, ordered storage of revisions.
///
/// The live part is what a start-up replays: an optional [`Snapshot`] and the revisions after
/// it. Compaction replaces the live revisions with a snapshot at the head and keeps the
/// replaced revisions readable as archive segments.
pub trait Journal: Send + Sync + fmt::Debug {
    /// The last revision stored (0 when empty).
    fn head(&self) -> u64;

    /// Stores `record` (numbered `head + 1`) if the journal's head is still `head`; returns the
    /// new head once the record is durable.
    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError>;

    /// Every stored revision numbered `revision` or later, archived ones included, in order.
    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError>;

    /// The archive segments (compacted revisions), oldest first.
    fn segments(&self) -> Vec<Segment> {
        Vec::new()
    }

    /// One archive segment: the snapshot it starts from (if any) and its revisions.
    fn read_segment(&self, segment: &Segment) -> Result<Replay, JournalError> {
        Err(JournalError::Missing {
            revision: segment.first,
        })
    }

    /// Whether the live part has grown enough to be compacted.
    fn compaction_due(&self) -> bool {
        false
    }

    /// Replaces the live revisions with `snapshot`, which must be taken at the head, and keeps
    /// them readable as a new archive segment (returned; `None` when there was nothing to
    /// compact).
    fn compact(&self, snapshot: &Snapshot) -> Result<Option<Segment>, JournalError> {
        let _ = snapshot;
        Ok(None)
    }

    /// Stops accepting writes and lets another process take the journal over.
    fn close(&self) {}

    /// For a journal other processes append to: the feed of what they append. The first call
    /// takes it; later calls and journals only this process writes give `None`.
    fn replicated(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Replicated>> {
        None
    }

    /// For a shared journal: how it stands with its store (`None`: a local journal).
    fn health(&self) -> Option<StoreHealth> {
        None
    }
}

/// What opening the file journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut off the end of the file (a torn tail).
    pub dropped_bytes: u64,
    /// Why they were cut off.
    pub problem: Option<String>,
    /// Where the cut-off bytes were saved.
    pub saved_to: Option<PathBuf>,
    /// What else open tidied (an interrupted compaction's leftovers).
    pub tidied: Vec<String>,
}
