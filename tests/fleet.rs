//! Fleet mode end to end: real `flagd-rs` replicas (separate processes) sharing one real
//! three-member etcd cluster. A write through one replica is served by the others and is in
//! every replica's history; an etcd outage (all members, or two of three) takes no traffic
//! down, refuses writes with 503 and is caught up after; a replica restarted during the outage
//! serves its cached overrides; a replica frozen past an etcd compaction catches up.

use std::time::Duration;

use flagd_rs_tests::etcd::EtcdCluster;
use flagd_rs_tests::replica::Replica;
use serde_json::{Value, json};

/// How long a change may take to reach another replica in these tests (the target is far
/// below; this only bounds a failing test).
const SERVED: Duration = Duration::from_secs(5);

const FLAGS: &str = r#"{"flags": {
  "bg": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"}, "defaultVariant": "blue"},
  "ramp": {"state": "ENABLED", "variants": {"stable": "s", "canary": "c"}, "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 100], ["canary", 0]]}}
}}"#;

struct Fleet {
    _dir: tempfile::TempDir,
    replicas: Vec<Replica>,
    // Dropped last: the replicas stop before their store.
    cluster: EtcdCluster,
}

impl Fleet {
    /// A cluster and `n` replicas on it, all ready; `None` when etcd is missing on a bare
    /// machine.
    async fn start(suite: &str, n: usize, extra: &[&str]) -> Option<Fleet> {
        let cluster = EtcdCluster::start(suite).await?;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flags.json"), FLAGS).unwrap();
        let url = cluster.url("/fleet-test");
        let mut replicas: Vec<Replica> = (0..n)
            .map(|i| {
                Replica::spawn(
                    &format!("r{i}"),
                    &dir.path().join("flags.json"),
                    &dir.path().join(format!("state-{i}")),
                    &url,
                    extra,
                )
            })
            .collect();
        for r in &mut replicas {
            r.wait_ready().await;
        }
        Some(Fleet {
            _dir: dir,
            replicas,
            cluster,
        })
    }
}

async fn admin(
    replica: &Replica,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let http = reqwest::Client::new();
    let response = http
        .request(method, format!("{}{path}", replica.admin_url()))
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn split(replica: &Replica, canary: u32) -> (u16, Value) {
    admin(
        replica,
        reqwest::Method::PUT,
        "/v1/flags/ramp/override",
        json!({"weights": {"stable": 100 - canary, "canary": canary}, "actor": "ci", "reason": "step"}),
    )
    .await
}

async fn switch(replica: &Replica, variant: &str) -> (u16, Value) {
    admin(
        replica,
        reqwest::Method::PUT,
        "/v1/flags/bg/override",
        json!({"defaultVariant": variant, "actor": "ci"}),
    )
    .await
}

async fn history(replica: &Replica) -> Vec<u64> {
    let (status, answer) = admin(
        replica,
        reqwest::Method::GET,
        "/v1/revisions?after=0&limit=1000",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"].as_u64().unwrap())
        .collect()
}

/// Waits until `replica`'s history is exactly `expected`.
async fn wait_history(replica: &Replica, expected: &[u64]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = history(replica).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} holds revisions {now:?}, not {expected:?}:\n{}",
            replica.id,
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn variants(replica: &Replica, keys: &[String]) -> Vec<Option<String>> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        out.push(replica.variant("ramp", key).await);
    }
    out
}

