//! One process per state directory: an exclusive `flock` on `<state-dir>/lock`, held as long as
//! the process uses the directory, with the holder's PID written in the file so that the next
//! process can say who holds it.
//!
//! The kernel releases the lock when the process exits, however it exits (`kill -9` included),
//! so a stale lock file never blocks a restart. The file itself is never removed: removing it
//! would let two processes lock two different files of the same name.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{JournalError, durable};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// How long to wait for a new holder to write its PID before naming no PID.
const PID_WAIT: Duration = Duration::from_millis(500);

/// The held lock of a state directory; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    /// Kept open: the lock lives as long as this file description.
    _file: File,
    dir: PathBuf,
}

impl StateLock {
    /// Locks state directory `dir`, creating it (durably) if needed. Fails with
    /// [`JournalError::Locked`], naming the holder's PID, when another process holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock, JournalError> {
        durable::create_dir_all(dir)?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    dir: dir.to_owned(),
                    pid: holder(&path),
                });
            }
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        file.set_len(0)?;
        file.write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0)?;
        Ok(StateLock {
            _file: file,
            dir: dir.to_owned(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The PID in a held lock file. A holder that has just taken the lock may not have written its
/// PID yet, so an empty file is read again for a short while.
fn holder(path: &Path) -> Option<u32> {
    let deadline = std::time::Instant::now() + PID_WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Ok(pid) = text.trim().parse() {
            return Some(pid);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        let first = StateLock::acquire(&state).unwrap();
        assert_eq!(first.dir(), state);
        let err = StateLock::acquire(&state).unwrap_err();
        let pid = std::process::id();
        assert!(
            matches!(err, JournalError::Locked { pid: Some(p), .. } if p == pid),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(&format!("PID {pid}")), "{message}");
        assert!(message.contains("--state-dir"), "{message}");
        drop(first);
        let again = StateLock::acquire(&state).unwrap();
        assert_eq!(
            std::fs::read_to_string(state.join(LOCK_FILE))
                .unwrap()
                .trim(),
            pid.to_string()
        );
        drop(again);
    }
}
