//! Logging: console or JSON lines on stderr, filtered by `RUST_LOG` or the `--debug` flag.

use tracing_subscriber::EnvFilter;

use crate::config::{LogArgs, LogFormat};

/// The filter used when `RUST_LOG` is not set. Dependencies stay at `info` under `--debug`
/// because their debug output (every HTTP/2 frame) drowns the daemon's own.
fn default_filter(debug: bool) -> &'static str {
    if debug {
        "info,flagd_rs=debug,flagd_evaluator=debug"
    } else {
        "info"
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the first one stays).
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(spec)?,
        _ => EnvFilter::new(default_filter(args.debug)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Console => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // A subscriber already installed (tests starting several daemons) is not an error.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_raises_only_our_crates() {
        assert_eq!(default_filter(false), "info");
        assert!(default_filter(true).contains("flagd_rs=debug"));
        assert!(EnvFilter::try_new(default_filter(true)).is_ok());
    }
}
