//! The shared store suite: the file journal and the etcd journal pass the same tests
//! (append-if-head, reads from a revision, the feed of other writers' revisions, reopening,
//! compaction, concurrent writers), each written once and run on both. The etcd half runs on
//! a real 3-member cluster; a few tests only make sense there (etcd's own compaction past a
//! stopped watcher, members killed during writes).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flagd_evaluator::OverridePatch;
use flagd_rs::authority::journal::{
    FileJournal, Journal, JournalError, OverrideChange, Replay, Replicated, RevisionInfo,
    RevisionKind, Segment, Snapshot,
};
use flagd_rs::fleet::etcd::{
    EtcdClient, EtcdConfig, EtcdError, Get, KeyRange, LeaseState, Put, WatchOptions,
};
use flagd_rs::fleet::journal::{EtcdJournal, EtcdJournalOptions, Fence};
use flagd_rs_tests::etcd::EtcdCluster;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long a feed may take to deliver what another writer appended.
const FEED_TIMEOUT: Duration = Duration::from_secs(20);

/// Revision `revision`, written by `by`, setting flag `f`'s default variant.
fn record(revision: u64, by: &str) -> RevisionInfo {
    record_with(revision, by, &format!("change {revision}"))
}

fn record_with(revision: u64, by: &str, reason: &str) -> RevisionInfo {
    RevisionInfo {
        revision,
        time: "2025-01-01T00:00:00.000Z".into(),
        actor: by.into(),
        reason: reason.into(),
        kind: RevisionKind::Set,
        flag: Some("f".into()),
        changes: vec![OverrideChange {
            flag: "f".into(),
            before: None,
            after: Some(OverridePatch {
                default_variant: Some(format!("v{revision}")),
                ..OverridePatch::default()
            }),
        }],
        restored: None,
        event: None,
    }
}

fn records(from: u64, to: u64) -> Vec<RevisionInfo> {
    (from..=to).map(|r| record(r, "suite")).collect()
}

fn append(journal: &dyn Journal, from: u64, to: u64) {
    for r in from..=to {
        let head = journal
            .append_if_head(r - 1, &record(r, "suite"))
            .unwrap_or_else(|e| panic!("append {r}: {e}"));
        assert_eq!(head, r);
    }
}

/// The snapshot after `replay` and `extra`.
fn snapshot_of(replay: &Replay, extra: &[RevisionInfo]) -> Snapshot {
    let base = replay.snapshot.clone().unwrap_or_default();
    let all: Vec<RevisionInfo> = replay.records.iter().chain(extra).cloned().collect();
    base.advanced(&all, "2025-01-02T00:00:00.000Z".into())
}

/// Appends revisions as `by` while `go_on(head)` holds: on a conflict it goes on from the new
/// head; after an unanswered write it offers the same record again (if the first attempt was
/// applied after all, the journal recognises it). Records what was acknowledged.
fn write_while(
    journal: &dyn Journal,
    by: &str,
    go_on: impl Fn(u64) -> bool,
    acknowledged: &Mutex<BTreeMap<u64, RevisionInfo>>,
) {
    let mut attempt = 0u64;
    let mut pending: Option<RevisionInfo> = None;
    loop {
        let head = journal.head();
        if !go_on(head) {
            return;
        }
        attempt += 1;
        let wanted = match pending.take() {
            Some(r) if r.revision == head + 1 => r,
            _ => record_with(head + 1, by, &format!("{by} try {attempt}")),
        };
        match journal.append_if_head(head, &wanted) {
            Ok(r) => {
                assert_eq!(r, wanted.revision);
                let previous = acknowledged.lock().unwrap().insert(r, wanted);
                assert!(previous.is_none(), "revision {r} acknowledged twice");
            }
            Err(JournalError::Unavailable(_)) => pending = Some(wanted),
            Err(JournalError::Conflict { .. }) => {}
            Err(e) => panic!("{by}: {e}"),
        }
    }
}

