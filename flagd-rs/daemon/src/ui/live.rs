//! What keeps an open page current: the live feed (`/ui/events`, server-sent events) and the
//! impression samples behind the served-share view.
//!
//! The feed is made from the notifications the daemon already sends: the store's change sets
//! through the [`ChangeFeed`] OFREP's event streams follow too (a file reload, an override, a
//! rollout step: each changed flag's row is sent re-rendered) and the authority's head (every revision, rollout records included: pages redraw). Nothing
//! runs per evaluation; the impression counters are read every [`SAMPLE_EVERY`] by one task
//! that exists only while the dashboard is served.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use super::Dashboard;
use super::pages::flags::{self, Filter};
use crate::metrics::Metrics;
use crate::server::change_feed::{ChangeFeed, Changed};

/// How often the impression counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Samples kept at [`SAMPLE_EVERY`] (a little over a minute).
const FINE: usize = 8;

/// Every this many samples, one is also kept in the coarse ring.
const COARSE_EVERY: u64 = 6;

/// Coarse samples kept (a little over an hour at one a minute).
const COARSE: usize = 62;

/// Impressions per (flag key, variant), as [`Metrics::impression_totals`] lists them.
type Counts = Vec<(Box<str>, Box<str>, u64)>;

/// The impression counters at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Rings {
    fine: VecDeque<Sample>,
    coarse: VecDeque<Sample>,
    taken: u64,
}

/// The share of evaluations served per variant over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Evaluations per variant in the window, in the order the counters list them.
    pub counts: Vec<(String, u64)>,
    /// How long the window actually is (shorter than asked while the daemon is young).
    pub span: Duration,
}

