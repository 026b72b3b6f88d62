//! Client subcommands for pipelines: change and inspect overrides through the admin API.
//!
//! `flagd-rs split FLAG stable=95 canary=5`, `switch FLAG VARIANT`, `enable FLAG`,
//! `disable FLAG`, `clear FLAG`, `overrides`, `history [FLAG]` and `restore REVISION` each make
//! one request to the admin API (`--admin-url`), authenticated with the token from
//! `--admin-token-file` or `FLAGD_ADMIN_TOKEN`. They print a one-line summary (or the server's
//! JSON with `--output json`) and exit non-zero when the request fails. `history` pages through
//! the whole history (`GET /v1/revisions?after=`), oldest first.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

/// The admin API's default address.
pub const DEFAULT_ADMIN_URL: &str = "http://127.0.0.1:8017";

/// Revisions `history` asks for per request (the API's largest page).
const HISTORY_PAGE: usize = 1000;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// One human-readable summary per result.
    #[default]
    Text,
    /// The admin API's JSON answer.
    Json,
}

/// How to reach the admin API, and what to record with a change.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the admin API.
    #[arg(long, env = "FLAGD_ADMIN_URL", default_value = DEFAULT_ADMIN_URL)]
    pub admin_url: String,
    /// File holding the admin bearer token (else `FLAGD_ADMIN_TOKEN` is used, if set).
    #[arg(long, env = "FLAGD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an `https://` admin URL, besides the system's roots
    /// (e.g. the daemon's own self-signed certificate).
    #[arg(long, env = "FLAGD_ADMIN_CA_CERT")]
    pub admin_ca_cert: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Why the change is made (recorded in the revision).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who makes the change (recorded in the revision; defaults to `$USER`).
    #[arg(long, env = "FLAGD_ADMIN_ACTOR")]
    pub actor: Option<String>,
    /// Make the change only if the authority is still at this revision.
    #[arg(long, value_name = "REVISION")]
    pub if_match: Option<u64>,
}

/// Who a change waits for before the command returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WaitFor {
    /// Every live replica serves the change's revision.
    All,
}

/// `--wait all --timeout 10s`: after a change, wait until every replica serves it.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// After the change, wait until every live replica serves its revision (`all`); the
    /// command fails, naming the replicas behind, when `--timeout` passes first.
    #[arg(long, value_enum, value_name = "WHO")]
    pub wait: Option<WaitFor>,
    /// How long `--wait` waits at most.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Arguments naming one flag whose override a command changes.
#[derive(Debug, Clone, Args)]
pub struct ChangeArgs {
    /// The flag's key.
    pub flag: String,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Waiting for the replicas.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `replicas`.
#[derive(Debug, Clone, Args)]
pub struct ReplicasArgs {
    /// Wait until every live replica serves this revision.
    #[arg(long, value_name = "REVISION")]
    pub revision: Option<u64>,
    /// How long a wait for `--revision` lasts at most.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Arguments naming one flag.
#[derive(Debug, Clone, Args)]
pub struct FlagArgs {
    /// The flag's key.
    pub flag: String,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `split FLAG VARIANT=WEIGHT...`.
#[derive(Debug, Clone, Args)]
pub struct SplitArgs {
    /// The flag's key.
    pub flag: String,
    /// New weights, e.g. `stable=95 canary=5`; split variants not named get 0.
    #[arg(required = true, value_name = "VARIANT=WEIGHT", value_parser = parse_weight)]
    pub weights: Vec<(String, u32)>,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Waiting for the replicas.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `switch FLAG VARIANT`.
#[derive(Debug, Clone, Args)]
pub struct SwitchArgs {
    /// The flag's key.
    pub flag: String,
    /// The variant to serve by default.
    pub variant: String,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Waiting for the replicas.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `history [FLAG]`.
#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Only the revisions concerning this flag.
    pub flag: Option<String>,
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `restore REVISION`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The revision whose override set to restore (0: no overrides).
    pub revision: u64,
    /// Connection and change options.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Waiting for the replicas.
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// `overrides`.
#[derive(Debug, Clone, Args)]
pub struct OverridesArgs {
    /// Connection options.
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The admin client subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// Set the weights of a flag's fractional split.
    Split(SplitArgs),
    /// Switch a flag's default variant (blue/green).
    Switch(SwitchArgs),
    /// Serve a flag enabled.
    Enable(ChangeArgs),
    /// Serve a flag disabled.
    Disable(ChangeArgs),
    /// Remove a flag's override.
    Clear(ChangeArgs),
    /// List the flags that have an override.
    Overrides(OverridesArgs),
    /// List revisions, optionally of one flag.
    History(HistoryArgs),
    /// Restore the override set of an earlier revision.
    Restore(RestoreArgs),
    /// List the replicas and the revision each serves, or wait until all serve one.
    Replicas(ReplicasArgs),
}

impl AdminCommand {
    fn client(&self) -> &ClientArgs {
        match self {
            AdminCommand::Split(a) => &a.client,
            AdminCommand::Switch(a) => &a.client,
            AdminCommand::Enable(a) | AdminCommand::Disable(a) | AdminCommand::Clear(a) => {
                &a.client
            }
            AdminCommand::Overrides(a) => &a.client,
            AdminCommand::History(a) => &a.client,
            AdminCommand::Restore(a) => &a.client,
            AdminCommand::Replicas(a) => &a.client,
        }
    }

