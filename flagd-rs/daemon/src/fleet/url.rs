//! The shared store's URL: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX`, or `etcds://` for TLS.
//!
//! The hosts are the members' client addresses (port 2379 when left out; an IPv6 address in
//! brackets). The path is the prefix every key of this fleet lives under. Credentials never go
//! in the URL (they would end up in process listings and logs): they have their own options.

use std::fmt;
use std::str::FromStr;

use super::etcd::{EtcdConfig, EtcdTls};

/// etcd's client port, used when a host comes without one.
pub const DEFAULT_PORT: u16 = 2379;

/// A parsed store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreUrl {
    /// Whether to talk TLS (`etcds://`).
    pub tls: bool,
    /// The members' client addresses, `HOST:PORT` each, in the order given.
    pub endpoints: Vec<String>,
    /// The key prefix: starts with `/`, never ends with one (`/flagd-rs/prod`).
    pub prefix: String,
}

/// What is wrong with a store URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreUrlError {
    /// The URL does not start with `etcd://` or `etcds://`.
    #[error("the store URL must start with etcd:// or etcds://, not `{found}`")]
    Scheme {
        /// What it starts with.
        found: String,
    },
    /// The URL carries a user or password.
    #[error(
        "the store URL must not carry credentials (they would show in process listings): use \
         --store-user and --store-password-file"
    )]
    Credentials,
    /// The URL has a query or a fragment.
    #[error("the store URL cannot have a query (`?`) or a fragment (`#`)")]
    Query,
    /// No host is given.
    #[error("the store URL names no etcd host")]
    NoHost,
    /// A host is malformed.
    #[error("the store URL's host `{host}` is not valid: {detail}")]
    Host {
        /// The host as written.
        host: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The path (the key prefix) is missing.
    #[error(
        "the store URL has no key prefix: add one as its path, e.g. etcd://127.0.0.1:2379/flagd-rs"
    )]
    NoPrefix,
    /// The key prefix is malformed.
    #[error("the store URL's key prefix `{prefix}` is not valid: {detail}")]
    Prefix {
        /// The prefix as written.
        prefix: String,
        /// What is wrong with it.
        detail: String,
    },
}

impl StoreUrl {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<StoreUrl, StoreUrlError> {
        let text = text.trim();
        let (tls, rest) = if let Some(rest) = text.strip_prefix("etcd://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("etcds://") {
            (true, rest)
        } else {
            let found = text.split_once("://").map_or(text, |(s, _)| s);
            return Err(StoreUrlError::Scheme {
                found: found.to_owned(),
            });
        };
        if rest.contains(['?', '#']) {
            return Err(StoreUrlError::Query);
        }
        let (hosts, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        if hosts.contains('@') {
            return Err(StoreUrlError::Credentials);
        }
        if hosts.is_empty() {
            return Err(StoreUrlError::NoHost);
        }
        let mut endpoints: Vec<String> = Vec::new();
        for host in hosts.split(',') {
            let endpoint = endpoint(host)?;
            if endpoints.contains(&endpoint) {
                return Err(StoreUrlError::Host {
                    host: host.to_owned(),
                    detail: "it is listed twice".into(),
                });
            }
            endpoints.push(endpoint);
        }
        Ok(StoreUrl {
            tls,
            endpoints,
            prefix: prefix(path)?,
        })
    }

    /// The client settings for this URL: its endpoints, and TLS trusting the bundled web roots
    /// for `etcds://` (replace [`EtcdConfig::tls`] to trust a CA or present a certificate).
    pub fn config(&self) -> EtcdConfig {
        let mut config = EtcdConfig::new(self.endpoints.iter().cloned());
        if self.tls {
            config.tls = Some(EtcdTls::default());
        }
        config
    }
}

/// `HOST[:PORT]` as `HOST:PORT`.
fn endpoint(host: &str) -> Result<String, StoreUrlError> {
    let bad = |detail: &str| StoreUrlError::Host {
        host: host.to_owned(),
        detail: detail.to_owned(),
    };
    if host.is_empty() {
        return Err(bad(
            "it is empty (two commas in a row, or a trailing comma?)",
        ));
    }
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (address, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address needs its closing `]`"))?;
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("not an IPv6 address"));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| bad("expected `:PORT` after the IPv6 address"))?,
            ),
        };
        (format!("[{address}]"), port)
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        if name.is_empty() {
            return Err(bad("the host name is missing"));
        }
        if name.contains(':') {
            return Err(bad(
                "an IPv6 address must be written in brackets: [::1]:2379",
            ));
        }
        let valid = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(bad(
                "a host name has only letters, digits, `-`, `_` and `.`",
            ));
        }
        (name.to_owned(), port)
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
            Ok(p) => p,
        },
    };
    Ok(format!("{name}:{port}"))
}

