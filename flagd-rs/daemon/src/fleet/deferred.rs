//! A shared journal that is not reachable yet. A replica that starts while etcd is down serves
//! the state in its cache at once; this journal stands in for the store until the store
//! answers: it refuses writes (503, nothing lost), reports itself disconnected, and keeps
//! trying to open the real journal in the background. Once that succeeds, it hands the
//! authority the store's whole state (a reset) and from then on passes everything through.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::authority::{
    Journal, JournalError, Replay, Replicated, RevisionInfo, Segment, Snapshot, StoreHealth,
};

/// The pause between two attempts to open the store.
const RETRY: Duration = Duration::from_secs(1);

/// What opening the store yields: the journal and the state it holds.
pub type Opened = (Box<dyn Journal>, Replay);

/// A journal that becomes the real one once the store is reached.
#[derive(Debug)]
pub struct Deferred {
    inner: Arc<OnceLock<Box<dyn Journal>>>,
    feed: Mutex<Option<mpsc::UnboundedReceiver<Replicated>>>,
    /// The head of the state served until then (the cache's).
    cached_head: u64,
}

impl Deferred {
    /// Starts opening the store with `open` (again every second until it succeeds) on the
    /// current tokio runtime; until then the journal is at `cached_head` and refuses writes.
    pub fn spawn<F, Fut>(open: F, cached_head: u64) -> Deferred
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Opened, JournalError>> + Send,
    {
        let inner = Arc::new(OnceLock::new());
        let (tx, rx) = mpsc::unbounded_channel();
        let slot = Arc::clone(&inner);
        tokio::spawn(async move {
            let mut attempts = 0u64;
            let (journal, replay) = loop {
                match open().await {
                    Ok(opened) => break opened,
                    Err(e) => {
                        if attempts == 0 {
                            tracing::warn!(error = %e,
                                "the shared store is unreachable: serving the cached state; \
                                 changes are refused until it answers");
                        }
                        attempts += 1;
                        tokio::time::sleep(RETRY).await;
                    }
                }
            };
            tracing::info!(
                attempts,
                revision = replay.head(),
                "the shared store answers again"
            );
            let feed = journal.replicated();
            if tx.send(Replicated::Reset(replay)).is_err() {
                return;
            }
            let _ = slot.set(journal);
            if let Some(mut feed) = feed {
                while let Some(update) = feed.recv().await {
                    if tx.send(update).is_err() {
                        return;
                    }
                }
            }
        });
        Deferred {
            inner,
            feed: Mutex::new(Some(rx)),
            cached_head,
        }
    }

    fn journal(&self) -> Result<&dyn Journal, JournalError> {
        self.inner.get().map(AsRef::as_ref).ok_or_else(|| {
            JournalError::Unavailable(
                "it has not answered since this replica started, which serves its cached state"
                    .into(),
            )
        })
    }
}

impl Journal for Deferred {
    fn head(&self) -> u64 {
        self.inner.get().map_or(self.cached_head, |j| j.head())
    }

    fn append_if_head(&self, head: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
        self.journal()?.append_if_head(head, record)
    }

    fn read_from(&self, revision: u64) -> Result<Vec<RevisionInfo>, JournalError> {
        self.journal()?.read_from(revision)
    }

    fn segments(&self) -> Vec<Segment> {
        self.inner.get().map_or_else(Vec::new, |j| j.segments())
    }

    fn read_segment(&self, segment: &Segment) -> Result<Replay, JournalError> {
        self.journal()?.read_segment(segment)
    }

    fn compaction_due(&self) -> bool {
        self.inner.get().is_some_and(|j| j.compaction_due())
    }

    fn compact(&self, snapshot: &Snapshot) -> Result<Option<Segment>, JournalError> {
        self.journal()?.compact(snapshot)
    }

    fn close(&self) {
        if let Some(j) = self.inner.get() {
            j.close();
        }
    }

    fn replicated(&self) -> Option<mpsc::UnboundedReceiver<Replicated>> {
        self.feed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn health(&self) -> Option<StoreHealth> {
        match self.inner.get() {
            Some(j) => j.health(),
            None => Some(StoreHealth {
                connected: false,
                confirmed: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Reached {
        log: Mutex<Vec<RevisionInfo>>,
    }

    impl Journal for Reached {
        fn head(&self) -> u64 {
            7
        }
        fn append_if_head(&self, _: u64, record: &RevisionInfo) -> Result<u64, JournalError> {
            self.log.lock().unwrap().push(record.clone());
            Ok(record.revision)
        }
        fn read_from(&self, _: u64) -> Result<Vec<RevisionInfo>, JournalError> {
            Ok(Vec::new())
        }
        fn health(&self) -> Option<StoreHealth> {
            Some(StoreHealth {
                connected: true,
                confirmed: None,
            })
        }
    }

    #[tokio::test]
    async fn refuses_writes_until_the_store_answers_then_resets_and_passes_through() {
        let tries = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&tries);
        let deferred = Deferred::spawn(
            move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(JournalError::Unavailable("connection refused".into()))
                    } else {
                        let replay = Replay {
                            snapshot: Some(Snapshot {
                                revision: 7,
                                ..Snapshot::default()
                            }),
                            records: Vec::new(),
                        };
                        Ok((Box::new(Reached::default()) as Box<dyn Journal>, replay))
                    }
                }
            },
            3,
        );
        assert_eq!(deferred.head(), 3);
        assert_eq!(deferred.health().map(|h| h.connected), Some(false));
        let err = deferred.read_from(4).unwrap_err();
        assert!(matches!(err, JournalError::Unavailable(_)), "{err}");
        let mut feed = deferred.replicated().unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(first, Replicated::Reset(ref r) if r.head() == 7));
        assert_eq!(deferred.head(), 7);
        assert_eq!(deferred.health().map(|h| h.connected), Some(true));
        assert!(tries.load(Ordering::SeqCst) >= 3);
    }
}
