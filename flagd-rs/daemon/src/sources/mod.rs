//! Flag sources: where flag documents come from, and the tasks that turn them into
//! [`SourceUpdate`]s for the store.
//!
//! A source never touches the store. It reads (or is given) the bytes of one document and sends
//! them, with their format, over an `mpsc` channel; the store task parses, validates, merges and
//! publishes. The index a source is spawned with is its position in the configured list, which is
//! also its priority: a later source wins for the same flag set and key.
//!
//! Sources are configured the way flagd configures them: `--uri` values whose prefix picks the
//! provider ([`SourceSpec::from_uri`]) followed by the objects of the `--sources` JSON array
//! ([`parse_sources_json`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use tokio::sync::{mpsc, watch};

use crate::store::SourceUpdate;

pub mod embedded;
pub mod file;
pub mod grpc;
pub mod http;
pub mod schedule;

pub use embedded::spawn_embedded;

/// The kind of a source, as named by the `provider` field of a `--sources` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A local file; flagd picks `fsnotify` or `fileinfo` for it. Here every file source both
    /// watches its directory and polls the file's metadata.
    File,
    /// A local file watched with filesystem notifications (same behaviour as [`Provider::File`]).
    Fsnotify,
    /// A local file polled by metadata (same behaviour as [`Provider::File`]).
    Fileinfo,
    /// A document fetched over HTTP(S) and polled.
    Http,
    /// A `flagd.sync.v1.FlagSyncService` stream from another server.
    Grpc,
    /// A `FeatureFlag` custom resource in Kubernetes.
    Kubernetes,
    /// An object in Google Cloud Storage.
    Gcs,
    /// A blob in Azure Blob Storage.
    Azblob,
    /// An object in Amazon S3.
    S3,
}

impl Provider {
    /// The provider's name as written in `--sources` JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::File => "file",
            Provider::Fsnotify => "fsnotify",
            Provider::Fileinfo => "fileinfo",
            Provider::Http => "http",
            Provider::Grpc => "grpc",
            Provider::Kubernetes => "kubernetes",
            Provider::Gcs => "gcs",
            Provider::Azblob => "azblob",
            Provider::S3 => "s3",
        }
    }

    /// Whether the source reads a local file.
    pub const fn is_file(self) -> bool {
        matches!(
            self,
            Provider::File | Provider::Fsnotify | Provider::Fileinfo
        )
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured source: an entry of `--sources`, or what a `--uri` value stands for.
///
/// Fields other than `uri` and `provider` only matter to some providers; unknown JSON fields
/// that flagd accepts (`maxMsgSize`, `oauth`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSpec {
    /// Where the document is: a path for files, a URL for HTTP, `host:port` (or a
    /// `grpc://`/`grpcs://` URI) for gRPC.
    pub uri: String,
    /// Which kind of source this is.
    pub provider: Provider,
    /// HTTP: the full `Authorization` header value (for example `Bearer <token>`).
    #[serde(default)]
    pub auth_header: Option<String>,
    /// gRPC: the CA certificate used to verify the server.
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
    /// gRPC: connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// gRPC: the `provider_id` sent in sync requests.
    #[serde(rename = "providerID", default)]
    pub provider_id: Option<String>,
    /// gRPC: the selector sent in sync requests.
    #[serde(default)]
    pub selector: Option<String>,
    /// HTTP and object stores: poll interval in seconds (flagd's default is 5).
    #[serde(default)]
    pub interval: Option<u32>,
    /// HTTP: where in each interval the polls fall, derived from this text, so that replicas
    /// given different seeds poll at different times and each keeps its time across restarts.
    /// Without it the place is drawn at random when the source starts.
    #[serde(rename = "intervalSeed", default)]
    pub interval_seed: Option<String>,
    /// HTTP: client timeout in seconds (`0` or absent: none).
    #[serde(rename = "timeoutS", default)]
    pub timeout_s: Option<u32>,
    /// HTTP headers or gRPC metadata sent with every request; a `Host` entry (in any case)
    /// names the host the requests are for (HTTP `Host`, gRPC `:authority`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// A source that cannot be configured or started.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An empty `--uri` value or `uri` field.
    #[error("empty source URI")]
    EmptyUri,
    /// A URI whose scheme names no provider.
    #[error(
        "unsupported source URI \"{uri}\": expected file:<path>, http(s)://, grpc(s)://, \
         envoy://, dns://, uds://, xds://, core.openfeature.dev/<namespace>/<name>, gs://, \
         azblob://, s3:// or a plain file path"
    )]
    UnknownScheme {
        /// The URI as given.
        uri: String,
    },
    /// `--sources` is not a JSON array of source objects.
    #[error("invalid --sources JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A provider this daemon does not implement yet.
    #[error("provider {provider} is not supported yet (source \"{uri}\")")]
    Unsupported {
        /// The requested provider.
        provider: Provider,
        /// The source's URI.
        uri: String,
    },
    /// A setting the source cannot work with (a header that cannot be sent, a selector flagd
    /// would refuse).
    #[error("invalid source \"{uri}\": {problem}")]
    Invalid {
        /// The source's URI as given.
        uri: String,
        /// What is wrong.
        problem: String,
    },
    /// Sources run as tokio tasks and must be spawned from inside a runtime.
    #[error("sources must be started from inside a tokio runtime")]
    NoRuntime,
}

