//! The journal as files in a state directory (see the [module documentation](super) for the
//! layout): open with recovery, fsynced appends, reads across the archive, and compaction.
//!
//! Compaction at head H, under the journal's mutex (no append can run):
//! 1. the new live journal — one snapshot record as of H — is written to `journal.log.compact`
//!    and fsynced;
//! 2. the old live journal is hard-linked (or copied) into `archive/journal-<base+1>-<H>.log`,
//!    and the archive directory is fsynced;
//! 3. `journal.log.compact` is renamed over `journal.log`, and the state directory is fsynced.
//!
//! A crash before step 3 leaves the old journal in place: open removes the temporary file and
//! the archive segment, which is still the live journal (same file, or a copy of its bytes). A
//! crash after step 3 leaves the compacted journal and its complete archive segment. Either
//! way no revision is lost or duplicated.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::archive::{self, COMPACT_TEMP, Segment};
use super::lock::StateLock;
use super::record::{self, Problem, Scan};
use super::{
    Damage, JOURNAL_FILE, Journal, JournalError, Recovery, Replay, RevisionInfo, Snapshot, durable,
};

/// The default size of the records after the snapshot at which the journal is compacted.
pub const DEFAULT_COMPACT_BYTES: u64 = 64 * 1024 * 1024;

/// How a file journal behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Compact once the records after the snapshot take this many bytes (0: never by itself).
    pub compact_bytes: u64,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            compact_bytes: DEFAULT_COMPACT_BYTES,
        }
    }
}

#[derive(Debug)]
struct FileState {
    /// The state directory's lock; `None` once the journal is closed.
    lock: Option<StateLock>,
    /// Opened on first write (or at open when the file exists).
    file: Option<File>,
    /// The snapshot's revision (0: none).
    base: u64,
    /// Where the snapshot record ends.
    base_len: u64,
    head: u64,
    /// Length of the valid prefix: where the next record goes.
    len: u64,
    /// The archive segments, oldest first.
    segments: Vec<Segment>,
    poisoned: bool,
}

/// The journal in a state directory.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    path: PathBuf,
    options: FileOptions,
    state: Mutex<FileState>,
}

/// Where a compaction can be stopped, to test what a crash there leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) enum Stop {
    /// After the new live journal is written under its temporary name.
    Written,
    /// After the old live journal is in the archive.
    Archived,
}

impl FileJournal {
    /// [`FileJournal::open_with`] with the default options.
    pub fn open(dir: &Path) -> Result<(FileJournal, Replay, Recovery), JournalError> {
        FileJournal::open_with(dir, FileOptions::default())
    }

    /// Opens the journal in state directory `dir`: locks the directory (creating it if needed),
    /// tidies what an interrupted compaction left, cuts off a torn tail (saved aside first) and
    /// refuses a damaged journal. Returns the journal, what it holds and what recovery did.
    pub fn open_with(
        dir: &Path,
        options: FileOptions,
    ) -> Result<(FileJournal, Replay, Recovery), JournalError> {
        let lock = StateLock::acquire(dir)?;
        let path = dir.join(JOURNAL_FILE);
        let (file, bytes) = read_live(&path)?;
        let mut scan = record::scan(&bytes);
        let meta = file.as_ref().map(File::metadata).transpose()?;
        let base = match &scan.problem {
            Some(p) if p.offset() == 0 => None,
            _ => Some(scan.base()),
        };
        let leftovers = archive::leftovers(dir, meta.as_ref(), &bytes, base)?;
        let mut recovery = Recovery {
            tidied: archive::remove(dir, &leftovers)?,
            ..Recovery::default()
        };
        settle(&mut scan, leftovers.segments.last().map(|s| s.last));
        match scan.problem.take() {
            None => {}
            Some(Problem::Damaged {
                offset,
                revision,
                intact,
                detail,
                resume,
            }) => {
                return Err(JournalError::Damaged(Box::new(Damage {
                    path,
                    offset,
                    revision,
                    intact,
                    detail,
                    resume,
                })));
            }
            Some(Problem::Torn { offset, detail }) => {
                let tail = bytes
                    .get(usize::try_from(offset).unwrap_or(usize::MAX)..)
                    .unwrap_or_default();
                let saved =
                    durable::save_aside(dir, &format!("{JOURNAL_FILE}.corrupt-{offset}"), tail)?;
                if let Some(file) = &file {
                    file.set_len(offset)?;
                    file.sync_all()?;
                }
                let problem = format!("torn record at byte {offset}: {detail}");
                tracing::warn!(
                    journal = %path.display(),
                    %problem,
                    dropped_bytes = tail.len(),
                    saved_to = %saved.display(),
                    "cut off the journal's torn tail (a write that was never acknowledged)"
                );
                recovery.dropped_bytes = tail.len() as u64;
                recovery.problem = Some(problem);
                recovery.saved_to = Some(saved);
            }
        }
        if let Some(last) = leftovers.segments.last()
            && last.last != scan.base()
        {
            tracing::warn!(
                archived_up_to = last.last,
                snapshot = scan.base(),
                "the archive does not hold every compacted revision: part of the history is not stored"
            );
        }
        let state = FileState {
            lock: Some(lock),
            file,
            base: scan.base(),
            base_len: scan.snapshot_end,
            head: scan.head(),
            len: scan.valid_len,
            segments: leftovers.segments,
            poisoned: false,
        };
        let journal = FileJournal {
            dir: dir.to_owned(),
            path,
            options,
            state: Mutex::new(state),
        };
        Ok((journal, scan.into_replay(), recovery))
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create(&self) -> Result<File, JournalError> {
        durable::create_dir_all(&self.dir)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.path)?;
        file.sync_all()?;
        // The new directory entry must be durable too, or a crash could lose the whole file.
        durable::sync_dir(&self.dir)?;
        Ok(file)
    }

