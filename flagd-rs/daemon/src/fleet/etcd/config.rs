//! How to reach an etcd cluster: its members, TLS, credentials and deadlines.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::EtcdError;

/// The deadline of one unary call, all its attempts together, unless configured otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The deadline of one connection attempt (TCP and TLS), unless configured otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How to reach an etcd cluster.
#[derive(Clone)]
pub struct EtcdConfig {
    /// The members' client addresses, `HOST:PORT` each (an IPv6 host in brackets).
    pub endpoints: Vec<String>,
    /// TLS towards every member (`None`: plain HTTP/2).
    pub tls: Option<EtcdTls>,
    /// The etcd user to authenticate as (`None`: etcd's authentication is off).
    pub user: Option<String>,
    /// That user's password.
    pub password: Option<String>,
    /// The deadline of every unary call, its retries on other members included.
    pub timeout: Duration,
    /// The deadline of one connection attempt to one member.
    pub connect_timeout: Duration,
}

impl EtcdConfig {
    /// Plain connections to `endpoints` with the default deadlines and no credentials.
    pub fn new<I, S>(endpoints: I) -> EtcdConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            user: None,
            password: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

// The password stays out of logs and panic messages.
impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

/// TLS towards the members: whom to trust and who we are.
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// The CA that signed the members' certificates, PEM (`None`: the bundled web roots).
    pub ca: Option<Vec<u8>>,
    /// Our client certificate and private key, PEM, for members that ask for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl EtcdTls {
    /// Reads the CA and the client certificate and key from files. The certificate and the key
    /// go together: one without the other is refused.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<EtcdTls, EtcdError> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                EtcdError::Config(format!("cannot read the {what} {}: {e}", path.display()))
            })
        };
        let ca = ca.map(|p| read("etcd CA certificate", p)).transpose()?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((
                read("etcd client certificate", cert)?,
                read("etcd client key", key)?,
            )),
            (None, None) => None,
            (Some(_), None) => {
                return Err(EtcdError::Config(
                    "an etcd client certificate needs its private key too".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(EtcdError::Config(
                    "an etcd client key needs its certificate too".into(),
                ));
            }
        };
        Ok(EtcdTls { ca, identity })
    }
}

// Key material stays out of logs.
impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca.as_ref().map(|_| "<pem>"))
            .field("identity", &self.identity.as_ref().map(|_| "<pem>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password_and_keys() {
        let mut config = EtcdConfig::new(["127.0.0.1:2379"]);
        config.user = Some("flagd".into());
        config.password = Some("hunter2".into());
        config.tls = Some(EtcdTls {
            ca: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            identity: Some((b"cert".to_vec(), b"secret key".to_vec())),
        });
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("secret key"), "{text}");
        assert!(text.contains("flagd"), "{text}");
    }

    #[test]
    fn a_certificate_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let err = EtcdTls::from_files(None, Some(&cert), None).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let missing = dir.path().join("nope.pem");
        let err = EtcdTls::from_files(Some(&missing), None, None).unwrap_err();
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }
}
