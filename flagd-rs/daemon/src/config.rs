//! Command-line interface and the validated daemon configuration built from it.
//!
//! Every option of `flagd-rs start` mirrors flagd's `flagd start` flag of the same name and can
//! also be set through the environment as `FLAGD_<NAME>` (upper case, `-` replaced by `_`).
//! List-valued options accept repeated flags and comma-separated values.

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use flagd_evaluator::{EvalBudget, HashGeneration, LoadOptions};
use serde_json::{Map, Value};

use crate::server::ofrep_sse::{SseSettings, public_origin};
use crate::sources::{self, SourceSpec};
use crate::state::{ContextConfig, Limits};

/// `flagd-rs`: a flagd-compatible feature-flag daemon.
#[derive(Debug, Parser)]
#[command(name = "flagd-rs", version, about, propagate_version = true)]
pub struct Cli {
    /// Logging options, accepted before or after the subcommand.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon.
    Start(Box<StartArgs>),
    /// Check flag definition files and print every problem found.
    Validate(ValidateArgs),
    /// Print the version.
    Version,
    /// Admin client commands (split, switch, enable, disable, clear, overrides, history,
    /// restore), talking to a running daemon's admin API.
    #[command(flatten)]
    Admin(crate::cli_admin::AdminCommand),
    /// Progressive rollouts (start, status, pause, resume, promote, abort), through a running
    /// daemon's admin API.
    #[command(subcommand)]
    Rollout(crate::authority::rollout::cli::RolloutCommand),
    /// The override journal in a state directory (check, recover, compact), while no daemon
    /// uses it.
    #[command(subcommand)]
    Journal(crate::authority::journal::cli::JournalCommand),
}

/// Log output options.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(short = 'z', long, global = true, env = "FLAGD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Console)]
    pub log_format: LogFormat,
    /// Log at debug level (RUST_LOG, when set, takes precedence).
    #[arg(short = 'x', long, global = true, env = "FLAGD_DEBUG")]
    pub debug: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Console,
    /// One JSON object per line.
    Json,
}

/// The `fractional` hash generation, as a command-line value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FractionalHash {
    /// MurmurHash3 over the deterministic CBOR encoding of the bucketing value.
    #[default]
    V3,
    /// MurmurHash3 over the UTF-8 bucketing string (flagd 0.15 and 0.16).
    V2,
}

impl From<FractionalHash> for HashGeneration {
    fn from(h: FractionalHash) -> Self {
        match h {
            FractionalHash::V3 => HashGeneration::V3,
            FractionalHash::V2 => HashGeneration::V2,
        }
    }
}

/// Options that decide how flag documents are loaded (shared by `start` and `validate`).
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Hash generation used by `fractional`.
    #[arg(long, env = "FLAGD_FRACTIONAL_HASH", value_enum, default_value_t = FractionalHash::V3)]
    pub fractional_hash: FractionalHash,
    /// Reject documents with any schema violation (flagd only warns).
    #[arg(long, env = "FLAGD_STRICT")]
    pub strict: bool,
}

impl LoadArgs {
    /// The evaluator's load options for these flags.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            hash: self.fractional_hash.into(),
            strict: self.strict,
            ..LoadOptions::default()
        }
    }
}

