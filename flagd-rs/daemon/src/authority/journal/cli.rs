//! `flagd-rs journal check|recover|compact`: the operator's commands on a state directory.
//!
//! `check` only reads (and may run beside a daemon); it exits 1 when the journal or its archive
//! is damaged. `recover --truncate-at REV` and `compact` change the directory and refuse to run
//! while a daemon holds it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::archive::describe;
use super::ops::{self, CheckReport};
use super::record::Problem;
use crate::config::Config;

/// Which state directory.
#[derive(Debug, Clone, Args)]
pub struct StateDirArgs {
    /// The daemon's state directory (default: the daemon's default).
    #[arg(long, env = "FLAGD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDirArgs {
    /// The directory given, or the daemon's default.
    pub fn dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Config::default().state_dir)
    }
}

/// `journal check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// List every intact record (offset, revision, kind, flag, time, actor).
    #[arg(long)]
    pub list: bool,
    /// The state directory.
    #[command(flatten)]
    pub state: StateDirArgs,
}

/// `journal recover --truncate-at REV`.
#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    /// Keep revisions up to REV; everything after them is moved into a new file beside the
    /// journal.
    #[arg(long, value_name = "REV")]
    pub truncate_at: u64,
    /// The state directory.
    #[command(flatten)]
    pub state: StateDirArgs,
}

/// The journal subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum JournalCommand {
    /// Read the journal and its archive, report what they hold and any damage (exit 1 when
    /// damaged). Changes nothing.
    Check(CheckArgs),
    /// Cut a damaged journal back to revision REV, moving the rest aside (kept, never
    /// overwritten). Refuses to run while a daemon uses the directory.
    Recover(RecoverArgs),
    /// Fold the journal into a snapshot and move its revisions into the archive. Refuses to run
    /// while a daemon uses the directory (a running daemon compacts by itself).
    Compact(StateDirArgs),
}

/// Runs `command`: prints its report, or the error on stderr, and returns the exit code.
pub fn main(command: &JournalCommand) -> ExitCode {
    match run(command) {
        Ok((out, healthy)) => {
            print!("{out}");
            if healthy {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` and returns what it prints and whether the journal is healthy.
pub fn run(command: &JournalCommand) -> anyhow::Result<(String, bool)> {
    match command {
        JournalCommand::Check(args) => {
            let report = ops::check(&args.state.dir())?;
            Ok((check_text(&report, args.list), !report.damaged()))
        }
        JournalCommand::Recover(args) => {
            let dir = args.state.dir();
            let done = ops::recover(&dir, args.truncate_at)?;
            let mut out = String::new();
            for line in &done.tidied {
                let _ = writeln!(out, "{line}");
            }
            if let Some(problem) = &done.problem {
                let _ = writeln!(out, "the journal had: {}", describe(problem));
            }
            match &done.saved_to {
                Some(saved) => {
                    let _ = writeln!(
                        out,
                        "kept revisions up to {}; moved {} bytes from byte {} on into {}",
                        done.kept,
                        done.moved_bytes,
                        done.cut_at,
                        saved.display()
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "nothing follows revision {}: the journal is unchanged",
                        done.kept
                    );
                }
            }
            Ok((out, true))
        }
        JournalCommand::Compact(args) => {
            let done = ops::compact(&args.dir())?;
            let mut out = String::new();
            for line in &done.recovery.tidied {
                let _ = writeln!(out, "{line}");
            }
            if let Some(problem) = &done.recovery.problem {
                let _ = writeln!(out, "cut off a torn tail: {problem}");
            }
            match done.segment {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "compacted revisions {}..={} into {}; the journal now starts from a \
                         snapshot at revision {} ({} overrides, {} rollout records): {} -> {} bytes",
                        s.first,
                        s.last,
                        super::archive::path_of(&args.dir(), &s).display(),
                        done.head,
                        done.overrides,
                        done.rollouts,
                        done.bytes.0,
                        done.bytes.1
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "nothing to compact: the journal holds no revision after its snapshot \
                         (revision {})",
                        done.head
                    );
                }
            }
            Ok((out, true))
        }
    }
}

/// The check report in words.
pub fn check_text(report: &CheckReport, list: bool) -> String {
    let mut out = String::new();
    if !report.exists {
        let _ = writeln!(
            out,
            "{}: no journal (no revision yet)",
            report.path.display()
        );
    } else {
        let _ = write!(out, "{}: {} bytes", report.path.display(), report.bytes);
        if let Some(s) = &report.snapshot {
            let _ = write!(
                out,
                ", a snapshot at revision {} ({} overrides, {} rollout records)",
                s.revision,
                s.overrides.len(),
                s.rollouts.len()
            );
        }
        match (report.records.first(), report.records.last()) {
            (Some(first), Some(last)) => {
                let _ = write!(
                    out,
                    ", {} revisions ({}..={})",
                    report.records.len(),
                    first.revision,
                    last.revision
                );
            }
            _ => out.push_str(", no revision after it"),
        }
        let _ = writeln!(out, "; head {}", report.head);
    }
    if list {
        for r in &report.records {
            let _ = writeln!(
                out,
                "  byte {:>10}  revision {:>8}  {:<8} {:<24} {}  by {}",
                r.offset,
                r.revision,
                format!("{:?}", r.kind).to_lowercase(),
                r.flag.as_deref().unwrap_or("-"),
                r.time,
                r.actor
            );
        }
    }
    for s in &report.segments {
        let _ = match &s.problem {
            None => writeln!(
                out,
                "archive: revisions {}..={}: ok",
                s.segment.first, s.segment.last
            ),
            Some(p) => writeln!(
                out,
                "archive: revisions {}..={}: DAMAGED: {p}",
                s.segment.first, s.segment.last
            ),
        };
    }
    for (first, last) in &report.gaps {
        let _ = writeln!(
            out,
            "history: revisions {first}..={last} are no longer stored (archive segments removed)"
        );
    }
    for path in &report.leftovers {
        let _ = writeln!(
            out,
            "note: {} is left over from an interrupted compaction; the next start removes it",
            path.display()
        );
    }
    if let Some(detail) = &report.inconsistent {
        let _ = writeln!(out, "DAMAGED: {detail}");
    }
    let dir = report
        .path
        .parent()
        .map_or_else(|| ".".into(), |p| p.display().to_string());
    match &report.problem {
        None => {}
        Some(Problem::Torn { offset, detail }) => {
            let _ = writeln!(
                out,
                "torn tail at byte {offset} ({} bytes): {detail}. This is an append that never \
                 completed (it was not acknowledged); the next start cuts it off and keeps the \
                 bytes aside",
                report.bytes.saturating_sub(*offset)
            );
        }
        Some(Problem::Damaged {
            offset,
            revision,
            intact,
            detail,
            resume,
        }) => {
            let _ = write!(
                out,
                "DAMAGED at byte {offset}: revision {revision} cannot be read ({detail})"
            );
            if let Some((at, next)) = resume {
                let _ = write!(
                    out,
                    "; intact records follow at byte {at} (revision {next})"
                );
            }
            let _ = writeln!(
                out,
                "\nrevisions up to {intact} are intact. The daemon will not start on this \
                 journal. To keep revisions up to {intact} and move the rest aside:\n  \
                 flagd-rs journal recover --truncate-at {intact} --state-dir {dir}"
            );
        }
    }
    if !report.damaged() {
        out.push_str("ok\n");
    }
    out
}
