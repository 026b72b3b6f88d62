//! The `flagd-rs` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser as _;
use flagd_rs::config::{Cli, Command, Config};
use flagd_rs::{Listeners, telemetry, validate};

// Loading a flag document makes a few hundred thousand short-lived allocations; mimalloc serves
// them in about a third of the instructions the C library's allocator takes (see `heap`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log) {
        eprintln!("error: invalid log configuration: {e:#}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Command::Start(args) => report(start(Config::try_from(*args)).await),
        Command::Validate(args) => validate::run(&args),
        Command::Admin(command) => flagd_rs::cli_admin::main(&command).await,
        Command::Rollout(command) => flagd_rs::authority::rollout::cli::main(&command).await,
        Command::Journal(command) => flagd_rs::authority::journal::cli::main(&command),
        Command::Version => {
            println!("flagd-rs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

async fn start(config: anyhow::Result<Config>) -> anyhow::Result<()> {
    let config = config?;
    let listeners = Listeners::bind(&config).await?;
    flagd_rs::run(config, listeners, flagd_rs::run::shutdown_signal()).await
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
