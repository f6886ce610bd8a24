//! Connects transfers to the journal: progress goes into `state.json` (at most once a second),
//! each file's source into its resume hint, failovers into the log.

use std::sync::Arc;

use crate::store::Store;
use crate::transfer::{FileJob, Observer, ResumeHint};

pub struct AppObserver {
    pub store: Arc<Store>,
}

impl Observer for AppObserver {
    fn source(&self, job: &FileJob, hint: &ResumeHint) {
        let result = self.store.update(|s| {
            if let Some(app) = s.app_mut(&job.app) {
                let previous = app.files.get(&job.spec.path).map(|h| h.repository.as_str());
                if previous.is_some_and(|r| r != hint.repository) {
                    tracing::info!(app = %job.app, version = %job.version, repository = %hint.repository,
                        "{} {}: {} now comes from {} (was {})", job.app, job.version, job.spec.path, hint.repository, previous.unwrap_or("-"));
                }
                app.files.insert(job.spec.path.clone(), hint.clone());
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
