//! The traffic-split authority: override validation, patched splits and monotonic ramps, the
//! journal (replay, torn tails, checksums, 100k revisions), restore, and the admin API and CLI
//! against a running daemon (If-Match, bearer tokens, loopback-only binding).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagd_evaluator::{EvalContext, Format, LoadOptions, OverridePatch, PatchError, State};
use flagd_rs::authority::journal::{JOURNAL_FILE, encode_record};
use flagd_rs::authority::{
    Authority, AuthorityError, OverrideChange, RevisionInfo, RevisionKind, RolloutChange,
};
use flagd_rs::config::Config;
use flagd_rs::proto::flagd::evaluation::v1;
use flagd_rs::selector::Selector;
use flagd_rs::server::sync::payload::flag_configuration;
use flagd_rs::store::{ChangeKind, SourceEvent, SourceUpdate, Store};
use flagd_rs::{Listeners, cli_admin};
use flagd_rs_tests::daemon::config_for;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const FLAGS: &str = r#"{
  "$evaluators": {"half": {"fractional": [["a", 50], ["b", 50]]}},
  "flags": {
    "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
             "defaultVariant": "stable",
             "targeting": {"fractional": [["stable", 95], ["canary", 5]]}},
    "bg": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"}, "defaultVariant": "blue"},
    "toggle": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"},
    "two": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
            "targeting": {"if": [{"var": "x"}, {"fractional": [["a", 1], ["b", 1]]},
                                  {"fractional": [["b", 1], ["a", 1]]}]}},
    "shared": {"state": "ENABLED", "variants": {"a": "a", "b": "b"}, "defaultVariant": "a",
               "targeting": {"$ref": "half"}}
  }
}"#;

fn store_with(flags: &str) -> Arc<Store> {
    let store = Store::new(vec!["mem".into()], LoadOptions::default());
    store
        .apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Content {
                bytes: flags.as_bytes().to_vec(),
                format: Format::Json,
            },
        })
        .unwrap();
    store
}

fn weights(list: &[(&str, u32)]) -> OverridePatch {
    OverridePatch {
        weights: Some(list.iter().map(|(n, w)| ((*n).to_owned(), *w)).collect()),
        ..OverridePatch::default()
    }
}

fn default_variant(v: &str) -> OverridePatch {
    OverridePatch {
        default_variant: Some(v.into()),
        ..OverridePatch::default()
    }
}

/// The variant the store's current `key` flag picks for `user` through its targeting.
fn variant_for(store: &Store, key: &str, user: &str) -> String {
    let snapshot = store.snapshot();
    let flag = snapshot.get(key, &Selector::All).unwrap().flag;
    let data = json!({"targetingKey": user});
    let ctx = EvalContext {
        data: &data,
        flag_key: key,
        timestamp: 0,
    };
    flag.targeting()
        .unwrap()
        .evaluate(&ctx)
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn served_default(store: &Store, key: &str) -> String {
    let snapshot = store.snapshot();
    let flag = snapshot.get(key, &Selector::All).unwrap().flag;
    flag.default_variant().unwrap().0.to_owned()
}

fn open(dir: &Path) -> (Arc<Store>, Arc<Authority>) {
    let store = store_with(FLAGS);
    let authority = Authority::open(dir, store.clone()).unwrap();
    (store, authority)
}

#[test]
fn invalid_overrides_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, authority) = open(dir.path());
    let revision_before = store.snapshot().revision;
    let cases: Vec<(&str, OverridePatch)> = vec![
        ("nope", default_variant("blue")),
        ("bg", default_variant("purple")),
        ("bg", weights(&[("blue", 1)])),
        ("ramp", weights(&[("beta", 1)])),
        ("two", weights(&[("a", 1)])),
        ("shared", weights(&[("a", 1)])),
        ("ramp", weights(&[("stable", 0), ("canary", 0)])),
        ("ramp", OverridePatch::default()),
    ];
    for (key, patch) in cases {
        let err = authority
            .set_override(key, patch.clone(), "t", "", None)
            .unwrap_err();
        match (key, &err) {
            ("nope", AuthorityError::UnknownFlag(_))
            | ("bg", AuthorityError::Invalid(PatchError::UnknownVariant { .. }))
            | ("bg", AuthorityError::Invalid(PatchError::NoSplit { .. }))
            | ("ramp", AuthorityError::Invalid(PatchError::UnknownVariant { .. }))
            | ("ramp", AuthorityError::Invalid(PatchError::InvalidWeights { .. }))
            | ("ramp", AuthorityError::EmptyPatch)
            | ("two", AuthorityError::Invalid(PatchError::AmbiguousSplit { .. }))
            | ("shared", AuthorityError::Invalid(PatchError::AmbiguousSplit { .. })) => {}
            _ => panic!("{key} {patch:?}: unexpected {err:?}"),
        }
        assert!(!err.to_string().is_empty());
    }
    assert_eq!(authority.head(), 0);
    assert!(authority.overrides().is_empty());
    assert_eq!(store.snapshot().revision, revision_before);
    assert!(
        !dir.path().join(JOURNAL_FILE).exists(),
        "no journal for refused changes"
    );
    assert!(matches!(
        authority.clear_override("bg", "t", "", None),
        Err(AuthorityError::NoOverride(_))
    ));
}

