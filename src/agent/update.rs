//! The Update command (DESIGN 7) and boot-time activation. An update is performed only if the
//! IDF changed or an app is not in place (`--force` overrides); apps that left the IDF are
//! marked for removal; `--clean` first deletes every inactive version and partial download;
//! then everything is transferred and, only if every transfer succeeded, activated. The status
//! goes through IGEL's words: Transfer started, Transfer completed, Installation started,
//! Installation completed, then Update successful / Update failed / Update not necessary.

use super::lifecycle::Event;
use super::plan::PlannedApp;
use super::{Agent, AgentError, Outcome};
use crate::idf::Idf;
use crate::report::{self, Phase, StatusText};
use crate::store::{AppState, StoreError};

#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Delete inactive versions and partial downloads first (UMS: "Format system partition").
    pub clean: bool,
    /// Update even if the IDF has not changed.
    pub force: bool,
    /// Only transfer and stage (the `assign` command): activation follows the setting.
    pub stage_only: bool,
    /// Ask the user through `notify_command` before activating.
    pub inform_user: Option<InformUser>,
}

/// What the user is asked before an activation.
#[derive(Debug, Clone)]
pub struct InformUser {
    /// Seconds to answer; 0 = until answered.
    pub timeout_s: u64,
    /// Whether the user may postpone (exit 10 of the notify command).
    pub can_cancel: bool,
}

impl Agent {
    pub async fn update(&self, idf: &Idf, options: &UpdateOptions) -> Result<Outcome, AgentError> {
        self.require_repositories()?;
        // The transfer of an assigned IDF stages only: it speaks as a Delivery, so its end
        // never reads as an update still in progress.
        self.begin(if options.stage_only {
            report::Command::Delivery
        } else {
            report::Command::Update
        });
        let (planned, failed) = self.unless_cancelled(self.plan(idf)).await?;
        // The digest of the assigned IDF with resolved versions; an app that could not be
        // planned counts as written, so a failed update still shows which IDF it was.
        let digest = Idf {
            apps: idf
                .apps
                .iter()
                .map(|w| {
                    planned
                        .iter()
                        .find(|p| p.wanted.name == w.name)
                        .map_or_else(|| w.clone(), |p| p.wanted.clone())
                })
                .collect(),
        }
        .digest();
        if failed.is_empty() && !options.force && self.in_place(&digest, &planned) {
            let status = StatusText::NotNecessary;
            tracing::info!("{status}: the IDF has not changed and every app is in place");
            self.set_status(&status)?;
            // What an earlier failed attempt said of these apps no longer applies.
            self.store.update(|s| {
                for a in s.apps.iter_mut() {
                    a.error = None;
                }
            })?;
            return Ok(Outcome {
                unchanged: planned.iter().map(|p| p.manifest.name.clone()).collect(),
                status: status.to_string(),
                ..Outcome::default()
            });
        }
        self.assign(idf, &digest)?;
        if options.clean {
            self.clean()?;
        }
        let mut outcome = self
            .unless_cancelled(self.transfer(&planned, failed))
            .await??;
        if !outcome.is_success() {
            return Ok(outcome);
        }
        let status = StatusText::in_progress(self.words(), Phase::TransferCompleted);
        tracing::info!("{status}");
        self.set_status(&status)?;
        if options.stage_only {
            let status = StatusText::Successful(report::Command::Delivery);
            tracing::info!("{status}");
            self.set_status(&status)?;
            outcome.status = status.to_string();
            return Ok(outcome);
        }
        if let Some(inform) = &options.inform_user
            && !self.user_agrees(inform, &planned).await
            && !self.cancel.is_requested()
        {
            let status = StatusText::Deferred;
            tracing::info!("{status}: the user postponed the installation");
            self.set_status(&status)?;
            outcome.status = status.to_string();
            outcome.deferred = true;
            return Ok(outcome);
        }
        if !self.cancel.enter_installation() {
            return self.unless_cancelled(async {}).await.map(|()| outcome);
        }
        let status = StatusText::in_progress(self.words(), Phase::InstallationStarted);
        tracing::info!("{status}");
        self.set_status(&status)?;
        let activation = self.activate_staged(|_| true).await?;
        outcome.done = activation.done;
        outcome.failed = activation.failed;
        outcome.reboot_for = activation.reboot_for;
        self.finish_installation(&mut outcome, Some(&digest))?;
        Ok(outcome)
    }

    /// Asks the user through `notify_command`: exit 0 = go on, exit 10 = later (only when the
    /// user may cancel). No notify command, or one that fails: log and go on.
    async fn user_agrees(&self, inform: &InformUser, planned: &[PlannedApp]) -> bool {
        let apps: Vec<String> = planned
            .iter()
            .map(|p| format!("{} {}", p.manifest.name, p.manifest.version))
            .collect();
        let message = format!("Updates are ready to install: {}.", apps.join(", "));
        let notify = &self.settings.update.notify_command;
        super::hook::ask_user(notify, message, inform.timeout_s, inform.can_cancel).await
            == super::hook::Answer::Go
    }

