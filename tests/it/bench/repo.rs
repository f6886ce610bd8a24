//! What a transfer benchmark serves and asks for: apps with large random files in a document
//! root, the agent's configuration for one repository, and the IDF naming the apps.
//!
//! `support::write_app` holds a file in memory; these files are up to gigabytes, so they are
//! written block by block and hashed on the way.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::bench::run::{Argv, argv};

const BLOCK: usize = 8 << 20;

/// Writes `<docroot>/<app>/<version>/` with `files` (name, size in bytes) of random content
/// and an `app.json` listing them with size and SHA-256 (DESIGN 4).
pub fn make_app(docroot: &Path, app: &str, version: &str, files: &[(&str, u64)]) -> Result<()> {
    let dir = docroot.join(app).join(version);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut rng = rand::rng();
    let mut block = vec![0u8; BLOCK];
    let mut entries = Vec::new();
    for &(name, size) in files {
        let path = dir.join(name);
        let mut file =
            fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut hash = Sha256::new();
        let mut left = size;
        while left > 0 {
            let n = left.min(BLOCK as u64) as usize;
            rng.fill_bytes(&mut block[..n]);
            hash.update(&block[..n]);
            file.write_all(&block[..n])
                .with_context(|| format!("cannot write {}", path.display()))?;
            left -= n as u64;
        }
        entries.push(json!({"path": name, "size": size, "sha256": hex::encode(hash.finalize())}));
    }
    let manifest = json!({"name": app, "version": version, "files": entries, "reboot": false});
    let path = dir.join("app.json");
    fs::write(&path, manifest.to_string())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `<dir>/agent.toml`: one repository at `url`, `parallel` downloads, and the
/// bandwidth limit `limit` (as the agent spells it, e.g. `2MB`) if any.
pub fn agent_config(
    dir: &Path,
    url: &str,
    limit: Option<&str>,
    parallel: usize,
) -> Result<PathBuf> {
    let mut text = format!("[update]\nparallel_downloads = {parallel}\n");
    if let Some(limit) = limit {
        text.push_str(&format!(
            "bandwidth_limit_enabled = true\nbandwidth_limit = \"{limit}\"\n"
        ));
    }
    text.push_str(&format!(
        "[[repository]]\nname = \"bench\"\nurl = \"{url}\"\n"
    ));
    let path = dir.join("agent.toml");
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Writes `<dir>/idf.json` asking for version `1` of each of `apps`.
pub fn write_idf(dir: &Path, apps: &[String]) -> Result<PathBuf> {
    let apps: Vec<_> = apps
        .iter()
        .map(|a| json!({"name": a, "version": "1"}))
        .collect();
    let path = dir.join("idf.json");
    fs::write(&path, json!({ "apps": apps }).to_string())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `AGENT --config CONF --state-dir STATE --log-level warn delivery --idf IDF`.
pub fn delivery(agent: &Path, conf: &Path, state: &Path, idf: &Path) -> Argv {
    let word = OsStr::new;
    argv([
        agent.as_os_str(),
        word("--config"),
        conf.as_os_str(),
        word("--state-dir"),
        state.as_os_str(),
        word("--log-level"),
        word("warn"),
        word("delivery"),
        word("--idf"),
        idf.as_os_str(),
    ])
}