async fn wait_metric(replica: &Replica, name: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = replica.metric(name).await;
        if now == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} of {} is {now:?}, not {value}:\n{}",
            replica.id,
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A split written through one replica is served, key for key, by the two others within a
/// second, and every replica's history holds it; `--wait all` returns once all serve it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_replica_is_served_identically_by_all() {
    let Some(fleet) = Fleet::start("fleet (etcd cluster)", 3, &[]).await else {
        return;
    };
    let [a, b, c] = &fleet.replicas[..] else {
        unreachable!()
    };
    let (status, answer) = split(a, 50).await;
    assert_eq!(status, 200, "{answer}");
    let revision = answer["revision"].as_u64().unwrap();
    assert_eq!(revision, 1);
    let keys: Vec<String> = (0..40).map(|i| format!("user-{i}")).collect();
    let expected = variants(a, &keys).await;
    assert!(expected.iter().any(|v| v.as_deref() == Some("canary")));
    for other in [b, c] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            if variants(other, &keys).await == expected {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} does not serve the split within 1 s:\n{}",
                other.id,
                other.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // A write through another replica; every history has both, dense.
    let (status, answer) = split(c, 25).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["revision"], 2);
    let out = flagd_rs::cli_admin::run_args([
        "switch",
        "bg",
        "green",
        "--admin-url",
        &b.admin_url(),
        "--wait",
        "all",
        "--timeout",
        "10s",
    ])
    .await
    .unwrap();
    assert!(out.contains("served by every replica (3)"), "{out}");
    for r in [a, b, c] {
        assert_eq!(r.variant("bg", "x").await.as_deref(), Some("green"));
        assert_eq!(history(r).await, [1, 2, 3], "{}", r.id);
    }
    // If-Match on a stale revision is a conflict on any replica.
    let (status, _) = admin(
        a,
        reqwest::Method::PUT,
        "/v1/flags/bg/override",
        json!({"defaultVariant": "blue"}),
    )
    .await;
    assert_eq!(status, 200);
    let http = reqwest::Client::new();
    let response = http
        .put(format!("{}/v1/flags/bg/override", c.admin_url()))
        .header("If-Match", "2")
        .json(&json!({"defaultVariant": "green"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 409);
}

/// With every etcd member down, replicas keep serving what they had, refuse writes with 503 and
/// say so in their metrics; a replica restarted meanwhile serves its cached overrides; when
/// etcd is back they take writes again and converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_etcd_down_replicas_serve_refuse_writes_and_catch_up() {
    let Some(mut fleet) =
        Fleet::start("fleet (etcd cluster)", 2, &["--store-lease-ttl", "2"]).await
    else {
        return;
    };
    let (status, _) = switch(&fleet.replicas[0], "green").await;
    assert_eq!(status, 200);
    for r in &fleet.replicas {
        assert!(r.wait_variant("bg", "x", "green", SERVED).await.is_some());
    }
    for member in 0..3 {
        fleet.cluster.stop(member);
    }
    for r in &fleet.replicas {
        assert_eq!(r.variant("bg", "x").await.as_deref(), Some("green"));
        wait_metric(r, "flagd_rs_store_connected", 0.0).await;
    }
    let (status, answer) = switch(&fleet.replicas[1], "blue").await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    // A restart during the outage serves the cached override.
    fleet.replicas[1].kill9();
    fleet.replicas[1].restart();
    fleet.replicas[1].wait_ready().await;
    assert_eq!(
        fleet.replicas[1].variant("bg", "x").await.as_deref(),
        Some("green"),
        "{}",
        fleet.replicas[1].log()
    );
    assert!(
        fleet.replicas[1]
            .metric("flagd_rs_store_state_age_seconds")
            .await
            .is_some()
    );
    for member in 0..3 {
        fleet.cluster.cont(member);
    }
    for r in &fleet.replicas {
        wait_metric(r, "flagd_rs_store_connected", 1.0).await;
    }
    let (status, answer) = switch(&fleet.replicas[1], "blue").await;
    assert_eq!(status, 200, "{answer}");
    // The refused write may have reached a frozen member and been committed when it thawed:
    // then this one follows it. Either way the history is dense and every replica has it.
    let head = answer["revision"].as_u64().unwrap();
    assert!(head == 2 || head == 3, "{answer}");
    let dense: Vec<u64> = (1..=head).collect();
    for r in &fleet.replicas {
        assert!(
            r.wait_variant("bg", "x", "blue", SERVED).await.is_some(),
            "{}",
            r.log()
        );
        wait_history(r, &dense).await;
    }
}

