//! `[ums]`: the WebSocket channel to the UMS: its URLs, certificates and heartbeat.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use url::Url;

use super::bounds::{self, duration, human_duration};
use super::error::{ConfigError, Key, Section, invalid};
use super::inputs::UmsInputs;
use super::origin::flag;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UmsSettings {
    pub urls: Vec<String>,
    pub ca_certificate: Option<PathBuf>,
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub device_id: Option<String>,
    pub allow_insecure: bool,
    /// WebSocket ping interval; a ping unanswered for as long ends the connection.
    #[serde(with = "human_duration")]
    pub heartbeat: Duration,
}

/// A field of `[ums]`.
fn key(field: &'static str) -> Key {
    Key::of(Section::Ums, field)
}

/// `[ums]`: every URL `wss://` (or `ws://` with `allow_insecure`), certificate and key
/// together. Whether the files can be read is the channel's business (it reads them at every
/// connection round, so that a renewed certificate needs no restart) and `check`'s.
pub(super) fn validate(u: &UmsInputs) -> Result<UmsSettings, ConfigError> {
    let allow_insecure = flag(&u.allow_insecure, false);
    let mut urls = Vec::new();
    for url in &u.urls {
        let parsed = Url::parse(&url.value)
            .map_err(|e| invalid(&url.origin, key("urls"), format!("{:?}: {e}", url.value)))?;
        match parsed.scheme() {
            "wss" => {}
            "ws" if allow_insecure => {}
            "ws" => {
                return Err(invalid(
                    &url.origin,
                    key("urls"),
                    format!(
                        "{:?}: ws:// is not encrypted; use wss:// (allow_insecure = true is for tests only)",
                        url.value
                    ),
                ));
            }
            other => {
                return Err(invalid(
                    &url.origin,
                    key("urls"),
                    format!(
                        "{:?}: scheme {other:?}; the UMS channel is wss://",
                        url.value
                    ),
                ));
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                &url.origin,
                key("urls"),
                "credentials do not belong in the URL; the device authenticates with client_certificate",
            ));
        }
        urls.push(parsed.to_string());
    }
    if u.client_certificate.is_some() != u.client_key.is_some() {
        let missing = if u.client_key.is_none() {
            key("client_key")
        } else {
            key("client_certificate")
        };
        return Err(invalid(
            &u.origin,
            missing,
            "client_certificate and client_key go together",
        ));
    }
    if !urls.is_empty() && u.ca_certificate.is_none() && !allow_insecure {
        return Err(invalid(
            &u.origin,
            key("ca_certificate"),
            "required: the UMS server's certificate must chain to it",
        ));
    }
    let heartbeat = duration(&u.heartbeat, key("heartbeat"), &bounds::HEARTBEAT)?;
    Ok(UmsSettings {
        urls,
        heartbeat,
        ca_certificate: u.ca_certificate.as_ref().map(|s| s.value.clone()),
        client_certificate: u.client_certificate.as_ref().map(|s| s.value.clone()),
        client_key: u.client_key.as_ref().map(|s| s.value.clone()),
        device_id: u
            .device_id
            .as_ref()
            .map(|s| s.value.clone())
            .filter(|s| !s.is_empty()),
        allow_insecure,
    })
}
