//! `flagd-rs validate`: loads flag files exactly as the daemon would and reports every problem.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use flagd_evaluator::{Diagnostic, Format, LoadOptions, Severity};

use crate::config::ValidateArgs;

/// What validating one file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// Whether the daemon would accept the file.
    pub accepted: bool,
    /// Number of flags loaded (0 when rejected).
    pub flags: usize,
    /// Every warning and error, errors first for rejected files.
    pub diagnostics: Vec<Diagnostic>,
}

/// Validates one document's bytes (format from the file name) with `options`.
pub fn check_bytes(name: &str, bytes: &[u8], options: &LoadOptions) -> FileReport {
    match flagd_evaluator::load(bytes, Format::from_path(name), options) {
        Ok(loaded) => FileReport {
            accepted: true,
            flags: loaded.flags.len(),
            diagnostics: loaded.diagnostics,
        },
        Err(err) => FileReport {
            accepted: false,
            flags: 0,
            diagnostics: err.diagnostics(),
        },
    }
}

/// Validates one file.
pub fn check_file(path: &Path, options: &LoadOptions) -> FileReport {
    match std::fs::read(path) {
        Ok(bytes) => check_bytes(&path.to_string_lossy(), &bytes, options),
        Err(err) => FileReport {
            accepted: false,
            flags: 0,
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                flag: None,
                pointer: String::new(),
                message: format!("cannot read file: {err}"),
            }],
        },
    }
}

/// Validates every file in `args`, printing one line per diagnostic and a summary per file to
/// `out`. Returns `true` when every file would be accepted.
pub fn run_to(args: &ValidateArgs, out: &mut dyn Write) -> bool {
    let options = args.load.load_options();
    let mut all_ok = true;
    for path in &args.files {
        let report = check_file(path, &options);
        let name = path.display();
        for d in &report.diagnostics {
            let _ = writeln!(out, "{name}: {d}");
        }
        let warnings = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count();
        let _ = if report.accepted {
            writeln!(
                out,
                "{name}: ok ({} flags, {warnings} warnings)",
                report.flags
            )
        } else {
            let errors = report.diagnostics.len() - warnings;
            writeln!(
                out,
                "{name}: rejected ({errors} errors, {warnings} warnings)"
            )
        };
        all_ok &= report.accepted;
    }
    all_ok
}

/// Runs `flagd-rs validate` on stdout: exit code 0 when every file is accepted, 1 otherwise.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if run_to(args, &mut out) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_by_severity() {
        let opts = LoadOptions::default();
        let ok = check_bytes(
            "a.json",
            br#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"a"}}}"#,
            &opts,
        );
        assert!(
            ok.accepted && ok.flags == 1 && ok.diagnostics.is_empty(),
            "{ok:?}"
        );
        let bad = check_bytes(
            "a.json",
            br#"{"flags":{"f":{"state":"ENABLED","variants":{"a":1},"defaultVariant":"b"}}}"#,
            &opts,
        );
        assert!(
            !bad.accepted
                && bad
                    .diagnostics
                    .iter()
                    .any(|d| d.severity == Severity::Error)
        );
        let yaml = check_bytes(
            "a.yaml",
            b"flags:\n  f:\n    state: ENABLED\n    variants: {a: true}\n    defaultVariant: a\n",
            &opts,
        );
        assert!(yaml.accepted, "{yaml:?}");
    }
}
