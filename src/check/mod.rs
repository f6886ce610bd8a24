//! `check`: the device-side health check. One finding per line, `OK`, `WARN` or `FAIL`, each
//! with a reason and, when something is wrong, a hint: per repository name resolution, TCP
//! connection, TLS and authentication (one WebDAV listing of the root), the server's clock
//! (its `Date` header; more than 60 s apart is a failure: IGEL requires the clocks to agree),
//! the presence of every file of the current IDF ([`repository`]); the UMS channel: identity,
//! reachability, mutual TLS, certificates' expiry, update mode, the daemon's last connection
//! and clock difference ([`ums`]); and the free space in the state directory.
//!
//! It only reads: no state changes, no downloads.

use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Settings;
use crate::report::human_bytes;
use crate::repository::Timeouts;
use crate::store::State;
use crate::tls::Validity;

pub mod files;
mod repository;
mod ums;

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
        // Messages quote what servers answered: never raw to a terminal or a monitor.
        Finding {
            level,
            subject: subject.to_string(),
            check,
            message: crate::report::clean(&message.into()).into_owned(),
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

/// Runs every check. `state` is the journal (for the current IDF), if there is one; `deep`
/// reads every wanted file to compare its SHA-256.
pub async fn run(settings: &Settings, state: Option<&State>, deep: bool) -> Vec<Finding> {
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
        stall: crate::repository::stall::Stall {
            bytes_per_sec: settings.update.low_speed_limit,
            time: settings.update.low_speed_time.min(Duration::from_secs(20)),
        },
    };
    findings.extend(set_aside(settings, state));
    let wanted = files::wanted(settings, state).map(|(idf, _)| idf);
    findings.extend(
        plain_http(settings, wanted.as_ref())
            .into_iter()
            .map(|(repo, warning)| {
                Finding::new(
                    Level::Warn,
                    &format!("repository {repo}"),
                    "transport",
                    warning,
                )
                .hint("use https://, or pin each app's app.json (app_json_sha256) in the IDF")
            }),
    );
    let mut answered = Vec::new();
    for repo in &settings.repositories {
        let (found, client) = repository::check(repo, &timeouts).await;
        findings.extend(found);
        answered.extend(client);
    }
    findings.extend(files::check(settings, state, &answered, deep).await);
    findings.extend(ums::check(settings).await);
    findings.push(check_space(settings, state));
    findings
}

/// Repositories reached over plain http while some wanted app is not pinned: anyone on the
/// path could change what such an app installs. (repository name, warning)
pub fn plain_http(settings: &Settings, wanted: Option<&crate::idf::Idf>) -> Vec<(String, String)> {
    let unpinned: Vec<&str> = match wanted {
        Some(idf) => idf
            .apps
            .iter()
            .filter(|a| a.app_json_sha256.is_none())
            .map(|a| a.name.as_str())
            .collect(),
        None => vec![],
    };
    if wanted.is_some() && unpinned.is_empty() {
        return Vec::new();
    }
    let apps = if unpinned.is_empty() {
        "apps without app_json_sha256 in their IDF".to_string()
    } else {
        format!("{} (no app_json_sha256 in the IDF)", unpinned.join(", "))
    };
    settings
        .repositories
        .iter()
        .filter(|r| r.url.scheme() == "http")
        .map(|r| {
            (
                r.name.clone(),
                format!(
                    "plain http: what it serves for {apps} has no integrity against anyone on \
                     the path"
                ),
            )
        })
        .collect()
}

/// Everything persisted that did not validate and is not applied: a failure each, with the
/// way out.
fn set_aside(settings: &Settings, state: Option<&State>) -> Vec<Finding> {
    let notices = state.map(|s| s.set_aside.as_slice()).unwrap_or_default();
    settings
        .set_aside
        .iter()
        .chain(notices)
        .map(|item| {
            Finding::new(
                Level::Fail,
                &item.name,
                "set aside",
                format!("not applied: {}", item.reason),
            )
            .hint(format!(
                "correct it and send it again, or run `igel-update-agent settings --reset {}` \
                 to drop it",
                item.name
            ))
        })
        .collect()
}

/// How a certificate (`whose`: "the server's certificate") stands at `now`: expired or not yet valid fails, 30 days or
/// fewer left warns.
pub(super) fn certificate_finding(
    subject: &str,
    whose: &str,
    validity: &Validity,
    now: DateTime<Utc>,
) -> Finding {
    let until = validity.not_after.date_naive();
    if now > validity.not_after {
        let ago = days((now - validity.not_after).num_days());
        return Finding::new(
            Level::Fail,
            subject,
            "certificate",
            format!("{whose} expired on {until} ({ago} ago)"),
        )
        .hint(format!("renew {whose}"));
    }
    if now < validity.not_before {
        let from = validity.not_before.date_naive();
        let ahead = days((validity.not_before - now).num_days());
        return Finding::new(
            Level::Fail,
            subject,
            "certificate",
            format!("{whose} is valid only from {from} (in {ahead})"),
        )
        .hint("check this device's clock (NTP); if it is right, the certificate was issued for a future date");
    }
    let left = (validity.not_after - now).num_days();
    if left <= CERTIFICATE_WARN_DAYS {
        Finding::new(
            Level::Warn,
            subject,
            "certificate",
            format!("{whose} expires on {until}, in {}", days(left)),
        )
        .hint(format!("renew {whose} before it expires"))
    } else {
        Finding::new(
            Level::Ok,
            subject,
            "certificate",
            format!("{whose} is valid until {until} ({})", days(left)),
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

pub(super) fn check_clock(subject: &str, date: Option<SystemTime>) -> Finding {
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

fn check_space(settings: &Settings, state: Option<&State>) -> Finding {
    let subject = "state directory";
    let dir = &settings.paths.state_dir;
    // Not created yet: the filesystem it will be created on (the nearest existing ancestor).
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
    let probe = absolute
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
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
        certificate_finding("r", "the server's certificate", &validity, now)
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