/// Options of `flagd-rs start` (flagd's names, short flags and defaults).
#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    /// Flag source URI (file:, http(s)://, grpc(s)://); repeatable or comma separated.
    #[arg(short = 'f', long = "uri", env = "FLAGD_URI", value_delimiter = ',')]
    pub uri: Vec<String>,
    /// JSON array of source configurations, appended after the --uri sources.
    #[arg(short = 's', long, env = "FLAGD_SOURCES")]
    pub sources: Option<String>,
    /// Port of the evaluation service.
    #[arg(short = 'p', long, env = "FLAGD_PORT", default_value_t = 8013)]
    pub port: u16,
    /// Port of the management service (health, readiness, metrics).
    #[arg(
        short = 'm',
        long,
        env = "FLAGD_MANAGEMENT_PORT",
        default_value_t = 8014
    )]
    pub management_port: u16,
    /// Port of the flag sync service.
    #[arg(short = 'g', long, env = "FLAGD_SYNC_PORT", default_value_t = 8015)]
    pub sync_port: u16,
    /// Port of the OFREP service.
    #[arg(short = 'r', long, env = "FLAGD_OFREP_PORT", default_value_t = 8016)]
    pub ofrep_port: u16,
    /// Allowed CORS origin (`*` for any); repeatable or comma separated.
    #[arg(short = 'C', long, env = "FLAGD_CORS_ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,
    /// TLS certificate (PEM) for the evaluation service; needs --server-key-path.
    #[arg(short = 'c', long, env = "FLAGD_SERVER_CERT_PATH")]
    pub server_cert_path: Option<PathBuf>,
    /// TLS private key (PEM) for the evaluation service; needs --server-cert-path.
    #[arg(short = 'k', long, env = "FLAGD_SERVER_KEY_PATH")]
    pub server_key_path: Option<PathBuf>,
    /// Serve the evaluation service on this unix socket instead of TCP.
    #[arg(short = 'd', long, env = "FLAGD_SOCKET_PATH")]
    pub socket_path: Option<PathBuf>,
    /// Serve the sync service on this unix socket instead of TCP.
    #[arg(short = 'e', long, env = "FLAGD_SYNC_SOCKET_PATH")]
    pub sync_socket_path: Option<PathBuf>,
    /// Static evaluation context entry `key=value` (always a string); repeatable.
    #[arg(short = 'X', long, env = "FLAGD_CONTEXT_VALUE", value_delimiter = ',', value_parser = parse_pair)]
    pub context_value: Vec<(String, String)>,
    /// Copy a request header into the context: `Header-Name=contextKey`; repeatable.
    #[arg(short = 'H', long, alias = "header-to-context-key", env = "FLAGD_CONTEXT_FROM_HEADER", value_delimiter = ',', value_parser = parse_pair)]
    pub context_from_header: Vec<(String, String)>,
    /// Server-side deadline of event and sync streams (`30s`, `5m`; 0 = none).
    #[arg(long, env = "FLAGD_STREAM_DEADLINE", default_value = "0", value_parser = parse_duration)]
    pub stream_deadline: Duration,
    /// Largest request body in bytes (0 = no limit).
    #[arg(
        short = 'B',
        long,
        env = "FLAGD_MAX_REQUEST_BODY",
        default_value_t = 1_000_000
    )]
    pub max_request_body: u64,
    /// Largest total size of request headers in bytes (0 = 1 MiB).
    #[arg(
        short = 'R',
        long,
        env = "FLAGD_MAX_REQUEST_HEADER",
        default_value_t = 1_000_000
    )]
    pub max_request_header: u64,
    /// Most operations one flag evaluation may perform (rule nodes, array elements, 64-byte
    /// blocks of long text) before it fails with GENERAL (0 = no limit).
    #[arg(long, env = "FLAGD_MAX_EVALUATION_OPS", default_value_t = EvalBudget::default().max_operations)]
    pub max_evaluation_ops: u64,
    /// Most bytes of values one flag evaluation may build or copy (estimated) before it fails
    /// with GENERAL (0 = no limit).
    #[arg(long, env = "FLAGD_MAX_EVALUATION_BYTES", default_value_t = EvalBudget::default().max_bytes)]
    pub max_evaluation_bytes: u64,
    /// Make the sync service's GetMetadata answer UNIMPLEMENTED.
    #[arg(long, env = "FLAGD_DISABLE_SYNC_METADATA")]
    pub disable_sync_metadata: bool,
    /// Shortest interval between a sync client's keepalive pings (`30s`, `1m`; 0 = any); a
    /// client that keeps pinging more often is disconnected with GOAWAY ENHANCE_YOUR_CALM.
    #[arg(long, env = "FLAGD_KEEP_ALIVE_MIN_TIME", default_value = "30s", value_parser = parse_duration)]
    pub keep_alive_min_time: Duration,
    /// Allow a sync client's keepalive pings while it has no open stream (`true`/`false`).
    #[arg(
        long,
        env = "FLAGD_KEEP_ALIVE_PERMIT_WITHOUT_STREAM",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub keep_alive_permit_without_stream: bool,
    /// Port of the admin API (overrides, revisions, rollouts).
    #[arg(long, env = "FLAGD_ADMIN_PORT", default_value_t = 8017)]
    pub admin_port: u16,
    /// Address the admin API listens on; without --admin-token-file it must be a loopback
    /// address.
    #[arg(long, env = "FLAGD_ADMIN_ADDRESS", default_value = "127.0.0.1")]
    pub admin_address: IpAddr,
    /// File holding the bearer token every admin API request must carry.
    #[arg(long, env = "FLAGD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// TLS certificate (PEM) for the admin API; needs --admin-key-path. Without it the admin API
    /// uses --server-cert-path's certificate when one is given.
    #[arg(long, env = "FLAGD_ADMIN_CERT_PATH")]
    pub admin_cert_path: Option<PathBuf>,
    /// TLS private key (PEM) for the admin API; needs --admin-cert-path.
    #[arg(long, env = "FLAGD_ADMIN_KEY_PATH")]
    pub admin_key_path: Option<PathBuf>,
    /// Serve the admin API in plaintext on a non-loopback address (with a token).
    #[arg(long, env = "FLAGD_ADMIN_INSECURE")]
    pub admin_insecure: bool,
    /// A host name (or `name:port`) the admin API answers besides loopback names, e.g. the name
    /// a pipeline reaches it by; repeatable or comma separated.
    #[arg(long, env = "FLAGD_ADMIN_ALLOWED_HOST", value_delimiter = ',')]
    pub admin_allowed_host: Vec<String>,
    /// A web origin (`https://ops.example`) allowed to call the admin API from a browser;
    /// repeatable or comma separated. Other origins are refused.
    #[arg(long, env = "FLAGD_ADMIN_ALLOWED_ORIGIN", value_delimiter = ',')]
    pub admin_allowed_origin: Vec<String>,
    /// The operators' dashboard on the admin port (`/ui/`): `readonly` shows flags, rollouts,
    /// history and health; `readwrite` also offers the forms that change them (with the admin
    /// token when one is set); `off` does not serve it.
    #[arg(long, env = "FLAGD_UI", value_enum, default_value_t = crate::ui::UiMode::Readonly)]
    pub ui: crate::ui::UiMode,
    /// Directory of the override journal. Default: `$STATE_DIRECTORY` when systemd sets it,
    /// else /var/lib/flagd-rs. A relative path is taken from the working directory at start.
    #[arg(long, env = "FLAGD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Compact the override journal once the revisions after its last snapshot take this many
    /// bytes (0: only `flagd-rs journal compact` compacts it).
    #[arg(long, env = "FLAGD_JOURNAL_COMPACT_BYTES", default_value_t = crate::authority::journal::DEFAULT_COMPACT_BYTES)]
    pub journal_compact_bytes: u64,
    /// Serve OFREP event streams (`/ofrep/v1/sse`) and list them in bulk answers'
    /// `eventStreams` (`--ofrep-sse=false` turns them off).
    #[arg(long, env = "FLAGD_OFREP_SSE", value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub ofrep_sse: bool,
    /// The `inactivityDelaySec` bulk answers advertise with the event stream: seconds a hidden
    /// page or backgrounded app keeps its stream open.
    #[arg(long, env = "FLAGD_OFREP_SSE_INACTIVITY_DELAY", value_name = "SECONDS", default_value_t = crate::server::ofrep_sse::DEFAULT_INACTIVITY_DELAY_SEC, value_parser = clap::value_parser!(u32).range(1..))]
    pub ofrep_sse_inactivity_delay: u32,
    /// The origin (`https://flags.example.com`) bulk answers advertise for the event stream;
    /// without it, clients connect to the origin they reach OFREP at.
    #[arg(long, env = "FLAGD_OFREP_SSE_PUBLIC_URL", value_name = "URL")]
    pub ofrep_sse_public_url: Option<String>,
    /// Interval of keep-alive comments on idle event streams (0 = none).
    #[arg(long, env = "FLAGD_OFREP_SSE_KEEP_ALIVE", default_value = "30s", value_parser = parse_duration)]
    pub ofrep_sse_keep_alive: Duration,
    /// How flag documents are loaded.
    #[command(flatten)]
    pub load: LoadArgs,
    /// OpenTelemetry traces and metrics.
    #[command(flatten)]
    pub otel: crate::otel::OtelArgs,
    /// Fleet mode: the shared store.
    #[command(flatten)]
    pub fleet: crate::fleet::config::StoreArgs,
}

