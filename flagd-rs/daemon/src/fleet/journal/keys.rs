//! Where the journal lives under the fleet's prefix, and how its values are written.
//!
//! - `PREFIX/head` — the dense head revision, in decimal. Its mod revision is what every
//!   append compares on.
//! - `PREFIX/journal/<seq>` — one [`RevisionInfo`] as JSON per revision after the snapshot,
//!   `seq` zero-padded to 20 digits so that keys sort by number.
//! - `PREFIX/snapshot` — the compacted state ([`Snapshot`] JSON), once the journal was
//!   compacted.
//! - `PREFIX/archive/<first>-<last>` — the revisions one compaction moved out of the journal:
//!   `{"snapshot": <the snapshot they followed, or null>, "records": [...]}`, so that the state
//!   before any archived revision can be rebuilt (restores to archived revisions need it).
//! - `PREFIX/controller` — the rollout controller's leader key (fences rollout records).

use std::path::PathBuf;

use serde::Deserialize;

use crate::authority::journal::{JournalError, Replay, RevisionInfo, Segment, Snapshot};
use crate::fleet::etcd::{KeyRange, KeyValue, prefix_end};

/// The keys of one fleet's journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    head: String,
    snapshot: String,
    journal: String,
    archive: String,
    controller: String,
}

/// What a key under the prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// `PREFIX/head`.
    Head,
    /// `PREFIX/snapshot`.
    Snapshot,
    /// `PREFIX/journal/<seq>`.
    Record(u64),
    /// `PREFIX/archive/<first>-<last>`.
    Archive(Segment),
    /// Anything else (the controller, replicas, verbs, or a malformed journal key).
    Other,
}

impl Keys {
    /// The keys under `prefix`, which must start with `/` and not end with one (as
    /// [`StoreUrl`](crate::fleet::url::StoreUrl) gives it).
    pub fn new(prefix: &str) -> Result<Keys, JournalError> {
        if !prefix.starts_with('/') || prefix.ends_with('/') || prefix.len() < 2 {
            return Err(JournalError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the store's key prefix `{prefix}` must start with `/` and not end with one"
                ),
            )));
        }
        Ok(Keys {
            prefix: prefix.to_owned(),
            head: format!("{prefix}/head"),
            snapshot: format!("{prefix}/snapshot"),
            journal: format!("{prefix}/journal/"),
            archive: format!("{prefix}/archive/"),
            controller: format!("{prefix}/controller"),
        })
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every key of the fleet: `PREFIX/...`.
    pub fn all(&self) -> KeyRange {
        KeyRange::prefix(format!("{}/", self.prefix))
    }

    /// `PREFIX/head`.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// `PREFIX/snapshot`.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// `PREFIX/controller`: the rollout controller's leader key.
    pub fn controller(&self) -> &str {
        &self.controller
    }

    /// `PREFIX/journal/`.
    pub fn journal_prefix(&self) -> &str {
        &self.journal
    }

    /// The key of revision `revision`.
    pub fn record(&self, revision: u64) -> String {
        format!("{}{revision:020}", self.journal)
    }

    /// The records from `from` on.
    pub fn records_from(&self, from: u64) -> KeyRange {
        KeyRange::between(
            self.record(from.max(1)),
            prefix_end(self.journal.as_bytes()),
        )
    }

    /// The records `first..=last`.
    pub fn records(&self, first: u64, last: u64) -> KeyRange {
        KeyRange::between(self.record(first), self.record(last.saturating_add(1)))
    }

    /// `PREFIX/archive/`.
    pub fn archive_prefix(&self) -> &str {
        &self.archive
    }

    /// The key of archive segment `segment`.
    pub fn archive(&self, segment: &Segment) -> String {
        format!("{}{:020}-{:020}", self.archive, segment.first, segment.last)
    }

    /// What `key` is.
    pub fn kind(&self, key: &[u8]) -> KeyKind {
        let Ok(key) = std::str::from_utf8(key) else {
            return KeyKind::Other;
        };
        if key == self.head {
            KeyKind::Head
        } else if key == self.snapshot {
            KeyKind::Snapshot
        } else if let Some(seq) = key.strip_prefix(&self.journal) {
            number(seq).map_or(KeyKind::Other, KeyKind::Record)
        } else if let Some(range) = key.strip_prefix(&self.archive) {
            range
                .split_once('-')
                .and_then(|(first, last)| {
                    let segment = Segment {
                        first: number(first)?,
                        last: number(last)?,
                    };
                    (segment.first >= 1 && segment.first <= segment.last).then_some(segment)
                })
                .map_or(KeyKind::Other, KeyKind::Archive)
        } else {
            KeyKind::Other
        }
    }
}

