//! Entry points for the fuzzer (`fuzz/`, cargo-fuzz) and for the replay of what it found
//! (`tests/it/robustness/fuzz_regressions.rs` runs every input under `fuzz/regressions/<target>/`): each
//! takes raw bytes the way the agent meets them from outside (a repository, the UMS, the
//! control socket, a file an administrator or a crash left) and must neither panic nor hang.
//! An error is the expected answer to most inputs; these functions drop it.
//!
//! This module only calls the parsers the agent uses; it never writes anything.

use std::path::Path;

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/regressions/<name>/`.
pub const TARGETS: &[&str] = &[
    "app_json",
    "idf",
    "listing",
    "config",
    "registry",
    "control",
    "ums_frame",
    "state_json",
    "settings_json",
    "range",
];

/// Runs target `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "app_json" => app_json(data),
        "idf" => idf(data),
        "listing" => listing(data),
        "config" => config(data),
        "registry" => registry(data),
        "control" => control(data),
        "ums_frame" => ums_frame(data),
        "state_json" => state_json(data),
        "settings_json" => settings_json(data),
        "range" => range(data),
        _ => return false,
    }
    true
}

/// An `app.json` from a repository.
pub fn app_json(data: &[u8]) {
    if let Ok(manifest) = crate::manifest::Manifest::parse(data) {
        let _ = manifest.total_bytes();
    }
}

/// An IDF from the UMS, a URL or a file.
pub fn idf(data: &[u8]) {
    if let Ok(idf) = crate::idf::Idf::parse(data) {
        let _ = idf.digest();
    }
}

/// A PROPFIND answer from a repository.
pub fn listing(data: &[u8]) {
    let _ = crate::repository::listing::parse(data, "/apps/chromium/");
}

/// A configuration file and a drop-in (the input split at its first NUL byte), merged and
/// validated without reading the files they name.
pub fn config(data: &[u8]) {
    use crate::config::{FileAccess, fragments, inputs, settings};
    let (main, drop_in) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut parsed = Vec::new();
    for (name, part) in [("agent.toml", Some(main)), ("agent.d/10.toml", drop_in)] {
        let Some(part) = part else { continue };
        let text = String::from_utf8_lossy(part).into_owned();
        match fragments::Fragment::parse(Path::new(name), text) {
            Ok(f) => parsed.push(f),
            Err(_) => return,
        }
    }
    let _ = settings::validate(inputs::merge(&parsed), None, FileAccess::Skip);
}

/// IGEL registry lines (`config import-registry`).
pub fn registry(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::config::registry::to_toml(&text, "/etc/igel-update-agent");
}

/// A request on the control socket.
pub fn control(data: &[u8]) {
    if let Ok(request) = crate::control::parse(data, chrono::Utc::now())
        && let crate::control::Command::Settings(args) = &request.command
    {
        let _ = args.texts();
    }
}

/// A text frame from the UMS: a `hello_ack` or a command.
pub fn ums_frame(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if crate::ums::read_hello_ack(&text).is_none() {
        control(data);
    }
}

/// `state.json` as a reader without the lock reads it.
pub fn state_json(data: &[u8]) {
    let _ = crate::store::journal::parse(data, Path::new("/nonexistent/igel-fuzz-state"));
}

/// `<state>/settings.json`.
pub fn settings_json(data: &[u8]) {
    if let Ok(overrides) = crate::config::overrides::parse(data) {
        let _ = overrides.groups();
    }
}

/// A `Range` header sent to `repo serve`, for a file whose length is the first 8 bytes
/// (little-endian; fewer bytes are zero-padded), and the same text as an `If-Range`.
pub fn range(data: &[u8]) {
    use crate::repo_server::range::{self, MAX_RANGES, Plan};
    use std::time::{Duration, UNIX_EPOCH};
    let split = data.len().min(8);
    let mut len = [0u8; 8];
    len[..split].copy_from_slice(&data[..split]);
    let len = u64::from_le_bytes(len);
    let header = String::from_utf8_lossy(&data[split..]);
    if let Plan::Parts(parts) = range::plan(&header, len) {
        // What `partial` relies on: every part inside the file, no more than the file's bytes
        // in all, and a bounded number of parts. A panic here is a finding.
        assert!(!parts.is_empty() && parts.len() <= MAX_RANGES, "{parts:?}");
        assert!(
            parts.iter().all(|p| p.start <= p.end && p.end < len),
            "{parts:?}"
        );
        let total = parts
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.len()));
        assert!(total.is_some_and(|total| total <= len), "{parts:?}");
        let _ = range::multipart(&parts, len, "application/octet-stream", "b");
    }
    let modified = UNIX_EPOCH + Duration::from_secs(len % (1 << 40));
    let _ = range::if_range_matches(&header, Some("\"t\""), Some(modified), modified);
}
