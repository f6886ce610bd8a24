//! Settings that the `settings` command persisted (DESIGN 5, 7): IGEL registry keys kept in
//! `<state>/settings.json`, applied on top of the files by every command. Passwords and PEM
//! certificates never go into that file: each is a file of its own under
//! `<state>/credentials/` (mode 0600, written atomically), which `settings.json` names.
//!
//! A change is staged first ([`Change::prepare`]: new credential files under fresh names),
//! validated by the caller with the files, and only then committed (one atomic replace of
//! `settings.json`, then the credential files nothing names any more are removed) or
//! abandoned (the staged files go). A crash at any point leaves `settings.json` naming files
//! that exist: the old set or the new one.
//!
//! This module never decides whether a change is acceptable as a whole; `ConfigSource` does,
//! by validating the result like a configuration file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::registry::{self, SourceField, Target};
use crate::durable;

mod apply;
pub(super) use apply::apply;

/// The persisted settings, in the state directory.
pub const FILE: &str = "settings.json";
/// Where passwords and certificates that came as values live, in the state directory.
pub const CREDENTIALS_DIR: &str = "credentials";
const FORMAT: u32 = 1;
/// At most this many keys in one command and in force at once.
pub const MAX_KEYS: usize = 256;
/// Longest value of a one-line key (a password, a URL, a duration ...).
pub const MAX_VALUE: usize = 4096;
/// Longest PEM document accepted as a certificate value.
pub const MAX_CERTIFICATE: usize = 256 * 1024;
/// The largest `settings.json` read.
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// The reset name that means every key and every notice.
pub const RESET_ALL: &str = "*";
/// `crypt_password` values in this form are decoded first.
const BASE64_PREFIX: &str = "base64:";

/// The keys in force, by registry key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    #[serde(default)]
    format: u32,
    #[serde(default)]
    values: BTreeMap<String, Stored>,
}

/// One persisted value: the text itself, or the credential file that holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stored {
    Text(String),
    Credential { credential: String },
}

/// Something persisted that no longer validates: kept, but not applied. `name` is what
/// `settings --reset NAME` takes to drop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub name: String,
    pub reason: String,
}

/// Why the persisted settings could not be used.
#[derive(Debug, Clone)]
pub enum ReadProblem {
    /// This process may not read the file (another user): the daemon still applies it.
    Unreadable(String),
    /// The file is not what this agent writes: it is set aside as a whole.
    Invalid(SetAside),
}

