//! The file source: reads one flag file and sends it again whenever its bytes change.
//!
//! Change detection has two layers. The directory holding the file (and, when the path is a
//! symlink, the directory of its target) is watched with the platform's notification API, so
//! that every way a file gets replaced is seen: an in-place truncate-and-write, an editor's
//! write-to-temporary-then-rename, and a Kubernetes ConfigMap update, which atomically swaps the
//! `..data` symlink that `flags.json -> ..data/flags.json` goes through. Watching the file itself
//! would miss the last two, because the watched inode is not the one that changes. Under the
//! watcher, the file's metadata (length, modification time, inode) is polled at a slow interval,
//! which also serves alone when notifications are unavailable.
//!
//! Notifications are debounced, then the path is read again (following symlinks). Content is
//! sent only when its bytes differ from what was last sent. A file that has vanished, or whose
//! bytes the store finds cut short as it loads them (a JSON document that does not close what
//! it opens, a YAML document that does not parse: [`SourceEvent::Unsettled`]), may be a save in
//! progress, so it is looked at once more after the debounce before it is reported; a document
//! that is still cut short is sent anyway and the store, which keeps the last good flags,
//! rejects it with a diagnostic.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use flagd_evaluator::Format;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use super::{SourceError, runtime};
use crate::store::{Settled, SourceEvent, SourceUpdate, content_hash};

/// Timing of a file source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOptions {
    /// Quiet time between a change notification and the read, so that the several events of
    /// one save lead to one read. Also the wait before a half-written or missing file is looked
    /// at again.
    pub debounce: Duration,
    /// How often the file's metadata is compared with what was last read: the safety net for
    /// missed notifications, and the only detection when notifications are off or unavailable.
    pub poll_interval: Duration,
    /// Use filesystem notifications. When `false`, or when no watcher can be created, changes
    /// are found by polling alone.
    pub watch: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(50),
            poll_interval: Duration::from_secs(1),
            watch: true,
        }
    }
}

/// Starts a task that sends the contents of the file at `path` as source `index`, and sends
/// them again whenever they change, until `shutdown` becomes `true` (or its sender is dropped,
/// or `tx` is closed).
///
/// What it sends:
/// - `Content` with the file's bytes and the format its extension implies (`.yaml`/`.yml` is
///   YAML, anything else JSON), at start and after every change of the bytes;
/// - `Removed` once when a file that was loaded disappears (the watch goes on, and a re-created
///   file is loaded again);
/// - `Failed` when the file cannot be read, or does not exist yet at start (so readiness reports
///   why), each distinct problem once.
///
/// A relative `path` is resolved against the current directory now, so a later change of
/// directory does not move the source.
pub fn spawn(
    path: PathBuf,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
    options: FileOptions,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    let handle = runtime()?;
    let path = std::path::absolute(&path).unwrap_or(path);
    let format = Format::from_path(&path.to_string_lossy());
    let (signal, signals) = mpsc::channel(1);
    let source = FileSource {
        filter: Arc::new(Filter::new(&path)),
        path,
        format,
        index,
        tx,
        shutdown,
        options,
        signal,
        dirs: BTreeSet::new(),
        seen: Err(io::ErrorKind::NotFound),
        last: Sent::Nothing,
        loaded: false,
    };
    Ok(handle.spawn(source.run(signals)))
}

/// Why the source's task woke up.
enum Wake {
    Stop,
    Event,
    Poll,
}

/// What was last sent to the store, to avoid repeating it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Nothing,
    Content(u64),
    Removed,
    Failed(String),
}

/// The state of one running file source. Owned by its task; nothing here is shared except the
/// event filter, which the watcher's thread reads.
struct FileSource {
    path: PathBuf,
    format: Format,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
    options: FileOptions,
    /// Handed to the watcher's callback; a capacity of one coalesces bursts of events into one
    /// pending reload.
    signal: mpsc::Sender<()>,
    /// Shared with the watcher's thread, which decides there which events concern the file.
    filter: Arc<Filter>,
    /// The directories that should be watched, as of the last read.
    dirs: BTreeSet<PathBuf>,
    /// The file's metadata at the last read, for the polling comparison.
    seen: Stat,
    last: Sent,
    /// Whether the store holds content from this file, so that its absence means `Removed`.
    loaded: bool,
}

