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

use super::ConfigError;
use super::fragments::RawLimit;
use super::inputs::{Inputs, Origin, RepositoryInput, Sourced, UpdateInputs};
use super::registry::{self, Kind, SourceField, Target};
use super::settings::invalid;
use crate::durable;

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

fn parse(bytes: &[u8]) -> Result<Overrides, String> {
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

type SourceFields<'a> = Vec<(&'a str, SourceField, &'a Stored)>;

/// Applies one group of persisted keys to the merged inputs of the files.
pub(super) fn apply(
    group: &[(&str, &Stored)],
    inputs: &mut Inputs,
    state_dir: &Path,
) -> Result<(), ConfigError> {
    let mut source: Option<(u32, SourceFields<'_>)> = None;
    for (key, stored) in group {
        let origin = Origin::setting(key);
        let target = registry::parse_key(key).map_err(|reason| invalid(&origin, key, reason))?;
        match target {
            Target::Update { key: name, kind } => {
                let text = text_of(key, stored)?;
                set_update(&mut inputs.update, name, kind, text, &origin)?;
            }
            Target::Source { number, field } => {
                source
                    .get_or_insert_with(|| (number, Vec::new()))
                    .1
                    .push((key, field, stored));
            }
        }
    }
    if let Some((number, fields)) = source {
        apply_source(number, &fields, inputs, state_dir)?;
    }
    Ok(())
}

fn text_of<'a>(key: &str, stored: &'a Stored) -> Result<&'a str, ConfigError> {
    match stored {
        Stored::Text(t) => Ok(t),
        Stored::Credential { .. } => Err(invalid(
            &Origin::setting(key),
            key,
            "a credential file where a value belongs",
        )),
    }
}

fn set_update(
    u: &mut UpdateInputs,
    name: &str,
    kind: Kind,
    text: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let key = format!("update.{name}");
    match kind {
        Kind::Bool => {
            let value = registry::parse_bool(text)
                .ok_or_else(|| invalid(origin, &key, format!("{text:?} is not true or false")))?;
            let slot = match name {
                "activate_after_installation" => &mut u.activate_after_installation,
                "bandwidth_limit_enabled" => &mut u.bandwidth_limit_enabled,
                _ => &mut u.check_on_boot,
            };
            *slot = Some(at(value, origin));
        }
        Kind::Int => {
            let value: i64 = text
                .parse()
                .map_err(|_| invalid(origin, &key, format!("{text:?} is not a whole number")))?;
            let slot = match name {
                "parallel_downloads" => &mut u.parallel_downloads,
                "max_deferrals" => &mut u.max_deferrals,
                _ => &mut u.retries,
            };
            *slot = Some(at(value, origin));
        }
        Kind::Text if name == "bandwidth_limit" => {
            u.bandwidth_limit = Some(at(RawLimit::Text(text.to_string()), origin));
        }
        Kind::Text => {
            let slot = match name {
                "splay" => &mut u.splay,
                "reboot_after_activation" => &mut u.reboot_after_activation,
                "reboot_timeout" => &mut u.reboot_timeout,
                "reminder_interval" => &mut u.reminder_interval,
                "connect_timeout" => &mut u.connect_timeout,
                "read_timeout" => &mut u.read_timeout,
                _ => &mut u.retry_backoff,
            };
            *slot = Some(at(text.to_string(), origin));
        }
    }
    Ok(())
}

/// The keys of repository `source<N>`: they change the repository of that name when the files
/// define one, else they add it (then `url` is required).
fn apply_source(
    number: u32,
    fields: &[(&str, SourceField, &Stored)],
    inputs: &mut Inputs,
    state_dir: &Path,
) -> Result<(), ConfigError> {
    let name = registry::source_name(number);
    let group = registry::source_group(number);
    let index = match inputs
        .repositories
        .iter()
        .position(|r| r.name.value == name)
    {
        Some(i) => i,
        None => {
            let (url_key, url) = fields
                .iter()
                .find(|(_, f, _)| *f == SourceField::Url)
                .map(|(k, _, v)| (*k, *v))
                .ok_or_else(|| {
                    invalid(
                        &Origin::setting(&group),
                        &format!("{group}.url"),
                        format!(
                            "no [[repository]] is named {name:?} in the files, and adding one \
                             needs {group}.url"
                        ),
                    )
                })?;
            let origin = Origin::setting(&group);
            inputs.repositories.push(RepositoryInput {
                origin: origin.clone(),
                name: Sourced {
                    value: name.clone(),
                    origin,
                },
                url: Sourced {
                    value: text_of(url_key, url)?.to_string(),
                    origin: Origin::setting(url_key),
                },
                priority: None,
                auth: None,
                username: None,
                password: None,
                password_file: None,
                credential: None,
                ca_certificate: None,
            });
            inputs.repositories.len() - 1
        }
    };
    let repo = &mut inputs.repositories[index];
    for (key, field, stored) in fields {
        let origin = Origin::setting(key);
        match field {
            SourceField::Url => repo.url = at(text_of(key, stored)?.to_string(), &origin),
            SourceField::Priority => {
                let text = text_of(key, stored)?;
                let value = text.trim().parse::<i64>().map_err(|_| {
                    invalid(&origin, key, format!("{text:?} is not a whole number"))
                })?;
                repo.priority = Some(at(value, &origin));
            }
            SourceField::Username => {
                repo.username = Some(at(text_of(key, stored)?.to_string(), &origin))
            }
            SourceField::Auth => repo.auth = Some(at(text_of(key, stored)?.to_string(), &origin)),
            SourceField::Password | SourceField::CryptPassword => {
                let Stored::Credential { credential } = stored else {
                    return Err(invalid(
                        &origin,
                        key,
                        "kept in clear by an earlier version; the daemon moves it to \
                         credentials/ when it starts, or send the key again",
                    ));
                };
                repo.password_file =
                    Some(at(credential_path(state_dir, key, credential)?, &origin));
                repo.credential = None;
                repo.password = None;
            }
            SourceField::Certificate => {
                let path = match stored {
                    Stored::Credential { credential } => {
                        credential_path(state_dir, key, credential)?
                    }
                    Stored::Text(path) => PathBuf::from(path),
                };
                repo.ca_certificate = Some(at(path, &origin));
            }
        }
    }
    Ok(())
}

