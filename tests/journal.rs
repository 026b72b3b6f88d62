//! The authority's journal end to end: one daemon per state directory (two real processes
//! racing), damage in the middle refusing the start until `journal recover`, `kill -9` during
//! `journal compact`, compaction keeping history, restores and rollouts, and the paginated
//! revision history over HTTP and the CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flagd_evaluator::{Format, LoadOptions, OverridePatch};
use flagd_rs::authority::journal::{self, FileJournal, JOURNAL_FILE, Journal as _, encode_record};
use flagd_rs::authority::rollout::{self, Event, plan};
use flagd_rs::authority::{
    Authority, FileOptions, OverrideChange, RevisionInfo, RevisionKind, RolloutChange, Segment,
};
use flagd_rs::cli_admin;
use flagd_rs::store::{SourceEvent, SourceUpdate, Store};
use flagd_rs_tests::daemon::{TestDaemon, config_for};
use flagd_rs_tests::ports::free_port;
use serde_json::{Value, json};

const FLAGS: &str = r#"{"flags": {
  "ramp": {"state": "ENABLED", "variants": {"stable": "stable", "canary": "canary"},
           "defaultVariant": "stable",
           "targeting": {"fractional": [["stable", 95], ["canary", 5]]}},
  "bg": {"state": "ENABLED", "variants": {"blue": "blue", "green": "green"}, "defaultVariant": "blue"},
  "toggle": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
}}"#;

fn store() -> Arc<Store> {
    let store = Store::new(vec!["mem".into()], LoadOptions::default());
    store
        .apply(SourceUpdate {
            source: 0,
            event: SourceEvent::Content {
                bytes: FLAGS.as_bytes().to_vec(),
                format: Format::Json,
            },
        })
        .unwrap();
    store
}

fn default_variant(v: &str) -> OverridePatch {
    OverridePatch {
        default_variant: Some(v.into()),
        ..OverridePatch::default()
    }
}

/// Revision `revision` of a synthetic history: the three flags changed in turn.
fn synthetic(revision: u64) -> RevisionInfo {
    let (flag, after) = match revision % 3 {
        0 => {
            let canary = (revision % 100) as u32;
            (
                "ramp",
                OverridePatch {
                    weights: Some(vec![
                        ("stable".into(), 100 - canary),
                        ("canary".into(), canary),
                    ]),
                    ..OverridePatch::default()
                },
            )
        }
        1 => (
            "bg",
            default_variant(if revision.is_multiple_of(2) {
                "green"
            } else {
                "blue"
            }),
        ),
        _ => (
            "toggle",
            default_variant(if revision.is_multiple_of(2) {
                "off"
            } else {
                "on"
            }),
        ),
    };
    RevisionInfo {
        revision,
        time: "2025-01-01T00:00:00.000Z".into(),
        actor: "pipeline".into(),
        reason: format!("step {revision}"),
        kind: RevisionKind::Set,
        flag: Some(flag.into()),
        changes: vec![OverrideChange {
            flag: flag.into(),
            before: None,
            after: Some(after),
        }],
        restored: None,
        event: None,
    }
}

/// The override set right after synthetic revision `revision`.
fn synthetic_overrides(revision: u64) -> BTreeMap<String, OverridePatch> {
    let mut out = BTreeMap::new();
    for r in revision.saturating_sub(2).max(1)..=revision {
        journal::apply_changes(&mut out, &synthetic(r).changes);
    }
    out
}

/// Appends synthetic revisions `first..=last` to the journal file in `state` as raw bytes.
fn append_synthetic(state: &Path, first: u64, last: u64) {
    use std::io::Write as _;
    std::fs::create_dir_all(state).unwrap();
    let mut bytes = Vec::new();
    for r in first..=last {
        bytes.extend(encode_record(&synthetic(r)).unwrap());
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.join(JOURNAL_FILE))
        .unwrap();
    file.write_all(&bytes).unwrap();
    file.sync_all().unwrap();
}

/// `flagd-rs start` serving `flags` with `state` as its state directory, on free ports; returns
/// the command and the management port.
fn start_command(flags: &Path, state: &Path) -> (Command, u16) {
    let management = free_port();
    let mut cmd = Command::new(flagd_rs_tests::binary::flagd_rs());
    cmd.arg("start")
        .arg("--uri")
        .arg(format!("file:{}", flags.display()))
        .arg("--state-dir")
        .arg(state);
    for (option, port) in [
        ("--port", free_port()),
        ("--management-port", management),
        ("--sync-port", free_port()),
        ("--ofrep-port", free_port()),
        ("--admin-port", free_port()),
    ] {
        cmd.arg(option).arg(port.to_string());
    }
    cmd.env_remove("RUST_LOG");
    (cmd, management)
}