/// A 20-digit zero-padded number.
fn number(text: &str) -> Option<u64> {
    (text.len() == 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// The error for a value under `key` that does not read as it should.
pub(super) fn inconsistent(key: &[u8], detail: impl Into<String>) -> JournalError {
    JournalError::Inconsistent {
        path: PathBuf::from(format!("etcd key {}", String::from_utf8_lossy(key))),
        detail: detail.into(),
    }
}

/// The head revision in `kv`.
pub(super) fn decode_head(kv: &KeyValue) -> Result<u64, JournalError> {
    kv.value_str()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| inconsistent(&kv.key, "the head is not a revision number"))
}

/// The revision stored under record key `kv`, which must be revision `seq`.
pub(super) fn decode_record(kv: &KeyValue, seq: u64) -> Result<RevisionInfo, JournalError> {
    let record: RevisionInfo = serde_json::from_slice(&kv.value)
        .map_err(|e| inconsistent(&kv.key, format!("the revision does not read: {e}")))?;
    if record.revision != seq {
        return Err(inconsistent(
            &kv.key,
            format!("the key holds revision {}", record.revision),
        ));
    }
    Ok(record)
}

/// The snapshot in `kv`.
pub(super) fn decode_snapshot(kv: &KeyValue) -> Result<Snapshot, JournalError> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| inconsistent(&kv.key, format!("the snapshot does not read: {e}")))
}

/// A record as stored.
pub(super) fn encode_record(record: &RevisionInfo) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(record).map_err(|e| JournalError::Io(e.into()))
}

/// A snapshot as stored.
pub(super) fn encode_snapshot(snapshot: &Snapshot) -> Result<Vec<u8>, JournalError> {
    serde_json::to_vec(snapshot).map_err(|e| JournalError::Io(e.into()))
}

/// An archive segment's value, from the stored bytes of the snapshot it follows and of its
/// records (each already valid JSON: they were read as such).
pub(super) fn encode_archive(snapshot: Option<&[u8]>, records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 64);
    out.extend_from_slice(b"{\"snapshot\":");
    out.extend_from_slice(snapshot.unwrap_or(b"null"));
    out.extend_from_slice(b",\"records\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(record);
    }
    out.extend_from_slice(b"]}");
    out
}

#[derive(Deserialize)]
struct Archived {
    #[serde(default)]
    snapshot: Option<Snapshot>,
    records: Vec<RevisionInfo>,
}

