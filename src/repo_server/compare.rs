//! `repo compare OLD NEW`: what a delta update from one version to the next would cost, before
//! anyone rolls it out. Reads both versions locally and decides per file as a device would
//! (`crate::chunks::estimate`); nothing is written.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::RepoServerError;
use super::index::MIN_INDEXED_BYTES;
use crate::chunks::{Estimate, FINE_SUFFIX, INDEX_SUFFIX, estimate};

/// One row per file of `new` (a file, or a version directory): its path and its estimate.
pub fn compare(old: &Path, new: &Path) -> Result<Vec<(String, Estimate)>, RepoServerError> {
    let pairs: Vec<(String, PathBuf, Vec<PathBuf>)> = if new.is_file() {
        vec![(
            new.display().to_string(),
            new.to_owned(),
            vec![old.to_owned()],
        )]
    } else {
        let old_files = files_below(old)?;
        files_below(new)?
            .into_iter()
            .map(|(rel, path)| {
                let same = old.join(&rel);
                let seeds = if same.is_file() {
                    vec![same]
                } else {
                    old_files
                        .iter()
                        .map(|(_, p)| p.clone())
                        .filter(|p| p.metadata().is_ok_and(|m| m.len() >= MIN_INDEXED_BYTES))
                        .collect()
                };
                (rel, path, seeds)
            })
            .collect()
    };
    let open = |p: &Path| {
        File::open(p)
            .map(|f| BufReader::with_capacity(1024 * 1024, f))
            .map_err(RepoServerError::io(p, "open the file"))
    };
    let mut rows = Vec::new();
    for (rel, path, seeds) in pairs {
        let size = path
            .metadata()
            .map_err(RepoServerError::io(&path, "read the file"))?
            .len();
        if size < MIN_INDEXED_BYTES {
            rows.push((
                rel,
                Estimate {
                    size,
                    download: size,
                    requests: 1,
                    whole: true,
                    ..Estimate::default()
                },
            ));
            continue;
        }
        let olds = seeds
            .iter()
            .map(|s| open(s))
            .collect::<Result<Vec<_>, _>>()?;
        let e = estimate(olds, open(&path)?).map_err(RepoServerError::io(
            &path,
            "read the file or its old versions",
        ))?;
        rows.push((rel, e));
    }
    Ok(rows)
}

/// The app's files below `dir` (relative path, path), sorted: not `app.json`, not chunk
/// indexes, not hidden names.
fn files_below(dir: &Path) -> Result<Vec<(String, PathBuf)>, RepoServerError> {
    let mut out = Vec::new();
    let mut pending = vec![(String::new(), dir.to_owned())];
    while let Some((rel, path)) = pending.pop() {
        let entries =
            std::fs::read_dir(&path).map_err(RepoServerError::io(&path, "read the directory"))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || name == "app.json"
                || name.ends_with(INDEX_SUFFIX)
                || name.ends_with(FINE_SUFFIX)
            {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            match entry.file_type() {
                Ok(t) if t.is_dir() && rel.matches('/').count() < 4 => {
                    pending.push((child, entry.path()))
                }
                Ok(t) if t.is_file() => out.push((child, entry.path())),
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}