impl FileSource {
    async fn run(mut self, mut signals: mpsc::Receiver<()>) {
        let mut watches = if self.options.watch {
            Watches::new(self.signal.clone(), self.filter.clone())
        } else {
            None
        };
        // Watch before the first read, so that a change made in between is not missed.
        self.dirs = parent_dir(&self.path).into_iter().collect();
        watches = update_watches(watches, self.dirs.clone()).await;
        if !self.reload(&mut watches).await {
            return;
        }
        // Bounded both ways: a zero period is refused by tokio, and a huge one would overflow the
        // deadline arithmetic.
        let period = self
            .options
            .poll_interval
            .clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                _ = self.shutdown.wait_for(|stop| *stop) => Wake::Stop,
                Some(()) = signals.recv() => Wake::Event,
                _ = ticker.tick() => Wake::Poll,
            };
            let go_on = match wake {
                Wake::Stop => false,
                Wake::Event => {
                    if !self.pause().await {
                        break;
                    }
                    // Events that arrived while waiting are covered by the read below.
                    while signals.try_recv().is_ok() {}
                    self.reload(&mut watches).await
                }
                Wake::Poll => self.poll(&mut watches).await,
            };
            if !go_on {
                break;
            }
        }
        tracing::debug!(path = %self.path.display(), "file source stopped");
    }

    /// Waits one debounce period; `false` if shutdown came first.
    async fn pause(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => false,
            _ = tokio::time::sleep(self.options.debounce) => true,
        }
    }

    async fn probe(&self) -> Option<Probe> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || probe(&path)).await.ok()
    }

    /// Reads the file and sends what changed. `false` when the source should stop.
    async fn reload(&mut self, watches: &mut Option<Watches>) -> bool {
        let Some(mut probe) = self.probe().await else {
            return true;
        };
        if matches!(probe.read, Read::Missing) && self.loaded {
            // Probably a save in progress (renamed away for a moment): look once more before
            // bothering the store.
            if !self.pause().await {
                return false;
            }
            if let Some(again) = self.probe().await {
                probe = again;
            }
        }
        let read = self.take(probe, watches).await;
        let bytes = match read {
            Read::Bytes(bytes) => bytes,
            other => return self.emit(other).await,
        };
        // The store tells a save in progress (cut short) from a finished document as it
        // loads it; then the file is looked at once more, and what is there is sent as it is.
        match self.offer(bytes).await {
            Offer::Stop => return false,
            Offer::Taken => return true,
            Offer::CutShort => {}
        }
        if !self.pause().await {
            return false;
        }
        let Some(probe) = self.probe().await else {
            return true;
        };
        let read = self.take(probe, watches).await;
        self.emit(read).await
    }

    /// Follows what `probe` found out about the path (watched directories, metadata) and
    /// returns its read.
    async fn take(&mut self, probe: Probe, watches: &mut Option<Watches>) -> Read {
        self.filter
            .follow_all
            .store(probe.symlink, Ordering::Relaxed);
        if probe.dirs != self.dirs {
            self.dirs = probe.dirs.clone();
            *watches = update_watches(watches.take(), probe.dirs).await;
        }
        self.seen = probe.stat;
        probe.read
    }

    /// Sends bytes that may be a save in progress, unless they are what was last sent, and
    /// waits for the store's verdict.
    async fn offer(&mut self, bytes: Vec<u8>) -> Offer {
        let hash = content_hash(&bytes);
        if self.last == Sent::Content(hash) {
            return Offer::Taken;
        }
        let (settled, verdict) = Settled::channel();
        let len = bytes.len();
        let update = SourceUpdate {
            source: self.index,
            event: SourceEvent::Unsettled {
                bytes,
                format: self.format,
                hash,
                settled,
            },
        };
        if self.tx.send(update).await.is_err() {
            return Offer::Stop;
        }
        let taken = tokio::select! {
            _ = self.shutdown.wait_for(|stop| *stop) => return Offer::Stop,
            // Unanswered only when the store stopped; the next send finds out.
            verdict = verdict => verdict.unwrap_or(true),
        };
        if !taken {
            return Offer::CutShort;
        }
        self.last = Sent::Content(hash);
        self.loaded = true;
        tracing::debug!(path = %self.path.display(), bytes = len, "flag file changed");
        Offer::Taken
    }

    /// The slow path: re-establishes watches on directories that were replaced, and re-reads
    /// the file if its metadata moved since the last read.
    async fn poll(&mut self, watches: &mut Option<Watches>) -> bool {
        let (path, dirs, mut current) = (self.path.clone(), self.dirs.clone(), watches.take());
        let result = tokio::task::spawn_blocking(move || {
            if let Some(w) = current.as_mut() {
                w.update(&dirs);
            }
            (current, stat(&path))
        })
        .await;
        let Ok((current, stat)) = result else {
            return true;
        };
        *watches = current;
        if stat == self.seen {
            return true;
        }
        self.reload(watches).await
    }

    /// Sends what `read` means for the store, unless it was the last thing sent.
    async fn emit(&mut self, read: Read) -> bool {
        let event = match read {
            Read::Bytes(bytes) => {
                let hash = content_hash(&bytes);
                if self.last == Sent::Content(hash) {
                    return true;
                }
                self.last = Sent::Content(hash);
                self.loaded = true;
                tracing::debug!(path = %self.path.display(), bytes = bytes.len(), "flag file changed");
                SourceEvent::Content {
                    bytes,
                    format: self.format,
                }
            }
            Read::Missing if self.last == Sent::Removed => return true,
            Read::Missing if self.loaded => {
                self.last = Sent::Removed;
                self.loaded = false;
                tracing::info!(path = %self.path.display(), "flag file removed; its flags are removed");
                SourceEvent::Removed
            }
            Read::Missing => {
                let message = format!("flag file {} does not exist", self.path.display());
                match self.failed(message) {
                    Some(event) => event,
                    None => return true,
                }
            }
            Read::Error(message) => match self.failed(message) {
                Some(event) => event,
                None => return true,
            },
        };
        self.tx
            .send(SourceUpdate {
                source: self.index,
                event,
            })
            .await
            .is_ok()
    }

    fn failed(&mut self, message: String) -> Option<SourceEvent> {
        if matches!(&self.last, Sent::Failed(m) if *m == message) {
            return None;
        }
        self.last = Sent::Failed(message.clone());
        Some(SourceEvent::Failed(message))
    }
}

