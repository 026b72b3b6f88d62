//! The record format — `[u32 length][u32 CRC-32][JSON]`, little-endian — and reading a journal's
//! bytes back, telling a torn tail (an interrupted append) from damage in the middle.

use std::io;

use serde::{Deserialize, Serialize};

use super::{JournalError, Replay, RevisionInfo, Snapshot};

/// Length and checksum, before each record's JSON.
pub const HEADER_BYTES: usize = 8;

/// The largest record accepted; a length above it can only be a torn or corrupt header.
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;

/// How a snapshot record's JSON starts (a revision's starts with `{"revision":`).
const SNAPSHOT_PREFIX: &[u8] = br#"{"snapshot":"#;

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

fn frame(json: &[u8]) -> Result<Vec<u8>, JournalError> {
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&l| (l as usize) <= MAX_RECORD_BYTES)
        .ok_or_else(|| io::Error::other("record too large"))?;
    let mut out = Vec::with_capacity(HEADER_BYTES + json.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32(json).to_le_bytes());
    out.extend_from_slice(json);
    Ok(out)
}

/// Encodes one revision record: header and JSON.
pub fn encode_record(record: &RevisionInfo) -> Result<Vec<u8>, JournalError> {
    frame(&serde_json::to_vec(record).map_err(io::Error::other)?)
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    snapshot: &'a Snapshot,
}

#[derive(Deserialize)]
struct SnapshotIn {
    snapshot: Snapshot,
}

/// Encodes a snapshot record: header and `{"snapshot": {...}}`.
pub fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>, JournalError> {
    frame(&serde_json::to_vec(&SnapshotOut { snapshot }).map_err(io::Error::other)?)
}

/// One decoded record.
#[derive(Debug)]
pub enum Entry {
    /// The state as of a revision (only ever the first record of a file).
    Snapshot(Snapshot),
    /// A revision.
    Revision(RevisionInfo),
}

impl Entry {
    /// The revision the record is, or is a snapshot as of.
    pub fn revision(&self) -> u64 {
        match self {
            Entry::Snapshot(s) => s.revision,
            Entry::Revision(r) => r.revision,
        }
    }
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

/// Decodes the record at byte `at`: the record and where it ends, or what is wrong with it.
pub fn read_entry(bytes: &[u8], at: usize) -> Result<(Entry, usize), String> {
    let (Some(len), Some(crc)) = (read_u32(bytes, at), read_u32(bytes, at + 4)) else {
        let have = bytes.len().saturating_sub(at);
        return Err(format!(
            "the record header is cut short ({have} of {HEADER_BYTES} bytes)"
        ));
    };
    let len = len as usize;
    if len > MAX_RECORD_BYTES {
        return Err(format!(
            "the header announces {len} bytes, more than a record may hold"
        ));
    }
    let start = at + HEADER_BYTES;
    let Some(json) = bytes.get(start..start + len) else {
        let have = bytes.len().saturating_sub(start);
        return Err(format!(
            "the header announces {len} bytes but only {have} follow"
        ));
    };
    if crc32(json) != crc {
        return Err("checksum mismatch".into());
    }
    let entry = if json.starts_with(SNAPSHOT_PREFIX) {
        serde_json::from_slice::<SnapshotIn>(json).map(|s| Entry::Snapshot(s.snapshot))
    } else {
        serde_json::from_slice::<RevisionInfo>(json).map(Entry::Revision)
    };
    entry
        .map(|e| (e, start + len))
        .map_err(|e| format!("the record does not parse: {e}"))
}

/// Why reading stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A bad record with nothing readable after it: an append that was interrupted. Cutting it
    /// off loses only a write that was never acknowledged.
    Torn {
        /// Where the bad record starts.
        offset: u64,
        /// What is wrong with it.
        detail: String,
    },
    /// A bad record with intact records after it, or an intact record out of sequence: the
    /// history is damaged, and only an operator can decide what to keep.
    Damaged {
        /// Where the bad record starts.
        offset: u64,
        /// The revision that cannot be read there.
        revision: u64,
        /// The last intact revision before it.
        intact: u64,
        /// What is wrong.
        detail: String,
        /// Byte offset and revision of the next intact record, if one was found.
        resume: Option<(u64, u64)>,
    },
}

impl Problem {
    /// Where the bad record starts.
    pub fn offset(&self) -> u64 {
        match self {
            Problem::Torn { offset, .. } | Problem::Damaged { offset, .. } => *offset,
        }
    }
}

