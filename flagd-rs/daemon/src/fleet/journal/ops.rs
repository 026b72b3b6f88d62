//! The journal's operations on etcd, as async functions: reading the whole journal, the
//! append and compaction transactions, and reads of older revisions.

use crate::authority::journal::{JournalError, Replay, RevisionInfo, Segment, Snapshot};
use crate::fleet::etcd::{
    Cmp, Compare, EtcdClient, EtcdError, Get, KeyRange, KeyValue, Op, Put, RangeResult, Txn,
};

use super::Fence;
use super::keys::{
    KeyKind, Keys, decode_archive, decode_head, decode_record, decode_snapshot, encode_archive,
    inconsistent,
};
use super::state::Listing;

/// Reads that land on a revision etcd compacted meanwhile are tried this many times.
const READ_ATTEMPTS: usize = 3;

/// A store failure as a journal error: unreachable (or refusing our credentials) is
/// `Unavailable`; anything else etcd refused is an I/O error with etcd's words.
pub(super) fn store_error(e: EtcdError) -> JournalError {
    match e {
        EtcdError::Unavailable(m) | EtcdError::Auth(m) | EtcdError::Compacted(m) => {
            JournalError::Unavailable(m)
        }
        other => JournalError::Io(std::io::Error::other(other.to_string())),
    }
}

/// Why a read failed: etcd compacted the revision it was reading at (try again), or
/// anything else.
enum ReadFailure {
    Compacted(EtcdError),
    Failed(JournalError),
}

impl From<EtcdError> for ReadFailure {
    fn from(e: EtcdError) -> ReadFailure {
        match e {
            EtcdError::Compacted(_) => ReadFailure::Compacted(e),
            other => ReadFailure::Failed(store_error(other)),
        }
    }
}

impl From<JournalError> for ReadFailure {
    fn from(e: JournalError) -> ReadFailure {
        ReadFailure::Failed(e)
    }
}

/// Runs `read` until it does not land on a compacted revision (a few times at most).
async fn retry_compacted<T, F, Fut>(read: F) -> Result<T, JournalError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ReadFailure>>,
{
    let mut last = None;
    for _ in 0..READ_ATTEMPTS {
        match read().await {
            Ok(value) => return Ok(value),
            Err(ReadFailure::Failed(e)) => return Err(e),
            Err(ReadFailure::Compacted(e)) => last = Some(e),
        }
    }
    Err(store_error(last.unwrap_or_else(|| {
        EtcdError::Unavailable("etcd compacted the revisions being read".into())
    })))
}

/// The whole live journal (head, snapshot, records, archive segment list), as of one etcd
/// revision.
pub(super) async fn list(client: &EtcdClient, keys: &Keys) -> Result<Listing, JournalError> {
    retry_compacted(|| try_list(client, keys)).await
}

async fn try_list(client: &EtcdClient, keys: &Keys) -> Result<Listing, ReadFailure> {
    let journal = client
        .range_all(Get::new(KeyRange::prefix(keys.journal_prefix())))
        .await?;
    let at = journal.revision;
    let one = |key: &str| Get::new(KeyRange::key(key)).at_revision(at);
    let head = client.range(one(keys.head())).await?.kvs.into_iter().next();
    let snapshot = client
        .range(one(keys.snapshot()))
        .await?
        .kvs
        .into_iter()
        .next();
    let archives = client
        .range_all(
            Get::new(KeyRange::prefix(keys.archive_prefix()))
                .at_revision(at)
                .keys_only(),
        )
        .await?;
    Ok(listing(keys, at, head, snapshot, &journal, &archives)?)
}

/// Checks and assembles what [`try_list`] read.
fn listing(
    keys: &Keys,
    at: i64,
    head: Option<KeyValue>,
    snapshot: Option<KeyValue>,
    journal: &RangeResult,
    archives: &RangeResult,
) -> Result<Listing, JournalError> {
    let (head_revision, head_mod) = match &head {
        Some(kv) => (decode_head(kv)?, kv.mod_revision),
        None => (0, 0),
    };
    let (snapshot, snapshot_mod) = match &snapshot {
        Some(kv) => (Some(decode_snapshot(kv)?), kv.mod_revision),
        None => (None, 0),
    };
    let base = snapshot.as_ref().map_or(0, |s| s.revision);
    let mut records = Vec::with_capacity(journal.kvs.len());
    let mut live_bytes = 0u64;
    for kv in &journal.kvs {
        let KeyKind::Record(seq) = keys.kind(&kv.key) else {
            return Err(inconsistent(&kv.key, "not a journal record key"));
        };
        let expected = base + 1 + records.len() as u64;
        if seq != expected {
            return Err(inconsistent(
                &kv.key,
                format!("the journal should continue with revision {expected} here"),
            ));
        }
        records.push(decode_record(kv, seq)?);
        live_bytes += kv.value.len() as u64;
    }
    let last = records.last().map_or(base, |r| r.revision);
    if last != head_revision {
        return Err(inconsistent(
            keys.head().as_bytes(),
            format!("the head says revision {head_revision} but the journal ends at {last}"),
        ));
    }
    let mut segments = Vec::new();
    for kv in &archives.kvs {
        match keys.kind(&kv.key) {
            KeyKind::Archive(segment) => segments.push(segment),
            _ => return Err(inconsistent(&kv.key, "not an archive segment key")),
        }
    }
    Ok(Listing {
        revision: at,
        replay: Replay { snapshot, records },
        head_mod,
        snapshot_mod,
        segments,
        live_bytes,
    })
}

