//! What an operator does to a state directory while no daemon runs on it: check the journal and
//! its archive, cut a damaged journal back to a chosen revision, compact it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context as _, bail};

use super::archive::{self, Segment};
use super::file::{self, FileJournal, FileOptions};
use super::lock::StateLock;
use super::record::{self, Problem};
use super::{JOURNAL_FILE, Journal as _, Recovery, RevisionKind, Snapshot, durable};

/// The current time as RFC 3339 with milliseconds, UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// One intact record of the live journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    /// Where it starts.
    pub offset: u64,
    /// Its revision.
    pub revision: u64,
    /// What kind of change it is.
    pub kind: RevisionKind,
    /// The flag it is about.
    pub flag: Option<String>,
    /// When it was made.
    pub time: String,
    /// Who made it.
    pub actor: String,
}

/// One archive segment and what is wrong with it, if anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    /// The segment.
    pub segment: Segment,
    /// Why it does not read, if it does not.
    pub problem: Option<String>,
}

/// What `flagd-rs journal check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The live journal.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Its size.
    pub bytes: u64,
    /// The snapshot it starts with.
    pub snapshot: Option<Snapshot>,
    /// Its intact records after the snapshot.
    pub records: Vec<RecordLine>,
    /// The last intact revision.
    pub head: u64,
    /// Why reading stopped before the end, if it did.
    pub problem: Option<Problem>,
    /// The archive segments.
    pub segments: Vec<SegmentCheck>,
    /// What an interrupted compaction left (the next start removes it).
    pub leftovers: Vec<PathBuf>,
    /// Revision ranges neither the archive nor the journal holds.
    pub gaps: Vec<(u64, u64)>,
    /// A contradiction between the files, if any.
    pub inconsistent: Option<String>,
}

impl CheckReport {
    /// Whether anything is damaged (a torn tail is not: the next start cuts it off).
    pub fn damaged(&self) -> bool {
        matches!(self.problem, Some(Problem::Damaged { .. }))
            || self.inconsistent.is_some()
            || self.segments.iter().any(|s| s.problem.is_some())
    }
}

