//! Everything the agent keeps on disk (DESIGN 3): the state journal `state.json` (with the
//! daemon's command queue, its IDFs stored once under `idf/`), the single-instance lock,
//! partial downloads under `staging/`, and complete versions under `apps/<app>/<version>/`.
//!
//! Every change is crash-safe: files are written to a temporary name, fsynced, renamed, and
//! the directory is fsynced. A version appears under `apps/` in one rename, complete and
//! verified, or not at all. `store` never touches the network.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::config::settings::PathSettings;
use crate::idf::Idf;
use crate::manifest::Manifest;
use crate::transfer::{ResumeHint, part_path};

mod apps;
pub mod commands;
pub mod documents;
mod events;
pub mod journal;
mod recover;
mod replace;

pub use commands::{MAX_QUEUED, MAX_QUEUED_BYTES, Queued, QueuedCommand, QueuedUpdate};
pub use documents::IdfRef;
pub use events::{EVENT_QUEUE_CAPACITY, EVENTS_FILE, Pending, StatusEvent};
pub use journal::{MAX_FINISHED, MAX_NOTICES, read_state};

use crate::config::SetAside;

/// 2: IDFs as stored documents, typed commands, notices of what was set aside.
const STATE_FORMAT: u32 = 2;
/// The largest journal read (format 1 could hold megabytes of inline IDFs).
pub const MAX_JOURNAL: u64 = 256 * 1024 * 1024;
/// Progress is written to `state.json` at most this often (state changes: always).
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} holds {}: {}", holder_text(holder), path.display(), locked_hint(holder))]
    Locked {
        path: PathBuf,
        /// The pid and command the holder wrote into the lock file, when it did.
        holder: Option<(u32, String)>,
    },
    #[error(
        "{}: not a valid state journal: {reason} (the next update or `activate --boot` keeps it \
         as state.json.corrupt and rebuilds the state from the apps directory)",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

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
}

/// Writes a file crash-safely: temporary name, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::durable::write_atomic(path, bytes).map_err(StoreError::from)
}

pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    crate::durable::sync_dir(dir).map_err(StoreError::from)
}

impl From<crate::durable::FileError> for StoreError {
    fn from(e: crate::durable::FileError) -> StoreError {
        StoreError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// The state directory, held by this process alone while the value lives.
pub struct Store {
    state_dir: PathBuf,
    apps_dir: PathBuf,
    state: Mutex<State>,
    last_progress_save: Mutex<Instant>,
    /// Status events for the UMS; `None` until [`Store::enable_events`].
    events: Mutex<Option<events::EventQueue>>,
    events_added: tokio::sync::Notify,
    _lock: File,
}

fn holder_text(holder: &Option<(u32, String)>) -> String {
    match holder {
        Some((pid, command)) if command == "run" => format!("the daemon (pid {pid})"),
        Some((pid, command)) => format!("`igel-update-agent {command}` (pid {pid})"),
        None => "another igel-update-agent".to_string(),
    }
}

fn locked_hint(holder: &Option<(u32, String)>) -> &'static str {
    match holder {
        Some((_, command)) if command == "run" => {
            "commands go to it through its control socket; if this one did not, the daemon \
             listens on another control_socket (`systemctl status igel-update-agent` shows it)"
        }
        Some(_) => "wait for it to end, or stop it (Ctrl-C keeps its partial downloads)",
        None => "is the service running? try `systemctl status igel-update-agent`",
    }
}

/// The subcommand of this process, for the lock file (only the word: the arguments may hold
/// secrets, such as `settings KEY=VALUE`).
fn own_command() -> String {
    const WITH_VALUE: [&str; 3] = ["--config", "--state-dir", "--log-level"];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            return if arg.chars().all(|c| c.is_ascii_lowercase() || c == '-') && arg.len() <= 16 {
                arg
            } else {
                "?".to_string()
            };
        }
    }
    "?".to_string()
}

/// What the holder of a lock wrote into it: `<pid> <command>`.
fn read_holder(lock_path: &Path) -> Option<(u32, String)> {
    let text = crate::durable::read_regular(lock_path, 256).ok()?;
    let text = String::from_utf8(text).ok()?;
    let (pid, command) = text.trim().split_once(' ')?;
    let command = crate::report::clean(command).into_owned();
    Some((pid.parse().ok()?, command))
}

/// Whether a process (the daemon, or a command running in its own process) holds the lock of
/// `state_dir`. `false` when there is no lock file or it cannot be opened: then nothing can
/// hold it either.
pub fn lock_held(state_dir: &Path) -> bool {
    let Ok(file) = File::open(state_dir.join("lock")) else {
        return false;
    };
    matches!(
        file.try_lock_shared(),
        Err(std::fs::TryLockError::WouldBlock)
    )
}

