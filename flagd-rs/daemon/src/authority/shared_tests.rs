//! Authorities over one in-memory shared journal (the rollout runner's test fleet), as replicas
//! over a shared store: what one appends the other applies, a change made on a stale replica
//! catches up and is worked out again, and an `If-Match` on an old head is a conflict.

use std::sync::Arc;

use flagd_evaluator::OverridePatch;

use super::*;
use crate::authority::rollout::runner::testkit::{Fleet, store};

const FLAGS: &str = r#"{"flags": {
  "a": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
  "b": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}
}}"#;

fn replica(shared: &Arc<Fleet>, dir: &std::path::Path) -> Arc<Authority> {
    Authority::with_shared_journal(
        shared.member(),
        Replay::default(),
        store(FLAGS, 1),
        StateCache::in_dir(dir),
    )
}

fn on() -> OverridePatch {
    OverridePatch {
        default_variant: Some("on".into()),
        ..OverridePatch::default()
    }
}

fn variant(authority: &Authority, flag: &str) -> Option<String> {
    authority.override_of(flag).and_then(|p| p.default_variant)
}

#[test]
fn a_stale_replica_catches_up_and_appends_on_top() {
    let shared = Arc::new(Fleet::default());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (replica(&shared, da.path()), replica(&shared, db.path()));
    a.set_override("a", on(), "ci", "canary", None).unwrap();
    // b has not heard of revision 1; a change to another flag lands on top of it.
    let info = b.set_override("b", on(), "ci", "other", None).unwrap();
    assert_eq!(info.revision, 2);
    assert_eq!(b.head(), 2);
    assert_eq!(variant(&b, "a").as_deref(), Some("on"));
    assert_eq!(variant(&b, "b").as_deref(), Some("on"));
    // A change to the same flag made from a stale view is worked out again on the state as it
    // now is: the override it merges into is the other replica's.
    let c_dir = tempfile::tempdir().unwrap();
    let c = replica(&shared, c_dir.path());
    let weights = OverridePatch {
        state: Some(flagd_evaluator::State::Disabled),
        ..OverridePatch::default()
    };
    let info = c.set_override("a", weights, "ci", "again", None).unwrap();
    assert_eq!(info.revision, 3);
    let after = info.changes[0].after.clone().unwrap();
    assert_eq!(after.default_variant.as_deref(), Some("on"), "{after:?}");
    // An If-Match naming the store's head is current, even though this replica lagged.
    let d_dir = tempfile::tempdir().unwrap();
    let d = replica(&shared, d_dir.path());
    let info = d.clear_override("a", "ci", "done", Some(3)).unwrap();
    assert_eq!(info.revision, 4);
    // A clear from a stale view of a flag whose override is gone meanwhile says so.
    let err = c.clear_override("a", "ci", "twice", None).unwrap_err();
    assert!(matches!(err, AuthorityError::NoOverride(_)), "{err:?}");
    assert_eq!(shared.log.lock().unwrap().len(), 4);
}

#[test]
fn an_if_match_on_an_old_head_is_refused_after_catching_up() {
    let shared = Arc::new(Fleet::default());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (replica(&shared, da.path()), replica(&shared, db.path()));
    a.set_override("a", on(), "ci", "one", None).unwrap();
    let err = b.set_override("b", on(), "ci", "two", Some(0)).unwrap_err();
    assert!(
        matches!(
            err,
            AuthorityError::Conflict {
                expected: 0,
                head: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(shared.log.lock().unwrap().len(), 1);
}

#[test]
fn replicated_revisions_apply_whole_fill_gaps_and_reset() {
    let shared = Arc::new(Fleet::default());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (replica(&shared, da.path()), replica(&shared, db.path()));
    let one = a.set_override("a", on(), "ci", "one", None).unwrap();
    let two = a.set_override("b", on(), "ci", "two", None).unwrap();
    // Only the second arrives: the gap is read from the journal.
    b.apply_replicated(Replicated::Appended(vec![two.clone()]))
        .unwrap();
    assert_eq!(b.head(), 2);
    assert_eq!(variant(&b, "a").as_deref(), Some("on"));
    // Repeats change nothing.
    b.apply_replicated(Replicated::Appended(vec![one, two]))
        .unwrap();
    assert_eq!(b.head(), 2);
    // The store serves the replicated overrides.
    let served = b.store().snapshot_full();
    assert!(served.get("a", &crate::selector::Selector::All).is_some());
    // A reset replaces everything, and the cache follows.
    b.apply_replicated(Replicated::Reset(Replay {
        snapshot: Some(Snapshot {
            revision: 5,
            ..Snapshot::default()
        }),
        records: Vec::new(),
    }))
    .unwrap();
    assert_eq!(b.head(), 5);
    assert!(b.overrides().is_empty());
    let cached = StateCache::in_dir(db.path()).load().unwrap().unwrap();
    assert_eq!(cached.revision, 5);
    let cached = StateCache::in_dir(da.path()).load().unwrap().unwrap();
    assert_eq!((cached.revision, cached.overrides.len()), (2, 2));
}

#[tokio::test]
async fn follow_applies_the_feed() {
    let shared = Arc::new(Fleet::default());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (replica(&shared, da.path()), replica(&shared, db.path()));
    let task = b.follow().expect("a shared journal has a feed");
    assert!(b.follow().is_none(), "the feed is taken once");
    let mut head = b.watch_head();
    a.set_override("a", on(), "ci", "one", None).unwrap();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        head.wait_for(|h| *h == 1),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(variant(&b, "a").as_deref(), Some("on"));
    task.abort();
}