    /// Compaction, stopped early at `stop` (a crash there, for tests).
    fn compact_until(
        &self,
        snapshot: &Snapshot,
        stop: Option<Stop>,
    ) -> Result<Option<Segment>, JournalError> {
        let mut state = self.lock();
        if state.lock.is_none() {
            return Err(JournalError::Closed);
        }
        if state.poisoned {
            return Err(JournalError::Poisoned);
        }
        if snapshot.revision != state.head {
            return Err(JournalError::Conflict {
                expected: snapshot.revision,
                head: state.head,
            });
        }
        if state.head == state.base {
            return Ok(None);
        }
        let segment = Segment {
            first: state.base + 1,
            last: state.head,
        };
        let encoded = record::encode_snapshot(snapshot)?;

        // 1. The new live journal, durable under a temporary name.
        let temp = self.dir.join(COMPACT_TEMP);
        let written = (|| -> io::Result<()> {
            durable::remove_if_present(&temp)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            file.write_all(&encoded)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = durable::remove_if_present(&temp);
            return Err(e.into());
        }
        if stop == Some(Stop::Written) {
            return Ok(None);
        }

        // 2. The old live journal, durable in the archive.
        if let Err(e) = archive::store(&self.dir, &self.path, state.len, &segment) {
            let _ = durable::remove_if_present(&temp);
            return Err(e);
        }
        if stop == Some(Stop::Archived) {
            return Ok(None);
        }

        // 3. The switch.
        let switched =
            std::fs::rename(&temp, &self.path).and_then(|()| durable::sync_dir(&self.dir));
        if let Err(e) = switched {
            // Whether or not the rename happened, the next open sorts it out; stop writing.
            state.poisoned = true;
            return Err(e.into());
        }
        match OpenOptions::new().read(true).write(true).open(&self.path) {
            Ok(file) => state.file = Some(file),
            Err(e) => {
                state.poisoned = true;
                return Err(e.into());
            }
        }
        state.base = snapshot.revision;
        state.base_len = encoded.len() as u64;
        state.len = encoded.len() as u64;
        state.segments.push(segment);
        tracing::info!(
            revisions = format!("{}..={}", segment.first, segment.last),
            archive = %archive::path_of(&self.dir, &segment).display(),
            "compacted the journal"
        );
        Ok(Some(segment))
    }

    /// Compaction stopped at `stop`, as a crash there would leave it.
    #[cfg(test)]
    pub(crate) fn compact_stopped(&self, snapshot: &Snapshot, stop: Stop) {
        self.compact_until(snapshot, Some(stop)).unwrap();
    }
}

/// Classifies a bad first record once the archive is known: the first record of a compacted
/// journal (whose archive ends at `archived`) is its snapshot, fsynced before it took the
/// journal's name, so if it is bad the file was damaged, not torn.
pub(super) fn settle(scan: &mut Scan, archived: Option<u64>) {
    if let (Some(Problem::Torn { offset: 0, detail }), Some(archived)) = (&scan.problem, archived) {
        scan.problem = Some(Problem::Damaged {
            offset: 0,
            revision: archived,
            intact: 0,
            detail: format!("it is the journal's snapshot record: {detail}"),
            resume: None,
        });
    }
}

/// The live journal file (opened for writing) and its bytes; `None` when it does not exist.
pub(super) fn read_live(path: &Path) -> Result<(Option<File>, Vec<u8>), JournalError> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(mut file) => {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok((Some(file), bytes))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((None, Vec::new())),
        Err(e) => Err(e.into()),
    }
}

