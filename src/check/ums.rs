//! The UMS channel: the device's identity (device id, client certificate and its expiry), per
//! URL the whole way in (DNS, TCP, mutual TLS, the server's certificate and its expiry, the
//! WebSocket upgrade: 503 is update mode), and what the daemon's channel last saw
//! (`<state>/ums.json`: connected or the last failure, and the clock difference at the last
//! `hello_ack`). The probe upgrades and closes without a `hello`, so the UMS does not count it
//! as a session of the device.

use std::time::Duration;

use chrono::Utc;

use super::{Finding, Level, MAX_SKEW, certificate_finding};
use crate::config::Settings;
use crate::config::settings::UmsSettings;
use crate::tls;
use crate::ums::ConnectionRecord;
use crate::ums::connect::{self, ConnectError};

const SUBJECT: &str = "ums";

pub(super) async fn check(settings: &Settings) -> Vec<Finding> {
    let Some(ums) = settings.ums() else {
        return vec![Finding::new(
            Level::Ok,
            SUBJECT,
            "configuration",
            "no [ums] urls: this device is not managed over the UMS channel",
        )];
    };
    let mut out = identity(ums);
    let config = if ums.urls.iter().any(|u| u.starts_with("wss:")) {
        match tls::ums_client_config(ums) {
            Ok(c) => Some(c),
            Err(e) => {
                out.push(
                    Finding::new(Level::Fail, SUBJECT, "tls setup", e)
                        .hint("fix the [ums] certificate files; the channel cannot connect"),
                );
                out.extend(daemon_view(settings));
                return out;
            }
        }
    } else {
        None
    };
    let timeout = settings.update.connect_timeout.min(Duration::from_secs(10));
    let mut per_url = Vec::new();
    for url in &ums.urls {
        per_url.push(probe(url, config.clone(), timeout).await);
    }
    let any_reachable = per_url.iter().any(|(ok, _)| *ok);
    for (_, findings) in per_url {
        for mut finding in findings {
            // With another server answering, one in update mode or down is what HA is for.
            if any_reachable && finding.level == Level::Fail && finding.check == "connect" {
                finding.level = Level::Warn;
            }
            out.push(finding);
        }
    }
    out.extend(daemon_view(settings));
    out
}

/// Device id and client certificate.
fn identity(ums: &UmsSettings) -> Vec<Finding> {
    let mut out = Vec::new();
    if ums.allow_insecure {
        out.push(
            Finding::new(
                Level::Warn,
                SUBJECT,
                "configuration",
                "allow_insecure = true: the server's identity is not checked",
            )
            .hint("for tests only: remove allow_insecure and use wss:// with ca_certificate"),
        );
    }
    match crate::ums::device_id(ums) {
        Ok(id) => out.push(Finding::new(
            Level::Ok,
            SUBJECT,
            "device id",
            format!("the device introduces itself as {id}"),
        )),
        Err(e) => out.push(
            Finding::new(Level::Fail, SUBJECT, "device id", e)
                .hint("set [ums] device_id or provide /etc/machine-id"),
        ),
    }
    let Some(path) = &ums.client_certificate else {
        out.push(
            Finding::new(
                Level::Warn,
                SUBJECT,
                "client certificate",
                "none configured: a UMS that requires mutual TLS refuses this device",
            )
            .hint("set [ums] client_certificate and client_key"),
        );
        return out;
    };
    let whose = "the device's client certificate";
    match tls::read_certificates("ums.client_certificate", path).and_then(|certs| {
        tls::validity(certs[0].as_ref())
            .map_err(|e| format!("ums.client_certificate {}: {e}", path.display()))
    }) {
        Ok(validity) => {
            let mut finding = certificate_finding(SUBJECT, whose, &validity, Utc::now());
            finding.check = "client certificate";
            out.push(finding);
        }
        Err(e) => out.push(Finding::new(Level::Fail, SUBJECT, "client certificate", e)),
    }
    out
}