fn at<T>(value: T, origin: &Origin) -> Sourced<T> {
    Sourced {
        value,
        origin: origin.clone(),
    }
}

fn credential_path(state_dir: &Path, key: &str, name: &str) -> Result<PathBuf, ConfigError> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') {
        return Err(invalid(
            &Origin::setting(key),
            key,
            format!("{name:?} is not a credential file name"),
        ));
    }
    Ok(state_dir.join(CREDENTIALS_DIR).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn secrets_go_to_private_files_and_never_into_settings_json() {
        let dir = tempfile::tempdir().unwrap();
        let change = Change::prepare(
            dir.path(),
            &Overrides::default(),
            &values(&[
                ("update.external_binary_source3.password", "pa55-word"),
                ("update.external_binary_source3.certificate", PEM),
                ("update.splay", "1h"),
            ]),
            &[],
        )
        .unwrap();
        let overrides = change.commit().unwrap();
        let json = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(
            !json.contains("pa55-word") && !json.contains("MIIB"),
            "{json}"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path().join(CREDENTIALS_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2);
        for file in &files {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        assert_eq!(Overrides::read(dir.path()).unwrap(), overrides);
        assert_eq!(
            overrides
                .shown("update.external_binary_source3.password")
                .as_deref(),
            Some("***")
        );
    }

    #[test]
    fn removing_a_key_removes_its_file_and_abandoning_a_change_its_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let key = "update.external_binary_source0.password";
        let first = Change::prepare(
            dir.path(),
            &Overrides::default(),
            &values(&[(key, "a")]),
            &[],
        )
        .unwrap()
        .commit()
        .unwrap();
        let count = || {
            std::fs::read_dir(dir.path().join(CREDENTIALS_DIR))
                .unwrap()
                .count()
        };
        assert_eq!(count(), 1);
        Change::prepare(dir.path(), &first, &values(&[(key, "b")]), &[])
            .unwrap()
            .abandon();
        assert_eq!(count(), 1, "an abandoned change leaves the old file alone");
        let second = Change::prepare(dir.path(), &first, &values(&[(key, "b")]), &[])
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(count(), 1, "the replaced password's file is gone");
        Change::prepare(dir.path(), &second, &BTreeMap::new(), &[key.to_string()])
            .unwrap()
            .commit()
            .unwrap();
        assert_eq!(count(), 0);
    }

    #[test]
    fn values_are_one_bounded_line_except_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let none = Overrides::default();
        for (key, value, needle) in [
            ("update.splay", "1h\nupdate.retries=9", "single line"),
            (
                "update.external_binary_source1.url",
                &"x".repeat(MAX_VALUE + 1),
                "at most",
            ),
            (
                "update.external_binary_source1.certificate",
                "relative/ca.pem",
                "absolute path",
            ),
            ("update.nonsense", "1", "unknown key"),
            ("update.retries", "many", "whole number"),
        ] {
            let err =
                Change::prepare(dir.path(), &none, &values(&[(key, value)]), &[]).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        assert!(
            Change::prepare(
                dir.path(),
                &none,
                &values(&[("update.external_binary_source1.certificate", PEM)]),
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn crypt_password_accepts_the_password_or_its_base64_form() {
        let key = "update.external_binary_source0.crypt_password";
        assert_eq!(
            decode_password(key, SourceField::CryptPassword, "base64:c2VjcmV0").unwrap(),
            "secret"
        );
        assert_eq!(
            decode_password(key, SourceField::CryptPassword, "plain").unwrap(),
            "plain"
        );
        assert!(decode_password(key, SourceField::CryptPassword, "base64:!!").is_err());
    }

    #[test]
    fn resets_name_keys_repositories_or_everything() {
        let dir = tempfile::tempdir().unwrap();
        let current = Change::prepare(
            dir.path(),
            &Overrides::default(),
            &values(&[
                ("update.external_binary_source2.url", "https://a.example/"),
                ("update.external_binary_source2.priority", "5"),
                ("update.splay", "1m"),
            ]),
            &[],
        )
        .unwrap()
        .next;
        let change = Change::prepare(
            dir.path(),
            &current,
            &BTreeMap::new(),
            &["update.external_binary_source2".into(), "command:x".into()],
        )
        .unwrap();
        assert_eq!(change.next.keys().collect::<Vec<_>>(), ["update.splay"]);
        assert_eq!(change.other_resets, ["command:x"]);
        let all = Change::prepare(dir.path(), &current, &BTreeMap::new(), &["*".into()]).unwrap();
        assert!(all.next.is_empty() && all.reset_all);
    }
}
