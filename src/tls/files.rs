//! `tls::files`: the PEM files TLS is configured with: CA certificates (a repository's
//! `ca_certificate`, `[ums] ca_certificate`), the device's client certificate chain and its
//! private key. Every file is read as a regular file of at most 1 MiB.
//!
//! This module only reads and parses; it must never decide what a connection trusts (the
//! callers put the certificates where they belong), and never put a private key's bytes into a
//! message.

use std::path::Path;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::durable::FileError;

/// The largest certificate, CA or key file read.
pub const MAX_PEM: u64 = 1024 * 1024;

/// Every certificate of the PEM text `bytes` (possibly none).
pub fn pem_certificates(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, pem::Error> {
    CertificateDer::pem_slice_iter(bytes).collect()
}

/// Every certificate of a PEM file; at least one. `key` names the setting in errors.
pub fn read_certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = crate::durable::read_regular(path, MAX_PEM)
        .map_err(|e| format!("{key} {}: cannot read: {}", path.display(), e.source))?;
    let certs =
        pem_certificates(&bytes).map_err(|e| format!("{key} {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The first PEM private key (PKCS#8, PKCS#1 or SEC1) of a file. `key` names the setting in
/// errors, which never quote the file's bytes.
pub fn read_private_key(key: &str, path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = crate::durable::read_regular(path, MAX_PEM)
        .map_err(|e| format!("{key} {}: cannot read: {}", path.display(), e.source))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        format!(
            "{key} {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
            path.display()
        )
    })
}

/// Why a CA file for reqwest could not be used; the callers word the message.
#[derive(Debug)]
pub enum CaFileError {
    Read(FileError),
    NotPem(reqwest::Error),
}

/// The certificates of a CA file, for a reqwest client (possibly none).
pub fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, CaFileError> {
    let pem = crate::durable::read_regular(path, MAX_PEM).map_err(CaFileError::Read)?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(CaFileError::NotPem)
}
