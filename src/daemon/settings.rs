//! The `settings` command (DESIGN 7), the same with or without the daemon: IGEL registry
//! keys are staged ([`Change`]), the whole configuration they give is validated (the files,
//! every persisted setting, every repository client, hidden ones included), and only then
//! persisted. A rejected change leaves nothing behind, on disk or in memory. Resetting names
//! a key, a repository (`update.external_binary_source<N>`), something set aside (as
//! `status` names it), or `*` for everything.
//!
//! The daemon holds its configuration lock from [`prepare`] to [`Prepared::commit`], so two
//! changes (or a change and a SIGHUP) never interleave.

use std::collections::BTreeMap;

use crate::config::overrides::{self, Change, Overrides, ReadProblem};
use crate::config::{ConfigSource, Settings};
use crate::store::Store;

/// A validated change, not yet in force.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration the change gives.
    pub settings: Settings,
    change: Change,
    /// `settings.json` could not be read: it is kept aside before it is replaced.
    invalid_file: bool,
}

/// Validates a change; nothing is in force until [`Prepared::commit`].
pub fn prepare(
    source: &ConfigSource,
    store: &Store,
    values: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<Prepared, String> {
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
    let unknown = change
        .other_resets
        .iter()
        .find(|name| !notices.contains(name) && name.as_str() != overrides::FILE)
        .cloned();
    if let Some(name) = unknown {
        change.abandon();
        return Err(format!(
            "nothing to reset is named {name:?}: give a registry key (update.<key>, \
             update.external_binary_source<N>.<field>), a repository \
             (update.external_binary_source<N>), a name `status` lists as set aside, or *"
        ));
    }
    match source.load_with(&change.next, &change.touched) {
        Ok(settings) => Ok(Prepared {
            settings,
            change,
            invalid_file,
        }),
        Err(e) => {
            change.abandon();
            Err(e.to_string())
        }
    }
}

impl Prepared {
    /// Drops the change: what it staged is removed.
    pub fn abandon(self) {
        self.change.abandon();
    }

    /// Puts the change in force (one atomic replace of `settings.json`) and forgets the
    /// notices it reset; returns the settings now in force.
    pub fn commit(self, store: &Store) -> Result<Settings, String> {
        let state_dir = store.state_dir();
        if self.invalid_file {
            // What could not be read is kept for whoever wants to know.
            let path = state_dir.join(overrides::FILE);
            let _ = std::fs::copy(&path, path.with_extension("json.set-aside"));
        }
        let resets = self.change.other_resets.clone();
        let all = self.change.reset_all;
        self.change
            .commit()
            .map_err(|e| format!("cannot save the settings: {e}"))?;
        if let Err(e) = store.forget_notices(&resets, all) {
            // The settings are in force; a notice that stays is only a notice.
            tracing::warn!("settings: cannot forget the notices reset: {e}");
        }
        Ok(self.settings)
    }
}

/// Validates and persists a change (without the daemon: under the state lock).
pub fn change(
    source: &ConfigSource,
    store: &Store,
    values: &BTreeMap<String, String>,
    reset: &[String],
) -> Result<Settings, String> {
    prepare(source, store, values, reset)?.commit(store)
}