/// Checks what is stored against what was acknowledged: revisions 1..=N, dense, each record
/// written once, every acknowledged append stored as written.
fn check_stored(name: &str, stored: &[RevisionInfo], acknowledged: &BTreeMap<u64, RevisionInfo>) {
    let numbers: Vec<u64> = stored.iter().map(|r| r.revision).collect();
    assert_eq!(
        numbers,
        (1..=stored.len() as u64).collect::<Vec<_>>(),
        "{name}"
    );
    let mut reasons = std::collections::BTreeSet::new();
    for r in stored {
        assert!(
            reasons.insert(&r.reason),
            "{name}: `{}` stored twice",
            r.reason
        );
    }
    for (revision, wanted) in acknowledged {
        assert_eq!(
            stored.get(*revision as usize - 1),
            Some(wanted),
            "{name}: acknowledged revision {revision} is not stored as written"
        );
    }
}

/// A store both journals can live in.
enum Store {
    /// A state directory: one journal at a time (the directory's lock), so "writers" share it.
    File(tempfile::TempDir),
    /// A prefix on a real etcd cluster: any number of journals at once.
    Etcd {
        cluster: Box<EtcdCluster>,
        prefix: String,
        // Dropped last: the cluster's client and the journals' tasks live on it.
        runtime: Runtime,
    },
}

impl Store {
    fn file() -> Store {
        Store::File(tempfile::tempdir().expect("a state directory"))
    }

    fn etcd(suite: &str) -> Option<Store> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let cluster = runtime.block_on(EtcdCluster::start(suite))?;
        Some(Store::Etcd {
            cluster: Box::new(cluster),
            prefix: "/flagd-rs/suite".into(),
            runtime,
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Store::File(_) => "file journal",
            Store::Etcd { .. } => "etcd journal",
        }
    }

    fn is_shared(&self) -> bool {
        matches!(self, Store::Etcd { .. })
    }

    /// A client for `config` on the store's runtime.
    fn client(&self, config: EtcdConfig) -> EtcdClient {
        let Store::Etcd { runtime, .. } = self else {
            panic!("the file store has no etcd client");
        };
        let _entered = runtime.enter();
        EtcdClient::connect(config).expect("an etcd client")
    }

    /// Opens a journal on the store and what it holds.
    fn open(&self) -> (Arc<dyn Journal>, Replay) {
        self.open_with(EtcdJournalOptions::default())
    }

