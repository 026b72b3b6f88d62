//! The streams' shared state: groups of streams by (selector, token), what each group was last
//! told, and the one task that turns the store's change sets into events.
//!
//! A group with a context (a token a bulk answer handed out) knows the bulk `ETag` of its
//! (selector, context); one without (a plain stream, or a token this process has not seen a
//! bulk request for yet) knows its selection's version, the store revision at which its flags
//! last changed. When a change touches a group's selection:
//!
//! - a group with a context and live streams has its bulk body rendered again (by the bulk
//!   handler's own code, off the async workers, spread over the cores) and its streams are
//!   told the new `ETag` if it differs;
//! - a group with a context and no stream is left alone; it is evaluated again when a stream
//!   connects;
//! - a group without a context takes the change's revision as its version and tells its
//!   streams.
//!
//! Memory stays bounded whatever clients send: a context is kept only for a token a bulk answer
//! handed out (at most [`MAX_CONTEXT_BYTES`] each, [`MAX_TOTAL_CONTEXT_BYTES`] in all, beyond
//! which bulk answers advertise the plain stream), and groups without streams are forgotten,
//! least recently used first, beyond [`MAX_IDLE_GROUPS`]. A group with streams is never
//! forgotten; each of those streams holds a connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flagd_evaluator::{Evaluation, Flag, now_unix_seconds};
use rustc_hash::FxHashMap;
use serde_json::Value;
use tokio::sync::watch;

use super::SseSettings;
use super::wire::{self, Token};
use crate::selector::Selector;
use crate::server::change_feed::{ChangeFeed, Changed};
use crate::server::ofrep::{BulkAnswer, render_bulk};
use crate::server::sync::gojson::write_value;
use crate::store::{Change, Snapshot, Store};

/// The largest request context (as canonical JSON) that gets a token.
pub const MAX_CONTEXT_BYTES: usize = 16 * 1024;

/// The most context bytes kept for all tokens together.
pub const MAX_TOTAL_CONTEXT_BYTES: usize = 64 << 20;

/// Groups without streams kept for a later stream or resume; the least recently used beyond
/// this are forgotten.
pub const MAX_IDLE_GROUPS: usize = 4096;

/// Registry operations between two scans for groups to forget.
const TRIM_EVERY: u64 = 64;

/// A stream that connects (without `Last-Event-ID`) this soon after its group's answer changed
/// is told at once: it may have fetched its bulk answer just before the change.
const RECENT: Duration = Duration::from_secs(5);

/// Below this many bodies to render, one thread renders them all.
const PARALLEL_FROM: usize = 64;

/// What every stream hears besides its own group's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Keep-alive number n: send a comment.
    Tick(u64),
    /// The daemon shuts down: end the stream.
    Closing,
}

/// Streams with the same selector and token share one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    selector: Selector,
    token: Option<Token>,
}

#[derive(Debug)]
struct Group {
    /// The assembled request context of the token's bulk request; `None` for a plain stream
    /// or a token not seen in a bulk request yet.
    context: Option<Arc<Value>>,
    /// The length of `context` as canonical JSON.
    context_bytes: usize,
    /// What the group's clients were told last: a bulk `ETag` (with a context) or the
    /// selection's version.
    etag: Arc<str>,
    /// The store revision `etag` was computed at.
    checked_at: u64,
    /// The store revision at which `etag` last changed.
    changed_at: u64,
    /// When `etag` last changed, in unix seconds (the events' `lastModified`).
    modified: i64,
    /// When `etag` last changed by a change in the store (not at creation).
    changed: Option<Instant>,
    /// The revision from which this group has followed changes: an older `Last-Event-ID`
    /// cannot be judged and gets the current event.
    since: u64,
    /// The latest frame; every stream of the group holds a receiver.
    notices: watch::Sender<Bytes>,
    /// The registry's clock at the last use (for forgetting the least recently used).
    last_used: u64,
}

impl Group {
    fn new(revision: u64, etag: Arc<str>, now: i64) -> Group {
        Group {
            context: None,
            context_bytes: 0,
            etag,
            checked_at: revision,
            changed_at: revision,
            modified: now,
            changed: None,
            since: revision,
            notices: watch::channel(Bytes::new()).0,
            last_used: 0,
        }
    }

