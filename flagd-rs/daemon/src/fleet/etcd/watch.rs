//! Watches: one bidirectional stream per watch, created on whichever member answers, with
//! etcd's require-leader metadata so that a member cut off from its raft leader ends the
//! stream instead of going quiet.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use super::client::{Attempt, MAX_MESSAGE, describe};
use super::error::Failure;
use super::kv::{KeyRange, KeyValue};
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::watch_client::WatchClient;
use super::pb::mvccpb;
use super::{EtcdClient, EtcdError};

/// The metadata key of etcd's require-leader option, and its value.
pub(super) const REQUIRE_LEADER: (&str, &str) = ("hasleader", "true");

/// The metadata of a stream that must end when its member loses the raft leader.
pub(super) fn require_leader() -> MetadataMap {
    let mut metadata = MetadataMap::new();
    metadata.insert(
        REQUIRE_LEADER.0,
        AsciiMetadataValue::from_static(REQUIRE_LEADER.1),
    );
    metadata
}

/// What to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchOptions {
    range: KeyRange,
    start_revision: i64,
    prev_kv: bool,
    progress_notify: bool,
}

impl WatchOptions {
    /// The changes of `range` from now on.
    pub fn new(range: KeyRange) -> WatchOptions {
        WatchOptions {
            range,
            start_revision: 0,
            prev_kv: false,
            progress_notify: false,
        }
    }

    /// From store revision `revision` on (included), history first.
    pub fn start_revision(mut self, revision: i64) -> WatchOptions {
        self.start_revision = revision;
        self
    }

    /// With each key as it was before the change.
    pub fn prev_kv(mut self) -> WatchOptions {
        self.prev_kv = true;
        self
    }

    /// With an empty answer now and then while nothing changes.
    pub fn progress_notify(mut self) -> WatchOptions {
        self.progress_notify = true;
        self
    }

    fn create_request(&self) -> pb::WatchRequest {
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: self.range.start().to_vec(),
                    range_end: self.range.end().to_vec(),
                    start_revision: self.start_revision,
                    progress_notify: self.progress_notify,
                    prev_kv: self.prev_kv,
                    watch_id: 0,
                },
            )),
        }
    }
}

/// What changed about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Created or written.
    Put,
    /// Deleted.
    Delete,
}

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// A put or a delete.
    pub kind: EventKind,
    /// The key after the change (for a delete: the key and the delete's revision).
    pub kv: KeyValue,
    /// The key before the change, when asked for (and not compacted away).
    pub prev_kv: Option<KeyValue>,
}

/// One answer of a watch: events of one or more whole store revisions, or news about the
/// watch itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The store revision when the answer was sent. In an answer without events (a progress
    /// note) etcd promises no later event has a lower revision, but etcd 3.4 may send it
    /// before the events of earlier revisions: resume watches from event revisions only.
    pub revision: i64,
    /// The watch the answer belongs to (-1 in etcd 3.4's answer to a progress request).
    pub watch_id: i64,
    /// The answer to the creation.
    pub created: bool,
    /// The watch ended; nothing more comes for it.
    pub canceled: bool,
    /// Why it ended, in etcd's words.
    pub cancel_reason: String,
    /// When the start revision was compacted away: the oldest revision still held. The watch
    /// is over; the state must be read again.
    pub compact_revision: i64,
    /// The changes, in revision order.
    pub events: Vec<Event>,
}

impl WatchResponse {
    /// Whether this is only a progress note (nothing changed, the watch goes on).
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled && self.compact_revision == 0
    }
}

impl From<mvccpb::Event> for Event {
    fn from(e: mvccpb::Event) -> Event {
        let kind = match mvccpb::event::EventType::try_from(e.r#type) {
            Ok(mvccpb::event::EventType::Delete) => EventKind::Delete,
            _ => EventKind::Put,
        };
        Event {
            kind,
            kv: e.kv.map(KeyValue::from).unwrap_or_default(),
            prev_kv: e.prev_kv.map(KeyValue::from),
        }
    }
}

impl From<pb::WatchResponse> for WatchResponse {
    fn from(r: pb::WatchResponse) -> WatchResponse {
        WatchResponse {
            revision: r.header.map_or(0, |h| h.revision),
            watch_id: r.watch_id,
            created: r.created,
            canceled: r.canceled,
            cancel_reason: r.cancel_reason,
            compact_revision: r.compact_revision,
            events: r.events.into_iter().map(Event::from).collect(),
        }
    }
}

/// One live watch. Its answers come from [`Watcher::message`] or as a [`Stream`]; the stream
/// ends with an error when the member fails, loses its leader, or the watch is cancelled.
/// Dropping it ends the watch.
pub struct Watcher {
    requests: mpsc::Sender<pb::WatchRequest>,
    responses: tonic::Streaming<pb::WatchResponse>,
    watch_id: i64,
    member: usize,
    client: EtcdClient,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("watch_id", &self.watch_id)
            .field("member", &self.client.address(self.member))
            .finish_non_exhaustive()
    }
}