    fn open_with(&self, options: EtcdJournalOptions) -> (Arc<dyn Journal>, Replay) {
        match self {
            Store::File(dir) => {
                // A child process another test forks in parallel holds a copy of the lock's
                // descriptor until it execs; a reopen right after a close can meet that copy.
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                let (journal, replay, _) = loop {
                    match FileJournal::open(dir.path()) {
                        Err(JournalError::Locked { .. })
                            if std::time::Instant::now() < deadline =>
                        {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        other => break other.expect("open the file journal"),
                    }
                };
                (Arc::new(journal), replay)
            }
            Store::Etcd {
                cluster,
                prefix,
                runtime,
            } => {
                let client = self.client(cluster.config());
                let (journal, replay) =
                    EtcdJournal::open_with(client, prefix, runtime.handle().clone(), options)
                        .expect("open the etcd journal");
                (Arc::new(journal), replay)
            }
        }
    }

    /// Waits for the next message of `feed`.
    fn next(&self, feed: &mut UnboundedReceiver<Replicated>) -> Replicated {
        let Store::Etcd { runtime, .. } = self else {
            panic!("the file store has no feed");
        };
        runtime
            .block_on(async { tokio::time::timeout(FEED_TIMEOUT, feed.recv()).await })
            .unwrap_or_else(|_| panic!("nothing arrived on the feed within {FEED_TIMEOUT:?}"))
            .expect("the feed is open")
    }

    /// Collects what `feed` delivers until revision `until` arrived: the revisions in order
    /// (resets replace what came before).
    fn follow_until(
        &self,
        feed: &mut UnboundedReceiver<Replicated>,
        until: u64,
    ) -> Vec<RevisionInfo> {
        let mut seen: Vec<RevisionInfo> = Vec::new();
        while seen.last().map_or(0, |r| r.revision) < until {
            match self.next(feed) {
                Replicated::Appended(batch) => {
                    let dense = batch.windows(2).all(|w| w[1].revision == w[0].revision + 1);
                    assert!(dense, "a batch out of order: {batch:?}");
                    seen.extend(batch);
                }
                Replicated::Reset(replay) => seen = replay.records,
            }
        }
        seen
    }
}

/// Runs `test` on the file journal, then on etcd (when etcd is installed; see
/// `flagd_rs_tests::require`).
fn each_store(suite: &str, test: impl Fn(&Store)) {
    test(&Store::file());
    if let Some(store) = Store::etcd(suite) {
        test(&store);
    }
}

#[test]
fn append_if_head_appends_in_order_and_refuses_a_stale_head() {
    each_store("store_suite::append_if_head", |store| {
        let name = store.name();
        let (journal, replay) = store.open();
        assert_eq!(replay, Replay::default(), "{name}");
        assert_eq!(journal.head(), 0, "{name}");
        append(&*journal, 1, 3);
        assert_eq!(journal.head(), 3, "{name}");
        match journal.append_if_head(2, &record(3, "late")) {
            Err(JournalError::Conflict {
                expected: 2,
                head: 3,
            }) => {}
            other => panic!("{name}: a stale head gave {other:?}"),
        }
        match journal.append_if_head(3, &record(5, "skip")) {
            Err(JournalError::OutOfOrder {
                revision: 5,
                head: 3,
            }) => {}
            other => panic!("{name}: a gap gave {other:?}"),
        }
        assert_eq!(journal.read_from(1).unwrap(), records(1, 3), "{name}");
    });
}

#[test]
fn read_from_returns_every_revision_from_n_archived_ones_included() {
    each_store("store_suite::read_from", |store| {
        let name = store.name();
        let (journal, replay) = store.open();
        append(&*journal, 1, 10);
        assert_eq!(journal.read_from(0).unwrap(), records(1, 10), "{name}");
        assert_eq!(journal.read_from(1).unwrap(), records(1, 10), "{name}");
        assert_eq!(journal.read_from(4).unwrap(), records(4, 10), "{name}");
        assert_eq!(journal.read_from(11).unwrap(), Vec::new(), "{name}");

        let snapshot = snapshot_of(&replay, &records(1, 10));
        assert_eq!(
            journal.compact(&snapshot).unwrap(),
            Some(Segment { first: 1, last: 10 }),
            "{name}"
        );
        append(&*journal, 11, 12);
        assert_eq!(journal.read_from(3).unwrap(), records(3, 12), "{name}");
        assert_eq!(journal.read_from(11).unwrap(), records(11, 12), "{name}");
    });
}

#[test]
fn reopening_replays_the_same_history() {
    each_store("store_suite::restore", |store| {
        let name = store.name();
        let (journal, replay) = store.open();
        append(&*journal, 1, 5);
        journal.close();
        drop(journal);
        let (journal, again) = store.open();
        assert_eq!(again.snapshot, None, "{name}");
        assert_eq!(again.records, records(1, 5), "{name}");
        assert_eq!(journal.head(), 5, "{name}");

        let snapshot = snapshot_of(&replay, &records(1, 5));
        journal.compact(&snapshot).unwrap().expect("a segment");
        append(&*journal, 6, 8);
        let segments = journal.segments();
        journal.close();
        drop(journal);

        let (journal, again) = store.open();
        assert_eq!(again.snapshot.as_ref(), Some(&snapshot), "{name}");
        assert_eq!(again.records, records(6, 8), "{name}");
        assert_eq!(again.head(), 8, "{name}");
        assert_eq!(journal.head(), 8, "{name}");
        assert_eq!(journal.segments(), segments, "{name}");
        assert_eq!(journal.read_from(1).unwrap(), records(1, 8), "{name}");
    });
}

#[test]
fn compaction_moves_revisions_into_archive_segments() {
    each_store("store_suite::compaction", |store| {
        let name = store.name();
        let (journal, replay) = store.open();
        append(&*journal, 1, 4);
        let first = snapshot_of(&replay, &records(1, 4));
        let wrong = Snapshot {
            revision: 3,
            ..first.clone()
        };
        assert!(
            matches!(journal.compact(&wrong), Err(JournalError::Conflict { .. })),
            "{name}: a snapshot behind the head was taken"
        );
        assert_eq!(
            journal.compact(&first).unwrap(),
            Some(Segment { first: 1, last: 4 }),
            "{name}"
        );
        assert_eq!(
            journal.compact(&first).unwrap(),
            None,
            "{name}: nothing left"
        );
        append(&*journal, 5, 7);
        let second = snapshot_of(
            &Replay {
                snapshot: Some(first.clone()),
                records: Vec::new(),
            },
            &records(5, 7),
        );
        assert_eq!(
            journal.compact(&second).unwrap(),
            Some(Segment { first: 5, last: 7 }),
            "{name}"
        );
        assert_eq!(
            journal.segments(),
            vec![Segment { first: 1, last: 4 }, Segment { first: 5, last: 7 }],
            "{name}"
        );
        let older = journal
            .read_segment(&Segment { first: 1, last: 4 })
            .unwrap();
        assert_eq!(
            (older.snapshot, older.records),
            (None, records(1, 4)),
            "{name}"
        );
        let newer = journal
            .read_segment(&Segment { first: 5, last: 7 })
            .unwrap();
        assert_eq!(newer.snapshot.as_ref(), Some(&first), "{name}");
        assert_eq!(newer.records, records(5, 7), "{name}");
        assert!(
            matches!(
                journal.read_segment(&Segment { first: 8, last: 9 }),
                Err(JournalError::Missing { revision: 8 })
            ),
            "{name}"
        );
        assert_eq!(journal.read_from(2).unwrap(), records(2, 7), "{name}");
        journal.close();
        drop(journal);
        let (journal, again) = store.open();
        assert_eq!(again.snapshot, Some(second), "{name}");
        assert!(again.records.is_empty(), "{name}");
        append(&*journal, 8, 8);
    });
}

#[test]
fn compaction_is_asked_for_once_the_live_part_grows() {
    each_store("store_suite::compaction_due", |store| {
        let name = store.name();
        let (journal, replay) = match store {
            Store::File(dir) => {
                let options = flagd_rs::authority::journal::FileOptions {
                    compact_bytes: 2000,
                };
                let (journal, replay, _) = FileJournal::open_with(dir.path(), options).unwrap();
                (Arc::new(journal) as Arc<dyn Journal>, replay)
            }
            Store::Etcd { .. } => store.open_with(EtcdJournalOptions {
                compact_bytes: 2000,
                ..EtcdJournalOptions::default()
            }),
        };
        assert!(!journal.compaction_due(), "{name}");
        let mut head = 0;
        while !journal.compaction_due() {
            head += 1;
            append(&*journal, head, head);
            assert!(head < 100, "{name}: compaction never became due");
        }
        journal
            .compact(&snapshot_of(&replay, &records(1, head)))
            .unwrap()
            .expect("a segment");
        assert!(!journal.compaction_due(), "{name}");
    });
}

/// What one writer appends reaches every other journal on the store, each batch whole and in
/// order; a store only one writer can open refuses the second one instead.
#[test]
fn other_writers_revisions_arrive_whole_and_in_order() {
    each_store("store_suite::watch", |store| {
        let name = store.name();
        let (a, _) = store.open();
        if !store.is_shared() {
            assert!(a.replicated().is_none(), "{name}");
            assert!(a.health().is_none(), "{name}");
            let Store::File(dir) = store else {
                unreachable!()
            };
            assert!(
                matches!(
                    FileJournal::open(dir.path()),
                    Err(JournalError::Locked { .. })
                ),
                "{name}: a second writer opened the journal"
            );
            return;
        }
        let (b, _) = store.open();
        let mut feed_b = b.replicated().expect("a feed");
        assert!(b.replicated().is_none(), "{name}: the feed is taken once");
        let mut feed_a = a.replicated().expect("a feed");
        append(&*a, 1, 5);
        assert_eq!(store.follow_until(&mut feed_b, 5), records(1, 5), "{name}");
        assert_eq!(b.head(), 5, "{name}");
        let health = b.health().expect("a shared journal's health");
        assert!(
            health.connected && health.confirmed.is_some(),
            "{name}: {health:?}"
        );

        // B writes next, on the head it learned from the feed; A hears of it.
        append(&*b, 6, 7);
        let seen = store.follow_until(&mut feed_a, 7);
        assert_eq!(&seen[seen.len() - 2..], &records(6, 7)[..], "{name}");
        assert_eq!(a.head(), 7, "{name}");

        // A compaction by B is no gap for A: A's next append goes on from the head.
        let snapshot = snapshot_of(&Replay::default(), &records(1, 7));
        b.compact(&snapshot).unwrap().expect("a segment");
        append(&*a, 8, 8);
        assert_eq!(
            store.follow_until(&mut feed_b, 8).last(),
            Some(&record(8, "suite"))
        );
        let deadline = std::time::Instant::now() + FEED_TIMEOUT;
        while a.segments().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{name}: A never saw the segment"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(a.segments(), vec![Segment { first: 1, last: 7 }], "{name}");
    });
}

/// Writers racing for the same head: every revision is stored exactly once, with no gap, and
/// every acknowledged append is the one stored at its revision.
#[test]
fn concurrent_writers_store_every_revision_once_without_gaps() {
    each_store("store_suite::concurrent_writers", |store| {
        const TOTAL: u64 = 60;
        let name = store.name();
        let (first, _) = store.open();
        let writers: Vec<Arc<dyn Journal>> = if store.is_shared() {
            vec![first.clone(), store.open().0, store.open().0]
        } else {
            vec![first.clone(), first.clone(), first.clone()]
        };
        let acknowledged = Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for (w, journal) in writers.iter().enumerate() {
                let acknowledged = &acknowledged;
                scope.spawn(move || {
                    write_while(
                        &**journal,
                        &format!("writer-{w}"),
                        |head| head < TOTAL,
                        acknowledged,
                    );
                });
            }
        });
        let stored = first.read_from(1).unwrap();
        assert_eq!(stored.len() as u64, TOTAL, "{name}");
        check_stored(name, &stored, &acknowledged.into_inner().unwrap());
    });
}

