//! The last state a replica served, kept in its state directory when the journal is shared.
//!
//! With a shared store the journal lives elsewhere, so a replica that restarts while the store
//! is unreachable would come back with no overrides. After every change it applies, the
//! authority writes its state as of the head (the same [`Snapshot`] a compaction writes) to
//! `fleet-cache.log`, framed and checksummed like a journal record, through a temporary file
//! that is synced and renamed over the old one: a crash leaves the old cache or the new one,
//! never a mix. At start-up the cache is what the replica serves until the store answers.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use super::journal::durable::sync_dir;
use super::journal::lock::StateLock;
use super::journal::record::{Entry, read_entry};
use super::journal::{JournalError, Snapshot, encode_snapshot};

/// The cache file's name inside the state directory.
pub const CACHE_FILE: &str = "fleet-cache.log";

/// The cached state of a replica.
#[derive(Debug, Clone)]
pub struct StateCache {
    path: PathBuf,
    /// The state directory's lock, held as long as the cache: two replicas on one directory
    /// would overwrite each other's cache.
    _lock: Option<Arc<StateLock>>,
}

impl StateCache {
    /// The cache in state directory `dir`, without taking the directory's lock.
    pub fn in_dir(dir: &Path) -> StateCache {
        StateCache {
            path: dir.join(CACHE_FILE),
            _lock: None,
        }
    }

    /// The cache in state directory `dir`, which this process locks (and creates if needed)
    /// for as long as the cache lives. Fails when another process holds the directory.
    pub fn locked(dir: &Path) -> Result<StateCache, JournalError> {
        let lock = StateLock::acquire(dir)?;
        Ok(StateCache {
            path: dir.join(CACHE_FILE),
            _lock: Some(Arc::new(lock)),
        })
    }

    /// The cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached state; `None` when there is no cache yet. A cache that does not read (a
    /// damaged disk) is an error naming the file, never an empty state served as if current.
    pub fn load(&self) -> io::Result<Option<Snapshot>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |detail: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not read: {detail}", self.path.display()),
            )
        };
        match read_entry(&bytes, 0).map_err(bad)? {
            (Entry::Snapshot(snapshot), end) if end == bytes.len() => Ok(Some(snapshot)),
            (Entry::Snapshot(_), _) => Err(bad("bytes follow the state".into())),
            (Entry::Revision(_), _) => Err(bad("it holds a revision, not a state".into())),
        }
    }

    /// Replaces the cache with `snapshot`, durably.
    pub fn store(&self, snapshot: &Snapshot) -> io::Result<()> {
        let bytes = encode_snapshot(snapshot).map_err(io::Error::other)?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let temp = dir.join(format!("{CACHE_FILE}.tmp"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, &self.path)?;
        sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flagd_evaluator::OverridePatch;

    fn state(revision: u64) -> Snapshot {
        let mut snapshot = Snapshot {
            revision,
            time: "2026-01-01T00:00:00.000Z".into(),
            ..Snapshot::default()
        };
        snapshot.overrides.insert(
            "checkout".into(),
            OverridePatch {
                default_variant: Some("on".into()),
                ..OverridePatch::default()
            },
        );
        snapshot
    }

    #[test]
    fn a_missing_cache_is_none_and_a_stored_one_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StateCache::in_dir(dir.path());
        assert!(cache.load().unwrap().is_none());
        cache.store(&state(3)).unwrap();
        cache.store(&state(4)).unwrap();
        assert_eq!(cache.load().unwrap(), Some(state(4)));
        assert!(!dir.path().join(format!("{CACHE_FILE}.tmp")).exists());
    }

    #[test]
    fn a_locked_cache_keeps_a_second_process_out() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StateCache::locked(dir.path()).unwrap();
        assert!(matches!(
            StateCache::locked(dir.path()),
            Err(JournalError::Locked { .. })
        ));
        drop(cache);
        StateCache::locked(dir.path()).unwrap();
    }

    #[test]
    fn a_flipped_byte_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StateCache::in_dir(dir.path());
        cache.store(&state(7)).unwrap();
        let mut bytes = fs::read(cache.path()).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        fs::write(cache.path(), &bytes).unwrap();
        let err = cache.load().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        fs::write(cache.path(), &bytes[..bytes.len() / 2]).unwrap();
        assert!(cache.load().is_err());
    }
}