    fn live(&self) -> bool {
        self.notices.receiver_count() > 0
    }

    fn record_change(&mut self, etag: Arc<str>, revision: u64, now: i64) {
        self.etag = etag;
        self.changed_at = revision;
        self.modified = now;
        self.changed = Some(Instant::now());
    }

    fn frame(&self, epoch: u64) -> Bytes {
        wire::frame(epoch + self.changed_at, &self.etag, self.modified)
    }

    /// Sends the current frame to the group's streams.
    fn notify(&self, epoch: u64) {
        if self.live() {
            self.notices.send_replace(self.frame(epoch));
        }
    }
}

#[derive(Debug, Default)]
struct Registry {
    groups: FxHashMap<GroupKey, Group>,
    /// Counts registry operations; orders groups by last use.
    clock: u64,
    /// The context bytes held by all groups.
    context_bytes: usize,
    /// The clock value from which the next scan for groups to forget may run.
    trim_at: u64,
    /// Set once the daemon shuts down: no new streams.
    closing: bool,
}

impl Registry {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Forgets the least recently used groups without streams while there are more than
    /// [`MAX_IDLE_GROUPS`] or their contexts take more than [`MAX_TOTAL_CONTEXT_BYTES`]; scans
    /// at most once every [`TRIM_EVERY`] operations.
    fn trim(&mut self) {
        if self.clock < self.trim_at {
            return;
        }
        self.trim_at = self.clock + TRIM_EVERY;
        let idle_count = self.groups.values().filter(|g| !g.live()).count();
        if idle_count <= MAX_IDLE_GROUPS && self.context_bytes <= MAX_TOTAL_CONTEXT_BYTES {
            return;
        }
        let mut idle: Vec<(u64, GroupKey)> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.live())
            .map(|(k, g)| (g.last_used, k.clone()))
            .collect();
        let keep = MAX_IDLE_GROUPS * 3 / 4;
        let byte_goal = MAX_TOTAL_CONTEXT_BYTES * 3 / 4;
        idle.sort_unstable_by_key(|(used, _)| *used);
        let mut left = idle.len();
        for (_, key) in idle {
            if left <= keep && self.context_bytes <= byte_goal {
                break;
            }
            if let Some(group) = self.groups.remove(&key) {
                self.context_bytes -= group.context_bytes;
            }
            left -= 1;
        }
    }
}

/// The changes one round of the hub handles together.
enum Batch {
    /// Some change sets were missed: every selection may have changed.
    Missed,
    Changes(Vec<Arc<Change>>),
}

impl Batch {
    fn add(&mut self, changed: Changed) {
        match changed {
            Changed::Missed => *self = Batch::Missed,
            Changed::Flags(change) => {
                if let Batch::Changes(list) = self {
                    list.push(change);
                }
            }
        }
    }

    fn affects(&self, selector: &Selector) -> bool {
        match self {
            Batch::Missed => true,
            Batch::Changes(list) => list.iter().any(|c| c.selected(selector).next().is_some()),
        }
    }
}

/// One stream's subscription: its group's frames, the shared beat and the frame to send first.
pub struct Subscriber {
    /// The group's latest frame.
    pub notices: watch::Receiver<Bytes>,
    /// Keep-alive ticks and the shutdown signal.
    pub beat: watch::Receiver<Beat>,
    /// Sent before anything else (a resumed stream that missed a change).
    pub first: Option<Bytes>,
}

/// The OFREP event streams of one daemon: the groups, the bulk handler's side (tokens and
/// `eventStreams`), the streams' side (subscriptions) and the task that follows the store.
#[derive(Debug)]
pub struct OfrepStreams {
    settings: SseSettings,
    store: Arc<Store>,
    /// Event ids are `epoch + store revision`, with `epoch` the start time in unix
    /// milliseconds: ids keep growing across restarts, so an id from an earlier process is
    /// recognised as one.
    epoch: u64,
    registry: Mutex<Registry>,
    beat: watch::Sender<Beat>,
    /// With `--revision-metadata`: the revision bulk bodies carry in every flag's metadata.
    revision: Option<Arc<AtomicU64>>,
}