/// What became of bytes offered to the store.
enum Offer {
    /// Accepted or rejected: sent.
    Taken,
    /// Cut short: look again.
    CutShort,
    /// The source should stop.
    Stop,
}

/// What reading the path found.
#[derive(Debug)]
enum Read {
    Bytes(Vec<u8>),
    Missing,
    Error(String),
}

/// One look at the file, taken off the async workers.
#[derive(Debug)]
struct Probe {
    /// Metadata taken just before the read: if the file changes during the read, the next poll
    /// sees a difference and reads again, never the other way round.
    stat: Stat,
    read: Read,
    /// The directories to watch: the path's own, and its symlink target's.
    dirs: BTreeSet<PathBuf>,
    /// Whether the path itself is a symlink (then any event in a watched directory may matter).
    symlink: bool,
}

fn probe(path: &Path) -> Probe {
    let stat = stat(path);
    let read = match std::fs::read(path) {
        Ok(bytes) => Read::Bytes(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Read::Missing,
        Err(e) => Read::Error(format!("cannot read flag file {}: {e}", path.display())),
    };
    let symlink = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let mut dirs: BTreeSet<PathBuf> = parent_dir(path).into_iter().collect();
    if symlink
        && let Some(dir) = std::fs::canonicalize(path)
            .ok()
            .as_deref()
            .and_then(parent_dir)
    {
        dirs.insert(dir);
    }
    Probe {
        stat,
        read,
        dirs,
        symlink,
    }
}

fn parent_dir(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_path_buf()),
        None => None,
    }
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

