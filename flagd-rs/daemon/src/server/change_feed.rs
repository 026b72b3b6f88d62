//! The receiving end of the store's change bus, for the live views that follow flag changes:
//! the dashboard's feed (`/ui/events`) and OFREP's event streams (`/ofrep/v1/sse`).
//!
//! Every change reaches the store the same way (a file reload, an override, a rollout step: a
//! new snapshot and the set of flags it changed), so following the store's broadcast is enough
//! to see all of them. A [`ChangeFeed`] adds the two things each follower needs: it ends when
//! the daemon shuts down, and it reports a gap (the follower fell behind the broadcast's buffer)
//! as [`Changed::Missed`] instead of an error, so the follower can treat everything as changed.

use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use crate::store::{Change, Store};

/// What a [`ChangeFeed`] reports.
#[derive(Debug, Clone)]
pub enum Changed {
    /// The store published this change set.
    Flags(Arc<Change>),
    /// Some change sets were missed: any flag may have changed.
    Missed,
}

/// A subscription to the store's change sets that ends on shutdown.
#[derive(Debug)]
pub struct ChangeFeed {
    changes: broadcast::Receiver<Arc<Change>>,
    shutdown: watch::Receiver<bool>,
}

impl ChangeFeed {
    /// Subscribes now: every change the store publishes after this call is reported.
    pub fn new(store: &Store, shutdown: watch::Receiver<bool>) -> ChangeFeed {
        ChangeFeed {
            changes: store.subscribe(),
            shutdown,
        }
    }

    /// The next change; `None` once the daemon shuts down (or nobody can ask it to any more)
    /// or the store is gone.
    pub async fn next(&mut self) -> Option<Changed> {
        tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => None,
            received = self.changes.recv() => match received {
                Ok(change) => Some(Changed::Flags(change)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some(Changed::Missed),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }

    /// A change already published and not yet received, without waiting; `None` when there is
    /// none (or the store is gone).
    pub fn try_next(&mut self) -> Option<Changed> {
        match self.changes.try_recv() {
            Ok(change) => Some(Changed::Flags(change)),
            Err(broadcast::error::TryRecvError::Lagged(_)) => Some(Changed::Missed),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use flagd_evaluator::{Format, LoadOptions};

    use super::*;
    use crate::store::{SourceEvent, SourceUpdate};

    fn load(store: &Store, value: &str) {
        let doc = format!(
            r#"{{"flags":{{"f":{{"state":"ENABLED","variants":{{"a":"{value}"}},"defaultVariant":"a"}}}}}}"#
        );
        let event = SourceEvent::Content {
            bytes: doc.into_bytes(),
            format: Format::Json,
        };
        store.apply(SourceUpdate { source: 0, event }).unwrap();
    }

    #[tokio::test]
    async fn reports_changes_then_ends_on_shutdown() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let (stop, shutdown) = watch::channel(false);
        let mut feed = ChangeFeed::new(&store, shutdown);
        assert!(feed.try_next().is_none());
        load(&store, "1");
        load(&store, "2");
        let Some(Changed::Flags(first)) = feed.next().await else {
            panic!("expected a change set")
        };
        let Some(Changed::Flags(second)) = feed.try_next() else {
            panic!("expected a second change set")
        };
        assert!(second.revision > first.revision);
        assert!(feed.try_next().is_none());
        stop.send_replace(true);
        assert!(feed.next().await.is_none());
    }

    #[tokio::test]
    async fn a_gap_is_reported_as_missed() {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        let (_stop, shutdown) = watch::channel(false);
        let mut feed = ChangeFeed::new(&store, shutdown);
        // More changes than the broadcast keeps.
        for i in 0..1100 {
            load(&store, &i.to_string());
        }
        assert!(matches!(feed.next().await, Some(Changed::Missed)));
    }
}
