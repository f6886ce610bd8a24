//! What is wanted, repository by repository: the apps of the IDF that applies (the assigned
//! one, else the configuration's `[[app]]` tables) are resolved as a transfer would resolve
//! them (`latest` by the first usable repository that lists the app), and every repository
//! that answered, hidden ones included, is asked for every file of those versions: there with
//! the right size (with `--deep`: and the right SHA-256, read under the bandwidth limit).
//!
//! A mirror that holds only some of them is normal (the device takes the rest from the next
//! repository): that is a warning saying where the rest comes from. A wanted file that no
//! usable repository holds is a failure. For a hidden repository the finding says whether it
//! is complete, that is whether its priority can be raised.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Finding, Level};
use crate::bandwidth::{Bandwidth, Meter};
use crate::config::Settings;
use crate::idf::{Idf, WantedApp};
use crate::manifest::{FileSpec, Manifest};
use crate::repository::Repository;
use crate::store::State;
use crate::transfer::RetryPolicy;

/// At most this many missing files are named in one finding.
const NAMED: usize = 5;

/// The wanted state and where it came from, by the rule of `agent::wanted` (the assigned
/// IDF, else the `[[app]]` tables, else the versions the device holds).
pub fn wanted(settings: &Settings, state: Option<&State>) -> Option<(Idf, String)> {
    let empty = State::default();
    let (idf, source) = crate::agent::wanted::wanted_in(settings, state.unwrap_or(&empty))?;
    Some((idf, source.describe().to_string()))
}

/// One wanted file of a resolved version.
struct Wanted {
    app: String,
    version: String,
    file: FileSpec,
}

impl Wanted {
    fn rel(&self) -> String {
        format!("{}/{}/{}", self.app, self.version, self.file.path)
    }
    fn label(&self) -> String {
        format!("{} {} {}", self.app, self.version, self.file.path)
    }
}

/// `repos`: the repositories that answered, in the order they are tried (hidden ones too).
pub(super) async fn check(
    settings: &Settings,
    state: Option<&State>,
    repos: &[Arc<Repository>],
    deep: bool,
) -> Vec<Finding> {
    let Some((idf, source)) = wanted(settings, state) else {
        return vec![Finding::new(
            Level::Ok,
            "wanted",
            "apps",
            "no IDF assigned and no [[app]] table: no files to look for",
        )];
    };
    let usable: Vec<Arc<Repository>> = repos
        .iter()
        .filter(|r| !r.settings.hidden())
        .cloned()
        .collect();
    let no_retries = RetryPolicy {
        retries: 0,
        base: std::time::Duration::ZERO,
    };
    let mut out = vec![Finding::new(
        Level::Ok,
        "wanted",
        "apps",
        format!(
            "{} app{} from {source}",
            idf.apps.len(),
            if idf.apps.len() == 1 { "" } else { "s" }
        ),
    )];
    let mut files = Vec::new();
    let mut resolved = Vec::new();
    for app in &idf.apps {
        match resolve(&usable, &no_retries, app).await {
            Ok(manifest) => {
                resolved.push((app.name.clone(), manifest.version.clone()));
                files.extend(manifest.files.into_iter().map(|file| Wanted {
                    app: manifest.name.clone(),
                    version: manifest.version.clone(),
                    file,
                }));
            }
            Err(reason) => out.push(
                Finding::new(Level::Fail, "wanted", "apps", reason)
                    .hint("publish the version on a repository with priority 0 or more"),
            ),
        }
    }
    let bandwidth = Bandwidth::new(settings.update.effective_limit());
    let mut holdings = Vec::new();
    for repo in repos {
        holdings.push(holding(repo, &files, deep, &bandwidth).await);
    }
    for (repo, held) in repos.iter().zip(&holdings) {
        out.push(describe(repo, repos, &holdings, held, &files, &resolved, &idf).await);
    }
    for (i, file) in files.iter().enumerate() {
        let anywhere = repos
            .iter()
            .zip(&holdings)
            .any(|(r, h)| !r.settings.hidden() && h[i].is_ok());
        if !anywhere {
            out.push(
                Finding::new(
                    Level::Fail,
                    "wanted",
                    "files",
                    format!("{} is on no usable repository", file.label()),
                )
                .hint("copy it to a repository; hidden ones (priority -1) are never used for downloads"),
            );
        }
    }
    out
}

/// The version and manifest a transfer would take.
async fn resolve(
    usable: &[Arc<Repository>],
    policy: &RetryPolicy,
    app: &WantedApp,
) -> Result<Manifest, String> {
    let down = crate::transfer::retry::Unreachable::default();
    let resolved = crate::agent::plan::resolve_version(usable, policy, &down, app)
        .await
        .map_err(|e| e.to_string())?;
    crate::agent::plan::fetch_manifest(usable, policy, &down, &resolved)
        .await
        .map(|p| p.manifest)
        .map_err(|e| e.to_string())
}

