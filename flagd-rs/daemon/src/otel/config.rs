//! OpenTelemetry options: flagd's command-line flags plus the standard `OTEL_*` environment
//! variables, resolved once at start-up into an [`OtelConfig`].
//!
//! Precedence, most specific first: a signal's own variable (`OTEL_EXPORTER_OTLP_TRACES_*`,
//! `OTEL_EXPORTER_OTLP_METRICS_*`), then the command line (`--otel-collector-uri`, ...), then the
//! signals' common variable (`OTEL_EXPORTER_OTLP_*`), then the default. The environment is read
//! through a lookup function so that the rules are tested without touching the process
//! environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// The service name reported when neither `--otel-service-name`, `OTEL_SERVICE_NAME` nor
/// `service.name` in `OTEL_RESOURCE_ATTRIBUTES` names one: flagd's, so dashboards built for flagd
/// find the daemon.
pub const DEFAULT_SERVICE_NAME: &str = "flagd";

/// OTLP's default export timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// OpenTelemetry's default interval between two metric exports.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(60);

/// The batch span processor's defaults (OpenTelemetry's).
const DEFAULT_QUEUE: usize = 2048;
const DEFAULT_BATCH: usize = 512;
const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);

/// Where metrics go besides `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum MetricsExporter {
    /// Only the Prometheus endpoint `/metrics` on the management port (flagd's default).
    #[default]
    Prometheus,
    /// Also push every metric over OTLP to the collector, periodically.
    Otel,
}

/// The OpenTelemetry options of `flagd-rs start` (flagd's names and short flags, plus the
/// service identity and sampling, which flagd takes only from the environment).
#[derive(Debug, Clone, Default, Args)]
pub struct OtelArgs {
    /// Where metrics are exported: `prometheus` (the /metrics endpoint) or `otel` (also pushed
    /// over OTLP to --otel-collector-uri).
    #[arg(short = 't', long, env = "FLAGD_METRICS_EXPORTER", value_parser = parse_exporter, default_value = "prometheus")]
    pub metrics_exporter: MetricsExporter,
    /// OTLP/gRPC collector for traces (and metrics with `--metrics-exporter otel`), e.g.
    /// `localhost:4317` or `https://collector:4317`. Unset: no tracing.
    #[arg(short = 'o', long, env = "FLAGD_OTEL_COLLECTOR_URI")]
    pub otel_collector_uri: Option<String>,
    /// Client certificate (PEM) presented to the collector; needs --otel-key-path.
    #[arg(short = 'D', long, env = "FLAGD_OTEL_CERT_PATH")]
    pub otel_cert_path: Option<PathBuf>,
    /// Private key (PEM) of --otel-cert-path.
    #[arg(short = 'K', long, env = "FLAGD_OTEL_KEY_PATH")]
    pub otel_key_path: Option<PathBuf>,
    /// CA certificate (PEM) the collector's certificate is checked against; implies TLS.
    #[arg(short = 'A', long, env = "FLAGD_OTEL_CA_PATH")]
    pub otel_ca_path: Option<PathBuf>,
    /// The `service.name` resource attribute (default: `OTEL_SERVICE_NAME`, else `flagd`).
    #[arg(long, env = "FLAGD_OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,
    /// The `service.version` resource attribute (default: this build's version).
    #[arg(long, env = "FLAGD_OTEL_SERVICE_VERSION")]
    pub otel_service_version: Option<String>,
    /// Fraction of new traces sampled, 0 to 1; a request that carries a `traceparent` follows
    /// its caller's decision (default: `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, else 1).
    #[arg(long, env = "FLAGD_OTEL_SAMPLE_RATIO")]
    pub otel_sample_ratio: Option<f64>,
    /// Interval between two OTLP metric exports (default: `OTEL_METRIC_EXPORT_INTERVAL`, else
    /// 60s).
    #[arg(long, env = "FLAGD_OTEL_METRICS_INTERVAL", value_parser = humantime::parse_duration)]
    pub otel_metrics_interval: Option<Duration>,
}