impl Journal for FileJournal {
    fn head(&self) -> u64 {
        self.lock().head
    }

    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
        let mut state = self.lock();
        if state.lock.is_none() {
            return Err(JournalError::Closed);
        }
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
        let bytes = record::encode_record(record)?;
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
                return Err(JournalError::Unconfirmed(e));
            }
            return Err(e.into());
        }
        state.len = at + bytes.len() as u64;
        state.head = record.revision;
        Ok(state.head)
    }

    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError> {
        // The live bytes and the segment list are taken together, so a compaction running
        // meanwhile cannot make a revision appear twice or not at all.
        let (bytes, segments) = {
            let state = self.lock();
            let bytes = match std::fs::read(&self.path) {
                Ok(mut b) => {
                    b.truncate(usize::try_from(state.len).unwrap_or(usize::MAX));
                    b
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            (bytes, state.segments.clone())
        };
        let mut out = Vec::new();
        for segment in segments.iter().filter(|s| s.last >= revision) {
            let part = archive::read(&self.dir, segment)?;
            out.extend(part.records.into_iter().filter(|r| r.revision >= revision));
        }
        let live = record::scan(&bytes);
        out.extend(live.records.into_iter().filter(|r| r.revision >= revision));
        Ok(out)
    }

    fn segments(&self) -> Vec<Segment> {
        self.lock().segments.clone()
    }

    fn read_segment(&self, segment: &Segment) -> Result<Replay, JournalError> {
        archive::read(&self.dir, segment)
    }

    fn compaction_due(&self) -> bool {
        let state = self.lock();
        self.options.compact_bytes > 0
            && state.lock.is_some()
            && !state.poisoned
            && state.head > state.base
            && state.len.saturating_sub(state.base_len) >= self.options.compact_bytes
    }

    fn compact(&self, snapshot: &Snapshot) -> Result<Option<Segment>, JournalError> {
        self.compact_until(snapshot, None)
    }

    fn close(&self) {
        let mut state = self.lock();
        state.file = None;
        state.lock = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::journal::lock::LOCK_FILE;
    use crate::authority::journal::record::HEADER_BYTES;
    use crate::authority::journal::record::tests::{journal, record};
    use flagd_evaluator::OverridePatch;

    fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// The snapshot at the head of what `open` returned plus `records`.
    fn snapshot_of(replay: &Replay, extra: &[RevisionInfo]) -> Snapshot {
        let base = replay.snapshot.clone().unwrap_or_default();
        let all: Vec<RevisionInfo> = replay.records.iter().chain(extra).cloned().collect();
        base.advanced(&all, "2025-01-01T00:00:00.000Z".into())
    }

    fn append(j: &FileJournal, from: u64, to: u64) -> Vec<RevisionInfo> {
        (from..=to)
            .map(|r| {
                j.append_if_head(r - 1, &record(r)).unwrap();
                record(r)
            })
            .collect()
    }

    #[test]
    fn append_read_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let (j, replay, recovery) = FileJournal::open(&state_dir).unwrap();
        assert_eq!(replay, Replay::default());
        assert_eq!(recovery, Recovery::default());
        assert!(
            state_dir.join(LOCK_FILE).exists(),
            "the lock is taken at open"
        );
        assert!(
            !j.path().exists(),
            "the journal is created by the first write"
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
        assert!(matches!(
            FileJournal::open(&state_dir),
            Err(JournalError::Locked { .. })
        ));
        drop(j);
        let (j, replay, recovery) = FileJournal::open(&state_dir).unwrap();
        assert_eq!(replay.records, vec![record(1), record(2)]);
        assert_eq!(recovery.dropped_bytes, 0);
        assert_eq!(j.head(), 2);
        assert_eq!(j.append_if_head(2, &record(3)).unwrap(), 3);
        // A closed journal takes no more writes and lets another process in.
        j.close();
        assert!(matches!(
            j.append_if_head(3, &record(4)),
            Err(JournalError::Closed)
        ));
        let (_, replay, _) = FileJournal::open(&state_dir).unwrap();
        assert_eq!(replay.head(), 3);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_saved_under_a_name_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (whole, starts) = journal(3);
        let torn = &whole[..whole.len() - 7];
        let mut saved = Vec::new();
        for round in 0..2 {
            std::fs::write(dir.path().join(JOURNAL_FILE), torn).unwrap();
            let (j, replay, recovery) = FileJournal::open(dir.path()).unwrap();
            assert_eq!(replay.head(), 2, "round {round}");
            assert!(
                recovery
                    .problem
                    .unwrap()
                    .contains(&format!("byte {}", starts[2]))
            );
            let path = recovery.saved_to.unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), &torn[starts[2]..]);
            assert_eq!(recovery.dropped_bytes, (torn.len() - starts[2]) as u64);
            assert_eq!(std::fs::metadata(j.path()).unwrap().len(), starts[2] as u64);
            // Writing continues after the last intact record.
            j.append_if_head(2, &record(3)).unwrap();
            drop(j);
            saved.push(path);
        }
        // The same damage at the same offset twice: two files, the first one untouched.
        assert_ne!(saved[0], saved[1]);
        assert_eq!(std::fs::read(&saved[0]).unwrap(), &torn[starts[2]..]);
        assert_eq!(files(dir.path(), "journal.log.corrupt-").len(), 2);
        let (_, replay, recovery) = FileJournal::open(dir.path()).unwrap();
        assert_eq!(replay.head(), 3);
        assert_eq!(recovery.dropped_bytes, 0);
    }

    #[test]
    fn damage_in_the_middle_refuses_to_open_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bytes, starts) = journal(7);
        let at = starts[2] + HEADER_BYTES + 30;
        bytes[at] ^= 0x01;
        std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
        let err = FileJournal::open(dir.path()).unwrap_err();
        match &err {
            JournalError::Damaged(d) => {
                assert_eq!((d.offset, d.revision, d.intact), (starts[2] as u64, 3, 2));
                assert_eq!(d.resume, Some((starts[3] as u64, 4)));
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        for part in [
            format!("byte {}", starts[2]),
            "revision 3".to_owned(),
            "journal recover --truncate-at 2".to_owned(),
            "journal check".to_owned(),
        ] {
            assert!(message.contains(&part), "{part}: {message}");
        }
        assert_eq!(
            std::fs::read(dir.path().join(JOURNAL_FILE)).unwrap(),
            bytes,
            "the journal is left as it was"
        );
        assert!(files(dir.path(), "journal.log.corrupt-").is_empty());
        // The lock is released with the failed open.
        assert!(matches!(
            FileJournal::open(dir.path()),
            Err(JournalError::Damaged(_))
        ));
    }

    #[test]
    fn compaction_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let options = FileOptions { compact_bytes: 1 };
        let (j, replay, _) = FileJournal::open_with(dir.path(), options).unwrap();
        assert!(!j.compaction_due(), "nothing to compact yet");
        let first = append(&j, 1, 5);
        assert!(j.compaction_due());
        let snapshot = snapshot_of(&replay, &first);
        assert_eq!(
            j.compact(&snapshot).unwrap(),
            Some(Segment { first: 1, last: 5 })
        );
        assert!(!j.compaction_due());
        assert_eq!(j.compact(&snapshot).unwrap(), None, "nothing new");
        append(&j, 6, 8);
        assert!(matches!(
            j.compact(&snapshot),
            Err(JournalError::Conflict { .. })
        ));
        let all: Vec<RevisionInfo> = (1..=8).map(record).collect();
        assert_eq!(j.read_from(1).unwrap(), all);
        assert_eq!(j.read_from(4).unwrap(), all[3..]);
        let snapshot8 = Snapshot::default().advanced(&all, "t".into());
        j.compact(&snapshot8).unwrap();
        append(&j, 9, 9);
        assert_eq!(
            j.segments(),
            [Segment { first: 1, last: 5 }, Segment { first: 6, last: 8 }]
        );
        let seg = j.read_segment(&Segment { first: 6, last: 8 }).unwrap();
        assert_eq!(
            seg.base(),
            5,
            "a segment starts from the snapshot it followed"
        );
        assert_eq!(seg.records, all[5..8]);
        drop(j);

        let (j, replay, recovery) = FileJournal::open(dir.path()).unwrap();
        assert!(recovery.tidied.is_empty());
        assert_eq!(replay.base(), 8);
        assert_eq!(replay.records, vec![record(9)]);
        assert_eq!(
            replay.snapshot.unwrap().overrides["f"],
            OverridePatch {
                default_variant: Some("v8".into()),
                ..Default::default()
            }
        );
        assert_eq!(j.head(), 9);
        let mut expected = all.clone();
        expected.push(record(9));
        assert_eq!(j.read_from(1).unwrap(), expected);
        // The live journal holds the snapshot and revision 9 only.
        let live = std::fs::metadata(j.path()).unwrap().len();
        let archived =
            std::fs::metadata(archive::path_of(dir.path(), &Segment { first: 1, last: 5 }))
                .unwrap()
                .len();
        assert!(live < archived, "{live} < {archived}");
    }

    /// Every point where a compaction can stop: the journal opens with the same revisions, and
    /// compacting again works.
    #[test]
    fn an_interrupted_compaction_loses_and_duplicates_nothing() {
        for stop in [Stop::Written, Stop::Archived] {
            for compacted_before in [false, true] {
                let name = format!("{stop:?}, compacted before: {compacted_before}");
                let dir = tempfile::tempdir().unwrap();
                let (j, _, _) = FileJournal::open(dir.path()).unwrap();
                let mut all = append(&j, 1, 4);
                if compacted_before {
                    j.compact(&Snapshot::default().advanced(&all, "t".into()))
                        .unwrap();
                    all.extend(append(&j, 5, 6));
                }
                let snapshot = Snapshot::default().advanced(&all, "t".into());
                j.compact_stopped(&snapshot, stop);
                drop(j);

                let (j, replay, recovery) = FileJournal::open(dir.path()).unwrap();
                assert_eq!(replay.head(), all.len() as u64, "{name}");
                assert_eq!(j.read_from(1).unwrap(), all, "{name}");
                assert!(!recovery.tidied.is_empty(), "{name}");
                assert!(!dir.path().join(COMPACT_TEMP).exists(), "{name}");
                let expected_segments = if compacted_before {
                    vec![Segment { first: 1, last: 4 }]
                } else {
                    vec![]
                };
                assert_eq!(j.segments(), expected_segments, "{name}");
                // Writing goes on, and the next compaction completes.
                let next = all.len() as u64 + 1;
                all.extend(append(&j, next, next));
                j.compact(&Snapshot::default().advanced(&all, "t".into()))
                    .unwrap();
                drop(j);
                let (j, replay, _) = FileJournal::open(dir.path()).unwrap();
                assert_eq!((replay.base(), replay.head()), (next, next), "{name}");
                assert_eq!(j.read_from(1).unwrap(), all, "{name}");
            }
        }
    }

    /// A compaction that copied (no hard links) and stopped before the switch.
    #[test]
    fn an_interrupted_copy_into_the_archive_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _, _) = FileJournal::open(dir.path()).unwrap();
        let all = append(&j, 1, 3);
        let segment = Segment { first: 1, last: 3 };
        let len = std::fs::metadata(j.path()).unwrap().len();
        // A copy of the live journal's bytes, as a file system without hard links gets.
        durable::create_dir_all(&archive::dir_of(dir.path())).unwrap();
        std::fs::write(
            archive::path_of(dir.path(), &segment),
            std::fs::read(j.path()).unwrap(),
        )
        .unwrap();
        // And a half-written copy.
        std::fs::write(
            archive::dir_of(dir.path()).join(format!("{}.tmp", segment.file_name())),
            b"half",
        )
        .unwrap();
        drop(j);
        let (j, replay, recovery) = FileJournal::open(dir.path()).unwrap();
        assert_eq!(recovery.tidied.len(), 2, "{:?}", recovery.tidied);
        assert_eq!(replay.records, all);
        assert!(j.segments().is_empty());
        assert_eq!(std::fs::metadata(j.path()).unwrap().len(), len);

        // A segment past the live journal's start that is not a copy of it is refused.
        drop(j);
        std::fs::write(archive::path_of(dir.path(), &segment), b"something else").unwrap();
        assert!(matches!(
            FileJournal::open(dir.path()),
            Err(JournalError::Inconsistent { .. })
        ));
    }

    #[test]
    fn a_missing_journal_beside_an_archive_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _, _) = FileJournal::open(dir.path()).unwrap();
        let all = append(&j, 1, 2);
        j.compact(&Snapshot::default().advanced(&all, "t".into()))
            .unwrap();
        drop(j);
        std::fs::remove_file(dir.path().join(JOURNAL_FILE)).unwrap();
        let err = FileJournal::open(dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("reuse those revision numbers"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_snapshot_record_is_damage_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _, _) = FileJournal::open(dir.path()).unwrap();
        let all = append(&j, 1, 2);
        j.compact(&Snapshot::default().advanced(&all, "t".into()))
            .unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            FileJournal::open(dir.path()),
            Err(JournalError::Damaged(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
