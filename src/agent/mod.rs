//! The agent's reconcile logic: from a wanted state (IDF) to verified versions in the store.
//! It plans (`plan`), runs the transfers with at most `parallel_downloads` files in flight,
//! commits complete versions to the store and records every state change in the journal.
//!
//! The agent decides what to fetch and in which state a version ends; it never speaks HTTP
//! itself (`repository`, `transfer`) and never writes files directly (`store`).

mod observer;
pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Semaphore;

use crate::bandwidth::Bandwidth;
use crate::config::Settings;
use crate::idf::Idf;
use crate::report;
use crate::repository::{Repository, RepositoryError, Timeouts};
use crate::store::{AppRecord, AppState, Store, StoreError};
use crate::transfer::{FileJob, RetryPolicy, Transfer, part_path};
use observer::AppObserver;
use plan::PlannedApp;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error("no repositories are configured (add a [[repository]] table)")]
    NoRepositories,
}

/// How a delivery ended, per app.
#[derive(Debug, Default)]
pub struct Outcome {
    pub delivered: Vec<String>,
    pub unchanged: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

pub struct Agent {
    settings: Settings,
    store: Arc<Store>,
    bandwidth: Arc<Bandwidth>,
    /// Visible repositories in the order they are tried.
    repositories: Vec<Arc<Repository>>,
    policy: RetryPolicy,
}

impl Agent {
    pub fn new(
        settings: Settings,
        store: Arc<Store>,
        bandwidth: Arc<Bandwidth>,
    ) -> Result<Agent, AgentError> {
        if settings.repositories.is_empty() {
            return Err(AgentError::NoRepositories);
        }
        let timeouts = Timeouts {
            connect: settings.update.connect_timeout,
            read: settings.update.read_timeout,
        };
        let repositories = settings
            .repositories
            .iter()
            .filter(|r| !r.hidden())
            .map(|r| Repository::new(r.clone(), &timeouts))
            .collect::<Result<Vec<_>, _>>()?;
        let policy = RetryPolicy {
            retries: settings.update.retries,
            base: settings.update.retry_backoff,
        };
        Ok(Agent {
            settings,
            store,
            bandwidth,
            repositories,
            policy,
        })
    }

