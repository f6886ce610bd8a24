//! What the UMS channel tests (`ums::*`) share: the `[ums]` table a device under test
//! is given, written the same way for every test so that a test states only what it changes
//! (another client certificate, none, another device id, a heartbeat, `allow_insecure`).
//!
//! The table is text appended to the `[update]` lines of `Repo::daemon_device`; it
//! starts with its own header, so whatever follows it in the file is unaffected.

use std::path::Path;

use crate::support::device::path_str;
use crate::support::{CertKey, UmsPki};

/// An `[ums]` table: `urls`, the CA that server certificates must chain to, the client
/// certificate the device presents, its `device_id`, and any further lines.
pub struct UmsConf<'a> {
    urls: Vec<String>,
    ca: Option<&'a Path>,
    client: Option<&'a CertKey>,
    device_id: &'a str,
    extra: String,
}

impl<'a> UmsConf<'a> {
    /// What a production device has: `urls`, trusting `pki.ca`, presenting `pki.device`, as
    /// `device-1`.
    pub fn new(pki: &'a UmsPki, urls: &[String]) -> UmsConf<'a> {
        UmsConf {
            ca: Some(pki.ca.cert_path()),
            client: Some(&pki.device),
            ..UmsConf::without_certificates(urls)
        }
    }

    /// `urls` as `device-1` with neither `ca_certificate` nor a client certificate.
    pub fn without_certificates(urls: &[String]) -> UmsConf<'a> {
        UmsConf {
            urls: urls.to_vec(),
            ca: None,
            client: None,
            device_id: "device-1",
            extra: String::new(),
        }
    }

    /// `client_certificate` and `client_key` from `client`, or none.
    pub fn client(mut self, client: Option<&'a CertKey>) -> UmsConf<'a> {
        self.client = client;
        self
    }

    pub fn device_id(mut self, device_id: &'a str) -> UmsConf<'a> {
        self.device_id = device_id;
        self
    }

    /// More `[ums]` lines (each ending in a newline), e.g. `heartbeat = "1s"\n`.
    pub fn extra(mut self, lines: &str) -> UmsConf<'a> {
        self.extra += lines;
        self
    }

    /// The table as TOML, starting with a blank line and `[ums]`.
    pub fn toml(&self) -> String {
        let mut text = format!("\n[ums]\nurls = {:?}\n", self.urls);
        if let Some(ca) = self.ca {
            text += &format!("ca_certificate = {:?}\n", path_str(ca));
        }
        if let Some(client) = self.client {
            text += &format!(
                "client_certificate = {:?}\nclient_key = {:?}\n",
                path_str(&client.cert_path),
                path_str(&client.key_path)
            );
        }
        text += &format!("device_id = {:?}\n{}", self.device_id, self.extra);
        text
    }
}