/// The file's fingerprint (following symlinks), or why there is none.
type Stat = Result<Fingerprint, io::ErrorKind>;

fn stat(path: &Path) -> Stat {
    let meta = std::fs::metadata(path).map_err(|e| e.kind())?;
    #[cfg(unix)]
    use std::os::unix::fs::MetadataExt;
    Ok(Fingerprint {
        len: meta.len(),
        modified: meta.modified().ok(),
        #[cfg(unix)]
        inode: (meta.dev(), meta.ino()),
        #[cfg(unix)]
        changed: (meta.ctime(), meta.ctime_nsec()),
    })
}

/// What identifies a directory: replacing it (delete and re-create, or rename another over it)
/// drops the watch on the old one, which must then be re-created.
#[cfg(unix)]
type DirId = (u64, u64);
#[cfg(not(unix))]
type DirId = ();

fn dir_id(path: &Path) -> Option<DirId> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    Some(())
}

/// Decides, on the watcher's thread, which events may concern the file.
#[derive(Debug)]
struct Filter {
    path: PathBuf,
    name: Option<OsString>,
    /// Set while the path is a symlink: its target can change through any entry of the watched
    /// directories, so every event counts.
    follow_all: AtomicBool,
}

impl Filter {
    fn new(path: &Path) -> Filter {
        Filter {
            path: path.to_path_buf(),
            name: path.file_name().map(OsString::from),
            follow_all: AtomicBool::new(false),
        }
    }

    fn relevant(&self, event: &Event) -> bool {
        // Opening and reading generate events too, including our own reads; only a close after
        // writing says something changed.
        if let EventKind::Access(kind) = event.kind
            && kind != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        if event.paths.is_empty() || event.need_rescan() || self.follow_all.load(Ordering::Relaxed)
        {
            return true;
        }
        event.paths.iter().any(|p| {
            // The file itself, Kubernetes' `..data` machinery, or a directory on the way to the
            // file being moved or deleted.
            let name = p.file_name();
            name.is_none()
                || name == self.name.as_deref()
                || name.is_some_and(|n| n.as_encoded_bytes().starts_with(b".."))
                || self.path.starts_with(p)
        })
    }
}

/// The notification watcher and the directories it is on.
struct Watches {
    watcher: RecommendedWatcher,
    /// Each wanted directory, and the identity of the directory the watch was placed on (`None`
    /// while it is not watched: it does not exist yet, or placing the watch failed).
    dirs: BTreeMap<PathBuf, Option<DirId>>,
}

impl Watches {
    fn new(signal: mpsc::Sender<()>, filter: Arc<Filter>) -> Option<Watches> {
        let handler = move |event: notify::Result<Event>| {
            // An error may mean lost events: read again to be safe.
            let relevant = event.as_ref().map_or(true, |e| filter.relevant(e));
            if relevant {
                // A full channel already holds a pending reload.
                let _ = signal.try_send(());
            }
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(Watches {
                watcher,
                dirs: BTreeMap::new(),
            }),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch for file changes; polling instead");
                None
            }
        }
    }

    /// Watches exactly `wanted`, placing watches on directories that appeared and re-placing
    /// them on directories that were replaced.
    fn update(&mut self, wanted: &BTreeSet<PathBuf>) {
        let watcher = &mut self.watcher;
        self.dirs.retain(|dir, id| {
            let keep = wanted.contains(dir);
            if !keep && id.is_some() {
                let _ = watcher.unwatch(dir);
            }
            keep
        });
        for dir in wanted {
            self.dirs.entry(dir.clone()).or_insert(None);
        }
        for (dir, id) in &mut self.dirs {
            let now = dir_id(dir);
            if now == *id {
                continue;
            }
            if id.take().is_some() {
                // The old directory may be gone, and its watch with it; nothing to do then.
                let _ = watcher.unwatch(dir);
            }
            if now.is_some() {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => *id = now,
                    Err(err) => {
                        tracing::debug!(dir = %dir.display(), error = %err, "cannot watch directory; polling it");
                    }
                }
            }
        }
    }
}

