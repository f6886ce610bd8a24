//! Downloading a file from a byte offset: `Range: bytes=N-`, `If-Range` with a strong ETag
//! from an earlier response, and the checks on the answer (a 206 must say where its bytes
//! start in `Content-Range`, and start where they were asked for; a 200 is the whole file from
//! zero). The body is handed on chunk by chunk.
//!
//! This module never writes, hashes or counts bytes against a size, and never retries: it
//! says where the body starts, and `transfer` decides what to do with it.

use bytes::Bytes;
use reqwest::header::{CONTENT_RANGE, ETAG, HeaderMap, HeaderValue, IF_RANGE, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use super::Repository;
use super::error::{RepositoryError, connection_error};

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

impl Repository {
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

/// The answer to a request for one byte range.
pub enum RangeAnswer {
    /// A `206` for exactly the bytes asked for, of a file of the expected size.
    Partial(Box<Download>),
    /// A `200`: the server ignores `Range` (or its copy changed since the `If-Range`
    /// validator). The response is dropped unread, which closes its connection.
    Whole,
}

impl Repository {
    /// GETs bytes `start..=end` of a file of `size` bytes with a plain single-range request.
    /// Strict: a `206` must say `bytes START-END/SIZE` for exactly this range; anything else
    /// is a protocol error.
    pub async fn download_range(
        &self,
        rel: &str,
        start: u64,
        end: u64,
        size: u64,
        if_range: Option<&str>,
    ) -> Result<RangeAnswer, RepositoryError> {
        let url = self.url_for(rel)?;
        let protocol = |reason: String| RepositoryError::Protocol {
            url: url.clone(),
            reason,
        };
        let mut headers = HeaderMap::new();
        let range = HeaderValue::from_str(&format!("bytes={start}-{end}"))
            .map_err(|e| protocol(e.to_string()))?;
        headers.insert(RANGE, range);
        if let Some(v) = if_range.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(IF_RANGE, v);
        }
        let response = self.send(Method::GET, &url, headers, None).await?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            drop(response);
            return Ok(RangeAnswer::Whole);
        }
        let validator = resume_validator(response.headers());
        let answered = exact_content_range(response.headers());
        if answered != Some((start, end, Some(size))) {
            let said = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nothing")
                .to_string();
            return Err(protocol(format!(
                "asked for bytes {start}-{end} of {size}, the server's Content-Range says {said:?}"
            )));
        }
        if let Some(length) = response.content_length()
            && length != end - start + 1
        {
            return Err(protocol(format!(
                "a 206 for {} bytes came with Content-Length {length}",
                end - start + 1
            )));
        }
        Ok(RangeAnswer::Partial(Box::new(Download {
            response,
            start,
            total: Some(size),
            validator,
            url,
        })))
    }
}

/// `bytes START-END/TOTAL` -> (START, END, TOTAL), `TOTAL` `None` for `*`.
fn exact_content_range(headers: &HeaderMap) -> Option<(u64, u64, Option<u64>)> {
    let value = headers.get(CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    Some((
        start.trim().parse().ok()?,
        end.trim().parse().ok()?,
        total.trim().parse().ok(),
    ))
}

/// Reads the next piece of a download body.
pub async fn next_chunk(download: &mut Download) -> Result<Option<Bytes>, RepositoryError> {
    download
        .response
        .chunk()
        .await
        .map_err(|e| connection_error(&download.url, &e))
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
    exact_content_range(headers).map(|(start, _, total)| (start, total))
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
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        assert_eq!(exact_content_range(&h), Some((100, 199, Some(1000))));
        h.insert(CONTENT_RANGE, HeaderValue::from_static("bytes 100-x/1000"));
        assert_eq!(exact_content_range(&h), None);
    }
}
