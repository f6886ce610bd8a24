//! The TLS side of the UMS channel: the server's certificate must chain to
//! `[ums] ca_certificate`, and the device proves who it is with `client_certificate` and
//! `client_key` (mutual TLS). The files are read for every connection round, so a renewed
//! device certificate is used without a restart.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::settings::UmsSettings;

/// The largest certificate or key file read.
const MAX_PEM: u64 = 1024 * 1024;

/// The client configuration for `wss://`, or an error that names the key and file.
pub fn client_config(settings: &UmsSettings) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match (&settings.ca_certificate, settings.allow_insecure) {
        (_, true) => builder
            .dangerous()
            .with_custom_certificate_verifier(crate::x509::any_certificate(&provider)),
        (Some(path), false) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates("ums.ca_certificate", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("ums.ca_certificate {}: unusable: {e}", path.display()))?;
            }
            builder.with_root_certificates(roots)
        }
        (None, false) => return Err("ums.ca_certificate is not set".into()),
    };
    let config = match (&settings.client_certificate, &settings.client_key) {
        (Some(cert), Some(key)) => {
            let chain = read_certificates("ums.client_certificate", cert)?;
            let bytes = crate::durable::read_regular(key, MAX_PEM).map_err(|e| {
                format!(
                    "ums.client_key {}: cannot read: {}",
                    key.display(),
                    e.source
                )
            })?;
            // The key's bytes are never part of a message.
            let key_der = PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
                format!(
                    "ums.client_key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| {
                    format!(
                        "ums.client_certificate {} and ums.client_key {} do not make a usable pair: {e}",
                        cert.display(),
                        key.display()
                    )
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file; at least one.
pub fn read_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = crate::durable::read_regular(path, MAX_PEM)
        .map_err(|e| format!("{key} {}: cannot read: {}", path.display(), e.source))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: holds no certificate", path.display()));
    }
    Ok(certs)
}
