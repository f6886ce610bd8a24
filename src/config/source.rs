//! Where the configuration comes from and the effective configuration every command uses:
//! the files, then the persisted settings, each group of which is set aside when it no longer
//! validates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::fragments::{self, Fragment};
use super::inputs;
use super::overrides::{self, Overrides, SetAside};
use super::paths::{self, PathSettings};
use super::secret::FileAccess;
use super::settings::{self, Settings};

pub const DEFAULT_CONFIG: &str = "/etc/igel-update-agent/agent.toml";

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
        let state_dir = paths::state_dir(&inputs::merge(&fragments), self.state_dir.as_deref());
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
    pub fn paths_only(&self) -> PathSettings {
        paths::from_main_file(&self.path, self.state_dir.as_deref())
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
        fragments: &[Fragment],
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
        fragments: &[Fragment],
        groups: &BTreeMap<String, Vec<(&str, &overrides::Stored)>>,
        apply: &[&String],
    ) -> Result<Settings, ConfigError> {
        let mut merged = inputs::merge(fragments);
        let state_dir = paths::state_dir(&merged, self.state_dir.as_deref());
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