#[tokio::test]
async fn overrides_reach_the_snapshot_and_subscribers() {
    let dir = tempfile::tempdir().unwrap();
    let (store, authority) = open(dir.path());
    let mut events = store.subscribe();
    let info = authority
        .set_override("bg", default_variant("green"), "ci", "cut over", None)
        .unwrap();
    assert_eq!((info.revision, info.kind), (1, RevisionKind::Set));
    assert_eq!(served_default(&store, "bg"), "green");
    let change = events.try_recv().unwrap();
    assert_eq!(change.flags.len(), 1);
    assert_eq!(
        (change.flags[0].key(), change.flags[0].kind),
        ("bg", ChangeKind::Update)
    );

    // Fields merge: disabling keeps the switch.
    let state = OverridePatch {
        state: Some(State::Disabled),
        ..OverridePatch::default()
    };
    authority.set_override("bg", state, "ci", "", None).unwrap();
    let patch = authority.override_of("bg").unwrap();
    assert_eq!(
        (patch.state, patch.default_variant.as_deref()),
        (Some(State::Disabled), Some("green"))
    );
    let snapshot = store.snapshot();
    assert_eq!(
        snapshot.get("bg", &Selector::All).unwrap().flag.state(),
        State::Disabled
    );
    drop(snapshot);
    assert!(events.try_recv().is_ok());

    // The sync payload carries the effective flag.
    authority
        .set_override(
            "ramp",
            weights(&[("stable", 75), ("canary", 25)]),
            "ci",
            "",
            None,
        )
        .unwrap();
    let payload = flag_configuration(&store.snapshot(), &Selector::All);
    assert!(
        payload.contains(r#"["stable",75],["canary",25]"#),
        "{payload}"
    );

    let cleared = authority.clear_override("bg", "ci", "", None).unwrap();
    assert_eq!(cleared.kind, RevisionKind::Clear);
    assert_eq!(served_default(&store, "bg"), "blue");
    assert_eq!(authority.revisions(Some("bg")).len(), 3);
    assert_eq!(authority.revisions(None).len(), 4);
}

#[test]
fn ramps_keep_canary_users_in_canary() {
    let dir = tempfile::tempdir().unwrap();
    let (store, authority) = open(dir.path());
    let users: Vec<String> = (0..5000).map(|i| format!("user-{i}")).collect();
    let in_canary = |store: &Store| -> Vec<bool> {
        users
            .iter()
            .map(|u| variant_for(store, "ramp", u) == "canary")
            .collect()
    };
    let at_5 = in_canary(&store);
    let mut previous = at_5.clone();
    for canary in [10, 25, 50, 100] {
        authority
            .set_override(
                "ramp",
                weights(&[("canary", canary), ("stable", 100 - canary)]),
                "t",
                "",
                None,
            )
            .unwrap();
        let now = in_canary(&store);
        for (i, (was, is)) in previous.iter().zip(&now).enumerate() {
            assert!(!was || *is, "{} left canary at {canary}%", users[i]);
        }
        let share = now.iter().filter(|c| **c).count() as f64 / users.len() as f64;
        assert!(
            (share - f64::from(canary) / 100.0).abs() < 0.03,
            "{canary}%: {share}"
        );
        previous = now;
    }
    let at_5_count = at_5.iter().filter(|c| **c).count();
    assert!(at_5_count > 150 && at_5_count < 350, "{at_5_count}");
}

#[test]
fn journal_replays_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_, authority) = open(dir.path());
        authority
            .set_override("bg", default_variant("green"), "a", "r1", None)
            .unwrap();
        authority
            .set_override(
                "ramp",
                weights(&[("stable", 50), ("canary", 50)]),
                "a",
                "r2",
                None,
            )
            .unwrap();
        authority
            .append_rollout(
                "ramp",
                json!({"step": 1}),
                RolloutChange::Keep,
                "rollout",
                "started",
            )
            .unwrap();
        authority.clear_override("bg", "a", "r3", None).unwrap();
    }
    let (store, authority) = open(dir.path());
    assert_eq!(authority.head(), 4);
    assert_eq!(
        authority.overrides(),
        vec![(
            "ramp".to_owned(),
            weights(&[("stable", 50), ("canary", 50)])
        )]
    );
    assert_eq!(served_default(&store, "bg"), "blue");
    let payload = flag_configuration(&store.snapshot(), &Selector::All);
    assert!(payload.contains(r#"["stable",50],["canary",50]"#));
    assert_eq!(
        authority.rollout_records(),
        vec![(3, "ramp".to_owned(), json!({"step": 1}))]
    );
    let revisions = authority.revisions(None);
    assert_eq!(
        revisions
            .iter()
            .map(|r| r.reason.as_str())
            .collect::<Vec<_>>(),
        ["r1", "r2", "started", "r3"]
    );
    // Overrides replayed before the flags load apply once they do. One authority at a time
    // owns a state directory.
    drop(authority);
    let empty = Store::new(vec!["mem".into()], LoadOptions::default());
    let late = Authority::open(dir.path(), empty.clone()).unwrap();
    assert_eq!(late.head(), 4);
    empty
        .apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Content {
                bytes: FLAGS.as_bytes().to_vec(),
                format: Format::Json,
            },
        })
        .unwrap();
    assert!(
        flag_configuration(&empty.snapshot(), &Selector::All)
            .contains(r#"["stable",50],["canary",50]"#)
    );
}

