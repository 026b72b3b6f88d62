//! EventStream: `provider_ready` on connect, `configuration_change` for every change to the
//! selected flags, `keep_alive` when idle, `provider_shutdown` on shutdown, and an optional
//! server-side deadline. One implementation for every API and transport.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use pbjson_types::value::Kind;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::error::RequestError;
use crate::selector::Selector;
use crate::server::deadline::earliest;
use crate::state::AppState;
use crate::store::{Change, ChangeKind, Store};

/// `provider_ready`: sent first.
pub const PROVIDER_READY: &str = "provider_ready";
/// `configuration_change`: some selected flags changed.
pub const CONFIGURATION_CHANGE: &str = "configuration_change";
/// `keep_alive`: nothing else was sent for a while.
pub const KEEP_ALIVE: &str = "keep_alive";
/// `provider_shutdown`: the daemon is stopping; the stream ends after it.
pub const PROVIDER_SHUTDOWN: &str = "provider_shutdown";

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event type (one of the constants above).
    pub kind: &'static str,
    /// The payload; `None` only for `keep_alive`.
    pub data: Option<pbjson_types::Struct>,
}

impl Event {
    fn empty(kind: &'static str) -> Event {
        Event {
            kind,
            data: Some(pbjson_types::Struct::default()),
        }
    }
}

/// The stream messages of the three APIs, built from an [`Event`].
pub trait EventMessage: Send + 'static {
    /// Builds the message.
    fn from_event(event: Event) -> Self;
}

macro_rules! event_message {
    ($($ty:ty),*) => {$(
        impl EventMessage for $ty {
            fn from_event(event: Event) -> Self {
                Self { r#type: event.kind.to_owned(), data: event.data }
            }
        }
    )*};
}

event_message!(
    crate::proto::flagd::evaluation::v1::EventStreamResponse,
    crate::proto::flagd::evaluation::v2::EventStreamResponse,
    crate::proto::schema::v1::EventStreamResponse
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Running,
    Done,
}

struct Subscription {
    phase: Phase,
    store: Arc<Store>,
    selector: Selector,
    /// `None` once the store is gone (no more changes can come).
    changes: Option<broadcast::Receiver<Arc<Change>>>,
    shutdown: watch::Receiver<bool>,
    /// `None` when keep-alives are off (a zero interval).
    keep_alive: Option<Duration>,
    next_keep_alive: Option<Instant>,
    deadline: Option<Instant>,
    /// What the stream ends with at `deadline`.
    deadline_error: RequestError,
}

/// The events for one subscriber with `selector`. Subscribes to changes immediately, so no
/// change published after this call is missed. Ends after `provider_shutdown`, with
/// [`RequestError::StreamDeadline`] once the server's `deadline` has passed, or with
/// [`RequestError::DeadlineExceeded`] once the client's has, whichever comes first.
pub fn subscribe(
    state: &AppState,
    selector: Selector,
    deadline: Option<Duration>,
    client_deadline: Option<Duration>,
) -> impl Stream<Item = Result<Event, RequestError>> + Send + 'static {
    let now = Instant::now();
    let (deadline, deadline_error) = match earliest(deadline, client_deadline) {
        Some((after, true)) => (Some(after), RequestError::DeadlineExceeded),
        other => (other.map(|(after, _)| after), RequestError::StreamDeadline),
    };
    let keep_alive = Some(state.limits.keep_alive).filter(|d| !d.is_zero());
    let subscription = Subscription {
        phase: Phase::Start,
        store: state.store.clone(),
        selector,
        changes: Some(state.store.subscribe()),
        shutdown: state.shutdown.clone(),
        keep_alive,
        next_keep_alive: keep_alive.map(|k| now + k),
        deadline: deadline.map(|d| now + d),
        deadline_error,
    };
    futures::stream::unfold(subscription, |mut s| async move {
        let item = next(&mut s).await?;
        Some((item, s))
    })
}

async fn next(s: &mut Subscription) -> Option<Result<Event, RequestError>> {
    match s.phase {
        Phase::Done => return None,
        Phase::Start => {
            s.phase = Phase::Running;
            s.next_keep_alive = s.keep_alive.map(|k| Instant::now() + k);
            return Some(Ok(Event::empty(PROVIDER_READY)));
        }
        Phase::Running => {}
    }
    loop {
        tokio::select! {
            biased;
            () = shutting_down(&mut s.shutdown) => {
                s.phase = Phase::Done;
                return Some(Ok(Event::empty(PROVIDER_SHUTDOWN)));
            }
            () = sleep_until(s.deadline) => {
                s.phase = Phase::Done;
                return Some(Err(s.deadline_error.clone()));
            }
            received = recv(&mut s.changes) => {
                let data = match received {
                    Ok(change) => change_data(change.selected(&s.selector).map(|c| (c.key(), c.kind))),
                    // Some change sets were missed: every selected flag may have changed.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let snapshot = s.store.snapshot();
                        change_data(snapshot.iter(&s.selector).map(|f| (f.flag.key(), ChangeKind::Update)))
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        s.changes = None;
                        continue;
                    }
                };
                let Some(data) = data else { continue };
                s.next_keep_alive = s.keep_alive.map(|k| Instant::now() + k);
                return Some(Ok(Event { kind: CONFIGURATION_CHANGE, data: Some(data) }));
            }
            () = sleep_until(s.next_keep_alive) => {
                s.next_keep_alive = s.keep_alive.map(|k| Instant::now() + k);
                return Some(Ok(Event { kind: KEEP_ALIVE, data: None }));
            }
        }
    }
}

/// Completes when shutdown is requested; never if nobody can request it any more.
async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps until `deadline`; forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn recv(
    rx: &mut Option<broadcast::Receiver<Arc<Change>>>,
) -> Result<Arc<Change>, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// `{"flags": {key: {"type": kind}}}`, or `None` when nothing is listed.
fn change_data<'a>(
    changes: impl Iterator<Item = (&'a str, ChangeKind)>,
) -> Option<pbjson_types::Struct> {
    let flags: std::collections::HashMap<String, pbjson_types::Value> = changes
        .map(|(key, kind)| {
            let mut entry = pbjson_types::Struct::default();
            entry
                .fields
                .insert("type".to_owned(), string(kind.as_str()));
            (
                key.to_owned(),
                pbjson_types::Value {
                    kind: Some(Kind::StructValue(entry)),
                },
            )
        })
        .collect();
    if flags.is_empty() {
        return None;
    }
    let mut data = pbjson_types::Struct::default();
    data.fields.insert(
        "flags".to_owned(),
        pbjson_types::Value {
            kind: Some(Kind::StructValue(pbjson_types::Struct { fields: flags })),
        },
    );
    Some(data)
}

fn string(s: &str) -> pbjson_types::Value {
    pbjson_types::Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::struct_to_map;
    use serde_json::json;

    #[test]
    fn change_payload() {
        let data = change_data([("a", ChangeKind::Write), ("b", ChangeKind::Delete)].into_iter());
        assert_eq!(
            serde_json::Value::Object(struct_to_map(data)),
            json!({"flags": {"a": {"type": "write"}, "b": {"type": "delete"}}})
        );
        assert!(change_data(std::iter::empty()).is_none());
    }
}
