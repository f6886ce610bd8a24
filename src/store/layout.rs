//! Where the store keeps things (DESIGN 3): the one place that names the paths of the state
//! directory and the apps directory.
//!
//! ```text
//! <state>/state.json                           the journal (super::journal)
//! <state>/lock                                 the single-instance lock (super::lock)
//! <state>/staging/<app>/<version>/<file>.part  a partial download
//! <state>/staging/<app>/<version>/<file>       a verified file, until the commit
//! <apps>/<app>/<version>/                      a complete version (super::apps)
//! ```
//!
//! (The stored IDFs, `idf/`, and the UMS events file are named by [`super::documents`] and
//! [`super::events`], which own them.)
//!
//! Everything outside the store that needs a path, a transfer's part file included, gets it
//! from here through [`Store`]; nobody else puts a path together. This module only hands out
//! paths: it never creates, reads, writes or removes anything.

use std::path::{Path, PathBuf};

use super::Store;

pub const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
const STAGING: &str = "staging";
const PART_SUFFIX: &str = ".part";

/// `<state>/state.json`
pub fn state_file(state_dir: &Path) -> PathBuf {
    state_dir.join(STATE_FILE)
}

/// `<state>/lock`
pub(super) fn lock_file(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCK_FILE)
}

/// `<state>/staging`
pub(super) fn staging_root(state_dir: &Path) -> PathBuf {
    state_dir.join(STAGING)
}

/// `<file>.part`: where the bytes of `file` grow until they are verified.
pub(super) fn part_of(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_os_string();
    name.push(PART_SUFFIX);
    PathBuf::from(name)
}

impl Store {
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `<state>/staging`
    pub(super) fn staging_root(&self) -> PathBuf {
        staging_root(&self.state_dir)
    }

    /// `<state>/staging/<app>`
    pub(super) fn staging_app_dir(&self, app: &str) -> PathBuf {
        self.staging_root().join(app)
    }

    /// `<state>/staging/<app>/<version>`
    pub fn staging_dir(&self, app: &str, version: &str) -> PathBuf {
        self.staging_app_dir(app).join(version)
    }

    /// `<state>/staging/<app>/<version>/<file>`: where a file of a version is put once it is
    /// verified (`file` is a manifest path, checked when the manifest was read).
    pub fn staged_file(&self, app: &str, version: &str, file: &str) -> PathBuf {
        self.staging_dir(app, version).join(file)
    }

    /// `<state>/staging/<app>/<version>/<file>.part`: where the bytes of a file of a version
    /// grow until they are verified.
    pub fn part_file(&self, app: &str, version: &str, file: &str) -> PathBuf {
        part_of(&self.staged_file(app, version, file))
    }

    /// `<apps>/<app>`
    pub(super) fn app_dir(&self, app: &str) -> PathBuf {
        self.apps_dir.join(app)
    }

    /// `<apps>/<app>/<version>`
    pub fn version_dir(&self, app: &str, version: &str) -> PathBuf {
        self.app_dir(app).join(version)
    }
}