/// Options of `flagd-rs validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Flag definition files (`.json`, `.yaml` or `.yml`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// How the files are loaded.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Parses `key=value` (split at the first `=`; the key must not be empty).
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

/// One `--context-from-header Header-Name=contextKey` mapping: the header's name in the lower
/// case every request's header map uses (so `X-User-ID` matches a request's `x-user-id`, as
/// flagd matches header names without regard to case), and the context key. A name that is
/// not a valid HTTP header name, or an empty context key, is refused with the mapping quoted.
fn header_mapping(header: &str, key: String) -> anyhow::Result<(http::HeaderName, String)> {
    let name =
        http::HeaderName::from_bytes(header.to_ascii_lowercase().as_bytes()).map_err(|_| {
            anyhow::anyhow!(
                "invalid --context-from-header `{header}={key}`: `{header}` is not a valid \
                 HTTP header name"
            )
        })?;
    if key.is_empty() {
        bail!("invalid --context-from-header `{header}=`: the context key is empty");
    }
    Ok((name, key))
}

/// Parses a duration such as `30s`, `1m30s` or `250ms`; `0` means none.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration `{s}`: {e}"))
}

/// Paths of the TLS certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The validated configuration [`crate::run`] works from.
///
/// Build it from command-line arguments ([`Config::from_args`]) or in code from
/// [`Config::default`] plus field updates.
#[derive(Debug, Clone)]
pub struct Config {
    /// Flag sources in priority order (a later source wins). Empty: serve the bundled flags.
    pub sources: Vec<SourceSpec>,
    /// Address the TCP listeners bind to (all interfaces by default, as flagd).
    pub host: IpAddr,
    /// Evaluation service port (0 picks a free port).
    pub port: u16,
    /// Management service port (0 picks a free port).
    pub management_port: u16,
    /// Sync service port. The command line defaults to 8015; [`Config::default`] uses 0 (a free
    /// port), as for the admin port.
    pub sync_port: u16,
    /// OFREP service port. The command line defaults to 8016; [`Config::default`] uses 0 (a free
    /// port), as for the admin port.
    pub ofrep_port: u16,
    /// Unix socket for the evaluation service, replacing TCP.
    pub socket_path: Option<PathBuf>,
    /// Unix socket for the sync service, replacing TCP.
    pub sync_socket_path: Option<PathBuf>,
    /// TLS for the evaluation service.
    pub tls: Option<TlsPaths>,
    /// Allowed CORS origins (`*` or empty: any).
    pub cors_origins: Vec<String>,
    /// Static and header-mapped evaluation context.
    pub context: ContextConfig,
    /// Request and stream limits.
    pub limits: Limits,
    /// How flag documents are loaded.
    pub load: LoadOptions,
    /// Make the sync service's GetMetadata answer UNIMPLEMENTED.
    pub disable_sync_metadata: bool,
    /// What the sync port enforces on client keepalive pings.
    pub sync_keepalive: crate::server::keepalive::PingPolicy,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace: Duration,
    /// Admin API port. The command line defaults to 8017; [`Config::default`] uses 0 (a free
    /// port), so configurations built in code never collide on it.
    pub admin_port: u16,
    /// Address the admin API binds to (loopback unless a token is configured).
    pub admin_address: IpAddr,
    /// File holding the admin bearer token; `None`: no authentication, loopback only.
    pub admin_token_file: Option<PathBuf>,
    /// TLS for the admin API; `None`: the evaluation service's TLS, if any.
    pub admin_tls: Option<TlsPaths>,
    /// Allow a plaintext admin API on a non-loopback address.
    pub admin_insecure: bool,
    /// Hosts and origins the admin API accepts besides loopback and its own origin.
    pub admin_allowed_hosts: Vec<String>,
    /// Web origins allowed to call the admin API.
    pub admin_allowed_origins: Vec<String>,
    /// The dashboard's mode (`--ui`).
    pub ui: crate::ui::UiMode,
    /// Directory of the override journal (absolute).
    pub state_dir: PathBuf,
    /// Journal size after its snapshot at which it is compacted (0: never by itself).
    pub journal_compact_bytes: u64,
    /// What is exported over OTLP (nothing by default).
    pub otel: crate::otel::OtelConfig,
    /// OFREP event streams (`--ofrep-sse*`).
    pub ofrep_sse: SseSettings,
    /// Fleet mode (`--store`); `None`: the journal in `state_dir`, this process only.
    pub store: Option<crate::fleet::config::StoreSettings>,
    /// Add `flagd-rs-revision` to evaluations' flag metadata (`--revision-metadata`).
    pub revision_metadata: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 8013,
            management_port: 8014,
            sync_port: 0,
            ofrep_port: 0,
            socket_path: None,
            sync_socket_path: None,
            tls: None,
            cors_origins: Vec::new(),
            context: ContextConfig::default(),
            limits: Limits::default(),
            load: LoadOptions::default(),
            disable_sync_metadata: false,
            sync_keepalive: crate::server::keepalive::PingPolicy::default(),
            shutdown_grace: Duration::from_secs(10),
            admin_port: 0,
            admin_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            admin_token_file: None,
            admin_tls: None,
            admin_insecure: false,
            admin_allowed_hosts: Vec::new(),
            admin_allowed_origins: Vec::new(),
            ui: crate::ui::UiMode::Readonly,
            state_dir: default_state_dir(),
            journal_compact_bytes: crate::authority::journal::DEFAULT_COMPACT_BYTES,
            otel: crate::otel::OtelConfig::default(),
            ofrep_sse: SseSettings::default(),
            store: None,
            revision_metadata: false,
        }
    }
}

