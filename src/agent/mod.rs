//! The agent's reconcile logic: from a wanted state (IDF) to verified, staged and activated
//! versions. `plan` resolves versions and manifests, `deliver` runs the transfers,
//! `activate` swaps versions in (with the hook) and removes what left the IDF, `update` is the
//! Update command that strings them together, and `lifecycle` is the state machine every step
//! goes through.
//!
//! The agent decides what to fetch and when to activate; it never speaks HTTP itself
//! (`repository`, `transfer`) and never lays out files itself (`store`).

mod activate;
pub mod cancel;
mod deliver;
mod hook;
pub mod lifecycle;
pub mod plan;
mod update;
pub mod wanted;

use std::sync::Arc;

use crate::bandwidth::Bandwidth;
use crate::config::Settings;
use crate::idf::Idf;
use crate::repository::{Repository, RepositoryError};
use crate::store::{AppState, Store, StoreError};
use crate::transfer::RetryPolicy;
use lifecycle::Event;
use plan::PlannedApp;
pub use update::{InformUser, UpdateOptions};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error("no repositories are configured (add a [[repository]] table)")]
    NoRepositories,
    #[error("cancelled")]
    Cancelled,
}

/// How a command ended, per app.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Transferred (delivery) or activated (update, boot).
    pub done: Vec<String>,
    /// Already in the wanted state.
    pub unchanged: Vec<String>,
    pub failed: Vec<(String, String)>,
    /// The IGEL status text the command ended with.
    pub status: String,
    /// The user postponed the installation (`Update deferred`).
    pub deferred: bool,
    /// Activated versions ("app version") whose app.json asks for a reboot. Whoever ran the
    /// command calls [`Agent::reboot_if_wanted`] once the outcome is recorded, so that a
    /// reboot never cuts off the end of the command (its status, its place in the queue).
    pub reboot_for: Vec<String>,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Why a command that a crash or a kill ended did not finish (found at the next start).
pub const INTERRUPTED: &str = "interrupted: the agent stopped before the command ended \
     (partial downloads are kept and resume)";

pub struct Agent {
    settings: Settings,
    store: Arc<Store>,
    bandwidth: Arc<Bandwidth>,
    /// Visible repositories in the order they are tried.
    repositories: Vec<Arc<Repository>>,
    policy: RetryPolicy,
    cancel: Arc<cancel::Cancel>,
    /// Repositories found unreachable during the command that runs.
    unreachable: Arc<crate::transfer::retry::Unreachable>,
    /// Whose words the status texts of the command that runs use.
    command: parking_lot::Mutex<crate::report::Command>,
}

impl Agent {
    /// An agent over an open store; call [`Agent::recover`] before its first command.
    pub fn new(
        settings: Settings,
        store: Arc<Store>,
        bandwidth: Arc<Bandwidth>,
    ) -> Result<Agent, AgentError> {
        let repositories = crate::repository::build_all(&settings, false)?;
        let policy = RetryPolicy {
            retries: settings.update.retries,
            base: settings.update.retry_backoff,
        };
        let agent = Agent {
            settings,
            store,
            bandwidth,
            repositories,
            policy,
            cancel: Arc::default(),
            unreachable: Arc::default(),
            command: parking_lot::Mutex::default(),
        };
        Ok(agent)
    }

    /// The agent stops its command when `cancel` is requested (the daemon keeps the other
    /// end).
    pub fn with_cancel(mut self, cancel: Arc<cancel::Cancel>) -> Agent {
        self.cancel = cancel;
        self
    }

    /// Runs planning or transfers unless the command is cancelled first; then the apps that
    /// were being transferred are `download-failed` with the reason, and so is the status.
    async fn unless_cancelled<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, AgentError> {
        if let Some(out) = self.cancel.run(work).await {
            return Ok(out);
        }
        let reason = self.cancel.reason();
        let transferring: Vec<String> = self
            .store
            .snapshot()
            .apps
            .into_iter()
            .filter(|a| matches!(a.state, AppState::Downloading | AppState::Assigned))
            .map(|a| a.name)
            .collect();
        for app in transferring {
            self.transition(&app, Event::TransferFailed, Some(reason.clone()))?;
        }
        let status = crate::report::StatusText::failed(self.words(), &reason);
        tracing::warn!("{status}; partial downloads are kept");
        self.set_status(&status)?;
        Err(AgentError::Cancelled)
    }

    /// A command starts: its status texts use `command`'s words, and no repository is known
    /// to be unreachable yet.
    fn begin(&self, command: crate::report::Command) {
        *self.command.lock() = command;
        self.unreachable.clear();
    }

