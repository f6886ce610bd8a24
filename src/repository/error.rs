//! What a failed request to a repository means: [`RepositoryError`] names the URL and the
//! failure, and its classification says whether the same request could succeed later and how
//! long the server asked to wait (`Retry-After`, bounded by [`MAX_RETRY_AFTER`]). HTTP
//! statuses are mapped here; connection failures are classified from the types in reqwest's
//! error chain, TLS failures from rustls's own error types (never from the wording of a
//! message).
//!
//! This module only describes failures: it never retries, sleeps or picks another repository
//! (the backoff and the memory of unreachable repositories are `transfer::retry`'s), and its
//! messages never contain credentials.

use std::time::Duration;

use reqwest::Response;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use url::Url;

use super::stall::Stall;

/// A server asking for a longer pause than this is skipped in favour of the next repository.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Timeout,
    /// The TLS layer failed (rustls reported an error): retrying cannot help.
    Tls(TlsFailure),
    Body,
    /// Below `low_speed_limit` for `low_speed_time`: left for the next repository.
    Stalled,
    Other,
}

/// Why rustls refused the connection, as far as a hint to the administrator needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate is past its end date.
    Expired,
    /// The server's certificate is not valid yet (or the device's clock is behind).
    NotValidYet,
    /// The certificate does not chain to a trusted CA (`ca_certificate`, or the system's).
    UnknownIssuer,
    /// The certificate does not name the host of the URL.
    NotValidForName,
    /// Any other refusal by rustls (an alert, an incompatible or misbehaving peer, ...).
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("{url}: not found ({status})")]
    NotFound { url: Url, status: u16 },
    #[error("{url}: authentication failed: {reason}")]
    Auth { url: Url, reason: String },
    #[error("{url}: HTTP {status}")]
    Status {
        url: Url,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("{url}: {message}")]
    Connection {
        url: Url,
        kind: FailureKind,
        message: String,
    },
    #[error("{url}: {reason}")]
    Protocol { url: Url, reason: String },
    #[error("repository {name:?}: {reason}")]
    Setup { name: String, reason: String },
}

/// What an error says about sending the same request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Trying again cannot help here (a 404, a refused certificate, a stall), or the server
    /// asks for a longer pause than [`MAX_RETRY_AFTER`]: leave the repository.
    No,
    /// Trying again may help, after the agent's own backoff.
    Backoff,
    /// Trying again may help after this pause, which the server asked for (`Retry-After`).
    After(Duration),
}

impl RepositoryError {
    /// Could the same request succeed a little later?
    pub fn is_retryable(&self) -> bool {
        match self {
            RepositoryError::Status { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            RepositoryError::Connection { kind, .. } => {
                !matches!(kind, FailureKind::Tls(_) | FailureKind::Stalled)
            }
            _ => false,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, RepositoryError::NotFound { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RepositoryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether, and after whose pause, the same request is worth sending again.
    pub fn retry(&self) -> Retry {
        if !self.is_retryable() {
            return Retry::No;
        }
        match self.retry_after() {
            Some(after) if after > MAX_RETRY_AFTER => Retry::No,
            Some(after) => Retry::After(after),
            None => Retry::Backoff,
        }
    }

    /// A response body slower than the low-speed limit (`rate` bytes/s over `stall.time`).
    pub fn stalled(url: Url, rate: f64, stall: &Stall) -> RepositoryError {
        RepositoryError::Connection {
            url,
            kind: FailureKind::Stalled,
            message: format!(
                "stalled: {rate:.0} bytes/s for {}, below low_speed_limit ({}/s)",
                humantime::format_duration(stall.time),
                crate::report::human_bytes(stall.bytes_per_sec)
            ),
        }
    }
}

/// The response when its status is a success, else the error it means.
pub(super) fn check_status(url: &Url, response: Response) -> Result<Response, RepositoryError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = url.clone();
    Err(match status.as_u16() {
        404 | 410 => RepositoryError::NotFound {
            url,
            status: status.as_u16(),
        },
        403 => RepositoryError::Auth {
            url,
            reason: "the server answered 403 Forbidden".into(),
        },
        300..=399 => {
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            RepositoryError::Protocol {
                url,
                reason: format!(
                    "redirect to {to} refused: the agent follows redirects only within the same server"
                ),
            }
        }
        code => RepositoryError::Status {
            url,
            status: code,
            retry_after: response
                .headers()
                .get(RETRY_AFTER)
                .and_then(parse_retry_after),
        },
    })
}

fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// A failure of reqwest (connecting, sending, reading the body) as a repository error.
pub(super) fn connection_error(url: &Url, e: &reqwest::Error) -> RepositoryError {
    let kind = if let Some(tls) = rustls_error(e) {
        FailureKind::Tls(tls_failure(tls))
    } else if e.is_timeout() {
        FailureKind::Timeout
    } else if e.is_connect() {
        FailureKind::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        FailureKind::Body
    } else {
        FailureKind::Other
    };
    RepositoryError::Connection {
        url: url.clone(),
        kind,
        message: error_chain(e),
    }
}

/// The `rustls::Error` behind `e`, if any. tokio-rustls hands rustls's errors on inside an
/// `io::Error`, whose `source()` skips the error it wraps, so each `io::Error` on the chain is
/// opened with `get_ref` as well.
fn rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| rustls_error(inner))
        {
            return Some(inner);
        }
        current = err.source();
    }
    None
}

fn tls_failure(e: &rustls::Error) -> TlsFailure {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } => TlsFailure::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsFailure::NotValidYet,
            C::UnknownIssuer => TlsFailure::UnknownIssuer,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::NotValidForName,
            _ => TlsFailure::Other,
        },
        _ => TlsFailure::Other,
    }
}

/// The error and its causes in one line, without the URL reqwest repeats at the top.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        let text = match text.find(" for url (") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("7")),
            Some(Duration::from_secs(7))
        );
        let past = HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(&HeaderValue::from_static("soon")), None);
    }

    fn status(code: u16, retry_after: Option<u64>) -> RepositoryError {
        RepositoryError::Status {
            url: Url::parse("http://repo/a").unwrap(),
            status: code,
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn retry_follows_the_status_and_a_reasonable_retry_after() {
        assert_eq!(status(404, None).retry(), Retry::No);
        assert_eq!(status(503, None).retry(), Retry::Backoff);
        assert_eq!(
            status(429, Some(7)).retry(),
            Retry::After(Duration::from_secs(7))
        );
        assert_eq!(status(503, Some(301)).retry(), Retry::No);
        assert_eq!(status(400, Some(1)).retry(), Retry::No);
    }

    #[test]
    fn tls_failures_are_read_from_rustls_inside_an_io_error() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let tls = rustls_error(&io).expect("the rustls error inside");
        assert_eq!(tls_failure(tls), TlsFailure::UnknownIssuer);
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert_eq!(tls_failure(&expired), TlsFailure::Expired);
        let plain = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert!(rustls_error(&plain).is_none());
    }
}
