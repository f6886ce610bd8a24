//! Configuration in three steps, each its own file: `fragments` reads the main file and the
//! drop-ins as raw TOML, `inputs` merges them, `settings` validates the result into typed
//! [`Settings`]. Nothing downstream re-validates. `registry` translates IGEL registry keys.
//!
//! Secrets are read here and held in [`Secret`], which never prints its value.

pub mod bandwidth;
pub mod fragments;
pub mod inputs;
pub mod registry;
mod repository;
pub mod settings;

use std::fmt;
use std::path::{Path, PathBuf};

pub use inputs::Origin;
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
    #[error("{origin}: key `{key}`: {reason}")]
    Invalid {
        origin: Origin,
        key: String,
        reason: String,
    },
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

/// Where the configuration comes from: the file, and whether the user named it (then it must
/// exist) or it is the default path (then its absence means defaults).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub path: PathBuf,
    pub explicit: bool,
    pub state_dir: Option<PathBuf>,
    /// Read passwords (`false` for commands that never contact a repository).
    pub secrets: bool,
}

impl ConfigSource {
    pub fn new(path: Option<&Path>, state_dir: Option<&Path>) -> ConfigSource {
        ConfigSource {
            path: path.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf),
            explicit: path.is_some(),
            state_dir: state_dir.map(Path::to_path_buf),
            secrets: true,
        }
    }

    pub fn load(&self) -> Result<Settings, ConfigError> {
        self.load_with_overrides(&std::collections::BTreeMap::new())
    }

    /// Loads the files, then the IGEL registry keys set by the `settings` command on top.
    pub fn load_with_overrides(
        &self,
        overrides: &std::collections::BTreeMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut fragments = fragments::read_all(&self.path, self.explicit)?;
        if !overrides.is_empty() {
            let origin = Path::new("settings command");
            let lines: String = overrides
                .iter()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect();
            let toml = registry::to_toml(&lines, "/etc/igel-update-agent").map_err(|e| {
                ConfigError::Parse {
                    path: origin.to_path_buf(),
                    message: e.to_string(),
                }
            })?;
            fragments.push(fragments::Fragment::parse(origin, toml)?);
        }
        settings::validate(
            inputs::merge(&fragments),
            self.state_dir.as_deref(),
            self.secrets,
        )
    }
}

#[cfg(test)]
mod tests;