/// What an append transaction found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Appended {
    /// The record is stored; the head key's new mod revision.
    Done { head_mod: i64 },
    /// An earlier attempt of the same transaction stored the record; the head is now `head`
    /// (as of `head_mod`).
    AlreadyStored { head: u64, head_mod: i64 },
    /// The head was not the one expected: it is `head` (as of `head_mod`).
    Conflict { head: u64, head_mod: i64 },
    /// The fence no longer holds: another replica leads the rollouts.
    NotLeader,
}

/// Appends `value` (revision `revision`) if the head key is still at `head_mod` (and, with a
/// fence, the leader key still has the fence's create revision).
pub(super) async fn append(
    client: &EtcdClient,
    keys: &Keys,
    head_mod: i64,
    revision: u64,
    value: Vec<u8>,
    fence: Option<Fence>,
) -> Result<Appended, JournalError> {
    let record_key = keys.record(revision);
    let on_head = if head_mod == 0 {
        Compare::create_revision(keys.head(), Cmp::Equal, 0)
    } else {
        Compare::mod_revision(keys.head(), Cmp::Equal, head_mod)
    };
    let mut compares = vec![on_head];
    let mut reads = vec![
        Op::Get(Get::new(KeyRange::key(keys.head()))),
        Op::Get(Get::new(KeyRange::key(record_key.clone()))),
    ];
    if let Some(fence) = &fence {
        compares.push(Compare::create_revision(
            fence.key.clone(),
            Cmp::Equal,
            fence.create_revision,
        ));
        reads.push(Op::Get(Get::new(KeyRange::key(fence.key.clone()))));
    }
    let txn = Txn::new()
        .when(compares)
        .and_then([
            Op::Put(Put::new(keys.head(), revision.to_string())),
            Op::Put(Put::new(record_key, value.clone())),
        ])
        .or_else(reads);
    let result = client.txn(txn).await.map_err(store_error)?;
    if result.succeeded {
        return Ok(Appended::Done {
            head_mod: result.revision,
        });
    }
    let first = |index: usize| result.range(index).and_then(|r| r.kvs.first());
    let (head, head_mod) = match first(0) {
        Some(kv) => (decode_head(kv)?, kv.mod_revision),
        None => (0, 0),
    };
    // A member that timed out may have applied an earlier attempt of this very transaction
    // before the client moved on: then the record is there, byte for byte.
    if let Some(stored) = first(1)
        && stored.value == value
        && head >= revision
    {
        return Ok(Appended::AlreadyStored { head, head_mod });
    }
    if let Some(fence) = &fence {
        let holder = first(2).map_or(0, |kv| kv.create_revision);
        if holder != fence.create_revision {
            return Ok(Appended::NotLeader);
        }
    }
    Ok(Appended::Conflict { head, head_mod })
}

/// What the journal expects the store to hold when it compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Expected {
    pub base: u64,
    pub head: u64,
    pub head_mod: i64,
    pub snapshot_mod: i64,
}

/// What a compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Compacted {
    /// The journal now starts from the snapshot (stored at `snapshot_mod`); `segment` holds
    /// the revisions it replaced.
    Done { snapshot_mod: i64, segment: Segment },
    /// The head moved on: it is `head` (as of `head_mod`).
    HeadMoved { head: u64, head_mod: i64 },
    /// Another writer compacted first.
    ByAnother,
}

