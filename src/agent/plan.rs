//! Planning: turn the wanted apps of an IDF into exact versions and their manifests, asking
//! the visible repositories in priority order. `latest` becomes the highest version listed by
//! the highest-priority repository that has the app; a pinned `app_json_sha256` makes every
//! repository a mere mirror of that exact manifest.

use std::sync::Arc;

use crate::idf::WantedApp;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, check_version, compare_versions, sha256_hex};
use crate::repository::Repository;
use crate::transfer::retry::{RetryPolicy, Unreachable, retrying};

/// An app whose version and manifest are known.
#[derive(Debug, Clone)]
pub struct PlannedApp {
    pub wanted: WantedApp,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_repository: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{app}: {reason}")]
pub struct PlanError {
    pub app: String,
    pub reason: String,
}

fn reasons_text(reasons: &[String]) -> String {
    if reasons.is_empty() {
        "no repository to ask (none configured, or all hidden)".into()
    } else {
        reasons.join("; ")
    }
}

/// Resolves `latest` to a version; other versions are returned as they are.
pub async fn resolve_version(
    repos: &[Arc<Repository>],
    policy: &RetryPolicy,
    down: &Unreachable,
    app: &WantedApp,
) -> Result<WantedApp, PlanError> {
    if !app.wants_latest() {
        return Ok(app.clone());
    }
    let mut reasons = Vec::new();
    for repo in repos {
        if let Some(reason) = down.skipped(repo.name()) {
            reasons.push(format!("{}: {reason}", repo.name()));
            continue;
        }
        let dir = format!("{}/", app.name);
        let listing = retrying(policy, &format!("{}: listing {dir}", repo.name()), || {
            repo.list(&dir)
        })
        .await;
        match listing {
            Ok(entries) => {
                let newest = entries
                    .into_iter()
                    .filter(|e| e.is_dir && check_version(&e.name).is_ok())
                    .map(|e| e.name)
                    .max_by(|a, b| compare_versions(a, b));
                match newest {
                    Some(version) => {
                        tracing::info!(app = %app.name, version = %version, repository = repo.name(),
                            "{}: latest is {version} (listed by {})", app.name, repo.name());
                        return Ok(WantedApp {
                            version,
                            ..app.clone()
                        });
                    }
                    None => reasons.push(format!("{}: lists no version", repo.name())),
                }
            }
            Err(e) => {
                down.note(repo.name(), &e);
                // A higher-priority mirror that answers nonsense is worth knowing about even
                // when the next one resolves `latest`.
                if !e.is_not_found() {
                    tracing::warn!(app = %app.name, repository = repo.name(),
                        "{}: cannot list {dir} on {}: {}", app.name, repo.name(), crate::report::clean(&e.to_string()));
                }
                reasons.push(format!("{}: {e}", repo.name()));
            }
        }
    }
    Err(PlanError {
        app: app.name.clone(),
        reason: format!("cannot resolve `latest`: {}", reasons_text(&reasons)),
    })
}

/// Fetches and validates the manifest of a resolved app from the first repository that has a
/// good one.
pub async fn fetch_manifest(
    repos: &[Arc<Repository>],
    policy: &RetryPolicy,
    down: &Unreachable,
    app: &WantedApp,
) -> Result<PlannedApp, PlanError> {
    let path = format!("{}/{}/app.json", app.name, app.version);
    let mut reasons = Vec::new();
    for repo in repos {
        if let Some(reason) = down.skipped(repo.name()) {
            reasons.push(format!("{}: {reason}", repo.name()));
            continue;
        }
        let bytes = match retrying(policy, &format!("{}: {path}", repo.name()), || {
            repo.fetch_small(&path, MAX_MANIFEST_BYTES)
        })
        .await
        {
            Ok(b) => b,
            Err(e) => {
                down.note(repo.name(), &e);
                reasons.push(format!("{}: {e}", repo.name()));
                continue;
            }
        };
        if let Some(pin) = &app.app_json_sha256 {
            let digest = sha256_hex(&bytes);
            if !digest.eq_ignore_ascii_case(pin) {
                reasons.push(format!(
                    "{}: app.json has SHA-256 {digest}, the IDF pins {pin}",
                    repo.name()
                ));
                continue;
            }
        }
        let manifest = match Manifest::parse(&bytes) {
            Ok(m) => m,
            Err(e) => {
                let url = repo.url_for(&path).map_or(path.clone(), |u| u.to_string());
                reasons.push(format!("{}: {url}: {e}", repo.name()));
                continue;
            }
        };
        if manifest.name != app.name || manifest.version != app.version {
            let url = repo.url_for(&path).map_or(path.clone(), |u| u.to_string());
            reasons.push(format!(
                "{}: {url} describes {} {}, not {} {}",
                repo.name(),
                manifest.name,
                manifest.version,
                app.name,
                app.version
            ));
            continue;
        }
        return Ok(PlannedApp {
            wanted: app.clone(),
            manifest,
            manifest_bytes: bytes.to_vec(),
            manifest_repository: repo.name().to_string(),
        });
    }
    Err(PlanError {
        app: app.name.clone(),
        reason: format!(
            "no usable app.json for version {}: {}",
            app.version,
            reasons_text(&reasons)
        ),
    })
}
