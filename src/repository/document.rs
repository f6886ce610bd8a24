//! An IDF fetched from a URL (`update --idf URL`, the command's `idf_url`): outside every
//! repository, so with rules of its own (DESIGN 7, issue 10). The URL must be `https://`
//! (plain `http://` only with `[ums] allow_insecure`, for tests); the server must chain to the
//! system's roots or to `[ums] ca_certificate`; a redirect is followed only on the same origin
//! (so never from https to http, never to another host); the document is bounded and must be a
//! valid IDF.

use std::path::Path;

use super::client::idf_client;
use super::error::error_chain;
use crate::config::Settings;
use crate::idf::{Idf, MAX_IDF_BYTES};

/// Whether `url` may be an IDF's address under `settings`.
pub fn check_idf_url(url: &str, settings: &Settings) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let insecure = settings.ums.as_ref().is_some_and(|u| u.allow_insecure);
    match parsed.scheme() {
        "https" => {}
        "http" if insecure => {}
        "http" => {
            return Err(format!(
                "{url}: an IDF decides what is installed and must come over https:// \
                 (http:// only with [ums] allow_insecure, for tests)"
            ));
        }
        other => return Err(format!("{url}: scheme {other:?}; an IDF URL is https://")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url}: credentials do not belong in the URL"));
    }
    Ok(parsed)
}

/// Fetches and parses the IDF at `url`.
pub async fn fetch_idf(url: &str, settings: &Settings) -> Result<Idf, String> {
    let parsed = check_idf_url(url, settings)?;
    let ca = settings
        .ums
        .as_ref()
        .and_then(|u| u.ca_certificate.as_deref());
    let bytes = fetch(&parsed, ca, settings).await?;
    Idf::parse(&bytes).map_err(|e| e.to_string())
}

async fn fetch(url: &url::Url, ca: Option<&Path>, settings: &Settings) -> Result<Vec<u8>, String> {
    let client = idf_client(
        settings.update.connect_timeout,
        settings.update.read_timeout,
        url,
        ca,
    )?;
    let mut response = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    if status.is_redirection() {
        let to = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?");
        return Err(format!(
            "redirect to {to} refused: an IDF is fetched only from the server of its URL"
        ));
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > MAX_IDF_BYTES {
            return Err(format!("larger than {MAX_IDF_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