/// etcd's own MVCC compaction past a journal whose watch was stopped: when it comes back it
/// cannot resume the watch, so it reads the journal again and hands on a reset.
#[test]
fn etcd_compaction_past_a_stopped_watcher_resets_it() {
    let Some(store) = Store::etcd("store_suite::etcd_compaction") else {
        return;
    };
    let Store::Etcd {
        cluster, runtime, ..
    } = &store
    else {
        unreachable!()
    };
    let leader = runtime.block_on(cluster.leader());
    let member = (leader + 1) % cluster.len();
    let (a, _) = store.open();
    // B watches through one member only.
    let client = store.client(EtcdConfig::new([cluster.endpoint(member)]));
    let Store::Etcd { prefix, .. } = &store else {
        unreachable!()
    };
    let (b, _) = EtcdJournal::open(client, prefix, runtime.handle().clone()).expect("open B");
    let mut feed = b.replicated().expect("a feed");
    append(&*a, 1, 3);
    assert_eq!(store.follow_until(&mut feed, 3), records(1, 3));

    // B's member goes away; the others write on and compact etcd's history.
    let mut store = store;
    let Store::Etcd {
        cluster, runtime, ..
    } = &mut store
    else {
        unreachable!()
    };
    cluster.kill9(member);
    append(&*a, 4, 6);
    let revision = runtime.block_on(cluster.revision());
    runtime.block_on(cluster.compact(revision));
    runtime.block_on(cluster.restart(member));

    let mut reset = None;
    while reset.is_none() {
        match store.next(&mut feed) {
            Replicated::Reset(replay) => reset = Some(replay),
            Replicated::Appended(batch) => panic!("B resumed past etcd's compaction: {batch:?}"),
        }
    }
    let replay = reset.unwrap();
    assert_eq!(replay.records, records(1, 6));
    assert_eq!(b.head(), 6);
    append(&b, 7, 7);
}

