//! What can be wrong with a configuration. An invalid value carries where it was written
//! ([`Origin`]) and which key it was given for ([`Key`]: section, table index, field) as
//! values; the message is made from them when printed.

use std::fmt;
use std::path::PathBuf;

use super::origin::Origin;
use super::registry;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}", describe_invalid(origin, key, reason))]
    Invalid {
        origin: Origin,
        key: Key,
        reason: String,
    },
    /// What [`super::ConfigSource::verify`] found (a repository client that cannot be built).
    #[error("{0}")]
    Unusable(String),
}

/// A section of the configuration: a table, or an array of tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Paths,
    Update,
    Repository,
    Ums,
    App,
}

impl Section {
    /// The name of the table, as the files write it.
    pub fn name(self) -> &'static str {
        match self {
            Section::Paths => "paths",
            Section::Update => "update",
            Section::Repository => "repository",
            Section::Ums => "ums",
            Section::App => "app",
        }
    }
}

/// The key an invalid value was given for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A field of a section; `index` says which `[[repository]]` or `[[app]]` table (in the
    /// order the files and the persisted settings give them). Printed `section.field`.
    Field {
        section: Section,
        index: Option<usize>,
        field: &'static str,
    },
    /// A persisted registry key that is wrong before it becomes any field (not a known key,
    /// not a value of its kind).
    Setting(String),
}

impl Key {
    /// A field of a table that occurs once: `[paths]`, `[update]`, `[ums]`.
    pub fn of(section: Section, field: &'static str) -> Key {
        Key::Field {
            section,
            index: None,
            field,
        }
    }

    /// A field of table `index` of an array of tables: `[[repository]]`, `[[app]]`.
    pub fn at(section: Section, index: usize, field: &'static str) -> Key {
        Key::Field {
            section,
            index: Some(index),
            field,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Field { section, field, .. } => write!(f, "{}.{field}", section.name()),
            Key::Setting(key) => f.write_str(key),
        }
    }
}

/// `file:line: key `k`: reason`, or for a persisted setting `setting KEY: reason` (the
/// registry key already says which key).
fn describe_invalid(origin: &Origin, key: &Key, reason: &str) -> String {
    let key = key.to_string();
    match &origin.setting {
        Some(setting) if *setting == key => format!("setting {setting}: {reason}"),
        Some(setting) => format!("setting {setting}: {key}: {reason}"),
        None => format!("{origin}: key `{key}`: {reason}"),
    }
}

impl ConfigError {
    /// The group of persisted keys (see [`super::Overrides::groups`]) the error is about, if
    /// any.
    pub fn setting(&self) -> Option<String> {
        match self {
            ConfigError::Invalid { origin, .. } => origin
                .setting
                .as_ref()
                .map(|key| registry::parse_key(key).map_or_else(|_| key.clone(), |t| t.group())),
            _ => None,
        }
    }
}

/// The error for an invalid value written at `origin` for `key`.
pub(super) fn invalid(origin: &Origin, key: Key, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.clone(),
        key,
        reason: reason.into(),
    }
}