impl Config {
    /// Parses `flagd-rs` arguments (without the program name), e.g. `["start", "-f", path]`.
    /// `FLAGD_*` environment variables apply as they do on the command line.
    pub fn from_args<I, T>(args: I) -> anyhow::Result<Config>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let argv =
            std::iter::once(OsString::from("flagd-rs")).chain(args.into_iter().map(Into::into));
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Start(args) => Config::try_from(*args),
            _ => bail!("expected the `start` subcommand"),
        }
    }
}

/// An empty string from the environment (`FLAGD_SOCKET_PATH=`) means "not set".
fn non_empty(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| !p.as_os_str().is_empty())
}

impl TryFrom<StartArgs> for Config {
    type Error = anyhow::Error;

    fn try_from(args: StartArgs) -> anyhow::Result<Config> {
        // flagd's order: every --uri entry, then the --sources entries.
        let mut specs = Vec::new();
        for uri in args.uri.iter().map(|u| u.trim()).filter(|u| !u.is_empty()) {
            let spec = SourceSpec::from_uri(uri)
                .map_err(|e| anyhow::anyhow!("invalid source `{uri}`: {e}"))?;
            specs.push(spec);
        }
        if let Some(json) = args
            .sources
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let parsed = sources::parse_sources_json(json)
                .map_err(|e| anyhow::anyhow!("invalid --sources: {e}"))?;
            specs.extend(parsed);
        }