    /// For a change: how it waits for the replicas.
    fn wait(&self) -> Option<&WaitArgs> {
        match self {
            AdminCommand::Split(a) => Some(&a.wait),
            AdminCommand::Switch(a) => Some(&a.wait),
            AdminCommand::Enable(a) | AdminCommand::Disable(a) | AdminCommand::Clear(a) => {
                Some(&a.wait)
            }
            AdminCommand::Restore(a) => Some(&a.wait),
            AdminCommand::Overrides(_) | AdminCommand::History(_) | AdminCommand::Replicas(_) => {
                None
            }
        }
    }
}

/// Parses `variant=weight`.
fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (name, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("expected VARIANT=WEIGHT, got `{s}`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("missing variant name in `{s}`"));
    }
    let weight = weight
        .trim()
        .parse()
        .map_err(|_| format!("the weight in `{s}` must be a whole number >= 0"))?;
    Ok((name.to_owned(), weight))
}

/// Parses the admin subcommands alone, for callers that embed them.
#[derive(Debug, Parser)]
#[command(name = "flagd-rs", about = "flagd-rs admin client")]
struct AdminCli {
    #[command(subcommand)]
    command: AdminCommand,
}

/// Parses `args` (without the program name, e.g. `["split", "f", "a=1"]`) and runs the command;
/// returns what it prints.
pub async fn run_args<I, T>(args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let argv = std::iter::once(OsString::from("flagd-rs")).chain(args.into_iter().map(Into::into));
    let cli = AdminCli::try_parse_from(argv)?;
    run(&cli.command).await
}

/// Runs one command from the `flagd-rs` binary: prints its output, or the error on stderr, and
/// returns the exit code.
pub async fn main(command: &AdminCommand) -> ExitCode {
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

/// One admin API request: method, path segments under the admin URL, query and JSON body.
pub(crate) struct Call {
    pub(crate) method: reqwest::Method,
    pub(crate) path: Vec<String>,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Value>,
}

/// Runs `command` against the admin API and returns what it prints.
pub async fn run(command: &AdminCommand) -> anyhow::Result<String> {
    let client = command.client();
    let actor = client
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned());
    let change = |mut body: Map<String, Value>| {
        body.insert("actor".into(), Value::String(actor.clone()));
        body.insert("reason".into(), Value::String(client.reason.clone()));
        Some(Value::Object(body))
    };
    let flag_path = |flag: &str| {
        vec![
            "v1".into(),
            "flags".into(),
            flag.to_owned(),
            "override".into(),
        ]
    };
    let put = reqwest::Method::PUT;
    let call = match command {
        AdminCommand::Split(a) => {
            let weights: Map<String, Value> = a
                .weights
                .iter()
                .map(|(n, w)| (n.clone(), Value::from(*w)))
                .collect();
            let mut body = Map::new();
            body.insert("weights".into(), Value::Object(weights));
            Call {
                method: put,
                path: flag_path(&a.flag),
                query: vec![],
                body: change(body),
            }
        }
        AdminCommand::Switch(a) => {
            let mut body = Map::new();
            body.insert("defaultVariant".into(), Value::String(a.variant.clone()));
            Call {
                method: put,
                path: flag_path(&a.flag),
                query: vec![],
                body: change(body),
            }
        }
        AdminCommand::Enable(a) | AdminCommand::Disable(a) => {
            let state = if matches!(command, AdminCommand::Enable(_)) {
                "ENABLED"
            } else {
                "DISABLED"
            };
            let mut body = Map::new();
            body.insert("state".into(), Value::String(state.into()));
            Call {
                method: put,
                path: flag_path(&a.flag),
                query: vec![],
                body: change(body),
            }
        }
        AdminCommand::Clear(a) => Call {
            method: reqwest::Method::DELETE,
            path: flag_path(&a.flag),
            query: vec![],
            body: change(Map::new()),
        },
        AdminCommand::Overrides(_) => Call {
            method: reqwest::Method::GET,
            path: vec!["v1".into(), "flags".into()],
            query: vec![],
            body: None,
        },
        // Several requests, one per page.
        AdminCommand::History(a) => return history(client, a).await,
        AdminCommand::Replicas(a) => return replicas(client, a.revision, a.timeout).await,
        AdminCommand::Restore(a) => Call {
            method: reqwest::Method::POST,
            path: vec![
                "v1".into(),
                "revisions".into(),
                a.revision.to_string(),
                "restore".into(),
            ],
            query: vec![],
            body: change(Map::new()),
        },
    };
    let mut answer = request(client, call).await?;
    let mut served = None;
    if let Some(wait) = command.wait().filter(|w| w.wait.is_some()) {
        let revision = answer
            .get("revision")
            .and_then(Value::as_u64)
            .context("the admin API's answer names no revision to wait for")?;
        let convergence = wait_for_replicas(client, revision, wait.timeout).await?;
        let count = convergence
            .get("replicas")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        served = Some(format!("served by every replica ({count})\n"));
        if let (Some(obj), Some(list)) = (answer.as_object_mut(), convergence.get("replicas")) {
            obj.insert("replicas".into(), list.clone());
        }
    }
    let printed = match client.output {
        Output::Json => {
            let shown = match command {
                AdminCommand::Overrides(_) => only_overrides(&answer),
                _ => answer,
            };
            format!("{}\n", serde_json::to_string_pretty(&shown)?)
        }
        Output::Text => match command {
            AdminCommand::Overrides(_) => overrides_text(&answer),
            AdminCommand::History(_) => history_text(&answer),
            _ => format!("{}\n", revision_line(&answer)),
        },
    };
    Ok(match (client.output, served) {
        (Output::Text, Some(served)) => printed + &served,
        _ => printed,
    })
}

/// `GET /v1/replicas?revision=N&timeout=T`: the replicas once all serve revision `revision`;
/// an error naming those behind when `timeout` passes first.
async fn wait_for_replicas(
    client: &ClientArgs,
    revision: u64,
    timeout: Duration,
) -> anyhow::Result<Value> {
    let call = Call {
        method: reqwest::Method::GET,
        path: vec!["v1".into(), "replicas".into()],
        query: vec![
            ("revision", revision.to_string()),
            ("timeout", format!("{}ms", timeout.as_millis())),
        ],
        body: None,
    };
    request(client, call).await
}

/// `replicas`: the list, or a wait for `revision`.
async fn replicas(
    client: &ClientArgs,
    revision: Option<u64>,
    timeout: Duration,
) -> anyhow::Result<String> {
    let answer = match revision {
        Some(revision) => wait_for_replicas(client, revision, timeout).await?,
        None => {
            let call = Call {
                method: reqwest::Method::GET,
                path: vec!["v1".into(), "replicas".into()],
                query: vec![],
                body: None,
            };
            request(client, call).await?
        }
    };
    if client.output == Output::Json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(&answer)?));
    }
    let mut out = String::new();
    for r in answer
        .get("replicas")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = r.get("id").and_then(Value::as_str).unwrap_or("?");
        let n = r.get("revision").and_then(Value::as_u64).unwrap_or(0);
        let connected = r.get("connected").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            out,
            "{id}\trevision {n}{}",
            if connected {
                ""
            } else {
                "\t(store unreachable)"
            }
        );
    }
    Ok(out)
}