impl EtcdClient {
    /// Starts a watch (require-leader) on the first member that creates it within the call
    /// deadline. A start revision older than etcd's last compaction is
    /// [`EtcdError::Compacted`].
    pub async fn watch(&self, options: WatchOptions) -> Result<Watcher, EtcdError> {
        let deadline = Instant::now() + self.timeout();
        let create = options.create_request();
        let call = |attempt: Attempt| {
            let create = create.clone();
            async move {
                // The first request goes before the call: etcd sends its headers only with its
                // first answer, the creation.
                let (requests, receiver) = mpsc::channel(8);
                requests
                    .send(create)
                    .await
                    .map_err(|_| Status::internal("the watch request channel closed"))?;
                let mut request = tonic::Request::new(ReceiverStream::new(receiver));
                *request.metadata_mut() = attempt.metadata;
                let mut responses = WatchClient::new(attempt.channel)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .watch(request)
                    .await?
                    .into_inner();
                loop {
                    match responses.message().await? {
                        Some(created) if created.created => {
                            return Ok((requests, responses, created));
                        }
                        Some(_) => {}
                        None => {
                            return Err(Status::unavailable(
                                "the watch stream ended before the watch was created",
                            ));
                        }
                    }
                }
            }
        };
        let ((requests, responses, created), member) = self
            .attempt("watch", deadline, None, require_leader(), call)
            .await?;
        if created.compact_revision != 0 {
            return Err(EtcdError::Compacted(format!(
                "watch: revisions before {} are compacted",
                created.compact_revision
            )));
        }
        if created.canceled {
            return Err(EtcdError::Rejected {
                code: tonic::Code::Unknown,
                message: format!("watch: {}", created.cancel_reason),
            });
        }
        Ok(Watcher {
            requests,
            responses,
            watch_id: created.watch_id,
            member,
            client: self.clone(),
        })
    }
}

impl Watcher {
    /// The watch's ID on its stream.
    pub fn watch_id(&self) -> i64 {
        self.watch_id
    }

    /// The address of the member serving the watch.
    pub fn member(&self) -> &str {
        self.client.address(self.member)
    }

    /// The next answer (`None`: the stream ended).
    pub async fn message(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        match self.responses.message().await {
            Ok(answer) => Ok(answer.map(WatchResponse::from)),
            Err(status) => Err(self.failed(&status)),
        }
    }

    fn failed(&self, status: &Status) -> EtcdError {
        if Failure::of(status) == Failure::Retry {
            self.client.demote(self.member);
            EtcdError::Unavailable(format!("watch on {}: {}", self.member(), describe(status)))
        } else {
            EtcdError::from_status("watch", status)
        }
    }

    /// Asks for a progress note now (answered with the store's revision, whether or not
    /// anything changed).
    pub fn request_progress(&self) -> Result<(), EtcdError> {
        let request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        };
        self.requests
            .try_send(request)
            .map_err(|_| EtcdError::Unavailable("the watch stream is closed".into()))
    }

    /// Cancels the watch; etcd answers with a cancelled response.
    pub fn cancel(&self) -> Result<(), EtcdError> {
        let request = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
                pb::WatchCancelRequest {
                    watch_id: self.watch_id,
                },
            )),
        };
        self.requests
            .try_send(request)
            .map_err(|_| EtcdError::Unavailable("the watch stream is closed".into()))
    }

    /// Tells the client this watch's member went silent: the next calls and watches start at
    /// another member.
    pub fn fail_over(&self) {
        self.client.demote(self.member);
    }
}

impl Stream for Watcher {
    type Item = Result<WatchResponse, EtcdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.responses).poll_next(cx) {
            Poll::Ready(Some(Ok(answer))) => Poll::Ready(Some(Ok(answer.into()))),
            Poll::Ready(Some(Err(status))) => Poll::Ready(Some(Err(self.failed(&status)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_is_created_as_etcd_reads_it() {
        let options = WatchOptions::new(KeyRange::prefix("/p/"))
            .start_revision(42)
            .prev_kv()
            .progress_notify();
        let Some(pb::watch_request::RequestUnion::CreateRequest(create)) =
            options.create_request().request_union
        else {
            panic!("not a create request");
        };
        assert_eq!(create.key, b"/p/".to_vec());
        assert_eq!(create.range_end, b"/p0".to_vec());
        assert_eq!(create.start_revision, 42);
        assert!(create.prev_kv && create.progress_notify);
    }

    #[test]
    fn answers_are_typed() {
        let answer = pb::WatchResponse {
            header: Some(pb::ResponseHeader {
                revision: 9,
                ..Default::default()
            }),
            watch_id: 1,
            events: vec![mvccpb::Event {
                r#type: mvccpb::event::EventType::Delete as i32,
                kv: Some(mvccpb::KeyValue {
                    key: b"/p/k".to_vec(),
                    mod_revision: 9,
                    ..Default::default()
                }),
                prev_kv: None,
            }],
            ..Default::default()
        };
        let typed = WatchResponse::from(answer);
        assert_eq!(typed.revision, 9);
        assert_eq!(typed.events[0].kind, EventKind::Delete);
        assert!(!typed.is_progress());
        let progress = WatchResponse::from(pb::WatchResponse {
            watch_id: -1,
            ..Default::default()
        });
        assert!(progress.is_progress());
        let compacted = WatchResponse::from(pb::WatchResponse {
            canceled: true,
            compact_revision: 5,
            ..Default::default()
        });
        assert!(!compacted.is_progress());
    }
}
