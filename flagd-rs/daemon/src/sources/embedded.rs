//! The embedded source: a flag document compiled into the binary (the bundled default flags),
//! delivered to the store once.

use flagd_evaluator::Format;
use tokio::sync::mpsc;

use super::{SourceError, runtime};
use crate::store::{SourceEvent, SourceUpdate};

/// Sends `bytes` once as the content of source `index`, then ends.
///
/// The document never changes, so there is nothing to watch; the task only exists so that a full
/// channel delays the send instead of dropping it.
pub fn spawn_embedded(
    bytes: &'static [u8],
    format: Format,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let handle = runtime()?;
    Ok(handle.spawn(async move {
        let event = SourceEvent::Content {
            bytes: bytes.to_vec(),
            format,
        };
        // A closed channel means the store has stopped; there is nobody left to tell.
        let _ = tx
            .send(SourceUpdate {
                source: index,
                event,
            })
            .await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sends_the_document_once() {
        let (tx, mut rx) = mpsc::channel(4);
        let task = spawn_embedded(b"{\"flags\":{}}", Format::Json, 3, tx).unwrap();
        task.await.unwrap();
        let update = rx.recv().await.unwrap();
        assert_eq!(update.source, 3);
        match update.event {
            SourceEvent::Content { bytes, format } => {
                assert_eq!(bytes, b"{\"flags\":{}}");
                assert_eq!(format, Format::Json);
            }
            other => panic!("unexpected {other:?}"),
        }
        // The task dropped its sender: nothing more will come.
        assert!(rx.recv().await.is_none());
    }
}