fn journal_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join(JOURNAL_FILE)).unwrap()
}

#[test]
fn torn_and_corrupt_tails_are_dropped() {
    type Damage = fn(&mut Vec<u8>, usize);
    let damages: [(&str, Damage); 3] = [
        ("truncated mid-record", |bytes, last| {
            bytes.truncate(last + 12)
        }),
        ("truncated, then garbage", |bytes, last| {
            bytes.truncate(last + 20);
            bytes.extend_from_slice(b"\x00\x10\x00\x00garbage garbage");
        }),
        ("checksum mismatch", |bytes, last| {
            let at = last + 8 + 5;
            bytes[at] ^= 0x01;
        }),
    ];
    for (name, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let last_start;
        {
            let (_, authority) = open(dir.path());
            authority
                .set_override("bg", default_variant("green"), "a", "", None)
                .unwrap();
            authority
                .set_override("toggle", default_variant("off"), "a", "", None)
                .unwrap();
            last_start = journal_bytes(dir.path()).len();
            authority
                .set_override("bg", default_variant("blue"), "a", "", None)
                .unwrap();
        }
        let mut bytes = journal_bytes(dir.path());
        damage(&mut bytes, last_start);
        std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();

        let (store, authority) = open(dir.path());
        assert_eq!(authority.head(), 2, "{name}");
        assert_eq!(served_default(&store, "bg"), "green", "{name}");
        assert_eq!(
            journal_bytes(dir.path()).len(),
            last_start,
            "{name}: the tail is cut off"
        );
        let saved = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("journal.log.corrupt-")
            });
        assert!(saved, "{name}: the dropped bytes are kept aside");
        // Writing continues after the last good record and survives another restart.
        authority
            .set_override("bg", default_variant("blue"), "a", "", None)
            .unwrap();
        drop(authority);
        let (store, authority) = open(dir.path());
        assert_eq!(authority.head(), 3, "{name}");
        assert_eq!(served_default(&store, "bg"), "blue", "{name}");
    }
}