/// For each wanted file: held as wanted, or why not.
async fn holding(
    repo: &Repository,
    files: &[Wanted],
    deep: bool,
    bandwidth: &Bandwidth,
) -> Vec<Result<(), String>> {
    let mut out = Vec::with_capacity(files.len());
    for wanted in files {
        let size = match repo.size_of(&wanted.rel()).await {
            Ok(size) => size,
            Err(e) if e.is_not_found() => {
                out.push(Err(format!("{} is missing", wanted.label())));
                continue;
            }
            Err(e) => {
                out.push(Err(format!("{}: {e}", wanted.label())));
                continue;
            }
        };
        let result = match size {
            Some(size) if size != wanted.file.size => Err(format!(
                "{} has {size} bytes, app.json says {}",
                wanted.label(),
                wanted.file.size
            )),
            _ if deep => digest_matches(repo, wanted, bandwidth).await,
            // There, of a size the server did not say (a transfer checks it anyway).
            _ => Ok(()),
        };
        out.push(result);
    }
    out
}

/// Reads the file (under the bandwidth limit) and compares its SHA-256.
async fn digest_matches(
    repo: &Repository,
    wanted: &Wanted,
    bandwidth: &Bandwidth,
) -> Result<(), String> {
    let label = wanted.label();
    let mut download = repo
        .download(&wanted.rel(), 0, None)
        .await
        .map_err(|e| format!("{label}: {e}"))?;
    let (mut hasher, mut meter, mut read) = (Sha256::new(), Meter::default(), 0u64);
    while let Some(chunk) = crate::repository::next_chunk(&mut download)
        .await
        .map_err(|e| format!("{label}: {e}"))?
    {
        read += chunk.len() as u64;
        if read > wanted.file.size {
            return Err(format!("{label}: longer than app.json says"));
        }
        bandwidth.charge(&mut meter, chunk.len()).await;
        hasher.update(&chunk);
    }
    let digest = hex::encode(hasher.finalize());
    if read == wanted.file.size && digest.eq_ignore_ascii_case(&wanted.file.sha256) {
        Ok(())
    } else {
        Err(format!("{label}: the SHA-256 differs from app.json"))
    }
}

/// One finding for one repository.
async fn describe(
    repo: &Arc<Repository>,
    repos: &[Arc<Repository>],
    holdings: &[Vec<Result<(), String>>],
    held: &[Result<(), String>],
    files: &[Wanted],
    resolved: &[(String, String)],
    idf: &Idf,
) -> Finding {
    let subject = format!("repository {}", repo.name());
    let have = held.iter().filter(|h| h.is_ok()).count();
    let count = format!("{have} of {} wanted files", files.len());
    let missing: Vec<usize> = (0..files.len()).filter(|i| held[*i].is_err()).collect();
    let named = missing
        .iter()
        .take(NAMED)
        .filter_map(|i| held[*i].as_ref().err().cloned())
        .collect::<Vec<_>>()
        .join("; ");
    let more = missing.len().saturating_sub(NAMED);
    let named = if more > 0 {
        format!("{named}; {more} more")
    } else {
        named
    };
    let latest = own_latest(repo, resolved, idf).await;
    if repo.settings.hidden() {
        return if missing.is_empty() {
            Finding::new(
                Level::Ok,
                &subject,
                "files",
                format!("hidden; {count}: complete, its priority can be raised{latest}"),
            )
        } else {
            Finding::new(
                Level::Warn,
                &subject,
                "files",
                format!("hidden; {count}: not complete yet ({named}){latest}"),
            )
            .hint("raise its priority only when it holds every wanted file")
        };
    }
    if missing.is_empty() {
        return Finding::new(Level::Ok, &subject, "files", format!("{count}{latest}"));
    }
    // Where the device takes what this one lacks.
    let mut from: Vec<&str> = Vec::new();
    let mut nowhere = 0;
    for i in &missing {
        let elsewhere = repos
            .iter()
            .zip(holdings)
            .find(|(r, h)| !r.settings.hidden() && r.name() != repo.name() && h[*i].is_ok());
        match elsewhere {
            Some((r, _)) if !from.contains(&r.name()) => from.push(r.name()),
            Some(_) => {}
            None => nowhere += 1,
        }
    }
    let mut rest = Vec::new();
    if !from.is_empty() {
        rest.push(format!("the rest from {}", from.join(", ")));
    }
    if nowhere > 0 {
        rest.push(format!("{nowhere} on no usable repository"));
    }
    Finding::new(
        Level::Warn,
        &subject,
        "files",
        format!("{count}; {} ({named}){latest}", rest.join(", ")),
    )
    .hint("a mirror that holds only some files is normal; the device fetches the rest elsewhere")
}

/// For `latest` apps: this repository's own newest version, when it differs from the one the
/// device takes.
async fn own_latest(repo: &Arc<Repository>, resolved: &[(String, String)], idf: &Idf) -> String {
    let mut notes = Vec::new();
    let no_retries = RetryPolicy {
        retries: 0,
        base: std::time::Duration::ZERO,
    };
    for app in idf.apps.iter().filter(|a| a.wants_latest()) {
        let taken = resolved
            .iter()
            .find(|(n, _)| *n == app.name)
            .map(|(_, v)| v);
        let own = crate::agent::plan::resolve_version(
            std::slice::from_ref(repo),
            &no_retries,
            &crate::transfer::retry::Unreachable::default(),
            app,
        )
        .await;
        if let (Ok(own), Some(taken)) = (own, taken)
            && &own.version != taken
        {
            notes.push(format!(
                "its latest {} is {}, the device takes {taken}",
                app.name, own.version
            ));
        }
    }
    if notes.is_empty() {
        String::new()
    } else {
        format!("; {}", notes.join(", "))
    }
}
