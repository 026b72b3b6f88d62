//! The shared store suite: the file journal and the etcd journal pass the same tests.

use std::time::Duration;

use flagd_rs::fleet::etcd::{EtcdError, Get, KeyRange, Put, WatchOptions};
use flagd_rs_tests::etcd::EtcdCluster;

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

    // Freeze a member: the client moves on within its deadline.
    let frozen = (next + 1) % cluster.len();
    let frozen = if frozen == leader {
        (frozen + 1) % cluster.len()
    } else {
        frozen
    };
    cluster.stop(frozen);
    let mut wrote = false;
    for _ in 0..5 {
        // With one member dead and one frozen there is no quorum: writes must fail in time.
        match client.put(Put::new("/t/b", "1")).await {
            Ok(_) => wrote = true,
            Err(e) => assert!(e.is_unavailable(), "{e}"),
        }
    }
    assert!(!wrote, "a write went through without a quorum");
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