/// Appends in a loop while one member, then the raft leader, is killed with SIGKILL: every
/// acknowledged append is stored at its revision, and the stored revisions are dense.
#[test]
fn acknowledged_appends_survive_kill9_of_a_member_and_of_the_leader() {
    let Some(mut store) = Store::etcd("store_suite::kill9") else {
        return;
    };
    let (journal, _) = store.open();
    let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let journal = journal.clone();
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            write_while(
                &*journal,
                "writer",
                |_| !stop.load(Ordering::Relaxed),
                &acknowledged,
            );
        })
    };
    let grown = |at_least: usize| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acknowledged.lock().unwrap().len() < at_least {
            assert!(std::time::Instant::now() < deadline, "appends stalled");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let Store::Etcd {
        cluster, runtime, ..
    } = &mut store
    else {
        unreachable!()
    };
    grown(20);
    let leader = runtime.block_on(cluster.leader());
    let follower = (leader + 1) % cluster.len();
    cluster.kill9(follower);
    let count = acknowledged.lock().unwrap().len();
    grown(count + 20);
    runtime.block_on(cluster.restart(follower));
    let leader = runtime.block_on(cluster.leader());
    cluster.kill9(leader);
    let count = acknowledged.lock().unwrap().len();
    grown(count + 20);
    runtime.block_on(cluster.restart(leader));
    let count = acknowledged.lock().unwrap().len();
    grown(count + 10);
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("the writer");

    let stored = journal.read_from(1).unwrap();
    check_stored("etcd journal", &stored, &acknowledged.lock().unwrap());
    // A journal opened now replays exactly that.
    let (_, replay) = store.open();
    assert_eq!(replay.records, stored);
}