impl OfrepStreams {
    /// The streams for `store`, and the task that follows its changes until `shutdown` turns
    /// true; then every stream ends.
    pub fn start(
        store: Arc<Store>,
        settings: SseSettings,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<OfrepStreams> {
        OfrepStreams::start_with_revision(store, settings, None, shutdown)
    }

    /// [`OfrepStreams::start`] for a daemon that reports the revision it serves in flag
    /// metadata (`--revision-metadata`): bodies rendered for a change carry it as the bulk
    /// handler's do.
    pub fn start_with_revision(
        store: Arc<Store>,
        settings: SseSettings,
        revision: Option<Arc<AtomicU64>>,
        shutdown: watch::Receiver<bool>,
    ) -> Arc<OfrepStreams> {
        let feed = ChangeFeed::new(&store, shutdown);
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2))
            .unwrap_or_default();
        let streams = Arc::new(OfrepStreams {
            settings,
            store,
            epoch,
            registry: Mutex::default(),
            beat: watch::channel(Beat::Tick(0)).0,
            revision,
        });
        tokio::spawn(streams.clone().run(feed));
        streams
    }

    /// The settings the streams were started with.
    pub fn settings(&self) -> &SseSettings {
        &self.settings
    }

    /// The number of open streams.
    pub fn open_streams(&self) -> usize {
        self.lock()
            .groups
            .values()
            .map(|g| g.notices.receiver_count())
            .sum()
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bulk answer for `selector` and `context`, advertising the stream for them, and
    /// the token's group told what the client now holds. See [`render_bulk`].
    /// `evaluate` evaluates each flag for `context` (the handler goes through the resolution
    /// core, which counts it).
    pub fn bulk_answer<'s>(
        &self,
        snapshot: &'s Snapshot,
        selector: &'s Selector,
        revision: Option<&Value>,
        context: &Value,
        evaluate: impl FnMut(&'s Flag) -> Evaluation<'s>,
    ) -> BulkAnswer {
        let mut canonical = String::new();
        write_value(&mut canonical, context);
        let size = canonical.len();
        let key = (size <= MAX_CONTEXT_BYTES)
            .then(|| GroupKey {
                selector: selector.clone(),
                token: Some(Token::of(selector, &canonical)),
            })
            .filter(|key| self.admits(key, size));
        let uri = wire::request_uri(selector, key.as_ref().and_then(|k| k.token));
        let streams = wire::event_streams(&self.settings, &uri);
        let answer = render_bulk(snapshot, selector, revision, evaluate, Some(&streams));
        if let Some(key) = key {
            self.register(key, context, size, &answer.etag, snapshot.revision);
        }
        answer
    }

    /// Whether a context of `size` bytes for `key` may be kept.
    fn admits(&self, key: &GroupKey, size: usize) -> bool {
        let mut registry = self.lock();
        if registry
            .groups
            .get(key)
            .is_some_and(|g| g.context.is_some())
        {
            return true;
        }
        registry.trim();
        registry.context_bytes + size <= MAX_TOTAL_CONTEXT_BYTES
    }

    /// Records that a bulk request got `etag` for `key` at store revision `revision`.
    fn register(&self, key: GroupKey, context: &Value, size: usize, etag: &str, revision: u64) {
        let now = now_unix_seconds();
        let mut registry = self.lock();
        let clock = registry.tick();
        let mut added = 0;
        match registry.groups.get_mut(&key) {
            None => {
                let mut group = Group::new(revision, etag.into(), now);
                group.context = Some(Arc::new(context.clone()));
                group.context_bytes = size;
                group.last_used = clock;
                added = size;
                registry.groups.insert(key, group);
            }
            Some(group) => {
                group.last_used = clock;
                if group.context.is_none() {
                    // Streams connected with this token before this process saw its bulk
                    // request; from now on they are told bulk `ETag`s.
                    group.context = Some(Arc::new(context.clone()));
                    group.context_bytes = size;
                    added = size;
                    group.etag = etag.into();
                    group.checked_at = group.checked_at.max(revision);
                } else if !group.live() && revision > group.checked_at {
                    // Nobody follows the group, so nothing evaluated it since: this answer is
                    // its current state. (A followed group is kept current by the hub, which
                    // must still see the difference to tell its streams.)
                    group.checked_at = revision;
                    if *group.etag != *etag {
                        group.record_change(etag.into(), revision, now);
                    }
                }
            }
        }
        registry.context_bytes += added;
        registry.trim();
    }

    /// The selection's version as the streams know it (the store revision at which its flags
    /// last changed), when a plain stream follows it or did recently.
    pub fn selection_version(&self, selector: &Selector) -> Option<u64> {
        let key = GroupKey {
            selector: selector.clone(),
            token: None,
        };
        self.lock().groups.get(&key).map(|g| g.changed_at)
    }

    /// Subscribes a stream to (`selector`, `token`). `last_event_id` is the `Last-Event-ID` of a
    /// reconnecting client: if its answer changed since that event (or the id cannot be
    /// judged), the current event is sent at once. A first connection gets the current event
    /// at once when its answer changed in the last few seconds, or since its bulk request.
    /// `None` once the daemon shuts down.
    pub fn subscribe(
        &self,
        selector: Selector,
        token: Option<Token>,
        last_event_id: Option<&str>,
    ) -> Option<Subscriber> {
        let snapshot = self.store.snapshot_full();
        let revision = snapshot.revision;
        let now = now_unix_seconds();
        let resume = last_event_id.map(|id| self.revision_of(id, revision));
        let key = GroupKey { selector, token };
        let (notices, stale) = {
            let mut registry = self.lock();
            if registry.closing {
                return None;
            }
            let clock = registry.tick();
            let group = registry
                .groups
                .entry(key.clone())
                .or_insert_with(|| Group::new(revision, revision.to_string().into(), now));
            group.last_used = clock;
            let stale = group
                .context
                .clone()
                .filter(|_| !group.live() && group.checked_at < revision);
            let notices = group.notices.subscribe();
            registry.trim();
            (notices, stale)
        };
        // A group nobody followed may be behind: evaluate its answer again.
        if let Some(context) = stale {
            let answer = self.render(&snapshot, &key, &context);
            if let Some(group) = self.lock().groups.get_mut(&key)
                && revision > group.checked_at
            {
                group.checked_at = revision;
                if *group.etag != *answer.etag {
                    group.record_change(answer.etag.into(), revision, now);
                }
            }
        }
        let first = {
            let registry = self.lock();
            registry.groups.get(&key).and_then(|group| {
                let due = match resume {
                    None => group.changed.is_some_and(|at| at.elapsed() < RECENT),
                    Some(None) => true,
                    Some(Some(after)) => after < group.since || group.changed_at > after,
                };
                due.then(|| group.frame(self.epoch))
            })
        };
        Some(Subscriber {
            notices,
            beat: self.beat.subscribe(),
            first,
        })
    }

    /// The store revision an event id stands for; `None` when the id is not one of this
    /// process's (an earlier process, a future revision, not a number).
    fn revision_of(&self, id: &str, current: u64) -> Option<u64> {
        let id: u64 = id.trim().parse().ok()?;
        id.checked_sub(self.epoch).filter(|r| *r <= current)
    }

    /// The bulk body of a group with a context, exactly as the bulk handler renders it.
    fn render(&self, snapshot: &Snapshot, key: &GroupKey, context: &Value) -> BulkAnswer {
        let uri = wire::request_uri(&key.selector, key.token);
        let streams = wire::event_streams(&self.settings, &uri);
        let now = now_unix_seconds();
        let revision = self
            .revision
            .as_ref()
            .map(|r| Value::from(r.load(Ordering::Acquire)));
        render_bulk(
            snapshot,
            &key.selector,
            revision.as_ref(),
            |flag| flag.evaluate(context, now),
            Some(&streams),
        )
    }

    /// Follows the store until shutdown, and ticks the keep-alive beat.
    async fn run(self: Arc<Self>, mut feed: ChangeFeed) {
        let period = self.settings.keep_alive;
        let mut ticker = (!period.is_zero()).then(|| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        let mut beats = 0;
        loop {
            tokio::select! {
                changed = feed.next() => {
                    let Some(changed) = changed else { break };
                    let mut batch = Batch::Changes(Vec::new());
                    batch.add(changed);
                    // Changes published meanwhile are handled in the same round.
                    while let Some(more) = feed.try_next() {
                        batch.add(more);
                    }
                    self.publish(&batch).await;
                }
                _ = tick(&mut ticker) => {
                    beats += 1;
                    self.beat.send_replace(Beat::Tick(beats));
                }
            }
        }
        self.lock().closing = true;
        self.beat.send_replace(Beat::Closing);
    }

    /// Tells every group whose selection `batch` touched.
    async fn publish(self: &Arc<Self>, batch: &Batch) {
        let snapshot = self.store.snapshot_full();
        let revision = snapshot.revision;
        let now = now_unix_seconds();
        let mut work = Vec::new();
        {
            let mut registry = self.lock();
            for (key, group) in &mut registry.groups {
                if group.checked_at >= revision || !batch.affects(&key.selector) {
                    continue;
                }
                match &group.context {
                    Some(context) => {
                        if group.live() {
                            work.push((key.clone(), context.clone()));
                        }
                    }
                    None => {
                        group.checked_at = revision;
                        group.record_change(revision.to_string().into(), revision, now);
                        group.notify(self.epoch);
                    }
                }
            }
        }
        if work.is_empty() {
            return;
        }
        let this = self.clone();
        let rendered = tokio::task::spawn_blocking(move || this.render_all(&snapshot, work))
            .await
            .unwrap_or_default();
        let mut registry = self.lock();
        for (key, etag) in rendered {
            let Some(group) = registry.groups.get_mut(&key) else {
                continue;
            };
            if revision <= group.checked_at {
                continue;
            }
            group.checked_at = revision;
            if *group.etag != *etag {
                group.record_change(etag, revision, now);
                group.notify(self.epoch);
            }
        }
    }

    /// The `ETag` of each group's bulk body, rendered on all cores when there are many.
    fn render_all(
        &self,
        snapshot: &Snapshot,
        work: Vec<(GroupKey, Arc<Value>)>,
    ) -> Vec<(GroupKey, Arc<str>)> {
        let one = |(key, context): (GroupKey, Arc<Value>)| {
            let etag: Arc<str> = self.render(snapshot, &key, &context).etag.into();
            (key, etag)
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if work.len() < PARALLEL_FROM || threads < 2 {
            return work.into_iter().map(one).collect();
        }
        let chunk = work.len().div_ceil(threads);
        let mut parts: Vec<Vec<(GroupKey, Arc<Value>)>> = Vec::with_capacity(threads);
        let mut rest = work.into_iter();
        for _ in 0..threads {
            parts.push(rest.by_ref().take(chunk).collect());
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = parts
                .into_iter()
                .map(|part| scope.spawn(move || part.into_iter().map(one).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }
}

/// The next keep-alive tick; never without keep-alives.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use flagd_evaluator::{Format, LoadOptions};
    use serde_json::json;

    use super::*;
    use crate::store::{SourceEvent, SourceUpdate};

    /// A store with one flag in set `a` (`fa`, targeted on `tier`) and one in set `b` (`fb`).
    fn store() -> Arc<Store> {
        let store = Store::new(vec!["s".into()], LoadOptions::default());
        load(&store, "gold", "x");
        store
    }

    fn load(store: &Store, tier: &str, b: &str) {
        let doc = json!({"flags": {
            "fa": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                   "targeting": {"if": [{"==": [{"var": "tier"}, tier]}, "on", "off"]},
                   "metadata": {"flagSetId": "a"}},
            "fb": {"state": "ENABLED", "variants": {"v": b}, "defaultVariant": "v",
                   "metadata": {"flagSetId": "b"}}
        }});
        let event = SourceEvent::Content {
            bytes: doc.to_string().into_bytes(),
            format: Format::Json,
        };
        store.apply(SourceUpdate { source: 0, event }).unwrap();
    }

    fn settings() -> SseSettings {
        SseSettings {
            keep_alive: Duration::ZERO,
            ..SseSettings::default()
        }
    }

    fn bulk(streams: &OfrepStreams, store: &Store, selector: &Selector, ctx: &Value) -> BulkAnswer {
        let snapshot = store.snapshot();
        let now = now_unix_seconds();
        streams.bulk_answer(&snapshot, selector, None, ctx, |flag| {
            flag.evaluate(ctx, now)
        })
    }

    /// The token a bulk answer advertises.
    fn token_of(answer: &BulkAnswer) -> Token {
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        let uri = body["eventStreams"][0]["endpoint"]["requestUri"]
            .as_str()
            .unwrap();
        Token::parse(uri.split_once("ctx=").unwrap().1).unwrap()
    }

    async fn next(sub: &mut Subscriber) -> Value {
        let changed = tokio::time::timeout(Duration::from_secs(10), sub.notices.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "no event");
        event_data(&sub.notices.borrow_and_update())
    }

    fn event_data(frame: &[u8]) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(data).unwrap()
    }

    async fn quiet(sub: &mut Subscriber) {
        let waited = tokio::time::timeout(Duration::from_millis(200), sub.notices.changed()).await;
        assert!(waited.is_err(), "unexpected event");
    }

    #[tokio::test]
    async fn an_event_announces_the_etag_of_the_next_bulk_answer() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let set_a = Selector::FlagSet("a".into());
        let ctx = json!({"targetingKey": "u1", "tier": "silver"});
        let first = bulk(&streams, &store, &set_a, &ctx);
        let token = token_of(&first);
        // The same request gets the same body and tag.
        assert_eq!(bulk(&streams, &store, &set_a, &ctx), first);
        let mut sub = streams.subscribe(set_a.clone(), Some(token), None).unwrap();
        assert!(sub.first.is_none());
        assert_eq!(streams.open_streams(), 1);

        // A change in another flag set: nothing.
        load(&store, "gold", "y");
        quiet(&mut sub).await;
        // A change of the selection that leaves this context's answer as it was: nothing.
        load(&store, "bronze", "y");
        quiet(&mut sub).await;
        // A change of this context's answer: the event carries the next bulk answer's tag.
        load(&store, "silver", "y");
        let data = next(&mut sub).await;
        assert_eq!(data["type"], "refetchEvaluation");
        let again = bulk(&streams, &store, &set_a, &ctx);
        assert_ne!(again.etag, first.etag);
        assert_eq!(data["etag"], again.etag.as_str());
        assert!(data["lastModified"].as_i64().unwrap() > 1_700_000_000);
    }

    #[tokio::test]
    async fn plain_streams_hear_their_selection_version() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let set_b = Selector::FlagSet("b".into());
        let mut sub = streams.subscribe(set_b.clone(), None, None).unwrap();
        let before = store.snapshot().revision;
        assert_eq!(streams.selection_version(&set_b), Some(before));
        load(&store, "silver", "x");
        quiet(&mut sub).await;
        load(&store, "silver", "z");
        let data = next(&mut sub).await;
        let revision = store.snapshot().revision;
        assert_eq!(data["etag"], revision.to_string());
        assert_eq!(streams.selection_version(&set_b), Some(revision));
        let snapshot = store.snapshot();
        assert!(!crate::server::ofrep_sse::vetoes(
            Some(&streams),
            &snapshot,
            &set_b,
            &revision.to_string(),
            "\"x\""
        ));
        assert!(crate::server::ofrep_sse::vetoes(
            Some(&streams),
            &snapshot,
            &set_b,
            &before.to_string(),
            "\"x\""
        ));
    }

    #[tokio::test]
    async fn a_resumed_stream_gets_what_it_missed_and_nothing_else() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let all = Selector::All;
        let mut sub = streams.subscribe(all.clone(), None, None).unwrap();
        load(&store, "silver", "x");
        next(&mut sub).await;
        let frame = sub.notices.borrow().clone();
        let text = std::str::from_utf8(&frame).unwrap().to_owned();
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .unwrap()
            .to_owned();
        drop(sub);

        // Nothing changed since that id.
        let sub = streams.subscribe(all.clone(), None, Some(&id)).unwrap();
        assert!(sub.first.is_none());
        drop(sub);
        // An id this process never sent: the current event at once.
        for unknown in ["1", "not a number", &u64::MAX.to_string()] {
            let sub = streams.subscribe(all.clone(), None, Some(unknown)).unwrap();
            assert!(sub.first.is_some(), "{unknown}");
        }
        // A change while disconnected.
        load(&store, "bronze", "x");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sub = streams.subscribe(all.clone(), None, Some(&id)).unwrap();
        let first = event_data(sub.first.as_ref().unwrap());
        assert_eq!(first["etag"], store.snapshot().revision.to_string());
    }

    #[tokio::test]
    async fn a_token_stream_connecting_after_a_change_is_told_at_once() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let ctx = json!({"tier": "silver"});
        let answer = bulk(&streams, &store, &Selector::All, &ctx);
        // The answer changes between the bulk request and the stream's connection.
        load(&store, "silver", "x");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sub = streams
            .subscribe(Selector::All, Some(token_of(&answer)), None)
            .unwrap();
        let first = event_data(sub.first.as_ref().unwrap());
        assert_eq!(
            first["etag"],
            bulk(&streams, &store, &Selector::All, &ctx).etag.as_str()
        );
    }

    #[tokio::test]
    async fn an_unknown_token_is_followed_by_version_until_its_bulk_request() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let ctx = json!({"tier": "silver"});
        let mut canonical = String::new();
        write_value(&mut canonical, &ctx);
        let token = Token::of(&Selector::All, &canonical);
        let mut sub = streams.subscribe(Selector::All, Some(token), None).unwrap();
        load(&store, "silver", "x");
        assert_eq!(
            next(&mut sub).await["etag"],
            store.snapshot().revision.to_string()
        );
        // The bulk request (after a restart, the client's re-fetch) teaches the context.
        let answer = bulk(&streams, &store, &Selector::All, &ctx);
        assert_eq!(token_of(&answer), token);
        load(&store, "bronze", "x");
        let data = next(&mut sub).await;
        assert_eq!(
            data["etag"],
            bulk(&streams, &store, &Selector::All, &ctx).etag.as_str()
        );
    }

    #[tokio::test]
    async fn memory_stays_bounded() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        for i in 0..(MAX_IDLE_GROUPS + 1000) {
            let answer = bulk(
                &streams,
                &store,
                &Selector::All,
                &json!({"targetingKey": i}),
            );
            assert!(answer.body.contains("?ctx="));
        }
        let registry = streams.lock();
        assert!(registry.groups.len() <= MAX_IDLE_GROUPS + TRIM_EVERY as usize);
        let held: usize = registry.groups.values().map(|g| g.context_bytes).sum();
        assert_eq!(held, registry.context_bytes);
        drop(registry);
        // A context too large to keep gets the plain stream.
        let big = json!({"blob": "x".repeat(MAX_CONTEXT_BYTES)});
        let answer = bulk(&streams, &store, &Selector::All, &big);
        assert!(answer.body.contains(r#""requestUri":"/ofrep/v1/sse"}"#));
    }

    #[tokio::test]
    async fn streams_end_on_shutdown_and_none_start_after() {
        let store = store();
        let (stop, shutdown) = watch::channel(false);
        let streams = OfrepStreams::start(store.clone(), settings(), shutdown);
        let mut sub = streams.subscribe(Selector::All, None, None).unwrap();
        stop.send_replace(true);
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            sub.beat.wait_for(|b| *b == Beat::Closing),
        )
        .await;
        assert!(matches!(closed, Ok(Ok(_))));
        assert!(streams.subscribe(Selector::All, None, None).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn keep_alives_beat_at_the_interval() {
        let store = store();
        let (_stop, shutdown) = watch::channel(false);
        let settings = SseSettings {
            keep_alive: Duration::from_secs(30),
            ..SseSettings::default()
        };
        let streams = OfrepStreams::start(store, settings, shutdown);
        let mut sub = streams.subscribe(Selector::All, None, None).unwrap();
        let start = tokio::time::Instant::now();
        sub.beat.changed().await.unwrap();
        assert_eq!(*sub.beat.borrow_and_update(), Beat::Tick(1));
        assert_eq!(start.elapsed(), Duration::from_secs(30));
        sub.beat.changed().await.unwrap();
        assert_eq!(*sub.beat.borrow_and_update(), Beat::Tick(2));
    }
}
