//! The versions of each app on disk: `apps/<app>/<version>/` (complete, verified) and the
//! `current` link that says which one is active. Every change is one rename followed by an
//! fsync of the directory, so a crash leaves either the old or the new layout. Removals first
//! rename what goes away to a `.removing-` name, so a half-deleted version is never mistaken
//! for a complete one; an interrupted removal is finished when the store opens.

use std::path::{Path, PathBuf};

use super::{Store, StoreError, io_error, sync_dir};

const CURRENT: &str = "current";
const REMOVING: &str = ".removing-";

impl Store {
    /// The active version of `app` (the target of its `current` link).
    pub fn current_version(&self, app: &str) -> Option<String> {
        let target = std::fs::read_link(self.app_dir(app).join(CURRENT)).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Points `current` at `version` (or removes it for `None`) in one atomic rename.
    pub fn point_current(&self, app: &str, version: Option<&str>) -> Result<(), StoreError> {
        let dir = self.app_dir(app);
        let link = dir.join(CURRENT);
        repair_current(&link)?;
        match version {
            Some(version) => {
                if !self.is_complete(app, version) {
                    return Err(StoreError::Io {
                        path: self.version_dir(app, version),
                        source: std::io::Error::other(
                            "not a complete version; refusing to activate it",
                        ),
                    });
                }
                let tmp = dir.join(".current.new");
                let _ = std::fs::remove_file(&tmp);
                std::os::unix::fs::symlink(version, &tmp).map_err(io_error(&tmp))?;
                crate::failpoint::hit("current.before_rename");
                std::fs::rename(&tmp, &link).map_err(io_error(&link))?;
                crate::failpoint::hit("current.after_rename");
            }
            None => match std::fs::remove_file(&link) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&link)(e)),
            },
        }
        sync_dir(&dir)
    }

    /// Complete versions of `app` on disk, in no particular order.
    pub fn versions(&self, app: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.app_dir(app)) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| {
                crate::manifest::check_version(name).is_ok() && self.is_complete(app, name)
            })
            .collect()
    }

    /// Apps that have a directory under `apps/`.
    pub fn apps_on_disk(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.apps_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// Deletes one version (never the active one).
    pub fn remove_version(&self, app: &str, version: &str) -> Result<(), StoreError> {
        if self.current_version(app).as_deref() == Some(version) {
            return Err(StoreError::Io {
                path: self.version_dir(app, version),
                source: std::io::Error::other("is the active version; refusing to remove it"),
            });
        }
        remove_dir_safely(&self.version_dir(app, version))
    }

    /// Deletes an app entirely: its `current` link first, then every version.
    pub fn remove_app(&self, app: &str) -> Result<(), StoreError> {
        self.point_current(app, None)?;
        remove_dir_safely(&self.app_dir(app))?;
        remove_dir_safely(&self.staging_app_dir(app))
    }

    /// Deletes the partial downloads of `app` other than those of `keep` (a version no longer
    /// planned never resumes, and its bytes only take space). Returns the versions removed.
    pub fn remove_superseded_staging(
        &self,
        app: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let dir = self.staging_app_dir(app);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Some(name.as_str()) == keep || name.starts_with(REMOVING) {
                continue;
            }
            remove_dir_safely(&entry.path())?;
            removed.push(name);
        }
        if keep.is_none() {
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(removed)
    }

    /// Apps with partial downloads under `staging/`.
    pub fn staging_apps(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.staging_root()) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    /// Deletes the partial downloads of every app.
    pub fn remove_staging(&self) -> Result<(), StoreError> {
        let staging = self.staging_root();
        let Ok(entries) = std::fs::read_dir(&staging) else {
            return Ok(());
        };
        for entry in entries.filter_map(|e| e.ok()) {
            remove_dir_safely(&entry.path())?;
        }
        Ok(())
    }

    /// Completes removals a crash interrupted (anything named `.removing-*`), and removes a
    /// `current` that is not a link (an earlier version could stage a version of that name).
    pub(super) fn finish_interrupted_removals(&self) -> Result<(), StoreError> {
        for app in self.apps_on_disk() {
            repair_current(&self.app_dir(&app).join(CURRENT))?;
        }
        let mut dirs = vec![self.apps_dir.clone(), self.staging_root()];
        dirs.extend(self.apps_on_disk().into_iter().map(|a| self.app_dir(&a)));
        dirs.extend(
            self.staging_apps()
                .into_iter()
                .map(|a| self.staging_app_dir(&a)),
        );
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                if entry.file_name().to_string_lossy().starts_with(REMOVING) {
                    let path = entry.path();
                    std::fs::remove_dir_all(&path).map_err(io_error(&path))?;
                }
            }
        }
        Ok(())
    }
}

/// `current` must be a symbolic link or absent. Anything else in its place (a directory a
/// repository once made the agent stage as version `current`) goes, with a warning: it was
/// never an activated version, and leaving it would fail every activation (EISDIR).
fn repair_current(link: &Path) -> Result<(), StoreError> {
    let Ok(meta) = std::fs::symlink_metadata(link) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    tracing::warn!(
        "{}: not a link but a {}; removed (`current` is reserved for the active-version link)",
        link.display(),
        if meta.is_dir() { "directory" } else { "file" }
    );
    if meta.is_dir() {
        remove_dir_safely(link)
    } else {
        std::fs::remove_file(link).map_err(io_error(link))
    }
}

/// Renames `path` to `.removing-<name>` beside it (one atomic step), then deletes it.
pub(super) fn remove_dir_safely(path: &Path) -> Result<(), StoreError> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    if !path.exists() {
        return Ok(());
    }
    let doomed: PathBuf = parent.join(format!("{REMOVING}{}", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&doomed);
    std::fs::rename(path, &doomed).map_err(io_error(path))?;
    sync_dir(parent)?;
    crate::failpoint::hit("remove.after_rename");
    std::fs::remove_dir_all(&doomed).map_err(io_error(&doomed))
}