/// A rollout record written under a fence is refused once another replica holds the leader
/// key; other records are not fenced.
#[test]
fn a_fenced_rollout_record_is_refused_once_the_leader_key_changed() {
    let Some(store) = Store::etcd("store_suite::fence") else {
        return;
    };
    let Store::Etcd {
        cluster,
        prefix,
        runtime,
    } = &store
    else {
        unreachable!()
    };
    let client = store.client(cluster.config());
    let (journal, _) = EtcdJournal::open(client.clone(), prefix, runtime.handle().clone()).unwrap();
    let key = journal.keys().controller().to_owned();
    let won = runtime
        .block_on(client.put(Put::new(key.clone(), "replica-a")))
        .unwrap();
    journal.fencing().set(Fence {
        key: key.clone(),
        create_revision: won.revision,
    });
    let rollout = |revision: u64| RevisionInfo {
        kind: RevisionKind::Rollout,
        ..record(revision, "rollout")
    };
    assert_eq!(journal.append_if_head(0, &rollout(1)).unwrap(), 1);
    // Another replica wins: the key is created again.
    runtime
        .block_on(client.delete(KeyRange::key(key.clone())))
        .unwrap();
    runtime
        .block_on(client.put(Put::new(key.clone(), "replica-b")))
        .unwrap();
    assert!(matches!(
        journal.append_if_head(1, &rollout(2)),
        Err(JournalError::NotLeader)
    ));
    assert_eq!(journal.append_if_head(1, &record(2, "admin")).unwrap(), 2);
    journal.fencing().clear();
    assert_eq!(journal.append_if_head(2, &rollout(3)).unwrap(), 3);
}

/// A replica that starts from its local copy (etcd may be down) serves that copy, refuses
/// writes until it has read the store, and then hands on the store's state as a reset.
#[test]
fn a_journal_started_from_a_cached_copy_catches_up_with_a_reset() {
    let Some(mut store) = Store::etcd("store_suite::cached") else {
        return;
    };
    let (writer, _) = store.open();
    append(&*writer, 1, 4);
    let cached = Replay {
        snapshot: None,
        records: records(1, 2),
    };
    let Store::Etcd {
        cluster,
        prefix,
        runtime,
    } = &mut store
    else {
        unreachable!()
    };
    for member in 0..cluster.len() {
        cluster.stop(member);
    }
    let client = {
        let _entered = runtime.enter();
        EtcdClient::connect(cluster.config()).expect("an etcd client")
    };
    let journal = EtcdJournal::open_cached(
        client,
        prefix,
        runtime.handle().clone(),
        EtcdJournalOptions::default(),
        &cached,
    )
    .expect("a journal from the cached copy");
    let mut feed = journal.replicated().expect("a feed");
    assert_eq!(journal.head(), 2);
    assert!(!journal.health().expect("health").connected);
    assert!(matches!(
        journal.append_if_head(2, &record(3, "cached")),
        Err(JournalError::Unavailable(_))
    ));
    for member in 0..cluster.len() {
        cluster.cont(member);
    }
    match store.next(&mut feed) {
        Replicated::Reset(replay) => assert_eq!(replay.records, records(1, 4)),
        other => panic!("expected a reset first, got {other:?}"),
    }
    assert_eq!(journal.head(), 4);
    append(&journal, 5, 5);
    assert!(journal.health().expect("health").connected);
}

