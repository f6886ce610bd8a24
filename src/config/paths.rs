//! `[paths]`: the state directory, the apps directory and the control socket. Nothing in it
//! can be invalid: every path is taken as written.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::inputs::Inputs;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/igel-update-agent";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/igel-update-agent/control.sock";

#[derive(Debug, Clone, Serialize)]
pub struct PathSettings {
    pub state_dir: PathBuf,
    pub apps_dir: PathBuf,
    pub control_socket: PathBuf,
}

/// The state directory: the `--state-dir` flag (or its variable), else `[paths] state_dir`,
/// else the default.
pub fn state_dir(inputs: &Inputs, state_dir_override: Option<&Path>) -> PathBuf {
    state_dir_override
        .map(Path::to_path_buf)
        .or_else(|| inputs.state_dir.as_ref().map(|s| s.value.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// `[paths]` of the merged inputs; `state_dir_override` is the `--state-dir` flag or its
/// variable.
pub(super) fn validate(inputs: &Inputs, state_dir_override: Option<&Path>) -> PathSettings {
    let state_dir = state_dir(inputs, state_dir_override);
    PathSettings {
        apps_dir: inputs
            .apps_dir
            .as_ref()
            .map_or_else(|| state_dir.join("apps"), |s| s.value.clone()),
        control_socket: inputs.control_socket.as_ref().map_or_else(
            || PathBuf::from(DEFAULT_CONTROL_SOCKET),
            |s| s.value.clone(),
        ),
        state_dir,
    }
}

/// `[paths]` from the main file `path` alone if it is TOML at all, else the defaults (and
/// `state_dir_override`): for a command that must answer even when the configuration cannot
/// be read whole.
pub(super) fn from_main_file(path: &Path, state_dir_override: Option<&Path>) -> PathSettings {
    let table: Option<toml::Table> = std::fs::read_to_string(path)
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
    let state_dir = state_dir_override
        .map(Path::to_path_buf)
        .or_else(|| get("state_dir"))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
    PathSettings {
        apps_dir: get("apps_dir").unwrap_or_else(|| state_dir.join("apps")),
        control_socket: get("control_socket")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
        state_dir,
    }
}
