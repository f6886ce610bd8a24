//! `repo index DIR`: describe every `DIR/<app>/<version>/` in its `app.json`.
//!
//! Files are hashed while streaming (they can be larger than memory allows), and each
//! `app.json` replaces the old one atomically, so a server publishing the directory at the same
//! time never hands out a half-written manifest.

use std::fs::{self, File, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::RepoServerError;

mod chunk_files;
pub(super) use chunk_files::MIN_INDEXED_BYTES;

use crate::manifest::{self, MAX_MANIFEST_BYTES, Manifest, ManifestError};

const MANIFEST_NAME: &str = "app.json";
/// Prefix of the temporary file an `app.json` is written to before the rename; a leftover from
/// an interrupted run is not an app file.
const TEMP_PREFIX: &str = ".app.json.";
const HASH_BUFFER_BYTES: usize = 1024 * 1024;

/// Writes `DIR/<app>/<version>/app.json` for every version directory below `dir` and returns
/// the paths written, in name order. Files that are not directories at the app and version
/// levels are skipped. `reboot` is kept from the `app.json` being replaced.
///
/// All or nothing for bad input: the whole tree is checked before anything is written, and
/// every badly named directory or file, symbolic link, special file or path deeper than four
/// levels is collected into one [`RepoServerError::Layout`] naming each of them. Every file is
/// hashed and every manifest validated before the first `app.json` is replaced, too. A `dir`
/// without any `<app>/<version>/` directory is [`RepoServerError::NothingToIndex`], with a
/// hint when `dir` looks like an app or a version directory.
pub fn index(dir: &Path) -> Result<Vec<PathBuf>, RepoServerError> {
    let mut problems = Vec::new();
    let mut versions = Vec::new();
    for (app, app_dir) in subdirectories(dir, manifest::check_app_name, &mut problems)? {
        for (version, version_dir) in
            subdirectories(&app_dir, manifest::check_version, &mut problems)?
        {
            let mut files = Vec::new();
            collect_files(&version_dir, "", &mut files, &mut problems)?;
            versions.push((app.clone(), version, version_dir, files));
        }
    }
    if !problems.is_empty() {
        return Err(RepoServerError::Layout {
            dir: dir.to_owned(),
            problems,
        });
    }
    if versions.is_empty() {
        return Err(RepoServerError::NothingToIndex {
            dir: dir.to_owned(),
            hint: layout_hint(dir),
        });
    }
    let mut manifests = Vec::with_capacity(versions.len());
    for (app, version, version_dir, files) in versions {
        let bytes = build_manifest(&app, &version, &version_dir, files)?;
        manifests.push((version_dir, bytes));
    }
    let mut written = Vec::with_capacity(manifests.len());
    for (version_dir, bytes) in manifests {
        let target = version_dir.join(MANIFEST_NAME);
        write_atomically(&version_dir, &target, &bytes)?;
        tracing::debug!(path = %target.display(), "wrote app.json");
        written.push(target);
    }
    Ok(written)
}

/// Why `dir` holds no `<app>/<version>/` directory, as far as its contents tell: empty, a
/// version directory (files or an `app.json` right in it), or an app directory (its
/// subdirectories hold files, not directories).
fn layout_hint(dir: &Path) -> String {
    /// Subdirectories (symbolic links not followed) and whether any other entry is there.
    fn look(dir: &Path) -> (Vec<PathBuf>, bool) {
        let mut dirs = Vec::new();
        let mut files = false;
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                _ => files = true,
            }
        }
        (dirs, files)
    }
    let up = |levels: usize| {
        let absolute = fs::canonicalize(dir)
            .or_else(|_| std::path::absolute(dir))
            .unwrap_or_else(|_| dir.to_owned());
        let mut up = absolute.as_path();
        for _ in 0..levels {
            up = up.parent().unwrap_or(up);
        }
        up.display().to_string()
    };
    let (subdirs, files) = look(dir);
    if dir.join(MANIFEST_NAME).is_file() || (subdirs.is_empty() && files) {
        return format!(
            "it holds files but no <app> directories, so it looks like a version directory \
             (give the repository's top directory, {}, two levels up)",
            up(2)
        );
    }
    if subdirs.is_empty() {
        return "it is empty".into();
    }
    if subdirs
        .iter()
        .any(|d| d.join(MANIFEST_NAME).is_file() || look(d).1)
    {
        return format!(
            "its subdirectories hold files but no <version> directories, so it looks like an \
             app directory (give the repository's top directory, {}, one level up)",
            up(1)
        );
    }
    "its subdirectories are empty".into()
}

/// The directories directly below `dir` whose names pass `check`, sorted by name. A badly
/// named directory or a symbolic link is added to `problems` and left out.
fn subdirectories(
    dir: &Path,
    check: fn(&str) -> Result<(), String>,
    problems: &mut Vec<RepoServerError>,
) -> Result<Vec<(String, PathBuf)>, RepoServerError> {
    let mut found = Vec::new();
    for (name, path, kind) in entries(dir, problems)? {
        match kind {
            Kind::Directory => match check(&name) {
                Ok(()) => found.push((name, path)),
                Err(reason) => problems.push(RepoServerError::BadName { path, reason }),
            },
            Kind::Symlink => problems.push(RepoServerError::Symlink { path }),
            Kind::File | Kind::Other => {
                tracing::debug!(path = %path.display(), "not a directory; not part of the repository layout");
            }
        }
    }
    Ok(found)
}

enum Kind {
    Directory,
    File,
    Symlink,
    Other,
}

