//! Certificates for TLS tests, made in process (no `openssl` executable needed).

use std::path::{Path, PathBuf};

/// Writes a self-signed end-entity certificate for `localhost` (and 127.0.0.1) and its key as
/// PEM files into `dir`; returns `(cert, key)`. Clients trust the certificate itself as their CA.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate parameters");
    // rustls refuses a CA certificate as the server's own.
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate().expect("key pair");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}
