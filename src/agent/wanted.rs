//! Which IDF a command applies when it names none: one rule for the daemon and for a command
//! running in its own process, and the rule `status` reports.
//!
//! 1. The IDF the command carries (`--idf FILE|URL`, `idf`/`idf_url` of a JSON command, the
//!    UMS's assignment). An Update with an IDF makes it the *assigned* IDF; a Delivery never
//!    changes the assignment.
//! 2. Else the IDF last assigned to this device, kept in the state directory.
//! 3. Else the `[[app]]` tables of the configuration.
//! 4. Else the versions already on the device (an Update after a Delivery then activates what
//!    was delivered instead of removing it).
//!
//! So `[[app]]` is the device's own list until an IDF is assigned; from then on the assigned
//! IDF applies and `status` says that `[[app]]` is not used. `update --apps-from-config`
//! assigns the `[[app]]` tables explicitly.

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::idf::{Idf, WantedApp};
use crate::store::{AppState, State};

/// Where the wanted apps come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The IDF last assigned (by an Update with an IDF, or the UMS).
    AssignedIdf,
    /// The `[[app]]` tables of the configuration.
    Configuration,
    /// The versions on the device.
    Device,
}

impl Source {
    pub fn describe(self) -> &'static str {
        match self {
            Source::AssignedIdf => "the IDF last assigned to this device",
            Source::Configuration => "the [[app]] tables of the configuration",
            Source::Device => "the versions on the device (no IDF assigned, no [[app]] tables)",
        }
    }
}

/// The IDF that applies without one in the command, and where it came from; `None` when there
/// is nothing at all. `assigned` is the stored IDF of `state` (read by the caller, which may
/// or may not hold the lock).
pub fn wanted(assigned: Option<Idf>, settings: &Settings, state: &State) -> Option<(Idf, Source)> {
    if let Some(idf) = assigned {
        return Some((idf, Source::AssignedIdf));
    }
    if !settings.apps.is_empty() {
        let idf = Idf {
            apps: settings.apps.clone(),
        };
        return Some((idf, Source::Configuration));
    }
    let on_device: Vec<WantedApp> = state
        .apps
        .iter()
        .filter(|a| !a.version.is_empty() && a.state != AppState::MarkedForRemoval)
        .map(|a| WantedApp {
            name: a.name.clone(),
            version: a.version.clone(),
            app_json_sha256: None,
        })
        .collect();
    (!on_device.is_empty()).then_some((Idf { apps: on_device }, Source::Device))
}

/// [`wanted`] for a journal read without the store's lock (`status`, `check`): the assigned
/// IDF is read from the state directory; one that cannot be read is skipped here (the journal
/// sets it aside, and `status` and `check` name it).
pub fn wanted_in(settings: &Settings, state: &State) -> Option<(Idf, Source)> {
    let assigned = state
        .idf
        .as_ref()
        .and_then(|r| crate::store::documents::read(&settings.paths.state_dir, r).ok());
    wanted(assigned, settings, state)
}

/// What to tell an administrator whose `[[app]]` tables are not what applies (an IDF is
/// assigned and lists other apps or versions).
pub fn unused_config_apps(settings: &Settings, source: Source, idf: &Idf) -> Option<String> {
    if source != Source::AssignedIdf || settings.apps.is_empty() || settings.apps == idf.apps {
        return None;
    }
    Some(
        "the [[app]] tables of the configuration are not used: an IDF is assigned, and it \
         applies until another one is (`igel-update-agent update --apps-from-config` assigns \
         the [[app]] tables)"
            .to_string(),
    )
}
