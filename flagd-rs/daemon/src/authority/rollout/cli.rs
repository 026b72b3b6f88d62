//! The `flagd-rs rollout` client: `start FLAG --plan FILE`, `status [FLAG]`, `pause`, `resume`,
//! `promote` and `abort FLAG`, each one request to the admin API (same connection options as the
//! other admin commands); every verb sends a JSON object body as `application/json`, as the API
//! requires. They print a one-line summary (or the server's JSON with
//! `--output json`) and exit non-zero when the request fails. `status --wait` polls until the
//! rollout stops running and exits zero only if it completed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use crate::cli_admin::{ClientArgs, FlagArgs, Output};

/// `rollout start FLAG --plan FILE`.
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// The flag to roll out.
    pub flag: String,
    /// The plan file (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub plan: PathBuf,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `rollout status [FLAG]`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The flag (all rollouts when omitted).
    pub flag: Option<String>,
    /// Poll until the rollout stops running; exit 0 only if it completed.
    #[arg(long, requires = "flag")]
    pub wait: bool,
    /// How long `--wait` waits at most.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The rollout subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Start rolling out a flag by a plan.
    Start(StartArgs),
    /// Show a flag's rollout (or all rollouts).
    Status(StatusArgs),
    /// Pause a rollout (the hold stops counting).
    Pause(FlagArgs),
    /// Resume a paused rollout.
    Resume(FlagArgs),
    /// Skip the rest of the current hold.
    Promote(FlagArgs),
    /// Roll back now.
    Abort(FlagArgs),
}

impl RolloutCommand {
    fn client(&self) -> &ClientArgs {
        match self {
            RolloutCommand::Start(a) => &a.client,
            RolloutCommand::Status(a) => &a.client,
            RolloutCommand::Pause(a)
            | RolloutCommand::Resume(a)
            | RolloutCommand::Promote(a)
            | RolloutCommand::Abort(a) => &a.client,
        }
    }
}

#[derive(Debug, Parser)]
#[command(name = "flagd-rs rollout", about = "flagd-rs rollout client")]
struct RolloutCli {
    #[command(subcommand)]
    command: RolloutCommand,
}

/// Parses `args` (without the program name and `rollout`, e.g. `["status", "f"]`) and runs the
/// command; returns what it prints.
pub async fn run_args<I, T>(args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv = std::iter::once(OsString::from("rollout")).chain(args.into_iter().map(Into::into));
    let cli = RolloutCli::try_parse_from(argv)?;
    run(&cli.command).await
}

/// Runs one command from the `flagd-rs` binary: prints its output, or the error on stderr, and
/// returns the exit code.
pub async fn main(command: &RolloutCommand) -> ExitCode {
    match run(command).await {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `command` against the admin API and returns what it prints.
pub async fn run(command: &RolloutCommand) -> anyhow::Result<String> {
    let client = command.client();
    let actor = client
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned());
    let note = || json!({"actor": actor, "reason": client.reason});
    let answer = match command {
        RolloutCommand::Start(a) => {
            let bytes = std::fs::read(&a.plan)
                .with_context(|| format!("reading the plan {}", a.plan.display()))?;
            // Parsed here so a bad file is reported with its own name, before any request.
            let plan = super::plan::parse(&bytes)
                .with_context(|| format!("in the plan {}", a.plan.display()))?;
            let mut body = note();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("plan".into(), serde_json::to_value(plan)?);
            }
            request(
                client,
                reqwest::Method::POST,
                &[&a.flag, "start"],
                Some(body),
            )
            .await?
        }
        RolloutCommand::Status(a) => match &a.flag {
            None => request(client, reqwest::Method::GET, &[], None).await?,
            Some(flag) if a.wait => return wait(client, flag, a.timeout).await,
            Some(flag) => request(client, reqwest::Method::GET, &[flag], None).await?,
        },
        RolloutCommand::Pause(a) => verb(client, &a.flag, "pause", note()).await?,
        RolloutCommand::Resume(a) => verb(client, &a.flag, "resume", note()).await?,
        RolloutCommand::Promote(a) => verb(client, &a.flag, "promote", note()).await?,
        RolloutCommand::Abort(a) => verb(client, &a.flag, "abort", note()).await?,
    };
    Ok(render(client.output, &answer))
}

async fn verb(client: &ClientArgs, flag: &str, name: &str, body: Value) -> anyhow::Result<Value> {
    request(client, reqwest::Method::POST, &[flag, name], Some(body)).await
}

fn render(output: Output, answer: &Value) -> String {
    match output {
        Output::Json => format!(
            "{}\n",
            serde_json::to_string_pretty(answer).unwrap_or_default()
        ),
        Output::Text => match answer.get("rollouts").and_then(Value::as_array) {
            Some(list) if list.is_empty() => "no rollouts\n".into(),
            Some(list) => list.iter().map(|r| format!("{}\n", summary(r))).collect(),
            None => format!("{}\n", summary(answer)),
        },
    }
}