        let tls = tls_pair(
            non_empty(args.server_cert_path),
            non_empty(args.server_key_path),
            "--server-cert-path",
            "--server-key-path",
        )?;
        let admin_tls = tls_pair(
            non_empty(args.admin_cert_path),
            non_empty(args.admin_key_path),
            "--admin-cert-path",
            "--admin-key-path",
        )?;
        let state_dir = match non_empty(args.state_dir) {
            Some(dir) if dir.is_relative() => std::env::current_dir()
                .context("resolving the relative --state-dir")?
                .join(dir),
            Some(dir) => dir,
            None => default_state_dir(),
        };

        let mut static_values = Map::new();
        for (k, v) in args.context_value {
            static_values.insert(k, Value::String(v));
        }
        let from_headers = args
            .context_from_header
            .into_iter()
            .map(|(header, key)| header_mapping(&header, key))
            .collect::<anyhow::Result<Vec<_>>>()?;

        let max_header_bytes = match args.max_request_header {
            0 => 1 << 20,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let limits = Limits {
            max_body_bytes: usize::try_from(args.max_request_body).unwrap_or(usize::MAX),
            max_header_bytes,
            stream_deadline: Some(args.stream_deadline).filter(|d| !d.is_zero()),
            ..Limits::default()
        };
        let no_limit_if_zero = |n: u64| if n == 0 { u64::MAX } else { n };
        let load = LoadOptions {
            budget: EvalBudget {
                max_operations: no_limit_if_zero(args.max_evaluation_ops),
                max_bytes: no_limit_if_zero(args.max_evaluation_bytes),
            },
            ..args.load.load_options()
        };

        let public_url = match args.ofrep_sse_public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => Some(
                public_origin(url)
                    .map_err(|e| anyhow::anyhow!("invalid --ofrep-sse-public-url: {e}"))?,
            ),
        };
        let ofrep_sse = SseSettings {
            enabled: args.ofrep_sse,
            inactivity_delay_sec: args.ofrep_sse_inactivity_delay,
            public_url,
            keep_alive: args.ofrep_sse_keep_alive,
        };

