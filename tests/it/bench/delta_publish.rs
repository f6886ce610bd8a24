//! What the benchmark's Apache serves, under `BENCH_DIR/igel-bench-delta/www/` (kept between
//! runs, like the pairs):
//!
//! - `<pair>/<new file>` (a hard link to the cached pair), its zsync control file
//!   `<new file>.zsync` (`zsyncmake`, default block size) and its casync index
//!   `<new file>.caibx` with the chunk store `store/` (`casync make`, default chunk sizes,
//!   digest and compression);
//! - `repo/<pair>/1/payload.EXT` (old) and `repo/<pair>/2/payload.EXT` (new), hard links
//!   again, indexed by the agent's own `repo index` on every run (so that an `app.json` and
//!   chunk indexes always match the agent measured).

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bench::delta::Published;
use crate::bench::delta_pairs::Pair;
use crate::bench::run::{argv, remove, shell, timed};
use crate::log;

/// The agent's repository directory below `www`.
pub const REPO: &str = "repo";

/// Publishes `pair` below `www` (what is missing of it).
pub fn publish(www: &Path, pair: &Pair) -> Result<Published> {
    let file = pair.file_name();
    let dir = www.join(&pair.name);
    // Built beside, renamed when complete: an existing directory is whole. A stale one (the
    // pair was rebuilt since) is recognised by its file's size and inode.
    if dir.exists() && !same_inode(&dir.join(&file), &pair.new) {
        log(format!("  {} is stale: publishing again", dir.display()));
        remove(&dir)?;
    }
    if !dir.exists() {
        let tmp = www.join(format!(".{}.tmp", pair.name));
        remove(&tmp)?;
        fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        link(&pair.new, &tmp.join(&file))?;
        log(format!("  zsyncmake {file}"));
        timed(&shell(
            r#"cd "$1" && zsyncmake -o "$2.zsync" "$2""#,
            &[tmp.as_os_str(), OsStr::new(&file)],
        ))?;
        log(format!("  casync make {file}"));
        timed(&shell(
            r#"cd "$1" && casync make --store=store "$2.caibx" "$2""#,
            &[tmp.as_os_str(), OsStr::new(&file)],
        ))?;
        fs::rename(&tmp, &dir).with_context(|| format!("cannot rename {}", tmp.display()))?;
    }
    // The agent's repository: the same app name as the pair, versions 1 and 2, one file.
    let ext = pair
        .new
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let payload = format!("payload{ext}");
    for (version, source) in [("1", &pair.old), ("2", &pair.new)] {
        let vdir = www.join(REPO).join(&pair.name).join(version);
        let target = vdir.join(&payload);
        if !same_inode(&target, source) {
            remove(&vdir)?;
            fs::create_dir_all(&vdir)
                .with_context(|| format!("cannot create {}", vdir.display()))?;
            link(source, &target)?;
        }
    }
    Ok(Published {
        pair: pair.clone(),
        dir: format!("{}/", pair.name),
        file,
        repo: format!("{REPO}/"),
        app: pair.name.clone(),
        payload,
    })
}

/// `agent repo index www/repo`: `app.json` and chunk indexes of every version.
pub fn index_repo(agent: &Path, www: &Path) -> Result<()> {
    let repo = www.join(REPO);
    log(format!(
        "  {} repo index {}",
        agent.display(),
        repo.display()
    ));
    timed(&argv([
        agent.as_os_str(),
        OsStr::new("repo"),
        OsStr::new("index"),
        repo.as_os_str(),
    ]))
    .map(drop)
}

/// Removes from `www/repo` every app that is not one of `apps` (pairs not run this time keep
/// their published directories, but `repo index` would hash them all).
pub fn prune_repo(www: &Path, apps: &[String]) -> Result<()> {
    let repo = www.join(REPO);
    if !repo.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(&repo).with_context(|| format!("cannot list {}", repo.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !apps.contains(&name) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// A hard link (the cache and the document root are one file system); a copy otherwise.
fn link(from: &Path, to: &Path) -> Result<()> {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}
