//! TLS configuration with rustls: trust roots for clients, certificate and
//! key for servers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// Which certificate authorities a `wss://` client trusts.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum TrustRoots {
    /// Mozilla's roots compiled in (`webpki-roots`): the same everywhere.
    #[default]
    Webpki,
    /// The operating system's store (`rustls-native-certs`).
    Native,
    /// The certificates in a PEM file (a private CA, a self-signed server).
    CaFile(PathBuf),
    /// A complete rustls configuration of your own.
    Custom(Arc<rustls::ClientConfig>),
    /// **Any certificate, for testing only** (`tether connect -k`, `curl
    /// -k`): the connection is encrypted, but anyone in between can read
    /// and change it. Never in production.
    InsecureAcceptAny,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn config_error(what: &str, error: impl std::fmt::Display) -> Error {
    Error::config(format!("{what}: {error}"))
}

/// The rustls client configuration for `roots`, offering ALPN `http/1.1`.
///
/// Built once per kind of roots (and per CA file, until it changes) and
/// then reused: the system's store is not read again on every connection,
/// and a reconnection resumes its TLS session (one round trip, no
/// certificate check) because the session cache lives in the
/// configuration.
///
/// # Errors
/// An unreadable or empty CA file, or no usable native roots.
pub fn client_config(roots: &TrustRoots) -> Result<Arc<rustls::ClientConfig>> {
    /// Built configurations, by what they were built from. A handful at
    /// most: one per kind of roots and per CA file in use.
    static BUILT: std::sync::Mutex<Vec<(Built, Arc<rustls::ClientConfig>)>> = std::sync::Mutex::new(Vec::new());
    const KEPT: usize = 16;
    let key = match roots {
        TrustRoots::Custom(config) => return Ok(config.clone()),
        TrustRoots::Webpki => Built::Webpki,
        TrustRoots::Native => Built::Native,
        TrustRoots::InsecureAcceptAny => Built::Insecure,
        // A changed file (another CA, a renewed one) makes a new
        // configuration: it is read (a few kilobytes), not parsed, to tell.
        TrustRoots::CaFile(path) => {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(path).map_err(|e| config_error(&path.display().to_string(), e))?.hash(&mut hasher);
            Built::CaFile(path.clone(), hasher.finish())
        }
    };
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, config)) = built.iter().find(|(made_from, _)| *made_from == key) {
        return Ok(config.clone());
    }
    let config = build_client_config(roots)?;
    if built.len() == KEPT {
        built.remove(0);
    }
    built.push((key, config.clone()));
    Ok(config)
}

/// What a client configuration was built from.
#[derive(PartialEq, Eq)]
enum Built {
    Webpki,
    Native,
    Insecure,
    CaFile(PathBuf, u64),
}

fn build_client_config(roots: &TrustRoots) -> Result<Arc<rustls::ClientConfig>> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        TrustRoots::Custom(config) => return Ok(config.clone()),
        TrustRoots::InsecureAcceptAny => {
            let provider = provider();
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| config_error("TLS versions", e))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            return Ok(Arc::new(config));
        }
        TrustRoots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TrustRoots::Native => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(Error::config("no usable certificates in the system trust store"));
            }
        }
        TrustRoots::CaFile(path) => {
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| config_error(&path.display().to_string(), e))? {
                let cert = cert.map_err(|e| config_error(&path.display().to_string(), e))?;
                store.add(cert).map_err(|e| config_error(&path.display().to_string(), e))?;
            }
            if store.is_empty() {
                return Err(Error::config(format!("{}: no certificates", path.display())));
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("TLS versions", e))?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A rustls server configuration from a PEM certificate chain and a PEM
/// private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// Unreadable files, no certificate, no key, or a key that does not match.
pub fn server_config_from_pem(cert_file: &Path, key_file: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect)
        .map_err(|e| config_error(&cert_file.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(Error::config(format!("{}: no certificates", cert_file.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| config_error(&key_file.display().to_string(), e))?;
    server_config(certs, key)
}

/// A rustls server configuration from DER certificates and key, offering
/// ALPN `http/1.1`.
///
/// # Errors
/// A key that does not match the certificate.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error("TLS versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| config_error("certificate and key", e))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any server certificate ([`TrustRoots::InsecureAcceptAny`]);
/// the handshake's signatures are still checked, so the peer must hold
/// the key of the certificate it shows.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_configuration_is_built_once_and_again_when_its_ca_file_changes() {
        let first = client_config(&TrustRoots::Webpki).unwrap();
        assert!(Arc::ptr_eq(&first, &client_config(&TrustRoots::Webpki).unwrap()));
        let dir = std::env::temp_dir().join(format!("tether-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        let write_ca = || {
            let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
            std::fs::write(&file, ca.cert.pem()).unwrap();
        };
        write_ca();
        let roots = TrustRoots::CaFile(file.clone());
        let a = client_config(&roots).unwrap();
        assert!(Arc::ptr_eq(&a, &client_config(&roots).unwrap()), "reused");
        write_ca();
        let b = client_config(&roots).unwrap();
        assert!(!Arc::ptr_eq(&a, &b), "a new CA file, a new configuration");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
