//! `tls::probe`: one TLS handshake, for `check`, to read the leaf certificate a server presents
//! even when the agent would not trust it (an untrusted or expired certificate is refused by
//! the real clients before its dates could be read).
//!
//! The handshake is a real one (the server must prove it holds the certificate's key), but any
//! certificate is accepted ([`super::insecure`]). This module must never decide trust (the
//! repository client and the UMS channel do, and `check` reports that separately) and never
//! send application data: after the handshake it only sends close_notify.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The DER of the leaf certificate that the TLS server on `tcp` presents for `host` (sent as
/// SNI). The handshake must finish within `timeout`.
pub async fn peer_certificate(
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let addr = tcp
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    // `Url::host_str` writes IPv6 addresses in brackets; a server name has none.
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
    let config = super::insecure::accept_any(super::provider::client_config_builder()?)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let mut tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host} ({addr}): {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|cert| cert.as_ref().to_vec())
            .ok_or_else(|| format!("{host} ({addr}) presented no certificate"))?;
        // A close_notify, so that the server logs an orderly close rather than a reset; the
        // certificate is already read, so a failure here changes nothing.
        let _ = tls.shutdown().await;
        Ok(leaf)
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| format!("{host} ({addr}): no TLS handshake within {timeout:?}"))?
}