/// Schemes that flagd resolves through a custom gRPC name resolver; the URI is kept whole.
const GRPC_RESOLVER_SCHEMES: [&str; 4] = ["envoy://", "dns://", "uds://", "xds://"];

/// The Kubernetes `FeatureFlag` resource prefix.
const KUBERNETES_PREFIX: &str = "core.openfeature.dev/";

impl SourceSpec {
    /// A spec with only `uri` and `provider` set.
    pub fn new(uri: impl Into<String>, provider: Provider) -> SourceSpec {
        SourceSpec {
            uri: uri.into(),
            provider,
            auth_header: None,
            cert_path: None,
            tls: false,
            provider_id: None,
            selector: None,
            interval: None,
            interval_seed: None,
            timeout_s: None,
            headers: BTreeMap::new(),
        }
    }

    /// Checks the settings the source's provider uses, so that a source that could never send
    /// a valid request stops the daemon at start instead of failing at every attempt: the
    /// headers of HTTP and gRPC sources, and the selector of a gRPC source (parsed as flagd
    /// parses selectors).
    pub fn check(&self) -> Result<(), SourceError> {
        match self.provider {
            Provider::Http => http::request_headers(self)
                .map(drop)
                .map_err(|problem| self.invalid(problem)),
            Provider::Grpc => grpc::CallSettings::from_spec(self)
                .map(drop)
                .map_err(|problem| self.invalid(problem)),
            _ => Ok(()),
        }
    }

    /// A [`SourceError::Invalid`] for this source.
    pub(crate) fn invalid(&self, problem: impl Into<String>) -> SourceError {
        SourceError::Invalid {
            uri: self.source_uri(),
            problem: problem.into(),
        }
    }

