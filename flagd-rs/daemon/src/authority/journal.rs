//! The revision journal: every override and rollout change, appended and made durable before it
//! takes effect, and replayed at start-up.
//!
//! The file journal (`<state-dir>/journal.log`) is a sequence of records
//! `[u32 length][u32 CRC-32][JSON]` (little-endian; the CRC is IEEE CRC-32 of the JSON bytes).
//! Each append is fsynced before it is acknowledged, and the directory is fsynced when the file
//! is created. A crash in the middle of an append leaves a record that is short or fails its
//! checksum; on open the first bad record and everything after it is cut off (copied aside to
//! `journal.log.corrupt-<offset>` first, so nothing is destroyed), which loses at most the one
//! write that was never acknowledged. The [`Journal`] trait is the seam through which another
//! store (a replicated key-value store) can replace the file.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use flagd_evaluator::OverridePatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The journal file's name inside the state directory.
pub const JOURNAL_FILE: &str = "journal.log";

/// Length and checksum, before each record's JSON.
const HEADER_BYTES: usize = 8;

/// The largest record accepted; a length above it can only be a torn or corrupt header.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

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
}

/// Durable, ordered storage of revisions.
pub trait Journal: Send + Sync + fmt::Debug {
    /// The last revision stored (0 when empty).
    fn head(&self) -> u64;

    /// Stores `record` (numbered `head + 1`) if the journal's head is still `head`; returns the
    /// new head once the record is durable.
    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError>;

    /// Every stored revision numbered `revision` or later, in order.
    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError>;
}

/// What opening the file journal found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut off the end of the file (a torn or corrupt tail).
    pub dropped_bytes: u64,
    /// Why they were cut off.
    pub problem: Option<String>,
    /// Where the cut-off bytes were saved.
    pub saved_to: Option<PathBuf>,
}

#[derive(Debug)]
struct FileState {
    /// Opened on first write (or at open when the file exists).
    file: Option<File>,
    head: u64,
    /// Length of the valid prefix: where the next record goes.
    len: u64,
    poisoned: bool,
}

/// The journal in `<state-dir>/journal.log`.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    path: PathBuf,
    state: Mutex<FileState>,
}

/// IEEE CRC-32 lookup table, built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// IEEE CRC-32 (the checksum of zip and Ethernet).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        let i = ((c ^ u32::from(b)) & 0xFF) as usize;
        c = CRC_TABLE.get(i).copied().unwrap_or(0) ^ (c >> 8);
    }
    !c
}

/// Encodes one record: header and JSON.
pub fn encode_record(record: &RevisionInfo) -> Result<Vec<u8>, JournalError> {
    let json = serde_json::to_vec(record).map_err(io::Error::other)?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_RECORD_BYTES)
        .ok_or_else(|| io::Error::other("record too large"))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + json.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32(&json).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// The result of decoding a journal file's bytes.
