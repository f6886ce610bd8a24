//! Everything the agent keeps on disk (DESIGN 3): the state journal `state.json` (with the
//! daemon's command queue, its IDFs stored once under `idf/`), the single-instance lock,
//! partial downloads under `staging/`, and complete versions under `apps/<app>/<version>/`.
//! [`layout`] names those paths (all but the files of [`documents`] and `events`), for the
//! store and for everyone outside it.
//!
//! Every change is crash-safe: files are written to a temporary name, fsynced, renamed, and
//! the directory is fsynced. A version appears under `apps/` in one rename, complete and
//! verified, or not at all. `store` never touches the network and never depends on the code
//! that does (`transfer`, `repository`): a transfer gets its paths from the store through the
//! agent, and what it learns is turned into records here by the agent.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::config::settings::PathSettings;
use crate::idf::Idf;
use crate::manifest::Manifest;

mod apps;
pub mod commands;
pub mod documents;
mod events;
pub mod journal;
pub mod layout;
mod lock;
mod recover;
mod replace;
mod state;

pub use commands::{Queued, QueuedCommand, QueuedUpdate};
pub use documents::IdfRef;
pub use events::StatusEvent;
pub use journal::{MAX_FINISHED, read_state};
pub use lock::lock_held;
use state::STATE_FORMAT;
pub use state::{Activation, AppRecord, AppState, ResumeHint, State};

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
    #[error("{} holds {}: {}", lock::holder_text(holder), path.display(), lock::locked_hint(holder))]
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
    /// The update status as last changed in memory, for those who follow it (the daemon's
    /// `STATUS=` to systemd) without polling.
    status: tokio::sync::watch::Sender<Option<String>>,
    _lock: File,
}

impl Store {
    /// Creates the layout if needed and takes the single-instance lock.
    pub fn open(paths: &PathSettings) -> Result<Store, StoreError> {
        // Absolute, so that hooks and logs get paths that mean something on their own.
        let absolute = |p: &Path| std::path::absolute(p).map_err(io_error(p));
        let state_dir = absolute(&paths.state_dir)?;
        let apps_dir = absolute(&paths.apps_dir)?;
        for dir in [&state_dir, &layout::staging_root(&state_dir), &apps_dir] {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let lock = lock::take(&state_dir)?;
        let mut store = Store {
            state_dir,
            apps_dir,
            state: Mutex::new(State::default()),
            last_progress_save: Mutex::new(Instant::now()),
            events: Mutex::new(None),
            events_added: tokio::sync::Notify::new(),
            status: tokio::sync::watch::Sender::new(None),
            _lock: lock,
        };
        store.finish_interrupted_removals()?;
        // Before state.json is written again: its next write drops what format 1 kept there.
        if let Err(e) = crate::config::overrides::migrate_legacy(&store.state_dir) {
            tracing::warn!("cannot move the settings of an earlier version to settings.json: {e}");
        }
        let state = store.load_state()?;
        store.status.send_replace(state.update_status.clone());
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

    /// Follows the update status: the receiver sees every change the moment the state
    /// changes (in memory; on disk at the latest with the next write).
    pub fn watch_status(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.status.subscribe()
    }

    fn publish_status(&self, state: &State) {
        self.status.send_if_modified(|current| {
            let changed = *current != state.update_status;
            if changed {
                current.clone_from(&state.update_status);
            }
            changed
        });
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
        self.publish_status(&state);
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
        self.publish_status(&state);
        let mut last = self.last_progress_save.lock();
        if last.elapsed() >= PROGRESS_INTERVAL {
            *last = Instant::now();
            self.save(&state)?;
        }
        Ok(())
    }

    fn save(&self, state: &State) -> Result<(), StoreError> {
        let path = layout::state_file(&self.state_dir);
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&path, &bytes)
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
            let target = self.staged_file(&manifest.name, &manifest.version, &file.path);
            let part = self.part_file(&manifest.name, &manifest.version, &file.path);
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
        let app_dir = self.app_dir(&manifest.name);
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
                chunks: None,
            }],
            reboot: false,
        };
        let part = store.part_file("a", "1", "bin/x");
        std::fs::create_dir_all(part.parent().unwrap()).unwrap();
        std::fs::write(&part, b"hi").unwrap();
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
