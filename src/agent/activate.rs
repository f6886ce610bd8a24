//! Activation (DESIGN 6): swap an app's `current` link to the staged version, run the hook,
//! and on failure put the link back. Also removal of apps that left the IDF, clean-up of old
//! versions (the previous one stays for rollback), the reboot an app may ask for, and the
//! roll-back of an activation a crash interrupted.
//!
//! Order matters for crash safety: the version to go back to is written to the journal before
//! the link moves, and the journal says "installed" only after the hook succeeded. A crash in
//! between leaves the link at a complete version and the journal knowing how to undo it.

use super::hook;
use super::lifecycle::Event;
use super::{Agent, AgentError, Outcome};
use crate::config::RebootPolicy;
use crate::manifest::Manifest;
use crate::store::{Activation, AppState, StoreError};

impl Agent {
    /// Activates every staged version for which `eligible(state)` holds and removes the apps
    /// marked for removal. Each app on its own: one failure does not stop the others.
    pub(super) async fn activate_staged(
        &self,
        eligible: impl Fn(AppState) -> bool,
    ) -> Result<Outcome, AgentError> {
        let mut outcome = Outcome::default();
        for record in self.store.snapshot().apps {
            if record.state == AppState::MarkedForRemoval {
                match self.remove(&record.name) {
                    Ok(()) => outcome.done.push(record.name),
                    Err(e) => outcome.failed.push((record.name, e.to_string())),
                }
                continue;
            }
            if !record.state.is_staged() || !eligible(record.state) {
                continue;
            }
            match self.activate(&record.name).await {
                Ok(reboot) => {
                    if reboot {
                        outcome
                            .reboot_for
                            .push(format!("{} {}", record.name, record.version));
                    }
                    outcome.done.push(record.name);
                }
                Err(reason) => outcome.failed.push((record.name, reason)),
            }
        }
        Ok(outcome)
    }

    /// Activates the staged version of one app. `Ok(true)` when its app.json asks for a reboot.
    async fn activate(&self, app: &str) -> Result<bool, String> {
        let store_err = |e: StoreError| e.to_string();
        let Some(record) = self
            .store
            .snapshot()
            .apps
            .into_iter()
            .find(|a| a.name == app)
        else {
            return Err(format!("{app}: no such app"));
        };
        let version = record.version.clone();
        // New content under the active version's own name (a pin that differs from what an
        // earlier delivery brought): swapped in whole, the old content kept for a rollback.
        let replacing =
            self.store
                .pending_replacement(app, &version, record.wanted_app_json.as_deref());
        if !self.store.is_complete(app, &version) {
            let reason = format!("version {version} is not complete on disk");
            self.transition(app, Event::ActivationFailed, Some(reason.clone()))
                .map_err(store_err)?;
            return Err(reason);
        }
        // `current` is where a failure goes back to; `previous` is what the hook is told.
        let current = self.store.current_version(app);
        let previous = current.clone().filter(|v| v != &version);
        self.store
            .update(|s| {
                if let Some(r) = s.app_mut(app) {
                    r.activating = Some(Activation {
                        previous: current.clone(),
                        replacing: replacing.clone(),
                    });
                }
            })
            .map_err(store_err)?;
        tracing::info!(app = %app, version = %version,
            "{app} {version}: activating (previous: {})", previous.as_deref().unwrap_or("none"));
        let swapped = if replacing.is_some() {
            self.store.exchange_replacement(app, &version)
        } else {
            self.store.point_current(app, Some(&version))
        };
        if let Err(e) = swapped {
            // Nothing moved (a filesystem without RENAME_EXCHANGE, a full disk): say so once,
            // never leave the activation half-recorded.
            let reason = e.to_string();
            self.store
                .update(|s| {
                    if let Some(r) = s.app_mut(app) {
                        r.activating = None;
                    }
                })
                .map_err(store_err)?;
            self.transition(app, Event::ActivationFailed, Some(reason.clone()))
                .map_err(store_err)?;
            return Err(reason);
        }
        crate::failpoint::hit("activate.after_swap");
        if let Err(reason) = self.run_hook(app, &version, previous.as_deref()).await {
            if replacing.is_some() {
                self.store
                    .exchange_replacement(app, &version)
                    .map_err(store_err)?;
            } else {
                self.store
                    .point_current(app, current.as_deref())
                    .map_err(store_err)?;
            }
            self.store
                .update(|s| {
                    if let Some(r) = s.app_mut(app) {
                        r.activating = None;
                    }
                })
                .map_err(store_err)?;
            self.transition(app, Event::ActivationFailed, Some(reason.clone()))
                .map_err(store_err)?;
            return Err(reason);
        }
        crate::failpoint::hit("activate.after_hook");
        // One journal write: "no activation under way" and "installed" together, so a crash
        // cannot leave a completed swap that looks undone.
        self.store
            .update(|s| {
                if let Some(r) = s.app_mut(app) {
                    r.activating = None;
                    r.active_version = Some(version.clone());
                    if previous.is_some() {
                        r.previous_version = previous.clone();
                    }
                    match r.state.on(Event::Activated) {
                        Ok(next) => {
                            r.state = next;
                            r.error = None;
                        }
                        Err(e) => tracing::warn!(app = %app, "{app} {version}: {e}"),
                    }
                }
            })
            .map_err(store_err)?;
        tracing::info!(app = %app, version = %version, state = "installed", "{app} {version}: installed");
        if replacing.is_some() {
            // The old content, now in staging.
            if let Err(e) = self.store.remove_staged_copy(app, &version) {
                tracing::warn!(app = %app, "{app} {version}: cannot remove the replaced content: {e}");
            }
        }
        self.remove_old_versions(app, &version);
        Ok(self.wants_reboot(app, &version))
    }

