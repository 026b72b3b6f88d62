//! Typed keys, reads, writes and transactions, and their conversion to and from the wire.

use super::EtcdError;
use super::pb::etcdserverpb as pb;
use super::pb::mvccpb;

/// One key as etcd stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty for a deleted key in a watch event).
    pub value: Vec<u8>,
    /// The store revision that created the key (0: it does not exist).
    pub create_revision: i64,
    /// The store revision of its last change.
    pub mod_revision: i64,
    /// Writes since it was created.
    pub version: i64,
    /// Its lease (0: none).
    pub lease: i64,
}

impl KeyValue {
    /// The key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.key).ok()
    }

    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

impl From<mvccpb::KeyValue> for KeyValue {
    fn from(kv: mvccpb::KeyValue) -> KeyValue {
        KeyValue {
            key: kv.key,
            value: kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// The end of the range of every key starting with `prefix`: the prefix with its last byte
/// below 0xff incremented (and what follows it dropped); `[0]` (every key) when there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One key, or the keys `[key, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRange {
    key: Vec<u8>,
    /// Empty: just `key`.
    end: Vec<u8>,
}

impl KeyRange {
    /// Just `key`.
    pub fn key(key: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: key.into(),
            end: Vec::new(),
        }
    }

    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> KeyRange {
        let key = prefix.into();
        let end = prefix_end(&key);
        KeyRange { key, end }
    }

    /// The keys from `from` (included) to `to` (excluded).
    pub fn between(from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) -> KeyRange {
        KeyRange {
            key: from.into(),
            end: to.into(),
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &[u8] {
        &self.key
    }

    /// The end of the range, excluded (empty: the range is one key).
    pub fn end(&self) -> &[u8] {
        &self.end
    }
}

/// A read of one key or a range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Get {
    range: KeyRange,
    limit: i64,
    revision: i64,
    keys_only: bool,
}

impl Get {
    /// The keys of `range`, newest state, with values.
    pub fn new(range: KeyRange) -> Get {
        Get {
            range,
            limit: 0,
            revision: 0,
            keys_only: false,
        }
    }

    /// At most `limit` keys (0: all).
    pub fn limit(mut self, limit: i64) -> Get {
        self.limit = limit;
        self
    }

    /// As of store revision `revision` (0: the newest).
    pub fn at_revision(mut self, revision: i64) -> Get {
        self.revision = revision;
        self
    }

    /// Keys and their revisions, without values.
    pub fn keys_only(mut self) -> Get {
        self.keys_only = true;
        self
    }

    /// The range read.
    pub fn range(&self) -> &KeyRange {
        &self.range
    }

    pub(super) fn to_pb(&self) -> pb::RangeRequest {
        pb::RangeRequest {
            key: self.range.key.clone(),
            range_end: self.range.end.clone(),
            limit: self.limit,
            revision: self.revision,
            serializable: false,
            keys_only: self.keys_only,
            count_only: false,
        }
    }

    /// The same read from `key` on (for the next page), as of `revision`.
    pub(super) fn continued(&self, key: Vec<u8>, revision: i64) -> Get {
        Get {
            range: KeyRange {
                key,
                end: self.range.end.clone(),
            },
            revision,
            ..self.clone()
        }
    }
}

/// What a read found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeResult {
    /// The store revision the read saw.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// Whether the range holds more keys than returned (a limit cut it).
    pub more: bool,
    /// How many keys the range holds.
    pub count: i64,
}

impl From<pb::RangeResponse> for RangeResult {
    fn from(r: pb::RangeResponse) -> RangeResult {
        RangeResult {
            revision: r.header.map_or(0, |h| h.revision),
            kvs: r.kvs.into_iter().map(KeyValue::from).collect(),
            more: r.more,
            count: r.count,
        }
    }
}

/// A write of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
    prev_kv: bool,
}

impl Put {
    /// `key` = `value`, on no lease.
    pub fn new(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Put {
        Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
            prev_kv: false,
        }
    }

    /// Attaches the key to lease `lease`: it is deleted when the lease ends.
    pub fn lease(mut self, lease: i64) -> Put {
        self.lease = lease;
        self
    }

    /// Also returns the key as it was before.
    pub fn prev_kv(mut self) -> Put {
        self.prev_kv = true;
        self
    }