/// `history`: every revision (of one flag), oldest first, read a page at a time.
async fn history(client: &ClientArgs, args: &HistoryArgs) -> anyhow::Result<String> {
    let mut revisions = Vec::new();
    let mut after = 0u64;
    let head = loop {
        let mut query = vec![
            ("after", after.to_string()),
            ("limit", HISTORY_PAGE.to_string()),
        ];
        if let Some(flag) = &args.flag {
            query.push(("flag", flag.clone()));
        }
        let call = Call {
            method: reqwest::Method::GET,
            path: vec!["v1".into(), "revisions".into()],
            query,
            body: None,
        };
        let mut answer = request(client, call).await?;
        if let Some(Value::Array(page)) = answer.get_mut("revisions").map(Value::take) {
            revisions.extend(page);
        }
        match answer.pointer("/next/after").and_then(Value::as_u64) {
            Some(next) if next > after => after = next,
            _ => break answer.get("head").cloned().unwrap_or(Value::Null),
        }
    };
    let answer = json!({"head": head, "revisions": revisions});
    Ok(match client.output {
        Output::Json => format!("{}\n", serde_json::to_string_pretty(&answer)?),
        Output::Text => history_text(&answer),
    })
}

fn token(client: &ClientArgs) -> anyhow::Result<Option<String>> {
    if let Some(path) = &client.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the admin token file {}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            bail!("the admin token file {} is empty", path.display());
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var("FLAGD_ADMIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// Sends `call` with the client's token and `If-Match`; the JSON answer, or an error naming the
/// server's.
pub(crate) async fn request(client: &ClientArgs, call: Call) -> anyhow::Result<Value> {
    let mut url = reqwest::Url::parse(&client.admin_url)
        .with_context(|| format!("invalid --admin-url `{}`", client.admin_url))?;
    {
        let mut segments = url.path_segments_mut().map_err(|()| {
            anyhow::anyhow!("--admin-url `{}` cannot take a path", client.admin_url)
        })?;
        segments.pop_if_empty();
        segments.extend(&call.path);
    }
    if !call.query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(90));
    if let Some(path) = &client.admin_ca_cert {
        let pem = std::fs::read(path)
            .with_context(|| format!("reading the CA certificate {}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    let http = builder.build().context("building the HTTP client")?;
    let is_get = call.method == reqwest::Method::GET;
    let mut req = http.request(call.method, url.clone());
    if let Some(token) = token(client)? {
        req = req.bearer_auth(token);
    }
    if let Some(revision) = client.if_match {
        req = req.header(reqwest::header::IF_MATCH, revision.to_string());
    }
    // Every request that changes something is JSON (the admin API refuses anything else).
    match &call.body {
        Some(body) => req = req.json(body),
        None if !is_get => req = req.json(&json!({})),
        None => {}
    }
    let response = req
        .send()
        .await
        .with_context(|| format!("calling the admin API at {url}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .context("reading the admin API's answer")?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let message = value
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        let code = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("error");
        bail!("{} {code}: {message}", status.as_u16());
    }
    Ok(value)
}

/// The flags of a `GET /v1/flags` answer that have an override.
fn only_overrides(answer: &Value) -> Value {
    let flags: Vec<&Value> = answer
        .get("flags")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter(|f| f.get("override").is_some())
                .collect()
        })
        .unwrap_or_default();
    let dangling = answer.get("dangling").cloned().unwrap_or_else(|| json!([]));
    json!({"revision": answer.get("revision"), "flags": flags, "dangling": dangling})
}

/// `weights stable=95 canary=5, state DISABLED`: a patch in words.
fn patch_text(patch: Option<&Value>) -> String {
    let Some(patch) = patch.filter(|p| !p.is_null()) else {
        return "none".into();
    };
    let mut parts = Vec::new();
    if let Some(s) = patch.get("state").and_then(Value::as_str) {
        parts.push(format!("state {s}"));
    }
    if let Some(v) = patch.get("defaultVariant").and_then(Value::as_str) {
        parts.push(format!("defaultVariant {v}"));
    }
    if let Some(w) = patch.get("weights").and_then(Value::as_object) {
        let list: Vec<String> = w.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("weights {}", list.join(" ")));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn revision_line(r: &Value) -> String {
    let n = r.get("revision").and_then(Value::as_u64).unwrap_or(0);
    let kind = r.get("kind").and_then(Value::as_str).unwrap_or("?");
    let mut line = format!("revision {n} {kind}");
    if let Some(restored) = r.get("restored").and_then(Value::as_u64) {
        let _ = write!(line, " of revision {restored}");
    }
    if let Some(flag) = r.get("flag").and_then(Value::as_str) {
        let _ = write!(line, " {flag}");
    }
    for c in r
        .get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let flag = c.get("flag").and_then(Value::as_str).unwrap_or("?");
        let _ = write!(line, "; {flag}: {}", patch_text(c.get("after")));
    }
    let actor = r.get("actor").and_then(Value::as_str).unwrap_or("");
    let _ = write!(line, " (by {actor}");
    match r
        .get("reason")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        Some(reason) => {
            let _ = write!(line, ": {reason})");
        }
        None => line.push(')'),
    }
    line
}

fn history_text(answer: &Value) -> String {
    let mut out = String::new();
    let list = answer.get("revisions").and_then(Value::as_array);
    for r in list.into_iter().flatten() {
        let time = r.get("time").and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(out, "{time}  {}", revision_line(r));
    }
    if out.is_empty() {
        out.push_str("no revisions\n");
    }
    out
}

fn overrides_text(answer: &Value) -> String {
    let mut out = String::new();
    let list = answer.get("flags").and_then(Value::as_array);
    for f in list.into_iter().flatten() {
        let Some(patch) = f.get("override") else {
            continue;
        };
        let key = f.get("key").and_then(Value::as_str).unwrap_or("?");
        let _ = write!(out, "{key}: {}", patch_text(Some(patch)));
        if let Some(e) = f.get("overrideError").and_then(Value::as_str) {
            let _ = write!(out, " (stale, skipped: {e})");
        }
        out.push('\n');
    }
    let dangling = answer.get("dangling").and_then(Value::as_array);
    for d in dangling.into_iter().flatten() {
        let key = d.get("key").and_then(Value::as_str).unwrap_or("?");
        let _ = writeln!(
            out,
            "{key}: {} (dangling: no source defines '{key}'; `flagd-rs clear {key}` removes it)",
            patch_text(d.get("override"))
        );
    }
    if out.is_empty() {
        out.push_str("no overrides\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_parse() {
        assert_eq!(parse_weight("canary=5"), Ok(("canary".into(), 5)));
        assert!(parse_weight("canary").is_err());
        assert!(parse_weight("=5").is_err());
        assert!(parse_weight("a=-1").is_err());
        assert!(parse_weight("a=1.5").is_err());
    }

    #[test]
    fn commands_parse() {
        let cli = AdminCli::try_parse_from(["flagd-rs", "split", "f", "a=1", "b=2", "-o", "json"])
            .unwrap();
        match cli.command {
            AdminCommand::Split(a) => {
                assert_eq!(a.weights, [("a".into(), 1), ("b".into(), 2)]);
                assert_eq!(a.client.output, Output::Json);
            }
            other => panic!("{other:?}"),
        }
        assert!(AdminCli::try_parse_from(["flagd-rs", "split", "f"]).is_err());
        assert!(AdminCli::try_parse_from(["flagd-rs", "restore", "x"]).is_err());
        assert!(AdminCli::try_parse_from(["flagd-rs", "history"]).is_ok());
    }

    #[test]
    fn text_summaries() {
        let r = json!({"revision": 3, "kind": "set", "flag": "f", "actor": "ci", "reason": "ramp",
            "changes": [{"flag": "f", "before": null, "after": {"weights": {"a": 75, "b": 25}}}]});
        assert_eq!(
            revision_line(&r),
            "revision 3 set f; f: weights a=75 b=25 (by ci: ramp)"
        );
        let flags = json!({"revision": 3, "flags": [{"key": "f", "override": {"state": "DISABLED"}}, {"key": "g"}]});
        assert_eq!(overrides_text(&flags), "f: state DISABLED\n");
        assert_eq!(only_overrides(&flags)["flags"].as_array().unwrap().len(), 1);
    }
}
