//! The IDF (image definition): which apps, in which versions, the device must have.
//!
//! An IDF arrives as JSON (from a file, a URL or the UMS) or from the `[[app]]` tables of the
//! configuration. This module parses and validates it and computes its digest over the
//! canonical form (apps sorted by name, versions resolved). It never talks to a repository:
//! resolving `latest` is the agent's job.

use serde::{Deserialize, Serialize};

use crate::manifest::{check_app_name, check_sha256, check_version};

/// The version word that asks for the newest version a repository lists.
pub const LATEST: &str = "latest";
pub const MAX_IDF_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum IdfError {
    #[error("IDF is {0} bytes; the limit is {MAX_IDF_BYTES}")]
    TooLarge(usize),
    #[error("IDF is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Field `field` of app `index` (`apps[index].field`).
    #[error("IDF field `apps[{index}].{field}`: {reason}")]
    Field {
        index: usize,
        field: &'static str,
        reason: String,
    },
}

/// One wanted app. `version` may be [`LATEST`] until resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WantedApp {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_json_sha256: Option<String>,
}

impl WantedApp {
    pub fn wants_latest(&self) -> bool {
        self.version == LATEST
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Idf {
    pub apps: Vec<WantedApp>,
}

impl Idf {
    pub fn parse(bytes: &[u8]) -> Result<Idf, IdfError> {
        if bytes.len() > MAX_IDF_BYTES {
            return Err(IdfError::TooLarge(bytes.len()));
        }
        let idf: Idf = serde_json::from_slice(bytes)?;
        idf.validate()?;
        Ok(idf)
    }

    pub fn validate(&self) -> Result<(), IdfError> {
        let field = |index: usize, field: &'static str, reason: String| IdfError::Field {
            index,
            field,
            reason,
        };
        let mut names = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            check_app_name(&app.name).map_err(|r| field(i, "name", r))?;
            if !app.wants_latest() {
                check_version(&app.version).map_err(|r| field(i, "version", r))?;
            }
            if let Some(digest) = &app.app_json_sha256 {
                check_sha256(digest).map_err(|r| field(i, "app_json_sha256", r))?;
                if app.wants_latest() {
                    return Err(field(
                        i,
                        "app_json_sha256",
                        "a pinned app.json needs a fixed version, not `latest`".into(),
                    ));
                }
            }
            if !names.insert(app.name.as_str()) {
                return Err(field(
                    i,
                    "name",
                    format!("app {:?} is listed twice", app.name),
                ));
            }
        }
        Ok(())
    }

    /// SHA-256 of the canonical form: apps sorted by name, compact JSON. Call it on a resolved
    /// IDF; `latest` would make two different resolutions look equal.
    pub fn digest(&self) -> String {
        let mut apps = self.apps.clone();
        apps.sort_by(|a, b| a.name.cmp(&b.name));
        for app in &mut apps {
            if let Some(d) = &mut app.app_json_sha256 {
                d.make_ascii_lowercase();
            }
        }
        let canonical = serde_json::to_vec(&Idf { apps }).unwrap_or_default();
        crate::manifest::sha256_hex(&canonical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_ignores_order_of_apps() {
        let a = Idf::parse(br#"{"apps":[{"name":"a","version":"1"},{"name":"b","version":"2"}]}"#)
            .unwrap();
        let b = Idf::parse(br#"{"apps":[{"name":"b","version":"2"},{"name":"a","version":"1"}]}"#)
            .unwrap();
        assert_eq!(a.digest(), b.digest());
        let c = Idf::parse(br#"{"apps":[{"name":"a","version":"1"}]}"#).unwrap();
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn bad_fields_are_named() {
        let err = Idf::parse(br#"{"apps":[{"name":"../x","version":"1"}]}"#).unwrap_err();
        assert!(err.to_string().contains("apps[0].name"), "{err}");
        let err = Idf::parse(br#"{"apps":[{"name":"x","version":"1","app_json_sha256":"zz"}]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("apps[0].app_json_sha256"), "{err}");
        let err =
            Idf::parse(br#"{"apps":[{"name":"x","version":"1"},{"name":"x","version":"2"}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        assert!(Idf::parse(br#"{"apps":[],"extra":1}"#).is_err());
    }

    #[test]
    fn latest_is_accepted_without_a_pin() {
        let idf = Idf::parse(br#"{"apps":[{"name":"x","version":"latest"}]}"#).unwrap();
        assert!(idf.apps[0].wants_latest());
    }
}