/// `--metrics-exporter`: empty is flagd's default (Prometheus).
fn parse_exporter(s: &str) -> Result<MetricsExporter, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "prometheus" => Ok(MetricsExporter::Prometheus),
        "otel" | "otlp" => Ok(MetricsExporter::Otel),
        other => Err(format!(
            "unknown metrics exporter `{other}` (expected `prometheus` or `otel`)"
        )),
    }
}

/// What the daemon exports over OTLP; the default exports nothing and builds nothing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtelConfig {
    /// Where spans go; `None`: no tracing at all.
    pub traces: Option<Target>,
    /// Where metrics are pushed; `None`: Prometheus only.
    pub metrics: Option<Target>,
    /// Resource attributes (`service.name`, `service.version` and `OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    /// Fraction of root traces sampled (parent-based: a caller's decision is followed).
    pub sample_ratio: f64,
    /// Whether a sampled-out caller's decision is ignored (`traceidratio` without `parentbased_`).
    pub ignore_parent: bool,
    /// Spans waiting for export beyond which new spans are dropped (and counted).
    pub queue_size: usize,
    /// Spans per export request.
    pub batch_size: usize,
    /// Longest time a span waits before its batch is exported.
    pub schedule_delay: Duration,
    /// Interval between metric exports.
    pub metrics_interval: Duration,
}

impl OtelConfig {
    /// Whether anything at all is exported.
    pub fn is_enabled(&self) -> bool {
        self.traces.is_some() || self.metrics.is_some()
    }
}

/// One signal's collector: endpoint, TLS, headers, timeout and compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// CA certificate to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// Client certificate and key.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// gRPC metadata sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
    /// Deadline of one export.
    pub timeout: Duration,
    /// Compress export requests with gzip.
    pub gzip: bool,
}

impl Target {
    /// Whether the connection uses TLS.
    pub fn is_tls(&self) -> bool {
        self.endpoint.starts_with("https://")
    }
}

/// The two signals, by the infix of their variables.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Traces,
    Metrics,
}

impl Signal {
    fn infix(self) -> &'static str {
        match self {
            Signal::Traces => "TRACES",
            Signal::Metrics => "METRICS",
        }
    }
}

impl OtelArgs {
    /// Resolves the options against the process environment.
    pub fn resolve(self) -> anyhow::Result<OtelConfig> {
        self.resolve_with(&|name| std::env::var(name).ok())
    }

    /// Resolves the options against the environment `env` (a variable's value, or `None`).
    pub fn resolve_with(self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<OtelConfig> {
        let env = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let sdk_disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if let Some(protocol) = env("OTEL_EXPORTER_OTLP_PROTOCOL")
            && protocol != "grpc"
        {
            bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: flagd-rs exports OTLP over gRPC only"
            );
        }
        let tls = self.tls(&env)?;
        let collector = self
            .otel_collector_uri
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());

        let traces_off = env("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none");
        let traces = if sdk_disabled || traces_off {
            None
        } else {
            target(Signal::Traces, collector, &tls, &env)?
        };
        let metrics = match self.metrics_exporter {
            MetricsExporter::Prometheus => None,
            MetricsExporter::Otel if sdk_disabled => None,
            MetricsExporter::Otel => Some(target(Signal::Metrics, collector, &tls, &env)?.context(
                "--metrics-exporter otel needs a collector: --otel-collector-uri or OTEL_EXPORTER_OTLP_ENDPOINT",
            )?),
        };

        let (sample_ratio, ignore_parent) = match self.otel_sample_ratio {
            Some(r) if (0.0..=1.0).contains(&r) => (r, false),
            Some(r) => bail!("--otel-sample-ratio must be between 0 and 1, got {r}"),
            None => sampler_from_env(&env)?,
        };
        let metrics_interval = match self.otel_metrics_interval {
            Some(d) if d.is_zero() => bail!("--otel-metrics-interval must be longer than 0"),
            Some(d) => d,
            None => {
                millis(&env, "OTEL_METRIC_EXPORT_INTERVAL")?.unwrap_or(DEFAULT_METRICS_INTERVAL)
            }
        };
        let queue_size = count(&env, "OTEL_BSP_MAX_QUEUE_SIZE")?.unwrap_or(DEFAULT_QUEUE);
        let batch_size = count(&env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE")?
            .unwrap_or(DEFAULT_BATCH)
            .min(queue_size);
        let schedule_delay =
            millis(&env, "OTEL_BSP_SCHEDULE_DELAY")?.unwrap_or(DEFAULT_SCHEDULE_DELAY);

        Ok(OtelConfig {
            resource: resource(
                self.otel_service_name.as_deref(),
                self.otel_service_version.as_deref(),
                &env,
            )?,
            traces,
            metrics,
            sample_ratio,
            ignore_parent,
            queue_size,
            batch_size,
            schedule_delay,
            metrics_interval,
        })
    }

