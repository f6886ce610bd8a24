//! `check`: the device-side health check. One finding per line, `OK`, `WARN` or `FAIL`, each
//! with a reason and, when something is wrong, a hint: per repository name resolution, TCP
//! connection, TLS and authentication (one WebDAV listing of the root), the server's clock
//! (its `Date` header; more than 60 s apart is a failure: IGEL requires the clocks to agree),
//! the presence of every file of the current IDF, and the free space in the state directory.
//!
//! It only reads: no state changes, no downloads.

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{RepositorySettings, Settings};
use crate::report::human_bytes;
use crate::repository::{FailureKind, Repository, RepositoryError, Timeouts};
use crate::store::State;
use crate::x509::Validity;

const MAX_SKEW: Duration = Duration::from_secs(60);
/// A server certificate with this many days left or fewer is a warning.
const CERTIFICATE_WARN_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "OK")]
    Ok,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub level: Level,
    pub subject: String,
    pub check: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    fn new(
        level: Level,
        subject: &str,
        check: &'static str,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            level,
            subject: subject.to_string(),
            check,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Finding {
        self.hint = Some(hint.into());
        self
    }

    pub fn line(&self) -> String {
        let level = match self.level {
            Level::Ok => "OK  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        match &self.hint {
            Some(hint) => format!(
                "{level} {} {}: {} (hint: {hint})",
                self.subject, self.check, self.message
            ),
            None => format!("{level} {} {}: {}", self.subject, self.check, self.message),
        }
    }
}

/// Runs every check. `state` is the journal (for the current IDF), if there is one.
pub async fn run(settings: &Settings, state: Option<&State>) -> Vec<Finding> {
    let mut findings = Vec::new();
    if settings.repositories.is_empty() {
        findings.push(
            Finding::new(
                Level::Fail,
                "configuration",
                "repositories",
                "no [[repository]] is configured",
            )
            .hint("add a [[repository]] table with name and url"),
        );
    }
    let timeouts = Timeouts {
        connect: settings.update.connect_timeout.min(Duration::from_secs(10)),
        read: settings.update.read_timeout.min(Duration::from_secs(20)),
    };
    for repo in &settings.repositories {
        findings.extend(check_repository(repo, &timeouts, state).await);
    }
    findings.push(check_space(settings, state));
    findings
}

async fn check_repository(
    settings: &RepositorySettings,
    timeouts: &Timeouts,
    state: Option<&State>,
) -> Vec<Finding> {
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
    match tokio::net::lookup_host((host.as_str(), port)).await {
        Ok(mut addrs) => match addrs.next() {
            Some(addr) => {
                out.push(Finding::new(
                    Level::Ok,
                    &subject,
                    "dns",
                    format!("{host} is {}", addr.ip()),
                ));
                match tokio::time::timeout(timeouts.connect, tokio::net::TcpStream::connect(addr))
                    .await
                {
                    Ok(Ok(_)) => out.push(Finding::new(
                        Level::Ok,
                        &subject,
                        "connect",
                        format!("{addr} accepts connections"),
                    )),
                    Ok(Err(e)) => {
                        out.push(
                            Finding::new(Level::Fail, &subject, "connect", format!("{addr}: {e}"))
                                .hint("is the server running, and does a firewall allow the port?"),
                        );
                        return out;
                    }
                    Err(_) => {
                        out.push(
                            Finding::new(
                                Level::Fail,
                                &subject,
                                "connect",
                                format!("{addr}: no answer within {:?}", timeouts.connect),
                            )
                            .hint("a firewall may drop the connection"),
                        );
                        return out;
                    }
                }
                if settings.url.scheme() == "https" {
                    out.push(check_certificate(&subject, &host, addr, timeouts.connect).await);
                }
            }
            None => {
                out.push(
                    Finding::new(
                        Level::Fail,
                        &subject,
                        "dns",
                        format!("{host} has no address"),
                    )
                    .hint("check the URL and the DNS server"),
                );
                return out;
            }
        },
        Err(e) => {
            out.push(
                Finding::new(Level::Fail, &subject, "dns", format!("{host}: {e}"))
                    .hint("check the URL and the DNS server"),
            );
            return out;
        }
    }
    let repo = match Repository::new(settings.clone(), timeouts) {
        Ok(r) => r,
        Err(e) => {
            out.push(Finding::new(Level::Fail, &subject, "setup", e.to_string()));
            return out;
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
            out.push(check_clock(&subject, date));
        }
        Err(e) => {
            out.push(listing_failure(&subject, &e));
            return out;
        }
    }
    if !settings.hidden()
        && let Some(state) = state
    {
        out.extend(check_files(&subject, &repo, state).await);
    }
    out
}

