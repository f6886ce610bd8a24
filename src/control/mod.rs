//! The commands of DESIGN 7, as they arrive from the local control socket (and later the UMS
//! channel): one JSON object per line, `{"id": "...", "command": "...", ...}`, answered with
//! `{"id", "result": "accepted"|"rejected", "error"}`. This module parses and validates them;
//! `server` and `client` move them over the socket; the daemon runs them.
//!
//! Validation happens here, before anything is persisted: a rejected command changes nothing.

pub mod client;
pub mod server;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::idf::Idf;

/// Longest request line the daemon reads.
pub const MAX_LINE: usize = 1024 * 1024;
const MAX_ID: usize = crate::store::commands::MAX_ID;
/// `at` lies at most this far ahead.
pub const MAX_AT_DAYS: i64 = 366;
/// The longest a user may be given to answer: a day.
pub const MAX_INFORM_TIMEOUT_S: u64 = crate::store::commands::MAX_INFORM_TIMEOUT_S;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InformUser {
    /// Seconds the user has to answer; 0 = until answered.
    #[serde(default)]
    pub timeout_s: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateArgs {
    #[serde(default)]
    pub idf: Option<Idf>,
    #[serde(default)]
    pub idf_url: Option<String>,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub inform_user: Option<InformUser>,
    #[serde(default)]
    pub user_can_cancel: bool,
    #[serde(default)]
    pub clean: bool,
    #[serde(default)]
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignArgs {
    pub idf: Idf,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryArgs {
    #[serde(default)]
    pub idf: Option<Idf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsArgs {
    /// Registry keys and their values; an empty value removes the key.
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// Keys (or `update.external_binary_source<N>` for all of a repository, or the name of
    /// something set aside, or `*` for everything) to go back to the files.
    #[serde(default)]
    pub reset: Vec<String>,
}

impl SettingsArgs {
    /// The values as registry text: strings as they are, numbers and booleans written out.
    pub fn texts(&self) -> Result<BTreeMap<String, String>, String> {
        self.values
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    // Not the value itself: it may be a password.
                    other => {
                        let kind = match other {
                            Value::Array(_) => "a list",
                            Value::Object(_) => "an object",
                            _ => "null",
                        };
                        return Err(format!(
                            "settings: {key}: the value is {kind}, not a string, number or boolean"
                        ));
                    }
                };
                Ok((key.clone(), text))
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Assign(AssignArgs),
    Delivery(DeliveryArgs),
    Update(UpdateArgs),
    Settings(SettingsArgs),
    Status,
    Cancel(CancelArgs),
}

impl Command {
    /// Commands that change something; only privileged peers may send them.
    pub fn changes_state(&self) -> bool {
        !matches!(self, Command::Status)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: String,
    pub command: Command,
}

/// Why a line was rejected, with the id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub id: Option<String>,
    pub error: String,
}

fn reject(id: Option<&str>, error: impl Into<String>) -> Rejection {
    Rejection {
        id: id.map(str::to_string),
        error: error.into(),
    }
}

/// The arguments of command `name`; an error names the argument's path (`inform_user.timeout_s`).
fn args<T: serde::de::DeserializeOwned>(
    id: &str,
    name: &str,
    rest: Map<String, Value>,
) -> Result<T, Rejection> {
    serde_path_to_error::deserialize(Value::Object(rest)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            reject(Some(id), format!("{name}: {inner}"))
        } else {
            reject(Some(id), format!("{name}: `{path}`: {inner}"))
        }
    })
}

/// Parses one request line. `now` decides whether an `at` lies in the past.
pub fn parse(line: &[u8], now: DateTime<Utc>) -> Result<Request, Rejection> {
    if line.len() > MAX_LINE {
        return Err(reject(
            None,
            format!(
                "request of {} bytes is over the limit of {MAX_LINE}",
                line.len()
            ),
        ));
    }
    let raw: Value =
        serde_json::from_slice(line).map_err(|e| reject(None, format!("not JSON: {e}")))?;
    let Value::Object(mut object) = raw else {
        return Err(reject(None, "a request is a JSON object"));
    };
    let id = match object.remove("id") {
        Some(Value::String(id))
            if !id.is_empty() && id.len() <= MAX_ID && !id.contains(char::is_control) =>
        {
            id
        }
        Some(_) => {
            return Err(reject(
                None,
                format!("`id` must be a string of 1-{MAX_ID} printable characters"),
            ));
        }
        None => return Err(reject(None, "`id` is missing")),
    };
    let name = match object.remove("command") {
        Some(Value::String(name)) => name,
        _ => return Err(reject(Some(&id), "`command` is missing or not a string")),
    };
    let command = match name.as_str() {
        "assign" => Command::Assign(args(&id, &name, object)?),
        "delivery" => Command::Delivery(args(&id, &name, object)?),
        "update" => {
            if let Some(at) = object.get("at").and_then(Value::as_str)
                && let Err(e) = DateTime::parse_from_rfc3339(at)
            {
                return Err(reject(
                    Some(&id),
                    format!("update: `at` {at:?} is not an RFC 3339 time: {e}"),
                ));
            }
            let update: UpdateArgs = args(&id, &name, object)?;
            if update.idf.is_some() && update.idf_url.is_some() {
                return Err(reject(
                    Some(&id),
                    "update: give `idf` or `idf_url`, not both",
                ));
            }
            if let Some(url) = &update.idf_url
                && !(url.starts_with("https://") || url.starts_with("http://"))
            {
                return Err(reject(
                    Some(&id),
                    format!("update: idf_url {url:?} is not an http(s) URL"),
                ));
            }
            if let Some(url) = &update.idf_url
                && url.len() > crate::store::commands::MAX_URL
            {
                return Err(reject(
                    Some(&id),
                    format!(
                        "update: idf_url is {} characters; at most {}",
                        url.len(),
                        crate::store::commands::MAX_URL
                    ),
                ));
            }
            if let Some(at) = update.at {
                check_at(at, now).map_err(|e| reject(Some(&id), format!("update: {e}")))?;
            }
            if let Some(inform) = &update.inform_user
                && inform.timeout_s > MAX_INFORM_TIMEOUT_S
            {
                return Err(reject(
                    Some(&id),
                    format!(
                        "update: inform_user.timeout_s {} is over the bound of \
                         {MAX_INFORM_TIMEOUT_S} (a day; 0 = until answered)",
                        inform.timeout_s
                    ),
                ));
            }
            Command::Update(update)
        }
        "settings" => {
            let settings: SettingsArgs = args(&id, &name, object)?;
            settings.texts().map_err(|e| reject(Some(&id), e))?;
            Command::Settings(settings)
        }
        "status" => {
            if let Some(key) = object.keys().next() {
                return Err(reject(
                    Some(&id),
                    format!("status: unknown argument `{key}` (status takes none)"),
                ));
            }
            Command::Status
        }
        "cancel" => {
            let cancel: CancelArgs = args(&id, &name, object)?;
            if cancel.target.is_empty() || cancel.target.len() > MAX_ID {
                return Err(reject(
                    Some(&id),
                    format!("cancel: `target` must be 1-{MAX_ID} characters"),
                ));
            }
            Command::Cancel(cancel)
        }
        other => return Err(reject(Some(&id), format!("unknown command {other:?}"))),
    };
    let idf = match &command {
        Command::Assign(a) => Some(&a.idf),
        Command::Delivery(DeliveryArgs { idf }) | Command::Update(UpdateArgs { idf, .. }) => {
            idf.as_ref()
        }
        _ => None,
    };
    if let Some(idf) = idf {
        idf.validate()
            .map_err(|e| reject(Some(&id), format!("{name}: {e}")))?;
    }
    Ok(Request { id, command })
}

/// `at` may lie a minute in the past (clocks differ) and at most [`MAX_AT_DAYS`] ahead.
pub fn check_at(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    let earliest = now
        .checked_sub_signed(chrono::Duration::seconds(60))
        .unwrap_or(now);
    if at < earliest {
        return Err(format!("`at` {} is in the past", at.to_rfc3339()));
    }
    let latest = now.checked_add_signed(chrono::Duration::days(MAX_AT_DAYS));
    if latest.is_none_or(|latest| at > latest) {
        return Err(format!(
            "`at` {} is more than {MAX_AT_DAYS} days ahead (the bound of `at`)",
            at.to_rfc3339()
        ));
    }
    Ok(())
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub id: Option<String>,
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `status`: the `status --json` document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<crate::report::Status>>,
}

impl Reply {
    pub fn accepted(id: &str) -> Reply {
        Reply {
            id: Some(id.to_string()),
            result: "accepted".into(),
            error: None,
            status: None,
        }
    }

    pub fn rejected(rejection: Rejection) -> Reply {
        Reply {
            id: rejection.id,
            result: "rejected".into(),
            error: Some(rejection.error),
            status: None,
        }
    }

    pub fn is_accepted(&self) -> bool {
        self.result == "accepted"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        let at = (now() + chrono::Duration::days(30)).to_rfc3339();
        let line = format!(r#"{{"id":"1","command":"update","force":true,"at":"{at}"}}"#);
        let r = parse(line.as_bytes(), now()).unwrap();
        match r.command {
            Command::Update(u) => assert!(u.force && u.at.is_some()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(br#"{"id":"2","command":"status"}"#, now())
                .unwrap()
                .command,
            Command::Status
        );
    }

    #[test]
    fn bad_requests_are_rejected_with_a_reason() {
        for (line, needle) in [
            (&b"{not json"[..], "not JSON"),
            (br#"[1]"#, "JSON object"),
            (br#"{"command":"status"}"#, "`id` is missing"),
            (br#"{"id":"x","command":"reboot-now"}"#, "unknown command"),
            (
                br#"{"id":"x","command":"update","at":"yesterday"}"#,
                "update:",
            ),
            (
                br#"{"id":"x","command":"update","at":"2001-01-01T00:00:00Z"}"#,
                "in the past",
            ),
            (
                br#"{"id":"x","command":"update","bogus":1}"#,
                "unknown field",
            ),
            (
                br#"{"id":"x","command":"assign","idf":{"apps":[{"name":"../x","version":"1"}]}}"#,
                "apps[0].name",
            ),
            (br#"{"id":"x","command":"cancel"}"#, "target"),
            (
                br#"{"id":"x","command":"update","at":"2999-01-01T00:00:00Z"}"#,
                "366 days ahead",
            ),
            (
                br#"{"id":"x","command":"update","inform_user":{"timeout_s":18446744073709551615}}"#,
                "bound",
            ),
            (
                br#"{"id":"x","command":"settings","values":{"update.splay":[1]}}"#,
                "not a string",
            ),
        ] {
            let err = parse(line, now()).unwrap_err();
            assert!(
                err.error.contains(needle),
                "{}: {}",
                String::from_utf8_lossy(line),
                err.error
            );
        }
        let huge = vec![b' '; MAX_LINE + 1];
        assert!(
            parse(&huge, now())
                .unwrap_err()
                .error
                .contains("over the limit")
        );
    }
}