/// A member that freezes under a journal's watch does not stall its feed: the watch moves to
/// another member and resumes where it was, with nothing missed and no reset.
#[test]
fn a_frozen_member_does_not_stall_the_feed() {
    let Some(mut store) = Store::etcd("store_suite::frozen_member") else {
        return;
    };
    let options = EtcdJournalOptions {
        progress_interval: Duration::from_millis(200),
        ..EtcdJournalOptions::default()
    };
    let (writer, _) = store.open_with(options);
    let (reader, _) = store.open_with(options);
    let mut feed = reader.replicated().expect("a feed");
    append(&*writer, 1, 2);
    assert_eq!(store.follow_until(&mut feed, 2), records(1, 2));
    // A fresh client starts with the first member, so the reader's watch is there.
    let Store::Etcd { cluster, .. } = &mut store else {
        unreachable!()
    };
    cluster.stop(0);
    append(&*writer, 3, 5);
    let mut seen = Vec::new();
    while seen.last().map_or(0, |r: &RevisionInfo| r.revision) < 5 {
        match store.next(&mut feed) {
            Replicated::Appended(batch) => seen.extend(batch),
            Replicated::Reset(replay) => panic!("a reset although nothing was lost: {replay:?}"),
        }
    }
    assert_eq!(seen, records(3, 5));
    let Store::Etcd { cluster, .. } = &mut store else {
        unreachable!()
    };
    cluster.cont(0);
}

/// With etcd unreachable, writes are refused as unavailable within the client's deadline, and
/// the journal reports the store as not connected.
#[test]
fn an_unreachable_store_refuses_writes_in_time() {
    let Some(mut store) = Store::etcd("store_suite::unavailable") else {
        return;
    };
    let (journal, _) = store.open_with(EtcdJournalOptions {
        progress_interval: Duration::from_millis(200),
        ..EtcdJournalOptions::default()
    });
    append(&*journal, 1, 1);
    let Store::Etcd { cluster, .. } = &mut store else {
        unreachable!()
    };
    for member in 0..cluster.len() {
        cluster.stop(member);
    }
    let started = std::time::Instant::now();
    let refused = journal.append_if_head(1, &record(2, "suite"));
    assert!(
        matches!(refused, Err(JournalError::Unavailable(_))),
        "{refused:?}"
    );
    // Generous: the deadline is 2 s; this only guards against waiting forever.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let deadline = std::time::Instant::now() + FEED_TIMEOUT;
    while journal.health().expect("health").connected {
        assert!(std::time::Instant::now() < deadline, "still connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    for member in 0..cluster.len() {
        cluster.cont(member);
    }
    let deadline = std::time::Instant::now() + FEED_TIMEOUT;
    loop {
        match journal.append_if_head(journal.head(), &record(journal.head() + 1, "suite")) {
            Ok(_) => break,
            Err(JournalError::Unavailable(_)) | Err(JournalError::Conflict { .. }) => {
                assert!(std::time::Instant::now() < deadline, "etcd never came back");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(journal.health().expect("health").connected);
}

/// With etcd's authentication on, the client authenticates, sends the token on calls and
/// watches, authenticates again when the token expired, and says clearly when credentials are
/// missing or wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_client_authenticates_and_renews_an_expired_token() {
    let Some(cluster) =
        EtcdCluster::start_with_args("store_suite::auth", 1, &["--auth-token-ttl", "1"]).await
    else {
        return;
    };
    // Turn authentication on through etcd's JSON gateway (the client has no admin calls).
    let http = reqwest::Client::new();
    let base = format!("http://{}", cluster.endpoint(0));
    let steps = [
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"secret"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ];
    for (path, body) in steps {
        let response = http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("etcd's JSON gateway");
        let status = response.status();
        assert!(
            status.is_success(),
            "{path}: {status} {}",
            response.text().await.unwrap_or_default()
        );
    }
    let anonymous = cluster.client();
    let refused = anonymous.put(Put::new("/a/k", "v")).await.unwrap_err();
    assert!(matches!(refused, EtcdError::Auth(_)), "{refused}");
    assert!(refused.to_string().contains("give a user"), "{refused}");

    let mut config = cluster.config();
    config.user = Some("root".into());
    config.password = Some("wrong".into());
    let wrong = EtcdClient::connect(config.clone()).unwrap();
    let refused = wrong.get("/a/k").await.unwrap_err();
    assert!(matches!(refused, EtcdError::Auth(_)), "{refused}");

    config.password = Some("secret".into());
    let client = EtcdClient::connect(config).unwrap();
    client
        .put(Put::new("/a/k", "v"))
        .await
        .expect("an authenticated write");
    // The token lives one second unused; the next call must get a new one by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let read = client
        .get("/a/k")
        .await
        .expect("a read with a renewed token");
    assert_eq!(
        read.and_then(|kv| kv.value_str().map(str::to_owned)),
        Some("v".into())
    );
    let mut watcher = client
        .watch(WatchOptions::new(KeyRange::prefix("/a/")).start_revision(1))
        .await
        .expect("an authenticated watch");
    let answer = tokio::time::timeout(Duration::from_secs(10), watcher.message())
        .await
        .expect("a watch answer in time")
        .expect("a watch answer")
        .expect("an answer");
    assert_eq!(answer.events.len(), 1, "{answer:?}");
}

/// A kept lease outlives its time to live, also when the member its keep-alive stream was on
/// is killed; once no longer kept it expires and takes its key along; a revoked lease is
/// reported expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_client_keeps_a_lease_alive_across_a_member_failure() {
    let Some(mut cluster) = EtcdCluster::start("store_suite::lease").await else {
        return;
    };
    let client = cluster.client();
    let lease = client
        .lease_grant(Duration::from_secs(2))
        .await
        .expect("a lease");
    client
        .put(Put::new("/l/key", "held").lease(lease.id))
        .await
        .expect("a key on the lease");
    let keeper = client.keep_alive(lease);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(keeper.is_alive());
    assert!(client.get("/l/key").await.unwrap().is_some());

    // A fresh client starts with the first member: its keep-alive stream was there.
    cluster.kill9(0);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(keeper.is_alive(), "{:?}", keeper.state());
    let info = client
        .lease_time_to_live(lease.id, true)
        .await
        .unwrap()
        .expect("the lease lives");
    assert_eq!(info.keys, vec![b"/l/key".to_vec()]);

    keeper.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while client.get("/l/key").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the key outlived its lease"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        client.lease_time_to_live(lease.id, false).await.unwrap(),
        None
    );
    assert_eq!(client.lease_keep_alive_once(lease.id).await.unwrap(), None);

    let second = client.lease_grant(Duration::from_secs(5)).await.unwrap();
    let mut keeper = client.keep_alive(second);
    client.lease_revoke(second.id).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), keeper.expired())
        .await
        .expect("a revoked lease is reported expired");
    assert_eq!(keeper.state(), LeaseState::Expired);
    client
        .lease_revoke(second.id)
        .await
        .expect("revoking twice is no error");
}