/// Polls the rollout until it stops running; succeeds only if it completed.
async fn wait(client: &ClientArgs, flag: &str, timeout: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let answer = request(client, reqwest::Method::GET, &[flag], None).await?;
        let phase = answer.get("phase").and_then(Value::as_str).unwrap_or("");
        if phase != "running" {
            let shown = render(client.output, &answer);
            if phase == "completed" {
                return Ok(shown);
            }
            bail!("{}", shown.trim_end());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "still running after {}",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One request to `/v1/rollouts/<path...>` through the admin client.
async fn request(
    client: &ClientArgs,
    method: reqwest::Method,
    path: &[&str],
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let path = ["v1", "rollouts"]
        .into_iter()
        .chain(path.iter().copied())
        .map(str::to_owned)
        .collect();
    crate::cli_admin::request(
        client,
        crate::cli_admin::Call {
            method,
            path,
            query: Vec::new(),
            body,
        },
    )
    .await
}

fn weights_text(weights: Option<&Value>) -> String {
    weights
        .and_then(Value::as_object)
        .map(|w: &Map<String, Value>| {
            w.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// `ramp: running, step 3/6, canary 25% (canary=25 stable=75), 7s left; gates: ok pass (0.99)`.
pub fn summary(r: &Value) -> String {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("?");
    let n = |k: &str| r.get(k).and_then(Value::as_u64).unwrap_or(0);
    let weight = r.get("weight").and_then(Value::as_f64).unwrap_or(0.0);
    let mut line = format!(
        "{}: {}, step {}/{}, {} {weight}% ({})",
        s("flag"),
        s("phase"),
        n("step"),
        n("steps"),
        s("variant"),
        weights_text(r.get("weights"))
    );
    if matches!(s("phase"), "running" | "paused") {
        let left = Duration::from_secs(n("holdRemainingMs").div_ceil(1000));
        let _ = write!(line, ", {} left", humantime::format_duration(left));
    }
    if let Some(reason) = r.get("reason").and_then(Value::as_str) {
        let _ = write!(line, "; {reason}");
    }
    if let Some(problem) = r.get("problem").and_then(Value::as_str) {
        let _ = write!(line, "; problem: {problem}");
    }
    let gates: Vec<String> = r
        .get("gates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| {
            let name = g.get("name").and_then(Value::as_str)?;
            let last = g.get("last");
            let verdict = last
                .and_then(|l| l.get("verdict"))
                .and_then(Value::as_str)
                .unwrap_or("unchecked");
            Some(
                match last.and_then(|l| l.get("value")).and_then(Value::as_f64) {
                    Some(v) => format!("{name} {verdict} ({v})"),
                    None => format!("{name} {verdict}"),
                },
            )
        })
        .collect();
    if !gates.is_empty() {
        let _ = write!(line, "; gates: {}", gates.join(", "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        let cli =
            RolloutCli::try_parse_from(["rollout", "start", "f", "--plan", "p.yaml", "-o", "json"])
                .unwrap();
        match cli.command {
            RolloutCommand::Start(a) => {
                assert_eq!(a.flag, "f");
                assert_eq!(a.plan, PathBuf::from("p.yaml"));
                assert_eq!(a.client.output, Output::Json);
            }
            other => panic!("{other:?}"),
        }
        assert!(RolloutCli::try_parse_from(["rollout", "start", "f"]).is_err());
        assert!(RolloutCli::try_parse_from(["rollout", "status"]).is_ok());
        assert!(RolloutCli::try_parse_from(["rollout", "status", "--wait"]).is_err());
        assert!(RolloutCli::try_parse_from(["rollout", "abort"]).is_err());
        for verb in ["pause", "resume", "promote", "abort"] {
            assert!(
                RolloutCli::try_parse_from(["rollout", verb, "f"]).is_ok(),
                "{verb}"
            );
        }
    }

    #[test]
    fn status_summary() {
        let r = json!({"flag": "ramp", "phase": "running", "step": 3, "steps": 6,
            "variant": "canary", "weight": 25.0, "weights": {"canary": 25, "stable": 75},
            "holdRemainingMs": 6500,
            "gates": [{"name": "ok", "last": {"verdict": "pass", "value": 0.99}}, {"name": "hook"}]});
        assert_eq!(
            summary(&r),
            "ramp: running, step 3/6, canary 25% (canary=25 stable=75), 7s left; gates: ok pass (0.99), hook unchecked"
        );
        assert_eq!(
            render(Output::Text, &json!({"rollouts": []})),
            "no rollouts\n"
        );
    }
}
