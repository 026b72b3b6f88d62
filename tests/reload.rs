//! Hot reload end to end: real files in a temporary directory, file sources feeding the store
//! task, assertions on the store's change events and snapshots.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flagd_evaluator::{Format, LoadOptions};
use flagd_rs::selector::Selector;
use flagd_rs::sources::file::{self, FileOptions};
use flagd_rs::sources::{self, SourceSpec};
use flagd_rs::store::{self, Change, ChangeKind, Snapshot, Store};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(10);

/// A flag document: one flag per `(key, value)`, whose default variant has that value.
fn doc(flags: &[(&str, &str)]) -> String {
    let body: Vec<String> = flags
        .iter()
        .map(|(key, value)| {
            format!(r#""{key}":{{"state":"ENABLED","variants":{{"on":"{value}","off":"-"}},"defaultVariant":"on"}}"#)
        })
        .collect();
    format!(r#"{{"flags":{{{}}}}}"#, body.join(","))
}

/// The default value of `key` as the store serves it under `selector`.
fn value_in(snapshot: &Snapshot, key: &str, selector: &Selector) -> Option<String> {
    let found = snapshot.get(key, selector)?;
    let (_, value) = found.flag.default_variant()?;
    value.as_str().map(str::to_owned)
}

/// Writes `content` next to `path` and renames it over `path`, as editors do.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Daemon {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    changes: broadcast::Receiver<Arc<Change>>,
    tx: mpsc::Sender<store::SourceUpdate>,
    shutdown: watch::Receiver<bool>,
    _stop: watch::Sender<bool>,
}

impl Daemon {
    /// A store whose sources are `names` (files in a fresh directory, in priority order), with
    /// the store task running. Sources are started separately.
    fn new(names: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let uris = names
            .iter()
            .map(|n| dir.path().join(n).to_string_lossy().into_owned())
            .collect();
        let store = Store::new(uris, LoadOptions::default());
        // Subscribe before anything is sent, so no change is missed.
        let changes = store.subscribe();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(store::run(store.clone(), rx));
        let (stop, shutdown) = watch::channel(false);
        Daemon {
            dir,
            store,
            changes,
            tx,
            shutdown,
            _stop: stop,
        }
    }

    /// Like [`Daemon::new`], writing each file's initial content and starting its source with
    /// a short debounce.
    fn start(files: &[(&str, &str)]) -> Daemon {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let d = Daemon::new(&names);
        for (i, (name, content)) in files.iter().enumerate() {
            std::fs::write(d.path(name), content).unwrap();
            d.watch(i, name);
        }
        d
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn watch(&self, index: usize, name: &str) {
        let options = FileOptions {
            debounce: Duration::from_millis(20),
            ..FileOptions::default()
        };
        file::spawn(
            self.path(name),
            index,
            self.tx.clone(),
            self.shutdown.clone(),
            options,
        )
        .unwrap();
    }

    fn value(&self, key: &str) -> Option<String> {
        value_in(&self.store.snapshot(), key, &Selector::All)
    }

    /// The next published change set.
    async fn next_change(&mut self) -> Arc<Change> {
        loop {
            match tokio::time::timeout(WAIT, self.changes.recv()).await {
                Ok(Ok(change)) => return change,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("store closed"),
                Err(_) => panic!("no change within {WAIT:?}"),
            }
        }
    }

    /// The next change set, asserted to be exactly `expected` as (key, kind) pairs.
    async fn expect_change(&mut self, expected: &[(&str, ChangeKind)]) {
        let change = self.next_change().await;
        let got: Vec<(&str, ChangeKind)> = change.flags.iter().map(|f| (f.key(), f.kind)).collect();
        assert_eq!(got, expected);
    }

    /// Waits until source `index` reports an error (rejections publish nothing to wait on).
    async fn wait_for_error(&self, index: usize) -> String {
        let deadline = Instant::now() + WAIT;
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        loop {
            let status = self.store.source_status();
            if let Some(e) = status.get(index).and_then(|s| s.last_error.clone()) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "source {index} reported no error"
            );
            tick.tick().await;
        }
    }
}

#[tokio::test]
async fn edits_are_published_as_changes() {
    let mut d = Daemon::start(&[("flags.json", &doc(&[("x", "A")]))]);
    d.expect_change(&[("x", ChangeKind::Write)]).await;
    assert_eq!(d.value("x").as_deref(), Some("A"));
    assert!(d.store.is_ready());

    // Write to a temporary file, then rename.
    replace(&d.path("flags.json"), &doc(&[("x", "B"), ("y", "Y")]));
    d.expect_change(&[("x", ChangeKind::Update), ("y", ChangeKind::Write)])
        .await;
    assert_eq!(d.value("x").as_deref(), Some("B"));

    // Truncate and write in place.
    std::fs::write(d.path("flags.json"), doc(&[("y", "Y")])).unwrap();
    d.expect_change(&[("x", ChangeKind::Delete)]).await;
    assert_eq!(d.value("x"), None);
    assert_eq!(d.value("y").as_deref(), Some("Y"));
}

#[cfg(unix)]
#[tokio::test]
async fn configmap_symlink_swap() {
    use std::os::unix::fs::symlink;
    let mut d = Daemon::new(&["flags.json"]);
    let root = d.dir.path().to_path_buf();
    std::fs::create_dir(root.join("..2026_01")).unwrap();
    std::fs::write(root.join("..2026_01/flags.json"), doc(&[("x", "A")])).unwrap();
    symlink("..2026_01", root.join("..data")).unwrap();
    symlink("..data/flags.json", root.join("flags.json")).unwrap();
    d.watch(0, "flags.json");
    d.expect_change(&[("x", ChangeKind::Write)]).await;

    for (n, value) in [(2, "B"), (3, "C")] {
        let new = format!("..2026_0{n}");
        std::fs::create_dir(root.join(&new)).unwrap();
        std::fs::write(root.join(&new).join("flags.json"), doc(&[("x", value)])).unwrap();
        symlink(&new, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(root.join(format!("..2026_0{}", n - 1))).unwrap();
        d.expect_change(&[("x", ChangeKind::Update)]).await;
        assert_eq!(d.value("x").as_deref(), Some(value));
    }
}

#[tokio::test]
async fn delete_then_recreate() {
    let content = doc(&[("x", "A")]);
    let mut d = Daemon::start(&[("flags.json", &content)]);
    d.expect_change(&[("x", ChangeKind::Write)]).await;
    std::fs::remove_file(d.path("flags.json")).unwrap();
    d.expect_change(&[("x", ChangeKind::Delete)]).await;
    assert!(d.store.snapshot().is_empty());
    // Readiness is sticky.
    assert!(d.store.is_ready());
    replace(&d.path("flags.json"), &content);
    d.expect_change(&[("x", ChangeKind::Write)]).await;
    assert_eq!(d.value("x").as_deref(), Some("A"));
}

#[tokio::test]
async fn invalid_file_keeps_the_last_good_flags() {
    let mut d = Daemon::start(&[("flags.json", &doc(&[("x", "A")]))]);
    d.expect_change(&[("x", ChangeKind::Write)]).await;

    // Broken syntax.
    replace(&d.path("flags.json"), "{\"flags\": {\"x\": ");
    let error = d.wait_for_error(0).await;
    assert!(!error.is_empty());
    assert_eq!(d.value("x").as_deref(), Some("A"));

    replace(&d.path("flags.json"), &doc(&[("x", "B")]));
    d.expect_change(&[("x", ChangeKind::Update)]).await;
    assert_eq!(d.value("x").as_deref(), Some("B"));
    assert_eq!(d.store.source_status()[0].last_error, None);

    // Well-formed, but flagd rejects a default variant that names no variant.
    replace(
        &d.path("flags.json"),
        r#"{"flags":{"x":{"state":"ENABLED","variants":{"on":"C"},"defaultVariant":"nope"}}}"#,
    );
    let error = d.wait_for_error(0).await;
    assert!(
        error.contains("nope") || error.contains("default"),
        "{error}"
    );
    assert_eq!(d.value("x").as_deref(), Some("B"));
}

#[tokio::test]
async fn later_source_wins() {
    let low = doc(&[("x", "low"), ("y", "low")]);
    let high = doc(&[("x", "high")]);
    let mut d = Daemon::new(&["low.json", "high.json"]);
    std::fs::write(d.path("low.json"), &low).unwrap();
    std::fs::write(d.path("high.json"), &high).unwrap();
    d.watch(0, "low.json");
    d.expect_change(&[("x", ChangeKind::Write), ("y", ChangeKind::Write)])
        .await;
    d.watch(1, "high.json");
    d.expect_change(&[("x", ChangeKind::Update)]).await;
    assert_eq!(d.value("x").as_deref(), Some("high"));
    assert_eq!(d.value("y").as_deref(), Some("low"));
    let low_uri = d.path("low.json").to_string_lossy().into_owned();
    let only_low = Selector::Source(low_uri.as_str().into());
    assert_eq!(
        value_in(&d.store.snapshot(), "x", &only_low).as_deref(),
        Some("low")
    );

    // Dropping x from the higher source uncovers the lower one.
    replace(&d.path("high.json"), &doc(&[("z", "high")]));
    d.expect_change(&[("x", ChangeKind::Update), ("z", ChangeKind::Write)])
        .await;
    assert_eq!(d.value("x").as_deref(), Some("low"));

    // An edit of the lower source does not show through the higher one.
    replace(&d.path("high.json"), &doc(&[("x", "high2")]));
    d.expect_change(&[("x", ChangeKind::Update), ("z", ChangeKind::Delete)])
        .await;
    replace(&d.path("low.json"), &doc(&[("x", "low2"), ("y", "low2")]));
    d.expect_change(&[("y", ChangeKind::Update)]).await;
    assert_eq!(d.value("x").as_deref(), Some("high2"));
    assert_eq!(
        value_in(&d.store.snapshot(), "x", &only_low).as_deref(),
        Some("low2")
    );

    // A broken lower source changes nothing.
    replace(&d.path("low.json"), "not json");
    d.wait_for_error(0).await;
    assert_eq!(d.value("y").as_deref(), Some("low2"));
    assert_eq!(d.store.source_status()[1].last_error, None);
}

#[tokio::test]
async fn a_file_overrides_the_embedded_defaults() {
    static BUNDLED: &str = r#"{"flags":{"x":{"state":"ENABLED","variants":{"on":"bundled","off":"-"},"defaultVariant":"on"}}}"#;
    let mut d = Daemon::new(&["bundled", "flags.json"]);
    sources::spawn_embedded(BUNDLED.as_bytes(), Format::Json, 0, d.tx.clone()).unwrap();
    d.expect_change(&[("x", ChangeKind::Write)]).await;
    assert_eq!(d.value("x").as_deref(), Some("bundled"));
    std::fs::write(d.path("flags.json"), doc(&[("x", "file")])).unwrap();
    d.watch(1, "flags.json");
    d.expect_change(&[("x", ChangeKind::Update)]).await;
    assert_eq!(d.value("x").as_deref(), Some("file"));
    std::fs::remove_file(d.path("flags.json")).unwrap();
    d.expect_change(&[("x", ChangeKind::Update)]).await;
    assert_eq!(d.value("x").as_deref(), Some("bundled"));
}

/// Save-to-visible latency with the default options (50 ms debounce), through `sources::spawn`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_to_change_latency() {
    let mut d = Daemon::new(&["flags.json"]);
    let path = d.path("flags.json");
    std::fs::write(&path, doc(&[("x", "0")])).unwrap();
    let spec = SourceSpec::from_uri(&format!("file:{}", path.display())).unwrap();
    assert_eq!(spec.source_uri(), path.to_string_lossy());
    sources::spawn(&spec, 0, d.tx.clone(), d.shutdown.clone()).unwrap();
    d.expect_change(&[("x", ChangeKind::Write)]).await;

    let mut samples = Vec::new();
    for i in 1..=40 {
        let started = Instant::now();
        if i % 2 == 0 {
            replace(&path, &doc(&[("x", &i.to_string())]));
        } else {
            std::fs::write(&path, doc(&[("x", &i.to_string())])).unwrap();
        }
        d.expect_change(&[("x", ChangeKind::Update)]).await;
        samples.push(started.elapsed());
        assert_eq!(d.value("x"), Some(i.to_string()));
    }
    samples.sort();
    let p = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "save -> change latency over {} saves: p50 {:?}, p99 {:?}, max {:?}",
        samples.len(),
        p(0.5),
        p(0.99),
        p(1.0)
    );
    // The target is 250 ms at p99; the bound here leaves room for a loaded test machine.
    assert!(p(0.99) < Duration::from_secs(1), "p99 {:?}", p(0.99));
}