    /// The collector's TLS files: the flags, else `OTEL_EXPORTER_OTLP_CERTIFICATE`,
    /// `_CLIENT_CERTIFICATE` and `_CLIENT_KEY`.
    fn tls(&self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Tls> {
        let path = |flag: &Option<PathBuf>, var: &str| {
            flag.clone()
                .filter(|p| !p.as_os_str().is_empty())
                .or_else(|| env(var).map(PathBuf::from))
        };
        let ca = path(&self.otel_ca_path, "OTEL_EXPORTER_OTLP_CERTIFICATE");
        let cert = path(
            &self.otel_cert_path,
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        );
        let key = path(&self.otel_key_path, "OTEL_EXPORTER_OTLP_CLIENT_KEY");
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => bail!("--otel-cert-path needs --otel-key-path"),
            (None, Some(_)) => bail!("--otel-key-path needs --otel-cert-path"),
        };
        Ok(Tls { ca, identity })
    }
}

/// TLS files shared by both signals.
#[derive(Debug)]
struct Tls {
    ca: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    fn is_configured(&self) -> bool {
        self.ca.is_some() || self.identity.is_some()
    }
}

/// A signal's target: its endpoint variable, else the collector flag, else the common endpoint
/// variable; `None` when none is set.
fn target(
    signal: Signal,
    collector: Option<&str>,
    tls: &Tls,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Target>> {
    let var = |suffix: &str| {
        let own = format!("OTEL_EXPORTER_OTLP_{}_{suffix}", signal.infix());
        env(&own).map(|v| (own, v)).or_else(|| {
            let common = format!("OTEL_EXPORTER_OTLP_{suffix}");
            env(&common).map(|v| (common, v))
        })
    };
    let own_endpoint = format!("OTEL_EXPORTER_OTLP_{}_ENDPOINT", signal.infix());
    let raw = env(&own_endpoint)
        .or_else(|| collector.map(str::to_owned))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let Some(raw) = raw else {
        return Ok(None);
    };
    let insecure = var("INSECURE").is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
    let endpoint = normalise_endpoint(&raw, tls.is_configured() && !insecure)?;
    let headers = match var("HEADERS") {
        Some((name, value)) => parse_headers(&value).with_context(|| format!("invalid {name}"))?,
        None => Vec::new(),
    };
    let timeout =
        match var("TIMEOUT") {
            Some((name, value)) => Duration::from_millis(value.parse().with_context(|| {
                format!("{name} must be a number of milliseconds, got `{value}`")
            })?),
            None => DEFAULT_TIMEOUT,
        };
    let gzip = match var("COMPRESSION") {
        None => false,
        Some((_, v)) if v == "none" => false,
        Some((_, v)) if v == "gzip" => true,
        Some((name, v)) => bail!("{name}={v} is not supported (expected `gzip` or `none`)"),
    };
    let plain = endpoint.starts_with("http://");
    if plain && tls.is_configured() {
        bail!("the collector endpoint {endpoint} is plaintext, but TLS files are given for it");
    }
    Ok(Some(Target {
        endpoint,
        ca: tls.ca.clone(),
        identity: tls.identity.clone(),
        headers,
        timeout,
        gzip,
    }))
}

/// `host:port` (flagd's form, a gRPC target) gets `http://`, or `https://` when TLS files are
/// configured; `grpc://` and `grpcs://` are read as `http://` and `https://`.
fn normalise_endpoint(raw: &str, tls: bool) -> anyhow::Result<String> {
    let raw = raw.trim();
    let (scheme, rest) = match raw.split_once("://") {
        Some(("http" | "grpc", rest)) => ("http", rest),
        Some(("https" | "grpcs", rest)) => ("https", rest),
        Some((other, _)) => bail!(
            "unsupported collector URI scheme `{other}` in `{raw}` (expected http, https, grpc or grpcs)"
        ),
        None if tls => ("https", raw),
        None => ("http", raw),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        bail!("the collector URI `{raw}` has no host");
    }
    let endpoint = format!("{scheme}://{rest}");
    endpoint
        .parse::<http::Uri>()
        .with_context(|| format!("invalid collector URI `{raw}`"))?;
    Ok(endpoint)
}

/// `key1=value1,key2=value2`, values percent-decoded (the W3C baggage form OTLP uses).
fn parse_headers(value: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("`{entry}` is not KEY=VALUE");
        };
        let key = percent_decode(k.trim()).to_ascii_lowercase();
        let value = percent_decode(v.trim());
        http::HeaderName::from_bytes(key.as_bytes())
            .with_context(|| format!("`{key}` is not a valid header name"))?;
        http::HeaderValue::from_str(&value)
            .with_context(|| format!("the value of `{key}` is not a valid header value"))?;
        out.push((key, value));
    }
    Ok(out)
}