/// What a journal file's bytes hold.
#[derive(Debug, Default)]
pub struct Scan {
    /// The snapshot the file starts with, if any.
    pub snapshot: Option<Snapshot>,
    /// Where the snapshot record ends (0 without one).
    pub snapshot_end: u64,
    /// The intact revisions after the snapshot, in order.
    pub records: Vec<RevisionInfo>,
    /// Where each of `records` ends.
    pub ends: Vec<u64>,
    /// Length of the intact prefix.
    pub valid_len: u64,
    /// Why reading stopped before the end, if it did.
    pub problem: Option<Problem>,
}

impl Scan {
    /// The revision the records follow (the snapshot's, or 0).
    pub fn base(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.revision)
    }

    /// The last intact revision.
    pub fn head(&self) -> u64 {
        self.records.last().map_or(self.base(), |r| r.revision)
    }

    /// The byte offset right after revision `revision` (the base: right after the snapshot),
    /// if that revision is intact here.
    pub fn end_of(&self, revision: u64) -> Option<u64> {
        if revision == self.base() {
            return Some(self.snapshot_end);
        }
        let index = usize::try_from(revision.checked_sub(self.base() + 1)?).ok()?;
        self.ends.get(index).copied()
    }

    /// The snapshot and records, for a replay.
    pub fn into_replay(self) -> Replay {
        Replay {
            snapshot: self.snapshot,
            records: self.records,
        }
    }
}

/// Reads records until the end, or until a record is bad or out of sequence. A bad record with
/// no intact record of a later revision anywhere after it is a torn tail; otherwise the journal
/// is damaged.
pub fn scan(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let expected = scan.head() + 1;
        let intact = scan.head();
        match read_entry(bytes, at) {
            Ok((Entry::Snapshot(snapshot), end)) if at == 0 => {
                scan.snapshot = Some(snapshot);
                scan.snapshot_end = end as u64;
                at = end;
            }
            Ok((Entry::Revision(record), end)) if record.revision == expected => {
                scan.records.push(record);
                scan.ends.push(end as u64);
                at = end;
            }
            Ok((entry, _)) => {
                let found = entry.revision();
                let what = match entry {
                    Entry::Snapshot(_) => "a snapshot",
                    Entry::Revision(_) => "the record",
                };
                scan.problem = Some(Problem::Damaged {
                    offset: at as u64,
                    revision: expected,
                    intact,
                    detail: format!(
                        "{what} there is revision {found}, where revision {expected} belongs"
                    ),
                    resume: (found > expected).then_some((at as u64, found)),
                });
                break;
            }
            Err(detail) => {
                let resume = find_intact(bytes, at + 1, intact);
                let snapshot = at == 0
                    && bytes
                        .get(HEADER_BYTES..)
                        .is_some_and(|j| j.starts_with(SNAPSHOT_PREFIX));
                // A snapshot record is fsynced before it becomes a journal's first record, so
                // it is never torn.
                scan.problem = Some(match resume {
                    _ if snapshot => Problem::Damaged {
                        offset: 0,
                        revision: resume.map_or(0, |(_, next)| next.saturating_sub(1)),
                        intact: 0,
                        detail: format!("it is the journal's snapshot record: {detail}"),
                        resume,
                    },
                    None => Problem::Torn {
                        offset: at as u64,
                        detail,
                    },
                    Some(_) => Problem::Damaged {
                        offset: at as u64,
                        revision: expected,
                        intact,
                        detail,
                        resume,
                    },
                });
                break;
            }
        }
    }
    scan.valid_len = at as u64;
    scan
}