/// Moves revisions `base+1..=head` into an archive segment and stores `snapshot` (taken at
/// `head`), in one transaction compared on the head and the snapshot.
pub(super) async fn compact(
    client: &EtcdClient,
    keys: &Keys,
    expected: Expected,
    snapshot: &Snapshot,
) -> Result<Compacted, JournalError> {
    let Expected {
        base,
        head,
        head_mod,
        snapshot_mod,
    } = expected;
    let on_store = |head_mod: i64, snapshot_mod: i64| {
        let on_snapshot = if snapshot_mod == 0 {
            Compare::create_revision(keys.snapshot(), Cmp::Equal, 0)
        } else {
            Compare::mod_revision(keys.snapshot(), Cmp::Equal, snapshot_mod)
        };
        [
            Compare::mod_revision(keys.head(), Cmp::Equal, head_mod),
            on_snapshot,
        ]
    };
    let heads = || {
        [
            Op::Get(Get::new(KeyRange::key(keys.head()))),
            Op::Get(Get::new(KeyRange::key(keys.snapshot()))),
        ]
    };
    // Read what moves, at one revision, only if the store is as expected.
    let read = Txn::new()
        .when(on_store(head_mod, snapshot_mod))
        .and_then(
            heads()
                .into_iter()
                .chain([Op::Get(Get::new(keys.records(base + 1, head)))]),
        )
        .or_else(heads());
    let found = client.txn(read).await.map_err(store_error)?;
    if !found.succeeded {
        return moved(&found, head);
    }
    let old_snapshot = found
        .range(1)
        .and_then(|r| r.kvs.first())
        .map(|kv| kv.value.as_slice());
    let records = found.range(2).map_or(&[][..], |r| r.kvs.as_slice());
    for (kv, expected) in records.iter().zip(base + 1..) {
        if keys.kind(&kv.key) != KeyKind::Record(expected) {
            return Err(inconsistent(
                &kv.key,
                format!("the journal should continue with revision {expected} here"),
            ));
        }
    }
    if records.len() as u64 != head - base {
        return Err(inconsistent(
            keys.journal_prefix().as_bytes(),
            format!(
                "the journal should hold revisions {}..={head} but holds {}",
                base + 1,
                records.len()
            ),
        ));
    }
    let segment = Segment {
        first: base + 1,
        last: head,
    };
    let raw: Vec<&[u8]> = records.iter().map(|kv| kv.value.as_slice()).collect();
    let archive = encode_archive(old_snapshot, &raw);
    let write = Txn::new()
        .when(on_store(head_mod, snapshot_mod))
        .and_then([
            Op::Put(Put::new(
                keys.snapshot(),
                super::keys::encode_snapshot(snapshot)?,
            )),
            Op::Put(Put::new(keys.archive(&segment), archive)),
            Op::Delete(keys.records(segment.first, segment.last)),
        ])
        .or_else(heads());
    let written = client.txn(write).await.map_err(store_error)?;
    if written.succeeded {
        return Ok(Compacted::Done {
            snapshot_mod: written.revision,
            segment,
        });
    }
    moved(&written, head)
}

/// Why a compaction's compares failed, from the head and snapshot it read instead.
fn moved(result: &crate::fleet::etcd::TxnResult, head: u64) -> Result<Compacted, JournalError> {
    match result.range(0).and_then(|r| r.kvs.first()) {
        Some(kv) => {
            let now = decode_head(kv)?;
            if now == head {
                Ok(Compacted::ByAnother)
            } else {
                Ok(Compacted::HeadMoved {
                    head: now,
                    head_mod: kv.mod_revision,
                })
            }
        }
        None => Ok(Compacted::HeadMoved {
            head: 0,
            head_mod: 0,
        }),
    }
}

/// Every revision from `revision` on, archived ones included, as of one etcd revision.
pub(super) async fn read_from(
    client: &EtcdClient,
    keys: &Keys,
    revision: u64,
) -> Result<Vec<RevisionInfo>, JournalError> {
    retry_compacted(|| try_read_from(client, keys, revision)).await
}

async fn try_read_from(
    client: &EtcdClient,
    keys: &Keys,
    revision: u64,
) -> Result<Vec<RevisionInfo>, ReadFailure> {
    let live = client
        .range_all(Get::new(keys.records_from(revision)))
        .await?;
    let at = live.revision;
    let archives = client
        .range_all(
            Get::new(KeyRange::prefix(keys.archive_prefix()))
                .at_revision(at)
                .keys_only(),
        )
        .await?;
    let mut out = Vec::new();
    for kv in &archives.kvs {
        let KeyKind::Archive(segment) = keys.kind(&kv.key) else {
            continue;
        };
        if segment.last < revision {
            continue;
        }
        let stored = client
            .range(Get::new(KeyRange::key(kv.key.clone())).at_revision(at))
            .await?;
        let Some(stored) = stored.kvs.first() else {
            return Err(ReadFailure::Failed(JournalError::Missing {
                revision: segment.first,
            }));
        };
        let part = decode_archive(stored, &segment)?;
        out.extend(part.records.into_iter().filter(|r| r.revision >= revision));
    }
    for kv in &live.kvs {
        if let KeyKind::Record(seq) = keys.kind(&kv.key) {
            out.push(decode_record(kv, seq)?);
        }
    }
    Ok(out)
}

/// Archive segment `segment`: the snapshot it follows and its revisions.
pub(super) async fn read_segment(
    client: &EtcdClient,
    keys: &Keys,
    segment: Segment,
) -> Result<Replay, JournalError> {
    let key = keys.archive(&segment);
    match client.get(key).await.map_err(store_error)? {
        Some(kv) => decode_archive(&kv, &segment),
        None => Err(JournalError::Missing {
            revision: segment.first,
        }),
    }
}