/// Two of three members frozen (no quorum): serving goes on, writes are refused; when they
/// thaw, writes are taken and served everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_of_two_members_refuses_writes_and_heals() {
    let Some(mut fleet) = Fleet::start("fleet (etcd cluster)", 2, &[]).await else {
        return;
    };
    let (status, _) = switch(&fleet.replicas[0], "green").await;
    assert_eq!(status, 200);
    let leader = fleet.cluster.leader().await;
    let others: Vec<usize> = (0..3).filter(|&m| m != leader).collect();
    fleet.cluster.stop(leader);
    fleet.cluster.stop(others[0]);
    // The write cannot be confirmed; the member it reached may hand it to the leader once
    // that thaws, so it is not served now but may be committed later (never twice).
    let (status, answer) = switch(&fleet.replicas[1], "blue").await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "store_unavailable", "{answer}");
    for r in &fleet.replicas {
        assert!(r.wait_variant("bg", "x", "green", SERVED).await.is_some());
    }
    fleet.cluster.cont(leader);
    fleet.cluster.cont(others[0]);
    fleet.cluster.leader().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let (status, answer) = switch(&fleet.replicas[1], "blue").await;
        if status == 200 {
            break answer;
        }
        assert!(tokio::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let head = answer["revision"].as_u64().unwrap();
    assert!(head == 2 || head == 3, "{answer}");
    let dense: Vec<u64> = (1..=head).collect();
    for r in &fleet.replicas {
        assert!(r.wait_variant("bg", "x", "blue", SERVED).await.is_some());
        wait_history(r, &dense).await;
    }
}

/// A replica frozen while others write and etcd compacts its history past what the frozen one
/// read: when it thaws its watch cannot resume, so it reads the state again and serves the
/// latest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_frozen_past_a_compaction_reads_the_state_again() {
    let Some(fleet) = Fleet::start("fleet (etcd cluster)", 2, &[]).await else {
        return;
    };
    let (a, b) = (&fleet.replicas[0], &fleet.replicas[1]);
    b.signal("STOP");
    for (i, variant) in ["green", "blue", "green", "blue", "green"]
        .iter()
        .enumerate()
    {
        let (status, answer) = switch(a, variant).await;
        assert_eq!(status, 200, "write {i}: {answer}");
    }
    let revision = fleet.cluster.revision().await;
    fleet.cluster.compact(revision).await;
    b.signal("CONT");
    wait_history(b, &[1, 2, 3, 4, 5]).await;
    assert_eq!(b.variant("bg", "x").await.as_deref(), Some("green"));
}

