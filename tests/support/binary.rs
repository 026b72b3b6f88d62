//! The real `flagd-rs` executable, for tests that run it as a separate process.
//!
//! `cargo test` builds the executables of a package only for that package's own integration
//! tests, so this package asks cargo for it once per test run: `cargo build -p flagd-rs --bin
//! flagd-rs` into the same target directory and profile as the running test binary. The daemon
//! library is already built at that point; only the executable is compiled and linked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of a freshly built `flagd-rs` executable. Panics with cargo's output when the build
/// fails: the executable is part of this repository, so its absence is never a skip.
pub fn flagd_rs() -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn build() -> Result<PathBuf, String> {
    // <target>/<profile>/deps/<test binary>
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test binary location")?;
    let target_dir = profile_dir.parent().ok_or("unexpected target directory")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", "flagd-rs", "--bin", "flagd-rs"])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(crate::testbed::workspace_root());
    if release {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo to build flagd-rs: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p flagd-rs failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = profile_dir.join(format!("flagd-rs{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("{} missing after cargo build", path.display()))
    }
}
