//! Reading `state.json` so that one bad value never costs the rest (DESIGN 7: the daemon
//! always starts). Each field, each app record and each queued command is read on its own; one
//! that does not validate (a hand edit, a bug, an older format) is set aside with a notice
//! that names it, and the rest is used. An app whose record was set aside is rebuilt from what
//! is on disk. Format 1 (IDFs inline, commands as raw requests) is converted on the way.
//!
//! Only a file that is not a JSON object at all is beyond this; [`super::recover`] rebuilds
//! the state from the apps directory then.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::commands::{
    LegacyCommand, MAX_QUEUED, MAX_QUEUED_BYTES, Queued, QueuedCommand, QueuedUpdate,
};
use super::documents::{self, IdfRef};
use super::{AppRecord, MAX_JOURNAL, STATE_FORMAT, State, Store, StoreError};
use crate::config::SetAside;
use crate::idf::Idf;
use crate::manifest::{check_app_name, check_sha256, check_version};

/// Ids of finished commands remembered for idempotence.
pub const MAX_FINISHED: usize = 500;
/// Notices kept (the newest).
pub const MAX_NOTICES: usize = 50;
const MAX_STATUS_TEXT: usize = 4096;
/// No app holds a petabyte.
const MAX_BYTES: u64 = 1 << 50;
/// How much of a bad value a notice quotes.
const QUOTE: usize = 200;

/// Reads journal bytes as a reader without the lock would (nothing written; stored documents
/// looked for under `state_dir`): the fuzzer's entry.
pub fn parse(bytes: &[u8], state_dir: &Path) -> Result<State, String> {
    Reader {
        state_dir,
        write: false,
        now: Utc::now(),
    }
    .load(bytes)
    .map(|loaded| loaded.state)
}

/// What reading gave: the state, whether it differs from the file (then it is written back),
/// and the apps whose records were set aside (to be rebuilt from disk).
pub(super) struct Loaded {
    pub state: State,
    pub changed: bool,
    pub dropped_apps: Vec<String>,
}

/// Where IDF documents of format 1 go: written (`Some(dir)`, with the lock held) or only
/// named (`None`, for a reader without the lock).
pub(super) struct Reader<'a> {
    pub state_dir: &'a Path,
    pub write: bool,
    pub now: DateTime<Utc>,
}

struct Notes {
    notices: Vec<SetAside>,
}

impl Notes {
    fn add(&mut self, name: String, reason: String, value: Option<&Value>) {
        let reason = match value {
            Some(v) => format!("{reason} (was: {})", quote(v)),
            None => reason,
        };
        tracing::warn!("state.json: {name} set aside: {reason}");
        self.notices.push(SetAside { name, reason });
    }
}

fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= QUOTE {
        return text;
    }
    let mut end = QUOTE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Reads `state.json` without taking the lock and without writing anything (for `status` and
/// `check`). `None` if there is none yet. Values that do not validate are left out and noted
/// as the daemon would set them aside.
pub fn read_state(state_dir: &Path) -> Result<Option<State>, StoreError> {
    let path = super::layout::state_file(state_dir);
    let bytes = match crate::durable::read_regular(&path, MAX_JOURNAL) {
        Ok(b) => b,
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let reader = Reader {
        state_dir,
        write: false,
        now: chrono::Utc::now(),
    };
    reader
        .load(&bytes)
        .map(|loaded| Some(loaded.state))
        .map_err(|reason| StoreError::Corrupt { path, reason })
}

impl Store {
    pub(super) fn load_state(&self) -> Result<State, StoreError> {
        let path = super::layout::state_file(&self.state_dir);
        let bytes = match crate::durable::read_regular(&path, MAX_JOURNAL) {
            Ok(b) => b,
            Err(e) if e.source.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State::default());
            }
            // A FIFO, a directory or something enormous in its place: rebuilt like a
            // journal that does not parse.
            Err(e) => return self.recover(&path, &e.source.to_string()),
        };
        let reader = Reader {
            state_dir: &self.state_dir,
            write: true,
            now: chrono::Utc::now(),
        };
        match reader.load(&bytes) {
            Ok(mut loaded) => {
                for app in &loaded.dropped_apps {
                    if let Some(record) = self.record_from_disk(app)
                        && !loaded.state.apps.iter().any(|a| &a.name == app)
                    {
                        loaded.state.apps.push(record);
                    }
                }
                if loaded.changed {
                    self.save(&loaded.state)?;
                }
                self.collect_documents(&loaded.state);
                Ok(loaded.state)
            }
            Err(reason) => self.recover(&path, &reason),
        }
    }

    /// Forgets the notices named in `names`; returns the names that matched none.
    pub fn forget_notices(&self, names: &[String], all: bool) -> Result<Vec<String>, StoreError> {
        self.update(|s| {
            if all {
                s.set_aside.clear();
            }
            let unknown: Vec<String> = names
                .iter()
                .filter(|n| !s.set_aside.iter().any(|a| &a.name == *n))
                .cloned()
                .collect();
            s.set_aside.retain(|a| !names.contains(&a.name));
            unknown
        })
    }

    /// Notes something set aside (shown by `status` and `check`).
    pub fn note_set_aside(&self, notice: SetAside) -> Result<(), StoreError> {
        self.update(|s| {
            s.set_aside.retain(|a| a.name != notice.name);
            s.set_aside.push(notice);
            let excess = s.set_aside.len().saturating_sub(MAX_NOTICES);
            s.set_aside.drain(..excess);
        })
    }
}