    async fn run_hook(
        &self,
        app: &str,
        version: &str,
        previous: Option<&str>,
    ) -> Result<(), String> {
        let Some(argv) = hook::activation_hook(&self.settings.update.activate_hook) else {
            return Ok(());
        };
        let env = [
            ("APP", app.to_string()),
            ("VERSION", version.to_string()),
            (
                "APP_DIR",
                self.store.version_dir(app, version).display().to_string(),
            ),
            ("PREVIOUS_VERSION", previous.unwrap_or("").to_string()),
        ];
        hook::run(
            "activation hook",
            &argv,
            &env,
            self.settings.update.activate_hook_timeout,
            &[0],
        )
        .await
        .map(|_| ())
    }

    /// Keeps the active and the previous version; everything else of the app goes.
    fn remove_old_versions(&self, app: &str, active: &str) {
        let previous = self
            .store
            .snapshot()
            .apps
            .into_iter()
            .find(|a| a.name == app)
            .and_then(|a| a.previous_version);
        for version in self.store.versions(app) {
            if version != active && Some(&version) != previous.as_ref() {
                match self.store.remove_version(app, &version) {
                    Ok(()) => {
                        tracing::info!(app = %app, version = %version, "{app} {version}: removed (neither active nor previous)")
                    }
                    Err(e) => tracing::warn!(app = %app, "cannot remove an old version: {e}"),
                }
            }
        }
    }

    fn remove(&self, app: &str) -> Result<(), StoreError> {
        self.store.remove_app(app)?;
        self.store.update(|s| s.apps.retain(|a| a.name != app))?;
        tracing::info!(app = %app, state = "removed", "{app}: removed (no longer in the IDF)");
        Ok(())
    }

    fn wants_reboot(&self, app: &str, version: &str) -> bool {
        std::fs::read(self.store.version_dir(app, version).join("app.json"))
            .ok()
            .and_then(|b| Manifest::parse(&b).ok())
            .is_some_and(|m| m.reboot)
    }

    /// Follows `reboot_after_activation` when the command's activated versions ask for a
    /// reboot. Called last, after the outcome is recorded: `systemctl reboot` stops the
    /// daemon within moments.
    pub async fn reboot_if_wanted(&self, outcome: &Outcome) {
        if !outcome.reboot_for.is_empty() {
            self.reboot(&outcome.reboot_for).await;
        }
    }

    async fn reboot(&self, apps: &[String]) {
        let update = &self.settings.update;
        let why = apps.join(", ");
        match update.reboot_after_activation {
            RebootPolicy::Never => {
                tracing::warn!(
                    "a reboot is needed to complete {why} (reboot_after_activation = \"never\")"
                );
                return;
            }
            RebootPolicy::Ask => {
                let message = format!("A restart is needed to complete the update of {why}.");
                let timeout_s = update.reboot_timeout.as_secs();
                if hook::ask_user(&update.notify_command, message, timeout_s, true).await
                    == hook::Answer::Later
                {
                    tracing::warn!("the user postponed the reboot needed by {why}");
                    return;
                }
            }
            RebootPolicy::Immediately => {}
        }
        tracing::info!("rebooting for {why}: {}", update.reboot_command.join(" "));
        if let Err(e) = hook::run(
            "reboot command",
            &update.reboot_command,
            &[],
            std::time::Duration::from_secs(60),
            &[0],
        )
        .await
        {
            tracing::error!("{e}");
        }
    }

    /// An activation a crash interrupted: put `current` back where it was, so the version is
    /// activated again (with its hook) at the next trigger instead of left half-done.
    pub(super) fn roll_back_interrupted(&self) -> Result<(), AgentError> {
        for record in self.store.snapshot().apps {
            let Some(activation) = record.activating else {
                continue;
            };
            tracing::warn!(app = %record.name, version = %record.version,
                "{} {}: an activation was interrupted; going back to {}", record.name, record.version,
                activation.previous.as_deref().unwrap_or("no active version"));
            match &activation.replacing {
                Some(new) => {
                    let live = self.store.version_dir(&record.name, &record.version);
                    if self.store.app_json_sha256(&live).as_ref() == Some(new) {
                        self.store
                            .exchange_replacement(&record.name, &record.version)?;
                    }
                }
                None => self
                    .store
                    .point_current(&record.name, activation.previous.as_deref())?,
            }
            self.store.update(|s| {
                if let Some(r) = s.app_mut(&record.name) {
                    r.activating = None;
                }
            })?;
        }
        // The old content of a replacement whose activation completed but whose clean-up a
        // crash cut short.
        for record in self.store.snapshot().apps {
            if record.state == AppState::Installed
                && record.activating.is_none()
                && self
                    .store
                    .staging_dir(&record.name, &record.version)
                    .join("app.json")
                    .exists()
            {
                self.store
                    .remove_staged_copy(&record.name, &record.version)?;
            }
        }
        Ok(())
    }
}
