//! `tls::client`: the rustls configuration of the UMS channel: the server's certificate must
//! chain to `[ums] ca_certificate` (or, with `allow_insecure`, anything goes), and the device
//! proves who it is with `client_certificate` and `client_key` (mutual TLS). The files are read
//! for every connection round, so a renewed device certificate is used without a restart.
//!
//! It builds configurations and must never connect (that is `crate::ums::connect`), nor put a
//! private key's bytes into a message.

use std::sync::Arc;

use rustls::ClientConfig;

use super::files::{read_certificates, read_private_key};
use crate::config::settings::UmsSettings;

/// The client configuration for `wss://`, or an error that names the key and file.
pub fn ums_client_config(settings: &UmsSettings) -> Result<Arc<ClientConfig>, String> {
    let builder = super::provider::client_config_builder()?;
    let builder = match (&settings.ca_certificate, settings.allow_insecure) {
        (_, true) => super::insecure::accept_any(builder),
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
            let key_der = read_private_key("ums.client_key", key)?;
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