/// The test cluster itself: a leader is found, members can be killed, frozen and restarted,
/// and compaction forgets history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_test_cluster_fails_and_recovers_on_demand() {
    let Some(mut cluster) = EtcdCluster::start("store_suite (etcd cluster)").await else {
        return;
    };
    let client = cluster.client();
    let leader = cluster.leader().await;
    assert!(leader < cluster.len());

    // Kill the leader: the others elect a new one and keep serving.
    cluster.kill9(leader);
    let next = cluster.leader().await;
    assert_ne!(next, leader);
    client
        .put(Put::new("/t/a", "1"))
        .await
        .expect("a write with a member down");

    // Freeze another member: with one dead and one frozen there is no quorum, and writes fail
    // within the client's deadline instead of hanging.
    let frozen = (0..cluster.len())
        .find(|&m| m != leader && m != next)
        .expect("a third member");
    cluster.stop(frozen);
    for _ in 0..3 {
        match client.put(Put::new("/t/b", "1")).await {
            Ok(_) => panic!("a write went through without a quorum"),
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    cluster.cont(frozen);
    cluster.restart(leader).await;
    cluster.leader().await;
    client
        .put(Put::new("/t/b", "2"))
        .await
        .expect("a write after recovery");

    // Compaction: history before the revision is gone.
    let revision = cluster.revision().await;
    cluster.compact(revision).await;
    let old = client
        .range(Get::new(KeyRange::key("/t/a")).at_revision(revision - 1))
        .await;
    assert!(matches!(old, Err(EtcdError::Compacted(_))), "{old:?}");
    let watch = client
        .watch(WatchOptions::new(KeyRange::prefix("/t/")).start_revision(1))
        .await;
    match watch {
        Err(EtcdError::Compacted(_)) => {}
        Ok(mut watcher) => {
            let answer = tokio::time::timeout(Duration::from_secs(10), watcher.message())
                .await
                .expect("an answer to a compacted watch")
                .expect("a watch answer")
                .expect("an answer");
            assert!(answer.canceled && answer.compact_revision > 0, "{answer:?}");
        }
        Err(e) => panic!("{e}"),
    }
}
