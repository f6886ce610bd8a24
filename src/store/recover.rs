//! Recovery from a journal that cannot be read: the state is rebuilt from what is on disk (the
//! `current` links and the complete versions), and the bad file is kept as
//! `state.json.corrupt` for whoever wants to know what happened. No active app is lost: the
//! links are the truth, the journal only remembers why. The same rebuild serves one app whose
//! record was set aside ([`super::journal`]).

use std::path::Path;

use super::{AppRecord, AppState, State, Store, StoreError, io_error};
use crate::config::SetAside;
use crate::manifest::compare_versions;

impl Store {
    pub(super) fn recover(&self, bad: &Path, reason: &str) -> Result<State, StoreError> {
        let kept = bad.with_file_name("state.json.corrupt");
        std::fs::rename(bad, &kept).map_err(io_error(bad))?;
        tracing::error!(
            "{}: not a valid state journal ({reason}); kept it as {} and rebuilt the state from {}",
            bad.display(),
            kept.display(),
            self.apps_dir.display()
        );
        let mut state = State::default();
        let mut apps = self.apps_on_disk();
        apps.sort();
        state.apps = apps
            .iter()
            .filter_map(|app| self.record_from_disk(app))
            .collect();
        state.set_aside.push(SetAside {
            name: super::layout::STATE_FILE.into(),
            reason: format!(
                "not a valid state journal ({reason}); kept as {}, the apps were rebuilt from \
                 {} and the command queue is empty",
                kept.display(),
                self.apps_dir.display()
            ),
        });
        self.save(&state)?;
        Ok(state)
    }

    /// What the disk says of `app`: installed at its `current` version, else its newest
    /// complete version downloaded; `None` when nothing of it is there.
    pub(super) fn record_from_disk(&self, app: &str) -> Option<AppRecord> {
        let active = self
            .current_version(app)
            .filter(|v| self.is_complete(app, v));
        let newest = self
            .versions(app)
            .into_iter()
            .max_by(|a, b| compare_versions(a, b));
        let version = active.clone().or(newest)?;
        let mut record = AppRecord::new(app, &version);
        record.state = if active.is_some() {
            AppState::Installed
        } else {
            AppState::Downloaded
        };
        record.active_version = active;
        Some(record)
    }
}
