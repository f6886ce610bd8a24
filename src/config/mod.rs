//! Configuration in three steps, each its own file: `fragments` reads the main file and the
//! drop-ins as raw TOML, `inputs` merges them, `settings` validates the result into typed
//! [`Settings`]. Nothing downstream re-validates. `registry` translates IGEL registry keys.
//!
//! Secrets are read here and held in [`Secret`], which never prints its value.

pub mod bandwidth;
pub mod bounds;
pub mod fragments;
pub mod inputs;
pub mod overrides;
pub mod registry;
mod repository;
pub mod settings;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

pub use inputs::Origin;
pub use overrides::{Overrides, SetAside};
pub use settings::{RebootPolicy, RepositoryAuth, RepositorySettings, Settings, UpdateSettings};

pub const DEFAULT_CONFIG: &str = "/etc/igel-update-agent/agent.toml";

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
        key: String,
        reason: String,
    },
    /// What [`ConfigSource::verify`] found (a repository client that cannot be built).
    #[error("{0}")]
    Unusable(String),
}

/// `file:line: key `k`: reason`, or for a persisted setting `setting KEY: reason` (the
/// registry key already says which key).
fn describe_invalid(origin: &Origin, key: &str, reason: &str) -> String {
    match &origin.setting {
        Some(setting) if setting == key => format!("setting {setting}: {reason}"),
        Some(setting) => format!("setting {setting}: {key}: {reason}"),
        None => format!("{origin}: key `{key}`: {reason}"),
    }
}

impl ConfigError {
    /// The group of persisted keys (see [`Overrides::groups`]) the error is about, if any.
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

/// A password or key. Its value leaves this type only through [`Secret::expose`]; printing,
/// debugging or serializing it gives `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// A repository's password as this process has it.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Loaded(Secret),
    /// Not read: the command never contacts a repository ([`FileAccess::Skip`]).
    NotRead,
    /// It cannot be had in this process, and why, with the way to provide it.
    Unavailable(String),
}

impl Password {
    /// The secret, or what to tell the user when there is none.
    pub fn get(&self) -> Result<&Secret, String> {
        match self {
            Password::Loaded(secret) => Ok(secret),
            Password::NotRead => Err("the password was not read".into()),
            Password::Unavailable(reason) => Err(reason.clone()),
        }
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Password::Unavailable(reason) => write!(f, "Unavailable({reason})"),
            _ => f.write_str("***"),
        }
    }
}

impl serde::Serialize for Password {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Whether loading the configuration reads the files it names: password files, credentials,
/// CA certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAccess {
    /// For commands that never contact a repository (`status`, `repos`, `activate --boot`)
    /// or only forward to the daemon: they must work as any user, outside systemd.
    Skip,
    /// Read and check them. A `credential` outside systemd is [`Password::Unavailable`],
    /// not an error: only a transfer needs it.
    Read,
}

/// A check of valid settings that the configuration cannot make itself (see
/// [`ConfigSource::verify`]).
pub type Verify = fn(&Settings) -> Result<(), String>;

/// Where the configuration comes from: the file, and whether the user named it (then it must
/// exist) or it is the default path (then its absence means defaults).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub explicit: bool,
    pub state_dir: Option<PathBuf>,
    pub access: FileAccess,
    /// A check of a valid configuration beyond this module (with [`FileAccess::Read`]): the
    /// caller builds what the settings describe, for example every repository client, so
    /// that a persisted setting that validates but cannot be used is set aside too.
    pub verify: Option<Verify>,
}