/// The replica holding the controller key, by index, once one is elected.
async fn controller(fleet: &Fleet) -> usize {
    let client = fleet.cluster.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let holder = client
            .get("/fleet-test/controller")
            .await
            .ok()
            .flatten()
            .and_then(|kv| kv.value_str().map(str::to_owned));
        if let Some(i) = holder.and_then(|id| fleet.replicas.iter().position(|r| r.id == id)) {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no controller elected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rollout_status(replica: &Replica) -> Value {
    let out = flagd_rs::authority::rollout::cli::run_args([
        "status",
        "ramp",
        "--output",
        "json",
        "--admin-url",
        &replica.admin_url(),
    ])
    .await;
    match out {
        Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
        Err(e) => Value::String(e.to_string()),
    }
}

async fn wait_phase(replica: &Replica, phase: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = rollout_status(replica).await;
        if status["phase"] == phase {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} shows {status}, not {phase}:\n{}",
            replica.id,
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A canary ramp started through a replica that is not the controller goes on after the
/// controller's process is killed with -9: the next controller resumes it, it completes, every
/// replica's CLI shows `"phase": "completed"`, and the history is dense with each step once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_ramp_completes_across_kill_9_of_the_controller() {
    let Some(mut fleet) =
        Fleet::start("fleet (etcd cluster)", 3, &["--store-lease-ttl", "2"]).await
    else {
        return;
    };
    let leader = controller(&fleet).await;
    let sender = (leader + 1) % 3;
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "flag: ramp\nvariant: canary\nbaseline: stable\nsteps:\n  - {weight: 1, hold: 1s}\n  - {weight: 5, hold: 1s}\n  - {weight: 25, hold: 1s}\n  - {weight: 50, hold: 1s}\n  - {weight: 100}\n",
    )
    .unwrap();
    let out = flagd_rs::authority::rollout::cli::run_args([
        "start",
        "ramp",
        "--plan",
        plan.to_str().unwrap(),
        "--admin-url",
        &fleet.replicas[sender].admin_url(),
    ])
    .await;
    assert!(out.is_ok(), "{out:?}\n{}", fleet.replicas[leader].log());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fleet.replicas[leader].kill9();
    let survivor = &fleet.replicas[sender];
    let done = wait_phase(survivor, "completed", Duration::from_secs(60)).await;
    assert_eq!(done["phase"], "completed", "{done}");
    for (i, r) in fleet.replicas.iter().enumerate() {
        if i == leader {
            continue;
        }
        wait_phase(r, "completed", Duration::from_secs(10)).await;
        let revisions = history(r).await;
        let dense: Vec<u64> = (1..=revisions.len() as u64).collect();
        assert_eq!(revisions, dense, "{}", r.id);
    }
    // Each step's weights were written once: the canary's weight moves 1, 5, 25, 50, 100.
    let (_, answer) = admin(
        survivor,
        reqwest::Method::GET,
        "/v1/revisions?flag=ramp&after=0&limit=1000",
        Value::Null,
    )
    .await;
    let weights: Vec<u64> = answer["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["changes"][0]["after"]["weights"]["canary"].as_u64())
        .collect();
    let mut steps = weights.clone();
    steps.dedup();
    assert_eq!(steps, [1, 5, 25, 50, 100], "{weights:?}");
    assert_eq!(weights, steps, "a step was written twice: {weights:?}");
}

/// A controller frozen (SIGSTOP) past its lease is replaced; when it thaws it can change
/// nothing (a record it tries is refused by the fence, or it sees its lease gone first and
/// steps down): each step is written once, by the new controller, and the ramp completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_controller_cannot_write_after_it_thaws() {
    let Some(fleet) = Fleet::start("fleet (etcd cluster)", 3, &["--store-lease-ttl", "1"]).await
    else {
        return;
    };
    let leader = controller(&fleet).await;
    let other = (leader + 1) % 3;
    let body = json!({"plan": {"variant": "canary", "baseline": "stable",
        "steps": [{"weight": 10, "hold": "2s"}, {"weight": 100}]}, "actor": "ci"});
    let (status, answer) = admin(
        &fleet.replicas[other],
        reqwest::Method::POST,
        "/v1/rollouts/ramp/start",
        body,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    fleet.replicas[leader].signal("STOP");
    // Past the lease: another replica takes over and completes the ramp.
    let done = wait_phase(&fleet.replicas[other], "completed", Duration::from_secs(30)).await;
    assert_eq!(done["phase"], "completed");
    fleet.replicas[leader].signal("CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, answer) = admin(
        &fleet.replicas[other],
        reqwest::Method::GET,
        "/v1/revisions?flag=ramp&after=0&limit=1000",
        Value::Null,
    )
    .await;
    let weights: Vec<u64> = answer["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["changes"][0]["after"]["weights"]["canary"].as_u64())
        .collect();
    assert_eq!(weights, [10, 100], "{answer}");
    let log = fleet.replicas[leader].log();
    // Whichever it noticed first, the refused record or the lost lease, it stepped down.
    assert!(
        log.contains("the journal refused a rollout record")
            || log.contains("no longer the rollout controller")
            || log.contains("its rollout tasks stopped"),
        "{log}"
    );
    // The thawed replica follows the others again.
    wait_phase(
        &fleet.replicas[leader],
        "completed",
        Duration::from_secs(10),
    )
    .await;
}