/// Runs `flagd-rs journal ARGS... --state-dir STATE`.
fn journal_command(args: &[&str], state: &Path) -> Output {
    Command::new(flagd_rs_tests::binary::flagd_rs())
        .arg("journal")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap()
}

/// Runs `cmd` to completion, killing it (and failing) if it takes longer than `limit`.
fn output_within(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn ready(management: u16) -> bool {
    flagd_rs_tests::daemon::get(management, "/readyz")
        .await
        .is_ok_and(|r| r.status == 200)
}

#[tokio::test]
async fn two_daemons_race_for_one_state_dir_and_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let state = dir.path().join("state");

    let (mut a, a_management) = start_command(&flags, &state);
    let (mut b, b_management) = start_command(&flags, &state);
    let quiet = |c: &mut Command| {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
    };
    quiet(&mut a);
    quiet(&mut b);
    let mut a = a.spawn().unwrap();
    let mut b = b.spawn().unwrap();

    // Exactly one of them exits, with an error naming the other's PID.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (loser, mut winner, winner_management) = loop {
        if a.try_wait().unwrap().is_some() {
            break (a, b, b_management);
        }
        if b.try_wait().unwrap().is_some() {
            break (b, a, a_management);
        }
        assert!(Instant::now() < deadline, "neither daemon stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let lost = loser.wait_with_output().unwrap();
    let stderr = text(&lost.stderr);
    assert!(!lost.status.success(), "the second daemon must fail");
    assert!(
        stderr.contains(&format!("PID {}", winner.id())) && stderr.contains("in use"),
        "{stderr}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(winner_management).await {
        assert!(
            winner.try_wait().unwrap().is_none(),
            "the winner stopped too"
        );
        assert!(Instant::now() < deadline, "the winner never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The offline tools refuse to work beside it; `check` only reads.
    for args in [&["compact"][..], &["recover", "--truncate-at", "0"]] {
        let out = journal_command(args, &state);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            text(&out.stderr).contains(&format!("PID {}", winner.id())),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(journal_command(&["check"], &state).status.success());

    // Once the daemon is gone, the directory is free again.
    let stopped = Command::new("kill")
        .args(["-TERM", &winner.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = tokio::task::spawn_blocking(move || winner.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let out = journal_command(&["compact"], &state);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The start offset and revision of the record holding byte `at` of a journal without a
/// snapshot.
fn record_holding(bytes: &[u8], at: usize) -> (usize, u64) {
    let mut start = 0;
    let mut revision = 1;
    loop {
        let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
        let end = start + 8 + len;
        if at < end {
            return (start, revision);
        }
        start = end;
        revision += 1;
    }
}

#[test]
fn damage_in_the_middle_stops_the_start_until_an_operator_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let state = dir.path().join("state");
    let mut overrides_at = Vec::new();
    {
        let authority = Authority::open(&state, store()).unwrap();
        for (flag, variant) in [
            ("bg", "green"),
            ("toggle", "off"),
            ("bg", "blue"),
            ("toggle", "on"),
            ("bg", "green"),
            ("toggle", "off"),
            ("bg", "blue"),
        ] {
            authority
                .set_override(flag, default_variant(variant), "ci", "", None)
                .unwrap();
            overrides_at.push(authority.overrides());
        }
    }
    let path = state.join(JOURNAL_FILE);
    let original = std::fs::read(&path).unwrap();
    let at = original.len() / 3;
    let (offset, revision) = record_holding(&original, at);
    let mut damaged = original.clone();
    damaged[at] ^= 0x20;
    std::fs::write(&path, &damaged).unwrap();
    let names = [format!("byte {offset}"), format!("revision {revision}")];

    // In process, and as the executable: the start is refused, naming where.
    let err = format!("{:#}", Authority::open(&state, store()).unwrap_err());
    for name in &names {
        assert!(err.contains(name), "{name}: {err}");
    }
    let (start, _) = start_command(&flags, &state);
    let out = output_within(start, Duration::from_secs(30));
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for name in &names {
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        damaged,
        "nothing was changed"
    );

    // `journal check` reports it and fails.
    let out = journal_command(&["check", "--list"], &state);
    assert_eq!(out.status.code(), Some(1));
    let report = text(&out.stdout);
    for name in &names {
        assert!(report.contains(name), "{name}: {report}");
    }
    let keep = revision - 1;
    assert!(
        report.contains(&format!("--truncate-at {keep}")),
        "{report}"
    );

    // The operator keeps what is intact; the cut tail is kept aside.
    let out = journal_command(&["recover", "--truncate-at", &keep.to_string()], &state);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cut: Vec<PathBuf> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("journal.log.cut-"))
        .collect();
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(std::fs::read(&cut[0]).unwrap(), &damaged[offset..]);
    assert_eq!(std::fs::read(&path).unwrap(), &original[..offset]);
    assert!(journal_command(&["check"], &state).status.success());

    let authority = Authority::open(&state, store()).unwrap();
    assert_eq!(authority.head(), keep);
    assert_eq!(authority.overrides(), overrides_at[keep as usize - 1]);
    // New revisions continue from there.
    let next = authority
        .set_override("bg", default_variant("green"), "ci", "", None)
        .unwrap();
    assert_eq!(next.revision, keep + 1);
}

/// Copies the journal and the archive of state directory `from` into `to`.
fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.join("archive")).unwrap();
    std::fs::copy(from.join(JOURNAL_FILE), to.join(JOURNAL_FILE)).unwrap();
    for entry in std::fs::read_dir(from.join("archive")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("archive").join(entry.file_name())).unwrap();
    }
}

#[test]
fn kill_9_during_compaction_loses_and_duplicates_no_revision() {
    const ARCHIVED: u64 = 4000;
    const HEAD: u64 = 12_000;
    const ROUNDS: u32 = 12;
    let bin = flagd_rs_tests::binary::flagd_rs();
    let compact = |state: &Path| {
        Command::new(&bin)
            .args(["journal", "compact", "--state-dir"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // A journal compacted once already, with 8000 revisions after its snapshot.
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    append_synthetic(&base, 1, ARCHIVED);
    journal::ops::compact(&base).unwrap();
    append_synthetic(&base, ARCHIVED + 1, HEAD);

    // How long one complete compaction of it takes (process start included).
    let calibration = dir.path().join("calibration");
    copy_state(&base, &calibration);
    let started = Instant::now();
    assert!(compact(&calibration).wait().unwrap().success());
    let full = started.elapsed();

    for round in 0..ROUNDS {
        let state = dir.path().join(format!("round-{round}"));
        copy_state(&base, &state);
        let mut child = compact(&state);
        if round + 1 < ROUNDS {
            // From at once to after it would have finished, across the rounds.
            std::thread::sleep(full * round / (ROUNDS - 3));
            let _ = child.kill();
        }
        let _ = child.wait();

        let (journal, replay, _) = FileJournal::open(&state).unwrap();
        assert_eq!(journal.head(), HEAD, "round {round}");
        let now = replay
            .snapshot
            .clone()
            .unwrap_or_default()
            .advanced(&replay.records, String::new());
        assert_eq!(now.overrides, synthetic_overrides(HEAD), "round {round}");
        // The archive and the live journal join up exactly, and every revision reads once.
        let mut next = 1;
        for segment in journal.segments() {
            assert_eq!(segment.first, next, "round {round}: {segment:?}");
            next = segment.last + 1;
        }
        assert_eq!(next, replay.base() + 1, "round {round}");
        let all = journal.read_from(1).unwrap();
        assert!(
            all.iter().map(|r| r.revision).eq(1..=HEAD),
            "round {round}: every revision exactly once"
        );
        assert!(
            all.iter().all(|r| *r == synthetic(r.revision)),
            "round {round}"
        );
        if round + 1 == ROUNDS {
            assert_eq!(replay.base(), HEAD, "an uninterrupted compaction completes");
        }
    }
}

fn rollout_start() -> Event {
    let plan = plan::parse(
        b"variant: canary\nbaseline: stable\nsteps: [{weight: 10, hold: 1h}, {weight: 50, hold: 1h}, {weight: 100, hold: 0s}]\n",
    )
    .unwrap();
    Event::Start {
        plan: Box::new(plan),
        before: vec![("stable".into(), 95), ("canary".into(), 5)],
        prior: None,
        layout: None,
        weights: Vec::new(),
        step: 1,
        weight: 10.0,
        at_ms: 1000,
        hold_ms: 3_600_000,
    }
}

#[test]
fn compaction_keeps_history_restores_and_active_rollouts() {
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        compact_bytes: 4096,
    };
    let store = store();
    let authority = Authority::open_with(dir.path(), store.clone(), options).unwrap();
    let weights = |canary: u32| {
        RolloutChange::Weights(vec![
            ("stable".into(), 100 - canary),
            ("canary".into(), canary),
        ])
    };
    // A rollout that starts early and is still running at the end.
    let start = authority
        .append_rollout(
            "ramp",
            serde_json::to_value(rollout_start()).unwrap(),
            weights(10),
            "rollout",
            "start",
        )
        .unwrap();
    let mut at = BTreeMap::new();
    for i in 0..120u32 {
        let (flag, variant) = match i % 2 {
            0 => ("bg", if i % 4 == 0 { "green" } else { "blue" }),
            _ => ("toggle", if i % 3 == 0 { "off" } else { "on" }),
        };
        let info = authority
            .set_override(flag, default_variant(variant), "ci", "", None)
            .unwrap();
        at.insert(info.revision, authority.overrides());
        if i == 60 {
            let step = Event::Step {
                rollout: start.revision,
                step: 2,
                weights: Vec::new(),
                rebase: None,
                weight: 50.0,
                at_ms: 2000,
                hold_ms: 3_600_000,
                promoted: false,
            };
            authority
                .append_rollout(
                    "ramp",
                    serde_json::to_value(step).unwrap(),
                    weights(50),
                    "rollout",
                    "step 2",
                )
                .unwrap();
        }
    }
    let head = authority.head();
    assert_eq!(head, 122);
    let archive = dir.path().join("archive");
    let segments = std::fs::read_dir(&archive).unwrap().count();
    assert!(segments >= 2, "the journal compacted by itself: {segments}");
    let live = std::fs::metadata(dir.path().join(JOURNAL_FILE))
        .unwrap()
        .len();
    assert!(live < 2 * 4096, "the live journal stays bounded: {live}");

    // The whole history reads back, archived revisions included.
    let all = authority.revisions(None);
    assert!(all.iter().map(|r| r.revision).eq(1..=head));
    assert_eq!(authority.revision(1).unwrap().unwrap(), start);
    assert_eq!(authority.revisions(Some("ramp")).len(), 2);
    let rollout_records: Vec<(u64, String, Value)> = all
        .iter()
        .filter(|r| r.kind == RevisionKind::Rollout)
        .map(|r| {
            (
                r.revision,
                r.flag.clone().unwrap(),
                r.event.clone().unwrap(),
            )
        })
        .collect();
    let expected_rollouts = rollout::replay(&rollout_records);
    assert_eq!(
        rollout::replay(&authority.rollout_records()),
        expected_rollouts
    );
    assert_eq!(
        expected_rollouts["ramp"].phase,
        rollout::Phase::Running,
        "still running"
    );

    // Restoring an archived revision brings its override set back.
    let (&old, old_overrides) = at.iter().nth(5).unwrap();
    let archived = journal::archive::list(dir.path()).unwrap();
    assert!(
        archived.iter().any(|s| s.holds(old)),
        "revision {old} is archived: {archived:?}"
    );
    let restored = authority.restore(old, "oncall", "back").unwrap();
    assert_eq!(restored.restored, Some(old));
    let as_map = |v: Vec<(String, OverridePatch)>| v.into_iter().collect::<BTreeMap<_, _>>();
    assert_eq!(as_map(authority.overrides()), as_map(old_overrides.clone()));
    let head = authority.head();
    let overrides = authority.overrides();
    drop(authority);

    // A restart: same head, same overrides, the rollout resumes where it was.
    let authority = Authority::open_with(dir.path(), store, options).unwrap();
    assert_eq!(authority.head(), head);
    assert_eq!(authority.overrides(), overrides);
    assert_eq!(
        rollout::replay(&authority.rollout_records()),
        expected_rollouts
    );
    assert!(
        authority
            .revisions(None)
            .iter()
            .map(|r| r.revision)
            .eq(1..=head)
    );
}

#[tokio::test]
async fn revision_history_is_paginated_across_the_archive() {
    const ARCHIVED: u64 = 1500;
    const HEAD: u64 = 2500;
    let dir = tempfile::tempdir().unwrap();
    let flags = dir.path().join("flags.json");
    std::fs::write(&flags, FLAGS).unwrap();
    let state = dir.path().join("state");
    append_synthetic(&state, 1, ARCHIVED);
    let compacted = journal::ops::compact(&state).unwrap();
    assert_eq!(
        compacted.segment,
        Some(Segment {
            first: 1,
            last: ARCHIVED
        })
    );
    append_synthetic(&state, ARCHIVED + 1, HEAD);

    let mut config = config_for(&[&flags]);
    config.state_dir = state.clone();
    let daemon = TestDaemon::start_with(config).await;
    let admin = format!("http://127.0.0.1:{}", daemon.admin_port);
    let http = reqwest::Client::new();
    let get = |query: &str| {
        let request = http.get(format!("{admin}/v1/revisions{query}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body)
        }
    };
    let numbers = |body: &Value| -> Vec<u64> {
        body["revisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["revision"].as_u64().unwrap())
            .collect()
    };

    // The latest page by default, oldest first, with the cursor of the page before it.
    let (status, body) = get("").await;
    assert_eq!(status, 200);
    assert_eq!(body["head"], HEAD);
    assert!(numbers(&body).into_iter().eq(HEAD - 99..=HEAD));
    assert_eq!(body["next"], json!({"before": HEAD - 99}));
    // Walking back across the archive boundary.
    let (_, body) = get(&format!("?before={}&limit=1000", HEAD - 99)).await;
    assert!(numbers(&body).into_iter().eq(HEAD - 1099..=HEAD - 100));
    let (_, body) = get("?before=401&limit=1000").await;
    assert!(numbers(&body).into_iter().eq(1..=400));
    assert!(body.get("next").is_none(), "{}", body["next"]);
    // Forwards.
    let (_, body) = get("?after=1490&limit=20").await;
    assert!(numbers(&body).into_iter().eq(1491..=1510));
    assert_eq!(body["next"], json!({"after": 1510}));
    let (_, body) = get(&format!("?after={}", HEAD - 3)).await;
    assert_eq!(numbers(&body), [HEAD - 2, HEAD - 1, HEAD]);
    assert!(body.get("next").is_none());
    // One flag's revisions.
    let (_, body) = get("?flag=bg&limit=5&before=1510").await;
    assert_eq!(numbers(&body), [1495, 1498, 1501, 1504, 1507]);
    // One revision, archived or live.
    for n in [7, 2000] {
        let response = http
            .get(format!("{admin}/v1/revisions/{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["reason"], format!("step {n}"));
    }
    // Bad queries are answered with a JSON error.
    for query in [
        "?limit=0",
        "?limit=1001",
        "?before=3&after=1",
        "?before=abc",
        "?page=2",
    ] {
        let (status, body) = get(query).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"], "bad_request", "{query}");
    }

    // The CLI pages through everything.
    let out = cli_admin::run_args(["history", "--admin-url", &admin, "-o", "json"])
        .await
        .unwrap();
    let all: Value = serde_json::from_str(&out).unwrap();
    assert!(numbers(&all).into_iter().eq(1..=HEAD));
    let out = cli_admin::run_args(["history", "toggle", "--admin-url", &admin])
        .await
        .unwrap();
    assert_eq!(
        out.lines().count(),
        (1..=HEAD).filter(|r| r % 3 == 2).count()
    );
    assert!(
        out.lines()
            .next()
            .unwrap()
            .contains("revision 2 set toggle")
    );

    // Restoring an archived revision.
    let response = http
        .post(format!("{admin}/v1/revisions/10/restore"))
        .json(&json!({"reason": "back"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, body) = get("?limit=1").await;
    assert_eq!(body["revisions"][0]["restored"], 10);
    let restored: BTreeMap<String, OverridePatch> = body["revisions"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| {
            let after = serde_json::from_value(c["after"].clone()).ok()?;
            Some((c["flag"].as_str()?.to_owned(), after))
        })
        .collect();
    // Weights travel as a JSON object, whose order is not kept.
    let sorted = |p: &OverridePatch| {
        let mut p = p.clone();
        if let Some(w) = p.weights.as_mut() {
            w.sort();
        }
        p
    };
    let expected = synthetic_overrides(10);
    for (flag, patch) in &restored {
        assert_eq!(
            expected.get(flag).map(sorted),
            Some(sorted(patch)),
            "{flag}"
        );
    }
    daemon.stop().await.unwrap();
}