/// The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` describe, as (ratio, whether
/// the parent's decision is ignored).
fn sampler_from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<(f64, bool)> {
    let ratio = || -> anyhow::Result<f64> {
        match env("OTEL_TRACES_SAMPLER_ARG") {
            None => Ok(1.0),
            Some(arg) => match arg.parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
                _ => bail!("OTEL_TRACES_SAMPLER_ARG must be a number between 0 and 1, got `{arg}`"),
            },
        }
    };
    Ok(match env("OTEL_TRACES_SAMPLER").as_deref() {
        None | Some("parentbased_always_on") => (1.0, false),
        Some("parentbased_always_off") => (0.0, false),
        Some("parentbased_traceidratio") => (ratio()?, false),
        Some("always_on") => (1.0, true),
        Some("always_off") => (0.0, true),
        Some("traceidratio") => (ratio()?, true),
        Some(other) => bail!(
            "OTEL_TRACES_SAMPLER={other} is not supported (expected always_on, always_off, \
             traceidratio or their parentbased_ forms)"
        ),
    })
}

/// `service.name`, `service.version` and the entries of `OTEL_RESOURCE_ATTRIBUTES`.
fn resource(
    name: Option<&str>,
    version: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut attributes = match env("OTEL_RESOURCE_ATTRIBUTES") {
        Some(list) => parse_headers_raw(&list).context("invalid OTEL_RESOURCE_ATTRIBUTES")?,
        None => Vec::new(),
    };
    let listed = |key: &str, attrs: &[(String, String)]| {
        attrs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let service_name = name
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .or_else(|| listed("service.name", &attributes))
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let service_version = version
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| listed("service.version", &attributes))
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
    attributes.retain(|(k, _)| k != "service.name" && k != "service.version");
    let mut out = vec![
        ("service.name".to_owned(), service_name),
        ("service.version".to_owned(), service_version),
    ];
    out.extend(attributes);
    Ok(out)
}

/// Like [`parse_headers`] but keeps keys as written (resource attribute keys are not headers).
fn parse_headers_raw(value: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((k, v)) = entry.split_once('=') else {
            bail!("`{entry}` is not KEY=VALUE");
        };
        let key = percent_decode(k.trim());
        if key.is_empty() {
            bail!("`{entry}` has an empty key");
        }
        out.push((key, percent_decode(v.trim())));
    }
    Ok(out)
}

fn millis(env: &dyn Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<Duration>> {
    env(name)
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .map(Duration::from_millis)
                .with_context(|| {
                    format!("{name} must be a positive number of milliseconds, got `{v}`")
                })
        })
        .transpose()
}