impl ConfigSource {
    pub fn new(path: Option<&Path>, state_dir: Option<&Path>) -> ConfigSource {
        ConfigSource {
            path: path.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf),
            explicit: path.is_some(),
            state_dir: state_dir.map(Path::to_path_buf),
            access: FileAccess::Read,
            verify: None,
        }
    }

    /// The same source, checking every configuration with `verify` (see the field).
    pub fn verified_by(self, verify: Verify) -> ConfigSource {
        ConfigSource {
            verify: Some(verify),
            ..self
        }
    }

    /// The same source with another [`FileAccess`].
    pub fn with_access(&self, access: FileAccess) -> ConfigSource {
        ConfigSource {
            access,
            ..self.clone()
        }
    }

    /// The effective configuration every command uses: the main file, the drop-ins, then the
    /// settings the `settings` command persisted in the state directory. A persisted setting
    /// that no longer validates is set aside (listed in [`Settings::set_aside`]), never an
    /// error: only the files can make this fail.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let fragments = fragments::read_all(&self.path, self.explicit)?;
        let state_dir = settings::state_dir(&inputs::merge(&fragments), self.state_dir.as_deref());
        let (persisted, problem) = match Overrides::read(&state_dir) {
            Ok(o) => (o, None),
            Err(p) => (Overrides::default(), Some(p)),
        };
        let mut settings = self.resolve(&fragments, &persisted, &BTreeSet::new())?;
        match problem {
            Some(overrides::ReadProblem::Unreadable(warning)) => settings.warnings.push(warning),
            Some(overrides::ReadProblem::Invalid(aside)) => settings.set_aside.insert(0, aside),
            None => {}
        }
        Ok(settings)
    }

    /// The paths alone, for a command that must answer even when the configuration cannot be
    /// read whole (`status`): `[paths]` from the main file if it is TOML at all, else the
    /// defaults (and `--state-dir`).
    pub fn paths_only(&self) -> settings::PathSettings {
        let table: Option<toml::Table> = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| t.parse().ok());
        let paths = table
            .as_ref()
            .and_then(|t| t.get("paths"))
            .and_then(|p| p.as_table());
        let get = |key: &str| {
            paths
                .and_then(|p| p.get(key))
                .and_then(|v| v.as_str())
                .map(PathBuf::from)
        };
        let state_dir = self
            .state_dir
            .clone()
            .or_else(|| get("state_dir"))
            .unwrap_or_else(|| PathBuf::from(settings::DEFAULT_STATE_DIR));
        settings::PathSettings {
            apps_dir: get("apps_dir").unwrap_or_else(|| state_dir.join("apps")),
            control_socket: get("control_socket")
                .unwrap_or_else(|| PathBuf::from(settings::DEFAULT_CONTROL_SOCKET)),
            state_dir,
        }
    }

    /// Like [`ConfigSource::load`], with `persisted` instead of what the state directory
    /// holds. A problem with a group in `touched` is an error instead of being set aside (a
    /// `settings` command that would not apply is rejected).
    pub fn load_with(
        &self,
        persisted: &Overrides,
        touched: &BTreeSet<String>,
    ) -> Result<Settings, ConfigError> {
        let fragments = fragments::read_all(&self.path, self.explicit)?;
        self.resolve(&fragments, persisted, touched)
    }

    fn resolve(
        &self,
        fragments: &[fragments::Fragment],
        persisted: &Overrides,
        touched: &BTreeSet<String>,
    ) -> Result<Settings, ConfigError> {
        let groups = persisted.groups();
        let all: Vec<&String> = groups.keys().collect();
        // The usual case: everything applies.
        let first = self.validate_with(fragments, &groups, &all);
        let error = match first {
            Ok(mut settings) => {
                settings.overridden = persisted.keys().map(str::to_string).collect();
                return Ok(settings);
            }
            Err(e) => e,
        };
        if groups.is_empty() {
            return Err(error);
        }
        // Something does not: the files alone must validate (else it is their error), then
        // each group is added in turn and set aside when it breaks what came before.
        self.validate_with(fragments, &groups, &[])?;
        let (mut kept, mut set_aside) = (Vec::new(), Vec::new());
        for group in &all {
            let mut trial = kept.clone();
            trial.push(*group);
            if let Err(e) = self.validate_with(fragments, &groups, &trial) {
                if touched.contains(*group) {
                    return Err(e);
                }
                set_aside.push(SetAside {
                    name: (*group).clone(),
                    reason: e.to_string(),
                });
            } else {
                kept.push(*group);
            }
        }
        let mut settings = self.validate_with(fragments, &groups, &kept)?;
        settings.overridden = kept
            .iter()
            .flat_map(|g| groups[*g].iter().map(|(k, _)| k.to_string()))
            .collect();
        settings.set_aside = set_aside;
        Ok(settings)
    }

    fn validate_with(
        &self,
        fragments: &[fragments::Fragment],
        groups: &std::collections::BTreeMap<String, Vec<(&str, &overrides::Stored)>>,
        apply: &[&String],
    ) -> Result<Settings, ConfigError> {
        let mut merged = inputs::merge(fragments);
        let state_dir = settings::state_dir(&merged, self.state_dir.as_deref());
        for group in apply {
            overrides::apply(&groups[*group], &mut merged, &state_dir)?;
        }
        let settings = settings::validate(merged, self.state_dir.as_deref(), self.access)?;
        if let (Some(verify), FileAccess::Read) = (self.verify, self.access) {
            verify(&settings).map_err(ConfigError::Unusable)?;
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests;