/// Runs [`Watches::update`] off the async workers. Losing the watcher (the blocking task cannot
/// fail short of a panic) leaves the source polling.
async fn update_watches(watches: Option<Watches>, wanted: BTreeSet<PathBuf>) -> Option<Watches> {
    let mut watches = watches?;
    tokio::task::spawn_blocking(move || {
        watches.update(&wanted);
        watches
    })
    .await
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RenameMode};
    use std::io::Write;
    use tempfile::TempDir;

    const V1: &str =
        r#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"}}}"#;
    const V2: &str =
        r#"{"flags":{"f":{"state":"ENABLED","variants":{"b":2},"defaultVariant":"b"}}}"#;
    const WAIT: Duration = Duration::from_secs(10);

    fn fast() -> FileOptions {
        // A poll interval longer than any test, so that these tests exercise the watcher.
        FileOptions {
            debounce: Duration::from_millis(20),
            poll_interval: Duration::from_secs(3600),
            watch: true,
        }
    }

    fn polling() -> FileOptions {
        FileOptions {
            debounce: Duration::from_millis(20),
            poll_interval: Duration::from_millis(30),
            watch: false,
        }
    }

    struct Harness {
        dir: TempDir,
        path: PathBuf,
        rx: mpsc::Receiver<SourceUpdate>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn start(dir: TempDir, path: PathBuf, options: FileOptions) -> Harness {
            let (tx, rx) = mpsc::channel(16);
            let (stop, shutdown) = watch::channel(false);
            let task = spawn(path.clone(), 7, tx, shutdown, options).unwrap();
            Harness {
                dir,
                path,
                rx,
                stop,
                task,
            }
        }

        /// A source on `dir/flags.json` holding `content` (if any).
        fn with_file(content: Option<&str>, options: FileOptions) -> Harness {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("flags.json");
            if let Some(content) = content {
                std::fs::write(&path, content).unwrap();
            }
            Harness::start(dir, path, options)
        }

        /// The next update as the store takes it: unsettled bytes are answered as the store
        /// answers them (cut short: wait for the next), and come out as content.
        async fn next(&mut self) -> SourceEvent {
            loop {
                let update = tokio::time::timeout(WAIT, self.rx.recv())
                    .await
                    .expect("no update in time")
                    .expect("source ended");
                assert_eq!(update.source, 7);
                match update.event {
                    SourceEvent::Unsettled {
                        bytes,
                        format,
                        hash,
                        settled,
                    } => {
                        assert_eq!(hash, content_hash(&bytes));
                        let short = flagd_evaluator::load(&bytes, format, &Default::default())
                            .is_err_and(|e| crate::store::cut_short(&bytes, format, &e));
                        settled.answer(!short);
                        if !short {
                            return SourceEvent::Content { bytes, format };
                        }
                    }
                    event => return event,
                }
            }
        }

        #[track_caller]
        fn expect_content(event: SourceEvent, expected: &str) {
            match event {
                SourceEvent::Content { bytes, .. } => {
                    assert_eq!(String::from_utf8_lossy(&bytes), expected)
                }
                other => panic!("expected content {expected}, got {other:?}"),
            }
        }

        async fn next_content(&mut self, expected: &str) {
            let event = self.next().await;
            Harness::expect_content(event, expected);
        }

        /// Asserts that nothing arrives for a while. The only bounded wait in these tests: an
        /// absence cannot be awaited.
        async fn quiet(&mut self) {
            let got = tokio::time::timeout(Duration::from_millis(300), self.rx.recv()).await;
            assert!(got.is_err(), "unexpected update {got:?}");
        }

        fn replace(&self, content: &str) {
            let tmp = self.dir.path().join(".flags.json.tmp");
            std::fs::write(&tmp, content).unwrap();
            std::fs::rename(&tmp, &self.path).unwrap();
        }
    }

    #[tokio::test]
    async fn initial_load_sends_content_with_format() {
        let mut h = Harness::with_file(Some(V1), fast());
        match h.next().await {
            SourceEvent::Content { bytes, format } => {
                assert_eq!(bytes, V1.as_bytes());
                assert_eq!(format, Format::Json);
            }
            other => panic!("{other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flags.YML");
        std::fs::write(&path, "flags: {}\n").unwrap();
        let mut h = Harness::start(dir, path, fast());
        assert!(matches!(
            h.next().await,
            SourceEvent::Content {
                format: Format::Yaml,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn write_then_rename_is_seen() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        h.replace(V2);
        h.next_content(V2).await;
    }

    #[tokio::test]
    async fn truncate_and_write_in_place_is_seen() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&h.path)
            .unwrap();
        file.write_all(V2.as_bytes()).unwrap();
        drop(file);
        // The empty, truncated file is never sent: it does not parse, and is looked at again.
        h.next_content(V2).await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn configmap_symlink_swap_is_seen() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_01")).unwrap();
        std::fs::write(d.join("..2026_01/flags.json"), V1).unwrap();
        symlink("..2026_01", d.join("..data")).unwrap();
        symlink("..data/flags.json", d.join("flags.json")).unwrap();
        let path = d.join("flags.json");
        let mut h = Harness::start(dir, path, fast());
        h.next_content(V1).await;

        // What the kubelet does: a new timestamped directory, a new symlink renamed over
        // `..data`, then the old directory removed.
        let d = h.dir.path().to_path_buf();
        std::fs::create_dir(d.join("..2026_02")).unwrap();
        std::fs::write(d.join("..2026_02/flags.json"), V2).unwrap();
        symlink("..2026_02", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join("..2026_01")).unwrap();
        h.next_content(V2).await;

        // And once more, to show the watch survived the first swap.
        std::fs::create_dir(d.join("..2026_03")).unwrap();
        std::fs::write(d.join("..2026_03/flags.json"), V1).unwrap();
        symlink("..2026_03", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join("..2026_02")).unwrap();
        h.next_content(V1).await;
    }

    /// The next update as it was sent, unanswered.
    async fn raw_update(h: &mut Harness) -> SourceEvent {
        tokio::time::timeout(WAIT, h.rx.recv())
            .await
            .expect("no update in time")
            .expect("source ended")
            .event
    }

    #[tokio::test]
    async fn a_file_cut_short_is_looked_at_again_and_then_sent_as_it_is() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        let half = &V2[..V2.len() / 2];
        h.replace(half);
        // The store finds the bytes cut short; meanwhile the save finishes.
        match raw_update(&mut h).await {
            SourceEvent::Unsettled { bytes, settled, .. } => {
                assert_eq!(bytes, half.as_bytes());
                h.replace(V2);
                settled.answer(false);
            }
            other => panic!("{other:?}"),
        }
        // Looked at once more: sent as finished content, whatever it holds.
        match raw_update(&mut h).await {
            SourceEvent::Content { bytes, .. } => assert_eq!(bytes, V2.as_bytes()),
            other => panic!("{other:?}"),
        }
        // A file that stays cut short is sent as it is after the second look, for the store
        // to reject.
        h.replace(half);
        match raw_update(&mut h).await {
            SourceEvent::Unsettled { settled, .. } => settled.answer(false),
            other => panic!("{other:?}"),
        }
        match raw_update(&mut h).await {
            SourceEvent::Content { bytes, .. } => assert_eq!(bytes, half.as_bytes()),
            other => panic!("{other:?}"),
        }
        h.quiet().await;
    }

    #[tokio::test]
    async fn delete_then_recreate() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        std::fs::remove_file(&h.path).unwrap();
        assert!(matches!(h.next().await, SourceEvent::Removed));
        // The same bytes again: the store dropped them, so they are sent again.
        std::fs::write(&h.path, V1).unwrap();
        h.next_content(V1).await;
    }

    #[tokio::test]
    async fn missing_at_start_fails_then_loads() {
        let mut h = Harness::with_file(None, fast());
        match h.next().await {
            SourceEvent::Failed(message) => {
                assert!(message.contains("does not exist"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        h.replace(V1);
        h.next_content(V1).await;
    }

    #[tokio::test]
    async fn invalid_then_fixed() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        // Still invalid when looked at again: sent, for the store to reject and report.
        h.replace("{\"flags\":");
        h.next_content("{\"flags\":").await;
        h.replace(V2);
        h.next_content(V2).await;
    }

    #[tokio::test]
    async fn unchanged_rewrite_sends_nothing() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        h.replace(V1);
        std::fs::write(&h.path, V1).unwrap();
        h.quiet().await;
        h.replace(V2);
        h.next_content(V2).await;
    }

    #[tokio::test]
    async fn other_files_in_the_directory_are_ignored() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        std::fs::write(h.dir.path().join("other.json"), V2).unwrap();
        h.quiet().await;
    }

    #[tokio::test]
    async fn polling_alone_sees_changes() {
        let mut h = Harness::with_file(Some(V1), polling());
        h.next_content(V1).await;
        std::fs::write(&h.path, V2).unwrap();
        h.next_content(V2).await;
        std::fs::remove_file(&h.path).unwrap();
        assert!(matches!(h.next().await, SourceEvent::Removed));
        h.replace(V1);
        h.next_content(V1).await;
    }

    #[tokio::test]
    async fn a_directory_that_appears_later_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later/flags.json");
        let options = FileOptions {
            poll_interval: Duration::from_millis(30),
            ..fast()
        };
        let mut h = Harness::start(dir, path, options);
        assert!(matches!(h.next().await, SourceEvent::Failed(_)));
        std::fs::create_dir(h.dir.path().join("later")).unwrap();
        std::fs::write(&h.path, V1).unwrap();
        h.next_content(V1).await;
        h.replace(V2);
        h.next_content(V2).await;
    }

    #[tokio::test]
    async fn shutdown_stops_the_source() {
        let mut h = Harness::with_file(Some(V1), fast());
        h.next_content(V1).await;
        h.stop.send_replace(true);
        tokio::time::timeout(WAIT, &mut h.task)
            .await
            .unwrap()
            .unwrap();
        assert!(h.rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_closed_store_stops_the_source() {
        let h = Harness::with_file(Some(V1), fast());
        let Harness {
            rx,
            task,
            stop: _stop,
            dir: _dir,
            ..
        } = h;
        drop(rx);
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }

    #[test]
    fn event_filter() {
        let filter = Filter::new(Path::new("/cfg/flags.json"));
        let ev = |kind, path: &str| Event::new(kind).add_path(PathBuf::from(path));
        let write = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(filter.relevant(&ev(write, "/cfg/flags.json")));
        assert!(filter.relevant(&ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/cfg/flags.json"
        )));
        assert!(filter.relevant(&ev(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/cfg/flags.json"
        )));
        assert!(!filter.relevant(&ev(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/cfg/flags.json"
        )));
        assert!(!filter.relevant(&ev(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            "/cfg/flags.json"
        )));
        assert!(filter.relevant(&ev(EventKind::Create(CreateKind::Any), "/cfg/..data")));
        assert!(filter.relevant(&ev(
            EventKind::Remove(notify::event::RemoveKind::Folder),
            "/cfg"
        )));
        assert!(!filter.relevant(&ev(write, "/cfg/other.json")));
        assert!(!filter.relevant(&ev(
            EventKind::Create(CreateKind::File),
            "/cfg/.flags.json.swp"
        )));
        assert!(filter.relevant(&Event::new(EventKind::Other)));
        filter.follow_all.store(true, Ordering::Relaxed);
        assert!(filter.relevant(&ev(write, "/cfg/other.json")));
    }
}
