//! Per repository: name resolution, TCP connection, the server's certificate (its dates, read
//! over a handshake of its own), TLS trust and authentication (one WebDAV listing of the root,
//! naming the scheme used), and the server's clock from its `Date` header. A repository that
//! answered is handed on to [`super::files`].

use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpStream;

use super::{Finding, Level, certificate_finding, check_clock};
use std::sync::Arc;

use crate::config::{RepositoryAuth, RepositorySettings};
use crate::repository::{FailureKind, Repository, RepositoryError, Timeouts, TlsFailure};

/// The findings, and the client when the repository answered a listing.
pub(super) async fn check(
    settings: &RepositorySettings,
    timeouts: &Timeouts,
) -> (Vec<Finding>, Option<Arc<Repository>>) {
    let subject = format!("repository {}", settings.name);
    let mut out = Vec::new();
    if settings.hidden() {
        out.push(Finding::new(
            Level::Ok,
            &subject,
            "priority",
            "hidden (priority -1): never used for downloads",
        ));
    }
    let host = settings.url.host_str().unwrap_or_default().to_string();
    let port = settings.url.port_or_known_default().unwrap_or(443);
    let tcp = match reach(&subject, &host, port, timeouts.connect, &mut out).await {
        Some(tcp) => tcp,
        None => return (out, None),
    };
    if settings.url.scheme() == "https" {
        out.push(check_certificate(&subject, &host, tcp, timeouts.connect).await);
    }
    let repo = match Repository::new(settings.clone(), timeouts) {
        Ok(r) => r,
        Err(e) => {
            out.push(
                Finding::new(Level::Fail, &subject, "setup", e.to_string())
                    .hint("check ca_certificate and the password (password_file or credential)"),
            );
            return (out, None);
        }
    };
    match repo.list_dated("").await {
        Ok((entries, date)) => {
            if settings.url.scheme() == "https" {
                out.push(Finding::new(
                    Level::Ok,
                    &subject,
                    "tls",
                    "the certificate chain is trusted",
                ));
            }
            out.push(Finding::new(
                Level::Ok,
                &subject,
                "listing",
                format!("the top directory lists {} entries", entries.len()),
            ));
            if let Some(auth) = authentication(&repo) {
                out.push(auth);
            }
            out.push(check_clock(&subject, date));
        }
        Err(e) => {
            out.push(listing_failure(&subject, &e));
            return (out, None);
        }
    }
    (out, Some(repo))
}

/// Which scheme the listing used: configured, or chosen from the server's challenge.
fn authentication(repo: &Repository) -> Option<Finding> {
    let subject = format!("repository {}", repo.name());
    let how = match (&repo.settings.auth, repo.scheme()) {
        (RepositoryAuth::None, _) => return None,
        (RepositoryAuth::Auto { .. }, Some(scheme)) => {
            format!("{} (offered by the server; auth is not set)", scheme.name())
        }
        (RepositoryAuth::Auto { .. }, None) => {
            "not asked for: the server lists without a password".to_string()
        }
        (_, Some(scheme)) => format!("{} (auth = {:?})", scheme.name(), repo.settings.auth.name()),
        (_, None) => "not asked for: the server lists without a password".to_string(),
    };
    Some(Finding::new(Level::Ok, &subject, "authentication", how))
}

/// Name resolution and a TCP connection, each a finding; the connection when both worked.
async fn reach(
    subject: &str,
    host: &str,
    port: u16,
    timeout: Duration,
    out: &mut Vec<Finding>,
) -> Option<TcpStream> {
    let addr = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            out.push(
                Finding::new(Level::Fail, subject, "dns", format!("{host}: {e}"))
                    .hint("check the URL and the DNS server"),
            );
            return None;
        }
    };
    let Some(addr) = addr else {
        out.push(
            Finding::new(
                Level::Fail,
                subject,
                "dns",
                format!("{host} has no address"),
            )
            .hint("check the URL and the DNS server"),
        );
        return None;
    };
    out.push(Finding::new(
        Level::Ok,
        subject,
        "dns",
        format!("{host} is {}", addr.ip()),
    ));
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => {
            out.push(Finding::new(
                Level::Ok,
                subject,
                "connect",
                format!("{addr} accepts connections"),
            ));
            Some(tcp)
        }
        Ok(Err(e)) => {
            out.push(
                Finding::new(Level::Fail, subject, "connect", format!("{addr}: {e}"))
                    .hint("is the server running, and does a firewall allow the port?"),
            );
            None
        }
        Err(_) => {
            out.push(
                Finding::new(
                    Level::Fail,
                    subject,
                    "connect",
                    format!("{addr}: no answer within {timeout:?}"),
                )
                .hint("a firewall may drop the connection"),
            );
            None
        }
    }
}

/// Reads the server's certificate over a handshake of its own (on the connection the connect
/// step opened): the listing's client refuses an untrusted or expired certificate before its
/// dates could be read.
async fn check_certificate(
    subject: &str,
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Finding {
    let read = crate::tls::peer_certificate(host, tcp, timeout)
        .await
        .and_then(|der| crate::tls::validity(&der));
    match read {
        Ok(validity) => {
            certificate_finding(subject, "the server's certificate", &validity, Utc::now())
        }
        // The listing reports the TLS failure itself, with a hint.
        Err(e) => Finding::new(
            Level::Warn,
            subject,
            "certificate",
            format!("cannot read the server's certificate: {e}"),
        ),
    }
}

fn listing_failure(subject: &str, e: &RepositoryError) -> Finding {
    match e {
        RepositoryError::Connection {
            kind: FailureKind::Tls(why),
            ..
        } => {
            let hint = match why {
                TlsFailure::Expired => "the server's certificate has expired: renew it",
                TlsFailure::UnknownIssuer => {
                    "set ca_certificate to the CA that signed the server's certificate"
                }
                _ => "check the server's certificate and ca_certificate",
            };
            Finding::new(Level::Fail, subject, "tls", e.to_string()).hint(hint)
        }
        RepositoryError::Auth { .. } => {
            Finding::new(Level::Fail, subject, "authentication", e.to_string())
                .hint("check username, auth (digest/basic) and the password file")
        }
        _ => Finding::new(Level::Fail, subject, "listing", e.to_string())
            .hint("is WebDAV enabled for the URL?"),
    }
}