/// One URL: whether the way in works, and the findings on the way.
async fn probe(
    url: &str,
    config: Option<std::sync::Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> (bool, Vec<Finding>) {
    let subject = format!("ums {url}");
    let mut out = Vec::new();
    match connect::connect(url, config, timeout).await {
        Ok(mut connection) => {
            if let Some(leaf) = connection.server_certificates.first() {
                out.push(server_certificate(&subject, leaf.as_ref()));
            }
            out.push(Finding::new(
                Level::Ok,
                &subject,
                "connect",
                if url.starts_with("wss:") {
                    "mutual TLS and the WebSocket upgrade succeed"
                } else {
                    "the WebSocket upgrade succeeds (ws://, not encrypted)"
                },
            ));
            let _ = tokio::time::timeout(Duration::from_secs(2), connection.ws.close(None)).await;
            (true, out)
        }
        Err(e) => {
            if matches!(e, ConnectError::Tls(_)) {
                // Untrusted or expired: the dates still tell the administrator something.
                if let Some(finding) = untrusted_certificate(&subject, url, timeout).await {
                    out.push(finding);
                }
            }
            let hint = match &e {
                ConnectError::Url(_) => "check [ums] urls",
                ConnectError::Dns { .. } => "check the URL and the DNS server",
                ConnectError::Connect { .. } => {
                    "is the UMS running, and does a firewall allow the port?"
                }
                ConnectError::Tls(_) => {
                    "set ums.ca_certificate to the CA that signed the UMS server's certificate"
                }
                ConnectError::ClientCertificate(_) => {
                    "the UMS must trust the CA of ums.client_certificate, and the certificate must be valid"
                }
                ConnectError::Status { status: 503 } => {
                    "the UMS is in update mode or overloaded; the device uses the next URL meanwhile"
                }
                ConnectError::Status { .. } => "check the path of the URL",
                ConnectError::Protocol(_) => "is this the UMS device connector endpoint?",
                ConnectError::Timeout(_) => "a firewall may drop the connection",
            };
            out.push(Finding::new(Level::Fail, &subject, "connect", e.to_string()).hint(hint));
            (false, out)
        }
    }
}

fn server_certificate(subject: &str, der: &[u8]) -> Finding {
    match tls::validity(der) {
        Ok(validity) => {
            let mut f =
                certificate_finding(subject, "the server's certificate", &validity, Utc::now());
            f.check = "certificate";
            f
        }
        Err(e) => Finding::new(
            Level::Warn,
            subject,
            "certificate",
            format!("cannot read the server's certificate: {e}"),
        ),
    }
}

async fn untrusted_certificate(subject: &str, url: &str, timeout: Duration) -> Option<Finding> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_string();
    let port = parsed.port_or_known_default()?;
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .ok()?
        .next()?;
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()?;
    let der = tls::peer_certificate(&host, tcp, timeout).await.ok()?;
    Some(server_certificate(subject, &der))
}

/// What the daemon's channel recorded.
fn daemon_view(settings: &Settings) -> Vec<Finding> {
    let Some(record) = ConnectionRecord::read(&settings.paths.state_dir) else {
        return vec![
            Finding::new(
                Level::Warn,
                SUBJECT,
                "daemon",
                "the daemon has not recorded a UMS connection yet",
            )
            .hint("is the service running? systemctl status igel-update-agent"),
        ];
    };
    let mut out = Vec::new();
    let text = format!("the daemon is {}", record.describe());
    if record.connected.is_some() {
        out.push(Finding::new(Level::Ok, SUBJECT, "daemon", text));
    } else if record.last_failure.is_some() {
        out.push(
            Finding::new(Level::Warn, SUBJECT, "daemon", text)
                .hint("see the findings above, and journalctl -u igel-update-agent"),
        );
    }
    if let Some(skew) = record.clock_skew_s {
        let text = format!(
            "at the last hello_ack the UMS clock was {}s {} this device's",
            skew.abs(),
            if skew >= 0 { "ahead of" } else { "behind" }
        );
        if skew.unsigned_abs() > MAX_SKEW.as_secs() {
            out.push(
                Finding::new(Level::Fail, SUBJECT, "clock", text)
                    .hint("clocks must agree within 60 s: check NTP on the device and the UMS"),
            );
        } else {
            out.push(Finding::new(Level::Ok, SUBJECT, "clock", text));
        }
    }
    out
}