/// The first intact record at or after byte `from` whose revision is above `after`, as (byte
/// offset, revision). A record's JSON always starts with `{`, and the four bytes before a `{`
/// inside JSON text read as a length far above [`MAX_RECORD_BYTES`], so only real record
/// boundaries get as far as a checksum.
fn find_intact(bytes: &[u8], from: usize, after: u64) -> Option<(u64, u64)> {
    let mut p = from;
    loop {
        let rest = bytes.get(p + HEADER_BYTES..)?;
        let i = rest.iter().position(|&b| b == b'{')?;
        let at = p + i;
        if let Ok((entry, _)) = read_entry(bytes, at)
            && entry.revision() > after
        {
            return Some((at as u64, entry.revision()));
        }
        p = at + 1;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::authority::journal::{OverrideChange, RevisionKind};
    use flagd_evaluator::OverridePatch;

    pub(crate) fn record(revision: u64) -> RevisionInfo {
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
                    default_variant: Some(format!("v{revision}")),
                    ..Default::default()
                }),
            }],
            restored: None,
            event: None,
        }
    }

    /// Records `1..=n` and the offset where each starts.
    pub(crate) fn journal(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for r in 1..=n {
            starts.push(bytes.len());
            bytes.extend(encode_record(&record(r)).unwrap());
        }
        (bytes, starts)
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn records_and_snapshots_round_trip() {
        let snapshot = Snapshot {
            revision: 4,
            time: "t".into(),
            overrides: [("f".to_owned(), OverridePatch::default())].into(),
            rollouts: Vec::new(),
        };
        let bytes = [
            encode_snapshot(&snapshot).unwrap(),
            encode_record(&record(5)).unwrap(),
            encode_record(&record(6)).unwrap(),
        ]
        .concat();
        let scan = scan(&bytes);
        assert_eq!(scan.problem, None);
        assert_eq!(scan.snapshot.as_ref(), Some(&snapshot));
        assert_eq!((scan.base(), scan.head()), (4, 6));
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.end_of(6), Some(bytes.len() as u64));
        assert_eq!(scan.end_of(4), Some(scan.snapshot_end));
        assert_eq!(scan.end_of(3), None);
        assert_eq!(scan.end_of(7), None);
    }

    #[test]
    fn a_bad_last_record_is_a_torn_tail() {
        let (whole, starts) = journal(3);
        let last = starts[2];
        let mut flipped = whole.clone();
        flipped[last + HEADER_BYTES + 3] ^= 0x20;
        let mut garbage = whole[..last + 5].to_vec();
        garbage.extend_from_slice(b"\xff\xff\xff\x7fgarbage");
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("torn header", whole[..last + 3].to_vec(), 2),
            ("torn body", whole[..whole.len() - 1].to_vec(), 2),
            ("checksum", flipped, 2),
            ("garbage", garbage, 2),
            ("zeros", [whole.clone(), vec![0; 16]].concat(), 3),
            (
                "one record's header only",
                whole[..HEADER_BYTES].to_vec(),
                0,
            ),
        ];
        for (name, bytes, head) in cases {
            let scan = scan(&bytes);
            assert_eq!(scan.head(), head, "{name}");
            match scan.problem {
                Some(Problem::Torn { offset, .. }) => {
                    assert_eq!(offset, scan.valid_len, "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_bad_record_with_intact_ones_after_it_is_damage() {
        let (whole, starts) = journal(7);
        // A flipped bit in the JSON of revision 3, in its header's length, and in its checksum.
        for at in [
            starts[2] + HEADER_BYTES + 20,
            starts[2] + 1,
            starts[2] + 5,
            starts[2],
        ] {
            let mut bytes = whole.clone();
            bytes[at] ^= 0x04;
            let scan = scan(&bytes);
            assert_eq!(scan.head(), 2, "flip at {at}");
            assert_eq!(scan.valid_len, starts[2] as u64);
            match &scan.problem {
                Some(Problem::Damaged {
                    offset,
                    revision,
                    intact,
                    resume,
                    ..
                }) => {
                    assert_eq!(
                        (*offset, *revision, *intact),
                        (starts[2] as u64, 3, 2),
                        "flip at {at}"
                    );
                    assert_eq!(*resume, Some((starts[3] as u64, 4)), "flip at {at}");
                }
                other => panic!("flip at {at}: {other:?}"),
            }
        }
    }

    #[test]
    fn records_out_of_sequence_are_damage() {
        let gap = [
            encode_record(&record(1)).unwrap(),
            encode_record(&record(3)).unwrap(),
        ]
        .concat();
        let scan1 = scan(&gap);
        assert_eq!(scan1.head(), 1);
        match scan1.problem {
            Some(Problem::Damaged {
                revision, detail, ..
            }) => {
                assert_eq!(revision, 2);
                assert!(detail.contains("revision 3"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let again = [
            encode_record(&record(1)).unwrap(),
            encode_record(&record(1)).unwrap(),
        ]
        .concat();
        assert!(matches!(
            scan(&again).problem,
            Some(Problem::Damaged { .. })
        ));
        let late_snapshot = [
            encode_record(&record(1)).unwrap(),
            encode_snapshot(&Snapshot {
                revision: 1,
                ..Snapshot::default()
            })
            .unwrap(),
        ]
        .concat();
        assert!(matches!(
            scan(&late_snapshot).problem,
            Some(Problem::Damaged { .. })
        ));
    }

    #[test]
    fn a_damaged_snapshot_is_named() {
        let snapshot = Snapshot {
            revision: 9,
            ..Snapshot::default()
        };
        let mut bytes = [
            encode_snapshot(&snapshot).unwrap(),
            encode_record(&record(10)).unwrap(),
        ]
        .concat();
        bytes[HEADER_BYTES + 15] ^= 0x01;
        match scan(&bytes).problem {
            Some(Problem::Damaged {
                offset,
                revision,
                detail,
                ..
            }) => {
                assert_eq!((offset, revision), (0, 9));
                assert!(detail.contains("snapshot"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
