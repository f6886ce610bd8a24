//! The `settings` command (DESIGN 7), the same with or without the daemon: IGEL registry
//! keys are staged ([`Change`]), the whole configuration they give is validated (the files,
//! every persisted setting, every repository client, hidden ones included), and only then
//! persisted. A rejected change leaves nothing behind, on disk or in memory. Resetting names
//! a key, a repository (`update.external_binary_source<N>`), something set aside (as
//! `status` names it), or `*` for everything.

use std::collections::BTreeMap;

use crate::config::overrides::{self, Change, Overrides, ReadProblem};
use crate::config::{ConfigSource, Settings};
use crate::store::Store;

/// Validates and persists a change; returns the settings now in force.
pub fn change(
    source: &ConfigSource,
    store: &Store,
    values: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<Settings, String> {
    let state_dir = store.state_dir();
    let (current, invalid_file) = match Overrides::read(state_dir) {
        Ok(current) => (current, false),
        Err(ReadProblem::Invalid(_)) => (Overrides::default(), true),
        Err(ReadProblem::Unreadable(reason)) => return Err(reason),
    };
    let change = Change::prepare(state_dir, &current, values, reset)?;
    let notices: Vec<String> = store
        .snapshot()
        .set_aside
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let unknown: Vec<&String> = change
        .other_resets
        .iter()
        .filter(|name| !notices.contains(name) && name.as_str() != overrides::FILE)
        .collect();
    if let Some(name) = unknown.first() {
        let message = format!(
            "nothing to reset is named {name:?}: give a registry key (update.<key>, \
             update.external_binary_source<N>.<field>), a repository \
             (update.external_binary_source<N>), a name `status` lists as set aside, or *"
        );
        change.abandon();
        return Err(message);
    }
    let settings = match validate(source, &change) {
        Ok(settings) => settings,
        Err(e) => {
            change.abandon();
            return Err(e);
        }
    };
    if invalid_file {
        // What could not be read is kept for whoever wants to know, not overwritten.
        let path = state_dir.join(overrides::FILE);
        let _ = std::fs::rename(&path, path.with_extension("json.set-aside"));
    }
    let resets = change.other_resets.clone();
    let all = change.reset_all;
    change
        .commit()
        .map_err(|e| format!("cannot save the settings: {e}"))?;
    store
        .forget_notices(&resets, all)
        .map_err(|e| format!("cannot update the journal: {e}"))?;
    Ok(settings)
}

/// The configuration the change gives, with every repository client built from it.
fn validate(source: &ConfigSource, change: &Change) -> Result<Settings, String> {
    let settings = source
        .load_with(&change.next, &change.touched)
        .map_err(|e| e.to_string())?;
    crate::repository::build_all(&settings, true).map_err(|e| e.to_string())?;
    Ok(settings)
}