/// Reads the server's certificate over a handshake of its own: the listing's client refuses an
/// untrusted or expired certificate before its dates could be read.
async fn check_certificate(
    subject: &str,
    host: &str,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> Finding {
    let read = crate::x509::peer_certificate(host, addr, timeout)
        .await
        .and_then(|der| crate::x509::validity(&der));
    match read {
        Ok(validity) => certificate_finding(subject, &validity, Utc::now()),
        // The listing reports the TLS failure itself, with a hint.
        Err(e) => Finding::new(
            Level::Warn,
            subject,
            "certificate",
            format!("cannot read the server's certificate: {e}"),
        ),
    }
}

/// How the server's certificate stands at `now`: expired or not yet valid fails, 30 days or
/// fewer left warns.
fn certificate_finding(subject: &str, validity: &Validity, now: DateTime<Utc>) -> Finding {
    let until = validity.not_after.date_naive();
    if now > validity.not_after {
        let ago = days((now - validity.not_after).num_days());
        return Finding::new(
            Level::Fail,
            subject,
            "certificate",
            format!("the server's certificate expired on {until} ({ago} ago)"),
        )
        .hint("renew the server's certificate");
    }
    if now < validity.not_before {
        let from = validity.not_before.date_naive();
        let ahead = days((validity.not_before - now).num_days());
        return Finding::new(
            Level::Fail,
            subject,
            "certificate",
            format!("the server's certificate is valid only from {from} (in {ahead})"),
        )
        .hint("check this device's clock (NTP); if it is right, the certificate was issued for a future date");
    }
    let left = (validity.not_after - now).num_days();
    if left <= CERTIFICATE_WARN_DAYS {
        Finding::new(
            Level::Warn,
            subject,
            "certificate",
            format!(
                "the server's certificate expires on {until}, in {}",
                days(left)
            ),
        )
        .hint("renew the server's certificate before it expires")
    } else {
        Finding::new(
            Level::Ok,
            subject,
            "certificate",
            format!(
                "the server's certificate is valid until {until} ({})",
                days(left)
            ),
        )
    }
}

fn days(n: i64) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

fn listing_failure(subject: &str, e: &RepositoryError) -> Finding {
    match e {
        RepositoryError::Connection {
            kind: FailureKind::Tls,
            ..
        } => {
            let lower = e.to_string().to_ascii_lowercase();
            let hint = if lower.contains("expired") {
                "the server's certificate has expired: renew it"
            } else if lower.contains("unknownissuer") || lower.contains("unknown issuer") {
                "set ca_certificate to the CA that signed the server's certificate"
            } else {
                "check the server's certificate and ca_certificate"
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

fn check_clock(subject: &str, date: Option<SystemTime>) -> Finding {
    let Some(date) = date else {
        return Finding::new(
            Level::Warn,
            subject,
            "clock",
            "the server sent no Date header",
        );
    };
    let now = SystemTime::now();
    let (skew, ahead) = match date.duration_since(now) {
        Ok(d) => (d, true),
        Err(e) => (e.duration(), false),
    };
    let text = format!(
        "the server's clock is {}s {} this device's",
        skew.as_secs(),
        if ahead { "ahead of" } else { "behind" }
    );
    if skew > MAX_SKEW {
        Finding::new(Level::Fail, subject, "clock", text)
            .hint("clocks must agree within 60 s: check NTP on the device and the server")
    } else {
        Finding::new(Level::Ok, subject, "clock", text)
    }
}

/// Every file of every app of the current IDF, by its resolved version.
async fn check_files(subject: &str, repo: &Repository, state: &State) -> Vec<Finding> {
    let mut out = Vec::new();
    for app in state.apps.iter().filter(|a| !a.version.is_empty()) {
        let path = format!("{}/{}/app.json", app.name, app.version);
        let manifest = match repo
            .fetch_small(&path, crate::manifest::MAX_MANIFEST_BYTES)
            .await
        {
            Ok(bytes) => match crate::manifest::Manifest::parse(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    out.push(Finding::new(
                        Level::Fail,
                        subject,
                        "files",
                        format!("{path}: {e}"),
                    ));
                    continue;
                }
            },
            Err(e) => {
                out.push(
                    Finding::new(Level::Fail, subject, "files", format!("{path}: {e}"))
                        .hint("the repository has not (yet) received this version"),
                );
                continue;
            }
        };
        let mut missing = Vec::new();
        for file in &manifest.files {
            let rel = format!("{}/{}/{}", app.name, app.version, file.path);
            match repo.size_of(&rel).await {
                Ok(Some(size)) if size == file.size => {}
                Ok(Some(size)) => missing.push(format!(
                    "{} has {size} bytes, app.json says {}",
                    file.path, file.size
                )),
                Ok(None) => {}
                Err(e) => missing.push(format!("{}: {e}", file.path)),
            }
        }
        if missing.is_empty() {
            out.push(Finding::new(
                Level::Ok,
                subject,
                "files",
                format!(
                    "{} {}: all {} files present",
                    app.name,
                    app.version,
                    manifest.files.len()
                ),
            ));
        } else {
            out.push(
                Finding::new(
                    Level::Fail,
                    subject,
                    "files",
                    format!("{} {}: {}", app.name, app.version, missing.join("; ")),
                )
                .hint(
                    "the repository's copy is incomplete; the device will use the next repository",
                ),
            );
        }
    }
    out
}

fn check_space(settings: &Settings, state: Option<&State>) -> Finding {
    let subject = "state directory";
    let dir = &settings.paths.state_dir;
    let probe = if dir.exists() {
        dir.as_path()
    } else {
        dir.parent().unwrap_or(dir.as_path())
    };
    let stat = match nix::sys::statvfs::statvfs(probe) {
        Ok(s) => s,
        Err(e) => {
            return Finding::new(
                Level::Fail,
                subject,
                "space",
                format!("{}: {e}", probe.display()),
            );
        }
    };
    let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
    let need: u64 = state.map_or(0, |s| {
        s.apps
            .iter()
            .map(|a| a.bytes_total.saturating_sub(a.bytes_done))
            .sum()
    });
    let text = format!(
        "{} free in {}, {} still to download",
        human_bytes(free),
        probe.display(),
        human_bytes(need)
    );
    if free < need {
        Finding::new(Level::Fail, subject, "space", text).hint("free space or use update --clean")
    } else {
        Finding::new(Level::Ok, subject, "space", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_more_than_a_minute_off_fails() {
        let now = SystemTime::now();
        assert_eq!(check_clock("r", Some(now)).level, Level::Ok);
        assert_eq!(
            check_clock("r", Some(now + Duration::from_secs(120))).level,
            Level::Fail
        );
        let behind = check_clock("r", Some(now - Duration::from_secs(3600)));
        assert_eq!(behind.level, Level::Fail);
        assert!(behind.message.contains("behind"), "{}", behind.message);
        assert_eq!(check_clock("r", None).level, Level::Warn);
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        use chrono::TimeZone;
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
    }

    fn certificate_at(now: DateTime<Utc>) -> Finding {
        let validity = Validity {
            not_before: at(2024, 1, 1),
            not_after: at(2025, 3, 31),
        };
        certificate_finding("r", &validity, now)
    }

    #[test]
    fn a_certificate_with_more_than_30_days_left_is_ok() {
        let f = certificate_at(at(2025, 2, 28));
        assert_eq!(f.level, Level::Ok);
        assert_eq!(
            f.message,
            "the server's certificate is valid until 2025-03-31 (31 days)"
        );
    }

    #[test]
    fn a_certificate_with_30_days_or_fewer_left_warns() {
        let f = certificate_at(at(2025, 3, 1));
        assert_eq!(f.level, Level::Warn);
        assert_eq!(
            f.message,
            "the server's certificate expires on 2025-03-31, in 30 days"
        );
        assert!(f.hint.unwrap().contains("renew"));
        let last_day = certificate_at(at(2025, 3, 30));
        assert_eq!(last_day.level, Level::Warn);
        assert!(
            last_day.message.ends_with("in 1 day"),
            "{}",
            last_day.message
        );
    }

    #[test]
    fn an_expired_certificate_fails_saying_when() {
        let f = certificate_at(at(2025, 4, 3));
        assert_eq!(f.level, Level::Fail);
        assert_eq!(
            f.message,
            "the server's certificate expired on 2025-03-31 (3 days ago)"
        );
        assert_eq!(f.hint.as_deref(), Some("renew the server's certificate"));
    }

    #[test]
    fn a_certificate_not_yet_valid_fails_pointing_at_the_clock() {
        let f = certificate_at(at(2023, 12, 25));
        assert_eq!(f.level, Level::Fail);
        assert!(
            f.message.contains("valid only from 2024-01-01"),
            "{}",
            f.message
        );
        assert!(f.hint.unwrap().contains("clock"));
    }

    #[test]
    fn a_finding_line_names_level_subject_check_and_hint() {
        let f = Finding::new(Level::Fail, "repository a", "tls", "expired").hint("renew it");
        assert_eq!(f.line(), "FAIL repository a tls: expired (hint: renew it)");
    }
}
