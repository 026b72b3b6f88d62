//! The gRPC connection to a collector: endpoint, TLS and the per-export metadata of one
//! [`Target`]. Connecting is lazy, so a collector that is down at start-up delays nothing.

use anyhow::Context as _;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::config::Target;

/// A lazily connecting channel to `target`. Must be called inside the tokio runtime that will
/// drive the connection.
pub fn connect(target: &Target) -> anyhow::Result<Channel> {
    let mut endpoint = Endpoint::from_shared(target.endpoint.clone())
        .with_context(|| format!("invalid collector endpoint {}", target.endpoint))?
        .timeout(target.timeout)
        .connect_timeout(target.timeout);
    if target.is_tls() {
        endpoint = endpoint
            .tls_config(tls(target)?)
            .context("configuring TLS for the collector")?;
    }
    Ok(endpoint.connect_lazy())
}

/// The collector's TLS: its CA (else the bundled web roots) and our client identity, if any.
fn tls(target: &Target) -> anyhow::Result<ClientTlsConfig> {
    let mut config = ClientTlsConfig::new();
    config = match &target.ca {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the collector CA {}", path.display()))?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_webpki_roots(),
    };
    if let Some((cert, key)) = &target.identity {
        let cert = std::fs::read(cert).with_context(|| {
            format!(
                "reading the collector client certificate {}",
                cert.display()
            )
        })?;
        let key = std::fs::read(key)
            .with_context(|| format!("reading the collector client key {}", key.display()))?;
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

/// `target`'s headers as gRPC metadata (already validated when the configuration was read).
pub fn metadata(target: &Target) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (key, value) in &target.headers {
        if let (Ok(k), Ok(v)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            map.append(k, v);
        }
    }
    map
}