    pub(super) fn to_pb(&self) -> pb::PutRequest {
        pb::PutRequest {
            key: self.key.clone(),
            value: self.value.clone(),
            lease: self.lease,
            prev_kv: self.prev_kv,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutResult {
    /// The store revision of the write.
    pub revision: i64,
    /// The key before, when asked for and it existed.
    pub prev: Option<KeyValue>,
}

impl From<pb::PutResponse> for PutResult {
    fn from(r: pb::PutResponse) -> PutResult {
        PutResult {
            revision: r.header.map_or(0, |h| h.revision),
            prev: r.prev_kv.map(KeyValue::from),
        }
    }
}

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResult {
    /// The store revision of the delete.
    pub revision: i64,
    /// How many keys were deleted.
    pub deleted: i64,
}

impl From<pb::DeleteRangeResponse> for DeleteResult {
    fn from(r: pb::DeleteRangeResponse) -> DeleteResult {
        DeleteResult {
            revision: r.header.map_or(0, |h| h.revision),
            deleted: r.deleted,
        }
    }
}

fn delete_pb(range: &KeyRange) -> pb::DeleteRangeRequest {
    pb::DeleteRangeRequest {
        key: range.key.clone(),
        range_end: range.end.clone(),
        prev_kv: false,
    }
}

/// How a compare relates the key's field to the operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// Equal to.
    Equal,
    /// Not equal to.
    NotEqual,
    /// Greater than.
    Greater,
    /// Less than.
    Less,
}

impl Cmp {
    fn to_pb(self) -> pb::compare::CompareResult {
        match self {
            Cmp::Equal => pb::compare::CompareResult::Equal,
            Cmp::NotEqual => pb::compare::CompareResult::NotEqual,
            Cmp::Greater => pb::compare::CompareResult::Greater,
            Cmp::Less => pb::compare::CompareResult::Less,
        }
    }
}

/// The field of a key a compare looks at, with its operand.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Version(i64),
    CreateRevision(i64),
    ModRevision(i64),
    Value(Vec<u8>),
}

/// One condition of a transaction. A key that does not exist has version, create revision and
/// mod revision 0 (and no value: a value compare on it fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    key: Vec<u8>,
    cmp: Cmp,
    target: Target,
}

impl Compare {
    /// Compares the key's number of writes since it was created.
    pub fn version(key: impl Into<Vec<u8>>, cmp: Cmp, version: i64) -> Compare {
        Compare {
            key: key.into(),
            cmp,
            target: Target::Version(version),
        }
    }

    /// Compares the store revision that created the key (0: absent).
    pub fn create_revision(key: impl Into<Vec<u8>>, cmp: Cmp, revision: i64) -> Compare {
        Compare {
            key: key.into(),
            cmp,
            target: Target::CreateRevision(revision),
        }
    }

    /// Compares the store revision of the key's last change (0: absent).
    pub fn mod_revision(key: impl Into<Vec<u8>>, cmp: Cmp, revision: i64) -> Compare {
        Compare {
            key: key.into(),
            cmp,
            target: Target::ModRevision(revision),
        }
    }

    /// Compares the key's value.
    pub fn value(key: impl Into<Vec<u8>>, cmp: Cmp, value: impl Into<Vec<u8>>) -> Compare {
        Compare {
            key: key.into(),
            cmp,
            target: Target::Value(value.into()),
        }
    }

    fn to_pb(&self) -> pb::Compare {
        use pb::compare::{CompareTarget, TargetUnion};
        let (target, operand) = match &self.target {
            Target::Version(v) => (CompareTarget::Version, TargetUnion::Version(*v)),
            Target::CreateRevision(r) => (CompareTarget::Create, TargetUnion::CreateRevision(*r)),
            Target::ModRevision(r) => (CompareTarget::Mod, TargetUnion::ModRevision(*r)),
            Target::Value(v) => (CompareTarget::Value, TargetUnion::Value(v.clone())),
        };
        pb::Compare {
            result: self.cmp.to_pb() as i32,
            target: target as i32,
            key: self.key.clone(),
            target_union: Some(operand),
            range_end: Vec::new(),
        }
    }
}

/// One operation of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A read.
    Get(Get),
    /// A write.
    Put(Put),
    /// A delete of one key or a range.
    Delete(KeyRange),
}

impl Op {
    fn to_pb(&self) -> pb::RequestOp {
        use pb::request_op::Request;
        let request = match self {
            Op::Get(get) => Request::RequestRange(get.to_pb()),
            Op::Put(put) => Request::RequestPut(put.to_pb()),
            Op::Delete(range) => Request::RequestDeleteRange(delete_pb(range)),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }
}

/// A transaction: if every compare holds, the success operations run, otherwise the failure
/// operations; atomically, at one store revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    compares: Vec<Compare>,
    success: Vec<Op>,
    failure: Vec<Op>,
}

impl Txn {
    /// An empty transaction (no compare: the success operations run).
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Adds conditions.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Txn {
        self.compares.extend(compares);
        self
    }

    /// Adds operations that run when every condition holds.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.success.extend(ops);
        self
    }

    /// Adds operations that run when a condition fails.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = Op>) -> Txn {
        self.failure.extend(ops);
        self
    }

    pub(super) fn to_pb(&self) -> pb::TxnRequest {
        pb::TxnRequest {
            compare: self.compares.iter().map(Compare::to_pb).collect(),
            success: self.success.iter().map(Op::to_pb).collect(),
            failure: self.failure.iter().map(Op::to_pb).collect(),
        }
    }
}