    fn words(&self) -> crate::report::Command {
        *self.command.lock()
    }

    /// Records that the command that ran was stopped from outside (the daemon stops, or a
    /// crash ended it): apps still `downloading` become `download-failed` with `reason`, and a
    /// status that says a command is in progress becomes its failure. Nothing then claims a
    /// transfer that no process is doing. Partial downloads stay for the next run to resume.
    pub fn record_interruption(&self, reason: &str) -> Result<(), AgentError> {
        let state = self.store.snapshot();
        let downloading: Vec<String> = state
            .apps
            .iter()
            .filter(|a| a.state == AppState::Downloading)
            .map(|a| a.name.clone())
            .collect();
        for app in downloading {
            self.transition(&app, Event::TransferFailed, Some(reason.to_string()))?;
        }
        if let Some(status) = state.interrupted_status(reason) {
            tracing::warn!("{status}");
            self.set_status(&status)?;
        }
        Ok(())
    }

    /// Before the first command: roll back an activation a crash interrupted, so every app is
    /// at a version that completed its activation, and apply the activation setting.
    pub fn recover(&self) -> Result<(), AgentError> {
        self.roll_back_interrupted()?;
        self.record_interruption(INTERRUPTED)?;
        self.apply_policy()
    }

    /// Whether every repository used for downloads can authenticate from this process (a
    /// systemd credential is there only under systemd).
    pub fn check_ready(&self) -> Result<(), AgentError> {
        for repo in &self.repositories {
            repo.ready()?;
        }
        Ok(())
    }

    fn require_repositories(&self) -> Result<(), AgentError> {
        if self.settings.repositories.is_empty() {
            return Err(AgentError::NoRepositories);
        }
        Ok(())
    }

    /// Moves an app through the state machine and logs the change (one line per change).
    /// A transition the current state does not allow is logged and ignored.
    fn transition(&self, app: &str, event: Event, error: Option<String>) -> Result<(), StoreError> {
        // Errors carry what servers said: never raw into the journal, the log or the UMS.
        let error = error.map(|e| crate::report::clean(&e).into_owned());
        self.store.update(|s| {
            let Some(record) = s.app_mut(app) else { return };
            match record.state.on(event) {
                Ok(next) => {
                    if next != record.state {
                        let line = match &error {
                            Some(e) => format!("{app} {}: {} ({e})", record.version, next.as_str()),
                            None => format!("{app} {}: {}", record.version, next.as_str()),
                        };
                        if error.is_some() {
                            tracing::error!(app = %app, version = %record.version, state = next.as_str(), "{line}");
                        } else {
                            tracing::info!(app = %app, version = %record.version, state = next.as_str(), "{line}");
                        }
                    }
                    record.state = next;
                    record.error = error;
                }
                Err(e) => tracing::warn!(app = %app, "{app} {}: {e}", record.version),
            }
        })
    }

    /// "Activate after installation": on, staged versions wait for the next boot; off, for the
    /// Update command. A change of the setting moves the versions already staged.
    pub fn apply_policy(&self) -> Result<(), AgentError> {
        let at_boot = self.settings.update.activate_after_installation;
        let waiting = if at_boot {
            AppState::Downloaded
        } else {
            AppState::MarkedForInstallation
        };
        let apps: Vec<String> = self
            .store
            .snapshot()
            .apps
            .into_iter()
            .filter(|a| a.state == waiting)
            .map(|a| a.name)
            .collect();
        for app in apps {
            self.transition(&app, Event::PolicyChanged { at_boot }, None)?;
        }
        Ok(())
    }

    /// Resolves versions and fetches the manifests of every wanted app.
    async fn plan(&self, idf: &Idf) -> (Vec<PlannedApp>, Vec<(String, String)>) {
        let (mut planned, mut failed) = (Vec::new(), Vec::new());
        for wanted in &idf.apps {
            let (repos, policy, down) = (&self.repositories, &self.policy, &*self.unreachable);
            let result = match plan::resolve_version(repos, policy, down, wanted).await {
                Ok(resolved) => plan::fetch_manifest(repos, policy, down, &resolved).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(p) => planned.push(p),
                Err(e) => failed.push((e.app, e.reason)),
            }
        }
        (planned, failed)
    }

    fn set_status(&self, status: &crate::report::StatusText) -> Result<(), StoreError> {
        let status = crate::report::clean(&status.to_string()).into_owned();
        self.store.update(|s| s.update_status = Some(status))
    }
}