    /// `activate --boot`: activates what waits for the boot (and retries failed activations);
    /// never what waits for the Update command.
    pub async fn activate_at_boot(&self) -> Result<Outcome, AgentError> {
        let waiting = |s: AppState| {
            matches!(
                s,
                AppState::MarkedForInstallation | AppState::ActivationFailed
            )
        };
        let pending = self
            .store
            .snapshot()
            .apps
            .iter()
            .any(|a| waiting(a.state) || a.state == AppState::MarkedForRemoval);
        if !pending {
            tracing::info!("nothing to activate at boot");
            return Ok(Outcome::default());
        }
        let status = StatusText::in_progress(self.words(), Phase::InstallationStarted);
        tracing::info!("{status}");
        self.set_status(&status)?;
        let mut outcome = self.activate_staged(waiting).await?;
        let digest = self.store.snapshot().idf_sha256;
        self.finish_installation(&mut outcome, digest.as_deref())?;
        Ok(outcome)
    }

    /// Ends an installation: "Installation completed" and "Update successful" (and the IDF
    /// counts as applied once every app is in place), or "Update failed: ...".
    fn finish_installation(
        &self,
        outcome: &mut Outcome,
        digest: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some((app, reason)) = outcome.failed.first() {
            let status = StatusText::app_failed(self.words(), app, reason);
            tracing::error!("{status}");
            outcome.status = status.to_string();
            return self.set_status(&status);
        }
        let status = StatusText::in_progress(self.words(), Phase::InstallationCompleted);
        tracing::info!("{status}");
        self.set_status(&status)?;
        let successful = StatusText::Successful(report::Command::Update);
        outcome.status = successful.to_string();
        tracing::info!("{successful}");
        let all_installed = self
            .store
            .snapshot()
            .apps
            .iter()
            .all(|a| a.state == AppState::Installed);
        self.store.update(|s| {
            s.update_status = Some(successful.to_string());
            if all_installed && digest.is_some() && digest == s.idf_sha256.as_deref() {
                s.applied_idf_sha256 = digest.map(str::to_string);
            }
        })
    }

    /// The IDF with this digest was fully applied and every app is still at its version.
    fn in_place(&self, digest: &str, planned: &[PlannedApp]) -> bool {
        let state = self.store.snapshot();
        state.applied_idf_sha256.as_deref() == Some(digest)
            && !state
                .apps
                .iter()
                .any(|a| a.state == AppState::MarkedForRemoval)
            && planned.iter().all(|p| {
                let (name, version) = (&p.manifest.name, &p.manifest.version);
                state.apps.iter().any(|a| {
                    &a.name == name && a.state == AppState::Installed && &a.version == version
                }) && self.store.current_version(name).as_ref() == Some(version)
                    && self.store.holds(&p.manifest)
            })
    }

    /// Makes `idf` the wanted state: apps no longer in it are marked for removal (or simply
    /// forgotten when nothing of them was ever installed).
    fn assign(&self, idf: &Idf, digest: &str) -> Result<(), StoreError> {
        let wanted: Vec<&str> = idf.apps.iter().map(|a| a.name.as_str()).collect();
        let leaving: Vec<(String, bool)> = self
            .store
            .snapshot()
            .apps
            .iter()
            .filter(|a| !wanted.contains(&a.name.as_str()))
            .map(|a| {
                (
                    a.name.clone(),
                    a.active_version.is_some() || !self.store.versions(&a.name).is_empty(),
                )
            })
            .collect();
        self.store.update_with_document(Some(idf), |s, stored| {
            s.idf = stored;
            s.idf_sha256 = Some(digest.to_string());
        })?;
        // Partial downloads of apps the IDF no longer wants never resume.
        for app in self.store.staging_apps() {
            if !wanted.contains(&app.as_str()) {
                self.store.remove_superseded_staging(&app, None)?;
                tracing::info!(app = %app, "{app}: partial downloads removed (not in the IDF)");
            }
        }
        for (app, on_disk) in leaving {
            if on_disk {
                self.transition(&app, Event::LeftIdf, None)?;
            } else {
                self.store.remove_app(&app)?;
                self.store.update(|s| s.apps.retain(|a| a.name != app))?;
                tracing::info!(app = %app, "{app}: no longer in the IDF; nothing of it was installed");
            }
        }
        Ok(())
    }

    /// "Format system partition before update": every inactive version and partial download
    /// goes; the active versions stay until they are replaced.
    fn clean(&self) -> Result<(), StoreError> {
        for app in self.store.apps_on_disk() {
            let active = self.store.current_version(&app);
            for version in self.store.versions(&app) {
                if Some(&version) != active.as_ref() {
                    self.store.remove_version(&app, &version)?;
                    tracing::info!(app = %app, version = %version, "{app} {version}: removed by --clean");
                }
            }
        }
        self.store.remove_staging()?;
        self.store.update(|s| {
            for a in &mut s.apps {
                a.files.clear();
                a.previous_version = None;
            }
        })?;
        tracing::info!("--clean: inactive versions and partial downloads removed");
        Ok(())
    }
}
