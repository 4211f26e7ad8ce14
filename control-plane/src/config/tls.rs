//! The server's TLS configuration from a PEM certificate chain and private key (rustls, ring).

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ConfigError, TlsSettings};

pub fn server_config(tls: &TlsSettings) -> Result<ServerConfig, ConfigError> {
    let certificates = read_certificates(&tls.cert)?;
    let key = read_private_key(&tls.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_no_client_auth().with_single_cert(certificates, key))
        .map_err(|e| ConfigError::Tls {
            path: tls.key.clone(),
            problem: format!("the key does not fit the certificate: {e}"),
        })
}

fn open(path: &Path) -> Result<BufReader<File>, ConfigError> {
    File::open(path).map(BufReader::new).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certificates = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::Tls { path: path.to_path_buf(), problem: format!("not PEM: {e}") })?;
    if certificates.is_empty() {
        return Err(ConfigError::Tls { path: path.to_path_buf(), problem: "holds no CERTIFICATE block".into() });
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|e| ConfigError::Tls { path: path.to_path_buf(), problem: format!("not PEM: {e}") })?
        .ok_or_else(|| ConfigError::Tls {
            path: path.to_path_buf(),
            problem: "holds no PRIVATE KEY (PKCS#8, PKCS#1 or SEC1) block".into(),
        })
}