#[test]
fn replays_100k_revisions() {
    const N: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let keys = ["ramp", "bg", "toggle"];
    let mut bytes = Vec::with_capacity(40 << 20);
    let mut last: [Option<OverridePatch>; 3] = [None, None, None];
    for revision in 1..=N {
        let slot = (revision % 3) as usize;
        let after = match slot {
            0 => {
                let canary = (revision % 100) as u32;
                weights(&[("stable", 100 - canary), ("canary", canary)])
            }
            1 => default_variant(if revision % 2 == 0 { "green" } else { "blue" }),
            _ => default_variant(if revision % 2 == 0 { "off" } else { "on" }),
        };
        let record = RevisionInfo {
            revision,
            time: "2025-01-01T00:00:00.000Z".into(),
            actor: "pipeline".into(),
            reason: format!("step {revision}"),
            kind: RevisionKind::Set,
            flag: Some(keys[slot].into()),
            changes: vec![OverrideChange {
                flag: keys[slot].into(),
                before: last[slot].take(),
                after: Some(after.clone()),
            }],
            restored: None,
            event: None,
        };
        last[slot] = Some(after);
        bytes.extend_from_slice(&encode_record(&record).unwrap());
    }
    std::fs::write(dir.path().join(JOURNAL_FILE), &bytes).unwrap();
    let store = store_with(FLAGS);
    let started = Instant::now();
    let authority = Authority::open(dir.path(), store.clone()).unwrap();
    let elapsed = started.elapsed();
    println!(
        "journal replay: {N} revisions ({:.1} MiB) in {:.3} s",
        bytes.len() as f64 / (1 << 20) as f64,
        elapsed.as_secs_f64()
    );
    assert_eq!(authority.head(), N);
    assert_eq!(authority.overrides().len(), 3);
    // The last change of `toggle` is revision 99_998 (even: "off").
    assert_eq!(served_default(&store, "toggle"), "off");
}

#[test]
fn restore_reproduces_the_served_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (store, authority) = open(dir.path());
    authority
        .set_override(
            "ramp",
            weights(&[("stable", 90), ("canary", 10)]),
            "a",
            "",
            None,
        )
        .unwrap();
    authority
        .set_override("bg", default_variant("green"), "a", "", None)
        .unwrap();
    let at_2 = flag_configuration(&store.snapshot(), &Selector::All);
    authority
        .set_override(
            "ramp",
            weights(&[("stable", 0), ("canary", 100)]),
            "a",
            "",
            None,
        )
        .unwrap();
    authority.clear_override("bg", "a", "", None).unwrap();
    let disable = OverridePatch {
        state: Some(State::Disabled),
        ..OverridePatch::default()
    };
    authority
        .set_override("toggle", disable, "a", "", None)
        .unwrap();
    assert_ne!(flag_configuration(&store.snapshot(), &Selector::All), at_2);

    authority.restore(2, "oncall", "roll back").unwrap();
    let info = authority.revision(authority.head()).unwrap().unwrap();
    assert_eq!((info.kind, info.restored), (RevisionKind::Restore, Some(2)));
    assert_eq!(flag_configuration(&store.snapshot(), &Selector::All), at_2);
    assert_eq!(info.changes.len(), 3);

    // Restoring 0 removes every override; restoring the future is refused.
    authority.restore(0, "oncall", "").unwrap();
    assert!(authority.overrides().is_empty());
    assert!(matches!(
        authority.restore(99, "oncall", ""),
        Err(AuthorityError::UnknownRevision { .. })
    ));
    // A restart comes back to the same state.
    let head = authority.head();
    drop(authority);
    let (_, authority) = open(dir.path());
    assert_eq!(authority.head(), head);
    assert!(authority.overrides().is_empty());
}

/// A daemon serving `FLAGS` from a file, with its admin API.
struct Daemon {
    admin_url: String,
    eval_port: u16,
    management_port: u16,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    state_dir: PathBuf,
}

impl Daemon {
    async fn start(token: Option<&str>) -> Daemon {
        Daemon::start_configured(token, |_| {}).await
    }

