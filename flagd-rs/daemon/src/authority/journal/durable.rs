//! File-system steps that survive a crash: directories whose entries are synced, and files
//! saved aside under names that are never reused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// Makes the entries of directory `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, syncing the parent of each directory created so a
/// crash cannot lose it.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path);
        at = path.parent();
    }
    for path in missing.into_iter().rev() {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => continue,
            Err(e) => return Err(e),
        }
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file in `dir` named `name`, or `name.1`, `name.2`, … when taken (an
/// existing file is never overwritten), and makes the file and its name durable.
pub fn save_aside(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    for n in 0u32.. {
        let path = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{name}.{n}"))
        };
        let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.write_all(bytes)?;
        file.sync_all()?;
        sync_dir(dir)?;
        return Ok(path);
    }
    Err(io::Error::other("no free name to save the bytes under"))
}

/// Removes `path` if it exists; whether it did.
pub fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_files_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let first = save_aside(dir.path(), "x.corrupt-8", b"one").unwrap();
        let second = save_aside(dir.path(), "x.corrupt-8", b"two").unwrap();
        let third = save_aside(dir.path(), "x.corrupt-8", b"three").unwrap();
        assert_ne!(first, second);
        assert_ne!(second, third);
        assert_eq!(fs::read(&first).unwrap(), b"one");
        assert_eq!(fs::read(&second).unwrap(), b"two");
        assert_eq!(fs::read(&third).unwrap(), b"three");
    }

    #[test]
    fn nested_directories_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"").unwrap();
        assert!(create_dir_all(&file.join("sub")).is_err());
    }
}
