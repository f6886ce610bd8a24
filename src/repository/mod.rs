//! One configured WebDAV repository: its HTTP client (rustls, trusting only the repository's
//! own CA when one is configured), its authentication, and the three requests the agent makes:
//! fetch a small file (`app.json`), list a directory (PROPFIND depth 1), and download a file
//! from a byte offset (`Range`/`If-Range`).
//!
//! This module knows HTTP and WebDAV, not apps: it never decides which repository to try next
//! (that is `transfer`) and never writes files. Its errors say which URL failed and whether
//! trying again could help; they never contain credentials.

mod auth;
pub mod document;
pub mod listing;
pub mod stall;

pub use document::fetch_idf;

use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_RANGE, RANGE, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::config::RepositorySettings;
pub use auth::Scheme;
use auth::{Authenticator, Unauthorized};
pub use listing::Entry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Connect,
    Timeout,
    Tls,
    Body,
    /// Below `low_speed_limit` for `low_speed_time`: left for the next repository.
    Stalled,
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

impl RepositoryError {
    /// Could the same request succeed a little later?
    pub fn is_retryable(&self) -> bool {
        match self {
            RepositoryError::Status { status, .. } => {
                *status == 408 || *status == 429 || *status >= 500
            }
            RepositoryError::Connection { kind, .. } => {
                !matches!(kind, FailureKind::Tls | FailureKind::Stalled)
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
}

/// A response to a ranged GET, positioned at `start`.
pub struct Download {
    pub response: Response,
    /// Byte offset of the first body byte in the file (0 when the server ignored `Range`).
    pub start: u64,
    /// Length of the whole file, when the server said.
    pub total: Option<u64>,
    /// What to send in `If-Range` when resuming this file later (see [`resume_validator`]).
    pub validator: Option<String>,
    pub url: Url,
}

pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    /// The low-speed limit, for small documents (a listing, an `app.json`) as for files.
    pub stall: stall::Stall,
}

pub struct Repository {
    pub settings: RepositorySettings,
    client: reqwest::Client,
    auth: Authenticator,
    stall: stall::Stall,
}

/// How long an idle connection to a repository is kept for the next request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

static CRYPTO: Once = Once::new();

fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        // Fails only if another provider was installed first, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Repository {
    pub fn new(
        settings: RepositorySettings,
        timeouts: &Timeouts,
    ) -> Result<Arc<Repository>, RepositoryError> {
        install_crypto_provider();
        let name = settings.name.clone();
        let setup = move |reason: String| RepositoryError::Setup {
            name: name.clone(),
            reason,
        };
        // Credentials must never follow a redirect to another server.
        let mut builder = client_builder(timeouts.connect, timeouts.read, &settings.url);
        if let Some(path) = &settings.ca_certificate {
            let pem = crate::durable::read_regular(path, 1024 * 1024).map_err(|e| {
                setup(format!(
                    "cannot read ca_certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| setup(format!("ca_certificate {} is not PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(setup(format!(
                    "ca_certificate {} holds no certificate",
                    path.display()
                )));
            }
            builder = builder.tls_certs_only(certs);
        }
        let client = builder.build().map_err(|e| setup(error_chain(&e)))?;
        let auth = Authenticator::new(&settings.auth, &settings.url);
        Ok(Arc::new(Repository {
            auth,
            settings,
            client,
            stall: timeouts.stall,
        }))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether this process can answer the repository's authentication: `Err` says how to
    /// provide a password it lacks (a systemd credential outside systemd).
    pub fn ready(&self) -> Result<(), RepositoryError> {
        self.auth.ready().map_err(|reason| RepositoryError::Setup {
            name: self.settings.name.clone(),
            reason,
        })
    }

    /// The authentication scheme used so far (configured, or chosen from the server's
    /// challenge); `None` when none was needed.
    pub fn scheme(&self) -> Option<Scheme> {
        self.auth.scheme()
    }

    /// The URL of a path below the repository root. `rel` has been validated (app names,
    /// versions and file paths), so joining cannot leave the root.
    pub fn url_for(&self, rel: &str) -> Result<Url, RepositoryError> {
        self.settings
            .url
            .join(rel)
            .map_err(|e| RepositoryError::Setup {
                name: self.settings.name.clone(),
                reason: format!("cannot form a URL for {rel:?}: {e}"),
            })
    }

    /// Sends a request, answering authentication challenges, and maps the status to errors.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<&'static str>,
    ) -> Result<Response, RepositoryError> {
        self.ready()?;
        let mut fresh = false;
        for _ in 0..3 {
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = body {
                req = req.body(body);
            }
            let (req, sent) = self.auth.apply(req, &method, url);
            let response = req.send().await.map_err(|e| connection_error(url, &e))?;
            if response.status() != StatusCode::UNAUTHORIZED {
                return check_status(url, response);
            }
            match self.auth.unauthorized(&response, fresh, sent) {
                Unauthorized::Retry => fresh = true,
                Unauthorized::Refused(reason) => {
                    return Err(RepositoryError::Auth {
                        url: url.clone(),
                        reason,
                    });
                }
            }
        }
        Err(RepositoryError::Auth {
            url: url.clone(),
            reason: "the server kept asking for authentication".into(),
        })
    }

    /// GETs a whole small file, refusing anything larger than `limit` bytes.
    pub async fn fetch_small(&self, rel: &str, limit: usize) -> Result<Bytes, RepositoryError> {
        let url = self.url_for(rel)?;
        let response = self.send(Method::GET, &url, HeaderMap::new(), None).await?;
        read_limited(&url, response, limit, &self.stall).await
    }

    /// Lists a directory (PROPFIND, depth 1). `rel_dir` ends with `/`.
    pub async fn list(&self, rel_dir: &str) -> Result<Vec<Entry>, RepositoryError> {
        self.list_dated(rel_dir).await.map(|(entries, _)| entries)
    }

    /// Like [`Repository::list`], with the server's `Date` header (for the clock check).
    pub async fn list_dated(
        &self,
        rel_dir: &str,
    ) -> Result<(Vec<Entry>, Option<std::time::SystemTime>), RepositoryError> {
        let url = self.url_for(rel_dir)?;
        let mut headers = HeaderMap::new();
        headers.insert("depth", HeaderValue::from_static("1"));
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        let method = Method::from_bytes(b"PROPFIND").unwrap_or(Method::GET);
        let response = self
            .send(method, &url, headers, Some(listing::PROPFIND_BODY))
            .await?;
        if response.status() != StatusCode::MULTI_STATUS {
            return Err(RepositoryError::Protocol {
                url,
                reason: format!(
                    "PROPFIND answered {} instead of 207; is WebDAV enabled?",
                    response.status()
                ),
            });
        }
        let date = response
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok());
        let body = read_limited(&url, response, listing::MAX_LISTING_BYTES, &self.stall).await?;
        let entries = listing::parse(&body, url.path())
            .map_err(|reason| RepositoryError::Protocol { url, reason })?;
        Ok((entries, date))
    }

    /// The size of a file (HEAD), to see that it is there without fetching it.
    pub async fn size_of(&self, rel: &str) -> Result<Option<u64>, RepositoryError> {
        let url = self.url_for(rel)?;
        let response = self
            .send(Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        Ok(response
            .headers()
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// GETs a file from byte `offset`. With `if_range`, a server whose copy changed sends the
    /// whole file instead (then `start` is 0).
    pub async fn download(
        &self,
        rel: &str,
        offset: u64,
        if_range: Option<&str>,
    ) -> Result<Download, RepositoryError> {
        let url = self.url_for(rel)?;
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-")).map_err(|e| {
                RepositoryError::Protocol {
                    url: url.clone(),
                    reason: e.to_string(),
                }
            })?;
            headers.insert(RANGE, range);
            if let Some(v) = if_range.and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(IF_RANGE, v);
            }
        }
        let response = self.send(Method::GET, &url, headers, None).await?;
        let validator = resume_validator(response.headers());
        let (start, total) = if response.status() == StatusCode::PARTIAL_CONTENT {
            let (start, total) = parse_content_range(response.headers()).ok_or_else(|| {
                RepositoryError::Protocol {
                    url: url.clone(),
                    reason: "206 without a valid Content-Range".into(),
                }
            })?;
            if start != offset {
                return Err(RepositoryError::Protocol {
                    url,
                    reason: format!("asked for bytes from {offset}, the server sent from {start}"),
                });
            }
            (start, total)
        } else {
            (0, response.content_length())
        };
        Ok(Download {
            response,
            start,
            total,
            validator,
            url,
        })
    }
}

/// An HTTP client with the agent's timeouts that follows redirects only within the origin of
/// `url` (at most 5), so no request ever goes to another server (or from https to http).
pub(crate) fn client_builder(
    connect: Duration,
    read: Duration,
    url: &Url,
) -> reqwest::ClientBuilder {
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

/// The clients of the configured repositories in the order they are tried, hidden ones only
/// with `hidden` (they are never used for downloads, but a configuration must build them).
pub fn build_all(
    settings: &crate::config::Settings,
    hidden: bool,
) -> Result<Vec<Arc<Repository>>, RepositoryError> {
    let timeouts = Timeouts {
        connect: settings.update.connect_timeout,
        read: settings.update.read_timeout,
        stall: stall::Stall {
            bytes_per_sec: settings.update.low_speed_limit,
            time: settings.update.low_speed_time,
        },
    };
    settings
        .repositories
        .iter()
        .filter(|r| hidden || !r.hidden())
        .map(|r| Repository::new(r.clone(), &timeouts))
        .collect()
}

/// Whether every repository client (hidden ones too) can be built from `settings`: a
/// [`crate::config::ConfigSource::verify`] check.
pub fn verify(settings: &crate::config::Settings) -> Result<(), String> {
    build_all(settings, true)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Reads the next piece of a download body.
pub async fn next_chunk(download: &mut Download) -> Result<Option<Bytes>, RepositoryError> {
    download
        .response
        .chunk()
        .await
        .map_err(|e| connection_error(&download.url, &e))
}

fn check_status(url: &Url, response: Response) -> Result<Response, RepositoryError> {
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

/// The validator for `If-Range`: a strong ETag only. A weak ETag never matches in `If-Range`
/// (RFC 9110 13.1.5), and a date only when the file is old enough, so either would turn many
/// resumes into restarts from zero. Without a validator the resume sends a plain `Range`; the
/// SHA-256 over the whole file catches a copy that changed, and the file restarts from zero.
fn resume_validator(headers: &HeaderMap) -> Option<String> {
    headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|etag| !etag.starts_with("W/"))
        .map(str::to_string)
}

/// `bytes START-END/TOTAL` -> (START, TOTAL).
fn parse_content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

async fn read_limited(
    url: &Url,
    mut response: Response,
    limit: usize,
    stall: &stall::Stall,
) -> Result<Bytes, RepositoryError> {
    let too_large = || RepositoryError::Protocol {
        url: url.clone(),
        reason: format!("larger than the limit of {limit} bytes"),
    };
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    let mut window = stall::SpeedWindow::new();
    loop {
        let asked = std::time::Instant::now();
        let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| connection_error(url, &e))?
        else {
            break;
        };
        if let Some(rate) = window.read(stall, asked.elapsed(), chunk.len()) {
            return Err(RepositoryError::Connection {
                url: url.clone(),
                kind: FailureKind::Stalled,
                message: format!(
                    "stalled: {rate:.0} bytes/s for {}, below low_speed_limit ({}/s)",
                    humantime::format_duration(stall.time),
                    crate::report::human_bytes(stall.bytes_per_sec)
                ),
            });
        }
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}

fn connection_error(url: &Url, e: &reqwest::Error) -> RepositoryError {
    let message = error_chain(e);
    let lower = message.to_ascii_lowercase();
    let kind =
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            FailureKind::Tls
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
        message,
    }
}

/// The error and its causes in one line, without the URL reqwest repeats at the top.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
    fn only_strong_etags_are_used_for_if_range() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LAST_MODIFIED,
            HeaderValue::from_static("Sun, 22 Nov 2026 10:00:00 GMT"),
        );
        h.insert(ETAG, HeaderValue::from_static("W/\"abc\""));
        assert_eq!(resume_validator(&h), None);
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(resume_validator(&h).as_deref(), Some("\"strong\""));
    }

    #[test]
    fn content_range_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(parse_content_range(&h), Some((100, Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(parse_content_range(&h), Some((5, None)));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("garbage"));
        assert_eq!(parse_content_range(&h), None);
    }

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
}