    async fn start_configured(token: Option<&str>, configure: impl FnOnce(&mut Config)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let flags = dir.path().join("flags.json");
        std::fs::write(&flags, FLAGS).unwrap();
        let state_dir = dir.path().join("state");
        let mut config: Config = config_for(&[&flags]);
        config.host = [127, 0, 0, 1].into();
        config.port = 0;
        config.management_port = 0;
        config.admin_port = 0;
        config.state_dir = state_dir.clone();
        if let Some(t) = token {
            let file = dir.path().join("token");
            std::fs::write(&file, format!("{t}\n")).unwrap();
            config.admin_token_file = Some(file);
        }
        configure(&mut config);
        let listeners = Listeners::bind(&config).await.unwrap();
        let ports = listeners.ports().unwrap();
        let admin_url = format!("http://127.0.0.1:{}", listeners.admin_port().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(flagd_rs::run(config, listeners, async move {
            let _ = rx.await;
        }));
        let daemon = Daemon {
            admin_url,
            eval_port: ports.eval.unwrap(),
            management_port: ports.management,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
            state_dir,
        };
        let ready = format!("http://127.0.0.1:{}/readyz", daemon.management_port);
        for _ in 0..500 {
            if reqwest::get(&ready).await.is_ok_and(|r| r.status() == 200) {
                return daemon;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the daemon did not become ready");
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_url)
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
        }
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "every answer is JSON"
    );
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn admin_api_changes_overrides_with_if_match() {
    let daemon = Daemon::start(None).await;
    let http = reqwest::Client::new();
    let (status, body) = send(http.get(daemon.url("/v1/flags"))).await;
    assert_eq!(status, 200);
    let ramp = body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "ramp")
        .unwrap();
    assert_eq!(
        ramp["split"],
        json!([{"variant": "stable", "weight": 95}, {"variant": "canary", "weight": 5}])
    );

    let put = |body: Value| http.put(daemon.url("/v1/flags/ramp/override")).json(&body);
    let (status, body) = send(put(
        json!({"weights": {"stable": 75, "canary": 25}, "reason": "ramp", "actor": "ci"}),
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["revision"].as_u64(), body["actor"].as_str()),
        (Some(1), Some("ci"))
    );

    // If-Match: the current revision passes, a stale one is a conflict that changes nothing.
    let (status, _) =
        send(put(json!({"weights": {"stable": 50, "canary": 50}})).header("if-match", "1")).await;
    assert_eq!(status, 200);
    let (status, body) =
        send(put(json!({"weights": {"stable": 0, "canary": 100}})).header("if-match", "\"1\""))
            .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        (body["error"].as_str(), body["head"].as_u64()),
        (Some("conflict"), Some(2))
    );
    let (status, body) = send(http.get(daemon.url("/v1/flags/ramp"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["flag"]["override"],
        json!({"weights": {"canary": 50, "stable": 50}})
    );
    assert_eq!(
        body["flag"]["split"][1],
        json!({"variant": "canary", "weight": 50})
    );

    // Errors are JSON with a code.
    let (status, body) = send(put(json!({"weights": {"beta": 1}}))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_override"))
    );
    let (status, body) = send(
        http.put(daemon.url("/v1/flags/missing/override"))
            .json(&json!({"state": "DISABLED"})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_flag"))
    );
    let (status, body) = send(put(json!({"state": "OFF"}))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("bad_request")));
    let (status, _) = send(
        http.put(daemon.url("/v1/flags/ramp/override"))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = send(http.get(daemon.url("/v1/nothing"))).await;
    assert_eq!(status, 404);
    let (status, _) = send(http.post(daemon.url("/v1/flags")).json(&json!({}))).await;
    assert_eq!(status, 405);

    // Revisions, filtered; restore; clear.
    send(
        http.put(daemon.url("/v1/flags/bg/override"))
            .json(&json!({"defaultVariant": "green"})),
    )
    .await;
    let (_, body) = send(http.get(daemon.url("/v1/revisions?flag=bg"))).await;
    assert_eq!(body["revisions"].as_array().unwrap().len(), 1);
    let (_, body) = send(http.get(daemon.url("/v1/revisions"))).await;
    assert_eq!(body["head"], 3);
    let (status, body) = send(
        http.post(daemon.url("/v1/revisions/1/restore"))
            .json(&json!({"reason": "undo"})),
    )
    .await;
    assert_eq!(
        (status, body["revision"].as_u64(), body["restored"].as_u64()),
        (200, Some(4), Some(1))
    );
    let (status, _) = send(
        http.post(daemon.url("/v1/revisions/1/restore"))
            .json(&json!({}))
            .header("if-match", "3"),
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = send(
        http.post(daemon.url("/v1/revisions/40/restore"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_revision"))
    );
    let (status, _) = send(
        http.delete(daemon.url("/v1/flags/ramp/override?reason=done"))
            .json(&json!({})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        http.delete(daemon.url("/v1/flags/ramp/override"))
            .json(&json!({})),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (404, Some("no_override")));

    // The journal is in the state directory, and the metrics report the authority.
    assert!(daemon.state_dir.join(JOURNAL_FILE).exists());
    let metrics = reqwest::get(format!(
        "http://127.0.0.1:{}/metrics",
        daemon.management_port
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        metrics.contains("flagd_rs_authority_revision 5"),
        "{metrics}"
    );
    assert!(metrics.contains("flagd_rs_authority_overrides_active 0"));
    assert!(
        metrics.contains(r#"flagd_rs_split_weight{feature_flag_key="ramp",variant="canary"} 5"#)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn overrides_are_served_over_rpc_and_event_stream() {
    let daemon = Daemon::start(None).await;
    let mut client = v1::service_client::ServiceClient::connect(format!(
        "http://127.0.0.1:{}",
        daemon.eval_port
    ))
    .await
    .unwrap();
    let mut stream = client
        .event_stream(v1::EventStreamRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.r#type, "provider_ready");

    let started = Instant::now();
    let (status, _) = send(
        reqwest::Client::new()
            .put(daemon.url("/v1/flags/bg/override"))
            .json(&json!({"defaultVariant": "green"})),
    )
    .await;
    assert_eq!(status, 200);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    println!(
        "override accepted -> EventStream change: {:?}",
        started.elapsed()
    );
    assert_eq!(event.r#type, "configuration_change");
    let value = client
        .resolve_string(v1::ResolveStringRequest {
            flag_key: "bg".into(),
            context: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (value.value.as_str(), value.variant.as_str()),
        ("green", "green")
    );
    daemon.stop().await;
}

#[tokio::test]
async fn admin_token_is_required_when_configured() {
    let daemon = Daemon::start(Some("s3cret")).await;
    let http = reqwest::Client::new();
    let (status, body) = send(http.get(daemon.url("/v1/flags"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = send(http.get(daemon.url("/v1/flags")).bearer_auth("wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.get(daemon.url("/v1/flags"))
            .bearer_auth("s3cret-and-more"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(
        http.put(daemon.url("/v1/flags/bg/override"))
            .json(&json!({"state": "DISABLED"})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = send(http.get(daemon.url("/v1/flags")).bearer_auth("s3cret")).await;
    assert_eq!(status, 200);

    // The CLI reads the token from a file; without it the command fails.
    let token_file = daemon.state_dir.with_file_name("cli-token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let url = daemon.admin_url.clone();
    let out = cli_admin::run_args([
        "disable",
        "bg",
        "--admin-url",
        &url,
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ])
    .await
    .unwrap();
    assert!(out.contains("revision 1 set bg"), "{out}");
    let err = cli_admin::run_args(["enable", "bg", "--admin-url", &url])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    daemon.stop().await;
}

#[tokio::test]
async fn cli_commands_drive_the_admin_api() {
    let daemon = Daemon::start(None).await;
    let url = daemon.admin_url.clone();
    let run = |args: Vec<&str>| {
        let mut all: Vec<String> = args.into_iter().map(str::to_owned).collect();
        all.extend([
            "--admin-url".to_owned(),
            url.clone(),
            "--actor".to_owned(),
            "pipeline".to_owned(),
        ]);
        async move { cli_admin::run_args(all).await }
    };
    let out = run(vec![
        "split",
        "ramp",
        "stable=75",
        "canary=25",
        "--reason",
        "step 2",
    ])
    .await
    .unwrap();
    assert_eq!(
        out,
        "revision 1 set ramp; ramp: weights canary=25 stable=75 (by pipeline: step 2)\n"
    );
    let out = run(vec!["switch", "bg", "green"]).await.unwrap();
    assert!(out.starts_with("revision 2 set bg"), "{out}");
    run(vec!["disable", "toggle"]).await.unwrap();
    run(vec!["enable", "toggle", "--if-match", "3"])
        .await
        .unwrap();
    let err = run(vec!["enable", "toggle", "--if-match", "1"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("409 conflict"), "{err}");
    let err = run(vec!["switch", "bg", "purple"]).await.unwrap_err();
    assert!(err.to_string().contains("no variant 'purple'"), "{err}");
    assert!(run(vec!["split", "bg", "blue=1"]).await.is_err());

    let out = run(vec!["overrides"]).await.unwrap();
    assert_eq!(
        out,
        "bg: defaultVariant green\nramp: weights canary=25 stable=75\ntoggle: state ENABLED\n"
    );
    let out = run(vec!["history", "bg"]).await.unwrap();
    assert_eq!(out.lines().count(), 1);
    let json_out: Value =
        serde_json::from_str(&run(vec!["history", "-o", "json"]).await.unwrap()).unwrap();
    assert_eq!(json_out["revisions"].as_array().unwrap().len(), 4);

    let out = run(vec!["restore", "1"]).await.unwrap();
    assert!(out.starts_with("revision 5 restore of revision 1"), "{out}");
    let overrides: Value =
        serde_json::from_str(&run(vec!["overrides", "--output", "json"]).await.unwrap()).unwrap();
    let keys: Vec<&str> = overrides["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["ramp"]);
    let out = run(vec!["clear", "ramp"]).await.unwrap();
    assert!(out.starts_with("revision 6 clear ramp"), "{out}");
    assert!(run(vec!["restore", "60"]).await.is_err());

    // `--wait all` returns once every replica (here: this one) serves the change.
    let out = run(vec![
        "switch",
        "bg",
        "green",
        "--wait",
        "all",
        "--timeout",
        "5s",
    ])
    .await
    .unwrap();
    assert!(out.starts_with("revision 7 set bg"), "{out}");
    assert!(out.ends_with("served by every replica (1)\n"), "{out}");
    let waited: Value = serde_json::from_str(
        &run(vec!["disable", "toggle", "--wait", "all", "-o", "json"])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(waited["revision"], 8);
    assert_eq!(waited["replicas"][0]["revision"], 8);
    let out = run(vec!["replicas"]).await.unwrap();
    assert!(out.contains("\trevision 8"), "{out}");
    let err = run(vec!["replicas", "--revision", "9", "--timeout", "50ms"])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("504 not_served") && err.to_string().contains("serves revision 8"),
        "{err}"
    );
    daemon.stop().await;

    // Nothing listening: a clear failure.
    let err = cli_admin::run_args(["history", "--admin-url", &url])
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("calling the admin API"),
        "{err:#}"
    );
}

/// With `--revision-metadata`, every evaluation's flag metadata carries the override revision
/// served; without it, it does not.
#[tokio::test]
async fn revision_metadata_reports_the_revision_served() {
    async fn resolve(port: u16) -> Value {
        reqwest::Client::new()
            .post(format!(
                "http://127.0.0.1:{port}/flagd.evaluation.v1.Service/ResolveString"
            ))
            .json(&json!({"flagKey": "bg"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
    let daemon = Daemon::start_configured(None, |c| c.revision_metadata = true).await;
    assert_eq!(
        resolve(daemon.eval_port).await["metadata"]["flagd-rs-revision"],
        0.0
    );
    for variant in ["green", "blue"] {
        let (status, _) = send(
            reqwest::Client::new()
                .put(daemon.url("/v1/flags/bg/override"))
                .json(&json!({"defaultVariant": variant})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let answer = resolve(daemon.eval_port).await;
    assert_eq!(answer["value"], "blue", "{answer}");
    assert_eq!(answer["metadata"]["flagd-rs-revision"], 2.0, "{answer}");
    daemon.stop().await;

    let plain = Daemon::start(None).await;
    let answer = resolve(plain.eval_port).await;
    assert!(
        answer["metadata"].get("flagd-rs-revision").is_none(),
        "{answer}"
    );
    plain.stop().await;
}
