//! The transfer phase shared by the Delivery and Update commands: record what is wanted, fetch
//! what is missing with at most `parallel_downloads` files in flight, commit every complete
//! version to the store, and stage it where the setting "activate after installation" says.
//! Also the journal side of a transfer: progress, resume hints and failovers. This is where
//! the two sides meet: the store names the paths of a [`FileJob`], and what a transfer reports
//! of its source becomes the store's [`ResumeHint`] (and that, the next time, an [`IfRange`]).

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Semaphore;

use super::lifecycle::Event;
use super::plan::PlannedApp;
use super::{Agent, AgentError, Outcome};
use crate::idf::Idf;
use crate::report::{self, Phase, StatusText};
use crate::store::{AppRecord, AppState, ResumeHint, Store, StoreError};
use crate::transfer::{FileJob, IfRange, Observer, Source, Transfer};

impl Agent {
    /// The Delivery command: transfer and stage; never activates and leaves the wanted state
    /// (the IDF of the last Update or assignment) as it is.
    pub async fn deliver(&self, idf: &Idf) -> Result<Outcome, AgentError> {
        self.require_repositories()?;
        self.begin(report::Command::Delivery);
        let (planned, failed) = self.unless_cancelled(self.plan(idf)).await?;
        let mut outcome = self
            .unless_cancelled(self.transfer(&planned, failed))
            .await??;
        if outcome.is_success() {
            let status = StatusText::Successful(report::Command::Delivery);
            tracing::info!("{status}");
            self.set_status(&status)?;
            outcome.status = status.to_string();
        }
        Ok(outcome)
    }