        Ok(Config {
            sources: specs,
            port: args.port,
            management_port: args.management_port,
            sync_port: args.sync_port,
            ofrep_port: args.ofrep_port,
            socket_path: non_empty(args.socket_path),
            sync_socket_path: non_empty(args.sync_socket_path),
            tls,
            cors_origins: trimmed(args.cors_origin),
            context: ContextConfig {
                static_values,
                from_headers,
            },
            limits,
            load,
            disable_sync_metadata: args.disable_sync_metadata,
            sync_keepalive: crate::server::keepalive::PingPolicy {
                min_time: args.keep_alive_min_time,
                permit_without_stream: args.keep_alive_permit_without_stream,
            },
            admin_port: args.admin_port,
            admin_address: args.admin_address,
            admin_token_file: non_empty(args.admin_token_file),
            admin_tls,
            admin_insecure: args.admin_insecure,
            admin_allowed_hosts: trimmed(args.admin_allowed_host),
            admin_allowed_origins: trimmed(args.admin_allowed_origin),
            ui: args.ui,
            state_dir,
            journal_compact_bytes: args.journal_compact_bytes,
            otel: args.otel.resolve()?,
            ofrep_sse,
            revision_metadata: args.fleet.revision_metadata,
            store: args.fleet.resolve()?,
            ..Config::default()
        })
    }
}

/// A certificate and key given together, or neither.
fn tls_pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    cert_flag: &str,
    key_flag: &str,
) -> anyhow::Result<Option<TlsPaths>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsPaths { cert, key })),
        (None, None) => Ok(None),
        (Some(_), None) => bail!("{cert_flag} needs {key_flag}"),
        (None, Some(_)) => bail!("{key_flag} needs {cert_flag}"),
    }
}

