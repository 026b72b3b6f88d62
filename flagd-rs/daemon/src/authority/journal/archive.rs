//! The archive: compacted revisions in `<state-dir>/archive/journal-<first>-<last>.log`, each
//! segment the live journal as it was when it was compacted (a snapshot, if it had one, and the
//! revisions `first..=last`). Segments are written once and never rewritten.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use super::record::{self, Problem};
use super::{JOURNAL_FILE, JournalError, Replay, durable};

/// The archive directory's name inside the state directory.
pub const ARCHIVE_DIR: &str = "archive";

/// The new live journal's name while a compaction writes it.
pub const COMPACT_TEMP: &str = "journal.log.compact";

/// What a file being copied into the archive is called until it is complete.
const TEMP_SUFFIX: &str = ".tmp";

/// One archive segment: the compacted revisions `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    /// Its first revision.
    pub first: u64,
    /// Its last revision.
    pub last: u64,
}

impl Segment {
    /// The segment's file name.
    pub fn file_name(&self) -> String {
        format!("journal-{:020}-{:020}.log", self.first, self.last)
    }

    /// Parses a segment file name.
    pub fn parse(name: &str) -> Option<Segment> {
        let range = name.strip_prefix("journal-")?.strip_suffix(".log")?;
        let (first, last) = range.split_once('-')?;
        let segment = Segment {
            first: first.parse().ok()?,
            last: last.parse().ok()?,
        };
        (segment.first >= 1 && segment.first <= segment.last).then_some(segment)
    }

    /// Whether the segment holds revision `revision`.
    pub fn holds(&self, revision: u64) -> bool {
        (self.first..=self.last).contains(&revision)
    }
}

/// The archive directory of state directory `dir`.
pub fn dir_of(dir: &Path) -> PathBuf {
    dir.join(ARCHIVE_DIR)
}

/// The path of `segment` in state directory `dir`.
pub fn path_of(dir: &Path, segment: &Segment) -> PathBuf {
    dir_of(dir).join(segment.file_name())
}

/// The segments in state directory `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<Segment>> {
    let entries = match fs::read_dir(dir_of(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(segment) = entry.file_name().to_str().and_then(Segment::parse) {
            out.push(segment);
        }
    }
    out.sort();
    Ok(out)
}

/// Reads `segment` of state directory `dir`: it must read intact and hold exactly its revisions.
pub fn read(dir: &Path, segment: &Segment) -> Result<Replay, JournalError> {
    let path = path_of(dir, segment);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JournalError::Missing {
                revision: segment.first,
            });
        }
        Err(e) => return Err(e.into()),
    };
    let scan = record::scan(&bytes);
    let inconsistent = |detail: String| JournalError::Inconsistent {
        path: path.clone(),
        detail,
    };
    if let Some(problem) = &scan.problem {
        return Err(inconsistent(describe(problem)));
    }
    let first = scan.records.first().map(|r| r.revision);
    if first != Some(segment.first) || scan.head() != segment.last {
        return Err(inconsistent(format!(
            "the archive segment should hold revisions {}..={} but holds {}..={}",
            segment.first,
            segment.last,
            first.unwrap_or(scan.base() + 1),
            scan.head()
        )));
    }
    if scan.snapshot.is_none() && segment.first != 1 {
        return Err(inconsistent(
            "the archive segment starts after revision 1 but has no snapshot".into(),
        ));
    }
    Ok(scan.into_replay())
}

/// A problem found while reading a file, in words.
pub fn describe(problem: &Problem) -> String {
    match problem {
        Problem::Torn { offset, detail } => format!("bad record at byte {offset}: {detail}"),
        Problem::Damaged {
            offset,
            revision,
            detail,
            ..
        } => format!("revision {revision} at byte {offset} cannot be read: {detail}"),
    }
}

/// Leftovers of interrupted compactions in state directory `dir`, whose live journal is at
/// `live` with `bytes` and starts after revision `base` (`None`: its first record does not
/// read). Every leftover is redundant: temporary files, and archive segments that are still the
/// live journal (a hard link to it, or a copy of its first bytes) because the compaction stopped
/// before the new live journal replaced it.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Files to remove.
    pub redundant: Vec<PathBuf>,
    /// The segments that remain, oldest first.
    pub segments: Vec<Segment>,
}