/// The answer of one transaction operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// A read's.
    Range(RangeResult),
    /// A write's.
    Put(PutResult),
    /// A delete's.
    Delete(DeleteResult),
}

impl OpResult {
    /// The read's answer, if this was a read.
    pub fn as_range(&self) -> Option<&RangeResult> {
        match self {
            OpResult::Range(r) => Some(r),
            _ => None,
        }
    }
}

/// What a transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnResult {
    /// Whether every compare held (so the success operations ran).
    pub succeeded: bool,
    /// The store revision of the transaction (of its writes, if it wrote).
    pub revision: i64,
    /// The answers of the operations that ran, in order.
    pub responses: Vec<OpResult>,
}

impl TxnResult {
    /// The answer of read number `index` among the operations that ran.
    pub fn range(&self, index: usize) -> Option<&RangeResult> {
        self.responses.get(index).and_then(OpResult::as_range)
    }
}

impl TryFrom<pb::TxnResponse> for TxnResult {
    type Error = EtcdError;

    fn try_from(r: pb::TxnResponse) -> Result<TxnResult, EtcdError> {
        use pb::response_op::Response;
        let responses = r
            .responses
            .into_iter()
            .map(|op| match op.response {
                Some(Response::ResponseRange(r)) => Ok(OpResult::Range(r.into())),
                Some(Response::ResponsePut(r)) => Ok(OpResult::Put(r.into())),
                Some(Response::ResponseDeleteRange(r)) => Ok(OpResult::Delete(r.into())),
                None => Err(EtcdError::Protocol(
                    "a transaction answer without its operation's result".into(),
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(TxnResult {
            succeeded: r.succeeded,
            revision: r.header.map_or(0, |h| h.revision),
            responses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"ab\xff"), b"ac".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
        let range = KeyRange::prefix("/flagd/journal/");
        assert_eq!(range.start(), b"/flagd/journal/");
        assert_eq!(range.end(), b"/flagd/journal0");
        assert!(KeyRange::key("k").end().is_empty());
    }

    #[test]
    fn a_transaction_goes_on_the_wire_as_etcd_reads_it() {
        use pb::compare::{CompareResult, CompareTarget, TargetUnion};
        let txn = Txn::new()
            .when([
                Compare::mod_revision("/p/head", Cmp::Equal, 7),
                Compare::create_revision("/p/controller", Cmp::Equal, 3),
            ])
            .and_then([
                Op::Put(Put::new("/p/head", "2").lease(9)),
                Op::Delete(KeyRange::prefix("/p/journal/")),
            ])
            .or_else([Op::Get(Get::new(KeyRange::key("/p/head")))]);
        let wire = txn.to_pb();
        assert_eq!(wire.compare.len(), 2);
        assert_eq!(wire.compare[0].result, CompareResult::Equal as i32);
        assert_eq!(wire.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(
            wire.compare[0].target_union,
            Some(TargetUnion::ModRevision(7))
        );
        assert_eq!(wire.compare[1].target, CompareTarget::Create as i32);
        assert_eq!(
            wire.compare[1].target_union,
            Some(TargetUnion::CreateRevision(3))
        );
        let Some(pb::request_op::Request::RequestPut(put)) = &wire.success[0].request else {
            panic!("{wire:?}");
        };
        assert_eq!((put.key.as_slice(), put.lease), (&b"/p/head"[..], 9));
        let Some(pb::request_op::Request::RequestDeleteRange(delete)) = &wire.success[1].request
        else {
            panic!("{wire:?}");
        };
        assert_eq!(delete.range_end, b"/p/journal0".to_vec());
        assert_eq!(wire.failure.len(), 1);
    }

    #[test]
    fn a_transaction_answer_is_read_back() {
        use pb::response_op::Response;
        let answer = pb::TxnResponse {
            header: Some(pb::ResponseHeader {
                revision: 12,
                ..Default::default()
            }),
            succeeded: false,
            responses: vec![pb::ResponseOp {
                response: Some(Response::ResponseRange(pb::RangeResponse {
                    header: None,
                    kvs: vec![mvccpb::KeyValue {
                        key: b"/p/head".to_vec(),
                        value: b"4".to_vec(),
                        mod_revision: 11,
                        ..Default::default()
                    }],
                    more: false,
                    count: 1,
                })),
            }],
        };
        let result = TxnResult::try_from(answer).unwrap();
        assert!(!result.succeeded);
        assert_eq!(result.revision, 12);
        let head = &result.range(0).unwrap().kvs[0];
        assert_eq!((head.value_str(), head.mod_revision), (Some("4"), 11));
        let broken = pb::TxnResponse {
            responses: vec![pb::ResponseOp { response: None }],
            ..Default::default()
        };
        assert!(TxnResult::try_from(broken).is_err());
    }
}
