//! One configured WebDAV repository: its client and authentication, and the requests the agent
//! makes of it: fetch a small file (`app.json`), list a directory (PROPFIND depth 1), ask a
//! file's size (HEAD), and download a file from a byte offset (in [`download`]). The client is
//! built in [`client`]; failures are described and classified in [`error`].
//!
//! This module knows HTTP and WebDAV, not apps: it never decides which repository to try next
//! (that is `transfer`) and never writes files. Its errors say which URL failed and whether
//! trying again could help; they never contain credentials.

mod auth;
mod client;
pub mod document;
mod download;
mod error;
pub mod listing;
pub mod stall;

pub use document::fetch_idf;
pub use download::{Download, RangeAnswer, next_chunk};
pub use error::{FailureKind, RepositoryError, Retry, TlsFailure};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::config::RepositorySettings;
pub use auth::Scheme;
use auth::{Authenticator, Unauthorized};
use error::{check_status, connection_error};
pub use listing::Entry;

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

impl Repository {
    pub fn new(
        settings: RepositorySettings,
        timeouts: &Timeouts,
    ) -> Result<Arc<Repository>, RepositoryError> {
        let client = client::repository_client(
            timeouts.connect,
            timeouts.read,
            &settings.url,
            settings.ca_certificate.as_deref(),
        )
        .map_err(|reason| RepositoryError::Setup {
            name: settings.name.clone(),
            reason,
        })?;
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
            return Err(RepositoryError::stalled(url.clone(), rate, stall));
        }
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.into())
}