impl Reader<'_> {
    pub(super) fn load(&self, bytes: &[u8]) -> Result<Loaded, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let Value::Object(mut fields) = value else {
            return Err("not a JSON object".into());
        };
        let mut notes = Notes {
            notices: Vec::new(),
        };
        let format = fields.get("format").and_then(Value::as_u64).unwrap_or(1);
        if format > u64::from(STATE_FORMAT) {
            tracing::warn!(
                "state.json was written by a newer version (format {format}); reading what \
                 this version ({STATE_FORMAT}) understands"
            );
        }
        let mut state = State::default();
        let earlier: Vec<SetAside> = take(&mut fields, "set_aside", &mut notes).unwrap_or_default();
        state.idf = self.idf(fields.remove("idf"), &mut notes);
        state.idf_sha256 = digest(&mut fields, "idf_sha256", &mut notes);
        state.applied_idf_sha256 = digest(&mut fields, "applied_idf_sha256", &mut notes);
        state.update_status = take::<String>(&mut fields, "update_status", &mut notes)
            .filter(|s| s.len() <= MAX_STATUS_TEXT);
        let dropped_apps = apps(fields.remove("apps"), &mut state, &mut notes);
        self.commands(fields.remove("commands"), &mut state, &mut notes);
        let finished: VecDeque<String> =
            take(&mut fields, "finished_commands", &mut notes).unwrap_or_default();
        state.finished_commands = finished
            .into_iter()
            .rev()
            .take(MAX_FINISHED)
            .rev()
            .collect();
        let changed = format != u64::from(STATE_FORMAT) || !notes.notices.is_empty();
        state.set_aside = earlier;
        state.set_aside.extend(notes.notices);
        let excess = state.set_aside.len().saturating_sub(MAX_NOTICES);
        state.set_aside.drain(..excess);
        Ok(Loaded {
            state,
            changed,
            dropped_apps,
        })
    }

    fn idf(&self, value: Option<Value>, notes: &mut Notes) -> Option<IdfRef> {
        match value? {
            Value::Null => None,
            Value::String(s) => {
                let checked = IdfRef::from_json(Value::String(s.clone()))
                    .and_then(|r| documents::read(self.state_dir, &r).map(|_| r));
                checked
                    .map_err(|reason| {
                        notes.add(
                            "idf".into(),
                            format!("the assigned IDF cannot be used: {reason}"),
                            None,
                        )
                    })
                    .ok()
            }
            // Format 1: the IDF inline.
            other @ Value::Object(_) => match self.legacy_idf(&other) {
                Ok(r) => Some(r),
                Err(reason) => {
                    notes.add("idf".into(), reason, Some(&other));
                    None
                }
            },
            other => {
                notes.add("idf".into(), "not an IDF".into(), Some(&other));
                None
            }
        }
    }

    fn legacy_idf(&self, value: &Value) -> Result<IdfRef, String> {
        let idf: Idf = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        idf.validate().map_err(|e| e.to_string())?;
        self.put(&idf)
    }

    fn put(&self, idf: &Idf) -> Result<IdfRef, String> {
        let (r, bytes) = IdfRef::of(idf);
        if self.write {
            let dir = self.state_dir.join(documents::DIR);
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            crate::durable::write_atomic(&documents::path(self.state_dir, &r), &bytes)
                .map_err(|e| e.to_string())?;
        }
        Ok(r)
    }

    fn commands(&self, value: Option<Value>, state: &mut State, notes: &mut Notes) {
        let items = match value {
            None | Some(Value::Null) => return,
            Some(Value::Array(items)) => items,
            Some(other) => {
                notes.add(
                    "state:commands".into(),
                    "the command queue is not a list".into(),
                    Some(&other),
                );
                return;
            }
        };
        let mut seen = BTreeSet::new();
        let mut bytes = 0u64;
        let mut counted = BTreeSet::new();
        for (i, item) in items.into_iter().enumerate() {
            let name = item
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("command:#{i}"), |id| format!("command:{id}"));
            let command = match self.command(&item) {
                Ok(c) => c,
                Err(reason) => {
                    notes.add(name, reason, Some(&item));
                    continue;
                }
            };
            if !seen.insert(command.id.clone()) {
                notes.add(name, "the same id is queued twice".into(), None);
                continue;
            }
            if state.commands.len() >= MAX_QUEUED {
                notes.add(
                    name,
                    format!("more than {MAX_QUEUED} commands queued"),
                    None,
                );
                continue;
            }
            if let Some(r) = command.command.idf()
                && counted.insert(r.clone())
            {
                bytes += documents::size(self.state_dir, r);
                if bytes > MAX_QUEUED_BYTES {
                    notes.add(
                        name,
                        format!("the queue's IDFs are over {MAX_QUEUED_BYTES} bytes"),
                        None,
                    );
                    continue;
                }
            }
            state.commands.push(command);
        }
    }

    fn command(&self, item: &Value) -> Result<QueuedCommand, String> {
        let legacy = item.get("request").is_some();
        let command = if legacy {
            let legacy: LegacyCommand =
                serde_json::from_value(item.clone()).map_err(|e| e.to_string())?;
            self.convert(legacy)?
        } else {
            serde_json::from_value::<QueuedCommand>(item.clone()).map_err(|e| e.to_string())?
        };
        command.check(self.now)?;
        // A reader without the lock names a format 1 IDF without storing it.
        if let Some(r) = command.command.idf()
            && (self.write || !legacy)
        {
            documents::read(self.state_dir, r)?;
        }
        Ok(command)
    }

    /// A format 1 command: its IDF becomes a stored document.
    fn convert(&self, legacy: LegacyCommand) -> Result<QueuedCommand, String> {
        let request = legacy.request;
        let idf = match &request.idf {
            Some(idf) => {
                idf.validate().map_err(|e| e.to_string())?;
                Some(self.put(idf)?)
            }
            None => None,
        };
        let command = match request.command.as_str() {
            "assign" => Queued::Assign {
                idf: idf.ok_or("assign without an IDF")?,
            },
            "delivery" => Queued::Delivery { idf },
            "update" => Queued::Update(QueuedUpdate {
                idf,
                idf_url: request.idf_url,
                inform_user: request.inform_user.map(|i| i.timeout_s),
                user_can_cancel: request.user_can_cancel,
                clean: request.clean,
                force: request.force,
            }),
            other => return Err(format!("{other:?} is not a queued command")),
        };
        Ok(QueuedCommand {
            id: legacy.id,
            command,
            not_before: legacy.not_before,
            deferrals: legacy.deferrals,
        })
    }
}