impl Overrides {
    /// The persisted settings of `state_dir`. A state directory written by an earlier version
    /// keeps its settings in `state.json`; they count until [`migrate_legacy`] moves them.
    pub fn read(state_dir: &Path) -> Result<Overrides, ReadProblem> {
        let path = state_dir.join(FILE);
        match durable::read_regular(&path, MAX_FILE).map_err(|e| e.source) {
            Ok(bytes) => parse(&bytes).map_err(|reason| {
                ReadProblem::Invalid(SetAside {
                    name: FILE.to_string(),
                    reason: format!("{}: {reason}", path.display()),
                })
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(legacy(state_dir)),
            Err(e) => Err(ReadProblem::Unreadable(format!(
                "cannot read {}: {e}; showing the configuration without the settings the \
                 `settings` command made",
                path.display()
            ))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The keys in force (values are not shown: some are secrets).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The value of a key that is not a secret, as the command line shows it.
    pub fn shown(&self, key: &str) -> Option<String> {
        match self.values.get(key)? {
            Stored::Text(_) if key.ends_with("password") => Some("***".into()),
            Stored::Text(t) => Some(t.clone()),
            Stored::Credential { .. } => Some("***".into()),
        }
    }

    /// The keys grouped as they are applied and set aside: one group per `[update]` key and
    /// one per repository.
    pub fn groups(&self) -> BTreeMap<String, Vec<(&str, &Stored)>> {
        let mut groups: BTreeMap<String, Vec<(&str, &Stored)>> = BTreeMap::new();
        for (key, value) in &self.values {
            let group = registry::parse_key(key).map_or_else(|_| key.clone(), |t| t.group());
            groups.entry(group).or_default().push((key, value));
        }
        groups
    }

    fn credential_files(&self) -> BTreeSet<&str> {
        self.values
            .values()
            .filter_map(|v| match v {
                Stored::Credential { credential } => Some(credential.as_str()),
                Stored::Text(_) => None,
            })
            .collect()
    }
}

/// `settings.json` as bytes (also the fuzzer's entry).
pub fn parse(bytes: &[u8]) -> Result<Overrides, String> {
    let overrides: Overrides = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if overrides.format > FORMAT {
        return Err(format!(
            "written by a newer version (format {}); this version reads format {FORMAT}",
            overrides.format
        ));
    }
    if overrides.values.len() > MAX_KEYS {
        return Err(format!(
            "{} keys; at most {MAX_KEYS}",
            overrides.values.len()
        ));
    }
    Ok(overrides)
}

/// Format 1 of `state.json` kept the settings in its `settings_overrides`, passwords in clear.
fn legacy(state_dir: &Path) -> Overrides {
    let Ok(bytes) = durable::read_regular(&state_dir.join("state.json"), crate::store::MAX_JOURNAL)
    else {
        return Overrides::default();
    };
    #[derive(Deserialize)]
    struct Legacy {
        #[serde(default)]
        settings_overrides: BTreeMap<String, String>,
    }
    serde_json::from_slice::<Legacy>(&bytes)
        .map(|l| Overrides {
            format: FORMAT,
            values: l
                .settings_overrides
                .into_iter()
                .map(|(k, v)| (k, Stored::Text(v)))
                .collect(),
        })
        .unwrap_or_default()
}

/// Moves settings an earlier version kept in `state.json` into `settings.json`, passwords and
/// certificates into credential files. Call with the state lock held, before `state.json` is
/// written again (its next write drops the old field). Returns whether anything moved.
pub fn migrate_legacy(state_dir: &Path) -> Result<bool, String> {
    if state_dir.join(FILE).exists() {
        return Ok(false);
    }
    let old = legacy(state_dir);
    if old.is_empty() {
        return Ok(false);
    }
    // Key by key, so that one key this version refuses costs only that key: it is kept as
    // it was (and set aside when applied), unless it is a secret, which is never kept in
    // clear.
    let mut next = Overrides::default();
    let mut staged = Vec::new();
    for (key, value) in old.values {
        let Stored::Text(text) = value else { continue };
        let one = BTreeMap::from([(key.clone(), text.clone())]);
        match Change::prepare(state_dir, &next, &one, &[]) {
            Ok(change) => {
                next = change.next.clone();
                staged.extend(change.staged);
            }
            Err(reason) if is_secret(&key) => {
                tracing::warn!("settings of an earlier version: {key} dropped: {reason}");
            }
            Err(_) => {
                next.values.insert(key, Stored::Text(text));
            }
        }
    }
    let all = Change {
        state_dir: state_dir.to_path_buf(),
        next,
        touched: BTreeSet::new(),
        other_resets: Vec::new(),
        reset_all: false,
        staged,
    };
    all.commit().map_err(|e| e.to_string())?;
    Ok(true)
}

fn is_secret(key: &str) -> bool {
    key.ends_with(".password") || key.ends_with(".crypt_password") || key.ends_with(".certificate")
}

/// A change of the persisted settings, staged but not yet in force.
#[derive(Debug)]
pub struct Change {
    state_dir: PathBuf,
    /// The settings as they will be after the change.
    pub next: Overrides,
    /// The groups (see [`Overrides::groups`]) this change sets or resets: any problem with
    /// them rejects the change instead of setting them aside.
    pub touched: BTreeSet<String>,
    /// Reset names that are no key: the caller's notices (or unknown).
    pub other_resets: Vec<String>,
    /// Whether `*` was among the resets.
    pub reset_all: bool,
    staged: Vec<PathBuf>,
}

impl Change {
    /// Applies `reset` and then `values` to `current`. Passwords and PEM certificates are
    /// written to new credential files at once (removed again by [`Change::abandon`]). An
    /// empty value removes its key.
    pub fn prepare(
        state_dir: &Path,
        current: &Overrides,
        values: &BTreeMap<String, String>,
        reset: &[String],
    ) -> Result<Change, String> {
        if values.len() > MAX_KEYS || reset.len() > MAX_KEYS {
            return Err(format!("at most {MAX_KEYS} keys at once"));
        }
        let mut change = Change {
            state_dir: state_dir.to_path_buf(),
            next: current.clone(),
            touched: BTreeSet::new(),
            other_resets: Vec::new(),
            reset_all: false,
            staged: Vec::new(),
        };
        change.next.format = FORMAT;
        for name in reset {
            change.reset(name);
        }
        if let Some(key) = both_passwords(values) {
            return Err(format!("{key}: give password or crypt_password, not both"));
        }
        for (key, value) in values {
            if let Err(e) = change.set(key, value) {
                change.abandon();
                return Err(e);
            }
        }
        if change.next.values.len() > MAX_KEYS {
            change.abandon();
            return Err(format!("at most {MAX_KEYS} keys may be in force"));
        }
        Ok(change)
    }

    fn reset(&mut self, name: &str) {
        if name == RESET_ALL {
            self.touched.extend(self.next.groups().into_keys());
            self.next.values.clear();
            self.reset_all = true;
            return;
        }
        if let Ok(target) = registry::parse_key(name) {
            self.next.values.remove(name);
            self.touched.insert(target.group());
            return;
        }
        let prefix = format!("{name}.");
        let before = self.next.values.len();
        self.next.values.retain(|k, _| !k.starts_with(&prefix));
        if before != self.next.values.len() || self.next.groups().contains_key(name) {
            self.touched.insert(name.to_string());
        } else if name.starts_with("update.external_binary_source") {
            // A repository with nothing set: resetting it changes nothing.
            self.touched.insert(name.to_string());
        } else {
            self.other_resets.push(name.to_string());
        }
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let target = registry::parse_key(key)?;
        check_shape(key, &target, value)?;
        self.touched.insert(target.group());
        if value.is_empty() {
            self.next.values.remove(key);
            if let Target::Source { field, .. } = target
                && field.is_password()
            {
                self.next.values.remove(&other_password_key(key));
            }
            return Ok(());
        }
        let stored = match target {
            Target::Update { kind, .. } => {
                registry::check_kind(key, kind, value)?;
                Stored::Text(value.to_string())
            }
            Target::Source { number, field } if field.is_password() => {
                let password = decode_password(key, field, value)?;
                // password and crypt_password are one secret under two names.
                self.next.values.remove(&other_password_key(key));
                self.stage(&format!("source{number}.password"), password.as_bytes())?
            }
            Target::Source {
                number,
                field: SourceField::Certificate,
            } if is_pem(value) => self.stage(&format!("source{number}.ca"), value.as_bytes())?,
            Target::Source {
                field: SourceField::Certificate,
                ..
            } if !value.starts_with('/') => {
                return Err(format!(
                    "{key}: {value:?} is neither a PEM certificate (-----BEGIN CERTIFICATE-----) \
                     nor an absolute path to one"
                ));
            }
            Target::Source { .. } => Stored::Text(value.to_string()),
        };
        self.next.values.insert(key.to_string(), stored);
        Ok(())
    }

    /// Writes a secret to a new credential file (mode 0600) and returns its reference.
    fn stage(&mut self, stem: &str, bytes: &[u8]) -> Result<Stored, String> {
        let dir = self.state_dir.join(CREDENTIALS_DIR);
        durable::create_private_dir(&dir).map_err(|e| e.to_string())?;
        let name = format!("{stem}.{:016x}", rand::random::<u64>());
        let path = dir.join(&name);
        durable::write_private(&path, bytes).map_err(|e| e.to_string())?;
        self.staged.push(path);
        Ok(Stored::Credential { credential: name })
    }

    /// Drops the change: the files it staged are removed.
    pub fn abandon(self) {
        for path in &self.staged {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Puts the change in force: `settings.json` replaced in one rename, then the credential
    /// files nothing names any more removed.
    /// On error nothing changed: the staged files are removed.
    pub fn commit(self) -> Result<Overrides, durable::FileError> {
        let bytes = serde_json::to_vec_pretty(&self.next).unwrap_or_default();
        if let Err(e) = durable::write_atomic(&self.state_dir.join(FILE), &bytes) {
            self.abandon();
            return Err(e);
        }
        collect_garbage(&self.state_dir, &self.next);
        Ok(self.next)
    }
}

fn both_passwords(values: &BTreeMap<String, String>) -> Option<&str> {
    values
        .keys()
        .find(|k| {
            k.ends_with(".password")
                && values
                    .get(&other_password_key(k))
                    .is_some_and(|v| !v.is_empty())
                && values.get(*k).is_some_and(|v| !v.is_empty())
        })
        .map(String::as_str)
}

fn other_password_key(key: &str) -> String {
    if let Some(group) = key.strip_suffix(".crypt_password") {
        format!("{group}.password")
    } else if let Some(group) = key.strip_suffix(".password") {
        format!("{group}.crypt_password")
    } else {
        key.to_string()
    }
}

fn is_pem(value: &str) -> bool {
    value.trim_start().starts_with("-----BEGIN")
}

/// Every value is one line of bounded length, except a certificate, which may be a whole PEM
/// document.
fn check_shape(key: &str, target: &Target, value: &str) -> Result<(), String> {
    let certificate = matches!(
        target,
        Target::Source {
            field: SourceField::Certificate,
            ..
        }
    );
    let (limit, allowed): (usize, &[char]) = if certificate {
        (MAX_CERTIFICATE, &['\n', '\r', '\t'])
    } else {
        (MAX_VALUE, &[])
    };
    if value.len() > limit {
        return Err(format!(
            "{key}: the value is {} bytes; at most {limit}",
            value.len()
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !allowed.contains(&c))
    {
        return Err(if certificate {
            format!("{key}: the value holds control characters that no PEM document has")
        } else {
            format!("{key}: the value must be a single line without control characters")
        });
    }
    Ok(())
}

/// The password a `password` or `crypt_password` value stands for (see `docs/protocol.md`).
fn decode_password(key: &str, field: SourceField, value: &str) -> Result<String, String> {
    let Some(encoded) = value.strip_prefix(BASE64_PREFIX) else {
        return Ok(value.to_string());
    };
    if field != SourceField::CryptPassword {
        return Ok(value.to_string());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("{key}: the base64: form does not decode ({e})"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{key}: the decoded password is not UTF-8"))?;
    if text.is_empty() || text.chars().any(char::is_control) {
        return Err(format!(
            "{key}: the decoded password is empty or holds control characters"
        ));
    }
    Ok(text)
}

/// Removes credential files that `overrides` does not name (and leftovers of a crash).
pub fn collect_garbage(state_dir: &Path, overrides: &Overrides) {
    let dir = state_dir.join(CREDENTIALS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let keep = overrides.credential_files();
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !keep.contains(name.as_str()) {
            removed |= std::fs::remove_file(entry.path()).is_ok();
        }
    }
    if removed {
        let _ = durable::sync_dir(&dir);
    }
}

#[cfg(test)]
mod tests;