/// Archive segment `segment` from its key-value: it must hold exactly its revisions.
pub(super) fn decode_archive(kv: &KeyValue, segment: &Segment) -> Result<Replay, JournalError> {
    let archived: Archived = serde_json::from_slice(&kv.value)
        .map_err(|e| inconsistent(&kv.key, format!("the archive segment does not read: {e}")))?;
    let dense = archived
        .records
        .iter()
        .zip(segment.first..)
        .all(|(r, expected)| r.revision == expected);
    let count = segment.last - segment.first + 1;
    if !dense || archived.records.len() as u64 != count {
        return Err(inconsistent(
            &kv.key,
            format!(
                "the archive segment should hold revisions {}..={}",
                segment.first, segment.last
            ),
        ));
    }
    let base = archived.snapshot.as_ref().map_or(0, |s| s.revision);
    if base + 1 != segment.first {
        return Err(inconsistent(
            &kv.key,
            format!(
                "the archive segment starts at revision {} but follows a snapshot at {base}",
                segment.first
            ),
        ));
    }
    Ok(Replay {
        snapshot: archived.snapshot,
        records: archived.records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::journal::RevisionKind;

    pub(crate) fn record(revision: u64) -> RevisionInfo {
        RevisionInfo {
            revision,
            time: "2025-01-01T00:00:00.000Z".into(),
            actor: "test".into(),
            reason: format!("change {revision}"),
            kind: RevisionKind::Set,
            flag: Some("f".into()),
            changes: Vec::new(),
            restored: None,
            event: None,
        }
    }

    #[test]
    fn keys_sort_by_number_and_read_back() {
        let keys = Keys::new("/flagd/prod").unwrap();
        assert_eq!(keys.head(), "/flagd/prod/head");
        assert_eq!(keys.record(7), "/flagd/prod/journal/00000000000000000007");
        assert!(keys.record(9) < keys.record(10));
        assert_eq!(keys.kind(keys.record(42).as_bytes()), KeyKind::Record(42));
        let segment = Segment { first: 3, last: 9 };
        assert_eq!(
            keys.kind(keys.archive(&segment).as_bytes()),
            KeyKind::Archive(segment)
        );
        assert_eq!(keys.kind(b"/flagd/prod/head"), KeyKind::Head);
        assert_eq!(keys.kind(b"/flagd/prod/snapshot"), KeyKind::Snapshot);
        assert_eq!(keys.kind(b"/flagd/prod/controller"), KeyKind::Other);
        assert_eq!(keys.kind(b"/flagd/prod/journal/7"), KeyKind::Other);
        assert_eq!(keys.kind(b"/flagd/prodx/head"), KeyKind::Other);
        let range = keys.records(3, 5);
        assert_eq!(range.start(), keys.record(3).as_bytes());
        assert_eq!(range.end(), keys.record(6).as_bytes());
        for bad in ["", "/", "flagd", "/flagd/"] {
            assert!(Keys::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn archives_round_trip_and_are_checked() {
        let keys = Keys::new("/p").unwrap();
        let snapshot = Snapshot {
            revision: 2,
            ..Snapshot::default()
        };
        let snapshot_bytes = serde_json::to_vec(&snapshot).unwrap();
        let records: Vec<Vec<u8>> = (3..=5)
            .map(|r| encode_record(&record(r)).unwrap())
            .collect();
        let raw: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let segment = Segment { first: 3, last: 5 };
        let kv = KeyValue {
            key: keys.archive(&segment).into_bytes(),
            value: encode_archive(Some(&snapshot_bytes), &raw),
            ..KeyValue::default()
        };
        let replay = decode_archive(&kv, &segment).unwrap();
        assert_eq!(replay.snapshot, Some(snapshot));
        assert_eq!(replay.records, (3..=5).map(record).collect::<Vec<_>>());
        let wrong = Segment { first: 3, last: 6 };
        assert!(decode_archive(&kv, &wrong).is_err());

        let first = Segment { first: 1, last: 1 };
        let one = encode_record(&record(1)).unwrap();
        let kv = KeyValue {
            key: keys.archive(&first).into_bytes(),
            value: encode_archive(None, &[&one]),
            ..KeyValue::default()
        };
        assert_eq!(
            decode_archive(&kv, &first).unwrap().records,
            vec![record(1)]
        );
    }

    #[test]
    fn values_that_do_not_read_name_their_key() {
        let kv = KeyValue {
            key: b"/p/journal/00000000000000000003".to_vec(),
            value: encode_record(&record(4)).unwrap(),
            ..KeyValue::default()
        };
        let err = decode_record(&kv, 3).unwrap_err().to_string();
        assert!(err.contains("/p/journal/00000000000000000003"), "{err}");
        assert!(err.contains("revision 4"), "{err}");
        let head = KeyValue {
            key: b"/p/head".to_vec(),
            value: b"x".to_vec(),
            ..KeyValue::default()
        };
        assert!(decode_head(&head).is_err());
    }
}