impl IdfRef {
    fn from_json(value: Value) -> Result<IdfRef, String> {
        serde_json::from_value::<IdfRef>(value)
            .map_err(|e| e.to_string())?
            .checked()
    }
}

/// Takes `key` out of `fields`: `None` when absent, null or not of type `T` (then noted).
fn take<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    key: &str,
    notes: &mut Notes,
) -> Option<T> {
    match fields.remove(key)? {
        Value::Null => None,
        value => match serde_json::from_value(value.clone()) {
            Ok(v) => Some(v),
            Err(e) => {
                notes.add(format!("state:{key}"), e.to_string(), Some(&value));
                None
            }
        },
    }
}

fn digest(fields: &mut Map<String, Value>, key: &str, notes: &mut Notes) -> Option<String> {
    let value = take::<String>(fields, key, notes)?;
    match check_sha256(&value) {
        Ok(()) => Some(value),
        Err(reason) => {
            notes.add(format!("state:{key}"), reason, None);
            None
        }
    }
}

/// The app records; returns the names of those set aside (to rebuild from disk).
fn apps(value: Option<Value>, state: &mut State, notes: &mut Notes) -> Vec<String> {
    let items = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            notes.add(
                "state:apps".into(),
                "the app list is not a list".into(),
                Some(&other),
            );
            return Vec::new();
        }
    };
    let mut dropped = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let name = item.get("name").and_then(Value::as_str).map(str::to_string);
        let label = name
            .as_deref()
            .map_or_else(|| format!("app:#{i}"), |n| format!("app:{n}"));
        let record = serde_json::from_value::<AppRecord>(item.clone())
            .map_err(|e| e.to_string())
            .and_then(|r| check_record(&r).map(|()| r));
        match record {
            Ok(r) if state.apps.iter().any(|a| a.name == r.name) => {
                notes.add(label, "the app is listed twice".into(), None);
            }
            Ok(r) => state.apps.push(r),
            Err(reason) => {
                notes.add(label, reason, Some(&item));
                if let Some(name) = name.filter(|n| check_app_name(n).is_ok()) {
                    dropped.push(name);
                }
            }
        }
    }
    dropped
}

fn check_record(r: &AppRecord) -> Result<(), String> {
    check_app_name(&r.name).map_err(|e| format!("name: {e}"))?;
    if !r.version.is_empty() {
        check_version(&r.version).map_err(|e| format!("version: {e}"))?;
    }
    for (field, version) in [
        ("active_version", &r.active_version),
        ("previous_version", &r.previous_version),
    ] {
        if let Some(v) = version {
            check_version(v).map_err(|e| format!("{field}: {e}"))?;
        }
    }
    if let Some(previous) = r.activating.as_ref().and_then(|a| a.previous.as_ref()) {
        check_version(previous).map_err(|e| format!("activating.previous: {e}"))?;
    }
    if let Some(digest) = &r.wanted_app_json {
        check_sha256(digest).map_err(|e| format!("wanted_app_json: {e}"))?;
    }
    if let Some(digest) = r.activating.as_ref().and_then(|a| a.replacing.as_ref()) {
        check_sha256(digest).map_err(|e| format!("activating.replacing: {e}"))?;
    }
    // Sizes come from app.json files, which name at most terabytes.
    if r.bytes_done > MAX_BYTES || r.bytes_total > MAX_BYTES {
        return Err(format!("a byte count over {MAX_BYTES}"));
    }
    for path in r.files.keys() {
        crate::manifest::check_file_path(path).map_err(|e| format!("files: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