    /// Interprets one `--uri` value; its prefix picks the provider, as in flagd:
    ///
    /// | prefix | provider |
    /// |---|---|
    /// | `file:` | file (prefix stripped; only `file:`, so `file:///a` keeps `///a`, as flagd) |
    /// | `http://`, `https://` | http |
    /// | `grpc://` | grpc |
    /// | `grpcs://` | grpc with `tls` set |
    /// | `envoy://`, `dns://`, `uds://`, `xds://` | grpc (URI kept whole) |
    /// | `core.openfeature.dev/` | kubernetes |
    /// | `gs://`, `azblob://`, `s3://` | gcs, azblob, s3 |
    ///
    /// Unlike flagd, a value without any scheme (no `name://` and no `file:`) is accepted as a
    /// file path, so `--uri flags.json` works. Any other `scheme://` is an error.
    pub fn from_uri(uri: &str) -> Result<SourceSpec, SourceError> {
        let uri = uri.trim();
        if uri.is_empty() {
            return Err(SourceError::EmptyUri);
        }
        if let Some(path) = uri.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SourceError::EmptyUri);
            }
            return Ok(SourceSpec::new(path, Provider::File));
        }
        let lower = uri.to_ascii_lowercase();
        let has = |prefix: &str| lower.starts_with(prefix);
        let spec = if has("http://") || has("https://") {
            SourceSpec::new(uri, Provider::Http)
        } else if has("grpcs://") {
            SourceSpec {
                tls: true,
                ..SourceSpec::new(uri, Provider::Grpc)
            }
        } else if has("grpc://") || GRPC_RESOLVER_SCHEMES.iter().any(|s| has(s)) {
            SourceSpec::new(uri, Provider::Grpc)
        } else if has(KUBERNETES_PREFIX) {
            SourceSpec::new(uri, Provider::Kubernetes)
        } else if has("gs://") {
            SourceSpec::new(uri, Provider::Gcs)
        } else if has("azblob://") {
            SourceSpec::new(uri, Provider::Azblob)
        } else if has("s3://") {
            SourceSpec::new(uri, Provider::S3)
        } else if has_scheme(uri) {
            return Err(SourceError::UnknownScheme {
                uri: uri.to_owned(),
            });
        } else {
            SourceSpec::new(uri, Provider::File)
        };
        Ok(spec)
    }

    /// The URI the store, selectors and sync payloads know this source by: the path for files,
    /// the full URL for HTTP (without a user name or password, which would otherwise show up in
    /// logs, payloads and the admin API), `host:port` for `grpc://` and `grpcs://`,
    /// `namespace/name` for Kubernetes, and the URI as given otherwise.
    pub fn source_uri(&self) -> String {
        let uri = self.uri.as_str();
        let stripped = match self.provider {
            Provider::File | Provider::Fsnotify | Provider::Fileinfo => uri.strip_prefix("file:"),
            Provider::Grpc => strip_prefix_ignore_case(uri, "grpcs://")
                .or_else(|| strip_prefix_ignore_case(uri, "grpc://")),
            Provider::Kubernetes => strip_prefix_ignore_case(uri, KUBERNETES_PREFIX),
            Provider::Http => return http::without_userinfo(uri),
            _ => None,
        };
        stripped.unwrap_or(uri).to_owned()
    }

    /// The path a file source reads.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(self.source_uri())
    }
}

/// Parses the `--sources` value: a JSON array of source objects. An empty or blank string means
/// no sources (flagd's default).
pub fn parse_sources_json(json: &str) -> Result<Vec<SourceSpec>, SourceError> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let specs: Vec<SourceSpec> = serde_json::from_str(json)?;
    if specs.iter().any(|s| s.uri.trim().is_empty()) {
        return Err(SourceError::EmptyUri);
    }
    for spec in &specs {
        spec.check()?;
    }
    Ok(specs)
}

