//! The task that keeps a journal current with what other writers append: it watches the
//! whole prefix (require-leader) from the etcd revision it last read, turns each answer into
//! one [`Replicated::Appended`], and reads everything again ([`Replicated::Reset`]) when the
//! watch cannot go on without a gap (compacted, cancelled, or out of order).
//!
//! A watch that merely broke (member killed, no leader, silent for three progress intervals)
//! is started again from the etcd revision after the last event seen: etcd keeps that
//! history, so nothing is missed or repeated, and no reset is needed. Progress answers never
//! move that revision (etcd 3.4 may send one before the events it covers).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::authority::journal::{JournalError, Replicated, RevisionInfo};
use crate::fleet::etcd::{EtcdError, EventKind, WatchOptions, WatchResponse, Watcher};

use super::Shared;
use super::keys::{KeyKind, decode_head, decode_record, decode_snapshot};
use super::ops;

/// The first pause after a failure; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Progress intervals without any answer after which a watch is taken as dead.
const SILENT_INTERVALS: u32 = 3;

pub(super) struct Follower {
    shared: Arc<Shared>,
    feed: mpsc::UnboundedSender<Replicated>,
    /// The etcd revision to watch from (`None`: read everything first).
    next: Option<i64>,
    /// The last journal revision seen, through a listing or the watch.
    last_record: u64,
    pause: Duration,
}

impl Follower {
    /// A follower that watches from etcd revision `next` on, having seen journal revisions up
    /// to `last_record`; with `next` `None`, it starts by reading the whole journal (and
    /// reports it as a reset).
    pub fn new(
        shared: Arc<Shared>,
        feed: mpsc::UnboundedSender<Replicated>,
        next: Option<i64>,
        last_record: u64,
    ) -> Follower {
        Follower {
            shared,
            feed,
            next,
            last_record,
            pause: FIRST_PAUSE,
        }
    }

    /// Follows until the journal is closed (the task is aborted then, too).
    pub async fn run(mut self) {
        while !self.shared.is_closed() {
            let next = match self.next {
                Some(next) => next,
                None => match self.relist().await {
                    Some(next) => next,
                    None => {
                        self.wait().await;
                        continue;
                    }
                },
            };
            let options = WatchOptions::new(self.shared.keys.all())
                .start_revision(next)
                .progress_notify();
            match self.shared.client.watch(options).await {
                Ok(watcher) => {
                    self.shared.reachable();
                    self.pause = FIRST_PAUSE;
                    self.follow(watcher).await;
                }
                Err(EtcdError::Compacted(_)) => {
                    tracing::info!(
                        prefix = self.shared.keys.prefix(),
                        "etcd compacted the history the journal watch needs: reading the journal again"
                    );
                    self.next = None;
                }
                Err(e) => {
                    self.shared.unreachable(&e.to_string());
                    self.wait().await;
                }
            }
        }
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(MAX_PAUSE);
    }

    /// Reads the whole journal and hands it on as a reset; returns the etcd revision to watch
    /// from.
    async fn relist(&mut self) -> Option<i64> {
        match ops::list(&self.shared.client, &self.shared.keys).await {
            Ok(listing) => {
                self.shared.state().absorb(&listing);
                self.last_record = listing.replay.head();
                self.next = Some(listing.revision + 1);
                self.shared.confirmed();
                let _ = self.feed.send(Replicated::Reset(listing.replay));
                self.next
            }
            Err(e) => {
                if matches!(e, JournalError::Unavailable(_)) {
                    self.shared.unreachable(&e.to_string());
                } else {
                    tracing::error!(
                        prefix = self.shared.keys.prefix(),
                        error = %e,
                        "the journal in etcd cannot be read"
                    );
                }
                None
            }
        }
    }

    /// Follows one watch until it ends.
    async fn follow(&mut self, mut watcher: Watcher) {
        let every = self.shared.options.progress_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                answer = watcher.message() => {
                    let response = match answer {
                        Ok(Some(response)) => response,
                        Ok(None) => {
                            self.shared.unreachable("the journal watch ended");
                            return;
                        }
                        Err(e) => {
                            self.shared.unreachable(&e.to_string());
                            return;
                        }
                    };
                    heard = Instant::now();
                    if response.canceled || response.compact_revision != 0 {
                        tracing::info!(
                            prefix = self.shared.keys.prefix(),
                            compact_revision = response.compact_revision,
                            reason = %response.cancel_reason,
                            "the journal watch was cancelled: reading the journal again"
                        );
                        self.next = None;
                        return;
                    }
                    if !response.events.is_empty() {
                        match self.apply(&response) {
                            Ok(records) if records.is_empty() => {}
                            Ok(records) => {
                                let _ = self.feed.send(Replicated::Appended(records));
                            }
                            Err(why) => {
                                tracing::warn!(
                                    prefix = self.shared.keys.prefix(),
                                    %why,
                                    "the journal watch saw a gap: reading the journal again"
                                );
                                self.next = None;
                                return;
                            }
                        }
                    }
                    self.shared.confirmed();
                }
                _ = ticker.tick() => {
                    if heard.elapsed() >= every * SILENT_INTERVALS {
                        watcher.fail_over();
                        self.shared.unreachable(&format!(
                            "etcd member {} stopped answering the journal watch",
                            watcher.member()
                        ));
                        return;
                    }
                    if let Err(e) = watcher.request_progress() {
                        self.shared.unreachable(&e.to_string());
                        return;
                    }
                }
            }
        }
    }

    /// Takes in one answer's events: the head, snapshot and archive facts, and the records,
    /// which must continue the journal exactly.
    fn apply(&mut self, response: &WatchResponse) -> Result<Vec<RevisionInfo>, String> {
        let keys = &self.shared.keys;
        let mut state = self.shared.state();
        let mut records = Vec::new();
        let mut last = self.last_record;
        let mut top = 0;
        for event in &response.events {
            let kv = &event.kv;
            top = top.max(kv.mod_revision);
            match (keys.kind(&kv.key), event.kind) {
                (KeyKind::Head, EventKind::Put) => {
                    let head = decode_head(kv).map_err(|e| e.to_string())?;
                    state.saw_head(head, kv.mod_revision);
                }
                (KeyKind::Record(seq), EventKind::Put) => {
                    let record = decode_record(kv, seq).map_err(|e| e.to_string())?;
                    if record.revision != last + 1 {
                        return Err(format!(
                            "revision {} arrived after revision {last}",
                            record.revision
                        ));
                    }
                    last = record.revision;
                    state.count(record.revision, kv.value.len());
                    records.push(record);
                }
                (KeyKind::Snapshot, EventKind::Put) => {
                    let snapshot = decode_snapshot(kv).map_err(|e| e.to_string())?;
                    state.saw_snapshot(snapshot.revision, kv.mod_revision);
                }
                (KeyKind::Archive(segment), EventKind::Put) => state.saw_segment(segment),
                (KeyKind::Head | KeyKind::Snapshot, EventKind::Delete) => {
                    return Err("the journal's head or snapshot was deleted".into());
                }
                // Compaction deletes records; other keys (controller, replicas) are not ours.
                _ => {}
            }
        }
        self.last_record = last;
        self.next = Some(top + 1);
        Ok(records)
    }
}
