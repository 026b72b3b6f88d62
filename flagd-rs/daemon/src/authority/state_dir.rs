//! The state directory's start-up check: it exists (created with its parents, each new entry made
//! durable) and a file written there reaches the disk. A deployment that cannot write its
//! journal fails at start with a message saying so, not at the first override.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::journal::durable::{create_dir_all, sync_dir};

/// Creates `dir` if needed and proves it writable by writing, fsyncing and removing a probe file.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    let hint = "give --state-dir (FLAGD_STATE_DIR) a writable directory, e.g. a volume";
    create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the state directory {}; {hint}",
            dir.display()
        )
    })?;
    probe(dir).with_context(|| {
        format!(
            "the state directory {} is not writable; {hint}",
            dir.display()
        )
    })
}

fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".write-probe-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        file.write_all(b"flagd-rs state directory probe\n")?;
        file.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    result?;
    removed?;
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_directories_and_leaves_no_probe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b").join("state");
        prepare(&dir).unwrap();
        assert!(dir.is_dir());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // Again, on an existing directory.
        prepare(&dir).unwrap();
    }

    #[test]
    fn a_file_in_the_way_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("state");
        std::fs::write(&file, b"x").unwrap();
        let err = format!("{:#}", prepare(&file).unwrap_err());
        assert!(err.contains("state directory"), "{err}");
        assert!(err.contains("--state-dir"), "{err}");
    }
}