/// Starts the task that feeds source `index` into `tx` until `shutdown` becomes `true` (or its
/// sender is dropped, or the store stops receiving).
///
/// File, HTTP and gRPC sources are served (with default timing); other providers are refused
/// with [`SourceError::Unsupported`].
pub fn spawn(
    spec: &SourceSpec,
    index: usize,
    tx: mpsc::Sender<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, SourceError> {
    match spec.provider {
        Provider::Http => {
            return http::spawn(spec, index, tx, shutdown, http::HttpOptions::default());
        }
        Provider::Grpc => {
            return grpc::spawn(spec, index, tx, shutdown, grpc::GrpcOptions::default());
        }
        p if p.is_file() => {}
        _ => {
            return Err(SourceError::Unsupported {
                provider: spec.provider,
                uri: spec.uri.clone(),
            });
        }
    }
    file::spawn(
        spec.path(),
        index,
        tx,
        shutdown,
        file::FileOptions::default(),
    )
}

/// Whether `uri` starts with `scheme://`, a scheme being a letter followed by letters, digits,
/// `+`, `-` or `.`.
fn has_scheme(uri: &str) -> bool {
    let Some((scheme, _)) = uri.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// Returns an error unless called from inside a tokio runtime, so spawning never panics.
fn runtime() -> Result<tokio::runtime::Handle, SourceError> {
    tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_uri(uri: &str, provider: Provider, tls: bool, source_uri: &str) {
        let spec = SourceSpec::from_uri(uri).unwrap();
        assert_eq!(
            (spec.provider, spec.tls, spec.source_uri().as_str()),
            (provider, tls, source_uri),
            "{uri}"
        );
    }

    #[test]
    fn uri_prefixes_pick_the_provider() {
        check_uri("file:flags/a.json", Provider::File, false, "flags/a.json");
        check_uri(
            "file:/etc/flagd/flags.yaml",
            Provider::File,
            false,
            "/etc/flagd/flags.yaml",
        );
        check_uri(
            "file:///etc/flags.json",
            Provider::File,
            false,
            "///etc/flags.json",
        );
        check_uri("/etc/flags.json", Provider::File, false, "/etc/flags.json");
        check_uri("flags.json", Provider::File, false, "flags.json");
        check_uri(
            "C:\\flags\\a.json",
            Provider::File,
            false,
            "C:\\flags\\a.json",
        );
        check_uri(
            "http://example.com/f.json",
            Provider::Http,
            false,
            "http://example.com/f.json",
        );
        check_uri(
            "https://example.com/f?x=1",
            Provider::Http,
            false,
            "https://example.com/f?x=1",
        );
        check_uri(
            "grpc://localhost:8015",
            Provider::Grpc,
            false,
            "localhost:8015",
        );
        check_uri(
            "grpcs://flags.example:443",
            Provider::Grpc,
            true,
            "flags.example:443",
        );
        check_uri(
            "envoy://svc/flagd",
            Provider::Grpc,
            false,
            "envoy://svc/flagd",
        );
        check_uri(
            "core.openfeature.dev/ns/name",
            Provider::Kubernetes,
            false,
            "ns/name",
        );
        check_uri(
            "gs://bucket/f.json",
            Provider::Gcs,
            false,
            "gs://bucket/f.json",
        );
        check_uri(
            "azblob://c/f.json",
            Provider::Azblob,
            false,
            "azblob://c/f.json",
        );
        check_uri(
            "s3://bucket/f.json?region=x",
            Provider::S3,
            false,
            "s3://bucket/f.json?region=x",
        );
    }

    #[test]
    fn bad_uris_are_refused() {
        assert!(matches!(
            SourceSpec::from_uri(""),
            Err(SourceError::EmptyUri)
        ));
        assert!(matches!(
            SourceSpec::from_uri("file:"),
            Err(SourceError::EmptyUri)
        ));
        let err = SourceSpec::from_uri("ftp://host/flags.json").unwrap_err();
        assert!(err.to_string().contains("ftp://host/flags.json"), "{err}");
    }

    #[test]
    fn sources_json_reads_every_field() {
        let specs = parse_sources_json(
            r#"[
            {"uri":"config/flags.json","provider":"file"},
            {"uri":"https://h/f.json","provider":"http","authHeader":"Bearer t","interval":7,
             "timeoutS":3,"headers":{"Host":"x"},"intervalSeed":"replica-1"},
            {"uri":"localhost:8015","provider":"grpc","tls":true,"certPath":"/ca.pem",
             "providerID":"me","selector":"flagSetId=a","maxMsgSize":10}
        ]"#,
        )
        .unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            specs[0],
            SourceSpec::new("config/flags.json", Provider::File)
        );
        assert_eq!(specs[1].auth_header.as_deref(), Some("Bearer t"));
        assert_eq!((specs[1].interval, specs[1].timeout_s), (Some(7), Some(3)));
        assert_eq!(specs[1].headers.get("Host").map(String::as_str), Some("x"));
        assert_eq!(specs[1].interval_seed.as_deref(), Some("replica-1"));
        assert_eq!(specs[0].interval_seed, None);
        assert!(specs[2].tls);
        assert_eq!(specs[2].cert_path, Some(PathBuf::from("/ca.pem")));
        assert_eq!(specs[2].provider_id.as_deref(), Some("me"));
        assert_eq!(specs[2].selector.as_deref(), Some("flagSetId=a"));
        assert_eq!(specs[2].source_uri(), "localhost:8015");
        assert!(parse_sources_json("  ").unwrap().is_empty());
    }

    #[test]
    fn sources_json_errors_are_clear() {
        let err = parse_sources_json(r#"[{"uri":"x","provider":"ftp"}]"#).unwrap_err();
        assert!(err.to_string().contains("ftp"), "{err}");
        assert!(
            parse_sources_json(r#"[{"provider":"file"}]"#)
                .unwrap_err()
                .to_string()
                .contains("uri")
        );
        assert!(matches!(
            parse_sources_json(r#"[{"uri":"","provider":"file"}]"#),
            Err(SourceError::EmptyUri)
        ));
        assert!(parse_sources_json("{}").is_err());
    }

    #[test]
    fn settings_no_request_could_carry_are_refused() {
        let check = |json: &str| {
            parse_sources_json(json)
                .map(|s| s.len())
                .map_err(|e| e.to_string())
        };
        // A selector flagd would refuse, with flagd's message.
        assert_eq!(
            check(r#"[{"uri":"grpc://h:1","provider":"grpc","selector":"colour=red"}]"#),
            Err(
                "invalid source \"h:1\": invalid selector key \"colour\", valid keys: \
                 \"flagSetId\", \"source\""
                    .into()
            )
        );
        for selector in ["flagSetId=a", "flagSetId=", "source=x.json", "x.json", ""] {
            let json =
                format!(r#"[{{"uri":"grpc://h:1","provider":"grpc","selector":"{selector}"}}]"#);
            assert_eq!(check(&json), Ok(1), "{selector}");
        }
        // Headers that cannot be sent.
        let err =
            check(r#"[{"uri":"grpc://h:1","provider":"grpc","headers":{"x-y":"caf\u00e9"}}]"#)
                .unwrap_err();
        assert!(
            err.contains("`x-y`") && err.contains("visible ASCII"),
            "{err}"
        );
        let err =
            check(r#"[{"uri":"grpc://h:1","provider":"grpc","headers":{"a b":"1"}}]"#).unwrap_err();
        assert!(err.contains("invalid header name `a b`"), "{err}");
        let err = check(r#"[{"uri":"https://u:p@h/f","provider":"http","headers":{"x":"a\nb"}}]"#)
            .unwrap_err();
        // The message names the source without its credentials.
        assert_eq!(
            err,
            "invalid source \"https://h/f\": invalid value for header `x` in the source's headers"
        );
        // File sources have nothing of the kind to check.
        assert_eq!(
            check(r#"[{"uri":"f.json","provider":"file","headers":{"a b":"1"}}]"#),
            Ok(1)
        );
    }

    #[tokio::test]
    async fn object_store_sources_are_refused() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let spec = SourceSpec::from_uri("s3://bucket/flags.json").unwrap();
        let err = spawn(&spec, 0, tx, shutdown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "provider s3 is not supported yet (source \"s3://bucket/flags.json\")"
        );
    }

    #[test]
    fn spawning_outside_a_runtime_is_an_error() {
        let (tx, _rx) = mpsc::channel(1);
        let (_stop, shutdown) = watch::channel(false);
        let spec = SourceSpec::from_uri("file:flags.json").unwrap();
        assert!(matches!(
            spawn(&spec, 0, tx, shutdown),
            Err(SourceError::NoRuntime)
        ));
    }
}
