//! The daemon's command queue as the journal keeps it: typed commands whose IDFs are stored
//! documents ([`super::documents`]), bounded in count and in bytes (DESIGN 7: beyond the
//! bound a command is rejected with `queue full`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::documents::IdfRef;

/// At most this many commands wait.
pub const MAX_QUEUED: usize = 100;
/// At most this many bytes of IDF documents are held for waiting commands.
pub const MAX_QUEUED_BYTES: u64 = 16 * 1024 * 1024;
/// Longest command id.
pub const MAX_ID: usize = 128;
/// Longest `idf_url`.
pub const MAX_URL: usize = 2048;
/// The longest a user may be given to answer (`inform_user.timeout_s`).
pub const MAX_INFORM_TIMEOUT_S: u64 = 24 * 3600;

/// An accepted command, persisted before its reply so that a crash cannot lose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedCommand {
    pub id: String,
    #[serde(flatten)]
    pub command: Queued,
    /// Not to run before this time (`at`, a splay, or a deferral's reminder).
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deferrals: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Queued {
    Assign {
        idf: IdfRef,
    },
    Delivery {
        #[serde(default)]
        idf: Option<IdfRef>,
    },
    Update(QueuedUpdate),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedUpdate {
    #[serde(default)]
    pub idf: Option<IdfRef>,
    #[serde(default)]
    pub idf_url: Option<String>,
    /// Seconds the user has to answer (`inform_user.timeout_s`); `None`: nobody is asked.
    #[serde(default)]
    pub inform_user: Option<u64>,
    #[serde(default)]
    pub user_can_cancel: bool,
    #[serde(default)]
    pub clean: bool,
    #[serde(default)]
    pub force: bool,
}

impl Queued {
    pub fn name(&self) -> &'static str {
        match self {
            Queued::Assign { .. } => "assign",
            Queued::Delivery { .. } => "delivery",
            Queued::Update(_) => "update",
        }
    }

    pub fn idf(&self) -> Option<&IdfRef> {
        match self {
            Queued::Assign { idf } => Some(idf),
            Queued::Delivery { idf } | Queued::Update(QueuedUpdate { idf, .. }) => idf.as_ref(),
        }
    }
}

impl QueuedCommand {
    /// Checks a command read back from the journal (a file anybody may have edited): every
    /// field within its bounds. Stored documents are checked by the caller.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), String> {
        if self.id.is_empty() || self.id.len() > MAX_ID || self.id.contains(char::is_control) {
            return Err(format!(
                "id {:?} is not 1-{MAX_ID} printable characters",
                self.id
            ));
        }
        if let Some(r) = self.command.idf() {
            r.clone().checked()?;
        }
        if let Queued::Update(u) = &self.command {
            if let Some(url) = &u.idf_url
                && (url.len() > MAX_URL
                    || !(url.starts_with("https://") || url.starts_with("http://")))
            {
                return Err(format!("idf_url {url:?} is not an http(s) URL"));
            }
            if u.inform_user.is_some_and(|t| t > MAX_INFORM_TIMEOUT_S) {
                return Err(format!(
                    "inform_user.timeout_s is over {MAX_INFORM_TIMEOUT_S}"
                ));
            }
        }
        // `at` is at most a year ahead and a reminder at most a week: anything later is not
        // something this agent wrote.
        if let Some(t) = self.not_before
            && now
                .checked_add_signed(chrono::Duration::days(400))
                .is_some_and(|limit| t > limit)
        {
            return Err(format!("not_before {} is too far ahead", t.to_rfc3339()));
        }
        if self.deferrals > 10_000 {
            return Err(format!("{} deferrals", self.deferrals));
        }
        Ok(())
    }
}

/// A queued command as format 1 of the journal kept it: the request as received.
#[derive(Debug, Deserialize)]
pub(super) struct LegacyCommand {
    pub id: String,
    pub request: LegacyRequest,
    #[serde(default)]
    pub not_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub deferrals: u32,
}

#[derive(Debug, Deserialize)]
pub(super) struct LegacyRequest {
    pub command: String,
    #[serde(default)]
    pub idf: Option<crate::idf::Idf>,
    #[serde(default)]
    pub idf_url: Option<String>,
    #[serde(default)]
    pub inform_user: Option<LegacyInform>,
    #[serde(default)]
    pub user_can_cancel: bool,
    #[serde(default)]
    pub clean: bool,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct LegacyInform {
    #[serde(default)]
    pub timeout_s: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(u: QueuedUpdate) -> QueuedCommand {
        QueuedCommand {
            id: "u1".into(),
            command: Queued::Update(u),
            not_before: None,
            deferrals: 0,
        }
    }

    #[test]
    fn a_queued_command_is_one_flat_object_named_by_its_command() {
        let c = update(QueuedUpdate {
            force: true,
            ..QueuedUpdate::default()
        });
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["command"], "update");
        assert_eq!(json["force"], true);
        let back: QueuedCommand = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn out_of_bounds_fields_fail_the_check() {
        let now = Utc::now();
        assert!(update(QueuedUpdate::default()).check(now).is_ok());
        let long_answer = update(QueuedUpdate {
            inform_user: Some(u64::MAX),
            ..QueuedUpdate::default()
        });
        assert!(long_answer.check(now).is_err());
        let ftp = update(QueuedUpdate {
            idf_url: Some("ftp://x/idf.json".into()),
            ..QueuedUpdate::default()
        });
        assert!(ftp.check(now).is_err());
        let mut far = update(QueuedUpdate::default());
        far.not_before = Some(DateTime::<Utc>::MAX_UTC);
        assert!(far.check(now).is_err());
    }
}