/// The entries of `dir` (symbolic links not followed), sorted by name. A name that is not
/// UTF-8 could never be listed in `app.json` or requested by URL: it goes to `problems`.
fn entries(
    dir: &Path,
    problems: &mut Vec<RepoServerError>,
) -> Result<Vec<(String, PathBuf, Kind)>, RepoServerError> {
    let read = fs::read_dir(dir).map_err(RepoServerError::io(dir, "read the directory"))?;
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(RepoServerError::io(dir, "read the directory"))?;
        let path = entry.path();
        let file_type = entry
            .file_type()
            .map_err(RepoServerError::io(&path, "read the file type"))?;
        let kind = if file_type.is_symlink() {
            Kind::Symlink
        } else if file_type.is_dir() {
            Kind::Directory
        } else if file_type.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        let Ok(name) = entry.file_name().into_string() else {
            problems.push(RepoServerError::BadName {
                path,
                reason: "the name is not valid UTF-8".into(),
            });
            continue;
        };
        out.push((name, path, kind));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The `app.json` bytes for one version directory: every file hashed, the manifest
/// validated, nothing written yet.
fn build_manifest(
    app: &str,
    version: &str,
    dir: &Path,
    mut paths: Vec<String>,
) -> Result<Vec<u8>, RepoServerError> {
    // The chunk indexes written beside large files (`chunk_files`) are not files of the app.
    paths.sort();
    let all: std::collections::HashSet<&str> = paths.iter().map(String::as_str).collect();
    let mut files = Vec::with_capacity(paths.len());
    for path in &paths {
        if chunk_files::is_index_file(dir, path, &all) {
            continue;
        }
        files.push(chunk_files::describe(dir, path)?);
    }
    let manifest = Manifest {
        name: app.to_owned(),
        version: version.to_owned(),
        files,
        reboot: existing_reboot(&dir.join(MANIFEST_NAME)),
    };
    let invalid = |source: ManifestError| RepoServerError::Manifest {
        path: dir.to_owned(),
        source,
    };
    manifest.validate().map_err(invalid)?;
    let mut bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| invalid(e.into()))?;
    bytes.push(b'\n');
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(invalid(ManifestError::TooLarge(bytes.len())));
    }
    Ok(bytes)
}

/// Appends the relative path of every regular file below `root/rel_dir` to `out`, and every
/// path that cannot be an app's file to `problems`. `check_file_path` bounds the depth, so the
/// recursion stops after four levels.
fn collect_files(
    root: &Path,
    rel_dir: &str,
    out: &mut Vec<String>,
    problems: &mut Vec<RepoServerError>,
) -> Result<(), RepoServerError> {
    for (name, path, kind) in entries(&root.join(rel_dir), problems)? {
        if (rel_dir.is_empty() && name == MANIFEST_NAME) || name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let rel = if rel_dir.is_empty() {
            name
        } else {
            format!("{rel_dir}/{name}")
        };
        if let Err(reason) = manifest::check_file_path(&rel) {
            problems.push(RepoServerError::BadName { path, reason });
            continue;
        }
        match kind {
            Kind::Directory => collect_files(root, &rel, out, problems)?,
            Kind::File => out.push(rel),
            Kind::Symlink => problems.push(RepoServerError::Symlink { path }),
            Kind::Other => problems.push(RepoServerError::NotRegular { path }),
        }
    }
    Ok(())
}

/// Size and SHA-256 (lower-case hex) of a file, read in 1 MiB pieces.
fn hash_file(path: &Path) -> Result<(u64, String), RepoServerError> {
    let read_error = RepoServerError::io(path, "read the file");
    let mut file = File::open(path).map_err(RepoServerError::io(path, "open the file"))?;
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// The `reboot` flag of the `app.json` about to be replaced: the one setting an administrator
/// writes by hand. Anything unreadable counts as `false`, with a warning.
fn existing_reboot(path: &Path) -> bool {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the old app.json; writing reboot: false");
            return false;
        }
    };
    match Manifest::parse(&bytes) {
        Ok(old) => old.reboot,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "the old app.json is invalid; writing reboot: false");
            false
        }
    }
}

/// Replaces `target` (in `dir`) with `bytes`: temporary file in the same directory, fsync,
/// rename, fsync of the directory, so a crash leaves the old or the new file, never a mix.
fn write_atomically(dir: &Path, target: &Path, bytes: &[u8]) -> Result<(), RepoServerError> {
    let mut temp = temp_file_in(dir)?;
    temp.write_all(bytes)
        .map_err(RepoServerError::io(temp.path(), "write the temporary file"))?;
    persist(temp, dir, target)
}

/// A temporary file in `dir`, readable by web servers running as other users and named so
/// that `repo index` never lists a leftover of it.
fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile, RepoServerError> {
    tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .permissions(Permissions::from_mode(0o644))
        .tempfile_in(dir)
        .map_err(RepoServerError::io(
            dir,
            "create a temporary file in the directory",
        ))
}

/// Makes `temp` (in `dir`) durable and renames it over `target`, then syncs `dir`.
fn persist(
    temp: tempfile::NamedTempFile,
    dir: &Path,
    target: &Path,
) -> Result<(), RepoServerError> {
    temp.as_file()
        .sync_all()
        .map_err(RepoServerError::io(temp.path(), "write the temporary file"))?;
    temp.persist(target)
        .map_err(|e| RepoServerError::io(target, "replace the file")(e.error))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RepoServerError::io(dir, "sync the directory"))
}

#[cfg(test)]
mod tests;