impl State {
    /// What the next start records of a command that no process runs any more (see
    /// `Agent::record_interruption`): apps still `downloading` are `download-failed` with
    /// `reason`, and a status that says a command is in progress is its failure. `status`
    /// shows a journal that no process holds this way, so nothing reads as running that is not.
    pub fn as_interrupted(mut self, reason: &str) -> State {
        for app in &mut self.apps {
            if app.state == AppState::Downloading {
                app.state = AppState::DownloadFailed;
                app.error = Some(reason.to_string());
            }
        }
        if let Some(command) = self
            .update_status
            .as_deref()
            .and_then(crate::report::StatusText::parse)
            .and_then(|s| s.running())
        {
            let failed = crate::report::StatusText::failed(command, reason);
            self.update_status = Some(failed.to_string());
        }
        self
    }
}

impl Store {
    /// Creates the layout if needed and takes the single-instance lock.
    pub fn open(paths: &PathSettings) -> Result<Store, StoreError> {
        // Absolute, so that hooks and logs get paths that mean something on their own.
        let absolute = |p: &Path| std::path::absolute(p).map_err(io_error(p));
        let state_dir = absolute(&paths.state_dir)?;
        let apps_dir = absolute(&paths.apps_dir)?;
        for dir in [&state_dir, &state_dir.join("staging"), &apps_dir] {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let lock_path = state_dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = read_holder(&lock_path);
                return Err(StoreError::Locked {
                    path: lock_path,
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        // Who holds it, for the next process that finds it taken (best effort: the lock is
        // the flock, not this text).
        {
            use std::io::Write;
            let _ = lock.set_len(0);
            let _ = writeln!(&lock, "{} {}", std::process::id(), own_command());
        }
        let mut store = Store {
            state_dir,
            apps_dir,
            state: Mutex::new(State::default()),
            last_progress_save: Mutex::new(Instant::now()),
            events: Mutex::new(None),
            events_added: tokio::sync::Notify::new(),
            _lock: lock,
        };
        store.finish_interrupted_removals()?;
        // Before state.json is written again: its next write drops what format 1 kept there.
        if let Err(e) = crate::config::overrides::migrate_legacy(&store.state_dir) {
            tracing::warn!("cannot move the settings of an earlier version to settings.json: {e}");
        }
        let state = store.load_state()?;
        *store.state.get_mut() = state;
        Ok(store)
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> State {
        self.lock_state().clone()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Changes the state and writes it to disk before returning.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        self.update_with_document(None, |state, _| change(state))
    }

    /// Like [`Store::update`], storing `idf` first (under the same lock, so that no other
    /// change removes the document before the state refers to it) and handing its reference
    /// to `change`.
    pub fn update_with_document<T>(
        &self,
        idf: Option<&Idf>,
        change: impl FnOnce(&mut State, Option<IdfRef>) -> T,
    ) -> Result<T, StoreError> {
        let mut state = self.lock_state();
        let stored = idf.map(|idf| self.write_document(idf)).transpose()?;
        // Only a device with a UMS pays for the comparison.
        let before = self.events_enabled().then(|| events::Signature::of(&state));
        let documents = documents::referenced(&state);
        let out = change(&mut state, stored.clone());
        self.save(&state)?;
        if let Some(before) = before {
            self.record_events(&before, &state);
        }
        if stored.is_some() || documents != documents::referenced(&state) {
            self.collect_documents(&state);
        }
        Ok(out)
    }

    /// Changes the state; writes it only if the last progress write is a while ago.
    pub fn progress(&self, change: impl FnOnce(&mut State)) -> Result<(), StoreError> {
        let mut state = self.lock_state();
        change(&mut state);
        let mut last = self.last_progress_save.lock();
        if last.elapsed() >= PROGRESS_INTERVAL {
            *last = Instant::now();
            self.save(&state)?;
        }
        Ok(())
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = self.state_dir.join("state.json");
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn staging_dir(&self, app: &str, version: &str) -> PathBuf {
        self.state_dir.join("staging").join(app).join(version)
    }

    pub fn version_dir(&self, app: &str, version: &str) -> PathBuf {
        self.apps_dir.join(app).join(version)
    }

    /// A version is complete once its directory (a real one, not a link) holds its `app.json`
    /// (the last thing written).
    pub fn is_complete(&self, app: &str, version: &str) -> bool {
        let dir = self.version_dir(app, version);
        std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir())
            && std::fs::symlink_metadata(dir.join("app.json")).is_ok_and(|m| m.is_file())
    }

    /// Bytes free for downloads in the state directory.
    pub fn available_bytes(&self) -> Result<u64, StoreError> {
        let stat = nix::sys::statvfs::statvfs(&self.state_dir).map_err(|e| StoreError::Io {
            path: self.state_dir.clone(),
            source: e.into(),
        })?;
        Ok(stat.blocks_available() as u64 * stat.fragment_size() as u64)
    }

    /// Moves a fully downloaded and verified version from staging to `apps/` in one rename.
    /// Every file's part must be complete and synced.
    pub fn commit_version(
        &self,
        manifest: &Manifest,
        manifest_bytes: &[u8],
    ) -> Result<PathBuf, StoreError> {
        let staging = self.staging_dir(&manifest.name, &manifest.version);
        let mut dirs = std::collections::BTreeSet::new();
        for file in &manifest.files {
            let target = staging.join(&file.path);
            let part = part_path(&target);
            if part.exists() {
                std::fs::rename(&part, &target).map_err(io_error(&part))?;
            }
            if let Some(parent) = target.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        crate::failpoint::hit("commit.parts_renamed");
        std::fs::create_dir_all(&staging).map_err(io_error(&staging))?;
        write_atomic(&staging.join("app.json"), manifest_bytes)?;
        for dir in &dirs {
            sync_dir(dir)?;
        }
        let target = self.version_dir(&manifest.name, &manifest.version);
        let app_dir = self.apps_dir.join(&manifest.name);
        std::fs::create_dir_all(&app_dir).map_err(io_error(&app_dir))?;
        let active = self.current_version(&manifest.name).as_deref() == Some(&manifest.version);
        if self.holds(manifest) {
            std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
        } else if active && self.is_complete(&manifest.name, &manifest.version) {
            // Another content under the name of the active version: it stays staged, complete,
            // and the activation swaps it in (the active one keeps running until then).
            sync_dir(&staging)?;
            return Ok(staging);
        } else {
            if std::fs::symlink_metadata(&target).is_ok() {
                // Not a version, or another content under this name that is not active.
                apps::remove_dir_safely(&target)?;
            }
            crate::failpoint::hit("commit.before_rename");
            std::fs::rename(&staging, &target).map_err(|source| match source.raw_os_error() {
                Some(code) if code == nix::errno::Errno::EXDEV as i32 => StoreError::Io {
                    path: target.clone(),
                    source: std::io::Error::other(format!(
                        "apps_dir must be on the same filesystem as {}/staging",
                        self.state_dir.display()
                    )),
                },
                _ => StoreError::Io {
                    path: target.clone(),
                    source,
                },
            })?;
        }
        crate::failpoint::hit("commit.after_rename");
        sync_dir(&app_dir)?;
        if let Some(parent) = staging.parent() {
            // Only removes the app's staging directory when nothing else is staged there.
            let _ = std::fs::remove_dir(parent);
            if let Some(staging_root) = parent.parent() {
                sync_dir(staging_root)?;
            }
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{FileSpec, sha256_hex};

    fn paths(dir: &Path) -> PathSettings {
        PathSettings {
            state_dir: dir.to_path_buf(),
            apps_dir: dir.join("apps"),
            control_socket: dir.join("control.sock"),
        }
    }

    #[test]
    fn a_second_store_on_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(&paths(dir.path())).unwrap();
        assert!(matches!(
            Store::open(&paths(dir.path())),
            Err(StoreError::Locked { .. })
        ));
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(&paths(dir.path())).unwrap();
            store
                .update(|s| s.apps.push(AppRecord::new("a", "1")))
                .unwrap();
        }
        let state = read_state(dir.path()).unwrap().unwrap();
        assert_eq!(state.apps[0].name, "a");
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn commit_moves_a_staged_version_into_apps_in_one_piece() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&paths(dir.path())).unwrap();
        let manifest = Manifest {
            name: "a".into(),
            version: "1".into(),
            files: vec![FileSpec {
                path: "bin/x".into(),
                size: 2,
                sha256: sha256_hex(b"hi"),
            }],
            reboot: false,
        };
        let staged = store.staging_dir("a", "1").join("bin/x");
        std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
        std::fs::write(part_path(&staged), b"hi").unwrap();
        assert!(!store.is_complete("a", "1"));
        let target = store.commit_version(&manifest, b"{}").unwrap();
        assert!(store.is_complete("a", "1"));
        assert_eq!(std::fs::read(target.join("bin/x")).unwrap(), b"hi");
        assert!(!store.staging_dir("a", "1").exists());
    }

    #[test]
    fn a_corrupt_journal_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let err = read_state(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }
}
