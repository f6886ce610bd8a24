//! The HTTP clients: rustls with the agent's crypto provider and CA files read by
//! `crate::tls`, the configured connect and read timeouts (for small documents as for files), a
//! short idle pool, and redirects followed only within the origin of the URL they were built
//! for. A repository with `ca_certificate`
//! trusts that CA only; an IDF URL trusts the system's roots plus `[ums] ca_certificate`.
//!
//! This module builds clients and never sends a request; a client it builds never follows a
//! redirect to another server (so credentials never leave the repository, and https never
//! drops to http).

use std::path::Path;
use std::time::Duration;

use url::Url;

use super::error::error_chain;
use crate::tls::files::{CaFileError, ca_bundle};

/// How long an idle connection to a repository is kept for the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// The client of one repository; `Err` says what is wrong with its `ca_certificate`.
pub(super) fn repository_client(
    connect: Duration,
    read: Duration,
    url: &Url,
    ca_certificate: Option<&Path>,
) -> Result<reqwest::Client, String> {
    crate::tls::provider::install_default();
    // Credentials must never follow a redirect to another server.
    let mut builder = client_builder(connect, read, url);
    if let Some(path) = ca_certificate {
        let certs = ca_bundle(path).map_err(|e| match e {
            CaFileError::Read(e) => format!("cannot read ca_certificate {}: {e}", path.display()),
            CaFileError::NotPem(e) => format!("ca_certificate {} is not PEM: {e}", path.display()),
        })?;
        if certs.is_empty() {
            return Err(format!(
                "ca_certificate {} holds no certificate",
                path.display()
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// The client that fetches an IDF from `url`: the system's roots, and `ca` (`[ums]
/// ca_certificate`) when given.
pub(super) fn idf_client(
    connect: Duration,
    read: Duration,
    url: &Url,
    ca: Option<&Path>,
) -> Result<reqwest::Client, String> {
    crate::tls::provider::install_default();
    let mut builder = client_builder(connect, read, url);
    if let Some(ca) = ca {
        let certs = ca_bundle(ca).map_err(|e| match e {
            CaFileError::Read(e) => format!("[ums] ca_certificate {}: {}", ca.display(), e.source),
            CaFileError::NotPem(e) => format!("[ums] ca_certificate {}: {e}", ca.display()),
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| error_chain(&e))
}

/// An HTTP client with the agent's timeouts that follows redirects only within the origin of
/// `url` (at most 5), so no request ever goes to another server (or from https to http).
fn client_builder(connect: Duration, read: Duration, url: &Url) -> reqwest::ClientBuilder {
    let origin = url.origin();
    reqwest::Client::builder()
        .connect_timeout(connect)
        .read_timeout(read)
        // Below Apache's default KeepAliveTimeout (5 s): a pooled connection the server is
        // closing at that moment fails the request and costs a retry with backoff.
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .user_agent(concat!("igel-update-agent/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.url().origin() == origin && attempt.previous().len() < 5 {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
}