/// Reads the journal in state directory `dir` and its archive without changing anything (and
/// without taking the directory's lock: a running daemon may be appending, which at worst shows
/// as a torn tail).
pub fn check(dir: &Path) -> anyhow::Result<CheckReport> {
    let path = dir.join(JOURNAL_FILE);
    let (bytes, meta) = match std::fs::read(&path) {
        Ok(b) => (b, Some(std::fs::metadata(&path)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut scan = record::scan(&bytes);
    let mut report = CheckReport {
        path: path.clone(),
        exists: meta.is_some(),
        bytes: bytes.len() as u64,
        snapshot: None,
        records: Vec::new(),
        head: scan.head(),
        problem: None,
        segments: Vec::new(),
        leftovers: Vec::new(),
        gaps: Vec::new(),
        inconsistent: None,
    };
    let base = live_base(&scan);
    let segments = match archive::leftovers(dir, meta.as_ref(), &bytes, base) {
        Ok(leftovers) => {
            report.leftovers = leftovers.redundant;
            leftovers.segments
        }
        Err(e) => {
            report.inconsistent = Some(e.to_string());
            archive::list(dir)?
        }
    };
    file::settle(&mut scan, segments.last().map(|s| s.last));
    let mut expected = 1;
    for segment in &segments {
        if segment.first > expected {
            report.gaps.push((expected, segment.first - 1));
        }
        expected = expected.max(segment.last + 1);
        report.segments.push(SegmentCheck {
            segment: *segment,
            problem: archive::read(dir, segment).err().map(|e| e.to_string()),
        });
    }
    if scan.base() >= expected {
        report.gaps.push((expected, scan.base()));
    }
    let mut offset = scan.snapshot_end;
    for (r, end) in scan.records.iter().zip(&scan.ends) {
        report.records.push(RecordLine {
            offset,
            revision: r.revision,
            kind: r.kind,
            flag: r.flag.clone(),
            time: r.time.clone(),
            actor: r.actor.clone(),
        });
        offset = *end;
    }
    report.head = scan.head();
    report.problem = scan.problem.take();
    report.snapshot = scan.snapshot;
    Ok(report)
}

/// The live journal's base revision, unless its first record does not read.
fn live_base(scan: &record::Scan) -> Option<u64> {
    match &scan.problem {
        Some(p) if p.offset() == 0 => None,
        _ => Some(scan.base()),
    }
}

/// What `flagd-rs journal recover` did.
#[derive(Debug, Clone)]
pub struct RecoverReport {
    /// The revision the journal now ends with.
    pub kept: u64,
    /// Where the journal was cut.
    pub cut_at: u64,
    /// How many bytes were moved aside.
    pub moved_bytes: u64,
    /// Where they were saved (`None`: nothing followed the kept revision).
    pub saved_to: Option<PathBuf>,
    /// What was wrong with the journal before.
    pub problem: Option<Problem>,
    /// What an interrupted compaction left and was removed.
    pub tidied: Vec<String>,
}

/// Keeps revisions up to `keep` of the journal in state directory `dir` and moves everything
/// after them into `journal.log.cut-<offset>` (a new file, never an existing one). The moved
/// bytes are durable before the journal is cut, so a crash in between leaves them in both
/// places, never in neither. Fails while a daemon holds the directory.
pub fn recover(dir: &Path, keep: u64) -> anyhow::Result<RecoverReport> {
    existing(dir)?;
    let _lock = StateLock::acquire(dir)?;
    let path = dir.join(JOURNAL_FILE);
    let (file, bytes) = file::read_live(&path)?;
    let Some(file) = file else {
        bail!("there is no journal at {}", path.display());
    };
    let mut scan = record::scan(&bytes);
    let leftovers = archive::leftovers(dir, Some(&file.metadata()?), &bytes, live_base(&scan))?;
    let tidied = archive::remove(dir, &leftovers)?;
    let archived = leftovers.segments.last().map(|s| s.last);
    file::settle(&mut scan, archived);
    let floor = archived.unwrap_or(0).max(scan.base());
    if keep < floor {
        bail!(
            "revisions up to {floor} are compacted into the journal's snapshot and archive; \
             the journal cannot be cut below revision {floor}"
        );
    }
    let Some(cut_at) = scan.end_of(keep) else {
        bail!(
            "revision {keep} is not intact in {}: the last intact revision is {}",
            path.display(),
            scan.head()
        );
    };
    let problem = scan.problem.take();
    let tail = bytes
        .get(usize::try_from(cut_at).unwrap_or(usize::MAX)..)
        .unwrap_or_default();
    let saved_to = if tail.is_empty() {
        None
    } else {
        let saved = durable::save_aside(dir, &format!("{JOURNAL_FILE}.cut-{cut_at}"), tail)?;
        cut(&file, cut_at)?;
        Some(saved)
    };
    Ok(RecoverReport {
        kept: keep,
        cut_at,
        moved_bytes: tail.len() as u64,
        saved_to,
        problem,
        tidied,
    })
}

/// A tool that changes a state directory never creates one (a mistyped path is an error).
fn existing(dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        bail!("there is no state directory at {}", dir.display());
    }
    Ok(())
}

fn cut(file: &File, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_all()
}

/// What `flagd-rs journal compact` did.
#[derive(Debug, Clone)]
pub struct CompactReport {
    /// The archived segment (`None`: nothing to compact).
    pub segment: Option<Segment>,
    /// The snapshot's revision.
    pub head: u64,
    /// Overrides in the snapshot.
    pub overrides: usize,
    /// Rollout records in the snapshot.
    pub rollouts: usize,
    /// The live journal's size before and after.
    pub bytes: (u64, u64),
    /// What opening the journal recovered.
    pub recovery: Recovery,
}

/// Compacts the journal in state directory `dir`: its revisions go into the archive, and the
/// live journal becomes one snapshot record. Fails while a daemon holds the directory.
pub fn compact(dir: &Path) -> anyhow::Result<CompactReport> {
    existing(dir)?;
    let options = FileOptions { compact_bytes: 0 };
    let (journal, replay, recovery) = FileJournal::open_with(dir, options)?;
    let size = || std::fs::metadata(journal.path()).map_or(0, |m| m.len());
    let before = size();
    let snapshot = replay
        .snapshot
        .clone()
        .unwrap_or_default()
        .advanced(&replay.records, now());
    let segment = journal.compact(&snapshot)?;
    Ok(CompactReport {
        segment,
        head: snapshot.revision,
        overrides: snapshot.overrides.len(),
        rollouts: snapshot.rollouts.len(),
        bytes: (before, size()),
        recovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::journal::record::HEADER_BYTES;
    use crate::authority::journal::record::tests::journal;

    #[test]
    fn check_recover_and_compact_a_damaged_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (mut bytes, starts) = journal(7);
        bytes[starts[2] + HEADER_BYTES + 11] ^= 0x40;
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, &bytes).unwrap();

        let report = check(dir.path()).unwrap();
        assert!(report.damaged());
        assert_eq!(report.head, 2);
        assert_eq!(report.records.len(), 2);
        assert_eq!(report.records[1].offset, starts[1] as u64);
        assert!(matches!(
            report.problem,
            Some(Problem::Damaged { revision: 3, .. })
        ));

        // Cutting above the intact revisions or below zero is refused.
        assert!(recover(dir.path(), 3).is_err());
        assert!(
            compact(dir.path()).is_err(),
            "a damaged journal is not compacted"
        );
        let done = recover(dir.path(), 2).unwrap();
        assert_eq!(done.cut_at, starts[2] as u64);
        let saved = done.saved_to.unwrap();
        assert_eq!(std::fs::read(&saved).unwrap(), &bytes[starts[2]..]);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..starts[2]]);
        assert!(!check(dir.path()).unwrap().damaged());

        // Cutting further back keeps the earlier cut file untouched.
        let again = recover(dir.path(), 1).unwrap();
        assert_ne!(again.saved_to.as_ref(), Some(&saved));
        assert_eq!(std::fs::read(&saved).unwrap(), &bytes[starts[2]..]);
        assert!(
            recover(dir.path(), 1).unwrap().saved_to.is_none(),
            "nothing to cut"
        );

        let compacted = compact(dir.path()).unwrap();
        assert_eq!(compacted.segment, Some(Segment { first: 1, last: 1 }));
        assert_eq!((compacted.head, compacted.overrides), (1, 1));
        assert!(compact(dir.path()).unwrap().segment.is_none());
        let report = check(dir.path()).unwrap();
        assert!(!report.damaged(), "{report:?}");
        assert_eq!(report.snapshot.map(|s| s.revision), Some(1));
        assert!(recover(dir.path(), 0).is_err(), "below the snapshot");
    }

    #[test]
    fn tools_refuse_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (_journal, _, _) = FileJournal::open(dir.path()).unwrap();
        let pid = format!("PID {}", std::process::id());
        for err in [
            recover(dir.path(), 0).unwrap_err(),
            compact(dir.path()).unwrap_err(),
        ] {
            assert!(err.to_string().contains(&pid), "{err}");
        }
        assert!(check(dir.path()).is_ok(), "checking only reads");
        let missing = dir.path().join("missing");
        assert!(compact(&missing).is_err() && recover(&missing, 0).is_err());
        assert!(!missing.exists(), "no directory is created");
    }
}