    /// Transfers and stages the planned apps. Sets "Transfer started", and on failure
    /// "Update failed: ..." (or "Delivery failed: ..."); the caller says what success means.
    pub(super) async fn transfer(
        &self,
        planned: &[PlannedApp],
        failed: Vec<(String, String)>,
    ) -> Result<Outcome, AgentError> {
        let status = StatusText::in_progress(self.words(), Phase::TransferStarted);
        tracing::info!("{status}");
        self.set_status(&status)?;
        let mut outcome = Outcome {
            failed,
            ..Outcome::default()
        };
        self.record_planned(planned, &outcome.failed)?;
        let (to_fetch, unchanged): (Vec<&PlannedApp>, Vec<&PlannedApp>) =
            planned.iter().partition(|p| !self.in_store(p));
        for p in planned {
            let (name, version) = (&p.manifest.name, &p.manifest.version);
            for old in self.store.remove_superseded_staging(name, Some(version))? {
                tracing::info!(app = %name, "{name}: partial download of {old} removed (no longer planned)");
            }
        }
        let at_boot = self.settings.update.activate_after_installation;
        let state = self.store.snapshot();
        for p in unchanged {
            let name = &p.manifest.name;
            let fresh = state
                .apps
                .iter()
                .any(|a| &a.name == name && a.state.awaits_transfer());
            if fresh {
                self.transition(name, Event::Staged { at_boot }, None)?;
            } else {
                // In place: a staged copy of other content under this name is no longer wanted,
                // and an error of an earlier, failed attempt no longer applies.
                if self.store.holds(&p.manifest)
                    && self
                        .store
                        .staging_dir(name, &p.manifest.version)
                        .join("app.json")
                        .exists()
                {
                    self.store.remove_staged_copy(name, &p.manifest.version)?;
                }
                self.store.update(|s| {
                    if let Some(r) = s.app_mut(name) {
                        r.error = None;
                    }
                })?;
            }
            outcome.unchanged.push(name.clone());
        }
        if let Err(reason) = self.check_space(&to_fetch) {
            for p in &to_fetch {
                self.transition(
                    &p.manifest.name,
                    Event::TransferFailed,
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
                crate::transfer::Stall {
                    bytes_per_sec: self.settings.update.low_speed_limit,
                    time: self.settings.update.low_speed_time,
                },
                self.unreachable.clone(),
            );
            let results = join_all(
                to_fetch
                    .iter()
                    .map(|p| self.deliver_app(p, &transfer, slots.clone())),
            )
            .await;
            for (p, result) in to_fetch.iter().zip(results) {
                match result {
                    Ok(()) => outcome.done.push(p.manifest.name.clone()),
                    Err(reason) => outcome.failed.push((p.manifest.name.clone(), reason)),
                }
            }
        }
        if let Some((app, reason)) = outcome.failed.first() {
            let status = StatusText::app_failed(self.words(), app, reason);
            tracing::error!("{status}");
            self.set_status(&status)?;
            outcome.status = status.to_string();
        }
        Ok(outcome)
    }

    /// Makes sure every planned app has a record for its version, in a state a transfer can
    /// start from; apps that could not be planned are recorded as failed.
    fn record_planned(
        &self,
        planned: &[PlannedApp],
        failed: &[(String, String)],
    ) -> Result<(), StoreError> {
        let complete: Vec<bool> = planned.iter().map(|p| self.in_store(p)).collect();
        self.store.update(|state| {
            for (p, complete) in planned.iter().zip(complete) {
                let (name, version) = (&p.manifest.name, &p.manifest.version);
                let record = match state.app_mut(name) {
                    Some(r) => r,
                    None => {
                        state.apps.push(AppRecord::new(name, version));
                        state.apps.sort_by(|a, b| a.name.cmp(&b.name));
                        state.app_mut(name).expect("just pushed")
                    }
                };
                let gone = !complete && !record.state.awaits_transfer();
                if &record.version != version || record.state == AppState::MarkedForRemoval || gone
                {
                    // A new version, an app back in the IDF, or staged files that vanished.
                    let mut fresh = AppRecord::new(name, version);
                    fresh.active_version = record.active_version.clone();
                    fresh.previous_version = record.previous_version.clone();
                    if &record.version == version {
                        fresh.files = std::mem::take(&mut record.files);
                    }
                    *record = fresh;
                }
                record.bytes_total = p.manifest.total_bytes();
                record.wanted_app_json = Some(crate::manifest::sha256_hex(&p.manifest_bytes));
            }
            for (name, reason) in failed {
                let reason = report::clean(reason);
                if state.app_mut(name).is_none() {
                    state.apps.push(AppRecord::new(name, ""));
                    state.apps.sort_by(|a, b| a.name.cmp(&b.name));
                }
                if let Some(record) = state.app_mut(name) {
                    if let Ok(next) = record.state.on(Event::TransferFailed) {
                        record.state = next;
                    }
                    record.error = Some(reason.to_string());
                }
                tracing::error!(app = %name, state = "download-failed", "{name}: {reason}");
            }
        })
    }

    /// The planned content is on disk: as the version of that name, or staged to replace the
    /// active version of that name. A version of the same name with other content (another
    /// repository's, or from before an IDF pinned its app.json) is not.
    fn in_store(&self, p: &PlannedApp) -> bool {
        self.store.holds(&p.manifest) || self.store.staged_replacement(&p.manifest)
    }

    /// Refuses to start when the state directory cannot hold what is still missing.
    fn check_space(&self, apps: &[&PlannedApp]) -> Result<(), String> {
        let mut need = 0u64;
        for p in apps {
            let (name, version) = (&p.manifest.name, &p.manifest.version);
            for f in &p.manifest.files {
                let part = self.store.part_file(name, version, &f.path);
                let have = std::fs::metadata(part).map_or(0, |m| m.len());
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
        self.transition(name, Event::TransferStarted, None)
            .map_err(store_err)?;
        // Progress restarts from what the part files hold; the transfers report it.
        let hints = self
            .store
            .update(|s| {
                s.app_mut(name).map(|r| {
                    r.bytes_done = 0;
                    r.files.clone()
                })
            })
            .map_err(store_err)?
            .unwrap_or_default();
        tracing::info!(app = %name, version = %version, bytes = p.manifest.total_bytes(),
            "{name} {version}: {} file(s), {}", p.manifest.files.len(), report::human_bytes(p.manifest.total_bytes()));
        let observer = JournalObserver {
            store: self.store.clone(),
        };
        // The versions whose files may hold chunks of the new ones: the active one first.
        let earlier_versions: Vec<String> = {
            let state = self.store.snapshot();
            let record = state.apps.iter().find(|a| &a.name == name);
            record
                .into_iter()
                .flat_map(|r| [r.active_version.clone(), r.previous_version.clone()])
                .flatten()
                .chain(self.store.current_version(name))
                .filter(|v| v != version)
                .collect()
        };
        let fetches = p.manifest.files.iter().map(|f| {
            let job = FileJob {
                app: name.clone(),
                version: version.clone(),
                spec: f.clone(),
                remote: format!("{name}/{version}/{}", f.path),
                part: self.store.part_file(name, version, &f.path),
                local: self.store.staged_file(name, version, &f.path),
                if_range: hints.get(&f.path).and_then(if_range),
                seeds: seeds(&self.store, name, version, &f.path, &earlier_versions),
            };
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
            self.transition(name, Event::TransferFailed, Some(reason.clone()))
                .map_err(store_err)?;
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
        let reused = self
            .store
            .update(|s| {
                s.app_mut(name).map_or(0, |record| {
                    record.bytes_done = record.bytes_total;
                    record.repository = Some(repository.clone());
                    record.files.clear();
                    record.bytes_reused.min(record.bytes_total)
                })
            })
            .map_err(store_err)?;
        let total = p.manifest.total_bytes();
        if reused > 0 {
            tracing::info!(app = %name, version = %version, repository = %repository, bytes = total, bytes_reused = reused,
                "{name} {version}: downloaded and verified from {repository} ({} copied from the device, {} downloaded)",
                report::human_bytes(reused), report::human_bytes(total - reused));
        } else {
            tracing::info!(app = %name, version = %version, repository = %repository, bytes = total,
                "{name} {version}: downloaded and verified from {repository}");
        }
        let at_boot = self.settings.update.activate_after_installation;
        self.transition(name, Event::Staged { at_boot }, None)
            .map_err(store_err)?;
        Ok(())
    }
}

/// The files of `versions` of `app` a delta of `path` may copy chunks from: the same path in
/// each, or, when a version has no file of that name, its files of at least the size worth a
/// chunk index (file names often carry the version). At most 8.
fn seeds(
    store: &Store,
    app: &str,
    version: &str,
    path: &str,
    versions: &[String],
) -> Vec<std::path::PathBuf> {
    let mut seeds = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for v in versions {
        if v == version || !seen.insert(v.clone()) {
            continue;
        }
        let dir = store.version_dir(app, v);
        let same = dir.join(path);
        if same.is_file() {
            seeds.push(same);
        } else if let Some(manifest) = store.stored_manifest(&dir) {
            seeds.extend(
                manifest
                    .files
                    .iter()
                    .filter(|f| f.size >= crate::chunks::MIN_SEED_BYTES)
                    .map(|f| dir.join(&f.path))
                    .filter(|p| p.is_file()),
            );
        }
    }
    seeds.truncate(8);
    seeds
}

/// What a transfer may send in `If-Range` for a part file the journal has a hint for.
fn if_range(hint: &ResumeHint) -> Option<IfRange> {
    Some(IfRange {
        repository: hint.repository.clone(),
        validator: hint.validator.clone()?,
    })
}

/// Connects transfers to the journal: progress goes into `state.json` (at most once a second),
/// each file's source into its resume hint, failovers into the log.
struct JournalObserver {
    store: Arc<Store>,
}

impl Observer for JournalObserver {
    fn source(&self, job: &FileJob, source: &Source) {
        // Only the repository and its validator outlive the run; the size was checked already.
        let hint = ResumeHint {
            repository: source.repository.clone(),
            validator: source.validator.clone(),
        };
        let result = self.store.update(|s| {
            if let Some(app) = s.app_mut(&job.app) {
                let previous = app.files.get(&job.spec.path).map(|h| h.repository.clone());
                if previous.as_ref().is_some_and(|r| r != &hint.repository) {
                    tracing::info!(app = %job.app, version = %job.version, repository = %hint.repository,
                        "{} {}: {} now comes from {} (was {})", job.app, job.version, job.spec.path,
                        hint.repository, previous.unwrap_or_default());
                }
                app.files.insert(job.spec.path.clone(), hint);
            }
        });
        if let Err(e) = result {
            tracing::warn!("cannot record resume information: {e}");
        }
    }

    fn progress(&self, job: &FileJob, delta: i64) {
        let result = self.store.progress(|s| {
            if let Some(app) = s.app_mut(&job.app) {
                app.bytes_done = app.bytes_done.saturating_add_signed(delta);
            }
        });
        if let Err(e) = result {
            tracing::warn!("cannot record progress: {e}");
        }
    }

    fn reused(&self, job: &FileJob, bytes: i64) {
        let result = self.store.progress(|s| {
            if let Some(app) = s.app_mut(&job.app) {
                app.bytes_reused = app.bytes_reused.saturating_add_signed(bytes);
            }
        });
        if let Err(e) = result {
            tracing::warn!("cannot record progress: {e}");
        }
    }

    fn delta_fallback(&self, job: &FileJob, reason: &str) {
        tracing::info!(app = %job.app, version = %job.version,
            "{} {}: {}: downloading the whole file instead of its changed chunks: {reason}",
            job.app, job.version, job.spec.path);
    }

    fn failover(&self, job: &FileJob, repository: &str, reason: &str, not_found: bool) {
        if not_found {
            // A mirror without the file is normal; the next repository is asked at once.
            tracing::info!(app = %job.app, version = %job.version, repository = %repository,
                "{} {}: {} is not on {repository}, trying the next repository", job.app, job.version, job.spec.path);
            return;
        }
        tracing::warn!(app = %job.app, version = %job.version, repository = %repository,
            "{} {}: {} failed at {repository}: {reason}", job.app, job.version, job.spec.path);
    }
}
