//! The flagd testbed's flag files, for unit tests that run every rule or document in it.

use std::path::PathBuf;

use serde_json::Value;

/// Every JSON flag file of the testbed (`$FLAGD_TESTBED`, or `../shared/testbed` beside the
/// workspace), parsed, with its path; `None`, after a line saying so, when there is no testbed.
pub(crate) fn flag_documents() -> Option<Vec<(PathBuf, Value)>> {
    let root = std::env::var_os("FLAGD_TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testbed")
        });
    if !root.is_dir() {
        println!(
            "skipping: no testbed at {} (set FLAGD_TESTBED)",
            root.display()
        );
        return None;
    }
    let mut documents = Vec::new();
    for dir in [root.join("flags"), root.join("evaluator/flags")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let doc = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            documents.push((path, doc));
        }
    }
    Some(documents)
}
