//! What a suite needs from outside the repository, and the one rule for when it is missing.
//!
//! A bare `cargo test --workspace` on a machine with only a Rust toolchain passes: a suite whose
//! dependency is missing prints one line naming it and how to get it, and returns. With
//! `FLAGD_TESTBED_REQUIRED=1` (set by `.ci/run`) the same situation fails the test instead, so CI
//! never passes by skipping.

use std::io::Write;
use std::path::PathBuf;

use crate::testbed::testbed_dir;

/// The variable that turns a missing dependency from a skip into a failure.
pub const REQUIRED_VAR: &str = "FLAGD_TESTBED_REQUIRED";

/// The upstream testbed and the release the suites are written against.
pub const TESTBED_REPOSITORY: &str = "https://github.com/open-feature/flagd-testbed";
pub const TESTBED_TAG: &str = "v3.9.0";

/// Whether missing dependencies fail instead of skipping.
pub fn required() -> bool {
    std::env::var_os(REQUIRED_VAR).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Reports that `suite` cannot run because `what` is missing; `how` says how to provide it.
/// Panics when dependencies are required, otherwise prints one line to the real standard error
/// (not captured by the test harness, so it shows up in every run) and returns.
pub fn missing(suite: &str, what: &str, how: &str) {
    if required() {
        panic!("{suite}: {what} ({REQUIRED_VAR} is set, so this is a failure); {how}");
    }
    // Writing to the handle directly bypasses libtest's capture of `eprintln!`.
    let _ = writeln!(
        std::io::stderr(),
        "skipped {suite}: {what}; {how} (set {REQUIRED_VAR}=1 to make this a failure)"
    );
}

/// The testbed directory when it exists; otherwise reports the suite as skipped (or fails it,
/// see [`missing`]) and returns `None`.
pub fn testbed(suite: &str) -> Option<PathBuf> {
    let dir = testbed_dir();
    if dir.join("flags").is_dir() {
        return Some(dir);
    }
    missing(
        suite,
        &format!("the flagd testbed is not at {}", dir.display()),
        &format!(
            "set FLAGD_TESTBED=path to a checkout of {TESTBED_REPOSITORY} at tag {TESTBED_TAG}"
        ),
    );
    None
}
