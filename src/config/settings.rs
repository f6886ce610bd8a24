//! Step three of configuration: validate the merged inputs into typed settings. Nothing
//! downstream re-validates: a `Settings` value is always complete and consistent.
//!
//! This module only orchestrates: each section validates itself in its own module (`paths`,
//! `update`, `repository`, `ums`, `apps`), and [`validate`] hands each its inputs and
//! assembles the result.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::ConfigError;
use super::inputs::Inputs;
use super::overrides::SetAside;
use super::secret::FileAccess;
use super::{apps, paths, repository, ums, update};
use crate::idf::WantedApp;

// The types of the sections' settings, as `Settings` holds them (each validated in its own
// module).
pub use super::paths::PathSettings;
pub use super::repository::RepositorySettings;
pub use super::ums::UmsSettings;
pub use super::update::UpdateSettings;

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub files: Vec<PathBuf>,
    pub paths: PathSettings,
    pub update: UpdateSettings,
    #[serde(rename = "repository")]
    pub repositories: Vec<RepositorySettings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ums: Option<UmsSettings>,
    #[serde(rename = "app")]
    pub apps: Vec<WantedApp>,
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// Persisted settings (the `settings` command) that no longer validate: not applied.
    #[serde(skip)]
    pub set_aside: Vec<SetAside>,
    /// The registry keys of the `settings` command in force.
    #[serde(skip)]
    pub overridden: Vec<String>,
}

impl Settings {
    /// The defaults with these paths, for a command that shows state without a readable
    /// configuration.
    pub fn defaults(paths: PathSettings) -> Settings {
        let state_dir = paths.state_dir.clone();
        let mut settings = validate(Inputs::default(), Some(&state_dir), FileAccess::Skip)
            // Nothing is given, so nothing can be invalid: the defaults always validate.
            .unwrap_or_else(|_| unreachable!("the defaults validate"));
        settings.paths = paths;
        settings
    }

    /// The UMS channel to use, when `[ums]` names at least one URL.
    pub fn ums(&self) -> Option<&UmsSettings> {
        self.ums.as_ref().filter(|u| !u.urls.is_empty())
    }
}

/// Validates merged inputs. `state_dir_override` is the `--state-dir` flag or its variable;
/// `access` says whether the files the configuration names (passwords, CAs) are read.
pub fn validate(
    inputs: Inputs,
    state_dir_override: Option<&Path>,
    access: FileAccess,
) -> Result<Settings, ConfigError> {
    let mut warnings = Vec::new();
    let paths = paths::validate(&inputs, state_dir_override);
    let update = update::validate(&inputs.update, &mut warnings)?;
    let repositories = repository::validate(&inputs.repositories, &mut warnings, access)?;
    let ums = inputs.ums.as_ref().map(ums::validate).transpose()?;
    let apps = apps::validate(&inputs.apps)?;
    Ok(Settings {
        files: inputs.files,
        paths,
        update,
        repositories,
        ums,
        apps,
        warnings,
        set_aside: Vec::new(),
        overridden: Vec::new(),
    })
}