/// The URL's path as a key prefix: `/a/b` (one trailing `/` is dropped).
fn prefix(path: &str) -> Result<String, StoreUrlError> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(StoreUrlError::NoPrefix);
    }
    let bad = |detail: &str| StoreUrlError::Prefix {
        prefix: path.to_owned(),
        detail: detail.to_owned(),
    };
    for segment in trimmed[1..].split('/') {
        match segment {
            "" => return Err(bad("it has an empty segment (`//`)")),
            "." | ".." => return Err(bad("`.` and `..` are not allowed as segments")),
            _ => {}
        }
    }
    if let Some(c) = trimmed
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '%' | '\\'))
    {
        return Err(bad(&format!(
            "it has the character {c:?}; use letters, digits and punctuation other than `%` and `\\`"
        )));
    }
    Ok(trimmed.to_owned())
}

impl FromStr for StoreUrl {
    type Err = StoreUrlError;

    fn from_str(s: &str) -> Result<StoreUrl, StoreUrlError> {
        StoreUrl::parse(s)
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "etcds" } else { "etcd" };
        write!(f, "{scheme}://{}{}", self.endpoints.join(","), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(text: &str, tls: bool, endpoints: &[&str], prefix: &str) {
        let url = StoreUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            url,
            StoreUrl {
                tls,
                endpoints: endpoints.iter().map(ToString::to_string).collect(),
                prefix: prefix.into(),
            },
            "{text}"
        );
        assert_eq!(StoreUrl::parse(&url.to_string()).unwrap(), url, "{text}");
    }

    #[track_caller]
    fn bad(text: &str, expected: &str) {
        let err = StoreUrl::parse(text).unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: `{err}` lacks `{expected}`");
    }

    #[test]
    fn urls_that_parse() {
        ok(
            "etcd://127.0.0.1:2379/flagd-rs",
            false,
            &["127.0.0.1:2379"],
            "/flagd-rs",
        );
        ok(
            "etcd://a:2379,b:2380,c/flagd-rs/prod/",
            false,
            &["a:2379", "b:2380", "c:2379"],
            "/flagd-rs/prod",
        );
        ok(
            "etcds://etcd.example.com/x",
            true,
            &["etcd.example.com:2379"],
            "/x",
        );
        ok(
            "etcd://[::1]:2379,[fe80::1]/p",
            false,
            &["[::1]:2379", "[fe80::1]:2379"],
            "/p",
        );
        ok("  etcd://h:1/p:q=r  ", false, &["h:1"], "/p:q=r");
    }

    #[test]
    fn urls_that_do_not() {
        bad(
            "http://h:2379/p",
            "must start with etcd:// or etcds://, not `http`",
        );
        bad("h:2379/p", "must start with etcd://");
        bad("etcd://user:pw@h:2379/p", "must not carry credentials");
        bad("etcd://h:2379/p?x=1", "query");
        bad("etcd:///p", "names no etcd host");
        bad("etcd://a,,b/p", "it is empty");
        bad("etcd://a,a:2379/p", "listed twice");
        bad("etcd://h:0/p", "from 1 to 65535");
        bad("etcd://h:99999/p", "from 1 to 65535");
        bad("etcd://h:port/p", "from 1 to 65535");
        bad("etcd://::1:2379/p", "in brackets");
        bad("etcd://[::1/p", "closing `]`");
        bad("etcd://[nope]:1/p", "not an IPv6 address");
        bad("etcd://h x:1/p", "only letters");
        bad("etcd://h:2379", "no key prefix");
        bad("etcd://h:2379/", "no key prefix");
        bad("etcd://h:2379/a//b", "empty segment");
        bad("etcd://h:2379/a/../b", "not allowed");
        bad("etcd://h:2379/a%20b", "`%`");
        bad("etcd://h:2379/a b", "character ' '");
    }

    #[test]
    fn the_config_follows_the_url() {
        let url = StoreUrl::parse("etcds://a:1,b:2/p").unwrap();
        let config = url.config();
        assert_eq!(config.endpoints, vec!["a:1", "b:2"]);
        assert!(config.tls.is_some());
        assert!(
            StoreUrl::parse("etcd://a:1/p")
                .unwrap()
                .config()
                .tls
                .is_none()
        );
    }
}