/// Finds the leftovers of interrupted compactions (see [`Leftovers`]); a segment that overlaps
/// the live journal but is not a copy of it is an error.
pub fn leftovers(
    dir: &Path,
    live: Option<&fs::Metadata>,
    bytes: &[u8],
    base: Option<u64>,
) -> Result<Leftovers, JournalError> {
    let mut out = Leftovers::default();
    // Without a live journal no segment can be a copy of it (and that is an error below).
    let base = base.filter(|_| live.is_some());
    let temp = dir.join(COMPACT_TEMP);
    if temp.exists() {
        out.redundant.push(temp);
    }
    if let Ok(entries) = fs::read_dir(dir_of(dir)) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(TEMP_SUFFIX) {
                out.redundant.push(entry.path());
            }
        }
    }
    for segment in list(dir)? {
        let path = path_of(dir, &segment);
        let same_file = match (live, fs::metadata(&path)) {
            (Some(live), Ok(meta)) => live.dev() == meta.dev() && live.ino() == meta.ino(),
            _ => false,
        };
        if same_file {
            out.redundant.push(path);
            continue;
        }
        match base {
            Some(base) if segment.last > base => {
                let archived = fs::read(&path)?;
                if !archived.is_empty() && bytes.starts_with(&archived) {
                    out.redundant.push(path);
                } else {
                    return Err(JournalError::Inconsistent {
                        path,
                        detail: format!(
                            "the archive segment holds revisions up to {}, past the start of \
                             the live journal (revision {base}), and is not a copy of it: move \
                             one of them away or restore the state directory from a backup",
                            segment.last
                        ),
                    });
                }
            }
            _ => out.segments.push(segment),
        }
    }
    if live.is_none()
        && let Some(last) = out.segments.last()
    {
        return Err(JournalError::Inconsistent {
            path: dir.join(JOURNAL_FILE),
            detail: format!(
                "the journal is missing, but the archive holds revisions up to {}: restore the \
                 journal from a backup (a new one would reuse those revision numbers)",
                last.last
            ),
        });
    }
    Ok(out)
}

/// Removes the redundant leftovers, making the removals durable.
pub fn remove(dir: &Path, leftovers: &Leftovers) -> io::Result<Vec<String>> {
    let mut done = Vec::new();
    for path in &leftovers.redundant {
        if durable::remove_if_present(path)? {
            done.push(format!(
                "removed {}, left by an interrupted compaction",
                path.display()
            ));
        }
    }
    if !done.is_empty() {
        durable::sync_dir(dir)?;
        if dir_of(dir).is_dir() {
            durable::sync_dir(&dir_of(dir))?;
        }
    }
    Ok(done)
}

/// Makes the first `len` bytes of the live journal at `live` durable as `segment` of state
/// directory `dir`: a hard link when the file is exactly that long (instant, and the file is
/// never written again once the compaction replaces it), a copy otherwise or when the file
/// system has no hard links. Never replaces an existing segment.
pub fn store(dir: &Path, live: &Path, len: u64, segment: &Segment) -> Result<(), JournalError> {
    let archive = dir_of(dir);
    durable::create_dir_all(&archive)?;
    let path = path_of(dir, segment);
    if path.exists() {
        return Err(JournalError::Inconsistent {
            path,
            detail: "the archive segment exists already".into(),
        });
    }
    let linked = fs::metadata(live)?.len() == len && fs::hard_link(live, &path).is_ok();
    if !linked {
        copy_prefix(live, len, &path)?;
    }
    durable::sync_dir(&archive)?;
    Ok(())
}

fn copy_prefix(from: &Path, len: u64, to: &Path) -> io::Result<()> {
    let bytes = fs::read(from)?;
    let prefix = bytes
        .get(..usize::try_from(len).unwrap_or(usize::MAX))
        .ok_or_else(|| io::Error::other("the journal is shorter than its records"))?;
    let mut temp = to.as_os_str().to_owned();
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    durable::remove_if_present(&temp)?;
    let written = (|| {
        use std::io::Write as _;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(prefix)?;
        file.sync_all()?;
        fs::rename(&temp, to)
    })();
    if written.is_err() {
        let _ = durable::remove_if_present(&temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_sort() {
        let s = Segment { first: 3, last: 41 };
        assert_eq!(
            s.file_name(),
            "journal-00000000000000000003-00000000000000000041.log"
        );
        assert_eq!(Segment::parse(&s.file_name()), Some(s));
        for bad in [
            "journal-3-1.log",
            "journal-0-1.log",
            "journal-1.log",
            "journal-a-b.log",
            "journal-00000000000000000003-00000000000000000041.log.tmp",
        ] {
            assert_eq!(Segment::parse(bad), None, "{bad}");
        }
        assert!(s.holds(3) && s.holds(41) && !s.holds(42) && !s.holds(2));
    }
}