fn trimmed(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Where the journal lives when `--state-dir` is not given: the directory systemd made for the
/// unit (`StateDirectory=`, passed as `$STATE_DIRECTORY`), else `/var/lib/flagd-rs`. Never a
/// path relative to the working directory.
pub fn default_state_dir() -> PathBuf {
    state_dir_from(std::env::var_os("STATE_DIRECTORY").as_deref())
}

/// [`default_state_dir`] for a given `$STATE_DIRECTORY` value: its first entry when it lists
/// several (colon separated) and that entry is absolute, else `/var/lib/flagd-rs`.
pub fn state_dir_from(systemd: Option<&std::ffi::OsStr>) -> PathBuf {
    systemd
        .and_then(|v| {
            let text = v.to_string_lossy();
            let path = PathBuf::from(text.split(':').next().unwrap_or("").trim());
            path.is_absolute().then_some(path)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// The state directory when neither `--state-dir` nor `$STATE_DIRECTORY` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/flagd-rs";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_directory_defaults_are_absolute() {
        use std::ffi::OsStr;
        use std::path::Path;
        assert_eq!(state_dir_from(None), Path::new("/var/lib/flagd-rs"));
        assert_eq!(
            state_dir_from(Some(OsStr::new("/var/lib/flagd-rs"))),
            Path::new("/var/lib/flagd-rs")
        );
        assert_eq!(
            state_dir_from(Some(OsStr::new("/var/lib/a:/var/lib/b"))),
            Path::new("/var/lib/a")
        );
        assert_eq!(
            state_dir_from(Some(OsStr::new("relative"))),
            Path::new("/var/lib/flagd-rs")
        );
        assert_eq!(
            state_dir_from(Some(OsStr::new(""))),
            Path::new("/var/lib/flagd-rs")
        );
        // An explicit relative --state-dir is taken from the working directory, once, at start.
        let c = Config::from_args(["start", "--state-dir", "st"]).unwrap();
        assert!(c.state_dir.is_absolute());
        assert!(c.state_dir.ends_with("st"));
    }

    fn start(args: &[&str]) -> StartArgs {
        let cli =
            Cli::try_parse_from(std::iter::once("flagd-rs").chain(args.iter().copied())).unwrap();
        match cli.command {
            Command::Start(a) => *a,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_match_flagd() {
        let a = start(&["start"]);
        assert_eq!(
            (a.port, a.management_port, a.sync_port, a.ofrep_port),
            (8013, 8014, 8015, 8016)
        );
        assert_eq!(a.max_request_body, 1_000_000);
        assert_eq!(a.max_request_header, 1_000_000);
        assert_eq!(a.stream_deadline, Duration::ZERO);
        assert_eq!(a.keep_alive_min_time, Duration::from_secs(30));
        assert!(a.keep_alive_permit_without_stream);
        assert_eq!(a.load.fractional_hash, FractionalHash::V3);
        assert!(!a.load.strict);
        let c = Config::try_from(a).unwrap();
        assert_eq!(c.load.budget, EvalBudget::default());
    }

    #[test]
    fn keepalive_flags() {
        let c = Config::try_from(start(&[
            "start",
            "--keep-alive-min-time",
            "5s",
            "--keep-alive-permit-without-stream=false",
        ]))
        .unwrap();
        assert_eq!(c.sync_keepalive.min_time, Duration::from_secs(5));
        assert!(!c.sync_keepalive.permit_without_stream);
        let a = start(&["start", "--keep-alive-permit-without-stream"]);
        assert!(a.keep_alive_permit_without_stream);
        let c = Config::try_from(start(&["start"])).unwrap();
        assert_eq!(
            c.sync_keepalive,
            crate::server::keepalive::PingPolicy::default()
        );
    }

    #[test]
    fn short_flags_lists_and_pairs() {
        let a = start(&[
            "start",
            "-f",
            "a.json,b.json",
            "--uri",
            "c.json",
            "-p",
            "1",
            "-m",
            "2",
            "-g",
            "3",
            "-r",
            "4",
            "-C",
            "x,y",
            "-X",
            "env=prod",
            "-X",
            "a=b=c",
            "-H",
            "X-User=user",
            "--header-to-context-key",
            "X-Org=org",
            "--stream-deadline",
            "1m30s",
            "-B",
            "10",
            "-R",
            "20",
            "--fractional-hash",
            "v2",
            "--strict",
        ]);
        assert_eq!(a.uri, ["a.json", "b.json", "c.json"]);
        assert_eq!(
            (a.port, a.management_port, a.sync_port, a.ofrep_port),
            (1, 2, 3, 4)
        );
        assert_eq!(a.cors_origin, ["x", "y"]);
        assert_eq!(
            a.context_value,
            [("env".into(), "prod".into()), ("a".into(), "b=c".into())]
        );
        assert_eq!(
            a.context_from_header,
            [
                ("X-User".into(), "user".into()),
                ("X-Org".into(), "org".into())
            ]
        );
        assert_eq!(a.stream_deadline, Duration::from_secs(90));
        assert_eq!((a.max_request_body, a.max_request_header), (10, 20));
        assert_eq!(a.load.load_options().hash, HashGeneration::V2);
        assert!(a.load.strict);
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            &["start", "-X", "novalue"][..],
            &["start", "--stream-deadline", "soon"],
            &["start", "--fractional-hash", "v1"],
            &["start", "-p", "70000"],
            &["start", "--ui", "admin"],
        ] {
            assert!(
                Cli::try_parse_from(std::iter::once("flagd-rs").chain(bad.iter().copied()))
                    .is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn header_mappings_ignore_case_and_refuse_what_cannot_match() {
        let c = Config::try_from(start(&[
            "start",
            "-H",
            "X-User-ID=userId",
            "-H",
            "x-tier=tier",
        ]))
        .unwrap();
        let names: Vec<_> = c
            .context
            .from_headers
            .iter()
            .map(|(n, k)| (n.as_str(), k.as_str()))
            .collect();
        assert_eq!(names, [("x-user-id", "userId"), ("x-tier", "tier")]);

        let err = |args: &[&str]| Config::try_from(start(args)).unwrap_err().to_string();
        assert_eq!(
            err(&["start", "-H", "X User=user"]),
            "invalid --context-from-header `X User=user`: `X User` is not a valid HTTP header name"
        );
        assert_eq!(
            err(&["start", "-H", "X-Ünicode=user"]),
            "invalid --context-from-header `X-Ünicode=user`: `X-Ünicode` is not a valid HTTP \
             header name"
        );
        assert_eq!(
            err(&["start", "-H", "X-User="]),
            "invalid --context-from-header `X-User=`: the context key is empty"
        );
    }

    #[test]
    fn source_settings_are_checked_at_start() {
        let sources = |json: &str| {
            Config::try_from(start(&["start", "--sources", json]))
                .map(|c| c.sources.len())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            sources(
                r#"[{"uri":"grpc://h:1","provider":"grpc","selector":"flagSetId=a",
                    "headers":{"X-Team":"core","Host":"flags.internal:443"}},
                   {"uri":"http://h/f.json","provider":"http","intervalSeed":"replica-1",
                    "headers":{"X-Team":"core"}}]"#
            ),
            Ok(2)
        );
        assert_eq!(
            sources(r#"[{"uri":"grpc://h:1","provider":"grpc","selector":"team=a"}]"#),
            Err(
                "invalid --sources: invalid source \"h:1\": invalid selector key \"team\", \
                 valid keys: \"flagSetId\", \"source\""
                    .into()
            )
        );
        assert_eq!(
            sources(r#"[{"uri":"http://h/f.json","provider":"http","headers":{"X Y":"1"}}]"#),
            Err(
                "invalid --sources: invalid source \"http://h/f.json\": invalid header name \
                 `X Y` in the source's headers"
                    .into()
            )
        );
        assert!(
            sources(r#"[{"uri":"grpc://h:1","provider":"grpc","headers":{"Host":"a b"}}]"#)
                .unwrap_err()
                .contains("invalid Host header `a b`")
        );
    }

    #[test]
    fn the_dashboard_is_read_only_unless_asked() {
        use crate::ui::UiMode;
        assert_eq!(
            Config::try_from(start(&["start"])).unwrap().ui,
            UiMode::Readonly
        );
        assert_eq!(Config::default().ui, UiMode::Readonly);
        for (arg, mode) in [
            ("readwrite", UiMode::Readwrite),
            ("readonly", UiMode::Readonly),
            ("off", UiMode::Off),
        ] {
            let c = Config::try_from(start(&["start", "--ui", arg])).unwrap();
            assert_eq!(c.ui, mode, "{arg}");
        }
    }

    #[test]
    fn config_from_start_args() {
        let c = Config::try_from(start(&[
            "start",
            "-X",
            "env=prod",
            "-H",
            "X-User=user",
            "-B",
            "0",
            "-R",
            "0",
            "--stream-deadline",
            "5s",
            "--max-evaluation-ops",
            "5000",
            "--max-evaluation-bytes",
            "0",
        ]))
        .unwrap();
        assert_eq!(
            c.load.budget,
            EvalBudget {
                max_operations: 5000,
                max_bytes: u64::MAX
            }
        );
        assert!(c.sources.is_empty());
        assert_eq!(
            c.context.static_values.get("env"),
            Some(&Value::String("prod".into()))
        );
        assert_eq!(c.context.from_headers[0].0.as_str(), "x-user");
        assert_eq!(c.limits.max_body_bytes, 0);
        assert_eq!(c.limits.max_header_bytes, 1 << 20);
        assert_eq!(c.limits.stream_deadline, Some(Duration::from_secs(5)));
        assert!(Config::try_from(start(&["start", "-c", "cert.pem"])).is_err());
        assert!(Config::try_from(start(&["start", "-H", "bad header=x"])).is_err());
    }
}
