//! The records of `state.json` (DESIGN 3, 6): [`State`], one [`AppRecord`] per app with its
//! [`AppState`] and any [`Activation`] in progress, and the [`ResumeHint`] of each partial
//! file. Only data and what follows from the data alone: reading and writing the journal is
//! [`super::journal`]'s and [`super::Store`]'s, the transitions between states are the
//! agent's (`agent::lifecycle`). Never touches the disk, never the network.
//!
//! [`ResumeHint`] lives here, not in `transfer`: it is a persisted record (a field of
//! `state.json`, read back after a restart), so its format is the store's to keep stable. The
//! transfer neither reads nor writes it; it reports what it learns of a source through its
//! `Observer`, and the agent turns that into a hint here, and a hint back into the `If-Range`
//! validator the next transfer may send.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::IdfRef;
use super::commands::QueuedCommand;
use crate::config::SetAside;

/// 2: IDFs as stored documents, typed commands, notices of what was set aside.
pub(super) const STATE_FORMAT: u32 = 2;

/// IGEL's "Installed Apps" words for a version's state (DESIGN 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppState {
    Assigned,
    Downloading,
    Downloaded,
    MarkedForInstallation,
    Installed,
    DownloadFailed,
    ActivationFailed,
    MarkedForRemoval,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Assigned => "assigned",
            AppState::Downloading => "downloading",
            AppState::Downloaded => "downloaded",
            AppState::MarkedForInstallation => "marked-for-installation",
            AppState::Installed => "installed",
            AppState::DownloadFailed => "download-failed",
            AppState::ActivationFailed => "activation-failed",
            AppState::MarkedForRemoval => "marked-for-removal",
        }
    }
}

/// Where the part file of one file of a version came from: the repository that wrote its
/// bytes and that repository's validator, so that a later run resumes it with `If-Range`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeHint {
    pub repository: String,
    /// Strong ETag of that repository's copy, for `If-Range`.
    #[serde(alias = "etag")]
    pub validator: Option<String>,
}

/// What the agent knows about one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecord {
    pub name: String,
    /// The version the IDF wants (the one being downloaded, staged or active).
    pub version: String,
    pub state: AppState,
    #[serde(default)]
    pub active_version: Option<String>,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: u64,
    /// Of `bytes_done`, how many a delta update copied from the device instead of downloading.
    #[serde(default)]
    pub bytes_reused: u64,
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    /// Per file: where its part file came from, to resume with `If-Range`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, ResumeHint>,
    /// The version active before the last activation, kept for rollback.
    #[serde(default)]
    pub previous_version: Option<String>,
    /// Written before `current` is swapped: the version to go back to if the activation
    /// fails, also after a crash in the middle of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activating: Option<Activation>,
    /// SHA-256 of the `app.json` the last plan wanted for `version`: only a staged copy with
    /// this digest may replace the active content of that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_app_json: Option<String>,
}

/// An activation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub previous: Option<String>,
    /// Set when the activation swaps new content in under the active version's own name: the
    /// SHA-256 of the new `app.json`, to tell after a crash whether the swap happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacing: Option<String>,
}

impl AppRecord {
    pub fn new(name: &str, version: &str) -> AppRecord {
        AppRecord {
            name: name.to_string(),
            version: version.to_string(),
            state: AppState::Assigned,
            active_version: None,
            bytes_done: 0,
            bytes_total: 0,
            bytes_reused: 0,
            repository: None,
            error: None,
            files: BTreeMap::new(),
            previous_version: None,
            activating: None,
            wanted_app_json: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// The IDF last assigned (a stored document).
    #[serde(default)]
    pub idf: Option<IdfRef>,
    #[serde(default)]
    pub idf_sha256: Option<String>,
    #[serde(default)]
    pub applied_idf_sha256: Option<String>,
    #[serde(default)]
    pub update_status: Option<String>,
    #[serde(default)]
    pub apps: Vec<AppRecord>,
    /// Accepted commands not yet finished, in the order they arrived (the daemon's queue).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<QueuedCommand>,
    /// Ids of the last finished commands, so a command sent twice runs once.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub finished_commands: VecDeque<String>,
    /// What was read back but did not validate, and was set aside (shown by `status` and
    /// `check` until `settings --reset NAME` forgets it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAside>,
}

impl Default for State {
    fn default() -> Self {
        State {
            format: STATE_FORMAT,
            idf: None,
            idf_sha256: None,
            applied_idf_sha256: None,
            update_status: None,
            apps: Vec::new(),
            commands: Vec::new(),
            finished_commands: VecDeque::new(),
            set_aside: Vec::new(),
        }
    }
}

impl State {
    pub fn app_mut(&mut self, name: &str) -> Option<&mut AppRecord> {
        self.apps.iter_mut().find(|a| a.name == name)
    }

    /// What the next start records of a command that no process runs any more (see
    /// `Agent::record_interruption`): apps still `downloading` are `download-failed` with
    /// `reason`, and a status that says a command is in progress is its failure. `status`
    /// shows a journal that no process holds this way, so nothing reads as running that is not.
    pub fn into_interrupted(mut self, reason: &str) -> State {
        for app in &mut self.apps {
            if app.state == AppState::Downloading {
                app.state = AppState::DownloadFailed;
                app.error = Some(reason.to_string());
            }
        }
        if let Some(failed) = self.interrupted_status(reason) {
            self.update_status = Some(failed.to_string());
        }
        self
    }

    /// The status a command that no process runs any more ends with: its failure with
    /// `reason`, when the status says one is in progress; `None` otherwise. One rule for
    /// [`State::into_interrupted`] and `Agent::record_interruption`.
    pub fn interrupted_status(&self, reason: &str) -> Option<crate::report::StatusText> {
        let running = self
            .update_status
            .as_deref()
            .and_then(crate::report::StatusText::parse)
            .and_then(|s| s.running())?;
        Some(crate::report::StatusText::failed(running, reason))
    }
}