    /// Transfers and stages every app of the IDF; never activates anything.
    pub async fn deliver(&self, idf: &Idf) -> Result<Outcome, AgentError> {
        let mut outcome = Outcome::default();
        let mut planned = Vec::new();
        for wanted in &idf.apps {
            let result = match plan::resolve_version(&self.repositories, &self.policy, wanted).await
            {
                Ok(resolved) => {
                    plan::fetch_manifest(&self.repositories, &self.policy, &resolved).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(p) => planned.push(p),
                Err(e) => outcome.failed.push((e.app.clone(), e.reason.clone())),
            }
        }
        let resolved = Idf {
            apps: planned.iter().map(|p| p.wanted.clone()).collect(),
        };
        self.begin(idf, &resolved, &planned, &outcome.failed)?;
        let (to_fetch, unchanged): (Vec<_>, Vec<_>) = planned.into_iter().partition(|p| {
            !self
                .store
                .is_complete(&p.manifest.name, &p.manifest.version)
        });
        for p in &unchanged {
            let staged_before = self.store.snapshot().apps.iter().any(|a| {
                a.name == p.manifest.name
                    && !matches!(
                        a.state,
                        AppState::Assigned | AppState::Downloading | AppState::DownloadFailed
                    )
            });
            if !staged_before {
                self.set_state(&p.manifest.name, AppState::Downloaded, None)?;
            }
            outcome.unchanged.push(p.manifest.name.clone());
        }
        if let Err(reason) = self.check_space(&to_fetch) {
            for p in &to_fetch {
                self.set_state(
                    &p.manifest.name,
                    AppState::DownloadFailed,
                    Some(reason.clone()),
                )?;
                outcome
                    .failed
                    .push((p.manifest.name.clone(), reason.clone()));
            }
        } else {
            let slots = Arc::new(Semaphore::new(self.settings.update.parallel_downloads));
            let transfer = Transfer::new(
                self.repositories.clone(),
                self.bandwidth.clone(),
                self.policy.clone(),
            );
            let results = join_all(
                to_fetch
                    .iter()
                    .map(|p| self.deliver_app(p, &transfer, slots.clone())),
            )
            .await;
            for (p, result) in to_fetch.iter().zip(results) {
                match result {
                    Ok(()) => outcome.delivered.push(p.manifest.name.clone()),
                    Err(reason) => outcome.failed.push((p.manifest.name.clone(), reason)),
                }
            }
        }
        self.finish(&outcome)?;
        Ok(outcome)
    }

    /// Records the new wanted state and marks the start of the transfer.
    fn begin(
        &self,
        idf: &Idf,
        resolved: &Idf,
        planned: &[PlannedApp],
        failed: &[(String, String)],
    ) -> Result<(), AgentError> {
        let status = report::status_text(report::Phase::TransferStarted);
        tracing::info!("{status}");
        self.store.update(|state| {
            state.idf = Some(idf.clone());
            state.idf_sha256 = Some(resolved.digest());
            state.update_status = Some(status);
            for p in planned {
                let (name, version) = (&p.manifest.name, &p.manifest.version);
                match state.app_mut(name) {
                    Some(record) if &record.version == version => {}
                    Some(record) => {
                        let active = record.active_version.clone();
                        *record = AppRecord::new(name, version);
                        record.active_version = active;
                    }
                    None => state.apps.push(AppRecord::new(name, version)),
                }
                if let Some(record) = state.app_mut(name) {
                    record.bytes_total = p.manifest.total_bytes();
                    record.error = None;
                }
            }
            for (name, reason) in failed {
                let version = idf
                    .apps
                    .iter()
                    .find(|a| &a.name == name)
                    .map_or("", |a| a.version.as_str());
                if state.app_mut(name).is_none() {
                    state.apps.push(AppRecord::new(name, version));
                }
                if let Some(record) = state.app_mut(name) {
                    record.state = AppState::DownloadFailed;
                    record.error = Some(reason.clone());
                }
                tracing::error!(app = %name, state = "download-failed", "{name}: {reason}");
            }
            state.apps.sort_by(|a, b| a.name.cmp(&b.name));
        })?;
        Ok(())
    }

    fn finish(&self, outcome: &Outcome) -> Result<(), AgentError> {
        let status = match outcome.failed.first() {
            None => report::status_text(report::Phase::TransferCompleted),
            Some((app, reason)) => format!("Update failed: {app}: {reason}"),
        };
        if outcome.is_success() {
            tracing::info!("{status}");
        } else {
            tracing::error!("{status}");
        }
        self.store.update(|s| s.update_status = Some(status))?;
        Ok(())
    }

    fn set_state(&self, app: &str, new: AppState, error: Option<String>) -> Result<(), AgentError> {
        self.store.update(|s| {
            if let Some(record) = s.app_mut(app) {
                record.state = new;
                record.error = error;
                if new == AppState::Downloaded {
                    record.bytes_done = record.bytes_total;
                }
            }
        })?;
        Ok(())
    }

    /// Refuses to start when the state directory cannot hold what is still missing.
    fn check_space(&self, apps: &[PlannedApp]) -> Result<(), String> {
        let mut need = 0u64;
        for p in apps {
            let staging = self
                .store
                .staging_dir(&p.manifest.name, &p.manifest.version);
            for f in &p.manifest.files {
                let have =
                    std::fs::metadata(part_path(&staging.join(&f.path))).map_or(0, |m| m.len());
                need += f.size.saturating_sub(have);
            }
        }
        let have = self.store.available_bytes().map_err(|e| e.to_string())?;
        if need > have {
            return Err(format!(
                "not enough space: need {}, have {}",
                report::human_bytes(need),
                report::human_bytes(have)
            ));
        }
        Ok(())
    }

    async fn deliver_app(
        &self,
        p: &PlannedApp,
        transfer: &Transfer,
        slots: Arc<Semaphore>,
    ) -> Result<(), String> {
        let (name, version) = (&p.manifest.name, &p.manifest.version);
        let store_err = |e: StoreError| e.to_string();
        // Progress restarts from what the part files hold; the transfers report it.
        self.store
            .update(|s| {
                if let Some(record) = s.app_mut(name) {
                    record.state = AppState::Downloading;
                    record.error = None;
                    record.bytes_done = 0;
                }
            })
            .map_err(store_err)?;
        tracing::info!(app = %name, version = %version, state = "downloading",
            "{name} {version}: downloading {} file(s), {}", p.manifest.files.len(), report::human_bytes(p.manifest.total_bytes()));
        let hints = self
            .store
            .snapshot()
            .apps
            .into_iter()
            .find(|a| &a.name == name)
            .map(|a| a.files)
            .unwrap_or_default();
        let staging = self.store.staging_dir(name, version);
        let observer = AppObserver {
            store: self.store.clone(),
        };
        let jobs = p.manifest.files.iter().map(|f| FileJob {
            app: name.clone(),
            version: version.clone(),
            spec: f.clone(),
            remote: format!("{name}/{version}/{}", f.path),
            local: staging.join(&f.path),
            resume: hints.get(&f.path).cloned(),
        });
        let fetches = jobs.map(|job| {
            let (slots, observer) = (slots.clone(), &observer);
            async move {
                let _slot = slots.acquire().await;
                transfer
                    .fetch(&job, observer)
                    .await
                    .map(|f| (job.spec.size, f.repository))
            }
        });
        let mut by_repository: HashMap<String, u64> = HashMap::new();
        let mut first_error = None;
        for result in join_all(fetches).await {
            match result {
                Ok((size, repo)) => *by_repository.entry(repo).or_default() += size,
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(reason) = first_error {
            tracing::error!(app = %name, version = %version, state = "download-failed", "{name} {version}: {reason}");
            self.set_state(name, AppState::DownloadFailed, Some(reason.clone()))
                .map_err(|e| e.to_string())?;
            return Err(reason);
        }
        let repository = by_repository
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map_or_else(|| p.manifest_repository.clone(), |(r, _)| r);
        let store = self.store.clone();
        let (manifest, bytes) = (p.manifest.clone(), p.manifest_bytes.clone());
        tokio::task::spawn_blocking(move || store.commit_version(&manifest, &bytes))
            .await
            .map_err(|e| e.to_string())?
            .map_err(store_err)?;
        self.store
            .update(|s| {
                if let Some(record) = s.app_mut(name) {
                    record.state = AppState::Downloaded;
                    record.bytes_done = record.bytes_total;
                    record.repository = Some(repository.clone());
                    record.error = None;
                    record.files.clear();
                }
            })
            .map_err(store_err)?;
        tracing::info!(app = %name, version = %version, repository = %repository, state = "downloaded",
            "{name} {version}: downloaded and verified from {repository}");
        Ok(())
    }
}