fn count(env: &dyn Fn(&str) -> Option<String>, name: &str) -> anyhow::Result<Option<usize>> {
    env(name)
        .map(|v| {
            v.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("{name} must be a positive number, got `{v}`"))
        })
        .transpose()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser as _;

    use super::*;

    /// Parses `flagd-rs start` options and resolves them against `vars`.
    fn resolve(args: &[&str], vars: &[(&str, &str)]) -> anyhow::Result<OtelConfig> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            otel: OtelArgs,
        }
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let argv = std::iter::once("flagd-rs").chain(args.iter().copied());
        // Clap reads FLAGD_* from the process environment; the tests set none.
        let cli = Cli::try_parse_from(argv)?;
        cli.otel.resolve_with(&|k| vars.get(k).cloned())
    }

    #[test]
    fn nothing_is_exported_by_default() {
        let config = resolve(&[], &[]).unwrap();
        assert!(!config.is_enabled());
        assert_eq!(config.sample_ratio, 1.0);
        assert_eq!(config.queue_size, 2048);
        assert_eq!(config.metrics_interval, Duration::from_secs(60));
        assert_eq!(config.resource[0], ("service.name".into(), "flagd".into()));
        assert_eq!(
            config.resource[1],
            ("service.version".into(), env!("CARGO_PKG_VERSION").into())
        );
    }

    #[test]
    fn collector_uri_turns_tracing_on() {
        let config = resolve(&["-o", "localhost:4317"], &[]).unwrap();
        let traces = config.traces.unwrap();
        assert_eq!(traces.endpoint, "http://localhost:4317");
        assert_eq!(traces.timeout, Duration::from_secs(10));
        assert!(!traces.is_tls() && !traces.gzip && traces.headers.is_empty());
        assert!(config.metrics.is_none());
        let config = resolve(&["--otel-collector-uri", "https://c:4317/"], &[]).unwrap();
        assert_eq!(config.traces.unwrap().endpoint, "https://c:4317");
        let config = resolve(&["-o", "grpcs://c:4317"], &[]).unwrap();
        assert!(config.traces.unwrap().is_tls());
        // TLS files make a bare host:port a TLS endpoint.
        let config = resolve(&["-o", "c:4317", "-A", "/ca.pem"], &[]).unwrap();
        let traces = config.traces.unwrap();
        assert_eq!(traces.endpoint, "https://c:4317");
        assert_eq!(traces.ca.as_deref(), Some(std::path::Path::new("/ca.pem")));
        // The standard variable alone turns tracing on too.
        let config = resolve(&[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:4317")]).unwrap();
        assert_eq!(config.traces.unwrap().endpoint, "http://e:4317");
    }

    #[test]
    fn signal_variables_beat_the_flag_which_beats_the_common_ones() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://common:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "b=two%20words, C=3"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "gzip"),
        ];
        let config = resolve(&["-o", "flag:4317", "-t", "otel"], &vars).unwrap();
        let traces = config.traces.unwrap();
        let metrics = config.metrics.unwrap();
        assert_eq!(traces.endpoint, "http://traces:4317");
        assert_eq!(metrics.endpoint, "http://flag:4317");
        assert_eq!(traces.headers, vec![("a".to_owned(), "1".to_owned())]);
        assert_eq!(
            metrics.headers,
            vec![
                ("b".to_owned(), "two words".to_owned()),
                ("c".to_owned(), "3".to_owned())
            ]
        );
        assert_eq!(traces.timeout, Duration::from_millis(500));
        assert_eq!(metrics.timeout, Duration::from_millis(2500));
        assert!(metrics.gzip && !traces.gzip);
        let config = resolve(&["-t", "otel"], &vars[..1]).unwrap();
        assert_eq!(config.metrics.unwrap().endpoint, "http://common:4317");
    }

    #[test]
    fn sampling_ratio_from_flag_or_environment() {
        let ratio = |args: &[&str], vars: &[(&str, &str)]| {
            let c = resolve(args, vars).unwrap();
            (c.sample_ratio, c.ignore_parent)
        };
        assert_eq!(ratio(&["--otel-sample-ratio", "0.01"], &[]), (0.01, false));
        let env = [
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ];
        assert_eq!(ratio(&[], &env), (0.25, false));
        // The flag wins over the environment.
        assert_eq!(ratio(&["--otel-sample-ratio", "0.5"], &env), (0.5, false));
        assert_eq!(
            ratio(&[], &[("OTEL_TRACES_SAMPLER", "traceidratio")]),
            (1.0, true)
        );
        assert_eq!(
            ratio(&[], &[("OTEL_TRACES_SAMPLER", "always_off")]),
            (0.0, true)
        );
        assert!(resolve(&["--otel-sample-ratio", "1.5"], &[]).is_err());
        assert!(resolve(&[], &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).is_err());
        let bad = [
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "lots"),
        ];
        assert!(resolve(&[], &bad).is_err());
    }

    #[test]
    fn service_identity_is_overridable() {
        let attrs = |args: &[&str], vars: &[(&str, &str)]| resolve(args, vars).unwrap().resource;
        let listed = [(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-list,deployment.environment=prod,team=a%2Cb",
        )];
        let r = attrs(&[], &listed);
        assert_eq!(r[0].1, "from-list");
        assert!(r.contains(&("deployment.environment".into(), "prod".into())));
        assert!(r.contains(&("team".into(), "a,b".into())));
        assert_eq!(r.iter().filter(|(k, _)| k == "service.name").count(), 1);
        let with_name = [listed[0], ("OTEL_SERVICE_NAME", "from-env")];
        assert_eq!(attrs(&[], &with_name)[0].1, "from-env");
        let r = attrs(
            &[
                "--otel-service-name",
                "edge-flags",
                "--otel-service-version",
                "9.9",
            ],
            &with_name,
        );
        assert_eq!(r[0].1, "edge-flags");
        assert_eq!(r[1], ("service.version".into(), "9.9".into()));
        assert!(resolve(&[], &[("OTEL_RESOURCE_ATTRIBUTES", "novalue")]).is_err());
    }

    #[test]
    fn metrics_exporter_values() {
        assert!(
            resolve(&["-t", "prometheus"], &[])
                .unwrap()
                .metrics
                .is_none()
        );
        assert!(resolve(&["-t", ""], &[]).unwrap().metrics.is_none());
        let err = resolve(&["-t", "otel"], &[]).unwrap_err();
        assert!(format!("{err:#}").contains("needs a collector"), "{err:#}");
        assert!(resolve(&["-t", "statsd"], &[]).is_err());
        let config = resolve(
            &[
                "-t",
                "otel",
                "-o",
                "c:4317",
                "--otel-metrics-interval",
                "2s",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(config.metrics_interval, Duration::from_secs(2));
        assert!(config.traces.is_some() && config.metrics.is_some());
    }

    #[test]
    fn disabling_variables_and_bad_values() {
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://e:4317")];
        let off = |extra: (&str, &str)| {
            let vars = [on[0], extra];
            resolve(&["-t", "otel"], &vars).unwrap()
        };
        assert!(!off(("OTEL_SDK_DISABLED", "true")).is_enabled());
        let c = off(("OTEL_TRACES_EXPORTER", "none"));
        assert!(c.traces.is_none() && c.metrics.is_some());
        let bad = |vars: &[(&str, &str)]| resolve(&["-o", "c:4317"], vars).is_err();
        assert!(bad(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]));
        assert!(bad(&[("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign")]));
        assert!(bad(&[("OTEL_EXPORTER_OTLP_HEADERS", "bad header=1")]));
        assert!(bad(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]));
        assert!(bad(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")]));
        assert!(bad(&[("OTEL_BSP_MAX_QUEUE_SIZE", "0")]));
        assert!(resolve(&["-o", "ftp://c"], &[]).is_err());
        assert!(resolve(&["-o", "http://"], &[]).is_err());
        assert!(resolve(&["-o", "http://c:4317", "-A", "/ca.pem"], &[]).is_err());
        assert!(resolve(&["-o", "c:4317", "-D", "/cert.pem"], &[]).is_err());
        // An insecure override keeps a bare host:port plaintext... and then refuses the TLS file.
        assert!(
            resolve(
                &["-o", "c:4317", "-A", "/ca.pem"],
                &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]
            )
            .is_err()
        );
        let c = resolve(
            &["-o", "c:4317"],
            &[
                ("OTEL_BSP_MAX_QUEUE_SIZE", "64"),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ],
        )
        .unwrap();
        assert_eq!((c.queue_size, c.batch_size), (64, 64));
        assert_eq!(c.schedule_delay, Duration::from_millis(100));
    }
}