impl Share {
    /// All evaluations in the window.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// A small ring of impression-counter samples: a fine one (every [`SAMPLE_EVERY`], a minute
/// back) and a coarse one (every minute, an hour back). Bounded whatever the traffic.
#[derive(Debug)]
pub struct Served {
    metrics: Arc<Metrics>,
    rings: Mutex<Rings>,
}

impl Served {
    /// No samples yet.
    pub fn new(metrics: Arc<Metrics>) -> Served {
        Served {
            metrics,
            rings: Mutex::new(Rings::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rings> {
        self.rings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one sample now.
    pub fn sample(&self) {
        let sample = Sample {
            at: Instant::now(),
            counts: Arc::new(self.metrics.impression_totals()),
        };
        let mut rings = self.lock();
        if rings.taken.is_multiple_of(COARSE_EVERY) {
            rings.coarse.push_back(sample.clone());
            if rings.coarse.len() > COARSE {
                rings.coarse.pop_front();
            }
        }
        rings.fine.push_back(sample);
        if rings.fine.len() > FINE {
            rings.fine.pop_front();
        }
        rings.taken += 1;
    }

    /// Samples every [`SAMPLE_EVERY`] until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.sample(),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// The evaluations of `flag` per variant over about the last `window`: the live counters
    /// against the newest sample at least `window` old (or the oldest one there is). `None`
    /// before the first sample.
    pub fn share(&self, flag: &str, window: Duration) -> Option<Share> {
        let now = Instant::now();
        let base = {
            let rings = self.lock();
            let ring = if window > SAMPLE_EVERY * FINE as u32 {
                &rings.coarse
            } else {
                &rings.fine
            };
            ring.iter()
                .rev()
                .find(|s| now.duration_since(s.at) >= window)
                .or_else(|| ring.front())
                .cloned()?
        };
        let live = self.metrics.impression_totals();
        let counts = live
            .iter()
            .filter(|(k, _, _)| &**k == flag)
            .map(|(_, variant, n)| {
                let before = base
                    .counts
                    .iter()
                    .find(|(k, v, _)| &**k == flag && v == variant)
                    .map_or(0, |(_, _, n)| *n);
                (variant.to_string(), n.saturating_sub(before))
            })
            .collect();
        Some(Share {
            counts,
            span: now.duration_since(base.at),
        })
    }
}

/// What one open feed holds between events.
struct Feed {
    dashboard: Arc<Dashboard>,
    filter: Filter,
    changes: ChangeFeed,
    head: watch::Receiver<u64>,
    /// The last authority revision the feed has sent rows for.
    seen: u64,
}

/// Why the feed woke up.
enum Wake {
    /// The store published these (flag set, key) changes in this store revision.
    Store(u64, Vec<(Option<String>, String)>),
    /// The authority moved from revision `.0` to `.1`.
    Head(u64, u64),
    /// The feed fell behind the store's changes.
    Lagged,
}

impl Feed {
    async fn wake(&mut self) -> Option<Wake> {
        tokio::select! {
            // Ends on shutdown: an open page must not hold up the daemon's shutdown.
            change = self.changes.next() => match change? {
                Changed::Flags(change) => Some(Wake::Store(
                    change.revision,
                    change
                        .flags
                        .iter()
                        .map(|c| (c.flag_set_id().map(str::to_owned), c.key().to_string()))
                        .collect(),
                )),
                Changed::Missed => Some(Wake::Lagged),
            },
            moved = self.head.changed() => match moved {
                Err(_) => None,
                Ok(()) => {
                    let to = *self.head.borrow_and_update();
                    let from = std::mem::replace(&mut self.seen, to);
                    Some(Wake::Head(from, to))
                }
            },
        }
    }
}

/// The rows the revisions after `from` touched: the flags whose override they changed and the
/// flags they are about (a rollout record may change a badge without moving an override).
/// The store announces an override before the authority publishes it, so these rows are
/// rendered again once the authority's head has moved.
fn touched_after(dashboard: &Dashboard, from: u64) -> Vec<(Option<String>, String)> {
    let Ok(page) =
        dashboard
            .authority
            .revisions_page(None, crate::authority::Cursor::After(from), 100)
    else {
        return Vec::new();
    };
    let mut keys: Vec<&str> = page
        .revisions
        .iter()
        .flat_map(|r| {
            r.changes
                .iter()
                .map(|c| c.flag.as_str())
                .chain(r.flag.as_deref())
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let snapshot = dashboard.authority.store().snapshot();
    snapshot
        .iter(&crate::selector::Selector::All)
        .filter(|f| keys.contains(&f.flag.key()))
        .map(|f| {
            (
                f.flag.flag_set_id().map(str::to_owned),
                f.flag.key().to_owned(),
            )
        })
        .collect()
}

/// `GET /ui/events`: the live feed. Events:
///
/// - `row`: `{"id", "html"}`, a Flags row re-rendered for the filter in the query (`html` is
///   `null` when the flag is gone or no longer matches);
/// - `changed`: `{"revision"}`, something a page shows may have changed;
/// - `reload`: the feed fell behind; reload the page.
pub async fn events(
    State(dashboard): State<Arc<Dashboard>>,
    Query(filter): Query<Filter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let head = dashboard.authority.watch_head();
    let seen = *head.borrow();
    let feed = Feed {
        changes: ChangeFeed::new(dashboard.authority.store(), dashboard.shutdown.clone()),
        seen,
        head,
        filter,
        dashboard,
    };
    let stream = futures::stream::unfold(feed, |mut feed| async move {
        let wake = feed.wake().await?;
        let (d, f) = (feed.dashboard.clone(), feed.filter.clone());
        // Rendering reads the history, which may read the archive: off the async workers.
        let events = tokio::task::spawn_blocking(move || match wake {
            Wake::Lagged => vec![Event::default().event("reload").data("{}")],
            Wake::Store(revision, keys) => {
                let mut out = row_events(&d, &f, &keys);
                out.push(changed(revision));
                out
            }
            Wake::Head(from, to) => {
                let mut out = row_events(&d, &f, &touched_after(&d, from));
                out.push(changed(to));
                out
            }
        })
        .await
        .unwrap_or_default();
        let events: Vec<Result<Event, Infallible>> = events.into_iter().map(Ok).collect();
        Some((futures::stream::iter(events), feed))
    });
    Sse::new(stream.flatten()).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn changed(revision: u64) -> Event {
    Event::default()
        .event("changed")
        .data(json!({"revision": revision}).to_string())
}

/// One `row` event per (flag set, key).
fn row_events(
    dashboard: &Dashboard,
    filter: &Filter,
    keys: &[(Option<String>, String)],
) -> Vec<Event> {
    if keys.is_empty() {
        return Vec::new();
    }
    let rows = flags::rows_for(dashboard, Some(keys));
    keys.iter()
        .map(|(set, key)| {
            let html = rows
                .iter()
                .find(|r| r.flag.key == *key && r.flag.flag_set_id == *set)
                .filter(|r| filter.matches(r))
                .map(|r| flags::row(r).into_string());
            Event::default()
                .event("row")
                .data(json!({"id": flags::row_id(set.as_deref(), key), "html": html}).to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shares_come_from_the_sample_a_window_ago() {
        let metrics = Arc::new(Metrics::new());
        let served = Served::new(metrics.clone());
        assert_eq!(served.share("f", Duration::from_secs(60)), None);
        for _ in 0..5 {
            metrics.evaluation("f", "a", "STATIC", None);
        }
        served.sample();
        for _ in 0..90 {
            tokio::time::advance(SAMPLE_EVERY).await;
            metrics.evaluation("f", "a", "TARGETING_MATCH", None);
            metrics.evaluation("f", "b", "TARGETING_MATCH", None);
            metrics.evaluation("f", "b", "TARGETING_MATCH", None);
            metrics.evaluation("g", "x", "STATIC", None);
            served.sample();
        }
        // Over the last minute: the last six rounds, whatever happened before.
        let minute = served.share("f", Duration::from_secs(60)).unwrap();
        assert_eq!(minute.counts, [("a".to_owned(), 6), ("b".to_owned(), 12)]);
        assert_eq!(minute.total(), 18);
        assert_eq!(minute.span, Duration::from_secs(60));
        // Fifteen minutes of samples cover less than an hour: the oldest coarse sample.
        let hour = served.share("f", Duration::from_secs(3600)).unwrap();
        assert_eq!(hour.counts, [("a".to_owned(), 90), ("b".to_owned(), 180)]);
        assert_eq!(hour.span, SAMPLE_EVERY * 90);
        // The rings stay bounded.
        let rings = served.lock();
        assert!(rings.fine.len() <= FINE && rings.coarse.len() <= COARSE);
    }
}