#[derive(Debug)]
pub struct Decoded {
    /// The valid records, in order.
    pub records: Vec<RevisionInfo>,
    /// Length of the valid prefix.
    pub valid_len: u64,
    /// Why decoding stopped before the end, if it did.
    pub problem: Option<String>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Decodes records until the end or the first record that is short, fails its checksum, does
/// not parse, or is not numbered one past the previous one.
pub fn decode(bytes: &[u8]) -> Decoded {
    let mut records: Vec<RevisionInfo> = Vec::new();
    let mut at = 0usize;
    let mut problem = None;
    while at < bytes.len() {
        let (Some(len), Some(crc)) = (read_u32(bytes, at), read_u32(bytes, at + 4)) else {
            problem = Some(format!("torn record header at byte {at}"));
            break;
        };
        let len = len as usize;
        let start = at + HEADER_BYTES;
        let Some(json) = bytes
            .get(start..start.saturating_add(len))
            .filter(|_| len <= MAX_RECORD_BYTES)
        else {
            problem = Some(format!("torn record at byte {at} ({len} bytes announced)"));
            break;
        };
        if crc32(json) != crc {
            problem = Some(format!("checksum mismatch in the record at byte {at}"));
            break;
        }
        let record: RevisionInfo = match serde_json::from_slice(json) {
            Ok(r) => r,
            Err(e) => {
                problem = Some(format!("unreadable record at byte {at}: {e}"));
                break;
            }
        };
        let expected = records.last().map_or(1, |r| r.revision + 1);
        if record.revision != expected {
            problem = Some(format!(
                "record at byte {at} is revision {}, expected {expected}",
                record.revision
            ));
            break;
        }
        records.push(record);
        at = start + len;
    }
    Decoded {
        records,
        valid_len: at as u64,
        problem,
    }
}

impl FileJournal {
    /// Opens the journal in `dir` (which need not exist yet: the directory and the file are
    /// created by the first append), cutting off a torn or corrupt tail. Returns the journal,
    /// the revisions it holds and what recovery did.
    pub fn open(dir: &Path) -> Result<(FileJournal, Vec<RevisionInfo>, Recovery), JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let mut recovery = Recovery::default();
        let (file, records, len) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => {
                let bytes = std::fs::read(&path)?;
                let decoded = decode(&bytes);
                if let Some(problem) = decoded.problem {
                    let tail = bytes.get(decoded.valid_len as usize..).unwrap_or_default();
                    let saved = dir.join(format!("{JOURNAL_FILE}.corrupt-{}", decoded.valid_len));
                    std::fs::write(&saved, tail)?;
                    File::open(&saved)?.sync_all()?;
                    file.set_len(decoded.valid_len)?;
                    file.sync_all()?;
                    sync_dir(dir)?;
                    tracing::warn!(
                        journal = %path.display(),
                        %problem,
                        dropped_bytes = tail.len(),
                        saved_to = %saved.display(),
                        "cut off the journal's unreadable tail"
                    );
                    recovery = Recovery {
                        dropped_bytes: tail.len() as u64,
                        problem: Some(problem),
                        saved_to: Some(saved),
                    };
                }
                (Some(file), decoded.records, decoded.valid_len)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (None, Vec::new(), 0),
            Err(e) => return Err(e.into()),
        };
        let head = records.last().map_or(0, |r| r.revision);
        let journal = FileJournal {
            dir: dir.to_owned(),
            path,
            state: Mutex::new(FileState {
                file,
                head,
                len,
                poisoned: false,
            }),
        };
        Ok((journal, records, recovery))
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn create(&self) -> Result<File, JournalError> {
        std::fs::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        file.sync_all()?;
        // The new directory entry must be durable too, or a crash could lose the whole file.
        sync_dir(&self.dir)?;
        Ok(file)
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Journal for FileJournal {
    fn head(&self) -> u64 {
        self.state.lock().map(|s| s.head).unwrap_or(0)
    }

    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.poisoned {
            return Err(JournalError::Poisoned);
        }
        if state.head != head {
            return Err(JournalError::Conflict {
                expected: head,
                head: state.head,
            });
        }
        if record.revision != head + 1 {
            return Err(JournalError::OutOfOrder {
                revision: record.revision,
                head,
            });
        }
        let bytes = encode_record(record)?;
        if state.file.is_none() {
            state.file = Some(self.create()?);
        }
        let at = state.len;
        let Some(file) = state.file.as_ref() else {
            return Err(JournalError::Poisoned);
        };
        let written = file
            .write_all_at(&bytes, at)
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            // Undo the partial record so later appends do not follow garbage; if even that
            // fails, stop writing: the next open cuts the torn tail off.
            let undone = file.set_len(at).and_then(|()| file.sync_data());
            if undone.is_err() {
                state.poisoned = true;
            }
            return Err(e.into());
        }
        state.len = at + bytes.len() as u64;
        state.head = record.revision;
        Ok(state.head)
    }

    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError> {
        let len = self.state.lock().map(|s| s.len).unwrap_or(0);
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let valid = bytes.get(..len as usize).unwrap_or(&bytes);
        Ok(decode(valid)
            .records
            .into_iter()
            .filter(|r| r.revision >= revision)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(revision: u64) -> RevisionInfo {
        RevisionInfo {
            revision,
            time: "2025-01-01T00:00:00.000Z".into(),
            actor: "test".into(),
            reason: format!("change {revision}"),
            kind: RevisionKind::Set,
            flag: Some("f".into()),
            changes: vec![OverrideChange {
                flag: "f".into(),
                before: None,
                after: Some(OverridePatch {
                    default_variant: Some("b".into()),
                    ..Default::default()
                }),
            }],
            restored: None,
            event: None,
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn append_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let (j, records, recovery) = FileJournal::open(&state_dir).unwrap();
        assert!(records.is_empty());
        assert_eq!(recovery, Recovery::default());
        assert!(
            !state_dir.exists(),
            "nothing is created before the first write"
        );
        assert_eq!(j.append_if_head(0, &record(1)).unwrap(), 1);
        assert_eq!(j.append_if_head(1, &record(2)).unwrap(), 2);
        assert!(matches!(
            j.append_if_head(1, &record(2)),
            Err(JournalError::Conflict { head: 2, .. })
        ));
        assert!(matches!(
            j.append_if_head(2, &record(5)),
            Err(JournalError::OutOfOrder { .. })
        ));
        assert_eq!(j.read_from(2).unwrap(), vec![record(2)]);
        drop(j);
        let (j, records, recovery) = FileJournal::open(&state_dir).unwrap();
        assert_eq!(records, vec![record(1), record(2)]);
        assert_eq!(recovery.dropped_bytes, 0);
        assert_eq!(j.head(), 2);
        assert_eq!(j.append_if_head(2, &record(3)).unwrap(), 3);
    }

    #[test]
    fn corrupt_tails_are_cut_off_and_saved() {
        let whole: Vec<u8> = (1..=3)
            .flat_map(|r| encode_record(&record(r)).unwrap())
            .collect();
        let two =
            encode_record(&record(1)).unwrap().len() + encode_record(&record(2)).unwrap().len();
        let mut flipped = whole.clone();
        if let Some(b) = flipped.get_mut(two + HEADER_BYTES + 3) {
            *b ^= 0x20;
        }
        let mut garbage = whole.get(..two + 5).unwrap().to_vec();
        garbage.extend_from_slice(b"\xff\xff\xff\x7fgarbage");
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            ("torn header", whole.get(..two + 3).unwrap().to_vec(), 2),
            (
                "torn body",
                whole.get(..whole.len() - 1).unwrap().to_vec(),
                2,
            ),
            ("checksum", flipped, 2),
            ("garbage", garbage, 2),
            ("zeros", [whole.clone(), vec![0; 16]].concat(), 3),
        ];
        for (name, bytes, keep) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
            let (j, records, recovery) = FileJournal::open(dir.path()).unwrap();
            assert_eq!(records.len(), keep, "{name}");
            assert!(recovery.problem.is_some(), "{name}");
            let saved = std::fs::read(recovery.saved_to.unwrap()).unwrap();
            assert_eq!(saved.len() as u64, recovery.dropped_bytes, "{name}");
            // The file is usable again: the next append follows the last good record.
            let next = keep as u64 + 1;
            j.append_if_head(keep as u64, &record(next)).unwrap();
            drop(j);
            let (_, records, recovery) = FileJournal::open(dir.path()).unwrap();
            assert_eq!(records.len() as u64, next, "{name}");
            assert_eq!(recovery.dropped_bytes, 0, "{name}");
        }
    }

    #[test]
    fn misnumbered_records_stop_the_replay() {
        let bytes = [
            encode_record(&record(1)).unwrap(),
            encode_record(&record(3)).unwrap(),
        ]
        .concat();
        let decoded = decode(&bytes);
        assert_eq!(decoded.records.len(), 1);
        assert!(decoded.problem.unwrap().contains("expected 2"));
    }
}
